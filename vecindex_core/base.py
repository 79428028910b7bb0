"""The positional index contract, :class:`VectorIndex`.

Rows are slots ``0..ntotal-1``. Public methods validate their inputs once, here, and then
call the ``_``-prefixed hooks that each kind implements with clean arrays: float32
C-contiguous vectors (L2-normalised for ``cosine``), sorted unique int64 slots, and a bool
mask or None. A public call that raises has changed nothing.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt

from . import io
from .errors import (
    InvalidArgumentError,
    InvalidParameterError,
    NotSupportedError,
    NotTrainedError,
)
from .registry import format_spec, get_kind
from .types import FloatMatrix, Metric, SearchResult, SlotArray
from .validation import (
    MAX_K,
    as_float_matrix,
    as_mask,
    as_slots,
    check_k,
    check_metric,
    quick_float_rows,
)

if TYPE_CHECKING:
    from .registry import IndexKind

__all__ = [
    "EXACT_MASK_ROWS",
    "Moves",
    "VectorIndex",
    "apply_score_map",
    "fit_score_map",
    "full_counts",
    "normalize_rows",
    "swap_remove_plan",
]

#: A mask allowing at most ``max(EXACT_MASK_ROWS, ntotal // 64)`` rows is searched exactly
#: over those rows by approximate kinds that keep their vectors (cheaper than the
#: approximate scan, and exact).
EXACT_MASK_ROWS = 2048
#: Distinct per-call ``params`` values whose validated form an index keeps (then it starts
#: over).
PARAMS_CACHE_SIZE = 64

Result = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]


class Moves(NamedTuple):
    """Slot moves made by a swap-remove: row ``src[i]`` now lives at ``dst[i]``.

    Every other surviving slot is unchanged; slots ``>= ntotal`` after the call are gone.
    """

    src: SlotArray
    dst: SlotArray


def swap_remove_plan(ntotal: int, slots: SlotArray) -> Moves:
    """Plan a swap-remove of sorted unique ``slots`` from ``ntotal`` rows in O(len(slots)).

    The holes below the new size are filled with the surviving rows above it, taken from the
    end (the highest surviving row fills the lowest hole).
    """
    new_n = ntotal - slots.size
    if slots.size == 1:  # the common single-id case, without temporaries
        s = int(slots[0])
        pair = np.array([new_n] if s != new_n else [], dtype=np.int64)
        return Moves(pair, slots if s != new_n else pair)
    holes = slots[slots < new_n]
    tail_removed = slots[slots >= new_n]
    keep = np.ones(ntotal - new_n, dtype=bool)
    keep[tail_removed - new_n] = False
    sources = (np.flatnonzero(keep) + new_n)[::-1]
    return Moves(np.ascontiguousarray(sources[: holes.size]), holes)


_ONE_ROW_COUNTS: dict[int, npt.NDArray[np.int64]] = {}


def full_counts(nq: int, k: int) -> npt.NDArray[np.int64]:
    """``counts`` of a result whose ``nq`` rows all hold ``k`` results: a new int64 ``(nq,)``.

    ``np.full`` at a fraction of its per-call cost, which a single-query search notices
    (one row: a copy of a cached ``[k]``).
    """
    if nq == 1:
        one = _ONE_ROW_COUNTS.get(k)
        if one is None:
            if len(_ONE_ROW_COUNTS) >= 1024:
                _ONE_ROW_COUNTS.clear()
            one = _ONE_ROW_COUNTS[k] = np.full(1, k, dtype=np.int64)
        return one.copy()
    out = np.empty(nq, dtype=np.int64)
    out.fill(k)
    return out


def normalize_rows(x: FloatMatrix) -> FloatMatrix:
    """Return ``x / ||x||`` row by row (float32); all-zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def fit_score_map(estimated: npt.ArrayLike, exact: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Least-squares ``(a, b)`` with ``exact ~ a * estimated + b`` (score calibration).

    Falls back to the identity ``(1, 0)`` when the fit is degenerate (fewer than two
    distinct estimates, a non-finite result, or ``a <= 0``, which would reverse the ranking).
    """
    e = np.asarray(estimated, dtype=np.float64).ravel()
    t = np.asarray(exact, dtype=np.float64).ravel()
    identity = np.array([1.0, 0.0])
    if e.size < 2 or float(np.ptp(e)) == 0.0:
        return identity
    a, b = np.polyfit(e, t, 1)
    if not (np.isfinite(a) and np.isfinite(b)) or a <= 0:
        return identity
    return np.array([a, b], dtype=np.float64)


def apply_score_map(
    scores: npt.NDArray[np.float32], slots: npt.NDArray[np.int64],
    ab: npt.NDArray[np.float64] | None,
) -> npt.NDArray[np.float32]:
    """``a * score + b`` for real results (padding stays ``-inf``); ``ab=None``: unchanged."""
    if ab is None:
        return scores
    a, b = np.float32(ab[0]), np.float32(ab[1])
    return np.where(slots >= 0, a * scores + b, np.float32(-np.inf)).astype(np.float32)


class VectorIndex(abc.ABC):
    """Positional vector index: the contract every kind implements.

    Parameters
    ----------
    dim : int
        Number of dimensions, ``>= 1``.
    metric : {"cosine", "ip", "l2"}
        Scores are always "higher is better": cosine similarity, inner product, or the
        negated squared L2 distance.
    **params
        The kind's declared parameters (see ``vecindex_core.registry``); search-time knobs
        given here become the defaults of ``search``.

    Attributes
    ----------
    dim, metric, ntotal, is_trained, spec
    params : mapping
        All construction parameters, defaults filled in.
    """

    kind: ClassVar[IndexKind]

    def __init__(self, dim: int, metric: Metric = "cosine", **params: Any) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise InvalidArgumentError(f"dim must be an integer >= 1, got {dim!r}")
        self.dim = int(dim)
        self.metric: Metric = check_metric(metric)
        validated = self.kind.validate_params(params)
        self.params: Mapping[str, Any] = MappingProxyType(validated)
        self.search_defaults: Mapping[str, Any] = MappingProxyType(
            {p.name: validated[p.name] for p in self.kind.search_params}
        )
        self._params_cache: dict[tuple[Any, ...], Mapping[str, Any]] = {}

    # ----------------------------------------------------------------- properties
    @property
    @abc.abstractmethod
    def ntotal(self) -> int:
        """Number of rows (slots) in the index."""

    @property
    def is_trained(self) -> bool:
        """Whether the index can accept ``add``; kinds that need training override this."""
        return True

    @property
    def min_train_size(self) -> int:
        """Vectors needed by ``train``; 0 for kinds that need no training."""
        return 0

    @property
    def keeps_vectors(self) -> bool:
        """Whether :meth:`get_vectors` can return the stored (metric-prepared) vectors."""
        return False

    @property
    def spec(self) -> str:
        """Spec string that recreates this index with :func:`vecindex_core.create`."""
        return format_spec(self.kind.name, self.params)

    def __len__(self) -> int:
        return self.ntotal

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(spec={self.spec!r}, dim={self.dim}, metric={self.metric!r}, "
            f"ntotal={self.ntotal})"
        )

    # ----------------------------------------------------------------- public API
    def prepare(self, x: object, *, name: str = "x") -> FloatMatrix:
        """Validate vectors and apply the metric's input transform (unit norm for cosine)."""
        arr = as_float_matrix(x, self.dim, name=name)
        return normalize_rows(arr) if self.metric == "cosine" else arr

    def train(self, x: object) -> None:
        """Learn the index's parameters from sample vectors ``x`` (float (n, dim))."""
        xp = self.prepare(x)
        if xp.shape[0] < self.min_train_size:
            raise InvalidArgumentError(
                f"{self.spec} needs at least {self.min_train_size} training vectors, "
                f"got {xp.shape[0]}"
            )
        self._train(xp)

    def add(self, x: object) -> None:
        """Append vectors ``x`` (float (n, dim), or one (dim,) vector) as new slots."""
        self._add_prepared(self.prepare(x))

    def _add_prepared(self, x: FloatMatrix) -> None:
        """``add`` for vectors that already went through :meth:`prepare`."""
        self._require_trained("add")
        self._add(x)

    def search(
        self,
        q: object,
        k: int,
        *,
        params: Any = None,
        mask: object = None,
    ) -> SearchResult:
        """Find the ``k`` best slots for each query.

        Parameters
        ----------
        q : array_like, shape (nq, dim) or (dim,)
            Queries; a 1-D query is one row and still returns 2-D results.
        k : int
            Number of results per query; ``k > ntotal`` pads, never raises.
        params : dict or the kind's ``SearchParams``, optional
            Search-time knobs; unknown keys raise listing the valid ones.
        mask : bool array of shape (ntotal,), optional
            Only slots where ``mask`` is true can be returned; applied inside the scan.

        Returns
        -------
        SearchResult
            ``scores`` float32 (nq, k), ``ids`` int64 slots (nq, k) padded with ``-1``
            (scores ``-inf``), ``counts`` int64 (nq,).

        Notes
        -----
        The common call (a C-contiguous float32 ndarray of shape (nq, dim) or (dim,), an
        ``int`` k, no mask) takes a fast path that checks the same things (dimension,
        dtype, NaN/inf, k, params, training) without the generic coercion: on a single
        query of a fast library index the wrapper's own cost is a few microseconds.
        Validated ``params`` are cached per distinct value (see :meth:`_resolve_params`).
        """
        if mask is None:
            found = self._quick_search(q, k, params)
            if found is not None:
                return SearchResult(*found)
        qp, kk, sp, m = self._search_args(q, k, params, mask)
        if self.ntotal == 0 or (m is not None and not m.any()):
            return _empty_result(qp.shape[0], kk)
        scores, slots, counts = self._search(qp, min(kk, self.ntotal), sp, m)
        return _pad_result(scores, slots, counts, kk)

    def _quick_search(self, q: object, k: object, params: Any) -> Result | SearchResult | None:
        """:meth:`search` without a mask for the common call, or None to take the full route.

        The common call is float32 ndarray queries (see
        :func:`~vecindex_core.validation.quick_float_rows`) and an ``int`` k in range: it gets
        the same checks (dimension, dtype, NaN/inf, k, params, training) without the generic
        coercion. Anything else, valid or not, returns None before any work, and the caller
        runs the full route, which converts it or raises the typed error. Wrappers (such as
        :class:`~vecindex_core.IdMapIndex`) call this directly to save a layer per query.
        """
        qp = quick_float_rows(q, self.dim)
        if qp is None or type(k) is not int or not 0 < k <= MAX_K:
            return None
        if self.metric == "cosine":
            qp = normalize_rows(qp)
        sp = self.search_defaults if params is None else self._resolve_params(params)
        n = self.ntotal
        if n == 0:
            return _empty_result(qp.shape[0], k)
        if not self.is_trained:
            self._require_trained("search")
        scores, slots, counts = self._search(qp, k if k < n else n, sp, None)
        if slots.shape[1] == k:
            return scores, slots, counts
        return _pad_result(scores, slots, counts, k)

    def _search_args(
        self, q: object, k: int, params: Any, mask: object
    ) -> tuple[FloatMatrix, int, Mapping[str, Any], npt.NDArray[np.bool_] | None]:
        """Validate ``search``'s arguments: prepared queries, k, params and the mask."""
        qp = self.prepare(q, name="q")
        kk = check_k(k)
        sp = self._resolve_params(params)
        m = None if mask is None else as_mask(mask, self.ntotal)
        if self.ntotal and (m is None or m.any()):
            self._require_trained("search")
        return qp, kk, sp, m

    def _resolve_params(self, params: Any) -> Mapping[str, Any]:
        """Validated search knobs: ``params`` (None, dict or typed) merged over the defaults.

        The result is read-only and cached per distinct value (names, value types and
        values, so ``{"ef": True}`` is never served what ``{"ef": 1}`` validated to), so a
        loop of searches with the same knobs validates them once; values that cannot be
        hashed, and other mapping types, are validated on every call.
        """
        if params is None:
            return self.search_defaults
        if type(params) is dict:
            items = params.items()
        elif type(params) is self.kind.SearchParams:
            items = vars(params).items()
        else:
            items = None
        key = None if items is None else tuple([(n, type(v), v) for n, v in items])
        try:
            hit = None if key is None else self._params_cache.get(key)
        except TypeError:  # an unhashable value
            key = None
        else:
            if hit is not None:
                return hit
        resolved = MappingProxyType(
            self.kind.validate_search_params(params, self.search_defaults)
        )
        if key is not None:
            if len(self._params_cache) >= PARAMS_CACHE_SIZE:
                self._params_cache.clear()
            self._params_cache[key] = resolved
        return resolved

    def remove(self, slots: object) -> Moves:
        """Remove ``slots`` by swap-remove; returns the :class:`Moves` it made."""
        return self._remove_slots(as_slots(slots, self.ntotal))

    def _remove_slots(self, slots: SlotArray) -> Moves:
        """``remove`` for slots that are already sorted, unique and in range."""
        if slots.size == 0:
            empty = np.empty(0, dtype=np.int64)
            return Moves(empty, empty)
        moves = swap_remove_plan(self.ntotal, slots)
        self._remove(slots, moves)
        return moves

    def get_vectors(self, slots: object) -> FloatMatrix:
        """Stored vectors of ``slots`` (after the metric transform), float32 (n, dim)."""
        if not self.keeps_vectors:
            raise NotSupportedError(f"{self.spec} does not keep the original vectors")
        return self._get_vectors(as_slots(slots, self.ntotal, unique=False))

    @abc.abstractmethod
    def memory_bytes(self) -> int:
        """Bytes of memory held by the index's arrays."""

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index atomically to ``path`` in the vecindex format."""
        io.write_index(path, *self._to_file())

    def to_bytes(self) -> bytes:
        """The exact bytes :meth:`save` writes."""
        data = io.write_index(None, *self._to_file())
        assert data is not None
        return data

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VectorIndex:
        """Load a positional index saved by :meth:`save` (or the index inside an id map)."""
        header, arrays = io.read_index(path)
        return index_from_file(header, arrays, f"index file {os.fspath(path)!r}")

    @classmethod
    def from_bytes(cls, data: bytes) -> VectorIndex:
        """Inverse of :meth:`to_bytes`."""
        header, arrays = io.read_index_bytes(data)
        return index_from_file(header, arrays, "index bytes")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_index_from_bytes, (self.to_bytes(),))

    def __copy__(self) -> VectorIndex:
        return self.from_bytes(self.to_bytes())

    def __deepcopy__(self, memo: dict[int, Any]) -> VectorIndex:
        return self.__copy__()

    def _to_file(self, prefix: str = "index/") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        state, arrays = self._get_state()
        header = {
            "kind": self.kind.name,
            "spec": self.spec,
            "params": dict(self.params),
            "dim": self.dim,
            "metric": self.metric,
            "dtype": "float32",
            "ntotal": self.ntotal,
            "state": state,
        }
        return header, {prefix + k: v for k, v in arrays.items()}

    # ----------------------------------------------------------------- hooks
    def _require_trained(self, op: str) -> None:
        if not self.is_trained:
            raise NotTrainedError(
                f"{self.spec} must be trained before {op}: call train() with at least "
                f"{self.min_train_size} vectors (IdMapIndex and Collection do this for you)"
            )

    def _train(self, x: FloatMatrix) -> None:  # noqa: B027 - optional hook
        """Learn from prepared vectors; kinds that need training override this."""

    @abc.abstractmethod
    def _add(self, x: FloatMatrix) -> None:
        """Append prepared vectors."""

    @abc.abstractmethod
    def _search(
        self, q: FloatMatrix, k: int, params: Mapping[str, Any], mask: npt.NDArray[np.bool_] | None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Top-``k`` (``1 <= k <= ntotal``) over prepared queries; rows best first."""

    @abc.abstractmethod
    def _remove(self, slots: SlotArray, moves: Moves) -> None:
        """Apply a swap-remove: copy row ``moves.src[i]`` to ``moves.dst[i]``, then truncate."""

    def _get_vectors(self, slots: SlotArray) -> FloatMatrix:
        raise NotSupportedError(f"{self.spec} does not keep the original vectors")

    def _check_rerank(self, params: Mapping[str, Any]) -> int:
        """The ``rerank`` knob of ``params`` (0 when absent); it needs kept vectors."""
        rerank = int(params.get("rerank", 0))
        if rerank and not self.keeps_vectors:
            raise InvalidParameterError(
                f"{self.spec}: rerank={rerank} needs keep_vectors=true (this index keeps only "
                "its codes)"
            )
        return rerank

    def _exact_route(self, mask: npt.NDArray[np.bool_] | None) -> SlotArray | None:
        """The allowed slots when ``mask`` is small enough to search exactly, else None."""
        if mask is None or not self.keeps_vectors:
            return None
        allowed = np.flatnonzero(mask)
        return allowed if allowed.size <= max(EXACT_MASK_ROWS, self.ntotal // 64) else None

    def _exact_subset(self, q: FloatMatrix, k: int, allowed: SlotArray) -> Result:
        """Exact top-``k`` over the stored vectors of the sorted ``allowed`` slots."""
        from ._kernels.topk import dense_topk, sq_norms

        rows = self._get_vectors(allowed)
        l2 = self.metric == "l2"
        return dense_topk(q, rows, k, l2=l2, data_sq_norms=sq_norms(rows) if l2 else None,
                          slot_map=allowed)

    @abc.abstractmethod
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-serialisable state and named arrays that :meth:`_set_state` restores."""

    @abc.abstractmethod
    def _set_state(self, state: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        """Restore what :meth:`_get_state` returned (on a freshly constructed index)."""


def _empty_result(nq: int, k: int) -> SearchResult:
    return SearchResult(
        np.full((nq, k), -np.inf, dtype=np.float32),
        np.full((nq, k), -1, dtype=np.int64),
        np.zeros(nq, dtype=np.int64),
    )


def _pad_result(
    scores: npt.NDArray[np.float32],
    slots: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    k: int,
) -> SearchResult:
    nq, have = scores.shape
    if have == k:
        return SearchResult(scores, slots, counts)
    out = _empty_result(nq, k)
    out.scores[:, :have] = scores
    out.ids[:, :have] = slots
    return SearchResult(out.scores, out.ids, counts)


def index_from_file(
    header: Mapping[str, Any], arrays: Mapping[str, np.ndarray], where: str
) -> VectorIndex:
    """Rebuild a positional index from a file's header and arrays."""
    from .errors import IndexFormatError

    try:
        kind = get_kind(header["kind"])
        index = kind.cls(dim=header["dim"], metric=header["metric"], **header["params"])
        inner = {k[6:]: v for k, v in arrays.items() if k.startswith("index/")}
        index._set_state(header["state"], inner)
        ntotal = header["ntotal"]
    except IndexFormatError as e:
        raise IndexFormatError(f"{where}: {e}") from e
    except (KeyError, TypeError, ValueError) as e:
        raise IndexFormatError(f"{where} holds an index that cannot be rebuilt: {e}") from e
    if index.ntotal != ntotal:
        raise IndexFormatError(
            f"{where} is corrupt: header says {header['ntotal']} rows, arrays hold {index.ntotal}"
        )
    return index


def _index_from_bytes(data: bytes) -> VectorIndex:
    return VectorIndex.from_bytes(data)
