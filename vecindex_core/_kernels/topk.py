"""Exact top-k over dense scores: blocked BLAS matmul plus a fused heap selection.

Scores follow the library rule (higher is better). Ties are broken by the lower slot, so a
result is a pure function of the data, whatever the block sizes or thread count.

The heap state of one query row is ``(hs[r], hi[r])``: a binary min-heap of ``k`` entries
ordered by "worse first" (lower score, then higher slot); it starts full of padding
(``-inf``, ``-1``). Slots arrive in increasing order, so a candidate enters only when its
score is strictly above the heap's worst.

The scan of BLAS tiles into the heaps runs the native kernel
(:func:`vecindex_core._native.topk.scan_tile`, SIMD threshold test) when it is built and
enabled (:func:`vecindex_core._native.active_isa` is not None), else the numba
:func:`_update_rows`, the reference: both leave the same heaps bit for bit. Small batches
(fused scoring) and the final sort are numba/numpy on every path.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
import numpy.typing as npt

from .. import _native
from .._native.topk import scan_tile as _native_scan_tile
from .._threads import get_num_threads, map_chunks

__all__ = ["SMALL_BATCH", "dense_topk", "finalize_heaps", "init_heaps", "sq_norms"]

#: Query and database block sizes of the blocked matmul; a tile is at most QB*DB floats.
QUERY_BLOCK = 512
DB_BLOCK = 2048
#: Batches smaller than this use the fused single-pass kernel instead of BLAS (measured:
#: BLAS gemv/gemm on a handful of rows reads the data at a third of the fused speed).
SMALL_BATCH = 8
#: Rows scored per step of the fused kernel (one float32 buffer of this size per query).
_FUSED_CHUNK = 256
#: Below this many rows per thread, a small batch is scanned by one thread (measured: the
#: hand-off costs more than it saves on a few thousand rows).
_MIN_ROWS_PER_THREAD = 16384
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
#: Columns per step of the tile scan (one vectorised max decides whether to look closer).
_SCAN_CHUNK = 64


@numba.njit(nogil=True, cache=True, inline="always")
def _sift_down(hs: np.ndarray, hi: np.ndarray, r: int, k: int, s: float, i: int) -> None:
    """Replace the root of heap row ``r`` by ``(s, i)`` and restore the heap order."""
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= k:
            break
        right = child + 1
        if right < k and (
            hs[r, right] < hs[r, child]
            or (hs[r, right] == hs[r, child] and hi[r, right] > hi[r, child])
        ):
            child = right
        if hs[r, child] < s or (hs[r, child] == s and hi[r, child] > i):
            hs[r, pos] = hs[r, child]
            hi[r, pos] = hi[r, child]
            pos = child
        else:
            break
    hs[r, pos] = s
    hi[r, pos] = i


@numba.njit(nogil=True, cache=True, fastmath={"nnan", "nsz"})
def _chunk_scores(
    tile: np.ndarray, r: int, c0: int, c1: int, offset: int, qn: np.ndarray, xn: np.ndarray,
    l2: bool, buf: np.ndarray,
) -> np.float32:
    """Write the scores of tile row ``r``, columns ``c0:c1``, into ``buf``; return their max.

    No reassociation or contraction is allowed here, so each score is bit-identical to the
    numpy expression; the flags only let the max reduction vectorise.
    """
    two = np.float32(2.0)
    zero = np.float32(0.0)
    best = np.float32(-np.inf)
    for j in range(c0, c1):
        s = tile[r, j]
        if l2:
            s = -max((qn[r] + xn[offset + j]) - two * s, zero)
        buf[j - c0] = s
        best = max(best, s)
    return best


@numba.njit(nogil=True, cache=True)
def _update_rows(
    tile: np.ndarray,
    r0: int,
    r1: int,
    offset: int,
    mask: np.ndarray,
    use_mask: bool,
    qn: np.ndarray,
    xn: np.ndarray,
    l2: bool,
    hs: np.ndarray,
    hi: np.ndarray,
) -> None:
    """Push tile rows ``r0:r1`` (columns are slots ``offset + j``) into their heaps.

    With ``l2`` the tile holds inner products and each score is computed here as
    ``-max(qn[r] + xn[j] - 2 * ip, 0)`` in float32, so no extra pass over the tile is needed.
    Columns go in chunks of ``_SCAN_CHUNK``: a chunk whose best score does not beat the heap's
    worst is skipped after one vectorised max, which is most chunks once the heap is warm.
    """
    k = hs.shape[1]
    n = tile.shape[1]
    buf = np.empty(_SCAN_CHUNK, dtype=np.float32)
    for r in range(r0, r1):
        thr = hs[r, 0]
        for c0 in range(0, n, _SCAN_CHUNK):
            c1 = min(c0 + _SCAN_CHUNK, n)
            if _chunk_scores(tile, r, c0, c1, offset, qn, xn, l2, buf) <= thr:
                continue
            for j in range(c0, c1):
                s = buf[j - c0]
                if s > thr and (not use_mask or mask[offset + j]):
                    _sift_down(hs, hi, r, k, s, offset + j)
                    thr = hs[r, 0]


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def _fused_rows(
    q: np.ndarray,
    x: np.ndarray,
    j0: int,
    j1: int,
    mask: np.ndarray,
    use_mask: bool,
    qn: np.ndarray,
    xn: np.ndarray,
    l2: bool,
    hs: np.ndarray,
    hi: np.ndarray,
) -> None:
    """Score data rows ``j0:j1`` against every query and push them into the heaps.

    One pass over the data for the whole (small) batch: a chunk of dot products is computed
    into a buffer with a vectorised float32 reduction, then pushed. Masked rows are skipped
    before any arithmetic.
    """
    k = hs.shape[1]
    d = x.shape[1]
    two = np.float32(2.0)
    zero = np.float32(0.0)
    buf = np.empty(_FUSED_CHUNK, dtype=np.float32)
    for c in range(j0, j1, _FUSED_CHUNK):
        c1 = min(c + _FUSED_CHUNK, j1)
        for r in range(q.shape[0]):
            qr = q[r]
            for j in range(c, c1):
                if use_mask and not mask[j]:
                    buf[j - c] = -np.inf
                    continue
                xj = x[j]
                s = np.float32(0.0)
                for t in range(d):
                    s += qr[t] * xj[t]
                if l2:
                    s = -max((qn[r] + xn[j]) - two * s, zero)
                buf[j - c] = s
            thr = hs[r, 0]
            for j in range(c, c1):
                if buf[j - c] > thr:
                    _sift_down(hs, hi, r, k, buf[j - c], j)
                    thr = hs[r, 0]


def init_heaps(nq: int, k: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Empty heaps for ``nq`` queries: scores ``-inf`` and slots ``-1``."""
    hs, hi = np.empty((nq, k), dtype=np.float32), np.empty((nq, k), dtype=np.int64)
    hs.fill(-np.inf)  # empty + fill: ~0.45 us an array, np.full ~1.2 (every search calls it)
    hi.fill(-1)
    return hs, hi


