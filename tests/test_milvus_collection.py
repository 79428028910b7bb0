"""MilvusCollection: the Collection API with documents, vectors and filters in Milvus.

Every test runs on embedded milvus-lite and on the real Milvus 2.3.5 server (the
``milvus_uri`` fixture); each test uses its own Milvus collection. Compared against the
SQLite :class:`~vecindex_core.Collection` where behaviour must match.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import Collection, MilvusCollection
from vecindex_core.errors import (
    DimensionMismatchError,
    DuplicateIdError,
    FilterError,
    InvalidArgumentError,
    InvalidDtypeError,
    InvalidParameterError,
    NonFiniteError,
    NotSupportedError,
    ServiceUnavailableError,
)
from vecindex_core.milvus import collection as mc
from vecindex_core.testing import free_port

DIM = 8


def _name() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def make(milvus_uri: str) -> Iterator[Any]:
    """Factory of MilvusCollections on this test's deployment, each in a new collection."""
    opened: list[MilvusCollection] = []

    def factory(name: str | None = None, **kw: Any) -> MilvusCollection:
        if name is None:  # a new collection: created with its dimension (one create_index)
            kw.setdefault("dim", DIM)
        coll = MilvusCollection(milvus_uri, collection_name=name or _name(), **kw)
        opened.append(coll)
        return coll

    yield factory
    names = {c.collection_name for c in opened}
    for c in opened:
        c.close()
    if not milvus_uri.endswith(".db"):  # keep the shared server small
        from pymilvus import MilvusClient

        client = MilvusClient(uri=milvus_uri)
        for n in names:
            if client.has_collection(n):
                client.drop_collection(n)
        client.close()


def _vectors(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _fill(coll: Any, n: int = 12, seed: int = 0) -> np.ndarray:
    x = _vectors(n, seed)
    coll.upsert([f"d{i}" for i in range(n)], [f"text {i}" for i in range(n)], x,
                [{"i": i, "g": i % 3, "tag": ["a", "b", "c"][i % 3]} for i in range(n)])
    return x


def _state(coll: Any) -> list[tuple[str, str | None, dict[str, Any], Any]]:
    return [(r.id, r.text, r.metadata, None if r.vector is None else r.vector.tolist())
            for r in coll.find(include_vectors=True)]


def _eq(field: str, value: Any) -> dict[str, Any]:
    return {"field": field, "operator": "==", "value": value}


# ================================================================================= basics
def test_round_trip_matches_the_sqlite_collection(make: Any, tmp_path: Any) -> None:
    coll = make(metric="cosine", index="FLAT")
    ref = Collection(tmp_path / "ref.db", metric="cosine")
    for c in (coll, ref):
        x = _fill(c)
        c.upsert(["n1"], ["no vector"], None, [{"g": 1}])
    assert isinstance(coll, vc.BaseCollection)
    assert len(coll) == len(ref) == 13
    assert coll.dim == DIM and coll.metric == "cosine" and coll.index_spec == "FLAT"
    assert [r.id for r in coll.find()] == [r.id for r in ref.find()]
    assert _state(coll) == _state(ref)
    assert coll.count(_eq("meta.g", 1)) == ref.count(_eq("meta.g", 1)) == 5
    for flt in (None, _eq("meta.g", 1), {"field": "meta.i", "operator": ">", "value": 6}):
        got = coll.search(x[4], 5, filter=flt)
        want = ref.search(x[4], 5, filter=flt)
        assert [h.record.id for h in got] == [h.record.id for h in want]
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-5)
    got = coll.search_batch(x[:3], 2, ids=["d1", "d2", "n1"])
    assert [[h.record.id for h in row] for row in got] == [
        [h.record.id for h in row] for row in ref.search_batch(x[:3], 2, ids=["d1", "d2", "n1"])
    ]
    assert coll.search(x[0], 3, ids=[]) == []
    hits = coll.search(x[0], 30, include_vectors=True)
    assert len(hits) == 12  # the vectorless document is never a hit
    np.testing.assert_array_equal(hits[0].record.vector, x[0])
    assert [h.record.id for h in coll.mmr(x[0], 3, fetch_k=8)] == [
        h.record.id for h in ref.mmr(x[0], 3, fetch_k=8)]
    assert [(r.id, r.text, r.metadata) for r in coll.get(["d3", "zz", "n1"])] == [
        (r.id, r.text, r.metadata) for r in ref.get(["d3", "zz", "n1"])]
    assert coll.find(limit=3, offset=2)[0].id == "d2"
    assert coll.update_metadata(_eq("meta.g", 2), {"x": True}) == 4
    assert coll.count(_eq("meta.x", True)) == 4
    assert coll.delete(["d1", "d2", "missing"]) == 2
    assert coll.delete(filter=_eq("meta.x", True)) == 3
    assert len(coll) == 8
    assert coll.clear() == 8 and len(coll) == 0 and coll.dim == DIM
    ref.close()


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_a_vectorless_document_never_takes_a_hit_slot(make: Any, metric: str) -> None:
    # The placeholder vector of a document without one is (1, 0, ..., 0): a query along it
    # finds the placeholder first, so the search that leaves the has_vec filter out must
    # notice and search that query again with it, and still return k real hits.
    coll = make(metric=metric, index="FLAT")
    x = _fill(coll)
    coll.upsert(["n1", "n2"], ["no vector", None], None, [{"g": 1}, None])
    probe = np.zeros((2, DIM), dtype=np.float32)
    probe[:, 0] = 1.0
    probe[1] = x[3]
    for flt in (None, _eq("meta.g", 1)):
        rows = coll.search_batch(probe, 5, filter=flt)
        want = 4 if flt else 5  # meta.g == 1 holds for d1, d4, d7, d10 and n1
        assert [len(r) for r in rows] == [want, want]
        assert not any(h.record.id.startswith("n") for r in rows for h in r)
        stored = {r.id: r.uid for r in coll.find()}
        assert all(h.record.uid == stored[h.record.id] for r in rows for h in r)
    if metric != "ip":  # under ip another vector may score higher than x[3] itself
        assert coll.search(x[3], 1)[0].record.id == "d3"


