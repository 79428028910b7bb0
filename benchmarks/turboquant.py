"""``turboquant`` against turbovec, plus the code-scan kernel's dispatch measurements.

Usage (from the repository root, with vecindex installed or on ``PYTHONPATH``)::

    flock /tmp/vecindex-bench.lock python benchmarks/turboquant.py [DATA] [--threads 1,2]

``DATA`` defaults to ``../shared/data/dev`` next to the repository when present, else the
bundled sample. Metric ``ip``, ``k = 10``. Sections:

1. **compare** (one child process per thread count, so turbovec's rayon pool starts with
   ``RAYON_NUM_THREADS`` set; every other pool is pinned with
   ``vecindex_core.bench.runner.pinned_threads``): ``turboquant(bits=b)`` vs
   ``turbovec.TurboQuantIndex(dim, bit_width=b)`` for each ``--bits``: build time, recall@k,
   batched QPS (all queries in one call, best of ``--repeats`` after a warm-up, ours and
   turbovec alternated), single-query latency (p50 of ``--latency-queries`` calls) and bytes
   per vector (our ``memory_bytes() / n``, turbovec's ``len(to_bytes()) / n``).
2. **dispatch** (one thread): the LUT route (:func:`lut_topk` / :func:`coord_lut_topk`)
   against the BLAS route (:func:`decoded_topk`) on the index's own codes, per bit width and
   batch size, in ns per (query, row) from thread CPU time (robust to other processes on
   shared cores); the crossover, and whether :func:`prefer_decoded` picks the faster route.
3. **scan** (one thread): where a single query's time goes: preparing the query, the
   rotation, the tables, the byte tables, the scan (ns per row and per lookup).
4. **seeds**: recall@k of ours at seeds 0-4 (the rotation's noise) next to turbovec's.

Writes ``turboquant.{json,md}`` to ``benchmarks/results/``.
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
from pathlib import Path
from typing import Any

import numpy as np

from vecindex_core._kernels.codes import (
    COORD_LOOKUP_NS,
    LOOKUP_NS,
    byte_luts,
    coord_lut_topk,
    decoded_topk,
    dequantize,
    lut_topk,
    prefer_decoded,
)
from vecindex_core._kernels.rotation import rotate
from vecindex_core._kernels.topk import finalize_heaps, init_heaps
from vecindex_core.bench.env import environment_info
from vecindex_core.bench.runner import pinned_threads, recall_at_k
from vecindex_core.bench.timing import (
    best_of_pair,
    json_default,
    log,
    median_latency_us,
    source_fingerprint,
    timed,
    write_results,
)
from vecindex_core.datasets import load_dataset
from vecindex_core.turboquant import TurboQuantIndex

#: vecindex_core sources the results are tied to (sha256 prefixes in the JSON)
SOURCES = ["turboquant.py", "_kernels/codes.py", "_kernels/rotation.py"]
HERE = Path(__file__).resolve().parent
DEV = HERE.parents[1] / "shared" / "data" / "dev"










def cpu_best(fn: Callable[[], Any], repeats: int) -> float:
    """Smallest thread CPU time of ``repeats`` calls (after a warm-up), in seconds."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t0)
    return best




def import_turbovec() -> tuple[Any, str | None]:
    try:
        import turbovec
    except ImportError as e:
        return None, f"turbovec not importable: {e}"
    return turbovec, None


