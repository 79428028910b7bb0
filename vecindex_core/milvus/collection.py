"""The document collection API with everything stored in Milvus: :class:`MilvusCollection`.

:class:`MilvusCollection` has the API of :class:`~vecindex_core.collection.Collection` (both
implement :class:`~vecindex_core.documents.BaseCollection`, so the LangChain, LlamaIndex and
Haystack adapters take either), but documents, metadata and vectors live in one Milvus
collection and filters run inside Milvus:

- ``uri`` picks the deployment: a local path ending in ``.db`` is an embedded milvus-lite
  database (one process at a time), ``http(s)://host:port`` a Milvus server or cluster
  (credentials and TLS pass through, see :func:`~vecindex_core.milvus.client.connect`).
- Each document is one row: ``id`` (VARCHAR primary key: the string id), ``uid`` (INT64),
  ``seq`` (INT64, first-write order), ``has_vec`` (BOOL), the fields of
  :data:`~vecindex_core.milvus.expr.ROW_FIELDS` (text, metadata JSON and the derived fields
  that make filters exact) and ``vec`` (FLOAT_VECTOR). A document without a vector holds a
  placeholder vector and ``has_vec == false``; every search filters on ``has_vec``.
- Filters are translated by :func:`~vecindex_core.milvus.expr.to_expr` and evaluated by
  Milvus, with exactly the answers of the in-memory evaluator (including its data-dependent
  :class:`~vecindex_core.errors.FilterError` for orderings over mixed types).

Choices
-------
- **Settings** (metric, index, dim) are kept as a JSON property of the Milvus collection
  (``vecindex.settings``). Reopening checks them as :class:`Collection` does: giving a
  different metric, index or dim raises :class:`~vecindex_core.errors.InvalidArgumentError`.
  A Milvus collection without the property is not ours and is refused.
- **Dimension.** Given ``dim``, the Milvus collection is created with it. Without it, the
  collection starts with a provisional one-dimensional vector field and the first vector
  written fixes the dimension: the (vectorless) rows are copied into a new collection
  ``<name>__vecindex_tmp`` with the real dimension, the old one is dropped and the new one
  renamed (a crash between the drop and the rename is finished by the next open).
  ``clear(reset_index=True)`` returns to that provisional state. Several clients: before a
  write fixes the dimension, the stored settings are read again under the write lock, and a
  dimension another client fixed is adopted (a different one raises
  :class:`~vecindex_core.errors.DimensionMismatchError`); rows with vectors are never
  copied over. Opening never drops a ``__vecindex_tmp`` copy while the original exists
  (another client may be filling it); a dim change drops one only when it is older than
  :data:`TMP_STALE_S` (crashed), and otherwise raises
  :class:`~vecindex_core.errors.ServiceUnavailableError` (retry).
- **uid** is a deterministic 63-bit BLAKE2b hash of the string id, so every client computes
  the same one without a shared counter. A write whose id hashes to the uid of another
  stored id raises :class:`~vecindex_core.errors.InvalidArgumentError` (about one chance in
  ``2**63 / n`` per new document).
- **Write order.** ``seq`` is a microsecond clock (strictly increasing within a process);
  an overwritten document keeps its ``seq``, so :meth:`find` returns documents in the order
  they were first written, across processes as well as their clocks agree.
- **Consistency.** Every request uses ``consistency_level`` (default ``"Strong"``), so a
  caller reads its own writes; later pages of a call are not downgraded.
- **No multi-row transactions in Milvus.** A batch is validated whole before anything is
  sent, and invalid input writes nothing. A batch is sent as one upsert request unless it is
  larger than :data:`REQUEST_BYTES` (then in chunks); if the server fails mid-call, a prefix
  of the chunks may be stored. Upserts are idempotent (same id, same row; an existing
  document keeps its ``uid`` and ``seq``), so retrying the same call converges to the state
  the first call would have produced. ``on_duplicate="fail"`` is the exception: a retry then
  reports the documents the failed call already stored.
- **Limits handled.** Reads larger than Milvus's 16,384-row query window are paged by
  primary key (``page_size`` rows and about :data:`READ_BYTES` a request, halved when the
  server refuses a reply as too large); ``id in [...]`` lists are chunked
  (:data:`IN_CHUNK` ids and :data:`IN_BYTES` a request); ``search_batch`` sends at most
  16,384 queries a request; ``k`` above 16,384 is served by an exact scan.
- **Exactness.** When Milvus returns fewer than ``k`` hits although more documents match
  (milvus-lite's HNSW drops candidates under selective filters; IVF probes too few lists),
  the short queries are answered by an exact scan over the matching documents' vectors, so
  a search never comes back short (``FLAT`` included: the server leaves zero-norm vectors
  out under cosine). Search inside Milvus is otherwise exact for ``FLAT`` and approximate
  for the other index types.
- **milvus-lite** searches rows not yet flushed brute force and builds its index on
  :meth:`flush`; results are correct either way (see above).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..collection import Collection
from ..documents import (
    BaseCollection,
    DuplicatePolicy,
    Hit,
    Record,
    RWLock,
    check_batch,
    check_delete_args,
    check_metadata,
    check_page,
    exact_scores,
    kept_rows,
    match_settings,
    storable_ids,
    str_ids,
    vector_matrix,
)
from ..errors import (
    BackendError,
    DimensionMismatchError,
    InvalidArgumentError,
    InvalidParameterError,
    ServiceUnavailableError,
)
from ..types import FloatMatrix, Metric
from ..validation import as_float_matrix, check_int, check_k, check_metric
from .client import (
    check_index,
    connect,
    disconnect,
    flush,
    index_params,
    is_lite,
    search_params,
    translate_errors,
)
from .expr import (
    ROW_FIELDS,
    error_checks,
    id_in_expr,
    row_fields,
    row_meta,
    string_literal,
    supports_infix_like,
    to_expr,
)

__all__ = ["IN_BYTES", "IN_CHUNK", "MAX_WINDOW", "READ_BYTES", "REQUEST_BYTES", "TMP_STALE_S",
           "MilvusCollection"]

#: Milvus's query window (``offset + limit``) and largest search ``limit``.
MAX_WINDOW = 16384
#: Ids per ``id in [...]`` expression.
IN_CHUNK = 1000
#: Estimated bytes per upsert request (the server's gRPC limit is 64 MiB and more).
REQUEST_BYTES = 16 << 20
#: Target bytes per read reply (the server refuses replies over 64 MiB).
READ_BYTES = 32 << 20
#: Bytes of ids per ``id in [...]`` expression.
IN_BYTES = 1 << 20
#: The property holding our settings in the Milvus collection.
SETTINGS_KEY = "vecindex.settings"
#: Suffix of the collection a dimension change is copied into.
TMP_SUFFIX = "__vecindex_tmp"
#: Age in seconds after which a left-over ``__vecindex_tmp`` copy counts as crashed.
TMP_STALE_S = 600.0
_SCHEMA_VERSION = 1
_MAX_VARCHAR = 65535
_CONSISTENCY = ("Strong", "Bounded", "Session", "Eventually")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_SPEC = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*", re.DOTALL)
_ROW_OUT = ("id", "uid", "seq", *(n for n, _ in ROW_FIELDS if not n.startswith("f_")))
_VEC_OUT = ("has_vec", "vec")
_KEY_OUT = ("id", "seq")
_HAS_VEC = "has_vec == true"
_ALL = 'id != ""'
# the message of a reply (or request) over the gRPC size limit
_TOO_BIG = re.compile(
    r"larger than max|RESOURCE_EXHAUSTED|ResourceExhausted|message size|too large|exceeds? "
    r"the max", re.IGNORECASE)


def _too_big(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it chains) is the server's message-size refusal."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if _TOO_BIG.search(str(e)):
            return True
        e = e.__cause__ or e.__context__
    return False


def _row_size(row: Mapping[str, Any]) -> int:
    """Estimated bytes of one returned row."""
    size = 64
    for v in row.values():
        if isinstance(v, str):
            size += 8 + len(v) * 3 if len(v) > 1024 else 8 + len(v.encode("utf-8", "surrogatepass"))
        elif isinstance(v, (list, np.ndarray)):
            size += 8 + 4 * len(v)
        elif isinstance(v, Mapping):
            size += 8 + len(json.dumps(v, ensure_ascii=False, default=str)) * 2
        else:
            size += 16
    return size


def _id_chunks(sids: Sequence[str], per: int = IN_CHUNK) -> Iterator[Sequence[str]]:
    """``sids`` in slices of at most ``per`` ids and about :data:`IN_BYTES` bytes."""
    start, size = 0, 0
    for i, sid in enumerate(sids):
        size += 8 + len(sid) * 4
        if i > start and (i - start >= per or size > IN_BYTES):
            yield sids[start:i]
            start, size = i, 8 + len(sid) * 4
    if start < len(sids):
        yield sids[start:]


@lru_cache(maxsize=1 << 16)  # search hits recompute it for ids that come back often
def _uid(doc_id: str) -> int:
    """The 63-bit uid of a string id (BLAKE2b; the same in every process)."""
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def _and(*exprs: str) -> str:
    parts = [e for e in exprs if e]
    if len(parts) == 1:
        return parts[0]
    return " and ".join(f"({p})" for p in parts)


def _parse_index(index: str, params: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """``"HNSW"`` / ``"HNSW(M=32,efConstruction=100)"`` plus ``params`` -> (type, params)."""
    if not isinstance(index, str):
        raise InvalidParameterError(f"index must be a Milvus index type string, got {index!r}")
    m = _SPEC.fullmatch(index)
    if not m:
        raise InvalidParameterError(
            f"cannot parse index {index!r}; expected 'TYPE' or 'TYPE(key=value,...)'"
        )
    values: dict[str, Any] = {}
    body = m.group(2)
    if body and body.strip():
        for item in body.split(","):
            key, sep, raw = item.partition("=")
            key, raw = key.strip(), raw.strip()
            if not sep or not key or not raw:
                raise InvalidParameterError(
                    f"cannot parse index {index!r} at {item!r}; expected key=value"
                )
            if key in values:
                raise InvalidParameterError(f"index {index!r} sets {key!r} twice")
            try:
                values[key] = int(raw)
            except ValueError:
                raise InvalidParameterError(
                    f"index {index!r}: {key}={raw!r} is not an integer"
                ) from None
    extra = dict(params or {})
    both = sorted(set(values) & set(extra))
    if both:
        raise InvalidParameterError(
            f"parameter(s) {', '.join(both)} given both in the index {index!r} and in "
            "index_params"
        )
    return m.group(1), {**values, **extra}


def _format_index(index_type: str, params: Mapping[str, Any]) -> str:
    if not params:
        return index_type
    return f"{index_type}({','.join(f'{k}={v}' for k, v in params.items())})"


class MilvusCollection(BaseCollection):
    """Documents with vectors, metadata and filters, stored in a Milvus collection.

    Parameters
    ----------
    uri : str or path-like
        A milvus-lite database path ending in ``.db`` (its directory must exist), or a
        server URI: ``http://host:19530``, ``https://...``, ``tcp://...``, ``unix:...``.
    collection_name : str
        The Milvus collection (letters, digits and ``_``, not starting with a digit;
        created if missing). Default ``"vecindex"``.
    index : str, optional
        Milvus index type, optionally with build parameters: ``"AUTOINDEX"`` (default for a
        new collection), ``"FLAT"`` (exact), ``"HNSW(M=16,efConstruction=200)"``,
        ``"IVF_FLAT(nlist=128)"``, ``"IVF_SQ8(nlist=128)"``. DISKANN and GPU types are
        refused before anything is sent (see :func:`~vecindex_core.milvus.client.check_index`).
    metric : {"cosine", "ip", "l2"}, optional
        Default ``"cosine"`` for a new collection.
    dim : int, optional
        Vector dimensions; fixed by the first vector written when not given.
    index_params : dict, optional
        Build parameters, merged with those in ``index``.
    consistency_level : {"Strong", "Bounded", "Session", "Eventually"}
        Used for the collection and every request; ``"Strong"`` (default) reads its own
        writes.
    page_size : int
        Rows per request when reading more than fits one (1 to 16,384, the default).
    token, user, password, db_name, secure, server_pem_path, server_name, ca_pem_path, \
