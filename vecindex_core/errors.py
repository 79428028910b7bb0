"""One exception tree for vecindex.

Every error raised on purpose by vecindex descends from :class:`VecIndexError` and also
from the builtin exception it resembles, so ``except ValueError`` keeps working for
callers that do not know our types.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "DimensionMismatchError",
    "DuplicateIdError",
    "EmptyInputError",
    "FilterError",
    "IndexFormatError",
    "InvalidArgumentError",
    "InvalidDtypeError",
    "InvalidParameterError",
    "NonFiniteError",
    "NotSupportedError",
    "NotTrainedError",
    "ServiceUnavailableError",
    "UnknownIdError",
    "UnknownIndexError",
    "VecIndexError",
]


class VecIndexError(Exception):
    """Base class of every vecindex error."""


class InvalidArgumentError(VecIndexError, ValueError):
    """A value is out of range or malformed (wrong rank, bad ``k``, bad mask length...)."""


class InvalidDtypeError(VecIndexError, TypeError):
    """An input has a type or dtype that cannot be used (strings, complex, object...)."""


class DimensionMismatchError(InvalidArgumentError):
    """Vectors have a different number of dimensions than the index."""


class NonFiniteError(InvalidArgumentError):
    """An input contains NaN or infinity."""


class EmptyInputError(InvalidArgumentError):
    """A batch has no rows where at least one is required."""


class DuplicateIdError(InvalidArgumentError):
    """An id repeats inside a batch or is already present in the index."""


class UnknownIdError(VecIndexError, KeyError):
    """An id is not present in the index."""

    def __str__(self) -> str:  # KeyError quotes its message; keep ours readable
        return str(self.args[0]) if self.args else ""


class InvalidParameterError(InvalidArgumentError):
    """An index or search parameter is unknown, of the wrong type, or out of range."""


class UnknownIndexError(InvalidArgumentError):
    """An index name is not in the registry."""


class NotTrainedError(VecIndexError, RuntimeError):
    """The index must be trained before this operation."""


class NotSupportedError(VecIndexError, NotImplementedError):
    """The index kind does not support this operation (for example ``get_vectors``)."""


class IndexFormatError(InvalidArgumentError):
    """An index file is truncated, corrupt, of a newer format version, or not ours."""


class FilterError(InvalidArgumentError):
    """A metadata filter is malformed: unknown operator or field, or a value of the wrong type."""


class BackendError(VecIndexError, RuntimeError):
    """A third-party backend failed; the original exception is chained as ``__cause__``."""


class ServiceUnavailableError(BackendError, ConnectionError):
    """A server (Milvus, Redis, PostgreSQL) cannot be reached or dropped the connection.

    Nothing was changed by the failed call unless its message says otherwise; retry once the
    server is back.
    """
