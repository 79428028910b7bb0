#!/usr/bin/env bash
# The native kernels' AVX-512 paths, run on a CPU without AVX-512 and tested bit for bit
# against the references.
#
# Builds a copy of the extension with VECINDEX_EMULATE_AVX512=1 (setup.py): the AVX-512
# functions compile for AVX2 over emulated intrinsics (SIMDe headers, Debian package
# libsimde-dev; vecindex_core/_native/src/avx512_emu.h) and the module reports the
# avx512 path usable. The kernel tests parametrize over every usable path, so they run the
# AVX-512 code; the index tests run on it too, as the default dispatch. The copy lives in a
# temporary directory: the package in the working tree is not touched.
#
# Usage: scripts/avx512_emulated.sh [PYTHON]   (default .venv/bin/python; needs AVX2)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/kernel_tests.sh
PY=${1:-.venv/bin/python}
if [[ $PY != */* ]]; then PY=$(command -v "$PY"); fi
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"  # absolute, the venv's link kept
unset VECINDEX_NATIVE  # the default dispatch must pick the (emulated) avx512 path

if [[ ! -f /usr/include/simde/x86/avx512.h ]]; then
    echo "avx512_emulated: SIMDe headers missing: apt-get install libsimde-dev" >&2
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dir=$tmp/main
mkdir "$dir"
# tests that read ../shared (the dev embeddings) find it beside the copy too
[[ -d ../shared ]] && ln -s "$(cd ../shared && pwd)" "$tmp/shared"
cp -r setup.py pyproject.toml README.md tests "$dir"/
mkdir -p "$dir/vecindex_core"
tar -C vecindex_core --exclude='*.so' --exclude='__pycache__' -cf - . |
    tar -C "$dir/vecindex_core" -xf -
cd "$dir"
# the extension is optional: a compile error only warns, so the log is checked too
if ! VECINDEX_EMULATE_AVX512=1 "$PY" setup.py -q build_ext --inplace >build.log 2>&1 ||
    grep -q "native kernels were not built" build.log; then
    cat build.log
    exit 1
fi

# the copy must be the one imported, built emulated, with avx512 as the default path
"$PY" - <<'PY'
import os

import vecindex_core._native as n

cfg = n.config()
assert cfg["built"] and cfg["path"].startswith(os.getcwd()), cfg
assert n._ext.EMULATED_AVX512 == 1, cfg
assert cfg["isa"] == "avx512" and "avx512" in cfg["usable_isas"], cfg
print(f"avx512_emulated: {cfg['path']}: isa {cfg['isa']}, lut {cfg['lut_topk']}, "
      f"hamming {cfg['hamming_topk']}")
PY

"$PY" -m pytest -q -p no:cacheprovider --rootdir "$dir" ${PYTEST_ARGS:-} "${KERNEL_TESTS[@]}"
