"""The triple route of the native fast scan (``src/lut.c``, "triple route"): additive 2-bit
tables (:func:`~vecindex_core._kernels.fastscan.quantize_parts`, native ``tq_luts`` with
``additive``), and on AVX-512 VNNI + VBMI batches of 16+ queries whose coordinates are
regrouped by three. Every result is compared bit for bit with the numba reference and with
the pair route (``nqsub=8`` forces it); queries whose tables are not additive fall back to
the pair route on their own."""

from __future__ import annotations

import numpy as np
import pytest

from vecindex_core import _native
from vecindex_core._kernels import fastscan as fs
from vecindex_core._kernels.blocked import BlockedCodes
from vecindex_core._kernels.rotation import rotate
from vecindex_core._native import lut as nl
from vecindex_core._native.lut import dot_cpu, lut_topk
from vecindex_core._native.tables import tq_luts
from vecindex_core._threads import get_num_threads, set_num_threads
from vecindex_core.errors import InvalidArgumentError
from vecindex_core.turboquant import TurboQuantIndex

from .conftest import run_in_threads

ISAS = list(_native._usable())
#: the route runs on the avx512 path of a CPU with VNNI and VBMI (dot_cpu's test); elsewhere
#: the calls below still run (the pair route) but prove nothing about it
triple = pytest.mark.skipif(not dot_cpu(), reason="the triple route needs AVX-512 VNNI + VBMI")
T3 = "avx512"
MIN_NQ = 16  # VN_T3_MIN_NQ
MAX_NB = 390  # (nb + 2) // 3 <= VN_T3_MAX_STEPS = 130


# --------------------------------------------------------------------------- helpers
def _pair_tables(luts):
    """(nq, nb, 32) uint8 -> the 2 nb pair tables (nq, 2 nb, 16) as int64."""
    return luts.reshape(luts.shape[0], -1, 16).astype(np.int64)


def _is_additive(table):
    """A 16-entry pair table is A[c & 3] + B[c >> 2] + K with A, B spanning <= PART_MAX and
    entries <= LUT_MAX (what the kernel checks before taking the route)."""
    t = np.asarray(table, np.int64)
    c0, c1 = np.arange(16) & 3, np.arange(16) >> 2
    a, b = t[:4], t[::4]
    return bool((t + t[0] == a[c0] + b[c1]).all() and a.max() - a.min() <= fs.PART_MAX
                and b.max() - b.min() <= fs.PART_MAX and t.max() <= fs.LUT_MAX)


def _built_tables(rng, nq, nb, *, span=fs.PART_MAX, top=fs.LUT_MAX, peak=False):
    """Additive tables A[c & 3] + B[c >> 2] + K made directly, with a constant K > 0 where it
    fits (quantize_parts' tables have K = 0: the kernel's correction sum_t K_t is then 0).
    Every A and B spans exactly ``span`` (from 0); with ``peak``, A[3] = B[3] = span and K =
    top - 2 span (entry 15 of every table is ``top``)."""
    m = 2 * nb
    a = rng.integers(0, span + 1, (nq, m, 4))
    b = rng.integers(0, span + 1, (nq, m, 4))
    for x in (a, b):
        hi = np.full((nq, m, 1), 3) if peak else rng.integers(0, 4, (nq, m, 1))
        np.put_along_axis(x, hi, span, axis=2)
        np.put_along_axis(x, (hi + rng.integers(1, 4, (nq, m, 1))) % 4, 0, axis=2)
    room = top - a.max(axis=2) - b.max(axis=2)
    k = room if peak else (rng.random((nq, m)) * (room + 1)).astype(np.int64)
    c = np.arange(16)
    t = a[:, :, c & 3] + b[:, :, c >> 2] + k[:, :, None]
    assert t.max() <= top
    return np.ascontiguousarray(t.astype(np.uint8).reshape(nq, nb, 32))


