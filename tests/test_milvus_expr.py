"""The Milvus filter translator (``vecindex_core.milvus.expr``).

Pure tests of the produced strings and of the row layout, then the equivalence test: an
adversarial corpus is written with :func:`row_fields` into a collection on embedded
milvus-lite and on a real Milvus 2.3.5 server, and for many filters (a fixed list and a
hypothesis search) ``query(filter=to_expr(f))`` must return exactly the ids
``FilterColumns.evaluate(f)`` selects, and :func:`error_checks` must match a row exactly when
FilterColumns raises.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymilvus import DataType, MilvusClient

from vecindex_core.errors import FilterError, InvalidArgumentError, NotSupportedError
from vecindex_core.filters import COMPARISON_OPERATORS, FilterColumns
from vecindex_core.milvus.expr import (
    MAX_JSON_BYTES,
    ROW_FIELDS,
    error_checks,
    id_in_expr,
    row_fields,
    row_meta,
    supports_infix_like,
    to_expr,
)

# --------------------------------------------------------------------------- corpus
SCALARS: list[Any] = [
    None, True, False, 0, 1, -1, 1.0, 0.0, -0.0, 1.5, 2, 2.5, -3.25, 10**15, 2**53 + 1,
    -(2**53) - 3, 2**62, 1e300, "1", "0", "true", "", "a", "A", "abc", "ABC", "xabcx",
    "Abc%_\\x", "a\"b'c", "ünïcödé", "ÜNÏ", "😀 emoji", "line\nbreak\r", "100%", "a_b",
    "\ue000\ue001", "%", "_", "\\", "İstanbul", "tab\there",
    "2020-01-01", "2020-01-01T00:00:00", "2020-01-01T01:00:00+01:00", "2020-01-01T00:00:00Z",
    "2020-01-01 12:30", "2021-06-15T08:00:00-05:00", "20200101", "2020-01-01T24:00",
    "1999-12-31T23:59:59.999999", "0001-01-01", "9999-12-31T23:59:59", "2020-13-01",
    "2020-06-01t10:00",
]
LISTS: list[Any] = [
    [], [1], [1, "a"], ["a", "b"], [True], [1.0, 2], [None], [[1], "x"], [{"k": 1}],
    ["2020-01-01"], ["abc", "ABC"], [0, False], ["%", "_"], [2**53 + 1],
]
DICTS: list[Any] = [{"x": 1}, {"x": {"y": "z"}}, {}, {"b": True, "x": None}, {"x": "abc"}]
NUMS: list[Any] = [None, True, False, 0, 1, -1, 1.0, 1.5, 2, 2.5, -3.25, 10**15, 2**53 + 1,
                   -(2**53) - 3, 2**62, -(2**63), 2**63 - 1, 1e300, -1e-300]
DATES: list[Any] = [None, "2020-01-01", "2020-01-01T00:00:00", "2020-01-01T01:00:00+01:00",
                    "2020-01-01T00:00:00Z", "2020-01-01 12:30", "2021-06-15T08:00:00-05:00",
                    "20200101", "1999-12-31T23:59:59.999999", "0001-01-01",
                    "9999-12-31T23:59:59", "2020-01-01T00:00:00.000001+00:00",
                    "2019-12-31T23:00:00-01:00"]
STRS: list[Any] = [None, "", "a", "A", "abc", "ABC", "xAbCx", "100%", "a_b", "Abc%_\\x",
                   "a\"b'c", "ünïcödé", "ÜNÏ", "😀 emoji", "line\nbreak", "\ue000\ue001", "İ"]
ODD_KEYS = ['we"ird', "back\\slash", "ключ", "[0]", "sp ace", "dot.key"]


def _anything(rng: random.Random) -> Any:
    r = rng.random()
    if r < 0.6:
        return rng.choice(SCALARS)
    if r < 0.85:
        return rng.choice(LISTS)
    return rng.choice(DICTS)


def make_corpus(n: int = 200, seed: int = 0) -> list[tuple[str, str | None, dict[str, Any]]]:
    """``n`` documents ``(id, text, metadata)`` with adversarial metadata (deterministic)."""
    rng = random.Random(seed)
    odd_ids = ['q"1', "back\\slash", "2020-01-01", "ÜNI%_", "line\nid", "A"]
    docs = []
    for i in range(n):
        doc_id = odd_ids[i] if i < len(odd_ids) else f"d{i:03d}"
        text = None if rng.random() < 0.15 else rng.choice(
            [s for s in SCALARS if isinstance(s, str)] + ["Hello World", "hello world"])
        meta: dict[str, Any] = {}
        if rng.random() < 0.8:
            meta["a"] = _anything(rng)
        if rng.random() < 0.8:
            meta["num"] = rng.choice(NUMS)
        if rng.random() < 0.8:
            meta["when"] = rng.choice(DATES)
        if rng.random() < 0.8:
            meta["s"] = rng.choice(STRS)
        if rng.random() < 0.7:
            meta["l"] = rng.choice([*LISTS, None, "a", 1])
        r = rng.random()
        if r < 0.5:
            meta["n"] = {"x": _anything(rng)}
            if rng.random() < 0.5:
                meta["n"]["y"] = rng.choice(NUMS)
        elif r < 0.65:
            meta["n"] = _anything(rng)
        if rng.random() < 0.2:
            meta[rng.choice(ODD_KEYS)] = rng.choice(SCALARS)
        docs.append((doc_id, text, meta))
    return docs


CORPUS = make_corpus()
IDS = [d[0] for d in CORPUS]


@pytest.fixture(scope="module")
def columns() -> FilterColumns:
    cols = FilterColumns()
    cols.append([d[0] for d in CORPUS], [d[1] for d in CORPUS], [d[2] for d in CORPUS])
    return cols


# --------------------------------------------------------------------------- deployments
class Deployment:
    def __init__(self, kind: str, client: MilvusClient, name: str) -> None:
        self.kind = kind
        self.client = client
        self.name = name
        self.infix_like = supports_infix_like(client.get_server_version())

    def ids(self, expr: str, limit: int = 16384) -> list[str]:
        return sorted(r["id"] for r in self.rows(expr, limit, ["id"]))

    def rows(self, expr: str, limit: int,
             fields: tuple[str, ...] | list[str] = ("id", "text", "has_text", "meta"),
             ) -> list[dict[str, Any]]:
        # "Session" reads this client's own writes; a "Strong" query waits for the next time
        # tick on the 2.3.5 server (about 300 ms each, measured), "Session" takes about 8 ms.
        return self.client.query(self.name, filter=expr, limit=limit, output_fields=list(fields),
                                 consistency_level="Session")


def _create(client: MilvusClient, name: str) -> None:
    """A collection built from the ROW_FIELDS contract, holding the corpus."""
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=512)
    schema.add_field("uid", DataType.INT64)
    types = {"varchar": DataType.VARCHAR, "json": DataType.JSON, "bool": DataType.BOOL,
             "int64": DataType.INT64}
    for field, kind in ROW_FIELDS:
        extra = {"max_length": 4096} if kind == "varchar" else {}
        schema.add_field(field, types[kind], **extra)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    params = client.prepare_index_params()
    params.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=params,
                             consistency_level="Strong")
    rows = [{"id": d, "uid": i, "vec": [float(i), 1.0], **row_fields(d, t, m)}
            for i, (d, t, m) in enumerate(CORPUS)]
    client.insert(name, rows)
    client.load_collection(name)


@pytest.fixture(scope="module", params=["lite", "server"])
def dep(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Deployment]:
    if request.param == "lite":
        uri = str(tmp_path_factory.mktemp("milvus-expr") / "expr.db")
    else:
        uri = request.getfixturevalue("milvus_server").uri
    client = MilvusClient(uri=uri)
    name = "vecindex_expr_test"
    if client.has_collection(name):
        client.drop_collection(name)
    _create(client, name)
    yield Deployment(request.param, client, name)
    client.drop_collection(name)
    client.close()


# --------------------------------------------------------------------------- the comparison
SUBSTRING_OPS = ("text_match", "text_match_insensitive", "contains")


def _needs_infix(f: Any) -> bool:
    if "conditions" in f:
        return any(_needs_infix(c) for c in f["conditions"])
    return f["operator"] in SUBSTRING_OPS and isinstance(f.get("value"), str) and f["value"] != ""


def check(dep: Deployment, cols: FilterColumns, f: dict[str, Any]) -> str | None:
    """None when Milvus agrees with FilterColumns on ``f``, else a description of the mismatch."""
    try:
        expr = to_expr(f, infix_like=dep.infix_like)
        checks = error_checks(f, infix_like=dep.infix_like)
    except NotSupportedError:
        if dep.infix_like or not _needs_infix(f):
            return f"unexpected NotSupportedError for {f!r}"
        return None
    if not dep.infix_like and _needs_infix(f):
        return f"expected NotSupportedError for {f!r}"
    try:
        want = sorted(IDS[i] for i in cols.evaluate(f).nonzero()[0])
        raised = False
    except FilterError:
        raised = True
    hit = None
    for chk in checks:
        rows = dep.rows(chk.expr, limit=1)
        if rows:
            hit = chk.error(rows[0])
            assert isinstance(hit, FilterError)
            break
    if raised != (hit is not None):
        return f"FilterColumns raised={raised} but error_checks found {hit} for {f!r}"
    if raised:
        return None
    got = dep.ids(expr)
    if got != want:
        missing = sorted(set(want) - set(got))[:5]
        extra = sorted(set(got) - set(want))[:5]
        return f"{f!r}\n  expr: {expr}\n  missing {missing} extra {extra}"
    return None


def cmp(field: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "operator": op, "value": value}


FIELDS = ["id", "content", "meta.a", "meta.num", "meta.when", "meta.s", "meta.l", "meta.n",
          "meta.n.x", "meta.n.y", "meta.missing", "num", 'meta.we"ird', "meta.back\\slash",
          "meta.ключ", "meta.[0]", "meta.sp ace"]
EQ_VALUES: list[Any] = [
    None, True, False, 0, 1, 1.0, 1.5, 2**53 + 1, 2**53, 1e300, -0.0, "1", "", "a", "abc",
    "A", "a\"b'c", "Abc%_\\x", "line\nbreak", "ünïcödé", "2020-01-01", "2020-01-01T00:00:00",
    "2020-01-01T00:00:00+00:00", "2020-01-01T01:00:00+01:00", "2020-01-01T01:00:00+02:00",
    "20200101", [], [1], [1.0], [True], [1, "a"], ["a", "b"], [[1], "x"], {"x": 1},
    {"x": {"y": "z"}}, {}, "q\"1", "back\\slash", "ÜNI%_", datetime(2020, 1, 1),
    datetime(2020, 1, 1, tzinfo=timezone.utc), math.nan,
]
ORDER_VALUES: list[Any] = [
    None, 0, 1, True, 1.5, -1, 2**53, 2**53 + 1, 2**62, 2**63 + 5, -(2**64), 1e300, -1e300,
    math.inf, -math.inf, math.nan, "2020-01-01", "2020-01-01T00:30:00+01:00",
    "2020-01-01T00:00:00Z", "1999-12-31T23:59:59.999999", "20200101", "0001-01-01",
    datetime(2020, 1, 1, 12), datetime(2020, 1, 1, tzinfo=timezone(timedelta(hours=-5))),
]
LIST_VALUES: list[Any] = [
    [], [1], [1, "a"], ["a"], ["abc", "ABC"], [None], [True], [1.0], [[1]], [{"k": 1}],
    ["2020-01-01"], [datetime(2020, 1, 1)], ["%", "_"], [2**53 + 1], [{"x": 1}], ["x", 1, None],
]
TEXT_VALUES: list[Any] = ["", "a", "A", "abc", "ABC", "%", "_", "\\", "\"", "b'c", "ü", "Ü",
                          "😀", "line\nb", "\ue000", "\ue001", "0%_", "i̇", "world", "T0", "-01"]


def _fixed_filters() -> list[dict[str, Any]]:
    """Every operator with every value of its list, each on ``meta.a`` (the field of mixed
    types) and on one more field drawn from FIELDS (seeded)."""
    cases: list[tuple[str, Any]] = []
    for v in EQ_VALUES:
        cases += [("==", v), ("!=", v)]
    cases += [(op, v) for v in ORDER_VALUES for op in (">", ">=", "<", "<=")]
    cases += [(op, v) for v in LIST_VALUES for op in ("in", "not in", "any", "all")]
    cases += [(op, v) for v in TEXT_VALUES
              for op in ("text_match", "text_match_insensitive", "contains")]
    cases += [("contains", v) for v in (1, True, None, [1], {"x": 1}, 2**53 + 1,
                                        datetime(2020, 1, 1))]
    cases += [("is_empty", None), ("exists", True), ("exists", False)]
    out: list[dict[str, Any]] = []
    others = [f for f in FIELDS if f != "meta.a"]
    rng = random.Random(1)
    for op, v in cases:
        for field in ("meta.a", rng.choice(others)):
            out.append({"field": field, "operator": "is_empty"} if op == "is_empty"
                       else cmp(field, op, v))
    for field in others:
        out += [{"field": field, "operator": "is_empty"}, cmp(field, "exists", True),
                cmp(field, "exists", False)]
    return out


LOGIC_FILTERS: list[dict[str, Any]] = [
    {"operator": "AND", "conditions": []},
    {"operator": "OR", "conditions": []},
    {"operator": "NOT", "conditions": []},
    {"operator": "NOT", "conditions": [cmp("meta.num", "==", 1)]},
    {"operator": "NOT", "conditions": [cmp("meta.missing", "==", 1)]},
    {"operator": "AND", "conditions": [cmp("meta.s", "==", "a"), cmp("meta.num", ">", 0)]},
    # Haystack's short-circuit: v > 3 is only reached where s == "abc"
    {"operator": "AND", "conditions": [cmp("meta.s", "==", "abc"), cmp("meta.a", ">", 0)]},
    {"operator": "AND", "conditions": [cmp("meta.a", ">", 0), cmp("meta.s", "==", "abc")]},
    {"operator": "OR", "conditions": [cmp("meta.num", "exists", True), cmp("meta.a", ">", 0)]},
    {"operator": "OR", "conditions": [cmp("meta.a", "exists", True),
                                      cmp("meta.a", "<", "2020-01-01")]},
    {"operator": "NOT", "conditions": [
        {"operator": "OR", "conditions": [cmp("meta.when", ">", "2020-01-01"),
                                          cmp("meta.when", "==", None)]},
        cmp("meta.l", "contains", 1)]},
    {"operator": "AND", "conditions": [
        {"operator": "NOT", "conditions": [cmp("meta.num", "exists", True)]},
        cmp("meta.num", ">=", 0)]},
    {"operator": "AND", "conditions": [
        cmp("meta.n.x", "exists", True),
        {"operator": "OR", "conditions": [cmp("meta.n.x", "==", 1),
                                          cmp("meta.n.x", "in", ["a", None, [1]])]},
        {"operator": "NOT", "conditions": [cmp("id", "in", ["d010", "d011", 'q"1'])]}]},
    {"operator": "OR", "conditions": [cmp("content", "==", None), cmp("content", "==", "")]},
    {"operator": "AND", "conditions": [cmp("meta.when", "exists", True),
                                       cmp("meta.when", "<", "2020-01-01T00:00:00+00:00")]},
    {"operator": "AND", "conditions": [cmp("meta.l", "any", [1, "a"]),
                                       cmp("meta.l", "all", [1])]},
]


def _run_all(dep: Deployment, cols: FilterColumns, filters: list[dict[str, Any]]) -> None:
    problems = [p for f in filters if (p := check(dep, cols, f)) is not None]
    assert not problems, f"{len(problems)} of {len(filters)} filters differ:\n" + "\n".join(
        problems[:15])


def test_every_operator_matches_filtercolumns(dep: Deployment, columns: FilterColumns) -> None:
    _run_all(dep, columns, _fixed_filters())


def test_logic_and_short_circuit_match_filtercolumns(dep: Deployment,
                                                     columns: FilterColumns) -> None:
    _run_all(dep, columns, LOGIC_FILTERS)
    assert dep.ids(to_expr(None)) == sorted(IDS)
    assert dep.ids(id_in_expr(['q"1', "back\\slash", "line\nid", "nope"])) == sorted(
        ["back\\slash", "line\nid", 'q"1'])
    assert dep.ids(id_in_expr([])) == []


def test_error_checks_raise_like_filtercolumns(dep: Deployment, columns: FilterColumns) -> None:
    f = cmp("meta.a", ">", 0)
    with pytest.raises(FilterError):
        columns.evaluate(f)
    (chk,) = error_checks(f)
    rows = dep.rows(chk.expr, limit=1)
    assert rows
    err = chk.error(rows[0])
    assert isinstance(err, FilterError)
    assert "filter: operator '>' with value 0 on field 'meta.a' needs a number" in str(err)
    assert repr(rows[0]["id"]) in str(err)


def test_rows_read_back_exactly(dep: Deployment) -> None:
    rows = dep.rows("", limit=16384)
    got = {r["id"]: row_meta(r) for r in rows}
    for doc_id, text, meta in CORPUS:
        t, m = got[doc_id]
        assert t == text and m == meta
        assert _typed(m) == _typed(meta)


def _typed(v: Any) -> Any:
    """``v`` with every number tagged by its type (so 1 and 1.0 and True differ)."""
    if isinstance(v, list):
        return [_typed(x) for x in v]
    if isinstance(v, dict):
        return [(k, _typed(x)) for k, x in v.items()]
    return (type(v).__name__, v)


# --------------------------------------------------------------------------- hypothesis
_fields = st.sampled_from(FIELDS)
_scalar = st.sampled_from(EQ_VALUES) | st.integers(-3, 3) | st.text(max_size=4)
_leaf = st.one_of(
    st.builds(cmp, _fields, st.sampled_from(["==", "!="]), _scalar),
    st.builds(cmp, _fields, st.sampled_from([">", ">=", "<", "<="]),
              st.sampled_from(ORDER_VALUES)),
    st.builds(cmp, _fields, st.sampled_from(["in", "not in", "any", "all"]),
              st.sampled_from(LIST_VALUES) | st.lists(_scalar, max_size=3)),
    st.builds(cmp, _fields, st.sampled_from(["text_match", "text_match_insensitive",
                                             "contains"]), st.sampled_from(TEXT_VALUES)),
    st.builds(cmp, _fields, st.just("contains"), _scalar),
    st.builds(cmp, _fields, st.just("exists"), st.booleans()),
    st.builds(lambda f: {"field": f, "operator": "is_empty"}, _fields),
)
_filters = st.recursive(
    _leaf,
    lambda kids: st.builds(lambda op, cs: {"operator": op, "conditions": cs},
                           st.sampled_from(["AND", "OR", "NOT"]),
                           st.lists(kids, max_size=3)),
    max_leaves=6,
)


@settings(max_examples=150, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(f=_filters)
def test_random_filters_match_filtercolumns(dep: Deployment, columns: FilterColumns,
                                            f: dict[str, Any]) -> None:
    problem = check(dep, columns, f)
    assert problem is None, problem


# --------------------------------------------------------------------------- pure tests
def test_row_fields_contract() -> None:
    names = [n for n, _ in ROW_FIELDS]
    assert names[:3] == ["text", "has_text", "meta"]
    assert len(set(names)) == len(names)
    assert {k for _, k in ROW_FIELDS} <= {"varchar", "json", "bool", "int64"}
    assert not {"id", "uid", "vec", "has_vec"} & set(names)
    row = row_fields("x", None, {"a": 1})
    assert set(row) == set(names)
    assert row["text"] == "" and row["has_text"] is False
    assert row_meta(row) == (None, {"a": 1})
    assert row_meta(row_fields("x", "", {})) == ("", {})


def test_row_fields_derived_values() -> None:
    row = row_fields("id", "Hi %", {"n": {"x": 2**53 + 1, "t": True, "f": 2.5},
                                    "d": "2020-01-01T01:00:00+01:00", "l": [1, 1.0, "a", None]})
    assert len(row["f_eq"]) == 6  # one entry per path: n, n.x, n.t, n.f, d, l
    codes = set(row["f_eq"].values())
    assert {"n9007199254740993", "n1", "n2.5", "s2020-01-01T01:00:00+01:00"} <= codes
    assert any(c.startswith("d") for c in codes) and any(c.startswith("l") for c in codes)
    assert list(row["f_int"].values()) == [2**53 + 1]
    assert sorted(row["f_num"].values()) == [1.0, 2.5]
    assert list(row["f_utc"].values()) == [1577836800000000]
    assert list(row["f_wall"].values()) == [1577840400000000]
    assert list(row["f_elems"].values()) == [["n1", "sa", "z"]]  # 1 == 1.0: deduplicated
    assert "\ue000" in next(iter(row["f_like"].values()))  # "%" encoded in the content copy


@pytest.mark.parametrize("meta", [
    {"a": math.nan}, {"a": math.inf}, {"a": 2**63}, {"a": -(2**63) - 1}, {"a": (1, 2)},
    {"a": {1: 2}}, {1: "a"}, {"a": object()}, {"a": "\ud800"}, {"a": b"x"},
])
def test_row_fields_rejects_what_milvus_cannot_store(meta: dict[Any, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        row_fields("x", "t", meta)


def test_row_fields_rejects_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="id must be a str"):
        row_fields(1, "t", {})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="text must be"):
        row_fields("x", 5, {})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="must be a mapping"):
        row_fields("x", "t", [("a", 1)])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="65536"):
        row_fields("x", "t", {"a": "y" * MAX_JSON_BYTES})
    with pytest.raises(InvalidArgumentError, match="lacks the field 'has_text'"):
        row_meta({"text": "", "meta": {}})
    with pytest.raises(InvalidArgumentError, match="expected a str, a bool and a dict"):
        row_meta({"text": "", "has_text": 1, "meta": {}})


def test_expr_strings_per_operator() -> None:
    e = to_expr(cmp("meta.a", "==", 1))
    assert e.startswith('f_eq["k') and e.endswith('] == "n1"')  # unguarded outside a 'not'
    key = e.split('"')[1]
    assert to_expr(cmp("meta.a", "==", True)) == e  # True == 1 == 1.0 in Python
    assert to_expr(cmp("meta.a", "==", 1.0)) == e
    assert to_expr(cmp("meta.a", "!=", 1)) == f'not ((exists f_eq["{key}"]) and {e})'
    assert to_expr(cmp("meta.a", "exists", True)) == (
        f'(exists f_eq["{key}"]) and f_eq["{key}"] != "z"')  # '!=' is always guarded
    assert to_expr(cmp("id", "==", 'a"b\\c\nd\re')) == 'id == "a\\"b\\\\c\\nd\\re"'
    assert to_expr(cmp("id", "==", 5)) == to_expr({"operator": "OR", "conditions": []})
    assert to_expr(cmp("content", "==", "x")) == 'has_text == true and text == "x"'
    assert to_expr(cmp("content", "exists", True)) == "has_text == true"
    assert to_expr(cmp("content", "exists", False)) == "not (has_text == true)"
    assert to_expr(cmp("id", "exists", True)) == ""
    assert to_expr(cmp("meta.a", "in", [1, 2])).count(" or ") == 1
    assert " in [" not in to_expr(cmp("meta.a", "in", ["x", "y"]))  # lite rejects JSON 'in'
    assert "f_num" in to_expr(cmp("meta.a", ">", 1)) and "f_int" in to_expr(cmp("meta.a", ">", 1))
    assert "f_wall" in to_expr(cmp("meta.a", ">", "2020-01-01"))
    assert "f_utc" in to_expr(cmp("meta.a", ">", "2020-01-01T00:00:00+00:00"))
    assert "f_deq" in to_expr(cmp("meta.a", "==", "2020-01-01"))
    assert "f_deq" not in to_expr(cmp("meta.a", "==", "20200101"))  # orderable, not equal
    assert "json_contains(f_elems" in to_expr(cmp("meta.a", "contains", 1))
    assert "json_contains_any(f_elems" in to_expr(cmp("meta.a", "any", [1, 2]))
    assert "json_contains_all(f_elems" in to_expr(cmp("meta.a", "all", [1, 2]))
    assert 'like "%' in to_expr(cmp("meta.a", "text_match", "x"))
    assert "f_lower" in to_expr(cmp("meta.a", "text_match_insensitive", "x"))
    assert '"s"' in to_expr({"field": "meta.a", "operator": "is_empty"})
    assert to_expr(cmp("meta.a", ">", None)) == to_expr({"operator": "OR", "conditions": []})
    assert to_expr(cmp("meta.a", "==", math.nan)) == to_expr({"operator": "OR", "conditions": []})
    # no 'true'/'false' predicates (the server rejects them)
    assert to_expr({"operator": "OR", "conditions": []}) == (
        "(has_text == true and has_text == false)")
    assert to_expr({"operator": "AND", "conditions": []}) == ""
    assert to_expr(None) == "" and to_expr({}) == ""


def test_keys_never_reach_the_expression() -> None:
    for key in ['a"] or id != "', "x\\", "ключ", "[0]", "a b"]:
        e = to_expr(cmp("meta." + key, "==", 1))
        assert key not in e
        assert e.count('"') == 4


def test_like_patterns_hold_no_wildcard_or_backslash() -> None:
    e = to_expr(cmp("meta.a", "text_match", "5%_\\\ue000"))
    pattern = e.split('like "')[1].split('"')[0]
    assert pattern.startswith("%") and pattern.endswith("%")
    assert "_" not in pattern and "\\" not in pattern and pattern.count("%") == 2
    # an encoded needle matches only at code word boundaries
    a = row_fields("x", None, {"s": "\ue001\ue002"})["f_like"]
    assert list(a.values()) == ["\ue000\ue002\ue002\ue000\ue002\ue003"]


def test_infix_like_false_refuses_substring_operators() -> None:
    for op in ("text_match", "text_match_insensitive", "contains"):
        with pytest.raises(NotSupportedError, match="Milvus before 2.4"):
            to_expr({"operator": "AND", "conditions": [cmp("meta.a", op, "x")]},
                    infix_like=False)
    assert to_expr(cmp("meta.a", "text_match", ""), infix_like=False)  # every string
    assert to_expr(cmp("meta.a", "contains", 1), infix_like=False)  # list membership


def test_validation_comes_first() -> None:
    with pytest.raises(FilterError, match="unknown comparison operator"):
        to_expr(cmp("meta.a", "~", 1))
    with pytest.raises(FilterError):
        error_checks({"operator": "AND"})
    with pytest.raises(FilterError, match="filter must be a dict"):
        to_expr([1])  # type: ignore[arg-type]
    with pytest.raises(FilterError):
        to_expr(cmp("meta.a", ">", "yesterday"))


def test_error_checks_follow_reach() -> None:
    f = {"operator": "AND", "conditions": [cmp("meta.u", "==", "kg"), cmp("meta.v", ">", 3)]}
    (chk,) = error_checks(f)
    assert chk.expr.startswith(to_expr(cmp("meta.u", "==", "kg")))
    assert chk.where == "filter['conditions'][1]" and not chk.wants_date
    assert error_checks(cmp("meta.v", ">", None)) == []
    assert error_checks(cmp("meta.v", "==", 1)) == []
    (d,) = error_checks(cmp("meta.v", "<", "2020-01-01"))
    assert d.wants_date
    err = d.error({"id": "x", "text": "", "has_text": True, "meta": {"v": 5}})
    assert "holds the number 5" in str(err)


def test_id_in_expr() -> None:
    assert id_in_expr(["a", 'b"', "c\\"]) == 'id in ["a", "b\\"", "c\\\\"]'
    assert id_in_expr([]) == "(has_text == true and has_text == false)"
    with pytest.raises(InvalidArgumentError):
        id_in_expr("abc")
    with pytest.raises(InvalidArgumentError):
        id_in_expr([1])  # type: ignore[list-item]


@pytest.mark.parametrize(("version", "infix"), [
    ("milvus_lite-3.2.2", True), ("v2.3.5-lite", False), ("v2.3.5", False), ("2.2.16", False),
    ("v2.4.0", True), ("v2.5.10", True), ("v3.0.0", True), ("unknown", True),
])
def test_supports_infix_like(version: str, infix: bool) -> None:
    assert supports_infix_like(version) is infix


def test_every_operator_is_covered() -> None:
    ops = {f["operator"] for f in _fixed_filters()}
    assert ops == set(COMPARISON_OPERATORS)


def test_a_text_over_the_derived_field_budget_is_named_in_the_error() -> None:
    from vecindex_core.milvus import expr as mx

    with pytest.raises(mx.InvalidArgumentError, match=r"'f_like', derived from the id, the text"):
        mx.row_fields("d", "a_" * 15000, {})
    with pytest.raises(mx.InvalidArgumentError, match=r"limit of 65536 bytes per JSON field"):
        mx.row_fields("d", "a_" * 15000, {})
    assert mx.row_fields("d", "a" * 30000, {})["text"] == "a" * 30000
