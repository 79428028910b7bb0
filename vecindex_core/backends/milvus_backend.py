"""The ``milvus`` kind: vectors stored in a Milvus collection, behind the index contract.

``vecindex_core.create('milvus(uri="http://127.0.0.1:19530",index_type=HNSW)', dim=384)``
keeps its vectors in a Milvus collection and searches there; ``uri`` left empty (the
default) uses a private embedded milvus-lite database (for tests and single-machine use).
pymilvus is imported when the index first talks to Milvus (missing:
:class:`~vecindex_core.errors.NotSupportedError` naming ``pip install "vecindex[milvus]"``);
connection, index-type, metric and error rules live in :mod:`vecindex_core.milvus.client`.

Layout. The collection has two fields: ``key`` (INT64 primary key) and ``vector``
(``FLOAT_VECTOR(dim)``), with one vector index (``index_type``, ``M``/``ef_construction``
or ``nlist``) and consistency level ``Strong`` (every search sees every acknowledged write).
Each row gets a fresh key when it is sent (``0, 1, 2, ...``, never reused); the index keeps
two small arrays in memory, slot -> key and key -> slot (8 bytes each per row), so that a
swap-remove is one ``delete`` of the removed keys (atomic, no vector is moved) and search
results map back to slots with one array lookup. The uint64 ids of an ``IdMapIndex`` stay
in the ``IdMapIndex``; the Milvus Collection keeps ids as keys instead
(:func:`vecindex_core.milvus.client.ids_to_pks`).

Writes are batched. ``add`` keeps new rows in a local buffer and sends them (in one
all-or-nothing batch: a failed batch deletes what it inserted) once ``PUSH_ROWS`` rows are
waiting, and before any search, remove or save that needs them. milvus-lite builds a
segment's index only after ``flush()``: on lite, the first search after new rows were sent
flushes and waits for lite's index build (:func:`vecindex_core.milvus.client.flush`), so
searches are served by the index and repeatable. A server needs no flush (growing segments
are searched too), and Milvus seals and indexes them on its own schedule.

Metrics and scores: ``cosine``/``ip``/``l2`` are Milvus ``COSINE``/``IP``/``L2``; cosine
vectors are normalised on the way in (as every kind does); Milvus's squared L2 distance
becomes the negated score.

Masks. A mask becomes a boolean expression evaluated inside Milvus's search: when at most
``IN_LIST_MAX`` rows are *excluded* (and fewer than are allowed) ``key not in [...]``;
otherwise ``key in [...]`` over the allowed keys, in chunks of ``IN_LIST_MAX`` keys, one
search per chunk, whose per-chunk top-k are merged (the top k of the union is inside the
union of the chunks' top k). Measured on milvus-lite 3.2.2 and Milvus 2.3.5 (20,000 x 384,
HNSW): a list of 1,000 keys costs 0.08 s / 0.23 s a search, 10,000 keys 0.4 s / 0.3 s;
OR-ed key ranges are no better on lite and Milvus 2.3.5 rejects a few hundred of them
("unsupported expr proto node"), so they are not used. Filtered HNSW and IVF searches come
back short when the allowed rows are few (measured: 2 of 10 with 10 allowed rows of 3,000
on lite's HNSW; 1 of 10 on IVF_FLAT): a query with fewer than ``min(k, allowed)`` results
is searched again with ``ef``/``nprobe`` widened ``GROW`` times a round until the search is
exhaustive (``nprobe = nlist``, ``ef = EF_MAX``), and a query still short after that (or on
FLAT/AUTOINDEX, which have no knob) is answered exactly from the allowed rows' vectors
fetched from Milvus. So a result is never silently short.

Persistence (our file format, no pickle). A private collection (``collection_name`` empty)
is saved by value: the vectors in slot order, fetched from Milvus; loading, ``copy`` and
``pickle`` create a new private collection holding them (sent lazily, like ``add``), so
copies are independent. A named collection (``collection_name="docs"``) is shared state,
like a database table: it is saved by reference (its name, the slot -> key array and the
key counter; ``uri`` and the TLS settings are in the spec), and loading attaches to the
collection, checking that it still holds exactly that many rows. Copies of a named-collection
index are views of the same collection; keep one writer. Credentials (``token``, ``user``,
``password``) are constructor arguments that are never stored in the spec or the file;
when not given they are read from ``VECINDEX_MILVUS_TOKEN``, ``VECINDEX_MILVUS_USER`` and
``VECINDEX_MILVUS_PASSWORD``.

Private databases. All private-uri indexes of a process share one temporary milvus-lite
database (each in its own collection; opening a lite database costs 0.2-0.4 s and starts an
in-process gRPC server): private collections are dropped by :meth:`MilvusIndex.close` or
when the index is garbage collected, and the temporary directory is removed when the last
of them is closed. Named collections are never dropped by vecindex.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import re
import shutil
import tempfile
import threading
import uuid
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from .._kernels.topk import dense_topk, sq_norms
from ..base import Moves, VectorIndex
from ..errors import (
    BackendError,
    IndexFormatError,
    InvalidArgumentError,
    InvalidParameterError,
    NotSupportedError,
)
from ..milvus import client as mc
from ..registry import Param, register
from ..types import FloatMatrix, Metric, SlotArray

__all__ = ["EF_MAX", "GROW", "IN_LIST_MAX", "PUSH_ROWS", "TOPK_MAX", "MilvusIndex"]

#: Pending added rows that trigger sending them to Milvus.
PUSH_ROWS = 8192
#: Rows per insert / get request.
_IO_ROWS = 4096
#: Queries per search request.
_QUERY_ROWS = 1024
#: Most keys in one ``key in [...]`` / ``key not in [...]`` expression.
IN_LIST_MAX = 16384
#: Milvus's largest ``limit`` (topk) per search; a larger ``k`` is answered by an exact
#: scan over the vectors read back from Milvus.
TOPK_MAX = 16384
#: Largest ``ef`` Milvus accepts; widening stops there.
EF_MAX = 32768
#: Automatic knob values (a knob of 0): ``ef`` (at least k), ``nprobe`` (at most nlist).
AUTO_EF = 64
AUTO_NPROBE = 16
#: Each retry of a short result widens ``ef`` / ``nprobe`` this many times.
GROW = 4
_KEY, _VECTOR = "key", "vector"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_CREDENTIALS = ("token", "user", "password")
_ENV = {c: f"VECINDEX_MILVUS_{c.upper()}" for c in _CREDENTIALS}

Result = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]


# --------------------------------------------------------------------------- private db
class _PrivateLite:
    """The process's shared temporary milvus-lite database for private-uri indexes."""

    lock = threading.Lock()
    users = 0
    directory: str | None = None

    @classmethod
    def acquire(cls) -> str:
        with cls.lock:
            if cls.directory is None:
                cls.directory = tempfile.mkdtemp(prefix="vecindex-milvus-")
                atexit.register(shutil.rmtree, cls.directory, True)
            cls.users += 1
            return os.path.join(cls.directory, "private.db")

    @classmethod
    def release(cls) -> None:
        with cls.lock:
            cls.users -= 1
            if cls.users > 0 or cls.directory is None:
                return
            directory, cls.directory = cls.directory, None
        shutil.rmtree(directory, ignore_errors=True)


