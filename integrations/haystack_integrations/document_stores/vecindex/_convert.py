"""Pure conversions between Haystack ``Document`` objects and vecindex ``Collection`` rows.

Nothing here touches a ``Collection``: these functions turn Documents into the column lists
``Collection.upsert`` takes, ``Record`` objects back into Documents, a ``DuplicatePolicy``
into ``upsert``'s ``on_duplicate``, and compute the metadata aggregations Haystack's
optional store methods return (field types, min/max, distinct values).

Field mapping (``Document`` -> ``Record``):

- ``id`` -> ``id`` (Haystack always sets one: the hash of the content when not given);
- ``content`` -> ``text``;
- ``meta`` -> ``metadata`` (JSON types only; the core rejects anything else);
- ``embedding`` -> ``vector`` (stored as float32: a float64 embedding comes back rounded to
  float32, which is what every vector database does);
- ``score`` is never stored (it is a property of a query, not of a document);
- ``blob`` and ``sparse_embedding`` are rejected with :class:`InvalidArgumentError`: the
  store does no sparse retrieval, and binary payloads belong in a blob store with a
  reference in ``meta``. Rejecting them loudly beats dropping data silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from haystack.dataclasses import Document
from haystack.document_stores.types import DuplicatePolicy

from vecindex_core.errors import InvalidArgumentError

if TYPE_CHECKING:
    from vecindex_core import Record

__all__ = [
    "Columns",
    "check_documents",
    "count_unique",
    "dedupe",
    "fields_info",
    "meta_key",
    "min_max",
    "on_duplicate",
    "to_columns",
    "to_document",
    "unique_values",
]

OnDuplicate = Literal["overwrite", "skip", "fail"]


# ------------------------------------------------------------------------- writing
def check_documents(documents: object) -> list[Document]:
    """Return ``documents`` as a list, or raise ``InvalidArgumentError`` (a ``ValueError``).

    Accepts any iterable of ``Document`` except a string or a mapping; rejects every element
    that is not a ``Document``, and any Document carrying a ``blob`` or ``sparse_embedding``.
    """
    if isinstance(documents, (str, bytes, Mapping)) or not isinstance(documents, Iterable):
        raise InvalidArgumentError(
            f"documents must be a list of haystack Document objects, got {type(documents).__name__}"
        )
    docs = list(documents)
    for i, doc in enumerate(docs):
        if not isinstance(doc, Document):
            raise InvalidArgumentError(
                f"documents[{i}] is a {type(doc).__name__}, expected a haystack Document"
            )
        if doc.blob is not None:
            raise InvalidArgumentError(
                f"Document {doc.id!r} has a blob: VecIndexDocumentStore stores id, content, meta "
                "and embedding only; keep the bytes elsewhere and a reference to them in meta"
            )
        if doc.sparse_embedding is not None:
            raise InvalidArgumentError(
                f"Document {doc.id!r} has a sparse_embedding: VecIndexDocumentStore does dense "
                "retrieval only; drop the sparse embedding before writing"
            )
    return docs


def on_duplicate(policy: DuplicatePolicy) -> OnDuplicate:
    """``Collection.upsert``'s ``on_duplicate`` for a Haystack policy (``NONE`` means ``FAIL``)."""
    if not isinstance(policy, DuplicatePolicy):
        raise InvalidArgumentError(f"policy must be a DuplicatePolicy, got {policy!r}")
    if policy is DuplicatePolicy.OVERWRITE:
        return "overwrite"
    if policy is DuplicatePolicy.SKIP:
        return "skip"
    return "fail"  # FAIL, and NONE like InMemoryDocumentStore


def dedupe(documents: Sequence[Document], policy: DuplicatePolicy) -> list[Document]:
    """Resolve ids repeated inside one batch the way writing them one by one would.

    ``OVERWRITE`` keeps the last Document of each id (at the first one's position), ``SKIP``
    keeps the first; ``FAIL`` and ``NONE`` keep every Document, so that the core rejects the
    whole batch as a duplicate.
    """
    mode = on_duplicate(policy)
    if mode == "fail":
        return list(documents)
    chosen: dict[str, Document] = {}
    for doc in documents:
        if mode == "overwrite" or doc.id not in chosen:
            chosen[doc.id] = doc
    return list(chosen.values())


@dataclass(frozen=True)
class Columns:
    """The column lists ``Collection.upsert`` takes, one entry per Document."""

    ids: list[str]
    texts: list[str | None]
    vectors: list[list[float] | None] | None  # None: no Document has an embedding
    metadatas: list[dict[str, Any]]


