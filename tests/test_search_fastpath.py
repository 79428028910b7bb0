"""The single-query fast path of ``VectorIndex.search`` / ``IdMapIndex.search``.

A float32 C-contiguous query with an int ``k`` and no mask skips the generic coercion
machinery and reuses validated ``params``; everything a caller relies on must still hold:
the same typed errors, the same results as the full route, fresh result arrays, and knobs
validated per distinct value (types included).
"""

import warnings

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import MISSING
from vecindex_core.base import PARAMS_CACHE_SIZE, full_counts
from vecindex_core.errors import (
    DimensionMismatchError,
    InvalidArgumentError,
    InvalidDtypeError,
    InvalidParameterError,
    NonFiniteError,
    NotTrainedError,
)
from vecindex_core.registry import get_kind
from vecindex_core.validation import quick_float_rows

DIM = 8


@pytest.fixture
def data(rng):
    return rng.standard_normal((300, DIM)).astype(np.float32)


@pytest.fixture
def ivf(data):
    """A trained positional ivf_flat (int and float knobs) holding ``data``."""
    index = get_kind("ivf_flat").cls(DIM, "l2", nlist=4, seed=0)
    index.train(data)
    index.add(data)
    return index


# --------------------------------------------------------------------------- quick_float_rows
@pytest.fixture(params=["native", "numpy"])
def check_impl(request, monkeypatch):
    """quick_float_rows on the native ``f32_rows`` check, then on the numpy one (the native
    check is installed by hand under ``VECINDEX_NATIVE=off``, where the suite also runs)."""
    from vecindex_core import _native, validation

    if request.param == "numpy":
        monkeypatch.setattr(validation, "_f32_rows", None)
    else:
        assert _native._ext is not None, "the native extension must be built here"
        monkeypatch.setattr(validation, "_f32_rows", _native._ext.f32_rows)
    return request.param


class _SubArray(np.ndarray):
    """An ndarray subclass (the fast path takes plain ndarrays only)."""


def _unaligned(x):
    """A float32 copy of ``x`` that starts one byte into its buffer (not 4-byte aligned)."""
    raw = np.zeros(x.nbytes + 1, dtype=np.uint8)
    out = np.ndarray(x.shape, dtype=np.float32, buffer=raw, offset=1)
    out[...] = x
    return out


def test_quick_float_rows_takes_only_clean_float32_rows(data, check_impl):
    q = data[:3]
    assert quick_float_rows(q, DIM) is q
    one = quick_float_rows(data[0], DIM)
    assert one is not None and one.shape == (1, DIM) and np.shares_memory(one, data)
    for other in (
        data[:3].astype(np.float64),  # another dtype
        data[:3, ::2],  # wrong width
        np.asfortranarray(np.repeat(data[:3], 2, axis=1))[:, :DIM],  # not C-contiguous
        data[:0],  # empty
        data[:3].tolist(),  # not an ndarray
        data[:3].astype(">f4"),  # byte-swapped float32
        data[:2].reshape(2, 1, DIM),  # 3-D
        np.float32(1.0),  # 0-D
        data[:3].view(_SubArray),  # an ndarray subclass
        memoryview(data[:3]),  # a float32 buffer that is not an ndarray
        data[:3].view(np.int32),  # the same bytes as another dtype
        data[:3].view(np.dtype([("v", np.float32, (DIM,))])).reshape(3),  # structured
    ):
        assert quick_float_rows(other, DIM) is None
    assert quick_float_rows(data[:3], 0) is None and quick_float_rows(data[:3], -1) is None
    unaligned = _unaligned(data[:3])
    got = quick_float_rows(unaligned, DIM)  # the numpy check takes it; the native one passes
    assert got is None if check_impl == "native" else got is unaligned
    with pytest.raises(vc.errors.NonFiniteError):  # the full route still takes and checks it
        bad = _unaligned(data[:3])
        bad[0, 0] = np.nan
        vc.create("flat", dim=DIM).search(bad, 2)
    assert vc.create("flat", dim=DIM).search(unaligned, 2).ids.shape == (3, 2)
    for bad in (np.nan, np.inf, -np.inf, np.float32(np.nan) * -1):
        for row, col in ((0, 0), (1, 3), (1, DIM - 1)):
            q = data[:2].copy()
            q[row, col] = bad
            assert quick_float_rows(q, DIM) is None
            assert quick_float_rows(q[row], DIM) is None
    big = np.full((2, DIM), np.finfo(np.float32).max, dtype=np.float32)
    assert quick_float_rows(big, DIM) is big  # huge but finite


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("spec", ["flat", "ivf_flat(nlist=4)"])
@pytest.mark.parametrize("values", [[np.nan], [np.inf], [-np.inf], [np.inf, -np.inf]])
def test_non_finite_float32_queries_raise_typed_errors_without_warnings(spec, values, data):
    index = vc.create(spec, dim=DIM, metric="l2")
    index.add(data)
    for q in (data[:1].copy(), data[:5].copy()):
        q[-1, : len(values)] = values
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(NonFiniteError, match="non-finite"):
                index.search(q, 3)
            with pytest.raises(NonFiniteError):
                index.index.search(q[-1], 3)


