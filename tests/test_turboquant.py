"""``turboquant`` beyond the conformance suite: the rotation, the Lloyd-Max codebook, the
unbiased estimator, recall per bit width, rerank, calibration, memory and persistence."""

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import _native
from vecindex_core._kernels.codes import codes_nbytes, unpack_codes
from vecindex_core._kernels.rotation import (
    _rotate_numpy,
    lloyd_max_codebook,
    rotate,
    rotation_matrix,
    rotation_params,
)
from vecindex_core._threads import get_num_threads, set_num_threads
from vecindex_core.base import EXACT_MASK_ROWS
from vecindex_core.errors import (
    DimensionMismatchError,
    IndexFormatError,
    InvalidArgumentError,
    InvalidDtypeError,
)
from vecindex_core.turboquant import TurboQuantIndex

DIM = 384
#: recall@10 floors on the bundled sample (ip, 5,000 rows, 200 queries), seed 0; measured
#: 0.708, 0.8535, 0.919, 0.951, 0.994.
FLOORS = {1: 0.68, 2: 0.83, 3: 0.90, 4: 0.94, 8: 0.985}


def unit(rng, n, d):
    x = rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# --------------------------------------------------------------------------- rotation
@pytest.mark.parametrize("dim", [1, 2, 3, 8, 100, 384])
def test_rotation_is_orthogonal_and_bit_identical_to_numpy(rng, dim):
    m = rotation_matrix(dim, 7).astype(np.float64)
    np.testing.assert_allclose(m @ m.T, np.eye(dim), atol=1e-5)
    x = rng.standard_normal((33, dim)).astype(np.float32)
    got = rotate(x, 7)
    np.testing.assert_array_equal(got, _rotate_numpy(x, 7))  # one IEEE sequence everywhere
    np.testing.assert_allclose(got, x @ m.T, atol=1e-5)
    np.testing.assert_array_equal(rotate(x[5:6], 7), got[5:6])  # independent of the batch
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), np.linalg.norm(x, axis=1),
                               rtol=1e-5)


@pytest.mark.parametrize("isa", list(_native._usable()))
@pytest.mark.parametrize("dim", [1, 2, 3, 7, 8, 9, 100, 384, 1000, 1024])
def test_native_rotation_equals_the_numba_kernels_bit_for_bit(rng, isa, dim):
    x = rng.standard_normal((40, dim)).astype(np.float32)
    x[3] = 0.0
    x[4, : (dim + 1) // 2] = -0.0
    x[5] *= np.float32(2.0**-140)  # subnormal inputs
    x[6, 0] = np.nan
    x[7, -1] = np.inf
    with _native._use(None):
        want = rotate(x, 3)  # numba: _rotate_rows for the batch
        want_one = rotate(x[6:8], 3)  # _rotate_few
    with _native._use(isa):
        got = rotate(x, 3)
    _same_bits(got, want)
    _same_bits(got[6:8], want_one)


def _same_bits(a, b):
    """Equal bits where not NaN (the sign of a zero included); NaN at the same places (a
    NaN's sign and payload are not specified by IEEE)."""
    nan = np.isnan(a)
    assert np.array_equal(nan, np.isnan(b))
    assert np.array_equal(a[~nan].view(np.uint32), b[~nan].view(np.uint32))


@pytest.mark.parametrize("isa", list(_native._usable()))
def test_native_rotation_on_threads_equals_one_thread(rng, isa):
    x = rng.standard_normal((6000, 384)).astype(np.float32)
    before = get_num_threads()
    try:
        with _native._use(isa):
            set_num_threads(1)
            one = rotate(x, 0)
            set_num_threads(3)
            three = rotate(x, 0)
    finally:
        set_num_threads(before)
    with _native._use(None):
        want = rotate(x, 0)
    assert np.array_equal(one, three) and np.array_equal(one, want)


def test_native_rotation_raises_typed_errors():
    ext = _native._ext
    signs, perms = rotation_params(8, 0)
    x, out = np.zeros((2, 8), np.float32), np.zeros((2, 8), np.float32)
    norm = np.float32(1 / np.sqrt(8))
    ext.rotate(x, signs, perms, 8, norm, out, 0, 2, 0)
    with pytest.raises(InvalidDtypeError, match="x"):
        ext.rotate(x.astype(np.float64), signs, perms, 8, norm, out, 0, 2, 0)
    with pytest.raises(DimensionMismatchError, match=r"out must be \(2, 8\)"):
        ext.rotate(x, signs, perms, 8, norm, np.zeros((2, 9), np.float32), 0, 2, 0)
    with pytest.raises(DimensionMismatchError, match=r"perms \(rounds, 8\)"):
        ext.rotate(x, signs, perms[:, :4].copy(), 8, norm, out, 0, 2, 0)
    with pytest.raises(InvalidArgumentError, match="largest power of two <= dim = 8, got 4"):
        ext.rotate(x, signs, perms, 4, norm, out, 0, 2, 0)
    bad = perms.copy()
    bad[1, 2] = 8
    with pytest.raises(InvalidArgumentError, match="got 8"):
        ext.rotate(x, signs, bad, 8, norm, out, 0, 2, 0)
    with pytest.raises(InvalidArgumentError, match="share memory"):
        ext.rotate(x, signs, perms, 8, norm, x, 0, 2, 0)
    mine = perms.copy()  # out over perms: refused before anything is written
    with pytest.raises(InvalidArgumentError, match="share memory"):
        ext.rotate(x, signs, mine, 8, norm, mine.view(np.float32).reshape(-1)[:16].reshape(2, 8),
                   0, 2, 0)
    assert np.array_equal(mine, perms)
    with pytest.raises(InvalidArgumentError, match=r"row range \[0, 3\)"):
        ext.rotate(x, signs, perms, 8, norm, out, 0, 3, 0)


def test_rotation_depends_on_the_seed_only():
    a, b = rotation_matrix(64, 0), rotation_matrix(64, 1)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, rotation_matrix(64, 0))
    signs, perms = rotation_params(64, 0)
    assert not signs.flags.writeable and not perms.flags.writeable


