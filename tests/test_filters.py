"""The filter language (vecindex_core.filters): validation, every operator, Haystack parity.

The reference for the core language is ``haystack.utils.filters.document_matches_filter``
itself (a hypothesis property over random documents and random filter trees); the extension
operators are checked against their documented rules and against LlamaIndex's
``build_metadata_filter_fn`` where the two agree by design.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vecindex_core.base import swap_remove_plan
from vecindex_core.errors import InvalidArgumentError
from vecindex_core.filters import (
    COMPARISON_OPERATORS,
    EXTENSION_OPERATORS,
    HAYSTACK_OPERATORS,
    LOGICAL_OPERATORS,
    FilterColumns,
    FilterError,
    validate_filter,
)

SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DOCS: list[tuple[str, str | None, dict[str, Any]]] = [
    ("d0", "A Foo Document", {"name": "n0", "number": 2, "date": "1969-07-21T20:17:40",
                              "tags": ["a", "b"], "nested": {"x": 1, "y": "u"}}),
    ("d1", "A Bar Document", {"name": "n1", "number": -2.5, "date": "1972-12-11T19:54:58+01:00",
                              "tags": [], "flag": True}),
    ("d2", None, {"name": "n2", "number": None, "tags": ["b"], "nested": {"x": 2}}),
    ("d3", "", {"number": True, "date": None, "flag": False, "nested": "flat"}),
    ("d4", "Doc", {"name": "", "number": 0, "date": "2020-01-01"}),
]


def cols(docs=DOCS) -> FilterColumns:
    fc = FilterColumns()
    fc.append([d[0] for d in docs], [d[1] for d in docs], [d[2] for d in docs])
    return fc


def rows(fc: FilterColumns, f: dict) -> list[int]:
    return np.flatnonzero(fc.evaluate(f)).tolist()


def cmp(field: str, op: str, value: Any = True) -> dict[str, Any]:
    return {"field": field, "operator": op, "value": value}


# --------------------------------------------------------------------------- the language
def test_operator_tables():
    assert LOGICAL_OPERATORS == ("AND", "OR", "NOT")
    assert HAYSTACK_OPERATORS == ("==", "!=", ">", ">=", "<", "<=", "in", "not in")
    assert set(EXTENSION_OPERATORS) == {
        "contains", "any", "all", "text_match", "text_match_insensitive", "is_empty", "exists",
    }
    assert COMPARISON_OPERATORS == HAYSTACK_OPERATORS + EXTENSION_OPERATORS


def test_filter_error_is_the_core_class():
    import vecindex_core as vc

    assert FilterError is vc.errors.FilterError
    assert issubclass(FilterError, InvalidArgumentError)
    assert issubclass(FilterError, ValueError)


def test_validate_returns_plain_copy():
    f = {"operator": "AND", "conditions": (
        {"field": "meta.a", "operator": "in", "value": [np.int64(1), np.float32(2.5)]},
        {"field": "meta.b", "operator": "==", "value": np.bool_(True)},
    )}
    out = validate_filter(f)
    assert out == {"operator": "AND", "conditions": [
        {"field": "meta.a", "operator": "in", "value": [1, 2.5]},
        {"field": "meta.b", "operator": "==", "value": True},
    ]}
    assert type(out["conditions"][0]["value"][0]) is int
    assert type(out["conditions"][1]["value"]) is bool
    assert validate_filter(None) is None
    assert validate_filter({}) is None


def test_no_filter_matches_everything():
    fc = cols()
    assert fc.evaluate(None).all() and fc.evaluate({}).all()
    assert fc.evaluate(None).shape == (5,) and fc.evaluate(None).dtype == bool


@pytest.mark.parametrize(
    ("filter", "message"),
    [
        ({"conditions": []}, "'operator' key missing"),
        ({"operator": "AND"}, "'conditions' key missing"),
        ({"operator": "==", "value": 1}, "'field' key missing"),
        ({"field": "meta.a", "value": 1}, "'operator' key missing"),
        ({"field": "meta.a", "operator": "=="}, "'value' key missing"),
        ({"operator": "XOR", "conditions": []}, "valid operators are ['AND', 'OR', 'NOT']"),
        ({"operator": "and", "conditions": []}, "unknown logical operator 'and'"),
        (cmp("meta.a", "="), "unknown comparison operator '='; valid operators are ['=='"),
        (cmp("meta.a", "nin", [1]), "'not in'"),
        (cmp("meta.a", "in", 1), "operator 'in' needs a list"),
        (cmp("meta.a", "not in", "ab"), "operator 'not in' needs a list"),
        (cmp("meta.a", "in", (1, 2)), "unsupported filter value (1, 2) of type tuple"),
        (cmp("meta.a", "any", "x"), "operator 'any' needs a list"),
        (cmp("meta.a", "all", 3), "operator 'all' needs a list"),
        (cmp("meta.a", ">", [1]), "operator '>' needs None, a number"),
        (cmp("meta.a", "<=", {"a": 1}), "operator '<=' needs None, a number"),
        (cmp("meta.a", ">=", "abc"), "'abc' is not an ISO-8601 date"),
        (cmp("meta.a", "<", "1"), "'1' is not an ISO-8601 date"),
        (cmp("meta.a", "text_match", 1), "operator 'text_match' needs a str"),
        (cmp("meta.a", "exists", "yes"), "operator 'exists' needs a bool"),
        (cmp("embedding", "==", 1), "field 'embedding' cannot be filtered"),
        (cmp("meta", "==", 1), "field 'meta' cannot be filtered"),
        (cmp("foo.bar", "==", 1), "unknown field 'foo.bar'"),
        (cmp("content.x", "==", 1), "unknown field 'content.x'"),
        (cmp("meta..a", "==", 1), "has an empty key"),
        (cmp("", "==", 1), "'field' is empty"),
        (cmp(3, "==", 1), "'field' must be a str"),
        (cmp("meta.a", "==", {1: 2}), "dict keys in filter values must be str"),
        (cmp("meta.a", "==", object()), "unsupported filter value"),
        ({"field": "meta.a", "operator": "==", "value": 1, "extra": 2}, "unexpected key(s)"),
        ({"operator": "OR", "conditions": [], "x": 1}, "unexpected key(s) ['x']"),
        ({"operator": "OR", "conditions": {"a": 1}}, "'conditions' must be a list"),
        ("meta.a == 1", "filter must be a dict or None"),
        ({"operator": "AND", "conditions": ["x"]}, "a filter must be a dict, got 'x'"),
    ],
)
def test_invalid_filters(filter, message):
    with pytest.raises(FilterError) as e:
        validate_filter(filter)
    assert message in str(e.value)
    with pytest.raises(FilterError):
        cols().evaluate(filter)


def test_error_names_the_offending_part():
    f = {"operator": "AND", "conditions": [
        cmp("meta.a", "==", 1),
        {"operator": "OR", "conditions": [cmp("meta.b", "==", 1), cmp("meta.c", "~", 1)]},
    ]}
    with pytest.raises(FilterError, match=r"filter\['conditions'\]\[1\]\['conditions'\]\[1\]"):
        validate_filter(f)


def test_validation_happens_before_evaluation():
    # Haystack stops at the first true OR branch; vecindex validates the whole tree first.
    f = {"operator": "OR", "conditions": [cmp("id", "!=", "nope"), cmp("meta.a", "in", 5)]}
    with pytest.raises(FilterError, match="needs a list"):
        cols().evaluate(f)
    with pytest.raises(FilterError):
        FilterColumns().evaluate(f)  # even with no rows


def test_bare_field_is_a_metadata_key():
    fc = cols()
    assert rows(fc, cmp("name", "==", "n1")) == rows(fc, cmp("meta.name", "==", "n1")) == [1]
    assert rows(fc, cmp("id", "==", "d2")) == [2]


# --------------------------------------------------------------------------- Haystack operators
def test_equality_and_none():
    fc = cols()
    assert rows(fc, cmp("meta.number", "==", 2)) == [0]
    assert rows(fc, cmp("meta.number", "==", 2.0)) == [0]
    assert rows(fc, cmp("meta.number", "==", 1)) == [3]  # True == 1, like Python
    assert rows(fc, cmp("meta.number", "==", True)) == [3]
    assert rows(fc, cmp("meta.number", "==", 0)) == [4]
    assert rows(fc, cmp("meta.number", "==", None)) == [2]
    assert rows(fc, cmp("meta.flag", "==", None)) == [0, 2, 4]  # missing counts as None
    assert rows(fc, cmp("meta.flag", "!=", None)) == [1, 3]
    assert rows(fc, cmp("meta.name", "!=", "n0")) == [1, 2, 3, 4]
    assert rows(fc, cmp("content", "==", None)) == [2]
    assert rows(fc, cmp("content", "==", "")) == [3]
    assert rows(fc, cmp("meta.tags", "==", ["b"])) == [2]
    assert rows(fc, cmp("meta.tags", "==", "b")) == []
    assert rows(fc, cmp("meta.nested", "==", {"x": 2})) == [2]
    assert rows(fc, cmp("meta.nested.x", "==", 1)) == [0]
    assert rows(fc, cmp("meta.nested.x", "==", None)) == [1, 3, 4]  # d3's nested is a str
    assert rows(fc, cmp("meta.missing", "==", None)) == [0, 1, 2, 3, 4]
    assert rows(fc, cmp("meta.missing", "==", 1)) == []


def test_date_equality_follows_haystack_naive_aware_rule():
    docs = [
        ("a", None, {"d": "2020-01-01T10:00:00"}),          # naive
        ("b", None, {"d": "2020-01-01T10:00:00+02:00"}),    # aware, 08:00 UTC
        ("c", None, {"d": "2020-01-01T08:00:00Z"}),         # aware, same instant as b
        ("e", None, {"d": "20200101T100000"}),              # not YYYY-MM-DD: no date equality
    ]
    fc = cols(docs)
    assert rows(fc, cmp("meta.d", "==", "2020-01-01 10:00:00")) == [0, 1]  # naive: wall clock
    assert rows(fc, cmp("meta.d", "==", "2020-01-01T08:00:00+00:00")) == [1, 2]  # instants
    # an aware value lends its zone to a naive one: a is read as 10:00+00:00
    assert rows(fc, cmp("meta.d", "==", "2020-01-01T10:00:00+00:00")) == [0]
    assert rows(fc, cmp("meta.d", "==", datetime(2020, 1, 1, 10))) == [0, 1]
    assert rows(fc, cmp("meta.d", "in", ["2020-01-01T08:00Z", "x"])) == [1, 2]
    assert rows(fc, cmp("meta.d", "!=", "2020-01-01T08:00:00Z")) == [0, 3]
    assert rows(fc, cmp("meta.d", "==", "20200101T100000")) == [3]  # plain string equality


def test_ordering_numbers_and_dates():
    fc = cols()
    assert rows(fc, cmp("meta.number", ">", 0)) == [0, 3]  # True > 0
    assert rows(fc, cmp("meta.number", ">=", 0)) == [0, 3, 4]
    assert rows(fc, cmp("meta.number", "<", 0)) == [1]
    assert rows(fc, cmp("meta.number", "<=", -2.5)) == [1]
    assert rows(fc, cmp("meta.number", ">", None)) == []
    assert rows(fc, cmp("meta.date", ">", "1970-01-01")) == [1, 4]
    # a naive value borrows the aware one's zone: 19:54:58 is compared with d1's wall clock
    assert rows(fc, cmp("meta.date", "<", "1972-12-11T19:54:58")) == [0]
    assert rows(fc, cmp("meta.date", "<=", "1972-12-11T19:54:58")) == [0, 1]
    assert rows(fc, cmp("meta.date", "<", "1972-12-11T18:54:58Z")) == [0]
    assert rows(fc, cmp("meta.date", "<=", "1972-12-11T18:54:58Z")) == [0, 1]
    aware = datetime(1972, 12, 11, 18, 54, 58, tzinfo=timezone.utc)
    assert rows(fc, cmp("meta.date", "<=", aware)) == [0, 1]


def test_ordering_errors_like_haystack():
    fc = cols()
    with pytest.raises(FilterError, match="holds the string 'n0'"):
        fc.evaluate(cmp("meta.name", ">", 1))
    with pytest.raises(FilterError, match="needs an ISO-8601 date"):
        fc.evaluate(cmp("meta.number", ">", "2020-01-01"))
    with pytest.raises(FilterError, match="holds the list"):
        fc.evaluate(cmp("meta.tags", "<", 3))
    with pytest.raises(FilterError, match="non-date|ISO-8601"):
        cols([("a", None, {"d": "soon"})]).evaluate(cmp("meta.d", ">", "2020-01-01"))
    # ids are strings: a number cannot order them
    with pytest.raises(FilterError):
        fc.evaluate(cmp("id", ">", 0))


def test_ordering_errors_only_on_rows_that_are_reached():
    fc = cols()
    bad = cmp("meta.name", ">", 1)  # every document holding a name would raise
    only_d3 = cmp("id", "==", "d3")  # d3 has no name
    assert rows(fc, {"operator": "AND", "conditions": [only_d3, bad]}) == []
    assert rows(fc, {"operator": "NOT", "conditions": [only_d3, bad]}) == [0, 1, 2, 3, 4]
    not_d3 = cmp("id", "!=", "d3")
    assert rows(fc, {"operator": "OR", "conditions": [not_d3, bad]}) == [0, 1, 2, 4]
    with pytest.raises(FilterError):
        fc.evaluate({"operator": "AND", "conditions": [bad, only_d3]})
    with pytest.raises(FilterError):
        fc.evaluate({"operator": "OR", "conditions": [only_d3, bad]})


def test_in_and_not_in():
    fc = cols()
    assert rows(fc, cmp("meta.number", "in", [2, -2.5, 99])) == [0, 1]
    assert rows(fc, cmp("meta.number", "in", [None, 0])) == [2, 4]
    assert rows(fc, cmp("meta.name", "in", ["n1", "n2", "zz"])) == [1, 2]
    assert rows(fc, cmp("meta.name", "not in", ["n1", "n2"])) == [0, 3, 4]
    assert rows(fc, cmp("meta.tags", "in", [["a", "b"], []])) == [0, 1]
    assert rows(fc, cmp("meta.name", "in", [])) == []
    assert rows(fc, cmp("meta.name", "not in", [])) == [0, 1, 2, 3, 4]
    many = [f"n{i}" for i in range(50)]  # the np.isin branch
    assert rows(fc, cmp("meta.name", "in", many)) == [0, 1, 2]
    assert rows(fc, cmp("meta.number", "in", list(range(-3, 40)))) == [0, 3, 4]


def test_logical_operators():
    fc = cols()
    a, b = cmp("meta.name", "==", "n0"), cmp("meta.number", "==", 2)
    c = cmp("meta.number", "==", -2.5)
    assert rows(fc, {"operator": "AND", "conditions": [a, b]}) == [0]
    assert rows(fc, {"operator": "OR", "conditions": [a, c]}) == [0, 1]
    assert rows(fc, {"operator": "NOT", "conditions": [a, b]}) == [1, 2, 3, 4]
    assert rows(fc, {"operator": "AND", "conditions": []}) == [0, 1, 2, 3, 4]
    assert rows(fc, {"operator": "OR", "conditions": []}) == []
    assert rows(fc, {"operator": "NOT", "conditions": []}) == []
    nested = {"operator": "OR", "conditions": [{"operator": "NOT", "conditions": [a]}, b]}
    assert rows(fc, nested) == [0, 1, 2, 3, 4]


def test_numbers_beyond_float64_compare_exactly():
    big = 2**64 + 1
    docs = [("a", None, {"v": big}), ("b", None, {"v": 2**64}), ("c", None, {"v": 10**400}),
            ("d", None, {"v": 1.5})]
    fc = cols(docs)
    assert rows(fc, cmp("meta.v", "==", big)) == [0]
    assert rows(fc, cmp("meta.v", "==", 2**64)) == [1]
    assert rows(fc, cmp("meta.v", ">", 2**64)) == [0, 2]
    assert rows(fc, cmp("meta.v", "<", big)) == [1, 3]
    assert rows(fc, cmp("meta.v", "<=", 2**64 + 2)) == [0, 1, 3]
    assert rows(fc, cmp("meta.v", ">=", -(10**500))) == [0, 1, 2, 3]
    assert rows(fc, cmp("meta.v", "in", [big, 1.5])) == [0, 3]


def test_nan_never_equal():
    fc = cols([("a", None, {"v": math.nan}), ("b", None, {"v": 1.0})])
    assert rows(fc, cmp("meta.v", "==", math.nan)) == []
    assert rows(fc, cmp("meta.v", "!=", math.nan)) == [0, 1]
    assert rows(fc, cmp("meta.v", ">", 0)) == [1]


# --------------------------------------------------------------------------- extensions
def test_contains():
    fc = cols()
    assert rows(fc, cmp("meta.tags", "contains", "b")) == [0, 2]
    assert rows(fc, cmp("content", "contains", "Document")) == [0, 1]
    assert rows(fc, cmp("meta.number", "contains", 2)) == []  # numbers contain nothing
    assert rows(fc, cmp("meta.nested", "contains", "x")) == []  # dicts contain nothing
    assert rows(fc, cmp("meta.nested", "contains", "fl")) == [3]
    ints = cols([("a", None, {"t": [1, 2]}), ("b", None, {"t": [True]}), ("c", None, {"t": 1})])
    assert rows(ints, cmp("meta.t", "contains", 1)) == [0, 1]  # Python ``in``: True == 1


def test_any_and_all():
    fc = cols()
    assert rows(fc, cmp("meta.tags", "any", ["b", "z"])) == [0, 2]
    assert rows(fc, cmp("meta.tags", "any", [])) == []
    assert rows(fc, cmp("meta.name", "any", ["n1", "n4"])) == [1]  # a scalar in the list
    assert rows(fc, cmp("meta.number", "any", [2, 1])) == [0, 3]
    assert rows(fc, cmp("meta.tags", "all", ["a", "b"])) == [0]
    assert rows(fc, cmp("meta.tags", "all", ["b"])) == [0, 2]
    assert rows(fc, cmp("meta.tags", "all", [])) == [0, 1, 2]
    assert rows(fc, cmp("meta.name", "all", ["n1"])) == [1]  # a scalar is a one-item list
    assert rows(fc, cmp("meta.name", "all", ["n1", "n2"])) == []
    assert rows(fc, cmp("meta.name", "all", [])) == [0, 1, 2, 4]  # every present value
    assert rows(fc, cmp("meta.nested", "any", [{"x": 2}])) == [2]


def test_text_match():
    fc = cols()
    assert rows(fc, cmp("content", "text_match", "Doc")) == [0, 1, 4]
    assert rows(fc, cmp("content", "text_match", "doc")) == []
    assert rows(fc, cmp("content", "text_match_insensitive", "DOC")) == [0, 1, 4]
    assert rows(fc, cmp("content", "text_match", "")) == [0, 1, 3, 4]  # None is not text
    assert rows(fc, cmp("meta.tags", "text_match", "a")) == []  # lists are not text


def test_is_empty_and_exists():
    fc = cols()
    assert rows(fc, {"field": "meta.tags", "operator": "is_empty"}) == [1, 3, 4]
    assert rows(fc, cmp("meta.name", "is_empty", True)) == [3, 4]  # missing, ""
    assert rows(fc, cmp("content", "is_empty", True)) == [2, 3]
    assert rows(fc, cmp("meta.number", "is_empty", True)) == [2]  # 0 is not empty
    assert rows(fc, cmp("meta.date", "exists", True)) == [0, 1, 4]
    assert rows(fc, cmp("meta.date", "exists", False)) == [2, 3]
    assert rows(fc, cmp("meta.nope", "exists", True)) == []


def test_extensions_agree_with_llamaindex():
    vs = pytest.importorskip("llama_index.core.vector_stores")
    from llama_index.core.vector_stores.utils import build_metadata_filter_fn

    values = [None, 0, 3, "", "ab", "abc", "B", [], ["ab"], ["ab", "c"], [1, 3], [3]]
    docs = [(f"d{i}", None, {} if v is None and i == 0 else {"k": v}) for i, v in enumerate(values)]
    fc = cols(docs)
    metas = {d[0]: d[2] for d in docs}
    cases = [
        ("contains", "ab"), ("contains", 3), ("contains", "c"),
        ("any", ["ab", "zz"]), ("any", [3]), ("all", ["ab", "c"]), ("all", [1, 3]), ("all", []),
        ("text_match", "b"), ("text_match", "B"), ("text_match_insensitive", "b"),
        ("is_empty", None),
    ]
    for op, value in cases:
        ours = fc.evaluate({"field": "meta.k", "operator": op, "value": value})
        flt = vs.MetadataFilters(filters=[vs.MetadataFilter(key="k", value=value, operator=op)])
        fn = build_metadata_filter_fn(lambda i: metas[i], flt)
        for j, (doc_id, _, meta) in enumerate(docs):
            v = meta.get("k")
            if op in ("any", "all") and isinstance(v, str):
                continue  # documented difference: a string is a scalar here, not a substring
            try:
                expected = fn(doc_id)
            except TypeError:
                continue  # LlamaIndex raises on mismatched types; vecindex says "no match"
            assert bool(ours[j]) == expected, (op, value, v)


def reference_extension(op: str, fv: Any, v: Any) -> bool:
    """The documented rule of each extension operator, for one stored value (None: missing)."""
    if op == "exists":
        return (v is not None) == fv
    if op == "is_empty":
        return v is None or (isinstance(v, (str, list)) and len(v) == 0)
    if v is None:
        return False
    if op == "contains":
        return fv in v if isinstance(v, list) else (
            isinstance(v, str) and isinstance(fv, str) and fv in v)
    if op == "any":
        return any(x in v for x in fv) if isinstance(v, list) else v in fv
    if op == "all":
        return all(x in v for x in fv) if isinstance(v, list) else all(x == v for x in fv)
    if op == "text_match":
        return isinstance(v, str) and fv in v
    assert op == "text_match_insensitive"
    return isinstance(v, str) and fv.lower() in v.lower()


EXT_SCALARS = st.sampled_from([None, True, False, 0, 1, 1.0, 2, 2.5, "", "a", "ab", "B", "Ab"])
EXT_LISTS = st.lists(st.one_of(EXT_SCALARS, st.lists(EXT_SCALARS, max_size=2)), max_size=3)
EXT_VALUES = st.one_of(EXT_SCALARS, EXT_SCALARS, EXT_LISTS,
                       st.fixed_dictionaries({"k": EXT_SCALARS}))
_ABSENT_EXT = object()
EXT_FILTER = st.one_of(
    st.tuples(st.sampled_from(["contains"]), st.one_of(EXT_SCALARS, st.lists(EXT_SCALARS))),
    st.tuples(st.sampled_from(["any", "all"]),
              st.lists(st.one_of(EXT_SCALARS, EXT_SCALARS, EXT_LISTS), max_size=3)),
    st.tuples(st.sampled_from(["text_match", "text_match_insensitive"]),
              st.sampled_from(["", "a", "A", "b", "ab"])),
    st.tuples(st.sampled_from(["is_empty", "exists"]), st.booleans()),
)


@settings(SETTINGS, max_examples=300)
@given(values=st.lists(st.one_of(EXT_VALUES, st.just(_ABSENT_EXT)), min_size=1, max_size=10),
       filters=st.lists(EXT_FILTER, min_size=1, max_size=5), remove=st.booleans())
def test_extension_operators_follow_their_rules(values, filters, remove):
    docs = [(f"d{i}", None, {} if v is _ABSENT_EXT else {"k": v}) for i, v in enumerate(values)]
    fc = cols(docs)
    if remove and len(docs) > 1:  # also through a swap-remove (moves the list index)
        src, dst = fc.remove(np.array([0]))
        for a, b in zip(src.tolist(), dst.tolist(), strict=True):
            docs[b] = docs[a]
        docs.pop()
    for op, fv in filters:
        got = fc.evaluate({"field": "meta.k", "operator": op, "value": fv}).tolist()
        expected = [reference_extension(op, fv, d[2].get("k")) for d in docs]
        assert got == expected, (op, fv)


def test_stored_lists_are_private_copies():
    tags = ["a"]
    nested = {"x": [1]}
    fc = cols([("a", None, {"tags": tags, "n": nested})])
    tags.append("b")
    nested["x"].append(2)
    assert rows(fc, cmp("meta.tags", "contains", "b")) == []
    assert rows(fc, cmp("meta.n", "==", {"x": [1]})) == [0]
    assert rows(fc, cmp("meta.n.x", "==", [1])) == [0]


# --------------------------------------------------------------------------- mutation
def test_append_replace_remove_match_rebuild():
    rng = np.random.default_rng(7)
    pool: list[Any] = [None, 0, 1, 2.5, True, False, "x", "y", "", "2021-03-04",
                       "2021-03-04T05:00:00+01:00", ["x"], ["x", "y"], [], {"p": 1}, {"p": "x"},
                       2**70 + 1]

    def rand_doc(i: int) -> tuple[str, str | None, dict[str, Any]]:
        meta = {k: pool[rng.integers(len(pool))] for k in ("a", "b", "c") if rng.random() < 0.7}
        if rng.random() < 0.2:
            meta[f"rare{i % 3}"] = int(rng.integers(3))
        text = None if rng.random() < 0.2 else f"t{i} {rng.integers(5)}"
        return f"id{i}", text, meta

    filters = [
        cmp("meta.a", "==", "x"), cmp("meta.a", "!=", None), cmp("meta.b", "in", [1, "y", None]),
        cmp("meta.c", "contains", "x"), cmp("meta.a.p", "==", 1), cmp("meta.rare1", "exists"),
        cmp("content", "text_match", "3"), cmp("meta.b", "any", ["x", 2.5]),
        cmp("meta.c", "==", "2021-03-04T04:00:00Z"), cmp("meta.a", "is_empty"),
        {"operator": "OR", "conditions": [cmp("meta.a", "==", 2**70 + 1), cmp("id", "==", "id3")]},
    ]
    fc = FilterColumns()
    model: list[tuple[str, str | None, dict[str, Any]]] = []
    counter = 0
    for step in range(60):
        action = rng.integers(3)
        if action == 0 or not model:
            batch = [rand_doc(counter + j) for j in range(int(rng.integers(1, 30)))]
            counter += len(batch)
            fc.append([d[0] for d in batch], [d[1] for d in batch], [d[2] for d in batch])
            model.extend(batch)
        elif action == 1:
            r = rng.choice(len(model), size=int(rng.integers(1, len(model) + 1)), replace=False)
            batch = [rand_doc(counter + j) for j in range(r.size)]
            counter += len(batch)
            fc.replace(r, [d[0] for d in batch], [d[1] for d in batch], [d[2] for d in batch])
            for row, d in zip(r.tolist(), batch, strict=True):
                model[row] = d
        else:
            r = np.sort(rng.choice(len(model), size=int(rng.integers(1, len(model) + 1)),
                                   replace=False))
            src, dst = fc.remove(r)
            plan = swap_remove_plan(len(model), r)
            assert np.array_equal(src, plan.src) and np.array_equal(dst, plan.dst)
            for s, d in zip(src.tolist(), dst.tolist(), strict=True):
                model[d] = model[s]
            del model[len(model) - r.size:]
        assert len(fc) == len(model)
        fresh = cols(model)
        for f in filters:
            assert np.array_equal(fc.evaluate(f), fresh.evaluate(f)), (step, f)


def test_remove_moves_and_empty():
    fc = cols()
    src, dst = fc.remove(np.array([], dtype=np.int64))
    assert src.size == dst.size == 0 and len(fc) == 5
    src, dst = fc.remove(np.array([0, 3]))
    assert src.tolist() == [4] and dst.tolist() == [0]  # the last survivor fills the first hole
    assert rows(fc, cmp("id", "in", ["d4", "d1", "d2"])) == [0, 1, 2]
    assert rows(fc, cmp("meta.tags", "contains", "b")) == [2]
    fc.clear()
    assert len(fc) == 0 and fc.evaluate(cmp("meta.name", "==", "n1")).shape == (0,)


def test_string_dictionary_is_compacted():
    n = 3000
    docs = [(f"id{i}", f"text {i}", {"s": f"v{i}"}) for i in range(n)]
    fc = cols(docs)
    fc.remove(np.arange(n - 10, dtype=np.int64))
    left = docs[n - 10:][::-1]
    fresh = cols(left)
    for f in [cmp("meta.s", "==", f"v{n - 1}"), cmp("content", "text_match", "29"),
              cmp("meta.s", "in", [f"v{n - 5}", "v3"])]:
        assert np.array_equal(np.sort(fc.evaluate(f)), np.sort(fresh.evaluate(f)))
    assert len(fc._meta[("s",)].str_list) < 1100  # dead strings were dropped


def test_replace_clears_every_field():
    fc = cols()
    fc.replace(np.array([0]), ["new"], [None], [{"other": 1}])
    assert rows(fc, cmp("meta.name", "==", "n0")) == []
    assert rows(fc, cmp("meta.tags", "contains", "a")) == []
    assert rows(fc, cmp("meta.nested.x", "==", 1)) == []
    assert rows(fc, cmp("meta.other", "==", 1)) == [0]
    assert rows(fc, cmp("id", "==", "new")) == [0]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda fc: fc.append(["a"], [None, None], [{}]), "same length"),
        (lambda fc: fc.append([1], [None], [{}]), "ids must be str"),
        (lambda fc: fc.append(["a"], [3], [{}]), "texts must be str or None"),
        (lambda fc: fc.append(["a"], [None], ["meta"]), "metadata must be a mapping"),
        (lambda fc: fc.append(["a", "b"], [None, None], [{"k": 1}, {2: 1}]), "keys must be str"),
        (lambda fc: fc.append(["a"], [None], [{"k": {"x": {3: 1}}}]), "under 'meta.k.x'"),
        (lambda fc: fc.replace([9], ["a"], [None], [{}]), "rows must be in 0..4"),
        (lambda fc: fc.replace([1, 1], ["a", "b"], [None, None], [{}, {}]), "unique"),
        (lambda fc: fc.replace([1], ["a"], [None], [{1: 2}]), "keys must be str"),
        (lambda fc: fc.remove([3, 1]), "sorted and unique"),
        (lambda fc: fc.remove([5]), "rows must be in"),
        (lambda fc: fc.remove([0.5]), "integer"),
    ],
)
def test_bad_batches_change_nothing(call, message):
    fc = cols()
    before = [fc.evaluate(f) for f in PROBES]
    with pytest.raises(InvalidArgumentError, match=message):
        call(fc)
    assert len(fc) == 5
    for f, mask in zip(PROBES, before, strict=True):
        assert np.array_equal(fc.evaluate(f), mask)


PROBES = [cmp("meta.name", "==", "n0"), cmp("meta.k", "exists"), cmp("id", "in", ["d1", "a"]),
          cmp("meta.tags", "contains", "b"), cmp("meta.number", ">", 0),
          cmp("meta.nested.x", "exists")]


def test_bad_filter_changes_nothing():
    fc = cols()
    before = [fc.evaluate(f) for f in PROBES]
    for bad in [cmp("meta.name", ">", 1), cmp("meta.name", "in", "n0"),
                {"operator": "AND", "conditions": [cmp("meta.name", "==", "n0"), {"x": 1}]}]:
        with pytest.raises(FilterError):
            fc.evaluate(bad)
    assert len(fc) == 5
    for f, mask in zip(PROBES, before, strict=True):
        assert np.array_equal(fc.evaluate(f), mask)


# --------------------------------------------------------------------------- Haystack parity
NUMS = st.sampled_from([None, True, False, 0, 1, 2, 1.0, 2.5, -1, math.nan, 2**64 + 1])
STRS = st.sampled_from(["foo", "bar", "", "Foo", "id1"])  # neither ISO dates nor dateutil dates
DATES = st.sampled_from([
    "2020-01-01", "2020-01-01T00:00:00", "2020-01-01T01:00:00+01:00", "2019-12-31T23:00:00Z",
    "2020-01-01T00:00:00-05:00", "2021-06-15 12:30:00", "20200101", "1999-12-31T23:59:59.5",
])
SCALARS = st.one_of(NUMS, STRS, DATES)
LISTS = st.lists(st.sampled_from([0, 1, 2.5, True, "foo", "bar", "2020-01-01", None]), max_size=2)
VALUES = st.one_of(SCALARS, SCALARS, SCALARS, LISTS, st.fixed_dictionaries({"x": NUMS}))
_ABSENT = object()


def _present(**fields: st.SearchStrategy) -> st.SearchStrategy[dict]:
    """A dict whose keys are usually present (an absent key is the last, least simple choice)."""
    strategies = {k: st.one_of(v, st.just(_ABSENT)) for k, v in fields.items()}
    return st.fixed_dictionaries(strategies).map(
        lambda d: {k: v for k, v in d.items() if v is not _ABSENT}
    )


META = _present(
    a=VALUES,                         # anything
    num=NUMS,                         # numbers, bools, None: orderable against numbers
    date=st.one_of(DATES, st.none()),  # orderable against dates
    s=st.one_of(STRS, DATES),
    n=st.one_of(_present(x=NUMS, y=VALUES), NUMS),
)
DOC = st.tuples(st.one_of(st.none(), STRS, DATES), META)
#: Each field with the values it usually holds, so that comparisons often split the rows.
TYPED = {
    "id": st.sampled_from(["id0", "id1", "id3", "x"]),
    "content": st.one_of(STRS, DATES),
    "meta.a": VALUES,
    "meta.num": NUMS,
    "num": NUMS,  # a bare key is a metadata key
    "meta.date": DATES,
    "meta.s": st.one_of(STRS, DATES),
    "meta.n": st.one_of(NUMS, st.fixed_dictionaries({"x": NUMS})),
    "meta.n.x": NUMS,
    "meta.n.y": VALUES,
    "meta.zz": VALUES,  # never stored
}
ORDERED = {"meta.num": NUMS, "num": NUMS, "meta.n.x": NUMS, "meta.date": DATES,
           "content": DATES, "meta.s": DATES}


def comparison(field: str) -> st.SearchStrategy[dict]:
    typed = TYPED[field]
    value = st.one_of(typed, typed, VALUES)
    ordered = st.one_of(ORDERED.get(field, NUMS), NUMS, DATES)

    def make(op: str, v: Any) -> dict:
        return {"field": field, "operator": op, "value": v}

    return st.one_of(
        st.builds(make, st.sampled_from(["==", "!="]), value),
        st.builds(make, st.sampled_from([">", ">=", "<", "<="]), ordered),
        st.builds(make, st.sampled_from(["in", "not in"]), st.lists(value, max_size=4)),
    )


FILTERS = st.recursive(
    st.deferred(lambda: COMPARISONS),
    lambda children: st.builds(lambda o, c: {"operator": o, "conditions": c},
                               st.sampled_from(["AND", "OR", "NOT"]),
                               st.lists(children, min_size=1, max_size=3)),
    max_leaves=6,
)


def haystack_mask(filter: dict, docs: list) -> list[bool] | str:
    from haystack.errors import FilterError as HaystackFilterError
    from haystack.utils.filters import document_matches_filter

    out = []
    for d in docs:
        try:
            out.append(document_matches_filter(filter, d))
        except (HaystackFilterError, TypeError):
            return "raises"
    return out


COMPARISONS = st.sampled_from(sorted(TYPED)).flatmap(comparison)


@settings(SETTINGS, max_examples=300)
@given(docs=st.lists(DOC, min_size=4, max_size=12),
       filters=st.lists(st.one_of(COMPARISONS, FILTERS), min_size=1, max_size=6))
def test_matches_haystack(docs, filters):
    haystack = pytest.importorskip("haystack")
    hdocs = [haystack.Document(id=f"id{i}", content=c, meta=m) for i, (c, m) in enumerate(docs)]
    fc = FilterColumns()
    fc.append([d.id for d in hdocs], [c for c, _ in docs], [m for _, m in docs])
    for f in filters:
        expected = haystack_mask(f, hdocs)
        try:
            got: list[bool] | str = fc.evaluate(f).tolist()
        except FilterError:
            got = "raises"
        assert got == expected, f


def test_matches_haystack_on_its_own_fixture():
    pytest.importorskip("haystack")
    from haystack.testing.document_store import create_filterable_docs

    hdocs = create_filterable_docs()
    fc = FilterColumns()
    fc.append([d.id for d in hdocs], [d.content for d in hdocs], [d.meta for d in hdocs])
    filters = [
        cmp("meta.number", "==", 100), cmp("meta.date", ">", "1972-12-11T19:54:58"),
        cmp("meta.page", "in", ["100", "123"]), cmp("meta.chapter", "!=", "intro"),
        cmp("meta.number", "not in", [9, 10]), cmp("meta.date", "<=", "1969-07-21T20:17:40"),
        cmp("meta.no_embedding", "==", True), cmp("meta.name", "==", None),
        {"operator": "NOT", "conditions": [cmp("meta.number", "==", 2),
                                           cmp("meta.name", "==", "name_0")]},
    ]
    for f in filters:
        try:
            got: list[bool] | str = fc.evaluate(f).tolist()
        except FilterError:
            got = "raises"
        assert got == haystack_mask(f, hdocs), f


def test_dates_microsecond_precision_and_far_years():
    d0 = datetime(1, 1, 1)
    d1 = datetime(9999, 12, 31, 23, 59, 59, 999999)
    docs = [("a", None, {"d": d0.isoformat()}), ("b", None, {"d": d1.isoformat()}),
            ("c", None, {"d": (d1 - timedelta(microseconds=1)).isoformat()})]
    fc = cols(docs)
    assert rows(fc, cmp("meta.d", ">", "9999-12-31T23:59:59.999998")) == [1]
    assert rows(fc, cmp("meta.d", "<", "0001-01-01T00:00:00.000001")) == [0]
