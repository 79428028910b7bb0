"""The ``milvus`` index kind against embedded milvus-lite and a real Milvus 2.3 server.

The shared conformance suite runs the kind on private milvus-lite databases; these tests add
what is specific to Milvus: both deployments, every index type, filtered search that is
never short, named collections saved by reference, cleanup, credentials and failures.
"""

import gc
import os
import pickle

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core.backends import milvus_backend as mb
from vecindex_core.backends.milvus_backend import MilvusIndex
from vecindex_core.milvus import client as mc
from vecindex_core.testing import free_port

DIM = 32


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    return (rng.standard_normal((3000, DIM)).astype(np.float32),
            rng.standard_normal((8, DIM)).astype(np.float32))


def exact(x, q, k, metric, allowed=None):
    idx = vc.FlatIndex(x.shape[1], metric)
    idx.add(x)
    mask = None
    if allowed is not None:
        mask = np.zeros(len(x), bool)
        mask[allowed] = True
    return idx.search(q, k, mask=mask)


def recall(got, want):
    return np.mean([len(set(a[a >= 0]) & set(b[b >= 0])) / max(1, (b >= 0).sum())
                    for a, b in zip(got, want, strict=True)])


def make(uri, **params):
    return MilvusIndex(DIM, params.pop("metric", "l2"), uri=uri, **params)


# --------------------------------------------------------------------------- basics
@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_flat_matches_exact_on_both_deployments(milvus_uri, data, metric):
    x, q = data
    index = make(milvus_uri, metric=metric, index_type="FLAT")
    with index:
        index.add(x[:1000])
        res = index.search(q, 10)
        ref = exact(x[:1000], q, 10, metric)
        np.testing.assert_array_equal(res.ids, ref.ids)
        np.testing.assert_allclose(res.scores, ref.scores, rtol=1e-4, atol=1e-3)
        assert (res.counts == 10).all()


@pytest.mark.parametrize(("index_type", "params", "floor"), [
    ("AUTOINDEX", {}, 0.9),
    ("HNSW", {"M": 8, "ef_construction": 64, "ef": 32}, 0.85),
    ("IVF_FLAT", {"nlist": 16, "nprobe": 4}, 0.5),
    ("IVF_SQ8", {"nlist": 16, "nprobe": 8}, 0.5),
])
def test_each_index_type_on_both_deployments(milvus_uri, data, index_type, params, floor):
    x, q = data
    with make(milvus_uri, index_type=index_type, **params) as index:
        index.add(x)
        res = index.search(q, 10)
        assert (res.counts == 10).all()
        assert recall(res.ids, exact(x, q, 10, "l2").ids) >= floor
        h = index._handle
        desc = h.client.describe_index(h.name, "vector")
        assert desc["index_type"] == index_type


def test_recall_on_the_real_sample(milvus_uri, sample, sample_gt):
    index = vc.create("milvus", dim=sample.base.shape[1], metric="cosine", uri=milvus_uri)
    try:
        index.add(sample.base)
        res = index.search(sample.queries, 10)
        got = recall(res.ids.astype(np.int64), sample_gt["cosine"][:, :10])
        assert got >= 0.9  # AUTOINDEX; measured 0.99+ on lite (HNSW) and the server
    finally:
        index.index.close()


# --------------------------------------------------------------------------- masks
@pytest.mark.parametrize("index_type", ["HNSW", "IVF_FLAT", "AUTOINDEX"])
def test_one_percent_mask_returns_exactly_k(milvus_uri, data, index_type):
    x, q = data
    params = {"nlist": 64, "nprobe": 1} if index_type == "IVF_FLAT" else (
        {"M": 4, "ef_construction": 16, "ef": 10} if index_type == "HNSW" else {})
    with make(milvus_uri, index_type=index_type, **params) as index:
        index.add(x)
        mask = np.zeros(len(x), bool)
        allowed = np.random.default_rng(3).choice(len(x), 30, replace=False)  # 1%
        mask[allowed] = True
        res = index.search(q, 10, mask=mask)
        assert (res.counts == 10).all() and np.isin(res.ids, allowed).all()
        ref = exact(x, q, 10, "l2", allowed)
        # complete, and approximate: this deliberately weak HNSW graph (M=4) measured 0.76
        assert recall(res.ids, ref.ids) >= (0.6 if index_type == "HNSW" else 0.9)
        one = index.search(q, 10, mask=np.isin(np.arange(len(x)), allowed[:4]))
        assert (one.counts == 4).all() and (one.ids[:, 4:] == -1).all()
        assert all(set(r[:4]) == set(allowed[:4]) for r in one.ids)


