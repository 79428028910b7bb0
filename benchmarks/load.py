"""Load micro-benchmark: ``vecindex_core.load`` of a flat index vs ``numpy.load`` of a .npy.

Usage::

    python benchmarks/load.py [--n 100000] [--dim 384] [--repeats 3]

Saves an ``n x dim`` flat index and the same float32 matrix as ``.npy``, then reports load
time (best of ``--repeats``) and peak memory of one load, both as traced numpy allocations
(``tracemalloc``) and as the RSS high-water growth of a fresh subprocess, over the payload
(bar: <= 1.2). Writes ``load.{json,md}`` to ``benchmarks/results/``; exits 1 if the bar is
missed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vecindex_core.bench import bench_load

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    """Run the micro-benchmark, print the table and write the results."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    report = bench_load(args.n, args.dim, repeats=args.repeats)
    table = report.to_markdown()
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "load.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    (out / "load.md").write_text(table)
    print(f"results: {out / 'load'}.{{json,md}}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
