"""LangChain's own conformance suite (``VectorStoreIntegrationTests``) on VecIndexVectorStore.

The suite runs twice, every test sync and async, nothing skipped or xfailed:

- ``TestFlatStandard``: the exact ``flat`` index;
- ``TestTurboQuantStandard``: ``turboquant`` (4 bits a coordinate, no kept originals), a
  genuinely approximate index: it needs no training, so it is quantized from the first
  vector on (no exact staging phase), and scores come from the codes. An IVF index would not
  do here: the suite stores at most three documents, far below any IVF's automatic training
  size, so an ``ivf_*`` store would still be searching exactly.

The suite's embeddings are ``DeterministicFakeEmbedding(size=6)``: random unit-free vectors,
so the suite checks behaviour (ids, upserts, deletes, order of an exact self-match), not recall.
Both stores persist to a SQLite file under ``tmp_path`` so the suite also covers that path.

The async tests run under anyio's pytest plugin (``pytestmark``), which leaves sync tests alone.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_tests.integration_tests.vectorstores import VectorStoreIntegrationTests

from langchain_vecindex import VecIndexVectorStore

pytestmark = pytest.mark.anyio

APPROXIMATE_SPEC = "turboquant(bits=4)"


class TestFlatStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path) -> Iterator[VecIndexVectorStore]:
        store = VecIndexVectorStore(self.get_embeddings(), path=tmp_path / "lc.db", index="flat")
        try:
            yield store
        finally:
            store.close()


class TestTurboQuantStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path) -> Iterator[VecIndexVectorStore]:
        store = VecIndexVectorStore(
            self.get_embeddings(), path=tmp_path / "lc.db", index=APPROXIMATE_SPEC
        )
        try:
            yield store
        finally:
            store.close()


def test_approximate_config_is_approximate_from_the_first_vector(tmp_path):
    """The second run's index is trained (quantizing) after one document, not exact staging,
    and its scores are estimates that differ from the exact ones."""
    embeddings = VectorStoreIntegrationTests.get_embeddings()
    texts = ["foo", "bar", "baz", "qux", "quux"]
    approx = VecIndexVectorStore(embeddings, path=tmp_path / "a.db", index=APPROXIMATE_SPEC)
    exact = VecIndexVectorStore(embeddings, path=tmp_path / "e.db", index="flat")
    approx.add_texts(texts[:1], ids=["0"])
    index = approx.collection.index
    assert index is not None
    assert index.is_trained
    assert not index.index.keeps_vectors
    approx.add_texts(texts[1:], ids=[str(i) for i in range(1, len(texts))])
    exact.add_texts(texts, ids=[str(i) for i in range(len(texts))])
    got = {d.id: s for d, s in approx.similarity_search_with_score("foo", k=5)}
    want = {d.id: s for d, s in exact.similarity_search_with_score("foo", k=5)}
    assert got.keys() == want.keys()
    assert max(abs(got[i] - want[i]) for i in want) > 1e-4
    approx.close()
    exact.close()
