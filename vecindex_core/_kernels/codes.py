"""Packed scalar codes and lookup-table scans: the hot loop of the quantized index kinds.

Layout
------
A row of ``d`` codes of ``bits`` bits (``1..8``) is a little-endian bit stream of
``nbytes = ceil(d * bits / 8)`` bytes: code ``j`` occupies bits ``[j*bits, (j+1)*bits)``
(:func:`pack_codes`). For ``bits`` in ``{1, 2, 4, 8}`` code ``j`` lives in byte
``(j*bits) // 8`` at shift ``(j*bits) % 8``; for 3, 5, 6 and 7 bits codes straddle bytes.
Unused high bits of the last byte are zero.

Scores
------
A *byte lookup table* ``T[q, p, v]`` (:func:`byte_luts`) holds, for query ``q``, the sum of
the per-code tables of the codes packed in byte ``p`` when that byte has value ``v``, so an
additive score over codes is ``sum_p T[q, p, codes[i, p]]``: one lookup per byte.
:func:`lut_topk` pushes ``raw = bias + scale[i] * sum_p T[q, p, codes[i, p]]`` (or, for
``l2``, ``-max(|q|^2 + |x_i|^2 - 2 raw, 0)``) into top-k heaps; :func:`decoded_topk` computes
the same scores with BLAS from rows decoded block by block, which is faster for large
batches (:func:`prefer_decoded` is the measured dispatch rule). :func:`coord_lut_topk` is
the per-code form of :func:`lut_topk` for any ``bits``, for codes that straddle bytes (3, 5,
6, 7 bits; at 384 dimensions the BLAS route measured faster than it even for one query).

Selection is exact and deterministic: heaps are :func:`~.topk.init_heaps` heaps ordered by
score descending then slot ascending, and every candidate is compared with the heap's worst
on ``(score, slot)``, so exact ties go to the lower slot whatever order rows are scanned in
(IVF scans rows out of slot order) and whatever the thread count. Every per-row sum is taken
in one fixed order (four interleaved partial sums over the bytes, ``(s0 + s1) + (s2 + s3)``),
so a LUT-scan score does not depend on the thread count, the batch or the block it was scanned
in. The BLAS route sums in the BLAS kernel's order: its scores agree with the LUT scan's to
float32 rounding, not bit for bit.

Speed (AMD EPYC Zen 3, AVX2, one thread; see ``docs/quantization.md``): the scan is bound by
its table lookups, about 0.6-0.7 ns each (scalar loads; ordinary numba code does not emit the
``vpshufb`` in-register lookups that SIMD scanners use, see ``docs/quantization.md``), i.e.
~130 ns a row for 384 dims at 4 bits (192 bytes). The BLAS route costs ~11-15 ns per
(query, row) once the batch fills a GEMM tile, plus a decode per row shared by the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numba
import numpy as np
import numpy.typing as npt

from .._threads import get_num_threads, map_chunks, run_chunks, split_plan
from .topk import _sift_down, finalize_heaps, init_heaps

__all__ = [
    "COORD_LOOKUP_NS",
    "DECODE_BLOCK",
    "DECODE_NS",
    "GEMM_NS",
    "LOOKUP_NS",
    "byte_luts",
    "codes_nbytes",
    "coord_lut_topk",
    "decoded_topk",
    "dequantize",
    "lut_topk",
    "pack_codes",
    "prefer_decoded",
    "quantize_nearest",
    "unpack_codes",
]

#: Rows decoded per BLAS block in :func:`decoded_topk` (a 384-dim block is 3 MiB).
DECODE_BLOCK = 2048
#: Queries per BLAS tile (a tile is at most QUERY_BLOCK x DECODE_BLOCK float32).
QUERY_BLOCK = 512
#: Below this many table lookups (rows x bytes, all queries) a scan runs on one thread.
_MIN_LOOKUPS_PER_THREAD = 1 << 18
#: Columns per step of the decoded tile scan (one max decides whether to look closer).
_SCAN_CHUNK = 64

FloatArray = npt.NDArray[np.float32]
#: Row slots: int64, or int32 (scanned as they are, without a copy).
SlotsArray = npt.NDArray[np.int64] | npt.NDArray[np.int32]
Result = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]


def codes_nbytes(d: int, bits: int) -> int:
    """Bytes of one packed row: ``ceil(d * bits / 8)``."""
    return (d * bits + 7) // 8


def _check_bits(bits: int, allowed: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)) -> int:
    if isinstance(bits, bool) or int(bits) not in allowed:
        raise ValueError(f"bits must be one of {allowed}, got {bits!r}")
    return int(bits)


# --------------------------------------------------------------------------- packing
@numba.njit(nogil=True, cache=True)
def _pack(codes: np.ndarray, bits: int, out: np.ndarray) -> None:
    n, d = codes.shape
    for i in range(n):
        for j in range(d):
            v = np.uint32(codes[i, j])
            pos = j * bits
            byte = pos >> 3
            shift = pos & 7
            out[i, byte] |= np.uint8((v << shift) & 255)
            if shift + bits > 8:
                out[i, byte + 1] |= np.uint8(v >> (8 - shift))


@numba.njit(nogil=True, cache=True, inline="always")
def _code_at(row: np.ndarray, j: int, bits: int, nbytes: int) -> int:
    """Code ``j`` of one packed row (any ``bits``)."""
    pos = j * bits
    byte = pos >> 3
    shift = pos & 7
    w = np.uint32(row[byte])
    if shift + bits > 8 and byte + 1 < nbytes:
        w |= np.uint32(row[byte + 1]) << 8
    return int((w >> shift) & ((1 << bits) - 1))


@numba.njit(nogil=True, cache=True)
def _unpack(packed: np.ndarray, bits: int, d: int, a: int, b: int, out: np.ndarray) -> None:
    nbytes = packed.shape[1]
    for i in range(a, b):
        row = packed[i]
        for j in range(d):
            out[i - a, j] = _code_at(row, j, bits, nbytes)


def pack_codes(codes: npt.NDArray[np.uint8], bits: int) -> npt.NDArray[np.uint8]:
    """Pack ``codes`` (uint8 ``(n, d)``, each ``< 2**bits``) into bit-stream rows.

    Parameters
    ----------
    codes : uint8 (n, d)
    bits : int
        ``1..8``.

    Returns
    -------
    uint8 (n, ceil(d * bits / 8))
        Code ``j`` in bits ``[j*bits, (j+1)*bits)`` of the little-endian bit stream.

    Raises
    ------
    ValueError
        ``bits`` outside ``1..8``, or a code ``>= 2**bits``.
    """
    bits = _check_bits(bits)
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-D (n, d), got shape {codes.shape}")
    if bits < 8 and codes.size and int(codes.max()) >> bits:
        raise ValueError(f"codes must be < 2**{bits}, got {int(codes.max())}")
    n, d = codes.shape
    if bits == 8:
        return codes.copy()
    out = np.zeros((n, codes_nbytes(d, bits)), dtype=np.uint8)
    if codes.size:
        _pack(codes, bits, out)
    return out


def unpack_codes(packed: npt.NDArray[np.uint8], bits: int, d: int) -> npt.NDArray[np.uint8]:
    """Inverse of :func:`pack_codes`: uint8 ``(n, nbytes)`` rows to uint8 ``(n, d)`` codes."""
    bits = _check_bits(bits)
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    if packed.ndim != 2 or packed.shape[1] != codes_nbytes(d, bits):
        raise ValueError(
            f"packed must be (n, {codes_nbytes(d, bits)}) for d={d}, bits={bits}, "
            f"got shape {packed.shape}"
        )
    n = packed.shape[0]
    out = np.empty((n, d), dtype=np.uint8)
    if n and d:
        _unpack(packed, bits, d, 0, n, out)
    return out


@numba.njit(nogil=True, cache=True)
def _dequantize(
    packed: np.ndarray, bits: int, d: int, levels: np.ndarray, a: int, b: int, out: np.ndarray
) -> None:
    """``out[i - a, j] = levels[code j of row i]`` for rows ``a:b``.

    Codes are read eight at a time (``bits`` whole bytes form one word), so no code
    straddles a word.
    """
    nbytes = packed.shape[1]
    mask = (1 << bits) - 1
    full = d // 8
    for i in range(a, b):
        row = packed[i]
        o = out[i - a]
        for g in range(full):
            w = np.uint64(0)
            base = g * bits
            for t in range(bits):
                w |= np.uint64(row[base + t]) << np.uint64(8 * t)
            for s in range(8):
                o[8 * g + s] = levels[int((w >> np.uint64(s * bits)) & np.uint64(mask))]
        for j in range(8 * full, d):
            o[j] = levels[_code_at(row, j, bits, nbytes)]


def dequantize(
    packed: npt.NDArray[np.uint8], bits: int, d: int, levels: npt.NDArray[np.float32],
    start: int = 0, stop: int | None = None, out: FloatArray | None = None,
) -> FloatArray:
    """Decoded rows ``levels[code]``, float32 ``(stop - start, d)``.

    Parameters
    ----------
    packed : uint8 (n, nbytes)
        :func:`pack_codes` rows.
    bits, d : int
    levels : float32 (2**bits,)
        The value of each code.
    start, stop : int
        Rows to decode (default all).
    out : float32 array of at least ``(stop - start, d)``, C-contiguous, optional
        Written in place (its leading rows) and returned.
    """
    stop = packed.shape[0] if stop is None else stop
    if out is None:
        out = np.empty((stop - start, d), dtype=np.float32)
    view = out[: stop - start]
    if stop > start:
        _dequantize(packed, bits, d, np.asarray(levels, dtype=np.float32), start, stop, view)
    return view


@numba.njit(nogil=True, cache=True)
def _quantize(u: np.ndarray, mids: np.ndarray, levels: np.ndarray, codes: np.ndarray,
              dots: np.ndarray) -> None:
    n, d = u.shape
    m = mids.shape[0]
    for i in range(n):
        dot = 0.0
        for j in range(d):
            v = u[i, j]
            lo = 0
            hi = m
            while lo < hi:  # number of midpoints strictly below v
                mid = (lo + hi) >> 1
                if mids[mid] < v:
                    lo = mid + 1
                else:
                    hi = mid
            codes[i, j] = lo
            dot += np.float64(v) * np.float64(levels[lo])
        dots[i] = dot


def quantize_nearest(
    u: FloatArray, levels: FloatArray
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64]]:
    """Nearest-level scalar codes of every coordinate, and ``<u_i, levels[codes_i]>``.

    Parameters
    ----------
    u : float32 (n, d)
    levels : float32 (L,), ascending, ``L <= 256``

    Returns
    -------
    codes : uint8 (n, d)
        Index of the nearest level; a value exactly half-way between two levels takes the
        lower one (float32 midpoints).
    dots : float64 (n,)
        ``sum_j u[i, j] * levels[codes[i, j]]``, accumulated in float64 in ``j`` order.
    """
    u = np.ascontiguousarray(u, dtype=np.float32)
    lv = np.ascontiguousarray(levels, dtype=np.float32)
    mids = ((lv[:-1].astype(np.float64) + lv[1:]) / 2).astype(np.float32)
    codes = np.empty(u.shape, dtype=np.uint8)
    dots = np.empty(u.shape[0], dtype=np.float64)
    if u.size:
        _quantize(u, mids, lv, codes, dots)
    return codes, dots


# --------------------------------------------------------------------------- byte tables
@numba.njit(nogil=True, cache=True)
def _byte_luts(tables: np.ndarray, bits: int, out: np.ndarray) -> None:
    """Prefix doubling: the table of the first ``t + 1`` codes of a byte is the table of the
    first ``t`` plus code ``t``'s table, ``256`` adds a byte in loops that vectorise (the same
    additions, in the same order, as summing each entry code by code)."""
    nq, d, width = tables.shape
    nbytes = out.shape[1]
    per = 8 // bits
    buf = np.empty(256, dtype=np.float32)
    for q in range(nq):
        for p in range(nbytes):
            j0 = p * per
            cnt = min(per, d - j0)
            size = width
            for v in range(width):
                buf[v] = tables[q, j0, v]
            for t in range(1, cnt):
                tab = tables[q, j0 + t]
                for hi in range(width - 1, -1, -1):  # top down: buf[:size] is still read
                    c = tab[hi]
                    base = hi * size
                    for lo in range(size):
                        buf[base + lo] = buf[lo] + c
                size *= width
            # codes past d (zero bits in packed rows) contribute 0: repeat the table
            for v in range(256):
                out[q, p, v] = buf[v & (size - 1)]


def byte_luts(tables: FloatArray, bits: int) -> FloatArray:
    """Byte lookup tables from per-code tables.

    Parameters
    ----------
    tables : float32 (nq, d, 2**bits)
        ``tables[q, j, c]``: the score contribution of code ``c`` at coordinate ``j``.
    bits : {1, 2, 4, 8}
        Code width (whole codes per byte).

    Returns
    -------
    float32 (nq, ceil(d * bits / 8), 256)
        ``T[q, p, v] = sum over the codes j packed in byte p of tables[q, j, code_j(v)]``,
        summed in increasing ``j``; codes past ``d`` contribute 0.
    """
    bits = _check_bits(bits, (1, 2, 4, 8))
    tables = np.ascontiguousarray(tables, dtype=np.float32)
    nq, d, width = tables.shape
    if width != 1 << bits:
        raise ValueError(f"tables must be (nq, d, {1 << bits}) for bits={bits}, got {tables.shape}")
    out = np.empty((nq, codes_nbytes(d, bits), 256), dtype=np.float32)
    if bits == 8:
        out[:] = tables
    elif nq and d:
        _byte_luts(tables, bits, out)
    return out


# --------------------------------------------------------------------------- heap helpers
@numba.njit(nogil=True, cache=True, inline="always")
def _offer(hs: np.ndarray, hi: np.ndarray, r: int, k: int, s: float, slot: int) -> None:
    """Offer ``(s, slot)`` to heap row ``r``: enters when better on (score desc, slot asc)."""
    w = hs[r, 0]
    if s > w or (s == w and slot < hi[r, 0]):
        _sift_down(hs, hi, r, k, s, slot)


@numba.njit(nogil=True, cache=True)
def _merge_heaps(phs: np.ndarray, phi: np.ndarray, hs: np.ndarray, hi: np.ndarray) -> None:
    """Push every entry of the per-part heaps ``(parts, nq, k)`` into ``hs``/``hi``."""
    parts, nq, k = phs.shape
    for t in range(parts):
        for r in range(nq):
            for c in range(k):
                if phi[t, r, c] >= 0:
                    _offer(hs, hi, r, k, phs[t, r, c], phi[t, r, c])


# --------------------------------------------------------------------------- LUT scan
@numba.njit(nogil=True, cache=True, inline="always")
def _row_window(
    ranges: np.ndarray, use_ranges: bool, r: int, n: int, part: int, nparts: int
) -> tuple[int, int]:
    """The window ``[lo, hi)`` of query ``r``'s concatenated ranges that ``part`` scans."""
    if use_ranges:
        total = 0
        for t in range(ranges.shape[1]):
            total += max(ranges[r, t, 1] - ranges[r, t, 0], 0)
    else:
        total = n
    return (total * part) // nparts, (total * (part + 1)) // nparts


