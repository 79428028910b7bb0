"""Top-level constructors: :func:`create` and :func:`load`."""

from __future__ import annotations

import os
from typing import Any

from .idmap import IdMapIndex
from .registry import resolve_spec
from .types import Metric

__all__ = ["create", "load"]


def create(
    name_or_spec: str, *, dim: int, metric: Metric = "cosine", **params: Any
) -> IdMapIndex:
    """Create an empty index with stable uint64 ids.

    Parameters
    ----------
    name_or_spec : str
        A registered name (``"flat"``) or a spec string (``"ivf_pq(nlist=256,m=48)"``);
        ``vecindex_core.list_indexes()`` lists the names.
    dim : int
        Number of dimensions.
    metric : {"cosine", "ip", "l2"}
    **params
        Parameters of the kind, merged with those of the spec (setting one in both raises).

    Raises
    ------
    UnknownIndexError
        Unknown name; the message lists the registered ones.
    InvalidParameterError
        Unknown, mistyped or out-of-range parameter; the message lists the valid ones.
    """
    kind, merged = resolve_spec(name_or_spec, params)
    return IdMapIndex(kind.cls(dim=dim, metric=metric, **merged))


def load(path: str | os.PathLike[str]) -> IdMapIndex:
    """Load an index written by ``save``; raises ``IndexFormatError`` naming a bad file."""
    return IdMapIndex.load(path)