def test_upsert_policies_keep_first_write_order(make: Any) -> None:
    coll = make()
    x = _vectors(4)
    assert coll.upsert(["a", "b"], ["A", "B"], x[:2]) == ["a", "b"]
    assert coll.upsert(["c", "a"], ["C", "A2"], x[2:4]) == ["c", "a"]  # overwrite
    assert [(r.id, r.text) for r in coll.find()] == [("a", "A2"), ("b", "B"), ("c", "C")]
    uid = coll.get(["a"])[0].uid
    assert coll.upsert(["a", "d"], ["A3", "D"], x[:2], on_duplicate="skip") == ["d"]
    assert coll.get(["a"])[0].text == "A2" and coll.get(["a"])[0].uid == uid
    with pytest.raises(DuplicateIdError):
        coll.upsert(["e", "b"], ["E", "B2"], x[:2], on_duplicate="fail")
    assert [r.id for r in coll.find()] == ["a", "b", "c", "d"]
    # a retry of the same call converges (upsert is idempotent)
    before = _state(coll)
    coll.upsert(["c", "a"], ["C", "A2"], x[2:4])
    assert _state(coll) == before


_OK = [0.5] * DIM
BAD_BATCHES = [
    ("wrong dim", dict(ids=["ok", "x"], vectors=[_OK, [1.0] * (DIM + 1)]),
     DimensionMismatchError),
    ("nan", dict(ids=["ok", "x"], vectors=[_OK, [float("nan")] * DIM]), NonFiniteError),
    ("meta not json", dict(ids=["ok", "x"], metadatas=[{}, {"a": object()}]),
     InvalidArgumentError),
    ("meta beyond int64", dict(ids=["ok", "x"], metadatas=[{}, {"a": 2**70}]),
     InvalidArgumentError),
    ("duplicate in batch", dict(ids=["ok", "ok"]), DuplicateIdError),
    ("single str", dict(ids="ok"), InvalidDtypeError),
    ("lengths differ", dict(ids=["ok", "x"], texts=["one"]), InvalidArgumentError),
    ("text over 64 KiB", dict(ids=["ok", "x"], texts=["fine", "é" * 40000]),
     InvalidArgumentError),
    ("empty id", dict(ids=["ok", ""]), InvalidArgumentError),
    ("unknown policy", dict(ids=["ok"], on_duplicate="replace"), InvalidArgumentError),
    ("existing under fail", dict(ids=["ok", "d1"], on_duplicate="fail"), DuplicateIdError),
]


