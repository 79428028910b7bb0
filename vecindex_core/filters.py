"""The filter language of :class:`~vecindex_core.Collection` and its vectorised evaluator.

Filters are Haystack 2.x filter dicts (see ``docs/filters.md``)::

    {"operator": "AND", "conditions": [
        {"field": "meta.category", "operator": "==", "value": "news"},
        {"field": "meta.year", "operator": ">=", "value": 2020},
    ]}

with exactly the semantics of ``haystack.utils.filters.document_matches_filter`` (default
``strict_datetime_comparison=False``), plus the vecindex extension operators ``contains``,
``any``, ``all``, ``text_match``, ``text_match_insensitive``, ``is_empty`` and ``exists``
(LlamaIndex's operators that Haystack lacks).

:func:`validate_filter` checks a whole filter tree before anything is evaluated.
:class:`FilterColumns` keeps the filterable fields of ``n`` documents as columns (rows
``0..n-1``) and evaluates a filter with numpy over whole columns; only rows whose value is a
list, a dict or an exotic object are visited one by one.
"""

from __future__ import annotations

import math
import operator as _operator
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from itertools import chain
from typing import Any, Final, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt

from .base import Moves, swap_remove_plan
from .errors import FilterError, InvalidArgumentError

__all__ = [
    "COMPARISON_OPERATORS",
    "EXTENSION_OPERATORS",
    "HAYSTACK_OPERATORS",
    "LOGICAL_OPERATORS",
    "FilterColumns",
    "FilterError",
    "validate_filter",
]

BoolArray: TypeAlias = npt.NDArray[np.bool_]


# --------------------------------------------------------------------------- the language
#: Logical operators: ``{"operator": ..., "conditions": [...]}``.
LOGICAL_OPERATORS: Final[tuple[str, ...]] = ("AND", "OR", "NOT")
#: Haystack's comparison operators: ``{"field": ..., "operator": ..., "value": ...}``.
HAYSTACK_OPERATORS: Final[tuple[str, ...]] = ("==", "!=", ">", ">=", "<", "<=", "in", "not in")
#: vecindex extension operators (LlamaIndex operators that Haystack lacks).
EXTENSION_OPERATORS: Final[tuple[str, ...]] = (
    "contains", "any", "all", "text_match", "text_match_insensitive", "is_empty", "exists",
)
#: Every comparison operator.
COMPARISON_OPERATORS: Final[tuple[str, ...]] = HAYSTACK_OPERATORS + EXTENSION_OPERATORS

#: What each comparison operator accepts as ``value`` (the one table validation reads).
_VALUE_RULE: Final[dict[str, str]] = {
    "==": "any", "!=": "any",
    ">": "order", ">=": "order", "<": "order", "<=": "order",
    "in": "list", "not in": "list",
    "contains": "any", "any": "list", "all": "list",
    "text_match": "str", "text_match_insensitive": "str",
    "is_empty": "ignored", "exists": "bool",
}
_RULE_TEXT: Final[dict[str, str]] = {
    "order": "None, a number, a bool, an ISO-8601 date string or a datetime",
    "list": "a list",
    "str": "a str",
    "bool": "a bool",
}
_ORDER_OPS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    ">": _operator.gt, ">=": _operator.ge, "<": _operator.lt, "<=": _operator.le,
}
#: Haystack ``Document`` fields other than ``id`` and ``content``: not filterable here.
_UNFILTERABLE: Final[frozenset[str]] = frozenset(
    {"meta", "blob", "score", "embedding", "sparse_embedding"}
)

# Row kinds (int8). Order matters: ``kind <= K_NONE`` is "missing or None".
K_MISSING: Final = 0
K_NONE: Final = 1
K_BOOL: Final = 2
K_NUM: Final = 3
K_STR: Final = 4
K_LIST: Final = 5
K_DICT: Final = 6
K_OTHER: Final = 7
_TYPE_KIND: Final[dict[type, int]] = {
    type(None): K_NONE, bool: K_BOOL, int: K_NUM, float: K_NUM, str: K_STR,
    list: K_LIST, dict: K_DICT,
}
_KIND_NAME: Final[dict[int, str]] = {
    K_BOOL: "bool", K_NUM: "number", K_STR: "string", K_LIST: "list", K_DICT: "dict",
    K_OTHER: "object",
}

# Per-string date flags.
_F_ORD: Final = 1    # datetime.fromisoformat parses it (usable by > >= < <=)
_F_EQ: Final = 2     # also looks like YYYY-MM-DD[T ...] (usable by == / in date equality)
_F_AWARE: Final = 4  # has a UTC offset

_EPOCH: Final = datetime(1970, 1, 1)
_US: Final = timedelta(microseconds=1)
_EXACT_INT: Final = 2.0**53
_FLOAT_MAX: Final = float(np.finfo(np.float64).max)


class _Date(NamedTuple):
    """A datetime as integers: wall-clock and UTC microseconds since 1970, and awareness."""

    wall: int
    utc: int
    aware: bool


