"""Dataset registry: `load_dataset` by name and `list_datasets` with availability.

Sources (docs/architecture.md, "Data sources"):

- ``digits``: scikit-learn's embedded 8x8 digits; always available offline.
- ``fashion_mnist`` / ``mnist``: the original IDX files when present on disk
  (Debian's ``dataset-fashion-mnist`` for Fashion-MNIST), else TFDS.
- ``cifar10``, ``cifar100``, ``cifar10_n``, ``cifar100_n``: TFDS, read with
  ``tfds.data_source`` (needs no TensorFlow, never downloads).
- ``npz:PATH``: a user file; see `load_npz_dataset` for what it must hold.

``tensorflow_datasets`` is imported only when a TFDS path is taken: its
import is slow and ``digits`` / IDX / npz users never need it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import pathlib
import zipfile
import zlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxdd.data.dataset import Dataset
from jaxdd.data.idx import read_idx
from jaxdd.errors import ConfigError, DataUnavailableError

FASHION_MNIST_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
DIGIT_NAMES: tuple[str, ...] = tuple(str(i) for i in range(10))

# TFDS feature name -> jaxdd noisy label name (tensorflow_datasets
# image_classification/cifar10_n and cifar100_n builders).
CIFAR10N_FIELDS: dict[str, str] = {
    "aggre": "aggre_label",
    "random1": "random_label1",
    "random2": "random_label2",
    "random3": "random_label3",
    "worst": "worse_label",
}
CIFAR100N_FIELDS: dict[str, str] = {"noisy": "noise_label"}

DIGITS_TEST_SIZE = 500
DIGITS_SPLIT_SEED = 0
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# Records per batched ``__getitems__`` call: large enough that array_record
# reads in parallel, small enough to keep the decoded batch ~10 MB.
_TFDS_CHUNK = 2048


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What `list_datasets` reports about one registry name.

    Attributes:
      name: the name to pass to `load_dataset`.
      description: one line about the data.
      source: where it is read from.
      available: whether it can be loaded here now (a cheap file-existence
        check; nothing is read).
      how_to_get: what to do when it is not available.
    """

    name: str
    description: str
    source: str
    available: bool
    how_to_get: str


class _Entry(NamedTuple):
    description: str
    source: str
    how_to_get: str
    load: Callable[[str | None], Dataset]
    available: Callable[[str | None], bool]


def load_dataset(name: str, *, data_dir: str | None = None) -> Dataset:
    """Loads a registered dataset into host memory.

    Args:
      name: a name from `list_datasets` (``digits``, ``fashion_mnist``,
        ``mnist``, ``cifar10``, ``cifar100``, ``cifar10_n``, ``cifar100_n``)
        or ``npz:PATH``.
      data_dir: where to look first: a folder with IDX files (directly or in
        a ``fashion-mnist`` / ``mnist`` subfolder) and/or a TFDS data dir.

    Returns:
      The `Dataset`: ``x_* [N, H, W, C] uint8``, ``y_* [N] int32``.

    Raises:
      ConfigError: unknown name, or a bad npz file.
      DataUnavailableError: the data is not on this machine; the message says
        how to get it.

    Example:
      >>> ds = load_dataset("digits")
      >>> ds.x_train.shape, ds.x_test.shape
      ((1297, 8, 8, 1), (500, 8, 8, 1))
    """
    if name.startswith("npz:"):
        return load_npz_dataset(name.removeprefix("npz:"))
    entry = _ENTRIES.get(name)
    if entry is None:
        raise _unknown_name(name)
    return entry.load(data_dir)


def list_datasets(*, data_dir: str | None = None) -> list[DatasetInfo]:
    """Lists every registry name with where it comes from and whether it is here.

    Args:
      data_dir: the same ``data_dir`` `load_dataset` would get.

    Returns:
      One `DatasetInfo` per name, ``npz:PATH`` last.
    """
    infos = [
        DatasetInfo(name, e.description, e.source, e.available(data_dir), e.how_to_get)
        for name, e in _ENTRIES.items()
    ]
    infos.append(DatasetInfo("npz:PATH", "your own arrays", "a .npz file", True, _NPZ_CONTENT))
    return infos