class _Handle:
    """A connection and the collection it owns; closed by the index or its finaliser."""

    def __init__(self, client: Any, name: str, *, lite: str | None, private_db: bool,
                 drop: bool) -> None:
        self.client = client
        self.name = name
        self.lite = lite  # the resolved milvus-lite path, None for a server
        self.private_db = private_db
        self.drop = drop
        self.created = False

    def close(self) -> None:
        try:
            # at interpreter exit lite's own atexit hook may have stopped its server first
            alive = self.lite is None or mc.lite_is_open(self.lite)
            if self.drop and self.created and alive:
                with contextlib.suppress(Exception):
                    self.client.drop_collection(self.name)
        finally:
            mc.disconnect(self.client)
            if self.private_db:
                _PrivateLite.release()


def _close_handle(handle: _Handle) -> None:
    handle.close()


# --------------------------------------------------------------------------- the kind
_CONN_PARAMS = [
    Param("db_name", str, "", "Milvus database (server only; empty: the default)"),
    Param("secure", bool, False, "TLS to the server (https:// uris imply it)"),
    Param("server_pem_path", str, "", "TLS: the server's certificate"),
    Param("server_name", str, "", "TLS: the name the server's certificate carries"),
    Param("ca_pem_path", str, "", "mutual TLS: the CA certificate"),
    Param("client_pem_path", str, "", "mutual TLS: the client certificate"),
    Param("client_key_path", str, "", "mutual TLS: the client key"),
    Param("timeout", float, mc.DEFAULT_TIMEOUT, "seconds to wait for the server to answer",
          low=0.001, high=3600.0),
]


