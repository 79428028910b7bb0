"""What every document collection shares: records, batch validation and the common API.

Two collections implement one API, :class:`BaseCollection`:

- :class:`~vecindex_core.collection.Collection`: SQLite (or memory) plus any registered
  index, in this process;
- :class:`~vecindex_core.milvus.collection.MilvusCollection`: documents, metadata and
  vectors in a Milvus collection (embedded milvus-lite or a Milvus server), filters run
  inside Milvus.

The three framework adapters accept either. This module holds the pure parts both use:
the result types :class:`Record` and :class:`Hit`, the validation of an upsert batch
(:func:`check_batch`, :func:`vector_matrix`), metadata checks, exact scoring and the MMR
selection, so the same bad input raises the same typed error whichever collection it hits.
"""

from __future__ import annotations

import abc
import json
import math
import os
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from .base import normalize_rows
from .errors import (
    DimensionMismatchError,
    DuplicateIdError,
    InvalidArgumentError,
    InvalidDtypeError,
)
from .types import FloatMatrix, Metric
from .validation import as_float_matrix, check_int, check_k

__all__ = [
    "BaseCollection",
    "DuplicatePolicy",
    "Hit",
    "RWLock",
    "Record",
    "UpsertBatch",
    "check_batch",
    "check_delete_args",
    "check_page",
    "check_metadata",
    "dumps_metadata",
    "exact_scores",
    "kept_rows",
    "match_settings",
    "mmr_select",
    "plain_json",
    "storable_ids",
    "str_ids",
    "vector_matrix",
]

#: What :meth:`BaseCollection.upsert` does with an id that is already stored.
DuplicatePolicy = Literal["overwrite", "skip", "fail"]

_C = TypeVar("_C", bound="BaseCollection")


@dataclass(frozen=True)
class Record:
    """One stored document.

    Attributes
    ----------
    id : str
        The caller's string id.
    text : str or None
    metadata : dict
        A fresh dict of JSON types on every read.
    vector : ndarray of float32, shape (dim,), or None
        Only filled when asked for (``include_vectors=True``) and the document has one.
    uid : int
        The uint64 id of the document inside the index.
    """

    id: str
    text: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: npt.NDArray[np.float32] | None = None
    uid: int = 0


class Hit(NamedTuple):
    """A search result: the document and its score (higher is better; ``l2`` is negated)."""

    record: Record
    score: float


