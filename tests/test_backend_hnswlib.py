"""The ``hnsw`` kind (hnswlib): recall, masks, removes and compaction, files, params."""

import itertools
import sys

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import MISSING
from vecindex_core.backends import hnswlib_backend as hb

pytest.importorskip("hnswlib")

from .conftest import recall_at

SPEC = "hnsw(ef_construction=64)"  # the build the suite uses; defaults where noted


def exact(metric, x, q, k, mask=None):
    flat = vc.FlatIndex(x.shape[1], metric)
    flat.add(x)
    return flat.search(q, k, mask=mask)


def positional(x, metric="ip", **params):
    index = hb.HNSWIndex(x.shape[1], metric, **{"ef_construction": 64, **params})
    index.add(x)
    return index


@pytest.fixture(scope="module")
def built(sample):
    """metric -> positional hnsw over the whole sample (5,000 rows)."""
    return {m: positional(sample.base, m) for m in vc.METRICS}


# --------------------------------------------------------------------------- recall, scores
@pytest.mark.parametrize("metric", vc.METRICS)
def test_recall_and_scores_against_exact(built, sample, metric):
    index = built[metric]
    res = index.search(sample.queries, 10)
    ref = exact(metric, sample.base, sample.queries, 10)
    assert recall_at(res.ids, ref.ids, 10) >= 0.97
    assert (res.counts == 10).all()
    # scores follow the library rule: the metric's own score of the returned row
    x = index.get_vectors(res.ids.ravel()).reshape(*res.ids.shape, -1)
    q = index.prepare(sample.queries)
    dots = np.einsum("qkd,qd->qk", x.astype(np.float64), q.astype(np.float64))
    want = dots if metric != "l2" else -np.sum((x - q[:, None, :]) ** 2, axis=2)
    np.testing.assert_allclose(res.scores, want, atol=2e-6)
    assert (np.diff(res.scores, axis=1) <= 1e-6).all()  # best first


def test_default_build_recall_on_sample(sample):
    index = vc.create("hnsw", dim=sample.base.shape[1], metric="ip")
    index.add(sample.base)
    assert index.spec == "hnsw"
    res = index.search(sample.queries, 10)
    assert recall_at(res.ids, sample.gt[:, :10], 10) >= 0.98
    low = index.search(sample.queries, 10, params={"ef": 10})
    assert recall_at(low.ids, sample.gt[:, :10], 10) < recall_at(res.ids, sample.gt[:, :10], 10)


def test_ef_is_at_least_k(built, sample):
    res = built["ip"].search(sample.queries[:5], 300, params={"ef": 1})
    assert (res.counts == 300).all()
    ref = exact("ip", sample.base, sample.queries[:5], 300)
    assert recall_at(res.ids, ref.ids, 300) >= 0.9


# --------------------------------------------------------------------------- masks
@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.8])
def test_masks_return_exactly_k_allowed(built, sample, fraction):
    """1%: the exact route; 50% and 80% (above 2,048 of 5,000 rows): hnswlib's filter."""
    index = built["ip"]
    rng = np.random.default_rng(1)
    mask = np.zeros(index.ntotal, bool)
    mask[rng.permutation(index.ntotal)[: int(fraction * index.ntotal)]] = True
    res = index.search(sample.queries, 10, mask=mask)
    assert (res.counts == 10).all()
    assert mask[res.ids].all()
    ref = exact("ip", sample.base, sample.queries, 10, mask=mask)
    floor = 1.0 if fraction == 0.01 else 0.9
    assert recall_at(res.ids, ref.ids, 10) >= floor
    one = index.search(sample.queries[0], 10, mask=mask)  # single query: same route
    assert (one.counts == 10).all() and mask[one.ids].all()


def test_mask_with_fewer_than_k_allowed_pads(built, sample):
    index = built["cosine"]
    mask = np.zeros(index.ntotal, bool)
    mask[[3, 4000, 17]] = True
    res = index.search(sample.queries[:4], 10, mask=mask)
    assert (res.counts == 3).all() and (res.ids[:, 3:] == -1).all()
    assert all(set(r[:3].tolist()) == {3, 17, 4000} for r in res.ids)
    big = np.ones(index.ntotal, bool)
    big[:10] = False  # the filter route
    res = index.search(sample.queries[:2], 10, mask=big)
    assert (res.counts == 10).all() and (res.ids >= 10).all()


def test_short_graph_search_retries_then_goes_exact(sample, monkeypatch):
    index = positional(sample.base[:3000])
    mask = np.zeros(index.ntotal, bool)
    mask[::2] = True
    mask[:2200] = True  # 2,600 of 3,000 allowed: above the exact route's 2,048
    calls = []

    def short(q, k, ef, filt):
        calls.append(ef)
        return None

    monkeypatch.setattr(index, "_graph_search", short)
    res = index.search(sample.queries[:5], 10, mask=mask, params={"ef": 20})
    assert calls == [20, 80]  # one retry with ef x 4, then exact
    ref = exact("ip", sample.base[:3000], sample.queries[:5], 10, mask=mask)
    np.testing.assert_array_equal(res.ids, ref.ids)
    assert (res.counts == 10).all()