def _parts_tables(rng, nq, nb, d=None):
    """quantize_parts' tables of random queries (the turboquant pipeline), bias made
    positive so that the thresholds are (and the integer cut prunes)."""
    d = 4 * nb if d is None else d
    rq = rng.standard_normal((nq, d)).astype(np.float32)
    lv = np.sort(rng.standard_normal(4)).astype(np.float32)
    luts, bias, delta = fs.quantize_parts(rq, lv, nb)
    return luts, np.abs(bias), delta


def _case(rng, nq, nb, n, kind):
    codes = rng.integers(0, 256, (n, nb), dtype=np.uint8)
    if kind == "built":
        luts = _built_tables(rng, nq, nb)
        bias = rng.random(nq).astype(np.float32)
        delta = (rng.random(nq) * 0.01 + 0.001).astype(np.float32)
    else:
        luts, bias, delta = _parts_tables(rng, nq, nb)
    return codes, luts, bias, delta


def _same(a, b):
    assert np.array_equal(a[1], b[1])
    assert np.array_equal(a[0].view(np.uint32), b[0].view(np.uint32))  # bit for bit


def _check(luts, bias, delta, codes, n, k, **kw):
    """The reference, the triple route (nqsub 0) and the pair route (nqsub 8): the same."""
    ref_kw = {a: b for a, b in kw.items() if a not in ("scale_max", "sort")}
    ref = fs.fastscan_topk_ref(luts, bias, delta, codes, n, k, **ref_kw)
    for nqsub in (0, 8):
        got = lut_topk(luts, bias, delta, codes, n, k, isa=T3, nqsub=nqsub, **kw)
        if not kw.get("sort", True):  # the same rows in some order: sorted, they match
            order = np.lexsort((got[1], -got[0]), axis=-1)
            got = (np.take_along_axis(got[0], order, 1), np.take_along_axis(got[1], order, 1))
        _same(ref, got)
    return ref


def _raw(luts, bias, delta, codes, n, k, q0, q1, r0, r1, *, tail=None, scale=None,
         mask=None, scale_max=float("nan")):
    """The extension's own call over queries q0:q1 and rows r0:r1 (no thread split); rows
    outside q0:q1 keep their sentinels."""
    nq = luts.shape[0]
    out_s = np.full((nq, k), 7.0, np.float32)
    out_i = np.full((nq, k), -7, np.int64)
    _native._ext.lut_topk(luts, bias, delta, None, codes, tail, n, scale, None, mask, k, q0, q1,
                          r0, r1, out_s, out_i, _native._isa_id(T3), 0, None, None, None, None,
                          None, None, None, None, scale_max, False)
    return out_s, out_i


# --------------------------------------------------------------------------- tables
def _parts_by_definition(rq, lv, nb):
    """quantize_parts' docstring in plain numpy float32: (luts, bias, delta)."""
    nq, d = rq.shape
    r = np.zeros((nq, 4 * nb), np.float32)
    r[:, :d] = rq
    p = r[:, :, None] * lv[None, None, :]  # float32 products
    lo = p.min(axis=2)
    span = (p.max(axis=2) - lo).max(axis=1)
    f32 = np.float32
    luts = np.empty((nq, 2 * nb, 16), np.uint8)
    bias = np.empty(nq, np.float32)
    delta = np.empty(nq, np.float32)
    for q in range(nq):
        mult = f32(2.0**100) if f32(0) < span[q] < f32(2.0**-100) else f32(1)
        dl = (span[q] * mult) / f32(fs.PART_MAX)
        dl = dl if dl > 0 else f32(1)
        delta[q] = dl / mult
        # four float64 sums by j mod 4, each in increasing j (cumsum: sequential)
        s = [np.cumsum(lo[q, u::4].astype(np.float64))[-1] for u in range(4)]
        bias[q] = np.float32((s[0] + s[1]) + (s[2] + s[3]))
        v = ((p[q] - lo[q][:, None]) * mult) * (f32(1) / dl) + f32(0.5)
        e = np.minimum(np.maximum(v, f32(0)), f32(fs.PART_MAX)).astype(np.int64)
        c = np.arange(16)
        luts[q] = e[0::2][:, c & 3] + e[1::2][:, c >> 2]
    return luts.reshape(nq, nb, 32), bias, delta


