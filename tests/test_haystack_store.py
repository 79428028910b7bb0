"""VecIndexDocumentStore: Haystack's own conformance suite (sync and async, every opt-in
mixin the installed haystack ships) against an exact and an approximate index, plus
persistence, retrieval against exact search, and bad input."""

import asyncio
import inspect
import json
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("haystack")
pytest.importorskip("pytest_asyncio")

import haystack.testing.document_store as suite
import haystack.testing.document_store_async as suite_async
from haystack.dataclasses import ByteStream, Document, SparseEmbedding
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.types import DocumentStore, DuplicatePolicy
from haystack.errors import FilterError
from haystack.testing.document_store import (
    CountDocumentsByFilterTest,
    CountUniqueMetadataByFilterTest,
    DocumentStoreBaseExtendedTests,
    GetMetadataFieldMinMaxTest,
    GetMetadataFieldsInfoTest,
    GetMetadataFieldUniqueValuesTest,
)
from haystack.testing.document_store_async import (
    CountDocumentsAsyncTest,
    CountDocumentsByFilterAsyncTest,
    CountUniqueMetadataByFilterAsyncTest,
    DeleteAllAsyncTest,
    DeleteByFilterAsyncTest,
    DeleteDocumentsAsyncTest,
    FilterDocumentsAsyncTest,
    GetMetadataFieldMinMaxAsyncTest,
    GetMetadataFieldsInfoAsyncTest,
    GetMetadataFieldUniqueValuesAsyncTest,
    UpdateByFilterAsyncTest,
    WriteDocumentsAsyncTest,
)

import vecindex_core as vc
from haystack_integrations.document_stores.vecindex import (
    VecIndexDocumentStore,
    VecIndexDuplicateDocumentError,
    VecIndexFilterError,
)

#: Index configurations the whole suite runs against. The approximate one trains after 8
#: vectors (the suite's filterable documents hold 18) and then probes 1 of its 4 lists.
CONFIGS = {
    "flat": {"index": "flat"},
    "ivf_flat": {"index": "ivf_flat(nlist=4,train_size=8,nprobe=1)"},
}


def _float32(doc: Document) -> Document:
    """``doc`` with its embedding rounded to float32, as the store keeps it."""
    if doc.embedding is None:
        return doc
    return replace(doc, embedding=np.asarray(doc.embedding, np.float32).astype(float).tolist())


class _Fixture:
    @pytest.fixture(params=sorted(CONFIGS))
    def document_store(self, request, tmp_path):
        store = VecIndexDocumentStore(path=tmp_path / "store.db", **CONFIGS[request.param])
        yield store
        store.close()

    @staticmethod
    def assert_documents_are_equal(received, expected):
        """Exact Document equality, except that embeddings are stored as float32."""
        assert received == [_float32(d) for d in expected]


class TestSuite(
    _Fixture,
    DocumentStoreBaseExtendedTests,
    CountDocumentsByFilterTest,
    CountUniqueMetadataByFilterTest,
    GetMetadataFieldsInfoTest,
    GetMetadataFieldMinMaxTest,
    GetMetadataFieldUniqueValuesTest,
):
    """Haystack's sync conformance suite."""

    def test_write_documents(self, document_store):
        """Default policy NONE behaves as FAIL, like InMemoryDocumentStore."""
        docs = [Document(id="1", content="one"), Document(id="2", content="two")]
        assert document_store.write_documents(docs) == 2
        with pytest.raises(DuplicateDocumentError):
            document_store.write_documents([Document(id="3"), Document(id="1", content="x")])
        self.assert_documents_are_equal(document_store.filter_documents(), docs)


