"""vecindex core: many vector indexes behind one contract, with stable uint64 ids.

Quick start::

    import numpy as np, vecindex_core as vc
    index = vc.create("flat", dim=384, metric="cosine")
    ids = index.add(np.random.rand(1000, 384).astype("float32"))
    result = index.search(np.random.rand(384), k=10)   # scores, ids, counts
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import backends, datasets, errors, lsh_tuning, redis_lsh, registry
from ._native import show_config
from ._threads import get_num_threads, set_num_threads
from .api import create, load
from .base import Moves, VectorIndex
from .collection import Collection, Hit, Record
from .documents import BaseCollection
from .errors import (
    BackendError,
    DimensionMismatchError,
    DuplicateIdError,
    EmptyInputError,
    FilterError,
    IndexFormatError,
    InvalidArgumentError,
    InvalidDtypeError,
    InvalidParameterError,
    NonFiniteError,
    NotSupportedError,
    NotTrainedError,
    ServiceUnavailableError,
    UnknownIdError,
    UnknownIndexError,
    VecIndexError,
)
from .flat import FlatIndex
from .hashing import ITQIndex, LSHIndex, PCAHashIndex, SimHashIndex
from .idmap import IdMapIndex
from .ivf import IVFAEIndex, IVFFlatIndex
from .kmeans import KMeans
from .pq import IVFPQIndex, PQIndex, ProductQuantizer
from .registry import get_kind, list_indexes
from .turboquant import IVFTQIndex, TurboQuantIndex
from .types import METRICS, MISSING, FloatMatrix, IdArray, Metric, SearchResult

if TYPE_CHECKING:  # imported lazily (see __getattr__): pymilvus stays optional
    from .milvus.collection import MilvusCollection

__version__ = "0.1.0"

__all__ = [
    "METRICS",
    "MISSING",
    "MilvusCollection",
    "BackendError",
    "BaseCollection",
    "Collection",
    "DimensionMismatchError",
    "DuplicateIdError",
    "EmptyInputError",
    "FilterError",
    "FlatIndex",
    "Hit",
    "ITQIndex",
    "IVFAEIndex",
    "IVFFlatIndex",
    "IVFPQIndex",
    "IVFTQIndex",
    "FloatMatrix",
    "IdArray",
    "IdMapIndex",
    "IndexFormatError",
    "InvalidArgumentError",
    "InvalidDtypeError",
    "InvalidParameterError",
    "KMeans",
    "LSHIndex",
    "Metric",
    "Moves",
    "NonFiniteError",
    "NotSupportedError",
    "NotTrainedError",
    "PCAHashIndex",
    "PQIndex",
    "ProductQuantizer",
    "Record",
    "SearchResult",
    "ServiceUnavailableError",
    "SimHashIndex",
    "TurboQuantIndex",
    "UnknownIdError",
    "UnknownIndexError",
    "VecIndexError",
    "VectorIndex",
    "__version__",
    "backends",
    "create",
    "datasets",
    "errors",
    "get_kind",
    "get_num_threads",
    "list_indexes",
    "load",
    "lsh_tuning",
    "redis_lsh",
    "registry",
    "set_num_threads",
    "show_config",
]


def __getattr__(name: str) -> object:
    # MilvusCollection is imported on first use, so the core imports without pymilvus.
    if name == "MilvusCollection":
        from .milvus.collection import MilvusCollection

        return MilvusCollection
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
