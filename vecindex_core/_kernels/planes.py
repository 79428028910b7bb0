"""Bit planes of 2- and 4-bit scalar codes, and the staged search over them.

A full scan of ``b``-bit codes reads every bit of every row. From a few tens of thousands of
rows most of that work goes to rows far from the top: the staged search ranks every row by
its *sign plane* alone (one bit a coordinate, a quarter or half of the code bytes), keeps the
``S`` best, ranks those by the rest of their bits, and rescores a short list exactly.

Layout (:class:`PlaneCodes`)
----------------------------
Codes index ascending levels symmetric about 0 (Lloyd-Max on a symmetric density), so the top
bit of a code is its sign: ``s = c >> (b - 1)`` is 1 for the positive half. A row of packed
codes (:func:`~.codes.pack_codes`) is kept as

- its *sign plane*: the bits ``s`` packed as 1-bit codes (``ceil(d / 8)`` bytes), in a
  :class:`~.blocked.BlockedCodes` store, scanned by the 1-bit fast scan;
- its ``b - 1`` *low planes*: bit ``j`` of every code packed the same way, the planes of a row
  side by side (plane 0 first) in one row-major array, so one row is one contiguous read.

The same bytes as the packed codes (``d`` divisible by 8), in two regions.

Model
-----
The rank step uses a linear model of the levels in the code's bits as signs:
``level(c) ~ alpha * sigma + sum_j beta_j * rho_j`` with ``sigma = 2 s - 1`` and
``rho_j = 2 bit_j(c) - 1``, fitted by least squares weighted by each level's probability for
a coordinate of a random unit vector of ``R^d`` (:func:`plane_model`; exact at 2 bits, where
``alpha = (c_3 + c_2) / 2`` and ``beta = (c_3 - c_2) / 2``). Then
``<R q, levels> ~ alpha <R q, sigma> + sum_j beta_j <R q, rho_j>``: the first term is what the
sign pass scores, the others need only the low planes.

Search (:func:`planes_topk`)
----------------------------
1. *Sign pass*: the fast scan (:func:`~.fastscan.fastscan_topk`) of the sign plane with the
   1-bit tables of levels ``(-alpha, alpha)``: score ``s1`` (with the row's scale and, for
   ``l2``, the squared norms as every fast scan), the ``S`` best rows (:func:`sign_shortlist`).
   Without a mask the scan starts from a *seed*: the ``r``-th best score of a strided sample
   of :data:`SAMPLE_BLOCKS` blocks (:func:`seed_rank`), below the ``S``-th best of the whole
   in all but rare queries; the native scan then only collects rows at or above it, and a
   query with fewer than ``S`` such rows is scanned again without it (the same rows either
   way: the seed changes the cost, never the result).
2. *Rank* (:func:`rank_ref`, native :func:`~vecindex_core._native.lut.planes_rank`): for
   each kept row, ``I_j = sum_t w_t * bit_j(t)`` over the low planes with the query's int8
   weights ``w = round(127 R q / max |R q|)`` (exact integers), then in float64
   ``est2 = s1 + m * scale * u * sum_j beta_j * (2 I_j - sum(w))`` with ``u = max |R q| / 127``
   and ``m`` 2 for ``l2`` (its score moves by twice the estimate) else 1; the ``kk`` best by
   ``(est2 desc, slot asc)`` (:func:`rank_size`).
3. *Rescore*: those rows' codes are put back together and scored by the float estimate
   (:func:`~.fastscan.rescore_shortlist`: the same scores as the full scan gives the same
   rows); the ``k`` best.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
import numpy.typing as npt

from .. import _native
from .._native.lut import planes_rank, planes_rescore, scan_plan
from .blocked import BlockedCodes
from .codes import pack_codes, unpack_codes
from .fastscan import (
    BLOCK,
    Products,
    fastscan_topk,
    nibble_luts,
    nibble_tables,
    pack_blocked,
    rescore_shortlist,
    simd_empty,
)
from .topk import _insert

__all__ = [
    "PLANE_BITS",
    "SAMPLE_BLOCKS",
    "PlaneCodes",
    "merge_planes",
    "plane_model",
    "planes_topk",
    "rank_ref",
    "rank_size",
    "rescore_ref",
    "seed_rank",
    "sign_shortlist",
    "split_planes",
]

FloatArray = npt.NDArray[np.float32]
U8Array = npt.NDArray[np.uint8]
SlotArray = npt.NDArray[np.int64]
Result = tuple[FloatArray, SlotArray, SlotArray]

#: Code widths with a planes layout.
PLANE_BITS = (2, 4)
#: Blocks of the sign plane in the seed's sample (strided over the store).
SAMPLE_BLOCKS = 64


def sign_shortlist(k: int, n: int) -> int:
    """Rows the sign pass keeps: ``max(256, 20 k)`` (at most ``n``). On the 200,000-row
    resample (k = 10) the staged search then returns 99.8% (4-bit) and 99.9% (2-bit) of the
    full scan's ids; 192 rows gave 99.6% and 99.8%, 128 rows 99.3% at 2 bits."""
    return int(min(n, max(256, 20 * k)))


