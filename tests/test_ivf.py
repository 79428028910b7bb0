"""IVF and PQ kinds beyond the conformance suite: list bookkeeping under updates, probing
rules, exactness of the list scans, codec scores against numpy references, persistence."""

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core._kernels.ivf import probe_ranges, ratio_keep
from vecindex_core.errors import IndexFormatError, InvalidParameterError, NotSupportedError
from vecindex_core.ivf import IVFFlatIndex
from vecindex_core.pq import IVFPQIndex, PQIndex, ProductQuantizer, container_bits

DIM = 384


def trained(cls, x, metric="ip", **params):
    index = cls(x.shape[1], metric, **params)
    index.train(x)
    return index


def check_lists(index):
    """Every slot's entry points back to it; lists are contiguous and hold each slot once."""
    n = index.ntotal
    ent = index._entry[:n]
    assert np.array_equal(index._eslot[ent], np.arange(n))
    covered = np.concatenate([np.arange(s, s + z) for s, z in
                              zip(index._start, index._size, strict=True)] + [np.empty(0, int)])
    assert np.array_equal(np.sort(index._eslot[covered]), np.arange(n))
    assert (index._size <= index._cap).all()


# --------------------------------------------------------------------------- probing rules
def test_ratio_keep_is_sign_aware_and_keeps_the_best():
    s = np.array([[0.8, 0.5, 0.3, -np.inf],
                  [-1.0, -1.5, -3.0, -4.0],
                  [0.0, -0.1, -0.2, -5.0]], dtype=np.float32)
    keep = ratio_keep(s, 0.5)
    # positive best: score >= 0.5 * 0.8; negative best: score >= -1 / 0.5 = -2
    assert keep.tolist() == [[True, True, False, False],
                             [True, True, False, False],
                             [True, False, False, False]]
    assert ratio_keep(s, 0.0).tolist() == np.isfinite(s).tolist()
    assert ratio_keep(s, 1.0)[:, 0].all()


def test_ratio_on_l2_is_the_distance_rule(rng):
    d2 = np.sort(rng.random((20, 8)).astype(np.float32) * 10, axis=1)
    keep = ratio_keep(-d2, 0.25)
    assert np.array_equal(keep, d2 <= d2[:, :1] / 0.25)


def test_probe_ranges():
    start, size = np.array([0, 10, 4]), np.array([3, 5, 0])
    r = probe_ranges(np.array([[1, 0, 2]]), np.array([[True, False, True]]), start, size)
    assert r.tolist() == [[[10, 15], [0, 0], [4, 4]]]


# --------------------------------------------------------------------------- ivf_flat
@pytest.mark.parametrize("metric", vc.METRICS)
@pytest.mark.parametrize("nq", [1, 3, 40])
def test_ivf_flat_probing_every_list_is_exact(sample, metric, nq, reference):
    x, q = sample.base[:2000], sample.queries[:nq]
    index = trained(IVFFlatIndex, x, metric, nlist=16, train_size=100)
    index.add(x)
    res = index.search(q, 10, params={"nprobe": 16})
    flat = vc.FlatIndex(DIM, metric)
    flat.add(x)
    ref = flat.search(q, 10)
    assert np.array_equal(res.ids, ref.ids)
    np.testing.assert_allclose(res.scores, ref.scores, rtol=1e-5, atol=1e-5)


def test_more_probes_never_lower_recall(sample, sample_gt, recall):
    x, q = sample.base, sample.queries
    index = trained(IVFFlatIndex, x, "ip", nlist=32, train_size=100)
    index.add(x)
    recalls = [recall(index.search(q, 10, params={"nprobe": p}).ids, sample_gt["ip"], 10)
               for p in (1, 4, 16, 32)]
    assert recalls == sorted(recalls) and recalls[-1] == 1.0
    skipped = recall(index.search(q, 10, params={"nprobe": 16, "ratio_threshold": 0.9}).ids,
                     sample_gt["ip"], 10)
    assert skipped <= recalls[2]


def test_lists_stay_consistent_under_adds_and_removes(sample, rng):
    x = sample.base[:1500]
    index = trained(IVFFlatIndex, x, "l2", nlist=8, train_size=100)
    alive = []  # slot -> row of x, mirrored through swap-removes
    for step in range(30):
        rows = rng.choice(x.shape[0], size=int(rng.integers(1, 60)), replace=False)
        index.add(x[rows])
        alive.extend(rows.tolist())
        if step % 3 == 2:
            slots = np.unique(rng.choice(index.ntotal, size=int(rng.integers(1, 40))))
            moves = index.remove(slots)
            model = np.array(alive)
            model[moves.dst] = model[moves.src]
            alive = model[: index.ntotal].tolist()
        check_lists(index)
    q = sample.queries[:5]
    res = index.search(q, 10, params={"nprobe": 8})
    flat = vc.FlatIndex(DIM, "l2")
    flat.add(x[alive])
    ref = flat.search(q, 10)
    assert np.array_equal(res.ids, ref.ids)
    np.testing.assert_array_equal(index.get_vectors(np.arange(index.ntotal)), x[alive])


