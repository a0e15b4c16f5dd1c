"""The `jaxdd distill` driver: noisy data → (experts →) a method → evaluation → report.

All I/O of a distillation run lives here; the kernels it calls are pure.
Every method (`jaxdd.methods.base.NAMES`) runs through the same path behind
`jaxdd.methods.base.Method`: no stage here knows which method it serves.
Expert trajectories (for the methods that use them) are cached by what
determines them (the content of the data they train on, model, expert
protocol, seed) and reused; the
distillation state is checkpointed every `checkpoint_every` iterations (and
on SIGTERM or Ctrl-C) and a run resumes from its directory. A run directory
and an expert cache are locked while in use (`jaxdd.locking`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import signal
import sys
import threading
from typing import Any, ClassVar, Literal, NoReturn

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxdd import cross_arch, hosts, parallel, report, rng, validate
from jaxdd.checkpoint import Checkpointer
from jaxdd.errors import ConfigError, JaxddError, RunInterruptedError
from jaxdd.experts import ExpertConfig, train_experts
from jaxdd.locking import LOCK_FILE, DirectoryLock, atomic_write_text
from jaxdd.methods import base, dance, datm, dm, rcig
from jaxdd.models.convnet import make_convnet
from jaxdd.models.zoo import EvalNet
from jaxdd.ops.train import TrainConfig
from jaxdd.prepare import Prepared, data_fingerprint, prepare_for
from jaxdd.trust.dual import TADConfig


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """One distillation run (see `experiments/` for the published settings).

    The experts' lr is the student's initial lr, and DSA is one choice for
    the experts, the student and the evaluation: `LINKED` names these paths,
    which must agree (`check_config`); on the command line, setting one sets all.

    Attributes:
      dataset: registry name (`jaxdd datasets` lists them).
      noise: label-noise spec, e.g. ``symmetric:0.4`` or ``asymmetric:0.4:1=7,7=1``
        (`jaxdd.data.noise.parse_noise`).
      noise_seed: seeds the label noise.
      method: ``datm``, ``mtt`` (both with their settings in `datm`), ``dm``,
        ``dance`` or ``rcig`` (settings in `dm`, `dance`, `rcig`); the other
        methods' settings are unused.
      datm: the trajectory-matching hyper-parameters.
      dm: DM's hyper-parameters.
      dance: DANCE's hyper-parameters (its expert pool is `experts`).
      rcig: RCIG's hyper-parameters (its model pool among them).
      experts: the expert protocol (methods that use experts).
      eval: how distilled sets are evaluated (DATM/MTT replace its lr by the
        learned student lr).
      width, depth: the ConvNet (depth None: by image size).
      eval_nets: the networks the distilled set is evaluated on: ``convnet``
        (the method's evaluation ConvNet) and the references' AlexNet, VGG-11
        and ResNet-18 variants (`jaxdd.models.zoo`); the summary's top-level
        accuracy is the first one's, every one's is under ``networks``.
      eval_width_scale: factor on the channels of the non-ConvNet evaluation
        networks (1: the references'; less for a reduced CPU protocol).
      zca: ZCA-whiten images (fitted on the training images used).
      max_train: stratified training subset (reduced CPU configurations).
      val_fraction: share of the training data held out (stratified on the
        given labels) as the noisy validation split: no stage trains on it,
        and the summary reports ``val_accuracy_*`` against its given labels,
        the criterion defaults are chosen by (docs/defaults.md). 0: none.
      trust: divert to TAD's trusted space (or the small-loss selection).
      checkpoint_every: iterations between distillation checkpoints.
      log_every: iterations between metric lines.
      seed: seeds experts, init and distillation.
    """

    LINKED: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("datm.dsa", "experts.dsa", "eval.dsa"),
        ("datm.lr_teacher", "experts.lr"),
    )

    dataset: str = "digits"
    noise: str = "symmetric:0.4"
    noise_seed: int = 0
    method: Literal["datm", "mtt", "dm", "dance", "rcig"] = "datm"
    datm: datm.DATMConfig = datm.DATMConfig()
    dm: dm.DMConfig = dm.DMConfig()
    dance: dance.DANCEConfig = dance.DANCEConfig()
    rcig: rcig.RCIGConfig = rcig.RCIGConfig()
    experts: ExpertConfig = ExpertConfig()
    eval: TrainConfig = TrainConfig()
    width: int = 128
    depth: int | None = None
    eval_nets: tuple[EvalNet, ...] = ("convnet",)
    eval_width_scale: float = 1.0
    zca: bool = False
    max_train: int | None = None
    val_fraction: float = 0.0
    trust: TADConfig | None = None
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0

    @property
    def settings(self) -> Any:
        """The method's own settings (``datm``, ``dm``, ``dance`` or ``rcig``)."""
        return getattr(self, base.get_method(self.method).field)

    def unused(self) -> dict[str, str]:
        """The settings this run ignores as configured: dotted path -> why."""
        method = base.get_method(self.method)
        return (
            base.others_unused(self, method)
            | method.unused(self)
            | validate.trust_unused(self.trust)
            | validate.train_unused(self.eval, "eval")
            | validate.eval_nets_unused(self.eval_nets)
        )


def method_defaults(method: str) -> DistillConfig:
    """The defaults of a run of `method`: `DistillConfig`'s, with the fields the
    method starts from (`base.Method.defaults`: MTT's settings, DANCE's pool
    schedule and evaluation, RCIG's evaluation)."""
    return DistillConfig(method=method, **base.get_method(method).defaults())


def check_config(config: DistillConfig, *, label: validate.Label = validate.plain) -> None:
    """Refuses a config that cannot run: types, ranges, the window, `LINKED` values.

    `label` names a path in messages (the CLI gives its flags).
    """
    validate.check_tree(config, label=label)
    base.get_method(config.method).check(config, label)
    validate.check_links(config, label=label)
    validate.check_eval_nets(config.eval_nets, label=label)


def validate_run(
    config: DistillConfig,
    *,
    out_root: str,
    run_dir: str | None,
    experts_dir: str,
    label: validate.Label = validate.plain,
) -> None:
    """Everything `run_distill` would refuse, checked before it starts any work.

    The config (`check_config`), the data (the dataset loads, the test classes are
    trained on, every class holds the method's ``ipc`` samples by its given
    labels), and that the run and expert directories can be written;
    nothing is created.
    """
    check_config(config, label=label)
    validate.check_data(
        config.dataset,
        config.noise,
        noise_seed=config.noise_seed,
        max_train=config.max_train,
        val_fraction=config.val_fraction,
        ipc=config.settings.ipc,
        ipc_path=f"{base.get_method(config.method).field}.ipc",
        label=label,
    )
    if run_dir is None:
        validate.check_dir(out_root, f"the run directory root {out_root}")
    else:
        validate.check_dir(run_dir, f"the run directory {run_dir}")
    validate.check_dir(experts_dir, f"the expert cache {experts_dir}")


def _expert_key(config: DistillConfig, fingerprint: str) -> str:
    """A short hash of everything that determines the expert trajectories."""
    what = [
        config.dataset,
        config.noise,
        config.noise_seed,
        config.max_train,
        config.val_fraction,
        config.zca,
        _trust_fields(config.trust),
        config.width,
        config.depth,
        dataclasses.asdict(config.experts),
        config.seed,
        fingerprint,
    ]
    return hashlib.sha256(json.dumps(what, default=str).encode()).hexdigest()[:12]


def resolve_epoch_size(config: DistillConfig, given_size: int | None) -> DistillConfig:
    """`config` with ``experts.epoch_size == "given"`` made a count.

    `given_size` is the training set's size before diversion (None without
    diversion: one pass over the data, the references' epoch).
    """
    if config.experts.epoch_size != "given":
        return config
    return dataclasses.replace(
        config, experts=dataclasses.replace(config.experts, epoch_size=given_size)
    )


def _trust_fields(trust: TADConfig | None) -> dict | None:
    """The trust settings that shape the diverted training set (not `init_pool`)."""
    if trust is None:
        return None
    fields = dataclasses.asdict(trust)
    del fields["init_pool"]
    return fields


# Files a run directory holds before its first checkpoint; a run that fails
# with nothing more removes its directory (`run_distill`).
_START_FILES = frozenset({"config.json", "metrics.jsonl", "train_set.png", LOCK_FILE})
# Events of the stages before distillation: logged once per run.
_SETUP_EVENTS = frozenset({"noise", "trust", "init"})
# Config fields the trust split depends on, besides `trust` (but for its `init_pool`).
_SPLIT_FIELDS = frozenset(
    {"dataset", "noise", "noise_seed", "max_train", "val_fraction", "zca", "seed"}
)


class NoUpdatesError(JaxddError):
    """Every distillation update was skipped: the distilled set is its initialisation."""


def _expert_cache(config: DistillConfig, fingerprint: str, experts_dir) -> pathlib.Path:
    """The cache directory of the experts of `config` on the data of `fingerprint`."""
    return (
        pathlib.Path(experts_dir)
        / f"{report.slug(config.dataset)}-{_expert_key(config, fingerprint)}"
    )


def load_or_train_experts(config, model, x, targets, experts_dir, progress):
    """Expert trajectories from the cache directory, training (or resuming) them if needed.

    The directory is named by a hash of everything that determines the
    trajectories, the content of the data they train on (`x`, `targets`)
    included. One process at a time trains into it: another one waits for
    it, then reuses its experts.
    """
    fingerprint = data_fingerprint(x, targets)
    path = _expert_cache(config, fingerprint, experts_dir)
    with DirectoryLock(path, timeout=None, on_wait=lambda pid: _say_waiting(pid, path)):
        described = {**dataclasses.asdict(config), "data_sha256": fingerprint}
        if hosts.is_main():
            atomic_write_text(path / "config.json", json.dumps(described, default=str, indent=2))
        with Checkpointer(path / "checkpoints", max_to_keep=None) as ckpt:
            return train_experts(
                model,
                x,
                targets,
                config.experts,
                key=rng.stream(config.seed, "experts"),
                checkpointer=ckpt,
                progress=progress,
            )


def expert_source(model, data: Prepared, experts_dir, progress: bool):
    """`base.Services.experts` for runs on `data`: ``(config) → trajectories``, cached
    in `experts_dir` (`load_or_train_experts`), the epoch size resolved against
    the data's size before diversion (`resolve_epoch_size`)."""

    def experts(cfg: DistillConfig):
        given = None if data.source is None else data.given_size
        cfg = resolve_epoch_size(cfg, given)
        return load_or_train_experts(cfg, model, data.x, data.targets(), experts_dir, progress)

    return experts


def _say_waiting(pid: int | None, path: pathlib.Path) -> None:
    """Tells the user that this process waits for another one's experts."""
    holder = "another process" if pid is None else f"process {pid}"
    print(f"waiting for {holder} training experts in {path}", file=sys.stderr, flush=True)


class _StopRequests:
    """While active, SIGTERM and SIGINT (Ctrl-C) ask the distillation loop to stop.

    `signum` is the first such signal received, or None. A second SIGINT
    raises `KeyboardInterrupt` at once. Signals reach only the main thread,
    so elsewhere nothing is installed; the previous handlers come back on exit.
    """

    _SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequests:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._request) for s in self._SIGNALS}
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def _request(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"{signal.Signals(signum).name}: stopping after this iteration with a checkpoint "
            "(Ctrl-C again stops at once)",
            file=sys.stderr,
            flush=True,
        )


