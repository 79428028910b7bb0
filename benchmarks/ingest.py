"""Streaming ingestion benchmark: 1,000,000 x 384 float32 rows from Parquet into ``turboquant``.

Usage::

    flock /tmp/vecindex-bench.lock python benchmarks/ingest.py [--rows 1000000] [--dim 384]
        [--spec 'turboquant(bits=4)'] [--batch-size 10000] [--checkpoint-rows 100000]
        [--workdir DIR] [--postgres]

1. Generates ``--rows`` seeded, roughly unit-norm float32 rows (norms 0.9-1.1) as Parquet
   files of 100,000 rows (``fixed_size_list<float32>``, row groups of 20,000, ids = row
   numbers), one chunk at a time: never all in memory.
2. Runs ``vecindex ingest`` in a **child process** into a new index file and records its
   peak RSS (its own ``VmHWM``, read from ``/proc/self/status`` as it exits), rows/s and
   the file size; a child that only imports vecindex and pyarrow gives the baseline RSS.
3. Kill test at full size: a second ``vecindex ingest`` into another file is SIGKILLed once
   its state file shows at least 30% of the rows, then rerun to completion; the result must
   hold every id exactly once (``ntotal == rows``, sorted ids == ``0..rows-1``), answer the
   same as the uninterrupted index on 1,000 sampled rows, and find each sampled row as
   its own nearest neighbour (reported as a fraction).

Bar: peak RSS of the ingest child < 1.5 GB. ``--postgres`` reads the same rows from a
PostgreSQL table instead (see :func:`postgres_source`). Writes ``benchmarks/results/
ingest.{json,md}`` (``ingest_postgres.*`` with ``--postgres``); exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RSS_BAR_BYTES = 1.5e9
FILE_ROWS = 100_000
ROW_GROUP = 20_000
SEED = 20260


def chunk(c: int, rows: int, dim: int) -> np.ndarray:
    """Rows ``c*FILE_ROWS ..`` of the dataset (deterministic, so any chunk can be rebuilt)."""
    rng = np.random.default_rng([SEED, c])
    x = rng.standard_normal((rows, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x *= rng.uniform(0.9, 1.1, size=(rows, 1)).astype(np.float32)
    return x


def chunks(n: int, dim: int) -> Iterator[tuple[int, np.ndarray]]:
    for c, start in enumerate(range(0, n, FILE_ROWS)):
        yield start, chunk(c, min(FILE_ROWS, n - start), dim)


def rows_of(ids: np.ndarray, dim: int) -> np.ndarray:
    """The vectors of global rows ``ids`` (rebuilt chunk by chunk)."""
    out = np.empty((ids.size, dim), dtype=np.float32)
    for c in np.unique(ids // FILE_ROWS):
        sel = np.flatnonzero(ids // FILE_ROWS == c)
        x = chunk(int(c), FILE_ROWS, dim)  # full chunks only are sampled from
        out[sel] = x[ids[sel] - c * FILE_ROWS]
    return out


def write_parquet(root: Path, n: int, dim: int) -> float:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for start, x in chunks(n, dim):
        emb = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim)
        ids = pa.array(np.arange(start, start + len(x), dtype=np.uint64))
        pq.write_table(pa.table({"id": ids, "embedding": emb}),
                       root / f"part-{start // FILE_ROWS:05d}.parquet",
                       row_group_size=ROW_GROUP, compression="none")
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- PostgreSQL hook
_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags 0, no extension
_FLOAT4_OID = 700


def pgcopy_rows(x: np.ndarray, first_id: int) -> bytes:
    """Binary COPY rows ``(id bigint, embedding real[])`` for float32 ``x``, built by numpy."""
    n, d = x.shape
    elem = np.dtype([("len", ">i4"), ("v", ">f4")])
    row = np.dtype([
        ("nfields", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("arr_len", ">i4"),
        ("ndim", ">i4"), ("hasnull", ">i4"), ("oid", ">i4"), ("dim", ">i4"), ("lbound", ">i4"),
        ("vals", elem, (d,)),
    ])
    out = np.empty(n, dtype=row)
    out["nfields"], out["id_len"], out["arr_len"] = 2, 8, 20 + 8 * d
    out["id"] = np.arange(first_id, first_id + n)
    out["ndim"], out["hasnull"], out["oid"], out["dim"], out["lbound"] = 1, 0, _FLOAT4_OID, d, 1
    out["vals"]["len"] = 4
    out["vals"]["v"] = x
    return out.tobytes()


def postgres_source(workdir: Path, n: int, dim: int) -> tuple[list[str], Callable[[], None]]:
    """HOOK (PostgreSQL side): start a server, load the rows, return the CLI source arguments.

    Starts PostgreSQL with :func:`vecindex_core.testing.start_postgres`, loads the same rows
    (``id bigint primary key, embedding real[]``) with ``COPY`` one chunk at a time, and
    returns ``([dsn, "--table", "vectors", "--vector-column", "embedding", "--id-column",
    "id", "--key-column", "id"], stop)``. ``vecindex ingest`` then builds
    ``vecindex_core.io.postgres.PostgresSource`` from them. This is the one place to adjust
    if that reader's options change.
    """
    import psycopg

    from vecindex_core.testing import start_postgres

    pg = start_postgres(workdir / "pg")
    try:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE vectors (id bigint PRIMARY KEY, embedding real[])")
            for start, x in chunks(n, dim):
                with conn.cursor().copy(
                    "COPY vectors (id, embedding) FROM STDIN (FORMAT binary)"
                ) as cp:
                    cp.write(_PGCOPY_HEADER)
                    for s in range(0, len(x), 10_000):
                        cp.write(pgcopy_rows(x[s:s + 10_000], start + s))
                    cp.write(b"\xff\xff")  # end of data (-1 fields)
    except BaseException:
        pg.stop()
        raise
    args = [pg.dsn, "--table", "vectors", "--vector-column", "embedding",
            "--id-column", "id", "--key-column", "id"]
    return args, pg.stop


# --------------------------------------------------------------------------- child runs
# The child reports its own VmHWM (peak RSS of its address space after exec) at exit. The
# ``ru_maxrss`` of wait4/RUSAGE_CHILDREN is not used: Linux carries the parent's RSS at fork
# into it, so a large parent inflates every child's figure.
_WRAPPER = (
    "import sys\n"
    "if sys.argv[2:] == ['--baseline']:\n"
    "    import pyarrow.parquet, vecindex_core, vecindex_core.io.ingest, vecindex_core.io.parquet\n"
    "    rc = 0\n"
    "else:\n"
    "    from vecindex_core.cli import main\n"
    "    rc = main(sys.argv[2:])\n"
    "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
    "open(sys.argv[1], 'w').write(hwm.split()[1])\n"
    "sys.exit(rc)\n"
)


def run_child(cli_args: list[str], *, kill_when: Callable[[], bool] | None = None
              ) -> dict[str, Any]:
    """Run ``vecindex`` with ``cli_args`` in a child; rc, wall s, peak RSS bytes, output."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.TemporaryDirectory() as tmp:
        hwm_file = Path(tmp) / "vmhwm"
        argv = [sys.executable, "-c", _WRAPPER, str(hwm_file), *cli_args]
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=ROOT)
        killed = False
        if kill_when is not None:
            while proc.poll() is None:
                if kill_when():
                    os.kill(proc.pid, signal.SIGKILL)
                    killed = True
                    break
                time.sleep(0.05)
        proc.wait()
        wall = time.perf_counter() - t0
        hwm = int(hwm_file.read_text()) * 1024 if hwm_file.exists() else None
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace").strip()
        rate = re.search(r"([\d,]+) rows/s", stdout)
        return {
            "rc": proc.returncode, "killed": killed, "wall_s": wall,
            "peak_rss_bytes": hwm, "stdout": stdout,
            "rows_per_s_in_process": float(rate.group(1).replace(",", "")) if rate else None,
            "stderr_tail": err.read().decode(errors="replace")[-1500:],
        }