def test_one_by_one_equals_one_batch_and_memory_is_tight(sample):
    x = sample.base[:600]
    a = trained(IVFFlatIndex, x, "ip", nlist=8, train_size=100)
    b = trained(IVFFlatIndex, x, "ip", nlist=8, train_size=100)
    a.add(x)
    for row in x:
        b.add(row)
    assert a.to_bytes() == b.to_bytes()
    payload = x.nbytes + 8 * len(x)  # vectors and the two int32 maps
    assert a.memory_bytes() <= payload * 1.05 + a.centroids_.nbytes + 1024


def test_short_results_fall_back_to_every_list(sample):
    x, q = sample.base[:2000], sample.queries[:4]
    index = trained(IVFFlatIndex, x, "ip", nlist=16, train_size=100)
    index.add(x)
    # allow only rows of one list that the queries do not probe first
    cells = index._assign(x)
    far = np.argmin(np.bincount(cells, minlength=16)[np.unique(cells)])
    mask = cells == np.unique(cells)[far]
    res = index.search(q, 5, params={"nprobe": 1}, mask=mask)
    want = min(5, int(mask.sum()))
    assert (res.counts == want).all()
    assert mask[res.ids[:, :want]].all()


def test_ivf_state_is_validated_on_load(sample):
    x = sample.base[:500]
    index = trained(IVFFlatIndex, x, "ip", nlist=4, train_size=100)
    index.add(x)
    header, arrays = index._to_file()
    bad = dict(arrays)
    bad["index/list_sizes"] = arrays["index/list_sizes"] + 1
    with pytest.raises(IndexFormatError, match="list sizes"):
        IVFFlatIndex.from_bytes(vc.io.write_index(None, header, bad))
    bad = dict(arrays)
    bad["index/slots"] = np.zeros_like(arrays["index/slots"])
    with pytest.raises(IndexFormatError, match="permutation"):
        IVFFlatIndex.from_bytes(vc.io.write_index(None, header, bad))


def test_retraining_a_filled_index_raises_and_changes_nothing(sample):
    x = sample.base[:300]
    index = trained(IVFFlatIndex, x, "ip", nlist=4, train_size=100)
    index.add(x)
    before = index.to_bytes()
    with pytest.raises(vc.InvalidArgumentError, match="holds 300 rows"):
        index.train(x)
    assert index.to_bytes() == before


