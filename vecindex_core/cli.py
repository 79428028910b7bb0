"""The ``vecindex`` command line: ``bench``, ``demo``, ``info`` and ``ingest``.

::

    vecindex bench [--data PATH|sample] [--specs flat,...] [--peers faiss,numpy,hnswlib]
                   [--k 1,10,100] [--threads 1,2] [--queries N] [--out DIR]
    vecindex demo [--out DIR]
    vecindex info [--json]
    vecindex ingest SOURCE --into PATH [--index SPEC] [--metric M] [--vector-column C]
                   [--id-column C] [--text-column C] [--metadata-columns C,...]
                   [--table T [--schema S] | --query SQL] [--key-column C]
                   [--batch-size N] [--checkpoint-rows N] [--checkpoint-seconds S]
                   [--train-rows N] [--no-progress]

``bench`` runs :func:`vecindex_core.bench.run_benchmark` on a dataset (the bundled sample,
a directory with ``base.npy``/``queries.npy``, a ``.npy``/``.fvecs`` file or an
ANN-benchmarks ``.hdf5``), prints the markdown table and writes JSON, markdown and a PNG
plot to ``--out``. ``demo`` builds every registered index over the bundled sample and
compares them with the installed peers. ``info`` prints versions, the registered indexes
with their parameters, and the thread settings. ``ingest`` streams a ``.npy``/``.fvecs``
file, a Parquet file or directory, or a ``postgresql://`` table or query into an index file
or a Collection (``.db``/``.sqlite``), resumably (:func:`vecindex_core.io.ingest.ingest`),
and prints a one-line summary.

Exit status: 0 on success, 1 when one of our indexes failed during a benchmark, 2 on a bad
argument (one line on stderr: ``vecindex: error: ...``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["main", "split_specs"]

PROG = "vecindex"


class _UsageError(Exception):
    """A bad command line; reported as one line and exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def split_specs(text: str) -> list[str]:
    """Split ``"flat,ivf_pq(nlist=256,m=48)"`` on the commas outside parentheses.

    Raises
    ------
    ValueError
        Unbalanced parentheses, or an empty item.
    """
    items: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ')' in {text!r}")
        if ch == "," and depth == 0:
            items.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise ValueError(f"unbalanced '(' in {text!r}")
    items.append("".join(cur).strip())
    if any(not s for s in items):
        raise ValueError(f"empty item in {text!r}")
    return items


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _build_parser() -> _Parser:
    from .bench.peers import PEERS

    parser = _Parser(
        prog=PROG,
        description="vecindex: vector indexes behind one contract, with benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    b = sub.add_parser(
        "bench",
        help="benchmark indexes against peers on one dataset",
        description="Measure build time, recall@k, batched QPS, single-query latency and "
        "memory of our index specs and of peer libraries, in one process on the same data.",
    )
    b.add_argument(
        "--data", default="sample",
        help="'sample' (bundled), a directory with base.npy/queries.npy, a .npy/.fvecs "
        "file, or an ANN-benchmarks .hdf5 (default: sample)",
    )
    b.add_argument("--queries-file", default=None,
                   help="queries (.npy/.fvecs) when --data is a single base file")
    b.add_argument("--metric", choices=("cosine", "ip", "l2"), default=None,
                   help="metric (default: the dataset's)")
    b.add_argument("--specs", action="append", default=None,
                   help="comma-separated index specs, e.g. 'flat,ivf_pq(nlist=256,m=48)'; "
                   "repeatable (default: flat)")
    b.add_argument("--peers", type=_name_list, default=None,
                   help=f"comma-separated peers from {', '.join(PEERS)}; 'none' for no "
                   "peers (default: all)")
    b.add_argument("--k", type=_int_list, default=[1, 10, 100],
                   help="recall cut-offs; searches use the largest (default: 1,10,100)")
    b.add_argument("--threads", type=_int_list, default=[1],
                   help="thread counts to pin every pool to (default: 1)")
    b.add_argument("--queries", type=_positive_int, default=None,
                   help="use only the first N queries")
    b.add_argument("--repeats", type=_positive_int, default=3,
                   help="timed batched repeats after a warm-up (default: 3)")
    b.add_argument("--latency-queries", type=_positive_int, default=200,
                   help="single-query calls timed for latency percentiles (default: 200)")
    b.add_argument("--baseline", choices=tuple(PEERS), default=None,
                   help="peer the ratio columns compare to (default: faiss if measured)")
    b.add_argument("--out", default="bench-out",
                   help="directory for bench.json, bench.md, bench.png (default: bench-out)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")

    d = sub.add_parser(
        "demo",
        help="build every registered index over the bundled sample and compare with peers",
    )
    d.add_argument("--out", default="demo-out",
                   help="directory for demo.json, demo.md, demo.png (default: demo-out)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")

    i = sub.add_parser("info", help="versions, registered indexes, thread settings")
    i.add_argument("--json", action="store_true", help="print JSON instead of text")

    g = sub.add_parser(
        "ingest",
        help="stream vectors from .npy, Parquet or PostgreSQL into an index or Collection",
        description="Stream SOURCE (a .npy/.fvecs file, a .parquet file or a directory of "
        "them, or a postgresql:// URL with --table or --query) into an index file or, for a "
        "path ending .db/.sqlite, a Collection. Memory stays bounded by one batch; a rerun "
        "after a crash resumes from the last checkpoint and adds every row exactly once.",
    )
    g.add_argument("source", help="a .npy/.fvecs file, a .parquet file or directory, or a "
                   "postgresql:// URL")
    g.add_argument("--into", required=True,
                   help="index file to create or extend, or a .db/.sqlite Collection")
    g.add_argument("--index", default=None,
                   help="index spec for a new target, e.g. 'turboquant(bits=4)'")
    g.add_argument("--metric", choices=("cosine", "ip", "l2"), default=None,
                   help="metric of a new target (default: cosine)")
    g.add_argument("--vector-column", default=None,
                   help="vector column (Parquet, PostgreSQL; default: embedding)")
    g.add_argument("--id-column", default=None,
                   help="uint64 id column (default: the row numbers)")
    g.add_argument("--text-column", default=None, help="text column (Collection targets)")
    g.add_argument("--metadata-columns", default=None,
                   help="comma-separated metadata columns (Collection targets)")
    g.add_argument("--table", default=None, help="PostgreSQL table to read")
    g.add_argument("--schema", default=None, help="PostgreSQL schema of --table")
    g.add_argument("--query", default=None, help="PostgreSQL query to read")
    g.add_argument("--key-column", default=None,
                   help="PostgreSQL column that orders rows and positions resume")
    g.add_argument("--batch-size", type=_positive_int, default=10_000,
                   help="rows read and added at a time (default: 10000)")
    g.add_argument("--checkpoint-rows", type=_positive_int, default=100_000,
                   help="save index and state after this many rows (default: 100000)")
    g.add_argument("--checkpoint-seconds", type=_positive_float, default=None,
                   help="also save index and state after this many seconds")
    g.add_argument("--train-rows", type=_positive_int, default=None,
                   help="rows read first to train a new index of a kind that needs it")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_benchmark
    from .bench.peers import PEERS
    from .datasets import load_dataset
    from .errors import InvalidArgumentError, VecIndexError
    from .registry import get_kind, parse_spec

    try:
        specs = [s for group in (args.specs or ["flat"]) for s in split_specs(group)]
    except ValueError as e:
        raise _UsageError(f"--specs: {e}") from None
    for spec in specs:
        try:
            name, params = parse_spec(spec)
            get_kind(name).validate_params(params)
        except VecIndexError as e:
            raise _UsageError(f"--specs: {e}") from None
    peers = list(PEERS) if args.peers is None else args.peers
    if peers == ["none"]:
        peers = []
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise _UsageError(
            f"--peers: unknown peer {unknown[0]!r}; valid peers: {', '.join(PEERS)}"
        )
    try:
        dataset = load_dataset(
            args.data, queries=args.queries_file, metric=args.metric,
            num_queries=args.queries, gt_k=max(100, max(args.k)),
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise _UsageError(f"--data {args.data!r}: {e}") from None
    try:
        report = run_benchmark(
            dataset, specs, peers=peers, k_values=args.k, threads=args.threads,
            metric=args.metric, out_dir=args.out, repeats=args.repeats,
            latency_queries=args.latency_queries, baseline=args.baseline,
            progress=not args.no_progress,
        )
    except InvalidArgumentError as e:  # validated before anything runs: a bad argument
        raise _UsageError(str(e)) from None
    print(report.to_markdown())
    print(f"wrote {os.path.join(args.out, 'bench')}.{{json,md,png}}", file=sys.stderr)
    return 1 if report.failures else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    report = run_demo(args.out, progress=not args.no_progress)
    return 1 if report.failures else 0


def info() -> dict[str, Any]:
    """Versions, registered indexes with their parameters, thread settings and the native
    kernels (:func:`vecindex_core._native.config`)."""
    import numba

    from ._native import config as native_config
    from ._threads import get_num_threads
    from .bench.env import environment_info
    from .registry import get_kind, list_indexes

    env = environment_info()
    kinds = []
    for name in list_indexes():
        kind = get_kind(name)
        kinds.append({
            "name": name,
            "class": f"{kind.cls.__module__}.{kind.cls.__qualname__}",
            "exact": kind.exact,
            "params": [p.describe() for p in kind.params],
            "search_params": [p.describe() for p in kind.search_params],
        })
    return {
        "versions": {**env["versions"], "python": env["python"]},
        "indexes": kinds,
        "threads": {
            "vecindex": get_num_threads(),
            "numba": int(numba.config.NUMBA_NUM_THREADS),  # type: ignore[attr-defined]
            "cpu_count": env["cpu_count"],
            "cpu_affinity": env["cpu_affinity"],
            "env": env["thread_env"],
        },
        "cpu_model": env["cpu_model"],
        "cpu_flags": env["cpu_flags"],
        "platform": env["platform"],
        "threadpool_info": env["threadpool_info"],
        "native": native_config(),
    }


def _cmd_info(args: argparse.Namespace) -> int:
    data = info()
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    out = ["vecindex " + str(data["versions"].get("vecindex")), "", "versions:"]
    out += [f"  {k}: {v}" for k, v in data["versions"].items() if v is not None]
    out += ["", "registered indexes:"]
    for kind in data["indexes"]:
        out.append(f"  {kind['name']}{' (exact)' if kind['exact'] else ''}  [{kind['class']}]")
        out += [f"    param  {p}" for p in kind["params"]]
        out += [f"    search {p}" for p in kind["search_params"]]
        if not kind["params"] and not kind["search_params"]:
            out.append("    (no parameters)")
    t = data["threads"]
    out += [
        "",
        f"threads: vecindex {t['vecindex']}, numba (NUMBA_NUM_THREADS) {t['numba']}, "
        f"cpus {t['cpu_count']} (usable {t['cpu_affinity']})",
        f"cpu: {data['cpu_model']} [{' '.join(data['cpu_flags'])}]",
        f"platform: {data['platform']}",
        "thread env: " + (", ".join(f"{k}={v}" for k, v in t["env"].items()) or "(none set)"),
        "thread pools (threadpoolctl, libraries loaded so far):",
    ]
    pools = data["threadpool_info"]
    for pool in pools if isinstance(pools, list) else []:
        out.append(
            f"  {pool.get('internal_api')} {pool.get('version')} "
            f"threads={pool.get('num_threads')} arch={pool.get('architecture', '-')} "
            f"[{pool.get('filepath')}]"
        )
    nat = data["native"]
    out += [
        f"native kernels: built {nat['built']}, path in use {nat['isa'] or 'none'} "
        f"(usable {', '.join(nat['usable_isas']) or '-'}; VECINDEX_NATIVE="
        f"{nat['env'] if nat['env'] is not None else '(unset)'}), "
        f"hamming_topk {nat['hamming_topk']} [{nat['path'] or nat['import_error']}]",
    ]
    print("\n".join(out))
    return 0


def _ingest_source(args: argparse.Namespace) -> Any:
    """Build the source named on the command line (only for SOURCE's kind)."""
    src: str = args.source
    vector_column = args.vector_column or "embedding"
    meta = None if args.metadata_columns is None else [
        c.strip() for c in args.metadata_columns.split(",")]
    if meta is not None and not all(meta):
        raise _UsageError(f"--metadata-columns: empty name in {args.metadata_columns!r}")
    if src.startswith(("postgresql://", "postgres://")):
        if (args.table is None) == (args.query is None):
            raise _UsageError("a postgresql:// source needs exactly one of --table or --query")
        from .io.postgres import PostgresSource

        return PostgresSource(
            src, table=args.table, query=args.query, vector_column=vector_column,
            id_column=args.id_column, key_column=args.key_column, text_column=args.text_column,
            metadata_columns=meta, schema=args.schema,
        )
    for flag, value in (("--table", args.table), ("--query", args.query),
                        ("--key-column", args.key_column), ("--schema", args.schema)):
        if value is not None:
            raise _UsageError(f"{flag} is for postgresql:// sources, not {src!r}")
    lower = src.lower()
    if lower.endswith((".npy", ".fvecs")):
        for flag, value in (("--vector-column", args.vector_column),
                            ("--id-column", args.id_column),
                            ("--text-column", args.text_column),
                            ("--metadata-columns", args.metadata_columns)):
            if value is not None:
                raise _UsageError(f"{flag} does not apply to an array file like {src!r}")
        from .io.numpy_source import NumpySource

        return NumpySource(src)
    if lower.endswith(".parquet") or os.path.isdir(src):
        from .io.parquet import ParquetSource

        return ParquetSource(src, vector_column, id_column=args.id_column,
                             text_column=args.text_column, metadata_columns=meta)
    raise _UsageError(
        f"unknown source {src!r}: expected a .npy/.fvecs file, a .parquet file or directory, "
        "or a postgresql:// URL"
    )


def _cmd_ingest(args: argparse.Namespace) -> int:
    from .errors import VecIndexError
    from .io.ingest import ingest

    try:
        source = _ingest_source(args)
        result = ingest(
            source, args.into, index=args.index, metric=args.metric,
            batch_size=args.batch_size, checkpoint_rows=args.checkpoint_rows,
            checkpoint_seconds=args.checkpoint_seconds, train_rows=args.train_rows,
            progress=not args.no_progress,
        )
    except (VecIndexError, OSError) as e:
        raise _UsageError(str(e) or type(e).__name__) from None
    print(result.summary())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vecindex`` command line; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).
    """
    try:
        args = _build_parser().parse_args(argv)
        commands = {"bench": _cmd_bench, "demo": _cmd_demo, "info": _cmd_info,
                    "ingest": _cmd_ingest}
        return commands[args.command](args)
    except _UsageError as e:
        print(f"{PROG}: error: {str(e).splitlines()[0] if str(e) else 'bad arguments'}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
