"""FlatIndex against a plain numpy reference (the ``reference`` fixture in conftest).

Batched searches (``nq >= SMALL_BATCH``) must give numpy's ranking and scores, up to the
BLAS kernel's rounding by tile position (bit for bit with OpenBLAS's SkylakeX kernels; see
``conftest.assert_same_topk``). Smaller batches use a fused single-pass kernel whose float32
sums run in another order: its ids must still equal numpy's, its scores within rtol 1e-6.
"""

import tracemalloc

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import flat as flat_module
from vecindex_core._kernels import topk
from vecindex_core._kernels.topk import DB_BLOCK, QUERY_BLOCK, SMALL_BATCH

from .conftest import assert_same_topk


@pytest.fixture(scope="module")
def data(sample):
    """3,000 rows (two database blocks) and 64 queries of real embeddings."""
    return sample.base[:3000], sample.queries[:64]


def build(x, metric):
    index = vc.FlatIndex(x.shape[1], metric)
    index.add(x)
    return index


def assert_exact(res, ref):
    """numpy's ranking and scores, up to BLAS rounding by tile position (conftest)."""
    assert_same_topk(res, ref)


def assert_close(res, ref):
    """Fused-kernel results: same ids; scores within rtol 1e-6 of the largest |score| in the
    row (a relative bound on each score alone is meaningless where a sum cancels to ~0)."""
    scores, ids, counts = ref
    np.testing.assert_array_equal(res.ids, ids)
    np.testing.assert_array_equal(np.isneginf(res.scores), np.isneginf(scores))
    finite = np.isfinite(scores)
    scale = np.abs(np.where(finite, scores, 0)).max(axis=1, keepdims=True)
    diff = np.abs(np.where(finite, res.scores, 0) - np.where(finite, scores, 0))
    assert (diff <= 1e-6 * scale).all(), f"max score difference {diff.max()} (scale {scale.max()})"
    np.testing.assert_array_equal(res.counts, counts)


@pytest.fixture
def threads():
    """Restore the kernel thread count after a test changes it."""
    old = vc.get_num_threads()
    yield vc.set_num_threads
    vc.set_num_threads(old)


# --------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("metric", vc.METRICS)
@pytest.mark.parametrize("k", [1, 10, 100])
def test_batched_equals_numpy_exactly(data, reference, metric, k):
    x, q = data
    res = build(x, metric).search(q, k)
    assert res.ids.dtype == np.int64 and res.scores.dtype == np.float32
    assert_exact(res, reference(x, q, k, metric))


@pytest.mark.parametrize("metric", vc.METRICS)
def test_batch_size_boundaries_exact(sample, reference, metric):
    # a last database block of 77 rows: a small BLAS call next to full 2048-row tiles
    x = sample.base[: DB_BLOCK + 77]
    index = build(x, metric)
    for nq in (SMALL_BATCH, SMALL_BATCH + 1, QUERY_BLOCK + 3):
        q = np.resize(sample.queries, (nq, x.shape[1]))  # repeats the 200 queries
        assert_exact(index.search(q, 10), reference(x, q, 10, metric))


@pytest.mark.parametrize("metric", vc.METRICS)
def test_small_batches_same_ids_scores_to_rounding(data, reference, metric):
    x, q = data
    index = build(x, metric)
    for nq in range(1, SMALL_BATCH):
        assert_close(index.search(q[:nq], 10), reference(x, q[:nq], 10, metric))
    assert_close(index.search(q[5], 10), reference(x, q[5:6], 10, metric))


@pytest.mark.parametrize("metric", vc.METRICS)
def test_k_equal_and_above_n(reference, metric, rng):
    x = rng.standard_normal((37, 12)).astype(np.float32)
    q = rng.standard_normal((9, 12)).astype(np.float32)
    index = build(x, metric)
    for k in (37, 50):
        res = index.search(q, k)
        assert_exact(res, reference(x, q, k, metric))
        assert (res.counts == 37).all()
        assert_close(index.search(q[:2], k), reference(x, q[:2], k, metric))


def test_recall_on_bundled_sample_is_one(sample, recall):
    index = build(sample.base, "ip")
    assert recall(index.search(sample.queries, 10).ids, sample.gt, 10) == 1.0
    assert recall(index.search(sample.queries[:3], 10).ids, sample.gt[:3], 10) == 1.0


