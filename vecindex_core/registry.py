"""The one registry of index kinds, their declared parameters and spec strings.

Every index kind registers itself here with :func:`register`. The table produces the
parameter validation and its error messages, parses and prints spec strings such as
``"ivf_pq(nlist=256,m=48)"`` (``format_spec(*parse_spec(s))`` round-trips), and lists the
valid names for errors and docs. Nothing else in the library keeps a list of kinds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import InvalidParameterError, UnknownIndexError

if TYPE_CHECKING:
    from .base import VectorIndex

__all__ = [
    "IndexKind",
    "Param",
    "format_spec",
    "get_kind",
    "list_indexes",
    "parse_spec",
    "register",
]

_MISSING = object()


@dataclass(frozen=True)
class Param:
    """A declared parameter: name, Python type, default and allowed range or choices.

    ``low``/``high`` are inclusive bounds; ``choices`` an explicit set of values.
    """

    name: str
    type: type
    default: Any
    doc: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None

    def describe(self) -> str:
        """One-line description used in error messages and docs."""
        if self.choices is not None:
            allowed = " | ".join(map(repr, self.choices))
        elif self.low is not None or self.high is not None:
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            allowed = f"{self.type.__name__} in [{lo}, {hi}]"
        else:
            allowed = self.type.__name__
        return f"{self.name}: {allowed} (default {self.default!r})"

    def validate(self, value: Any, owner: str) -> Any:
        """Return ``value`` converted to the declared type, or raise a typed error."""
        ok_type = (
            isinstance(value, bool)
            if self.type is bool
            else isinstance(value, self.type) and not isinstance(value, bool)
        )
        if self.type is float and isinstance(value, numbers.Real) and not isinstance(value, bool):
            value, ok_type = float(value), True
        is_index = hasattr(value, "__index__") and not isinstance(value, bool)
        if not ok_type and self.type is int and is_index:
            value, ok_type = int(value), True
        if not ok_type:
            raise InvalidParameterError(
                f"{owner}: parameter {self.name}={value!r} has type {type(value).__name__}, "
                f"expected {self.describe()}"
            )
        if self.type is float and not math.isfinite(value):
            raise InvalidParameterError(f"{owner}: parameter {self.name}={value!r} is not finite")
        if self.choices is not None and value not in self.choices:
            raise InvalidParameterError(
                f"{owner}: parameter {self.name}={value!r} is not allowed, expected "
                f"{self.describe()}"
            )
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            raise InvalidParameterError(
                f"{owner}: parameter {self.name}={value!r} is out of range, expected "
                f"{self.describe()}"
            )
        return value


def _validate_all(
    table: Iterable[Param], values: Mapping[str, Any], owner: str, what: str
) -> dict[str, Any]:
    by_name = {p.name: p for p in table}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        valid = ", ".join(sorted(by_name)) or "none"
        raise InvalidParameterError(
            f"{owner}: unknown {what} {', '.join(map(repr, unknown))}; valid {what}s: {valid}"
        )
    return {
        name: p.validate(values[name], owner) if name in values else p.default
        for name, p in by_name.items()
    }


@dataclass(frozen=True)
class IndexKind:
    """A registered index kind.

    Attributes
    ----------
    name : str
        Registry name, as used in spec strings.
    cls : type
        The :class:`~vecindex_core.VectorIndex` subclass.
    params : tuple of Param
        Construction parameters.
    search_params : tuple of Param
        Search-time knobs; their defaults can also be set at construction.
    exact : bool
        Whether results equal exact search (used by the conformance suite).
    """

    name: str
    cls: type[VectorIndex]
    params: tuple[Param, ...] = ()
    search_params: tuple[Param, ...] = ()
    exact: bool = False
    SearchParams: type = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = [
            (p.name, p.type, dataclasses.field(default=p.default)) for p in self.search_params
        ]
        cls_name = "".join(w.title() for w in self.name.split("_")) + "SearchParams"
        object.__setattr__(
            self, "SearchParams", dataclasses.make_dataclass(cls_name, fields, frozen=True)
        )

    @property
    def all_params(self) -> tuple[Param, ...]:
        """Construction parameters followed by search-parameter defaults."""
        return self.params + self.search_params

    def validate_params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Validate construction parameters (including search defaults), filling defaults."""
        return _validate_all(self.all_params, values, f"index {self.name!r}", "parameter")

    def validate_search_params(
        self, params: Any, defaults: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge per-call ``params`` (dict, typed object or None) over ``defaults``."""
        if params is None:
            return dict(defaults)
        if dataclasses.is_dataclass(params) and not isinstance(params, type):
            if not isinstance(params, self.SearchParams):
                raise InvalidParameterError(
                    f"index {self.name!r}: params is a {type(params).__name__}, expected a dict "
                    f"or {self.SearchParams.__name__}"
                )
            params = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
        elif not isinstance(params, Mapping):
            raise InvalidParameterError(
                f"index {self.name!r}: params must be a dict or {self.SearchParams.__name__}, "
                f"got {type(params).__name__}"
            )
        merged = _validate_all(
            self.search_params, params, f"index {self.name!r}", "search parameter"
        )
        return {k: (merged[k] if k in params else defaults[k]) for k in merged}


_REGISTRY: dict[str, IndexKind] = {}
_T = TypeVar("_T", bound="type[VectorIndex]")


def register(
    name: str,
    *,
    params: Iterable[Param] = (),
    search_params: Iterable[Param] = (),
    exact: bool = False,
) -> Callable[[_T], _T]:
    """Class decorator that registers a :class:`~vecindex_core.VectorIndex` kind."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"index kind name {name!r} must be lower_snake_case")

    def deco(cls: _T) -> _T:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"index kind {name!r} is already registered")
        kind = IndexKind(name, cls, tuple(params), tuple(search_params), exact)
        _REGISTRY[name] = kind
        cls.kind = kind
        return cls

    return deco