client_pem_path, client_key_path
        Credentials, database and TLS settings, passed to pymilvus unchanged.
    timeout : float, optional
        Seconds to wait for the server when connecting and for each data request.

    Raises
    ------
    ServiceUnavailableError
        Nothing answers at ``uri``, or another process holds the milvus-lite database.
    InvalidParameterError, NotSupportedError
        An invalid index type or build parameter (checked before anything is created).
    InvalidArgumentError
        Reopening with a metric, index or dim different from the stored ones, a Milvus
        collection that vecindex did not create, or a malformed argument.
    NotSupportedError
        pymilvus (or milvus-lite for a local path) is not installed:
        ``pip install "vecindex[milvus]"``.

    Notes
    -----
    See the module docstring for the row layout, write order, the guarantees of a write
    batch and how Milvus's limits are handled.
    """

    def __init__(
        self,
        uri: str | os.PathLike[str],
        *,
        collection_name: str = "vecindex",
        index: str | None = None,
        metric: Metric | None = None,
        dim: int | None = None,
        index_params: Mapping[str, Any] | None = None,
        consistency_level: str = "Strong",
        page_size: int = MAX_WINDOW,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        db_name: str | None = None,
        secure: bool | None = None,
        server_pem_path: str | None = None,
        server_name: str | None = None,
        ca_pem_path: str | None = None,
        client_pem_path: str | None = None,
        client_key_path: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self._lock = RWLock()
        self._seq_lock = threading.Lock()
        self._last_seq = 0
        self._closed = True
        if isinstance(uri, os.PathLike):
            uri = os.fspath(uri)
        self._uri = uri
        self._lite = is_lite(uri)
        if not isinstance(collection_name, str) or not _NAME.fullmatch(collection_name):
            raise InvalidArgumentError(
                f"collection_name {collection_name!r} is not a valid Milvus collection name "
                "(letters, digits and _, not starting with a digit, at most 255 characters)"
            )
        self._name = collection_name
        if consistency_level not in _CONSISTENCY:
            raise InvalidArgumentError(
                f"consistency_level is {consistency_level!r}; expected one of {_CONSISTENCY}"
            )
        self._consistency = consistency_level
        self._page = check_int(page_size, "page_size", low=1, high=MAX_WINDOW)
        itype, iparams = check_index(
            *_parse_index(index or "AUTOINDEX", index_params), lite=self._lite
        )
        requested: dict[str, Any] = {
            "index": _format_index(itype, iparams),
            "metric": check_metric(metric or "cosine"),
            "dim": None if dim is None else check_int(dim, "dim", low=1, high=32768),
        }
        # keyword arguments of every read request, and of every write request
        self._wkw: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        self._rpc: dict[str, Any] = {"consistency_level": consistency_level, **self._wkw}
        # largest bytes per row seen, per set of output fields (sizes read pages)
        self._row_bytes: dict[tuple[str, ...], int] = {}
        self._timeout = timeout
        self._has_secrets = token is not None or password is not None
        self._connection: dict[str, Any] = {
            "user": user, "db_name": db_name, "secure": secure,
            "server_pem_path": server_pem_path, "server_name": server_name,
            "ca_pem_path": ca_pem_path, "client_pem_path": client_pem_path,
            "client_key_path": client_key_path,
        }
        self._client = connect(
            uri, token=token, user=user, password=password, db_name=db_name, secure=secure,
            server_pem_path=server_pem_path, server_name=server_name, ca_pem_path=ca_pem_path,
            client_pem_path=client_pem_path, client_key_path=client_key_path, timeout=timeout,
        )
        try:
            with translate_errors(f"read the server version at {uri}"):
                version = self._client.get_server_version()
            self._infix = supports_infix_like(str(version))
            stored = self._open_existing()
            if stored is None:
                self._settings: dict[str, Any] = {
                    **requested, "index_type": itype, "index_params": iparams
                }
                self._create(self._name, self._settings["dim"])
            else:
                if match_settings(stored, requested, index, metric, dim, index_params):
                    stored["dim_pending"] = True  # the schema still has the provisional dim
                self._settings = stored
                self._ensure_loaded(self._name)
        except BaseException:
            disconnect(self._client)
            raise
        self._closed = False

    # ----------------------------------------------------------------- settings / schema
    def _open_existing(self) -> dict[str, Any] | None:
        """The stored settings of the collection (repairing an interrupted dim change)."""
        c, name, tmp = self._client, self._name, self._name + TMP_SUFFIX
        with translate_errors(f"open collection {name!r}"):
            has, has_tmp = c.has_collection(name), c.has_collection(tmp)
            if has_tmp and not has:  # a dim change between drop and rename: finish it
                try:
                    c.rename_collection(tmp, name)
                except Exception:
                    if not c.has_collection(name):  # not renamed by the other client either
                        raise
                has = True
            # both present: the original is intact and authoritative; the copy may be
            # another live client's dim change, so it is left alone (see _fix_dim)
            if not has:
                return None
            desc = c.describe_collection(name)
        return self._parse_settings(desc)

    def _parse_settings(self, desc: Mapping[str, Any]) -> dict[str, Any]:
        """The settings stored in a ``describe_collection`` answer (checked)."""
        name = self._name
        raw = (desc.get("properties") or {}).get(SETTINGS_KEY)
        if raw is None:
            raise InvalidArgumentError(
                f"Milvus collection {name!r} at {self._uri} was not created by vecindex "
                f"(it has no {SETTINGS_KEY!r} property); choose another collection_name"
            )
        try:
            stored = json.loads(raw)
            version = int(stored["schema"])
            settings = {
                "index": str(stored["index"]),
                "index_type": str(stored["index_type"]),
                "index_params": dict(stored["index_params"]),
                "metric": check_metric(stored["metric"]),
                "dim": None if stored["dim"] is None else int(stored["dim"]),
            }
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidArgumentError(
                f"Milvus collection {name!r} has corrupt vecindex settings {raw!r} ({e!r})"
            ) from e
        if version > _SCHEMA_VERSION:
            raise InvalidArgumentError(
                f"Milvus collection {name!r} has vecindex schema version {version}, newer than "
                f"this library's {_SCHEMA_VERSION}; upgrade vecindex"
            )
        fields = {f["name"] for f in desc.get("fields", [])}
        wanted = {"id", "uid", "seq", "has_vec", "vec", *(n for n, _ in ROW_FIELDS)}
        if not wanted <= fields:
            raise InvalidArgumentError(
                f"Milvus collection {name!r} lacks the field(s) {sorted(wanted - fields)}; "
                "it was written by another vecindex version"
            )
        return settings

    def _settings_json(self, dim: int | None, started: float | None = None) -> str:
        s = self._settings
        out = {
            "schema": _SCHEMA_VERSION, "index": s["index"], "index_type": s["index_type"],
            "index_params": s["index_params"], "metric": s["metric"], "dim": dim,
        }
        if started is not None:  # a dim-change copy: when it was started (see _fix_dim)
            out["started"] = started
        return json.dumps(out)

    def _refresh_dim(self) -> None:
        """Adopt the dimension another client stored (read again from Milvus).

        Called under the write lock before a write fixes the dimension, and by a search
        that still has none. Raises :class:`~vecindex_core.errors.DimensionMismatchError`
        when this object was opened with a ``dim`` different from the stored one.
        """
        if self._settings["dim"] is not None and not self._settings.get("dim_pending"):
            return
        with translate_errors(f"describe collection {self._name!r}"):
            desc = self._client.describe_collection(self._name)
        stored = self._parse_settings(desc)["dim"]
        if stored is None:
            return
        mine = self._settings["dim"]
        if mine is not None and int(mine) != stored:
            raise DimensionMismatchError(
                f"collection {self._name!r} was given dim={mine} by this client, but another "
                f"client fixed its dimension to {stored}; reopen it with dim={stored}"
            )
        self._settings["dim"] = stored
        self._settings.pop("dim_pending", None)

    def _create(self, name: str, dim: int | None, started: float | None = None) -> None:
        """Create (and load) the Milvus collection ``name``; ``dim=None`` is provisional."""
        from .client import import_pymilvus

        pymilvus = import_pymilvus()
        dt = pymilvus.DataType
        kinds = {"varchar": dt.VARCHAR, "json": dt.JSON, "bool": dt.BOOL, "int64": dt.INT64}
        c = self._client
        schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", dt.VARCHAR, is_primary=True, max_length=_MAX_VARCHAR)
        schema.add_field("uid", dt.INT64)
        schema.add_field("seq", dt.INT64)
        schema.add_field("has_vec", dt.BOOL)
        for field, kind in ROW_FIELDS:
            extra = {"max_length": _MAX_VARCHAR} if kind == "varchar" else {}
            schema.add_field(field, kinds[kind], **extra)
        schema.add_field("vec", dt.FLOAT_VECTOR, dim=1 if dim is None else dim)
        # as client.create_collection (no pymilvus index wait), plus our settings property
        with translate_errors(f"create collection {name!r}"):
            c.create_collection(
                name, schema=schema, consistency_level=self._consistency,
                properties={SETTINGS_KEY: self._settings_json(dim, started)},
            )
        self._ensure_loaded(name)

    def _ensure_loaded(self, name: str) -> None:
        """Create the vector index if it is missing (a crash right after the create), then
        load the collection unless it is loaded."""
        c = self._client
        with translate_errors(f"load collection {name!r}"):
            if not c.list_indexes(name):
                c.create_index(name, index_params(
                    c, "vec", self._settings["index_type"], self._settings["metric"],
                    self._settings["index_params"],
                ), sync=False)
            state = self._client.get_load_state(name).get("state")
            if getattr(state, "name", str(state)) != "Loaded":
                self._client.load_collection(name)

    def _fix_dim(self, dim: int) -> None:
        """Give the provisional vector field its real dimension (see the module docstring).

        Refuses when a row already has a vector (another client fixed the dimension), and
        when a ``__vecindex_tmp`` copy younger than :data:`TMP_STALE_S` seconds exists
        (another client is changing the dimension right now); an older copy is a crashed
        change and is dropped.
        """
        c, name, tmp = self._client, self._name, self._name + TMP_SUFFIX
        rows = list(self._scan("", (*_ROW_OUT, "has_vec", *(n for n, _ in ROW_FIELDS))))
        if any(r["has_vec"] for r in rows):
            raise DimensionMismatchError(
                f"collection {name!r} already holds vectors written by another client, but "
                "its stored settings have no dimension; nothing was written"
            )
        with translate_errors(f"change the dimension of collection {name!r}"):
            if c.has_collection(tmp):
                props = c.describe_collection(tmp).get("properties") or {}
                try:
                    started = float(json.loads(props[SETTINGS_KEY])["started"])
                except (KeyError, TypeError, ValueError):
                    started = 0.0
                if time.time() - started < TMP_STALE_S:
                    raise ServiceUnavailableError(
                        f"another client is changing the dimension of collection {name!r} "
                        f"({tmp!r} exists); retry in a moment"
                    )
                c.drop_collection(tmp)
        before = dict(self._settings)
        self._settings["dim"] = dim
        self._settings.pop("dim_pending", None)
        try:
            with translate_errors(f"change the dimension of collection {name!r}"):
                if not rows:
                    c.drop_collection(name)
                    self._create(name, dim)
                    return
                self._create(tmp, dim, started=time.time())
                placeholder = self._placeholder()
                self._send(tmp, [{**r, "has_vec": False, "vec": placeholder} for r in rows])
                c.drop_collection(name)
                c.rename_collection(tmp, name)
                self._ensure_loaded(name)
        except BaseException:
            self._settings = before  # the next open repairs what Milvus holds
            raise

    # ----------------------------------------------------------------- properties
    @property
    def path(self) -> str:
        """The ``uri`` (a milvus-lite path or a server URI)."""
        return self._uri

    @property
    def uri(self) -> str:
        """The ``uri`` the collection was opened with."""
        return self._uri

    @property
    def collection_name(self) -> str:
        """The Milvus collection's name."""
        return self._name

    @property
    def consistency_level(self) -> str:
        """The consistency level of every request."""
        return self._consistency

    @property
    def page_size(self) -> int:
        """The most rows one read request returns."""
        return self._page

    @property
    def timeout(self) -> float | None:
        """Seconds to wait for each request (None: pymilvus's default)."""
        return self._timeout

    @property
    def connection(self) -> dict[str, Any]:
        """The connection settings it was opened with, secrets left out: ``user``,
        ``db_name``, ``secure`` and the TLS paths (None where not given)."""
        return dict(self._connection)

    @property
    def has_secrets(self) -> bool:
        """Whether it was opened with a ``token`` or ``password`` (never stored here)."""
        return self._has_secrets

    @property
    def lite(self) -> bool:
        """Whether this is an embedded milvus-lite database."""
        return self._lite

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
        """The Milvus index type with its complete build parameters (``"HNSW(M=16,...)"``)."""
        return str(self._settings["index"])

    @property
    def index_type(self) -> str:
        """The Milvus index type (``"AUTOINDEX"``, ``"HNSW"``...)."""
        return str(self._settings["index_type"])

    @property
    def client(self) -> Any:
        """The ``pymilvus.MilvusClient`` (read it; writing around the collection voids its
        guarantees)."""
        return self._client

    def __len__(self) -> int:
        return self.count()

    def __repr__(self) -> str:
        return (
            f"MilvusCollection(uri={self._uri!r}, collection_name={self._name!r}, "
            f"index={self.index_spec!r}, metric={self.metric!r}, dim={self.dim})"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgumentError(
                f"Milvus collection {self._name!r} at {self._uri} is closed"
            )

    # ----------------------------------------------------------------- Milvus helpers
    @contextmanager
    def _reading(self) -> Iterator[None]:
        """The read lock, for one public call."""
        with self._lock.read():
            self._check_open()
            yield

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """The write lock, for one public call."""
        with self._lock.write():
            self._check_open()
            yield

    def _read_kw(self) -> dict[str, Any]:
        """Request arguments of every read: the collection's consistency level.

        Every request of a call uses it (with ``Strong``, each waits until the server has
        applied every write acknowledged before it); no later request of a call is
        downgraded, so a replica that lags cannot drop rows from a later page.
        """
        return self._rpc

    def _query(self, expr: str, fields: Sequence[str], **kw: Any) -> list[dict[str, Any]]:
        with translate_errors(f"query collection {self._name!r}"):
            rows = self._client.query(
                self._name, filter=expr, output_fields=list(fields), **self._read_kw(), **kw
            )
        return list(rows)

    def _row_est(self, fields: Sequence[str]) -> int:
        """Estimated bytes per row returned with ``fields`` (the largest seen so far)."""
        guess = 128 + (4 * int(self._settings["dim"] or 1) if "vec" in fields else 0)
        if "text" in fields or "meta" in fields:
            guess += 2048
        return max(guess, self._row_bytes.get(tuple(sorted(fields)), 0))

    def _note_rows(self, fields: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
        """Remember the largest row of a reply (sampled) for sizing later requests."""
        if not rows:
            return
        step = max(1, len(rows) // 64)
        big = max(_row_size(rows[i]) for i in range(0, len(rows), step))
        key = tuple(sorted(fields))
        if big > self._row_bytes.get(key, 0):
            self._row_bytes[key] = big

    def _rows_per_read(self, fields: Sequence[str]) -> int:
        """Rows per request so that a reply stays under :data:`READ_BYTES`."""
        return max(1, min(self._page, READ_BYTES // self._row_est(fields)))

    def _scan(self, expr: str, fields: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Every row matching ``expr``, in primary-key order, in pages.

        A page has at most ``page_size`` rows and about :data:`READ_BYTES` bytes (sized by
        the largest row seen; halved when the server still refuses the reply as too large).
        Pages follow the primary key (``id > last``); the ``iterator`` flag makes both
        deployments return each page sorted by it (milvus-lite does not otherwise).
        """
        out = tuple(dict.fromkeys(("id", *fields)))
        last: str | None = None
        page = self._rows_per_read(out)
        while True:
            where = expr if last is None else _and(f"id > {string_literal(last)}", expr)
            try:
                rows = self._query(where or _ALL, out, limit=page, iterator="True",
                                   reduce_stop_for_best="False")
            except BackendError as e:
                if page == 1 or not _too_big(e):
                    raise
                page //= 2
                continue
            yield from rows
            if len(rows) < page:
                return
            self._note_rows(out, rows)
            page = min(page * 2, self._rows_per_read(out))
            last = rows[-1]["id"]

    def _by_ids(self, sids: Sequence[str], fields: Sequence[str],
                expr: str = "") -> list[dict[str, Any]]:
        """Rows with these ids (and matching ``expr``), in chunks of at most
        :data:`IN_CHUNK` ids, :data:`IN_BYTES` bytes of ids and a reply of about
        :data:`READ_BYTES` bytes (a chunk the server refuses as too large is halved)."""
        out: list[dict[str, Any]] = []
        todo = list(_id_chunks(sids, min(IN_CHUNK, self._rows_per_read(fields))))
        while todo:
            part = todo.pop(0)
            try:
                rows = self._query(_and(id_in_expr(part), expr), fields)
            except BackendError as e:
                if len(part) == 1 or not _too_big(e):
                    raise
                half = len(part) // 2
                todo[:0] = [part[:half], part[half:]]
                continue
            self._note_rows(fields, rows)
            out.extend(rows)
        return out

    def _count(self, expr: str) -> int:
        rows = self._query(expr, ["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def _filter_expr(self, filter: Mapping[str, Any] | None) -> str:
        """The expression of ``filter``, after raising the FilterError the in-memory
        evaluator would raise on the stored data (orderings over mixed types)."""
        expr = to_expr(filter, infix_like=self._infix)
        if filter:
            for check in error_checks(filter, infix_like=self._infix):
                rows = self._query(check.expr, ("id", "text", "has_text", "meta"), limit=1)
                if rows:
                    raise check.error(rows[0])
        return expr

    def _placeholder(self) -> list[float]:
        """The vector of a document without one (``has_vec`` is false)."""
        d = 1 if self._settings.get("dim_pending") else int(self._settings["dim"] or 1)
        return [1.0] + [0.0] * (d - 1)

    def _send(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Upsert ``rows`` into ``name`` in requests of about :data:`REQUEST_BYTES`."""
        start, size = 0, 0
        for i, row in enumerate(rows):
            size += 64 + 4 * len(row["vec"]) + len(row["text"]) * 4 + len(
                json.dumps(row["meta"], ensure_ascii=False)) * 8
            if size >= REQUEST_BYTES or i == len(rows) - 1:
                with translate_errors(f"upsert into collection {name!r}"):
                    self._client.upsert(name, rows[start : i + 1], **self._wkw)
                start, size = i + 1, 0

    def _delete_ids(self, sids: Sequence[str]) -> None:
        for part in _id_chunks(sids):
            with translate_errors(f"delete from collection {self._name!r}"):
                self._client.delete(self._name, filter=id_in_expr(part), **self._wkw)

    def _next_seqs(self, n: int) -> int:
        with self._seq_lock:
            base = max(time.time_ns() // 1000, self._last_seq + 1)
            self._last_seq = base + n - 1
        return base

    @staticmethod
    def _record(row: Mapping[str, Any], include_vectors: bool) -> Record:
        text, meta = row_meta(row)
        vec = None
        if include_vectors and row.get("has_vec"):
            vec = np.asarray(row["vec"], dtype=np.float32)
        sid = str(row["id"])
        uid = row.get("uid")
        return Record(sid, text, meta, vec, _uid(sid) if uid is None else int(uid))

    @staticmethod
    def _fields(include_vectors: bool) -> tuple[str, ...]:
        return (*_ROW_OUT, *_VEC_OUT) if include_vectors else _ROW_OUT

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

        Parameters and errors are those of :meth:`Collection.upsert
        <vecindex_core.collection.Collection.upsert>`, plus Milvus's storage limits: an id
        or a text over 65,535 UTF-8 bytes, a metadata integer beyond int64, a string with a
        lone surrogate, or a document whose JSON fields exceed 64 KiB (the derived
        ``f_like``/``f_lower`` fields hold the id, text and metadata strings together,
        escaped, so a text near 64 KiB may exceed it) raise
        :class:`~vecindex_core.errors.InvalidArgumentError`. Nothing is written when
        anything is invalid; see the module docstring for a server failure mid-batch.

        Returns
        -------
        list of str
            The ids written, in input order (``"skip"`` leaves out the ones already stored).
        """
        batch = check_batch(ids, texts, vectors, metadatas, on_duplicate)
        n = len(batch)
        if n == 0:
            return []
        derived = []
        for sid, text, meta in zip(batch.ids, batch.texts, batch.metadatas, strict=True):
            for what, value in (("id", sid), ("text", text)):
                if value is not None and len(value.encode("utf-8", "surrogatepass")) > _MAX_VARCHAR:
                    raise InvalidArgumentError(
                        f"the {what} of document {sid[:80]!r} has more than {_MAX_VARCHAR} "
                        "UTF-8 bytes, Milvus's VARCHAR limit; nothing was written"
                    )
            derived.append(row_fields(sid, text, meta))
        uids = [_uid(s) for s in batch.ids]
        if len(set(uids)) != n:
            raise InvalidArgumentError(
                "two ids of this batch hash to the same uid; rename one (nothing was written)"
            )
        with self._writing():
            if any(batch.has_vec):
                self._refresh_dim()
            matrix, dim = vector_matrix(batch, self.dim)
            existing = self._existing(batch.ids, uids)
            keep = kept_rows(batch.ids, existing, on_duplicate)
            if not keep:
                return []
            if matrix.shape[0] and (self._settings["dim"] is None
                                    or self._settings.get("dim_pending")):
                assert dim is not None
                self._fix_dim(dim)
            base = self._next_seqs(len(keep))
            vec_of = np.cumsum(batch.has_vec) - 1
            placeholder = self._placeholder()
            rows = []
            for j, i in enumerate(keep):
                sid = batch.ids[i]
                old = existing.get(sid)
                has = batch.has_vec[i]
                rows.append({
                    "id": sid,
                    "uid": uids[i],
                    "seq": base + j if old is None else old,
                    "has_vec": has,
                    **derived[i],
                    "vec": matrix[vec_of[i]].tolist() if has else placeholder,
                })
            self._send(self._name, rows)
            return [batch.ids[i] for i in keep]

    def _existing(self, sids: list[str], uids: list[int]) -> dict[str, int]:
        """``{id: seq}`` of the stored ids among ``sids``; raises on a uid collision."""
        uid_of = dict(zip(sids, uids, strict=True))
        out: dict[str, int] = {}
        for part in _id_chunks(sids):
            # every stored row's uid is the hash of its id, so the uids alone find both the
            # stored copies and the collisions (an int64 "in" is cheaper than a varchar one)
            expr = f"uid in [{','.join(str(uid_of[s]) for s in part)}]"
            for row in self._query(expr, ("id", "uid", "seq")):
                rid = str(row["id"])
                if rid in uid_of and uid_of[rid] == int(row["uid"]):
                    out[rid] = int(row["seq"])
                else:
                    other = next(s for s in part if uid_of[s] == int(row["uid"]))
                    raise InvalidArgumentError(
                        f"the id {other!r} hashes to the uid of the stored id {rid!r}; "
                        "rename it (nothing was written)"
                    )
        return out

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
        sids = None if ids is None else storable_ids(str_ids(ids))
        with self._writing():
            if sids is not None:
                found = [str(r["id"]) for r in self._by_ids(sids, ("id",))]
            else:
                found = [str(r["id"]) for r in self._scan(self._filter_expr(filter), ("id",))]
            self._delete_ids(found)
            return len(found)

    def clear(self, *, reset_index: bool = False) -> int:
        """Delete every document; returns how many.

        Parameters
        ----------
        reset_index : bool
            Also drop the Milvus collection and recreate it empty with a provisional vector
            field, so the next vector written fixes the dimension again (the index type,
            its parameters and the metric stay).
        """
        with self._writing():
            n = self._count("")
            if reset_index:
                with translate_errors(f"drop collection {self._name!r}"):
                    self._client.drop_collection(self._name)
                self._settings["dim"] = None
                self._settings.pop("dim_pending", None)
                self._create(self._name, None)
            elif n:
                with translate_errors(f"delete from collection {self._name!r}"):
                    self._client.delete(self._name, filter=_ALL, **self._wkw)
            return n

    def update_metadata(
        self, filter: Mapping[str, Any] | None, metadata: Mapping[str, Any]
    ) -> int:
        """Merge ``metadata`` into the metadata of every document matching ``filter``.

        ``filter=None`` updates every document. Returns how many documents matched. The
        matching rows are read whole (vectors included), checked, then written back.
        """
        patch, _ = check_metadata(metadata, "(update)")
        with self._writing():
            expr = "" if filter is None else self._filter_expr(filter)
            fields = (*_ROW_OUT, *_VEC_OUT)
            rows = []
            for row in self._scan(expr, fields):
                text, meta = row_meta(row)
                rows.append({
                    "id": row["id"], "uid": row["uid"], "seq": row["seq"],
                    "has_vec": row["has_vec"], **row_fields(row["id"], text, {**meta, **patch}),
                    "vec": list(row["vec"]),
                })
            if rows:
                self._send(self._name, rows)
            return len(rows)

    # ----------------------------------------------------------------- reads
    def count(self, filter: Mapping[str, Any] | None = None) -> int:
        """Number of documents matching ``filter`` (all documents when None)."""
        with self._reading():
            return self._count(self._filter_expr(filter))

    def get(self, ids: Sequence[str], *, include_vectors: bool = False) -> list[Record]:
        """Documents with these ids, in the given order; unknown ids are skipped."""
        sids = storable_ids(str_ids(ids))
        with self._reading():
            return self._fetch(sids, include_vectors)

    def _fetch(self, sids: Sequence[str], include_vectors: bool) -> list[Record]:
        """Records of the stored ids among ``sids``, in that order."""
        if not sids:
            return []
        rows = {r["id"]: r for r in self._by_ids(sids, self._fields(include_vectors))}
        return [self._record(rows[s], include_vectors) for s in sids if s in rows]

    def find(
        self,
        filter: Mapping[str, Any] | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
        include_vectors: bool = False,
    ) -> list[Record]:
        """Documents matching ``filter`` in write order (first write of each id).

        The keys of every matching document are read (in pages) and sorted by write order;
        then the requested page of documents is fetched.
        """
        offset, limit = check_page(offset, limit)
        with self._reading():
            expr = self._filter_expr(filter)
            if limit is None and offset == 0:
                rows = sorted(self._scan(expr, self._fields(include_vectors)),
                              key=lambda r: (r["seq"], r["id"]))
                return [self._record(r, include_vectors) for r in rows]
            keys = sorted((r["seq"], r["id"]) for r in self._scan(expr, _KEY_OUT))
            end = None if limit is None else offset + limit
            return self._fetch([k[1] for k in keys[offset:end]], include_vectors)

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
        """:meth:`search` for a batch of query vectors ``(nq, dim)``; one list per query.

        ``params`` takes the Milvus search knobs ``ef`` (HNSW) and ``nprobe`` (IVF_*).
        """
        k = check_k(k)
        sids = None if ids is None else storable_ids(str_ids(ids))
        if isinstance(params, Mapping) or params is None:
            sp = search_params(self.index_type, params, k=min(k, MAX_WINDOW))
        else:
            raise InvalidParameterError(
                f"params must be a dict of Milvus search knobs (ef, nprobe), got {params!r}"
            )
        with self._reading():
            if self._settings["dim"] is None:  # another client may have fixed it since
                self._refresh_dim()
            q = as_float_matrix(vectors, self.dim, name="query")
            nq = q.shape[0]
            user = self._filter_expr(filter)
            expr = _and(_HAS_VEC, user)
            if self.dim is None or self._settings.get("dim_pending") or sids == []:
                return [[] for _ in range(nq)]
            chunks: list[str] = [""] if sids is None else [
                id_in_expr(part) for part in _id_chunks(sids)
            ]
            # seq orders find(), not hits, and uid is a hash of the id: two fields fewer
            # to send and decode per hit. has_vec tells a placeholder vector apart.
            fields = (*(f for f in self._fields(include_vectors) if f not in ("seq", "uid")),
                      *(() if include_vectors else ("has_vec",)))
            limit = min(k, MAX_WINDOW)
            # The search leaves out "has_vec == true": a filter costs the server a
            # predicate pass and a filtered graph walk on every query (measured +10-15% on
            # a single query), and documents without a vector are rare. A query whose hits
            # include a placeholder is searched again with it.
            hits = self._ann(q, [_and(user, c) for c in chunks], fields, limit, sp)
            again = [qi for qi in range(nq) if any(not e["has_vec"] for _, e in hits[qi])]
            if again:
                redo = self._ann(q[again], [_and(expr, c) for c in chunks], fields, limit, sp)
                for qi, row in zip(again, redo, strict=True):
                    hits[qi] = row
            out = [
                sorted(h, key=lambda t: -t[0])[:k] for h in hits
            ]
            # every index, FLAT included: the server leaves out zero-norm vectors under
            # cosine, so a short FLAT answer is not proof that fewer documents match
            short = [qi for qi in range(nq) if len(out[qi]) < k]
            wheres = [_and(expr, c) for c in chunks]
            if short:
                matching = sum(self._count(w) for w in wheres)
                short = [qi for qi in short if len(out[qi]) < matching]
            if short:
                exact = self._exact(q[short], k, wheres, include_vectors)
                for qi, row in zip(short, exact, strict=True):
                    out[qi] = row
        return [[Hit(self._record(r, include_vectors), s) for s, r in row] for row in out]

    def _ann(
        self, q: FloatMatrix, wheres: Sequence[str], fields: Sequence[str], limit: int,
        sp: Mapping[str, Any],
    ) -> list[list[tuple[float, dict[str, Any]]]]:
        """Milvus's top-``limit`` of each query for each of ``wheres``, as ``(score, row)``
        lists (unsorted across ``wheres``)."""
        nq = q.shape[0]
        negate = self.metric == "l2"  # as scores_from_distances, per hit
        # queries per request: Milvus takes at most 16,384, and the reply (nq * limit rows)
        # should stay near READ_BYTES
        step = max(1, min(MAX_WINDOW, READ_BYTES // (limit * self._row_est(fields))))
        hits: list[list[tuple[float, dict[str, Any]]]] = [[] for _ in range(nq)]
        for where in wheres:
            for q0 in range(0, nq, step):
                with translate_errors(f"search collection {self._name!r}"):
                    res = self._client.search(
                        self._name, data=q[q0 : q0 + step].tolist(), limit=limit,
                        filter=where, output_fields=list(fields), search_params=sp,
                        anns_field="vec", **self._read_kw(),
                    )
                for qi, found in enumerate(res, start=q0):
                    row = hits[qi]
                    for h in found:
                        # the reply's own entity dict (fresh, ours to keep); the distance
                        # is a float32 value already
                        entity = h["entity"]
                        entity["id"] = h["id"]
                        d = float(h["distance"])
                        row.append((-d if negate else d, entity))
        return hits

    def _exact(
        self, q: FloatMatrix, k: int, exprs: Sequence[str], include_vectors: bool
    ) -> list[list[tuple[float, dict[str, Any]]]]:
        """Exact top-``k`` over the vectors of every row matching one of ``exprs`` (which
        match disjoint rows), read in pages."""
        nq = q.shape[0]
        best_s = np.full((nq, 0), -np.inf, dtype=np.float32)
        best_i = np.empty((nq, 0), dtype=object)
        stream = (r for e in exprs for r in self._scan(e, ("id", "vec")))
        for page in _pages(stream, self._rows_per_read(("id", "vec"))):
            x = np.asarray([r["vec"] for r in page], dtype=np.float32)
            ids = np.array([r["id"] for r in page], dtype=object)
            s = np.concatenate([best_s, exact_scores(q, x, self.metric)], axis=1)
            i = np.concatenate([best_i, np.broadcast_to(ids, (nq, ids.size))], axis=1)
            order = np.argsort(-s, axis=1, kind="stable")[:, :k]
            best_s = np.take_along_axis(s, order, axis=1)
            best_i = np.take_along_axis(i, order, axis=1)
        wanted = sorted({str(x) for x in best_i.ravel()})
        rows = {r["id"]: r for r in self._by_ids(wanted, self._fields(include_vectors))}
        return [
            [(float(s), rows[str(i)]) for s, i in zip(srow, irow, strict=True) if str(i) in rows]
            for srow, irow in zip(best_s, best_i, strict=True)
        ]

    # ----------------------------------------------------------------- lifecycle
    def flush(self) -> None:
        """Seal the rows written so far, so Milvus indexes them (milvus-lite: and wait for
        the build). Durability never depends on this."""
        with self._writing():
            flush(self._client, self._name, lite=self._lite)

    def copy_to(self, path: str | os.PathLike[str]) -> None:
        """Export every document into a SQLite :class:`~vecindex_core.collection.Collection`
        at ``path`` (``index="flat"``, this metric and dim), in write order.

        Writes through this object wait during the copy, so it is consistent for them
        (other Milvus clients may still write). The copy is built beside ``path`` and moved
        into place, replacing a collection there.
        """
        dest = os.path.abspath(os.fspath(path))
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{dest}.tmp-{uuid.uuid4().hex}"
        with self._reading():
            keys = [k[1] for k in sorted((r["seq"], r["id"]) for r in self._scan("", _KEY_OUT))]
            try:
                with Collection(tmp, index="flat", metric=self.metric,
                                dim=None if self._settings.get("dim_pending") else self.dim
                                ) as out:
                    for i in range(0, len(keys), IN_CHUNK):
                        recs = self._fetch(keys[i : i + IN_CHUNK], include_vectors=True)
                        out.upsert([r.id for r in recs], [r.text for r in recs],
                                   [r.vector for r in recs], [r.metadata for r in recs])
                for suffix in ("-wal", "-shm", "-journal", ".index"):
                    Path(dest + suffix).unlink(missing_ok=True)
                os.replace(tmp, dest)
                if os.path.exists(tmp + ".index"):
                    os.replace(tmp + ".index", dest + ".index")
            finally:
                for suffix in ("", ".index", "-wal", "-shm", "-journal"):
                    Path(tmp + suffix).unlink(missing_ok=True)

    def close(self) -> None:
        """Close the connection (milvus-lite: release the database when the last collection
        on it closes). Further calls raise."""
        with self._lock.write():
            if self._closed:
                return
            self._closed = True
            disconnect(self._client)


def _pages(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    page: list[dict[str, Any]] = []
    for r in rows:
        page.append(r)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page

