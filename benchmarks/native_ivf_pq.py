"""``ivf_pq`` with 4-bit codes (uint8-LUT fast scan) against faiss ``IVF...,PQ...x4fs``.

Usage (from the repository root, under the benchmark lock)::

    flock /tmp/vecindex-bench.lock python benchmarks/native_ivf_pq.py [DATA] [--threads 1,2]

``DATA`` defaults to ``../shared/data/dev`` next to the repository when present, else the
bundled sample. Metric ``ip``, ``k = 10``. Bases as in ``native_lut.py``: the dataset and a
``--big``-row noisy resample of it (exact ground truth recomputed). For each thread count a
child process (every pool pinned to that many threads) builds, per base:

- ``ours``: ``ivf_pq(nlist, m, nbits=4)`` (residual codes, the fast scan, native path);
- ``ours-off``: the same index searched with the native kernels off (the numba reference;
  identical results, checked);
- ``faiss``: ``index_factory(d, "IVF{nlist},PQ{m}x4fs", METRIC_INNER_PRODUCT)``.

Both are trained on the base itself (the same ``nlist``: 256 for the dataset, 1024 for the
resample) and searched at the same ``nprobe`` values (OpenMP waits passive, so faiss's
idle threads do not spin on the cores between calls). Batched queries/s (all queries in one
call, best of ``--repeats``, alternated), single-query p50 and recall@k per ``nprobe``. The
bar (issue 8): ours >= 0.8x faiss's batched QPS at equal recall (ours' recall at least
faiss's - 0.005 at the same ``nprobe``). Writes ``native_ivf_pq.{json,md}`` to
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from native_lut import _ints, bases

import vecindex_core as vc
from vecindex_core import _native
from vecindex_core.bench.env import environment_info
from vecindex_core.bench.runner import pinned_threads, recall_at_k
from vecindex_core.bench.timing import (
    log,
    median_latency_us,
    source_fingerprint,
    timed,
    write_results,
)

SOURCES = ["_native/lut.py", "_native/src/lut.c", "_kernels/fastscan.py", "ivf.py", "pq.py"]
HERE = Path(__file__).resolve().parent
DEV = HERE.parents[1] / "shared" / "data" / "dev"
RECALL_SLACK = 0.005
QPS_BAR = 0.8


def _train_add(fi: Any, x: np.ndarray) -> None:
    fi.train(x)
    fi.add(x)


def _searchers(ours: Any, fi: Any, k: int, nprobe: int) -> dict[str, Callable[[np.ndarray], Any]]:
    """One-call searches at ``nprobe``: ours (active path), ours with the native kernels
    off, faiss (its nprobe set by the caller)."""

    def off(qq: np.ndarray) -> Any:
        with _native._use(None):
            return ours.search(qq, k, params={"nprobe": nprobe})

    return {"ours": lambda qq: ours.search(qq, k, params={"nprobe": nprobe}),
            "ours-off": off, "faiss": lambda qq: fi.search(qq, k)}


def compare(args: argparse.Namespace, threads: int) -> dict[str, Any]:
    """Run in a child process whose pools are pinned to ``threads``."""
    import faiss

    rows = []
    for label, x, q, gt in bases(args):
        n, d = x.shape
        nlist = 256 if n <= 50_000 else 1024
        m = d // args.dsub
        ours = vc.create("ivf_pq", dim=d, metric="ip", nlist=nlist, m=m, nbits=4)
        b_ours, _ = timed(partial(ours.add, x))  # trains on the first add
        fi = faiss.index_factory(d, f"IVF{nlist},PQ{m}x4fs", faiss.METRIC_INNER_PRODUCT)
        b_faiss, _ = timed(partial(_train_add, fi, x))
        ivf = faiss.extract_index_ivf(fi)
        for nprobe in args.nprobe:
            ivf.nprobe = nprobe
            k = args.k
            fns = _searchers(ours, fi, k, nprobe)
            ours_fn, off_fn = fns["ours"], fns["ours-off"]
            r_ours, r_off = ours_fn(q), off_fn(q)
            _, f_ids = fi.search(q, k)
            same = bool(np.array_equal(r_ours.ids, r_off.ids)
                        and np.array_equal(r_ours.scores, r_off.scores))
            times: dict[str, list[float]] = {name: [] for name in fns}
            for _ in range(args.repeats):
                for name, fn in fns.items():
                    if name == "ours-off" and len(times[name]) >= 2:
                        continue
                    times[name].append(timed(partial(fn, q))[0])
            row: dict[str, Any] = {
                "base": label, "n": n, "nlist": nlist, "m": m, "nprobe": nprobe,
                "threads": threads, "build_s": {"ours": b_ours, "faiss": b_faiss},
                "recall": {"ours": recall_at_k(r_ours.ids, gt, k),
                           "faiss": recall_at_k(np.asarray(f_ids, np.int64), gt, k)},
                "native_equals_off": same,
                "bytes_per_vector": {"ours": ours.memory_bytes() / n},
                "qps": {name: q.shape[0] / min(t) for name, t in times.items()},
                "batch_times_s": times, "latency": {},
            }
            for name in ("ours", "faiss"):
                row["latency"][name] = median_latency_us(fns[name], q, args.latency_queries)
            row["qps_ratio"] = row["qps"]["ours"] / row["qps"]["faiss"]
            row["latency_ratio"] = (row["latency"]["ours"]["p50_us"]
                                    / row["latency"]["faiss"]["p50_us"])
            row["recall_delta"] = row["recall"]["ours"] - row["recall"]["faiss"]
            rows.append(row)
            log(f"  {label} nprobe={nprobe} threads={threads}: recall "
                f"{row['recall']['ours']:.4f} vs {row['recall']['faiss']:.4f}; QPS "
                f"{row['qps']['ours']:,.0f} vs {row['qps']['faiss']:,.0f} "
                f"({row['qps_ratio']:.2f}x), off {row['qps']['ours-off']:,.0f}; p50 "
                f"{row['latency']['ours']['p50_us']:.0f} vs "
                f"{row['latency']['faiss']['p50_us']:.0f} us; same={same}")
        equal_recall(rows[-len(args.nprobe):])
    return {"rows": rows, "loadavg": os.getloadavg()}


def equal_recall(rows: list[dict[str, Any]]) -> None:
    """Add, to each row (one base, one thread count, increasing nprobe), ours' QPS at faiss's
    recall: linear interpolation of ours' (recall, QPS) curve; below ours' lowest recall,
    ours' QPS at the smallest nprobe (a conservative value: fewer probes would be faster);
    above ours' highest, none. The bar is checked on that ratio."""
    rec = np.array([r["recall"]["ours"] for r in rows])
    qps = np.array([r["qps"]["ours"] for r in rows])
    order = np.argsort(rec, kind="stable")
    for r in rows:
        target = r["recall"]["faiss"]
        if target > rec.max():
            r["qps_equal_recall"] = None
        elif target <= rec.min():
            r["qps_equal_recall"] = float(qps[int(np.argmin(rec))])
        else:
            r["qps_equal_recall"] = float(np.interp(target, rec[order], qps[order]))
        eq = r["qps_equal_recall"]
        r["qps_ratio_equal_recall"] = None if eq is None else eq / r["qps"]["faiss"]
        r["pass"] = {"qps_same_nprobe": r["qps_ratio"] >= QPS_BAR and
                     r["recall_delta"] >= -RECALL_SLACK,
                     "qps_equal_recall": eq is not None and eq / r["qps"]["faiss"] >= QPS_BAR}


