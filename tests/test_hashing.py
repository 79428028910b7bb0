"""Binary hashing kinds beyond the conformance suite: kernels against numpy references,
training, rerank, LSH buckets under updates, multi-probe order and the fallback."""

import itertools

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core._kernels.hamming import hamming_topk, pack_bits, rescore_topk, words_for
from vecindex_core._kernels.lsh import _probe_flips
from vecindex_core._kernels.projections import itq_rotation, pca, random_projection
from vecindex_core.hashing import EXACT_MASK_ROWS, PENDING_ROWS, hamming_score

DIM = 384
KINDS = ["simhash", "pcahash(train_size=100)", "itq(train_size=100)", "lsh"]


# --------------------------------------------------------------------------- references
def np_hamming(qcodes, codes):
    """Hamming distances (nq, n) by unpacking every bit: the independent reference."""
    qb = np.unpackbits(qcodes.view(np.uint8), axis=1)
    cb = np.unpackbits(codes.view(np.uint8), axis=1)
    return (qb[:, None, :] != cb[None, :, :]).sum(2)


def np_topk_by_distance(dist, k, mask=None):
    """Rows by (distance, slot); disallowed rows never appear; -1 padding."""
    nq, n = dist.shape
    allowed = np.ones(n, bool) if mask is None else mask
    out_d = np.full((nq, k), -1)
    out_s = np.full((nq, k), -1)
    for r in range(nq):
        rows = [j for j in sorted(range(n), key=lambda j: (dist[r, j], j)) if allowed[j]][:k]
        out_d[r, : len(rows)] = dist[r, rows]
        out_s[r, : len(rows)] = rows
    return out_d, out_s


def positional(spec, x, metric="ip"):
    name, params = vc.registry.parse_spec(spec)
    index = vc.get_kind(name).cls(dim=x.shape[1], metric=metric, **params)
    if not index.is_trained:
        index.train(x)
    index.add(x)
    return index


