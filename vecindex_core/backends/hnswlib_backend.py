"""The ``hnsw`` kind: a hierarchical navigable small-world graph, on hnswlib.

hnswlib (``pip install "vecindex[hnswlib]"``) is imported when an ``hnsw`` index is created,
never at ``import vecindex_core``; without it, creating one raises
:class:`~vecindex_core.NotSupportedError` naming the extra.

Design (measured on 20,000 x 384 normalised MiniLM vectors, 2 shared cores; numbers in
``benchmarks/results/backends_hnswlib.md``):

- **Metrics.** ``cosine`` and ``ip`` use hnswlib's ``"ip"`` space (``cosine`` vectors are
  already unit length after :meth:`~vecindex_core.VectorIndex.prepare`, so hnswlib's own
  ``"cosine"`` space would only normalise them a second time); its distance is
  ``1 - <q, x>`` in float32, so the score is ``1 - distance`` (within one float32 ulp of 1
  of the inner product). ``l2`` uses the ``"l2"`` space, whose distance is the squared
  distance: the score is its negation, bit for bit.
- **Labels.** hnswlib labels are stable internal ids ``0..labels-1``, never slots:
  ``slot_to_label`` and ``label_to_slot`` map between them, so a swap-remove only rewrites
  those two arrays and never touches the graph.
- **Removes.** A removed row's label is ``mark_deleted`` (the graph still routes through it;
  results never contain it). The next ``add`` reuses deleted labels first, lowest first:
  hnswlib updates a deleted element in place (``updatePoint``, which re-links its
  neighbourhood), so churn (remove + add, a Collection update) keeps the graph's size
  bounded without rebuilds. An update costs about 4-5x a fresh insert (dev set,
  ``M=16, ef_construction=200``: 4.8 ms vs 1.0 ms a row; recall@10 after re-adding 10%
  0.991), but never stalls a call on a rebuild. When deleted labels exceed
  ``COMPACT_FRACTION`` (25%) of all labels (a net shrink), the index is compacted: rebuilt
  from the surviving vectors in slot order, which gives exactly the index a fresh build of
  those vectors gives (``stats()["compactions"]`` counts them).
- **Vectors.** The prepared float32 vectors are also kept in slot order beside the graph
  (``keeps_vectors``): hnswlib's ``get_items`` copies through Python lists (measured
  70 us a row), too slow for the exact routes below, ``get_vectors`` and compaction. So
  memory holds the vectors twice; the file holds them once (inside hnswlib's bytes, read
  back from its fixed level-0 layout on load, which also checks the deleted marks against
  the label map).
- **Masks.** A mask allowing at most ``max(EXACT_MASK_ROWS, ntotal // 64)`` rows is searched
  exactly over those rows. Larger masks go to hnswlib's ``filter`` callback over labels,
  one thread (the callback is Python, called per candidate under the GIL: measured slower
  with two threads than one). A search that comes back short (hnswlib raises when a row has
  fewer than ``k`` results, e.g. a sparse filter or many deleted elements) is retried once
  with ``ef`` x 4, then searched exactly over the allowed rows: results are never silently
  short while ``k`` allowed rows exist, and a short graph search never raises.
- **ef.** ``params.ef`` is the search beam; hnswlib searches with ``max(ef, k)``, and so do we.
  hnswlib keeps ``ef`` on the index object, so ``set_ef`` + ``knn_query`` run under a lock:
  concurrent searches of one index are serialised (each batch is still spread over
  ``vecindex_core.get_num_threads()`` threads by hnswlib).
- **Determinism.** hnswlib draws each element's level from a generator seeded by ``seed``;
  with one adding thread the graph, and the saved bytes, depend only on the inputs. With
  several threads, insertion order (and so the graph) varies run to run, so ``add`` uses one
  thread unless ``deterministic=false`` (then ``get_num_threads()``; on this project's 2
  shared cores the 20,000-row build took 8-14 s that way vs 13-21 s with one thread, runs
  varying with the machine's load). Searches always use
  ``get_num_threads()`` threads: queries are independent, results do not depend on it.
  hnswlib does not save its level generator: a loaded index draws the levels of later adds
  from hnswlib's default stream (still deterministic, but not the stream the saved index
  would have continued with).
- **Capacity.** hnswlib's ``max_elements`` is managed internally: it grows geometrically
  (x 1.5, ``resize_index``), so single adds are amortised O(1); users never set it.
- **Files.** hnswlib's own ``save_index`` bytes are the payload (written to and read from a
  temporary file), beside the slot -> label map; no pickle.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from .._kernels.topk import sq_norms
from .._threads import get_num_threads
from ..base import Moves, VectorIndex, full_counts
from ..errors import BackendError, IndexFormatError, NotSupportedError
from ..hashing import SEED
from ..registry import Param, register
from ..types import FloatMatrix, Metric, SlotArray

__all__ = ["COMPACT_FRACTION", "HNSWIndex"]

Result = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]

#: Compact (rebuild from the survivors) once deleted labels exceed this fraction of labels.
COMPACT_FRACTION = 0.25
#: hnswlib capacity grows by this factor (at least to what an add needs).
GROWTH = 1.5
#: ``ef`` multiplier of the one retry after a short graph search.
RETRY_EF_FACTOR = 4
_ONE = np.float32(1.0)
#: hnswlib's level-0 file layout: 6 size_t, int, uint32, 3 size_t, double, size_t.
_HEADER_BYTES = 96
_DELETE_MARK = 0x01  # in byte 2 of an element's level-0 link-list header
#: hnswlib's fixed per-index cost: 65,536 label-operation mutexes of 40 bytes (0.8.0).
_LABEL_LOCK_BYTES = 65536 * 40
#: Per capacity row outside the level-0 block: link-list pointer, level, mutex, visited tag.
_PER_CAPACITY_ROW = 8 + 4 + 40 + 2
#: Per label: an ``unordered_map`` node of the label lookup (approximate).
_PER_LABEL = 48

M_PARAM = Param("M", int, 16, "graph degree: links per element per layer (2 x M on layer 0)",
                low=2, high=2048)
EF_CONSTRUCTION = Param("ef_construction", int, 200,
                        "beam width while inserting (graph quality vs build time)",
                        low=1, high=1 << 20)
DETERMINISTIC = Param("deterministic", bool, True,
                      "insert with one thread so the same inputs give the same graph; false: "
                      "insert with get_num_threads() threads (faster, graph varies run to run)")
EF = Param("ef", int, 64, "search beam width; hnswlib searches with max(ef, k)",
           low=1, high=1 << 20)


def require_hnswlib(what: str) -> ModuleType:
    """Import hnswlib, or raise :class:`NotSupportedError` naming the extra to install."""
    try:
        import hnswlib
    except ImportError as e:
        raise NotSupportedError(
            f"{what} needs hnswlib, which is not installed: pip install \"vecindex[hnswlib]\""
        ) from e
    return hnswlib


@register("hnsw", params=[M_PARAM, EF_CONSTRUCTION, SEED, DETERMINISTIC], search_params=[EF])
class HNSWIndex(VectorIndex):
    """Approximate search over an HNSW graph (hnswlib), for ``cosine``, ``ip`` and ``l2``.

    Parameters
    ----------
    dim : int
        Number of dimensions.
    metric : {"cosine", "ip", "l2"}
        Scores follow the library rule (higher is better; ``l2`` is the negated squared
        distance).
    M : int, default 16
        Links per element per layer (``2 M`` on the bottom layer).
    ef_construction : int, default 200
        Beam width while inserting.
    seed : int, default 0
        Seed of hnswlib's level generator.
    deterministic : bool, default True
        Insert with one thread (the same inputs give the same graph and bytes).
    ef : int, default 64
        Default search beam (per call: ``params={"ef": ...}``); at least ``k`` is used.

    Notes
    -----
    See the module docstring for labels, removes and compaction, masks and determinism.
    Memory: the graph (``ntotal x (dim x 4 + 8 M + 12)`` bytes on the bottom layer plus the
    upper layers, at hnswlib's capacity), about 2.6 MB of hnswlib mutexes per index, and
    the slot-ordered copy of the vectors.
    """

    def __init__(self, dim: int, metric: Metric = "cosine", **params: Any) -> None:
        super().__init__(dim, metric, **params)
        self._lib = require_hnswlib(f"index {self.kind.name!r}")
        self._space = "l2" if self.metric == "l2" else "ip"
        self._lock = threading.Lock()
        self._graph = self._new_graph(0)
        self._labels = 0  # labels 0.._labels-1 are in the graph (live or deleted)
        self._n = 0
        self._vectors = np.empty((0, self.dim), dtype=np.float32)
        self._slot_to_label = np.empty(0, dtype=np.int64)
        self._label_to_slot = np.empty(0, dtype=np.int64)  # -1: deleted
        self._identity = True  # labels == slots (no deleted labels, nothing moved)
        self._ef = -1  # the ef last set on the graph
        self._compactions = 0

    # ----------------------------------------------------------------- properties
    @property
    def ntotal(self) -> int:
        return self._n

    @property
    def keeps_vectors(self) -> bool:
        return True

    @property
    def capacity(self) -> int:
        """Elements hnswlib has room for before it grows (managed internally)."""
        return int(self._graph.get_max_elements())

    def stats(self) -> dict[str, int]:
        """Graph bookkeeping: ``labels`` (live + deleted), ``deleted``, ``capacity``, and
        ``compactions`` (rebuilds since creation or load)."""
        return {"labels": self._labels, "deleted": self._labels - self._n,
                "capacity": self.capacity, "compactions": self._compactions}

    def memory_bytes(self) -> int:
        m = int(self.params["M"])
        per_row = 8 * m + 4 + 4 * self.dim + 8
        stored = int(self._graph.index_file_size()) - _HEADER_BYTES
        cap = self.capacity
        graph = (stored + (cap - self._labels) * per_row + cap * _PER_CAPACITY_ROW
                 + self._labels * _PER_LABEL + _LABEL_LOCK_BYTES)
        ours = self._vectors.nbytes + self._slot_to_label.nbytes + self._label_to_slot.nbytes
        return int(graph + ours)

    # ----------------------------------------------------------------- graph helpers
    def _new_graph(self, capacity: int) -> Any:
        graph = self._lib.Index(space=self._space, dim=self.dim)
        graph.init_index(max_elements=capacity, M=int(self.params["M"]),
                         ef_construction=int(self.params["ef_construction"]),
                         random_seed=int(self.params["seed"]))
        return graph

    def _add_threads(self) -> int:
        return 1 if self.params["deterministic"] else get_num_threads()

    def _reserve(self, n_rows: int, n_labels: int) -> None:
        if n_rows > self._vectors.shape[0]:
            cap = max(n_rows, 2 * self._vectors.shape[0], 64)
            vecs = np.empty((cap, self.dim), dtype=np.float32)
            vecs[: self._n] = self._vectors[: self._n]
            self._vectors = vecs
            s2l = np.empty(cap, dtype=np.int64)
            s2l[: self._n] = self._slot_to_label[: self._n]
            self._slot_to_label = s2l
        if n_labels > self._label_to_slot.shape[0]:
            lab = np.full(max(n_labels, 2 * self._label_to_slot.shape[0], 64), -1, np.int64)
            lab[: self._labels] = self._label_to_slot[: self._labels]
            self._label_to_slot = lab
        graph_cap = self.capacity
        if n_labels > graph_cap:
            self._graph.resize_index(max(n_labels, int(graph_cap * GROWTH)))

    # ----------------------------------------------------------------- add / remove
    def _add(self, x: FloatMatrix) -> None:
        m, n0 = x.shape[0], self._n
        deleted = self._labels - self._n
        reuse = (np.flatnonzero(self._label_to_slot[: self._labels] < 0)[:m] if deleted
                 else np.empty(0, dtype=np.int64))
        fresh = np.arange(self._labels, self._labels + m - reuse.size, dtype=np.int64)
        labels = np.concatenate([reuse, fresh])
        n_labels = self._labels + fresh.size
        self._reserve(n0 + m, n_labels)
        try:
            self._graph.add_items(x, labels, num_threads=self._add_threads())
        except RuntimeError as e:  # hnswlib reports allocation failures this way
            raise BackendError(f"{self.spec}: hnswlib failed to add {m} vectors: {e}") from e
        self._identity = self._identity and reuse.size == 0
        self._labels = n_labels
        self._vectors[n0 : n0 + m] = x
        self._slot_to_label[n0 : n0 + m] = labels
        self._label_to_slot[labels] = np.arange(n0, n0 + m, dtype=np.int64)
        self._n = n0 + m

    def _remove(self, slots: SlotArray, moves: Moves) -> None:
        gone = self._slot_to_label[slots]
        for label in gone.tolist():
            self._graph.mark_deleted(label)
        self._label_to_slot[gone] = -1
        moved = self._slot_to_label[moves.src]
        self._slot_to_label[moves.dst] = moved
        self._label_to_slot[moved] = moves.dst
        self._vectors[moves.dst] = self._vectors[moves.src]
        self._n -= slots.size
        self._identity = False
        if self._labels - self._n > COMPACT_FRACTION * self._labels:
            self.compact()

    def compact(self) -> None:
        """Rebuild the graph from the live vectors in slot order (labels become slots).

        Runs automatically when deleted labels exceed ``COMPACT_FRACTION`` of all labels;
        the result equals a fresh index built from the same vectors.
        """
        n = self._n
        graph = self._new_graph(n)
        if n:
            graph.add_items(self._vectors[:n], np.arange(n, dtype=np.int64),
                            num_threads=self._add_threads())
        self._graph = graph
        self._ef = -1
        self._labels = n
        self._identity = True
        self._slot_to_label[:n] = np.arange(n, dtype=np.int64)
        self._label_to_slot[:] = -1
        self._label_to_slot[:n] = np.arange(n, dtype=np.int64)
        self._compactions += 1

    # ----------------------------------------------------------------- search
    def _search(
        self, q: FloatMatrix, k: int, params: Mapping[str, Any],
        mask: npt.NDArray[np.bool_] | None,
    ) -> Result:
        if mask is None:  # the hot path: straight to the graph
            ef = int(params["ef"])
            found = self._graph_search(q, k, ef if ef > k else k, None)
            if found is not None:
                return found
        subset = self._exact_route(mask)
        if subset is not None:
            return self._exact_subset(q, k, subset)
        allowed = self._n if mask is None else int(np.count_nonzero(mask))
        k = min(k, allowed)
        filt = None
        if mask is not None and self._identity:
            filt = mask.tobytes().__getitem__  # bool bytes 0/1, indexed by label == slot
        elif mask is not None:
            keep = np.zeros(self._labels, dtype=np.uint8)
            keep[self._slot_to_label[: self._n][mask]] = 1
            filt = keep.tobytes().__getitem__
        ef = max(int(params["ef"]), k)
        found = self._graph_search(q, k, ef, filt)
        if found is None and ef < self._labels:
            found = self._graph_search(q, k, min(RETRY_EF_FACTOR * ef, self._labels), filt)
        if found is None:  # still short: exact over the allowed rows
            rows = np.arange(self._n, dtype=np.int64) if mask is None else np.flatnonzero(mask)
            return self._exact_subset(q, k, rows)
        return found

    def _graph_search(self, q: FloatMatrix, k: int, ef: int, filt: Any) -> Result | None:
        """hnswlib's top-``k`` as slots and scores, or None when a row came back short."""
        threads = 1 if filt is not None else get_num_threads()
        try:
            with self._lock:
                if ef != self._ef:
                    self._graph.set_ef(ef)
                    self._ef = ef
                labels, dist = self._graph.knn_query(q, k, threads, filt)  # positional: cheaper
        except RuntimeError as e:
            if "contiguous 2D array" in str(e):  # fewer than k results in some row
                return None
            raise BackendError(f"{self.spec}: hnswlib search failed: {e}") from e
        slots = labels.view(np.int64) if self._identity else self._label_to_slot[labels]
        # dist is a fresh float32 array: turn it into scores in place
        if self.metric == "l2":
            scores = np.negative(dist, out=dist)
        else:
            scores = np.subtract(_ONE, dist, out=dist)
        return scores, slots, full_counts(q.shape[0], k)

    def _exact_subset(self, q: FloatMatrix, k: int, allowed: SlotArray) -> Result:
        from .._kernels.topk import dense_topk

        rows = self._vectors[allowed]
        l2 = self.metric == "l2"
        return dense_topk(q, rows, k, l2=l2, data_sq_norms=sq_norms(rows) if l2 else None,
                          slot_map=allowed)

    def _get_vectors(self, slots: SlotArray) -> FloatMatrix:
        return self._vectors[slots]

    # ----------------------------------------------------------------- persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        with tempfile.TemporaryDirectory(prefix="vecindex-hnsw-") as tmp:
            path = os.path.join(tmp, "graph.bin")
            self._graph.save_index(path)
            with open(path, "rb") as f:
                graph = np.frombuffer(f.read(), dtype=np.uint8)
        return ({"labels": self._labels},
                {"graph": graph, "slot_labels": self._slot_to_label[: self._n].copy()})

    def _set_state(self, state: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        graph_bytes, slot_labels = arrays.get("graph"), arrays.get("slot_labels")
        n_labels = state.get("labels")
        if not isinstance(n_labels, int) or isinstance(n_labels, bool) or n_labels < 0:
            raise IndexFormatError(f"hnsw index state has a bad label count {n_labels!r}")
        if graph_bytes is None or graph_bytes.dtype != np.uint8 or graph_bytes.ndim != 1:
            raise IndexFormatError("hnsw index holds no uint8 graph payload")
        if (slot_labels is None or slot_labels.dtype != np.int64 or slot_labels.ndim != 1
                or slot_labels.size > n_labels):
            raise IndexFormatError("hnsw index holds no valid int64 slot -> label map")
        n = slot_labels.size
        label_to_slot = np.full(max(n_labels, 1), -1, dtype=np.int64)
        if n and (slot_labels.min() < 0 or slot_labels.max() >= n_labels):
            raise IndexFormatError(f"hnsw slot labels fall outside [0, {n_labels})")
        label_to_slot[slot_labels] = np.arange(n, dtype=np.int64)
        if np.count_nonzero(label_to_slot >= 0) != n:
            raise IndexFormatError("hnsw slot labels repeat")
        vectors = self._read_level0(graph_bytes, n_labels, label_to_slot[:n_labels], n)
        with tempfile.TemporaryDirectory(prefix="vecindex-hnsw-") as tmp:
            path = os.path.join(tmp, "graph.bin")
            graph_bytes.tofile(path)
            graph = self._lib.Index(space=self._space, dim=self.dim)
            try:
                graph.load_index(path)
            except RuntimeError as e:
                raise IndexFormatError(f"hnswlib cannot load the graph payload: {e}") from e
        if (int(graph.element_count) != n_labels or int(graph.M) != int(self.params["M"])
                or int(graph.ef_construction) != int(self.params["ef_construction"])):
            raise IndexFormatError(
                f"hnsw graph holds {graph.element_count} elements, M={graph.M}, "
                f"ef_construction={graph.ef_construction}; expected {n_labels}, "
                f"M={self.params['M']}, ef_construction={self.params['ef_construction']}"
            )
        self._graph = graph
        self._ef = -1
        self._labels = n_labels
        self._n = n
        self._identity = n == n_labels and bool((slot_labels == np.arange(n)).all())
        self._vectors = vectors
        self._slot_to_label = np.array(slot_labels)
        self._label_to_slot = label_to_slot

    def _read_level0(
        self, data: npt.NDArray[np.uint8], n_labels: int, label_to_slot: npt.NDArray[np.int64],
        n: int,
    ) -> FloatMatrix:
        """The live vectors in slot order, read from hnswlib's saved level-0 block.

        Checks the header against this index, every element's label against ``0..labels-1``
        and its deleted mark against the slot map.
        """
        if data.size < _HEADER_BYTES:
            raise IndexFormatError(f"hnsw graph payload is {data.size} bytes, shorter than "
                                   "hnswlib's header")
        head = data[:_HEADER_BYTES].tobytes()
        sizes = np.frombuffer(head, dtype="<u8", count=6)
        _, _, count, row, label_off, data_off = (int(v) for v in sizes)
        max_m0 = int(np.frombuffer(head, dtype="<u8", count=1, offset=64)[0])
        expect_data_off = 4 + 4 * max_m0
        if (count != n_labels or data_off != expect_data_off
                or label_off != data_off + 4 * self.dim or row != label_off + 8
                or data.size < _HEADER_BYTES + count * row):
            raise IndexFormatError(
                f"hnsw graph payload does not match this index (elements {count}, expected "
                f"{n_labels}; row {row} bytes for dim {self.dim})"
            )
        block = data[_HEADER_BYTES : _HEADER_BYTES + count * row].reshape(count, row)
        labels = np.ascontiguousarray(block[:, label_off : label_off + 8]).view("<u8").ravel()
        if count and int(labels.max()) >= n_labels:
            raise IndexFormatError(f"hnsw graph holds labels outside [0, {n_labels})")
        deleted = (block[:, 2] & _DELETE_MARK) != 0
        live = label_to_slot[labels.astype(np.int64)] >= 0
        if not np.array_equal(live, ~deleted) or np.unique(labels).size != count:
            raise IndexFormatError("hnsw graph's deleted marks disagree with its slot map")
        vectors = np.empty((max(n, 1), self.dim), dtype=np.float32)
        rows = np.flatnonzero(live)
        vectors[label_to_slot[labels[rows].astype(np.int64)]] = np.ascontiguousarray(
            block[rows, data_off : data_off + 4 * self.dim]).view(np.float32)
        return vectors
