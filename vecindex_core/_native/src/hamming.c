/* Packed-bit Hamming top-k: the native twin of vecindex_core._kernels.hamming.hamming_topk.
 *
 * Same inputs, same outputs bit for bit: the k rows with the smallest popcount(q ^ code),
 * ties by the lower slot, masked rows never candidates, -1 padding.
 *
 * Selection (shared by every ISA): per query a histogram cnt[d] of the held rows and a
 * running threshold thr, the k-th smallest distance held so far (bound + 1 while fewer than
 * k rows are held). A row enters only when d < thr (a row tied at thr loses to the k held
 * ones: their slots are lower), so after the first few blocks almost every row is rejected
 * by one vector compare inside the popcount loop. Accepted rows are appended in slot order;
 * the buffer is compacted when full; the final pick is a counting sort by distance, which
 * keeps slot order within a distance.
 *
 * Scans: queries are handled in groups over tiles of rows that stay in L1, so one pass of
 * the codes from memory serves a group of queries.
 *   - portable: SWAR popcount (x86 without the popcnt path) or __builtin_popcountll;
 *   - avx2: per 16 rows, vpshufb nibble counts accumulated in bytes over the words, vpsadbw,
 *     16-bit lanes compared to thr - 1 (measured faster than scalar popcnt on Zen 3 for
 *     every w; see docs/native.md);
 *   - avx512: vpopcntq over 8 rows, 64-bit compare into a mask register.
 */
#include <stdlib.h>
#include <string.h>

#include "native.h"

#if VN_X86
#include <immintrin.h>
#endif

typedef struct {
    int64_t *cnt;  /* (bound + 2,) held rows per distance */
    int32_t *bd;   /* (cap,) held distances, slot order */
    int64_t *bs;   /* (cap,) held slots */
    ptrdiff_t held, cap, le; /* le: held rows with d <= thr */
    ptrdiff_t thr;
} vn_qstate;

/* Offer row j at distance d (caller checked d < s->thr and the mask). */
static inline void vn_offer(vn_qstate *s, ptrdiff_t k, int32_t d, int64_t j) {
    if (s->held == s->cap) { /* keep the rows below thr and the first ones at thr: k rows */
        const ptrdiff_t thr = s->thr;
        const ptrdiff_t at = k - (s->le - s->cnt[thr]);
        ptrdiff_t pos = 0, kept = 0;
        for (ptrdiff_t c = 0; c < s->held; c++) {
            const int32_t dc = s->bd[c];
            if (dc < thr || (dc == thr && kept < at)) {
                if (dc == thr) kept++;
                s->bd[pos] = dc;
                s->bs[pos] = s->bs[c];
                pos++;
            }
        }
        s->cnt[thr] = kept;
        s->held = s->le = pos;
    }
    s->bd[s->held] = d;
    s->bs[s->held] = j;
    s->held++;
    s->cnt[d]++;
    s->le++;
    while (s->le - s->cnt[s->thr] >= k) {
        s->le -= s->cnt[s->thr];
        s->thr--;
    }
}

static inline int vn_allowed(const uint8_t *mask, ptrdiff_t j) { return !mask || mask[j]; }

typedef void (*vn_scan_fn)(const vn_ham_args *a, const uint64_t *qr, vn_qstate *s,
                           ptrdiff_t j0, ptrdiff_t j1);

/* ---------------------------------------------------------------- portable */
static inline uint64_t vn_pop_portable(uint64_t x) {
#if VN_X86
    /* baseline x86-64 has no popcnt instruction: SWAR, inlined and vectorisable */
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
    x += x >> 8; /* shifts, not a 64-bit multiply: SSE2 vectorises these */
    x += x >> 16;
    x += x >> 32;
    return x & 0x7f;
#elif defined(__GNUC__) || defined(__clang__)
    return (uint64_t)__builtin_popcountll(x);
#else
    uint64_t c = 0;
    for (; x; x &= x - 1) c++;
    return c;
#endif
}

#define VN_PBLOCK 64

