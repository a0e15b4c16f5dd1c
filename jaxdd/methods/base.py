"""What the distillation driver needs of a method, and the registry of methods.

`jaxdd.distill` runs every method the same way: prepare the (noisy,
possibly trust-diverted) data, `Method.setup` the state and what the step
reads (expert trajectories, real-image tables), jit `Method.step` once,
loop it with checkpoints, then evaluate `Method.distilled` and report. A
method's state is a NamedTuple checkpointed whole; it must have the fields
``iteration`` (int32 scalar, iterations done) and ``skipped`` (int32 scalar,
updates skipped for non-finite values or a gate), which the driver reads.

A method's settings live in the `DistillConfig` field `Method.field`; every
setting of the other methods' fields is unused by its runs (`unused`).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

import jax
import numpy as np

from jaxdd import rng
from jaxdd.models.convnet import ConvNetSpec, Model


class Distilled(NamedTuple):
    """A distilled set as evaluation and the report take it.

    Attributes:
      images: ``[N_s, H, W, C]`` images in the normalised pixel space.
      labels: ``[N_s, C]`` the labels as stored (logits, or one-hot).
      targets: ``[N_s, C]`` the targets evaluation networks train on.
      lr: the learned evaluation lr, or None for ``eval.lr``.
      classes: ``[N_s] int`` the class each image was made for.
      arrays: more arrays ``distilled.npz`` keeps (e.g. DANCE's stored images,
        of which `images` is the decoding).
    """

    images: jax.Array
    labels: jax.Array
    targets: jax.Array
    lr: float | None
    classes: np.ndarray
    arrays: Mapping[str, Any] = {}


class Setup(NamedTuple):
    """What `Method.setup` returns.

    Attributes:
      state: the method's state before iteration 0.
      resources: the read-only pytree the step takes (on the host; `Method.shard`
        places it).
      record: the ``init`` event's fields: ``filled`` (images a filtered init
        had to fill unfiltered) and ``label_noise`` (diagnostic: the share of
        initial images whose given label is wrong), JSON values.
    """

    state: Any
    resources: Any
    record: dict


@dataclasses.dataclass(frozen=True)
class Services:
    """What the driver lends a method's setup.

    Attributes:
      experts: ``(config) → trajectories``: expert snapshots trained on the
        prepared data by ``config.experts`` (cached; leaves ``[E, T + 1, ...]``).
      seed: the run's seed (`jaxdd.rng` streams are named from it).
    """

    experts: Callable[[Any], Any]
    seed: int


class Method(Protocol):
    """One distillation method behind the driver (see the module docstring).

    Attributes:
      name: the ``DistillConfig.method`` value.
      field: the `DistillConfig` field holding the settings (an ``ipc`` and an
        ``iterations`` among them).
      uses_experts: whether the run trains (or reads cached) expert trajectories.
      curves: metric name → title of its curve in ``curves.png``.
      shown: metrics on the progress bar.
    """

    name: str
    field: str
    uses_experts: bool
    curves: Mapping[str, str]
    shown: tuple[str, ...]

    def check(self, config: Any, label: Callable[[str], str]) -> None:
        """Raises `ConfigError` for settings this method cannot run with."""

    def unused(self, config: Any) -> dict[str, str]:
        """Dotted paths of `config` this method ignores as configured → why."""

    def defaults(self) -> dict[str, Any]:
        """`DistillConfig` fields a run of this method starts from (e.g. its
        evaluation protocol); the rest are `DistillConfig`'s defaults."""

    def networks(self, config: Any, spec: ConvNetSpec) -> tuple[ConvNetSpec, ConvNetSpec]:
        """``(distillation, evaluation)`` ConvNets from the run's `spec` (`same_network`)."""

    def setup(self, config: Any, model: Model, data: Any, services: Services) -> Setup:
        """The state before iteration 0 and the step's resources, from prepared data."""

    def step(self, model: Model, config: Any, state: Any, resources: Any) -> tuple[Any, dict]:
        """One iteration: pure, jitted once by the driver (state donated)."""

    def shard(self, state: Any, resources: Any, mesh: jax.sharding.Mesh) -> tuple[Any, Any]:
        """`state` and `resources` placed on the mesh's devices."""

    def distilled(self, config: Any, state: Any) -> Distilled:
        """The distilled set in `state`."""

    def summary(self, state: Any) -> dict:
        """Method-specific fields of ``summary.json`` (and ``distilled.npz``)."""


