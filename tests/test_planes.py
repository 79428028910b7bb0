"""The bit-plane layout and staged search of 2- and 4-bit turboquant codes: the layout
round trip, the level model, every native path of the rank and rescore steps bit for bit
against the numba references, the sign pass's seed, and the index on top of it (layout
switches, persistence, masks, metrics, results equal to the reference path)."""

from __future__ import annotations

import numpy as np
import pytest

import vecindex_core.turboquant as tqmod
from vecindex_core import _native
from vecindex_core._kernels import fastscan as fs
from vecindex_core._kernels import planes as P
from vecindex_core._kernels.blocked import BlockedCodes, fast_topk
from vecindex_core._kernels.codes import codes_nbytes, pack_codes
from vecindex_core._kernels.rotation import lloyd_max_codebook
from vecindex_core._native import lut as L
from vecindex_core.errors import (
    DimensionMismatchError,
    InvalidArgumentError,
    InvalidDtypeError,
)
from vecindex_core.turboquant import TurboQuantIndex

ISAS = list(_native._usable())
NATIVE = _native.active_isa() is not None


def _codes(rng: np.random.Generator, n: int, d: int, bits: int) -> np.ndarray:
    return pack_codes(rng.integers(0, 1 << bits, (n, d)).astype(np.uint8), bits)