def _to_date(dt: datetime) -> _Date:
    wall = (dt.replace(tzinfo=None) - _EPOCH) // _US
    if dt.tzinfo is None:
        return _Date(wall, wall, False)
    off = dt.utcoffset()
    return _Date(wall, wall - (off // _US if off is not None else 0), True)


def _parse_iso(s: str) -> datetime | None:
    """``datetime.fromisoformat(s)``, or None (a trailing ``Z`` is also read on Python 3.10)."""
    if not s[:4].isdigit():
        return None
    try:
        return datetime.fromisoformat(s)
    except ValueError:
        if s[-1:] in ("Z", "z"):
            try:
                return datetime.fromisoformat(s[:-1] + "+00:00")
            except ValueError:
                return None
        return None


def _looks_like_iso_date(s: str) -> bool:
    """Haystack's cheap test for a full ``YYYY-MM-DD`` prefix (used by date equality)."""
    return (
        len(s) >= 10
        and s[:4].isdigit()
        and s[4] == "-"
        and s[5:7].isdigit()
        and s[7] == "-"
        and s[8:10].isdigit()
        and (len(s) == 10 or s[10] in {"T", "t", " "})
    )


def _date_flags(s: str) -> tuple[int, _Date | None]:
    dt = _parse_iso(s)
    if dt is None:
        return 0, None
    d = _to_date(dt)
    flag = _F_ORD | (_F_EQ if _looks_like_iso_date(s) else 0) | (_F_AWARE if d.aware else 0)
    return flag, d


class _Operand:
    """A scalar filter value, pre-digested for the vectorised comparisons."""

    __slots__ = ("eq_date", "exact", "hi", "kind", "lo", "num", "ord_date", "raw", "text")

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.num = math.nan
        self.exact = True
        self.lo = self.hi = math.nan
        self.text: str | None = None
        self.eq_date: _Date | None = None
        self.ord_date: _Date | None = None
        if raw is None:
            self.kind = K_NONE
        elif isinstance(raw, (bool, int, float)):
            self.kind = K_NUM
            self._set_number(raw)
        elif isinstance(raw, str):
            self.kind = K_STR
            self.text = raw
            flag, d = _date_flags(raw)
            self.ord_date = d
            self.eq_date = d if flag & _F_EQ else None
        elif isinstance(raw, datetime):
            self.kind = K_OTHER  # a datetime object: equal to date strings only
            self.eq_date = self.ord_date = _to_date(raw)
        elif isinstance(raw, list):
            self.kind = K_LIST
        else:
            self.kind = K_DICT

    def _set_number(self, v: bool | int | float) -> None:
        try:
            f = float(v)
        except OverflowError:  # an int beyond float64's range
            big = v > 0
            self.exact = False
            self.lo, self.hi = (_FLOAT_MAX, math.inf) if big else (-math.inf, -_FLOAT_MAX)
            return
        self.num = f
        if isinstance(v, int) and not isinstance(v, bool) and abs(f) >= _EXACT_INT and f != v:
            # Not representable: order against the two floats around it, never equal.
            self.exact = False
            self.num = math.nan
            if f > v:
                self.lo, self.hi = math.nextafter(f, -math.inf), f
            else:
                self.lo, self.hi = f, math.nextafter(f, math.inf)


class _Cmp(NamedTuple):
    """A comparison leaf: ``target`` is ``("id",)``, ``("content",)`` or ``("meta", *path)``."""

    where: str
    field: str
    target: tuple[str, ...]
    op: str
    value: Any
    operand: _Operand | None
    items: tuple[_Operand, ...]


class _Logic(NamedTuple):
    op: str
    children: tuple[_Cmp | _Logic, ...]


_Node: TypeAlias = "_Cmp | _Logic"


def _show(x: Any, limit: int = 120) -> str:
    s = repr(x)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _plain_value(v: Any, where: str) -> Any:
    """A JSON-like copy of a filter value (numpy scalars become Python); anything else raises."""
    if v is None or isinstance(v, (bool, str, datetime)):
        return v
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, list):
        return [_plain_value(x, f"{where}[{i}]") for i, x in enumerate(v)]
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if not isinstance(k, str):
                raise FilterError(f"{where}: dict keys in filter values must be str, got {k!r}")
            out[k] = _plain_value(x, f"{where}[{k!r}]")
        return out
    raise FilterError(
        f"{where}: unsupported filter value {_show(v)} of type {type(v).__name__} (use None, "
        "bool, int, float, str, list, dict or datetime)"
    )


def _parse_field(field: Any, where: str) -> tuple[str, ...]:
    if not isinstance(field, str):
        raise FilterError(f"{where}: 'field' must be a str, got {_show(field)}")
    valid = "'id', 'content', 'meta.<key>[.<key>...]' or a bare metadata key"
    if field in ("id", "content"):
        return (field,)
    if field in _UNFILTERABLE:
        raise FilterError(
            f"{where}: field {field!r} cannot be filtered; use {valid} (a metadata key named "
            f"{field!r} is 'meta.{field}')"
        )
    if "." not in field:
        if not field:
            raise FilterError(f"{where}: 'field' is empty; use {valid}")
        return ("meta", field)  # Haystack reads a bare name as a legacy metadata key
    parts = field.split(".")
    if parts[0] != "meta":
        raise FilterError(f"{where}: unknown field {field!r}; use {valid}")
    if any(not p for p in parts[1:]):
        raise FilterError(f"{where}: field {field!r} has an empty key; use {valid}")
    return ("meta", *parts[1:])


def _compile(node: Any, where: str) -> tuple[_Node, dict[str, Any]]:
    if not isinstance(node, Mapping):
        raise FilterError(f"{where}: a filter must be a dict, got {_show(node)}")
    if "field" in node:
        extra = set(node) - {"field", "operator", "value"}
        if extra:
            raise FilterError(
                f"{where}: unexpected key(s) {sorted(map(str, extra))} in comparison "
                f"{_show(dict(node))}; a comparison has 'field', 'operator' and 'value'"
            )
        if "operator" not in node:
            raise FilterError(f"{where}: 'operator' key missing in {_show(dict(node))}")
        op = node["operator"]
        if not isinstance(op, str) or op not in _VALUE_RULE:
            raise FilterError(
                f"{where}: unknown comparison operator {op!r}; valid operators are "
                f"{list(COMPARISON_OPERATORS)}"
            )
        rule = _VALUE_RULE[op]
        if "value" not in node and rule != "ignored":
            raise FilterError(f"{where}: 'value' key missing in {_show(dict(node))}")
        target = _parse_field(node["field"], where)
        value = _plain_value(node.get("value"), f"{where}['value']")
        _check_value(op, rule, value, where)
        plain = {"field": node["field"], "operator": op}
        if "value" in node:
            plain["value"] = value
        operand = _Operand(value) if rule in ("any", "order", "str") else None
        items = tuple(_Operand(x) for x in value) if rule == "list" else ()
        return _Cmp(where, node["field"], target, op, value, operand, items), plain
    if "value" in node:
        raise FilterError(f"{where}: 'field' key missing in {_show(dict(node))}")
    if "operator" not in node:
        raise FilterError(f"{where}: 'operator' key missing in {_show(dict(node))}")
    if "conditions" not in node:
        raise FilterError(
            f"{where}: 'conditions' key missing in {_show(dict(node))} (a comparison needs a "
            "'field' key)"
        )
    extra = set(node) - {"operator", "conditions"}
    if extra:
        raise FilterError(
            f"{where}: unexpected key(s) {sorted(map(str, extra))} in {_show(dict(node))}; a "
            "logical condition has 'operator' and 'conditions', a comparison has 'field', "
            "'operator' and 'value'"
        )
    op = node["operator"]
    if not isinstance(op, str) or op not in LOGICAL_OPERATORS:
        raise FilterError(
            f"{where}: unknown logical operator {op!r}; valid operators are "
            f"{list(LOGICAL_OPERATORS)}"
        )
    conditions = node["conditions"]
    if not isinstance(conditions, (list, tuple)):
        raise FilterError(f"{where}: 'conditions' must be a list, got {_show(conditions)}")
    children = []
    plains = []
    for i, c in enumerate(conditions):
        child, plain_child = _compile(c, f"{where}['conditions'][{i}]")
        children.append(child)
        plains.append(plain_child)
    return _Logic(op, tuple(children)), {"operator": op, "conditions": plains}


def _check_value(op: str, rule: str, value: Any, where: str) -> None:
    ok = True
    if rule == "order":
        if isinstance(value, str):
            if _parse_iso(value) is None:
                raise FilterError(
                    f"{where}: operator {op!r} compares numbers or dates, but {value!r} is not "
                    "an ISO-8601 date (datetime.fromisoformat); strings are only ordered as dates"
                )
        else:
            ok = value is None or isinstance(value, (bool, int, float, datetime))
    elif rule == "list":
        ok = isinstance(value, list)
    elif rule == "str":
        ok = isinstance(value, str)
    elif rule == "bool":
        ok = isinstance(value, bool)
    if not ok:
        raise FilterError(
            f"{where}: operator {op!r} needs {_RULE_TEXT[rule]} as 'value', got {_show(value)} "
            f"of type {type(value).__name__}"
        )


def _compile_filter(filter: Mapping[str, Any] | None) -> tuple[_Node | None, dict[str, Any] | None]:
    if filter is None:
        return None, None
    if not isinstance(filter, Mapping):
        raise FilterError(f"filter must be a dict or None, got {_show(filter)}")
    if not filter:
        return None, None
    return _compile(filter, "filter")


def validate_filter(filter: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Check a whole filter tree and return it as plain dicts.

    Parameters
    ----------
    filter : mapping or None
        A Haystack 2.x filter dict, possibly using the vecindex extension operators.
        ``None`` and an empty mapping mean "no filter".

    Returns
    -------
    dict or None
        A deep copy made of plain dicts and lists (numpy scalars become Python numbers), or
        None when there is no filter.

    Raises
    ------
    FilterError
        Naming the offending part (``filter['conditions'][1]: ...``): a node that is not a
        dict, a missing ``operator``/``conditions``/``field``/``value`` key, an unexpected
        key, an unknown operator (the message lists the valid ones), ``in``/``not in``/
        ``any``/``all`` without a list, an ordering operator with a list, a dict or a string
        that ``datetime.fromisoformat`` cannot read, ``text_match*`` without a str,
        ``exists`` without a bool, a field other than ``id``, ``content``,
        ``meta.<key>[.<key>...]`` or a bare metadata key, or a value that is not JSON-like.
    """
    return _compile_filter(filter)[1]


# --------------------------------------------------------------------------- Python reference
# Used for rows whose value is a list, a dict or an exotic object; mirrors Haystack's code.
def _py_date_eq(a: _Date, b: _Date) -> bool:
    return a.utc == b.utc if (a.aware and b.aware) else a.wall == b.wall


def _py_eq_date(x: Any) -> _Date | None:
    if isinstance(x, datetime):
        return _to_date(x)
    if isinstance(x, str) and _looks_like_iso_date(x):
        dt = _parse_iso(x)
        return None if dt is None else _to_date(dt)
    return None


def _py_equal(v: Any, fv: Any) -> bool:
    if v == fv:
        return True
    a = _py_eq_date(v)
    if a is None:
        return False
    b = _py_eq_date(fv)
    return b is not None and _py_date_eq(a, b)


def _py_order(op: str, v: Any, fv: Any, where: str) -> bool:
    if v is None or fv is None:
        return False
    if isinstance(v, str) or isinstance(fv, str):
        v, fv = (x if isinstance(x, datetime) else _py_parse_order(x, op, where) for x in (v, fv))
    if isinstance(v, datetime) and isinstance(fv, datetime):
        a, b = _to_date(v), _to_date(fv)
        v, fv = (a.utc, b.utc) if (a.aware and b.aware) else (a.wall, b.wall)
    elif isinstance(v, datetime) != isinstance(fv, datetime):
        raise FilterError(
            f"{where}: can't compare a datetime with a non-datetime value using {op!r}"
        )
    try:
        return bool(_ORDER_OPS[op](v, fv))
    except TypeError as e:
        raise FilterError(
            f"{where}: operator {op!r} cannot compare a stored {type(v).__name__} value "
            f"{_show(v)} with {_show(fv)}"
        ) from e


def _py_parse_order(x: Any, op: str, where: str) -> datetime:
    dt = _parse_iso(x) if isinstance(x, str) else None
    if dt is None:
        raise FilterError(
            f"{where}: operator {op!r} can't compare {_show(x)}: strings are only ordered as "
            "ISO-8601 dates, and dates only with dates"
        )
    return dt


def _py_contains(v: Any, fv: Any) -> bool:
    if isinstance(v, list):
        return fv in v
    return isinstance(v, str) and isinstance(fv, str) and fv in v


def _py_any(v: Any, fvs: list[Any]) -> bool:
    if isinstance(v, list):
        return any(x in v for x in fvs)
    return v in fvs


def _py_all(v: Any, fvs: list[Any]) -> bool:
    if isinstance(v, list):
        return all(x in v for x in fvs)
    return all(x == v for x in fvs)


def _py_text(v: Any, sub: str, insensitive: bool) -> bool:
    if not isinstance(v, str):
        return False
    return sub.lower() in v.lower() if insensitive else sub in v


# --------------------------------------------------------------------------- columns
class _ListIndex(NamedTuple):
    """Elements of a column's list rows, as codes (a dict gives Python's ``==``: 1 == 1.0)."""

    rows: npt.NDArray[np.int64]   # the row of each element
    elems: npt.NDArray[np.int32]  # the code of each element
    codes: dict[Any, int]         # hashable element -> code
    empty: npt.NDArray[np.int64]  # rows holding []
    unhashable: list[int]         # rows holding a list or dict element: evaluated in Python


class _Column:
    """One field over all rows: kinds, numbers, dictionary-coded strings, sparse objects."""

    __slots__ = ("cflag", "code", "cutc", "cwall", "has_dates", "kind", "lists", "num", "obj",
                 "str_list", "strings")

    def __init__(self, cap: int) -> None:
        self.kind = np.zeros(cap, dtype=np.int8)
        self.num: npt.NDArray[np.float64] | None = None  # NaN where not a bool/number
        self.code: npt.NDArray[np.int32] | None = None   # 0 where not a string
        self.obj: dict[int, Any] = {}                    # rows of kind list / dict / other
        self.strings: dict[str, int] = {}                # str -> code (codes start at 1)
        self.str_list: list[str] = [""]                  # code -> str (entry 0 unused)
        self.cflag = np.zeros(16, dtype=np.int8)         # per code: _F_* date flags
        self.cwall = np.zeros(16, dtype=np.int64)        # per code: wall-clock µs
        self.cutc = np.zeros(16, dtype=np.int64)         # per code: UTC µs
        self.has_dates = False
        self.lists: _ListIndex | None = None             # built on demand, dropped on change

    def grow(self, cap: int) -> None:
        self.kind = _grown(self.kind, cap, 0)
        if self.num is not None:
            self.num = _grown(self.num, cap, np.nan)
        if self.code is not None:
            self.code = _grown(self.code, cap, 0)

    def nums(self, cap: int) -> npt.NDArray[np.float64]:
        if self.num is None:
            self.num = np.full(cap, np.nan, dtype=np.float64)
        return self.num

    def codes(self, cap: int) -> npt.NDArray[np.int32]:
        if self.code is None:
            self.code = np.zeros(cap, dtype=np.int32)
        return self.code

    def encode(self, values: list[str]) -> npt.NDArray[np.int32]:
        """Codes of ``values``, adding new strings (and their date info) to the dictionary."""
        d = self.strings
        codes = list(map(d.get, values))
        if None in codes:
            before = len(d)
            new = list(dict.fromkeys([s for s, c in zip(values, codes, strict=True) if c is None]))
            d.update(zip(new, range(before + 1, before + 1 + len(new)), strict=True))
            self._add_code_info(new, before + 1)
            codes = list(map(d.get, values))
        return np.array(codes, dtype=np.int32)

    def _add_code_info(self, new: list[str], first: int) -> None:
        self.str_list.extend(new)
        need = len(self.str_list)
        if need > self.cflag.shape[0]:
            cap = max(need, 2 * self.cflag.shape[0])
            self.cflag = _grown(self.cflag, cap, 0)
            self.cwall = _grown(self.cwall, cap, 0)
            self.cutc = _grown(self.cutc, cap, 0)
        maybe = [i for i, s in enumerate(new) if s[:4].isdigit()]  # cheap pre-test
        for i in maybe:
            flag, dt = _date_flags(new[i])
            if dt is not None:
                code = first + i
                self.cflag[code], self.cwall[code], self.cutc[code] = flag, dt.wall, dt.utc
                self.has_dates = True

    def list_index(self) -> _ListIndex:
        """The element index of the rows holding a list (built once, until the next change)."""
        if self.lists is None:
            codes: dict[Any, int] = {}
            rows: list[int] = []
            elems: list[int] = []
            empty: list[int] = []
            unhashable: list[int] = []
            for r, v in self.obj.items():
                if type(v) is not list:
                    continue
                if not v:
                    empty.append(r)
                    continue
                try:
                    cs = [codes.setdefault(x, len(codes)) for x in v]
                except TypeError:  # a list inside the list: Python evaluates this row
                    unhashable.append(r)
                    continue
                rows.extend([r] * len(cs))
                elems.extend(cs)
            self.lists = _ListIndex(
                np.array(rows, dtype=np.int64), np.array(elems, dtype=np.int32), codes,
                np.array(empty, dtype=np.int64), unhashable,
            )
        return self.lists

    def clear_rows(self, rows: npt.NDArray[np.int64] | slice) -> None:
        self.lists = None
        self.kind[rows] = K_MISSING
        if self.num is not None:
            self.num[rows] = np.nan
        if self.code is not None:
            self.code[rows] = 0

    def move(self, src: npt.NDArray[np.int64], dst: npt.NDArray[np.int64]) -> None:
        self.lists = None
        self.kind[dst] = self.kind[src]
        if self.num is not None:
            self.num[dst] = self.num[src]
        if self.code is not None:
            self.code[dst] = self.code[src]

    def compact(self, n: int) -> None:
        """Drop dictionary strings no row uses any more (after removes and replaces)."""
        if self.code is None or len(self.str_list) <= 2 * n + 1024:
            return
        codes = self.code[:n]
        live = np.unique(codes[codes > 0])
        remap = np.zeros(len(self.str_list), dtype=np.int32)
        remap[live] = np.arange(1, live.size + 1, dtype=np.int32)
        self.code[:n] = remap[codes]
        keep = np.concatenate(([0], live))
        self.str_list = [self.str_list[int(c)] for c in keep]
        self.strings = {s: i for i, s in enumerate(self.str_list) if i}
        self.cflag, self.cwall, self.cutc = self.cflag[keep], self.cwall[keep], self.cutc[keep]
        self.has_dates = bool(self.cflag.any())

    def value_at(self, row: int) -> Any:
        k = int(self.kind[row])
        if k == K_STR:
            assert self.code is not None
            return self.str_list[int(self.code[row])]
        if k in (K_BOOL, K_NUM):
            assert self.num is not None
            f = float(self.num[row])
            return bool(f) if k == K_BOOL else f
        return self.obj.get(row)

    def nbytes(self) -> int:
        total = self.kind.nbytes + self.cflag.nbytes + self.cwall.nbytes + self.cutc.nbytes
        for a in (self.num, self.code):
            if a is not None:
                total += a.nbytes
        return int(total)


def _grown(a: Any, cap: int, fill: Any) -> Any:
    out = np.full(cap, fill, dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


class _Missing:
    """Placeholder for a key a document does not have (kind ``K_MISSING``)."""

    __slots__ = ()


_MISS: Final = _Missing()
_TYPE_KIND[_Missing] = K_MISSING

#: ``(path, batch positions or None for all, values, kinds)``: one field of a batch.
_Group: TypeAlias = tuple[tuple[str, ...], "npt.NDArray[np.int64] | None", list[Any], list[int]]


def _kinds(vals: list[Any]) -> list[int]:
    """Row kind of each value by exact type (K_OTHER for any other type, subclasses too)."""
    kinds: list[Any] = list(map(_TYPE_KIND.get, map(type, vals)))
    if None in kinds:
        kinds = [K_OTHER if k is None else k for k in kinds]
    return kinds


def _collect(metas: Sequence[Mapping[str, Any] | None]) -> list[_Group]:
    """Group a batch's metadata values by key path, nested dicts included.

    Pure (nothing is changed), so a bad batch raises before any column is touched:
    InvalidArgumentError for a metadata that is not a mapping or a key that is not a str.
    """
    dicts: list[dict[str, Any]] = []
    for i, meta in enumerate(metas):
        if meta is None:
            dicts.append({})
        elif type(meta) is dict:
            dicts.append(meta)
        elif isinstance(meta, Mapping):
            dicts.append(dict(meta))
        else:
            raise InvalidArgumentError(
                f"metadata must be a mapping or None, got {type(meta).__name__} at position {i}"
            )
    out: list[_Group] = []
    _collect_level((), None, dicts, out)
    return out


def _collect_level(prefix: tuple[str, ...], pos: npt.NDArray[np.int64] | None,
                   dicts: list[dict[str, Any]], out: list[_Group]) -> None:
    """Add the groups of ``dicts`` (at batch positions ``pos``; None: ``0..m-1``) to ``out``."""
    m = len(dicts)
    total = sum(map(len, dicts))
    if total == 0:
        return
    keys = dict.fromkeys(chain.from_iterable(dicts))  # first-seen order: deterministic
    for k in keys:
        if not isinstance(k, str):
            where = f" under 'meta.{'.'.join(prefix)}'" if prefix else ""
            raise InvalidArgumentError(f"metadata keys must be str, got {k!r}{where}")
    level: list[_Group] = []
    if len(keys) * m <= 4 * total + 64:  # dense: one pass over the batch per key
        for k in keys:
            vals = [d.get(k, _MISS) for d in dicts]
            level.append(((*prefix, k), pos, vals, _kinds(vals)))
    else:  # sparse: one pass over the items
        by_key: dict[str, tuple[list[int], list[Any]]] = {}
        for i, d in enumerate(dicts):
            for k, v in d.items():
                g = by_key.get(k)
                if g is None:
                    by_key[k] = ([i], [v])
                else:
                    g[0].append(i)
                    g[1].append(v)
        for k, (idx, vals) in by_key.items():
            at = np.array(idx, dtype=np.int64)
            level.append(((*prefix, k), at if pos is None else pos[at], vals, _kinds(vals)))
    for path, gpos, vals, kinds in level:
        out.append((path, gpos, vals, kinds))
        if K_OTHER in kinds or K_DICT in kinds:
            sub_at: list[int] = []
            subs: list[dict[str, Any]] = []
            for j, v in enumerate(vals):
                if kinds[j] == K_OTHER and isinstance(v, dict):
                    kinds[j] = K_DICT
                if kinds[j] == K_DICT:
                    sub_at.append(j)
                    subs.append(v)
            if subs:
                at = np.array(sub_at, dtype=np.int64)
                base = np.arange(m, dtype=np.int64) if gpos is None else gpos
                _collect_level(path, base[at], subs, out)


class FilterColumns:
    """In-memory columns of the filterable fields of ``n`` documents (rows ``0..n-1``).

    Every field seen (``id``, ``content`` and each metadata key path, nested dicts
    included) is a column: a kind per row (missing / None / bool / number / string / list /
    dict / other), float64 numbers (bools as 0/1), int32 dictionary codes for strings (with
    each distinct string's ISO-8601 date parsed once), and a sparse ``row -> value`` dict for
    lists, dicts and other objects. Filters are evaluated with numpy over whole columns;
    only rows holding a list, a dict or another object are visited one by one, and only by
    operators that can match them.

    Rows are positions kept in step with the caller's other positional arrays: ``append``
    adds rows at the end and ``remove`` swap-removes with the same rule as
    :meth:`VectorIndex.remove <vecindex_core.VectorIndex.remove>`.
    """

    def __init__(self) -> None:
        self._n = 0
        self._cap = 0
        self._id = _Column(0)
        self._content = _Column(0)
        self._meta: dict[tuple[str, ...], _Column] = {}

    # ----------------------------------------------------------------- basics
    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"FilterColumns(rows={self._n}, meta_fields={len(self._meta)})"

    @property
    def fields(self) -> list[str]:
        """Every filterable field seen so far (``id``, ``content``, ``meta.<path>``)."""
        return ["id", "content", *("meta." + ".".join(p) for p in self._meta)]

    def memory_bytes(self) -> int:
        """Approximate bytes held by the column arrays (the sparse objects are not counted)."""
        return sum(c.nbytes() for c in self._columns())

    def _columns(self) -> list[_Column]:
        return [self._id, self._content, *self._meta.values()]

    def clear(self) -> None:
        """Drop every row and every column."""
        self._n = self._cap = 0
        self._id = _Column(0)
        self._content = _Column(0)
        self._meta = {}

    def _reserve(self, need: int) -> None:
        if need <= self._cap:
            return
        cap = max(need, 2 * self._cap, 64)
        for col in self._columns():
            col.grow(cap)
        self._cap = cap

    # ----------------------------------------------------------------- mutation
    def append(
        self,
        ids: Sequence[str],
        texts: Sequence[str | None],
        metas: Sequence[Mapping[str, Any] | None],
    ) -> None:
        """Add rows ``n..n+m-1``.

        Parameters
        ----------
        ids : sequence of str, length m
        texts : sequence of str or None, length m
        metas : sequence of mapping (str keys) or None, length m

        Raises
        ------
        InvalidArgumentError
            Lengths differ, an id is not a str, a text is neither str nor None, a metadata is
            not a mapping, or a key is not a str. Nothing is changed.
        """
        m, groups = self._check_batch(ids, texts, metas)
        start = self._n
        self._reserve(start + m)
        rows = np.arange(start, start + m, dtype=np.int64)
        self._write(rows, ids, texts, groups)
        self._n = start + m

    def replace(
        self,
        rows: npt.ArrayLike,
        ids: Sequence[str],
        texts: Sequence[str | None],
        metas: Sequence[Mapping[str, Any] | None],
    ) -> None:
        """Overwrite rows ``rows`` (unique, in ``0..n-1``) with new documents.

        Every field of those rows is replaced: a key absent from the new metadata becomes
        missing. Raises :class:`InvalidArgumentError` like :meth:`append`, or for bad rows;
        nothing is changed then.
        """
        r = self._check_rows(rows, sort=False)
        m, groups = self._check_batch(ids, texts, metas)
        if r.size != m:
            raise InvalidArgumentError(f"replace got {r.size} rows but {m} documents")
        for col in self._columns():
            col.clear_rows(r)
            if col.obj:
                for row in r.tolist():
                    col.obj.pop(row, None)
        self._write(r, ids, texts, groups)
        for col in self._columns():
            col.compact(self._n)

    def remove(self, rows: npt.ArrayLike) -> Moves:
        """Swap-remove ``rows`` (sorted, unique, in ``0..n-1``).

        The holes below the new size are filled with the surviving rows above it, taken from
        the end (the rule of :func:`vecindex_core.base.swap_remove_plan`, the same the
        positional indexes use).

        Returns
        -------
        Moves
            ``(src, dst)`` int64 arrays: the row that was at ``src[i]`` is now at ``dst[i]``.
            Other surviving rows are unchanged; rows ``>= n`` are gone.
        """
        r = self._check_rows(rows, sort=True)
        if r.size == 0:
            empty = np.empty(0, dtype=np.int64)
            return Moves(empty, empty)
        old_n = self._n
        moves = swap_remove_plan(old_n, r)
        new_n = old_n - r.size
        for col in self._columns():
            if col.obj:
                obj = col.obj
                for row in r.tolist():
                    obj.pop(row, None)
                for s, d in zip(moves.src.tolist(), moves.dst.tolist(), strict=True):
                    if s in obj:
                        obj[d] = obj.pop(s)
            col.move(moves.src, moves.dst)
            col.clear_rows(slice(new_n, old_n))
        self._n = new_n
        for col in self._columns():
            col.compact(new_n)
        return moves

    def _check_rows(self, rows: npt.ArrayLike, *, sort: bool) -> npt.NDArray[np.int64]:
        arr = np.asarray(rows)
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise InvalidArgumentError(
                f"rows must be a 1-D integer array, got dtype {arr.dtype} shape {arr.shape}"
            )
        r = arr.astype(np.int64, copy=False)
        if r.size == 0:
            return r
        if int(r.min()) < 0 or int(r.max()) >= self._n:
            raise InvalidArgumentError(
                f"rows must be in 0..{self._n - 1}, got {r.min()}..{r.max()}"
            )
        if sort and r.size > 1 and not bool(np.all(r[1:] > r[:-1])):
            raise InvalidArgumentError("rows to remove must be sorted and unique")
        if not sort and np.unique(r).size != r.size:
            raise InvalidArgumentError("rows to replace must be unique")
        return r

    @staticmethod
    def _check_batch(
        ids: Sequence[str], texts: Sequence[str | None], metas: Sequence[Mapping[str, Any] | None]
    ) -> tuple[int, list[_Group]]:
        m = len(ids)
        if len(texts) != m or len(metas) != m:
            raise InvalidArgumentError(
                f"ids, texts and metas must have the same length, got {m}, {len(texts)}, "
                f"{len(metas)}"
            )
        if not set(map(type, ids)) <= {str}:
            for i in ids:
                if not isinstance(i, str):
                    raise InvalidArgumentError(f"ids must be str, got {_show(i)}")
        if not set(map(type, texts)) <= {str, type(None)}:
            for t in texts:
                if t is not None and not isinstance(t, str):
                    raise InvalidArgumentError(f"texts must be str or None, got {_show(t)}")
        return m, _collect(metas)

    def _write(
        self,
        rows: npt.NDArray[np.int64],
        ids: Sequence[str],
        texts: Sequence[str | None],
        groups: list[_Group],
    ) -> None:
        m = rows.size
        self._set(self._id, rows, list(ids), [K_STR] * m)
        tv = list(texts)
        self._set(self._content, rows, tv, _kinds(tv))
        for path, offs, vals, kinds in groups:
            col = self._meta.get(path)
            if col is None:
                col = self._meta[path] = _Column(self._cap)
            self._set(col, rows if offs is None else rows[offs], vals, kinds)

    def _set(self, col: _Column, rows: npt.NDArray[np.int64], vals: list[Any],
             kinds: list[int]) -> None:
        if not vals:
            return
        k = np.array(kinds, dtype=np.int8)
        col.kind[rows] = k
        first = kinds[0]
        if kinds[-1] == first and bool((k == first).all()):
            parts: list[tuple[int, npt.NDArray[np.int64], list[Any]]] = [(first, rows, vals)]
        else:
            parts = []
            for kk in np.unique(k).tolist():
                idx = np.flatnonzero(k == kk)
                parts.append((kk, rows[idx], [vals[j] for j in idx.tolist()]))
        for kk, r, v in parts:
            if kk == K_MISSING:
                continue
            if kk in (K_BOOL, K_NUM):
                self._set_numbers(col, r, v, kk)
            elif kk == K_STR:
                col.codes(self._cap)[r] = col.encode(v)
            elif kk == K_OTHER:
                col.lists = None
                col.obj.update(zip(r.tolist(), v, strict=True))
            else:  # lists and dicts: a private copy, so later edits by the caller cannot leak in
                col.lists = None
                col.obj.update(zip(r.tolist(), map(_copy_json, v), strict=True))

    def _set_numbers(self, col: _Column, rows: npt.NDArray[np.int64], vals: list[Any],
                     kind: int) -> None:
        try:
            f = np.array(vals, dtype=np.float64)
        except OverflowError:
            f = np.array([_float_or_nan(x) for x in vals], dtype=np.float64)
        if kind == K_NUM:
            suspect = ~(np.abs(f) < _EXACT_INT)  # big, inf or NaN (from an overflow)
            if suspect.any():
                for j in np.flatnonzero(suspect).tolist():
                    x, fj = vals[j], float(f[j])  # Python float: exact int comparison
                    if isinstance(x, int) and (math.isnan(fj) or math.isinf(fj) or fj != x):
                        # an int that float64 cannot hold exactly: keep it as an object
                        col.kind[rows[j]] = K_OTHER
                        col.obj[int(rows[j])] = x
                        f[j] = np.nan
        col.nums(self._cap)[rows] = f

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, filter: Mapping[str, Any] | None) -> BoolArray:
        """Rows matching ``filter``.

        Parameters
        ----------
        filter : mapping or None
            A filter dict (see :func:`validate_filter`); None or ``{}`` matches every row.

        Returns
        -------
        ndarray of bool, shape (n,)

        Raises
        ------
        FilterError
            The filter is malformed (checked first, before any evaluation), or Haystack would
            raise while evaluating some document: an ordering operator (``> >= < <=``) meets
            a stored value it cannot order against the filter value (a string against a
            number; a number, bool, list, dict or non-ISO string against a date; a list or
            dict against a number). As in Haystack, only rows that reach the comparison count:
            ``AND``/``NOT`` stop at the first false condition and ``OR`` at the first true one.
        """
        node, _ = _compile_filter(filter)
        if node is None:
            return np.ones(self._n, dtype=bool)
        return self._eval(node, None)

    def _eval(self, node: _Node, care: BoolArray | None) -> BoolArray:
        if isinstance(node, _Cmp):
            return self._cmp(node, care)
        n = self._n
        acc: BoolArray | None = None
        if node.op == "OR":
            for child in node.children:
                live = care if acc is None else (~acc if care is None else care & ~acc)
                if live is not None and not live.any():
                    break
                r = self._eval(child, live)
                acc = r if acc is None else (acc | r)
            return np.zeros(n, dtype=bool) if acc is None else acc
        for child in node.children:  # AND, NOT
            live = care if acc is None else (acc if care is None else care & acc)
            if live is not None and not live.any():
                break
            r = self._eval(child, live)
            acc = r if acc is None else (acc & r)
        if acc is None:
            acc = np.ones(n, dtype=bool)
        return ~acc if node.op == "NOT" else acc

    def _column(self, target: tuple[str, ...]) -> _Column | None:
        if target[0] == "id":
            return self._id
        if target[0] == "content":
            return self._content
        return self._meta.get(target[1:])

    def _cmp(self, c: _Cmp, care: BoolArray | None) -> BoolArray:
        n = self._n
        col = self._column(c.target)
        if col is None:
            col = _Column(n)
        op = c.op
        if op == "==":
            assert c.operand is not None
            return self._eq(col, c.operand)
        if op == "!=":
            assert c.operand is not None
            return ~self._eq(col, c.operand)
        if op in _ORDER_OPS:
            assert c.operand is not None
            return self._order(col, c, c.operand, care)
        if op == "in":
            return self._in(col, c.items)
        if op == "not in":
            return ~self._in(col, c.items)
        kind = col.kind[:n]
        if op == "exists":
            return kind > K_NONE if c.value else kind <= K_NONE
        if op == "is_empty":
            res = kind <= K_NONE
            code = col.strings.get("")
            if code is not None and col.code is not None:
                res |= col.code[:n] == code
            if col.obj:
                res[col.list_index().empty] = True
                self._py_rows(col, res, (K_OTHER,), lambda v: v == [] or v == "")
            return res
        if op in ("text_match", "text_match_insensitive"):
            sub = c.value
            insensitive = op == "text_match_insensitive"
            if insensitive:
                low = sub.lower()
                res = self._per_string(col, lambda s: low in s.lower())
            else:
                res = self._per_string(col, lambda s: sub in s)
            self._py_rows(col, res, (K_OTHER,), lambda v: _py_text(v, sub, insensitive))
            return res
        if op == "contains":
            fv = c.value
            if isinstance(fv, str):
                res = self._per_string(col, lambda s: fv in s)
            else:
                res = np.zeros(n, dtype=bool)
            self._list_rows(col, res, [fv], all_of=False, pred=lambda v: _py_contains(v, fv))
            self._py_rows(col, res, (K_OTHER,), lambda v: _py_contains(v, fv))
            return res
        if op == "any":
            res = self._plain_isin(col, c.items, any_of=True)
            self._list_rows(col, res, c.value, all_of=False, pred=lambda v: _py_any(v, c.value))
            self._py_rows(col, res, (K_DICT, K_OTHER), lambda v: _py_any(v, c.value))
            return res
        # "all"
        res = self._plain_isin(col, c.items, any_of=False)
        self._list_rows(col, res, c.value, all_of=True, pred=lambda v: _py_all(v, c.value))
        self._py_rows(col, res, (K_DICT, K_OTHER), lambda v: _py_all(v, c.value))
        return res

    # -- helpers over one column
    def _per_string(self, col: _Column, pred: Callable[[str], bool]) -> BoolArray:
        """Rows holding a string for which ``pred`` is true (``pred`` runs once per string)."""
        n = self._n
        if col.code is None or not col.strings:
            return np.zeros(n, dtype=bool)
        strs = col.str_list
        per_code = np.fromiter((pred(s) for s in strs), dtype=bool, count=len(strs))
        per_code[0] = False
        return _gather(per_code, col.code[:n])

    def _py_rows(self, col: _Column, res: BoolArray, kinds: tuple[int, ...],
                 pred: Callable[[Any], bool], care: BoolArray | None = None) -> None:
        """Set ``res[r] = pred(value)`` for the object rows whose kind is in ``kinds``."""
        if not col.obj:
            return
        kind = col.kind[: self._n]
        sel = kind == kinds[0]
        for k in kinds[1:]:
            sel |= kind == k
        if care is not None:
            sel &= care
        obj = col.obj
        for r in np.flatnonzero(sel).tolist():
            res[r] = pred(obj[r])

    def _list_rows(self, col: _Column, res: BoolArray, values: list[Any], *, all_of: bool,
                   pred: Callable[[Any], bool]) -> None:
        """Set ``res`` on the list rows holding any (``all_of``: every) one of ``values``.

        Lists of hashable elements go through the column's element index; other list rows,
        or every list row when a value is unhashable, get ``pred`` in Python.
        """
        if not col.obj:
            return
        li = col.list_index()
        try:
            codes = [li.codes.get(v) for v in values]
        except TypeError:  # a list or dict value: only Python can compare it
            self._py_rows(col, res, (K_LIST,), pred)
            return
        n = self._n
        if all_of:
            if not values:
                res |= col.kind[:n] == K_LIST
            elif None not in codes:
                acc = np.ones(n, dtype=bool)
                for code in set(codes):
                    has = np.zeros(n, dtype=bool)
                    has[li.rows[li.elems == code]] = True
                    acc &= has
                res |= acc
        else:
            present = [c for c in codes if c is not None]
            if present:
                res[li.rows[_isin(li.elems, present)]] = True
        for r in li.unhashable:
            res[r] = pred(col.obj[r])

    def _date_codes(self, col: _Column, d: _Date, flag: int,
                    op: Callable[[Any, Any], Any]) -> npt.NDArray[np.bool_]:
        """Per code: the string is a date (``flag``) and ``op(string date, d)`` holds."""
        nc = len(col.str_list)
        cflag = col.cflag[:nc]
        ok = (cflag & flag) != 0
        if d.aware:
            both = (cflag & _F_AWARE) != 0
            res = np.where(both, op(col.cutc[:nc], d.utc), op(col.cwall[:nc], d.wall))
        else:
            res = op(col.cwall[:nc], d.wall)
        out: npt.NDArray[np.bool_] = ok & res
        return out

    def _eq(self, col: _Column, o: _Operand) -> BoolArray:
        """Haystack ``==``: Python equality, or the same instant for two ISO dates."""
        n = self._n
        kind = col.kind[:n]
        if o.kind == K_NONE:
            return kind <= K_NONE
        res: BoolArray
        if o.kind == K_NUM and o.exact and col.num is not None:
            res = col.num[:n] == o.num
        elif o.kind == K_STR and col.code is not None and o.text in col.strings:
            res = col.code[:n] == col.strings[o.text]
        else:
            res = np.zeros(n, dtype=bool)
        if o.eq_date is not None and col.has_dates and col.code is not None:
            res |= _gather(self._date_codes(col, o.eq_date, _F_EQ, _operator.eq), col.code[:n])
        if o.kind == K_LIST:
            kinds: tuple[int, ...] = (K_LIST, K_OTHER)
        elif o.kind == K_DICT:
            kinds = (K_DICT, K_OTHER)
        else:
            kinds = (K_OTHER,)
        raw = o.raw
        self._py_rows(col, res, kinds, lambda v: _py_equal(v, raw))
        return res

    def _in(self, col: _Column, items: tuple[_Operand, ...]) -> BoolArray:
        """Haystack ``in``: ``==`` against any element of the list."""
        n = self._n
        kind = col.kind[:n]
        res = np.zeros(n, dtype=bool)
        nums = [o.num for o in items if o.kind == K_NUM and o.exact]
        strs = [o.text for o in items if o.kind == K_STR]
        dates = [o.eq_date for o in items if o.eq_date is not None]
        if any(o.kind == K_NONE for o in items):
            res |= kind <= K_NONE
        if nums and col.num is not None:
            res |= _isin(col.num[:n], nums)
        if strs and col.code is not None:
            codes = [col.strings[s] for s in strs if s in col.strings]
            if codes:
                res |= _isin(col.code[:n], codes)
        if dates and col.has_dates and col.code is not None:
            per_code = np.zeros(len(col.str_list), dtype=bool)
            for d in dates:
                per_code |= self._date_codes(col, d, _F_EQ, _operator.eq)
            res |= _gather(per_code, col.code[:n])
        kinds = [K_OTHER]
        if any(o.kind == K_LIST for o in items):
            kinds.append(K_LIST)
        if any(o.kind == K_DICT for o in items):
            kinds.append(K_DICT)
        raws = [o.raw for o in items]
        self._py_rows(col, res, tuple(kinds), lambda v: any(_py_equal(e, v) for e in raws))
        return res

    def _plain_isin(self, col: _Column, items: tuple[_Operand, ...], *, any_of: bool) -> BoolArray:
        """Scalar rows (bool, number, string) compared with plain Python ``==`` (no dates).

        ``any_of``: equal to at least one item; otherwise equal to every item (an empty list
        matches every bool, number and string).
        """
        n = self._n
        kind = col.kind[:n]
        scalar = _kind_in(kind, K_BOOL, K_STR)
        if not any_of and not items:
            return scalar
        res = np.zeros(n, dtype=bool) if any_of else scalar
        for o in items:
            if o.kind == K_NUM and o.exact and col.num is not None:
                m = col.num[:n] == o.num
            elif o.kind == K_STR and col.code is not None and o.text in col.strings:
                m = col.code[:n] == col.strings[o.text]
            else:
                m = np.zeros(n, dtype=bool)
            if any_of:
                res |= m
            else:
                res &= m
        return res

    def _order(self, col: _Column, c: _Cmp, o: _Operand, care: BoolArray | None) -> BoolArray:
        """Haystack ``> >= < <=``: numbers with numbers, ISO dates with dates, else FilterError."""
        n = self._n
        if o.kind == K_NONE:
            return np.zeros(n, dtype=bool)
        kind = col.kind[:n]
        op = _ORDER_OPS[c.op]
        if o.ord_date is not None:  # a date string or a datetime
            bad = _kind_in(kind, K_BOOL, K_DICT) & (kind != K_STR)
            res = np.zeros(n, dtype=bool)
            if col.code is not None:
                codes = col.code[:n]
                per_code = self._date_codes(col, o.ord_date, _F_ORD, op)
                res = _gather(per_code, codes)
                not_date = (col.cflag[: len(col.str_list)] & _F_ORD) == 0
                not_date[0] = False
                if not_date.any():
                    bad |= _gather(not_date, codes)
        else:
            bad = _kind_in(kind, K_STR, K_DICT)
            if col.num is None:
                res = np.zeros(n, dtype=bool)
            elif o.exact:
                res = op(col.num[:n], o.num)
            else:  # an int float64 cannot hold: compare with its float neighbours
                res = (col.num[:n] >= o.hi) if c.op in (">", ">=") else (col.num[:n] <= o.lo)
        if care is not None:
            bad &= care
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            v = col.value_at(row)
            what = "an ISO-8601 date" if o.ord_date is not None else "a number"
            raise FilterError(
                f"{c.where}: operator {c.op!r} with value {_show(c.value)} on field "
                f"{c.field!r} needs {what} in every document it reaches, but a document holds "
                f"the {_KIND_NAME[int(kind[row])]} {_show(v)} (Haystack orders numbers with "
                "numbers and ISO-8601 dates with dates)"
            )
        raw, where, opname = c.value, c.where, c.op
        self._py_rows(col, res, (K_OTHER,), lambda v: _py_order(opname, v, raw, where), care)
        return res


def _copy_json(v: Any) -> Any:
    """Copy of the lists and dicts inside ``v`` (everything else is shared: it is immutable)."""
    if isinstance(v, list):
        return [_copy_json(x) for x in v]
    if isinstance(v, dict):
        return {k: _copy_json(x) for k, x in v.items()}
    return v


def _gather(per_code: BoolArray, codes: npt.NDArray[np.int32]) -> BoolArray:
    """``per_code[codes]`` (``np.take`` is about twice as fast as fancy indexing here)."""
    out: BoolArray = np.take(per_code, codes)
    return out


def _kind_in(kind: npt.NDArray[np.int8], lo: int, hi: int) -> BoolArray:
    """``lo <= kind <= hi`` in one pass (unsigned wrap-around turns it into one compare)."""
    out: BoolArray = (kind.view(np.uint8) - np.uint8(lo)) <= np.uint8(hi - lo)
    return out


def _float_or_nan(x: Any) -> float:
    try:
        return float(x)
    except OverflowError:
        return math.nan


def _isin(a: npt.NDArray[Any], values: list[Any]) -> BoolArray:
    if len(values) <= 8:
        res = a == values[0]
        for v in values[1:]:
            res |= a == v
        return res
    return np.isin(a, np.array(values, dtype=a.dtype))
