"""The ``annoy`` kind: recall, masks, the lazy rebuild, persistence, scores and parameters.

The conformance suite covers the contract; these tests pin what is particular to the annoy
wrapper (its rebuild counter, over-fetch and exact fallback, score conversions, its forest
file and the optional import).
"""

import builtins
import os
import subprocess
import sys

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core.backends import annoy_backend
from vecindex_core.backends.annoy_backend import AnnoyIndex


def runs_without_annoy(test):
    """Mark a test that must run (and pass) whether or not annoy is installed."""
    test.runs_without_annoy = True
    return test


@pytest.fixture(autouse=True)
def _needs_annoy(request):
    if not getattr(request.function, "runs_without_annoy", False):
        pytest.importorskip("annoy", reason='annoy is not installed: pip install "vecindex[annoy]"')


def recall(got, ref, k=10):
    return float(np.mean([len(set(a[:k].tolist()) & set(b[:k].tolist())) / k
                          for a, b in zip(got, ref, strict=True)]))


def exact(metric, x, q, k, mask=None):
    flat = vc.FlatIndex(x.shape[1], metric)
    flat.add(x)
    return flat.search(q, k, mask=mask)


def true_scores(metric, x, q, slots):
    """Our scores of ``x[slots]`` for each query row, in float64."""
    x, q = x.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    v = x[slots]
    if metric == "l2":
        return -np.sum((v - q[:, None, :]) ** 2, axis=2)
    return np.einsum("qkd,qd->qk", v, q)


@pytest.fixture(scope="module")
def blobs():
    """6,000 x 16 clustered vectors and 30 queries: large enough to pass the exact route."""
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(40, 16)).astype(np.float32)
    x = centers[rng.integers(0, 40, 6000)] + 0.3 * rng.normal(size=(6000, 16)).astype(np.float32)
    q = centers[rng.integers(0, 40, 30)] + 0.3 * rng.normal(size=(30, 16)).astype(np.float32)
    return x.astype(np.float32), q.astype(np.float32)


# --------------------------------------------------------------------------- recall
@pytest.mark.parametrize(("metric", "floor"), [("cosine", 0.75), ("ip", 0.62), ("l2", 0.75)])
def test_recall_on_the_sample_and_search_k(sample, metric, floor):
    index = vc.create("annoy", dim=384, metric=metric)
    index.add(sample.base)
    ref = exact(metric, sample.base, sample.queries, 10).ids
    default = recall(index.search(sample.queries, 10).ids, ref)
    assert default >= floor
    wide = recall(index.search(sample.queries, 10, params={"search_k": 5000}).ids, ref)
    assert wide >= max(default, 0.9)  # measured 0.96-0.99
    assert index.index.stats()["rebuilds"] == 1  # a search knob never rebuilds
    zero = index.search(sample.queries, 10, params={"search_k": 0})
    np.testing.assert_array_equal(zero.ids, index.search(sample.queries, 10).ids)


@pytest.mark.parametrize("metric", vc.METRICS)
def test_scores_are_converted_to_our_rule(sample, metric):
    x, q = sample.base[:2000], sample.queries[:20]
    index = AnnoyIndex(384, metric)
    index.add(x)
    res = index.search(q, 10)
    assert (res.counts == 10).all()
    np.testing.assert_allclose(res.scores, true_scores(metric, x, q, res.ids), atol=2e-6,
                               rtol=1e-5)
    assert (np.diff(res.scores, axis=1) <= 0).all()  # best first
    ex = exact(metric, x, q, 1)
    top = res.ids[:, 0] == ex.ids[:, 0]
    np.testing.assert_allclose(res.scores[top, 0], ex.scores[top, 0], atol=2e-6, rtol=1e-5)


def test_zero_vectors_score_zero_under_cosine():
    index = AnnoyIndex(4, "cosine")
    index.add(np.array([[0, 0, 0, 0], [1, 0, 0, 0]], np.float32))
    res = index.search(np.array([0, 1, 0, 0], np.float32), 2)
    np.testing.assert_allclose(np.sort(res.scores[0]), [0.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 3, 70])
