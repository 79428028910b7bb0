"""Flat ``pq`` on the uint8 fast scan: nibble tables, the blocked store, recall against the
float byte-table route on the dev data, every native path, storage, masks and rerank."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import _native
from vecindex_core._kernels.blocked import BlockedCodes
from vecindex_core._kernels.codes import lut_topk, unpack_codes
from vecindex_core._kernels.topk import finalize_heaps, init_heaps
from vecindex_core.errors import DimensionMismatchError, NotSupportedError
from vecindex_core.pq import PQIndex, ProductQuantizer

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "dev"
ISAS = list(_native._usable())


def _recall(ids, gt, k=10):
    """Mean share of each row's reference ids (``-1`` padding left out) found in ``ids``."""
    hits = [len(set(a[:k]) & set(b[:k]) - {-1}) / max(1, np.count_nonzero(b[:k] >= 0))
            for a, b in zip(ids, gt, strict=True)]
    return float(np.mean(hits))


def _byte_route(index, q, k, mask=None):
    """The previous route: float byte tables over row-major codes (numba ``lut_topk``)."""
    hs, hi = init_heaps(q.shape[0], k)
    lut_topk(index.pq.tables(index.prepare(q), l2=index.metric == "l2"),
             np.ascontiguousarray(index.codes), hs, hi, mask=mask)
    return finalize_heaps(hs, hi)


def _float_scores(index, q, slots):
    """Float asymmetric scores of ``slots`` (nq, k) from the byte tables (-inf at -1)."""
    tables = index.pq.tables(index.prepare(q), l2=index.metric == "l2").astype(np.float64)
    codes = index.codes
    out = np.full(slots.shape, -np.inf)
    for r in range(slots.shape[0]):
        for c, s in enumerate(slots[r]):
            if s >= 0:
                out[r, c] = tables[r, np.arange(codes.shape[1]), codes[s]].sum()
    return out


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((700, 40)).astype(np.float32)
    q = rng.standard_normal((9, 40)).astype(np.float32)
    return x, q


def _index(x, metric="ip", nbits=4, m=10, **kw):
    idx = PQIndex(x.shape[1], metric, m=m, nbits=nbits, train_size=300, **kw)
    idx.train(x[:300])
    return idx


