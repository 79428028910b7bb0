"""ivf_pq / ivf_tq on blocked codes (1/2/4-bit widths, the uint8 fast scan): a random model of
adds and removes against a fresh index, persistence, native against the numba reference, the
fast route against the float estimate, layout invariants, and tiny/empty cases."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import _native
from vecindex_core._kernels.codes import dequantize
from vecindex_core._kernels.fastscan import BLOCK
from vecindex_core._kernels.rotation import rotate
from vecindex_core.ivf import LUT_BYTES, CodedIVFIndex
from vecindex_core.types import Metric

DIM = 384
NLIST = 6
MISSING = np.uint64(2**64 - 1)

# (kind, codec params, metric, by_residual): every width and metric, residual on and off
CASES = [
    ("ivf_pq", {"m": 24, "nbits": 4}, "ip", True),
    ("ivf_pq", {"m": 24, "nbits": 4}, "l2", False),
    ("ivf_pq", {"m": 48, "nbits": 4}, "cosine", True),
    ("ivf_pq", {"m": 48, "nbits": 2}, "ip", False),
    ("ivf_pq", {"m": 24, "nbits": 2}, "l2", True),
    ("ivf_pq", {"m": 48, "nbits": 2}, "cosine", False),
    ("ivf_pq", {"m": 24, "nbits": 1}, "ip", True),
    ("ivf_tq", {"bits": 4}, "l2", True),
    ("ivf_tq", {"bits": 4}, "ip", False),
    ("ivf_tq", {"bits": 2}, "cosine", True),
    ("ivf_tq", {"bits": 2}, "l2", False),
    ("ivf_tq", {"bits": 1}, "ip", False),
    ("ivf_tq", {"bits": 1}, "cosine", True),
]
IDS = [f"{k}-{'-'.join(f'{a}{b}' for a, b in c.items())}-{m}-{'res' if r else 'direct'}"
       for k, c, m, r in CASES]


def _params(case: tuple[str, dict[str, int], str, bool], **extra: Any) -> dict[str, Any]:
    kind, codec, _, residual = case
    out: dict[str, Any] = {"nlist": NLIST, "niter": 8, "seed": 3, "by_residual": residual,
                           **codec, **extra}
    if kind == "ivf_pq":
        out["pq_niter"] = 8
    return out


def make(case: tuple[str, dict[str, int], str, bool], train: np.ndarray,
         **extra: Any) -> vc.IdMapIndex:
    """A trained, empty IdMapIndex over the case's index (trained on ``train``)."""
    kind, _, metric, _ = case
    inner = vc.create(kind, dim=DIM, metric=cast(Metric, metric),
                      **_params(case, **extra)).index
    inner.train(train)
    assert isinstance(inner, CodedIVFIndex) and inner.fast_scan
    return vc.IdMapIndex(inner)


def assert_same(a: Any, b: Any) -> None:
    """Two SearchResults identical bit for bit."""
    assert np.array_equal(a.ids, b.ids)
    assert np.array_equal(np.asarray(a.scores).view(np.uint32),
                          np.asarray(b.scores).view(np.uint32))
    assert np.array_equal(a.counts, b.counts)


def check_layout(inner: CodedIVFIndex) -> None:
    """Blocked lists: aligned starts and caps, no overlap, entry/slot maps inverse."""
    n = inner.ntotal
    start, size, cap = inner._start, inner._size, inner._cap
    assert (start % BLOCK == 0).all() and (cap % BLOCK == 0).all()
    assert (size <= cap).all() and int(size.sum()) == n
    assert inner._arena["codes"].shape[0] * BLOCK == inner._eslot.shape[0]
    assert inner._used % BLOCK == 0 and inner._used <= inner._eslot.shape[0]
    used = np.flatnonzero(cap > 0)
    order = np.argsort(start[used])
    ends = start[used][order] + cap[used][order]
    assert (ends[:-1] <= start[used][order][1:]).all() and (ends <= inner._used).all()
    ent = inner._entry[:n].astype(np.int64)
    assert np.array_equal(inner._eslot[ent], np.arange(n))
    live = np.concatenate([np.arange(s, s + z) for s, z in zip(start, size, strict=True)]
                          + [np.empty(0, np.int64)])
    assert np.array_equal(inner._entry[inner._eslot[live]], live)
    assert np.array_equal(np.sort(inner._eslot[live]), np.arange(n))


