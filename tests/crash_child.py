"""Child process for the crash-safety tests: writes acknowledged batches until killed.

Usage: ``python crash_child.py MODE PATH``. MODE is ``collection``, ``langchain`` or
``haystack``. After each write call returns, the child prints ``ack <batch>`` and flushes
stdout; the parent kills it with SIGKILL at a moment of its choosing. Snapshots are forced
often so that a kill also lands inside snapshot writes.
"""

from __future__ import annotations

import sys

import numpy as np

from vecindex_core import collection

DIM = 16
BATCH = 7


def batch_vectors(b: int) -> np.ndarray:
    """The vectors of batch ``b`` (deterministic, so the parent can rebuild them)."""
    return np.random.default_rng(b).standard_normal((BATCH, DIM)).astype(np.float32)


def batch_ids(b: int) -> list[str]:
    return [f"b{b}-{j}" for j in range(BATCH)]


def batch_meta(b: int) -> list[dict]:
    return [{"batch": b, "j": j, "tag": f"t{b % 5}"} for j in range(BATCH)]


def main(mode: str, path: str) -> None:
    collection._SNAPSHOT_MIN_CHANGES = 5 * BATCH  # snapshot every few batches
    write = writer(mode, path)
    b = 0
    while True:
        write(b)
        print(f"ack {b}", flush=True)
        b += 1


def writer(mode: str, path: str):
    if mode == "collection":
        coll = collection.Collection(path, index="turboquant(bits=4)", metric="cosine")
        return lambda b: coll.upsert(
            batch_ids(b), [f"text {i}" for i in batch_ids(b)], batch_vectors(b), batch_meta(b)
        )
    if mode == "langchain":
        from langchain_core.embeddings import Embeddings

        from langchain_vecindex import VecIndexVectorStore

        class Table(Embeddings):
            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                return [vector_of(t) for t in texts]

            def embed_query(self, text: str) -> list[float]:
                return vector_of(text)

        store = VecIndexVectorStore(Table(), path=path, index="turboquant(bits=4)")
        return lambda b: store.add_texts(
            [f"text {i}" for i in batch_ids(b)], metadatas=batch_meta(b), ids=batch_ids(b)
        )
    if mode == "haystack":
        from haystack import Document

        from haystack_integrations.document_stores.vecindex import VecIndexDocumentStore

        ds = VecIndexDocumentStore(path=path, index="turboquant(bits=4)")
        return lambda b: ds.write_documents(
            [
                Document(id=i, content=f"text {i}", meta=m, embedding=v.tolist())
                for i, m, v in zip(batch_ids(b), batch_meta(b), batch_vectors(b), strict=True)
            ]
        )
    raise SystemExit(f"unknown mode {mode!r}")


def vector_of(text: str) -> list[float]:
    """Embedding of ``text {b}-{j}``: row j of batch b."""
    b, j = text.removeprefix("text b").split("-")
    return batch_vectors(int(b))[int(j)].tolist()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
