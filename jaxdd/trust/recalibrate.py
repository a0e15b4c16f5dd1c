"""The inner loop of TAD: recalibration of untrusted samples (docs/algorithms.md §4.3).

paper: reliability of an untrusted sample is scored by its Mahalanobis
distance to class anchors and its cosine similarity to them; reliable samples
are pseudo-labelled and recalled into the trusted space.

jaxdd's design:

* anchors μ_c are the means of the referee features of the trusted samples of
  class c; a class with no trusted sample is absent and can never be chosen;
* one covariance Σ is pooled over the trusted samples of all classes and shrunk
  with a fixed Ledoit-Wolf-style weight s: Σ_s = (1 − s)Σ + s·(tr Σ / D)·I + εI,
  inverted through its Cholesky factor (stable for D ≈ 1–2k and N < D);
* an untrusted sample is recalled with label ĉ = argmin_c d_c only if
  argmax_c cos(φ, μ_c) and the referee's argmax are also ĉ, AND its confidence
  exceeds κ (strictly, so κ = 1 recalls nothing);
* confidence = min(softmax_c(−d_c/2)[ĉ], p_referee(ĉ)), or with `margin` the
  referee's top-two margin p(ĉ) − max_{c≠ĉ} p(c) in place of p(ĉ) (TAD's
  default). softmax(−d/2) is the class posterior of a Gaussian model with
  the shared covariance and equal priors; in hundreds of dimensions the
  distances differ by a lot and it saturates at 1 for almost every sample,
  so the minimum with the referee's term keeps a sample out unless the
  referee is confident too;
* a proposed recall is admitted only where it does not lower the estimated
  label precision of the trusted space (`admit_recalls`). The estimate of a
  sample's true class is the referees' probability corrected by the given
  label through the noise transition matrix (`label_posterior`), the matrix
  estimated from the referees' anchor points (`estimate_transition`): the
  referees' own probability of a recall is the very number it was selected
  on, so it is optimistic exactly where recall errs, on clean samples of a
  look-alike class that the referees confidently misread.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np
from jax.typing import ArrayLike

_NORM_EPS = 1e-12


class Recalibration(NamedTuple):
    """Outcome of one recalibration pass.

    Attributes:
      new_labels: ``[N] int32`` labels after recall (unchanged unless recalled).
      recalled: ``[N] bool`` untrusted samples that join the trusted set.
      confidence: ``[N]`` float, the confidence of `candidate` (every sample).
      candidate: ``[N] int32`` argmin of the Mahalanobis distance over present
        classes (every sample).
      supported: ``[N] bool`` the recall criteria hold for `candidate`
        (agreement and confidence > κ), trusted or not: a recalled sample
        that is no longer supported can be revoked (`jaxdd.trust.dual`).
    """

    new_labels: jax.Array
    recalled: jax.Array
    confidence: jax.Array
    candidate: jax.Array
    supported: jax.Array


def class_anchors(
    features: ArrayLike, labels: ArrayLike, trusted: ArrayLike, num_classes: int
) -> tuple[jax.Array, jax.Array]:
    """Means of the features of the trusted samples of every class.

    Args:
      features: ``[N, D]`` float.
      labels: ``[N]`` int current labels.
      trusted: ``[N]`` bool.
      num_classes: C (static).

    Returns:
      ``anchors: [C, D]`` (zeros for absent classes) and ``present: [C] bool``,
      True where the class has at least one trusted sample.
    """
    features = jnp.asarray(features)
    weight = jnp.asarray(trusted).astype(features.dtype)
    sums = jax.ops.segment_sum(features * weight[:, None], labels, num_segments=num_classes)
    counts = jax.ops.segment_sum(weight, labels, num_segments=num_classes)
    return sums / jnp.maximum(counts, 1.0)[:, None], counts > 0


def shared_precision(
    features: ArrayLike,
    labels: ArrayLike,
    trusted: ArrayLike,
    anchors: ArrayLike,
    shrinkage: float = 0.1,
    eps: float = 1e-6,
) -> jax.Array:
    """Inverse of the shrunk within-class covariance pooled over trusted samples.

    Args:
      features: ``[N, D]`` float.
      labels: ``[N]`` int.
      trusted: ``[N]`` bool; only these samples enter the covariance.
      anchors: ``[C, D]`` class means (`class_anchors`).
      shrinkage: s in [0, 1], weight of the target (tr Σ / D)·I.
      eps: added to the diagonal so that Σ_s stays positive definite.

    Returns:
      ``[D, D]`` symmetric positive definite Σ_s⁻¹.
    """
    features = jnp.asarray(features)
    weight = jnp.asarray(trusted).astype(features.dtype)
    centred = (features - jnp.asarray(anchors)[labels]) * weight[:, None]
    covariance = centred.T @ centred / jnp.maximum(jnp.sum(weight), 1.0)
    dim = covariance.shape[0]
    target = jnp.trace(covariance) / dim
    identity = jnp.eye(dim, dtype=covariance.dtype)
    shrunk = (1.0 - shrinkage) * covariance + (shrinkage * target + eps) * identity
    factor = jnp.linalg.cholesky(shrunk)
    precision = jax.scipy.linalg.cho_solve((factor, True), identity)
    return 0.5 * (precision + precision.T)


def mahalanobis(features: ArrayLike, anchors: ArrayLike, precision: ArrayLike) -> jax.Array:
    """Squared Mahalanobis distances (φ − μ_c)ᵀ P (φ − μ_c).

    Args:
      features: ``[N, D]`` float.
      anchors: ``[C, D]``.
      precision: ``[D, D]`` symmetric P.

    Returns:
      ``[N, C]``, non-negative.
    """
    anchors = jnp.asarray(anchors)
    # Shifting both sides by the anchors' centre leaves the distances unchanged
    # and keeps the expanded quadratic form free of large cancellations.
    centre = jnp.mean(anchors, axis=0, keepdims=True)
    x, a = jnp.asarray(features) - centre, anchors - centre
    xp, ap = x @ precision, a @ precision
    squared = jnp.sum(xp * x, axis=1)[:, None] - 2.0 * xp @ a.T + jnp.sum(ap * a, axis=1)[None, :]
    return jnp.maximum(squared, 0.0)


def cosine(features: ArrayLike, anchors: ArrayLike) -> jax.Array:
    """Cosine similarities cos(φ, μ_c); a zero vector has similarity 0 to everything.

    Args:
      features: ``[N, D]`` float.
      anchors: ``[C, D]``.

    Returns:
      ``[N, C]`` in [−1, 1].
    """

    def unit(v: jax.Array) -> jax.Array:
        return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), _NORM_EPS)

    return unit(jnp.asarray(features)) @ unit(jnp.asarray(anchors)).T


def recalibrate(
    features: ArrayLike,
    labels: ArrayLike,
    trusted: ArrayLike,
    referee_probs: ArrayLike,
    num_classes: int,
    *,
    kappa: float = 0.9,
    shrinkage: float = 0.1,
    margin: bool = False,
) -> Recalibration:
    """Recalls the untrusted samples on which anchors, cosine and referee agree confidently.

    Jittable with ``num_classes`` static; see the module docstring for the rule.

    Args:
      features: ``[N, D]`` referee features φ.
      labels: ``[N]`` int current labels.
      trusted: ``[N]`` bool current trusted set.
      referee_probs: ``[N, C]`` the referee's class probabilities.
      num_classes: C.
      kappa: confidence threshold κ (recall needs confidence > κ).
      shrinkage: see `shared_precision`.
      margin: the referee's part of the confidence is p(ĉ) − max_{c≠ĉ} p(c)
        instead of p(ĉ): a referee torn between two look-alike classes
        (0.6 vs 0.4) is then not confident, one whose doubt is spread over
        all classes (0.6 vs 0.05 each) still is.

    Returns:
      A `Recalibration`; trusted samples keep their labels.
    """
    labels, trusted, probs = jnp.asarray(labels), jnp.asarray(trusted), jnp.asarray(referee_probs)
    anchors, present = class_anchors(features, labels, trusted, num_classes)
    precision = shared_precision(features, labels, trusted, anchors, shrinkage)
    distance = mahalanobis(features, anchors, precision)
    lowest = jnp.finfo(distance.dtype).min
    logits = jnp.where(present[None, :], -0.5 * distance, lowest)
    similarity = jnp.where(present[None, :], cosine(features, anchors), lowest)
    candidate = jnp.argmax(logits, axis=1).astype(jnp.int32)
    rows = jnp.arange(candidate.shape[0])
    referee = probs[rows, candidate]
    if margin:
        runner_up = jnp.max(jnp.where(jax.nn.one_hot(candidate, num_classes) > 0, -1.0, probs), 1)
        referee = referee - runner_up
    confidence = jnp.minimum(jax.nn.softmax(logits, axis=1)[rows, candidate], referee)
    agree = (jnp.argmax(similarity, axis=1) == candidate) & (jnp.argmax(probs, axis=1) == candidate)
    supported = agree & (confidence > kappa) & present[candidate]
    recalled = ~trusted & supported
    new_labels = jnp.where(recalled, candidate, labels.astype(jnp.int32))
    return Recalibration(new_labels, recalled, confidence, candidate, supported)


def _largest_prefix(estimates: np.ndarray, floor: float) -> np.ndarray:
    """``[n] bool``: the largest top-scored subset of `estimates` whose mean is ≥ `floor`.

    Sorted in decreasing order, the prefix means decrease, so the subset is
    the longest prefix whose mean still reaches the floor (ties: lower index).
    """
    order = np.argsort(-estimates, kind="stable")
    means = np.cumsum(estimates[order]) / np.arange(1, len(order) + 1)
    keep = np.zeros(len(estimates), bool)
    keep[order[: int(np.sum(means >= floor))]] = True
    return keep


def admit_recalls(
    recalled: np.ndarray,
    candidate: np.ndarray,
    trusted: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    num_classes: int,
) -> np.ndarray:
    """The recalls that do not make the trusted space noisier by the estimate `probs`.

    A group's label precision is estimated, without clean labels, by the
    mean of `probs` at its labels (TAD: the label posterior). With cross-fitted referees
    (`TADConfig.folds` > 1) both sides are held-out judgements, so like is
    compared with like; with one fold the trusted members were trained on
    with their labels, their estimate is inflated, and the comparison leans
    against recall. Per class c, the recalls into c with
    the highest estimate of c are admitted as long as their mean estimate
    reaches that of the trusted members of c; then, over the admitted of all
    classes, the same rule against the whole trusted space. A union's
    precision is the weighted mean of its parts', so neither a class nor the
    trusted space gets noisier by the estimate.

    Args:
      recalled: ``[N] bool`` proposed recalls (`recalibrate`).
      candidate: ``[N] int`` their proposed labels.
      trusted: ``[N] bool`` the trusted space they would join.
      labels: ``[N] int`` its current labels.
      probs: ``[N, C]`` each sample's estimated true-class distribution
        (TAD passes `label_posterior`; the referees' mean softmax also fits).
      num_classes: C.

    Returns:
      ``[N] bool`` the admitted recalls (a subset of `recalled`).
    """
    rows = np.arange(len(labels))
    own = probs[rows, labels]
    estimate = probs[rows, candidate]
    admitted = np.zeros(len(labels), bool)
    for c in range(num_classes):
        members, joining = trusted & (labels == c), np.flatnonzero(recalled & (candidate == c))
        if members.any() and joining.size:
            admitted[joining] = _largest_prefix(estimate[joining], own[members].mean())
    joining = np.flatnonzero(admitted)
    if joining.size and trusted.any():
        admitted[joining] = _largest_prefix(estimate[joining], own[trusted].mean())
    return admitted


def estimate_transition(
    probs: np.ndarray, given: np.ndarray, num_classes: int, quantile: float = 0.97
) -> np.ndarray:
    """``[C, C]`` the label-noise transition T[c, g] = P(given g | true class c), label-free.

    The anchor-point estimate (Patrini et al., 2017, "Making deep neural
    networks robust to label noise: a loss correction approach", §4): the
    samples the referees rate most likely to be of class c (p(c | x) at or
    above its `quantile` over all samples) are taken as members of c, and
    row c is the distribution of their given labels. Meaningful when the
    referees model the true classes (trained on the trusted space); referees
    trained on all noisy labels model the noisy ones.

    Args:
      probs: ``[N, C]`` held-out class probabilities of the referees.
      given: ``[N] int`` given labels.
      num_classes: C.
      quantile: where a class's anchors start (the reference's 97th percentile).

    Returns:
      a row-stochastic ``[C, C]`` matrix; a row with no anchor is the identity's.
    """
    transition = np.eye(num_classes)
    for c in range(num_classes):
        anchors = probs[:, c] >= np.quantile(probs[:, c], quantile)
        counts = np.bincount(given[anchors], minlength=num_classes).astype(np.float64)
        if counts.sum() > 0:
            transition[c] = counts / counts.sum()
    return transition


def label_posterior(
    probs: np.ndarray, given: np.ndarray, transition: np.ndarray, *, noisy: bool = False
) -> np.ndarray:
    """``[N, C]`` P(true c | x, given g) ∝ T[c, g] · p(c | x): the referees corrected by the label.

    Bayes' rule with the noise model: a confident referee that contradicts a
    label the noise rarely produces from its class (T[c, g] small) is
    believed; one that contradicts a label that is usually right (T[g, g]
    large) is discounted by the odds T[g, g] / T[c, g].

    Args:
      probs: ``[N, C]`` the referees' class probabilities.
      given: ``[N] int`` given labels.
      transition: ``[C, C]`` (`estimate_transition`).
      noisy: the referees were trained on the given labels, so `probs` model
        P(given | x) = Tᵀ P(true | x); P(true | x) is recovered by solving
        that system (Patrini et al.'s backward correction), clipped at 0 and
        renormalised, before Bayes' rule. Without it, the noise would be
        counted twice.
    """
    if noisy:
        probs = np.clip(np.linalg.solve(transition.T, probs.T).T, 0.0, None)
        probs = probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
    joint = probs * transition[:, given].T
    total = joint.sum(axis=1, keepdims=True)
    return np.divide(joint, total, out=np.array(probs, np.float64), where=total > 0)