def distill_loop(model, config, state, resources, ckpt, run, progress):
    """Runs iterations from ``state.iteration`` to the end, checkpointing and logging.

    SIGTERM and Ctrl-C stop it after the current iteration: the state is
    checkpointed at that iteration, an ``interrupted`` event is logged and
    `RunInterruptedError` raised (`_StopRequests`); resuming from that
    checkpoint gives the same result as an uninterrupted run.
    """
    method = base.get_method(config.method)
    step = jax.jit(lambda s, r: method.step(model, config, s, r), donate_argnums=0)
    start, end = int(state.iteration), config.settings.iterations
    if start < end:
        print("compiling the distillation step (first iteration)…", file=sys.stderr, flush=True)
    bar = tqdm(range(start, end), disable=not progress, desc="distill")
    with _StopRequests() as stop:
        for it in bar:
            state, metrics = step(state, resources)
            if (it + 1) % config.log_every == 0 or it + 1 == end:
                _log_iteration(run, bar, it + 1, metrics, state, method.shown)
            if (it + 1) % config.checkpoint_every == 0:
                ckpt.save(it + 1, state, force=True)
            if stop.signum is not None:
                break
    ckpt.save(int(state.iteration), state, force=True)
    if stop.signum is not None:
        _interrupted(state, stop.signum, run)
    return state