# --------------------------------------------------------------------------- nibble tables
@pytest.mark.parametrize(("nbits", "m"), [(4, 5), (4, 10), (2, 10), (2, 7), (1, 5), (1, 20)])
@pytest.mark.parametrize("l2", [False, True])
def test_nibble_tables_score_codes_as_the_byte_tables(data, nbits, m, l2):
    x, q = data
    pq = ProductQuantizer(40, m, nbits, niter=5, seed=3)
    pq.train(x)
    codes = pq.encode(x[:50])
    nib = pq.nibble_tables(q, l2=l2)
    assert nib.shape == (9, 2 * pq.code_bytes, 16) and nib.dtype == np.float32
    # nibble t of a packed row: low (even t) or high (odd t) half of byte t // 2
    nibbles = unpack_codes(codes, 4, 2 * pq.code_bytes)
    t = np.arange(nibbles.shape[1])
    got = nib[:, t[None, :], nibbles].astype(np.float64).sum(-1)  # (nq, n)
    byte = pq.tables(q, l2=l2)
    want = byte[:, np.arange(pq.code_bytes)[None, :], codes].astype(np.float64).sum(-1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    # entries of nibbles past m are zero
    per = 4 // pq.bits
    used = -(-m // per)
    assert (nib[:, used:] == 0).all()


def test_nibble_tables_of_a_two_bit_sub_code_sum_in_the_documented_order(data):
    x, q = data
    pq = ProductQuantizer(40, 10, 2, niter=5, seed=1)
    pq.train(x)
    s = pq._sub_tables(q, l2=False)
    nib = pq.nibble_tables(q, l2=False)
    c = np.arange(16)
    assert np.array_equal(nib[:, 3], s[:, 6, c & 3] + s[:, 7, c >> 2])


def test_nibble_tables_reject_other_widths_and_shapes(data):
    x, q = data
    pq = ProductQuantizer(40, 10, 8, niter=2)
    pq.train(x)
    with pytest.raises(NotSupportedError, match="nbits=8"):
        pq.nibble_tables(q, l2=False)
    pq4 = ProductQuantizer(40, 10, 4, niter=2)
    pq4.train(x)
    with pytest.raises(DimensionMismatchError, match=r"\(9, 39\)"):
        pq4.nibble_tables(q[:, :39], l2=False)
    for width in (39, 41):  # the byte tables check the width too (tables pad nothing)
        with pytest.raises(DimensionMismatchError, match=rf"\(9, {width}\)"):
            pq.tables(np.zeros((9, width), np.float32), l2=False)


@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_nibble_luts_are_the_quantized_nibble_tables_after_a_retrain(data, nbits):
    """The codebooks' transposed copy follows each assignment: a second training (a new
    array) gives the new tables."""
    from vecindex_core._kernels.fastscan import pq_tables, quantize_luts

    x, q = data
    pq = ProductQuantizer(40, 10, nbits, niter=2)
    for seed in (0, 1):
        pq.seed = seed
        pq.train(x[::-1] if seed else x)
        for l2 in (False, True):  # against the raw codebooks (no cached transposed copy)
            t = pq_tables(q, pq.codebooks_, l2=l2, bits=pq.bits)
            for got in (pq.nibble_luts(q, l2=l2), (pq.nibble_tables(q, l2=l2),)):
                for a, b in zip((t, *quantize_luts(t)), got, strict=False):
                    assert np.array_equal(a.view(np.uint8), b.view(np.uint8))
    with pytest.raises(NotSupportedError, match="nbits=8"):
        ProductQuantizer(40, 10, 8, niter=2).nibble_luts(q, l2=False)


# --------------------------------------------------------------------------- store
@pytest.mark.parametrize("nb", [1, 5])
def test_blocked_store_follows_a_row_model(nb):
    rng = np.random.default_rng(nb)
    store, model = BlockedCodes(nb), np.empty((0, nb), np.uint8)
    for step in range(40):
        if model.shape[0] and step % 3 == 2:  # swap-remove a few rows
            n = model.shape[0]
            gone = rng.choice(n, size=min(n, int(rng.integers(1, 40))), replace=False)
            keep = np.setdiff1d(np.arange(n), gone)
            src = keep[keep >= n - gone.size]
            dst = np.sort(gone[gone < n - gone.size])
            store.compact(src.astype(np.int64), dst.astype(np.int64), n - gone.size)
            model[dst] = model[src]
            model = model[: n - gone.size]
        else:
            rows = rng.integers(0, 256, (int(rng.integers(0, 70)), nb), dtype=np.uint8)
            store.append(rows)
            model = np.concatenate([model, rows])
        assert len(store) == model.shape[0] and np.array_equal(store.to_rows(), model)
        assert store.tail.shape == (model.shape[0] % 32, nb)
        assert store.capacity >= store.full
    back = BlockedCodes.from_rows(model)
    assert np.array_equal(back.to_rows(), model)
    assert np.array_equal(back.blocks[: back.full // 32], store.blocks[: store.full // 32])


# --------------------------------------------------------------------------- dev data
@pytest.fixture(scope="module")
def dev():
    x = np.load(DEV / "base.npy")
    q = np.load(DEV / "queries.npy")[:200]
    gt = np.load(DEV / "queries_gt_ip_100.npy")[:200, :10]
    return x, q, gt


@pytest.mark.parametrize(("m", "nbits"), [(48, 4), (96, 2)])
def test_dev_recall_and_scores_match_the_float_byte_tables(dev, m, nbits):
    x, q, gt = dev
    idx = PQIndex(384, "ip", m=m, nbits=nbits, train_size=5000, pq_niter=10)
    idx.train(x[:5000])
    idx.add(x)
    assert idx.fast_scan
    fast = idx.search(q, 10)
    _, slow_ids, _ = _byte_route(idx, q, 10)
    r_fast, r_slow = _recall(fast.ids, gt), _recall(slow_ids, gt)
    assert abs(r_fast - r_slow) <= 0.01, (r_fast, r_slow)
    # the reported scores are the float estimate of the returned rows
    want = _float_scores(idx, q, fast.ids)
    np.testing.assert_allclose(fast.scores, want, rtol=0, atol=1e-5 * np.abs(want).max())
    # and the same old route still reachable on the index
    old = idx._float_search(idx.prepare(q), 10, None, np.ascontiguousarray(idx.codes))
    assert abs(_recall(old[1], gt) - r_fast) <= 0.01


# --------------------------------------------------------------------------- paths
@pytest.mark.parametrize("nbits", [1, 2, 4])
@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_every_native_path_gives_the_reference_results(data, nbits, metric):
    x, q = data
    idx = _index(x, metric, nbits)
    idx.add(x[:301])
    idx.add(x[301:])
    mask = np.random.default_rng(1).random(idx.ntotal) < 0.5
    rare = np.zeros(idx.ntotal, bool)
    rare[[3, 650, 699]] = True  # gathered before the scan

    def run():
        return [idx.search(q, 10), idx.search(q, 10, mask=mask), idx.search(q, 10, mask=rare),
                idx.search(q[:1], 800)]

    with _native._use(None):
        want = run()
    for isa in ISAS:
        with _native._use(isa):
            got = run()
        for w, g in zip(want, got, strict=True):
            assert np.array_equal(w.ids, g.ids) and np.array_equal(w.scores, g.scores)
    assert mask[want[1].ids].all()
    assert set(want[2].ids[0][:3]) == {3, 650, 699} and (want[2].ids[:, 3:] == -1).all()
    assert want[3].counts[0] == 700 and sorted(want[3].ids[0][:700]) == list(range(700))
    # every row ranked by the float estimate once the shortlist holds them all
    full = _float_scores(idx, q[:1], want[3].ids[:, :700])
    assert (np.diff(full[0]) <= 1e-4 * np.abs(full).max()).all()


def test_native_off_in_a_subprocess_gives_the_same_results():
    script = """
import json
import numpy as np
from vecindex_core import _native
from vecindex_core.pq import PQIndex
rng = np.random.default_rng(0)
x = rng.standard_normal((500, 40)).astype(np.float32)
q = rng.standard_normal((6, 40)).astype(np.float32)
out = {"isa": _native.active_isa(), "res": {}}
for nbits in (1, 2, 4):
    for metric in ("ip", "l2"):
        idx = PQIndex(40, metric, m=10, nbits=nbits, train_size=200, pq_niter=5)
        idx.train(x[:200])
        idx.add(x)
        for name, mask in (("third", np.arange(500) % 3 != 0), ("rare", np.arange(500) < 20)):
            r = idx.search(q, 10, mask=mask)
            out["res"][f"{nbits}-{metric}-{name}"] = [r.ids.tolist(), r.scores.tolist()]
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


# --------------------------------------------------------------------------- storage
@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_interleaved_add_remove_equals_a_fresh_index(data, nbits):
    x, q = data
    rng = np.random.default_rng(nbits)
    idx = _index(x, "l2", nbits, keep_vectors=True)
    rows = np.empty(0, np.int64)  # which row of x each slot holds
    nxt = 0
    for step in range(14):
        if rows.size and step % 2:
            gone = rng.choice(rows.size, size=min(rows.size, int(rng.integers(1, 45))),
                              replace=False)
            moves = idx.remove(gone)
            rows[moves.dst] = rows[moves.src]
            rows = rows[: rows.size - gone.size]
        else:
            take = int(rng.integers(1, 90))
            idx.add(x[nxt : nxt + take])
            rows = np.concatenate([rows, np.arange(nxt, min(nxt + take, len(x)))])
            nxt += take
        assert idx.ntotal == rows.size
        assert np.array_equal(idx.codes, idx.pq.encode(x[rows]))
    fresh = _index(x, "l2", nbits, keep_vectors=True)
    fresh.add(x[rows])
    assert np.array_equal(fresh.pq.codebooks_, idx.pq.codebooks_)
    for kw in ({}, {"params": {"rerank": 30}}, {"mask": np.arange(rows.size) % 4 == 0}):
        r1, r2 = idx.search(q, 10, **kw), fresh.search(q, 10, **kw)
        assert np.array_equal(r1.ids, r2.ids) and np.array_equal(r1.scores, r2.scores)
    while idx.ntotal:  # down to empty through every partial block
        idx.remove(np.arange(min(37, idx.ntotal)))
        assert idx.codes.shape == (idx.ntotal, idx.pq.code_bytes)
    assert (idx.search(q, 3).ids == -1).all()


@pytest.mark.parametrize("nbits", [2, 4, 8])
def test_save_load_round_trip_keeps_row_major_codes(data, tmp_path, nbits):
    x, q = data
    idx = _index(x, "l2", nbits)
    idx.add(x)
    idx.remove([0, 31, 100, 650])
    _, arrays = idx._get_state()
    assert arrays["codes"].shape == (696, idx.pq.code_bytes)
    assert np.array_equal(arrays["codes"], idx.codes)
    path = tmp_path / "pq.vidx"
    idx.save(path)
    back = vc.load(path)
    back = back.index if hasattr(back, "index") else back
    assert isinstance(back, PQIndex) and back.fast_scan == (nbits != 8)
    assert np.array_equal(back.codes, idx.codes)
    r1, r2 = idx.search(q, 10), back.search(q, 10)
    assert np.array_equal(r1.ids, r2.ids) and np.array_equal(r1.scores, r2.scores)
    back.add(x[:40])  # the loaded store grows
    assert np.array_equal(back.codes[696:], idx.pq.encode(x[:40]))


def test_memory_is_codes_and_codebooks(data):
    x, _ = data
    idx = _index(x, "ip", 4)
    fixed = idx.memory_bytes()
    assert fixed == 2 * idx.pq.codebooks_.nbytes  # and their transposed copy
    idx.add(x)  # one add to an empty index: complete blocks plus a row-major partial block
    assert idx.memory_bytes() == fixed + 700 * idx.pq.code_bytes


# --------------------------------------------------------------------------- masks, rerank
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_masks_return_allowed_rows_like_the_byte_tables(data, metric):
    x, q = data
    idx = _index(x, metric, 4)
    idx.add(x)
    rng = np.random.default_rng(5)
    for frac in (0.5, 0.05, 0.005):
        mask = rng.random(700) < frac
        got = idx.search(q, 10, mask=mask)
        _, want_ids, want_counts = _byte_route(idx, q, 10, mask=mask)
        assert np.array_equal(got.counts, want_counts)
        ok = got.ids >= 0
        assert mask[got.ids[ok]].all() and (got.scores[~ok] == -np.inf).all()
        assert _recall(got.ids, want_ids) >= 0.9
    none = idx.search(q, 5, mask=np.zeros(700, bool))
    assert (none.ids == -1).all() and (none.counts == 0).all()


def test_rerank_scores_exactly(data):
    x, q = data
    idx = _index(x, "ip", 2, keep_vectors=True)
    idx.add(x)
    res = idx.search(q, 10, params={"rerank": 60})
    exact = np.einsum("qkd,qd->qk", x[res.ids], q)
    np.testing.assert_allclose(res.scores, exact, rtol=1e-5, atol=1e-5)
    gt = np.argsort(-(q @ x.T), axis=1)[:, :10]
    assert _recall(res.ids, gt) >= _recall(idx.search(q, 10).ids, gt)
