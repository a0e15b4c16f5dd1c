"""Datasets, the registry that loads them, and pixel preprocessing (normalisation, ZCA).

The names are imported on first use, so that loading a dataset does not
start JAX (only the preprocessing needs it).
"""

from jaxdd._lazy import lazy_exports

# Public name -> the module that defines it.
_EXPORTS = {
    "Dataset": "jaxdd.data.dataset",
    "ZCA": "jaxdd.data.preprocess",
    "denormalize": "jaxdd.data.preprocess",
    "fit_zca": "jaxdd.data.preprocess",
    "normalize": "jaxdd.data.preprocess",
    "zca_apply": "jaxdd.data.preprocess",
    "zca_inverse": "jaxdd.data.preprocess",
    "CIFAR10_NAMES": "jaxdd.data.registry",
    "CIFAR10N_FIELDS": "jaxdd.data.registry",
    "CIFAR100N_FIELDS": "jaxdd.data.registry",
    "FASHION_MNIST_NAMES": "jaxdd.data.registry",
    "DatasetInfo": "jaxdd.data.registry",
    "list_datasets": "jaxdd.data.registry",
    "load_dataset": "jaxdd.data.registry",
    "load_npz_dataset": "jaxdd.data.registry",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports("jaxdd.data", _EXPORTS, globals())
