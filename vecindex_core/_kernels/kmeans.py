"""k-means kernels: blocked assignment, cluster sums, empty-cluster repair, seeding, mini-batch.

Every function here is a deterministic function of its inputs *whatever the thread count*,
provided BLAS runs on one thread (the caller pins it, see :mod:`vecindex_core.kmeans`):

- the assignment multiplies fixed blocks of :func:`block_rows` rows by the centroids, one
  BLAS call per block, so the rounding of every product depends only on the data; the
  threads (:func:`vecindex_core._threads.map_chunks`) take whole blocks;
- cluster sums are accumulated in float64 in row order, each thread owning a range of
  clusters, so every sum is added in the same order for any number of threads;
- ties go to the lower centroid index (assignment) and to the lower row (repair).

Metric codes (``metric`` arguments): :data:`L2`, :data:`IP`, :data:`COSINE`.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

from .._threads import get_num_threads, map_chunks
from .topk import sq_norms

__all__ = [
    "COL_BLOCK",
    "COSINE",
    "GRAM_MAX_ROWS",
    "IP",
    "L2",
    "assign",
    "block_rows",
    "centers_from_sums",
    "cluster_sums",
    "kmeans_plusplus",
    "minibatch_update",
    "random_init",
    "repair_empty",
    "scores",
]

L2, IP, COSINE = 0, 1, 2
#: Centroid columns per BLAS product; more centroids are scanned in column blocks.
COL_BLOCK = 2048
#: Rows of one assignment block: the tile is about this many float32 (bounded memory per
#: thread, and a tile that stays in L2 cache; measured on k=256, d=384: 512 rows beat 1024+).
_TILE_FLOATS = 1 << 17
#: Fewest rows per block (small blocks make BLAS repack the centroids too often).
_MIN_BLOCK_ROWS = 128
#: Fewest rows for which the threads are used at all.
_MIN_PARALLEL_ROWS = 2048


def block_rows(k: int) -> int:
    """Rows per assignment block for ``k`` centroids (a pure function of ``k``)."""
    return max(_MIN_BLOCK_ROWS, min(1024, _TILE_FLOATS // min(k, COL_BLOCK)))


# --------------------------------------------------------------------------- assignment
def _assign_rows(
    x: npt.NDArray[np.float32],
    r0: int,
    r1: int,
    centers2: npt.NDArray[np.float32],
    cn: npt.NDArray[np.float32],
    metric: int,
    xn: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    dist: npt.NDArray[np.float32],
) -> None:
    """Assign rows ``r0:r1`` block by block (blocks start at multiples of the block size).

    ``centers2`` is ``2 * centers`` for l2 (so the product is ``2 x.c`` exactly, scaling by
    two being exact) and ``centers`` otherwise. The argmax is numpy's (SIMD, first maximum
    wins: ties go to the lower centroid; measured 5x faster than a numba loop, whose max
    reduction LLVM does not vectorise); column blocks are merged with a strict ``>``.
    """
    k = centers2.shape[0]
    rows = block_rows(k)
    tile_buf = np.empty(rows * min(k, COL_BLOCK), dtype=np.float32)
    l2 = metric == L2

    def block_max(
        xb: npt.NDArray[np.float32], c0: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        c1 = min(c0 + COL_BLOCK, k)
        tile = tile_buf[: xb.shape[0] * (c1 - c0)].reshape(xb.shape[0], c1 - c0)
        np.matmul(xb, centers2[c0:c1].T, out=tile)
        if l2:
            np.subtract(tile, cn[c0:c1], out=tile)  # 2 x.c - |c|^2
        a = tile.argmax(axis=1)
        return tile[np.arange(xb.shape[0]), a], a + c0

    for b0 in range(r0, r1, rows):
        b1 = min(b0 + rows, r1)
        xb = x[b0:b1]
        best, arg = block_max(xb, 0)
        for c0 in range(COL_BLOCK, k, COL_BLOCK):
            v, a = block_max(xb, c0)
            upd = v > best
            best = np.where(upd, v, best)
            arg = np.where(upd, a, arg)
        labels[b0:b1] = arg
        if metric == L2:  # |x|^2 - (2 x.c - |c|^2)
            d = xn[b0:b1] - best
        elif metric == IP:  # |x|^2 + |c|^2 - 2 x.c
            d = (xn[b0:b1] + cn[arg]) - np.float32(2) * best
        else:  # 1 - cos
            d = np.float32(1) - best
        np.maximum(d, np.float32(0), out=dist[b0:b1])


def assign(
    x: npt.NDArray[np.float32],
    centers: npt.NDArray[np.float32],
    metric: int,
    xn: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    dist: npt.NDArray[np.float32],
    *,
    cn: npt.NDArray[np.float32] | None = None,
    nthreads: int | None = None,
) -> None:
    """Nearest centroid of every row, and its objective term, written in place.

    Parameters
    ----------
    x : float32 (n, d), C-contiguous
    centers : float32 (k, d), C-contiguous
    metric : {L2, IP, COSINE}
        l2: smallest squared distance (largest ``2 x.c - |c|^2``); ip and cosine: largest
        inner product (cosine expects unit rows and centroids).
    xn : float32 (n,)
        :func:`~.topk.sq_norms` of ``x`` (unused for cosine; any float32 array then).
    labels : int64 (n,), output
        Index of the chosen centroid; ties go to the lower index.
    dist : float32 (n,), output
        Objective term, ``>= 0``: squared L2 distance to the chosen centroid (l2, ip), or
        ``1 - x.c`` (cosine).
    cn : float32 (k,), optional
        ``sq_norms(centers)`` when already computed.
    nthreads : int, optional
        Threads over row blocks (default :func:`~vecindex_core.get_num_threads`); the
        result does not depend on it when BLAS runs on one thread.
    """
    n, k = x.shape[0], centers.shape[0]
    if cn is None:
        cn = sq_norms(centers) if metric != COSINE else np.zeros(k, dtype=np.float32)
    centers2 = np.float32(2) * centers if metric == L2 else centers
    rows = block_rows(k)
    nblocks = -(-n // rows)
    nthreads = min(nthreads or get_num_threads(), nblocks)
    if nthreads <= 1 or n < _MIN_PARALLEL_ROWS:
        _assign_rows(x, 0, n, centers2, cn, metric, xn, labels, dist)
        return

    def work(b0: int, b1: int) -> None:
        _assign_rows(x, b0 * rows, min(b1 * rows, n), centers2, cn, metric, xn, labels, dist)

    map_chunks(work, nblocks, nthreads)


def scores(
    x: npt.NDArray[np.float32],
    centers: npt.NDArray[np.float32],
    metric: int,
    xn: npt.NDArray[np.float32],
    *,
    nthreads: int | None = None,
) -> npt.NDArray[np.float32]:
    """All scores, float32 ``(n, k)``, "higher is better".

    l2: ``-max(|x|^2 - (2 x.c - |c|^2), 0)``, the negated squared distance computed from the
    same block products and the same expression as :func:`assign` (so its row argmax is
    :func:`assign`'s label, up to ties created by the final rounding); ip and cosine: ``x.c``.
    """
    n, k = x.shape[0], centers.shape[0]
    out = np.empty((n, k), dtype=np.float32)
    cn = sq_norms(centers)
    rows = block_rows(k)
    nblocks = -(-n // rows)

    def work(b0: int, b1: int) -> None:
        for s in range(b0 * rows, min(b1 * rows, n), rows):
            e = min(s + rows, n)
            blk = out[s:e]
            for c0 in range(0, k, COL_BLOCK):
                c1 = min(c0 + COL_BLOCK, k)
                np.matmul(x[s:e], centers[c0:c1].T, out=blk[:, c0:c1])
            if metric == L2:
                t = np.float32(2) * blk - cn
                np.maximum(xn[s:e, None] - t, np.float32(0), out=blk)
                np.negative(blk, out=blk)

    nthreads = min(nthreads or get_num_threads(), nblocks)
    if nthreads <= 1 or n < _MIN_PARALLEL_ROWS:
        work(0, nblocks)
    else:
        map_chunks(work, nblocks, nthreads)
    return out


# --------------------------------------------------------------------------- update
@numba.njit(nogil=True, cache=True)
def _sum_range(
    x: np.ndarray, labels: np.ndarray, c0: int, c1: int, sums: np.ndarray
) -> None:
    """``sums[c] += x[i]`` (float64) for every row ``i`` with ``c0 <= labels[i] < c1``."""
    d = x.shape[1]
    for i in range(x.shape[0]):
        c = labels[i]
        if c0 <= c < c1:
            for t in range(d):
                sums[c, t] += x[i, t]


def cluster_sums(
    x: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    k: int,
    *,
    nthreads: int | None = None,
) -> npt.NDArray[np.float64]:
    """Per-cluster sums of rows, float64 ``(k, d)``, added in row order.

    Threads own contiguous ranges of clusters (each scans every label and adds its own
    rows), so the result is the same for any thread count.
    """
    sums = np.zeros((k, x.shape[1]), dtype=np.float64)
    nthreads = min(nthreads or get_num_threads(), k)
    if nthreads <= 1 or x.shape[0] < _MIN_PARALLEL_ROWS:
        _sum_range(x, labels, 0, k, sums)
    else:
        map_chunks(lambda c0, c1: _sum_range(x, labels, c0, c1, sums), k, nthreads)
    return sums


def centers_from_sums(
    sums: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    old: npt.NDArray[np.float32],
    *,
    spherical: bool,
) -> npt.NDArray[np.float32]:
    """Means ``sums / counts`` as float32 ``(k, d)``; a cluster with no rows keeps ``old``.

    With ``spherical`` the means are L2-normalised (a zero mean stays zero).
    """
    safe = np.maximum(counts, 1).astype(np.float64)[:, None]
    c = sums / safe
    if spherical:
        norms = np.sqrt(np.einsum("ij,ij->i", c, c))[:, None]
        c = c / np.where(norms > 0, norms, 1.0)
    out = np.ascontiguousarray(c, dtype=np.float32)
    empty = counts == 0
    if empty.any():
        out[empty] = old[empty]
    return out


# --------------------------------------------------------------------------- empty clusters
@numba.njit(nogil=True, cache=True)
def _repair(
    labels: np.ndarray, dist: np.ndarray, counts: np.ndarray, eligible: np.ndarray
) -> np.ndarray:
    k = counts.shape[0]
    moved = np.full(k, -1, dtype=np.int64)
    for e in range(k):
        if counts[e] != 0 or not eligible[e]:
            continue
        big = 0
        for c in range(1, k):
            if counts[c] > counts[big]:
                big = c
        if counts[big] < 2:
            break
        p = -1
        far = np.float32(-1.0)
        for i in range(labels.shape[0]):
            if labels[i] == big and dist[i] > far:
                far = dist[i]
                p = i
        labels[p] = e
        dist[p] = 0.0
        counts[big] -= 1
        counts[e] = 1
        moved[e] = p
    return moved


def repair_empty(
    labels: npt.NDArray[np.int64],
    dist: npt.NDArray[np.float32],
    counts: npt.NDArray[np.int64],
    eligible: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.int64]:
    """Give every empty cluster one point, taken from the largest cluster, in place.

    For each empty cluster ``e`` in increasing order: the currently largest cluster (ties:
    the lower index) gives up its row farthest from its centroid (largest ``dist``, ties:
    the lower row), which moves to ``e`` (its ``dist`` becomes 0). A cluster of one row
    never gives it up, so the repair stops early when no cluster has two rows.

    Parameters
    ----------
    labels : int64 (n,), updated
    dist : float32 (n,), updated
    counts : int64 (k,), updated
        ``bincount(labels, minlength=k)``.
    eligible : bool (k,), optional
        Only these clusters are repaired (default: every cluster).

    Returns
    -------
    int64 (k,)
        The row moved into each cluster, ``-1`` where none was.
    """
    if eligible is None:
        eligible = np.ones(counts.shape[0], dtype=np.bool_)
    return np.asarray(_repair(labels, dist, counts, eligible), dtype=np.int64)


# --------------------------------------------------------------------------- seeding
def random_init(
    x: npt.NDArray[np.float32], k: int, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """``k`` distinct rows of ``x`` chosen uniformly (in the order drawn), float32 ``(k, d)``."""
    idx = rng.choice(x.shape[0], size=k, replace=False)
    return np.ascontiguousarray(x[idx], dtype=np.float32)


def kmeans_plusplus(
    x: npt.NDArray[np.float32],
    k: int,
    rng: np.random.Generator,
    *,
    xn: npt.NDArray[np.float32] | None = None,
    n_trials: int | None = None,
) -> npt.NDArray[np.float32]:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with local trials).

    The first centre is a uniform row. Each next one: draw ``n_trials`` candidate rows with
    probability proportional to their squared distance to the nearest chosen centre, and
    keep the candidate that most lowers the total of those distances. Distances are squared
    L2, ``|x|^2 + |c|^2 - 2 x.c`` in float32 clamped at 0, summed in float64. The inner
    products come from the Gram matrix ``x @ x.T`` when ``n <= GRAM_MAX_ROWS`` (one BLAS
    product in fixed row blocks, then each step reads ``n_trials`` rows of it: measured 2x
    faster at n = 2048, d = 384), else from one fused numba pass over the rows per step (a
    BLAS product with ``n_trials`` rows spends its time repacking ``x``). Deterministic for
    a given BLAS thread count (KMeans pins BLAS to one thread), whatever the number of
    threads :func:`~vecindex_core.get_num_threads` allows.

    Parameters
    ----------
    x : float32 (n, d), C-contiguous, ``n >= k``
        The caller seeds on a subsample to keep this cheap (cost ``O(n k d n_trials)``, or
        ``O(n^2 d)`` with the Gram matrix).
    k : int
    rng : numpy Generator
    xn : float32 (n,), optional
        ``sq_norms(x)``.
    n_trials : int, optional
        Candidates per step; default ``2 + floor(ln k)`` (as scikit-learn).

    Returns
    -------
    float32 (k, d)
        Rows of ``x``. When fewer than ``k`` distinct rows exist, duplicates are drawn
        uniformly for the remainder (empty-cluster repair sorts them out).
    """
    n = x.shape[0]
    if xn is None:
        xn = sq_norms(x)
    if n_trials is None:
        n_trials = 2 + int(math.log(k))
    gram = _gram(x) if n <= GRAM_MAX_ROWS else None

    def trial(rows: npt.NDArray[np.int64], closest: npt.NDArray[np.float32],
              ) -> npt.NDArray[np.float32]:
        if gram is None:
            return _trial_dists(x, xn, rows, closest)
        d = (xn[rows][:, None] + xn[None, :]) - np.float32(2) * gram[rows]
        np.maximum(d, np.float32(0), out=d)
        return np.minimum(d, closest[None, :], out=d)

    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = rng.integers(n)
    closest = trial(chosen[:1], np.full(n, np.inf, dtype=np.float32))[0]
    for c in range(1, k):
        pot = float(closest.sum(dtype=np.float64))
        if not pot > 0.0:  # every row sits on a centre: no distinct rows left
            chosen[c:] = rng.integers(n, size=k - c)
            break
        cum = np.cumsum(closest, dtype=np.float64)
        cand = np.searchsorted(cum, rng.random(n_trials) * pot, side="right")
        np.minimum(cand, n - 1, out=cand)
        dc = trial(cand, closest)
        best = int(np.argmin(dc.sum(axis=1, dtype=np.float64)))
        chosen[c] = cand[best]
        closest = dc[best]
    return np.ascontiguousarray(x[chosen], dtype=np.float32)


#: Largest seeding sample whose Gram matrix is computed (float32: 64 MiB at 4096 rows).
GRAM_MAX_ROWS = 4096


def _gram(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``x @ x.T`` (float32), one BLAS call per fixed block of rows, blocks over threads."""
    n = x.shape[0]
    g = np.empty((n, n), dtype=np.float32)
    rows = 256
    nblocks = -(-n // rows)

    def work(b0: int, b1: int) -> None:
        for s in range(b0 * rows, min(b1 * rows, n), rows):
            np.matmul(x[s : s + rows], x.T, out=g[s : s + rows])

    nthreads = min(get_num_threads(), nblocks)
    if nthreads <= 1:
        work(0, nblocks)
    else:
        map_chunks(work, nblocks, nthreads)
    return g


@numba.njit(nogil=True, cache=True, fastmath=True)
def _dot(a: np.ndarray, b: np.ndarray) -> np.float32:
    s = np.float32(0.0)
    for j in range(a.shape[0]):
        s += a[j] * b[j]
    return s


@numba.njit(nogil=True, cache=True, fastmath=True)
def _trial_rows(
    x: np.ndarray,
    xn: np.ndarray,
    cand: np.ndarray,
    cn: np.ndarray,
    closest: np.ndarray,
    r0: int,
    r1: int,
    out: np.ndarray,
) -> None:
    """``out[t, i] = min(closest[i], |x_i - cand_t|^2)`` for rows ``r0:r1`` (one pass).

    Four rows at a time share each load of a candidate (measured 1.4x faster than one row
    at a time); rows past the last multiple of four go one by one. ``r0`` is a multiple of
    four whatever the thread count, so every value comes from the same code path.
    """
    d = x.shape[1]
    two = np.float32(2.0)
    zero = np.float32(0.0)
    i = r0
    while i + 4 <= r1:
        x0, x1, x2, x3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        for t in range(cand.shape[0]):
            c = cand[t]
            a0 = np.float32(0.0)
            a1 = np.float32(0.0)
            a2 = np.float32(0.0)
            a3 = np.float32(0.0)
            for j in range(d):
                cj = c[j]
                a0 += x0[j] * cj
                a1 += x1[j] * cj
                a2 += x2[j] * cj
                a3 += x3[j] * cj
            ct = cn[t]
            out[t, i] = min(max((xn[i] + ct) - two * a0, zero), closest[i])
            out[t, i + 1] = min(max((xn[i + 1] + ct) - two * a1, zero), closest[i + 1])
            out[t, i + 2] = min(max((xn[i + 2] + ct) - two * a2, zero), closest[i + 2])
            out[t, i + 3] = min(max((xn[i + 3] + ct) - two * a3, zero), closest[i + 3])
        i += 4
    for r in range(i, r1):
        for t in range(cand.shape[0]):
            v = max((xn[r] + cn[t]) - two * _dot(x[r], cand[t]), zero)
            out[t, r] = min(v, closest[r])


#: Rows per task of the seeding pass when it runs on several threads.
_TRIAL_CHUNK = 1024


def _trial_dists(
    x: npt.NDArray[np.float32],
    xn: npt.NDArray[np.float32],
    rows: npt.NDArray[np.int64],
    closest: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    """``min(closest, squared distance to x[rows[t]])`` for every row: float32 ``(t, n)``.

    Each value is computed by the same code whatever the thread count (threads split rows).
    """
    n = x.shape[0]
    cand = np.ascontiguousarray(x[rows])
    cn = np.ascontiguousarray(xn[rows])
    out = np.empty((rows.shape[0], n), dtype=np.float32)
    nchunks = -(-n // _TRIAL_CHUNK)
    nthreads = min(get_num_threads(), nchunks)
    if nthreads <= 1:
        _trial_rows(x, xn, cand, cn, closest, 0, n, out)
    else:
        map_chunks(lambda c0, c1: _trial_rows(
            x, xn, cand, cn, closest, c0 * _TRIAL_CHUNK, min(c1 * _TRIAL_CHUNK, n), out),
            nchunks, nthreads)
    return out


# --------------------------------------------------------------------------- mini-batch
@numba.njit(nogil=True, cache=True)
def _minibatch_update(
    xb: np.ndarray,
    labels: np.ndarray,
    centers: np.ndarray,
    lr_counts: np.ndarray,
    spherical: bool,
) -> None:
    k, d = centers.shape
    sums = np.zeros((k, d), dtype=np.float64)
    bcounts = np.zeros(k, dtype=np.int64)
    for i in range(xb.shape[0]):
        c = labels[i]
        bcounts[c] += 1
        for t in range(d):
            sums[c, t] += xb[i, t]
    row = np.empty(d, dtype=np.float64)
    for c in range(k):
        b = bcounts[c]
        if b == 0:
            continue
        lr_counts[c] += b
        total = lr_counts[c]
        norm = 0.0
        for t in range(d):
            old = np.float64(centers[c, t])
            v = old + (sums[c, t] - b * old) / total
            row[t] = v
            norm += v * v
        scale = 1.0
        if spherical and norm > 0.0:
            scale = 1.0 / math.sqrt(norm)
        for t in range(d):
            centers[c, t] = np.float32(row[t] * scale)


def minibatch_update(
    xb: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    centers: npt.NDArray[np.float32],
    lr_counts: npt.NDArray[np.int64],
    *,
    spherical: bool,
) -> None:
    """One mini-batch step on ``centers`` in place (Sculley 2010, batched as scikit-learn).

    For each cluster ``c`` that received ``b`` rows of the batch with sum ``s``:
    ``lr_counts[c] += b`` and ``c <- c + (s - b c) / lr_counts[c]``, i.e. the per-centre
    learning rate ``1 / lr_counts[c]`` applied to each of its rows. With ``spherical`` the
    updated centres are L2-normalised. float64 arithmetic, float32 result.
    """
    _minibatch_update(xb, labels, centers, lr_counts, spherical)