def test_hnswlib_short_error_is_caught(sample):
    index = positional(sample.base[:500])

    class Short:
        def set_ef(self, ef):
            pass

        def knn_query(self, *a, **kw):
            raise RuntimeError("Cannot return the results in a contiguous 2D array. Probably "
                               "ef or M is too small")

    real = index._graph
    index._graph = Short()
    assert index._graph_search(sample.queries[:2], 5, 10, None) is None
    index._graph = real


# --------------------------------------------------------------------------- removes
def test_removes_and_readds_under_idmap_match_flat_on_survivors(sample):
    x, q = sample.base[:2000], sample.queries[:50]
    index = vc.create(SPEC, dim=x.shape[1], metric="cosine")
    ids = index.add(x)
    rng = np.random.default_rng(2)
    gone = rng.choice(ids, 300, replace=False)  # 15%: below the compaction threshold
    assert index.remove(gone) == 300
    inner = index.index
    assert inner.stats()["deleted"] == 300 and inner.stats()["compactions"] == 0
    survivors = np.setdiff1d(ids, gone)
    res = index.search(q, 10)
    assert not np.isin(res.ids, gone).any()
    ref = exact("cosine", x[survivors.astype(np.int64)], q, 10)
    assert recall_at(res.ids, survivors[ref.ids], 10) >= 0.97
    # re-adding reuses the deleted labels (hnswlib updates them in place)
    new_ids = index.add(x[gone.astype(np.int64)] * 2.0, ids=gone + 10_000)
    assert inner.stats() == {"labels": 2000, "deleted": 0, "capacity": inner.capacity,
                             "compactions": 0}
    res = index.search(q, 10)
    all_ids = np.r_[survivors, new_ids]
    all_x = np.r_[x[survivors.astype(np.int64)], x[gone.astype(np.int64)]]
    ref = exact("cosine", all_x, q, 10)
    assert recall_at(res.ids, all_ids[ref.ids], 10) >= 0.97
    assert not np.isin(res.ids, gone).any()
    np.testing.assert_allclose(index.get_vectors(new_ids[:3]),
                               inner.prepare(x[gone[:3].astype(np.int64)]))


def test_compaction_triggers_and_equals_a_fresh_build(sample):
    x, q = sample.base[:1200], sample.queries[:30]
    index = positional(x, "l2")
    index.remove(np.arange(0, 200))
    assert index.stats()["compactions"] == 0 and index.stats()["deleted"] == 200
    index.remove(np.arange(0, 150))  # 350 of 1,200 labels deleted: past 25%
    st = index.stats()
    assert st["compactions"] == 1 and st["deleted"] == 0 and st["labels"] == index.ntotal == 850
    fresh = positional(index.get_vectors(np.arange(index.ntotal)), "l2")
    np.testing.assert_array_equal(index.search(q, 10).ids, fresh.search(q, 10).ids)
    assert index.to_bytes() == fresh.to_bytes()
    surv = index.get_vectors(np.arange(index.ntotal))
    ref = exact("l2", surv, q, 10)
    assert recall_at(index.search(q, 10).ids, ref.ids, 10) >= 0.97


def test_remove_everything_then_add(sample):
    x = sample.base[:100]
    index = positional(x)
    index.remove(np.arange(100))
    assert index.ntotal == 0 and index.stats()["labels"] == 0
    index.add(x[:5])
    res = index.search(x[:5], 1)
    np.testing.assert_array_equal(res.ids[:, 0], np.arange(5))


# --------------------------------------------------------------------------- files
def test_save_load_with_deleted_rows_is_identical(sample, tmp_path):
    x, q = sample.base[:1500], sample.queries[:40]
    index = vc.create(SPEC, dim=x.shape[1], metric="ip")
    ids = index.add(x)
    index.remove(ids[::9])  # 167 deleted, kept as marks in the graph
    assert index.index.stats()["deleted"] == 167
    ref = index.search(q, 10)
    mask_ref = index.search(q, 10, allow=ids[1::2])
    index.save(tmp_path / "h.vecidx")
    other = vc.load(tmp_path / "h.vecidx")
    assert other.index.stats() == index.index.stats()
    for got, want in ((other.search(q, 10), ref), (other.search(q, 10, allow=ids[1::2]),
                                                    mask_ref)):
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.scores, want.scores)
    assert other.to_bytes() == index.to_bytes()
    np.testing.assert_array_equal(other.get_vectors(ids[1:5]), index.get_vectors(ids[1:5]))
    # the loaded index keeps working: reuses the deleted labels, then compacts
    other.add(x[:10], ids=np.arange(10) + 50_000)
    assert other.index.stats()["deleted"] == 157
    assert other.search(q[:1], 1, allow=[50_003]).ids[0, 0] == 50_003


def test_empty_index_round_trips():
    index = hb.HNSWIndex(8, "l2")
    other = vc.VectorIndex.from_bytes(index.to_bytes())
    assert other.ntotal == 0 and other.to_bytes() == index.to_bytes()
    other.add(np.eye(8, dtype=np.float32))
    assert other.search(np.eye(8)[2], 1).ids[0, 0] == 2


