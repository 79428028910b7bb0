"""One conformance suite over every registered index kind and every metric.

The cases come from ``vecindex_core.list_indexes()`` x ``vecindex_core.METRICS``, so a kind
registered by a later issue is tested here without editing this file. Exact kinds must equal
FlatIndex and numpy (ids and scores, up to BLAS rounding by tile position); approximate kinds
must reach their recall floor in ``tolerances.TOLERANCES`` against exact ground truth. Tests
a kind cannot pass yet are listed in ``tolerances.KNOWN_GAPS`` with a reason and run as
strict xfails.
"""

import copy
import inspect
import pickle
import sys
from typing import NamedTuple

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import METRICS, MISSING, get_kind, list_indexes
from vecindex_core.registry import parse_spec
from vecindex_core.validation import MAX_K

from ..conftest import assert_same_topk
from .tolerances import KNOWN_GAPS, TEST_SPECS, TOLERANCES

DIM = 384


class Case(NamedTuple):
    name: str
    spec: str
    metric: str

    @property
    def exact(self) -> bool:
        return get_kind(self.name).exact


CASES = [Case(n, TEST_SPECS.get(n, n), m) for n in list_indexes() for m in METRICS]


@pytest.fixture(params=CASES, ids=[f"{c.spec}-{c.metric}" for c in CASES])
def case(request):
    c = request.param
    reason = KNOWN_GAPS.get(c.name, {}).get(request.node.originalname)
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    return c


# --------------------------------------------------------------------------- helpers
def new(case, dim=DIM):
    """An empty IdMapIndex of the case's spec."""
    return vc.create(case.spec, dim=dim, metric=case.metric)


def positional(case, x):
    """A positional index of the case's spec, trained on ``x`` if it needs it, holding ``x``."""
    name, params = parse_spec(case.spec)
    index = get_kind(name).cls(dim=x.shape[1], metric=case.metric, **params)
    if not index.is_trained:
        index.train(x)
    index.add(x)
    return index


def flat_search(metric, x, q, k, mask=None):
    flat = vc.FlatIndex(x.shape[1], metric)
    flat.add(x)
    return flat.search(q, k, mask=mask)


def floor_of(case):
    return 1.0 if case.exact else TOLERANCES[case.name]


def check_against_exact(case, res, x, q, k, reference, recall, *, mask=None, id_of=None):
    """``res`` (slots, or ids mapped by ``id_of``) against FlatIndex and the numpy reference.

    Exact kinds: ids and scores equal FlatIndex's and numpy's, up to the BLAS kernel's
    rounding by tile position (``assert_same_topk``). Approximate kinds: every result is
    allowed, and recall@k reaches the kind's floor.
    """
    id_of = (lambda s: s) if id_of is None else id_of

    def mapped(slots):
        out = np.full(slots.shape, -1, dtype=np.int64)
        out[slots >= 0] = np.asarray(id_of(slots[slots >= 0])).astype(np.int64)
        return out

    got = np.where(res.counts[:, None] > np.arange(k), res.ids.astype(np.int64), -1)
    ref_scores, ref_ids, ref_counts = reference(x, q, k, case.metric, mask)
    if case.exact:  # exact up to BLAS rounding by tile position (see assert_same_topk)
        flat = flat_search(case.metric, x, q, k, mask)
        assert_same_topk((res.scores, got, res.counts),
                         (flat.scores, mapped(flat.ids), flat.counts))
        assert_same_topk((res.scores, got, res.counts), (ref_scores, mapped(ref_ids), ref_counts))
    else:
        if mask is not None:
            allowed = mapped(np.flatnonzero(mask))
            assert np.isin(got[got >= 0], allowed).all(), "a filtered search returned a row"
        assert (res.counts <= ref_counts).all()
        assert recall(got, mapped(ref_ids), min(k, 10)) >= floor_of(case)


def assert_padded(res, nq, k, count, missing):
    assert res.ids.shape == (nq, k) and res.scores.shape == (nq, k) and res.counts.shape == (nq,)
    assert res.scores.dtype == np.float32 and res.counts.dtype == np.int64
    assert (res.counts == count).all()
    assert (res.ids[:, count:] == missing).all()
    assert np.isneginf(res.scores[:, count:]).all()
    assert np.isfinite(res.scores[:, :count]).all()
    assert (res.ids[:, :count] != missing).all()