def test_mask_expressions_in_chunks_and_not_in(milvus_uri, data, monkeypatch):
    """Large allow sets go in chunks of IN_LIST_MAX keys (results merged); sets excluding
    few rows go as `not in`. Both equal exact search on FLAT."""
    x, q = data
    monkeypatch.setattr(mb, "IN_LIST_MAX", 200)
    with make(milvus_uri, index_type="FLAT") as index:
        index.add(x[:1000])
        rng = np.random.default_rng(4)
        for n_allowed in (450, 990):  # 3 chunks; then 10 excluded rows: `not in`
            allowed = np.sort(rng.choice(1000, n_allowed, replace=False))
            mask = np.zeros(1000, bool)
            mask[allowed] = True
            res = index.search(q, 10, mask=mask)
            ref = exact(x[:1000], q, 10, "l2", allowed)
            np.testing.assert_array_equal(res.ids, ref.ids)
            np.testing.assert_allclose(res.scores, ref.scores, rtol=1e-4, atol=1e-3)


def test_idmap_allow_with_a_one_percent_set(milvus_uri, data):
    x, q = data
    index = vc.create("milvus(index_type=HNSW,M=4,ef_construction=16)", dim=DIM, metric="ip",
                      uri=milvus_uri)
    ids = index.add(x, ids=np.arange(len(x), dtype=np.uint64) * 3 + 2**63)
    allow = ids[::100]
    res = index.search(q, 10, allow=allow)
    assert (res.counts == 10).all() and np.isin(res.ids, allow).all()
    index.index.close()


# --------------------------------------------------------------------------- remove
def test_remove_pending_and_sent_rows(milvus_uri, data):
    x, q = data
    twin = vc.FlatIndex(DIM, "l2")  # the same swap-removes on an exact index
    twin.add(x[:300])
    with make(milvus_uri, index_type="FLAT") as index:
        index.add(x[:300])
        moves, want = index.remove([0, 299, 5]), twin.remove([0, 299, 5])
        assert (moves.src.tolist(), moves.dst.tolist()) == (want.src.tolist(),
                                                            want.dst.tolist())
        assert index.stats()["pushes"] == 0 and index.ntotal == 297
        res = index.search(q, 5)  # sends the rows
        np.testing.assert_array_equal(res.ids, twin.search(q, 5).ids)
        assert index.stats()["pushes"] == 1
        gone = np.arange(0, 297, 3)
        m1, m2 = index.remove(gone), twin.remove(gone)  # sent: one delete of their keys
        assert m1.src.tolist() == m2.src.tolist() and m1.dst.tolist() == m2.dst.tolist()
        assert index.ntotal == twin.ntotal == 198
        res = index.search(x[:300], 3)
        np.testing.assert_array_equal(res.ids, twin.search(x[:300], 3).ids)
        assert (res.counts == 3).all()


def test_removed_rows_never_come_back(milvus_uri, data):
    x, q = data
    index = vc.create("milvus(index_type=IVF_FLAT,nlist=8)", dim=DIM, metric="cosine",
                      uri=milvus_uri)
    ids = index.add(x[:500])
    index.search(q, 3)
    gone = ids[::2]
    index.remove(gone)
    res = index.search(x[:500], 5)
    assert not np.isin(res.ids, gone).any()
    assert (res.counts == 5).all()
    index.index.close()


# --------------------------------------------------------------------------- persistence
def test_private_collections_are_saved_by_value_and_copies_are_independent(data, tmp_path):
    x, q = data
    index = vc.create("milvus(index_type=FLAT)", dim=DIM, metric="l2")
    index.add(x[:200])
    ref = index.search(q, 5)
    path = tmp_path / "m.vecidx"
    index.save(path)
    other = vc.load(path)
    np.testing.assert_array_equal(other.search(q, 5).ids, ref.ids)
    assert other.index.collection_name != index.index.collection_name
    other.remove(list(range(100)))
    assert len(index) == 200 and (index.search(q, 5).ids == ref.ids).all()
    clone = pickle.loads(pickle.dumps(index))
    assert clone.to_bytes() == index.to_bytes()


def test_named_collection_saved_by_reference(milvus_uri, data, tmp_path):
    x, q = data
    name = f"named_{os.getpid()}_{free_port()}"
    index = vc.create("milvus(index_type=FLAT)", dim=DIM, metric="ip", uri=milvus_uri,
                      collection_name=name)
    index.add(x[:400], ids=np.arange(400) + 10**15)
    index.remove([10**15 + 3])
    ref = index.search(q, 7)
    path = tmp_path / "named.vecidx"
    index.save(path)
    assert os.path.getsize(path) < 400 * DIM * 4  # keys, not vectors
    index.index.close()  # a named collection is kept
    other = vc.load(path)
    try:
        res = other.search(q, 7)
        np.testing.assert_array_equal(res.ids, ref.ids)
        np.testing.assert_allclose(res.scores, ref.scores, rtol=1e-5)
        # a fresh index cannot take over an existing collection
        with pytest.raises(vc.InvalidArgumentError, match="already exists"):
            fresh = vc.create("milvus", dim=DIM, uri=milvus_uri, collection_name=name)
            fresh.add(x[:1])
            fresh.search(q, 1)
        # the collection changed behind the file's back: loading says so
        other.add(x[:5])
        other.search(q, 1)
        with pytest.raises(vc.IndexFormatError, match="holds 404 rows, the saved index 399"):
            vc.load(path)
    finally:
        h = other.index._handle
        h.client.drop_collection(h.name)
        other.index.close()