# --------------------------------------------------------------------------- layout
@pytest.mark.parametrize("bits", P.PLANE_BITS)
@pytest.mark.parametrize("d", [1, 7, 8, 33, 100, 384])
@pytest.mark.parametrize("n", [0, 1, 31, 33, 70])
def test_split_merge_round_trip(bits, d, n):
    rng = np.random.default_rng(d * 100 + n + bits)
    rows = _codes(rng, n, d, bits)
    sign, low = P.split_planes(rows, bits, d)
    nb1 = (d + 7) // 8
    assert sign.shape == (n, nb1) and low.shape == (n, (bits - 1) * nb1)
    assert np.array_equal(P.merge_planes(sign, low, bits, d), rows)
    if n:  # the sign plane is the codes' top bits, packed as 1-bit codes
        codes = np.stack([[(int(r[j * bits // 8]) >> (j * bits % 8)) & ((1 << bits) - 1)
                           for j in range(d)] for r in rows]).astype(np.uint8)
        assert np.array_equal(sign, pack_codes(codes >> (bits - 1), 1))
        assert np.array_equal(low[:, :nb1], pack_codes(codes & 1, 1))


@pytest.mark.parametrize("bits", P.PLANE_BITS)
def test_store_mirrors_the_blocked_store(bits):
    rng = np.random.default_rng(bits)
    d = 40
    a, b = P.PlaneCodes(d, bits), BlockedCodes(codes_nbytes(d, bits))
    rows = _codes(rng, 200, d, bits)
    for lo, hi in ((0, 5), (5, 70), (70, 200)):
        a.append(rows[lo:hi])
        b.append(rows[lo:hi])
        assert len(a) == len(b) and np.array_equal(a.to_rows(), b.to_rows())
    src, dst = np.array([199, 198, 150], np.int64), np.array([3, 40, 150], np.int64)
    a.compact(src, dst, 197)
    b.compact(src, dst, 197)
    assert np.array_equal(a.to_rows(), b.to_rows())
    slots = rng.permutation(197)[:50].astype(np.int64)
    assert np.array_equal(a.get_rows(slots), b.get_rows(slots))
    sub = a.subset(slots)
    assert isinstance(sub, BlockedCodes) and np.array_equal(sub.to_rows(), b.get_rows(slots))
    assert a.memory_bytes() >= a.low.nbytes + a.sign.memory_bytes()
    codes, sl = a.sample()
    assert codes.shape == (min(P.SAMPLE_BLOCKS, 197 // 32), 32 * a.nb1)
    assert np.array_equal(fs.unpack_blocked(codes, sl.size, a.nb1), a.sign.get_rows(sl))
    a.append(rows[:3])  # the sample is rebuilt after a change
    assert a.sample()[1].size == min(P.SAMPLE_BLOCKS, 200 // 32) * 32


def test_level_model():
    for d in (64, 384):
        c2 = lloyd_max_codebook(d, 2).astype(np.float64)
        alpha, beta = P.plane_model(c2, d)
        assert alpha == pytest.approx((c2[3] + c2[2]) / 2, rel=1e-9)
        assert beta == pytest.approx([(c2[3] - c2[2]) / 2], rel=1e-9)
        c4 = lloyd_max_codebook(d, 4).astype(np.float64)
        alpha, beta = P.plane_model(c4, d)
        assert beta.shape == (3,) and alpha > 0 and (np.diff(beta) > 0).all()
        c = np.arange(16)
        model = alpha * (2 * (c >> 3) - 1) + sum(
            beta[j] * (2 * ((c >> j) & 1) - 1) for j in range(3))
        assert np.max(np.abs(model - c4)) < 0.25 * np.max(np.abs(c4))


def test_sizes():
    assert P.sign_shortlist(10, 10**6) == 256 and P.sign_shortlist(100, 10**6) == 2000
    assert P.sign_shortlist(10, 100) == 100
    assert P.rank_size(10, 4, 10**6) == 24 and P.rank_size(10, 2, 10**6) == 20
    assert P.rank_size(100, 4, 50) == 50
    for size, sample, n in ((256, 2048, 200_000), (2000, 2048, 40_000), (10, 64, 10**7)):
        r = P.seed_rank(size, sample, n)
        assert 6 <= r <= sample and r >= size * sample / n


# --------------------------------------------------------------------------- rank / rescore
def _rank_case(rng, bits, d, n, l2, scaled=True):
    codebook = lloyd_max_codebook(d, bits)
    st = P.PlaneCodes.from_rows(_codes(rng, n, d, bits), d, bits)
    nq, S = 6, min(n, 50)
    rq = rng.standard_normal((nq, d)).astype(np.float32)
    rq[5] = 0  # a zero query: weights 0, unit 0
    cand = np.stack([rng.choice(n, S, replace=False) for _ in range(nq)]).astype(np.int64)
    cand[0, :4] = -1
    s1 = rng.standard_normal((nq, S)).astype(np.float32)
    s1[1, 2:8] = s1[1, 1]  # ties
    s1[2, 3] = np.nan
    scale = (rng.random(n).astype(np.float32) + 0.5) if scaled else None
    _, beta = P.plane_model(codebook, d)
    w, ws, u = P.query_weights(rq, -(-d // 64) * 64)
    return st, codebook, rq, cand, s1, scale, beta, w, ws, u


@pytest.mark.parametrize("bits", P.PLANE_BITS)
@pytest.mark.parametrize("d", [8, 40, 100, 384])
@pytest.mark.parametrize("l2", [False, True])
def test_rank_native_equals_reference(bits, d, l2):
    rng = np.random.default_rng(d + bits + 7 * l2)
    n = 300
    st, _, _, cand, s1, scale, beta, w, ws, u = _rank_case(rng, bits, d, n, l2, scaled=not l2)
    for kk in (1, 7, 50, 60):
        ref = P.rank_ref(cand, s1, st.low, st.nb1, bits - 1, w, ws, u, beta, kk, scale=scale,
                         l2=l2)
        assert ref.shape == (6, kk)
        for isa in ISAS:
            got = L.planes_rank(cand, s1, st.low, st.nb1, bits - 1, w, ws, u, beta, kk,
                                scale=scale, l2=l2, isa=isa)
            assert np.array_equal(ref, got), isa
    # the reference's estimate, by hand, for one row
    q, c = 3, 0
    j = cand[q, c]
    acc = 0.0
    for p in range(bits - 1):
        bits_p = np.unpackbits(st.low[j, p * st.nb1:(p + 1) * st.nb1], bitorder="little")[:d]
        acc += beta[p] * float(2 * int((w[q, :d].astype(np.int64) * bits_p).sum()) - ws[q])
    est = float(s1[q, c]) + (2.0 if l2 else 1.0) * (
        (float(scale[j]) if scale is not None else 1.0) * (float(u[q]) * acc))
    ests = []
    for cc in range(cand.shape[1]):
        jj = cand[q, cc]
        a2 = 0.0
        for p in range(bits - 1):
            bp = np.unpackbits(st.low[jj, p * st.nb1:(p + 1) * st.nb1], bitorder="little")[:d]
            a2 += beta[p] * float(2 * int((w[q, :d].astype(np.int64) * bp).sum()) - ws[q])
        ests.append(float(s1[q, cc]) + (2.0 if l2 else 1.0) * (
            (float(scale[jj]) if scale is not None else 1.0) * (float(u[q]) * a2)))
    order = sorted(range(len(ests)), key=lambda t: (-ests[t], cand[q, t]))
    assert ests[order[0]] >= est
    ref = P.rank_ref(cand, s1, st.low, st.nb1, bits - 1, w, ws, u, beta, 5, scale=scale, l2=l2)
    assert list(ref[q]) == [int(cand[q, t]) for t in order[:5]]


@pytest.mark.parametrize("bits", P.PLANE_BITS)
@pytest.mark.parametrize("d", [8, 40, 100, 384])
@pytest.mark.parametrize("l2", [False, True])
def test_rescore_native_equals_reference(bits, d, l2):
    rng = np.random.default_rng(d * 3 + bits + l2)
    for n in (33, 300):
        st, codebook, rq, cand, s1, scale, beta, w, ws, u = _rank_case(rng, bits, d, n, l2)
        kept = P.rank_ref(cand, s1, st.low, st.nb1, bits - 1, w, ws, u, beta, 12,
                          scale=scale)
        kept[2, :3] = -1
        nbytes = codes_nbytes(d, bits)
        xn = rng.random(n).astype(np.float32) if l2 else None
        qn = rng.random(6).astype(np.float32) if l2 else None
        for tables in (fs.nibble_tables(rq, codebook, bits, nbytes),
                       *([fs.Products(rq, codebook, nbytes)] if bits == 4 else [])):
            for k in (1, 5, 12, 15):
                ref = P.rescore_ref(kept, st, tables, k, scale=scale, sq_norms=xn,
                                    q_sq_norms=qn)
                rt, rqs, rlv = ((None, *tables.arrays()) if isinstance(tables, fs.Products)
                                else (np.ascontiguousarray(tables), None, None))
                for isa in ISAS:
                    got = L.planes_rescore(kept, st.sign.blocks, st.sign.tail_block(), n,
                                           st.low, st.nb1, bits, k, rtables=rt, rqs=rqs,
                                           rlv=rlv, scale=scale, sq_norms=xn, q_sq_norms=qn,
                                           isa=isa)
                    for x, y in zip(ref, got, strict=True):
                        assert np.array_equal(x, y), isa


def test_rank_and_rescore_reject_bad_input():
    rng = np.random.default_rng(0)
    st, codebook, rq, cand, s1, scale, beta, w, ws, u = _rank_case(rng, 4, 40, 100, False)
    args = (cand, s1, st.low, st.nb1, 3, w, ws, u, beta, 5)
    with pytest.raises(InvalidDtypeError):
        L.planes_rank(cand.tolist(), *args[1:], isa="portable")
    for kk in (-1, 0, 2.5, True):
        with pytest.raises(InvalidArgumentError):
            L.planes_rank(*args[:9], kk, isa="portable")
    with pytest.raises(InvalidArgumentError):
        L.planes_rank(cand, s1, st.low, 6.0, *args[4:], isa="portable")
    # weights past the plane bytes' coordinates are not read, by either path
    wide = np.concatenate([w, np.full((w.shape[0], 64), 9, np.int8)], axis=1)
    ws2 = wide.sum(axis=1, dtype=np.int64)
    assert np.array_equal(P.rank_ref(cand, s1, st.low, st.nb1, 3, wide, ws2, u, beta, 5),
                          L.planes_rank(cand, s1, st.low, st.nb1, 3, wide, ws2, u, beta, 5,
                                        isa="portable"))
    bad = cand.copy()
    bad[0, 0] = 100
    with pytest.raises(InvalidArgumentError, match="100"):
        L.planes_rank(bad, *args[1:], scale=scale, isa="portable")
    with pytest.raises(InvalidDtypeError):
        L.planes_rank(cand.astype(np.int32), *args[1:], isa="portable")
    with pytest.raises(InvalidDtypeError):
        L.planes_rank(*args[:8], beta.astype(np.float32), 5, isa="portable")
    with pytest.raises(DimensionMismatchError):
        L.planes_rank(cand, np.ascontiguousarray(s1[:, :3]), *args[2:], isa="portable")
    with pytest.raises(DimensionMismatchError):
        L.planes_rank(cand, s1, st.low, st.nb1, 2, *args[5:], isa="portable")
    kept = P.rank_ref(*args, scale=scale)
    tb = fs.nibble_tables(rq, codebook, 4, 20)
    base = dict(rtables=tb, isa="portable")
    with pytest.raises(InvalidArgumentError, match="-2"):
        L.planes_rescore(np.full_like(kept, -2), st.sign.blocks, st.sign.tail_block(), 100,
                         st.low, st.nb1, 4, 3, **base)
    with pytest.raises(InvalidArgumentError):
        L.planes_rescore(kept, st.sign.blocks, st.sign.tail_block(), 100, st.low, st.nb1, 4,
                         3, isa="portable")  # no tables
    with pytest.raises(DimensionMismatchError):
        L.planes_rescore(kept, st.sign.blocks, st.sign.tail_block(), 100, st.low, st.nb1, 2,
                         3, **base)  # low planes of another width


# --------------------------------------------------------------------------- the seed
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("masked", [False, True])
def test_seed_never_changes_the_scan(isa, masked):
    rng = np.random.default_rng(5 + masked)
    n, nb, nq, k = 3000, 6, 9, 40
    codes = fs.pack_blocked(rng.integers(0, 256, (n, nb), dtype=np.uint8))
    tables = rng.standard_normal((nq, 2 * nb, 16)).astype(np.float32)
    luts, bias, delta = fs.quantize_luts(tables)
    scale = rng.random(n).astype(np.float32)
    mask = rng.random(n) < 0.7 if masked else None
    ref = fs.fastscan_topk_ref(luts, bias, delta, codes, n, k, scale=scale, mask=mask)
    top = fs.fastscan_topk_ref(luts, bias, delta, codes, n, 400, scale=scale, mask=mask)[0]
    seeds = [top[:, k - 1], top[:, 0], top[:, 399], top[:, 5], np.full(nq, np.inf),
             np.full(nq, -np.inf), np.full(nq, np.nan), top[:, k - 1] - 1e-3]
    for seed in seeds:
        got = L.lut_topk(luts, bias, delta, codes, n, k, scale=scale, mask=mask, isa=isa,
                         seed=np.ascontiguousarray(seed, dtype=np.float32))
        assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1])
        # unsorted: the same rows, each with its score
        us, ui = L.lut_topk(luts, bias, delta, codes, n, k, scale=scale, mask=mask, isa=isa,
                            seed=np.ascontiguousarray(seed, dtype=np.float32), sort=False)
        for q in range(nq):
            o = np.lexsort((np.where(ui[q] < 0, n, ui[q]), -us[q]))
            assert np.array_equal(ui[q, o], ref[1][q]) and np.array_equal(us[q, o], ref[0][q])
    with pytest.raises(InvalidDtypeError):
        L.lut_topk(luts, bias, delta, codes, n, k, seed=np.zeros(nq, np.float64), isa=isa)
    with pytest.raises(DimensionMismatchError):
        L.lut_topk(luts, bias, delta, codes, n, k, seed=np.zeros(nq + 1, np.float32), isa=isa)


def test_seeded_scan_split_over_threads(monkeypatch):
    """A few queries split the rows over two threads (the calling thread's lead share): each
    share's seeded collection, its rescan when the share has too few rows at the seed, the
    bound and the merge give the reference's rows; unsorted output is sorted then."""
    from vecindex_core._threads import get_num_threads, set_num_threads

    rng = np.random.default_rng(21)
    n, nb, nq, k = 20_000, 6, 3, 50
    codes = fs.pack_blocked(rng.integers(0, 256, (n, nb), dtype=np.uint8))
    luts, bias, delta = fs.quantize_luts(rng.standard_normal((nq, 2 * nb, 16)).astype(np.float32))
    scale = rng.random(n).astype(np.float32)
    ref = fs.fastscan_topk_ref(luts, bias, delta, codes, n, k, scale=scale)
    top = fs.fastscan_topk_ref(luts, bias, delta, codes, n, 600, scale=scale)[0]
    monkeypatch.setattr(L, "MIN_WORK_PER_THREAD", 1)
    monkeypatch.setattr(L, "MIN_ROWS_WORK_PER_THREAD", 1)
    before = get_num_threads()
    set_num_threads(2)
    try:
        assert L.scan_plan(nq, n, nb) == (2, True)
        for seed in (top[:, k - 1], top[:, 80], top[:, 599], top[:, 0]):
            for sort in (True, False):
                got = L.lut_topk(luts, bias, delta, codes, n, k, scale=scale,
                                 seed=np.ascontiguousarray(seed), scale_max=1.0, sort=sort,
                                 isa=ISAS[-1])
                assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1])
    finally:
        set_num_threads(before)


@pytest.mark.parametrize("dot", [False, True])
def test_pruned_blocks_never_change_the_scan(dot):
    """Blocks skipped by their integer bound (batches of queries, positive thresholds) give
    the reference's results: scales with zeros, huge and tiny values, loose bounds, negative
    and positive scores, the dot mode's signed sums."""
    rng = np.random.default_rng(11 + dot)
    n, nb, nq = 4000, 4, 13
    codes = fs.pack_blocked(rng.integers(0, 256, (n, nb), dtype=np.uint8))
    if dot:
        levels, cs = fs.dot_levels(lloyd_max_codebook(8, 4))
        luts, delta = fs.dot_weights((rng.standard_normal((nq, 8)) + 0.2).astype(np.float32),
                                     nb, cs)
        bias = np.zeros(nq, np.float32)
    else:
        levels = None
        tables = (rng.standard_normal((nq, 2 * nb, 16)) + 0.3).astype(np.float32)
        tables[0] -= 5  # a query whose scores are all negative
        luts, bias, delta = fs.quantize_luts(tables)
        # and queries of tiny entries: sums a unit apart, new bests one above the threshold
        luts[6:] = rng.integers(0, 4, luts[6:].shape, dtype=np.uint8)
        bias[6:], delta[6:] = 0.0, 1.0
    for scale in (rng.random(n).astype(np.float32),
                  np.where(rng.random(n) < 0.3, 0, 1e30 * rng.random(n)).astype(np.float32),
                  (1e-30 * rng.random(n)).astype(np.float32), None):
        for k in (1, 10, 300):
            ref = fs.fastscan_topk_ref(luts, bias, delta, codes, n, k, scale=scale,
                                       levels=levels)
            top = 1.0 if scale is None else float(scale.max())
            for isa in ISAS:
                for bound in (top, 4 * top + 1, None):
                    got = L.lut_topk(luts, bias, delta, codes, n, k, scale=scale, isa=isa,
                                     levels=levels, scale_max=bound)
                    assert np.array_equal(got[0], ref[0]), (isa, bound)
                    assert np.array_equal(got[1], ref[1]), (isa, bound)
    scale = rng.random(n).astype(np.float32)
    for bad in (float(scale.max()) / 2, float("nan"), float("inf"), "x", True):
        with pytest.raises(InvalidArgumentError, match="scale_max"):
            L.lut_topk(luts, bias, delta, codes, n, 5, scale=scale, levels=levels,
                       isa="portable", scale_max=bad)
    with pytest.raises(InvalidArgumentError, match="scale_max"):  # the bound needs scales >= 0
        L.lut_topk(luts, bias, delta, codes, n, 5, scale=-scale, levels=levels,
                   isa="portable", scale_max=1.0)


def test_merge_parts_is_a_stable_merge():
    with pytest.raises(InvalidArgumentError):
        L.merge_parts(np.zeros((2, 1, 3), np.float32), np.zeros((2, 1, 3), np.int64), 7)
    rng = np.random.default_rng(4)
    parts, nq, k = 3, 5, 12
    s = rng.integers(0, 4, (parts, nq, k)).astype(np.float32)
    s[0, 1, 3] = np.nan
    i = rng.permutation(parts * nq * k).reshape(parts, nq, k).astype(np.int64)
    s[:, 2, 8:] = -np.inf
    i[:, 2, 8:] = -1
    for p in range(parts):  # each part sorted best first, as the scans return them
        for q in range(nq):
            o = np.lexsort((np.where(i[p, q] < 0, np.iinfo(np.int64).max, i[p, q]),
                            -s[p, q]))
            s[p, q], i[p, q] = s[p, q, o], i[p, q, o]
    for kk in (1, 7, parts * k):
        got_s, got_i = L.merge_parts(s, i, kk)
        flat_s = s.transpose(1, 0, 2).reshape(nq, -1)
        flat_i = i.transpose(1, 0, 2).reshape(nq, -1)
        o = np.lexsort((np.where(flat_i < 0, np.iinfo(np.int64).max, flat_i), -flat_s),
                       axis=-1)[:, :kk]
        assert np.array_equal(got_i, np.take_along_axis(flat_i, o, axis=1))
        assert np.array_equal(got_s, np.take_along_axis(flat_s, o, axis=1), equal_nan=True)


# --------------------------------------------------------------------------- the index
@pytest.fixture()
def low_threshold(monkeypatch):
    monkeypatch.setattr(tqmod, "PLANES_MIN_ROWS", 64)


def _data(n=700, d=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[: n // 2] += 2 * x[0]  # clusters: near ties in the sign plane
    return x, rng.standard_normal((9, d)).astype(np.float32)


@pytest.mark.parametrize("bits", P.PLANE_BITS)
@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_index_planes_equal_reference_and_blocked_recall(low_threshold, bits, metric):
    x, q = _data()
    idx = TurboQuantIndex(48, metric, bits=bits)
    idx.add(x)
    assert isinstance(idx._store, P.PlaneCodes)
    got = idx.search(q, 10)
    with _native._use(None):
        ref = idx.search(q, 10)
    for a, b in zip(got, ref, strict=True):
        assert np.array_equal(a, b)
    blocked = TurboQuantIndex(48, metric, bits=bits)
    tqmod.PLANES_MIN_ROWS = 10**9
    blocked.add(x)
    assert isinstance(blocked._store, BlockedCodes)
    assert np.array_equal(blocked.codes, idx.codes)
    assert blocked.memory_bytes() >= idx.memory_bytes() - 2 * 48 * 32
    full = blocked.search(q, 10)
    same = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got[1], full[1], strict=True)])
    assert same >= 0.95
    both = got[1] == full[1]  # the same row: the same score (the same float rescore)
    assert np.array_equal(got[0][both], full[0][both])


def test_index_planes_after_adds_and_removes(monkeypatch):
    """The native staged search with its seed (from 8,192 rows), after rows are added and
    removed (the planes' spare capacity), equals the reference path."""
    monkeypatch.setattr(tqmod, "PLANES_MIN_ROWS", 64)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((9000, 16)).astype(np.float32)
    x[:4000] += 3 * x[0]
    q = rng.standard_normal((6, 16)).astype(np.float32)
    for bits in P.PLANE_BITS:
        idx = TurboQuantIndex(16, "ip", bits=bits)
        idx.add(x[:8500])
        for step in ("start", "add", "remove", "remove more"):
            if step == "add":
                idx.add(x[8500:])
            elif step == "remove":
                idx.remove(rng.choice(len(idx), 300, replace=False))
            elif step == "remove more":
                idx.remove(np.arange(10))
            assert isinstance(idx._store, P.PlaneCodes)
            got = idx.search(q, 10)
            with _native._use(None):
                ref = idx.search(q, 10)
            for a, b in zip(got, ref, strict=True):
                assert np.array_equal(a, b), step


def test_index_planes_parameter_and_reload(low_threshold):
    x, q = _data(300)
    off = TurboQuantIndex(48, "ip", bits=4, planes=False)
    off.add(x)
    assert isinstance(off._store, BlockedCodes)
    idx = TurboQuantIndex(48, "ip", bits=4)
    idx.add(x)
    idx.remove(np.arange(250, 300))
    assert isinstance(idx._store, P.PlaneCodes)
    idx.remove(np.arange(40, 250))  # below the threshold: back to blocks
    assert isinstance(idx._store, BlockedCodes)
    idx.add(x[:30])  # 70 rows: planes again (the layout follows the row count alone)
    assert isinstance(idx._store, P.PlaneCodes)
    again = TurboQuantIndex.from_bytes(idx.to_bytes())
    assert isinstance(again._store, P.PlaneCodes)
    for a, b in zip(idx.search(q, 7), again.search(q, 7), strict=True):
        assert np.array_equal(a, b)


def test_index_switches_layout_with_size(low_threshold):
    x, q = _data(200)
    idx = TurboQuantIndex(48, "ip", bits=2)
    idx.add(x[:63])
    assert isinstance(idx._store, BlockedCodes)
    idx.add(x[63:80])
    assert isinstance(idx._store, P.PlaneCodes)
    codes = idx.codes
    idx.remove(np.arange(64, 80))
    assert isinstance(idx._store, P.PlaneCodes)  # 64 rows: at the threshold
    idx.remove(np.arange(31, 64))
    assert isinstance(idx._store, BlockedCodes)
    assert np.array_equal(idx.codes, codes[:31])
    idx.add(x[80:200])
    restored = TurboQuantIndex.from_bytes(idx.to_bytes())
    assert isinstance(restored._store, P.PlaneCodes)
    for a, b in zip(idx.search(q, 7), restored.search(q, 7), strict=True):
        assert np.array_equal(a, b)


def test_index_planes_masks_and_rerank(low_threshold):
    x, q = _data(600)
    idx = TurboQuantIndex(48, "ip", bits=4, keep_vectors=True)
    idx.add(x)
    rng = np.random.default_rng(2)
    for frac in (0.02, 0.5):  # a few rows gathered into blocks; a mask inside the sign pass
        allow = rng.random(600) < frac
        ids = np.flatnonzero(allow)
        got = idx.search(q, 5, mask=allow)
        with _native._use(None):
            ref = idx.search(q, 5, mask=allow)
        for a, b in zip(got, ref, strict=True):
            assert np.array_equal(a, b)
        assert np.isin(got[1][got[1] >= 0], ids).all()
    _, i, _ = idx.search(q, 5, params={"rerank": 50})
    exact = np.argsort(-(q @ x.T), axis=1)[:, :5]
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(i, exact, strict=True)]) > 0.8


def test_fast_topk_takes_planes_only_through_a_small_mask():
    x, _ = _data(200)
    st = P.PlaneCodes.from_rows(_codes(np.random.default_rng(0), 200, 48, 2), 48, 2)

    def tables(a, b):
        return fs.nibble_luts(x[:1], lloyd_max_codebook(48, 2), 2, 12)

    with pytest.raises(InvalidArgumentError):
        fast_topk(st, tables, 1, 5)
    mask = np.zeros(200, bool)
    mask[[3, 50, 120]] = True
    _, slots, _ = fast_topk(st, tables, 1, 5, mask=mask)
    assert set(slots[0][slots[0] >= 0]) == {3, 50, 120}
