"""``turboquant`` fast scan (native uint8-LUT kernels) against turbovec, issue 8's bars.

Usage (from the repository root, under the benchmark lock)::

    flock /tmp/vecindex-bench.lock python benchmarks/native_lut.py [DATA] [--threads 1,2]

``DATA`` defaults to ``../shared/data/dev`` next to the repository when present, else the
bundled sample. Metric ``ip``, ``k = 10``. Two bases: the dataset itself and a
``--big``-row sample of it drawn with replacement plus Gaussian noise (``--noise`` times each
coordinate's standard deviation; exact ground truth recomputed). For each thread count a
child process (so turbovec's rayon pool starts with ``RAYON_NUM_THREADS`` set; every other
pool pinned with ``pinned_threads``) builds, per ``--bits``:

- ``ours``: ``TurboQuantIndex(dim, "ip", bits=b)`` on the active native path (the fast
  scan of the blocked codes on the dataset; from ``turboquant.PLANES_MIN_ROWS`` rows, so on
  the resample, the staged search over bit planes of ``_kernels/planes.py``);
- ``ours-off``: the same index searched with the native kernels off (the numba reference,
  as under ``VECINDEX_NATIVE=off``; identical results, checked);
- ``turbovec``: ``turbovec.TurboQuantIndex(dim, bit_width=b)`` (``prepare()`` called).

Batched queries/s (all queries in one call, best of ``--repeats``, the three alternated),
single-query latency (p50 of ``--latency-queries`` calls) and recall@k. The bars: batched
QPS >= 1.0x turbovec's at recall >= turbovec's - 0.002, p50 <= 1.5x turbovec's. Section
``shortlist`` (dev, one thread): recall@k of the fast scan against the shortlist size k'.
Section ``routes`` (dev, one thread, thread CPU time): the whole fast-scan code search
against the previous routes on the same codes (numba float byte-table scan, BLAS over
decoded blocks) for 1 to all queries.
Writes ``native_lut.{json,md}`` to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

import vecindex_core.turboquant as tq
from vecindex_core import _native
from vecindex_core._kernels.codes import byte_luts, decoded_topk, lut_topk
from vecindex_core._kernels.rotation import rotate
from vecindex_core._kernels.topk import finalize_heaps, init_heaps
from vecindex_core.bench.env import environment_info
from vecindex_core.bench.runner import pinned_threads, recall_at_k
from vecindex_core.bench.timing import (
    log,
    median_latency_us,
    source_fingerprint,
    timed,
    write_results,
)
from vecindex_core.datasets import load_dataset

SOURCES = ["_native/lut.py", "_native/src/lut.c", "_native/src/lut.h", "_native/src/planes.c",
           "_kernels/fastscan.py", "_kernels/planes.py", "turboquant.py"]
HERE = Path(__file__).resolve().parent
DEV = HERE.parents[1] / "shared" / "data" / "dev"
RECALL_SLACK = 0.002
LATENCY_BAR = 1.5


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",")]


def bases(args: argparse.Namespace) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """``(label, base, queries, ground truth)`` of the dataset and its noisy resample."""
    ds = load_dataset(args.data, num_queries=args.queries, gt_k=args.k)
    x, q = ds.base, ds.queries
    out = [(f"{ds.name} {x.shape[0]:,}", x, q, np.asarray(ds.gt)[:, : args.k])]
    if args.big:
        rng = np.random.default_rng(args.seed)
        big = x[rng.integers(0, x.shape[0], args.big)]
        big = (big + rng.standard_normal(big.shape).astype(np.float32)
               * (args.noise * x.std(axis=0))).astype(np.float32)
        gt = np.empty((q.shape[0], args.k), dtype=np.int64)
        for c0 in range(0, q.shape[0], 100):
            s = q[c0:c0 + 100] @ big.T
            top = np.argpartition(-s, args.k, axis=1)[:, : args.k]
            order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
            gt[c0:c0 + 100] = np.take_along_axis(top, order, axis=1)
        out.append((f"{args.big // 1000}k resample", big, q, gt))
    return out


# --------------------------------------------------------------------------- compare
def make_fns(ours: tq.TurboQuantIndex, tv: Any, k: int) -> dict[str, Callable[[np.ndarray], Any]]:
    """One-call searches: ours (active path), ours with the native kernels off, turbovec."""

    def off(qq: np.ndarray) -> Any:
        with _native._use(None):
            return ours.search(qq, k)

    return {"ours": lambda qq: ours.search(qq, k), "ours-off": off,
            "turbovec": lambda qq: tv.search(qq, k)}


def compare(args: argparse.Namespace, threads: int) -> dict[str, Any]:
    """Run in a child process whose pools are pinned to ``threads``."""
    import turbovec

    rows = []
    for label, x, q, gt in bases(args):
        n, d = x.shape
        for bits in args.bits:
            ours = tq.TurboQuantIndex(d, "ip", bits=bits)
            b_ours, _ = timed(partial(ours.add, x))
            tv = turbovec.TurboQuantIndex(dim=d, bit_width=bits)
            b_tv, _ = timed(partial(tv.add, x))
            tv.prepare()
            k = args.k
            fns = make_fns(ours, tv, k)
            off = fns["ours-off"]
            r_ours, r_off = fns["ours"](q), off(q)
            _, tv_ids = tv.search(q, k)
            same = bool(np.array_equal(r_ours.ids, r_off.ids)
                        and np.array_equal(r_ours.scores, r_off.scores))
            times: dict[str, list[float]] = {name: [] for name in fns}
            for _ in range(args.repeats):
                for name, fn in fns.items():
                    if name == "ours-off" and len(times[name]) >= 2:
                        continue  # the reference is slow; two runs suffice
                    times[name].append(timed(partial(fn, q))[0])
            row: dict[str, Any] = {
                "base": label, "n": n, "bits": bits, "threads": threads,
                "build_s": {"ours": b_ours, "turbovec": b_tv},
                "recall": {"ours": recall_at_k(r_ours.ids, gt, k),
                           "turbovec": recall_at_k(np.asarray(tv_ids, np.int64), gt, k)},
                "native_equals_off": same,
                "bytes_per_vector": {"ours": ours.memory_bytes() / n,
                                     "turbovec": len(tv.to_bytes()) / n},
                "qps": {name: q.shape[0] / min(t) for name, t in times.items()},
                "batch_times_s": times, "latency": {},
            }
            for name in ("ours", "turbovec"):
                row["latency"][name] = median_latency_us(fns[name], q, args.latency_queries)
            row["latency"]["ours-off"] = median_latency_us(fns["ours-off"], q,
                                                           max(20, args.latency_queries // 10))
            row["qps_ratio"] = row["qps"]["ours"] / row["qps"]["turbovec"]
            row["latency_ratio"] = (row["latency"]["ours"]["p50_us"]
                                    / row["latency"]["turbovec"]["p50_us"])
            row["recall_delta"] = row["recall"]["ours"] - row["recall"]["turbovec"]
            row["pass"] = {"recall": row["recall_delta"] >= -RECALL_SLACK,
                           "qps": row["qps_ratio"] >= 1.0,
                           "latency": row["latency_ratio"] <= LATENCY_BAR}
            rows.append(row)
            log(f"  {label} bits={bits} threads={threads}: recall {row['recall']['ours']:.4f}"
                f" vs {row['recall']['turbovec']:.4f}; QPS {row['qps']['ours']:,.0f} vs "
                f"{row['qps']['turbovec']:,.0f} ({row['qps_ratio']:.2f}x), off "
                f"{row['qps']['ours-off']:,.0f}; p50 {row['latency']['ours']['p50_us']:.0f}"
                f" vs {row['latency']['turbovec']['p50_us']:.0f} us; same={same}")
    return {"rows": rows, "loadavg": os.getloadavg()}


def run_children(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for t in args.threads:
        log(f"[compare] threads={t} (child process)")
        env = {**os.environ, "RAYON_NUM_THREADS": str(t), "OMP_NUM_THREADS": str(t),
               "OPENBLAS_NUM_THREADS": str(t), "VECINDEX_NUM_THREADS": str(t)}
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            path = f.name
        try:
            cmd = [sys.executable, __file__, args.data, "--queries", str(args.queries),
                   "--k", str(args.k), "--repeats", str(args.repeats),
                   "--latency-queries", str(args.latency_queries), "--big", str(args.big),
                   "--noise", str(args.noise), "--seed", str(args.seed),
                   "--bits", ",".join(map(str, args.bits)), "--child-threads", str(t),
                   "--child-out", path]
            subprocess.run(cmd, env=env, check=True)
            rows += json.loads(Path(path).read_text())["rows"]
        finally:
            Path(path).unlink(missing_ok=True)
    return rows


# --------------------------------------------------------------------------- shortlist
def _fixed_size(size: int) -> Callable[[int, int], int]:
    return lambda k, n: min(n, size)


def shortlist(args: argparse.Namespace) -> list[dict[str, Any]]:
    _, x, q, gt = bases(argparse.Namespace(**{**vars(args), "big": 0}))[0]
    out = []
    original = tq.shortlist_size
    try:
        for bits in args.bits:
            idx = tq.TurboQuantIndex(x.shape[1], "ip", bits=bits)
            idx.add(x)
            row: dict[str, Any] = {"bits": bits, "recall": {}}
            for size in (args.k, args.k + 5, 2 * args.k, 4 * args.k, 10 * args.k):
                tq.shortlist_size = _fixed_size(size)  # type: ignore[assignment]
                ids = np.asarray(idx.search(q, args.k).ids, dtype=np.int64)
                row["recall"][size] = recall_at_k(ids, gt, args.k)
            out.append(row)
            log(f"  shortlist bits={bits}: {row['recall']}")
    finally:
        tq.shortlist_size = original
    return out


# --------------------------------------------------------------------------- routes
def _cpu_best(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t0)
    return best


def _route_fns(idx: tq.TurboQuantIndex, k: int) -> dict[str, Callable[[np.ndarray], Any]]:
    """The three routes over ``idx``'s codes, each a one-call search of a query batch."""
    n, rows, flat = idx.ntotal, idx._rows(), np.ascontiguousarray(idx.codes)

    def fast(qq: np.ndarray) -> Any:
        return idx._code_search(qq, k, rows, None)

    def lut(qq: np.ndarray) -> Any:
        hs, hi = init_heaps(qq.shape[0], k)
        tables = rotate(qq, idx.seed)[:, :, None] * idx.codebook_[None, None, :]
        lut_topk(byte_luts(tables, idx.bits), flat, hs, hi, scale=rows.scales)
        return finalize_heaps(hs, hi)

    def blas(qq: np.ndarray) -> Any:
        return decoded_topk(rotate(qq, idx.seed), idx._decoder(flat), n, k, scale=rows.scales)

    return {"fast": fast, "lut": lut, "decoded": blas}


