"""Third-party backends behind the index contract (faiss, hnswlib, annoy).

Each module registers its kinds when ``vecindex_core`` is imported, but imports its library
only when an index of that kind is created: a missing library raises ``NotSupportedError``
naming the extra to install (``pip install "vecindex[faiss]"``), and only then.
"""

from . import annoy_backend, faiss_backend, hnswlib_backend, milvus_backend

__all__ = ["annoy_backend", "faiss_backend", "hnswlib_backend", "milvus_backend"]