def test_bad_batches_raise_typed_errors_and_write_nothing(make: Any) -> None:
    coll = make()
    _fill(coll, 4)
    before = _state(coll)
    for what, kwargs, error in BAD_BATCHES:
        with pytest.raises(error):
            coll.upsert(**kwargs)
        assert _state(coll) == before, what


def test_bad_filters_and_deletes(make: Any) -> None:
    coll = make()
    x = _fill(coll, 4)
    before = _state(coll)
    bad = {"field": "meta.g", "operator": "~=", "value": 1}
    for call in (lambda: coll.search(x[0], 2, filter=bad), lambda: coll.count(bad),
                 lambda: coll.find(bad), lambda: coll.delete(filter=bad),
                 lambda: coll.update_metadata(bad, {"a": 1})):
        with pytest.raises(FilterError):
            call()
    # the data-dependent error of the in-memory evaluator: ordering a string field
    with pytest.raises(FilterError):
        coll.count({"field": "meta.tag", "operator": ">", "value": 1})
    with pytest.raises(InvalidArgumentError):
        coll.delete(filter={})
    with pytest.raises(InvalidArgumentError):
        coll.delete()
    with pytest.raises(InvalidArgumentError):
        coll.delete(["d0"], filter=_eq("meta.g", 1))
    with pytest.raises(InvalidArgumentError):
        coll.update_metadata(None, {"bad": float("inf")})
    with pytest.raises(DimensionMismatchError):
        coll.search([1.0, 2.0], 2)
    with pytest.raises(InvalidParameterError):
        coll.search(x[0], 2, params={"nprobe": 4})  # AUTOINDEX has no nprobe
    with pytest.raises(InvalidArgumentError):
        coll.search(x[:2], 2)  # a batch through search()
    assert _state(coll) == before


# ================================================================================ settings
def test_reopen_checks_stored_settings(make: Any) -> None:
    name = _name()
    coll = make(name, metric="l2", index="HNSW(M=8)", dim=DIM)
    assert coll.index_spec == "HNSW(M=8,efConstruction=200)"
    coll.upsert(["a"], ["A"], _vectors(1))
    coll.close()
    with pytest.raises(InvalidArgumentError, match="closed"):
        coll.count()
    again = make(name)
    assert (again.metric, again.index_spec, again.dim, len(again)) == (
        "l2", "HNSW(M=8,efConstruction=200)", DIM, 1)
    for kwargs in ({"metric": "ip"}, {"index": "FLAT"}, {"dim": DIM + 1},
                   {"index": "HNSW", "index_params": {"M": 16}}):
        with pytest.raises(InvalidArgumentError, match="was created with"):
            make(name, **kwargs)
    same = make(name, metric="l2", index="HNSW", index_params={"M": 8}, dim=DIM)
    assert len(same) == 1


def test_foreign_collection_and_bad_arguments(make: Any, milvus_uri: str) -> None:
    from pymilvus import DataType, MilvusClient

    name = _name()
    owner = make()  # keeps lite's server up; its client shares it
    client = owner.client
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    index = client.prepare_index_params()
    index.add_index("v", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=index)
    try:
        with pytest.raises(InvalidArgumentError, match="not created by vecindex"):
            MilvusCollection(milvus_uri, collection_name=name)
    finally:
        client.drop_collection(name)
    with pytest.raises(NotSupportedError):
        MilvusCollection(milvus_uri, collection_name=_name(), index="DISKANN")
    with pytest.raises(InvalidParameterError):
        MilvusCollection(milvus_uri, collection_name=_name(), index="HNSW(M=0)")
    with pytest.raises(InvalidParameterError):
        MilvusCollection(milvus_uri, collection_name=_name(), index="HNSW(M=8)",
                         index_params={"M": 9})
    with pytest.raises(InvalidArgumentError):
        MilvusCollection(milvus_uri, collection_name="bad-name")
    with pytest.raises(InvalidArgumentError):
        MilvusCollection(milvus_uri, collection_name=_name(), consistency_level="Maybe")
    with pytest.raises(InvalidArgumentError):
        MilvusCollection(milvus_uri, collection_name=_name(), page_size=0)


def test_unreachable_server_raises_service_unavailable() -> None:
    with pytest.raises(ServiceUnavailableError, match="127.0.0.1"):
        MilvusCollection(f"http://127.0.0.1:{free_port()}", timeout=1)


