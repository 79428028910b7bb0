"""LlamaIndex node <-> vecindex record. Pure: no I/O, no Collection.

Layout of a stored node (one Collection document per node):

- ``id``: ``node.node_id``.
- ``text``: ``node.get_content(metadata_mode=MetadataMode.NONE)``.
- ``vector``: ``node.embedding`` (required).
- ``metadata``: exactly what ``llama_index.core.vector_stores.utils.node_to_metadata_dict(node,
  remove_text=True, flat_metadata=False)`` returns, the layout every LlamaIndex vector store
  uses: the user's metadata keys at the top level (so ``MetadataFilter(key="author")`` is the
  core field ``meta.author``), plus ``doc_id`` / ``ref_doc_id`` / ``document_id`` (the source
  document's id, or the string ``"None"``), ``_node_type`` and ``_node_content`` (the node's
  JSON without its text or embedding, from which ``metadata_dict_to_node`` rebuilds the node
  with its relationships, ``ref_doc_id``, templates and so on). Those reserved keys win over
  user keys of the same name, as in every LlamaIndex store.

Records written by another adapter on the same Collection (no ``_node_content``) come back
as plain ``TextNode`` objects carrying the record's id, text and metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from llama_index.core.schema import BaseNode, MetadataMode, TextNode
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from vecindex_core import InvalidArgumentError, Record

__all__ = ["NODE_CONTENT_KEY", "Rows", "nodes_to_rows", "record_to_node"]

NODE_CONTENT_KEY = "_node_content"


class Rows(NamedTuple):
    """Columns for ``Collection.upsert``, one entry per node."""

    ids: list[str]
    texts: list[str]
    vectors: list[list[float]]
    metadatas: list[dict[str, Any]]


def nodes_to_rows(nodes: Sequence[BaseNode]) -> Rows:
    """Convert a batch of nodes, checking every node before returning anything.

    Raises
    ------
    vecindex_core.InvalidArgumentError
        A node is not a ``BaseNode``, has no embedding, or has metadata that cannot be
        serialised to JSON (the message names the node). Dimension, finiteness and duplicate
        checks are the Collection's.
    """
    rows = Rows([], [], [], [])
    for position, node in enumerate(nodes):
        if not isinstance(node, BaseNode):
            raise InvalidArgumentError(
                f"nodes[{position}] is a {type(node).__name__}, not a llama_index BaseNode"
            )
        node_id = node.node_id
        if node.embedding is None:
            raise InvalidArgumentError(
                f"node {node_id!r} (nodes[{position}]) has no embedding; embed nodes before "
                "adding them (VectorStoreIndex does this for you)"
            )
        try:
            metadata = node_to_metadata_dict(node, remove_text=True, flat_metadata=False)
        except (ValueError, TypeError) as e:  # PydanticSerializationError is a ValueError
            raise InvalidArgumentError(
                f"metadata of node {node_id!r} (nodes[{position}]) cannot be stored as JSON: {e}"
            ) from e
        rows.ids.append(node_id)
        rows.texts.append(node.get_content(metadata_mode=MetadataMode.NONE))
        rows.vectors.append(list(node.embedding))
        rows.metadatas.append(metadata)
    return rows


def record_to_node(record: Record) -> BaseNode:
    """Rebuild the node a record was written from (see the module docstring for the layout)."""
    if NODE_CONTENT_KEY in record.metadata:
        return metadata_dict_to_node(record.metadata, text=record.text)
    return TextNode(id_=record.id, text=record.text or "", metadata=record.metadata)