def _log_iteration(run, bar, iteration: int, metrics: dict, state, shown) -> None:
    """Logs one iteration's metrics as a ``distill`` event and shows `shown` on the bar."""
    entry = {
        "iteration": iteration,
        **{k: float(v) for k, v in metrics.items()},
        "skipped": int(state.skipped),
    }
    run.log(event="distill", **entry)
    bar.set_postfix({name: f"{entry[name]:.4g}" for name in shown})


def _interrupted(state, signum: int, run) -> NoReturn:
    """Logs an ``interrupted`` event and raises `RunInterruptedError`."""
    iteration, name = int(state.iteration), signal.Signals(signum).name
    run.log(event="interrupted", iteration=iteration, signal=name)
    raise RunInterruptedError(
        f"stopped by {name} at iteration {iteration} with a checkpoint; run again with "
        f"--run-dir {run.path} to resume",
        signum,
    )


def run_distill(
    config: DistillConfig,
    *,
    out_root: str = "runs",
    run_dir: str | None = None,
    experts_dir: str = "runs/experts",
    progress: bool = True,
    allow_config_change: bool = False,
) -> tuple[dict, report.RunDir]:
    """The whole pipeline of one distillation run; returns the summary and run dir.

    One process at a time uses a run directory. Run again in the same
    directory (`run_dir`), a run resumes from its latest checkpoint without
    redoing the trust split or logging an event twice, and a finished one
    (it has a ``summary.json``) is only reported; a run of another config is
    resumed only with `allow_config_change`. A run that fails before its
    first checkpoint removes its directory.

    Raises:
      DirectoryLockedError: another process uses the run directory.
      ConfigError: bad config, or the run directory holds a run of another
        config (and not `allow_config_change`).
      RunInterruptedError: SIGTERM or Ctrl-C stopped the distillation (its
        state is saved).
      NoUpdatesError: every distillation update was skipped.
    """
    check_config(config)
    name = f"distill-{config.method}-{report.slug(config.dataset)}"
    run = report.RunDir.at(run_dir) if run_dir else report.RunDir(out_root, name)
    with DirectoryLock(run.path):
        changes = hosts.decide(lambda: _adopt_config(run, config, allow_config_change))
        if hosts.decide((run.path / "summary.json").exists):
            return _finished(run), run
        try:
            return _distill(config, run, experts_dir, progress, _split_changed(changes))
        except BaseException:
            run.discard_if_only(_START_FILES)
            raise


