"""The core filter language as Milvus boolean expressions, and the row layout that makes it exact.

A Milvus-backed document collection stores each document as one Milvus row and runs filters
inside Milvus. Translating a filter naively (``meta["x"] == 1``) gives answers that differ
from :class:`~vecindex_core.filters.FilterColumns` *and* between deployments (measured with
pymilvus 3.0.2 on milvus-lite 3.2.2 and on the Milvus 2.3.5 server):

- lite says ``true == 1`` on JSON values, the server does not; Python (hence Haystack) does;
- a comparison on a missing JSON key is NULL on lite, so ``not (meta["x"] == 1)`` drops rows
  without ``x``; on the server it is false and ``not`` keeps them;
- ``exists meta["x"]`` is false for a JSON ``null`` on lite and true on the server;
- lite rejects ``in`` on a JSON path; only lite parses ``is null``;
- ``like`` has no escape character on lite (``%`` and ``_`` are always wildcards, a backslash
  is literal), and the 2.3.5 server only accepts prefix patterns (``"ab%"``);
- lite rejects ``\\u``, ``\\x``, ``\\0``, ``\\a``, ``\\b``, ``\\f``, ``\\v`` escapes in string
  literals (the server accepts them); both read ``\\\\ \\" \\n \\r \\t`` and raw characters.

So the row carries a few derived JSON fields (:data:`ROW_FIELDS`, filled by
:func:`row_fields`) whose values have exactly one JSON type each and are never ``null``, and
:func:`to_expr` only generates the subset both deployments evaluate alike: a JSON test under
a ``not`` is guarded by ``exists`` (outside one, a missing key is false on the server and
NULL on lite, which ``and``/``or`` treat alike, so the guard is left out), ``!=`` is always
guarded, equality compares strings, ordering compares numbers of one JSON type, list
membership uses ``json_contains*``, and OR-chains replace ``in``.

Row layout (the contract the Milvus collection is built from)
-------------------------------------------------------------
Besides ``id`` (VARCHAR primary key: the document id), ``uid`` (INT64), ``has_vec`` (BOOL)
and ``vec`` (FLOAT_VECTOR), which belong to the collection, a row has the fields of
:data:`ROW_FIELDS`:

============ ======= =========================================================================
field        kind    value
============ ======= =========================================================================
``text``     varchar the content, ``""`` when it is None
``has_text`` bool    whether the content is a str (False: None)
``meta``     json    the metadata dict, exactly as given (read back by :func:`row_meta`)
``f_eq``     json    per field: an *equality code*, a str equal for two values iff they are
                     equal in Python (``1 == 1.0 == True``): ``"z"`` None, ``"n<number>"``
                     bool/int/float, ``"s<text>"`` str, ``"l<hash>"`` list, ``"d<hash>"``
                     dict (a 128-bit BLAKE2b of a canonical form). Its first letter is the
                     value's kind. Present iff the field is present (None included).
``f_num``    json    per bool/number field that float64 holds exactly: the value as a float
``f_int``    json    per int field that float64 cannot hold (abs > 2**53): the int
``f_wall``   json    per string that ``datetime.fromisoformat`` reads: its wall-clock
                     microseconds since 1970 (int)
``f_utc``    json    per such string with a UTC offset: its UTC microseconds (int)
``f_deq``    json    per such string that also starts with ``YYYY-MM-DD`` (Haystack's test
                     for date *equality*): its wall-clock microseconds
``f_like``   json    per string holding ``%``, ``_``, ``\\`` or U+E000..U+E003: the string in
                     the like-safe encoding (below); absent when it equals the string
``f_lower``  json    per string: the like-safe encoding of ``str.lower()``; absent when it
                     equals the string itself
``f_elems``  json    per list field: the equality codes of its elements (deduplicated)
============ ======= =========================================================================

"Per field" means per metadata key path, nested dict paths included (``meta.a.b`` is
``meta["a"]["b"]`` when ``meta["a"]`` is a dict), and ``id`` and ``content`` for the string
fields (``f_wall`` ... ``f_lower``). The JSON keys are ``"k"`` plus a 96-bit BLAKE2b of the
field's path, so metadata keys with quotes, brackets, dots or any other character never
appear in an expression. Every JSON field stays under Milvus's 64 KiB limit
(:data:`MAX_JSON_BYTES`; :func:`row_fields` raises otherwise).

The like-safe encoding replaces ``%``, ``_`` and ``\\`` (and, to stay reversible, the
private-use characters U+E000..U+E003) by three-character code words starting with U+E000,
so a ``like`` pattern never holds a wildcard or backslash it does not mean, on any
deployment; a needle is found in an encoded string iff it is found in the string.

What runs inside Milvus
-----------------------
Every operator of the core language, with FilterColumns' exact answers, including the
data-dependent :class:`~vecindex_core.errors.FilterError` of ``> >= < <=`` (see
:func:`error_checks`). The one exception: substring operators (``text_match``,
``text_match_insensitive``, ``contains`` with a str value) need ``like "%x%"``, which
Milvus < 2.4 (the 2.3.5 server) rejects; pass ``infix_like=False`` for such a server
(:func:`supports_infix_like` reads the server version) and they raise
:class:`~vecindex_core.errors.NotSupportedError` (an empty needle still works: it matches
every string). Limits of the row layout: metadata integers must fit int64 (Milvus JSON
stores 64-bit integers; pymilvus refuses larger ones), strings must be valid Unicode
without lone surrogates, and each JSON field must stay under 64 KiB.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Final, Literal, NamedTuple, TypeAlias

from ..errors import FilterError, InvalidArgumentError, NotSupportedError
from ..filters import (
    _F_AWARE,
    _F_EQ,
    _F_ORD,
    K_NONE,
    _Cmp,
    _compile_filter,
    _Date,
    _date_flags,
    _Logic,
    _Operand,
    _show,
)

__all__ = [
    "MAX_JSON_BYTES",
    "ROW_FIELDS",
    "FieldKind",
    "FilterCheck",
    "error_checks",
    "id_in_expr",
    "row_fields",
    "row_meta",
    "string_literal",
    "supports_infix_like",
    "to_expr",
]

#: Scalar field kinds of :data:`ROW_FIELDS` (the collection maps them to pymilvus DataTypes).
FieldKind: TypeAlias = Literal["varchar", "json", "bool", "int64"]

#: The fields a row has besides ``id``, ``uid``, ``has_vec`` and ``vec``, in schema order.
ROW_FIELDS: Final[tuple[tuple[str, FieldKind], ...]] = (
    ("text", "varchar"),
    ("has_text", "bool"),
    ("meta", "json"),
    ("f_eq", "json"),
    ("f_num", "json"),
    ("f_int", "json"),
    ("f_wall", "json"),
    ("f_utc", "json"),
    ("f_deq", "json"),
    ("f_like", "json"),
    ("f_lower", "json"),
    ("f_elems", "json"),
)
#: Milvus refuses a JSON value longer than this many bytes (compact UTF-8 JSON).
MAX_JSON_BYTES: Final = 65536

_DERIVED: Final[tuple[str, ...]] = tuple(n for n, k in ROW_FIELDS if n.startswith("f_"))
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_ORDER: Final[frozenset[str]] = frozenset({">", ">=", "<", "<="})


# --------------------------------------------------------------------------- encodings
@lru_cache(maxsize=4096)
def _key(target: tuple[str, ...]) -> str:
    """JSON key of a field path: ``"k"`` + 96-bit BLAKE2b (safe in any expression)."""
    raw = json.dumps(list(target), ensure_ascii=True, separators=(",", ":")).encode()
    return "k" + hashlib.blake2b(raw, digest_size=12).hexdigest()


def _num_text(x: bool | int | float) -> str:
    """Canonical text of a number: equal texts iff Python-equal numbers (finite only)."""
    if isinstance(x, float):
        return str(int(x)) if x.is_integer() else repr(x)
    return str(int(x))


class _NoMatch(Exception):
    """A filter value no stored JSON value can equal (a datetime, NaN, inf, a lone surrogate)."""


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _canon(v: Any) -> Any:
    if v is None:
        return "z"
    if isinstance(v, (bool, int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            raise _NoMatch
        return "n" + _num_text(v)
    if isinstance(v, str):
        return "s" + v
    if isinstance(v, list):
        return ["l", *(_canon(x) for x in v)]
    if isinstance(v, dict):
        return ["d", *sorted([k, _canon(x)] for k, x in v.items())]
    raise _NoMatch


def _code(v: Any) -> str | None:
    """The equality code of a value (see the module docstring), None if nothing can equal it."""
    try:
        if isinstance(v, (list, dict)):
            raw = json.dumps(_canon(v), ensure_ascii=True, separators=(",", ":")).encode()
            return ("l" if isinstance(v, list) else "d") + hashlib.blake2b(
                raw, digest_size=16).hexdigest()
        code = _canon(v)
    except _NoMatch:
        return None
    assert isinstance(code, str)
    if code[0] == "s" and not _encodable(code):
        return None
    return code


_EMPTY_LIST_CODE: Final = _code([])

_ESC: Final = "\ue000"
_T1, _T2, _T3 = "\ue001", "\ue002", "\ue003"
# Code words are U+E000 plus two of U+E001..U+E003, and those four characters are
# themselves encoded, so an encoded needle can only match at a code word boundary.
_LIKE_TABLE: Final = str.maketrans({
    "%": _ESC + _T1 + _T1, "_": _ESC + _T1 + _T2, "\\": _ESC + _T1 + _T3,
    _ESC: _ESC + _T2 + _T1, _T1: _ESC + _T2 + _T2, _T2: _ESC + _T2 + _T3, _T3: _ESC + _T3 + _T1,
})


def _like_safe(s: str) -> str:
    return s.translate(_LIKE_TABLE)


_LIT_TABLE: Final = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})


def string_literal(s: str) -> str:
    """A Milvus string literal both deployments read back as ``s``."""
    return '"' + s.translate(_LIT_TABLE) + '"'


# --------------------------------------------------------------------------- rows
def _add_string(d: dict[str, dict[str, Any]], key: str, s: str) -> None:
    flag, date = _date_flags(s) if s[:4].isdigit() else (0, None)
    if date is not None and flag & _F_ORD:
        d["f_wall"][key] = date.wall
        if flag & _F_AWARE:
            d["f_utc"][key] = date.utc
        if flag & _F_EQ:
            d["f_deq"][key] = date.wall
    like = _like_safe(s)
    if like != s:
        d["f_like"][key] = like
    low = _like_safe(s.lower())
    if low != s:
        d["f_lower"][key] = low


def _check_str(s: str, where: str) -> None:
    if not _encodable(s):
        raise InvalidArgumentError(
            f"{where} is {_show(s)}, which holds a lone surrogate: Milvus stores UTF-8 text only"
        )


def _stored(v: Any, where: str) -> Any:
    """A plain JSON copy of a metadata value; raises for what Milvus cannot store exactly."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        if not _INT64_MIN <= v <= _INT64_MAX:
            raise InvalidArgumentError(
                f"{where} is {v}, outside the 64-bit integer range Milvus JSON stores"
            )
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise InvalidArgumentError(f"{where} is {v!r}; metadata must be finite JSON")
        return v
    if isinstance(v, str):
        _check_str(v, where)
        return v
    if isinstance(v, list):
        return [_stored(x, f"{where}[{i}]") for i, x in enumerate(v)]
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if not isinstance(k, str):
                raise InvalidArgumentError(
                    f"{where} has the key {k!r} of type {type(k).__name__}; metadata keys must "
                    "be str"
                )
            _check_str(k, f"{where} key")
            out[k] = _stored(x, f"{where}[{k!r}]")
        return out
    raise InvalidArgumentError(
        f"{where} is {_show(v)} of type {type(v).__name__}, which is not JSON (metadata values "
        "must be str, int, float, bool, None, lists or dicts of those)"
    )


