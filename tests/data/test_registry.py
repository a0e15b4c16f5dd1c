"""Tests of jaxdd.data.registry: digits, IDX, npz and TFDS paths, and their errors."""

import pathlib
import time

import numpy as np
import pytest

from jaxdd.data import registry
from jaxdd.data.dataset import Dataset
from jaxdd.data.idx import write_idx
from jaxdd.data.registry import list_datasets, load_dataset
from jaxdd.errors import ConfigError, DataUnavailableError

# Spot checks of the published label orders (the full tuples live in registry).
FASHION_SPOTS = {0: "T-shirt/top", 2: "Pullover", 6: "Shirt", 7: "Sneaker", 9: "Ankle boot"}
CIFAR10_SPOTS = {0: "airplane", 1: "automobile", 3: "cat", 5: "dog", 9: "truck"}
IDX_STEMS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@pytest.fixture(autouse=True)
def _no_user_data_dirs(monkeypatch):
    """Tests see only the data they create (plus Debian's files where a test says so)."""
    monkeypatch.delenv("JAXDD_DATA_DIR", raising=False)


# --- digits -----------------------------------------------------------------


def test_digits_shapes_values_and_names():
    ds = load_dataset("digits")
    assert isinstance(ds, Dataset) and ds.name == "digits"
    assert ds.x_train.shape == (1297, 8, 8, 1) and ds.x_test.shape == (500, 8, 8, 1)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32
    assert ds.y_test.dtype == np.int32
    assert ds.class_names == tuple(str(i) for i in range(10))
    assert ds.noisy_labels == {}
    # 0..16 scaled by 255/16: both ends are reached and only those 17 levels occur.
    levels = np.unique(np.concatenate([ds.x_train.ravel(), ds.x_test.ravel()]))
    assert levels[0] == 0 and levels[-1] == 255
    np.testing.assert_array_equal(levels, np.unique(np.rint(np.arange(17) * 255 / 16)))


def test_digits_split_is_stratified_disjoint_and_reproducible():
    from sklearn.datasets import load_digits

    a, b = load_dataset("digits"), load_dataset("digits")
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    test_counts = np.bincount(a.y_test, minlength=10)
    all_counts = np.bincount(load_digits().target, minlength=10)
    # Each class's share of the test set matches its share of the data (±1 image).
    np.testing.assert_allclose(test_counts, all_counts * 500 / 1797, atol=1.0)
    # Together the splits are exactly the original images, none twice.
    pairs = {(im.tobytes(), y) for im, y in zip(a.x_train, a.y_train, strict=True)}
    pairs |= {(im.tobytes(), y) for im, y in zip(a.x_test, a.y_test, strict=True)}
    original = load_digits()
    scaled = np.rint(original.images * 255 / 16).astype(np.uint8)[..., None]
    assert pairs == {(im.tobytes(), y) for im, y in zip(scaled, original.target, strict=True)}


# --- unknown names and listing ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("fashion-mnist", "fashion_mnist"), ("cifar-10", "cifar10"), ("digit", "digits")],
)
def test_unknown_name_suggests_closest_and_lists_valid(name, suggestion):
    with pytest.raises(ConfigError) as info:
        load_dataset(name)
    message = str(info.value)
    assert f"Did you mean {suggestion!r}" in message
    for valid in ("digits", "fashion_mnist", "mnist", "cifar10_n", "npz:PATH"):
        assert valid in message


