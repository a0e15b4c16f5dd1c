"""Cross-architecture evaluation: a distilled set trains networks other than its own.

`evaluate_networks` trains fresh networks of every asked-for architecture on
one distilled set under the run's evaluation protocol (the learned lr
included, as MTT/DATM's cross-architecture tables do) and tests them on the
clean test set; `jaxdd distill --eval-nets` calls it after distilling and
`evaluate_run` (``jaxdd evaluate RUN_DIR``) on a saved run, without
re-distilling. Each network is seeded by the run's evaluation stream, so the
run's own ConvNet number is reproduced bit for bit.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np

from jaxdd import evaluate, report, rng
from jaxdd.errors import ConfigError
from jaxdd.locking import DirectoryLock
from jaxdd.models.base import Model
from jaxdd.models.convnet import ConvNetSpec, make_convnet
from jaxdd.models.zoo import make_network, network_spec
from jaxdd.ops.train import TrainConfig
from jaxdd.prepare import Prepared

TABLE_FILE = "networks.md"


def networks(
    names: Sequence[str], convnet: ConvNetSpec, width_scale: float = 1.0
) -> dict[str, Model]:
    """The evaluation `Model` of each name: ``convnet`` is `convnet`, the rest `jaxdd.models.zoo`.

    The zoo networks take `convnet`'s classes and image shape.
    """
    out = {}
    for name in names:
        if name == "convnet":
            out[name] = make_convnet(convnet)
        else:
            spec = network_spec(name, convnet.num_classes, convnet.image_shape, width_scale)
            out[name] = make_network(spec)
    return out


def evaluate_networks(
    models: Mapping[str, Model],
    images,
    targets,
    data: Prepared,
    config: TrainConfig,
    *,
    key: jax.Array,
    eval_every: int | None = None,
    progress: bool = True,
    on_eval: Callable[[str, dict], None] | None = None,
) -> dict[str, evaluate.EvalResult]:
    """Trains and tests ``config.num_seeds`` fresh networks of each of `models` on one set.

    Args:
      models: name → network.
      images: ``[N, H, W, C]`` the distilled images, in `data`'s pixel space.
      targets: ``[N, C]`` what the networks train on.
      data: what was distilled from: its clean test set, pixel space and
        noisy validation split.
      config: the evaluation protocol (with the learned lr, where there is one).
      key: seeds every network's runs (the same key for each network, so a
        network's numbers do not depend on which others are evaluated).
      eval_every: also test every this many epochs.
      progress: show progress bars.
      on_eval: called with (name, history entry) at each evaluation point.

    Returns:
      name → `EvalResult`, in the order of `models`.
    """
    ds = data.ds
    x_test = data.space.encode(ds.x_test)
    results = {}
    for name, model in models.items():
        results[name], _ = evaluate.train_and_evaluate(
            model,
            images,
            targets,
            x_test,
            ds.y_test,
            config,
            key=key,
            eval_every=eval_every,
            progress=progress,
            on_eval=None if on_eval is None else (lambda e, n=name: on_eval(n, e)),
            label=f"evaluate {name}",
            validation=data.validation,
        )
    return results


def summaries(
    results: Mapping[str, evaluate.EvalResult], width_scale: float = 1.0
) -> dict[str, dict]:
    """name → the result's summary fields (``accuracy_mean``, ``accuracies``, …).

    A non-ConvNet network's entry also says its ``width_scale``.
    """
    out = {}
    for name, result in results.items():
        scale = {} if name == "convnet" else {"width_scale": width_scale}
        out[name] = {**result.summary(), **scale}
    return out


def table(networks_summary: Mapping[str, dict]) -> str:
    """A Markdown table: one row per network, final clean-test accuracy mean ± std."""
    rows = []
    for name, fields in networks_summary.items():
        scale = fields.get("width_scale", 1.0)
        row = {
            "network": name,
            "channels": "run's" if name == "convnet" else f"{scale:g}x reference",
            "test accuracy (%)": report.mean_std(fields["accuracies"]),
            "seeds": len(fields["accuracies"]),
        }
        if "val_accuracies" in fields:
            row["noisy-val accuracy (%)"] = report.mean_std(fields["val_accuracies"])
        rows.append(row)
    columns = ["network", "channels", "test accuracy (%)"]
    if any("noisy-val accuracy (%)" in r for r in rows):
        columns.append("noisy-val accuracy (%)")
    return report.format_table(rows, [*columns, "seeds"])


def write_table(run: report.RunDir, summary: Mapping) -> None:
    """Writes `TABLE_FILE` from the ``networks`` of a run's summary."""
    (run.path / TABLE_FILE).write_text(table(summary["networks"]) + "\n")


