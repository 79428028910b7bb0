/* CPU feature detection (once, at import) and the usable-path check. */
#include "native.h"

void vn_detect_cpu(vn_cpu_t *out) {
    out->popcnt = out->avx2 = out->avx512f = out->avx512bw = out->avx512vpopcntdq = 0;
    out->avx512vnni = out->avx512vbmi = 0;
#if VN_X86
    /* libgcc/compiler-rt check the OS-enabled register state (XGETBV) for the AVX levels */
    __builtin_cpu_init();
    out->popcnt = __builtin_cpu_supports("popcnt") ? 1 : 0;
    out->avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
    out->avx512f = __builtin_cpu_supports("avx512f") ? 1 : 0;
    out->avx512bw = __builtin_cpu_supports("avx512bw") ? 1 : 0;
    out->avx512vpopcntdq = __builtin_cpu_supports("avx512vpopcntdq") ? 1 : 0;
    out->avx512vnni = __builtin_cpu_supports("avx512vnni") ? 1 : 0;
    out->avx512vbmi = __builtin_cpu_supports("avx512vbmi") ? 1 : 0;
#ifdef VN_EMULATE_AVX512 /* test builds: the AVX-512 paths run as AVX2 code */
    out->avx512f = out->avx512bw = out->avx512vpopcntdq = out->avx2;
    out->avx512vnni = out->avx512vbmi = out->avx2;
#endif
#endif
}

int vn_isa_usable(const vn_cpu_t *cpu, int isa) {
    switch (isa) {
    case VN_PORTABLE:
        return 1;
#if VN_X86
    case VN_AVX2:
        return cpu->avx2 && cpu->popcnt;
    case VN_AVX512:
        return cpu->avx512f && cpu->avx512bw && cpu->avx512vpopcntdq && cpu->popcnt;
#endif
    default:
        return 0;
    }
}
