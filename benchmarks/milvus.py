"""``MilvusCollection`` against bare pymilvus calls on the same Milvus server, in one run.

Usage (from the repository root, with ``vecindex[milvus,bench]`` and ``milvus==2.3.5``)::

    flock /tmp/vecindex-bench.lock python benchmarks/milvus.py [DATA] [--queries N]
        [--configs hnsw,ivf] [--deployments server,lite] [--strong-queries N]

``DATA`` defaults to ``../shared/data/dev`` (20,000 x 384 unit-norm MiniLM embeddings of
WordNet passages with their texts, 500 queries); ``k = 10``, metric ``COSINE`` on both
sides. One real standalone Milvus 2.3.5 (PyPI ``milvus``, started with
:func:`vecindex_core.testing.start_milvus` on free loopback ports) and, as a second,
separately labelled section, embedded milvus-lite.

Every document is ``(id, text, metadata, vector)`` with the dataset's string id
(``"wn:noun:10411163"``), its text and the metadata ``{"source", "pos", "category",
"length"}``; ``category`` is ``"cat-NN"`` with ``NN = row % 100``, so the filter
``category == "cat-07"`` matches 1% of the documents.

Both sides use the same server, the same index type and parameters, the same metric, the same
consistency level and the same batch size:

- **ours**: :class:`vecindex_core.MilvusCollection` (``upsert``, ``search``, ``search_batch``
  returning ``Record``\\ s with text and metadata, the core filter dict translated by
  :func:`vecindex_core.milvus.expr.to_expr`);
- **bare**: a ``pymilvus.MilvusClient`` on a collection with the equivalent schema ``id``
  (VARCHAR primary key), ``text`` (VARCHAR), ``meta`` (JSON), ``vec`` (FLOAT_VECTOR),
  created, indexed and loaded the same way (``create_collection``, ``create_index``,
  ``load_collection`` before the first write), written with ``upsert`` (the same semantics
  as ours: replace by id) and with ``insert``, searched with
  ``output_fields=["text", "meta"]`` and the hand-written filter
  ``meta["category"] == "cat-07"``.
- **bare (our request)**: the bare client sending exactly the request ``search`` sends
  (our collection, our filter expression and output fields), to split the overhead into
  what the server does for our row layout and what our Python code does.

Measured per deployment and index configuration (HNSW ``M=16, efConstruction=200``,
``ef=64``; IVF_FLAT ``nlist=128``, ``nprobe=16``):

1. Insert throughput: all documents in batches of 1,000, batches alternated between the
   sides; building the rows from the same inputs is part of the bare time. "Ready to
   query": ``flush`` then waiting until the index covers every row (server: ``indexed_rows
   == total_rows`` and every loaded segment sealed with its index; lite: its build thread
   drained), reported separately, as is the collection creation.
2. Single-query latency p50/p95 (every query once, sequential, the two sides alternated
   query by query, first one side then the other; also the median of the per-query
   differences, and the calling thread's CPU time, which is the client's share: our code,
   pymilvus and gRPC) and batched queries/s (all queries in one call, best of 5,
   alternated), unfiltered and with the 1% filter; recall@10 against exact top-10
   computed with numpy (restricted to the filter for the filtered search) and whether
   every query got exactly k results.
3. The consistency level: the main runs use ``"Session"`` on both sides; a short run at
   ``"Strong"`` (the Collection's default) shows what that level costs on Milvus 2.3.
4. A cProfile of our single-query search splitting the time into the pymilvus call and
   our own Python work (server only).

milvus-lite evaluates JSON filters in Python over every row (about a second a filtered
query on 20,000 documents), so its section runs HNSW only, on ``--lite-queries`` (40)
queries.

Writes ``milvus.{json,md}`` to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import json
import pstats
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vecindex_core._threads import one_blas_thread
from vecindex_core.bench.env import environment_info
from vecindex_core.bench.timing import best_of_pair, json_default, log, source_fingerprint
from vecindex_core.bench.timing import write_results as _write_results

SOURCES = ["milvus/*.py", "documents.py", "testing/servers.py"]
HERE = Path(__file__).resolve().parent
DEV = HERE.parents[1] / "shared" / "data" / "dev"
K = 10
BATCH = 1000
LEVEL = "Session"
CATEGORY = "cat-07"
OUR_FILTER = {"field": "meta.category", "operator": "==", "value": CATEGORY}
BARE_FILTER = f'meta["category"] == "{CATEGORY}"'
#: name -> (MilvusCollection index spec, Milvus index type, build params, search knobs)
CONFIGS: dict[str, tuple[str, str, dict[str, int], dict[str, int]]] = {
    "hnsw": ("HNSW(M=16,efConstruction=200)", "HNSW", {"M": 16, "efConstruction": 200},
             {"ef": 64}),
    "ivf": ("IVF_FLAT(nlist=128)", "IVF_FLAT", {"nlist": 128}, {"nprobe": 16}),
    "flat": ("FLAT", "FLAT", {}, {}),
}


# --------------------------------------------------------------------------- data
class Docs:
    """The documents and queries, with exact ground truth."""

    def __init__(self, data: str, nq: int) -> None:
        root = Path(data)
        self.x = np.load(root / "base.npy").astype(np.float32)
        self.x /= np.linalg.norm(self.x, axis=1, keepdims=True)
        q = np.load(root / "queries.npy").astype(np.float32)[:nq]
        self.q = q / np.linalg.norm(q, axis=1, keepdims=True)
        rows = [json.loads(line) for line in (root / "base_texts.jsonl").read_text().splitlines()]
        if len(rows) != self.x.shape[0]:
            raise ValueError(f"{root}: {len(rows)} texts for {self.x.shape[0]} vectors")
        self.ids = [str(r["id"]) for r in rows]
        self.texts = [str(r["text"]) for r in rows]
        self.metas = [
            {"source": str(r.get("source", "")), "pos": str(r["id"]).split(":")[1]
             if str(r["id"]).count(":") >= 2 else "", "category": f"cat-{i % 100:02d}",
             "length": len(r["text"])}
            for i, r in enumerate(rows)
        ]
        self.row_of = {s: i for i, s in enumerate(self.ids)}
        self.mask = np.array([m["category"] == CATEGORY for m in self.metas])
        s = self.q @ self.x.T
        self.truth = np.argsort(-s, axis=1, kind="stable")[:, :K]
        s[:, ~self.mask] = -np.inf
        self.truth_f = np.argsort(-s, axis=1, kind="stable")[:, :K]

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def dim(self) -> int:
        return int(self.x.shape[1])


def recall(found: Sequence[Sequence[int]], truth: np.ndarray) -> float:
    """Mean ``|found ∩ truth| / k`` over queries."""
    return float(np.mean([len(set(f) & set(t.tolist())) / K
                          for f, t in zip(found, truth, strict=True)]))


def pct(lat_s: Sequence[float]) -> dict[str, float]:
    a = np.asarray(lat_s) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "mean_ms": float(a.mean()), "n": int(a.size)}


# --------------------------------------------------------------------------- bare side
def bare_create(client: Any, name: str, dim: int, index_type: str,
                build: dict[str, int]) -> None:
    """The equivalent schema, created, indexed and loaded as MilvusCollection does."""
    from pymilvus import DataType

    if client.has_collection(name):
        client.drop_collection(name)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=65535)
    schema.add_field("text", DataType.VARCHAR, max_length=65535)
    schema.add_field("meta", DataType.JSON)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=dim)
    client.create_collection(name, schema=schema, consistency_level=LEVEL)
    ip = client.prepare_index_params()
    # nested params: the form both Milvus 2.3.5 and milvus-lite read (see client.index_params)
    ip.add_index("vec", index_type=index_type, metric_type="COSINE", params={"params": build})
    client.create_index(name, ip, sync=False)
    client.load_collection(name)


def bare_rows(d: Docs, lo: int, hi: int) -> list[dict[str, Any]]:
    return [{"id": d.ids[i], "text": d.texts[i], "meta": d.metas[i], "vec": d.x[i].tolist()}
            for i in range(lo, hi)]


def consume(res: Any) -> list[list[tuple[Any, float, Any, Any]]]:
    """What a caller of a bare search needs from each hit: id, distance, text, metadata.

    pymilvus decodes JSON fields (``meta``) lazily, on the first access to a query's hits;
    reading them here charges the bare side the decoding our Records pay for.
    """
    return [[(h["id"], h["distance"], h["entity"].get("text"), h["entity"].get("meta"))
             for h in hits] for hits in res]


def wait_ready(client: Any, name: str, n: int, lite: bool, timeout: float = 600.0) -> None:
    """flush, then wait until the vector index covers all ``n`` rows and is what is loaded."""
    from vecindex_core.milvus.client import flush

    flush(client, name, lite=lite)  # lite: also drains its index build thread
    if lite:
        return
    deadline = time.monotonic() + timeout
    index = client.list_indexes(name)[0]
    while True:
        info = client.describe_index(name, index)
        done = info.get("indexed_rows") == info.get("total_rows") == n
        if done:
            segs = client.list_loaded_segments(name)
            done = (sum(s.num_rows for s in segs) == n
                    and all(s.index_name and s.state_name == "Sealed" for s in segs))
        if done:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: index not ready after {timeout} s: {info}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- timing
class Paired:
    """Wall times, calling-thread CPU times and results of two alternated callables."""

    def __init__(self, a: Callable[[int], Any], b: Callable[[int], Any], nq: int) -> None:
        """Each index once through ``a`` and ``b``, alternating which goes first.

        The CPU time is the calling thread's (``time.thread_time``): the client's own work
        (our code, pymilvus, gRPC serialisation), not the server's, even for milvus-lite,
        whose server runs in other threads of this process.
        """
        self.ta: list[float] = []
        self.tb: list[float] = []
        self.ca: list[float] = []
        self.cb: list[float] = []
        self.ra: list[Any] = []
        self.rb: list[Any] = []
        sides = ((a, self.ta, self.ca, self.ra), (b, self.tb, self.cb, self.rb))
        for i in range(nq):
            for fn, times, cpu, results in sides if i % 2 == 0 else sides[::-1]:
                c0 = time.thread_time()
                t0 = time.perf_counter()
                out = fn(i)
                times.append(time.perf_counter() - t0)
                cpu.append(time.thread_time() - c0)
                results.append(out)


def profile_ours(search: Callable[[int], Any], nq: int) -> dict[str, Any]:
    """cProfile of ``nq`` single searches: total, inside pymilvus's search, the rest."""
    prof = cProfile.Profile()
    prof.enable()
    for i in range(nq):
        search(i)
    prof.disable()
    st = pstats.Stats(prof)
    stats: dict[Any, Any] = st.stats  # type: ignore[attr-defined]
    total = rpc = 0.0
    for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.items():
        if func == "search_batch" and file.endswith("milvus/collection.py"):
            total = max(total, ct)
        if func == "search" and file.endswith("milvus_client/milvus_client.py"):
            rpc = max(rpc, ct)
    rows = sorted(((ct, tt, nc, f"{Path(file).name}:{line}({func})")
                   for (file, line, func), (_cc, nc, tt, ct, _c) in stats.items()
                   if "vecindex_core" in file),
                  reverse=True)[:12]
    return {
        "queries": nq, "total_ms_per_query": 1e3 * total / nq,
        "pymilvus_search_ms_per_query": 1e3 * rpc / nq,
        "ours_outside_pymilvus_ms_per_query": 1e3 * (total - rpc) / nq,
        "top_vecindex_functions": [
            {"function": name, "cumulative_ms_per_query": 1e3 * ct / nq,
             "own_ms_per_query": 1e3 * tt / nq, "calls": nc}
            for ct, tt, nc, name in rows
        ],
    }


