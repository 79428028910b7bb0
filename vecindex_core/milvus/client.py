"""The Milvus connection layer shared by the ``milvus`` index kind and the Milvus Collection.

Everything here is the thin, validated boundary between vecindex and pymilvus: connecting
(embedded milvus-lite or a server), the index types and metrics we allow and how they map
to Milvus, search-time knobs, error translation, and the uint64 <-> INT64 primary key map.
pymilvus is imported only when Milvus is used (:func:`import_pymilvus`).

Deployments (``uri``)
---------------------
- A local path ending in ``.db`` runs embedded **milvus-lite** (3.x: an in-process gRPC
  server over a data *directory*; pymilvus starts it on a free loopback port). A lite
  database is held by one process at a time (an ``flock`` on ``<path>/LOCK``); opening one
  that another process holds raises :class:`~vecindex_core.errors.ServiceUnavailableError`
  saying so, before anything else happens. Inside one process the same database may be
  opened any number of times: the path is resolved (``realpath``, so two spellings of one
  directory are one database), every :func:`connect` shares lite's one server for it, and
  the server is stopped (releasing the lock) when the last client opened here is
  :func:`disconnect`-ed, unless something outside this module started it.
- ``http://``, ``https://``, ``tcp://`` or ``unix:`` URIs reach a Milvus server or cluster;
  ``token`` / ``user`` + ``password`` / ``db_name`` and the TLS files pass through to
  pymilvus unchanged.

Index types (measured on milvus-lite 3.2.2 with faiss 1.x and on Milvus 2.3.5)
------------------------------------------------------------------------------
:data:`INDEX_TYPES` are the types vecindex sends: ``FLAT``, ``HNSW`` (``M``,
``efConstruction``), ``IVF_FLAT`` and ``IVF_SQ8`` (``nlist``) and ``AUTOINDEX`` (the
portable choice: Milvus picks; lite builds faiss HNSW). Everything else is refused before
any request is sent:

- ``DISKANN`` and every ``GPU_*`` type: Milvus 2.3.5 hangs forever in ``create_index`` for
  them; milvus-lite accepts them, reports the index as ``Finished`` in ``describe_index``,
  then fails to build it in the background and silently keeps searching brute force.
- Other Milvus types (``IVF_PQ``, ``SCANN``, ``HNSW_SQ``, binary and sparse types): lite
  accepts and ignores ``IVF_PQ``/``SCANN`` the same way; vecindex does not expose them.
- On milvus-lite without faiss installed, ``HNSW``/``IVF_FLAT``/``IVF_SQ8`` would be
  accepted and never built (lite needs faiss for them): they raise
  :class:`~vecindex_core.errors.NotSupportedError` pointing to ``AUTOINDEX`` (which falls
  back to brute force there) or ``FLAT``.

milvus-lite builds a segment's index only when the segment is sealed by ``flush()``, in a
background thread; rows not yet flushed (and sealed segments whose build has not finished)
are searched brute force. :func:`flush` seals and then waits until lite has built the
index of every sealed segment, so searches after it are served by the index and give the
same results every time.

Metrics and scores
------------------
:data:`METRIC_TYPES` maps ``cosine``/``ip``/``l2`` to ``COSINE``/``IP``/``L2``. Milvus
returns, per hit, the cosine similarity, the inner product, or the **squared** L2 distance
(measured on both lite and 2.3.5); :func:`scores_from_distances` turns them into the
library's "higher is better" scores (the ``l2`` score is the negated squared distance).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import weakref
from collections.abc import Iterator, Mapping
from types import MappingProxyType, ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import (
    BackendError,
    InvalidArgumentError,
    InvalidParameterError,
    NotSupportedError,
    ServiceUnavailableError,
)
from ..types import IdArray, Metric
from ..validation import check_metric

__all__ = [
    "DEFAULT_TIMEOUT",
    "INDEX_TYPES",
    "INSTALL_HINT",
    "METRIC_TYPES",
    "SERVER_SCHEMES",
    "check_index",
    "connect",
    "create_collection",
    "disconnect",
    "flush",
    "ids_to_pks",
    "import_pymilvus",
    "index_params",
    "is_lite",
    "lite_is_open",
    "lite_path",
    "pk_filter",
    "pks_to_ids",
    "scores_from_distances",
    "search_params",
    "translate_errors",
]

INSTALL_HINT = 'pip install "vecindex[milvus]"'
#: URI prefixes that reach a Milvus server (anything else is a milvus-lite path).
SERVER_SCHEMES = ("http://", "https://", "tcp://", "unix:")
#: Seconds :func:`connect` waits for a server when no ``timeout`` is given.
DEFAULT_TIMEOUT = 10.0

#: Our metric -> Milvus ``metric_type``.
METRIC_TYPES: Mapping[str, str] = MappingProxyType({"cosine": "COSINE", "ip": "IP", "l2": "L2"})


def import_pymilvus() -> ModuleType:
    """The ``pymilvus`` module.

    Raises
    ------
    NotSupportedError
        pymilvus is not installed; the message names ``pip install "vecindex[milvus]"``.
    """
    try:
        import pymilvus
    except ImportError as e:
        raise NotSupportedError(
            f"Milvus support needs the pymilvus package, which is not installed: {INSTALL_HINT}"
        ) from e
    return pymilvus


# --------------------------------------------------------------------------- uris
def _uri_text(uri: object) -> str:
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidArgumentError(
            f"Milvus uri must be a non-empty string or path, got {uri!r}"
        )
    return uri.strip()


def is_lite(uri: str | os.PathLike[str]) -> bool:
    """Whether ``uri`` names an embedded milvus-lite database (a local path).

    ``http://``, ``https://``, ``tcp://`` and ``unix:`` URIs reach a server; any other
    ``scheme://`` is rejected; everything else is a local path.

    Raises
    ------
    InvalidArgumentError
        Not a string or path, empty, or a URI with an unknown scheme.
    """
    text = _uri_text(uri)
    low = text.lower()
    if low.startswith(SERVER_SCHEMES):
        return False
    if "://" in text:
        raise InvalidArgumentError(
            f"Milvus uri {text!r} has an unknown scheme; expected a local milvus-lite path "
            f"ending in .db or a server uri starting with {', '.join(SERVER_SCHEMES)}"
        )
    return True


def lite_path(uri: str | os.PathLike[str]) -> str:
    """The resolved (absolute, symlink-free) milvus-lite database path of ``uri``.

    Raises
    ------
    InvalidArgumentError
        ``uri`` is a server uri, does not end in ``.db``, its parent directory does not
        exist, or a regular file (not a lite database directory) sits at the path.
    """
    text = _uri_text(uri)
    if not is_lite(text):
        raise InvalidArgumentError(f"{text!r} is a server uri, not a milvus-lite path")
    path = os.path.realpath(os.path.expanduser(text))
    if not path.endswith(".db"):
        raise InvalidArgumentError(
            f"milvus-lite path {text!r} must end with .db (pymilvus treats only .db paths "
            "as embedded databases)"
        )
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise InvalidArgumentError(
            f"milvus-lite path {text!r}: directory {parent!r} does not exist"
        )
    if os.path.exists(path) and not os.path.isdir(path):
        raise InvalidArgumentError(
            f"milvus-lite path {text!r} is a regular file; milvus-lite 3 keeps a database in "
            "a directory (a file from milvus-lite 2 cannot be opened)"
        )
    return path


# --------------------------------------------------------------------------- errors
def _grpc_code_name(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    if callable(code):
        with contextlib.suppress(Exception):
            value = code()
            return str(getattr(value, "name", value))
    return None


_UNAVAILABLE_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"}
_UNAVAILABLE_TEXT = (
    "failed to connect", "connection refused", "fail connecting to server",
    "server unavailable", "deadline exceeded", "connection reset", "socket closed",
    "not connected", "connection not exist", "channel closed", "stream removed",
)


def _is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or anything it chains) says the server cannot be reached."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (ConnectionError, TimeoutError)):
            return True
        name = type(e).__name__
        if name in ("MilvusUnavailableException", "ConnectionNotExistException",
                    "FutureTimeoutError"):
            return True
        if _grpc_code_name(e) in _UNAVAILABLE_GRPC:
            return True
        text = str(getattr(e, "message", "") or e).lower()
        if any(t in text for t in _UNAVAILABLE_TEXT):
            return True
        e = e.__cause__ or e.__context__
    return False


def _describe(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    first = str(msg).strip().splitlines()
    return first[0] if first else type(exc).__name__


@contextlib.contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn pymilvus / grpc exceptions raised inside the block into our typed errors.

    Parameters
    ----------
    what : str
        The operation, for the message (``"insert into collection 'docs'"``).

    Raises
    ------
    ServiceUnavailableError
        The server cannot be reached, dropped the connection, or did not answer in time.
    BackendError
        Any other failure reported by pymilvus or the server. Both chain the original
        exception as ``__cause__``; our own errors (:class:`~vecindex_core.VecIndexError`)
        pass through unchanged.
    """
    from ..errors import VecIndexError

    try:
        yield
    except VecIndexError:
        raise
    except Exception as e:
        if _is_unavailable(e):
            raise ServiceUnavailableError(
                f"Milvus is unavailable during {what}: {_describe(e)}"
            ) from e
        raise BackendError(f"Milvus failed to {what}: {_describe(e)}") from e