@pytest.mark.parametrize("metric", vc.METRICS)
def test_tiny_indexes_return_every_row(n, metric):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    index = AnnoyIndex(8, metric, n_trees=5)
    index.add(x)
    k = min(n, 10)
    res = index.search(rng.normal(size=(4, 8)), k)
    assert (res.counts == k).all()
    ref = exact(metric, x, rng.normal(size=(4, 8)), k)  # shape only
    assert res.ids.shape == ref.ids.shape
    for row in res.ids:
        assert len(set(row.tolist())) == k


# --------------------------------------------------------------------------- masks
@pytest.mark.parametrize("metric", vc.METRICS)
def test_one_percent_mask_returns_exactly_k_allowed(sample, metric):
    index = vc.create("annoy", dim=384, metric=metric)
    ids = index.add(sample.base)
    allowed = ids[np.random.default_rng(5).random(len(ids)) < 0.01]
    assert len(allowed) >= 10
    res = index.search(sample.queries, 10, allow=allowed)
    assert (res.counts == 10).all() and np.isin(res.ids, allowed).all()
    assert index.index.stats()["exact_routes"] == 1  # 50 rows: searched exactly
    mask = np.isin(ids, allowed)
    ref = exact(metric, sample.base, sample.queries, 10, mask=mask)
    np.testing.assert_array_equal(res.ids.astype(np.int64), ref.ids)


def test_one_percent_mask_by_over_fetch(sample, monkeypatch):
    """With the exact route off, the bounded over-fetch (then exact fallback) still fills k."""
    index = AnnoyIndex(384, "ip")
    index.add(sample.base)
    monkeypatch.setattr(index, "_exact_route", lambda mask: None)
    mask = np.random.default_rng(6).random(len(sample.base)) < 0.01
    res = index.search(sample.queries, 10, mask=mask)
    assert (res.counts == 10).all() and mask[res.ids].all()
    ref = exact("ip", sample.base, sample.queries, 10, mask=mask)
    assert recall(res.ids, ref.ids) >= 0.9
    stats = index.stats()
    assert stats["exact_routes"] == 0 and stats["rebuilds"] == 1


def test_over_fetch_retries_then_falls_back_to_exact(blobs):
    x, q = blobs
    index = AnnoyIndex(16, "l2", n_trees=10)
    index.add(x)
    # 40% of the rows (above the exact route) are allowed, but only the ones farthest from
    # query 0: annoy's nearest candidates are all disallowed, so only the fallback finds them
    d = ((x - q[0]) ** 2).sum(1)
    mask = np.zeros(len(x), bool)
    mask[np.argsort(d)[-2400:]] = True
    res = index.search(q[:1], 10, mask=mask)
    assert res.counts.tolist() == [10] and mask[res.ids].all()
    ref = exact("l2", x, q[:1], 10, mask=mask)
    np.testing.assert_array_equal(res.ids, ref.ids)
    np.testing.assert_allclose(res.scores, ref.scores, rtol=1e-5)
    stats = index.stats()
    assert stats["exact_routes"] == 0
    assert stats["overfetch_retries"] >= 1 and stats["exact_fallbacks"] == 1


def test_random_large_mask_uses_annoy(blobs):
    x, q = blobs
    index = AnnoyIndex(16, "cosine", n_trees=20)
    index.add(x)
    mask = np.random.default_rng(8).random(len(x)) < 0.45  # about 2,700 rows allowed
    res = index.search(q, 10, mask=mask)
    assert (res.counts == 10).all() and mask[res.ids].all()
    assert recall(res.ids, exact("cosine", x, q, 10, mask=mask).ids) >= 0.9
    assert index.stats()["exact_routes"] == 0


