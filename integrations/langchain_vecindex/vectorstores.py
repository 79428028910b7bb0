"""LangChain ``VectorStore`` over a vecindex collection: the SQLite
:class:`~vecindex_core.collection.Collection` or the Milvus-backed
:class:`~vecindex_core.milvus.collection.MilvusCollection`."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor
from langchain_core.vectorstores import VectorStore
from typing_extensions import Self

from vecindex_core import (
    BaseCollection,
    Collection,
    Hit,
    InvalidArgumentError,
    InvalidDtypeError,
    Record,
)
from vecindex_core.types import Metric
from vecindex_core.validation import reject_kwargs

from ._filters import to_core_filter
from ._scores import relevance_function

__all__ = ["VecIndexVectorStore"]

_SEARCH_KWARGS = ("filter", "core_filter", "params")


class VecIndexVectorStore(VectorStore):
    """LangChain vector store on a vecindex ``Collection`` (any registered index, optional
    SQLite persistence).

    Setup:
        ``pip install "vecindex[langchain]"``

    Key init args:
        embedding: Embeddings
            Embedding model for documents and queries.
        path: str | os.PathLike | None
            SQLite file of the collection (the index snapshot lives beside it as
            ``<path>.index``). ``None`` keeps everything in memory with the same behaviour.
            Reopening a path gives every document back; the index, metric and dimension are
            stored in it, so pass only ``path`` (giving different ones raises).
        index: str | None
            Any registered index spec: ``"flat"`` (default for a new store), ``"turboquant"``,
            ``"ivf_pq(nlist=256,m=48)"``... Indexes that need training train themselves.
        metric: "cosine" | "ip" | "l2" | None
            Default ``"cosine"`` for a new store.
        index_params: dict | None
            Parameters of the index kind, merged with the spec's.
        collection: BaseCollection | None
            Use this open collection instead (then give none of the four above): a
            ``vecindex_core.Collection`` or a ``vecindex_core.MilvusCollection`` (documents,
            vectors and filters in Milvus: embedded milvus-lite or a Milvus server).

    Instantiate:
        .. code-block:: python

            from langchain_vecindex import VecIndexVectorStore

            store = VecIndexVectorStore(embeddings, path="docs.db", index="turboquant")

            # or on Milvus (a milvus-lite file, or "http://host:19530"):
            from vecindex_core import MilvusCollection
            store = VecIndexVectorStore(
                embeddings, collection=MilvusCollection("milvus.db", collection_name="docs"))

    Add, update and delete documents:
        .. code-block:: python

            store.add_documents([Document(page_content="foo", metadata={"year": 2024})],
                                ids=["a"])      # an existing id is overwritten (upsert)
            store.delete(ids=["a"])

    Search (``filter`` takes LangChain dict filters, see ``_filters``):
        .. code-block:: python

            store.similarity_search("foo", k=4, filter={"year": {"$gte": 2000}})
            store.similarity_search_with_score("foo")           # vecindex scores
            store.similarity_search_with_relevance_scores("foo")  # [0, 1]
            store.max_marginal_relevance_search("foo", k=4, fetch_k=20, lambda_mult=0.5)
            store.as_retriever(search_type="mmr", search_kwargs={"k": 2})

    Scores:
        ``similarity_search_with_score`` returns the vecindex score, higher is better:
        cosine similarity, inner product, or the *negated squared* l2 distance.
        ``similarity_search_with_relevance_scores`` maps it to [0, 1] with the metric's
        function in ``langchain_vecindex._scores``.

    Search keyword arguments (every search method; anything else raises):
        ``filter``: a LangChain dict filter (``{"k": v}``, ``$eq $ne $gt $gte $lt $lte $in
        $nin $exists $not $and $or``), translated to the core language.
        ``core_filter``: a filter already in the core (Haystack-dict) language, passed through
        unchanged and ANDed with ``filter``. The two are separate arguments on purpose: a
        ``filter`` is never guessed to be a core filter from its shape.
        ``params``: search-time knobs of the index (``{"nprobe": 32}``, ``{"rerank": 50}``).

    Errors:
        Bad input raises a ``vecindex_core`` error (each also a ``ValueError``/``TypeError``)
        and writes nothing: ``DimensionMismatchError``, ``NonFiniteError``,
        ``InvalidArgumentError`` (non-JSON metadata, lengths that differ), ``DuplicateIdError``
        (an id twice in one batch), ``InvalidDtypeError`` (a single str where a list of texts
        or ids belongs), ``FilterError`` (unknown filter operator).

    Async:
        ``aadd_texts``/``aadd_documents`` and the ``asimilarity_search*`` /
        ``amax_marginal_relevance_search`` methods await the embedding model's async methods
        and run the collection work in the default executor (the collection is thread-safe);
        ``adelete`` and ``aget_by_ids`` are the base class's executor versions.
    """

    def __init__(
        self,
        embedding: Embeddings,
        *,
        path: str | os.PathLike[str] | None = None,
        index: str | None = None,
        metric: Metric | None = None,
        index_params: Mapping[str, Any] | None = None,
        collection: BaseCollection | None = None,
    ) -> None:
        if not isinstance(embedding, Embeddings):
            raise InvalidArgumentError(
                f"embedding must be a langchain_core Embeddings, got {type(embedding).__name__}"
            )
        if collection is not None:
            given = [
                name
                for name, value in (
                    ("path", path),
                    ("index", index),
                    ("metric", metric),
                    ("index_params", index_params),
                )
                if value is not None
            ]
            if given:
                raise InvalidArgumentError(
                    f"give either collection= or {', '.join(given)}, not both: an open "
                    "collection already has its path, index and metric"
                )
            if not isinstance(collection, BaseCollection):
                raise InvalidArgumentError(
                    f"collection must be a vecindex_core.Collection or MilvusCollection, got "
                    f"{type(collection).__name__}"
                )
            self._collection: BaseCollection = collection
        else:
            self._collection = Collection(
                path, index=index, metric=metric, index_params=index_params
            )
        self.embedding = embedding

    # ------------------------------------------------------------------ properties
    @property
    def embeddings(self) -> Embeddings:
        """The embedding model."""
        return self.embedding

    @property
    def collection(self) -> BaseCollection:
        """The underlying collection (documents, index, filters, persistence)."""
        return self._collection

    def close(self) -> None:
        """Close the collection (writes the index snapshot when there are changes)."""
        self._collection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writes
    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed ``texts`` and upsert them; an id already stored is overwritten.

        ``ids`` entries that are None get a uuid4 hex id. Returns the ids, in input order.
        Raises a ``vecindex_core`` error and writes nothing on bad input.
        """
        reject_kwargs("add_texts", kwargs, ())
        text_list = _text_list(texts)
        batch = _make_batch(text_list, metadatas, ids)
        if not text_list:
            return []
        vectors = _checked_vectors(self.embedding.embed_documents(text_list), len(text_list))
        return self._upsert(batch, vectors)

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Async :meth:`add_texts` (awaits ``aembed_documents``)."""
        reject_kwargs("aadd_texts", kwargs, ())
        text_list = _text_list(texts)
        batch = _make_batch(text_list, metadatas, ids)
        if not text_list:
            return []
        raw = await self.embedding.aembed_documents(text_list)
        vectors = _checked_vectors(raw, len(text_list))
        return await run_in_executor(None, self._upsert, batch, vectors)

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Upsert documents. Ids come from ``ids=`` if given, else from ``Document.id``
        (a document without one gets a uuid4 hex id). The documents are not modified."""
        ids = kwargs.pop("ids", None)
        if ids is None:
            ids = [doc.id for doc in documents]
        return self.add_texts(
            [doc.page_content for doc in documents],
            [doc.metadata for doc in documents],
            ids=ids,
            **kwargs,
        )

    async def aadd_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Async :meth:`add_documents`."""
        ids = kwargs.pop("ids", None)
        if ids is None:
            ids = [doc.id for doc in documents]
        return await self.aadd_texts(
            [doc.page_content for doc in documents],
            [doc.metadata for doc in documents],
            ids=ids,
            **kwargs,
        )

    def _upsert(self, batch: _Batch, vectors: list[Any]) -> list[str]:
        return self._collection.upsert(batch.ids, batch.texts, vectors, batch.metadatas)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete documents by id (unknown ids are ignored), or by ``filter=`` (a LangChain
        dict filter) / ``core_filter=``.

        As the ``VectorStore`` contract says, ``ids=None`` without a filter deletes every
        document (so does ``filter={}``, which matches every document, as in search).
        Returns True once done (a failure raises instead of returning False).
        """
        reject_kwargs("delete", kwargs, ("filter", "core_filter"))
        where = _core_filter(kwargs.get("filter"), kwargs.get("core_filter"))
        if ids is not None and where is not None:
            raise InvalidArgumentError("delete takes ids or a filter, not both")
        if ids is not None:
            self._collection.delete(ids)
        elif where is not None:
            self._collection.delete(filter=where)
        else:
            self._collection.clear()
        return True

    # ------------------------------------------------------------------ reads
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents with these ids, in the order given; unknown ids are skipped."""
        return [_to_document(r) for r in self._collection.get(ids)]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The ``k`` documents most similar to ``query`` (see the class doc for kwargs)."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """``(document, score)`` best first; the score is vecindex's (higher is better)."""
        reject_kwargs("similarity_search_with_score", kwargs, _SEARCH_KWARGS)
        vector = self.embedding.embed_query(query)
        return self.similarity_search_with_score_by_vector(vector, k, **kwargs)

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` documents most similar to ``embedding``."""
        return [
            doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, **kwargs)
        ]

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """``(document, score)`` for the ``k`` documents most similar to ``embedding``."""
        reject_kwargs("similarity_search_with_score_by_vector", kwargs, _SEARCH_KWARGS)
        hits = self._collection.search(
            embedding,
            k,
            filter=_core_filter(kwargs.get("filter"), kwargs.get("core_filter")),
            params=kwargs.get("params"),
        )
        return _pairs(hits)

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return relevance_function(self._collection.metric)

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """``k`` documents chosen by maximal marginal relevance among the ``fetch_k`` most
        similar (``lambda_mult`` 1: relevance only, 0: diversity only)."""
        reject_kwargs("max_marginal_relevance_search", kwargs, _SEARCH_KWARGS)
        vector = self.embedding.embed_query(query)
        return self.max_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, **kwargs
        )

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """MMR for a query vector (through ``Collection.mmr``)."""
        reject_kwargs("max_marginal_relevance_search_by_vector", kwargs, _SEARCH_KWARGS)
        hits = self._collection.mmr(
            embedding,
            k,
            fetch_k=fetch_k,
            lambda_mult=lambda_mult,
            filter=_core_filter(kwargs.get("filter"), kwargs.get("core_filter")),
            params=kwargs.get("params"),
        )
        return [doc for doc, _ in _pairs(hits)]

    # ------------------------------------------------------------------ async reads
    async def asimilarity_search(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[Document]:
        """Async :meth:`similarity_search`."""
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k, **kwargs)]

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Async :meth:`similarity_search_with_score` (awaits ``aembed_query``)."""
        reject_kwargs("asimilarity_search_with_score", kwargs, _SEARCH_KWARGS)
        vector = await self.embedding.aembed_query(query)
        return await run_in_executor(
            None, self.similarity_search_with_score_by_vector, vector, k, **kwargs
        )

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        """Async :meth:`similarity_search_by_vector`."""
        return await run_in_executor(
            None, self.similarity_search_by_vector, embedding, k, **kwargs
        )

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """Async :meth:`max_marginal_relevance_search` (awaits ``aembed_query``)."""
        reject_kwargs("amax_marginal_relevance_search", kwargs, _SEARCH_KWARGS)
        vector = await self.embedding.aembed_query(query)
        return await run_in_executor(
            None,
            self.max_marginal_relevance_search_by_vector,
            vector,
            k,
            fetch_k,
            lambda_mult,
            **kwargs,
        )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """A store (built from ``kwargs``: path, index, metric, index_params, collection)
        holding ``texts``."""
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Async :meth:`from_texts`."""
        store = await run_in_executor(None, cls, embedding, **kwargs)
        await store.aadd_texts(texts, metadatas, ids=ids)
        return store


# ---------------------------------------------------------------------- helpers
class _Batch(NamedTuple):
    """Checked ids, texts and metadatas of one write (checked before anything is embedded)."""

    ids: list[str]
    texts: list[str]
    metadatas: list[Mapping[str, Any] | None]


def _make_batch(
    texts: list[str],
    metadatas: Sequence[Mapping[str, Any] | None] | None,
    ids: Sequence[str | None] | None,
) -> _Batch:
    if isinstance(ids, (str, bytes)):
        raise InvalidDtypeError(f"ids must be a list of str, got the single {ids!r}")
    n = len(texts)
    metas: list[Mapping[str, Any] | None] = [None] * n if metadatas is None else [*metadatas]
    if len(metas) != n:
        raise InvalidArgumentError(f"got {len(metas)} metadatas for {n} texts")
    if ids is None:
        id_list = [uuid.uuid4().hex for _ in range(n)]
    else:
        if len(ids) != n:
            raise InvalidArgumentError(f"got {len(ids)} ids for {n} texts")
        id_list = [uuid.uuid4().hex if i is None else i for i in ids]
    return _Batch(id_list, texts, metas)


def _text_list(texts: Iterable[str]) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise InvalidDtypeError(f"texts must be a list of str, got the single {texts!r}")
    return list(texts)


def _checked_vectors(raw: Any, n: int) -> list[Any]:
    vectors = list(raw)
    if len(vectors) != n:
        raise InvalidArgumentError(
            f"the embedding model returned {len(vectors)} vectors for {n} texts"
        )
    return vectors


def _core_filter(
    filter: Mapping[str, Any] | None, core_filter: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The core filter for a LangChain ``filter`` ANDed with a pass-through ``core_filter``."""
    translated = to_core_filter(filter)
    if core_filter is None:
        return translated
    if not isinstance(core_filter, Mapping):
        raise InvalidArgumentError(
            f"core_filter must be a core filter dict, got {type(core_filter).__name__}"
        )
    if translated is None:
        return dict(core_filter)
    return {"operator": "AND", "conditions": [translated, dict(core_filter)]}


def _to_document(record: Record) -> Document:
    return Document(id=record.id, page_content=record.text or "", metadata=record.metadata)


def _pairs(hits: list[Hit]) -> list[tuple[Document, float]]:
    return [(_to_document(h.record), h.score) for h in hits]