def test_dimension_is_fixed_by_the_first_vector(make: Any) -> None:
    name = _name()
    coll = make(name, dim=None)
    assert coll.dim is None
    coll.upsert(["t1", "t2"], ["text only", None], None, [{"k": 1}, None])
    assert coll.dim is None and coll.search([1.0, 0.0], 3) == []
    x = _vectors(3, dim=3)
    coll.upsert(["v1", "v2", "v3"], None, x)  # copies the vectorless rows into dim 3
    assert coll.dim == 3
    assert [(r.id, r.text, r.metadata) for r in coll.find()] == [
        ("t1", "text only", {"k": 1}), ("t2", None, {}), ("v1", None, {}), ("v2", None, {}),
        ("v3", None, {})]
    hits = coll.search(x[1], 5)
    assert len(hits) == 3 and hits[0].record.id == "v2"
    with pytest.raises(DimensionMismatchError):
        coll.upsert(["v4"], None, _vectors(1, dim=4))
    reopened = make(name)
    assert reopened.dim == 3 and len(reopened) == 5
    assert reopened.clear(reset_index=True) == 5
    assert reopened.dim is None
    reopened.close()
    pending = make(name, dim=5)  # a dimension given for a collection that has none yet
    assert pending.dim == 5
    pending.upsert(["nv"], ["no vector"])
    w = _vectors(1, dim=5)
    pending.upsert(["w"], None, w)
    assert pending.dim == 5 and len(pending) == 2
    assert [h.record.id for h in pending.search(w[0], 3)] == ["w"]
    assert make(name).dim == 5


def test_interrupted_dimension_change_is_repaired_on_open(make: Any) -> None:
    """A crash between dropping the provisional collection and renaming its copy."""
    name = _name()
    keeper = make()  # its client reaches the same database
    coll = make(name, dim=None)
    coll.upsert(["t"], ["kept"])
    coll.close()
    writer = make(name + mc.TMP_SUFFIX, dim=None)  # stands for the copy, with its own settings
    writer.upsert(["t"], ["kept"], _vectors(1, dim=4))
    writer.close()
    keeper.client.drop_collection(name)
    again = make(name)
    assert again.dim == 4 and [r.text for r in again.find()] == ["kept"]
    assert not again.client.has_collection(name + mc.TMP_SUFFIX)


# ================================================================================== limits
def test_paging_beyond_one_request(make: Any, tmp_path: Any) -> None:
    """A tiny page size makes every read span several requests (as 16,384 rows would)."""
    coll = make(page_size=7, index="FLAT")
    n = 40
    x = _vectors(n, seed=3)
    ids = [f"id{(i * 7919) % 1000:04d}\"'\\" for i in range(n)]  # pk order != write order
    coll.upsert(ids, [str(i) for i in range(n)], x, [{"i": i, "even": i % 2 == 0}
                                                     for i in range(n)])
    assert [r.id for r in coll.find()] == ids
    assert [r.id for r in coll.find(limit=9, offset=15)] == ids[15:24]
    assert [r.id for r in coll.find(_eq("meta.even", True))] == ids[::2]
    assert coll.update_metadata(_eq("meta.even", True), {"u": 1}) == 20
    assert coll.count(_eq("meta.u", 1)) == 20
    coll.copy_to(tmp_path / "copy.db")
    with Collection(tmp_path / "copy.db") as copy:
        assert [r.id for r in copy.find()] == ids
        assert copy.metric == coll.metric and copy.dim == DIM
        assert [h.record.id for h in copy.search(x[5], 3)] == [
            h.record.id for h in coll.search(x[5], 3)]
    assert coll.delete(filter=_eq("meta.even", False)) == 20
    assert len(coll) == 20


def test_k_larger_than_the_matching_set_and_many_ids(make: Any) -> None:
    coll = make(index="FLAT", dim=4)
    n = mc.IN_CHUNK + 50
    x = _vectors(n, seed=5, dim=4)
    ids = [f"k{i}" for i in range(n)]
    coll.upsert(ids, None, x)
    allowed = ids[::2]  # more ids than one `id in [...]` request takes
    got = coll.search(x[10], 5, ids=allowed)
    exact = vc.documents.exact_scores(x[10:11], x[::2], "cosine")[0]
    assert [h.record.id for h in got] == [allowed[i] for i in np.argsort(-exact)[:5]]
    assert len(coll.get(ids)) == n
    assert coll.delete(ids[: mc.IN_CHUNK + 10]) == mc.IN_CHUNK + 10