def _adopt_config(run, config: DistillConfig, allow_change: bool) -> dict[str, tuple]:
    """Writes ``config.json``, or checks a resumed run's; returns the changes to it.

    Raises:
      ConfigError: ``config.json`` holds another config and not `allow_change`.
    """
    if not (run.path / "config.json").exists():
        run.write_json("config.json", config)
        return {}
    changes = run.json_changes("config.json", config)
    if changes and not allow_change:
        listed = "; ".join(
            f"{path}: {json.dumps(old)} → {json.dumps(new)}" for path, (old, new) in changes.items()
        )
        raise ConfigError(
            f"{run.path} holds a run of another config ({listed}); use another --run-dir, or "
            "pass --allow-config-change to resume it with the new config"
        )
    if changes:
        run.log(event="config_changed", changes={path: list(c) for path, c in changes.items()})
        (run.path / "summary.json").unlink(missing_ok=True)
        run.write_json("config.json", config)
    return changes


def _split_changed(changes: dict[str, tuple]) -> bool:
    """Whether config changes touch what the trust split depends on (not `init_pool`)."""
    return any(
        path.split(".")[0] in _SPLIT_FIELDS
        or (path.split(".")[0] == "trust" and path != "trust.init_pool")
        for path in changes
    )


def _finished(run) -> dict:
    """The summary of a finished run, saying that it is."""
    summary = run.read_json("summary.json")
    accuracy = report.mean_std(summary["accuracies"])
    print(f"already finished: {accuracy} % (run directory {run.path})", file=sys.stderr, flush=True)
    return summary