@pytest.mark.parametrize("dim", [64, 100, 384])
def test_rotated_unit_vectors_look_uniform(rng, dim):
    """Coordinates of rotated structured unit vectors (basis vectors, sparse vectors) have the
    moments of a uniformly random unit vector's coordinate: E t^2 = 1/d,
    E t^4 = 3/(d(d+2)), E t^6 = 15/(d(d+2)(d+4)) (the density (1-t^2)^((d-3)/2))."""
    sparse = np.zeros((300, dim), np.float32)
    for r in range(300):
        sparse[r, rng.choice(dim, 3, replace=False)] = rng.standard_normal(3)
    sparse /= np.linalg.norm(sparse, axis=1, keepdims=True)
    for x in (np.eye(dim, dtype=np.float32), sparse):
        t = rotate(x, 0).astype(np.float64).ravel()
        assert (t**2).mean() * dim == pytest.approx(1, rel=1e-5)
        assert (t**4).mean() == pytest.approx(3 / (dim * (dim + 2)), rel=0.05)
        assert (t**6).mean() == pytest.approx(15 / (dim * (dim + 2) * (dim + 4)), rel=0.12)


# --------------------------------------------------------------------------- codebook
def monte_carlo_lloyd(samples, levels, iterations=200):
    c = np.array(levels, dtype=np.float64)
    s = np.sort(samples)
    for _ in range(iterations):
        cells = np.searchsorted((c[:-1] + c[1:]) / 2, s)
        c = np.array([s[cells == i].mean() for i in range(c.size)])
    return c


