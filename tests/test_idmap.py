"""IdMapIndex: ids, the saved counter, swap-remove bookkeeping, automatic training."""

import copy
import pickle

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import MISSING


@pytest.fixture
def vecs(rng):
    return rng.standard_normal((200, 8)).astype(np.float32)


def flat(metric="ip", dim=8):
    return vc.create("flat", dim=dim, metric=metric)


def check_consistent(index):
    """Every id maps to its own slot, and ``ids`` follows the inner index's slot order."""
    ids = index.ids
    assert ids.shape == (len(index),) and len(np.unique(ids)) == len(ids)
    active = index._staging if index._staging is not None else index.index
    if len(ids):
        np.testing.assert_array_equal(index.get_vectors(ids), active.get_vectors(range(len(ids))))
    assert all(int(i) in index for i in ids)


# --------------------------------------------------------------------------- ids and counter
def test_ids_without_ids_count_up_and_are_uint64():
    index = flat(dim=3)
    first = index.add(np.eye(3))
    assert first.dtype == np.uint64 and first.tolist() == [0, 1, 2]
    assert index.add(np.ones(3)).tolist() == [3]
    assert index.next_id == 4
    np.testing.assert_array_equal(index.ids, np.arange(4, dtype=np.uint64))


def test_counter_is_saved_and_skips_explicit_ids(tmp_path):
    index = flat(dim=3)
    assert index.add(np.eye(3)).tolist() == [0, 1, 2]
    index.add(np.ones(3), ids=[10])
    assert index.next_id == 11
    assert index.add(np.ones(3)).tolist() == [11]
    index.add(np.ones((2, 3)), ids=[5, 6])  # below the counter: it does not move back
    assert index.next_id == 12
    index.remove([11])  # removing the newest id does not free it
    index.save(tmp_path / "i.vecidx")
    again = vc.load(tmp_path / "i.vecidx")
    assert again.next_id == 12
    assert again.add(np.ones(3)).tolist() == [12]
    for other in (pickle.loads(pickle.dumps(index)), copy.copy(index)):
        assert other.add(np.ones(3)).tolist() == [12]


def test_huge_ids_and_the_counter_limit():
    index = flat(dim=2)
    top = MISSING - 1  # the largest valid id
    index.add(np.ones((2, 2)), ids=np.array([2**63 + 5, top], np.uint64))
    assert index.next_id == MISSING
    assert top in index and 2**63 + 5 in index
    with pytest.raises(vc.InvalidArgumentError, match="counter"):
        index.add(np.ones(2))
    res = index.search(np.ones(2), 2)
    assert sorted(res.ids[0].tolist()) == [2**63 + 5, top]
    again = vc.IdMapIndex.from_bytes(index.to_bytes())
    assert again.next_id == MISSING and top in again


def test_python_int_ids_above_2_63_mixed_with_small_ones():
    # hash-derived uint64 ids arrive as Python ints; a list mixing magnitudes is still ids
    index = flat(dim=2)
    ids = [1, 2**63 + 5, 2**64 - 2]
    assert index.add(np.ones((3, 2)), ids=ids).tolist() == ids
    assert index.remove([1, 2**63 + 5]) == 2


def test_contains_in_len():
    index = flat(dim=4)
    index.add(np.ones((5, 4)), ids=[50, 40, 30, 20, 10])
    assert len(index) == index.ntotal == 5
    assert 30 in index and index.contains(30) and np.uint64(30) in index and np.int8(30) in index
    for absent in (31, -1, 2**70, MISSING, "30", 30.0, None, True, [30]):
        assert absent not in index
        assert not index.contains(absent)
    index.remove([30])
    assert 30 not in index and len(index) == 4


def test_get_vectors_order_and_unknown_ids(vecs):
    index = flat()
    x = vecs[:5]
    index.add(x, ids=[50, 40, 30, 20, 10])
    np.testing.assert_array_equal(index.get_vectors([10, 50]), x[[4, 0]])
    np.testing.assert_array_equal(index.get_vectors(np.array([30, 30], np.uint64)), x[[2, 2]])
    np.testing.assert_array_equal(index.get_vectors(20), x[[3]])
    assert index.get_vectors([]).shape == (0, 8)
    with pytest.raises(vc.UnknownIdError, match=r"\[77\]") as info:
        index.get_vectors([10, 77])
    assert isinstance(info.value, KeyError)
    assert "77" in str(info.value) and not str(info.value).startswith("'")
    assert index.remove([40, 99]) == 1
    np.testing.assert_array_equal(index.get_vectors([10, 50, 30]), x[[4, 0, 2]])


def test_cosine_get_vectors_are_the_normalised_ones(vecs):
    index = flat("cosine")
    ids = index.add(vecs[:3])
    np.testing.assert_allclose(np.linalg.norm(index.get_vectors(ids), axis=1), 1, rtol=1e-6)


