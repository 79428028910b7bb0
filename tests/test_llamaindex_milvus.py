"""VecIndexVectorStore on Milvus: our LlamaIndex conformance suite (written to
SimpleVectorStore's behaviour, tests/llamaindex_conformance.py) on embedded milvus-lite and
on the real Milvus 2.3.5 server, plus what a Milvus-backed store adds (``collection_name``
serialization, ``persist`` as a SQLite export).

One known gap, marked strict-xfail on the server only: the Milvus 2.3.5 server evaluates
``like`` with prefix patterns only, so the substring operators (``text_match``,
``text_match_insensitive``, ``contains`` with a str value) raise ``NotSupportedError``
there (milvus-lite and Milvus >= 2.4 run them; see docs/milvus.md).

Speed: one Milvus collection per test class, emptied by each test (see
tests/test_langchain_milvus.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores.types import VectorStoreQuery

from llama_index.vector_stores.vecindex import VecIndexVectorStore
from vecindex_core import Collection, InvalidArgumentError, MilvusCollection, NotSupportedError

from .llamaindex_conformance import DIM, QUERY, VectorStoreConformance, make_nodes

#: Conformance cases that use a substring operator (Milvus 2.3: prefix ``like`` only).
SUBSTRING_CASES = {"text_match", "text_match_insensitive", "contains", "and_of_or_and_not"}


@pytest.fixture(scope="module", params=["lite", "server"])
def milvus_target(request: Any, tmp_path_factory: Any) -> str:
    """Where the collections live: one milvus-lite file, or the session's Milvus server."""
    if request.param == "lite":
        return str(tmp_path_factory.mktemp("li-milvus") / "milvus.db")
    return str(request.getfixturevalue("milvus_server").uri)


@pytest.fixture(scope="class")
def shared(milvus_target: str) -> Iterator[MilvusCollection]:
    coll = MilvusCollection(milvus_target, collection_name=f"li_{uuid.uuid4().hex[:12]}",
                            dim=DIM)
    try:
        yield coll
    finally:
        if not coll.lite:
            coll.client.drop_collection(coll.collection_name)
        coll.close()


class TestMilvusStore(VectorStoreConformance):
    """Ours on a MilvusCollection (AUTOINDEX)."""

    @pytest.fixture
    def store(self, shared: MilvusCollection) -> Iterator[VecIndexVectorStore]:
        shared.clear()
        yield VecIndexVectorStore(collection=shared)

    @pytest.fixture(autouse=True)
    def _milvus_2_3_has_no_infix_like(self, request: pytest.FixtureRequest,
                                      milvus_target: str) -> None:
        callspec = getattr(request.node, "callspec", None)
        name = None if callspec is None else callspec.params.get("name")
        if not milvus_target.endswith(".db") and name in SUBSTRING_CASES:
            request.applymarker(pytest.mark.xfail(
                raises=NotSupportedError, strict=True,
                reason="Milvus 2.3 evaluates prefix `like` patterns only, and substring "
                       "operators need `like \"%x%\"` (Milvus >= 2.4, milvus-lite)",
            ))


def test_collection_name_makes_a_milvus_store_that_serializes(tmp_path: Any) -> None:
    uri = str(tmp_path / "m.db")
    store = VecIndexVectorStore(uri, collection_name="nodes", index="FLAT", metric="ip")
    assert isinstance(store.client, MilvusCollection)
    store.add(make_nodes())
    data = store.to_dict()
    assert (data["path"], data["collection_name"], data["index"]) == (uri, "nodes", "FLAT")
    store.close()
    again = VecIndexVectorStore.from_dict(data)
    result = again.query(VectorStoreQuery(query_embedding=QUERY, similarity_top_k=2))
    assert result.ids == ["n0", "n1"]
    again.close()


def test_persist_exports_a_sqlite_copy(tmp_path: Any) -> None:
    coll = MilvusCollection(str(tmp_path / "m.db"), collection_name="nodes")
    store = VecIndexVectorStore(collection=coll)
    store.add(make_nodes())
    target = str(tmp_path / "persist" / "vector_store.json")
    store.persist(target)
    loaded = VecIndexVectorStore.from_persist_path(target)
    assert isinstance(loaded.client, Collection)
    query = VectorStoreQuery(query_embedding=QUERY, similarity_top_k=6)
    assert loaded.query(query).ids == store.query(query).ids
    loaded.close()
    store.close()


def test_collection_argument_excludes_settings(tmp_path: Any) -> None:
    coll = MilvusCollection(str(tmp_path / "m.db"), collection_name="nodes")
    with pytest.raises(InvalidArgumentError, match="not both"):
        VecIndexVectorStore(collection=coll, metric="l2")
    with pytest.raises(InvalidArgumentError):
        VecIndexVectorStore(collection={"not": "a collection"})  # type: ignore[arg-type]
    store = VecIndexVectorStore(collection=coll)
    assert (store.path, store.collection_name, store.index) == (
        coll.path, "nodes", "AUTOINDEX")
    store.add([TextNode(id_="x", text="x", embedding=[1.0] * DIM)])
    assert [n.node_id for n in store.get_nodes()] == ["x"]
    coll.close()
