"""KMeans: against an independent numpy Lloyd, determinism (seed, threads), empty-cluster
repair, metrics, mini-batch, subsampling, typed errors that change nothing, progress."""

import sys

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core._kernels import kmeans as kern
from vecindex_core.errors import (
    DimensionMismatchError,
    EmptyInputError,
    InvalidDtypeError,
    InvalidParameterError,
    NonFiniteError,
    NotTrainedError,
)
from vecindex_core.kmeans import KMeans


# --------------------------------------------------------------------------- references
def np_sqdist(x, c):
    """Squared L2 distances (n, k) in float64."""
    x = np.asarray(x, np.float64)
    c = np.asarray(c, np.float64)
    return ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)


def np_lloyd(x, c0, n_iter, metric):
    """Plain float64 Lloyd from ``c0``: the independent reference (no repair needed here)."""
    x = np.asarray(x, np.float64)
    c = np.asarray(c0, np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    for _ in range(n_iter):
        labels = np_sqdist(x, c).argmin(1) if metric == "l2" else (x @ c.T).argmax(1)
        assert len(np.unique(labels)) == c.shape[0], "reference case must not empty a cluster"
        c = np.stack([x[labels == j].mean(0) for j in range(c.shape[0])])
        if metric == "cosine":
            c /= np.linalg.norm(c, axis=1, keepdims=True)
    return c


@pytest.fixture
def threads():
    old = vc.get_num_threads()
    yield vc.set_num_threads
    vc.set_num_threads(old)


@pytest.fixture(scope="module")
def blobs():
    """2,000 rows in 12 well separated Gaussian blobs, 16 dims."""
    g = np.random.default_rng(7)
    centres = g.standard_normal((12, 16)) * 6
    x = centres[g.integers(0, 12, 2000)] + g.standard_normal((2000, 16))
    return x.astype(np.float32)


def fitted_copy(km):
    return (km.cluster_centers_.copy(), km.labels_.copy(), km.inertia_, km.n_iter_,
            km.counts_.copy())


def assert_unchanged(km, before):
    c, labels, inertia, n_iter, counts = before
    np.testing.assert_array_equal(km.cluster_centers_, c)
    np.testing.assert_array_equal(km.labels_, labels)
    assert km.inertia_ == inertia and km.n_iter_ == n_iter
    np.testing.assert_array_equal(km.counts_, counts)


# --------------------------------------------------------------------------- reference
@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_matches_numpy_lloyd_from_same_init(small, metric):
    x = small[0]
    init = KMeans(8, metric=metric, n_iter=0, init="random", seed=3).fit(x).cluster_centers_
    km = KMeans(8, metric=metric, n_iter=6, init="random", seed=3).fit(x)
    ref = np_lloyd(x, init, 6, metric)
    np.testing.assert_allclose(km.cluster_centers_, ref, rtol=0, atol=2e-6)
    # an explicit init array is the same start
    km2 = KMeans(8, metric=metric, n_iter=6, init=init).fit(x)
    np.testing.assert_array_equal(km2.cluster_centers_, km.cluster_centers_)
    assert km.cluster_centers_.dtype == np.float32 and km.cluster_centers_.flags.c_contiguous
    assert km.labels_.dtype == np.int64 and km.counts_.dtype == np.int64
    assert km.n_iter_ == 6


def test_lloyd_on_blobs_and_inertia(blobs):
    km = KMeans(12, n_iter=20, seed=0).fit(blobs)
    d = np_sqdist(blobs, km.cluster_centers_)
    np.testing.assert_array_equal(km.labels_, d.argmin(1))
    assert km.inertia_ == pytest.approx(d.min(1).sum(), rel=1e-5)
    assert km.score(blobs) == pytest.approx(-km.inertia_, rel=1e-6)
    np.testing.assert_array_equal(km.counts_, np.bincount(km.labels_, minlength=12))
    # k-means++ finds the 12 blobs: each centroid near one blob's mean
    assert km.inertia_ / len(blobs) < 16 * 1.2


def test_predict_is_nearest_centroid(sample):
    x, q = sample.base[:3000], sample.queries
    km = KMeans(32, n_iter=5, seed=1).fit(x)
    np.testing.assert_array_equal(km.predict(x), km.labels_)
    d = np_sqdist(q, km.cluster_centers_)
    pred = km.predict(q)
    chosen = d[np.arange(len(q)), pred]
    np.testing.assert_allclose(chosen, d.min(1), rtol=1e-5)  # equal up to float32 ties
    assert (pred == d.argmin(1)).mean() > 0.99
    t = km.transform(q)
    assert t.shape == (len(q), 32) and t.dtype == np.float32
    np.testing.assert_allclose(t, -d, atol=1e-4)
    np.testing.assert_array_equal(t.argmax(1), pred)
    assert km.predict(q[0]).shape == (1,)  # 1-D is one row
    np.testing.assert_array_equal(km.fit_predict(x), km.labels_)


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_ip_and_cosine_assign_by_inner_product(sample, metric):
    x = sample.base[:2000] * np.linspace(0.5, 2, 2000, dtype=np.float32)[:, None]
    km = KMeans(16, metric=metric, n_iter=5, seed=0).fit(x)
    c = km.cluster_centers_.astype(np.float64)
    xx = x.astype(np.float64)
    if metric == "cosine":
        xx /= np.linalg.norm(xx, axis=1, keepdims=True)
        np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1, atol=1e-6)
        expected_inertia = (1 - (xx * c[km.labels_]).sum(1)).sum()
    else:
        expected_inertia = np_sqdist(xx, c)[np.arange(len(x)), km.labels_].sum()
    ip = xx @ c.T
    np.testing.assert_allclose(ip[np.arange(len(x)), km.labels_], ip.max(1), rtol=1e-5)
    np.testing.assert_allclose(km.transform(x), ip, atol=1e-5)
    assert km.inertia_ == pytest.approx(expected_inertia, rel=1e-4)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("col_block", [16, 2048])