def rank_size(k: int, bits: int, n: int) -> int:
    """Rows the rank step keeps for the exact rescore: ``max(24, 2 k)`` for 4-bit codes (the
    model is approximate; 32 rows gained 0.0002 of the ids, 20 lost 0.002), ``max(2 k,
    k + 10)`` for 2-bit (an exact model: the full scan's shortlist)."""
    s = max(24, 2 * k) if bits == 4 else max(2 * k, k + 10)
    return int(min(n, s))


def seed_rank(size: int, sample: int, n: int) -> int:
    """The rank in a sample of ``sample`` rows (of ``n``) whose score seeds a sign pass that
    keeps ``size`` rows: ``r = ceil(o * e)`` with ``e = size * sample / n`` the expected count
    of the sample above the ``size``-th best and ``o = min(4, 1 + 4 / sqrt(max(e, 1)))``, at
    least 6 and at most ``sample``."""
    e = size * sample / max(n, 1)
    over = min(4.0, 1.0 + 4.0 / math.sqrt(max(e, 1.0)))
    return int(min(sample, max(6, math.ceil(over * e))))


def plane_model(codebook: FloatArray, dim: int) -> tuple[float, npt.NDArray[np.float64]]:
    """``(alpha, beta)`` of the linear model of ``codebook`` (ascending, symmetric, ``2**b``
    levels) in its codes' bits as signs (see the module docstring), weighted by each level's
    probability for ``N(0, 1/dim)`` (a coordinate of a random unit vector). ``beta`` is
    float64 ``(b - 1,)``, plane 0 first (read-only; computed once per codebook)."""
    return _plane_model(np.asarray(codebook, dtype=np.float64).tobytes(), int(dim))


@functools.lru_cache(maxsize=64)
def _plane_model(codebook: bytes, dim: int) -> tuple[float, npt.NDArray[np.float64]]:
    lv = np.frombuffer(codebook, dtype=np.float64)
    b = lv.size.bit_length() - 1
    edges = np.concatenate([[-np.inf], (lv[1:] + lv[:-1]) / 2, [np.inf]])
    cdf = np.array([0.5 * (1 + math.erf(e * math.sqrt(dim / 2))) if np.isfinite(e)
                    else (0.0 if e < 0 else 1.0) for e in edges])
    w = np.maximum(np.diff(cdf), 1e-12)
    c = np.arange(lv.size)
    x = np.stack([2.0 * (c >> (b - 1)) - 1] + [2.0 * ((c >> j) & 1) - 1 for j in range(b - 1)],
                 axis=1)
    sw = np.sqrt(w)[:, None]
    coef = np.linalg.lstsq(x * sw, lv * sw[:, 0], rcond=None)[0]
    beta = np.ascontiguousarray(coef[1:], dtype=np.float64)
    beta.flags.writeable = False
    return float(coef[0]), beta


