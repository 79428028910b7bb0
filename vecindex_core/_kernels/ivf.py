"""Inverted-list kernels: coarse probing and float32 list scans with a fused top-k.

An inverted file keeps its rows ("entries") list by list in one arena; list ``l`` occupies
entries ``start[l] : start[l] + size[l]`` and ``eslot[e]`` is the slot of entry ``e``. A
query scans the entry ranges of its probed lists (``ranges`` int64 ``(nq, R, 2)``, empty
ranges allowed). Scores follow the library rule (higher is better) and heaps the
``topk`` layout; entries arrive out of slot order, so ties are resolved by comparing
``(score, slot)`` in full (:func:`~vecindex_core._kernels.hamming.push`).
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

from .hamming import push

__all__ = ["probe_ranges", "push_tile", "range_values", "ratio_keep", "scan_dense_ranges"]

_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


def ratio_keep(scores: npt.NDArray[np.float32], ratio: float) -> npt.NDArray[np.bool_]:
    """Which probed cells ``ratio_threshold`` keeps, per query.

    ``scores`` are the probed cells' centroid scores, best first along axis 1 (``-inf``
    where absent). With ``b`` a query's best score, a cell is kept when its score is at
    least ``ratio * b`` if ``b > 0`` and at least ``b / ratio`` if ``b <= 0``. For positive
    scores this is "within ``ratio`` of the best" (fast-ivf's rule); for the negated squared
    distances of ``l2`` it is ``d^2 <= d_best^2 / ratio``, i.e. the same rule on distances.
    The threshold never exceeds ``b``, so the best cell is always kept, and it is continuous
    in ``b``. ``ratio = 0`` keeps every probed cell.
    """
    if ratio <= 0:
        return np.isfinite(scores)
    best = scores[:, :1]
    thr = np.where(best > 0, ratio * best, best / ratio)
    return (scores >= thr) & np.isfinite(scores)


def probe_ranges(
    lists: npt.NDArray[np.int64],
    keep: npt.NDArray[np.bool_],
    start: npt.NDArray[np.int64],
    size: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """Entry ranges ``(nq, R, 2)`` of the probed ``lists`` (``[0, 0)`` where not kept or
    negative)."""
    out = np.zeros((*lists.shape, 2), dtype=np.int64)
    _probe_ranges(lists, keep, start, size, out)  # one pass (numpy's ~7 us a query)
    return out


@numba.njit(nogil=True, cache=True)
def _probe_ranges(lists: np.ndarray, keep: np.ndarray, start: np.ndarray, size: np.ndarray,
                  out: np.ndarray) -> None:
    for q in range(lists.shape[0]):
        for t in range(lists.shape[1]):
            c = lists[q, t]
            if keep[q, t] and c >= 0:
                if c >= start.shape[0]:
                    raise IndexError("probed list past the index's lists")
                out[q, t, 0] = start[c]
                out[q, t, 1] = start[c] + size[c]


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def _dot(a: np.ndarray, b: np.ndarray) -> np.float32:
    s = np.float32(0.0)
    for t in range(a.shape[0]):
        s += a[t] * b[t]
    return s


@numba.njit(nogil=True, cache=True)
def scan_dense_ranges(
    q: np.ndarray,
    data: np.ndarray,
    ranges: np.ndarray,
    eslot: np.ndarray,
    mask: np.ndarray,
    use_mask: bool,
    l2: bool,
    qn: np.ndarray,
    xn: np.ndarray,
    r0: int,
    r1: int,
    hs: np.ndarray,
    hi: np.ndarray,
) -> None:
    """Score queries ``r0:r1`` against the float32 entries of their ranges, into the heaps.

    ``data`` float32 (entries, d); ``xn`` the entries' squared norms (``l2``) and ``qn`` the
    queries'. Masked-out slots are skipped before any arithmetic.
    """
    two = np.float32(2.0)
    zero = np.float32(0.0)
    for r in range(r0, r1):
        qr = q[r]
        for t in range(ranges.shape[1]):
            for e in range(ranges[r, t, 0], ranges[r, t, 1]):
                slot = eslot[e]
                if use_mask and not mask[slot]:
                    continue
                s = _dot(qr, data[e])
                if l2:
                    s = -max((qn[r] + xn[e]) - two * s, zero)
                push(hs, hi, r, float(s), slot)


@numba.njit(nogil=True, cache=True)
def push_tile(
    tile: np.ndarray,
    rows: np.ndarray,
    e0: int,
    eslot: np.ndarray,
    mask: np.ndarray,
    use_mask: bool,
    l2: bool,
    qn: np.ndarray,
    xn: np.ndarray,
    hs: np.ndarray,
    hi: np.ndarray,
) -> None:
    """Push a tile of inner products into the heaps.

    ``tile[a, j]`` is the inner product of query ``rows[a]`` with entry ``e0 + j``.
    """
    two = np.float32(2.0)
    zero = np.float32(0.0)
    for a in range(tile.shape[0]):
        r = rows[a]
        for j in range(tile.shape[1]):
            e = e0 + j
            slot = eslot[e]
            if use_mask and not mask[slot]:
                continue
            s = tile[a, j]
            if l2:
                s = -max((qn[r] + xn[e]) - two * s, zero)
            push(hs, hi, r, s, slot)


@numba.njit(nogil=True, cache=True)
def _range_values(ents: np.ndarray, ranges: np.ndarray, values: np.ndarray,
                  out: np.ndarray) -> None:
    for q in range(ents.shape[0]):
        for c in range(ents.shape[1]):
            e = ents[q, c]
            v = values[q, 0]
            for t in range(ranges.shape[1]):
                if ranges[q, t, 0] <= e < ranges[q, t, 1]:
                    v = values[q, t]
                    break
            out[q, c] = v


def range_values(
    ents: npt.NDArray[np.int64], ranges: npt.NDArray[np.int64],
    values: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    """``values[q, t]`` of the range ``t`` of query ``q`` that holds entry ``ents[q, c]``,
    float32 ``(nq, C)`` (``values[q, 0]`` where no range holds it, e.g. ``-1`` padding)."""
    out = np.empty(ents.shape, dtype=np.float32)
    if out.size and ranges.shape[1]:
        _range_values(ents, ranges, values, out)
    return out
