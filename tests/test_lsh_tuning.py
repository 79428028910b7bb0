"""Band/row maths (vecindex_core.lsh_tuning) against Monte-Carlo estimates on real vectors.

The Monte-Carlo side hashes real MiniLM embeddings from the bundled sample with independent
Gaussian hyperplanes (the model the formulas assume) and counts collisions; nothing is
derived from the formulas under test.
"""

import math

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import lsh_tuning as lt

LEVELS = np.round(np.arange(-0.1, 0.81, 0.1), 2)  # 10 similarity levels, -0.1 .. 0.8
BITS = 32  # hyperplanes per trial: every (bands, rows) below uses b * r = 32
TRIALS = 10_000
CONFIGS = [(4, 8), (8, 4), (16, 2), (2, 16)]


def real_pairs(x, levels, tol=0.02):
    """For each level, the pair of distinct real vectors whose cosine is closest to it."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = xn @ xn.T
    np.fill_diagonal(sims, np.inf)
    pairs = []
    for level in levels:
        i, j = np.unravel_index(np.argmin(np.abs(sims - level)), sims.shape)
        assert abs(sims[i, j] - level) <= tol, f"no real pair near {level}"
        pairs.append((xn[i], xn[j], float(sims[i, j])))
    return pairs


def sign_bits(vectors, n_dirs, seed, chunk=32_768):
    """Signs of ``vectors`` (m, d) on ``n_dirs`` independent Gaussian hyperplanes, (m, n_dirs)."""
    rng = np.random.default_rng(seed)
    out = np.empty((vectors.shape[0], n_dirs), dtype=bool)
    v = vectors.astype(np.float32)
    for a in range(0, n_dirs, chunk):
        w = rng.standard_normal((v.shape[1], min(chunk, n_dirs - a)), dtype=np.float32)
        out[:, a:a + w.shape[1]] = v @ w > 0
    return out


@pytest.fixture(scope="module")
def mc(sample):
    """Collision indicators of 10 real pairs (similarity -0.1 .. 0.8) over TRIALS x BITS
    independent hyperplanes: (pairs, same-sign bool array (10, TRIALS * BITS))."""
    pairs = real_pairs(sample.base[:3000], LEVELS)
    vecs = np.stack([v for a, b, _ in pairs for v in (a, b)])
    bits = sign_bits(vecs, TRIALS * BITS, seed=7)
    same = bits[0::2] == bits[1::2]
    return pairs, same


def test_the_pairs_are_real_and_cover_the_levels(mc):
    pairs, _ = mc
    sims = [s for _, _, s in pairs]
    assert len(sims) == 10
    np.testing.assert_allclose(sims, LEVELS, atol=0.02)


def test_bit_collision_probability_matches_monte_carlo(mc):
    pairs, same = mc
    for (_, _, s), hits in zip(pairs, same, strict=True):
        estimate = hits.mean()  # 320,000 bits: standard error <= 0.09 points
        assert abs(estimate - lt.collision_probability(s)) < 0.005, s
        assert abs(lt.collision_probability(s) - (1 - math.acos(s) / math.pi)) < 1e-12


@pytest.mark.parametrize(("bands", "rows"), CONFIGS)
def test_s_curve_within_two_points_of_monte_carlo_at_ten_levels(mc, bands, rows):
    pairs, same = mc
    assert bands * rows == BITS
    worst = 0.0
    for (_, _, s), hits in zip(pairs, same, strict=True):
        trials = hits.reshape(TRIALS, bands, rows)
        band_hit = trials.all(axis=2)  # every row of a band collides
        candidate = band_hit.any(axis=1)  # at least one band collides
        estimate = candidate.mean()
        predicted = float(lt.s_curve(s, bands, rows))
        worst = max(worst, abs(estimate - predicted))
        assert abs(estimate - predicted) <= 0.02, (s, estimate, predicted)
        band_estimate = band_hit.mean()
        assert abs(band_estimate - float(lt.band_probability(s, rows))) <= 0.02
    assert worst <= 0.02


def test_the_index_hyperplanes_follow_the_band_probability(sample):
    # RedisLSH draws its hyperplanes orthogonal within blocks of dim (random_projection);
    # with 8-row bands in 384 dimensions a band still collides with probability p(s)^r
    from vecindex_core._kernels.projections import random_projection

    x = sample.base
    rows, seeds = 8, 100
    levels = (0.3, 0.6, 0.9)
    vecs = np.stack([v for s in levels for v in constructed_pair(x[3], x[11], s)])
    hits = np.stack([
        (lambda bits: (bits[0::2] == bits[1::2]).reshape(len(levels), -1, rows).all(axis=2))(
            vecs @ random_projection(384, 384, "gaussian", seed) > 0)
        for seed in range(seeds)
    ], axis=1)  # (levels, seeds, 48 bands)
    for s, h in zip(levels, hits, strict=True):  # 4,800 bands: standard error <= 0.7 points
        assert abs(h.mean() - float(lt.band_probability(s, rows))) < 0.02, s


def test_the_s_curve_is_not_the_minhash_curve(mc):
    # the MinHash curve 1 - (1 - s^r)^b misses by far more than the 2-point tolerance
    pairs, same = mc
    bands, rows = 4, 8
    gaps = []
    for (_, _, s), hits in zip(pairs, same, strict=True):
        estimate = hits.reshape(TRIALS, bands, rows).all(axis=2).any(axis=1).mean()
        gaps.append(abs(estimate - (1 - (1 - max(s, 0.0) ** rows) ** bands)))
    assert max(gaps) > 0.1


def constructed_pair(a, b, s):
    """Unit vectors at exactly cosine ``s``, in the plane of the real vectors ``a`` and ``b``."""
    a = a / np.linalg.norm(a)
    perp = b - (b @ a) * a
    perp /= np.linalg.norm(perp)
    return a, s * a + math.sqrt(max(1 - s * s, 0.0)) * perp


def test_false_positive_and_negative_areas_match_monte_carlo(sample):
    # integrate Monte-Carlo collision rates over a grid of similarities (pairs built in the
    # plane of two real vectors) by the trapezoid rule, and compare with the quadrature
    bands, rows, t = 8, 4, 0.5
    trials = 4_000
    grid = np.linspace(-1.0, 1.0, 81)
    x = sample.base
    vecs = []
    for g in grid:
        vecs.extend(constructed_pair(x[3], x[11], float(g)))
    bits = sign_bits(np.stack(vecs), trials * bands * rows, seed=3)
    rates = (bits[0::2] == bits[1::2]).reshape(grid.size, trials, bands, rows)
    estimate = rates.all(axis=3).any(axis=2).mean(axis=1)
    below, above = grid <= t, grid >= t
    fp_mc = np.trapezoid(estimate[below], grid[below])
    fn_mc = np.trapezoid(1 - estimate[above], grid[above])
    assert abs(fp_mc - lt.false_positive_area(t, bands, rows)) < 0.02
    assert abs(fn_mc - lt.false_negative_area(t, bands, rows)) < 0.02
    zero = grid >= 0
    fp0 = np.trapezoid(estimate[zero & below], grid[zero & below])
    assert abs(fp0 - lt.false_positive_area(t, bands, rows, lo=0.0)) < 0.02


def test_areas_agree_with_a_fine_trapezoid():
    s = np.linspace(-1, 1, 400_001)
    for bands, rows, t in [(16, 8, 0.5), (20, 5, 0.8), (4, 32, 0.9), (128, 1, 0.3)]:
        p = lt.s_curve(s, bands, rows)
        fp = np.trapezoid(np.where(s <= t, p, 0), s)
        fn = np.trapezoid(np.where(s >= t, 1 - p, 0), s)
        assert lt.false_positive_area(t, bands, rows) == pytest.approx(fp, abs=1e-5)
        assert lt.false_negative_area(t, bands, rows) == pytest.approx(fn, abs=1e-5)


def test_threshold_is_where_the_curve_crosses_one_half():
    for bands, rows in [(16, 8), (20, 5), (4, 32), (1, 1), (128, 1)]:
        t = lt.threshold(bands, rows)
        assert float(lt.s_curve(t, bands, rows)) == pytest.approx(0.5, abs=1e-9)


def test_optimal_bands_rows_is_the_brute_force_minimum():
    for bits, t in [(128, 0.5), (128, 0.8), (64, 0.3), (256, 0.9)]:
        b, r = lt.optimal_bands_rows(bits, t)
        assert b * r <= bits
        errors = {
            (bits // rr, rr): 0.5 * lt.false_positive_area(t, bits // rr, rr)
            + 0.5 * lt.false_negative_area(t, bits // rr, rr)
            for rr in range(1, 33)
        }
        assert errors[(b, r)] == pytest.approx(min(errors.values()))
        # the chosen curve crosses 1/2 near the asked threshold
        assert abs(lt.threshold(b, r) - t) < 0.15
    b, r = lt.optimal_bands_rows(256, 0.5, exact=True)
    assert b * r == 256
    # weighting false negatives more moves to lower thresholds (more bands or fewer rows)
    fn_heavy = lt.optimal_bands_rows(128, 0.7, fp_weight=0.1, fn_weight=0.9)
    fp_heavy = lt.optimal_bands_rows(128, 0.7, fp_weight=0.9, fn_weight=0.1)
    assert lt.threshold(*fn_heavy) < lt.threshold(*fp_heavy)


def test_similarity_from_collisions_inverts_the_band_probability():
    bands, rows = 16, 8
    for s in (0.1, 0.5, 0.9):
        expected = bands * float(lt.band_probability(s, rows))
        assert float(lt.similarity_from_collisions(expected, bands, rows)) == pytest.approx(s)
    counts = lt.similarity_from_collisions(np.arange(bands + 1), bands, rows)
    assert counts[0] == -1 and counts[-1] == pytest.approx(1.0)
    assert (np.diff(counts) > 0).all()


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: lt.collision_probability(1.5), vc.InvalidArgumentError, "1.5"),
        (lambda: lt.collision_probability([0.2, -1.01]), vc.InvalidArgumentError, "-1.01"),
        (lambda: lt.collision_probability(np.nan), vc.NonFiniteError, "nan"),
        (lambda: lt.collision_probability("a"), vc.InvalidArgumentError, "'a'"),
        (lambda: lt.s_curve(0.5, 0, 4), vc.InvalidParameterError, "bands must be >= 1, got 0"),
        (lambda: lt.s_curve(0.5, 4, 2.5), vc.InvalidParameterError, "rows must be an integer"),
        (lambda: lt.s_curve(0.5, True, 4), vc.InvalidParameterError, "True"),
        (lambda: lt.threshold(4, -1), vc.InvalidParameterError, "-1"),
        (lambda: lt.false_positive_area(0.5, 4, 4, lo=0.7), vc.InvalidArgumentError, "0.7"),
        (lambda: lt.false_negative_area(2.0, 4, 4), vc.InvalidArgumentError, "2.0"),
        (lambda: lt.optimal_bands_rows(0, 0.5), vc.InvalidParameterError, "num_bits"),
        (lambda: lt.optimal_bands_rows(64, 0.5, fp_weight=-1), vc.InvalidParameterError,
         "fp_weight"),
        (lambda: lt.optimal_bands_rows(64, 0.5, fp_weight=0, fn_weight=0),
         vc.InvalidParameterError, "both be 0"),
        (lambda: lt.optimal_bands_rows(64, 0.5, fn_weight=math.inf), vc.InvalidParameterError,
         "inf"),
        (lambda: lt.similarity_from_collisions(17, 16, 8), vc.InvalidArgumentError, "17"),
    ],
)
def test_bad_input_raises_typed_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
