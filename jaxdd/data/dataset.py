"""The typed in-memory dataset every pipeline stage starts from."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A labelled image classification dataset held as host numpy arrays.

    Attributes:
      name: registry name (``digits``, ``fashion_mnist``, ``npz:PATH`` ...).
      x_train: ``[N, H, W, C] uint8`` training images.
      y_train: ``[N] int32`` clean training labels.
      x_test: ``[M, H, W, C] uint8`` test images.
      y_test: ``[M] int32`` clean test labels.
      class_names: ``C`` human-readable class names.
      noisy_labels: named alternative training label sets (``[N] int32``)
        that come with the data, e.g. CIFAR-10N's ``aggre``/``worst`` or a
        user ``y_train_noisy``; empty when the data has none.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    noisy_labels: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one image."""
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def channel_mean(self) -> np.ndarray:
        """``[C] float32`` per-channel mean of the training images in [0, 1]."""
        return (self.x_train.reshape(-1, self.image_shape[-1]).mean(0) / 255.0).astype(np.float32)

    @property
    def channel_std(self) -> np.ndarray:
        """``[C] float32`` per-channel std of the training images in [0, 1]."""
        return (self.x_train.reshape(-1, self.image_shape[-1]).std(0) / 255.0).astype(np.float32)
