"""Datasets, the registry that loads them, and pixel preprocessing (normalisation, ZCA)."""

from jaxdd.data.dataset import Dataset
from jaxdd.data.preprocess import ZCA, denormalize, fit_zca, normalize, zca_apply, zca_inverse
from jaxdd.data.registry import (
    CIFAR10_NAMES,
    CIFAR10N_FIELDS,
    CIFAR100N_FIELDS,
    FASHION_MNIST_NAMES,
    DatasetInfo,
    list_datasets,
    load_dataset,
    load_npz_dataset,
)

__all__ = [
    "CIFAR10N_FIELDS",
    "CIFAR10_NAMES",
    "CIFAR100N_FIELDS",
    "FASHION_MNIST_NAMES",
    "ZCA",
    "Dataset",
    "DatasetInfo",
    "denormalize",
    "fit_zca",
    "list_datasets",
    "load_dataset",
    "load_npz_dataset",
    "normalize",
    "zca_apply",
    "zca_inverse",
]
