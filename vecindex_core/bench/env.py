"""What a benchmark ran on: CPU, library versions, thread pools and the env vars that matter.

BLAS kernels are chosen at load time from the CPU *and* from environment variables such as
``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE``; two runs on the same machine with different
values are different experiments. :func:`environment_info` records them next to
``threadpoolctl.threadpool_info()`` (each loaded BLAS/OpenMP library with its
``architecture`` and thread count), so a result file says exactly which kernels ran.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_PREFIXES",
    "cpu_model",
    "environment_info",
    "release_free_memory",
    "rss_bytes",
    "thread_env",
]

#: Environment variables with these prefixes are recorded (they choose kernels and threads).
ENV_PREFIXES = ("OPENBLAS_", "GOTO", "OMP_", "KMP_", "MKL_", "BLIS_", "NUMBA_", "VECINDEX_")


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def thread_env() -> dict[str, str]:
    """Environment variables that choose BLAS kernels or thread counts, sorted by name."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)}


def rss_bytes() -> int | None:
    """Current resident set size of this process in bytes (Linux), or None."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def release_free_memory() -> bool:
    """Return freed heap pages to the OS (glibc ``malloc_trim(0)``); False where unavailable.

    Called before an RSS baseline so that the growth measured over a build is the build's
    own memory, not pages freed by an earlier entry and kept by the allocator.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL(name).malloc_trim(0))
    except (OSError, AttributeError):
        return False


def _cpu_flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "fma", "neon", "asimd", "sve")
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("flags", "features")):
                have = set(line.split(":", 1)[1].split())
                return [f for f in wanted if f in have]
    except OSError:
        pass
    return []


def environment_info() -> dict[str, Any]:
    """Describe the machine and software a benchmark runs on, as JSON-ready data.

    Call it after the peers have been imported: ``threadpool_info`` lists only the BLAS and
    OpenMP libraries already loaded into the process (faiss brings its own).

    Returns
    -------
    dict
        ``cpu_model``, ``cpu_flags``, ``cpu_count``, ``cpu_affinity``, ``platform``,
        ``python``, ``versions`` (vecindex, numpy, numba, threadpoolctl and each peer that
        is installed), ``vecindex_num_threads``, ``thread_env`` (see :data:`ENV_PREFIXES`)
        and ``threadpool_info``.
    """
    from importlib.metadata import PackageNotFoundError, version

    import numpy as np

    from .. import __version__, get_num_threads
    from .peers import peer_versions

    versions: dict[str, str | None] = {"vecindex": __version__, "numpy": np.__version__}
    for dist in ("numba", "threadpoolctl", "matplotlib", "tqdm", "h5py", "torch"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = None
    versions.update(peer_versions())
    faiss_mod = sys.modules.get("faiss")
    if faiss_mod is not None:
        versions["faiss (imported)"] = str(getattr(faiss_mod, "__version__", None))
    try:
        from threadpoolctl import threadpool_info

        pools: list[dict[str, Any]] | str = threadpool_info()
    except ImportError as e:  # pragma: no cover - threadpoolctl is a hard dependency
        pools = f"threadpoolctl unavailable: {e}"
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = None
    return {
        "cpu_model": cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": versions,
        "vecindex_num_threads": get_num_threads(),
        "thread_env": thread_env(),
        "threadpool_info": pools,
    }
