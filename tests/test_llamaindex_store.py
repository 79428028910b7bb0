"""VecIndexVectorStore: the conformance suite (against SimpleVectorStore and ours) plus our
own behaviour: scores per metric, typed errors that write nothing, persistence, an
approximate index past its training, and a full offline VectorStoreIndex round trip."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base import SimilarityMode, similarity
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import (
    IndexNode,
    NodeRelationship,
    RelatedNodeInfo,
    TextNode,
)
from llama_index.core.vector_stores import SimpleVectorStore
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

import llama_index.vector_stores.vecindex as pkg
from llama_index.vector_stores.vecindex import VecIndexVectorStore
from llama_index.vector_stores.vecindex._convert import nodes_to_rows, record_to_node
from vecindex_core import (
    Collection,
    DimensionMismatchError,
    DuplicateIdError,
    FilterError,
    InvalidArgumentError,
    NonFiniteError,
    NotSupportedError,
    Record,
)
from vecindex_core.datasets import load_sample

from .llamaindex_conformance import (
    ALL_IDS,
    DIM,
    QUERY,
    BagOfWordsEmbedding,
    VectorStoreConformance,
    make_nodes,
    unit,
)


# =============================================================================== suites
class TestSimpleVectorStore(VectorStoreConformance):
    """The reference itself; each divergence below is asserted by the suite."""

    returns_nodes = False  # stores_text=False: ids only, get_nodes raises
    nested_filters = False  # "Nested MetadataFilters are not supported."
    honours_doc_ids = False  # VectorStoreQuery.doc_ids is ignored
    empty_node_ids_mean_all = False  # node_ids=[] matches nothing
    honours_query_mmr_threshold = False  # reads only the mmr_threshold kwarg
    mmr_scores = "objective"
    delete_nodes_needs_arguments = False  # delete_nodes() deletes every node
    add_is_atomic = False  # nodes before a bad one are written

    @pytest.fixture
    def store(self) -> SimpleVectorStore:
        return SimpleVectorStore()


class TestVecIndexFlat(VectorStoreConformance):
    """Ours over the exact index, in memory and on disk."""

    @pytest.fixture(params=["memory", "disk"])
    def store(self, request: pytest.FixtureRequest, tmp_path: Any) -> Any:
        path = None if request.param == "memory" else tmp_path / "store.db"
        store = VecIndexVectorStore(path, index="flat")
        yield store
        store.close()


class TestVecIndexTurboQuant(VectorStoreConformance):
    """Ours over turboquant (4-bit codes): approximate from the first vector (no staging)."""

    score_atol = 0.06  # measured error on this data is under 0.045; rank margins are >= 0.09

    @pytest.fixture
    def store(self, tmp_path: Any) -> Any:
        store = VecIndexVectorStore(tmp_path / "tq.db", index="turboquant")
        yield store
        store.close()

    def test_index_is_approximate_and_trained(self, filled: VecIndexVectorStore) -> None:
        idx = filled.client.index
        assert idx is not None and idx.is_trained
        scores = [h.score for h in filled.client.search(QUERY, 6)]
        exact = [math.cos(math.radians(a)) for a in (0, 15, 30, 45, 60, 75)]
        assert not np.allclose(scores, exact, atol=1e-4)  # genuinely compressed


# =============================================================================== package
def test_public_surface() -> None:
    assert pkg.__all__ == ["VecIndexVectorStore"]
    store = VecIndexVectorStore()
    assert store.stores_text is True
    assert store.is_embedding_query is True
    assert isinstance(store.client, Collection)
    assert VecIndexVectorStore.class_name() == "VecIndexVectorStore"


def test_from_params_and_serialisation(tmp_path: Any) -> None:
    path = tmp_path / "s.db"
    store = VecIndexVectorStore.from_params(path=path, index="ivf_flat", metric="l2",
                                            index_params={"nlist": 4})
    store.add(make_nodes())
    data = store.to_dict()
    assert data["class_name"] == "VecIndexVectorStore"
    assert data["path"] == str(path) and data["metric"] == "l2"
    assert json.loads(store.to_json())["index_params"] == {"nlist": 4}
    assert json.loads(store.model_dump_json())["path"] == str(path)
    assert store.client.index_spec.startswith("ivf_flat(") and "nlist=4" in store.client.index_spec
    store.close()
    again = VecIndexVectorStore.from_dict(data)  # reopens the same file
    assert [n.node_id for n in again.get_nodes()] == ALL_IDS
    again.close()
    reopened = VecIndexVectorStore(path)  # settings come from the file
    assert reopened.client.metric == "l2"
    reopened.close()


def test_reopen_with_other_settings_raises(tmp_path: Any) -> None:
    VecIndexVectorStore(tmp_path / "s.db", metric="ip").close()
    with pytest.raises(InvalidArgumentError, match="metric"):
        VecIndexVectorStore(tmp_path / "s.db", metric="cosine")


# =============================================================================== scores
@pytest.mark.parametrize(
    ("metric", "mode"),
    [("cosine", SimilarityMode.DEFAULT), ("ip", SimilarityMode.DOT_PRODUCT),
     ("l2", SimilarityMode.EUCLIDEAN)],
)
def test_similarities_follow_llamaindex_similarity(metric: str, mode: SimilarityMode) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(20, DIM))
    q = rng.normal(size=DIM)
    store = VecIndexVectorStore(metric=metric)  # type: ignore[arg-type]
    store.add([TextNode(id_=f"v{i}", text="", embedding=v.tolist())
               for i, v in enumerate(vectors)])
    result = store.query(VectorStoreQuery(query_embedding=q.tolist(), similarity_top_k=20))
    want = {f"v{i}": similarity(q, v, mode=mode) for i, v in enumerate(vectors)}
    assert result.ids == sorted(want, key=lambda i: -want[i])
    np.testing.assert_allclose(result.similarities, [want[i] for i in result.ids],
                               rtol=1e-4, atol=1e-4)
    assert all(type(s) is float for s in result.similarities or [])


def test_mmr_scores_are_query_similarities() -> None:
    store = VecIndexVectorStore()
    store.add(make_nodes())
    result = store.query(
        VectorStoreQuery(query_embedding=QUERY, similarity_top_k=3, mode="mmr"),
        mmr_threshold=0.3, mmr_prefetch_k=6,
    )
    by_id = {n.node_id: n.get_embedding() for n in make_nodes()}
    np.testing.assert_allclose(
        result.similarities, [similarity(QUERY, by_id[i]) for i in result.ids or []], atol=1e-5
    )


# =============================================================================== bad input
def _snapshot(store: VecIndexVectorStore) -> list[tuple[str, str, float]]:
    result = store.query(VectorStoreQuery(query_embedding=QUERY, similarity_top_k=100))
    return [(n.node_id, json.dumps(n.metadata, sort_keys=True), round(s, 6))
            for n, s in zip(result.nodes or [], result.similarities or [], strict=True)]


@pytest.fixture
def filled_store(tmp_path: Any) -> Any:
    store = VecIndexVectorStore(tmp_path / "bad.db")
    store.add(make_nodes())
    yield store
    store.close()


def _ok(node_id: str = "ok") -> TextNode:
    return TextNode(id_=node_id, text="fine", embedding=unit(0, 5))


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (TextNode(id_="short", text="x", embedding=[1.0, 0.0]), DimensionMismatchError),
        (TextNode(id_="nan", text="x", embedding=[math.nan] * DIM), NonFiniteError),
        (TextNode(id_="noemb", text="x"), InvalidArgumentError),
        (TextNode(id_="obj", text="x", metadata={"o": object()}, embedding=QUERY),
         InvalidArgumentError),
        (TextNode(id_="n0", text="replaces n0 but repeats", embedding=QUERY), DuplicateIdError),
    ],
    ids=["wrong_dimension", "nan", "no_embedding", "non_json_metadata", "duplicate_in_batch"],
)
def test_bad_batch_writes_nothing(filled_store: VecIndexVectorStore, bad: TextNode,
                                  error: type[Exception]) -> None:
    before = _snapshot(filled_store)
    batch = [_ok(), bad] if bad.node_id != "n0" else [_ok(), _ok("n0"), bad]
    with pytest.raises(error):
        filled_store.add(batch)
    assert _snapshot(filled_store) == before
    assert len(filled_store.client) == len(ALL_IDS)


def test_llamaindex_coerces_metadata_before_we_see_it(filled_store: VecIndexVectorStore) -> None:
    """node_to_metadata_dict dumps in pydantic's JSON mode: NaN/inf become None, tuples
    lists, dates ISO strings. We store what it gives (documented, not ours to undo)."""
    node = _ok()
    node.metadata.update({"inf": math.inf, "pair": (1, 2)})
    filled_store.add([node])
    assert filled_store.get_nodes(node_ids=["ok"])[0].metadata == {"inf": None, "pair": [1, 2]}


def test_bad_filter_raises_and_deletes_nothing(filled_store: VecIndexVectorStore) -> None:
    bogus = MetadataFilters(filters=[MetadataFilter.model_construct(
        key="author", value="alice", operator="regex")])
    before = _snapshot(filled_store)
    with pytest.raises(FilterError, match="regex"):
        filled_store.query(VectorStoreQuery(query_embedding=QUERY, filters=bogus))
    with pytest.raises(FilterError):
        filled_store.delete_nodes(node_ids=["n0"], filters=bogus)
    with pytest.raises(FilterError):
        filled_store.get_nodes(filters=bogus)
    assert _snapshot(filled_store) == before


@pytest.mark.parametrize(
    ("query", "kwargs", "error"),
    [
        (VectorStoreQuery(query_embedding=[1.0, 0.0]), {}, DimensionMismatchError),
        (VectorStoreQuery(query_embedding=None), {}, InvalidArgumentError),
        (VectorStoreQuery(query_embedding=QUERY, similarity_top_k=0), {}, InvalidArgumentError),
        (VectorStoreQuery(query_embedding=QUERY), {"nprobe": 3}, InvalidArgumentError),
        (VectorStoreQuery(query_embedding=QUERY, mode=VectorStoreQueryMode.SVM), {},
         NotSupportedError),
        (VectorStoreQuery(query_embedding=QUERY, mode="mmr", mmr_threshold=1.5), {},
         InvalidArgumentError),
        (VectorStoreQuery(query_embedding=QUERY, mode="mmr"), {"mmr_prefetch_k": 0},
         InvalidArgumentError),
    ],
    ids=["wrong_dimension", "no_embedding", "top_k_0", "unknown_kwarg", "svm_mode",
         "mmr_threshold_range", "mmr_prefetch_k"],
)
def test_bad_query(filled_store: VecIndexVectorStore, query: VectorStoreQuery,
                   kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        filled_store.query(query, **kwargs)


def test_unknown_kwargs_on_writes(filled_store: VecIndexVectorStore) -> None:
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        filled_store.add([_ok()], batch_size=3)
    with pytest.raises(InvalidArgumentError):
        filled_store.delete("d0", cascade=True)
    assert len(filled_store.client) == len(ALL_IDS)


# =============================================================================== filters
def _query_ids(store: VecIndexVectorStore, *filters: MetadataFilter) -> list[str]:
    q = VectorStoreQuery(query_embedding=QUERY, similarity_top_k=100,
                         filters=MetadataFilters(filters=list(filters)))
    return list(store.query(q).ids or [])


def test_ordering_on_strings_raises_unlike_simple(filled_store: VecIndexVectorStore) -> None:
    """SimpleVectorStore compares strings lexicographically; the core language (Haystack's)
    only orders numbers and ISO dates, and says so."""
    f = MetadataFilter(key="author", value="b", operator=FilterOperator.GT)
    with pytest.raises(FilterError):
        _query_ids(filled_store, f)
    simple = SimpleVectorStore()
    simple.add(make_nodes())
    q = VectorStoreQuery(query_embedding=QUERY, similarity_top_k=10,
                         filters=MetadataFilters(filters=[f]))
    assert simple.query(q).ids == ["n1", "n2", "n4"]  # "bob", "carol", "dave" > "b"


def test_text_match_on_non_string_does_not_match(filled_store: VecIndexVectorStore) -> None:
    """SimpleVectorStore raises TypeError when a TEXT_MATCH field is not a string."""
    f = MetadataFilter(key="year", value="20", operator=FilterOperator.TEXT_MATCH)
    assert _query_ids(filled_store, f) == []
    simple = SimpleVectorStore()
    simple.add(make_nodes())
    q = VectorStoreQuery(query_embedding=QUERY, filters=MetadataFilters(filters=[f]))
    with pytest.raises(TypeError):
        simple.query(q)


def test_eq_none_matches_missing_unlike_simple(filled_store: VecIndexVectorStore) -> None:
    """EQ None means "missing or None" (Haystack's rule); SimpleVectorStore's EQ None never
    matches anything."""
    f = MetadataFilter(key="author", value=None)
    assert _query_ids(filled_store, f) == ["n5"]
    simple = SimpleVectorStore()
    simple.add(make_nodes())
    q = VectorStoreQuery(query_embedding=QUERY, similarity_top_k=10,
                         filters=MetadataFilters(filters=[f]))
    assert simple.query(q).ids == []


def test_dotted_key_reads_nested_metadata() -> None:
    store = VecIndexVectorStore()
    store.add([TextNode(id_="a", text="", metadata={"info": {"lang": "en"}}, embedding=QUERY),
               TextNode(id_="b", text="", metadata={"info": {"lang": "fr"}}, embedding=QUERY)])
    assert _query_ids(store, MetadataFilter(key="info.lang", value="fr")) == ["b"]


def test_date_strings_compare_as_dates() -> None:
    store = VecIndexVectorStore()
    store.add([TextNode(id_=f"d{m}", text="", metadata={"at": f"2024-0{m}-01T00:00:00"},
                        embedding=unit(m, 10 * m)) for m in range(1, 5)])
    f = MetadataFilter(key="at", value="2024-02-15T00:00:00", operator=FilterOperator.GTE)
    assert _query_ids(store, f) == ["d3", "d4"]


# =============================================================================== conversion
def test_node_types_and_relationships_round_trip() -> None:
    store = VecIndexVectorStore()
    parent = RelatedNodeInfo(node_id="p", metadata={"k": 1})
    text = TextNode(id_="t", text="body", metadata={"a": 1}, embedding=QUERY,
                    relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="doc"),
                                   NodeRelationship.PARENT: parent},
                    excluded_llm_metadata_keys=["a"], start_char_idx=3, end_char_idx=7)
    index_node = IndexNode(id_="i", text="points elsewhere", index_id="other",
                           embedding=unit(1, 30))
    store.add([text, index_node])
    got = {n.node_id: n for n in store.get_nodes()}
    assert isinstance(got["i"], IndexNode) and got["i"].index_id == "other"
    t = got["t"]
    assert t.get_content() == "body" and t.ref_doc_id == "doc"
    assert t.relationships == text.relationships
    assert t.excluded_llm_metadata_keys == ["a"]
    assert (t.start_char_idx, t.end_char_idx) == (3, 7)
    assert t.embedding is None  # embeddings are not returned


def test_records_from_other_adapters_become_text_nodes() -> None:
    node = record_to_node(Record(id="x", text="plain", metadata={"k": "v"}))
    assert isinstance(node, TextNode)
    assert (node.node_id, node.get_content(), node.metadata) == ("x", "plain", {"k": "v"})


def test_rows_layout() -> None:
    rows = nodes_to_rows(make_nodes()[:1])
    meta = rows.metadatas[0]
    assert rows.ids == ["n0"] and rows.texts == ["apple pie"]
    assert meta["author"] == "alice" and meta["doc_id"] == meta["ref_doc_id"] == "d0"
    assert json.loads(meta["_node_content"])["text"] == ""  # text is stored once, not twice
    assert meta["_node_type"] == "TextNode"


# =============================================================================== persistence
def test_writes_are_durable_without_persist(tmp_path: Any) -> None:
    path = tmp_path / "live.db"
    store = VecIndexVectorStore(path, index="turboquant")
    store.add(make_nodes())
    store.delete("d2")
    # no persist(), no close(): another store on the file sees every acknowledged write
    other = VecIndexVectorStore(path)
    assert [n.node_id for n in other.get_nodes()] == ["n0", "n1", "n2", "n3", "n5"]
    assert other.client.index_spec == store.client.index_spec
    other.close()
    store.close()


def test_persist_to_own_path_flushes(tmp_path: Any) -> None:
    path = tmp_path / "own.db"
    store = VecIndexVectorStore(path)
    store.add(make_nodes())
    store.persist(str(path))
    assert (tmp_path / "own.db.index").is_file()
    store.close()
    assert [n.node_id for n in VecIndexVectorStore.from_persist_path(str(path)).get_nodes()] \
        == ALL_IDS


def test_from_persist_path_opens_in_place(tmp_path: Any) -> None:
    path = str(tmp_path / "p.json")
    store = VecIndexVectorStore(index="turboquant", metric="ip")
    store.add(make_nodes())
    store.persist(path)
    loaded = VecIndexVectorStore.from_persist_path(path)
    assert loaded.path == path
    assert loaded.client.metric == "ip" and loaded.client.index_spec == store.client.index_spec
    loaded.delete("d0")
    loaded.close()
    assert len(VecIndexVectorStore.from_persist_path(path).client) == len(ALL_IDS) - 2


def test_persist_rejects_remote_filesystems(tmp_path: Any) -> None:
    store = VecIndexVectorStore()
    with pytest.raises(NotSupportedError):
        store.persist(str(tmp_path / "x"), fs=fsspec.filesystem("memory"))
    store.persist(str(tmp_path / "x"), fs=fsspec.filesystem("file"))
    assert (tmp_path / "x").is_file()


# =============================================================================== approximate
@pytest.fixture(scope="module")
def gaussian() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.normal(size=(480, 16)), rng.normal(size=(8, 16))


def _gaussian_nodes(x: np.ndarray) -> list[TextNode]:
    return [TextNode(id_=f"c{i:03d}", text=f"item {i}", metadata={"group": i % 3, "i": i},
                     embedding=v.tolist()) for i, v in enumerate(x)]


def test_ivf_flat_past_training_matches_simple(
    gaussian: tuple[np.ndarray, np.ndarray], tmp_path: Any
) -> None:
    """ivf_flat(nlist=8) trains once 240 vectors exist (30 per list). Probing 2 of its 8
    lists it is approximate (recall@10 about 0.7 here); probing all 8 it must equal
    SimpleVectorStore exactly, filters included."""
    x, queries = gaussian
    store = VecIndexVectorStore(tmp_path / "ivf.db", index="ivf_flat(nlist=8)")
    simple = SimpleVectorStore()
    store.add(_gaussian_nodes(x))
    simple.add(_gaussian_nodes(x))
    assert store.client.index is not None and store.client.index.is_trained
    flt = MetadataFilters(filters=[MetadataFilter(key="group", value=1)])
    recall = []
    for q in queries:
        for filters in (None, flt):
            query = VectorStoreQuery(query_embedding=q.tolist(), similarity_top_k=10,
                                     filters=filters)
            want = simple.query(query)
            full = store.query(query, search_params={"nprobe": 8})
            assert full.ids == want.ids
            np.testing.assert_allclose(full.similarities, want.similarities, atol=1e-5)
            if filters is None:  # recall of the approximate route, unfiltered
                approx = store.query(query, search_params={"nprobe": 2})
                recall.append(len(set(approx.ids or []) & set(want.ids or [])) / 10)
    assert 0.5 <= np.mean(recall) < 1.0
    store.close()


def test_ivf_flat_mmr_and_async_past_training(
    gaussian: tuple[np.ndarray, np.ndarray]
) -> None:
    x, queries = gaussian
    store = VecIndexVectorStore(index="ivf_flat(nlist=8)")
    asyncio.run(store.async_add(_gaussian_nodes(x)))
    assert store.client.index is not None and store.client.index.is_trained
    q = VectorStoreQuery(query_embedding=queries[0].tolist(), similarity_top_k=5, mode="mmr")
    result = asyncio.run(store.aquery(q, mmr_threshold=0.2, search_params={"nprobe": 8}))
    assert len(set(result.ids or [])) == 5
    plain = store.query(VectorStoreQuery(query_embedding=queries[0].tolist(),
                                         similarity_top_k=5), search_params={"nprobe": 8})
    assert result.ids != plain.ids  # lambda 0.2 trades relevance for diversity
    assert (result.similarities or [0])[0] == pytest.approx((plain.similarities or [0])[0])


# =============================================================================== end to end
DOCS = {
    "fruit": ["apples and pears grow in orchards", "a banana is a yellow fruit"],
    "space": ["the moon orbits the earth", "mars is a red planet"],
    "cooking": ["bake the apple pie for forty minutes"],
}


def _doc_nodes() -> list[TextNode]:
    nodes = []
    for doc, texts in DOCS.items():
        for j, text in enumerate(texts):
            nodes.append(TextNode(
                id_=f"{doc}-{j}", text=text, metadata={"topic": doc},
                relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc)},
            ))
    return nodes


@pytest.mark.parametrize("index", ["flat", "turboquant"])
def test_vector_store_index_round_trip(index: str, tmp_path: Any) -> None:
    embed = BagOfWordsEmbedding()
    store = VecIndexVectorStore(tmp_path / "rag.db", index=index)
    ctx = StorageContext.from_defaults(vector_store=store)
    vsi = VectorStoreIndex(_doc_nodes(), storage_context=ctx, embed_model=embed)
    assert len(store.client) == 5

    hits = vsi.as_retriever(similarity_top_k=2).retrieve("apple pie")
    assert hits[0].node.node_id == "cooking-0"
    assert hits[0].node.ref_doc_id == "cooking"
    assert hits[0].score is not None and hits[0].score > (hits[1].score or 0)

    flt = MetadataFilters(filters=[MetadataFilter(key="topic", value="space")])
    hits = vsi.as_retriever(similarity_top_k=5, filters=flt).retrieve("apple")
    assert {h.node.node_id for h in hits} == {"space-0", "space-1"}

    hits = asyncio.run(vsi.as_retriever(similarity_top_k=1).aretrieve("red planet mars"))
    assert hits[0].node.get_content() == "mars is a red planet"

    mmr = vsi.as_retriever(similarity_top_k=2, vector_store_query_mode="mmr",
                           vector_store_kwargs={"mmr_threshold": 0.5}).retrieve("apple")
    assert len(mmr) == 2

    response = vsi.as_query_engine(llm=MockLLM(), similarity_top_k=2).query("apple pie")
    assert response.source_nodes[0].node.node_id == "cooking-0"
    assert isinstance(response.response, str)

    vsi.delete_ref_doc("fruit")
    assert sorted(n.node_id for n in store.get_nodes()) == ["cooking-0", "space-0", "space-1"]
    vsi.insert_nodes([TextNode(id_="fruit-9", text="cherries are red fruit",
                               relationships={NodeRelationship.SOURCE:
                                              RelatedNodeInfo(node_id="fruit")})])
    assert vsi.as_retriever(similarity_top_k=1).retrieve("cherries")[0].node.node_id == "fruit-9"

    # persistence: StorageContext writes the collection file; reopened, it answers the same
    ctx.persist(persist_dir=str(tmp_path / "storage"))
    store.close()
    reopened = VecIndexVectorStore.from_persist_dir(str(tmp_path / "storage"))
    again = VectorStoreIndex.from_vector_store(reopened, embed_model=embed)
    assert again.as_retriever(similarity_top_k=1).retrieve("moon")[0].node.node_id == "space-0"
    reopened.close()


def test_documents_pipeline_insert_delete_refresh() -> None:
    """Documents through a splitter (bundled tokenizer data, offline), then the index's
    document-level operations, all against our store alone (stores_text: no docstore text)."""
    store = VecIndexVectorStore()
    docs = [Document(text="the cat sat on the mat. a dog barked.", id_="doc1"),
            Document(text="stars shine at night", id_="doc2")]
    vsi = VectorStoreIndex.from_documents(
        docs, storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=BagOfWordsEmbedding(),
        transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=0)],
    )
    assert vsi.as_retriever(similarity_top_k=1).retrieve("cat")[0].node.ref_doc_id == "doc1"
    vsi.insert(Document(text="cats are pets", id_="doc3"))
    vsi.delete_ref_doc("doc1")
    vsi.refresh_ref_docs([Document(text="stars shine brightly at night", id_="doc2")])
    assert sorted(n.get_content() for n in store.get_nodes()) == [
        "cats are pets", "stars shine brightly at night"]


# =============================================================================== example
def test_example_runs_and_matches_ground_truth() -> None:
    spec = importlib.util.spec_from_file_location(
        "llamaindex_rag", Path(__file__).parents[1] / "examples" / "llamaindex_rag.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    sample = load_sample()
    assert sample.base_texts is not None and sample.base_ids is not None
    hits = example.run(query=0, k=3)
    assert len(hits) == 3
    assert hits[0][0] == sample.base_texts[sample.gt[0][0]]  # exact search: the true nearest
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    pos_of = dict(zip(sample.base_texts, sample.base_ids, strict=True))
    verbs = example.run(query=0, k=3, filters=MetadataFilters(
        filters=[MetadataFilter(key="pos", value="verb")]))
    assert len(verbs) == 3 and all(pos_of[t].startswith("wn:verb:") for t, _ in verbs)