# --------------------------------------------------------------------------- the tables
def test_tables_are_consistent():
    names = set(list_indexes())
    assert "flat" in names and get_kind("flat").exact
    for name in names:
        if not get_kind(name).exact:
            assert name in TOLERANCES, f"approximate kind {name!r} needs a TOLERANCES floor"
    for name, floor in TOLERANCES.items():
        assert name in names, f"TOLERANCES names unregistered kind {name!r}"
        assert not get_kind(name).exact, f"{name!r} is exact: it must match flat, not a floor"
        assert 0.0 < floor <= 1.0
    for name, spec in TEST_SPECS.items():
        assert parse_spec(spec)[0] == name
    tests = {n for n, f in inspect.getmembers(sys.modules[__name__]) if n.startswith("test_")
             and callable(f)}
    for name, gaps in KNOWN_GAPS.items():
        assert name in names, f"KNOWN_GAPS names unregistered kind {name!r}"
        for test, reason in gaps.items():
            assert test in tests, f"KNOWN_GAPS[{name!r}] names unknown test {test!r}"
            assert isinstance(reason, str) and reason.strip(), "every known gap needs a reason"


# --------------------------------------------------------------------------- lifecycle
def test_create_attributes(case):
    index = new(case)
    assert index.dim == DIM and index.metric == case.metric
    assert len(index) == index.ntotal == 0 and index.next_id == 0
    assert parse_spec(index.spec)[0] == case.name
    assert vc.create(index.spec, dim=DIM, metric=case.metric).spec == index.spec
    assert isinstance(index.memory_bytes(), int) and index.memory_bytes() >= 0
    assert case.spec.split("(")[0] in repr(index)
    assert index.ids.shape == (0,) and index.ids.dtype == np.uint64


def test_add_search_matches_exact(case, small, reference, recall):
    x, q = small
    index = new(case)
    ids = index.add(x)
    assert ids.dtype == np.uint64
    np.testing.assert_array_equal(ids, np.arange(len(x), dtype=np.uint64))
    assert len(index) == len(x) and index.is_trained
    assert index.memory_bytes() > 0
    check_against_exact(case, index.search(q, 10), x, q, 10, reference, recall)


def test_add_in_pieces_equals_one_batch(case, small, reference, recall):
    x, q = small
    index = new(case)
    for piece in (x[:1], x[1:2].ravel(), x[2:9], x[9:]):  # a 1-D vector is one row too
        index.add(piece)
    assert len(index) == len(x)
    res = index.search(q, 10)
    check_against_exact(case, res, x, q, 10, reference, recall)
    if case.exact:
        whole = new(case)
        whole.add(x)
        np.testing.assert_array_equal(whole.search(q, 10).ids, res.ids)


def test_train_add_search_positional(case, small, reference, recall):
    x, q = small
    name, params = parse_spec(case.spec)
    index = get_kind(name).cls(dim=DIM, metric=case.metric, **params)
    assert index.ntotal == 0
    if index.is_trained:
        assert index.min_train_size == 0
    else:
        with pytest.raises(vc.NotTrainedError, match=case.name):
            index.add(x)
        if index.min_train_size > 1:
            with pytest.raises(vc.InvalidArgumentError, match=str(index.min_train_size)):
                index.train(x[: index.min_train_size - 1])
        assert not index.is_trained and index.ntotal == 0
    index.train(x)  # a no-op for kinds that need no training
    assert index.is_trained and index.ntotal == 0
    index.add(x)
    res = index.search(q, 10)
    assert res.ids.dtype == np.int64
    check_against_exact(case, res, x, q, 10, reference, recall)


def test_same_inputs_give_the_same_index(case, small):
    x, _ = small
    a, b = new(case), new(case)
    a.add(x)
    b.add(x)
    assert a.to_bytes() == b.to_bytes()


def test_recall_on_real_data(case, sample, sample_gt, recall):
    index = new(case)
    index.add(sample.base)
    res = index.search(sample.queries, 10)
    # float32 search against float64 truth: an exact kind may swap a near-tie at rank 10
    floor = 0.999 if case.exact else TOLERANCES[case.name]
    assert recall(res.ids, sample_gt[case.metric], 10) >= floor


