"""Two-component 1-D Gaussian mixtures fitted by EM, many groups at once (docs/algorithms.md §4.2).

paper: the outer loop of TAD fits a class-wise Gaussian mixture to per-sample
losses and trusts the low-loss component.

jaxdd's design: every group (class) is a row of a padded ``[G, N]`` array with
a validity mask, so all classes are fitted by one batched EM with a fixed
number of iterations (``lax.fori_loop``, no convergence test, no host round
trip). The initialisation is deterministic: the valid values of each group
are sorted and split at their median rank, and one M-step on that hard split
gives the starting weights, means and variances (a 1-D two-means start that
cannot put both components on the same data when a group has two or more
distinct values). Variances are floored at ``reg``. A component whose total
responsibility falls below `_MIN_MASS` samples keeps its previous mean and
variance instead of dividing by zero. After fitting, the components are
sorted by mean, so component 0 is always the low-mean one.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

_MIN_MASS = 1e-6
_LOG_2PI = 1.8378770664093453


class GMM(NamedTuple):
    """Parameters of ``G`` two-component 1-D mixtures.

    Attributes:
      weights: ``[G, 2]`` mixing weights (each row sums to 1).
      means: ``[G, 2]``, ascending along the last axis after `fit_gmm`.
      variances: ``[G, 2]``, at least ``reg``.
    """

    weights: jax.Array
    means: jax.Array
    variances: jax.Array


def _log_joint(gmm: GMM, values: jax.Array) -> jax.Array:
    """``[G, N] → [G, N, 2]`` log w_k + log N(x | m_k, v_k)."""
    x = values[..., None]
    means, variances = gmm.means[:, None, :], gmm.variances[:, None, :]
    log_density = -0.5 * (_LOG_2PI + jnp.log(variances) + jnp.square(x - means) / variances)
    log_weights = jnp.log(jnp.maximum(gmm.weights, jnp.finfo(values.dtype).tiny))
    return log_weights[:, None, :] + log_density


def posterior(gmm: GMM, values: ArrayLike) -> jax.Array:
    """Responsibilities of the two components for every value.

    Args:
      gmm: ``G`` mixtures.
      values: ``[G, N]`` float.

    Returns:
      ``[G, N, 2]``; sums to 1 over the last axis.
    """
    return jax.nn.softmax(_log_joint(gmm, jnp.asarray(values)), axis=-1)


def log_likelihood(gmm: GMM, values: ArrayLike, mask: ArrayLike | None = None) -> jax.Array:
    """Total log-likelihood of the valid values of each group.

    Args:
      gmm: ``G`` mixtures.
      values: ``[G, N]`` float.
      mask: ``[G, N]`` bool, True for valid entries (default: all valid).

    Returns:
      ``[G]`` Σ_n log Σ_k w_k N(x_n | m_k, v_k) over valid entries.
    """
    values = jnp.asarray(values)
    mask = jnp.ones(values.shape, bool) if mask is None else jnp.asarray(mask)
    per_value = jax.nn.logsumexp(_log_joint(gmm, jnp.where(mask, values, 0.0)), axis=-1)
    return jnp.sum(jnp.where(mask, per_value, 0.0), axis=-1)


def _m_step(resp: jax.Array, x: jax.Array, mask: jax.Array, reg: float, previous: GMM) -> GMM:
    """Weighted moments of the valid values; ``resp: [G, N, 2]``."""
    r = jnp.where(mask[..., None], resp, 0.0)
    mass = jnp.sum(r, axis=1)
    safe_mass = jnp.maximum(mass, _MIN_MASS)
    means = jnp.sum(r * x[..., None], axis=1) / safe_mass
    variances = jnp.sum(r * jnp.square(x[..., None] - means[:, None, :]), axis=1) / safe_mass
    alive = mass > _MIN_MASS
    total = jnp.maximum(jnp.sum(mass, axis=-1, keepdims=True), _MIN_MASS)
    return GMM(
        weights=mass / total,
        means=jnp.where(alive, means, previous.means),
        variances=jnp.maximum(jnp.where(alive, variances, previous.variances), reg),
    )


def _median_split_init(x: jax.Array, mask: jax.Array, reg: float) -> GMM:
    """One M-step on the split of each group's sorted valid values at the median rank."""
    count = jnp.sum(mask, axis=1, keepdims=True)
    ordered = jnp.sort(jnp.where(mask, x, jnp.inf), axis=1)
    rank = jnp.arange(x.shape[1])[None, :]
    valid = rank < count
    ordered = jnp.where(valid, ordered, 0.0)
    resp = jnp.stack([rank < count // 2, rank >= count // 2], axis=-1).astype(x.dtype)
    start = jnp.zeros(x.shape[:1] + (2,), x.dtype)
    return _m_step(resp, ordered, valid, reg, GMM(start + 0.5, start, start + reg))


def _sort_components(gmm: GMM) -> GMM:
    order = jnp.argsort(gmm.means, axis=-1)
    return GMM(*(jnp.take_along_axis(p, order, axis=-1) for p in gmm))


def fit_gmm(
    values: ArrayLike,
    mask: ArrayLike,
    *,
    iterations: int = 50,
    reg: float = 1e-4,
    init: GMM | None = None,
) -> GMM:
    """Fits a two-component 1-D Gaussian mixture to the valid values of every group by EM.

    Masked entries never influence the fit (they may hold any value, even NaN).
    A group with fewer than 2 valid values gets both components at the mean of
    its valid values (0 if none), weights ½ and variances ``reg``.

    Args:
      values: ``[G, N]`` float.
      mask: ``[G, N]`` bool, True for valid entries.
      iterations: number of EM steps (static).
      reg: floor of every variance.
      init: optional starting parameters (e.g. the previous round's fit, to
        warm-start); default: the median-split start described in the module.

    Returns:
      The fitted `GMM`, components sorted by mean (component 0 = low mean).
    """
    mask = jnp.asarray(mask, bool)
    x = jnp.where(mask, jnp.asarray(values), 0.0)
    start = _median_split_init(x, mask, reg) if init is None else init

    def em_step(_, gmm: GMM) -> GMM:
        return _m_step(posterior(gmm, x), x, mask, reg, gmm)

    gmm = _sort_components(lax.fori_loop(0, iterations, em_step, start))
    count = jnp.sum(mask, axis=1, keepdims=True)
    group_mean = jnp.sum(x, axis=1, keepdims=True) / jnp.maximum(count, 1)
    degenerate = count < 2
    return GMM(
        weights=jnp.where(degenerate, 0.5, gmm.weights),
        means=jnp.where(degenerate, group_mean, gmm.means),
        variances=jnp.where(degenerate, reg, gmm.variances),
    )