# --------------------------------------------------------------------------- lifecycle
def test_close_drops_private_collection_and_database(data):
    x, q = data
    index = make("", index_type="FLAT")
    index.add(x[:10])
    index.search(q, 1)
    h = index._handle
    path = h.lite
    assert h.name in h.client.list_collections()
    other = make("", index_type="FLAT")
    other.add(x[:10])
    other.search(q, 1)
    name = other._handle.name
    index.close()
    index.close()
    with pytest.raises(vc.InvalidArgumentError, match="closed"):
        index.search(q, 1)
    assert name in other._handle.client.list_collections()
    del other
    gc.collect()  # the finaliser drops the last private collection and the database
    assert not os.path.exists(path) and not mc.lite_is_open(path)


def test_unreachable_server_is_service_unavailable(data):
    x, q = data
    uri = f"http://127.0.0.1:{free_port()}"
    index = vc.create("milvus", dim=DIM, uri=uri, timeout=1.0)
    index.add(x[:5])  # batched: nothing sent yet
    with pytest.raises(vc.ServiceUnavailableError, match=uri):
        index.search(q, 1)
    assert len(index) == 5  # the rows are still there, sent on the next try


def test_credentials_never_stored(milvus_server, data, monkeypatch):
    x, _ = data
    index = vc.create("milvus(index_type=FLAT)", dim=DIM, uri=milvus_server.uri,
                      user="root", password="Milvus-secret-1")
    index.add(x[:3])
    assert "secret" not in index.spec and "secret" not in repr(index)
    assert b"secret" not in index.to_bytes()
    index.search(x[:1], 1)
    assert b"secret" not in index.to_bytes()
    monkeypatch.setenv("VECINDEX_MILVUS_TOKEN", "root:Milvus")
    assert MilvusIndex(DIM, uri=milvus_server.uri)._creds == {"token": "root:Milvus"}
    index.index.close()


@pytest.mark.parametrize(("params", "error", "match"), [
    ({"index_type": "DISKANN"}, vc.NotSupportedError, "hangs"),
    ({"index_type": "GPU_CAGRA"}, vc.NotSupportedError, "hangs"),
    ({"index_type": "nope"}, vc.InvalidParameterError, "valid: AUTOINDEX"),
    ({"M": 8}, vc.InvalidParameterError, "M=8 applies to index_type HNSW"),
    ({"index_type": "FLAT", "nlist": 4}, vc.InvalidParameterError, "nlist=4 applies"),
    ({"index_type": "HNSW", "nprobe": 4}, vc.InvalidParameterError, "nprobe=4 does not apply"),
    ({"uri": "x.sqlite"}, vc.InvalidParameterError, "must end with .db"),
    ({"uri": "ftp://h"}, vc.InvalidParameterError, "unknown scheme"),
    ({"collection_name": "has space"}, vc.InvalidParameterError, "collection_name"),
    ({"token": 3}, vc.InvalidParameterError, "token must be a string"),
    ({"timeout": 0.0}, vc.InvalidParameterError, "timeout=0.0 is out of range"),
])
def test_bad_parameters(params, error, match):
    with pytest.raises(error, match=match):
        vc.create("milvus", dim=DIM, **params)


def test_search_knobs_and_k_limit(milvus_uri, data):
    x, q = data
    with make(milvus_uri, index_type="HNSW", M=8, ef_construction=32) as index:
        index.add(x[:500])
        for params in ({"ef": 16}, index.kind.SearchParams(ef=200), None):
            assert (index.search(q, 50, params=params).counts == 50).all()  # ef raised to k
        with pytest.raises(vc.InvalidParameterError, match="nprobe=3 does not apply"):
            index.search(q, 3, params={"nprobe": 3})


def test_k_above_the_milvus_top_k_takes_the_exact_route(milvus_uri):
    """k > 16,384 (Milvus's largest limit) is answered exactly instead of raising."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((mb.TOPK_MAX + 40, DIM)).astype(np.float32)
    q = rng.standard_normal((2, DIM)).astype(np.float32)
    k = mb.TOPK_MAX + 10
    with make(milvus_uri, index_type="FLAT") as index:
        index.add(x)
        got = index.search(q, k)
    want = exact(x, q, k, "l2")
    assert (got.counts == k).all()
    np.testing.assert_array_equal(got.ids[:, :50], want.ids[:, :50])
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-4, atol=1e-3)
