"""Benchmarks: our indexes against peer libraries, in one process on the same data.

The runner (:func:`run_benchmark`) measures build time, recall@k against exact ground
truth, batched queries per second, single-query latency and memory, for every spec of ours
and every peer (numpy, faiss, hnswlib) at each requested thread count, and records the
environment (CPU, versions, BLAS/OpenMP pools and the env vars that choose their kernels).
Results render to JSON, a markdown table and a recall-vs-QPS plot. The micro-benchmarks
:func:`bench_idmap_ops` and :func:`bench_load` cover single-id updates and index loading.

The command line exposes the same runner as ``vecindex bench``. Peer libraries, matplotlib
and tqdm are imported only when used (``pip install vecindex[bench]`` installs them all).

Example::

    from vecindex_core.datasets import load_dataset
    from vecindex_core.bench import run_benchmark

    report = run_benchmark(load_dataset("sample"), ["flat"], peers=["faiss", "numpy"],
                           k_values=(1, 10), threads=(1, 2), out_dir="bench-out")
    print(report.to_markdown())
"""

from __future__ import annotations

from .micro import IdmapOpsReport, LoadReport, bench_idmap_ops, bench_load
from .peers import PEERS, PeerUnavailable
from .report import BenchReport, EntryResult, SkippedEntry
from .runner import DEFAULT_PEERS, pinned_threads, recall_at_k, run_benchmark

__all__ = [
    "DEFAULT_PEERS",
    "PEERS",
    "BenchReport",
    "EntryResult",
    "IdmapOpsReport",
    "LoadReport",
    "PeerUnavailable",
    "SkippedEntry",
    "bench_idmap_ops",
    "bench_load",
    "pinned_threads",
    "recall_at_k",
    "run_benchmark",
]
