"""Native lookup-table fast scans (``_vecnative.lut_topk`` over rows, ``lut_ivf_topk`` over
the entry ranges of inverted lists) and the checks and thread splits they share with their
numba references (:func:`vecindex_core._kernels.fastscan.fastscan_topk_ref`,
:func:`~vecindex_core._kernels.fastscan.fastscan_ivf_ref`).

The layout, the uint8 tables and the arithmetic are described in
:mod:`vecindex_core._kernels.fastscan`; this module only validates, splits the work over
:func:`~vecindex_core._threads.get_num_threads` threads and calls the kernel (which releases
the GIL and is reentrant).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType

import numba
import numpy as np
import numpy.typing as npt

from .. import _native as _package
from .._kernels.topk import _before
from .._threads import map_chunks, run_chunks, split_plan, thread_count
from ..errors import InvalidArgumentError
from ..validation import check_int
from . import ENV_VAR, _isa_id
from . import active_isa as _active_isa

__all__ = [
    "BLOCK",
    "LUT_MAX",
    "MAX_COLUMNS",
    "MIN_ROWS_WORK_PER_THREAD",
    "MIN_WORK_PER_THREAD",
    "PART_MAX",
    "check_ivf_args",
    "check_scan_args",
    "dot_cpu",
    "ivf_work",
    "lut_ivf_topk",
    "lut_search",
    "lut_topk",
    "merge_parts",
    "planes_rank",
    "planes_rescore",
    "run_split",
    "scan_plan",
]

#: Rows per block of the blocked code layout.
BLOCK = 32
#: Largest uint8 table entry the kernels accept (``VN_FS_LUTMAX`` in ``src/lut.c``): the SIMD
#: paths add two entries in one byte.
LUT_MAX = 127
#: Largest per-coordinate entry of additive 2-bit tables
#: (:func:`~vecindex_core._kernels.fastscan.quantize_parts`): three coordinates' entries add
#: up to at most :data:`LUT_MAX`, so the VBMI kernel may regroup the coordinates by three.
PART_MAX = 42
#: Most queries summed together per pass over a block (``nqsub``; ``VN_DOT_MAXSUB``): the
#: VNNI kernels take up to 8, the other paths clamp to 4 (``VN_FS_MAXSUB``).
MAX_SUB = 8
#: Most byte columns (code bytes) a scan takes (``VN_FS_MAX_NB``): its integer sums stay exact.
MAX_COLUMNS = 32768
#: Below this many table lookups (queries x rows x byte columns x 2) a scan runs on one thread.
MIN_WORK_PER_THREAD = 1 << 21
#: Lookups a thread needs when a few queries split the rows (``split_plan``'s
#: ``min_rows_work``): about 100 us of scan. Smaller splits lost: waking a pool thread and
#: merging cost ~75 us on the 2-core development VM, and a single 4-bit query on dev
#: (7.7M lookups) took 160-230 us on two threads against 100 us on one.
MIN_ROWS_WORK_PER_THREAD = 1 << 23
#: Lookups a scan does in the time it takes to wake a pool thread (~75 us on the development
#: VM): the share of rows the calling thread takes on top of its own when rows are split.
WAKE_WORK = 6 << 20

#: ``kernel(q0, q1, r0, r1, out_s, out_i)``: top-k of queries ``q0:q1`` over rows ``r0:r1``
#: into rows ``q0:q1`` of the outputs.
Kernel = Callable[[int, int, int, int, npt.NDArray[np.float32], npt.NDArray[np.int64]], None]


def _resolve(isa: str | None) -> tuple[ModuleType, int]:
    """The extension and the id of ``isa`` (default: the active path); raises when there is
    none."""
    ext = _package._ext  # read at each call (tests swap it)
    if ext is None:
        raise InvalidArgumentError(
            f"the native kernels are not built ({_package._import_error})")
    path = isa if isa is not None else _active_isa()
    if path is None:
        raise InvalidArgumentError(f"native kernels disabled ({ENV_VAR})")
    return ext, _isa_id(path)


@functools.cache  # CPU features: read once, not on every search
def dot_cpu() -> bool:
    """Whether this CPU runs the dot mode's AVX-512 kernel (the extension built, its
    ``avx512`` path usable, AVX-512 VNNI and VBMI). ``turboquant`` scans 4-bit codes in the
    dot mode exactly then, whatever ``VECINDEX_NATIVE`` says (the numba reference computes
    the same sums), so on one machine results do not depend on the path; they can differ
    slightly between a machine where this is true and one where it is not."""
    ext = _package._ext
    if ext is None or "avx512" not in ext.usable_isas():
        return False
    f = ext.cpu_features()
    return bool(f.get("avx512vnni") and f.get("avx512vbmi"))


@numba.njit(nogil=True, cache=True)
def _merge_sorted(ps: np.ndarray, pi: np.ndarray, out_s: np.ndarray, out_i: np.ndarray) -> None:
    parts, nq, kk = ps.shape
    pos = np.zeros(parts, dtype=np.int64)
    for q in range(nq):
        pos[:] = 0
        for t in range(out_s.shape[1]):
            best = -1
            for p in range(parts):
                if pos[p] < kk and (best < 0 or _before(ps[p, q, pos[p]], pi[p, q, pos[p]],
                                                        ps[best, q, pos[best]],
                                                        pi[best, q, pos[best]])):
                    best = p
            out_s[q, t] = ps[best, q, pos[best]]
            out_i[q, t] = pi[best, q, pos[best]]
            pos[best] += 1


def merge_parts(ps: npt.NDArray[np.float32], pi: npt.NDArray[np.int64], k: int
                ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Merge per-part top-k lists ``(parts, nq, kk)``, each sorted best first, into the
    ``k <= parts * kk`` best ``(nq, k)``: score descending (NaN last), then slot ascending;
    padding (slot -1) last. A merge of the sorted lists (numpy's lexsort of the
    concatenation took ~50 us a query for two lists of 256)."""
    parts, nq, kk = ps.shape
    if not 0 <= k <= parts * kk:
        raise InvalidArgumentError(f"k must be in [0, {parts * kk}] (parts x their k), got {k}")
    out_s = np.empty((nq, k), dtype=np.float32)
    out_i = np.empty((nq, k), dtype=np.int64)
    if nq and k:
        _merge_sorted(ps, pi, out_s, out_i)
    return out_s, out_i


