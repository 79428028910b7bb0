"""One conformance suite over every registered index spec and metric."""

import copy
import pickle

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import METRICS, MISSING, get_kind, list_indexes

from .tolerances import KNOWN_GAPS, TOLERANCES

SPECS = [(name, metric) for name in list_indexes() for metric in METRICS]


def _gap(request, spec):
    reason = KNOWN_GAPS.get(spec, {}).get(request.node.originalname)
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))


@pytest.fixture(params=SPECS, ids=[f"{n}-{m}" for n, m in SPECS])
def spec(request):
    name, metric = request.param
    _gap(request, name)
    return name, metric


def _new(spec, dim=384):
    name, metric = spec
    return vc.create(name, dim=dim, metric=metric)


def _exact(metric, x, q, k, allow_rows=None):
    flat = vc.FlatIndex(x.shape[1], metric)
    flat.add(x)
    mask = None
    if allow_rows is not None:
        mask = np.zeros(len(x), bool)
        mask[allow_rows] = True
    return flat.search(q, k, mask=mask)


def _recall(found, truth, k):
    return np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth, strict=True)])


def _check_matches_exact(spec, res, ref):
    name, _ = spec
    if get_kind(name).exact:
        np.testing.assert_array_equal(res.ids.astype(np.int64), ref.ids)
        np.testing.assert_array_equal(res.scores, ref.scores)
    else:
        assert _recall(res.ids.astype(np.int64), ref.ids, 10) >= TOLERANCES[name]


def test_registered_spec_has_floor_or_is_exact(spec):
    name, _ = spec
    assert get_kind(name).exact or name in TOLERANCES, f"{name} needs a TOLERANCES entry"


def test_add_search_matches_exact(spec, small):
    x, q = small
    index = _new(spec)
    ids = index.add(x)
    np.testing.assert_array_equal(ids, np.arange(len(x), dtype=np.uint64))
    _check_matches_exact(spec, index.search(q, 10), _exact(spec[1], x, q, 10))


def test_recall_on_real_data(spec, sample):
    index = _new(spec)
    index.add(sample.base)
    res = index.search(sample.queries, 10)
    floor = 1.0 if get_kind(spec[0]).exact else TOLERANCES[spec[0]]
    if spec[1] == "l2":  # sample vectors are unit norm, so l2 ranks like ip up to rounding
        floor = min(floor, 0.99)
    assert _recall(res.ids.astype(np.int64), sample.gt, 10) >= floor


def test_empty_index_and_k_larger_than_n(spec, small):
    x, q = small
    index = _new(spec)
    res = index.search(q, 5)
    assert res.ids.shape == (len(q), 5) and (res.ids == MISSING).all()
    assert np.isneginf(res.scores).all() and (res.counts == 0).all()
    index.add(x[:3])
    res = index.search(q, 7)
    assert (res.counts == 3).all()
    assert (res.ids[:, 3:] == MISSING).all() and np.isneginf(res.scores[:, 3:]).all()
    assert set(res.ids[0, :3].tolist()) == {0, 1, 2}


def test_one_d_query_gives_two_d_result(spec, small):
    x, q = small
    index = _new(spec)
    index.add(x)
    res = index.search(q[0], 4)
    assert res.ids.shape == (1, 4) and res.scores.shape == (1, 4) and res.counts.shape == (1,)


def test_lists_and_torch_in(spec, small):
    x, q = small
    index = _new(spec)
    index.add(x[:50].tolist())
    ref = index.search(q[:3], 5)
    torch = pytest.importorskip("torch")
    for dtype in (torch.float32, torch.float64):
        res = index.search(torch.from_numpy(q[:3]).to(dtype), 5)
        np.testing.assert_array_equal(res.ids, ref.ids)
    res = index.search(torch.from_numpy(q[:3]).to(torch.float16), 5)
    assert res.ids.shape == (3, 5)


def test_remove_then_search(spec, small):
    x, q = small
    index = _new(spec)
    ids = index.add(x)
    gone = ids[::3]
    assert index.remove(gone) == len(gone)
    assert index.remove(gone) == 0
    assert len(index) == len(x) - len(gone)
    assert all(int(i) not in index for i in gone[:20])
    res = index.search(q, 10)
    assert not np.isin(res.ids, gone).any()
    keep = np.setdiff1d(np.arange(len(x)), gone.astype(np.int64))
    ref = _exact(spec[1], x[keep], q, 10)
    expected = vc.SearchResult(ref.scores, keep[ref.ids], ref.counts)
    _check_matches_exact(spec, res, expected)


def test_allow_lists(spec, small):
    x, q = small
    index = _new(spec)
    ids = index.add(x, ids=np.arange(len(x), dtype=np.uint64) * 7 + 3)
    rows = np.arange(0, len(x), 5)
    ref = _exact(spec[1], x, q, 10, allow_rows=rows)
    expected = vc.SearchResult(ref.scores, ids[ref.ids], ref.counts)
    by_ids = index.search(q, 10, allow=ids[rows])
    by_mask = index.search(q, 10, allow=np.isin(index.ids, ids[rows]))
    by_pred = index.search(q, 10, allow=lambda a: (a - 3) % 35 == 0)
    for res in (by_ids, by_mask, by_pred):
        assert np.isin(res.ids, ids[rows]).all()
        _check_matches_exact(spec, res, expected)
    tiny = index.search(q, 10, allow=ids[:2])
    assert (tiny.counts == 2).all() and (tiny.ids[:, 2:] == MISSING).all()


