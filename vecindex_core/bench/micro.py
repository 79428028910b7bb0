"""Micro-benchmarks: single-id add/remove against turbovec, and index load time and memory.

:func:`bench_idmap_ops`
    On an index that already holds ``n_base`` vectors, ``n_ops`` single-vector adds then
    ``n_ops`` single-id removes, timed one call at a time, for ``vecindex_core.create("flat")``
    (``add(x1, ids=[id])`` / ``remove([id])``) and ``turbovec.IdMapIndex(dim, bit_width=4)``
    (``add_with_ids`` / ``remove``), in this process with the same vectors and ids. Run at
    several ``n_base`` sizes, flat per-op times are the evidence that add and remove are
    O(1) in the index size.
:func:`bench_load`
    Save an ``n x dim`` flat index, then measure :func:`vecindex_core.load` against
    ``numpy.load`` of the same float32 matrix saved as ``.npy``: load time, and peak memory
    both as numpy allocations traced by :mod:`tracemalloc` (numpy reports its buffers to
    it) and as the resident-set high-water mark of a fresh subprocess.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..types import Metric
from .env import environment_info

__all__ = [
    "IdmapOpsReport",
    "LoadReport",
    "MAX_PEAK_OVER_PAYLOAD",
    "bench_idmap_ops",
    "bench_load",
]

#: Peak memory of a load over the payload it returns must stay at or below this.
MAX_PEAK_OVER_PAYLOAD = 1.2


def _op_stats(ns: npt.NDArray[np.float64]) -> dict[str, float]:
    us = ns / 1e3
    return {
        "mean_us": float(us.mean()),
        "p50_us": float(np.median(us)),
        "p99_us": float(np.percentile(us, 99)),
    }


def _time_ops(n: int, op: Callable[[int], object]) -> npt.NDArray[np.float64]:
    """Time ``op(i)`` for ``i in range(n)`` one call at a time, with the GC paused."""
    out = np.empty(n, dtype=np.float64)
    enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(n):
            t = time.perf_counter_ns()
            op(i)
            out[i] = time.perf_counter_ns() - t
    finally:
        if enabled:
            gc.enable()
    return out


@dataclass
class _OpInputs:
    """Per-call inputs shared by both libraries (built before any timing)."""

    add_x: list[npt.NDArray[np.float32]]
    add_ids: list[npt.NDArray[np.uint64]]
    rm_ids: list[npt.NDArray[np.uint64]]
    warm_x: npt.NDArray[np.float32]
    warm_ids: npt.NDArray[np.uint64]


def _time_ours(index: Any, inp: _OpInputs) -> tuple[np.ndarray, np.ndarray]:
    for i in range(inp.warm_x.shape[0]):
        index.add(inp.warm_x[i : i + 1], ids=inp.warm_ids[i : i + 1])
    for i in range(inp.warm_x.shape[0]):
        index.remove(inp.warm_ids[i : i + 1])
    add_x, add_ids, rm_ids = inp.add_x, inp.add_ids, inp.rm_ids
    add_ns = _time_ops(len(add_x), lambda i: index.add(add_x[i], ids=add_ids[i]))
    rm_ns = _time_ops(len(rm_ids), lambda i: index.remove(rm_ids[i]))
    return add_ns, rm_ns


def _time_turbovec(index: Any, inp: _OpInputs) -> tuple[np.ndarray, np.ndarray]:
    for i in range(inp.warm_x.shape[0]):
        index.add_with_ids(inp.warm_x[i : i + 1], inp.warm_ids[i : i + 1])
    for v in inp.warm_ids:
        index.remove(int(v))
    add_x, add_ids = inp.add_x, inp.add_ids
    rm_int = [int(v[0]) for v in inp.rm_ids]  # turbovec's remove takes one int id
    add_ns = _time_ops(len(add_x), lambda i: index.add_with_ids(add_x[i], add_ids[i]))
    rm_ns = _time_ops(len(rm_int), lambda i: index.remove(rm_int[i]))
    return add_ns, rm_ns


@dataclass
class IdmapOpsReport:
    """Result of :func:`bench_idmap_ops`.

    Attributes
    ----------
    rows : list of dict
        One per library x ``n_base``: ``library``, ``n_base``, ``n_ops``, ``add`` and
        ``remove`` (each ``mean_us``, ``p50_us``, ``p99_us`` per operation).
    config : dict
        ``n_ops``, ``dim``, ``metric``, ``sizes``, ``seed``.
    skipped : dict of str to str
        Libraries that could not run, with the reason.
    environment : dict
    """

    rows: list[dict[str, Any]]
    config: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)

    def row(self, library: str, n_base: int) -> dict[str, Any]:
        """The row of ``library`` at ``n_base``; raises KeyError when it was not measured."""
        for r in self.rows:
            if r["library"] == library and r["n_base"] == n_base:
                return r
        raise KeyError(f"no row for {library!r} at n_base={n_base}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    def to_markdown(self) -> str:
        """Table of µs per operation, with ratios vs turbovec at the same ``n_base``."""
        head = (
            "| library | n_base | add µs/op (mean) | add p50 | add p99 | remove µs/op (mean) "
            "| remove p50 | remove p99 | add / turbovec | remove / turbovec |"
        )
        lines = [head, "|" + "---|" * 10]
        for r in self.rows:
            try:
                tv = self.row("turbovec", r["n_base"])
                ratios = [
                    f"{r['add']['mean_us'] / tv['add']['mean_us']:.2f}x",
                    f"{r['remove']['mean_us'] / tv['remove']['mean_us']:.2f}x",
                ]
            except KeyError:
                ratios = ["-", "-"]
            lines.append(
                f"| {r['library']} | {r['n_base']:,} | {r['add']['mean_us']:.2f} | "
                f"{r['add']['p50_us']:.2f} | {r['add']['p99_us']:.2f} | "
                f"{r['remove']['mean_us']:.2f} | {r['remove']['p50_us']:.2f} | "
                f"{r['remove']['p99_us']:.2f} | {ratios[0]} | {ratios[1]} |"
            )
        ours = sorted((r for r in self.rows if r["library"] == "vecindex"),
                      key=lambda r: r["n_base"])
        notes = [
            "",
            f"{self.config['n_ops']:,} single-vector adds, then {self.config['n_ops']:,} "
            f"single-id removes (random present ids), dim {self.config['dim']}, metric "
            f"{self.config['metric']}; each call timed alone with the GC paused. Ratios are "
            "time per op over turbovec's (lower is better).",
        ]
        if len(ours) >= 2:
            lo, hi = ours[0], ours[-1]
            notes.append(
                f"O(1) check (vecindex): n_base {lo['n_base']:,} → {hi['n_base']:,} "
                f"({hi['n_base'] / lo['n_base']:.0f}x larger): add "
                f"{hi['add']['mean_us'] / lo['add']['mean_us']:.2f}x, remove "
                f"{hi['remove']['mean_us'] / lo['remove']['mean_us']:.2f}x per op."
            )
        for lib, why in self.skipped.items():
            notes.append(f"- skipped {lib}: {why}")
        return "\n".join(lines + notes) + "\n"


def bench_idmap_ops(
    n_base: int = 100_000,
    n_ops: int = 10_000,
    dim: int = 384,
    *,
    sizes: Sequence[int] | None = None,
    metric: Metric = "ip",
    seed: int = 0,
    turbovec: bool = True,
) -> IdmapOpsReport:
    """Time single-vector adds and single-id removes on a large id-mapped index.

    Parameters
    ----------
    n_base : int
        Vectors in the index before the timed operations.
    n_ops : int
        Timed single adds (ids ``n_base..n_base+n_ops-1``), then timed single removes of
        ``n_ops`` distinct ids drawn at random from all ids present.
    dim : int
    sizes : sequence of int, optional
        The ``n_base`` values to run; default ``(min(10_000, n_base), n_base)``, which shows
        whether per-op time depends on the index size.
    metric : {"ip", "cosine", "l2"}
        Metric of our index (turbovec scores by inner product).
    seed : int
        Seed of the random vectors and of the remove order.
    turbovec : bool
        Also measure ``turbovec.IdMapIndex(dim, bit_width=4)``; skipped with the reason
        when not installed.

    Returns
    -------
    IdmapOpsReport

    Notes
    -----
    Both libraries get the same inputs: a ``(1, dim)`` float32 row view and a length-1
    uint64 id array per add, a length-1 uint64 id array (ours) or the int (turbovec, whose
    ``remove`` takes one id) per remove. Before timing, 100 adds and removes of other ids
    warm up each library (numba kernels compile or load from cache on first use).
    """
    from ..api import create

    size_list = sorted({int(s) for s in (sizes or (min(10_000, n_base), n_base))})
    rng = np.random.default_rng(seed)
    total = max(size_list)
    base = rng.standard_normal((total, dim), dtype=np.float32)
    extra = rng.standard_normal((n_ops, dim), dtype=np.float32)
    warm = rng.standard_normal((100, dim), dtype=np.float32)
    skipped: dict[str, str] = {}
    tv_mod: Any = None
    if turbovec:
        try:
            import turbovec as _tv

            tv_mod = _tv
        except Exception as e:
            skipped["turbovec"] = f"turbovec is not installed or failed to import: {e}"

    rows: list[dict[str, Any]] = []
    for size in size_list:
        new_ids = np.arange(size, size + n_ops, dtype=np.uint64)
        order = rng.permutation(size + n_ops)[:n_ops].astype(np.uint64)
        inputs = _OpInputs(
            add_x=[extra[i : i + 1] for i in range(n_ops)],
            add_ids=[new_ids[i : i + 1] for i in range(n_ops)],
            rm_ids=[order[i : i + 1] for i in range(n_ops)],
            warm_x=warm,
            warm_ids=np.arange(2**40, 2**40 + warm.shape[0], dtype=np.uint64),
        )
        ours: Any = create("flat", dim=dim, metric=metric)
        ours.add(base[:size], ids=np.arange(size, dtype=np.uint64))
        add_ns, rm_ns = _time_ours(ours, inputs)
        rows.append(
            {"library": "vecindex", "call": "create('flat').add(x1, ids=[id]) / remove([id])",
             "n_base": size, "n_ops": n_ops, "add": _op_stats(add_ns),
             "remove": _op_stats(rm_ns), "ntotal_after": len(ours)}
        )
        del ours
        gc.collect()
        if tv_mod is not None:
            theirs: Any = tv_mod.IdMapIndex(dim, bit_width=4)
            theirs.add_with_ids(base[:size], np.arange(size, dtype=np.uint64))
            add_ns, rm_ns = _time_turbovec(theirs, inputs)
            rows.append(
                {"library": "turbovec",
                 "call": "IdMapIndex(dim, bit_width=4).add_with_ids(x1, [id]) / remove(id)",
                 "n_base": size, "n_ops": n_ops, "add": _op_stats(add_ns),
                 "remove": _op_stats(rm_ns), "ntotal_after": None}
            )
            del theirs
            gc.collect()

    return IdmapOpsReport(
        rows=rows,
        config={"n_ops": n_ops, "dim": dim, "metric": metric, "sizes": size_list, "seed": seed},
        skipped=skipped,
        environment=environment_info(),
    )


# --------------------------------------------------------------------------- load

_CHILD = r"""
import json, os, sys, time
from pathlib import Path
kind, path, warm = sys.argv[1], sys.argv[2], sys.argv[3]
import numpy as np
import vecindex_core as vc
def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None
load = vc.load if kind == "vecindex" else np.load
obj = load(warm)          # warm-up: numba kernels compile or load from their cache
del obj
reset = True
try:
    Path("/proc/self/clear_refs").write_text("5")   # reset the RSS high-water mark
