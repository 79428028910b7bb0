"""Native float32 top-k over score tiles (``vecindex_core._native.topk``): every usable
instruction-set path leaves the same heaps as the numba reference ``_update_rows`` bit for
bit (random and adversarial scores, l2, masks, k past the width, odd widths), ``dense_topk``
gives the same results on every path, concurrent calls, typed errors at the buffer
boundary, and ``VECINDEX_NATIVE=off`` gives the same ``flat`` search results."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import _native
from vecindex_core._kernels import topk as T
from vecindex_core._native import topk as NT
from vecindex_core.errors import DimensionMismatchError, InvalidArgumentError, InvalidDtypeError

#: every path this CPU runs (portable always; avx2 / avx512 where the CPU has them)
ISAS = list(_native._usable())
ONE = np.ones(1, np.bool_)
ZERO = np.zeros(1, np.float32)


def same_bits(a, b):
    """Equal dtype, shape and bytes (so -0.0 and 0.0 differ, and NaN equals itself)."""
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(np.ascontiguousarray(a).view(np.uint8),
                                  np.ascontiguousarray(b).view(np.uint8))


def numba_heaps(tile, col0, offset, mask, qn, xn, heaps):
    hs, hi = (h.copy() for h in heaps)
    part = tile[:, col0:]
    T._update_rows(part, 0, part.shape[0], offset, ONE if mask is None else mask,
                   mask is not None, ZERO if qn is None else qn, ZERO if xn is None else xn,
                   qn is not None, hs, hi)
    return hs, hi


def check_tile(tile, k, *, col0=0, offset=0, mask=None, l2_norms=None, heaps=None, isas=ISAS):
    """The heaps after one tile, numba vs every native path (from the same start)."""
    qn, xn = l2_norms if l2_norms is not None else (None, None)
    start = heaps if heaps is not None else T.init_heaps(tile.shape[0], k)
    ref = numba_heaps(tile, col0, offset, mask, qn, xn, start)
    for isa in isas:
        hs, hi = (h.copy() for h in start)
        NT.scan_tile(tile, col0, offset, mask, qn, xn, hs, hi, isa=isa)
        same_bits(hs, ref[0])
        same_bits(hi, ref[1])
    return ref


def check_dense(q, x, k, *, l2=False, mask=None, slot_map=None):
    """dense_topk on the numba path vs each native path, bit for bit."""
    xn = T.sq_norms(x) if l2 else None
    with _native._use(None):
        ref = T.dense_topk(q, x, k, l2=l2, data_sq_norms=xn, mask=mask, slot_map=slot_map)
    for isa in ISAS:
        with _native._use(isa):
            got = T.dense_topk(q, x, k, l2=l2, data_sq_norms=xn, mask=mask, slot_map=slot_map)
        for a, b in zip(got, ref, strict=True):
            same_bits(a, b)
    return ref


def test_paths_include_portable():
    assert "portable" in ISAS
    assert NT.scan_tile.__module__ == "vecindex_core._native.topk"


# --------------------------------------------------------------------------- one tile
@pytest.mark.parametrize("width", [1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 100, 2048])
@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_random_tiles_match_reference(rng, width, k):
    tile = rng.standard_normal((9, width)).astype(np.float32)
    check_tile(tile, k, offset=5)


@pytest.mark.parametrize("width", [5, 33, 130])
def test_warm_heaps_carry_over_tiles(rng, width):
    """Heaps from earlier tiles (partly full, then full) are continued identically."""
    k = 12
    heaps = T.init_heaps(6, k)
    offset = 0
    for _ in range(4):
        tile = rng.standard_normal((6, width)).astype(np.float32)
        heaps = check_tile(tile, k, offset=offset, heaps=heaps)
        offset += width


def test_ties_everywhere(rng):
    """A handful of distinct values: the lower slot wins every tie, on every path."""
    tile = rng.integers(-2, 3, (7, 301)).astype(np.float32)
    for k in (1, 5, 64, 301, 400):
        check_tile(tile, k)
    check_tile(np.zeros((3, 77), np.float32), 10)  # all equal
    check_tile(np.full((3, 77), -0.0, np.float32), 10)  # all negative zero


def test_infinities_and_huge_scores(rng):
    tile = rng.standard_normal((8, 200)).astype(np.float32)
    tile[:, ::3] = -np.inf  # never candidates (not above the -inf padding)
    tile[0] = -np.inf
    tile[1, 50:60] = np.inf
    tile[2, ::7] = np.finfo(np.float32).max
    tile[3, ::5] = -np.finfo(np.float32).max
    tile[4] = np.finfo(np.float32).tiny * rng.standard_normal(200).astype(np.float32)
    for k in (1, 10, 150):
        hs, hi = check_tile(tile, k)
        assert (hi[0] == -1).all() and np.isneginf(hs[0]).all()


def test_k_past_the_width_pads(rng):
    tile = rng.standard_normal((4, 13)).astype(np.float32)
    _, hi = check_tile(tile, 20)
    assert (np.sort(hi, axis=1)[:, :7] == -1).all()


def test_columns_from_col0_are_slots_from_offset(rng):
    tile = rng.standard_normal((5, 90)).astype(np.float32)
    for col0 in (0, 1, 17, 89, 90):
        check_tile(tile, 6, col0=col0, offset=1000)


@pytest.mark.parametrize("width", [9, 40, 257])
def test_masks(rng, width):
    tile = rng.standard_normal((6, width)).astype(np.float32)
    offset = 3
    full = offset + width
    check_tile(tile, 5, offset=offset, mask=np.zeros(full, np.bool_))  # all false
    for j in (offset, offset + width // 2, full - 1):  # exactly one allowed slot
        one = np.zeros(full, np.bool_)
        one[j] = True
        _, hi = check_tile(tile, 5, offset=offset, mask=one)
        assert (np.sort(hi, axis=1)[:, -1] == j).all()
    check_tile(tile, 5, offset=offset, mask=rng.random(full + 10) < 0.3)  # longer than needed


def test_mask_bytes_other_than_one_count_as_true(rng):
    """A bool array viewed from bytes 0/2/255: non-zero is allowed (as numba reads it)."""
    tile = rng.standard_normal((3, 64)).astype(np.float32)
    raw = rng.choice(np.array([0, 1, 2, 128, 255], np.uint8), 64)
    check_tile(tile, 7, mask=raw.view(np.bool_))


def l2_tile(rng, nq, n, d=8):
    q = rng.standard_normal((nq, d)).astype(np.float32)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[::4] = q[rng.integers(0, nq, len(x[::4]))]  # exact duplicates: distance ~0 or < 0
    return q @ x.T, T.sq_norms(q), T.sq_norms(x)


@pytest.mark.parametrize("width", [3, 32, 45, 300])
def test_l2_scores_bit_identical(rng, width):
    tile, qn, xn = l2_tile(rng, 7, width)
    for k in (1, 4, 50):
        check_tile(tile, k, l2_norms=(qn, xn))
    mask = rng.random(width) < 0.5
    check_tile(tile, 4, l2_norms=(qn, xn), mask=mask)


def test_l2_tiny_negative_distances_clamp_to_zero():
    """(qn + xn) - 2 ip below 0 by rounding: every path scores -0.0 (the clamp, negated)."""
    qn = np.array([1.0, 2.0], np.float32)
    xn = np.array([1.0, 1.0000001, 0.9999999, 3.0, 1.0], np.float32)
    tile = np.array([[1.0000001, 1.0, 1.0, 0.5, 1.0],
                     [1.5000001, 1.5, 1.5000002, 1.0, 1.5]], np.float32)
    hs, _ = check_tile(tile, 3, l2_norms=(qn, xn))
    scores = np.sort(hs, axis=1)[:, ::-1]
    assert (scores[:, 0] == 0).all() and np.signbit(scores[:, 0]).all()
    for k in (1, 5, 6):
        check_tile(tile, k, l2_norms=(qn, xn))


def test_l2_nan_distance_never_enters_a_heap():
    """A NaN distance (inf norms minus an inf product) is not a candidate, as in numba's
    ``max`` (d unless 0 > d): the clamp must not turn it into -0.0, the best l2 score."""
    inf, nan = np.float32(np.inf), np.float32(np.nan)
    tile = np.array([[inf, 0.5, nan, 0.25, inf, 1.0, 0.0, 2.0, inf] * 5,
                     [nan, 1.0, 0.5, inf, 0.25, nan, 0.0, 3.0, 1.5] * 5], np.float32)
    qn = np.array([inf, 1.0], np.float32)
    xn = np.tile(np.array([inf, 1.0, 1.0, inf, inf, 1.0, 1.0, 2.0, 1.0], np.float32), 5)
    for k in (1, 3, 20):
        hs, hi = check_tile(tile, k, l2_norms=(qn, xn))
        with np.errstate(invalid="ignore"):
            d = (qn[:, None] + xn[None, :]) - 2 * tile
        for r in range(2):
            assert not np.isin(hi[r], np.flatnonzero(np.isnan(d[r]))).any()
    # d == -0.0 (norms -0.0, product +0.0) stays -0.0: the score is +0.0, as numba's
    zero = np.zeros((1, 3), np.float32)
    hs, _ = check_tile(zero, 3, l2_norms=(np.array([-0.0], np.float32),
                                          np.array([-0.0, 0.0, -0.0], np.float32)))
    assert sorted(np.signbit(hs[0]).tolist()) == [False, False, True]


def test_flat_l2_huge_vectors_same_on_every_path():
    """Finite vectors whose norms overflow float32: a NaN distance is never a result."""
    x = np.ones((40, 4), np.float32)
    x[3], x[17] = 1e20, -1e20
    q = np.ones((T.SMALL_BATCH + 2, 4), np.float32)
    q[:4] = 1e20
    results = []
    for isa in [None, *ISAS]:
        with _native._use(isa), np.errstate(over="ignore", invalid="ignore"):
            index = vc.FlatIndex(4, "l2")
            index.add(x)
            results.append(index.search(q, 5))
    for res in results[1:]:
        for a, b in zip(res, results[0], strict=True):
            same_bits(a, b)
    assert 3 not in results[0].ids[:4]


# --------------------------------------------------------------------------- dense_topk
@pytest.mark.parametrize("l2", [False, True])
def test_dense_topk_all_paths_match(rng, l2):
    q = rng.standard_normal((37, 16)).astype(np.float32)
    x = rng.standard_normal((T.DB_BLOCK + 777, 16)).astype(np.float32)  # a narrow last tile
    for k in (1, 10, 100):
        check_dense(q, x, k, l2=l2)
    check_dense(q, x, 10, l2=l2, mask=rng.random(len(x)) < 0.2)
    mask = np.zeros(len(x), np.bool_)
    check_dense(q, x, 10, l2=l2, mask=mask)
    mask[T.DB_BLOCK + 5] = True
    _, slots, counts = check_dense(q, x, 10, l2=l2, mask=mask)
    assert (slots[:, 0] == T.DB_BLOCK + 5).all() and (counts == 1).all()
    sub = np.sort(rng.choice(10**6, len(x), replace=False)).astype(np.int64)
    check_dense(q, x, 7, l2=l2, slot_map=sub)


def test_dense_topk_ties_and_k_past_n(rng):
    q = rng.integers(-1, 2, (12, 8)).astype(np.float32)
    x = rng.integers(-1, 2, (300, 8)).astype(np.float32)
    for k in (1, 50, 299, 300, 301, 500):
        check_dense(q, x, k)
        check_dense(q, x, k, l2=True)


def test_dense_topk_large_batch_on_two_threads(rng):
    """Query blocks past QUERY_BLOCK and tiles split over two threads."""
    q = rng.standard_normal((T.QUERY_BLOCK + 40, 8)).astype(np.float32)
    x = rng.standard_normal((3000, 8)).astype(np.float32)
    previous = vc.get_num_threads()
    vc.set_num_threads(2)
    try:
        check_dense(q, x, 10)
        check_dense(q, x, 10, l2=True, mask=rng.random(len(x)) < 0.5)
    finally:
        vc.set_num_threads(previous)


def test_dense_topk_dispatch_follows_active_isa(rng, monkeypatch):
    calls = []
    real = T._native_scan_tile
    monkeypatch.setattr(T, "_native_scan_tile", lambda *a, **kw: calls.append(kw["isa"])
                        or real(*a, **kw))
    q = rng.standard_normal((10, 8)).astype(np.float32)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    with _native._use("portable"):
        T.dense_topk(q, x, 3)
    assert calls == ["portable"]
    with _native._use(None):
        T.dense_topk(q, x, 3)
    assert calls == ["portable"]


def test_two_threads_at_once_give_the_same_results(rng):
    isa = ISAS[-1]
    tile = rng.standard_normal((64, 3000)).astype(np.float32)
    expected = check_tile(tile, 10, isas=[isa])
    results: dict[int, list] = {0: [], 1: []}
    barrier = threading.Barrier(2)

    def work(i):
        barrier.wait()
        for _ in range(5):
            hs, hi = T.init_heaps(64, 10)
            NT.scan_tile(tile, 0, 0, None, None, None, hs, hi, 2, isa=isa)
            results[i].append((hs, hi))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        assert len(results[i]) == 5
        for hs, hi in results[i]:
            same_bits(hs, expected[0])
            same_bits(hi, expected[1])


# --------------------------------------------------------------------------- errors
def test_bad_buffers_raise_typed_errors(rng):
    tile = rng.standard_normal((4, 20)).astype(np.float32)
    hs, hi = T.init_heaps(4, 3)
    qn, xn = np.ones(4, np.float32), np.ones(20, np.float32)
    ok = dict(tile=tile, col0=0, offset=0, mask=None, qn=None, xn=None, hs=hs, hi=hi)

    def call(**kw):
        a = {**ok, **kw}
        NT.scan_tile(a["tile"], a["col0"], a["offset"], a["mask"], a["qn"], a["xn"],
                     a["hs"], a["hi"], isa="portable")

    with pytest.raises(InvalidDtypeError, match="tile must be a float32"):
        call(tile=tile.astype(np.float64))
    with pytest.raises(InvalidDtypeError, match="hi must be a int64"):
        call(hi=hi.astype(np.int32))
    with pytest.raises(InvalidDtypeError, match="mask must be a bool"):
        call(mask=np.ones(20, np.uint8))
    with pytest.raises(InvalidDtypeError, match="tile must be a float32 array, got list"):
        call(tile=[[1.0]])
    with pytest.raises(InvalidArgumentError, match="C-contiguous"):
        call(tile=tile[:, ::2])
    with pytest.raises(InvalidArgumentError, match="writable"):
        ro = hs.copy()
        ro.flags.writeable = False
        call(hs=ro)
    with pytest.raises(InvalidArgumentError, match="tile must have 2 dimensions, got 1"):
        call(tile=tile[0])
    with pytest.raises(InvalidArgumentError, match="col0 must be in \\[0, 20\\].*got 21"):
        call(col0=21)
    with pytest.raises(InvalidArgumentError, match="col0 .* got -1"):
        call(col0=-1)
    with pytest.raises(InvalidArgumentError, match="offset must be >= 0.*got -2"):
        call(offset=-2)
    with pytest.raises(InvalidArgumentError, match="qn and xn must both be given"):
        call(qn=qn)
    with pytest.raises(DimensionMismatchError, match="hs and hi must have shape \\(4, k\\)"):
        call(hs=T.init_heaps(5, 3)[0])
    with pytest.raises(DimensionMismatchError, match="hs and hi"):
        call(hi=T.init_heaps(4, 2)[1])
    with pytest.raises(DimensionMismatchError, match="mask has 19 entries.*25"):
        call(mask=np.ones(19, np.bool_), offset=5)
    with pytest.raises(DimensionMismatchError, match="qn has 3 entries.*4 rows"):
        call(qn=qn[:3], xn=xn)
    with pytest.raises(DimensionMismatchError, match="xn has 20 entries.*21"):
        call(qn=qn, xn=xn, offset=1)
    with pytest.raises(InvalidArgumentError, match="col0 does not fit a 64-bit index"):
        call(col0=2**63)
    with pytest.raises(InvalidArgumentError, match="offset does not fit.*got 18446744073709551616"):
        call(offset=2**64)
    with pytest.raises(InvalidArgumentError, match="offset must be >= 0"):
        call(offset=2**63 - 1)  # offset + columns would overflow
    with pytest.raises(InvalidDtypeError, match="col0 must be an integer, got 1.5"):
        call(col0=1.5)
    with pytest.raises(InvalidDtypeError, match="offset must be an integer, got True"):
        call(offset=True)
    with pytest.raises(InvalidArgumentError, match="r0 does not fit a 64-bit index"):
        NT.scan_tile(tile, 0, 0, None, None, None, hs, hi, 1, -2**70, 1, isa="portable")
    raw = np.zeros(64, np.int64)  # hs and hi as overlapping views of one buffer
    with pytest.raises(InvalidArgumentError, match="hi and hs share memory"):
        call(hs=raw.view(np.float32)[:12].reshape(4, 3), hi=raw[:12].reshape(4, 3))
    alias = np.zeros((4, 20), np.float32)  # hs inside the tile it reads
    with pytest.raises(InvalidArgumentError, match="tile and hs share memory"):
        call(tile=alias, hs=alias.reshape(-1)[:12].reshape(4, 3))
    shared = np.ones(32, np.float32)  # the l2 norms under the heap scores
    with pytest.raises(InvalidArgumentError, match="xn and hs share memory"):
        call(qn=qn, xn=shared[:20], hs=shared[8:20].reshape(4, 3))
    with pytest.raises(InvalidArgumentError, match="row range \\[2, 5\\)"):
        NT.scan_tile(tile, 0, 0, None, None, None, hs, hi, 1, 2, 5, isa="portable")
    with pytest.raises(InvalidArgumentError, match="not usable|unknown native path"):
        NT.scan_tile(tile, 0, 0, None, None, None, hs, hi, isa="sse9")
    with pytest.raises(InvalidArgumentError, match="instruction-set path 7"):
        _native._ext.topk_update(tile, 0, 0, None, None, None, hs, hi, 0, 4, 7)
    with _native._use(None), pytest.raises(InvalidArgumentError, match="disabled"):
        NT.scan_tile(tile, 0, 0, None, None, None, hs, hi, 1)
    # nothing was written by the failed calls
    same_bits(hs, T.init_heaps(4, 3)[0])
    same_bits(hi, T.init_heaps(4, 3)[1])


def test_k_zero_and_empty_tiles_do_nothing(rng):
    hs, hi = T.init_heaps(3, 0)
    NT.scan_tile(rng.standard_normal((3, 10)).astype(np.float32), 0, 0, None, None, None,
                 hs, hi, isa="portable")
    hs, hi = T.init_heaps(3, 4)
    NT.scan_tile(np.zeros((3, 0), np.float32), 0, 0, None, None, None, hs, hi,
                   isa="portable")
    same_bits(hs, T.init_heaps(3, 4)[0])


# --------------------------------------------------------------------------- VECINDEX_NATIVE
FLAT_SCRIPT = """
import json, sys
import numpy as np
import vecindex_core as vc
from vecindex_core import _native
rng = np.random.default_rng(5)
x = rng.standard_normal((5000, 24)).astype(np.float32)
q = rng.standard_normal((40, 24)).astype(np.float32)
mask = rng.random(5000) < 0.6
out = {"isa": _native.active_isa()}
for metric in ("ip", "l2"):
    index = vc.FlatIndex(24, metric)
    index.add(x)
    for name, kw in (("all", {}), ("mask", {"mask": mask})):
        res = index.search(q, 10, **kw)
        out[f"{metric}-{name}"] = [res.ids.tolist(), res.scores.view(np.uint32).tolist(),
                                   res.counts.tolist()]