# --------------------------------------------------------------------------- connect
class _LiteServer:
    """Book-keeping of one milvus-lite database opened through :func:`connect`."""

    def __init__(self, path: str, owned: bool) -> None:
        self.path = path
        self.owned = owned  # we started lite's server for it (so we may stop it)
        self.clients = 0


_LITE_LOCK = threading.RLock()
_LITE: dict[str, _LiteServer] = {}


def _lite_manager() -> Any:
    from milvus_lite.server_manager import server_manager_instance

    return server_manager_instance


def _lite_running(path: str) -> bool:
    servers = getattr(_lite_manager(), "_servers", None)
    return isinstance(servers, dict) and path in servers


def lite_is_open(path: str) -> bool:
    """Whether milvus-lite's in-process server for the resolved ``path`` is running."""
    try:
        return _lite_running(path)
    except ImportError:
        return False


def _lite_held_elsewhere(path: str) -> bool:
    """Whether another process holds ``<path>/LOCK`` (milvus-lite's one-process rule)."""
    lock = os.path.join(path, "LOCK")
    if not os.path.exists(lock):
        return False
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Windows here
        return False
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        return e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _held_error(path: str) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"milvus-lite database {path!r} is open in another process: milvus-lite opens a "
        "database from one process at a time. Close it there, or run a Milvus server and "
        "use its http:// uri to share data between processes"
    )