@numba.njit(nogil=True, cache=True)
def _lut_scan(
    luts: np.ndarray, codes: np.ndarray, q0: int, q1: int, part: int, nparts: int,
    ranges: np.ndarray, bias: np.ndarray, use_ranges: bool, scale: np.ndarray,
    use_scale: bool, xn: np.ndarray, qn: np.ndarray, l2: bool, row_slots: np.ndarray,
    use_slots: bool, mask: np.ndarray, use_mask: bool, hs: np.ndarray, hi: np.ndarray,
) -> None:
    """Scan queries ``q0:q1`` (their ``part``-th share of rows) into heaps ``hs``/``hi``.

    ``luts`` is ``(nq, nbytes * 256)`` (each query's tables flattened). Rows are scored one
    at a time with four interleaved partial sums (the lookups are independent, the adds
    overlap), then offered to the heap.
    """
    n, nb = codes.shape
    k = hs.shape[1]
    nranges = ranges.shape[1] if use_ranges else 1
    two = np.float32(2.0)
    zero = np.float32(0.0)
    main = nb - nb % 4
    for r in range(q0, q1):
        lut = luts[r]
        lo, hi_ = _row_window(ranges, use_ranges, r, n, part, nparts)
        seen = 0
        qr = qn[r] if l2 else zero
        for t in range(nranges):
            if use_ranges:
                start = ranges[r, t, 0]
                stop = ranges[r, t, 1]
                b = bias[r, t]
            else:
                start = 0
                stop = n
                b = zero
            length = max(stop - start, 0)
            # the part of [start, stop) inside this part's window [lo, hi_)
            a = start + max(lo - seen, 0)
            e = start + min(hi_ - seen, length)
            seen += length
            for i in range(a, e):
                slot = row_slots[i] if use_slots else i
                if slot < 0 or (use_mask and not mask[slot]):
                    continue
                row = codes[i]
                s0 = zero
                s1 = zero
                s2 = zero
                s3 = zero
                # o: a running offset (not p << 8) lets LLVM prove every index is
                # non-negative and drop numba's negative-index wraparound code
                o = 0
                for p in range(0, main, 4):
                    s0 += lut[o + row[p]]
                    s1 += lut[o + 256 + row[p + 1]]
                    s2 += lut[o + 512 + row[p + 2]]
                    s3 += lut[o + 768 + row[p + 3]]
                    o += 1024
                if main < nb:
                    s0 += lut[o + row[main]]
                    if main + 1 < nb:
                        s1 += lut[o + 256 + row[main + 1]]
                    if main + 2 < nb:
                        s2 += lut[o + 512 + row[main + 2]]
                acc = (s0 + s1) + (s2 + s3)
                if use_scale:
                    acc = scale[i] * acc
                s = b + acc
                if l2:
                    s = -max((qr + xn[i]) - two * s, zero)
                _offer(hs, hi, r, k, s, slot)