def to_columns(documents: Sequence[Document]) -> Columns:
    """Split Documents into upsert columns (``vectors`` is None when none has an embedding)."""
    vectors = [doc.embedding for doc in documents]
    return Columns(
        ids=[doc.id for doc in documents],
        texts=[doc.content for doc in documents],
        vectors=vectors if any(v is not None for v in vectors) else None,
        metadatas=[dict(doc.meta) for doc in documents],
    )


# ------------------------------------------------------------------------- reading
def to_document(record: Record, *, score: float | None = None, embedding: bool = True) -> Document:
    """A Haystack Document for a stored record.

    ``embedding=False`` leaves ``Document.embedding`` None even when the record has a vector.
    """
    vector = record.vector if embedding else None
    return Document(
        id=record.id,
        content=record.text,
        meta=dict(record.metadata),
        embedding=None if vector is None else [float(v) for v in vector.tolist()],
        score=score,
    )


# ------------------------------------------------------------------------- metadata aggregation
def meta_key(field: str) -> str:
    """A metadata field name without its optional ``meta.`` prefix."""
    if not isinstance(field, str) or not field:
        raise InvalidArgumentError(f"a metadata field must be a non-empty string, got {field!r}")
    return field.removeprefix("meta.")


def _value_key(value: Any) -> tuple[str, str]:
    """Identity of a JSON value for distinct counting: 1, 1.0, True and "1" stay distinct."""
    return type(value).__name__, json.dumps(value, sort_keys=True)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "keyword"


def fields_info(metadatas: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """``{field: {"type": "boolean" | "int" | "float" | "keyword"}}`` over every metadata dict.

    As in ``InMemoryDocumentStore``: None values are ignored and, when a field holds values
    of several types, the type of the last one seen wins; lists and objects are "keyword".
    """
    types: dict[str, str] = {}
    for meta in metadatas:
        for key, value in meta.items():
            if value is not None:
                types[key] = _type_name(value)
    return {key: {"type": name} for key, name in types.items()}


def count_unique(
    metadatas: Iterable[Mapping[str, Any]], metadata_fields: Sequence[str]
) -> dict[str, int]:
    """Distinct non-None values of each field (keys without the ``meta.`` prefix)."""
    keys = [meta_key(field) for field in metadata_fields]
    seen: dict[str, set[tuple[str, str]]] = {key: set() for key in keys}
    for meta in metadatas:
        for key in keys:
            value = meta.get(key)
            if value is not None:
                seen[key].add(_value_key(value))
    return {key: len(values) for key, values in seen.items()}


def min_max(metadatas: Iterable[Mapping[str, Any]], metadata_field: str) -> dict[str, Any]:
    """``{"min": ..., "max": ...}`` of a field's numeric or string values.

    As in ``InMemoryDocumentStore``: values that are not int, float or str are ignored, and
    the result is ``{"min": None, "max": None}`` when there are none or they do not compare
    (numbers mixed with strings).
    """
    key = meta_key(metadata_field)
    values = [
        meta[key]
        for meta in metadatas
        if isinstance(meta.get(key), (int, float, str))
    ]
    if not values:
        return {"min": None, "max": None}
    try:
        return {"min": min(values), "max": max(values)}
    except TypeError:
        return {"min": None, "max": None}


def unique_values(
    metadatas: Iterable[Mapping[str, Any]],
    metadata_field: str,
    *,
    search_term: str | None = None,
    from_: int = 0,
    size: int = 10,
) -> tuple[list[Any], int]:
    """A page of a field's distinct non-None values and how many there are in all.

    Values keep their JSON type (1, 1.0, True and "1" are four values). ``search_term`` keeps
    the values whose ``str()`` contains it, ignoring case. The order, which pages follow, is
    by ``str(value)`` then type name, as in ``InMemoryDocumentStore``.
    """
    if isinstance(from_, bool) or not isinstance(from_, int) or from_ < 0:
        raise InvalidArgumentError(f"from_ must be an int >= 0, got {from_!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidArgumentError(f"size must be an int >= 0, got {size!r}")
    key = meta_key(metadata_field)
    found: dict[tuple[str, str], Any] = {}
    for meta in metadatas:
        value = meta.get(key)
        if value is not None:
            found.setdefault(_value_key(value), value)
    if search_term:
        needle = search_term.lower()
        found = {k: v for k, v in found.items() if needle in str(v).lower()}
    ordered = sorted(found, key=lambda k: (str(found[k]), k[0]))
    return [found[k] for k in ordered[from_ : from_ + size]], len(ordered)
