"""Quantization and IVF kinds against faiss, turbovec and fast-ivf, with a recall-vs-QPS plot.

Usage (from the repository root, with vecindex installed or on ``PYTHONPATH``)::

    python benchmarks/quantization.py [DATA] [--queries 500] [--k 10] [--threads 1 2]

``DATA`` defaults to ``../shared/data/dev`` next to the repository when present, else the
bundled sample. Everything runs in one process on the same arrays, metric ``ip`` (the data
is unit-norm), every thread pool pinned (``vecindex_core.bench.runner.pinned_threads``).
For each thread count:

1. **ivf_flat** (nlist 256, 20 k-means iterations) vs faiss ``IndexIVFFlat`` (same nlist
   and iterations) and fast-ivf ``FastIVF`` (same nlist; its own mini-batch k-means), nprobe
   swept: recall@k, batched QPS, single-query p50; then QPS at the first nprobe reaching
   recall 0.90 / 0.95 / 0.99, as ratios.
2. **ivf_pq** at 48 code bytes (``m=48,nbits=8`` and ``m=96,nbits=4``; residual and direct
   encoding) vs faiss ``IndexIVFPQ`` (``IVF256,PQ48``) and the fast-scan
   ``IVF256,PQ96x4fs``, and fast-ivf ``FastIVFPQ`` (48 sub-vectors of 256 centroids), at
   equal nprobe; ours also with ``rerank``.
3. **pq** vs faiss ``IndexPQ`` at equal code size (48 bytes: 48x8 and 96x4; 24x8).
4. **turboquant** 2/4-bit vs turbovec ``TurboQuantIndex``, and **ivf_tq** (4-bit residual
   codes) swept over nprobe.
5. **ivf_ae** at 4x compression (384 -> 96) with rerank 0/50, nprobe swept, and memory.

Writes ``quantization.{json,md,png}`` to ``benchmarks/results/``; the PNG plots recall@k
against batched QPS (log scale) for every entry at the first thread count.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import vecindex_core
from vecindex_core.bench.env import environment_info
from vecindex_core.bench.runner import pinned_threads, recall_at_k
from vecindex_core.bench.timing import best_of, ids64, log, median_latency_us, timed
from vecindex_core.datasets import load_dataset

HERE = Path(__file__).resolve().parent
DEV = HERE.parents[1] / "shared" / "data" / "dev"
NLIST = 256
NITER = 20
NPROBES = (1, 2, 4, 8, 16, 32, 64)
TARGETS = (0.90, 0.95, 0.99)

Search = Callable[[np.ndarray], np.ndarray]


class Bench:
    """Collects rows: one (entry, setting) measured for recall, batched QPS and latency."""

    def __init__(self, q: np.ndarray, gt: np.ndarray, k: int, repeats: int, latency: int):
        self.q, self.gt, self.k, self.repeats, self.latency = q, gt, k, repeats, latency
        self.rows: list[dict[str, Any]] = []

    def measure(self, section: str, entry: str, search: Search, **extra: Any) -> dict[str, Any]:
        rec = recall_at_k(search(self.q), self.gt, self.k)
        best, times = best_of(lambda: search(self.q), self.repeats)
        lat = median_latency_us(search, self.q, self.latency) if self.latency else {}
        row = {"section": section, "entry": entry, "recall": rec,
               "qps": self.q.shape[0] / best, "times_s": times, **lat, **extra}
        self.rows.append(row)
        knobs = " ".join(f"{k}={v}" for k, v in extra.items() if k not in ("build_s",
                                                                              "bytes_per_vec"))
        log(f"  {entry:<34} {knobs:<28} recall@{self.k}={rec:.4f} "
            f"QPS={row['qps']:>9,.0f} p50={lat.get('p50_us', float('nan')):8.0f}us")
        return row


def ours(x: np.ndarray, spec: str) -> tuple[Any, float]:
    index = vecindex_core.create(spec, dim=x.shape[1], metric="ip")
    build_s, _ = timed(lambda: index.add(x))
    return index, build_s


def our_search(index: Any, k: int, **params: Any) -> Search:
    return lambda qq: ids64(index.search(qq, k, params=params or None).ids)


def bytes_per_vec(index: Any) -> float:
    """The positional index's memory per row (codes, lists, model; not the id map)."""
    return float(index.index.memory_bytes() / index.ntotal)