def ingest_argv(source: list[str], into: Path, args: argparse.Namespace) -> list[str]:
    return ["ingest", *source, "--into", str(into),
            "--index", args.spec, "--metric", "cosine", "--batch-size", str(args.batch_size),
            "--checkpoint-rows", str(args.checkpoint_rows), "--no-progress"]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and write the results."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--spec", default="turboquant(bits=4)")
    p.add_argument("--batch-size", type=int, default=10_000)
    p.add_argument("--checkpoint-rows", type=int, default=100_000)
    p.add_argument("--kill-fraction", type=float, default=0.3)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--workdir", default=None, help="default: a temporary directory")
    p.add_argument("--postgres", action="store_true", help="read from PostgreSQL")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)

    import vecindex_core as vc
    from vecindex_core.bench.env import environment_info
    from vecindex_core.io.ingest import state_path_for

    n, dim = args.rows, args.dim
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vecindex-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    stop: Callable[[], None] = lambda: None  # noqa: E731
    report: dict[str, Any] = {
        "rows": n, "dim": dim, "spec": args.spec, "batch_size": args.batch_size,
        "checkpoint_rows": args.checkpoint_rows, "source": "postgres" if args.postgres
        else "parquet", "rss_bar_bytes": RSS_BAR_BYTES,
    }
    try:
        t0 = time.perf_counter()
        if args.postgres:
            source, stop = postgres_source(work, n, dim)
        else:
            write_parquet(work / "parquet", n, dim)
            source = [str(work / "parquet"), "--vector-column", "embedding",
                      "--id-column", "id"]
        report["generate_s"] = time.perf_counter() - t0
        report["source_bytes"] = sum(
            f.stat().st_size for f in (work / "parquet").glob("*.parquet")
        ) if not args.postgres else None
        print(f"generated {n} x {dim} rows in {report['generate_s']:.1f} s", file=sys.stderr)

        base = run_child(["--baseline"])  # imports only
        report["baseline_rss_bytes"] = base["peak_rss_bytes"]

        full = work / "full.vi"
        run = run_child(ingest_argv(source, full, args))
        if run["rc"] != 0:
            raise SystemExit(f"ingest failed: {run['stderr_tail']}")
        report["ingest"] = {
            **{k: run[k] for k in ("wall_s", "peak_rss_bytes", "stdout", "rows_per_s_in_process")},
            "rows_per_s": n / run["wall_s"],
            "index_file_bytes": full.stat().st_size,
        }
        print(run["stdout"], file=sys.stderr)

        killed = work / "killed.vi"
        state = state_path_for(killed)

        def far_enough() -> bool:
            try:
                st = json.loads(state.read_text())
            except (FileNotFoundError, ValueError):
                return False
            return int(st["rows_done"]) >= args.kill_fraction * n

        first = run_child(ingest_argv(source, killed, args), kill_when=far_enough)
        at_kill = json.loads(state.read_text())
        second = run_child(ingest_argv(source, killed, args))
        if second["rc"] != 0:
            raise SystemExit(f"rerun failed: {second['stderr_tail']}")
        a, b = vc.load(full), vc.load(killed)
        ids_exact = bool(
            b.ntotal == n
            and np.array_equal(np.sort(b.ids), np.arange(n, dtype=np.uint64))
        )
        rng = np.random.default_rng(7)
        full_rows = (n // FILE_ROWS) * FILE_ROWS or n
        pick = np.sort(rng.choice(full_rows, min(args.samples, full_rows), replace=False))
        q = rows_of(pick.astype(np.int64), dim) if n >= FILE_ROWS else chunk(0, n, dim)[pick]
        ra, rb = a.search(q, 10), b.search(q, 10)
        same = bool(np.array_equal(ra.ids, rb.ids))
        self_top1 = float(np.mean(rb.ids[:, 0] == pick.astype(np.uint64)))
        report["kill"] = {
            "killed": first["killed"], "rc_first": first["rc"],
            "rows_done_at_kill": at_kill["rows_done"], "position_at_kill": at_kill["position"],
            "rerun_wall_s": second["wall_s"], "rerun_peak_rss_bytes": second["peak_rss_bytes"],
            "rerun_stdout": second["stdout"], "ntotal": b.ntotal, "ids_exactly_once": ids_exact,
            "same_top10_as_uninterrupted": same, "self_top1_fraction": self_top1,
            "sampled_rows": int(pick.size),
        }
        del a, b
        peak = max(run["peak_rss_bytes"], second["peak_rss_bytes"])
        report["ok"] = bool(
            peak < RSS_BAR_BYTES and first["killed"] and ids_exact and same
            and self_top1 >= 0.9
        )
        report["environment"] = environment_info()
    finally:
        stop()
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    table = to_markdown(report)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "ingest_postgres" if args.postgres else "ingest"
    (out / f"{name}.json").write_text(json.dumps(report, indent=2, default=str))
    (out / f"{name}.md").write_text(table)
    print(f"results: {out / name}.{{json,md}}")
    return 0 if report["ok"] else 1


def to_markdown(r: dict[str, Any]) -> str:
    mb = 1 / 2**20
    ing, kill = r["ingest"], r["kill"]
    lines = [
        f"# Streaming ingestion: {r['rows']:,} x {r['dim']} float32 from {r['source']} "
        f"into `{r['spec']}`",
        "",
        f"batch {r['batch_size']:,} rows, checkpoint every {r['checkpoint_rows']:,} rows; "
        "`vecindex ingest` in a child process (peak RSS = its VmHWM).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| rows/s (wall, incl. start-up and checkpoints) | {ing['rows_per_s']:,.0f} |",
        f"| rows/s (inside `ingest()`: reading, encoding, checkpoints) | "
        f"{ing['rows_per_s_in_process'] or 0:,.0f} |",
        f"| wall time | {ing['wall_s']:.1f} s |",
        f"| peak RSS of the ingest child | {ing['peak_rss_bytes'] * mb:,.0f} MiB "
        f"(bar < {r['rss_bar_bytes'] / 1e9:.1f} GB) |",
        f"| baseline RSS (python + vecindex + pyarrow imported) | "
        f"{r['baseline_rss_bytes'] * mb:,.0f} MiB |",
        f"| index file | {ing['index_file_bytes'] * mb:,.0f} MiB |",
    ]
    if r.get("source_bytes"):
        lines.append(f"| Parquet source | {r['source_bytes'] * mb:,.0f} MiB |")
    lines += [
        f"| kill -9 after | {kill['rows_done_at_kill']:,} rows checkpointed |",
        f"| rerun | {kill['rerun_stdout']} |",
        f"| rerun peak RSS | {kill['rerun_peak_rss_bytes'] * mb:,.0f} MiB |",
        f"| every id exactly once (ntotal {kill['ntotal']:,}) | {kill['ids_exactly_once']} |",
        f"| top-10 of {kill['sampled_rows']} sampled rows equal to the uninterrupted index | "
        f"{kill['same_top10_as_uninterrupted']} |",
        f"| sampled rows found as their own top-1 | {kill['self_top1_fraction']:.3f} |",
        f"| **bar met** | **{r['ok']}** |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
