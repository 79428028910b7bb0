"""``VecIndexDocumentStore``: a Haystack 2.x DocumentStore over a vecindex collection (the
SQLite ``Collection`` or the Milvus-backed ``MilvusCollection``)."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

from haystack import default_from_dict, default_to_dict, logging
from haystack.dataclasses import Document
from haystack.document_stores.types import DuplicatePolicy
from haystack.utils import Secret, deserialize_secrets_inplace

from vecindex_core import BaseCollection, Collection, Record
from vecindex_core.errors import DuplicateIdError, InvalidArgumentError
from vecindex_core.errors import FilterError as CoreFilterError
from vecindex_core.validation import check_int

from . import _convert
from ._scores import to_haystack_score
from .errors import VecIndexDuplicateDocumentError, VecIndexFilterError

__all__ = ["VecIndexDocumentStore"]

logger = logging.getLogger(__name__)

Metric = Literal["cosine", "ip", "l2"]
T = TypeVar("T")


@contextmanager
def _haystack_errors() -> Iterator[None]:
    """Re-raise the core's filter and duplicate errors as their Haystack-and-vecindex twins."""
    try:
        yield
    except CoreFilterError as e:
        if isinstance(e, VecIndexFilterError):
            raise
        raise VecIndexFilterError(str(e)) from e
    except DuplicateIdError as e:
        if isinstance(e, VecIndexDuplicateDocumentError):
            raise
        raise VecIndexDuplicateDocumentError(str(e)) from e