def sweep_ours(b: Bench, section: str, entry: str, index: Any, build_s: float,
               nprobes: tuple[int, ...] = NPROBES, **extra: Any) -> None:
    for p in nprobes:
        b.measure(section, entry, our_search(index, b.k, nprobe=p, **extra), nprobe=p,
                  build_s=build_s, bytes_per_vec=bytes_per_vec(index), **extra)


# --------------------------------------------------------------------------- peers
def faiss_ivf(faiss: Any, x: np.ndarray, factory: str) -> tuple[Any, float]:
    index = faiss.index_factory(x.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index) if "IVF" in factory else None
    if ivf is not None:
        ivf.cp.niter = NITER
    t, _ = timed(lambda: (index.train(x), index.add(x)))
    return index, t


def faiss_search(faiss: Any, index: Any, k: int, nprobe: int | None = None) -> Search:
    params = None
    if nprobe is not None:
        params = faiss.SearchParametersIVF(nprobe=nprobe)

    def run(qq: np.ndarray) -> np.ndarray:
        return index.search(qq, k, params=params)[1].astype(np.int64)

    return run


def fast_ivf_search(index: Any, k: int, nprobe: int) -> Search:
    def run(qq: np.ndarray) -> np.ndarray:
        index.nprobe = nprobe
        _, ids = index.search(qq, k=k)
        out = np.full((qq.shape[0], k), -1, dtype=np.int64)
        for r, row in enumerate(ids):
            row = np.asarray(row)[:k]
            out[r, : row.size] = row
        return out

    return run


def try_import(name: str) -> tuple[Any, str | None]:
    try:
        return __import__(name), None
    except Exception as e:  # a peer that fails to import for any reason is skipped
        return None, f"{name} not importable: {type(e).__name__}: {e}"


# --------------------------------------------------------------------------- sections
def section_ivf_flat(b: Bench, x: np.ndarray, peers: dict[str, Any], skipped: list[str]) -> None:
    log("[ivf_flat]")
    index, t = ours(x, f"ivf_flat(nlist={NLIST},niter={NITER})")
    sweep_ours(b, "ivf_flat", "ivf_flat", index, t)
    sweep_ours(b, "ivf_flat", "ivf_flat ratio=0.5", index, t, ratio_threshold=0.5)
    faiss = peers.get("faiss")
    if faiss is not None:
        fi, ft = faiss_ivf(faiss, x, f"IVF{NLIST},Flat")
        for p in NPROBES:
            b.measure("ivf_flat", "faiss IVFFlat", faiss_search(faiss, fi, b.k, p), nprobe=p,
                      build_s=ft)
    fast_ivf = peers.get("fast_ivf")
    if fast_ivf is not None:
        for ratio in (0.0, 0.5):
            fv = fast_ivf.FastIVF(x.shape[1], nlist=NLIST, ratio_threshold=ratio)
            t, _ = timed(lambda fv=fv: fv.train(x))
            for p in NPROBES:
                b.measure("ivf_flat", f"fast-ivf FastIVF ratio={ratio}",
                          fast_ivf_search(fv, b.k, p), nprobe=p, build_s=t)
    else:
        skipped.append("fast-ivf: not installed")


def section_ivf_pq(b: Bench, x: np.ndarray, peers: dict[str, Any]) -> None:
    log("[ivf_pq] 48 code bytes")
    for m, nbits in ((48, 8), (96, 4)):
        for residual in (True, False):
            spec = (f"ivf_pq(nlist={NLIST},niter={NITER},m={m},nbits={nbits},"
                    f"by_residual={str(residual).lower()},keep_vectors=true)")
            index, t = ours(x, spec)
            label = f"ivf_pq {m}x{nbits}{'' if residual else ' direct'}"
            sweep_ours(b, "ivf_pq", label, index, t)
            if residual:
                sweep_ours(b, "ivf_pq", label + " rerank=50", index, t, nprobes=(8, 16, 32),
                           rerank=50)
    faiss = peers.get("faiss")
    if faiss is not None:
        for factory in (f"IVF{NLIST},PQ48", f"IVF{NLIST},PQ96x4fs"):
            fi, ft = faiss_ivf(faiss, x, factory)
            for p in NPROBES:
                b.measure("ivf_pq", f"faiss {factory}", faiss_search(faiss, fi, b.k, p),
                          nprobe=p, build_s=ft)
    fast_ivf = peers.get("fast_ivf")
    if fast_ivf is not None:
        fv = fast_ivf.FastIVFPQ(x.shape[1], nlist=NLIST, pq_num_centroids=256,
                                pq_num_subvectors=48, ratio_threshold=0.0)
        t, _ = timed(lambda: fv.train(x))
        for p in NPROBES:
            b.measure("ivf_pq", "fast-ivf FastIVFPQ 48x8", fast_ivf_search(fv, b.k, p),
                      nprobe=p, build_s=t)


