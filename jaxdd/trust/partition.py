"""The outer loop of TAD: a jitted, loss-based trust partition (docs/algorithms.md §4.2).

paper: the data is divided into a trusted and an untrusted space by a
class-wise dynamic Gaussian mixture on per-sample losses; distillation is
redirected toward the trusted space.

jaxdd's design:

* losses are min-max normalised to [0, 1] within each class;
* the classes are laid out as rows of a padded ``[C, M]`` table (M ≥ the
  largest class) and fitted together by `jaxdd.trust.gmm.fit_gmm`; a sample's
  trust score is the posterior of the low-mean component of its class's
  mixture;
* a class whose losses are all equal (one sample, or every referee agreeing
  with every label) has nothing to separate: its members score 1, trusted
  whole (a mixture of two identical components would score them ½ and drop
  the class, leaving it no anchor to be recalled to);
* a sample is trusted if its score is strictly above a threshold τ_k that
  moves linearly from τ_start to τ_end over the rounds (`threshold_schedule`),
  and every class keeps at least its best-scored members, so that no class
  is ever dropped whole;
* the whole path losses → table → GMM → mask is one jittable function
  (`partition`); `make_partition` builds the table once on the host and
  returns the jitted ``(losses, tau) → (trusted, scores)``.

`small_loss_selection` is the plain two-stage baseline (per-class small-loss
selection, no mixture, no recalibration), for comparison.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxdd.errors import ConfigError
from jaxdd.trust.gmm import fit_gmm, posterior


def _positions_in_class(
    order: jax.Array, labels: jax.Array, num_classes: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Class, rank within the class and class size of each entry of a class-major `order`."""
    counts = jnp.bincount(labels, length=num_classes)
    starts = jnp.cumsum(counts) - counts
    sorted_labels = labels[order]
    position = jnp.arange(order.shape[0]) - starts[sorted_labels]
    return sorted_labels, position, counts


def class_table(
    labels: ArrayLike, num_classes: int, max_class_size: int
) -> tuple[jax.Array, jax.Array]:
    """The padded per-class index table, with jnp ops (jittable; sizes static).

    Args:
      labels: ``[N]`` int in ``[0, num_classes)``.
      num_classes: C.
      max_class_size: M, at least the size of the largest class (members of a
        class beyond the first M are left out of the table).

    Returns:
      ``index: [C, M] int32`` sample indices of each class in ascending order,
      padded with 0; ``mask: [C, M] bool``, True where ``index`` is a sample.
    """
    labels = jnp.asarray(labels)
    order = jnp.argsort(labels, stable=True)
    row, col, _ = _positions_in_class(order, labels, num_classes)
    shape = (num_classes, max_class_size)
    index = jnp.zeros(shape, jnp.int32).at[row, col].set(order.astype(jnp.int32), mode="drop")
    mask = jnp.zeros(shape, bool).at[row, col].set(True, mode="drop")
    return index, mask


