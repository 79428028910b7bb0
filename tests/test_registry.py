"""The registry: names, spec strings, declared parameters, search parameters."""

import dataclasses

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import registry
from vecindex_core.registry import Param, format_spec, get_kind, list_indexes, parse_spec

PARAM_KIND = "test_params"


class ParamKind(vc.FlatIndex):
    """Test-only kind: exact search, with one parameter of every declared sort."""


@pytest.fixture
def param_kind():
    """Register ``"test_params"`` (construction and search parameters) for one test."""
    registry.register(
        PARAM_KIND,
        params=[
            Param("nlist", int, 100, "cells", low=1, high=1 << 20),
            Param("ratio", float, 0.5, low=0.0, high=1.0),
            Param("normalize", bool, False),
            Param("dist", str, "gaussian", choices=("gaussian", "rademacher")),
            Param("label", str, "plain"),
        ],
        search_params=[
            Param("nprobe", int, 1, low=1, high=1024),
            Param("threshold", float, 0.25, low=0.0, high=10.0),
        ],
        exact=True,
    )(ParamKind)
    try:
        yield PARAM_KIND
    finally:
        del registry._REGISTRY[PARAM_KIND]


#: Parameters valid only together with another value of the same kind (checked when the
#: kind declares both): rescoring needs the original vectors.
COMPANIONS = {
    "rerank": {"keep_vectors": True},
    # faiss search knobs apply only to factories that have them
    "nprobe": {"factory": "IVF4,Flat", "index_type": "IVF_FLAT"},
    "max_codes": {"factory": "IVF4,Flat"},
    "k_factor": {"factory": "PQ4,RFlat"},
    # milvus build and search parameters apply only to the index type that has them
    "M": {"index_type": "HNSW"},
    "ef_construction": {"index_type": "HNSW"},
    "nlist": {"index_type": "IVF_FLAT"},
}
#: free-form string parameters, where "default + 'x'" is not a valid value (the milvus uri
#: is never connected to here: the index connects on first use)
NON_DEFAULT_STR = {"factory": "Flat", "uri": "http://127.0.0.1:19530", "index_type": "FLAT"}


def non_default(p):
    """A valid value other than the default, from the declaration alone."""
    if p.choices is not None:
        return next(c for c in p.choices if c != p.default)
    if p.type is bool:
        return not p.default
    if p.type is str:
        return NON_DEFAULT_STR.get(p.name, p.default + "x")
    if p.type is int:
        return p.default + 1 if p.high is None or p.default + 1 <= p.high else p.default - 1
    mid = (p.default + (p.high if p.high is not None else p.default + 2)) / 2
    return mid if mid != p.default else (p.low + p.default) / 2


# --------------------------------------------------------------------------- names
def test_list_indexes_is_sorted_and_known():
    names = list_indexes()
    assert names == sorted(names) and "flat" in names
    assert all(get_kind(n).name == n for n in names)
    assert get_kind("flat").cls is vc.FlatIndex and vc.FlatIndex.kind is get_kind("flat")


@pytest.mark.parametrize("name", list_indexes())
def test_every_name_round_trips(name):
    assert parse_spec(name) == (name, {})
    assert format_spec(*parse_spec(name)) == name
    index = vc.create(name, dim=8)
    assert index.spec == name  # defaults are not printed
    assert vc.create(index.spec, dim=8).spec == index.spec


@pytest.mark.parametrize("name", list_indexes())
def test_every_parameter_round_trips_with_a_non_default_value(name):
    kind = get_kind(name)
    defaults = {p.name: p.default for p in kind.all_params}
    for p in kind.all_params:
        value = non_default(p)
        spec = format_spec(name, {p.name: value})
        assert spec != name
        assert parse_spec(spec) == (name, {p.name: value})
        needs = {k: v for k, v in COMPANIONS.get(p.name, {}).items()
                 if k in defaults and defaults[k] != v}
        if needs:  # valid only together with its companion: alone it must say so
            with pytest.raises(vc.InvalidParameterError, match=next(iter(needs))):
                vc.create(spec, dim=8)
            spec = format_spec(name, {p.name: value, **needs})
        index = vc.create(spec, dim=8)
        assert index.spec == spec
        assert format_spec(*parse_spec(index.spec)) == spec


