"""Functional ConvNet over one flat parameter vector (docs/algorithms.md §0.1).

Mirrors the references' ``ReparamModule``: every parameter is a view into a
single flat tensor, so an unrolled student is a list of flat vectors and
``torch.autograd.grad`` can differentiate the CE loss w.r.t. one tensor.

Flat layout, in order: for each block ``[conv weight (W, C_in, 3, 3), conv
bias (W,), norm weight (W,), norm bias (W,)]``, then the head ``[weight
(num_classes, D), bias (num_classes,)]`` with ``D = W * s * s`` and ``s`` the
spatial size after ``depth`` floor-halvings (28 -> 14 -> 7 -> 3).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812 (the conventional alias)

NORM_EPS = 1e-5


class _Slot(NamedTuple):
    """One parameter tensor inside the flat vector."""

    shape: tuple[int, ...]
    init: str  # "uniform" (PyTorch default, bound 1/sqrt(fan_in)), "ones" or "zeros"
    fan_in: int = 0


def _layout(num_classes: int, in_channels: int, image_size: int, width: int, depth: int):
    """Returns the ordered parameter slots of the ConvNet."""
    slots, channels, size = [], in_channels, image_size
    for _ in range(depth):
        fan_in = channels * 9
        slots += [
            _Slot((width, channels, 3, 3), "uniform", fan_in),
            _Slot((width,), "uniform", fan_in),
            _Slot((width,), "ones"),
            _Slot((width,), "zeros"),
        ]
        channels, size = width, size // 2
    features = width * size * size
    slots += [
        _Slot((num_classes, features), "uniform", features),
        _Slot((num_classes,), "uniform", features),
    ]
    return slots


class ConvNetFlat:
    """ConvNet (conv3x3 -> instance norm -> ReLU -> avgpool2) x depth -> linear.

    Args:
      num_classes: number of output logits C.
      in_channels: image channels.
      image_size: square input side (28 or 32 for depth 3).
      width: conv channels W.
      depth: number of conv blocks.
    """

    def __init__(
        self, num_classes: int, in_channels: int, image_size: int, width: int = 128, depth: int = 3
    ):
        self.width = width
        self.depth = depth
        self._slots = _layout(num_classes, in_channels, image_size, width, depth)
        self._numels = [math.prod(s.shape) for s in self._slots]
        self.num_params = sum(self._numels)

    def init_flat(
        self, generator: torch.Generator, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Samples PyTorch's default init as a flat vector ``[P]`` (on CPU)."""
        parts = []
        for slot in self._slots:
            if slot.init == "uniform":
                bound = 1.0 / math.sqrt(slot.fan_in)
                u = torch.rand(slot.shape, generator=generator, dtype=dtype)
                parts.append((2.0 * u - 1.0) * bound)
            else:
                fill = torch.ones if slot.init == "ones" else torch.zeros
                parts.append(fill(slot.shape, dtype=dtype))
        return torch.cat([p.reshape(-1) for p in parts])

    def unflatten(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Splits ``flat [P]`` into views with the layout's shapes."""
        chunks = flat.split(self._numels)
        return [c.view(s.shape) for c, s in zip(chunks, self._slots, strict=True)]

    def features(self, x: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[B, D]`` of images ``x: [B, C_in, H, W]`` (DM's embedding)."""
        params = self.unflatten(flat)
        h = x
        for block in range(self.depth):
            weight, bias, gamma, beta = params[4 * block : 4 * block + 4]
            h = F.conv2d(h, weight, bias, padding=1)
            h = F.group_norm(h, self.width, gamma, beta, eps=NORM_EPS)
            h = F.avg_pool2d(F.relu(h), kernel_size=2, stride=2)
        return h.flatten(1)

    def forward(self, x: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C]`` of images ``x: [B, C_in, H, W]`` under parameters ``flat [P]``."""
        head_w, head_b = self.unflatten(flat)[-2:]
        return F.linear(self.features(x, flat), head_w, head_b)

    __call__ = forward
