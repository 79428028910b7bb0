/* Test builds only (VN_EMULATE_AVX512, set by scripts/avx512_emulated.sh through
 * setup.py): the AVX-512 intrinsics the kernels use, emulated, so that their AVX-512
 * code runs, and is tested bit for bit against the references, on a CPU without AVX-512.
 *
 * The intrinsics come from SIMDe (Debian libsimde-dev, "SIMD Everywhere": portable
 * implementations, checked against real hardware by their own tests), renamed here because
 * its native aliases clash with the types GCC's <immintrin.h> already declares. Those
 * that SIMDe 0.7.4 lacks (vn_emu_*) are written below from Intel's pseudo-code. The functions then
 * compile for plain AVX2 (VN_TARGET_AVX512 in native.h) and cpu.c reports AVX-512 where
 * the CPU has AVX2. An intrinsic used by the kernels but missing from this list is a
 * compile error ("target specific option mismatch"), never a silent native call.
 *
 * Never used by a release build: the module then reports EMULATED_AVX512 = 1. */
#ifndef VN_AVX512_EMU_H
#define VN_AVX512_EMU_H

#if defined(__AVX512F__)
#error "VN_EMULATE_AVX512 needs a build without AVX-512 flags (no -march=native)"
#endif
#define SIMDE_NO_NATIVE /* SIMDe's portable code only, whatever the flags */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <simde/x86/avx512.h>

#define __m512i simde__m512i
#define __m512 simde__m512
#define __mmask64 simde__mmask64

#define _mm512_add_epi8 simde_mm512_add_epi8
#define _mm512_add_epi16 simde_mm512_add_epi16
#define _mm512_add_epi32 simde_mm512_add_epi32
#define _mm512_add_epi64 simde_mm512_add_epi64
#define _mm512_sub_epi16 simde_mm512_sub_epi16
#define _mm512_and_si512 simde_mm512_and_si512
#define _mm512_xor_si512 simde_mm512_xor_si512
#define _mm512_or_si512 simde_mm512_or_si512
#define _mm512_slli_epi16 simde_mm512_slli_epi16
#define _mm512_srli_epi16 simde_mm512_srli_epi16
#define _mm512_shuffle_epi8 simde_mm512_shuffle_epi8
#define _mm512_popcnt_epi64 simde_mm512_popcnt_epi64
#define _mm512_set1_epi8 simde_mm512_set1_epi8
#define _mm512_set1_epi32 simde_mm512_set1_epi32
#define _mm512_set1_epi64 simde_mm512_set1_epi64
#define _mm512_dpbusd_epi32 simde_mm512_dpbusd_epi32
#define _mm512_permutexvar_epi8 simde_mm512_permutexvar_epi8
#define _mm512_setzero_si512 simde_mm512_setzero_si512
#define _mm512_loadu_si512 simde_mm512_loadu_si512
#define _mm512_storeu_si512 simde_mm512_storeu_si512
#define _mm512_castsi512_si256 vn_emu_castsi512_si256
#define _mm512_extracti64x4_epi64 vn_emu_extracti64x4_epi64
#define _mm512_maskz_loadu_epi8 vn_emu_maskz_loadu_epi8
/* a < b exactly when not b <= a */
#define _mm512_cmplt_epu64_mask(a, b) ((simde__mmask8)~simde_mm512_cmple_epu64_mask((b), (a)))
#define _mm512_cmplt_epu32_mask(a, b) ((simde__mmask16)~simde_mm512_cmple_epu32_mask((b), (a)))
#define _mm512_cvtepu16_epi32 vn_emu_cvtepu16_epi32
#define _mm512_cmpgt_epi32_mask simde_mm512_cmpgt_epi32_mask
#define _mm512_maskz_mov_epi8 simde_mm512_maskz_mov_epi8
#define _mm512_loadu_ps simde_mm512_loadu_ps
#define _mm512_setzero_ps simde_mm512_setzero_ps
#define _mm512_set1_ps simde_mm512_set1_ps
#define _mm512_add_ps simde_mm512_add_ps
#define _mm512_mul_ps simde_mm512_mul_ps
#define _mm512_cvtepi32_ps vn_emu_cvtepi32_ps
#define _mm512_cmp_ps_mask simde_mm512_cmp_ps_mask
#define _mm512_storeu_ps simde_mm512_storeu_ps
#define _mm512_permutexvar_ps simde_mm512_permutexvar_ps
#define _mm512_reduce_add_epi32 vn_emu_reduce_add_epi32
#define _mm512_castsi128_si512 vn_emu_castsi128_si512
#define _mm512_castps512_ps128 vn_emu_castps512_ps128
/* the triple route (lut.c) */
#define _mm512_sub_epi8 simde_mm512_sub_epi8
#define _mm512_set1_epi16 simde_mm512_set1_epi16
#define _mm512_min_epu8 simde_mm512_min_epu8
#define _mm512_max_epu8 simde_mm512_max_epu8
#define _mm512_maddubs_epi16 simde_mm512_maddubs_epi16
#define _mm512_sad_epu8 simde_mm512_sad_epu8
#define _mm512_sllv_epi16 simde_mm512_sllv_epi16
#define _mm512_srlv_epi16 simde_mm512_srlv_epi16
#define _mm512_ternarylogic_epi32 simde_mm512_ternarylogic_epi32
#define _mm512_permutex2var_epi8 simde_mm512_permutex2var_epi8
#define _mm512_movepi8_mask simde_mm512_movepi8_mask
#define _mm512_cmpeq_epi8_mask simde_mm512_cmpeq_epi8_mask
#define _mm512_cmpgt_epu8_mask simde_mm512_cmpgt_epu8_mask
#define _mm512_cmpgt_epu16_mask(a, b) ((simde__mmask32)~simde_mm512_cmple_epu16_mask((a), (b)))
#define _mm512_multishift_epi64_epi8 vn_emu_multishift_epi64_epi8
#define _mm512_load_si512 vn_emu_load_si512
#define _mm512_store_si512 vn_emu_store_si512
#define _mm512_broadcast_i32x4 vn_emu_broadcast_i32x4
#define _mm512_inserti64x4(a, b, imm) vn_emu_inserti64x4((a), (b), (imm) & 1)

