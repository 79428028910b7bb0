"""Haystack retrieval over the bundled WordNet sample, with vecindex as the document store.

The sample ships real all-MiniLM-L6-v2 embeddings of 5,000 WordNet glosses and 200 query
glosses, so this runs offline: no model, no network. In a real RAG pipeline a text
embedder would sit in front of the retriever and a prompt builder + LLM behind it.

Run it with ``python examples/haystack_rag.py``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from haystack import Document, Pipeline

from haystack_integrations.components.retrievers.vecindex import VecIndexEmbeddingRetriever
from haystack_integrations.document_stores.vecindex import VecIndexDocumentStore
from vecindex_core.datasets import load_sample

NOUNS = {"field": "meta.pos", "operator": "==", "value": "noun"}


@lru_cache(maxsize=1)
def _pipeline() -> Pipeline:
    """An in-memory store holding the 5,000 passages, and a one-retriever query pipeline."""
    sample = load_sample()
    assert sample.base_texts and sample.base_ids  # the bundled sample ships texts and ids
    store = VecIndexDocumentStore(index="flat", metric="cosine")  # or "turboquant", "ivf_flat"
    store.write_documents([
        Document(id=doc_id, content=text, meta={"pos": doc_id.split(":")[1]}, embedding=vec)
        for doc_id, text, vec in zip(
            sample.base_ids, sample.base_texts, sample.base.tolist(), strict=True
        )
    ])
    pipeline = Pipeline()
    pipeline.add_component("retriever", VecIndexEmbeddingRetriever(document_store=store))
    return pipeline


def run(
    query: int = 0, k: int = 3, filters: dict[str, Any] | None = None
) -> list[tuple[str, float]]:
    """Top ``k`` passages for sample query number ``query``, as ``(text, cosine score)``."""
    embedding = load_sample().queries[query].tolist()
    result = _pipeline().run(
        {"retriever": {"query_embedding": embedding, "top_k": k, "filters": filters}}
    )
    return [(doc.content, doc.score) for doc in result["retriever"]["documents"]]


if __name__ == "__main__":
    print("query:", (load_sample().query_texts or ["?"])[0])
    for title, filters in (("all passages", None), ("nouns only", NOUNS)):
        print(f"\n{title}:")
        for text, score in run(0, k=3, filters=filters):
            print(f"  {score:.3f}  {text}")