# --------------------------------------------------------------------------- ties
@pytest.mark.parametrize("metric", vc.METRICS)
def test_duplicate_rows_tie_to_the_lower_slot(sample, reference, metric):
    x = sample.base[: DB_BLOCK + 500].copy()
    q = sample.queries[:16]
    # copies of row 7 in the first block, the chunk after it and the second block
    for dup in (8, 70, 2100, DB_BLOCK + 499):
        x[dup] = x[7]
    index = build(x, metric)
    target = np.resize(x[7], (16, x.shape[1]))  # queries equal to the duplicated row
    for nq in (1, 3, 16):
        res = index.search(target[:nq], 3)
        assert (res.ids == [7, 8, 70]).all(), res.ids
        res = index.search(target[:nq], 6)
        assert (res.ids[:, :5] == [7, 8, 70, 2100, DB_BLOCK + 499]).all()
    assert_exact(index.search(q, 20), reference(x, q, 20, metric))
    mask = np.ones(len(x), bool)
    mask[[7, 70]] = False
    res = index.search(target, 2, mask=mask)
    assert (res.ids == [8, 2100]).all()


def test_all_equal_rows_return_the_first_slots():
    index = build(np.ones((300, 4), np.float32), "ip")
    for nq in (1, 20):
        res = index.search(np.ones((nq, 4)), 5)
        assert (res.ids == [0, 1, 2, 3, 4]).all()
        assert (res.scores == 4).all()


