"""Collection: documents, upserts, deletes, filters, search, MMR, persistence, threads."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import Collection
from vecindex_core.errors import (
    DimensionMismatchError,
    DuplicateIdError,
    InvalidArgumentError,
    InvalidDtypeError,
    InvalidParameterError,
    NonFiniteError,
    UnknownIndexError,
)
from vecindex_core.filters import FilterError

from .conftest import numpy_search

EVEN = {"field": "meta.even", "operator": "==", "value": True}


def docs(n: int, dim: int = 16, seed: int = 0):
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    ids = [f"d{i}" for i in range(n)]
    metas = [{"i": i, "even": i % 2 == 0, "group": f"g{i % 7}"} for i in range(n)]
    return ids, [f"text {i}" for i in range(n)], x, metas


def filled(n: int = 200, path=None, **kw) -> tuple[Collection, np.ndarray]:
    ids, texts, x, metas = docs(n)
    coll = Collection(path, **kw)
    coll.upsert(ids, texts, x, metas)
    return coll, x


def state(coll: Collection) -> list:
    return [(r.id, r.text, r.metadata) for r in coll.find()]


# ----------------------------------------------------------------------------- writes
def test_upsert_get_count() -> None:
    coll, x = filled(50)
    assert len(coll) == 50 and coll.dim == 16 and coll.metric == "cosine"
    recs = coll.get(["d3", "nope", "d1", "d3"], include_vectors=True)
    assert [r.id for r in recs] == ["d3", "d1"]
    assert recs[0].metadata == {"i": 3, "even": False, "group": "g3"}
    np.testing.assert_array_equal(recs[0].vector, x[3])
    assert coll.count(EVEN) == 25


def test_upsert_replaces_never_duplicates() -> None:
    coll, x = filled(20)
    coll.upsert(["d5"], ["new"], x[7:8], [{"i": -5}])
    assert len(coll) == 20 and coll.index.ntotal == 20
    assert coll.get(["d5"])[0].metadata == {"i": -5}
    hits = coll.search(x[7], 2)
    assert {h.record.id for h in hits} == {"d5", "d7"}
    assert [r.id for r in coll.find()][:6] == ["d0", "d1", "d2", "d3", "d4", "d5"]  # write order


def test_duplicate_policies() -> None:
    coll, x = filled(10)
    before = state(coll)
    with pytest.raises(DuplicateIdError, match="d2"):
        coll.upsert(["new", "d2"], None, x[:2], on_duplicate="fail")
    assert state(coll) == before
    assert coll.upsert(["new", "d2"], ["n", "x"], x[:2], on_duplicate="skip") == ["new"]
    assert coll.get(["d2"])[0].text == "text 2"
    with pytest.raises(DuplicateIdError, match="a"):
        coll.upsert(["a", "a"], None, x[:2])


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"vectors": np.zeros((2, 5), np.float32)}, DimensionMismatchError),
        ({"vectors": np.full((2, 16), np.nan, np.float32)}, NonFiniteError),
        ({"metadatas": [{"a": object()}, {}]}, InvalidArgumentError),
        ({"metadatas": [{"a": float("inf")}, {}]}, InvalidArgumentError),
        ({"metadatas": [{1: "x"}, {}]}, InvalidArgumentError),
        ({"metadatas": ["notadict", {}]}, InvalidArgumentError),
        ({"ids": ["ok", ""]}, InvalidArgumentError),
        ({"ids": ["ok", 3]}, InvalidDtypeError),
        ({"ids": ["ok"]}, InvalidArgumentError),  # length mismatch
        ({"texts": "ab"}, InvalidDtypeError),
        ({"metadatas": {"a": 1, "b": 2}}, InvalidDtypeError),
    ],
)
def test_bad_batch_writes_nothing(kwargs, error) -> None:
    coll, x = filled(10)
    before = state(coll)
    args = {"ids": ["ok", "d3"], "texts": ["a", "b"], "vectors": x[:2], "metadatas": None}
    args.update(kwargs)
    with pytest.raises(error):
        coll.upsert(**args)
    assert state(coll) == before and coll.index.ntotal == 10


def test_documents_without_vectors() -> None:
    coll = Collection()
    coll.upsert(["a", "b"], ["x", "y"], None, [{"k": 1}, {"k": 2}])
    assert len(coll) == 2 and coll.dim is None and coll.search(np.ones(4), 3) == []
    coll.upsert(["c", "d"], None, [np.ones(4), None])
    assert coll.dim == 4 and coll.index.ntotal == 1
    assert [h.record.id for h in coll.search(np.ones(4), 3)] == ["c"]
    assert coll.count({"field": "meta.k", "operator": ">", "value": 1}) == 1


def test_delete_by_ids_and_filter() -> None:
    coll, x = filled(100)
    assert coll.delete(["d1", "d1", "missing"]) == 1
    assert coll.delete(filter=EVEN) == 50
    assert coll.delete(filter=EVEN) == 0
    assert len(coll) == 49 and coll.index.ntotal == 49
    assert all(r.metadata["i"] % 2 == 1 for r in coll.find())
    hits = coll.search(x[3], 1)
    assert hits[0].record.id == "d3"
    with pytest.raises(InvalidArgumentError):
        coll.delete()
    assert coll.clear() == 49 and len(coll) == 0 and coll.index.ntotal == 0


def test_update_metadata() -> None:
    coll, _ = filled(30)
    assert coll.update_metadata({"field": "meta.i", "operator": "<", "value": 3}, {"t": 1}) == 3
    assert coll.count({"field": "meta.t", "operator": "==", "value": 1}) == 3
    assert coll.get(["d0"])[0].metadata == {"i": 0, "even": True, "group": "g0", "t": 1}


def test_bad_filter_is_typed_and_changes_nothing() -> None:
    coll, x = filled(30)
    bad = {"field": "meta.i", "operator": "$regex", "value": "x"}
    for call in (
        lambda: coll.search(x[0], 3, filter=bad),
        lambda: coll.delete(filter=bad),
        lambda: coll.update_metadata(bad, {"a": 1}),
        lambda: coll.count(bad),
    ):
        with pytest.raises(FilterError, match=r"\$regex"):
            call()
    assert len(coll) == 30 and isinstance(FilterError("x"), ValueError)


def test_bad_spec_raises_before_anything(tmp_path: Path) -> None:
    with pytest.raises(UnknownIndexError):
        Collection(tmp_path / "a.db", index="nope")
    with pytest.raises(InvalidParameterError):
        Collection(index="turboquant(bitz=4)")


# ----------------------------------------------------------------------------- search
@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_search_matches_exact(metric) -> None:
    ids, texts, x, metas = docs(300)
    coll = Collection(metric=metric)
    coll.upsert(ids, texts, x, metas)
    q = np.random.default_rng(1).standard_normal((5, 16)).astype(np.float32)
    scores, slots, _ = numpy_search(x, q, 10, metric)
    got = coll.search_batch(q, 10)
    for row, s_row, hits in zip(slots, scores, got, strict=True):
        assert [h.record.id for h in hits] == [f"d{i}" for i in row]
        np.testing.assert_allclose([h.score for h in hits], s_row, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "index", ["flat", "turboquant(bits=4)", "ivf_flat(nlist=8)", "pq(m=4,nbits=4)"]
)
def test_filtered_search_is_true_filtered_topk(index) -> None:
    ids, texts, x, metas = docs(2000)
    coll = Collection(index=index)
    coll.upsert(ids, texts, x, metas)
    assert coll.index.is_trained
    q = np.random.default_rng(2).standard_normal((4, 16)).astype(np.float32)
    rare = {"field": "meta.group", "operator": "==", "value": "g3"}  # 1/7 of the rows
    small = {"field": "meta.i", "operator": "<", "value": 40}
    mask = np.array([m["group"] == "g3" for m in metas])
    for flt, m in ((rare, mask), (small, np.arange(2000) < 40)):
        got = coll.search_batch(q, 10, filter=flt)
        _, slots, _ = numpy_search(x, q, 10, "cosine", mask=m)
        for hits, row in zip(got, slots, strict=True):
            assert all(m[int(h.record.id[1:])] for h in hits) and len(hits) == 10
            if flt is small or index == "flat":  # small sets are searched exactly
                assert [h.record.id for h in hits] == [f"d{i}" for i in row]


def test_search_ids_restriction() -> None:
    coll, x = filled(50)
    hits = coll.search(x[0], 5, ids=["d7", "d9", "missing"])
    assert sorted(h.record.id for h in hits) == ["d7", "d9"]
    assert coll.search(x[0], 5, ids=[]) == []
    hits = coll.search(x[0], 5, ids=["d8", "d9"], filter=EVEN)
    assert [h.record.id for h in hits] == ["d8"]


def test_search_validation() -> None:
    coll, x = filled(20)
    with pytest.raises(DimensionMismatchError):
        coll.search(np.ones(3), 2)
    with pytest.raises(InvalidArgumentError):
        coll.search(x[:2], 2)
    with pytest.raises(InvalidArgumentError, match="k must be"):
        coll.search(x[0], 0)


def test_untrained_index_searches_exactly_then_trains() -> None:
    ids, texts, x, metas = docs(3000)
    coll = Collection(index="ivf_flat(nlist=16)")
    coll.upsert(ids[:10], texts[:10], x[:10], metas[:10])
    assert not coll.index.is_trained
    assert coll.search(x[4], 1)[0].record.id == "d4"
    coll.upsert(ids[10:], texts[10:], x[10:], metas[10:])
    assert coll.index.is_trained and coll.index.ntotal == 3000


def test_mmr() -> None:
    coll, x = filled(200)
    q = x[0] + 0.01
    plain = coll.search(q, 5)
    assert [h.record.id for h in coll.mmr(q, 5, fetch_k=5, lambda_mult=1.0)] == [
        h.record.id for h in plain
    ]
    diverse = coll.mmr(q, 5, fetch_k=40, lambda_mult=0.1)
    assert diverse[0].record.id == "d0" and len(diverse) == 5
    assert {h.record.id for h in diverse} != {h.record.id for h in plain}
    assert diverse[0].record.vector is None
    with pytest.raises(InvalidArgumentError):
        coll.mmr(q, 5, lambda_mult=2)


# ----------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("index", ["flat", "turboquant(bits=4)", "ivf_pq(nlist=8,m=4)"])
def test_reopen_needs_only_the_path(tmp_path: Path, index: str) -> None:
    path = tmp_path / "c.db"
    coll, x = filled(1500, path, index=index, metric="ip")
    coll.delete(["d1"])
    before = [h.record.id for h in coll.search(x[5], 10)]
    coll.close()
    again = Collection(path)
    assert again.index_spec == vc.create(index, dim=16).spec and again.metric == "ip"
    assert len(again) == 1499 and again.index.ntotal == 1499
    assert [h.record.id for h in again.search(x[5], 10)] == before
    with pytest.raises(InvalidArgumentError, match="metric"):
        Collection(path, metric="l2")


def test_replay_after_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    coll, x = filled(100, path)
    coll.flush()
    coll.delete(["d3"])
    coll.upsert(["d4"], ["moved"], x[50:51])
    coll.upsert(["late"], None, x[60:61])
    # no close: the writes after the snapshot are replayed from the change log
    again = Collection(path)
    assert again.index.ntotal == 100 and len(again) == 100
    assert {h.record.id for h in again.search(x[50], 2)} == {"d4", "d50"}
    assert "d3" not in {h.record.id for h in again.search(x[3], 5)}


def test_in_memory_behaves_the_same() -> None:
    coll, x = filled(30)
    assert coll.path is None
    coll.flush()
    coll.close()
    for call in (
        lambda: coll.upsert(["z"], None, x[:1]),
        lambda: coll.count(),
        lambda: coll.find(),
        lambda: coll.get(["d1"]),
        lambda: coll.search(x[0], 1),
    ):
        with pytest.raises(InvalidArgumentError, match="closed"):
            call()


@pytest.mark.parametrize("persist", [False, True])
def test_clear_with_reset_frees_the_dimension(tmp_path: Path, persist: bool) -> None:
    path = tmp_path / "c.db" if persist else None
    coll, _ = filled(300, path, index="ivf_flat(nlist=4)")
    assert coll.index.is_trained
    assert coll.clear(reset_index=True) == 300
    assert coll.dim is None and coll.index is None
    coll.upsert(["a", "b"], None, np.eye(2, 5, dtype=np.float32))
    assert coll.dim == 5 and not coll.index.is_trained
    if persist:
        coll.close()
        again = Collection(path)
        assert again.dim == 5 and len(again) == 2 and again.index.ntotal == 2


def test_not_a_collection(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(InvalidArgumentError, match="junk.db"):
        Collection(path)


# ----------------------------------------------------------------------------- threads
def test_readers_never_see_half_a_batch() -> None:
    dim = 8
    coll = Collection(metric="ip")
    stop = threading.Event()
    errors: list[str] = []
    batch = 25

    def writer() -> None:
        rng = np.random.default_rng(0)
        for b in range(40):
            ids = [f"b{b}-{j}" for j in range(batch)]
            coll.upsert(ids, None, rng.standard_normal((batch, dim)), [{"b": b}] * batch)
        stop.set()

    def reader() -> None:
        q = np.ones(dim, np.float32)
        while not stop.is_set():
            n = coll.count()
            if n % batch:
                errors.append(f"count {n}")
            hits = coll.search(q, 1000)
            if len(hits) % batch:
                errors.append(f"search saw {len(hits)}")

    threads = [threading.Thread(target=writer)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    assert len(coll) == 40 * batch


def test_stale_snapshot_of_another_database_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with Collection(path, dim=4) as coll:
        coll.upsert([f"d{i}" for i in range(5)], None, np.eye(5, 4, dtype=np.float32))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    assert Path(f"{path}.index").exists()  # left behind, holds 5 vectors
    coll = Collection(path, dim=4)
    assert len(coll) == 0 and coll.index.ntotal == 0
    coll.upsert(["new"], None, np.ones((1, 4), np.float32))
    assert [h.record.id for h in coll.search(np.ones(4), 3)] == ["new"]


def test_metadata_is_stored_and_filtered_as_json() -> None:
    from types import MappingProxyType

    coll = Collection()
    coll.upsert(["a", "b"], None, np.eye(2, 3), [{"tags": ("x", "y")}, MappingProxyType({"n": 1})])
    assert coll.get(["a"])[0].metadata == {"tags": ["x", "y"]}
    assert coll.count({"field": "meta.tags", "operator": "contains", "value": "x"}) == 1
    assert coll.count({"field": "meta.tags", "operator": "==", "value": ["x", "y"]}) == 1
    assert coll.count({"field": "meta.n", "operator": "==", "value": 1}) == 1


@pytest.mark.parametrize("persist", [False, True])
def test_copy_to(tmp_path: Path, persist: bool) -> None:
    coll, x = filled(300, tmp_path / "src.db" if persist else None, index="turboquant(bits=4)")
    coll.delete(["d7"])
    dest = tmp_path / "copy.db"
    coll.copy_to(dest)
    coll.upsert(["after"], None, x[:1])  # not in the copy
    copy = Collection(dest)
    assert copy.index_spec == coll.index_spec and len(copy) == 299
    assert copy.index.ntotal == 299 and copy.get(["d7", "after"]) == []
    assert [h.record.id for h in copy.search(x[3], 3)] == [
        h.record.id for h in coll.search(x[3], 3) if h.record.id != "after"
    ][:3]


@pytest.mark.parametrize("kw", [{"ids": ["a\ud800"]}, {"ids": ["a"], "texts": ["x\udc00"]}])
def test_lone_surrogate_is_a_typed_error_and_writes_nothing(kw):
    c = Collection()
    with pytest.raises(InvalidArgumentError, match="not valid Unicode"):
        c.upsert(vectors=[[1.0, 2.0]], **kw)
    assert len(c) == 0
