"""The candidate collectors of the native fast scan: the flat driver's reservoir (forced
compactions, exact ties at the k-th score, k above the rows, NaN and -inf scores) and the
inverted-list driver's reservoir seeded from the in-place heaps (pre-filled heaps, ties,
-inf, NaN), every native path against the numba reference bit for bit (the heaps compared
after finalize_heaps, the native ones checked to be valid heaps) and against a plain numpy
sort."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from vecindex_core import _native
from vecindex_core._kernels import fastscan as fs
from vecindex_core._kernels.topk import finalize_heaps, init_heaps
from vecindex_core._native.lut import lut_ivf_topk, lut_topk

from .conftest import assert_same_heaps as _same_heaps

ISAS = list(_native._usable())
KS = (1, 2, 20, 64, 200)
NB = 3


def _flat_luts(nq, rng=None):
    """Constant tables (every row the same sum) unless rng: then random ones."""
    if rng is None:
        luts = np.full((nq, NB, 32), 5, np.uint8)
    else:
        luts = rng.integers(0, fs.LUT_MAX + 1, (nq, NB, 32), dtype=np.uint8)
    return luts, np.zeros(nq, np.float32), np.ones(nq, np.float32)


def _codes(rng, n):
    return fs.pack_blocked(rng.integers(0, 256, (max(n, 1), NB), dtype=np.uint8))


def _scores(luts, bias, delta, codes, n, scale):
    """Float32 scores (nq, n) in the kernels' order of operations."""
    c = fs.unpack_blocked(codes, n, NB).astype(np.int64)
    p = np.arange(NB)
    sums = (luts[:, p, c & 15].astype(np.int64) + luts[:, p, 16 + (c >> 4)]).sum(axis=2)
    s = bias[:, None] + delta[:, None] * sums.astype(np.float32)
    return (scale[None, :n] * s).astype(np.float32)


def _plain_topk(scores, slots, k):
    """Top-k by (score desc, slot asc) with NaN dropped, padded with -inf / -1."""
    nq = scores.shape[0]
    out_s = np.full((nq, k), -np.inf, np.float32)
    out_i = np.full((nq, k), -1, np.int64)
    for q in range(nq):
        keep = ~np.isnan(scores[q])
        s, i = scores[q][keep], slots[keep]
        order = np.lexsort((i, -s))[:k]
        out_s[q, : order.size] = s[order]
        out_i[q, : order.size] = i[order]
    return out_s, out_i


def _same(a, b):
    assert np.array_equal(a[1], b[1])
    assert np.array_equal(np.asarray(a[0]).view(np.uint32), np.asarray(b[0]).view(np.uint32))


def _flat_patterns(rng, n):
    """Per-row scale factors: scores increasing along the rows (every row a candidate: a
    compaction every few blocks), decreasing, random, three values (exact ties), both signs
    (the compaction's keys on both sides of the sign), +0 and -0 among a few positives
    (ties between signed zeros, by slot) and many magnitudes (keys that share few bits)."""
    yield "increasing", np.arange(1, n + 1, dtype=np.float32)
    yield "decreasing", np.arange(n, 0, -1).astype(np.float32)
    yield "random", rng.random(n).astype(np.float32)
    yield "ties", rng.integers(1, 4, n).astype(np.float32)
    yield "signs", (rng.random(n) * 2 - 1).astype(np.float32)
    yield "zeros", rng.choice(np.array([0.0, -0.0, 0.0, -0.0, 1.0], np.float32), n)
    yield "magnitudes", (10.0 ** rng.uniform(-30, 30, n)).astype(np.float32)


# --------------------------------------------------------------------------- flat
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("k", KS)
def test_flat_reservoir_equals_reference(isa, k):
    rng = np.random.default_rng(k)
    n, nq = 1500, 3
    codes = _codes(rng, n)
    mask = rng.random(n) < 0.8
    for rand_luts in (False, True):
        luts, bias, delta = _flat_luts(nq, rng if rand_luts else None)
        for _, scale in _flat_patterns(rng, n):
            for kw in ({}, {"mask": mask}):
                ref = fs.fastscan_topk_ref(luts, bias, delta, codes, n, k, scale=scale, **kw)
                for nqsub in (1, 3):
                    _same(ref, lut_topk(luts, bias, delta, codes, n, k, scale=scale, isa=isa,
                                        nqsub=nqsub, **kw))
                slots = np.arange(n) if not kw else np.flatnonzero(mask)
                s = _scores(luts, bias, delta, codes, n, scale)[:, slots]
                _same(ref, _plain_topk(s, slots, k))


