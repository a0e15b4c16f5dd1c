"""Differentiable Siamese Augmentation (DSA), docs/algorithms.md §0.2.

Strategy ``color_crop_cutout_flip_scale_rotate`` in "S" mode: every call of
`dsa` picks ONE family for the whole batch and draws that family's parameters
per sample. Every family is linear in the images, so gradients flow to a
synthetic set through any augmentation.

Siamese contract: the family depends only on the key, and the parameters of
sample ``i`` only on ``(key, i)`` (through ``jax.random.fold_in(key, i)``).
Augmenting a real batch of 256 and a synthetic batch of 10 with the same key
therefore applies the same family and the same draws to their first 10
samples, which is what distribution matching relies on.

Example:
  >>> augment = jax.jit(dsa, static_argnames="config")
  >>> x_aug = augment(x, key=jax.random.key(0))
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp

from jaxdd.errors import ConfigError

Family = Literal["color", "crop", "cutout", "flip", "scale", "rotate"]
FAMILIES: tuple[Family, ...] = typing.get_args(Family)


@dataclasses.dataclass(frozen=True)
class DSAConfig:
    """Family settings; frozen and hashable, so it can be a static jit argument.

    Attributes:
      families: the families `dsa` chooses from, uniformly.
      prob_flip: probability of a horizontal flip per sample.
      ratio_scale: scale factors per axis are uniform in [1/ratio, ratio].
      ratio_rotate: rotation angles are uniform in [-ratio, ratio] degrees.
      ratio_crop_pad: translations are integers up to int(ratio * size + 0.5).
      ratio_cutout: the cut-out rectangle has sides int(ratio * size + 0.5).
      brightness: brightness adds (u - 0.5) * brightness.
      saturation: saturation scales the colour around the pixel's channel mean
        by u * saturation.
      contrast: contrast scales the image around its mean by u + contrast.
    """

    families: tuple[str, ...] = FAMILIES
    prob_flip: float = 0.5
    ratio_scale: float = 1.2
    ratio_rotate: float = 15.0
    ratio_crop_pad: float = 0.125
    ratio_cutout: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5

    def __post_init__(self) -> None:
        unknown = [name for name in self.families if name not in FAMILIES]
        if not self.families or unknown:
            raise ConfigError(
                f"DSAConfig.families must be a non-empty tuple drawn from {FAMILIES}; "
                f"got {self.families!r}."
            )


DEFAULT_CONFIG = DSAConfig()


def _per_sample(key: jax.Array, n: int, draw: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """Stacks ``draw(fold_in(key, i))`` over ``i < n``.

    Folding the sample index into the key makes sample ``i``'s draw
    independent of the batch size by construction (a batch-shaped draw or
    ``split(key, n)`` would tie it to the PRNG's layout): this is the Siamese
    prefix property.
    """
    return jax.vmap(lambda i: draw(jax.random.fold_in(key, i)))(jnp.arange(n))


def _side(ratio: float, size: int) -> int:
    """``ratio * size`` rounded half up, as the reference rounds pad and cutout sizes."""
    return int(ratio * size + 0.5)


def _bilinear(image: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
    """Samples ``image: [H, W, C]`` at float pixel positions ``rows, cols: [H', W']``.

    The four neighbours are gathered explicitly and those outside the image
    count as zeros, so the result is linear in ``image`` (its VJP is a
    scatter-add) and integer positions reproduce pixels exactly.
    """
    h, w, _ = image.shape
    row0, col0 = jnp.floor(rows), jnp.floor(cols)
    frac_row, frac_col = rows - row0, cols - col0
    out = jnp.zeros(rows.shape + image.shape[-1:], image.dtype)
    for d_row, d_col in ((0, 0), (0, 1), (1, 0), (1, 1)):
        r, c = row0 + d_row, col0 + d_col
        weight = (frac_row if d_row else 1 - frac_row) * (frac_col if d_col else 1 - frac_col)
        inside = (r >= 0) & (r <= h - 1) & (c >= 0) & (c <= w - 1)
        weight = jnp.where(inside, weight, 0).astype(image.dtype)
        r_idx = jnp.clip(r, 0, h - 1).astype(jnp.int32)
        c_idx = jnp.clip(c, 0, w - 1).astype(jnp.int32)
        out = out + image[r_idx, c_idx] * weight[..., None]
    return out


def warp_affine(x: jax.Array, matrix: jax.Array, offset: jax.Array) -> jax.Array:
    """Resamples each image on an affine grid, zero outside the image.

    Output pixel ``p`` (row, col) reads the input at ``matrix @ (p - c) +
    offset + c``, where ``c = ((H-1)/2, (W-1)/2)`` is the image centre. This is
    the reference's ``affine_grid(align_corners=True)`` in pixel units: the
    identity matrix with zero offset is exactly the identity map, and a
    rotation matrix is a true rotation on non-square images too.

    Args:
      x: ``[N, H, W, C]`` images.
      matrix: ``[N, 2, 2]`` linear part, acting on (row, col) offsets.
      offset: ``[N, 2]`` translation of the sampling point in pixels (row, col).

    Returns:
      ``[N, H, W, C]`` resampled images, same dtype as ``x``.
    """
    _, h, w, _ = x.shape
    grid_row, grid_col = jnp.meshgrid(
        jnp.arange(h, dtype=jnp.float32) - (h - 1) / 2,
        jnp.arange(w, dtype=jnp.float32) - (w - 1) / 2,
        indexing="ij",
    )

    # Elementwise products rather than einsum: accelerators may run matmuls
    # in reduced precision, which would blur even the identity map.
    def coordinate(axis: int, centre: float) -> jax.Array:
        m = matrix[:, axis, :, None, None]
        linear = m[:, 0] * grid_row[None] + m[:, 1] * grid_col[None]
        return linear + offset[:, axis, None, None] + centre

    rows, cols = coordinate(0, (h - 1) / 2), coordinate(1, (w - 1) / 2)
    return jax.vmap(_bilinear)(x, rows, cols)


def flip(x: jax.Array, *, key: jax.Array, config: DSAConfig = DEFAULT_CONFIG) -> jax.Array:
    """Flips each image horizontally (W axis) with probability ``config.prob_flip``.

    Args:
      x: ``[N, H, W, C]`` images.
      key: PRNG key; sample ``i`` uses ``fold_in(key, i)``.
      config: family settings.

    Returns:
      ``[N, H, W, C]`` images, each either ``x[i]`` or ``x[i, :, ::-1]`` exactly.
    """
    flipped = _per_sample(key, x.shape[0], lambda k: jax.random.bernoulli(k, config.prob_flip))
    return jnp.where(flipped[:, None, None, None], x[:, :, ::-1], x)


def scale(x: jax.Array, *, key: jax.Array, config: DSAConfig = DEFAULT_CONFIG) -> jax.Array:
    """Scales each image's sampling grid about its centre, per axis.

    Factors are uniform in ``[1 / ratio_scale, ratio_scale]``, drawn per sample
    and per axis; a factor above 1 samples a larger area, so content shrinks.

    Args:
      x: ``[N, H, W, C]`` images.
      key: PRNG key; sample ``i`` uses ``fold_in(key, i)``.
      config: family settings.

    Returns:
      ``[N, H, W, C]`` bilinearly resampled images, zero outside the input.
    """
    low, high = 1 / config.ratio_scale, config.ratio_scale
    factors = _per_sample(
        key, x.shape[0], lambda k: jax.random.uniform(k, (2,), minval=low, maxval=high)
    )
    matrix = factors[:, :, None] * jnp.eye(2, dtype=factors.dtype)[None]
    return warp_affine(x, matrix, jnp.zeros_like(factors))


def rotate(x: jax.Array, *, key: jax.Array, config: DSAConfig = DEFAULT_CONFIG) -> jax.Array:
    """Rotates each image about its centre by a per-sample angle.

    Angles are uniform in ``[-ratio_rotate, ratio_rotate]`` degrees.

    Args:
      x: ``[N, H, W, C]`` images.
      key: PRNG key; sample ``i`` uses ``fold_in(key, i)``.
      config: family settings.

    Returns:
      ``[N, H, W, C]`` bilinearly resampled images, zero outside the input.
    """
    limit = math.radians(config.ratio_rotate)
    angle = _per_sample(
        key, x.shape[0], lambda k: jax.random.uniform(k, minval=-limit, maxval=limit)
    )
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    matrix = jnp.stack([jnp.stack([cos, -sin], -1), jnp.stack([sin, cos], -1)], -2)
    return warp_affine(x, matrix, jnp.zeros((x.shape[0], 2), matrix.dtype))


def crop(x: jax.Array, *, key: jax.Array, config: DSAConfig = DEFAULT_CONFIG) -> jax.Array:
    """Translates each image by a per-sample integer shift, zeros entering.

    This is the reference's random crop of a zero-padded image: with
    ``p = int(ratio_crop_pad * size + 0.5)`` per axis, ``dy, dx`` are uniform
    integers in ``[-p, p]`` and ``out[i, r, c] = x[i, r - dy, c - dx]``.

    Args:
      x: ``[N, H, W, C]`` images.
      key: PRNG key; sample ``i`` uses ``fold_in(key, i)``.
      config: family settings.

    Returns:
      ``[N, H, W, C]`` shifted images.
    """
    n, h, w, _ = x.shape
    pad = jnp.array([_side(config.ratio_crop_pad, h), _side(config.ratio_crop_pad, w)])
    shift = _per_sample(key, n, lambda k: jax.random.randint(k, (2,), -pad, pad + 1))
    # Integer offsets make the bilinear weights exactly 0 or 1: an exact shift.
    identity = jnp.broadcast_to(jnp.eye(2, dtype=jnp.float32)[None], (n, 2, 2))
    return warp_affine(x, identity, -shift.astype(jnp.float32))


def cutout(x: jax.Array, *, key: jax.Array, config: DSAConfig = DEFAULT_CONFIG) -> jax.Array:
    """Zeroes a rectangle of sides ``int(ratio_cutout * size + 0.5)`` in each image.

    The centre is a uniform integer position; the rectangle is clipped at the
    borders. As in the reference, an even side's centre may also sit one past
    the last pixel, which makes the clipping symmetric.

    Args:
      x: ``[N, H, W, C]`` images.
      key: PRNG key; sample ``i`` uses ``fold_in(key, i)``.
      config: family settings.

    Returns:
      ``[N, H, W, C]`` images with one zero rectangle each.
    """
    n, h, w, _ = x.shape
    side = (_side(config.ratio_cutout, h), _side(config.ratio_cutout, w))
    centre_limit = jnp.array([h + 1 - side[0] % 2, w + 1 - side[1] % 2])
    centre = _per_sample(key, n, lambda k: jax.random.randint(k, (2,), 0, centre_limit))
    start = centre - jnp.array([side[0] // 2, side[1] // 2])[None]

    def covered(axis: int, size: int) -> jax.Array:
        pos = jnp.arange(size)[None]
        first = start[:, axis, None]
        return (pos >= first) & (pos < first + side[axis])

    hole = covered(0, h)[:, :, None] & covered(1, w)[:, None, :]
    return jnp.where(hole[..., None], jnp.zeros((), x.dtype), x)


def _uniform_factor(key: jax.Array, n: int, dtype: jnp.dtype) -> jax.Array:
    """``[N, 1, 1, 1]`` per-sample uniforms in [0, 1), ready to broadcast on images."""
    return _per_sample(key, n, jax.random.uniform)[:, None, None, None].astype(dtype)


def color(x: jax.Array, *, key: jax.Array, config: DSAConfig = DEFAULT_CONFIG) -> jax.Array:
    """Brightness, then saturation, then contrast, each with its own per-sample u.

    ``x + (u - 0.5) * brightness``; ``(x - m) * (u * saturation) + m`` with
    ``m`` the per-pixel channel mean; ``(x - m) * (u + contrast) + m`` with
    ``m`` the per-image mean over pixels and channels.

    Args:
      x: ``[N, H, W, C]`` images.
      key: PRNG key; sample ``i`` of each op uses ``fold_in(op_key, i)``.
      config: family settings.

    Returns:
      ``[N, H, W, C]`` recoloured images.
    """
    n = x.shape[0]
    key_b, key_s, key_c = jax.random.split(key, 3)
    x = x + (_uniform_factor(key_b, n, x.dtype) - 0.5) * config.brightness
    mean = jnp.mean(x, axis=-1, keepdims=True)
    x = (x - mean) * (_uniform_factor(key_s, n, x.dtype) * config.saturation) + mean
    mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    return (x - mean) * (_uniform_factor(key_c, n, x.dtype) + config.contrast) + mean


_FAMILY_FNS: dict[str, Callable[..., jax.Array]] = {
    "color": color,
    "crop": crop,
    "cutout": cutout,
    "flip": flip,
    "scale": scale,
    "rotate": rotate,
}


def _call_family(
    family: Callable[..., jax.Array], x: jax.Array, key: jax.Array, *, config: DSAConfig
) -> jax.Array:
    """Positional-key adapter: `jax.lax.switch` passes operands positionally."""
    return family(x, key=key, config=config)


def choose_family(
    key: jax.Array, config: DSAConfig = DEFAULT_CONFIG
) -> tuple[jax.Array, jax.Array]:
    """The family `dsa` applies for ``key``, and the key its parameters come from.

    Args:
      key: the key given to `dsa`.
      config: family settings.

    Returns:
      ``(index, param_key)``: a uniform integer scalar index into
      ``config.families``, and the key passed to that family's function.
    """
    choice_key, param_key = jax.random.split(key)
    return jax.random.randint(choice_key, (), 0, len(config.families)), param_key


def dsa(
    x: jax.Array,
    *,
    key: jax.Array,
    config: DSAConfig = DEFAULT_CONFIG,
    family_key: jax.Array | None = None,
) -> jax.Array:
    """Applies one randomly chosen DSA family to a batch (docs/algorithms.md §0.2).

    ``dsa(x, key=k)`` equals ``FAMILY(x, key=param_key, config=config)`` with
    ``(index, param_key) = choose_family(k, config)``. The choice is a
    `jax.lax.switch`, so one compiled program serves every key; jit with
    ``static_argnames="config"``.

    Under `jax.vmap` a switch whose index is batched becomes a `select_n`
    that runs EVERY family. Runs that are vmapped together (seeds, experts,
    referees) therefore pass a `family_key` that is the same for all of them
    (not mapped): the family then comes from ``family_key`` alone, the
    switch stays a switch, and only the per-sample parameters come from
    each run's own ``key``.

    Args:
      x: ``[N, H, W, C]`` float images, already normalised; any ``H, W``.
      key: PRNG key. Reuse it on another batch for a Siamese draw: the same
        family, and the same parameters for samples with the same index.
      config: family settings.
      family_key: if given, the key the family is chosen from (its
        parameters still come from ``key``).

    Returns:
      ``[N, H, W, C]`` augmented images, same dtype as ``x``, differentiable
      with respect to ``x``.
    """
    index, param_key = choose_family(key, config)
    if family_key is not None:
        index = choose_family(family_key, config)[0]
    # The key is an operand rather than a closure constant, so the branches
    # are the same functions on every call.
    branches = [
        functools.partial(_call_family, _FAMILY_FNS[name], config=config)
        for name in config.families
    ]
    return jax.lax.switch(index, branches, x, param_key)