def float_estimate(inner: CodedIVFIndex, q: np.ndarray) -> np.ndarray:
    """Scores (nq, ntotal) in slot order recomputed in numpy (float64) from decoded codes."""
    n = inner.ntotal
    qp = inner.prepare(q).astype(np.float64)
    ents = inner._entry[:n].astype(np.int64)
    codes = inner._take("codes", ents)
    lists = inner._lists_of_entries(ents)
    if isinstance(inner, vc.IVFPQIndex):
        est = qp @ inner.pq.decode(codes).astype(np.float64).T
    else:
        assert isinstance(inner, vc.IVFTQIndex)
        tq = inner.codec
        dec = dequantize(codes, tq.bits, DIM, tq.codebook_).astype(np.float64)
        rq = rotate(inner.prepare(q), tq.seed).astype(np.float64)
        est = (rq @ dec.T) * inner._take("scale", ents).astype(np.float64)[None]
    if inner.params["by_residual"]:
        assert inner.centroids_ is not None
        est += qp @ inner.centroids_[lists].astype(np.float64).T
    if inner.metric == "l2":
        xn = inner._take("sqn", ents).astype(np.float64)
        est = -np.maximum((qp**2).sum(1)[:, None] + xn[None] - 2 * est, 0)
    return est


@pytest.fixture(scope="module")
def data(sample):
    """Training rows, a pool of rows to add, and queries."""
    return sample.base[:600], sample.base[600:3600], sample.queries[:24]


