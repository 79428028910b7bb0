"""Collection and LangChain adapter against turbovec's LangChain store and ``InMemoryVectorStore``.

Usage (from the repository root, with ``vecindex[adapters,bench]`` installed)::

    flock /tmp/vecindex-bench.lock python benchmarks/collection.py [DATA] [--queries N]

``DATA`` defaults to ``../shared/data/dev`` (20,000 x 384 MiniLM embeddings, 500 queries);
``k = 10``, cosine, one process, one BLAS thread. Every document gets the metadata
``{"pos": <part of speech>, "bucket": row % 100}``; the filter ``bucket == 7`` matches 1% of
the documents. Embeddings are precomputed: the stores get an ``Embeddings`` that looks the
vectors up, so embedding cost is the same (nil) for every store.

Measured, per store (ours: ``flat`` and ``turboquant``; turbovec ``TurboQuantVectorStore``
4-bit; LangChain ``InMemoryVectorStore``):

1. ``add_texts`` of all documents with precomputed embeddings: documents/s.
2. ``similarity_search_by_vector`` median latency (µs) unfiltered and with the 1% filter
   (ours and turbovec take the dict filter; ``InMemoryVectorStore`` takes the equivalent
   callable, the only filter it accepts); whether the filtered top-10 equals the true
   filtered top-10; recall@10 of the unfiltered search against exact search.
3. Adapter overhead: our LangChain search against the bare ``IdMapIndex.search`` plus the
   same SQLite fetch of the hit documents, on the same collection.

Writes ``collection.{json,md}`` to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vecindex_core._threads import one_blas_thread
from vecindex_core.bench.env import environment_info
from vecindex_core.bench.timing import json_default, log, source_fingerprint, write_results
from vecindex_core.datasets import load_dataset

SOURCES = ["collection.py", "filters.py", "idmap.py", "flat.py", "turboquant.py"]
HERE = Path(__file__).resolve().parent
DEV = HERE.parents[1] / "shared" / "data" / "dev"
K = 10


class TableEmbeddings:
    """LangChain ``Embeddings`` over precomputed vectors, looked up by text."""

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self.table = {t: v for t, v in zip(texts, vectors.tolist(), strict=True)}

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.table[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.table[text]


def latency_us(fn: Callable[[np.ndarray], Any], queries: np.ndarray) -> float:
    """Median single-query latency in µs (after one warm-up call)."""
    fn(queries[0])
    times = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


def exact_topk(x: np.ndarray, q: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    s = q @ x.T
    if mask is not None:
        s[:, ~mask] = -np.inf
    return np.argsort(-s, axis=1, kind="stable")[:, :K]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="?", default=str(DEV) if DEV.exists() else "sample")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()

    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import InMemoryVectorStore
    from turbovec.langchain import TurboQuantVectorStore

    from langchain_vecindex import VecIndexVectorStore

    ds = load_dataset(args.data)
    x = ds.base / np.linalg.norm(ds.base, axis=1, keepdims=True)
    q = ds.queries[: args.queries] / np.linalg.norm(ds.queries[: args.queries], axis=1,
                                                    keepdims=True)
    n = x.shape[0]
    texts = ds.base_texts or [f"doc {i}" for i in range(n)]
    texts = [f"{i}: {t}" for i, t in enumerate(texts)]  # unique, so the lookup table works
    ids = [f"doc-{i}" for i in range(n)]
    base_ids = []
    if args.data != "sample":
        rows = Path(args.data, "base_texts.jsonl").read_text().splitlines()
        base_ids = [json.loads(r)["id"] for r in rows]
    pos = [b.split(":")[1] if b.count(":") >= 2 else "noun" for b in base_ids] or ["noun"] * n
    metas = [{"pos": p, "bucket": i % 100} for i, p in enumerate(pos)]
    bucket = np.arange(n) % 100 == 7
    emb_cls = type("Table", (TableEmbeddings, Embeddings), {})
    emb = emb_cls(texts, x)
    truth = exact_topk(x, q)
    truth_f = exact_topk(x, q, bucket)
    log(f"{args.data}: {n} x {x.shape[1]}, {q.shape[0]} queries, filter matches "
        f"{int(bucket.sum())} documents")

    tmp = tempfile.mkdtemp(prefix="vecindex-bench-")
    stores: dict[str, Callable[[], Any]] = {
        "vecindex flat": lambda: VecIndexVectorStore(emb, path=f"{tmp}/flat.db", index="flat"),
        "vecindex turboquant": lambda: VecIndexVectorStore(
            emb, path=f"{tmp}/tq.db", index="turboquant(bits=4)"
        ),
        "turbovec 4-bit": lambda: TurboQuantVectorStore(emb, bit_width=4),
        "InMemoryVectorStore": lambda: InMemoryVectorStore(emb),
    }
    res: dict[str, Any] = {
        "data": args.data, "n": n, "dim": int(x.shape[1]), "queries": int(q.shape[0]), "k": K,
        "filter_matches": int(bucket.sum()), "env": environment_info(),
        "sources": source_fingerprint(SOURCES), "stores": {},
    }
    with one_blas_thread():
        for name, make in stores.items():
            store = make()
            t0 = time.perf_counter()
            store.add_texts(texts, metadatas=metas, ids=ids)
            add_s = time.perf_counter() - t0
            lc_filter: Any = (
                (lambda d: d.metadata["bucket"] == 7) if name == "InMemoryVectorStore"
                else {"bucket": 7}
            )

            def search(v: np.ndarray, flt: Any = None, store: Any = store) -> list[Document]:
                if flt is None:
                    return store.similarity_search_by_vector(v.tolist(), k=K)
                return store.similarity_search_by_vector(v.tolist(), k=K, filter=flt)

            got = [[int(d.id.split("-")[1]) for d in search(v)] for v in q]
            got_f = [[int(d.id.split("-")[1]) for d in search(v, lc_filter)] for v in q]
            recall = float(np.mean([len(set(g) & set(t)) / K for g, t in zip(got, truth,
                                                                             strict=True)]))
            exact_f = all(g == list(t) for g, t in zip(got_f, truth_f, strict=True))
            recall_f = float(np.mean([len(set(g) & set(t)) / K for g, t in zip(got_f, truth_f,
                                                                               strict=True)]))
            lat = latency_us(search, q)
            lat_f = latency_us(lambda v, s=search, f=lc_filter: s(v, f), q)
            row = {"add_docs_per_s": n / add_s, "add_s": add_s, "recall": recall,
                   "latency_us": lat, "filtered_latency_us": lat_f,
                   "filtered_over_unfiltered": lat_f / lat, "filtered_exact": exact_f,
                   "filtered_recall": recall_f}
            if name.startswith("vecindex"):
                coll = store.collection

                def bare(v: np.ndarray, coll: Any = coll) -> Any:
                    r = coll.index.search(v, K)
                    return coll._fetch([int(u) for u in r.ids[0]], False)

                row["bare_latency_us"] = latency_us(bare, q)
                row["adapter_over_bare"] = lat / row["bare_latency_us"]
            res["stores"][name] = row
            log(f"{name:22s} add {n / add_s:9.0f} docs/s  recall {recall:.3f}  "
                f"search {lat:8.1f} µs  filtered {lat_f:8.1f} µs ({lat_f / lat:.2f}x, exact "
                f"{exact_f}, recall {recall_f:.3f})"
                + (f"  bare {row['bare_latency_us']:.1f} µs "
                   f"(adapter {row['adapter_over_bare']:.2f}x)"
                   if "bare_latency_us" in row else ""))
            del store

    mem = res["stores"]["InMemoryVectorStore"]
    tv = res["stores"]["turbovec 4-bit"]
    lines = [
        "# Collection and LangChain adapter", "",
        f"`{args.data}`: {n} x {x.shape[1]}, {q.shape[0]} queries, k={K}, cosine, 1 BLAS "
        f"thread; the filter `bucket == 7` matches {int(bucket.sum())} documents (1%).", "",
        "| store | add docs/s | recall@10 | search µs | filtered µs | filtered/unfiltered | "
        "filtered top-10 exact | filtered recall | vs InMemory (search) | vs turbovec (search) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res["stores"].items():
        lines.append(
            f"| {name} | {r['add_docs_per_s']:.0f} | {r['recall']:.3f} | {r['latency_us']:.1f} | "
            f"{r['filtered_latency_us']:.1f} | {r['filtered_over_unfiltered']:.2f} | "
            f"{r['filtered_exact']} | {r['filtered_recall']:.3f} | "
            f"{mem['latency_us'] / r['latency_us']:.1f}x | "
            f"{tv['latency_us'] / r['latency_us']:.2f}x |"
        )
    lines += ["", "Adapter overhead (LangChain search / bare `IdMapIndex.search` + SQLite "
              "fetch):", ""]
    for name, r in res["stores"].items():
        if "bare_latency_us" in r:
            lines.append(f"- {name}: {r['latency_us']:.1f} µs / {r['bare_latency_us']:.1f} µs = "
                         f"{r['adapter_over_bare']:.2f}x")
    write_results(args.out, "collection", res, "\n".join(lines) + "\n")
    print(json.dumps(res["stores"], indent=1, default=json_default))


if __name__ == "__main__":
    main()
