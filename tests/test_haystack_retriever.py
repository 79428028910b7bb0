"""VecIndexEmbeddingRetriever: run / run_async, filter policies, serialization, and a
Pipeline that round-trips through YAML with Haystack's default deserialization."""

import asyncio
import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("haystack")

from haystack import Document, Pipeline
from haystack.document_stores.in_memory import InMemoryDocumentStore
from haystack.document_stores.types import FilterPolicy

from haystack_integrations.components.retrievers import vecindex as retrievers
from haystack_integrations.components.retrievers.vecindex import (
    VecIndexEmbeddingRetriever,
)
from haystack_integrations.document_stores.vecindex import (
    VecIndexDocumentStore,
    VecIndexFilterError,
)

RETRIEVER_TYPE = (
    "haystack_integrations.components.retrievers.vecindex.embedding_retriever."
    "VecIndexEmbeddingRetriever"
)
STORE_TYPE = "haystack_integrations.document_stores.vecindex.document_store.VecIndexDocumentStore"


def _docs():
    """Six 3-d documents on a half circle; "lang" alternates, "year" grows."""
    vecs = [[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.7, 0.3, 0.0], [0.5, 0.5, 0.0],
            [0.2, 0.8, 0.0], [0.0, 1.0, 0.0]]
    return [
        Document(id=f"d{i}", content=f"doc {i}", meta={"lang": "en" if i % 2 else "de",
                                                        "year": 2000 + i}, embedding=v)
        for i, v in enumerate(vecs)
    ]


@pytest.fixture
def store(tmp_path):
    store = VecIndexDocumentStore(tmp_path / "docs.db", index="flat", metric="cosine")
    store.write_documents(_docs())
    yield store
    store.close()


def _ids(result):
    return [d.id for d in result["documents"]]


def test_public_names():
    assert retrievers.__all__ == ["VecIndexEmbeddingRetriever"]


def test_init_validation(store):
    with pytest.raises(TypeError, match="VecIndexDocumentStore"):
        VecIndexEmbeddingRetriever(document_store=InMemoryDocumentStore())
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="top_k"):
            VecIndexEmbeddingRetriever(document_store=store, top_k=bad)
    with pytest.raises(ValueError):
        VecIndexEmbeddingRetriever(document_store=store, filter_policy="sometimes")
    r = VecIndexEmbeddingRetriever(document_store=store, filter_policy="merge")
    assert r.filter_policy is FilterPolicy.MERGE


def test_run(store):
    retriever = VecIndexEmbeddingRetriever(document_store=store, top_k=3)
    result = retriever.run(query_embedding=[1.0, 0.05, 0.0])
    assert _ids(result) == ["d0", "d1", "d2"]
    scores = [d.score for d in result["documents"]]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(0.99875, 1e-4)
    assert all(d.embedding is None for d in result["documents"])
    assert result == {"documents": store.embedding_retrieval([1.0, 0.05, 0.0], top_k=3)}


def test_run_overrides(store):
    retriever = VecIndexEmbeddingRetriever(document_store=store, top_k=3)
    result = retriever.run(query_embedding=[0.0, 1.0, 0.0], top_k=2, scale_score=True,
                           return_embedding=True)
    assert _ids(result) == ["d5", "d4"]
    docs = result["documents"]
    assert docs[0].score == pytest.approx(1.0) and 0.5 < docs[1].score < 1.0
    assert docs[0].embedding == [0.0, 1.0, 0.0]
    assert retriever.run(query_embedding=[0.0, 1.0, 0.0], top_k=0) == {"documents": []}
    with pytest.raises(ValueError, match="top_k"):
        retriever.run(query_embedding=[0.0, 1.0, 0.0], top_k=-1)


def test_run_async(store):
    retriever = VecIndexEmbeddingRetriever(document_store=store, top_k=2, scale_score=True)

    async def main():
        return await retriever.run_async(query_embedding=[0.5, 0.5, 0.0])

    result = asyncio.run(main())
    assert result == retriever.run(query_embedding=[0.5, 0.5, 0.0])
    assert _ids(result)[0] == "d3"


EN = {"field": "meta.lang", "operator": "==", "value": "en"}
LATE = {"field": "meta.year", "operator": ">=", "value": 2003}


def test_filter_policy_replace(store):
    retriever = VecIndexEmbeddingRetriever(document_store=store, filters=EN, top_k=10)
    assert _ids(retriever.run(query_embedding=[1.0, 0.0, 0.0])) == ["d1", "d3", "d5"]
    # run-time filters replace the init ones
    assert _ids(retriever.run(query_embedding=[1.0, 0.0, 0.0], filters=LATE)) == [
        "d3", "d4", "d5",
    ]