def list_indexes() -> list[str]:
    """Names of all registered index kinds, sorted."""
    return sorted(_REGISTRY)


def get_kind(name: str) -> IndexKind:
    """Look up a kind; unknown names raise :class:`UnknownIndexError` listing the valid ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownIndexError(
            f"unknown index {name!r}; registered indexes: {', '.join(list_indexes())}"
        ) from None


_SPEC = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*", re.S)
_ITEM = re.compile(
    r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"
    r"(\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^,\s][^,]*?)\s*(?:,|$)"
)
_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if text.startswith('"'):
        return json.loads(text)
    if text.startswith("'"):
        return text[1:-1]
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Parse ``"name"`` or ``"name(key=value, ...)"`` into the name and raw parameters.

    Values are read as ``true``/``false``, integers, floats, quoted strings or bare words.
    The name is checked against the registry; parameters are checked by
    :meth:`IndexKind.validate_params`.
    """
    if not isinstance(spec, str):
        raise InvalidParameterError(f"index spec must be a string, got {type(spec).__name__}")
    m = _SPEC.fullmatch(spec)
    if not m:
        raise InvalidParameterError(
            f"cannot parse index spec {spec!r}; expected 'name' or 'name(key=value,...)'"
        )
    name, body = m.group(1), m.group(2)
    get_kind(name)
    values: dict[str, Any] = {}
    if body and body.strip():
        pos = 0
        while pos < len(body):
            item = _ITEM.match(body, pos)
            if not item or item.end() == pos:
                raise InvalidParameterError(
                    f"cannot parse index spec {spec!r} at {body[pos:]!r}; expected key=value"
                )
            key = item.group(1)
            if key in values:
                raise InvalidParameterError(f"index spec {spec!r} sets {key!r} twice")
            values[key] = _parse_value(item.group(2).strip())
            pos = item.end()
    return name, values


def resolve_spec(
    spec: str, params: Mapping[str, Any] | None = None
) -> tuple[IndexKind, dict[str, Any]]:
    """The kind of ``spec`` and its raw parameters merged with ``params``.

    Raises
    ------
    UnknownIndexError, InvalidParameterError
        Unknown name, unparsable spec, or a parameter given both in the spec and ``params``.
    """
    name, spec_params = parse_spec(spec)
    extra = dict(params or {})
    both = sorted(set(spec_params) & set(extra))
    if both:
        raise InvalidParameterError(
            f"parameter(s) {', '.join(both)} given both in the spec {spec!r} and as "
            "separate parameters"
        )
    return get_kind(name), {**spec_params, **extra}


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if _BARE.fullmatch(value) and _parse_value(value) == value else (
            json.dumps(value)
        )
    return repr(value)


def format_spec(name: str, params: Mapping[str, Any]) -> str:
    """Print a spec: the name plus every parameter that differs from its default."""
    kind = get_kind(name)
    items = [
        f"{p.name}={_format_value(params[p.name])}"
        for p in kind.all_params
        if p.name in params and params[p.name] != p.default
    ]
    return f"{name}({','.join(items)})" if items else name
