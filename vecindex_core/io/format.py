"""The one index file format (version 1): self-describing, checksummed, no pickle.

Layout (all integers little-endian)::

    0   8 bytes   magic b"VECINDEX"
    8   uint32    format version
    12  uint32    header length H in bytes
    16  uint32    CRC-32 of the header bytes
    20  uint32    CRC-32 of the payload bytes (everything after the padded header)
    24  uint64    payload length P in bytes
    32  H bytes   header: UTF-8 JSON object (spec, dim, metric, counts, id counter, state,
                  and the table of arrays with dtype, shape, offset, nbytes)
    ... zero padding to a multiple of 64
    payload       raw little-endian arrays, each starting at a multiple of 64 from the
                  payload start; zero padding between them

Loading validates the prefix and the header before reading any array, reads each array
straight into its final buffer (peak memory is the payload plus a few KB), and checks the
payload CRC as it goes. Any truncation, bit flip, wrong magic, unknown dtype or newer
version raises :class:`~vecindex_core.errors.IndexFormatError` naming the file. Writes go to
a temporary file in the same directory, are fsync'd, then ``os.replace``d.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import IndexFormatError

__all__ = [
    "FORMAT_VERSION", "MAGIC", "atomic_write", "read_index", "read_index_bytes", "write_index",
]

MAGIC = b"VECINDEX"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIIIIQ")  # magic, version, header len, header crc, payload crc, P
_ALIGN = 64
_MAX_HEADER = 64 << 20
#: dtypes an index file may hold; anything else is rejected on write and on read.
_DTYPES = frozenset(
    np.dtype(t).str for t in ("<f2", "<f4", "<f8", "u1", "i1", "<u2", "<i4", "<u4", "<i8", "<u8")
) | {"|b1", "|u1", "|i1"}

PathLike = str | os.PathLike[str]
_Reader = io.RawIOBase | io.BufferedIOBase


def _bytes_view(arr: np.ndarray) -> memoryview:
    """Writable byte view of a C-contiguous array (empty arrays give an empty view)."""
    if arr.size == 0:
        return memoryview(bytearray())
    return memoryview(arr.reshape(-1).view(np.uint8))  # type: ignore[arg-type]


def _pad(n: int) -> int:
    return -n % _ALIGN


def _describe(arrays: Mapping[str, np.ndarray]) -> tuple[list[dict[str, Any]], int]:
    table, offset = [], 0
    for name, arr in arrays.items():
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        if dt.str not in _DTYPES:
            raise TypeError(f"array {name!r} has dtype {arr.dtype}, which the format cannot hold")
        table.append(
            {"name": name, "dtype": dt.str, "shape": list(arr.shape), "offset": offset,
             "nbytes": int(arr.nbytes)}
        )
        offset += int(arr.nbytes) + _pad(int(arr.nbytes))
    return table, offset


def _write(f: IO[bytes], header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    table, payload_len = _describe(arrays)
    blobs = [np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")) for a in arrays.values()]
    crc = 0
    for blob in blobs:
        crc = zlib.crc32(_bytes_view(blob), crc)
        crc = zlib.crc32(bytes(_pad(blob.nbytes)), crc)
    head = json.dumps({**header, "arrays": table}, sort_keys=True).encode()
    f.write(
        _PREFIX.pack(MAGIC, FORMAT_VERSION, len(head), zlib.crc32(head), crc, payload_len)
    )
    f.write(head)
    f.write(bytes(_pad(_PREFIX.size + len(head))))
    for blob in blobs:
        f.write(_bytes_view(blob))
        f.write(bytes(_pad(blob.nbytes)))


def write_index(
    path: PathLike | None, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> bytes | None:
    """Write an index file atomically, or return its bytes when ``path`` is None.

    Parameters
    ----------
    path : str or PathLike or None
        Destination. Parent directories must exist.
    header : mapping
        JSON-serialisable metadata; the key ``"arrays"`` is reserved.
    arrays : mapping of str to ndarray
        Arrays stored in order, little-endian.
    """
    if path is None:
        buf = io.BytesIO()
        _write(buf, header, arrays)
        return buf.getvalue()
    atomic_write(path, lambda f: _write(f, header, arrays))
    return None


def atomic_write(path: PathLike, write: Callable[[IO[bytes]], object]) -> None:
    """Replace the file ``path`` atomically with what ``write(f)`` writes.

    The bytes go to a temporary file in the same directory (mode ``0o666`` less the umask,
    like a plain ``open``), which is fsync'd, renamed over ``path``, and the directory
    fsync'd, so a crash leaves either the old file or the new one, never a mix.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_exact(f: _Reader, n: int, where: str, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise IndexFormatError(
            f"{where} is truncated: expected {n} bytes of {what}, got {len(data)}"
        )
    return data


