"""Tests of jaxdd.data.idx: byte-exact format, round trips, corrupt files."""

import gzip

import numpy as np
import pytest

from jaxdd.data.idx import read_idx, write_idx
from jaxdd.errors import DataUnavailableError


def test_reads_a_hand_written_file(tmp_path):
    # 2x3 uint8, written byte by byte from the format description.
    content = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 255])
    path = tmp_path / "m.idx"
    path.write_bytes(content)
    out = read_idx(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[1, 2, 3], [4, 5, 255]])


def test_multibyte_values_are_big_endian(tmp_path):
    path = tmp_path / "i.idx"
    path.write_bytes(bytes([0, 0, 0x0C, 1, 0, 0, 0, 1, 0, 0, 1, 2]))
    out = read_idx(path)
    assert out.dtype == np.int32 and out.dtype.isnative
    assert out.tolist() == [258]


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip(tmp_path, suffix, dtype):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(4, 5, 3)) * 50).astype(dtype)
    path = tmp_path / f"a-idx3-ubyte{suffix}"
    write_idx(path, array)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out, array)


def test_gzip_is_detected_from_content_not_name(tmp_path):
    raw = tmp_path / "labels.idx"
    write_idx(raw, np.arange(7, dtype=np.uint8))
    disguised = tmp_path / "labels-no-gz-suffix"
    disguised.write_bytes(gzip.compress(raw.read_bytes()))
    np.testing.assert_array_equal(read_idx(disguised), np.arange(7))


def test_write_rejects_dtype_without_idx_code(tmp_path):
    with pytest.raises(ValueError, match="IDX cannot hold dtype int64"):
        write_idx(tmp_path / "x.idx", np.arange(3, dtype=np.int64))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:-1], "header declares shape"),  # truncated data
        (lambda b: b + b"\x00", "header declares shape"),  # trailing bytes
        (lambda b: b[:6], "header is truncated"),
        (lambda b: b"\x01\x00" + b[2:], "IDX magic number"),
        (lambda b: b[:2] + b"\x07" + b[3:], "IDX magic number"),  # unknown dtype code
        (lambda b: b"", "IDX magic number"),
    ],
)
def test_corrupt_raw_file_names_the_problem(tmp_path, mutate, message):
    good = tmp_path / "good.idx"
    write_idx(good, np.zeros((2, 3, 3), np.uint8))
    bad = tmp_path / "bad.idx"
    bad.write_bytes(mutate(good.read_bytes()))
    with pytest.raises(DataUnavailableError, match=message) as info:
        read_idx(bad)
    assert "bad.idx" in str(info.value)


def test_truncated_gzip_is_a_clear_error(tmp_path):
    path = tmp_path / "t.gz"
    write_idx(path, np.arange(1000, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataUnavailableError, match="cannot read it"):
        read_idx(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataUnavailableError, match="absent.idx"):
        read_idx(tmp_path / "absent.idx")
