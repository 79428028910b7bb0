"""Small timing helpers shared by the benchmark scripts in ``benchmarks/``.

Every helper takes plain callables, so ours and a peer are timed by the same code.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "best_of",
    "best_of_pair",
    "ids64",
    "json_default",
    "log",
    "median_latency_us",
    "source_fingerprint",
    "timed",
    "write_results",
]


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


def source_fingerprint(relative: Iterable[str]) -> dict[str, str]:
    """sha256 (first 16 hex) of ``vecindex_core`` source files (paths relative to the
    package, globs allowed), to tie benchmark results to the code that produced them."""
    root = Path(__file__).resolve().parents[1]
    files = sorted({f for pattern in relative for f in root.glob(pattern)})
    return {str(f.relative_to(root.parent)): hashlib.sha256(f.read_bytes()).hexdigest()[:16]
            for f in files}


def json_default(o: Any) -> Any:
    """``json.dumps`` fallback for numpy scalars and arrays (anything else as ``str``)."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def write_results(out: str | Path, stem: str, res: dict[str, Any], md: str) -> None:
    """Write ``<stem>.json`` and ``<stem>.md`` under ``out`` (created) and log where."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2, default=json_default) + "\n")
    (out / f"{stem}.md").write_text(md)
    log(f"results: {out / stem}.{{json,md}} ({res.get('elapsed_s', 0):.0f} s)")