# --------------------------------------------------------------------------- result shape
def test_empty_index_search_is_padded(case, small):
    _, q = small
    index = new(case)
    assert_padded(index.search(q, 5), len(q), 5, 0, MISSING)
    assert_padded(index.search(q[0], 1), 1, 1, 0, MISSING)
    assert index.search(q, 5).ids.dtype == np.uint64
    name, params = parse_spec(case.spec)
    pos = get_kind(name).cls(dim=DIM, metric=case.metric, **params)
    assert_padded(pos.search(q, 3), len(q), 3, 0, -1)
    assert_padded(pos.search(q, 3, mask=np.zeros(0, bool)), len(q), 3, 0, -1)


def test_k_larger_than_n_pads(case, small, reference, recall):
    x, q = small
    index = new(case)
    index.add(x[:3])
    res = index.search(q, 7)
    assert_padded(res, len(q), 7, 3, MISSING)
    assert all(set(row[:3].tolist()) == {0, 1, 2} for row in res.ids)
    check_against_exact(case, res, x[:3], q, 7, reference, recall)
    res = index.search(q[0], MAX_K)  # the largest k is still only padding
    assert res.ids.shape == (1, MAX_K) and (res.counts == 3).all()


def test_one_d_query_gives_two_d_result(case, small):
    x, q = small
    index = new(case)
    index.add(x)
    one = index.search(q[0], 4)
    assert one.ids.shape == (1, 4) and one.scores.shape == (1, 4) and one.counts.shape == (1,)
    batch = index.search(q[:1], 4)
    np.testing.assert_array_equal(one.ids, batch.ids)
    np.testing.assert_array_equal(one.scores, batch.scores)


def test_k_accepts_numpy_integers(case, small):
    x, q = small
    index = new(case)
    index.add(x[:50])
    ref = index.search(q, 5)
    for k in (np.int64(5), np.uint8(5), np.int32(5)):
        np.testing.assert_array_equal(index.search(q, k).ids, ref.ids)


# --------------------------------------------------------------------------- input types
def test_lists_in(case, small):
    x, q = small
    index = new(case)
    arr = new(case)
    ids = index.add(x[:50].tolist(), ids=list(range(100, 150)))
    arr.add(x[:50], ids=np.arange(100, 150, dtype=np.uint64))
    assert ids.tolist() == list(range(100, 150))
    assert index.to_bytes() == arr.to_bytes()
    ref = arr.search(q[:3], 5)
    for query in (q[:3].tolist(), q[:3]):
        res = index.search(query, 5)
        np.testing.assert_array_equal(res.ids, ref.ids)
        np.testing.assert_array_equal(res.scores, ref.scores)
    assert index.search(q[0].tolist(), 5).ids.shape == (1, 5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_torch_cpu_tensors_in(case, small, dtype):
    torch = pytest.importorskip("torch")
    x, q = small
    tdtype = getattr(torch, dtype)
    tx = torch.from_numpy(x[:60]).to(tdtype)
    tq = torch.from_numpy(q[:4]).to(tdtype)
    # what the tensors hold, as float32: the conversion itself must be exact
    nx, nq = tx.to(torch.float32).numpy(), tq.to(torch.float32).numpy()
    index, ref = new(case), new(case)
    got_ids = index.add(tx, ids=torch.arange(60, dtype=torch.int64) + 7)
    ref.add(nx, ids=np.arange(60) + 7)
    np.testing.assert_array_equal(got_ids, np.arange(60, dtype=np.uint64) + 7)
    assert index.to_bytes() == ref.to_bytes()
    res, expected = index.search(tq, 5), ref.search(nq, 5)
    np.testing.assert_array_equal(res.ids, expected.ids)
    np.testing.assert_array_equal(res.scores, expected.scores)
    assert isinstance(res.ids, np.ndarray)
    removed = index.remove(torch.tensor([7, 8]))
    assert removed == 2 and 7 not in index
    allowed = index.search(tq, 5, allow=torch.tensor([9, 10, 11]))
    assert set(allowed.ids[allowed.ids != MISSING].tolist()) <= {9, 10, 11}


def test_torch_cuda_tensors_in(case, small):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available on this machine; the CPU tensor tests cover the "
                    "conversion, this one only checks device transfer")
    x, q = small
    index, ref = new(case), new(case)
    index.add(torch.from_numpy(x[:60]).cuda())
    ref.add(x[:60])
    res = index.search(torch.from_numpy(q[:4]).cuda(), 5)
    np.testing.assert_array_equal(res.ids, ref.search(q[:4], 5).ids)


