"""Native SIMD kernels (the optional C extension ``_vecnative``) and their run-time dispatch.

The extension is compiled by the package build (``setup.py``) with portable flags; each
instruction-set path (``portable``, ``avx2``, ``avx512``) is compiled into it with a
function-level target and picked here from the CPU features detected at import. When the
extension is missing (a failed or skipped build) the numba/numpy kernels are used.

``VECINDEX_NATIVE`` (read once, at import) overrides the choice:

- unset or ``auto``: the best SIMD path this CPU runs (``avx512``, then ``avx2``); on an
  x86-64 CPU with neither, the numba kernels (faster there than the portable C path); on
  other architectures the portable path (``__builtin_popcountll``);
- ``portable``: the portable C path (no SIMD intrinsics), for tests of the fallback;
- ``off``: the numba/numpy kernels.

:func:`config` returns what was found and chosen; :func:`show_config` prints it (also
``vecindex_core.show_config()`` and ``vecindex info``). Kernels release the GIL and are
reentrant; the wrappers here split a batch of queries over
:func:`~vecindex_core._threads.get_num_threads` threads.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from .._threads import map_chunks, thread_count
from ..errors import InvalidArgumentError

__all__ = ["ENV_VAR", "MODES", "active_isa", "config", "hamming_topk", "show_config"]

#: Environment variable that overrides the dispatch.
ENV_VAR = "VECINDEX_NATIVE"
#: Accepted values of :data:`ENV_VAR`.
MODES = ("auto", "portable", "off")
#: Below this many query x row x word units, a batch runs on one thread.
_MIN_WORK_PER_THREAD = 1 << 20



def _load() -> tuple[ModuleType | None, str | None]:
    try:
        return importlib.import_module(f"{__name__}._vecnative"), None
    except ImportError as e:  # not built: the numba/numpy path is used
        return None, f"{type(e).__name__}: {e}"


_ext, _import_error = _load()

_env_raw = os.environ.get(ENV_VAR)
_env_error: str | None = None
if _env_raw is None or _env_raw.strip() == "":
    _mode = "auto"
elif _env_raw.strip().lower() in MODES:
    _mode = _env_raw.strip().lower()
else:
    _mode = "auto"
    _env_error = f"{ENV_VAR}={_env_raw!r} is not one of {MODES}; using 'auto'"
    warnings.warn(_env_error, RuntimeWarning, stacklevel=2)


def _usable() -> tuple[str, ...]:
    return tuple(_ext.usable_isas()) if _ext is not None else ()


def _x86_64() -> bool:
    return bool(_ext.cpu_features()["x86_64"]) if _ext is not None else False


def _choose(mode: str, usable: tuple[str, ...], x86_64: bool) -> str | None:
    """The path for ``mode`` given the usable paths (best last) and the architecture; a pure
    function, so tests can ask what a CPU without AVX2 (``usable == ("portable",)``) gets."""
    if mode == "off" or not usable:
        return None
    if mode == "portable":
        return "portable" if "portable" in usable else None
    if usable[-1] == "portable" and x86_64:
        # x86-64 without AVX2: numba's host-tuned loops beat the SWAR popcount (measured)
        return None
    return usable[-1]


#: The path kernels use now: an instruction-set name, or None for the numba/numpy kernels.
_active: str | None = _choose(_mode, _usable(), _x86_64())


def native_f32_rows() -> Any:
    """The extension's ``f32_rows(x, dim)`` check (2: a finite C-contiguous float32
    ``(n >= 1, dim)`` buffer, 1: such a ``(dim,)`` one, 0: anything else), or None when the
    extension is not built or ``VECINDEX_NATIVE=off``."""
    return _ext.f32_rows if _ext is not None and _mode != "off" else None


def active_isa() -> str | None:
    """The native path in use (``"portable"``, ``"avx2"``, ``"avx512"``), or None when the
    numba/numpy kernels are used (extension not built, or ``VECINDEX_NATIVE=off``)."""
    return _active


@contextmanager
def _use(isa: str | None) -> Iterator[None]:
    """Force a path for the block (tests and benchmarks; not thread-safe). ``None`` selects
    the numba/numpy kernels; an instruction-set name must be usable on this CPU."""
    global _active
    if isa is not None and isa not in _usable():
        raise InvalidArgumentError(
            f"native path {isa!r} is not usable here; usable: {_usable()}")
    previous = _active
    _active = isa
    try:
        yield
    finally:
        _active = previous


def _isa_id(isa: str) -> int:
    names: tuple[str, ...] = _ext.ISA_NAMES if _ext is not None else ()
    if isa not in names:
        raise InvalidArgumentError(f"unknown native path {isa!r}; known: {names}")
    return names.index(isa)


def _lut_dot_cpu() -> bool:
    from .lut import dot_cpu  # a submodule that imports this package

    return dot_cpu()


def config() -> dict[str, Any]:
    """What the native module is and what the kernels use.

    Returns
    -------
    dict
        ``built`` (bool), ``path`` (the extension file or None), ``import_error``,
        ``cpu_features`` (feature -> bool, as detected by the extension; empty when not
        built), ``compiled_isas`` and ``usable_isas`` (best last), ``env`` (the raw value of
        ``VECINDEX_NATIVE`` or None), ``env_error``, ``mode`` (``auto``/``portable``/``off``),
        ``isa`` (the path in use or None), and per kernel ``hamming_topk``,
        ``dense_topk`` (the exact search's tile scan) and ``lut_topk`` (the 1/2/4-bit
        fast scan; ``native-avx512-vnni`` on a CPU with AVX-512 VNNI and VBMI):
        ``native-<isa>`` or
        ``numba``).
    """
    built = _ext is not None
    return {
        "built": built,
        "path": getattr(_ext, "__file__", None) if built else None,
        "import_error": _import_error,
        "cpu_features": dict(_ext.cpu_features()) if _ext is not None else {},
        "compiled_isas": list(_ext.compiled_isas()) if _ext is not None else [],
        "usable_isas": list(_usable()),
        "env": _env_raw,
        "env_error": _env_error,
        "mode": _mode,
        "isa": _active,
        "hamming_topk": f"native-{_active}" if _active is not None else "numba",
        # the tile scan has no AVX-512 variant: AVX-512 CPUs run its avx2 code
        "dense_topk": ("numba" if _active is None
                       else f"native-{'avx2' if _active == 'avx512' else _active}"),
        # with AVX-512 VNNI + VBMI the fast scan runs its vpdpbusd kernels (and turboquant's
        # 4-bit codes the dot mode, also under "numba")
        "lut_topk": ("numba" if _active is None
                     else f"native-{_active}" + ("-vnni" if _active == "avx512"
                                                 and _lut_dot_cpu() else "")),
    }


def show_config() -> None:
    """Print :func:`config`: whether the native kernels are built, the CPU features found,
    the instruction-set path chosen and the ``VECINDEX_NATIVE`` override."""
    c = config()
    feats = ", ".join(f for f, on in c["cpu_features"].items() if on) or "-"
    lines = [
        "vecindex native kernels",
        f"  built:           {c['built']}",
        f"  path:            {c['path'] or '-'}",
    ]
    if c["import_error"]:
        lines.append(f"  import error:    {c['import_error']}")
    lines += [
        f"  cpu features:    {feats}",
        f"  compiled paths:  {', '.join(c['compiled_isas']) or '-'}",
        f"  usable paths:    {', '.join(c['usable_isas']) or '-'}",
        f"  {ENV_VAR}: {c['env'] if c['env'] is not None else '(unset)'} -> mode {c['mode']}",
    ]
    if c["env_error"]:
        lines.append(f"  warning:         {c['env_error']}")
    lines += [
        f"  path in use:     {c['isa'] or 'none (numba/numpy kernels)'}",
        f"  hamming_topk:    {c['hamming_topk']}",
        f"  dense_topk:      {c['dense_topk']}",
        f"  lut_topk:        {c['lut_topk']}",
    ]
    print("\n".join(lines))


def hamming_topk(
    qcodes: npt.NDArray[np.uint64],
    codes_t: npt.NDArray[np.uint64],
    k: int,
    *,
    max_bits: int,
    mask: npt.NDArray[np.bool_] | None = None,
    n: int | None = None,
    isa: str | None = None,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """Native :func:`vecindex_core._kernels.hamming.hamming_topk` (same arguments, same
    results bit for bit).

    Parameters
    ----------
    qcodes, codes_t, k, max_bits, mask, n
        As :func:`vecindex_core._kernels.hamming.hamming_topk`: uint64 ``(nq, w)``, uint64
        word-major ``(w, >= n)``, ``k >= 0`` (0 gives empty ``(nq, 0)`` results, as the
        numba reference does), the number of code bits, bool ``(>= n,)``.
    isa : str, optional
        Instruction-set path; default :func:`active_isa`.

    Returns
    -------
    dist : int32 (nq, k)
        Ascending, ``-1`` where padded.
    slots : int64 (nq, k)
        Ties by the lower slot, ``-1`` where padded.

    Raises
    ------
    InvalidDtypeError
        A buffer of the wrong dtype.
    DimensionMismatchError
        ``codes_t`` and ``qcodes`` disagree on the words per code, or ``mask`` is short.
    InvalidArgumentError
        Wrong rank, ``k`` negative or too large to allocate the results, ``n`` not an integer
        in range, ``max_bits`` negative, codes wider than ``2**24`` words, or no native path.
    """
    if _ext is None:
        raise InvalidArgumentError(f"the native kernels are not built ({_import_error})")
    path = isa if isa is not None else _active
    if path is None:
        raise InvalidArgumentError(f"native kernels disabled ({ENV_VAR}={_env_raw!r})")
    isa_id = _isa_id(path)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise InvalidArgumentError(f"k must be an integer >= 0, got {k!r}")
    if isinstance(max_bits, bool) or not isinstance(max_bits, (int, np.integer)) or max_bits < 0:
        raise InvalidArgumentError(f"max_bits must be an integer >= 0, got {max_bits!r}")
    qcodes = np.ascontiguousarray(qcodes)
    codes_t = np.ascontiguousarray(codes_t)
    if qcodes.ndim != 2 or codes_t.ndim != 2:
        raise InvalidArgumentError(
            f"qcodes and codes_t must be 2-D, got shapes {qcodes.shape} and {codes_t.shape}")
    if mask is not None:
        mask = np.ascontiguousarray(mask)
    nq = qcodes.shape[0]
    if n is None:
        n_rows = codes_t.shape[1]
    elif isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not (
            0 <= n <= codes_t.shape[1]):
        raise InvalidArgumentError(
            f"n must be an integer in [0, {codes_t.shape[1]}] (columns of codes_t), got {n!r}")
    else:
        n_rows = int(n)
    k = int(k)
    try:
        out_d = np.empty((nq, k), dtype=np.int32)
        out_s = np.empty((nq, k), dtype=np.int64)
    except ValueError as e:  # nq * k past what an array can hold
        raise InvalidArgumentError(
            f"k={k} is too large for {nq} queries: the results cannot be allocated ({e})"
        ) from e
    ext = _ext
    work = nq * max(n_rows, 1) * max(qcodes.shape[1], 1)
    parts = thread_count(nq, work, _MIN_WORK_PER_THREAD)
    if parts == 1:
        ext.hamming_topk(qcodes, codes_t, n_rows, k, mask, 0, nq, out_d, out_s, isa_id)
    else:
        # validate once on the caller's thread, then chunks run in parallel without the GIL
        ext.hamming_topk(qcodes, codes_t, n_rows, k, mask, 0, 0, out_d, out_s, isa_id)
        map_chunks(lambda a, b: ext.hamming_topk(qcodes, codes_t, n_rows, k, mask, a, b,
                                                 out_d, out_s, isa_id), nq, parts)
    return out_d, out_s