class TestSuiteAsync(
    _Fixture,
    CountDocumentsAsyncTest,
    CountDocumentsByFilterAsyncTest,
    CountUniqueMetadataByFilterAsyncTest,
    DeleteAllAsyncTest,
    DeleteByFilterAsyncTest,
    DeleteDocumentsAsyncTest,
    FilterDocumentsAsyncTest,
    GetMetadataFieldMinMaxAsyncTest,
    GetMetadataFieldsInfoAsyncTest,
    GetMetadataFieldUniqueValuesAsyncTest,
    UpdateByFilterAsyncTest,
    WriteDocumentsAsyncTest,
):
    """Haystack's async conformance suite."""

    @pytest.mark.asyncio
    async def test_write_documents_async(self, document_store):
        docs = [Document(id="1", content="one"), Document(id="2", content="two")]
        assert await document_store.write_documents_async(docs) == 2
        with pytest.raises(DuplicateDocumentError):
            await document_store.write_documents_async([Document(id="1", content="x")])
        self.assert_documents_are_equal(await document_store.filter_documents_async(), docs)

    @pytest.mark.asyncio
    async def test_embedding_retrieval_async(self, document_store):
        docs = [Document(id=str(i), embedding=[1.0, float(i)]) for i in range(4)]
        await document_store.write_documents_async(docs)
        got = await document_store.embedding_retrieval_async([1.0, 3.0], top_k=2)
        assert got == document_store.embedding_retrieval([1.0, 3.0], top_k=2)
        assert [d.id for d in got] == ["3", "2"]


def _mixins(module):
    return {
        cls for name, cls in vars(module).items()
        if inspect.isclass(cls) and name.endswith("Test") and cls.__module__ == module.__name__
    }


def test_every_suite_mixin_is_used():
    """New mixins in a later haystack fail here instead of being skipped silently."""
    missing = {c.__name__ for c in _mixins(suite) if not issubclass(TestSuite, c)}
    missing |= {c.__name__ for c in _mixins(suite_async) if not issubclass(TestSuiteAsync, c)}
    assert not missing, f"mix these into TestSuite / TestSuiteAsync: {sorted(missing)}"


def test_suite_runs_delete_all_with_recreate():
    """The suite's recreate tests skip unless the parameter exists: make sure it does."""
    for name in ("delete_all_documents", "delete_all_documents_async"):
        sig = inspect.signature(getattr(VecIndexDocumentStore, name))
        assert "recreate_index" in sig.parameters


def test_has_the_protocol_signatures():
    """Every DocumentStore protocol method exists with the protocol's parameters."""
    for name in ("count_documents", "filter_documents", "write_documents", "delete_documents",
                 "to_dict", "from_dict"):
        want = inspect.signature(getattr(DocumentStore, name)).parameters
        got = inspect.signature(getattr(VecIndexDocumentStore, name)).parameters
        assert list(got) == list(want), name
        assert [p.default for p in got.values()] == [p.default for p in want.values()], name


# --------------------------------------------------------------------------- approximate index
def test_suite_approximate_index_trains_on_filterable_docs(tmp_path):
    """The suite's approximate config is past its exact staging once filterable docs are in."""
    store = VecIndexDocumentStore(tmp_path / "s.db", **CONFIGS["ivf_flat"])
    store.write_documents([Document(content="no vector")])
    assert store.collection.index is None
    docs = suite.create_filterable_docs()
    store.write_documents(docs[:6])  # 5 vectors: staged, searched exactly
    assert not store.collection.index.is_trained
    store.write_documents(docs[6:])
    index = store.collection.index
    assert index.is_trained
    assert index.index.is_trained  # the inner IVF itself, not the staging
    assert index.index.centroids_.shape == (4, 768)
    assert index.ntotal == sum(d.embedding is not None for d in docs)
    store.close()


def test_approximate_index_trains_and_stays_trained_after_reopen(tmp_path, sample):
    path = tmp_path / "s.db"
    store = VecIndexDocumentStore(path, index="ivf_flat(nlist=16,nprobe=4)", metric="cosine")
    n = 16 * 30  # ivf_flat trains at 30 x nlist vectors
    store.write_documents(
        [Document(id=str(i), embedding=sample.base[i].tolist()) for i in range(n - 1)]
    )
    assert not store.collection.index.is_trained
    store.write_documents([Document(id=str(n - 1), embedding=sample.base[n - 1].tolist())])
    assert store.collection.index.is_trained
    store.close()
    reopened = VecIndexDocumentStore(path)
    assert reopened.collection.index.is_trained
    assert reopened.index == "ivf_flat(nlist=16,nprobe=4)"
    reopened.close()


