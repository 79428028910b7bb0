"""Recall@10 against batched queries per second: the ANN libraries and our kinds, one plot.

Usage (from the repository root)::

    flock /tmp/vecindex-bench.lock python benchmarks/recall_qps.py [DATA] [--repeats 3]

``DATA`` defaults to ``../shared/data/dev`` (20,000 x 384 unit-norm MiniLM vectors, 500
queries, metric ip) when present, else the bundled sample. Everything runs in one process
on the same arrays, on one thread (``vecindex_core.bench.runner.pinned_threads(1)``: BLAS,
OpenMP, numba, faiss), with ``k = 10`` and all queries in one call. For every entry the
main search knob is swept; each setting is searched once (recall@10 against the dataset's
exact ground truth, and the warm-up), then timed ``--repeats`` times (fewer when one pass
takes over ``--point-budget`` seconds), and the best wall time gives the QPS (the process
CPU time of each pass is kept in the JSON too). A bare peer and our kind over the same
library are built together and their timed passes alternate, so a change of load on a
shared machine does not fall on one side of the comparison.

Bare peers (dashed lines in the plot, the same colour as our kind that wraps them):

- faiss ``IndexHNSWFlat(d, 32)`` (``efSearch``), faiss ``IndexIVFFlat`` with
  ``nlist = quantization.NLIST`` (``nprobe``), both built by ``index_factory`` as
  ``benchmarks/backends_faiss.py`` builds them;
- hnswlib (``M=16, ef_construction=200``, one inserting thread; ``ef``);
- annoy (``n_trees=50``, angular on the unit-norm vectors; ``search_k``), searched by
  ``backends_annoy.bare_search`` (a loop of ``get_nns_by_vector`` over ``queries.tolist()``).

Ours (solid lines), each through ``vecindex_core.create`` (an ``IdMapIndex``): the ``faiss``
kind with ``HNSW32`` and ``IVF256,Flat``, ``hnsw``, ``annoy`` (``cosine``, as annoy's
angular), ``flat`` (exact: one point), ``turboquant`` 2/3/4 bits (``rerank`` swept, vectors
kept), ``ivf_flat``, ``ivf_pq`` (48 x 8 bits, ``rerank=50``), ``ivf_tq`` (4 bits,
``rerank=50``) and ``pq`` (48 x 8 bits, ``rerank`` swept), and ``itq`` at 256 bits, the
best hashing kind in ``benchmarks/results/hashing.md`` (``rerank`` swept). The nprobe
sweep, ``nlist`` and k-means iterations are ``benchmarks/quantization.py``'s (``NPROBES``,
``NLIST``, ``NITER``); the efSearch sweep is ``benchmarks/backends_faiss.py``'s
(``SWEEP_EF``); ``hashing.py`` keeps its rerank values in command-line defaults only, so
the itq sweep here is a superset of them.

Writes ``benchmarks/results/recall_qps.{json,md,png}``: the PNG has recall@10 on x and
batched QPS on a log y axis, one line per entry.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import vecindex_core as vc
from vecindex_core.base import normalize_rows
from vecindex_core.bench.env import environment_info
from vecindex_core.bench.runner import pinned_threads, recall_at_k
from vecindex_core.bench.timing import ids64, log, source_fingerprint, timed, write_results
from vecindex_core.datasets import load_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts
from backends_annoy import bare_search as annoy_bare_search
from backends_annoy import ids_of as annoy_ids_of
from backends_faiss import SWEEP_EF
from quantization import NITER, NLIST, NPROBES

HERE = Path(__file__).resolve().parent
DEV = HERE.parents[1] / "shared" / "data" / "dev"
K = 10
HNSW_M, HNSW_EFC, SEED = 16, 200, 0
N_TREES = 50
SEARCH_K = (500, 1000, 2000, 5000, 10000, 20000)
TQ_RERANKS = (0, 20, 50, 100)
PQ_RERANKS = (0, 50, 100, 200)
ITQ_RERANKS = (0, 50, 100, 200, 500, 1000)
TARGETS = (0.90, 0.95, 0.99)
ZOOM = 0.9  # left edge of the plot's zoomed panel
#: vecindex_core sources these numbers depend on (sha256 prefixes in the JSON)
SOURCES = ["base.py", "idmap.py", "validation.py", "backends/*.py", "flat.py", "ivf.py",
           "pq.py", "turboquant.py", "hashing.py", "_kernels/*.py"]

Search = Callable[[np.ndarray], np.ndarray]
Knobbed = Callable[[Any], Search]


@dataclass
class Entry:
    """One line of the plot: a built index and how to search it at each knob setting."""

    name: str
    bare: bool
    color: int  # index into the colour map (a bare peer shares its wrapper's colour)
    knob: str
    settings: Iterable[Any]
    build: Callable[[], tuple[Knobbed, Any]]  # -> (setting -> search, the index to keep)
    spec: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)
    build_s: float = 0.0


# --------------------------------------------------------------------------- builders
def ours(x: np.ndarray, spec: str, knob: str | None, metric: str = "ip",
         **fixed: Any) -> Callable[[], tuple[Knobbed, Any]]:
    """Build ``spec`` with ``vecindex_core.create`` and search it with ``params={knob: v}``."""

    def build() -> tuple[Knobbed, Any]:
        index = vc.create(spec, dim=x.shape[1], metric=metric)
        index.add(x)
        index.search(x[:1], K)  # a kind that builds lazily (annoy) builds here

        def at(value: Any) -> Search:
            params = {**fixed, knob: value} if knob is not None else (fixed or None)
            return lambda qq: ids64(index.search(qq, K, params=params).ids)

        return at, index

    return build


def faiss_hnsw(faiss: Any, x: np.ndarray) -> Callable[[], tuple[Knobbed, Any]]:
    def build() -> tuple[Knobbed, Any]:
        index = faiss.index_factory(x.shape[1], "HNSW32", faiss.METRIC_INNER_PRODUCT)
        index.add(x)
        hnsw = faiss.downcast_index(index).hnsw

        def at(ef: int) -> Search:
            def run(qq: np.ndarray) -> np.ndarray:
                hnsw.efSearch = ef
                return index.search(qq, K)[1]

            return run

        return at, index

    return build


def faiss_ivf(faiss: Any, x: np.ndarray) -> Callable[[], tuple[Knobbed, Any]]:
    def build() -> tuple[Knobbed, Any]:
        index = faiss.index_factory(x.shape[1], f"IVF{NLIST},Flat", faiss.METRIC_INNER_PRODUCT)
        index.train(x)
        index.add(x)
        ivf = faiss.extract_index_ivf(index)

        def at(nprobe: int) -> Search:
            def run(qq: np.ndarray) -> np.ndarray:
                ivf.nprobe = nprobe
                return index.search(qq, K)[1]

            return run

        return at, index

    return build


def bare_hnswlib(hnswlib: Any, x: np.ndarray) -> Callable[[], tuple[Knobbed, Any]]:
    def build() -> tuple[Knobbed, Any]:
        index = hnswlib.Index(space="ip", dim=x.shape[1])
        index.init_index(max_elements=x.shape[0], M=HNSW_M, ef_construction=HNSW_EFC,
                         random_seed=SEED)
        index.add_items(x, np.arange(x.shape[0]), num_threads=1)

        def at(ef: int) -> Search:
            def run(qq: np.ndarray) -> np.ndarray:
                index.set_ef(ef)
                return index.knn_query(qq, k=K, num_threads=1)[0].astype(np.int64)

            return run

        return at, index

    return build


def bare_annoy(annoy: Any, x: np.ndarray) -> Callable[[], tuple[Knobbed, Any]]:
    def build() -> tuple[Knobbed, Any]:
        index = annoy.AnnoyIndex(x.shape[1], "angular")
        index.set_seed(SEED)
        for i, row in enumerate(normalize_rows(x).tolist()):
            index.add_item(i, row)
        index.build(N_TREES, n_jobs=1)

        def at(search_k: int) -> Search:
            return lambda qq: annoy_ids_of(annoy_bare_search(index, qq, K, search_k), K)

        return at, index

    return build


# --------------------------------------------------------------------------- the run
def entries(x: np.ndarray, peers: dict[str, Any]) -> list[Entry]:
    """Every line of the plot, bare peers first of each pair (same colour)."""
    out: list[Entry] = []
    faiss, hnswlib, annoy = peers.get("faiss"), peers.get("hnswlib"), peers.get("annoy")
    ivf = f"nlist={NLIST},niter={NITER}"
    if faiss is not None:
        out += [
            Entry("faiss IndexHNSWFlat(32) (bare)", True, 0, "efSearch", SWEEP_EF,
                  faiss_hnsw(faiss, x), "index_factory HNSW32"),
            Entry('faiss(factory="HNSW32")', False, 0, "efSearch", SWEEP_EF,
                  ours(x, 'faiss(factory="HNSW32")', "efSearch"), 'faiss(factory="HNSW32")'),
            Entry(f"faiss IndexIVFFlat({NLIST}) (bare)", True, 2, "nprobe", NPROBES,
                  faiss_ivf(faiss, x), f"index_factory IVF{NLIST},Flat"),
            Entry(f'faiss(factory="IVF{NLIST},Flat")', False, 2, "nprobe", NPROBES,
                  ours(x, f'faiss(factory="IVF{NLIST},Flat")', "nprobe"),
                  f'faiss(factory="IVF{NLIST},Flat")'),
        ]
    hspec = f"hnsw(M={HNSW_M},ef_construction={HNSW_EFC},seed={SEED})"
    efs = [ef for ef in SWEEP_EF if ef >= K]
    if hnswlib is not None:
        out += [
            Entry(f"hnswlib (bare, M={HNSW_M})", True, 4, "ef", efs, bare_hnswlib(hnswlib, x),
                  f"hnswlib M={HNSW_M} ef_construction={HNSW_EFC}"),
            Entry("hnsw", False, 4, "ef", efs, ours(x, hspec, "ef"), hspec),
        ]
    aspec = f"annoy(n_trees={N_TREES},seed={SEED})"
    if annoy is not None:
        out += [
            Entry(f"annoy (bare, {N_TREES} trees)", True, 6, "search_k", SEARCH_K,
                  bare_annoy(annoy, x), f"annoy angular n_trees={N_TREES}"),
            Entry("annoy", False, 6, "search_k", SEARCH_K,
                  ours(x, aspec, "search_k", metric="cosine"), aspec + " (cosine)"),
        ]
    out.append(Entry("flat (exact)", False, 14, "-", [None], ours(x, "flat", None), "flat"))
    for color, bits in zip((8, 9, 10), (2, 3, 4), strict=True):
        spec = f"turboquant(bits={bits},keep_vectors=true)"
        out.append(Entry(f"turboquant {bits}-bit", False, color, "rerank", TQ_RERANKS,
                         ours(x, spec, "rerank"), spec))
    spec = f"ivf_flat({ivf})"
    out.append(Entry("ivf_flat", False, 3, "nprobe", NPROBES, ours(x, spec, "nprobe"), spec))
    spec = f"ivf_pq({ivf},m=48,nbits=8,keep_vectors=true)"
    out.append(Entry("ivf_pq 48x8 rerank=50", False, 12, "nprobe", NPROBES,
                     ours(x, spec, "nprobe", rerank=50), spec))
    spec = f"ivf_tq({ivf},bits=4,keep_vectors=true)"
    out.append(Entry("ivf_tq 4-bit rerank=50", False, 16, "nprobe", NPROBES,
                     ours(x, spec, "nprobe", rerank=50), spec))
    spec = "pq(m=48,nbits=8,keep_vectors=true)"
    out.append(Entry("pq 48x8", False, 18, "rerank", PQ_RERANKS, ours(x, spec, "rerank"), spec))
    spec = "itq(num_bits=256,keep_vectors=true)"
    out.append(Entry("itq 256-bit", False, 19, "rerank", ITQ_RERANKS, ours(x, spec, "rerank"),
                     spec))
    return out


def measure(group: list[Entry], q: np.ndarray, gt: np.ndarray, repeats: int,
            point_budget: float) -> None:
    """Build the entries of ``group`` (a bare peer and our kind over it, or one entry), then
    at each setting: recall@K, and the best of timed batched passes, the members' passes
    alternating so that a change of load on the shared machine hits both alike."""
    searchers = []
    for entry in group:
        t0 = time.perf_counter()
        at, index = entry.build()
        entry.build_s = time.perf_counter() - t0
        searchers.append((at, index))
        log(f"[{entry.name}] built in {entry.build_s:.1f} s")
    settings = [list(e.settings) for e in group]
    assert all(s == settings[0] for s in settings), "a group sweeps one list of settings"
    for i, value in enumerate(settings[0]):
        runs, firsts, recalls = [], [], []
        for at, _ in searchers:
            search = at(value)
            first, found = timed(lambda search=search: search(q))  # recall, and the warm-up
            runs.append(search)
            firsts.append(first)
            recalls.append(recall_at_k(np.asarray(found, dtype=np.int64), gt, K))
        n = max(1, min(repeats, int(point_budget / max(max(firsts), 1e-9))))
        times: list[list[float]] = [[] for _ in group]
        cpu: list[list[float]] = [[] for _ in group]
        for r in range(n):
            for j in np.roll(np.arange(len(group)), r + i):
                c = time.process_time()
                times[j].append(timed(lambda search=runs[j]: search(q))[0])
                cpu[j].append(time.process_time() - c)
        for j, entry in enumerate(group):
            row = {"knob": entry.knob, "value": value, "recall": recalls[j],
                   "qps": q.shape[0] / min(times[j]), "times_s": times[j],
                   "qps_cpu_time": q.shape[0] / max(min(cpu[j]), 1e-9), "cpu_s": cpu[j]}
            entry.rows.append(row)
            log(f"  {entry.name} {entry.knob}={value}: recall@{K}={recalls[j]:.4f} "
                f"QPS={row['qps']:,.0f}")
    del searchers


def at_targets(entry: Entry) -> dict[str, dict[str, Any] | None]:
    """The fastest setting reaching each target recall (None when none does)."""
    out: dict[str, dict[str, Any] | None] = {}
    for target in TARGETS:
        ok = [r for r in entry.rows if r["recall"] >= target]
        best = max(ok, key=lambda r: r["qps"]) if ok else None
        out[f"{target:.2f}"] = None if best is None else {
            "value": best["value"], "recall": best["recall"], "qps": best["qps"]}
    return out


def to_markdown(res: dict[str, Any]) -> str:
    d = res["dataset"]
    lines = [
        "# Recall@10 vs batched QPS",
        "",
        f"{d['name']}: {d['n']:,} x {d['dim']}, {d['queries']} queries, metric {d['metric']}, "
        f"k={d['k']}; one thread; all queries in one call, best of up to {res['repeats']} "
        "timed passes after a warm-up (a bare peer and our kind over it alternate their "
        "passes). Bare libraries are marked *(bare)*; every other "
        "entry is ours through `vecindex_core.create` (an `IdMapIndex`). Plot: "
        "`recall_qps.png`. Generated by `benchmarks/recall_qps.py` in "
        f"{res['elapsed_s']:.0f} s.",
        "",
        "## Fastest setting reaching each recall",
        "",
        "| entry | build s | QPS @ 0.90 | QPS @ 0.95 | QPS @ 0.99 | best recall |",
        "|---|---|---|---|---|---|",
    ]
    for e in res["entries"]:
        cells = []
        for target in ("0.90", "0.95", "0.99"):
            hit = e["at_recall"][target]
            cells.append("—" if hit is None else
                         f"{hit['qps']:,.0f} ({e['knob']}={hit['value']})"
                         if hit["value"] is not None else f"{hit['qps']:,.0f}")
        best = max(r["recall"] for r in e["rows"])
        lines.append(f"| {e['name']} | {e['build_s']:.1f} | {' | '.join(cells)} | {best:.4f} |")
    lines += ["", "## Every setting", "", "| entry | spec | knob | recall@10 | QPS |",
              "|---|---|---|---|---|"]
    for e in res["entries"]:
        for r in e["rows"]:
            knob = "" if r["value"] is None else f"{r['knob']}={r['value']}"
            lines.append(f"| {e['name']} | `{e['spec']}` | {knob} | {r['recall']:.4f} | "
                         f"{r['qps']:,.0f} |")
    if res["skipped"]:
        lines += ["", "Skipped: " + "; ".join(res["skipped"])]
    return "\n".join(lines) + "\n"


def plot(res: dict[str, Any], path: Path) -> bool:
    """Two panels, the whole recall range and recall >= ZOOM, one legend; False without
    matplotlib. Each line joins an entry's settings in sweep order."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cmap = plt.get_cmap("tab20")
    fig, axes = plt.subplots(1, 2, figsize=(16, 7.5), gridspec_kw={"width_ratios": [1, 1.25]})
    lo = min(r["recall"] for e in res["entries"] for r in e["rows"])
    for ax, left in zip(axes, (max(0.0, lo - 0.02), ZOOM), strict=True):
        for e in res["entries"]:
            xs = [r["recall"] for r in e["rows"]]
            ys = [r["qps"] for r in e["rows"]]
            single = len(xs) == 1
            ax.plot(xs, ys, linestyle="none" if single else ("--" if e["bare"] else "-"),
                    marker="s" if single else ("^" if e["bare"] else "o"),
                    markersize=6 if single else 4, linewidth=1.8 if e["bare"] else 1.4,
                    color=cmap(e["color"] % 20), label=e["name"])
        ax.set_yscale("log")
        ax.set_xlim(left, 1.0 + (1.0 - left) * 0.01)
        ax.set_xlabel(f"recall@{res['dataset']['k']}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("queries per second (batched, 1 thread, log scale)")
    axes[0].set_title("all settings")
    axes[1].set_title(f"recall >= {ZOOM}")
    d = res["dataset"]
    fig.suptitle(f"Recall@{d['k']} vs QPS on {d['name']} ({d['n']:,} x {d['dim']}, "
                 f"{d['queries']} queries, {d['metric']}): bare libraries dashed (triangles), "
                 "vecindex solid; a pair shares a colour")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8.5, loc="center right", frameon=False)
    fig.tight_layout(rect=(0, 0, 0.83, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", default=str(DEV) if DEV.is_dir() else "sample")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--point-budget", type=float, default=3.0,
                   help="seconds of timed passes per setting at most (at least one pass)")
    p.add_argument("--only", default="", help="comma-separated entry-name substrings")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    ds = load_dataset(args.data, metric="ip", num_queries=args.queries, gt_k=100)
    x, q = ds.base, ds.queries
    gt = np.asarray(ds.gt)[:, :K]
    peers: dict[str, Any] = {}
    skipped: list[str] = []
    for name in ("faiss", "hnswlib", "annoy"):
        try:
            peers[name] = __import__(name)
        except ImportError as e:
            skipped.append(f"{name}: {e}")
    todo = entries(x, peers)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        todo = [e for e in todo if any(w in e.name for w in wanted)]
    groups: list[list[Entry]] = []  # a bare peer and ours over it are measured together
    for e in todo:
        if groups and not e.bare and groups[-1][-1].bare and groups[-1][-1].color == e.color:
            groups[-1].append(e)
        else:
            groups.append([e])
    with pinned_threads(1):
        for group in groups:
            measure(group, q, gt, args.repeats, args.point_budget)
    res: dict[str, Any] = {
        "dataset": {"name": ds.name, "n": int(x.shape[0]), "dim": int(x.shape[1]),
                    "queries": int(q.shape[0]), "metric": "ip", "k": K},
        "threads": 1, "repeats": args.repeats, "point_budget_s": args.point_budget,
        "environment": environment_info(), "sources": source_fingerprint(SOURCES),
        "skipped": skipped,
        "entries": [{"name": e.name, "spec": e.spec, "bare": e.bare, "color": e.color,
                     "knob": e.knob, "build_s": e.build_s, "rows": e.rows,
                     "at_recall": at_targets(e)} for e in todo],
    }
    res["elapsed_s"] = time.perf_counter() - t_start
    out = Path(args.out)
    write_results(out, "recall_qps", res, to_markdown(res))
    if plot(res, out / "recall_qps.png"):
        log(f"plot: {out / 'recall_qps.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
