"""TAD's trust model: R referee ConvNets trained at once (docs/algorithms.md §4.1).

Paper: a trust model judges which samples can be trusted; summaries add a
consistency regularisation term. jaxdd's design: R small ConvNets (the runs
axis of `jaxdd.training.Runner`) trained with cross-entropy on the trusted
samples and their current labels, plus a two-view DSA consistency term on
ALL samples (untrusted ones are unlabelled rows, `jaxdd.ops.train`); a warm
start on all data, before the network memorises noise, opens the loop.

Cross-fitting (``folds`` F > 1): the samples are dealt into F folds, referee
r is labelled only on fold r mod F, and a sample is judged only by the
referees that never saw its label (`judges`, `look`). A referee that was
trained on a noisy label predicts it back; one that was not predicts what the
rest of the data says, so every judgement is held out and the trusted
space's noisy members are not locked in by the referees' own memory.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdd.models.convnet import Model, Params


class RefereeView(NamedTuple):
    """What the referees say about every training sample.

    Attributes:
      losses: ``[N]`` cross-entropy w.r.t. the given labels, mean over referees.
      margins: ``[N]`` max_{c≠ỹ} log p_c − log p_ỹ of each referee, mean over
        referees (`margins`).
      probs: ``[N, C]`` softmax outputs, mean over referees.
      features: ``[N, D]`` penultimate features φ of the first referee
        (features of different networks live in different spaces, so they
        are not averaged).
    """

    losses: jax.Array
    margins: jax.Array
    probs: jax.Array
    features: jax.Array


def relative_losses(probs: jax.Array, labels: jax.Array) -> jax.Array:
    """``[N]`` log p̄_max − log p̄_ỹ: the given label's loss above the referees' best class.

    Zero where the referees' argmax is the given label. Unlike the plain
    loss it does not grow with how hard a sample is to classify, only with
    how much the given label loses to another class: under look-alike
    (asymmetric) noise the plain loss of a hard class's clean members (Shirt)
    exceeds that of the easy class flipped into it (T-shirt), so the
    low-loss mixture component of "Shirt" holds the T-shirts.

    Args:
      probs: ``[N, C]`` the referees' mean softmax.
      labels: ``[N] int`` given labels.
    """
    logp = jnp.log(jnp.maximum(probs, 1e-12))
    given = jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
    return jnp.max(logp, axis=-1) - given


def margins(logp: jax.Array, labels: jax.Array) -> jax.Array:
    """``[..., N]`` max_{c≠ỹ} log p_c − log p_ỹ: how far the label trails the best other class.

    Negative where the given label wins, positive where another class beats
    it. Unlike `relative_losses` (its positive part, on the mean softmax) it
    keeps ranking the samples the referees agree with: a confident clean
    sample is far below 0, a doubtful one close to it.

    Args:
      logp: ``[..., N, C]`` log-softmax outputs.
      labels: ``[N] int`` given labels.
    """
    onehot = jax.nn.one_hot(labels, logp.shape[-1], dtype=bool)
    given = jnp.sum(jnp.where(onehot, logp, 0.0), axis=-1)
    other = jnp.max(jnp.where(onehot, -jnp.inf, logp), axis=-1)
    return other - given


def averaged_view(views: list[RefereeView]) -> tuple[jax.Array, jax.Array]:
    """``([N], [N])`` the loss and margin averaged over the checkpoints `views` (each over R).

    The small-loss literature's averaged loss: a sample's cross-entropy
    varies from step to step of training, and its mean over several
    checkpoints (and networks) ranks samples more stably than one snapshot.
    """
    return (
        jnp.mean(jnp.stack([v.losses for v in views]), axis=0),
        jnp.mean(jnp.stack([v.margins for v in views]), axis=0),
    )


def referee_targets(labels: np.ndarray, trusted: np.ndarray, num_classes: int) -> np.ndarray:
    """``[N, C]`` one-hot rows for trusted samples, zero rows (unlabelled) otherwise."""
    onehot = np.eye(num_classes, dtype=np.float32)[labels]
    return onehot * trusted[:, None].astype(np.float32)


def deal_folds(num_examples: int, num_folds: int, key: jax.Array) -> np.ndarray:
    """``[N] int`` each sample's fold: a random deal, fold sizes differing by at most 1."""
    order = np.asarray(jax.random.permutation(key, num_examples))
    folds = np.empty(num_examples, np.int32)
    folds[order] = np.arange(num_examples) % num_folds
    return folds