def test_huge_finite_float32_queries_are_accepted_without_warnings(data):
    index = vc.create("flat", dim=DIM, metric="ip")
    index.add(data)
    q = np.full((1, DIM), 1e30, dtype=np.float32)  # q @ q overflows float32; q is finite
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = index.search(q, 4)
    assert res.counts.tolist() == [4]


@pytest.mark.parametrize("bad_dim", [DIM - 1, DIM + 1])
def test_wrong_dimension_raises_on_the_fast_path(bad_dim, data):
    index = vc.create("flat", dim=DIM)
    index.add(data)
    for q in (np.zeros(bad_dim, np.float32), np.zeros((1, bad_dim), np.float32)):
        with pytest.raises(DimensionMismatchError, match=f"{bad_dim} dimensions"):
            index.search(q, 3)


def test_k_is_checked_on_the_fast_path(data):
    index = vc.create("flat", dim=DIM)
    index.add(data)
    q = data[:1]
    for bad in (True, 2.0, "3"):
        with pytest.raises(InvalidDtypeError):
            index.search(q, bad)
    for bad in (0, -1, vc.validation.MAX_K + 1):
        with pytest.raises(InvalidArgumentError):
            index.search(q, bad)
    np.testing.assert_array_equal(index.search(q, np.int64(5)).ids, index.search(q, 5).ids)


def test_untrained_index_still_raises_and_empty_index_pads(staged_kind, data):
    inner = vc.get_kind(staged_kind).cls(DIM, "ip", min_train=5)
    empty = inner.search(data[:1], 3)  # nothing to search: padded, no error
    assert empty.counts.tolist() == [0] and empty.ids.tolist() == [[-1, -1, -1]]
    inner.flat._add(data[:4])  # rows in an untrained index (no public way there)
    with pytest.raises(NotTrainedError, match="must be trained before search"):
        inner.search(data[:1], 3)
    with pytest.raises(NotTrainedError):
        inner.search(data[:1].astype(np.float64), 3)


# --------------------------------------------------------------------------- same results
@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("spec", ["flat", "ivf_flat(nlist=4)"])
def test_fast_and_full_routes_agree(spec, metric, data, rng):
    index = vc.create(spec, dim=DIM, metric=metric)
    index.add(data)
    q = rng.standard_normal((4, DIM)).astype(np.float32)
    for k in (1, 7, len(data) + 5):  # k > ntotal pads
        fast = index.search(q, k)
        full = index.search(q.astype(np.float64), k)  # float64: the full route
        listed = index.search(q.tolist(), k)
        for other in (full, listed):
            np.testing.assert_array_equal(fast.ids, other.ids)
            np.testing.assert_array_equal(fast.scores, other.scores)
            np.testing.assert_array_equal(fast.counts, other.counts)
        one = index.search(q[2], k)
        np.testing.assert_array_equal(one.ids, fast.ids[2:3])
        np.testing.assert_array_equal(one.scores, fast.scores[2:3])
    padded = index.search(q[:1], len(data) + 2)
    assert padded.ids.dtype == np.uint64 and padded.ids[0, -1] == MISSING
    assert padded.counts.tolist() == [len(data)]


ROUTE_SPECS = ["flat", "lsh", "simhash", "pcahash(train_size=100)", "itq(train_size=100)",
               "pq(m=2,train_size=200)", "ivf_flat(nlist=4)", "ivf_pq(nlist=4,m=2)"]


def _same_result(a, b):
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def _outcome(search, *args, **kwargs):
    try:
        return search(*args, **kwargs)
    except vc.errors.VecIndexError as e:
        return type(e), str(e)


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("spec", ROUTE_SPECS)
def test_every_kind_gives_the_full_routes_results_and_errors(spec, metric, data, rng):
    """An ``np.int64`` k takes the full route with the very same query array: bit-identical
    results (empty and filled, k past ntotal, 1-D and 2-D, default knobs given explicitly)
    and the same typed error for bad knobs, on the IdMapIndex and its positional index."""
    index = vc.create(spec, dim=DIM, metric=metric)
    q = rng.standard_normal((3, DIM)).astype(np.float32)
    for filled in (False, True):
        if filled:
            index.add(data)
            assert index._staging is None
        defaults = dict(index.index.search_defaults)
        bad_knobs = [{"nope": 1}, *({name: "x"} for name in defaults)]
        for target in (index, index.index):
            for k in (1, 5, len(data) + 3):
                for qq in (q, q[1]):
                    _same_result(target.search(qq, k), target.search(qq, np.int64(k)))
                _same_result(target.search(q, k, params=defaults),
                             target.search(q, np.int64(k), params=defaults))
                for bad in bad_knobs:
                    fast = _outcome(target.search, q, k, params=bad)
                    assert isinstance(fast, tuple) and fast[0] is InvalidParameterError
                    assert fast == _outcome(target.search, q, np.int64(k), params=bad)


