"""``redis_lsh``: banded sign-random-projection LSH whose buckets live in Redis.

Vectors are hashed by ``num_bands x rows_per_band`` seeded Gaussian hyperplanes (orthogonal
within each block of ``dim``, see :func:`~._kernels.projections.random_projection`), in
vectorised batches: one matrix product per batch, never one vector at a time. Band ``b`` of a
vector is the ``rows_per_band``-bit integer of its signs; rows whose band values agree share
that band's bucket. Buckets live in Redis (standalone or Redis Cluster); the originals stay in
the caller's system of record, in the index (``keep_vectors``), or behind a
``vector_fetch_fn``.

Redis layout (``P`` = ``prefix``, ``N`` = the index's namespace, 16 hex digits drawn at
construction and saved with the index)::

    P:{N.b}:<hex band value>   string  bucket of band b: packed little-endian uint32 row keys
    P:{N.r<hex g>}             string  reverse records of row keys 128g..128g+127, fixed
                                       size at offset (row key & 127) x size: a presence
                                       byte, then the row's band values (uint8/16/32 each,
                                       by rows_per_band); all-zero = no row
    P:{N}:next                 string  row-key counter (INCRBY reserves a batch's keys)
    P:{N}:meta                 hash    dim, metric, bands, rows, seed (for inspection)

*Row keys* are uint32 numbers handed out by the namespace's counter and never reused, so
handles that share a namespace never give two rows one key. The index maps its slots to row
keys locally (``rowkeys``, plus a hash table for the reverse). Buckets are strings, not sets:
a query reads a whole bucket with one ``MGET`` entry and parses it with one
``numpy.frombuffer``; a string costs 4 bytes a member where a set costs tens. Hash tags put
every bucket of one band in one cluster slot, so a query batch is one ``MGET`` per band, all
bands in one pipelined round trip, in standalone Redis and in a cluster alike; the reverse
records spread over slots by groups of 128 row keys (one ``SETRANGE`` writes a batch's
records of a group).

Writes:

- ``add``: ``INCRBY`` reserves the row keys; then the reverse records (``SETRANGE``) and
  the bucket appends (one Lua ``APPEND`` loop per band, taking the band's bucket values,
  counts and members as three packed arguments; the script builds the key names, which share
  the hash tag, and so the cluster slot, of the one key it declares) go in one
  ``MULTI``/``EXEC`` pipeline
  (standalone), or reverse records first and buckets second (cluster, where a transaction
  cannot span slots). The rows become visible only when the local slot table takes them, after
  the writes succeeded: a failed add leaves nothing visible, and its row keys are cleaned from
  Redis (through the reverse entries) at the start of the next write.
- ``remove``: reads the removed rows' reverse entries, strips their row keys from exactly those
  buckets (a Lua script per band; no keyspace scan), then zeroes the reverse records (last,
  so an interrupted remove can be retried and converges). Swap-remove moves only change the
  local slot table: Redis stores row keys, not slots.
- Connection failures raise :class:`~vecindex_core.errors.ServiceUnavailableError` and leave
  the local state unchanged.

Search: the query's band values, plus ``num_probes`` more buckets per band chosen by
query-directed multi-probe (least-confident bits flipped first, Lv et al. 2007), are read in
one round trip. Each candidate counts the bands it shares with the query (at most one per
band). With vectors available (kept, or fetched by ``vector_fetch_fn``) candidates are scored
exactly (all of them, or the ``rerank`` most-colliding); without, they are ranked by
collision count and scored by the similarity that count estimates
(:func:`~vecindex_core.lsh_tuning.similarity_from_collisions`). ``min_score`` is a real score
cutoff. A query whose buckets hold fewer than ``k`` allowed rows is answered from all allowed
rows when they number at most :data:`FALLBACK_ROWS` (exactly with vectors, else by Hamming
distance over the signatures read from the reverse index); beyond that it may return fewer
than ``k`` rows, as LSH does. A small filter mask takes the same route directly.

Handles: ``save``/``load``, pickle and ``copy`` carry the parameters, the projection, the local
slot table (and kept vectors) and the Redis location (URL without credentials, prefix,
namespace) -- never the buckets, which stay in Redis. Every copy is a handle on the same
buckets: it sees the rows it knows; a remove through any handle removes those rows' bucket
entries for all of them. ``clear()`` deletes the namespace and moves this handle to a fresh
one.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from ._kernels.hamming import exact_score, popcount64, push
from ._kernels.hashmap import ht_delete, ht_get, ht_insert, ht_new, ht_set
from ._kernels.lsh import _probe_flips
from ._kernels.projections import random_projection
from ._kernels.topk import dense_topk, finalize_heaps, init_heaps, sq_norms
from .base import EXACT_MASK_ROWS, Moves, VectorIndex
from .errors import (
    BackendError,
    IndexFormatError,
    InvalidArgumentError,
    InvalidParameterError,
    NotSupportedError,
    ServiceUnavailableError,
)
from .lsh_tuning import similarity_from_collisions
from .registry import Param, register
from .types import MISSING, FloatMatrix, Metric, SearchResult, SlotArray

__all__ = ["DEFAULT_URL", "FALLBACK_ROWS", "URL_ENV", "RedisLSH"]

Result = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]
VectorFetchFn = Callable[[SlotArray], Any]

#: Environment variable read when ``url`` is empty (the default).
URL_ENV = "VECINDEX_REDIS_URL"
#: Environment variables holding credentials; never saved.
PASSWORD_ENV = "VECINDEX_REDIS_PASSWORD"
USERNAME_ENV = "VECINDEX_REDIS_USERNAME"
#: Where an empty ``url`` points when ``VECINDEX_REDIS_URL`` is not set.
DEFAULT_URL = "redis://localhost:6379/0"
#: A query short of ``k`` rows in its buckets is answered from every allowed row when they
#: are at most this many; a filter mask allowing at most this many rows is searched that way.
FALLBACK_ROWS = EXACT_MASK_ROWS
#: Queries answered per pipelined round trip.
QUERY_CHUNK = 1024
#: Rows written per pipeline (bounds the client's memory on huge batches).
WRITE_CHUNK = 100_000
#: Row keys per reverse-index hash (Redis keeps a hash of <= 128 small fields as a listpack).
GROUP_BITS = 7
#: Seconds to connect / to wait for a reply.
CONNECT_TIMEOUT = 5.0
SOCKET_TIMEOUT = 60.0
_FLT_MAX = float(np.finfo(np.float32).max)
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")
_NAMESPACE_RE = re.compile(r"[0-9a-f]{16}")
_FIELDS = [bytes((i,)) for i in range(1 << GROUP_BITS)]
_FORMAT = 1

# The two bucket scripts take one band's work in one call: KEYS[1] is a bucket of the band
# (every bucket of a band shares its hash tag, so this routes the call to the band's cluster
# slot); ARGV[1] is the band's key prefix, ARGV[2] the bucket values (uint32 LE; the key is the
# prefix plus the value in lower-case hex), ARGV[3] each bucket's member count (uint32 LE) and
# ARGV[4] the members (packed uint32 LE row keys), bucket after bucket.
#
# Append the members to their buckets.
_APPEND_LUA = """
local vals, counts, data = ARGV[2], ARGV[3], ARGV[4]
local off = 1
for i = 1, #vals, 4 do
  local v = struct.unpack('<I4', vals, i)
  local c = struct.unpack('<I4', counts, i)
  redis.call('APPEND', ARGV[1] .. string.format('%x', v), string.sub(data, off, off + 4 * c - 1))
  off = off + 4 * c