def _query_cases():
    """(rq, levels, nb): odd and even nb (the AVX2 kernel takes even nb only), d below the
    codes' 4 nb coordinates, zero, tiny (a span below 2**-100), huge and subnormal queries,
    signed zeros."""
    rng = np.random.default_rng(21)
    for case in range(30):
        nb = int(rng.integers(1, 40)) if case % 3 else int(rng.integers(1, 6))
        d = int(rng.integers(max(1, 4 * nb - 9), 4 * nb + 1))
        scale = (1.0, 0.0, 1e-32, 1e-20, 1e3, 1e30)[case % 6]
        rq = (rng.standard_normal((int(rng.integers(1, 7)), d)) * scale).astype(np.float32)
        lv = np.sort(rng.standard_normal(4)).astype(np.float32)
        if case % 5 == 0:
            rq[:, :2] = (0.0, -0.0)
            lv[0] = -0.0
        if case % 7 == 1:
            rq[0, 0] = np.float32(1e-45)
        yield rq, lv, nb


def test_quantize_parts_is_its_definition_and_additive():
    for rq, lv, nb in _query_cases():
        luts, bias, delta = fs.quantize_parts(rq, lv, nb)
        assert luts.shape == (rq.shape[0], nb, 32) and luts.dtype == np.uint8
        want = _parts_by_definition(rq, lv, nb)
        assert np.array_equal(luts, want[0])
        assert np.array_equal(bias, want[1])  # (a zero's sign may differ: == not bits)
        assert np.array_equal(delta.view(np.uint32), want[2].view(np.uint32))
        assert luts.max() <= 2 * fs.PART_MAX
        for table in _pair_tables(luts).reshape(-1, 16):
            assert _is_additive(table)
        # every coordinate's entries start at 0: the constant K of each pair table is 0
        t = _pair_tables(luts)
        assert (t.min(axis=2) == 0).all()
        # bias + delta * (the row's integer sum) is the row's estimate sum_j rq[j] lv[c_j]
        # within half a step a coordinate (and float rounding)
        r = np.zeros((rq.shape[0], 4 * nb), np.float64)
        r[:, : rq.shape[1]] = rq
        cds = np.random.default_rng(nb).integers(0, 4, (5, 4 * nb))
        sub = cds[:, 0::2] + 4 * cds[:, 1::2]  # the rows' 2 nb sub-codes
        s = t[:, np.arange(2 * nb)[None, :], sub].sum(axis=2)  # (nq, 5)
        est = (r[:, None, :] * lv.astype(np.float64)[cds][None]).sum(axis=2)
        got = bias[:, None].astype(np.float64) + delta[:, None].astype(np.float64) * s
        mag = np.abs(r).sum(axis=1, keepdims=True) * np.abs(lv).max()
        tol = 4 * nb * delta[:, None].astype(np.float64) * 0.5001 + 1e-5 * mag + 1e-43
        assert (np.abs(got - est) <= tol).all()


