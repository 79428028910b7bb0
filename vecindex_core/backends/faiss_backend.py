"""The ``faiss`` kind: any faiss ``index_factory`` string behind the index contract.

``vecindex_core.create('faiss(factory="IVF256,Flat",nprobe=16)', dim=384, metric="ip")``
builds ``faiss.index_factory(384, "IVF256,Flat", METRIC_INNER_PRODUCT)`` and drives it. The
factory string is quoted in a spec when it holds a comma (``factory="OPQ48,IVF1024,PQ48"``);
a single word may stay bare (``faiss(factory=HNSW32)``). faiss is imported only when an
index of this kind is created (missing: :class:`~vecindex_core.errors.NotSupportedError`
naming ``pip install "vecindex[faiss]"``).

Metrics. ``cosine`` normalises vectors and queries (the base class does) and uses
``METRIC_INNER_PRODUCT``; ``ip`` the same without normalising; ``l2`` uses ``METRIC_L2`` and
reports faiss's squared distances negated, so scores are higher-is-better everywhere.

Slots. faiss labels *are* our slots ``0..ntotal-1``. Factories whose index stores ids
(the IVF family, also under a pre-transform such as ``OPQ``/``PCA``, or an explicit
``IDMap``) are given the slots as ids; every other index is wrapped in ``faiss.IndexIDMap``.
Search labels therefore need no translation.

Removes (swap-remove, :class:`~vecindex_core.Moves`). The removed slots go through faiss's
``remove_ids``; then the rows whose slots moved (``src -> dst``) are relabelled in place:
in the ``IndexIDMap`` id array (one vectorised pass over it), or, for IVF, inside the
inverted lists that hold them (found through a temporary array direct map, so only those
lists are touched). faiss's own cost applies: ``IndexFlat``/``PQ``/``SQ`` shift all later
rows (O(n) per call), IVF scans its lists. Indexes faiss cannot remove from (``HNSW*``,
``NSG*``, ``Refine``) get tombstones instead: the removed rows' labels become
``TOMBSTONE`` (outside every slot range), searches exclude them through an ``IDSelector``
(or by over-fetching, where the index takes no selector), and once the dead rows outnumber
the live ones the index is rebuilt from the live rows (``reconstruct``: exact for flat
storage; for coded storage the decoded vectors, which re-encode to the same codes up to
ties).

Masks. A mask becomes an ``IDSelectorBitmap`` over slots inside the faiss search
parameters (``SearchParametersIVF``/``SearchParametersHNSW``/``SearchParameters``, nested
for ``Refine`` and translated through ``IndexIDMap``), so filtering happens inside the scan:
faiss 1.15 accepts selectors for ``Flat``, ``SQ``, ``RaBitQ``, ``HNSW*``, every ``IVF*``
(also under a pre-transform) and ``Refine`` over those. Where the index takes no selector
(``PQ``, ``PQ..fs``, ``RQ``/``LSQ``, ``NSG``) the search over-fetches and filters the labels.
When the index keeps exact vectors (``Flat``, ``HNSW*,Flat``/``HNSW32``, ``IVF*,Flat``,
``*,RFlat``, ``NSG*``) and the mask allows at most ``max(EXACT_MASK_ROWS, ntotal / 64)``
rows, the allowed rows are searched exactly instead. A query that comes back with fewer
than ``min(k, allowed)`` results (a filtered HNSW/IVF search, or an IVF whose probed lists
are short) is searched again with the search widened 4x per round (``nprobe``,
``efSearch``, the over-fetch) until it is complete or the search is exhaustive, so results
are never short while the index holds ``k`` allowed rows.

Training follows faiss's ``is_trained``. ``min_train_size`` is ``train_size`` when set, else
39 x the largest codebook in the factory (the IVF's ``nlist``, a PQ's ``2**nbits``; 39 is
where faiss stops warning), and never less than that largest codebook (k-means needs as many
points as centroids). Training is deterministic (faiss's fixed k-means seeds); ``HNSW``
builds are deterministic only on one thread (faiss inserts in parallel).

Search knobs: ``nprobe`` and ``max_codes`` (IVF), ``efSearch`` (HNSW, or the HNSW coarse
quantizer of ``IVF..._HNSW..``), ``k_factor`` (``Refine``). ``0`` means automatic
(``nprobe`` 16 at most ``nlist``, ``efSearch`` 64, ``k_factor`` the factory's, ``max_codes``
unlimited); a non-zero knob the factory has no use for raises
:class:`~vecindex_core.errors.InvalidParameterError`.

Persistence: ``faiss.serialize_index`` bytes stored as one uint8 array in our file format
(no pickle); ``memory_bytes`` is the size of those bytes. faiss runs on
``vecindex_core.get_num_threads()`` OpenMP threads for the duration of each call (set and
restored around it, about a microsecond).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from .._threads import get_num_threads
from ..base import Moves, VectorIndex, full_counts
from ..errors import (
    BackendError,
    IndexFormatError,
    InvalidArgumentError,
    InvalidParameterError,
    NotSupportedError,
)
from ..registry import Param, register
from ..types import FloatMatrix, Metric, SlotArray

__all__ = ["INSTALL_HINT", "TOMBSTONE", "FaissIndex", "import_faiss"]

INSTALL_HINT = 'pip install "vecindex[faiss]"'
#: Label of a removed row still inside a faiss index that cannot remove (outside every slot
#: range, so no selector lets it through).
TOMBSTONE = 1 << 62
#: Automatic knob values (a knob of 0).
AUTO_NPROBE = 16
AUTO_EFSEARCH = 64
#: Each retry of a short result widens the search this many times.
GROW = 4
#: Fewest training rows for a factory with OPQ (see _Layout).
OPQ_MIN_TRAIN = 1024
#: faiss's "please provide at least" threshold, per centroid.
POINTS_PER_CENTROID = 39

_MISS = object()
Result = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]


def import_faiss() -> ModuleType:
    """Import faiss, or raise :class:`NotSupportedError` naming the extra to install."""
    try:
        import faiss
    except ImportError as e:
        raise NotSupportedError(
            f"index 'faiss' needs the faiss library: {INSTALL_HINT} (or pip install faiss-cpu)"
        ) from e
    return faiss


class _Layout:
    """What a faiss index is made of, as far as the wrapper cares.

    Attributes
    ----------
    root : faiss.Index
        The index searched under our ``IndexIDMap`` wrapper (the factory's index).
    path : list of (str, faiss.Index)
        Nodes from ``root`` down the search path: ``"pretransform"``, ``"refine"``,
        ``"ivf"``, ``"hnsw"``, ``"selector"`` (a flat-like index that takes an
        ``IDSelector``) or ``"other"``.
    ivf : faiss.IndexIVF or None
    nlist, quantizer_hnsw, hnsw, refine, selector, exact_vectors, hard_min, signature
    """

    def __init__(self, faiss: ModuleType, index: Any) -> None:
        self.path: list[tuple[str, Any]] = []
        self.ivf: Any = None
        self.nlist = 0
        self.quantizer_hnsw = False
        self.hnsw = False
        self.refine = False
        self.selector = False
        self.exact_vectors = False
        self.hard_min = 1  # the largest codebook: k-means needs as many rows as centroids
        self.floor = 1  # fewest training rows for other reasons (OPQ)
        self.signature: list[str] = []
        self.root = faiss.downcast_index(index)
        self._walk(faiss, self.root, transformed=False)

    def _codebook(self, obj: Any) -> None:
        pq = getattr(obj, "pq", None)
        if pq is not None:
            self.hard_min = max(self.hard_min, int(pq.ksub))

    def _name(self, faiss: ModuleType, node: Any) -> str:
        # faiss writes IndexFlat as IndexFlatIP/IndexFlatL2; they read back as those
        return "IndexFlat" if isinstance(node, faiss.IndexFlat) else type(node).__name__

    def _walk(self, faiss: ModuleType, node: Any, *, transformed: bool) -> None:
        self.signature.append(self._name(faiss, node))
        if isinstance(node, (faiss.IndexIDMap, faiss.IndexIDMap2)):
            self._walk(faiss, faiss.downcast_index(node.index), transformed=transformed)
        elif isinstance(node, faiss.IndexPreTransform):
            self.path.append(("pretransform", node))
            for i in range(node.chain.size()):
                vt = faiss.downcast_VectorTransform(node.chain.at(i))
                # OPQ/PCA/rotations are written as (and read back as) a LinearTransform
                linear = isinstance(vt, faiss.LinearTransform)
                self.signature.append("LinearTransform" if linear else type(vt).__name__)
                if isinstance(vt, faiss.OPQMatrix):
                    # OPQ trains its own 8-bit PQ; faiss 1.15 aborts the process (an
                    # exception inside OpenMP) training OPQ on 300 rows, so ask for 4 x 256
                    self.floor = OPQ_MIN_TRAIN
            self._walk(faiss, faiss.downcast_index(node.index), transformed=True)
        elif isinstance(node, faiss.IndexRefine):
            self.path.append(("refine", node))
            self.refine = True
            refine = faiss.downcast_index(node.refine_index)
            self.signature.append(self._name(faiss, refine))
            self._codebook(refine)
            self._walk(faiss, faiss.downcast_index(node.base_index), transformed=transformed)
            self.exact_vectors = isinstance(refine, faiss.IndexFlat) and not transformed
        elif isinstance(node, faiss.IndexIVF):
            self.path.append(("ivf", node))
            self.ivf = node
            self.nlist = int(node.nlist)
            self.hard_min = max(self.hard_min, self.nlist)
            self._codebook(node)
            quantizer = faiss.downcast_index(node.quantizer)
            self.signature.append(self._name(faiss, quantizer))
            self.quantizer_hnsw = isinstance(quantizer, faiss.IndexHNSW)
            self.selector = True
            self.exact_vectors = type(node) is faiss.IndexIVFFlat and not transformed
        elif isinstance(node, faiss.IndexHNSW):
            self.path.append(("hnsw", node))
            self.hnsw = True
            self.selector = True
            storage = faiss.downcast_index(node.storage)
            self.signature.append(self._name(faiss, storage))
            self._codebook(storage)
            self.exact_vectors = isinstance(storage, faiss.IndexFlat) and not transformed
        elif isinstance(node, (faiss.IndexFlat, faiss.IndexScalarQuantizer)) or (
            type(node).__name__ == "IndexRaBitQ"
        ):
            self.path.append(("selector", node))
            self.selector = True
            self.exact_vectors = isinstance(node, faiss.IndexFlat) and not transformed
        else:
            self.path.append(("other", node))
            self._codebook(node)
            storage = getattr(node, "storage", None)
            if storage is not None:  # NSG and other graph indexes over a storage
                storage = faiss.downcast_index(storage)
                self.signature.append(self._name(faiss, storage))
                self._codebook(storage)
                self.exact_vectors = isinstance(storage, faiss.IndexFlat) and not transformed

    @property
    def native_ids(self) -> bool:
        """Whether the factory index stores caller ids itself (no ``IndexIDMap`` needed)."""
        if self.signature[0] in ("IndexIDMap", "IndexIDMap2"):
            return True
        kinds = [k for k, _ in self.path]
        return "ivf" in kinds and "refine" not in kinds and "other" not in kinds


FACTORY = Param(
    "factory", str, "HNSW32",
    "faiss index_factory string (\"Flat\", \"HNSW32\", \"IVF1024,Flat\", \"IVF1024,PQ48x4fs\", "
    "\"OPQ48,IVF1024,PQ48\", ...); quote it in a spec when it holds a comma",
)
TRAIN_SIZE = Param(
    "train_size", int, 0,
    "vectors gathered before automatic training (and the fewest train() accepts); 0: 39 x "
    "the factory's largest codebook (nlist, 2**nbits); ignored by factories that need no "
    "training", low=0, high=1 << 30,
)
NPROBE = Param("nprobe", int, 0, "IVF lists scanned per query; 0: 16 (at most nlist)",
               low=0, high=1 << 20)
MAX_CODES = Param("max_codes", int, 0, "IVF: stop after scanning this many codes; 0: no limit",
                  low=0, high=1 << 40)
EFSEARCH = Param("efSearch", int, 0,
                 "HNSW search breadth (also the HNSW coarse quantizer of IVF..._HNSW..); 0: 64",
                 low=0, high=1 << 24)
K_FACTOR = Param("k_factor", float, 0.0,
                 "Refine: the base index returns k x k_factor candidates to rescore; 0: the "
                 "factory's value", low=0.0, high=1e6)


@register(
    "faiss",
    params=[FACTORY, TRAIN_SIZE],
    search_params=[EFSEARCH, K_FACTOR, MAX_CODES, NPROBE],  # sorted, as errors list them
)
class FaissIndex(VectorIndex):
    """Any faiss ``index_factory`` index behind the positional index contract.

    See the module docstring for the slot, remove, mask and training rules.

    Parameters
    ----------
    dim : int
    metric : {"cosine", "ip", "l2"}
    factory : str
        faiss ``index_factory`` string; an invalid one raises ``InvalidParameterError``.
    train_size : int
        Vectors needed before (automatic) training; 0: automatic.
    nprobe, efSearch, max_codes, k_factor
        Default search knobs (0: automatic); each must apply to the factory.

    Attributes
    ----------
    faiss_index : faiss.Index
        The wrapped faiss index (the factory's index, or ``IndexIDMap`` around it).
    """

    def __init__(self, dim: int, metric: Metric = "cosine", **params: Any) -> None:
        super().__init__(dim, metric, **params)
        self._faiss = import_faiss()
        self._build_empty()
        self._untrained = not bool(self._index.is_trained)
        self._check_knobs(self.search_defaults)

    # ----------------------------------------------------------------- construction
    @property
    def factory(self) -> str:
        """The faiss ``index_factory`` string."""
        return str(self.params["factory"])

    def _faiss_metric(self) -> int:
        f = self._faiss
        return int(f.METRIC_L2 if self.metric == "l2" else f.METRIC_INNER_PRODUCT)

    def _new_factory_index(self) -> Any:
        f = self._faiss
        try:
            return f.index_factory(self.dim, self.factory, self._faiss_metric())
        except (RuntimeError, TypeError, ValueError) as e:
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise InvalidParameterError(
                f"index 'faiss': factory={self.factory!r} is not a valid faiss index_factory "
                f"string for dim={self.dim}: {msg}"
            ) from e

    def _build_empty(self) -> None:
        """A fresh, empty (untrained where the factory needs training) faiss index."""
        inner = self._new_factory_index()
        layout = _Layout(self._faiss, inner)
        self._adopt(inner if layout.native_ids else self._faiss.IndexIDMap(layout.root))
        self._inner = inner  # the proxy that owns the wrapped C++ index: keep it alive

    def _adopt(self, index: Any) -> None:
        """Make ``index`` (already wrapped if it needs it) the one this object drives."""
        f = self._faiss
        self._owner: Any = index  # the proxy that owns the C++ index (downcasts do not)
        self._inner = None
        self._index = f.downcast_index(index)
        self._layout = _Layout(f, self._index)
        self._idmap = (self._index if isinstance(self._index, (f.IndexIDMap, f.IndexIDMap2))
                       else None)
        self._dead = 0
        self._can_remove = True
        self._dmap = False  # whether the IVF holds a temporary array direct map
        self._pos: npt.NDArray[np.int64] | None = None  # slot -> IDMap inner position
        self._param_cache: dict[tuple[Any, ...], tuple[Any, list[Any]]] = {}
        self._hot: dict[tuple[Any, ...], Any] = {}  # checked knobs -> level-0 parameters
        self._mem: int | None = None
        self._mutated()

    def _check_knobs(self, knobs: Mapping[str, Any]) -> None:
        lay = self._layout
        applies = {
            "nprobe": lay.ivf is not None,
            "max_codes": lay.ivf is not None,
            "efSearch": lay.hnsw or lay.quantizer_hnsw,
            "k_factor": lay.refine,
        }
        for name, ok in applies.items():
            if knobs.get(name) and not ok:
                usable = [n for n, o in applies.items() if o]
                raise InvalidParameterError(
                    f"index 'faiss': search parameter {name}={knobs[name]!r} does not apply to "
                    f"factory {self.factory!r}; it takes: {', '.join(usable) or 'none'}"
                )

    # ----------------------------------------------------------------- properties
    @property
    def faiss_index(self) -> Any:
        """The faiss index this object drives (read it; do not mutate it)."""
        return self._index

    @property
    def ntotal(self) -> int:
        return self._n

    @property
    def is_trained(self) -> bool:
        return self._trained  # faiss's flag, read after every change (see _mutated)

    @property
    def min_train_size(self) -> int:
        if self._needs_training():
            hard, floor = self._layout.hard_min, self._layout.floor
            return max(int(self.params["train_size"]) or POINTS_PER_CENTROID * hard, hard, floor)
        return 0

    def _needs_training(self) -> bool:
        return self._untrained

    @property
    def keeps_vectors(self) -> bool:
        return self._layout.exact_vectors

    @property
    def dead_rows(self) -> int:
        """Removed rows still inside a faiss index that cannot remove (tombstones)."""
        return self._dead

    def memory_bytes(self) -> int:
        if self._mem is None:
            self._drop_direct_map()
            self._mem = int(self._faiss.serialize_index(self._index).size)
        return self._mem

    # ----------------------------------------------------------------- threads
    def _call(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` on ``get_num_threads()`` OpenMP threads, faiss errors wrapped."""
        f = self._faiss
        want = get_num_threads()
        prev = f.omp_get_max_threads()
        if want != prev:
            f.omp_set_num_threads(want)
        try:
            return fn(*args)
        except RuntimeError as e:
            raise BackendError(f"faiss({self.factory}): {e}") from e
        finally:
            if want != prev:
                f.omp_set_num_threads(prev)

    def _mutated(self) -> None:
        self._mem = None
        self._pos = None
        self._n = int(self._index.ntotal) - self._dead
        self._trained = bool(self._index.is_trained)

    # ----------------------------------------------------------------- train / add
    def _train(self, x: FloatMatrix) -> None:
        if self.ntotal or self._dead:
            raise InvalidArgumentError(
                f"{self.spec} holds {self.ntotal} rows encoded with its current model; train "
                "an empty index (or remove the rows first)"
            )
        if not self._needs_training():
            return
        self._build_empty()  # retraining starts from scratch (faiss keeps a trained quantizer)
        try:
            self._call(self._index.train, x)
        except BackendError as e:
            raise InvalidArgumentError(f"{self.spec}: training failed: {e.__cause__}") from e
        self._mutated()

    def _add(self, x: FloatMatrix) -> None:
        self._drop_direct_map()
        n0 = self.ntotal
        ids = np.arange(n0, n0 + x.shape[0], dtype=np.int64)
        self._call(self._index.add_with_ids, x, ids)
        self._mutated()

    # ----------------------------------------------------------------- search
    def _knob_values(self, params: Mapping[str, Any], level: int) -> tuple[int, int, int, float]:
        lay = self._layout
        grow = GROW**level
        nprobe = int(params["nprobe"]) or min(AUTO_NPROBE, max(lay.nlist, 1))
        nprobe = min(nprobe * grow, max(lay.nlist, 1))
        ef = (int(params["efSearch"]) or AUTO_EFSEARCH) * grow
        if level:
            ef = min(ef, max(int(self._index.ntotal), 1))
        max_codes = 0 if level else int(params["max_codes"])
        return nprobe, ef, max_codes, float(params["k_factor"])

    def _exhausted(self, params: Mapping[str, Any], level: int) -> bool:
        nprobe, ef, _, _ = self._knob_values(params, level)
        lay = self._layout
        return (lay.ivf is None or nprobe >= lay.nlist) and (
            not (lay.hnsw or lay.quantizer_hnsw) or ef >= int(self._index.ntotal)
        )

    def _build_params(self, knobs: tuple[int, int, int, float], sel: Any) -> tuple[Any, list[Any]]:
        """faiss search parameters for ``knobs`` and selector ``sel``, plus objects to keep."""
        f = self._faiss
        nprobe, ef, max_codes, k_factor = knobs
        keep: list[Any] = []

        def make(i: int) -> Any:
            if i >= len(self._layout.path):
                return None
            kind, node = self._layout.path[i]
            if kind == "pretransform":  # faiss passes the parameters to the inner index
                return make(i + 1)
            p: Any
            if kind == "refine":
                p = f.IndexRefineSearchParameters()
                p.k_factor = k_factor or float(node.k_factor)
                base = make(i + 1)
                if base is not None:
                    p.base_index_params = base
            elif kind == "ivf":
                p = f.SearchParametersIVF()
                p.nprobe = nprobe
                p.max_codes = max_codes
                if sel is not None:
                    p.sel = sel
                if self._layout.quantizer_hnsw:
                    qp = f.SearchParametersHNSW()
                    qp.efSearch = ef
                    keep.append(qp)
                    p.quantizer_params = qp
            elif kind == "hnsw":
                p = f.SearchParametersHNSW()
                p.efSearch = ef
                if sel is not None:
                    p.sel = sel
            elif kind == "selector" and sel is not None:
                p = f.SearchParameters()
                p.sel = sel
            else:
                return None
            keep.append(p)
            return p

        return make(0), keep

    def _cached_params(self, knobs: tuple[int, int, int, float]) -> Any:
        hit = self._param_cache.get(knobs)
        if hit is None:
            hit = self._param_cache[knobs] = self._build_params(knobs, None)
        return hit[0]

    def _selector(self, mask: npt.NDArray[np.bool_] | None) -> tuple[Any, list[Any]]:
        """An ``IDSelector`` over slots admitting ``mask`` (or every live slot)."""
        f = self._faiss
        if mask is None:
            sel = f.IDSelectorRange(0, self.ntotal)
            keep: list[Any] = [sel]
        else:
            bits = np.packbits(mask, bitorder="little")
            sel = f.IDSelectorBitmap(bits.size, f.swig_ptr(bits))
            keep = [bits, sel]
        if self._idmap is not None:  # nested parameters are not translated by IndexIDMap
            sel = f.IDSelectorTranslated(self._idmap.id_map, sel)
            keep.append(sel)
        return sel, keep

    def _faiss_search(self, q: FloatMatrix, k: int, params: Any) -> tuple[np.ndarray, np.ndarray]:
        f = self._faiss
        nq = q.shape[0]
        dist = np.empty((nq, k), dtype=np.float32)
        labels = np.empty((nq, k), dtype=np.int64)
        self._call(self._index.search_c, nq, f.swig_ptr(q), k, f.swig_ptr(dist),
                   f.swig_ptr(labels), params)
        return dist, labels

    def _scores(self, dist: np.ndarray) -> npt.NDArray[np.float32]:
        return np.negative(dist) if self.metric == "l2" else dist

    def _search(
        self, q: FloatMatrix, k: int, params: Mapping[str, Any],
        mask: npt.NDArray[np.bool_] | None,
    ) -> Result:
        key = (params["nprobe"], params["efSearch"], params["max_codes"], params["k_factor"])
        fp = self._hot.get(key, _MISS)
        if fp is _MISS:  # a knob setting seen for the first time: check that it applies
            self._check_knobs(params)
            fp = self._hot[key] = self._cached_params(self._knob_values(params, 0))
        if mask is None and not self._dead:  # the hot path: cached parameters, no filtering
            dist, labels = self._faiss_search(q, k, fp)
            scores = np.negative(dist, out=dist) if self.metric == "l2" else dist
            nq = labels.shape[0]  # faiss pads at the end of a row: full when the last is set
            if (labels.item(-1) if nq == 1 else labels[:, k - 1].min()) >= 0:
                return scores, labels, full_counts(nq, k)
            ok = labels >= 0
            counts = np.count_nonzero(ok, axis=1).astype(np.int64)
            scores = np.where(ok, scores, np.float32(-np.inf)).astype(np.float32)
            self._complete(q, k, params, None, scores, labels, counts, k)
            return scores, labels, counts
        allowed = self._exact_route(mask)
        if allowed is not None:
            return self._exact_subset(q, k, allowed)
        want = k if mask is None else min(k, int(np.count_nonzero(mask)))
        scores, labels, counts = self._filtered(q, k, params, mask, 0)
        self._complete(q, k, params, mask, scores, labels, counts, want)
        return scores, labels, counts

    def _complete(
        self, q: FloatMatrix, k: int, params: Mapping[str, Any],
        mask: npt.NDArray[np.bool_] | None, scores: np.ndarray, labels: np.ndarray,
        counts: np.ndarray, want: int,
    ) -> None:
        """Search short rows again, widening 4x a round, until complete or exhaustive."""
        level = 0
        rows = np.flatnonzero(counts < want)
        while rows.size and not self._exhausted_for(params, mask, level):
            level += 1
            s, lab, c = self._filtered(q[rows], k, params, mask, level)
            scores[rows], labels[rows], counts[rows] = s, lab, c
            rows = rows[c < want]

    def _exhausted_for(
        self, params: Mapping[str, Any], mask: npt.NDArray[np.bool_] | None, level: int
    ) -> bool:
        if self._filters_in_scan(mask):
            return self._exhausted(params, level)
        return self._fetch(1, level) >= int(self._index.ntotal) and self._exhausted(params, level)

    def _filters_in_scan(self, mask: npt.NDArray[np.bool_] | None) -> bool:
        return self._layout.selector or (mask is None and not self._dead)

    def _fetch(self, k: int, level: int) -> int:
        """Labels to fetch when filtering after the search (no selector support)."""
        n_faiss = int(self._index.ntotal)
        base = max(2 * k, -(-k * n_faiss // max(self.ntotal, 1)) * 2)
        return min(n_faiss, base * GROW**level)

    def _filtered(
        self, q: FloatMatrix, k: int, params: Mapping[str, Any],
        mask: npt.NDArray[np.bool_] | None, level: int,
    ) -> Result:
        """One search at widening ``level``: filtered in the scan, or by over-fetching."""
        knobs = self._knob_values(params, level)
        n = self.ntotal
        keep: list[Any] = []  # SWIG objects the parameters point to, alive until searched
        if self._filters_in_scan(mask):
            if mask is None and not self._dead:
                fp = self._cached_params(knobs)
            else:
                sel, keep = self._selector(mask)
                fp, more = self._build_params(knobs, sel)
                keep += more
                if fp is None:  # the IDMap wrapper alone takes the selector
                    fp = self._faiss.SearchParameters()
                    fp.sel = sel
                    keep.append(fp)
            kk = k
        else:
            fp, kk = self._cached_params(knobs), max(k, self._fetch(k, level))
        dist, labels = self._faiss_search(q, kk, fp)
        del keep
        ok = (labels >= 0) & (labels < n)
        if mask is not None:
            ok[ok] = mask[labels[ok]]
        scores = np.where(ok, self._scores(dist), np.float32(-np.inf)).astype(np.float32)
        labels = np.where(ok, labels, -1)
        if kk > k or not ok.all():
            order = np.argsort(~ok, axis=1, kind="stable")[:, :k]
            scores = np.take_along_axis(scores, order, 1)
            labels = np.take_along_axis(labels, order, 1)
        counts = np.minimum(np.count_nonzero(ok, axis=1), k).astype(np.int64)
        return np.ascontiguousarray(scores), np.ascontiguousarray(labels), counts

    def _exact_subset(
        self, q: FloatMatrix, k: int, allowed: SlotArray
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Exact top-``k`` over the kept vectors of the sorted ``allowed`` slots.

        One BLAS product and a partial sort (ties: lower slot first): for the small sets
        this route serves, several times cheaper than the blocked heap kernel.
        """
        rows = self._get_vectors(allowed)
        scores = q @ rows.T
        if self.metric == "l2":
            qn = np.einsum("ij,ij->i", q, q)[:, None]
            xn = np.einsum("ij,ij->i", rows, rows)[None, :]
            scores = -np.maximum(qn + xn - np.float32(2) * scores, np.float32(0))
        kk = min(k, allowed.size)
        if kk < allowed.size:
            part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        else:
            part = np.broadcast_to(np.arange(allowed.size), scores.shape)
        top = np.take_along_axis(scores, part, 1)
        order = np.lexsort((part, -top), axis=1)
        idx = np.take_along_axis(part, order, 1)
        out_s = np.ascontiguousarray(np.take_along_axis(top, order, 1), dtype=np.float32)
        counts = np.full(q.shape[0], kk, dtype=np.int64)
        return out_s, np.ascontiguousarray(allowed[idx], dtype=np.int64), counts

    # ----------------------------------------------------------------- vectors
    def _positions(self) -> npt.NDArray[np.int64]:
        """slot -> position inside the ``IndexIDMap``'s wrapped index (cached)."""
        if self._pos is None:
            assert self._idmap is not None
            idm = self._id_map_view()
            n = self.ntotal
            live = np.flatnonzero((idm >= 0) & (idm < n))
            pos = np.empty(n, dtype=np.int64)
            pos[idm[live]] = live
            self._pos = pos
        return self._pos

    def _id_map_view(self) -> npt.NDArray[np.int64]:
        assert self._idmap is not None
        vec = self._idmap.id_map
        if vec.size() == 0:
            return np.empty(0, dtype=np.int64)
        return self._faiss.rev_swig_ptr(vec.data(), vec.size())

    def _get_vectors(self, slots: SlotArray) -> FloatMatrix:
        if slots.size == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        keys = np.ascontiguousarray(slots, dtype=np.int64)
        if self._idmap is not None:
            inner = self._faiss.downcast_index(self._idmap.index)
            out = self._call(inner.reconstruct_batch, self._positions()[keys])
        else:
            self._ensure_direct_map()
            out = self._call(self._index.reconstruct_batch, keys)
        return np.ascontiguousarray(out, dtype=np.float32)

    def _ensure_direct_map(self) -> None:
        if not self._dmap and self._layout.ivf is not None:
            self._call(self._layout.ivf.make_direct_map, True)
            self._dmap = True

    def _drop_direct_map(self) -> None:
        if self._dmap:
            self._layout.ivf.make_direct_map(False)
            self._dmap = False

    # ----------------------------------------------------------------- remove
    def _remove(self, slots: SlotArray, moves: Moves) -> None:
        f = self._faiss
        n = self.ntotal
        new_n = n - slots.size
        lut = np.full(n - new_n, -1, dtype=np.int64)
        lut[moves.src - new_n] = moves.dst
        if new_n == 0:
            self._build_or_reset()
        elif self._idmap is None:
            self._remove_ivf(slots, moves, new_n, lut)
        else:
            removed = False
            if self._can_remove:
                try:
                    got = self._call(self._index.remove_ids, f.IDSelectorBatch(slots))
                except BackendError:
                    self._can_remove = False
                else:
                    removed = True
                    if got != slots.size:
                        raise BackendError(
                            f"faiss({self.factory}) removed {got} rows, expected {slots.size}"
                        )
            idm = self._id_map_view()
            if not removed:  # tombstones
                idm[self._positions()[slots]] = TOMBSTONE
                self._dead += int(slots.size)
            hit = (idm >= new_n) & (idm < n)
            idm[hit] = lut[idm[hit] - new_n]
            if isinstance(self._index, f.IndexIDMap2):
                self._index.construct_rev_map()
            self._mutated()
            if self._dead > new_n:
                self._compact(new_n)
        self._mutated()

    def _remove_ivf(self, slots: SlotArray, moves: Moves, new_n: int,
                    lut: npt.NDArray[np.int64]) -> None:
        f = self._faiss
        ivf = self._layout.ivf
        lists = np.empty(0, dtype=np.int64)
        if moves.src.size:
            self._ensure_direct_map()  # ids are 0..n-1, so an array map locates them
            arr = ivf.direct_map.array
            lo = f.rev_swig_ptr(arr.data(), arr.size())
            lists = np.unique(lo[moves.src] >> 32)
        self._drop_direct_map()
        got = self._call(self._index.remove_ids, f.IDSelectorBatch(slots))
        if got != slots.size:
            raise BackendError(f"faiss({self.factory}) removed {got} rows, expected {slots.size}")
        invlists = ivf.invlists
        for lst in lists.tolist():
            size = invlists.list_size(lst)
            if size == 0:
                continue
            ids = f.rev_swig_ptr(invlists.get_ids(lst), size)
            hit = ids >= new_n
            ids[hit] = lut[ids[hit] - new_n]

    def _build_or_reset(self) -> None:
        """Empty the index, keeping what it learned."""
        self._drop_direct_map()
        self._call(self._index.reset)
        self._dead = 0

    def _compact(self, n: int) -> None:
        """Rebuild a tombstoned index from its ``n`` live rows, in slot order."""
        vectors = self._get_vectors(np.arange(n, dtype=np.int64))
        self._build_or_reset()
        self._mutated()
        self._call(self._index.add_with_ids, vectors, np.arange(n, dtype=np.int64))

    # ----------------------------------------------------------------- persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        self._drop_direct_map()
        data = np.asarray(self._faiss.serialize_index(self._index), dtype=np.uint8)
        self._mem = int(data.size)
        return {"faiss_version": str(self._faiss.__version__)}, {"faiss": data}

    def _set_state(self, state: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        f = self._faiss
        data = arrays.get("faiss")
        if data is None or data.dtype != np.uint8 or data.ndim != 1:
            got = None if data is None else (data.dtype, data.shape)
            raise IndexFormatError(f"faiss index needs a uint8 (n,) 'faiss' array, got {got}")
        try:
            index = f.deserialize_index(np.ascontiguousarray(data))
        except RuntimeError as e:
            raise IndexFormatError(f"faiss could not read the stored index: {e}") from e
        expected = self._layout.signature
        self._adopt(index)
        if self._layout.signature != expected:
            raise IndexFormatError(
                f"stored faiss index is {'/'.join(self._layout.signature)}, but factory "
                f"{self.factory!r} builds {'/'.join(expected)}"
            )
        if int(self._index.d) != self.dim or int(self._index.metric_type) != self._faiss_metric():
            raise IndexFormatError(
                f"stored faiss index has d={self._index.d}, metric_type="
                f"{self._index.metric_type}; expected d={self.dim}, {self.metric}"
            )
        total = int(self._index.ntotal)
        if self._idmap is not None:
            idm = self._id_map_view()
            self._dead = int(np.count_nonzero(idm == TOMBSTONE))
            live = idm[idm != TOMBSTONE]
            if live.size and (np.sort(live) != np.arange(live.size)).any():
                raise IndexFormatError("stored faiss IndexIDMap does not hold slots 0..n-1")
            self._mutated()
        elif total and self._layout.ivf is not None:
            try:  # an array direct map only builds over ids 0..n-1
                self._ensure_direct_map()
            except BackendError as e:
                raise IndexFormatError("stored faiss IVF does not hold slots 0..n-1") from e
            self._drop_direct_map()
        self._mem = int(data.size)
