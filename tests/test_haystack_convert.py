"""Pure pieces of the Haystack adapter: Document <-> Record conversion, metadata
aggregation, error classes and score scaling."""

import itertools
import math

import numpy as np
import pytest

pytest.importorskip("haystack")

from haystack.dataclasses import ByteStream, Document, SparseEmbedding
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy
from haystack.errors import FilterError

import vecindex_core as vc
from haystack_integrations.document_stores import vecindex as hs_vecindex
from haystack_integrations.document_stores.vecindex import (
    VecIndexDuplicateDocumentError,
    VecIndexFilterError,
    _convert,
    _scores,
)


def test_public_names():
    assert sorted(hs_vecindex.__all__) == [
        "VecIndexDocumentStore",
        "VecIndexDuplicateDocumentError",
        "VecIndexFilterError",
    ]


# --------------------------------------------------------------------------- errors
def test_filter_error_is_both_families():
    err = VecIndexFilterError("bad")
    assert isinstance(err, FilterError)
    assert isinstance(err, vc.FilterError)
    assert isinstance(err, ValueError)
    assert isinstance(err, vc.VecIndexError)


def test_duplicate_error_is_both_families():
    err = VecIndexDuplicateDocumentError("dup")
    assert isinstance(err, DuplicateDocumentError)
    assert isinstance(err, vc.DuplicateIdError)
    assert isinstance(err, ValueError)


# --------------------------------------------------------------------------- writing
@pytest.mark.parametrize("bad", ["not a list", b"bytes", {"id": "1"}, 3, None])
def test_check_documents_rejects_non_lists(bad):
    with pytest.raises(vc.InvalidArgumentError, match="list of haystack Document"):
        _convert.check_documents(bad)


def test_check_documents_rejects_non_documents_naming_the_position():
    with pytest.raises(vc.InvalidArgumentError, match=r"documents\[1\] is a str"):
        _convert.check_documents([Document(content="a"), "b"])


def test_check_documents_accepts_any_iterable():
    docs = [Document(content="a"), Document(content="b")]
    assert _convert.check_documents(iter(docs)) == docs
    assert _convert.check_documents(()) == []


def test_check_documents_rejects_blob_and_sparse_embedding():
    blob = Document(id="b", content="x", blob=ByteStream(data=b"\x00\x01"))
    with pytest.raises(vc.InvalidArgumentError, match="'b' has a blob"):
        _convert.check_documents([blob])
    sparse = Document(id="s", content="x", sparse_embedding=SparseEmbedding([0], [1.0]))
    with pytest.raises(vc.InvalidArgumentError, match="'s' has a sparse_embedding"):
        _convert.check_documents([sparse])


@pytest.mark.parametrize(
    ("policy", "mode"),
    [
        (DuplicatePolicy.NONE, "fail"),
        (DuplicatePolicy.FAIL, "fail"),
        (DuplicatePolicy.SKIP, "skip"),
        (DuplicatePolicy.OVERWRITE, "overwrite"),
    ],
)
def test_on_duplicate(policy, mode):
    assert _convert.on_duplicate(policy) == mode


def test_on_duplicate_rejects_strings():
    with pytest.raises(vc.InvalidArgumentError, match="DuplicatePolicy"):
        _convert.on_duplicate("overwrite")


def test_dedupe_follows_one_by_one_writes():
    a1, b, a2 = Document(id="a", content="1"), Document(id="b", content="2"), Document(
        id="a", content="3"
    )
    assert _convert.dedupe([a1, b, a2], DuplicatePolicy.OVERWRITE) == [a2, b]
    assert _convert.dedupe([a1, b, a2], DuplicatePolicy.SKIP) == [a1, b]
    # FAIL keeps the repeat so that the core rejects the whole batch
    assert _convert.dedupe([a1, b, a2], DuplicatePolicy.FAIL) == [a1, b, a2]
    assert _convert.dedupe([a1, b, a2], DuplicatePolicy.NONE) == [a1, b, a2]


def test_to_columns():
    docs = [
        Document(id="1", content="one", meta={"a": 1}, embedding=[1.0, 2.0]),
        Document(id="2", content=None, meta={}),
    ]
    cols = _convert.to_columns(docs)
    assert cols.ids == ["1", "2"]
    assert cols.texts == ["one", None]
    assert cols.vectors == [[1.0, 2.0], None]
    assert cols.metadatas == [{"a": 1}, {}]
    cols.metadatas[0]["b"] = 2  # a copy: the caller's Document is untouched
    assert docs[0].meta == {"a": 1}


def test_to_columns_without_any_embedding():
    assert _convert.to_columns([Document(content="x")]).vectors is None


# --------------------------------------------------------------------------- reading
def test_to_document_round_trip():
    vec = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    rec = vc.Record("id-1", "text", {"k": [1, "x"], "n": None}, vec, 7)
    doc = _convert.to_document(rec, score=0.25)
    assert doc == Document(
        id="id-1", content="text", meta={"k": [1, "x"], "n": None}, embedding=[0.5, -1.25, 3.0],
        score=0.25,
    )
    assert all(type(v) is float for v in doc.embedding)
    assert _convert.to_document(rec, embedding=False).embedding is None
    assert _convert.to_document(vc.Record("x", None, {}, None, 0)) == Document(id="x")


# --------------------------------------------------------------------------- metadata
def test_meta_key():
    assert _convert.meta_key("meta.page") == "page"
    assert _convert.meta_key("page") == "page"
    assert _convert.meta_key("meta.a.b") == "a.b"
    with pytest.raises(vc.InvalidArgumentError, match="non-empty string"):
        _convert.meta_key("")


