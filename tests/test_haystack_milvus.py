"""VecIndexDocumentStore on Milvus: Haystack's own conformance suite (sync and async, every
opt-in mixin, the same classes as tests/test_haystack_store.py) on embedded milvus-lite and
on the real Milvus 2.3.5 server, plus serialization of a Milvus-backed store.

Speed: creating a Milvus collection costs seconds on the server (create_index + load), so
each test class opens one Milvus collection with the suite's 768 dimensions and every test
starts from it emptied (``clear()``); a test that recreates the index (dropping the
dimension) makes the next write recreate the collection once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("haystack")
pytest.importorskip("pytest_asyncio")

from haystack import Pipeline
from haystack.dataclasses import Document
from haystack.utils import Secret

from haystack_integrations.components.retrievers.vecindex import VecIndexEmbeddingRetriever
from haystack_integrations.document_stores.vecindex import VecIndexDocumentStore
from tests.test_haystack_store import TestSuite as SqliteSuite
from tests.test_haystack_store import TestSuiteAsync as SqliteSuiteAsync
from vecindex_core import InvalidArgumentError, MilvusCollection

DIM = 768  # haystack.testing's embeddings


@pytest.fixture(scope="module", params=["lite", "server"])
def milvus_target(request: Any, tmp_path_factory: Any) -> str:
    """Where the collections live: one milvus-lite file, or the session's Milvus server."""
    if request.param == "lite":
        return str(tmp_path_factory.mktemp("hs-milvus") / "milvus.db")
    return str(request.getfixturevalue("milvus_server").uri)


@pytest.fixture(scope="class")
def shared(milvus_target: str) -> Iterator[MilvusCollection]:
    coll = MilvusCollection(milvus_target, collection_name=f"hs_{uuid.uuid4().hex[:12]}",
                            dim=DIM)
    try:
        yield coll
    finally:
        if not coll.lite:
            coll.client.drop_collection(coll.collection_name)
        coll.close()


class _MilvusFixture:
    @pytest.fixture
    def document_store(self, shared: MilvusCollection) -> Iterator[VecIndexDocumentStore]:
        shared.clear()
        yield VecIndexDocumentStore(collection=shared)


class TestMilvusSuite(_MilvusFixture, SqliteSuite):
    """Haystack's sync conformance suite (and our SQLite store's extra tests) on Milvus."""


class TestMilvusSuiteAsync(_MilvusFixture, SqliteSuiteAsync):
    """Haystack's async conformance suite on Milvus."""

    @pytest.mark.asyncio
    async def test_embedding_retrieval_async(self, document_store: VecIndexDocumentStore) -> None:
        """The SQLite suite's version in the shared collection's 768 dimensions."""
        pad = [0.0] * (DIM - 2)
        docs = [Document(id=str(i), embedding=[1.0, float(i), *pad]) for i in range(4)]
        await document_store.write_documents_async(docs)
        got = await document_store.embedding_retrieval_async([1.0, 3.0, *pad], top_k=2)
        assert got == document_store.embedding_retrieval([1.0, 3.0, *pad], top_k=2)
        assert [d.id for d in got] == ["3", "2"]


# ----------------------------------------------------------------------------- serialization
def test_to_dict_from_dict_round_trips_a_milvus_store(tmp_path: Any,
                                                      monkeypatch: Any) -> None:
    uri = str(tmp_path / "m.db")
    monkeypatch.setenv("VECINDEX_TEST_MILVUS_TOKEN", "root:Milvus")
    store = VecIndexDocumentStore(
        milvus_uri=uri, collection_name="docs", index="HNSW(M=8)", metric="ip",
        token=Secret.from_env_var("VECINDEX_TEST_MILVUS_TOKEN"),
    )
    store.write_documents([Document(id="a", content="x", embedding=[1.0, 0.0, 0.5])])
    data = store.to_dict()
    params = data["init_parameters"]
    assert params["milvus_uri"] == uri and params["collection_name"] == "docs"
    assert params["index"] == "HNSW(M=8,efConstruction=200)" and params["metric"] == "ip"
    assert params["dim"] == 3 and params["path"] is None
    assert params["token"] == {"type": "env_var", "env_vars": ["VECINDEX_TEST_MILVUS_TOKEN"],
                               "strict": True}
    assert "root:Milvus" not in json.dumps(data)
    store.close()
    again = VecIndexDocumentStore.from_dict(data)
    assert [d.id for d in again.filter_documents()] == ["a"]
    assert again.to_dict() == data
    again.close()


def test_pipeline_with_a_milvus_store_round_trips_through_yaml(tmp_path: Any) -> None:
    uri = str(tmp_path / "m.db")
    store = VecIndexDocumentStore(milvus_uri=uri, collection_name="docs", index="FLAT")
    store.write_documents([Document(id=str(i), content=f"d{i}", embedding=[1.0, float(i)])
                           for i in range(4)])
    pipe = Pipeline()
    pipe.add_component("retriever", VecIndexEmbeddingRetriever(document_store=store, top_k=2))
    text = pipe.dumps()
    store.close()
    loaded = Pipeline.loads(text)
    got = loaded.run({"retriever": {"query_embedding": [1.0, 3.0]}})["retriever"]["documents"]
    assert [d.id for d in got] == ["3", "2"]
    loaded.get_component("retriever").document_store.close()


def test_milvus_settings_need_milvus_uri_and_secrets(tmp_path: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="milvus_uri"):
        VecIndexDocumentStore(collection_name="docs")
    with pytest.raises(InvalidArgumentError, match="Secret"):
        VecIndexDocumentStore(milvus_uri=str(tmp_path / "m.db"), token="plain")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="not both"):
        VecIndexDocumentStore(tmp_path / "s.db", milvus_uri=str(tmp_path / "m.db"))


def test_to_dict_of_a_wrapped_milvus_collection_keeps_or_refuses(tmp_path: Any) -> None:
    """A wrapped MilvusCollection: its settings are read back, or to_dict raises."""
    uri = str(tmp_path / "w.db")
    coll = MilvusCollection(uri, collection_name="docs", dim=3, db_name="default")
    store = VecIndexDocumentStore(collection=coll)
    params = store.to_dict()["init_parameters"]
    assert params["milvus_uri"] == uri and params["collection_name"] == "docs"
    assert params["db_name"] == "default" and params["dim"] == 3
    coll.close()
    for kw in ({"consistency_level": "Bounded"}, {"page_size": 100}, {"timeout": 30.0},
               {"token": "root:Milvus"}):
        other = MilvusCollection(uri, collection_name="docs", **kw)
        with pytest.raises(InvalidArgumentError, match=next(iter(kw))):
            VecIndexDocumentStore(collection=other).to_dict()
        other.close()