except OSError:
    reset = False
before = status("VmRSS")
hwm_before = status("VmHWM")
t = time.perf_counter()
obj = load(path)
secs = time.perf_counter() - t
print(json.dumps({"rss_before": before, "hwm_before": hwm_before, "hwm_after": status("VmHWM"),
                  "hwm_reset": reset, "load_s": secs}))
"""


def _child_rss(kind: str, path: Path, warm: Path) -> dict[str, Any]:
    """Load ``path`` in a fresh interpreter and report its RSS high-water growth."""
    pkg_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, str(path), str(warm)],
        capture_output=True, text=True, env=env, check=False, timeout=600,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    info: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if info.get("rss_before") is None or info.get("hwm_after") is None:
        info["error"] = "/proc/self/status is not available on this platform"
        return info
    # without a reset the high-water mark may predate the load; then it is only a bound
    info["peak_bytes"] = info["hwm_after"] - info["rss_before"]
    return info


@dataclass
class LoadReport:
    """Result of :func:`bench_load`.

    Attributes
    ----------
    rows : list of dict
        One per loader (``vecindex_core.load``, ``numpy.load``): ``load_s`` (best),
        ``load_s_all``, ``file_bytes``, ``tracemalloc_peak_bytes``, ``tracemalloc_ratio``
        (peak over payload) and, from the subprocess, ``rss_peak_bytes``, ``rss_ratio``.
    payload_bytes : int
        The float32 vectors, ``n * dim * 4``.
    config : dict
    environment : dict
    """

    rows: list[dict[str, Any]]
    payload_bytes: int
    config: dict[str, Any]
    environment: dict[str, Any] = field(default_factory=dict)

    def row(self, loader: str) -> dict[str, Any]:
        """The row of ``loader`` (``"vecindex_core.load"`` or ``"numpy.load"``)."""
        for r in self.rows:
            if r["loader"] == loader:
                return r
        raise KeyError(f"no row for {loader!r}")

    @property
    def ok(self) -> bool:
        """Whether our load's peak memory over payload is at most ``MAX_PEAK_OVER_PAYLOAD``."""
        r = self.row("vecindex_core.load")
        ratios = [r["tracemalloc_ratio"], r.get("rss_ratio")]
        return all(x <= MAX_PEAK_OVER_PAYLOAD for x in ratios if x is not None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {**asdict(self), "ok": self.ok}

    def to_markdown(self) -> str:
        """Table of load time and peak memory over payload, with our/numpy ratios."""
        lines = [
            "| loader | load s (best) | time / numpy | tracemalloc peak MiB | peak / payload "
            "| RSS HWM Δ MiB | RSS Δ / payload |",
            "|---|---|---|---|---|---|---|",
        ]
        ref = self.row("numpy.load")["load_s"]
        for r in self.rows:
            rss, rss_ratio = r.get("rss_peak_bytes"), r.get("rss_ratio")
            rss_txt = "-" if rss is None else f"{rss / 2**20:.1f}"
            ratio_txt = "-" if rss_ratio is None else f"{rss_ratio:.3f}"
            lines.append(
                f"| {r['loader']} | {r['load_s']:.4f} | {r['load_s'] / ref:.2f}x | "
                f"{r['tracemalloc_peak_bytes'] / 2**20:.1f} | {r['tracemalloc_ratio']:.3f} | "
                f"{rss_txt} | {ratio_txt} |"
            )
        c = self.config
        lines += [
            "",
            f"{c['n']:,} x {c['dim']} float32 (payload {self.payload_bytes / 2**20:.1f} MiB), "
            f"files in the page cache, best of {c['repeats']} loads. tracemalloc: peak of "
            "traced allocations (numpy buffers included) during one load. RSS: high-water "
            "growth of a fresh subprocess over one load after a warm-up load "
            f"(high-water reset: {self.rows[0].get('hwm_reset')}). "
            f"Bar: peak / payload ≤ {MAX_PEAK_OVER_PAYLOAD} — "
            f"{'met' if self.ok else 'NOT met'}.",
        ]
        return "\n".join(lines) + "\n"


def bench_load(
    n: int = 100_000,
    dim: int = 384,
    *,
    metric: Metric = "ip",
    repeats: int = 3,
    seed: int = 0,
    workdir: str | os.PathLike[str] | None = None,
    rss: bool = True,
) -> LoadReport:
    """Compare :func:`vecindex_core.load` of a flat index with ``numpy.load`` of its matrix.

    Parameters
    ----------
    n, dim : int
        Size of the float32 matrix.
    metric : {"ip", "cosine", "l2"}
        Metric of the saved index (``l2`` rebuilds squared norms on load).
    repeats : int
        Timed loads of each file; the best is reported.
    seed : int
    workdir : str or PathLike, optional
        Directory for the temporary files (default: the system temp dir).
    rss : bool
        Also measure the RSS high-water growth of each load in a fresh subprocess.

    Returns
    -------
    LoadReport
    """
    from ..api import create, load

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    if metric == "cosine":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    payload = int(x.nbytes)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vecindex-bench-load-", dir=workdir) as tmp:
        d = Path(tmp)
        index = create("flat", dim=dim, metric=metric)
        index.add(x)
        index.save(d / "index.vecindex")
        np.save(d / "base.npy", x, allow_pickle=False)
        small = create("flat", dim=dim, metric=metric)
        small.add(x[:10])
        small.save(d / "warm.vecindex")
        np.save(d / "warm.npy", x[:10], allow_pickle=False)
        del index, small, x
        gc.collect()
        loaders: list[tuple[str, str, Callable[[Path], object], Path, Path]] = [
            ("vecindex_core.load", "vecindex", load, d / "index.vecindex", d / "warm.vecindex"),
            ("numpy.load", "numpy", np.load, d / "base.npy", d / "warm.npy"),
        ]
        for label, kind, fn, path, warm in loaders:
            obj = fn(warm)  # warm-up
            del obj
            times = []
            for _ in range(repeats):
                gc.collect()
                t = time.perf_counter()
                obj = fn(path)
                times.append(time.perf_counter() - t)
                del obj
            gc.collect()
            tracemalloc.start()
            try:
                tracemalloc.reset_peak()
                obj = fn(path)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            del obj
            gc.collect()
            row: dict[str, Any] = {
                "loader": label,
                "load_s": min(times),
                "load_s_all": times,
                "file_bytes": path.stat().st_size,
                "tracemalloc_peak_bytes": int(peak),
                "tracemalloc_ratio": peak / payload,
                "rss_peak_bytes": None,
                "rss_ratio": None,
            }
            if rss:
                child = _child_rss(kind, path, warm)
                row["subprocess"] = child
                if "peak_bytes" in child:
                    row["rss_peak_bytes"] = int(child["peak_bytes"])
                    row["rss_ratio"] = child["peak_bytes"] / payload
                    row["hwm_reset"] = child.get("hwm_reset")
            rows.append(row)
    return LoadReport(
        rows=rows,
        payload_bytes=payload,
        config={"n": n, "dim": dim, "metric": metric, "repeats": repeats, "seed": seed},
        environment=environment_info(),
    )
