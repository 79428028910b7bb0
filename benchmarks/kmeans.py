"""k-means: ``vecindex_core.kmeans.KMeans`` against ``faiss.Kmeans`` at equal iterations.

Usage (from the repository root, with vecindex installed or on ``PYTHONPATH``)::

    flock /tmp/vecindex-bench.lock python benchmarks/kmeans.py [DATA] [--k 256] \\
        [--iters 10,25] [--threads 1,2] [--repeats 3]

``DATA`` is a ``.npy`` file of float32 vectors or a directory holding ``base.npy``; it
defaults to ``../shared/data/dev`` next to the repository (20,000 x 384 unit-norm sentence
embeddings), else the bundled sample. Everything runs in one process on the same array.

For each metric (``l2``: ours ``metric="l2"`` vs ``faiss.Kmeans``; ``cosine``: ours
spherical k-means vs ``faiss.Kmeans(spherical=True)``, both on L2-normalised rows), each
iteration count and each thread count (every pool pinned with
``vecindex_core.bench.runner.pinned_threads``), three fits of each entry run alternately,
one per seed (``--seed``, +1, +2), after an untimed warm-up fit of each:

- ``ours k-means++``: ``KMeans(k, n_iter=it, max_points_per_centroid=256)`` (the default
  seeding: greedy k-means++ on a subsample);
- ``ours random``: the same with ``init="random"`` (faiss's seeding: k distinct rows);
- ``faiss``: ``faiss.Kmeans(d, k, niter=it, seed=s, max_points_per_centroid=256)``.

With ``n <= 256 k`` nothing is subsampled (``max_points_per_centroid=None`` gives the same
centroids; checked and recorded). Reported: median training time, and the objective
computed the same way for every entry by :func:`objective` (the sum over all rows of the
squared L2 distance to the nearest final centroid, float64 numpy), as the mean over the
three seeds. The bar: ours (k-means++) at most 1.5x faiss's time with an equal or lower
objective. Also recorded: the seeding cost alone (``n_iter=0`` fit minus one assignment),
bit-identical centroids at 1 and 2 threads, and ``os.getloadavg()`` (the machine is
shared: a load above the thread count means another process competed for the cores).

Writes ``kmeans.{json,md}`` to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vecindex_core.bench.env import environment_info
from vecindex_core.bench.runner import pinned_threads
from vecindex_core.bench.timing import (
    log,
    source_fingerprint,
    timed,
    write_results,
)
from vecindex_core.kmeans import KMeans

#: vecindex_core sources the results are tied to (sha256 prefixes in the JSON)
SOURCES = ["kmeans.py", "_kernels/kmeans.py", "_threads.py"]
HERE = Path(__file__).resolve().parent
DEV = HERE.parents[1] / "shared" / "data" / "dev"
BAR = 1.5






def timed_cpu(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall time, process CPU time (all threads) and the result of ``fn()``."""
    c0 = time.process_time()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def load_base(data: str | None) -> tuple[str, np.ndarray]:
    if data is None:
        data = str(DEV) if (DEV / "base.npy").exists() else None
    if data is None:
        from vecindex_core.datasets import load_sample

        return "sample", np.ascontiguousarray(load_sample().base, dtype=np.float32)
    path = Path(data)
    if path.is_dir():
        path = path / "base.npy"
    x = np.load(path, allow_pickle=False)
    return path.parent.name, np.ascontiguousarray(x, dtype=np.float32)


def objective(x: np.ndarray, centroids: np.ndarray) -> float:
    """Sum over rows of the squared L2 distance to the nearest centroid (float64, blocked).

    The one function every entry's centroids are scored with.
    """
    x64 = x.astype(np.float64)
    c = np.asarray(centroids, dtype=np.float64)
    cn = np.einsum("ij,ij->i", c, c)
    total = 0.0
    for s in range(0, x.shape[0], 4096):
        xb = x64[s : s + 4096]
        d = np.einsum("ij,ij->i", xb, xb)[:, None] + cn[None, :] - 2.0 * (xb @ c.T)
        total += float(np.maximum(d.min(axis=1), 0.0).sum())
    return total




# --------------------------------------------------------------------------- entries
def make_entries(
    faiss: Any, k: int, d: int, it: int, metric: str
) -> dict[str, Callable[[np.ndarray, int], np.ndarray]]:
    """name -> fit(x, seed) returning the final centroids."""

    def ours(init: str) -> Callable[[np.ndarray, int], np.ndarray]:
        def fit(x: np.ndarray, seed: int) -> np.ndarray:
            km = KMeans(k, metric=metric, n_iter=it, init=init,  # type: ignore[arg-type]
                        seed=seed, max_points_per_centroid=256, progress=False)
            return km.fit(x).cluster_centers_
        return fit

    entries = {"ours k-means++": ours("k-means++"), "ours random": ours("random")}
    if faiss is not None:
        def fit_faiss(x: np.ndarray, seed: int) -> np.ndarray:
            km = faiss.Kmeans(d, k, niter=it, seed=seed + 1, max_points_per_centroid=256,
                              spherical=metric == "cosine", verbose=False)
            km.train(x)
            return np.asarray(km.centroids)
        entries["faiss"] = fit_faiss
    return entries