# --------------------------------------------------------------------------- one run
def run_config(d: Docs, uri: str, lite: bool, cfg: str, queries: int, strong_queries: int,
               profile_queries: int) -> dict[str, Any]:
    from pymilvus import MilvusClient

    from vecindex_core import MilvusCollection

    spec, itype, build, knobs = CONFIGS[cfg]
    milvus_knobs = {"ef": "ef", "nprobe": "nprobe"}
    bare_sp = {"params": {milvus_knobs[k]: v for k, v in knobs.items()}}
    nq, n = min(queries, d.q.shape[0]), d.n
    out: dict[str, Any] = {"index": spec, "search_params": knobs, "consistency_level": LEVEL,
                           "n_queries": nq}
    names = {"ours": f"bench_ours_{cfg}", "bare_upsert": f"bench_bare_up_{cfg}",
             "bare_insert": f"bench_bare_in_{cfg}"}
    client = MilvusClient(uri=uri)
    for nm in names.values():
        if client.has_collection(nm):
            client.drop_collection(nm)

    # ---- create
    t0 = time.perf_counter()
    ours = MilvusCollection(uri, collection_name=names["ours"], index=spec, metric="cosine",
                            dim=d.dim, consistency_level=LEVEL)
    create = {"ours": time.perf_counter() - t0}
    for side in ("bare_upsert", "bare_insert"):
        t0 = time.perf_counter()
        bare_create(client, names[side], d.dim, itype, build)
        create[side] = time.perf_counter() - t0
    out["create_s"] = create

    # ---- insert, batches alternated (rotating which side goes first)
    def w_ours(lo: int, hi: int) -> None:
        ours.upsert(d.ids[lo:hi], d.texts[lo:hi], d.x[lo:hi], d.metas[lo:hi])

    def w_up(lo: int, hi: int) -> None:
        client.upsert(names["bare_upsert"], bare_rows(d, lo, hi))

    def w_in(lo: int, hi: int) -> None:
        client.insert(names["bare_insert"], bare_rows(d, lo, hi))

    writers = [("ours", w_ours), ("bare_upsert", w_up), ("bare_insert", w_in)]
    wt: dict[str, list[float]] = {s: [] for s, _ in writers}
    for b, lo in enumerate(range(0, n, BATCH)):
        hi = min(lo + BATCH, n)
        for j in range(3):
            side, fn = writers[(b + j) % 3]
            t0 = time.perf_counter()
            fn(lo, hi)
            wt[side].append(time.perf_counter() - t0)
    out["insert"] = {s: {"s": sum(t), "docs_per_s": n / sum(t), "batch_ms": pct(t)}
                     for s, t in wt.items()}
    ready: dict[str, float] = {}
    t0 = time.perf_counter()
    ours.flush()
    wait_ready(ours.client, names["ours"], n, lite)
    ready["ours"] = time.perf_counter() - t0
    for side in ("bare_upsert", "bare_insert"):
        t0 = time.perf_counter()
        wait_ready(client, names[side], n, lite)
        ready[side] = time.perf_counter() - t0
    out["ready_s"] = ready
    if len(ours) != n or client.query(names["bare_upsert"], filter='id != ""',
                                      output_fields=["count(*)"])[0]["count(*)"] != n:
        raise RuntimeError("a collection does not hold every document")
    client.drop_collection(names["bare_insert"])
    log(f"  [{cfg}] insert docs/s: " + ", ".join(
        f"{s} {v['docs_per_s']:.0f}" for s, v in out["insert"].items())
        + "; ready s: " + ", ".join(f"{s} {v:.1f}" for s, v in ready.items()))

    # ---- queries
    ql = d.q[:nq].tolist()
    bare_name = names["bare_upsert"]
    # what MilvusCollection.search sends first (no has_vec filter; see search_batch)
    our_fields = ["id", "text", "has_text", "meta", "has_vec"]
    our_plain = ""
    our_filtered = ours._filter_expr(OUR_FILTER)

    def o_search(i: int, flt: Any = None) -> list[int]:
        hits = ours.search(d.q[i], k=K, filter=flt, params=knobs)
        return [d.row_of[h.record.id] for h in hits]

    def b_search(i: int, expr: str = "", name: str = bare_name,
                 fields: Sequence[str] = ("text", "meta")) -> list[int]:
        res = client.search(name, data=[ql[i]], limit=K, filter=expr,
                            output_fields=list(fields), search_params=bare_sp,
                            anns_field="vec", consistency_level=LEVEL)
        return [d.row_of[h[0]] for h in consume(res)[0]]

    for i in range(min(20, nq)):  # warm-up, not timed
        o_search(i)
        b_search(i)
        o_search(i, OUR_FILTER)
        b_search(i, BARE_FILTER)
    q_out: dict[str, Any] = {}
    for label, flt, bexpr, oexpr, truth in (
        ("unfiltered", None, "", our_plain, d.truth[:nq]),
        ("filtered_1pct", OUR_FILTER, BARE_FILTER, our_filtered, d.truth_f[:nq]),
    ):
        def ours_i(i: int, f: Any = flt) -> list[int]:
            return o_search(i, f)

        def bare_i(i: int, e: str = bexpr) -> list[int]:
            return b_search(i, e)

        def ours_request_i(i: int, e: str = oexpr) -> list[int]:
            return b_search(i, e, names["ours"], our_fields)

        main = Paired(ours_i, bare_i, nq)
        ta, tb, ra, rb = main.ta, main.tb, main.ra, main.rb
        req = Paired(ours_request_i, lambda i: None, nq)
        tr, rr = req.ta, req.ra
        row: dict[str, Any] = {
            "ours": {**pct(ta), "recall": recall(ra, truth),
                     "exactly_k": all(len(r) == K for r in ra)},
            "bare": {**pct(tb), "recall": recall(rb, truth),
                     "exactly_k": all(len(r) == K for r in rb),
                     "short_queries": sum(len(r) < K for r in rb)},
            "bare_our_request": {**pct(tr), "recall": recall(rr, truth),
                                 "exactly_k": all(len(r) == K for r in rr)},
        }
        if flt is not None:
            allowed = all(bool(d.mask[j]) for r in ra + rb for j in r)
            row["all_results_match_filter"] = allowed
        diff = np.asarray(ta) - np.asarray(tb)
        row["paired_diff_ms"] = {"median": float(np.median(diff) * 1e3),
                                 "mean": float(diff.mean() * 1e3)}
        row["paired_overhead_pct"] = 100 * float(np.median(diff)) / float(np.median(tb))
        cdiff = np.asarray(main.ca) - np.asarray(main.cb)
        row["client_cpu_ms"] = {
            "ours_p50": float(np.median(main.ca) * 1e3),
            "bare_p50": float(np.median(main.cb) * 1e3),
            "bare_our_request_p50": float(np.median(req.ca) * 1e3),
            "paired_diff_median": float(np.median(cdiff) * 1e3),
        }
        row["p50_ratio"] = row["ours"]["p50_ms"] / row["bare"]["p50_ms"]
        row["p95_ratio"] = row["ours"]["p95_ms"] / row["bare"]["p95_ms"]
        row["overhead_pct"] = 100 * (row["p50_ratio"] - 1)

        def o_batch(f: Any = flt) -> Any:
            return ours.search_batch(d.q[:nq], k=K, filter=f, params=knobs)

        def b_batch(e: str = bexpr) -> Any:
            return consume(client.search(bare_name, data=ql, limit=K, filter=e,
                                         output_fields=["text", "meta"],
                                         search_params=bare_sp, anns_field="vec",
                                         consistency_level=LEVEL))

        bo, bb = best_of_pair(o_batch, b_batch, 5)
        row["batched"] = {"ours_qps": nq / min(bo), "bare_qps": nq / min(bb),
                          "qps_ratio": min(bb) / min(bo), "ours_s": bo, "bare_s": bb}
        q_out[label] = row
        log(f"  [{cfg}] {label}: p50 ours {row['ours']['p50_ms']:.2f} ms / bare "
            f"{row['bare']['p50_ms']:.2f} ms = {row['p50_ratio']:.3f}x (p95 "
            f"{row['p95_ratio']:.3f}x; paired median diff "
            f"{row['paired_diff_ms']['median']:+.2f} ms, client CPU "
            f"{row['client_cpu_ms']['paired_diff_median']:+.2f} ms; bare with our request "
            f"{row['bare_our_request']['p50_ms']:.2f} ms); recall ours "
            f"{row['ours']['recall']:.4f} bare {row['bare']['recall']:.4f}; "
            f"batched qps ours {row['batched']['ours_qps']:.0f} bare "
            f"{row['batched']['bare_qps']:.0f} ({row['batched']['qps_ratio']:.3f}x)")
    out["queries"] = q_out

    # ---- the Collection's default consistency level, on the server
    if strong_queries and not lite:
        strong = MilvusCollection(uri, collection_name=names["ours"],
                                  consistency_level="Strong")
        try:
            m = min(strong_queries, nq)

            def s_ours(i: int) -> Any:
                return strong.search(d.q[i], k=K, params=knobs)

            def s_bare(i: int) -> Any:
                return consume(client.search(bare_name, data=[ql[i]], limit=K,
                                             output_fields=["text", "meta"],
                                             search_params=bare_sp, anns_field="vec",
                                             consistency_level="Strong"))

            strong_pair = Paired(s_ours, s_bare, m)
            sa, sb = strong_pair.ta, strong_pair.tb
            out["strong"] = {"ours": pct(sa), "bare": pct(sb),
                             "p50_ratio": float(np.median(sa) / np.median(sb))}
            log(f"  [{cfg}] Strong: p50 ours {out['strong']['ours']['p50_ms']:.1f} ms, bare "
                f"{out['strong']['bare']['p50_ms']:.1f} ms")
        finally:
            strong.close()

    if profile_queries and not lite:  # lite's filtered searches take seconds: no profile
        out["profile_unfiltered"] = profile_ours(lambda i: ours.search(d.q[i], k=K,
                                                                       params=knobs),
                                                 min(profile_queries, nq))
        out["profile_filtered"] = profile_ours(
            lambda i: ours.search(d.q[i], k=K, filter=OUR_FILTER, params=knobs),
            min(profile_queries, nq))
    ours.client.drop_collection(names["ours"])
    ours.close()
    client.drop_collection(bare_name)
    client.close()
    return out


