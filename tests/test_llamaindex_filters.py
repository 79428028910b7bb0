"""The pure LlamaIndex MetadataFilters -> core filter translator (no store involved)."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from llama_index.vector_stores.vecindex._filters import (
    MATCH_NOTHING,
    SUPPORTED_OPERATORS,
    all_of,
    doc_ids_filter,
    field_for,
    node_ids_filter,
    to_core_filter,
)
from vecindex_core import FilterError
from vecindex_core.filters import validate_filter

Op = FilterOperator
AND, OR, NOT = FilterCondition.AND, FilterCondition.OR, FilterCondition.NOT


def f(key: str, value: Any, op: FilterOperator = Op.EQ) -> MetadataFilter:
    return MetadataFilter(key=key, value=value, operator=op)


def fs(*items: Any, condition: FilterCondition | None = AND) -> MetadataFilters:
    return MetadataFilters(filters=list(items), condition=condition)


def cmp(key: str, op: str, value: Any) -> dict[str, Any]:
    return {"field": f"meta.{key}", "operator": op, "value": value}


# ------------------------------------------------------------------------- one operator each
OPERATOR_CASES = [
    (Op.EQ, "x", cmp("k", "==", "x")),
    (Op.NE, 3, cmp("k", "!=", 3)),
    (Op.GT, 1.5, cmp("k", ">", 1.5)),
    (Op.GTE, 2, cmp("k", ">=", 2)),
    (Op.LT, 2, cmp("k", "<", 2)),
    (Op.LTE, 2, cmp("k", "<=", 2)),
    (Op.IN, ["a", "b"], cmp("k", "in", ["a", "b"])),
    (Op.NIN, [1, 2], cmp("k", "not in", [1, 2])),
    (Op.ANY, ["a"], cmp("k", "any", ["a"])),
    (Op.ALL, ["a", "b"], cmp("k", "all", ["a", "b"])),
    (Op.TEXT_MATCH, "Ab", cmp("k", "text_match", "Ab")),
    (Op.TEXT_MATCH_INSENSITIVE, "ab", cmp("k", "text_match_insensitive", "ab")),
    (Op.CONTAINS, "a", cmp("k", "contains", "a")),
    (Op.IS_EMPTY, None, {"operator": "OR", "conditions": [cmp("k", "is_empty", True),
                                                          cmp("k", "==", "")]}),
]


@pytest.mark.parametrize(("op", "value", "want"), OPERATOR_CASES,
                         ids=[c[0].name for c in OPERATOR_CASES])
def test_each_operator(op: FilterOperator, value: Any, want: dict[str, Any]) -> None:
    got = to_core_filter(fs(f("k", value, op)))
    assert got == want
    assert validate_filter(got) == want  # the core accepts every translation


def test_every_llamaindex_operator_is_covered() -> None:
    assert {c[0] for c in OPERATOR_CASES} == set(FilterOperator)
    assert set(SUPPORTED_OPERATORS) == {op.value for op in FilterOperator}


def test_field_names() -> None:
    assert field_for("author") == "meta.author"
    assert to_core_filter(fs(f("a.b", 1))) == cmp("a.b", "==", 1)  # nested metadata path
    assert to_core_filter(fs(f("doc_id", "d1"))) == cmp("doc_id", "==", "d1")


# ------------------------------------------------------------------------- conditions
def test_none_and_empty_mean_unrestricted() -> None:
    assert to_core_filter(None) is None
    for condition in (AND, OR, NOT, None):
        assert to_core_filter(fs(condition=condition)) is None


def test_and_or() -> None:
    a, b = f("a", 1), f("b", 2)
    assert to_core_filter(fs(a, b)) == {"operator": "AND",
                                        "conditions": [cmp("a", "==", 1), cmp("b", "==", 2)]}
    assert to_core_filter(fs(a, b, condition=OR)) == {
        "operator": "OR", "conditions": [cmp("a", "==", 1), cmp("b", "==", 2)]}
    assert to_core_filter(fs(a, b, condition=None)) == to_core_filter(fs(a, b))  # None = and


def test_single_filter_is_not_wrapped() -> None:
    assert to_core_filter(fs(f("a", 1), condition=OR)) == cmp("a", "==", 1)


def test_not_means_none_of() -> None:
    """LlamaIndex's NOT (as SimpleVectorStore evaluates it) is "no filter matches"; the core's
    NOT is not(AND), so NOT wraps an OR."""
    got = to_core_filter(fs(f("a", 1), f("b", 2), condition=NOT))
    assert got == {"operator": "NOT", "conditions": [
        {"operator": "OR", "conditions": [cmp("a", "==", 1), cmp("b", "==", 2)]}]}
    assert to_core_filter(fs(f("a", 1), condition=NOT)) == {
        "operator": "NOT", "conditions": [cmp("a", "==", 1)]}


def test_nested() -> None:
    tree = fs(
        fs(f("a", 1), f("b", 2), condition=OR),
        fs(f("c", [3], Op.IN), condition=NOT),
        f("d", 4, Op.GT),
    )
    want = {"operator": "AND", "conditions": [
        {"operator": "OR", "conditions": [cmp("a", "==", 1), cmp("b", "==", 2)]},
        {"operator": "NOT", "conditions": [cmp("c", "in", [3])]},
        cmp("d", ">", 4),
    ]}
    got = to_core_filter(tree)
    assert got == want
    assert validate_filter(got) == want


def test_empty_nested_groups_fold() -> None:
    """An empty group matches everything (SimpleVectorStore's rule for the top level)."""
    a = f("a", 1)
    assert to_core_filter(fs(a, fs(condition=OR))) == cmp("a", "==", 1)  # AND(x, true) = x
    assert to_core_filter(fs(a, fs(), condition=OR)) is None  # OR(x, true) = true
    assert to_core_filter(fs(a, fs(), condition=NOT)) == MATCH_NOTHING  # none of (.., true)
    assert to_core_filter(fs(fs(fs()))) is None
    assert validate_filter(MATCH_NOTHING) == MATCH_NOTHING


def test_output_is_fresh() -> None:
    first = to_core_filter(fs(f("a", 1), fs(), condition=NOT))
    assert first is not None
    first["value"].append("x")
    assert MATCH_NOTHING["value"] == []


# ------------------------------------------------------------------------- errors
def test_unknown_operator() -> None:
    bad = MetadataFilter.model_construct(key="k", value=1, operator="regex")
    with pytest.raises(FilterError, match=r"unknown filter operator 'regex'.*valid operators"):
        to_core_filter(fs(bad))
    with pytest.raises(FilterError, match="regex"):  # nested too
        to_core_filter(fs(f("a", 1), fs(bad)))


def test_unknown_condition() -> None:
    bad = MetadataFilters.model_construct(filters=[f("a", 1)], condition="xor")
    with pytest.raises(FilterError, match=r"unknown filter condition 'xor'"):
        to_core_filter(bad)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (f("k", "a", Op.IN), "needs a list"),
        (f("k", 1, Op.NIN), "needs a list"),
        (f("k", "a", Op.ANY), "needs a list"),
        (f("k", "a", Op.ALL), "needs a list"),
        (f("k", 3, Op.TEXT_MATCH), "needs a string"),
        (f("k", ["a"], Op.TEXT_MATCH_INSENSITIVE), "needs a string"),
        (f("", 1), "non-empty"),
    ],
)
def test_values_of_the_wrong_shape(bad: MetadataFilter, match: str) -> None:
    with pytest.raises(FilterError, match=match):
        to_core_filter(fs(bad))