def test_float32_with_dtype_metadata_takes_the_full_route(data, check_impl):
    """A float32 dtype carrying metadata is another dtype object: as_float_matrix returns a
    view with the plain dtype, so the fast path must not hand back ``x`` itself."""
    tagged = data[:3].astype(np.dtype(np.float32, metadata={"unit": "m"}))
    assert quick_float_rows(tagged, DIM) is None
    assert quick_float_rows(tagged[0], DIM) is None
    out = vc.validation.as_float_matrix(tagged, DIM)
    assert out.dtype is np.dtype(np.float32) and out.dtype.metadata is None
    index = vc.create("flat", dim=DIM)
    index.add(data)
    _same_result(index.search(tagged, 4), index.search(data[:3], 4))


def test_ids_follow_swap_removes_on_the_fast_path(data):
    index = vc.create("flat", dim=DIM, metric="l2")
    ids = index.add(data, ids=np.arange(1000, 1000 + len(data)))
    index.remove(ids[:50:3])
    for i in (60, 120, len(data) - 1):  # rows that moved or not: each finds itself first
        res = index.search(data[i], 1)
        assert res.ids[0, 0] == ids[i] and res.counts.tolist() == [1]


def test_results_are_fresh_writeable_arrays(data):
    index = vc.create("flat", dim=DIM)
    index.add(data)
    a = index.search(data[:1], 3)
    a.counts[0] = 99
    a.ids[0, 0] = 7
    b = index.search(data[:1], 3)
    assert b.counts.tolist() == [3] and b.ids[0, 0] != 7
    c = full_counts(1, 3)
    c[0] = 0
    assert full_counts(1, 3).tolist() == [3] and full_counts(4, 2).tolist() == [2, 2, 2, 2]


# --------------------------------------------------------------------------- params cache
def test_params_are_revalidated_per_type_and_value(ivf, data):
    q = data[:1]
    ivf.search(q, 3, params={"nprobe": 1})
    with pytest.raises(InvalidParameterError):
        ivf.search(q, 3, params={"nprobe": True})  # == 1 and same hash, but a bool
    with pytest.raises(InvalidParameterError):
        ivf.search(q, 3, params={"nprobe": 1.0})
    p = {"nprobe": 2}
    ivf.search(q, 3, params=p)
    p["nprobe"] = 0  # the same dict, mutated: validated again
    with pytest.raises(InvalidParameterError, match="nprobe"):
        ivf.search(q, 3, params=p)
    with pytest.raises(InvalidParameterError, match="unknown"):
        ivf.search(q, 3, params={"nprobes": 2})
    with pytest.raises(InvalidParameterError):
        ivf.search(q, 3, params={"nprobe": [2]})  # unhashable: validated, not cached
    with pytest.raises(InvalidParameterError):
        ivf.search(q, 3, params=("nprobe", 2))


def test_params_cache_serves_equal_results_and_stays_bounded(ivf, data):
    q = data[:5]
    typed = ivf.kind.SearchParams(nprobe=4, ratio_threshold=0.0)
    first = ivf.search(q, 5, params={"nprobe": 4})
    for params in ({"nprobe": 4}, typed, typed, {"nprobe": np.int64(4)}):
        again = ivf.search(q, 5, params=params)
        np.testing.assert_array_equal(first.ids, again.ids)
    resolved = ivf._resolve_params({"nprobe": 4})
    assert resolved is ivf._resolve_params({"nprobe": 4})  # cached
    with pytest.raises(TypeError):
        resolved["nprobe"] = 1  # read-only
    assert ivf._resolve_params(None) is ivf.search_defaults
    for n in range(1, 3 * PARAMS_CACHE_SIZE):
        ivf.search(q[:1], 2, params={"nprobe": n})
    assert 0 < len(ivf._params_cache) <= PARAMS_CACHE_SIZE


def test_staged_idmap_rejects_bad_knobs_on_every_call(data):
    index = vc.create("ivf_flat(nlist=4,train_size=1000)", dim=DIM)
    index.add(data[:10])
    assert index._staging is not None
    index.search(data[:1], 3, params={"nprobe": 2})
    for _ in range(2):
        with pytest.raises(InvalidParameterError):
            index.search(data[:1], 3, params={"nprobe": True})
