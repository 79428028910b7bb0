"""The ``faiss`` kind: factories, knobs, masks, removes, persistence and errors.

The conformance suite runs the kind's ``TEST_SPECS`` entry (IVF16,Flat) through every
contract test; this module covers what differs between faiss factories.
"""

import copy
import pickle
import subprocess
import sys

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

import vecindex_core as vc  # noqa: E402
from vecindex_core.backends.faiss_backend import TOMBSTONE, FaissIndex  # noqa: E402
from vecindex_core.registry import format_spec, parse_spec  # noqa: E402

from .conftest import ground_truth_f64, recall_at  # noqa: E402

DIM = 384
N = 2000
K = 10
#: factory -> (extra spec parameters, recall@10 floor on 2,000 rows of the sample, ip).
FACTORIES = {
    "Flat": ("", 0.999),
    "HNSW32": ("", 0.95),
    "IVF16,Flat": (",nprobe=4", 0.70),
    "IVF16,PQ8x4fs": (",train_size=500", 0.20),
    # OPQ to 64 dimensions: "OPQ8_64,IVF16,PQ8x4" trains for 25 s here (OPQ's 8-bit PQ at d=384)
    "OPQ8_64,IVF16,PQ8x4": (",nprobe=8", 0.20),
}


def spec_of(factory):
    return f'faiss(factory="{factory}"{FACTORIES[factory][0]})'


@pytest.fixture(scope="module")
def data(sample):
    return sample.base[:N], sample.queries[:20]


@pytest.fixture(scope="module")
def built(data):
    """factory -> IdMapIndex holding the 2,000 rows (ip); tests copy before mutating."""
    x, _ = data
    out = {}
    for factory in FACTORIES:
        index = vc.create(spec_of(factory), dim=DIM, metric="ip")
        index.add(x[:1024])  # trains here (the OPQ minimum): training time grows with rows
        index.add(x[1024:])
        out[factory] = index
    return out


@pytest.fixture(params=list(FACTORIES))
def factory(request):
    return request.param


# --------------------------------------------------------------------------- spec
def test_spec_round_trips_quoted_and_bare():
    index = vc.create('faiss(factory="IVF16,Flat",nprobe=4)', dim=DIM, metric="ip")
    assert index.spec == 'faiss(factory="IVF16,Flat",nprobe=4)'
    assert format_spec(*parse_spec(index.spec)) == index.spec
    assert parse_spec(index.spec) == ("faiss", {"factory": "IVF16,Flat", "nprobe": 4})
    bare = vc.create("faiss(factory=Flat)", dim=DIM, metric="l2")
    assert bare.spec == "faiss(factory=Flat)"
    assert vc.create("faiss", dim=8).spec == "faiss"  # the default factory, HNSW32
    assert vc.create("faiss", dim=8).index.factory == "HNSW32"
    odd = 'faiss(factory="IVF16(IVF4,Flat),Flat",efSearch=0)'
    assert parse_spec(vc.create(odd, dim=DIM).spec)[1] == {"factory": "IVF16(IVF4,Flat),Flat"}


# --------------------------------------------------------------------------- recall
@pytest.mark.parametrize(("factory", "metric"), [
    (f, m) for f in FACTORIES for m in ("ip", "l2", "cosine") if "OPQ" not in f or m == "l2"])
