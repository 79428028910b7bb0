"""Native Hamming top-k (``vecindex_core._native``) against the numba kernel and faiss.

Usage (from the repository root, under the benchmark lock)::

    flock /tmp/vecindex-bench.lock python benchmarks/native_hamming.py [DATA] [--queries 500]

``DATA`` defaults to ``../shared/data/dev`` next to the repository when present, else the
bundled sample. Two bases: the dataset itself and a ``--big``-row sample of it drawn with
replacement plus Gaussian noise (``--noise`` times each coordinate's standard deviation).
For each, ``ITQIndex`` (trained on the dataset's first rows) codes at 64/128/256 bits, and
the Hamming scan alone on the same codes, k=10, by:

- ``numba``: :func:`vecindex_core._kernels.hamming.hamming_topk_numba` (the reference);
- ``native-<isa>``: every native path this CPU runs (``portable``, ``avx2``, ``avx512``);
- ``faiss``: ``faiss.IndexBinaryFlat`` over the same bytes.

Batched queries/s (best of ``--repeats``, the paths alternated so a noisy spell hits all)
and single-query latency (median of ``--latency-queries`` calls), at 1 and 2 threads (every
pool pinned). Every native path's results are checked equal to numba's bit for bit and
faiss's distances equal to numba's. Writes ``native_hamming.{json,md}`` to
``benchmarks/results/``.
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

import vecindex_core
from vecindex_core import _native
from vecindex_core._kernels.hamming import hamming_topk_numba
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

SOURCES = ["_native/__init__.py", "_native/src/*.c", "_native/src/*.h", "_kernels/hamming.py"]
HERE = Path(__file__).resolve().parent
DEV = HERE.parents[1] / "shared" / "data" / "dev"


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",")]


def make_paths(k: int, bits: int, codes_t: np.ndarray, codes: np.ndarray,
               faiss: Any) -> dict[str, Callable[[np.ndarray], Any]]:
    paths: dict[str, Callable[[np.ndarray], Any]] = {
        "numba": lambda qc: hamming_topk_numba(qc, codes_t, k, max_bits=bits)}
    for isa in _native._usable():
        paths[f"native-{isa}"] = (lambda qc, isa=isa:
                                  _native.hamming_topk(qc, codes_t, k, max_bits=bits, isa=isa))
    if faiss is not None:
        fb = faiss.IndexBinaryFlat(bits)
        fb.add(codes.view(np.uint8))
        paths["faiss"] = lambda qc: fb.search(qc.view(np.uint8), k)
    return paths


def measure(paths: dict[str, Callable[[np.ndarray], Any]], qc: np.ndarray,
            args: argparse.Namespace) -> dict[str, Any]:
    for fn in paths.values():  # warm-up (numba compile, pages)
        fn(qc)
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.repeats):
        for name, fn in paths.items():
            times[name].append(timed(lambda fn=fn: fn(qc))[0])
    out: dict[str, Any] = {}
    for name, fn in paths.items():
        out[name] = {"qps": qc.shape[0] / min(times[name]), "times_s": times[name],
                     **median_latency_us(fn, qc, args.latency_queries)}
    return out


def checks(paths: dict[str, Callable[[np.ndarray], Any]], qc: np.ndarray,
           codes: np.ndarray) -> dict[str, bool]:
    ref_d, ref_s = paths["numba"](qc)
    out: dict[str, bool] = {}
    for name, fn in paths.items():
        if name.startswith("native-"):
            d, s = fn(qc)
            out[f"{name} == numba"] = bool(np.array_equal(d, ref_d) and np.array_equal(s, ref_s))
    if "faiss" in paths:
        fd, fi = paths["faiss"](qc)
        recomputed = np.bitwise_count(qc[:, None, :] ^ codes[fi]).sum(-1)
        out["faiss distances == numba"] = bool(np.array_equal(fd, ref_d)
                                               and np.array_equal(recomputed, fd))
    return out


def run_base(label: str, x: np.ndarray, train: np.ndarray, q: np.ndarray,
             args: argparse.Namespace, faiss: Any) -> list[dict[str, Any]]:
    rows = []
    for bits in args.bits:
        idx = vecindex_core.ITQIndex(x.shape[1], "ip", num_bits=bits)
        t0 = time.perf_counter()
        idx.train(train)
        idx.add(x)
        build_s = time.perf_counter() - t0
        codes = np.array(idx.codes, order="C")  # (n, w) row-major: faiss's bytes
        codes_t = np.ascontiguousarray(codes.T)  # (w, n) word-major: our kernels' layout
        qc = np.ascontiguousarray(idx.encode(idx.prepare(q)))
        paths = make_paths(args.k, bits, codes_t, codes, faiss)
        row: dict[str, Any] = {"base": label, "n": int(codes.shape[0]), "bits": bits,
                               "words": int(codes.shape[1]), "build_s": build_s,
                               "checks": checks(paths, qc, codes), "threads": {}}
        for t in args.threads:
            with pinned_threads(t):
                m = measure(paths, qc, args)
            row["threads"][t] = m
            log(f"  {label} bits={bits} threads={t}: " + " | ".join(
                f"{name} {v['qps']:,.0f} q/s p50 {v['p50_us']:.0f} µs" for name, v in m.items()))
        log(f"  checks: {row['checks']}")
        rows.append(row)
    return rows


def to_markdown(res: dict[str, Any]) -> str:
    best = res["auto_path"]
    L = ["# Native Hamming top-k vs numba and faiss `IndexBinaryFlat`", "",
         f"Data: `{res['dataset']['name']}` ({res['dataset']['n']:,} x {res['dataset']['dim']},"
         f" {res['dataset']['queries']} queries, k={res['args']['k']}) and a "
         f"{res['args']['big']:,}-row sample of it drawn with replacement plus noise "
         f"({res['args']['noise']} x per-coordinate std). ITQ codes; the scan alone. "
         f"CPU: {res['environment'].get('cpu_model', '?')}; native path chosen by `auto`: "
         f"`{best}`. QPS: batched, best of {res['args']['repeats']}; p50: single-query "
         f"latency, median of {res['args']['latency_queries']} calls.", ""]
    paths = [p for p in res["rows"][0]["threads"][res["args"]["threads"][0]]]
    head = "| base | bits | threads | " + " | ".join(f"{p} QPS" for p in paths) + \
        f" | {best}/faiss QPS | {best}/numba QPS | " + \
        " | ".join(f"{p} p50 µs" for p in paths) + f" | {best}/faiss p50 |"
    L += [head, "|" + "---|" * (head.count("|") - 1)]
    for row in res["rows"]:
        for t, m in row["threads"].items():
            b = m.get(best, {})
            fa = m.get("faiss")
            cells = [row["base"], str(row["bits"]), str(t)]
            cells += [f"{m[p]['qps']:,.0f}" for p in paths]
            cells.append(f"{b['qps'] / fa['qps']:.2f}x" if b and fa else "—")
            cells.append(f"{b['qps'] / m['numba']['qps']:.2f}x" if b else "—")
            cells += [f"{m[p]['p50_us']:.0f}" for p in paths]
            cells.append(f"{b['p50_us'] / fa['p50_us']:.2f}x" if b and fa else "—")
            L.append("| " + " | ".join(cells) + " |")
    L += ["", "Checks (every native path equals numba bit for bit; faiss's distances equal "
          "numba's and the popcount of our words at faiss's rows):", ""]
    for row in res["rows"]:
        ok = all(row["checks"].values())
        L.append(f"- {row['base']} {row['bits']} bits: {'all pass' if ok else row['checks']}")
    verdicts = res["verdicts"]
    L += ["", f"Bar (issue 8): `{best}` batched QPS >= 1.0x faiss `IndexBinaryFlat` in "
          f"{verdicts['pass']} of {verdicts['total']} settings"
          + (f"; below: {', '.join(verdicts['below'])}" if verdicts["below"] else "") + ".",
          "", f"Load average start/end: {res['loadavg']['start']} / {res['loadavg']['end']}; "
          f"elapsed {res['elapsed_s']:.0f} s."]
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", default=str(DEV) if DEV.exists() else "sample")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--bits", type=_ints, default=[64, 128, 256])
    p.add_argument("--threads", type=_ints, default=[1, 2])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--latency-queries", type=int, default=300)
    p.add_argument("--big", type=int, default=200_000)
    p.add_argument("--noise", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)

    try:
        import faiss
    except ImportError as e:
        faiss, why = None, f"faiss not importable: {e}"
    else:
        why = None
    ds = load_dataset(args.data, num_queries=args.queries, gt_k=args.k)
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
    res["rows"] = run_base(ds.name, x, x, q, args, faiss)
    res["rows"] += run_base(f"{args.big // 1000}k sample", big, x, q, args, faiss)
    res["elapsed_s"] = time.perf_counter() - t0
    res["loadavg"]["end"] = os.getloadavg()
    best = res["auto_path"]
    below = [f"{r['base']} {r['bits']}b {t}t" for r in res["rows"]
             for t, m in r["threads"].items()
             if "faiss" in m and m[best]["qps"] < m["faiss"]["qps"]]
    res["verdicts"] = {"total": sum(len(r["threads"]) for r in res["rows"]),
                       "below": below}
    res["verdicts"]["pass"] = res["verdicts"]["total"] - len(below)
    res["source_changed_on_disk_during_run"] = source_fingerprint(SOURCES) != res["source"]
    md = to_markdown(res)
    print(md)
    write_results(args.out, "native_hamming", res, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
