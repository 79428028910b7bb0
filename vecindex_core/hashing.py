"""Binary hashing indexes: ``simhash``, ``pcahash``, ``itq`` and multi-table ``lsh``.

All four encode a vector as the signs of a linear projection,
``bits = (x' - mean_) @ components_ > thresholds_`` (``x'`` is ``x``, unit-normalised first
when ``normalize_inputs``), packed into little-endian uint64 words. They differ in where the
projection comes from:

- ``simhash``: random hyperplanes (:func:`~._kernels.projections.random_projection`), no
  training unless ``use_median_thresholds``;
- ``pcahash``: the top ``num_bits`` principal directions (exact, by ``eigh``), thresholds at
  the training medians (or zero after centring);
- ``itq``: PCA followed by the learned ITQ rotation ``rotation_`` (``components_`` is the
  product), thresholds zero;
- ``lsh``: ``num_tables`` independent ``num_bits``-bit random-hyperplane keys, each a bucket
  key of its table (see :class:`LSHIndex`).

Search ranks by Hamming distance with a fused XOR + popcount + top-k scan
(:mod:`._kernels.hamming`). With ``keep_vectors=True`` the float32 originals are kept and
``params.rerank = r`` rescores the ``r`` nearest codes exactly. Without rescoring, scores are
derived from the Hamming distance ``h`` of ``b`` bits by :func:`hamming_score`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from ._kernels.hamming import hamming_topk, pack_bits, rescore_topk, words_for
from ._kernels.lsh import build_tables, lsh_scan, relabel_tables
from ._kernels.projections import (
    itq_rotation,
    median_thresholds,
    pca,
    random_projection,
)
from ._kernels.topk import finalize_heaps, init_heaps
from ._threads import get_num_threads, map_chunks, one_blas_thread
from .base import (
    EXACT_MASK_ROWS,
    Moves,
    VectorIndex,
    _empty_result,
    _pad_result,
    normalize_rows,
)
from .errors import (
    IndexFormatError,
    InvalidArgumentError,
    InvalidParameterError,
    NotTrainedError,
)
from .registry import Param, register
from .types import FloatMatrix, Metric, SearchResult, SlotArray

__all__ = [
    "EXACT_MASK_ROWS",
    "PENDING_ROWS",
    "BinaryHashIndex",
    "ITQIndex",
    "LSHIndex",
    "PCAHashIndex",
    "SimHashIndex",
    "hamming_score",
]

#: lsh: rows added since the last bucket rebuild are scanned linearly until they exceed
#: ``max(PENDING_ROWS, rows / 8)``; then every table is re-sorted (amortised O(log n) a row).
PENDING_ROWS = 256
#: With no mask, or a mask allowing under this fraction of rows, the Hamming scan gathers
#: the allowed codes first instead of skipping the others inside the scan.
_GATHER_FRACTION = 0.125

Result = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]


def hamming_score(dist: npt.ArrayLike, bits: int, metric: Metric) -> npt.NDArray[np.float32]:
    """The score reported for a Hamming distance when results are not rescored exactly.

    Random-hyperplane bits collide with probability ``1 - angle / pi``, so ``h`` differing
    bits out of ``b`` estimate the angle ``pi h / b``. The score is that angle's cosine,
    ``cos(pi h / b)``, for ``cosine`` and ``ip``, and the squared distance of two unit
    vectors at that angle, negated, ``2 cos(pi h / b) - 2``, for ``l2``. It decreases with
    ``h``, so it ranks exactly as the distance does; for learned codes (``pcahash``,
    ``itq``) and vectors that are not unit-norm it is an ordering, not an estimate.

    Parameters
    ----------
    dist : array_like of int
        Hamming distances, ``0..bits``.
    bits : int
        Code length ``b``.
    metric : {"cosine", "ip", "l2"}

    Returns
    -------
    ndarray of float32, the shape of ``dist``.
    """
    cos = np.cos(np.pi * np.asarray(dist, dtype=np.float64) / bits)
    return (2 * cos - 2 if metric == "l2" else cos).astype(np.float32)


# The declared parameters the kinds share (Param is frozen: each kind takes these objects,
# or a copy with another default through dataclasses.replace).
SEED = Param("seed", int, 0, "seed of every random step", low=0, high=2**32 - 1)
NORMALIZE = Param("normalize_inputs", bool, False,
                  "unit-normalise vectors before hashing (cosine inputs already are)")
KEEP_VECTORS = Param("keep_vectors", bool, False,
                     "keep float32 originals (rerank, get_vectors, exact small filtered searches)")
DISTRIBUTION = Param("projection_distribution", str, "gaussian",
                     "random hyperplanes: orthogonal Gaussian directions or +-1 entries",
                     choices=("gaussian", "rademacher"))
MEDIAN = Param("use_median_thresholds", bool, False,
               "threshold each bit at its training median (balanced bits; needs training)")
TRAIN_SIZE = Param("train_size", int, 1000,
                   "vectors gathered before automatic training (and the fewest train() accepts)",
                   low=2, high=1 << 30)
RERANK = Param("rerank", int, 0,
               "rescore this many nearest codes exactly (needs keep_vectors); 0 = Hamming only",
               low=0, high=1 << 20)


class BinaryHashIndex(VectorIndex):
    """Shared machinery of the binary hashing kinds (not registered itself).

    Subclasses set the projection in :meth:`_fit` (or at construction when they need no
    training): ``components_`` float32 ``(dim, groups * group_bits)``, ``mean_`` float32
    ``(dim,)`` and ``thresholds_`` float32 ``(groups * group_bits,)``.

    Storage is ``ntotal x words`` uint64 codes (``words = groups * ceil(group_bits / 64)``),
    plus ``ntotal x dim`` float32 with ``keep_vectors``; the projection
    (``dim x bits`` float32 and two vectors) is the fixed overhead.
    """

    #: Number of independent bit groups (tables); each starts on a word boundary.
    groups: int = 1

    def __init__(self, dim: int, metric: Metric = "cosine", **params: Any) -> None:
        super().__init__(dim, metric, **params)
        self._check_rerank(self.search_defaults)
        self.components_: FloatMatrix | None = None
        self.mean_: npt.NDArray[np.float32] | None = None
        self.thresholds_: npt.NDArray[np.float32] | None = None
        self._codes = np.empty((self.words, 0), dtype=np.uint64)  # word-major
        self._vectors = np.empty((0, self.dim), dtype=np.float32)
        self._n = 0

    # ----------------------------------------------------------------- properties
    @property
    def group_bits(self) -> int:
        """Bits per group (the code length when there is one group)."""
        return int(self.params["num_bits"])

    @property
    def code_bits(self) -> int:
        """Bits in a whole code (all groups)."""
        return self.groups * self.group_bits

    @property
    def words(self) -> int:
        """uint64 words per code."""
        return self.groups * words_for(self.group_bits)

    @property
    def needs_training(self) -> bool:
        """Whether this configuration learns from data (PCA, ITQ or median thresholds)."""
        return bool(self.params.get("use_median_thresholds", False))

    @property
    def ntotal(self) -> int:
        return self._n

    @property
    def is_trained(self) -> bool:
        return self.components_ is not None

    @property
    def min_train_size(self) -> int:
        return int(self.params["train_size"]) if self.needs_training else 0

    @property
    def keeps_vectors(self) -> bool:
        return bool(self.params["keep_vectors"])

    @property
    def codes(self) -> npt.NDArray[np.uint64]:
        """Read-only view of the packed codes, uint64 (ntotal, words).

        Stored word-major (the transpose of this view is contiguous); use
        ``np.ascontiguousarray`` for a row-major copy.
        """
        view = self._codes[:, : self._n].T
        view.flags.writeable = False
        return view

    def memory_bytes(self) -> int:
        model = sum(getattr(self, name).nbytes for name in self._model_shapes()
                    if getattr(self, name) is not None)
        return int(self._codes.nbytes + self._vectors.nbytes + model)

    def _model_shapes(self) -> dict[str, tuple[int, ...]]:
        """The learned (or drawn) arrays, by attribute name, with their shapes."""
        bits = self.code_bits
        return {"components_": (self.dim, bits), "mean_": (self.dim,), "thresholds_": (bits,)}

    # ----------------------------------------------------------------- encoding
    def _hash_input(self, x: FloatMatrix) -> FloatMatrix:
        return normalize_rows(x) if self.params["normalize_inputs"] else x

    def project(self, x: FloatMatrix) -> FloatMatrix:
        """Signed margins ``(x' - mean_) @ components_ - thresholds_``, float32 (n, bits).

        ``x`` are prepared vectors (see :meth:`prepare`). Raises :class:`NotTrainedError`
        before training.
        """
        components, mean, thresholds = self.components_, self.mean_, self.thresholds_
        if components is None or mean is None or thresholds is None:
            raise NotTrainedError(
                f"{self.spec} must be trained before encoding: call train() with at least "
                f"{self.min_train_size} vectors"
            )
        proj = (self._hash_input(x) - mean) @ components
        proj -= thresholds
        return np.ascontiguousarray(proj, dtype=np.float32)

    def encode(self, x: FloatMatrix) -> npt.NDArray[np.uint64]:
        """Packed codes of prepared vectors, uint64 (n, words)."""
        return pack_bits(self.project(x) > 0, self.groups)

    def _random_projection(self) -> None:
        """Data-oblivious hyperplanes through the origin (simhash and lsh)."""
        self.components_ = random_projection(
            self.dim, self.code_bits, str(self.params["projection_distribution"]),
            int(self.params["seed"]),
        )
        self.mean_ = np.zeros(self.dim, dtype=np.float32)
        self.thresholds_ = np.zeros(self.code_bits, dtype=np.float32)

    def _train(self, x: FloatMatrix) -> None:
        if not self.needs_training:  # data-oblivious: nothing to learn
            return
        if self._n:
            raise InvalidArgumentError(
                f"{self.spec} holds {self._n} rows encoded with its current model; train an "
                "empty index (or remove the rows first)"
            )
        # one BLAS thread: a multi-threaded product splits into other tiles, rounds in other
        # places, and ITQ's signs (and so its rotation) would depend on the thread count
        with one_blas_thread():
            self._fit(self._hash_input(x))
        self._on_codes_changed()

    def _fit(self, x: FloatMatrix) -> None:
        """Learn the projection from (hash-input) training vectors."""
        self._random_projection()
        self.thresholds_ = median_thresholds(self.project(x))

    # ----------------------------------------------------------------- storage
    def _reserve(self, n: int) -> None:
        if n <= self._codes.shape[1]:
            return
        cap = max(n, 2 * self._codes.shape[1])
        codes = np.empty((self.words, cap), dtype=np.uint64)
        codes[:, : self._n] = self._codes[:, : self._n]
        self._codes = codes
        if self.keeps_vectors:
            vecs = np.empty((cap, self.dim), dtype=np.float32)
            vecs[: self._n] = self._vectors[: self._n]
            self._vectors = vecs

    def _add(self, x: FloatMatrix) -> None:
        codes = self.encode(x)
        n0, n1 = self._n, self._n + x.shape[0]
        self._reserve(n1)
        self._codes[:, n0:n1] = codes.T
        if self.keeps_vectors:
            self._vectors[n0:n1] = x
        self._n = n1

    def _remove(self, slots: SlotArray, moves: Moves) -> None:
        self._codes[:, moves.dst] = self._codes[:, moves.src]
        if self.keeps_vectors:
            self._vectors[moves.dst] = self._vectors[moves.src]
        self._n -= slots.size

    def _on_codes_changed(self) -> None:
        """Called when every code may have changed (training, load)."""

    def _get_vectors(self, slots: SlotArray) -> FloatMatrix:
        return self._vectors[slots]

    # ----------------------------------------------------------------- search
    def _search(
        self, q: FloatMatrix, k: int, params: Mapping[str, Any],
        mask: npt.NDArray[np.bool_] | None,
    ) -> Result:
        rerank = self._check_rerank(params)
        allowed = self._exact_route(mask)
        if allowed is not None:
            return self._exact_subset(q, k, allowed)
        return self._hash_search(q, k, params, rerank, mask)

    def _hamming(
        self, qcodes: npt.NDArray[np.uint64], k: int, mask: npt.NDArray[np.bool_] | None
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
        """Hamming top-k over the stored codes; a sparse mask gathers its rows first."""
        if mask is not None:
            allowed = np.flatnonzero(mask)
            if allowed.size < _GATHER_FRACTION * self._n:
                dist, rows = hamming_topk(qcodes, self._codes[:, allowed], k,
                                          max_bits=self.code_bits)
                return dist, np.where(rows >= 0, allowed[np.maximum(rows, 0)], -1)
        return hamming_topk(qcodes, self._codes, k, max_bits=self.code_bits, mask=mask,
                            n=self._n)

    def _hash_search(
        self, q: FloatMatrix, k: int, params: Mapping[str, Any], rerank: int,
        mask: npt.NDArray[np.bool_] | None,
    ) -> Result:
        qcodes = self.encode(q)
        if rerank:
            _, short = self._hamming(qcodes, min(max(rerank, k), self._n), mask)
            return rescore_topk(q, self._vectors, short, k, l2=self.metric == "l2")
        dist, slots = self._hamming(qcodes, k, mask)
        return self._score_lut[dist], slots, np.count_nonzero(slots >= 0, axis=1).astype(np.int64)

    @functools.cached_property
    def _score_lut(self) -> npt.NDArray[np.float32]:
        """:func:`hamming_score` of every distance ``0..bits``, then ``-inf`` (index -1)."""
        dist = np.arange(self.code_bits + 1)
        lut = np.append(hamming_score(dist, self.code_bits, self.metric), -np.inf)
        return lut.astype(np.float32)

    # ----------------------------------------------------------------- persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays: dict[str, np.ndarray] = {"codes": np.ascontiguousarray(self.codes)}
        if self.keeps_vectors:
            arrays["vectors"] = self._vectors[: self._n]
        for name in self._model_shapes():
            value = getattr(self, name)
            if value is not None:
                arrays[name.rstrip("_")] = value
        return {"trained": self.is_trained}, arrays

    def _set_state(self, state: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        if state.get("trained"):
            for name, shape in self._model_shapes().items():
                value = arrays.get(name.rstrip("_"))
                _check_array(name, value, np.float32, shape)
                setattr(self, name, np.array(value))
        codes = arrays.get("codes")
        _check_array("codes", codes, np.uint64, (None, self.words))
        assert codes is not None
        n = codes.shape[0]
        if n and not state.get("trained"):
            raise IndexFormatError(f"{self.kind.name} index holds {n} codes but no model")
        if self.keeps_vectors:
            _check_array("vectors", arrays.get("vectors"), np.float32, (n, self.dim))
            self._vectors = np.array(arrays["vectors"])
        self._codes = np.ascontiguousarray(codes.T)
        self._n = n
        if self.is_trained:
            self._on_codes_changed()


def _check_array(
    name: str, value: np.ndarray | None, dtype: type, shape: tuple[int | None, ...] | None
) -> None:
    ok = (
        value is not None and value.dtype == dtype and shape is not None
        and value.ndim == len(shape)
        and all(s is None or s == v for s, v in zip(shape, value.shape, strict=True))
    )
    if not ok:
        got = None if value is None else f"{value.dtype} {value.shape}"
        raise IndexFormatError(f"array {name!r} must be {np.dtype(dtype)} {shape}, got {got}")


@register(
    "simhash",
    params=[
        Param("num_bits", int, 128, "code length in bits", low=1, high=4096),
        DISTRIBUTION, SEED, MEDIAN, NORMALIZE, KEEP_VECTORS, TRAIN_SIZE,
    ],
    search_params=[RERANK],
)
class SimHashIndex(BinaryHashIndex):
    """SimHash (Charikar 2002): signs of random hyperplane projections, packed.

    Data-oblivious (no training) unless ``use_median_thresholds``, which thresholds each bit
    at its median over ``train_size`` training vectors (as faiss ``IndexLSH`` with
    ``train_thresholds``).
    """

    def __init__(self, dim: int, metric: Metric = "cosine", **params: Any) -> None:
        super().__init__(dim, metric, **params)
        if not self.needs_training:
            self._random_projection()


@register(
    "pcahash",
    params=[
        Param("num_bits", int, 0, "code length in bits, at most dim; 0: min(128, dim)",
              low=0, high=4096),
        SEED, replace(MEDIAN, default=True), NORMALIZE, KEEP_VECTORS, TRAIN_SIZE,
    ],
    search_params=[RERANK],
)
class PCAHashIndex(BinaryHashIndex):
    """PCA hashing: signs of the top ``num_bits`` principal components of the training data.

    One bit per principal direction, so ``num_bits <= dim`` (default ``min(128, dim)``).
    Training is exact and deterministic (``eigh`` of the float64 covariance; signs fixed so
    each direction's largest entry is positive). Learned state: ``mean_``, ``components_``
    (``dim x num_bits``), ``thresholds_`` (per-bit medians, or zero when
    ``use_median_thresholds=false``).
    """

    def __init__(self, dim: int, metric: Metric = "cosine", **params: Any) -> None:
        super().__init__(dim, metric, **params)
        if self.group_bits > self.dim:
            raise InvalidParameterError(
                f"index {self.kind.name!r}: num_bits={self.group_bits} exceeds dim={self.dim}; "
                f"{self.kind.name} has one bit per principal direction, so at most {self.dim}"
            )

    @property
    def group_bits(self) -> int:
        """``num_bits``, or ``min(128, dim)`` when it is 0 (the default)."""
        return int(self.params["num_bits"]) or min(128, self.dim)

    @property
    def needs_training(self) -> bool:
        return True

    def _fit(self, x: FloatMatrix) -> None:
        self.mean_, self.components_, _ = pca(x, self.group_bits)
        self.thresholds_ = np.zeros(self.code_bits, dtype=np.float32)
        if self.params["use_median_thresholds"]:
            self.thresholds_ = median_thresholds(self.project(x))


@register(
    "itq",
    params=[
        Param("num_bits", int, 0, "code length in bits, at most dim; 0: min(128, dim)",
              low=0, high=4096),
        Param("num_iterations", int, 50, "ITQ alternating updates", low=0, high=10_000),
        SEED, NORMALIZE, KEEP_VECTORS, TRAIN_SIZE,
    ],
    search_params=[RERANK],
)
class ITQIndex(PCAHashIndex):
    """Iterative quantization (Gong & Lazebnik 2011): PCA, then a learned rotation.

    ``num_iterations`` alternations of ``B = sign(V R)`` and the orthogonal Procrustes update
    of ``R`` from a seeded random orthogonal start. Learned state: ``mean_``, ``rotation_``
    (``num_bits x num_bits``), ``components_`` (PCA directions times ``rotation_``) and
    ``thresholds_`` (zero).
    """

    def __init__(self, dim: int, metric: Metric = "cosine", **params: Any) -> None:
        super().__init__(dim, metric, **params)
        self.rotation_: FloatMatrix | None = None

    def _model_shapes(self) -> dict[str, tuple[int, ...]]:
        return {**super()._model_shapes(), "rotation_": (self.group_bits, self.group_bits)}

    def _fit(self, x: FloatMatrix) -> None:
        mean, directions, _ = pca(x, self.group_bits)
        v = np.asarray((x - mean) @ directions, dtype=np.float32)
        self.rotation_ = itq_rotation(v, int(self.params["num_iterations"]),
                                      int(self.params["seed"]))
        self.mean_ = mean
        self.components_ = np.ascontiguousarray(directions @ self.rotation_, dtype=np.float32)
        self.thresholds_ = np.zeros(self.code_bits, dtype=np.float32)


@register(
    "lsh",
    params=[
        Param("num_bits", int, 12, "bits of each table's bucket key", low=1, high=64),
        Param("num_tables", int, 32, "hash tables (independent keys)", low=1, high=256),
        DISTRIBUTION, SEED, MEDIAN, NORMALIZE, replace(KEEP_VECTORS, default=True), TRAIN_SIZE,
    ],
    search_params=[
        Param("num_probes", int, 16,
              "extra buckets probed per table, least-confident bits flipped first",
              low=0, high=4096),
        RERANK,
    ],
)
class LSHIndex(BinaryHashIndex):
    """Multi-table random-hyperplane LSH with multi-probe and exact rescoring.

    Each of ``num_tables`` tables hashes a vector to a ``num_bits``-bit key (signs of its own
    random hyperplanes, thresholded at zero or, with ``use_median_thresholds``, at training
    medians). Buckets are sorted key arrays with the slots beside them (CSR-style; see
    :mod:`._kernels.lsh`); a query's candidates are the union of its bucket in every table
    plus, with ``params.num_probes = p``, the ``p`` next most likely buckets of each table
    (query-directed multi-probe: least-confident bits flipped first).

    Scoring: with ``keep_vectors`` (the default) every candidate is scored exactly, or with
    ``params.rerank = r`` only the ``r`` candidates nearest by Hamming distance over the
    concatenated keys; without vectors, candidates are ranked by that distance and scored by
    :func:`hamming_score`.

    Fallback: a query whose buckets hold fewer than ``k`` allowed rows is answered from a
    full Hamming scan of the concatenated keys over the allowed rows (its
    ``max(rerank, 4 k)`` nearest, rescored exactly when vectors are kept), so results are
    never short while the index holds ``k`` allowed rows.

    Updates: added rows are *pending* (scanned linearly) until they exceed
    ``max(PENDING_ROWS, rows / 8)``, then the sorted arrays are rebuilt; removed rows become
    tombstones until they exceed a quarter of the arrays. Memory: ``ntotal x num_tables``
    uint64 keys, plus 12 bytes per row per table for the sorted arrays (a uint64 key copy
    and an int32 slot), plus the vectors when kept.
    """

    def __init__(self, dim: int, metric: Metric = "cosine", **params: Any) -> None:
        super().__init__(dim, metric, **params)
        self.groups = int(self.params["num_tables"])
        self._codes = np.empty((self.words, 0), dtype=np.uint64)
        self._reset_tables()
        if not self.needs_training:
            self._random_projection()

    def memory_bytes(self) -> int:
        tables = self._skeys.nbytes + self._sslots.nbytes + self._in_main.nbytes
        return super().memory_bytes() + int(tables)

    # ----------------------------------------------------------------- buckets
    def _reset_tables(self) -> None:
        self._skeys = np.empty((self.groups, 0), dtype=np.uint64)
        self._sslots = np.empty((self.groups, 0), dtype=np.int32)
        self._in_main = np.zeros(0, dtype=np.bool_)
        self._tombstones = 0
        self._num_pending = 0
        self._pending_rows: SlotArray | None = np.empty(0, dtype=np.int64)

    @property
    def _pending(self) -> SlotArray:
        """Rows not in the sorted arrays, found once after each change (O(1) updates)."""
        rows = self._pending_rows
        if rows is None:
            rows = self._pending_rows = np.flatnonzero(~self._in_main[: self._n])
        return rows

    def _rebuild(self) -> None:
        self._skeys, self._sslots = build_tables(self._codes[:, : self._n])
        self._in_main = np.ones(self._codes.shape[1], dtype=np.bool_)
        self._tombstones = 0
        self._num_pending = 0
        self._pending_rows = np.empty(0, dtype=np.int64)

    def _on_codes_changed(self) -> None:
        self._rebuild()

    def _add(self, x: FloatMatrix) -> None:
        n0 = self._n
        if n0 + x.shape[0] >= 2**31:  # slots are int32 in the sorted arrays
            raise InvalidArgumentError(
                f"lsh holds at most 2**31 - 1 rows; adding {x.shape[0]} to {n0} is too many"
            )
        super()._add(x)
        n1 = self._n
        main = self._skeys.shape[1] - self._tombstones
        if self._num_pending + n1 - n0 > max(PENDING_ROWS, main // 8):
            self._rebuild()
            return
        if self._in_main.shape[0] < self._codes.shape[1]:
            grown = np.zeros(self._codes.shape[1], dtype=np.bool_)
            grown[: self._in_main.shape[0]] = self._in_main
            self._in_main = grown
        self._in_main[n0:n1] = False
        self._num_pending += n1 - n0
        self._pending_rows = None

    def _remove(self, slots: SlotArray, moves: Moves) -> None:
        # the sorted arrays find an entry by its key, so relabel before the keys move
        self._tombstones += relabel_tables(
            self._skeys, self._sslots, self._skeys.shape[1], self._codes, self._in_main,
            slots, moves.src, moves.dst,
        )
        self._num_pending -= int(np.count_nonzero(~self._in_main[slots]))
        self._in_main[moves.dst] = self._in_main[moves.src]
        super()._remove(slots, moves)
        self._in_main[self._n :] = False
        self._pending_rows = None
        if self._tombstones > self._skeys.shape[1] // 4:
            self._rebuild()

    # ----------------------------------------------------------------- search
    def _hash_search(
        self, q: FloatMatrix, k: int, params: Mapping[str, Any], rerank: int,
        mask: npt.NDArray[np.bool_] | None,
    ) -> Result:
        scores, slots, counts, _ = self._scan(q, k, params, rerank, mask)
        return scores, slots, counts

    def search_stats(
        self, q: object, k: int, *, params: Any = None, mask: object = None
    ) -> tuple[SearchResult, npt.NDArray[np.int64]]:
        """:meth:`search` through the buckets, also reporting candidates per query.

        Always takes the bucket path (never the exact route for a small mask), so the
        numbers describe the LSH itself.

        Returns
        -------
        result : SearchResult
        candidates : ndarray of int64, shape (nq,)
            Allowed rows each query found in its probed buckets: the rows scored exactly
            when vectors are kept and ``rerank`` is 0 (at most ``rerank`` of them are
            otherwise); ``-1`` where the fallback answered.
        """
        qp, kk, sp, m = self._search_args(q, k, params, mask)
        if self.ntotal == 0 or (m is not None and not m.any()):
            return _empty_result(qp.shape[0], kk), np.zeros(qp.shape[0], dtype=np.int64)
        scores, slots, counts, cand = self._scan(
            qp, min(kk, self.ntotal), sp, self._check_rerank(sp), m)
        return _pad_result(scores, slots, counts, kk), cand

    def _scan(
        self, q: FloatMatrix, k: int, params: Mapping[str, Any], rerank: int,
        mask: npt.NDArray[np.bool_] | None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64],
               npt.NDArray[np.int64]]:
        nq = q.shape[0]
        probes = int(params["num_probes"])
        proj = self.project(q)
        qkeys = pack_bits(proj > 0, self.groups)
        margins = (
            np.abs(proj).reshape(nq, self.groups, self.group_bits)
            if probes else np.zeros((nq, self.groups, 1), dtype=np.float32)
        )
        hs, hi = init_heaps(nq, k)
        ncand = np.zeros(nq, dtype=np.int64)
        use_mask = mask is not None
        m = mask if mask is not None else np.ones(1, dtype=np.bool_)
        keep = self.keeps_vectors
        vecs = self._vectors if keep else np.empty((1, self.dim), dtype=np.float32)

        def work(a: int, b: int) -> None:
            lsh_scan(q, vecs, keep, self.metric == "l2", qkeys, margins, probes, self._skeys,
                     self._sslots, self._skeys.shape[1], self._pending, self._codes, self._n,
                     m, use_mask, rerank, a, b, hs, hi, ncand)

        parts = max(1, min(get_num_threads(), nq // 4))
        if parts == 1:
            work(0, nq)
        else:
            map_chunks(work, nq, parts)
        scores, slots, counts = finalize_heaps(hs, hi)
        if not keep:  # heap scores are -distance; padding (-inf) maps to -1, the last entry
            scores = self._score_lut[np.where(slots >= 0, -scores, -1).astype(np.int64)]
        allowed = self._n if mask is None else int(np.count_nonzero(mask))
        short = np.flatnonzero((ncand < k) & (ncand < allowed))
        if short.size:
            size = min(max(rerank, 4 * k), allowed)
            fs, fslots, fcounts = self._fallback(q[short], qkeys[short], k, size, mask)
            scores[short], slots[short], counts[short] = fs, fslots, fcounts
            ncand[short] = -1
        return scores.astype(np.float32), slots, counts, ncand

    def _fallback(
        self, q: FloatMatrix, qkeys: npt.NDArray[np.uint64], k: int, size: int,
        mask: npt.NDArray[np.bool_] | None,
    ) -> Result:
        dist, short = self._hamming(qkeys, size, mask)
        if self.keeps_vectors:
            return rescore_topk(q, self._vectors, short, k, l2=self.metric == "l2")
        dist, short = dist[:, :k], short[:, :k]
        return self._score_lut[dist], short, np.count_nonzero(short >= 0, axis=1).astype(np.int64)