def per_class_table(labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """`class_table` built once on the host with M = the largest class size (at least 1).

    Args:
      labels: ``[N]`` int.
      num_classes: C.

    Returns:
      ``index: [C, M] int32`` and ``mask: [C, M] bool`` as numpy arrays.
    """
    labels = np.asarray(labels)
    largest = int(np.bincount(labels, minlength=num_classes).max(initial=1))
    index, mask = jax.jit(class_table, static_argnums=(1, 2))(labels, num_classes, largest)
    return np.asarray(index), np.asarray(mask)


def normalise_per_class(losses: ArrayLike, labels: ArrayLike, num_classes: int) -> jax.Array:
    """Min-max normalises losses to [0, 1] within each class.

    Args:
      losses: ``[N]`` float.
      labels: ``[N]`` int.
      num_classes: C.

    Returns:
      ``[N]`` (ℓ − min_c) / (max_c − min_c) for the sample's class c; 0 where
      the class's losses are all equal.
    """
    losses, labels = jnp.asarray(losses), jnp.asarray(labels)
    low = jax.ops.segment_min(losses, labels, num_segments=num_classes)[labels]
    span = jax.ops.segment_max(losses, labels, num_segments=num_classes)[labels] - low
    return jnp.where(span > 0, (losses - low) / jnp.where(span > 0, span, 1.0), 0.0)


def _scores_from_table(
    losses: jax.Array,
    labels: jax.Array,
    num_classes: int,
    table: tuple[jax.Array, jax.Array],
    iterations: int,
) -> jax.Array:
    """``[N]`` low-component posteriors through a given class table (padding is dropped)."""
    index, mask = table
    values = normalise_per_class(losses, labels, num_classes)[index]
    low_component = posterior(fit_gmm(values, mask, iterations=iterations), values)[..., 0]
    scatter_to = jnp.where(mask, index, losses.shape[0])
    scores = jnp.zeros(losses.shape, low_component.dtype)
    scores = scores.at[scatter_to].set(low_component, mode="drop")
    return jnp.where(_constant_class(losses, labels, num_classes), 1.0, scores)


def _constant_class(losses: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
    """``[N] bool``: the sample's class has a single loss value (nothing to separate)."""
    low = jax.ops.segment_min(losses, labels, num_segments=num_classes)
    high = jax.ops.segment_max(losses, labels, num_segments=num_classes)
    return (high == low)[labels]


def _threshold(scores: jax.Array, labels: jax.Array, num_classes: int, tau) -> jax.Array:
    """``[N] bool``: score above τ, or among its class's best scores (no class dropped)."""
    best = jax.ops.segment_max(scores, labels, num_segments=num_classes)[labels]
    return (scores > tau) | (scores >= best)


def trust_scores(
    losses: ArrayLike,
    labels: ArrayLike,
    num_classes: int,
    *,
    iterations: int = 50,
    max_class_size: int | None = None,
) -> jax.Array:
    """Posterior of the low-loss component of each sample's class-wise mixture.

    Args:
      losses: ``[N]`` float per-sample losses.
      labels: ``[N]`` int (current, possibly noisy) labels.
      num_classes: C (static).
      iterations: EM steps (static).
      max_class_size: M of the padded table (static); default N, which always
        fits; pass the largest class size to save memory and time.

    Returns:
      ``[N]`` trust scores in [0, 1]; 1 for every member of a class whose
      losses are all equal.
    """
    losses, labels = jnp.asarray(losses), jnp.asarray(labels)
    size = losses.shape[0] if max_class_size is None else max_class_size
    table = class_table(labels, num_classes, size)
    return _scores_from_table(losses, labels, num_classes, table, iterations)


def partition(
    losses: ArrayLike,
    labels: ArrayLike,
    num_classes: int,
    tau: ArrayLike,
    *,
    iterations: int = 50,
    max_class_size: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Splits the samples into trusted and untrusted; jit with the sizes static.

    Example:
      >>> static = ("num_classes", "iterations", "max_class_size")
      >>> fn = jax.jit(partition, static_argnames=static)
      >>> trusted, scores = fn(losses, labels, 10, jnp.float32(0.9))

    Args:
      losses: ``[N]`` float per-sample losses (e.g. averaged over referees).
      labels: ``[N]`` int current labels.
      num_classes: C (static).
      tau: scalar threshold τ_k (traced: changing it does not recompile).
      iterations: EM steps (static).
      max_class_size: see `trust_scores` (static).

    Returns:
      ``trusted: [N] bool`` (score > tau, or the best score of its class)
      and ``scores: [N]`` float.
    """
    scores = trust_scores(
        losses, labels, num_classes, iterations=iterations, max_class_size=max_class_size
    )
    return _threshold(scores, jnp.asarray(labels), num_classes, tau), scores


def make_partition(
    labels: np.ndarray, num_classes: int, iterations: int = 50
) -> Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """`partition` for fixed labels, with the per-class table built once on the host.

    Args:
      labels: ``[N]`` int current labels.
      num_classes: C.
      iterations: EM steps.

    Returns:
      A jitted ``(losses: [N], tau: scalar) → (trusted: [N] bool, scores: [N])``.
    """
    index, mask = per_class_table(labels, num_classes)
    table = (jnp.asarray(index), jnp.asarray(mask))
    device_labels = jnp.asarray(labels)

    @jax.jit
    def partition_fixed(losses: jax.Array, tau: jax.Array) -> tuple[jax.Array, jax.Array]:
        scores = _scores_from_table(losses, device_labels, num_classes, table, iterations)
        return _threshold(scores, device_labels, num_classes, tau), scores

    return partition_fixed


def threshold_schedule(
    round_k: int, num_rounds: int, tau_start: float = 0.9, tau_end: float = 0.5
) -> float:
    """The dynamic trust threshold τ_k of round k (jaxdd's design: linear in k).

    Args:
      round_k: 0-based round index, in ``[0, num_rounds)``.
      num_rounds: K ≥ 1.
      tau_start: τ_0 (strict).
      tau_end: τ_{K−1} (lenient).

    Returns:
      τ_start + (τ_end − τ_start)·k/(K − 1); τ_start when K = 1.
    """
    if num_rounds < 1 or not 0 <= round_k < num_rounds:
        raise ConfigError(
            f"threshold_schedule needs 0 <= round_k < num_rounds, got round_k={round_k}, "
            f"num_rounds={num_rounds}"
        )
    if num_rounds == 1:
        return float(tau_start)
    return float(tau_start + (tau_end - tau_start) * round_k / (num_rounds - 1))


def small_loss_selection(
    losses: ArrayLike, labels: ArrayLike, num_classes: int, keep_ratio: ArrayLike
) -> jax.Array:
    """The two-stage baseline: within each class keep the smallest-loss fraction.

    A class of n_c samples keeps k_c = ⌊keep_ratio·n_c + ½⌋ of them (rounding
    half up, so 2.5 → 3); ties in the loss go to the lower sample index.

    Args:
      losses: ``[N]`` float.
      labels: ``[N]`` int.
      num_classes: C (static).
      keep_ratio: scalar in [0, 1] (traced).

    Returns:
      ``[N]`` bool, True for kept samples.
    """
    losses, labels = jnp.asarray(losses), jnp.asarray(labels)
    order = jnp.lexsort((losses, labels))
    sorted_labels, position, counts = _positions_in_class(order, labels, num_classes)
    keep = jnp.floor(keep_ratio * counts + 0.5).astype(position.dtype)
    return jnp.zeros(losses.shape, bool).at[order].set(position < keep[sorted_labels])