def test_filter_policy_merge(store):
    retriever = VecIndexEmbeddingRetriever(document_store=store, filters=EN, top_k=10,
                                           filter_policy=FilterPolicy.MERGE)
    assert _ids(retriever.run(query_embedding=[1.0, 0.0, 0.0])) == ["d1", "d3", "d5"]
    # run-time filters are ANDed with the init ones
    assert _ids(retriever.run(query_embedding=[1.0, 0.0, 0.0], filters=LATE)) == ["d3", "d5"]


def test_bad_filter_at_run_time(store):
    retriever = VecIndexEmbeddingRetriever(document_store=store)
    with pytest.raises(VecIndexFilterError):
        retriever.run(query_embedding=[1.0, 0.0, 0.0],
                      filters={"field": "meta.year", "operator": "between", "value": [1, 2]})


def test_to_dict(store, tmp_path):
    retriever = VecIndexEmbeddingRetriever(document_store=store, filters=EN, top_k=4,
                                           scale_score=True, filter_policy="merge")
    assert retriever.to_dict() == {
        "type": RETRIEVER_TYPE,
        "init_parameters": {
            "document_store": {
                "type": STORE_TYPE,
                "init_parameters": {"path": str(tmp_path / "docs.db"), "index": "flat",
                                    "metric": "cosine", "index_params": None},
            },
            "filters": EN,
            "top_k": 4,
            "scale_score": True,
            "return_embedding": False,
            "filter_policy": "merge",
        },
    }


def test_from_dict(store):
    retriever = VecIndexEmbeddingRetriever(document_store=store, filters=EN, top_k=4,
                                           filter_policy=FilterPolicy.MERGE)
    data = retriever.to_dict()
    snapshot = repr(data)
    again = VecIndexEmbeddingRetriever.from_dict(data)
    assert repr(data) == snapshot  # the input is not modified
    assert again.to_dict() == data
    assert again.filter_policy is FilterPolicy.MERGE
    assert isinstance(again.document_store, VecIndexDocumentStore)
    assert again.document_store.path == store.path
    assert again.run(query_embedding=[1.0, 0.0, 0.0]) == retriever.run(
        query_embedding=[1.0, 0.0, 0.0]
    )
    again.document_store.close()


def test_from_dict_defaults(store):
    data = {"type": RETRIEVER_TYPE,
            "init_parameters": {"document_store": store.to_dict()}}
    retriever = VecIndexEmbeddingRetriever.from_dict(data)
    assert (retriever.top_k, retriever.filters, retriever.filter_policy) == (
        10, None, FilterPolicy.REPLACE,
    )
    retriever.document_store.close()


def test_pipeline_yaml_round_trip(store):
    pipeline = Pipeline()
    pipeline.add_component(
        "retriever", VecIndexEmbeddingRetriever(document_store=store, top_k=2, filters=EN)
    )
    expected = pipeline.run({"retriever": {"query_embedding": [0.6, 0.4, 0.0]}})
    assert _ids(expected["retriever"]) == ["d3", "d1"]
    text = pipeline.dumps()
    assert STORE_TYPE in text and RETRIEVER_TYPE in text
    store.close()  # as if the YAML were loaded in another process

    loaded = Pipeline.loads(text)  # Haystack's default deserialization allow-list
    assert loaded.dumps() == text
    got = loaded.run({"retriever": {"query_embedding": [0.6, 0.4, 0.0]}})
    assert got == expected
    loaded.get_component("retriever").document_store.close()


def test_pipeline_run_async(store):
    pipeline = Pipeline()
    pipeline.add_component("retriever", VecIndexEmbeddingRetriever(document_store=store, top_k=3))

    async def main():
        return await pipeline.run_async({"retriever": {"query_embedding": [0.0, 1.0, 0.0]}})

    assert _ids(asyncio.run(main())["retriever"]) == ["d5", "d4", "d3"]


def test_example_script(sample):
    """examples/haystack_rag.py returns the exact top hits of the bundled sample."""
    path = Path(__file__).resolve().parents[1] / "examples" / "haystack_rag.py"
    spec = importlib.util.spec_from_file_location("haystack_rag_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    hits = example.run(query=0, k=3)
    assert [text for text, _ in hits] == [sample.base_texts[i] for i in sample.gt[0, :3]]
    scores = [score for _, score in hits]
    assert scores == sorted(scores, reverse=True)
    # filtered: the exact top 3 among nouns
    is_noun = np.array([i.split(":")[1] == "noun" for i in sample.base_ids])
    base = sample.base / np.linalg.norm(sample.base, axis=1, keepdims=True)
    q = sample.queries[0] / np.linalg.norm(sample.queries[0])
    best = np.argsort(-np.where(is_noun, base @ q, -np.inf), kind="stable")[:3]
    nouns = example.run(query=0, k=3, filters=example.NOUNS)
    assert [text for text, _ in nouns] == [sample.base_texts[i] for i in best]
