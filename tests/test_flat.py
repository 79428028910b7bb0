"""FlatIndex against a plain numpy reference."""

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core._kernels.topk import SMALL_BATCH


def reference(x, q, k, metric, mask=None):
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    s = q @ x.T
    if metric == "l2":
        qn = np.einsum("ij,ij->i", q, q)
        xn = np.einsum("ij,ij->i", x, x)
        s = -np.maximum((qn[:, None] + xn[None, :]) - np.float32(2) * s, np.float32(0))
    if mask is not None:
        s = np.where(mask[None, :], s, -np.inf).astype(np.float32)
    slots = np.broadcast_to(np.arange(x.shape[0]), s.shape)
    order = np.lexsort((slots, -s), axis=-1)[:, :k]
    return np.take_along_axis(s, order, 1), order


@pytest.fixture(scope="module")
def data(sample):
    return sample.base[:3000], sample.queries[:64]


@pytest.mark.parametrize("metric", vc.METRICS)
def test_batched_equals_numpy_exactly(data, metric):
    x, q = data
    index = vc.FlatIndex(384, metric)
    index.add(x)
    res = index.search(q, 10)
    s, i = reference(x, q, 10, metric)
    np.testing.assert_array_equal(res.ids, i)
    np.testing.assert_array_equal(res.scores, s)


@pytest.mark.parametrize("metric", vc.METRICS)
def test_small_batches_same_ids_scores_to_rounding(data, metric):
    x, q = data
    index = vc.FlatIndex(384, metric)
    index.add(x)
    for nq in (1, SMALL_BATCH - 1):
        res = index.search(q[:nq], 10)
        s, i = reference(x, q[:nq], 10, metric)
        np.testing.assert_array_equal(res.ids, i)
        np.testing.assert_allclose(res.scores, s, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("allowed", [0.05, 0.6])
@pytest.mark.parametrize("nq", [1, 32])
def test_masks_gather_and_in_scan(data, allowed, nq):
    x, q = data
    mask = np.random.default_rng(3).random(len(x)) < allowed
    index = vc.FlatIndex(384, "ip")
    index.add(x)
    res = index.search(q[:nq], 10, mask=mask)
    s, i = reference(x, q[:nq], 10, "ip", mask)
    np.testing.assert_array_equal(res.ids, i)
    np.testing.assert_allclose(res.scores, s, rtol=1e-6, atol=1e-6)


def test_ties_prefer_lower_slot():
    x = np.ones((10, 4), np.float32)
    index = vc.FlatIndex(4, "ip")
    index.add(x)
    for nq in (1, 20):
        res = index.search(np.ones((nq, 4)), 3)
        assert (res.ids == [0, 1, 2]).all()


def test_large_batch_bounded_and_thread_independent(sample):
    x, q = sample.base, np.tile(sample.queries, (12, 1))  # 2,400 queries: several blocks
    index = vc.FlatIndex(384, "cosine")
    index.add(x)
    old = vc.get_num_threads()
    try:
        vc.set_num_threads(1)
        one = index.search(q, 10)
        vc.set_num_threads(2)
        two = index.search(q, 10)
    finally:
        vc.set_num_threads(old)
    np.testing.assert_array_equal(one.ids, two.ids)
    np.testing.assert_array_equal(one.scores, two.scores)


def test_swap_remove_reports_moves():
    index = vc.FlatIndex(2, "ip")
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    index.add(x)
    moves = index.remove([1, 3])
    assert moves.src.tolist() == [5, 4] and moves.dst.tolist() == [1, 3]
    np.testing.assert_array_equal(index.get_vectors([0, 1, 2, 3]), x[[0, 5, 2, 4]])