def _unknown_name(name: str) -> ConfigError:
    valid = [*_ENTRIES, "npz:PATH"]
    close = difflib.get_close_matches(name.lower().replace("-", "_"), valid, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown dataset {name!r}.{hint} Valid names: {', '.join(valid)}.")


# --- digits -----------------------------------------------------------------


def _load_digits(data_dir: str | None) -> Dataset:
    """scikit-learn's 1797 8x8 digits, split stratified (seed 0) into 500 test / 1297 train."""
    del data_dir  # embedded in the scikit-learn wheel
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # Pixel values are counts 0..16 of a 4x4 block; spread them over 0..255.
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int32)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)),
        test_size=DIGITS_TEST_SIZE,
        stratify=labels,
        random_state=DIGITS_SPLIT_SEED,
    )
    # Keep the original order inside each split so the split is a pure subset.
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return Dataset(
        name="digits",
        x_train=images[train_idx],
        y_train=labels[train_idx],
        x_test=images[test_idx],
        y_test=labels[test_idx],
        class_names=DIGIT_NAMES,
    )


# --- IDX (MNIST-format files on disk) ---------------------------------------


def _idx_file(folder: pathlib.Path, stem: str) -> pathlib.Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _idx_folders(subdir: str, data_dir: str | None, *, bare: bool) -> list[pathlib.Path]:
    """Where to look for IDX files, in order: ``data_dir``, ``$JAXDD_DATA_DIR``, then Debian's.

    ``bare`` also accepts the files directly in ``data_dir`` / ``$JAXDD_DATA_DIR``
    (not only in their ``subdir``).
    """
    folders = []
    for root in (data_dir, os.environ.get("JAXDD_DATA_DIR")):
        if root:
            folders.append(pathlib.Path(root).expanduser() / subdir)
            if bare:
                folders.append(pathlib.Path(root).expanduser())
    if subdir == "fashion-mnist":
        folders.append(pathlib.Path(DEBIAN_FASHION_MNIST_DIR))
    return folders


def _find_idx_dir(subdir: str, data_dir: str | None, *, bare: bool) -> pathlib.Path | None:
    """The first of `_idx_folders` that holds all four IDX files."""
    for folder in _idx_folders(subdir, data_dir, bare=bare):
        if all(_idx_file(folder, stem) for stem in _IDX_FILES.values()):
            return folder
    return None