def _distill(config, run, experts_dir, progress, split_changed) -> tuple[dict, report.RunDir]:
    """Prepares, gets the experts, distils (resuming) and evaluates, in `run`."""
    data, fresh = _prepare(config, run, split_changed, experts_dir)
    ds = data.ds
    if fresh and run.writes:
        report.save_image_grid(
            run.path / "train_set.png",
            ds.x_train[data.idx],
            data.labels,
            ds.class_names,
            clean_labels=data.clean,
            title=f"{config.method} training set ({config.noise}; red = mislabelled)",
        )
    method = base.get_method(config.method)
    distil_spec, eval_spec = method.networks(config, data.spec(config.width, config.depth))
    model = make_convnet(distil_spec)
    experts = expert_source(model, data, experts_dir, progress)
    setup = method.setup(config, model, data, base.Services(experts, config.seed))
    if not _logged(run, "init"):
        run.log(event="init", **setup.record)
    mesh = parallel.runs_mesh(setup.state.images.shape[0])
    state, resources = method.shard(setup.state, setup.resources, mesh)
    with Checkpointer(run.path / "checkpoints", max_to_keep=2) as ckpt:
        step, state = ckpt.restore_latest(state)
        run.keep_events(lambda e: _kept_on_resume(e, step or 0))
        state = distill_loop(model, config, state, resources, ckpt, run, progress)
    _check_updates(state, config)
    history = [e for e in run.read_events() if e["event"] == "distill"]
    models = cross_arch.networks(config.eval_nets, eval_spec, config.eval_width_scale)
    return _evaluate_and_report(config, data, models, state, history, setup.record, run, progress)


def _prepare(config: DistillConfig, run, split_changed: bool, cache) -> tuple[Prepared, bool]:
    """The prepared data, and whether this session prepared it afresh.

    A fresh trust split is read from the cache directory `cache` when a run
    of any method made it there (`prepare.split_cache_path`), else computed
    and cached.

    Once an earlier session of the run got through the data stage (its
    ``noise`` event is logged and, with a trust config, ``trust_split.npz``
    saved), the split is read back and nothing is logged again, unless the
    config changed what the split depends on; otherwise the stage runs, its
    events replacing those of an earlier, unfinished attempt.
    """
    saved = run.path / "trust_split.npz"
    done = hosts.decide(lambda: _logged(run, "noise") and (config.trust is None or saved.exists()))
    if done and not split_changed:
        return prepare_for(config, saved_split=saved if config.trust else None), False
    run.keep_events(lambda e: e["event"] not in _SETUP_EVENTS)
    if run.writes:
        saved.unlink(missing_ok=True)
    return prepare_for(config, run, split_cache=cache), True


def _logged(run, event: str) -> bool:
    """Whether `run` holds an event of this kind."""
    return any(e["event"] == event for e in run.read_events())


def _kept_on_resume(event: dict, step: int) -> bool:
    """Whether an earlier session's event stays when the run resumes from iteration `step`.

    The iterations after the restored checkpoint are run again and the
    evaluation restarts, so their events go.
    """
    return event["event"] != "eval" and event.get("iteration", 0) <= step