def test_assign_kernel_column_blocks(sample, monkeypatch, metric, col_block):
    monkeypatch.setattr(kern, "COL_BLOCK", col_block)  # 40 centroids: 3 column blocks at 16
    x, c = sample.base[:1500], sample.base[-40:] * 1.5
    code = kern.L2 if metric == "l2" else kern.IP
    xn = np.einsum("ij,ij->i", x, x)
    labels = np.empty(len(x), np.int64)
    dist = np.empty(len(x), np.float32)
    kern.assign(x, c, code, xn, labels, dist)
    d = np_sqdist(x, c)
    target = -d if metric == "l2" else x.astype(np.float64) @ c.T.astype(np.float64)
    rows = np.arange(len(x))
    np.testing.assert_allclose(target[rows, labels], target.max(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dist, d[rows, labels], rtol=1e-4, atol=1e-5)
    s = kern.scores(x, c, code, xn)
    np.testing.assert_allclose(s, target, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("gram_max_rows", [0, 4096])  # fused numba pass / Gram matrix
def test_kmeans_plusplus_picks_one_row_per_blob(monkeypatch, rng, gram_max_rows):
    monkeypatch.setattr(kern, "GRAM_MAX_ROWS", gram_max_rows)
    centres = rng.standard_normal((12, 16)) * 30  # blobs far apart: D^2 sampling hits each
    blob = rng.integers(0, 12, 1500)
    x = (centres[blob] + rng.standard_normal((1500, 16))).astype(np.float32)
    for seed in range(3):
        c = kern.kmeans_plusplus(x, 12, np.random.default_rng(seed))
        rows = np.flatnonzero((x[:, None, :] == c[None]).all(-1).any(1))
        assert len(rows) == 12  # 12 distinct rows of x
        assert len(np.unique(blob[rows])) == 12  # one in each blob
        again = kern.kmeans_plusplus(x, 12, np.random.default_rng(seed))
        np.testing.assert_array_equal(c, again)


# --------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("batch_size", [None, 512])
def test_same_seed_same_centroids(small, batch_size):
    x = small[0]
    a = KMeans(10, n_iter=4, seed=5, batch_size=batch_size).fit(x)
    b = KMeans(10, n_iter=4, seed=5, batch_size=batch_size).fit(x)
    c = KMeans(10, n_iter=4, seed=6, batch_size=batch_size).fit(x)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert not np.array_equal(a.cluster_centers_, c.cluster_centers_)


@pytest.mark.parametrize("metric,batch_size", [("l2", None), ("cosine", None), ("l2", 1024)])
def test_thread_count_does_not_change_result(sample, threads, metric, batch_size):
    x = sample.base  # 5,000 rows: several blocks, so two threads really split the work
    results = []
    for n in (1, 2):
        threads(n)
        km = KMeans(24, metric=metric, n_iter=3, seed=2, batch_size=batch_size,
                    max_points_per_centroid=150).fit(x)
        results.append((km.cluster_centers_, km.labels_, km.inertia_, km.transform(x[:50])))
    (c1, l1, i1, t1), (c2, l2, i2, t2) = results
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(t1, t2)
    assert i1 == i2


# --------------------------------------------------------------------------- empty clusters
def test_repair_kernel_takes_farthest_row_of_largest_cluster():
    labels = np.array([0, 0, 0, 2, 2, 0], dtype=np.int64)
    dist = np.array([1.0, 5.0, 2.0, 9.0, 1.0, 5.0], dtype=np.float32)
    counts = np.bincount(labels, minlength=4).astype(np.int64)  # clusters 1 and 3 empty
    moved = kern.repair_empty(labels, dist, counts)
    # cluster 1 takes row 1 (farthest of cluster 0, tie with row 5 goes to the lower row);
    # then cluster 0 (3 rows) is still the largest: cluster 3 takes row 5
    np.testing.assert_array_equal(moved, [-1, 1, -1, 5])
    np.testing.assert_array_equal(labels, [0, 1, 0, 2, 2, 3])
    np.testing.assert_array_equal(counts, [2, 1, 2, 1])
    assert dist[1] == 0 and dist[5] == 0


def test_empty_cluster_is_repaired_in_fit(blobs):
    x = blobs[:500]
    init = np.stack([x[:250].mean(0), x[250:].mean(0), np.full(16, 1e3)]).astype(np.float32)
    km = KMeans(3, n_iter=1, init=init).fit(x)
    # the far centroid got no row: it takes the farthest row of the larger cluster
    d = np_sqdist(x, init[:2])
    labels0 = d.argmin(1)
    big = np.bincount(labels0).argmax()
    rows = np.flatnonzero(labels0 == big)
    far = rows[d[rows, big].argmax()]
    np.testing.assert_array_equal(km.cluster_centers_[2], x[far])
    np.testing.assert_allclose(km.cluster_centers_[big], x[rows[rows != far]].mean(0),
                               rtol=1e-5, atol=1e-5)
    km = KMeans(3, n_iter=5, init=init).fit(x)
    assert (km.counts_ > 0).all()


def test_duplicate_rows_more_clusters_than_distinct(rng):
    x = np.repeat(rng.standard_normal((3, 8)).astype(np.float32), 20, axis=0)
    for init in ("k-means++", "random"):
        km = KMeans(5, n_iter=4, init=init, seed=1).fit(x)
        assert np.isfinite(km.cluster_centers_).all()
        assert km.inertia_ == pytest.approx(0, abs=1e-4)


# --------------------------------------------------------------------------- variants
def test_spherical_centroids_unit_norm(sample):
    km = KMeans(20, metric="cosine", n_iter=5, seed=0).fit(sample.base[:2000] * 3)
    np.testing.assert_allclose(np.linalg.norm(km.cluster_centers_, axis=1), 1, atol=1e-6)
    mb = KMeans(20, metric="cosine", n_iter=2, batch_size=256, seed=0).fit(sample.base[:2000])
    np.testing.assert_allclose(np.linalg.norm(mb.cluster_centers_, axis=1), 1, atol=1e-6)


def test_minibatch_objective_close_to_full_batch(sample):
    x = sample.base
    full = KMeans(32, n_iter=10, seed=0).fit(x)
    mb = KMeans(32, n_iter=10, batch_size=512, seed=0).fit(x)
    assert mb.inertia_ <= full.inertia_ * 1.03
    assert mb.labels_.shape == (len(x),)
    np.testing.assert_array_equal(mb.labels_, mb.predict(x))
    assert mb.n_iter_ == 10


def test_tol_stops_early(blobs):
    km = KMeans(12, n_iter=50, tol=1e-3, seed=0).fit(blobs)
    assert 1 <= km.n_iter_ < 50
    assert KMeans(12, n_iter=7, tol=0, seed=0).fit(blobs).n_iter_ == 7


def test_partial_fit_steps(sample):
    x = sample.base
    km = KMeans(16, seed=4)
    for s in range(0, 3000, 500):
        km.partial_fit(x[s : s + 500])
    assert km.n_iter_ == 6 and km.labels_.shape == (500,)
    again = KMeans(16, seed=4)
    for s in range(0, 3000, 500):
        again.partial_fit(x[s : s + 500])
    np.testing.assert_array_equal(km.cluster_centers_, again.cluster_centers_)
    # it learns: better than the seeding alone on held-out rows
    seeded = KMeans(16, seed=4, n_iter=0).fit(x[:500])
    assert km.score(x[3000:]) > seeded.score(x[3000:])
    # continuing after a full fit keeps the centroids' counts as learning rates
    full = KMeans(16, n_iter=5, seed=0).fit(x[:3000])
    before = full.cluster_centers_.copy()
    full.partial_fit(x[3000:3500])
    assert full.n_iter_ == 1
    assert np.abs(full.cluster_centers_ - before).max() < 0.1


def test_subsampling(sample):
    x = sample.base  # 5,000 rows > 10 * 100
    sub = KMeans(10, n_iter=5, seed=0, max_points_per_centroid=100).fit(x)
    all_rows = KMeans(10, n_iter=5, seed=0, max_points_per_centroid=None).fit(x)
    big_cap = KMeans(10, n_iter=5, seed=0, max_points_per_centroid=500).fit(x)
    assert not np.array_equal(sub.cluster_centers_, all_rows.cluster_centers_)
    np.testing.assert_array_equal(big_cap.cluster_centers_, all_rows.cluster_centers_)
    # labels and inertia are for every fit row
    assert sub.labels_.shape == (5000,) and sub.counts_.sum() == 5000
    assert sub.inertia_ == pytest.approx(-sub.score(x), rel=1e-6)
    # a subsample of 1,000 rows: close to training on all 5,000
    assert sub.inertia_ <= all_rows.inertia_ * 1.03


def test_inputs_as_lists_and_torch(blobs):
    x = blobs[:300]
    ref = KMeans(4, n_iter=3, seed=0).fit(x)
    np.testing.assert_array_equal(
        KMeans(4, n_iter=3, seed=0).fit(x.tolist()).cluster_centers_, ref.cluster_centers_)
    torch = pytest.importorskip("torch")
    t = KMeans(4, n_iter=3, seed=0).fit(torch.from_numpy(x.astype(np.float64)))
    np.testing.assert_array_equal(t.cluster_centers_, ref.cluster_centers_)
    np.testing.assert_array_equal(ref.predict(torch.from_numpy(x)), ref.labels_)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"n_clusters": 0}, "0"),
        ({"n_clusters": 2.5}, "2.5"),
        ({"n_clusters": True}, "True"),
        ({"metric": "euclid"}, "'euclid'"),
        ({"n_iter": -1}, "-1"),
        ({"batch_size": 0}, "0"),
        ({"batch_size": "64"}, "'64'"),
        ({"init": "kmeans"}, "'kmeans'"),
        ({"seed": -3}, "-3"),
        ({"tol": -0.1}, "-0.1"),
        ({"tol": float("nan")}, "nan"),
        ({"max_points_per_centroid": 0}, "0"),
        ({"progress": "yes"}, "'yes'"),
    ],
)
def test_bad_parameters(kwargs, needle):
    args = {"n_clusters": 4} | kwargs
    k = args.pop("n_clusters")
    with pytest.raises(InvalidParameterError, match=needle):
        KMeans(k, **args)


