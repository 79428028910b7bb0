"""Retrieval with LlamaIndex over vecindex, on the bundled WordNet sample. Runs offline.

The sample ships MiniLM embeddings of 5,000 WordNet glosses and 200 query glosses, so the
"embedding model" below just looks those vectors up: no network, no model download.

    python examples/llamaindex_rag.py
"""

from __future__ import annotations

from functools import lru_cache

from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters

from llama_index.vector_stores.vecindex import VecIndexVectorStore
from vecindex_core.datasets import load_sample


class PrecomputedEmbedding(BaseEmbedding):
    """An embedding model that returns the stored vector of a text it knows."""

    _vectors: dict[str, list[float]] = PrivateAttr()

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        super().__init__(model_name="all-MiniLM-L6-v2 (precomputed)")
        self._vectors = vectors

    def _lookup(self, text: str) -> list[float]:
        try:
            return self._vectors[text]
        except KeyError:
            raise ValueError(f"no precomputed embedding for {text[:60]!r}") from None

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._lookup(text)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._lookup(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._lookup(query)


@lru_cache(maxsize=1)
def build_index() -> tuple[VectorStoreIndex, list[str]]:
    """Index the sample once: one node per gloss, with its part of speech as metadata."""
    sample = load_sample()
    assert sample.base_texts and sample.query_texts and sample.base_ids  # shipped
    texts = sample.base_texts + sample.query_texts
    vectors = [v.tolist() for v in sample.base] + [v.tolist() for v in sample.queries]
    embed_model = PrecomputedEmbedding(dict(zip(texts, vectors, strict=True)))

    nodes = [
        TextNode(id_=wn_id, text=text, metadata={"pos": wn_id.split(":")[1]},
                 excluded_embed_metadata_keys=["pos"])  # embed the gloss alone
        for wn_id, text in zip(sample.base_ids, sample.base_texts, strict=True)
    ]
    store = VecIndexVectorStore(index="flat", metric="cosine")  # any index: "turboquant"...
    ctx = StorageContext.from_defaults(vector_store=store)
    index = VectorStoreIndex(nodes, storage_context=ctx, embed_model=embed_model,
                             insert_batch_size=5000)
    return index, sample.query_texts


def run(query: int = 0, k: int = 3, filters: MetadataFilters | None = None
        ) -> list[tuple[str, float]]:
    """The ``k`` glosses closest to query passage ``query``: ``(text, cosine similarity)``."""
    index, queries = build_index()
    hits = index.as_retriever(similarity_top_k=k, filters=filters).retrieve(queries[query])
    return [(hit.node.get_content(), float(hit.score or 0.0)) for hit in hits]


if __name__ == "__main__":
    _, queries = build_index()
    print(f"query: {queries[0]}\n")
    for title, flt in [
        ("top 3", None),
        ("top 3 verbs (pos == 'verb')",
         MetadataFilters(filters=[MetadataFilter(key="pos", value="verb")])),
    ]:
        print(title)
        for text, score in run(0, 3, flt):
            print(f"  {score:.3f}  {text}")
        print()
