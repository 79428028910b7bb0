"""Small timing helpers shared by the benchmark scripts in ``benchmarks/``.

Every helper takes plain callables, so ours and a peer are timed by the same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["best_of", "best_of_pair", "ids64", "log", "median_latency_us", "timed"]


def log(msg: str) -> None:
    """Print a progress line immediately."""
    print(msg, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one call, and what it returned."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Best wall time of ``repeats`` calls after one untimed warm-up call, and all times."""
    fn()
    times = [timed(fn)[0] for _ in range(repeats)]
    return min(times), times


def best_of_pair(
    a: Callable[[], Any], b: Callable[[], Any], repeats: int
) -> tuple[list[float], list[float]]:
    """Wall times of ``repeats`` calls of ``a`` and ``b``, alternated, after a warm-up each."""
    a()
    b()
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(timed(a)[0])
        tb.append(timed(b)[0])
    return ta, tb


def median_latency_us(
    fn: Callable[[np.ndarray], Any], q: np.ndarray, n: int
) -> dict[str, float]:
    """Median / p99 / mean latency in µs over ``n`` single-query calls (after a warm-up)."""
    fn(q[:1])
    lat = []
    for i in range(n):
        qi = q[i % q.shape[0] : i % q.shape[0] + 1]
        t0 = time.perf_counter()
        fn(qi)
        lat.append((time.perf_counter() - t0) * 1e6)
    a = np.array(lat)
    return {"p50_us": float(np.median(a)), "p99_us": float(np.percentile(a, 99)),
            "mean_us": float(a.mean())}


def ids64(ids: np.ndarray) -> np.ndarray:
    """uint64 ids (2**64-1 = missing) or int64 slots as int64 with -1 padding."""
    return np.asarray(ids).astype(np.int64)