def section_pq(b: Bench, x: np.ndarray, peers: dict[str, Any]) -> None:
    log("[pq] equal code size")
    faiss = peers.get("faiss")
    for m, nbits in ((48, 8), (96, 4), (24, 8)):
        index, t = ours(x, f"pq(m={m},nbits={nbits})")
        b.measure("pq", f"pq {m}x{nbits}", our_search(index, b.k), build_s=t,
                  bytes_per_vec=bytes_per_vec(index))
        if faiss is not None:
            fi, ft = faiss_ivf(faiss, x, f"PQ{m}x{nbits}")
            b.measure("pq", f"faiss IndexPQ {m}x{nbits}", faiss_search(faiss, fi, b.k),
                      build_s=ft)


def section_turboquant(b: Bench, x: np.ndarray, peers: dict[str, Any]) -> None:
    log("[turboquant / ivf_tq]")
    turbovec = peers.get("turbovec")
    for bits in (2, 4):
        index, t = ours(x, f"turboquant(bits={bits})")
        b.measure("turboquant", f"turboquant {bits}-bit", our_search(index, b.k), build_s=t,
                  bytes_per_vec=bytes_per_vec(index))
        if turbovec is not None:
            tv = turbovec.TurboQuantIndex(dim=x.shape[1], bit_width=bits)
            tt, _ = timed(lambda tv=tv: tv.add(x))
            b.measure("turboquant", f"turbovec {bits}-bit",
                      lambda qq, tv=tv: np.asarray(tv.search(qq, b.k)[1]).astype(np.int64),
                      build_s=tt, bytes_per_vec=len(tv.to_bytes()) / x.shape[0])
    for bits in (4,):
        index, t = ours(x, f"ivf_tq(nlist={NLIST},niter={NITER},bits={bits},keep_vectors=true)")
        sweep_ours(b, "ivf_tq", f"ivf_tq {bits}-bit", index, t)
        sweep_ours(b, "ivf_tq", f"ivf_tq {bits}-bit rerank=50", index, t, nprobes=(8, 16, 32),
                   rerank=50)


def section_ivf_ae(b: Bench, x: np.ndarray) -> None:
    log("[ivf_ae] 4x compression")
    try:
        index, t = ours(x, f"ivf_ae(nlist={NLIST},niter={NITER},compression_dim=96,"
                           "keep_vectors=true)")
    except vecindex_core.NotSupportedError as e:
        log(f"  skipped: {e}")
        return
    sweep_ours(b, "ivf_ae", "ivf_ae 96", index, t)
    sweep_ours(b, "ivf_ae", "ivf_ae 96 rerank=50", index, t, nprobes=(8, 16, 32), rerank=50)
    small, ts = ours(x, f"ivf_ae(nlist={NLIST},niter={NITER},compression_dim=96)")
    b.measure("ivf_ae", "ivf_ae 96 (codes only)", our_search(small, b.k, nprobe=16),
              nprobe=16, build_s=ts, bytes_per_vec=bytes_per_vec(small))