def measure(
    x: np.ndarray, faiss: Any, args: argparse.Namespace, metric: str, it: int, threads: int
) -> dict[str, Any]:
    entries = make_entries(faiss, args.k, x.shape[1], it, metric)
    seeds = [args.seed + r for r in range(args.repeats)]
    for fit in entries.values():  # warm-up (numba cache load, faiss/BLAS pools)
        fit(x[: max(4 * args.k, 2048)], seeds[0])
    times: dict[str, list[float]] = {name: [] for name in entries}
    cpu: dict[str, list[float]] = {name: [] for name in entries}
    objs: dict[str, list[float]] = {name: [] for name in entries}
    cents: dict[str, np.ndarray] = {}
    load0 = os.getloadavg()
    for seed in seeds:  # alternate the entries, one seed a round
        for name, fit in entries.items():
            t, tc, c = timed_cpu(lambda fit=fit, seed=seed: fit(x, seed))
            times[name].append(t)
            cpu[name].append(tc)
            objs[name].append(objective(x, c))
            if seed == seeds[0]:
                cents[name] = c
    rows = []
    for name in entries:
        rows.append({"entry": name, "median_s": float(np.median(times[name])),
                     "min_s": float(np.min(times[name])), "times_s": times[name],
                     "cpu_median_s": float(np.median(cpu[name])),
                     "objective_mean": float(np.mean(objs[name])), "objectives": objs[name]})
    out: dict[str, Any] = {"metric": metric, "iters": it, "threads": threads, "rows": rows,
                           "loadavg": [load0, os.getloadavg()], "seeds": seeds}
    f = next((r for r in rows if r["entry"] == "faiss"), None)
    if f is not None:
        for r in rows:
            r["time_ratio"] = r["median_s"] / f["median_s"]
            r["min_ratio"] = r["min_s"] / f["min_s"]
            r["objective_ratio"] = r["objective_mean"] / f["objective_mean"]
        ours = rows[0]
        out["verdict"] = ("pass" if ours["time_ratio"] <= BAR
                          and ours["objective_mean"] <= f["objective_mean"] else "FAIL")
    for r in rows:
        log(f"  {metric:<6} it={it:<3} threads={threads} {r['entry']:<15} "
            f"median {r['median_s']:.3f} s {r['times_s']} objective {r['objective_mean']:.2f}"
            + (f"  ratio {r['time_ratio']:.2f}x obj {r['objective_ratio']:.5f}"
               if "time_ratio" in r else ""))
    out["_centroids"] = cents
    return out


def seeding_cost(x: np.ndarray, k: int, metric: str, seed: int) -> dict[str, float]:
    """Seeding alone: an ``n_iter=0`` fit (seeding + the final assignment) minus one
    assignment (``predict`` on the same rows); median of 3."""
    km = KMeans(k, metric=metric, n_iter=0, seed=seed)  # type: ignore[arg-type]
    km.fit(x)
    fit0 = float(np.median([timed(lambda: km.fit(x))[0] for _ in range(3)]))
    pred = float(np.median([timed(lambda: km.predict(x))[0] for _ in range(3)]))
    return {"fit_n_iter0_s": fit0, "assign_s": pred, "seeding_s": max(fit0 - pred, 0.0)}


