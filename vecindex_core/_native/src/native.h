/* Shared declarations of the vecindex native kernels (see ../__init__.py for dispatch).
 *
 * Rules every kernel follows: plain C99 + GCC/Clang builtins; ISA-specific functions carry
 * __attribute__((target(...))) so the translation unit itself is compiled with portable
 * flags; nothing global is written after module import (kernels are reentrant and run with
 * the GIL released). */
#ifndef VECNATIVE_H
#define VECNATIVE_H

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define VN_X86 1
#else
#define VN_X86 0
#endif

/* Function target of the AVX-512 paths. Test builds with VN_EMULATE_AVX512 compile them
 * for AVX2 over emulated AVX-512 intrinsics (avx512_emu.h). */
#ifdef VN_EMULATE_AVX512
#if VN_X86
#include "avx512_emu.h"
#endif
#define VN_TARGET_AVX512 "avx2,popcnt"
#define VN_TARGET_AVX512_DOT "avx2,popcnt"
#else
#define VN_TARGET_AVX512 "avx512f,avx512bw,avx512vpopcntdq,avx2,popcnt"
#define VN_TARGET_AVX512_DOT "avx512f,avx512bw,avx512vnni,avx512vbmi,avx2"
#endif

/* Instruction-set paths, in order of preference (the value is the Python-visible code). */
enum vn_isa { VN_PORTABLE = 0, VN_AVX2 = 1, VN_AVX512 = 2, VN_NUM_ISA = 3 };

/* CPU features detected once at import. */
typedef struct {
    int popcnt, avx2, avx512f, avx512bw, avx512vpopcntdq;
    int avx512vnni, avx512vbmi; /* the dot scan's AVX-512 kernel (lut.c) */
} vn_cpu_t;

void vn_detect_cpu(vn_cpu_t *out);
/* 1 when the path is compiled in and the CPU runs it. */
int vn_isa_usable(const vn_cpu_t *cpu, int isa);

/* ---------------------------------------------------------------- Hamming top-k */
/* Widest codes accepted (uint64 words): distances up to 64 w must fit int32. */
#define VN_MAX_WORDS (1 << 24)

typedef struct {
    const uint64_t *q;     /* (nq, w) query codes, row-major */
    const uint64_t *codes; /* (w, stride) stored codes, word-major */
    const uint8_t *mask;   /* (>= n,) allowed rows, or NULL */
    ptrdiff_t w, stride, n, k;
    int32_t *out_d;        /* (nq, k) */
    int64_t *out_s;        /* (nq, k) */
} vn_ham_args;

/* Top-k of queries [q0, q1) (k >= 1, 1 <= w <= VN_MAX_WORDS). Returns 0, or -1 when memory could not be allocated (nothing
 * written for the queries not yet finished). Safe to call concurrently without the GIL. */
int vn_hamming_topk(const vn_ham_args *a, ptrdiff_t q0, ptrdiff_t q1, int isa);

#endif