@pytest.mark.parametrize("nq", [1, 3])
def test_fused_kernel_split_over_threads_keeps_tie_order(threads, nq, rng):
    # enough rows that a small batch is split between two threads (two partial heaps)
    n = 2 * topk._MIN_ROWS_PER_THREAD + 100
    x = rng.standard_normal((n, 8)).astype(np.float32)
    best = np.full(8, 3.0, np.float32)
    for slot in (n - 1, n // 2 + 5, n // 2 - 5, 11):
        x[slot] = best
    index = build(x, "ip")
    q = np.tile(best, (nq, 1))
    results = []
    for t in (1, 2):
        threads(t)
        res = index.search(q, 3)
        assert (res.ids == [11, n // 2 - 5, n // 2 + 5]).all(), res.ids
        results.append(index.search(q, 50))
    np.testing.assert_array_equal(results[0].ids, results[1].ids)
    np.testing.assert_array_equal(results[0].scores, results[1].scores)


# --------------------------------------------------------------------------- masks
@pytest.mark.parametrize("metric", vc.METRICS)
@pytest.mark.parametrize("allowed", [0.01, 0.1, 0.24, 0.3, 0.9])
def test_masks_batched_exact(data, reference, metric, allowed):
    x, q = data
    mask = np.random.default_rng(3).random(len(x)) < allowed
    res = build(x, metric).search(q, 10, mask=mask)
    assert np.isin(res.ids[res.ids >= 0], np.flatnonzero(mask)).all()
    assert_exact(res, reference(x, q, 10, metric, mask))


@pytest.mark.parametrize("metric", vc.METRICS)
def test_masks_batched_exact_with_very_few_rows(data, reference, metric):
    # the gather path multiplies SMALL_BATCH queries by 3 rows: a tiny BLAS call
    x, q = data[0], data[1][:SMALL_BATCH]
    mask = np.zeros(len(x), bool)
    mask[[10, 1234, 2999]] = True
    res = build(x, metric).search(q, 10, mask=mask)
    assert np.isin(res.ids[res.ids >= 0], np.flatnonzero(mask)).all()
    assert_exact(res, reference(x, q, 10, metric, mask))


@pytest.mark.parametrize("metric", vc.METRICS)
@pytest.mark.parametrize("allowed", [0.01, 0.3, 0.9])
def test_masks_single_query(data, reference, metric, allowed):
    x, q = data
    mask = np.random.default_rng(4).random(len(x)) < allowed
    index = build(x, metric)
    for nq in (1, SMALL_BATCH - 1):
        assert_close(index.search(q[:nq], 10, mask=mask), reference(x, q[:nq], 10, metric, mask))


def test_selective_mask_uses_the_gather_path(data, reference, monkeypatch):
    x, q = data
    mask = np.zeros(len(x), bool)
    mask[::50] = True  # 2% of rows
    calls = []
    real = flat_module.dense_topk

    def spy(queries, rows, k, **kwargs):
        calls.append((rows.shape[0], kwargs.get("slot_map") is not None))
        return real(queries, rows, k, **kwargs)

    monkeypatch.setattr(flat_module, "dense_topk", spy)
    index = build(x, "l2")
    res = index.search(q, 10, mask=mask)
    assert len(calls) == 1 and calls[0][1], "a 2% mask should scan gathered rows only"
    assert mask.sum() <= calls[0][0] < len(x)
    assert_exact(res, reference(x, q, 10, "l2", mask))
    calls.clear()
    index.search(q, 10, mask=np.ones(len(x), bool))
    assert calls == [(len(x), False)], "a broad mask is applied inside the full scan"


@pytest.mark.parametrize("nq", [1, 16])
def test_mask_with_fewer_allowed_rows_than_k(data, reference, nq):
    x, q = data
    mask = np.zeros(len(x), bool)
    mask[[10, 2999, 1234]] = True
    res = build(x, "cosine").search(q[:nq], 5, mask=mask)
    assert (res.counts == 3).all()
    assert (res.ids[:, 3:] == -1).all() and np.isneginf(res.scores[:, 3:]).all()
    assert_close(res, reference(x, q[:nq], 5, "cosine", mask))


# --------------------------------------------------------------------------- scale
def test_many_queries_use_bounded_memory(sample, reference):
    x = sample.base
    q = np.resize(sample.queries, (3000, x.shape[1]))
    index = build(x, "ip")
    tracemalloc.start()
    try:
        res = index.search(q, 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    full_matrix = q.shape[0] * x.shape[0] * 4
    assert peak < full_matrix / 4, f"search peaked at {peak} bytes of numpy memory"
    assert res.ids.shape == (3000, 10)
    np.testing.assert_array_equal(res.ids[:200], res.ids[200:400])  # queries repeat
    pick = np.arange(0, 3000, 97)
    np.testing.assert_array_equal(res.ids[pick], reference(x, q[pick], 10, "ip")[1])


@pytest.mark.parametrize("metric", vc.METRICS)
def test_thread_count_does_not_change_results(sample, threads, metric):
    x = sample.base
    q = np.resize(sample.queries, (QUERY_BLOCK + 100, x.shape[1]))
    index = build(x, metric)
    out = []
    for t in (1, 2):
        threads(t)
        out.append((index.search(q, 10), index.search(q[:3], 10)))
    for a, b in zip(*out, strict=True):
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.scores, b.scores)


def test_set_num_threads_rejects_bad_values(threads):
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(vc.InvalidArgumentError, match="num_threads"):
            threads(bad)


# --------------------------------------------------------------------------- storage
def test_swap_remove_reports_moves():
    index = vc.FlatIndex(2, "ip")
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    index.add(x)
    moves = index.remove([1, 3])
    assert moves.src.tolist() == [5, 4] and moves.dst.tolist() == [1, 3]
    np.testing.assert_array_equal(index.vectors, x[[0, 5, 2, 4]])
    moves = index.remove([3])  # the last slot: nothing moves
    assert moves.src.size == moves.dst.size == 0
    np.testing.assert_array_equal(index.vectors, x[[0, 5, 2]])
    moves = index.remove([])
    assert moves.src.size == 0 and index.ntotal == 3


@pytest.mark.parametrize("metric", vc.METRICS)
def test_search_after_removes_equals_reference(data, reference, metric):
    x, q = data
    index = build(x, metric)
    rows = np.arange(len(x))
    rng = np.random.default_rng(5)
    for _ in range(4):
        gone = rng.choice(index.ntotal, size=200, replace=False)
        moves = index.remove(gone)
        rows[moves.dst] = rows[moves.src]
        rows = rows[: index.ntotal]
    assert index.ntotal == len(x) - 800
    s, i, c = reference(x[rows], q, 10, metric)
    assert_exact(index.search(q, 10), (s, i, c))


def test_single_adds_equal_one_batch(rng):
    x = rng.standard_normal((150, 5)).astype(np.float32)
    for metric in vc.METRICS:
        one, many = vc.FlatIndex(5, metric), vc.FlatIndex(5, metric)
        one.add(x)
        for row in x:
            many.add(row)
        assert one.to_bytes() == many.to_bytes()
        assert many.memory_bytes() >= 150 * 5 * 4


def test_stored_vectors_views_and_get_vectors(rng):
    x = rng.standard_normal((10, 6)).astype(np.float32)
    ip, cos = build(x, "ip"), build(x, "cosine")
    np.testing.assert_array_equal(ip.vectors, x)
    with pytest.raises(ValueError, match="read-only"):
        ip.vectors[0, 0] = 1
    np.testing.assert_array_equal(ip.get_vectors([3, 1, 3]), x[[3, 1, 3]])
    np.testing.assert_allclose(np.linalg.norm(cos.vectors, axis=1), 1, rtol=1e-6)
    assert ip.keeps_vectors


def test_cosine_keeps_zero_vectors_at_zero():
    index = build(np.array([[0, 0, 0], [1, 0, 0]], np.float32), "cosine")
    res = index.search(np.array([1, 0, 0], np.float32), 2)
    assert res.ids.tolist() == [[1, 0]] and res.scores.tolist() == [[1.0, 0.0]]
    assert index.search(np.zeros(3), 2).scores.tolist() == [[0.0, 0.0]]


@pytest.mark.parametrize("metric", vc.METRICS)
def test_l2_and_other_metrics_survive_save_load(data, tmp_path, metric):
    x, q = data
    index = build(x[:500], metric)
    index.save(tmp_path / "f.vecidx")
    again = vc.FlatIndex.load(tmp_path / "f.vecidx")
    assert isinstance(again, vc.FlatIndex) and again.metric == metric
    for nq in (2, 20):
        a, b = index.search(q[:nq], 10), again.search(q[:nq], 10)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.scores, b.scores)
    again.add(x[500:510])  # a loaded index can grow
    assert again.ntotal == 510