def judges(folds: np.ndarray, num_referees: int, num_folds: int) -> np.ndarray:
    """``[R, N] bool``: referee r judges sample i iff it was not labelled on i's fold.

    Referee r is labelled on fold r mod F; with F = 1 every referee judges
    every sample (no cross-fitting). Every sample has a judge when R ≥ F > 1.
    """
    if num_folds == 1:
        return np.ones((num_referees, len(folds)), bool)
    return (np.arange(num_referees)[:, None] % num_folds) != folds[None, :]


def fold_targets(
    labels: np.ndarray, trusted: np.ndarray, num_classes: int, judged: np.ndarray
) -> np.ndarray:
    """``[R, N, C]`` referee r's targets: the trusted samples it does not judge, one-hot.

    Args:
      labels: ``[N] int`` current labels.
      trusted: ``[N] bool``.
      num_classes: C.
      judged: ``[R, N] bool`` (`judges`).
    """
    return referee_targets(labels, trusted, num_classes)[None] * (~judged)[..., None]


def look(
    model: Model,
    params: Params,
    x: jax.Array,
    labels: jax.Array,
    batch: int = 1000,
    judged: np.ndarray | None = None,
):
    """`RefereeView` of all samples; ``params`` stacked ``[R, ...]``, x ``[N, H, W, C]``.

    With `judged` (``[R, N] bool``, `judges`) a sample's losses, margins and
    probabilities are means over its judges only, and its features are those
    of its first judge (`first_judges`); without, over all R referees, and
    the features of referee 0. Runs batched on the host side (one compiled
    forward per batch shape), so memory stays bounded on large training sets.
    """
    r = jax.tree.leaves(params)[0].shape[0]
    judged = np.ones((r, x.shape[0]), bool) if judged is None else judged
    outs = [
        _look_jit(model)(
            params,
            jnp.asarray(x[i : i + batch]),
            jnp.asarray(labels[i : i + batch]),
            jnp.asarray(judged[:, i : i + batch]),
        )
        for i in range(0, x.shape[0], batch)
    ]
    return RefereeView(*(jnp.concatenate(parts) for parts in zip(*outs, strict=True)))


def first_judges(judged: np.ndarray) -> np.ndarray:
    """``[N] int`` the lowest-numbered referee judging each sample (whose features it gets)."""
    return np.argmax(judged, axis=0).astype(np.int32)


@functools.lru_cache(maxsize=8)
def _look_jit(model: Model):
    def view(params, x, labels, judged):
        logits = jax.vmap(model.apply, in_axes=(0, None))(params, x)  # [R, B, C]
        logp = jax.nn.log_softmax(logits)
        losses = -jnp.take_along_axis(logp, labels[None, :, None], axis=-1)[..., 0]
        weight = judged.astype(logp.dtype)
        weight = weight / jnp.maximum(jnp.sum(weight, axis=0, keepdims=True), 1.0)

        def mean(v):  # [R, B, ...] → [B, ...] over each sample's judges
            return jnp.einsum("rb,rb...->b...", weight, v)

        features = jax.vmap(model.features, in_axes=(0, None))(params, x)  # [R, B, D]
        first = jnp.argmax(judged, axis=0)
        own = jnp.take_along_axis(features, first[None, :, None], axis=0)[0]
        gaps = margins(logp, labels)
        return mean(losses), mean(gaps), mean(jnp.exp(logp)), own

    return jax.jit(view)
