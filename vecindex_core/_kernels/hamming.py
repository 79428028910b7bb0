"""Packed binary codes: bit packing, fused XOR + popcount + top-k, and exact rescoring.

Codes are rows of little-endian uint64 words: bit ``j`` of a group lives in word
``j // 64`` of that group, at bit ``j % 64``; unused high bits are zero, so the Hamming
distance of two codes is the popcount of their XOR summed over words whatever the layout.

Selection is exact and deterministic: the ``k`` rows with the smallest distance, ties
broken by the lower slot. Stored codes are kept word-major (``codes_t[t, row]``), so the
distances of a block of rows are computed one word at a time in loops that vectorise; a
running threshold over a per-distance count then rejects almost every row with one
comparison (see :func:`_hamming_rows`). Memory is one block of distances and ``2 k + 512``
held rows per thread, whatever the batch or index size.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import numpy.typing as npt
from numba import types
from numba.extending import intrinsic

from .. import _native
from .._threads import get_num_threads, map_chunks
from .topk import _sift_down, finalize_heaps, init_heaps

__all__ = [
    "exact_score",
    "hamming_topk",
    "hamming_topk_numba",
    "pack_bits",
    "popcount64",
    "push",
    "rescore_topk",
    "words_for",
]

#: Below this many query x row pairs, a batch runs on one thread (the hand-off costs more).
_MIN_PAIRS_PER_THREAD = 1 << 20


def _ctpop(typingctx, x):  # type: ignore[no-untyped-def]  # numba intrinsic signature
    if not isinstance(x, types.Integer):
        return None
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.ctpop(args[0])

    return sig, codegen


#: Population count of a uint64 inside numba code (LLVM ``ctpop``: one ``popcnt``, or a
#: vectorised byte-shuffle count in loops, where the CPU has them).
popcount64: Any = intrinsic(_ctpop)


def words_for(bits: int) -> int:
    """Number of uint64 words that hold ``bits`` bits."""
    return -(-bits // 64)


def pack_bits(bits: npt.NDArray[np.bool_], groups: int = 1) -> npt.NDArray[np.uint64]:
    """Pack bool rows into little-endian uint64 words.

    Parameters
    ----------
    bits : bool ndarray, shape (n, groups * b)
        Bit ``j`` of group ``g`` is ``bits[:, g * b + j]``.
    groups : int
        Number of equal groups; each starts on a word boundary (``words_for(b)`` words).

    Returns
    -------
    ndarray of uint64, shape (n, groups * words_for(b))
    """
    n, total = bits.shape
    b = total // groups
    w = words_for(b)
    if groups == 1 and b % 64 == 0:  # no padding needed: pack in place
        packed = np.packbits(bits, axis=1, bitorder="little")
        return np.ascontiguousarray(packed).view("<u8").astype(np.uint64, copy=False)
    padded = np.zeros((n, groups, w * 64), dtype=np.bool_)
    padded[:, :, :b] = bits.reshape(n, groups, b)
    packed = np.packbits(padded, axis=2, bitorder="little")  # (n, groups, 8 w) bytes
    return np.ascontiguousarray(packed).view("<u8").reshape(n, groups * w).astype(np.uint64)


#: Rows per block of the Hamming scan: a block's distances are computed word by word (each
#: loop vectorises over contiguous words) before any selection work.
_BLOCK = 512


@numba.njit(nogil=True, cache=True)
def _compact(bd: np.ndarray, bs: np.ndarray, held: int, thr: int, cnt: np.ndarray,
             total: int, k: int) -> int:
    """Keep, in slot order, the held rows below ``thr`` and the first rows at ``thr`` that
    complete ``k``; returns how many were kept (``cnt[thr]`` is updated)."""
    at_thr = k - (total - cnt[thr])
    pos = 0
    kept_at_thr = 0
    for c in range(held):
        d = bd[c]
        if d < thr or (d == thr and kept_at_thr < at_thr):
            if d == thr:
                kept_at_thr += 1
            bd[pos] = d
            bs[pos] = bs[c]
            pos += 1
    cnt[thr] = kept_at_thr
    return pos


@numba.njit(nogil=True, cache=True)
def _hamming_rows(
    qcodes: np.ndarray, codes_t: np.ndarray, n: int, k: int, max_bits: int, mask: np.ndarray,
    use_mask: bool, q0: int, q1: int, out_d: np.ndarray, out_s: np.ndarray,
) -> None:
    """Top-k rows of queries ``q0:q1`` with a running threshold.

    Distances of a block of rows are computed first (vectorised); a block whose smallest
    distance cannot enter is skipped after one min. ``cnt[d]`` counts accepted rows at
    distance ``d``, and the threshold ``thr`` drops while the rows strictly below it already
    number ``k``. A row enters when it is below ``thr``, or while fewer than ``k`` rows are
    held (a row tied at ``thr`` once ``k`` are held loses: its slot is higher). Accepted rows
    are kept in slot order, so the final pick is the rows below ``thr`` and then the first
    rows at ``thr``.
    """
    w = codes_t.shape[0]
    far = np.int32(max_bits + 1)
    dist = np.empty(_BLOCK, dtype=np.int32)
    cap = 2 * k + _BLOCK
    bd = np.empty(cap, dtype=np.int32)
    bs = np.empty(cap, dtype=np.int64)
    cnt = np.zeros(max_bits + 2, dtype=np.int64)
    for r in range(q0, q1):
        cnt[:] = 0
        thr = max_bits + 1
        total = 0
        held = 0
        for j0 in range(0, n, _BLOCK):
            j1 = min(j0 + _BLOCK, n)
            nb = j1 - j0
            # 1-D row slices: with 2-D indexing the loops do not vectorise
            a = qcodes[r, 0]
            row = codes_t[0, j0:j1]
            for j in range(nb):
                dist[j] = popcount64(a ^ row[j])
            for t in range(1, w):
                a = qcodes[r, t]
                row = codes_t[t, j0:j1]
                for j in range(nb):
                    dist[j] += popcount64(a ^ row[j])
            if use_mask:
                for j in range(nb):
                    if not mask[j0 + j]:
                        dist[j] = far
            low = dist[0]
            for j in range(nb):
                low = min(low, dist[j])
            if low >= thr and total >= k:
                continue
            for j in range(nb):
                d = dist[j]
                if d < thr or (total < k and d < far):
                    if held == cap:  # drop rows that can no longer make the top k
                        held = _compact(bd, bs, held, thr, cnt, total, k)
                        total = held
                    bd[held] = d
                    bs[held] = j0 + j
                    held += 1
                    cnt[d] += 1
                    total += 1
                    while total - cnt[thr] >= k:
                        total -= cnt[thr]
                        thr -= 1
        pos = _compact(bd, bs, held, thr, cnt, total, k)
        out_d[r, :pos] = bd[:pos]
        out_s[r, :pos] = bs[:pos]
        # picked in slot order: a stable sort by distance keeps ties in slot order
        order = np.argsort(out_d[r, :pos], kind="mergesort")
        sd = out_d[r, :pos][order]
        ss = out_s[r, :pos][order]
        out_d[r, :pos] = sd
        out_s[r, :pos] = ss
        for p in range(pos, k):
            out_d[r, p] = -1
            out_s[r, p] = -1


def hamming_topk(
    qcodes: npt.NDArray[np.uint64],
    codes_t: npt.NDArray[np.uint64],
    k: int,
    *,
    max_bits: int,
    mask: npt.NDArray[np.bool_] | None = None,
    n: int | None = None,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """The ``k`` nearest codes by Hamming distance for every query code.

    Runs the native kernel (:func:`vecindex_core._native.hamming_topk`) when it is built and
    not disabled by ``VECINDEX_NATIVE=off``, else :func:`hamming_topk_numba`; both give the
    same results bit for bit. Arguments and results as :func:`hamming_topk_numba`.
    """
    isa = _native.active_isa()
    if isa is not None:
        return _native.hamming_topk(qcodes, codes_t, k, max_bits=max_bits, mask=mask, n=n,
                                    isa=isa)
    return hamming_topk_numba(qcodes, codes_t, k, max_bits=max_bits, mask=mask, n=n)


def hamming_topk_numba(
    qcodes: npt.NDArray[np.uint64],
    codes_t: npt.NDArray[np.uint64],
    k: int,
    *,
    max_bits: int,
    mask: npt.NDArray[np.bool_] | None = None,
    n: int | None = None,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """The ``k`` nearest codes by Hamming distance for every query code (numba; the
    reference the native kernel is tested against).

    Parameters
    ----------
    qcodes : uint64 (nq, w)
    codes_t : uint64 (w, >= n)
        Stored codes word-major (word ``t`` of every row contiguous), as the hashing indexes
        keep them: pass the whole C-contiguous buffer (a column slice is not contiguous and
        would be copied) and ``n``.
    k : int
        ``1 <= k``; rows with fewer allowed codes are padded.
    max_bits : int
        Largest possible distance (the number of code bits), at most 65534.
    mask : bool (n,), optional
        Only rows where ``mask`` is true are candidates; applied inside the scan.
    n : int, optional
        Rows to scan (the first ``n`` columns); default all.

    Returns
    -------
    dist : int32 (nq, k)
        Hamming distances, ascending; ``-1`` where padded.
    slots : int64 (nq, k)
        Rows, ties by the lower slot; ``-1`` where padded.
    """
    nq = qcodes.shape[0]
    n = codes_t.shape[1] if n is None else n
    codes_t = np.ascontiguousarray(codes_t)
    out_d = np.empty((nq, k), dtype=np.int32)
    out_s = np.empty((nq, k), dtype=np.int64)
    use_mask = mask is not None
    m = mask if mask is not None else np.ones(1, dtype=np.bool_)
    parts = max(1, min(get_num_threads(), nq, (nq * n) // _MIN_PAIRS_PER_THREAD))
    if parts == 1:
        _hamming_rows(qcodes, codes_t, n, k, max_bits, m, use_mask, 0, nq, out_d, out_s)
    else:
        map_chunks(
            lambda a, b: _hamming_rows(qcodes, codes_t, n, k, max_bits, m, use_mask, a, b,
                                       out_d, out_s),
            nq, parts,
        )
    return out_d, out_s


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
def exact_score(qr: np.ndarray, qn: float, xj: np.ndarray, l2: bool) -> float:
    """``qr . xj``, or with ``l2`` ``-max(qn + |xj|^2 - 2 qr . xj, 0)`` (``qn = |qr|^2``)."""
    s = np.float32(0.0)
    xn = np.float32(0.0)
    for t in range(xj.shape[0]):
        s += qr[t] * xj[t]
        xn += xj[t] * xj[t]
    if l2:
        s = -max((qn + xn) - np.float32(2.0) * s, np.float32(0.0))
    return float(s)  # exact: a float32 widened, stored back as float32 by the heap


@numba.njit(nogil=True, cache=True)
def push(hs: np.ndarray, hi: np.ndarray, r: int, s: float, j: int) -> None:
    """Offer ``(s, j)`` to heap row ``r``; rows may come in any slot order (ties: lower slot)."""
    if s > hs[r, 0] or (s == hs[r, 0] and hi[r, 0] > j):
        _sift_down(hs, hi, r, hs.shape[1], s, j)


@numba.njit(nogil=True, cache=True)
def _rescore_rows(
    q: np.ndarray, x: np.ndarray, cand: np.ndarray, l2: bool, q0: int, q1: int,
    hs: np.ndarray, hi: np.ndarray,
) -> None:
    for r in range(q0, q1):
        qr = q[r]
        qn = exact_score(qr, 0.0, qr, False)
        for c in range(cand.shape[1]):
            j = cand[r, c]
            if j >= 0:
                push(hs, hi, r, exact_score(qr, qn, x[j], l2), j)


def rescore_topk(
    q: npt.NDArray[np.float32],
    x: npt.NDArray[np.float32],
    cand: npt.NDArray[np.int64],
    k: int,
    *,
    l2: bool,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Exact top-``k`` of each query among its candidate rows.

    Parameters
    ----------
    q : float32 (nq, d)
    x : float32 (n, d)
        Stored vectors (already metric-prepared).
    cand : int64 (nq, c)
        Candidate rows of each query, ``-1`` for none; a row may appear once only.
    k : int
    l2 : bool
        Score by ``-max(|q|^2 + |x|^2 - 2 q.x, 0)`` instead of ``q.x``.

    Returns
    -------
    scores, slots, counts
        As :func:`~vecindex_core._kernels.topk.finalize_heaps`: best first, ties by the
        lower slot, ``-1``/``-inf`` padding.
    """
    nq = q.shape[0]
    hs, hi = init_heaps(nq, k)
    parts = max(1, min(get_num_threads(), nq, (nq * cand.shape[1] * x.shape[1]) >> 20))
    if parts == 1:
        _rescore_rows(q, x, cand, l2, 0, nq, hs, hi)
    else:
        map_chunks(lambda a, b: _rescore_rows(q, x, cand, l2, a, b, hs, hi), nq, parts)
    return finalize_heaps(hs, hi)
