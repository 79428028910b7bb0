"""LangChain metadata filters -> the vecindex core filter language (Haystack 2.x dicts).

Pure functions, no I/O. The LangChain syntax understood here is the one shared by PGVector,
Chroma, Pinecone and MongoDB-style stores:

- ``{"genre": "drama"}``: implicit equality; several keys in one dict are ANDed;
- ``{"year": {"$gte": 1990, "$lt": 2000}}``: operators on a field; several operators on one
  field are ANDed;
- field operators: ``$eq $ne $gt $gte $lt $lte $in $nin $exists`` and ``$not`` (whose operand
  is itself an operator dict: ``{"year": {"$not": {"$gt": 2000}}}``);
- logical operators: ``{"$and": [f, ...]}``, ``{"$or": [f, ...]}`` (non-empty lists of filters,
  nested freely) and ``{"$not": f}`` (``f`` a filter, or a list of filters meaning NOT(AND)).

A key names a metadata field; ``"a.b"`` reads ``metadata["a"]["b"]`` (the core's nested-field
rule). Every condition becomes ``{"field": "meta.<key>", "operator": ..., "value": ...}``, so the
comparison semantics are the core's (Haystack's): ``$ne``/``$nin`` match documents that lack the
field, ordering comparisons never match a missing field, ``$in`` needs a list.

Anything else (an unknown ``$`` operator, an empty ``$and``, a non-dict filter, a field dict
without operators) raises :class:`vecindex_core.FilterError` naming the offending part, before
any search runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vecindex_core import FilterError

__all__ = ["FIELD_OPERATORS", "LOGICAL_OPERATORS", "to_core_filter"]

#: LangChain field operator -> core comparison operator.
_COMPARISONS: dict[str, str] = {
    "$eq": "==",
    "$ne": "!=",
    "$gt": ">",
    "$gte": ">=",
    "$lt": "<",
    "$lte": "<=",
    "$in": "in",
    "$nin": "not in",
    "$exists": "exists",
}
FIELD_OPERATORS: tuple[str, ...] = (*_COMPARISONS, "$not")
LOGICAL_OPERATORS: tuple[str, ...] = ("$and", "$or", "$not")

CoreFilter = dict[str, Any]


def to_core_filter(filter: Mapping[str, Any] | None) -> CoreFilter | None:
    """Translate a LangChain metadata filter into a core filter dict.

    Parameters
    ----------
    filter
        A LangChain dict filter, or None.

    Returns
    -------
    dict or None
        The core (Haystack-syntax) filter; None when ``filter`` is None or ``{}`` (no filter).

    Raises
    ------
    vecindex_core.FilterError
        The filter is malformed or uses an unknown operator; the message names it.
    """
    if filter is None:
        return None
    if not isinstance(filter, Mapping):
        raise FilterError(
            f"a LangChain filter must be a dict such as {{'genre': 'drama'}}, "
            f"got {type(filter).__name__}: {filter!r}"
        )
    if not filter:
        return None
    return _translate(filter, "filter")


def _translate(node: Any, where: str) -> CoreFilter:
    if not isinstance(node, Mapping):
        raise FilterError(f"{where} must be a dict, got {type(node).__name__}: {node!r}")
    if not node:
        raise FilterError(f"{where} is an empty dict; a nested filter needs a condition")
    conditions = [_entry(key, value, where) for key, value in node.items()]
    return _combine("AND", conditions)


def _entry(key: Any, value: Any, where: str) -> CoreFilter:
    if not isinstance(key, str) or not key:
        raise FilterError(f"{where}: a filter key must be a non-empty str, got {key!r}")
    if key in ("$and", "$or"):
        items = _filter_list(key, value, where)
        return _combine(key[1:].upper(), [_translate(f, f"{key}[{i}]") for i, f in items])
    if key == "$not":
        if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            items = _filter_list(key, value, where)
            return _not([_translate(f, f"$not[{i}]") for i, f in items])
        return _not([_translate(value, "$not")])
    if key.startswith("$"):
        raise FilterError(
            f"{where}: unknown LangChain filter operator {key!r} at the top level; "
            f"logical operators are {', '.join(LOGICAL_OPERATORS)}"
        )
    return _field(key, value)


def _field(key: str, value: Any) -> CoreFilter:
    field = f"meta.{key}"
    if not isinstance(value, Mapping):
        return _cmp(field, "==", value)
    if not value:
        raise FilterError(f"field {key!r}: empty operator dict; use {{'$eq': {{}}}} to match {{}}")
    conditions: list[CoreFilter] = []
    for op, operand in value.items():
        if not isinstance(op, str) or not op.startswith("$"):
            raise FilterError(
                f"field {key!r}: {op!r} is not an operator; a dict value must hold operators "
                f"({', '.join(FIELD_OPERATORS)}), use {{'$eq': {{...}}}} to compare with a dict"
            )
        if op == "$not":
            if not isinstance(operand, Mapping) or not operand:
                raise FilterError(
                    f"field {key!r}: '$not' needs an operator dict such as {{'$gt': 5}}, "
                    f"got {operand!r}"
                )
            conditions.append(_not([_field(key, operand)]))
            continue
        core_op = _COMPARISONS.get(op)
        if core_op is None:
            raise FilterError(
                f"field {key!r}: unknown LangChain filter operator {op!r}; "
                f"valid field operators are {', '.join(FIELD_OPERATORS)}"
            )
        if op in ("$in", "$nin"):
            if isinstance(operand, (str, bytes, Mapping)) or not isinstance(operand, Sequence):
                raise FilterError(
                    f"field {key!r}: {op!r} needs a list of values, got {operand!r}"
                )
            operand = list(operand)
        elif op == "$exists" and not isinstance(operand, bool):
            raise FilterError(f"field {key!r}: '$exists' needs True or False, got {operand!r}")
        conditions.append(_cmp(field, core_op, operand))
    return _combine("AND", conditions)


def _filter_list(op: str, value: Any, where: str) -> list[tuple[int, Any]]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise FilterError(f"{where}: {op!r} needs a list of filters, got {value!r}")
    if not value:
        raise FilterError(f"{where}: {op!r} needs a non-empty list of filters")
    return list(enumerate(value))


def _cmp(field: str, operator: str, value: Any) -> CoreFilter:
    return {"field": field, "operator": operator, "value": value}


def _combine(operator: str, conditions: list[CoreFilter]) -> CoreFilter:
    if len(conditions) == 1:
        return conditions[0]
    return {"operator": operator, "conditions": conditions}


def _not(conditions: list[CoreFilter]) -> CoreFilter:
    return {"operator": "NOT", "conditions": conditions}
