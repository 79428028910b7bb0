"""Build of the optional native kernels (``vecindex_core._native._vecnative``).

Everything else about the package is in ``pyproject.toml``; this file only declares the C
extension. It is compiled with portable flags (``-O3``, no ``-march``); instruction-set
specific functions carry ``__attribute__((target(...)))`` and are chosen at import by CPU
detection. A compiler failure does not fail the install: a warning is printed and the
numba/numpy kernels are used (``vecindex_core.show_config()`` reports which).

``VECINDEX_EMULATE_AVX512=1`` (test builds only, ``scripts/avx512_emulated.sh``) compiles
the AVX-512 paths over emulated intrinsics (SIMDe headers, ``src/avx512_emu.h``) so that
they run, and are tested, on a CPU without AVX-512.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SRC = "vecindex_core/_native/src"


class OptionalBuildExt(build_ext):
    """``build_ext`` that warns instead of failing when the extension cannot be compiled."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # compiler missing, setup errors
            self._warn(e)

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:  # CompileError, LinkError
            self._warn(e)

    @staticmethod
    def _warn(e: BaseException) -> None:
        msg = (f"WARNING: vecindex native kernels were not built ({type(e).__name__}: {e}); "
               "the numba/numpy kernels will be used.")
        print(msg, file=sys.stderr)


if sys.platform == "win32":
    ARGS: list[str] = ["/O2"]
else:
    # no contraction (a * b + c stays two roundings, as in the numba references): -std=c99
    # implies it for GCC, not for clang, nor for the emulated build's -std=gnu99
    ARGS = ["-O3", "-std=c99", "-ffp-contract=off", "-fvisibility=hidden", "-Wall",
            "-Wno-unused-function"]
EMULATE_AVX512 = os.environ.get("VECINDEX_EMULATE_AVX512", "") == "1"
if EMULATE_AVX512:
    ARGS = [*ARGS, "-DVN_EMULATE_AVX512", "-std=gnu99", "-Wno-psabi"]

setup(
    ext_modules=[
        Extension(
            "vecindex_core._native._vecnative",
            sources=[f"{SRC}/vecnative.c", f"{SRC}/hamming.c", f"{SRC}/cpu.c", f"{SRC}/lut.c",
                     f"{SRC}/topk.c", f"{SRC}/tables.c", f"{SRC}/planes.c"],
            depends=[f"{SRC}/native.h", f"{SRC}/pyglue.h", f"{SRC}/lut.h",
                     f"{SRC}/avx512_emu.h"],
            extra_compile_args=ARGS,
            optional=True,
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