# --------------------------------------------------------------------------- report
def markdown(res: dict[str, Any]) -> str:
    lines = [
        "# MilvusCollection vs bare pymilvus", "",
        f"`{res['data']}`: {res['n']} x {res['dim']}, {res['queries']} queries, k={K}, "
        f"COSINE, batches of {BATCH}, consistency level `{LEVEL}` on both sides "
        f"(the Collection's default is `{res['collection_default_consistency']}`, see "
        "below); the filter `category == \"cat-07\"` matches "
        f"{res['filter_matches']} documents (1%). pymilvus {res['pymilvus']}; elapsed "
        f"{res['elapsed_s']:.0f} s.", "",
        "ours = `MilvusCollection.upsert`/`search`/`search_batch` (Records with text and "
        "metadata; core filter dict); bare = `MilvusClient.upsert`/`insert`/`search` on the "
        "equivalent schema (id, text, meta JSON, vec) with `output_fields=[\"text\", "
        "\"meta\"]` and the hand-written filter `meta[\"category\"] == \"cat-07\"`; bare "
        "(our request) = the bare client sending exactly our search request (our collection, "
        "the translated filter, our output fields).", "",
    ]
    for dep, section in res["deployments"].items():
        lines += [f"## {dep}: {section['label']}", ""]
        if "error" in section:
            lines += [f"Failed: `{section['error']}`", ""]
            continue
        for r in section["configs"].values():
            ins = r["insert"]
            lines += [
                f"### {r['index']}, search params {r['search_params']}, "
                f"{r['n_queries']} queries", "",
                "| side | insert docs/s | insert / ours | batch p50 ms | create s | "
                "ready to query s |",
                "|---|---|---|---|---|---|",
            ]
            for side in ("ours", "bare_upsert", "bare_insert"):
                lines.append(
                    f"| {side} | {ins[side]['docs_per_s']:.0f} | "
                    f"{ins[side]['docs_per_s'] / ins['ours']['docs_per_s']:.2f}x | "
                    f"{ins[side]['batch_ms']['p50_ms']:.1f} | {r['create_s'][side]:.2f} | "
                    f"{r['ready_s'][side]:.1f} |")
            lines += [
                "",
                "Insert: ours takes "
                f"{ins['bare_upsert']['docs_per_s'] / ins['ours']['docs_per_s']:.2f}x "
                "the time of bare upsert and "
                f"{ins['bare_insert']['docs_per_s'] / ins['ours']['docs_per_s']:.2f}x that of "
                "bare insert.", "",
                "| query | side | p50 ms | p95 ms | recall@10 | exactly k | batched q/s |",
                "|---|---|---|---|---|---|---|",
            ]
            for label, q in r["queries"].items():
                for side in ("ours", "bare", "bare_our_request"):
                    s = q[side]
                    qps = {"ours": q["batched"]["ours_qps"],
                           "bare": q["batched"]["bare_qps"]}.get(side)
                    lines.append(
                        f"| {label} | {side} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} | "
                        f"{s['recall']:.4f} | {s['exactly_k']} | "
                        f"{'' if qps is None else f'{qps:.0f}'} |")
            lines.append("")
            for label, q in r["queries"].items():
                verdict = "meets" if q["p50_ratio"] <= 1.2 else "MISSES"
                lines.append(
                    f"- {label}: ours / bare p50 {q['p50_ratio']:.3f}x (overhead "
                    f"{q['overhead_pct']:+.1f}%, {verdict} the <= 20% bar; median of the "
                    f"per-query differences {q['paired_diff_ms']['median']:+.2f} ms = "
                    f"{q['paired_overhead_pct']:+.1f}%, of which client CPU "
                    f"{q['client_cpu_ms']['paired_diff_median']:+.2f} ms: ours "
                    f"{q['client_cpu_ms']['ours_p50']:.2f} ms vs bare "
                    f"{q['client_cpu_ms']['bare_p50']:.2f} ms and "
                    f"{q['client_cpu_ms']['bare_our_request_p50']:.2f} ms for our request "
                    "sent bare), p95 "
                    f"{q['p95_ratio']:.3f}x, batched q/s {q['batched']['qps_ratio']:.3f}x of "
                    "bare" + (f"; every result matches the filter: "
                              f"{q['all_results_match_filter']}; bare short queries: "
                              f"{q['bare']['short_queries']}"
                              if "all_results_match_filter" in q else ""))
            if "strong" in r:
                st = r["strong"]
                lines.append(
                    f"- At `Strong` ({st['ours']['n']} single queries each): p50 ours "
                    f"{st['ours']['p50_ms']:.1f} ms, bare {st['bare']['p50_ms']:.1f} ms "
                    f"({st['p50_ratio']:.3f}x): the wait for the guarantee timestamp "
                    "dominates both.")
            for label in ("profile_unfiltered", "profile_filtered"):
                if label in r:
                    p = r[label]
                    lines.append(
                        f"- cProfile ({label[8:]}, {p['queries']} queries): "
                        f"{p['total_ms_per_query']:.2f} ms a query, of which "
                        f"{p['pymilvus_search_ms_per_query']:.2f} ms in pymilvus's search "
                        f"and {p['ours_outside_pymilvus_ms_per_query']:.2f} ms in our code "
                        "(profiled, so inflated).")
            lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("data", nargs="?", default=str(DEV))
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--configs", default="hnsw,ivf")
    ap.add_argument("--deployments", default="server,lite")
    ap.add_argument("--lite-queries", type=int, default=40,
                    help="queries on milvus-lite (its filtered searches are slow)")
    ap.add_argument("--lite-configs", default="hnsw")
    ap.add_argument("--strong-queries", type=int, default=20)
    ap.add_argument("--profile-queries", type=int, default=100)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    lite_configs = [c.strip() for c in args.lite_configs.split(",") if c.strip()]
    bad = [c for c in configs + lite_configs if c not in CONFIGS]
    if bad:
        ap.error(f"unknown config(s) {bad}; valid: {sorted(CONFIGS)}")
    deployments = [x.strip() for x in args.deployments.split(",") if x.strip()]
    if any(x not in ("server", "lite") for x in deployments):
        ap.error(f"--deployments takes server and/or lite, got {args.deployments!r}")

    import pymilvus

    from vecindex_core import MilvusCollection
    from vecindex_core.testing import start_milvus

    start = time.perf_counter()
    d = Docs(args.data, args.queries)
    default_level = inspect.signature(MilvusCollection).parameters[
        "consistency_level"].default
    res: dict[str, Any] = {
        "data": args.data, "n": d.n, "dim": d.dim, "queries": int(d.q.shape[0]), "k": K,
        "batch": BATCH, "consistency_level": LEVEL,
        "collection_default_consistency": default_level,
        "filter": {"ours": OUR_FILTER, "bare": BARE_FILTER},
        "filter_matches": int(d.mask.sum()), "pymilvus": pymilvus.__version__,
        "env": environment_info(), "sources": source_fingerprint(SOURCES),
        "deployments": {},
    }
    log(f"{args.data}: {d.n} x {d.dim}, {d.q.shape[0]} queries, filter matches "
        f"{int(d.mask.sum())} documents")
    tmp = Path(tempfile.mkdtemp(prefix="vecindex-milvus-bench-"))
    try:
        with one_blas_thread():
            for dep in deployments:
                section: dict[str, Any] = {"configs": {}}
                res["deployments"][dep] = section
                server = None
                try:
                    if dep == "server":
                        t0 = time.perf_counter()
                        server = start_milvus(tmp / "server")
                        uri = server.uri
                        section["server_start_s"] = time.perf_counter() - t0
                    else:
                        uri = str(tmp / "lite.db")
                    from pymilvus import MilvusClient

                    c = MilvusClient(uri=uri)
                    version = str(c.get_server_version())
                    c.close()
                    section["label"] = (
                        f"standalone Milvus server {version} (PyPI milvus 2.3.5) on loopback"
                        if dep == "server" else f"embedded milvus-lite ({version}), same "
                        "process")
                    section["server_version"] = version
                    log(f"{dep}: {section['label']}")
                    lite = dep == "lite"
                    for cfg in lite_configs if lite else configs:
                        section["configs"][cfg] = run_config(
                            d, uri, lite, cfg, args.lite_queries if lite else args.queries,
                            args.strong_queries, args.profile_queries)
                except Exception as e:  # report the failure, keep the other section
                    section["error"] = f"{type(e).__name__}: {e}"
                    section.setdefault("label", dep)
                    log(f"{dep} failed: {section['error']}")
                finally:
                    if server is not None:
                        server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["elapsed_s"] = time.perf_counter() - start
    _write_results(args.out, "milvus", res, markdown(res))
    print(json.dumps({dep: {cfg: {q: {"p50_ratio": v["p50_ratio"],
                                      "qps_ratio": v["batched"]["qps_ratio"]}
                                  for q, v in r["queries"].items()}
                            for cfg, r in s.get("configs", {}).items()}
                      for dep, s in res["deployments"].items()}, indent=1,
                     default=json_default))


if __name__ == "__main__":
    main()