def test_param_kind_round_trips_everything(param_kind):
    values = {"nlist": 7, "ratio": 0.125, "normalize": True, "dist": "rademacher",
              "label": "a b, c", "nprobe": 3, "threshold": 2.0}
    spec = format_spec(param_kind, values)
    assert spec == ('test_params(nlist=7,ratio=0.125,normalize=true,dist=rademacher,'
                    'label="a b, c",nprobe=3,threshold=2.0)')
    assert parse_spec(spec) == (param_kind, values)
    index = vc.create(spec, dim=4)
    assert index.spec == spec
    assert dict(index.index.params) == values
    assert dict(index.index.search_defaults) == {"nprobe": 3, "threshold": 2.0}
    assert vc.create(param_kind, dim=4, **values).spec == spec
    assert format_spec(param_kind, {"nlist": 100, "ratio": 0.5}) == param_kind


@pytest.mark.parametrize("label", [
    "with space", "a,b", "comma,", 'quote"inside', "it's", "", "true", "False",
    "123", "-4", "1e5", "x=y", "paren)", "(", "ünïcödé", "tab\tand\nnewline", "a.b-c_d",
    "nan", "inf", "Infinity",
])
def test_string_values_round_trip(param_kind, label):
    spec = format_spec(param_kind, {"label": label})
    assert parse_spec(spec) == (param_kind, {"label": label})
    assert vc.create(spec, dim=4).spec == spec


def test_spec_parsing_values_and_whitespace():
    assert parse_spec(" flat ( ) ") == ("flat", {})
    assert parse_spec("flat()") == ("flat", {})
    assert parse_spec("flat") == ("flat", {})


def test_spec_value_types(param_kind):
    name, values = parse_spec(
        "test_params( nlist = 7 , ratio=1e-1, normalize=TRUE, dist='rademacher', label=x)"
    )
    assert name == param_kind
    assert values == {"nlist": 7, "ratio": 0.1, "normalize": True, "dist": "rademacher",
                      "label": "x"}
    assert isinstance(values["nlist"], int) and isinstance(values["ratio"], float)


@pytest.mark.parametrize(("spec", "match"), [
    ("flat(", "cannot parse index spec 'flat\\('"),
    ("flat(a)", "expected key=value"),
    ("flat(a=1,a=2)", "sets 'a' twice"),
    ("flat(=1)", "expected key=value"),
    ("fl at", "cannot parse"),
    ("", "cannot parse"),
])
def test_spec_syntax_errors(spec, match):
    with pytest.raises(vc.InvalidParameterError, match=match):
        parse_spec(spec)


def test_spec_must_be_a_string():
    for bad in (3, None, b"flat", ["flat"]):
        with pytest.raises(vc.InvalidParameterError, match="index spec must be a string"):
            parse_spec(bad)
        with pytest.raises(vc.InvalidParameterError, match="must be a string"):
            vc.create(bad, dim=4)


# --------------------------------------------------------------------------- unknowns
def test_unknown_name_lists_valid_ones():
    with pytest.raises(vc.UnknownIndexError, match="unknown index 'flatt'") as info:
        vc.create("flatt", dim=4)
    for name in list_indexes():
        assert name in str(info.value)
    assert isinstance(info.value, ValueError)
    for bad in ("flatt(nlist=3)", "FLAT"):
        with pytest.raises(vc.UnknownIndexError, match="registered indexes: .*flat"):
            parse_spec(bad)
    with pytest.raises(vc.UnknownIndexError, match="flat"):
        get_kind(["flat"])


