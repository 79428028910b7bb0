import numpy as np
import pytest

from vecindex_core import IndexFormatError, InvalidArgumentError
from vecindex_core.datasets import exact_ground_truth, load_dataset, load_sample, read_fvecs


def test_sample_shapes_and_ground_truth():
    ds = load_sample()
    assert ds.base.shape == (5000, 384) and ds.base.dtype == np.float32
    assert ds.queries.shape == (200, 384) and ds.gt.shape == (200, 100)
    assert len(ds.base_texts) == 5000 and len(ds.query_texts) == 200
    scores = ds.queries[:20].astype(np.float64) @ ds.base.astype(np.float64).T
    ref = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(ds.gt[:20, :10], ref)


def _write_fvecs(path, x, dtype="<f4"):
    d = x.shape[1]
    rows = np.empty((x.shape[0], d + 1), dtype="<i4")
    rows[:, 0] = d
    rows[:, 1:] = x.astype(dtype).view("<i4")
    rows.tofile(path)


def test_fvecs_round_trip_and_holdout(tmp_path):
    x = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    _write_fvecs(tmp_path / "b.fvecs", x)
    np.testing.assert_array_equal(read_fvecs(tmp_path / "b.fvecs"), x)
    ds = load_dataset(tmp_path / "b.fvecs", num_queries=5, metric="l2")
    assert ds.base.shape == (45, 8) and ds.queries.shape == (5, 8)
    np.testing.assert_array_equal(ds.gt, exact_ground_truth(x[:45], x[45:], 100, "l2"))


def test_truncated_fvecs(tmp_path):
    x = np.ones((4, 8), np.float32)
    _write_fvecs(tmp_path / "b.fvecs", x)
    data = (tmp_path / "b.fvecs").read_bytes()
    (tmp_path / "t.fvecs").write_bytes(data[:-4])
    with pytest.raises(IndexFormatError, match=r"t\.fvecs"):
        read_fvecs(tmp_path / "t.fvecs")


def test_hdf5(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(1)
    with h5py.File(tmp_path / "a.hdf5", "w") as f:
        f.attrs["distance"] = "angular"
        f["train"] = rng.standard_normal((30, 4)).astype(np.float32)
        f["test"] = rng.standard_normal((3, 4)).astype(np.float32)
        f["neighbors"] = np.zeros((3, 10), np.int32)
    ds = load_dataset(tmp_path / "a.hdf5")
    assert ds.metric == "cosine" and ds.gt.shape == (3, 10)


def test_unknown_extension(tmp_path):
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(InvalidArgumentError, match=r"x\.csv"):
        load_dataset(tmp_path / "x.csv")