# --------------------------------------------------------------------------- 1. compare
def section_compare(ds: Any, args: argparse.Namespace, threads: int) -> dict[str, Any]:
    """Run inside a child process whose thread pools are pinned to ``threads``."""
    turbovec, why = import_turbovec()
    x, q, gt, k = ds.base, ds.queries, ds.gt, args.k
    n, d = x.shape
    rows = []
    for bits in args.bits:
        ours = TurboQuantIndex(d, "ip", bits=bits)
        build_s, _ = timed(lambda ours=ours: ours.add(x))
        res = ours.search(q, k)
        row: dict[str, Any] = {
            "bits": bits, "threads": threads,
            "ours": {"build_s": build_s, "recall": recall_at_k(res.ids, gt, k),
                     "bytes_per_vector": ours.memory_bytes() / n,
                     "stored_bytes_per_vector": ours.bytes_per_vector()},
        }
        ours_batch = lambda ours=ours: ours.search(q, k)  # noqa: E731
        if turbovec is None:
            row["turbovec"] = why
            t_ours = [timed(ours_batch)[0] for _ in range(args.repeats)]
        else:
            tv = turbovec.TurboQuantIndex(dim=d, bit_width=bits)
            tv_build, _ = timed(lambda tv=tv: tv.add(x))
            tv.prepare()
            _, tv_ids = tv.search(q, k)
            row["turbovec"] = {"build_s": tv_build,
                               "recall": recall_at_k(np.asarray(tv_ids, np.int64), gt, k),
                               "bytes_per_vector": len(tv.to_bytes()) / n}
            t_ours, t_tv = best_of_pair(ours_batch, lambda tv=tv: tv.search(q, k), args.repeats)
            row["turbovec"]["qps"] = q.shape[0] / min(t_tv)
            row["turbovec"]["batch_times_s"] = t_tv
            row["turbovec"].update(median_latency_us(lambda qi, tv=tv: tv.search(qi, k), q,
                                              args.latency_queries))
        row["ours"]["qps"] = q.shape[0] / min(t_ours)
        row["ours"]["batch_times_s"] = t_ours
        row["ours"].update(median_latency_us(lambda qi, ours=ours: ours.search(qi, k), q,
                                      args.latency_queries))
        if isinstance(row["turbovec"], dict):
            tv_row = row["turbovec"]
            row["qps_ratio"] = row["ours"]["qps"] / tv_row["qps"]
            row["latency_ratio"] = tv_row["p50_us"] / row["ours"]["p50_us"]
            row["recall_delta"] = row["ours"]["recall"] - tv_row["recall"]
            row["bytes_delta"] = row["ours"]["bytes_per_vector"] - tv_row["bytes_per_vector"]
        rows.append(row)
        o = row["ours"]
        log(f"  threads={threads} bits={bits}: ours recall={o['recall']:.4f} "
            f"QPS={o['qps']:,.0f} p50={o['p50_us']:.0f}us B/vec={o['bytes_per_vector']:.1f}"
            + (f" | turbovec recall={row['turbovec']['recall']:.4f} "
               f"QPS={row['turbovec']['qps']:,.0f} p50={row['turbovec']['p50_us']:.0f}us "
               f"B/vec={row['turbovec']['bytes_per_vector']:.1f}"
               if isinstance(row["turbovec"], dict) else ""))
    return {"rows": rows, "loadavg": os.getloadavg()}


def run_compare_children(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"by_threads": {}}
    for t in args.threads:
        log(f"[compare] threads={t} (child process)")
        env = {**os.environ, "RAYON_NUM_THREADS": str(t), "OMP_NUM_THREADS": str(t),
               "OPENBLAS_NUM_THREADS": str(t), "VECINDEX_NUM_THREADS": str(t)}
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            path = f.name
        try:
            cmd = [sys.executable, __file__, args.data, "--queries", str(args.queries),
                   "--k", str(args.k), "--repeats", str(args.repeats),
                   "--latency-queries", str(args.latency_queries),
                   "--bits", ",".join(map(str, args.bits)), "--child-threads", str(t),
                   "--child-out", path]
            subprocess.run(cmd, env=env, check=True)
            out["by_threads"][str(t)] = json.loads(Path(path).read_text())
        finally:
            Path(path).unlink(missing_ok=True)
    return out


# --------------------------------------------------------------------------- 2. dispatch
def route_times(index: TurboQuantIndex, rq: np.ndarray, k: int, repeats: int,
                ) -> tuple[float, float]:
    """Thread CPU seconds of the LUT route and of the BLAS route for rotated queries ``rq``."""
    bits, d, n = index.bits, index.dim, index.ntotal
    codes, scales, cb = index.codes, index.scales, index.codebook_
    buf = np.empty((2048, d), np.float32)

    def lut() -> Any:
        hs, hi = init_heaps(rq.shape[0], k)
        tables = rq[:, :, None] * cb[None, None, :]
        if bits in (1, 2, 4, 8):
            lut_topk(byte_luts(tables, bits), codes, hs, hi, scale=scales)
        else:
            coord_lut_topk(tables, codes, bits, hs, hi, scale=scales)
        return finalize_heaps(hs, hi)

    def dec() -> Any:
        return decoded_topk(rq, lambda a, b: dequantize(codes, bits, d, cb, a, b, buf), n, k,
                            scale=scales)

    return cpu_best(lut, repeats), cpu_best(dec, repeats)


