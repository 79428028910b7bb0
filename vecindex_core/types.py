"""Shared type aliases, sentinels and the :class:`SearchResult` record."""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "MISSING",
    "METRICS",
    "FloatMatrix",
    "IdArray",
    "Metric",
    "SearchResult",
    "SlotArray",
]

Metric = Literal["cosine", "ip", "l2"]
#: The metrics every index understands, in documentation order.
METRICS: tuple[Metric, ...] = ("cosine", "ip", "l2")

FloatMatrix = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.uint64]
SlotArray = npt.NDArray[np.int64]

#: Reserved uint64 id: pads results and can never be used as a real id.
MISSING: int = 2**64 - 1


class SearchResult(NamedTuple):
    """Fixed-shape search result.

    Attributes
    ----------
    scores : ndarray of float32, shape (nq, k)
        Higher is better. ``l2`` scores are negated squared distances. Padding is ``-inf``.
    ids : ndarray, shape (nq, k)
        int64 slots (padding ``-1``) from a :class:`~vecindex_core.VectorIndex`, or uint64
        ids (padding :data:`MISSING`) from an :class:`~vecindex_core.IdMapIndex`.
    counts : ndarray of int64, shape (nq,)
        Number of real (non-padding) results in each row; real results come first.
    """

    scores: npt.NDArray[np.float32]
    ids: npt.NDArray[np.int64] | IdArray
    counts: npt.NDArray[np.int64]
