"""Documents, metadata, filters and durability over an :class:`IdMapIndex`: :class:`Collection`.

A :class:`Collection` is the one document layer the LangChain, LlamaIndex and Haystack
adapters share. It holds documents ``(string id, text, metadata, vector)``, maps string ids
to the uint64 ids of the index (here and only here), evaluates filters, and keeps everything
durable.

Storage model
-------------
- **SQLite is the source of truth.** Every document lives in one table (WAL journal,
  ``synchronous=FULL``): string id, uint64 id, text, metadata JSON and the float32 vector.
  A write batch is one transaction, committed before the call returns, so a ``kill -9`` at
  any moment loses no acknowledged write and never leaves half a batch.
- **The index is derived.** Each committed batch appends the uint64 ids it touched to a
  change log in the same transaction. The index is snapshotted to ``<path>.index`` (the
  library's checksummed index format) by :meth:`Collection.flush`, :meth:`Collection.close`
  and automatically once enough changes pile up; the snapshot records the last change it
  contains. Opening a path loads the snapshot and replays later changes (re-reading those
  documents' vectors from SQLite); a missing or corrupt snapshot is rebuilt from SQLite.
  Replay is idempotent, so a crash between writing the snapshot and recording it is safe.
- **Filters** are evaluated once per query over in-memory columns
  (:class:`~vecindex_core.filters.FilterColumns`), built from SQLite on open; the result is
  an allow list pushed into the index scan. A small allowed set is searched exactly.
- **Concurrency.** Any number of threads may read (search, get, find, count) at once; a
  writer waits for them and excludes them, so a reader never sees a half-applied batch.
  One process writes a path at a time; another process that opens it sees the state at its
  open.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .documents import (
    BaseCollection,
    DuplicatePolicy,
    Hit,
    Record,
    RWLock,
    check_batch,
    check_delete_args,
    check_metadata,
    check_page,
    dumps_metadata,
    exact_scores,
    kept_rows,
    match_settings,
    mmr_select,
    plain_json,
    storable_ids,
    str_ids,
    vector_matrix,
)
from .errors import IndexFormatError, InvalidArgumentError
from .filters import FilterColumns, validate_filter
from .idmap import IdMapIndex, _IdTable
from .registry import format_spec, resolve_spec
from .types import MISSING, FloatMatrix, IdArray, Metric
from .validation import as_float_matrix, check_int, check_k, check_metric

__all__ = [
    "BaseCollection",
    "Collection",
    "DuplicatePolicy",
    "Hit",
    "Record",
    "exact_scores",
    "mmr_select",
]

# The helpers moved to :mod:`vecindex_core.documents`; the old private names stay.
_plain_json = plain_json
_metadata = check_metadata
_dumps = dumps_metadata
_str_ids = str_ids

_SCHEMA_VERSION = 1
_MAX_UID = 2**63 - 1
_CHUNK = 5000  # SQL parameters per IN (...) list; SQLite >= 3.32 allows 32766
#: Pending index changes that trigger an automatic snapshot: max(this, ntotal // 2).
_SNAPSHOT_MIN_CHANGES = 50_000
#: When an index does not keep its vectors, an allowed set this small is searched exactly
#: over vectors read back from SQLite (reading one costs about as much as scanning ~30 codes).
_SQL_EXACT_ROWS = 512


def _snapshot_sig(path: Path) -> str:
    """Identity of an index file: its 32-byte prefix (lengths and CRCs), "" when missing."""
    try:
        with open(path, "rb") as f:
            return f.read(32).hex()
    except FileNotFoundError:
        return ""


def _vec_blob(row: FloatMatrix) -> bytes:
    return np.ascontiguousarray(row, dtype="<f4").tobytes()


def _blob_vec(blob: bytes) -> npt.NDArray[np.float32]:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def _blob_matrix(blobs: Sequence[bytes], dim: int) -> FloatMatrix:
    """Equal-length vector blobs as one float32 (n, dim) matrix (one copy)."""
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dim).astype(np.float32)


# --------------------------------------------------------------------------- locking
_RWLock = RWLock  # the lock moved to vecindex_core.documents


# --------------------------------------------------------------------------- collection
class Collection(BaseCollection):
    """Documents with vectors, metadata and filters over any registered index.

    Parameters
    ----------
    path : str or path-like, optional
        SQLite file holding the documents (created if missing); the index snapshot is
        written beside it as ``<path>.index``. Without a path everything lives in memory and
        behaves the same, minus persistence.
    index : str, optional
        Registered index name or spec (``"flat"``, ``"turboquant(bits=4)"``,
        ``"ivf_pq(nlist=256,m=48)"``...). Default ``"flat"`` for a new collection; when
        reopening, omit it (or give the stored one).
    metric : {"cosine", "ip", "l2"}, optional
        Default ``"cosine"`` for a new collection.
    dim : int, optional
        Vector dimensions; fixed by the first vector written when not given.
    index_params : dict, optional
        Parameters of the index kind, merged with those of the spec.

    Raises
    ------
    UnknownIndexError, InvalidParameterError
        The index spec or a parameter is invalid (checked before anything is created).
    InvalidArgumentError
        Reopening with an index, metric or dim different from the stored ones, or a file
        that is not a vecindex collection.

    Notes
    -----
    Indexes that need training train themselves once enough vectors are stored; searches
    are exact until then. Scores follow the library rule (higher is better; ``l2`` scores
    are negated squared distances).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        index: str | None = None,
        metric: Metric | None = None,
        dim: int | None = None,
        index_params: Mapping[str, Any] | None = None,
    ) -> None:
        self._lock = _RWLock()
        self._db_lock = threading.RLock()
        self._path = None if path is None else os.fspath(path)
        requested = self._settings_from_args(index, metric, dim, index_params)
        self._db = self._connect()
        self._closed = False
        try:
            stored = self._read_settings()
            if stored is None:
                self._settings = self._init_settings(requested)
            else:
                match_settings(stored, requested, index, metric, dim, index_params)
                self._settings = stored
            self._columns = FilterColumns()
            self._row_uid = np.empty(0, dtype=np.uint64)
            self._rows = _IdTable()
            self._index: IdMapIndex | None = None
            self._pending = 0
            self._load_columns()
            self._load_index()
        except BaseException:
            self._db.close()
            raise

    # ----------------------------------------------------------------- settings
    @staticmethod
    def _settings_from_args(
        index: str | None,
        metric: Metric | None,
        dim: int | None,
        index_params: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        kind, merged = resolve_spec(index or "flat", index_params)
        return {
            "index": format_spec(kind.name, kind.validate_params(merged)),
            "metric": check_metric(metric or "cosine"),
            "dim": None if dim is None else check_int(dim, "dim", low=1),
        }

    def _connect(self) -> sqlite3.Connection:
        target = ":memory:" if self._path is None else self._path
        if self._path is not None:
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
            if self._path is not None:
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS docs (
                    uid INTEGER PRIMARY KEY,
                    id TEXT NOT NULL UNIQUE,
                    text TEXT,
                    meta TEXT NOT NULL,
                    vec BLOB
                );
                CREATE TABLE IF NOT EXISTS log (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    uid INTEGER NOT NULL
                );
                """
            )
        except sqlite3.DatabaseError as e:
            raise InvalidArgumentError(
                f"{target!r} is not a vecindex collection (SQLite says: {e})"
            ) from e
        return db

    def _read_settings(self) -> dict[str, Any] | None:
        rows = dict(self._db.execute("SELECT key, value FROM settings").fetchall())
        if not rows:
            return None
        try:
            version = int(rows["schema"])
            stored = {
                "index": rows["index"],
                "metric": rows["metric"],
                "dim": None if rows["dim"] == "" else int(rows["dim"]),
                "next_uid": int(rows["next_uid"]),
                "snapshot_seq": int(rows["snapshot_seq"]),
                "snapshot_sig": rows.get("snapshot_sig", ""),
            }
        except (KeyError, ValueError) as e:
            raise InvalidArgumentError(
                f"collection {self._path!r} has corrupt settings ({e!r})"
            ) from e
        if version > _SCHEMA_VERSION:
            raise InvalidArgumentError(
                f"collection {self._path!r} has schema version {version}, newer than this "
                f"library's {_SCHEMA_VERSION}; upgrade vecindex"
            )
        return stored

    def _write_settings(self, **values: Any) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)",
            [(k, "" if v is None else str(v)) for k, v in values.items()],
        )

    def _init_settings(self, requested: dict[str, Any]) -> dict[str, Any]:
        settings = {**requested, "next_uid": 0, "snapshot_seq": 0, "snapshot_sig": ""}
        with self._transaction():
            self._write_settings(schema=_SCHEMA_VERSION, **settings)
        return settings

    # ----------------------------------------------------------------- properties
    @property
    def path(self) -> str | None:
        """The SQLite file, or None for an in-memory collection."""
        return self._path

    @property
    def dim(self) -> int | None:
        """Vector dimensions, or None until the first vector is written."""
        d = self._settings["dim"]
        return None if d is None else int(d)

    @property
    def metric(self) -> Metric:
        """The metric chosen at creation."""
        m: Metric = self._settings["metric"]
        return m

    @property
    def index_spec(self) -> str:
        """The index spec chosen at creation (canonical form)."""
        return str(self._settings["index"])

    @property
    def index(self) -> IdMapIndex | None:
        """The derived index (None until a vector exists). Read it, never write to it."""
        return self._index

    def __len__(self) -> int:
        return len(self._columns)

    def __repr__(self) -> str:
        return (
            f"Collection(path={self._path!r}, index={self.index_spec!r}, "
            f"metric={self.metric!r}, dim={self.dim}, count={len(self)})"
        )

    # ----------------------------------------------------------------- SQLite helpers
    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._db_lock:
            return self._db.execute(sql, params).fetchall()

    def _query_in(self, sql: str, values: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run ``sql`` (with one ``{}`` for an IN list) over ``values`` in chunks."""
        out: list[tuple[Any, ...]] = []
        for i in range(0, len(values), _CHUNK):
            part = list(values[i : i + _CHUNK])
            out.extend(self._query(sql.format(",".join("?" * len(part))), part))
        return out

    def _uids_of(self, ids: Sequence[str]) -> dict[str, int]:
        return dict(self._query_in("SELECT id, uid FROM docs WHERE id IN ({})", ids))

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgumentError(f"collection {self._path!r} is closed")

    # ----------------------------------------------------------------- open
    def _load_columns(self) -> None:
        rows = self._query("SELECT uid, id, text, meta FROM docs ORDER BY uid")
        if not rows:
            return
        uids = np.array([r[0] for r in rows], dtype=np.uint64)
        self._columns.append(
            [r[1] for r in rows], [r[2] for r in rows], [json.loads(r[3]) for r in rows]
        )
        self._append_rows(uids)

    def _new_index(self) -> IdMapIndex:
        from .api import create

        dim = self.dim
        assert dim is not None
        return self._wire(create(self.index_spec, dim=dim, metric=self.metric))

    def _wire(self, index: IdMapIndex) -> IdMapIndex:
        """Give an index that reranks with a ``vector_fetch_fn`` (``redis_lsh`` without
        ``keep_vectors``) the vectors stored here, so its exact scores need no extra copy."""
        inner = index.index
        if getattr(inner, "vector_fetch_fn", False) is None and not getattr(
            inner, "keeps_vectors", True
        ):
            dim = index.dim

            def fetch(slots: npt.NDArray[np.int64]) -> FloatMatrix:
                uids = index.ids[np.asarray(slots, dtype=np.int64)]
                rows = dict(self._query_in(
                    "SELECT uid, vec FROM docs WHERE vec IS NOT NULL AND uid IN ({})",
                    [int(u) for u in np.unique(uids)],
                ))
                return _blob_matrix([rows[int(u)] for u in uids], dim)

            setattr(inner, "vector_fetch_fn", fetch)  # noqa: B010 (not on VectorIndex)
        return index

    def _load_index(self) -> None:
        if self.dim is None:
            return
        snap = self._snapshot_path()
        index: IdMapIndex | None = None
        sig = self._settings["snapshot_sig"]
        if snap is not None and sig and _snapshot_sig(snap) == sig:  # this file's own snapshot
            try:
                index = IdMapIndex.load(snap)
            except IndexFormatError:
                index = None  # rebuilt from SQLite below: SQLite is the source of truth
            if index is not None and (
                index.dim != self.dim
                or index.metric != self.metric
                or index.spec != self._new_index().spec
            ):
                index = None
        if index is None:
            self._index = self._new_index()
            self._reindex(None)
        else:
            self._index = self._wire(index)
            touched = [
                r[0]
                for r in self._query(
                    "SELECT DISTINCT uid FROM log WHERE seq > ?", (self._settings["snapshot_seq"],)
                )
            ]
            self._reindex(touched)
        self._pending = int(self._query("SELECT COUNT(*) FROM log")[0][0])

    def _reindex(self, uids: Sequence[int] | None) -> None:
        """Bring the index up to date for ``uids`` (None: rebuild from every document)."""
        index = self._index
        assert index is not None
        if uids is not None:
            if not uids:
                return
            index.remove(np.array(uids, dtype=np.uint64))
            rows = self._query_in(
                "SELECT uid, vec FROM docs WHERE vec IS NOT NULL AND uid IN ({}) ORDER BY uid",
                sorted(uids),
            )
            self._add_to_index(rows)
            return
        last = -1
        while True:  # bounded memory: one chunk of vectors at a time
            rows = self._query(
                "SELECT uid, vec FROM docs WHERE vec IS NOT NULL AND uid > ? ORDER BY uid "
                "LIMIT ?",
                (last, _CHUNK * 4),
            )
            if not rows:
                return
            self._add_to_index(rows)
            last = rows[-1][0]

    def _add_to_index(self, rows: Sequence[tuple[int, bytes]]) -> None:
        if not rows:
            return
        assert self._index is not None
        x = _blob_matrix([r[1] for r in rows], self._index.dim)
        self._index.add(x, np.array([r[0] for r in rows], dtype=np.uint64))

    def _snapshot_path(self) -> Path | None:
        return None if self._path is None else Path(self._path + ".index")

    # ----------------------------------------------------------------- row bookkeeping
    def _append_rows(self, uids: IdArray) -> None:
        n0 = len(self._rows_view())
        n1 = n0 + uids.size
        if n1 > self._row_uid.shape[0]:
            grown = np.empty(max(n1, 2 * self._row_uid.shape[0], 64), dtype=np.uint64)
            grown[:n0] = self._row_uid[:n0]
            self._row_uid = grown
        self._row_uid[n0:n1] = uids
        self._rows.insert(uids, np.arange(n0, n1, dtype=np.int64))

    def _rows_view(self) -> IdArray:
        return self._row_uid[: self._rows.size]

    def _rows_of(self, uids: IdArray) -> npt.NDArray[np.int64]:
        return self._rows.get(uids)

    def _remove_rows(self, uids: IdArray) -> None:
        rows = np.sort(self._rows.get(uids))
        src, dst = self._columns.remove(rows)
        moved = self._row_uid[src]
        self._row_uid[dst] = moved
        self._rows.delete(uids)
        self._rows.set(moved, np.asarray(dst, dtype=np.int64))

    # ----------------------------------------------------------------- writes
    def upsert(
        self,
        ids: Sequence[str] | None = None,
        texts: Sequence[str | None] | None = None,
        vectors: object = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        on_duplicate: DuplicatePolicy = "overwrite",
    ) -> list[str]:
        """Write documents; an id that is already stored is replaced (by default).

        Parameters
        ----------
        ids : sequence of str, optional
            Non-empty string ids; uuid4 hex strings are generated when omitted.
        texts : sequence of (str or None), optional
        vectors : array_like (n, dim), or a sequence of (array_like (dim,) or None), optional
            A document without a vector is stored, filterable and countable, but never
            returned by :meth:`search`.
        metadatas : sequence of (dict or None), optional
            JSON types only: str keys; str, int, finite float, bool, None, lists and dicts.
        on_duplicate : {"overwrite", "skip", "fail"}
            What to do with an id that is already stored.

        Returns
        -------
        list of str
            The ids written, in input order (``"skip"`` leaves out the ones already stored).

        Raises
        ------
        DuplicateIdError
            An id repeats inside the batch, or is already stored under ``"fail"``.
        DimensionMismatchError, NonFiniteError, InvalidDtypeError
            A vector has the wrong length, NaN/inf, or is not numeric.
        InvalidArgumentError
            Lengths differ, an id is not a non-empty str, or metadata is not JSON.

        Nothing is written when anything is invalid.
        """
        batch = check_batch(ids, texts, vectors, metadatas, on_duplicate)
        n = len(batch)
        if n == 0:
            return []
        sids, text_list, metas, meta_json, has_vec = (
            batch.ids, batch.texts, batch.metadatas, batch.metadata_json, batch.has_vec
        )
        with self._lock.write():
            self._check_open()
            matrix, dim = vector_matrix(batch, self.dim)
            existing = self._uids_of(sids)
            keep = kept_rows(sids, existing, on_duplicate)
            if not keep:
                return []
            next_uid = int(self._settings["next_uid"])
            uids = np.empty(len(keep), dtype=np.uint64)
            fresh = 0
            for j, i in enumerate(keep):
                if sids[i] in existing:
                    uids[j] = existing[sids[i]]
                else:
                    uids[j] = next_uid + fresh
                    fresh += 1
            if next_uid + fresh >= _MAX_UID:  # SQLite integers are signed 64-bit
                raise InvalidArgumentError("the collection has run out of document ids")
            vec_of = np.cumsum(has_vec) - 1  # row of document i in `matrix`
            docs = [
                (
                    int(uids[j]),
                    sids[i],
                    text_list[i],
                    meta_json[i],
                    _vec_blob(matrix[vec_of[i]]) if has_vec[i] else None,
                )
                for j, i in enumerate(keep)
            ]
            with self._transaction() as db:
                db.executemany(
                    "INSERT OR REPLACE INTO docs (uid, id, text, meta, vec) VALUES (?,?,?,?,?)",
                    docs,
                )
                db.executemany("INSERT INTO log (uid) VALUES (?)", [(d[0],) for d in docs])
                self._write_settings(next_uid=next_uid + fresh, dim=dim)
            self._settings["next_uid"] = next_uid + fresh
            self._settings["dim"] = dim
            self._apply_upsert(uids, keep, sids, text_list, metas, matrix, has_vec, vec_of)
            self._after_write(len(keep))
            return [sids[i] for i in keep]

    def _apply_upsert(
        self,
        uids: IdArray,
        keep: list[int],
        sids: list[str],
        texts: list[str | None],
        metas: list[dict[str, Any]],
        matrix: FloatMatrix,
        has_vec: list[bool],
        vec_of: npt.NDArray[np.int64],
    ) -> None:
        """Mirror a committed upsert in the index and the filter columns."""
        with self._deriving():
            rows = self._rows_of(uids)
            old = rows >= 0
            meta_of = [metas[i] for i in keep]
            if old.any():
                idx = np.flatnonzero(old)
                self._columns.replace(
                    rows[idx], [sids[keep[j]] for j in idx], [texts[keep[j]] for j in idx],
                    [meta_of[j] for j in idx],
                )
            new = np.flatnonzero(~old)
            if new.size:
                self._columns.append(
                    [sids[keep[j]] for j in new], [texts[keep[j]] for j in new],
                    [meta_of[j] for j in new],
                )
                self._append_rows(uids[new])
            if self._index is None and matrix.shape[0]:
                self._index = self._new_index()
            if self._index is not None:
                if old.any():
                    self._index.remove(uids[old])
                with_vec = [j for j, i in enumerate(keep) if has_vec[i]]
                if with_vec:
                    self._index.add(
                        matrix[vec_of[[keep[j] for j in with_vec]]], uids[with_vec]
                    )

    @contextmanager
    def _deriving(self) -> Iterator[None]:
        """Apply a committed change to the index and the filter columns.

        The change is already durable, so a failure here (none is expected: the batch was
        validated) rebuilds the derived state from SQLite with a warning instead of failing
        a call whose write has happened.
        """
        try:
            yield
        except Exception as e:
            warnings.warn(
                f"rebuilding the index of collection {self._path!r} from SQLite after {e!r}",
                RuntimeWarning,
                stacklevel=4,
            )
            self._recover()

    def _recover(self) -> None:
        """Rebuild every derived structure from SQLite."""
        self._columns = FilterColumns()
        self._row_uid = np.empty(0, dtype=np.uint64)
        self._rows = _IdTable()
        self._index = None
        self._load_columns()
        if self.dim is not None:
            self._index = self._new_index()
            self._reindex(None)

    def _after_write(self, changes: int) -> None:
        self._pending += changes
        ntotal = 0 if self._index is None else self._index.ntotal
        if self._path is not None and self._pending >= max(_SNAPSHOT_MIN_CHANGES, ntotal // 2):
            self._snapshot()

    def delete(
        self, ids: Sequence[str] | None = None, *, filter: Mapping[str, Any] | None = None
    ) -> int:
        """Delete documents by id or by filter; unknown ids are ignored.

        Returns
        -------
        int
            How many documents were deleted.

        Raises
        ------
        InvalidArgumentError
            Both or neither of ``ids`` and ``filter`` were given, or the filter is empty.
        FilterError
            The filter is invalid (nothing is deleted).
        """
        check_delete_args(ids, filter)
        sids = None if ids is None else storable_ids(_str_ids(ids))
        with self._lock.write():
            self._check_open()
            if sids is not None:
                uids = np.array(sorted(set(self._uids_of(sids).values())), dtype=np.uint64)
            else:
                uids = np.sort(self._rows_view()[self._columns.evaluate(filter or {})])
            return self._delete_uids(uids)

    def _delete_uids(self, uids: IdArray) -> int:
        if not uids.size:
            return 0
        values = [int(u) for u in uids]
        with self._transaction() as db:
            for i in range(0, len(values), _CHUNK):
                part = values[i : i + _CHUNK]
                db.execute(f"DELETE FROM docs WHERE uid IN ({','.join('?' * len(part))})", part)
            db.executemany("INSERT INTO log (uid) VALUES (?)", [(u,) for u in values])
        with self._deriving():
            self._remove_rows(uids)
            if self._index is not None:
                self._index.remove(uids)
        self._after_write(len(values))
        return len(values)

    def clear(self, *, reset_index: bool = False) -> int:
        """Delete every document; returns how many.

        Parameters
        ----------
        reset_index : bool
            Also drop the index (a trained one retrains on the next documents) and forget the
            dimension, so the next vector written fixes it again. The index kind, its
            parameters and the metric stay.
        """
        with self._lock.write():
            self._check_open()
            n = self._delete_uids(np.sort(self._rows_view()))
            if reset_index:
                self._index = None
                self._settings["dim"] = None
                with self._transaction():
                    self._write_settings(dim=None)
                if self._path is not None:
                    self._snapshot()  # no index: removes the snapshot file, empties the log
            return n

    def update_metadata(
        self, filter: Mapping[str, Any] | None, metadata: Mapping[str, Any]
    ) -> int:
        """Merge ``metadata`` into the metadata of every document matching ``filter``.

        ``filter=None`` updates every document. Returns how many documents matched.
        """
        patch, _ = _metadata(metadata, "(update)")
        with self._lock.write():
            self._check_open()
            mask = (
                np.ones(len(self._columns), dtype=np.bool_)
                if filter is None
                else self._columns.evaluate(filter)
            )
            uids = np.sort(self._rows_view()[mask])
            if not uids.size:
                return 0
            rows = self._query_in(
                "SELECT uid, id, text, meta FROM docs WHERE uid IN ({}) ORDER BY uid",
                [int(u) for u in uids],
            )
            metas = [{**json.loads(r[3]), **patch} for r in rows]
            with self._transaction() as db:
                db.executemany(
                    "UPDATE docs SET meta = ? WHERE uid = ?",
                    [(_dumps(m), r[0]) for m, r in zip(metas, rows, strict=True)],
                )
            with self._deriving():
                got = np.array([r[0] for r in rows], dtype=np.uint64)
                self._columns.replace(
                    self._rows_of(got), [r[1] for r in rows], [r[2] for r in rows], metas
                )
            return len(rows)

    # ----------------------------------------------------------------- reads
    def count(self, filter: Mapping[str, Any] | None = None) -> int:
        """Number of documents matching ``filter`` (all documents when None)."""
        with self._lock.read():
            self._check_open()
            if filter is None:
                return len(self._columns)
            return int(np.count_nonzero(self._columns.evaluate(filter)))

    def get(self, ids: Sequence[str], *, include_vectors: bool = False) -> list[Record]:
        """Documents with these ids, in the given order; unknown ids are skipped."""
        sids = storable_ids(_str_ids(ids))
        with self._lock.read():
            self._check_open()
            uid_of = self._uids_of(sids)
            records = self._fetch([uid_of[s] for s in sids if s in uid_of], include_vectors)
        return records

    def find(
        self,
        filter: Mapping[str, Any] | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
        include_vectors: bool = False,
    ) -> list[Record]:
        """Documents matching ``filter`` in write order (first write of each id)."""
        offset, limit = check_page(offset, limit)
        with self._lock.read():
            self._check_open()
            if filter is None:
                uids = np.sort(self._rows_view())
            else:
                uids = np.sort(self._rows_view()[self._columns.evaluate(filter)])
            end = None if limit is None else offset + limit
            return self._fetch([int(u) for u in uids[offset:end]], include_vectors)

    def _fetch(self, uids: Sequence[int], include_vectors: bool) -> list[Record]:
        """Records of ``uids`` in that order (every uid must exist)."""
        if not uids:
            return []
        cols = "uid, id, text, meta" + (", vec" if include_vectors else "")
        by_uid = {
            r[0]: r for r in self._query_in(f"SELECT {cols} FROM docs WHERE uid IN ({{}})", uids)
        }
        out = []
        for u in uids:
            r = by_uid[u]
            vec = _blob_vec(r[4]) if include_vectors and r[4] is not None else None
            out.append(Record(r[1], r[2], json.loads(r[3]), vec, int(r[0])))
        return out

    # ----------------------------------------------------------------- search
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
        k = check_k(k)
        if filter is not None:
            validate_filter(filter)
        sids = None if ids is None else storable_ids(_str_ids(ids))
        with self._lock.read():
            self._check_open()
            q = as_float_matrix(vectors, self.dim, name="query")
            index = self._index
            if index is None or not index.ntotal:
                return [[] for _ in range(q.shape[0])]
            allow = self._allowed(filter, sids)
            if allow is not None and allow.size <= _SQL_EXACT_ROWS and not (
                index.index.keeps_vectors or not index.is_trained
            ):
                res_scores, res_ids = self._exact(q, k, allow)
            else:
                res = index.search(q, k, allow=allow, params=params)
                res_scores, res_ids = res.scores, res.ids.astype(np.uint64, copy=False)
            found = res_ids != np.uint64(MISSING)
            wanted = [int(u) for u in np.unique(res_ids[found])]
            records = {r.uid: r for r in self._fetch(wanted, include_vectors)}
        return [
            [Hit(records[int(u)], float(s)) for u, s, f in zip(ids_row, sc_row, ok, strict=True)
             if f]
            for ids_row, sc_row, ok in zip(res_ids, res_scores, found, strict=True)
        ]

    def _allowed(
        self, filter: Mapping[str, Any] | None, sids: list[str] | None
    ) -> IdArray | None:
        """uint64 ids allowed by ``filter`` and ``sids`` (None: everything)."""
        if filter is None and sids is None:
            return None
        allow = None
        if filter is not None:
            allow = self._rows_view()[self._columns.evaluate(filter)]
        if sids is not None:
            by_id = np.array(sorted(self._uids_of(sids).values()), dtype=np.uint64)
            allow = by_id if allow is None else np.intersect1d(allow, by_id)
        return allow

    def _exact(
        self, q: FloatMatrix, k: int, allow: IdArray
    ) -> tuple[npt.NDArray[np.float32], IdArray]:
        """Exact top-k over the SQLite vectors of the ``allow`` documents."""
        rows = self._query_in(
            "SELECT uid, vec FROM docs WHERE vec IS NOT NULL AND uid IN ({})",
            [int(u) for u in allow],
        )
        nq = q.shape[0]
        if not rows:
            return (np.full((nq, k), -np.inf, dtype=np.float32),
                    np.full((nq, k), MISSING, dtype=np.uint64))
        x = _blob_matrix([r[1] for r in rows], q.shape[1])
        uids = np.array([r[0] for r in rows], dtype=np.uint64)
        scores = exact_scores(q, x, self.metric)
        order = np.lexsort((np.broadcast_to(uids, scores.shape), -scores), axis=1)[:, :k]
        top = np.take_along_axis(scores, order, axis=1)
        out_scores = np.full((nq, k), -np.inf, dtype=np.float32)
        out_ids = np.full((nq, k), MISSING, dtype=np.uint64)
        out_scores[:, : top.shape[1]] = top
        out_ids[:, : top.shape[1]] = uids[order]
        return out_scores, out_ids

    # ----------------------------------------------------------------- persistence
    def flush(self) -> None:
        """Write the index snapshot now, so the next open replays nothing.

        Durability never depends on this: every acknowledged write is already in SQLite.
        """
        with self._lock.write():
            self._check_open()
            if self._path is not None:
                self._snapshot()

    def _snapshot(self) -> None:
        snap = self._snapshot_path()
        assert snap is not None
        self._settings.update(_write_snapshot(self._db, self._db_lock, self._index, snap))
        self._pending = 0

    def copy_to(self, path: str | os.PathLike[str]) -> None:
        """Write a consistent copy of the collection (documents and index) to ``path``.

        The copy is taken under the read lock (writes wait; searches go on) with SQLite's
        online backup, plus an index snapshot beside it, so opening it replays nothing.
        An existing collection at ``path`` is replaced. Copying to its own path flushes.
        """
        dest = os.fspath(path)
        if self._path is not None and os.path.abspath(dest) == os.path.abspath(self._path):
            self.flush()
            return
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        with self._lock.read():
            self._check_open()
            target = sqlite3.connect(dest, isolation_level=None)
            try:
                with self._db_lock:
                    self._db.backup(target)
                target.execute("PRAGMA journal_mode=WAL")
                _write_snapshot(target, threading.RLock(), self._index, Path(dest + ".index"))
            finally:
                target.close()

    def close(self) -> None:
        """Snapshot the index (when there are changes) and close the database."""
        with self._lock.write():
            if self._closed:
                return
            if self._path is not None and self._pending:
                self._snapshot()
            self._db.close()
            self._closed = True


def _write_snapshot(
    db: sqlite3.Connection, lock: threading.RLock, index: IdMapIndex | None, snap: Path
) -> dict[str, Any]:
    """Save ``index`` to ``snap`` and record it in ``db``; returns the settings written.

    The file is written first (atomically), then its signature and the last change it
    contains are committed and the log up to there dropped. A crash in between leaves a
    file whose signature the settings do not know: the next open rebuilds from SQLite.
    """
    with lock:
        seq = int(db.execute("SELECT MAX(seq) FROM log").fetchone()[0] or 0)
        if index is not None:
            index.save(snap)
        else:
            snap.unlink(missing_ok=True)
        values = {"snapshot_seq": seq, "snapshot_sig": _snapshot_sig(snap)}
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)",
                [(k, str(v)) for k, v in values.items()],
            )
            db.execute("DELETE FROM log WHERE seq <= ?", (seq,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return values