def _release_lite(path: str) -> None:
    with _LITE_LOCK:
        entry = _LITE.get(path)
        if entry is None:
            return
        entry.clients -= 1
        if entry.clients > 0:
            return
        del _LITE[path]
        if entry.owned:
            with contextlib.suppress(Exception):
                _lite_manager().release_server(path)


def connect(
    uri: str | os.PathLike[str],
    *,
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
) -> Any:
    """Open a ``pymilvus.MilvusClient`` on ``uri``; close it with :func:`disconnect`.

    Parameters
    ----------
    uri : str or path
        A milvus-lite path ending in ``.db`` (its directory must exist), or a server uri
        (``http(s)://host:port``, ``tcp://``, ``unix:``).
    token, user, password, db_name
        Credentials and database, passed to pymilvus (ignored by milvus-lite).
    secure, server_pem_path, server_name, ca_pem_path, client_pem_path, client_key_path
        TLS settings, passed to pymilvus when given.
    timeout : float, optional
        Seconds to wait for the server to answer (default :data:`DEFAULT_TIMEOUT`).

    Returns
    -------
    pymilvus.MilvusClient

    Raises
    ------
    ServiceUnavailableError
        Nothing answers at ``uri`` within ``timeout``, or the milvus-lite database is
        held by another process; the message names the uri.
    InvalidArgumentError
        A malformed uri or lite path, or a non-positive timeout.
    NotSupportedError
        pymilvus (or milvus-lite, for a local path) is not installed.
    """
    pymilvus = import_pymilvus()
    text = _uri_text(uri)
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
        0 < float(timeout) < float("inf")
    ):
        raise InvalidArgumentError(f"timeout must be a positive number of seconds, got {timeout!r}")
    kwargs: dict[str, Any] = {"timeout": float(timeout)}
    for key, value in (("token", token), ("user", user), ("password", password),
                       ("db_name", db_name)):
        if value is not None:
            if not isinstance(value, str):
                raise InvalidArgumentError(f"{key} must be a string, got {type(value).__name__}")
            kwargs[key] = value
    tls = {"server_pem_path": server_pem_path, "server_name": server_name,
           "ca_pem_path": ca_pem_path, "client_pem_path": client_pem_path,
           "client_key_path": client_key_path}
    for key, value in tls.items():
        if value is not None:
            if not isinstance(value, (str, os.PathLike)):
                raise InvalidArgumentError(f"{key} must be a path, got {type(value).__name__}")
            kwargs[key] = os.fspath(value)
    if secure is not None:
        if not isinstance(secure, bool):
            raise InvalidArgumentError(f"secure must be a bool, got {secure!r}")
        kwargs["secure"] = secure

    if not is_lite(text):
        if secure is not None or any(v is not None for v in tls.values()):
            # pymilvus shares one channel per address and token, whatever its TLS settings:
            # a channel of its own makes these settings apply
            kwargs["dedicated"] = True
        with translate_errors(f"connect to {text}"):
            return pymilvus.MilvusClient(uri=text, **kwargs)

    path = lite_path(text)
    try:
        import milvus_lite  # noqa: F401
    except ImportError as e:
        raise NotSupportedError(
            f"milvus-lite path {text!r} needs the milvus-lite package: {INSTALL_HINT}"
        ) from e
    with _LITE_LOCK:
        running = _lite_running(path)
        if not running and _lite_held_elsewhere(path):
            raise _held_error(path)
        try:
            with translate_errors(f"open milvus-lite database {path!r}"):
                client = pymilvus.MilvusClient(uri=path, **kwargs)
        except BackendError as e:
            if _lite_held_elsewhere(path):
                raise _held_error(path) from e
            raise
        entry = _LITE.get(path)
        if entry is None:
            entry = _LITE[path] = _LiteServer(path, owned=not running)
        entry.clients += 1
        client._vecindex_release = weakref.finalize(client, _release_lite, path)
    return client


