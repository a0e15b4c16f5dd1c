"""The noisy-label baselines of ALGORITHMS.md 0.6 that need no distillation.

* ``erm``: train the ConvNet on the whole (noisy) training set; report the
  final and the best-epoch test accuracy (the latter is test-set selection).
* ``random``: `ipc` random real images per class, with their (noisy) labels,
  evaluated with the distilled-set protocol (0.5).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import numpy as np

from jaxdd import evaluate, report
from jaxdd.data import noise as noise_lib
from jaxdd.data.dataset import Dataset
from jaxdd.data.preprocess import normalize
from jaxdd.data.registry import load_dataset
from jaxdd.errors import ConfigError
from jaxdd.models.convnet import ConvNetSpec, depth_for, make_convnet
from jaxdd.ops.losses import one_hot
from jaxdd.ops.train import TrainConfig


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
    """One baseline run.

    Attributes:
      dataset: registry name (`jaxdd datasets` lists them).
      noise: label-noise spec (`jaxdd.data.noise.parse_noise`).
      kind: ``erm`` (all noisy data) or ``random`` (ipc random images/class).
      ipc: images per class for ``random``.
      width: ConvNet width.
      depth: ConvNet depth (None: `depth_for` the image size).
      train: the training protocol of the evaluated networks.
      eval_every: test every this many epochs (curves, best epoch).
      max_train: use a stratified subset of this many training images
        (reduced CPU configurations); None uses all.
      seed: seeds network inits, data order, augmentation and subsets.
      noise_seed: seeds the label noise.
    """

    dataset: str = "digits"
    noise: str = "symmetric:0.4"
    kind: Literal["erm", "random"] = "random"
    ipc: int = 10
    width: int = 128
    depth: int | None = None
    train: TrainConfig = TrainConfig()
    eval_every: int | None = None
    max_train: int | None = None
    seed: int = 0
    noise_seed: int = 0


def random_subset(labels: np.ndarray, ipc: int, num_classes: int, *, seed: int) -> np.ndarray:
    """Indices of `ipc` random examples of every class (by the given labels).

    Args:
      labels: ``[N] int`` labels the subset is drawn by (noisy ones, usually).
      ipc: examples per class.
      num_classes: C.
      seed: numpy seed.

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


def stratified_cap(labels: np.ndarray, limit: int, *, seed: int) -> np.ndarray:
    """Sorted indices of a class-stratified random subset of about `limit` examples."""
    rng = np.random.default_rng(seed)
    frac = min(1.0, limit / len(labels))
    picks = [
        rng.permutation(np.flatnonzero(labels == c))[: max(1, round(frac * np.sum(labels == c)))]
        for c in np.unique(labels)
    ]
    return np.sort(np.concatenate(picks))


def _model_for(ds: Dataset, config: BaselineConfig):
    depth = config.depth or depth_for(min(ds.image_shape[:2]))
    return make_convnet(ConvNetSpec(ds.num_classes, ds.image_shape, config.width, depth))


def run_baseline(
    config: BaselineConfig, *, out_root: str = "runs", progress: bool = True
) -> tuple[dict, report.RunDir]:
    """Loads data, injects noise, trains and evaluates one baseline; writes a run dir.

    Returns:
      the summary dict (also written to ``summary.json``) and the run directory.
    """
    ds = load_dataset(config.dataset)
    noisy = noise_lib.make_noisy(ds, config.noise, seed=config.noise_seed)
    run = report.RunDir(out_root, f"baseline-{config.kind}-{ds.name.replace(':', '_')}")
    run.write_json("config.json", config)
    run.log(event="noise", rate=noisy.rate, transition=noisy.transition)

    idx = np.arange(len(ds.y_train))
    if config.max_train is not None:
        idx = stratified_cap(noisy.labels, config.max_train, seed=config.seed)
    if config.kind == "random":
        idx = idx[random_subset(noisy.labels[idx], config.ipc, ds.num_classes, seed=config.seed)]
    elif config.kind != "erm":
        raise ConfigError(f"unknown baseline kind {config.kind!r}: use erm or random")

    mean, std = ds.channel_mean, ds.channel_std
    x = normalize(ds.x_train[idx], mean, std)
    targets = one_hot(noisy.labels[idx], ds.num_classes)
    result, _ = evaluate.train_and_evaluate(
        _model_for(ds, config),
        x,
        targets,
        normalize(ds.x_test, mean, std),
        ds.y_test,
        config.train,
        key=jax.random.key(config.seed),
        eval_every=config.eval_every,
        progress=progress,
        on_eval=lambda entry: run.log(event="eval", **entry),
    )
    report.save_image_grid(
        run.path / "train_set.png",
        ds.x_train[idx],
        noisy.labels[idx],
        ds.class_names,
        clean_labels=ds.y_train[idx],
        title=f"{config.kind} training set ({config.noise}; red = mislabelled)",
    )
    summary = _summary(config, ds, noisy, idx, result)
    run.write_json("summary.json", summary)
    return summary, run


def _summary(config, ds, noisy, idx, result: evaluate.EvalResult) -> dict:
    best = result.best_epoch()
    return {
        "dataset": ds.name,
        "kind": config.kind,
        "noise": config.noise,
        "noise_rate_realised": noisy.rate,
        "train_size": int(len(idx)),
        "train_label_noise": float(np.mean(noisy.labels[idx] != ds.y_train[idx])),
        "accuracy_mean": result.mean,
        "accuracy_std": result.std,
        "accuracies": result.accuracies[0].tolist(),
        "best_epoch_test_selected": {
            "epoch": best["epoch"],
            "accuracy_mean": float(np.mean(best["test_accuracy"][0])),
        },
    }
