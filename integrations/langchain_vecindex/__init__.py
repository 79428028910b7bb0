"""LangChain integration of vecindex: :class:`VecIndexVectorStore`.

.. code-block:: python

    from langchain_vecindex import VecIndexVectorStore

    store = VecIndexVectorStore(embeddings, path="docs.db", index="turboquant")
    store.add_texts(["foo", "bar"], metadatas=[{"year": 2023}, {"year": 2024}])
    store.similarity_search("foo", k=1, filter={"year": {"$gte": 2024}})
"""

from __future__ import annotations

from .vectorstores import VecIndexVectorStore

__all__ = ["VecIndexVectorStore"]