def section_dispatch(ds: Any, args: argparse.Namespace) -> dict[str, Any]:
    log("[dispatch] LUT route vs BLAS route, 1 thread, thread CPU time")
    x, q = ds.base, ds.queries
    n, d = x.shape
    rows = []
    with pinned_threads(1):
        for bits in args.dispatch_bits:
            index = TurboQuantIndex(d, "ip", bits=bits)
            index.add(x)
            lookups = index.nbytes if bits in (1, 2, 4, 8) else d
            for nq in args.dispatch_nq:
                rq = rotate(np.ascontiguousarray(q[np.arange(nq) % q.shape[0]]), 0)
                reps = max(2, min(args.repeats, int(64 / nq) + 1))
                t_lut, t_dec = route_times(index, rq, args.k, reps)
                picked = prefer_decoded(
                    nq, lookups, d,
                    lookup_ns=LOOKUP_NS if bits in (1, 2, 4, 8) else COORD_LOOKUP_NS)
                row = {"bits": bits, "nq": nq, "lookups_per_row": lookups,
                       "lut_ns_per_qrow": t_lut / (nq * n) * 1e9,
                       "decoded_ns_per_qrow": t_dec / (nq * n) * 1e9,
                       "faster": "decoded" if t_dec < t_lut else "lut",
                       "prefer_decoded": picked,
                       "picked_cost_over_best": (t_dec if picked else t_lut)
                       / min(t_dec, t_lut)}
                rows.append(row)
                log(f"  bits={bits} nq={nq:<4} lut={row['lut_ns_per_qrow']:7.1f} "
                    f"decoded={row['decoded_ns_per_qrow']:7.1f} ns/(q,row) "
                    f"faster={row['faster']:<7} model={'decoded' if picked else 'lut'}")
    crossover = {}
    for bits in args.dispatch_bits:
        wins = [r["nq"] for r in rows if r["bits"] == bits and r["faster"] == "decoded"]
        crossover[str(bits)] = min(wins) if wins else None
    return {"rows": rows, "crossover_nq": crossover, "n": n, "dim": d}


# --------------------------------------------------------------------------- 3. scan
def section_scan(ds: Any, args: argparse.Namespace) -> dict[str, Any]:
    log("[scan] single-query breakdown, 1 thread, thread CPU time (best of 20)")
    x, q = ds.base, ds.queries
    n, d = x.shape
    rows = []
    with pinned_threads(1):
        for bits in args.bits:
            index = TurboQuantIndex(d, "ip", bits=bits)
            index.add(x)
            q1 = q[:1]
            rq = rotate(q1, 0)
            tables = rq[:, :, None] * index.codebook_[None, None, :]
            luts = byte_luts(tables, bits)
            codes, scales = index.codes, index.scales

            def scan(luts: np.ndarray = luts, codes: np.ndarray = codes,
                     scales: np.ndarray = scales) -> Any:
                hs, hi = init_heaps(1, args.k)
                lut_topk(luts, codes, hs, hi, scale=scales)
                return finalize_heaps(hs, hi)

            parts = {
                "search_total_us": cpu_best(lambda index=index, q1=q1: index.search(q1, args.k),
                                            20),
                "prepare_us": cpu_best(lambda index=index, q1=q1: index.prepare(q1), 20),
                "rotate_us": cpu_best(lambda q1=q1: rotate(q1, 0), 20),
                "tables_us": cpu_best(
                    lambda rq=rq, index=index: rq[:, :, None] * index.codebook_[None, None, :],
                    20),
                "byte_luts_us": cpu_best(lambda tables=tables, bits=bits: byte_luts(tables, bits),
                                         20),
                "scan_us": cpu_best(scan, 20),
            }
            parts = {key: v * 1e6 for key, v in parts.items()}
            row = {"bits": bits, "n": n, "nbytes": index.nbytes, **parts,
                   "scan_ns_per_row": parts["scan_us"] * 1e3 / n,
                   "scan_ns_per_lookup": parts["scan_us"] * 1e3 / (n * index.nbytes)}
            rows.append(row)
            log(f"  bits={bits}: " + ", ".join(f"{key}={v:.1f}" for key, v in row.items()
                                              if key.endswith(("_us", "_row", "_lookup"))))
    return {"rows": rows}


# --------------------------------------------------------------------------- 4. seeds
def section_seeds(ds: Any, args: argparse.Namespace) -> dict[str, Any]:
    log("[seeds] recall at seeds 0-4")
    x, q, gt, k = ds.base, ds.queries, ds.gt, args.k
    out: dict[str, Any] = {}
    for bits in args.bits:
        recs = []
        for seed in range(5):
            index = TurboQuantIndex(x.shape[1], "ip", bits=bits, seed=seed)
            index.add(x)
            recs.append(recall_at_k(index.search(q, k).ids, gt, k))
        out[str(bits)] = {"recalls": recs, "mean": float(np.mean(recs)),
                          "min": float(np.min(recs)), "max": float(np.max(recs))}
        log(f"  bits={bits}: {[f'{r:.4f}' for r in recs]}")
    return out