# --------------------------------------------------------------------------- retrieval vs exact
def _exact_top(base, query, k, metric, allowed=None):
    x, q = base.astype(np.float64), query.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q)
    s = x @ q if metric != "l2" else -((x - q) ** 2).sum(1)
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)
    order = np.argsort(-s, kind="stable")[:k]
    return order, s[order]


def _pos(i):
    return ("noun", "verb", "adj")[i % 3]


@pytest.fixture(scope="module")
def sample_docs(sample):
    n = 1000
    base = sample.base[:n] * np.linspace(0.5, 2.0, n, dtype=np.float32)[:, None]  # not unit
    docs = [
        Document(id=f"d{i}", content=sample.base_texts[i], meta={"pos": _pos(i), "i": i},
                 embedding=base[i].tolist())
        for i in range(n)
    ]
    return base, docs


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_flat_retrieval_is_exact(metric, sample, sample_docs):
    base, docs = sample_docs
    store = VecIndexDocumentStore(index="flat", metric=metric)
    store.write_documents(docs)
    pos = np.array([_pos(i) for i in range(len(docs))])
    for qi in range(5):
        q = sample.queries[qi]
        order, scores = _exact_top(base, q, 10, metric)
        got = store.embedding_retrieval(q.tolist(), top_k=10)
        assert [d.id for d in got] == [f"d{i}" for i in order]
        np.testing.assert_allclose([d.score for d in got], scores, rtol=1e-4, atol=1e-4)
        assert all(d.embedding is None for d in got)
        # filtered: the exact top-k among the matching documents, not a post-filter
        flt = {"field": "meta.pos", "operator": "==", "value": "verb"}
        order, _ = _exact_top(base, q, 10, metric, allowed=pos == "verb")
        got = store.embedding_retrieval(q.tolist(), filters=flt, top_k=10)
        assert [d.id for d in got] == [f"d{i}" for i in order]
        assert {d.meta["pos"] for d in got} == {"verb"}


@pytest.mark.parametrize(
    ("spec", "floor"),
    [("ivf_flat(nlist=16,nprobe=4)", 0.8), ("turboquant", 0.8)],
)
def test_approximate_retrieval_against_exact(spec, floor, sample, sample_docs):
    base, docs = sample_docs
    store = VecIndexDocumentStore(index=spec, metric="cosine")
    store.write_documents(docs)
    assert store.collection.index.is_trained
    hits = 0
    for qi in range(20):
        q = sample.queries[qi]
        order, _ = _exact_top(base, q, 10, "cosine")
        got = store.embedding_retrieval(q.tolist(), top_k=10, scale_score=True)
        scores = [d.score for d in got]
        assert len(got) == 10
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= s <= 1.0 for s in scores)
        hits += len({d.id for d in got} & {f"d{i}" for i in order})
    assert hits / 200 >= floor


def test_retrieval_skips_documents_without_embedding_and_returns_embeddings():
    store = VecIndexDocumentStore(metric="ip")
    store.write_documents([
        Document(id="a", embedding=[1.0, 0.0]), Document(id="b"),
        Document(id="c", embedding=[0.5, 0.5]),
    ])
    got = store.embedding_retrieval([1.0, 0.0], top_k=10, return_embedding=True)
    assert [(d.id, d.score, d.embedding) for d in got] == [
        ("a", 1.0, [1.0, 0.0]), ("c", 0.5, [0.5, 0.5]),
    ]
    assert store.embedding_retrieval([1.0, 0.0], top_k=0) == []


def test_retrieval_on_empty_store():
    assert VecIndexDocumentStore().embedding_retrieval([0.1, 0.2]) == []


@pytest.mark.parametrize(
    ("metric", "raw", "scaled"),
    [("cosine", 1.0, 1.0), ("ip", 4.0, 1 / (1 + np.exp(-0.04))), ("l2", -0.0, 1.0)],
)
def test_scale_score(metric, raw, scaled):
    store = VecIndexDocumentStore(metric=metric)
    store.write_documents([Document(id="a", embedding=[2.0, 0.0])])
    assert store.embedding_retrieval([2.0, 0.0])[0].score == pytest.approx(raw)
    assert store.embedding_retrieval([2.0, 0.0], scale_score=True)[0].score == pytest.approx(
        scaled
    )


