"""The benchmark runner: our indexes and the peers, in one process, on the same data.

:func:`run_benchmark` measures, for every thread count and every entry (each spec of ours
through :func:`vecindex_core.create`, then each peer from :mod:`.peers`):

- **build time**: train (when the index needs it) plus add of every base vector, after an
  untimed warm-up build and search on a 512-row slice (one per entry, so numba kernels
  loading from their cache or compiling are not charged to the first thread count);
- **recall@k** for each requested k, against the dataset's exact ground truth
  (``|found[:k] ∩ gt[:k]| / k``, averaged over queries);
- **batched QPS**: all queries in one call, best of ``repeats`` after one warm-up call;
- **single-query latency**: median, p99 and mean over ``latency_queries`` individual calls;
- **memory**: ``memory_bytes()`` where the index reports it (ours, and the numpy peer),
  otherwise the process RSS growth over the build; the RSS growth is recorded for all.

Threads are pinned for each thread count ``n`` with ``threadpoolctl.threadpool_limits(n)``
(every BLAS and OpenMP pool loaded in the process, re-applied after each build in case the
build loaded a new one), :func:`vecindex_core.set_num_threads`, numba's
``set_num_threads`` (when its parallel pool is running) and ``faiss.omp_set_num_threads``
(when faiss is loaded); hnswlib takes the count per call. All of them are restored
afterwards. The environment (CPU model,
versions, ``threadpool_info()`` with each BLAS library's kernel ``architecture``, and the
``OPENBLAS_*``/``OMP_*``/... variables that choose kernels) is recorded with the numbers.

The micro-benchmarks :func:`bench_idmap_ops` and :func:`bench_load` live in
:mod:`.micro` and are re-exported here.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .._threads import get_num_threads, set_num_threads
from ..errors import InvalidArgumentError
from ..registry import get_kind, parse_spec
from ..types import Metric
from ..validation import check_k, check_metric
from .env import environment_info, release_free_memory, rss_bytes
from .micro import IdmapOpsReport, LoadReport, bench_idmap_ops, bench_load
from .peers import PEERS, Engine, OurIndex, PeerUnavailable, make_peer
from .report import BenchReport, EntryResult, SkippedEntry

if TYPE_CHECKING:
    from ..datasets import Dataset

__all__ = [
    "BASELINE_ORDER",
    "DEFAULT_PEERS",
    "BenchReport",
    "EntryResult",
    "IdmapOpsReport",
    "LoadReport",
    "SkippedEntry",
    "bench_idmap_ops",
    "bench_load",
    "pinned_threads",
    "recall_at_k",
    "run_benchmark",
]

#: Peers measured when the caller does not choose.
DEFAULT_PEERS: tuple[str, ...] = ("faiss", "numpy", "hnswlib")
#: The first of these that was measured is the default baseline of the ratio columns.
BASELINE_ORDER: tuple[str, ...] = ("faiss", "numpy", "hnswlib")


def recall_at_k(found: npt.NDArray[np.int64], gt: npt.NDArray[np.int64], k: int) -> float:
    """Mean over queries of ``|found[:, :k] ∩ gt[:, :k]| / k``.

    Parameters
    ----------
    found : ndarray of int64, shape (nq, >= k)
        Result rows, best first; ``-1`` pads and never matches.
    gt : ndarray of int, shape (nq, >= k)
        Exact top rows, best first.
    k : int

    Raises
    ------
    InvalidArgumentError
        Fewer than ``k`` columns in either array, or a different number of rows.
    """
    if found.shape[0] != gt.shape[0] or found.shape[1] < k or gt.shape[1] < k:
        raise InvalidArgumentError(
            f"recall@{k} needs (nq, >= {k}) arrays with the same nq, got found "
            f"{found.shape} and gt {gt.shape}"
        )
    if found.shape[0] == 0:
        return float("nan")
    hits = 0
    step = max(1, (1 << 22) // (k * k))  # bound the (rows, k, k) comparison to ~4M bools
    for s in range(0, found.shape[0], step):
        f = found[s : s + step, :k]
        g = gt[s : s + step, :k].astype(np.int64, copy=False)
        hits += int(((f[:, :, None] == g[:, None, :]) & (f[:, :, None] >= 0)).any(2).sum())
    return hits / (found.shape[0] * k)


def _numba_default() -> int:
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]


def _pin_numba(n: int) -> int | None:
    """Set numba's parallel thread count to ``n`` if its thread pool is running.

    Returns the previous count, or None when numba's threading layer has not been started
    (vecindex's kernels run on their own pool; starting numba's would load another OpenMP
    or TBB runtime into the process just to configure it).
    """
    import numba

    try:
        from numba.np.ufunc import parallel
    except ImportError:  # pragma: no cover - layout of older numba versions
        return None
    if not getattr(parallel, "_is_initialized", False):
        return None
    old = int(numba.get_num_threads())
    numba.set_num_threads(max(1, min(n, _numba_default())))
    return old


@contextmanager
def pinned_threads(n: int) -> Iterator[None]:
    """Pin every thread pool this process uses to ``n`` threads, restoring them on exit.

    Sets ``threadpoolctl.threadpool_limits(n)`` (all loaded BLAS and OpenMP libraries),
    :func:`vecindex_core.set_num_threads`, numba's parallel thread count when its pool is
    running (capped at ``NUMBA_NUM_THREADS``) and ``faiss.omp_set_num_threads`` when faiss
    is imported.
    """
    from threadpoolctl import threadpool_limits

    old_vc = get_num_threads()
    limiter = threadpool_limits(limits=n)
    set_num_threads(n)
    old_numba = _pin_numba(n)
    faiss = sys.modules.get("faiss")
    old_faiss = faiss.omp_get_max_threads() if faiss is not None else None
    if faiss is not None:
        faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        if faiss is not None and old_faiss is not None:
            faiss.omp_set_num_threads(old_faiss)
        _pin_numba(old_numba if old_numba is not None else _numba_default())
        set_num_threads(old_vc)
        limiter.restore_original_limits()


def _timed_entry(
    engine: Engine,
    base: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    gt: npt.NDArray[np.int64],
    k_values: Sequence[int],
    search_k: int,
    threads: int,
    repeats: int,
    latency_queries: int,
) -> EntryResult:
    from threadpoolctl import threadpool_limits

    engine.set_threads(threads)
    gc.collect()
    release_free_memory()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    engine.build(base)
    build_s = time.perf_counter() - t0
    gc.collect()
    release_free_memory()  # temporaries freed by the build are not the index's memory
    rss1 = rss_bytes()
    # a build may have loaded a new BLAS/OpenMP library or started numba's pool: pin them
    # too, for the searches (pinned_threads restores numba's count it saw at entry)
    late = threadpool_limits(limits=threads)
    _pin_numba(threads)
    faiss = sys.modules.get("faiss")
    if faiss is not None:
        faiss.omp_set_num_threads(threads)
    try:
        rows = engine.search(queries, search_k)  # warm-up, and the rows recall is taken from
        recall = {k: recall_at_k(rows, gt, k) for k in k_values if k <= search_k}
        batch_s = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            engine.search(queries, search_k)
            batch_s.append(time.perf_counter() - t0)
        nlat = min(latency_queries, queries.shape[0])
        singles = [queries[i : i + 1] for i in range(nlat)]
        for q in singles[:10]:
            engine.search_one(q, search_k)
        lat = np.empty(nlat, dtype=np.float64)
        for i, q in enumerate(singles):
            t = time.perf_counter_ns()
            engine.search_one(q, search_k)
            lat[i] = time.perf_counter_ns() - t
    finally:
        late.restore_original_limits()
    lat_us = lat / 1e3
    mem = engine.memory_bytes()
    rss_delta = None if rss0 is None or rss1 is None else rss1 - rss0
    return EntryResult(
        name=engine.name,
        key=engine.key,
        is_peer=engine.is_peer,
        threads=threads,
        build_s=build_s,
        recall=recall,
        search_k=search_k,
        qps=queries.shape[0] / min(batch_s),
        batch_s=batch_s,
        latency_p50_us=float(np.median(lat_us)) if nlat else float("nan"),
        latency_p99_us=float(np.percentile(lat_us, 99)) if nlat else float("nan"),
        latency_mean_us=float(lat_us.mean()) if nlat else float("nan"),
        latency_queries=nlat,
        memory_bytes=mem if mem is not None else rss_delta,
        memory_source="memory_bytes()" if mem is not None else "rss_delta",
        rss_delta_bytes=rss_delta,
        ntotal=base.shape[0],
    )


def _warm_up(
    engine: Engine, base: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], k: int
) -> None:
    """Build and search a small slice once, so one-time costs (numba kernels compiling or
    loading from their cache, lazy library set-up) are not charged to the timed build."""
    n = min(base.shape[0], 512)
    engine.build(base[:n])
    engine.search(queries[:4], min(k, n))
    engine.search_one(queries[:1], min(k, n))


def _check_specs(specs: Sequence[str]) -> list[str]:
    out = []
    for spec in specs:
        name, params = parse_spec(spec)  # raises UnknownIndexError / InvalidParameterError
        get_kind(name).validate_params(params)
        out.append(spec.strip())
    return out


def _check_ints(values: Sequence[int], what: str) -> tuple[int, ...]:
    if isinstance(values, int):
        values = (values,)
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InvalidArgumentError(f"{what} must be integers >= 1, got {v!r}")
        out.append(int(v))
    if not out:
        raise InvalidArgumentError(f"{what} must not be empty")
    return tuple(dict.fromkeys(out))


def _ground_truth(
    dataset: Dataset, metric: Metric, kmax: int
) -> tuple[npt.NDArray[np.int64], str]:
    gt = dataset.gt
    if gt is not None and metric == dataset.metric and gt.shape[1] >= kmax:
        return np.asarray(gt, dtype=np.int64), "dataset"
    from ..datasets import exact_ground_truth

    computed = exact_ground_truth(dataset.base, dataset.queries, kmax, metric)
    return np.asarray(computed, dtype=np.int64), "computed"


def run_benchmark(
    dataset: Dataset,
    specs: Sequence[str],
    *,
    peers: Sequence[str] = DEFAULT_PEERS,
    k_values: Sequence[int] = (1, 10, 100),
    threads: Sequence[int] = (1,),
    metric: Metric | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    repeats: int = 3,
    latency_queries: int = 200,
    baseline: str | None = None,
    stem: str = "bench",
    progress: bool = True,
) -> BenchReport:
    """Measure our index specs and the peers in this process, on the same data.

    Parameters
    ----------
    dataset : Dataset
        From :func:`vecindex_core.datasets.load_dataset`; ``base`` float32 (n, d),
        ``queries`` float32 (nq, d), and ``gt`` (nq, >= max(k_values)) row numbers when
        present. Missing or too-short ground truth, or a ``metric`` other than the
        dataset's, is computed exactly first (blocked matmul, not timed).
    specs : sequence of str
        Spec strings of ours (``"flat"``, ``"ivf_pq(nlist=256,m=48)"``); validated before
        anything runs.
    peers : sequence of str
        Peer names from :data:`~vecindex_core.bench.peers.PEERS` (``numpy``, ``faiss``,
        ``hnswlib``). A peer that is not installed is reported in ``skipped`` with the
        reason; it never raises.
    k_values : sequence of int
        Recall cut-offs. Every entry is searched with ``k = max(k_values)`` (capped at the
        base size) for the timings and for recall; recall@k uses the first k results.
    threads : sequence of int
        Thread counts; each entry is built and measured once per count.
    metric : {"cosine", "ip", "l2"}, optional
        Defaults to the dataset's metric.
    out_dir : str or PathLike, optional
        When given, ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` are written there.
    repeats : int
        Timed batched searches after the warm-up; QPS is from the fastest.
    latency_queries : int
        Single-query calls timed for the latency percentiles (the first queries).
    baseline : str, optional
        Peer the markdown ratios compare to; default the first measured of
        :data:`BASELINE_ORDER`.
    stem : str
        File name stem of the outputs.
    progress : bool
        Show a tqdm progress bar on stderr (when tqdm is installed).

    Returns
    -------
    BenchReport

    Raises
    ------
    UnknownIndexError, InvalidParameterError
        A spec names an unknown index or parameter.
    InvalidArgumentError
        Unknown peer, bad k, thread count or metric.

    Notes
    -----
    An index of ours that raises while being measured is recorded in ``skipped`` with
    ``failed=True`` (see :attr:`BenchReport.failures`) and the run goes on, so one broken
    kind does not hide the others' numbers.
    """
    spec_list = _check_specs(list(specs))
    peer_list = list(dict.fromkeys(peers))
    for p in peer_list:
        if p not in PEERS:
            raise InvalidArgumentError(f"unknown peer {p!r}; valid peers: {', '.join(PEERS)}")
    ks = tuple(sorted(check_k(k) for k in _check_ints(k_values, "k_values")))
    thread_list = _check_ints(threads, "threads")
    reps = _check_ints([repeats], "repeats")[0]
    nlat = int(latency_queries)
    if nlat < 0:
        raise InvalidArgumentError(f"latency_queries must be >= 0, got {latency_queries}")
    if baseline is not None and baseline not in PEERS:
        raise InvalidArgumentError(
            f"unknown baseline peer {baseline!r}; valid peers: {', '.join(PEERS)}"
        )
    met: Metric = check_metric(metric if metric is not None else dataset.metric)
    base = np.ascontiguousarray(dataset.base, dtype=np.float32)
    queries = np.ascontiguousarray(dataset.queries, dtype=np.float32)
    n, dim = base.shape
    search_k = min(ks[-1], n)
    gt, gt_source = _ground_truth(dataset, met, search_k)

    skipped: list[SkippedEntry] = []
    usable_peers: list[str] = []
    for p in peer_list:  # import each peer once up front, so the pools below cover it
        try:
            make_peer(p, dim, met).close()
            usable_peers.append(p)
        except PeerUnavailable as e:
            skipped.append(SkippedEntry(key=p, is_peer=True, reason=str(e)))

    entries: list[tuple[str, bool]] = [(s, False) for s in spec_list]
    entries += [(p, True) for p in usable_peers]
    bar = _progress(len(entries) * len(thread_list), progress, dataset.name)
    results: list[EntryResult] = []
    warmed: set[str] = set()
    try:
        for nt in thread_list:
            with pinned_threads(nt):
                for key, is_peer in entries:
                    if bar is not None:
                        bar.set_postfix_str(f"{key} @ {nt} threads", refresh=True)
                    engine: Engine | None = None
                    try:
                        if key not in warmed:
                            warm = make_peer(key, dim, met) if is_peer else OurIndex(key, dim, met)
                            _warm_up(warm, base, queries, search_k)
                            warm.close()
                            warmed.add(key)
                        engine = make_peer(key, dim, met) if is_peer else OurIndex(key, dim, met)
                        results.append(
                            _timed_entry(engine, base, queries, gt, ks, search_k, nt, reps, nlat)
                        )
                    except Exception as e:  # record it, keep measuring the others
                        skipped.append(
                            SkippedEntry(
                                key=key, is_peer=is_peer, threads=nt,
                                reason=f"{type(e).__name__}: {e}", failed=not is_peer,
                            )
                        )
                    finally:
                        if engine is not None:
                            engine.close()
                        del engine
                        gc.collect()
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    measured = {r.key for r in results if r.is_peer}
    base_peer = baseline or next((p for p in BASELINE_ORDER if p in measured), None)
    report = BenchReport(
        dataset={
            "name": dataset.name,
            "n": int(n),
            "dim": int(dim),
            "nq": int(queries.shape[0]),
            "metric": met,
            "gt_source": gt_source,
            "gt_k": int(gt.shape[1]),
        },
        config={
            "k_values": list(ks),
            "search_k": search_k,
            "threads": list(thread_list),
            "repeats": reps,
            "latency_queries": nlat,
            "specs": spec_list,
            "peers": peer_list,
        },
        environment=environment_info(),
        results=results,
        skipped=skipped,
        baseline=base_peer,
    )
    if out_dir is not None:
        report.write(out_dir, stem=stem)
    return report


def _progress(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=f"bench {desc}", file=sys.stderr, unit="entry", leave=False)
