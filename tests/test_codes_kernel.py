"""The packed-code kernels (``vecindex_core._kernels.codes``) against numpy references:
packing, byte tables, the LUT scans with every option, the tie rule, threads, and the BLAS
route."""

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core._kernels.codes import (
    byte_luts,
    codes_nbytes,
    coord_lut_topk,
    decoded_topk,
    dequantize,
    lut_topk,
    pack_codes,
    prefer_decoded,
    quantize_nearest,
    unpack_codes,
)
from vecindex_core._kernels.topk import finalize_heaps, init_heaps

from .conftest import assert_same_topk


# --------------------------------------------------------------------------- references
def np_scores(tables, codes, *, scale=None, sq_norms=None, q_sq_norms=None):
    """(nq, N) float64 scores: sum_j tables[r, j, codes[i, j]] with the kernels' score rule."""
    nq, d, _ = tables.shape
    raw = np.stack([tables[r, np.arange(d), codes].astype(np.float64).sum(1)
                    for r in range(nq)])
    if scale is not None:
        raw = raw * scale
    if sq_norms is not None:
        raw = -np.maximum(q_sq_norms[:, None] + sq_norms[None, :] - 2 * raw, 0)
    return raw


def np_topk(scores, k, *, ranges=None, bias=None, row_slots=None, mask=None, l2_parts=None):
    """Top-k by (score desc, slot asc) over each query's rows; -inf / -1 padding.

    With ``ranges``, ``scores`` are raw (no bias) and ``l2_parts = (qn, xn)`` applies the l2
    rule after the range's bias.
    """
    nq, n = scores.shape
    out_s = np.full((nq, k), -np.inf)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    slots = np.arange(n) if row_slots is None else row_slots
    for r in range(nq):
        cand = []
        spans = [(0, n, 0.0)] if ranges is None else [
            (a, b, bias[r, t]) for t, (a, b) in enumerate(ranges[r])]
        for a, b, bb in spans:
            for i in range(a, b):
                s = slots[i]
                if s < 0 or (mask is not None and not mask[s]):
                    continue
                v = scores[r, i] + bb
                if l2_parts is not None:
                    qn, xn = l2_parts
                    v = -max(qn[r] + xn[i] - 2 * v, 0)
                cand.append((-v, s))
        cand.sort()
        for c, (v, s) in enumerate(cand[:k]):
            out_s[r, c], out_i[r, c] = -v, s
    counts = (out_i >= 0).sum(1)
    return out_s.astype(np.float32), out_i, counts


def run_lut(tables, packed, bits, k, **kw):
    hs, hi = init_heaps(tables.shape[0], k)
    lut_topk(byte_luts(tables, bits), packed, hs, hi, **kw)
    return finalize_heaps(hs, hi)


def run_coord(tables, packed, bits, k, **kw):
    hs, hi = init_heaps(tables.shape[0], k)
    coord_lut_topk(tables, packed, bits, hs, hi, **kw)
    return finalize_heaps(hs, hi)


def random_case(rng, n, d, bits, nq=4):
    codes = rng.integers(0, 2**bits, (n, d)).astype(np.uint8)
    tables = rng.standard_normal((nq, d, 2**bits)).astype(np.float32)
    return codes, pack_codes(codes, bits), tables


