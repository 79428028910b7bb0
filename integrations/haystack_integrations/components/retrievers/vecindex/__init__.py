"""Haystack retriever components for the vecindex DocumentStore."""

from .embedding_retriever import VecIndexEmbeddingRetriever

__all__ = ["VecIndexEmbeddingRetriever"]