def _walk(d: dict[str, dict[str, Any]], path: tuple[str, ...], obj: dict[str, Any]) -> None:
    for k, v in obj.items():
        p = (*path, k)
        key = _key(p)
        code = _code(v)
        assert code is not None  # _stored accepted it
        d["f_eq"][key] = code
        if isinstance(v, (bool, int, float)):
            if isinstance(v, int) and not isinstance(v, bool) and float(v) != v:
                d["f_int"][key] = v
            else:
                d["f_num"][key] = float(v)
        elif isinstance(v, str):
            _add_string(d, key, v)
        elif isinstance(v, list):
            elems = dict.fromkeys(_code(x) for x in v)
            d["f_elems"][key] = [c for c in elems if c is not None]
        elif isinstance(v, dict):
            _walk(d, p, v)


def _json_bytes(v: Any) -> int:
    return len(json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def row_fields(id: str, text: str | None, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the :data:`ROW_FIELDS` of one document (pure; plain JSON types).

    Parameters
    ----------
    id : str
        The document id (stored by the collection in the ``id`` primary key; used here for
        the derived fields that make ``id`` filters exact).
    text : str or None
        The content.
    meta : mapping with str keys
        The metadata: JSON values (None, bool, int within int64, finite float, str, lists and
        dicts of those; tuples are not accepted, as JSON would turn them into lists).

    Returns
    -------
    dict
        ``{field name: value}`` for every field of :data:`ROW_FIELDS`; ``meta`` is a deep
        copy of ``meta``, which :func:`row_meta` gives back unchanged.

    Raises
    ------
    InvalidArgumentError
        ``id`` is not a str, ``text`` is neither str nor None, ``meta`` is not a mapping, a
        metadata key is not a str, a value is not JSON (or an int beyond int64, a NaN or an
        infinity), a string holds a lone surrogate, or a JSON field would exceed
        :data:`MAX_JSON_BYTES`.
    """
    if not isinstance(id, str):
        raise InvalidArgumentError(f"id must be a str, got {_show(id)}")
    _check_str(id, "id")
    if text is not None:
        if not isinstance(text, str):
            raise InvalidArgumentError(f"text must be a str or None, got {_show(text)}")
        _check_str(text, f"text of document {id!r}")
    if not isinstance(meta, Mapping):
        raise InvalidArgumentError(
            f"metadata of document {id!r} must be a mapping, got {type(meta).__name__}"
        )
    plain = _stored(dict(meta), f"metadata of document {id!r}")
    d: dict[str, dict[str, Any]] = {name: {} for name in _DERIVED}
    _add_string(d, _key(("id",)), id)
    if text is not None:
        _add_string(d, _key(("content",)), text)
    _walk(d, ("meta",), plain)
    row: dict[str, Any] = {
        "text": "" if text is None else text, "has_text": text is not None, "meta": plain, **d,
    }
    for name, kind in ROW_FIELDS:
        if kind == "json" and row[name]:  # an empty dict is "{}": 2 bytes
            size = _json_bytes(row[name])
            if size > MAX_JSON_BYTES:
                what = ("metadata" if name == "meta" else
                        "the id, the text and every metadata string (the field that makes "
                        "like/substring/case-insensitive filters exact; '%', '_', '\\' and a "
                        "few control characters take several bytes each, non-ASCII letters "
                        "up to 6)" if name in ("f_like", "f_lower") else
                        "the date strings of the metadata")
                raise InvalidArgumentError(
                    f"document {id!r}: the JSON field {name!r}, derived from {what}, would "
                    f"take {size} bytes, over Milvus's limit of {MAX_JSON_BYTES} bytes per "
                    "JSON field; shorten the text or the metadata strings (nothing was "
                    "written)"
                )
    return row


def row_meta(row: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """``(text, metadata)`` of a row read back from Milvus, exactly as :func:`row_fields` wrote.

    Parameters
    ----------
    row : mapping
        A query or search result holding at least ``text``, ``has_text`` and ``meta``.

    Returns
    -------
    (str or None, dict)

    Raises
    ------
    InvalidArgumentError
        A field is missing or has the wrong type.
    """
    for name in ("text", "has_text", "meta"):
        if name not in row:
            raise InvalidArgumentError(
                f"row lacks the field {name!r} (query it with output_fields containing "
                f"'text', 'has_text' and 'meta'); got fields {sorted(map(str, row))}"
            )
    text, has_text, meta = row["text"], row["has_text"], row["meta"]
    if not isinstance(has_text, bool) or not isinstance(text, str) or not isinstance(meta, dict):
        raise InvalidArgumentError(
            f"row has text {_show(text)}, has_text {_show(has_text)}, meta {_show(meta)}; "
            "expected a str, a bool and a dict"
        )
    return (text if has_text else None), meta


# --------------------------------------------------------------------------- expression trees
class _X(NamedTuple):
    """A boolean expression: ``op`` is ``T``/``F``, ``atom``, ``and``, ``or`` or ``not``."""

    op: str
    text: str = ""
    args: tuple[_X, ...] = ()


_TRUE: Final = _X("T")
_FALSE: Final = _X("F")
#: Constants for the root only (both deployments reject ``true``/``false`` as a predicate).
_TRUE_TEXT: Final = "(has_text == true or has_text == false)"
_FALSE_TEXT: Final = "(has_text == true and has_text == false)"


def _atom(text: str) -> _X:
    return _X("atom", text)


def _junction(op: str, xs: Iterable[_X]) -> _X:
    absorbing, neutral = (_FALSE, _TRUE) if op == "and" else (_TRUE, _FALSE)
    flat: dict[_X, None] = {}
    for x in xs:
        if x == absorbing:
            return absorbing
        if x == neutral:
            continue
        flat.update(dict.fromkeys(x.args if x.op == op else (x,)))
    if not flat:
        return neutral
    args = tuple(flat)
    return args[0] if len(args) == 1 else _X(op, args=args)


def _and(*xs: _X) -> _X:
    return _junction("and", xs)


def _or(*xs: _X) -> _X:
    return _junction("or", xs)


def _not(x: _X) -> _X:
    if x == _TRUE:
        return _FALSE
    if x == _FALSE:
        return _TRUE
    return x.args[0] if x.op == "not" else _X("not", args=(x,))


def _guarded(guard: _X, test: str) -> _X:
    """``test`` on a JSON key, true only where ``guard`` (the key exists) holds.

    Outside any ``not``, the guard is left out: a test on a missing key is false on the
    server and NULL on lite, and NULL acts as false under ``and``/``or`` alone. Inside a
    ``not`` lite's NULL would survive the negation, so the guard is written out there.
    """
    return _X("guarded", test, (guard,))


def _atomic(x: _X, negated: bool) -> bool:
    return x.op == "atom" or (x.op == "guarded" and not negated)


def _render(x: _X, negated: bool = False) -> str:
    if x.op == "atom":
        return x.text
    if x.op == "guarded":
        return f"{x.args[0].text} and {x.text}" if negated else x.text
    if x.op == "T":
        return _TRUE_TEXT
    if x.op == "F":
        return _FALSE_TEXT
    if x.op == "not":
        inner = x.args[0]
        if _atomic(inner, True) and inner.text.startswith("("):
            return f"not {inner.text}"
        return f"not ({_render(inner, True)})"
    parts = (_render(a, negated) if _atomic(a, negated) else f"({_render(a, negated)})"
             for a in x.args)
    return f" {x.op} ".join(parts)


# --------------------------------------------------------------------------- fields
def _flit(x: float) -> str:
    """A float literal (finite ``x``) that Milvus parses back to the same double."""
    return repr(float(x))


class _Field:
    """Expressions over one filter field (``id``, ``content`` or a metadata path)."""

    def __init__(self, target: tuple[str, ...], infix_like: bool, where: str, op: str) -> None:
        self.is_meta = target[0] == "meta"
        self.fixed = target[0]  # "id" | "content" | "meta"
        self.key = _key(target)
        self.infix_like = infix_like
        self.where = where
        self.op = op

    def path(self, field: str) -> str:
        return f'{field}["{self.key}"]'

    def has(self, field: str) -> _X:
        return _atom(f"(exists {self.path(field)})")

    def cmp(self, field: str, op: str, literal: str) -> _X:
        return _guarded(self.has(field), f"{self.path(field)} {op} {literal}")

    # -- kinds
    def not_null(self) -> _X:
        """Present and not None."""
        if self.fixed == "id":
            return _TRUE
        if self.fixed == "content":
            return _atom("has_text == true")
        # "!=" is true on a missing key on the server: always guarded
        return _and(self.has("f_eq"), _atom(f'{self.path("f_eq")} != "z"'))

    def kind(self, letter: str) -> _X:
        """Of one kind: ``n`` bool/number, ``s`` str, ``l`` list, ``d`` dict."""
        if self.is_meta:
            return self.cmp("f_eq", "like", string_literal(letter + "%"))
        return self.not_null() if letter == "s" else _FALSE

    def eq_code(self, code: str) -> _X:
        """Python-equal to the value with equality code ``code``."""
        if self.is_meta:
            return self.cmp("f_eq", "==", string_literal(code))
        if code[0] != "s":
            return _FALSE
        if self.fixed == "id":
            return _atom(f"id == {string_literal(code[1:])}")
        return _and(_atom("has_text == true"), _atom(f"text == {string_literal(code[1:])}"))

    # -- numbers
    def num_order(self, op: str, o: _Operand) -> _X:
        if not self.is_meta:
            return _FALSE
        return _or(self._float_part(op, o), self._int_part(op, o.raw))

    def _float_part(self, op: str, o: _Operand) -> _X:
        if o.exact:
            x = o.num
        elif op in (">", ">="):  # an int float64 cannot hold: compare with its neighbours
            x, op = o.hi, ">="
        else:
            x, op = o.lo, "<="
        if math.isnan(x):
            return _FALSE
        if math.isinf(x):
            below = op in ("<", "<=")
            return self.has("f_num") if below == (x > 0) else _FALSE
        return self.cmp("f_num", op, _flit(x))

    def _int_part(self, op: str, v: bool | int | float) -> _X:
        if isinstance(v, float):
            if math.isnan(v):
                return _FALSE
            if math.isinf(v):
                below = op in ("<", "<=")
                return self.has("f_int") if below == (v > 0) else _FALSE
            fl = math.floor(v)
            if fl != v:  # n > 2.5 <=> n > 2; n < 2.5 <=> n <= 2
                op = ">" if op in (">", ">=") else "<="
            iv = int(fl)
        else:
            iv = int(v)
        if iv > _INT64_MAX or iv < _INT64_MIN:
            below = op in ("<", "<=")
            return self.has("f_int") if below == (iv > 0) else _FALSE
        return self.cmp("f_int", op, str(iv))

    # -- dates
    def date_eq(self, d: _Date) -> _X:
        naive = self.cmp("f_deq", "==", str(d.wall))
        if not d.aware:
            return naive
        return _or(
            _and(self.has("f_deq"), self.cmp("f_utc", "==", str(d.utc))),
            _and(_not(self.has("f_utc")), naive),
        )

    def date_order(self, op: str, d: _Date) -> _X:
        wall = self.cmp("f_wall", op, str(d.wall))
        if not d.aware:
            return wall
        return _or(self.cmp("f_utc", op, str(d.utc)), _and(_not(self.has("f_utc")), wall))

    # -- strings and lists
    def substring(self, needle: str, lower: bool) -> _X:
        if not _encodable(needle):
            return _FALSE
        pat = _like_safe(needle.lower() if lower else needle)
        if not pat:
            return self.kind("s")
        if not self.infix_like:
            raise NotSupportedError(
                f"{self.where}: operator {self.op!r} needs substring matching (like \"%...%\"), "
                "which this Milvus server does not support (Milvus before 2.4 matches only "
                "prefixes); use Milvus >= 2.4 or milvus-lite for this filter"
            )
        like = string_literal("%" + pat + "%")
        alt = "f_lower" if lower else "f_like"
        if self.fixed == "id":
            plain = _atom(f"id like {like}")
        elif self.fixed == "content":
            plain = _and(_atom("has_text == true"), _atom(f"text like {like}"))
        else:
            plain = self.cmp("f_eq", "like", string_literal("s%" + pat + "%"))
        return _or(self.cmp(alt, "like", like), _and(_not(self.has(alt)), plain))

    def _elems(self, fn: str, codes: list[str]) -> _X:
        if not self.is_meta:
            return _FALSE
        if fn == "json_contains":
            arg = string_literal(codes[0])
        else:
            arg = "[" + ", ".join(map(string_literal, codes)) + "]"
        return _guarded(self.has("f_elems"), f"{fn}({self.path('f_elems')}, {arg})")

    def list_contains(self, code: str) -> _X:
        return self._elems("json_contains", [code])

    def list_any(self, codes: list[str]) -> _X:
        return self._elems("json_contains_any", codes) if codes else _FALSE

    def list_all(self, codes: list[str]) -> _X:
        return self._elems("json_contains_all", codes) if codes else self.kind("l")


# --------------------------------------------------------------------------- operators
def _eq(f: _Field, value: Any, o: _Operand) -> _X:
    """Haystack ``==``: Python equality, or the same instant for two ISO-8601 dates."""
    if value is None:
        return _not(f.not_null())
    code = _code(value)
    parts = [] if code is None else [f.eq_code(code)]
    if o.eq_date is not None:
        parts.append(f.date_eq(o.eq_date))
    return _or(*parts)


def _leaf(c: _Cmp, f: _Field) -> _X:
    op, v = c.op, c.value
    if op in ("==", "!="):
        assert c.operand is not None
        x = _eq(f, v, c.operand)
        return x if op == "==" else _not(x)
    if op in ("in", "not in"):
        x = _or(*(_eq(f, item, o) for item, o in zip(v, c.items, strict=True)))
        return x if op == "in" else _not(x)
    if op in _ORDER:
        o = c.operand
        assert o is not None
        if o.kind == K_NONE:
            return _FALSE
        if o.ord_date is not None:
            return f.date_order(op, o.ord_date)
        return f.num_order(op, o)
    if op == "exists":
        return f.not_null() if v else _not(f.not_null())
    if op == "is_empty":
        assert _EMPTY_LIST_CODE is not None
        return _or(_not(f.not_null()), f.eq_code("s"), f.eq_code(_EMPTY_LIST_CODE))
    if op in ("text_match", "text_match_insensitive"):
        return f.substring(v, lower=op == "text_match_insensitive")
    if op == "contains":
        code = _code(v)
        parts = [] if code is None else [f.list_contains(code)]
        if isinstance(v, str):
            parts.append(f.substring(v, lower=False))
        return _or(*parts)
    codes = [_code(item) for item in v]
    if op == "any":
        # list rows share an element; other rows equal an element (None and lists excluded)
        scalar = [f.eq_code(cd) for item, cd in zip(v, codes, strict=True)
                  if cd is not None and item is not None and not isinstance(item, list)]
        return _or(f.list_any([cd for cd in dict.fromkeys(codes) if cd is not None]), *scalar)
    # "all": list rows hold every element; other rows equal every element
    if not v:
        return f.not_null()
    parts = []
    if None not in codes:
        parts.append(f.list_all(list(dict.fromkeys(c for c in codes if c is not None))))
    distinct = set(codes)
    if len(distinct) == 1:
        only = codes[0]
        if only is not None and only[0] not in "lz":
            parts.append(f.eq_code(only))
    return _or(*parts)


def _bad(c: _Cmp, f: _Field) -> _X:
    """Rows on which ``c`` (an ordering) raises FilterError in FilterColumns."""
    o = c.operand
    assert o is not None
    if o.kind == K_NONE:
        return _FALSE
    if o.ord_date is not None:  # everything present but an ISO-8601 string
        return _and(f.not_null(), _not(f.has("f_wall")))
    return _or(f.kind("s"), f.kind("l"), f.kind("d"))


class FilterCheck(NamedTuple):
    """A data-dependent error of a filter: FilterColumns raises iff ``expr`` matches a row.

    ``> >= < <=`` raise :class:`~vecindex_core.errors.FilterError` when they *reach* a
    document whose value they cannot order (a string against a number, a non-date against a
    date): see ``docs/filters.md``. ``expr`` selects exactly those documents, reach included
    (``AND``/``NOT`` stop at the first false condition, ``OR`` at the first true one).
    """

    expr: str
    where: str
    field: str
    op: str
    value: Any
    target: tuple[str, ...]
    wants_date: bool

    def error(self, row: Mapping[str, Any]) -> FilterError:
        """The FilterError to raise for ``row`` (a row matched by ``expr``, with ``id``,
        ``text``, ``has_text`` and ``meta``), worded as FilterColumns words it."""
        value: Any = row.get("id")
        if self.target[0] == "content":
            value = row.get("text") if row.get("has_text") else None
        elif self.target[0] == "meta":
            value = row.get("meta")
            for k in self.target[1:]:
                value = value.get(k) if isinstance(value, dict) else None
        what = "an ISO-8601 date" if self.wants_date else "a number"
        kind = {bool: "bool", int: "number", float: "number", str: "string", list: "list",
                dict: "dict"}.get(type(value), "object")
        return FilterError(
            f"{self.where}: operator {self.op!r} with value {_show(self.value)} on field "
            f"{self.field!r} needs {what} in every document it reaches, but document "
            f"{row.get('id')!r} holds the {kind} {_show(value)} (Haystack orders numbers with "
            "numbers and ISO-8601 dates with dates)"
        )


_Node: TypeAlias = _Cmp | _Logic


def _translate(node: _Node, reach: _X, checks: list[FilterCheck] | None, infix: bool) -> _X:
    if isinstance(node, _Cmp):
        f = _Field(node.target, infix, node.where, node.op)
        x = _leaf(node, f)
        if checks is not None and node.op in _ORDER:
            bad = _and(reach, _bad(node, f))
            if bad != _FALSE:
                assert node.operand is not None
                checks.append(FilterCheck(
                    _render(bad), node.where, node.field, node.op, node.value, node.target,
                    node.operand.ord_date is not None,
                ))
        return x
    results: list[_X] = []
    for child in node.children:
        if node.op == "OR":
            live = _and(reach, *(_not(r) for r in results))
        else:
            live = _and(reach, *results)
        results.append(_translate(child, live, checks, infix))
    if node.op == "OR":
        return _or(*results)
    both = _and(*results)
    return _not(both) if node.op == "NOT" else both


def to_expr(filter: Mapping[str, Any] | None, *, infix_like: bool = True) -> str:
    """A Milvus boolean expression selecting exactly the rows ``FilterColumns`` selects.

    Parameters
    ----------
    filter : mapping or None
        A core filter (Haystack 2.x filter dict plus the vecindex extension operators; see
        ``docs/filters.md``).
    infix_like : bool, default True
        Whether the deployment evaluates ``like "%x%"`` (milvus-lite and Milvus >= 2.4; see
        :func:`supports_infix_like`). With False, substring operators raise.

    Returns
    -------
    str
        The expression over the fields of :data:`ROW_FIELDS`; ``""`` when the filter is None
        or empty or matches every row (an empty ``AND``), so "no filter" and "match all"
        look the same. Rows must have been written with :func:`row_fields`.

    Raises
    ------
    FilterError
        The filter is malformed (the checks of
        :func:`~vecindex_core.filters.validate_filter`, raised before anything else).
    NotSupportedError
        ``infix_like`` is False and the filter uses ``text_match``,
        ``text_match_insensitive`` or ``contains`` with a non-empty str value.

    Notes
    -----
    FilterColumns also raises FilterError when an ordering reaches a value it cannot order;
    that depends on the stored data, and :func:`error_checks` gives the queries that detect
    it. Where they match nothing, this expression's rows are FilterColumns' answer.
    """
    node, _ = _compile_filter(filter)
    if node is None:
        return ""
    x = _translate(node, _TRUE, None, infix_like)
    return "" if x == _TRUE else _render(x)


def error_checks(filter: Mapping[str, Any] | None, *,
                 infix_like: bool = True) -> list[FilterCheck]:
    """The queries that tell whether FilterColumns would raise FilterError on the stored data.

    Parameters
    ----------
    filter : mapping or None
        A core filter.
    infix_like : bool, default True
        As for :func:`to_expr`.

    Returns
    -------
    list of FilterCheck
        One per ordering comparison (``> >= < <=`` with a non-None value), in the order
        FilterColumns evaluates them; empty when the filter cannot raise. Query each
        ``check.expr`` with ``limit=1``; for the first that matches a row, raise
        ``check.error(row)``.

    Raises
    ------
    FilterError, NotSupportedError
        As :func:`to_expr`.
    """
    node, _ = _compile_filter(filter)
    if node is None:
        return []
    checks: list[FilterCheck] = []
    _translate(node, _TRUE, checks, infix_like)
    return checks


def id_in_expr(ids: Iterable[str]) -> str:
    """``id in [...]`` for document ids, escaped for both deployments.

    Parameters
    ----------
    ids : iterable of str

    Returns
    -------
    str
        ``id in ["a", "b"]``; an expression matching nothing when ``ids`` is empty.

    Raises
    ------
    InvalidArgumentError
        ``ids`` is a str (not a list of them), or an id is not a str or holds a lone
        surrogate.
    """
    if isinstance(ids, (str, bytes)):
        raise InvalidArgumentError(f"ids must be an iterable of str, not a single {_show(ids)}")
    out = []
    for i in ids:
        if not isinstance(i, str):
            raise InvalidArgumentError(f"ids must be str, got {_show(i)}")
        _check_str(i, "id")
        out.append(string_literal(i))
    if not out:
        return _FALSE_TEXT
    return "id in [" + ", ".join(out) + "]"


_VERSION: Final = re.compile(r"v?(\d+)\.(\d+)")


def supports_infix_like(server_version: str) -> bool:
    """Whether a deployment evaluates ``like "%x%"``, from ``MilvusClient.get_server_version()``.

    milvus-lite (``"milvus_lite-3.2.2"``) and Milvus >= 2.4 do; Milvus 2.3 (the PyPI
    ``milvus`` 2.3.5 server reports ``"v2.3.5-lite"``) and older accept prefix patterns only.
    An unreadable version is taken as a modern one (True).
    """
    if not isinstance(server_version, str):
        raise InvalidArgumentError(f"server_version must be a str, got {_show(server_version)}")
    if server_version.startswith("milvus_lite"):
        return True
    m = _VERSION.match(server_version.strip())
    if m is None:
        return True
    return (int(m.group(1)), int(m.group(2))) >= (2, 4)