@numba.njit(nogil=True, cache=True)
def _coord_scan(
    tables: np.ndarray, codes: np.ndarray, bits: int, q0: int, q1: int, part: int,
    nparts: int, ranges: np.ndarray, bias: np.ndarray, use_ranges: bool, scale: np.ndarray,
    use_scale: bool, xn: np.ndarray, qn: np.ndarray, l2: bool, row_slots: np.ndarray,
    use_slots: bool, mask: np.ndarray, use_mask: bool, hs: np.ndarray, hi: np.ndarray,
) -> None:
    """:func:`_lut_scan` with per-code tables ``(nq, d * 2**bits)``, any ``bits``.

    Codes are read eight at a time (``bits`` bytes = one word), partial sums ``s0..s3``
    take codes ``j % 4 == 0..3``.
    """
    n, nb = codes.shape
    nq = tables.shape[0]
    width = 1 << bits
    d = tables.shape[1] // width
    k = hs.shape[1]
    mask_c = np.uint64(width - 1)
    ubits = np.uint64(bits)
    nranges = ranges.shape[1] if use_ranges else 1
    two = np.float32(2.0)
    zero = np.float32(0.0)
    full = d // 8
    for r in range(q0, min(q1, nq)):
        tab = tables[r]
        lo, hi_ = _row_window(ranges, use_ranges, r, n, part, nparts)
        seen = 0
        qr = qn[r] if l2 else zero
        for t in range(nranges):
            if use_ranges:
                start = ranges[r, t, 0]
                stop = ranges[r, t, 1]
                b = bias[r, t]
            else:
                start = 0
                stop = n
                b = zero
            length = max(stop - start, 0)
            a = start + max(lo - seen, 0)
            e = start + min(hi_ - seen, length)
            seen += length
            for i in range(a, e):
                slot = row_slots[i] if use_slots else i
                if slot < 0 or (use_mask and not mask[slot]):
                    continue
                row = codes[i]
                s0 = zero
                s1 = zero
                s2 = zero
                s3 = zero
                o = 0
                for g in range(full):
                    w = np.uint64(0)
                    base = g * bits
                    for u in range(bits):
                        w |= np.uint64(row[base + u]) << np.uint64(8 * u)
                    s0 += tab[o + int(w & mask_c)]
                    s1 += tab[o + width + int((w >> ubits) & mask_c)]
                    s2 += tab[o + 2 * width + int((w >> (ubits * np.uint64(2))) & mask_c)]
                    s3 += tab[o + 3 * width + int((w >> (ubits * np.uint64(3))) & mask_c)]
                    s0 += tab[o + 4 * width + int((w >> (ubits * np.uint64(4))) & mask_c)]
                    s1 += tab[o + 5 * width + int((w >> (ubits * np.uint64(5))) & mask_c)]
                    s2 += tab[o + 6 * width + int((w >> (ubits * np.uint64(6))) & mask_c)]
                    s3 += tab[o + 7 * width + int((w >> (ubits * np.uint64(7))) & mask_c)]
                    o += 8 * width
                for j in range(8 * full, d):
                    v = tab[j * width + _code_at(row, j, bits, nb)]
                    m = j & 3
                    if m == 0:
                        s0 += v
                    elif m == 1:
                        s1 += v
                    elif m == 2:
                        s2 += v
                    else:
                        s3 += v
                acc = (s0 + s1) + (s2 + s3)
                if use_scale:
                    acc = scale[i] * acc
                s = b + acc
                if l2:
                    s = -max((qr + xn[i]) - two * s, zero)
                _offer(hs, hi, r, k, s, slot)


