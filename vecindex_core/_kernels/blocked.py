"""A growable store of packed code rows in the fast-scan layout, and the fast-scan search.

:class:`BlockedCodes` keeps rows ``0 .. n - 1`` of ``nbytes``-byte packed codes (1/2/4-bit
codes, :func:`~.codes.pack_codes`) the way :mod:`.fastscan` scans them: the complete blocks
of :data:`~.fastscan.BLOCK` = 32 rows (rows ``0 .. 32 (n // 32) - 1``) in the blocked
layout, and the last ``n % 32`` rows row-major in a *tail*, packed into one block per search
(:meth:`BlockedCodes.tail_block`). Appending to a partial block therefore never rewrites a
block, and the block array only ever holds complete blocks (plus spare capacity).

:func:`fast_topk` is the search every fast-scan index shares: a shortlist of
:func:`shortlist_size` rows per query by the uint8-table score
(:func:`~.fastscan.quantize_luts`, :func:`~.fastscan.fastscan_topk`), rescored by the
float tables (:func:`~.fastscan.rescore_shortlist`); a mask allowing few rows gathers them
first (:data:`GATHER_FRACTION`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .fastscan import (
    BLOCK,
    Products,
    dot_usable,
    fastscan_search,
    gather_rows,
    pack_blocked,
    scatter_rows,
)

__all__ = [
    "GATHER_FRACTION",
    "QUERY_CHUNK",
    "BlockedCodes",
    "Tables",
    "fast_topk",
    "ivf_shortlist_size",
    "shortlist_size",
]

if TYPE_CHECKING:
    from .planes import PlaneCodes

FloatArray = npt.NDArray[np.float32]
U8Array = npt.NDArray[np.uint8]
SlotArray = npt.NDArray[np.int64]
Result = tuple[FloatArray, SlotArray, SlotArray]

#: A mask allowing under this fraction of the rows gathers their codes before the scan
#: (the scan then touches only allowed rows) instead of skipping rows inside it.
GATHER_FRACTION = 0.125
#: Queries whose fast-scan tables are built at once.
QUERY_CHUNK = 2048


def shortlist_size(k: int, n: int) -> int:
    """Rows the fast scan keeps per query before the float rescore: ``max(2 k, k + 10)``
    (at most ``n``). Measured on the dev set (``benchmarks/native_lut.py``, section
    ``shortlist``): from ``2 k`` on the recall@10 equals the float scan's at 2 and 4 bits."""
    return int(min(n, max(2 * k, k + 10)))


