"""VecIndexVectorStore end to end: persistence, filters, MMR, relevance scores, retrievers,
bad input. Embeddings are deterministic: a fixed table of vectors, or LangChain's
``DeterministicFakeEmbedding``; nothing touches the network."""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.vectorstores import VectorStore

import langchain_vecindex
from langchain_vecindex import VecIndexVectorStore
from langchain_vecindex._filters import to_core_filter
from langchain_vecindex._scores import (
    RELEVANCE_FUNCTIONS,
    cosine_relevance,
    inner_product_relevance,
    l2_relevance,
    relevance_function,
)
from vecindex_core import (
    Collection,
    DimensionMismatchError,
    DuplicateIdError,
    FilterError,
    InvalidArgumentError,
    InvalidDtypeError,
    InvalidParameterError,
    NonFiniteError,
)

pytestmark = pytest.mark.anyio


class TableEmbeddings(Embeddings):
    """Each known text embeds to a fixed vector; an unknown text raises KeyError."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [list(self.table[t]) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return list(self.table[text])


def unit(*xs: float) -> list[float]:
    v = np.asarray(xs, dtype=np.float64)
    return list(v / np.linalg.norm(v))


# Four unit vectors in 3-D: "a" and its near-duplicate "a2" point along x, "b" sits between
# x and y, "c" is orthogonal to x, "d" opposite to x.
TABLE = {
    "a": unit(1, 0, 0),
    "a2": unit(1, 0.05, 0),
    "b": unit(1, 1, 0),
    "c": unit(0, 0, 1),
    "d": unit(-1, 0, 0),
}


@pytest.fixture
def emb() -> TableEmbeddings:
    return TableEmbeddings(TABLE)


def test_all_is_pinned():
    assert langchain_vecindex.__all__ == ["VecIndexVectorStore"]
    assert issubclass(VecIndexVectorStore, VectorStore)


# ---------------------------------------------------------------------- persistence
META = {
    "str": "héllo ✓",
    "int": 7,
    "big": 2**53,
    "float": 0.1,
    "neg": -3.5,
    "bool": False,
    "none": None,
    "list": [1, "two", 3.0, None, [True]],
    "nested": {"a": {"b": [1, 2]}, "empty": {}},
    "empty_list": [],
}


def test_persistence_by_path_round_trips_every_document(tmp_path, emb):
    path = tmp_path / "store.db"
    store = VecIndexVectorStore(emb, path=path, index="turboquant", metric="cosine")
    docs = [
        Document(page_content="a", metadata=META, id="doc-a"),
        Document(page_content="b", metadata={"n": 1}, id="doc-b"),
        Document(page_content="c", metadata={}, id="doc-c"),
    ]
    assert store.add_documents(docs) == ["doc-a", "doc-b", "doc-c"]
    store.delete(["doc-c"])
    store.close()

    reopened = VecIndexVectorStore(emb, path=path)  # settings come from the file
    assert reopened.collection.index_spec.startswith("turboquant")
    assert reopened.collection.metric == "cosine"
    assert len(reopened.collection) == 2
    got = reopened.get_by_ids(["doc-a", "doc-b", "doc-c"])
    assert got == docs[:2]
    assert got[0].metadata == META
    assert type(got[0].metadata["float"]) is float
    assert type(got[0].metadata["int"]) is int
    assert [d.id for d in reopened.similarity_search("b", k=2)] == ["doc-b", "doc-a"]
    reopened.close()


def test_reopen_with_other_settings_raises(tmp_path, emb):
    path = tmp_path / "store.db"
    VecIndexVectorStore(emb, path=path, metric="ip").close()
    with pytest.raises(InvalidArgumentError, match="metric"):
        VecIndexVectorStore(emb, path=path, metric="l2")


def test_writes_are_durable_without_close(tmp_path, emb):
    path = tmp_path / "store.db"
    store = VecIndexVectorStore(emb, path=path)
    store.add_texts(["a", "b"], ids=["1", "2"])
    other = VecIndexVectorStore(emb, path=path)  # e.g. a second process after a crash
    assert [d.id for d in other.similarity_search("a", k=1)] == ["1"]
    other.close()
    store.close()


def test_in_memory_store_behaves_the_same(emb):
    store = VecIndexVectorStore(emb)
    assert store.collection.path is None
    store.add_texts(["a", "b"], metadatas=[{"x": 1}, {"x": 2}], ids=["1", "2"])
    assert store.similarity_search("b", k=1) == [Document(page_content="b", metadata={"x": 2},
                                                          id="2")]


def test_collection_argument_and_conflicts(emb):
    coll = Collection(metric="l2")
    store = VecIndexVectorStore(emb, collection=coll)
    assert store.collection is coll
    assert store._select_relevance_score_fn() is l2_relevance
    with pytest.raises(InvalidArgumentError, match="metric"):
        VecIndexVectorStore(emb, collection=coll, metric="l2")
    with pytest.raises(InvalidArgumentError, match="Collection"):
        VecIndexVectorStore(emb, collection={"not": "a collection"})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="Embeddings"):
        VecIndexVectorStore("not embeddings")  # type: ignore[arg-type]


def test_from_texts_and_from_documents(tmp_path, emb):
    store = VecIndexVectorStore.from_texts(
        ["a", "b"], emb, metadatas=[{"k": 1}, {"k": 2}], ids=["1", "2"],
        path=tmp_path / "t.db", index="flat", metric="ip",
    )
    assert store.collection.metric == "ip"
    assert [d.id for d in store.similarity_search("a", k=2)] == ["1", "2"]
    store.close()
    docs = [Document(page_content="c", id="c1"), Document(page_content="d")]
    store2 = VecIndexVectorStore.from_documents(docs, emb, path=tmp_path / "d.db")
    got = store2.get_by_ids(["c1"])
    assert got == [Document(page_content="c", id="c1")]
    assert len(store2.collection) == 2
    assert docs[1].id is None  # not mutated
    store2.close()


async def test_afrom_texts(emb):
    store = await VecIndexVectorStore.afrom_texts(["a", "c"], emb, ids=["1", "2"], metric="l2")
    assert [d.id for d in await store.asimilarity_search("c", k=1)] == ["2"]


# ---------------------------------------------------------------------- ids and upserts
def test_ids_kwarg_wins_over_document_ids(emb):
    store = VecIndexVectorStore(emb)
    ids = store.add_documents([Document(page_content="a", id="x")], ids=["y"])
    assert ids == ["y"]
    assert store.get_by_ids(["x"]) == []
    assert store.get_by_ids(["y"])[0].id == "y"


def test_missing_ids_are_generated_and_upsert_overwrites(emb):
    store = VecIndexVectorStore(emb)
    ids = store.add_texts(["a", "b"], ids=["keep", None])  # type: ignore[list-item]
    assert ids[0] == "keep"
    assert isinstance(ids[1], str)
    assert len(ids[1]) == 32
    store.add_texts(["c"], metadatas=[{"v": 2}], ids=["keep"])
    assert store.get_by_ids(["keep"]) == [Document(page_content="c", metadata={"v": 2},
                                                   id="keep")]
    assert len(store.collection) == 2


def test_get_by_ids_order_and_unknown(emb):
    store = VecIndexVectorStore(emb)
    store.add_texts(["a", "b", "c"], ids=["1", "2", "3"])
    assert [d.id for d in store.get_by_ids(["3", "nope", "1", "3"])] == ["3", "1"]


def test_delete_variants(emb):
    store = VecIndexVectorStore(emb)
    store.add_texts(["a", "b", "c", "d"], metadatas=[{"g": 1}, {"g": 1}, {"g": 2}, {"g": 3}],
                    ids=["1", "2", "3", "4"])
    assert store.delete(["1", "missing"]) is True
    assert store.delete([]) is True
    assert len(store.collection) == 3
    assert store.delete(filter={"g": 1}) is True
    assert sorted(d.id for d in store.get_by_ids(["1", "2", "3", "4"])) == ["3", "4"]
    with pytest.raises(InvalidArgumentError, match="not both"):
        store.delete(["3"], filter={"g": 2})
    store.delete(core_filter={"field": "meta.g", "operator": "==", "value": 2})
    assert len(store.collection) == 1
    assert store.delete() is True  # the VectorStore contract: ids=None deletes everything
    assert len(store.collection) == 0


async def test_async_writes_and_reads(emb):
    store = VecIndexVectorStore(emb)
    ids = await store.aadd_texts(["a", "b"], metadatas=[{"x": 1}, {"x": 2}], ids=["1", "2"])
    assert ids == ["1", "2"]
    await store.aadd_documents([Document(page_content="c", metadata={"x": 3}, id="3")])
    hits = await store.asimilarity_search_with_score("c", k=1, filter={"x": {"$gte": 2}})
    assert [(d.id, round(s, 5)) for d, s in hits] == [("3", 1.0)]
    by_vec = await store.asimilarity_search_by_vector(TABLE["b"], k=1)
    assert [d.id for d in by_vec] == ["2"]
    rel = await store.asimilarity_search_with_relevance_scores("a", k=3)
    assert rel[0][0].id == "1"
    assert await store.adelete(["1"]) is True
    assert [d.id for d in await store.aget_by_ids(["1", "2"])] == ["2"]
    assert await store.aadd_texts([]) == []


# ---------------------------------------------------------------------- filters end to end
FILTER_DOCS = [
    ("p1", {"genre": "drama", "year": 1994, "rating": 8.5, "tags": ["a", "b"],
            "author": {"name": "Ann"}}),
    ("p2", {"genre": "comedy", "year": 2001, "rating": 6.0, "tags": ["b"],
            "author": {"name": "Bob"}}),
    ("p3", {"genre": "drama", "year": 2010, "rating": 7.2, "tags": []}),
    ("p4", {"genre": "horror", "year": 1980, "rating": None}),
    ("p5", {"year": 2020, "rating": 9.1, "draft": True}),
]


@pytest.fixture(params=["flat", "turboquant"])
def filter_store(request):
    store = VecIndexVectorStore(DeterministicFakeEmbedding(size=8), index=request.param)
    store.add_texts(
        [f"text {i}" for i, _ in FILTER_DOCS],
        metadatas=[m for _, m in FILTER_DOCS],
        ids=[i for i, _ in FILTER_DOCS],
    )
    return store


@pytest.mark.parametrize(
    ("lc_filter", "expected"),
    [
        (None, {"p1", "p2", "p3", "p4", "p5"}),
        ({}, {"p1", "p2", "p3", "p4", "p5"}),
        ({"genre": "drama"}, {"p1", "p3"}),
        ({"genre": "drama", "year": {"$gt": 2000}}, {"p3"}),
        ({"genre": {"$eq": "comedy"}}, {"p2"}),
        ({"genre": {"$ne": "drama"}}, {"p2", "p4", "p5"}),  # missing field matches $ne
        ({"year": {"$gte": 2001}}, {"p2", "p3", "p5"}),
        ({"year": {"$lt": 1994}}, {"p4"}),
        ({"year": {"$lte": 1994}}, {"p1", "p4"}),
        ({"year": {"$gte": 1990, "$lt": 2010}}, {"p1", "p2"}),
        ({"rating": {"$gt": 7}}, {"p1", "p3", "p5"}),  # None never orders
        ({"genre": {"$in": ["comedy", "horror"]}}, {"p2", "p4"}),
        ({"genre": {"$nin": ["comedy", "horror"]}}, {"p1", "p3", "p5"}),
        ({"draft": {"$exists": True}}, {"p5"}),
        ({"genre": {"$exists": False}}, {"p5"}),
        ({"author.name": "Bob"}, {"p2"}),
        ({"tags": ["b"]}, {"p2"}),
        ({"$or": [{"genre": "comedy"}, {"year": {"$gte": 2015}}]}, {"p2", "p5"}),
        ({"$and": [{"genre": "drama"}, {"$or": [{"year": 1994}, {"rating": {"$lt": 7.5}}]}]},
         {"p1", "p3"}),
        ({"$not": {"genre": "drama"}}, {"p2", "p4", "p5"}),
        ({"year": {"$not": {"$gt": 2000}}}, {"p1", "p4"}),
        ({"$not": [{"genre": "drama"}, {"year": 1994}]}, {"p2", "p3", "p4", "p5"}),
        ({"genre": "western"}, set()),
    ],
)
def test_filters_end_to_end(filter_store, lc_filter, expected):
    docs = filter_store.similarity_search("text p1", k=10, filter=lc_filter)
    assert {d.id for d in docs} == expected
    mmr = filter_store.max_marginal_relevance_search("text p1", k=10, filter=lc_filter)
    assert {d.id for d in mmr} == expected
    if lc_filter:
        assert filter_store.collection.count(to_core_filter(lc_filter)) == len(expected)


def test_filtered_search_returns_k_best_among_allowed(filter_store):
    allowed = {"p2", "p3", "p4", "p5"}
    docs = filter_store.similarity_search("text p1", k=2, filter={"genre": {"$ne": "drama"}})
    assert len(docs) == 2
    want = filter_store.similarity_search_with_score("text p1", k=5)
    best_allowed = [d.id for d, _ in want if d.id in allowed][:2]
    if filter_store.collection.index_spec == "flat":
        assert [d.id for d in docs] == best_allowed
    else:
        assert {d.id for d in docs} <= allowed


def test_core_filter_passes_through_and_ands(filter_store):
    core = {"field": "meta.year", "operator": ">", "value": 2000}
    assert {d.id for d in filter_store.similarity_search("x p1", k=10, core_filter=core)} == {
        "p2", "p3", "p5"}
    both = filter_store.similarity_search("x p1", k=10, filter={"genre": "drama"},
                                          core_filter=core)
    assert {d.id for d in both} == {"p3"}
    # a dict in core syntax given as `filter` is a LangChain filter on fields named
    # "field", "operator", "value": it matches nothing, it is not sniffed as a core filter
    assert filter_store.similarity_search("x p1", k=10, filter=core) == []


@pytest.mark.parametrize(
    "method",
    ["similarity_search", "similarity_search_with_score", "max_marginal_relevance_search",
     "similarity_search_with_relevance_scores"],
)
def test_unknown_filter_operator_raises_naming_it(filter_store, method):
    with pytest.raises(FilterError, match=r"\$regex"):
        getattr(filter_store, method)("q", k=2, filter={"genre": {"$regex": "^d"}})


def test_bad_core_filter_raises(filter_store):
    with pytest.raises(FilterError):
        filter_store.similarity_search("q", core_filter={"field": "meta.x", "operator": "~"})
    with pytest.raises(InvalidArgumentError, match="core_filter"):
        filter_store.similarity_search("q", core_filter=[1])


# ---------------------------------------------------------------------- MMR
# The query is "a" itself, so at lambda_mult=0.5 relevance and redundancy cancel exactly (a
# tie); 0.25 weighs diversity clearly: a2 scores -0.499, b -0.354.
def test_mmr_prefers_diversity(emb):
    store = VecIndexVectorStore(emb)
    store.add_texts(["a", "a2", "b", "c"], ids=["a", "a2", "b", "c"])
    assert [d.id for d in store.similarity_search("a", k=2)] == ["a", "a2"]
    mmr = store.max_marginal_relevance_search("a", k=2, fetch_k=3, lambda_mult=0.25)
    assert [d.id for d in mmr] == ["a", "b"]
    # lambda 1 is plain relevance order
    plain = store.max_marginal_relevance_search("a", k=3, fetch_k=4, lambda_mult=1.0)
    assert [d.id for d in plain] == ["a", "a2", "b"]
    by_vec = store.max_marginal_relevance_search_by_vector(TABLE["a"], k=2, fetch_k=3,
                                                           lambda_mult=0.25)
    assert [d.id for d in by_vec] == ["a", "b"]
    with pytest.raises(InvalidArgumentError, match="lambda_mult"):
        store.max_marginal_relevance_search("a", k=2, lambda_mult=1.5)


async def test_mmr_async(emb):
    store = VecIndexVectorStore(emb)
    await store.aadd_texts(["a", "a2", "b"], ids=["a", "a2", "b"])
    got = await store.amax_marginal_relevance_search("a", k=2, fetch_k=3, lambda_mult=0.25)
    assert [d.id for d in got] == ["a", "b"]
    got = await store.amax_marginal_relevance_search_by_vector(
        TABLE["a"], k=2, fetch_k=3, lambda_mult=0.25
    )
    assert [d.id for d in got] == ["a", "b"]


# ---------------------------------------------------------------------- relevance scores
def test_relevance_functions_known_values():
    assert cosine_relevance(1.0) == 1.0
    assert cosine_relevance(0.25) == 0.25
    assert cosine_relevance(0.0) == 0.0
    assert cosine_relevance(-0.7) == 0.0
    assert cosine_relevance(1.03) == 1.0  # an approximate score may overshoot
    assert inner_product_relevance(0.6) == 0.6
    assert inner_product_relevance(-2.0) == 0.0
    assert inner_product_relevance(3.0) == 1.0
    assert l2_relevance(0.0) == 1.0
    assert l2_relevance(-0.5) == pytest.approx(0.5)  # d = sqrt(.5) = sqrt(2) / 2
    assert l2_relevance(-2.0) == pytest.approx(0.0)  # orthogonal unit vectors
    assert l2_relevance(-4.0) == 0.0  # opposite unit vectors, clipped
    assert l2_relevance(1e-7) == 1.0  # float noise on a self-match
    assert set(RELEVANCE_FUNCTIONS) == {"cosine", "ip", "l2"}
    assert relevance_function("l2") is l2_relevance
    with pytest.raises(InvalidArgumentError, match="hamming"):
        relevance_function("hamming")


@pytest.mark.parametrize("s", np.linspace(0.0, 1.0, 11))
def test_relevance_matches_langchain_rules_where_theirs_are_in_range(s):
    # cosine: LangChain's rule takes the cosine distance 1 - s
    assert cosine_relevance(s) == pytest.approx(VectorStore._cosine_relevance_score_fn(1 - s))
    # ip: LangChain's rule, fed with Chroma's ip distance 1 - s, for s < 1
    if s < 1:
        assert inner_product_relevance(s) == pytest.approx(
            VectorStore._max_inner_product_relevance_score_fn(1 - s)
        )
    # l2: LangChain's rule takes the euclidean distance d (here d in [0, sqrt 2])
    d = s * math.sqrt(2)
    assert l2_relevance(-(d**2)) == pytest.approx(VectorStore._euclidean_relevance_score_fn(d))


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_relevance_scores_per_metric(emb, metric):
    store = VecIndexVectorStore(emb, metric=metric)
    assert store._select_relevance_score_fn() is RELEVANCE_FUNCTIONS[metric]
    store.add_texts(["a", "b", "c", "d"], ids=["a", "b", "c", "d"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # LangChain warns about scores outside [0, 1]
        got = store.similarity_search_with_relevance_scores("a", k=4)
    rel = {d.id: r for d, r in got}
    assert [d.id for d, _ in got] == ["a", "b", "c", "d"]
    assert rel["a"] == pytest.approx(1.0, abs=1e-6)
    assert rel["c"] == pytest.approx(0.0, abs=1e-6)  # orthogonal
    assert rel["d"] == 0.0  # opposite
    expected_b = {"cosine": math.sqrt(0.5), "ip": math.sqrt(0.5),
                  "l2": 1 - math.sqrt(1 - math.sqrt(0.5))}[metric]
    assert rel["b"] == pytest.approx(expected_b, abs=1e-5)
    raw = {d.id: s for d, s in store.similarity_search_with_score("a", k=4)}
    assert raw["a"] == pytest.approx(0.0 if metric == "l2" else 1.0, abs=1e-6)
    assert raw["d"] == pytest.approx(-4.0 if metric == "l2" else -1.0, abs=1e-5)
    thresholded = store.similarity_search_with_relevance_scores("a", k=4, score_threshold=0.4)
    assert [d.id for d, _ in thresholded] == ["a", "b"]


# ---------------------------------------------------------------------- retrievers
def test_retriever_modes(emb):
    store = VecIndexVectorStore(emb)
    store.add_texts(["a", "a2", "b", "c"], metadatas=[{"g": 1}, {"g": 1}, {"g": 2}, {"g": 2}],
                    ids=["a", "a2", "b", "c"])
    sim = store.as_retriever(search_kwargs={"k": 2})
    assert [d.id for d in sim.invoke("a")] == ["a", "a2"]
    mmr = store.as_retriever(
        search_type="mmr", search_kwargs={"k": 2, "fetch_k": 3, "lambda_mult": 0.25}
    )
    assert [d.id for d in mmr.invoke("a")] == ["a", "b"]
    thr = store.as_retriever(search_type="similarity_score_threshold",
                             search_kwargs={"score_threshold": 0.9, "k": 4})
    assert [d.id for d in thr.invoke("a")] == ["a", "a2"]
    filtered = store.as_retriever(search_kwargs={"k": 4, "filter": {"g": 2}})
    assert [d.id for d in filtered.invoke("a")] == ["b", "c"]
    bad = store.as_retriever(search_kwargs={"k": 4, "filter": {"g": {"$near": 2}}})
    with pytest.raises(FilterError, match=r"\$near"):
        bad.invoke("a")


async def test_retriever_modes_async(emb):
    store = VecIndexVectorStore(emb)
    await store.aadd_texts(["a", "a2", "b"], ids=["a", "a2", "b"])
    assert [d.id for d in await store.as_retriever(search_kwargs={"k": 1}).ainvoke("b")] == ["b"]
    mmr = store.as_retriever(
        search_type="mmr", search_kwargs={"k": 2, "fetch_k": 3, "lambda_mult": 0.25}
    )
    assert [d.id for d in await mmr.ainvoke("a")] == ["a", "b"]
    thr = store.as_retriever(search_type="similarity_score_threshold",
                             search_kwargs={"score_threshold": 0.99})
    assert [d.id for d in await thr.ainvoke("a")] == ["a", "a2"]


# ---------------------------------------------------------------------- search knobs
def test_search_params_pass_through(emb):
    store = VecIndexVectorStore(emb, index="turboquant", index_params={"keep_vectors": True})
    store.add_texts(["a", "b", "c"], ids=["a", "b", "c"])
    hits = store.similarity_search_with_score("a", k=1, params={"rerank": 3})
    assert hits[0][0].id == "a"
    assert hits[0][1] == pytest.approx(1.0, abs=1e-6)  # reranked: exact score
    with pytest.raises(InvalidParameterError, match="nprobe"):
        store.similarity_search("a", k=1, params={"nprobe": 3})


def test_unknown_keyword_argument_raises(emb):
    store = VecIndexVectorStore(emb)
    store.add_texts(["a"])
    with pytest.raises(InvalidArgumentError, match="filtre"):
        store.similarity_search("a", k=1, filtre={"x": 1})
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        store.add_texts(["b"], batch_size=10)
    assert len(store.collection) == 1


# ---------------------------------------------------------------------- bad input
@pytest.fixture
def loaded(tmp_path, emb):
    store = VecIndexVectorStore(emb, path=tmp_path / "bad.db")
    store.add_texts(["a", "b"], metadatas=[{"g": 1}, {"g": 2}], ids=["1", "2"])
    return store


def _unchanged(store: VecIndexVectorStore) -> None:
    assert len(store.collection) == 2
    assert store.get_by_ids(["1", "2"]) == [
        Document(page_content="a", metadata={"g": 1}, id="1"),
        Document(page_content="b", metadata={"g": 2}, id="2"),
    ]
    reopened = VecIndexVectorStore(store.embedding, path=store.collection.path)
    assert len(reopened.collection) == 2
    reopened.close()


def test_wrong_dimension_writes_nothing(loaded):
    loaded.embedding.table["wide"] = [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(DimensionMismatchError, match="3"):
        loaded.add_texts(["c", "wide"], ids=["3", "1"])
    _unchanged(loaded)
    with pytest.raises(DimensionMismatchError):
        loaded.similarity_search_by_vector([1.0, 0.0], k=1)
    with pytest.raises(DimensionMismatchError):
        loaded.similarity_search("wide", k=1)


@pytest.mark.parametrize(
    "bad_meta",
    [{"s": {1, 2}}, {"o": object()}, {"nan": float("nan")}, {1: "int key"}, {"b": b"bytes"}],
)
def test_non_json_metadata_writes_nothing(loaded, bad_meta):
    with pytest.raises(InvalidArgumentError):
        loaded.add_texts(["c", "a"], metadatas=[{"ok": 1}, bad_meta], ids=["3", "1"])
    _unchanged(loaded)


async def test_non_json_metadata_writes_nothing_async(loaded):
    with pytest.raises(InvalidArgumentError):
        await loaded.aadd_documents(
            [Document(page_content="c", id="3"),
             Document(page_content="a", metadata={"x": {1, 2}}, id="1")]
        )
    _unchanged(loaded)


def test_non_finite_vector_writes_nothing(loaded):
    loaded.embedding.table["nan"] = [float("nan"), 0.0, 0.0]
    with pytest.raises(NonFiniteError):
        loaded.add_texts(["c", "nan"], ids=["3", "4"])
    _unchanged(loaded)


def test_unknown_filter_operator_deletes_nothing(loaded):
    with pytest.raises(FilterError, match=r"\$like"):
        loaded.delete(filter={"g": {"$like": "1%"}})
    with pytest.raises(FilterError, match=r"\$nor"):
        loaded.similarity_search("a", filter={"$nor": [{"g": 1}]})
    _unchanged(loaded)


def test_bad_batches_write_nothing(loaded):
    with pytest.raises(DuplicateIdError):
        loaded.add_texts(["c", "a"], ids=["3", "3"])
    with pytest.raises(InvalidArgumentError, match="2 ids for 1 texts"):
        loaded.add_texts(["c"], ids=["3", "4"])
    with pytest.raises(InvalidArgumentError, match="2 metadatas for 1 texts"):
        loaded.add_texts(["c"], metadatas=[{}, {}])
    with pytest.raises(InvalidArgumentError):
        loaded.add_texts(["c"], ids=[""])
    # a single string is not taken for a list of one-character items
    with pytest.raises(InvalidDtypeError, match="single"):
        loaded.add_texts("ca")
    with pytest.raises(InvalidDtypeError, match="single"):
        loaded.add_texts(["c"], ids="3")
    with pytest.raises(InvalidDtypeError, match="single"):
        loaded.delete("12")
    with pytest.raises(InvalidDtypeError, match="single"):
        loaded.get_by_ids("12")

    class ShortEmbeddings(TableEmbeddings):
        def embed_documents(self, texts):
            return super().embed_documents(texts)[:-1]

    short = VecIndexVectorStore(ShortEmbeddings(TABLE), collection=loaded.collection)
    with pytest.raises(InvalidArgumentError, match="returned 1 vectors for 2 texts"):
        short.add_texts(["c", "d"])
    _unchanged(loaded)


def test_errors_are_also_builtin_errors():
    assert issubclass(DimensionMismatchError, ValueError)
    assert issubclass(FilterError, ValueError)


# ---------------------------------------------------------------------- the example
def test_example_langchain_rag(sample):
    path = Path(__file__).resolve().parents[1] / "examples" / "langchain_rag.py"
    spec = importlib.util.spec_from_file_location("langchain_rag_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    hits = module.run(query=0, k=3)
    best = sample.gt[0][:3]
    assert [text for text, _ in hits] == [sample.base_texts[i] for i in best]
    np.testing.assert_allclose(
        [score for _, score in hits], sample.base[best] @ sample.queries[0], atol=1e-4
    )
    adjectives = module.run(query=0, k=3, filter={"pos": "adj"})
    assert len(adjectives) == 3
    store = module.build_store()
    adj_texts = {
        r.text
        for r in store.collection.find({"field": "meta.pos", "operator": "==", "value": "adj"})
    }
    assert {text for text, _ in adjectives} <= adj_texts
    assert store.get_by_ids(["wn:noun:03904782"])[0].metadata == {
        "pos": "noun", "synset": "03904782"}