def test_list_datasets_reports_availability_without_tfds_import(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setattr(registry, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "none"))
    (tmp_path / "tfds" / "cifar10" / "3.0.2").mkdir(parents=True)
    (tmp_path / "tfds" / "cifar10" / "3.0.2" / "dataset_info.json").write_text("{}")
    infos = {i.name: i for i in list_datasets()}
    assert list(infos) == [
        "digits",
        "fashion_mnist",
        "mnist",
        "cifar10",
        "cifar100",
        "cifar10_n",
        "cifar100_n",
        "npz:PATH",
    ]
    assert infos["digits"].available and infos["cifar10"].available
    assert not infos["cifar100"].available and not infos["fashion_mnist"].available
    assert "apt-get install dataset-fashion-mnist" in infos["fashion_mnist"].how_to_get
    assert "download_and_prepare" in infos["cifar100"].how_to_get
    assert "cifar-10-100n" in infos["cifar10_n"].how_to_get
    _write_fake_idx(tmp_path / "data" / "fashion-mnist", n_train=3, n_test=2)
    infos = {i.name: i for i in list_datasets(data_dir=str(tmp_path / "data"))}
    assert infos["fashion_mnist"].available and not infos["mnist"].available


# --- IDX: fashion_mnist and mnist ----------------------------------------------


