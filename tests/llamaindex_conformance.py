"""A reusable conformance suite for LlamaIndex vector stores, written to SimpleVectorStore.

LlamaIndex ships no vector-store test suite, so this one pins ``SimpleVectorStore``'s
behaviour (the reference every LlamaIndex store imitates) and runs unchanged against it and
against ours. Use it by subclassing and overriding the ``store`` fixture (it yields an empty
store that keeps cosine similarity)::

    class TestMyStore(VectorStoreConformance):
        @pytest.fixture
        def store(self, tmp_path):
            yield MyStore(...)

Where SimpleVectorStore's behaviour is not sensible (or it raises), a class attribute below
names the divergence and the test asserts what SimpleVectorStore does, so every difference
is documented by a passing test rather than skipped:

==================================  =============================  ==========================
attribute                           sensible (default)             SimpleVectorStore
==================================  =============================  ==========================
``returns_nodes``                   query returns nodes;           ids only; get_nodes raises
                                    get_nodes works                NotImplementedError
``nested_filters``                  supported                      ValueError
``honours_doc_ids``                 ``doc_ids`` restricts          ignored
``empty_node_ids_mean_all``         ``node_ids=[]``: no limit      matches nothing
``honours_query_mmr_threshold``     ``query.mmr_threshold`` used   only the kwarg is read
``mmr_scores``                      "similarity" to the query      "objective" (MMR score)
``delete_nodes_needs_arguments``    ``delete_nodes()`` raises      deletes every node
``add_is_atomic``                   bad batch writes nothing       earlier nodes are written
==================================  =============================  ==========================

``score_atol`` is the tolerance on similarities (loosen it for approximate indexes).
The data is built so that every ranking has margins of at least 0.09 in cosine similarity.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pytest
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.storage.storage_context import StorageContext
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)

__all__ = ["DIM", "BagOfWordsEmbedding", "VectorStoreConformance", "make_nodes", "unit"]

DIM = 8
ANGLES_DEG = (0, 15, 30, 45, 60, 75)  # node i has cosine cos(ANGLES_DEG[i]) to QUERY
QUERY = [1.0] + [0.0] * (DIM - 1)

# id -> (text, metadata, ref doc). Missing keys are deliberate (filters must treat them).
DATA: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "n0": ("apple pie", {"author": "alice", "year": 2019, "rating": 4.5,
                         "tags": ["food", "sweet"], "title": "Apple Pie"}, "d0"),
    "n1": ("banana bread", {"author": "bob", "year": 2020, "rating": 3.0,
                            "tags": ["food"], "title": "Banana Bread"}, "d0"),
    "n2": ("cherry cola", {"author": "carol", "year": 2021, "rating": 5.0,
                           "tags": ["drink"], "title": "Cherry Cola"}, "d1"),
    "n3": ("apple crumble", {"author": "alice", "year": 2022, "tags": [],
                             "title": "apple crumble"}, "d1"),
    "n4": ("date loaf", {"author": "dave", "year": 2023, "rating": 2.0, "title": ""}, "d2"),
    "n5": ("eggnog", {"year": 2024, "rating": 1.0, "tags": ["sweet", "drink"],
                      "title": "Eggnog"}, None),
}
ALL_IDS = list(DATA)


def unit(i: int, angle_deg: float) -> list[float]:
    """``cos(a) e0 + sin(a) e_{i+1}``: cosine ``cos(a)`` to QUERY, distinct per ``i``."""
    v = [0.0] * DIM
    a = math.radians(angle_deg)
    v[0] = math.cos(a)
    v[i + 1] = math.sin(a)
    return v


def make_nodes() -> list[TextNode]:
    """Six nodes, best first for QUERY, with metadata and source documents."""
    nodes = []
    for i, (node_id, (text, meta, ref)) in enumerate(DATA.items()):
        rel = {} if ref is None else {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=ref)}
        nodes.append(TextNode(id_=node_id, text=text, metadata=dict(meta),
                              embedding=unit(i, ANGLES_DEG[i]), relationships=rel))
    return nodes


def _f(key: str, value: Any, op: FilterOperator = FilterOperator.EQ) -> MetadataFilter:
    return MetadataFilter(key=key, value=value, operator=op)


def _fs(*filters: Any, condition: FilterCondition = FilterCondition.AND) -> MetadataFilters:
    return MetadataFilters(filters=list(filters), condition=condition)


Op = FilterOperator
# (name, filters, expected ids in rank order): every operator and condition
FILTER_CASES: list[tuple[str, MetadataFilters, list[str]]] = [
    ("eq", _fs(_f("author", "alice")), ["n0", "n3"]),
    ("eq_float", _fs(_f("rating", 4.5)), ["n0"]),
    ("eq_doc_id", _fs(_f("doc_id", "d1")), ["n2", "n3"]),
    ("ne_missing_matches", _fs(_f("author", "alice", Op.NE)), ["n1", "n2", "n4", "n5"]),
    ("gt", _fs(_f("year", 2021, Op.GT)), ["n3", "n4", "n5"]),
    ("gte", _fs(_f("year", 2021, Op.GTE)), ["n2", "n3", "n4", "n5"]),
    ("lt_missing_fails", _fs(_f("rating", 3.0, Op.LT)), ["n4", "n5"]),
    ("lte", _fs(_f("rating", 3.0, Op.LTE)), ["n1", "n4", "n5"]),
    ("in", _fs(_f("author", ["alice", "bob"], Op.IN)), ["n0", "n1", "n3"]),
    ("nin", _fs(_f("author", ["alice", "bob"], Op.NIN)), ["n2", "n4", "n5"]),
    ("any", _fs(_f("tags", ["sweet", "drink"], Op.ANY)), ["n0", "n2", "n5"]),
    ("all", _fs(_f("tags", ["sweet", "drink"], Op.ALL)), ["n5"]),
    ("all_one", _fs(_f("tags", ["food"], Op.ALL)), ["n0", "n1"]),
    ("text_match", _fs(_f("title", "Apple", Op.TEXT_MATCH)), ["n0"]),
    ("text_match_insensitive", _fs(_f("title", "apple", Op.TEXT_MATCH_INSENSITIVE)),
     ["n0", "n3"]),
    ("contains", _fs(_f("tags", "food", Op.CONTAINS)), ["n0", "n1"]),
    ("is_empty_list_or_missing", _fs(_f("tags", None, Op.IS_EMPTY)), ["n3", "n4"]),
    ("is_empty_string", _fs(_f("title", None, Op.IS_EMPTY)), ["n4"]),
    ("and", _fs(_f("author", "alice"), _f("year", 2020, Op.GT)), ["n3"]),
    ("or", _fs(_f("author", "bob"), _f("year", 2023, Op.GTE), condition=FilterCondition.OR),
     ["n1", "n4", "n5"]),
    ("not_one", _fs(_f("author", "alice"), condition=FilterCondition.NOT),
     ["n1", "n2", "n4", "n5"]),
    ("not_is_none_of", _fs(_f("author", "alice"), _f("year", 2022, Op.GT),
                           condition=FilterCondition.NOT), ["n1", "n2"]),
    ("empty_filters", _fs(), ALL_IDS),
    ("empty_filters_not", _fs(condition=FilterCondition.NOT), ALL_IDS),
]
NESTED_CASES: list[tuple[str, MetadataFilters, list[str]]] = [
    ("and_of_or_and_not", _fs(
        _fs(_f("author", "alice"), _f("author", "bob"), condition=FilterCondition.OR),
        _fs(_f("tags", "food", Op.CONTAINS), condition=FilterCondition.NOT),
    ), ["n3"]),
    ("or_of_ands", _fs(
        _fs(_f("author", "alice"), _f("year", 2020, Op.LT)),
        _fs(_f("rating", 2.0, Op.LTE), _f("tags", ["drink"], Op.ANY)),
        condition=FilterCondition.OR,
    ), ["n0", "n5"]),
    ("three_levels", _fs(
        _f("year", 2019, Op.GT),
        _fs(_fs(_f("doc_id", "d1")), _f("author", "dave"), condition=FilterCondition.OR),
    ), ["n2", "n3", "n4"]),
]

# MMR: q = e0; "a" and "a_dup" are near duplicates, "b" is less relevant but different.
MMR_DATA = {
    "a": [0.95, 0.312, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    "a_dup": [0.94, 0.341, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    "b": [0.8, -0.6, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
}


def _cos(a: Sequence[float], b: Sequence[float]) -> float:
    a_, b_ = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a_ @ b_ / (np.linalg.norm(a_) * np.linalg.norm(b_)))


class BagOfWordsEmbedding(BaseEmbedding):
    """Deterministic offline embedding: hashed bag of lower-case words, L2-normalised.

    Texts sharing words have positive cosine similarity; no network, no model.
    """

    dim: int = 64

    @classmethod
    def class_name(cls) -> str:
        return "BagOfWordsEmbedding"

    def _embed(self, text: str) -> list[float]:
        v = np.zeros(self.dim)
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            v[h % self.dim] += 1.0
        if not v.any():
            v[0] = 1.0
        return (v / np.linalg.norm(v)).tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed(text)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._embed(query)


class VectorStoreConformance:
    """SimpleVectorStore's behaviour, as tests. Override ``store``; see the module docs."""

    returns_nodes: ClassVar[bool] = True
    nested_filters: ClassVar[bool] = True
    honours_doc_ids: ClassVar[bool] = True
    empty_node_ids_mean_all: ClassVar[bool] = True
    honours_query_mmr_threshold: ClassVar[bool] = True
    mmr_scores: ClassVar[str] = "similarity"
    delete_nodes_needs_arguments: ClassVar[bool] = True
    add_is_atomic: ClassVar[bool] = True
    score_atol: ClassVar[float] = 1e-5

    @pytest.fixture
    def store(self) -> BasePydanticVectorStore:
        raise NotImplementedError("override the `store` fixture to yield an empty store")

    @pytest.fixture
    def filled(self, store: BasePydanticVectorStore) -> BasePydanticVectorStore:
        assert store.add(make_nodes()) == ALL_IDS
        return store

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def query(store: BasePydanticVectorStore, k: int = 10, embedding: Sequence[float] = QUERY,
              **kwargs: Any) -> VectorStoreQueryResult:
        extra = {key: kwargs.pop(key) for key in ("mmr_threshold_kwarg",) if key in kwargs}
        q = VectorStoreQuery(query_embedding=list(embedding), similarity_top_k=k, **kwargs)
        if "mmr_threshold_kwarg" in extra:
            return store.query(q, mmr_threshold=extra["mmr_threshold_kwarg"])
        return store.query(q)

    def ids(self, result: VectorStoreQueryResult) -> list[str]:
        ids = list(result.ids or [])
        if self.returns_nodes:
            assert result.nodes is not None
            assert [n.node_id for n in result.nodes] == ids
        return ids

    def all_ids(self, store: BasePydanticVectorStore) -> list[str]:
        return self.ids(self.query(store, k=100))

    @staticmethod
    def expected_similarity(node_id: str) -> float:
        return math.cos(math.radians(ANGLES_DEG[ALL_IDS.index(node_id)]))

    # ---------------------------------------------------------------- add / query
    def test_empty_store_query(self, store: BasePydanticVectorStore) -> None:
        result = self.query(store, k=3)
        assert self.ids(result) == []
        assert list(result.similarities or []) == []

    def test_add_returns_ids_and_empty_batch(self, store: BasePydanticVectorStore) -> None:
        assert store.add([]) == []
        assert store.add(make_nodes()[:2]) == ["n0", "n1"]

    def test_topk_order_and_similarities(self, filled: BasePydanticVectorStore) -> None:
        for k in (1, 3, 6, 10):
            result = self.query(filled, k=k)
            assert self.ids(result) == ALL_IDS[:k]
            expected = [self.expected_similarity(i) for i in ALL_IDS[:k]]
            np.testing.assert_allclose(result.similarities, expected, atol=self.score_atol)

    def test_similarities_are_cosine(self, filled: BasePydanticVectorStore) -> None:
        probe = [0.3, -0.2, 0.9, 0.1, 0.0, 0.4, -0.5, 0.2]  # not unit-norm on purpose
        by_id = {n.node_id: n.get_embedding() for n in make_nodes()}
        result = self.query(filled, k=6, embedding=probe)
        want = sorted(ALL_IDS, key=lambda i: -_cos(probe, by_id[i]))
        got_sims = list(result.similarities or [])
        np.testing.assert_allclose(got_sims, [_cos(probe, by_id[i]) for i in self.ids(result)],
                                   atol=self.score_atol)
        assert got_sims == sorted(got_sims, reverse=True)
        assert set(self.ids(result)) == set(want)

    def test_nodes_round_trip(self, filled: BasePydanticVectorStore) -> None:
        result = self.query(filled, k=6)
        if not self.returns_nodes:
            assert result.nodes is None
            return
        originals = {n.node_id: n for n in make_nodes()}
        for node in result.nodes or []:
            want = originals[node.node_id]
            assert node.get_content() == want.get_content()
            assert node.metadata == want.metadata
            assert node.ref_doc_id == want.ref_doc_id
            assert node.relationships == want.relationships

    def test_add_same_id_replaces(self, filled: BasePydanticVectorStore) -> None:
        spare = [0.0] * (DIM - 1) + [1.0]  # orthogonal to every other node
        filled.add([TextNode(id_="n5", text="eggnog v2", metadata={"year": 2025},
                             embedding=spare)])
        result = self.query(filled, k=1, embedding=spare)
        assert self.ids(result) == ["n5"]
        np.testing.assert_allclose(result.similarities, [1.0], atol=self.score_atol)
        assert self.all_ids(filled).count("n5") == 1
        assert len(self.all_ids(filled)) == len(ALL_IDS)
        if self.returns_nodes:
            assert result.nodes is not None
            assert result.nodes[0].get_content() == "eggnog v2"
            assert result.nodes[0].metadata == {"year": 2025}

    def test_bad_batch(self, filled: BasePydanticVectorStore) -> None:
        good = TextNode(id_="new", text="new", embedding=unit(0, 10))
        no_embedding = TextNode(id_="bad", text="no embedding")
        with pytest.raises(ValueError):
            filled.add([good, no_embedding])
        if self.add_is_atomic:
            assert self.all_ids(filled) == ALL_IDS
        else:  # SimpleVectorStore writes the nodes before the bad one
            assert "new" in self.all_ids(filled)

    # ---------------------------------------------------------------- filters
    @pytest.mark.parametrize(("name", "filters", "expected"), FILTER_CASES,
                             ids=[c[0] for c in FILTER_CASES])
    def test_filter(self, filled: BasePydanticVectorStore, name: str,
                    filters: MetadataFilters, expected: list[str]) -> None:
        result = self.query(filled, k=10, filters=filters)
        assert self.ids(result) == expected, name

    def test_filter_respects_k(self, filled: BasePydanticVectorStore) -> None:
        filters = _fs(_f("year", 2020, Op.GT))
        assert self.ids(self.query(filled, k=2, filters=filters)) == ["n2", "n3"]

    @pytest.mark.parametrize(("name", "filters", "expected"), NESTED_CASES,
                             ids=[c[0] for c in NESTED_CASES])
    def test_nested_filter(self, filled: BasePydanticVectorStore, name: str,
                           filters: MetadataFilters, expected: list[str]) -> None:
        if not self.nested_filters:
            with pytest.raises(ValueError, match="Nested"):
                self.query(filled, filters=filters)
            return
        assert self.ids(self.query(filled, filters=filters)) == expected, name

    # ---------------------------------------------------------------- id restrictions
    def test_node_ids(self, filled: BasePydanticVectorStore) -> None:
        assert self.ids(self.query(filled, node_ids=["n4", "n1", "zz"])) == ["n1", "n4"]
        filters = _fs(_f("author", "bob", Op.NE))
        assert self.ids(self.query(filled, node_ids=["n1", "n4"], filters=filters)) == ["n4"]

    def test_node_ids_empty_list(self, filled: BasePydanticVectorStore) -> None:
        got = self.ids(self.query(filled, node_ids=[]))
        assert got == (ALL_IDS if self.empty_node_ids_mean_all else [])

    def test_doc_ids(self, filled: BasePydanticVectorStore) -> None:
        got = self.ids(self.query(filled, doc_ids=["d1", "d2"]))
        assert got == (["n2", "n3", "n4"] if self.honours_doc_ids else ALL_IDS)
        filters = _fs(_f("author", "alice"))
        got = self.ids(self.query(filled, doc_ids=["d1"], filters=filters))
        assert got == (["n3"] if self.honours_doc_ids else ["n0", "n3"])

    def test_doc_ids_empty_list_is_unrestricted(self, filled: BasePydanticVectorStore) -> None:
        assert self.ids(self.query(filled, doc_ids=[])) == ALL_IDS

    # ---------------------------------------------------------------- deletes
    def test_delete_ref_doc(self, filled: BasePydanticVectorStore) -> None:
        filled.delete("d0")
        assert self.all_ids(filled) == ["n2", "n3", "n4", "n5"]
        filled.delete("unknown-doc")
        assert self.all_ids(filled) == ["n2", "n3", "n4", "n5"]

    def test_delete_nodes_by_id(self, filled: BasePydanticVectorStore) -> None:
        filled.delete_nodes(node_ids=["n0", "n2", "missing"])
        assert self.all_ids(filled) == ["n1", "n3", "n4", "n5"]
        filled.delete_nodes(node_ids=[])
        assert self.all_ids(filled) == ["n1", "n3", "n4", "n5"]

    def test_delete_nodes_by_filter(self, filled: BasePydanticVectorStore) -> None:
        filled.delete_nodes(filters=_fs(_f("author", "alice")))
        assert self.all_ids(filled) == ["n1", "n2", "n4", "n5"]

    def test_delete_nodes_by_id_and_filter(self, filled: BasePydanticVectorStore) -> None:
        filled.delete_nodes(node_ids=["n0", "n1"], filters=_fs(_f("author", "alice")))
        assert self.all_ids(filled) == ["n1", "n2", "n3", "n4", "n5"]

    def test_delete_nodes_without_arguments(self, filled: BasePydanticVectorStore) -> None:
        if self.delete_nodes_needs_arguments:
            with pytest.raises(ValueError, match="clear"):
                filled.delete_nodes()
            assert self.all_ids(filled) == ALL_IDS
        else:  # SimpleVectorStore: no arguments deletes every node
            filled.delete_nodes()
            assert self.all_ids(filled) == []

    def test_clear(self, filled: BasePydanticVectorStore) -> None:
        filled.clear()
        assert self.all_ids(filled) == []
        filled.add(make_nodes()[:1])
        assert self.all_ids(filled) == ["n0"]

    # ---------------------------------------------------------------- get_nodes
    def test_get_nodes(self, filled: BasePydanticVectorStore) -> None:
        if not self.returns_nodes:
            with pytest.raises(NotImplementedError):
                filled.get_nodes(node_ids=["n0"])
            return
        originals = {n.node_id: n for n in make_nodes()}
        got = filled.get_nodes(node_ids=["n2", "n0", "missing"])
        assert [n.node_id for n in got] == ["n2", "n0"]
        for node in got:
            assert node.get_content() == originals[node.node_id].get_content()
            assert node.metadata == originals[node.node_id].metadata
            assert node.ref_doc_id == originals[node.node_id].ref_doc_id
        assert [n.node_id for n in filled.get_nodes()] == ALL_IDS
        got = filled.get_nodes(filters=_fs(_f("author", "alice")))
        assert [n.node_id for n in got] == ["n0", "n3"]
        got = filled.get_nodes(node_ids=["n3", "n1", "n0"], filters=_fs(_f("author", "alice")))
        assert [n.node_id for n in got] == ["n3", "n0"]
        assert filled.get_nodes(node_ids=[]) == []

    # ---------------------------------------------------------------- MMR
    def _mmr_store(self, store: BasePydanticVectorStore) -> BasePydanticVectorStore:
        store.add([TextNode(id_=i, text=i, embedding=v) for i, v in MMR_DATA.items()])
        return store

    def test_mmr_diversifies(self, store: BasePydanticVectorStore) -> None:
        self._mmr_store(store)
        assert self.ids(self.query(store, k=2)) == ["a", "a_dup"]
        result = self.query(store, k=2, mode=VectorStoreQueryMode.MMR, mmr_threshold_kwarg=0.5)
        assert self.ids(result) == ["a", "b"]
        sims = list(result.similarities or [])
        if self.mmr_scores == "similarity":
            np.testing.assert_allclose(sims, [_cos(QUERY, MMR_DATA[i]) for i in ("a", "b")],
                                       atol=self.score_atol)
        else:  # SimpleVectorStore reports the MMR objective: lambda * sim for the first hit
            assert sims[0] == pytest.approx(0.5 * _cos(QUERY, MMR_DATA["a"]), abs=1e-6)
        # lambda = 1 is plain relevance
        result = self.query(store, k=2, mode=VectorStoreQueryMode.MMR, mmr_threshold_kwarg=1.0)
        assert self.ids(result) == ["a", "a_dup"]

    def test_mmr_default_threshold_and_k(self, store: BasePydanticVectorStore) -> None:
        self._mmr_store(store)
        result = self.query(store, k=3, mode=VectorStoreQueryMode.MMR)
        assert self.ids(result) == ["a", "b", "a_dup"]
        result = self.query(store, k=10, mode=VectorStoreQueryMode.MMR)
        assert len(self.ids(result)) == 3

    def test_mmr_query_threshold_field(self, store: BasePydanticVectorStore) -> None:
        self._mmr_store(store)
        result = self.query(store, k=2, mode=VectorStoreQueryMode.MMR, mmr_threshold=1.0)
        # honoured: lambda 1 is relevance order; ignored: the default 0.5 diversifies
        want = ["a", "a_dup"] if self.honours_query_mmr_threshold else ["a", "b"]
        assert self.ids(result) == want

    def test_mmr_with_filter(self, store: BasePydanticVectorStore) -> None:
        self._mmr_store(store)
        filters = _fs(_f("doc_id", "None"))  # every node here has no source document
        result = self.query(store, k=2, mode=VectorStoreQueryMode.MMR, filters=filters,
                            node_ids=["a_dup", "b"])
        assert self.ids(result) == ["a_dup", "b"]

    # ---------------------------------------------------------------- async
    def test_async_variants(self, store: BasePydanticVectorStore) -> None:
        async def scenario() -> None:
            assert await store.async_add(make_nodes()) == ALL_IDS
            q = VectorStoreQuery(query_embedding=QUERY, similarity_top_k=2)
            assert self.ids(await store.aquery(q)) == ["n0", "n1"]
            await store.adelete("d0")
            assert self.all_ids(store) == ["n2", "n3", "n4", "n5"]
            await store.adelete_nodes(node_ids=["n2"])
            await store.adelete_nodes(filters=_fs(_f("author", "dave")))
            assert self.all_ids(store) == ["n3", "n5"]
            if self.returns_nodes:
                got = await store.aget_nodes(node_ids=["n5"])
                assert [n.node_id for n in got] == ["n5"]
            else:
                with pytest.raises(NotImplementedError):
                    await store.aget_nodes(node_ids=["n5"])
            await store.aclear()
            assert self.all_ids(store) == []

        asyncio.run(scenario())

    # ---------------------------------------------------------------- persistence
    def test_persist_round_trip(self, filled: BasePydanticVectorStore, tmp_path: Any) -> None:
        path = str(tmp_path / "nested" / "vector_store.json")
        filled.persist(persist_path=path)
        loaded = type(filled).from_persist_path(path)
        before = self.query(filled, k=6, filters=_fs(_f("year", 2020, Op.GT)))
        after = self.query(loaded, k=6, filters=_fs(_f("year", 2020, Op.GT)))
        assert self.ids(after) == self.ids(before) == ["n2", "n3", "n4", "n5"]
        np.testing.assert_allclose(after.similarities, before.similarities, atol=1e-6)
        loaded.delete("d1")  # the loaded store is a working store
        assert self.all_ids(loaded) == ["n0", "n1", "n4", "n5"]
        _close(loaded)

    def test_persist_twice_replaces(self, filled: BasePydanticVectorStore, tmp_path: Any) -> None:
        path = str(tmp_path / "vector_store.json")
        filled.persist(persist_path=path)
        filled.delete("d0")
        filled.persist(persist_path=path)
        loaded = type(filled).from_persist_path(path)
        assert self.all_ids(loaded) == ["n2", "n3", "n4", "n5"]
        _close(loaded)

    def test_storage_context_persist_dir(self, filled: BasePydanticVectorStore,
                                         tmp_path: Any) -> None:
        StorageContext.from_defaults(vector_store=filled).persist(persist_dir=str(tmp_path))
        loaded = type(filled).from_persist_dir(str(tmp_path))
        assert self.all_ids(loaded) == ALL_IDS
        _close(loaded)

    def test_from_persist_path_missing(self, store: BasePydanticVectorStore,
                                       tmp_path: Any) -> None:
        with pytest.raises(ValueError):
            type(store).from_persist_path(str(tmp_path / "nothing_here.json"))


def _close(store: BasePydanticVectorStore) -> None:
    close = getattr(store, "close", None)
    if callable(close):
        close()