def _load_idx_dataset(name: str, folder: pathlib.Path, class_names: tuple[str, ...]) -> Dataset:
    """Reads the four IDX files in ``folder``; images ``[N, H, W] -> [N, H, W, 1]``."""
    arrays = {key: read_idx(_idx_file(folder, stem)) for key, stem in _IDX_FILES.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.dtype != np.uint8 or y.ndim != 1 or len(x) != len(y):
            raise DataUnavailableError(
                f"IDX files in {folder} do not form a {split} set: images {x.shape} {x.dtype}, "
                f"labels {y.shape}; expected [N, H, W] uint8 images and [N] labels"
            )
        if y.size and y.max() >= len(class_names):
            raise DataUnavailableError(
                f"IDX labels in {folder} go up to {y.max()}, but {name} has {len(class_names)} "
                "classes: these are not the right files"
            )
    return Dataset(
        name=name,
        x_train=arrays["x_train"][..., None],
        y_train=arrays["y_train"].astype(np.int32),
        x_test=arrays["x_test"][..., None],
        y_test=arrays["y_test"].astype(np.int32),
        class_names=class_names,
    )


def _load_idx_or_tfds(
    data_dir: str | None,
    *,
    name: str,
    subdir: str,
    bare: bool,
    class_names: tuple[str, ...],
) -> Dataset:
    """IDX files from `_idx_folders` when all four are there, else TFDS ``name``."""
    folder = _find_idx_dir(subdir, data_dir, bare=bare)
    if folder is not None:
        return _load_idx_dataset(name, folder, class_names)
    try:
        return _load_tfds(name, data_dir, class_names=class_names)
    except DataUnavailableError as err:
        searched = ", ".join(str(f) for f in _idx_folders(subdir, data_dir, bare=bare))
        raise DataUnavailableError(
            f"no {name} IDX files in {searched or '(no folder given)'}, and {err}"
        ) from err


# --- TFDS -------------------------------------------------------------------


def _tfds_root(data_dir: str | None) -> pathlib.Path:
    return pathlib.Path(
        data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    ).expanduser()


def _tfds_prepared(tfds_name: str, data_dir: str | None) -> bool:
    """Cheap check: some version of ``tfds_name`` has a dataset_info.json under the data dir."""
    return any((_tfds_root(data_dir) / tfds_name).glob("*/dataset_info.json"))


def _import_tfds(name: str) -> Any:
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise DataUnavailableError(
            f"dataset {name!r} needs tensorflow_datasets, which is not installed. "
            f"{_ENTRIES[name].how_to_get}"
        ) from err
    return tfds


def _open_tfds(name: str, data_dir: str | None) -> tuple[Sequence[Any], Sequence[Any]]:
    """Opens the train and test data sources of TFDS dataset ``name`` without downloading."""
    tfds = _import_tfds(name)
    from google.protobuf.json_format import ParseError  # a tensorflow_datasets dependency

    try:
        train, test = tfds.data_source(
            name, split=["train", "test"], data_dir=data_dir, download=False
        )
    # What tfds 4.9 raises when the data is absent: KeyError (no splits
    # recorded), NotImplementedError / ValueError (no random-access files),
    # OSError (files missing or unreadable), ParseError (damaged metadata).
    except (KeyError, NotImplementedError, ValueError, OSError, ParseError) as err:
        raise _tfds_unavailable(name, data_dir, err) from err
    return train, test


def _tfds_unavailable(name: str, data_dir: str | None, err: Exception) -> DataUnavailableError:
    if not _tfds_prepared(name, data_dir):
        reason = "it is not prepared there"
    elif isinstance(err, NotImplementedError):
        reason = (
            "it is prepared there, but not in a random-access format "
            "(array_record or parquet) that tfds.data_source can read"
        )
    else:
        reason = f"its files there are unreadable ({err})"
    return DataUnavailableError(
        f"cannot read TFDS dataset {name!r} from {_tfds_root(data_dir)}: {reason} "
        f"[tfds raised {type(err).__name__}]. {_ENTRIES[name].how_to_get}"
    )


def _read_records(source: Sequence[Any], keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Reads every record of a TFDS data source; returns one stacked array per key."""
    columns: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    for start in range(0, len(source), _TFDS_CHUNK):
        records = source.__getitems__(list(range(start, min(start + _TFDS_CHUNK, len(source)))))
        for key in keys:
            columns[key].append(np.stack([np.asarray(r[key]) for r in records]))
    return {key: np.concatenate(parts) for key, parts in columns.items()}


def _tfds_class_names(
    source: Any, fallback: tuple[str, ...] | Callable[[], tuple[str, ...]]
) -> tuple[str, ...]:
    """The TFDS label names, unless TFDS only knows placeholder names ``'0'..'C-1'``."""
    names = tuple(source.dataset_info.features["label"].names)
    if names != tuple(str(i) for i in range(len(names))):
        return names
    return fallback() if callable(fallback) else fallback


def _load_tfds(
    name: str,
    data_dir: str | None,
    *,
    class_names: tuple[str, ...] | Callable[[], tuple[str, ...]],
    noisy_fields: dict[str, str] | None = None,
) -> Dataset:
    """Loads TFDS dataset ``name``; ``noisy_fields`` maps jaxdd names to TFDS train fields."""
    noisy_fields = noisy_fields or {}
    train_source, test_source = _open_tfds(name, data_dir)
    train = _read_records(train_source, ["image", "label", *noisy_fields.values()])
    test = _read_records(test_source, ["image", "label"])
    return Dataset(
        name=name,
        x_train=train["image"].astype(np.uint8),
        y_train=train["label"].astype(np.int32),
        x_test=test["image"].astype(np.uint8),
        y_test=test["label"].astype(np.int32),
        class_names=_tfds_class_names(train_source, class_names),
        noisy_labels={
            short: train[field].astype(np.int32) for short, field in noisy_fields.items()
        },
    )


def _cifar100_names() -> tuple[str, ...]:
    from jaxdd.data.noise import CIFAR100_FINE_NAMES

    return tuple(CIFAR100_FINE_NAMES)


# --- npz ----------------------------------------------------------------------

_NPZ_CONTENT = (
    "an .npz file (numpy.savez) with x_train [N, H, W] or [N, H, W, C] and x_test [M, ...] "
    "(uint8, or float in [0, 1]), y_train [N] and y_test [M] integer labels in [0, C); "
    "optional: y_train_noisy [N] (loaded as noisy_labels['given']) and class_names [C] str"
)


def load_npz_dataset(path: str) -> Dataset:
    """Loads a user ``.npz`` file (registry name ``npz:PATH``).

    The file must hold ``x_train`` ``[N, H, W]`` or ``[N, H, W, C]``,
    ``x_test`` ``[M, H, W(, C)]`` (uint8, or float in [0, 1], rounded to
    uint8), ``y_train [N]`` and ``y_test [M]`` integer labels in ``[0, C)``;
    optionally ``y_train_noisy [N]`` (becomes ``noisy_labels['given']``) and
    ``class_names [C]`` strings (default ``'0'..'C-1'`` with ``C`` = largest
    label + 1).

    Args:
      path: the file.

    Returns:
      The `Dataset`, named ``npz:PATH``.

    Raises:
      ConfigError: the file is unreadable or its content is not as above.
    """
    arrays = _read_npz(path)

    def fail(what: str) -> ConfigError:
        return ConfigError(f"npz file {path!r}: {what}. It must be {_NPZ_CONTENT}.")

    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise fail(f"missing {', '.join(missing)} (found: {', '.join(sorted(arrays)) or 'none'})")
    x_train = _npz_images(arrays["x_train"], "x_train", fail)
    x_test = _npz_images(arrays["x_test"], "x_test", fail)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise fail(f"x_train images are {x_train.shape[1:]} but x_test images {x_test.shape[1:]}")
    counts = {"y_train": len(x_train), "y_test": len(x_test), "y_train_noisy": len(x_train)}
    labels = {k: _npz_labels(arrays[k], k, n, fail) for k, n in counts.items() if k in arrays}
    class_names = _npz_class_names(arrays, labels, fail)
    for key, y in labels.items():
        if y.min() < 0 or y.max() >= len(class_names):
            raise fail(f"{key} has labels outside [0, {len(class_names)})")
    noisy = {"given": labels["y_train_noisy"]} if "y_train_noisy" in labels else {}
    return Dataset(
        name=f"npz:{path}",
        x_train=x_train,
        y_train=labels["y_train"],
        x_test=x_test,
        y_test=labels["y_test"],
        class_names=class_names,
        noisy_labels=noisy,
    )


def _read_npz(path: str) -> dict[str, np.ndarray]:
    """All arrays of the archive at ``path`` (pickled objects refused)."""
    # np.load gets an open file, not the path: on a damaged archive it would
    # leak a file handle it opened itself.
    try:
        with open(os.path.expanduser(path), "rb") as f:
            # Without one of numpy's headers np.load would try unpickling and say so.
            is_numpy = f.read(6).startswith((b"PK", b"\x93NUMPY"))
            f.seek(0)
            loaded = np.load(f, allow_pickle=False) if is_numpy else None
            is_archive = isinstance(loaded, np.lib.npyio.NpzFile)
            arrays = {key: loaded[key] for key in loaded.files} if is_archive else {}
    # ValueError: an object (pickled) array or not numpy data; the others: a
    # missing file or a damaged archive.
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise ConfigError(
            f"cannot read npz file {path!r} ({type(err).__name__}: {err}). "
            f"It must be {_NPZ_CONTENT}."
        ) from err
    if not is_numpy:
        raise ConfigError(
            f"cannot read npz file {path!r}: it is not a valid npz archive (no zip header). "
            f"It must be {_NPZ_CONTENT}."
        )
    if not is_archive:
        raise ConfigError(
            f"{path!r} holds a single array, not an archive. It must be {_NPZ_CONTENT}."
        )
    return arrays


def _npz_images(x: np.ndarray, key: str, fail: Callable[[str], ConfigError]) -> np.ndarray:
    """``[N, H, W(, C)]`` uint8 or float in [0, 1] -> ``[N, H, W, C] uint8``."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or len(x) == 0:
        raise fail(f"{key} has shape {x.shape}; expected non-empty [N, H, W] or [N, H, W, C]")
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.floating):
        raise fail(f"{key} has dtype {x.dtype}; expected uint8, or float in [0, 1]")
    if not np.all(np.isfinite(x)):
        raise fail(f"{key} has NaN or infinite values")
    if x.min() < 0.0 or x.max() > 1.0:
        raise fail(
            f"{key} is float with values in [{x.min():.4g}, {x.max():.4g}]; float images "
            "must lie in [0, 1] (divide 0..255 data by 255, or store uint8)"
        )
    return np.rint(x * 255.0).astype(np.uint8)


def _npz_labels(y: np.ndarray, key: str, n: int, fail: Callable[[str], ConfigError]) -> np.ndarray:
    """``[n]`` integer labels -> ``[n] int32`` (the range is checked against the class count)."""
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise fail(f"{key} has shape {y.shape} and dtype {y.dtype}; expected [N] integers")
    if len(y) != n:
        raise fail(f"{key} has {len(y)} labels for {n} images")
    return y.astype(np.int32)


def _npz_class_names(
    arrays: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    fail: Callable[[str], ConfigError],
) -> tuple[str, ...]:
    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise fail(f"class_names has shape {names.shape} and dtype {names.dtype}")
        return tuple(str(n) for n in names.astype(str))
    return tuple(str(i) for i in range(max(int(y.max()) for y in labels.values()) + 1))


# --- the registry ---------------------------------------------------------------

_TFDS_HOW = (
    "On a machine with internet: pip install 'jaxdd[tfds]' && python -c \"import "
    "tensorflow_datasets as tfds; tfds.builder('{name}', file_format='array_record')"
    '.download_and_prepare()"; then copy its data dir (default ~/tensorflow_datasets) here '
    "and set TFDS_DATA_DIR=DIR (from Python: load_dataset(..., data_dir=DIR))."
)
_MANUAL_HOW = (
    " cifar10_n / cifar100_n also need the human label files from "
    "https://github.com/UCSC-REAL/cifar-10-100n in DIR/downloads/manual first (see "
    "tfds.builder('{name}').MANUAL_DOWNLOAD_INSTRUCTIONS)."
)
_IDX_HOW = (
    "Put the four IDX files ({files}, .gz or not) in DIR/{subdir}/ and set JAXDD_DATA_DIR=DIR "
    "(from Python: load_dataset(..., data_dir=DIR)). "
)


def _tfds_entry(name: str, description: str, manual: bool = False, **load_kwargs: Any) -> _Entry:
    how = _TFDS_HOW.format(name=name) + (_MANUAL_HOW.format(name=name) if manual else "")
    return _Entry(
        description=description,
        source=f"TFDS {name}",
        how_to_get=how,
        load=lambda data_dir: _load_tfds(name, data_dir, **load_kwargs),
        available=lambda data_dir: _tfds_prepared(name, data_dir),
    )


_ENTRIES: dict[str, _Entry] = {
    "digits": _Entry(
        description="8x8 grey handwritten digits, 10 classes, 1297 train / 500 test",
        source="scikit-learn (embedded)",
        how_to_get="Always available: it ships inside scikit-learn.",
        load=_load_digits,
        available=lambda data_dir: True,
    ),
    "fashion_mnist": _Entry(
        description="28x28 grey clothing images, 10 classes, 60000 train / 10000 test",
        source=f"IDX files (data_dir, $JAXDD_DATA_DIR, {DEBIAN_FASHION_MNIST_DIR}), else TFDS",
        how_to_get="apt-get install dataset-fashion-mnist (Debian/Ubuntu, as root). Or: "
        + _IDX_HOW.format(files=", ".join(_IDX_FILES.values()), subdir="fashion-mnist")
        + "Or TFDS: "
        + _TFDS_HOW.format(name="fashion_mnist"),
        load=functools.partial(
            _load_idx_or_tfds,
            name="fashion_mnist",
            subdir="fashion-mnist",
            bare=True,
            class_names=FASHION_MNIST_NAMES,
        ),
        available=lambda data_dir: (
            _find_idx_dir("fashion-mnist", data_dir, bare=True) is not None
            or _tfds_prepared("fashion_mnist", data_dir)
        ),
    ),
    "mnist": _Entry(
        description="28x28 grey handwritten digits, 10 classes, 60000 train / 10000 test",
        source="IDX files (data_dir/mnist, $JAXDD_DATA_DIR/mnist), else TFDS",
        how_to_get=_IDX_HOW.format(files=", ".join(_IDX_FILES.values()), subdir="mnist")
        + "Or TFDS: "
        + _TFDS_HOW.format(name="mnist"),
        # Only the ``mnist`` subfolder: MNIST and Fashion-MNIST share file
        # names, so a bare folder would be ambiguous.
        load=functools.partial(
            _load_idx_or_tfds, name="mnist", subdir="mnist", bare=False, class_names=DIGIT_NAMES
        ),
        available=lambda data_dir: (
            _find_idx_dir("mnist", data_dir, bare=False) is not None
            or _tfds_prepared("mnist", data_dir)
        ),
    ),
    "cifar10": _tfds_entry(
        "cifar10",
        "32x32 colour images, 10 classes, 50000 train / 10000 test",
        class_names=CIFAR10_NAMES,
    ),
    "cifar100": _tfds_entry(
        "cifar100",
        "32x32 colour images, 100 fine classes, 50000 train / 10000 test",
        class_names=_cifar100_names,
    ),
    "cifar10_n": _tfds_entry(
        "cifar10_n",
        "CIFAR-10 with human noisy train labels: aggre, random1..3, worst",
        manual=True,
        class_names=CIFAR10_NAMES,
        noisy_fields=CIFAR10N_FIELDS,
    ),
    "cifar100_n": _tfds_entry(
        "cifar100_n",
        "CIFAR-100 with human noisy train labels: noisy",
        manual=True,
        class_names=_cifar100_names,
        noisy_fields=CIFAR100N_FIELDS,
    ),
}