# --------------------------------------------------------------------------- lazy rebuild
def test_changes_then_one_search_is_one_rebuild(sample):
    x, q = sample.base[:1500], sample.queries[:5]
    index = AnnoyIndex(384, "cosine", n_trees=10)
    assert index.stats()["rebuilds"] == 0 and index.is_built  # empty: nothing to build
    for i in range(0, 1000, 100):
        index.add(x[i : i + 100])
    index.remove([3, 50, 999])
    assert index.stats()["rebuilds"] == 0 and not index.is_built
    assert index.stats()["forest_bytes"] == 0
    index.search(q, 5)
    index.search(q, 5, params={"search_k": 300})
    stats = index.stats()
    assert stats["rebuilds"] == 1 and stats["built"] and stats["forest_bytes"] > 0
    assert index.memory_bytes() == index._data.nbytes + stats["forest_bytes"]
    index.add(x[1000:])
    index.remove([0])
    index.search(q, 5)
    assert index.stats()["rebuilds"] == 2
    index.to_bytes()  # built: a save reads the forest, it does not rebuild
    assert index.stats()["rebuilds"] == 2
    index.add(x[:1])
    index.to_bytes()  # stale: a save builds (the same build the next search would do)
    index.search(q, 5)
    assert index.stats()["rebuilds"] == 3


def test_forest_file_is_removed_when_stale_or_dropped(sample):
    index = AnnoyIndex(384, "l2", n_trees=5)
    index.add(sample.base[:300])
    index.search(sample.queries[:2], 3)
    path = index._forest.path
    assert os.path.exists(path)
    index.add(sample.base[300:310])
    assert not os.path.exists(path) and index._forest is None
    index.search(sample.queries[:2], 3)
    path = index._forest.path
    del index
    assert not os.path.exists(path)