def disconnect(client: Any) -> None:
    """Close a client from :func:`connect` (idempotent).

    For milvus-lite, the database's in-process server is stopped (and its lock released)
    when the last client this module opened on it is closed.
    """
    with contextlib.suppress(Exception):
        client.close()
    release = getattr(client, "_vecindex_release", None)
    if release is not None:
        release()


def flush(client: Any, collection_name: str, *, lite: bool, timeout: float = 600.0) -> None:
    """Seal the collection's new rows so they are indexed, and for lite wait for the build.

    Milvus (server): ``flush`` seals growing segments (searches do not need it: growing
    rows are searched too). milvus-lite: ``flush`` seals the memtable, then lite builds the
    new segment's index in a background thread; this waits (polling lite's in-process
    state) until every sealed segment has its index, so the next search is served by the
    index, deterministically. Without a vector index (or when lite's internals are not
    what this version expects) it returns right after ``flush``.

    Raises
    ------
    ServiceUnavailableError, BackendError
        From the flush; ``BackendError`` also when lite's build does not finish within
        ``timeout`` seconds.
    """
    with translate_errors(f"flush collection {collection_name!r}"):
        client.flush(collection_name)
    if lite:
        _wait_lite_indexed(client, collection_name, timeout)


def _lite_collection(client: Any, collection_name: str) -> Any:
    """lite's in-process Collection object behind ``client`` (None when not reachable)."""
    try:
        servers = _lite_manager()._servers
        address = client._handler._address if hasattr(client, "_handler") else None
        for _server, db, port in list(servers.values()):
            if address is None or str(address).endswith(f":{port}"):
                db_name = getattr(client._config, "db_name", "") or "default"
                try:
                    return db.get_collection(collection_name, database_name=db_name)
                except TypeError:
                    return db.get_collection(collection_name)
    except Exception:
        return None
    return None