# --------------------------------------------------------------------------- persistence
def test_reopen_by_path_sees_everything(tmp_path):
    path = tmp_path / "sub" / "docs.db"
    store = VecIndexDocumentStore(path, index="ivf_flat(nlist=2,train_size=4)", metric="l2")
    docs = [
        Document(id=f"{i}", content=f"doc {i}", meta={"i": i, "tags": ["x", str(i)]},
                 embedding=[float(i), 1.0, -float(i)])
        for i in range(10)
    ] + [Document(id="plain", content="no vector", meta={"i": -1})]
    store.write_documents(docs)
    store.delete_documents(["3"])
    store.update_by_filter({"field": "meta.i", "operator": ">", "value": 7}, {"late": True})
    expected = store.filter_documents()
    query = store.embedding_retrieval([4.0, 1.0, -4.0], top_k=3)
    store.close()

    reopened = VecIndexDocumentStore(path)  # only the path: the settings are stored
    assert (reopened.index, reopened.metric) == ("ivf_flat(nlist=2,train_size=4)", "l2")
    assert reopened.count_documents() == 10
    assert reopened.filter_documents() == expected
    assert reopened.embedding_retrieval([4.0, 1.0, -4.0], top_k=3) == query
    assert query[0].id == "4"
    assert reopened.count_documents_by_filter(
        {"field": "meta.late", "operator": "==", "value": True}
    ) == 2
    reopened.close()


def test_reopen_with_other_settings_is_refused(tmp_path):
    path = tmp_path / "docs.db"
    VecIndexDocumentStore(path, index="flat", metric="ip").close()
    with pytest.raises(vc.InvalidArgumentError, match="metric"):
        VecIndexDocumentStore(path, metric="l2")
    with VecIndexDocumentStore(path, index="flat", metric="ip") as same:  # the same are fine
        assert same.count_documents() == 0
    with pytest.raises(vc.InvalidArgumentError, match="closed"):
        same.write_documents([Document(content="x")])


def test_reopen_without_close_sees_acknowledged_writes(tmp_path):
    path = tmp_path / "docs.db"
    store = VecIndexDocumentStore(path)
    store.write_documents([Document(id="a", content="x", embedding=[1.0, 2.0])])
    other = VecIndexDocumentStore(path)
    assert other.filter_documents() == store.filter_documents()
    other.close()
    store.close()


def test_to_dict_from_dict(tmp_path):
    path = tmp_path / "docs.db"
    store = VecIndexDocumentStore(path, index="ivf_flat", index_params={"nlist": 8},
                                  metric="ip")
    data = store.to_dict()
    assert data == {
        "type": "haystack_integrations.document_stores.vecindex.document_store."
                "VecIndexDocumentStore",
        "init_parameters": {"path": str(path), "index": "ivf_flat(nlist=8)", "metric": "ip",
                            "index_params": None},
    }
    json.dumps(data)
    store.write_documents([Document(id="a", content="x")])
    store.close()
    again = VecIndexDocumentStore.from_dict(data)
    assert again.filter_documents() == [Document(id="a", content="x")]
    assert again.to_dict() == data
    again.close()


def test_in_memory_to_dict_recreates_an_empty_store():
    store = VecIndexDocumentStore(index="turboquant(bits=2)", metric="l2")
    store.write_documents([Document(content="x")])
    again = VecIndexDocumentStore.from_dict(store.to_dict())
    assert (again.path, again.index, again.metric) == (None, store.index, "l2")
    assert again.count_documents() == 0