@pytest.mark.parametrize("isa", ISAS)
def test_flat_many_ties_at_the_kth_score_go_to_the_lower_rows(isa):
    rng = np.random.default_rng(3)
    n = 2000
    codes = _codes(rng, n)
    luts, bias, delta = _flat_luts(2)
    scale = np.ones(n, np.float32)
    scale[rng.choice(n, 7, replace=False)] = 2  # 7 rows above, then 1993 equal ones
    for k in KS:
        got = lut_topk(luts, bias, delta, codes, n, k, scale=scale, isa=isa)
        _same(fs.fastscan_topk_ref(luts, bias, delta, codes, n, k, scale=scale), got)
        top = np.sort(np.flatnonzero(scale == 2))
        rest = np.flatnonzero(scale == 1)[: max(k - 7, 0)]
        assert np.array_equal(got[1][0], np.concatenate([top, rest])[:k])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", [0, 1, 33, 63])
def test_flat_k_above_the_rows_pads(isa, n):
    rng = np.random.default_rng(n)
    codes = _codes(rng, n)
    luts, bias, delta = _flat_luts(2, rng)
    scale = rng.random(max(n, 1)).astype(np.float32)
    for k in (64, 200):
        got = lut_topk(luts, bias, delta, codes, n, k, scale=scale, isa=isa)
        _same(fs.fastscan_topk_ref(luts, bias, delta, codes, n, k, scale=scale), got)
        assert (got[1][:, n:] == -1).all() and np.isneginf(got[0][:, n:]).all()
        assert np.array_equal(np.sort(got[1][:, :n], axis=1), np.tile(np.arange(n), (2, 1)))


@pytest.mark.parametrize("isa", ISAS)
def test_flat_row_windows_of_the_extension(isa):
    """Rows r0:r1 (a multiple of 32 and anything) as the thread split calls it."""
    rng = np.random.default_rng(5)
    n, nq = 1000, 2
    codes = _codes(rng, n)
    luts, bias, delta = _flat_luts(nq, rng)
    scale = np.arange(1, n + 1, dtype=np.float32)
    s = _scores(luts, bias, delta, codes, n, scale)
    ext, isa_id = _native._ext, _native._isa_id(isa)
    for r0, r1 in ((0, n), (64, 999), (320, 321), (96, 96)):
        for k in KS:
            out_s = np.empty((nq, k), np.float32)
            out_i = np.empty((nq, k), np.int64)
            ext.lut_topk(luts, bias, delta, None, codes, None, n, scale, None, None, k, 0, nq,
                         r0, r1, out_s, out_i, isa_id, 0)
            _same(_plain_topk(s[:, r0:r1], np.arange(r0, r1), k), (out_s, out_i))


@pytest.mark.parametrize("isa", ISAS)
def test_flat_nan_scores_never_enter(isa):
    rng = np.random.default_rng(6)
    n = 900
    codes = _codes(rng, n)
    luts, bias, delta = _flat_luts(2, rng)
    for k in KS:
        # NaN rows after the first k: the reference never sees a NaN either
        scale = rng.random(n).astype(np.float32)
        scale[k + rng.choice(n - k, 100, replace=False)] = np.nan
        got = lut_topk(luts, bias, delta, codes, n, k, scale=scale, isa=isa)
        _same(fs.fastscan_topk_ref(luts, bias, delta, codes, n, k, scale=scale), got)
        # NaN among the first rows: never returned, on either path
        scale[:50] = np.nan
        scale[60:80] = np.nan
        got = lut_topk(luts, bias, delta, codes, n, k, scale=scale, isa=isa)
        s = _scores(luts, bias, delta, codes, n, scale)
        _same(_plain_topk(s, np.arange(n), k), got)
        _same(fs.fastscan_topk_ref(luts, bias, delta, codes, n, k, scale=scale), got)
        assert not np.isnan(got[0]).any()
    scale = np.full(n, np.nan, np.float32)  # every score NaN: all padding
    got = lut_topk(luts, bias, delta, codes, n, 20, scale=scale, isa=isa)
    assert (got[1] == -1).all() and np.isneginf(got[0]).all()


@pytest.mark.parametrize("isa", ISAS)
def test_flat_minus_inf_scores_enter_by_slot(isa):
    rng = np.random.default_rng(7)
    n = 700
    codes = _codes(rng, n)
    luts, bias, delta = _flat_luts(2)
    for k in KS:
        scale = np.full(n, -np.inf, np.float32)
        fin = rng.choice(n, 10, replace=False)
        scale[fin] = rng.random(10).astype(np.float32) + 1
        got = lut_topk(luts, bias, delta, codes, n, k, scale=scale, isa=isa)
        _same(fs.fastscan_topk_ref(luts, bias, delta, codes, n, k, scale=scale), got)
        want_i = np.concatenate([fin[np.argsort(-scale[fin])],
                                 np.setdiff1d(np.arange(n), fin)])[:k]
        assert np.array_equal(got[1][0], want_i)


