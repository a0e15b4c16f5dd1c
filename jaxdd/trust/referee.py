"""TAD's trust model: R referee ConvNets trained at once (docs/algorithms.md §4.1).

Paper: a trust model judges which samples can be trusted; summaries add a
consistency regularisation term. jaxdd's design: R small ConvNets (the runs
axis of `jaxdd.training.Runner`) trained with cross-entropy on the trusted
samples and their current labels, plus a two-view DSA consistency term on
ALL samples (untrusted ones are unlabelled rows, `jaxdd.ops.train`); a warm
start on all data, before the network memorises noise, opens the loop.
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


def look(model: Model, params: Params, x: jax.Array, labels: jax.Array, batch: int = 1000):
    """`RefereeView` of all samples; ``params`` stacked ``[R, ...]``, x ``[N, H, W, C]``.

    Runs batched on the host side (one compiled forward per batch shape), so
    memory stays bounded on large training sets.
    """
    outs = [
        _look_batch(model, params, x[i : i + batch], labels[i : i + batch])
        for i in range(0, x.shape[0], batch)
    ]
    return RefereeView(*(jnp.concatenate(parts) for parts in zip(*outs, strict=True)))


def _look_batch(model, params, x, labels):
    return _look_jit(model)(params, jnp.asarray(x), jnp.asarray(labels))


@functools.lru_cache(maxsize=8)
def _look_jit(model: Model):
    def view(params, x, labels):
        logits = jax.vmap(model.apply, in_axes=(0, None))(params, x)  # [R, B, C]
        logp = jax.nn.log_softmax(logits)
        losses = -jnp.take_along_axis(logp, labels[None, :, None], axis=-1)[..., 0]
        first = jax.tree.map(lambda leaf: leaf[0], params)
        gaps = margins(logp, labels).mean(0)
        return losses.mean(0), gaps, jnp.exp(logp).mean(0), model.features(first, x)

    return jax.jit(view)
