"""Inverted-file indexes: the shared :class:`IVFIndex` machinery and ``ivf_flat``.

A coarse quantizer (:class:`~vecindex_core.kmeans.KMeans`, ``nlist`` centroids; spherical
for ``cosine``) splits the vectors into inverted lists; a query scans only the lists of its
``nprobe`` best centroids. Kinds differ in what a list holds for each vector (its
*payload*): the float32 vector (``ivf_flat``), PQ or TurboQuant codes (``ivf_pq``,
``ivf_tq``), or a learned compression (``ivf_ae``).

Layout. Lists live in one arena per payload array: list ``l`` holds entries
``start[l] : start[l] + size[l]`` with room up to ``cap[l]``, contiguous, so a list is one
BLAS operand or one scan range. ``eslot[e]`` is the slot of entry ``e`` and ``entry[s]`` the
entry of slot ``s`` (both int32). Adding to a full list moves it to the end of the arena with
twice the room (amortised O(1) per row); the arena is compacted when dead space exceeds the
live lists. Removing compacts the affected lists in place (order kept), so lists never hold
holes; the swap-remove's slot moves only relabel entries. Within a list, entries are in
insertion order, so adding in pieces or in one batch gives the same index.

Blocked payloads. A kind may keep a payload array in the fast-scan layout of
:mod:`~vecindex_core._kernels.fastscan` (blocks of 32 entries, :meth:`IVFIndex._blocked_payload`):
then every list starts on, and reserves room in, whole blocks (``start`` and ``cap`` are
multiples of 32), so a probed list is a run of blocks whose last one may be partial. Rows
are read and written through :meth:`IVFIndex._take` and :meth:`IVFIndex._put`, so the other
payloads and the saved format (row-major, list by list) do not change.
"""

from __future__ import annotations

import abc
import importlib.util
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from ._kernels import fastscan
from ._kernels.blocked import Tables, ivf_shortlist_size
from ._kernels.fastscan import (
    BLOCK,
    fast_scan_fits,
    gather_rows,
    rescore_shortlist,
    scatter_rows,
)
from ._kernels.hamming import rescore_topk
from ._kernels.ivf import probe_ranges, push_tile, range_values, ratio_keep, scan_dense_ranges
from ._kernels.topk import SMALL_BATCH, dense_topk, finalize_heaps, init_heaps, sq_norms
from ._threads import one_blas_thread
from .base import Moves, VectorIndex, apply_score_map, fit_score_map
from .compress import DEFAULT_OBJECTIVE, OBJECTIVES, Compressor, require_torch, train_compressor
from .errors import IndexFormatError, InvalidArgumentError, InvalidParameterError
from .hashing import KEEP_VECTORS, RERANK, SEED, _check_array
from .registry import Param, register
from .types import FloatMatrix, Metric, SlotArray

__all__ = ["CodedIVFIndex", "IVFAEIndex", "IVFFlatIndex", "IVFIndex"]

Result = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]
Heaps = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]
#: Rows per vector index are int32 in the lists.
MAX_ROWS = 2**31 - 1

# The declared parameters every IVF kind shares.
NLIST = Param("nlist", int, 256, "coarse k-means cells (inverted lists)", low=1, high=1 << 20)
NITER = Param("niter", int, 20, "k-means iterations of the coarse quantizer", low=1, high=1000)
TRAIN_SIZE = Param("train_size", int, 0,
                   "vectors gathered before automatic training (and the fewest train() "
                   "accepts); 0: 30 x nlist", low=0, high=1 << 30)
NPROBE = Param("nprobe", int, 16, "lists scanned per query (at most nlist)", low=1, high=1 << 20)
RATIO = Param("ratio_threshold", float, 0.0,
              "skip probed lists whose centroid score is below this fraction of the best "
              "(sign-aware, see ratio_keep); 0 = scan every probed list", low=0.0, high=1.0)
IVF_PARAMS = (NLIST, NITER, SEED, TRAIN_SIZE)
IVF_SEARCH = (NPROBE, RATIO)
BY_RESIDUAL = Param("by_residual", bool, True,
                    "encode each vector's residual from its list centroid (else the vector)")
CALIBRATE = Param("calibrate", bool, False,
                  "fit score' = a * score + b to exact scores on a training sample; changes "
                  "reported scores of code-ranked results, not the ranking")
#: Bytes of lookup tables built at once (queries are scanned in chunks below it).
LUT_BYTES = 32 << 20
#: Calibration: sample queries (at most) and results per query whose scores are fitted.
CALIBRATION_QUERIES = 256
CALIBRATION_K = 10