class _ScanArgs(NamedTuple):
    """The optional arrays of a scan with their flags (placeholders where absent), in the
    kernels' argument order."""

    ranges: npt.NDArray[np.int64]
    bias: FloatArray
    use_ranges: bool
    scale: FloatArray
    use_scale: bool
    xn: FloatArray
    qn: FloatArray
    l2: bool
    row_slots: SlotsArray
    use_slots: bool
    mask: npt.NDArray[np.bool_]
    use_mask: bool


def _scan_args(
    nq: int, n: int, *, scale: FloatArray | None, sq_norms: FloatArray | None,
    q_sq_norms: FloatArray | None, ranges: npt.NDArray[np.int64] | None,
    bias: FloatArray | None, row_slots: SlotsArray | None,
    mask: npt.NDArray[np.bool_] | None,
) -> _ScanArgs:
    """Validate and normalise the optional arrays of a scan."""
    f1 = np.zeros(1, dtype=np.float32)
    use_ranges = ranges is not None
    if ranges is not None:
        rg = np.ascontiguousarray(ranges, dtype=np.int64)
        if rg.ndim != 3 or rg.shape[0] != nq or rg.shape[2] != 2:
            raise ValueError(f"ranges must be int64 ({nq}, R, 2), got shape {rg.shape}")
        if rg.size and (rg.min() < 0 or rg.max() > n):
            raise ValueError(f"ranges must lie in [0, {n}]")
        bs = (np.zeros(rg.shape[:2], dtype=np.float32) if bias is None
              else np.ascontiguousarray(bias, dtype=np.float32))
        if bs.shape != rg.shape[:2]:
            raise ValueError(f"bias must be ({nq}, {rg.shape[1]}), got shape {bs.shape}")
    else:
        if bias is not None:
            raise ValueError("bias needs ranges")
        rg = np.zeros((1, 1, 2), dtype=np.int64)
        bs = np.zeros((1, 1), dtype=np.float32)
    l2 = sq_norms is not None
    if l2 and q_sq_norms is None:
        raise ValueError("q_sq_norms is required with sq_norms (l2)")
    sc = f1 if scale is None else np.ascontiguousarray(scale, dtype=np.float32)
    xn = f1 if sq_norms is None else np.ascontiguousarray(sq_norms, dtype=np.float32)
    qn = (f1 if q_sq_norms is None or not l2
          else np.ascontiguousarray(q_sq_norms, dtype=np.float32))
    rs: SlotsArray
    if row_slots is None:
        rs = np.zeros(1, dtype=np.int64)
    elif row_slots.dtype == np.int32:
        rs = np.ascontiguousarray(row_slots, dtype=np.int32)
    else:
        rs = np.ascontiguousarray(row_slots, dtype=np.int64)
    mk = np.ones(1, dtype=np.bool_) if mask is None else np.ascontiguousarray(mask, np.bool_)
    return _ScanArgs(rg, bs, use_ranges, sc, scale is not None, xn, qn, l2, rs,
                     row_slots is not None, mk, mask is not None)


