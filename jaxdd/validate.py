"""Checks of a run's settings, made before any work starts (docs/architecture.md, principle 7).

* `check_tree`: every leaf of a config tree has its annotated type (Literal
  choices included) and lies in its range (`BOUNDS`).
* `check_links`: the paths a root declares ``LINKED`` hold one value.
* `check_dir`: a directory a run will write can be created and written to.
* `check_data`: the dataset loads, every test class occurs in training, and
  with the given (noisy) labels — after the stratified cap — every class has
  at least `ipc` training samples.
* `trust_unused`, `train_unused`: the fields a `TADConfig` / `TrainConfig`
  ignores in its mode (what ``unused`` of a root config reports).

Every failure is a `ConfigError` of one line. `label` arguments turn a
dotted path into the name the user knows it by (a command-line flag).
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import tempfile
from collections.abc import Callable
from typing import Any

from jaxdd import config as config_lib
from jaxdd.errors import ConfigError

Label = Callable[[str], str]


def plain(path: str) -> str:
    """The default `Label`: the dotted path itself."""
    return path


@dataclasses.dataclass(frozen=True)
class Bound:
    """A closed or open interval a number must lie in."""

    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False

    def holds(self, value: float) -> bool:
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.open_low else '>='} {self.low}"
        left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
        return f"in {left}{self.low}, {self.high}{right}"


COUNT = Bound(1)
NON_NEGATIVE = Bound(0)
POSITIVE = Bound(0, open_low=True)
UNIT = Bound(0, 1)
MOMENTUM = Bound(0, 1, open_high=True)
FRACTION = Bound(0, 1, open_low=True)
INTERIOR = Bound(0, 1, open_low=True, open_high=True)
VALIDATION = Bound(0, 0.5)  # a held-out share: more than half would leave less to learn from


# (class name, field) -> range; a tuple's items are checked one by one, None
# and non-numbers (``"given"``) are left to the type check.
BOUNDS: dict[str, dict[str, Bound]] = {
    "DistillConfig": dict(
        noise_seed=NON_NEGATIVE,
        width=COUNT,
        depth=COUNT,
        eval_width_scale=POSITIVE,
        max_train=COUNT,
        val_fraction=VALIDATION,
        checkpoint_every=COUNT,
        log_every=COUNT,
        seed=NON_NEGATIVE,
    ),
    "BaselineConfig": dict(
        ipc=COUNT,
        width=COUNT,
        depth=COUNT,
        eval_width_scale=POSITIVE,
        eval_every=COUNT,
        max_train=COUNT,
        val_fraction=VALIDATION,
        seed=NON_NEGATIVE,
        noise_seed=NON_NEGATIVE,
    ),
    "DATMConfig": dict(
        ipc=COUNT,
        iterations=COUNT,
        syn_steps=COUNT,
        expert_epochs=COUNT,
        min_start_epoch=NON_NEGATIVE,
        current_max_start_epoch=COUNT,
        max_start_epoch=COUNT,
        expansion_end_epoch=COUNT,
        lr_img=POSITIVE,
        lr_lr=NON_NEGATIVE,
        lr_y=NON_NEGATIVE,
        momentum_img=MOMENTUM,
        momentum_lr=MOMENTUM,
        momentum_y=MOMENTUM,
        lr_teacher=POSITIVE,
        min_syn_lr=POSITIVE,
        threshold=POSITIVE,
        batch_syn=COUNT,
    ),
    "DMConfig": dict(
        ipc=COUNT, iterations=COUNT, batch_real=COUNT, lr_img=POSITIVE, momentum_img=MOMENTUM
    ),
    "DANCEConfig": dict(
        ipc=COUNT,
        iterations=COUNT,
        batch_real=COUNT,
        lr_img=POSITIVE,
        momentum_img=MOMENTUM,
        factor=COUNT,
    ),
    "ExpertConfig": dict(
        num_experts=COUNT,
        epochs=COUNT,
        lr=POSITIVE,
        batch_size=COUNT,
        epoch_size=COUNT,
        momentum=MOMENTUM,
        weight_decay=NON_NEGATIVE,
        lr_milestones=INTERIOR,
        lr_gamma=POSITIVE,
        cutmix=UNIT,
    ),
    "TrainConfig": dict(
        lr=POSITIVE,
        epochs=COUNT,
        batch_size=COUNT,
        momentum=MOMENTUM,
        weight_decay=NON_NEGATIVE,
        lr_milestones=INTERIOR,
        lr_gamma=POSITIVE,
        warmup_steps=NON_NEGATIVE,
        consistency=NON_NEGATIVE,
        cutmix=UNIT,
        cutmix_beta=POSITIVE,
        num_seeds=COUNT,
        eval_batch=COUNT,
        epoch_steps=COUNT,
    ),
    "TADConfig": dict(
        rounds=COUNT,
        referees=COUNT,
        width=COUNT,
        warmup_steps=NON_NEGATIVE,
        steps_per_round=NON_NEGATIVE,
        lr=POSITIVE,
        batch_size=COUNT,
        consistency=NON_NEGATIVE,
        tau_start=UNIT,
        tau_end=UNIT,
        kappa_warm=UNIT,
        kappa=UNIT,
        shrinkage=UNIT,
        anchor_quantile=UNIT,
        expel_below=UNIT,
        folds=COUNT,
        gmm_iterations=COUNT,
        signal_epochs=COUNT,
        keep_ratio=FRACTION,
    ),
}


def check_tree(config: Any, *, label: Label = plain) -> None:
    """Every leaf of `config` of its annotated type and within its `BOUNDS`."""
    for leaf, owner in _owned_leaves(config):
        name = label(leaf.path)
        if not config_lib.fits(leaf.value, leaf.annotation):
            raise ConfigError(
                f"{name} must be {config_lib.describe_type(leaf.annotation)}, got {leaf.value!r}"
            )
        bound = BOUNDS.get(owner, {}).get(leaf.path.rsplit(".", 1)[-1])
        values = leaf.value if isinstance(leaf.value, tuple) else (leaf.value,)
        for value in values:
            if bound and _is_number(value) and not bound.holds(value):
                raise ConfigError(f"{name} must be {bound}, got {value}")


def _owned_leaves(config: Any):
    """``(leaf, name of the class that declares it)`` for every present leaf."""
    owners = {"": type(config).__name__}
    for leaf in config_lib.leaves(config):
        head = leaf.path.rpartition(".")[0]
        if head not in owners:
            owners[head] = type(config_lib.get(config, head)).__name__
        yield leaf, owners[head]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_links(config: Any, *, label: Label = plain) -> None:
    """The ``LINKED`` paths of `config`'s root class hold one value each.

    Paths the config ignores as configured (its ``unused()``) are left out.
    """
    unused = config.unused() if hasattr(config, "unused") else {}
    for group in getattr(type(config), "LINKED", ()):
        group = tuple(path for path in group if path not in unused)
        values = [config_lib.get(config, path) for path in group]
        if any(v != values[0] for v in values):
            given = ", ".join(
                f"{p}={config_lib.format_value(v)}" for p, v in zip(group, values, strict=True)
            )
            raise ConfigError(
                f"{given} disagree: they are one setting; give them one value "
                f"(setting {label(group[0])} on the command line sets all of them)"
            )


def check_dir(path: str | os.PathLike, what: str) -> None:
    """`path` is, or can be made, a directory this process can write to.

    Nothing is left behind: the nearest existing ancestor is probed with a
    temporary file.

    Args:
      path: the directory a run will create or write.
      what: how the user gave it (``--out runs``), for the message.
    """
    target = pathlib.Path(path).expanduser().absolute()
    probe = target
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        where = "is a file" if probe == target else f"lies under the file {probe}"
        raise ConfigError(f"{what}: {target} {where}, not a directory: give a directory path")
    try:
        handle, name = tempfile.mkstemp(prefix=".jaxdd-probe-", dir=probe)
        os.close(handle)
        os.unlink(name)
    except OSError as err:
        raise ConfigError(
            f"{what}: cannot write in {probe} ({err.strerror}): give a writable directory"
        ) from None


def check_data(
    dataset: str,
    noise: str,
    *,
    noise_seed: int,
    max_train: int | None,
    ipc: int | None,
    val_fraction: float = 0.0,
    ipc_path: str = "ipc",
    label: Label = plain,
) -> None:
    """The data a run would train on exists and suits it.

    Loads `dataset` and draws its noise (both host-side and fast for the
    embedded and IDX datasets), then refuses a test class that never occurs
    in training and, when `ipc` is given, a class with fewer than `ipc`
    samples by the given labels after noise and the stratified cap (the
    labels an image init or a random subset draws from; under trust
    diversion it draws from a subset of them). `ipc_path` is where the
    tree holds `ipc`, for the message.
    """
    import numpy as np

    from jaxdd.data.noise import make_noisy
    from jaxdd.data.registry import load_dataset
    from jaxdd.prepare import carve_validation, stratified_cap

    ds = load_dataset(dataset)
    missing = np.setdiff1d(np.unique(ds.y_test), np.unique(ds.y_train))
    if missing.size:
        c = int(missing[0])
        raise ConfigError(
            f"dataset {ds.name!r}: class {c} ({ds.class_names[c]!r}) is in the test set but not "
            "in the training set: add training images of it or remove it from the test set"
        )
    labels = make_noisy(ds, noise, seed=noise_seed).labels
    if max_train is not None:
        # How many samples of each class the cap keeps does not depend on its seed.
        labels = labels[stratified_cap(labels, max_train, seed=0)]
    if val_fraction > 0:
        labels = labels[carve_validation(labels, val_fraction, seed=0)[0]]  # counts: seed-free
    if ipc is not None:
        _check_ipc(labels, ds.class_names, ipc, label(ipc_path), max_train, label)


def _check_ipc(labels, class_names, ipc, name: str, max_train, label: Label) -> None:
    import numpy as np

    counts = np.bincount(labels, minlength=len(class_names))
    worst = int(np.argmin(counts))
    if ipc <= counts[worst]:
        return
    capped = f" among the {len(labels)} that {label('max_train')} keeps" if max_train else ""
    fix = f"give at most {counts[worst]}" if counts[worst] else "add training images of it"
    raise ConfigError(
        f"{ipc} images per class ({name}) are not possible: class {worst} "
        f"({class_names[worst]!r}) has only {counts[worst]} training images by the given "
        f"labels{capped}; {fix}"
    )


_TAD_ONLY = (
    "rounds",
    "steps_per_round",
    "tau_start",
    "tau_end",
    "kappa_warm",
    "kappa",
    "shrinkage",
    "anchor_quantile",
    "expel_below",
    "gmm_iterations",
    "signal",
    "signal_epochs",
    "recall_margin",
)


def trust_unused(trust: Any, prefix: str = "trust") -> dict[str, str]:
    """The `TADConfig` fields its mode ignores: path -> why."""
    if trust is None:
        return {}
    if trust.mode == "small-loss":
        why = "the small-loss selection has no GMM partition or recalibration (trust.mode=tad)"
        return {f"{prefix}.{name}": why for name in _TAD_ONLY}
    return {f"{prefix}.keep_ratio": "only the small-loss selection keeps a fixed ratio"}


def train_unused(train: Any, prefix: str) -> dict[str, str]:
    """The `TrainConfig` fields its optimizer (and CutMix setting) ignore: path -> why."""
    unused = {}
    if not train.cutmix:
        unused[f"{prefix}.cutmix_beta"] = f"CutMix is off ({prefix}.cutmix=0)"
    if train.optimizer == "sgd":
        return unused | {f"{prefix}.warmup_steps": f"only Adam warms up ({prefix}.optimizer=sgd)"}
    why = f"Adam follows warmup + cosine, without momentum ({prefix}.optimizer=adam)"
    names = ("momentum", "lr_milestones", "lr_gamma")
    return unused | {f"{prefix}.{name}": why for name in names}


def check_eval_nets(nets: tuple[str, ...], *, label: Label = plain) -> None:
    """At least one evaluation network, each named once."""
    if not nets or len(set(nets)) < len(nets):
        raise ConfigError(
            f"{label('eval_nets')} must name each evaluation network once, got "
            f"{','.join(nets) or '()'}"
        )


def eval_nets_unused(nets: tuple[str, ...]) -> dict[str, str]:
    """``eval_width_scale`` when no evaluation network but the ConvNet is asked for."""
    if all(net == "convnet" for net in nets):
        return {"eval_width_scale": "it scales the non-ConvNet --eval-nets, and there are none"}
    return {}