# --------------------------------------------------------------------------- remove
def test_remove_then_search_never_returns_removed(case, small, reference, recall):
    x, q = small
    index = new(case)
    ids = index.add(x)
    gone = ids[::3]
    assert index.remove(gone) == len(gone)
    assert index.remove(gone) == 0
    assert len(index) == len(x) - len(gone)
    assert not any(int(i) in index for i in gone)
    assert all(int(i) in index for i in ids[1::3])
    res = index.search(q, 10)
    assert not np.isin(res.ids, gone).any()
    keep = np.setdiff1d(np.arange(len(x)), gone.astype(np.int64))
    check_against_exact(case, res, x[keep], q, 10, reference, recall, id_of=lambda s: keep[s])


def test_remove_everything_then_add_again(case, small):
    x, q = small
    index = new(case)
    ids = index.add(x[:40])
    assert index.remove(ids[::-1]) == 40
    assert len(index) == 0
    assert_padded(index.search(q, 4), len(q), 4, 0, MISSING)
    again = index.add(x[:5])
    assert again.tolist() == list(range(40, 45)), "ids are never reused"
    res = index.search(q, 4)
    assert (res.counts == 4).all() and np.isin(res.ids, again).all()


def test_positional_remove_reports_moves(case, small):
    x, _ = small
    index = positional(case, x[:300])
    moves = index.remove([0, 5, 299, 150])
    assert index.ntotal == 296
    assert isinstance(moves, vc.Moves)
    assert moves.src.dtype == np.int64 and moves.dst.dtype == np.int64
    assert (moves.dst < 296).all() and (moves.src >= 296).all()
    assert sorted(moves.dst.tolist()) == [0, 5, 150]
    assert not np.isin(moves.src, [299]).any()


# --------------------------------------------------------------------------- filters
@pytest.mark.parametrize("fraction", [0.02, 0.2, 0.6])
def test_positional_mask(case, small, reference, recall, fraction):
    x, q = small
    index = positional(case, x)
    mask = np.random.default_rng(11).random(len(x)) < fraction
    res = index.search(q, 10, mask=mask)
    assert np.isin(res.ids[res.ids >= 0], np.flatnonzero(mask)).all()
    check_against_exact(case, res, x, q, 10, reference, recall, mask=mask)
    one = index.search(q[0], 10, mask=mask)
    check_against_exact(case, one, x, q[:1], 10, reference, recall, mask=mask)


def test_positional_mask_with_fewer_rows_than_k(case, small):
    x, q = small
    index = positional(case, x)
    mask = np.zeros(len(x), bool)
    mask[[3, 500, 999]] = True
    res = index.search(q, 10, mask=mask)
    assert_padded(res, len(q), 10, 3, -1)
    assert all(set(r[:3].tolist()) == {3, 500, 999} for r in res.ids)
    assert_padded(index.search(q, 10, mask=np.zeros(len(x), bool)), len(q), 10, 0, -1)


@pytest.mark.parametrize("every", [25, 3])
def test_allow_by_ids_mask_and_predicate(case, small, reference, recall, every):
    x, q = small
    index = new(case)
    ids = index.add(x, ids=np.arange(len(x), dtype=np.uint64) * 7 + 3)
    rows = np.arange(0, len(x), every)
    mask = np.zeros(len(x), bool)
    mask[rows] = True
    absent = np.array([1, 2, 10**12], np.uint64)
    results = {
        "ids": index.search(q, 10, allow=ids[rows]),
        "ids as list": index.search(q, 10, allow=ids[rows].tolist()),
        "ids plus absent ones": index.search(q, 10, allow=np.r_[ids[rows], absent]),
        "bool mask": index.search(q, 10, allow=np.isin(index.ids, ids[rows])),
        "predicate": index.search(q, 10, allow=lambda a: (a - 3) % (7 * every) == 0),
    }
    for how, res in results.items():
        assert np.isin(res.ids, ids[rows]).all(), how
        check_against_exact(case, res, x, q, 10, reference, recall, mask=mask,
                            id_of=lambda s: ids[s])


