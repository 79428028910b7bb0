#!/usr/bin/env bash
# The whole test suite twice, at the same time: once on the native kernels (the default
# dispatch, output here) and once forced onto the numba/numpy fallback with
# VECINDEX_NATIVE=off (output in $FALLBACK_LOG, printed when it fails). Then the native
# kernel tests once more on the portable C path, and on the AVX-512 paths under emulation
# (scripts/avx512_emulated.sh; x86-64 with AVX2 only). Exits non-zero when any run fails.
#
# Usage: scripts/run_tests.sh [PYTHON]   (default .venv/bin/python)
set -u
PY=${1:-.venv/bin/python}
FALLBACK_LOG=${FALLBACK_LOG:-fallback-tests.log}

VECINDEX_NATIVE=off "$PY" -m pytest -q -p no:cacheprovider >"$FALLBACK_LOG" 2>&1 &
fallback_pid=$!

"$PY" -m pytest
native_rc=$?

wait "$fallback_pid"
fallback_rc=$?
echo "---- the suite forced onto the fallback (VECINDEX_NATIVE=off): exit $fallback_rc, full log in $FALLBACK_LOG"
if [ "$fallback_rc" -ne 0 ]; then
    tail -n 80 "$FALLBACK_LOG"
else
    tail -n 3 "$FALLBACK_LOG"
fi

source "$(dirname "$0")/kernel_tests.sh"
VECINDEX_NATIVE=portable "$PY" -m pytest -q -p no:cacheprovider "${KERNEL_TESTS[@]}"
portable_rc=$?

avx512_rc=0
if [ "$(uname -m)" = x86_64 ] && grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
    echo "---- the kernel tests on the AVX-512 paths, emulated (scripts/avx512_emulated.sh)"
    bash scripts/avx512_emulated.sh "$PY"
    avx512_rc=$?
else
    echo "---- no emulated AVX-512 run: it needs an x86-64 CPU with AVX2"
fi

echo "---- exit codes: native $native_rc, fallback $fallback_rc, portable $portable_rc," \
     "avx512 emulated $avx512_rc"
[ "$native_rc" -eq 0 ] && [ "$fallback_rc" -eq 0 ] && [ "$portable_rc" -eq 0 ] &&
    [ "$avx512_rc" -eq 0 ]