def finalize_heaps(
    hs: npt.NDArray[np.float32], hi: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Sort heap rows best first (score descending, slot ascending); padding goes last.

    Returns
    -------
    scores : float32 (nq, k)
    slots : int64 (nq, k), ``-1`` where padded
    counts : int64 (nq,)
    """
    if hs.shape[1] <= _INSERTION_K and hs.dtype == np.float32 and hi.dtype == np.int64:
        # small heaps (every search's final step): one numba pass instead of ~25 us of numpy
        # calls a batch; the same order, so the same result
        scores, slots = np.empty_like(hs), np.empty_like(hi)
        counts = np.empty(hs.shape[0], dtype=np.int64)
        _select(hs, hi, scores, slots, counts)  # all k kept: the rows sorted
        return scores, slots, counts
    padded = hi < 0
    order = np.lexsort((np.where(padded, np.iinfo(np.int64).max, hi), -hs), axis=-1)
    scores = np.take_along_axis(hs, order, axis=1)
    slots = np.take_along_axis(hi, order, axis=1)
    counts = np.count_nonzero(~padded, axis=1).astype(np.int64)
    return scores, slots, counts


#: Heaps up to this width are sorted by insertion (:func:`_select`), wider ones by
#: ``np.lexsort``.
_INSERTION_K = 64


@numba.njit(nogil=True, cache=True, inline="always")
def _before(s1: float, k1: int, s2: float, k2: int) -> bool:
    """Whether ``(s1, k1)`` sorts before ``(s2, k2)``: score descending, NaN last, then key
    ascending with ``-1`` (padding) after every real key."""
    n1 = s1 != s1
    n2 = s2 != s2
    if n1 != n2:
        return n2
    if not n1 and s1 != s2:
        return s1 > s2
    u1 = k1 if k1 >= 0 else np.iinfo(np.int64).max
    u2 = k2 if k2 >= 0 else np.iinfo(np.int64).max
    return u1 < u2


@numba.njit(nogil=True, cache=True, inline="always")
def _insert(scores: np.ndarray, slots: np.ndarray, held: int, s: float, key: int) -> int:
    """Insert ``(s, key)`` into the :func:`_before`-sorted list ``scores``/``slots`` of
    ``len(scores)`` entries, ``held`` of them filled (an entry that sorts after a full list's
    last is dropped); returns the new ``held``."""
    k = scores.shape[0]
    if held == k and not _before(s, key, scores[k - 1], slots[k - 1]):
        return held
    j = held if held < k else k - 1
    while j > 0 and _before(s, key, scores[j - 1], slots[j - 1]):
        scores[j] = scores[j - 1]
        slots[j] = slots[j - 1]
        j -= 1
    scores[j] = s
    slots[j] = key
    return held + 1 if held < k else held


@numba.njit(nogil=True, cache=True)
def _select(out: np.ndarray, keys: np.ndarray, scores: np.ndarray, slots: np.ndarray,
            counts: np.ndarray) -> None:
    """Per row, the first ``k`` candidates in :func:`_before` order (insertion into the
    sorted prefix), written into the outputs, padded with ``-inf`` / ``-1`` past the
    candidates; ``counts`` the real keys among them."""
    k = scores.shape[1]
    for q in range(out.shape[0]):
        for j in range(k):
            scores[q, j] = -np.inf
            slots[q, j] = -1
        held = 0
        for c in range(out.shape[1]):
            held = _insert(scores[q], slots[q], held, out[q, c], keys[q, c])
        n = 0
        for j in range(held):
            if slots[q, j] >= 0:
                n += 1
        counts[q] = n


def sq_norms(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Squared L2 norm of each row, ``einsum('ij,ij->i', x, x)`` in float32."""
    return np.einsum("ij,ij->i", x, x)


def dense_topk(
    queries: npt.NDArray[np.float32],
    data: npt.NDArray[np.float32],
    k: int,
    *,
    l2: bool = False,
    data_sq_norms: npt.NDArray[np.float32] | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
    slot_map: npt.NDArray[np.int64] | None = None,
    on_tile: Callable[[int], None] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Exact top-k of ``queries`` against ``data`` rows.

    Parameters
    ----------
    queries : float32 (nq, d), C-contiguous
    data : float32 (n, d), C-contiguous
    k : int
        Heap width; rows with fewer than ``k`` allowed data rows are padded.
    l2 : bool
        Score by negated squared distance (``data_sq_norms`` required) instead of inner
        product.
    data_sq_norms : float32 (n,), optional
        :func:`sq_norms` of ``data``.
    mask : bool (n,), optional
        Only rows where ``mask`` is true are candidates; applied inside the scan.
    slot_map : int64 (n,), optional
        Report ``slot_map[j]`` instead of ``j`` (used when ``data`` is a gathered subset;
        must be increasing so the tie rule is preserved).
    on_tile : callable, optional
        Called with the number of queries finished after each query block (progress).

    Returns
    -------
    scores, slots, counts
        As :func:`finalize_heaps`. Memory is bounded by one ``QUERY_BLOCK x DB_BLOCK`` tile
        per thread whatever ``nq`` and ``n`` are.
    """
    nq = queries.shape[0]
    hs, hi = init_heaps(nq, k)
    use_mask = mask is not None
    mask_arr = mask if mask is not None else np.ones(1, dtype=np.bool_)
    xn = data_sq_norms if l2 and data_sq_norms is not None else np.zeros(1, np.float32)
    if l2 and data_sq_norms is None:
        raise ValueError("data_sq_norms is required for l2")
    qn = sq_norms(queries) if l2 else np.zeros(1, np.float32)
    nthreads = get_num_threads()
    if nq < SMALL_BATCH:
        hs, hi = _fused_topk(queries, data, k, mask_arr, use_mask, qn, xn, l2, nthreads)
        if on_tile is not None:
            on_tile(nq)
    else:
        _blocked_topk(queries, data, mask_arr, use_mask, qn, xn, l2, hs, hi, nthreads, on_tile)
    if slot_map is not None:
        hi = np.where(hi >= 0, slot_map[np.maximum(hi, 0)], -1)
    return finalize_heaps(hs, hi)


def _fused_topk(
    queries: np.ndarray,
    data: np.ndarray,
    k: int,
    mask: np.ndarray,
    use_mask: bool,
    qn: np.ndarray,
    xn: np.ndarray,
    l2: bool,
    nthreads: int,
) -> tuple[np.ndarray, np.ndarray]:
    nq, n = queries.shape[0], data.shape[0]
    parts = max(1, min(nthreads, n // _MIN_ROWS_PER_THREAD))
    heaps = [init_heaps(nq, k) for _ in range(parts)]
    if parts == 1:
        _fused_rows(queries, data, 0, n, mask, use_mask, qn, xn, l2, *heaps[0])
        return heaps[0]
    step = -(-n // parts)

    def work(a: int, b: int) -> None:
        hs, hi = heaps[a // step]
        _fused_rows(queries, data, a, b, mask, use_mask, qn, xn, l2, hs, hi)

    map_chunks(work, n, parts)
    hs = np.concatenate([h[0] for h in heaps], axis=1)
    hi = np.concatenate([h[1] for h in heaps], axis=1)
    scores, slots, _ = finalize_heaps(hs, hi)  # merged best first; keep the top k
    return np.ascontiguousarray(scores[:, :k]), np.ascontiguousarray(slots[:, :k])


def _blocked_topk(
    queries: np.ndarray,
    data: np.ndarray,
    mask_arr: np.ndarray,
    use_mask: bool,
    qn: np.ndarray,
    xn: np.ndarray,
    l2: bool,
    hs: np.ndarray,
    hi: np.ndarray,
    nthreads: int,
    on_tile: Callable[[int], None] | None,
) -> None:
    nq, n = queries.shape[0], data.shape[0]
    isa = _native.active_isa()
    if isa is not None:
        # the kernel takes C-contiguous float32 norms and a bool mask (as the numba kernel
        # computes with them); anything else stays on the numba reference
        if (use_mask and mask_arr.dtype != np.bool_) or (
                l2 and (qn.dtype != np.float32 or xn.dtype != np.float32)):
            isa = None
        else:
            mask_arr, qn, xn = (np.ascontiguousarray(a) for a in (mask_arr, qn, xn))
    tile_buf = np.empty(min(QUERY_BLOCK, nq) * min(DB_BLOCK, max(n, 1)), dtype=np.float32)
    for q0 in range(0, nq, QUERY_BLOCK):
        q1 = min(q0 + QUERY_BLOCK, nq)
        qb = queries[q0:q1]
        hs_b, hi_b = hs[q0:q1], hi[q0:q1]
        qn_b = qn[q0:q1] if l2 else qn
        for c0 in range(0, n, DB_BLOCK):
            c1 = min(c0 + DB_BLOCK, n)
            # a narrow last tile is widened to overlap the previous one
            s0 = c0 if c1 - c0 >= DB_BLOCK // 2 else max(0, c1 - DB_BLOCK)
            tile = tile_buf[: (q1 - q0) * (c1 - s0)].reshape(q1 - q0, c1 - s0)
            np.matmul(qb, data[s0:c1].T, out=tile)
            # (a narrow last matmul may round differently from the full product; this keeps
            # every score bit-identical to numpy's q @ x.T where the BLAS kernel rounds the
            # same wherever a product falls in the tile, as OpenBLAS's SkylakeX kernels do)
            if isa is not None:  # the native scan reads the whole tile from column c0 - s0
                _native_scan_tile(tile, c0 - s0, c0, mask_arr if use_mask else None,
                                  qn_b if l2 else None, xn if l2 else None, hs_b, hi_b,
                                  nthreads, isa=isa)
            else:
                part = tile[:, c0 - s0 :] if s0 < c0 else tile
                _scan_tile(part, c0, mask_arr, use_mask, qn_b, xn, l2, hs_b, hi_b, nthreads)
        if on_tile is not None:
            on_tile(q1 - q0)


def _scan_tile(
    tile: np.ndarray,
    offset: int,
    mask: np.ndarray,
    use_mask: bool,
    qn: np.ndarray,
    xn: np.ndarray,
    l2: bool,
    hs: np.ndarray,
    hi: np.ndarray,
    nthreads: int,
) -> None:
    rows = tile.shape[0]
    if nthreads <= 1 or rows < 2 * nthreads:
        _update_rows(tile, 0, rows, offset, mask, use_mask, qn, xn, l2, hs, hi)
        return
    map_chunks(
        lambda r0, r1: _update_rows(tile, r0, r1, offset, mask, use_mask, qn, xn, l2, hs, hi),
        rows,
        nthreads,
    )
