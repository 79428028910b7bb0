"""``turboquant``: data-oblivious scalar quantization after a seeded random rotation.

TurboQuant (Zandieh et al., 2025) with a RaBitQ-style length correction (Gao & Long, 2024).
A (prepared) vector ``x`` is stored as

- ``codes``: ``u = R x / |x|`` (``R`` the seeded fast rotation of
  :mod:`._kernels.rotation`), each coordinate replaced by the index of its nearest level of
  the Lloyd-Max codebook ``codebook_`` for one coordinate of a uniformly random unit vector
  of ``R^dim`` (``2**bits`` levels), packed ``bits`` per coordinate
  (:func:`~._kernels.codes.pack_codes`): ``ceil(dim * bits / 8)`` bytes;
- ``scale = |x| / <u, c>``, float32, where ``c = codebook_[codes]`` is the dequantised unit
  vector (a zero vector gets all-zero codes and scale 0);
- for ``l2`` only, ``|x|^2``, float32.

So a vector costs ``ceil(dim * bits / 8) + 4`` bytes (``+ 4`` for ``l2``).

Estimator
---------
``<q, x>`` is estimated by ``scale * <R q, c> = |x| <R q, c> / <u, c>``. Writing
``R q = <R q, u> u + w`` with ``w`` orthogonal to ``u``, this is
``<q, x> + |x| <w, c> / <u, c>``: the error is the query's component orthogonal to the
vector, projected on the quantization residual. Over the random rotation (or isotropic
data) ``w`` is a uniformly random direction orthogonal to ``u``, so the error has mean zero:
the estimate is unbiased, unlike ``|x| <R q, c>`` (the plain dequantised product), which
shrinks every inner product by ``<u, c>`` (about 0.64, 0.88, 0.97, 0.99 at 1, 2, 3, 4
bits). Scores: ``cosine`` and ``ip`` report the estimate; ``l2`` reports
``-max(|q|^2 + |x|^2 - 2 estimate, 0)``.

Search
------
The query is rotated once; its per-code tables ``tables[j, c] = (R q)_j * codebook_[c]``
make the estimate additive over codes. 1-, 2- and 4-bit codes are kept in blocks of 32 rows
and searched by the uint8-table fast scan (:func:`~._kernels.blocked.fast_topk`: a
shortlist rescored by the float tables); from :data:`PLANES_MIN_ROWS` rows 2- and 4-bit
codes are kept as bit planes and searched in stages (:func:`~._kernels.planes.planes_topk`:
a sign-plane scan, a rank by the low planes, the same float rescore; see
``docs/native.md``). 3- and 8-bit codes stay row-major: small batches scan them with byte
lookup tables (:func:`~._kernels.codes.lut_topk`; 3-bit codes straddle bytes and use
per-code tables, :func:`~._kernels.codes.coord_lut_topk`), larger batches decode blocks of
rows and use BLAS (:func:`~._kernels.codes.decoded_topk`), chosen by
:func:`~._kernels.codes.prefer_decoded` (measured; see ``docs/quantization.md``). Masks are
applied inside the scan (a mask allowing under 1/8 of the rows gathers those rows first);
with ``keep_vectors`` a mask allowing at most ``max(EXACT_MASK_ROWS, ntotal / 64)`` rows is
searched exactly. ``params.rerank = r`` (needs ``keep_vectors``) rescores the ``r`` best
codes exactly.

Calibration
-----------
The index is data-oblivious and trained from construction. With ``calibrate=true`` it
needs ``train_size`` sample vectors first: the sample is split into queries (the first
``min(256, n / 4)``) and a database (the rest, encoded), each query's top-10 by estimated
score is found with the index's own search, and ``score' = a * score + b`` is fitted by least
squares of the exact scores (the metric's) on the estimated ones over those pairs: the
pairs whose scores a search reports, so the fit also corrects the upward selection bias of
a top-k. Reported scores of code-ranked results are mapped by it; the ranking is not
(``a > 0`` is enforced; a degenerate fit falls back to ``a = 1, b = 0``). Rescored and exact
results report exact scores.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from ._kernels.blocked import (
    GATHER_FRACTION,
    BlockedCodes,
    Tables,
    fast_topk,
    shortlist_size,
)
from ._kernels.codes import (
    COORD_LOOKUP_NS,
    DECODE_BLOCK,
    LOOKUP_NS,
    byte_luts,
    codes_nbytes,
    coord_lut_topk,
    decoded_topk,
    dequantize,
    lut_topk,
    pack_codes,
    prefer_decoded,
    quantize_nearest,
)
from ._kernels.fastscan import (
    FAST_SCAN_BITS,
    Products,
    dot_levels,
    dot_weights,
    fast_scan_fits,
    rotated_luts,
)
from ._kernels.hamming import rescore_topk
from ._kernels.planes import PLANE_BITS, PlaneCodes, planes_topk
from ._kernels.rotation import (
    ROTATION_VERSION,
    lloyd_max_codebook,
    rotate,
    rotation_matrix,
    rotation_params,
)
from ._kernels.topk import finalize_heaps, init_heaps, sq_norms
from ._native.lut import dot_cpu
from .base import Moves, VectorIndex, apply_score_map, fit_score_map
from .errors import IndexFormatError
from .hashing import KEEP_VECTORS, RERANK, SEED, TRAIN_SIZE, _check_array
from .ivf import BY_RESIDUAL, CALIBRATE, IVF_PARAMS, IVF_SEARCH, CodedIVFIndex
from .registry import Param, register
from .types import FloatMatrix, Metric, SlotArray
from .validation import as_slots

__all__ = ["FAST_SCAN_BITS", "GATHER_FRACTION", "IVFTQIndex", "TurboQuantIndex", "shortlist_size"]

#: Bytes of byte lookup tables built at once by the LUT route (queries go in chunks).
_LUT_BYTES = 32 << 20
#: From this many rows 2- and 4-bit codes are kept as bit planes and searched in stages
#: (:mod:`._kernels.planes`; parameter ``planes``), below it in the blocked layout. Measured
#: (``docs/native.md``): from about this size the staged search is at par with the full scan
#: batched and faster from 60,000 rows, where the sign pass's fixed costs (a sample scan,
#: the rank and rescore of a few hundred rows) are small beside the full scan it replaces.
PLANES_MIN_ROWS = 32768
#: Calibration: at most this many sample vectors act as queries, and each contributes the
#: pairs with its top ``_CALIBRATION_K`` estimated neighbours.
_CALIBRATION_QUERIES = 256
_CALIBRATION_K = 10

Result = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]


class _Codes:
    """The per-row arrays of a set of encoded vectors (views; no copies)."""

    __slots__ = ("codes", "scale_max", "scales", "sq_norms")

    def __init__(self, codes: npt.NDArray[np.uint8] | BlockedCodes | PlaneCodes,
                 scales: npt.NDArray[np.float32],
                 sq_norms: npt.NDArray[np.float32] | None,
                 scale_max: float | None = None) -> None:
        self.codes = codes  # row-major, or the fast scan's store (blocks or bit planes)
        self.scales = scales
        self.sq_norms = sq_norms
        self.scale_max = scale_max  # a bound on scales (the fast scan's pruning), or None


@functools.lru_cache(maxsize=64)
def _dot_levels(codebook: bytes) -> tuple[npt.NDArray[np.uint8], float]:
    """:func:`~._kernels.fastscan.dot_levels` of a float32 codebook's bytes, once per
    codebook (~10 us a call, on every search before)."""
    levels, cs = dot_levels(np.frombuffer(codebook, dtype=np.float32))
    levels.flags.writeable = False
    return levels, cs


@register(
    "turboquant",
    params=[
        Param("bits", int, 4, "bits per coordinate", choices=(1, 2, 3, 4, 8)),
        SEED,
        KEEP_VECTORS,
        Param("planes", bool, True,
              "from PLANES_MIN_ROWS rows keep 2- and 4-bit codes as bit planes and search them "
              "in stages (faster at that size; on clustered embeddings 99.9% of the full "
              "scan's ids, on isotropic data fewer: set false to always scan every code)"),
        Param("calibrate", bool, False,
              "fit score' = a * score + b to exact scores on train_size sample vectors "
              "(needs training); changes reported scores, not the ranking"),
        TRAIN_SIZE,
    ],
    search_params=[RERANK],
)
class TurboQuantIndex(VectorIndex):
    """TurboQuant: rotation + Lloyd-Max scalar codes with an unbiased length correction.

    See the module docstring for the encoding, estimator, search routes and calibration.

    Attributes
    ----------
    codebook_ : ndarray of float32, shape (2**bits,)
        The levels (ascending) of :func:`~._kernels.rotation.lloyd_max_codebook`.
    calibration_ : ndarray of float64, shape (2,) or None
        ``(a, b)`` of the score map when ``calibrate`` and trained.

    Memory (:meth:`memory_bytes`): codes, scales (and ``l2`` squared norms) of the allocated
    rows, kept vectors, the codebook and the rotation's signs and permutations
    (``3 x dim`` float32 signs twice and ``3 x dim`` int64 indices, shared by every index of
    the same ``dim`` and ``seed`` but counted here). No ``dim x dim`` matrix is held.
    """

    def __init__(self, dim: int, metric: Metric = "cosine", **params: Any) -> None:
        super().__init__(dim, metric, **params)
        self._check_rerank(self.search_defaults)
        self.bits = int(self.params["bits"])
        self.seed = int(self.params["seed"])
        self.nbytes = codes_nbytes(self.dim, self.bits)
        self.codebook_: npt.NDArray[np.float32] = lloyd_max_codebook(self.dim, self.bits)
        self.calibration_: npt.NDArray[np.float64] | None = None
        # row-major codes (3/8 bits); 1/2/4 bits: the blocked store (complete blocks of 32
        # rows blocked, the last n % 32 rows row-major, packed into a block per search)
        self._codes = np.empty((0, self.nbytes), dtype=np.uint8)
        self._store: BlockedCodes | PlaneCodes = BlockedCodes(self.nbytes)
        self._scales = np.empty(0, dtype=np.float32)
        self._sq_norms = np.empty(0, dtype=np.float32)
        self._vectors = np.empty((0, self.dim), dtype=np.float32)
        self._n = 0
        self._scale_max: float | None = None  # cached bound on the scales (None: stale)

    # ----------------------------------------------------------------- properties
    @property
    def ntotal(self) -> int:
        return self._n

    @property
    def is_trained(self) -> bool:
        return not self.params["calibrate"] or self.calibration_ is not None

    @property
    def min_train_size(self) -> int:
        return int(self.params["train_size"]) if self.params["calibrate"] else 0

    @property
    def keeps_vectors(self) -> bool:
        return bool(self.params["keep_vectors"])

    @property
    def l2(self) -> bool:
        """Whether squared norms are stored (metric ``l2``)."""
        return self.metric == "l2"

    @property
    def fast_scan(self) -> bool:
        """Whether codes are kept in the blocked layout and searched by the uint8 fast scan
        (``bits`` in :data:`FAST_SCAN_BITS`)."""
        return fast_scan_fits(self.bits, self.nbytes)

    @property
    def codes(self) -> npt.NDArray[np.uint8]:
        """Read-only packed codes, uint8 (ntotal, ceil(dim * bits / 8)), row-major (a view;
        for 1/2/4-bit codes, stored blocked, a converted copy)."""
        view = self._store.to_rows() if self.fast_scan else self._codes[: self._n]
        view.flags.writeable = False
        return view

    @property
    def scales(self) -> npt.NDArray[np.float32]:
        """Read-only view of the length-correction scales, float32 (ntotal,)."""
        view = self._scales[: self._n]
        view.flags.writeable = False
        return view

    def memory_bytes(self) -> int:
        signs, perms = rotation_params(self.dim, self.seed)
        total = (self._codes.nbytes + self._store.memory_bytes() + self._scales.nbytes
                 + self._sq_norms.nbytes + self._vectors.nbytes + self.codebook_.nbytes
                 + signs.nbytes + perms.nbytes)
        if self.calibration_ is not None:
            total += self.calibration_.nbytes
        return int(total)

    def bytes_per_vector(self) -> int:
        """Stored bytes of one row: codes + scale (+ squared norm for ``l2``)."""
        return self.nbytes + 4 + (4 if self.l2 else 0)

    # ----------------------------------------------------------------- encoding
    def encode(self, x: FloatMatrix) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32],
                                              npt.NDArray[np.float32]]:
        """Encode prepared vectors (see :meth:`prepare`).

        Returns
        -------
        codes : uint8 (n, ceil(dim * bits / 8))
        scales : float32 (n,)
            ``|x| / <u, c>`` (0 for a zero vector).
        sq_norms : float32 (n,)
            ``|x|^2``.
        """
        xn = sq_norms(x)
        norms = np.sqrt(xn)
        nonzero = norms > 0
        u = rotate(x, self.seed)
        u /= np.where(nonzero, norms, np.float32(1))[:, None]
        codes, dots = quantize_nearest(u, self.codebook_)
        codes[~nonzero] = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            scales = np.where(nonzero & (dots > 0), norms / dots, 0.0).astype(np.float32)
        return pack_codes(codes, self.bits), scales, xn

    def decode(self, slots: object) -> FloatMatrix:
        """Reconstructions ``scale * R^T c`` of stored rows, float32 (n, dim).

        Their inner product with a query is the index's estimate (up to rounding); useful for
        inspection and tests, not used by search.
        """
        s = as_slots(slots, self._n, unique=False)
        rows = self._store.get_rows(s) if self.fast_scan else self._codes[s]
        c = dequantize(rows, self.bits, self.dim, self.codebook_)
        rec = c @ rotation_matrix(self.dim, self.seed)
        return np.ascontiguousarray(rec * self._scales[s][:, None], dtype=np.float32)

    # ----------------------------------------------------------------- storage
    def _capacity(self) -> int:
        return self._scales.shape[0]

    def _reserve(self, n: int) -> None:
        if n <= self._capacity():
            return
        cap = max(n, 2 * self._capacity())
        old = self._n

        def grow(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
            new = np.empty(shape, dtype=a.dtype)
            new[:old] = a[:old]
            return new

        if self.fast_scan:  # complete blocks only: the partial last one is the store's tail
            self._store.reserve(cap)
        else:
            self._codes = grow(self._codes, (cap, self.nbytes))
        self._scales = grow(self._scales, (cap,))
        if self.l2:
            self._sq_norms = grow(self._sq_norms, (cap,))
        if self.keeps_vectors:
            self._vectors = grow(self._vectors, (cap, self.dim))

    def _add(self, x: FloatMatrix) -> None:
        codes, scales, xn = self.encode(x)
        n0, n1 = self._n, self._n + x.shape[0]
        self._reserve(n1)
        if self.fast_scan:
            self._store.append(codes)
        else:
            self._codes[n0:n1] = codes
        self._scales[n0:n1] = scales
        if self.l2:
            self._sq_norms[n0:n1] = xn
        if self.keeps_vectors:
            self._vectors[n0:n1] = x
        self._n = n1
        self._scale_max = None
        self._relayout()

    def _scale_bound(self) -> float | None:
        """The largest scale (the fast scans' block pruning bound; cached until the rows
        change), or None when one is not a finite number >= 0."""
        if self._scale_max is None and self._n:
            m = float(self._scales[: self._n].max())
            lo = float(self._scales[: self._n].min())
            self._scale_max = m if np.isfinite(m) and lo >= 0 else np.nan
        return None if self._scale_max is None or math.isnan(self._scale_max) else self._scale_max

    def _relayout(self) -> None:
        """Bit planes from :data:`PLANES_MIN_ROWS` rows of 2- or 4-bit codes (with the
        ``planes`` parameter), the blocked layout below: a function of the row count alone,
        so a reloaded index searches as the saved one did (the same codes either way)."""
        store = self._store
        if not self.fast_scan or self.bits not in PLANE_BITS:
            return
        want = bool(self.params["planes"]) and self._n >= PLANES_MIN_ROWS
        if want and isinstance(store, BlockedCodes):
            self._store = PlaneCodes.from_rows(store.to_rows(), self.dim, self.bits)
        elif not want and isinstance(store, PlaneCodes):
            self._store = BlockedCodes.from_rows(store.to_rows())

    def _remove(self, slots: SlotArray, moves: Moves) -> None:
        src, dst = moves.src, moves.dst
        if self.fast_scan:
            self._store.compact(src, dst, self._n - slots.size)
        else:
            self._codes[dst] = self._codes[src]
        self._scales[dst] = self._scales[src]
        if self.l2:
            self._sq_norms[dst] = self._sq_norms[src]
        if self.keeps_vectors:
            self._vectors[dst] = self._vectors[src]
        self._n -= slots.size
        self._scale_max = None
        self._relayout()

    def _get_vectors(self, slots: SlotArray) -> FloatMatrix:
        return self._vectors[slots]

    def _rows(self) -> _Codes:
        n = self._n
        if self.fast_scan:
            return _Codes(self._store, self._scales[:n], self._sq_norms[:n] if self.l2 else None,
                          self._scale_bound())
        return _Codes(self._codes[:n], self._scales[:n], self._sq_norms[:n] if self.l2 else None)

    # ----------------------------------------------------------------- training
    def _train(self, x: FloatMatrix) -> None:
        if not self.params["calibrate"]:
            return  # data-oblivious: nothing to learn
        self.calibration_ = self._fit_calibration(x)

    def _fit_calibration(self, x: FloatMatrix) -> npt.NDArray[np.float64]:
        nq = max(1, min(_CALIBRATION_QUERIES, x.shape[0] // 4))
        q, base = x[:nq], x[nq:]
        codes, scales, xn = self.encode(base)
        rows = _Codes(BlockedCodes.from_rows(codes) if self.fast_scan else codes, scales,
                      xn if self.l2 else None)
        k = min(_CALIBRATION_K, base.shape[0])
        est, slots, _ = self._code_search(q, k, rows, None)
        ok = slots >= 0
        exact = np.einsum("rkd,rd->rk", base[np.maximum(slots, 0)].astype(np.float64),
                          q.astype(np.float64))
        if self.l2:
            qn = np.einsum("rd,rd->r", q.astype(np.float64), q.astype(np.float64))
            exact = -np.maximum(qn[:, None] + xn.astype(np.float64)[np.maximum(slots, 0)]
                                - 2 * exact, 0)
        return fit_score_map(est[ok], exact[ok])

    # ----------------------------------------------------------------- search
    def _search(
        self, q: FloatMatrix, k: int, params: Mapping[str, Any],
        mask: npt.NDArray[np.bool_] | None,
    ) -> Result:
        rerank = self._check_rerank(params)
        allowed = self._exact_route(mask)
        if allowed is not None:
            return self._exact_subset(q, k, allowed)
        if rerank:
            size = min(max(rerank, k), self._n)
            _, short, _ = self._code_search(q, size, self._rows(), mask)
            return rescore_topk(q, self._vectors, short, k, l2=self.l2)
        scores, slots, counts = self._code_search(q, k, self._rows(), mask)
        return apply_score_map(scores, slots, self.calibration_), slots, counts

    def _code_search(
        self, q: FloatMatrix, k: int, rows: _Codes, mask: npt.NDArray[np.bool_] | None
    ) -> Result:
        """Top-``k`` by the code estimate over ``rows`` (optionally masked)."""
        qn = sq_norms(q) if self.l2 else None
        codes, scales, xn = rows.codes, rows.scales, rows.sq_norms
        if isinstance(codes, PlaneCodes) and (
                mask is None or np.count_nonzero(mask) >= GATHER_FRACTION * len(codes)):
            return planes_topk(codes, rotate(q, self.seed), k, codebook=self.codebook_,
                               scale=scales, sq_norms=xn, q_sq_norms=qn, mask=mask,
                               scale_max=rows.scale_max)
        if isinstance(codes, (BlockedCodes, PlaneCodes)):  # planes: a mask's few rows
            return self._fast_search(q, qn, k, codes, scales, xn, mask, rows.scale_max)
        rq = rotate(q, self.seed)
        row_slots: SlotArray | None = None
        if mask is not None:
            allowed = np.flatnonzero(mask)
            if allowed.size < GATHER_FRACTION * scales.shape[0]:
                codes = codes[allowed]
                scales = scales[allowed]
                xn = None if xn is None else xn[allowed]
                row_slots, mask = allowed, None
        nq, n = q.shape[0], codes.shape[0]
        byte_route = self.bits in (1, 2, 4, 8)
        lookups = self.nbytes if byte_route else self.dim
        if prefer_decoded(nq, lookups, self.dim,
                          lookup_ns=LOOKUP_NS if byte_route else COORD_LOOKUP_NS):
            return decoded_topk(rq, self._decoder(codes), n, k, scale=scales, sq_norms=xn,
                                q_sq_norms=qn, row_slots=row_slots, mask=mask)
        hs, hi = init_heaps(nq, k)
        width = 256 if byte_route else 1 << self.bits
        chunk = max(1, _LUT_BYTES // (4 * width * lookups))
        for c0 in range(0, nq, chunk):
            c1 = min(c0 + chunk, nq)
            tables = rq[c0:c1, :, None] * self.codebook_[None, None, :]
            kw: dict[str, Any] = {
                "scale": scales, "sq_norms": xn, "row_slots": row_slots, "mask": mask,
                "q_sq_norms": None if qn is None else qn[c0:c1],
            }
            if byte_route:
                lut_topk(byte_luts(tables, self.bits), codes, hs[c0:c1], hi[c0:c1], **kw)
            else:
                coord_lut_topk(tables, codes, self.bits, hs[c0:c1], hi[c0:c1], **kw)
        return finalize_heaps(hs, hi)

    def _fast_search(
        self, q: FloatMatrix, qn: npt.NDArray[np.float32] | None, k: int,
        store: BlockedCodes | PlaneCodes, scales: npt.NDArray[np.float32],
        xn: npt.NDArray[np.float32] | None, mask: npt.NDArray[np.bool_] | None,
        scale_max: float | None = None,
    ) -> Result:
        """Fast scan of the blocked store (:func:`~._kernels.blocked.fast_topk`): a
        shortlist of :func:`shortlist_size` rows by the uint8-table score (native when
        built), rescored by the float code estimate. 4-bit codes on a CPU with AVX-512 VNNI
        and VBMI (:func:`~._native.lut.dot_cpu`) are shortlisted by the dot mode: int8
        levels times int8 query weights, exact integer sums. 2-bit tables are quantized per
        coordinate (additive: :func:`~._kernels.fastscan.quantize_parts`), which lets the
        VBMI kernel regroup the coordinates by three for batches of queries."""

        def tables(a: int, b: int) -> Tables:  # the queries rotated in the same call
            return rotated_luts(q[a:b], self.seed, self.codebook_, self.bits, self.nbytes,
                                additive=self.bits == 2)

        dot = None
        if self.bits == 4 and dot_cpu():
            rq = rotate(q, self.seed)
            levels, cs = _dot_levels(self.codebook_.tobytes())
            dot = (levels, lambda a, b: dot_weights(rq[a:b], self.nbytes, cs),
                   lambda a, b: Products(rq[a:b], self.codebook_, self.nbytes))
        # `shortlist_size` read from this module at each call (benchmarks substitute it)
        return fast_topk(store, tables, q.shape[0], k, scale=scales, sq_norms=xn,
                         q_sq_norms=qn, mask=mask, shortlist=shortlist_size, dot=dot,
                         scale_max=scale_max)

    def _decoder(self, codes: npt.NDArray[np.uint8]) -> Callable[[int, int], FloatMatrix]:
        """``decode(a, b)``: rows ``a:b`` of ``codes`` as their levels, one reused buffer."""
        buf = np.empty((min(DECODE_BLOCK, max(codes.shape[0], 1)), self.dim), dtype=np.float32)

        def decode(a: int, b: int) -> FloatMatrix:
            out = buf if b - a <= buf.shape[0] else None
            return dequantize(codes, self.bits, self.dim, self.codebook_, a, b, out)

        return decode

    # ----------------------------------------------------------------- persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        n = self._n
        arrays: dict[str, np.ndarray] = {
            "codes": self.codes, "scales": self._scales[:n], "codebook": self.codebook_,
        }
        if self.l2:
            arrays["sq_norms"] = self._sq_norms[:n]
        if self.keeps_vectors:
            arrays["vectors"] = self._vectors[:n]
        if self.calibration_ is not None:
            arrays["calibration"] = self.calibration_
        return {"rotation": ROTATION_VERSION}, arrays

    def _set_state(self, state: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        if state.get("rotation") != ROTATION_VERSION:
            raise IndexFormatError(
                f"turboquant index uses rotation {state.get('rotation')!r}, this version "
                f"implements {ROTATION_VERSION!r}"
            )
        codebook = arrays.get("codebook")
        _check_array("codebook", codebook, np.float32, (1 << self.bits,))
        assert codebook is not None
        if not np.isfinite(codebook).all() or (np.diff(codebook) <= 0).any():
            raise IndexFormatError("array 'codebook' must be finite and strictly increasing")
        codes = arrays.get("codes")
        _check_array("codes", codes, np.uint8, (None, self.nbytes))
        assert codes is not None
        n = codes.shape[0]
        _check_array("scales", arrays.get("scales"), np.float32, (n,))
        if self.l2:
            _check_array("sq_norms", arrays.get("sq_norms"), np.float32, (n,))
        if self.keeps_vectors:
            _check_array("vectors", arrays.get("vectors"), np.float32, (n, self.dim))
        calibration = arrays.get("calibration")
        if calibration is not None:
            _check_array("calibration", calibration, np.float64, (2,))
            if not np.isfinite(calibration).all() or calibration[0] <= 0:
                raise IndexFormatError("array 'calibration' must be finite with a > 0")
        elif self.params["calibrate"] and n:
            raise IndexFormatError(f"turboquant index holds {n} rows but no calibration")
        # the stored codebook is the one the codes index (a later version may compute the
        # levels differently; the file stays valid)
        self.codebook_ = np.array(codebook)
        self.codebook_.flags.writeable = False
        if self.fast_scan:
            self._store = BlockedCodes.from_rows(codes)
        else:
            self._codes = np.array(codes)
        self._scales = np.array(arrays["scales"])
        self._sq_norms = (np.array(arrays["sq_norms"]) if self.l2
                          else np.empty(0, dtype=np.float32))
        self._vectors = (np.array(arrays["vectors"]) if self.keeps_vectors
                         else np.empty((0, self.dim), dtype=np.float32))
        self.calibration_ = None if calibration is None else np.array(calibration)
        self._n = n
        self._scale_max = None
        self._relayout()


@register(
    "ivf_tq",
    params=[*IVF_PARAMS, Param("bits", int, 4, "bits per coordinate", choices=(1, 2, 3, 4, 8)),
            BY_RESIDUAL, KEEP_VECTORS, CALIBRATE],
    search_params=[*IVF_SEARCH, RERANK],
)
class IVFTQIndex(CodedIVFIndex):
    """IVF with TurboQuant codes in the lists.

    Each row's residual from its list centroid (``by_residual``, the default) or the vector
    itself is encoded as :class:`TurboQuantIndex` encodes a vector (rotation, Lloyd-Max codes,
    length-correction scale), so ``q . x`` is estimated by ``q . c_l + scale * <R q, c>``
    without bias. The codec is data-oblivious: only the coarse quantizer is trained. See
    :class:`~vecindex_core.ivf.CodedIVFIndex` for the scores, ``rerank`` and ``calibrate``.

    Memory: ``ceil(dim * bits / 8) + 4`` bytes a row (``l2`` adds 4), 8 bytes a row of list
    bookkeeping, the centroids, the codebook and the rotation's signs and permutations.
    """

    has_scale = True

    def _setup(self) -> None:
        super()._setup()
        self.codec = TurboQuantIndex(self.dim, "ip", bits=int(self.params["bits"]),
                                     seed=int(self.params["seed"]))

    @property
    def code_bytes(self) -> int:
        return self.codec.nbytes

    @property
    def code_bits(self) -> int:
        return self.codec.bits

    def _nibble_luts(self, q: FloatMatrix) -> Tables:
        tq = self.codec
        return rotated_luts(q, tq.seed, tq.codebook_, tq.bits, tq.nbytes)

    def _fit_codec(self, r: FloatMatrix) -> None:
        """Nothing to learn: the rotation and codebook are fixed by ``seed`` and ``dim``."""

    def _encode_codes(self, r: FloatMatrix) -> dict[str, np.ndarray]:
        codes, scales, _ = self.codec.encode(r)
        return {"codes": codes, "scale": scales}

    def _lut_bytes(self) -> int:
        tq = self.codec
        return 4 * (tq.nbytes * 256 if tq.bits in (1, 2, 4, 8) else tq.dim << tq.bits)

    def _lut_scan(self, q: FloatMatrix, hs: np.ndarray, hi: np.ndarray, **kw: Any) -> None:
        tq = self.codec
        tables = rotate(q, tq.seed)[:, :, None] * tq.codebook_[None, None, :]
        codes = self._arena["codes"]
        if tq.bits in (1, 2, 4, 8):
            lut_topk(byte_luts(tables, tq.bits), codes, hs, hi, **kw)
        else:
            coord_lut_topk(tables, codes, tq.bits, hs, hi, **kw)

    def _payload_model_bytes(self) -> int:
        return self.codec.memory_bytes()

    def _codec_arrays(self) -> dict[str, np.ndarray]:
        return {"codebook": self.codec.codebook_}

    def _set_codec_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        codebook = arrays.get("codebook")
        _check_array("codebook", codebook, np.float32, (1 << self.codec.bits,))
        if codebook is None or not np.array_equal(codebook, self.codec.codebook_):
            raise IndexFormatError("array 'codebook' differs from this version's Lloyd-Max "
                                   f"codebook for dim={self.dim}, bits={self.codec.bits}")
