"""Retrieval with LangChain over the bundled WordNet sample, offline.

The sample ships MiniLM embeddings of 5,000 WordNet glosses and 200 query glosses, so the
"embedding model" below just looks the vectors up: no network, no model download.

    python examples/langchain_rag.py            # query 0, with and without {"pos": "adj"}
    python examples/langchain_rag.py 17         # another query
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import Any

from langchain_core.embeddings import Embeddings

from langchain_vecindex import VecIndexVectorStore
from vecindex_core.datasets import load_sample


class SampleEmbeddings(Embeddings):
    """Precomputed MiniLM vectors of the sample's passages and queries, by text."""

    def __init__(self) -> None:
        data = load_sample()
        texts = data.base_texts + data.query_texts
        vectors = [*data.base, *data.queries]
        self._vectors = {t: v.tolist() for t, v in zip(texts, vectors, strict=True)}

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        try:
            return self._vectors[text]
        except KeyError:
            raise ValueError(f"no precomputed vector for {text!r}") from None


@lru_cache(maxsize=1)
def build_store() -> VecIndexVectorStore:
    """An in-memory store of the 5,000 passages; ids like ``wn:noun:03904782``."""
    sample = load_sample()
    assert sample.base_texts and sample.base_ids  # the bundled sample ships texts and ids
    store = VecIndexVectorStore(SampleEmbeddings(), index="flat", metric="cosine")
    store.add_texts(
        sample.base_texts,
        metadatas=[{"pos": i.split(":")[1], "synset": i.split(":")[2]} for i in sample.base_ids],
        ids=sample.base_ids,
    )
    return store


def run(
    query: int = 0, k: int = 3, filter: dict[str, Any] | None = None
) -> list[tuple[str, float]]:
    """Top ``k`` passages for sample query ``query`` as ``(text, cosine similarity)``."""
    text = load_sample().query_texts[query]
    hits = build_store().similarity_search_with_score(text, k=k, filter=filter)
    return [(doc.page_content, score) for doc, score in hits]


if __name__ == "__main__":
    q = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    print("query:", load_sample().query_texts[q])
    for title, where in (("all passages", None), ("adjectives only", {"pos": "adj"})):
        print(f"\n{title}:")
        for passage, score in run(q, k=3, filter=where):
            print(f"  {score:.3f}  {passage}")