# --------------------------------------------------------------------------- 1 + 4: the model
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_adds_and_removes_equal_a_fresh_index(data, case):
    train, pool, q = data
    rng = np.random.default_rng(len(IDS[CASES.index(case)]) * 7 + CASES.index(case))
    index = make(case, train)
    inner = index.index
    alive: dict[int, int] = {}  # id -> pool row, in insertion order (the lists' order)
    row, relocated, dead = 0, False, 0
    arena, mem = inner._eslot.shape[0], inner.memory_bytes()
    for _ in range(60):
        if not alive or rng.random() < 0.6:
            n = int(rng.integers(1, 71))
            rows = np.arange(row, row + n) % pool.shape[0]
            row += n
            ids = rng.choice(1 << 40, size=n, replace=False).astype(np.uint64)
            ids = ids[~index.contains_ids(ids)]
            rows = rows[: ids.size]
            starts = inner._start.copy()
            index.add(pool[rows], ids)
            alive.update(zip(ids.tolist(), rows.tolist(), strict=True))
            relocated |= bool((inner._start != starts).any())
            # growth compacts first when dead room exceeds the rows held
            held_rows = int(inner._aligned(inner._size).sum())
            assert inner._used - int(inner._cap.sum()) <= max(held_rows, inner._used // 2)
        else:
            held = np.fromiter(alive, np.uint64)
            gone = rng.choice(held, size=int(rng.integers(1, min(60, held.size) + 1)),
                              replace=False)
            absent = rng.choice(1 << 40, size=3).astype(np.uint64)
            absent = absent[~index.contains_ids(absent)]
            assert index.remove(np.concatenate([gone, absent])) == gone.size
            for i in gone.tolist():
                del alive[i]
        assert index.ntotal == len(alive)
        check_layout(inner)
        dead = max(dead, inner._used - int(inner._cap.sum()))
        if rng.random() < 0.15:  # an explicit compaction as well
            inner._compact()
            assert inner._used == int(inner._cap.sum())
            check_layout(inner)
        if inner._eslot.shape[0] > arena:  # the arena grew: so does the reported memory
            assert inner.memory_bytes() > mem
        arena, mem = inner._eslot.shape[0], inner.memory_bytes()
        assert mem >= sum(a.nbytes for a in inner._arena.values()) + inner._eslot.nbytes
    assert relocated and dead > 0  # lists moved, leaving dead room behind
    assert (inner._size > BLOCK).any()

    # the same rows in slot order: the same (slot, id, code) sets, so identical results
    by_slot = make(case, train)
    ids = np.array(index.ids)
    by_slot.add(pool[[alive[i] for i in ids.tolist()]], ids)
    # the same rows in insertion order: the same lists, so the same saved arrays
    by_list = make(case, train)
    ins = np.fromiter(alive, np.uint64)
    by_list.add(pool[list(alive.values())], ins)
    again = vc.IdMapIndex.from_bytes(index.to_bytes())
    check_layout(again.index)
    for params in ({"nprobe": 2}, {"nprobe": NLIST}, {"nprobe": 3, "ratio_threshold": 0.5}):
        for k in (1, 10, 70):
            res = index.search(q, k, params=params)
            assert_same(res, by_slot.search(q, k, params=params))
            assert_same(res, again.search(q, k, params=params))
            other = by_list.search(q, k, params=params)
            assert np.array_equal(res.scores.view(np.uint32), other.scores.view(np.uint32))

    _, mine = inner._get_state()
    _, fresh = by_list.index._get_state()
    assert set(mine) == set(fresh)
    for name, arr in fresh.items():
        if name == "slots":  # slots differ; the ids they hold, list by list, do not
            assert np.array_equal(index.ids[mine[name]], by_list.ids[arr])
        else:
            assert np.array_equal(mine[name], arr), name
    # the file holds row-major rows, list by list: the encoding of each list's vectors
    assert mine["payload/codes"].shape == (index.ntotal, inner.code_bytes)
    xp = inner.prepare(pool[[alive[i] for i in index.ids[mine["slots"]].tolist()]])
    want = inner._encode(xp, np.repeat(np.arange(NLIST), mine["list_sizes"]))
    for name, rows in want.items():
        assert np.array_equal(mine[f"payload/{name}"], rows), name


# --------------------------------------------------------------------------- 2: native vs off
def _both(fn: Any) -> tuple[Any, Any]:
    """``fn()`` on the active native path (the widest usable one when the suite runs with
    ``VECINDEX_NATIVE=off``: the extension is built either way) and on the numba
    reference."""
    usable = _native._usable()
    assert usable, "the native extension must be built for this test"
    with _native._use(_native.active_isa() or usable[-1]):
        native = fn()
    with _native._use(None):
        off = fn()
    return native, off


NATIVE_CASES = [CASES[0], CASES[1], CASES[5], CASES[6], CASES[7], CASES[9], CASES[11]]


@pytest.mark.parametrize("case", NATIVE_CASES, ids=[IDS[CASES.index(c)] for c in NATIVE_CASES])
def test_native_equals_the_reference_path(data, case):
    train, pool, q = data
    rng = np.random.default_rng(CASES.index(case))
    x = pool[:1500]
    plain = make(case, train)
    plain.add(x, np.arange(1500, dtype=np.uint64) * 3)
    kept = make(case, train, keep_vectors=True, calibrate=True)
    kept.add(x)
    half = rng.random(1500) < 0.5
    few = (np.flatnonzero(rng.random(1500) < 0.03) * 3).astype(np.uint64)
    sizes = plain.index.list_sizes
    ntotal = plain.ntotal
    calls: list[tuple[vc.IdMapIndex, int, dict[str, Any]]] = [
        (plain, 10, {}),
        (plain, 10, {"params": {"nprobe": NLIST}}),
        (plain, 10, {"params": {"nprobe": 3, "ratio_threshold": 0.6}}),
        (plain, 10, {"allow": half}),
        (plain, 10, {"allow": few}),
        (plain, 40, {"allow": few, "params": {"nprobe": 1}}),  # short: re-probed
        (plain, int(sizes.max()) + 20, {"params": {"nprobe": 1}}),  # k > rows probed
        (plain, ntotal + 30, {}),  # k > ntotal
        (plain, ntotal + 30, {"allow": half}),
        (kept, 10, {}),
        (kept, 10, {"params": {"rerank": 40}}),
        (kept, 10, {"allow": half, "params": {"rerank": 25, "nprobe": 2}}),
        (kept, ntotal + 5, {"params": {"nprobe": 1}}),
    ]
    for index, k, kw in calls:
        native, off = _both(lambda index=index, k=k, kw=kw: index.search(q, k, **kw))
        assert_same(native, off)
        allowed = ntotal if "allow" not in kw else (
            int(kw["allow"].sum()) if kw["allow"].dtype == np.bool_ else kw["allow"].size)
        assert (native.counts == min(k, allowed)).all()
        ok = native.ids != MISSING
        assert np.array_equal(ok, np.arange(k)[None] < native.counts[:, None])
        assert np.isneginf(native.scores[~ok]).all() and np.isfinite(native.scores[ok]).all()
        if "allow" in kw:
            allow_ids = index.ids[kw["allow"]] if kw["allow"].dtype == np.bool_ else kw["allow"]
            assert np.isin(native.ids[ok], allow_ids).all()
    assert kept.index.calibration_ is not None


# --------------------------------------------------------------------------- 3: float estimate
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_scores_are_the_float_estimate_and_the_top_k_by_it(data, case):
    train, pool, q = data
    index = make(case, train)
    index.add(pool[:700])
    inner = index.index
    k = 10
    res = inner.search(q, k, params={"nprobe": NLIST})
    est = float_estimate(inner, q)
    got = np.take_along_axis(est, res.ids, axis=1)
    np.testing.assert_allclose(res.scores, got, rtol=1e-4, atol=1e-4)
    assert (np.diff(res.scores, axis=1) <= 0).all()
    exact = np.argsort(-est, axis=1, kind="stable")[:, :k]
    same = [set(a) == set(b) for a, b in zip(res.ids.tolist(), exact.tolist(), strict=True)]
    assert np.mean(same) >= 0.95, f"{np.mean(same)} of the queries match the exact top-k"


# --------------------------------------------------------------------------- 5: tiny cases
@pytest.mark.parametrize("case", [CASES[0], CASES[4], CASES[8], CASES[12]],
                         ids=[IDS[i] for i in (0, 4, 8, 12)])
def test_removing_everything_then_adding_again(data, case):
    train, pool, q = data
    index = make(case, train)
    ids = index.add(pool[:300])
    index.remove(ids[::2])
    index.remove(ids[1::2])
    assert index.ntotal == 0
    check_layout(index.index)
    for kw in ({}, {"allow": np.zeros(0, bool)}, {"allow": ids[:5]},
               {"params": {"nprobe": NLIST}}):
        for res in _both(lambda kw=kw: index.search(q[:3], 5, **kw)):
            assert (res.ids == MISSING).all() and np.isneginf(res.scores).all()
            assert (res.counts == 0).all()
    empty = vc.IdMapIndex.from_bytes(index.to_bytes())  # trained, no rows, no arena
    assert empty.index._arena["codes"].shape[0] == 0
    for kw in ({}, {"allow": np.zeros(0, bool)}):
        assert (empty.search(q[:3], 5, **kw).counts == 0).all()
    index.add(pool[300:340])
    empty.add(pool[300:340], np.arange(300, 340, dtype=np.uint64))
    check_layout(index.index)
    check_layout(empty.index)
    assert_same(index.search(q, 7), empty.search(q, 7))
    res = index.search(q[:3], 50, params={"nprobe": NLIST})
    assert (res.counts == 40).all()
    assert set(res.ids[0, :40].tolist()) == set(range(300, 340))


@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[7], CASES[11]],
                         ids=[IDS[i] for i in (0, 3, 7, 11)])
