"""The inverted-list fast scan: every native path against the numba reference bit for bit
(the k best of the heaps continued in place, compared after finalize_heaps: the native
heaps are valid heaps, not necessarily in the reference's layout), the reference against a
plain numpy sort, threads, and typed errors that leave the heaps untouched."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from vecindex_core import _native
from vecindex_core._kernels import fastscan as fs
from vecindex_core._kernels.topk import finalize_heaps, init_heaps
from vecindex_core._native.lut import MIN_WORK_PER_THREAD, lut_ivf_topk
from vecindex_core._threads import get_num_threads, set_num_threads
from vecindex_core.errors import (
    DimensionMismatchError,
    InvalidArgumentError,
    InvalidDtypeError,
)

from .conftest import assert_same_heaps as _heaps_equal

ISAS = list(_native._usable())
SIZES = (0, 1, 31, 32, 33, 100)


def test_the_native_module_has_the_ivf_kernel():
    assert _native._ext is not None and hasattr(_native._ext, "lut_ivf_topk")
    assert "portable" in ISAS
    assert {"fastscan_ivf_ref", "fastscan_ivf_topk"} <= set(fs.__all__)


# --------------------------------------------------------------------------- cases
def _arena(rng, nb, sizes):
    """A blocked arena holding one list per size, each at a multiple of 32, with garbage in
    the padding lanes: random codes, slots outside any mask, NaN scales and norms."""
    starts, e = [], 0
    for s in sizes:
        starts.append(e)
        e += 32 * -(-s // 32)
    nent = max(e, 32)
    codes = fs.pack_blocked(rng.integers(0, 256, (nent, nb), dtype=np.uint8))
    lists = np.array([(a, a + s) for a, s in zip(starts, sizes, strict=True)], np.int64)
    real = np.zeros(nent, bool)
    for a, b in lists:
        real[a:b] = True
    nreal = int(real.sum())
    slots = np.full(nent, -7, np.int32)
    slots[np.flatnonzero(real)] = rng.permutation(nreal + 5)[:nreal]  # gaps in the slots
    scale = np.full(nent, np.nan, np.float32)
    scale[real] = (rng.random(nreal) * 2).astype(np.float32)
    xn = np.full(nent, np.nan, np.float32)
    xn[real] = rng.random(nreal).astype(np.float32)
    return codes, lists, slots, scale, xn, nreal + 5


def _luts(rng, nq, nb, kind):
    if kind == "random":
        luts = rng.integers(0, fs.LUT_MAX + 1, (nq, nb, 32), dtype=np.uint8)
        bias = rng.standard_normal(nq).astype(np.float32)
        delta = (rng.random(nq) + 0.01).astype(np.float32)
        return luts, bias, delta
    bits = int(kind)
    d = 2 * nb * (4 // bits) - 1 if nb * (4 // bits) > 1 else 1
    levels = np.sort(rng.standard_normal(1 << bits)).astype(np.float32)
    tables = fs.nibble_tables(rng.standard_normal((nq, d)).astype(np.float32), levels, bits, nb)
    return fs.quantize_luts(tables)


def _ranges(rng, lists, nq, nr):
    """nq x nr ranges: distinct lists per query, some replaced by empty ranges."""
    out = np.zeros((nq, nr, 2), np.int64)
    for q in range(nq):
        pick = rng.choice(len(lists), size=min(nr, len(lists)), replace=False)
        for t in range(nr):
            if t < pick.size and rng.random() > 0.15:
                out[q, t] = lists[pick[t]]
            else:
                lo = int(rng.integers(0, 40))  # empty: lo need not be aligned
                out[q, t] = (lo, lo)
    return out


def _untouched(before, after):
    """The raw arrays unchanged (a failed call writes nothing)."""
    assert np.array_equal(before[1], after[1])
    assert np.array_equal(before[0].view(np.uint32), after[0].view(np.uint32))


def _run(fn, nq, k, luts, bias, delta, codes, ranges, heaps=None, **kw):
    hs, hi = init_heaps(nq, k) if heaps is None else (heaps[0].copy(), heaps[1].copy())
    fn(luts, bias, delta, codes, ranges, hs, hi, **kw)
    return hs, hi


def _option_sets(rng, nq, nr, scale, xn, nslots):
    mask = rng.random(nslots) < 0.6
    lb = rng.standard_normal((nq, nr)).astype(np.float32)
    qn = (rng.random(nq) * 3).astype(np.float32)
    for use_mask in (False, True):
        for use_scale in (False, True):
            for use_lb in (False, True):
                for l2 in (False, True):
                    kw = {}
                    if use_mask:
                        kw["mask"] = mask
                    if use_scale:
                        kw["scale"] = scale
                    if use_lb:
                        kw["list_bias"] = lb
                    if l2:
                        kw["sq_norms"], kw["q_sq_norms"] = xn, qn
                    yield kw


# --------------------------------------------------------------------------- native = reference
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("nb", [1, 3, 24])
@pytest.mark.parametrize("kind", ["random", "1", "2", "4"])
def test_native_equals_reference(isa, nb, kind):
    rng = np.random.default_rng(nb * 31 + len(kind) + (7 if kind == "random" else int(kind)))
    codes, lists, slots, scale, xn, nslots = _arena(rng, nb, SIZES + SIZES[::-1])
    nq, nr = 5, 8
    luts, bias, delta = _luts(rng, nq, nb, kind)
    ranges = _ranges(rng, lists, nq, nr)
    native = functools.partial(lut_ivf_topk, isa=isa)
    for kw in _option_sets(rng, nq, nr, scale, xn, nslots):
        for k in (1, 10, 50):
            args = (nq, k, luts, bias, delta, codes, ranges)
            ref = _run(fs.fastscan_ivf_ref, *args, row_slots=slots, **kw)
            _heaps_equal(ref, _run(native, *args, row_slots=slots, **kw))
            # two calls over halves of the ranges continue the heaps: the same as one call
            h = nr // 2
            lo_kw = {**kw, "list_bias": kw["list_bias"][:, :h].copy()} if "list_bias" in kw \
                else kw
            hi_kw = {**kw, "list_bias": kw["list_bias"][:, h:].copy()} if "list_bias" in kw \
                else kw
            for fn in (fs.fastscan_ivf_ref, native):
                first = _run(fn, *args[:-1], ranges[:, :h].copy(), row_slots=slots, **lo_kw)
                both = _run(fn, *args[:-1], ranges[:, h:].copy(), first, row_slots=slots,
                            **hi_kw)
                _heaps_equal(ref, both)


def _plain(luts, bias, delta, codes, ranges, k, slots, nent, *, mask=None, scale=None,
           list_bias=None, sq_norms=None, q_sq_norms=None):
    """The definition in numpy: sums of the nibble tables, the formula, a lexsort."""
    nq, nb = luts.shape[:2]
    c = fs.unpack_blocked(codes, nent, nb).astype(np.int64)
    p = np.arange(nb)
    sums = (luts[:, p, c & 15].astype(np.int64) + luts[:, p, 16 + (c >> 4)]).sum(axis=2)
    out_s = np.full((nq, k), -np.inf, np.float32)
    out_i = np.full((nq, k), -1, np.int64)
    for q in range(nq):
        sc, sl = [], []
        for t in range(ranges.shape[1]):
            e = np.arange(ranges[q, t, 0], ranges[q, t, 1])
            s = bias[q] + delta[q] * sums[q, e].astype(np.float32)
            if scale is not None:
                s = scale[e] * s
            if list_bias is not None:
                s = list_bias[q, t] + s
            if sq_norms is not None:
                tt = (q_sq_norms[q] + sq_norms[e]) - np.float32(2) * s
                s = -np.maximum(tt, np.float32(0))
            keep = np.ones(e.size, bool) if mask is None else mask[slots[e]]
            sc.append(s[keep].astype(np.float32))
            sl.append(slots[e][keep].astype(np.int64))
        s_all, i_all = np.concatenate(sc), np.concatenate(sl)
        order = np.lexsort((i_all, -s_all))[:k]
        out_s[q, : order.size] = s_all[order]
        out_i[q, : order.size] = i_all[order]
    return out_s, out_i


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_equals_a_plain_numpy_sort(seed):
    rng = np.random.default_rng(100 + seed)
    nb, nq, nr = 5, 4, 6
    codes, lists, slots, scale, xn, nslots = _arena(rng, nb, SIZES)
    luts, bias, delta = _luts(rng, nq, nb, "random")
    ranges = _ranges(rng, lists, nq, nr)
    nent = codes.shape[0] * 32
    for kw in _option_sets(rng, nq, nr, scale, xn, nslots):
        for k in (1, 10, 50):
            hs, hi = _run(fs.fastscan_ivf_ref, nq, k, luts, bias, delta, codes, ranges,
                          row_slots=slots, **kw)
            got_s, got_i, _ = finalize_heaps(hs, hi)
            want_s, want_i = _plain(luts, bias, delta, codes, ranges, k, slots, nent, **kw)
            assert np.array_equal(got_i, want_i)
            assert np.array_equal(got_s, want_s)


@pytest.mark.parametrize("isa", ISAS)
def test_ties_go_to_the_lower_slot_whatever_the_entry_order(isa):
    rng = np.random.default_rng(7)
    nb, nq, k = 2, 3, 5
    codes, lists, slots, _, _, _ = _arena(rng, nb, (100, 33, 64))
    slots = np.where(slots >= 0, slots.max() - slots, slots).astype(np.int32)  # descending-ish
    luts = np.full((nq, nb, 32), 9, np.uint8)  # every entry the same score
    one = np.ones(nq, np.float32)
    ranges = np.tile(lists[None], (nq, 1, 1))
    real = np.concatenate([slots[a:b] for a, b in lists])
    want = np.sort(real)[:k]
    for fn in (fs.fastscan_ivf_ref, functools.partial(lut_ivf_topk, isa=isa)):
        hs, hi = _run(fn, nq, k, luts, one, one, codes, ranges, row_slots=slots)
        assert (finalize_heaps(hs, hi)[1] == want).all()
        # a heap already holding equal scores with higher slots gives way to lower slots
        pre_s = np.full((nq, k), np.float32(1 + 36), np.float32)
        pre_i = np.tile(np.arange(10_000 + k, 10_000, -1, dtype=np.int64)[:k], (nq, 1))
        hs, hi = _run(fn, nq, k, luts, one, one, codes, ranges, (pre_s, pre_i),
                      row_slots=slots)
        assert (finalize_heaps(hs, hi)[1] == want).all()
    # -inf scores: nothing enters padding, but real -inf entries give way to lower slots
    minus = np.full(nq, -np.inf, np.float32)
    pre_s = np.full((nq, k), -np.inf, np.float32)
    pre_i = np.tile(np.arange(10_000 + k, 10_000, -1, dtype=np.int64), (nq, 1))
    for fn in (fs.fastscan_ivf_ref, functools.partial(lut_ivf_topk, isa=isa)):
        hs, hi = _run(fn, nq, k, luts, minus, one, codes, ranges, row_slots=slots)
        assert (hi == -1).all()
        hs, hi = _run(fn, nq, k, luts, minus, one, codes, ranges, (pre_s, pre_i),
                      row_slots=slots)
        assert (finalize_heaps(hs, hi)[1] == want).all()


@pytest.mark.parametrize("isa", ISAS)
def test_nan_scores_never_enter(isa):
    rng = np.random.default_rng(8)
    nb, nq, k = 3, 2, 40
    codes, lists, slots, scale, _, _ = _arena(rng, nb, (33, 64))
    luts, bias, delta = _luts(rng, nq, nb, "random")
    scale[lists[0, 0]: lists[0, 0] + 20] = np.nan
    ranges = np.tile(lists[None], (nq, 1, 1))
    ref = _run(fs.fastscan_ivf_ref, nq, k, luts, bias, delta, codes, ranges, row_slots=slots,
               scale=scale)
    nat = _run(functools.partial(lut_ivf_topk, isa=isa), nq, k, luts, bias, delta, codes,
               ranges, row_slots=slots, scale=scale)
    _heaps_equal(ref, nat)
    assert not np.isin(ref[1], slots[lists[0, 0]: lists[0, 0] + 20]).any()
    assert not np.isnan(ref[0]).any()


@pytest.mark.parametrize("isa", ISAS)
def test_empty_ranges_and_no_ranges_leave_the_heaps(isa):
    rng = np.random.default_rng(9)
    codes, _, slots, _, _, _ = _arena(rng, 2, (40,))
    luts, bias, delta = _luts(rng, 3, 2, "random")
    pre = (rng.standard_normal((3, 4)).astype(np.float32), np.arange(12).reshape(3, 4))
    pre = (np.sort(pre[0], axis=1), pre[1][:, ::-1].copy())
    for ranges in (np.zeros((3, 0, 2), np.int64), np.full((3, 2, 2), 64, np.int64)):
        for fn in (fs.fastscan_ivf_ref, functools.partial(lut_ivf_topk, isa=isa),
                   fs.fastscan_ivf_topk):
            _untouched(pre, _run(fn, 3, 4, luts, bias, delta, codes, ranges, pre,
                                 row_slots=slots))


def test_the_dispatcher_picks_a_path_and_agrees():
    rng = np.random.default_rng(10)
    nb, nq = 4, 3
    codes, lists, slots, scale, _, _ = _arena(rng, nb, SIZES)
    luts, bias, delta = _luts(rng, nq, nb, "2")
    ranges = _ranges(rng, lists, nq, 4)
    want = _run(fs.fastscan_ivf_ref, nq, 7, luts, bias, delta, codes, ranges, row_slots=slots,
                scale=scale)
    for isa in [None, *ISAS]:
        with _native._use(isa):
            _heaps_equal(want, _run(fs.fastscan_ivf_topk, nq, 7, luts, bias, delta, codes,
                                    ranges, row_slots=slots, scale=scale))


# --------------------------------------------------------------------------- threads
@pytest.mark.parametrize("isa", ISAS)
def test_results_do_not_depend_on_the_thread_count(isa):
    rng = np.random.default_rng(11)
    nb, nq = 24, 8
    codes, lists, slots, scale, xn, nslots = _arena(rng, nb, (1500,) * 8)
    luts, bias, delta = _luts(rng, nq, nb, "random")
    ranges = np.tile(lists[None], (nq, 1, 1))
    assert nq * 8 * 1500 * nb * 2 >= 2 * MIN_WORK_PER_THREAD  # two threads get work
    mask = rng.random(nslots) < 0.7
    old = get_num_threads()
    for fn in (fs.fastscan_ivf_ref, functools.partial(lut_ivf_topk, isa=isa)):
        for kw in ({}, {"mask": mask, "scale": scale, "sq_norms": xn,
                        "q_sq_norms": rng.random(nq).astype(np.float32)}):
            try:
                set_num_threads(1)
                one = _run(fn, nq, 20, luts, bias, delta, codes, ranges, row_slots=slots, **kw)
                set_num_threads(2)
                two = _run(fn, nq, 20, luts, bias, delta, codes, ranges, row_slots=slots, **kw)
            finally:
                set_num_threads(old)
            _heaps_equal(one, two)
            _heaps_equal(one, _run(fs.fastscan_ivf_ref, nq, 20, luts, bias, delta, codes,
                                   ranges, row_slots=slots, **kw))


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("path", ["reference", *ISAS])
def test_bad_input_raises_typed_errors_and_writes_nothing(path):
    rng = np.random.default_rng(12)
    nb, nq, nr, k = 3, 2, 3, 4
    codes, lists, slots, scale, xn, nslots = _arena(rng, nb, (40, 32, 7))
    luts, bias, delta = _luts(rng, nq, nb, "random")
    ranges = np.tile(lists[None], (nq, 1, 1))
    fn = fs.fastscan_ivf_ref if path == "reference" else functools.partial(lut_ivf_topk,
                                                                            isa=path)
    hs0, hi0 = _run(fn, nq, k, luts, bias, delta, codes, ranges, row_slots=slots)
    ok = {"luts": luts, "bias": bias, "delta": delta, "codes": codes, "ranges": ranges}

    def call(**over):
        a = {**ok, "hs": hs0.copy(), "hi": hi0.copy(), "row_slots": slots, **over}
        hs, hi = a.pop("hs"), a.pop("hi")
        before = (hs.copy(), hi.copy())
        try:
            fn(a.pop("luts"), a.pop("bias"), a.pop("delta"), a.pop("codes"), a.pop("ranges"),
               hs, hi, **a)
        finally:
            _untouched(before, (hs, hi))

    def bad_range(q, t, lo, hi):
        r = ranges.copy()
        r[q, t] = (lo, hi)
        return r

    nent = codes.shape[0] * 32
    cases = [
        (InvalidArgumentError, "ranges\\[1, 0\\]", {"ranges": bad_range(1, 0, 1, 40)}),
        (InvalidArgumentError, "ranges", {"ranges": bad_range(0, 2, 96, nent + 1)}),
        (InvalidArgumentError, "ranges", {"ranges": bad_range(0, 1, 64, 40)}),
        (InvalidArgumentError, "ranges", {"ranges": bad_range(0, 1, -32, 0)}),
        (InvalidDtypeError, "ranges", {"ranges": ranges.astype(np.int32)}),
        (InvalidDtypeError, "row_slots", {"row_slots": slots.astype(np.int64)}),
        (InvalidDtypeError, "hs", {"hs": hs0.astype(np.float64)}),
        (InvalidDtypeError, "hi", {"hi": hi0.astype(np.int32)}),
        (InvalidDtypeError, "luts", {"luts": luts.astype(np.int16)}),
        (InvalidDtypeError, "list_bias", {"list_bias": np.zeros((nq, nr), np.float64)}),
        (InvalidDtypeError, "mask", {"mask": np.ones(nslots, np.uint8)}),
        (InvalidArgumentError, "ranges must be C-contiguous",
         {"ranges": np.repeat(ranges, 2, axis=1)[:, ::2]}),
        (InvalidArgumentError, "row_slots must be C-contiguous",
         {"row_slots": np.repeat(slots, 2)[::2]}),
        (InvalidArgumentError, "luts must be C-contiguous",
         {"luts": np.repeat(luts, 2, axis=0)[::2]}),
        (InvalidArgumentError, "hs must be C-contiguous",
         {"hs": np.repeat(hs0, 2, axis=1)[:, ::2]}),
        (DimensionMismatchError, "ranges", {"ranges": ranges[:1].copy()}),
        (DimensionMismatchError, "list_bias", {"list_bias": np.zeros((nq, nr + 1), np.float32)}),
        (DimensionMismatchError, "hs and hi", {"hi": np.full((nq, k + 1), -1, np.int64)}),
        (DimensionMismatchError, "hs and hi", {"hs": np.zeros((nq, 0), np.float32),
                                                "hi": np.zeros((nq, 0), np.int64)}),
        (DimensionMismatchError, "bias", {"bias": bias[:1].copy()}),
        (DimensionMismatchError, "codes", {"codes": codes[:, :64].copy()}),
        (DimensionMismatchError, "row_slots", {"row_slots": slots[:100].copy()}),
        (DimensionMismatchError, "scale", {"scale": scale[:100].copy()}),
        (DimensionMismatchError, "sq_norms", {"sq_norms": xn[:100].copy(),
                                              "q_sq_norms": np.ones(nq, np.float32)}),
        (DimensionMismatchError, "slot", {"mask": np.ones(nslots - 6, bool)}),
        (InvalidArgumentError, "together", {"sq_norms": xn}),
        (InvalidArgumentError, "at most", {"luts": np.full_like(luts, 128)}),
    ]
    for err, match, over in cases:
        with pytest.raises(err, match=match):
            call(**over)
    # a negative slot in a scanned entry with a mask
    neg = slots.copy()
    neg[lists[1, 0] + 3] = -1
    with pytest.raises(DimensionMismatchError, match="slot -1"):
        call(row_slots=neg, mask=np.ones(nslots, bool))
    # hs and hi sharing memory with each other or with an input
    raw = np.zeros(nq * k * 8, np.uint8)
    with pytest.raises(InvalidArgumentError, match="shares memory"):
        call(hs=raw[: nq * k * 4].view(np.float32).reshape(nq, k),
             hi=raw.view(np.int64).reshape(nq, k))
    shared = hs0.copy()
    with pytest.raises(InvalidArgumentError, match="hs shares memory with q_sq_norms"):
        call(hs=shared, sq_norms=xn, q_sq_norms=shared.reshape(-1)[:nq])
    ro = hs0.copy()
    ro.flags.writeable = False
    with pytest.raises(InvalidArgumentError, match="writable"):
        call(hs=ro)


def test_the_extension_checks_what_the_wrapper_does_not():
    rng = np.random.default_rng(13)
    nb, nq, k = 2, 2, 3
    codes, lists, slots, _, _, _ = _arena(rng, nb, (40, 33))
    luts, bias, delta = _luts(rng, nq, nb, "random")
    ranges = np.tile(lists[None], (nq, 1, 1))
    ext, isa = _native._ext, _native._isa_id("portable")

    def call(**over):
        a = {"ranges": ranges, "mask": None, "q1": nq, "slots": slots, "isa": isa,
             "hs": init_heaps(nq, k)[0], "hi": init_heaps(nq, k)[1], **over}
        ext.lut_ivf_topk(luts, bias, delta, None, codes, a["ranges"], None, None, None,
                         a["slots"], a["mask"], 0, a["q1"], a["hs"], a["hi"], a["isa"])

    call()
    r = ranges.copy()
    r[1, 0, 0] = 8
    with pytest.raises(InvalidArgumentError, match="range"):
        call(ranges=r)
    r = ranges.copy()
    r[0, 1, 1] = codes.shape[0] * 32 + 1
    with pytest.raises(InvalidArgumentError, match="range"):
        call(ranges=r)
    with pytest.raises(InvalidArgumentError, match="range"):
        call(slots=slots[:50].copy())
    with pytest.raises(InvalidArgumentError, match="query range"):
        call(q1=nq + 1)
    with pytest.raises(DimensionMismatchError, match="hs and hi"):
        call(hi=np.full((nq, k + 1), -1, np.int64))
    with pytest.raises(InvalidArgumentError, match="path"):
        call(isa=99)
    # the kernel bounds-checks every offered slot against the mask
    with pytest.raises(DimensionMismatchError, match="mask has 3 entries"):
        call(mask=np.ones(3, bool))