def test_delete_all_with_recreate_frees_the_dimension(tmp_path):
    path = tmp_path / "docs.db"
    store = VecIndexDocumentStore(path, index="ivf_flat(nlist=2,train_size=4)")
    store.write_documents([Document(id=str(i), embedding=[1.0, float(i)]) for i in range(6)])
    assert store.collection.index.is_trained
    store.delete_all_documents()  # keeps the dimension and the trained index
    with pytest.raises(vc.DimensionMismatchError):
        store.write_documents([Document(id="x", embedding=[1.0, 2.0, 3.0])])
    store.delete_all_documents(recreate_index=True)
    assert store.collection.index is None
    store.write_documents([Document(id="x", embedding=[1.0, 2.0, 3.0])])
    assert store.collection.dim == 3
    assert store.index == "ivf_flat(nlist=2,train_size=4)"
    store.close()
    reopened = VecIndexDocumentStore(path)
    assert [d.id for d in reopened.filter_documents()] == ["x"]
    reopened.close()


# --------------------------------------------------------------------------- write policies
def test_repeated_ids_in_one_batch():
    store = VecIndexDocumentStore()
    a1, a2 = Document(id="a", content="first"), Document(id="a", content="second")
    assert store.write_documents([a1, a2], policy=DuplicatePolicy.OVERWRITE) == 2
    assert store.filter_documents() == [a2]
    store.delete_all_documents()
    assert store.write_documents([a1, a2], policy=DuplicatePolicy.SKIP) == 1
    assert store.filter_documents() == [a1]
    with pytest.raises(VecIndexDuplicateDocumentError, match="repeat inside the batch"):
        store.write_documents([Document(id="b"), Document(id="b")], policy=DuplicatePolicy.FAIL)
    assert store.count_documents() == 1


def test_overwrite_replaces_embedding_and_meta():
    store = VecIndexDocumentStore(metric="ip")
    store.write_documents([Document(id="a", meta={"v": 1}, embedding=[1.0, 0.0])])
    store.write_documents([Document(id="a", meta={"v": 2})], policy=DuplicatePolicy.OVERWRITE)
    assert store.filter_documents() == [Document(id="a", meta={"v": 2})]
    assert store.embedding_retrieval([1.0, 0.0]) == []


# --------------------------------------------------------------------------- bad input
@pytest.fixture
def filled():
    store = VecIndexDocumentStore(index="flat", metric="cosine")
    store.write_documents([
        Document(id="a", content="x", meta={"n": 1}, embedding=[1.0, 0.0, 0.0]),
        Document(id="b", content="y", meta={"n": 2}, embedding=[0.0, 1.0, 0.0]),
    ])
    return store


def _unchanged(store, before):
    assert store.count_documents() == 2
    assert store.filter_documents() == before


def test_wrong_embedding_dimension(filled):
    before = filled.filter_documents()
    with pytest.raises(vc.DimensionMismatchError, match="expects 3"):
        filled.write_documents([Document(id="c", embedding=[1.0, 2.0, 3.0]),
                                Document(id="d", embedding=[1.0, 2.0])])
    _unchanged(filled, before)
    with pytest.raises(vc.DimensionMismatchError):
        filled.embedding_retrieval([1.0, 2.0])


def test_non_finite_embedding(filled):
    before = filled.filter_documents()
    with pytest.raises(vc.NonFiniteError):
        filled.write_documents([Document(id="c", embedding=[1.0, float("nan"), 0.0])])
    _unchanged(filled, before)


@pytest.mark.parametrize("meta", [{"when": object()}, {"x": {1: "int key"}},
                                  {"x": float("inf")}, {"b": b"bytes"}])
def test_non_json_meta(filled, meta):
    before = filled.filter_documents()
    with pytest.raises(vc.InvalidArgumentError, match="metadata"):
        filled.write_documents([Document(id="c", content="z"), Document(id="d", meta=meta)])
    _unchanged(filled, before)


def test_blob_and_sparse_embedding_are_rejected(filled):
    before = filled.filter_documents()
    with pytest.raises(vc.InvalidArgumentError, match="blob"):
        filled.write_documents([Document(id="c", blob=ByteStream(b"abc"))])
    with pytest.raises(vc.InvalidArgumentError, match="sparse"):
        filled.write_documents([Document(id="c", sparse_embedding=SparseEmbedding([1], [0.5]))])
    _unchanged(filled, before)


