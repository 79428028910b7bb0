"""LangChain's own conformance suite (``VectorStoreIntegrationTests``) on a Milvus-backed store.

``VecIndexVectorStore(embeddings, collection=MilvusCollection(...))`` runs all 25 tests
(sync and async) on embedded milvus-lite and on the real Milvus 2.3.5 server, nothing
skipped or xfailed, twice: with Milvus's ``AUTOINDEX`` (HNSW on the server, faiss HNSW on
lite) and with ``FLAT`` (exact).

Speed: creating a Milvus collection costs seconds on the server (create_index + load), so
each test class opens one Milvus collection (the suite's embeddings have 6 dimensions) and
each test starts from it emptied with ``clear()``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_tests.integration_tests.vectorstores import VectorStoreIntegrationTests

from langchain_vecindex import VecIndexVectorStore
from vecindex_core import MilvusCollection

pytestmark = pytest.mark.anyio

DIM = 6  # VectorStoreIntegrationTests.get_embeddings(): DeterministicFakeEmbedding(size=6)


@pytest.fixture(scope="module", params=["lite", "server"])
def milvus_target(request: Any, tmp_path_factory: Any) -> str:
    """Where the collections live: one milvus-lite file, or the session's Milvus server."""
    if request.param == "lite":
        return str(tmp_path_factory.mktemp("lc-milvus") / "milvus.db")
    return str(request.getfixturevalue("milvus_server").uri)


@pytest.fixture(scope="class")
def shared(request: Any, milvus_target: str) -> Iterator[MilvusCollection]:
    """One Milvus collection per test class (its ``index``), emptied by each test."""
    coll = MilvusCollection(milvus_target, collection_name=f"lc_{uuid.uuid4().hex[:12]}",
                            index=request.cls.index, dim=DIM)
    try:
        yield coll
    finally:
        if not coll.lite:
            coll.client.drop_collection(coll.collection_name)
        coll.close()


class _Milvus(VectorStoreIntegrationTests):
    index = "AUTOINDEX"

    @pytest.fixture
    def vectorstore(self, shared: MilvusCollection) -> Iterator[VecIndexVectorStore]:
        shared.clear()
        yield VecIndexVectorStore(self.get_embeddings(), collection=shared)


class TestMilvusAutoIndex(_Milvus):
    index = "AUTOINDEX"


class TestMilvusFlat(_Milvus):
    index = "FLAT"


def test_store_on_milvus_reports_the_milvus_collection(tmp_path: Any) -> None:
    embeddings = VectorStoreIntegrationTests.get_embeddings()
    coll = MilvusCollection(str(tmp_path / "m.db"), collection_name="docs", metric="l2")
    store = VecIndexVectorStore(embeddings, collection=coll)
    store.add_texts(["foo", "bar"], [{"k": 1}, {"k": 2}], ids=["a", "b"])
    assert store.collection is coll
    docs = store.similarity_search_with_relevance_scores("foo", k=2, filter={"k": 1})
    assert [d.id for d, _ in docs] == ["a"]
    store.close()
    with MilvusCollection(str(tmp_path / "m.db"), collection_name="docs") as again:
        assert again.metric == "l2" and len(again) == 2