print(json.dumps(out))
"""


def run_flat(env_value):
    env = {**os.environ, "VECINDEX_NATIVE": env_value}
    out = subprocess.run([sys.executable, "-c", FLAT_SCRIPT], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_env_off_gives_identical_flat_results():
    off, native = run_flat("off"), run_flat("auto")
    assert off.pop("isa") is None
    assert native.pop("isa") == _native._choose("auto", tuple(ISAS), _native._x86_64())
    assert off == native
    portable = run_flat("portable")
    assert portable.pop("isa") == "portable" and portable == off


# --------------------------------------------------------------------------- finalize_heaps
def _lexsort_finalize(hs, hi):
    padded = hi < 0
    order = np.lexsort((np.where(padded, np.iinfo(np.int64).max, hi), -hs), axis=-1)
    return (np.take_along_axis(hs, order, axis=1), np.take_along_axis(hi, order, axis=1),
            np.count_nonzero(~padded, axis=1))


@pytest.mark.parametrize("k", [1, 2, 14, 64, 65, 200])
def test_finalize_heaps_sorts_like_lexsort_bit_for_bit(k):
    """Small heaps are sorted by insertion (numba), wide ones by lexsort: the same order
    (score descending with NaN last, then slot with padding last), so the same bytes."""
    rng = np.random.default_rng(k)
    special = np.array([-np.inf, np.inf, np.nan, 0.0, -0.0, 1.0, -1.0], np.float32)
    for case in range(40):
        nq = int(rng.integers(0, 5))
        if case % 2:
            hs = rng.choice(special, (nq, k))
        else:
            hs = rng.standard_normal((nq, k)).astype(np.float32)
        hi = rng.integers(-1, 4 if case % 3 == 0 else 10**6, (nq, k))  # repeats, padding
        got, want = T.finalize_heaps(hs, hi), _lexsort_finalize(hs, hi)
        assert np.array_equal(got[0].view(np.uint32), want[0].view(np.uint32))
        assert np.array_equal(got[1], want[1]) and np.array_equal(got[2], want[2])
        assert got[1].dtype == np.int64 and got[2].dtype == np.int64