# --------------------------------------------------------------------------- layout
def split_planes(rows: U8Array, bits: int, dim: int) -> tuple[U8Array, U8Array]:
    """Packed ``bits``-bit rows uint8 ``(n, nbytes)`` -> their sign plane ``(n, nb1)`` and
    low planes ``(n, (bits - 1) nb1)`` (``nb1 = ceil(dim / 8)``; 1-bit packing)."""
    codes = unpack_codes(rows, bits, dim)
    sign = pack_codes((codes >> (bits - 1)).astype(np.uint8), 1)
    low = np.concatenate([pack_codes(((codes >> j) & 1).astype(np.uint8), 1)
                          for j in range(bits - 1)], axis=1)
    return sign, np.ascontiguousarray(low)


#: ``_SPREAD[w, b]``: bit ``i`` of byte ``b`` moved to bit ``w i`` (``w`` = 2 or 4).
_SPREAD = np.array([[sum(((b >> i) & 1) << (w * i) for i in range(8)) for b in range(256)]
                    for w in range(5)], dtype=np.int64)


@numba.njit(nogil=True, cache=True)
def _merge(sign: np.ndarray, low: np.ndarray, bits: int, nbytes: int, spread: np.ndarray,
           out: np.ndarray) -> None:
    nb1 = sign.shape[1]
    sp = spread[bits]
    for r in range(sign.shape[0]):
        for g in range(nb1):  # coordinates 8 g .. 8 g + 7: bytes bits g .. bits g + bits - 1
            v = sp[sign[r, g]] << (bits - 1)
            for j in range(bits - 1):
                v |= sp[low[r, j * nb1 + g]] << j
            for t in range(bits):
                if g * bits + t < nbytes:
                    out[r, g * bits + t] = (v >> (8 * t)) & 255