def _run_scan(
    kernel: Callable[..., None], head: tuple[object, ...], args: _ScanArgs,
    nq: int, rows: int, nbytes: int, hs: FloatArray, hi: npt.NDArray[np.int64],
) -> None:
    """Run ``kernel(*head, q0, q1, part, nparts, *args, hs, hi)`` on the shared pool.

    One thread below ``_MIN_LOOKUPS_PER_THREAD`` lookups; queries split across threads when
    there are at least two per thread; otherwise each thread scans a share of every query's
    rows into its own heaps, merged at the end.
    """
    threads, by_rows = split_plan(nq, rows * max(nbytes, 1), _MIN_LOOKUPS_PER_THREAD)
    if not by_rows:
        run_chunks(lambda a, b: kernel(*head, a, b, 0, 1, *args, hs, hi), nq,
                   min(threads, nq))
    else:
        k = hs.shape[1]
        phs = np.full((threads, nq, k), -np.inf, dtype=np.float32)
        phi = np.full((threads, nq, k), -1, dtype=np.int64)

        def part(a: int, b: int) -> None:
            for t in range(a, b):
                kernel(*head, 0, nq, t, threads, *args, phs[t], phi[t])

        map_chunks(part, threads, threads)
        _merge_heaps(phs, phi, hs, hi)