class IVFIndex(VectorIndex):
    """Shared machinery of the inverted-file kinds (not registered itself).

    Subclasses declare their per-vector payload (:meth:`_payload_fields`), encode vectors
    into it (:meth:`_encode`) and scan probed lists (:meth:`_scan_lists`); training the
    payload's own model (PQ codebooks, a compressor) goes in :meth:`_fit_payload`.

    Learned state: ``centroids_`` float32 ``(nlist, dim)``. Search: the ``nprobe`` best
    centroids per query (by the index metric), minus those ``ratio_threshold`` skips; a query
    whose probed lists hold fewer than ``k`` allowed rows is searched again over every list,
    so results are never short while the index holds ``k`` allowed rows.
    """

    def __init__(self, dim: int, metric: Metric = "cosine", **params: Any) -> None:
        super().__init__(dim, metric, **params)
        self._check_rerank(self.search_defaults)
        self._setup()
        self.centroids_: FloatMatrix | None = None
        self._csq = np.zeros(1, dtype=np.float32)
        self._reset_storage()

    def _reset_storage(self) -> None:
        """Empty lists (the model is kept)."""
        nlist = self.nlist
        self._start = np.zeros(nlist, dtype=np.int64)
        self._size = np.zeros(nlist, dtype=np.int64)
        self._cap = np.zeros(nlist, dtype=np.int64)
        self._fields = self._payload_fields()
        self._blocked = frozenset(self._blocked_payload())
        self._align = BLOCK if self._blocked else 1
        self._arena: dict[str, np.ndarray] = {
            name: self._new_field(name, 0) for name in self._fields
        }
        self._eslot = np.empty(0, dtype=np.int32)
        self._used = 0
        self._entry = np.empty(0, dtype=np.int32)
        self._vectors = np.empty((0, self.dim), dtype=np.float32)
        self._n = 0

    # ----------------------------------------------------------------- properties
    @property
    def nlist(self) -> int:
        """Number of inverted lists."""
        return int(self.params["nlist"])

    @property
    def ntotal(self) -> int:
        return self._n

    @property
    def is_trained(self) -> bool:
        return self.centroids_ is not None

    @property
    def min_train_size(self) -> int:
        return max(int(self.params["train_size"]) or 30 * self.nlist, self.nlist)

    @property
    def keeps_originals(self) -> bool:
        """Whether float32 originals are stored beside the payload, in slot order."""
        return bool(self.params.get("keep_vectors", False))

    @property
    def keeps_vectors(self) -> bool:
        return self.keeps_originals

    @property
    def list_sizes(self) -> npt.NDArray[np.int64]:
        """Rows in each inverted list, int64 (nlist,)."""
        return self._size.copy()

    def memory_bytes(self) -> int:
        arena = sum(a.nbytes for a in self._arena.values())
        model = 0 if self.centroids_ is None else self.centroids_.nbytes
        books = self._eslot.nbytes + self._entry.nbytes + self._start.nbytes * 3
        return int(arena + model + books + self._vectors.nbytes + self._payload_model_bytes())

    # ----------------------------------------------------------------- hooks
    def _setup(self) -> None:
        """Build the payload's codec from the validated parameters (before the arena)."""

    @abc.abstractmethod
    def _payload_fields(self) -> dict[str, tuple[type, tuple[int, ...]]]:
        """Per-entry payload arrays: name -> (dtype, trailing shape)."""

    def _blocked_payload(self) -> tuple[str, ...]:
        """Payload arrays (uint8 ``(nb,)`` rows) kept in the blocked fast-scan layout."""
        return ()

    @abc.abstractmethod
    def _encode(self, x: FloatMatrix, labels: npt.NDArray[np.int64]) -> dict[str, np.ndarray]:
        """Payload rows of prepared vectors ``x`` assigned to lists ``labels``."""

    @abc.abstractmethod
    def _scan_lists(
        self, q: FloatMatrix, lists: npt.NDArray[np.int64], keep: npt.NDArray[np.bool_],
        heaps: Heaps, mask: npt.NDArray[np.bool_] | None,
    ) -> None:
        """Score the kept probed ``lists`` (nq, R) of each query into ``heaps``."""

    def _fit_payload(self, x: FloatMatrix, labels: npt.NDArray[np.int64]) -> None:
        """Train the payload's own model (after the coarse quantizer); optional."""

    def _payload_model_bytes(self) -> int:
        return 0

    def _payload_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {}

    def _set_payload_state(
        self, state: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> None:
        """Restore what :meth:`_payload_state` returned."""

    # ----------------------------------------------------------------- training
    def _train(self, x: FloatMatrix) -> None:
        from .kmeans import KMeans

        if self._n:
            raise InvalidArgumentError(
                f"{self.spec} holds {self._n} rows encoded with its current model; train an "
                "empty index (or remove the rows first)"
            )
        km = KMeans(self.nlist, metric=self.metric, n_iter=int(self.params["niter"]),
                    seed=int(self.params["seed"]))
        km.fit(x)
        self._set_centroids(np.ascontiguousarray(km.cluster_centers_, dtype=np.float32))
        self._fit_payload(x, self._assign(x))

    def _set_centroids(self, centroids: FloatMatrix) -> None:
        self.centroids_ = centroids
        self._csq = sq_norms(centroids) if self.metric == "l2" else np.zeros(1, np.float32)

    def _centroid_topk(self, q: FloatMatrix, n: int) -> tuple[np.ndarray, np.ndarray]:
        assert self.centroids_ is not None
        scores, lists, _ = dense_topk(q, self.centroids_, n, l2=self.metric == "l2",
                                      data_sq_norms=self._csq if self.metric == "l2" else None)
        return scores, lists

    def _assign(self, x: FloatMatrix) -> npt.NDArray[np.int64]:
        """The list of each prepared vector: its best centroid by the index metric."""
        return np.ascontiguousarray(self._centroid_topk(x, 1)[1][:, 0])

    # ----------------------------------------------------------------- storage
    def _aligned(self, n: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Entry counts rounded up to whole blocks when a payload is blocked."""
        a = self._align
        return n if a == 1 else -(-n // a) * a

    def _new_field(self, name: str, entries: int) -> np.ndarray:
        """Zeroed storage of payload ``name`` for ``entries`` entries (a multiple of the
        alignment)."""
        dtype, tail = self._fields[name]
        if name in self._blocked:
            return np.zeros((entries // BLOCK, tail[0] * BLOCK), dtype=dtype)
        return np.zeros((entries, *tail), dtype=dtype)

    def _take(self, name: str, ents: npt.NDArray[np.int64]) -> np.ndarray:
        """Rows of payload ``name`` at entries ``ents`` (row-major copies)."""
        arr = self._arena[name]
        if name in self._blocked:
            return gather_rows(arr, ents, self._fields[name][1][0])
        return arr[ents]

    def _put(self, name: str, ents: npt.NDArray[np.int64], rows: np.ndarray) -> None:
        """Write row-major ``rows`` of payload ``name`` at entries ``ents``."""
        if name in self._blocked:
            scatter_rows(self._arena[name], ents, rows)
        else:
            self._arena[name][ents] = rows

    def _copy_entries(self, src: int, dst: int, count: int) -> None:
        """Copy entries ``src : src + count`` to ``dst`` (both aligned, not overlapping)."""
        for name, arr in self._arena.items():
            if name in self._blocked:
                b = -(-count // BLOCK)
                arr[dst // BLOCK : dst // BLOCK + b] = arr[src // BLOCK : src // BLOCK + b]
            else:
                arr[dst : dst + count] = arr[src : src + count]
        self._eslot[dst : dst + count] = self._eslot[src : src + count]
        self._entry[self._eslot[dst : dst + count]] = np.arange(dst, dst + count,
                                                                  dtype=np.int32)

    def _reserve_slots(self, n: int) -> None:
        if n > self._entry.shape[0]:
            grown = np.empty(max(n, 2 * self._entry.shape[0], 64), dtype=np.int32)
            grown[: self._n] = self._entry[: self._n]
            self._entry = grown
        if self.keeps_originals and n > self._vectors.shape[0]:
            vecs = np.empty((max(n, 2 * self._vectors.shape[0], 64), self.dim), np.float32)
            vecs[: self._n] = self._vectors[: self._n]
            self._vectors = vecs

    def _compact_if_sparse(self) -> None:
        """Compact when the arena's dead room (moved or emptied lists) exceeds the rows held
        (amortised: the room was left by at least as many moves or removes)."""
        held = int(self._aligned(self._size).sum())
        if self._used - held > held:
            self._compact()

    def _reserve_arena(self, extra: int) -> None:
        cap = self._eslot.shape[0]
        if self._used + extra <= cap:
            return
        new_cap = -(-max(self._used + extra, cap + cap // 2) // self._align) * self._align
        for name, arr in self._arena.items():
            grown = self._new_field(name, new_cap)
            used = self._used // BLOCK if name in self._blocked else self._used
            grown[:used] = arr[:used]
            self._arena[name] = grown
        eslot = np.zeros(new_cap, dtype=np.int32)
        eslot[: self._used] = self._eslot[: self._used]
        self._eslot = eslot

    def _list_order(self) -> npt.NDArray[np.int64]:
        """Entries of every list, list by list: the compact (saved) order."""
        total = int(self._size.sum())
        new_start = np.cumsum(self._size) - self._size
        return np.repeat(self._start - new_start, self._size) + np.arange(total)

    def _packed_entries(self) -> npt.NDArray[np.int64]:
        """Where the entries of :meth:`_list_order` go when the lists are packed (each list
        from an aligned start, in list order); sets ``start``, ``cap`` and ``used`` so."""
        self._cap = self._aligned(self._size.copy())
        self._start = np.cumsum(self._cap) - self._cap
        self._used = int(self._cap.sum())
        total = int(self._size.sum())
        return (np.repeat(self._start - (np.cumsum(self._size) - self._size), self._size)
                + np.arange(total))

    def _compact(self) -> None:
        idx = self._list_order()
        rows = {name: self._take(name, idx) for name in self._arena}
        eslot = self._eslot[idx]
        dest = self._packed_entries()
        for name, r in rows.items():
            self._put(name, dest, r)
        self._eslot[dest] = eslot
        self._entry[eslot] = dest.astype(np.int32)

    def _relocate(self, lst: int, new_cap: int) -> None:
        s0, sz, d0 = int(self._start[lst]), int(self._size[lst]), self._used
        self._copy_entries(s0, d0, sz)
        self._start[lst] = d0
        self._cap[lst] = new_cap
        self._used += new_cap

    def _add(self, x: FloatMatrix) -> None:
        n0, m = self._n, x.shape[0]
        if n0 + m > MAX_ROWS:
            raise InvalidArgumentError(
                f"{self.kind.name} holds at most {MAX_ROWS} rows; adding {m} to {n0} is too many"
            )
        labels = self._assign(x)
        payload = self._encode(x, labels)
        self._compact_if_sparse()  # before the lists' room is read below
        order = np.argsort(labels, kind="stable")
        lists, first, counts = np.unique(labels[order], return_index=True, return_counts=True)
        need = self._size[lists] + counts
        cap = self._cap[lists]
        grow = need > cap
        new_cap = self._aligned(np.where(cap == 0, need, np.maximum(need, 2 * cap)))
        self._reserve_arena(int(new_cap[grow].sum()))
        self._reserve_slots(n0 + m)
        for lst, nc in zip(lists[grow].tolist(), new_cap[grow].tolist(), strict=True):
            self._relocate(lst, nc)
        rank = np.arange(m) - np.repeat(first, counts)
        dest = np.repeat(self._start[lists] + self._size[lists], counts) + rank
        for name, rows in payload.items():
            self._put(name, dest, rows[order])
        slots = (n0 + order).astype(np.int32)
        self._eslot[dest] = slots
        self._entry[slots] = dest
        self._size[lists] += counts
        if self.keeps_originals:
            self._vectors[n0 : n0 + m] = x
        self._n = n0 + m

    def _lists_of_entries(self, ents: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        used = np.flatnonzero(self._cap > 0)
        order = np.argsort(self._start[used])
        starts = self._start[used][order]
        return used[order][np.searchsorted(starts, ents, side="right") - 1]

    def _remove(self, slots: SlotArray, moves: Moves) -> None:
        ents = self._entry[slots].astype(np.int64)
        lists = self._lists_of_entries(ents)
        order = np.argsort(lists, kind="stable")
        ents, lists = ents[order], lists[order]
        uniq, first, counts = np.unique(lists, return_index=True, return_counts=True)
        for lst, a, c in zip(uniq.tolist(), first.tolist(), counts.tolist(), strict=True):
            s0, sz = int(self._start[lst]), int(self._size[lst])
            keep = np.ones(sz, dtype=bool)
            keep[ents[a : a + c] - s0] = False
            kept = s0 + np.flatnonzero(keep)
            nk = kept.size
            for name in self._arena:
                self._put(name, s0 + np.arange(nk), self._take(name, kept))
            self._eslot[s0 : s0 + nk] = self._eslot[kept]
            self._entry[self._eslot[s0 : s0 + nk]] = np.arange(s0, s0 + nk, dtype=np.int32)
            self._size[lst] = nk
        moved = self._entry[moves.src]
        self._entry[moves.dst] = moved
        self._eslot[moved] = moves.dst.astype(np.int32)
        if self.keeps_originals:
            self._vectors[moves.dst] = self._vectors[moves.src]
        self._n -= slots.size

    # ----------------------------------------------------------------- search
    def _search(
        self, q: FloatMatrix, k: int, params: Mapping[str, Any],
        mask: npt.NDArray[np.bool_] | None,
    ) -> Result:
        rerank = self._check_rerank(params)
        subset = self._exact_route(mask)
        if subset is not None:
            return self._exact_subset(q, k, subset)
        allowed = self._n if mask is None else int(np.count_nonzero(mask))
        nprobe = min(int(params["nprobe"]), self.nlist)
        ratio = float(params["ratio_threshold"])
        scores, slots, counts = self._probe(q, k, nprobe, ratio, rerank, mask)
        short = np.flatnonzero(counts < min(k, allowed))
        if short.size and (nprobe < self.nlist or ratio > 0):
            s2, i2, c2 = self._probe(q[short], k, self.nlist, 0.0, rerank, mask)
            scores[short], slots[short], counts[short] = s2, i2, c2
        return scores, slots, counts

    def _probe(
        self, q: FloatMatrix, k: int, nprobe: int, ratio: float, rerank: int,
        mask: npt.NDArray[np.bool_] | None,
    ) -> Result:
        cscores, lists = self._centroid_topk(q, nprobe)
        keep = ratio_keep(cscores, ratio)
        scores, slots, counts = self._scan_topk(q, lists, cscores, keep, max(k, rerank), mask)
        if rerank:
            return rescore_topk(q, self._vectors, slots, k, l2=self.metric == "l2")
        return (np.ascontiguousarray(scores[:, :k]), np.ascontiguousarray(slots[:, :k]),
                np.minimum(counts, k))

    def _scan_topk(
        self, q: FloatMatrix, lists: npt.NDArray[np.int64], cscores: npt.NDArray[np.float32],
        keep: npt.NDArray[np.bool_], k: int, mask: npt.NDArray[np.bool_] | None,
    ) -> Result:
        """Top-``k`` of the kept probed ``lists`` (centroid scores ``cscores``) of each query
        (sorted, padded)."""
        heaps = init_heaps(q.shape[0], k)
        self._scan_lists(q, lists, keep, heaps, mask)
        return finalize_heaps(*heaps)

    def _get_vectors(self, slots: SlotArray) -> FloatMatrix:
        return self._vectors[slots]

    def _ranges(self, lists: np.ndarray, keep: np.ndarray) -> npt.NDArray[np.int64]:
        return probe_ranges(lists, keep, self._start, self._size)

    # ----------------------------------------------------------------- persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if self.centroids_ is None:
            return {"trained": False}, {}
        idx = self._list_order()
        arrays: dict[str, np.ndarray] = {
            "centroids": self.centroids_,
            "list_sizes": self._size.copy(),
            "slots": self._eslot[idx],
        }
        arrays.update({f"payload/{k}": self._take(k, idx) for k in self._arena})
        if self.keeps_originals:
            arrays["vectors"] = self._vectors[: self._n]
        state, extra = self._payload_state()
        arrays.update(extra)
        return {"trained": True, **state}, arrays

    def _set_state(self, state: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        if not state.get("trained"):
            if arrays:
                raise IndexFormatError(f"{self.kind.name} index holds arrays but no model")
            return
        _check_array("centroids", arrays.get("centroids"), np.float32, (self.nlist, self.dim))
        _check_array("list_sizes", arrays.get("list_sizes"), np.int64, (self.nlist,))
        _check_array("slots", arrays.get("slots"), np.int32, (None,))
        sizes, eslot = arrays["list_sizes"], arrays["slots"]
        n = eslot.shape[0]
        if (sizes < 0).any() or int(sizes.sum()) != n:
            raise IndexFormatError(f"list sizes sum to {int(sizes.sum())}, not {n} rows")
        if not np.array_equal(np.sort(eslot), np.arange(n, dtype=np.int32)):
            raise IndexFormatError("the lists' slots are not a permutation of 0..ntotal-1")
        for name, (dtype, tail) in self._payload_fields().items():
            _check_array(name, arrays.get(f"payload/{name}"), dtype, (n, *tail))
        if self.keeps_originals:
            _check_array("vectors", arrays.get("vectors"), np.float32, (n, self.dim))
            self._vectors = np.array(arrays["vectors"])
        self._set_centroids(np.array(arrays["centroids"]))
        self._set_payload_state(state, arrays)
        self._size = np.array(sizes)
        dest = self._packed_entries()
        self._arena = {name: self._new_field(name, self._used) for name in self._arena}
        for name in self._arena:
            self._put(name, dest, arrays[f"payload/{name}"])
        self._eslot = np.zeros(self._used, dtype=np.int32)
        self._eslot[dest] = eslot
        self._entry = np.empty(n, dtype=np.int32)
        self._entry[eslot] = dest.astype(np.int32)
        self._n = n


@register("ivf_flat", params=IVF_PARAMS, search_params=IVF_SEARCH)
class IVFFlatIndex(IVFIndex):
    """IVF with float32 vectors in the lists (faiss ``IndexIVFFlat``, fast-ivf ``FastIVF``).

    Scores within the scanned lists are exact. Batches of ``SMALL_BATCH`` or more queries
    are grouped by list, so each probed list is one BLAS product with the queries probing
    it; smaller batches run a fused dot-product scan over the probed ranges. Masks are
    applied inside both scans; a mask allowing few rows is searched exactly over them.

    Memory: ``ntotal x dim`` float32 (``l2`` adds one float32 norm per row), 8 bytes per row
    of list bookkeeping, and the ``nlist x dim`` centroids.
    """

    @property
    def keeps_vectors(self) -> bool:
        return True

    @property
    def payload_dim(self) -> int:
        """Dimensions of the vectors the lists hold (and queries are scored in)."""
        return self.dim

    def _transform(self, x: FloatMatrix) -> FloatMatrix:
        """Map prepared vectors (and queries) into the lists' space; the identity here."""
        return x

    def _payload_fields(self) -> dict[str, tuple[type, tuple[int, ...]]]:
        fields: dict[str, tuple[type, tuple[int, ...]]] = {
            "x": (np.float32, (self.payload_dim,))
        }
        if self.metric == "l2":
            fields["sqn"] = (np.float32, ())
        return fields

    def _encode(self, x: FloatMatrix, labels: npt.NDArray[np.int64]) -> dict[str, np.ndarray]:
        z = self._transform(x)
        out = {"x": z}
        if self.metric == "l2":
            out["sqn"] = sq_norms(z)
        return out

    def _get_vectors(self, slots: SlotArray) -> FloatMatrix:
        return self._arena["x"][self._entry[slots]]

    def _scan_lists(
        self, q: FloatMatrix, lists: npt.NDArray[np.int64], keep: npt.NDArray[np.bool_],
        heaps: Heaps, mask: npt.NDArray[np.bool_] | None,
    ) -> None:
        nq = q.shape[0]
        q = self._transform(q)
        l2 = self.metric == "l2"
        qn = sq_norms(q) if l2 else np.zeros(1, np.float32)
        xn = self._arena["sqn"] if l2 else np.zeros(1, np.float32)
        use_mask = mask is not None
        m = mask if mask is not None else np.ones(1, dtype=np.bool_)
        data, eslot = self._arena["x"], self._eslot
        hs, hi = heaps
        if nq < SMALL_BATCH:
            ranges = self._ranges(lists, keep)
            scan_dense_ranges(q, data, ranges, eslot, m, use_mask, l2, qn, xn, 0, nq, hs, hi)
            return

        # One thread, one BLAS thread: the per-list products are small (tens of queries x
        # tens of rows), so BLAS threads only add hand-offs, and splitting the queries over
        # our threads serialises on the GIL held by the loop over lists (measured on 20,000
        # x 384, 500 queries: 21k q/s on one thread, 17.6k with two BLAS threads, 10.3k
        # split over two of ours).
        probed = np.where(keep, lists, -1).ravel()
        rows = np.repeat(np.arange(nq), lists.shape[1])
        valid = probed >= 0
        probed, rows = probed[valid], rows[valid]
        order = np.argsort(probed, kind="stable")
        probed, rows = probed[order], rows[order]
        bounds = np.flatnonzero(np.diff(probed)) + 1
        with one_blas_thread():
            for g0, g1 in zip(np.r_[0, bounds].tolist(), np.r_[bounds, probed.size].tolist(),
                              strict=True):
                lst = int(probed[g0])
                s0, sz = int(self._start[lst]), int(self._size[lst])
                if sz == 0:
                    continue
                grp = rows[g0:g1]
                tile = q[grp] @ data[s0 : s0 + sz].T
                push_tile(tile, grp, s0, eslot, m, use_mask, l2, qn, xn, hs, hi)


@register(
    "ivf_ae",
    params=[
        *IVF_PARAMS,
        Param("compression_dim", int, 0, "dimensions of the compressed vectors; 0: dim / 4",
              low=0, high=1 << 16),
        Param("objective", str, DEFAULT_OBJECTIVE,
              "what the compressor is trained for: similarity-preserving autoencoder, or a "
              "bottleneck predicting the IVF cell (fast-ivf)", choices=OBJECTIVES),
        Param("epochs", int, 0, "passes over the training vectors; 0: the objective's "
              "default fixed number of steps (see compress.train_compressor)",
              low=0, high=10_000),
        KEEP_VECTORS,
    ],
    search_params=[*IVF_SEARCH, RERANK],
)
class IVFAEIndex(IVFFlatIndex):
    """IVF over learned compressed vectors (fast-ivf ``CompressedFastIVF``, with real savings).

    Training fits the coarse quantizer on the originals, then a
    :class:`~vecindex_core.compress.Compressor` (torch, the ``torch`` extra) mapping
    vectors to ``compression_dim`` dimensions so that ``<enc(q), enc(x)>`` ranks like the
    metric (``objective``; see :mod:`vecindex_core.compress`). Lists hold only the float32
    compressed vectors; queries probe the original-space centroids and are scored in the
    compressed space, exactly as ``ivf_flat`` scores its lists. With ``keep_vectors``,
    ``params.rerank = r`` rescores the ``r`` best exactly against the originals.

    Encoding, searching, saving and loading need numpy only; creating the index checks that
    torch is importable (training needs it) and raises :class:`NotSupportedError` naming
    the extra otherwise.

    Memory: ``ntotal x compression_dim`` float32 (``l2`` adds a norm), 8 bytes a row of list
    bookkeeping, the centroids and the encoder weights (plus the originals when kept).
    """

    def _setup(self) -> None:
        if importlib.util.find_spec("torch") is None:
            require_torch(f"index {self.kind.name!r}")
        c = self.payload_dim
        if c >= self.dim:
            raise InvalidParameterError(
                f"index {self.kind.name!r}: compression_dim={c} must be below dim={self.dim}"
            )
        self.compressor_: Compressor | None = None

    @property
    def payload_dim(self) -> int:
        return int(self.params["compression_dim"]) or max(1, self.dim // 4)

    @property
    def keeps_vectors(self) -> bool:
        return self.keeps_originals

    def _transform(self, x: FloatMatrix) -> FloatMatrix:
        assert self.compressor_ is not None
        return self.compressor_.encode(x)

    def _get_vectors(self, slots: SlotArray) -> FloatMatrix:
        return self._vectors[slots]

    def _fit_payload(self, x: FloatMatrix, labels: npt.NDArray[np.int64]) -> None:
        self.compressor_ = train_compressor(
            x, self.payload_dim, objective=self.params["objective"], labels=labels,
            centroids=self.centroids_, metric=self.metric, seed=int(self.params["seed"]),
            epochs=int(self.params["epochs"]) or None,
        )

    def _payload_model_bytes(self) -> int:
        if self.compressor_ is None:
            return 0
        return sum(w.nbytes for w in self.compressor_.weights)

    def _payload_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        assert self.compressor_ is not None
        arrays = {f"compressor/{k}": v for k, v in self.compressor_.arrays().items()}
        return {"compressor": self.compressor_.meta()}, arrays

    def _set_payload_state(
        self, state: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> None:
        meta = state.get("compressor")
        if not isinstance(meta, Mapping):
            raise IndexFormatError("ivf_ae index holds no compressor metadata")
        weights = {k[len("compressor/"):]: v for k, v in arrays.items()
                   if k.startswith("compressor/")}
        compressor = Compressor.from_arrays(weights, **meta)
        if compressor.dim != self.dim or compressor.compression_dim != self.payload_dim:
            raise IndexFormatError(
                f"compressor maps {compressor.dim} -> {compressor.compression_dim} dimensions, "
                f"expected {self.dim} -> {self.payload_dim}"
            )
        self.compressor_ = compressor


class CodedIVFIndex(IVFIndex):
    """IVF whose lists hold additive codes scored through per-query lookup tables.

    The shared part of ``ivf_pq`` and ``ivf_tq``. With ``by_residual`` a list holds the codes
    of ``r = x - c_l`` (``c_l`` its centroid); a code's inner-product estimate is
    ``q . c_l + est(q . r)``, and the lookup tables of ``est(q . r)`` do not depend on the
    list, so each query builds its tables once and each probed list only adds its
    ``q . c_l`` (the ``bias`` of :func:`~vecindex_core._kernels.codes.lut_topk`). ``l2``
    stores ``|x|^2`` per row (4 bytes) and scores ``-(|q|^2 + |x|^2 - 2 estimate)``;
    ``cosine``/``ip`` store codes only (plus the codec's per-row scale, if any).

    Codes of 1, 2 or 4 bits (:attr:`fast_scan`) are kept in the blocked layout and scanned by
    the uint8 fast scan (:func:`~vecindex_core._kernels.fastscan.fastscan_ivf_topk`, native
    when built): a shortlist of ``k + max(4, k // 4)`` rows per query by the uint8-table score
    (:func:`~vecindex_core._kernels.blocked.ivf_shortlist_size`), rescored with the float
    tables (the same estimate as the float scan, so recall does not change). Other widths are
    scanned with float byte tables.

    With ``keep_vectors``, ``params.rerank = r`` rescores the ``r`` best codes exactly. With
    ``calibrate``, training also fits ``score' = a * score + b`` to exact scores: the first
    ``min(256, n / 4)`` training vectors search the rest (encoded), and the pairs they
    report are fitted (so the fit also corrects a top-k's upward selection bias).
    """

    #: Per-row float32 scale stored beside the codes (the codec's length correction).
    has_scale: bool = False

    def _setup(self) -> None:
        self.calibration_: npt.NDArray[np.float64] | None = None

    # ----------------------------------------------------------------- codec hooks
    @property
    @abc.abstractmethod
    def code_bytes(self) -> int:
        """Bytes of one code."""

    @abc.abstractmethod
    def _fit_codec(self, r: FloatMatrix) -> None:
        """Train the codec on (residual) training vectors."""

    @abc.abstractmethod
    def _encode_codes(self, r: FloatMatrix) -> dict[str, np.ndarray]:
        """``codes`` (and ``scale`` when :attr:`has_scale`) of (residual) vectors."""

    @abc.abstractmethod
    def _lut_scan(self, q: FloatMatrix, hs: np.ndarray, hi: np.ndarray, **kw: Any) -> None:
        """Scan ``q``'s ranges through the codec's tables (``lut_topk`` keywords)."""

    @abc.abstractmethod
    def _lut_bytes(self) -> int:
        """Bytes of one query's lookup tables."""

    @property
    @abc.abstractmethod
    def code_bits(self) -> int:
        """Stored bits per coordinate (``ivf_tq``) or per sub-quantizer code (``ivf_pq``)."""

    @abc.abstractmethod
    def _nibble_luts(self, q: FloatMatrix) -> Tables:
        """Per sub-code float tables ``(nq, 2 * code_bytes, 16)`` of the residual estimate
        (:func:`~vecindex_core._kernels.fastscan.nibble_tables`) and their
        :func:`~vecindex_core._kernels.fastscan.quantize_luts`; fast-scan widths only."""

    @property
    def fast_scan(self) -> bool:
        """Whether the codes are kept blocked and searched by the uint8 fast scan."""
        return fast_scan_fits(self.code_bits, self.code_bytes)

    def _blocked_payload(self) -> tuple[str, ...]:
        return ("codes",) if self.fast_scan else ()

    # ----------------------------------------------------------------- payload
    def _payload_fields(self) -> dict[str, tuple[type, tuple[int, ...]]]:
        fields: dict[str, tuple[type, tuple[int, ...]]] = {
            "codes": (np.uint8, (self.code_bytes,))
        }
        if self.has_scale:
            fields["scale"] = (np.float32, ())
        if self.metric == "l2":
            fields["sqn"] = (np.float32, ())
        return fields

    def _residuals(self, x: FloatMatrix, labels: npt.NDArray[np.int64]) -> FloatMatrix:
        if not self.params["by_residual"]:
            return x
        assert self.centroids_ is not None
        return np.ascontiguousarray(x - self.centroids_[labels], dtype=np.float32)

    def _fit_payload(self, x: FloatMatrix, labels: npt.NDArray[np.int64]) -> None:
        self.calibration_ = None
        self._fit_codec(self._residuals(x, labels))
        if self.params["calibrate"]:
            self.calibration_ = self._fit_calibration(x)

    def _encode(self, x: FloatMatrix, labels: npt.NDArray[np.int64]) -> dict[str, np.ndarray]:
        out = self._encode_codes(self._residuals(x, labels))
        if self.metric == "l2":
            out["sqn"] = sq_norms(x)
        return out

    def _fit_calibration(self, x: FloatMatrix) -> npt.NDArray[np.float64]:
        nq = max(1, min(CALIBRATION_QUERIES, x.shape[0] // 4))
        q, base = x[:nq], x[nq:]
        self._add(base)
        try:
            nprobe = min(int(self.search_defaults["nprobe"]), self.nlist)
            est, slots, _ = self._probe(q, min(CALIBRATION_K, base.shape[0]), nprobe, 0.0, 0,
                                        None)
        finally:
            self._reset_storage()
        ok = slots >= 0
        rows = base[np.maximum(slots, 0)].astype(np.float64)
        q64 = q.astype(np.float64)
        exact = np.einsum("rkd,rd->rk", rows, q64)
        if self.metric == "l2":
            exact = -np.maximum(np.einsum("rd,rd->r", q64, q64)[:, None]
                                + np.einsum("rkd,rkd->rk", rows, rows) - 2 * exact, 0)
        return fit_score_map(est[ok], exact[ok])

    @abc.abstractmethod
    def _codec_arrays(self) -> dict[str, np.ndarray]:
        """The trained codec's arrays, for saving."""

    @abc.abstractmethod
    def _set_codec_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restore (and validate) what :meth:`_codec_arrays` returned."""

    def _payload_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = self._codec_arrays()
        if self.calibration_ is not None:
            arrays["calibration"] = self.calibration_
        return {}, arrays

    def _set_payload_state(
        self, state: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> None:
        self._set_codec_arrays(arrays)
        if self.params["calibrate"]:
            _check_array("calibration", arrays.get("calibration"), np.float64, (2,))
            self.calibration_ = np.array(arrays["calibration"])

    # ----------------------------------------------------------------- search
    def _probe(
        self, q: FloatMatrix, k: int, nprobe: int, ratio: float, rerank: int,
        mask: npt.NDArray[np.bool_] | None,
    ) -> Result:
        scores, slots, counts = super()._probe(q, k, nprobe, ratio, rerank, mask)
        if rerank:
            return scores, slots, counts
        return apply_score_map(scores, slots, self.calibration_), slots, counts

    def _list_bias(self, q: FloatMatrix, lists: npt.NDArray[np.int64],
                   cscores: npt.NDArray[np.float32] | None = None
                   ) -> npt.NDArray[np.float32] | None:
        """``q . c_l`` float32 ``(nq, R)`` of each query's probed lists (``by_residual``):
        the centroid scores ``cscores`` themselves unless the metric is ``l2``."""
        if not self.params["by_residual"]:
            return None
        if cscores is not None and self.metric != "l2":
            return cscores
        assert self.centroids_ is not None
        return np.ascontiguousarray(
            np.einsum("nd,npd->np", q, self.centroids_[np.maximum(lists, 0)]),
            dtype=np.float32)

    def _scan_topk(
        self, q: FloatMatrix, lists: npt.NDArray[np.int64], cscores: npt.NDArray[np.float32],
        keep: npt.NDArray[np.bool_], k: int, mask: npt.NDArray[np.bool_] | None,
    ) -> Result:
        """The fast scan's shortlist, rescored by the float tables (fast-scan widths)."""
        if not self.fast_scan:
            return super()._scan_topk(q, lists, cscores, keep, k, mask)
        l2, nq = self.metric == "l2", q.shape[0]
        ranges = self._ranges(lists, keep)
        bias = self._list_bias(q, lists, cscores)
        qn = sq_norms(q) if l2 else None
        size = max(1, ivf_shortlist_size(k, self._n))
        codes = self._arena["codes"]
        scale = self._arena["scale"] if self.has_scale else None
        xn = self._arena["sqn"] if l2 else None
        parts = []
        chunk = max(1, LUT_BYTES // (128 * self.code_bytes))
        for c0 in range(0, max(nq, 1), chunk):
            c1 = min(c0 + chunk, nq)
            tables, luts, qbias, delta = self._nibble_luts(q[c0:c1])
            lb = None if bias is None else bias[c0:c1]
            qc = None if qn is None else qn[c0:c1]
            hs, hi = init_heaps(c1 - c0, size)
            fastscan.fastscan_ivf_topk(luts, qbias, delta, codes, ranges[c0:c1], hs, hi,
                                       row_slots=self._eslot, list_bias=lb, scale=scale,
                                       sq_norms=xn, q_sq_norms=qc, mask=mask, trusted=True)
            # the heaps unsorted: the rescore orders the candidates itself
            ents = np.where(hi >= 0, self._entry[np.maximum(hi, 0)], -1)
            add = None if lb is None else range_values(ents, ranges[c0:c1], lb)
            parts.append(rescore_shortlist(tables, codes, ents, k, scale=scale, sq_norms=xn,
                                           q_sq_norms=qc, add=add, keys=hi))
        if len(parts) == 1:
            return parts[0]
        scores, slots, counts = (np.concatenate(p) for p in zip(*parts, strict=True))
        return scores, slots, counts

    def _scan_lists(
        self, q: FloatMatrix, lists: npt.NDArray[np.int64], keep: npt.NDArray[np.bool_],
        heaps: Heaps, mask: npt.NDArray[np.bool_] | None,
    ) -> None:
        l2 = self.metric == "l2"
        ranges = self._ranges(lists, keep)
        bias = self._list_bias(q, lists)
        qn = sq_norms(q) if l2 else None
        hs, hi = heaps
        chunk = max(1, LUT_BYTES // max(1, self._lut_bytes()))
        for c0 in range(0, q.shape[0], chunk):
            c1 = min(c0 + chunk, q.shape[0])
            self._lut_scan(
                q[c0:c1], hs[c0:c1], hi[c0:c1], ranges=ranges[c0:c1],
                bias=None if bias is None else bias[c0:c1],
                q_sq_norms=None if qn is None else qn[c0:c1],
                scale=self._arena["scale"] if self.has_scale else None,
                sq_norms=self._arena["sqn"] if l2 else None,
                row_slots=self._eslot, mask=mask,
            )
