"""Fast scan of 1/2/4-bit codes: blocked layout, uint8 lookup tables, the numba reference.

Sub-codes
---------
Packed rows (:func:`~.codes.pack_codes`, ``nb`` bytes) are read as ``2 * nb`` 4-bit
*sub-codes*: nibble ``t`` is the low (even ``t``) or high (odd ``t``) half of byte
``t // 2``. A sub-code holds one 4-bit code, two 2-bit codes (coordinates ``2t, 2t+1``) or
four 1-bit codes (``4t .. 4t+3``), so every width is scanned with 16-entry tables, one per
sub-code (:func:`nibble_tables`; coordinates past ``d`` contribute 0).

Blocked layout
--------------
Rows go in blocks of :data:`BLOCK` = 32 (:func:`pack_blocked`), each ``nb * 32`` bytes: for
byte column ``p``, byte ``i < 16`` is ``(lo(row 32b+i)) | lo(row 32b+16+i) << 4`` and byte
``16 + i`` the same with the high nibbles (``lo``/``hi``: the nibbles of the row's byte
``p``). A block of codes is the same size as its rows; the last block is zero-padded.
One 32-byte load then feeds two byte-shuffle lookups (rows 0-15 and 16-31) over tables
``2p`` and ``2p + 1``.

Tables and arithmetic
---------------------
:func:`quantize_luts` maps each query's float tables ``T[t, c]`` to uint8:
``delta = max_t (max_c T[t] - min_c T[t]) / LUT_MAX``, ``Q[t, c] = floor((T[t, c] -
min_c T[t]) * (1 / delta) + 1/2)`` (clipped to ``0..LUT_MAX``) and ``bias = sum_t min_c T[t]``, with
:data:`LUT_MAX` = 127 so that the SIMD paths can add two entries in a byte. A row's integer
sum ``S = sum_t Q[t, code_t]`` is exact (the SIMD paths add pairs of columns in bytes, 256
pairs in 16-bit lanes, then widen to 32 bits), and the scan score is, in float32 and in this
order::

    s = scale[i] * (bias + delta * float(S))
    l2:  t = (qn + xn[i]) - 2 * s;  s = -(t if t > 0 else 0)

The top-k is by ``(s desc, slot asc)``. :func:`fastscan_topk_ref` (numba) and the native
paths (:func:`vecindex_core._native.lut.lut_topk`) compute exactly this, so they agree bit
for bit; :func:`fastscan_topk` picks the native path when one is active.

2-bit turboquant tables may instead be quantized coordinate by coordinate
(:func:`quantize_parts`, ``additive=True``): entries of at most :data:`PART_MAX` per
coordinate, a pair table the exact sum of its two coordinates' entries, so that the VBMI
kernel can regroup the coordinates by three and get the same integer sums ``S``.

Because the tables are rounded, the scan score is an approximation of the float estimate
``scale * sum_j tables[j, code_j]``: callers take a shortlist of ``k' > k`` rows and rescore
it with :func:`rescore_shortlist` (float, per coordinate) before the final top-k.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numba
import numpy as np
import numpy.typing as npt

from .. import _native
from .._native import tables as _native_tables
from .._native.lut import (
    BLOCK,
    LUT_MAX,
    MAX_COLUMNS,
    MIN_WORK_PER_THREAD,
    PART_MAX,
    check_ivf_args,
    check_scan_args,
    ivf_work,
    run_split,
)
from .._native.lut import lut_ivf_topk as _native_lut_ivf_topk
from .._native.lut import lut_search as _native_lut_search
from .._native.lut import lut_topk as _native_lut_topk
from .._threads import run_chunks, thread_count
from .rotation import _transform as _rotation_transform
from .rotation import rotate
from .topk import _select

__all__ = [
    "BLOCK",
    "BooksT",
    "FAST_SCAN_BITS",
    "LUT_MAX",
    "PART_MAX",
    "fastscan_ivf_ref",
    "fastscan_ivf_topk",
    "fastscan_search",
    "fast_scan_fits",
    "fastscan_topk",
    "fastscan_topk_ref",
    "gather_blocked",
    "gather_rows",
    "nibble_luts",
    "nibble_tables",
    "pq_luts",
    "pq_tables",
    "pack_blocked",
    "quantize_luts",
    "quantize_parts",
    "rescore_shortlist",
    "rotated_luts",
    "scatter_rows",
    "unpack_blocked",
]


FloatArray = npt.NDArray[np.float32]
U8Array = npt.NDArray[np.uint8]


#: Code widths (bits a coordinate or a sub-quantizer code) the fast scan serves; 3- and 8-bit
#: codes stay row-major on the float LUT/BLAS routes.
FAST_SCAN_BITS = (1, 2, 4)


def fast_scan_fits(bits: int, nbytes: int) -> bool:
    """Whether codes of ``bits`` a code and ``nbytes`` a row go on the fast scan: a width in
    :data:`FAST_SCAN_BITS` and at most :data:`~vecindex_core._native.lut.MAX_COLUMNS` bytes
    (wider rows, e.g. 4-bit codes past 65,536 dimensions, keep the float routes)."""
    return bits in FAST_SCAN_BITS and 0 < nbytes <= MAX_COLUMNS
#: Below this much work (about table entries or lookups) the per-query helpers run on the
#: calling thread; above it queries are split over ``get_num_threads()`` threads.
_MIN_SPLIT_WORK = 1 << 18


def _by_queries(fn: Callable[[int, int], None], nq: int, work: int) -> None:
    """``fn(a, b)`` over query ranges, on up to ``get_num_threads()`` threads by ``work``."""
    run_chunks(fn, nq, thread_count(nq, work, _MIN_SPLIT_WORK))


def _native_runner(nq: int, work: int) -> Callable[[Callable[[int, int], None], int], None]:
    """The query split of a native per-query kernel (about 8x the numba speed: 8x the work
    a thread)."""
    if nq < 2:
        return _native_tables.serial
    threads = thread_count(nq, work, 8 * _MIN_SPLIT_WORK)
    if threads == 1:
        return _native_tables.serial
    return lambda fn, n: run_chunks(fn, n, threads)


def nblocks(n: int) -> int:
    """Blocks holding ``n`` rows."""
    return -(-n // BLOCK)


# --------------------------------------------------------------------------- layout
@numba.njit(nogil=True, cache=True)
def _scatter(blocked: np.ndarray, slots: np.ndarray, rows: np.ndarray) -> None:
    m, nb = rows.shape
    for t in range(m):
        s = slots[t]
        blk = blocked[s >> 5]
        i = s & 31
        if i < 16:
            shift = 0
            keep = 0xF0
        else:
            shift = 4
            keep = 0x0F
            i -= 16
        for p in range(nb):
            v = np.int64(rows[t, p])
            o = 32 * p + i
            blk[o] = (np.int64(blk[o]) & keep) | ((v & 15) << shift)
            blk[o + 16] = (np.int64(blk[o + 16]) & keep) | ((v >> 4) << shift)


@numba.njit(nogil=True, cache=True)
def _gather(blocked: np.ndarray, slots: np.ndarray, out: np.ndarray) -> None:
    m, nb = out.shape
    for t in range(m):
        s = slots[t]
        blk = blocked[s >> 5]
        i = s & 31
        shift = 0
        if i >= 16:
            shift = 4
            i -= 16
        for p in range(nb):
            o = 32 * p + i
            lo = (np.int64(blk[o]) >> shift) & 15
            hi = (np.int64(blk[o + 16]) >> shift) & 15
            out[t, p] = lo | (hi << 4)


def _as_slots(slots: object, n_rows: int) -> npt.NDArray[np.int64]:
    s = np.ascontiguousarray(slots, dtype=np.int64).reshape(-1)
    if s.size and (s.min() < 0 or s.max() >= n_rows):
        raise IndexError(f"slots must lie in [0, {n_rows}), got {s.min()}..{s.max()}")
    return s


def pack_blocked(codes: U8Array, capacity: int | None = None) -> U8Array:
    """Packed rows uint8 ``(n, nb)`` in the blocked layout, uint8 ``(blocks, nb * 32)``.

    ``capacity`` (rows, default ``n``) sizes the result: ``ceil(capacity / 32)`` blocks,
    zero past row ``n``.
    """
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-D (n, nb), got shape {codes.shape}")
    n, nb = codes.shape
    cap = n if capacity is None else max(int(capacity), n)
    out = np.zeros((nblocks(cap), nb * BLOCK), dtype=np.uint8)
    if n and nb:
        _scatter(out, np.arange(n, dtype=np.int64), codes)
    return out


def gather_rows(blocked: U8Array, slots: object, nb: int) -> U8Array:
    """Rows ``slots`` of a blocked array as packed rows, uint8 ``(len(slots), nb)``."""
    s = _as_slots(slots, blocked.shape[0] * BLOCK)
    out = np.empty((s.size, nb), dtype=np.uint8)
    if s.size and nb:
        _gather(blocked, s, out)
    return out


def unpack_blocked(blocked: U8Array, n: int, nb: int) -> U8Array:
    """The first ``n`` rows of a blocked array as packed rows (inverse of
    :func:`pack_blocked`)."""
    return gather_rows(blocked, np.arange(n, dtype=np.int64), nb)


def scatter_rows(blocked: U8Array, slots: object, rows: U8Array) -> None:
    """Write packed rows uint8 ``(m, nb)`` at ``slots`` of a blocked array, in place."""
    rows = np.ascontiguousarray(rows, dtype=np.uint8)
    s = _as_slots(slots, blocked.shape[0] * BLOCK)
    if rows.ndim != 2 or rows.shape[0] != s.size or rows.shape[1] * BLOCK != blocked.shape[1]:
        raise ValueError(f"rows must be ({s.size}, {blocked.shape[1] // BLOCK}), "
                         f"got shape {rows.shape}")
    if s.size and rows.shape[1]:
        _scatter(blocked, s, rows)


def gather_blocked(blocked: U8Array, slots: object, nb: int) -> U8Array:
    """Rows ``slots`` of a blocked array as a new blocked array (row ``t`` = slot ``t``)."""
    return pack_blocked(gather_rows(blocked, slots, nb))


# --------------------------------------------------------------------------- tables
@numba.njit(nogil=True, cache=True, inline="always")
def _combine(prod: np.ndarray, per: int, o: np.ndarray) -> None:
    # o[t, c] from the per-coordinate (or per sub-quantizer) tables prod (m * per, width)
    lmask = prod.shape[1] - 1
    for t in range(o.shape[0]):
        if per == 1:
            for c in range(16):
                o[t, c] = prod[t, c]
        elif per == 2:
            p0 = prod[2 * t]
            p1 = prod[2 * t + 1]
            for c in range(16):
                o[t, c] = p0[c & 3] + p1[c >> 2]
        else:
            p0 = prod[4 * t]
            p1 = prod[4 * t + 1]
            p2 = prod[4 * t + 2]
            p3 = prod[4 * t + 3]
            for c in range(16):
                o[t, c] = ((p0[c & lmask] + p1[(c >> 1) & lmask]) + p2[(c >> 2) & lmask]) \
                    + p3[c >> 3]


@numba.njit(nogil=True, cache=True)
def _tables(rq: np.ndarray, levels: np.ndarray, bits: int, out: np.ndarray) -> None:
    nq, d = rq.shape
    per = 4 // bits
    width = 1 << bits
    # per-coordinate products, coordinates past d zero: prod[j, c] = rq[j] * levels[c]
    prod = np.zeros((out.shape[1] * per, width), dtype=np.float32)
    for q in range(nq):
        for j in range(d):
            r = rq[q, j]
            for c in range(width):
                prod[j, c] = r * levels[c]
        _combine(prod, per, out[q])


@numba.njit(nogil=True, cache=True, inline="always")
def _sub_rows(qrow: np.ndarray, books_t: np.ndarray, l2: bool, dst: np.ndarray) -> None:
    # dst[j, c] = sum_e qrow[j dsub + e] books_t[j, e, c] (l2: -sum_e (qrow - books_t)^2),
    # summed in float32 in increasing e; coordinates past len(qrow) are 0
    m, dsub, ksub = books_t.shape
    d = qrow.shape[0]
    zero = np.float32(0.0)
    for j in range(m):
        acc = dst[j]
        for c in range(ksub):
            acc[c] = zero
        for e in range(dsub):
            col = j * dsub + e
            v = qrow[col] if col < d else zero
            b = books_t[j, e]
            if l2:
                for c in range(ksub):
                    t = v - b[c]
                    acc[c] += t * t
            else:
                for c in range(ksub):
                    acc[c] += v * b[c]
        if l2:
            for c in range(ksub):
                acc[c] = -acc[c]


@numba.njit(nogil=True, cache=True)
def _pq_sub_tables(q: np.ndarray, books_t: np.ndarray, l2: bool, out: np.ndarray) -> None:
    for i in range(q.shape[0]):
        _sub_rows(q[i], books_t, l2, out[i])


@numba.njit(nogil=True, cache=True)
def _pq_nibble(q: np.ndarray, books_t: np.ndarray, l2: bool, bits: int, out: np.ndarray) -> None:
    m = books_t.shape[0]
    per = 4 // bits
    # rows past m (the last nibbles' missing sub-quantizers) stay 0
    prod = np.zeros((out.shape[1] * per, books_t.shape[2]), dtype=np.float32)
    for i in range(q.shape[0]):
        _sub_rows(q[i], books_t, l2, prod[:m])
        _combine(prod, per, out[i])


@numba.njit(nogil=True, cache=True, inline="always")
def _step(span: np.float32, top: np.float32) -> tuple[np.float32, np.float32, np.float32]:
    # (mult, inv, delta) of a query's tables from their largest span, entries up to top. A
    # span below 2**-100 (delta subnormal, 1 / delta overflowing to inf: every entry but the
    # minimum would round to top) is quantized as if scaled by 2**100, an exact power of
    # two: the entries are those of the scaled tables
    zero = np.float32(0.0)
    one = np.float32(1.0)
    mult = np.float32(2.0**100) if zero < span < np.float32(2.0**-100) else one
    dl = (span * mult) / top
    if not dl > zero:
        dl = one
    return mult, one / dl, dl / mult


@numba.njit(nogil=True, cache=True, inline="always")
def _quant1(v: np.float32, lo: np.float32, mult: np.float32, inv: np.float32,
            top: np.float32) -> np.uint8:
    # round half up; x >= -0.5 up to float rounding, clipped to [0, top]
    x: np.float32 = min(max(((v - lo) * mult) * inv + np.float32(0.5), np.float32(0.0)), top)
    return np.uint8(np.int32(x))  # truncation of x >= 0: floor


@numba.njit(nogil=True, cache=True)
def _quantize(tables: np.ndarray, lut_max: int, luts: np.ndarray, bias: np.ndarray,
              delta: np.ndarray) -> None:
    # luts[q] flattened is in the order of tables[q] flattened: table t at 16 t
    nq, m, _ = tables.shape
    mins = np.empty(m, dtype=np.float32)
    top = np.float32(lut_max)
    for q in range(nq):
        tq = tables[q].ravel()
        lq = luts[q].ravel()
        span = np.float32(0.0)
        total = 0.0
        for t in range(m):
            lo = tq[16 * t]
            hi = tq[16 * t]
            for c in range(1, 16):
                v = tq[16 * t + c]
                lo = min(lo, v)
                hi = max(hi, v)
            mins[t] = lo
            total += np.float64(lo)
            span = max(span, hi - lo)
        mult, inv, delta[q] = _step(span, top)
        bias[q] = np.float32(total)
        for t in range(m):
            for c in range(16):
                lq[16 * t + c] = _quant1(tq[16 * t + c], mins[t], mult, inv, top)


@numba.njit(nogil=True, cache=True)
def _quantize_parts(rq: np.ndarray, levels: np.ndarray, nb: int, part_max: int,
                    luts: np.ndarray, bias: np.ndarray, delta: np.ndarray) -> None:
    # 2-bit codes, per coordinate: P[j, c] = rq[j] * levels[c] (+0 past d), lo_j its
    # minimum, E[j, c] = q(P[j, c] - lo_j) <= part_max; the pair table of sub-code t is
    # E[2t, c & 3] + E[2t + 1, c >> 2]
    nq, d = rq.shape
    ncoord = 4 * nb
    lo = np.empty(ncoord, dtype=np.float32)
    top = np.float32(part_max)
    zero = np.float32(0.0)
    e = np.empty((ncoord, 4), dtype=np.uint8)
    for q in range(nq):
        span = np.float32(0.0)
        part = np.zeros(4, dtype=np.float64)  # the minima summed by j mod 4
        for j in range(ncoord):
            r = rq[q, j] if j < d else zero
            low = r * levels[0]
            high = low
            for c in range(1, 4):
                v = r * levels[c]
                low = min(low, v)
                high = max(high, v)
            lo[j] = low
            part[j & 3] += np.float64(low)
            span = max(span, high - low)
        mult, inv, delta[q] = _step(span, top)
        bias[q] = np.float32((part[0] + part[1]) + (part[2] + part[3]))
        for j in range(ncoord):
            r = rq[q, j] if j < d else zero
            for c in range(4):
                e[j, c] = _quant1(r * levels[c], lo[j], mult, inv, top)
        lq = luts[q].ravel()
        for t in range(2 * nb):
            for c in range(16):
                lq[16 * t + c] = e[2 * t, c & 3] + e[2 * t + 1, c >> 2]


def quantize_parts(rq: FloatArray, levels: FloatArray, nb: int
                   ) -> tuple[U8Array, FloatArray, FloatArray]:
    """uint8 tables for the fast scan of 2-bit codes quantized coordinate by coordinate:
    each pair table is the exact sum of its two coordinates' tables (*additive* tables).

    Per coordinate ``j`` (``4 nb`` of them, +0 past ``d``) the products ``P[j, c] = rq[j] *
    levels[c]`` (float32) and their minimum ``lo_j``; ``delta = max_j (max_c P[j] - lo_j) /``
    :data:`PART_MAX` (the span rules of :func:`quantize_luts`), ``E[j, c] = floor((P[j, c] -
    lo_j) * (1 / delta) + 1/2)`` clipped to ``0..PART_MAX``, ``luts[t, c] = E[2t, c & 3] +
    E[2t + 1, c >> 2]`` and ``bias = sum_j lo_j`` (four float64 partial sums by ``j mod 4``,
    ``(s0 + s1) + (s2 + s3)``). Three coordinates' entries add up to at most
    :data:`LUT_MAX`, so the kernels may regroup the codes' coordinates by three
    (``src/lut.c``) and get the same integer sums.
    """
    rq, lv = _table_args(rq, levels, 2, nb)
    nq = rq.shape[0]
    luts = simd_empty((nq, nb, 32), np.uint8)
    bias = np.zeros(nq, dtype=np.float32)
    delta = np.ones(nq, dtype=np.float32)
    if nq and nb:
        _by_queries(lambda a, b: _quantize_parts(rq[a:b], lv, nb, PART_MAX, luts[a:b],
                                                 bias[a:b], delta[a:b]), nq, nq * nb * 32)
    return luts, bias, delta


def nibble_tables(rq: FloatArray, levels: FloatArray, bits: int, nb: int) -> FloatArray:
    """Per sub-code float tables, float32 ``(nq, 2 * nb, 16)``.

    ``T[q, t, c] = sum over the coordinates j in sub-code t of rq[q, j] * levels[code_j(c)]``
    (one coordinate for 4-bit codes, two for 2-bit, four for 1-bit), coordinates past ``d``
    contributing 0, summed in float32 in increasing ``j``.

    For 1-bit codes the products ``rq[j] * levels[c]`` are taken once per coordinate.
    """
    rq, lv = _table_args(rq, levels, bits, nb)
    nq = rq.shape[0]
    out = np.empty((nq, 2 * nb, 16), dtype=np.float32)
    if nq and nb:
        _by_queries(lambda a, b: _tables(rq[a:b], lv, bits, out[a:b]), nq, nq * nb * 32)
    return out


def nibble_luts(rq: FloatArray, levels: FloatArray, bits: int, nb: int, *,
                additive: bool = False) -> tuple[FloatArray, U8Array, FloatArray, FloatArray]:
    """:func:`nibble_tables` and their :func:`quantize_luts` (with ``additive`` and 2-bit
    codes, :func:`quantize_parts`): ``(tables, luts, bias, delta)``, the same values, in one
    native call when the kernels are built (a single query's two steps cost ~11 us through
    Python, ~4 us as one call)."""
    if _native.active_isa() is None:
        tables = nibble_tables(rq, levels, bits, nb)
        if additive and bits == 2:
            return (tables, *quantize_parts(rq, levels, nb))
        return (tables, *quantize_luts(tables))
    return _native_luts(rq, None, levels, bits, nb, additive)


def rotated_luts(q: FloatArray, seed: int, levels: FloatArray, bits: int, nb: int, *,
                 additive: bool = False) -> tuple[FloatArray, U8Array, FloatArray, FloatArray]:
    """:func:`nibble_luts` of ``rotate(q, seed)`` (:func:`~.rotation.rotate`): the same
    values, the rotation in the same native call when the kernels are built (a single
    query's two calls cost ~3 us more)."""
    if _native.active_isa() is None:
        return nibble_luts(rotate(q, seed), levels, bits, nb, additive=additive)
    return _native_luts(q, int(seed), levels, bits, nb, additive)


def _native_luts(x: FloatArray, seed: int | None, levels: FloatArray, bits: int, nb: int,
                 additive: bool) -> tuple[FloatArray, U8Array, FloatArray, FloatArray]:
    """The native ``tq_luts`` of :func:`nibble_luts` (``seed`` None) and
    :func:`rotated_luts` (``x`` rotated by ``seed`` first)."""
    x, lv = _table_args(x, levels, bits, nb)
    nq = x.shape[0]
    tables, luts, bias, delta = out = _new_luts(nq, 2 * nb)
    if not nb:
        return out
    rotation = None
    work = nb * 64  # a query's table entries, weighed for the quantization
    if seed is not None:
        signs, perms, p, norm = _rotation_transform(x.shape[1], seed)
        rotation = (signs, perms, p, float(norm))
        # the rotation costs about 16 table entries a coordinate (384-d, 2 bits: 1.4 of
        # 2.9 us a query); without it, 500 queries' tables ran on one thread of two
        work += 16 * x.shape[1]
    _native_tables.tq_luts(x, lv, bits, tables, luts, bias, delta, rotation=rotation,
                           additive=additive and bits == 2, run=_native_runner(nq, nq * work))
    return out


SIMD_ALIGN = 64
"""Byte alignment of the arrays the kernels read 64 bytes at a time for many queries (the
uint8 tables, the rank step's int8 weights). From numpy's 16-byte alignment every such load
splits two cache lines (Zen 4, dev 2-bit, 500 queries, one thread: 50 against 45 us a query,
and which of the two a process got depended on where the allocator put the tables)."""

SIMD_ALIGN_MIN_BYTES = 8192
"""Smaller arrays keep numpy's alignment: finding an array's address costs ~1 us, more than
the split loads cost one or two queries (a single query's scan is bound by its shuffles)."""


def simd_empty(shape: tuple[int, ...], dtype: npt.DTypeLike) -> np.ndarray:
    """An uninitialized C-contiguous array, starting on a :data:`SIMD_ALIGN` boundary from
    :data:`SIMD_ALIGN_MIN_BYTES` on."""
    dt = np.dtype(dtype)
    size = math.prod(shape) * dt.itemsize
    if size < SIMD_ALIGN_MIN_BYTES:
        return np.empty(shape, dtype=dt)
    buf = np.empty(size + SIMD_ALIGN, dtype=np.uint8)
    return np.ndarray(shape, dt, buf, -buf.ctypes.data % SIMD_ALIGN)


def _new_luts(nq: int, m: int) -> tuple[FloatArray, U8Array, FloatArray, FloatArray]:
    """``(tables, luts, bias, delta)`` of ``nq`` queries' ``m`` nibble tables for a kernel to
    fill (every query's bias and delta too); for no tables (``m`` 0, which no kernel fills)
    bias and delta are :func:`quantize_luts`' constants."""
    if not m:
        return (np.empty((nq, 0, 16), dtype=np.float32), np.empty((nq, 0, 32), dtype=np.uint8),
                np.zeros(nq, dtype=np.float32), np.ones(nq, dtype=np.float32))
    return (np.empty((nq, m, 16), dtype=np.float32), simd_empty((nq, m // 2, 32), np.uint8),
            np.empty(nq, dtype=np.float32), np.empty(nq, dtype=np.float32))


def _table_args(rq: FloatArray, levels: FloatArray, bits: int, nb: int
                ) -> tuple[FloatArray, FloatArray]:
    """``rq`` and ``levels`` as contiguous float32 after :func:`nibble_tables`' checks."""
    if bits not in (1, 2, 4):
        raise ValueError(f"bits must be 1, 2 or 4, got {bits!r}")
    rq = np.ascontiguousarray(rq, dtype=np.float32)
    if rq.shape[1] > 2 * nb * (4 // bits):
        raise ValueError(f"{rq.shape[1]} coordinates do not fit {nb} bytes of {bits}-bit codes")
    lv = np.ascontiguousarray(levels, dtype=np.float32)
    if lv.shape != (1 << bits,):
        raise ValueError(f"levels must have {1 << bits} entries, got shape {lv.shape}")
    return rq, lv


def pq_tables(q: FloatArray, books: FloatArray | BooksT, *, l2: bool,
              bits: int | None = None) -> FloatArray:
    """Product-quantizer lookup tables, float32.

    ``S[q, j, c] = sum_e q[j dsub + e] * books[j, c, e]`` or, with ``l2``,
    ``-sum_e (q[j dsub + e] - books[j, c, e])^2``, summed in float32 in increasing ``e``
    (coordinates past ``q``'s width are 0).

    Parameters
    ----------
    q : float32 (nq, d)
    books : float32 (m, ksub, dsub)
    l2 : bool
    bits : {1, 2, 4} or None
        None: the tables ``S`` themselves, ``(nq, m, ksub)``. Else the nibble tables
        ``(nq, 2 * nb, 16)`` of ``bits``-bit codes (``ksub = 2**bits``, ``nb`` the bytes of
        ``m`` codes): ``S`` combined as :func:`nibble_tables` combines coordinates, ``S``
        rows past ``m`` 0.
    """
    q, books_t = _pq_args(q, books)
    m, dsub, ksub = books_t.shape
    nq = q.shape[0]
    if bits is None:
        out = np.empty((nq, m, ksub), dtype=np.float32)
        if nq and m:
            _by_queries(lambda a, b: _pq_sub_tables(q[a:b], books_t, l2, out[a:b]), nq,
                        nq * m * ksub * dsub)
        return out
    out = np.empty((nq, _pq_nsub(books_t, bits), 16), dtype=np.float32)
    work = nq * m * ksub * dsub
    if not (nq and m):
        pass
    elif _native.active_isa() is not None:
        _native_tables.pq_nibble(q, books_t, l2, bits, out, run=_native_runner(nq, work))
    else:
        _by_queries(lambda a, b: _pq_nibble(q[a:b], books_t, l2, bits, out[a:b]), nq, work)
    return out


def pq_luts(q: FloatArray, books: FloatArray | BooksT, *, l2: bool, bits: int
            ) -> tuple[FloatArray, U8Array, FloatArray, FloatArray]:
    """:func:`pq_tables` nibble tables (``bits`` 1, 2 or 4) and their
    :func:`quantize_luts`: ``(tables, luts, bias, delta)``, the same values, in one native
    call when the kernels are built. ``books`` may be given transposed already,
    float32 C-contiguous ``(m, dsub, ksub)`` wrapped as :class:`BooksT` (no copy a call)."""
    if _native.active_isa() is None:
        tables = pq_tables(q, books, l2=l2, bits=bits)
        return (tables, *quantize_luts(tables))
    q, books_t = _pq_args(q, books)
    m, dsub, ksub = books_t.shape
    nq = q.shape[0]
    tables, luts, bias, delta = out = _new_luts(nq, _pq_nsub(books_t, bits))
    if nq and m:
        _native_tables.pq_nibble(q, books_t, l2, bits, tables, quantized=(luts, bias, delta),
                                 run=_native_runner(nq, nq * m * ksub * dsub))
    return out


class BooksT(NamedTuple):
    """Product-quantizer codebooks already transposed to float32 C-contiguous
    ``(m, dsub, ksub)`` (see :func:`pq_luts`)."""

    books_t: FloatArray


def _pq_args(q: FloatArray, books: FloatArray | BooksT) -> tuple[FloatArray, FloatArray]:
    """``q`` and the codebooks transposed to ``(m, dsub, ksub)``, float32 C-contiguous,
    after :func:`pq_tables`' checks."""
    q = np.ascontiguousarray(q, dtype=np.float32)
    books_t = (books.books_t if isinstance(books, BooksT) else
               np.ascontiguousarray(np.asarray(books, dtype=np.float32).transpose(0, 2, 1)))
    m, dsub, _ = books_t.shape
    if q.ndim != 2 or q.shape[1] > m * dsub:
        raise ValueError(f"q must be (nq, <= {m * dsub}), got shape {q.shape}")
    return q, books_t


def _pq_nsub(books_t: FloatArray, bits: int) -> int:
    """Nibble tables of ``m`` codes of ``bits`` bits (checked against the codebooks)."""
    m, _, ksub = books_t.shape
    if bits not in FAST_SCAN_BITS or ksub != 1 << bits:
        raise ValueError(f"nibble tables need 2**bits centroids of 1, 2 or 4 bits, got "
                         f"bits={bits!r} and {ksub} centroids")
    return 2 * (-(-m * bits // 8))


def quantize_luts(tables: FloatArray) -> tuple[U8Array, FloatArray, FloatArray]:
    """uint8 tables for the fast scan from float tables ``(nq, 2 * nb, 16)``.

    Returns
    -------
    luts : uint8 (nq, nb, 32)
        ``floor((T[t, c] - min_c T[t]) * (1 / delta) + 0.5)`` (float32), at most
        :data:`LUT_MAX`; tables ``2p`` and ``2p + 1`` in column ``p``.
    bias : float32 (nq,)
        ``sum_t min_c T[t]`` (summed in float64).
    delta : float32 (nq,)
        ``max_t (max_c T[t] - min_c T[t]) / LUT_MAX`` (1 when every table is flat). A span
        below ``2**-100`` (tiny queries: ``1 / delta`` would overflow) is quantized as the
        tables times ``2**100`` (exact), ``delta`` divided back.
    """
    tables = np.ascontiguousarray(tables, dtype=np.float32)
    if tables.ndim != 3 or tables.shape[2] != 16 or tables.shape[1] % 2:
        raise ValueError(f"tables must be (nq, 2 * nb, 16), got shape {tables.shape}")
    nq, m, _ = tables.shape
    luts = simd_empty((nq, m // 2, 32), np.uint8)
    bias = np.zeros(nq, dtype=np.float32)
    delta = np.ones(nq, dtype=np.float32)
    if not (nq and m):
        pass
    elif _native.active_isa() is not None:
        _native_tables.quantize_luts(tables, luts, bias, delta,
                                     run=_native_runner(nq, nq * m * 32))
    else:
        _by_queries(lambda a, b: _quantize(tables[a:b], LUT_MAX, luts[a:b], bias[a:b],
                                           delta[a:b]), nq, nq * m * 32)
    return luts, bias, delta


# --------------------------------------------------------------------------- reference scan
@numba.njit(nogil=True, cache=True, inline="always")
def _worse(s1: float, i1: int, s2: float, i2: int) -> bool:
    return s1 < s2 or (s1 == s2 and i1 > i2)


@numba.njit(nogil=True, cache=True)
def _heap_offer(hs: np.ndarray, hi: np.ndarray, held: int, cap: int, s: float, j: int) -> int:
    """Offer ``(s, j)`` to a heap (worst at the root) holding ``held`` of ``cap``; returns
    the new count."""
    if held < cap:
        c = held
        while c > 0:
            p = (c - 1) >> 1
            if not _worse(s, j, hs[p], hi[p]):
                break
            hs[c] = hs[p]
            hi[c] = hi[p]
            c = p
        hs[c] = s
        hi[c] = j
        return held + 1
    if not _worse(hs[0], hi[0], s, j):
        return held
    _sift_root(hs, hi, held, s, j)
    return held


@numba.njit(nogil=True, cache=True, inline="always")
def _sift_root(hs: np.ndarray, hi: np.ndarray, held: int, s: float, j: int) -> None:
    """Put ``(s, j)`` at the root of the ``held`` entries and sift it down to its place."""
    c = 0
    while True:
        ch = 2 * c + 1
        w = c
        ws = s
        wi = j
        if ch < held and _worse(hs[ch], hi[ch], ws, wi):
            w = ch
            ws = hs[ch]
            wi = hi[ch]
        if ch + 1 < held and _worse(hs[ch + 1], hi[ch + 1], ws, wi):
            w = ch + 1
        if w == c:
            break
        hs[c] = hs[w]
        hi[c] = hi[w]
        c = w
    hs[c] = s
    hi[c] = j


@numba.njit(nogil=True, cache=True, inline="always")
def _block_sums(lut: np.ndarray, blk: np.ndarray, sums: np.ndarray) -> None:
    """Exact integer sums ``sums[r]`` (int32 (32,)) of one block's 32 rows over the tables
    ``lut`` (int32 (nb, 32)) of one query."""
    sums[:] = 0
    for p in range(lut.shape[0]):
        o = 32 * p
        ta = lut[p]
        for r in range(16):
            ca = np.int32(blk[o + r])
            cb = np.int32(blk[o + 16 + r])
            sums[r] += ta[ca & 15] + ta[16 + (cb & 15)]
            sums[16 + r] += ta[ca >> 4] + ta[16 + (cb >> 4)]


@numba.njit(nogil=True, cache=True)
def _ref_scan(luts: np.ndarray, dot: bool, lv: np.ndarray, nb: int, bias: np.ndarray,
              delta: np.ndarray, qn: np.ndarray,
              codes: np.ndarray, tail: np.ndarray, use_tail: bool, n: int,
              scale: np.ndarray, use_scale: bool, xn: np.ndarray,
              l2: bool, mask: np.ndarray, use_mask: bool, q0: int, q1: int, r0: int, r1: int,
              out_s: np.ndarray, out_i: np.ndarray) -> None:
    k = out_s.shape[1]
    cap = min(k, max(r1 - r0, 0))
    hs = np.empty(max(cap, 1), dtype=np.float32)
    hi = np.empty(max(cap, 1), dtype=np.int64)
    sums = np.zeros(32, dtype=np.int32)
    lut = np.empty((nb, 32), dtype=np.int32)  # int32 entries: the inner loop vectorises
    two = np.float32(2.0)
    zero = np.float32(0.0)
    for q in range(q0, q1):
        if dot:  # weights (nq, 2 nb) x int32 levels: the same sums through int32 tables
            for p in range(nb):
                for c in range(16):
                    lut[p, c] = lv[c] * np.int32(luts[q, 0, 2 * p])
                    lut[p, 16 + c] = lv[c] * np.int32(luts[q, 0, 2 * p + 1])
        else:
            lut[:] = luts[q]
        b_ = bias[q]
        d_ = delta[q]
        qq = qn[q] if l2 else zero
        held = 0
        for j0 in range(r0, r1 if cap > 0 else r0, 32):
            blk = tail[0] if use_tail and (j0 >> 5) == (n >> 5) else codes[j0 >> 5]
            _block_sums(lut, blk, sums)
            for r in range(min(32, r1 - j0)):
                j = j0 + r
                if use_mask and not mask[j]:
                    continue
                s = b_ + d_ * np.float32(sums[r])
                if use_scale:
                    s = scale[j] * s
                if l2:
                    t = (qq + xn[j]) - two * s
                    s = -(t if t > zero else zero)
                if s != s:  # NaN never enters (as the native paths)
                    continue
                held = _heap_offer(hs, hi, held, cap, s, j)
        # pop worst first into the back of the output row; pad
        for t in range(held, k):
            out_s[q, t] = -np.inf
            out_i[q, t] = -1
        while held > 0:
            last = held - 1
            out_s[q, last] = hs[0]
            out_i[q, last] = hi[0]
            held = last
            if held > 0:  # re-insert the last entry from the root
                _sift_root(hs, hi, held, hs[last], hi[last])


def fastscan_topk_ref(
    luts: U8Array,
    bias: FloatArray,
    delta: FloatArray,
    codes: U8Array,
    n: int,
    k: int,
    *,
    scale: FloatArray | None = None,
    sq_norms: FloatArray | None = None,
    q_sq_norms: FloatArray | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
    tail: U8Array | None = None,
    levels: U8Array | None = None,
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Top-``k`` rows of each query by the fast-scan score (numba reference).

    Parameters
    ----------
    luts : uint8 (nq, nb, 32), or int8 (nq, 2 nb) with ``levels``
        :func:`quantize_luts` tables; with ``levels``, :func:`dot_weights`.
    bias, delta : float32 (nq,)
        :func:`quantize_luts` constants.
    codes : uint8 (blocks, nb * 32)
        :func:`pack_blocked` codes.
    n : int
        Rows scanned (``<= 32 * blocks``, or ``32 * blocks + 31`` with ``tail``).
    k : int
        ``>= 0``.
    scale : float32 (>= n,), optional
        Per-row factor.
    sq_norms : float32 (>= n,), optional
        ``|x_i|^2``: the ``l2`` score (needs ``q_sq_norms``, float32 (nq,)).
    q_sq_norms : float32 (nq,), optional
    mask : bool (>= n,), optional
        Rows not allowed are never returned.
    tail : uint8 (1, nb * 32), optional
        The block of rows ``32 (n // 32) .. n - 1`` when it is not ``codes[n // 32]`` (an
        index keeps its last, partial block row-major and packs it per search).
    levels : uint8 (16,), optional
        The dot mode (:func:`dot_levels`): sub-code value ``c`` stands for the int8 level
        ``levels[c] - 128`` and a row's integer sum is ``sum_t level(code_t) * luts[q, t]``
        (exact) in place of the sum of table entries; the score is the same expression.

    Returns
    -------
    scores : float32 (nq, k)
    slots : int64 (nq, k)
        Score descending, then slot ascending; ``-inf`` / ``-1`` padding.

    Raises
    ------
    InvalidDtypeError, DimensionMismatchError, InvalidArgumentError
        As :func:`vecindex_core._native.lut.lut_topk`.
    """
    nb = check_scan_args(luts, bias, delta, codes, n, k, scale, sq_norms, q_sq_norms, mask,
                         tail, levels)
    dot = levels is not None
    # one array type for both modes: weights as (nq, 1, 2 nb)
    tb = luts.reshape(luts.shape[0], 1, -1) if dot else luts
    lv = np.zeros(16, dtype=np.int32) if levels is None else levels.astype(np.int32) - 128
    f1 = np.zeros(1, dtype=np.float32)
    tl = codes[:1] if tail is None else tail
    sc = f1 if scale is None else scale
    xn = f1 if sq_norms is None else sq_norms
    qn = f1 if q_sq_norms is None else q_sq_norms
    mk = np.ones(1, dtype=np.bool_) if mask is None else mask
    use_scale, l2, use_mask = scale is not None, sq_norms is not None, mask is not None

    def kernel(q0: int, q1: int, r0: int, r1: int, out_s: FloatArray,
               out_i: npt.NDArray[np.int64]) -> None:
        _ref_scan(tb, dot, lv, nb, bias, delta, qn, codes, tl, tail is not None, int(n), sc,
                  use_scale, xn, l2, mk, use_mask, q0, q1, r0, r1, out_s, out_i)

    return run_split(kernel, luts.shape[0], int(n), int(k), nb)


def fastscan_topk(
    luts: U8Array,
    bias: FloatArray,
    delta: FloatArray,
    codes: U8Array,
    n: int,
    k: int,
    *,
    scale: FloatArray | None = None,
    sq_norms: FloatArray | None = None,
    q_sq_norms: FloatArray | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
    tail: U8Array | None = None,
    levels: U8Array | None = None,
    trusted: bool = False,
    seed: FloatArray | None = None,
    scale_max: float | None = None,
    sort: bool = True,
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """:func:`fastscan_topk_ref` on the active native path when there is one (identical
    results), else the reference. ``trusted``: the arguments come from this package's own
    search code (the native path skips the Python-side checks, as
    :func:`~vecindex_core._native.lut.lut_topk` documents); ``seed``, ``scale_max`` and
    ``sort``: the native scan's per-query starting score, bound on ``scale`` and whether the
    rows must come best first (costs, never the rows: the reference ignores them)."""
    if _native.active_isa() is not None:
        return _native_lut_topk(luts, bias, delta, codes, n, k, scale=scale,
                                sq_norms=sq_norms, q_sq_norms=q_sq_norms, mask=mask, tail=tail,
                                levels=levels, trusted=trusted, seed=seed, scale_max=scale_max,
                                sort=sort)
    return fastscan_topk_ref(luts, bias, delta, codes, n, k, scale=scale, sq_norms=sq_norms,
                             q_sq_norms=q_sq_norms, mask=mask, tail=tail, levels=levels)


# --------------------------------------------------------------------------- dot mode
def dot_levels(codebook: FloatArray) -> tuple[U8Array, float]:
    """The dot mode's levels of a 16-level codebook shared by every coordinate.

    Returns
    -------
    levels : uint8 (16,)
        ``round(codebook / cs) + 128`` (levels in ``[-127, 127]``).
    cs : float
        ``max |codebook| / 127`` (1 for an all-zero codebook).
    """
    c = np.asarray(codebook, dtype=np.float64)
    if c.shape != (16,) or not np.all(np.isfinite(c)):
        raise ValueError(f"codebook must be 16 finite levels, got shape {c.shape}")
    top = float(np.max(np.abs(c)))
    cs = top / 127 if top > 0 else 1.0
    return (np.clip(np.rint(c / cs), -127, 127) + 128).astype(np.uint8), cs


def dot_weights(rq: FloatArray, nb: int, cs: float) -> tuple[npt.NDArray[np.int8], FloatArray]:
    """The dot mode's per-query weights of rotated queries ``rq`` ``(nq, d)``, ``d <= 2 nb``.

    Returns
    -------
    weights : int8 (nq, 2 nb)
        ``round(rq / qs)`` per query, ``qs = max_j |rq_j| / 127`` (1 for a zero query);
        coordinates past ``d`` 0; all 0 for a query with a non-finite entry.
    delta : float32 (nq,)
        ``cs * qs``: the score is ``scale * (delta * S)``; NaN for a query with a
        non-finite entry (callers take the table route when a ``delta`` is not a normal
        float32, :func:`dot_usable`).
    """
    r = np.ascontiguousarray(rq, dtype=np.float32)
    nq, d = r.shape
    if d > 2 * nb:
        raise ValueError(f"{d} coordinates do not fit {nb} bytes of 4-bit codes")
    w = np.zeros((nq, 2 * nb), dtype=np.int8)
    delta = np.empty(nq, dtype=np.float32)
    _dot_weights(r, float(cs), w, delta)
    return w, delta


@numba.njit(nogil=True, cache=True)
def _dot_weights(r: np.ndarray, cs: float, w: np.ndarray, delta: np.ndarray) -> None:
    # per query, in float64: qs = max |r| / 127 (1 for a zero query), w = clip(rint(r / qs));
    # a non-finite entry: weights 0 (w starts zeroed), delta NaN (one numba pass where the
    # numpy expression took ~17 us for a single query)
    for q in range(r.shape[0]):
        top = 0.0
        finite = True
        for j in range(r.shape[1]):
            v = abs(np.float64(r[q, j]))
            if not np.isfinite(v):
                finite = False
            elif v > top:
                top = v
        if not finite:
            delta[q] = np.nan
            continue
        qs = top / 127 if top > 0 else 1.0
        for j in range(r.shape[1]):
            x = np.rint(np.float64(r[q, j]) / qs)
            w[q, j] = np.int8(min(max(x, -127.0), 127.0))
        delta[q] = np.float32(cs * qs)


#: The smallest normal float32 (``np.finfo`` costs ~2 us a call).
_F32_TINY = np.float32(np.finfo(np.float32).tiny)


def dot_usable(delta: FloatArray) -> bool:
    """Whether every query's dot-mode ``delta`` is a normal float32: a subnormal or zero
    one (tiny queries) would flatten the scores, a NaN one marks a non-finite query."""
    return bool((delta >= _F32_TINY).all())


# --------------------------------------------------------------------------- inverted lists
@numba.njit(nogil=True, cache=True)
def _ref_ivf_scan(luts: np.ndarray, bias: np.ndarray, delta: np.ndarray, qn: np.ndarray,
                  codes: np.ndarray, ranges: np.ndarray, lb: np.ndarray, use_lb: bool,
                  scale: np.ndarray, use_scale: bool, xn: np.ndarray, l2: bool,
                  row_slots: np.ndarray, mask: np.ndarray, use_mask: bool, q0: int, q1: int,
                  hs: np.ndarray, hi: np.ndarray) -> None:
    nb = luts.shape[1]
    k = hs.shape[1]
    nr = ranges.shape[1]
    sums = np.zeros(32, dtype=np.int32)
    lut = np.empty((nb, 32), dtype=np.int32)  # int32 entries: the inner loop vectorises
    two = np.float32(2.0)
    zero = np.float32(0.0)
    for q in range(q0, q1):
        lut[:] = luts[q]
        b_ = bias[q]
        d_ = delta[q]
        qq = qn[q] if l2 else zero
        hsq = hs[q]
        hiq = hi[q]
        for t in range(nr):
            lo = ranges[q, t, 0]
            up = ranges[q, t, 1]
            for j0 in range(lo, up, 32):
                _block_sums(lut, codes[j0 >> 5], sums)
                for r in range(min(32, up - j0)):
                    e = j0 + r
                    s = b_ + d_ * np.float32(sums[r])
                    if use_scale:
                        s = scale[e] * s
                    if use_lb:
                        s = lb[q, t] + s
                    if l2:
                        tt = (qq + xn[e]) - two * s
                        s = -(tt if tt > zero else zero)
                    slot = int(row_slots[e])
                    if use_mask and not mask[slot]:
                        continue
                    _heap_offer(hsq, hiq, k, k, s, slot)  # full heap: replaces the root


def fastscan_ivf_ref(
    luts: U8Array,
    bias: FloatArray,
    delta: FloatArray,
    codes: U8Array,
    ranges: npt.NDArray[np.int64],
    hs: FloatArray,
    hi: npt.NDArray[np.int64],
    *,
    row_slots: npt.NDArray[np.int32],
    list_bias: FloatArray | None = None,
    scale: FloatArray | None = None,
    sq_norms: FloatArray | None = None,
    q_sq_norms: FloatArray | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
    trusted: bool = False,
) -> None:
    """Continue each query's top-k heap over its inverted lists, in place (numba reference).

    An inverted file keeps ONE blocked array of codes indexed by *entry* (entry ``e`` in
    block ``e // 32``, lane ``e % 32``; every list starts at a multiple of 32) and per-entry
    arrays. For query ``q`` and range ``t``, every entry ``e`` in ``[lo, hi) =
    ranges[q, t]`` is scored, in float32 and in this order (``S`` the exact integer sum of
    the query's tables over the entry's sub-codes, as in :func:`fastscan_topk_ref`)::

        s = bias[q] + delta[q] * float(S)
        scale:      s = scale[e] * s
        list_bias:  s = list_bias[q, t] + s
        l2:         t = (q_sq_norms[q] + sq_norms[e]) - 2 * s;  s = -(t if t > 0 else 0)

    and offered as ``(s, row_slots[e])``, unless ``mask`` is given and ``mask[slot]`` is
    false. The native paths (:func:`vecindex_core._native.lut.lut_ivf_topk`) leave heaps
    holding the same entries bit for bit (the same :func:`~.topk.finalize_heaps`); above
    k = 32 they collect candidates in a reservoir, so the heap's internal order may differ.

    Parameters
    ----------
    luts : uint8 (nq, nb, 32)
        :func:`quantize_luts` tables (entries at most :data:`LUT_MAX`).
    bias, delta : float32 (nq,)
        :func:`quantize_luts` constants.
    codes : uint8 (blocks, nb * 32)
        The blocked arena (:func:`pack_blocked` layout by entry); lanes past a range's end
        never reach a heap.
    ranges : int64 (nq, R, 2)
        ``[lo, hi)`` entry ranges per query: ``0 <= lo <= hi <= 32 * blocks``, ``lo`` a
        multiple of 32 unless the range is empty.
    hs : float32 (nq, k)
    hi : int64 (nq, k)
        Heaps in the :func:`~.topk.init_heaps` layout (always full, padding ``-inf`` /
        ``-1``, root = worst), updated in place: a candidate ``(s, slot)`` replaces the root
        when ``s > root_s``, or ``s == root_s`` and ``slot < root_i`` (a NaN never enters),
        so a call continues the heaps of earlier calls; :func:`~.topk.finalize_heaps` sorts
        them. ``k >= 1``; C-contiguous, writable, sharing no memory with each other or any
        input.
    row_slots : int32 (>= max hi,)
        The slot of each entry (what the heaps hold).
    list_bias : float32 (nq, R), optional
        Added per range after the scale (nothing is added when omitted).
    scale : float32 (>= max hi,), optional
        Per-entry factor.
    sq_norms : float32 (>= max hi,), optional
        Per-entry ``|x|^2``: the ``l2`` score (needs ``q_sq_norms``, float32 (nq,)).
    q_sq_norms : float32 (nq,), optional
    mask : bool (> every scanned slot,), optional
        Allowed slots.
    trusted : bool
        The caller built every argument itself (an index's own arrays, probed ranges): the
        checks below are skipped (a single query spends ~60 us in them). Only for internal
        callers; wrong arguments then read out of bounds.

    Raises
    ------
    InvalidDtypeError
        A wrong dtype.
    DimensionMismatchError
        Shapes that do not match, per-entry arrays shorter than the largest non-empty
        ``hi``, or a scanned entry whose slot is outside ``[0, len(mask))``.
    InvalidArgumentError
        Not C-contiguous, a bad range, ``hs`` / ``hi`` read-only or sharing memory, table
        entries above :data:`LUT_MAX`, ``sq_norms`` without ``q_sq_norms``.

    Everything is checked before the heaps are written: a failed call changes nothing.
    """
    if trusted:
        work = ivf_work(luts, ranges)
    else:
        work = check_ivf_args(luts, bias, delta, codes, ranges, hs, hi, row_slots, list_bias,
                              scale, sq_norms, q_sq_norms, mask)
    f1 = np.zeros(1, dtype=np.float32)
    lb = np.zeros((1, 1), dtype=np.float32) if list_bias is None else list_bias
    sc = f1 if scale is None else scale
    xn = f1 if sq_norms is None else sq_norms
    qn = f1 if q_sq_norms is None else q_sq_norms
    mk = np.ones(1, dtype=np.bool_) if mask is None else mask
    use_lb, use_scale = list_bias is not None, scale is not None
    l2, use_mask = sq_norms is not None, mask is not None

    def kernel(q0: int, q1: int) -> None:
        _ref_ivf_scan(luts, bias, delta, qn, codes, ranges, lb, use_lb, sc, use_scale, xn, l2,
                      row_slots, mk, use_mask, q0, q1, hs, hi)

    if ranges.shape[1]:
        nq = luts.shape[0]
        run_chunks(kernel, nq, thread_count(nq, work, MIN_WORK_PER_THREAD))


def fastscan_ivf_topk(
    luts: U8Array,
    bias: FloatArray,
    delta: FloatArray,
    codes: U8Array,
    ranges: npt.NDArray[np.int64],
    hs: FloatArray,
    hi: npt.NDArray[np.int64],
    *,
    row_slots: npt.NDArray[np.int32],
    list_bias: FloatArray | None = None,
    scale: FloatArray | None = None,
    sq_norms: FloatArray | None = None,
    q_sq_norms: FloatArray | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
    trusted: bool = False,
) -> None:
    """:func:`fastscan_ivf_ref` on the active native path when there is one (heaps with the
    same entries bit for bit), else the reference."""
    if _native.active_isa() is not None:
        _native_lut_ivf_topk(luts, bias, delta, codes, ranges, hs, hi, row_slots=row_slots,
                             list_bias=list_bias, scale=scale, sq_norms=sq_norms,
                             q_sq_norms=q_sq_norms, mask=mask, trusted=trusted)
        return
    fastscan_ivf_ref(luts, bias, delta, codes, ranges, hs, hi, row_slots=row_slots,
                     list_bias=list_bias, scale=scale, sq_norms=sq_norms,
                     q_sq_norms=q_sq_norms, mask=mask, trusted=trusted)


# --------------------------------------------------------------------------- rescoring
@numba.njit(nogil=True, cache=True, inline="always")
def _entry(tq: np.ndarray, rq: np.ndarray, lv: np.ndarray, direct: bool, base: int,
           x: np.uint32) -> np.float64:
    """Table entry ``base + x`` (``base = 16 t``): read, or with ``direct`` (4-bit codes)
    computed as the table's own float32 product ``rq[t] * lv[x]``."""
    if direct:
        return np.float64(rq[base >> 4] * lv[x])
    return np.float64(tq[base + x])


@numba.njit(nogil=True, cache=True)
def _rescore(tables: np.ndarray, rqs: np.ndarray, lv: np.ndarray, direct: bool, m: int,
             codes: np.ndarray, tail: np.ndarray, tail_block: int,
             cand: np.ndarray, scale: np.ndarray, use_scale: bool, add: np.ndarray,
             use_add: bool, xn: np.ndarray, qn: np.ndarray, l2: bool, out: np.ndarray) -> None:
    nq = cand.shape[0]
    two = np.float32(2.0)
    zero = np.float32(0.0)
    for q in range(nq):
        tq = tables[0 if direct else q].ravel()
        rq = rqs[q if direct else 0]
        for c in range(cand.shape[1]):
            s = cand[q, c]
            if s < 0:
                out[q, c] = -np.inf
                continue
            blk = tail[0] if (s >> 5) == tail_block else codes[s >> 5]
            i = s & 31
            shift = 0
            if i >= 16:
                shift = 4
                i -= 16
            # two sub-codes a byte column; four partial sums (sub-code t mod 4)
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            a3 = 0.0
            o = i
            base = 0
            nb = m >> 1
            for _ in range(nb >> 1):
                a0 += _entry(tq, rq, lv, direct, base, (np.uint32(blk[o]) >> shift) & 15)
                a1 += _entry(tq, rq, lv, direct, base + 16,
                             (np.uint32(blk[o + 16]) >> shift) & 15)
                a2 += _entry(tq, rq, lv, direct, base + 32,
                             (np.uint32(blk[o + 32]) >> shift) & 15)
                a3 += _entry(tq, rq, lv, direct, base + 48,
                             (np.uint32(blk[o + 48]) >> shift) & 15)
                o += 64
                base += 64
            if nb & 1:
                a0 += _entry(tq, rq, lv, direct, base, (np.uint32(blk[o]) >> shift) & 15)
                a1 += _entry(tq, rq, lv, direct, base + 16,
                             (np.uint32(blk[o + 16]) >> shift) & 15)
            v = np.float32((a0 + a1) + (a2 + a3))
            if use_scale:
                v = scale[s] * v
            if use_add:
                v = add[q, c] + v
            if l2:
                tt = (qn[q] + xn[s]) - two * v
                v = -(tt if tt > zero else zero)
            out[q, c] = v


#: Stand-ins the rescore kernel never reads (no scale, squared norms, per-candidate add,
#: tables or products).
_UNUSED_1D = np.zeros(1, dtype=np.float32)
_UNUSED_2D = np.zeros((1, 1), dtype=np.float32)
_UNUSED_3D = np.zeros((1, 1, 16), dtype=np.float32)


class Products(NamedTuple):
    """The 4-bit :func:`nibble_tables` of rotated queries, unbuilt: entry ``(q, t, c)`` is
    ``rq[q, t] * levels[c]`` (float32; 0 past ``d``), for :func:`rescore_shortlist`."""

    rq: FloatArray
    levels: FloatArray
    nb: int

    def arrays(self) -> tuple[FloatArray, FloatArray]:
        """What the rescore kernels read: float32 ``(nq, 2 nb)`` ``rq`` with zero columns
        past ``d``, and the levels as contiguous float32."""
        nq, d = self.rq.shape
        rqs = np.zeros((nq, 2 * self.nb), dtype=np.float32)
        rqs[:, :d] = self.rq
        return rqs, np.ascontiguousarray(self.levels, dtype=np.float32)


def fastscan_search(
    luts: U8Array, bias: FloatArray, delta: FloatArray, codes: U8Array, n: int, size: int,
    k: int, tables: FloatArray | Products, *, scale: FloatArray | None = None,
    sq_norms: FloatArray | None = None, q_sq_norms: FloatArray | None = None,
    mask: npt.NDArray[np.bool_] | None = None, tail: U8Array | None = None,
    levels: U8Array | None = None, scale_max: float | None = None,
) -> tuple[FloatArray, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The top-``k`` of :func:`rescore_shortlist` (by ``tables``) over each query's
    :func:`fastscan_topk` shortlist of ``size`` rows, for this package's own search code
    (``trusted``). On the native kernels, unless the scan splits the rows over threads, the
    rescore runs in the scan's own call (:func:`~vecindex_core._native.lut.lut_search`; a
    single 2-bit query on dev: ~6 us less); the same results either way."""
    if _native.active_isa() is not None and size >= 1:
        if isinstance(tables, Products):
            rt, (rqs, rlv) = None, tables.arrays()
        else:
            rt, rqs, rlv = np.ascontiguousarray(tables, dtype=np.float32), None, None
        found = _native_lut_search(luts, bias, delta, codes, n, size, k, rtables=rt, rqs=rqs,
                                   rlv=rlv, scale=scale, sq_norms=sq_norms,
                                   q_sq_norms=q_sq_norms, mask=mask, tail=tail, levels=levels,
                                   scale_max=scale_max)
        if found is not None:
            return found
    _, cand = fastscan_topk(luts, bias, delta, codes, n, size, scale=scale, sq_norms=sq_norms,
                            q_sq_norms=q_sq_norms, mask=mask, tail=tail, levels=levels,
                            trusted=True, scale_max=scale_max)
    return rescore_shortlist(tables, codes, cand, k, scale=scale, sq_norms=sq_norms,
                             q_sq_norms=q_sq_norms, tail=tail, n=n)


def rescore_shortlist(
    tables: FloatArray | Products, codes: U8Array, cand: npt.NDArray[np.int64], k: int, *,
    scale: FloatArray | None = None, sq_norms: FloatArray | None = None,
    q_sq_norms: FloatArray | None = None, tail: U8Array | None = None, n: int = 0,
    add: FloatArray | None = None, keys: npt.NDArray[np.int64] | None = None,
) -> tuple[FloatArray, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Top-``k`` of each query's candidates by the float code estimate.

    ``tables`` float32 ``(nq, 2 nb, 16)``, or for 4-bit codes of one codebook the
    :class:`Products` they are made of (each entry computed when read, the same float32
    value: the same estimates without building the tables).

    ``est = float32(sum_t tables[t, code_t(i)])`` over the sub-codes of row ``i``
    (:func:`nibble_tables`; four partial sums over ``t mod 4`` in float64, then
    ``(s0 + s1) + (s2 + s3)``), then in float32 ``est = scale[i] * est`` (with ``scale``),
    ``est = add[q, c] + est`` (with ``add``, per candidate) and, for ``l2``,
    ``-max(|q|^2 + |x|^2 - 2 est, 0)``; rows are read from the blocked ``codes`` (rows of
    block ``n // 32`` from ``tail`` when given, as in :func:`fastscan_topk_ref`).

    ``cand`` int64 ``(nq, C)`` are rows (``-1``: none); ``keys`` int64 ``(nq, C)``, default
    ``cand``, are what is returned as slots and breaks ties (an inverted file's rows are
    arena entries, its keys their slots).

    Returns
    -------
    scores, slots, counts
        As :func:`~.topk.finalize_heaps`: score descending, ties by the lower key,
        ``-inf`` / ``-1`` padding.
    """
    direct = isinstance(tables, Products)
    if isinstance(tables, Products):
        rqs, lv = tables.arrays()
        tb, m = _UNUSED_3D, rqs.shape[1]
    else:
        tb = np.ascontiguousarray(tables, dtype=np.float32)
        rqs, lv, m = _UNUSED_2D, _UNUSED_1D, tb.shape[1]
    nq = rqs.shape[0] if direct else tb.shape[0]
    out = np.empty(cand.shape, dtype=np.float32)
    keys = cand if keys is None else keys
    l2 = sq_norms is not None
    if cand.size:
        cd = np.ascontiguousarray(cand, dtype=np.int64)
        tl, tail_block = (codes[:1], -1) if tail is None else (tail, n // BLOCK)
        xn = _UNUSED_1D if sq_norms is None else sq_norms
        qn = _UNUSED_1D if q_sq_norms is None else q_sq_norms
        sc = _UNUSED_1D if scale is None else scale
        ad = _UNUSED_2D if add is None else add  # ad[a:b] never read without add

        def run(a: int, b: int) -> None:
            _rescore(tb if direct else tb[a:b], rqs[a:b] if direct else rqs, lv, direct, m,
                     codes, tl, tail_block, cd[a:b], sc, scale is not None, ad[a:b],
                     add is not None, xn, qn[a:b] if l2 else qn, l2, out[a:b])

        _by_queries(run, nq, cand.size * m * 4)
    if not (cand.size and k):
        return (np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, np.int64),
                np.zeros(nq, dtype=np.int64))
    scores = np.empty((nq, k), dtype=np.float32)  # _select writes every entry
    slots = np.empty((nq, k), dtype=np.int64)
    counts = np.empty(nq, dtype=np.int64)
    _select(out, np.ascontiguousarray(keys, dtype=np.int64), scores, slots, counts)
    return scores, slots, counts