def routes(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Fast scan (whole code search) against the previous routes on the same codes: the
    numba byte-LUT scan and BLAS over decoded blocks; ns per (query, row), thread CPU time,
    one thread."""
    _, x, q, _ = bases(argparse.Namespace(**{**vars(args), "big": 0}))[0]
    out = []
    for bits in args.bits:
        idx = tq.TurboQuantIndex(x.shape[1], "ip", bits=bits)
        idx.add(x)
        fns = _route_fns(idx, args.k)
        for nq in (1, 4, 16, 64, q.shape[0]):
            reps = max(2, min(args.repeats, 2000 // nq))
            t = {name: _cpu_best(partial(fn, q[:nq]), reps) * 1e9 / (nq * idx.ntotal)
                 for name, fn in fns.items()}
            out.append({"bits": bits, "nq": nq, "ns_per_row_query": t,
                        "fastest": min(t, key=lambda name: t[name])})
            log(f"  routes bits={bits} nq={nq}: " + ", ".join(
                f"{name} {v:.2f}" for name, v in t.items()) + " ns/(row, query)")
    return out


# --------------------------------------------------------------------------- report
def to_markdown(res: dict[str, Any]) -> str:
    a = res["args"]
    lines = [
        f"# turboquant fast scan vs turbovec ({res['dataset']}, {a['queries']} queries, ip, "
        f"k={a['k']})", "",
        f"Native path: `{res['native']['isa']}` (usable: "
        f"{', '.join(res['native']['usable_isas'])}). Ours: `turboquant(bits=B)`, codes only "
        "(no rerank): on the dataset, the uint8-table fast scan for a shortlist of "
        "max(2k, k+10) rows (2-bit batches on an AVX-512 VBMI CPU: the same integer sums "
        "from tables of three coordinates), rescored by the float code estimate; on the "
        "resample (from "
        f"{tq.PLANES_MIN_ROWS:,} rows) the staged search over bit planes: a sign-plane fast "
        "scan keeping max(256, 20k) rows, ranked by the low planes, rescored by the float code "
        "estimate. `off`: the same "
        "index with the native kernels off (numba reference; results identical). turbovec: "
        "`TurboQuantIndex(dim, bit_width=B)` after `prepare()`. Batched QPS: all queries in one "
        f"call, best of {a['repeats']} (alternated). p50: median of {a['latency_queries']} "
        "one-query calls. B/vec: `memory_bytes()/n` vs `len(to_bytes())/n`.", "",
        "| base | threads | bits | recall ours | recall turbovec | QPS ours | QPS turbovec | "
        "QPS ratio | QPS off | p50 ours µs | p50 turbovec µs | p50 ratio | p50 off µs | "
        "B/vec ours | B/vec turbovec | same as off | bars |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        failed = [name for name, v in r["pass"].items() if not v]
        verdict = "FAIL " + ", ".join(failed) if failed else "pass"
        lines.append(
            f"| {r['base']} | {r['threads']} | {r['bits']} | {r['recall']['ours']:.4f} | "
            f"{r['recall']['turbovec']:.4f} | {r['qps']['ours']:,.0f} | "
            f"{r['qps']['turbovec']:,.0f} | {r['qps_ratio']:.2f}x | {r['qps']['ours-off']:,.0f}"
            f" | {r['latency']['ours']['p50_us']:.0f} | {r['latency']['turbovec']['p50_us']:.0f}"
            f" | {r['latency_ratio']:.2f}x | {r['latency']['ours-off']['p50_us']:.0f} | "
            f"{r['bytes_per_vector']['ours']:.1f} | {r['bytes_per_vector']['turbovec']:.1f} | "
            f"{r['native_equals_off']} | {verdict} |")
    lines += ["", f"QPS ratio = ours / turbovec (bar >= 1.0); p50 ratio = ours / turbovec "
              f"(bar <= {LATENCY_BAR}); recall bar: ours >= turbovec - {RECALL_SLACK}.", ""]
    if res.get("routes"):
        lines += ["## Routes on the same codes (dev, 1 thread, ns per (query, row), thread CPU "
                  "time)", "", "`fast`: this fast scan (tables, scan, rescore); `lut`: the "
                  "numba float byte-table scan; `decoded`: BLAS over decoded blocks (the "
                  "previous routes, still used for 3- and 8-bit codes).", "",
                  "| bits | nq | fast | lut | decoded | fastest |", "|---|---|---|---|---|---|"]
        for r in res["routes"]:
            t = r["ns_per_row_query"]
            lines.append(f"| {r['bits']} | {r['nq']} | {t['fast']:.2f} | {t['lut']:.2f} | "
                         f"{t['decoded']:.2f} | {r['fastest']} |")
        lines.append("")
    if res.get("shortlist"):
        sizes = list(res["shortlist"][0]["recall"])
        lines += ["## Shortlist size (dev, recall@k against k')", "",
                  "| bits | " + " | ".join(f"k'={s}" for s in sizes) + " |",
                  "|---|" + "---|" * len(sizes)]
        for r in res["shortlist"]:
            lines.append(f"| {r['bits']} | " + " | ".join(
                f"{r['recall'][s]:.4f}" for s in sizes) + " |")
        lines.append("")
    lines += [f"Load average at start / end: {res['loadavg']['start']} / "
              f"{res['loadavg']['end']} (2 cores shared with other work: wall-clock numbers "
              "are noisy; the three contenders are alternated).", "",
              f"Environment: {json.dumps(res['environment'].get('versions', {}))}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", default=str(DEV) if DEV.exists() else "sample")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--bits", type=_ints, default=[4, 2])
    p.add_argument("--threads", type=_ints, default=[1, 2])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--latency-queries", type=int, default=200)
    p.add_argument("--big", type=int, default=200_000)
    p.add_argument("--noise", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-shortlist", action="store_true")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--child-threads", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child_threads:
        with pinned_threads(args.child_threads):
            out = compare(args, args.child_threads)
        Path(args.child_out).write_text(json.dumps(out, default=float))
        return 0
    t0 = time.perf_counter()
    res: dict[str, Any] = {
        "dataset": Path(args.data).name, "args": vars(args), "native": _native.config(),
        "source": source_fingerprint(SOURCES), "environment": environment_info(),
        "loadavg": {"start": os.getloadavg()},
    }
    res["rows"] = run_children(args)
    if not args.no_shortlist:
        with pinned_threads(1):
            res["shortlist"] = shortlist(args)
            res["routes"] = routes(args)
    res["loadavg"]["end"] = os.getloadavg()
    res["elapsed_s"] = time.perf_counter() - t0
    res["verdicts"] = {"total": len(res["rows"]),
                       "pass": sum(all(r["pass"].values()) for r in res["rows"])}
    res["source_changed_on_disk_during_run"] = source_fingerprint(SOURCES) != res["source"]
    md = to_markdown(res)
    print(md)
    write_results(args.out, "native_lut", res, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