@register(
    "milvus",
    params=[
        Param("uri", str, "", "milvus-lite path ending in .db, or a server uri "
              "(http://host:19530); empty: a private temporary milvus-lite database"),
        Param("collection_name", str, "", "a named collection (created on first write, "
              "shared, never dropped); empty: a private collection with a fresh name"),
        Param("index_type", str, "AUTOINDEX", "Milvus vector index: "
              + " | ".join(mc.INDEX_TYPES) + " (DISKANN and GPU_* are refused)"),
        Param("M", int, 16, "HNSW graph degree", low=2, high=2048),
        Param("ef_construction", int, 200, "HNSW build breadth", low=1, high=2**31 - 1),
        Param("nlist", int, 128, "IVF_FLAT / IVF_SQ8 lists", low=1, high=65536),
        *_CONN_PARAMS,
    ],
    search_params=[
        Param("ef", int, 0, "HNSW / AUTOINDEX search breadth (raised to k, and to "
              "k / selectivity for masks); 0: 64", low=0, high=EF_MAX),
        Param("nprobe", int, 0, "IVF lists searched; 0: 16 (at most nlist)", low=0,
              high=65536),
    ],
)
class MilvusIndex(VectorIndex):
    """A positional index whose vectors live in a Milvus collection.

    See the module docstring for the layout, write batching, masks and persistence.

    Parameters
    ----------
    dim : int
    metric : {"cosine", "ip", "l2"}
    uri : str, default ""
        milvus-lite path (``.db``) or server uri; empty: private temporary milvus-lite.
    collection_name : str, default ""
        Named (shared, saved by reference) or empty (private, saved by value).
    index_type : {"AUTOINDEX", "FLAT", "HNSW", "IVF_FLAT", "IVF_SQ8"}, default "AUTOINDEX"
        Case-insensitive; DISKANN and GPU_* raise ``NotSupportedError`` (Milvus 2.3 hangs
        building them) before anything is sent.
    M, ef_construction : int
        HNSW build parameters (non-default values need ``index_type="HNSW"``).
    nlist : int
        IVF build parameter (non-default values need an IVF ``index_type``).
    db_name, secure, server_pem_path, server_name, ca_pem_path, client_pem_path,
    client_key_path, timeout
        Connection settings passed to pymilvus (ignored by milvus-lite).
    ef, nprobe : int
        Search-time defaults (0: automatic); each needs the index type it applies to.
    token, user, password : str, optional
        Credentials; never stored (see the module docstring for the environment fallback).

    Raises
    ------
    InvalidParameterError
        A bad collection name or uri, or a build / search parameter that does not apply to
        ``index_type``.
    NotSupportedError
        DISKANN, GPU_* or another Milvus type vecindex does not expose, or a type
        milvus-lite would not really build here (no faiss).
    """

    def __init__(self, dim: int, metric: Metric = "cosine", **params: Any) -> None:
        creds: dict[str, str] = {}
        for key in _CREDENTIALS:
            value = params.pop(key, None)
            if value is None:
                value = os.environ.get(_ENV[key]) or None
            if value is not None:
                if not isinstance(value, str):
                    raise InvalidParameterError(
                        f"index 'milvus': {key} must be a string, got {type(value).__name__}"
                    )
                creds[key] = value
        super().__init__(dim, metric, **params)
        self._creds = creds
        p = self.params
        uri = str(p["uri"])
        try:
            self._lite = True if not uri else mc.is_lite(uri)
            if uri and self._lite:
                mc.lite_path(uri)
        except InvalidArgumentError as e:
            raise InvalidParameterError(f"index 'milvus': uri={uri!r}: {e}") from e
        name = str(p["collection_name"])
        if name and not _NAME.fullmatch(name):
            raise InvalidParameterError(
                f"index 'milvus': collection_name={name!r} must be a letter or '_' followed by "
                "letters, digits or '_' (at most 255)"
            )
        try:
            self._index_type, _ = mc.check_index(str(p["index_type"]), lite=self._lite)
        except InvalidParameterError as e:
            raise InvalidParameterError(f"index 'milvus': {e}") from e
        except NotSupportedError as e:
            raise NotSupportedError(f"index 'milvus': {e}") from e
        self._check_build_params()
        _, self._build = mc.check_index(self._index_type, self._milvus_build_params(),
                                        lite=self._lite)
        self._check_knobs(self.search_defaults)
        self._lock = threading.RLock()
        self._handle: _Handle | None = None
        self._finalizer: Any = None
        self._closed = False
        self._n = 0
        self._pushed = 0  # slots [0, _pushed) are in Milvus, the rest in _pending
        self._slot_keys = np.empty(0, dtype=np.int64)
        self._key_slots = np.empty(0, dtype=np.int64)  # key -> slot, -1: gone
        self._next_key = 0
        self._pending = np.empty((0, self.dim), dtype=np.float32)
        self._dirty = False  # rows sent to lite since its last flush
        self._stats = {"pushes": 0, "flushes": 0, "retries": 0, "exact_fallbacks": 0,
                       "filtered_searches": 0}

    # ----------------------------------------------------------------- validation
    def _check_build_params(self) -> None:
        p = self.params
        it = self._index_type
        uses = {"M": "HNSW", "ef_construction": "HNSW", "nlist": "IVF"}
        for key, family in uses.items():
            default = self.kind_param_default(key)
            if p[key] != default and not it.startswith(family):
                raise InvalidParameterError(
                    f"index 'milvus': {key}={p[key]} applies to index_type {family}"
                    f"{'' if family == 'HNSW' else '_FLAT or IVF_SQ8'}, not {it}"
                )

    @classmethod
    def kind_param_default(cls, name: str) -> Any:
        """The declared default of construction parameter ``name``."""
        return next(p.default for p in cls.kind.all_params if p.name == name)

    def _milvus_build_params(self) -> dict[str, int]:
        p = self.params
        it = self._index_type
        if it == "HNSW":
            return {"M": int(p["M"]), "efConstruction": int(p["ef_construction"])}
        if it.startswith("IVF"):
            return {"nlist": int(p["nlist"])}
        return {}

    def _check_knobs(self, params: Mapping[str, Any]) -> None:
        try:
            mc.search_params(self._index_type, params)
        except InvalidParameterError as e:
            raise InvalidParameterError(f"index 'milvus': {e}") from e

    # ----------------------------------------------------------------- properties
    @property
    def ntotal(self) -> int:
        return self._n

    @property
    def collection_name(self) -> str | None:
        """The Milvus collection's name (None until the index first writes to Milvus)."""
        return self._handle.name if self._handle is not None else (
            str(self.params["collection_name"]) or None)

    @property
    def index_type(self) -> str:
        """The Milvus index type."""
        return self._index_type

    def memory_bytes(self) -> int:
        """Bytes held in this process: the key maps and rows not yet sent to Milvus."""
        return int(self._slot_keys.nbytes + self._key_slots.nbytes
                   + self._pending[: self._n - self._pushed].nbytes)

    def stats(self) -> dict[str, Any]:
        """Counters of this process's use of the index (not saved).

        ``pushes`` (batches sent), ``flushes`` (lite flushes waited for), ``retries``
        (queries searched again with wider knobs), ``exact_fallbacks`` (queries answered
        exactly from fetched vectors), ``filtered_searches``; plus ``pending`` rows and
        the ``collection`` name.
        """
        return {**self._stats, "pending": self._n - self._pushed,
                "collection": self.collection_name}

    # ----------------------------------------------------------------- connection
    def _require_open(self) -> None:
        if self._closed:
            raise InvalidArgumentError(f"{self.spec}: the index is closed")

    def _connect_kwargs(self) -> dict[str, Any]:
        p = self.params
        kw: dict[str, Any] = {"timeout": float(p["timeout"]), **self._creds}
        if p["db_name"]:
            kw["db_name"] = p["db_name"]
        if p["secure"]:
            kw["secure"] = True
        for key in ("server_pem_path", "server_name", "ca_pem_path", "client_pem_path",
                    "client_key_path"):
            if p[key]:
                kw[key] = p[key]
        return kw

    def _open(self) -> _Handle:
        """The connection, opened on first use (the collection is created by _ensure)."""
        self._require_open()
        if self._handle is not None:
            return self._handle
        uri = str(self.params["uri"])
        private_db = not uri
        if private_db:
            uri = _PrivateLite.acquire()
        try:
            client = mc.connect(uri, **self._connect_kwargs())
        except BaseException:
            if private_db:
                _PrivateLite.release()
            raise
        name = str(self.params["collection_name"])
        handle = _Handle(client, name or f"vecindex_{uuid.uuid4().hex}",
                         lite=mc.lite_path(uri) if self._lite else None,
                         private_db=private_db, drop=not name)
        self._handle = handle
        self._finalizer = weakref.finalize(self, _close_handle, handle)
        return handle

    def _ensure_collection(self) -> _Handle:
        """The handle, with the collection created and loaded."""
        h = self._open()
        if h.created:
            return h
        c, name = h.client, h.name
        with mc.translate_errors(f"create collection {name!r}"):
            if c.has_collection(name):
                raise InvalidArgumentError(
                    f"{self.spec}: collection {name!r} already exists; the milvus index "
                    "creates its collection itself. Drop it, choose another collection_name, "
                    "or load the index from the file it was saved to"
                )
            pymilvus = mc.import_pymilvus()
            schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field(_KEY, pymilvus.DataType.INT64, is_primary=True)
            schema.add_field(_VECTOR, pymilvus.DataType.FLOAT_VECTOR, dim=self.dim)
            index_params = mc.index_params(c, _VECTOR, self._index_type, self.metric,
                                           self._build)
        mc.create_collection(c, name, schema, index_params)
        h.created = True
        return h

    def close(self) -> None:
        """Drop a private collection, close the connection, remove a private database.

        Idempotent; a closed index raises on use. A named collection is kept.
        """
        with self._lock:
            self._closed = True
            if self._finalizer is not None:
                self._finalizer()
            self._handle = None

    def __enter__(self) -> MilvusIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- writes
    def _add(self, x: FloatMatrix) -> None:
        self._require_open()
        with self._lock:
            n0 = self._n
            waiting = n0 - self._pushed
            need = waiting + x.shape[0]
            if need > self._pending.shape[0]:
                grown = np.empty((max(need, 2 * self._pending.shape[0], 64), self.dim),
                                 dtype=np.float32)
                grown[:waiting] = self._pending[:waiting]
                self._pending = grown
            self._pending[waiting:need] = x
            self._n = n0 + x.shape[0]
            if need >= PUSH_ROWS:
                try:
                    self._push()
                except BaseException:
                    self._n = n0  # the pending rows of earlier adds stay pending
                    raise

    def _push(self) -> None:
        """Send every pending row to Milvus, all or nothing."""
        count = self._n - self._pushed
        if count == 0:
            return
        h = self._ensure_collection()
        rows = self._pending[:count]
        keys = np.arange(self._next_key, self._next_key + count, dtype=np.int64)
        self._next_key += count  # never reused, even when the batch fails
        sent = 0
        try:
            with mc.translate_errors(f"insert {count} rows into collection {h.name!r}"):
                for a in range(0, count, _IO_ROWS):
                    b = min(a + _IO_ROWS, count)
                    h.client.insert(h.name, [
                        {_KEY: int(k), _VECTOR: v}
                        for k, v in zip(keys[a:b].tolist(), rows[a:b], strict=True)
                    ])
                    sent = b
        except BaseException:
            if sent:
                with contextlib.suppress(Exception):
                    h.client.delete(h.name, ids=keys[:sent].tolist())
            raise
        self._stats["pushes"] += 1
        start = self._pushed
        self._set_keys(start, keys)
        self._pushed = self._n
        self._dirty = True

    def _set_keys(self, start: int, keys: npt.NDArray[np.int64]) -> None:
        end = start + keys.size
        if end > self._slot_keys.shape[0]:
            grown = np.empty(max(end, 2 * self._slot_keys.shape[0], 64), dtype=np.int64)
            grown[:start] = self._slot_keys[:start]
            self._slot_keys = grown
        self._slot_keys[start:end] = keys
        top = int(keys.max()) + 1 if keys.size else 0
        if top > self._key_slots.shape[0]:
            grown = np.full(max(top, 2 * self._key_slots.shape[0], 64), -1, dtype=np.int64)
            grown[: self._key_slots.shape[0]] = self._key_slots
            self._key_slots = grown
        self._key_slots[keys] = np.arange(start, end, dtype=np.int64)

    def _sync(self) -> _Handle:
        """Everything sent, and (lite) flushed and indexed: ready to search."""
        self._push()
        h = self._ensure_collection()
        if self._dirty and h.lite:
            mc.flush(h.client, h.name, lite=True)
            self._stats["flushes"] += 1
        self._dirty = False
        return h

    def _remove(self, slots: SlotArray, moves: Moves) -> None:
        self._require_open()
        with self._lock:
            if self._pushed < self._n and slots.min() >= self._pushed:
                self._remove_pending(slots, moves)
                return
            self._push()
            h = self._ensure_collection()
            keys = self._slot_keys[slots]
            with mc.translate_errors(f"delete {keys.size} rows from collection {h.name!r}"):
                for a in range(0, keys.size, IN_LIST_MAX):
                    h.client.delete(h.name, ids=keys[a:a + IN_LIST_MAX].tolist())
            self._key_slots[keys] = -1
            self._slot_keys[moves.dst] = self._slot_keys[moves.src]
            self._key_slots[self._slot_keys[moves.dst]] = moves.dst
            self._n -= slots.size
            self._pushed = self._n

    def _remove_pending(self, slots: SlotArray, moves: Moves) -> None:
        """A swap-remove that only touches rows not yet sent: done locally."""
        base = self._pushed
        self._pending[moves.dst - base] = self._pending[moves.src - base]
        self._n -= slots.size

    # ----------------------------------------------------------------- search
    def _knobs(
        self, params: Mapping[str, Any], k: int, level: int, selectivity: float
    ) -> tuple[dict[str, Any], bool]:
        """Milvus search params at widening ``level``, and whether they are exhaustive.

        A filtered graph search visits about ``ef`` rows and keeps the allowed ones, so
        ``ef`` starts at ``k / selectivity`` (at most ``EF_MAX``) when that is larger.
        """
        it = self._index_type
        if it in ("HNSW", "AUTOINDEX"):
            ef = max(int(params["ef"]) or AUTO_EF, k, math.ceil(k / selectivity))
            ef = min(EF_MAX, ef * GROW**level)
            return mc.search_params(it, {"ef": ef}, k=k), ef >= EF_MAX
        if it.startswith("IVF"):
            nlist = int(self.params["nlist"])
            nprobe = min(nlist, (int(params["nprobe"]) or min(AUTO_NPROBE, nlist)) * GROW**level)
            return mc.search_params(it, {"nprobe": nprobe}), nprobe >= nlist
        return mc.search_params(it, {}), True

    def _search(
        self, q: FloatMatrix, k: int, params: Mapping[str, Any], mask: npt.NDArray[np.bool_] | None
    ) -> Result:
        self._require_open()
        self._check_knobs(params)
        with self._lock:
            h = self._sync()
            key_slots = self._key_slots
            slot_keys = self._slot_keys[: self._n].copy()
        n = slot_keys.size
        if mask is None:
            groups: list[tuple[str, npt.NDArray[np.int64] | None]] = [("", None)]
        else:
            self._stats["filtered_searches"] += 1
            allowed = np.flatnonzero(mask)
            excluded = n - allowed.size
            if excluded <= IN_LIST_MAX and excluded < allowed.size:
                out = slot_keys[~mask]
                groups = [(f"{_KEY} not in [{_join(out)}]", allowed)]
            else:
                groups = []
                for a in range(0, allowed.size, IN_LIST_MAX):
                    part = allowed[a:a + IN_LIST_MAX]
                    groups.append((f"{_KEY} in [{_join(slot_keys[part])}]", part))
        parts = [self._search_group(h, q, k, params, expr, rows, key_slots, slot_keys)
                 for expr, rows in groups]
        if len(parts) == 1:
            return parts[0]
        return _merge(parts, k)

    def _search_group(
        self, h: _Handle, q: FloatMatrix, k: int, params: Mapping[str, Any], expr: str,
        rows: npt.NDArray[np.int64] | None, key_slots: npt.NDArray[np.int64],
        slot_keys: npt.NDArray[np.int64],
    ) -> Result:
        """Top-k among ``rows`` (None: all) for every query, never short."""
        n_rows = slot_keys.size if rows is None else rows.size
        want = min(k, n_rows)
        kk = want
        nq = q.shape[0]
        scores = np.full((nq, kk), -np.inf, dtype=np.float32)
        slots = np.full((nq, kk), -1, dtype=np.int64)
        counts = np.zeros(nq, dtype=np.int64)
        todo = np.arange(nq)
        level = 0
        selectivity = n_rows / max(1, slot_keys.size)
        # Milvus returns at most TOPK_MAX hits a query: a larger k takes the exact route
        while kk <= TOPK_MAX:
            sp, exhaustive = self._knobs(params, kk, level, selectivity)
            s, sl, c = self._milvus_search(h, q[todo], kk, sp, expr, key_slots)
            scores[todo], slots[todo], counts[todo] = s, sl, c
            todo = todo[c < want]
            if not todo.size or exhaustive:
                break
            level += 1
            self._stats["retries"] += int(todo.size)
        if todo.size:
            self._stats["exact_fallbacks"] += int(todo.size)
            allowed = np.arange(slot_keys.size) if rows is None else rows
            s, sl, c = self._exact(h, np.ascontiguousarray(q[todo]), kk, allowed, slot_keys)
            scores[todo], slots[todo], counts[todo] = s, sl, c
        return scores, slots, counts

    def _milvus_search(
        self, h: _Handle, q: FloatMatrix, k: int, sp: dict[str, Any], expr: str,
        key_slots: npt.NDArray[np.int64],
    ) -> Result:
        nq = q.shape[0]
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        slots = np.full((nq, k), -1, dtype=np.int64)
        counts = np.zeros(nq, dtype=np.int64)
        sp = {"metric_type": mc.METRIC_TYPES[self.metric], **sp}
        with mc.translate_errors(f"search collection {h.name!r}"):
            for a in range(0, nq, _QUERY_ROWS):
                b = min(a + _QUERY_ROWS, nq)
                res = h.client.search(h.name, data=q[a:b], limit=k, filter=expr,
                                      search_params=sp, output_fields=[],
                                      anns_field=_VECTOR)
                for i, hits in enumerate(res, a):
                    keys = np.asarray(hits.ids, dtype=np.int64)[:k]
                    ok = (keys >= 0) & (keys < key_slots.size)
                    got = np.where(ok, key_slots[np.where(ok, keys, 0)], -1)
                    good = got >= 0
                    m = int(good.sum())
                    slots[i, :m] = got[good]
                    dist = np.asarray(hits.distances, dtype=np.float32)[:k]
                    scores[i, :m] = mc.scores_from_distances(dist[good], self.metric)
                    counts[i] = m
        return scores, slots, counts

    def _exact(
        self, h: _Handle, q: FloatMatrix, k: int, allowed: SlotArray,
        slot_keys: npt.NDArray[np.int64],
    ) -> Result:
        """Exact top-k over the ``allowed`` slots' vectors fetched from Milvus."""
        vectors = self._fetch(h, slot_keys[allowed])
        l2 = self.metric == "l2"
        s, sl, c = dense_topk(q, vectors, k, l2=l2, data_sq_norms=sq_norms(vectors) if l2
                              else None, slot_map=np.ascontiguousarray(allowed))
        return s, sl, c

    def _fetch(self, h: _Handle, keys: npt.NDArray[np.int64]) -> FloatMatrix:
        """Vectors of ``keys``, in that order."""
        out = np.empty((keys.size, self.dim), dtype=np.float32)
        with mc.translate_errors(f"read vectors from collection {h.name!r}"):
            for a in range(0, keys.size, _IO_ROWS):
                chunk = keys[a:a + _IO_ROWS]
                rows = h.client.get(h.name, ids=chunk.tolist(), output_fields=[_VECTOR])
                got = {int(r[_KEY]): r[_VECTOR] for r in rows}
                if len(got) != chunk.size:
                    missing = [int(x) for x in chunk if int(x) not in got][:5]
                    raise BackendError(
                        f"collection {h.name!r} lacks rows with keys {missing} that this "
                        "index holds (was it changed by someone else?)"
                    )
                out[a:a + chunk.size] = np.asarray([got[int(x)] for x in chunk],
                                                   dtype=np.float32)
        return out

    # ----------------------------------------------------------------- persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        self._require_open()
        with self._lock:
            if self.params["collection_name"]:
                h = self._sync() if self._n else None
                state = {"by": "reference", "next_key": self._next_key,
                         "collection": h.name if h else str(self.params["collection_name"])}
                return state, {"keys": self._slot_keys[: self._n].copy()}
            pushed = self._fetch(self._open(), self._slot_keys[: self._pushed]) \
                if self._pushed else np.empty((0, self.dim), dtype=np.float32)
            waiting = self._pending[: self._n - self._pushed]
            vectors = np.concatenate([pushed, waiting]) if waiting.size else pushed
            return {"by": "value"}, {"vectors": np.ascontiguousarray(vectors)}

    def _set_state(self, state: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        by = state.get("by")
        named = bool(self.params["collection_name"])
        if by != ("reference" if named else "value"):
            raise IndexFormatError(
                f"milvus index state is saved by {by!r}, which does not fit collection_name="
                f"{self.params['collection_name']!r}"
            )
        if by == "value":
            data = arrays.get("vectors")
            if (data is None or data.dtype != np.float32 or data.ndim != 2
                    or data.shape[1] != self.dim):
                got = None if data is None else (data.dtype, data.shape)
                raise IndexFormatError(
                    f"milvus index needs float32 (n, {self.dim}) vectors, got {got}")
            self._pending = np.array(data, dtype=np.float32, order="C")
            self._n = data.shape[0]
            self._pushed = 0
            return
        keys = arrays.get("keys")
        next_key = state.get("next_key")
        if (keys is None or keys.dtype != np.int64 or keys.ndim != 1
                or not isinstance(next_key, int)
                or (keys.size and (keys.min() < 0 or keys.max() >= next_key))
                or np.unique(keys).size != keys.size):
            raise IndexFormatError("milvus index: the stored keys are not valid")
        self._attach(keys, int(next_key))

    def _attach(self, keys: npt.NDArray[np.int64], next_key: int) -> None:
        """Adopt an existing named collection holding exactly ``keys``."""
        h = self._open()
        with mc.translate_errors(f"open collection {h.name!r}"):
            if not h.client.has_collection(h.name):
                if keys.size:
                    raise IndexFormatError(
                        f"milvus index refers to collection {h.name!r}, which does not exist"
                    )
                return
            h.client.load_collection(h.name)
            res = h.client.query(h.name, filter="", output_fields=["count(*)"])
            count = int(res[0]["count(*)"])
        if count != keys.size:
            raise IndexFormatError(
                f"milvus collection {h.name!r} holds {count} rows, the saved index {keys.size}"
            )
        h.created = True
        self._next_key = next_key
        self._set_keys(0, keys)
        self._n = self._pushed = int(keys.size)


def _join(keys: npt.NDArray[np.int64]) -> str:
    return ",".join(map(str, keys.tolist()))


def _merge(parts: list[Result], k: int) -> Result:
    """Top-k of several (scores, slots, counts) results over disjoint slot sets."""
    scores = np.concatenate([p[0] for p in parts], axis=1)
    slots = np.concatenate([p[1] for p in parts], axis=1)
    order = np.lexsort((slots, -scores), axis=1)[:, :k]
    s = np.take_along_axis(scores, order, 1)
    sl = np.take_along_axis(slots, order, 1)
    counts = np.minimum(sum(p[2] for p in parts), k).astype(np.int64)
    sl = np.where(np.isneginf(s), -1, sl)
    return np.ascontiguousarray(s), np.ascontiguousarray(sl), counts