def merge_planes(sign: U8Array, low: U8Array, bits: int, dim: int) -> U8Array:
    """The inverse of :func:`split_planes`: packed ``bits``-bit rows."""
    out = np.zeros((sign.shape[0], (dim * bits + 7) // 8), dtype=np.uint8)
    _merge(np.ascontiguousarray(sign), np.ascontiguousarray(low), bits, out.shape[1], _SPREAD,
           out)
    return out


class PlaneCodes:
    """Packed ``bits``-bit code rows as a blocked sign plane and row-major low planes.

    Parameters
    ----------
    dim, bits : int
        Coordinates a row, and bits a code (:data:`PLANE_BITS`).

    Attributes
    ----------
    sign : BlockedCodes
        The sign planes (1-bit rows of ``nb1 = ceil(dim / 8)`` bytes).
    low : uint8 (capacity, (bits - 1) * nb1)
        The low planes of rows ``0 .. n - 1`` (rows past ``n`` are spare capacity).

    The methods mirror :class:`~.blocked.BlockedCodes` (rows in and out are packed
    ``bits``-bit rows; slots are int64 arrays of rows ``< len(self)``).
    """

    __slots__ = ("_n", "_sample", "_tail", "bits", "dim", "low", "nb1", "sign")

    def __init__(self, dim: int, bits: int) -> None:
        self.dim, self.bits = int(dim), int(bits)
        self.nb1 = (self.dim + 7) // 8
        self.sign = BlockedCodes(self.nb1)
        self.low: U8Array = np.zeros((0, (self.bits - 1) * self.nb1), dtype=np.uint8)
        self._n = 0
        self._sample: tuple[U8Array, SlotArray] | None = None
        self._tail: tuple[U8Array | None] | None = None

    @classmethod
    def from_rows(cls, rows: U8Array, dim: int, bits: int) -> PlaneCodes:
        """A store holding the packed rows uint8 ``(n, nbytes)``."""
        out = cls(dim, bits)
        out.append(rows)
        return out

    def __len__(self) -> int:
        return self._n

    def memory_bytes(self) -> int:
        """Bytes of both regions (capacity included) and the seed's sample."""
        extra = 0 if self._sample is None else self._sample[0].nbytes + self._sample[1].nbytes
        if self._tail is not None and self._tail[0] is not None:
            extra += self._tail[0].nbytes
        return int(self.sign.memory_bytes() + self.low.nbytes + extra)

    def get_rows(self, slots: SlotArray) -> U8Array:
        """Rows ``slots`` as packed ``bits``-bit rows ``(len(slots), nbytes)``."""
        return merge_planes(self.sign.get_rows(slots), self.low[slots], self.bits, self.dim)

    def to_rows(self) -> U8Array:
        """Every row, packed: a new uint8 ``(n, nbytes)`` array."""
        return self.get_rows(np.arange(self._n, dtype=np.int64))

    def subset(self, slots: SlotArray) -> BlockedCodes:
        """Rows ``slots`` in the full-scan layout (a mask's few allowed rows)."""
        return BlockedCodes.from_rows(self.get_rows(slots))

    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` rows."""
        self.sign.reserve(rows)
        if rows > self.low.shape[0]:
            low = np.zeros((int(rows), self.low.shape[1]), dtype=np.uint8)
            low[: self._n] = self.low[: self._n]
            self.low = low

    def append(self, rows: U8Array) -> None:
        """Append packed rows uint8 ``(m, nbytes)`` (capacity at least doubles)."""
        sign, low = split_planes(np.ascontiguousarray(rows, dtype=np.uint8), self.bits,
                                 self.dim)
        n0, n1 = self._n, self._n + rows.shape[0]
        if n1 > self.low.shape[0]:
            self.reserve(max(n1, 2 * self.low.shape[0]))
        self.sign.append(sign)
        self.low[n0:n1] = low
        self._n = n1
        self._sample = self._tail = None

    def compact(self, src: SlotArray, dst: SlotArray, n: int) -> None:
        """Swap-remove: copy rows ``src`` to ``dst``, then keep the first ``n`` rows."""
        self.sign.compact(src, dst, n)
        if src.size:
            self.low[dst] = self.low[src]
        self._n = int(n)
        self._sample = self._tail = None

    def sign_tail(self) -> U8Array | None:
        """The sign plane's :meth:`~.blocked.BlockedCodes.tail_block`, cached until the rows
        change."""
        if self._tail is None:
            self._tail = (self.sign.tail_block(),)
        return self._tail[0]

    def sample(self) -> tuple[U8Array, SlotArray]:
        """The seed's sample: :data:`SAMPLE_BLOCKS` complete blocks of the sign plane,
        strided over the store (a block's rows are its slots), as blocked codes and their
        int64 slots; cached until the rows change."""
        if self._sample is None:
            nblk = self._n // BLOCK
            m = min(SAMPLE_BLOCKS, nblk)
            step = nblk / max(m, 1)
            pick = (np.arange(m) * step + step / 2).astype(np.int64)
            self._sample = (np.ascontiguousarray(self.sign.blocks[pick]),
                            (pick[:, None] * BLOCK + np.arange(BLOCK)).ravel())
        return self._sample


# --------------------------------------------------------------------------- rank
@numba.njit(nogil=True, cache=True)
def _rank(cand: np.ndarray, s1: np.ndarray, low: np.ndarray, nb1: int, nplanes: int,
          w: np.ndarray, wsum: np.ndarray, u: np.ndarray, beta: np.ndarray, scale: np.ndarray,
          use_scale: bool, mul: float, out_e: np.ndarray, out_i: np.ndarray) -> None:
    nq, size = cand.shape
    dim = min(w.shape[1], 8 * nb1)  # the plane bytes' coordinates
    for q in range(nq):
        out_e[q] = -np.inf
        out_i[q] = -1
        held = 0
        for c in range(size):
            j = cand[q, c]
            if j < 0:
                continue
            acc = 0.0
            for p in range(nplanes):
                tot = np.int64(0)
                for d in range(dim):
                    byte = low[j, p * nb1 + (d >> 3)]
                    if (byte >> (d & 7)) & 1:
                        tot += np.int64(w[q, d])
                acc += beta[p] * np.float64(2 * tot - wsum[q])
            sc = np.float64(scale[j]) if use_scale else 1.0
            e = np.float64(s1[q, c]) + mul * (sc * (np.float64(u[q]) * acc))
            held = _insert(out_e[q], out_i[q], held, e, j)


def rank_ref(cand: SlotArray, s1: FloatArray, low: U8Array, nb1: int, nplanes: int,
             w: npt.NDArray[np.int8], wsum: SlotArray, u: FloatArray,
             beta: npt.NDArray[np.float64], kk: int, *, scale: FloatArray | None = None,
             l2: bool = False) -> SlotArray:
    """The rank step (numba reference): per query, the ``kk`` best of its candidate rows
    ``cand`` (int64 ``(nq, S)``, ``-1``: none) by ``est2`` (module docstring), best first,
    ``-1`` padding. ``w`` int8 ``(nq, >= dim)``, ``wsum`` int64 ``(nq,)``, ``u`` float32
    ``(nq,)``, ``beta`` float64 ``(nplanes,)``."""
    nq = cand.shape[0]
    out_e = np.empty((nq, kk), dtype=np.float64)
    out_i = np.empty((nq, kk), dtype=np.int64)
    sc = np.zeros(1, dtype=np.float32) if scale is None else scale
    _rank(np.ascontiguousarray(cand, dtype=np.int64), np.ascontiguousarray(s1), low, nb1,
          nplanes, w, wsum, u, beta, sc, scale is not None, 2.0 if l2 else 1.0, out_e, out_i)
    return out_i


@numba.njit(nogil=True, cache=True)
def _weights(rq: np.ndarray, w: np.ndarray, wsum: np.ndarray, u: np.ndarray) -> None:
    for q in range(rq.shape[0]):
        top = np.float32(0.0)
        for t in range(rq.shape[1]):
            a = abs(rq[q, t])
            top = a if a > top else top
        u[q] = top / np.float32(127.0)
        inv = np.float32(127.0) / top if top > 0 else np.float32(0.0)
        tot = np.int64(0)
        for t in range(rq.shape[1]):
            v = min(max(np.rint(rq[q, t] * inv), np.float32(-127.0)), np.float32(127.0))
            w[q, t] = np.int8(v)
            tot += np.int64(w[q, t])
        wsum[q] = tot


def query_weights(rq: FloatArray, width: int) -> tuple[npt.NDArray[np.int8], SlotArray,
                                                        FloatArray]:
    """The rank step's int8 weights ``(nq, width)`` (zero past ``d``), their sums (int64)
    and units ``u = max |R q| / 127`` (float32) of rotated queries ``rq``: ``w =
    round(R q * (127 / max |R q|))`` in float32, clipped to +-127 (0 for a zero query)."""
    nq = rq.shape[0]
    w = simd_empty((nq, width), np.int8)
    w.fill(0)
    wsum = np.empty(nq, dtype=np.int64)
    u = np.empty(nq, dtype=np.float32)
    _weights(np.ascontiguousarray(rq, dtype=np.float32), w, wsum, u)
    return w, wsum, u


# --------------------------------------------------------------------------- search
def planes_topk(
    store: PlaneCodes,
    rq: FloatArray,
    k: int,
    *,
    codebook: FloatArray,
    scale: FloatArray | None = None,
    sq_norms: FloatArray | None = None,
    q_sq_norms: FloatArray | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
    scale_max: float | None = None,
) -> Result:
    """Top-``k`` of ``store`` for rotated queries ``rq`` (float32 ``(nq, dim)``) by the staged
    search (module docstring); ``codebook``: the codes' levels; ``scale_max``: a bound on
    ``scale`` for the sign pass's block pruning (:func:`~.fastscan.fastscan_topk`). On the
    native kernels when they are active (the same results). Returns ``(scores, slots,
    counts)`` as :func:`~.fastscan.rescore_shortlist`."""
    native = _native.active_isa() is not None
    n, bits, nb1 = len(store), store.bits, store.nb1
    alpha, beta = plane_model(codebook, store.dim)
    size, kk = sign_shortlist(k, n), rank_size(k, bits, n)
    levels = np.array([-alpha, alpha], dtype=np.float32)
    _, luts, bias, delta = nibble_luts(rq, levels, 1, nb1)
    seed = None
    if native and mask is None and n >= 4 * BLOCK * SAMPLE_BLOCKS:  # the reference: no seed
        codes, slots = store.sample()
        threads, by_rows = scan_plan(rq.shape[0], n, nb1)
        # rows split over threads: each share needs size rows at or above the seed
        r = seed_rank(size, slots.size, n // threads if by_rows else n)
        ss, _ = fastscan_topk(luts, bias, delta, codes, slots.size, r, trusted=True,
                              scale=None if scale is None else scale[slots],
                              sq_norms=None if sq_norms is None else sq_norms[slots],
                              q_sq_norms=q_sq_norms, scale_max=scale_max)
        seed = np.ascontiguousarray(ss[:, r - 1])
    s1, cand = fastscan_topk(luts, bias, delta, store.sign.blocks, n, size, scale=scale,
                             sq_norms=sq_norms, q_sq_norms=q_sq_norms, mask=mask,
                             tail=store.sign_tail(), trusted=True, seed=seed,
                             scale_max=scale_max, sort=False)  # the rank step re-orders
    w, wsum, u = query_weights(rq, -(-store.dim // 64) * 64)
    step = planes_rank if native else rank_ref
    kept = step(cand, s1, store.low[:n], nb1, bits - 1, w, wsum, u, beta, kk, scale=scale,
                l2=sq_norms is not None)
    tables: FloatArray | Products = (
        Products(rq, np.asarray(codebook, dtype=np.float32), (store.dim * bits + 7) // 8)
        if bits == 4 else nibble_tables(rq, np.asarray(codebook, dtype=np.float32), bits,
                                        (store.dim * bits + 7) // 8))
    if not native:
        return rescore_ref(kept, store, tables, k, scale=scale, sq_norms=sq_norms,
                           q_sq_norms=q_sq_norms)
    rt, rqs, rlv = ((None, *tables.arrays()) if isinstance(tables, Products)
                    else (np.ascontiguousarray(tables), None, None))
    return planes_rescore(kept, store.sign.blocks, store.sign_tail(), n, store.low, nb1,
                          bits, k, rtables=rt, rqs=rqs, rlv=rlv, scale=scale,
                          sq_norms=sq_norms, q_sq_norms=q_sq_norms)


def rescore_ref(kept: SlotArray, store: PlaneCodes, tables: FloatArray | Products, k: int, *,
                scale: FloatArray | None = None, sq_norms: FloatArray | None = None,
                q_sq_norms: FloatArray | None = None) -> Result:
    """The rescore step (reference): the ``kept`` rows (int64 ``(nq, kk)``, ``-1``: none) of
    ``store`` put back together (:meth:`PlaneCodes.get_rows`) and scored by
    :func:`~.fastscan.rescore_shortlist` with ``tables`` (ties by the lower slot)."""
    flat = kept.ravel()
    real = flat >= 0
    rows = np.zeros((flat.size, (store.dim * store.bits + 7) // 8), dtype=np.uint8)
    if real.any():
        rows[real] = store.get_rows(flat[real])
    full = BLOCK * (flat.size // BLOCK)
    tail = pack_blocked(rows[full:]) if flat.size > full else None
    pos = np.where(kept >= 0, np.arange(flat.size, dtype=np.int64).reshape(kept.shape), -1)
    safe = np.maximum(flat, 0)
    return rescore_shortlist(
        tables, pack_blocked(rows[:full]), pos, k,
        scale=None if scale is None else scale[safe],
        sq_norms=None if sq_norms is None else sq_norms[safe], q_sq_norms=q_sq_norms,
        tail=tail, n=flat.size, keys=kept)