static void scan_portable(const vn_ham_args *a, const uint64_t *qr, vn_qstate *s,
                          ptrdiff_t j0, ptrdiff_t j1) {
    uint32_t dist[VN_PBLOCK];
    const ptrdiff_t w = a->w, stride = a->stride, k = a->k;
    for (ptrdiff_t b0 = j0; b0 < j1; b0 += VN_PBLOCK) {
        const ptrdiff_t nb = (j1 - b0) < VN_PBLOCK ? (j1 - b0) : VN_PBLOCK;
        const uint64_t *row = a->codes + b0;
        const uint64_t q0 = qr[0];
        for (ptrdiff_t j = 0; j < nb; j++) dist[j] = (uint32_t)vn_pop_portable(q0 ^ row[j]);
        for (ptrdiff_t t = 1; t < w; t++) {
            const uint64_t qt = qr[t];
            const uint64_t *rt = a->codes + t * stride + b0;
            for (ptrdiff_t j = 0; j < nb; j++) dist[j] += (uint32_t)vn_pop_portable(qt ^ rt[j]);
        }
        for (ptrdiff_t j = 0; j < nb; j++) {
            if ((ptrdiff_t)dist[j] < s->thr && vn_allowed(a->mask, b0 + j)) {
                vn_offer(s, k, (int32_t)dist[j], b0 + j);
                if (s->thr == 0) return;
            }
        }
    }
}

#if VN_X86
/* ---------------------------------------------------------------- scalar popcnt (tails) */
__attribute__((target("popcnt"))) static void scan_popcnt(const vn_ham_args *a,
                                                          const uint64_t *qr, vn_qstate *s,
                                                          ptrdiff_t j0, ptrdiff_t j1) {
    const ptrdiff_t w = a->w, stride = a->stride, k = a->k;
    for (ptrdiff_t j = j0; j < j1; j++) {
        ptrdiff_t d = 0;
        for (ptrdiff_t t = 0; t < w; t++)
            d += (ptrdiff_t)__builtin_popcountll(qr[t] ^ a->codes[t * stride + j]);
        if (d < s->thr && vn_allowed(a->mask, j)) {
            vn_offer(s, k, (int32_t)d, j);
            if (s->thr == 0) return;
        }
    }
}

/* ---------------------------------------------------------------- AVX2 */
__attribute__((target("avx2"))) static inline __m256i vn_pop8_avx2(__m256i x, __m256i lut,
                                                                   __m256i low4) {
    const __m256i lo = _mm256_and_si256(x, low4);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low4);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

/* Rows [j0, j1) for codes of W words (W <= 1023: distances fit 16-bit lanes). Inlined with
 * a constant W for 1..8 words (fully unrolled, no counter flushes) and once generic. */
__attribute__((target("avx2,popcnt"), always_inline)) static inline void scan_avx2_impl(
    const vn_ham_args *a, const uint64_t *qr, vn_qstate *s, ptrdiff_t j0, ptrdiff_t j1,
    const ptrdiff_t W) {
    const ptrdiff_t stride = a->stride, k = a->k;
    const uint64_t *codes = a->codes;
    const uint8_t *mask = a->mask;
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    const __m256i zero = _mm256_setzero_si256();
    __m256i t1v = _mm256_set1_epi16((short)(uint16_t)(s->thr - 1));
    uint16_t lanes[16];
    ptrdiff_t j = j0;
    for (; j + 16 <= j1; j += 16) {
        __m256i s0 = zero, s1 = zero, s2 = zero, s3 = zero;
        for (ptrdiff_t t0 = 0; t0 < W; t0 += 31) { /* byte counters hold 31 words */
            const ptrdiff_t t1 = (t0 + 31 < W) ? t0 + 31 : W;
            __m256i c0 = zero, c1 = zero, c2 = zero, c3 = zero;
            for (ptrdiff_t t = t0; t < t1; t++) {
                const __m256i qv = _mm256_set1_epi64x((long long)qr[t]);
                const uint64_t *p = codes + t * stride + j;
                c0 = _mm256_add_epi8(c0, vn_pop8_avx2(_mm256_xor_si256(
                    _mm256_loadu_si256((const __m256i *)p), qv), lut, low4));
                c1 = _mm256_add_epi8(c1, vn_pop8_avx2(_mm256_xor_si256(
                    _mm256_loadu_si256((const __m256i *)(p + 4)), qv), lut, low4));
                c2 = _mm256_add_epi8(c2, vn_pop8_avx2(_mm256_xor_si256(
                    _mm256_loadu_si256((const __m256i *)(p + 8)), qv), lut, low4));
                c3 = _mm256_add_epi8(c3, vn_pop8_avx2(_mm256_xor_si256(
                    _mm256_loadu_si256((const __m256i *)(p + 12)), qv), lut, low4));
            }
            s0 = _mm256_add_epi64(s0, _mm256_sad_epu8(c0, zero));
            s1 = _mm256_add_epi64(s1, _mm256_sad_epu8(c1, zero));
            s2 = _mm256_add_epi64(s2, _mm256_sad_epu8(c2, zero));
            s3 = _mm256_add_epi64(s3, _mm256_sad_epu8(c3, zero));
        }
        /* 16-bit lane 4 i + m holds row 4 m + i */
        const __m256i d16 = _mm256_or_si256(
            _mm256_or_si256(s0, _mm256_slli_epi64(s1, 16)),
            _mm256_or_si256(_mm256_slli_epi64(s2, 32), _mm256_slli_epi64(s3, 48)));
        const unsigned m = (unsigned)_mm256_movemask_epi8(
            _mm256_cmpeq_epi16(_mm256_min_epu16(d16, t1v), d16));
        if (__builtin_expect(m != 0, 0)) {
            _mm256_storeu_si256((__m256i *)lanes, d16);
            for (int r = 0; r < 16; r++) { /* slot order */
                const int lane = 4 * (r & 3) + (r >> 2);
                if (!((m >> (2 * lane)) & 1u)) continue;
                const ptrdiff_t d = lanes[lane];
                if (d < s->thr && vn_allowed(mask, j + r)) {
                    vn_offer(s, k, (int32_t)d, j + r);
                    if (s->thr == 0) return;
                }
            }
            t1v = _mm256_set1_epi16((short)(uint16_t)(s->thr - 1));
        }
    }
    if (j < j1) scan_popcnt(a, qr, s, j, j1);
}