def _check_heaps(hs: FloatArray, hi: npt.NDArray[np.int64], nq: int) -> None:
    if hs.shape != hi.shape or hs.ndim != 2 or hs.shape[0] != nq or hs.shape[1] < 1:
        raise ValueError(f"heaps must be ({nq}, k) from init_heaps, got {hs.shape}/{hi.shape}")
    if hs.dtype != np.float32 or hi.dtype != np.int64:
        raise ValueError("heaps must be float32 scores and int64 slots (init_heaps)")


def lut_topk(
    luts: FloatArray,
    codes: npt.NDArray[np.uint8],
    hs: FloatArray,
    hi: npt.NDArray[np.int64],
    *,
    scale: FloatArray | None = None,
    sq_norms: FloatArray | None = None,
    q_sq_norms: FloatArray | None = None,
    ranges: npt.NDArray[np.int64] | None = None,
    bias: FloatArray | None = None,
    row_slots: SlotsArray | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
) -> None:
    """Push the lookup-table scores of coded rows into top-k heaps.

    For query ``r`` and each row ``i`` of its ranges::

        raw   = bias[r, t] + scale[i] * sum_p luts[r, p, codes[i, p]]
        score = raw                                          (inner product)
              = -max(q_sq_norms[r] + sq_norms[i] - 2 raw, 0)   (with sq_norms: l2)

    and ``(score, row_slots[i])`` is offered to heap ``r``. All arithmetic is float32; the
    sum over bytes uses four interleaved partial sums in a fixed order.

    Parameters
    ----------
    luts : float32 (nq, nbytes, 256)
        :func:`byte_luts` of each query.
    codes : uint8 (N, nbytes)
        Packed rows.
    hs, hi : float32 / int64 (nq, k)
        Heaps from :func:`~.topk.init_heaps` (possibly already holding entries); updated in
        place. Finish with :func:`~.topk.finalize_heaps`.
    scale : float32 (N,), optional
        Per-row factor (default 1).
    sq_norms : float32 (N,), optional
        ``|x_i|^2``; switches to the ``l2`` score (needs ``q_sq_norms``).
    q_sq_norms : float32 (nq,), optional
        ``|q_r|^2``.
    ranges : int64 (nq, R, 2), optional
        ``[start, stop)`` row ranges per query (empty ranges allowed); default one range
        ``[0, N)`` with bias 0.
    bias : float32 (nq, R), optional
        Added to every raw score of a range (default 0).
    row_slots : int64 or int32 (N,), optional
        Slot reported for each row (default the row index); ``-1`` marks a tombstone,
        never scored. int32 slots are scanned without a copy.
    mask : bool (M,), optional
        Over slots: rows whose slot is not allowed are skipped inside the scan.

    Notes
    -----
    Ties are broken by the lower slot whatever the scan order. Threads
    (:func:`vecindex_core.get_num_threads`): queries are split across threads when there
    are at least two per thread, otherwise every thread scans a share of each query's rows
    into its own heaps, merged at the end; small scans run on the calling thread. The GIL
    is released. Results do not depend on the thread count.
    """
    luts = np.ascontiguousarray(luts, dtype=np.float32)
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    nq = luts.shape[0]
    if luts.ndim != 3 or luts.shape[2] != 256:
        raise ValueError(f"luts must be float32 (nq, nbytes, 256), got shape {luts.shape}")
    if codes.ndim != 2 or codes.shape[1] != luts.shape[1]:
        raise ValueError(f"codes must be uint8 (N, {luts.shape[1]}), got shape {codes.shape}")
    _check_heaps(hs, hi, nq)
    n = codes.shape[0]
    args = _scan_args(nq, n, scale=scale, sq_norms=sq_norms, q_sq_norms=q_sq_norms,
                      ranges=ranges, bias=bias, row_slots=row_slots, mask=mask)
    if nq == 0:
        return
    rows = _scanned_rows(nq, n, ranges)
    flat = luts.reshape(nq, -1)
    _run_scan(_lut_scan, (flat, codes), args, nq, rows, codes.shape[1], hs, hi)