# --------------------------------------------------------------------------- packing
@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("d", [1, 3, 8, 13, 64, 100])
def test_pack_unpack_round_trip_and_layout(rng, bits, d):
    codes = rng.integers(0, 2**bits, (7, d)).astype(np.uint8)
    packed = pack_codes(codes, bits)
    assert packed.dtype == np.uint8 and packed.shape == (7, codes_nbytes(d, bits))
    np.testing.assert_array_equal(unpack_codes(packed, bits, d), codes)
    # code j occupies bits [j*bits, (j+1)*bits) of the little-endian bit stream
    stream = np.unpackbits(packed, axis=1, bitorder="little").astype(np.int64)
    rebuilt = sum(stream[:, np.arange(d) * bits + b] << b for b in range(bits))
    np.testing.assert_array_equal(rebuilt, codes)
    assert not stream[:, d * bits:].any(), "unused high bits must be zero"
    if bits in (1, 2, 4, 8):  # whole codes per byte: byte (j*bits)//8, shift (j*bits)%8
        j = np.arange(d)
        got = (packed[:, (j * bits) // 8] >> ((j * bits) % 8)) & (2**bits - 1)
        np.testing.assert_array_equal(got, codes)
    levels = rng.standard_normal(2**bits).astype(np.float32)
    np.testing.assert_array_equal(dequantize(packed, bits, d, levels), levels[codes])
    np.testing.assert_array_equal(dequantize(packed, bits, d, levels, 2, 5), levels[codes[2:5]])


def test_pack_rejects_bad_input():
    with pytest.raises(ValueError, match="< 2\\*\\*2"):
        pack_codes(np.array([[0, 4]], np.uint8), 2)
    with pytest.raises(ValueError, match="bits"):
        pack_codes(np.zeros((1, 3), np.uint8), 9)
    with pytest.raises(ValueError, match="packed must be"):
        unpack_codes(np.zeros((1, 3), np.uint8), 4, 8)


def test_quantize_nearest(rng):
    levels = np.sort(rng.standard_normal(8)).astype(np.float32)
    u = rng.standard_normal((50, 20)).astype(np.float32)
    codes, dots = quantize_nearest(u, levels)
    np.testing.assert_array_equal(codes, np.abs(u[..., None] - levels).argmin(-1))
    np.testing.assert_allclose(dots, (u.astype(np.float64) * levels[codes]).sum(1), rtol=1e-12)


# --------------------------------------------------------------------------- byte tables
@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("d", [1, 5, 16, 37])
def test_byte_luts_equal_numpy(rng, bits, d):
    tables = rng.standard_normal((3, d, 2**bits)).astype(np.float32)
    luts = byte_luts(tables, bits)
    per = 8 // bits
    assert luts.shape == (3, codes_nbytes(d, bits), 256)
    v = np.arange(256)
    for p in range(luts.shape[1]):
        ref = np.zeros((3, 256))
        for t in range(per):
            j = p * per + t
            if j < d:  # codes past d contribute 0
                ref += tables[:, j, (v >> (t * bits)) & (2**bits - 1)]
        np.testing.assert_allclose(luts[:, p], ref, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="bits"):
        byte_luts(rng.standard_normal((1, 4, 8)).astype(np.float32), 3)


# --------------------------------------------------------------------------- LUT scans
@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("l2", [False, True])
def test_lut_topk_equals_numpy(rng, bits, l2):
    n, d, k = 900, 29, 12
    codes, packed, tables = random_case(rng, n, d, bits)
    scale = (rng.random(n) + 0.5).astype(np.float32)
    kw = {"scale": scale}
    if l2:
        kw["sq_norms"] = (rng.random(n) * 4).astype(np.float32)
        kw["q_sq_norms"] = (rng.random(4) * 4).astype(np.float32)
    ref_scores = np_scores(tables, codes, **kw)
    ref = np_topk(ref_scores, k)
    assert_same_topk(run_lut(tables, packed, bits, k, **kw), ref, rtol=1e-5)
    assert_same_topk(run_coord(tables, packed, bits, k, **kw), ref, rtol=1e-5)


@pytest.mark.parametrize("bits", [3, 5])
def test_coord_lut_topk_any_width(rng, bits):
    n, d, k = 700, 21, 10
    codes, packed, tables = random_case(rng, n, d, bits)
    mask = rng.random(n) < 0.5
    ref = np_topk(np_scores(tables, codes), k, mask=mask)
    assert_same_topk(run_coord(tables, packed, bits, k, mask=mask), ref, rtol=1e-5)


@pytest.mark.parametrize("l2", [False, True])
def test_lut_topk_ranges_bias_slots_tombstones_mask(rng, l2):
    n, d, k, nq, bits = 1000, 24, 8, 5, 4
    codes, packed, tables = random_case(rng, n, d, bits, nq)
    scale = (rng.random(n) + 0.5).astype(np.float32)
    # rows stored out of slot order (as an IVF keeps its lists), with tombstones
    row_slots = rng.permutation(n).astype(np.int64)
    row_slots[rng.random(n) < 0.1] = -1
    mask = rng.random(n) < 0.7
    bounds = np.array([0, 130, 130, 400, 610, 1000])  # includes an empty range
    spans = np.stack([bounds[:-1], bounds[1:]], axis=1)
    ranges = np.stack([spans[rng.permutation(5)[:3]] for _ in range(nq)]).astype(np.int64)
    bias = rng.standard_normal((nq, 3)).astype(np.float32)
    raw = np_scores(tables, codes, scale=scale)
    l2_parts = None
    kw = {}
    if l2:
        xn = (rng.random(n) * 4).astype(np.float32)
        qn = (rng.random(nq) * 4).astype(np.float32)
        l2_parts = (qn, xn)
        kw = {"sq_norms": xn, "q_sq_norms": qn}
    ref = np_topk(raw, k, ranges=ranges, bias=bias, row_slots=row_slots, mask=mask,
                  l2_parts=l2_parts)
    got = run_lut(tables, packed, bits, k, scale=scale, ranges=ranges, bias=bias,
                  row_slots=row_slots, mask=mask, **kw)
    assert_same_topk(got, ref, rtol=1e-5)
    got32 = run_lut(tables, packed, bits, k, scale=scale, ranges=ranges, bias=bias,
                    row_slots=row_slots.astype(np.int32), mask=mask, **kw)  # scanned as is
    for a, b in zip(got, got32, strict=True):
        np.testing.assert_array_equal(a, b)
    got = run_coord(tables, packed, bits, k, scale=scale, ranges=ranges, bias=bias,
                    row_slots=row_slots, mask=mask, **kw)
    assert_same_topk(got, ref, rtol=1e-5)


def test_lut_topk_heaps_accumulate_across_calls(rng):
    codes, packed, tables = random_case(rng, 600, 16, 2)
    luts = byte_luts(tables, 2)
    hs, hi = init_heaps(4, 7)
    lut_topk(luts, packed[:250], hs, hi)
    lut_topk(luts, packed[250:], hs, hi, row_slots=np.arange(250, 600))
    assert_same_topk(finalize_heaps(hs, hi), np_topk(np_scores(tables, codes), 7), rtol=1e-5)


def test_tie_rule_lower_slot_wins_whatever_the_scan_order(rng):
    n = 40
    packed = pack_codes(np.ones((n, 10), np.uint8), 4)  # every row scores the same
    tables = rng.standard_normal((2, 10, 16)).astype(np.float32)
    row_slots = rng.permutation(n).astype(np.int64)
    for fn in (run_lut, run_coord):
        scores, slots, counts = fn(tables, packed, 4, 5, row_slots=row_slots)
        np.testing.assert_array_equal(slots, [[0, 1, 2, 3, 4]] * 2)
        assert (scores == scores[:, :1]).all() and (counts == 5).all()
    _, slots, _ = decoded_topk(np.ones((1, 10), np.float32),
                               lambda a, b: np.ones((b - a, 10), np.float32), n, 5,
                               row_slots=row_slots, block=7)
    np.testing.assert_array_equal(slots, [[0, 1, 2, 3, 4]])


def test_lut_topk_pads_when_few_rows_are_allowed(rng):
    _, packed, tables = random_case(rng, 50, 8, 4, nq=3)
    mask = np.zeros(50, bool)
    mask[[4, 17]] = True
    scores, slots, counts = run_lut(tables, packed, 4, 5, mask=mask)
    assert (counts == 2).all() and (slots[:, 2:] == -1).all()
    assert np.isneginf(scores[:, 2:]).all()
    assert all(set(r[:2]) == {4, 17} for r in slots.tolist())


@pytest.mark.parametrize("nq", [1, 3, 9])
def test_threads_give_identical_results(rng, nq):
    n, d = 30_000, 64
    _, packed, tables = random_case(rng, n, d, 4, nq)
    mask = rng.random(n) < 0.9
    old = vc.get_num_threads()
    out = []
    try:
        for t in (1, 2):
            vc.set_num_threads(t)
            out.append(run_lut(tables, packed, 4, 10, mask=mask))
            out.append(run_coord(tables, packed, 4, 10, mask=mask))
    finally:
        vc.set_num_threads(old)
    for a, b in ((out[0], out[2]), (out[1], out[3])):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------- BLAS route
@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("l2", [False, True])
def test_decoded_topk_equals_lut_topk(rng, bits, l2):
    n, d, nq, k = 5000, 40, 6, 10
    _, packed, _ = random_case(rng, n, d, bits, nq)
    levels = np.sort(rng.standard_normal(2**bits)).astype(np.float32)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    tables = q[:, :, None] * levels[None, None, :]
    scale = (rng.random(n) + 0.5).astype(np.float32)
    row_slots = rng.permutation(n).astype(np.int64)
    row_slots[::13] = -1
    mask = rng.random(n) < 0.8
    kw = {"scale": scale, "row_slots": row_slots, "mask": mask}
    if l2:
        kw["sq_norms"] = (rng.random(n) * 4).astype(np.float32)
        kw["q_sq_norms"] = (q * q).sum(1).astype(np.float32)
    lut = run_lut(tables, packed, bits, k, **kw)
    dec = decoded_topk(q, lambda a, b: dequantize(packed, bits, d, levels, a, b), n, k,
                       block=700, **kw)
    assert_same_topk(dec, lut, rtol=1e-5)


def test_prefer_decoded_grows_with_the_batch():
    for lookups, dq in ((192, 384), (96, 384), (48, 384)):
        picks = [prefer_decoded(nq, lookups, dq) for nq in (1, 2, 4, 8, 16, 64, 512)]
        assert picks == sorted(picks), "once decoded wins it keeps winning"
        assert picks[-1] and not picks[0]
    assert not prefer_decoded(0, 192, 384)


def test_scan_argument_errors(rng):
    _, packed, tables = random_case(rng, 20, 8, 4, nq=2)
    luts = byte_luts(tables, 4)
    hs, hi = init_heaps(2, 3)
    with pytest.raises(ValueError, match="q_sq_norms"):
        lut_topk(luts, packed, hs, hi, sq_norms=np.ones(20, np.float32))
    with pytest.raises(ValueError, match="ranges"):
        lut_topk(luts, packed, hs, hi, ranges=np.zeros((2, 1, 2), np.int64) + 30)
    with pytest.raises(ValueError, match="bias needs ranges"):
        lut_topk(luts, packed, hs, hi, bias=np.zeros((2, 1), np.float32))
    with pytest.raises(ValueError, match="heaps"):
        lut_topk(luts, packed, *init_heaps(3, 3))
    with pytest.raises(ValueError, match="codes must be"):
        lut_topk(luts, packed[:, :2], hs, hi)