def _filters(filters: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """``None`` and ``{}`` both mean "no filter"; anything else goes to the core as is."""
    if filters is None:
        return None
    if not isinstance(filters, Mapping):
        raise VecIndexFilterError(f"filters must be a dict, got {type(filters).__name__}")
    return filters or None


def _required_filters(filters: Mapping[str, Any] | None, method: str) -> Mapping[str, Any]:
    checked = _filters(filters)
    if checked is None:
        raise VecIndexFilterError(
            f"{method} needs a non-empty filter; use delete_all_documents() to delete everything"
            if method == "delete_by_filter"
            else f"{method} needs a non-empty filter"
        )
    return checked


class VecIndexDocumentStore:
    """A Haystack DocumentStore backed by vecindex: any registered index, embedded, persistent.

    Documents (id, content, meta, embedding) live in a vecindex ``Collection``: a SQLite file
    when ``path`` is given (the source of truth, durable on every write) with the vector
    index derived beside it, or memory when it is not. With ``milvus_uri`` they live in a
    Milvus collection instead (``vecindex_core.MilvusCollection``: embedded milvus-lite or a
    Milvus server; filters run inside Milvus). Filters use Haystack's own filter
    syntax and semantics, evaluated by the vecindex core and pushed into the index scan, so a
    filtered ``embedding_retrieval`` returns the true top-k among matching documents.

    Usage::

        from haystack import Document
        from haystack_integrations.document_stores.vecindex import VecIndexDocumentStore

        store = VecIndexDocumentStore(path="docs.db", index="turboquant", metric="cosine")
        store.write_documents([Document(content="hello", embedding=[0.1, 0.2, 0.3])])
        store.embedding_retrieval([0.1, 0.2, 0.3], top_k=1)

        # on a Milvus server (credentials come from environment variables):
        store = VecIndexDocumentStore(
            milvus_uri="http://localhost:19530", collection_name="docs",
            token=Secret.from_env_var("MILVUS_TOKEN"))

    Notes
    -----
    - ``DuplicatePolicy.NONE`` behaves as ``FAIL`` (as in ``InMemoryDocumentStore``). A batch
      that fails writes nothing, whatever the reason.
    - Embeddings are stored as float32 and come back as such.
    - ``blob`` and ``sparse_embedding`` are not stored: a Document carrying one is rejected
      with ``InvalidArgumentError`` (a ``ValueError``).
    - Invalid filters raise :class:`~.errors.VecIndexFilterError`, both a Haystack
      ``FilterError`` and a ``vecindex_core.FilterError``. Duplicates under ``FAIL`` raise
      :class:`~.errors.VecIndexDuplicateDocumentError`, both a Haystack
      ``DuplicateDocumentError`` and a ``vecindex_core.DuplicateIdError``.
    - The ``*_async`` methods run the synchronous ones in the event loop's default executor;
      the Collection lets many readers or one writer in at a time.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        index: str | None = None,
        metric: Metric | None = None,
        index_params: Mapping[str, Any] | None = None,
        *,
        milvus_uri: str | None = None,
        collection_name: str | None = None,
        dim: int | None = None,
        token: Secret | None = None,
        user: str | None = None,
        password: Secret | None = None,
        db_name: str | None = None,
        secure: bool | None = None,
        server_pem_path: str | None = None,
        server_name: str | None = None,
        ca_pem_path: str | None = None,
        client_pem_path: str | None = None,
        client_key_path: str | None = None,
        collection: BaseCollection | None = None,
    ) -> None:
        """Open (or create) a store.

        :param path: SQLite file of the store, created if missing (the index snapshot goes
            beside it as ``<path>.index``). ``None`` keeps everything in memory.
        :param index: Any registered vecindex index name or spec: ``"flat"`` (exact),
            ``"turboquant"``, ``"ivf_flat(nlist=256)"``, ``"ivf_pq(nlist=1024,m=48)"``...
            Default ``"flat"`` for a new store; when reopening a path, omit it (the stored
            one is used) or give the stored one.
        :param metric: ``"cosine"`` (default for a new store), ``"ip"`` (dot product) or
            ``"l2"``. Stored with the path like ``index``.
        :param index_params: Parameters of the index kind, merged with those of the spec.
        :param milvus_uri: Keep the documents in Milvus instead of SQLite: a milvus-lite
            database path ending in ``.db``, or a server URI (``http://host:19530``). Then
            ``index`` is a Milvus index type (``"AUTOINDEX"`` by default, ``"FLAT"``,
            ``"HNSW(M=16,efConstruction=200)"``, ``"IVF_FLAT(nlist=128)"``...) and ``path``
            must be None.
        :param collection_name: The Milvus collection (default ``"vecindex"``).
        :param dim: Embedding dimensions (optional: the first embedding fixes it).
        :param token: Milvus token, as a Haystack ``Secret`` (``Secret.from_env_var(...)``:
            only the variable's name is serialized).
        :param user: Milvus user name.
        :param password: Milvus password, as a ``Secret``.
        :param db_name: Milvus database.
        :param secure: Use TLS to reach the server.
        :param server_pem_path: TLS: the server certificate.
        :param server_name: TLS: the server name to verify.
        :param ca_pem_path: TLS: the CA certificate.
        :param client_pem_path: TLS: the client certificate.
        :param client_key_path: TLS: the client key.
        :param collection: An open ``vecindex_core.Collection`` or ``MilvusCollection`` to use
            instead (give none of the settings above then).
        :raises ValueError: Unknown index or parameter, or settings that differ from those
            stored at ``path`` (the vecindex errors are ``ValueError`` subclasses).
        """
        self.path = None if path is None else os.fspath(path)
        self._milvus: dict[str, Any] = {
            "milvus_uri": milvus_uri, "collection_name": collection_name, "dim": dim,
            "token": token, "user": user, "password": password, "db_name": db_name,
            "secure": secure, "server_pem_path": server_pem_path, "server_name": server_name,
            "ca_pem_path": ca_pem_path, "client_pem_path": client_pem_path,
            "client_key_path": client_key_path,
        }
        for key in ("token", "password"):
            if self._milvus[key] is not None and not isinstance(self._milvus[key], Secret):
                raise InvalidArgumentError(
                    f"{key} must be a haystack Secret (Secret.from_env_var(...)), got "
                    f"{type(self._milvus[key]).__name__}"
                )
        if collection is not None:
            given = [k for k, v in (("path", path), ("index", index), ("metric", metric),
                                    ("index_params", index_params), *self._milvus.items())
                     if v is not None]
            if given:
                raise InvalidArgumentError(
                    f"give either collection= or {', '.join(given)}, not both: an open "
                    "collection already has its settings"
                )
            if not isinstance(collection, BaseCollection):
                raise InvalidArgumentError(
                    "collection must be a vecindex_core.Collection or MilvusCollection, got "
                    f"{type(collection).__name__}"
                )
            self._collection: BaseCollection = collection
            if isinstance(collection, Collection):
                self.path = collection.path
            else:
                self._milvus["milvus_uri"] = collection.path
                self._milvus["collection_name"] = getattr(collection, "collection_name", None)
                self._milvus.update(getattr(collection, "connection", {}))
        elif milvus_uri is not None:
            if path is not None:
                raise InvalidArgumentError("give path (SQLite) or milvus_uri (Milvus), not both")
            from vecindex_core.milvus.collection import MilvusCollection

            token_value = None if token is None else token.resolve_value()
            password_value = None if password is None else password.resolve_value()
            self._collection = MilvusCollection(
                milvus_uri, collection_name=collection_name or "vecindex", index=index,
                metric=metric, dim=dim, index_params=index_params, user=user, db_name=db_name,
                secure=secure, server_pem_path=server_pem_path, server_name=server_name,
                ca_pem_path=ca_pem_path, client_pem_path=client_pem_path,
                client_key_path=client_key_path, token=token_value, password=password_value,
            )
        else:
            milvus_only = [k for k, v in self._milvus.items() if v is not None and k != "dim"]
            if milvus_only:
                raise InvalidArgumentError(
                    f"{', '.join(milvus_only)} need milvus_uri (they configure a Milvus store)"
                )
            self._collection = Collection(
                self.path, index=index, metric=metric, dim=dim, index_params=index_params
            )

    # ------------------------------------------------------------------ housekeeping
    @property
    def collection(self) -> BaseCollection:
        """The underlying vecindex collection (for inspection and vecindex-only features)."""
        return self._collection

    @property
    def index(self) -> str:
        """The index spec in canonical form (``"ivf_flat(nlist=4,train_size=8)"``...)."""
        return self._collection.index_spec

    @property
    def metric(self) -> Metric:
        """The metric of the store."""
        metric: Metric = self._collection.metric
        return metric

    def close(self) -> None:
        """Snapshot the index and close the database. The store is unusable afterwards."""
        self._collection.close()

    def __enter__(self) -> VecIndexDocumentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = (f"path={self.path!r}" if self._milvus["milvus_uri"] is None else
                 f"milvus_uri={self._milvus['milvus_uri']!r}, "
                 f"collection_name={self._milvus['collection_name']!r}")
        return f"VecIndexDocumentStore({where}, index={self.index!r}, metric={self.metric!r})"

    def to_dict(self) -> dict[str, Any]:
        """Serializes the store to a dictionary (its settings, never its documents).

        The index is written as its full canonical spec, so ``from_dict`` reopens a path with
        exactly the stored settings and recreates an in-memory store (empty) identically.
        A Milvus-backed store also writes its uri, collection, dimension and connection
        settings; ``token`` and ``password`` are written as their ``Secret`` (an environment
        variable's name; Haystack refuses to serialize a token given as a plain value).
        """
        if self._milvus["milvus_uri"] is None:
            return default_to_dict(
                self, path=self.path, index=self.index, metric=self.metric, index_params=None
            )
        coll: Any = self._collection
        lost = []
        if getattr(coll, "has_secrets", False) and self._milvus["token"] is None and (
                self._milvus["password"] is None):
            lost.append("its token or password (pass them as Secrets with milvus_uri=)")
        if getattr(coll, "consistency_level", "Strong") != "Strong":
            lost.append(f"consistency_level={coll.consistency_level!r}")
        if getattr(coll, "timeout", None) is not None:
            lost.append(f"timeout={coll.timeout!r}")
        page = getattr(coll, "page_size", None)
        if page is not None and page != _milvus_page_default():
            lost.append(f"page_size={page!r}")
        if lost:
            raise InvalidArgumentError(
                "this store wraps a MilvusCollection whose settings to_dict cannot write: "
                f"{', '.join(lost)}; from_dict would reconnect without them. Create the "
                "store with milvus_uri= (and Secrets) instead to serialize it"
            )
        milvus = {
            **self._milvus,
            "dim": self._collection.dim,
            "token": None if self._milvus["token"] is None else self._milvus["token"].to_dict(),
            "password": (None if self._milvus["password"] is None
                         else self._milvus["password"].to_dict()),
        }
        return default_to_dict(
            self, path=None, index=self.index, metric=self.metric, index_params=None, **milvus
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VecIndexDocumentStore:
        """Deserializes the store from a dictionary made by :meth:`to_dict` (not modified)."""
        data = {**data, "init_parameters": dict(data.get("init_parameters", {}))}
        deserialize_secrets_inplace(data["init_parameters"], keys=["token", "password"])
        return default_from_dict(cls, data)

    # ------------------------------------------------------------------ protocol
    def count_documents(self) -> int:
        """Returns how many documents are stored (with or without an embedding)."""
        return len(self._collection)

    def filter_documents(self, filters: dict[str, Any] | None = None) -> list[Document]:
        """Returns the documents that match the filters, in write order, with their embeddings.

        :param filters: Haystack filter dict (see the
            [documentation](https://docs.haystack.deepset.ai/docs/metadata-filtering));
            ``None`` or ``{}`` returns every document.
        :raises VecIndexFilterError: The filter is invalid.
        """
        with _haystack_errors():
            records = self._collection.find(_filters(filters), include_vectors=True)
        return [_convert.to_document(r) for r in records]

    def write_documents(
        self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE
    ) -> int:
        """Writes Documents; nothing is written when the batch is invalid.

        :param documents: The Documents. Their embeddings must all have the store's dimension
            (fixed by the first embedding ever written); meta must be JSON.
        :param policy: ``OVERWRITE`` replaces stored Documents with the same id, ``SKIP``
            leaves them, ``FAIL`` and ``NONE`` raise. Inside one batch, a repeated id keeps
            its last Document under ``OVERWRITE`` and its first under ``SKIP``.
        :returns: How many Documents were written: ``len(documents)`` under ``OVERWRITE``, the
            ones not skipped under ``SKIP``.
        :raises VecIndexDuplicateDocumentError: An id is already stored, or repeats in the
            batch, under ``FAIL``/``NONE``.
        :raises ValueError: ``documents`` is not a list of Documents, a Document has a blob or
            sparse embedding, an embedding has the wrong dimension or NaN, meta is not JSON
            (``InvalidArgumentError``, ``DimensionMismatchError``, ``NonFiniteError``).
        """
        docs = _convert.check_documents(documents)
        mode = _convert.on_duplicate(policy)
        if not docs:
            return 0
        unique = _convert.dedupe(docs, policy)
        cols = _convert.to_columns(unique)
        with _haystack_errors():
            written = self._collection.upsert(
                cols.ids, cols.texts, cols.vectors, cols.metadatas, on_duplicate=mode
            )
        if mode == "skip" and len(written) < len(docs):
            logger.warning(
                "{skipped} of {total} documents were skipped: their ids are already stored",
                skipped=len(docs) - len(written),
                total=len(docs),
            )
        return len(docs) if mode == "overwrite" else len(written)

    def delete_documents(self, document_ids: list[str]) -> None:
        """Deletes the documents with these ids; unknown ids are ignored.

        :raises InvalidDtypeError: ``document_ids`` is a single string, not a list.
        """
        self._collection.delete(document_ids)

    # ------------------------------------------------------------------ extended API
    def delete_all_documents(self, recreate_index: bool = False) -> None:
        """Deletes every document.

        :param recreate_index: Also drop the index and start afresh with the same index spec
            and metric: a trained index (IVF centroids...) is discarded and retrains on the
            new documents, and the embedding dimension is free again.
        """
        self._collection.clear(reset_index=recreate_index)

    def delete_by_filter(self, filters: dict[str, Any]) -> int:
        """Deletes the documents matching a (non-empty) filter and returns how many.

        :raises VecIndexFilterError: The filter is invalid or empty (nothing is deleted).
        """
        checked = _required_filters(filters, "delete_by_filter")
        with _haystack_errors():
            return self._collection.delete(filter=checked)

    def update_by_filter(self, filters: dict[str, Any], meta: dict[str, Any]) -> int:
        """Merges ``meta`` into the meta of every document matching a (non-empty) filter.

        :returns: How many documents matched.
        :raises VecIndexFilterError: The filter is invalid or empty.
        :raises InvalidArgumentError: ``meta`` is not a JSON dict (nothing is changed).
        """
        checked = _required_filters(filters, "update_by_filter")
        if not isinstance(meta, Mapping):
            raise InvalidArgumentError(f"meta must be a dict, got {type(meta).__name__}")
        with _haystack_errors():
            return self._collection.update_metadata(checked, meta)

    def count_documents_by_filter(self, filters: dict[str, Any]) -> int:
        """Returns how many documents match the filter (all of them for ``None`` or ``{}``)."""
        with _haystack_errors():
            return self._collection.count(_filters(filters))

    def _metadatas(self, filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        with _haystack_errors():
            records: list[Record] = self._collection.find(_filters(filters))
        return [r.metadata for r in records]

    def count_unique_metadata_by_filter(
        self, filters: dict[str, Any], metadata_fields: list[str]
    ) -> dict[str, int]:
        """Returns, per metadata field, how many distinct values the matching documents hold.

        :param filters: The filter (``{}``: every document).
        :param metadata_fields: Field names, with or without the ``meta.`` prefix.
        :returns: ``{field without "meta.": count}``. None values are not counted; values of
            different JSON types (1, 1.0, True, "1") are distinct.
        """
        return _convert.count_unique(self._metadatas(filters), metadata_fields)

    def get_metadata_fields_info(self) -> dict[str, dict[str, str]]:
        """Returns ``{field: {"type": "boolean" | "int" | "float" | "keyword"}}`` over all meta."""
        return _convert.fields_info(self._metadatas())

    def get_metadata_field_min_max(self, metadata_field: str) -> dict[str, Any]:
        """Returns ``{"min": ..., "max": ...}`` of a metadata field (``None`` when it has none).

        :param metadata_field: With or without the ``meta.`` prefix.
        """
        return _convert.min_max(self._metadatas(), metadata_field)

    def get_metadata_field_unique_values(
        self,
        metadata_field: str,
        search_term: str | None = None,
        from_: int = 0,
        size: int = 10,
        filters: dict[str, Any] | None = None,
    ) -> tuple[list[Any], int]:
        """Returns a page of a metadata field's distinct values and their total number.

        :param metadata_field: With or without the ``meta.`` prefix.
        :param search_term: Keep values whose string form contains it, ignoring case.
        :param from_: Offset of the page in the sorted distinct values.
        :param size: Page size.
        :param filters: Only consider the documents matching this filter.
        """
        return _convert.unique_values(
            self._metadatas(filters), metadata_field, search_term=search_term, from_=from_,
            size=size,
        )

    # ------------------------------------------------------------------ retrieval
    def embedding_retrieval(
        self,
        query_embedding: list[float],
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        scale_score: bool = False,
        return_embedding: bool = False,
    ) -> list[Document]:
        """Retrieves the ``top_k`` documents most similar to ``query_embedding``, best first.

        Only documents that have an embedding (and match ``filters``) are candidates; with a
        filter, the result is the top-k among the matching documents, not a post-filtered
        top-k. Exact for ``index="flat"``; approximate indexes return their approximation.

        :param query_embedding: The query vector, of the store's dimension.
        :param filters: Haystack filter narrowing the candidates.
        :param top_k: How many documents at most (``0`` returns none).
        :param scale_score: Map scores into ``[0, 1]``: ``(s + 1) / 2`` for cosine, a sigmoid
            of ``s / 100`` for ip, twice a sigmoid of ``-squared distance / 100`` for l2.
            Unscaled, ``Document.score`` is the cosine similarity, the inner product, or the
            negated squared euclidean distance; higher is always better.
        :param return_embedding: Fill ``Document.embedding`` of the results.
        :raises ValueError: Empty query, wrong dimension, NaN, or a negative ``top_k``.
        :raises VecIndexFilterError: The filter is invalid.
        """
        if isinstance(query_embedding, (str, bytes)) or not hasattr(query_embedding, "__len__"):
            raise InvalidArgumentError(
                f"query_embedding must be a list of floats, got {type(query_embedding).__name__}"
            )
        if len(query_embedding) == 0:
            raise InvalidArgumentError("query_embedding must be a non-empty list of floats")
        top_k = check_int(top_k, "top_k", low=0)
        checked = _filters(filters)
        if top_k == 0:
            return []
        with _haystack_errors():
            hits = self._collection.search(
                query_embedding, top_k, filter=checked, include_vectors=return_embedding
            )
        metric = self.metric
        return [
            _convert.to_document(
                hit.record,
                score=to_haystack_score(hit.score, metric, scale=scale_score),
                embedding=return_embedding,
            )
            for hit in hits
        ]

    # ------------------------------------------------------------------ async
    @staticmethod
    async def _in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))

    async def count_documents_async(self) -> int:
        """Async :meth:`count_documents`."""
        return await self._in_thread(self.count_documents)

    async def filter_documents_async(self, filters: dict[str, Any] | None = None) -> list[Document]:
        """Async :meth:`filter_documents`."""
        return await self._in_thread(self.filter_documents, filters)

    async def write_documents_async(
        self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE
    ) -> int:
        """Async :meth:`write_documents`."""
        return await self._in_thread(self.write_documents, documents, policy)

    async def delete_documents_async(self, document_ids: list[str]) -> None:
        """Async :meth:`delete_documents`."""
        await self._in_thread(self.delete_documents, document_ids)

    async def delete_all_documents_async(self, recreate_index: bool = False) -> None:
        """Async :meth:`delete_all_documents`."""
        await self._in_thread(self.delete_all_documents, recreate_index)

    async def delete_by_filter_async(self, filters: dict[str, Any]) -> int:
        """Async :meth:`delete_by_filter`."""
        return await self._in_thread(self.delete_by_filter, filters)

    async def update_by_filter_async(self, filters: dict[str, Any], meta: dict[str, Any]) -> int:
        """Async :meth:`update_by_filter`."""
        return await self._in_thread(self.update_by_filter, filters, meta)

    async def count_documents_by_filter_async(self, filters: dict[str, Any]) -> int:
        """Async :meth:`count_documents_by_filter`."""
        return await self._in_thread(self.count_documents_by_filter, filters)

    async def count_unique_metadata_by_filter_async(
        self, filters: dict[str, Any], metadata_fields: list[str]
    ) -> dict[str, int]:
        """Async :meth:`count_unique_metadata_by_filter`."""
        return await self._in_thread(self.count_unique_metadata_by_filter, filters, metadata_fields)

    async def get_metadata_fields_info_async(self) -> dict[str, dict[str, str]]:
        """Async :meth:`get_metadata_fields_info`."""
        return await self._in_thread(self.get_metadata_fields_info)

    async def get_metadata_field_min_max_async(self, metadata_field: str) -> dict[str, Any]:
        """Async :meth:`get_metadata_field_min_max`."""
        return await self._in_thread(self.get_metadata_field_min_max, metadata_field)

    async def get_metadata_field_unique_values_async(
        self,
        metadata_field: str,
        search_term: str | None = None,
        from_: int = 0,
        size: int = 10,
        filters: dict[str, Any] | None = None,
    ) -> tuple[list[Any], int]:
        """Async :meth:`get_metadata_field_unique_values`."""
        return await self._in_thread(
            self.get_metadata_field_unique_values, metadata_field, search_term, from_, size,
            filters,
        )

    async def embedding_retrieval_async(
        self,
        query_embedding: list[float],
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        scale_score: bool = False,
        return_embedding: bool = False,
    ) -> list[Document]:
        """Async :meth:`embedding_retrieval`."""
        return await self._in_thread(
            self.embedding_retrieval, query_embedding, filters, top_k, scale_score,
            return_embedding,
        )


def _milvus_page_default() -> int:
    """MilvusCollection's default ``page_size`` (what ``from_dict`` reconnects with)."""
    from vecindex_core.milvus.collection import MAX_WINDOW

    return MAX_WINDOW