# --------------------------------------------------------------------------- report
def to_markdown(res: dict[str, Any]) -> str:
    ds = res["dataset"]
    L = [f"# k-means ({ds['name']}: {ds['n']:,} x {ds['dim']}, k={res['args']['k']})", "",
         "Ours: `KMeans(k, n_iter=it, max_points_per_centroid=256)` (greedy k-means++ seeding "
         "on a subsample; `ours random` = `init=\"random\"`, faiss's seeding). faiss: "
         "`faiss.Kmeans(d, k, niter=it, max_points_per_centroid=256)` (`spherical=True` for "
         "cosine). Time: median of "
         f"{res['args']['repeats']} fits (seeds {res['seeds']}), entries alternated. Objective: "
         "sum over all rows of the squared L2 distance to the nearest final centroid, one "
         "shared float64 numpy function, mean over the seeds. Ratio = ours / faiss. Bar: ours "
         f"(k-means++) time <= {BAR}x faiss with an equal or lower objective.", ""]
    L += ["| metric | iters | threads | entry | median (s) | ratio | min (s) | min ratio | "
          "CPU (s) | objective | obj / faiss | load (1 min) | verdict |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    nan = float("nan")
    for m in res["runs"]:
        for r in m["rows"]:
            verdict = m.get("verdict", "—") if r["entry"].startswith("ours k") else ""
            L.append(
                f"| {m['metric']} | {m['iters']} | {m['threads']} | {r['entry']} | "
                f"{r['median_s']:.3f} | {r.get('time_ratio', nan):.2f} | {r['min_s']:.3f} | "
                f"{r.get('min_ratio', nan):.2f} | {r['cpu_median_s']:.3f} | "
                f"{r['objective_mean']:.2f} | {r.get('objective_ratio', nan):.5f} | "
                f"{m['loadavg'][0][0]:.2f}-{m['loadavg'][1][0]:.2f} | {verdict} |")
    L += ["", "CPU = process CPU time of the fit (all threads; faiss's OpenMP threads may spin). "
          "min = fastest of the fits (least disturbed by other processes on the shared cores)."]
    L += ["", "## Checks", ""]
    for name, ok in res["checks"].items():
        L.append(f"- {name}: {ok}")
    L += ["", "## Seeding cost (k-means++ on the subsample, 1 thread)", ""]
    for metric, s in res["seeding"].items():
        L.append(f"- {metric}: {s['seeding_s']:.3f} s (an `n_iter=0` fit {s['fit_n_iter0_s']:.3f}"
                 f" s minus one assignment {s['assign_s']:.3f} s)")
    L += ["", f"Environment: {res['environment'].get('cpu_model')}, "
          f"{res['environment'].get('cpu_count')} CPUs; load average at start "
          f"{res['loadavg_start']}, at end {res['loadavg_end']}.", ""]
    return "\n".join(L)


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data", nargs="?", default=None)
    p.add_argument("--k", type=int, default=256)
    p.add_argument("--iters", type=_ints, default=[10, 25])
    p.add_argument("--threads", type=_ints, default=[1, 2])
    p.add_argument("--metrics", default="l2,cosine")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    name, x = load_base(args.data)
    try:
        import faiss
    except ImportError as e:
        faiss, why = None, f"faiss not importable: {e}"
    else:
        why = None
    res: dict[str, Any] = {
        "dataset": {"name": name, "n": int(x.shape[0]), "dim": int(x.shape[1])},
        "args": vars(args), "skipped_peers": {"faiss": why} if why else {},
        "source": source_fingerprint(SOURCES), "loadavg_start": os.getloadavg(),
        "seeds": [args.seed + r for r in range(args.repeats)],
    }
    log(f"dataset {name}: {x.shape}; faiss: {why or 'ok'}")
    res["environment"] = environment_info()
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)
    xn = np.ascontiguousarray(xn, dtype=np.float32)
    t0 = time.perf_counter()
    runs = []
    checks: dict[str, Any] = {}
    for metric in args.metrics.split(","):
        data = x if metric == "l2" else xn
        for it in args.iters:
            by_threads = {}
            for threads in args.threads:
                with pinned_threads(threads):
                    run = measure(data, faiss, args, metric, it, threads)
                by_threads[threads] = run.pop("_centroids")
                runs.append(run)
            if len(by_threads) > 1:
                first = by_threads[args.threads[0]]
                same = all(np.array_equal(first[e], c[e]) for c in by_threads.values()
                           for e in ("ours k-means++", "ours random"))
                checks[f"{metric} it={it}: ours identical at threads {args.threads}"] = same
    with pinned_threads(1):
        a = KMeans(args.k, n_iter=3, seed=args.seed, max_points_per_centroid=256).fit(x)
        b = KMeans(args.k, n_iter=3, seed=args.seed, max_points_per_centroid=None).fit(x)
        checks["max_points_per_centroid=256 == None here (no subsample)"] = bool(
            np.array_equal(a.cluster_centers_, b.cluster_centers_))
        checks["inertia_ == shared objective (l2, rel 1e-5)"] = bool(
            abs(a.inertia_ - objective(x, a.cluster_centers_)) <= 1e-5 * a.inertia_)
        res["seeding"] = {m: seeding_cost(x if m == "l2" else xn, args.k, m, args.seed)
                          for m in args.metrics.split(",")}
    res["runs"] = runs
    res["checks"] = checks
    res["loadavg_end"] = os.getloadavg()
    res["elapsed_s"] = time.perf_counter() - t0
    res["source_changed_on_disk_during_run"] = source_fingerprint(SOURCES) != res["source"]
    md = to_markdown(res)
    print(md)
    write_results(args.out, "kmeans", res, md)
    return 0




if __name__ == "__main__":
    sys.exit(main())