# --------------------------------------------------------------------------- pq
@pytest.mark.parametrize(("m", "nbits"), [(48, 8), (96, 4), (40, 3), (7, 2)])
def test_pq_tables_score_the_reconstruction(sample, m, nbits):
    x, q = sample.base[:800], sample.queries[:3]
    pq = ProductQuantizer(DIM, m, nbits, niter=5)
    pq.train(x)
    codes = pq.encode(x)
    assert codes.shape == (800, -(-m * container_bits(nbits) // 8))
    rec = pq.decode(codes)
    for l2 in (False, True):
        t = pq.tables(q, l2=l2)
        from vecindex_core._kernels.codes import unpack_codes

        raw = unpack_codes(codes, 8, codes.shape[1]).astype(np.int64)
        got = t[np.arange(3)[:, None, None], np.arange(t.shape[1])[None, None, :],
                raw[None]].sum(-1)
        want = (-((q[:, None] - rec[None]) ** 2).sum(-1) if l2 else q @ rec.T)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", vc.METRICS)
def test_pq_search_scores_are_the_asymmetric_scores(sample, metric):
    x, q = sample.base[:600], sample.queries[:5]
    index = trained(PQIndex, x, metric, m=24, nbits=4, train_size=100)
    index.add(x)
    res = index.search(q, 10)
    qp = index.prepare(q)
    rec = index.pq.decode(index.codes)
    full = (-((qp[:, None] - rec[None]) ** 2).sum(-1) if metric == "l2" else qp @ rec.T)
    got = np.take_along_axis(full, res.ids, axis=1)
    np.testing.assert_allclose(res.scores, got, rtol=1e-4, atol=1e-4)
    assert np.allclose(np.sort(full, axis=1)[:, ::-1][:, :10], res.scores, atol=1e-4)


@pytest.mark.parametrize("metric", vc.METRICS)
@pytest.mark.parametrize("residual", [True, False])
def test_ivf_pq_scores_estimate_the_reconstruction(sample, metric, residual):
    """Scores are q . x_hat with x_hat = c_l + r_hat (or the direct reconstruction)."""
    x, q = sample.base[:800], sample.queries[:4]
    index = trained(IVFPQIndex, x, metric, nlist=8, train_size=100, m=24, nbits=4,
                    by_residual=residual)
    index.add(x)
    res = index.search(q, 5, params={"nprobe": 8})
    qp = index.prepare(q)
    slots = res.ids
    rec = index.pq.decode(index._take("codes", index._entry[slots.ravel()].astype(np.int64)))
    if residual:
        rec += index.centroids_[index._assign(index.prepare(x))[slots.ravel()]]
    rec = rec.reshape(*slots.shape, DIM)
    want = np.einsum("qd,qkd->qk", qp, rec)
    if metric == "l2":  # |x|^2 is stored exactly; only the inner product is estimated
        xs = index.prepare(x)[slots]
        want = -((qp**2).sum(1)[:, None] + (xs**2).sum(-1) - 2 * want)
    np.testing.assert_allclose(res.scores, want, rtol=1e-3, atol=1e-3)


def test_rerank_needs_kept_vectors_and_helps(sample, sample_gt, recall):
    x, q = sample.base, sample.queries
    with pytest.raises(InvalidParameterError, match="keep_vectors"):
        IVFPQIndex(DIM, "ip", rerank=10)
    index = trained(IVFPQIndex, x, "ip", nlist=8, train_size=100, m=24, nbits=4)
    index.add(x)
    with pytest.raises(InvalidParameterError, match="keep_vectors"):
        index.search(q, 10, params={"rerank": 50})
    kept = trained(IVFPQIndex, x, "ip", nlist=8, train_size=100, m=24, nbits=4,
                   keep_vectors=True)
    kept.add(x)
    plain = recall(kept.search(q, 10).ids, sample_gt["ip"], 10)
    reranked = kept.search(q, 10, params={"rerank": 100})
    assert recall(reranked.ids, sample_gt["ip"], 10) > plain
    np.testing.assert_allclose(  # reranked scores are exact
        reranked.scores, np.take_along_axis(q @ x.T, reranked.ids, axis=1), rtol=1e-5)


def test_pq_rejects_m_above_dim():
    with pytest.raises(InvalidParameterError, match="m=500"):
        PQIndex(DIM, "ip", m=500)


# --------------------------------------------------------------------------- ivf_ae
def test_ivf_ae_parameters_and_missing_torch(monkeypatch):
    with pytest.raises(InvalidParameterError, match="compression_dim=384"):
        vc.create("ivf_ae(compression_dim=384)", dim=DIM)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    with pytest.raises(NotSupportedError, match=r"vecindex\[torch\]"):
        vc.create("ivf_ae", dim=DIM)


def test_ivf_ae_compresses_and_reranks(sample, sample_gt, recall):
    x, q = sample.base, sample.queries
    index = vc.create("ivf_ae(nlist=8,train_size=200,compression_dim=64,keep_vectors=true)",
                      dim=DIM, metric="ip")
    index.add(x)
    inner = index.index
    assert inner.compressor_ is not None and inner._arena["x"].shape[1] == 64
    plain = recall(index.search(q, 10, params={"nprobe": 8}).ids, sample_gt["ip"], 10)
    reranked = recall(index.search(q, 10, params={"nprobe": 8, "rerank": 50}).ids,
                      sample_gt["ip"], 10)
    assert reranked >= plain and reranked > 0.9
    again = vc.IdMapIndex.from_bytes(index.to_bytes())
    assert np.array_equal(again.search(q, 10).ids, index.search(q, 10).ids)


# --------------------------------------------------------------------------- ivf_tq
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_ivf_tq_probing_every_list_matches_turboquant(sample, bits):
    """Without residuals, ivf_tq over every list scores exactly as turboquant does."""
    x, q = sample.base[:1000], sample.queries[:6]
    ivf = trained(vc.IVFTQIndex, x, "ip", nlist=4, train_size=100, bits=bits,
                  by_residual=False)
    ivf.add(x)
    tq = vc.TurboQuantIndex(DIM, "ip", bits=bits)
    tq.add(x)
    a, b = ivf.search(q, 10, params={"nprobe": 4}), tq.search(q[:1], 10)
    np.testing.assert_allclose(a.scores[:1], b.scores, rtol=1e-5, atol=1e-5)
    assert np.array_equal(a.ids[:1], b.ids)


@pytest.mark.parametrize("cls", [vc.IVFTQIndex, vc.IVFPQIndex])
def test_calibration_maps_scores_not_ranking(sample, cls):
    x, q = sample.base, sample.queries[:20]
    kw = {"nlist": 8, "train_size": 2000}
    if cls is vc.IVFPQIndex:
        kw.update(m=24, nbits=4)
    plain = trained(cls, x[:2000], "ip", **kw)
    cal = trained(cls, x[:2000], "ip", calibrate=True, **kw)
    assert cal.calibration_ is not None and cal.calibration_[0] > 0
    for index in (plain, cal):
        index.add(x)
    a, b = plain.search(q, 10), cal.search(q, 10)
    assert np.array_equal(a.ids, b.ids)
    exact = np.take_along_axis(q @ x.T, b.ids, axis=1)
    assert abs(float(np.mean(b.scores - exact))) <= abs(float(np.mean(a.scores - exact)))
    again = cls.from_bytes(cal.to_bytes())
    np.testing.assert_array_equal(again.calibration_, cal.calibration_)