def test_lists_of_32_and_33_rows(data, case):
    train, pool, q = data
    index = make(case, train)
    inner = index.index
    labels = inner._assign(inner.prepare(pool))
    big = np.argsort(-np.bincount(labels, minlength=NLIST))[:2]
    rows = np.concatenate([np.flatnonzero(labels == big[0])[:32],
                           np.flatnonzero(labels == big[1])[:33]])
    index.add(pool[rows], np.arange(rows.size, dtype=np.uint64))
    assert sorted(inner.list_sizes[big].tolist()) == [32, 33]
    assert inner._cap[big].tolist() == [32, 64]
    check_layout(inner)
    for k in (1, 10, 32, 33, 65, 80):
        native, off = _both(lambda k=k: inner.search(q, k, params={"nprobe": NLIST}))
        assert_same(native, off)
        assert (native.counts == min(k, 65)).all()
        est = float_estimate(inner, q)
        ok = native.ids >= 0
        got = np.take_along_axis(est, np.maximum(native.ids, 0), axis=1)
        np.testing.assert_allclose(native.scores[ok], got[ok], rtol=1e-4, atol=1e-4)
    # every row returned: the padding lanes of the partial blocks never appear
    full = inner.search(q, 65, params={"nprobe": NLIST})
    assert all(sorted(r) == list(range(65)) for r in full.ids.tolist())
    # reloaded: packed lists, the empty ones starting at the end of the arena
    again = vc.IdMapIndex.from_bytes(index.to_bytes())
    assert again.index._used == 96
    check_layout(again.index)
    for nprobe in (1, NLIST):
        for k in (10, 65):
            want = index.search(q, k, params={"nprobe": nprobe})
            for got in _both(lambda k=k, p=nprobe: again.search(q, k, params={"nprobe": p})):
                assert_same(got, want)
    # one more row into the 32-row list fills a second block
    index.add(pool[np.flatnonzero(labels == big[0])[32:33]], [1000])
    check_layout(inner)
    assert sorted(inner.list_sizes[big].tolist()) == [33, 33]
    assert 1000 in index.search(q, 66, params={"nprobe": NLIST}).ids