def test_unknown_parameter_lists_valid_ones(param_kind):
    with pytest.raises(vc.InvalidParameterError, match="'nlst'.*valid parameters: dist, "
                       "label, nlist, normalize, nprobe, ratio, threshold"):
        vc.create("test_params(nlst=4)", dim=4)
    with pytest.raises(vc.InvalidParameterError, match="'nlst'"):
        vc.create("test_params", dim=4, nlst=4)
    with pytest.raises(vc.InvalidParameterError, match="'nlist'.*valid parameters: none"):
        vc.create("flat(nlist=4)", dim=4)
    with pytest.raises(vc.InvalidParameterError, match="'nlist'.*none"):
        vc.create("flat", dim=4, nlist=4)


def test_spec_and_keyword_conflict(param_kind):
    with pytest.raises(vc.InvalidParameterError,
                       match="nlist given both in the spec 'test_params\\(nlist=3\\)' and as "
                       "separate parameters"):
        vc.create("test_params(nlist=3)", dim=4, nlist=3)
    merged = vc.create("test_params(nlist=3)", dim=4, ratio=0.75)
    assert merged.spec == "test_params(nlist=3,ratio=0.75)"


# --------------------------------------------------------------------------- constraints
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"nlist": 0}, r"nlist=0 is out of range, expected nlist: int in \[1, 1.04858e\+06\]"),
    ({"nlist": 1 << 21}, "nlist=2097152 is out of range"),
    ({"nlist": 2.0}, "nlist=2.0 has type float, expected nlist: int"),
    ({"nlist": "7"}, "nlist='7' has type str"),
    ({"nlist": True}, "nlist=True has type bool"),
    ({"nlist": None}, "nlist=None has type NoneType"),
    ({"ratio": 1.5}, r"ratio=1.5 is out of range, expected ratio: float in \[0, 1\]"),
    ({"ratio": float("nan")}, "ratio=nan is not finite"),
    ({"ratio": float("inf")}, "ratio=inf is not finite"),
    ({"ratio": "0.5"}, "ratio='0.5' has type str"),
    ({"normalize": 1}, "normalize=1 has type int, expected normalize: bool"),
    ({"dist": "uniform"}, "dist='uniform' is not allowed, expected dist: 'gaussian' \\| "
                          "'rademacher'"),
    ({"label": 5}, "label=5 has type int"),
    ({"nprobe": 0}, "nprobe=0 is out of range"),
])
def test_bad_parameters(param_kind, kwargs, match):
    with pytest.raises(vc.InvalidParameterError, match=f"index 'test_params': parameter {match}"):
        vc.create(param_kind, dim=4, **kwargs)
    with pytest.raises(vc.InvalidParameterError, match=f"parameter {next(iter(kwargs))}="):
        vc.create(format_spec(param_kind, kwargs), dim=4)  # the same value in a spec string


def test_numbers_are_converted_to_the_declared_type(param_kind):
    index = vc.create(param_kind, dim=4, nlist=np.int64(5), ratio=1)
    assert index.index.params["nlist"] == 5 and type(index.index.params["nlist"]) is int
    assert index.index.params["ratio"] == 1.0 and type(index.index.params["ratio"]) is float
    assert index.spec == "test_params(nlist=5,ratio=1.0)"


def test_numpy_floats_are_accepted_for_float_parameters(param_kind):
    # np.float64 subclasses float; np.float32 and numpy ints must not be rejected either
    for value in (np.float64(0.75), np.float32(0.75), np.int64(1)):
        index = vc.create(param_kind, dim=4, ratio=value)
        assert type(index.index.params["ratio"]) is float
        assert index.index.params["ratio"] == float(value)
        assert index.spec == f"test_params(ratio={float(value)!r})"
        assert vc.create(index.spec, dim=4).spec == index.spec