def test_positional_mask(spec, small):
    x, q = small
    name, metric = spec
    index = get_kind(name).cls(dim=384, metric=metric)
    if not index.is_trained:
        index.train(x)
    index.add(x)
    mask = np.zeros(len(x), bool)
    mask[100:400] = True
    res = index.search(q, 10, mask=mask)
    assert ((res.ids >= 100) & (res.ids < 400)).all()
    ref = _exact(metric, x, q, 10, allow_rows=np.arange(100, 400))
    _check_matches_exact(spec, res, ref)


def test_save_load_pickle_copy_keep_ids(spec, small, tmp_path):
    x, q = small
    index = _new(spec)
    index.add(x, ids=np.arange(len(x), dtype=np.uint64) * 11)
    index.remove([0, 22, 55])
    ref = index.search(q, 10)
    path = tmp_path / "index.vecidx"
    index.save(path)
    copies = [
        vc.load(path),
        pickle.loads(pickle.dumps(index)),
        copy.copy(index),
        copy.deepcopy(index),
    ]
    for other in copies:
        assert other.spec == index.spec and other.metric == index.metric
        np.testing.assert_array_equal(other.ids, index.ids)
        assert other.next_id == index.next_id
        res = other.search(q, 10)
        np.testing.assert_array_equal(res.ids, ref.ids)
        np.testing.assert_array_equal(res.scores, ref.scores)
    assert copies[0].to_bytes() == index.to_bytes()


BAD_INPUTS = [
    ("add", lambda x: (np.array([["a"] * 384]),), vc.InvalidDtypeError, "dtype"),
    ("add", lambda x: (x[:2].astype(np.complex64),), vc.InvalidDtypeError, "complex"),
    ("add", lambda x: (np.ones((2, 384), bool),), vc.InvalidDtypeError, "bool"),
    ("add", lambda x: (np.array([[object()] * 384]),), vc.InvalidDtypeError, "object"),
    ("add", lambda x: (x[:2, :380],), vc.DimensionMismatchError, "380.*384"),
    ("add", lambda x: (x[:2].reshape(2, 2, 192),), vc.InvalidArgumentError, "3 dimensions"),
    ("add", lambda x: (np.where(np.eye(2, 384, dtype=bool), np.nan, x[:2]),), vc.NonFiniteError,
     "nan"),
    ("add", lambda x: (np.full((1, 384), np.inf),), vc.NonFiniteError, "inf"),
    ("add", lambda x: (np.full((1, 384), 1e39),), vc.NonFiniteError, "inf"),
    ("add", lambda x: (np.empty((0, 384), np.float32),), vc.EmptyInputError, r"\(0, 384\)"),
    ("add", lambda x: (x[:2], [5, 5]), vc.DuplicateIdError, r"\[5\]"),
    ("add", lambda x: (x[:2], [1, 2000]), vc.DuplicateIdError, r"\[1\]"),
    ("add", lambda x: (x[:1], [MISSING]), vc.InvalidArgumentError, "reserved"),
    ("add", lambda x: (x[:1], [-4]), vc.InvalidArgumentError, "-4"),
    ("add", lambda x: (x[:1], [1.5]), vc.InvalidDtypeError, "float"),
    ("add", lambda x: (x[:2], [3000]), vc.InvalidArgumentError, "1 entries, expected 2"),
    ("search", lambda x: (x[:1], 0), vc.InvalidArgumentError, "got 0"),
    ("search", lambda x: (x[:1], -1), vc.InvalidArgumentError, "got -1"),
    ("search", lambda x: (x[:1], 2.5), vc.InvalidDtypeError, "2.5"),
    ("search", lambda x: (x[:1], True), vc.InvalidDtypeError, "True"),
    ("search", lambda x: (x[:1], 10**9), vc.InvalidArgumentError, "1000000000"),
    ("search", lambda x: (x[:1, :10], 3), vc.DimensionMismatchError, "10.*384"),
    ("search", lambda x: (np.full(384, np.nan), 3), vc.NonFiniteError, "nan"),
    ("remove", lambda x: ([-1],), vc.InvalidArgumentError, "-1"),
    ("remove", lambda x: ([0.5],), vc.InvalidDtypeError, "float"),
]


@pytest.mark.parametrize(("method", "make_args", "error", "match"), BAD_INPUTS,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_INPUTS)])
def test_bad_input_raises_typed_error_and_changes_nothing(spec, small, method, make_args,
                                                          error, match):
    x, _ = small
    index = _new(spec)
    index.add(x[:1000], ids=np.arange(1000, 2000))
    index.add(x[:1], ids=[1])
    before = index.to_bytes()
    with pytest.raises(error, match=match):
        getattr(index, method)(*make_args(x))
    assert index.to_bytes() == before
    assert issubclass(error, vc.VecIndexError)


def test_search_params_validated(spec, small):
    x, q = small
    index = _new(spec)
    index.add(x[:10])
    with pytest.raises(vc.InvalidParameterError, match="bogus"):
        index.search(q, 3, params={"bogus": 1})
    cls = get_kind(spec[0]).SearchParams
    assert index.search(q, 3, params=cls()).ids.shape == (len(q), 3)