# --------------------------------------------------------------------------- inverted lists
def _ivf_case(rng, nent, nq):
    codes = fs.pack_blocked(rng.integers(0, 256, (nent, NB), dtype=np.uint8))
    slots = rng.permutation(nent).astype(np.int32)
    ranges = np.zeros((nq, 3, 2), np.int64)
    ranges[:, 0] = (0, nent // 2)
    ranges[:, 1] = (32 * (nent // 64), nent)  # overlapping lists: slots offered twice
    ranges[:, 2] = (32, 32)
    return codes, slots, ranges


def _prefilled(rng, nq, k, score):
    """Valid heaps (worst at the root) of real entries with slots above any list's."""
    hs = np.full((nq, k), np.float32(score), np.float32)
    hi = np.tile(np.arange(50_000 + k, 50_000, -1, dtype=np.int64), (nq, 1))
    return hs, hi  # equal scores, slots descending: the root is the worst


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("k", KS)
def test_ivf_heaps_equal_reference(isa, k):
    rng = np.random.default_rng(100 + k)
    nent, nq = 1200, 2
    codes, slots, ranges = _ivf_case(rng, nent, nq)
    native = functools.partial(lut_ivf_topk, isa=isa)
    for rand_luts in (False, True):
        luts, bias, delta = _flat_luts(nq, rng if rand_luts else None)
        for _, scale in _flat_patterns(rng, nent):
            starts = [init_heaps(nq, k), _prefilled(rng, nq, k, 2.0),
                      _prefilled(rng, nq, k, -np.inf)]
            for h0 in starts:
                out = []
                for fn in (fs.fastscan_ivf_ref, native):
                    hs, hi = h0[0].copy(), h0[1].copy()
                    fn(luts, bias, delta, codes, ranges, hs, hi, row_slots=slots,
                       scale=scale)
                    out.append((hs, hi))
                _same_heaps(out[0], out[1])
                # the native heap continued by the reference: the same k best as the
                # reference's own heap continued
                cont = []
                for hs, hi in out:
                    hs, hi = hs.copy(), hi.copy()
                    fs.fastscan_ivf_ref(luts, bias, delta, codes, ranges[:, :1].copy(), hs, hi,
                                        row_slots=slots, scale=scale[::-1].copy())
                    cont.append((hs, hi))
                _same_heaps(cont[0], cont[1])
                # still a valid heap: a later call and finalize_heaps work on it
                hs, hi = out[1]
                _, fin_i, _ = finalize_heaps(hs.copy(), hi.copy())
                s = _scores(luts, bias, delta, codes, nent, scale)
                e = np.concatenate([np.arange(a, b) for a, b in ranges[0]])
                all_s = np.concatenate([s[:, e], h0[0]], axis=1)
                all_i = np.concatenate([slots[e].astype(np.int64), h0[1][0]])
                want = _plain_topk(all_s, all_i, k)
                keep = want[1] >= 0  # padding (-inf, -1) stays out of the real entries
                assert np.array_equal(fin_i[keep], want[1][keep])


@pytest.mark.parametrize("isa", ISAS)
def test_ivf_ties_nan_and_minus_inf(isa):
    rng = np.random.default_rng(9)
    nent, nq = 800, 2
    codes, slots, ranges = _ivf_case(rng, nent, nq)
    luts, bias, delta = _flat_luts(nq)
    native = functools.partial(lut_ivf_topk, isa=isa)
    for k in KS:
        scale = np.ones(nent, np.float32)  # every entry ties
        scale[rng.choice(nent, 150, replace=False)] = np.nan
        scale[rng.choice(nent, 150, replace=False)] = -np.inf
        for h0 in (init_heaps(nq, k), _prefilled(rng, nq, k, -np.inf),
                   _prefilled(rng, nq, k, 10.0)):
            out = []
            for fn in (fs.fastscan_ivf_ref, native):
                hs, hi = h0[0].copy(), h0[1].copy()
                fn(luts, bias, delta, codes, ranges, hs, hi, row_slots=slots, scale=scale)
                out.append((hs, hi))
            _same_heaps(out[0], out[1])
            assert not np.isnan(out[1][0]).any()