def test_ids_property_is_read_only_and_in_slot_order(vecs):
    index = flat()
    index.add(vecs[:6], ids=[9, 8, 7, 6, 5, 4])
    assert index.ids.tolist() == [9, 8, 7, 6, 5, 4]
    with pytest.raises(ValueError, match="read-only"):
        index.ids[0] = 1
    index.remove([8])  # slot 1 <- slot 5 (id 4)
    assert index.ids.tolist() == [9, 4, 7, 6, 5]
    mask = index.ids % 2 == 0
    res = index.search(vecs[0], 10, allow=mask)
    assert set(res.ids[0, : res.counts[0]].tolist()) == {4, 6}


# --------------------------------------------------------------------------- remove
def test_swap_remove_keeps_every_id_on_its_vector(vecs):
    index = flat()
    ids = index.add(vecs, ids=np.arange(200, dtype=np.uint64) * 3 + 1)
    model = dict(zip(ids.tolist(), vecs, strict=True))
    rng = np.random.default_rng(1)
    for size in (1, 1, 7, 30, 2, 60):
        gone = rng.choice(index.ids, size=size, replace=False)
        assert index.remove(gone) == size
        for g in gone.tolist():
            del model[g]
        check_consistent(index)
        keys = list(model)
        np.testing.assert_array_equal(index.get_vectors(keys), np.stack([model[i] for i in keys]))
    assert len(index) == 200 - 101
    res = index.search(vecs[:10], 5)
    assert np.isin(res.ids, list(model)).all()


def test_remove_duplicates_unknown_and_empty(vecs):
    index = flat()
    index.add(vecs[:10])
    before = index.to_bytes()
    assert index.remove([100, 200]) == 0
    assert index.remove([]) == 0
    assert index.remove(np.array([], np.uint64)) == 0
    assert index.to_bytes() == before
    assert index.remove([3, 3, 3, 100]) == 1
    assert 3 not in index and len(index) == 9
    assert index.remove(4) == 1  # a single int is one id


def test_remove_then_re_add_the_same_id(vecs):
    index = flat()
    index.add(vecs[:3], ids=[7, 8, 9])
    index.remove([8])
    index.add(vecs[5], ids=[8])
    np.testing.assert_array_equal(index.get_vectors([8]), vecs[[5]])
    check_consistent(index)


def test_a_failed_add_changes_nothing(vecs):
    index = flat()
    index.add(vecs[:10], ids=np.arange(10) + 100)
    before = index.to_bytes()
    with pytest.raises(vc.DuplicateIdError, match="already in the index"):
        index.add(vecs[10:13], ids=[200, 201, 105])
    with pytest.raises(vc.DuplicateIdError, match="inside the batch"):
        index.add(vecs[10:13], ids=[300, 301, 300])
    with pytest.raises(vc.NonFiniteError):
        index.add(np.full((2, 8), np.nan))
    with pytest.raises(vc.InvalidArgumentError, match="reserved"):
        index.add(vecs[10:12], ids=np.array([400, MISSING], np.uint64))
    assert index.to_bytes() == before
    assert 200 not in index and index.next_id == 110


# --------------------------------------------------------------------------- wrapping
def test_wrapping_a_filled_positional_index(vecs):
    inner = vc.FlatIndex(8, "l2")
    inner.add(vecs[:5])
    index = vc.IdMapIndex(inner)
    np.testing.assert_array_equal(index.ids, np.arange(5, dtype=np.uint64))
    assert index.next_id == 5 and index.spec == "flat" and index.metric == "l2"
    assert index.add(vecs[5]).tolist() == [5]
    with pytest.raises(vc.InvalidArgumentError, match="wraps a VectorIndex, got int"):
        vc.IdMapIndex(3)


def test_memory_bytes_and_repr(vecs):
    index = flat()
    empty = index.memory_bytes()
    index.add(vecs)
    assert index.memory_bytes() >= empty + vecs.nbytes + 200 * 8
    assert repr(index) == "IdMapIndex(spec='flat', dim=8, metric='ip', ntotal=200)"


# --------------------------------------------------------------------------- staging
@pytest.mark.parametrize("metric", vc.METRICS)
def test_staged_searches_are_exact_and_training_happens_at_min_size(staged_kind, metric, rng):
    x = rng.standard_normal((80, 8)).astype(np.float32)
    q = rng.standard_normal((12, 8)).astype(np.float32)
    index = vc.create(staged_kind, dim=8, metric=metric)
    exact = flat(metric)
    assert not index.is_trained and index.index.min_train_size == 50
    ids = index.add(x[:49], ids=np.arange(49) * 2 + 1)
    exact.add(x[:49], ids=ids)
    assert not index.is_trained and index.index.ntotal == 0 and len(index) == 49
    for nq in (1, 12):
        res, ref = index.search(q[:nq], 5), exact.search(q[:nq], 5)
        np.testing.assert_array_equal(res.ids, ref.ids)
        np.testing.assert_array_equal(res.scores, ref.scores)
    order_before = index.ids.copy()
    vectors_before = index.get_vectors(order_before)

    more = index.add(x[49])  # the 50th row: the inner index trains and takes over
    exact.add(x[49], ids=more)
    assert more.tolist() == [98]
    assert index.is_trained and index._staging is None
    assert index.index.ntotal == 50 and index.index.train_calls == 1
    np.testing.assert_array_equal(index.ids[:49], order_before)
    np.testing.assert_array_equal(index.get_vectors(order_before), vectors_before)
    for nq in (1, 12):
        res, ref = index.search(q[:nq], 5), exact.search(q[:nq], 5)
        np.testing.assert_array_equal(res.ids, ref.ids)
        np.testing.assert_array_equal(res.scores, ref.scores)
    index.add(x[50:])
    assert index.index.train_calls == 1 and len(index) == 80