def _read(f: _Reader, where: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    prefix = f.read(_PREFIX.size)
    if len(prefix) < 8 or prefix[:8] != MAGIC:
        raise IndexFormatError(
            f"{where} is not a vecindex file: magic {prefix[:8]!r}, expected {MAGIC!r}"
        )
    if len(prefix) != _PREFIX.size:
        raise IndexFormatError(f"{where} is truncated inside its {_PREFIX.size}-byte prefix")
    _, version, head_len, head_crc, payload_crc, payload_len = _PREFIX.unpack(prefix)
    if version > FORMAT_VERSION:
        raise IndexFormatError(
            f"{where} has format version {version}, but this vecindex reads versions up to "
            f"{FORMAT_VERSION}: upgrade vecindex (or the file is corrupt)"
        )
    if version < 1 or head_len > _MAX_HEADER:
        raise IndexFormatError(
            f"{where} is corrupt: format version {version}, header length {head_len}"
        )
    head = _read_exact(f, head_len, where, "header")
    if zlib.crc32(head) != head_crc:
        raise IndexFormatError(f"{where} is corrupt: header checksum mismatch")
    try:
        header = json.loads(head.decode())
        if not isinstance(header, dict):
            raise ValueError(f"the header is a JSON {type(header).__name__}, expected an object")
        table = header.pop("arrays")
    except (ValueError, KeyError, AttributeError) as e:
        raise IndexFormatError(f"{where} is corrupt: unreadable header ({e})") from e
    pad = _read_exact(f, _pad(_PREFIX.size + head_len), where, "header padding")
    if any(pad):
        raise IndexFormatError(f"{where} is corrupt: non-zero header padding")
    arrays: dict[str, np.ndarray] = {}
    crc, pos = 0, 0
    try:
        for entry in table:
            name, dtype, shape = entry["name"], entry["dtype"], tuple(entry["shape"])
            nbytes, offset = int(entry["nbytes"]), int(entry["offset"])
            if dtype not in _DTYPES or offset != pos or any(s < 0 for s in shape):
                raise IndexFormatError(f"{where} is corrupt: bad entry for array {name!r}")
            if nbytes < 0 or pos + nbytes > payload_len:
                raise IndexFormatError(f"{where} is corrupt: array {name!r} overruns the payload")
            arr = np.empty(shape, dtype=np.dtype(dtype))
            if arr.nbytes != nbytes:
                raise IndexFormatError(f"{where} is corrupt: size mismatch for array {name!r}")
            view = _bytes_view(arr)
            if arr.size and f.readinto(view) != nbytes:
                raise IndexFormatError(f"{where} is truncated inside array {name!r}")
            crc = zlib.crc32(view, crc)
            gap = _read_exact(f, _pad(nbytes), where, f"padding after {name!r}")
            crc = zlib.crc32(gap, crc)
            pos += nbytes + len(gap)
            arrays[name] = arr
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, IndexFormatError):
            raise
        raise IndexFormatError(f"{where} is corrupt: bad array table ({e})") from e
    if pos != payload_len:
        raise IndexFormatError(
            f"{where} is corrupt: payload is {pos} bytes, header says {payload_len}"
        )
    if crc != payload_crc:
        raise IndexFormatError(f"{where} is corrupt: payload checksum mismatch")
    if f.read(1):
        raise IndexFormatError(f"{where} is corrupt: unexpected bytes after the payload")
    return header, arrays


def read_index(path: PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify an index file; returns ``(header, arrays)``."""
    where = f"index file {os.fspath(path)!r}"
    try:
        with open(path, "rb", buffering=0) as f:
            return _read(f, where)
    except FileNotFoundError:
        raise
    except IsADirectoryError as e:
        raise IndexFormatError(f"{where} is a directory, expected an index file") from e


def read_index_bytes(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify an index held in memory (the pickle/copy path)."""
    return _read(io.BytesIO(data), "index bytes")