def test_recall_against_exact(factory, data, metric):
    x, q = data
    index = vc.create(spec_of(factory), dim=DIM, metric=metric)
    index.add(x[:1024])
    index.add(x[1024:])
    res = index.search(q, K)
    assert (res.counts == K).all()
    assert recall_at(res.ids, ground_truth_f64(x, q, K, metric), K) >= FACTORIES[factory][1]
    if metric == "l2":
        assert (res.scores <= 0).all()  # negated squared distances
    if factory == "Flat":  # scores are the metric's own
        xs = x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "cosine" else x
        qs = q / np.linalg.norm(q, axis=1, keepdims=True) if metric == "cosine" else q
        ref = qs @ xs[res.ids[:, 0].astype(np.int64)].T
        want = np.diag(ref)
        if metric == "l2":
            diff = qs - xs[res.ids[:, 0].astype(np.int64)]
            want = -np.einsum("ij,ij->i", diff, diff)
        np.testing.assert_allclose(res.scores[:, 0], want, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- masks
@pytest.mark.parametrize("in_scan", [False, True], ids=["default-route", "faiss-selector"])
def test_one_percent_mask_returns_exactly_k_allowed(factory, built, data, in_scan, monkeypatch):
    x, q = data
    index = copy.copy(built[factory])
    if in_scan:  # keep small masks off the exact route: filter inside faiss's scan
        monkeypatch.setattr(index.index, "_exact_route", lambda mask: None)
    mask = np.zeros(N, dtype=bool)
    mask[np.random.default_rng(3).choice(N, N // 100 + 10, replace=False)] = True  # 30 rows
    res = index.search(q, K, allow=mask)
    assert (res.counts == K).all()
    assert np.isin(res.ids, np.flatnonzero(mask)).all()
    allowed = np.flatnonzero(mask)
    truth = allowed[ground_truth_f64(x[allowed], q, K, "ip")]
    floor = 0.999 if index.index.keeps_vectors and not in_scan else 0.3
    assert recall_at(res.ids, truth, K) >= floor
    few = np.zeros(N, dtype=bool)
    few[[7, 1500, 1999]] = True
    res = index.search(q, K, allow=few)
    assert (res.counts == 3).all() and (res.ids[:, 3:] == vc.MISSING).all()
    assert all(set(r[:3].tolist()) == {7, 1500, 1999} for r in res.ids)


def test_selector_is_inside_the_scan_for_ivf_and_hnsw(built):
    for factory in ("IVF16,Flat", "HNSW32", "IVF16,PQ8x4fs", "OPQ8_64,IVF16,PQ8x4"):
        assert built[factory].index._layout.selector, factory


# --------------------------------------------------------------------------- removes
def test_removes_keep_ids_right(factory, built, data):
    x, q = data
    index = copy.copy(built[factory])
    ids = index.ids.copy()
    gone = ids[::3]
    assert index.remove(gone) == gone.size
    assert len(index) == N - gone.size
    keep = np.setdiff1d(ids, gone)
    res = index.search(q, K)
    assert (res.counts == K).all() and not np.isin(res.ids, gone).any()
    truth = keep[ground_truth_f64(x[keep], q, K, "ip")]
    assert recall_at(res.ids, truth, K) >= FACTORIES[factory][1] - 0.05
    # each surviving row, searched with its own vector, finds its own id
    probe = keep[::37]
    own = index.search(x[probe], K).ids
    found = np.mean([p in row for p, row in zip(probe, own, strict=True)])
    assert found >= (1.0 if factory in ("Flat", "HNSW32", "IVF16,Flat") else 0.8)
    if index.index.keeps_vectors:
        np.testing.assert_array_equal(index.get_vectors(probe), x[probe])
    back = gone[:5].astype(np.int64)  # removed rows come back under new ids
    again = index.add(x[back])
    only = index.search(x[back], K, allow=again)
    assert (only.counts == 5).all() and all(set(r[:5].tolist()) == set(again.tolist())
                                            for r in only.ids)
    if index.index.keeps_vectors:
        top = index.search(x[back], K).ids
        assert all(a in row for a, row in zip(again, top, strict=True))


def test_hnsw_removes_are_tombstones_then_compacted(built, data):
    x, q = data
    index = copy.copy(built["HNSW32"])
    inner = index.index
    index.remove(np.arange(0, 600, dtype=np.uint64))
    assert inner.dead_rows == 600 and inner.ntotal == N - 600
    assert inner.faiss_index.ntotal == N
    res = index.search(q, K)
    assert (res.counts == K).all() and (res.ids >= 600).all()
    pickled = pickle.loads(pickle.dumps(index))  # tombstones survive save/load
    assert pickled.index.dead_rows == 600
    np.testing.assert_array_equal(pickled.search(q, K).ids, res.ids)
    index.remove(np.arange(600, 1100, dtype=np.uint64))  # dead 1100 > live 900: rebuilt
    assert inner.dead_rows == 0 and inner.faiss_index.ntotal == inner.ntotal == 900
    np.testing.assert_array_equal(index.get_vectors(index.ids), x[index.ids.astype(np.int64)])
    own = index.search(x[1100::50], 1).ids[:, 0]
    np.testing.assert_array_equal(own, np.arange(1100, N, 50, dtype=np.uint64))


def test_positional_remove_relabels_moved_slots(factory, data):
    x, _ = data
    _, params = parse_spec(spec_of(factory))
    index = FaissIndex(dim=DIM, metric="ip", **params)
    index.train(x[:1024])
    index.add(x[:1000])
    moves = index.remove([0, 5, 999, 500])
    assert index.ntotal == 996
    moved = dict(zip(moves.dst.tolist(), moves.src.tolist(), strict=True))
    probe = np.array([0, 5, 500, 3, 995])
    rows = np.array([moved.get(int(p), int(p)) for p in probe])  # original row of each slot
    top = index.search(x[rows], 5).ids
    assert (top == probe[:, None]).any(axis=1).mean() >= 0.8
    if factory in ("Flat", "HNSW32", "IVF16,Flat"):
        np.testing.assert_array_equal(index.get_vectors(probe), x[rows])


# --------------------------------------------------------------------------- persistence
def test_save_load_round_trip(factory, built, data, tmp_path):
    _, q = data
    index = copy.copy(built[factory])
    index.remove([1, 2, 3, 500])
    ref = index.search(q, K)
    path = tmp_path / "f.vecidx"
    index.save(path)
    for other in (vc.load(path), vc.IdMapIndex.from_bytes(index.to_bytes()),
                  pickle.loads(pickle.dumps(index))):
        assert other.spec == index.spec
        res = other.search(q, K)
        np.testing.assert_array_equal(res.ids, ref.ids)
        np.testing.assert_array_equal(res.scores, ref.scores)
        assert other.to_bytes() == index.to_bytes()
    assert index.memory_bytes() > index.index.memory_bytes() > 0
    _, arrays = index.index._get_state()
    assert arrays["faiss"].dtype == np.uint8
    assert index.index.memory_bytes() == arrays["faiss"].size


def test_stored_index_must_match_the_factory(built):
    state, arrays = built["Flat"].index._get_state()
    other = FaissIndex(dim=DIM, metric="ip", factory="HNSW32")
    with pytest.raises(vc.IndexFormatError, match="IndexHNSWFlat"):
        other._set_state(state, arrays)
    with pytest.raises(vc.IndexFormatError, match="uint8"):
        other._set_state(state, {"faiss": arrays["faiss"].astype(np.int32)})
    with pytest.raises(vc.IndexFormatError, match="could not read"):
        other._set_state(state, {"faiss": arrays["faiss"][:100]})


# --------------------------------------------------------------------------- knobs
def test_params_map_to_faiss_search_parameters(built, data):
    x, q = data
    truth = ground_truth_f64(x, q, K, "ip")
    ivf = built["IVF16,Flat"]
    low = recall_at(ivf.search(q, K, params={"nprobe": 1}).ids, truth, K)
    high = recall_at(ivf.search(q, K, params={"nprobe": 16}).ids, truth, K)
    assert high == 1.0 and low < high
    opq = built["OPQ8_64,IVF16,PQ8x4"]  # IVF under a pre-transform
    inner = opq.index
    p, _ = inner._build_params(inner._knob_values({"nprobe": 3, "efSearch": 0, "max_codes": 7,
                                                   "k_factor": 0.0}, 0), None)
    assert isinstance(p, faiss.SearchParametersIVF) and (p.nprobe, p.max_codes) == (3, 7)
    a = opq.search(q, K, params={"nprobe": 1}).ids
    b = opq.search(q, K, params={"nprobe": 16}).ids
    assert not np.array_equal(a, b)
    hnsw = built["HNSW32"].index
    p, _ = hnsw._build_params(hnsw._knob_values({"nprobe": 0, "efSearch": 0, "max_codes": 0,
                                                 "k_factor": 0.0}, 0), None)
    assert isinstance(p, faiss.SearchParametersHNSW) and p.efSearch == 64  # automatic
    r16 = recall_at(built["HNSW32"].search(q, K, params={"efSearch": 10}).ids, truth, K)
    r256 = recall_at(built["HNSW32"].search(q, K, params={"efSearch": 256}).ids, truth, K)
    assert r256 >= r16


def test_nested_knobs_ivf_hnsw_quantizer_and_refine(data):
    x, q = data
    index = vc.create('faiss(factory="IVF16_HNSW8,Flat",efSearch=20,nprobe=4)', dim=DIM)
    index.add(x)
    p, keep = index.index._build_params(index.index._knob_values(
        {"nprobe": 4, "efSearch": 20, "max_codes": 0, "k_factor": 0.0}, 0), None)
    assert isinstance(p, faiss.SearchParametersIVF) and p.quantizer_params is not None
    quantizer = [o for o in keep if isinstance(o, faiss.SearchParametersHNSW)]
    assert len(quantizer) == 1 and quantizer[0].efSearch == 20
    assert (index.search(q, K).counts == K).all()
    refine = vc.create('faiss(factory="IVF16,PQ8x4fs,RFlat",train_size=500,k_factor=4)',
                       dim=DIM, metric="ip")
    refine.add(x)
    truth = ground_truth_f64(x, q, K, "ip")
    plain = recall_at(refine.search(q, K, params={"k_factor": 1.0}).ids, truth, K)
    wide = recall_at(refine.search(q, K).ids, truth, K)
    assert wide > plain
    mask = np.zeros(N, dtype=bool)
    mask[::97] = True
    res = refine.search(q, K, allow=mask)
    assert (res.counts == K).all() and np.isin(res.ids, np.flatnonzero(mask)).all()


def test_knob_that_does_not_apply_raises(built, data):
    _, q = data
    with pytest.raises(vc.InvalidParameterError, match="efSearch=32 does not apply.*IVF16"):
        vc.create('faiss(factory="IVF16,Flat",efSearch=32)', dim=DIM)
    with pytest.raises(vc.InvalidParameterError, match="nprobe=4 does not apply.*HNSW32"):
        built["HNSW32"].search(q, K, params={"nprobe": 4})
    with pytest.raises(vc.InvalidParameterError, match="k_factor"):
        built["Flat"].search(q, K, params={"k_factor": 2.0})
    with pytest.raises(vc.InvalidParameterError, match="it takes: none"):
        built["Flat"].search(q, K, params={"max_codes": 5})
    with pytest.raises(vc.InvalidParameterError, match="bogus"):
        built["Flat"].search(q, K, params={"bogus": 5})
    built["Flat"].search(q, K, params={"nprobe": 0})  # 0 = automatic, never an error


def test_bad_factory_raises_naming_it():
    with pytest.raises(vc.InvalidParameterError, match="'IVF16,Flatt'"):
        vc.create('faiss(factory="IVF16,Flatt")', dim=DIM)
    with pytest.raises(vc.InvalidParameterError, match="'PQ7'"):
        vc.create("faiss(factory=PQ7)", dim=DIM)  # 384 is not a multiple of 7
    with pytest.raises(vc.InvalidParameterError, match="factory"):
        vc.create("faiss", dim=DIM, factory=5)


# --------------------------------------------------------------------------- training
def test_training_sizes_and_automatic_training(data):
    x, q = data
    assert FaissIndex(dim=DIM, factory="HNSW32").min_train_size == 0
    assert FaissIndex(dim=DIM, factory="IVF16,Flat").min_train_size == 39 * 16
    assert FaissIndex(dim=DIM, factory="IVF16,Flat", train_size=100).min_train_size == 100
    assert FaissIndex(dim=DIM, factory="IVF64,Flat", train_size=10).min_train_size == 64
    assert FaissIndex(dim=DIM, factory="OPQ8,IVF16,PQ8").min_train_size == 39 * 256
    assert FaissIndex(dim=DIM, factory="OPQ8,IVF16,PQ8x4", train_size=300).min_train_size == 1024
    index = vc.create('faiss(factory="IVF16,Flat",train_size=300)', dim=DIM, metric="ip")
    index.add(x[:200])
    assert not index.is_trained  # staged: searched exactly
    np.testing.assert_array_equal(index.search(q, K).ids[:, 0],
                                  ground_truth_f64(x[:200], q, 1, "ip")[:, 0])
    index.add(x[200:400])
    assert index.is_trained and len(index) == 400
    pos = FaissIndex(dim=DIM, metric="l2", factory="IVF16,Flat", train_size=100)
    with pytest.raises(vc.NotTrainedError, match="faiss"):
        pos.add(x[:10])
    pos.train(x[:500])
    pos.train(x[500:1000])  # retraining an empty index starts over
    pos.add(x[:10])
    with pytest.raises(vc.InvalidArgumentError, match="train an empty index"):
        pos.train(x[:500])


def test_threads_follow_vecindex_and_are_restored(built, data):
    _, q = data
    before = faiss.omp_get_max_threads()
    old = vc.get_num_threads()
    try:
        vc.set_num_threads(1)
        res = built["HNSW32"].search(q, K)
        assert (res.counts == K).all()
        assert faiss.omp_get_max_threads() == before
    finally:
        vc.set_num_threads(old)


# --------------------------------------------------------------------------- optional import
def test_missing_faiss_raises_not_supported_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # "import faiss" now raises ImportError
    with pytest.raises(vc.NotSupportedError, match=r'pip install "vecindex\[faiss\]"'):
        vc.create("faiss", dim=8)
    assert vc.create("flat", dim=8).ntotal == 0


def test_import_vecindex_core_never_imports_faiss():
    code = ("import sys; sys.modules['faiss'] = None; import vecindex_core as vc; "
            "assert 'faiss' in vc.list_indexes(); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_tombstone_is_outside_every_slot_range():
    assert TOMBSTONE > 2**40