def test_allow_small_and_empty(case, small):
    x, q = small
    index = new(case)
    ids = index.add(x)
    tiny = index.search(q, 10, allow=ids[[4, 600]])
    assert_padded(tiny, len(q), 10, 2, MISSING)
    assert all(set(r[:2].tolist()) == {4, 600} for r in tiny.ids)
    for nothing in ([], np.array([], np.uint64), [10**9], lambda a: np.zeros(len(a), bool)):
        assert_padded(index.search(q, 10, allow=nothing), len(q), 10, 0, MISSING)


def test_allow_after_remove_follows_ids(case, small, reference, recall):
    x, q = small
    index = new(case)
    ids = index.add(x)
    index.remove(ids[:500])  # every surviving row moves slot
    wanted = ids[500::4]
    res = index.search(q, 10, allow=wanted)
    assert np.isin(res.ids, wanted).all()
    mask = np.zeros(len(x), bool)
    mask[500::4] = True
    check_against_exact(case, res, x, q, 10, reference, recall, mask=mask,
                        id_of=lambda s: ids[s])
    by_mask = index.search(q, 10, allow=np.isin(index.ids, wanted))
    np.testing.assert_array_equal(by_mask.ids, res.ids)


# --------------------------------------------------------------------------- persistence
def test_save_load_pickle_copy_keep_ids(case, small, tmp_path):
    x, q = small
    index = new(case)
    index.add(x, ids=np.arange(len(x), dtype=np.uint64) * 11)
    index.remove([0, 22, 55])
    ref = index.search(q, 10)
    path = tmp_path / "index.vecidx"
    index.save(path)
    copies = {
        "load": vc.load(path),
        "IdMapIndex.load": vc.IdMapIndex.load(path),
        "from_bytes": vc.IdMapIndex.from_bytes(index.to_bytes()),
        "pickle": pickle.loads(pickle.dumps(index)),
        "copy": copy.copy(index),
        "deepcopy": copy.deepcopy(index),
    }
    for how, other in copies.items():
        assert type(other) is vc.IdMapIndex, how
        assert other.spec == index.spec and other.metric == index.metric, how
        np.testing.assert_array_equal(other.ids, index.ids)
        assert other.next_id == index.next_id == 11 * (len(x) - 1) + 1
        res = other.search(q, 10)
        np.testing.assert_array_equal(res.ids, ref.ids)
        np.testing.assert_array_equal(res.scores, ref.scores)
        assert other.to_bytes() == index.to_bytes(), how
        assert other.add(x[0]).tolist() == [index.next_id]
    assert path.read_bytes() == index.to_bytes()


def test_copies_are_independent(case, small):
    x, _ = small
    index = new(case)
    index.add(x[:100])
    before = index.to_bytes()
    for other in (copy.copy(index), copy.deepcopy(index), pickle.loads(pickle.dumps(index))):
        other.remove(list(range(50)))
        other.add(x[100:120])
        assert index.to_bytes() == before
        assert len(index) == 100


def test_positional_save_load_pickle_copy(case, small, tmp_path):
    x, q = small
    index = positional(case, x[:200])
    index.remove([1, 2, 3])
    ref = index.search(q, 10)
    index.save(tmp_path / "p.vecidx")
    for other in (
        vc.VectorIndex.load(tmp_path / "p.vecidx"),
        type(index).load(tmp_path / "p.vecidx"),
        vc.VectorIndex.from_bytes(index.to_bytes()),
        pickle.loads(pickle.dumps(index)),
        copy.copy(index),
        copy.deepcopy(index),
    ):
        assert type(other) is type(index) and other.spec == index.spec
        assert other.ntotal == index.ntotal and other.is_trained
        res = other.search(q, 10)
        np.testing.assert_array_equal(res.ids, ref.ids)
        np.testing.assert_array_equal(res.scores, ref.scores)
        assert other.to_bytes() == index.to_bytes()
    wrapped = vc.load(tmp_path / "p.vecidx")  # a positional file gets ids 0..n-1
    np.testing.assert_array_equal(wrapped.ids, np.arange(197, dtype=np.uint64))


# --------------------------------------------------------------------------- bad input
def _nan_rows(x):
    bad = x[:2].copy()
    bad[1, 7] = np.nan
    return bad


