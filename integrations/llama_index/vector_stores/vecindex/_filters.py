"""LlamaIndex ``MetadataFilters`` -> vecindex core filter dicts. Pure: no I/O, no Collection.

The core filter language is Haystack 2.x's filter dict plus vecindex's extension operators
(``contains``, ``any``, ``all``, ``text_match``, ``text_match_insensitive``, ``is_empty``).

Layout the translation relies on (see :mod:`._convert`): a node is stored with the metadata
dict LlamaIndex's ``node_to_metadata_dict`` produces, i.e. the user's metadata keys at the top
level plus ``doc_id`` / ``ref_doc_id`` / ``document_id`` / ``_node_type`` / ``_node_content``.
A ``MetadataFilter(key="author")`` therefore addresses the core field ``"meta.author"``, and
``key="doc_id"`` filters by source document, exactly the keys ``SimpleVectorStore`` filters on.

Semantics, operator by operator (``SimpleVectorStore``'s ``build_metadata_filter_fn`` is the
reference; where this translation differs the difference is listed):

==========================  ===========================================================
LlamaIndex                  core filter
==========================  ===========================================================
EQ / NE                     ``==`` / ``!=``
GT / GTE / LT / LTE         ``>`` / ``>=`` / ``<`` / ``<=`` (ordering a non-date string
                            raises ``FilterError``; SimpleVectorStore compares strings
                            lexicographically)
IN / NIN                    ``in`` / ``not in``; the value must be a list (SimpleVectorStore
                            does a substring test for a string value)
ANY / ALL                   ``any`` / ``all``; the value must be a list
CONTAINS                    ``contains`` (list element or substring)
TEXT_MATCH[_INSENSITIVE]    ``text_match`` / ``text_match_insensitive``; the value must be a
                            string. A non-string field does not match (SimpleVectorStore
                            raises ``TypeError``)
IS_EMPTY                    ``is_empty`` OR ``== ""`` (missing, None, ``[]`` or ``""``, as
                            SimpleVectorStore)
==========================  ===========================================================

Conditions: ``and`` -> ``AND``; ``or`` -> ``OR``; ``not`` -> "none of the filters matches",
i.e. ``NOT(OR(...))`` (SimpleVectorStore's meaning; Haystack's own ``NOT`` is
``not AND(...)``). A missing condition means ``and``. Nested ``MetadataFilters`` are supported
at any depth (SimpleVectorStore raises ``ValueError`` for them). A ``MetadataFilters`` with an
empty ``filters`` list matches everything, at the top level (as SimpleVectorStore) and nested.

Also differs: a key containing ``.`` addresses nested metadata (``"a.b"`` reads
``metadata["a"]["b"]``), as in the core language; SimpleVectorStore looks the dotted key up
literally. ``EQ`` with value ``None`` matches a missing or ``None`` field (Haystack's rule);
SimpleVectorStore's ``EQ None`` never matches anything.

Every problem (unknown operator or condition, a value of the wrong shape, something that is
not a filter) raises :class:`vecindex_core.FilterError` naming the offending filter, before
anything runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from vecindex_core import FilterError

__all__ = [
    "MATCH_NOTHING",
    "META_PREFIX",
    "REF_DOC_KEY",
    "SUPPORTED_OPERATORS",
    "all_of",
    "doc_ids_filter",
    "field_for",
    "node_ids_filter",
    "to_core_filter",
]

CoreFilter = dict[str, Any]
"""A core (Haystack-syntax) filter dict."""

META_PREFIX = "meta."
REF_DOC_KEY = "ref_doc_id"
MATCH_NOTHING: CoreFilter = {"field": "id", "operator": "in", "value": []}
"""A filter no document matches (what a filter that folds to *false* becomes)."""

# operator -> core operator, for operators that translate one to one
_DIRECT: dict[FilterOperator, str] = {
    FilterOperator.EQ: "==",
    FilterOperator.NE: "!=",
    FilterOperator.GT: ">",
    FilterOperator.GTE: ">=",
    FilterOperator.LT: "<",
    FilterOperator.LTE: "<=",
    FilterOperator.IN: "in",
    FilterOperator.NIN: "not in",
    FilterOperator.ANY: "any",
    FilterOperator.ALL: "all",
    FilterOperator.CONTAINS: "contains",
    FilterOperator.TEXT_MATCH: "text_match",
    FilterOperator.TEXT_MATCH_INSENSITIVE: "text_match_insensitive",
}
_NEEDS_LIST = frozenset(
    {FilterOperator.IN, FilterOperator.NIN, FilterOperator.ANY, FilterOperator.ALL}
)
_NEEDS_STR = frozenset({FilterOperator.TEXT_MATCH, FilterOperator.TEXT_MATCH_INSENSITIVE})
SUPPORTED_OPERATORS: tuple[str, ...] = (
    *(op.value for op in _DIRECT),
    FilterOperator.IS_EMPTY.value,
)

# A translated subtree: a core filter, or a constant folded away (True: matches everything).
_Tree = CoreFilter | bool


def field_for(key: str) -> str:
    """The core field for a LlamaIndex metadata key: ``"author"`` -> ``"meta.author"``."""
    return META_PREFIX + key


def to_core_filter(filters: MetadataFilters | None) -> CoreFilter | None:
    """Translate LlamaIndex filters into one core filter dict.

    Parameters
    ----------
    filters : MetadataFilters or None
        None, or filters with an empty ``filters`` list, mean "no restriction".

    Returns
    -------
    dict or None
        None when nothing is restricted; :data:`MATCH_NOTHING` when the filters can match
        no document (for example ``not`` around an empty group); otherwise a core filter.

    Raises
    ------
    vecindex_core.FilterError
        An unknown operator or condition, a value of the wrong shape, or an object that is
        neither ``MetadataFilter`` nor ``MetadataFilters``.
    """
    if filters is None:
        return None
    if not isinstance(filters, MetadataFilters):
        raise FilterError(
            f"filters must be a llama_index MetadataFilters, got {type(filters).__name__}"
        )
    return _finish(_group(filters))


def all_of(*parts: CoreFilter | None) -> CoreFilter | None:
    """AND of the given core filters; None parts (no restriction) are left out."""
    present = [p for p in parts if p is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return {"operator": "AND", "conditions": present}


def doc_ids_filter(doc_ids: Sequence[str] | None) -> CoreFilter | None:
    """Restrict to nodes whose source document (``ref_doc_id``) is one of ``doc_ids``.

    None and an empty list mean "no restriction" (see ``VecIndexVectorStore.query``).
    """
    if not doc_ids:
        return None
    return {"field": field_for(REF_DOC_KEY), "operator": "in", "value": _str_list(doc_ids)}


def node_ids_filter(node_ids: Sequence[str] | None) -> CoreFilter | None:
    """Restrict to the given node ids; None means no restriction, ``[]`` matches nothing."""
    if node_ids is None:
        return None
    return {"field": "id", "operator": "in", "value": _str_list(node_ids)}


# ------------------------------------------------------------------------------ internals
def _str_list(values: Sequence[str]) -> list[str]:
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise FilterError(f"ids must be a list of strings, got {values!r}")
    return list(values)


def _finish(tree: _Tree) -> CoreFilter | None:
    if tree is True:
        return None
    if tree is False:
        return {**MATCH_NOTHING, "value": []}
    return tree


def _condition(filters: MetadataFilters) -> FilterCondition:
    raw = filters.condition
    if raw is None:
        return FilterCondition.AND
    try:
        return FilterCondition(raw)
    except ValueError:
        valid = ", ".join(c.value for c in FilterCondition)
        raise FilterError(f"unknown filter condition {raw!r}; valid conditions: {valid}") from None


def _group(filters: MetadataFilters) -> _Tree:
    condition = _condition(filters)
    if not filters.filters:
        return True  # an empty group restricts nothing, whatever its condition
    children = [_node(f) for f in filters.filters]
    if condition is FilterCondition.AND:
        return _fold(children, "AND")
    if condition is FilterCondition.OR:
        return _fold(children, "OR")
    inner = _fold(children, "OR")  # NOT: none of the filters matches
    if isinstance(inner, bool):
        return not inner
    return {"operator": "NOT", "conditions": [inner]}


def _fold(children: list[_Tree], operator: str) -> _Tree:
    """AND/OR of ``children``, folding the constants True/False (match all/nothing) away."""
    absorbing = operator == "OR"  # True absorbs an OR, False absorbs an AND
    if any(c is absorbing for c in children):
        return absorbing
    kept = [c for c in children if c is not (not absorbing)]
    if not kept:
        return not absorbing
    if len(kept) == 1:
        return kept[0]
    return {"operator": operator, "conditions": kept}


def _node(item: Any) -> _Tree:
    if isinstance(item, MetadataFilters):
        return _group(item)
    if isinstance(item, MetadataFilter):
        return _leaf(item)
    raise FilterError(
        f"a filter must be a MetadataFilter or MetadataFilters, got {type(item).__name__}: "
        f"{item!r}"
    )


def _operator(f: MetadataFilter) -> FilterOperator:
    try:
        op = FilterOperator(f.operator)
    except ValueError:
        op = None
    if op is None or (op not in _DIRECT and op is not FilterOperator.IS_EMPTY):
        raise FilterError(
            f"unknown filter operator {f.operator!r} in filter on key {f.key!r}; "
            f"valid operators: {', '.join(SUPPORTED_OPERATORS)}"
        )
    return op


def _leaf(f: MetadataFilter) -> CoreFilter:
    if not isinstance(f.key, str) or not f.key:
        raise FilterError(f"a filter key must be a non-empty string, got {f.key!r}")
    op = _operator(f)
    field = field_for(f.key)
    if op is FilterOperator.IS_EMPTY:
        return {
            "operator": "OR",
            "conditions": [
                {"field": field, "operator": "is_empty", "value": True},
                {"field": field, "operator": "==", "value": ""},
            ],
        }
    value = f.value
    if op in _NEEDS_LIST and not isinstance(value, list):
        raise FilterError(
            f"operator {op.value!r} on key {f.key!r} needs a list value, got {value!r}"
        )
    if op in _NEEDS_STR and not isinstance(value, str):
        raise FilterError(
            f"operator {op.value!r} on key {f.key!r} needs a string value, got {value!r}"
        )
    return {"field": field, "operator": _DIRECT[op], "value": value}