@pytest.mark.parametrize("policy", [DuplicatePolicy.FAIL, DuplicatePolicy.NONE])
def test_duplicate_under_fail_writes_nothing(filled, policy):
    before = filled.filter_documents()
    with pytest.raises(VecIndexDuplicateDocumentError, match="already stored") as info:
        filled.write_documents([Document(id="new", content="n"), Document(id="a", content="x2")],
                               policy=policy)
    assert isinstance(info.value, DuplicateDocumentError)
    assert isinstance(info.value, vc.DuplicateIdError)
    _unchanged(filled, before)


BAD_FILTERS = [
    {"field": "meta.n", "operator": "~=", "value": 1},  # unknown operator
    {"operator": "XOR", "conditions": []},  # unknown logical operator
    {"field": "meta.n", "operator": "in", "value": 1},  # `in` needs a list
    {"field": "meta.n", "operator": ">", "value": "1"},  # ordering on a non-date string
    {"conditions": [{"field": "meta.n", "operator": "==", "value": 1}]},  # no operator
]


@pytest.mark.parametrize("flt", BAD_FILTERS)
def test_bad_filters_raise_one_typed_error_everywhere(filled, flt):
    before = filled.filter_documents()
    calls = [
        lambda: filled.filter_documents(flt),
        lambda: filled.count_documents_by_filter(flt),
        lambda: filled.delete_by_filter(flt),
        lambda: filled.update_by_filter(flt, {"z": 1}),
        lambda: filled.embedding_retrieval([1.0, 0.0, 0.0], filters=flt),
        lambda: filled.get_metadata_field_unique_values("n", filters=flt),
        lambda: filled.count_unique_metadata_by_filter(flt, ["n"]),
    ]
    for call in calls:
        with pytest.raises(VecIndexFilterError) as info:
            call()
        assert isinstance(info.value, FilterError)
        assert isinstance(info.value, vc.FilterError)
    _unchanged(filled, before)


def test_empty_filter_is_refused_by_destructive_calls(filled):
    before = filled.filter_documents()
    with pytest.raises(VecIndexFilterError, match="delete_all_documents"):
        filled.delete_by_filter({})
    with pytest.raises(VecIndexFilterError, match="non-empty"):
        filled.update_by_filter({}, {"z": 1})
    _unchanged(filled, before)
    assert filled.count_documents_by_filter({}) == 2  # reading with {} means "everything"


def test_update_by_filter_bad_meta(filled):
    before = filled.filter_documents()
    flt = {"field": "meta.n", "operator": "==", "value": 1}
    with pytest.raises(vc.InvalidArgumentError, match="meta must be a dict"):
        filled.update_by_filter(flt, [("z", 1)])
    with pytest.raises(vc.InvalidArgumentError):
        filled.update_by_filter(flt, {"z": object()})
    _unchanged(filled, before)


@pytest.mark.parametrize("query", [[], "abc", None])
def test_bad_query_embedding(filled, query):
    with pytest.raises(vc.InvalidArgumentError, match="query_embedding"):
        filled.embedding_retrieval(query)


@pytest.mark.parametrize("top_k", [-1, 1.5, True])
def test_bad_top_k(filled, top_k):
    with pytest.raises(vc.InvalidArgumentError, match="top_k"):
        filled.embedding_retrieval([1.0, 0.0, 0.0], top_k=top_k)


def test_bad_index_settings():
    with pytest.raises(vc.UnknownIndexError):
        VecIndexDocumentStore(index="nope")
    with pytest.raises(vc.InvalidParameterError):
        VecIndexDocumentStore(index="ivf_flat(nlists=4)")
    with pytest.raises(vc.InvalidArgumentError):
        VecIndexDocumentStore(metric="dot_product")


def test_async_errors_are_the_same(filled):
    async def main():
        with pytest.raises(VecIndexDuplicateDocumentError):
            await filled.write_documents_async([Document(id="a")])
        with pytest.raises(VecIndexFilterError):
            await filled.filter_documents_async({"field": "meta.n", "operator": "~"})

    asyncio.run(main())
    assert filled.count_documents() == 2
