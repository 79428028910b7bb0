"""``VecIndexVectorStore``: a LlamaIndex vector store over a vecindex collection (SQLite
``Collection`` or Milvus-backed ``MilvusCollection``)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.types import (
    DEFAULT_PERSIST_DIR,
    DEFAULT_PERSIST_FNAME,
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)

from vecindex_core import BaseCollection, Collection, InvalidArgumentError, NotSupportedError
from vecindex_core.validation import reject_kwargs

from ._convert import nodes_to_rows, record_to_node
from ._filters import (
    REF_DOC_KEY,
    all_of,
    doc_ids_filter,
    field_for,
    node_ids_filter,
    to_core_filter,
)
from ._scores import to_similarity

__all__ = ["VecIndexVectorStore"]

NAMESPACE_SEP = "__"
DEFAULT_NAMESPACE = "default"
MMR_DEFAULT_THRESHOLD = 0.5
MMR_DEFAULT_PREFETCH_FACTOR = 4
MMR_MIN_PREFETCH = 20
QUERY_KWARGS = ("mmr_threshold", "mmr_prefetch_k", "mmr_prefetch_factor", "search_params")
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


class VecIndexVectorStore(BasePydanticVectorStore):
    """LlamaIndex vector store backed by a vecindex ``Collection`` (any registered index).

    Nodes are stored with their text, embedding and the metadata layout every LlamaIndex
    store uses (``node_to_metadata_dict``), so queries and ``get_nodes`` return full nodes
    (relationships, ``ref_doc_id``, metadata) and ``stores_text`` is True: a
    ``VectorStoreIndex`` over this store needs no docstore.

    Args:
        path: SQLite file of the collection (created if missing; the index snapshot lives
            beside it as ``<path>.index``). Every acknowledged write is durable. None keeps
            everything in memory.
        index: Index spec: any registered name or spec string (``"flat"``,
            ``"turboquant"``, ``"ivf_flat(nlist=64)"``...). None means ``"flat"`` for a new
            collection and the stored spec when reopening a path.
        metric: ``"cosine"`` (default for a new collection), ``"ip"`` or ``"l2"``.
        dim: Embedding dimensions; fixed by the first node added when None.
        index_params: Parameters of the index kind, merged with those in ``index``.
        collection_name: Store everything in Milvus instead: ``path`` is then a Milvus
            ``uri`` (a milvus-lite ``.db`` path or ``http://host:19530``), this the Milvus
            collection, and ``index`` a Milvus index type (``"AUTOINDEX"``, ``"HNSW"``...);
            see ``vecindex_core.MilvusCollection``. Credentials cannot be given here: pass
            ``collection=`` for a server that needs them.
        collection: An open ``vecindex_core.Collection`` or ``MilvusCollection`` to use
            (then give none of the arguments above). The fields then describe it.

    Similarities (``VectorStoreQueryResult.similarities``) are what LlamaIndex's own
    ``similarity`` function gives for the metric: cosine similarity for ``cosine`` (what
    ``SimpleVectorStore`` reports), the inner product for ``ip``, and the negated euclidean
    distance for ``l2``. In MMR mode they are still each node's similarity to the query.

    Query keyword arguments (``retriever(vector_store_kwargs={...})``):
        mmr_threshold: MMR's lambda in [0, 1] (1: pure relevance); overrides
            ``VectorStoreQuery.mmr_threshold``; default 0.5.
        mmr_prefetch_k: Candidates MMR chooses from; default
            ``max(20, mmr_prefetch_factor * similarity_top_k)``.
        mmr_prefetch_factor: See above; default 4.
        search_params: Search-time knobs of the index (``{"nprobe": 8}``...).
    Any other keyword raises ``InvalidArgumentError``.

    ``doc_ids`` / ``node_ids`` in a query restrict the search; None or an empty list means
    no restriction (SimpleVectorStore ignores ``doc_ids`` and returns nothing for
    ``node_ids=[]``). ``get_nodes(node_ids=[])`` and ``delete_nodes(node_ids=[])`` touch
    nothing.

    Persistence: ``persist(persist_path)`` writes a complete collection (a SQLite file, plus
    ``<persist_path>.index``) at ``persist_path``, whatever the path's suffix; StorageContext
    calls it with ``<dir>/default__vector_store.json``. A Milvus-backed store persists by
    itself (every write is in Milvus); ``persist`` still exports a complete SQLite copy
    (``MilvusCollection.copy_to``) so that ``from_persist_path`` / ``from_persist_dir``
    and a persisted ``StorageContext`` work as with any LlamaIndex store (the copy opens as
    a SQLite-backed store with the flat index). ``from_persist_path`` /
    ``from_persist_dir`` open that file in place: later writes go to it directly. Only the
    configuration (path, index, metric, dim, index_params) is serialised by ``to_dict``; an
    in-memory store comes back empty from ``from_dict``. The fields hold what was asked for;
    the effective settings (canonical spec, metric, dimension) are on ``client``.

    Bad input (an embedding of the wrong dimension, metadata that is not JSON, an unknown
    filter operator...) raises a ``vecindex_core`` error (a ``ValueError``) and writes
    nothing.

    Examples:
        >>> from llama_index.core import StorageContext, VectorStoreIndex
        >>> store = VecIndexVectorStore(path="rag.db", index="turboquant")
        >>> ctx = StorageContext.from_defaults(vector_store=store)
        >>> index = VectorStoreIndex(nodes, storage_context=ctx, embed_model=embed_model)
    """

    stores_text: bool = True
    is_embedding_query: bool = True
    flat_metadata: bool = False

    path: str | None = Field(default=None, description="SQLite file; None keeps it in memory.")
    index: str | None = Field(default=None, description="Index spec ('flat' when new).")
    metric: Literal["cosine", "ip", "l2"] | None = Field(
        default=None, description="'cosine' (default when new), 'ip' or 'l2'."
    )
    dim: int | None = Field(default=None, description="Embedding dimensions (None: inferred).")
    index_params: dict[str, Any] | None = Field(
        default=None, description="Parameters of the index kind."
    )
    collection_name: str | None = Field(
        default=None, description="Milvus collection (then path is a Milvus uri)."
    )

    _collection: BaseCollection = PrivateAttr()

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        index: str | None = None,
        metric: Literal["cosine", "ip", "l2"] | None = None,
        dim: int | None = None,
        index_params: dict[str, Any] | None = None,
        collection_name: str | None = None,
        collection: BaseCollection | None = None,
        **kwargs: Any,
    ) -> None:
        path = None if path is None else os.fspath(path)
        if collection is not None:
            given = [name for name, value in (
                ("path", path), ("index", index), ("metric", metric), ("dim", dim),
                ("index_params", index_params), ("collection_name", collection_name),
            ) if value is not None]
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
            path, index, metric = collection.path, collection.index_spec, collection.metric
            dim = collection.dim
            collection_name = getattr(collection, "collection_name", None)
        super().__init__(  # type: ignore[call-arg]
            path=path, index=index, metric=metric, dim=dim, index_params=index_params,
            collection_name=collection_name, **kwargs
        )
        if collection is not None:
            self._collection = collection
        elif collection_name is not None:
            if path is None:
                raise InvalidArgumentError("collection_name needs path, the Milvus uri")
            from vecindex_core.milvus.collection import MilvusCollection

            self._collection = MilvusCollection(
                path, collection_name=collection_name, index=index, metric=metric, dim=dim,
                index_params=index_params,
            )
        else:
            self._collection = Collection(
                path, index=index, metric=metric, dim=dim, index_params=index_params
            )

    @classmethod
    def from_params(
        cls,
        path: str | os.PathLike[str] | None = None,
        index: str | None = None,
        metric: Literal["cosine", "ip", "l2"] | None = None,
        dim: int | None = None,
        index_params: dict[str, Any] | None = None,
    ) -> VecIndexVectorStore:
        """Create a store (same arguments as the constructor)."""
        return cls(path, index=index, metric=metric, dim=dim, index_params=index_params)

    @classmethod
    def class_name(cls) -> str:
        return "VecIndexVectorStore"

    @property
    def client(self) -> BaseCollection:
        """The underlying ``vecindex_core.Collection`` (or ``MilvusCollection``)."""
        return self._collection

    def close(self) -> None:
        """Snapshot the index and close the collection (further calls raise)."""
        self._collection.close()

    # ------------------------------------------------------------------ writes
    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Add (or replace, by node id) nodes with embeddings; returns their ids.

        The whole batch is checked first: a node without an embedding, an embedding of the
        wrong dimension or with NaN, metadata that is not JSON, or a node id twice in the
        batch raises and writes nothing.
        """
        reject_kwargs("add", add_kwargs)
        rows = nodes_to_rows(nodes)
        if not rows.ids:
            return []
        self._collection.upsert(rows.ids, rows.texts, rows.vectors, rows.metadatas)
        return rows.ids

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node whose source document is ``ref_doc_id``."""
        reject_kwargs("delete", delete_kwargs)
        if not isinstance(ref_doc_id, str):
            raise InvalidArgumentError(f"ref_doc_id must be a str, got {ref_doc_id!r}")
        self._collection.delete(
            filter={"field": field_for(REF_DOC_KEY), "operator": "==", "value": ref_doc_id}
        )

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Delete the nodes with these ids that also match ``filters``.

        ``node_ids=None`` means any id; ``filters=None`` (or empty filters) means any
        metadata. Calling it with neither raises ``InvalidArgumentError`` (use ``clear()``;
        SimpleVectorStore deletes everything).
        """
        reject_kwargs("delete_nodes", delete_kwargs)
        if node_ids is None and filters is None:
            raise InvalidArgumentError(
                "delete_nodes needs node_ids or filters; use clear() to delete every node"
            )
        flt = all_of(node_ids_filter(node_ids), to_core_filter(filters))
        if flt is None:
            self._collection.clear()
        else:
            self._collection.delete(filter=flt)

    def clear(self) -> None:
        """Delete every node (the index kind, metric and dimension stay)."""
        self._collection.clear()

    # ------------------------------------------------------------------ reads
    def get_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
    ) -> list[BaseNode]:
        """Nodes with these ids (in that order) that match ``filters``.

        ``node_ids=None`` means any id (nodes come in write order); ``filters=None`` any
        metadata. Unknown ids are skipped. Nodes carry no embedding.
        """
        flt = to_core_filter(filters)
        if node_ids is None:
            records = self._collection.find(flt)
        elif flt is None:
            records = self._collection.get(node_ids)
        else:
            found = {r.id: r for r in self._collection.find(all_of(node_ids_filter(node_ids), flt))}
            records = [found[i] for i in dict.fromkeys(node_ids) if i in found]
        return [record_to_node(r) for r in records]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Top ``similarity_top_k`` nodes for ``query.query_embedding``.

        Modes: ``DEFAULT`` (exact top-k among the nodes that pass ``filters``, ``doc_ids``
        and ``node_ids``, up to the index's approximation) and ``MMR``. Other modes raise
        ``NotSupportedError``. See the class docstring for keyword arguments.
        """
        reject_kwargs("query", kwargs, allowed=QUERY_KWARGS)
        if query.query_embedding is None:
            raise InvalidArgumentError("VectorStoreQuery.query_embedding is required")
        k = query.similarity_top_k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidArgumentError(f"similarity_top_k must be an int >= 1, got {k!r}")
        flt = all_of(to_core_filter(query.filters), doc_ids_filter(query.doc_ids))
        ids = query.node_ids or None  # [] means unrestricted, as in most LlamaIndex stores
        params = kwargs.get("search_params")
        try:
            mode = VectorStoreQueryMode(query.mode)
        except ValueError:
            raise InvalidArgumentError(f"unknown query mode {query.mode!r}") from None
        if mode is VectorStoreQueryMode.DEFAULT:
            hits = self._collection.search(
                query.query_embedding, k, filter=flt, ids=ids, params=params
            )
        elif mode is VectorStoreQueryMode.MMR:
            hits = self._collection.mmr(
                query.query_embedding,
                k,
                fetch_k=_mmr_prefetch(k, kwargs),
                lambda_mult=_mmr_lambda(query, kwargs),
                filter=flt,
                ids=ids,
                params=params,
            )
        else:
            raise NotSupportedError(
                f"query mode {mode.value!r} is not supported by VecIndexVectorStore; "
                "use 'default' or 'mmr'"
            )
        metric = self._collection.metric
        return VectorStoreQueryResult(
            nodes=[record_to_node(h.record) for h in hits],
            similarities=[to_similarity(h.score, metric) for h in hits],
            ids=[h.record.id for h in hits],
        )

    # ------------------------------------------------------------------ async
    # The Collection is thread-safe (many readers, one writer), so each call runs in a worker
    # thread and the event loop is never blocked.
    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    async def adelete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters, **delete_kwargs)

    async def aget_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
    ) -> list[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)

    # ------------------------------------------------------------------ persistence
    def persist(
        self,
        persist_path: str = os.path.join(DEFAULT_PERSIST_DIR, DEFAULT_PERSIST_FNAME),
        fs: Any = None,
    ) -> None:
        """Write the whole store to ``persist_path`` (a vecindex collection file).

        When ``persist_path`` is this store's own ``path`` the index snapshot is flushed
        (the data is already durable). Otherwise a complete copy is built beside the target
        and moved into place, replacing ``persist_path`` and ``<persist_path>.index``; the
        target must not be open in another store. Only the local filesystem is supported.
        """
        _check_local_fs(fs)
        target = os.path.abspath(os.fspath(persist_path))
        own = self._collection.path if isinstance(self._collection, Collection) else None
        if own is not None and os.path.exists(target) and os.path.samefile(own, target):
            self._collection.flush()
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{target}.tmp-{uuid.uuid4().hex}"
        try:
            self._collection.copy_to(tmp)  # consistent: one read lock, SQLite backup
            for suffix in (*_SQLITE_SIDE_FILES, ".index"):  # a stale WAL would corrupt the copy
                _remove(target + suffix)
            os.replace(tmp, target)
            if os.path.exists(tmp + ".index"):
                os.replace(tmp + ".index", target + ".index")
        finally:
            for suffix in ("", ".index", *_SQLITE_SIDE_FILES):
                _remove(tmp + suffix)

    @classmethod
    def from_persist_path(cls, persist_path: str, fs: Any = None) -> VecIndexVectorStore:
        """Open the collection file written by :meth:`persist` (in place).

        Raises ``InvalidArgumentError`` (a ``ValueError``, as SimpleVectorStore raises) when
        there is no file at ``persist_path``.
        """
        _check_local_fs(fs)
        if not os.path.isfile(persist_path):
            raise InvalidArgumentError(f"no vecindex collection at {persist_path!r}")
        return cls(persist_path)

    @classmethod
    def from_persist_dir(
        cls,
        persist_dir: str = DEFAULT_PERSIST_DIR,
        namespace: str = DEFAULT_NAMESPACE,
        fs: Any = None,
    ) -> VecIndexVectorStore:
        """Open ``<persist_dir>/<namespace>__vector_store.json``, the file that
        ``StorageContext.persist(persist_dir)`` has this store write."""
        fname = f"{namespace}{NAMESPACE_SEP}{DEFAULT_PERSIST_FNAME}"
        return cls.from_persist_path(os.path.join(persist_dir, fname), fs=fs)


# ---------------------------------------------------------------------------- helpers
def _mmr_lambda(query: VectorStoreQuery, kwargs: dict[str, Any]) -> float:
    lam = kwargs.get("mmr_threshold")
    if lam is None:
        lam = query.mmr_threshold
    if lam is None:
        return MMR_DEFAULT_THRESHOLD
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= lam <= 1.0:
        raise InvalidArgumentError(f"mmr_threshold must be a number in [0, 1], got {lam!r}")
    return float(lam)


def _mmr_prefetch(k: int, kwargs: dict[str, Any]) -> int:
    fetch_k = kwargs.get("mmr_prefetch_k")
    if fetch_k is None:
        factor = kwargs.get("mmr_prefetch_factor", MMR_DEFAULT_PREFETCH_FACTOR)
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor < 1:
            raise InvalidArgumentError(f"mmr_prefetch_factor must be >= 1, got {factor!r}")
        return max(MMR_MIN_PREFETCH, int(factor * k))
    if isinstance(fetch_k, bool) or not isinstance(fetch_k, int) or fetch_k < 1:
        raise InvalidArgumentError(f"mmr_prefetch_k must be an int >= 1, got {fetch_k!r}")
    return max(fetch_k, k)


def _check_local_fs(fs: Any) -> None:
    if fs is None:
        return
    protocol = getattr(fs, "protocol", None)
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol or ())
    if "file" not in protocols and "local" not in protocols:
        raise NotSupportedError(
            f"VecIndexVectorStore persists to the local filesystem only, got fs={fs!r}"
        )


def _remove(path: str) -> None:
    Path(path).unlink(missing_ok=True)