def coord_lut_topk(
    tables: FloatArray,
    codes: npt.NDArray[np.uint8],
    bits: int,
    hs: FloatArray,
    hi: npt.NDArray[np.int64],
    *,
    scale: FloatArray | None = None,
    sq_norms: FloatArray | None = None,
    q_sq_norms: FloatArray | None = None,
    ranges: npt.NDArray[np.int64] | None = None,
    bias: FloatArray | None = None,
    row_slots: SlotsArray | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
) -> None:
    """:func:`lut_topk` with per-code tables, for codes of any width (3-bit codes).

    ``raw = bias[r, t] + scale[i] * sum_j tables[r, j, code_j(i)]``; every other argument and
    rule as :func:`lut_topk`. One lookup per code (``d`` per row) instead of one per byte,
    so for ``bits`` in ``{1, 2, 4}`` :func:`lut_topk` with :func:`byte_luts` is faster.

    Parameters
    ----------
    tables : float32 (nq, d, 2**bits)
    codes : uint8 (N, ceil(d * bits / 8))
        :func:`pack_codes` rows.
    bits : int
        ``1..8``.
    """
    bits = _check_bits(bits)
    tables = np.ascontiguousarray(tables, dtype=np.float32)
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    nq = tables.shape[0]
    if tables.ndim != 3 or tables.shape[2] != 1 << bits:
        raise ValueError(f"tables must be float32 (nq, d, {1 << bits}), got {tables.shape}")
    d = tables.shape[1]
    if codes.ndim != 2 or codes.shape[1] != codes_nbytes(d, bits):
        raise ValueError(
            f"codes must be uint8 (N, {codes_nbytes(d, bits)}), got shape {codes.shape}")
    _check_heaps(hs, hi, nq)
    n = codes.shape[0]
    args = _scan_args(nq, n, scale=scale, sq_norms=sq_norms, q_sq_norms=q_sq_norms,
                      ranges=ranges, bias=bias, row_slots=row_slots, mask=mask)
    if nq == 0:
        return
    rows = _scanned_rows(nq, n, ranges)
    flat = tables.reshape(nq, -1)
    _run_scan(_coord_scan, (flat, codes, bits), args, nq, rows, d, hs, hi)


def _scanned_rows(nq: int, n: int, ranges: npt.NDArray[np.int64] | None) -> int:
    if ranges is None:
        return nq * n
    r = np.asarray(ranges)
    return int(np.maximum(r[..., 1] - r[..., 0], 0).sum())


# --------------------------------------------------------------------------- decoded (BLAS)
@numba.njit(nogil=True, cache=True)
def _scan_tile(
    tile: np.ndarray, r0: int, r1: int, qoff: int, a: int, scale: np.ndarray,
    use_scale: bool, xn: np.ndarray, qn: np.ndarray, l2: bool, row_slots: np.ndarray,
    use_slots: bool, mask: np.ndarray, use_mask: bool, hs: np.ndarray, hi: np.ndarray,
) -> None:
    """Offer tile rows ``r0:r1`` (queries ``qoff + r``; columns are rows ``a + j``).

    Scores of a chunk of ``_SCAN_CHUNK`` columns go to a buffer with their max; a chunk whose
    max is below the heap's worst is skipped, which is most chunks once the heap is warm.
    Disallowed columns score ``-inf`` (never enter).
    """
    k = hs.shape[1]
    n = tile.shape[1]
    two = np.float32(2.0)
    zero = np.float32(0.0)
    ninf = np.float32(-np.inf)
    buf = np.empty(_SCAN_CHUNK, dtype=np.float32)
    for r in range(r0, r1):
        q = qoff + r
        qr = qn[q] if l2 else zero
        for c0 in range(0, n, _SCAN_CHUNK):
            c1 = min(c0 + _SCAN_CHUNK, n)
            best = ninf
            for j in range(c0, c1):
                s = tile[r, j]
                if use_scale:
                    s = scale[a + j] * s
                if l2:
                    s = -max((qr + xn[a + j]) - two * s, zero)
                buf[j - c0] = s
                best = max(best, s)
            if best < hs[q, 0]:
                continue
            for j in range(c0, c1):
                i = a + j
                slot = row_slots[i] if use_slots else i
                if slot < 0 or (use_mask and not mask[slot]):
                    continue
                _offer(hs, hi, q, k, buf[j - c0], slot)