# --------------------------------------------------------------------------- packing
@pytest.mark.parametrize("bits", [1, 7, 63, 64, 65, 130, 256])
def test_pack_bits_layout(rng, bits):
    b = rng.random((9, bits)) < 0.5
    packed = pack_bits(b)
    assert packed.dtype == np.uint64 and packed.shape == (9, words_for(bits))
    for i, j in itertools.product(range(9), range(bits)):
        assert bool((int(packed[i, j // 64]) >> (j % 64)) & 1) == b[i, j]
    # unused high bits stay zero, so XOR + popcount is the Hamming distance
    unpacked = np.unpackbits(packed.view(np.uint8), axis=1, bitorder="little")
    assert not unpacked[:, bits:].any()


def test_pack_bits_groups_start_on_words(rng):
    b = rng.random((5, 3 * 10)) < 0.5
    packed = pack_bits(b, groups=3)
    assert packed.shape == (5, 3)
    for g in range(3):
        np.testing.assert_array_equal(packed[:, g], pack_bits(b[:, g * 10 : (g + 1) * 10])[:, 0])


# --------------------------------------------------------------------------- Hamming top-k
@pytest.mark.parametrize("bits", [5, 64, 100, 200, 320])
@pytest.mark.parametrize("with_mask", [False, True])
def test_hamming_topk_equals_numpy(rng, bits, with_mask):
    n, nq, k = 700, 13, 25
    codes = pack_bits(rng.random((n, bits)) < 0.5)
    codes[100:110] = codes[50]  # exact ties resolved by the lower slot
    qcodes = pack_bits(rng.random((nq, bits)) < 0.5)
    qcodes[0] = codes[50]
    mask = rng.random(n) < 0.3 if with_mask else None
    ref_d, ref_s = np_topk_by_distance(np_hamming(qcodes, codes), k, mask)
    d, s = hamming_topk(qcodes, np.ascontiguousarray(codes.T), k, max_bits=bits, mask=mask)
    np.testing.assert_array_equal(s, ref_s)
    np.testing.assert_array_equal(d, ref_d)


def test_hamming_topk_compacts_its_held_rows():
    # rows arrive ever closer in runs of k: every row enters, far more than the 2k + 512 held
    k, run = 10, 10
    dist = np.repeat(np.arange(64, 0, -1), run)  # 640 rows: 64 x10, 63 x10, ..., 1 x10
    bits = np.arange(64)[None, :] < dist[:, None]  # the query is all zeros
    codes = np.ascontiguousarray(pack_bits(bits).T)
    d, s = hamming_topk(np.zeros((1, 1), np.uint64), codes, k, max_bits=64)
    np.testing.assert_array_equal(d[0], [1] * 10)
    np.testing.assert_array_equal(s[0], np.arange(630, 640))
    d, s = hamming_topk(np.zeros((1, 1), np.uint64), codes, 15, max_bits=64)
    np.testing.assert_array_equal(d[0], [1] * 10 + [2] * 5)
    np.testing.assert_array_equal(s[0], list(range(630, 640)) + list(range(620, 625)))


def test_hamming_topk_pads_and_uses_a_prefix_of_the_buffer(rng):
    codes = pack_bits(rng.random((40, 70)) < 0.5)
    buffer = np.zeros((2, 64), np.uint64)  # capacity beyond n, as the indexes keep it
    buffer[:, :40] = codes.T
    q = codes[:3]
    d, s = hamming_topk(q, buffer, 50, max_bits=70, n=40)
    assert (s[:, 40:] == -1).all() and (d[:, 40:] == -1).all()
    assert (np.sort(s[:, :40], axis=1) == np.arange(40)).all()
    mask = np.zeros(40, bool)
    mask[[3, 30]] = True
    d, s = hamming_topk(q, buffer, 5, max_bits=70, n=40, mask=mask)
    assert all(set(row[:2]) == {3, 30} for row in s.tolist())
    assert (s[:, 2:] == -1).all()


def test_hamming_topk_same_with_any_thread_count(rng):
    codes = np.ascontiguousarray(pack_bits(rng.random((20_000, 128)) < 0.5).T)
    q = pack_bits(rng.random((200, 128)) < 0.5)
    old = vc.get_num_threads()
    try:
        vc.set_num_threads(1)
        one = hamming_topk(q, codes, 10, max_bits=128)
        vc.set_num_threads(2)
        two = hamming_topk(q, codes, 10, max_bits=128)
    finally:
        vc.set_num_threads(old)
    np.testing.assert_array_equal(one[1], two[1])


@pytest.mark.parametrize("l2", [False, True])
def test_rescore_topk_is_exact_among_candidates(rng, l2):
    x = rng.standard_normal((300, 16)).astype(np.float32)
    q = rng.standard_normal((6, 16)).astype(np.float32)
    cand = np.stack([rng.permutation(300)[:40] for _ in range(6)]).astype(np.int64)
    cand[:, 35:] = -1
    scores, slots, counts = rescore_topk(q, x, cand, 10, l2=l2)
    for r in range(6):
        rows = cand[r][cand[r] >= 0]
        exact = -((x[rows] - q[r]) ** 2).sum(1) if l2 else x[rows] @ q[r]
        order = np.argsort(-exact, kind="stable")[:10]
        assert set(slots[r]) == set(rows[order])
        np.testing.assert_allclose(scores[r], exact[order], rtol=1e-5, atol=1e-5)
    assert (counts == 10).all()


# --------------------------------------------------------------------------- multi-probe
def test_probe_flips_come_in_increasing_score_order(rng):
    b = 7
    margins = rng.random(b).astype(np.float32)
    flips = np.zeros(2**b, np.uint64)
    got = _probe_flips(margins, 2**b - 1, flips)
    assert got == 2**b
    score = [sum(float(margins[j]) ** 2 for j in range(b) if int(f) >> j & 1) for f in flips]
    assert score == sorted(score)
    assert len(set(flips.tolist())) == 2**b  # every bucket exactly once


def test_more_probes_find_a_superset_of_candidates(sample):
    index = positional("lsh(num_bits=14,num_tables=4)", sample.base)
    before = None
    for probes in (0, 1, 4, 16):
        _, cand = index.search_stats(sample.queries[:50], 1, params={"num_probes": probes})
        if before is not None:
            assert (cand >= before).all()
        before = cand


# --------------------------------------------------------------------------- scores
def test_hamming_score_function():
    s = hamming_score([0, 32, 64], 64, "cosine")
    np.testing.assert_allclose(s, [1.0, 0.0, -1.0], atol=1e-7)
    np.testing.assert_allclose(hamming_score([0, 64], 64, "l2"), [0.0, -4.0], atol=1e-6)
    assert (np.diff(hamming_score(np.arange(129), 128, "ip")) < 0).all()
    assert hamming_score([3], 10, "ip").dtype == np.float32


@pytest.mark.parametrize("metric", vc.METRICS)
def test_hamming_only_scores_are_the_documented_function(small, metric):
    x, q = small
    index = positional("itq(train_size=100,num_bits=96)", x, metric)
    res = index.search(q, 10)
    dist = np_hamming(index.encode(index.prepare(q)), np.ascontiguousarray(index.codes))
    expected = hamming_score(np.take_along_axis(dist, res.ids, 1), 96, metric)
    np.testing.assert_array_equal(res.scores, expected)


# --------------------------------------------------------------------------- memory
@pytest.mark.parametrize("bits", [1, 64, 65, 200])
def test_codes_take_exactly_n_words(small, bits):
    x, _ = small
    index = positional(f"simhash(num_bits={bits})", x)
    assert index.codes.nbytes == len(x) * words_for(bits) * 8
    model = DIM * bits * 4 + DIM * 4 + bits * 4
    assert index.memory_bytes() == index.codes.nbytes + model
    kept = positional(f"simhash(num_bits={bits},keep_vectors=true)", x)
    assert kept.memory_bytes() == index.memory_bytes() + x.nbytes


def test_lsh_memory_is_keys_plus_stated_overhead(small):
    x, _ = small
    index = positional("lsh(num_bits=20,num_tables=6,keep_vectors=false)", x)
    n = len(x)
    assert index.codes.shape == (n, 6) and index.codes.nbytes == n * 6 * 8
    model = DIM * 120 * 4 + DIM * 4 + 120 * 4
    tables = n * 6 * (8 + 4) + n  # sorted key copy + int32 slot per table, one flag per row
    assert index.memory_bytes() == index.codes.nbytes + model + tables


# --------------------------------------------------------------------------- rerank
@pytest.mark.parametrize(
    ("spec", "floor"),
    [
        ("simhash(keep_vectors=true,rerank=100)", 0.62),
        ("pcahash(keep_vectors=true,rerank=100)", 0.68),
        ("itq(keep_vectors=true,rerank=100)", 0.85),
        ("lsh", 0.78),
    ],
)
def test_rerank_recall_on_real_data(sample, recall, spec, floor):
    # measured on the bundled sample: 0.667, 0.714, 0.890, 0.822
    index = vc.create(spec, dim=DIM, metric="ip")
    index.add(sample.base)
    res = index.search(sample.queries, 10)
    assert recall(res.ids, sample.gt, 10) >= floor
    if not spec.startswith("lsh"):  # rescoring is what lifts the hashers this far
        plain = index.search(sample.queries, 10, params={"rerank": 0})
        assert recall(res.ids, sample.gt, 10) > recall(plain.ids, sample.gt, 10) + 0.2


def test_rerank_scores_are_exact(small):
    x, q = small
    index = positional("itq(train_size=100,keep_vectors=true)", x, "l2")
    res = index.search(q, 10, params={"rerank": 50})
    exact = -((x[res.ids] - q[:, None, :]) ** 2).sum(2)
    np.testing.assert_allclose(res.scores, exact, rtol=1e-4, atol=1e-4)
    assert (np.diff(res.scores, axis=1) <= 0).all()


def test_rerank_needs_kept_vectors(small):
    x, q = small
    with pytest.raises(vc.InvalidParameterError, match="rerank=5 needs keep_vectors"):
        vc.create("simhash(rerank=5)", dim=DIM)
    index = vc.create("itq(train_size=100)", dim=DIM)
    index.add(x)
    before = index.to_bytes()
    with pytest.raises(vc.InvalidParameterError, match="rerank=20 needs keep_vectors"):
        index.search(q, 5, params={"rerank": 20})
    assert index.to_bytes() == before


# --------------------------------------------------------------------------- parameters
@pytest.mark.parametrize(("spec", "match"), [
    ("pcahash(num_bits=500)", "num_bits=500 exceeds dim=384"),
    ("itq(num_bits=400)", "num_bits=400 exceeds dim=384"),
    ("simhash(projection_distribution=uniform)", "'uniform' is not allowed.*'rademacher'"),
    ("lsh(num_bits=65)", "num_bits=65 is out of range"),
    ("simhash(num_bits=0)", "num_bits=0 is out of range"),
    ("pcahash(num_probes=3)", "unknown parameter 'num_probes'"),
])
def test_bad_parameters_raise_typed_errors(spec, match):
    with pytest.raises(vc.InvalidParameterError, match=match):
        vc.create(spec, dim=DIM)


def test_rademacher_projection_is_scaled_signs():
    w = random_projection(64, 100, "rademacher", seed=3)
    assert w.shape == (64, 100) and w.dtype == np.float32
    np.testing.assert_allclose(np.abs(w), 1 / 8)


def test_gaussian_projection_blocks_are_orthonormal():
    w = random_projection(32, 80, "gaussian", seed=1).astype(np.float64)
    for start in (0, 32):
        block = w[:, start : start + 32]
        np.testing.assert_allclose(block.T @ block, np.eye(32), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(w[:, 64:], axis=0), 1, atol=1e-5)


def test_seeds_decide_the_index(small):
    x, _ = small
    a, b, c = (vc.create(f"simhash(seed={s})", dim=DIM) for s in (1, 1, 2))
    for index in (a, b, c):
        index.add(x)
    assert a.to_bytes() == b.to_bytes() != c.to_bytes()


# --------------------------------------------------------------------------- training
def test_pca_is_exact_and_deterministic(small):
    x, _ = small
    mean, comps, var = pca(x, 16)
    centred = x.astype(np.float64) - x.mean(0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    for i in range(16):  # the same directions as an SVD, up to sign
        assert abs(float(comps[:, i] @ vt[i])) > 0.999
    np.testing.assert_allclose(var, sv[:16] ** 2 / (len(x) - 1), rtol=1e-4)
    np.testing.assert_allclose(comps.T @ comps, np.eye(16), atol=1e-5)
    np.testing.assert_allclose(mean, x.mean(0), atol=1e-6)
    assert (comps[np.abs(comps).argmax(0), np.arange(16)] > 0).all()
    again = pca(x.copy(), 16)
    np.testing.assert_array_equal(again[1], comps)


def test_itq_rotation_lowers_the_quantization_loss(small):
    x, _ = small
    mean, comps, _ = pca(x, 32)
    v = ((x - mean) @ comps).astype(np.float32)

    def loss(r):
        vr = v @ r
        return float(((np.sign(vr) - vr) ** 2).sum())

    start = itq_rotation(v, 0, seed=5)
    learned = itq_rotation(v, 50, seed=5)
    np.testing.assert_allclose(learned.T @ learned, np.eye(32), atol=1e-4)
    assert loss(learned) < loss(start)
    assert loss(learned) <= loss(itq_rotation(v, 10, seed=5)) + 1e-3


@pytest.mark.parametrize("spec", ["itq(train_size=100)", "pcahash(train_size=100)"])
def test_training_does_not_depend_on_the_thread_count(sample, spec):
    from threadpoolctl import threadpool_limits

    models = []
    for n in (1, 2):
        with threadpool_limits(limits=n):
            index = positional(spec, sample.base)
        models.append(index.to_bytes())
    assert models[0] == models[1]


def test_median_thresholds_balance_the_bits(small):
    x, _ = small
    for spec in ("pcahash(train_size=100)", "simhash(use_median_thresholds=true,train_size=100)"):
        index = positional(spec, x)
        bits = np.unpackbits(np.ascontiguousarray(index.codes).view(np.uint8), axis=1,
                             bitorder="little")[:, :128]
        np.testing.assert_allclose(bits.mean(0), 0.5, atol=0.01)


def test_trained_state_is_named_and_saved(small, tmp_path):
    x, _ = small
    index = positional("itq(train_size=100,num_bits=32)", x)
    assert index.components_.shape == (DIM, 32) and index.mean_.shape == (DIM,)
    assert index.rotation_.shape == (32, 32) and index.thresholds_.shape == (32,)
    index.save(tmp_path / "itq.vecidx")
    loaded = vc.VectorIndex.load(tmp_path / "itq.vecidx")
    for name in ("components_", "mean_", "rotation_", "thresholds_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(index, name))


def test_automatic_training_at_train_size(small, reference):
    x, q = small
    index = vc.create("pcahash(train_size=300)", dim=DIM, metric="ip")
    index.add(x[:299])
    assert not index.is_trained
    exact = reference(x[:299], q, 10, "ip")
    np.testing.assert_array_equal(index.search(q, 10).ids.astype(np.int64), exact[1])
    index.add(x[299])
    assert index.is_trained and len(index) == 300
    index.add(x[300:])  # encoded with the frozen model
    assert len(index) == len(x)
    pos = vc.PCAHashIndex(DIM, "ip", train_size=300)
    pos.train(x[:300])
    pos.add(x)
    np.testing.assert_array_equal(index.search(q, 10).ids.astype(np.int64),
                                  pos.search(q, 10).ids)


def test_train_is_a_no_op_for_data_oblivious_kinds(small):
    x, _ = small
    for spec in ("simhash", "lsh"):
        index = positional(spec, x[:100])
        before = index.to_bytes()
        index.train(x)
        assert index.to_bytes() == before


def test_retraining_an_index_with_rows_raises_and_changes_nothing(small):
    x, _ = small
    for spec in ("pcahash(train_size=100)", "itq(train_size=100)",
                 "simhash(use_median_thresholds=true,train_size=100)"):
        index = positional(spec, x[:300])
        before = index.to_bytes()
        with pytest.raises(vc.InvalidArgumentError, match="holds 300 rows"):
            index.train(x)
        assert index.to_bytes() == before


def test_encoding_before_training_raises(small):
    x, _ = small
    index = vc.ITQIndex(DIM, "ip", train_size=100)
    with pytest.raises(vc.NotTrainedError, match="itq.*must be trained before encoding"):
        index.encode(x[:2])
    index.train(x)
    assert index.memory_bytes() == sum(
        a.nbytes for a in (index.components_, index.mean_, index.thresholds_, index.rotation_))


def test_normalize_inputs_makes_codes_scale_free(small):
    x, _ = small
    index = positional("pcahash(train_size=100,normalize_inputs=true)", x)
    scaled = index.encode(x[:50] * 7.5)
    np.testing.assert_array_equal(scaled, index.encode(x[:50]))
    plain = positional("pcahash(train_size=100)", x)
    assert (plain.encode(x[:50] * 7.5) != plain.encode(x[:50])).any()


# --------------------------------------------------------------------------- masks
def test_small_mask_is_searched_exactly(small, reference):
    x, q = small
    index = positional("itq(train_size=100,keep_vectors=true)", x)
    mask = np.zeros(len(x), bool)
    mask[::40] = True
    assert mask.sum() <= EXACT_MASK_ROWS
    res = index.search(q, 10, mask=mask)
    np.testing.assert_array_equal(res.ids, reference(x, q, 10, "ip", mask)[1])


def test_sparse_mask_gather_equals_in_scan_mask(small):
    x, q = small
    index = positional("itq(train_size=100)", x)
    codes = index._codes
    qc = index.encode(index.prepare(q))
    mask = np.zeros(len(x), bool)
    mask[::20] = True  # 5%: the index gathers these rows first
    in_scan = hamming_topk(qc, codes, 10, max_bits=128, mask=mask, n=len(x))
    gathered = index._hamming(qc, 10, mask)
    np.testing.assert_array_equal(gathered[1], in_scan[1])
    np.testing.assert_array_equal(gathered[0], in_scan[0])


# --------------------------------------------------------------------------- lsh
def test_lsh_fallback_never_returns_short_results(small):
    x, q = small
    index = positional("lsh(num_bits=64,num_tables=1,num_probes=0)", x)
    res, cand = index.search_stats(q, 10)
    assert (cand == -1).any(), "64-bit keys: most queries find nothing in their bucket"
    assert (res.counts == 10).all() and (res.ids >= 0).all()
    mask = np.zeros(len(x), bool)
    mask[:300] = True  # above the exact route's size only when the index is large
    res = index.search(q, 10, mask=mask)
    assert (res.counts == 10).all() and np.isin(res.ids, np.flatnonzero(mask)).all()


@pytest.mark.parametrize("keep", [True, False])
def test_lsh_buckets_stay_consistent_under_updates(sample, keep):
    """Adds (pending rows), removes (tombstones, relabels) and rebuilds must give the same
    results as an index built fresh from the surviving rows with the same ids."""
    x, q = sample.base, sample.queries[:40]
    rng = np.random.default_rng(7)
    spec = f"lsh(num_bits=10,num_tables=6,num_probes=3,keep_vectors={str(keep).lower()})"
    index = vc.create(spec, dim=DIM, metric="ip")
    index.add(x[:3000])
    live = set(range(3000))
    nxt = 3000
    for step in range(300):
        if rng.random() < 0.5 and nxt < len(x):
            n_add = int(rng.integers(1, 30))
            ids = np.arange(nxt, min(nxt + n_add, len(x)))
            index.add(x[ids], ids=ids)
            live.update(ids.tolist())
            nxt = int(ids[-1]) + 1
        else:
            gone = rng.choice(sorted(live), size=int(rng.integers(1, 40)), replace=False)
            assert index.remove(gone) == len(gone)
            live.difference_update(gone.tolist())
        if step % 60 == 0:
            inner = index.index
            assert inner._pending.size == inner._num_pending
            assert inner._pending.size <= max(PENDING_ROWS, inner._skeys.shape[1] // 8)
    keep_ids = np.array(sorted(live))
    fresh = vc.create(spec, dim=DIM, metric="ip")
    fresh.add(x[keep_ids], ids=keep_ids)
    a, b = index.search(q, 10), fresh.search(q, 10)
    np.testing.assert_array_equal(a.scores, b.scores)
    if keep:
        np.testing.assert_array_equal(a.ids, b.ids)
    else:  # Hamming scores tie often, and ties go by slot, which differs: compare above them
        for ra, rb, s in zip(a.ids, b.ids, a.scores, strict=True):
            assert set(ra[s > s[-1]]) == set(rb[s > s[-1]])
    assert set(index.ids.tolist()) == live
    # and after a save/load (which rebuilds the buckets from the keys)
    c = vc.IdMapIndex.from_bytes(index.to_bytes()).search(q, 10)
    np.testing.assert_array_equal(c.ids, a.ids)


def test_lsh_rows_scored_and_candidates(sample, recall):
    index = positional("lsh", sample.base)
    res, cand = index.search_stats(sample.queries, 10, params={"num_probes": 16, "rerank": 200})
    assert (cand >= 0).all()
    assert np.minimum(cand, 200).mean() < 0.1 * len(sample.base)  # rows scored exactly
    assert recall(res.ids, sample.gt, 10) >= 0.78
    empty = vc.LSHIndex(DIM, "ip").search_stats(sample.queries[:2], 3)
    assert (empty[0].counts == 0).all() and (empty[1] == 0).all()
    with pytest.raises(vc.InvalidParameterError, match="bogus"):
        index.search_stats(sample.queries[:2], 3, params={"bogus": 1})
