"""Reading and writing: the index file format, and streaming sources for ingestion.

:mod:`vecindex_core.io.format` is the one index file format. The streaming readers
(:class:`NumpySource`, :class:`ParquetSource`, :class:`PostgresSource`, all implementing
:class:`Source`) and :func:`ingest` are imported on first use, so the core imports without
pyarrow or psycopg::

    from vecindex_core.io import ParquetSource, ingest

    ingest(ParquetSource("vectors/", vector_column="embedding"), "index.vecidx",
           index="turboquant(bits=4)", metric="cosine")
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .format import FORMAT_VERSION, MAGIC, read_index, read_index_bytes, write_index

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "Batch",
    "IngestResult",
    "NumpySource",
    "ParquetSource",
    "PostgresSource",
    "Source",
    "ingest",
    "read_index",
    "read_index_bytes",
    "write_index",
]

_LAZY = {
    "Batch": "sources",
    "Source": "sources",
    "IngestResult": "ingest",
    "ingest": "ingest",
    "NumpySource": "numpy_source",
    "ParquetSource": "parquet",
    "PostgresSource": "postgres",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
