"""Native kernels (``vecindex_core._native``): the extension is built, every instruction-set
path usable here matches the numba reference bit for bit, dispatch and its override, typed
errors at the buffer boundary, and concurrent calls."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import _native
from vecindex_core._kernels.hamming import hamming_topk, hamming_topk_numba
from vecindex_core.errors import (
    DimensionMismatchError,
    InvalidArgumentError,
    InvalidDtypeError,
)

#: every path this CPU runs (portable always; avx2 / avx512 where the CPU has them)
ISAS = list(_native._usable())
ALL_ONES = np.uint64(2**64 - 1)


def random_codes(rng, shape):
    return rng.integers(0, 2**64, size=shape, dtype=np.uint64, endpoint=False)


def codes_at_distance(dists, w):
    """Word-major codes (w, len(dists)) whose distance to the zero code is ``dists[j]``."""
    out = np.zeros((w, len(dists)), np.uint64)
    for j, b in enumerate(dists):
        b = int(b)
        out[: b // 64, j] = ALL_ONES
        if b // 64 < w:
            out[b // 64, j] = np.uint64((1 << (b % 64)) - 1)
    return out


def check_same(q, codes_t, k, *, max_bits, mask=None, n=None, isa):
    ref = hamming_topk_numba(q, codes_t, k, max_bits=max_bits, mask=mask, n=n)
    got = _native.hamming_topk(q, codes_t, k, max_bits=max_bits, mask=mask, n=n, isa=isa)
    assert got[0].dtype == np.int32 and got[1].dtype == np.int64
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    return got


# --------------------------------------------------------------------------- build
def test_extension_is_built():
    from vecindex_core._native import _vecnative  # CI builds it: pip install -e . compiles

    cfg = _native.config()
    assert cfg["built"] and cfg["path"] == _vecnative.__file__
    assert "portable" in cfg["usable_isas"]
    assert set(cfg["usable_isas"]) <= set(cfg["compiled_isas"])
    if os.environ.get("VECINDEX_NATIVE", "auto") in ("", "auto"):
        # the best path, or numba on an x86-64 CPU without AVX2
        assert cfg["isa"] == _native._choose("auto", tuple(cfg["usable_isas"]),
                                             cfg["cpu_features"]["x86_64"])
        assert cfg["hamming_topk"] == (f"native-{cfg['isa']}" if cfg["isa"] else "numba")
        assert cfg["lut_topk"] in (cfg["hamming_topk"], cfg["hamming_topk"] + "-vnni")
        assert cfg["dense_topk"] == (
            "numba" if not cfg["isa"]
            else f"native-{'avx2' if cfg['isa'] == 'avx512' else cfg['isa']}")


def test_auto_choice_per_cpu():
    # the selector is pure: what a CPU without AVX2, an arm64 CPU or one with AVX-512 gets
    choose = _native._choose
    assert choose("auto", ("portable",), True) is None  # x86-64 without AVX2: numba
    assert choose("auto", ("portable",), False) == "portable"  # arm64
    assert choose("auto", ("portable", "avx2"), True) == "avx2"
    assert choose("auto", ("portable", "avx2", "avx512"), True) == "avx512"
    assert choose("portable", ("portable",), True) == "portable"
    assert choose("off", ("portable", "avx2"), True) is None
    assert choose("auto", (), True) is None and choose("portable", (), False) is None


def test_show_config_prints(capsys):
    vc.show_config()
    out = capsys.readouterr().out
    assert "built:" in out and "VECINDEX_NATIVE" in out and "hamming_topk" in out
    assert "dense_topk" in out and "lut_topk" in out


# --------------------------------------------------------------------------- bit for bit
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("w", range(1, 9))
def test_random_codes_match_reference(rng, isa, w):
    for n, nq, k in [(1, 1, 1), (15, 3, 4), (16, 2, 16), (17, 5, 10), (1000, 1, 10),
                     (4099, 7, 33)]:
        codes = random_codes(rng, (w, n + 5))  # extra columns past n are never read
        q = random_codes(rng, (nq, w))
        check_same(q, codes, k, max_bits=64 * w, n=n, isa=isa)
        mask = rng.random(n) < 0.2
        check_same(q, codes, k, max_bits=64 * w, n=n, mask=mask, isa=isa)


@pytest.mark.parametrize("isa", ISAS)
def test_adversarial_inputs_match_reference(rng, isa):
    w, n = 2, 777
    zeros = np.zeros((w, n), np.uint64)
    q0 = np.zeros((3, w), np.uint64)
    # all ties: the lowest slots, in order; k > n pads; thr reaches 0 at once
    for k in (1, 10, n, n + 20):
        d, s = check_same(q0, zeros, k, max_bits=128, isa=isa)
        m = min(k, n)
        assert (s[:, :m] == np.arange(m)).all() and (d[:, :m] == 0).all()
        assert (s[:, m:] == -1).all() and (d[:, m:] == -1).all()
    # mask all false, one true, all true
    none = np.zeros(n, bool)
    d, s = check_same(q0, zeros, 5, max_bits=128, mask=none, isa=isa)
    assert (s == -1).all() and (d == -1).all()
    one = none.copy()
    one[401] = True
    d, s = check_same(q0, zeros, 5, max_bits=128, mask=one, isa=isa)
    assert (s[:, 0] == 401).all() and (s[:, 1:] == -1).all()
    check_same(q0, zeros, 5, max_bits=128, mask=~none, isa=isa)
    # distances falling with the slot: every row enters, the held buffer is compacted
    falling = codes_at_distance(np.arange(n)[::-1] % 129, w)
    for k in (1, 3, 50):
        check_same(q0, falling, k, max_bits=128, isa=isa)
        check_same(q0, falling, k, max_bits=128, mask=rng.random(n) < 0.5, isa=isa)
    # few distinct distances with ties everywhere, and n = 0
    few = codes_at_distance(rng.integers(0, 4, n), w)
    for k in (1, 7, 100):
        check_same(q0, few, k, max_bits=128, isa=isa)
    d, s = check_same(q0, zeros, 4, max_bits=128, n=0, isa=isa)
    assert (s == -1).all()
    d, s = check_same(np.zeros((0, w), np.uint64), zeros, 4, max_bits=128, isa=isa)
    assert d.shape == (0, 4) and s.shape == (0, 4)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("w", [31, 32, 40, 1024])
def test_wide_codes_match_reference(rng, isa, w):
    # 31+ words overflow byte counters (avx2 flushes them); 1024 words exceed 16-bit lanes
    n = 300 if w < 1024 else 40
    codes = random_codes(rng, (w, n))
    check_same(random_codes(rng, (2, w)), codes, 9, max_bits=64 * w, isa=isa)
    near = codes[:, [5, 17]].T.copy()  # distance 0 rows exist
    check_same(near, codes, 3, max_bits=64 * w, isa=isa)


@pytest.mark.parametrize("isa", ISAS)
def test_many_queries_on_threads_match_reference(rng, isa):
    w, n, nq = 2, 9001, 130  # enough work for the wrapper to split over threads
    codes = random_codes(rng, (w, n))
    q = codes[:, rng.integers(0, n, nq)].T ^ np.uint64(0x10101)
    previous = vc.get_num_threads()
    vc.set_num_threads(2)
    try:
        check_same(q, codes, 10, max_bits=128, isa=isa)
        check_same(q, codes, 10, max_bits=128, mask=rng.random(n) < 0.7, isa=isa)
    finally:
        vc.set_num_threads(previous)


@pytest.mark.parametrize("isa", ISAS)
def test_dispatch_uses_forced_path(rng, isa):
    codes = random_codes(rng, (3, 500))
    q = random_codes(rng, (4, 3))
    ref = hamming_topk_numba(q, codes, 8, max_bits=192)
    with _native._use(isa):
        assert _native.active_isa() == isa
        got = hamming_topk(q, codes, 8, max_bits=192)
    with _native._use(None):
        assert _native.active_isa() is None
        off = hamming_topk(q, codes, 8, max_bits=192)
    for a, b in zip(got + off, ref + ref, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InvalidArgumentError, match="not usable"), _native._use("sse9"):
        pass


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind", ["simhash(num_bits=256,keep_vectors=true)",
                                  "pcahash(num_bits=64,train_size=500)",
                                  "itq(num_bits=96,train_size=500,keep_vectors=true)", "lsh"])
def test_hashing_indexes_unchanged(rng, isa, kind):
    x = rng.standard_normal((700, 96)).astype(np.float32)
    q = rng.standard_normal((9, 96)).astype(np.float32)
    name, params = vc.registry.parse_spec(kind)
    index = vc.get_kind(name).cls(dim=96, metric="ip", **params)  # positional: takes masks
    if not index.is_trained:
        index.train(x)
    index.add(x)
    mask = rng.random(700) < 0.5
    def searches():
        out = [index.search(q, k=10), index.search(q, k=10, mask=mask)]
        if index.keeps_vectors:  # a Hamming shortlist of 150 rescored exactly
            out.append(index.search(q, k=10, params={"rerank": 150}, mask=mask))
        return out

    with _native._use(None):
        ref = searches()
    with _native._use(isa):
        got = searches()
    for r, g in zip(ref, got, strict=True):
        for a, b in zip(r, g, strict=True):
            np.testing.assert_array_equal(a, b)


def test_two_threads_at_once_give_the_same_results(rng):
    w, n = 4, 20000
    codes = random_codes(rng, (w, n))
    qs = [random_codes(rng, (40, w)) for _ in range(2)]
    isa = ISAS[-1]  # explicit: the test holds under VECINDEX_NATIVE=off too
    expected = [_native.hamming_topk(q, codes, 10, max_bits=256, isa=isa) for q in qs]
    results: dict[int, list] = {0: [], 1: []}
    barrier = threading.Barrier(2)

    def work(i):
        barrier.wait()
        for _ in range(5):
            results[i].append(_native.hamming_topk(qs[i], codes, 10, max_bits=256, isa=isa))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        assert len(results[i]) == 5
        for d, s in results[i]:
            np.testing.assert_array_equal(d, expected[i][0])
            np.testing.assert_array_equal(s, expected[i][1])


# --------------------------------------------------------------------------- override
def run_config(env_value):
    env = {**os.environ, "VECINDEX_NATIVE": env_value}
    code = ("import json, numpy as np, vecindex_core as vc; from vecindex_core import _native;"
            "from vecindex_core._kernels.hamming import hamming_topk, hamming_topk_numba;"
            "c = np.arange(60, dtype=np.uint64).reshape(2, 30); q = c[:, :3].T.copy();"
            "a = hamming_topk(q, c, 5, max_bits=128);"
            "b = hamming_topk_numba(q, c, 5, max_bits=128);"
            "vc.show_config();"
            "print(json.dumps({**_native.config(), 'same': bool((a[0] == b[0]).all() and "
            "(a[1] == b[1]).all())}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    *shown, last = out.stdout.strip().splitlines()
    return "\n".join(shown), json.loads(last), out.stderr


def test_env_off_uses_numba_path():
    shown, cfg, _ = run_config("off")
    assert cfg["mode"] == "off" and cfg["isa"] is None and cfg["hamming_topk"] == "numba"
    assert cfg["dense_topk"] == "numba" and cfg["lut_topk"] == "numba"
    assert cfg["built"] and cfg["same"]
    assert "VECINDEX_NATIVE: off -> mode off" in shown and "hamming_topk:    numba" in shown


def test_env_portable_forces_the_portable_path():
    shown, cfg, _ = run_config("portable")
    assert cfg["isa"] == "portable" and cfg["hamming_topk"] == "native-portable"
    assert cfg["same"] and "native-portable" in shown


def test_env_bad_value_warns_and_uses_auto():
    _, cfg, err = run_config("fastest")
    assert cfg["mode"] == "auto"
    assert cfg["isa"] == _native._choose("auto", tuple(cfg["usable_isas"]),
                                         cfg["cpu_features"]["x86_64"])
    assert "'fastest'" in cfg["env_error"] and "RuntimeWarning" in err


# --------------------------------------------------------------------------- errors
def test_bad_buffers_raise_typed_errors(rng):
    codes = random_codes(rng, (2, 50))
    q = random_codes(rng, (3, 2))

    def call(**kw):
        args = {"qcodes": q, "codes_t": codes, "k": 5, "max_bits": 128, "isa": ISAS[-1], **kw}
        return _native.hamming_topk(args.pop("qcodes"), args.pop("codes_t"), args.pop("k"),
                                    **args)

    with pytest.raises(InvalidDtypeError, match="qcodes must be a uint64 array"):
        call(qcodes=q.astype(np.float64))
    with pytest.raises(InvalidDtypeError, match="codes_t must be a uint64 array"):
        call(codes_t=codes.astype(np.int64))
    with pytest.raises(DimensionMismatchError, match="3 words per code, but qcodes has 2"):
        call(codes_t=random_codes(rng, (3, 50)))
    with pytest.raises(InvalidArgumentError, match="2-D"):
        call(qcodes=q[0])
    with pytest.raises(InvalidArgumentError, match="k must be"):
        call(k=-1)
    with pytest.raises(InvalidArgumentError, match="k must be"):
        call(k=2.0)
    with pytest.raises(InvalidArgumentError, match="max_bits"):
        call(max_bits=-1)
    with pytest.raises(InvalidArgumentError, match=r"n must be an integer in \[0, 50\].*got 51"):
        call(n=51)
    with pytest.raises(DimensionMismatchError, match="mask has 49 entries"):
        call(mask=np.ones(49, bool))
    with pytest.raises(InvalidDtypeError, match="mask must be a bool array"):
        call(mask=np.ones(50, np.int8))
    with pytest.raises(InvalidArgumentError, match="unknown native path 'sse9'"):
        call(isa="sse9")
    with pytest.raises(InvalidArgumentError, match="at least one uint64 word"):
        call(qcodes=np.zeros((3, 0), np.uint64), codes_t=np.zeros((0, 50), np.uint64))


def test_n_must_be_an_integer_in_range(rng):
    # n was passed through int(): 2.5 scanned 2 rows, '7' 7 rows, True 1 row; 2**70 raised a
    # bare OverflowError
    codes = random_codes(rng, (2, 50))
    q = random_codes(rng, (3, 2))
    for bad in (2.5, "7", True, np.float64(3.0), -1, 51, 2**70):
        with pytest.raises(InvalidArgumentError, match=r"n must be an integer in \[0, 50\]"):
            _native.hamming_topk(q, codes, 5, max_bits=128, n=bad, isa=ISAS[-1])
    check_same(q, codes, 5, max_bits=128, n=np.int64(17), isa=ISAS[-1])


def test_huge_k_raises_our_error(rng):
    # numpy's "array is too big" ValueError escaped untyped; k past n otherwise just pads
    codes = random_codes(rng, (1, 20))
    q = random_codes(rng, (2, 1))
    for k in (2**62, 2**70):
        with pytest.raises(InvalidArgumentError, match=f"k={k} is too large"):
            _native.hamming_topk(q, codes, k, max_bits=64, isa=ISAS[-1])
    d, s = _native.hamming_topk(q[:0], codes, 2**31, max_bits=64, isa=ISAS[-1])
    assert d.shape == (0, 2**31) and s.shape == (0, 2**31)


@pytest.mark.parametrize("isa", ISAS)
def test_k_zero_matches_reference(rng, isa):
    # the numba reference returns (nq, 0) results; the native path raised, so the dispatch
    # answered differently by path
    codes = random_codes(rng, (2, 40))
    q = random_codes(rng, (3, 2))
    d, s = check_same(q, codes, 0, max_bits=128, isa=isa)
    assert d.shape == (3, 0) and s.shape == (3, 0)
    check_same(q, codes, 0, max_bits=128, mask=np.ones(40, bool), n=10, isa=isa)
    with _native._use(isa):
        d, s = hamming_topk(q, codes, 0, max_bits=128)
    assert d.shape == (3, 0) and s.shape == (3, 0)


def test_too_wide_codes_rejected():
    # distances are int32 and the histogram has 64 w bins: past 2**24 words they would wrap;
    # zero-size arrays reach the check without allocating
    from vecindex_core._native import _vecnative as ext

    w = 2**24 + 1
    q = np.zeros((0, w), np.uint64)
    codes = np.zeros((w, 0), np.uint64)
    with pytest.raises(InvalidArgumentError, match="too wide"):
        ext.hamming_topk(q, codes, 0, 1, None, 0, 0, np.empty((0, 1), np.int32),
                         np.empty((0, 1), np.int64), 0)
    with pytest.raises(InvalidArgumentError, match="too wide"):
        _native.hamming_topk(q, codes, 1, max_bits=64 * w, isa=ISAS[-1])


def test_extension_checks_its_buffers(rng):
    from vecindex_core._native import _vecnative as ext

    codes = random_codes(rng, (2, 50))
    q = random_codes(rng, (3, 2))
    d = np.empty((3, 5), np.int32)
    s = np.empty((3, 5), np.int64)
    ok = (q, codes, 50, 5, None, 0, 3, d, s, 0)

    def call(**kw):
        names = ["q", "c", "n", "k", "m", "q0", "q1", "d", "s", "isa"]
        args = dict(zip(names, ok, strict=True)) | kw
        return ext.hamming_topk(*[args[a] for a in names])

    call()
    np.testing.assert_array_equal(d, hamming_topk_numba(q, codes, 5, max_bits=128)[0])
    with pytest.raises(InvalidArgumentError, match="C-contiguous"):
        call(c=np.asfortranarray(codes))
    with pytest.raises(InvalidDtypeError, match="got list"):
        call(q=[[1, 2]])
    ro = np.empty((3, 5), np.int32)
    ro.flags.writeable = False
    with pytest.raises(InvalidArgumentError, match="writable"):
        call(d=ro)
    with pytest.raises(InvalidDtypeError, match="out_s must be a int64"):
        call(s=np.empty((3, 5), np.int32))
    with pytest.raises(DimensionMismatchError, match=r"shape \(3, 5\)"):
        call(d=np.empty((3, 4), np.int32))
    with pytest.raises(InvalidArgumentError, match="query range"):
        call(q1=4)
    with pytest.raises(InvalidArgumentError, match="path 7 is not available"):
        call(isa=7)
    with pytest.raises(InvalidArgumentError, match="k must be >= 0, got -1"):
        call(k=-1)


def test_error_paths_release_every_buffer(rng):
    # each failure after some buffers were taken must give them all back (no leaked refs)
    from vecindex_core._native import _vecnative as ext

    codes = random_codes(rng, (2, 50))
    q = random_codes(rng, (3, 2))
    m = np.ones(50, bool)
    d = np.empty((3, 5), np.int32)
    s = np.empty((3, 5), np.int64)
    arrays = (q, codes, m, d, s)
    bad_calls = [
        (q, codes, 50, 5, np.ones(50, np.int8), 0, 3, d, s, 0),  # bad mask
        (q, codes, 50, 5, m, 0, 3, s, s, 0),  # bad out_d
        (q, codes, 50, 5, m, 0, 3, d, d, 0),  # bad out_s
        (q, codes, 51, 5, m, 0, 3, d, s, 0),  # n out of range
        (q, codes, 50, 4, m, 0, 3, d, s, 0),  # out shape
        (q, codes, 50, 5, m, 2, 1, d, s, 0),  # query range
        (q, codes, 50, 5, np.ones(10, bool), 0, 3, d, s, 0),  # short mask
    ]
    before = [sys.getrefcount(a) for a in arrays]
    for args in bad_calls:
        for _ in range(20):
            with pytest.raises((InvalidArgumentError, InvalidDtypeError)):
                ext.hamming_topk(*args)
    assert [sys.getrefcount(a) for a in arrays] == before


def test_cli_info_reports_native(capsys):
    from vecindex_core.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"native kernels: built True, path in use {_native.active_isa() or 'none'}" in out
    assert main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["native"]["built"] is True