def same_network(config: Any, spec: ConvNetSpec) -> tuple[ConvNetSpec, ConvNetSpec]:
    """`Method.networks` of a method that distils and evaluates with the run's ConvNet."""
    return spec, spec


# Method name → module that defines `METHODS` with it.
_MODULES = {
    "datm": "jaxdd.methods.datm",
    "mtt": "jaxdd.methods.datm",
    "dm": "jaxdd.methods.dm",
    "dance": "jaxdd.methods.dance",
    "rcig": "jaxdd.methods.rcig",
}
NAMES = tuple(_MODULES)


def get_method(name: str) -> Method:
    """The method called `name` (``datm``, ``mtt``, ``dm``, ``dance``, ``rcig``)."""
    if name not in _MODULES:
        raise ValueError(f"unknown method {name!r}: use one of {', '.join(NAMES)}")
    return importlib.import_module(_MODULES[name]).METHODS[name]


def fields() -> tuple[str, ...]:
    """The `DistillConfig` fields that hold some method's settings."""
    return tuple(dict.fromkeys(get_method(name).field for name in NAMES))


def others_unused(config: Any, method: Method) -> dict[str, str]:
    """Every setting in the other methods' fields → "method is X"."""
    from jaxdd import config as config_lib

    why = f"the method is {method.name}"
    return {
        f"{field}.{path}": why
        for field in fields()
        if field != method.field
        for path in config_lib.paths(getattr(config, field))
    }


def random_real_init(data: Any, per_class: int, seed: int) -> tuple[np.ndarray, float]:
    """``(images [C·per_class, H, W, C_in], label noise)``: random real images of each
    class from where an unfiltered init draws (the trusted space under diversion).

    The label noise (the share of the picked images whose given label is
    wrong) is a diagnostic for the ``init`` event.
    """
    pool_x, pool_labels, pool_clean = data.init_candidates(every_sample=False)
    draw = rng.numpy_rng(seed, "init")
    idx = real_per_class(pool_labels, data.ds.num_classes, per_class, draw)
    return np.asarray(pool_x[idx]), float(np.mean(pool_labels[idx] != pool_clean[idx]))


def real_per_class(
    labels: np.ndarray, num_classes: int, ipc: int, rng: np.random.Generator
) -> np.ndarray:
    """``[C·ipc]`` indices: `ipc` random samples of each class, class-major.

    Raises:
      ValueError: a class has fewer than `ipc` samples.
    """
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < ipc:
            raise ValueError(f"class {c} has {len(members)} images < ipc={ipc}")
        chosen.append(rng.permutation(members)[:ipc])
    return np.concatenate(chosen)


def class_tables(
    labels: np.ndarray, num_classes: int, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Padded per-class member tables for sampling real class batches on the device.

    Args:
      labels: ``[n]`` the class of each real sample.
      num_classes: C.
      weights: ``[n]`` per-sample weights (None: 1 each).

    Returns:
      ``(table [C, M] int32, weight [C, M] float32)`` with M the largest class:
      row c lists class c's members, padded with index 0 at weight 0.
    """
    weights = np.ones(len(labels), np.float32) if weights is None else weights
    members = [np.flatnonzero(labels == c) for c in range(num_classes)]
    width = max(1, max(len(m) for m in members))
    table = np.zeros((num_classes, width), np.int32)
    weight = np.zeros((num_classes, width), np.float32)
    for c, m in enumerate(members):
        table[c, : len(m)] = m
        weight[c, : len(m)] = weights[m]
    return table, weight
