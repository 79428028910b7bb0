"""The ``hnsw`` kind (on hnswlib) against bare hnswlib, and faiss HNSW beside them.

Usage (from the repository root)::

    python benchmarks/backends_hnswlib.py [DATA] [--queries 500] [--k 10]

``DATA`` defaults to ``../shared/data/dev`` (20,000 x 384, metric ip). Everything runs in
one process on the same arrays with one thread (``vecindex_core.set_num_threads(1)``,
hnswlib ``num_threads=1``, ``faiss.omp_set_num_threads(1)``, BLAS pinned by
threadpoolctl). Measured:

- build time of ours and of bare hnswlib at the same ``M=16, ef_construction=200, seed``
  (one inserting thread both: the same graph), and ours with ``deterministic=false`` on
  ``--build-threads`` threads;
- for ``ef`` 32/64/128: batched QPS (all queries in one call; ours and bare called in
  turn ``--rounds`` x ``--repeats`` times, each side's fastest call), single-query QPS
  (every query in its own call, in blocks of queries that each side runs in turn, per query
  the fastest of ``--rounds`` rounds, summed: ``backends_faiss.interleaved_single``),
  recall@k; the ratio ours / bare (bar >= 0.9 for both). "ours" is the ``IdMapIndex`` that
  ``create`` returns, over the positional ``HNSWIndex`` (whose single-query ratio is
  reported too), also against bare hnswlib calls on the graph ours drives (the wrapper's
  cost alone, free of the layout difference between two separately built graphs);
- filtered search with a 1% allow-mask (ours: the exact route; bare: hnswlib's filter
  callback) and with 10% / 50% masks (ours, and ours forced onto the filter);
- churn: 10% removed and re-added (hnswlib updates the deleted elements in place) vs the
  same rows freshly inserted, and the compaction a 30% removal triggers;
- faiss ``IndexHNSWFlat(dim, 32)`` (inner product, default efConstruction 40) at efSearch
  32/64/128, when faiss is installed: build time, QPS, recall.

Writes ``benchmarks/results/backends_hnswlib.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import vecindex_core as vc
from vecindex_core.backends import hnswlib_backend as hb
from vecindex_core.datasets import load_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts
from backends_faiss import interleaved_batch, interleaved_single

HERE = Path(__file__).resolve().parent
DEV = HERE.parents[1] / "shared" / "data" / "dev"
M, EF_CONSTRUCTION, SEED = 16, 200, 0
EFS = (32, 64, 128)


def recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean ``|found[:k] & truth[:k]| / k`` over rows."""
    return float(np.mean([len(set(f[:k].tolist()) & set(t[:k].tolist())) / k
                          for f, t in zip(found.astype(np.int64), truth, strict=True)]))


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def single_qps(search_one: Callable[[np.ndarray], Any], q: np.ndarray, passes: int = 3) -> float:
    """Queries per second with one query per call (best of ``passes`` over all queries)."""
    def run() -> None:
        for row in q:
            search_one(row[None, :])

    return q.shape[0] / best_time(run, passes)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results files; returns 0."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", default=str(DEV) if DEV.is_dir() else "sample")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--build-threads", type=int, default=2)
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)

    import hnswlib
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    vc.set_num_threads(1)
    ds = load_dataset(args.data, num_queries=args.queries, gt_k=100)
    x, q, k = ds.base, ds.queries, args.k
    gt = np.asarray(ds.gt)[:, :k]
    n, dim = x.shape
    out: dict[str, Any] = {
        "dataset": {"name": ds.name, "n": n, "dim": dim, "queries": q.shape[0], "k": k,
                    "metric": "ip"},
        "env": {"python": platform.python_version(), "hnswlib": "0.8.0",
                "numpy": np.__version__, "machine": platform.machine(), "threads": 1},
        "params": {"M": M, "ef_construction": EF_CONSTRUCTION, "seed": SEED},
        "rounds": args.rounds, "repeats": args.repeats,
    }

    # ---------------------------------------------------------------- builds
    t = time.perf_counter()
    ours = hb.HNSWIndex(dim, "ip", M=M, ef_construction=EF_CONSTRUCTION, seed=SEED)
    ours.add(x)
    build_ours = time.perf_counter() - t
    t = time.perf_counter()
    bare = hnswlib.Index(space="ip", dim=dim)
    bare.init_index(max_elements=n, M=M, ef_construction=EF_CONSTRUCTION, random_seed=SEED)
    bare.add_items(x, np.arange(n), num_threads=1)
    build_bare = time.perf_counter() - t
    vc.set_num_threads(args.build_threads)
    t = time.perf_counter()
    fast = hb.HNSWIndex(dim, "ip", M=M, ef_construction=EF_CONSTRUCTION, seed=SEED,
                        deterministic=False)
    fast.add(x)
    build_fast = time.perf_counter() - t
    vc.set_num_threads(1)
    out["build_s"] = {"ours": build_ours, "bare": build_bare,
                      f"ours_deterministic_false_{args.build_threads}_threads": build_fast}
    print(f"build: ours {build_ours:.1f}s, bare {build_bare:.1f}s, ours deterministic=false "
          f"on {args.build_threads} threads {build_fast:.1f}s")
    del fast

    # ---------------------------------------------------------------- unfiltered
    idmap = vc.IdMapIndex(ours)  # what create() returns (ids 0..n-1), over the same graph
    graph = ours._graph  # bare hnswlib calls on the graph ours drives: the wrapper alone
    rows = []
    for ef in EFS:
        params = {"ef": ef}

        def ours_batch(params: dict[str, int] = params) -> Any:
            return idmap.search(q, k, params=params)

        def bare_batch(ef: int = ef, qq: np.ndarray = q) -> Any:
            bare.set_ef(ef)
            return bare.knn_query(qq, k=k, num_threads=1)

        def ours_one(r: np.ndarray, params: dict[str, int] = params) -> Any:
            return idmap.search(r, k, params=params)

        def positional_one(r: np.ndarray, params: dict[str, int] = params) -> Any:
            return ours.search(r, k, params=params)

        def bare_one(r: np.ndarray, ef: int = ef) -> Any:
            bare.set_ef(ef)
            return bare.knn_query(r, k=k, num_threads=1)

        r_ours = recall(ours_batch().ids, gt, k)
        r_bare = recall(bare_batch()[0], gt, k)
        tb, tc = interleaved_batch([ours_batch, bare_batch], args.rounds, args.repeats)
        # ours and the positional index share one graph: measured in separate pairs with
        # bare, so neither finds the graph warm from the other
        lat = interleaved_single([ours_one, bare_one], q, args.rounds)
        lat_pos = interleaved_single([positional_one, bare_one], q, args.rounds)
        best = lat.min(axis=1).sum(axis=1)  # per query the fastest round, summed
        best_pos = lat_pos.min(axis=1).sum(axis=1)
        per_round = lat.sum(axis=2)

        def same_one(r: np.ndarray, ef: int = ef) -> Any:
            graph.set_ef(ef)
            return graph.knn_query(r, k=k, num_threads=1)

        def same_batch(ef: int = ef) -> Any:
            return same_one(q, ef)

        tb_same, _ = interleaved_batch([ours_batch, same_batch], args.rounds, args.repeats)
        lat_same = interleaved_single([ours_one, same_one], q, args.rounds)
        best_same = lat_same.min(axis=1).sum(axis=1)
        nq = q.shape[0]
        row = {"ef": ef, "recall_ours": r_ours, "recall_bare": r_bare,
               "batched_qps_ours": nq / tb[0].min(), "batched_qps_bare": nq / tb[1].min(),
               "batched_ratio": float(tb[1].min() / tb[0].min()),
               "batched_ratio_cpu": float(tc[1].min() / tc[0].min()),
               "single_qps_ours": nq / best[0], "single_qps_bare": nq / best[1],
               "single_ratio": float(best[1] / best[0]),
               "single_ratio_positional": float(best_pos[1] / best_pos[0]),
               "single_ratio_same_graph": float(best_same[1] / best_same[0]),
               "batched_ratio_same_graph": float(tb_same[1].min() / tb_same[0].min()),
               "single_ratio_rounds": (per_round[1] / per_round[0]).round(3).tolist()}
        rows.append(row)
        print(f"ef={ef}: recall {r_ours:.4f} / {r_bare:.4f}; batched "
              f"{row['batched_qps_ours']:.0f} / {row['batched_qps_bare']:.0f} q/s = "
              f"{row['batched_ratio']:.3f}; single {row['single_qps_ours']:.0f} / "
              f"{row['single_qps_bare']:.0f} q/s = {row['single_ratio']:.3f} (positional "
              f"{row['single_ratio_positional']:.3f}); vs bare calls on our graph: single "
              f"{row['single_ratio_same_graph']:.3f}, batched "
              f"{row['batched_ratio_same_graph']:.3f}")
    out["search"] = rows

    # ---------------------------------------------------------------- filtered
    rng = np.random.default_rng(0)
    filt_rows = []
    for frac in (0.01, 0.10, 0.50):
        mask = np.zeros(n, bool)
        mask[rng.permutation(n)[: int(frac * n)]] = True
        allowed = np.flatnonzero(mask)
        ref = vc.FlatIndex(dim, "ip")
        ref.add(x)
        exact = ref.search(q, k, mask=mask).ids
        res = ours.search(q, k, mask=mask)
        assert (res.counts == k).all() and mask[res.ids].all()
        t_b = best_time(lambda mask=mask: ours.search(q, k, mask=mask), 3)
        t_1 = 1.0 / single_qps(lambda r, mask=mask: ours.search(r, k, mask=mask), q[:100], 2)
        row = {"fraction": frac, "allowed": int(allowed.size),
               "route": "exact" if ours._exact_route(mask) is not None else "filter",
               "recall_vs_filtered_exact": recall(res.ids, exact, k),
               "ours_batched_ms": t_b * 1e3, "ours_single_ms": t_1 * 1e3}
        keep = np.zeros(n, np.uint8)
        keep[allowed] = 1
        filt = keep.tobytes().__getitem__
        bare.set_ef(64)

        def bare_f(qq: np.ndarray, filt: Any = filt) -> Any:
            return bare.knn_query(qq, k=k, num_threads=1, filter=filt)

        row["bare_filter_recall"] = recall(bare_f(q)[0], exact, k)
        row["bare_filter_batched_ms"] = best_time(lambda: bare_f(q), 1) * 1e3
        row["bare_filter_single_ms"] = 1e3 / single_qps(bare_f, q[:100], 1)
        if row["route"] == "exact":  # ours forced onto hnswlib's filter, for the crossover
            forced = ours._graph_search(q, k, 64, filt)
            row["ours_filter_batched_ms"] = best_time(
                lambda filt=filt: ours._graph_search(q, k, 64, filt), 1) * 1e3
            row["ours_filter_recall"] = (None if forced is None
                                         else recall(forced[1], exact, k))
        filt_rows.append(row)
        print(f"mask {frac:.0%} ({row['route']}): ours batch {row['ours_batched_ms']:.1f} ms, "
              f"single {row['ours_single_ms']:.2f} ms, recall {row['recall_vs_filtered_exact']:.4f}"
              f"; bare filter batch {row['bare_filter_batched_ms']:.1f} ms, single "
              f"{row['bare_filter_single_ms']:.2f} ms, recall {row['bare_filter_recall']:.4f}")
    out["filtered"] = filt_rows

    # ---------------------------------------------------------------- churn
    churn = hb.HNSWIndex(dim, "ip", M=M, ef_construction=EF_CONSTRUCTION, seed=SEED)
    churn.add(x)
    gone = np.sort(rng.choice(n, n // 10, replace=False))
    removed_vecs = churn.get_vectors(gone)
    t = time.perf_counter()
    churn.remove(gone)
    t_remove = time.perf_counter() - t
    t = time.perf_counter()
    churn.add(removed_vecs)  # reuses the deleted labels: hnswlib updates them in place
    t_readd = time.perf_counter() - t
    res = churn.search(q, k)
    vecs = churn.get_vectors(np.arange(churn.ntotal))
    ref = vc.FlatIndex(dim, "ip")
    ref.add(vecs)
    r_churn = recall(res.ids, ref.search(q, k).ids, k)
    t = time.perf_counter()
    fresh = hb.HNSWIndex(dim, "ip", M=M, ef_construction=EF_CONSTRUCTION, seed=SEED)
    fresh.add(np.delete(x, gone, axis=0))
    t_base = time.perf_counter() - t
    t = time.perf_counter()
    fresh.add(removed_vecs)
    t_fresh = time.perf_counter() - t
    t = time.perf_counter()
    churn.remove(np.arange(int(0.3 * n)))
    t_compact = time.perf_counter() - t
    out["churn"] = {
        "rows": int(gone.size), "remove_ms": t_remove * 1e3,
        "readd_reusing_labels_ms_per_row": t_readd / gone.size * 1e3,
        "fresh_insert_ms_per_row": t_fresh / gone.size * 1e3,
        "recall_after_churn_vs_exact": r_churn,
        "compaction_30pct_remove_s": t_compact, "compactions": churn.stats()["compactions"],
        "build_90pct_s": t_base,
    }
    print(f"churn: remove {gone.size} {t_remove * 1e3:.1f} ms; re-add (label reuse) "
          f"{out['churn']['readd_reusing_labels_ms_per_row']:.2f} ms/row vs fresh insert "
          f"{out['churn']['fresh_insert_ms_per_row']:.2f} ms/row; recall after {r_churn:.4f}; "
          f"removing 30% compacts in {t_compact:.1f} s")
    del churn, fresh

    # ---------------------------------------------------------------- faiss HNSW
    try:
        import faiss
    except ImportError:
        out["faiss"] = {"skipped": "faiss is not installed"}
    else:
        faiss.omp_set_num_threads(1)
        t = time.perf_counter()
        fx = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        fx.add(x)
        f_build = time.perf_counter() - t
        f_rows = []
        for ef in EFS:
            fx.hnsw.efSearch = ef
            ids = fx.search(q, k)[1]
            t_b = best_time(lambda: fx.search(q, k), args.repeats)
            s = single_qps(lambda r: fx.search(r, k), q)
            f_rows.append({"efSearch": ef, "recall": recall(ids, gt, k),
                           "batched_qps": q.shape[0] / t_b, "single_qps": s})
            print(f"faiss HNSW32 efSearch={ef}: recall {f_rows[-1]['recall']:.4f}, batched "
                  f"{q.shape[0] / t_b:.0f} q/s, single {s:.0f} q/s")
        out["faiss"] = {"version": faiss.__version__, "spec": "IndexHNSWFlat(dim, 32), IP, "
                        f"efConstruction {fx.hnsw.efConstruction}", "build_s": f_build,
                        "search": f_rows}

    out["memory_bytes_ours"] = ours.memory_bytes()
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "backends_hnswlib.json").write_text(json.dumps(out, indent=2) + "\n")
    (dest / "backends_hnswlib.md").write_text(to_markdown(out))
    print(f"wrote {dest / 'backends_hnswlib.md'}")
    return 0


def to_markdown(out: dict[str, Any]) -> str:
    """The results as a markdown report."""
    d = out["dataset"]
    lines = [
        "# hnsw (ours, on hnswlib) vs bare hnswlib, and faiss HNSW",
        "",
        f"{d['name']}: {d['n']} x {d['dim']}, {d['queries']} queries, metric {d['metric']}, "
        f"k={d['k']}; one thread everywhere; M={out['params']['M']}, ef_construction="
        f"{out['params']['ef_construction']}, seed {out['params']['seed']}. Same process, same "
        "arrays; ratios are ours / bare (bar >= 0.9). Generated by "
        "`benchmarks/backends_hnswlib.py`.",
        "",
        "## Build",
        "",
        "| what | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.2f} |" for k, v in out["build_s"].items()],
        "",
        "## Unfiltered search",
        "",
        "\"ours\" is the `IdMapIndex` that `create` returns; \"ratio, positional\" is the "
        "positional `HNSWIndex` under it. Batched: each side's fastest of "
        f"{out['rounds']} x {out['repeats']} calls, the sides called in turn, by wall clock "
        "and by the calling thread's CPU time (which leaves out waiting for a core on this "
        "shared machine). Single query: "
        "blocks of queries run by each side in turn, per query the fastest of "
        f"{out['rounds']} rounds, summed (per-round ratios in the JSON). The last column "
        "compares ours with bare hnswlib calls (`set_ef` + `knn_query`) on the graph ours "
        "drives (the same memory): the wrapper's cost alone; two separately built copies of "
        "one graph differ by a few % in single-query speed here (layout).",
        "",
        "| ef | recall ours | recall bare | batched q/s ours | bare | ratio | ratio, CPU time "
        "| single q/s ours | bare | ratio | ratio, positional | ratio vs bare calls on our "
        "graph: single / batched |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out["search"]:
        lines.append(
            f"| {r['ef']} | {r['recall_ours']:.4f} | {r['recall_bare']:.4f} | "
            f"{r['batched_qps_ours']:.0f} | {r['batched_qps_bare']:.0f} | "
            f"{r['batched_ratio']:.3f} | {r['batched_ratio_cpu']:.3f} | "
            f"{r['single_qps_ours']:.0f} | {r['single_qps_bare']:.0f} "
            f"| {r['single_ratio']:.3f} | {r['single_ratio_positional']:.3f} | "
            f"{r['single_ratio_same_graph']:.3f} / {r['batched_ratio_same_graph']:.3f} |")
    lines += [
        "",
        "## Filtered search (allow-mask)",
        "",
        "Ours routes masks of at most max(2048, n/64) rows to an exact search over them; "
        "larger ones to hnswlib's filter callback (ef 64). Bare: hnswlib's filter, ef 64. "
        "Recall is against the exact filtered top-k.",
        "",
        "| mask | rows | our route | ours batch ms | ours single ms | ours recall | bare filter "
        "batch ms | bare single ms | bare recall | ours via filter batch ms (recall) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out["filtered"]:
        forced = ("" if "ours_filter_batched_ms" not in r else
                  f"{r['ours_filter_batched_ms']:.1f} ({r['ours_filter_recall']:.4f})")
        lines.append(
            f"| {r['fraction']:.0%} | {r['allowed']} | {r['route']} | {r['ours_batched_ms']:.1f} "
            f"| {r['ours_single_ms']:.2f} | {r['recall_vs_filtered_exact']:.4f} | "
            f"{r['bare_filter_batched_ms']:.1f} | {r['bare_filter_single_ms']:.2f} | "
            f"{r['bare_filter_recall']:.4f} | {forced} |")
    c = out["churn"]
    lines += [
        "",
        "## Removes, re-adds and compaction",
        "",
        f"- remove {c['rows']} rows (mark_deleted): {c['remove_ms']:.1f} ms",
        f"- re-add them, reusing the deleted labels (hnswlib updates in place): "
        f"{c['readd_reusing_labels_ms_per_row']:.2f} ms/row; the same rows inserted fresh "
        f"into a 90% index: {c['fresh_insert_ms_per_row']:.2f} ms/row",
        f"- recall@10 after the churn vs exact on the same rows: "
        f"{c['recall_after_churn_vs_exact']:.4f}",
        f"- removing 30% then (past the 25% deleted threshold) compacts: "
        f"{c['compaction_30pct_remove_s']:.1f} s (a rebuild of the survivors)",
        "",
        "## faiss IndexHNSWFlat (for the engine decision)",
        "",
    ]
    f = out["faiss"]
    if "skipped" in f:
        lines.append(f"skipped: {f['skipped']}")
    else:
        lines += [
            f"faiss {f['version']}, {f['spec']}; build {f['build_s']:.1f} s.",
            "",
            "| efSearch | recall | batched q/s | single q/s |",
            "|---|---|---|---|",
            *[f"| {r['efSearch']} | {r['recall']:.4f} | {r['batched_qps']:.0f} | "
              f"{r['single_qps']:.0f} |" for r in f["search"]],
        ]
    lines += ["", f"Memory of ours (estimate, includes the slot-ordered vector copy): "
              f"{out['memory_bytes_ours'] / 2**20:.1f} MiB", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
