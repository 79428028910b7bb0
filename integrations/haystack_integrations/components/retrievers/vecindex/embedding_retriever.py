"""``VecIndexEmbeddingRetriever``: dense retrieval from a ``VecIndexDocumentStore``."""

from __future__ import annotations

from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.document_stores.types import FilterPolicy, apply_filter_policy

from haystack_integrations.document_stores.vecindex import VecIndexDocumentStore
from vecindex_core.validation import check_int

__all__ = ["VecIndexEmbeddingRetriever"]


@component
class VecIndexEmbeddingRetriever:
    """Retrieves the documents most similar to a query embedding from a VecIndexDocumentStore.

    Give it the query embedding made by a text embedder; the documents must have been
    written with embeddings from the same model.

    Usage example::

        from haystack import Document
        from haystack_integrations.components.retrievers.vecindex import (
            VecIndexEmbeddingRetriever,
        )
        from haystack_integrations.document_stores.vecindex import VecIndexDocumentStore

        store = VecIndexDocumentStore(path="docs.db", index="turboquant")
        store.write_documents([Document(content="hello", embedding=[0.1, 0.9, 0.2])])
        retriever = VecIndexEmbeddingRetriever(document_store=store, top_k=5)
        retriever.run(query_embedding=[0.1, 0.8, 0.3])["documents"]
    """

    def __init__(
        self,
        document_store: VecIndexDocumentStore,
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        scale_score: bool = False,
        return_embedding: bool = False,
        filter_policy: str | FilterPolicy = FilterPolicy.REPLACE,
    ) -> None:
        """Create the retriever.

        :param document_store: The VecIndexDocumentStore to search.
        :param filters: Haystack filters applied to every query (see ``filter_policy``).
        :param top_k: How many documents to return at most; must be greater than 0.
        :param scale_score: Map scores into ``[0, 1]`` (see
            ``VecIndexDocumentStore.embedding_retrieval``); otherwise raw similarity scores.
        :param return_embedding: Return the documents' embeddings too.
        :param filter_policy: How run-time filters combine with ``filters``: ``REPLACE``
            (default) uses the run-time ones when given, ``MERGE`` combines both with AND.
        :raises TypeError: ``document_store`` is not a VecIndexDocumentStore.
        :raises ValueError: ``top_k`` is not greater than 0, or ``filter_policy`` is unknown.
        """
        if not isinstance(document_store, VecIndexDocumentStore):
            raise TypeError(
                "document_store must be a VecIndexDocumentStore, got "
                f"{type(document_store).__name__}"
            )
        check_int(top_k, "top_k", low=1)
        self.document_store = document_store
        self.filters = filters
        self.top_k = top_k
        self.scale_score = scale_score
        self.return_embedding = return_embedding
        if isinstance(filter_policy, str):
            filter_policy = FilterPolicy.from_str(filter_policy)
        self.filter_policy = filter_policy

    def to_dict(self) -> dict[str, Any]:
        """Serializes the component (and its document store's settings) to a dictionary."""
        return default_to_dict(
            self,
            document_store=self.document_store.to_dict(),
            filters=self.filters,
            top_k=self.top_k,
            scale_score=self.scale_score,
            return_embedding=self.return_embedding,
            filter_policy=self.filter_policy.value,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VecIndexEmbeddingRetriever:
        """Deserializes the component from a dictionary made by :meth:`to_dict`."""
        data = {**data, "init_parameters": dict(data.get("init_parameters", {}))}
        params = data["init_parameters"]
        if isinstance(params.get("document_store"), dict):
            params["document_store"] = VecIndexDocumentStore.from_dict(params["document_store"])
        if "filter_policy" in params:
            params["filter_policy"] = FilterPolicy.from_str(params["filter_policy"])
        return default_from_dict(cls, data)

    def _resolve(
        self,
        filters: dict[str, Any] | None,
        top_k: int | None,
        scale_score: bool | None,
        return_embedding: bool | None,
    ) -> dict[str, Any]:
        top_k = check_int(self.top_k if top_k is None else top_k, "top_k", low=0)
        return {
            "filters": apply_filter_policy(self.filter_policy, self.filters, filters),
            "top_k": top_k,
            "scale_score": self.scale_score if scale_score is None else scale_score,
            "return_embedding": (
                self.return_embedding if return_embedding is None else return_embedding
            ),
        }

    @component.output_types(documents=list[Document])
    def run(
        self,
        query_embedding: list[float],
        filters: dict[str, Any] | None = None,
        top_k: int | None = None,
        scale_score: bool | None = None,
        return_embedding: bool | None = None,
    ) -> dict[str, list[Document]]:
        """Retrieve the documents most similar to ``query_embedding``, best first.

        :param query_embedding: Embedding of the query.
        :param filters: Filters for this run, combined with the init filters by the
            ``filter_policy``.
        :param top_k: Overrides the init ``top_k`` (``0`` returns no documents).
        :param scale_score: Overrides the init ``scale_score``.
        :param return_embedding: Overrides the init ``return_embedding``.
        :returns: ``{"documents": [...]}`` with ``Document.score`` set.
        :raises ValueError: Negative ``top_k``, or a query of the wrong dimension.
        """
        options = self._resolve(filters, top_k, scale_score, return_embedding)
        docs = self.document_store.embedding_retrieval(query_embedding=query_embedding, **options)
        return {"documents": docs}

    @component.output_types(documents=list[Document])
    async def run_async(
        self,
        query_embedding: list[float],
        filters: dict[str, Any] | None = None,
        top_k: int | None = None,
        scale_score: bool | None = None,
        return_embedding: bool | None = None,
    ) -> dict[str, list[Document]]:
        """Async :meth:`run` (same parameters and result)."""
        options = self._resolve(filters, top_k, scale_score, return_embedding)
        docs = await self.document_store.embedding_retrieval_async(
            query_embedding=query_embedding, **options
        )
        return {"documents": docs}