@pytest.mark.parametrize("isa", ISAS)
def test_native_additive_luts_equal_the_reference(isa):
    """tq_luts with additive (the native quantize_parts) on every path: tables, luts, bias
    and delta byte for byte as nibble_tables + quantize_parts; nibble_luts and rotated_luts
    with additive the same off and on the native path."""
    for rq, lv, nb in _query_cases():
        with _native._use(None):
            want = (fs.nibble_tables(rq, lv, 2, nb), *fs.quantize_parts(rq, lv, nb))
            off = fs.nibble_luts(rq, lv, 2, nb, additive=True)
        nq = rq.shape[0]
        got = (np.empty((nq, 2 * nb, 16), np.float32), np.empty((nq, nb, 32), np.uint8),
               np.empty(nq, np.float32), np.empty(nq, np.float32))
        tq_luts(rq, lv, 2, *got, additive=True, isa=isa)
        with _native._use(isa):
            on = fs.nibble_luts(rq, lv, 2, nb, additive=True)
            plain = fs.nibble_luts(rq, lv, 2, nb)
        for w, a, b, c in zip(want, off, got, on, strict=True):
            for x in (a, b, c):
                assert x.dtype == w.dtype and x.shape == w.shape
                assert np.array_equal(w.view(np.uint8), x.view(np.uint8))
        assert np.array_equal(plain[0], want[0])  # the float tables do not depend on it
        q = rq * np.float32(3.0)
        for seed in (0, 7):
            with _native._use(None):
                w2 = fs.nibble_luts(rotate(q, seed), lv, 2, nb, additive=True)
                o2 = fs.rotated_luts(q, seed, lv, 2, nb, additive=True)
            with _native._use(isa):
                g2 = fs.rotated_luts(q, seed, lv, 2, nb, additive=True)
            for a, b, c in zip(w2, o2, g2, strict=True):
                assert np.array_equal(a.view(np.uint8), b.view(np.uint8))
                assert np.array_equal(a.view(np.uint8), c.view(np.uint8))


def test_additive_is_ignored_for_other_widths():
    """nibble_luts(additive=True) of 1- and 4-bit codes: the quantize_luts tables."""
    rng = np.random.default_rng(4)
    rq = rng.standard_normal((3, 30)).astype(np.float32)
    for bits, nb in ((1, 4), (4, 15)):
        lv = np.sort(rng.standard_normal(1 << bits)).astype(np.float32)
        for isa in (None, *ISAS):
            with _native._use(isa):
                a = fs.nibble_luts(rq, lv, bits, nb, additive=True)
                b = fs.nibble_luts(rq, lv, bits, nb)
            for x, y in zip(a, b, strict=True):
                assert np.array_equal(x.view(np.uint8), y.view(np.uint8))


# --------------------------------------------------------------------------- the scan
@triple
@pytest.mark.parametrize("nb", [1, 2, 3, 4, 5, 32, 96, 97, 100])
@pytest.mark.parametrize("nq", [16, 17, 40])
@pytest.mark.parametrize("kind", ["parts", "built"])
def test_triple_route_equals_the_reference_and_the_pair_route(nb, nq, kind):
    rng = np.random.default_rng(nb * 100 + nq + (kind == "built"))
    for n in (1, 45, 300):  # one row; a partial block; two units and a partial one
        codes, luts, bias, delta = _case(rng, nq, nb, n, kind)
        blocked = fs.pack_blocked(codes)
        scale = (0.5 + rng.random(n)).astype(np.float32)
        mask = rng.random(n) < 0.6
        for k in (1, 10, 50, n + 5):
            for kw in ({}, {"scale": scale}, {"scale": scale, "scale_max": float(scale.max())},
                       {"mask": mask, "scale": scale, "scale_max": 1.5}, {"sort": False},
                       {"scale": scale, "mask": mask, "sort": False}):
                _check(luts, bias, delta, blocked, n, k, **kw)


@triple
@pytest.mark.parametrize("kind", ["parts", "built"])
def test_block_pruning_by_the_integer_cut(kind):
    """Many blocks, a few results, positive thresholds: most blocks are skipped by the
    integer cut (16-bit sums against the cut less the tables' constant); the same rows."""
    rng = np.random.default_rng(5 if kind == "parts" else 6)
    n, nb, nq = 6000, 6, 18
    codes, luts, bias, delta = _case(rng, nq, nb, n, kind)
    blocked = fs.pack_blocked(codes)
    scale = (0.5 + rng.random(n)).astype(np.float32)
    scale[rng.integers(0, n, 40)] = 1.5  # scale_max attained
    for k in (1, 3, 20):
        for kw in ({}, {"scale": scale, "scale_max": 1.5},
                   {"scale": scale, "scale_max": 1e6}, {"scale": scale}):
            _check(luts, bias, delta, blocked, n, k, **kw)
    # negative scores: no positive threshold, no cut
    _check(luts, -bias - np.float32(1e4), delta, blocked, n, 5, scale=scale, scale_max=1.5)