# --------------------------------------------------------------------------- report
def fmt(v: Any, spec: str = ".4f") -> str:
    return "—" if v is None else format(v, spec)


def to_markdown(res: dict[str, Any], args: argparse.Namespace) -> str:
    ds = res["dataset"]
    k = args.k
    lines = [f"# turboquant vs turbovec ({ds['name']}: {ds['n']:,} x {ds['dim']}, "
             f"{ds['queries']} queries, ip, k={k})", ""]
    cmp_ = res.get("compare")
    if cmp_:
        lines += [
            "## Head to head", "",
            f"Ours: `turboquant(bits=B)` (no rerank, codes only). turbovec: "
            f"`TurboQuantIndex(dim, bit_width=B)` (`prepare()` called). Batched QPS: "
            f"{ds['queries']} queries in one call, best of {args.repeats} (alternated). "
            f"Single: p50 of {args.latency_queries} one-query calls. B/vector: our "
            "`memory_bytes()/n` (codes + scales + codebook + rotation signs/permutations), "
            "turbovec's `len(to_bytes())/n`.", "",
            "| threads | bits | recall ours | recall turbovec | QPS ours | QPS turbovec | "
            "QPS ratio | p50 ours ms | p50 turbovec ms | latency ratio | B/vec ours | "
            "B/vec turbovec |",
            "|---" * 12 + "|"]
        for t, block in cmp_["by_threads"].items():
            for r in block["rows"]:
                o = r["ours"]
                tv = r["turbovec"] if isinstance(r["turbovec"], dict) else {}
                lines.append(
                    f"| {t} | {r['bits']} | {o['recall']:.4f} | {fmt(tv.get('recall'))} | "
                    f"{o['qps']:,.0f} | {fmt(tv.get('qps'), ',.0f')} | "
                    f"{fmt(r.get('qps_ratio'), '.2f')}x | {o['p50_us'] / 1e3:.2f} | "
                    f"{fmt(tv.get('p50_us', 0) / 1e3 if tv else None, '.2f')} | "
                    f"{fmt(r.get('latency_ratio'), '.2f')}x | {o['bytes_per_vector']:.1f} | "
                    f"{fmt(tv.get('bytes_per_vector'), '.1f')} |")
        lines += ["", "QPS ratio = ours / turbovec; latency ratio = turbovec p50 / ours p50 "
                  "(> 1: ours faster).", ""]
        bars = []
        for t, block in cmp_["by_threads"].items():
            for r in block["rows"]:
                if not isinstance(r["turbovec"], dict):
                    continue
                tv = r["turbovec"]
                bars.append(
                    f"- threads={t}, bits={r['bits']}: recall {r['ours']['recall']:.4f} vs "
                    f"{tv['recall']:.4f} ({'meets' if r['recall_delta'] >= 0 else 'BELOW'} "
                    f"the bar, delta {r['recall_delta']:+.4f}); bytes/vector "
                    f"{r['ours']['bytes_per_vector']:.1f} vs {tv['bytes_per_vector']:.1f} "
                    f"({'meets' if r['bytes_delta'] <= 8 else 'ABOVE'} the +8 bar); "
                    f"QPS ratio {r['qps_ratio']:.2f}x, latency ratio {r['latency_ratio']:.2f}x")
        lines += ["### Bars", "", *bars, ""]
    seeds = res.get("seeds")
    if seeds:
        lines += ["## Seed noise (recall@10 of ours, seeds 0-4)", "",
                  "| bits | seeds 0-4 | mean | min | max |", "|---|---|---|---|---|"]
        for b, s in seeds.items():
            lines.append(f"| {b} | {', '.join(f'{v:.4f}' for v in s['recalls'])} | "
                         f"{s['mean']:.4f} | {s['min']:.4f} | {s['max']:.4f} |")
        lines.append("")
    disp = res.get("dispatch")
    if disp:
        lines += ["## Dispatch: LUT scan vs BLAS on decoded blocks (1 thread)", "",
                  f"ns per (query, row), thread CPU time, best of several calls, on the "
                  f"index's own codes ({disp['n']:,} rows, dim {disp['dim']}). `model` is "
                  "`prefer_decoded(nq, lookups_per_row, dim)`; `cost` is the chosen route's "
                  "time over the faster one's.", "",
                  "| bits | nq | lookups/row | LUT | decoded | faster | model | cost |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in disp["rows"]:
            lines.append(f"| {r['bits']} | {r['nq']} | {r['lookups_per_row']} | "
                         f"{r['lut_ns_per_qrow']:.1f} | {r['decoded_ns_per_qrow']:.1f} | "
                         f"{r['faster']} | {'decoded' if r['prefer_decoded'] else 'lut'} | "
                         f"{r['picked_cost_over_best']:.2f}x |")
        lines += ["", "Smallest batch where the BLAS route was faster: "
                  + ", ".join(f"{b} bits: {fmt(v, 'd')}" for b, v in
                              disp["crossover_nq"].items()) + ".", ""]
    scan = res.get("scan")
    if scan:
        lines += ["## Where a single query's time goes (1 thread, µs, thread CPU time)", "",
                  "| bits | search total | prepare | rotate | tables | byte tables | scan | "
                  "scan ns/row | ns/lookup |", "|---|---|---|---|---|---|---|---|---|"]
        for r in scan["rows"]:
            lines.append(f"| {r['bits']} | {r['search_total_us']:.0f} | {r['prepare_us']:.0f} "
                         f"| {r['rotate_us']:.0f} | {r['tables_us']:.0f} | "
                         f"{r['byte_luts_us']:.0f} | {r['scan_us']:.0f} | "
                         f"{r['scan_ns_per_row']:.1f} | {r['scan_ns_per_lookup']:.2f} |")
        lines.append("")
    la = res.get("loadavg", {})
    if la:
        worst = max(v[0] for key, v in la.items() if key != "note")
        lines += [f"Highest 1-min load average seen at a section boundary: {worst:.2f} "
                  "(2 cores; above the thread count means another process shared them).", ""]
    env = res["environment"]
    lines += [f"Environment: {env.get('cpu_model')}, {env.get('cpu_affinity')} usable cores, "
              f"Python {env.get('python')}, versions {json.dumps(env.get('versions'))}.", ""]
    return "\n".join(lines)


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    """Run the sections, print the markdown and write ``turboquant.{json,md}``."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("data", nargs="?", default=str(DEV) if DEV.is_dir() else "sample")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=_ints, default=[1, 2])
    p.add_argument("--bits", type=_ints, default=[2, 4])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--latency-queries", type=int, default=200)
    p.add_argument("--dispatch-bits", type=_ints, default=[1, 2, 3, 4, 8])
    p.add_argument("--dispatch-nq", type=_ints, default=[1, 2, 4, 8, 16, 32, 64, 128, 500])
    p.add_argument("--sections", default="compare,seeds,dispatch,scan")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--child-threads", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    ds = load_dataset(args.data, num_queries=args.queries, gt_k=max(args.k, 100))
    if ds.gt is None:
        p.error("the dataset has no ground truth")

    if args.child_threads is not None:  # one thread count of the compare section
        with pinned_threads(args.child_threads):
            out = section_compare(ds, args, args.child_threads)
        Path(args.child_out).write_text(json.dumps(out, default=json_default))
        return 0

    sections = set(args.sections.split(","))
    res: dict[str, Any] = {
        "dataset": {"name": ds.name, "n": int(ds.base.shape[0]), "dim": int(ds.base.shape[1]),
                    "queries": int(ds.queries.shape[0]), "metric": "ip"},
        "args": vars(args) | {"sections": sorted(sections)},
        "source": source_fingerprint(SOURCES),
        "environment": environment_info(),
        "loadavg": {"note": "os.getloadavg() (1, 5, 15 min)", "start": os.getloadavg()},
        "errors": {},
    }
    t0 = time.perf_counter()
    runners: list[tuple[str, Callable[[], Any]]] = [
        ("compare", lambda: run_compare_children(args)),
        ("seeds", lambda: section_seeds(ds, args)),
        ("dispatch", lambda: section_dispatch(ds, args)),
        ("scan", lambda: section_scan(ds, args)),
    ]
    for name, fn in runners:
        if name not in sections:
            continue
        res["loadavg"][f"{name} start"] = os.getloadavg()
        try:
            res[name] = fn()
        except Exception as e:  # record and go on with the other sections
            res["errors"][name] = f"{type(e).__name__}: {e}"
            log(f"  section {name} FAILED: {type(e).__name__}: {e}")
        res["loadavg"][f"{name} end"] = os.getloadavg()
    res["elapsed_s"] = time.perf_counter() - t0
    res["source_changed_on_disk_during_run"] = source_fingerprint(SOURCES) != res["source"]
    md = to_markdown(res, args)
    print(md)
    write_results(args.out, "turboquant", res, md)
    return 0




if __name__ == "__main__":
    sys.exit(main())
