"""Thread count used by vecindex kernels, and a shared pool for nogil kernels.

The default is ``VECINDEX_NUM_THREADS`` when set, else the number of CPUs. BLAS threads are
not changed here; pin them with ``threadpoolctl`` (the benchmark runner does).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

__all__ = [
    "get_num_threads",
    "map_chunks",
    "one_blas_thread",
    "run_chunks",
    "set_num_threads",
    "split_plan",
    "thread_count",
]

_lock = threading.Lock()
_num_threads = max(1, int(os.environ.get("VECINDEX_NUM_THREADS", 0)) or (os.cpu_count() or 1))
_pool: ThreadPoolExecutor | None = None


def get_num_threads() -> int:
    """Number of threads kernels may use."""
    return _num_threads


def set_num_threads(n: int) -> None:
    """Set the number of threads kernels may use (``n >= 1``)."""
    global _num_threads, _pool
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        from .errors import InvalidArgumentError

        raise InvalidArgumentError(f"num_threads must be an integer >= 1, got {n!r}")
    with _lock:
        _num_threads = n
        if _pool is not None:
            _pool.shutdown(wait=False)
            _pool = None


def map_chunks(fn: Callable[[int, int], None], n: int, nthreads: int) -> None:
    """Run ``fn(start, stop)`` over ``nthreads`` contiguous chunks of ``range(n)``: the first
    on the calling thread, the others on the shared pool. Every chunk has finished when this
    returns or raises (the first error, in chunk order)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_num_threads, thread_name_prefix="vecindex")
        pool = _pool
    step = -(-n // nthreads)
    # the first chunk runs on the calling thread: one hand-off fewer (waking a pool thread
    # took ~75 us on the 2-core development VM, as long as a single query's scan)
    futures = [pool.submit(fn, s, min(s + step, n)) for s in range(step, n, step)]
    error: BaseException | None = None
    try:
        fn(0, min(step, n))
    except BaseException as e:  # the other chunks still finish before this returns
        error = e
    while True:  # an interrupt while waiting does not abandon a running chunk
        try:
            wait(futures)
            break
        except BaseException as e:
            error = error or e
    for f in futures:
        if f.exception() is not None:
            error = error or f.exception()
    if error is not None:
        raise error


def thread_count(n: int, work: int, min_work: int) -> int:
    """Threads worth using for ``n`` independent items totalling ``work``: at most
    :func:`get_num_threads` and ``n``, and one per ``min_work`` of work (at least 1)."""
    return max(1, min(_num_threads, n, work // max(min_work, 1)))


def run_chunks(fn: Callable[[int, int], None], n: int, threads: int) -> None:
    """``fn(0, n)`` on the calling thread when ``threads`` is 1 (nothing when ``n`` is 0),
    else :func:`map_chunks`."""
    if threads > 1:
        map_chunks(fn, n, threads)
    elif n:
        fn(0, n)


def split_plan(nq: int, work: int, min_work: int,
               min_rows_work: int | None = None) -> tuple[int, bool]:
    """How a top-k scan of ``nq`` queries over shared rows uses the threads: ``(threads,
    by_rows)``. One thread below ``min_work``; queries split when there are at least two a
    thread; otherwise (``by_rows``) each thread scans a share of the rows for every query
    into its own top-k lists, which the caller merges, and then each thread needs
    ``min_rows_work`` (default ``min_work``): a few queries' split gains only what their
    scan costs, so it must outweigh waking the threads and merging."""
    threads = max(1, min(_num_threads, work // max(min_work, 1)))
    if threads > 1 and nq < 2 * threads and min_rows_work is not None:
        threads = max(1, min(_num_threads, work // max(min_rows_work, 1)))
    return threads, threads > 1 and nq < 2 * threads


_blas_controller: Any = None


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Pin the BLAS libraries loaded in the process to one thread for the block.

    A cached ``threadpoolctl.ThreadpoolController`` (0.02-0.04 ms a call instead of 0.6-1.3 ms
    for a fresh ``threadpool_limits``, measured), so per-search use stays cheap. Used where a
    result must not depend on the thread count, or where BLAS threads only add hand-offs.
    """
    global _blas_controller
    if _blas_controller is None:
        from threadpoolctl import ThreadpoolController

        _blas_controller = ThreadpoolController()
    with _blas_controller.limit(limits=1, user_api="blas"):
        yield