@triple
def test_the_cut_at_the_boundary():
    """Entries 0..2 and delta 1: integer sums one apart are scores one apart, thousands of
    rows tie, and a later block's row one above the k-th best must still be taken (the cut
    has no room to spare there)."""
    rng = np.random.default_rng(7)
    n, nb, nq = 8000, 3, 16
    c = np.arange(16)
    a = rng.integers(0, 2, (nq, 2 * nb, 4))
    b = rng.integers(0, 2, (nq, 2 * nb, 4))
    k0 = rng.integers(0, 3, (nq, 2 * nb, 1))
    luts = np.ascontiguousarray((a[..., c & 3] + b[..., c >> 2] + k0).astype(np.uint8)
                                .reshape(nq, nb, 32))
    codes = rng.integers(0, 256, (n, nb), dtype=np.uint8)
    blocked = fs.pack_blocked(codes)
    bias = np.full(nq, 0.5, np.float32)
    delta = np.ones(nq, np.float32)
    scale = np.ones(n, np.float32)
    for k in (1, 2, 30):
        _check(luts, bias, delta, blocked, n, k)
        _check(luts, bias, delta, blocked, n, k, scale=scale, scale_max=1.0)


@triple
def test_sums_past_32767_compare_unsigned():
    """16-bit sums above 32767 (the route's sums are uint16, up to 65520) in a block whose
    other rows are below the cut: compared with the cut as unsigned, they are taken."""
    rng = np.random.default_rng(17)
    n, nb, nq = 400, 240, 16
    part = np.array([0, 5, 10, fs.PART_MAX])  # every coordinate's entries, K = 43
    c = np.arange(16)
    table = part[c & 3] + part[c >> 2] + 43
    luts = np.ascontiguousarray(np.broadcast_to(table.astype(np.uint8), (nq, 2 * nb, 16))
                                .reshape(nq, nb, 32))
    x = rng.integers(1, 3, (n, nb, 4))  # 2-bit codes 1 and 2: 16-bit sums 4800 .. 9600
    x[256:288] = 0  # a block of sums 0 ...
    x[270:276] = 3  # ... but for six rows at 960 x 42 = 40320
    codes = (x[..., 0] | x[..., 1] << 2 | x[..., 2] << 4 | x[..., 3] << 6).astype(np.uint8)
    blocked = fs.pack_blocked(codes)
    bias = rng.random(nq).astype(np.float32)
    delta = (rng.random(nq) * 0.01 + 0.001).astype(np.float32)
    for k in (1, 3, 6):
        ref = _check(luts, bias, delta, blocked, n, k)
        assert (ref[1] == np.arange(270, 270 + k)).all()


