"""The uint8-LUT fast scan: blocked layout, the numba reference, every native path bit for
bit, typed errors, threads, and the turboquant index on top of it."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import _native
from vecindex_core._kernels import fastscan as fs
from vecindex_core._kernels.codes import codes_nbytes, pack_codes
from vecindex_core._native.lut import MIN_ROWS_WORK_PER_THREAD, lut_topk
from vecindex_core._threads import get_num_threads, set_num_threads
from vecindex_core.errors import (
    DimensionMismatchError,
    InvalidArgumentError,
    InvalidDtypeError,
)
from vecindex_core.turboquant import TurboQuantIndex

from .conftest import run_in_threads

ISAS = list(_native._usable())
ROOT = Path(__file__).resolve().parents[1]


def test_the_native_module_is_built_with_the_lut_kernel():
    assert _native._ext is not None and hasattr(_native._ext, "lut_topk")
    assert "portable" in ISAS


# --------------------------------------------------------------------------- layout
@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, 100])
@pytest.mark.parametrize("nb", [1, 3, 48])
def test_pack_unpack_round_trip(n, nb):
    rng = np.random.default_rng(n * 7 + nb)
    codes = rng.integers(0, 256, (n, nb), dtype=np.uint8)
    blocked = fs.pack_blocked(codes)
    assert blocked.shape == (-(-n // 32), nb * 32)
    assert np.array_equal(fs.unpack_blocked(blocked, n, nb), codes)
    if n:
        slots = rng.permutation(n)[: max(1, n // 2)]
        assert np.array_equal(fs.gather_rows(blocked, slots, nb), codes[slots])
        new = rng.integers(0, 256, (slots.size, nb), dtype=np.uint8)
        fs.scatter_rows(blocked, slots, new)
        codes[slots] = new
        assert np.array_equal(fs.unpack_blocked(blocked, n, nb), codes)
        g = fs.gather_blocked(blocked, slots, nb)
        assert np.array_equal(fs.unpack_blocked(g, slots.size, nb), codes[slots])


def test_blocked_layout_is_the_documented_one():
    codes = np.arange(64 * 2, dtype=np.uint8).reshape(64, 2)
    b = fs.pack_blocked(codes)
    for blk in range(2):
        for p in range(2):
            for i in range(16):
                r0, r1 = codes[32 * blk + i, p], codes[32 * blk + 16 + i, p]
                assert b[blk, 32 * p + i] == (r0 & 15) | ((r1 & 15) << 4)
                assert b[blk, 32 * p + 16 + i] == (r0 >> 4) | ((r1 >> 4) << 4)


def test_layout_rejects_bad_slots_and_shapes():
    b = fs.pack_blocked(np.zeros((40, 2), np.uint8))
    with pytest.raises(IndexError):
        fs.gather_rows(b, [64], 2)
    with pytest.raises(ValueError):
        fs.scatter_rows(b, [0, 1], np.zeros((2, 3), np.uint8))


# --------------------------------------------------------------------------- tables
@pytest.mark.parametrize("bits", [1, 2, 4])
@pytest.mark.parametrize("d", [1, 7, 33, 64])
def test_nibble_tables_sum_the_coordinates(bits, d):
    rng = np.random.default_rng(d + bits)
    nb = codes_nbytes(d, bits)
    rq = rng.standard_normal((3, d)).astype(np.float32)
    lv = np.sort(rng.standard_normal(1 << bits)).astype(np.float32)
    t = fs.nibble_tables(rq, lv, bits, nb)
    assert t.shape == (3, 2 * nb, 16)
    codes = rng.integers(0, 1 << bits, (5, d)).astype(np.uint8)
    packed = pack_codes(codes, bits)
    for q in range(3):
        for r in range(5):
            nib = [(packed[r, u // 2] >> (4 * (u % 2))) & 15 for u in range(2 * nb)]
            est = sum(float(t[q, u, c]) for u, c in enumerate(nib))
            exact = float((rq[q].astype(np.float64) * lv[codes[r]]).sum())
            assert est == pytest.approx(exact, abs=1e-4)


def test_quantize_luts_bounds_and_reconstruction():
    rng = np.random.default_rng(0)
    t = rng.standard_normal((4, 10, 16)).astype(np.float32)
    luts, bias, delta = fs.quantize_luts(t)
    assert luts.shape == (4, 5, 32) and luts.max() <= fs.LUT_MAX
    q = luts.reshape(4, 10, 16).astype(np.float64)
    rec = bias[:, None, None] / 10 + q * delta[:, None, None]
    mins = t.min(axis=2, keepdims=True)
    approx = mins + q * delta[:, None, None]
    assert np.abs(approx - t).max() <= delta.max() * 0.5 + 1e-6
    assert rec.shape == t.shape
    flat = np.zeros((1, 2, 16), np.float32)  # flat tables: delta 1, entries 0
    fl, fb, fd = fs.quantize_luts(flat)
    assert fl.max() == 0 and fd[0] == 1 and fb[0] == 0


def _tables_cases():
    """(q, books, bits, l2) covering padding (d < m * dsub), signed zeros and scales."""
    rng = np.random.default_rng(11)
    for case in range(24):
        bits = (1, 2, 4)[case % 3]
        l2 = bool(case % 2)
        m, dsub = int(rng.integers(1, 40)), int(rng.integers(1, 10))
        d = int(rng.integers((m - 1) * dsub + 1, m * dsub + 1))
        scale = (1e-30, 1.0, 1e3)[case % 4 % 3]
        q = (rng.standard_normal((int(rng.integers(1, 9)), d)) * scale).astype(np.float32)
        books = rng.standard_normal((m, 1 << bits, dsub)).astype(np.float32)
        if case % 5 == 0:
            q[:, :2] = 0.0
            books[:, :1] = -0.0
        yield q, books, bits, l2


def _edge_tables():
    """Float tables with NaN, infinities, overflowing spans, tiny spans and flat rows."""
    rng = np.random.default_rng(12)
    t = rng.standard_normal((12, 6, 16)).astype(np.float32)
    t[0, 1, 3] = np.nan
    t[1, 2, 0] = np.inf
    t[2, 0, 5] = -np.inf
    t[3] = np.where(t[3] > 0, np.float32(3e38), np.float32(-3e38))  # finite, span inf
    t[4] *= np.float32(2.0 ** -120)  # spans below 2**-100
    t[5] = 0.0
    t[6] = 0.0
    t[6, :, ::2] = -0.0
    t[7] = np.float32(5.0)
    t[8, :, 0] = np.nan
    return t


@pytest.mark.parametrize("isa", ISAS)
def test_native_tables_equal_the_reference_bit_for_bit(isa):
    for q, books, bits, l2 in _tables_cases():
        got, want = [], []
        for path, out in ((None, want), (isa, got)):
            with _native._use(path):
                t = fs.pq_tables(q, books, l2=l2, bits=bits)
                out.extend([t, *fs.quantize_luts(t)])
                # in one call, and with the codebooks transposed beforehand
                books_t = fs.BooksT(np.ascontiguousarray(books.transpose(0, 2, 1)))
                out.extend(fs.pq_luts(q, books_t, l2=l2, bits=bits))
        assert len(want) == 8
        for a, b in zip(want[:4], want[4:], strict=True):
            assert np.array_equal(a.view(np.uint8), b.view(np.uint8))
        for a, b in zip(want, got, strict=True):  # bytes: signed zeros and NaN too
            assert a.dtype == b.dtype and a.shape == b.shape
            assert np.array_equal(a.view(np.uint8), b.view(np.uint8))
    edge = _edge_tables()
    with _native._use(None):
        want = fs.quantize_luts(edge)
    with _native._use(isa):
        got = fs.quantize_luts(edge)
    for a, b in zip(want, got, strict=True):
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


def _turboquant_table_cases():
    """(rq, levels, bits, nb): padding (d below the codes' capacity), signed zeros, tiny and
    huge queries, subnormal, infinite and NaN entries."""
    rng = np.random.default_rng(14)
    for case in range(24):
        bits = (1, 2, 4)[case % 3]
        nb = int(rng.integers(1, 30))
        cap = 2 * nb * (4 // bits)
        d = int(rng.integers(max(1, cap - 7), cap + 1))
        scale = (1e-30, 1.0, 1e3, 1e37)[case % 4]
        rq = (rng.standard_normal((int(rng.integers(1, 9)), d)) * scale).astype(np.float32)
        levels = np.sort(rng.standard_normal(1 << bits)).astype(np.float32)
        if case % 5 == 0:
            rq[:, :2] = (0.0, -0.0)
            levels[0] = -0.0
        if case % 6 == 1:
            rq[0, 0] = np.float32(1e-45)  # subnormal
            rq[-1, -1] = (np.inf, -np.inf, np.nan)[case % 3]
        yield rq, levels, bits, nb


@pytest.mark.parametrize("isa", ISAS)
def test_native_turboquant_luts_equal_the_reference_bit_for_bit(isa):
    for rq, levels, bits, nb in _turboquant_table_cases():
        with _native._use(None):
            t = fs.nibble_tables(rq, levels, bits, nb)
            want = [t, *fs.quantize_luts(t)]
            assert all(np.array_equal(a.view(np.uint8), b.view(np.uint8)) for a, b in
                       zip(want, fs.nibble_luts(rq, levels, bits, nb), strict=True))
        with _native._use(isa):
            got = fs.nibble_luts(rq, levels, bits, nb)
        for a, b in zip(want, got, strict=True):  # bytes: signed zeros and NaN too
            assert a.dtype == b.dtype and a.shape == b.shape
            assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("isa", ISAS)
def test_rotated_luts_are_the_rotated_queries_luts(isa):
    """The rotation in the tables' call: the same tables as rotating first, bit for bit."""
    from vecindex_core._kernels.rotation import rotate

    for q, levels, bits, nb in _turboquant_table_cases():
        for seed in (0, 7):
            with _native._use(None):
                want = fs.nibble_luts(rotate(q, seed), levels, bits, nb)
                off = fs.rotated_luts(q, seed, levels, bits, nb)
            with _native._use(isa):
                got = fs.rotated_luts(q, seed, levels, bits, nb)
            for a, b, c in zip(want, off, got, strict=True):
                assert np.array_equal(a.view(np.uint8), b.view(np.uint8))
                assert np.array_equal(a.view(np.uint8), c.view(np.uint8))


def test_simd_empty_starts_on_a_simd_boundary():
    """Arrays from 8 KiB start on a 64-byte boundary (numpy's own alignment is 16) however
    the allocator places them; smaller ones keep numpy's alignment."""
    big = fs.SIMD_ALIGN_MIN_BYTES
    for shape, dtype in (((3, big // 96, 32), np.uint8), ((5, big), np.int8),
                         ((3, big // 64, 16), np.float32), ((0, 3, 32), np.uint8),
                         ((1, 3, 32), np.uint8)):
        for _ in range(8):  # several allocations: several offsets from the allocator
            a = fs.simd_empty(shape, dtype)
            assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
            assert a.nbytes < big or a.ctypes.data % fs.SIMD_ALIGN == 0


@pytest.mark.parametrize("isa", ISAS)
def test_luts_start_on_a_simd_boundary(isa):
    """The uint8 tables the kernels load 64 bytes at a time for many queries (and the rank
    step's weights) start on a 64-byte boundary for every way of making them."""
    from vecindex_core._kernels.planes import query_weights

    big = fs.SIMD_ALIGN_MIN_BYTES
    rng = np.random.default_rng(3)
    for nq in (1, 3, 17, 40):
        q = rng.standard_normal((nq, 256)).astype(np.float32)
        with _native._use(isa):
            made = [fs.nibble_luts(q, np.linspace(-1, 1, 4, dtype=np.float32), 2, 64)[1],
                    fs.rotated_luts(q, 1, np.linspace(-1, 1, 16, dtype=np.float32), 4, 128)[1],
                    fs.quantize_luts(rng.standard_normal((nq, 128, 16)).astype(np.float32))[0],
                    query_weights(q, 256)[0]]
        for a in made:
            assert a.flags.c_contiguous
            assert a.nbytes < big or a.ctypes.data % fs.SIMD_ALIGN == 0
    w = query_weights(q[:, :200], 256)[0]
    assert (w[:, 200:] == 0).all()  # the padding past d is zero


def test_native_turboquant_luts_raise_typed_errors():
    from vecindex_core._native.tables import tq_luts

    def call(rq, lv, bits, t, luts, bias, delta, additive=False):
        tq_luts(rq, lv, bits, t, luts, bias, delta, additive=additive, isa="portable")

    rq, lv = np.ones((2, 10), np.float32), np.ones(4, np.float32)
    t, luts = np.zeros((2, 6, 16), np.float32), np.zeros((2, 3, 32), np.uint8)
    bias, delta = np.zeros(2, np.float32), np.zeros(2, np.float32)
    call(rq, lv, 2, t, luts, bias, delta)
    assert (t[:, :5] == 2).all() and (t[:, 5] == 0).all()  # 10 coordinates, 12 places
    with pytest.raises(InvalidArgumentError, match="bits must be 1, 2 or 4, got 3"):
        call(rq, lv, 3, t, luts, bias, delta)
    with pytest.raises(InvalidArgumentError, match="additive tables need 2-bit codes, got bits=4"):
        call(rq, np.zeros(16, np.float32), 4, t, luts, bias, delta, additive=True)
    with pytest.raises(DimensionMismatchError, match="levels must have 16 entries, got 4"):
        call(rq, lv, 4, t, luts, bias, delta)
    with pytest.raises(DimensionMismatchError, match="d = 13"):
        call(np.ones((2, 13), np.float32), lv, 2, t, luts, bias, delta)
    with pytest.raises(DimensionMismatchError, match=r"\(2, 3, 32\)"):
        call(rq, lv, 2, t, np.zeros((2, 4, 32), np.uint8), bias, delta)
    with pytest.raises(InvalidDtypeError, match="x must be a float32"):
        call(rq.astype(np.float64), lv, 2, t, luts, bias, delta)
    with pytest.raises(InvalidArgumentError, match="share memory"):
        call(t.reshape(-1)[:20].reshape(2, 10), lv, 2, t, luts, bias, delta)
    with pytest.raises(InvalidArgumentError, match="share memory"):
        call(rq, lv, 2, t, luts, bias, bias)
    with pytest.raises(InvalidArgumentError, match="query range"):
        _native._ext.tq_luts(rq, lv, 2, False, t, luts, bias, delta, 0, 3,
                             _native._isa_id("portable"))
    # the rotation's arguments, checked as rotate checks them
    from vecindex_core._kernels.rotation import _transform

    signs, perms, p, norm = _transform(10, 0)
    rot = (signs, perms, p, float(norm))
    tq_luts(rq, lv, 2, t, luts, bias, delta, rotation=rot, isa="portable")
    with pytest.raises(InvalidArgumentError, match="needs signs and perms"):
        _native._ext.tq_luts(rq, lv, 2, False, t, luts, bias, delta, 0, 2,
                             _native._isa_id("portable"), signs)
    with pytest.raises(InvalidArgumentError, match="largest power of two <= dim = 10"):
        tq_luts(rq, lv, 2, t, luts, bias, delta, rotation=(signs, perms, 4, 0.5),
                isa="portable")
    with pytest.raises(DimensionMismatchError, match=r"signs must be \(rounds, 2, 10\)"):
        tq_luts(rq, lv, 2, t, luts, bias, delta, rotation=(signs[:, :, :8].copy(), perms, p,
                                                           0.5), isa="portable")
    bad = perms.copy()
    bad[0, 0] = 10
    with pytest.raises(InvalidArgumentError, match="got 10"):
        tq_luts(rq, lv, 2, t, luts, bias, delta, rotation=(signs, bad, p, 0.5),
                isa="portable")
    with pytest.raises(InvalidArgumentError, match="share memory"):  # tables over signs
        tq_luts(rq, lv, 2, t, luts, bias, delta, isa="portable",
                rotation=(t.reshape(-1)[: signs.size].reshape(signs.shape), perms, p, 0.5))


def test_native_tables_split_over_threads_equal_one_thread():
    rng = np.random.default_rng(13)
    q = rng.standard_normal((3000, 96)).astype(np.float32)
    books = rng.standard_normal((48, 16, 2)).astype(np.float32)
    before = get_num_threads()
    outs = []
    try:
        for n in (1, 3):
            set_num_threads(n)
            t = fs.pq_tables(q, books, l2=False, bits=4)
            outs.append([t, *fs.quantize_luts(t), *fs.nibble_luts(q, books[0, :4, 0], 2, 48)])
    finally:
        set_num_threads(before)
    for a, b in zip(*outs, strict=True):
        assert np.array_equal(a, b)


def test_native_table_kernels_raise_typed_errors():
    from vecindex_core._native import tables

    class nt:  # the portable path, whatever the active one is (also under VECINDEX_NATIVE=off)
        quantize_luts = functools.partial(tables.quantize_luts, isa="portable")
        pq_nibble = functools.partial(tables.pq_nibble, isa="portable")

    t = np.zeros((2, 4, 16), np.float32)
    luts, bias, delta = np.zeros((2, 2, 32), np.uint8), np.zeros(2, np.float32), np.zeros(
        2, np.float32)
    with pytest.raises(DimensionMismatchError, match="m even"):
        nt.quantize_luts(np.zeros((2, 3, 16), np.float32), luts, bias, delta)
    with pytest.raises(DimensionMismatchError, match=r"\(2, 2, 32\)"):
        nt.quantize_luts(t, np.zeros((2, 3, 32), np.uint8), bias, delta)
    with pytest.raises(InvalidDtypeError, match="tables"):
        nt.quantize_luts(t.astype(np.float64), luts, bias, delta)
    with pytest.raises(InvalidArgumentError, match="share memory"):
        nt.quantize_luts(t, luts, bias, bias)
    q, books = np.zeros((2, 10), np.float32), np.zeros((5, 2, 16), np.float32)
    out = np.zeros((2, 6, 16), np.float32)
    nt.pq_nibble(q, books, False, 4, out)
    with pytest.raises(DimensionMismatchError, match=r"\(2, 4, 16\)"):
        nt.pq_nibble(q, books, False, 4, np.zeros((2, 4, 16), np.float32))
    with pytest.raises(DimensionMismatchError, match="m \\* dsub"):
        nt.pq_nibble(np.zeros((2, 11), np.float32), books, False, 4, out)
    with pytest.raises(InvalidArgumentError, match="bits must be 1, 2 or 4, got 3"):
        nt.pq_nibble(q, books, False, 3, out)
    with pytest.raises(InvalidArgumentError, match="share memory"):
        nt.pq_nibble(out.reshape(-1)[:20].reshape(2, 10), books, False, 4, out)
    # with the quantization in the same call
    ql = (np.zeros((2, 3, 32), np.uint8), np.zeros(2, np.float32), np.zeros(2, np.float32))
    nt.pq_nibble(q, books, False, 4, out, quantized=ql)
    with pytest.raises(DimensionMismatchError, match=r"luts must be \(2, 3, 32\)"):
        nt.pq_nibble(q, books, False, 4, out, quantized=(luts, ql[1], ql[2]))
    with pytest.raises(InvalidArgumentError, match="share memory"):
        nt.pq_nibble(q, books, False, 4, out, quantized=(ql[0], ql[1], ql[1]))
    with pytest.raises(InvalidDtypeError, match="delta"):
        nt.pq_nibble(q, books, False, 4, out, quantized=(ql[0], ql[1], ql[2].astype(int)))
    # any buffer, not only ndarrays: a memoryview is filled the same way
    mv = np.zeros((2, 6, 16), np.float32)
    nt.pq_nibble(memoryview(np.ones((2, 10), np.float32)), np.ones((5, 2, 16), np.float32),
                 False, 4, memoryview(mv))
    assert (mv[:, :5] == 2).all() and (mv[:, 5] == 0).all()  # 5 sub-quantizers, 6 nibbles


@pytest.mark.parametrize("e", [-60, -110, -124, -140])
def test_quantize_luts_of_tiny_tables_keep_their_resolution(e):
    """Tables scaled by a power of two quantize to the same entries, down to subnormal
    spans (1 / delta overflowed to inf: every entry but the minimum became LUT_MAX)."""
    rng = np.random.default_rng(7)
    t = (rng.integers(-1024, 1025, (3, 8, 16)) / 256).astype(np.float32)  # exact when scaled
    t[2] = 0  # a flat query stays delta 1
    luts, bias, delta = fs.quantize_luts(t)
    st = t * np.float32(2.0 ** e)
    assert np.array_equal(st / np.float32(2.0 ** e), t)  # the scaling is exact
    sl, sb, sd = fs.quantize_luts(st)
    assert np.array_equal(sl, luts)
    assert sd[2] == 1 and sb[2] == 0
    assert (sd[:2] > 0).all()
    if e >= -124:
        assert np.allclose(sd[:2], delta[:2] * 2.0 ** e, rtol=1e-3, atol=0)
        assert np.allclose(sb[:2], bias[:2] * 2.0 ** e, rtol=1e-6, atol=0)


# --------------------------------------------------------------------------- reference vs native
def _case(rng, n, nb, nq, *, kind="random"):
    codes = rng.integers(0, 256, (n, nb), dtype=np.uint8)
    luts = rng.integers(0, fs.LUT_MAX + 1, (nq, nb, 32), dtype=np.uint8)
    if kind == "equal":  # every row the same code: all ties
        codes[:] = codes[:1] if n else codes
    elif kind == "extremes":  # table entries only 0 and LUT_MAX
        luts = np.where(rng.random(luts.shape) < 0.5, 0, fs.LUT_MAX).astype(np.uint8)
    elif kind == "max":  # every lookup LUT_MAX: the largest sums
        luts[:] = fs.LUT_MAX
    bias = rng.standard_normal(nq).astype(np.float32)
    delta = (rng.random(nq) + 0.01).astype(np.float32)
    return fs.pack_blocked(codes), luts, bias, delta


def _both(blocked, luts, bias, delta, n, k, isa, **kw):
    ref = fs.fastscan_topk_ref(luts, bias, delta, blocked, n, k, **kw)
    nat = lut_topk(luts, bias, delta, blocked, n, k, isa=isa, **kw)
    return ref, nat


def _assert_same(ref, nat):
    assert np.array_equal(ref[1], nat[1])
    assert np.array_equal(ref[0], nat[0])  # -inf padding compares equal


def _options(rng, n, nq, which):
    scale = (rng.random(n) * 2).astype(np.float32)
    if which == "plain":
        return {}
    if which == "scale":
        return {"scale": scale}
    return {"scale": scale, "sq_norms": rng.random(n).astype(np.float32),
            "q_sq_norms": rng.random(nq).astype(np.float32)}


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(("n", "nb"), [(1, 1), (31, 3), (32, 4), (33, 7), (200, 48),
                                       (257, 96), (100, 1100)])
@pytest.mark.parametrize("kind", ["random", "equal", "extremes", "max"])
def test_native_equals_reference(isa, n, nb, kind):
    rng = np.random.default_rng(n + nb)
    blocked, luts, bias, delta = _case(rng, n, nb, 5, kind=kind)
    for which in ("plain", "scale", "l2"):
        kw = _options(rng, n, 5, which)
        for k in (1, 10, n + 3):
            _assert_same(*_both(blocked, luts, bias, delta, n, k, isa, **kw))
    if kind == "max":  # the exact sum reaches the scores: nb * 2 * LUT_MAX per row
        _, (s, _) = _both(blocked, luts, bias, delta, n, 1, isa)
        expect = bias + delta * np.float32(nb * 2 * fs.LUT_MAX)
        assert np.array_equal(s[:, 0], expect.astype(np.float32))


def test_reference_equals_a_plain_numpy_sort():
    """The reference itself against the definition: integer sums of the two nibble tables of
    each code byte, ``bias + delta * sum`` in float32, best first with ties by lower slot."""
    rng = np.random.default_rng(12)
    n, nb, nq, k = 150, 9, 4, 12
    blocked, luts, bias, delta = _case(rng, n, nb, nq)
    codes = fs.unpack_blocked(blocked, n, nb).astype(np.int64)
    p = np.arange(nb)
    sums = (luts[:, p, codes & 15].astype(np.int64)
            + luts[:, p, 16 + (codes >> 4)].astype(np.int64)).sum(axis=2)  # (nq, n)
    scores = bias[:, None] + delta[:, None] * sums.astype(np.float32)
    got_s, got_i = fs.fastscan_topk_ref(luts, bias, delta, blocked, n, k)
    for q in range(nq):
        order = np.lexsort((np.arange(n), -scores[q]))[:k]
        assert np.array_equal(got_i[q], order)
        assert np.array_equal(got_s[q], scores[q, order])


@pytest.mark.parametrize("isa", ISAS)
def test_ties_go_to_the_lower_slot(isa):
    blocked = fs.pack_blocked(np.full((70, 2), 0x31, np.uint8))
    luts = np.full((2, 2, 32), 9, np.uint8)
    one = np.ones(2, np.float32)
    for path in (None, isa):
        if path is None:
            _, i = fs.fastscan_topk_ref(luts, one, one, blocked, 70, 5)
        else:
            _, i = lut_topk(luts, one, one, blocked, 70, 5, isa=path)
        assert np.array_equal(i, np.tile(np.arange(5), (2, 1)))


@pytest.mark.parametrize("isa", ISAS)
def test_masks_and_padding(isa):
    rng = np.random.default_rng(5)
    n, nb = 90, 6
    blocked, luts, bias, delta = _case(rng, n, nb, 3)
    none = np.zeros(n, bool)
    ref, nat = _both(blocked, luts, bias, delta, n, 4, isa, mask=none)
    _assert_same(ref, nat)
    assert (nat[1] == -1).all() and np.isneginf(nat[0]).all()
    one = none.copy()
    one[77] = True
    ref, nat = _both(blocked, luts, bias, delta, n, 4, isa, mask=one)
    _assert_same(ref, nat)
    assert (nat[1][:, 0] == 77).all() and (nat[1][:, 1:] == -1).all()
    some = rng.random(n) < 0.3
    _assert_same(*_both(blocked, luts, bias, delta, n, 7, isa, mask=some))
    # n = 0 and k = 0
    ref, nat = _both(fs.pack_blocked(np.zeros((0, nb), np.uint8)), luts, bias, delta, 0, 3, isa)
    _assert_same(ref, nat)
    assert (nat[1] == -1).all()
    ref, nat = _both(blocked, luts, bias, delta, n, 0, isa)
    assert nat[0].shape == (3, 0) == ref[0].shape


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("nq", [1, 2, 3, 5, 7, 13, 40, 70])
def test_query_batches_and_subgroups(isa, nq):
    rng = np.random.default_rng(nq)
    n, nb = 300, 24
    blocked, luts, bias, delta = _case(rng, n, nb, nq)
    ref = fs.fastscan_topk_ref(luts, bias, delta, blocked, n, 8)
    for sub in range(9):  # 5..8: the VNNI kernel's passes (other paths clamp to 4)
        _assert_same(ref, lut_topk(luts, bias, delta, blocked, n, 8, isa=isa, nqsub=sub))


@pytest.mark.parametrize("isa", ISAS)
def test_tail_block(isa):
    rng = np.random.default_rng(9)
    n, nb = 75, 5
    codes = rng.integers(0, 256, (n, nb), dtype=np.uint8)
    full = fs.pack_blocked(codes)
    main = fs.pack_blocked(codes[:64])
    tail = fs.pack_blocked(codes[64:])
    _, luts, bias, delta = _case(rng, 1, nb, 4)
    want = fs.fastscan_topk_ref(luts, bias, delta, full, n, n)
    _assert_same(want, fs.fastscan_topk_ref(luts, bias, delta, main, n, n, tail=tail))
    _assert_same(want, lut_topk(luts, bias, delta, main, n, n, tail=tail, isa=isa))


@pytest.mark.parametrize("isa", ISAS)
def test_results_do_not_depend_on_the_thread_count(isa):
    rng = np.random.default_rng(11)
    n, nb, nq = 16001, 192, 3
    # enough work for two threads (else run_split stays on one and nothing is merged)
    assert nq * n * nb * 2 >= 2 * MIN_ROWS_WORK_PER_THREAD
    codes = rng.integers(0, 4, (n, nb), dtype=np.uint8)
    codes[::7] = codes[0]  # many exact ties across the parts
    full = 32 * (n // 32)
    blocked, tail = fs.pack_blocked(codes[:full], capacity=full + 64), fs.pack_blocked(codes[full:])
    luts = rng.integers(0, 3, (nq, nb, 32), dtype=np.uint8)
    bias, delta = np.zeros(nq, np.float32), np.ones(nq, np.float32)
    mask = rng.random(n) < 0.9
    old = get_num_threads()
    for k in (1, 10, 300):
        for kw in ({}, {"mask": mask}):
            try:
                set_num_threads(1)
                one = lut_topk(luts, bias, delta, blocked, n, k, isa=isa, tail=tail, **kw)
                ref1 = fs.fastscan_topk_ref(luts, bias, delta, blocked, n, k, tail=tail, **kw)
                set_num_threads(2)  # 3 queries on 2 threads: rows are split and merged
                two = lut_topk(luts, bias, delta, blocked, n, k, isa=isa, tail=tail, **kw)
                ref2 = fs.fastscan_topk_ref(luts, bias, delta, blocked, n, k, tail=tail, **kw)
            finally:
                set_num_threads(old)
            for r in (two, ref1, ref2):
                _assert_same(one, r)
            # against a plain sort: score descending, ties by the lower slot
            c = codes.astype(np.int64)
            p = np.arange(nb)
            sums = (luts[:, p, c & 15].astype(np.int64) + luts[:, p, 16 + (c >> 4)]).sum(axis=2)
            allowed = kw.get("mask", np.ones(n, bool))
            for q in range(nq):
                rows = np.flatnonzero(allowed)
                want = rows[np.lexsort((rows, -sums[q, rows]))][:k]
                assert np.array_equal(one[1][q], want)


@pytest.mark.parametrize("isa", ISAS)
def test_two_threads_at_once(isa):
    rng = np.random.default_rng(12)
    n, nb = 3000, 48
    blocked, luts, bias, delta = _case(rng, n, nb, 6)
    want = fs.fastscan_topk_ref(luts, bias, delta, blocked, n, 10)

    def work() -> None:
        for _ in range(5):
            _assert_same(want, lut_topk(luts, bias, delta, blocked, n, 10, isa=isa))

    run_in_threads(work)


# --------------------------------------------------------------------------- errors
def test_bad_buffers_raise_typed_errors():
    rng = np.random.default_rng(3)
    blocked, luts, bias, delta = _case(rng, 40, 4, 2)
    ok = {"luts": luts, "bias": bias, "delta": delta, "codes": blocked}
    # the native wrapper on an explicit path (it also runs under VECINDEX_NATIVE=off)
    native = functools.partial(lut_topk, isa=ISAS[-1])
    for fn in (native, fs.fastscan_topk_ref):
        def call(fn=fn, n=40, k=3, **over):
            a = {**ok, **over}
            return fn(a["luts"], a["bias"], a["delta"], a["codes"], n, k,
                      **{kk: v for kk, v in over.items() if kk not in ok})
        with pytest.raises(InvalidDtypeError, match="luts"):
            call(luts=luts.astype(np.int16))
        with pytest.raises(InvalidDtypeError, match="bias"):
            call(bias=bias.astype(np.float64))
        with pytest.raises(InvalidArgumentError):
            call(luts=luts[:, :, :16])
        with pytest.raises(DimensionMismatchError):
            call(codes=blocked[:, :64])
        with pytest.raises(DimensionMismatchError):
            call(delta=delta[:1])
        with pytest.raises(InvalidArgumentError, match="n must be"):
            call(n=65)
        with pytest.raises(InvalidArgumentError, match="n must be"):
            call(n=1.5)
        with pytest.raises(InvalidArgumentError, match="k must be"):
            call(k=-1)
        with pytest.raises(DimensionMismatchError, match="scale"):
            call(scale=np.ones(10, np.float32))
        with pytest.raises(DimensionMismatchError, match="mask"):
            call(mask=np.ones(10, bool))
        with pytest.raises(InvalidDtypeError, match="mask"):
            call(mask=np.ones(40, np.uint8))
        with pytest.raises(InvalidArgumentError, match="together"):
            call(sq_norms=np.ones(40, np.float32))
        with pytest.raises(DimensionMismatchError, match="tail"):
            call(tail=np.zeros((1, 32), np.uint8))
        # strided buffers: both paths refuse them (the reference used to accept them)
        with pytest.raises(InvalidArgumentError, match="luts must be C-contiguous"):
            call(luts=np.repeat(luts, 2, axis=0)[::2])
        with pytest.raises(InvalidArgumentError, match="bias must be C-contiguous"):
            call(bias=np.repeat(bias, 2)[::2])
        with pytest.raises(InvalidArgumentError, match="mask must be C-contiguous"):
            call(mask=np.ones(80, bool)[::2])
        with pytest.raises(InvalidArgumentError, match="scale must be C-contiguous"):
            call(scale=np.ones(80, np.float32)[::2])
    for bad in (-1, 9, 1.5, True):
        with pytest.raises(InvalidArgumentError, match="nqsub"):
            native(luts, bias, delta, blocked, 40, 3, nqsub=bad)
    with pytest.raises(InvalidArgumentError, match="not usable"), _native._use("no-such"):
        pass


def test_the_extension_checks_what_the_wrapper_does_not():
    rng = np.random.default_rng(4)
    blocked, luts, bias, delta = _case(rng, 40, 4, 2)
    ext, isa = _native._ext, _native._isa_id("portable")
    out_s, out_i = np.empty((2, 3), np.float32), np.empty((2, 3), np.int64)

    def call(**over):
        a = {"luts": luts, "codes": blocked, "n": 40, "q0": 0, "q1": 2, "r0": 0, "r1": 40,
             "out_s": out_s, "out_i": out_i, "isa": isa, **over}
        ext.lut_topk(a["luts"], bias, delta, None, a["codes"], None, a["n"], None, None, None, 3,
                     a["q0"], a["q1"], a["r0"], a["r1"], a["out_s"], a["out_i"], a["isa"], 0)

    call()
    with pytest.raises(InvalidArgumentError, match="row range"):
        call(r0=5)
    with pytest.raises(InvalidArgumentError, match="row range"):
        call(r1=41)
    with pytest.raises(InvalidArgumentError, match="query range"):
        call(q1=3)
    with pytest.raises(InvalidArgumentError, match="C-contiguous"):
        call(luts=luts[:, ::2])
    with pytest.raises(InvalidArgumentError, match="writable"):
        ro = out_s.copy()
        ro.flags.writeable = False
        call(out_s=ro)
    with pytest.raises(DimensionMismatchError, match="out_s"):
        call(out_s=np.empty((2, 4), np.float32))
    with pytest.raises(InvalidDtypeError, match="out_i"):
        call(out_i=np.empty((2, 3), np.int32))
    with pytest.raises(InvalidArgumentError, match="path"):
        call(isa=99)


# --------------------------------------------------------------------------- dot mode
def _dot_case(rng, n, nb, nq, *, kind="random"):
    """Blocked codes, int8 weights, zero bias, delta and uint8 levels of the dot mode."""
    codes = rng.integers(0, 256, (n, nb), dtype=np.uint8)
    levels, cs = fs.dot_levels(np.sort(rng.standard_normal(16)).astype(np.float32))
    w, delta = fs.dot_weights(rng.standard_normal((nq, 2 * nb - nb % 2)), nb, cs)
    if kind == "extremes":  # weights and levels only at the int8 ends
        w[:] = np.where(rng.random(w.shape) < 0.5, -127, 127)
        levels = np.where(rng.random(16) < 0.5, 1, 255).astype(np.uint8)
    elif kind in ("max", "min"):  # every product +-127 * 127: the largest sums
        w[:] = 127 if kind == "max" else -127
        levels[:] = 255
    return fs.pack_blocked(codes), w, np.zeros(nq, np.float32), delta, levels


def _dot_both(blocked, w, bias, delta, levels, n, k, isa, **kw):
    ref = fs.fastscan_topk_ref(w, bias, delta, blocked, n, k, levels=levels, **kw)
    nat = lut_topk(w, bias, delta, blocked, n, k, levels=levels, isa=isa, **kw)
    return ref, nat


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(("n", "nb"), [(1, 1), (31, 3), (32, 4), (33, 7), (200, 48),
                                       (257, 96), (100, 1100)])
@pytest.mark.parametrize("kind", ["random", "extremes", "max", "min"])
def test_dot_mode_native_equals_reference(isa, n, nb, kind):
    rng = np.random.default_rng(n * 3 + nb)
    blocked, w, bias, delta, levels = _dot_case(rng, n, nb, 11, kind=kind)
    for which in ("plain", "scale", "l2"):
        kw = _options(rng, n, 11, which)
        for k in (1, 10, n + 3):
            _assert_same(*_dot_both(blocked, w, bias, delta, levels, n, k, isa, **kw))
    want = fs.fastscan_topk_ref(w, bias, delta, blocked, n, 5, levels=levels)
    for sub in range(9):  # queries a pass: 11 queries give passes of every width 1..8
        _assert_same(want, lut_topk(w, bias, delta, blocked, n, 5, levels=levels, isa=isa,
                                    nqsub=sub))
    if kind in ("max", "min"):  # the exact signed sum reaches the scores
        _, (s, _) = _dot_both(blocked, w, bias, delta, levels, n, 1, isa)
        total = np.float32((1 if kind == "max" else -1) * 2 * nb * 127 * 127)
        assert np.array_equal(s[:, 0], delta * total)


def test_dot_mode_reference_is_the_definition():
    """``sum_t (levels[code_t] - 128) * w_t`` exactly, scored ``delta * S``, best first with
    ties by the lower slot; sub-code ``2p`` is the low nibble of code byte ``p``."""
    rng = np.random.default_rng(21)
    n, nb, nq, k = 300, 6, 4, 9
    blocked, w, bias, delta, levels = _dot_case(rng, n, nb, nq)
    codes = fs.unpack_blocked(blocked, n, nb)
    sub = np.empty((n, 2 * nb), np.int64)
    sub[:, 0::2], sub[:, 1::2] = codes & 15, codes >> 4
    lv = levels.astype(np.int64) - 128
    total = (lv[sub][None] * w[:, None, :].astype(np.int64)).sum(-1)
    score = delta[:, None] * total.astype(np.float32)
    order = np.lexsort((np.broadcast_to(np.arange(n), score.shape), -score), axis=1)[:, :k]
    s, i = fs.fastscan_topk_ref(w, bias, delta, blocked, n, k, levels=levels)
    assert np.array_equal(i, order)
    assert np.array_equal(s, np.take_along_axis(score, order, axis=1))


@pytest.mark.parametrize("isa", ISAS)
def test_dot_mode_masks_and_tail(isa):
    rng = np.random.default_rng(22)
    n, nb = 75, 5
    codes = rng.integers(0, 256, (n, nb), dtype=np.uint8)
    _, w, bias, delta, levels = _dot_case(rng, 1, nb, 6)
    full, main, tail = (fs.pack_blocked(codes), fs.pack_blocked(codes[:64]),
                        fs.pack_blocked(codes[64:]))
    want = fs.fastscan_topk_ref(w, bias, delta, full, n, n, levels=levels)
    _assert_same(want, lut_topk(w, bias, delta, main, n, n, tail=tail, levels=levels, isa=isa))
    mask = rng.random(n) < 0.3
    _assert_same(*_dot_both(full, w, bias, delta, levels, n, 7, isa, mask=mask))
    _, (_, i) = _dot_both(full, w, bias, delta, levels, n, n, isa, mask=mask)
    assert set(i[0][i[0] >= 0]) == set(np.flatnonzero(mask))


def test_dot_levels_and_weights():
    book = np.linspace(-0.3, 0.2, 16, dtype=np.float32)
    levels, cs = fs.dot_levels(book)
    assert levels.dtype == np.uint8 and cs == pytest.approx(0.3 / 127)
    assert levels.min() >= 1 and levels[0] == 1  # -127 + 128
    assert np.abs((levels.astype(np.float64) - 128) * cs - book).max() <= cs / 2 + 1e-9
    zero_levels, zero_cs = fs.dot_levels(np.zeros(16))
    assert zero_cs == 1.0 and (zero_levels == 128).all()
    with pytest.raises(ValueError, match="16 finite"):
        fs.dot_levels(np.full(16, np.nan))
    rq = np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0]], np.float32)
    w, delta = fs.dot_weights(rq, 2, cs)
    assert w.dtype == np.int8 and w.shape == (2, 4)
    assert w[0].tolist() == [64, -127, 32, 0] and (w[1] == 0).all()
    assert delta.dtype == np.float32
    assert delta[0] == np.float32(cs * 1.0 / 127) and delta[1] == np.float32(cs)
    with pytest.raises(ValueError, match="do not fit"):
        fs.dot_weights(np.zeros((1, 5)), 2, cs)
    # a non-finite query: zero weights, NaN delta; tiny ones: delta not a normal float32
    w, delta = fs.dot_weights(np.array([[np.inf, 1.0], [1e-40, 0.0]]), 1, cs)
    assert (w == 0).sum() == 3 and np.isnan(delta[0]) and delta[1] < np.finfo(np.float32).tiny
    assert not fs.dot_usable(delta[:1]) and not fs.dot_usable(delta[1:])
    assert fs.dot_usable(fs.dot_weights(rq[:1], 2, cs)[1])


def test_dot_weights_are_their_definition():
    """``round(rq / qs)`` with ``qs = max |rq| / 127`` in float64, clipped; ``delta = cs *
    qs``; a query with a non-finite entry all zeros and NaN."""
    rng = np.random.default_rng(24)
    rq = (rng.standard_normal((40, 13)) * rng.choice([1e-30, 1e-3, 1, 1e30], (40, 1))
          ).astype(np.float32)
    rq[3] = 0.0
    rq[4, :5] = -0.0
    rq[5, 2], rq[6, 7], rq[7, 0] = np.nan, np.inf, -np.inf
    rq[8] = np.float32(2.0 ** -140)  # subnormal
    rq[9, ::2] = rq[9, 1]  # ties of |rq|: the halfway points of rint included
    cs = 0.37 / 127
    r = rq.astype(np.float64)
    top = np.max(np.abs(r), axis=1)
    finite = np.isfinite(top)
    qs = np.where(finite & (top > 0), top / 127, 1.0)
    want = np.zeros((40, 16), np.int8)
    want[finite, :13] = np.clip(np.rint(r[finite] / qs[finite, None]), -127, 127)
    w, delta = fs.dot_weights(rq, 8, cs)
    assert np.array_equal(w, want)
    want_delta = np.where(finite, cs * qs, np.nan).astype(np.float32)
    assert np.array_equal(delta, want_delta, equal_nan=True)
    assert np.isnan(delta[5:8]).all() and (w[5:8] == 0).all()


@pytest.mark.parametrize("d", [8, 13, 384])
@pytest.mark.parametrize("l2", [False, True])
def test_rescore_of_products_equals_the_built_tables(d, l2):
    """The dot route's rescore computes each 4-bit table entry when read: the same float32
    values as :func:`nibble_tables`, so the same estimates, bit for bit."""
    rng = np.random.default_rng(d)
    n, nq, nb = 77, 5, codes_nbytes(d, 4)
    book = np.sort(rng.standard_normal(16)).astype(np.float32)
    rq = rng.standard_normal((nq, d)).astype(np.float32)
    rq[1, :3] = [np.inf, -0.0, 1e-42]
    blocked = fs.pack_blocked(pack_codes(rng.integers(0, 16, (n, d)).astype(np.uint8), 4))
    cand = rng.integers(-1, n, (nq, 9))
    kw = {"scale": rng.random(n).astype(np.float32)}
    if l2:
        kw |= {"sq_norms": rng.random(n).astype(np.float32),
               "q_sq_norms": rng.random(nq).astype(np.float32)}
    want = fs.rescore_shortlist(fs.nibble_tables(rq, book, 4, nb), blocked, cand, 6, **kw)
    got = fs.rescore_shortlist(fs.Products(rq, book, nb), blocked, cand, 6, **kw)
    for a, b in zip(want, got, strict=True):
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


def _search_cases():
    """Arguments of :func:`fs.fastscan_search` over its options: 1/2/4-bit codes, float
    tables or 4-bit products, a tail block, scale, l2, a mask, ties, NaN and infinite
    queries, k above and below the shortlist."""
    rng = np.random.default_rng(31)
    for case in range(30):
        bits = (1, 2, 4)[case % 3]
        d = int(rng.integers(1, 70))
        nb = codes_nbytes(d, bits)
        n, nq = int(rng.integers(1, 150)), int(rng.integers(1, 6))
        codes = pack_codes(rng.integers(0, 1 << bits, (n, d)).astype(np.uint8), bits)
        if case % 4 == 0:
            codes[::3] = codes[0]  # tied estimates
        book = np.sort(rng.standard_normal(1 << bits)).astype(np.float32)
        rq = rng.standard_normal((nq, d)).astype(np.float32)
        if case % 6 == 5:
            rq[0, 0] = (np.nan, np.inf)[case % 2]
        if case % 4 == 2:  # entries of magnitudes 2**-40 .. 2**40
            rq *= np.exp2(rng.integers(-40, 41, d)).astype(np.float32)
        tables = fs.nibble_tables(rq, book, bits, nb)
        rescore_by = fs.Products(rq, book, nb) if bits == 4 and case % 2 else tables
        luts, bias, delta = fs.quantize_luts(tables)
        full = 32 * (n // 32)
        kw = {}
        if case % 3 == 1 and full < n:
            blocked = fs.pack_blocked(codes[:full], capacity=full + 64)
            kw["tail"] = fs.pack_blocked(codes[full:])
        else:
            blocked = fs.pack_blocked(codes)
        if case % 5 == 0:
            kw["scale"] = rng.random(n).astype(np.float32)
        if case % 2:
            kw |= {"sq_norms": rng.random(n).astype(np.float32),
                   "q_sq_norms": rng.random(nq).astype(np.float32)}
        if case % 7 == 3:
            kw["mask"] = rng.random(n) < 0.7
        size, k = int(rng.integers(1, 30)), int(rng.integers(0, 12))
        yield (luts, bias, delta, blocked, n, size, k, rescore_by), kw


@pytest.mark.parametrize("isa", ISAS)
def test_fused_rescore_equals_the_two_steps(isa, monkeypatch):
    """On the native paths the shortlist is rescored in the scan's own call: the same
    scores, slots and counts as the reference's two steps, bit for bit."""
    for args, kw in _search_cases():
        luts, bias, delta, blocked, n, size, k, tables = args
        with _native._use(None):
            want = fs.fastscan_search(*args, **kw)
        short = lut_topk(luts, bias, delta, blocked, n, size, isa=isa, **kw)[1]
        two = fs.rescore_shortlist(tables, blocked, short, k, n=n,
                                   **{a: b for a, b in kw.items() if a != "mask"})
        with monkeypatch.context() as m, _native._use(isa):
            m.setattr(fs, "rescore_shortlist", None)  # fused: the second step is not called
            got = fs.fastscan_search(*args, **kw)
        for a, b, c in zip(want, got, two, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert np.array_equal(a.view(np.uint8), b.view(np.uint8))
            assert np.array_equal(a.view(np.uint8), c.view(np.uint8))


def test_fused_rescore_falls_back_when_the_rows_are_split(monkeypatch):
    import vecindex_core._native.lut as nl

    args, kw = next(c for c in _search_cases()  # few queries, many rows: rows are split
                    if c[0][0].shape[0] <= 3 and c[0][4] > 64 and c[0][6] > 0)
    with _native._use(None):
        want = fs.fastscan_search(*args, **kw)
    old = get_num_threads()
    try:
        set_num_threads(2)
        monkeypatch.setattr(nl, "MIN_WORK_PER_THREAD", 1)
        monkeypatch.setattr(nl, "MIN_ROWS_WORK_PER_THREAD", 1)
        assert nl.lut_search(*args[:7], isa="portable") is None
        with _native._use("portable"):
            got = fs.fastscan_search(*args, **kw)
    finally:
        set_num_threads(old)
    for a, b in zip(want, got, strict=True):
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


def test_fused_rescore_with_the_queries_split_over_threads(monkeypatch):
    """Queries split over threads keep the rescore in the scan's call (the rows are not
    split): the same results as one thread."""
    import vecindex_core._native.lut as nl

    rng = np.random.default_rng(34)
    n, nb, nq = 300, 12, 9
    blocked = fs.pack_blocked(rng.integers(0, 256, (n, nb), dtype=np.uint8))
    tables = rng.standard_normal((nq, 2 * nb, 16)).astype(np.float32)
    luts, bias, delta = fs.quantize_luts(tables)
    args = (luts, bias, delta, blocked, n, 20, 10)
    one = nl.lut_search(*args, rtables=tables, isa="portable")
    old = get_num_threads()
    try:
        set_num_threads(2)
        monkeypatch.setattr(nl, "MIN_WORK_PER_THREAD", 1)
        two = nl.lut_search(*args, rtables=tables, isa="portable")
    finally:
        set_num_threads(old)
    assert one is not None and two is not None
    with _native._use(None):
        want = fs.fastscan_search(*args, tables)
    for a, b, c in zip(one, two, want, strict=True):
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8))
        assert np.array_equal(a.view(np.uint8), c.view(np.uint8))


def test_fused_rescore_raises_typed_errors():
    rng = np.random.default_rng(33)
    n, nb, nq = 40, 4, 2
    blocked = fs.pack_blocked(rng.integers(0, 256, (n, nb), dtype=np.uint8))
    luts = rng.integers(0, 100, (nq, nb, 32), dtype=np.uint8)
    bias, delta = np.zeros(nq, np.float32), np.ones(nq, np.float32)
    tables = rng.standard_normal((nq, 2 * nb, 16)).astype(np.float32)
    out_s, out_i = np.empty((nq, 5), np.float32), np.empty((nq, 5), np.int64)
    fin = [np.empty((nq, 3), np.float32), np.empty((nq, 3), np.int64), np.empty(nq, np.int64)]
    portable = _native._isa_id("portable")

    def call(r0=0, r1=n, k=5, rt=tables, rqs=None, rlv=None, fin=fin, out=out_s):
        _native._ext.lut_topk(luts, bias, delta, None, blocked, None, n, None, None, None, k,
                              0, nq, r0, r1, out[:, :k], out_i[:, :k], portable, 0, None,
                              rt, rqs, rlv, *fin)

    call()
    assert fin[2].tolist() == [3, 3] and (fin[1] >= 0).all()
    with pytest.raises(InvalidArgumentError, match="needs rtables, or rqs with rlv"):
        call(fin=[fin[0], fin[1], None])
    with pytest.raises(InvalidArgumentError, match="needs rtables, or rqs with rlv"):
        call(rqs=np.zeros((nq, 2 * nb), np.float32))
    with pytest.raises(DimensionMismatchError, match=r"rtables must be \(2, 8, 16\)"):
        call(rt=np.ascontiguousarray(tables[:, :6]))
    with pytest.raises(DimensionMismatchError, match="fin_n"):
        call(fin=[fin[0], np.empty((nq, 2), np.int64), fin[2]])
    with pytest.raises(InvalidArgumentError, match=r"every row \(r0 = 0, r1 = n = 40\)"):
        call(r1=32)
    with pytest.raises(InvalidArgumentError, match="k >= 1"):
        call(k=0)
    with pytest.raises(InvalidArgumentError, match="share memory"):
        call(fin=[out_s.reshape(-1)[:6].reshape(2, 3), fin[1], fin[2]])
    mine = tables.copy()  # the scan's scores written over the rescore's tables
    with pytest.raises(InvalidArgumentError, match="nor out_s and out_i with the rescore"):
        call(rt=mine, out=mine.reshape(-1)[:10].reshape(2, 5))
    assert np.array_equal(mine, tables)
    with pytest.raises(InvalidDtypeError, match="fin_i"):
        call(fin=[fin[0], fin[1].astype(np.int32), fin[2]])


def test_dot_mode_raises_typed_errors():
    rng = np.random.default_rng(23)
    blocked, w, bias, delta, levels = _dot_case(rng, 40, 4, 2)
    for f in (fs.fastscan_topk_ref, functools.partial(lut_topk, isa="portable")):
        with pytest.raises(InvalidDtypeError, match="weights"):
            f(w.view(np.uint8), bias, delta, blocked, 40, 3, levels=levels)
        with pytest.raises(InvalidDtypeError, match="levels"):
            f(w, bias, delta, blocked, 40, 3, levels=levels.astype(np.int16))
        with pytest.raises(DimensionMismatchError, match="levels"):
            f(w, bias, delta, blocked, 40, 3, levels=levels[:15])
        with pytest.raises(DimensionMismatchError, match="weights"):
            f(w[:, :6], bias, delta, blocked, 40, 3, levels=levels)
    with pytest.raises(InvalidArgumentError, match="nqsub"):
        lut_topk(w, bias, delta, blocked, 40, 3, levels=levels, isa="portable", nqsub=9)
    with pytest.raises(InvalidArgumentError, match="codes must have 1 to"):
        ext_dot = functools.partial(lut_topk, isa="portable", levels=levels)
        ext_dot(w[:, :0], bias, delta, blocked[:, :0], 0, 3)
    ext, isa = _native._ext, _native._isa_id("portable")
    out_s, out_i = np.empty((2, 3), np.float32), np.empty((2, 3), np.int64)

    def call(weights, lv):  # the extension checks the dot mode's shapes itself
        ext.lut_topk(weights, bias, delta, None, blocked, None, 40, None, None, None, 3, 0, 2,
                     0, 40, out_s, out_i, isa, 0, lv)

    call(w.view(np.uint8), levels)
    with pytest.raises(DimensionMismatchError, match="levels"):
        call(w.view(np.uint8), levels[:15])
    with pytest.raises(DimensionMismatchError, match="weights"):
        call(w.view(np.uint8)[:, :7].copy(), levels)


# --------------------------------------------------------------------------- turboquant
@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((700, 48)).astype(np.float32)
    q = rng.standard_normal((9, 48)).astype(np.float32)
    return x, q


@pytest.mark.parametrize("bits", [1, 2, 4])
@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_turboquant_is_the_same_on_every_path(data, bits, metric):
    x, q = data
    index = TurboQuantIndex(48, metric, bits=bits)
    index.add(x[:301])
    index.add(x[301:])
    mask = np.random.default_rng(1).random(index.ntotal) < 0.5
    rare = np.zeros(index.ntotal, bool)
    rare[[3, 650, 699]] = True  # a gathered subset (below GATHER_FRACTION)
    with _native._use(None):
        want = [index.search(q, 10), index.search(q, 10, mask=mask),
                index.search(q, 10, mask=rare), index.search(q[:1], 800)]
    for isa in ISAS:
        with _native._use(isa):
            got = [index.search(q, 10), index.search(q, 10, mask=mask),
                   index.search(q, 10, mask=rare), index.search(q[:1], 800)]
        for w, g in zip(want, got, strict=True):
            assert np.array_equal(w.ids, g.ids) and np.array_equal(w.scores, g.scores)
    assert set(got[2].ids[0][:3]) == {3, 650, 699} and (got[2].ids[:, 3:] == -1).all()
    assert got[3].counts[0] == 700


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_turboquant_4bit_routes_are_the_same_on_every_path(data, metric, monkeypatch):
    """Both 4-bit routes, whatever this CPU would pick (``dot_cpu``): each is taken when
    forced, gives the same results on every path, and the two give the same ids almost
    everywhere (both shortlists are rescored by the float estimate)."""
    import vecindex_core._kernels.blocked as bl
    import vecindex_core.turboquant as tq

    scan, modes = bl.fastscan_search, []

    def spy(*args, **kw):
        modes.append(kw.get("levels") is not None)
        return scan(*args, **kw)

    monkeypatch.setattr(bl, "fastscan_search", spy)
    x, q = data
    index = TurboQuantIndex(48, metric, bits=4)
    index.add(x)
    got = {}
    for forced in (True, False):
        monkeypatch.setattr(tq, "dot_cpu", lambda forced=forced: forced)
        modes.clear()
        with _native._use(None):
            want = index.search(q, 10)
        for isa in ISAS:
            with _native._use(isa):
                r = index.search(q, 10)
            assert np.array_equal(want.ids, r.ids) and np.array_equal(want.scores, r.scores)
        assert modes and all(m == forced for m in modes)
        got[forced] = want.ids
    assert np.mean(got[True] == got[False]) >= 0.9


@pytest.mark.parametrize("bits", [2, 4])
def test_turboquant_tiny_queries_rank_as_their_normal_sized_copies(data, bits):
    x, q = data
    index = TurboQuantIndex(48, "ip", bits=bits)
    index.add(x)
    want = index.search(q, 10).ids
    for e in (-100, -124):  # -124: every table span is subnormal / 127
        got = index.search(q * np.float32(2.0 ** e), 10).ids
        same = np.mean([len(set(w) & set(g)) for w, g in zip(want, got, strict=True)]) / 10
        assert same >= 0.9, (e, same)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_turboquant_storage_add_remove_save_load(data, tmp_path, bits):
    x, q = data
    index = TurboQuantIndex(48, "l2", bits=bits)
    for a, b in ((0, 5), (5, 40), (40, 333), (333, 700)):  # blocks fill across adds
        index.add(x[a:b])
    codes, _, _ = index.encode(x)
    assert np.array_equal(index.codes, codes)
    moves = index.remove([0, 31, 32, 100, 699, 650])
    order = np.arange(700)
    order[moves.dst] = order[moves.src]
    keep = order[:694]
    assert np.array_equal(index.codes, codes[keep])
    fresh = TurboQuantIndex(48, "l2", bits=bits)
    fresh.add(x[keep])
    assert np.array_equal(index.decode([5, 600, 693]), fresh.decode([5, 600, 693]))
    r1, r2 = index.search(q, 10), fresh.search(q, 10)
    assert np.array_equal(r1.ids, r2.ids) and np.array_equal(r1.scores, r2.scores)
    path = tmp_path / "tq.vidx"
    index.save(path)
    back = vc.load(path)
    back = back.index if hasattr(back, "index") else back
    assert np.array_equal(back.codes, index.codes)
    r3 = back.search(q, 10)
    assert np.array_equal(r1.ids, r3.ids) and np.array_equal(r1.scores, r3.scores)
    while index.ntotal:  # down to empty, through every partial block
        index.remove(np.arange(min(37, index.ntotal)))
        assert np.array_equal(index.codes.shape, (index.ntotal, index.nbytes))
    assert (index.search(q, 3).ids == -1).all()


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_turboquant_memory_is_codes_scales_and_model(data, bits):
    x, _ = data
    index = TurboQuantIndex(48, "ip", bits=bits)
    fixed = index.memory_bytes()
    index.add(x)  # capacity == rows: complete blocks plus a row-major partial block
    assert index.memory_bytes() == fixed + 700 * (codes_nbytes(48, bits) + 4)


def test_native_off_in_a_subprocess_gives_the_same_results(tmp_path):
    script = """
import json, sys
import numpy as np
from vecindex_core import _native
from vecindex_core.turboquant import TurboQuantIndex
rng = np.random.default_rng(0)
x = rng.standard_normal((500, 40)).astype(np.float32)
q = rng.standard_normal((6, 40)).astype(np.float32)
out = {"isa": _native.active_isa(), "res": {}}
for bits in (1, 2, 4):
    for metric in ("ip", "l2"):
        idx = TurboQuantIndex(40, metric, bits=bits)
        idx.add(x)
        r = idx.search(q, 10, mask=np.arange(500) % 3 != 0)
        out["res"][f"{bits}-{metric}"] = [r.ids.tolist(), r.scores.tolist()]
print(json.dumps(out))
"""
    runs = {}
    for mode in ("off", "auto"):
        env = {**os.environ, "VECINDEX_NATIVE": mode}
        p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, check=True, cwd=ROOT)
        runs[mode] = json.loads(p.stdout)
    assert runs["off"]["isa"] is None and runs["auto"]["isa"] is not None
    assert runs["off"]["res"] == runs["auto"]["res"]
