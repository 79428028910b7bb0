"""Errors of the vecindex Haystack integration.

Each class subclasses both the Haystack error the framework (and its conformance suite)
expects and the vecindex error the core raises, so callers can catch either family:

- :class:`VecIndexFilterError` is a ``haystack.errors.FilterError`` and a
  ``vecindex_core.FilterError`` (hence ``InvalidArgumentError`` and ``ValueError``);
- :class:`VecIndexDuplicateDocumentError` is a
  ``haystack.document_stores.errors.DuplicateDocumentError`` and a
  ``vecindex_core.DuplicateIdError`` (hence ``ValueError``).
"""

from __future__ import annotations

from haystack.document_stores.errors import DuplicateDocumentError
from haystack.errors import FilterError

from vecindex_core.errors import DuplicateIdError
from vecindex_core.errors import FilterError as CoreFilterError

__all__ = ["VecIndexDuplicateDocumentError", "VecIndexFilterError"]


class VecIndexFilterError(FilterError, CoreFilterError):
    """A filter is malformed or cannot be evaluated (unknown operator, ``>`` on a list...)."""


class VecIndexDuplicateDocumentError(DuplicateDocumentError, DuplicateIdError):
    """A document id repeats in a batch, or is already stored, under ``DuplicatePolicy.FAIL``."""
