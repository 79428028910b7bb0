"""k-means clustering for the quantisers (IVF coarse centroids, PQ codebooks) and for users.

:class:`KMeans` offers full-batch Lloyd iterations and mini-batch updates, three metrics,
k-means++ or random seeding, faiss-style subsampling of large training sets, and
deterministic empty-cluster repair. The numeric work is in :mod:`._kernels.kmeans`.

Design choices
--------------
- **Assignment** is one BLAS product per fixed block of rows (``x_block @ centroids.T``),
  then numpy's SIMD argmax over the tile while it is hot in cache (a numba loop was 5x
  slower: LLVM does not vectorise its max reduction): for l2 the largest
  ``2 x.c - |c|^2`` (centroid norms computed once per iteration), for ip and cosine the
  largest ``x.c``. Memory is one tile per thread whatever ``n`` is. The update is a numba
  loop adding rows into float64 sums (as fast as reading ``x`` once).
- **Determinism.** The same data, parameters and seed give bit-identical centroids whatever
  :func:`vecindex_core.set_num_threads` says. BLAS is pinned to one thread for the duration
  of every call (``threadpoolctl``; a multi-threaded BLAS splits a product differently and
  rounds it differently), and the parallelism comes from our own threads instead: they take
  whole row blocks of the assignment (each block's product is the same single-threaded BLAS
  call whatever the thread count) and whole ranges of clusters in the update (float64 sums
  added in row order). Measured on 2 cores (one assignment pass, 20,000 x 384, k = 256):
  54 ms on one thread, 33-35 ms on two of our threads, 38 ms when one caller lets BLAS use
  two threads instead; so determinism costs nothing here.
- **Seeding.** Greedy k-means++ (``2 + ln k`` local trials per centre, as scikit-learn) on
  a seeded subsample of at most ``SEED_POINTS_PER_CENTROID * k`` training rows, with the
  subsample's Gram matrix when it has at most 4096 rows. Measured on 20,000 x 384, k = 256:
  65 ms, about one Lloyd iteration (54 ms), and a smaller share as ``n`` grows. Measured
  there too (4 seeds, objective after 10 and 25 iterations): greedy trials beat plain
  k-means++ and random rows by 0.1-0.3%, while seeding on 4k, 8k, 16k or all rows
  differed by less than the seed noise. ``init="random"`` draws ``k`` distinct rows
  (faiss's default); an array gives the initial centroids.
- **Empty clusters** (Lloyd and each mini-batch epoch): the largest cluster gives its row
  farthest from its centroid to the empty one (ties to the lower index), see
  :func:`._kernels.kmeans.repair_empty`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ._kernels import kmeans as _k
from ._kernels.topk import sq_norms
from ._threads import one_blas_thread
from .base import normalize_rows
from .errors import InvalidParameterError, NotTrainedError
from .types import METRICS, FloatMatrix, Metric
from .validation import as_float_matrix, check_int

__all__ = ["PROGRESS_FLOPS", "SEED_POINTS_PER_CENTROID", "KMeans"]

#: k-means++ runs on at most this many training rows per centroid (a seeded subsample).
SEED_POINTS_PER_CENTROID = 8
#: ``progress=None`` shows progress when ``2 n k d n_iter`` exceeds this and stderr is a TTY.
PROGRESS_FLOPS = 2e10

Init = Literal["k-means++", "random"]
_INITS: tuple[str, ...] = ("k-means++", "random")
_METRIC_CODES: dict[str, int] = {"l2": _k.L2, "ip": _k.IP, "cosine": _k.COSINE}


@dataclass(frozen=True)
class _State:
    """Everything a fit learns; replaced as a whole, so a failed call changes nothing."""

    centers: FloatMatrix
    labels: npt.NDArray[np.int64]
    inertia: float
    n_iter: int
    counts: npt.NDArray[np.int64]
    lr_counts: npt.NDArray[np.int64]  # per-centre mini-batch learning-rate denominators
    steps: int  # partial_fit steps since the last fit




class _Progress:
    """tqdm when importable, else one rewritten line on stderr."""

    def __init__(self, total: int, enabled: bool, desc: str) -> None:
        self.enabled = enabled
        self.total = total
        self.desc = desc
        self.done = 0
        self._bar: Any = None
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self._bar = None
        else:
            self._bar = tqdm(total=total, desc=desc, unit="it", file=sys.stderr)

    def update(self, objective: float) -> None:
        if not self.enabled:
            return
        self.done += 1
        if self._bar is not None:
            self._bar.set_postfix(objective=f"{objective:.6g}", refresh=False)
            self._bar.update(1)
        else:
            sys.stderr.write(f"\r{self.desc}: {self.done}/{self.total} objective={objective:.6g}")
            sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            sys.stderr.write("\n")
            sys.stderr.flush()


class KMeans:
    """k-means clustering (Lloyd or mini-batch), deterministic for a given seed.

    Parameters
    ----------
    n_clusters : int
        Number of centroids ``k >= 1`` (at most the number of rows given to ``fit``).
    metric : {"l2", "ip", "cosine"}
        ``"l2"``: standard k-means (nearest centroid by squared L2 distance, centroids are
        means). ``"cosine"``: spherical k-means; inputs are L2-normalised, rows go to the
        centroid of largest inner product, centroids are re-normalised after each update.
        ``"ip"``: rows go to the centroid of largest inner product, centroids are plain
        (unnormalised) means, as faiss's ``Clustering`` with an inner-product index and
        ``spherical=False``; large-norm centroids attract more rows, so prefer ``"cosine"``
        for unit-norm data.
    n_iter : int
        ``>= 0``. Full batch: number of Lloyd iterations (assignment + update). Mini-batch:
        number of epochs, each one pass over the training rows in seeded random batches.
        ``0`` keeps the initial centroids (labels and inertia are still computed).
    batch_size : int or None
        ``None``: full-batch Lloyd. An int ``>= 1``: mini-batch k-means with per-centre
        learning rates (Sculley 2010; the batched form of scikit-learn's MiniBatchKMeans).
    init : {"k-means++", "random"} or array_like (n_clusters, d)
        Greedy k-means++ on a seeded subsample of at most ``SEED_POINTS_PER_CENTROID * k``
        training rows (``2 + ln k`` local trials per centre), ``k`` distinct rows drawn
        uniformly, or explicit initial centroids (copied; normalised for ``"cosine"``).
    seed : int
        Seed of every random step (subsample, seeding, batch order). The same seed and data
        give bit-identical centroids, whatever the thread count.
    tol : float
        ``>= 0``. Stop early when the relative improvement of the objective between two
        iterations (epochs) drops below ``tol``; ``0`` runs all ``n_iter``.
    max_points_per_centroid : int or None
        As faiss: when ``n > k * max_points_per_centroid``, train on a seeded random
        subsample of that many rows (``labels_`` and ``inertia_`` are still computed on
        all rows). ``None`` trains on every row.
    progress : bool or None
        Progress on stderr (tqdm when installed, else a text line). ``None`` shows it only
        for long runs (``2 n k d n_iter > PROGRESS_FLOPS``) when stderr is a terminal.

    Attributes
    ----------
    cluster_centers_ : ndarray of float32, shape (k, d), C-contiguous
    labels_ : ndarray of int64, shape (n,)
        After ``fit``: the centroid of every row of the fit data under the final centroids
        (so ``labels_ == predict(x)``). After ``partial_fit``: the assignment of that batch
        used by its step (against the centroids before the step).
    inertia_ : float
        The objective on the same rows as ``labels_``: the sum of squared L2 distances to
        the assigned centroid for ``"l2"`` and also for ``"ip"`` (rows assigned by inner
        product; the distance is what an IVF residual sees), and the sum of ``1 - cos`` for
        ``"cosine"`` (half the squared distance between unit vectors).
    n_iter_ : int
        Iterations (epochs) run by ``fit``, fewer than ``n_iter`` when ``tol`` stopped it;
        after ``partial_fit``, the number of ``partial_fit`` steps since the last ``fit``.
    counts_ : ndarray of int64, shape (k,)
        ``bincount(labels_)``: rows per centroid in ``labels_`` (a cluster may be empty
        here; empty clusters are only repaired during training).
    n_features_in_ : int
        Dimension ``d`` seen by ``fit``.

    Raises
    ------
    InvalidParameterError
        A parameter of the wrong type or out of range (the message names the value).

    Examples
    --------
    >>> import numpy as np
    >>> from vecindex_core.kmeans import KMeans
    >>> x = np.random.default_rng(0).standard_normal((2000, 16)).astype(np.float32)
    >>> km = KMeans(8, seed=1).fit(x)
    >>> km.cluster_centers_.shape, km.labels_.shape
    ((8, 16), (2000,))
    """

    def __init__(
        self,
        n_clusters: int,
        *,
        metric: Metric = "l2",
        n_iter: int = 25,
        batch_size: int | None = None,
        init: Init | npt.ArrayLike = "k-means++",
        seed: int = 0,
        tol: float = 0.0,
        max_points_per_centroid: int | None = 256,
        progress: bool | None = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.metric = metric
        self.n_iter = n_iter
        self.batch_size = batch_size
        self.init = init
        self.seed = seed
        self.tol = tol
        self.max_points_per_centroid = max_points_per_centroid
        self.progress = progress
        self._state: _State | None = None
        self._dim: int | None = None
        self._check_params()

    # ----------------------------------------------------------------- parameters
    def _check_params(self) -> None:
        """Validate the public parameters (they may have been reassigned since ``__init__``)."""
        check_int(self.n_clusters, "n_clusters", 1)
        if not isinstance(self.metric, str) or self.metric not in METRICS:
            raise InvalidParameterError(
                f"unknown metric {self.metric!r}, expected one of "
                f"{', '.join(map(repr, METRICS))}"
            )
        check_int(self.n_iter, "n_iter", 0)
        if self.batch_size is not None:
            check_int(self.batch_size, "batch_size", 1)
        if isinstance(self.init, str) and self.init not in _INITS:
            raise InvalidParameterError(
                f"unknown init {self.init!r}, expected one of {', '.join(map(repr, _INITS))}"
                " or an array of initial centroids"
            )
        check_int(self.seed, "seed", 0)
        tol = self.tol
        if isinstance(tol, bool) or not isinstance(tol, (int, float, np.integer, np.floating)):
            raise InvalidParameterError(f"tol must be a number, got {tol!r}")
        if not (math.isfinite(float(tol)) and float(tol) >= 0):
            raise InvalidParameterError(f"tol must be a finite number >= 0, got {tol!r}")
        if self.max_points_per_centroid is not None:
            check_int(self.max_points_per_centroid, "max_points_per_centroid", 1)
        if self.progress is not None and not isinstance(self.progress, (bool, np.bool_)):
            raise InvalidParameterError(f"progress must be True, False or None, got "
                                        f"{self.progress!r}")

    @property
    def _code(self) -> int:
        return _METRIC_CODES[self.metric]

    # ----------------------------------------------------------------- learned state
    @property
    def is_fitted(self) -> bool:
        """True once ``fit`` or ``partial_fit`` has run."""
        return self._state is not None

    def _fitted(self) -> _State:
        if self._state is None:
            raise NotTrainedError(
                f"this KMeans(n_clusters={self.n_clusters}) is not fitted yet: call fit() or "
                "partial_fit() first"
            )
        return self._state

    @property
    def cluster_centers_(self) -> FloatMatrix:
        """float32 ``(k, d)`` centroids (raises :class:`NotTrainedError` before fitting)."""
        return self._fitted().centers

    @property
    def labels_(self) -> npt.NDArray[np.int64]:
        """int64 ``(n,)`` labels of the fit data (see the class docstring)."""
        return self._fitted().labels

    @property
    def inertia_(self) -> float:
        """The objective on the fit data (see the class docstring)."""
        return self._fitted().inertia

    @property
    def n_iter_(self) -> int:
        """Iterations run by ``fit`` (or ``partial_fit`` steps since it)."""
        return self._fitted().n_iter

    @property
    def counts_(self) -> npt.NDArray[np.int64]:
        """int64 ``(k,)`` rows per centroid in ``labels_``."""
        return self._fitted().counts

    @property
    def n_features_in_(self) -> int:
        """Dimension ``d`` of the fit data."""
        self._fitted()
        assert self._dim is not None
        return self._dim

    def __repr__(self) -> str:
        init = self.init if isinstance(self.init, str) else "<array>"
        return (
            f"KMeans(n_clusters={self.n_clusters}, metric={self.metric!r}, "
            f"n_iter={self.n_iter}, batch_size={self.batch_size}, init={init!r}, "
            f"seed={self.seed}, tol={self.tol}, "
            f"max_points_per_centroid={self.max_points_per_centroid})"
        )

    # ----------------------------------------------------------------- input
    def _prepare(self, x: object, dim: int | None, name: str = "x") -> FloatMatrix:
        arr = as_float_matrix(x, dim, name=name)
        if self.metric == "cosine":
            arr = normalize_rows(arr)
        return arr

    def _norms(self, x: FloatMatrix) -> npt.NDArray[np.float32]:
        return sq_norms(x) if self.metric != "cosine" else np.zeros(1, dtype=np.float32)

    def _init_array(self, d: int) -> FloatMatrix:
        k = int(self.n_clusters)
        c = as_float_matrix(self.init, d, name="init")
        if c.shape[0] != k:
            raise InvalidParameterError(
                f"init has {c.shape[0]} centroids, expected n_clusters={k}"
            )
        if self.metric == "cosine":
            c = normalize_rows(c)
        return np.array(c, dtype=np.float32, order="C")  # a copy: never alias the caller's

    def _check_rows(self, n: int, what: str) -> None:
        if self.n_clusters > n:
            raise InvalidParameterError(
                f"n_clusters={self.n_clusters} is larger than the {n} rows of {what}; "
                f"give at least {self.n_clusters} rows or lower n_clusters"
            )

    def _show_progress(self, n: int, d: int) -> bool:
        if self.progress is not None:
            return bool(self.progress)
        flops = 2.0 * n * self.n_clusters * d * max(self.n_iter, 1)
        return flops > PROGRESS_FLOPS and sys.stderr is not None and sys.stderr.isatty()

    # ----------------------------------------------------------------- training
    def _seed_centers(
        self, x: FloatMatrix, xn: npt.NDArray[np.float32], rng: np.random.Generator
    ) -> FloatMatrix:
        k = int(self.n_clusters)
        if not isinstance(self.init, str):
            return self._init_array(x.shape[1])
        if self.init == "random":
            return _k.random_init(x, k, rng)
        cap = SEED_POINTS_PER_CENTROID * k
        if x.shape[0] > cap:
            rows = np.sort(rng.choice(x.shape[0], size=cap, replace=False))
            xs = np.ascontiguousarray(x[rows])
            xsn = sq_norms(xs)
        else:
            xs, xsn = x, (xn if self.metric != "cosine" else sq_norms(x))
        c = _k.kmeans_plusplus(xs, k, rng, xn=xsn)
        return c

    def fit(self, x: npt.ArrayLike) -> KMeans:
        """Learn ``k`` centroids from ``x``.

        Parameters
        ----------
        x : array_like or torch.Tensor, shape (n, d)
            Training vectors, ``n >= n_clusters``; any real dtype (computed in float32).

        Returns
        -------
        KMeans
            ``self``, with ``cluster_centers_``, ``labels_``, ``inertia_``, ``n_iter_`` and
            ``counts_`` set.

        Raises
        ------
        InvalidParameterError
            A bad parameter, ``n_clusters > n``, or ``init`` of the wrong shape.
        InvalidArgumentError, InvalidDtypeError, EmptyInputError, NonFiniteError
            Bad ``x`` (see :func:`~vecindex_core.validation.as_float_matrix`). On any error
            the model keeps its previous state.
        """
        self._check_params()
        x = self._prepare(x, None)
        n, d = x.shape
        self._check_rows(n, "x")
        k = int(self.n_clusters)
        if not isinstance(self.init, str):
            self._init_array(d)  # validate before any work
        ss_sub, ss_init, ss_batch = np.random.SeedSequence(int(self.seed)).spawn(3)
        xn = self._norms(x)
        mppc = self.max_points_per_centroid
        if mppc is not None and n > k * int(mppc):
            rows = np.sort(np.random.default_rng(ss_sub).choice(n, size=k * int(mppc),
                                                                replace=False))
            xt = np.ascontiguousarray(x[rows])
            xtn = xn[rows] if self.metric != "cosine" else xn
        else:
            xt, xtn = x, xn
        bar = _Progress(int(self.n_iter), self._show_progress(xt.shape[0], d), "KMeans")
        try:
            with one_blas_thread():
                centers = self._seed_centers(xt, xtn, np.random.default_rng(ss_init))
                if self.batch_size is None:
                    centers, n_iter = self._lloyd(xt, xtn, centers, bar)
                else:
                    centers, n_iter = self._minibatch(
                        xt, xtn, centers, np.random.default_rng(ss_batch), bar)
                labels = np.empty(n, dtype=np.int64)
                dist = np.empty(n, dtype=np.float32)
                _k.assign(x, centers, self._code, xn, labels, dist)
        finally:
            bar.close()
        counts = np.bincount(labels, minlength=k).astype(np.int64)
        self._state = _State(
            centers=centers, labels=labels, inertia=float(dist.sum(dtype=np.float64)),
            n_iter=n_iter, counts=counts, lr_counts=counts.copy(), steps=0,
        )
        self._dim = d
        return self

    def _lloyd(
        self, x: FloatMatrix, xn: npt.NDArray[np.float32], centers: FloatMatrix, bar: _Progress
    ) -> tuple[FloatMatrix, int]:
        n, k = x.shape[0], int(self.n_clusters)
        labels = np.empty(n, dtype=np.int64)
        dist = np.empty(n, dtype=np.float32)
        spherical = self.metric == "cosine"
        prev = math.inf
        done = 0
        for _ in range(int(self.n_iter)):
            _k.assign(x, centers, self._code, xn, labels, dist)
            obj = float(dist.sum(dtype=np.float64))
            counts = np.bincount(labels, minlength=k).astype(np.int64)
            if not counts.all():
                _k.repair_empty(labels, dist, counts)
            sums = _k.cluster_sums(x, labels, k)
            centers = _k.centers_from_sums(sums, counts, centers, spherical=spherical)
            done += 1
            bar.update(obj)
            if self._converged(prev, obj):
                break
            prev = obj
        return centers, done

    def _converged(self, prev: float, obj: float) -> bool:
        tol = float(self.tol)
        if tol <= 0 or not math.isfinite(prev):
            return False
        return prev - obj < tol * abs(prev)

    def _minibatch(
        self,
        x: FloatMatrix,
        xn: npt.NDArray[np.float32],
        centers: FloatMatrix,
        rng: np.random.Generator,
        bar: _Progress,
    ) -> tuple[FloatMatrix, int]:
        n, k = x.shape[0], int(self.n_clusters)
        bs = int(self.batch_size)  # type: ignore[arg-type]
        spherical = self.metric == "cosine"
        centers = np.array(centers, dtype=np.float32, order="C")
        lr_counts = np.zeros(k, dtype=np.int64)
        ep_labels = np.empty(n, dtype=np.int64)
        ep_dist = np.empty(n, dtype=np.float32)
        lb = np.empty(min(bs, n), dtype=np.int64)
        db = np.empty(min(bs, n), dtype=np.float32)
        cosine = self.metric == "cosine"
        prev = math.inf
        done = 0
        for _ in range(int(self.n_iter)):
            perm = rng.permutation(n)
            for s in range(0, n, bs):
                idx = np.sort(perm[s : s + bs])
                m = idx.shape[0]
                xb = np.ascontiguousarray(x[idx])
                xbn = xn if cosine else xn[idx]
                _k.assign(xb, centers, self._code, xbn, lb[:m], db[:m])
                _k.minibatch_update(xb, lb[:m], centers, lr_counts, spherical=spherical)
                ep_labels[idx] = lb[:m]
                ep_dist[idx] = db[:m]
            obj = float(ep_dist.sum(dtype=np.float64))
            counts = np.bincount(ep_labels, minlength=k).astype(np.int64)
            if not counts.all():
                moved = _k.repair_empty(ep_labels, ep_dist, counts)
                for e in np.flatnonzero(moved >= 0):
                    centers[e] = x[moved[e]]
                    lr_counts[e] = 1
            done += 1
            bar.update(obj)
            if self._converged(prev, obj):
                break
            prev = obj
        return centers, done

    def partial_fit(self, x: npt.ArrayLike) -> KMeans:
        """One mini-batch step on the batch ``x`` (like scikit-learn's ``partial_fit``).

        The first call (on an unfitted model) seeds the centroids from this batch with
        ``init`` (so it needs ``n >= n_clusters`` rows). Each call assigns the batch to the
        current centroids, then moves every centroid that received ``b`` rows with sum ``s``
        by ``(s - b c) / N_c``, where ``N_c`` counts every row the centroid has received
        (after a full-batch ``fit``, ``N_c`` starts at its ``counts_``). A centroid that has
        never received a row takes the farthest row of the batch's largest cluster. The
        subsample, ``n_iter``, ``batch_size`` and ``tol`` do not apply. Same seed and same
        batches give the same centroids.

        Returns
        -------
        KMeans
            ``self``; ``labels_``/``inertia_``/``counts_`` describe this batch as assigned
            by the step, ``n_iter_`` counts ``partial_fit`` steps since the last ``fit``.

        Raises
        ------
        DimensionMismatchError
            ``x`` has another dimension than the fitted centroids.
        InvalidParameterError
            First call with fewer rows than ``n_clusters``, or a bad parameter.
        InvalidArgumentError, NonFiniteError, EmptyInputError, InvalidDtypeError
            Bad ``x``; the model keeps its previous state.
        """
        self._check_params()
        state = self._state
        x = self._prepare(x, self._dim if state is not None else None)
        n, d = x.shape
        k = int(self.n_clusters)
        if state is not None and state.centers.shape[0] != k:
            raise InvalidParameterError(
                f"n_clusters={k} differs from the {state.centers.shape[0]} fitted centroids; "
                "call fit() to start over"
            )
        if state is None:
            self._check_rows(n, "the first partial_fit batch")
            if not isinstance(self.init, str):
                self._init_array(d)
        xn = self._norms(x)
        labels = np.empty(n, dtype=np.int64)
        dist = np.empty(n, dtype=np.float32)
        with one_blas_thread():
            if state is None:
                ss_init = np.random.SeedSequence(int(self.seed)).spawn(3)[1]
                centers = self._seed_centers(x, xn, np.random.default_rng(ss_init))
                centers = np.array(centers, dtype=np.float32, order="C")
                lr_counts = np.zeros(k, dtype=np.int64)
                steps = 0
            else:
                centers = state.centers.copy()
                lr_counts = state.lr_counts.copy()
                steps = state.steps
            _k.assign(x, centers, self._code, xn, labels, dist)
        inertia = float(dist.sum(dtype=np.float64))
        counts = np.bincount(labels, minlength=k).astype(np.int64)
        _k.minibatch_update(x, labels, centers, lr_counts, spherical=self.metric == "cosine")
        never = lr_counts == 0
        if never.any():
            rl, rd, rc = labels.copy(), dist.copy(), counts.copy()
            moved = _k.repair_empty(rl, rd, rc, never)
            for e in np.flatnonzero(moved >= 0):
                centers[e] = x[moved[e]]
                lr_counts[e] = 1
        self._state = _State(
            centers=centers, labels=labels, inertia=inertia, n_iter=steps + 1,
            counts=counts, lr_counts=lr_counts, steps=steps + 1,
        )
        self._dim = d
        return self

    # ----------------------------------------------------------------- inference
    def _assign(self, x: object) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        state = self._fitted()
        arr = self._prepare(x, self._dim)
        labels = np.empty(arr.shape[0], dtype=np.int64)
        dist = np.empty(arr.shape[0], dtype=np.float32)
        with one_blas_thread():
            _k.assign(arr, state.centers, self._code, self._norms(arr), labels, dist)
        return labels, dist

    def predict(self, x: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Index of the nearest centroid of every row.

        l2: smallest squared distance; ip and cosine: largest inner product (cosine
        normalises ``x`` first). Ties go to the lower index.

        Parameters
        ----------
        x : array_like or torch.Tensor, shape (n, d) or (d,)
            A 1-D input is one row.

        Returns
        -------
        ndarray of int64, shape (n,)

        Raises
        ------
        NotTrainedError
            Before ``fit``.
        DimensionMismatchError, InvalidArgumentError, NonFiniteError, ...
            Bad ``x``.
        """
        return self._assign(x)[0]

    def fit_predict(self, x: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """``fit(x)`` and return ``labels_`` (a copy)."""
        return self.fit(x).labels_.copy()

    def transform(self, x: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Scores of every row against every centroid, "higher is better".

        Returns
        -------
        ndarray of float32, shape (n, k)
            ``-|x - c|^2`` for l2 (clamped so it is ``<= 0``), ``x.c`` for ip and cosine
            (``x`` normalised first). Its row argmax is :meth:`predict`'s label up to ties.

        Raises
        ------
        NotTrainedError, DimensionMismatchError, InvalidArgumentError, NonFiniteError
        """
        state = self._fitted()
        arr = self._prepare(x, self._dim)
        with one_blas_thread():
            return _k.scores(arr, state.centers, self._code, self._norms(arr))

    def score(self, x: npt.ArrayLike) -> float:
        """Minus the objective of ``x`` under the fitted centroids (higher is better).

        The objective is the ``inertia_`` definition: squared L2 distance to the assigned
        centroid summed over rows (l2, ip), or the sum of ``1 - cos`` (cosine).

        Raises
        ------
        NotTrainedError, DimensionMismatchError, InvalidArgumentError, NonFiniteError
        """
        return -float(self._assign(x)[1].sum(dtype=np.float64))

