"""The pure LangChain filter -> core filter translator (``langchain_vecindex._filters``)."""

from __future__ import annotations

import json

import pytest

from langchain_vecindex._filters import FIELD_OPERATORS, to_core_filter
from vecindex_core import FilterError, InvalidArgumentError


def cmp(field: str, op: str, value):
    return {"field": f"meta.{field}", "operator": op, "value": value}


@pytest.mark.parametrize("empty", [None, {}])
def test_no_filter(empty):
    assert to_core_filter(empty) is None


def test_implicit_equality():
    assert to_core_filter({"genre": "drama"}) == cmp("genre", "==", "drama")


def test_several_keys_are_anded_in_order():
    assert to_core_filter({"a": 1, "b": True}) == {
        "operator": "AND",
        "conditions": [cmp("a", "==", 1), cmp("b", "==", True)],
    }


@pytest.mark.parametrize(
    ("op", "core_op", "value"),
    [
        ("$eq", "==", "x"),
        ("$ne", "!=", 3),
        ("$gt", ">", 1.5),
        ("$gte", ">=", 2),
        ("$lt", "<", "2024-01-01"),
        ("$lte", "<=", 0),
        ("$in", "in", ["a", "b"]),
        ("$nin", "not in", [1, 2]),
        ("$exists", "exists", True),
        ("$exists", "exists", False),
    ],
)
def test_each_field_operator(op, core_op, value):
    assert to_core_filter({"f": {op: value}}) == cmp("f", core_op, value)


def test_operator_table_is_the_documented_one():
    assert set(FIELD_OPERATORS) == {
        "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$not",
    }


def test_in_accepts_a_tuple_as_a_list():
    assert to_core_filter({"f": {"$in": (1, 2)}}) == cmp("f", "in", [1, 2])


def test_several_operators_on_one_field_are_anded():
    assert to_core_filter({"year": {"$gte": 1990, "$lt": 2000}}) == {
        "operator": "AND",
        "conditions": [cmp("year", ">=", 1990), cmp("year", "<", 2000)],
    }


def test_and_or_nested():
    got = to_core_filter(
        {"$and": [{"a": 1}, {"$or": [{"b": {"$gt": 2}}, {"c": {"$in": ["x"]}}]}]}
    )
    assert got == {
        "operator": "AND",
        "conditions": [
            cmp("a", "==", 1),
            {"operator": "OR", "conditions": [cmp("b", ">", 2), cmp("c", "in", ["x"])]},
        ],
    }


def test_single_item_logical_list_is_the_item():
    assert to_core_filter({"$or": [{"a": 1}]}) == cmp("a", "==", 1)


def test_logical_operator_beside_field_keys_is_anded():
    assert to_core_filter({"a": 1, "$or": [{"b": 1}, {"c": 1}]}) == {
        "operator": "AND",
        "conditions": [
            cmp("a", "==", 1),
            {"operator": "OR", "conditions": [cmp("b", "==", 1), cmp("c", "==", 1)]},
        ],
    }


def test_top_level_not_of_a_filter():
    assert to_core_filter({"$not": {"a": 1, "b": 2}}) == {
        "operator": "NOT",
        "conditions": [
            {"operator": "AND", "conditions": [cmp("a", "==", 1), cmp("b", "==", 2)]}
        ],
    }


def test_top_level_not_of_a_list_is_not_and():
    assert to_core_filter({"$not": [{"a": 1}, {"b": 2}]}) == {
        "operator": "NOT",
        "conditions": [cmp("a", "==", 1), cmp("b", "==", 2)],
    }


def test_field_level_not():
    assert to_core_filter({"year": {"$not": {"$gt": 2000}}}) == {
        "operator": "NOT",
        "conditions": [cmp("year", ">", 2000)],
    }


def test_dotted_key_is_a_nested_field():
    assert to_core_filter({"author.name": "Ann"}) == cmp("author.name", "==", "Ann")


def test_equality_with_a_list_or_dict_value_via_eq():
    assert to_core_filter({"tags": ["a", "b"]}) == cmp("tags", "==", ["a", "b"])
    assert to_core_filter({"d": {"$eq": {"x": 1}}}) == cmp("d", "==", {"x": 1})


def test_input_is_not_modified_and_output_is_plain_json():
    original = {"$and": [{"a": {"$in": (1, 2)}}, {"b": {"$ne": None}}]}
    snapshot = json.dumps(original, sort_keys=True)
    out = to_core_filter(original)
    assert json.dumps(original, sort_keys=True) == snapshot
    assert json.loads(json.dumps(out)) == out


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"f": {"$regex": "a.*"}}, "'$regex'"),
        ({"f": {"$like": "a%"}}, "'$like'"),
        ({"$nor": [{"a": 1}]}, "'$nor'"),
        ({"$and": [{"a": {"$between": [1, 2]}}]}, "'$between'"),
        ({"$or": [{"a": 1}, {"$xor": [{"b": 1}]}]}, "'$xor'"),
        ({"f": {"$not": {"$foo": 1}}}, "'$foo'"),
    ],
)
def test_unknown_operator_is_named(bad, named):
    with pytest.raises(FilterError, match=named.replace("$", r"\$")):
        to_core_filter(bad)


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("genre == 'x'", "must be a dict"),
        ([{"a": 1}], "must be a dict"),
        ({"$and": []}, "non-empty list"),
        ({"$or": {"a": 1}}, "list of filters"),
        ({"$and": ["a"]}, r"\$and\[0\] must be a dict"),
        ({"$and": [{}]}, "empty dict"),
        ({"f": {}}, "empty operator dict"),
        ({"f": {"x": 1}}, "not an operator"),
        ({"f": {"$in": "abc"}}, "needs a list"),
        ({"f": {"$nin": 5}}, "needs a list"),
        ({"f": {"$exists": "yes"}}, "True or False"),
        ({"f": {"$not": 3}}, "operator dict"),
        ({"": 1}, "non-empty str"),
        ({1: 1}, "non-empty str"),
    ],
)
def test_malformed_filters_raise_filter_error(bad, fragment):
    with pytest.raises(FilterError, match=fragment):
        to_core_filter(bad)


def test_filter_error_is_a_value_error():
    assert issubclass(FilterError, InvalidArgumentError)
    assert issubclass(FilterError, ValueError)


@pytest.mark.parametrize(
    "lc_filter",
    [
        {"a": 1},
        {"a": {"$gte": 1, "$lte": 3}, "b": {"$in": ["x", "y"]}},
        {"$or": [{"a": {"$ne": 2}}, {"b": {"$nin": ["x"]}}]},
        {"$not": {"a": {"$exists": True}}},
        {"a": {"$not": {"$lt": 0}}},
        {"$and": [{"a.b": 1}, {"$or": [{"c": None}, {"d": {"$eq": [1, 2]}}]}]},
    ],
)
def test_translations_are_valid_core_filters(lc_filter):
    from vecindex_core.filters import validate_filter

    validate_filter(to_core_filter(lc_filter))
