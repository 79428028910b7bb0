"""Native float32 top-k (``vecindex_core._native.topk``) in exact ``flat`` search, against
the numba tile scan and faiss ``IndexFlatIP``.

Usage (from the repository root, under the benchmark lock)::

    flock /tmp/vecindex-bench.lock python benchmarks/native_topk.py [DATA] [--queries 500]

``DATA`` defaults to ``../shared/data/dev`` next to the repository when present, else the
bundled sample. Two bases: the dataset itself and a ``--big``-row sample of it drawn with
replacement plus Gaussian noise (``--noise`` times each coordinate's standard deviation).
For each, k in ``--ks`` and 1 and 2 threads (every pool pinned), batched ``FlatIndex``
search (inner product) by:

- ``numba``: the numba tile scan (``_kernels.topk._update_rows``, the reference);
- ``native-<isa>``: every native path this CPU runs (``portable``, ``avx2``, ``avx512``);
- ``faiss``: ``faiss.IndexFlatIP`` on the same rows;
- ``gemm only``: the blocked BLAS products ``dense_topk`` computes, without any selection
  (the floor every path shares, to show where the time goes).

QPS is the best of ``--repeats`` (paths alternated, so a noisy spell hits all). Single-query
latency (median of ``--latency-queries`` calls) is shown for the path ``auto`` picks and
faiss: batches under ``SMALL_BATCH`` use the fused numba kernel on every path. Every native
path's results are checked equal to numba's bit for bit. Writes ``native_topk.{json,md}`` to
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

import vecindex_core
from vecindex_core import _native
from vecindex_core._kernels import topk as T
from vecindex_core.bench.env import environment_info
from vecindex_core.bench.runner import pinned_threads
from vecindex_core.bench.timing import (
    log,
    median_latency_us,
    source_fingerprint,
    timed,
    write_results,
)
from vecindex_core.datasets import load_dataset

SOURCES = ["_native/__init__.py", "_native/topk.py", "_native/src/topk.c",
           "_kernels/topk.py", "flat.py"]
HERE = os.path.dirname(os.path.abspath(__file__))
DEV = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "data", "dev")


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",")]


def gemm_only(q: np.ndarray, x: np.ndarray) -> None:
    """The BLAS tiles of ``dense_topk`` (same blocks, same buffer reuse), no selection."""
    nq, n = q.shape[0], x.shape[0]
    buf = np.empty(min(T.QUERY_BLOCK, nq) * min(T.DB_BLOCK, n), dtype=np.float32)
    for q0 in range(0, nq, T.QUERY_BLOCK):
        q1 = min(q0 + T.QUERY_BLOCK, nq)
        for c0 in range(0, n, T.DB_BLOCK):
            c1 = min(c0 + T.DB_BLOCK, n)
            s0 = c0 if c1 - c0 >= T.DB_BLOCK // 2 else max(0, c1 - T.DB_BLOCK)
            np.matmul(q[q0:q1], x[s0:c1].T, out=buf[: (q1 - q0) * (c1 - s0)].reshape(
                q1 - q0, c1 - s0))


def flat_path(index: Any, isa: str | None, k: int) -> Callable[[np.ndarray], Any]:
    def run(q: np.ndarray) -> Any:
        with _native._use(isa):
            return index.search(q, k)
    return run


def make_paths(x: np.ndarray, k: int, faiss: Any) -> dict[str, Callable[[np.ndarray], Any]]:
    index = vecindex_core.FlatIndex(x.shape[1], "ip")
    index.add(x)
    paths: dict[str, Callable[[np.ndarray], Any]] = {"numba": flat_path(index, None, k)}
    for isa in _native._usable():
        paths[f"native-{isa}"] = flat_path(index, isa, k)
    if faiss is not None:
        fi = faiss.IndexFlatIP(x.shape[1])
        fi.add(x)
        paths["faiss"] = lambda q: fi.search(q, k)
    paths["gemm only"] = lambda q: gemm_only(q, x)
    return paths


def checks(paths: dict[str, Callable[[np.ndarray], Any]], q: np.ndarray) -> dict[str, bool]:
    ref = paths["numba"](q)
    out: dict[str, bool] = {}
    for name, fn in paths.items():
        if name.startswith("native-"):
            got = fn(q)
            out[f"{name} == numba"] = bool(
                np.array_equal(got.ids, ref.ids) and np.array_equal(got.counts, ref.counts)
                and np.array_equal(got.scores.view(np.uint32), ref.scores.view(np.uint32)))
    return out


def measure(paths: dict[str, Callable[[np.ndarray], Any]], q: np.ndarray,
            args: argparse.Namespace) -> dict[str, Any]:
    for fn in paths.values():  # warm-up (numba compile, pages)
        fn(q)
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.repeats):
        for name, fn in paths.items():
            times[name].append(timed(partial(fn, q))[0])
    out: dict[str, Any] = {name: {"qps": q.shape[0] / min(ts), "best_ms": 1e3 * min(ts),
                                  "times_s": ts} for name, ts in times.items()}
    auto = f"native-{_native.active_isa()}"
    for name in (auto, "faiss"):
        if name in paths:
            out[name].update(median_latency_us(paths[name], q, args.latency_queries))
    return out


def run_base(label: str, x: np.ndarray, q: np.ndarray, args: argparse.Namespace,
             faiss: Any) -> list[dict[str, Any]]:
    rows = []
    for k in args.ks:
        paths = make_paths(x, k, faiss)
        row: dict[str, Any] = {"base": label, "n": int(x.shape[0]), "k": k,
                               "checks": checks(paths, q), "threads": {}}
        for t in args.threads:
            with pinned_threads(t):
                m = measure(paths, q, args)
            row["threads"][t] = m
            log(f"  {label} k={k} threads={t}: " + " | ".join(
                f"{name} {v['qps']:,.0f} q/s" for name, v in m.items()))
        log(f"  checks: {row['checks']}")
        rows.append(row)
    return rows


def to_markdown(res: dict[str, Any]) -> str:
    best = res["auto_path"]
    a = res["args"]
    L = ["# Native float32 top-k in `flat` search vs numba and faiss `IndexFlatIP`", "",
         f"Data: `{res['dataset']['name']}` ({res['dataset']['n']:,} x {res['dataset']['dim']},"
         f" {res['dataset']['queries']} queries, inner product) and a {a['big']:,}-row sample"
         f" of it drawn with replacement plus noise ({a['noise']} x per-coordinate std). "
         f"CPU: {res['environment'].get('cpu_model', '?')}; native path chosen by `auto`: "
         f"`{best}`. QPS: one batched `search` of all queries, best of {a['repeats']} "
         f"(paths alternated). `gemm only`: the BLAS tiles alone (no selection), the floor "
         f"of every path. p50: single-query latency, median of {a['latency_queries']} calls "
         f"(small batches use the fused numba kernel on every path).", ""]
    paths = list(res["rows"][0]["threads"][a["threads"][0]])
    head = ("| base | k | threads | " + " | ".join(f"{p} QPS" for p in paths)
            + f" | {best}/numba | {best}/faiss | select ms numba → {best} "
            f"| {best} p50 µs | faiss p50 µs |")
    L += [head, "|" + "---|" * (head.count("|") - 1)]
    for row in res["rows"]:
        for t, m in row["threads"].items():
            b, nb, fa, g = m[best], m["numba"], m.get("faiss"), m["gemm only"]
            cells = [row["base"], str(row["k"]), str(t)]
            cells += [f"{m[p]['qps']:,.0f}" for p in paths]
            cells.append(f"{b['qps'] / nb['qps']:.2f}x")
            cells.append(f"{b['qps'] / fa['qps']:.2f}x" if fa else "—")
            cells.append(f"{max(nb['best_ms'] - g['best_ms'], 0):.1f} → "
                         f"{max(b['best_ms'] - g['best_ms'], 0):.1f}")
            cells.append(f"{b['p50_us']:.0f}")
            cells.append(f"{fa['p50_us']:.0f}" if fa else "—")
            L.append("| " + " | ".join(cells) + " |")
    L += ["", "`select ms`: the search's time over the `gemm only` time (tile scan, heaps, "
          "finalize, Python), best of each; an estimate, both are best-of on a shared "
          "machine.", "",
          "Checks (every native path's ids, scores and counts equal numba's bit for bit):", ""]
    for row in res["rows"]:
        ok = all(row["checks"].values())
        L.append(f"- {row['base']} k={row['k']}: {'all pass' if ok else row['checks']}")
    L += ["", f"Load average start/end: {res['loadavg']['start']} / {res['loadavg']['end']}; "
          f"elapsed {res['elapsed_s']:.0f} s."]
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("data", nargs="?", default=DEV if os.path.isdir(DEV) else "sample")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--ks", type=_ints, default=[10, 100])
    p.add_argument("--threads", type=_ints, default=[1, 2])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--latency-queries", type=int, default=200)
    p.add_argument("--big", type=int, default=200_000)
    p.add_argument("--noise", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)

    faiss: Any = None
    why: str | None = None
    try:
        import faiss
    except ImportError as e:
        why = f"faiss not importable: {e}"
    ds = load_dataset(args.data, num_queries=args.queries, gt_k=10)
    x, q = ds.base, ds.queries
    rng = np.random.default_rng(args.seed)
    big = x[rng.integers(0, x.shape[0], args.big)]
    big = (big + rng.standard_normal(big.shape).astype(np.float32)
           * (args.noise * x.std(axis=0))).astype(np.float32)
    res: dict[str, Any] = {
        "dataset": {"name": ds.name, "n": int(x.shape[0]), "dim": int(x.shape[1]),
                    "queries": int(q.shape[0]), "metric": "ip"},
        "args": vars(args), "skipped_peers": {"faiss": why} if why else {},
        "native": _native.config(), "auto_path": f"native-{_native.active_isa()}",
        "source": source_fingerprint(SOURCES), "environment": environment_info(),
        "loadavg": {"start": os.getloadavg()},
    }
    log(f"dataset {ds.name}: {x.shape}, {q.shape[0]} queries; native {_native.config()}")
    t0 = time.perf_counter()
    res["rows"] = run_base(ds.name, x, q, args, faiss)
    res["rows"] += run_base(f"{args.big // 1000}k sample", big, q, args, faiss)
    res["elapsed_s"] = time.perf_counter() - t0
    res["loadavg"]["end"] = os.getloadavg()
    res["source_changed_on_disk_during_run"] = source_fingerprint(SOURCES) != res["source"]
    md = to_markdown(res)
    print(md)
    write_results(args.out, "native_topk", res, md)
    return 0 if all(all(r["checks"].values()) for r in res["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
