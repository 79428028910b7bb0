"""Native float32 top-k over score tiles: the twin of ``_kernels.topk._update_rows``.

The heaps, the tie rule and the l2 transform are those of
:mod:`vecindex_core._kernels.topk` (see its docstring); the kernel (``topk.c``) only makes the
threshold test SIMD, so the heaps it leaves are identical to the numba kernel's, bit for bit.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import numpy.typing as npt

from .._threads import map_chunks, thread_count
from ..errors import InvalidArgumentError
from . import ENV_VAR, _ext, _import_error, _isa_id, active_isa

__all__ = ["scan_tile"]

#: Below this many scores per thread, a tile is scanned by one thread (a hand-off to the
#: pool costs about what the SIMD scan of this many scores does).
_MIN_SCORES_PER_THREAD = 1 << 16


def _resolve(isa: str | None) -> tuple[ModuleType, int]:
    """The extension and the id of ``isa`` (default: the active path); raises when none."""
    if _ext is None:
        raise InvalidArgumentError(f"the native kernels are not built ({_import_error})")
    path = isa if isa is not None else active_isa()
    if path is None:
        raise InvalidArgumentError(f"native kernels disabled ({ENV_VAR} or _use(None))")
    return _ext, _isa_id(path)


def scan_tile(
    tile: npt.NDArray[np.float32],
    col0: int,
    offset: int,
    mask: npt.NDArray[np.bool_] | None,
    qn: npt.NDArray[np.float32] | None,
    xn: npt.NDArray[np.float32] | None,
    hs: npt.NDArray[np.float32],
    hi: npt.NDArray[np.int64],
    nthreads: int = 1,
    r0: int = 0,
    r1: int | None = None,
    *,
    isa: str | None = None,
) -> None:
    """Push tile rows ``r0:r1`` into their heaps (native ``_update_rows``), in place, split
    over up to ``nthreads`` threads.

    Parameters
    ----------
    tile : float32 (rows, width), C-contiguous
        Scores (inner product) or inner products (l2). Columns ``col0:`` are scanned;
        column ``col0 + j`` is slot ``offset + j``.
    col0, offset : int
        First scanned column and its slot.
    mask : bool (>= offset + width - col0,), optional
        Indexed by slot; only true slots are candidates.
    qn, xn : float32, optional
        Squared norms of the tile's queries ``(rows,)`` and of the data by slot; both given
        for l2 (score ``-max((qn[r] + xn[slot]) - 2 * ip, 0)``), both None for inner product.
    hs, hi : float32 / int64 (rows, k), C-contiguous, writable
        Heaps from :func:`~vecindex_core._kernels.topk.init_heaps` (or earlier tiles).
    nthreads : int
        Most threads the rows are split over. The buffers are checked on the calling thread
        first; each row's heap is touched by one thread only, so the result does not depend
        on ``nthreads``.
    r0, r1 : int
        Tile rows to push (default all).
    isa : str, optional
        Instruction-set path; default :func:`~vecindex_core._native.active_isa`.

    Raises
    ------
    InvalidDtypeError
        A buffer of the wrong dtype, or ``col0``/``offset``/``r0``/``r1`` not an integer.
    DimensionMismatchError
        Heaps not ``(rows, k)``, or ``mask``/``qn``/``xn`` too short.
    InvalidArgumentError
        Wrong rank, a non-contiguous or read-only buffer, ``hs`` or ``hi`` sharing memory
        with each other or an input, ``col0``/``offset``/rows out of range (also past 64
        bits), only one of ``qn``/``xn``, or no native path.

    Notes
    -----
    An l2 score is ``-max(d, 0)`` with Python's ``max`` (``d`` unless ``0 > d``), as numba
    computes it: a NaN distance (norms or products of huge finite vectors overflowing)
    stays NaN and never enters a heap.
    """
    ext, isa_id = _resolve(isa)
    end = 0 if r1 is None else r1  # 0: the kernel refuses a tile that is not an array
    parts = 1
    if isinstance(tile, np.ndarray) and tile.ndim == 2:
        end = int(tile.shape[0]) if r1 is None else r1
        try:  # bad values go to the kernel, which raises the typed error
            nrows, width = int(end) - int(r0), int(tile.shape[1]) - int(col0)
            parts = min(nthreads, thread_count(nrows, nrows * width, _MIN_SCORES_PER_THREAD))
        except (TypeError, ValueError, OverflowError):
            parts = 1
    if parts == 1:  # the kernel checks everything itself
        ext.topk_update(tile, col0, offset, mask, qn, xn, hs, hi, r0, end, isa_id)
        return
    # check every buffer and both ends on this thread first (empty ranges do no work)
    ext.topk_update(tile, col0, offset, mask, qn, xn, hs, hi, r0, r0, isa_id)
    ext.topk_update(tile, col0, offset, mask, qn, xn, hs, hi, end, end, isa_id)
    map_chunks(lambda a, b: ext.topk_update(tile, col0, offset, mask, qn, xn, hs, hi,
                                            int(r0) + a, int(r0) + b, isa_id),
               int(end) - int(r0), parts)
