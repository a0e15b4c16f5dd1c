"""Layers of the evaluation networks (AlexNet, VGG, ResNet), as the references build them.

The references' networks are PyTorch modules (DC/DSA's ``networks.py``, which
MTT, DATM and DANCE reuse); these layers reproduce their arithmetic:
PyTorch's default initialisation, ``GroupNorm(C, C)`` instance norm,
``BatchNorm2d`` with its running-statistics update, and pooling that floors
odd sizes. Images are NHWC.
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdd.errors import ConfigError

NormKind = Literal["instance", "batch", "none"]
EPS = 1e-5  # PyTorch's GroupNorm / BatchNorm2d epsilon
BN_MOMENTUM = 0.1  # PyTorch's BatchNorm2d: running = (1 − m)·running + m·batch


def torch_init(fan_in: int):
    """PyTorch's default Conv/Linear weight and bias init: U(±1/√fan_in)."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def conv(
    cin: int,
    cout: int,
    kernel: int,
    *,
    rngs: nnx.Rngs,
    stride: int = 1,
    padding: int = 0,
    bias: bool = True,
) -> nnx.Conv:
    """``nn.Conv2d(cin, cout, kernel, stride, padding, bias)`` with PyTorch's init."""
    init = torch_init(cin * kernel * kernel)
    return nnx.Conv(
        cin,
        cout,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        use_bias=bias,
        kernel_init=init,
        bias_init=init,
        rngs=rngs,
    )


def linear(din: int, dout: int, *, rngs: nnx.Rngs) -> nnx.Linear:
    """``nn.Linear(din, dout)`` with PyTorch's init."""
    init = torch_init(din)
    return nnx.Linear(din, dout, kernel_init=init, bias_init=init, rngs=rngs)


class Norm(nnx.Module):
    """Per-channel normalisation of ``[N, H, W, C]`` maps, with affine scale and shift.

    ``instance``: each sample's own statistics over (H, W) (``GroupNorm(C, C)``).
    ``batch``: ``BatchNorm2d``. Train mode normalises by the (masked) batch's
    mean and biased variance over (N, H, W) and moves the running statistics
    by `BN_MOMENTUM` towards the batch mean and the UNBIASED batch variance
    (PyTorch's rule); eval mode normalises by the running statistics.
    ``none``: the identity (no parameters).
    """

    def __init__(self, channels: int, kind: NormKind):
        if kind not in ("instance", "batch", "none"):
            raise ConfigError(f"norm must be 'instance', 'batch' or 'none', got {kind!r}")
        self.kind = kind
        if kind != "none":
            self.scale = nnx.Param(jnp.ones((channels,)))
            self.shift = nnx.Param(jnp.zeros((channels,)))
        if kind == "batch":
            self.mean = nnx.BatchStat(jnp.zeros((channels,)))
            self.var = nnx.BatchStat(jnp.ones((channels,)))

    def __call__(self, x: jax.Array, *, train: bool, mask: jax.Array | None) -> jax.Array:
        if self.kind == "none":
            return x
        if self.kind == "instance":
            mean = x.mean(axis=(1, 2), keepdims=True)
            var = jnp.square(x - mean).mean(axis=(1, 2), keepdims=True)
        elif train:
            mean, var = (v.reshape(1, 1, 1, -1) for v in self._batch_statistics(x, mask))
        else:
            mean, var = self.mean[...].reshape(1, 1, 1, -1), self.var[...].reshape(1, 1, 1, -1)
        scale, shift = self.scale[...].reshape(1, 1, 1, -1), self.shift[...].reshape(1, 1, 1, -1)
        return (x - mean) * jax.lax.rsqrt(var + EPS) * scale + shift

    def _batch_statistics(self, x: jax.Array, mask: jax.Array | None):
        """``([C], [C])`` batch mean and biased variance; updates the running ones."""
        n, h, w, _ = x.shape
        weight = jnp.ones((n,), x.dtype) if mask is None else mask.astype(x.dtype)
        weight = weight[:, None, None, None]
        count = jnp.maximum(jnp.sum(weight) * h * w, 1.0)
        mean = jnp.sum(x * weight, axis=(0, 1, 2)) / count
        var = jnp.sum(jnp.square(x - mean.reshape(1, 1, 1, -1)) * weight, axis=(0, 1, 2)) / count
        unbiased = var * count / jnp.maximum(count - 1.0, 1.0)
        m = BN_MOMENTUM
        self.mean.value = (1 - m) * self.mean.value + m * jax.lax.stop_gradient(mean)
        self.var.value = (1 - m) * self.var.value + m * jax.lax.stop_gradient(unbiased)
        return mean, var


def max_pool(x: jax.Array, size: int = 2) -> jax.Array:
    """``MaxPool2d(size, size)``: non-overlapping windows, odd edges dropped."""
    return _pool(x, size, jnp.max)


def avg_pool(x: jax.Array, size: int = 2) -> jax.Array:
    """``AvgPool2d(size, size)`` / ``F.avg_pool2d(x, size)``: odd edges dropped."""
    return _pool(x, size, jnp.mean)


def _pool(x: jax.Array, size: int, reduce) -> jax.Array:
    n, h, w, c = x.shape
    if h < size or w < size:
        raise ConfigError(
            f"a {size}x{size} pooling window does not fit a {h}x{w} map: the input images "
            "are too small for this network"
        )
    x = x[:, : h // size * size, : w // size * size]
    return reduce(x.reshape(n, h // size, size, w // size, size, c), axis=(2, 4))