def test_selective_filter_on_an_index_never_comes_back_short(make: Any) -> None:
    """milvus-lite's HNSW drops allowed rows under a selective filter once flushed; the
    short results are completed by an exact scan."""
    coll = make(index="HNSW(M=8,efConstruction=64)", metric="cosine")
    n = 3000
    x = _vectors(n, seed=7)
    ids = [f"h{i}" for i in range(n)]
    coll.upsert(ids, None, x, [{"rare": i in (11, 2222)} for i in range(n)])
    coll.flush()
    q = _vectors(1, seed=8)[0]
    for _ in range(3):
        got = coll.search(q, 5, filter=_eq("meta.rare", True))
        assert sorted(h.record.id for h in got) == ["h11", "h2222"]


def test_uid_collision_is_detected(make: Any) -> None:
    coll = make()
    coll.upsert(["a"], ["A"], _vectors(1))
    row = {"id": "squatter", "uid": mc._uid("b"), "seq": 0, "has_vec": False,
           **mc.row_fields("squatter", None, {}), "vec": [1.0] + [0.0] * (DIM - 1)}
    coll.client.upsert(coll.collection_name, [row])  # as another writer could
    with pytest.raises(InvalidArgumentError, match="hashes to the uid"):
        coll.upsert(["b"], ["B"], _vectors(1))
    assert coll.get(["b"]) == []


def test_substring_filters(make: Any, milvus_uri: str) -> None:
    coll = make()
    _fill(coll, 6)
    flt = {"field": "content", "operator": "text_match", "value": "text 1"}
    if milvus_uri.endswith(".db"):
        assert [r.id for r in coll.find(flt)] == ["d1"]
    else:  # Milvus 2.3 evaluates prefix patterns only
        with pytest.raises(NotSupportedError, match="like"):
            coll.find(flt)


# ================================================================================== crash
CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from vecindex_core import MilvusCollection
    coll = MilvusCollection(sys.argv[1], collection_name="crash", dim=4)
    rng = np.random.default_rng(0)
    b = 0
    while True:
        ids = [f"b{b}_{i}" for i in range(20)]
        coll.upsert(ids, [f"t{b}"] * 20, rng.standard_normal((20, 4)),
                    [{"batch": b}] * 20)
        print(b, flush=True)
        b += 1
""")


def test_kill_9_of_a_lite_writer_keeps_acknowledged_documents(tmp_path: Any) -> None:
    uri = str(tmp_path / "crash.db")
    for kill_after in (3, 17):
        proc = subprocess.Popen([sys.executable, "-c", CHILD, uri], stdout=subprocess.PIPE,
                                text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert proc.stdout is not None
        acked = -1
        for line in proc.stdout:
            acked = int(line)
            if acked >= kill_after:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert acked >= kill_after
        with MilvusCollection(uri, collection_name="crash") as coll:
            for b in range(acked + 1):
                got = coll.find(_eq("meta.batch", b))
                assert len(got) == 20 and {r.text for r in got} == {f"t{b}"}
            batches = {r.metadata["batch"] for r in coll.find()}
            assert all(coll.count(_eq("meta.batch", b)) == 20 for b in batches)
            assert coll.search([1.0, 0.0, 0.0, 0.0], 3)


def test_the_core_imports_without_pymilvus(tmp_path: Any) -> None:
    code = textwrap.dedent(f"""
        import sys
        sys.modules["pymilvus"] = None  # as if it were not installed
        import vecindex_core as vc
        from vecindex_core import MilvusCollection
        try:
            MilvusCollection({str(tmp_path / "m.db")!r})
        except vc.NotSupportedError as e:
            assert 'pip install "vecindex[milvus]"' in str(e), e
        else:
            raise AssertionError("no error")
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ================================================================================== review fixes
def test_second_client_adopts_the_dimension_another_client_fixed(make: Any) -> None:
    """Two clients without a dim: the second must not wipe the first one's vectors."""
    name = _name()
    a = make(name, dim=None)
    b = make(name)
    a.upsert(["x"], ["tx"], [[1.0, 2.0, 3.0, 4.0]])
    assert b.dim is None  # b has not looked yet
    assert b.search([1.0, 2.0, 3.0, 4.0], 1)[0].record.id == "x"  # a search looks
    b._settings["dim"] = None  # a stale view again
    with pytest.raises(DimensionMismatchError):
        b.upsert(["y"], ["ty"], [[1.0] * 8])
    assert b.dim == 4
    b.upsert(["y"], ["ty"], [[0.0, 1.0, 0.0, 0.0]])
    got = {r.id: r.vector for r in a.get(["x", "y"], include_vectors=True)}
    np.testing.assert_allclose(got["x"], [1, 2, 3, 4])
    assert a.search([1.0, 2.0, 3.0, 4.0], 2)[0].record.id == "x"
    pending = make(name, dim=None)
    pending._settings["dim"] = 5  # as if opened with dim=5 before the dimension was fixed
    pending._settings["dim_pending"] = True
    with pytest.raises(DimensionMismatchError):
        pending.upsert(["z"], None, [[1.0] * 5])
    assert len(a) == 2


