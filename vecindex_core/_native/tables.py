"""Native per-query fast-scan tables (``tables.c``): the twins of the numba kernels
``_kernels.fastscan._quantize`` (:func:`quantize_luts`) and ``_kernels.fastscan._pq_nibble``
(:func:`pq_nibble`).

The arithmetic is described in :func:`vecindex_core._kernels.fastscan.quantize_luts` and
:func:`vecindex_core._kernels.fastscan.pq_tables`; the kernels compute it in the same order,
so their tables are identical to the references' bit for bit. These wrappers split the
queries over threads like the references (``fn`` over query ranges); the kernels check
every buffer themselves, release the GIL and are reentrant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from .lut import _resolve

__all__ = ["pq_nibble", "quantize_luts", "serial"]

#: ``run(fn, nq)`` calls ``fn(a, b)`` over query ranges (possibly on several threads).
Runner = Callable[[Callable[[int, int], None], int], None]


def serial(fn: Callable[[int, int], None], nq: int) -> None:
    """The runner of one thread (``fn(0, nq)``)."""
    fn(0, nq)


def _rows(buf: Any) -> int:
    """Leading dimension of a buffer the kernel has checked (any buffer, not only ndarrays)."""
    shape = memoryview(buf).shape
    return int(shape[0]) if shape else 0


def quantize_luts(tables: npt.NDArray[np.float32], luts: npt.NDArray[np.uint8],
                  bias: npt.NDArray[np.float32], delta: npt.NDArray[np.float32], *,
                  run: Runner = serial, isa: str | None = None) -> None:
    """Fill ``luts`` uint8 ``(nq, m // 2, 32)``, ``bias`` and ``delta`` float32 ``(nq,)``
    from float tables ``(nq, m, 16)``, in place (the native ``_quantize``)."""
    ext, isa_id = _resolve(isa)
    if run is serial and isinstance(tables, np.ndarray) and tables.ndim:
        ext.quantize_luts(tables, luts, bias, delta, 0, tables.shape[0], isa_id)  # one call
        return
    ext.quantize_luts(tables, luts, bias, delta, 0, 0, isa_id)  # checks, on this thread
    run(lambda a, b: ext.quantize_luts(tables, luts, bias, delta, a, b, isa_id),
        _rows(tables))


def pq_nibble(q: npt.NDArray[np.float32], books_t: npt.NDArray[np.float32], l2: bool,
              bits: int, out: npt.NDArray[np.float32], *, run: Runner = serial,
              isa: str | None = None) -> None:
    """Fill ``out`` float32 ``(nq, nsub, 16)`` with the nibble tables of ``q`` float32
    ``(nq, d)`` for codebooks transposed to ``(m, dsub, 2**bits)``, in place (the native
    ``_pq_nibble``)."""
    ext, isa_id = _resolve(isa)
    ext.pq_nibble(q, books_t, l2, bits, out, 0, 0, isa_id)  # checks, on this thread
    run(lambda a, b: ext.pq_nibble(q, books_t, l2, bits, out, a, b, isa_id),
        _rows(q))