end
return #vals / 4
"""
# Strip the members from their buckets (every copy); delete a bucket left empty; return the
# number of members dropped.
_REMOVE_LUA = """
local vals, counts, data = ARGV[2], ARGV[3], ARGV[4]
local off = 1
local dropped = 0
for i = 1, #vals, 4 do
  local v = struct.unpack('<I4', vals, i)
  local c = struct.unpack('<I4', counts, i)
  local key = ARGV[1] .. string.format('%x', v)
  local cur = redis.call('GET', key)
  if cur then
    local drop = {}
    for j = off, off + 4 * c - 1, 4 do drop[string.sub(data, j, j + 3)] = true end
    local keep = {}
    local n = 0
    for j = 1, #cur, 4 do
      local m = string.sub(cur, j, j + 3)
      if drop[m] then dropped = dropped + 1 else n = n + 1; keep[n] = m end
    end
    if n == 0 then redis.call('DEL', key)
    elseif n * 4 < #cur then redis.call('SET', key, table.concat(keep)) end
  end
  off = off + 4 * c
end
return dropped
"""
# Zero reverse records: KEYS[1] is a record group, ARGV[1] the record size, ARGV[2..] the
# byte offsets of the records. Deletes the group once every record in it is zero.
_DROP_RECORDS_LUA = """
local zero = string.rep('\\0', tonumber(ARGV[1]))
local size = redis.call('STRLEN', KEYS[1])
for i = 2, #ARGV do
  local at = tonumber(ARGV[i])
  if at < size then redis.call('SETRANGE', KEYS[1], at, zero) end