def test_fields_info_types():
    metas = [
        {"flag": True, "n": 1, "x": 0.5, "s": "a", "l": [1], "d": {"a": 1}, "none": None},
        {"n": 2},
    ]
    assert _convert.fields_info(metas) == {
        "flag": {"type": "boolean"},
        "n": {"type": "int"},
        "x": {"type": "float"},
        "s": {"type": "keyword"},
        "l": {"type": "keyword"},
        "d": {"type": "keyword"},
    }
    assert _convert.fields_info([]) == {}


def test_count_unique_keeps_types_apart_and_skips_none():
    metas = [{"p": 1}, {"p": 1.0}, {"p": True}, {"p": "1"}, {"p": 1}, {"p": None}, {}]
    assert _convert.count_unique(metas, ["meta.p", "q"]) == {"p": 4, "q": 0}


def test_count_unique_of_lists_and_dicts():
    metas = [{"t": [1, 2]}, {"t": [1, 2]}, {"t": [2, 1]}, {"t": {"a": 1, "b": 2}},
             {"t": {"b": 2, "a": 1}}]
    assert _convert.count_unique(metas, ["t"]) == {"t": 3}


def test_min_max():
    metas = [{"p": 5}, {"p": 1}, {"p": 10}, {"p": None}, {"q": 3}, {"p": [0]}]
    assert _convert.min_max(metas, "meta.p") == {"min": 1, "max": 10}
    assert _convert.min_max([{"r": 0.6}, {"r": 0.95}], "r") == {"min": 0.6, "max": 0.95}
    assert _convert.min_max([{"s": "b"}, {"s": "a"}], "s") == {"min": "a", "max": "b"}
    assert _convert.min_max([], "p") == {"min": None, "max": None}
    # numbers and strings do not compare
    assert _convert.min_max([{"p": 1}, {"p": "a"}], "p") == {"min": None, "max": None}


def test_unique_values_types_order_and_pages():
    metas = [{"c": f"category_{i}"} for i in (3, 1, 4, 1, 0, 2)]
    assert _convert.unique_values(metas, "c", from_=0, size=2) == (
        ["category_0", "category_1"], 5,
    )
    assert _convert.unique_values(metas, "meta.c", from_=4, size=10) == (["category_4"], 5)
    values, total = _convert.unique_values(
        [{"p": 1}, {"p": "1"}, {"p": 1.0}, {"p": True}, {"p": 1}], "p"
    )
    assert total == 4
    assert sorted(type(v).__name__ for v in values) == ["bool", "float", "int", "str"]


def test_unique_values_search_term_ignores_case():
    metas = [{"c": "All_Beauty"}, {"c": "Electronics"}, {"c": "Home"}]
    assert _convert.unique_values(metas, "c", search_term="BEAUT") == (["All_Beauty"], 1)


@pytest.mark.parametrize(("from_", "size"), [(-1, 10), (0, -1), (1.5, 2), (True, 2)])
def test_unique_values_rejects_bad_pages(from_, size):
    with pytest.raises(vc.InvalidArgumentError):
        _convert.unique_values([], "c", from_=from_, size=size)


# --------------------------------------------------------------------------- scores
def test_cosine_scaling():
    assert _scores.scale_score(1.0, "cosine") == 1.0
    assert _scores.scale_score(0.0, "cosine") == 0.5
    assert _scores.scale_score(-1.0, "cosine") == 0.0
    # an approximate index may report a cosine a hair outside [-1, 1]
    assert _scores.scale_score(1.0001, "cosine") == 1.0
    assert _scores.scale_score(-1.0001, "cosine") == 0.0


def test_ip_scaling_is_haystacks_sigmoid():
    for s in (-250.0, -3.0, 0.0, 0.7, 42.0):
        assert _scores.scale_score(s, "ip") == pytest.approx(1 / (1 + math.exp(-s / 100)))
    assert _scores.scale_score(0.0, "ip") == 0.5


def test_l2_scaling_maps_zero_distance_to_one():
    assert _scores.scale_score(0.0, "l2") == 1.0
    assert _scores.scale_score(-100.0, "l2") == pytest.approx(2 / (1 + math.e))
    assert 0.0 < _scores.scale_score(-1e4, "l2") < 1e-40


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_scaling_is_monotonic_and_bounded(metric):
    raw = {"cosine": np.linspace(-1, 1, 41), "ip": np.linspace(-500, 500, 41),
           "l2": np.linspace(-500, 0, 41)}[metric]
    scaled = [_scores.scale_score(float(s), metric) for s in raw]
    assert all(0.0 <= s <= 1.0 for s in scaled)
    assert all(a <= b for a, b in itertools.pairwise(scaled))


@pytest.mark.parametrize("s", [1e6, -1e6])
def test_expit_does_not_overflow(s):
    assert _scores.expit(s) in (0.0, 1.0)
    assert _scores.scale_score(s, "ip") in (0.0, 1.0)


def test_to_haystack_score():
    assert _scores.to_haystack_score(-4.0, "l2", scale=False) == -4.0
    assert _scores.to_haystack_score(0.5, "cosine", scale=True) == 0.75
    assert type(_scores.to_haystack_score(np.float32(0.5), "ip", scale=False)) is float


@pytest.mark.parametrize("fn", [_scores.scale_score, lambda s, m: _scores.to_haystack_score(
    s, m, scale=False)])
def test_unknown_metric(fn):
    with pytest.raises(vc.InvalidArgumentError, match="metric must be one of"):
        fn(0.5, "dot_product")
