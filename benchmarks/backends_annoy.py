"""Our ``annoy`` kind against bare annoy (``annoy.AnnoyIndex``) at the same parameters.

Usage (from the repository root, with vecindex and annoy installed)::

    flock /tmp/vecindex-bench.lock python benchmarks/backends_annoy.py [DATA]

``DATA`` defaults to ``../shared/data/dev`` next to the repository when present, else the
bundled sample. The vectors are unit-norm, so the ``ip`` ground truth is searched with
``cosine`` (annoy's ``angular``); ``k = 10``, ``n_trees = 50``, one thread everywhere
(``pinned_threads(1)``). Bare annoy gets the same prepared vectors, seed and one build
thread, so both hold the same forest and return the same ids (checked). Annoy has no batch
API: "batched" is one call of ours over all queries against a Python loop of
``get_nns_by_vector(row, k, search_k, include_distances=True)`` over ``queries.tolist()``
(the bare library's fastest input), best of ``--repeats`` alternated runs. Single-query:
p50 of ``--latency-queries`` calls. Also: build time, recall@10, load of a saved file
against a rebuild, and filtered search with a 1% allow-mask (exact route) and a 30% one
(over-fetch through annoy). Writes ``backends_annoy.{json,md}`` to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import vecindex_core as vc
from vecindex_core.base import normalize_rows
from vecindex_core.bench.env import environment_info
from vecindex_core.bench.runner import pinned_threads, recall_at_k
from vecindex_core.bench.timing import best_of_pair, log, median_latency_us, write_results
from vecindex_core.datasets import load_dataset

HERE = Path(__file__).resolve().parent
DEV = HERE.parents[1] / "shared" / "data" / "dev"


def bare_search(
    a: Any, q: np.ndarray, k: int, search_k: int
) -> list[tuple[list[int], list[float]]]:
    """Bare annoy over a batch: a loop, as a user of the library writes it."""
    return [a.get_nns_by_vector(row, k, search_k, True) for row in q.tolist()]


def paired_latency_us(
    a: Callable[[np.ndarray], Any], b: Callable[[np.ndarray], Any], q: np.ndarray, n: int
) -> tuple[float, float]:
    """Median µs of ``a`` and ``b`` over ``n`` single queries, the two alternated per query."""
    a(q[:1])
    b(q[:1])
    ta, tb = [], []
    for i in range(n):
        qi = q[i % q.shape[0] : i % q.shape[0] + 1]
        for fn, times in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
            t0 = time.perf_counter()
            fn(qi)
            times.append(time.perf_counter() - t0)
    return float(np.median(ta)) * 1e6, float(np.median(tb)) * 1e6


def ids_of(results: list[tuple[list[int], list[float]]], k: int) -> np.ndarray:
    out = np.full((len(results), k), -1, dtype=np.int64)
    for i, (ids, _) in enumerate(results):
        out[i, : len(ids)] = ids
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; returns 0 when every bar holds, else 1."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", default=str(DEV) if DEV.is_dir() else "sample")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--n-trees", type=int, default=50)
    p.add_argument("--search-k", default="2000,10000")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--latency-queries", type=int, default=300)
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    import annoy

    t_start = time.perf_counter()
    ds = load_dataset(args.data, num_queries=args.queries, gt_k=100)
    base, q, k = ds.base, ds.queries, args.k
    assert ds.gt is not None
    res: dict[str, Any] = {
        "data": ds.name, "n": int(base.shape[0]), "dim": int(base.shape[1]),
        "queries": int(q.shape[0]), "k": k, "metric": "cosine (annoy angular)",
        "gt_metric": ds.metric, "n_trees": args.n_trees, "threads": 1, "rows": [],
    }
    ok = True
    with pinned_threads(1):
        # ------------------------------------------------------------ build
        t0 = time.perf_counter()
        index = vc.create(f"annoy(n_trees={args.n_trees})", dim=base.shape[1], metric="cosine")
        index.add(base)
        index.search(q[:1], k)  # the lazy build
        ours_build = time.perf_counter() - t0
        prepared = normalize_rows(base)
        t0 = time.perf_counter()
        bare = annoy.AnnoyIndex(base.shape[1], "angular")
        bare.set_seed(0)
        for i, row in enumerate(prepared.tolist()):
            bare.add_item(i, row)
        bare.build(args.n_trees, n_jobs=1)
        bare_build = time.perf_counter() - t0
        res["build_s"] = {"ours": ours_build, "bare": bare_build}
        log(f"build: ours {ours_build:.2f} s (incl. the forest's temp file), "
            f"bare {bare_build:.2f} s")

        # ------------------------------------------------------------ search
        for sk in (int(s) for s in args.search_k.split(",")):
            params = {"search_k": sk}
            ours_res = index.search(q, k, params=params)
            bare_res = ids_of(bare_search(bare, q, k, sk), k)
            same = bool(np.array_equal(ours_res.ids.astype(np.int64), bare_res))
            r_ours = recall_at_k(ours_res.ids.astype(np.int64), ds.gt, k)
            r_bare = recall_at_k(bare_res, ds.gt, k)
            rounds = []
            for _ in range(args.rounds):  # whole rounds: a noisy spell hits one, not all
                t_ours, t_bare = best_of_pair(
                    lambda params=params: index.search(q, k, params=params),
                    lambda sk=sk: bare_search(bare, q, k, sk), args.repeats,
                )
                p50_ours, p50_bare = paired_latency_us(
                    lambda qi, params=params: index.search(qi, k, params=params),
                    lambda qi, sk=sk: bare.get_nns_by_vector(qi[0].tolist(), k, sk, True),
                    q, args.latency_queries)
                p50_pos, p50_bare2 = paired_latency_us(
                    lambda qi, params=params: index.index.search(qi, k, params=params),
                    lambda qi, sk=sk: bare.get_nns_by_vector(qi[0].tolist(), k, sk, True),
                    q, args.latency_queries)
                rounds.append({
                    "qps_ours": q.shape[0] / min(t_ours), "qps_bare": q.shape[0] / min(t_bare),
                    "batched_ratio": min(t_bare) / min(t_ours),
                    "p50_us_ours": p50_ours, "p50_us_bare": p50_bare,
                    "single_ratio": p50_bare / p50_ours,
                    "single_ratio_positional": p50_bare2 / p50_pos,
                })
            row = {"search_k": sk, "recall_ours": r_ours, "recall_bare": r_bare,
                   "same_ids": same, "rounds": rounds}
            for key in rounds[0]:  # the median round of each number
                row[key] = float(np.median([r[key] for r in rounds]))
            res["rows"].append(row)
            ok = ok and row["batched_ratio"] >= 0.9 and row["single_ratio"] >= 0.9 and same
            log(f"search_k={sk}: recall {r_ours:.4f} / bare {r_bare:.4f} (same ids: {same}); "
                f"batched {row['qps_ours']:.0f} / {row['qps_bare']:.0f} q/s = "
                f"{row['batched_ratio']:.3f}; single p50 {row['p50_us_ours']:.0f} / "
                f"{row['p50_us_bare']:.0f} us = {row['single_ratio']:.3f} (positional "
                f"{row['single_ratio_positional']:.3f}); per round "
                f"{[round(r['batched_ratio'], 3) for r in rounds]}, "
                f"{[round(r['single_ratio'], 3) for r in rounds]}")

        # ------------------------------------------------------------ filtered
        rng = np.random.default_rng(0)
        ids = index.ids
        filt = []
        for frac in (0.01, 0.3):
            allowed = ids[rng.random(len(ids)) < frac]
            r = index.search(q, k, allow=allowed)
            exactly_k = bool((r.counts == min(k, len(allowed))).all()
                             and np.isin(r.ids, allowed).all())
            mask = np.isin(ids, allowed)
            flat = vc.FlatIndex(base.shape[1], "cosine")
            flat.add(base)
            truth = flat.search(q, k, mask=mask).ids
            before = index.index.stats()
            t_batch = min(best_of_pair(lambda a=allowed: index.search(q, k, allow=a),
                                       lambda: None, 3)[0])
            lat = median_latency_us(lambda qi, a=allowed: index.search(qi, k, allow=a), q,
                                    args.latency_queries)
            after = index.index.stats()
            routed = after["exact_routes"] > before["exact_routes"]
            route = "exact" if routed else "annoy over-fetch"
            row = {"fraction": frac, "allowed": len(allowed), "route": route,
                   "exactly_k_allowed": exactly_k,
                   "recall": recall_at_k(r.ids.astype(np.int64), truth, k),
                   "qps": q.shape[0] / t_batch, "p50_us": lat["p50_us"],
                   "exact_fallbacks": after["exact_fallbacks"] - before["exact_fallbacks"]}
            filt.append(row)
            ok = ok and exactly_k
            log(f"filtered {frac:.0%} ({route}): exactly k: {exactly_k}, recall "
                f"{row['recall']:.4f}, {row['qps']:.0f} q/s, p50 {lat['p50_us']:.0f} us")
        res["filtered"] = filt

        # ------------------------------------------------------------ save / load
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "annoy.vecidx"
            t0 = time.perf_counter()
            index.save(path)
            t_save = time.perf_counter() - t0
            t0 = time.perf_counter()
            loaded = vc.load(path)
            loaded.search(q[:1], k)
            t_load = time.perf_counter() - t0
            size = path.stat().st_size
            assert loaded.index.stats()["rebuilds"] == 0
        t0 = time.perf_counter()
        index.index._invalidate()
        index.search(q[:1], k)
        t_rebuild = time.perf_counter() - t0
        res["persistence"] = {"save_s": t_save, "load_and_first_search_s": t_load,
                              "rebuild_s": t_rebuild, "file_bytes": size,
                              "vector_bytes": int(base.nbytes),
                              "memory_bytes": index.memory_bytes()}
        log(f"save {t_save:.2f} s, load + first search {t_load:.2f} s, rebuild {t_rebuild:.2f} s; "
            f"file {size / 2**20:.1f} MiB (vectors {base.nbytes / 2**20:.1f} MiB)")

    res["bars_hold"] = ok
    res["environment"] = environment_info()
    res["elapsed_s"] = time.perf_counter() - t_start
    write_results(args.out, "backends_annoy", res, to_markdown(res))
    return 0 if ok else 1


def to_markdown(res: dict[str, Any]) -> str:
    lines = [
        "# `annoy` kind vs bare annoy",
        "",
        f"{res['data']}: {res['n']:,} x {res['dim']}, {res['queries']} queries, k={res['k']}, "
        f"{res['metric']} (ground truth {res['gt_metric']}; unit-norm vectors), "
        f"n_trees={res['n_trees']}, 1 thread. Same forest on both sides (same vectors, seed, "
        "one build thread). Bare annoy: a Python loop of `get_nns_by_vector(row, k, search_k, "
        "include_distances=True)` over `queries.tolist()`.",
        "",
        f"Build: ours {res['build_s']['ours']:.2f} s (includes writing the forest's temp "
        f"file), bare {res['build_s']['bare']:.2f} s.",
        "",
        "| search_k | recall@10 ours | recall@10 bare | same ids | batched q/s ours | bare | "
        "ratio | single p50 µs ours | bare | ratio (bare/ours) | ratio, positional index |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['search_k']} | {r['recall_ours']:.4f} | {r['recall_bare']:.4f} | "
            f"{r['same_ids']} | {r['qps_ours']:.0f} | {r['qps_bare']:.0f} | "
            f"{r['batched_ratio']:.3f} | {r['p50_us_ours']:.0f} | {r['p50_us_bare']:.0f} | "
            f"{r['single_ratio']:.3f} | {r['single_ratio_positional']:.3f} |")
    lines += ["", "Each number is the median of the rounds (JSON: every round). \"ours\" is "
              "`vc.create(...)` (an `IdMapIndex`: validation, metric transform, id mapping); "
              "\"positional\" is the `AnnoyIndex` under it.", "",
              "Filtered search (ours; default search_k; bare annoy has no filter):", "",
              "| allowed | rows | route | exactly k allowed | recall@10 | batched q/s | "
              "single p50 µs |", "|---|---|---|---|---|---|---|"]
    for r in res["filtered"]:
        lines.append(
            f"| {r['fraction']:.0%} | {r['allowed']} | {r['route']} | {r['exactly_k_allowed']} "
            f"| {r['recall']:.4f} | {r['qps']:.0f} | {r['p50_us']:.0f} |")
    pers = res["persistence"]
    lines += [
        "",
        f"Persistence: save {pers['save_s']:.2f} s; load + first search "
        f"{pers['load_and_first_search_s']:.2f} s (the stored forest is mapped) against a "
        f"rebuild of {pers['rebuild_s']:.2f} s; file {pers['file_bytes'] / 2**20:.1f} MiB "
        f"(vectors alone {pers['vector_bytes'] / 2**20:.1f} MiB); memory_bytes "
        f"{pers['memory_bytes'] / 2**20:.1f} MiB.",
        "",
        f"Bars (ratio >= 0.9, same ids, exactly k allowed): {res['bars_hold']}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