@triple
def test_tail_block_and_row_ranges():
    """The last partial block given apart (tail=, as BlockedCodes keeps it), and the
    extension's own calls over query and row ranges (r0 a multiple of 32, r1 anywhere)."""
    rng = np.random.default_rng(8)
    nb, nq = 7, 20
    for n in (75, 300, 333):
        codes, luts, bias, delta = _case(rng, nq, nb, n, "built")
        full = 32 * (n // 32)
        store = BlockedCodes.from_rows(codes)
        tail = store.tail_block()
        assert tail is not None and np.array_equal(tail, fs.pack_blocked(codes[full:]))
        # spare zero blocks after the full ones: a scan that read them for the tail fails
        main = fs.pack_blocked(codes[:full], capacity=full + 64)
        scale = (0.5 + rng.random(n)).astype(np.float32)
        want = fs.fastscan_topk_ref(luts, bias, delta, fs.pack_blocked(codes), n, n)
        _same(want, fs.fastscan_topk_ref(luts, bias, delta, main, n, n, tail=tail))
        for k in (1, 10, n):
            for kw in ({}, {"scale": scale, "scale_max": float(scale.max())}):
                ref = _check(luts, bias, delta, main, n, k, tail=tail, **kw)
                _same(ref, lut_topk(luts, bias, delta, store.blocks, n, k, tail=tail, isa=T3,
                                    **kw))
        mask = rng.random(n) < 0.8
        for q0, q1 in ((0, nq), (2, 20), (1, 18)):
            for r0, r1 in ((0, n), (32, n), (64, 250), (96, 97), (160, n - 1), (0, 0)):
                if not r0 <= r1 <= n:
                    continue
                inside = (np.arange(n) >= r0) & (np.arange(n) < r1) & mask
                for k in (1, 10):
                    ref = fs.fastscan_topk_ref(luts, bias, delta, main, n, k, tail=tail,
                                               scale=scale, mask=inside)
                    got = _raw(luts, bias, delta, main, n, k, q0, q1, r0, r1, tail=tail,
                               scale=scale, mask=mask, scale_max=float(scale.max()))
                    _same((ref[0][q0:q1], ref[1][q0:q1]), (got[0][q0:q1], got[1][q0:q1]))
                    assert (got[1][:q0] == -7).all() and (got[1][q1:] == -7).all()


@triple
@pytest.mark.parametrize("nb", [MAX_NB - 2, MAX_NB, MAX_NB + 1, MAX_NB + 3])
def test_the_longest_codes_and_past_them(nb):
    """(nb + 2) // 3 = 130 steps take the route (16-bit sums up to 130 x 4 x 126 = 65520),
    131 fall back: both the reference's results, the largest sums included (every entry
    127 and codes selecting it)."""
    rng = np.random.default_rng(nb)
    n, nq = 70, 16
    codes, luts, bias, delta = _case(rng, nq, nb, n, "built")
    codes[:40] = 0xFF  # sub-code 15 everywhere: entry 15 of the tables ...
    luts[:8] = _built_tables(rng, 8, nb, peak=True)  # ... 127 = 42 + 42 + 43 for eight
    blocked = fs.pack_blocked(codes)
    scale = (0.5 + rng.random(n)).astype(np.float32)
    for k in (1, 5, 45):
        ref = _check(luts, bias, delta, blocked, n, k)
        _check(luts, bias, delta, blocked, n, k, scale=scale, scale_max=1.5)
    top = np.float32(2 * nb * fs.LUT_MAX)  # the largest sum, exact in float32
    assert np.array_equal(ref[0][:8, 0], (bias[:8] + delta[:8] * top).astype(np.float32))
    assert (ref[1][:8, :40] < 40).all()


@triple
def test_queries_whose_tables_are_not_additive_take_the_pair_route():
    """A batch mixing additive tables with tables that are not (quantize_luts' of random
    float tables, one entry bumped, a coordinate span of 43): every query the reference's
    rows; entries above LUT_MAX are refused before any scan."""
    rng = np.random.default_rng(9)
    nb, n, nq = 9, 500, 24
    codes = rng.integers(0, 256, (n, nb), dtype=np.uint8)
    codes[:64] = 0xFF  # rows where a span-43 table's largest entries meet
    blocked = fs.pack_blocked(codes)
    luts = _built_tables(rng, nq, nb)
    bias = rng.random(nq).astype(np.float32)
    delta = (rng.random(nq) * 0.01 + 0.001).astype(np.float32)
    t = luts.reshape(nq, 2 * nb, 16)
    loose, _, _ = fs.quantize_luts(rng.standard_normal((4, 2 * nb, 16)).astype(np.float32))
    t[[0, 5, 6, 23]] = loose.reshape(4, 2 * nb, 16)
    t[3, 4, 9] += 1  # one entry off the sum A + B + K
    c = np.arange(16)
    a43 = np.where((c & 3) == 3, 43, 0)
    b43 = np.where((c >> 2) == 3, 43, 0)
    t[10] = a43 + b43 + 41  # spans 43: three coordinates' entries add up to 129
    t[11] = a43 + np.where((c >> 2) == 3, 42, 0) + 20  # A spans 43, B 42
    t[12] = _built_tables(rng, 1, nb, span=43, peak=True).reshape(2 * nb, 16)
    not_additive = [0, 3, 5, 6, 10, 11, 12, 23]
    for q in range(nq):
        assert all(_is_additive(x) for x in t[q]) == (q not in not_additive), q
    scale = (0.5 + rng.random(n)).astype(np.float32)
    for k in (1, 10, 70):
        for kw in ({}, {"scale": scale, "scale_max": 1.5}, {"mask": rng.random(n) < 0.5}):
            _check(luts, bias, delta, blocked, n, k, **kw)
    # only the 16 additive ones (the route's least), and all but one additive one
    ok = [q for q in range(nq) if q not in not_additive]
    assert len(ok) == MIN_NQ
    _check(np.ascontiguousarray(luts[ok]), bias[ok], delta[ok], blocked, n, 10)
    _check(np.ascontiguousarray(luts[[*ok, 3]]), bias[[*ok, 3]], delta[[*ok, 3]], blocked, n, 7)
    # fewer than 16 additive: the whole call takes the pair route
    few = [*ok[:15], 0, 3, 10]
    _check(np.ascontiguousarray(luts[few]), bias[few], delta[few], blocked, n, 10)
    # an entry above LUT_MAX: refused (typed error) by the checked call and the reference
    over = luts.copy()
    over[2, 0, 0] = fs.LUT_MAX + 1
    for fn in (lambda **kw: lut_topk(isa=T3, **kw), fs.fastscan_topk_ref):
        with pytest.raises(InvalidArgumentError, match="at most 127"):
            fn(luts=over, bias=bias, delta=delta, codes=blocked, n=n, k=3)


@triple
def test_more_queries_than_a_group():
    """VN_T3_GROUP = 256 queries a group: 300 queries are two groups."""
    rng = np.random.default_rng(10)
    codes, luts, bias, delta = _case(rng, 300, 5, 100, "built")
    blocked = fs.pack_blocked(codes)
    for k in (1, 7):
        _check(luts, bias, delta, blocked, 100, k)


# --------------------------------------------------------------------------- threads
@triple
def test_threads_give_the_serial_results(monkeypatch):
    """Queries split over two threads (20 each: the route on both), rows split over nine
    (every part the route over its row range, merged), two callers at once: the serial
    results."""
    rng = np.random.default_rng(11)
    n, nb = 1500, 12
    codes, luts, bias, delta = _case(rng, 40, nb, n, "parts")
    blocked = fs.pack_blocked(codes)
    scale = (0.5 + rng.random(n)).astype(np.float32)
    kw = {"scale": scale, "scale_max": float(scale.max())}
    want = {k: _check(luts, bias, delta, blocked, n, k, **kw) for k in (1, 10)}
    old = get_num_threads()
    try:
        monkeypatch.setattr(nl, "MIN_WORK_PER_THREAD", 1)
        monkeypatch.setattr(nl, "MIN_ROWS_WORK_PER_THREAD", 1)
        for threads, nq in ((1, 40), (2, 40), (9, 16)):
            set_num_threads(threads)
            by_rows = nl.scan_plan(nq, n, nb)[1]
            assert by_rows == (threads == 9)
            for k in (1, 10):
                got = lut_topk(luts[:nq], bias[:nq], delta[:nq], blocked, n, k, isa=T3, **kw)
                _same((want[k][0][:nq], want[k][1][:nq]), got)
        set_num_threads(2)

        def work() -> None:
            for _ in range(3):
                _same(want[10], lut_topk(luts, bias, delta, blocked, n, 10, isa=T3, **kw))

        run_in_threads(work)
    finally:
        set_num_threads(old)


# --------------------------------------------------------------------------- search
@triple
@pytest.mark.parametrize("nb", [37, 38])
def test_fused_rescore_over_the_triple_route(monkeypatch, nb):
    """fastscan_search's fused rescore (lut_search, rows four at a time) of triple-route
    shortlists, odd and even nb, shortlists padded with -1: the reference's two steps bit
    for bit."""
    rng = np.random.default_rng(12 + nb)
    nq, d, n = 20, 4 * nb - 3 * (nb % 2 == 0), 700  # odd nb: its last table is live
    rq = rng.standard_normal((nq, d)).astype(np.float32)
    lv = np.sort(rng.standard_normal(4)).astype(np.float32)
    with _native._use(None):
        tables, luts, bias, delta = fs.nibble_luts(rq, lv, 2, nb, additive=True)
    codes = rng.integers(0, 256, (n, nb), dtype=np.uint8)
    store = BlockedCodes.from_rows(codes)
    scale = (0.5 + rng.random(n)).astype(np.float32)
    few = np.zeros(n, bool)
    few[[3, 40, 41, 500, 690, 699]] = True  # 6 rows for shortlists of 30
    old = get_num_threads()
    try:
        set_num_threads(1)  # the rows are not split: the rescore runs in the scan's call
        for size, k, kw in ((30, 10, {}), (30, 10, {"scale": scale, "scale_max": 2.0}),
                            (29, 7, {"mask": rng.random(n) < 0.7}), (30, 10, {"mask": few}),
                            (5, 5, {"mask": few, "scale": scale})):
            args = (luts, bias, delta, store.blocks, n, size, k, tables)
            with _native._use(None):
                want = fs.fastscan_search(*args, tail=store.tail_block(), **kw)
            with monkeypatch.context() as m, _native._use(T3):
                m.setattr(fs, "rescore_shortlist", None)  # fused: not called
                got = fs.fastscan_search(*args, tail=store.tail_block(), **kw)
            for a, b in zip(want, got, strict=True):
                assert a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))
    finally:
        set_num_threads(old)
    assert (want[1][:, 5:] == -1).all() and (want[2] == 5).all()  # the last: padded


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_turboquant_2bit_batches_equal_single_queries_and_every_path(sample, metric):
    """A 2-bit turboquant index on the bundled MiniLM sample (5,000 rows: a tail block):
    40 queries at once (the triple route where the CPU has it) give what the numba
    reference gives and what each query searched alone gives (the pair route)."""
    x, q = sample.base, sample.queries[:40]
    index = TurboQuantIndex(x.shape[1], metric, bits=2)
    index.add(x)
    mask = np.random.default_rng(13).random(index.ntotal) < 0.7
    old = get_num_threads()
    try:
        set_num_threads(1)  # one call of 40 queries (with more threads: chunks below 16)
        with _native._use(None):
            want = [index.search(q, 10), index.search(q, 40, mask=mask)]
        for isa in ISAS:
            with _native._use(isa):
                got = [index.search(q, 10), index.search(q, 40, mask=mask)]
                for w, g in zip(want, got, strict=True):
                    assert np.array_equal(w.ids, g.ids) and np.array_equal(w.scores, g.scores)
        with _native._use(ISAS[-1]):
            for i in range(0, q.shape[0], 3):
                one = index.search(q[i : i + 1], 10)
                assert np.array_equal(one.ids[0], want[0].ids[i])
                assert np.array_equal(one.scores[0], want[0].scores[i])
    finally:
        set_num_threads(old)
    recall = np.mean([len(set(a) & set(b[:10])) for a, b in
                      zip(want[0].ids, sample.gt[:40], strict=True)]) / 10
    assert recall >= 0.5  # a real search, not a degenerate one