def scan_plan(nq: int, n: int, nb: int) -> tuple[int, bool]:
    """:func:`~vecindex_core._threads.split_plan` of a flat scan: ``(threads, by_rows)``."""
    return split_plan(nq, nq * max(n, 1) * max(nb, 1) * 2, MIN_WORK_PER_THREAD,
                      MIN_ROWS_WORK_PER_THREAD)


def run_split(kernel: Kernel, nq: int, n: int, k: int, nb: int
              ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Run ``kernel`` over all queries and rows on up to ``get_num_threads()`` threads.

    Queries are split when there are at least two per thread; otherwise each thread scans a
    share of the rows (block-aligned) into its own top-k lists, merged at the end. Results
    do not depend on the split.
    """
    out_s = np.empty((nq, k), dtype=np.float32)
    out_i = np.empty((nq, k), dtype=np.int64)
    if nq == 0 or k == 0:
        return out_s, out_i
    threads, by_rows = scan_plan(nq, n, nb)
    if not by_rows:
        run_chunks(lambda a, b: kernel(a, b, 0, n, out_s, out_i), nq, min(threads, nq))
        return out_s, out_i
    nblocks = -(-n // BLOCK)
    parts = max(1, min(threads, nblocks))
    # the calling thread starts at once, the others only when woken: it takes the blocks the
    # others scan in that time (WAKE_WORK lookups each, shared out)
    work = nq * n * nb * 2
    lead = int(nblocks * WAKE_WORK * (parts - 1) / parts / max(work, 1))
    lead = min(lead, nblocks // parts)
    bounds = [0] + [min(n, BLOCK * (lead + ((nblocks - lead) * t) // parts))
                    for t in range(1, parts)] + [n]
    ps = np.empty((parts, nq, k), dtype=np.float32)
    pi = np.empty((parts, nq, k), dtype=np.int64)

    def part(a: int, b: int) -> None:
        for t in range(a, b):
            kernel(0, nq, bounds[t], bounds[t + 1], ps[t], pi[t])

    map_chunks(part, parts, parts)
    return merge_parts(ps, pi, k)


def check_scan_args(
    luts: npt.NDArray[np.uint8], bias: npt.NDArray[np.float32],
    delta: npt.NDArray[np.float32], codes: npt.NDArray[np.uint8], n: int, k: int,
    scale: npt.NDArray[np.float32] | None, sq_norms: npt.NDArray[np.float32] | None,
    q_sq_norms: npt.NDArray[np.float32] | None, mask: npt.NDArray[np.bool_] | None,
    tail: npt.NDArray[np.uint8] | None = None,
    levels: npt.NDArray[np.uint8] | None = None,
) -> int:
    """The checks both scan paths make before reading anything (typed errors); returns
    ``nb``, the byte columns. With ``levels`` (the dot mode) ``luts`` are the int8 weights
    ``(nq, 2 nb)``."""
    from ..errors import DimensionMismatchError, InvalidDtypeError

    dot = levels is not None
    for name, a, dt in (("weights" if dot else "luts", luts, np.int8 if dot else np.uint8),
                        ("levels", levels, np.uint8), ("bias", bias, np.float32),
                        ("delta", delta, np.float32), ("codes", codes, np.uint8),
                        ("scale", scale, np.float32), ("sq_norms", sq_norms, np.float32),
                        ("q_sq_norms", q_sq_norms, np.float32), ("mask", mask, np.bool_),
                        ("tail", tail, np.uint8)):
        if a is not None and (not isinstance(a, np.ndarray) or a.dtype != dt):
            got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
            raise InvalidDtypeError(f"{name} must be a {np.dtype(dt)} array, got {got}")
    if levels is not None:
        if levels.shape != (16,):
            raise DimensionMismatchError(f"levels must be (16,), got {levels.shape}")
        if luts.ndim != 2 or codes.ndim != 2 or luts.shape[1] != 2 * (codes.shape[1] // 32):
            raise DimensionMismatchError(
                f"weights must be (nq, 2 nb) for codes (nblocks, nb * 32), got shapes "
                f"{luts.shape} and {codes.shape}")
    elif luts.ndim != 3 or luts.shape[2] != 32 or codes.ndim != 2:
        raise InvalidArgumentError(
            f"luts must be (nq, nb, 32) and codes (nblocks, nb * 32), got shapes "
            f"{luts.shape} and {codes.shape}")
    nq, nb = luts.shape[0], (luts.shape[1] // 2 if dot else luts.shape[1])
    if nb < 1 or nb > MAX_COLUMNS:
        raise InvalidArgumentError(
            f"{'codes' if dot else 'luts'} must have 1 to {MAX_COLUMNS} byte columns, got {nb}")
    if codes.shape[1] != nb * 32:
        raise DimensionMismatchError(
            f"codes must have {nb * 32} bytes a block (nb * 32), got {codes.shape[1]}")
    if not dot and luts.size and int(luts.max()) > LUT_MAX:
        raise InvalidArgumentError(
            f"luts entries must be at most {LUT_MAX}, got {int(luts.max())}")
    if bias.shape != (nq,) or delta.shape != (nq,):
        raise DimensionMismatchError(
            f"bias and delta must be ({nq},), got {bias.shape} and {delta.shape}")
    if tail is not None and tail.shape != (1, nb * 32):
        raise DimensionMismatchError(f"tail must be one block (1, {nb * 32}), got {tail.shape}")
    top = codes.shape[0] * BLOCK + (BLOCK - 1 if tail is not None else 0)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= top:
        raise InvalidArgumentError(f"n must be an integer in [0, {top}], got {n!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise InvalidArgumentError(f"k must be an integer >= 0, got {k!r}")
    if (sq_norms is None) != (q_sq_norms is None):
        raise InvalidArgumentError("sq_norms and q_sq_norms must be given together (l2)")
    if q_sq_norms is not None and q_sq_norms.shape != (nq,):
        raise DimensionMismatchError(f"q_sq_norms must be ({nq},), got {q_sq_norms.shape}")
    for name, a in (("scale", scale), ("sq_norms", sq_norms), ("mask", mask)):
        if a is not None and (a.ndim != 1 or a.shape[0] < n):
            raise DimensionMismatchError(
                f"{name} must be 1-D with at least n = {n} entries, got shape {a.shape}")
    for name, a in (("luts", luts), ("bias", bias), ("delta", delta), ("codes", codes),
                    ("scale", scale), ("sq_norms", sq_norms), ("q_sq_norms", q_sq_norms),
                    ("mask", mask), ("tail", tail), ("levels", levels)):
        if a is not None and not a.flags.c_contiguous:  # both paths: the kernel needs it
            raise InvalidArgumentError(
                f"{name} must be C-contiguous, got shape {a.shape} with strides {a.strides}")
    return int(nb)


def lut_topk(
    luts: npt.NDArray[np.uint8],
    bias: npt.NDArray[np.float32],
    delta: npt.NDArray[np.float32],
    codes: npt.NDArray[np.uint8],
    n: int,
    k: int,
    *,
    scale: npt.NDArray[np.float32] | None = None,
    sq_norms: npt.NDArray[np.float32] | None = None,
    q_sq_norms: npt.NDArray[np.float32] | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
    tail: npt.NDArray[np.uint8] | None = None,
    levels: npt.NDArray[np.uint8] | None = None,
    isa: str | None = None,
    nqsub: int = 0,
    trusted: bool = False,
    seed: npt.NDArray[np.float32] | None = None,
    scale_max: float | None = None,
    sort: bool = True,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Native :func:`vecindex_core._kernels.fastscan.fastscan_topk_ref` (same arguments,
    same results bit for bit).

    Parameters
    ----------
    luts, bias, delta, codes, n, k, scale, sq_norms, q_sq_norms, mask, tail, levels
        As :func:`~vecindex_core._kernels.fastscan.fastscan_topk_ref`.
    isa : str, optional
        Instruction-set path; default :func:`~vecindex_core._native.active_isa`.
    nqsub : int
        Queries summed together per pass over a block (1 to :data:`MAX_SUB`, clamped to the
        path's most; 0: the path's default).
    trusted : bool
        The arguments come from this package's own search code (a single query's checks
        cost about as much as a tenth of its scan): the Python-side checks are skipped.
        The kernel still checks every buffer (dtype, shape, contiguity, bounds); table
        entries at most :data:`LUT_MAX` are then the caller's guarantee.
    seed : float32 (nq,), optional
        A score per query at which collecting candidates starts: rows scoring below it are
        skipped without being collected. A query with fewer than ``k`` rows at or above its
        seed (in the rows a thread scans) is scanned again without it, so the results never
        depend on the seed; a seed at most the ``k``-th best score saves the collection of
        the rows above the running threshold (thousands for ``k`` in the hundreds).
    scale_max : float, optional
        A bound on ``scale[:n]`` (finite, at least each of them). With it, once a query's
        threshold is positive, a block none of whose integer sums can reach it is not scored
        (the same results, ~15% less time on a 200,000-row 1-bit scan); without it, every
        block is scored. Checked against ``scale`` unless ``trusted``.
    sort : bool
        False: each query's ``k`` rows (the same ones) in no particular order, saving their
        sort (~7 us a query for k = 256) when the caller re-ranks them anyway. Rows split over
        threads are still sorted (their merge needs it).

    Returns
    -------
    scores : float32 (nq, k)
    slots : int64 (nq, k)
        Best first (score descending, slot ascending; with ``sort`` False in no particular
        order), ``-inf`` / ``-1`` padding.

    Raises
    ------
    InvalidDtypeError, DimensionMismatchError, InvalidArgumentError
        Bad buffers (dtype, shape, not C-contiguous), arguments or ``nqsub``; no native
        path.
    """
    ext, isa_id = _resolve(isa)
    if trusted:
        nb = codes.shape[1] // BLOCK
    else:
        if (isinstance(nqsub, bool) or not isinstance(nqsub, (int, np.integer))
                or not 0 <= nqsub <= MAX_SUB):
            raise InvalidArgumentError(
                f"nqsub must be an integer in [0, {MAX_SUB}], got {nqsub!r}")
        nb = check_scan_args(luts, bias, delta, codes, n, k, scale, sq_norms, q_sq_norms, mask,
                             tail, levels)
        n, k, nqsub = int(n), int(k), int(nqsub)
        _check_scale_max(scale_max, scale, n)
        if seed is not None:
            from ..errors import DimensionMismatchError, InvalidDtypeError

            if not isinstance(seed, np.ndarray) or seed.dtype != np.float32:
                raise InvalidDtypeError(f"seed must be a float32 array, got "
                                        f"{getattr(seed, 'dtype', type(seed).__name__)}")
            if seed.shape != (luts.shape[0],) or not seed.flags.c_contiguous:
                raise DimensionMismatchError(
                    f"seed must be C-contiguous of shape ({luts.shape[0]},), got {seed.shape}")
    tables = luts if levels is None else luts.view(np.uint8)
    unsorted = not sort and not scan_plan(luts.shape[0], n, nb)[1]

    def kernel(q0: int, q1: int, r0: int, r1: int, out_s: npt.NDArray[np.float32],
               out_i: npt.NDArray[np.int64]) -> None:
        ext.lut_topk(tables, bias, delta, q_sq_norms, codes, tail, n, scale, sq_norms, mask, k,
                     q0, q1, r0, r1, out_s, out_i, isa_id, nqsub, levels, None, None, None,
                     None, None, None, seed, _bound(scale_max), unsorted)

    return run_split(kernel, luts.shape[0], n, k, nb)


def _check_scale_max(scale_max: object, scale: npt.NDArray[np.float32] | None, n: int) -> None:
    """``scale_max`` must be None or a finite real number at least every ``scale[:n]``, which
    must all be >= 0 (the block pruning's premise)."""
    if scale_max is None:
        return
    ok = False
    if isinstance(scale_max, (int, float, np.integer, np.floating)) and not isinstance(
            scale_max, bool):
        bound = float(scale_max)
        ok = bool(np.isfinite(bound))
        if ok and scale is not None and n:
            head = scale[:n]
            ok = bound >= float(head.max()) and float(head.min()) >= 0
    if not ok:
        raise InvalidArgumentError(
            f"scale_max must be a finite bound on scale[:n], all >= 0, got {scale_max!r}")


def _bound(scale_max: float | None) -> float:
    """The kernel's ``scale_max``: NaN for none."""
    return float("nan") if scale_max is None else float(scale_max)


def lut_search(
    luts: npt.NDArray[np.uint8],
    bias: npt.NDArray[np.float32],
    delta: npt.NDArray[np.float32],
    codes: npt.NDArray[np.uint8],
    n: int,
    size: int,
    k: int,
    *,
    rtables: npt.NDArray[np.float32] | None = None,
    rqs: npt.NDArray[np.float32] | None = None,
    rlv: npt.NDArray[np.float32] | None = None,
    scale: npt.NDArray[np.float32] | None = None,
    sq_norms: npt.NDArray[np.float32] | None = None,
    q_sq_norms: npt.NDArray[np.float32] | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
    tail: npt.NDArray[np.uint8] | None = None,
    levels: npt.NDArray[np.uint8] | None = None,
    isa: str | None = None,
    scale_max: float | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]] | None:
    """:func:`lut_topk`'s shortlist of ``size >= 1`` rows per query rescored to the ``k``
    best in the same kernel call: the twin of
    :func:`~vecindex_core._kernels.fastscan.rescore_shortlist` of that shortlist (float
    tables ``rtables``, or the 4-bit products ``rqs`` with ``rlv``), the same results.
    Returns ``(scores, slots, counts)``, or None when the scan would split the rows over
    threads (the parts' shortlists are merged before the rescore, by the caller). The
    arguments come from this package's search code (as :func:`lut_topk` with
    ``trusted``)."""
    ext, isa_id = _resolve(isa)
    nq = luts.shape[0]
    threads, by_rows = scan_plan(nq, n, codes.shape[1] // BLOCK)
    if by_rows:
        return None
    out_s, out_i = np.empty((nq, size), dtype=np.float32), np.empty((nq, size), dtype=np.int64)
    fin = (np.empty((nq, k), dtype=np.float32), np.empty((nq, k), dtype=np.int64),
           np.empty(nq, dtype=np.int64))
    tables = luts if levels is None else luts.view(np.uint8)

    def kernel(a: int, b: int) -> None:
        ext.lut_topk(tables, bias, delta, q_sq_norms, codes, tail, n, scale, sq_norms, mask,
                     size, a, b, 0, n, out_s, out_i, isa_id, 0, levels, rtables, rqs, rlv,
                     *fin, None, _bound(scale_max))

    run_chunks(kernel, nq, min(threads, nq))
    return fin


# --------------------------------------------------------------------------- inverted lists
@numba.njit(nogil=True, cache=True)
def _first_bad_slot(ranges: np.ndarray, row_slots: np.ndarray, limit: int,
                    nblocks: int) -> int:
    """The first scanned entry whose slot is outside ``[0, limit)``, else -1.

    Every entry is read once however many queries scan it: a non-empty range covers a
    prefix of each of its blocks (it starts at a block), and ``done[b]`` counts the lanes
    of block ``b`` already checked.
    """
    done = np.zeros(nblocks, dtype=np.int64)
    nq, nr, _ = ranges.shape
    for q in range(nq):
        for t in range(nr):
            lo = ranges[q, t, 0]
            hi = ranges[q, t, 1]
            for b in range(lo >> 5, (hi + 31) >> 5 if hi > lo else lo >> 5):
                n = min(32, hi - 32 * b)
                for e in range(32 * b + done[b], 32 * b + n):
                    s = row_slots[e]
                    if s < 0 or s >= limit:
                        return e
                done[b] = max(done[b], n)
    return -1


def check_ivf_args(
    luts: npt.NDArray[np.uint8], bias: npt.NDArray[np.float32],
    delta: npt.NDArray[np.float32], codes: npt.NDArray[np.uint8],
    ranges: npt.NDArray[np.int64], hs: npt.NDArray[np.float32], hi: npt.NDArray[np.int64],
    row_slots: npt.NDArray[np.int32], list_bias: npt.NDArray[np.float32] | None,
    scale: npt.NDArray[np.float32] | None, sq_norms: npt.NDArray[np.float32] | None,
    q_sq_norms: npt.NDArray[np.float32] | None, mask: npt.NDArray[np.bool_] | None,
) -> int:
    """The checks both inverted-list scan paths make before writing anything (typed errors,
    as :func:`lut_ivf_topk`); returns the work (table lookups) that sizes the thread split."""
    from ..errors import DimensionMismatchError, InvalidDtypeError

    check_scan_args(luts, bias, delta, codes, 0, 0, scale, sq_norms, q_sq_norms, mask)
    for name, a, dt in (("ranges", ranges, np.int64), ("row_slots", row_slots, np.int32),
                        ("list_bias", list_bias, np.float32), ("hs", hs, np.float32),
                        ("hi", hi, np.int64)):
        if a is not None and (not isinstance(a, np.ndarray) or a.dtype != dt):
            got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
            raise InvalidDtypeError(f"{name} must be a {np.dtype(dt)} array, got {got}")
        if a is not None and not a.flags.c_contiguous:
            raise InvalidArgumentError(
                f"{name} must be C-contiguous, got shape {a.shape} with strides {a.strides}")
    nq = luts.shape[0]
    if ranges.ndim != 3 or ranges.shape[0] != nq or ranges.shape[2] != 2:
        raise DimensionMismatchError(f"ranges must be ({nq}, R, 2), got {ranges.shape}")
    nr = ranges.shape[1]
    if list_bias is not None and list_bias.shape != (nq, nr):
        raise DimensionMismatchError(
            f"list_bias must be ({nq}, {nr}) (one a range), got {list_bias.shape}")
    if hs.ndim != 2 or hs.shape[0] != nq or hs.shape[1] < 1 or hi.shape != hs.shape:
        raise DimensionMismatchError(
            f"hs and hi must both be ({nq}, k) with k >= 1, got {hs.shape} and {hi.shape}")
    for name, a in (("hs", hs), ("hi", hi)):
        if not a.flags.writeable:
            raise InvalidArgumentError(f"{name} must be writable (the heaps are updated)")
    inputs: tuple[tuple[str, np.ndarray | None], ...] = (
        ("hi", hi), ("luts", luts), ("bias", bias), ("delta", delta), ("codes", codes),
        ("ranges", ranges), ("row_slots", row_slots), ("list_bias", list_bias),
        ("scale", scale), ("sq_norms", sq_norms), ("q_sq_norms", q_sq_norms), ("mask", mask))
    for name, a in inputs:  # C-contiguous: overlapping bounds are shared bytes
        if a is not None and np.may_share_memory(hs, a):
            raise InvalidArgumentError(f"hs shares memory with {name}")
        if a is not None and a is not hi and np.may_share_memory(hi, a):
            raise InvalidArgumentError(f"hi shares memory with {name}")
    if row_slots.ndim != 1:
        raise DimensionMismatchError(f"row_slots must be 1-D, got shape {row_slots.shape}")
    lo, up = ranges[..., 0], ranges[..., 1]
    entries = codes.shape[0] * BLOCK
    full = lo < up
    bad = (lo > up) | (lo < 0) | (full & ((lo % BLOCK != 0) | (up > entries)))
    if bad.any():
        q, t = (int(v) for v in np.argwhere(bad)[0])
        raise InvalidArgumentError(
            f"ranges[{q}, {t}] = [{int(lo[q, t])}, {int(up[q, t])}) must have 0 <= lo <= hi "
            f"<= {entries} (32 entries a block of codes) and, when not empty, lo a multiple "
            f"of {BLOCK}")
    top = int(up[full].max()) if full.any() else 0
    for name, a in (("row_slots", row_slots), ("scale", scale), ("sq_norms", sq_norms)):
        if a is not None and a.shape[0] < top:
            raise DimensionMismatchError(
                f"{name} must have an entry for every scanned entry (at least {top}), got "
                f"{a.shape[0]}")
    if mask is not None and full.any():
        e = int(_first_bad_slot(ranges, row_slots, mask.shape[0], codes.shape[0]))
        if e >= 0:
            raise DimensionMismatchError(
                f"mask has {mask.shape[0]} entries, but scanned entry {e} has slot "
                f"{int(row_slots[e])} (every scanned slot must index the mask)")
    return ivf_work(luts, ranges)


def ivf_work(luts: npt.NDArray[np.uint8], ranges: npt.NDArray[np.int64]) -> int:
    """Table lookups of an inverted-list scan (sizes its thread split)."""
    return max(0, int((ranges[..., 1] - ranges[..., 0]).sum())) * luts.shape[1] * 2


def lut_ivf_topk(
    luts: npt.NDArray[np.uint8],
    bias: npt.NDArray[np.float32],
    delta: npt.NDArray[np.float32],
    codes: npt.NDArray[np.uint8],
    ranges: npt.NDArray[np.int64],
    hs: npt.NDArray[np.float32],
    hi: npt.NDArray[np.int64],
    *,
    row_slots: npt.NDArray[np.int32],
    list_bias: npt.NDArray[np.float32] | None = None,
    scale: npt.NDArray[np.float32] | None = None,
    sq_norms: npt.NDArray[np.float32] | None = None,
    q_sq_norms: npt.NDArray[np.float32] | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
    isa: str | None = None,
    trusted: bool = False,
) -> None:
    """Native :func:`vecindex_core._kernels.fastscan.fastscan_ivf_ref`: continue each
    query's heap over its inverted lists, in place (heaps with the same entries bit for bit).

    Parameters
    ----------
    luts, bias, delta, codes, ranges, hs, hi, row_slots, list_bias, scale, sq_norms, \
q_sq_norms, mask, trusted
        As :func:`~vecindex_core._kernels.fastscan.fastscan_ivf_ref`.
    isa : str, optional
        Instruction-set path; default :func:`~vecindex_core._native.active_isa`.

    Raises
    ------
    InvalidDtypeError, DimensionMismatchError, InvalidArgumentError
        As :func:`~vecindex_core._kernels.fastscan.fastscan_ivf_ref` (checked before the
        heaps are written: a failed call changes nothing); no native path.

    Notes
    -----
    Queries are split over :func:`~vecindex_core._threads.get_num_threads` threads when
    there is enough work; the kernel scans one query at a time (its tables stay in L1),
    releases the GIL and is reentrant. The kernel also bounds-checks every offered slot
    against the mask (it cannot fail after the check above).
    """
    ext, isa_id = _resolve(isa)
    if trusted:
        work = ivf_work(luts, ranges)
    else:
        work = check_ivf_args(luts, bias, delta, codes, ranges, hs, hi, row_slots, list_bias,
                              scale, sq_norms, q_sq_norms, mask)

    def kernel(q0: int, q1: int) -> None:
        ext.lut_ivf_topk(luts, bias, delta, q_sq_norms, codes, ranges, list_bias, scale,
                         sq_norms, row_slots, mask, q0, q1, hs, hi, isa_id)

    nq = luts.shape[0]
    run_chunks(kernel, nq, thread_count(nq, work, MIN_WORK_PER_THREAD))


# --------------------------------------------------------------------------- planes
def _check_rows_arg(name: str, rows: object, k: object, least: int) -> None:
    """The planes steps' row lists must be 2-D int64 arrays and their result counts integers
    >= least (the kernels check the rest)."""
    from ..errors import InvalidDtypeError

    if not isinstance(rows, np.ndarray) or rows.dtype != np.int64 or rows.ndim != 2:
        raise InvalidDtypeError(f"{name} must be a 2-D int64 array, got "
                                f"{getattr(rows, 'dtype', type(rows).__name__)}")
    check_int(k, "the result count", least)


def planes_rank(
    cand: npt.NDArray[np.int64], s1: npt.NDArray[np.float32], low: npt.NDArray[np.uint8],
    nb1: int, nplanes: int, w: npt.NDArray[np.int8], wsum: npt.NDArray[np.int64],
    u: npt.NDArray[np.float32], beta: npt.NDArray[np.float64], kk: int, *,
    scale: npt.NDArray[np.float32] | None = None, l2: bool = False, isa: str | None = None,
) -> npt.NDArray[np.int64]:
    """Native :func:`vecindex_core._kernels.planes.rank_ref` (same arguments, the same rows
    bit for bit); queries split over the threads. The kernel checks every buffer (dtype,
    shape, contiguity, rows within ``low``) with typed errors."""
    ext, isa_id = _resolve(isa)
    _check_rows_arg("cand", cand, kk, 1)
    check_int(nb1, "nb1", 0)
    check_int(nplanes, "nplanes", 0)
    nq = cand.shape[0]
    out_e = np.empty((nq, kk), dtype=np.float64)
    out_i = np.empty((nq, kk), dtype=np.int64)

    def kernel(a: int, b: int) -> None:
        ext.planes_rank(cand, s1, low, nb1, nplanes, w, wsum, u, beta, scale,
                        2.0 if l2 else 1.0, out_e, out_i, a, b, isa_id)

    run_chunks(kernel, nq, thread_count(nq, cand.size * low.shape[1], MIN_WORK_PER_THREAD))
    return out_i


def planes_rescore(
    kept: npt.NDArray[np.int64], sign: npt.NDArray[np.uint8],
    tail: npt.NDArray[np.uint8] | None, n: int, low: npt.NDArray[np.uint8], nb1: int,
    bits: int, k: int, *, rtables: npt.NDArray[np.float32] | None = None,
    rqs: npt.NDArray[np.float32] | None = None, rlv: npt.NDArray[np.float32] | None = None,
    scale: npt.NDArray[np.float32] | None = None,
    sq_norms: npt.NDArray[np.float32] | None = None,
    q_sq_norms: npt.NDArray[np.float32] | None = None, isa: str | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Native :func:`vecindex_core._kernels.planes.rescore_ref` (the same results bit for
    bit); queries split over the threads. Returns ``(scores, slots, counts)``."""
    ext, isa_id = _resolve(isa)
    _check_rows_arg("kept", kept, k, 0)
    for name, v in (("n", n), ("nb1", nb1), ("bits", bits)):
        check_int(v, name, 0)
    nq = kept.shape[0]
    out = (np.empty((nq, k), dtype=np.float32), np.empty((nq, k), dtype=np.int64),
           np.empty(nq, dtype=np.int64))

    def kernel(a: int, b: int) -> None:
        ext.planes_rescore(kept, sign, tail, n, low, nb1, bits, rtables, rqs, rlv, scale,
                           sq_norms, q_sq_norms, *out, a, b, isa_id)

    m = next((t.shape[1] for t in (rtables, rqs) if t is not None), 1)  # sub-codes a row
    run_chunks(kernel, nq, thread_count(nq, kept.size * m * 8, MIN_WORK_PER_THREAD))
    return out