BAD_INPUTS = [
    # (id, method, make (args, kwargs) from x, error, match)
    ("add-strings", "add", lambda x: ((np.array([["a"] * DIM]),), {}),
     vc.InvalidDtypeError, "dtype <U1"),
    ("add-string-scalar", "add", lambda x: (("abc",), {}), vc.InvalidDtypeError, "dtype"),
    ("add-complex", "add", lambda x: ((x[:2].astype(np.complex64),), {}),
     vc.InvalidDtypeError, "complex64"),
    ("add-bool", "add", lambda x: ((np.ones((2, DIM), bool),), {}), vc.InvalidDtypeError, "bool"),
    ("add-object", "add", lambda x: ((np.array([[object()] * DIM]),), {}),
     vc.InvalidDtypeError, "object"),
    ("add-none", "add", lambda x: ((None,), {}), vc.InvalidDtypeError, "object"),
    ("add-ragged", "add", lambda x: (([[1.0] * DIM, [1.0]],), {}),
     vc.InvalidArgumentError, "could not be read"),
    ("add-rank-3", "add", lambda x: ((x[:2].reshape(2, 2, DIM // 2),), {}),
     vc.InvalidArgumentError, "3 dimensions"),
    ("add-rank-0", "add", lambda x: ((np.float32(1),), {}), vc.InvalidArgumentError,
     "0 dimensions"),
    ("add-wrong-dim", "add", lambda x: ((x[:2, :380],), {}), vc.DimensionMismatchError,
     "380 dimensions, but this index expects 384"),
    ("add-wrong-dim-1d", "add", lambda x: ((x[0, :383],), {}), vc.DimensionMismatchError,
     "383 dimensions, but this index expects 384"),
    ("add-nan", "add", lambda x: ((_nan_rows(x),), {}), vc.NonFiniteError, "nan at row 1"),
    ("add-inf", "add", lambda x: ((np.full((1, DIM), -np.inf),), {}), vc.NonFiniteError, "inf"),
    ("add-overflows-float32", "add", lambda x: ((np.full((1, DIM), 1e39),), {}),
     vc.NonFiniteError, "inf"),
    ("add-empty", "add", lambda x: ((np.empty((0, DIM), np.float32),), {}),
     vc.EmptyInputError, r"\(0, 384\)"),
    ("add-empty-list", "add", lambda x: (([],), {}), vc.EmptyInputError, "empty"),
    ("add-dup-in-batch", "add", lambda x: ((x[:3], [5, 6, 5]), {}), vc.DuplicateIdError,
     r"\[5\]"),
    ("add-dup-present", "add", lambda x: ((x[:2], [1, 2000]), {}), vc.DuplicateIdError, r"\[1\]"),
    ("add-dup-present-single", "add", lambda x: ((x[0],), {"ids": [1500]}), vc.DuplicateIdError,
     "1500"),
    ("add-missing-id", "add", lambda x: ((x[:1], [MISSING]), {}), vc.InvalidArgumentError,
     "reserved"),
    ("add-missing-id-uint64", "add", lambda x: ((x[:2], np.array([3, MISSING], np.uint64)), {}),
     vc.InvalidArgumentError, "reserved"),
    ("add-id-too-large", "add", lambda x: ((x[:1], [2**64]), {}), vc.InvalidArgumentError,
     "outside"),
    ("add-negative-id", "add", lambda x: ((x[:1], [-4]), {}), vc.InvalidArgumentError, "-4"),
    ("add-float-id", "add", lambda x: ((x[:1], [1.5]), {}), vc.InvalidDtypeError, "float"),
    ("add-string-id", "add", lambda x: ((x[:1], ["7"]), {}), vc.InvalidDtypeError, "<U1"),
    ("add-bool-id", "add", lambda x: ((x[:1], [True]), {}), vc.InvalidDtypeError, "bool"),
    ("add-ids-wrong-length", "add", lambda x: ((x[:2], [3000]), {}), vc.InvalidArgumentError,
     "1 entries, expected 2"),
    ("add-ids-2d", "add", lambda x: ((x[:2], [[3000, 3001]]), {}), vc.InvalidArgumentError,
     "1-D"),
    ("search-strings", "search", lambda x: ((np.array(["a"] * DIM), 3), {}),
     vc.InvalidDtypeError, "<U1"),
    ("search-complex", "search", lambda x: ((x[:1].astype(complex), 3), {}),
     vc.InvalidDtypeError, "complex128"),
    ("search-bool", "search", lambda x: ((np.ones(DIM, bool), 3), {}), vc.InvalidDtypeError,
     "bool"),
    ("search-object", "search", lambda x: ((np.array([object()] * DIM), 3), {}),
     vc.InvalidDtypeError, "object"),
    ("search-rank-3", "search", lambda x: ((x[:2].reshape(1, 2, DIM), 3), {}),
     vc.InvalidArgumentError, "3 dimensions"),
    ("search-wrong-dim", "search", lambda x: ((x[:1, :10], 3), {}), vc.DimensionMismatchError,
     "10 dimensions, but this index expects 384"),
    ("search-nan", "search", lambda x: ((np.full(DIM, np.nan), 3), {}), vc.NonFiniteError, "nan"),
    ("search-inf", "search", lambda x: ((np.full(DIM, np.inf), 3), {}), vc.NonFiniteError, "inf"),
    ("search-empty", "search", lambda x: ((np.empty((0, DIM), np.float32), 3), {}),
     vc.EmptyInputError, "empty batch"),
    ("search-k-0", "search", lambda x: ((x[:1], 0), {}), vc.InvalidArgumentError, "got 0"),
    ("search-k-neg", "search", lambda x: ((x[:1], -1), {}), vc.InvalidArgumentError, "got -1"),
    ("search-k-float", "search", lambda x: ((x[:1], 2.5), {}), vc.InvalidDtypeError, "2.5"),
    ("search-k-float-integral", "search", lambda x: ((x[:1], 3.0), {}), vc.InvalidDtypeError,
     "3.0"),
    ("search-k-bool", "search", lambda x: ((x[:1], True), {}), vc.InvalidDtypeError, "True"),
    ("search-k-str", "search", lambda x: ((x[:1], "3"), {}), vc.InvalidDtypeError, "'3'"),
    ("search-k-none", "search", lambda x: ((x[:1], None), {}), vc.InvalidDtypeError, "None"),
    ("search-k-huge", "search", lambda x: ((x[:1], 10**9), {}), vc.InvalidArgumentError,
     "1000000000"),
    ("search-k-too-large", "search", lambda x: ((x[:1], 2**64), {}), vc.InvalidArgumentError,
     str(2**64)),
    ("search-allow-short-mask", "search", lambda x: ((x[:1], 3), {"allow": np.ones(5, bool)}),
     vc.InvalidArgumentError, r"shape \(5,\), expected \(1001,\)"),
    ("search-allow-float-ids", "search", lambda x: ((x[:1], 3), {"allow": [1.5]}),
     vc.InvalidDtypeError, "float"),
    ("search-allow-negative-ids", "search", lambda x: ((x[:1], 3), {"allow": [-1]}),
     vc.InvalidArgumentError, "-1"),
    ("search-allow-predicate-not-bool", "search",
     lambda x: ((x[:1], 3), {"allow": lambda a: a.astype(np.int64)}),
     vc.InvalidDtypeError, "bool"),
    ("search-allow-predicate-wrong-length", "search",
     lambda x: ((x[:1], 3), {"allow": lambda a: np.ones(3, bool)}),
     vc.InvalidArgumentError, r"\(3,\)"),
    ("search-params-unknown", "search", lambda x: ((x[:1], 3), {"params": {"bogus": 1}}),
     vc.InvalidParameterError, "bogus"),
    ("search-params-not-mapping", "search", lambda x: ((x[:1], 3), {"params": [("a", 1)]}),
     vc.InvalidParameterError, "params must be a dict"),
    ("remove-negative", "remove", lambda x: (([-1],), {}), vc.InvalidArgumentError, "-1"),
    ("remove-float", "remove", lambda x: (([0.5],), {}), vc.InvalidDtypeError, "float"),
    ("remove-missing", "remove", lambda x: (([1, MISSING],), {}), vc.InvalidArgumentError,
     "reserved"),
    ("remove-strings", "remove", lambda x: ((["1"],), {}), vc.InvalidDtypeError, "<U1"),
    ("remove-2d", "remove", lambda x: (([[1, 2]],), {}), vc.InvalidArgumentError, "1-D"),
    ("get_vectors-unknown", "get_vectors", lambda x: (([1, 77],), {}), vc.UnknownIdError, "77"),
]


@pytest.mark.parametrize(("method", "make", "error", "match"), [b[1:] for b in BAD_INPUTS],
                         ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_typed_error_and_changes_nothing(case, small, method, make, error,
                                                          match):
    assert issubclass(error, vc.VecIndexError)
    x, _ = small
    index = new(case)
    index.add(x[:1000], ids=np.arange(1000, 2000))
    index.add(x[:1], ids=[1])
    before = index.to_bytes()
    args, kwargs = make(x)
    if method == "get_vectors" and not index.index.keeps_vectors:
        error, match = vc.NotSupportedError, "original vectors"
    with pytest.raises(error, match=match):
        getattr(index, method)(*args, **kwargs)
    assert index.to_bytes() == before
    assert index.next_id == 2000


POSITIONAL_BAD_INPUTS = [
    ("mask-short", "search", lambda x: ((x[:2], 3), {"mask": np.ones(10, bool)}),
     vc.InvalidArgumentError, r"shape \(10,\), expected \(200,\)"),
    ("mask-int", "search", lambda x: ((x[:2], 3), {"mask": np.ones(200, np.int8)}),
     vc.InvalidDtypeError, "bool"),
    ("mask-2d", "search", lambda x: ((x[:2], 3), {"mask": np.ones((1, 200), bool)}),
     vc.InvalidArgumentError, r"\(1, 200\)"),
    ("k-0", "search", lambda x: ((x[:2], 0), {}), vc.InvalidArgumentError, "got 0"),
    ("wrong-dim", "search", lambda x: ((x[:2, :5], 3), {}), vc.DimensionMismatchError,
     "5 dimensions, but this index expects 384"),
    ("remove-out-of-range", "remove", lambda x: (([3, 200],), {}), vc.InvalidArgumentError,
     r"200, outside \[0, 200\)"),
    ("remove-negative", "remove", lambda x: (([-2],), {}), vc.InvalidArgumentError, "-2"),
    ("remove-float", "remove", lambda x: (([1.0],), {}), vc.InvalidDtypeError, "float"),
    ("add-wrong-dim", "add", lambda x: ((x[:3, :100],), {}), vc.DimensionMismatchError,
     "100 dimensions, but this index expects 384"),
    ("add-nan", "add", lambda x: ((_nan_rows(x),), {}), vc.NonFiniteError, "nan"),
    ("train-wrong-dim", "train", lambda x: ((x[:, :100],), {}), vc.DimensionMismatchError,
     "100 dimensions"),
    ("get_vectors-out-of-range", "get_vectors", lambda x: (([0, 999],), {}),
     vc.InvalidArgumentError, "999"),
]


@pytest.mark.parametrize(("method", "make", "error", "match"),
                         [b[1:] for b in POSITIONAL_BAD_INPUTS],
                         ids=[b[0] for b in POSITIONAL_BAD_INPUTS])
def test_positional_bad_input_changes_nothing(case, small, method, make, error, match):
    x, _ = small
    index = positional(case, x[:200])
    before = index.to_bytes()
    args, kwargs = make(x)
    if method == "get_vectors" and not index.keeps_vectors:
        error, match = vc.NotSupportedError, "original vectors"
    with pytest.raises(error, match=match):
        getattr(index, method)(*args, **kwargs)
    assert index.to_bytes() == before


def test_search_params_dict_or_typed_object(case, small):
    x, q = small
    index = new(case)
    index.add(x[:50])
    kind = get_kind(case.name)
    ref = index.search(q, 3)
    for params in (None, {}, kind.SearchParams()):
        res = index.search(q, 3, params=params)
        np.testing.assert_array_equal(res.ids, ref.ids)
    valid = ", ".join(p.name for p in kind.search_params) or "none"
    with pytest.raises(vc.InvalidParameterError, match=f"bogus.*{valid}"):
        index.search(q, 3, params={"bogus": 1})

    class Other:  # not the kind's params type
        pass

    with pytest.raises(vc.InvalidParameterError, match="Other"):
        index.search(q, 3, params=Other())
