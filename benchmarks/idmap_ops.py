"""Single-id add/remove micro-benchmark: vecindex ``flat`` id map vs ``turbovec.IdMapIndex``.

Usage::

    python benchmarks/idmap_ops.py [--n-base 100000] [--n-ops 10000] [--dim 384]
                                   [--sizes 10000,100000]

On an index already holding ``n_base`` vectors: ``n_ops`` single-vector adds, then
``n_ops`` single-id removes, each call timed alone, in one process with the same inputs.
Per-op times at each size in ``--sizes`` show whether add/remove stay O(1) as the index
grows. Writes ``idmap_ops.{json,md}`` to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vecindex_core.bench import bench_idmap_ops

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    """Run the micro-benchmark, print the table and write the results."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-base", type=int, default=100_000)
    p.add_argument("--n-ops", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--sizes", default=None, help="comma-separated n_base values")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else None
    report = bench_idmap_ops(args.n_base, args.n_ops, args.dim, sizes=sizes)
    table = report.to_markdown()
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "idmap_ops.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    (out / "idmap_ops.md").write_text(table)
    print(f"results: {out / 'idmap_ops'}.{{json,md}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
