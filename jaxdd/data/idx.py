"""Read and write IDX files, the format of the original MNIST / Fashion-MNIST releases.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <rank>``, then
``rank`` big-endian ``uint32`` dimension sizes, then the values in big-endian
row-major order. Files may be gzip-compressed (detected from the content, not
the file name).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

from jaxdd.errors import DataUnavailableError

# IDX dtype code -> big-endian numpy dtype.
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dtype.newbyteorder("="): code for code, dtype in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (raw or gzip-compressed) into a native-endian array.

    Args:
      path: the ``.gz`` or uncompressed IDX file.

    Returns:
      The array with the shape and dtype the header declares, e.g.
      ``[N, 28, 28] uint8`` for an images file, ``[N] uint8`` for labels.

    Raises:
      DataUnavailableError: the file cannot be read, is not IDX, or is
        truncated / has trailing bytes (the message names the file).
    """
    try:
        with open(path, "rb") as f:
            content = f.read()
        if content.startswith(_GZIP_MAGIC):
            content = gzip.decompress(content)
    except (OSError, EOFError, zlib.error) as err:
        raise _corrupt(path, f"cannot read it ({err})") from err
    dtype, shape, offset = _parse_header(path, content)
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(content) != expected:
        raise _corrupt(
            path, f"its header declares shape {shape} ({expected} bytes) but it has {len(content)}"
        )
    data = np.frombuffer(content, dtype=dtype, offset=offset).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``.

    Args:
      path: destination file.
      array: any-rank array of dtype uint8, int8, int16, int32, float32 or
        float64 (the dtypes IDX can hold).

    Raises:
      ValueError: the dtype has no IDX code.
    """
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot hold dtype {array.dtype}; use one of {sorted(_CODES)}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    content = header + array.astype(_DTYPES[code]).tobytes()
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(content)


def _parse_header(path: str | os.PathLike, content: bytes) -> tuple[np.dtype, tuple, int]:
    """Returns ``(dtype, shape, data offset)`` from the IDX header in ``content``."""
    if len(content) < 4 or content[:2] != b"\x00\x00" or content[2] not in _DTYPES:
        raise _corrupt(path, f"it does not start with an IDX magic number (got {content[:4]!r})")
    rank = content[3]
    offset = 4 + 4 * rank
    if len(content) < offset:
        raise _corrupt(path, "its header is truncated")
    shape = struct.unpack(f">{rank}I", content[4:offset])
    return _DTYPES[content[2]], shape, offset


def _corrupt(path: str | os.PathLike, what: str) -> DataUnavailableError:
    return DataUnavailableError(
        f"IDX file {os.fspath(path)!r} is unusable: {what}. Download or install it again."
    )
