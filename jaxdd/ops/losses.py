"""Per-batch losses on logits; targets are always ``[B, C]`` float."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def soft_cross_entropy(
    logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
    """Mean over the labelled rows of −Σ_c t_c log softmax(logits)_c.

    Args:
      logits: ``[B, C]``.
      targets: ``[B, C]`` probabilities (one-hot for hard labels); an all-zero
        row is an unlabelled example and is left out of the mean.
      mask: optional ``[B]`` 0/1 rows to use (0: padding).

    Returns:
      scalar (0 when no row is labelled).
    """
    if mask is not None:
        targets = targets * mask[:, None]
    per_row = -jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1)
    labelled = jnp.sum(targets, axis=-1)
    return jnp.sum(per_row) / jnp.maximum(jnp.sum(labelled), 1e-6)


def mean_squared_error(
    logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
    """Mean over the (unmasked) rows of ½‖logits − targets‖² (RCIG's evaluation loss)."""
    per_row = 0.5 * jnp.sum(jnp.square(logits - targets), axis=-1)
    if mask is None:
        return jnp.mean(per_row)
    return jnp.sum(per_row * mask) / jnp.maximum(jnp.sum(mask), 1.0)


LOSSES = {"ce": soft_cross_entropy, "mse": mean_squared_error}


def one_hot(labels: jax.Array, num_classes: int) -> jax.Array:
    """``[N] int → [N, C] float32``."""
    return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