def test_fix_dim_refuses_rows_with_vectors_and_a_live_tmp_copy(make: Any) -> None:
    name = _name()
    a = make(name, dim=None)
    a.upsert(["x"], None, [[1.0, 0.0, 0.0]])
    b = make(name)
    b._settings["dim"] = None  # a stale view of the settings
    with pytest.raises(DimensionMismatchError):
        b._fix_dim(3)
    c = make(dim=None)
    c.upsert(["t"], ["no vector"])
    live = make(c.collection_name + mc.TMP_SUFFIX, dim=None)
    live.close()  # stands for another client's copy (no start time: counts as stale)
    reopened = make(c.collection_name)  # opening leaves the copy alone
    assert reopened.client.has_collection(c.collection_name + mc.TMP_SUFFIX)
    c.upsert(["v"], None, [[1.0, 2.0]])  # a stale copy is dropped and replaced
    assert c.dim == 2 and len(c) == 2
    assert not c.client.has_collection(c.collection_name + mc.TMP_SUFFIX)
    d = make(dim=None)
    d.upsert(["t"], ["no vector"])
    d._create(d.collection_name + mc.TMP_SUFFIX, 2, started=time.time())
    with pytest.raises(ServiceUnavailableError):  # another client's copy in progress
        d.upsert(["v"], None, [[1.0, 2.0]])
    assert d.dim is None and len(d) == 1
    d.client.drop_collection(d.collection_name + mc.TMP_SUFFIX)