def _write_fake_idx(folder, n_train, n_test, *, gz=True, size=28, seed=0):
    """Writes the four IDX files; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, stem in IDX_STEMS.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arrays[key])
    return arrays


def _assert_matches(ds, arrays):
    np.testing.assert_array_equal(ds.x_train, arrays["x_train"][..., None])
    np.testing.assert_array_equal(ds.y_train, arrays["y_train"])
    np.testing.assert_array_equal(ds.x_test, arrays["x_test"][..., None])
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    assert ds.y_train.dtype == np.int32 and ds.x_train.dtype == np.uint8


@pytest.mark.parametrize("layout", ["subdir", "bare"])
@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_data_dir(tmp_path, layout, gz):
    folder = tmp_path / "fashion-mnist" if layout == "subdir" else tmp_path
    arrays = _write_fake_idx(folder, n_train=12, n_test=5, gz=gz)
    ds = load_dataset("fashion_mnist", data_dir=str(tmp_path))
    _assert_matches(ds, arrays)
    assert ds.name == "fashion_mnist"
    _assert_names(ds.class_names, FASHION_SPOTS)
    assert ds.image_shape == (28, 28, 1)


def test_data_dir_wins_over_env_and_env_over_debian(tmp_path, monkeypatch):
    env_arrays = _write_fake_idx(tmp_path / "env" / "fashion-mnist", 4, 2, seed=1)
    arg_arrays = _write_fake_idx(tmp_path / "arg", 6, 3, seed=2)
    monkeypatch.setenv("JAXDD_DATA_DIR", str(tmp_path / "env"))
    _assert_matches(load_dataset("fashion_mnist", data_dir=str(tmp_path / "arg")), arg_arrays)
    _assert_matches(load_dataset("fashion_mnist"), env_arrays)


def test_mnist_reads_only_the_mnist_subfolder(tmp_path, monkeypatch):
    arrays = _write_fake_idx(tmp_path / "mnist", 7, 3)
    monkeypatch.setenv("JAXDD_DATA_DIR", str(tmp_path))
    ds = load_dataset("mnist")
    _assert_matches(ds, arrays)
    assert ds.class_names == tuple(str(i) for i in range(10))


def test_idx_labels_out_of_range_are_rejected(tmp_path):
    _write_fake_idx(tmp_path, 5, 2)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([3, 10], np.uint8))
    with pytest.raises(DataUnavailableError, match="go up to 10"):
        load_dataset("fashion_mnist", data_dir=str(tmp_path))


def test_idx_image_label_count_mismatch_is_rejected(tmp_path):
    _write_fake_idx(tmp_path, 5, 2)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(DataUnavailableError, match="do not form a train set"):
        load_dataset("fashion_mnist", data_dir=str(tmp_path))


DEBIAN = pathlib.Path(registry.DEBIAN_FASHION_MNIST_DIR)


@pytest.mark.skipif(
    not (DEBIAN / "t10k-labels-idx1-ubyte.gz").exists(),
    reason="Debian package dataset-fashion-mnist is not installed",
)
def test_real_debian_fashion_mnist():
    ds = load_dataset("fashion_mnist")  # ~1 s: 30 MB of gzip
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(ds.y_train), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(ds.y_test), np.full(10, 1000))
    # The published first training label (ankle boot) and mean pixel (~72.9 / 255).
    assert ds.y_train[0] == 9
    np.testing.assert_allclose(ds.channel_mean, [0.2860], atol=1e-3)
    assert {i.name: i for i in list_datasets()}["fashion_mnist"].available


# --- npz ------------------------------------------------------------------------


def _npz_arrays(channels=None, dtype=np.uint8, n_train=6, n_test=4):
    rng = np.random.default_rng(0)
    shape = (5, 5) if channels is None else (5, 5, channels)
    if dtype == np.uint8:
        x_train = rng.integers(0, 256, (n_train, *shape), dtype=np.uint8)
        x_test = rng.integers(0, 256, (n_test, *shape), dtype=np.uint8)
    else:
        x_train = rng.random((n_train, *shape)).astype(dtype)
        x_test = rng.random((n_test, *shape)).astype(dtype)
    return {
        "x_train": x_train,
        "y_train": np.arange(n_train) % 3,
        "x_test": x_test,
        "y_test": np.arange(n_test) % 3,
    }


def _save(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return f"npz:{path}"


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_npz_uint8(tmp_path, channels):
    arrays = _npz_arrays(channels)
    ds = load_dataset(_save(tmp_path, **arrays))
    c = channels or 1
    assert ds.x_train.shape == (6, 5, 5, c) and ds.x_test.shape == (4, 5, 5, c)
    expected = arrays["x_train"] if channels else arrays["x_train"][..., None]
    np.testing.assert_array_equal(ds.x_train, expected)
    assert ds.y_train.dtype == np.int32 and ds.class_names == ("0", "1", "2")
    assert ds.noisy_labels == {} and ds.name == f"npz:{tmp_path / 'data.npz'}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_npz_float_in_unit_interval_is_rounded_to_uint8(tmp_path, dtype):
    arrays = _npz_arrays(3, dtype)
    arrays["x_train"][0, 0, 0] = [0.0, 1.0, 0.5 / 255 + 1e-4]
    ds = load_dataset(_save(tmp_path, **arrays))
    assert ds.x_train.dtype == np.uint8
    np.testing.assert_array_equal(ds.x_train, np.rint(arrays["x_train"] * 255).astype(np.uint8))
    assert ds.x_train[0, 0, 0].tolist() == [0, 255, 1]


def test_npz_noisy_labels_and_class_names(tmp_path):
    arrays = _npz_arrays()
    noisy = (arrays["y_train"] + 1) % 4
    path = _save(tmp_path, **arrays, y_train_noisy=noisy, class_names=np.array(list("abcd")))
    ds = load_dataset(path)
    assert ds.class_names == ("a", "b", "c", "d") and ds.num_classes == 4
    assert list(ds.noisy_labels) == ["given"]
    np.testing.assert_array_equal(ds.noisy_labels["given"], noisy)
    assert ds.noisy_labels["given"].dtype == np.int32


def _bad(arrays, **changes):
    out = dict(arrays)
    for key, value in changes.items():
        if value is None:
            del out[key]
        else:
            out[key] = value
    return out


GOOD = _npz_arrays()
BAD_NPZ = {
    "missing key": (_bad(GOOD, y_test=None), "missing y_test"),
    "labels out of range": (
        _bad(GOOD, class_names=np.array(["a", "b"])),
        r"y_train has labels outside \[0, 2\)",
    ),
    "negative labels": (_bad(GOOD, y_test=np.array([0, -1, 1, 2])), "y_test has labels outside"),
    "float labels": (_bad(GOOD, y_train=GOOD["y_train"].astype(float)), "expected \\[N\\] int"),
    "length mismatch": (_bad(GOOD, y_train=GOOD["y_train"][:5]), "y_train has 5 labels for 6"),
    "noisy length mismatch": (
        _bad(GOOD, y_train_noisy=np.zeros(3, int)),
        "y_train_noisy has 3 labels for 6",
    ),
    "float outside [0, 1]": (
        _bad(GOOD, x_train=GOOD["x_train"].astype(np.float32)),
        r"must lie in \[0, 1\]",
    ),
    "NaN pixels": (
        _bad(GOOD, x_test=np.full((4, 5, 5), np.nan, np.float32)),
        "x_test has NaN or infinite values",
    ),
    "wrong rank": (_bad(GOOD, x_train=np.zeros((6, 25), np.uint8)), r"has shape \(6, 25\)"),
    "int64 images": (_bad(GOOD, x_test=GOOD["x_test"].astype(np.int64)), "dtype int64"),
    "image size mismatch": (
        _bad(GOOD, x_test=np.zeros((4, 6, 6), np.uint8)),
        "x_train images are",
    ),
}


@pytest.mark.parametrize("case", list(BAD_NPZ))
def test_npz_bad_content_is_a_config_error(tmp_path, case):
    arrays, message = BAD_NPZ[case]
    with pytest.raises(ConfigError, match=message) as info:
        load_dataset(_save(tmp_path, **arrays))
    # Every message also says what a good file holds.
    assert "It must be an .npz file" in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "No such file"), (b"not a numpy file", "cannot read"), (b"PK\x03\x04junk", "cannot")],
)
def test_npz_unreadable_file_is_a_config_error(tmp_path, content, message):
    path = tmp_path / "broken.npz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_dataset(f"npz:{path}")


def test_npz_single_array_file_is_a_config_error(tmp_path):
    path = tmp_path / "one.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ConfigError, match="single array"):
        load_dataset(f"npz:{path}")


def test_npz_object_array_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, **_bad(GOOD, class_names=np.array([{"a": 1}] * 3, dtype=object)))
    with pytest.raises(ConfigError, match="cannot read"):
        load_dataset(f"npz:{path}")


# --- TFDS -------------------------------------------------------------------------

# The field names in tensorflow_datasets' cifar10_n / cifar100_n builders.
CIFAR10N = {
    **{f"random{i}": f"random_label{i}" for i in (1, 2, 3)},
    "aggre": "aggre_label",
    "worst": "worse_label",
}


def _assert_names(names, spots):
    assert len(names) == 10 and len(set(names)) == 10
    assert {i: names[i] for i in spots} == spots


def _label_offsets(info):
    """``{field: shift}``, distinct per ``ClassLabel`` field, so no two label fields agree."""
    import tensorflow_datasets as tfds

    features = info.features.items()
    keys = sorted(k for k, f in features if isinstance(f, tfds.features.ClassLabel))
    return {key: shift for shift, key in enumerate(keys)}


class _FakeSource:
    """A TFDS random-access source whose records encode their index and field.

    Record ``i`` of the train split has images filled with ``i`` (test:
    ``100 + i``) and ``ClassLabel`` field ``k`` equal to
    ``(i + _label_offsets(info)[k]) % num_classes``; like the real CIFAR-N data, the
    test split's noisy fields are -1. Feature keys come from the real builder.
    """

    def __init__(self, info, split, n):
        self.dataset_info, self._split, self._n = info, split, n

    def __len__(self):
        return self._n

    def __getitem__(self, i):
        import tensorflow_datasets as tfds

        record, offsets = {}, _label_offsets(self.dataset_info)
        for key, feature in self.dataset_info.features.items():
            if isinstance(feature, tfds.features.Image):
                fill = i if self._split == "train" else 100 + i
                record[key] = np.full(feature.shape, fill, np.uint8)
            elif isinstance(feature, tfds.features.ClassLabel):
                noisy_test = self._split == "test" and key not in ("label", "coarse_label")
                value = -1 if noisy_test else (i + offsets[key]) % feature.num_classes
                record[key] = value
            else:
                record[key] = np.zeros(feature.shape, feature.np_dtype)
        return record

    def __getitems__(self, keys):
        return [self[i] for i in keys]


SIZES = {"train": 11, "test": 5}


def _fake_as_data_source(builder, split=None, **unused):
    """Replaces ``builder.as_data_source`` under ``tfds.testing.mock_data``.

    mock_data's own data source (tfds 4.9.10) fails on batched reads:
    ``__getitems__`` is set on a MagicMock as a plain attribute, so it is
    called without ``self`` (TypeError). This keeps the rest of mock_data
    (no files, no network, the real builders' features).
    """
    return [_FakeSource(builder.info, s, SIZES[s]) for s in split]


@pytest.fixture
def mock_tfds(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(registry, "_TFDS_CHUNK", 4)  # several chunks, a ragged last one
    with tfds.testing.mock_data(as_data_source_fn=_fake_as_data_source):
        yield tfds


def _assert_cifar_shapes(ds, num_classes, offsets):
    assert ds.x_train.shape == (11, 32, 32, 3) and ds.x_test.shape == (5, 32, 32, 3)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32
    # Order is kept across chunk boundaries, and train/test are not mixed up.
    np.testing.assert_array_equal(ds.x_train[:, 0, 0, 0], np.arange(11))
    np.testing.assert_array_equal(ds.x_test[:, 3, 2, 1], 100 + np.arange(5))
    offset = offsets["label"]
    np.testing.assert_array_equal(ds.y_train, (np.arange(11) + offset) % num_classes)
    np.testing.assert_array_equal(ds.y_test, (np.arange(5) + offset) % num_classes)
    assert ds.num_classes == num_classes


def test_tfds_cifar10(mock_tfds):
    ds = load_dataset("cifar10", data_dir="/nonexistent/tfds")
    _assert_cifar_shapes(ds, 10, _label_offsets(mock_tfds.builder("cifar10").info))
    assert ds.name == "cifar10" and ds.noisy_labels == {}
    # Mocked TFDS only knows placeholder names '0'..'9'; the loader supplies the real ones.
    _assert_names(ds.class_names, CIFAR10_SPOTS)


def test_tfds_cifar10_n_noisy_fields(mock_tfds):
    ds = load_dataset("cifar10_n")
    offsets = _label_offsets(mock_tfds.builder("cifar10_n").info)
    _assert_cifar_shapes(ds, 10, offsets)
    assert len({offsets[f] % 10 for f in [*CIFAR10N.values(), "label"]}) == 6  # all told apart
    assert set(ds.noisy_labels) == set(CIFAR10N)
    for short, field in CIFAR10N.items():
        expected = (np.arange(11) + offsets[field]) % 10
        np.testing.assert_array_equal(ds.noisy_labels[short], expected, err_msg=short)
        assert ds.noisy_labels[short].dtype == np.int32


def test_tfds_cifar100_n_noisy_field_and_names(mock_tfds):
    ds = load_dataset("cifar100_n")
    offsets = _label_offsets(mock_tfds.builder("cifar100_n").info)
    _assert_cifar_shapes(ds, 100, offsets)
    assert list(ds.noisy_labels) == ["noisy"]
    expected = (np.arange(11) + offsets["noise_label"]) % 100
    np.testing.assert_array_equal(ds.noisy_labels["noisy"], expected)
    assert len(ds.class_names) == 100 and len(set(ds.class_names)) == 100
    assert ds.class_names[:3] == ("apple", "aquarium_fish", "baby")
    assert ds.class_names[-1] == "worm"


def test_tfds_label_names_are_preferred_when_known(mock_tfds, monkeypatch):
    def named_source(builder, split=None, **unused):
        builder.info.features["label"].names = [f"name{i}" for i in range(10)]
        return _fake_as_data_source(builder, split)

    with mock_tfds.testing.mock_data(as_data_source_fn=named_source):
        ds = load_dataset("cifar10")
    assert ds.class_names == tuple(f"name{i}" for i in range(10))


def test_tfds_fashion_mnist_fallback_and_mnist(mock_tfds, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "none"))
    for name in ("fashion_mnist", "mnist"):
        ds = load_dataset(name, data_dir=str(tmp_path))
        assert ds.x_train.shape == (11, 28, 28, 1) and ds.x_test.shape == (5, 28, 28, 1)
        if name == "mnist":
            assert ds.class_names == tuple(str(i) for i in range(10))
        else:
            _assert_names(ds.class_names, FASHION_SPOTS)


@pytest.mark.parametrize("name", ["cifar10", "cifar100_n", "fashion_mnist"])
def test_unprepared_tfds_is_one_clear_error_and_fast(tmp_path, monkeypatch, name):
    pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(registry, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "none"))
    empty = tmp_path / "empty"
    empty.mkdir()
    start = time.perf_counter()
    with pytest.raises(DataUnavailableError) as info:
        load_dataset(name, data_dir=str(empty))
    assert time.perf_counter() - start < 5.0  # no download attempt
    message = str(info.value)
    assert "not prepared" in message and str(empty) in message
    assert f"tfds.builder('{name}', file_format='array_record')" in message
    assert "TFDS_DATA_DIR" in message and "\n" not in message
    assert list(empty.iterdir()) == []  # nothing written either
    if name == "fashion_mnist":
        assert f"no fashion_mnist IDX files in {empty / 'fashion-mnist'}" in message
        assert "apt-get install dataset-fashion-mnist" in message


def test_damaged_tfds_metadata_is_a_clear_error(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    version_dir = tmp_path / "cifar10" / "3.0.2"
    version_dir.mkdir(parents=True)
    (version_dir / "dataset_info.json").write_text("{truncated")
    with pytest.raises(DataUnavailableError, match="unreadable"):
        load_dataset("cifar10", data_dir=str(tmp_path))


def test_real_array_record_source_is_read_in_batches(tmp_path, monkeypatch):
    """The unmocked path: a tiny builder prepared as array_record, read by tfds.data_source."""
    tfds = pytest.importorskip("tensorflow_datasets")

    class JaxddTinyNoisy(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            # Tensor, not Image: encoding PNGs needs TensorFlow, which tests lack.
            features = {
                "image": tfds.features.Tensor(shape=(4, 4, 3), dtype=np.uint8),
                "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
                "noise_label": tfds.features.ClassLabel(names=["a", "b", "c"]),
            }
            return tfds.core.DatasetInfo(
                builder=self, features=tfds.features.FeaturesDict(features)
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(9), "test": self._generate_examples(4)}

        def _generate_examples(self, n):
            for i in range(n):
                image = np.full((4, 4, 3), i, np.uint8)
                yield i, {"image": image, "label": i % 3, "noise_label": (i + 1) % 3}

    JaxddTinyNoisy(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    monkeypatch.setattr(registry, "_TFDS_CHUNK", 4)
    ds = registry._load_tfds(
        "jaxdd_tiny_noisy", str(tmp_path), class_names=(), noisy_fields={"noisy": "noise_label"}
    )
    assert ds.x_train.shape == (9, 4, 4, 3) and ds.class_names == ("a", "b", "c")
    # Preparation shuffles records; each record's fields must still agree.
    ids = ds.x_train[:, 0, 0, 0].astype(np.int32)
    assert sorted(ids.tolist()) == list(range(9))
    np.testing.assert_array_equal(ds.y_train, ids % 3)
    np.testing.assert_array_equal(ds.noisy_labels["noisy"], (ids + 1) % 3)
    assert sorted(ds.x_test[:, 0, 0, 0].tolist()) == list(range(4))
