"""``redis_lsh`` against ``lshrs`` (PyPI), in one process, against the same Redis server.

Usage (from the repository root, with vecindex installed or on ``PYTHONPATH``)::

    flock /tmp/vecindex-bench.lock python benchmarks/redis_lsh.py [DATA] [--queries 500]

``DATA`` defaults to ``../shared/data/dev`` next to the repository when present, else the
bundled sample. One ``redis-server`` (no persistence) is started on a free loopback port and
stopped at the end; each side gets the same parameters (``--bands`` x ``--rows`` signature,
``--seed``) and is measured on a flushed server. Metric cosine (the data is unit-norm),
``k = 10``. Both sides are built and queried once on 512 rows before anything is timed.
Measured:

1. **ingest**: vectors/s of one ``index(ids, vectors)`` call of lshrs vs one
   ``IdMapIndex.add(vectors, ids)`` of ours (and ours in batches of ``--batch``); Redis
   memory per vector (``INFO memory`` ``used_memory`` growth over the ingest, and the keys'
   ``MEMORY USAGE`` from our ``stats()``).
2. **top-k by collisions**: lshrs ``get_top_k(v, k)`` (one query a call; its API) vs our
   ``search`` without vectors (collision-count ranking) at ``num_probes=0`` -- the same
   parameters -- batched (all queries in one call) and one query a call; queries/s and
   recall@k.
3. **reranked**: lshrs ``get_above_p(v, p=1.0)`` reranks every candidate ``N_q`` of query q
   by exact cosine (vectors from its ``vector_fetch_fn``); ours, with the same kind of
   ``vector_fetch_fn``, reranks exactly ``N_q`` candidates of each query (``rerank=N_q``):
   the most-colliding ones, at ``num_probes`` 0 (the same buckets) and at our default 4.
   Recall@k at equal candidate counts, and queries/s; then the recalls again at
   ``--extra-seeds`` (the hyperplanes drawn move recall by a few points either way).

Writes ``redis_lsh.{json,md}`` to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import vecindex_core as vc
from vecindex_core.bench.env import environment_info
from vecindex_core.bench.runner import pinned_threads, recall_at_k
from vecindex_core.bench.timing import log, source_fingerprint, write_results
from vecindex_core.datasets import load_dataset
from vecindex_core.testing import start_redis

SOURCES = ["redis_lsh.py", "lsh_tuning.py"]
HERE = Path(__file__).resolve().parent
DEV = HERE.parents[1] / "shared" / "data" / "dev"


def used_memory(r: Any) -> int:
    return int(r.info("memory")["used_memory"])


def ours_spec(args: argparse.Namespace) -> str:
    return f"redis_lsh(num_bands={args.bands},rows_per_band={args.rows},seed={args.seed})"


def warm_up(ds: Any, args: argparse.Namespace, url: str, r: Any) -> None:
    """Build and query both sides once on 512 rows (numba kernels load from their cache,
    connection pools fill), so neither is charged for first-call set-up."""
    from lshrs import LSHRS

    x, q = ds.base[:512], ds.queries[:8]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    peer = LSHRS(dim=x.shape[1], num_perm=args.bands * args.rows, num_bands=args.bands,
                 rows_per_band=args.rows, redis_host="127.0.0.1", redis_port=port,
                 redis_prefix="warmup", seed=args.seed, vector_fetch_fn=lambda i: x[i])
    peer.index(list(range(len(x))), x)
    for v in q:
        peer.get_top_k(v, args.k)
        peer.get_above_p(v, p=1.0)
    ours = vc.create(ours_spec(args), dim=x.shape[1], url=url)
    ours.add(x)
    ours.index.vector_fetch_fn = lambda slots: x[slots]
    for params in ({"num_probes": 0}, {"rerank": 50}, {"num_probes": 0, "rerank": 50}):
        ours.search(q, args.k, params=params)
        ours.search(q[0], args.k, params=params)
    ours.remove(np.arange(10))
    r.flushall()


def section_ingest(ds: Any, args: argparse.Namespace, url: str, r: Any) -> dict[str, Any]:
    from lshrs import LSHRS

    x = ds.base
    n = x.shape[0]
    ids = np.arange(n)
    out: dict[str, Any] = {"n": n}
    port = int(url.rsplit(":", 1)[1].split("/")[0])

    r.flushall()
    m0 = used_memory(r)
    peer = LSHRS(dim=x.shape[1], num_perm=args.bands * args.rows, num_bands=args.bands,
                 rows_per_band=args.rows, redis_host="127.0.0.1", redis_port=port,
                 redis_prefix="lshrs", seed=args.seed)
    t0 = time.perf_counter()
    peer.index(ids.tolist(), x)  # list ids: lshrs' index() breaks on NumPy id arrays
    out["lshrs_s"] = time.perf_counter() - t0
    out["lshrs_vectors_per_s"] = n / out["lshrs_s"]
    out["lshrs_bytes_per_vector"] = (used_memory(r) - m0) / n
    out["lshrs_keys"] = int(r.dbsize())
    log(f"  lshrs index(): {out['lshrs_vectors_per_s']:.0f} vectors/s, "
        f"{out['lshrs_bytes_per_vector']:.0f} B/vector")

    r.flushall()
    m0 = used_memory(r)
    ours = vc.create(ours_spec(args), dim=x.shape[1], url=url)
    t0 = time.perf_counter()
    ours.add(x, ids=ids)
    out["ours_s"] = time.perf_counter() - t0
    out["ours_vectors_per_s"] = n / out["ours_s"]
    out["ours_bytes_per_vector"] = (used_memory(r) - m0) / n
    out["ours_keys"] = int(r.dbsize())
    st = ours.index.stats()
    out["ours_stats"] = {k: st[k] for k in ("bucket_count", "bucket_size", "memory_bytes",
                                            "memory_per_row", "reverse_keys")}
    log(f"  ours add(): {out['ours_vectors_per_s']:.0f} vectors/s, "
        f"{out['ours_bytes_per_vector']:.0f} B/vector")

    r.flushall()
    batched = vc.create(ours_spec(args), dim=x.shape[1], url=url)
    t0 = time.perf_counter()
    for a in range(0, n, args.batch):
        batched.add(x[a:a + args.batch], ids=ids[a:a + args.batch])
    out["ours_batched_s"] = time.perf_counter() - t0
    out["ours_batched_vectors_per_s"] = n / out["ours_batched_s"]
    out["batch"] = args.batch
    out["ingest_ratio"] = out["ours_vectors_per_s"] / out["lshrs_vectors_per_s"]
    out["ingest_ratio_batched"] = out["ours_batched_vectors_per_s"] / out["lshrs_vectors_per_s"]
    out["memory_ratio"] = out["lshrs_bytes_per_vector"] / out["ours_bytes_per_vector"]
    r.flushall()
    return out


def build_both(ds: Any, args: argparse.Namespace, url: str, r: Any) -> tuple[Any, Any]:
    from lshrs import LSHRS

    x = ds.base
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    r.flushall()
    peer = LSHRS(dim=x.shape[1], num_perm=args.bands * args.rows, num_bands=args.bands,
                 rows_per_band=args.rows, redis_host="127.0.0.1", redis_port=port,
                 redis_prefix="lshrs", seed=args.seed,
                 vector_fetch_fn=lambda idx: x[np.asarray(idx, dtype=np.int64)])
    peer.index(list(range(x.shape[0])), x)
    ours = vc.create(ours_spec(args), dim=x.shape[1], url=url)
    ours.add(x)  # ids 0..n-1 = the rows
    # vectors come from the caller's store (this array), as lshrs' do
    ours.index.vector_fetch_fn = lambda slots: x[ours.ids[slots].astype(np.int64)]
    return peer, ours


def section_topk(ds: Any, args: argparse.Namespace, peer: Any, ours: Any) -> dict[str, Any]:
    q, gt, k = ds.queries, ds.gt, args.k
    nq = q.shape[0]
    fn = ours.index.vector_fetch_fn
    ours.index.vector_fetch_fn = None  # collision ranking, like get_top_k
    params = {"num_probes": 0}
    out: dict[str, Any] = {}
    try:
        peer.get_top_k(q[0], k)
        t0 = time.perf_counter()
        found = [peer.get_top_k(v, k) for v in q]
        out["lshrs_qps"] = nq / (time.perf_counter() - t0)
        peer_ids = np.full((nq, k), -1, dtype=np.int64)
        for i, f in enumerate(found):
            peer_ids[i, : len(f)] = f
        out["lshrs_recall"] = recall_at_k(peer_ids, gt, k)

        ours.search(q[:8], k, params=params)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = ours.search(q, k, params=params)
            times.append(time.perf_counter() - t0)
        out["ours_batched_qps"] = nq / min(times)
        out["ours_recall"] = recall_at_k(res.ids.astype(np.int64), gt, k)
        t0 = time.perf_counter()
        for i in range(nq):
            ours.search(q[i], k, params=params)
        out["ours_single_qps"] = nq / (time.perf_counter() - t0)
        out["qps_ratio_batched"] = out["ours_batched_qps"] / out["lshrs_qps"]
        out["qps_ratio_single"] = out["ours_single_qps"] / out["lshrs_qps"]
    finally:
        ours.index.vector_fetch_fn = fn
    log(f"  get_top_k {out['lshrs_qps']:.0f} q/s (recall {out['lshrs_recall']:.3f}); ours "
        f"{out['ours_batched_qps']:.0f} q/s batched, {out['ours_single_qps']:.0f} single "
        f"(recall {out['ours_recall']:.3f})")
    return out


def section_rerank(ds: Any, args: argparse.Namespace, peer: Any, ours: Any) -> dict[str, Any]:
    q, gt, k = ds.queries, ds.gt, args.k
    nq = q.shape[0]
    out: dict[str, Any] = {}
    peer.get_above_p(q[0], p=1.0)
    t0 = time.perf_counter()
    found = [peer.get_above_p(v, p=1.0) for v in q]
    out["lshrs_qps"] = nq / (time.perf_counter() - t0)
    counts = np.array([len(f) for f in found])
    peer_ids = np.full((nq, k), -1, dtype=np.int64)
    for i, f in enumerate(found):
        top = [idx for idx, _ in f[:k]]
        peer_ids[i, : len(top)] = top
    out["lshrs_recall"] = recall_at_k(peer_ids, gt, k)
    out["candidates_mean"] = float(counts.mean())
    out["candidates_median"] = float(np.median(counts))
    log(f"  get_above_p(p=1): {out['lshrs_qps']:.0f} q/s, recall {out['lshrs_recall']:.3f}, "
        f"{counts.mean():.0f} candidates a query")
    # our own buckets at the same parameters: every candidate reranked, and how many there are
    res, cand = ours.index.search_stats(q, k, params={"num_probes": 0, "rerank": 0})
    slots = res.ids
    own = np.where(slots >= 0, ours.ids[np.maximum(slots, 0)].astype(np.int64), -1)
    out["ours_probes0_all_candidates"] = {
        "recall": recall_at_k(own, gt, k), "candidates_mean": float(cand.mean()),
        "queries_with_more_than_lshrs": float(np.mean(cand > counts)),
        "mean_min_with_lshrs": float(np.minimum(cand, counts).mean()),
    }
    for probes in sorted({0, args.probes}):
        ids = np.full((nq, k), -1, dtype=np.int64)
        t0 = time.perf_counter()
        for i in range(nq):  # rerank exactly as many candidates as lshrs did for this query
            params = {"num_probes": probes, "rerank": int(max(counts[i], 1))}
            res = ours.search(q[i], k, params=params)
            ids[i] = res.ids[0].astype(np.int64)
        single_s = time.perf_counter() - t0
        median = int(max(np.median(counts), 1))
        ours.search(q[:8], k, params={"num_probes": probes, "rerank": median})
        t0 = time.perf_counter()
        res = ours.search(q, k, params={"num_probes": probes, "rerank": median})
        batched_s = time.perf_counter() - t0
        out[f"ours_probes{probes}"] = {
            "recall": recall_at_k(ids, gt, k),
            "single_qps": nq / single_s,
            "batched_qps_rerank_median": nq / batched_s,
            "batched_recall_rerank_median": recall_at_k(res.ids.astype(np.int64), gt, k),
        }
        log(f"  ours rerank=N_q probes={probes}: recall "
            f"{out[f'ours_probes{probes}']['recall']:.3f}, {nq / single_s:.0f} q/s single, "
            f"{nq / batched_s:.0f} q/s batched (rerank={median})")
    return out


def rerank_recalls(ds: Any, args: argparse.Namespace, peer: Any, ours: Any) -> dict[str, float]:
    """Recall@k of lshrs get_above_p(p=1) and of ours at rerank=N_q (probes 0 and
    ``--probes``), one query a call."""
    q, gt, k = ds.queries, ds.gt, args.k
    peer_ids = np.full((q.shape[0], k), -1, dtype=np.int64)
    counts = np.zeros(q.shape[0], dtype=np.int64)
    for i, v in enumerate(q):
        found = peer.get_above_p(v, p=1.0)
        counts[i] = len(found)
        top = [idx for idx, _ in found[:k]]
        peer_ids[i, : len(top)] = top
    out = {"lshrs": recall_at_k(peer_ids, gt, k), "candidates_mean": float(counts.mean())}
    for probes in sorted({0, args.probes}):
        ids = np.full((q.shape[0], k), -1, dtype=np.int64)
        for i in range(q.shape[0]):
            res = ours.search(q[i], k, params={"num_probes": probes,
                                               "rerank": int(max(counts[i], 1))})
            ids[i] = res.ids[0].astype(np.int64)
        out[f"ours_probes{probes}"] = recall_at_k(ids, gt, k)
    return out


def section_seeds(ds: Any, args: argparse.Namespace, url: str, r: Any) -> dict[str, Any]:
    """The reranked comparison at other seeds: which hyperplanes are drawn moves recall by a
    few points either way."""
    per_seed = {}
    for seed in args.extra_seeds:
        sub = argparse.Namespace(**{**vars(args), "seed": seed})
        peer, ours = build_both(ds, sub, url, r)
        per_seed[str(seed)] = rerank_recalls(ds, sub, peer, ours)
        log(f"  seed {seed}: {per_seed[str(seed)]}")
        r.flushall()
    keys = sorted({key for v in per_seed.values() for key in v})
    mean = {key: float(np.mean([v[key] for v in per_seed.values()])) for key in keys}
    return {"per_seed": per_seed, "mean": mean}


def to_markdown(res: dict[str, Any], args: argparse.Namespace) -> str:
    ing, top, rr = res.get("ingest", {}), res.get("topk", {}), res.get("rerank", {})
    ds = res["dataset"]
    lines = [
        "# redis_lsh vs lshrs",
        "",
        f"{ds['name']}: {ds['n']:,} x {ds['dim']}, {ds['queries']} queries, k={args.k}; "
        f"{args.bands} bands x {args.rows} rows for both, seed {args.seed}; one "
        f"redis-server {res.get('redis_version', '?')} (no persistence) on loopback, flushed "
        "between runs; one process; hiredis "
        + ("installed" if res.get("hiredis") else "not installed") + ".",
        "",
    ]
    if ing:
        lines += [
            "## Ingest",
            "",
            "| | vectors/s | Redis bytes / vector (used_memory growth) | keys |",
            "|---|---:|---:|---:|",
            f"| lshrs `index()` | {ing['lshrs_vectors_per_s']:,.0f} | "
            f"{ing['lshrs_bytes_per_vector']:,.0f} | {ing['lshrs_keys']:,} |",
            f"| ours `add()` (one batch) | {ing['ours_vectors_per_s']:,.0f} | "
            f"{ing['ours_bytes_per_vector']:,.0f} | {ing['ours_keys']:,} |",
            f"| ours `add()` (batches of {ing['batch']:,}) | "
            f"{ing['ours_batched_vectors_per_s']:,.0f} | | |",
            "",
            f"Ingest ratio **{ing['ingest_ratio']:.1f}x** (batches: "
            f"{ing['ingest_ratio_batched']:.1f}x; bar >= 20x); memory per vector "
            f"{ing['memory_ratio']:.1f}x smaller. Our keys' `MEMORY USAGE` (sampled by "
            f"`stats()`): {ing['ours_stats']['memory_per_row']:.0f} B/vector; "
            f"{ing['ours_stats']['bucket_count']:,} buckets, mean "
            f"{ing['ours_stats']['bucket_size']['mean']:.1f} members.",
            "",
        ]
    if top:
        lines += [
            "## Top-k by band collisions (no rerank), num_probes=0 for both",
            "",
            "| | queries/s | recall@10 |",
            "|---|---:|---:|",
            f"| lshrs `get_top_k` (one query a call) | {top['lshrs_qps']:,.0f} | "
            f"{top['lshrs_recall']:.3f} |",
            f"| ours, all queries in one call | {top['ours_batched_qps']:,.0f} | "
            f"{top['ours_recall']:.3f} |",
            f"| ours, one query a call | {top['ours_single_qps']:,.0f} | |",
            "",
            f"Query ratio **{top['qps_ratio_batched']:.1f}x** batched (bar >= 10x), "
            f"{top['qps_ratio_single']:.1f}x one query a call.",
            "",
        ]
    if rr:
        lines += [
            "## Reranked by exact cosine, equal candidate counts",
            "",
            f"lshrs `get_above_p(p=1.0)` reranks all of each query's candidates "
            f"(mean {rr['candidates_mean']:.0f}, median {rr['candidates_median']:.0f}); ours "
            "reranks the same number per query (`rerank=N_q`), chosen by collision count.",
            "",
            "| | recall@10 | queries/s (one a call) | batched q/s (rerank=median) |",
            "|---|---:|---:|---:|",
            f"| lshrs `get_above_p` | {rr['lshrs_recall']:.3f} | {rr['lshrs_qps']:,.0f} | |",
        ]
        for key, val in rr.items():
            if key.startswith("ours_probes") and "single_qps" in val:
                lines.append(
                    f"| ours, num_probes={key[len('ours_probes'):]} | {val['recall']:.3f} | "
                    f"{val['single_qps']:,.0f} | {val['batched_qps_rerank_median']:,.0f} "
                    f"(recall {val['batched_recall_rerank_median']:.3f}) |")
        own = rr.get("ours_probes0_all_candidates")
        if own:
            lines += [
                "",
                f"Our own buckets at num_probes=0 hold {own['candidates_mean']:.0f} candidates "
                f"a query and reach recall {own['recall']:.3f} when all are reranked. With "
                "`rerank=N_q` a query reranks min(ours, lshrs') candidates (mean "
                f"{own['mean_min_with_lshrs']:.0f}): {own['queries_with_more_than_lshrs']:.0%} "
                "of the queries are cut to lshrs' count, the others keep fewer, so at the same "
                "parameters ours lands a little below; multi-probe fills the same budget with "
                "better candidates.",
            ]
        lines.append("")
    seeds = res.get("seeds")
    if seeds:
        lines += [
            f"At seeds {', '.join(seeds['per_seed'])} (recall@10, rerank = lshrs' candidate "
            "count per query):",
            "",
            "| seed | lshrs get_above_p | ours, num_probes=0 | ours, num_probes="
            f"{args.probes} |",
            "|---|---:|---:|---:|",
        ]
        for seed, v in [*seeds["per_seed"].items(), ("mean", seeds["mean"])]:
            lines.append(f"| {seed} | {v['lshrs']:.3f} | {v['ours_probes0']:.3f} | "
                         f"{v[f'ours_probes{args.probes}']:.3f} |")
        lines.append("")
    if res.get("errors"):
        lines += ["## Errors", ""] + [f"- {k}: {v}" for k, v in res["errors"].items()] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the sections, print the markdown and write ``redis_lsh.{json,md}``."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("data", nargs="?", default=str(DEV) if DEV.is_dir() else "sample")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--bands", type=int, default=16)
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--probes", type=int, default=4)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--extra-seeds", type=lambda v: [int(t) for t in v.split(",") if t],
                   default=[0, 1, 2], help="seeds of the reranked comparison repeated")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    try:
        import lshrs  # noqa: F401
        import redis
    except ImportError as e:
        print(f"needs the bench extra (lshrs, redis): {e}", file=sys.stderr)
        return 2
    ds = load_dataset(args.data, num_queries=args.queries, gt_k=max(args.k, 100))
    res: dict[str, Any] = {
        "dataset": {"name": ds.name, "n": int(ds.base.shape[0]), "dim": int(ds.base.shape[1]),
                    "queries": int(ds.queries.shape[0]), "metric": "cosine"},
        "args": vars(args),
        "source": source_fingerprint(SOURCES),
        "environment": environment_info(),
        "versions": {"lshrs": getattr(__import__("lshrs"), "__version__", None),
                     "redis-py": redis.__version__},
        "hiredis": _has_hiredis(),
        "loadavg": {"start": os.getloadavg()},
        "errors": {},
    }
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vecindex-redis-bench-") as tmp:
        server = start_redis(tmp, appendonly=False)
        try:
            r = redis.Redis.from_url(server.uri)
            res["redis_version"] = r.info("server")["redis_version"]
            with pinned_threads(args.threads):
                log("warm-up (512 rows, both sides)")
                warm_up(ds, args, server.uri, r)
                log("ingest")
                res["ingest"] = section_ingest(ds, args, server.uri, r)
                log("build both for the queries")
                peer, ours = build_both(ds, args, server.uri, r)
                log("top-k")
                res["topk"] = section_topk(ds, args, peer, ours)
                log("rerank")
                res["rerank"] = section_rerank(ds, args, peer, ours)
                if args.extra_seeds:
                    log(f"rerank at seeds {args.extra_seeds}")
                    res["seeds"] = section_seeds(ds, args, server.uri, r)
        finally:
            server.stop()
    res["elapsed_s"] = time.perf_counter() - t0
    res["loadavg"]["end"] = os.getloadavg()
    res["source_changed_on_disk_during_run"] = source_fingerprint(SOURCES) != res["source"]
    md = to_markdown(res, args)
    print(md)
    write_results(args.out, "redis_lsh", res, md)
    return 0


def _has_hiredis() -> bool:
    try:
        import hiredis  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
