"""Exact search: :class:`FlatIndex`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from ._kernels.topk import DB_BLOCK, SMALL_BATCH, dense_topk, sq_norms
from .base import Moves, VectorIndex
from .errors import IndexFormatError
from .registry import register
from .types import FloatMatrix, SlotArray

__all__ = ["FlatIndex"]

#: With a mask allowing less than this fraction of rows, a batched search gathers the
#: allowed rows and scans only those (a copy of f*n rows instead of n*nq dot products).
GATHER_FRACTION = 0.25


@register("flat", exact=True)
class FlatIndex(VectorIndex):
    """Exact brute-force search for ``cosine``, ``ip`` and ``l2``.

    Batches of queries run a blocked BLAS matmul (tiles of at most 512 x 2048 scores, so
    memory stays bounded for any batch) fused with a heap top-k; batches smaller than
    ``SMALL_BATCH`` use a single-pass kernel that reads the data once. Ties are broken by
    the lower slot. Batched scores are numpy's ``q @ x.T`` (``l2``:
    ``-max(|q|^2 + |x|^2 - 2 q.x, 0)`` with ``|v|^2 = einsum('ij,ij->i', v, v)``) taken tile
    by tile: bit for bit the full product's with OpenBLAS's SkylakeX kernels, within about
    one float32 ulp with kernels that round by position in the tile (Haswell); the
    single-pass kernel sums in another order and may also differ in the last bit.

    Storage is the float32 vectors (``l2`` adds one float32 squared norm per row), in a
    buffer that grows geometrically so single adds are amortised O(1).
    """

    def __init__(self, dim: int, metric: Any = "cosine", **params: Any) -> None:
        super().__init__(dim, metric, **params)
        self._data = np.empty((0, self.dim), dtype=np.float32)
        self._norms = np.empty(0, dtype=np.float32)
        self._n = 0

    @property
    def ntotal(self) -> int:
        return self._n

    @property
    def keeps_vectors(self) -> bool:
        return True

    @property
    def vectors(self) -> FloatMatrix:
        """Read-only view of the stored vectors, float32 (ntotal, dim)."""
        view = self._data[: self._n]
        view.flags.writeable = False
        return view

    def memory_bytes(self) -> int:
        return int(self._data.nbytes + self._norms.nbytes)

    def _reserve(self, n: int) -> None:
        if n <= self._data.shape[0]:
            return
        cap = max(n, 2 * self._data.shape[0], 64)
        data = np.empty((cap, self.dim), dtype=np.float32)
        data[: self._n] = self._data[: self._n]
        self._data = data
        if self.metric == "l2":
            norms = np.empty(cap, dtype=np.float32)
            norms[: self._n] = self._norms[: self._n]
            self._norms = norms

    def _add(self, x: FloatMatrix) -> None:
        n0, n1 = self._n, self._n + x.shape[0]
        self._reserve(n1)
        self._data[n0:n1] = x
        if self.metric == "l2":
            self._norms[n0:n1] = sq_norms(x)
        self._n = n1

    def _search(
        self,
        q: FloatMatrix,
        k: int,
        params: Mapping[str, Any],
        mask: npt.NDArray[np.bool_] | None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        data, l2 = self._data[: self._n], self.metric == "l2"
        norms = self._norms[: self._n] if l2 else None
        if mask is not None and q.shape[0] >= SMALL_BATCH:
            allowed = np.flatnonzero(mask)
            if allowed.size < GATHER_FRACTION * self._n and self._n > DB_BLOCK:
                if allowed.size < DB_BLOCK:
                    # pad to one full-width tile with masked-out rows: a narrow matmul may
                    # round differently from the full product, and scores must not
                    spare = np.setdiff1d(np.arange(DB_BLOCK + allowed.size), allowed)
                    rows = np.union1d(allowed, spare[: DB_BLOCK - allowed.size])
                    return dense_topk(
                        q, data[rows], k, l2=l2,
                        data_sq_norms=None if norms is None else norms[rows],
                        mask=mask[rows], slot_map=rows,
                    )
                return dense_topk(
                    q, data[allowed], k, l2=l2,
                    data_sq_norms=None if norms is None else norms[allowed],
                    slot_map=allowed,
                )
        return dense_topk(q, data, k, l2=l2, data_sq_norms=norms, mask=mask)

    def _remove(self, slots: SlotArray, moves: Moves) -> None:
        self._data[moves.dst] = self._data[moves.src]
        if self.metric == "l2":
            self._norms[moves.dst] = self._norms[moves.src]
        self._n -= slots.size

    def _get_vectors(self, slots: SlotArray) -> FloatMatrix:
        return self._data[slots]

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"vectors": self._data[: self._n]}

    def _set_state(self, state: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        data = arrays.get("vectors")
        if data is None or data.dtype != np.float32 or data.ndim != 2 or data.shape[1] != self.dim:
            got = None if data is None else (data.dtype, data.shape)
            raise IndexFormatError(f"flat index needs float32 (n, {self.dim}) vectors, got {got}")
        self._data = data
        self._n = data.shape[0]
        if self.metric == "l2":
            self._norms = sq_norms(data)