@pytest.mark.parametrize(("dim", "bits"), [(16, 1), (16, 2), (64, 3), (384, 2), (384, 4)])
def test_codebook_matches_monte_carlo_lloyd(rng, dim, bits):
    cb = lloyd_max_codebook(dim, bits)
    assert cb.dtype == np.float32 and cb.shape == (2**bits,) and not cb.flags.writeable
    np.testing.assert_array_equal(cb, -cb[::-1])  # symmetric
    assert (np.diff(cb) > 0).all()
    # coordinates of uniformly random unit vectors; Lloyd on the samples, from quantiles
    samples = unit(rng, 400_000 // dim + 1, dim).ravel()[:400_000].astype(np.float64)
    start = np.quantile(samples, (np.arange(2**bits) + 0.5) / 2**bits)
    mc = monte_carlo_lloyd(samples, start)
    spread = 1 / np.sqrt(dim)
    np.testing.assert_allclose(cb, mc, atol=0.02 * spread * 2**bits / 2)
    assert lloyd_max_codebook(dim, bits) is cb  # cached


def test_codebook_known_values_and_degenerate_dims():
    # large dim: the Gaussian Lloyd-Max quantizer scaled by 1/sqrt(dim)
    d = 4096
    np.testing.assert_allclose(lloyd_max_codebook(d, 1)[1] * np.sqrt(d), np.sqrt(2 / np.pi),
                               rtol=2e-3)
    np.testing.assert_allclose(lloyd_max_codebook(d, 2)[2:] * np.sqrt(d), [0.4528, 1.510],
                               rtol=3e-3)
    np.testing.assert_allclose(lloyd_max_codebook(3, 1), [-0.5, 0.5], rtol=1e-4)  # uniform
    np.testing.assert_allclose(lloyd_max_codebook(2, 1), [-2 / np.pi, 2 / np.pi], rtol=1e-4)
    np.testing.assert_array_equal(lloyd_max_codebook(1, 1), [-1, 1])  # two point masses
    assert lloyd_max_codebook(1, 3)[[0, -1]].tolist() == [-1, 1]
    with pytest.raises(ValueError, match="bits"):
        lloyd_max_codebook(8, 9)


# --------------------------------------------------------------------------- estimator
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_inner_product_estimate_is_unbiased(rng, bits):
    """scale * <Rq, c> estimates <q, x> without bias; the plain |x| <Rq, c> shrinks it."""
    n, d = 4000, 64
    x = rng.standard_normal((n, d)).astype(np.float32) * rng.uniform(0.5, 2, (n, 1))
    z = rng.standard_normal((n, d)).astype(np.float32)
    q = (0.8 * x + 0.6 * z * np.linalg.norm(x, axis=1, keepdims=True) / np.sqrt(d))
    q = q.astype(np.float32)
    index = TurboQuantIndex(d, "ip", bits=bits, seed=3)
    codes, scales, _ = index.encode(x)
    c = index.codebook_[unpack_codes(codes, bits, d)].astype(np.float64)
    rq = rotate(q, 3).astype(np.float64)
    raw = (rq * c).sum(1)
    exact = (q.astype(np.float64) * x).sum(1)
    err = scales * raw - exact
    se = err.std() / np.sqrt(n)
    assert abs(err.mean()) < 4 * se, (err.mean(), se)
    plain = np.linalg.norm(x, axis=1) * raw - exact
    assert plain.mean() < -8 * se  # the dequantised product is biased low
    # decode() is the reconstruction whose inner product is the estimate
    np.testing.assert_allclose((index_decode(index, x, q)), scales * raw, rtol=1e-3,
                               atol=1e-3)


def index_decode(index, x, q):
    index.add(x)
    rec = index.decode(np.arange(len(x)))
    return (rec.astype(np.float64) * q).sum(1)


def test_zero_vector_gets_zero_code_and_scale(rng):
    index = TurboQuantIndex(16, "ip", bits=2)
    x = rng.standard_normal((3, 16)).astype(np.float32)
    x[1] = 0
    index.add(x)
    assert not index.codes[1].any() and index.scales[1] == 0
    res = index.search(x[0], 3)
    assert res.scores[0, list(res.ids[0]).index(1)] == 0


# --------------------------------------------------------------------------- recall
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_recall_per_bit_width(sample, sample_gt, recall, bits):
    index = TurboQuantIndex(DIM, "ip", bits=bits)
    index.add(sample.base)
    res = index.search(sample.queries, 10)
    assert recall(res.ids, sample_gt["ip"], 10) >= FLOORS[bits]
    # the LUT route (few queries) and the BLAS route (a batch) rank alike
    few = index.search(sample.queries[:3], 10)
    np.testing.assert_array_equal(few.ids, res.ids[:3])
    np.testing.assert_allclose(few.scores, res.scores[:3], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_recall_other_metrics_and_rerank(sample, sample_gt, recall, metric):
    index = TurboQuantIndex(DIM, metric, bits=2, keep_vectors=True)
    index.add(sample.base)
    base = recall(index.search(sample.queries, 10).ids, sample_gt[metric], 10)
    assert base >= FLOORS[2]
    res = index.search(sample.queries, 10, params={"rerank": 100})
    assert recall(res.ids, sample_gt[metric], 10) >= 0.99 > base
    exact = vc.FlatIndex(DIM, metric)
    exact.add(sample.base)
    ref = exact.search(sample.queries, 10)
    hit = res.ids == ref.ids  # rescored scores are exact
    np.testing.assert_allclose(res.scores[hit], ref.scores[hit], rtol=1e-5, atol=1e-5)


def test_rerank_needs_keep_vectors(small):
    x, q = small
    with pytest.raises(vc.InvalidParameterError, match="keep_vectors"):
        TurboQuantIndex(DIM, "ip", rerank=10)
    index = TurboQuantIndex(DIM, "ip")
    index.add(x[:50])
    with pytest.raises(vc.InvalidParameterError, match="rerank=5 needs keep_vectors"):
        index.search(q, 3, params={"rerank": 5})
    with pytest.raises(vc.NotSupportedError):
        index.get_vectors([0])


# --------------------------------------------------------------------------- masks
def test_masks_inside_the_scan_gathered_and_exact(small, reference):
    x, q = small
    codes_only = TurboQuantIndex(DIM, "l2")
    kept = TurboQuantIndex(DIM, "l2", keep_vectors=True)
    codes_only.add(x)
    kept.add(x)
    rng = np.random.default_rng(5)
    for fraction in (0.05, 0.5):  # gathered before the scan / skipped inside it
        mask = rng.random(len(x)) < fraction
        res = codes_only.search(q, 10, mask=mask)
        assert np.isin(res.ids[res.ids >= 0], np.flatnonzero(mask)).all()
        full = codes_only.search(q, 500)  # the same estimates, unfiltered
        for r in range(len(q)):
            allowed = [s for s in full.ids[r] if mask[s]][:10]
            got = res.ids[r][: len(allowed)]
            assert len(set(got) & set(allowed)) >= len(allowed) - 1  # near-ties may swap
    # with kept vectors, a small mask is searched exactly
    mask = np.zeros(len(x), bool)
    mask[: min(EXACT_MASK_ROWS, 300)] = True
    got = kept.search(q, 10, mask=mask)
    ref = reference(x, q, 10, "l2", mask)
    np.testing.assert_array_equal(got.ids, ref[1])
    np.testing.assert_allclose(got.scores, ref[0], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- calibration
def test_calibration_maps_scores_not_ranking(sample):
    x, q = sample.base, sample.queries
    plain = TurboQuantIndex(DIM, "ip", bits=1)
    cal = TurboQuantIndex(DIM, "ip", bits=1, calibrate=True, train_size=1000)
    assert plain.is_trained and plain.min_train_size == 0
    assert not cal.is_trained and cal.min_train_size == 1000
    with pytest.raises(vc.NotTrainedError, match="turboquant"):
        cal.add(x)
    cal.train(x[:2000])
    assert cal.is_trained and cal.calibration_[0] > 0
    plain.add(x)
    cal.add(x)
    a, b = plain.search(q, 10), cal.search(q, 10)
    np.testing.assert_array_equal(a.ids, b.ids)
    exact = np.take_along_axis(q @ x.T, b.ids, axis=1)
    # the top-k's upward selection bias (0.025 here) is corrected, the noise stays
    bias_plain, bias_cal = (a.scores - exact).mean(), (b.scores - exact).mean()
    assert bias_plain > 0.01 and abs(bias_cal) < 0.1 * bias_plain
    assert np.abs(b.scores - exact).mean() < np.abs(a.scores - exact).mean()
    copy = vc.VectorIndex.from_bytes(cal.to_bytes())
    np.testing.assert_array_equal(copy.calibration_, cal.calibration_)
    np.testing.assert_array_equal(copy.search(q, 10).scores, b.scores)


def test_calibration_through_idmap_trains_automatically(small):
    x, q = small
    index = vc.IdMapIndex(TurboQuantIndex(DIM, "cosine", calibrate=True, train_size=300))
    index.add(x[:200])
    assert not index.index.is_trained
    index.add(x[200:])
    assert index.index.is_trained and len(index) == len(x)
    assert (index.search(q, 5).counts == 5).all()


# --------------------------------------------------------------------------- memory
@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize(("bits", "keep"), [(1, False), (3, False), (4, True)])
def test_memory_bytes_is_the_formula(small, metric, bits, keep):
    x, _ = small
    index = TurboQuantIndex(DIM, metric, bits=bits, keep_vectors=keep)
    signs, perms = rotation_params(DIM, 0)
    fixed = 4 * 2**bits + signs.nbytes + perms.nbytes
    assert index.memory_bytes() == fixed
    index.add(x)
    per_row = codes_nbytes(DIM, bits) + 4 + (4 if metric == "l2" else 0)
    assert index.bytes_per_vector() == per_row
    assert index.memory_bytes() == fixed + len(x) * (per_row + (4 * DIM if keep else 0))


# --------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("bits", [3, 4])
def test_save_load_remove_round_trips(small, tmp_path, bits):
    x, q = small
    index = TurboQuantIndex(DIM, "l2", bits=bits, keep_vectors=True)
    index.add(x[:300])
    moves = index.remove([0, 7, 299])
    # rows are encoded one by one: the index equals a fresh one holding the moved rows
    order = np.arange(300)
    order[moves.dst] = order[moves.src]
    fresh = TurboQuantIndex(DIM, "l2", bits=bits, keep_vectors=True)
    fresh.add(x[order[:297]])
    assert fresh.to_bytes() == index.to_bytes()
    index.save(tmp_path / "tq.vecidx")
    loaded = vc.VectorIndex.load(tmp_path / "tq.vecidx")
    assert isinstance(loaded, TurboQuantIndex) and loaded.ntotal == 297
    for params in (None, {"rerank": 20}):
        a, b = index.search(q, 10, params=params), loaded.search(q, 10, params=params)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(loaded.get_vectors([3, 4]), x[order[[3, 4]]])
    assert loaded.memory_bytes() <= index.memory_bytes()  # no spare capacity after a load


def test_load_validates_every_array(small):
    x, _ = small
    index = TurboQuantIndex(DIM, "l2", bits=2, keep_vectors=True, calibrate=True,
                            train_size=100)
    index.train(x)
    index.add(x[:20])
    state, arrays = index._get_state()

    def load(**changes):
        bad = {**arrays, **changes}
        bad = {k: v for k, v in bad.items() if v is not None}
        TurboQuantIndex(DIM, "l2", bits=2, keep_vectors=True, calibrate=True,
                        train_size=100)._set_state(state, bad)

    load()  # the unchanged state loads
    for name, value, match in [
        ("codes", arrays["codes"][:, :-1], "codes"),
        ("codes", arrays["codes"].astype(np.int16), "codes"),
        ("scales", arrays["scales"][:-1], "scales"),
        ("scales", None, "scales"),
        ("sq_norms", arrays["sq_norms"].astype(np.float64), "sq_norms"),
        ("vectors", arrays["vectors"][:, :10], "vectors"),
        ("codebook", arrays["codebook"][:2], "codebook"),
        ("codebook", arrays["codebook"][::-1].copy(), "increasing"),
        ("calibration", np.array([-1.0, 0.0]), "calibration"),
        ("calibration", None, "no calibration"),
    ]:
        with pytest.raises(IndexFormatError, match=match):
            load(**{name: value})
    with pytest.raises(IndexFormatError, match="rotation"):
        TurboQuantIndex(DIM, "l2", bits=2)._set_state({"rotation": "other"}, arrays)


# --------------------------------------------------------------------------- odd shapes
@pytest.mark.parametrize("dim", [1, 3, 5, 17])
@pytest.mark.parametrize("bits", [1, 3, 8])
def test_small_and_odd_dimensions(rng, dim, bits):
    x = rng.standard_normal((60, dim)).astype(np.float32)
    index = TurboQuantIndex(dim, "l2", bits=bits)
    index.add(x)
    res = index.search(x[:4], 5)
    assert (res.counts == 5).all() and np.isfinite(res.scores).all()
    assert index.codes.shape == (60, codes_nbytes(dim, bits))
    big = index.search(np.repeat(x[:4], 50, axis=0), 5)  # the BLAS route
    np.testing.assert_array_equal(big.ids[::50], res.ids)


def test_same_seed_same_bytes_other_seed_other_codes(small):
    x, _ = small
    a, b, c = (TurboQuantIndex(DIM, "ip", seed=s) for s in (0, 0, 1))
    for index in (a, b, c):
        index.add(x[:100])
    assert a.to_bytes() == b.to_bytes()
    assert not np.array_equal(a.codes, c.codes)
    assert vc.create("turboquant(bits=2,seed=5)", dim=DIM).index.spec == (
        "turboquant(bits=2,seed=5)")