/* the sum of the 16 int32 lanes (wrapping) */
static inline int vn_emu_reduce_add_epi32(simde__m512i a) {
    int32_t x[16];
    memcpy(x, &a, sizeof x);
    uint32_t s = 0;
    for (int j = 0; j < 16; j++) s += (uint32_t)x[j];
    return (int)s;
}
/* GCC's own 128-bit vectors into / out of the emulated 512-bit ones (upper lanes 0) */
static inline simde__m512i vn_emu_castsi128_si512(__m128i a) {
    simde__m512i r = simde_mm512_setzero_si512();
    memcpy(&r, &a, sizeof a);
    return r;
}
static inline __m128 vn_emu_castps512_ps128(simde__m512 a) {
    __m128 r;
    memcpy(&r, &a, sizeof r);
    return r;
}

/* 256-bit halves as GCC's own __m256i (the kernels mix them with AVX2 intrinsics) */
static inline __m256i vn_emu_half(simde__m512i a, int hi) {
    __m256i r;
    memcpy(&r, (const char *)&a + 32 * hi, sizeof r);
    return r;
}
static inline __m256i vn_emu_castsi512_si256(simde__m512i a) { return vn_emu_half(a, 0); }
#define vn_emu_extracti64x4_epi64(a, imm) vn_emu_half((a), (imm) & 1)

/* dst.byte[j] = k[j] ? mem[j] : 0; masked-off bytes are not read (no fault on hardware) */
static inline simde__m512i vn_emu_maskz_loadu_epi8(simde__mmask64 k, const void *p) {
    uint8_t b[64];
    for (int j = 0; j < 64; j++) b[j] = ((k >> j) & 1) ? ((const uint8_t *)p)[j] : 0;
    simde__m512i r;
    memcpy(&r, b, sizeof r);
    return r;
}

/* The aligned load and store: a pointer off a 64-byte boundary faults on hardware, so it
 * aborts here too (SIMDe's copies would hide it). */
static inline simde__m512i vn_emu_load_si512(const void *p) {
    if ((uintptr_t)p % 64) abort();
    simde__m512i r;
    memcpy(&r, p, sizeof r);
    return r;
}
static inline void vn_emu_store_si512(void *p, simde__m512i a) {
    if ((uintptr_t)p % 64) abort();
    memcpy(p, &a, sizeof a);
}

/* GCC's own 128-bit vector in each of the four lanes */
static inline simde__m512i vn_emu_broadcast_i32x4(__m128i a) {
    simde__m512i r;
    for (int j = 0; j < 4; j++) memcpy((char *)&r + 16 * j, &a, sizeof a);
    return r;
}

/* a with its 256-bit half hi (0 or 1) replaced by GCC's own b */
static inline simde__m512i vn_emu_inserti64x4(simde__m512i a, __m256i b, int hi) {
    memcpy((char *)&a + 32 * hi, &b, sizeof b);
    return a;
}

/* dst.u8[8 i + j] = the 8 bits of b.u64[i] from bit a.u8[8 i + j] & 63 on, wrapping
 * around (Intel's pseudo-code; SIMDe's version shifts a 64-bit value by 64 for a 0 control,
 * undefined in C) */
static inline simde__m512i vn_emu_multishift_epi64_epi8(simde__m512i a, simde__m512i b) {
    uint8_t c[64], o[64];
    uint64_t x[8];
    memcpy(c, &a, sizeof c);
    memcpy(x, &b, sizeof x);
    for (int j = 0; j < 64; j++) {
        const unsigned s = c[j] & 63u;
        const uint64_t v = x[j / 8];
        o[j] = (uint8_t)(s ? (v >> s) | (v << (64 - s)) : v);
    }
    simde__m512i r;
    memcpy(&r, o, sizeof r);
    return r;
}

/* dst.f32[j] = (float)a.i32[j] (rounded to nearest), j < 16 */
static inline simde__m512 vn_emu_cvtepi32_ps(simde__m512i a) {
    int32_t x[16];
    float y[16];
    memcpy(x, &a, sizeof x);
    for (int j = 0; j < 16; j++) y[j] = (float)x[j];
    simde__m512 r;
    memcpy(&r, y, sizeof r);
    return r;
}

/* dst.u32[j] = a.u16[j] (zero extension), j < 16 */
static inline simde__m512i vn_emu_cvtepu16_epi32(__m256i a) {
    uint16_t x[16];
    uint32_t y[16];
    memcpy(x, &a, sizeof x);
    for (int j = 0; j < 16; j++) y[j] = x[j];
    simde__m512i r;
    memcpy(&r, y, sizeof r);
    return r;
}

#endif