def ivf_shortlist_size(k: int, n: int) -> int:
    """:func:`shortlist_size` of an inverted-file scan: ``k + max(4, k // 4)`` (at most
    ``n``). An IVF search scans a few hundred rows per list, not the whole base, so fewer
    rows compete near the cut: on the dev set (k = 10, nprobe 2/8/32, ip) a shortlist of
    ``k + 2`` already gave the recall@10 of ``2 k`` and ``4 k`` for ``ivf_pq`` (m 48 and 96,
    4- and 2-bit) and ``ivf_tq`` (1, 2 and 4 bits); ``k`` itself lost up to 0.004."""
    return int(min(n, k + max(4, k // 4)))


class BlockedCodes:
    """Packed code rows: complete blocks of 32 in the blocked layout, the rest row-major.

    Parameters
    ----------
    nbytes : int
        Bytes of one packed row (``>= 0``).

    Attributes
    ----------
    nbytes : int
    blocks : uint8 (capacity // 32, nbytes * 32)
        Rows ``0 .. full - 1`` (``full = 32 * (n // 32)``) in the layout of
        :func:`~.fastscan.pack_blocked`; blocks from ``n // 32`` on are spare capacity with
        unspecified contents.
    tail : uint8 (n % 32, nbytes)
        Rows ``full .. n - 1``, row-major (exactly that many rows).

    Slots passed to the methods are int64 arrays of rows ``< len(self)`` (callers validate).
    """

    __slots__ = ("_n", "blocks", "nbytes", "tail")

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        self.blocks: U8Array = np.zeros((0, self.nbytes * BLOCK), dtype=np.uint8)
        self.tail: U8Array = np.empty((0, self.nbytes), dtype=np.uint8)
        self._n = 0

    @classmethod
    def from_rows(cls, rows: U8Array) -> BlockedCodes:
        """A store holding the packed rows uint8 ``(n, nbytes)`` (capacity ``32 (n // 32)``)."""
        rows = np.ascontiguousarray(rows, dtype=np.uint8)
        out = cls(rows.shape[1])
        full = BLOCK * (rows.shape[0] // BLOCK)
        out.blocks = pack_blocked(rows[:full])
        out.tail = np.array(rows[full:])
        out._n = rows.shape[0]
        return out

    def __len__(self) -> int:
        return self._n

    @property
    def full(self) -> int:
        """Rows in complete blocks, ``32 (n // 32)``."""
        return BLOCK * (self._n // BLOCK)

    @property
    def capacity(self) -> int:
        """Rows the block array holds before it grows (the tail is extra)."""
        return BLOCK * self.blocks.shape[0]

    def memory_bytes(self) -> int:
        """Bytes of the block array (capacity included) and the tail."""
        return int(self.blocks.nbytes + self.tail.nbytes)

    # ----------------------------------------------------------------- rows
    def get_rows(self, slots: SlotArray) -> U8Array:
        """Rows ``slots`` row-major, uint8 ``(len(slots), nbytes)``."""
        full = self.full
        in_blocks = slots < full
        if in_blocks.all():
            return gather_rows(self.blocks, slots, self.nbytes)
        out = np.empty((slots.size, self.nbytes), dtype=np.uint8)
        out[in_blocks] = gather_rows(self.blocks, slots[in_blocks], self.nbytes)
        out[~in_blocks] = self.tail[slots[~in_blocks] - full]
        return out

    def set_rows(self, slots: SlotArray, rows: U8Array) -> None:
        """Overwrite rows ``slots`` with packed rows uint8 ``(len(slots), nbytes)``."""
        full = self.full
        in_blocks = slots < full
        scatter_rows(self.blocks, slots[in_blocks], rows[in_blocks])
        self.tail[slots[~in_blocks] - full] = rows[~in_blocks]

    def to_rows(self) -> U8Array:
        """Every row, row-major: a new uint8 ``(n, nbytes)`` array."""
        return self.get_rows(np.arange(self._n, dtype=np.int64))

    def tail_block(self) -> U8Array | None:
        """The tail packed as one block, uint8 ``(1, nbytes * 32)`` (zero past the tail), or
        None when ``n % 32 == 0``."""
        return pack_blocked(self.tail) if self.tail.shape[0] else None

    def subset(self, slots: SlotArray) -> BlockedCodes:
        """A new store whose row ``t`` is row ``slots[t]`` of this one."""
        return BlockedCodes.from_rows(self.get_rows(slots))

    # ----------------------------------------------------------------- growth
    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` rows: exactly ``rows // 32`` blocks when fewer are held."""
        want = int(rows) // BLOCK
        if want <= self.blocks.shape[0]:
            return
        blocks = np.zeros((want, self.nbytes * BLOCK), dtype=np.uint8)
        used = self._n // BLOCK
        blocks[:used] = self.blocks[:used]
        self.blocks = blocks

    def append(self, rows: U8Array) -> None:
        """Append packed rows uint8 ``(m, nbytes)`` (the block array at least doubles when
        it grows)."""
        n0, n1 = self._n, self._n + rows.shape[0]
        if n1 > self.capacity + BLOCK - 1:
            self.reserve(max(n1, 2 * self.capacity))
        full0, full1 = BLOCK * (n0 // BLOCK), BLOCK * (n1 // BLOCK)
        rows = np.concatenate([self.tail, rows]) if self.tail.shape[0] else rows
        if full1 > full0:
            scatter_rows(self.blocks, np.arange(full0, full1, dtype=np.int64),
                         rows[: full1 - full0])
        self.tail = np.array(rows[full1 - full0:], dtype=np.uint8)
        self._n = n1

    def compact(self, src: SlotArray, dst: SlotArray, n: int) -> None:
        """Swap-remove: copy rows ``src`` to ``dst`` (``src`` read before any write), then
        keep the first ``n`` rows."""
        if src.size:
            self.set_rows(dst, self.get_rows(src))
        self.tail = self.get_rows(np.arange(BLOCK * (n // BLOCK), n, dtype=np.int64))
        self._n = int(n)


#: Float nibble tables and their uint8 quantization: ``(tables, luts, bias, delta)``.
Tables = tuple[FloatArray, U8Array, FloatArray, FloatArray]


def fast_topk(
    store: BlockedCodes | PlaneCodes,
    tables: Callable[[int, int], Tables],
    nq: int,
    k: int,
    *,
    scale: FloatArray | None = None,
    sq_norms: FloatArray | None = None,
    q_sq_norms: FloatArray | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
    shortlist: Callable[[int, int], int] = shortlist_size,
    dot: tuple[U8Array, Callable[[int, int], tuple[np.ndarray, FloatArray]],
               Callable[[int, int], Products]] | None = None,
    scale_max: float | None = None,
) -> Result:
    """Top-``k`` rows of ``store`` for ``nq`` queries: fast-scan shortlist, float rescore.

    Parameters
    ----------
    store : BlockedCodes or PlaneCodes
        The rows scanned (all ``len(store)`` of them). A bit-plane store
        (:class:`~.planes.PlaneCodes`, searched by :func:`~.planes.planes_topk`) only with
        a mask allowing few rows: they are gathered into blocks.
    tables : callable
        ``tables(a, b)``: float32 ``(b - a, 2 * nbytes, 16)`` per sub-code tables of queries
        ``a .. b - 1`` (:func:`~.fastscan.nibble_tables` layout; a row's estimate is
        ``scale[i] * sum_t tables[t, code_t(i)]``) and their
        :func:`~.fastscan.quantize_luts` ``(luts, bias, delta)``, as one tuple
        (:func:`~.fastscan.nibble_luts`, :func:`~.fastscan.pq_luts`). Called on chunks of
        :data:`QUERY_CHUNK`.
    nq, k : int
        Queries and results per query.
    scale : float32 (len(store),), optional
        Per-row factor (1 when omitted).
    sq_norms, q_sq_norms : float32 (len(store),) and (nq,), optional
        Given together: the ``l2`` score ``-max(|q|^2 + |x|^2 - 2 est, 0)``.
    mask : bool (len(store),), optional
        Rows not allowed are never returned; allowing under :data:`GATHER_FRACTION` of the
        rows gathers them into a new store first.
    shortlist : callable
        ``shortlist(k, n)``: rows kept per query before the rescore (default
        :func:`shortlist_size`).
    dot : (levels, weights, products), optional
        The shortlist by the dot mode (4-bit codes of one codebook,
        :func:`~.fastscan.dot_levels`) instead of uint8 tables: ``weights(a, b)`` gives
        queries ``a .. b - 1``'s :func:`~.fastscan.dot_weights` (a chunk with a delta that
        is not a normal float32 takes the tables, :func:`~.fastscan.dot_usable`), and
        ``products(a, b)`` their :class:`~.fastscan.Products`, which the rescore reads
        instead of ``tables`` (not built then).
    scale_max : float, optional
        A bound on ``scale`` (at least each entry): the native scan then skips blocks whose
        rows cannot reach the threshold (:func:`~vecindex_core._native.lut.lut_topk`).

    Returns
    -------
    scores : float32 (nq, k)
        The float estimate (:func:`~.fastscan.rescore_shortlist`), descending.
    slots : int64 (nq, k)
        Ties by the lower slot; ``-1`` padding (scores ``-inf``).
    counts : int64 (nq,)
    """
    n = len(store)
    row_slots: SlotArray | None = None
    if mask is not None:
        allowed = np.flatnonzero(mask)
        if allowed.size < GATHER_FRACTION * n:
            store = store.subset(allowed)
            scale = None if scale is None else scale[allowed]
            sq_norms = None if sq_norms is None else sq_norms[allowed]
            row_slots, mask, n = allowed, None, allowed.size
    if not isinstance(store, BlockedCodes):
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError("fast_topk scans a bit-plane store only through a mask "
                                   f"allowing under {GATHER_FRACTION} of its rows")
    size = shortlist(k, n)
    codes, tail = store.blocks, store.tail_block()
    parts = []
    for c0 in range(0, max(nq, 1), QUERY_CHUNK):
        c1 = min(c0 + QUERY_CHUNK, nq)
        levels = None
        tb: FloatArray | Products | None = None
        if dot is not None:
            levels, weights, products = dot
            luts, delta = weights(c0, c1)
            bias = np.zeros(c1 - c0, dtype=np.float32)
            if dot_usable(delta):
                tb = products(c0, c1)
        if tb is None:
            levels = None
            tb, luts, bias, delta = tables(c0, c1)
        qc = None if q_sq_norms is None else q_sq_norms[c0:c1]
        parts.append(fastscan_search(luts, bias, delta, codes, n, size, k, tb, scale=scale,
                                     sq_norms=sq_norms, q_sq_norms=qc, mask=mask, tail=tail,
                                     levels=levels, scale_max=scale_max))
    scores, slots, counts = (parts[0] if len(parts) == 1 else
                             tuple(np.concatenate(p) for p in zip(*parts, strict=True)))
    if row_slots is not None:
        slots = np.where(slots >= 0, row_slots[np.maximum(slots, 0)], -1)
    return scores, slots.astype(np.int64, copy=False), counts
