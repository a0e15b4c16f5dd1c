"""The cross-architecture evaluation networks: AlexNet, VGG-11 and ResNet-18.

These are the networks of DC/DSA's ``networks.py``, which MTT, DATM and
DANCE reuse for their cross-architecture tables, layer for layer:

* ``alexnet`` (``AlexNet``): conv5×5(128, padding 4 for 1-channel inputs,
  else 2) → pool → conv5×5(192) → pool → conv3×3 256, 192, 192 → pool →
  Linear; ReLU after every conv, max pools, no normalisation.
* ``vgg11`` / ``vgg11bn`` (``VGG11`` / ``VGG11BN``): [64, M, 128, M, 256, 256,
  M, 512, 512, M, 512, 512, M] of conv3×3 → norm → ReLU (the first conv pads
  by 3 for 1-channel inputs, else 1), max pools, Linear(512).
* ``resnet18`` / ``resnet18bn`` (``ResNet18`` / ``ResNet18BN``): the CIFAR
  ResNet-18 (3×3 stem of 64 without bias, four stages of two basic blocks,
  64/128/256/512 channels, strided convs, 1×1 projection shortcuts),
  ``avg_pool2d(4)``, Linear.
* ``resnet18_ap`` / ``resnet18bn_ap`` (``ResNet18_AP`` / ``ResNet18BN_AP``):
  every stride-2 conv replaced by a stride-1 conv and a 2×2 average pool (the
  shortcut too), no final pool.

"instance" norm is the references' default (``GroupNorm(C, C)``); the ``bn``
names use ``BatchNorm2d`` with running statistics (`jaxdd.models.layers.Norm`).

At 28 px (1 channel) and 32 px these are the references' networks exactly:
AlexNet and VGG pad 28 px inputs to an effective 32, so all end on 4×4
(AlexNet), 1×1 (VGG, ResNet-18 after its pool) or 3×3 / 4×4 (the AP ResNet)
maps. At other sizes the head takes whatever map is left, flattened (the
references hard-code the 28/32 px sizes and fail elsewhere).

`NetSpec.width_scale` multiplies every channel count (1: the references');
a reduced CPU protocol uses a fraction and says so.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import jax
from flax import nnx

from jaxdd.errors import ConfigError
from jaxdd.models.base import Model, pure_model
from jaxdd.models.layers import Norm, NormKind, avg_pool, conv, linear, max_pool

Arch = Literal["alexnet", "vgg11", "resnet18", "resnet18_ap"]
# What `--eval-nets` takes: the run's own ConvNet and the `NETWORKS`.
EvalNet = Literal[
    "convnet",
    "alexnet",
    "vgg11",
    "vgg11bn",
    "resnet18",
    "resnet18bn",
    "resnet18_ap",
    "resnet18bn_ap",
]

# The names `--eval-nets` takes (the references' get_network names, lower-cased),
# each an (architecture, norm) pair; ``convnet`` is the run's own ConvNet.
NETWORKS: dict[str, tuple[Arch, NormKind]] = {
    "alexnet": ("alexnet", "none"),
    "vgg11": ("vgg11", "instance"),
    "vgg11bn": ("vgg11", "batch"),
    "resnet18": ("resnet18", "instance"),
    "resnet18bn": ("resnet18", "batch"),
    "resnet18_ap": ("resnet18_ap", "instance"),
    "resnet18bn_ap": ("resnet18_ap", "batch"),
}
_VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
_ALEXNET = (128, 192, 256, 192, 192)
_RESNET_STAGES = (64, 128, 256, 512)


@dataclasses.dataclass(frozen=True)
class NetSpec:
    """One evaluation network.

    Attributes:
      arch: ``alexnet``, ``vgg11``, ``resnet18`` or ``resnet18_ap``.
      num_classes: C, size of the head.
      image_shape: ``(H, W, C_in)`` of the inputs.
      norm: ``instance``, ``batch`` or ``none`` (AlexNet has none).
      width_scale: factor on every channel count (1: the references').
    """

    arch: Arch
    num_classes: int
    image_shape: tuple[int, int, int]
    norm: NormKind = "instance"
    width_scale: float = 1.0

    def __post_init__(self):
        if self.arch not in ("alexnet", "vgg11", "resnet18", "resnet18_ap"):
            raise ConfigError(f"unknown architecture {self.arch!r}")
        if not self.width_scale > 0:
            raise ConfigError(f"width_scale must be > 0, got {self.width_scale}")

    def channels(self, reference: int) -> int:
        """The channels of a layer that has `reference` channels in the references."""
        return max(1, round(reference * self.width_scale))


def network_spec(
    name: str, num_classes: int, image_shape: tuple[int, int, int], width_scale: float = 1.0
) -> NetSpec:
    """The `NetSpec` of the evaluation network called `name` (`NETWORKS`)."""
    if name not in NETWORKS:
        raise ConfigError(
            f"unknown evaluation network {name!r}: choose among convnet, {', '.join(NETWORKS)}"
        )
    arch, norm = NETWORKS[name]
    return NetSpec(arch, num_classes, tuple(image_shape), norm, width_scale)


class _ConvNormAct(nnx.Module):
    """conv → norm → ReLU."""

    def __init__(self, cin, cout, kernel, padding, spec: NetSpec, *, rngs, stride=1, bias=True):
        self.conv = conv(cin, cout, kernel, stride=stride, padding=padding, bias=bias, rngs=rngs)
        self.norm = Norm(cout, spec.norm)

    def __call__(self, x, *, train, mask):
        return jax.nn.relu(self.norm(self.conv(x), train=train, mask=mask))


class AlexNet(nnx.Module):
    """DC's AlexNet (see the module docstring)."""

    def __init__(self, spec: NetSpec, *, rngs: nnx.Rngs):
        h, w, cin = spec.image_shape
        widths = [spec.channels(c) for c in _ALEXNET]
        pad = 4 if cin == 1 else 2
        kernels, pads = (5, 5, 3, 3, 3), (pad, 2, 1, 1, 1)
        cins = [cin, *widths[:-1]]
        self.convs = nnx.List(
            [
                conv(a, b, k, padding=p, rngs=rngs)
                for a, b, k, p in zip(cins, widths, kernels, pads, strict=True)
            ]
        )
        side = [(s + 2 * pad - 4) // 2 // 2 // 2 for s in (h, w)]
        _check_map(side, "alexnet", spec)
        self.fc = linear(widths[-1] * side[0] * side[1], spec.num_classes, rngs=rngs)

    def features(self, x, *, train, mask):
        for i, layer in enumerate(self.convs):
            x = jax.nn.relu(layer(x))
            if i in (0, 1, 4):
                x = max_pool(x)
        return x.reshape(x.shape[0], -1)

    def __call__(self, x, *, train, mask):
        return self.fc(self.features(x, train=train, mask=mask))


class VGG11(nnx.Module):
    """DC's VGG-11 (see the module docstring)."""

    def __init__(self, spec: NetSpec, *, rngs: nnx.Rngs):
        h, w, cin = spec.image_shape
        layers, side = [], [s + (4 if cin == 1 else 0) for s in (h, w)]
        channels = cin
        for i, item in enumerate(_VGG11):
            if item == "M":
                side = [s // 2 for s in side]
                continue
            pad = 3 if cin == 1 and i == 0 else 1
            cout = spec.channels(item)
            layers.append(_ConvNormAct(channels, cout, 3, pad, spec, rngs=rngs))
            channels = cout
        _check_map(side, "vgg11", spec)
        self.layers = nnx.List(layers)
        self.classifier = linear(channels * side[0] * side[1], spec.num_classes, rngs=rngs)

    def features(self, x, *, train, mask):
        blocks = iter(self.layers)
        for item in _VGG11:
            x = max_pool(x) if item == "M" else next(blocks)(x, train=train, mask=mask)
        return x.reshape(x.shape[0], -1)

    def __call__(self, x, *, train, mask):
        return self.classifier(self.features(x, train=train, mask=mask))


class _BasicBlock(nnx.Module):
    """ResNet's basic block; ``pooled``: the AP variant (stride-1 convs + 2×2 avg pools)."""

    def __init__(self, cin, cout, stride, spec: NetSpec, *, pooled: bool, rngs):
        conv_stride = 1 if pooled else stride
        self.stride, self.pooled = stride, pooled
        self.conv1 = conv(cin, cout, 3, stride=conv_stride, padding=1, bias=False, rngs=rngs)
        self.norm1 = Norm(cout, spec.norm)
        self.conv2 = conv(cout, cout, 3, padding=1, bias=False, rngs=rngs)
        self.norm2 = Norm(cout, spec.norm)
        self.project = stride != 1 or cin != cout
        if self.project:
            self.shortcut = conv(cin, cout, 1, stride=conv_stride, bias=False, rngs=rngs)
            self.shortcut_norm = Norm(cout, spec.norm)

    def __call__(self, x, *, train, mask):
        out = jax.nn.relu(self.norm1(self.conv1(x), train=train, mask=mask))
        if self.pooled and self.stride != 1:
            out = avg_pool(out)
        out = self.norm2(self.conv2(out), train=train, mask=mask)
        skip = x
        if self.project:
            skip = self.shortcut(x)
            skip = avg_pool(skip) if self.pooled and self.stride != 1 else skip
            skip = self.shortcut_norm(skip, train=train, mask=mask)
        return jax.nn.relu(out + skip)


class ResNet18(nnx.Module):
    """DC's ResNet-18 and ResNet-18_AP (see the module docstring)."""

    def __init__(self, spec: NetSpec, *, rngs: nnx.Rngs):
        h, w, cin = spec.image_shape
        self.pooled = spec.arch == "resnet18_ap"
        width = spec.channels(64)
        self.stem = _ConvNormAct(cin, width, 3, 1, spec, rngs=rngs, bias=False)
        blocks, channels, side = [], width, [h, w]
        for stage, reference in enumerate(_RESNET_STAGES):
            cout = spec.channels(reference)
            for i in range(2):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(
                    _BasicBlock(channels, cout, stride, spec, pooled=self.pooled, rngs=rngs)
                )
                channels = cout
                if stride == 2:
                    side = [s // 2 if self.pooled else (s - 1) // 2 + 1 for s in side]
        if not self.pooled:
            side = [s // 4 for s in side]
        _check_map(side, spec.arch, spec)
        self.blocks = nnx.List(blocks)
        self.classifier = linear(channels * side[0] * side[1], spec.num_classes, rngs=rngs)

    def features(self, x, *, train, mask):
        x = self.stem(x, train=train, mask=mask)
        for block in self.blocks:
            x = block(x, train=train, mask=mask)
        if not self.pooled:
            x = avg_pool(x, 4)
        return x.reshape(x.shape[0], -1)

    def __call__(self, x, *, train, mask):
        return self.classifier(self.features(x, train=train, mask=mask))


_BUILDERS = {"alexnet": AlexNet, "vgg11": VGG11, "resnet18": ResNet18, "resnet18_ap": ResNet18}


def _check_map(side: list[int], name: str, spec: NetSpec) -> None:
    if min(side) < 1:
        h, w, _ = spec.image_shape
        raise ConfigError(
            f"{name} pools {h}x{w} images below 1 pixel: it needs inputs of at least 28 px "
            "(the references define it for 28 and 32 px)"
        )


@functools.lru_cache(maxsize=32)
def make_network(spec: NetSpec) -> Model:
    """The `Model` of `spec` (cached: equal specs give the same `Model`).

    Example:
      >>> model = make_network(network_spec("resnet18bn", 10, (28, 28, 1), 0.125))
      >>> params, stats = model.init(jax.random.key(0)), model.init_stats()
      >>> logits, stats = model.apply_train(params, stats, jnp.zeros((2, 28, 28, 1)), None)
      >>> logits.shape
      (2, 10)
    """
    if spec.arch == "alexnet" and spec.norm != "none":
        raise ConfigError("AlexNet has no normalisation layers: use norm='none'")
    build = _BUILDERS[spec.arch]
    return pure_model(lambda rngs: build(spec, rngs=rngs), spec)
