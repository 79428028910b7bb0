"""Flat bar check: exact ``flat`` against ``faiss.IndexFlatIP`` at 1 and 2 threads.

Usage (from the repository root, with vecindex installed or on ``PYTHONPATH``)::

    python benchmarks/flat_vs_faiss.py [DATA] [--queries 500] [--k 10] [--threads 1,2]

``DATA`` defaults to ``../shared/data/dev`` next to the repository when present, else the
bundled sample. Prints, per thread count, the batched QPS ratio and the single-query
latency ratio of ``flat`` over faiss (same process, same data, every pool pinned), and
recall@k against the exact ground truth; writes ``flat_vs_faiss.{json,md,png}`` to
``benchmarks/results/`` (the last of ``--rounds`` whole runs; the per-round ratios and
their median go to ``flat_vs_faiss_rounds.{json,md}``, since one run on a small shared
machine can be off by tens of percent).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from vecindex_core.bench import run_benchmark
from vecindex_core.datasets import load_dataset

HERE = Path(__file__).resolve().parent
DEV = HERE.parents[1] / "shared" / "data" / "dev"


def main(argv: list[str] | None = None) -> int:
    """Run the check; returns 0, or 1 if ``flat`` failed or faiss is missing."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", default=str(DEV) if DEV.is_dir() else "sample")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--latency-queries", type=int, default=200)
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    if args.rounds < 1:
        p.error("--rounds must be >= 1")

    ds = load_dataset(args.data, num_queries=args.queries, gt_k=max(args.k, 100))
    ratios: dict[int, list[tuple[float, float, float]]] = {t: [] for t in threads}
    ok = True
    for r in range(args.rounds):  # whole rounds, so a noisy spell hits one round, not all
        report = run_benchmark(
            ds, ["flat"], peers=["faiss", "numpy"], k_values=(args.k,), threads=threads,
            out_dir=args.out, repeats=args.repeats, latency_queries=args.latency_queries,
            baseline="faiss", stem="flat_vs_faiss", progress=r == 0,
        )
        ok = ok and not report.failures
        for t in threads:
            try:
                ours, theirs = report.result("flat", t), report.result("faiss", t)
            except KeyError as e:
                print(f"  threads={t}: missing result ({e})")
                ok = False
                continue
            ratios[t].append((
                ours.qps / theirs.qps,
                ours.latency_p50_us / theirs.latency_p50_us,
                ours.recall[args.k],
            ))
    print(report.to_markdown())  # the last round; its files are in --out
    lines = [
        f"flat vs faiss ({ds.name}, {ds.base.shape[0]} x {ds.base.shape[1]}, "
        f"{ds.queries.shape[0]} queries, metric {report.dataset['metric']}, k={args.k}), "
        f"median [min-max] over {args.rounds} rounds:",
    ]
    for t, rows in ratios.items():
        if not rows:
            continue
        qps, lat, rec = np.array(rows).T
        lines.append(
            f"  threads={t}: batched QPS / faiss {np.median(qps):.2f}x "
            f"[{qps.min():.2f}-{qps.max():.2f}]; single-query p50 / faiss "
            f"{np.median(lat):.2f}x [{lat.min():.2f}-{lat.max():.2f}] (lower is better); "
            f"recall@{args.k} min {rec.min():.4f}"
        )
    print("\n".join(lines))
    out = Path(args.out)
    (out / "flat_vs_faiss_rounds.md").write_text("\n".join(lines) + "\n")
    per_round = {
        str(t): [{"qps_ratio": q, "p50_ratio": lat, "recall": rec} for q, lat, rec in rows]
        for t, rows in ratios.items()
    }
    (out / "flat_vs_faiss_rounds.json").write_text(json.dumps(per_round, indent=2) + "\n")
    print(f"results: {out / 'flat_vs_faiss'}.{{json,md,png}}, {out}/flat_vs_faiss_rounds.*")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