def test_param_describe():
    assert Param("n", int, 3, low=1).describe() == "n: int in [1, inf] (default 3)"
    assert Param("f", float, 0.5).describe() == "f: float (default 0.5)"
    assert Param("c", str, "a", choices=("a", "b")).describe() == "c: 'a' | 'b' (default 'a')"


def test_bad_dim_and_metric():
    for dim in (0, -3, 2.0, True, "8", None):
        with pytest.raises(vc.InvalidArgumentError, match="dim must be an integer >= 1"):
            vc.create("flat", dim=dim)
    assert vc.create("flat", dim=np.int64(4)).dim == 4
    with pytest.raises(vc.InvalidArgumentError, match="unknown metric 'cos'.*'cosine'"):
        vc.create("flat", dim=4, metric="cos")


def test_register_checks_names_and_duplicates():
    with pytest.raises(ValueError, match="lower_snake_case"):
        registry.register("Bad-Name")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("flat")(ParamKind)
    assert get_kind("flat").cls is vc.FlatIndex


# --------------------------------------------------------------------------- search params
def test_search_params_dict_object_and_defaults(param_kind):
    kind = get_kind(param_kind)
    defaults = {"nprobe": 4, "threshold": 0.25}
    assert kind.validate_search_params(None, defaults) == defaults
    assert kind.validate_search_params({}, defaults) == defaults
    assert kind.validate_search_params({"nprobe": 9}, defaults) == {"nprobe": 9,
                                                                   "threshold": 0.25}
    typed = kind.SearchParams(nprobe=2)
    assert dataclasses.is_dataclass(typed) and type(typed).__name__ == "TestParamsSearchParams"
    assert kind.validate_search_params(typed, defaults) == {"nprobe": 2, "threshold": 0.25}
    with pytest.raises(dataclasses.FrozenInstanceError):
        typed.nprobe = 3


def test_search_params_errors(param_kind):
    index = vc.create(param_kind, dim=4, nprobe=4)
    index.add(np.eye(4))
    q = np.ones(4)
    assert index.search(q, 2, params={"nprobe": 8}).ids.shape == (1, 2)
    assert index.search(q, 2, params=get_kind(param_kind).SearchParams()).ids.shape == (1, 2)
    with pytest.raises(vc.InvalidParameterError,
                       match="unknown search parameter 'nprob'; valid search parameters: "
                       "nprobe, threshold"):
        index.search(q, 2, params={"nprob": 8})
    with pytest.raises(vc.InvalidParameterError, match="nprobe=0 is out of range"):
        index.search(q, 2, params={"nprobe": 0})
    with pytest.raises(vc.InvalidParameterError, match="nlist"):  # construction-only
        index.search(q, 2, params={"nlist": 3})
    with pytest.raises(vc.InvalidParameterError, match="expected a dict or TestParamsSearchParams"):
        index.search(q, 2, params=get_kind("flat").SearchParams())
    with pytest.raises(vc.InvalidParameterError, match="got list"):
        index.search(q, 2, params=[("nprobe", 3)])


@pytest.mark.parametrize("bad", [{"nprobe": 0}, {"nprobe": "3"}, {"threshold": -1.0},
                                 {"threshold": float("nan")}])
def test_typed_search_params_are_validated_like_dicts(param_kind, bad):
    index = vc.create(param_kind, dim=4)
    index.add(np.eye(4))
    typed = get_kind(param_kind).SearchParams(**bad)
    with pytest.raises(vc.InvalidParameterError, match=next(iter(bad))):
        index.search(np.ones(4), 2, params=typed)


def test_flat_has_no_search_parameters():
    index = vc.create("flat", dim=4)
    index.add(np.eye(4))
    with pytest.raises(vc.InvalidParameterError,
                       match="index 'flat': unknown search parameter 'ef'; valid search "
                       "parameters: none"):
        index.search(np.ones(4), 2, params={"ef": 3})
    typed = get_kind("flat").SearchParams()
    assert index.search(np.ones(4), 2, params=typed).counts.tolist() == [2]
