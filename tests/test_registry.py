"""The registry: names, spec strings, declared parameters."""

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core.registry import Param, format_spec, get_kind, list_indexes, parse_spec


@pytest.mark.parametrize("name", list_indexes())
def test_every_name_round_trips(name):
    assert format_spec(*parse_spec(name)) == name
    index = vc.create(name, dim=8)
    assert parse_spec(index.spec)[0] == name
    assert vc.create(index.spec, dim=8).spec == index.spec


def test_unknown_name_lists_valid_ones():
    with pytest.raises(vc.UnknownIndexError, match="flat") as info:
        vc.create("flatt", dim=4)
    assert "'flatt'" in str(info.value) and isinstance(info.value, ValueError)


def test_unknown_parameter_lists_valid_ones():
    with pytest.raises(vc.InvalidParameterError, match="'nlist'.*none"):
        vc.create("flat(nlist=4)", dim=4)
    with pytest.raises(vc.InvalidParameterError, match="'nlist'"):
        vc.create("flat", dim=4, nlist=4)


def test_param_validation_messages():
    p = Param("nlist", int, 100, "cells", low=1, high=1 << 20)
    assert p.validate(np.int64(5), "x") == 5
    with pytest.raises(vc.InvalidParameterError, match=r"nlist=0 is out of range.*\[1, "):
        p.validate(0, "x")
    with pytest.raises(vc.InvalidParameterError, match="has type str"):
        p.validate("7", "x")
    with pytest.raises(vc.InvalidParameterError, match="has type bool"):
        p.validate(True, "x")
    c = Param("dist", str, "gaussian", choices=("gaussian", "rademacher"))
    with pytest.raises(vc.InvalidParameterError, match="rademacher"):
        c.validate("uniform", "x")


def test_spec_parsing_values_and_errors():
    assert parse_spec(" flat ( ) ") == ("flat", {})
    with pytest.raises(vc.InvalidParameterError, match="cannot parse"):
        parse_spec("flat(")
    with pytest.raises(vc.InvalidParameterError, match="twice"):
        parse_spec("flat(a=1,a=2)")
    with pytest.raises(vc.InvalidParameterError, match="must be a string"):
        parse_spec(3)


def test_search_params_dict_or_object_and_unknown_key():
    kind = get_kind("flat")
    assert kind.validate_search_params(kind.SearchParams(), {}) == {}
    with pytest.raises(vc.InvalidParameterError, match="search parameters: none"):
        kind.validate_search_params({"ef": 3}, {})


def test_bad_dim_and_metric():
    with pytest.raises(vc.InvalidArgumentError, match="dim must be"):
        vc.create("flat", dim=0)
    with pytest.raises(vc.InvalidArgumentError, match="'cos'.*'cosine'"):
        vc.create("flat", dim=4, metric="cos")