#define VN_AVX2_W(W)                                                                      \
    __attribute__((target("avx2,popcnt"))) static void scan_avx2_w##W(                    \
        const vn_ham_args *a, const uint64_t *qr, vn_qstate *s, ptrdiff_t j0, ptrdiff_t j1) { \
        scan_avx2_impl(a, qr, s, j0, j1, W);                                              \
    }
VN_AVX2_W(1)
VN_AVX2_W(2)
VN_AVX2_W(3)
VN_AVX2_W(4)
VN_AVX2_W(5)
VN_AVX2_W(6)
VN_AVX2_W(7)
VN_AVX2_W(8)

__attribute__((target("avx2,popcnt"))) static void scan_avx2(const vn_ham_args *a,
                                                             const uint64_t *qr, vn_qstate *s,
                                                             ptrdiff_t j0, ptrdiff_t j1) {
    scan_avx2_impl(a, qr, s, j0, j1, a->w);
}

/* ---------------------------------------------------------------- AVX-512 */
__attribute__((target(VN_TARGET_AVX512))) static void scan_avx512(
    const vn_ham_args *a, const uint64_t *qr, vn_qstate *s, ptrdiff_t j0, ptrdiff_t j1) {
    const ptrdiff_t w = a->w, stride = a->stride, k = a->k;
    __m512i thrv = _mm512_set1_epi64((long long)s->thr);
    uint64_t dd[16];
    ptrdiff_t j = j0;
    for (; j + 16 <= j1; j += 16) {
        __m512i c0 = _mm512_setzero_si512(), c1 = _mm512_setzero_si512();
        for (ptrdiff_t t = 0; t < w; t++) {
            const __m512i qv = _mm512_set1_epi64((long long)qr[t]);
            const uint64_t *p = a->codes + t * stride + j;
            c0 = _mm512_add_epi64(c0, _mm512_popcnt_epi64(
                _mm512_xor_si512(_mm512_loadu_si512((const void *)p), qv)));
            c1 = _mm512_add_epi64(c1, _mm512_popcnt_epi64(
                _mm512_xor_si512(_mm512_loadu_si512((const void *)(p + 8)), qv)));
        }
        unsigned m = (unsigned)_mm512_cmplt_epu64_mask(c0, thrv) |
                     ((unsigned)_mm512_cmplt_epu64_mask(c1, thrv) << 8);
        if (m) {
            _mm512_storeu_si512((void *)dd, c0);
            _mm512_storeu_si512((void *)(dd + 8), c1);
            while (m) { /* lowest bit first: slot order */
                const int r = __builtin_ctz(m);
                m &= m - 1;
                const ptrdiff_t d = (ptrdiff_t)dd[r];
                if (d < s->thr && vn_allowed(a->mask, j + r)) {
                    vn_offer(s, k, (int32_t)d, j + r);
                    if (s->thr == 0) return;
                }
            }
            thrv = _mm512_set1_epi64((long long)s->thr);
        }
    }
    if (j < j1) scan_popcnt(a, qr, s, j, j1);
}
#endif /* VN_X86 */