def test_one_batch_crossing_the_threshold_trains_once(staged_kind, rng):
    x = rng.standard_normal((70, 8)).astype(np.float32)
    index = vc.create(staged_kind, dim=8, metric="ip")
    index.add(x[:40])
    index.add(x[40:])
    assert index.is_trained and index.index.ntotal == 70 and index.index.train_calls == 1
    check_consistent(index)


def test_staged_remove_get_vectors_and_params(staged_kind, rng):
    x = rng.standard_normal((60, 8)).astype(np.float32)
    index = vc.create(staged_kind, dim=8, metric="ip")
    index.add(x[:45], ids=np.arange(45) + 1000)
    assert index.remove(np.arange(1000, 1010)) == 10
    check_consistent(index)
    np.testing.assert_array_equal(index.get_vectors([1044, 1010]), x[[44, 10]])
    with pytest.raises(vc.InvalidParameterError, match="nprobe.*none"):
        index.search(x[0], 5, params={"nprobe": 3})
    index.add(x[45:])  # 35 + 15 = 50 rows: trains now
    assert index.is_trained and len(index) == 50
    check_consistent(index)
    np.testing.assert_array_equal(index.get_vectors([1044, 1010]), x[[44, 10]])


@pytest.mark.parametrize("how", ["save-load", "bytes", "pickle", "copy"])
def test_staged_index_round_trips_and_trains_later(staged_kind, how, rng, tmp_path):
    x = rng.standard_normal((60, 8)).astype(np.float32)
    q = rng.standard_normal((4, 8)).astype(np.float32)
    index = vc.create(staged_kind, dim=8, metric="l2")
    exact = flat("l2")
    ids = index.add(x[:30], ids=np.arange(30) * 2)
    exact.add(x[:30], ids=ids)
    index.remove([0, 2])
    exact.remove([0, 2])
    if how == "save-load":
        index.save(tmp_path / "staged.vecidx")
        staged = vc.load(tmp_path / "staged.vecidx")
    elif how == "bytes":
        staged = vc.IdMapIndex.from_bytes(index.to_bytes())
    elif how == "pickle":
        staged = pickle.loads(pickle.dumps(index))
    else:
        staged = copy.deepcopy(index)
    assert staged.to_bytes() == index.to_bytes()
    assert not staged.is_trained and len(staged) == 28 and staged.next_id == 59
    np.testing.assert_array_equal(staged.ids, index.ids)
    np.testing.assert_array_equal(staged.search(q, 5).ids, exact.search(q, 5).ids)
    more = staged.add(x[30:])
    exact.add(x[30:], ids=more)
    assert more.tolist() == list(range(59, 89))
    assert staged.is_trained and len(staged) == 58
    res, ref = staged.search(q, 5), exact.search(q, 5)
    np.testing.assert_array_equal(res.ids, ref.ids)
    np.testing.assert_array_equal(res.scores, ref.scores)
    assert not index.is_trained, "the original is unchanged"
    trained = vc.IdMapIndex.from_bytes(staged.to_bytes())
    assert trained.is_trained and trained.index.mean_ is not None
    np.testing.assert_array_equal(trained.search(q, 5).ids, ref.ids)


def test_untrained_positional_kind_raises_naming_the_spec(staged_kind, rng):
    inner = vc.get_kind(staged_kind).cls(8, "ip", min_train=5)
    assert inner.spec == "test_staged(min_train=5)"
    x = rng.standard_normal((4, 8)).astype(np.float32)
    with pytest.raises(vc.NotTrainedError, match=r"test_staged\(min_train=5\).*5 vectors"):
        inner.add(x)
    with pytest.raises(vc.InvalidArgumentError, match="at least 5 training vectors, got 4"):
        inner.train(x)
    assert inner.search(x, 3).counts.tolist() == [0] * 4  # empty: padded, not an error
    assert isinstance(vc.NotTrainedError("x"), RuntimeError)


def test_contains_ids_is_a_vectorised_contains():
    index = vc.create("flat", dim=4)
    index.add(np.eye(4, dtype=np.float32), np.array([3, 10, 2**64 - 2, 7], dtype=np.uint64))
    index.remove([7])
    ids = np.array([3, 7, 10, 11, 2**64 - 2], dtype=np.uint64)
    np.testing.assert_array_equal(index.contains_ids(ids), [True, False, True, False, True])
    assert [index.contains(int(i)) for i in ids] == index.contains_ids(ids).tolist()
    assert index.contains_ids([]).shape == (0,)
    with pytest.raises(vc.InvalidArgumentError):
        index.contains_ids([-1])
