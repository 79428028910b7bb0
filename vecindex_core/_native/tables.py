"""Native per-query fast-scan tables (``tables.c``): the twins of the numba kernels
``_kernels.fastscan._quantize`` (:func:`quantize_luts`), ``_kernels.fastscan._pq_nibble``
(:func:`pq_nibble`) and ``_kernels.fastscan._tables`` followed by ``_quantize``
(:func:`tq_luts`).

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

__all__ = ["pq_nibble", "quantize_luts", "serial", "tq_luts"]

#: ``run(fn, nq)`` calls ``fn(a, b)`` over query ranges (possibly on several threads).
Runner = Callable[[Callable[[int, int], None], int], None]


def serial(fn: Callable[[int, int], None], nq: int) -> None:
    """The runner of one thread (``fn(0, nq)``)."""
    fn(0, nq)


def _rows(buf: Any) -> int:
    """Leading dimension of a buffer the kernel has checked (any buffer, not only ndarrays)."""
    shape = memoryview(buf).shape
    return int(shape[0]) if shape else 0


def _call(kernel: Callable[..., None], args: tuple[Any, ...], lead: Any, run: Runner,
          isa_id: int) -> None:
    """``kernel(*args, q0, q1, isa_id)`` over every query: one call on one thread (the
    kernel checks its buffers), else a checking call with no queries on this thread, then
    ``run`` over query ranges. ``lead``: the buffer whose rows are the queries."""
    if run is serial and isinstance(lead, np.ndarray) and lead.ndim:
        kernel(*args, 0, lead.shape[0], isa_id)
        return
    kernel(*args, 0, 0, isa_id)
    run(lambda a, b: kernel(*args, a, b, isa_id), _rows(lead))


def quantize_luts(tables: npt.NDArray[np.float32], luts: npt.NDArray[np.uint8],
                  bias: npt.NDArray[np.float32], delta: npt.NDArray[np.float32], *,
                  run: Runner = serial, isa: str | None = None) -> None:
    """Fill ``luts`` uint8 ``(nq, m // 2, 32)``, ``bias`` and ``delta`` float32 ``(nq,)``
    from float tables ``(nq, m, 16)``, in place (the native ``_quantize``)."""
    ext, isa_id = _resolve(isa)
    _call(ext.quantize_luts, (tables, luts, bias, delta), tables, run, isa_id)


def tq_luts(rq: npt.NDArray[np.float32], levels: npt.NDArray[np.float32], bits: int,
            tables: npt.NDArray[np.float32], luts: npt.NDArray[np.uint8],
            bias: npt.NDArray[np.float32], delta: npt.NDArray[np.float32], *,
            rotation: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], int, float]
            | None = None, additive: bool = False, run: Runner = serial,
            isa: str | None = None) -> None:
    """Fill ``tables`` float32 ``(nq, m, 16)`` with turboquant's nibble tables of rotated
    queries ``rq`` float32 ``(nq, d)`` (``levels`` float32 ``(2**bits,)``), and ``luts``,
    ``bias``, ``delta`` with their quantization, in place (the native ``_tables`` and
    ``_quantize`` in one call; with ``additive``, 2-bit codes only, ``_quantize_parts``).
    With ``rotation`` = ``(signs, perms, p, norm)`` of
    :func:`~vecindex_core._kernels.rotation.rotate`, ``rq`` are the queries themselves,
    rotated in the same call."""
    ext, isa_id = _resolve(isa)

    def kernel(*args: Any) -> None:
        ext.tq_luts(*args, *(rotation or ()))

    _call(kernel, (rq, levels, bits, int(additive), tables, luts, bias, delta), rq, run,
          isa_id)


def pq_nibble(q: npt.NDArray[np.float32], books_t: npt.NDArray[np.float32], l2: bool,
              bits: int, out: npt.NDArray[np.float32], *, run: Runner = serial,
              isa: str | None = None,
              quantized: tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32],
                               npt.NDArray[np.float32]] | None = None) -> None:
    """Fill ``out`` float32 ``(nq, nsub, 16)`` with the nibble tables of ``q`` float32
    ``(nq, d)`` for codebooks transposed to ``(m, dsub, 2**bits)``, in place (the native
    ``_pq_nibble``); with ``quantized`` = ``(luts, bias, delta)``, their quantization too (as
    :func:`quantize_luts`, in the same call)."""
    ext, isa_id = _resolve(isa)

    def kernel(*args: Any) -> None:
        ext.pq_nibble(*args, *(quantized or ()))

    _call(kernel, (q, books_t, l2, bits, out), q, run, isa_id)
