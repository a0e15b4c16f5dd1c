"""Pixel preprocessing: per-channel normalisation and ZCA whitening (docs/algorithms.md §0.3)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

# Rows per block when accumulating the covariance: bounds the float64 copy of
# the data to ~100 MB at D = 3072 instead of N x D x 8 bytes.
_COV_BLOCK = 4096


class ZCA(NamedTuple):
    """A fitted ZCA whitening transform over flattened images (``D = H * W * C``).

    Attributes:
      mean: ``[D] float32`` mean of the flattened fitting images.
      whiten: ``[D, D] float32`` symmetric ``W = U (Λ + εI)^(-1/2) Uᵀ``.
      unwhiten: ``[D, D] float32`` symmetric ``W⁻¹ = U (Λ + εI)^(1/2) Uᵀ``.
    """

    mean: jax.Array
    whiten: jax.Array
    unwhiten: jax.Array


def _channel_shaped(v: ArrayLike, ndim: int) -> jax.Array:
    """Reshapes a ``[C]`` vector to broadcast against a channels-last rank-``ndim`` array."""
    return jnp.reshape(jnp.asarray(v, jnp.float32), (1,) * (ndim - 1) + (-1,))


def normalize(x: ArrayLike, mean: ArrayLike, std: ArrayLike) -> jax.Array:
    """Maps uint8 pixels to ``(x / 255 - mean) / std``.

    Args:
      x: ``[N, H, W, C] uint8`` images.
      mean: ``[C]`` per-channel mean in [0, 1] (e.g. ``Dataset.channel_mean``).
      std: ``[C]`` per-channel std in [0, 1] (e.g. ``Dataset.channel_std``).

    Returns:
      ``[N, H, W, C] float32`` normalised images.
    """
    x = jnp.asarray(x, jnp.float32) / 255.0
    return (x - _channel_shaped(mean, x.ndim)) / _channel_shaped(std, x.ndim)


def denormalize(x: ArrayLike, mean: ArrayLike, std: ArrayLike) -> jax.Array:
    """Inverts `normalize` back to the [0, 1] pixel scale.

    Values are not clipped: distilled images may leave [0, 1], and clipping
    here would hide that; clip when rendering.

    Args:
      x: ``[N, H, W, C] float32`` normalised images.
      mean: ``[C]`` the mean given to `normalize`.
      std: ``[C]`` the std given to `normalize`.

    Returns:
      ``[N, H, W, C] float32`` images, ~[0, 1].
    """
    x = jnp.asarray(x, jnp.float32)
    return x * _channel_shaped(std, x.ndim) + _channel_shaped(mean, x.ndim)


def fit_zca(x: ArrayLike, eps: float = 0.1) -> ZCA:
    """Fits ZCA whitening on images (docs/algorithms.md §0.3).

    The mean is subtracted and the covariance is ``Xcᵀ Xc / N`` (biased).
    kornia's ``ZCAWhitening``, which MTT/DATM use, also subtracts the mean but
    divides by ``N - 1`` by default; at the training-set sizes ZCA is used on
    (N ≥ 10^4) the eigenvalues differ by < 0.01 %, far below ``eps``. Fitting
    runs on the host in float64 (``numpy.linalg.eigh``); eigenvalues that
    round to below zero (rank-deficient data, N < D) are clipped to 0.
    Cost: the ``D x D`` eigendecomposition dominates; D = 3072 (CIFAR) takes
    ~20 s on 2 CPU cores, plus ~2 s per 5000 images for the covariance.

    Args:
      x: ``[N, H, W, C]`` float images in the space they are whitened from
        (`pixel_space` passes [0, 1] pixels, as the references).
      eps: ``ε`` added to every eigenvalue; 0.1 is kornia's setting in MTT.

    Returns:
      The fitted `ZCA`; ``D = H * W * C`` (3072 for CIFAR).
    """
    flat = np.asarray(x).reshape(len(x), -1)
    mean = flat.mean(axis=0, dtype=np.float64)
    cov = np.zeros((flat.shape[1], flat.shape[1]))
    for start in range(0, len(flat), _COV_BLOCK):
        block = flat[start : start + _COV_BLOCK].astype(np.float64) - mean
        cov += block.T @ block
    eigvals, eigvecs = np.linalg.eigh(cov / len(flat))
    shifted = np.clip(eigvals, 0.0, None) + eps
    whiten = (eigvecs / np.sqrt(shifted)) @ eigvecs.T
    unwhiten = (eigvecs * np.sqrt(shifted)) @ eigvecs.T
    return ZCA(
        mean=jnp.asarray(mean, jnp.float32),
        whiten=jnp.asarray(whiten, jnp.float32),
        unwhiten=jnp.asarray(unwhiten, jnp.float32),
    )


def zca_apply(zca: ZCA, x: ArrayLike) -> jax.Array:
    """Whitens images: ``(x - mean) W`` on the flattened pixels (pure, jittable).

    Args:
      zca: from `fit_zca`.
      x: ``[N, H, W, C] float32`` images in the space `fit_zca` saw.

    Returns:
      ``[N, H, W, C] float32`` whitened images.
    """
    x = jnp.asarray(x, jnp.float32)
    flat = jnp.reshape(x, (x.shape[0], -1)) - zca.mean[None, :]
    # "highest": TPU/GPU default f32 matmuls round through bf16/tf32, which
    # visibly breaks the zca_inverse(zca_apply(x)) round trip.
    return jnp.reshape(jnp.matmul(flat, zca.whiten, precision="highest"), x.shape)


def zca_inverse(zca: ZCA, x: ArrayLike) -> jax.Array:
    """Maps whitened images back: ``x W⁻¹ + mean`` (pure, jittable).

    Args:
      zca: from `fit_zca`.
      x: ``[N, H, W, C] float32`` whitened images (e.g. distilled ones).

    Returns:
      ``[N, H, W, C] float32`` images in the space `fit_zca` saw.
    """
    x = jnp.asarray(x, jnp.float32)
    flat = jnp.matmul(jnp.reshape(x, (x.shape[0], -1)), zca.unwhiten, precision="highest")
    return jnp.reshape(flat + zca.mean[None, :], x.shape)


class PixelSpace(NamedTuple):
    """Where a pipeline's images live: normalised, or ZCA-whitened [0, 1] pixels.

    Distilled images are optimised in this space; `decode` renders them.

    Attributes:
      mean: ``[C]`` per-channel mean in [0, 1] (0 with ZCA).
      std: ``[C]`` per-channel std in [0, 1] (1 with ZCA).
      zca: the whitening fitted on the training images, or None.
    """

    mean: np.ndarray
    std: np.ndarray
    zca: ZCA | None = None

    def encode(self, x: ArrayLike) -> jax.Array:
        """``[N, H, W, C] uint8 → float32`` in this space."""
        out = normalize(x, self.mean, self.std)
        return zca_apply(self.zca, out) if self.zca is not None else out

    def decode(self, x: ArrayLike) -> jax.Array:
        """``[N, H, W, C]`` in this space → pixels in ~[0, 1] (unclipped)."""
        if self.zca is not None:
            x = zca_inverse(self.zca, x)
        return denormalize(x, self.mean, self.std)


def pixel_space(x_train: np.ndarray, *, zca: bool) -> PixelSpace:
    """Fits the pixel space on ``[N, H, W, C] uint8`` training images (docs/algorithms.md §0.3).

    Without ZCA: per-channel normalisation with the images' own mean and std.
    With ZCA: as MTT/DATM do, NO mean/std normalisation — ZCA (ε = 0.1) is
    fitted on the [0, 1] pixels themselves, so that ε means what it means
    in the references (on normalised pixels it acts ~1/std² ≈ 16× weaker
    on CIFAR) and lr_img / DSA strengths transfer from their configs.
    """
    if zca:
        channels = x_train.shape[-1]
        space = PixelSpace(np.zeros(channels, np.float32), np.ones(channels, np.float32))
        return space._replace(zca=fit_zca(space.encode(x_train)))
    flat = x_train.reshape(-1, x_train.shape[-1])
    mean = (flat.mean(0) / 255.0).astype(np.float32)
    std = (flat.std(0) / 255.0).astype(np.float32)
    return PixelSpace(mean, std)