def test_file_inconsistencies_raise_format_errors(sample):
    index = positional(sample.base[:300])
    index.remove([5, 6])
    state, arrays = index._get_state()

    def load(state=state, **changed):
        other = hb.HNSWIndex(index.dim, "ip", ef_construction=64)
        other._set_state(state, {**arrays, **changed})

    load()  # the real state loads
    labels = arrays["slot_labels"].copy()
    labels[0] = labels[1]
    with pytest.raises(vc.IndexFormatError, match="repeat"):
        load(slot_labels=labels)
    swapped = arrays["slot_labels"].copy()
    swapped[0] = 5  # a deleted label as a live slot: disagrees with the graph's marks
    with pytest.raises(vc.IndexFormatError, match="deleted marks"):
        load(slot_labels=swapped)
    with pytest.raises(vc.IndexFormatError, match="payload"):
        load(graph=arrays["graph"][:50])
    with pytest.raises(vc.IndexFormatError, match="elements"):
        load(state={"labels": 301})
    with pytest.raises(vc.IndexFormatError, match="M=16.*expected .*M=8"):
        other = hb.HNSWIndex(index.dim, "ip", ef_construction=64, M=8)
        other._set_state(state, arrays)


# --------------------------------------------------------------------------- capacity, threads
def test_capacity_grows_over_many_small_adds(sample):
    x, q = sample.base[:400], sample.queries[:20]
    one = positional(x)
    many = hb.HNSWIndex(x.shape[1], "ip", ef_construction=64)
    caps = []
    for row in x:
        many.add(row)
        caps.append(many.capacity)
    assert caps[0] >= 1 and caps[-1] >= 400
    assert len(set(caps)) <= 20  # geometric growth: few resizes
    assert all(b >= a for a, b in itertools.pairwise(caps))
    # the graph does not depend on capacity: same results as one batch
    a, b = one.search(q, 10), many.search(q, 10)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert many.memory_bytes() > 2 * x.nbytes


def test_same_seed_same_graph_other_seed_differs(sample):
    x = sample.base[:500]
    a, b, c = positional(x, seed=3), positional(x, seed=3), positional(x, seed=4)
    assert a.to_bytes() == b.to_bytes() != c.to_bytes()


def test_non_deterministic_build_still_searches(sample):
    old = vc.get_num_threads()
    vc.set_num_threads(2)
    try:
        index = positional(sample.base[:2000], deterministic=False)
    finally:
        vc.set_num_threads(old)
    ref = exact("ip", sample.base[:2000], sample.queries[:50], 10)
    assert recall_at(index.search(sample.queries[:50], 10).ids, ref.ids, 10) >= 0.97


# --------------------------------------------------------------------------- params, import
def test_params_are_declared_and_checked():
    index = vc.create("hnsw(M=8,ef_construction=50,seed=7,ef=32)", dim=4)
    assert index.spec == "hnsw(M=8,ef_construction=50,seed=7,ef=32)"
    assert dict(index.index.search_defaults) == {"ef": 32}
    for bad, match in [
        ({"M": 1}, "out of range"),
        ({"ef_construction": 0}, "out of range"),
        ({"ef": 0}, "out of range"),
        ({"M": 2.5}, "type float"),
        ({"max_elements": 100}, "unknown parameter 'max_elements'.*valid parameters: M, "
                                "deterministic, ef, ef_construction, seed"),
        ({"deterministic": 1}, "type int"),
    ]:
        with pytest.raises(vc.InvalidParameterError, match=match):
            vc.create("hnsw", dim=4, **bad)
    index.add(np.eye(4, dtype=np.float32))
    with pytest.raises(vc.InvalidParameterError, match="valid search parameters: ef"):
        index.search(np.ones(4), 1, params={"nprobe": 3})
    with pytest.raises(vc.InvalidParameterError, match="out of range"):
        index.search(np.ones(4), 1, params={"ef": -1})
    res = index.search(np.ones(4), 2, params=vc.get_kind("hnsw").SearchParams(ef=5))
    assert res.counts[0] == 2


def test_missing_hnswlib_raises_not_supported_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "hnswlib", None)  # makes `import hnswlib` fail
    with pytest.raises(vc.NotSupportedError, match=r'pip install "vecindex\[hnswlib\]"'):
        vc.create("hnsw", dim=4)
    assert issubclass(vc.NotSupportedError, NotImplementedError)


def test_importing_vecindex_does_not_import_hnswlib():
    import subprocess

    code = "import sys, vecindex_core; print('hnswlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_idmap_allow_and_missing_padding(sample):
    index = vc.create(SPEC, dim=sample.base.shape[1], metric="ip")
    ids = index.add(sample.base[:3000], ids=np.arange(3000) * 3 + 1)
    allow = ids[:2500]  # above the exact threshold: hnswlib's filter
    res = index.search(sample.queries[:10], 10, allow=allow)
    assert np.isin(res.ids, allow).all() and (res.counts == 10).all()
    res = index.search(sample.queries[:2], 5, allow=ids[:2])
    assert (res.counts == 2).all() and (res.ids[:, 2:] == MISSING).all()