# --------------------------------------------------------------------------- metadata
def plain_json(value: Any, where: str) -> Any:
    """A plain JSON copy of ``value`` (dicts, lists, str, int, finite float, bool, None).

    Tuples become lists and other mappings dicts, exactly as JSON would store them, so the
    filter evaluators see what the store keeps. Anything else raises
    :class:`InvalidArgumentError`, naming where it sits.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgumentError(f"{where} is {value!r}; metadata must be finite JSON")
        return value
    if isinstance(value, (list, tuple)):
        return [plain_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgumentError(
                    f"{where} has the key {key!r} of type {type(key).__name__}; metadata keys "
                    "must be str"
                )
            out[key] = plain_json(item, f"{where}[{key!r}]")
        return out
    raise InvalidArgumentError(
        f"{where} is {value!r} of type {type(value).__name__}, which is not JSON "
        "(metadata values must be str, int, float, bool, None, lists or dicts of those)"
    )


def check_metadata(meta: object, doc_id: str) -> tuple[dict[str, Any], str]:
    """Validated plain metadata of one document and its JSON text.

    Raises
    ------
    InvalidArgumentError
        ``meta`` is neither None nor a dict of JSON values.
    """
    if meta is None:
        return {}, "{}"
    if not isinstance(meta, Mapping):
        raise InvalidArgumentError(
            f"metadata of document {doc_id!r} is a {type(meta).__name__}, expected a dict"
        )
    plain = plain_json(meta, f"metadata of document {doc_id!r}")
    return plain, dumps_metadata(plain)


def dumps_metadata(meta: Mapping[str, Any]) -> str:
    """Compact JSON text of plain metadata (unicode kept as is)."""
    return json.dumps(meta, ensure_ascii=False, separators=(",", ":"))


def str_ids(ids: Sequence[object], what: str = "ids") -> list[str]:
    """``ids`` as a list of non-empty str.

    Raises
    ------
    InvalidDtypeError
        ``ids`` is a single str/bytes, or an item is not a str.
    InvalidArgumentError
        An item is the empty string.
    """
    if isinstance(ids, (str, bytes)):
        raise InvalidDtypeError(f"{what} must be a sequence of str, got the single {ids!r}")
    out: list[str] = []
    for i in ids:
        if not isinstance(i, str):
            raise InvalidDtypeError(f"{what} must be str, got {i!r} of type {type(i).__name__}")
        if not i:
            raise InvalidArgumentError(f"{what} must be non-empty str, got ''")
        out.append(i)
    return out


# --------------------------------------------------------------------------- upsert batches
@dataclass(frozen=True)
class UpsertBatch:
    """An upsert batch checked in everything that does not depend on the store's state.

    Attributes
    ----------
    ids : list of str
        Unique, non-empty (generated uuid4 hex strings when none were given).
    texts : list of (str or None)
    metadatas : list of dict
        Plain JSON copies.
    metadata_json : list of str
        Their compact JSON text.
    vectors : list or None
        One raw item per document (None: the document has no vector), unchecked until
        :func:`vector_matrix` sees the store's dimension.
    has_vec : list of bool
    """

    ids: list[str]
    texts: list[str | None]
    metadatas: list[dict[str, Any]]
    metadata_json: list[str]
    vectors: list[object] | None
    has_vec: list[bool]

    def __len__(self) -> int:
        return len(self.ids)


def check_batch(
    ids: Sequence[str] | None,
    texts: Sequence[str | None] | None,
    vectors: object,
    metadatas: Sequence[Mapping[str, Any] | None] | None,
    on_duplicate: object,
) -> UpsertBatch:
    """Check an upsert batch (all but the vectors' dimension) before anything is written.

    Raises
    ------
    InvalidArgumentError
        Unknown ``on_duplicate``, lengths that differ, an empty id, non-JSON metadata.
    InvalidDtypeError
        A single str where a sequence belongs, an id or text that is not a str.
    DuplicateIdError
        An id repeats inside the batch.
    """
    if on_duplicate not in ("overwrite", "skip", "fail"):
        raise InvalidArgumentError(
            f"on_duplicate is {on_duplicate!r}; expected 'overwrite', 'skip' or 'fail'"
        )
    if isinstance(texts, (str, bytes)) or isinstance(metadatas, Mapping):
        what = "texts" if isinstance(texts, (str, bytes)) else "metadatas"
        raise InvalidDtypeError(f"{what} must be a sequence with one item per document")
    vec_rows = _vector_rows(vectors)
    n = _batch_size(ids, texts, vec_rows, metadatas)
    if n == 0:
        return UpsertBatch([], [], [], [], vec_rows, [])
    sids = [uuid.uuid4().hex for _ in range(n)] if ids is None else str_ids(ids)
    if len(set(sids)) != n:
        seen: set[str] = set()
        dup = sorted({s for s in sids if s in seen or seen.add(s)})  # type: ignore[func-returns-value]
        raise DuplicateIdError(f"ids {dup[:10]} repeat inside the batch; nothing was written")
    text_list: list[str | None] = [None] * n if texts is None else list(texts)
    for sid, t in zip(sids, text_list, strict=True):
        if t is not None and not isinstance(t, str):
            raise InvalidDtypeError(f"text of document {sid!r} is {type(t).__name__}, not str")
        _check_utf8(sid, "id", sid)
        if t is not None:
            _check_utf8(t, "text", sid)
    raw_metas = [None] * n if metadatas is None else list(metadatas)
    checked = [check_metadata(m, s) for m, s in zip(raw_metas, sids, strict=True)]
    has_vec = [False] * n if vec_rows is None else [v is not None for v in vec_rows]
    return UpsertBatch(
        sids, text_list, [c[0] for c in checked], [c[1] for c in checked], vec_rows, has_vec
    )


def _batch_size(*args: object) -> int:
    sizes = {len(a) for a in args if a is not None}  # type: ignore[arg-type]
    if len(sizes) > 1:
        raise InvalidArgumentError(
            f"ids, texts, vectors and metadatas have different lengths {sorted(sizes)}"
        )
    return sizes.pop() if sizes else 0


def _vector_rows(vectors: object) -> list[object] | None:
    if vectors is None:
        return None
    if isinstance(vectors, np.ndarray) and vectors.ndim == 2:
        return list(vectors)
    if isinstance(vectors, (str, bytes)) or not hasattr(vectors, "__len__"):
        raise InvalidDtypeError(
            "vectors must be a 2-D array or a sequence of vectors, got "
            f"{type(vectors).__name__}"
        )
    return list(vectors)  # type: ignore[call-overload]


def vector_matrix(batch: UpsertBatch, dim: int | None) -> tuple[FloatMatrix, int | None]:
    """The batch's non-None vectors as one validated (m, dim) float32 matrix, and the dim.

    ``dim=None`` (no vector stored yet) takes the first vector's length.

    Raises
    ------
    DimensionMismatchError, NonFiniteError, InvalidDtypeError
        A vector has the wrong length, NaN/inf, or is not numeric.
    """
    present = [r for r, h in zip(batch.vectors or [], batch.has_vec, strict=False) if h]
    if not present:
        return np.empty((0, dim or 0), dtype=np.float32), dim
    if dim is None:
        dim = len(present[0]) if hasattr(present[0], "__len__") else 0
    try:
        matrix = as_float_matrix(present, dim, name="vectors")
    except (DimensionMismatchError, InvalidArgumentError) as e:
        lengths = {len(r) if hasattr(r, "__len__") else -1 for r in present}
        bad = sorted(lengths - {dim})
        if not bad and dim >= 1:
            raise
        raise DimensionMismatchError(
            f"vectors have {bad[0] if bad else dim} dimensions, but this collection "
            f"expects {dim}; nothing was written"
        ) from e
    return matrix, dim


# --------------------------------------------------------------------------- scoring
def exact_scores(q: FloatMatrix, x: FloatMatrix, metric: Metric) -> npt.NDArray[np.float32]:
    """Scores (nq, n) of queries against rows by the library rule (higher is better)."""
    if metric == "cosine":
        q, x = normalize_rows(q), normalize_rows(x)
    s = q @ x.T
    if metric == "l2":
        qn = np.einsum("ij,ij->i", q, q)
        xn = np.einsum("ij,ij->i", x, x)
        s = -np.maximum(qn[:, None] + xn[None, :] - np.float32(2) * s, np.float32(0))
    return np.asarray(s, dtype=np.float32)


def mmr_select(
    query: npt.NDArray[np.float32], cand: FloatMatrix, k: int, lambda_mult: float
) -> list[int]:
    """Greedy maximal-marginal-relevance order of unit-norm ``cand`` rows for unit ``query``.

    Returns up to ``k`` row indices; ties go to the lower row (the better search rank).
    """
    n = cand.shape[0]
    rel = cand @ query
    sim = cand @ cand.T
    chosen: list[int] = []
    best_sim = np.full(n, -np.inf, dtype=np.float32)
    free = np.ones(n, dtype=np.bool_)
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(best_sim), best_sim, 0.0)
        score = lambda_mult * rel - (1.0 - lambda_mult) * penalty
        score[~free] = -np.inf
        i = int(np.argmax(score))
        chosen.append(i)
        free[i] = False
        best_sim = np.maximum(best_sim, sim[i])
    return chosen


# --------------------------------------------------------------------------- the API
class BaseCollection(abc.ABC):
    """The document collection API the framework adapters use.

    Subclasses store documents ``(string id, text, metadata, vector)`` and implement the
    abstract methods; :meth:`search`, :meth:`mmr`, the context manager and ``len()`` are
    shared. Scores follow the library rule (higher is better; ``l2`` is the negated squared
    distance). Bad input raises the same typed errors in every subclass, and a batch that
    fails validation writes nothing.
    """

    # ----------------------------------------------------------------- properties
    @property
    @abc.abstractmethod
    def path(self) -> str | None:
        """Where the documents live (a file path or a URI), or None in memory."""

    @property
    @abc.abstractmethod
    def dim(self) -> int | None:
        """Vector dimensions, or None until the first vector is written."""

    @property
    @abc.abstractmethod
    def metric(self) -> Metric:
        """The metric chosen at creation."""

    @property
    @abc.abstractmethod
    def index_spec(self) -> str:
        """The index chosen at creation, in canonical form."""

    # ----------------------------------------------------------------- writes
    @abc.abstractmethod
    def upsert(
        self,
        ids: Sequence[str] | None = None,
        texts: Sequence[str | None] | None = None,
        vectors: object = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        on_duplicate: DuplicatePolicy = "overwrite",
    ) -> list[str]:
        """Write documents; returns the ids written, in input order."""

    @abc.abstractmethod
    def delete(
        self, ids: Sequence[str] | None = None, *, filter: Mapping[str, Any] | None = None
    ) -> int:
        """Delete documents by id or by (non-empty) filter; returns how many."""

    @abc.abstractmethod
    def clear(self, *, reset_index: bool = False) -> int:
        """Delete every document; returns how many."""

    @abc.abstractmethod
    def update_metadata(
        self, filter: Mapping[str, Any] | None, metadata: Mapping[str, Any]
    ) -> int:
        """Merge ``metadata`` into every document matching ``filter``; returns how many."""

    # ----------------------------------------------------------------- reads
    @abc.abstractmethod
    def count(self, filter: Mapping[str, Any] | None = None) -> int:
        """Number of documents matching ``filter`` (all documents when None)."""

    @abc.abstractmethod
    def get(self, ids: Sequence[str], *, include_vectors: bool = False) -> list[Record]:
        """Documents with these ids, in the given order; unknown ids are skipped."""

    @abc.abstractmethod
    def find(
        self,
        filter: Mapping[str, Any] | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
        include_vectors: bool = False,
    ) -> list[Record]:
        """Documents matching ``filter`` in write order (first write of each id)."""

    @abc.abstractmethod
    def search_batch(
        self,
        vectors: object,
        k: int = 4,
        *,
        filter: Mapping[str, Any] | None = None,
        ids: Sequence[str] | None = None,
        params: Any = None,
        include_vectors: bool = False,
    ) -> list[list[Hit]]:
        """:meth:`search` for a batch of query vectors ``(nq, dim)``; one list per query."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of documents."""

    # ----------------------------------------------------------------- lifecycle
    @abc.abstractmethod
    def flush(self) -> None:
        """Make everything written so far cheap to reopen (durability never waits on it)."""

    @abc.abstractmethod
    def copy_to(self, path: str | os.PathLike[str]) -> None:
        """Write a consistent copy of the collection to ``path``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the storage; further calls raise."""

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- shared search
    def search(
        self,
        vector: object,
        k: int = 4,
        *,
        filter: Mapping[str, Any] | None = None,
        ids: Sequence[str] | None = None,
        params: Any = None,
        include_vectors: bool = False,
    ) -> list[Hit]:
        """True top-``k`` documents for one query vector.

        Parameters
        ----------
        vector : array_like, shape (dim,)
        k : int
        filter : dict, optional
            A filter in the core language (:mod:`vecindex_core.filters`).
        ids : sequence of str, optional
            Restrict to these document ids (``[]`` allows nothing).
        params : dict or SearchParams, optional
            Search-time knobs of the index (``nprobe``, ``rerank``, ``ef``...).
        include_vectors : bool
            Fill :attr:`Record.vector`.

        Returns
        -------
        list of Hit
            Best first; fewer than ``k`` when fewer documents match.
        """
        shape = getattr(vector, "shape", None)
        if shape is None:
            shape = np.shape(np.asarray(vector, dtype=object))
        if len(shape) != 1:
            raise InvalidArgumentError(
                f"search takes one vector of shape (dim,), got shape {tuple(shape)}; "
                "use search_batch for several"
            )
        return self.search_batch(
            [vector], k, filter=filter, ids=ids, params=params, include_vectors=include_vectors
        )[0]

    def mmr(
        self,
        vector: object,
        k: int = 4,
        *,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        ids: Sequence[str] | None = None,
        params: Any = None,
        include_vectors: bool = False,
    ) -> list[Hit]:
        """Maximal marginal relevance: ``k`` hits chosen from the ``fetch_k`` best.

        Each step picks the candidate maximising
        ``lambda_mult * sim(query, d) - (1 - lambda_mult) * max sim(d, chosen)`` with cosine
        similarity over the stored vectors (as LangChain and LlamaIndex do).
        ``lambda_mult=1`` is plain relevance order, ``0`` maximal diversity. Each
        :attr:`Hit.score` is the document's search score for the query.
        """
        k = check_k(k)
        fetch_k = max(check_k(fetch_k), k)
        lam = float(lambda_mult)
        if not 0.0 <= lam <= 1.0:
            raise InvalidArgumentError(f"lambda_mult is {lambda_mult!r}; expected 0 <= it <= 1")
        hits = self.search(vector, fetch_k, filter=filter, ids=ids, params=params,
                           include_vectors=True)
        if not hits:
            return []
        cand = normalize_rows(np.stack([h.record.vector for h in hits]))  # type: ignore[misc]
        qv = normalize_rows(as_float_matrix(vector, cand.shape[1], name="query"))[0]
        chosen = mmr_select(qv, cand, k, lam)
        out = []
        for i in chosen:
            h = hits[i]
            rec = h.record if include_vectors else Record(
                h.record.id, h.record.text, h.record.metadata, None, h.record.uid
            )
            out.append(Hit(rec, h.score))
        return out


# --------------------------------------------------------------------------- shared by both
class RWLock:
    """Many readers or one writer; a waiting writer holds back new readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        """Hold the lock shared with other readers."""
        with self._cond:
            while self._writer or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Hold the lock alone."""
        with self._cond:
            self._waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def check_delete_args(ids: object, filter: Mapping[str, Any] | None) -> None:
    """Check the arguments of :meth:`BaseCollection.delete`.

    Parameters
    ----------
    ids : sequence of str or None
        The ids to delete.
    filter : dict or None
        The filter of the documents to delete.

    Raises
    ------
    InvalidArgumentError
        Both or neither were given, or the filter is empty (it would delete everything).
    """
    if (ids is None) == (filter is None):
        raise InvalidArgumentError("delete takes exactly one of ids= or filter=")
    if filter is not None and not filter:
        raise InvalidArgumentError(
            "delete(filter={}) would delete every document; call clear() for that"
        )


def check_page(offset: object, limit: object) -> tuple[int, int | None]:
    """Check the ``offset`` and ``limit`` of :meth:`BaseCollection.find`.

    Parameters
    ----------
    offset : int
        Documents to skip (at least 0).
    limit : int or None
        Most documents to return (at least 0; None: all).

    Returns
    -------
    tuple of (int, int or None)
        ``(offset, limit)`` as Python integers.

    Raises
    ------
    InvalidArgumentError
        Either is not an integer or is negative.
    """
    off = check_int(offset, "offset", low=0)
    return off, None if limit is None else check_int(limit, "limit", low=0)


def kept_rows(
    ids: Sequence[str], existing: Mapping[str, Any], on_duplicate: DuplicatePolicy
) -> list[int]:
    """Positions of the batch rows an upsert writes under ``on_duplicate``.

    Parameters
    ----------
    ids : sequence of str
        The batch's ids.
    existing : mapping
        The ids of the batch that are already stored (as keys).
    on_duplicate : {"overwrite", "skip", "fail"}
        The policy.

    Returns
    -------
    list of int
        Every position (``"overwrite"``), or those of ids not stored (``"skip"``).

    Raises
    ------
    DuplicateIdError
        ``"fail"`` and an id is already stored (nothing may be written).
    """
    if existing and on_duplicate == "fail":
        raise DuplicateIdError(
            f"ids {sorted(existing)[:10]} are already stored; nothing was written "
            "(use on_duplicate='overwrite' or 'skip')"
        )
    return [i for i, sid in enumerate(ids) if on_duplicate != "skip" or sid not in existing]


def _check_utf8(value: str, what: str, sid: str) -> None:
    """Raise when ``value`` has no UTF-8 form (a lone surrogate): it could not be stored."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidArgumentError(
            f"{what} of document {sid!r} is not valid Unicode ({e.reason} at position "
            f"{e.start}); nothing was written"
        ) from None


def match_settings(
    stored: dict[str, Any],
    requested: dict[str, Any],
    index: str | None,
    metric: str | None,
    dim: int | None,
    index_params: Mapping[str, Any] | None,
) -> bool:
    """Check the settings given when reopening a collection against the stored ones.

    Only what the caller gave is compared (``index`` also counts as given through
    ``index_params``). A ``dim`` given for a collection whose dim is not fixed yet is adopted
    into ``stored``.

    Returns
    -------
    bool
        True when ``dim`` was adopted that way.

    Raises
    ------
    InvalidArgumentError
        A given setting differs from the stored one.
    """
    given = {
        "index": index is not None or bool(index_params),
        "metric": metric is not None,
        "dim": dim is not None and stored["dim"] is not None,
    }
    for key, was_given in given.items():
        if was_given and requested[key] != stored[key]:
            raise InvalidArgumentError(
                f"this collection was created with {key}={stored[key]!r}, but "
                f"{key}={requested[key]!r} was given; omit it to reopen"
            )
    if stored["dim"] is None and requested["dim"] is not None:
        stored["dim"] = requested["dim"]
        return True
    return False


def storable_ids(sids: Sequence[str]) -> list[str]:
    """The distinct ids of ``sids`` that could be stored, in order.

    An id with a lone surrogate has no UTF-8 form, so it is never stored; a lookup
    (``get``, ``delete(ids=)``, ``search(ids=)``) skips it and finds nothing for it.

    Parameters
    ----------
    sids : sequence of str
        Ids, already checked to be strings.

    Returns
    -------
    list of str
        The encodable ids, first occurrence of each.
    """
    out = []
    for sid in dict.fromkeys(sids):
        try:
            sid.encode("utf-8")
        except UnicodeEncodeError:
            continue
        out.append(sid)
    return out
