"""Seeded fast orthogonal rotation for any dimension, and the Lloyd-Max codebook.

Rotation
--------
:func:`rotate` applies ``ROUNDS`` rounds of

``x <- P (H_trail D2 (H_lead D1 x))``

where ``D1, D2`` are random ``+-1`` diagonal sign flips, ``H_lead`` is the normalised
Walsh-Hadamard transform (``H / sqrt(p)``, ``H`` Sylvester's ``+-1`` matrix) on the leading
``p`` coordinates, ``H_trail`` the same on the trailing ``p`` coordinates (``p`` is the
largest power of two ``<= dim``; the two blocks overlap when ``dim`` is not a power of two,
and are one block, transformed once, when it is), and ``P`` a random permutation. Every step
is orthogonal, so the product is an orthogonal map of ``R^dim`` that costs
``O(dim log dim)`` per vector and is stored as ``ROUNDS x dim`` signs and permutations, not
a ``dim x dim`` matrix. The signs and permutations come from
``numpy.random.default_rng(seed)`` (PCG64: the same on every platform).

The transform is computed in float32 with a fixed sequence of IEEE additions, subtractions
and multiplications (no fused multiply-add, no reassociation), so :func:`rotate` (the native
kernel, or numba) and :func:`rotation_matrix` (numpy, the transform applied to the identity)
give bit-identical results on every machine; the encoding of a vector never depends on its
batch.

Lloyd-Max codebook
------------------
A coordinate ``t`` of a uniformly random unit vector of ``R^dim`` has density
``f(t) ~ (1 - t^2)^((dim - 3) / 2)`` on ``[-1, 1]``. :func:`lloyd_max_codebook` returns the
MSE-optimal scalar quantizer of that density with ``2**bits`` levels (sorted ascending,
symmetric around 0), found by Lloyd iterations on the exact density; see its docstring.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
import numpy.typing as npt

from .. import _native
from .._native.lut import _resolve as _native_resolve
from .._threads import run_chunks, thread_count

__all__ = [
    "ROUNDS",
    "ROTATION_VERSION",
    "lloyd_max_codebook",
    "rotate",
    "rotation_matrix",
    "rotation_params",
]

#: Rounds of (signs, Hadamard, signs, Hadamard, permutation).
ROUNDS = 3
#: Names the transform above; stored in index files, so a file written with another
#: transform is refused instead of silently decoded with the wrong rotation.
ROTATION_VERSION = "signed-hadamard-overlap-3"


def _block(dim: int) -> int:
    """The largest power of two ``<= dim``."""
    return 1 << (dim.bit_length() - 1)


@functools.lru_cache(maxsize=64)
def rotation_params(
    dim: int, seed: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The random parts of the rotation of ``R^dim`` drawn from ``seed`` (read-only, cached).

    Returns
    -------
    signs : float32 (ROUNDS, 2, dim)
        ``+-1``: ``D1`` and ``D2`` of each round.
    perms : int64 (ROUNDS, dim)
        The permutation of each round: output coordinate ``i`` is input ``perms[r, i]``.
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    rng = np.random.default_rng([int(seed), int(dim), 0x7475_7262])  # "turb"
    signs = (rng.integers(0, 2, size=(ROUNDS, 2, dim)) * 2 - 1).astype(np.float32)
    perms = np.stack([rng.permutation(dim) for _ in range(ROUNDS)]).astype(np.int64)
    signs.flags.writeable = False
    perms.flags.writeable = False
    return signs, perms


# --------------------------------------------------------------------------- numpy reference
def _fwht_numpy(y: npt.NDArray[np.float32], lo: int, p: int, norm: np.float32) -> None:
    """In place: normalised Walsh-Hadamard transform of columns ``lo:lo+p`` of ``y``."""
    n = y.shape[0]
    seg = np.ascontiguousarray(y[:, lo : lo + p])
    h = 1
    while h < p:
        blk = seg.reshape(n, p // (2 * h), 2, h)
        a = blk[:, :, 0, :].copy()
        b = blk[:, :, 1, :].copy()
        blk[:, :, 0, :] = a + b
        blk[:, :, 1, :] = a - b
        h *= 2
    y[:, lo : lo + p] = seg * norm


def _rotate_numpy(x: npt.NDArray[np.float32], seed: int) -> npt.NDArray[np.float32]:
    """:func:`rotate` with numpy elementwise operations only (the reference)."""
    dim = x.shape[1]
    signs, perms = rotation_params(dim, seed)
    p = _block(dim)
    norm = np.float32(1.0 / math.sqrt(p))
    y = np.array(x, dtype=np.float32, order="C", copy=True)
    for r in range(ROUNDS):
        y *= signs[r, 0]
        if p > 1:
            _fwht_numpy(y, 0, p, norm)
        y *= signs[r, 1]
        if p > 1 and p != dim:
            _fwht_numpy(y, dim - p, p, norm)
        y = np.ascontiguousarray(y[:, perms[r]])
    return y


@functools.lru_cache(maxsize=8)
def _rotation_matrix_cached(dim: int, seed: int) -> npt.NDArray[np.float32]:
    m = np.ascontiguousarray(_rotate_numpy(np.eye(dim, dtype=np.float32), seed).T)
    m.flags.writeable = False
    return m


def rotation_matrix(dim: int, seed: int) -> npt.NDArray[np.float32]:
    """The rotation as a matrix ``M`` (float32 ``(dim, dim)``, read-only, cached).

    ``rotate(x, seed)[i] == M @ x[i]`` up to float32 rounding (the matrix is the transform
    applied to the identity, so ``M[:, j] = rotate(e_j)`` exactly). ``M`` is orthogonal.
    """
    return _rotation_matrix_cached(int(dim), int(seed))


# --------------------------------------------------------------------------- kernels
#: Work (rows x dim) a thread of the native rotation (``_vecnative.rotate``, the C twin of
#: :func:`_rotate_few`): a 384-d row is ~1.7 us, so ~85 of them (~150 us) pay for a hand-off.
_MIN_NATIVE_ROWS_WORK = 1 << 15
#: Rows transformed together by the numba kernel (stored coordinate-major, so every
#: butterfly is a vector operation over the block's rows).
_ROW_BLOCK = 16


@numba.njit(nogil=True, cache=True)
def _fwht(buf: np.ndarray, lo: int, p: int, nb: int, norm: np.float32) -> None:
    """Normalised Walsh-Hadamard transform of rows ``lo:lo+p`` of ``buf`` (dim, block)."""
    h = 1
    while h < p:
        for s in range(lo, lo + p, 2 * h):
            for j in range(s, s + h):
                for b in range(nb):
                    u = buf[j, b]
                    v = buf[j + h, b]
                    buf[j, b] = u + v
                    buf[j + h, b] = u - v
        h *= 2
    for j in range(lo, lo + p):
        for b in range(nb):
            buf[j, b] *= norm


@numba.njit(nogil=True, cache=True)
def _rotate_rows(
    x: np.ndarray, signs: np.ndarray, perms: np.ndarray, p: int, norm: np.float32,
    out: np.ndarray,
) -> None:
    n, dim = x.shape
    rounds = signs.shape[0]
    buf = np.empty((dim, _ROW_BLOCK), dtype=np.float32)
    tmp = np.empty((dim, _ROW_BLOCK), dtype=np.float32)
    for i0 in range(0, n, _ROW_BLOCK):
        nb = min(_ROW_BLOCK, n - i0)
        for b in range(nb):
            for j in range(dim):
                buf[j, b] = x[i0 + b, j]
        for r in range(rounds):
            for j in range(dim):
                sj = signs[r, 0, j]
                for b in range(nb):
                    buf[j, b] *= sj
            if p > 1:
                _fwht(buf, 0, p, nb, norm)
            for j in range(dim):
                sj = signs[r, 1, j]
                for b in range(nb):
                    buf[j, b] *= sj
            if p > 1 and p != dim:
                _fwht(buf, dim - p, p, nb, norm)
            for j in range(dim):
                src = perms[r, j]
                for b in range(nb):
                    tmp[j, b] = buf[src, b]
            buf, tmp = tmp, buf
        for b in range(nb):
            for j in range(dim):
                out[i0 + b, j] = buf[j, b]


@numba.njit(nogil=True, cache=True)
def _fwht_1d(buf: np.ndarray, lo: int, p: int, norm: np.float32) -> None:
    """:func:`_fwht` of one vector: the same additions, with the first three stages done
    eight coordinates at a time in registers (the later stages vectorise)."""
    h = 1
    if p >= 8:
        for s in range(lo, lo + p, 8):
            a0, a1, a2, a3 = buf[s], buf[s + 1], buf[s + 2], buf[s + 3]
            a4, a5, a6, a7 = buf[s + 4], buf[s + 5], buf[s + 6], buf[s + 7]
            b0, b1, b2, b3 = a0 + a1, a0 - a1, a2 + a3, a2 - a3
            b4, b5, b6, b7 = a4 + a5, a4 - a5, a6 + a7, a6 - a7
            c0, c1, c2, c3 = b0 + b2, b1 + b3, b0 - b2, b1 - b3
            c4, c5, c6, c7 = b4 + b6, b5 + b7, b4 - b6, b5 - b7
            buf[s], buf[s + 1], buf[s + 2], buf[s + 3] = c0 + c4, c1 + c5, c2 + c6, c3 + c7
            buf[s + 4], buf[s + 5], buf[s + 6], buf[s + 7] = c0 - c4, c1 - c5, c2 - c6, c3 - c7
        h = 8
    while h < p:
        for s in range(lo, lo + p, 2 * h):
            for j in range(s, s + h):
                u = buf[j]
                v = buf[j + h]
                buf[j] = u + v
                buf[j + h] = u - v
        h *= 2
    for j in range(lo, lo + p):
        buf[j] *= norm


@numba.njit(nogil=True, cache=True)
def _rotate_few(
    x: np.ndarray, signs: np.ndarray, perms: np.ndarray, p: int, norm: np.float32,
    out: np.ndarray,
) -> None:
    """:func:`_rotate_rows` one row at a time (faster for a handful of rows)."""
    n, dim = x.shape
    rounds = signs.shape[0]
    buf = np.empty(dim, dtype=np.float32)
    tmp = np.empty(dim, dtype=np.float32)
    for i in range(n):
        for j in range(dim):
            buf[j] = x[i, j]
        for r in range(rounds):
            for j in range(dim):
                buf[j] *= signs[r, 0, j]
            if p > 1:
                _fwht_1d(buf, 0, p, norm)
            for j in range(dim):
                buf[j] *= signs[r, 1, j]
            if p > 1 and p != dim:
                _fwht_1d(buf, dim - p, p, norm)
            for j in range(dim):
                tmp[j] = buf[perms[r, j]]
            buf, tmp = tmp, buf
        for j in range(dim):
            out[i, j] = buf[j]


@functools.lru_cache(maxsize=64)
def _transform(dim: int, seed: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64],
                                             int, np.float32]:
    """``(signs, perms, p, norm)`` of :func:`rotate` for ``dim`` and ``seed`` (cached)."""
    signs, perms = rotation_params(dim, seed)
    p = _block(dim)
    return signs, perms, p, np.float32(1.0 / math.sqrt(p))


def rotate(x: npt.NDArray[np.float32], seed: int) -> npt.NDArray[np.float32]:
    """Rotate every row of ``x`` (float32 ``(n, dim)``) by the seeded rotation of ``R^dim``.

    Row by row, so a row's result does not depend on the other rows; bit-identical to
    ``x @ rotation_matrix(dim, seed).T`` computed in the transform's own order (see the
    module docstring), not to a BLAS product of the matrix. On the native kernels
    (``_vecnative.rotate``, rows split over :func:`~vecindex_core._threads.get_num_threads`
    threads) the same results as the numba kernels.

    Returns
    -------
    ndarray of float32, shape (n, dim)
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, dim = x.shape
    signs, perms, p, norm = _transform(dim, int(seed))
    out = np.empty((n, dim), dtype=np.float32)
    isa = _native.active_isa()
    if n and isa is not None:  # the C twin of _rotate_few: the same results
        ext, isa_id = _native_resolve(isa)
        run_chunks(lambda a, b: ext.rotate(x, signs, perms, p, norm, out, a, b, isa_id), n,
                   thread_count(n, n * dim, _MIN_NATIVE_ROWS_WORK))
    elif n >= _ROW_BLOCK // 2:
        _rotate_rows(x, signs, perms, p, norm, out)
    elif n:
        _rotate_few(x, signs, perms, p, norm, out)
    return out