def test_flat_cosine_with_a_zero_vector_matches_sqlite(make: Any) -> None:
    """The server leaves zero-norm vectors out under cosine; the answer must not be short."""
    coll = make(dim=2, index="FLAT", metric="cosine")
    ref = Collection(None, dim=2, index="flat", metric="cosine")
    for c in (coll, ref):
        c.upsert(["a", "b", "z"], None, [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    for query in ([1.0, 0.0], [0.0, 0.0]):
        got = [(h.record.id, round(h.score, 5)) for h in coll.search(query, 3)]
        want = [(h.record.id, round(h.score, 5)) for h in ref.search(query, 3)]
        assert sorted(got) == sorted(want) and len(got) == 3


def test_many_queries_are_sent_in_chunks(make: Any, monkeypatch: Any) -> None:
    coll = make(dim=2, index="FLAT", metric="l2")
    coll.upsert(["a", "b"], None, [[1.0, 0.0], [0.0, 1.0]])
    q = np.tile(np.array([[1.0, 0.0], [0.0, 1.0]], np.float32), (mc.MAX_WINDOW // 2 + 3, 1))
    res = coll.search_batch(q, 1)  # more than 16,384 queries
    assert len(res) == q.shape[0]
    assert [r[0].record.id for r in res[:4]] == ["a", "b", "a", "b"]
    assert res[-1][0].record.id == "b"
    monkeypatch.setattr(mc, "READ_BYTES", 3000)  # a few queries a request
    res = coll.search_batch(q[:7], 2)
    assert [[h.record.id for h in r] for r in res] == [["a", "b"], ["b", "a"]] * 3 + [["a", "b"]]


def test_reads_are_paged_by_bytes(make: Any, monkeypatch: Any) -> None:
    coll = make(dim=2)
    n = 40
    coll.upsert([f"d{i:02d}" for i in range(n)], ["x" * 3000] * n, _vectors(n, dim=2),
                [{"i": i} for i in range(n)])
    monkeypatch.setattr(mc, "READ_BYTES", 20000)  # a few rows a page
    assert [r.id for r in coll.find()] == [f"d{i:02d}" for i in range(n)]
    assert coll._row_bytes  # sized from the rows of a full page: several pages were read
    assert coll._rows_per_read(mc._ROW_OUT) < n
    assert coll.update_metadata(None, {"a": 1}) == n
    got = coll.get([f"d{i:02d}" for i in range(n)], include_vectors=True)
    assert len(got) == n and all(r.metadata == {"i": i, "a": 1} for i, r in enumerate(got))
    assert coll.delete(filter=_eq("a", 1)) == n and len(coll) == 0
    assert list(mc._id_chunks(["a" * 100] * 5, per=2)) == [["a" * 100] * 2] * 2 + [["a" * 100]]
    monkeypatch.setattr(mc, "IN_BYTES", 1000)
    assert [len(c) for c in mc._id_chunks(["b" * 100] * 5)] == [2, 2, 1]


def test_both_collections_share_the_argument_checks(make: Any) -> None:
    from vecindex_core import collection as sqlite_collection
    from vecindex_core import documents

    assert sqlite_collection._RWLock is documents.RWLock
    coll, ref = make(), Collection(None, dim=DIM)
    for c in (coll, ref):
        c.upsert(["a"], None, _vectors(1))
        with pytest.raises(InvalidArgumentError, match="exactly one of ids= or filter="):
            c.delete()
        with pytest.raises(InvalidArgumentError, match="would delete every document"):
            c.delete(filter={})
        with pytest.raises(InvalidArgumentError, match="offset"):
            c.find(offset=-1)
        with pytest.raises(InvalidArgumentError, match="limit"):
            c.find(limit=-2)
        with pytest.raises(DuplicateIdError, match=r"ids \['a'\] are already stored"):
            c.upsert(["a", "b"], None, _vectors(2), on_duplicate="fail")
        assert c.upsert(["a", "b"], None, _vectors(2), on_duplicate="skip") == ["b"]


def test_lone_surrogate_ids_find_nothing_like_sqlite(make: Any) -> None:
    coll, ref = make(), Collection(None, dim=DIM)
    bad = "x\ud800"
    for c in (coll, ref):
        x = _fill(c, 3)
        assert c.get([bad]) == [] and [r.id for r in c.get([bad, "d1"])] == ["d1"]
        assert c.delete([bad]) == 0
        assert c.search(x[0], 2, ids=[bad]) == []
        assert [h.record.id for h in c.search(x[0], 2, ids=[bad, "d0"])] == ["d0"]


def test_the_message_size_refusal_is_recognised_through_the_chain() -> None:
    try:
        try:
            raise RuntimeError('status = StatusCode.RESOURCE_EXHAUSTED\n details = "grpc: '
                               'trying to send message larger than max (72183619 vs. 67108864)"')
        except RuntimeError as inner:
            raise mc.BackendError("Milvus failed to query collection 'c': <_Inactive") from inner
    except mc.BackendError as e:
        assert mc._too_big(e)
    assert not mc._too_big(mc.BackendError("collection not found"))


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_search_scores_follow_the_library_rule_like_sqlite(make: Any, metric: str) -> None:
    """Hits (assembled straight from the reply) score as the SQLite Collection's: the
    negated squared distance for l2, the inner product for ip; text and metadata intact."""
    coll = make(metric=metric, index="FLAT")
    ref = Collection(None, dim=DIM, index="flat", metric=metric)
    x = _fill(coll)
    _fill(ref)
    got = coll.search_batch(x[:3], 4)
    want = ref.search_batch(x[:3], 4)
    for g, w in zip(got, want, strict=True):
        assert [h.record.id for h in g] == [h.record.id for h in w]
        np.testing.assert_allclose([h.score for h in g], [h.score for h in w], rtol=1e-5,
                                   atol=1e-4)
        assert [(h.record.text, h.record.metadata, h.record.uid != 0) for h in g] == [
            (h.record.text, h.record.metadata, True) for h in w]
    if metric == "l2":
        assert got[0][0].score == pytest.approx(0.0, abs=1e-4)  # the query itself
    ref.close()
