"""A streaming :class:`~vecindex_core.io.sources.Source` over ``.npy``/``.fvecs`` files and arrays.

:class:`NumpySource` reads a ``.npy`` file memory-mapped (``mmap_mode="r"``), an ``.fvecs``
file memory-mapped, or an array already in memory. Each batch copies only its own rows into
a float32 C-contiguous matrix, so reading a file larger than memory holds one batch at a
time (the page cache holds what the kernel decides). The position of a batch is the row
number after it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..datasets import vecs_rows
from ..errors import InvalidArgumentError, InvalidDtypeError
from ..types import IdArray
from ..validation import as_ids, check_int, is_torch_tensor
from .sources import Batch, JSONValue

__all__ = ["NumpySource"]


def _open_fvecs(path: Path) -> np.ndarray:
    """Memory-map an ``.fvecs`` file as a float32 (n, d) strided view (no copy)."""
    if path.stat().st_size == 0:
        raise InvalidArgumentError(f"{str(path)!r} is empty: no vectors to read")
    return vecs_rows(path, mmap=True)[:, 1:].view("<f4")


class NumpySource:
    """Rows of a ``.npy``/``.fvecs`` file or an in-memory array, in row order.

    Parameters
    ----------
    data : str, path-like, ndarray or torch.Tensor
        A ``.npy`` file (opened with ``mmap_mode="r"``; any real float or integer dtype), an
        ``.fvecs`` file (memory-mapped), or a 2-D array of shape (n, dim).
    ids : array_like of int, shape (n,), optional
        uint64 ids of the rows (unique; ``2**64-1`` is reserved). Without them ingestion
        uses the row numbers.

    Raises
    ------
    InvalidArgumentError
        Unknown file type, not 2-D, no rows or zero dimensions, ``ids`` of the wrong
        length or with repeats.
    InvalidDtypeError
        The array is not of a real float or integer dtype.
    IndexFormatError
        An ``.fvecs`` file is truncated or its rows differ in dimension.
    FileNotFoundError
        The file does not exist.

    Notes
    -----
    The identity recorded in an ingestion checkpoint is the absolute path, shape, dtype and
    file size for a file, and the shape, dtype and a digest of the first and last rows for
    an array.
    """

    def __init__(self, data: str | os.PathLike[str] | object, ids: object = None) -> None:
        self._path: Path | None = None
        if isinstance(data, (str, os.PathLike)):
            path = Path(data)
            suffix = path.suffix.lower()
            if suffix == ".npy":
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            elif suffix == ".fvecs":
                arr = _open_fvecs(path)
            else:
                raise InvalidArgumentError(
                    f"unknown vector file type {str(path)!r}: expected a .npy or .fvecs file"
                )
            self._path = path.resolve()
        elif is_torch_tensor(data):
            arr = data.detach().cpu().numpy()  # type: ignore[attr-defined]
        else:
            arr = np.asarray(data)
        if arr.dtype.kind not in "fiu":
            raise InvalidDtypeError(
                f"vectors have dtype {arr.dtype}, expected a real float or integer dtype"
            )
        if arr.ndim != 2:
            raise InvalidArgumentError(
                f"vectors have shape {arr.shape}, expected a 2-D (n, dim) array"
            )
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise InvalidArgumentError(f"vectors have shape {arr.shape}: nothing to ingest")
        self._arr: np.ndarray = arr
        self._ids: IdArray | None = None
        if ids is not None:
            id_arr = as_ids(ids, arr.shape[0], name="ids")
            if np.unique(id_arr).size != id_arr.size:
                uniq, counts = np.unique(id_arr, return_counts=True)
                raise InvalidArgumentError(
                    f"ids repeat: {uniq[counts > 1][:10].tolist()}; every row needs its own id"
                )
            self._ids = id_arr

    @property
    def dim(self) -> int:
        """Vector length."""
        return int(self._arr.shape[1])

    def count(self) -> int:
        """Number of rows."""
        return int(self._arr.shape[0])

    def identity(self) -> Mapping[str, JSONValue]:
        """What is read: path, shape, dtype and size (file), or a digest (array)."""
        ident: dict[str, Any] = {
            "kind": "numpy",
            "shape": [int(s) for s in self._arr.shape],
            "dtype": str(self._arr.dtype),
            "ids": self._ids is not None,
        }
        if self._path is not None:
            ident["path"] = str(self._path)
            ident["size"] = self._path.stat().st_size
        else:
            h = hashlib.sha256()
            h.update(np.ascontiguousarray(self._arr[:1]).tobytes())
            h.update(np.ascontiguousarray(self._arr[-1:]).tobytes())
            if self._ids is not None:
                h.update(self._ids[:1].tobytes() + self._ids[-1:].tobytes())
            ident["digest"] = h.hexdigest()[:32]
        return ident

    def batches(self, batch_size: int, resume: JSONValue = None) -> Iterator[Batch]:
        """Yield float32 batches of at most ``batch_size`` rows after row ``resume``.

        Parameters
        ----------
        batch_size : int
            Rows per batch, >= 1.
        resume : int, optional
            A ``Batch.position`` (the number of rows already read); None starts at row 0.

        Raises
        ------
        InvalidArgumentError
            ``resume`` is not a row number in ``[0, count()]``.
        """
        bs = check_int(batch_size, "batch_size", 1)
        n = self.count()
        start = 0 if resume is None else check_int(resume, "resume position", 0, n)
        for s in range(start, n, bs):
            e = min(s + bs, n)
            with np.errstate(over="ignore"):  # overflow to inf is reported by ingestion
                vectors: npt.NDArray[np.float32] = np.array(
                    self._arr[s:e], dtype=np.float32, order="C", copy=True
                )
            ids = None if self._ids is None else self._ids[s:e].copy()
            yield Batch(start=s, vectors=vectors, ids=ids, position=e)