@pytest.mark.parametrize("metric", vc.METRICS)
def test_removes_under_id_map_keep_results_right(sample, metric):
    x, q = sample.base[:3000], sample.queries[:30]
    index = vc.create("annoy(n_trees=20)", dim=384, metric=metric)
    ids = index.add(x, ids=np.arange(3000, dtype=np.uint64) * 5 + 1)
    gone = ids[np.random.default_rng(2).random(3000) < 0.3]
    assert index.remove(gone[: len(gone) // 2]) == len(gone) // 2
    index.search(q, 10)  # a rebuild between the two removes
    assert index.remove(gone) == len(gone) - len(gone) // 2
    res = index.search(q, 10, params={"search_k": 4000})
    assert not np.isin(res.ids, gone).any() and (res.counts == 10).all()
    keep = np.flatnonzero(~np.isin(ids, gone))
    ref = exact(metric, x[keep], q, 10)
    assert recall(res.ids, ids[keep][ref.ids]) >= 0.9
    rows = ((res.ids - 1) // 5).astype(np.int64)  # id -> original row
    np.testing.assert_allclose(res.scores, true_scores(metric, x, q, rows), atol=2e-6, rtol=1e-5)
    np.testing.assert_array_equal(index.get_vectors(res.ids[0]),
                                  index.index.prepare(x[rows[0]]))


# --------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("metric", vc.METRICS)
def test_save_load_gives_identical_results(sample, metric, tmp_path):
    index = vc.create("annoy(n_trees=20,seed=7)", dim=384, metric=metric)
    ids = index.add(sample.base[:2000])
    index.remove(ids[::7])
    ref = index.search(sample.queries, 10)
    index.save(tmp_path / "a.vecidx")
    loaded = vc.load(tmp_path / "a.vecidx")
    res = loaded.search(sample.queries, 10)
    np.testing.assert_array_equal(res.ids, ref.ids)
    np.testing.assert_array_equal(res.scores, ref.scores)
    assert loaded.index.stats()["rebuilds"] == 0  # the stored forest is mapped, not rebuilt
    assert loaded.to_bytes() == index.to_bytes()
    # rebuilding from the kept vectors gives the same forest: same seed, one build thread
    loaded.index._invalidate()
    np.testing.assert_array_equal(loaded.search(sample.queries, 10).ids, ref.ids)
    assert loaded.index.stats()["rebuilds"] == 1
    assert loaded.to_bytes() == index.to_bytes()


def test_load_rejects_a_forest_that_does_not_match(sample):
    a, b = AnnoyIndex(384, "cosine", n_trees=5), AnnoyIndex(384, "cosine", n_trees=5)
    a.add(sample.base[:100])
    b.add(sample.base[:120])
    header, arrays = a._to_file()
    arrays["index/forest"] = b._to_file()[1]["index/forest"]
    from vecindex_core.base import index_from_file

    with pytest.raises(vc.IndexFormatError, match="120 items"):
        index_from_file(header, arrays, "test")
    del arrays["index/forest"]
    with pytest.raises(vc.IndexFormatError, match="forest does not match"):
        index_from_file(header, arrays, "test")
    arrays["index/forest"] = np.zeros(13, np.uint8)  # not a whole number of nodes
    with pytest.raises(vc.IndexFormatError, match="could not load"):
        index_from_file(header, arrays, "test")


def test_same_seed_same_forest_other_seed_other_forest(sample):
    def build(**params):
        index = AnnoyIndex(384, "ip", n_trees=10, **params)
        index.add(sample.base[:1000])
        return index

    assert build(seed=3).to_bytes() == build(seed=3).to_bytes()
    assert build(seed=3).to_bytes() != build(seed=4).to_bytes()


def test_parallel_build(sample):
    index = vc.create("annoy(parallel_build=true)", dim=384, metric="cosine")
    index.add(sample.base)
    ref = exact("cosine", sample.base, sample.queries, 10).ids
    assert recall(index.search(sample.queries, 10).ids, ref) >= 0.75


# --------------------------------------------------------------------------- parameters
@pytest.mark.parametrize(("spec", "match"), [
    ("annoy(n_trees=0)", r"n_trees=0 is out of range"),
    ("annoy(n_trees=2.5)", r"n_trees=2.5 has type float"),
    ("annoy(seed=-1)", r"seed=-1 is out of range"),
    ("annoy(seed=2147483648)", r"seed=2147483648 is out of range"),
    ("annoy(search_k=-2)", r"search_k=-2 is out of range"),
    ("annoy(ntrees=10)", r"'ntrees'.*valid parameters: n_trees, parallel_build, search_k, seed"),
])
def test_bad_parameters(spec, match):
    with pytest.raises(vc.InvalidParameterError, match=match):
        vc.create(spec, dim=8)


def test_bad_search_parameters(sample):
    index = vc.create("annoy(n_trees=3)", dim=384)
    index.add(sample.base[:50])
    with pytest.raises(vc.InvalidParameterError, match="search_k=-5 is out of range"):
        index.search(sample.queries[:1], 3, params={"search_k": -5})
    with pytest.raises(vc.InvalidParameterError, match="'ef'.*valid search parameters: search_k"):
        index.search(sample.queries[:1], 3, params={"ef": 5})
    typed = vc.get_kind("annoy").SearchParams(search_k=200)
    assert index.search(sample.queries[:1], 3, params=typed).counts.tolist() == [3]


def test_spec_round_trips():
    index = vc.create("annoy(n_trees=20,search_k=1000,seed=4)", dim=8, metric="l2")
    assert index.spec == "annoy(n_trees=20,seed=4,search_k=1000)"
    assert dict(index.index.search_defaults) == {"search_k": 1000}


# --------------------------------------------------------------------------- optional import
@runs_without_annoy
def test_missing_annoy_raises_not_supported_naming_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_annoy(name, *args, **kwargs):
        if name == "annoy" or name.startswith("annoy."):
            raise ImportError("No module named 'annoy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "annoy", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_annoy)
    with pytest.raises(vc.NotSupportedError, match=r'pip install "vecindex\[annoy\]"') as info:
        vc.create("annoy", dim=8)
    assert isinstance(info.value.__cause__, ImportError)
    with pytest.raises(vc.NotSupportedError, match="annoy"):
        annoy_backend.AnnoyIndex(8)
    assert "annoy" in vc.list_indexes()  # registered all the same


@runs_without_annoy
def test_importing_vecindex_core_does_not_import_annoy():
    code = "import sys, vecindex_core; print('annoy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