/* ---------------------------------------------------------------- driver */
static vn_scan_fn vn_pick_scan(int isa, ptrdiff_t w) {
#if VN_X86
    if (isa == VN_AVX512) return scan_avx512;
    if (isa == VN_AVX2) {
        static const vn_scan_fn fixed[9] = {NULL, scan_avx2_w1, scan_avx2_w2, scan_avx2_w3,
                                            scan_avx2_w4, scan_avx2_w5, scan_avx2_w6,
                                            scan_avx2_w7, scan_avx2_w8};
        if (w <= 8) return fixed[w];
        return w <= 1023 ? scan_avx2 : scan_popcnt;
    }
#endif
    (void)isa;
    (void)w;
    return scan_portable;
}

static void vn_finish(const vn_ham_args *a, vn_qstate *s, ptrdiff_t r, ptrdiff_t bound) {
    const ptrdiff_t k = a->k, thr = s->thr;
    ptrdiff_t at = 0, taken;
    if (s->le >= k) {
        at = k - (s->le - s->cnt[thr]);
        taken = k;
    } else {
        taken = s->le; /* thr is bound + 1: every held row is below it */
    }
    int64_t run = 0; /* counting sort: cnt becomes the first output position per distance */
    for (ptrdiff_t d = 0; d <= thr; d++) {
        const int64_t c = s->cnt[d];
        s->cnt[d] = run;
        run += c;
    }
    int32_t *od = a->out_d + r * k;
    int64_t *os = a->out_s + r * k;
    ptrdiff_t kept = 0;
    for (ptrdiff_t c = 0; c < s->held; c++) {
        const int32_t d = s->bd[c];
        if (d < thr || (d == thr && kept < at)) {
            if (d == thr) kept++;
            const int64_t p = s->cnt[d]++;
            od[p] = d;
            os[p] = s->bs[c];
        }
    }
    for (ptrdiff_t p = taken; p < k; p++) {
        od[p] = -1;
        os[p] = -1;
    }
    memset(s->cnt, 0, (size_t)(bound + 2) * sizeof(int64_t));
}

int vn_hamming_topk(const vn_ham_args *a, ptrdiff_t q0, ptrdiff_t q1, int isa) {
    if (q1 <= q0 || a->k < 1 || a->w < 1 || a->w > VN_MAX_WORDS) return 0;
    const ptrdiff_t w = a->w, n = a->n, k = a->k;
    const ptrdiff_t bound = 64 * w; /* largest possible distance */
    const ptrdiff_t kk = k < n ? k : n;
    const ptrdiff_t cap = 2 * kk + 64;
    const size_t per_q = (size_t)(bound + 2) * sizeof(int64_t) +
                         (size_t)cap * (sizeof(int32_t) + sizeof(int64_t));
    ptrdiff_t group = (ptrdiff_t)((1u << 20) / per_q);
    if (group > 16) group = 16;
    if (group < 1) group = 1;
    if (group > q1 - q0) group = q1 - q0;
    /* rows per tile: about 32 KiB of codes, a multiple of 16 */
    ptrdiff_t tile = (32768 / (8 * w)) & ~(ptrdiff_t)15;
    if (tile < 16) tile = 16;

    unsigned char *mem = (unsigned char *)malloc(per_q * (size_t)group);
    if (!mem) return -1;
    vn_qstate st[16];
    for (ptrdiff_t g = 0; g < group; g++) {
        unsigned char *base = mem + per_q * (size_t)g;
        st[g].cnt = (int64_t *)base;
        st[g].bs = (int64_t *)(base + (size_t)(bound + 2) * sizeof(int64_t));
        st[g].bd = (int32_t *)(base + (size_t)(bound + 2) * sizeof(int64_t) +
                               (size_t)cap * sizeof(int64_t));
        st[g].cap = cap;
        memset(st[g].cnt, 0, (size_t)(bound + 2) * sizeof(int64_t));
    }
    const vn_scan_fn scan = vn_pick_scan(isa, w);
    for (ptrdiff_t r0 = q0; r0 < q1; r0 += group) {
        const ptrdiff_t ng = (q1 - r0) < group ? (q1 - r0) : group;
        for (ptrdiff_t g = 0; g < ng; g++) {
            st[g].held = st[g].le = 0;
            st[g].thr = bound + 1;
        }
        for (ptrdiff_t j0 = 0; j0 < n; j0 += tile) {
            const ptrdiff_t j1 = (j0 + tile < n) ? j0 + tile : n;
            for (ptrdiff_t g = 0; g < ng; g++)
                if (st[g].thr > 0) scan(a, a->q + (r0 + g) * w, &st[g], j0, j1);
        }
        for (ptrdiff_t g = 0; g < ng; g++) vn_finish(a, &st[g], r0 + g, bound);
    }
    free(mem);
    return 0;
}