# --------------------------------------------------------------------------- Lloyd-Max
#: Grid points of the half-line ``[0, 1]`` used to integrate the density (midpoint rule).
_GRID = 1 << 16
#: Lloyd iterations stop when no level moves by more than this (relative to the spread).
_TOL = 1e-12
_MAX_ITER = 20_000


def _half_density(dim: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Points ``t`` in ``(0, 1)`` and their probability masses (summing to 1/2 of the total).

    The density of ``t = cos(theta)`` for a uniform direction is
    ``(1 - t^2)^((dim - 3)/2)``; in ``theta`` it is ``sin(theta)^(dim - 2)``, bounded for
    every ``dim >= 2`` (the arcsine density of ``dim == 2`` is uniform in ``theta``), so the
    midpoint rule is applied in ``theta`` over ``[theta_lo, pi/2]``, where ``theta_lo`` cuts
    the tail once its mass is below ``1e-30`` (it matters for large ``dim``, where the mass
    concentrates near ``t = 0`` with spread ``1/sqrt(dim)``).
    """
    # sin(theta)^(dim-2) < 1e-30 relative to the peak below theta = asin(1e-30^(1/(dim-2)))
    lo = 0.0 if dim == 2 else math.asin(min(1.0, math.exp(math.log(1e-30) / (dim - 2))))
    theta = lo + (np.arange(_GRID, dtype=np.float64) + 0.5) * ((math.pi / 2 - lo) / _GRID)
    t = np.cos(theta)[::-1].copy()  # ascending in t
    logw = (dim - 2) * np.log(np.sin(theta)) if dim > 2 else np.zeros(_GRID)
    w = np.exp(logw - logw.max())[::-1].copy()
    return t, w / (2 * w.sum())


@functools.lru_cache(maxsize=128)
def _lloyd_max_cached(dim: int, bits: int) -> npt.NDArray[np.float32]:
    levels = 1 << bits
    if dim == 1:
        # a "uniform unit vector of R^1" is +-1: two point masses; put levels on both
        # (zero error) and spread the rest evenly between them
        out = np.linspace(-1.0, 1.0, levels).astype(np.float32)
        out.flags.writeable = False
        return out
    t, w = _half_density(dim)
    half = levels // 2
    cw = np.concatenate([[0.0], np.cumsum(w)])
    cwt = np.concatenate([[0.0], np.cumsum(w * t)])
    # start at the centroids of equal-mass cells of the half-line
    edges_mass = cw[-1] * np.arange(1, half) / half
    edges = np.searchsorted(cw[1:], edges_mass)
    c = np.empty(half)
    bounds = np.concatenate([[0], edges, [t.size]])
    for i in range(half):
        a, b = bounds[i], bounds[i + 1]
        c[i] = (cwt[b] - cwt[a]) / max(cw[b] - cw[a], 1e-300)
    for _ in range(_MAX_ITER):
        # cell boundaries: 0 (by symmetry), midpoints between levels, 1
        mids = (c[:-1] + c[1:]) / 2
        cut = np.searchsorted(t, mids)
        bounds = np.concatenate([[0], cut, [t.size]])
        mass = cw[bounds[1:]] - cw[bounds[:-1]]
        moment = cwt[bounds[1:]] - cwt[bounds[:-1]]
        new = np.where(mass > 0, moment / np.maximum(mass, 1e-300), c)
        moved = float(np.max(np.abs(new - c)))
        c = new
        if moved <= _TOL * max(c[-1], 1e-300):
            break
    out = np.concatenate([-c[::-1], c]).astype(np.float32)
    out.flags.writeable = False
    return out


def lloyd_max_codebook(dim: int, bits: int) -> npt.NDArray[np.float32]:
    """MSE-optimal levels for one coordinate of a uniformly random unit vector of ``R^dim``.

    The density ``(1 - t^2)^((dim - 3)/2)`` on ``[-1, 1]`` is symmetric, so the levels are
    symmetric: Lloyd's iterations (cell boundaries at the midpoints between levels, each level
    the mean of its cell) run on the half-line with the boundary at 0 fixed, on a
    ``2**16``-point midpoint grid of the exact density (see :func:`_half_density`), starting
    from the centroids of equal-mass cells, until no level moves by more than ``1e-12``
    relative. The density is log-concave for ``dim >= 3``, where this fixed point is the
    unique optimum. ``dim == 2`` (arcsine density) is handled by the same grid, in the
    angle; ``dim == 1`` (two point masses at ``+-1``) gives ``2**bits`` levels evenly spaced
    on ``[-1, 1]``, zero error. Deterministic (float64 numpy, sequential sums), cached.

    Parameters
    ----------
    dim : int
        ``>= 1``.
    bits : int
        ``1..8``: ``2**bits`` levels.

    Returns
    -------
    ndarray of float32, shape (2**bits,)
        Levels ascending, read-only.
    """
    if isinstance(dim, bool) or int(dim) < 1:
        raise ValueError(f"dim must be >= 1, got {dim!r}")
    if isinstance(bits, bool) or not 1 <= int(bits) <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits!r}")
    return _lloyd_max_cached(int(dim), int(bits))
