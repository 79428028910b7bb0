"""Reading and writing: the index file format, and streaming sources for ingestion.

:mod:`vecindex_core.io.format` is the one index file format. The streaming readers
(:mod:`~vecindex_core.io.sources`, :mod:`~vecindex_core.io.parquet`,
:mod:`~vecindex_core.io.postgres`) and :func:`~vecindex_core.io.ingest.ingest` are imported on
first use, so the core imports without pyarrow or psycopg.
"""

from __future__ import annotations

from .format import FORMAT_VERSION, MAGIC, read_index, read_index_bytes, write_index

__all__ = ["FORMAT_VERSION", "MAGIC", "read_index", "read_index_bytes", "write_index"]
