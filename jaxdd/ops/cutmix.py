"""CutMix (Yun et al. 2019) as DANCE/IDC train with it (docs/algorithms.md §2.2).

With probability `prob` per batch: draw λ ~ Beta(β, β) and a random
pairing (a permutation of the batch); paste into every image the box of its
partner, of side ``int(side · √(1 − λ))`` centred at a uniform pixel and
clipped to the image; mix the targets by the share of pixels each image
keeps, ``r = 1 − box area / (H·W)``: ``t ← r·t + (1 − r)·t[perm]``. With
the soft cross-entropy this equals the reference's
``r·CE(out, y) + (1 − r)·CE(out, y[perm])``.

The box is a mask built from index comparisons (no dynamic slicing), so the
function is jittable and vmappable over runs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def box_mask(key: jax.Array, height: int, width: int, lam: jax.Array) -> jax.Array:
    """``[H, W] bool``: the pasted box for mixing ratio `lam` (the reference's ``rand_bbox``)."""
    key_y, key_x = jax.random.split(key)
    cut = jnp.sqrt(1.0 - lam)
    cut_h = jnp.floor(height * cut).astype(jnp.int32)
    cut_w = jnp.floor(width * cut).astype(jnp.int32)
    cy = jax.random.randint(key_y, (), 0, height)
    cx = jax.random.randint(key_x, (), 0, width)
    y1, y2 = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height)
    x1, x2 = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width)
    rows, cols = jnp.arange(height), jnp.arange(width)
    in_rows = (rows >= y1) & (rows < y2)
    in_cols = (cols >= x1) & (cols < x2)
    return in_rows[:, None] & in_cols[None, :]


def cutmix(
    x: jax.Array, targets: jax.Array, *, key: jax.Array, prob: float, beta: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """CutMix one batch.

    Args:
      x: ``[B, H, W, C]`` images.
      targets: ``[B, K]`` target probabilities (one-hot or soft).
      key: the draw (whether to mix, λ, the pairing, the box).
      prob: probability of mixing this batch.
      beta: the Beta distribution's parameter (the references: 1).

    Returns:
      ``(x', targets')``, the batch unchanged when not mixed.
    """
    key_apply, key_lam, key_perm, key_box = jax.random.split(key, 4)
    n, height, width = x.shape[:3]
    lam = jax.random.beta(key_lam, beta, beta)
    perm = jax.random.permutation(key_perm, n)
    box = box_mask(key_box, height, width, lam)
    mixed = jnp.where(box[None, :, :, None], jnp.take(x, perm, axis=0), x)
    kept = 1.0 - jnp.mean(box.astype(targets.dtype))
    mixed_targets = kept * targets + (1.0 - kept) * jnp.take(targets, perm, axis=0)
    apply = jax.random.uniform(key_apply) < prob
    return jnp.where(apply, mixed, x), jnp.where(apply, mixed_targets, targets)
