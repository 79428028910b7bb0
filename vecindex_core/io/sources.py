"""The streaming-source contract shared by every ingestion reader.

A source yields :class:`Batch` es of at most ``batch_size`` rows, in a stable order, and can
restart after any batch it yielded: :meth:`Source.batches` takes the ``position`` of the last
batch that was committed and continues with the row after it. Positions are small
JSON-serialisable values (a row number, a key value) that ingestion stores in its checkpoint.
Memory stays bounded by one batch whatever the size of the source.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Batch", "Source", "follows_appends"]

JSONValue = Any


@dataclass(frozen=True)
class Batch:
    """One slice of a source.

    Attributes
    ----------
    start : int
        Row number (0-based, in the source's order) of the first row of this batch.
    vectors : ndarray of float32, shape (n, dim)
        C-contiguous.
    ids : ndarray of uint64, shape (n,), or None
        The source's id column when it has one; None means "use the row numbers"
        (``start .. start + n - 1``).
    texts : list of (str or None), or None
        A text column, when the source was given one.
    metadatas : list of (dict or None), or None
        Metadata columns, when the source was given some.
    position : JSON value
        Where to resume after this batch (passed back as ``Source.batches(resume=...)``).
    """

    start: int
    vectors: np.ndarray
    ids: np.ndarray | None = None
    texts: list[str | None] | None = None
    metadatas: list[dict[str, Any] | None] | None = None
    position: JSONValue = None

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


@runtime_checkable
class Source(Protocol):
    """What :func:`vecindex_core.io.ingest.ingest` reads from."""

    @property
    def dim(self) -> int:
        """Vector length (read from the schema or the first row without reading the rest)."""
        ...

    def count(self) -> int | None:
        """Number of rows, when it is cheap to know (for the progress bar); else None."""
        ...

    def identity(self) -> Mapping[str, JSONValue]:
        """A JSON-serialisable description of what is read (kind, path or table, columns).

        A checkpoint records it; resuming from a checkpoint whose identity differs raises.
        """
        ...

    def batches(self, batch_size: int, resume: JSONValue = None) -> Iterator[Batch]:
        """Yield the rows in order, starting after ``resume`` (a ``Batch.position``)."""
        ...


def follows_appends(source: Source) -> bool:
    """Whether ``source``'s last position stays valid when rows are added later.

    A source sets the optional attribute ``follows_appends = True`` when it reads in an
    order that new rows extend (a table read in key order: rows with larger keys come
    after every position already given). Ingestion then reads past the end of a finished
    run instead of reporting it done, so a rerun picks up the new rows.
    """
    return bool(getattr(source, "follows_appends", False))