def test_one_query_many_queries_and_query_layouts(data):
    train, pool, q = data
    case = ("ivf_tq", {"bits": 4}, "ip", True)  # 192-byte codes: a small query chunk
    index = make(case, train)
    index.add(pool[:400])
    inner = index.index
    chunk = LUT_BYTES // (128 * inner.code_bytes)
    rng = np.random.default_rng(5)
    many = (pool[rng.integers(0, pool.shape[0], chunk + 37)]
            + 0.01 * rng.standard_normal((chunk + 37, DIM))).astype(np.float32)
    params = {"nprobe": 2}
    whole = index.search(many, 10, params=params)
    parts = [index.search(many[a : a + 500], 10, params=params)
             for a in range(0, many.shape[0], 500)]
    assert np.array_equal(whole.ids, np.concatenate([p.ids for p in parts]))
    assert np.array_equal(whole.scores.view(np.uint32),
                          np.concatenate([p.scores for p in parts]).view(np.uint32))
    one = index.search(q[3], 10, params=params)
    assert one.ids.shape == (1, 10)
    assert_same(one, index.search(q[3:4], 10, params=params))
    ref = index.search(q, 10, params=params)
    assert_same(index.search(q.astype(np.float64), 10, params=params), ref)
    fortran = np.asfortranarray(q)
    assert not fortran.flags.c_contiguous
    assert_same(index.search(fortran, 10, params=params), ref)
    strided = np.repeat(q, 2, axis=0)[::2]
    assert not strided.flags.c_contiguous
    assert_same(index.search(strided, 10, params=params), ref)
    assert_same(index.search(q, 10, params=params, allow=np.ones(400, bool)), ref)
