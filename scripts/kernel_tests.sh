# The test files of the native kernels, run again on the portable C path
# (scripts/run_tests.sh) and on the emulated AVX-512 paths (scripts/avx512_emulated.sh),
# which source this file.
KERNEL_TESTS=(
    tests/test_native.py tests/test_native_topk.py tests/test_flat.py tests/test_hashing.py
    tests/test_fastscan.py tests/test_fastscan_ivf.py tests/test_fastscan_reservoir.py
    tests/test_ivf_fastscan.py tests/test_pq_fastscan.py tests/test_turboquant.py
    tests/test_planes.py tests/test_fastscan_triple.py
)
