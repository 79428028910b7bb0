"""Input validation used at every public boundary.

Each function takes what a user may pass (numpy arrays, nested lists, scalars, torch tensors
on any device and of any float dtype) and returns the one canonical form the rest of the
library works with, or raises a typed error from :mod:`vecindex_core.errors` whose message
names the value it got and the value it expected. Nothing here mutates its input.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ._native import native_f32_rows
from .errors import (
    DimensionMismatchError,
    EmptyInputError,
    InvalidArgumentError,
    InvalidDtypeError,
    InvalidParameterError,
    NonFiniteError,
)
from .types import METRICS, MISSING, FloatMatrix, IdArray, Metric, SlotArray

__all__ = [
    "MAX_K",
    "as_float_matrix",
    "as_ids",
    "as_mask",
    "as_slots",
    "check_int",
    "check_k",
    "check_metric",
    "is_torch_tensor",
    "quick_float_rows",
    "reject_kwargs",
]

#: Largest ``k`` accepted by ``search``; results are ``(nq, k)`` arrays, so k bounds memory.
MAX_K = 1 << 20
_FLOAT32 = np.dtype(np.float32)
#: The native ``f32_rows`` check behind :func:`quick_float_rows` (None: numpy checks, also
#: under ``VECINDEX_NATIVE=off``).
_f32_rows = native_f32_rows()


def is_torch_tensor(x: object) -> bool:
    """Return True when ``x`` is a torch tensor, without importing torch."""
    return type(x).__module__.split(".", 1)[0] == "torch" and hasattr(x, "detach")


def _torch_to_numpy(
    x: Any, name: str, *, floating: bool, allow_bool: bool = False
) -> np.ndarray:
    if x.is_complex() or (str(x.dtype) == "torch.bool" and not allow_bool):
        raise InvalidDtypeError(f"{name} has dtype {x.dtype}, expected a real number dtype")
    t = x.detach()
    if floating and t.is_floating_point():
        import torch  # only reached when the caller already holds a tensor

        t = t.to(device="cpu", dtype=torch.float32)
    else:
        t = t.to(device="cpu")
    return np.asarray(t.numpy())


def _as_array(x: object, name: str, *, floating: bool, allow_bool: bool = False) -> np.ndarray:
    if is_torch_tensor(x):
        return _torch_to_numpy(x, name, floating=floating, allow_bool=allow_bool)
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as e:  # ragged nested lists and the like
        raise InvalidArgumentError(f"{name} could not be read as an array: {e}") from e


def as_float_matrix(
    x: object,
    dim: int | None = None,
    *,
    name: str = "x",
    allow_empty: bool = False,
) -> FloatMatrix:
    """Coerce vectors to a C-contiguous float32 matrix.

    Parameters
    ----------
    x : array_like or torch.Tensor, shape (n, d) or (d,)
        A 1-D input is one row. Any real float or integer dtype is accepted; tensors may
        live on any device.
    dim : int, optional
        Expected number of dimensions ``d``.
    name : str
        Name of the argument, used in error messages.
    allow_empty : bool
        Accept ``n == 0``.

    Returns
    -------
    ndarray of float32, shape (n, d), C-contiguous
        ``x`` itself when it already has that form, otherwise a converted copy.

    Raises
    ------
    InvalidDtypeError
        Non-numeric, boolean or complex input.
    InvalidArgumentError
        Rank other than 1 or 2, ragged lists, zero dimensions.
    DimensionMismatchError
        ``d != dim``.
    EmptyInputError
        ``n == 0`` and ``allow_empty`` is false.
    NonFiniteError
        NaN or infinity anywhere (also after the cast to float32).
    """
    arr = _as_array(x, name, floating=True)
    if arr.dtype.kind not in "fiu":
        raise InvalidDtypeError(
            f"{name} has dtype {arr.dtype}, expected a real float or integer dtype"
        )
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, dim or 0)
        if not allow_empty:
            raise EmptyInputError(f"{name} is an empty batch (shape {arr.shape}), expected n >= 1")
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    elif arr.ndim != 2:
        raise InvalidArgumentError(
            f"{name} has {arr.ndim} dimensions (shape {arr.shape}), expected a 1-D vector "
            "or a 2-D (n, d) matrix"
        )
    if dim is not None and arr.shape[1] != dim:
        raise DimensionMismatchError(
            f"{name} has {arr.shape[1]} dimensions, but this index expects {dim}"
        )
    if arr.shape[1] == 0:
        raise InvalidArgumentError(f"{name} has shape {arr.shape}: vectors need at least 1 dim")
    if arr.shape[0] == 0 and not allow_empty:
        raise EmptyInputError(f"{name} is an empty batch (shape {arr.shape}), expected n >= 1")
    with np.errstate(over="ignore"):  # overflow to inf is reported just below
        out = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(out)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise NonFiniteError(
            f"{name} contains a non-finite value {out[row, col]} at row {row}, column {col} "
            f"(float32 range is +-{np.finfo(np.float32).max:.3e})"
        )
    return out


def quick_float_rows(x: object, dim: int) -> FloatMatrix | None:
    """``x`` as a ``(n, dim)`` matrix when it already is one, cheaply; else None.

    The fast path of :func:`as_float_matrix` for the common case of a search: a plain
    ``numpy.ndarray`` of native float32, C-contiguous, of shape ``(n, dim)`` with ``n >= 1``
    or ``(dim,)``, holding no NaN or infinity. For such input the result is exactly what
    ``as_float_matrix(x, dim)`` returns (``x`` itself, or a ``(1, dim)`` view of a 1-D
    ``x``). Anything else, valid or not, gives None, and the caller runs
    :func:`as_float_matrix`, which converts it or raises the typed error. Never raises.

    Parameters
    ----------
    x : object
        What the caller passed.
    dim : int
        Expected number of dimensions (``>= 1``).

    Returns
    -------
    ndarray of float32, shape (n, dim), or None
    """
    # the dtype object itself: a float32 dtype with metadata (same buffer format) is not it
    if type(x) is not np.ndarray or x.dtype is not _FLOAT32:
        return None
    if _f32_rows is not None:  # the native check: one call instead of ~5 numpy ones
        kind = _f32_rows(x, dim)
        return x if kind == 2 else x.reshape(1, dim) if kind == 1 else None
    if not x.flags.c_contiguous:
        return None
    shape = x.shape
    if len(shape) == 2:
        if shape[1] != dim or shape[0] == 0:
            return None
    elif len(shape) == 1 and shape[0] == dim:
        x = x.reshape(1, dim)
    else:
        return None
    # isfinite, not a sum or a dot: those warn on overflow of large finite values;
    # count_nonzero is the cheapest reduction of the flags (no ufunc reduce machinery)
    if np.count_nonzero(np.isfinite(x)) != x.size:
        return None
    return x


def check_k(k: object) -> int:
    """Validate the number of neighbours.

    Raises
    ------
    InvalidDtypeError
        ``k`` is not an integer (``bool`` and floats are rejected).
    InvalidArgumentError
        ``k`` is outside ``[1, MAX_K]``.
    """
    if isinstance(k, bool) or is_torch_tensor(k):
        raise InvalidDtypeError(f"k must be an integer, got {k!r} of type {type(k).__name__}")
    try:
        value = operator.index(k)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidDtypeError(
            f"k must be an integer, got {k!r} of type {type(k).__name__}"
        ) from None
    if not 1 <= value <= MAX_K:
        raise InvalidArgumentError(f"k must be between 1 and {MAX_K}, got {value}")
    return int(value)


def check_int(value: object, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``, else :class:`InvalidParameterError` naming it.

    Accepts Python and numpy integers; rejects bools, torch tensors and non-integers.
    """
    if isinstance(value, bool) or is_torch_tensor(value):
        raise InvalidParameterError(f"{name} must be an integer, got {value!r}")
    try:
        v = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidParameterError(
            f"{name} must be an integer, got {value!r} of type {type(value).__name__}"
        ) from None
    if v < low or (high is not None and v > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise InvalidParameterError(f"{name} must be {bound}, got {v}")
    return int(v)


def check_metric(metric: object) -> Metric:
    """Validate a metric name; returns it typed as :data:`~vecindex_core.types.Metric`."""
    if metric not in METRICS:
        raise InvalidArgumentError(
            f"unknown metric {metric!r}, expected one of {', '.join(map(repr, METRICS))}"
        )
    return metric


def _integer_array(x: object, name: str) -> np.ndarray:
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        x = [int(x)]
    arr = _as_array(x, name, floating=False)
    if (isinstance(x, (list, tuple)) and arr.dtype.kind == "f" and arr.size
            and all(isinstance(v, int) and not isinstance(v, bool) for v in x)):
        arr = np.array(x, dtype=object)  # numpy promotes int64 + uint64-only values to float
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise InvalidArgumentError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype == object:  # Python ints too large for int64, or mixed objects
        try:
            values = [operator.index(v) for v in arr]
        except TypeError:
            raise InvalidDtypeError(f"{name} must contain integers, got {arr[:5]!r}") from None
        if MISSING in values:
            raise InvalidArgumentError(f"{name} contains {MISSING} (2**64-1), which is reserved")
        bad = [v for v in values if not 0 <= v < MISSING]
        if bad:
            raise InvalidArgumentError(f"{name} contains {bad[0]}, outside [0, 2**64-2]")
        return np.array(values, dtype=np.uint64)
    if arr.size == 0 and arr.dtype.kind == "f":  # np.asarray([]) is float64
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise InvalidDtypeError(f"{name} must be integers, got dtype {arr.dtype}")
    return arr


def as_ids(ids: object, n: int | None = None, *, name: str = "ids") -> IdArray:
    """Coerce ids to a 1-D uint64 array.

    ``MISSING`` (``2**64-1``) and negative values are rejected; duplicates are not checked
    here (see :class:`~vecindex_core.IdMapIndex`).

    Raises
    ------
    InvalidDtypeError
        Non-integer input (floats are never truncated silently).
    InvalidArgumentError
        Negative, reserved or too-large ids, a wrong rank, or ``len(ids) != n``.
    """
    arr = _integer_array(ids, name)
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise InvalidArgumentError(f"{name} contains {arr.min()}, but ids must be >= 0")
    out = np.ascontiguousarray(arr, dtype=np.uint64)
    if out.size and out.max() == np.uint64(MISSING):
        raise InvalidArgumentError(f"{name} contains {MISSING} (2**64-1), which is reserved")
    if n is not None and out.shape[0] != n:
        raise InvalidArgumentError(f"{name} has {out.shape[0]} entries, expected {n} (one a row)")
    return out


def as_slots(
    slots: object, ntotal: int, *, name: str = "slots", unique: bool = True
) -> SlotArray:
    """Coerce positional slots to a 1-D int64 array within ``[0, ntotal)``.

    With ``unique`` (the default) the result is sorted and deduplicated; otherwise the
    input order is kept.
    """
    arr = _integer_array(slots, name)
    if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise InvalidArgumentError(f"{name} contains {arr.max()}, outside [0, {ntotal})")
    out = arr.astype(np.int64, copy=False)
    if unique:
        out = np.unique(out)
    if out.size and (out.min() < 0 or out.max() >= ntotal):
        bad = out.min() if out.min() < 0 else out.max()
        raise InvalidArgumentError(f"{name} contains {bad}, outside [0, {ntotal})")
    return np.ascontiguousarray(out)


def as_mask(mask: object, ntotal: int, *, name: str = "mask") -> npt.NDArray[np.bool_]:
    """Coerce a predicate mask to a 1-D bool array of length ``ntotal``."""
    arr = _as_array(mask, name, floating=False, allow_bool=True)
    if arr.dtype != np.bool_:
        raise InvalidDtypeError(f"{name} must have dtype bool, got {arr.dtype}")
    if arr.shape != (ntotal,):
        raise InvalidArgumentError(f"{name} has shape {arr.shape}, expected ({ntotal},)")
    return np.ascontiguousarray(arr)


def reject_kwargs(method: str, kwargs: Mapping[str, Any], allowed: Sequence[str] = ()) -> None:
    """Raise :class:`InvalidArgumentError` naming every keyword of ``kwargs`` not in ``allowed``.

    For framework methods that take ``**kwargs`` by contract: a typo must not be ignored.
    """
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) if allowed else "none"
        raise InvalidArgumentError(
            f"{method}() got unexpected keyword argument(s) {', '.join(unknown)}; "
            f"valid ones: {valid}"
        )
