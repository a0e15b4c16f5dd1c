"""Initial synthetic images and labels for trajectory matching (docs/algorithms.md §1.3).

* ``real``: `ipc` random real images per class (by the given labels).
* ``correct`` (DATM's samples_predicted_correctly): per class, shuffle the
  real images and keep the first `ipc` that the first expert's final
  snapshot assigns to their given label (with noisy labels this already
  filters out many mislabelled images). If a class has fewer such images,
  the rest are filled with random images of the class and counted.
* Soft labels, as DATM sets them for each rule: with ``correct``, the logits
  of the experts' final snapshots on each chosen image, averaged over the
  experts that classify it as its given label (an image no expert gets right
  takes the mean over all experts); with ``real``, the logits of the first
  expert's final snapshot alone.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdd.models.base import Model, Params

_CANDIDATES_PER_IMAGE = 16


class SyntheticInit(NamedTuple):
    """Indices into the real set and initial labels.

    Attributes:
      indices: ``[C·ipc]`` chosen real images, class-major.
      labels: ``[C·ipc, C]`` float32 label logits (soft) or one-hot (hard).
      filled: how many images were not predicted correctly (``correct`` only).
    """

    indices: np.ndarray
    labels: np.ndarray
    filled: int


def _final_snapshots(trajectories: Params) -> Params:
    return jax.tree.map(lambda leaf: leaf[:, -1], trajectories)


def _first_expert_final(trajectories: Params) -> Params:
    """The first expert's final snapshot: DATM's filter, and its ``real``-init labeller."""
    return jax.tree.map(lambda leaf: leaf[0], _final_snapshots(trajectories))


def _logits(model: Model, params: Params, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """``[N, C]`` logits of one network, batched on the host side."""
    apply = jax.jit(model.apply)
    return np.concatenate(
        [np.asarray(apply(params, x[i : i + batch])) for i in range(0, len(x), batch)]
    )


def choose_images(
    model: Model,
    trajectories: Params,
    x: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    ipc: int,
    *,
    how: str,
    seed: int | np.random.Generator,
) -> tuple[np.ndarray, int]:
    """``([C·ipc] indices, filled)`` by the ``real`` or ``correct`` rule."""
    rng = np.random.default_rng(seed)
    first_expert = _first_expert_final(trajectories)
    chosen, filled = [], 0
    for c in range(num_classes):
        members = rng.permutation(np.flatnonzero(labels == c))
        if len(members) < ipc:
            raise ValueError(f"class {c} has {len(members)} images < ipc={ipc}")
        if how == "real":
            chosen.append(members[:ipc])
            continue
        candidates = members[: ipc * _CANDIDATES_PER_IMAGE]
        pred = _logits(model, first_expert, x[candidates]).argmax(-1)
        good = candidates[pred == c][:ipc]
        rest = np.setdiff1d(members, good, assume_unique=True)[: ipc - len(good)]
        filled += ipc - len(good)
        chosen.append(np.concatenate([good, rest]))
    return np.concatenate(chosen), filled


def expert_label_logits(
    model: Model, trajectories: Params, x: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """``[n, C]`` mean final-expert logits over the experts right about each image."""
    finals = _final_snapshots(trajectories)
    logits = jax.jit(jax.vmap(model.apply, in_axes=(0, None)))(finals, jnp.asarray(x))
    logits = np.asarray(logits)  # [E, n, C]
    right = logits.argmax(-1) == labels[None]  # [E, n]
    weights = np.where(right.any(0, keepdims=True), right, True).astype(np.float32)
    return (logits * weights[..., None]).sum(0) / weights.sum(0)[:, None]


def initialise(
    model: Model,
    trajectories: Params,
    x: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    ipc: int,
    *,
    how: str,
    soft_labels: bool,
    seed: int | np.random.Generator,
) -> SyntheticInit:
    """Chooses the initial images and labels.

    Args:
      model: the expert network.
      trajectories: expert snapshots, leaves ``[E, T + 1, ...]``.
      x: ``[N, H, W, C]`` real images (normalised) the synthetic set starts from.
      labels: ``[N]`` their given (possibly noisy or recalibrated) labels.
      num_classes: C.
      ipc: images per class.
      how: ``correct`` or ``real``.
      soft_labels: expert-logit labels (DATM; see the module docstring for
        which experts give them) or one-hot (MTT).
      seed: numpy seed (or generator) of the shuffles.
    """
    if how not in ("correct", "real"):
        raise ValueError(f"unknown init {how!r}: use 'correct' or 'real'")
    idx, filled = choose_images(
        model, trajectories, x, labels, num_classes, ipc, how=how, seed=seed
    )
    if soft_labels and how == "real":
        y = _logits(model, _first_expert_final(trajectories), x[idx])
    elif soft_labels:
        y = expert_label_logits(model, trajectories, x[idx], labels[idx])
    else:
        y = np.eye(num_classes, dtype=np.float32)[labels[idx]]
    return SyntheticInit(idx, y.astype(np.float32), filled)
