"""The noisy-label baselines of docs/algorithms.md §0.6 that need no distillation.

* ``erm``: train the ConvNet on the whole (noisy) training set; report the
  final and the best-epoch test accuracy (the latter is test-set selection).
* ``random``: `ipc` random real images per class, with their (noisy) labels,
  evaluated with the distilled-set protocol (0.5).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from jaxdd import cross_arch, evaluate, report, rng, validate
from jaxdd.errors import ConfigError
from jaxdd.models.zoo import EvalNet
from jaxdd.ops.train import TrainConfig
from jaxdd.prepare import prepare_for
from jaxdd.trust.dual import TADConfig


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
    """One baseline run.

    Attributes:
      dataset: registry name (`jaxdd datasets` lists them).
      noise: label-noise spec, e.g. ``symmetric:0.4`` or ``asymmetric:0.4:1=7,7=1``
        (`jaxdd.data.noise.parse_noise`).
      kind: ``erm`` (all noisy data) or ``random`` (ipc random images/class).
      ipc: images per class for ``random``.
      width: ConvNet width.
      depth: ConvNet depth (None: `depth_for` the image size).
      eval_nets: the networks trained (``convnet``: the ConvNet above; the
        references' AlexNet / VGG-11 / ResNet-18 variants, `jaxdd.models.zoo`);
        the summary's top-level accuracy is the first one's, every one's is
        under ``networks``.
      eval_width_scale: factor on the channels of the non-ConvNet networks.
      train: the training protocol of the evaluated networks.
      eval_every: test every this many epochs (curves, best epoch).
      max_train: use a stratified subset of this many training images
        (reduced CPU configurations); None uses all.
      val_fraction: hold out this share of the training data (stratified on
        the given labels) as the noisy validation split; the summary then
        reports ``val_accuracy_*`` against its given labels (model selection
        without clean labels). 0: none.
      zca: ZCA-whiten the images.
      trust: train on TAD's trusted space (or the small-loss selection).
      seed: seeds network inits, data order, augmentation and subsets.
      noise_seed: seeds the label noise.
    """

    dataset: str = "digits"
    noise: str = "symmetric:0.4"
    kind: Literal["erm", "random"] = "random"
    ipc: int = 10
    width: int = 128
    depth: int | None = None
    eval_nets: tuple[EvalNet, ...] = ("convnet",)
    eval_width_scale: float = 1.0
    train: TrainConfig = TrainConfig()
    eval_every: int | None = None
    max_train: int | None = None
    val_fraction: float = 0.0
    zca: bool = False
    trust: TADConfig | None = None
    seed: int = 0
    noise_seed: int = 0

    def unused(self) -> dict[str, str]:
        """The settings this run ignores as configured: dotted path -> why."""
        unused = {} if self.kind == "random" else {"ipc": "only --kind random takes a subset"}
        trust = validate.trust_unused(self.trust)
        nets = validate.eval_nets_unused(self.eval_nets)
        return unused | trust | nets | validate.train_unused(self.train, "train")


def validate_run(
    config: BaselineConfig, *, out_root: str, label: validate.Label = validate.plain
) -> None:
    """Everything `run_baseline` would refuse, checked before it starts any work.

    Types and ranges of every field; the data (the dataset loads, the test
    classes are trained on and, for ``random``, every class holds `ipc`
    samples by its given labels); that `out_root` can be written. Nothing
    is created.
    """
    validate.check_tree(config, label=label)
    validate.check_eval_nets(config.eval_nets, label=label)
    validate.check_data(
        config.dataset,
        config.noise,
        noise_seed=config.noise_seed,
        max_train=config.max_train,
        val_fraction=config.val_fraction,
        ipc=config.ipc if config.kind == "random" else None,
        label=label,
    )
    validate.check_dir(out_root, f"the run directory root {out_root}")


def random_subset(
    labels: np.ndarray, ipc: int, num_classes: int, *, seed: int | np.random.Generator
) -> np.ndarray:
    """Indices of `ipc` random examples of every class (by the given labels).

    Args:
      labels: ``[N] int`` labels the subset is drawn by (noisy ones, usually).
      ipc: examples per class.
      num_classes: C.
      seed: numpy seed or generator.

    Returns:
      ``[C * ipc] int64`` indices, class-major.
    """
    counts = np.bincount(labels, minlength=num_classes)
    if ipc < 1 or ipc > counts.min():
        worst = int(np.argmin(counts))
        raise ConfigError(
            f"ipc={ipc} is not possible: class {worst} has only {counts[worst]} training "
            f"images; use --ipc between 1 and {counts.min()}"
        )
    rng = np.random.default_rng(seed)
    picks = [
        rng.choice(np.flatnonzero(labels == c), ipc, replace=False) for c in range(num_classes)
    ]
    return np.concatenate(picks)


def run_baseline(
    config: BaselineConfig, *, out_root: str = "runs", progress: bool = True
) -> tuple[dict, report.RunDir]:
    """Loads data, injects noise, trains and evaluates one baseline; writes a run dir.

    Returns:
      the summary dict (also written to ``summary.json``) and the run directory.
    """
    run = report.RunDir(out_root, f"baseline-{config.kind}-{report.slug(config.dataset)}")
    run.write_json("config.json", config)
    data = prepare_for(config, run)
    ds = data.ds
    keep = np.arange(len(data.idx))
    if config.kind == "random":
        pool = data.init_pool  # the trusted space under diversion
        picks = rng.numpy_rng(config.seed, "baseline-subset")
        keep = pool[random_subset(data.labels[pool], config.ipc, ds.num_classes, seed=picks)]
    elif config.kind != "erm":
        raise ConfigError(f"unknown baseline kind {config.kind!r}: use erm or random")
    models = cross_arch.networks(
        config.eval_nets, data.spec(config.width, config.depth), config.eval_width_scale
    )
    results = cross_arch.evaluate_networks(
        models,
        data.x[keep],
        data.targets(keep, weighted=config.kind == "erm"),
        data,
        config.train,
        key=rng.stream(config.seed, "baseline"),
        eval_every=config.eval_every,
        progress=progress,
        on_eval=lambda name, entry: run.log(event="eval", network=name, **entry),
    )
    idx, labels = data.idx[keep], data.labels[keep]
    report.save_image_grid(
        run.path / "train_set.png",
        ds.x_train[idx],
        labels,
        ds.class_names,
        clean_labels=ds.y_train[idx],
        title=f"{config.kind} training set ({config.noise}; red = mislabelled)",
    )
    summary = _summary(config, ds, data.noisy, idx, labels, results[config.eval_nets[0]])
    summary["networks"] = cross_arch.summaries(results, config.eval_width_scale)
    run.write_json("summary.json", summary)
    if len(results) > 1:
        cross_arch.write_table(run, summary)
    return summary, run


def _summary(config, ds, noisy, idx, labels, result: evaluate.EvalResult) -> dict:
    best = result.best_epoch()
    return {
        "dataset": ds.name,
        "kind": config.kind,
        "noise": config.noise,
        "noise_rate_realised": noisy.rate,
        "train_size": int(len(idx)),
        "train_label_noise": float(np.mean(labels != ds.y_train[idx])),
        **result.summary(),
        "best_epoch_test_selected": {
            "epoch": best["epoch"],
            "accuracy_mean": float(np.mean(best["test_accuracy"][0])),
        },
    }