def _check_updates(state, config: DistillConfig) -> None:
    """Warns about skipped updates on stderr; raises `NoUpdatesError` if none was applied."""
    done, skipped = int(state.iteration), int(state.skipped)
    if not skipped:
        return
    threshold = getattr(config.settings, "threshold", None)
    why = "the loss or its gradient was non-finite"
    if threshold is not None:
        why = f"the matching loss was non-finite or above --threshold {threshold:g}"
    if skipped == done:
        higher = "" if threshold is None else " or a higher --threshold"
        raise NoUpdatesError(
            f"all {done} distillation updates were skipped ({why}): the distilled set is its "
            f"initialisation; start a new run with a lower --lr-img{higher}"
        )
    print(
        f"jaxdd: warning: {skipped} of {done} distillation updates were skipped ({why})",
        file=sys.stderr,
        flush=True,
    )


def _evaluate_and_report(config, data: Prepared, models, state, history, record, run, progress):
    """Evaluates the distilled set, saves its pictures and arrays, writes ``summary.json``.

    `data` is what was distilled from: its test set, pixel space, size,
    label noise and validation split; `models` the evaluation networks by
    name (the first one's accuracy is the summary's); `record` is the
    method's init record.
    """
    ds, space, method = data.ds, data.space, base.get_method(config.method)
    out = hosts.fetch(method.distilled(config, state))
    out = out._replace(lr=None if out.lr is None else float(out.lr))
    train = {"train_size": len(data.labels), "train_label_noise": data.label_noise()}
    eval_cfg = config.eval if out.lr is None else dataclasses.replace(config.eval, lr=out.lr)
    results = cross_arch.evaluate_networks(
        models,
        out.images,
        out.targets,
        data,
        eval_cfg,
        key=rng.stream(config.seed, "eval"),
        progress=progress,
        on_eval=lambda name, e: run.log(event="eval", network=name, **e),
    )
    result = results[config.eval_nets[0]]
    extra = hosts.fetch(method.summary(state))
    if run.writes:
        _save_distilled(run, config, ds, space, out, extra, history)
    summary = {
        "dataset": ds.name,
        "method": config.method,
        "noise": config.noise,
        "ipc": config.settings.ipc,
        "images": int(out.images.shape[0]),
        **result.summary(),
        "eval_net": config.eval_nets[0],
        "networks": cross_arch.summaries(results, config.eval_width_scale),
        **extra,
        "iterations": int(state.iteration),
        "skipped_updates": int(state.skipped),
        "init_filled": record["filled"],
        **train,
    }
    run.write_json("summary.json", summary)
    if len(results) > 1:
        cross_arch.write_table(run, summary)
    return summary, run


def _save_distilled(run, config, ds, space, out: base.Distilled, extra: dict, history) -> None:
    """Writes ``distilled.png``, ``distilled.npz`` and ``curves.png`` (if `history`) to `run`."""
    images = np.asarray(space.decode(out.images))
    learned = np.asarray(jnp.argmax(out.labels, -1))
    legend = "; red = learned label differs" if np.any(learned != out.classes) else ""
    report.save_image_grid(
        run.path / "distilled.png",
        images,
        out.classes,
        ds.class_names,
        learned_labels=learned,
        per_class=None,
        title=f"{config.method} distilled set ({config.noise}{legend})",
    )
    lr = {} if out.lr is None else {"eval_lr": np.float64(out.lr)}
    np.savez_compressed(
        run.path / "distilled.npz",
        images=np.asarray(out.images),
        labels=np.asarray(out.labels),
        targets=np.asarray(out.targets),
        classes=np.asarray(out.classes),
        **lr,
        **extra,
        **{name: np.asarray(value) for name, value in out.arrays.items()},
    )
    if history:
        its = [h["iteration"] for h in history]
        method = base.get_method(config.method)
        curves = {title: [h[name] for h in history] for name, title in method.curves.items()}
        report.save_curves(run.path / "curves.png", its, curves, xlabel="iteration")