def run_children(args: argparse.Namespace, argv: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for t in args.threads:
        log(f"[compare] threads={t} (child process)")
        # passive OpenMP waits: faiss's threads otherwise spin after each call and take the
        # cores from whatever runs next (at 2 threads on 2 cores that halves either side)
        env = {**os.environ, "OMP_NUM_THREADS": str(t), "OPENBLAS_NUM_THREADS": str(t),
               "VECINDEX_NUM_THREADS": str(t), "OMP_WAIT_POLICY": "PASSIVE"}
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            path = f.name
        try:
            cmd = [sys.executable, __file__, *argv, "--child-threads", str(t),
                   "--child-out", path]
            subprocess.run(cmd, env=env, check=True)
            rows += json.loads(Path(path).read_text())["rows"]
        finally:
            Path(path).unlink(missing_ok=True)
    return rows


def _num(v: float | None, fmt: str, suffix: str = "") -> str:
    return "—" if v is None else f"{v:{fmt}}{suffix}"


def to_markdown(res: dict[str, Any]) -> str:
    a = res["args"]
    lines = [
        f"# ivf_pq 4-bit fast scan vs faiss IVF,PQx4fs ({res['dataset']}, {a['queries']} "
        f"queries, ip, k={a['k']})", "",
        f"Native path: `{res['native']['isa']}`. Ours: `ivf_pq(nlist, m=d/{a['dsub']}, "
        "nbits=4)`: uint8-table fast scan of the probed lists for a shortlist of "
        "k + max(4, k // 4) rows, rescored by the float tables. `off`: the same index with the "
        "native kernels off (numba reference; results identical). faiss: "
        "`IVF{nlist},PQ{m}x4fs` (by residual). Same nlist, same nprobe. Batched QPS: all "
        f"queries in one call, best of {a['repeats']} (alternated). p50: median of "
        f"{a['latency_queries']} one-query calls.", "",
        "| base | threads | nlist | nprobe | recall ours | recall faiss | QPS ours | "
        "QPS faiss | QPS ratio | ours QPS at faiss's recall | ratio at equal recall | QPS off | "
        "p50 ours µs | p50 faiss µs | same as off | bars |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        failed = [name for name, v in r["pass"].items() if not v]
        verdict = "FAIL " + ", ".join(failed) if failed else "pass"
        lines.append(
            f"| {r['base']} | {r['threads']} | {r['nlist']} | {r['nprobe']} | "
            f"{r['recall']['ours']:.4f} | {r['recall']['faiss']:.4f} | "
            f"{r['qps']['ours']:,.0f} | {r['qps']['faiss']:,.0f} | {r['qps_ratio']:.2f}x | "
            f"{_num(r['qps_equal_recall'], ',.0f')} | "
            f"{_num(r['qps_ratio_equal_recall'], '.2f', 'x')} | {r['qps']['ours-off']:,.0f} | "
            f"{r['latency']['ours']['p50_us']:.0f} | "
            f"{r['latency']['faiss']['p50_us']:.0f} | {r['native_equals_off']} | {verdict} |")
    lines += ["", f"QPS ratio = ours / faiss at the same nprobe (`qps_same_nprobe`: >= {QPS_BAR}"
              f" with ours' recall >= faiss's - {RECALL_SLACK}). At one nprobe ours' recall is "
              "higher than faiss's (its codebooks: the uint8 shortlist alone, without the "
              "rescore's extra rows, gives the same recall@10); "
              "`qps_equal_recall` compares ours' QPS interpolated to faiss's recall (the "
              f"issue's bar: >= {QPS_BAR}x at equal recall@10).", "",
              f"Load average at start / end: {res['loadavg']['start']} / "
              f"{res['loadavg']['end']} (2 cores: wall-clock numbers are noisy; the contenders "
              "are alternated).", "",
              f"Environment: {json.dumps(res['environment'].get('versions', {}))}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", default=str(DEV) if DEV.exists() else "sample")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--dsub", type=int, default=8, help="dimensions per sub-quantizer")
    p.add_argument("--nprobe", type=_ints, default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument("--threads", type=_ints, default=[1, 2])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--latency-queries", type=int, default=200)
    p.add_argument("--big", type=int, default=200_000)
    p.add_argument("--noise", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--child-threads", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child_threads:
        with pinned_threads(args.child_threads):
            out = compare(args, args.child_threads)
        Path(args.child_out).write_text(json.dumps(out, default=float))
        return 0
    load0 = os.getloadavg()
    rows = run_children(args, argv)
    res = {
        "dataset": Path(args.data).name, "args": vars(args), "rows": rows,
        "native": {"isa": _native.active_isa()},
        "loadavg": {"start": [round(v, 2) for v in load0],
                    "end": [round(v, 2) for v in os.getloadavg()]},
        "environment": environment_info(), "sources": source_fingerprint(SOURCES),
    }
    write_results(Path(args.out), "native_ivf_pq", res, to_markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