def evaluate_run(
    path: str | pathlib.Path,
    nets: Sequence[str] | None = None,
    *,
    width_scale: float | None = None,
    progress: bool = True,
) -> dict[str, dict]:
    """Re-evaluates the saved distilled set of a finished run on other networks.

    Reads the run's ``config.json`` and ``distilled.npz`` (images, training
    targets, learned lr), rebuilds its data (the saved trust split, no
    recomputation) and evaluates as the run did; the results are merged into
    ``networks`` of its ``summary.json`` and `TABLE_FILE` is rewritten.

    Args:
      path: the run directory.
      nets: the networks (default: the run's ``eval_nets``).
      width_scale: the non-ConvNet channel factor (default: the run's).
      progress: show progress bars.

    Returns:
      name → summary fields of the networks evaluated now.

    Raises:
      ConfigError: `path` holds no finished run, or one saved before
        ``distilled.npz`` kept its training targets.
    """
    from jaxdd import distill, prepare  # the driver imports this module
    from jaxdd.config import from_jsonable
    from jaxdd.methods import base

    run = _finished_run(path)
    with DirectoryLock(run.path):
        config = from_jsonable(distill.DistillConfig, run.read_json("config.json"))
        config = dataclasses.replace(
            config,
            eval_nets=tuple(nets) if nets else config.eval_nets,
            eval_width_scale=config.eval_width_scale if width_scale is None else width_scale,
        )
        distill.check_config(config)
        saved = _saved_set(run.path / "distilled.npz")
        split = run.path / "trust_split.npz" if config.trust is not None else None
        data = prepare.prepare_for(config, saved_split=split)
        eval_spec = base.get_method(config.method).networks(
            config, data.spec(config.width, config.depth)
        )[1]
        models = networks(config.eval_nets, eval_spec, config.eval_width_scale)
        eval_cfg = (
            config.eval if saved["lr"] is None else dataclasses.replace(config.eval, lr=saved["lr"])
        )
        results = evaluate_networks(
            models,
            saved["images"],
            saved["targets"],
            data,
            eval_cfg,
            key=rng.stream(config.seed, "eval"),
            progress=progress,
        )
        summary = run.read_json("summary.json")
        fresh = summaries(results, config.eval_width_scale)
        summary["networks"] = {**_networks(summary), **fresh}
        run.write_json("summary.json", summary)
        write_table(run, summary)
    print(table(fresh), file=sys.stderr, flush=True)
    return fresh


# The fields of `EvalResult.summary`.
_RESULT_FIELDS = (
    "accuracy_mean",
    "accuracy_std",
    "accuracies",
    "val_accuracy_mean",
    "val_accuracy_std",
    "val_accuracies",
)


def _networks(summary: Mapping) -> dict[str, dict]:
    """The ``networks`` of a summary; for one written before it had them, its own
    network's result (the top-level accuracy fields, under ``convnet``)."""
    if "networks" in summary:
        return dict(summary["networks"])
    own = {k: summary[k] for k in _RESULT_FIELDS if k in summary}
    return {summary.get("eval_net", "convnet"): own}


def _finished_run(path) -> report.RunDir:
    path = pathlib.Path(path)
    missing = [
        n for n in ("config.json", "summary.json", "distilled.npz") if not (path / n).exists()
    ]
    if missing:
        raise ConfigError(
            f"{path} holds no finished distillation run (no {', '.join(missing)}): give the "
            "directory a finished `jaxdd distill` wrote"
        )
    return report.RunDir.at(path)


def _saved_set(path: pathlib.Path) -> dict:
    """``images``, ``targets`` and ``lr`` (None: the protocol's) of a ``distilled.npz``."""
    with np.load(path) as saved:
        if "targets" not in saved:
            raise ConfigError(
                f"{path} does not hold the training targets (it was saved by an earlier "
                "jaxdd): re-run its evaluation with `jaxdd distill --run-dir "
                f"{path.parent} --allow-config-change --eval-nets ...`"
            )
        lr = float(saved["eval_lr"]) if "eval_lr" in saved else None
        return {"images": saved["images"], "targets": saved["targets"], "lr": lr}
