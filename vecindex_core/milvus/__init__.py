"""Milvus support: the shared connection layer (:mod:`vecindex_core.milvus.client`).

The ``milvus`` index kind lives in :mod:`vecindex_core.backends.milvus_backend`. pymilvus is
imported only when Milvus is used.
"""

from .client import (
    INDEX_TYPES,
    METRIC_TYPES,
    check_index,
    connect,
    create_collection,
    disconnect,
    flush,
    ids_to_pks,
    import_pymilvus,
    index_params,
    is_lite,
    pk_filter,
    pks_to_ids,
    scores_from_distances,
    search_params,
    translate_errors,
)
from .collection import MilvusCollection

__all__ = [
    "INDEX_TYPES",
    "METRIC_TYPES",
    "MilvusCollection",
    "check_index",
    "connect",
    "create_collection",
    "disconnect",
    "flush",
    "ids_to_pks",
    "import_pymilvus",
    "index_params",
    "is_lite",
    "pk_filter",
    "pks_to_ids",
    "scores_from_distances",
    "search_params",
    "translate_errors",
]