def test_bad_inputs_raise_and_change_nothing(blobs):
    x = blobs[:400]
    km = KMeans(4, n_iter=2, seed=0).fit(x)
    before = fitted_copy(km)
    bad = x.copy()
    bad[7, 3] = np.nan
    with pytest.raises(NonFiniteError, match="row 7"):
        km.fit(bad)
    with pytest.raises(InvalidParameterError, match="n_clusters=4 .* 3 rows"):
        km.fit(x[:3])
    with pytest.raises(EmptyInputError):
        km.fit(np.empty((0, 16), np.float32))
    with pytest.raises(InvalidDtypeError):
        km.fit(np.array([["a", "b"]]))
    with pytest.raises(DimensionMismatchError, match="15 dimensions.* 16"):
        km.predict(x[:, :15])
    with pytest.raises(DimensionMismatchError):
        km.transform(x[:, :15])
    with pytest.raises(DimensionMismatchError):
        km.partial_fit(x[:, :15])
    with pytest.raises(NonFiniteError):
        km.partial_fit(bad)
    with pytest.raises(NonFiniteError):
        km.score(bad)
    km.batch_size = 0  # reassigned parameters are checked again
    with pytest.raises(InvalidParameterError, match="batch_size"):
        km.fit(x)
    km.batch_size = None
    km.init = np.zeros((3, 16), np.float32)
    with pytest.raises(InvalidParameterError, match="3 centroids"):
        km.fit(x)
    km.init = np.zeros((4, 15), np.float32)
    with pytest.raises(DimensionMismatchError):
        km.fit(x)
    assert_unchanged(km, before)


def test_not_fitted():
    km = KMeans(3)
    assert not km.is_fitted
    for call in (lambda: km.predict(np.zeros((1, 4))), lambda: km.cluster_centers_,
                 lambda: km.transform(np.zeros((1, 4))), lambda: km.score(np.zeros((1, 4)))):
        with pytest.raises(NotTrainedError, match="KMeans"):
            call()
    with pytest.raises(InvalidParameterError, match="n_clusters=3 .* 2 rows"):
        km.partial_fit(np.zeros((2, 4)))
    assert not km.is_fitted


# --------------------------------------------------------------------------- progress
def test_progress_forced_writes_to_stderr(blobs, capsys):
    KMeans(3, n_iter=2, progress=True).fit(blobs[:200])
    assert "KMeans" in capsys.readouterr().err
    KMeans(3, n_iter=2, progress=False).fit(blobs[:200])
    KMeans(3, n_iter=2).fit(blobs[:200])  # small run, not a TTY: silent
    assert capsys.readouterr().err == ""


def test_progress_without_tqdm(blobs, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import fails: text fallback
    KMeans(3, n_iter=2, progress=True).fit(blobs[:200])
    err = capsys.readouterr().err
    assert "KMeans: 2/2 objective=" in err and err.endswith("\n")