end
local data = redis.call('GET', KEYS[1])
if data and not string.find(data, '[^%z]') then redis.call('DEL', KEYS[1]) end
return 1
"""

# --------------------------------------------------------------------------- kernels
@numba.njit(nogil=True, cache=True)
def _band_values(proj: np.ndarray, bands: int, rows: int, out: np.ndarray) -> None:
    """``out[i, b]`` = the ``rows`` sign bits of ``proj[i, b*rows:(b+1)*rows]``, bit j = row j."""
    for i in range(proj.shape[0]):
        for b in range(bands):
            v = np.uint32(0)
            for j in range(rows):
                if proj[i, b * rows + j] > 0:
                    v |= np.uint32(1) << np.uint32(j)
            out[i, b] = v


@numba.njit(nogil=True, cache=True)
def _probe_keys(
    h: np.ndarray, margins: np.ndarray, probes: int, out: np.ndarray, nkeys: np.ndarray
) -> None:
    """Bucket values of each (query, band): its own, then ``probes`` perturbed ones."""
    nq, bands = h.shape
    flips = np.empty(probes + 1, dtype=np.uint64)
    for i in range(nq):
        for b in range(bands):
            nf = _probe_flips(margins[i, b], probes, flips)
            for p in range(nf):
                out[i, b, p] = np.uint32(np.uint64(h[i, b]) ^ flips[p])
            nkeys[i, b] = nf


@numba.njit(nogil=True, cache=True)
def _top_by_count(
    slots: np.ndarray, cnt: np.ndarray, c: int, m: int, bands: int, hist: np.ndarray
) -> np.ndarray:
    """Positions (into the first ``c`` entries) of the ``min(m, c)`` entries with the most
    collisions, ties by lower slot, best first."""
    take = min(m, c)
    hist[:] = 0
    for j in range(c):
        hist[cnt[j]] += 1
    cut = bands  # rows above the cut all fit; rows at it fill what is left by lower slot
    above = 0
    while above + hist[cut] < take:
        above += hist[cut]
        cut -= 1
    need = take - above
    limit = np.iinfo(np.int64).max
    if need < hist[cut]:
        tied = np.empty(hist[cut], dtype=np.int64)
        nt = 0
        for j in range(c):
            if cnt[j] == cut:
                tied[nt] = slots[j]
                nt += 1
        limit = np.sort(tied)[need - 1] if need > 0 else -1
    chosen = np.empty(take, dtype=np.int64)
    keys = np.empty(take, dtype=np.int64)
    nc = 0
    for j in range(c):
        if cnt[j] > cut or (cnt[j] == cut and slots[j] <= limit):
            chosen[nc] = j
            keys[nc] = (bands - cnt[j]) * (np.int64(1) << 40) + slots[j]
            nc += 1
    return chosen[np.argsort(keys)]


@numba.njit(nogil=True, cache=True)
def _scan(
    key_index: np.ndarray, offsets: np.ndarray, mslots: np.ndarray, n: int,
    mask: np.ndarray, use_mask: bool, maxc: int, mode: int, m: int, q: np.ndarray,
    vecs: np.ndarray, l2: bool, hs: np.ndarray, hi: np.ndarray, sel_slot: np.ndarray,
    sel_cnt: np.ndarray, ncand: np.ndarray,
) -> None:
    """Candidates of each query from its fetched buckets, then ranked.

    ``key_index[q, b, p]`` indexes the fetched buckets (``-1``: none); bucket ``u`` holds
    slots ``mslots[offsets[u]:offsets[u + 1]]`` (``-1``: a row key this handle does not
    know). A candidate is an allowed slot in any probed bucket; it counts the bands it
    appears in (at most once per band). ``ncand[q]`` gets the number of candidates.

    ``mode`` 0: the ``m`` most-colliding into ``sel_slot``/``sel_cnt``. ``mode`` 1: exact
    scores from ``vecs`` (indexed by slot) pushed to the heaps ``(hs, hi)``, for every
    candidate (``m == 0``) or the ``m`` most-colliding. ``mode`` 2: like 0, for rescoring
    by the caller.
    """
    nq, bands, nprobe = key_index.shape
    # st[s, 0]: the last (query, band) mark that saw slot s; st[s, 1]: its candidate position
    st = np.full((n, 2), -1, dtype=np.int32)
    buf_slot = np.empty(maxc, dtype=np.int64)
    buf_cnt = np.empty(maxc, dtype=np.int64)
    hist = np.zeros(bands + 2, dtype=np.int64)
    for qi in range(nq):
        c = 0
        first = np.int32(qi * bands)
        for b in range(bands):
            mark = np.int32(first + b)
            for p in range(nprobe):
                u = key_index[qi, b, p]
                if u < 0:
                    continue
                for e in range(offsets[u], offsets[u + 1]):
                    s = mslots[e]
                    if s < 0 or (use_mask and not mask[s]):
                        continue
                    last = st[s, 0]
                    if last == mark:  # a duplicate member within this band
                        continue
                    st[s, 0] = mark
                    if last < first:  # first time this query sees it
                        st[s, 1] = c
                        buf_slot[c] = s
                        buf_cnt[c] = 1
                        c += 1
                    else:
                        buf_cnt[st[s, 1]] += 1
        ncand[qi] = c
        if mode == 1:
            qr = q[qi]
            qn = exact_score(qr, 0.0, qr, False)
            if m == 0 or c <= m:
                for j in range(c):
                    push(hs, hi, qi, exact_score(qr, qn, vecs[buf_slot[j]], l2), buf_slot[j])
            else:
                for j in _top_by_count(buf_slot, buf_cnt, c, m, bands, hist):
                    push(hs, hi, qi, exact_score(qr, qn, vecs[buf_slot[j]], l2), buf_slot[j])
        elif c:
            order = _top_by_count(buf_slot, buf_cnt, c, m, bands, hist)
            for t in range(order.shape[0]):
                sel_slot[qi, t] = buf_slot[order[t]]
                sel_cnt[qi, t] = buf_cnt[order[t]]


@numba.njit(nogil=True, cache=True)
def _rescore(
    q: np.ndarray, vecs: np.ndarray, rows: np.ndarray, sel_slot: np.ndarray, l2: bool,
    hs: np.ndarray, hi: np.ndarray,
) -> None:
    """Exact top-k of each query over its selected slots (``-1`` ends a row);
    ``vecs[rows[q, t]]`` is the vector of ``sel_slot[q, t]``."""
    for qi in range(sel_slot.shape[0]):
        qr = q[qi]
        qn = exact_score(qr, 0.0, qr, False)
        for t in range(sel_slot.shape[1]):
            s = sel_slot[qi, t]
            if s < 0:
                break
            push(hs, hi, qi, exact_score(qr, qn, vecs[rows[qi, t]], l2), s)


@numba.njit(nogil=True, cache=True)
def _hamming(qh: np.ndarray, xh: np.ndarray) -> np.ndarray:
    """Hamming distances between band-value rows, int64 (nq, n)."""
    out = np.zeros((qh.shape[0], xh.shape[0]), dtype=np.int64)
    for i in range(qh.shape[0]):
        for j in range(xh.shape[0]):
            d = 0
            for b in range(qh.shape[1]):
                d += popcount64(np.uint64(qh[i, b] ^ xh[j, b]))
            out[i, j] = d
    return out


# --------------------------------------------------------------------------- helpers
def _split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``url`` without ``user:password@``, and the user and password it held."""
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme or (parts.username is None and parts.password is None):
        return url, None, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    clean = urllib.parse.urlunsplit(
        (parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    user = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password else None
    return clean, user, password


def _check_url(url: str, owner: str) -> str:
    """Validate the form of a Redis URL; a bare path is a Unix socket."""
    if any(c.isspace() for c in url) or not url:
        raise InvalidParameterError(f"{owner}: url {url!r} is not a Redis URL")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if not scheme:
        return f"unix://{url}"
    if scheme not in ("redis", "rediss", "unix"):
        raise InvalidParameterError(
            f"{owner}: url {url!r} has scheme {scheme!r}; expected redis://, rediss:// or "
            "unix:// (or a Unix socket path)"
        )
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port
    except ValueError as e:
        raise InvalidParameterError(f"{owner}: url {url!r} is malformed: {e}") from e
    if scheme != "unix" and not parts.hostname:
        raise InvalidParameterError(f"{owner}: url {url!r} names no host")
    return url


@contextlib.contextmanager
def _redis_errors(what: str, where: str) -> Iterator[None]:
    """Translate redis-py errors: unreachable server -> ServiceUnavailableError."""
    try:
        import redis.exceptions as rex
    except ImportError as e:
        raise NotSupportedError(
            "redis_lsh needs the redis client: pip install 'vecindex[redis]'") from e

    unavailable: tuple[type[BaseException], ...] = (
        rex.ConnectionError, rex.TimeoutError, rex.BusyLoadingError, ConnectionError,
        TimeoutError,
    )
    cluster_down = tuple(
        getattr(rex, name) for name in ("ClusterDownError", "TryAgainError",
                                        "MasterDownError", "ClusterError")
        if hasattr(rex, name)
    )
    try:
        yield
    except unavailable + cluster_down as e:
        raise ServiceUnavailableError(
            f"redis_lsh: {what} failed, Redis at {where} is unavailable "
            f"({type(e).__name__}: {e}); nothing visible changed, retry once it is back"
        ) from e
    except rex.RedisError as e:
        raise BackendError(f"redis_lsh: {what} failed at {where}: {e}") from e


# --------------------------------------------------------------------------- the index
@register(
    "redis_lsh",
    params=[
        Param("url", str, "",
              "redis://host:port/db, rediss://..., unix:///path.sock or a socket path; "
              f"'' = ${URL_ENV}, else {DEFAULT_URL}; credentials never saved"),
        Param("prefix", str, "vecindex", "key prefix in Redis ([A-Za-z0-9_.:/-], <= 128)"),
        Param("num_bands", int, 16, "bands (hash tables) of the signature", low=1, high=1024),
        Param("rows_per_band", int, 8, "bits per band (bucket key width)", low=1, high=32),
        Param("seed", int, 0, "seed of the random hyperplanes", low=0, high=2**32 - 1),
        Param("keep_vectors", bool, False,
              "keep float32 originals in the index (exact scores, get_vectors)"),
    ],
    search_params=[  # sorted: errors list them in this order
        Param("min_score", float, -_FLT_MAX,
              "drop results scoring below this (exact scores when reranked)",
              low=-_FLT_MAX, high=_FLT_MAX),
        Param("num_probes", int, 4,
              "extra buckets per band, least-confident bits flipped first", low=0, high=4096),
        Param("rerank", int, 0,
              "score only this many most-colliding candidates exactly (needs vectors); "
              "0 = all of them when vectors are available", low=0, high=1 << 20),
    ],
)
class RedisLSH(VectorIndex):
    """Banded random-projection LSH with its buckets in Redis or Redis Cluster.

    See the module docstring for the Redis layout, write ordering and handle semantics.

    Parameters
    ----------
    dim : int
    metric : {"cosine", "ip", "l2"}
        Buckets follow the angle between vectors for every metric; exact scores use the
        metric. Without vectors the score is the cosine that the collision count estimates
        (``2 s - 2`` for l2), an ordering rather than an estimate for unnormalised ``ip``.
    url : str, default ""
        Where Redis is. ``""`` reads ``$VECINDEX_REDIS_URL`` at construction, else
        ``redis://localhost:6379/0``. A cluster is detected (``INFO cluster``) and used
        through ``RedisCluster``. A password in the URL is used but never printed in the spec
        or saved: after ``load`` it comes from ``$VECINDEX_REDIS_PASSWORD`` (and
        ``$VECINDEX_REDIS_USERNAME``).
    prefix : str, default "vecindex"
        Key prefix; each index adds its own random namespace below it.
    num_bands, rows_per_band : int, default 16, 8
        Signature shape (``num_bands * rows_per_band`` hyperplanes). See
        :func:`vecindex_core.lsh_tuning.optimal_bands_rows`.
    seed : int
    keep_vectors : bool, default False
        Keep the float32 originals locally (``rerank``, ``get_vectors``, exact filtered
        search).
    min_score, num_probes, rerank
        Search defaults (see the registry declarations).
    vector_fetch_fn : callable, optional
        ``fn(slots: int64 ndarray) -> array (len(slots), dim)``: the stored vectors of
        positional slots, from the caller's system of record (under an ``IdMapIndex``, map
        slots to ids with ``ids[slots]``). Used for exact scores when ``keep_vectors`` is
        off. Not saved: set it again after ``load`` (attribute ``vector_fetch_fn``).

    Attributes
    ----------
    projection_ : float32 (dim, num_bands * rows_per_band)
    namespace : str
    url : str
        The resolved URL, without credentials.
    """

    def __init__(
        self, dim: int, metric: Metric = "cosine", *,
        vector_fetch_fn: VectorFetchFn | None = None, **params: Any,
    ) -> None:
        user = password = None
        raw_url = params.get("url")
        if isinstance(raw_url, str) and raw_url:
            params["url"], user, password = _split_credentials(raw_url)
        super().__init__(dim, metric, **params)
        owner = f"index {self.kind.name!r}"
        prefix = str(self.params["prefix"])
        if not _PREFIX_RE.fullmatch(prefix):
            raise InvalidParameterError(
                f"{owner}: prefix {prefix!r} must be 1-128 characters of [A-Za-z0-9_.:/-]"
            )
        self._vector_fetch_fn: VectorFetchFn | None = None
        self.vector_fetch_fn = vector_fetch_fn
        self._check_rerank(self.search_defaults, construction=True)
        url = str(self.params["url"])
        if not url:
            url, env_user, env_password = _split_credentials(os.environ.get(URL_ENV, DEFAULT_URL))
            user, password = user or env_user, password or env_password
        self.url = _check_url(url, owner)
        self._auth = (user, password)
        self.namespace = secrets.token_hex(8)
        self.projection_ = random_projection(
            self.dim, self.num_bands * self.rows_per_band, "gaussian", int(self.params["seed"]))
        self._rowkeys = np.empty(0, dtype=np.uint32)
        self._n = 0
        self._table_keys, self._table_vals = ht_new(16)
        self._vectors = np.empty((0, self.dim), dtype=np.float32)
        self._dirty: list[npt.NDArray[np.uint64]] = []
        self._client: Any = None
        self._cluster = False
        self._lock = threading.Lock()
        self._meta_written = False
        self._count_lut: npt.NDArray[np.float32] | None = None
        self._prefixes = [f"{self._tag(f'.{b}')}:" for b in range(self.num_bands)]

    # ----------------------------------------------------------------- properties
    @property
    def num_bands(self) -> int:
        """Bands of the signature."""
        return int(self.params["num_bands"])

    @property
    def rows_per_band(self) -> int:
        """Bits per band."""
        return int(self.params["rows_per_band"])

    @property
    def ntotal(self) -> int:
        return self._n

    @property
    def keeps_vectors(self) -> bool:
        return bool(self.params["keep_vectors"])

    @property
    def has_vectors(self) -> bool:
        """Whether exact scores are available (kept vectors or a ``vector_fetch_fn``)."""
        return self.keeps_vectors or self._vector_fetch_fn is not None

    @property
    def vector_fetch_fn(self) -> VectorFetchFn | None:
        """``fn(slots) -> (len(slots), dim)`` vectors from the caller's store, or None."""
        return self._vector_fetch_fn

    @vector_fetch_fn.setter
    def vector_fetch_fn(self, fn: VectorFetchFn | None) -> None:
        if fn is not None and not callable(fn):
            raise InvalidArgumentError(
                f"vector_fetch_fn must be callable or None, got {type(fn).__name__}")
        self._vector_fetch_fn = fn

    @property
    def rowkeys(self) -> npt.NDArray[np.uint32]:
        """Read-only uint32 row keys of slots ``0..ntotal-1`` (the members stored in Redis)."""
        view = self._rowkeys[: self._n]
        view.flags.writeable = False
        return view

    @property
    def is_cluster(self) -> bool:
        """Whether the server is a Redis Cluster (known after the first command)."""
        self._redis()
        return self._cluster

    def memory_bytes(self) -> int:
        """Local bytes: projection, slot table, row keys and kept vectors (Redis memory:
        :meth:`stats`)."""
        return int(self.projection_.nbytes + self._rowkeys.nbytes + self._table_keys.nbytes
                   + self._table_vals.nbytes + self._vectors.nbytes)

    # ----------------------------------------------------------------- keys
    def _tag(self, suffix: str = "") -> str:
        return f"{self.params['prefix']}:{{{self.namespace}{suffix}}}"

    def _bucket_prefixes(self) -> list[str]:
        """Key prefix of each band's buckets (the namespace changes only in clear/load)."""
        if not self._prefixes[0].startswith(self._tag(".0")):
            self._prefixes = [f"{self._tag(f'.{b}')}:" for b in range(self.num_bands)]
        return self._prefixes

    def _group_key(self, group: int) -> str:
        return self._tag(f".r{group:x}")

    @property
    def _counter_key(self) -> str:
        return f"{self._tag()}:next"

    @property
    def _meta_key(self) -> str:
        return f"{self._tag()}:meta"

    @property
    def _sig_dtype(self) -> type[np.unsignedinteger[Any]]:
        r = self.rows_per_band
        return np.uint8 if r <= 8 else np.uint16 if r <= 16 else np.uint32

    # ----------------------------------------------------------------- connection
    def _redis(self) -> Any:
        """The client, connected on first use (a cluster is detected and used as one)."""
        if self._client is not None:
            return self._client
        with self._lock:
            if self._client is None:
                self._client, self._cluster = self._connect()
        return self._client

    def _connect(self) -> tuple[Any, bool]:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as e:
            raise NotSupportedError(
                "redis_lsh needs the redis client: pip install 'vecindex[redis]'") from e
        user, password = self._auth
        kw: dict[str, Any] = {
            "socket_connect_timeout": CONNECT_TIMEOUT, "socket_timeout": SOCKET_TIMEOUT,
            "password": password or os.environ.get(PASSWORD_ENV) or None,
            "username": user or os.environ.get(USERNAME_ENV) or None,
        }
        with _redis_errors("connecting", self.url):
            # writes are not idempotent (APPEND): never let the client resend them
            client = redis.Redis.from_url(self.url, retry=Retry(NoBackoff(), 0), **kw)
            try:
                enabled = int(client.info("cluster").get("cluster_enabled", 0))
            except redis.exceptions.ResponseError:  # INFO disabled (managed service)
                enabled = 0
            if not enabled:
                return client, False
            client.close()
            cluster = redis.RedisCluster.from_url(self.url, **kw)
            return cluster, True

    def close(self) -> None:
        """Close the connection (reopened on the next use)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def _pipeline(self, transaction: bool) -> Any:
        r = self._redis()
        return r.pipeline(transaction=transaction and not self._cluster)

    # ----------------------------------------------------------------- hashing
    def band_values(self, x: FloatMatrix) -> tuple[npt.NDArray[np.uint32], FloatMatrix]:
        """Band values (uint32 ``(n, num_bands)``; bit ``j`` of band ``b`` is the sign of
        hyperplane ``b * rows_per_band + j``) and projections (float32
        ``(n, num_bands * rows_per_band)``) of prepared vectors ``x``."""
        proj = np.ascontiguousarray(x @ self.projection_, dtype=np.float32)
        h = np.empty((x.shape[0], self.num_bands), dtype=np.uint32)
        _band_values(proj, self.num_bands, self.rows_per_band, h)
        return h, proj

    # ----------------------------------------------------------------- add
    def _add(self, x: FloatMatrix) -> None:
        n = x.shape[0]
        h, _ = self.band_values(x)
        with _redis_errors("add", self.url):
            self._cleanup_dirty()
            end = int(self._redis().incrby(self._counter_key, n))
        start = end - n
        if end > 2**32:
            raise BackendError(
                f"redis_lsh namespace {self.namespace} has handed out all 2**32 row keys; "
                "rebuild the index into a new one"
            )
        rk = np.arange(start, end, dtype=np.uint64)
        try:
            with _redis_errors("add", self.url):
                for a in range(0, n, WRITE_CHUNK):
                    self._write_rows(rk[a:a + WRITE_CHUNK], h[a:a + WRITE_CHUNK])
        except BaseException:
            self._dirty.append(rk)
            raise
        self._commit_add(rk, x)

    def _write_rows(self, rk: npt.NDArray[np.uint64], h: npt.NDArray[np.uint32]) -> None:
        """Reverse records, then bucket appends (one transaction in standalone Redis)."""
        pipe = self._pipeline(transaction=True)
        if not self._meta_written:
            pipe.hset(self._meta_key, mapping={
                "dim": self.dim, "metric": self.metric, "num_bands": self.num_bands,
                "rows_per_band": self.rows_per_band, "seed": int(self.params["seed"]),
                "format": _FORMAT,
            })
        rec = self._record_size
        records = np.empty((rk.size, rec), dtype=np.uint8)
        records[:, 0] = 1
        records[:, 1:] = h.astype(self._sig_dtype).view(np.uint8).reshape(rk.size, rec - 1)
        raw = records.tobytes()
        groups = (rk >> np.uint64(GROUP_BITS)).astype(np.int64)
        cuts = np.flatnonzero(np.diff(groups)) + 1
        for a, b in zip(np.r_[0, cuts].tolist(), np.r_[cuts, rk.size].tolist(), strict=True):
            offset = (int(rk[a]) & ((1 << GROUP_BITS) - 1)) * rec  # rows a..b are consecutive
            pipe.setrange(self._group_key(int(groups[a])), offset, raw[a * rec:b * rec])
        if self._cluster:  # no cross-slot transaction: reverse records land first
            pipe.execute()
            pipe = self._pipeline(transaction=False)
        members = rk.astype("<u4")
        for band, pre in enumerate(self._bucket_prefixes()):
            pipe.execute_command("EVAL", _APPEND_LUA, 1,
                                 *self._band_args(pre, h[:, band], members))
        pipe.execute()
        self._meta_written = True

    @staticmethod
    def _band_args(pre: str, values: npt.NDArray[np.uint32],
                   members: npt.NDArray[np.uint32]) -> tuple[str, str, bytes, bytes, bytes]:
        """Arguments of a bucket script for one band: a routing key, the band's key prefix,
        the distinct bucket values, each one's member count, and the members grouped by
        bucket."""
        order = np.argsort(values, kind="stable")
        vals = values[order]
        starts = np.flatnonzero(np.r_[True, vals[1:] != vals[:-1]])
        counts = np.diff(np.r_[starts, vals.size])
        uniq = vals[starts]
        return (f"{pre}{int(uniq[0]):x}", pre, uniq.astype("<u4").tobytes(),
                counts.astype("<u4").tobytes(), members[order].tobytes())

    def _commit_add(self, rk: npt.NDArray[np.uint64], x: FloatMatrix) -> None:
        n0, n1 = self._n, self._n + rk.size
        if n1 > self._rowkeys.shape[0]:
            cap = max(n1, 2 * self._rowkeys.shape[0], 64)
            grown = np.empty(cap, dtype=np.uint32)
            grown[:n0] = self._rowkeys[:n0]
            self._rowkeys = grown
            if self.keeps_vectors:
                vecs = np.empty((cap, self.dim), dtype=np.float32)
                vecs[:n0] = self._vectors[:n0]
                self._vectors = vecs
        self._rowkeys[n0:n1] = rk
        if self.keeps_vectors:
            self._vectors[n0:n1] = x
        self._table_insert(rk, np.arange(n0, n1, dtype=np.int64))
        self._n = n1

    def _table_insert(self, keys: npt.NDArray[np.uint64], slots: npt.NDArray[np.int64]) -> None:
        need = self._n + keys.size
        if 2 * need > self._table_keys.shape[0]:
            cap = self._table_keys.shape[0]
            while 2 * need > cap:
                cap *= 2
            live = self._table_keys != np.uint64(MISSING)
            old_k, old_v = self._table_keys[live], self._table_vals[live]
            self._table_keys, self._table_vals = ht_new(cap)
            ht_insert(self._table_keys, self._table_vals, old_k, old_v)
        ht_insert(self._table_keys, self._table_vals, keys, slots)

    def _slots_of(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        out = np.empty(keys.shape[0], dtype=np.int64)
        ht_get(self._table_keys, self._table_vals, keys, out)
        return out

    # ----------------------------------------------------------------- remove
    def _remove(self, slots: SlotArray, moves: Moves) -> None:
        rk = self._rowkeys[slots].astype(np.uint64)
        with _redis_errors("remove", self.url):
            self._cleanup_dirty()
            self._delete_rows(rk)
        ht_delete(self._table_keys, self._table_vals, rk)
        moved = self._rowkeys[moves.src]
        self._rowkeys[moves.dst] = moved
        ht_set(self._table_keys, self._table_vals, moved.astype(np.uint64), moves.dst)
        if self.keeps_vectors:
            self._vectors[moves.dst] = self._vectors[moves.src]
        self._n -= slots.size

    @property
    def _record_size(self) -> int:
        """Bytes of one reverse record: a presence byte, then the band values."""
        return 1 + self.num_bands * np.dtype(self._sig_dtype).itemsize

    def _read_sigs(
        self, rk: npt.NDArray[np.uint64]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.uint32]]:
        """Band values of row keys from the reverse records: (found mask, (n, bands))."""
        bands, rec = self.num_bands, self._record_size
        out = np.zeros((rk.size, bands), dtype=np.uint32)
        if rk.size == 0:
            return np.zeros(0, dtype=np.bool_), out
        groups = (rk >> np.uint64(GROUP_BITS)).astype(np.int64)
        uniq, inv = np.unique(groups, return_inverse=True)
        pipe = self._pipeline(transaction=False)
        for g in uniq.tolist():
            pipe.get(self._group_key(g))
        blobs = pipe.execute()
        size = rec << GROUP_BITS  # pad every group to its full 128 records
        table = np.zeros((uniq.size, size), dtype=np.uint8)
        for i, blob in enumerate(blobs):
            if blob:
                table[i, : min(len(blob), size)] = np.frombuffer(blob[:size], dtype=np.uint8)
        within = (rk & np.uint64((1 << GROUP_BITS) - 1)).astype(np.int64)
        recs = table.reshape(uniq.size, 1 << GROUP_BITS, rec)[inv, within]
        found = recs[:, 0] == 1
        sig = np.ascontiguousarray(recs[:, 1:]).view(self._sig_dtype).reshape(rk.size, bands)
        out[:] = sig
        return found, out

    def _delete_rows(self, rk: npt.NDArray[np.uint64]) -> int:
        """Strip row keys from their buckets, then drop their reverse records; returns the
        bucket members dropped."""
        found, h = self._read_sigs(rk)
        if not found.any():
            return 0
        rk, h = rk[found], h[found]
        members = rk.astype("<u4")
        pipe = self._pipeline(transaction=True)
        for band, pre in enumerate(self._bucket_prefixes()):
            pipe.execute_command("EVAL", _REMOVE_LUA, 1,
                                 *self._band_args(pre, h[:, band], members))
        if self._cluster:  # reverse records go last, so an interrupted remove can be retried
            dropped = sum(int(v) for v in pipe.execute())
            pipe = self._pipeline(transaction=False)
            self._drop_records(pipe, rk)
            pipe.execute()
            return dropped
        self._drop_records(pipe, rk)
        return sum(int(v) for v in pipe.execute()[: self.num_bands])

    def _drop_records(self, pipe: Any, rk: npt.NDArray[np.uint64]) -> None:
        rec = self._record_size
        srk = np.sort(rk)
        groups = (srk >> np.uint64(GROUP_BITS)).astype(np.int64)
        offsets = ((srk & np.uint64((1 << GROUP_BITS) - 1)).astype(np.int64) * rec).tolist()
        cuts = np.flatnonzero(np.diff(groups)) + 1
        for a, b in zip(np.r_[0, cuts].tolist(), np.r_[cuts, srk.size].tolist(), strict=True):
            pipe.execute_command("EVAL", _DROP_RECORDS_LUA, 1, self._group_key(int(groups[a])),
                                 rec, *offsets[a:b])

    def _cleanup_dirty(self) -> None:
        """Remove what failed adds may have written (their row keys are never live)."""
        while self._dirty:
            self._delete_rows(self._dirty[0])
            self._dirty.pop(0)

    # ----------------------------------------------------------------- search
    def _check_rerank(self, params: Mapping[str, Any], construction: bool = False) -> int:
        rerank = int(params.get("rerank", 0))
        if rerank and not (self.keeps_vectors or (not construction and self.has_vectors)):
            how = "" if construction else " or a vector_fetch_fn"
            raise InvalidParameterError(
                f"{self.spec}: rerank={rerank} needs keep_vectors=true{how} (this index keeps "
                "only row keys; pass rerank per call when vectors come from vector_fetch_fn)"
            )
        return rerank

    def _exact_route(self, mask: npt.NDArray[np.bool_] | None) -> SlotArray | None:
        if mask is None or not self.has_vectors:
            return None
        allowed = np.flatnonzero(mask)
        return allowed if allowed.size <= max(EXACT_MASK_ROWS, self._n // 64) else None

    def _fetch(self, slots: SlotArray) -> FloatMatrix:
        """Prepared vectors of sorted unique ``slots`` (kept, or from ``vector_fetch_fn``)."""
        if self.keeps_vectors:
            return self._vectors[slots]
        fn = self._vector_fetch_fn
        if fn is None:
            raise NotSupportedError(f"{self.spec} has no vectors to score exactly")
        got = self.prepare(fn(slots.copy()), name="vector_fetch_fn(slots)")
        if got.shape[0] != slots.size:
            raise InvalidArgumentError(
                f"vector_fetch_fn returned {got.shape[0]} vectors for {slots.size} slots")
        return got

    def _exact(self, q: FloatMatrix, k: int, allowed: SlotArray) -> Result:
        rows = self._fetch(allowed)
        l2 = self.metric == "l2"
        return dense_topk(q, rows, k, l2=l2, data_sq_norms=sq_norms(rows) if l2 else None,
                          slot_map=allowed)

    def _signature_route(self, q: FloatMatrix, k: int, allowed: SlotArray) -> Result:
        """Top-``k`` of ``allowed`` rows by Hamming distance of the signatures (from Redis)."""
        qh, _ = self.band_values(q)
        with _redis_errors("search", self.url):
            found, xh = self._read_sigs(self._rowkeys[allowed].astype(np.uint64))
        rows = allowed[found]
        dist = _hamming(qh, xh[found]) if rows.size else np.zeros((q.shape[0], 0), np.int64)
        take = min(k, rows.size)
        order = np.argsort(dist, axis=1, kind="stable")[:, :take]
        bits = self.num_bands * self.rows_per_band
        cos = np.cos(np.pi * np.take_along_axis(dist, order, axis=1) / bits)
        scores = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        slots = np.full((q.shape[0], k), -1, dtype=np.int64)
        scores[:, :take] = 2 * cos - 2 if self.metric == "l2" else cos
        slots[:, :take] = rows[order]
        return scores, slots, np.full(q.shape[0], take, dtype=np.int64)

    def _search(
        self, q: FloatMatrix, k: int, params: Mapping[str, Any],
        mask: npt.NDArray[np.bool_] | None,
    ) -> Result:
        rerank = self._check_rerank(params)
        allowed_count = self._n if mask is None else int(np.count_nonzero(mask))
        exact = self._exact_route(mask)
        if exact is not None:
            res = self._exact(q, k, exact)
        elif mask is not None and allowed_count <= FALLBACK_ROWS:
            res = self._signature_route(q, k, np.flatnonzero(mask))
        else:
            parts = [self._bucket_search(q[a:a + QUERY_CHUNK], k, params, rerank, mask)[:3]
                     for a in range(0, q.shape[0], QUERY_CHUNK)]
            res = tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[assignment]
            short = np.flatnonzero(res[2] < min(k, allowed_count))
            if short.size and allowed_count <= FALLBACK_ROWS:
                allowed = np.arange(self._n) if mask is None else np.flatnonzero(mask)
                fs, fi, fc = (self._exact(q[short], k, allowed) if self.has_vectors
                              else self._signature_route(q[short], k, allowed))
                res[0][short], res[1][short], res[2][short] = fs, fi, fc
        return self._cut(res, float(params["min_score"]))

    @staticmethod
    def _cut(res: Result, min_score: float) -> Result:
        scores, slots, _ = res
        if min_score <= -_FLT_MAX:
            return res
        drop = (scores < np.float32(min_score)) | (slots < 0)
        slots = np.where(drop, -1, slots)
        scores = np.where(drop, np.float32(-np.inf), scores).astype(np.float32)
        return scores, slots, np.count_nonzero(~drop, axis=1).astype(np.int64)

    def search_stats(self, q: object, k: int, *, params: Any = None,
                     mask: object = None) -> tuple[SearchResult, npt.NDArray[np.int64]]:
        """:meth:`search` through the buckets only (never the exact, signature or fallback
        routes), also reporting each query's number of allowed candidates.

        Returns
        -------
        result : SearchResult
            Padded with ``-1`` / ``-inf`` where the buckets held fewer than ``k`` rows.
        candidates : ndarray of int64, shape (nq,)
        """
        qp, kk, sp, m = self._search_args(q, k, params, mask)
        rerank = self._check_rerank(sp)
        if self._n == 0:
            empty = np.zeros(qp.shape[0], dtype=np.int64)
            return SearchResult(np.full((qp.shape[0], kk), -np.inf, np.float32),
                                np.full((qp.shape[0], kk), -1, np.int64), empty), empty
        parts = [self._bucket_search(qp[a:a + QUERY_CHUNK], kk, sp, rerank, m)
                 for a in range(0, qp.shape[0], QUERY_CHUNK)]
        s, i, c, cand = (np.concatenate(p) for p in zip(*parts, strict=True))
        s, i, c = self._cut((s, i, c), float(sp["min_score"]))
        return SearchResult(s, i, c), cand

    def _bucket_search(
        self, q: FloatMatrix, k: int, params: Mapping[str, Any], rerank: int,
        mask: npt.NDArray[np.bool_] | None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64],
               npt.NDArray[np.int64]]:
        nq, bands, rows = q.shape[0], self.num_bands, self.rows_per_band
        n = self._n  # rows known when the search started (a concurrent add commits later)
        h, proj = self.band_values(q)
        probes = min(int(params["num_probes"]), (1 << min(rows, 20)) - 1)
        if probes:
            pkeys = np.zeros((nq, bands, probes + 1), dtype=np.uint32)
            nkeys = np.zeros((nq, bands), dtype=np.int64)
            margins = np.ascontiguousarray(np.abs(proj).reshape(nq, bands, rows))
            _probe_keys(h, margins, probes, pkeys, nkeys)
            valid = np.arange(probes + 1)[None, None, :] < nkeys[:, :, None]
        else:
            pkeys = h[:, :, None].copy()
            valid = np.ones(pkeys.shape, dtype=np.bool_)
        # the distinct buckets of the batch, sorted by (band, value): one MGET per band (its
        # keys share a cluster slot), or one for all in standalone Redis
        band_of = np.broadcast_to(np.arange(bands, dtype=np.uint64)[None, :, None], pkeys.shape)
        uniq, inv = np.unique((band_of[valid] << np.uint64(32)) | pkeys[valid],
                              return_inverse=True)
        key_index = np.full(pkeys.shape, -1, dtype=np.int64)
        key_index[valid] = inv
        total = uniq.size
        prefixes = self._bucket_prefixes()
        keys = [f"{prefixes[b]}{v:x}" for b, v in zip((uniq >> np.uint64(32)).tolist(),
                                                      (uniq & np.uint64(0xFFFFFFFF)).tolist(),
                                                      strict=True)]
        pipe = self._pipeline(transaction=False)
        if self._cluster:
            cuts = np.searchsorted(uniq >> np.uint64(32), np.arange(bands + 1, dtype=np.uint64))
            for a, e in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
                if e > a:
                    pipe.execute_command("MGET", *keys[a:e])
        else:
            pipe.execute_command("MGET", *keys)
        with _redis_errors("search", self.url):
            replies = pipe.execute()
        blobs = [v for rep in replies for v in rep]
        lens = np.fromiter((len(v) if v else 0 for v in blobs), dtype=np.int64, count=total)
        offsets = np.zeros(total + 1, dtype=np.int64)
        np.cumsum(lens // 4, out=offsets[1:])
        data = np.frombuffer(b"".join(v for v in blobs if v), dtype="<u4")
        mslots = self._slots_of(data.astype(np.uint64))
        mslots[mslots >= n] = -1
        per_key = offsets[1:] - offsets[:-1]
        bound = np.where(key_index >= 0, per_key[np.maximum(key_index, 0)], 0).sum(axis=(1, 2))
        maxc = max(int(bound.max()), 1)
        use_mask = mask is not None
        m = mask if mask is not None else np.ones(1, dtype=np.bool_)
        ncand = np.zeros(nq, dtype=np.int64)
        l2 = self.metric == "l2"
        hs, hi = init_heaps(nq, k)
        if self.keeps_vectors:  # exact scores inside the scan
            none = np.zeros((1, 1), dtype=np.int64)
            _scan(key_index, offsets, mslots, n, m, use_mask, maxc, 1, rerank, q,
                  self._vectors, l2, hs, hi, none, none, ncand)
            scores, slots, counts = finalize_heaps(hs, hi)
            return scores, slots, counts, ncand
        width = k if not self.has_vectors else (rerank or maxc)
        width = min(width, maxc)
        sel_slot = np.full((nq, width), -1, dtype=np.int64)
        sel_cnt = np.zeros((nq, width), dtype=np.int64)
        _scan(key_index, offsets, mslots, n, m, use_mask, maxc, 0, width, q,
              np.zeros((1, 1), np.float32), l2, hs, hi, sel_slot, sel_cnt, ncand)
        if not self.has_vectors:  # ranked by collisions, scored by what they estimate
            scores = np.full((nq, k), -np.inf, dtype=np.float32)
            slots = np.full((nq, k), -1, dtype=np.int64)
            scores[:, :width] = np.where(sel_slot >= 0, self._count_scores()[sel_cnt], -np.inf)
            slots[:, :width] = sel_slot
            return scores, slots, np.minimum(ncand, k), ncand
        union = np.unique(sel_slot[sel_slot >= 0])
        vecs = self._fetch(union)
        rows_of = np.searchsorted(union, sel_slot)
        _rescore(q, vecs, rows_of, sel_slot, l2, hs, hi)
        scores, slots, counts = finalize_heaps(hs, hi)
        return scores, slots, counts, ncand

    def _count_scores(self) -> npt.NDArray[np.float32]:
        """Score of each collision count ``0..num_bands`` when no vectors are available."""
        if self._count_lut is None:
            s = similarity_from_collisions(np.arange(self.num_bands + 1), self.num_bands,
                                           self.rows_per_band)
            self._count_lut = (2 * s - 2 if self.metric == "l2" else s).astype(np.float32)
        return self._count_lut

    def _get_vectors(self, slots: SlotArray) -> FloatMatrix:
        return self._vectors[slots]

    # ----------------------------------------------------------------- maintenance
    def _scan_keys(self) -> Iterator[bytes]:
        match = f"{self.params['prefix']}:{{{self.namespace}*"
        yield from self._redis().scan_iter(match=match, count=1000)

    def clear(self) -> int:
        """Delete every Redis key of this index (``SCAN`` + ``UNLINK`` in batches of 500) and
        empty it; the handle moves to a fresh namespace, so other handles on the old one see
        no rows of the new. Returns the number of keys deleted.

        Raises
        ------
        ServiceUnavailableError
            Redis is unreachable; the local rows are kept (a retry finishes the job).
        """
        deleted = 0
        with _redis_errors("clear", self.url):
            r = self._redis()
            batch: list[bytes] = []
            for key in self._scan_keys():
                batch.append(key)
                if len(batch) >= 500:
                    deleted += self._unlink(r, batch)
                    batch = []
            if batch:
                deleted += self._unlink(r, batch)
        self.namespace = secrets.token_hex(8)
        self._meta_written = False
        self._dirty = []
        self._rowkeys = np.empty(0, dtype=np.uint32)
        self._vectors = np.empty((0, self.dim), dtype=np.float32)
        self._table_keys, self._table_vals = ht_new(16)
        self._n = 0
        return deleted

    def _unlink(self, r: Any, keys: Sequence[bytes]) -> int:
        if not self._cluster:
            return int(r.unlink(*keys))
        pipe = r.pipeline(transaction=False)
        for key in keys:
            pipe.unlink(key)
        return sum(int(v) for v in pipe.execute())

    def stats(self, *, sample: int = 200, seed: int = 0) -> dict[str, Any]:
        """What this index holds in Redis.

        Scans the namespace's keys (``SCAN``), reads every bucket's length (``STRLEN``,
        pipelined) and estimates memory with ``MEMORY USAGE`` on a seeded random sample of at
        most ``sample`` keys of each sort.

        Returns
        -------
        dict
            ``namespace``, ``url``, ``cluster``, ``ntotal`` (rows this handle knows),
            ``row_keys_issued``, ``bucket_count``, ``bucket_size`` (``min``, ``mean``,
            ``p50``, ``p90``, ``p99``, ``max`` members; ``histogram`` of powers of two),
            ``buckets_per_band`` (list), ``members`` (total bucket entries),
            ``reverse_keys``, ``memory_bytes`` (estimated total, and ``buckets``, ``reverse``,
            ``other``) and ``memory_per_row``.
        """
        if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or sample < 1:
            raise InvalidArgumentError(f"sample must be an integer >= 1, got {sample!r}")
        tag = f"{self.params['prefix']}:{{{self.namespace}".encode()
        buckets: list[bytes] = []
        reverse: list[bytes] = []
        other: list[bytes] = []
        with _redis_errors("stats", self.url):
            r = self._redis()
            for key in self._scan_keys():
                rest = key[len(tag):]
                if rest.startswith(b".r"):
                    reverse.append(key)
                elif rest.startswith(b"."):
                    buckets.append(key)
                else:
                    other.append(key)
            sizes = np.zeros(len(buckets), dtype=np.int64)
            band_of = np.zeros(len(buckets), dtype=np.int64)
            for a in range(0, len(buckets), 5000):
                pipe = r.pipeline(transaction=False)
                for key in buckets[a:a + 5000]:
                    pipe.strlen(key)
                sizes[a:a + 5000] = np.asarray(pipe.execute(), dtype=np.int64) // 4
            for i, key in enumerate(buckets):
                band_of[i] = int(key[len(tag) + 1:key.index(b"}")])
            rng = np.random.default_rng(seed)
            memory: dict[str, int] = {}
            for name, keys in (("buckets", buckets), ("reverse", reverse), ("other", other)):
                if not keys:
                    memory[name] = 0
                    continue
                pick = rng.choice(len(keys), size=min(sample, len(keys)), replace=False)
                pipe = r.pipeline(transaction=False)
                for j in pick.tolist():
                    pipe.memory_usage(keys[j], samples=0)
                used = [int(v or 0) for v in pipe.execute()]
                memory[name] = round(float(np.mean(used)) * len(keys))
            issued = int(r.get(self._counter_key) or 0)
        memory["total"] = memory["buckets"] + memory["reverse"] + memory["other"]
        hist: dict[str, int] = {}
        if sizes.size:
            edges = 2 ** np.arange(0, int(np.log2(max(int(sizes.max()), 1))) + 2)
            counts, _ = np.histogram(sizes, bins=np.r_[edges, np.inf])
            hist = {f">={int(e)}": int(c) for e, c in zip(edges, counts, strict=True) if c}
        size_stats = ({"min": int(sizes.min()), "mean": float(sizes.mean()),
                       "p50": float(np.percentile(sizes, 50)),
                       "p90": float(np.percentile(sizes, 90)),
                       "p99": float(np.percentile(sizes, 99)), "max": int(sizes.max()),
                       "histogram": hist}
                      if sizes.size else {"min": 0, "mean": 0.0, "p50": 0.0, "p90": 0.0,
                                          "p99": 0.0, "max": 0, "histogram": {}})
        return {
            "namespace": self.namespace,
            "prefix": self.params["prefix"],
            "url": self.url,
            "cluster": self._cluster,
            "ntotal": self._n,
            "row_keys_issued": issued,
            "bucket_count": len(buckets),
            "buckets_per_band": np.bincount(band_of, minlength=self.num_bands).tolist(),
            "bucket_size": size_stats,
            "members": int(sizes.sum()),
            "reverse_keys": len(reverse),
            "memory_bytes": memory,
            "memory_per_row": memory["total"] / self._n if self._n else 0.0,
        }

    # ----------------------------------------------------------------- persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays: dict[str, np.ndarray] = {
            "projection": self.projection_,
            "rowkeys": np.ascontiguousarray(self._rowkeys[: self._n]),
        }
        if self.keeps_vectors:
            arrays["vectors"] = np.ascontiguousarray(self._vectors[: self._n])
        state = {"format": _FORMAT, "url": self.url, "namespace": self.namespace}
        return state, arrays

    def _set_state(self, state: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        fmt = state.get("format")
        if fmt != _FORMAT:
            raise IndexFormatError(
                f"redis_lsh state format {fmt!r} is not {_FORMAT} (a newer library or a "
                "corrupt file)")
        url, ns = state.get("url"), state.get("namespace")
        if not isinstance(url, str) or not isinstance(ns, str) or not _NAMESPACE_RE.fullmatch(ns):
            raise IndexFormatError(f"redis_lsh state has a bad location: url={url!r}, "
                                   f"namespace={ns!r}")
        bits = self.num_bands * self.rows_per_band
        proj = _checked(arrays, "projection", np.float32, (self.dim, bits))
        rk = _checked(arrays, "rowkeys", np.uint32, (None,))
        n = rk.shape[0]
        if n and np.unique(rk).size != n:
            raise IndexFormatError("redis_lsh row keys repeat")
        if self.keeps_vectors:
            self._vectors = np.array(_checked(arrays, "vectors", np.float32, (n, self.dim)))
        self.url = _check_url(url, "redis_lsh state")
        self.namespace = ns
        self._meta_written = True
        self.projection_ = np.array(proj)
        self._rowkeys = np.array(rk)
        self._n = 0
        self._table_keys, self._table_vals = ht_new(16)
        self._table_insert(rk.astype(np.uint64), np.arange(n, dtype=np.int64))
        self._n = n


def _checked(arrays: Mapping[str, np.ndarray], name: str, dtype: type,
             shape: tuple[int | None, ...]) -> np.ndarray:
    value = arrays.get(name)
    ok = (value is not None and value.dtype == dtype and value.ndim == len(shape)
          and all(s is None or s == v for s, v in zip(shape, value.shape, strict=True)))
    if not ok or value is None:
        got = None if value is None else f"{value.dtype} {value.shape}"
        raise IndexFormatError(f"redis_lsh array {name!r} must be {np.dtype(dtype)} {shape}, "
                               f"got {got}")
    return value