def _wait_lite_indexed(client: Any, collection_name: str, timeout: float) -> None:
    """Drain lite's background worker (compaction + index builds), then check its work."""
    col = _lite_collection(client, collection_name)
    if col is None:
        return
    try:
        specs = list(col._index_specs.values())
        if not specs or col.load_state != "loaded":
            return
        drain = col._wait_for_bg
    except Exception:
        return
    try:
        drain(timeout)
    except Exception as e:  # concurrent.futures.TimeoutError
        raise BackendError(
            f"milvus-lite did not finish building the index of {collection_name!r} within "
            f"{timeout:.0f} s"
        ) from e
    try:
        missing = sum(
            1 for s in specs for seg in col._segments_snapshot()
            if seg.num_rows and s.field_name not in seg.indexes
            and s.field_name not in getattr(seg, "scalar_indexes", {})
        )
    except Exception:
        return
    if missing:
        raise BackendError(
            f"milvus-lite failed to build the index of {collection_name!r} for {missing} "
            "segment(s) (see its log); those rows are searched brute force"
        )


# --------------------------------------------------------------------------- index types
def _int_param(index_type: str, key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidParameterError(
            f"Milvus {index_type}: {key}={value!r} must be an integer in [{low}, {high}]"
        )
    v = int(value)
    if not low <= v <= high:
        raise InvalidParameterError(
            f"Milvus {index_type}: {key}={v} is out of range, expected [{low}, {high}]"
        )
    return v


#: index type -> {build param: (default, low, high)} (Milvus 2.3 ranges).
INDEX_TYPES: Mapping[str, Mapping[str, tuple[int, int, int]]] = MappingProxyType({
    "AUTOINDEX": MappingProxyType({}),
    "FLAT": MappingProxyType({}),
    "HNSW": MappingProxyType({"M": (16, 2, 2048), "efConstruction": (200, 1, 2**31 - 1)}),
    "IVF_FLAT": MappingProxyType({"nlist": (128, 1, 65536)}),
    "IVF_SQ8": MappingProxyType({"nlist": (128, 1, 65536)}),
})
#: Index types that need faiss inside milvus-lite (lite ignores them without it).
_LITE_NEEDS_FAISS = frozenset({"HNSW", "IVF_FLAT", "IVF_SQ8"})
#: Other Milvus index types, refused as not supported (rather than as unknown names).
_OTHER_MILVUS = frozenset({
    "IVF_PQ", "SCANN", "HNSW_SQ", "HNSW_PQ", "HNSW_PRQ", "IVF_RABITQ", "BIN_FLAT",
    "BIN_IVF_FLAT", "SPARSE_INVERTED_INDEX", "SPARSE_WAND", "ANNOY", "BRUTE_FORCE",
})


def _lite_has_faiss() -> bool:
    try:
        from milvus_lite.index.factory import is_faiss_available
    except ImportError:
        return True  # another milvus-lite: nothing to check
    return bool(is_faiss_available())


def check_index(
    index_type: str, params: Mapping[str, Any] | None = None, *, lite: bool
) -> tuple[str, dict[str, int]]:
    """Validate an index type and its build parameters before anything is sent.

    Parameters
    ----------
    index_type : str
        One of :data:`INDEX_TYPES` (case-insensitive).
    params : mapping, optional
        Build parameters by their Milvus names: ``M``, ``efConstruction`` (HNSW),
        ``nlist`` (IVF_FLAT, IVF_SQ8). Missing ones get Milvus's usual defaults
        (16, 200, 128), so the same index is built on every deployment.
    lite : bool
        Whether the target is milvus-lite (see the module docstring).

    Returns
    -------
    (str, dict)
        The upper-case index type and the complete build parameters.

    Raises
    ------
    NotSupportedError
        ``DISKANN``, any ``GPU_*`` type, another Milvus type vecindex does not expose, or a
        type milvus-lite would accept and never build (no faiss).
    InvalidParameterError
        An unknown name, or an unknown / out-of-range build parameter (named).
    """
    if not isinstance(index_type, str):
        raise InvalidParameterError(f"Milvus index_type must be a string, got {index_type!r}")
    name = index_type.strip().upper()
    allowed = ", ".join(INDEX_TYPES)
    if name == "DISKANN" or name.startswith("GPU"):
        raise NotSupportedError(
            f"Milvus index_type {index_type!r} is not supported: Milvus 2.3 hangs in "
            f"create_index for DISKANN and GPU indexes (and milvus-lite never builds them); "
            f"use one of {allowed} (AUTOINDEX is the portable choice)"
        )
    if name in _OTHER_MILVUS:
        raise NotSupportedError(
            f"Milvus index_type {index_type!r} is not supported by vecindex (milvus-lite "
            f"accepts it but searches brute force); use one of {allowed}"
        )
    if name not in INDEX_TYPES:
        raise InvalidParameterError(f"unknown Milvus index_type {index_type!r}; valid: {allowed}")
    if lite and name in _LITE_NEEDS_FAISS and not _lite_has_faiss():
        raise NotSupportedError(
            f"milvus-lite builds {name} with faiss, which is not installed here, and would "
            "silently search brute force instead: use index_type AUTOINDEX (portable; lite "
            "falls back to brute force) or FLAT, or pip install faiss-cpu"
        )
    table = INDEX_TYPES[name]
    given = dict(params or {})
    unknown = sorted(set(given) - set(table))
    if unknown:
        valid = ", ".join(table) or "none"
        raise InvalidParameterError(
            f"Milvus {name}: unknown build parameter(s) {', '.join(map(repr, unknown))}; "
            f"valid: {valid}"
        )
    out = {
        key: _int_param(name, key, given[key], low, high) if key in given else default
        for key, (default, low, high) in table.items()
    }
    return name, out


def index_params(
    client: Any, field_name: str, index_type: str, metric: Metric | str,
    build: Mapping[str, Any] | None = None,
) -> Any:
    """``IndexParams`` for one vector index, built so that both deployments read them.

    pymilvus 3 sends ``add_index(..., params={...})`` as flattened key/value pairs, which
    Milvus 2.3 accepts but milvus-lite 3.2.2 ignores (it reads only a JSON ``params`` pair
    and silently builds with its defaults: measured, ``nlist=16`` became 128). The build
    parameters are therefore nested as ``params={"params": {...}}``, the form older pymilvus
    sent and both read (``describe_index`` shows them on lite and on Milvus 2.3.5).
    ``index_type`` and ``build`` should come from :func:`check_index`.
    """
    m = check_metric(str(metric).lower())
    ip = client.prepare_index_params()
    ip.add_index(field_name, index_type=index_type, metric_type=METRIC_TYPES[m],
                 params={"params": dict(build or {})})
    return ip


def create_collection(
    client: Any, name: str, schema: Any, index_params: Any, *,
    consistency_level: str = "Strong",
) -> None:
    """Create a collection with its indexes and load it, without pymilvus's index wait.

    ``create_collection(index_params=...)`` makes pymilvus wait for the index in a loop
    that sleeps 0.5 s first (an ``AllocTimestamp`` call milvus-lite does not implement,
    logged as an error, then the sleep): measured, that is most of an empty collection's
    creation time on both deployments. Here the index is created asynchronously (an empty
    collection has nothing to build) and the collection loaded. Errors are translated
    (:func:`translate_errors`).
    """
    with translate_errors(f"create collection {name!r}"):
        client.create_collection(name, schema=schema, consistency_level=consistency_level)
        client.create_index(name, index_params, sync=False)
        client.load_collection(name)


#: Search knobs vecindex exposes, and the index types each applies to.
_KNOBS: Mapping[str, tuple[str, frozenset[str], int]] = MappingProxyType({
    # knob: (Milvus name, index types, upper bound)
    # AUTOINDEX is faiss HNSW on milvus-lite (ef applies); Milvus 2.3 accepts ef for it
    "ef": ("ef", frozenset({"HNSW", "AUTOINDEX"}), 32768),
    "nprobe": ("nprobe", frozenset({"IVF_FLAT", "IVF_SQ8"}), 65536),
})


def search_params(
    index_type: str, params: Mapping[str, Any] | None = None, *, k: int | None = None
) -> dict[str, Any]:
    """Milvus search parameters for our knobs (``ef``, ``nprobe``).

    ``0`` (or absent) means "let Milvus choose" and sends nothing; a non-zero knob that the
    index type has no use for raises. ``ef`` is raised to ``k`` when smaller (Milvus
    requires ``ef >= k``).

    Returns
    -------
    dict
        ``{"params": {...}}``, ready for ``MilvusClient.search(search_params=...)``.

    Raises
    ------
    InvalidParameterError
        An unknown knob, a value that is not a non-negative integer in range, or a knob
        that does not apply to ``index_type`` (each named with its value).
    """
    name = str(index_type).upper()
    out: dict[str, Any] = {}
    for key, value in dict(params or {}).items():
        if key not in _KNOBS:
            raise InvalidParameterError(
                f"unknown Milvus search parameter {key!r}; valid: {', '.join(_KNOBS)}"
            )
        milvus_key, types, high = _KNOBS[key]
        v = _int_param(name, key, value, 0, high)
        if v == 0:
            continue
        if name not in types:
            raise InvalidParameterError(
                f"Milvus search parameter {key}={v} does not apply to index_type {name} "
                f"(it applies to {', '.join(sorted(types))}); use 0 for automatic"
            )
        if key == "ef" and k is not None:
            v = max(v, int(k))
        out[milvus_key] = v
    return {"params": out}


def scores_from_distances(d: npt.ArrayLike, metric: Metric | str) -> npt.NDArray[np.float32]:
    """Milvus's per-hit ``distance`` as the library's score (higher is better).

    ``COSINE`` and ``IP`` already return similarities; ``L2`` returns the squared distance,
    which becomes its negation.
    """
    m = check_metric(str(metric).lower())
    arr = np.asarray(d, dtype=np.float32)
    return np.negative(arr) if m == "l2" else arr


# --------------------------------------------------------------------------- ids
_INT64_MAX = 2**63 - 1


def ids_to_pks(ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """uint64 ids (``0 .. 2**64-2``) as Milvus INT64 primary keys, one to one.

    Ids below ``2**63 - 1`` keep their value; the rest are shifted by one and their bits
    reinterpreted (``2**63-1 -> -2**63``, ``2**64-2 -> -1``), so every id we accept has a
    key and no id maps to ``2**63-1``: measured, Milvus 2.3.5 never returns a row whose
    primary key is ``9223372036854775807`` (queries, ``get`` and searches all miss it).
    :func:`pks_to_ids` inverts this exactly. Ids are not range-checked here; validate them
    with :func:`vecindex_core.validation.as_ids` first.
    """
    u = np.ascontiguousarray(np.asarray(ids, dtype=np.uint64))
    high = u >= np.uint64(_INT64_MAX)
    out = np.where(high, u + np.uint64(1), u)
    return np.ascontiguousarray(out.view(np.int64))


def pks_to_ids(pks: npt.ArrayLike) -> IdArray:
    """Inverse of :func:`ids_to_pks`: INT64 primary keys back to uint64 ids."""
    p = np.ascontiguousarray(np.asarray(pks, dtype=np.int64))
    u = p.view(np.uint64)
    return np.ascontiguousarray(np.where(p < 0, u - np.uint64(1), u))


_INT64_MIN = -(2**63)


def pk_filter(field: str, pks: npt.ArrayLike, *, negate: bool = False) -> str:
    """A boolean expression selecting (or, ``negate``, excluding) the INT64 keys ``pks``.

    Milvus 2.3.5 cannot parse the literal ``-9223372036854775808`` (INT64's minimum, the
    key of id ``2**63``): measured, ``key in [..., -9223372036854775808]`` fails with
    "strconv.ParseInt: value out of range", and so do ``MilvusClient.get/delete(ids=...)``,
    which build that expression. This writes that one key as ``key < -9223372036854775807``
    instead. Use it for every key list that can hold caller ids.
    """
    arr = np.asarray(pks, dtype=np.int64).ravel()
    has_min = bool((arr == _INT64_MIN).any())
    rest = arr[arr != _INT64_MIN]
    lst = ",".join(map(str, rest.tolist()))
    low = f"{field} < {_INT64_MIN + 1}"
    if negate:
        expr = f"{field} not in [{lst}]" if rest.size else ""
        if has_min:
            expr = f"({expr}) and not ({low})" if expr else f"not ({low})"
        return expr
    expr = f"{field} in [{lst}]" if rest.size else ""
    if has_min:
        expr = f"({expr}) or ({low})" if expr else low
    return expr or f"{field} in []"