# --------------------------------------------------------------------------- summaries
def at_targets(rows: list[dict[str, Any]], section: str) -> list[dict[str, Any]]:
    """QPS of each entry at the first nprobe reaching each target recall."""
    out = []
    entries = dict.fromkeys(r["entry"] for r in rows if r["section"] == section)
    for entry in entries:
        sweep = sorted((r for r in rows if r["entry"] == entry and "nprobe" in r
                        and r["section"] == section), key=lambda r: r["nprobe"])
        for target in TARGETS:
            hit = next((r for r in sweep if r["recall"] >= target), None)
            out.append({"entry": entry, "target": target,
                        "nprobe": None if hit is None else hit["nprobe"],
                        "recall": None if hit is None else hit["recall"],
                        "qps": None if hit is None else hit["qps"]})
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Quantization and IVF: ours vs faiss, turbovec, fast-ivf", "",
             f"Data: `{report['data']}` ({report['n']} x {report['dim']}, "
             f"{report['nq']} queries, k={report['k']}, metric ip). "
             f"CPU: {report['env'].get('cpu', '?')}.", ""]
    for threads, res in report["runs"].items():
        lines += [f"## {threads} thread(s)", ""]
        for section, tab in res["targets"].items():
            lines += [f"### {section}: QPS at target recall", "",
                      "| entry | target | nprobe | recall | QPS |", "|---|---|---|---|---|"]
            for r in tab:
                qps = "not reached" if r["qps"] is None else f"{r['qps']:,.0f}"
                rec = "" if r["recall"] is None else f"{r['recall']:.4f}"
                lines.append(f"| {r['entry']} | {r['target']} | {r['nprobe'] or ''} | {rec} "
                             f"| {qps} |")
            lines.append("")
        lines += ["### every measurement", "",
                  "| section | entry | nprobe | rerank | recall | QPS | p50 µs | bytes/vec |"
                  " build s |", "|---|---|---|---|---|---|---|---|---|"]
        for r in res["rows"]:
            bpv = r.get("bytes_per_vec")
            lines.append(
                f"| {r['section']} | {r['entry']} | {r.get('nprobe', '')} | "
                f"{r.get('rerank', '')} | {r['recall']:.4f} | {r['qps']:,.0f} | "
                f"{r.get('p50_us', float('nan')):.0f} | "
                f"{'' if bpv is None else f'{bpv:.1f}'} | {r.get('build_s', 0):.2f} |")
        lines.append("")
    if report["skipped"]:
        lines += ["Skipped: " + "; ".join(report["skipped"]), ""]
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, k: int) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(10, 7))
    for entry in dict.fromkeys(r["entry"] for r in rows):
        pts = sorted((r["recall"], r["qps"]) for r in rows if r["entry"] == entry)
        xs, ys = zip(*pts, strict=True)
        ours = entry.startswith(("ivf", "pq", "turboquant"))
        style = ("-o" if ours else "--o") if len(pts) > 1 else ("s" if ours else "^")
        ax.plot(xs, ys, style, label=entry, markersize=4)
    ax.set_yscale("log")
    ax.set_xlabel(f"recall@{k}")
    ax.set_ylabel("queries per second (batched, log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("vecindex quantization/IVF kinds vs faiss, turbovec, fast-ivf")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="?", default=str(DEV) if DEV.exists() else "sample")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--latency", type=int, default=100, help="single queries timed per row")
    ap.add_argument("--sections", nargs="+",
                    default=["ivf_flat", "ivf_pq", "pq", "turboquant", "ivf_ae"])
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)

    ds = load_dataset(args.data, metric="ip", num_queries=args.queries)
    x, q, gt = ds.base, ds.queries, ds.gt
    peers: dict[str, Any] = {}
    skipped: list[str] = []
    for name in ("faiss", "turbovec", "fast_ivf"):
        mod, why = try_import(name)
        if mod is None:
            skipped.append(str(why))
        else:
            peers[name] = mod
    runs: dict[str, Any] = {}
    for threads in args.threads:
        log(f"== {threads} thread(s)")
        b = Bench(q, gt, args.k, args.repeats, args.latency)
        with pinned_threads(threads):
            if "ivf_flat" in args.sections:
                section_ivf_flat(b, x, peers, skipped)
            if "ivf_pq" in args.sections:
                section_ivf_pq(b, x, peers)
            if "pq" in args.sections:
                section_pq(b, x, peers)
            if "turboquant" in args.sections:
                section_turboquant(b, x, peers)
            if "ivf_ae" in args.sections:
                section_ivf_ae(b, x)
        runs[str(threads)] = {
            "rows": b.rows,
            "targets": {s: at_targets(b.rows, s) for s in ("ivf_flat", "ivf_pq", "ivf_tq",
                                                            "ivf_ae")
                        if any(r["section"] == s for r in b.rows)},
        }
    report = {"data": args.data, "n": int(x.shape[0]), "dim": int(x.shape[1]),
              "nq": int(q.shape[0]), "k": args.k, "env": environment_info(), "runs": runs,
              "skipped": sorted(set(skipped))}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quantization.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "quantization.md").write_text(markdown(report))
    first = runs[str(args.threads[0])]["rows"]
    if plot(first, out / "quantization.png", args.k):
        log(f"wrote {out / 'quantization.png'}")
    log(f"wrote {out / 'quantization.json'} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