def test_not_a_filter() -> None:
    with pytest.raises(FilterError, match="MetadataFilters"):
        to_core_filter({"author": "alice"})  # type: ignore[arg-type]
    bad = MetadataFilters.model_construct(filters=[{"key": "a", "value": 1}], condition=AND)
    with pytest.raises(FilterError, match="MetadataFilter or MetadataFilters"):
        to_core_filter(bad)


def test_filter_error_is_a_value_error() -> None:
    assert issubclass(FilterError, ValueError)


# ------------------------------------------------------------------------- helpers
def test_all_of() -> None:
    a, b = cmp("a", "==", 1), cmp("b", "==", 2)
    assert all_of() is None and all_of(None, None) is None
    assert all_of(a, None) == a
    assert all_of(a, b) == {"operator": "AND", "conditions": [a, b]}


def test_id_restrictions() -> None:
    assert doc_ids_filter(None) is None and doc_ids_filter([]) is None
    assert doc_ids_filter(["d1"]) == {"field": "meta.ref_doc_id", "operator": "in",
                                      "value": ["d1"]}
    assert node_ids_filter(None) is None
    assert node_ids_filter([]) == {"field": "id", "operator": "in", "value": []}
    assert node_ids_filter(("a", "b")) == {"field": "id", "operator": "in", "value": ["a", "b"]}
    with pytest.raises(FilterError):
        node_ids_filter("abc")  # a bare string is not a list of ids
    with pytest.raises(FilterError):
        doc_ids_filter([1])  # type: ignore[list-item]
