"""Haystack 2.x DocumentStore backed by vecindex (any registered index, embedded, persistent)."""

from .document_store import VecIndexDocumentStore
from .errors import VecIndexDuplicateDocumentError, VecIndexFilterError

__all__ = ["VecIndexDocumentStore", "VecIndexDuplicateDocumentError", "VecIndexFilterError"]