def decoded_topk(
    queries: FloatArray,
    decode: Callable[[int, int], FloatArray],
    n: int,
    k: int,
    *,
    scale: FloatArray | None = None,
    sq_norms: FloatArray | None = None,
    q_sq_norms: FloatArray | None = None,
    row_slots: SlotsArray | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
    block: int = DECODE_BLOCK,
) -> Result:
    """Top-k by BLAS over rows decoded block by block (the large-batch route).

    Rows ``[a, b)`` are decoded by ``decode(a, b)`` (float32 ``(b - a, dq)``; the array may
    be reused by the next call: each block is consumed before the next is requested) in
    blocks of ``block`` rows; a tile is ``queries @ block.T``, and the score rule and tie
    rule are :func:`lut_topk`'s (``raw = scale[i] * tile``; no ranges or bias).

    Parameters
    ----------
    queries : float32 (nq, dq)
    decode : callable ``(a, b) -> float32 (b - a, dq)``
    n : int
        Rows.
    k : int
        Heap width.
    scale, sq_norms, q_sq_norms, row_slots, mask
        As :func:`lut_topk`.
    block : int
        Rows per decoded block.

    Returns
    -------
    scores, slots, counts
        As :func:`~.topk.finalize_heaps`. Memory: one decoded block plus one
        ``QUERY_BLOCK x block`` tile. BLAS threads follow the BLAS library's setting; the
        tile scan splits queries across :func:`vecindex_core.get_num_threads` threads.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    nq = queries.shape[0]
    hs, hi = init_heaps(nq, k)
    args = _scan_args(nq, n, scale=scale, sq_norms=sq_norms, q_sq_norms=q_sq_norms,
                      ranges=None, bias=None, row_slots=row_slots, mask=mask)
    sc, use_scale, xn, qn, l2 = args.scale, args.use_scale, args.xn, args.qn, args.l2
    rs, use_slots, mk, use_mask = args.row_slots, args.use_slots, args.mask, args.use_mask
    nthreads = get_num_threads()
    qb_max = min(QUERY_BLOCK, nq)
    tile_buf = np.empty(qb_max * min(block, max(n, 1)), dtype=np.float32)
    for a in range(0, n, block):
        b = min(a + block, n)
        x = decode(a, b)
        for q0 in range(0, nq, QUERY_BLOCK):
            q1 = min(q0 + QUERY_BLOCK, nq)
            tile = tile_buf[: (q1 - q0) * (b - a)].reshape(q1 - q0, b - a)
            np.matmul(queries[q0:q1], x.T, out=tile)
            rows = q1 - q0
            if nthreads <= 1 or rows < 2 * nthreads:
                _scan_tile(tile, 0, rows, q0, a, sc, use_scale, xn, qn, l2, rs, use_slots,
                           mk, use_mask, hs, hi)
            else:

                def scan(r0: int, r1: int, tile: FloatArray = tile, q0: int = q0,
                         a: int = a) -> None:
                    _scan_tile(tile, r0, r1, q0, a, sc, use_scale, xn, qn, l2, rs, use_slots,
                               mk, use_mask, hs, hi)

                map_chunks(scan, rows, nthreads)
    return finalize_heaps(hs, hi)


# --------------------------------------------------------------------------- dispatch
#: Measured costs on the reference machine (AMD EPYC Zen 3, AVX2, one thread; 20,000 x 384
#: codes, ``benchmarks/turboquant.py`` section "dispatch"), in ns per row and query:
#: a byte-table lookup of :func:`lut_topk` (0.6-0.9 ns measured: ~130 ns a row at 192 bytes),
#: a code lookup of :func:`coord_lut_topk` (bits extracted from the stream: ~1.05 ns), and
#: per decoded coordinate of :func:`decoded_topk` a part paid once per row for the whole
#: batch (decoding plus a matrix-vector-speed product: ~330 ns a 384-dim row) and a part
#: paid per query at full GEMM speed (~11.5 ns a 384-dim row, ~70 GFLOP/s).
LOOKUP_NS = 0.75
COORD_LOOKUP_NS = 1.05
DECODE_NS = 0.86
GEMM_NS = 0.03


def prefer_decoded(nq: int, lookups_per_row: int, dq: int, *,
                   lookup_ns: float = LOOKUP_NS) -> bool:
    """Whether :func:`decoded_topk` is expected to beat the LUT scan for ``nq`` queries.

    Cost per row and query: LUT ``lookups_per_row * lookup_ns``; decoded
    ``dq * (DECODE_NS / nq + GEMM_NS)``. With the measured constants (384 dims) the BLAS
    route wins from about 16 queries for 1-bit codes (48 bytes a row), 6 for 2-bit (96),
    3 for 4-bit (192), 2 for 8-bit (384), and from one query for 3-bit codes (per-code
    tables, ``lookup_ns=COORD_LOOKUP_NS``); measured crossovers were 16-32, 8-16, 4, 2 and 1
    (``benchmarks/results/turboquant.md``). Near a crossover both routes cost within ~15%.

    Parameters
    ----------
    nq : int
        Queries in the batch.
    lookups_per_row : int
        Table lookups per row and query of the LUT route (bytes for :func:`lut_topk`,
        codes for :func:`coord_lut_topk`).
    dq : int
        Width of a decoded row.
    lookup_ns : float
        Cost of one lookup: ``LOOKUP_NS`` (byte tables) or ``COORD_LOOKUP_NS``.
    """
    if nq <= 0:
        return False
    return dq * (DECODE_NS / nq + GEMM_NS) < lookups_per_row * lookup_ns
