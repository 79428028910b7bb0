"""LlamaIndex vector store over a vecindex ``Collection``: ``VecIndexVectorStore``."""

from llama_index.vector_stores.vecindex.base import VecIndexVectorStore

__all__ = ["VecIndexVectorStore"]
