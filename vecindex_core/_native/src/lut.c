/* Lookup-table fast scan over 4-bit sub-codes (4-bit codes; 2-bit codes two coordinates a
 * sub-code; 1-bit codes four): the native twin of
 * vecindex_core._kernels.fastscan.fastscan_topk_ref (same results bit for bit).
 *
 * Layout (fastscan.pack_blocked): rows in blocks of 32; block b, byte column p holds 32
 * bytes: byte i < 16 is (low nibble of row 32b+i's byte p) | (low nibble of row 32b+16+i's
 * byte p) << 4 -- sub-code table 2p --, byte 16 + i the same with the high nibbles -- table
 * 2p + 1. Tables (fastscan.quantize_luts): per query (nb, 32) uint8, table 2p in bytes
 * 0..15 of column p and table 2p + 1 in bytes 16..31, so one 32-byte load of codes and one
 * of tables feed two vpshufb (rows 0..15 from the low nibbles, rows 16..31 from the high).
 *
 * Arithmetic: S = sum over tables of the uint8 entries (exact integer; SIMD paths add bytes
 * into 16-bit lanes as a + b * 256 and b, widened to 32 bits every 256 columns so no lane
 * overflows), then in float32, in this order:
 *     s = scale[i] * (bias + delta * (float)S)
 *     inverted lists only: s = list_bias + s
 *     l2:  t = (qn + xn[i]) - 2 * s;  s = -(t > 0 ? t : 0)
 * Selection: top-k by (score desc, slot asc); a block's 32 scores are compared with a
 * threshold in SIMD and only rows above it reach a per-query collector (a reservoir, or
 * for inverted lists with a small k the caller's heap; see "candidate collectors").
 *
 * Two drivers share the sums, the scores and the block step (fs_block_offer): vn_lut_topk
 * (flat: rows r0..r1, fresh heaps, groups of queries over tiles of codes) and
 * vn_lut_ivf_topk (inverted lists: per query, entry ranges of a blocked arena, the caller's
 * full heaps continued in place, entry -> slot through row_slots). On the VNNI and dot
 * kernels the flat driver's inner-product scores are computed in the kernels' registers
 * instead (vn_gate, the same float32 operations) and a block's rows are taken after the next
 * block's kernel call (fs_flat_take).
 *
 * Paths: portable C (no intrinsics), AVX2, AVX-512 (AVX512BW; two byte columns a step;
 * with VNNI and VBMI the vpermb + vpdpbusd kernel of the dot-mode section, and for batches
 * over additive 2-bit tables the triple route: the same integer sums from 64-entry tables
 * of three coordinates, see its section).
 *
 * Dot mode (vn_lut_args.levels set; turboquant's 4-bit codes, one codebook for every
 * coordinate): S = sum over sub-codes t of lv[code_t] * w_t, lv the int8 levels (levels[c]
 * - 128) and w the query's int8 weights, exact in int32 (|S| <= 128 * 128 * 2 nb). The
 * score is then the same float32 expression (bias 0). AVX-512 VNNI + VBMI kernel: a 64-byte
 * load (two columns) is transposed by one vpermb so each dword holds one row's four
 * sub-codes, vpshufb maps the low / high nibbles to levels (rows 0..15 / 16..31) for every
 * query of the pass, then each query costs two vpdpbusd with its four weights broadcast
 * (the uint8 levels carry + 128: the accumulators start at -128 * sum(w)). Other paths
 * and CPUs: a portable loop. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "native.h"
#include "pyglue.h"
#include "lut.h"

#if VN_X86
#include <immintrin.h>
#endif

/* Queries whose heaps and tables are live together over one pass of the codes. */
#define VN_FS_QGROUP 32
/* Largest uint8 table entry (fastscan.LUT_MAX); a byte holds the sum of VN_FS_GROUP
 * entries (2 * 127 = 254), a 16-bit lane the sums of 256 groups (256 * 254 < 65536): the
 * SIMD paths add a group of columns in bytes, 256 groups in 16-bit lanes (a chunk), then
 * widen to 32 bits. (At 31 and groups of 8 the scan was ~8% faster but the 5-bit tables
 * needed a 5x longer shortlist for the same recall on a 200,000-row set.) */
#define VN_FS_LUTMAX 127
#define VN_FS_GROUP 2
#define VN_FS_CHUNK (256 * VN_FS_GROUP)
#define VN_FS_MAXSUB 4
/* Bytes of codes a tile (kept in L2 while every query of a group runs over it). */
#define VN_FS_TILE_BYTES (192 * 1024)

/* ---------------------------------------------------------------- candidate collectors
 * A block's rows that pass the SIMD threshold test go to one of two exact collectors:
 *   - a reservoir: candidates are appended; when it fills, the k best by the total order
 *     (score descending, then slot ascending) are selected in place, the rest dropped and
 *     the threshold raised to the k-th best score. vn_lut_topk starts it empty (rows come
 *     in increasing slot order, so a later row enters only with a score strictly above the
 *     threshold); vn_lut_ivf_topk (k > VN_FS_IVF_HEAP_K) seeds it with the caller's heap
 *     row (its k entries, the -inf / -1 padding included; slots come in any order, so a row
 *     enters with a score at or above the threshold, every row while it is -inf) and writes
 *     the k best back as a heap (root = worst; Floyd's heapify).
 *   - the caller's heap (vn_lut_ivf_topk, k <= VN_FS_IVF_HEAP_K): every candidate offered
 *     in order (a replaced root sifted down), the reference's own layout.
 * Both leave the multiset the reference's sequential offers leave (the k best of the heap's
 * entries and the offered rows); the layouts may differ (compare finalize_heaps results). */

/* Largest k for which vn_lut_ivf_topk offers to the heap itself: with few candidates per
 * query the heap's ~60 replacements (k' = 20, ~400 or ~1500 rows) cost less than the
 * reservoir's ~140 selected entries and final heapify (dev set, ivf_pq nb = 24: k' = 20
 * 2.9 us/query heap, 3.2-3.5 reservoir; k' = 40 6.0 vs 5.5; k' = 100 11.8 vs 9.4; k' = 200
 * 16-28 vs 10-20). */
#define VN_FS_IVF_HEAP_K 32

/* (s1, i1) ranks below (s2, i2): lower score, or equal score and higher slot. */
static inline int fs_worse(float s1, int64_t i1, float s2, int64_t i2) {
    return (s1 < s2) | ((s1 == s2) & (i1 > i2));
}

typedef struct {
    float *s;
    int64_t *i;
    ptrdiff_t held, cap; /* always full (held == cap), worst at the root */
} vn_fheap;

/* Replace the root of the full heap by (s, j), which ranks above it, and sift it down to
 * its place (top-down, as the reference: the same layout). A bottom-up (Floyd) sift gave
 * the same layout but was 2-6% slower on the dev set (k' = 20 and 200). */
static void fs_heap_replace(vn_fheap *h, float s, int64_t j) {
    float *hs = h->s;
    int64_t *hi = h->i;
    const ptrdiff_t n = h->held;
    ptrdiff_t c = 0;
    for (;;) {
        const ptrdiff_t l = 2 * c + 1;
        ptrdiff_t w = c;
        float ws = s;
        int64_t wi = j;
        if (l < n && fs_worse(hs[l], hi[l], ws, wi)) {
            w = l;
            ws = hs[l];
            wi = hi[l];
        }
        if (l + 1 < n && fs_worse(hs[l + 1], hi[l + 1], ws, wi)) w = l + 1;
        if (w == c) break;
        hs[c] = hs[w];
        hi[c] = hi[w];
        c = w;
    }
    hs[c] = s;
    hi[c] = j;
}

static inline void fs_heap_offer(vn_fheap *h, float s, int64_t j) {
    if (fs_worse(h->s[0], h->i[0], s, j)) fs_heap_replace(h, s, j);
}

typedef struct {
    float s;
    int64_t i;
} vn_fcand;

/* Scratch for fs_keep (one reservoir's capacity): the candidates' keys and their ties. */
typedef struct {
    uint32_t *keys;
    vn_fcand *ties;
    int simd; /* count with AVX2 (1) or AVX-512 (2): the same counts */
} vn_fscratch;

typedef struct {
    vn_fcand *c;     /* (cap,) candidates; the first `held` are live */
    ptrdiff_t held, cap, k;
    float thr;       /* once primed: the k-th best score kept; later rows need s > thr
                      * (s >= thr with slots; every row while thr is -inf) */
    int primed;      /* thr is set (a compaction, or a seed of k entries) */
    ptrdiff_t added; /* rows appended (fs_res_add) */
    const vn_fscratch *x; /* for compactions */
} vn_fres;

/* Reservoir capacity for k (3k + 32: a compaction every 2k + 32 candidates at least). */
static ptrdiff_t fs_res_cap(ptrdiff_t k, ptrdiff_t rows) {
    const ptrdiff_t c = 3 * k + 32;
    return c < rows ? c : rows;
}

/* a ranks above b in the total order */
static inline int fs_above(const vn_fcand *a, const vn_fcand *b) {
    return (a->s > b->s) | ((a->s == b->s) & (a->i < b->i));
}

static inline void fs_cand_swap(vn_fcand *a, vn_fcand *b) {
    const vn_fcand t = *a;
    *a = *b;
    *b = t;
}

static void fs_insertion_sort(vn_fcand *a, ptrdiff_t n) {
    for (ptrdiff_t t = 1; t < n; t++) {
        const vn_fcand x = a[t];
        ptrdiff_t u = t;
        for (; u > 0 && fs_above(&x, &a[u - 1]); u--) a[u] = a[u - 1];
        a[u] = x;
    }
}

/* Reorder a[0 .. n) so that a[m - 1] is the m-th best (1 <= m <= n), a[0 .. m - 1) rank
 * at or above it and a[m .. n) at or below (quickselect: median-of-three pivots, branchless
 * Lomuto partitions -- the comparisons are unpredictable, a swap every step is cheaper than
 * a mispredicted branch --; equal entries, which the caller's heap may hold (its padding,
 * a slot offered twice), are gathered next to the pivot after a lopsided split, so runs of
 * them cost no more than other entries). */
static void fs_select(vn_fcand *a, ptrdiff_t n, ptrdiff_t m) {
    ptrdiff_t lo = 0, hi = n; /* the m-th best lies in a[lo .. hi) */
    const ptrdiff_t want = m - 1;
    while (hi - lo > 16) {
        const ptrdiff_t mid = lo + (hi - lo) / 2, last = hi - 1;
        if (fs_above(&a[mid], &a[lo])) fs_cand_swap(&a[mid], &a[lo]);
        if (fs_above(&a[last], &a[lo])) fs_cand_swap(&a[last], &a[lo]);
        if (fs_above(&a[mid], &a[last])) fs_cand_swap(&a[mid], &a[last]);
        const vn_fcand p = a[last]; /* the median of the three */
        ptrdiff_t st = lo;
        for (ptrdiff_t t = lo; t < last; t++) { /* a[lo .. st) above p, a[st .. t) not */
            const vn_fcand x = a[t];
            const ptrdiff_t up = fs_above(&x, &p);
            a[t] = a[st];
            a[st] = x;
            st += up;
        }
        a[last] = a[st];
        a[st] = p;
        if (want == st) return;
        if (want < st) {
            hi = st;
            continue;
        }
        const int lopsided = st - lo < (hi - lo) / 8;
        lo = st + 1;
        if (lopsided) { /* gather the entries equal to p */
            for (ptrdiff_t t = lo; t < hi; t++) {
                const vn_fcand x = a[t];
                const ptrdiff_t eq = !fs_above(&p, &x); /* x is not above p */
                a[t] = a[lo];
                a[lo] = x;
                lo += eq;
            }
            if (want < lo) return;
        }
    }
    fs_insertion_sort(a + lo, hi - lo);
}

/* The order key of a score (not NaN): keys compare as the scores do, -0 as +0. */
static inline uint32_t fs_key(float s) {
    s += 0.0f; /* -0 -> +0 */
    uint32_t u;
    memcpy(&u, &s, sizeof u);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static ptrdiff_t fs_count_below(const uint32_t *key, ptrdiff_t m, uint32_t t) {
    ptrdiff_t n = 0;
    for (ptrdiff_t i = 0; i < m; i++) n += key[i] < t;
    return n;
}

#if VN_X86
/* m a multiple of 16 (fs_keep pads the keys with UINT32_MAX, never below) */
__attribute__((target("avx2,popcnt"))) static ptrdiff_t fs_count_below_avx2(
    const uint32_t *key, ptrdiff_t m, uint32_t t) {
    const __m256i flip = _mm256_set1_epi32((int)0x80000000u); /* unsigned as signed order */
    const __m256i tv = _mm256_set1_epi32((int)(t ^ 0x80000000u));
    ptrdiff_t n = 0;
    for (ptrdiff_t i = 0; i < m; i += 8) {
        const __m256i v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(key + i)), flip);
        n += __builtin_popcount((unsigned)_mm256_movemask_ps(
            _mm256_castsi256_ps(_mm256_cmpgt_epi32(tv, v))));
    }
    return n;
}

__attribute__((target(VN_TARGET_AVX512))) static ptrdiff_t fs_count_below_avx512(
    const uint32_t *key, ptrdiff_t m, uint32_t t) {
    const __m512i tv = _mm512_set1_epi32((int)t);
    ptrdiff_t n = 0;
    for (ptrdiff_t i = 0; i < m; i += 16)
        n += __builtin_popcount(
            (unsigned)_mm512_cmplt_epu32_mask(_mm512_loadu_si512((const void *)(key + i)), tv));
    return n;
}
#endif

/* Keep the k best of c[0 .. m) (1 <= k <= m, no NaN) in c[0 .. k), in their order, and
 * return the k-th best score. The k-th best key is found bit by bit (the largest t with at
 * least k keys >= t, branch-free counts; the bits the smallest and largest keys share are
 * its own, so about 20 counts of a reservoir's scores, not 32), then one pass keeps the keys
 * above it and, of those equal to it, the lowest slots. A quickselect of the 16-byte entries
 * (mispredicted swaps) cost ~6x as much: ~0.9 us a compaction of 92 rows, 3.6 us a dev 2-bit
 * query. */
static float fs_keep(vn_fcand *c, ptrdiff_t m, ptrdiff_t k, const vn_fscratch *x) {
    uint32_t *key = x->keys;
    uint32_t lo = UINT32_MAX, hi = 0;
    for (ptrdiff_t t = 0; t < m; t++) {
        const uint32_t v = fs_key(c[t].s);
        key[t] = v;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    const ptrdiff_t m16 = (m + 15) & ~(ptrdiff_t)15;
    for (ptrdiff_t t = m; t < m16; t++) key[t] = UINT32_MAX; /* never below a threshold */
    uint32_t kc = lo; /* every key is >= lo, the k-th best <= hi */
    if (lo != hi) {
        const int top = 31 - __builtin_clz(lo ^ hi); /* the highest bit they differ in */
        kc = lo & ~((2u << top) - 1u); /* (2u << 31 wraps to 0: nothing kept) */
        for (int b = top; b >= 0; b--) {
            const uint32_t t = kc | (1u << b);
#if VN_X86
            const ptrdiff_t below = x->simd == 2 ? fs_count_below_avx512(key, m16, t)
                                    : x->simd ? fs_count_below_avx2(key, m16, t)
                                              : fs_count_below(key, m, t);
#else
            const ptrdiff_t below = fs_count_below(key, m, t);
#endif
            if (m - below >= k) kc = t;
        }
    }
    ptrdiff_t w = 0, nt = 0;
    for (ptrdiff_t t = 0; t < m; t++) {
        const vn_fcand e = c[t];
        if (key[t] == kc) x->ties[nt++] = e; /* about one a compaction */
        c[w] = e; /* w <= t: entries not yet read are never overwritten */
        w += key[t] > kc;
    }
    const ptrdiff_t need = k - w; /* 1 <= need <= nt */
    if (nt > need) fs_select(x->ties, nt, need); /* equal scores: the lowest slots */
    for (ptrdiff_t t = 0; t < need; t++) c[w + t] = x->ties[t];
    return x->ties[0].s;
}

static inline void fs_res_add(vn_fres *r, float s, int64_t j) {
    r->added++;
    r->c[r->held].s = s;
    r->c[r->held].i = j;
    if (++r->held == r->cap && r->cap > r->k && r->k > 0) { /* compaction: the k best */
        r->thr = fs_keep(r->c, r->held, r->k, r->x);
        r->held = r->k;
        r->primed = 1;
    }
}

/* Sort a[0 .. n) best first: fs_select's partitions, recursively (comparisons inlined;
 * qsort's callback made a 256-row list cost ~30 us a query). */
static void fs_sort(vn_fcand *a, ptrdiff_t n) {
    while (n > 32) {
        const ptrdiff_t m = n / 2;
        fs_select(a, n, m); /* a[m - 1] in place, a[0 .. m - 1) at or above, a[m ..) below */
        fs_sort(a, m - 1);
        a += m;
        n -= m;
    }
    fs_insertion_sort(a, n);
}

/* Select the k best of the reservoir and (sorted) sort them best first; returns their
 * count. */
static ptrdiff_t fs_res_best(vn_fres *r, ptrdiff_t k, int sorted) {
    ptrdiff_t m = r->held;
    if (m > k) {
        if (k > 0) (void)fs_keep(r->c, m, k, r->x); /* fs_keep needs k >= 1 */
        m = k;
    }
    if (sorted) fs_sort(r->c, m);
    return m;
}

/* The k best, best first, into out (padded with -inf / -1). */
static void fs_res_finish(vn_fres *r, ptrdiff_t k, float *out_s, int64_t *out_i, int sorted) {
    const ptrdiff_t m = fs_res_best(r, k, sorted);
    for (ptrdiff_t t = 0; t < m; t++) {
        out_s[t] = r->c[t].s;
        out_i[t] = r->c[t].i;
    }
    for (ptrdiff_t t = m; t < k; t++) {
        out_s[t] = -INFINITY;
        out_i[t] = -1;
    }
}

/* float that may alias other types: the VNNI and dot kernels store a block's float scores
 * into its uint32 sums buffer (vn_gate), read back as floats */
typedef float vn_f32a __attribute__((may_alias));

/* ---------------------------------------------------------------- per-query constants */
typedef struct {
    float bias, delta, qn;
    float lb;   /* added after the scale when has_lb (an inverted list's constant) */
    int has_lb;
} vn_fsq;

/* What the kernels with the tests in their registers (the VNNI and dot kernels,
 * vn_fs_path.kscore) do with a block's sums besides storing them; the others ignore it. */
typedef struct {
    /* Block pruning (nq int32, fs_cut): bit q of the result is set when a sum of query q (as
     * int32) is above cut[q]; a clear bit: no row of the block can pass, it is not scored. */
    const int32_t *cut;
    /* Or, with rows (cut NULL), the scores themselves: per query of the pass bias, delta and
     * thr, the block's 32 row scales (NULL: none); query q's 32 sums are replaced by its
     * float32 scores scale * (bias + delta * S) (score_fn's arithmetic, no l2, no list
     * constant), rows[q] gets bit r for score r > thr[q] and bit q of the result is set when
     * rows[q] is not 0. */
    const float *bias, *delta, *thr, *scale;
    uint32_t *rows;
} vn_gate;

/* sums (nq, 32) of one block for nq <= VN_FS_MAXSUB queries, rows in natural order; gate:
 * see vn_gate (NULL, or a kernel without the tests: every bit of the result set). */
typedef unsigned (*vn_sums_fn)(const uint8_t *blk, const uint8_t *const *luts, int nq,
                               ptrdiff_t nb, uint32_t *sums, const vn_gate *gate);
#define VN_ALL_LIVE(nq) ((1u << (nq)) - 1u)
/* scores of a block's 32 rows; bit r of the result: score r > thr */
typedef uint32_t (*vn_score_fn)(const uint32_t *sums, const vn_fsq *c, const float *scale,
                                const float *xn, float thr, float *out);

/* The fixed-width specializations of a kernel (SPEC(N) for N = 1 .. 4 or 1 .. 8) and the
 * dispatch to fn##_N for nq queries (larger nq: the widest). */
#define VN_EACH_NQ4(SPEC) SPEC(1) SPEC(2) SPEC(3) SPEC(4)
#define VN_EACH_NQ8(SPEC) VN_EACH_NQ4(SPEC) SPEC(5) SPEC(6) SPEC(7) SPEC(8)
#define VN_CALL_NQ4(nq, fn, ...)                                                          \
    switch (nq) {                                                                         \
    case 1: fn##_1(__VA_ARGS__); break;                                                   \
    case 2: fn##_2(__VA_ARGS__); break;                                                   \
    case 3: fn##_3(__VA_ARGS__); break;                                                   \
    default: fn##_4(__VA_ARGS__); break;                                                  \
    }
#define VN_RET_NQ8(nq, fn, ...)                                                           \
    switch (nq) {                                                                         \
    case 1: return fn##_1(__VA_ARGS__);                                                   \
    case 2: return fn##_2(__VA_ARGS__);                                                   \
    case 3: return fn##_3(__VA_ARGS__);                                                   \
    case 4: return fn##_4(__VA_ARGS__);                                                   \
    case 5: return fn##_5(__VA_ARGS__);                                                   \
    case 6: return fn##_6(__VA_ARGS__);                                                   \
    case 7: return fn##_7(__VA_ARGS__);                                                   \
    default: return fn##_8(__VA_ARGS__);                                                  \
    }
#define VN_CALL_NQ8(nq, fn, ...)                                                          \
    switch (nq) {                                                                         \
    case 1: fn##_1(__VA_ARGS__); break;                                                   \
    case 2: fn##_2(__VA_ARGS__); break;                                                   \
    case 3: fn##_3(__VA_ARGS__); break;                                                   \
    case 4: fn##_4(__VA_ARGS__); break;                                                   \
    case 5: fn##_5(__VA_ARGS__); break;                                                   \
    case 6: fn##_6(__VA_ARGS__); break;                                                   \
    case 7: fn##_7(__VA_ARGS__); break;                                                   \
    default: fn##_8(__VA_ARGS__); break;                                                  \
    }

/* ---------------------------------------------------------------- portable */
static unsigned sums_portable(const uint8_t *blk, const uint8_t *const *luts, int nq,
                              ptrdiff_t nb, uint32_t *sums, const vn_gate *gate) {
    (void)gate;
    for (int q = 0; q < nq; q++) {
        uint32_t *o = sums + 32 * q;
        const uint8_t *L = luts[q];
        for (int r = 0; r < 32; r++) o[r] = 0;
        for (ptrdiff_t p = 0; p < nb; p++) {
            const uint8_t *c = blk + 32 * p;
            const uint8_t *ta = L + 32 * p, *tb = ta + 16;
            for (int r = 0; r < 16; r++) {
                const unsigned ca = c[r], cb = c[16 + r];
                o[r] += (uint32_t)ta[ca & 15] + tb[cb & 15];
                o[16 + r] += (uint32_t)ta[ca >> 4] + tb[cb >> 4];
            }
        }
    }
    return VN_ALL_LIVE(nq);
}

static inline float fs_score1(uint32_t S, const vn_fsq *c, const float *scale,
                              const float *xn, int r) {
    float s = c->bias + c->delta * (float)(int32_t)S; /* dot sums are signed */
    if (scale) s = scale[r] * s;
    if (c->has_lb) s = c->lb + s;
    if (xn) {
        const float t = (c->qn + xn[r]) - 2.0f * s;
        s = -(t > 0.0f ? t : 0.0f);
    }
    return s;
}

static uint32_t score_portable(const uint32_t *sums, const vn_fsq *c, const float *scale,
                               const float *xn, float thr, float *out) {
    uint32_t m = 0;
    for (int r = 0; r < 32; r++) {
        const float s = fs_score1(sums[r], c, scale, xn, r);
        out[r] = s;
        m |= (uint32_t)(s > thr) << r;
    }
    return m;
}

#if VN_X86
/* ---------------------------------------------------------------- AVX2 */
/* e0/o0: u32 sums of even/odd rows 0..15 (lane m: row 2m / 2m+1), e1/o1 rows 16..31 */
__attribute__((target("avx2"), always_inline)) static inline void fs_store_rows(
    __m256i e0, __m256i o0, __m256i e1, __m256i o1, uint32_t *o) {
    __m256i lo = _mm256_unpacklo_epi32(e0, o0), hi = _mm256_unpackhi_epi32(e0, o0);
    _mm256_storeu_si256((__m256i *)o, _mm256_permute2x128_si256(lo, hi, 0x20));
    _mm256_storeu_si256((__m256i *)(o + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
    lo = _mm256_unpacklo_epi32(e1, o1);
    hi = _mm256_unpackhi_epi32(e1, o1);
    _mm256_storeu_si256((__m256i *)(o + 16), _mm256_permute2x128_si256(lo, hi, 0x20));
    _mm256_storeu_si256((__m256i *)(o + 24), _mm256_permute2x128_si256(lo, hi, 0x31));
}

/* u16 lanes (a = even + 256 odd, b = odd) of two tables -> u32 even and odd row sums */
__attribute__((target("avx2"), always_inline)) static inline void fs_widen_avx2(
    __m256i a, __m256i b, __m256i *e, __m256i *o) {
    const __m256i ev = _mm256_sub_epi16(a, _mm256_slli_epi16(b, 8));
    *e = _mm256_add_epi32(*e, _mm256_add_epi32(
        _mm256_cvtepu16_epi32(_mm256_castsi256_si128(ev)),
        _mm256_cvtepu16_epi32(_mm256_extracti128_si256(ev, 1))));
    *o = _mm256_add_epi32(*o, _mm256_add_epi32(
        _mm256_cvtepu16_epi32(_mm256_castsi256_si128(b)),
        _mm256_cvtepu16_epi32(_mm256_extracti128_si256(b, 1))));
}

/* The AVX2 sums, written out per query count (1..3) with named accumulators: GCC keeps
 * them in registers this way (arrays of __m256i were spilled and reloaded).
 * Per column: one 32-byte load of codes, the low and high nibbles, and per query one load
 * of its two tables and two vpshufb, added in bytes over a group of VN_FS_GROUP columns
 * (entries <= VN_FS_LUTMAX: a byte holds the group's sum), then into 16-bit lanes. */
#define FS2_DECL(q) __m256i aL##q = z, bL##q = z, aH##q = z, bH##q = z
#define FS2_UZERO(q) __m256i uL##q = z, uH##q = z
#define FS2_COL(q)                                                                        \
    do {                                                                                  \
        const __m256i t = _mm256_loadu_si256((const __m256i *)(L##q + 32 * p));           \
        uL##q = _mm256_add_epi8(uL##q, _mm256_shuffle_epi8(t, lo));                       \
        uH##q = _mm256_add_epi8(uH##q, _mm256_shuffle_epi8(t, hi));                       \
    } while (0)
#define FS2_ACC(q)                                                                        \
    do {                                                                                  \
        aL##q = _mm256_add_epi16(aL##q, uL##q);                                           \
        bL##q = _mm256_add_epi16(bL##q, _mm256_srli_epi16(uL##q, 8));                     \
        aH##q = _mm256_add_epi16(aH##q, uH##q);                                           \
        bH##q = _mm256_add_epi16(bH##q, _mm256_srli_epi16(uH##q, 8));                     \
    } while (0)
#define FS2_WIDEN(q)                                                                      \
    do {                                                                                  \
        fs_widen_avx2(aL##q, bL##q, &e0[q], &o0[q]);                                      \
        fs_widen_avx2(aH##q, bH##q, &e1[q], &o1[q]);                                      \
    } while (0)
#define FS2_COLUMN(FOR_Q)                                                                 \
    do {                                                                                  \
        const __m256i c = _mm256_loadu_si256((const __m256i *)(blk + 32 * p));            \
        const __m256i lo = _mm256_and_si256(c, m4);                                       \
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), m4);                 \
        FOR_Q(FS2_COL);                                                                   \
    } while (0)
#define FS2_BODY(NQ, FOR_Q)                                                               \
    const __m256i m4 = _mm256_set1_epi8(0x0f);                                            \
    const __m256i z = _mm256_setzero_si256();                                             \
    __m256i e0[NQ], o0[NQ], e1[NQ], o1[NQ];                                               \
    for (int q = 0; q < NQ; q++) e0[q] = o0[q] = e1[q] = o1[q] = z;                       \
    for (ptrdiff_t p0 = 0; p0 < nb; p0 += VN_FS_CHUNK) {                                  \
        const ptrdiff_t p1 = (p0 + VN_FS_CHUNK < nb) ? p0 + VN_FS_CHUNK : nb;             \
        FOR_Q(FS2_DECL);                                                                  \
        ptrdiff_t g = p0;                                                                 \
        for (; g + VN_FS_GROUP <= p1; g += VN_FS_GROUP) {                                 \
            FOR_Q(FS2_UZERO);                                                             \
            for (ptrdiff_t p = g; p < g + VN_FS_GROUP; p++) FS2_COLUMN(FOR_Q);            \
            FOR_Q(FS2_ACC);                                                               \
        }                                                                                 \
        if (g < p1) { /* a short last group */                                            \
            FOR_Q(FS2_UZERO);                                                             \
            for (ptrdiff_t p = g; p < p1; p++) FS2_COLUMN(FOR_Q);                         \
            FOR_Q(FS2_ACC);                                                               \
        }                                                                                 \
        FOR_Q(FS2_WIDEN);                                                                 \
    }                                                                                     \
    for (int q = 0; q < NQ; q++) fs_store_rows(e0[q], o0[q], e1[q], o1[q], sums + 32 * q);

#define FS_Q1(M) M(0)
#define FS_Q2(M) M(0); M(1)
#define FS_Q3(M) M(0); M(1); M(2)

__attribute__((target("avx2"))) static void sums_avx2_1(
    const uint8_t *blk, const uint8_t *const *luts, ptrdiff_t nb, uint32_t *sums) {
    const uint8_t *L0 = luts[0];
    FS2_BODY(1, FS_Q1)
}
__attribute__((target("avx2"))) static void sums_avx2_2(
    const uint8_t *blk, const uint8_t *const *luts, ptrdiff_t nb, uint32_t *sums) {
    const uint8_t *L0 = luts[0], *L1 = luts[1];
    FS2_BODY(2, FS_Q2)
}
__attribute__((target("avx2"))) static void sums_avx2_3(
    const uint8_t *blk, const uint8_t *const *luts, ptrdiff_t nb, uint32_t *sums) {
    const uint8_t *L0 = luts[0], *L1 = luts[1], *L2 = luts[2];
    FS2_BODY(3, FS_Q3)
}
__attribute__((target("avx2"))) static void sums_avx2_4(
    const uint8_t *blk, const uint8_t *const *luts, ptrdiff_t nb, uint32_t *sums) {
    sums_avx2_2(blk, luts, nb, sums);
    sums_avx2_2(blk, luts + 2, nb, sums + 64);
}

static unsigned sums_avx2(const uint8_t *blk, const uint8_t *const *luts, int nq,
                          ptrdiff_t nb, uint32_t *sums, const vn_gate *gate) {
    (void)gate;
    VN_CALL_NQ4(nq, sums_avx2, blk, luts, nb, sums)
    return VN_ALL_LIVE(nq);
}

__attribute__((target("avx2"))) static uint32_t score_avx2(const uint32_t *sums,
                                                           const vn_fsq *c,
                                                           const float *scale,
                                                           const float *xn, float thr,
                                                           float *out) {
    const __m256 bias = _mm256_set1_ps(c->bias), delta = _mm256_set1_ps(c->delta);
    const __m256 thrv = _mm256_set1_ps(thr), zero = _mm256_setzero_ps();
    const __m256 two = _mm256_set1_ps(2.0f), qn = _mm256_set1_ps(c->qn);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    uint32_t m = 0;
    for (int g = 0; g < 4; g++) {
        const __m256 f = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(sums + 8 * g)));
        __m256 s = _mm256_add_ps(bias, _mm256_mul_ps(delta, f));
        if (scale) s = _mm256_mul_ps(_mm256_loadu_ps(scale + 8 * g), s);
        if (c->has_lb) s = _mm256_add_ps(_mm256_set1_ps(c->lb), s);
        if (xn) {
            __m256 t = _mm256_sub_ps(_mm256_add_ps(qn, _mm256_loadu_ps(xn + 8 * g)),
                                     _mm256_mul_ps(two, s));
            t = _mm256_and_ps(t, _mm256_cmp_ps(t, zero, _CMP_GT_OQ));
            s = _mm256_xor_ps(t, sign);
        }
        _mm256_storeu_ps(out + 8 * g, s);
        m |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(s, thrv, _CMP_GT_OQ)) << (8 * g);
    }
    return m;
}

/* ---------------------------------------------------------------- AVX-512 */
/* 16-bit lanes over four tables (one per 128-bit lane) -> u32 even and odd row sums */
__attribute__((target(VN_TARGET_AVX512), always_inline)) static inline void fs_widen_avx512(
    __m512i a, __m512i b, __m256i *e, __m256i *o) {
    const __m512i ev = _mm512_sub_epi16(a, _mm512_slli_epi16(b, 8));
    const __m512i e32 = _mm512_add_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(ev)),
                                         _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(ev, 1)));
    const __m512i o32 = _mm512_add_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(b)),
                                         _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(b, 1)));
    *e = _mm256_add_epi32(*e, _mm256_add_epi32(_mm512_castsi512_si256(e32),
                                               _mm512_extracti64x4_epi64(e32, 1)));
    *o = _mm256_add_epi32(*o, _mm256_add_epi32(_mm512_castsi512_si256(o32),
                                               _mm512_extracti64x4_epi64(o32, 1)));
}

/* two byte columns (one 64-byte load) a step, added in bytes over a group of VN_FS_GROUP
 * columns as in the AVX2 path; a mask zeroes the column past nb of an odd tail (zero tables
 * add 0) */
__attribute__((target(VN_TARGET_AVX512), always_inline)) static inline void
fs_step_avx512(const uint8_t *blk, const uint8_t *const *luts, ptrdiff_t p, __mmask64 km,
               __m512i *uL, __m512i *uH, const int NQ) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i c = _mm512_maskz_loadu_epi8(km, blk + 32 * p);
    const __m512i lo = _mm512_and_si512(c, m4);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(c, 4), m4);
    for (int q = 0; q < NQ; q++) {
        const __m512i t = _mm512_maskz_loadu_epi8(km, luts[q] + 32 * p);
        uL[q] = _mm512_add_epi8(uL[q], _mm512_shuffle_epi8(t, lo));
        uH[q] = _mm512_add_epi8(uH[q], _mm512_shuffle_epi8(t, hi));
    }
}

__attribute__((target(VN_TARGET_AVX512), always_inline)) static inline void
sums_avx512_impl(const uint8_t *blk, const uint8_t *const *luts, ptrdiff_t nb,
                 uint32_t *sums, const int NQ) {
    const __m512i z = _mm512_setzero_si512();
    const __m256i z2 = _mm256_setzero_si256();
    const __mmask64 all = ~(__mmask64)0, half = (__mmask64)0xffffffffu;
    __m256i e0[VN_FS_MAXSUB], o0[VN_FS_MAXSUB], e1[VN_FS_MAXSUB], o1[VN_FS_MAXSUB];
    for (int q = 0; q < NQ; q++) e0[q] = o0[q] = e1[q] = o1[q] = z2;
    /* a 128-bit lane sees every other column: a chunk of 2 * VN_FS_CHUNK columns adds 256
     * groups of VN_FS_GROUP entries to each 16-bit lane */
    for (ptrdiff_t p0 = 0; p0 < nb; p0 += 2 * VN_FS_CHUNK) {
        const ptrdiff_t p1 = (p0 + 2 * VN_FS_CHUNK < nb) ? p0 + 2 * VN_FS_CHUNK : nb;
        __m512i aL[VN_FS_MAXSUB], bL[VN_FS_MAXSUB], aH[VN_FS_MAXSUB], bH[VN_FS_MAXSUB];
        __m512i uL[VN_FS_MAXSUB], uH[VN_FS_MAXSUB];
        for (int q = 0; q < NQ; q++) aL[q] = bL[q] = aH[q] = bH[q] = z;
        for (ptrdiff_t g = p0; g < p1; g += 2 * VN_FS_GROUP) {
            const ptrdiff_t ge = (g + 2 * VN_FS_GROUP < p1) ? g + 2 * VN_FS_GROUP : p1;
            for (int q = 0; q < NQ; q++) uL[q] = uH[q] = z;
            ptrdiff_t p = g;
            for (; p + 2 <= ge; p += 2) fs_step_avx512(blk, luts, p, all, uL, uH, NQ);
            if (p < ge) fs_step_avx512(blk, luts, p, half, uL, uH, NQ);
            for (int q = 0; q < NQ; q++) {
                aL[q] = _mm512_add_epi16(aL[q], uL[q]);
                bL[q] = _mm512_add_epi16(bL[q], _mm512_srli_epi16(uL[q], 8));
                aH[q] = _mm512_add_epi16(aH[q], uH[q]);
                bH[q] = _mm512_add_epi16(bH[q], _mm512_srli_epi16(uH[q], 8));
            }
        }
        for (int q = 0; q < NQ; q++) {
            fs_widen_avx512(aL[q], bL[q], &e0[q], &o0[q]);
            fs_widen_avx512(aH[q], bH[q], &e1[q], &o1[q]);
        }
    }
    for (int q = 0; q < NQ; q++) fs_store_rows(e0[q], o0[q], e1[q], o1[q], sums + 32 * q);
}

#define VN_FS_AVX512_NQ(N)                                                                \
    __attribute__((target(VN_TARGET_AVX512))) static void sums_avx512_##N(                \
        const uint8_t *blk, const uint8_t *const *luts, ptrdiff_t nb, uint32_t *sums) {   \
        sums_avx512_impl(blk, luts, nb, sums, N);                                         \
    }
VN_EACH_NQ4(VN_FS_AVX512_NQ)

static unsigned sums_avx512(const uint8_t *blk, const uint8_t *const *luts, int nq,
                            ptrdiff_t nb, uint32_t *sums, const vn_gate *gate) {
    (void)gate;
    VN_CALL_NQ4(nq, sums_avx512, blk, luts, nb, sums)
    return VN_ALL_LIVE(nq);
}
#endif

/* ---------------------------------------------------------------- dot mode */
/* Most queries a pass of the dot kernel (two accumulators each: 16 of 32 registers; dev,
 * 4-bit, 1 thread: 4 / 6 / 8 / 10 / 12 a pass 49 / 48 / 46 / 49 / 46 us a query). */
#define VN_DOT_MAXSUB 8

/* sums (nq, 32) of one block: sum of (levels[code] - 128) * w over the 2 nb sub-codes
 * (int32 stored in uint32); levels: the 16 levels repeated four times (64 bytes, one per
 * 128-bit lane); seed[q] = -128 * sum(w[q]) (used by the SIMD kernel only) */
typedef unsigned (*vn_dot_fn)(const uint8_t *blk, const int8_t *const *w,
                              const int32_t *seed, const uint8_t *levels, int nq, ptrdiff_t nb,
                              uint32_t *sums, const vn_gate *gate);

static unsigned dot_portable(const uint8_t *blk, const int8_t *const *w, const int32_t *seed,
                             const uint8_t *levels, int nq, ptrdiff_t nb, uint32_t *sums,
                             const vn_gate *gate) {
    (void)seed;
    (void)gate;
    int32_t lv[16];
    for (int c = 0; c < 16; c++) lv[c] = (int32_t)levels[c] - 128;
    for (int q = 0; q < nq; q++) {
        int32_t o[32] = {0};
        const int8_t *W = w[q];
        for (ptrdiff_t p = 0; p < nb; p++) {
            const uint8_t *c = blk + 32 * p;
            const int32_t wa = W[2 * p], wb = W[2 * p + 1];
            for (int r = 0; r < 16; r++) {
                const unsigned ca = c[r], cb = c[16 + r];
                o[r] += lv[ca & 15] * wa + lv[cb & 15] * wb;
                o[16 + r] += lv[ca >> 4] * wa + lv[cb >> 4] * wb;
            }
        }
        for (int r = 0; r < 32; r++) sums[32 * q + r] = (uint32_t)o[r];
    }
    return VN_ALL_LIVE(nq);
}

#if VN_X86
/* byte 4r + t of the result = byte 16t + r of the load: dword r holds row r's (low
 * nibbles) and row 16 + r's (high nibbles) sub-codes 2p .. 2p + 3 */
static const uint8_t vn_dot_transpose[64] = {
    0, 16, 32, 48, 1, 17, 33, 49, 2, 18, 34, 50, 3, 19, 35, 51,
    4, 20, 36, 52, 5, 21, 37, 53, 6, 22, 38, 54, 7, 23, 39, 55,
    8, 24, 40, 56, 9, 25, 41, 57, 10, 26, 42, 58, 11, 27, 43, 59,
    12, 28, 44, 60, 13, 29, 45, 61, 14, 30, 46, 62, 15, 31, 47, 63};

/* acc += dpbusd(a, b). GCC 12 copies every accumulator twice an iteration around the
 * intrinsic (the loop ran ~1.6x slower); the asm ties it to its register. The emulated
 * build keeps the intrinsic. */
#ifdef VN_EMULATE_AVX512
#define VN_DPBUSD(acc, a, b) ((acc) = _mm512_dpbusd_epi32((acc), (a), (b)))
#else
#define VN_DPBUSD(acc, a, b) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b))
#endif

/* The accumulators are named variables (rows 0..15 and 16..31 of query q: d0_q, d1_q), not
 * arrays: with arrays GCC kept them on the stack. X(q) for q < NQ (NQ a constant). */
#define VN_DOT_EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define VN_DOT_DECL(q) __m512i d0_##q = _mm512_setzero_si512(), d1_##q = d0_##q;
#define VN_DOT_INIT(q) if (NQ > q) d0_##q = d1_##q = _mm512_set1_epi32(seed[q]);
#define VN_DOT_ADD(q)                                                                     \
    if (NQ > q) {                                                                         \
        const __m512i wv_ = _mm512_set1_epi32(VN_DOT_W(q));                               \
        VN_DPBUSD(d0_##q, lo_, wv_);                                                      \
        VN_DPBUSD(d1_##q, hi_, wv_);                                                      \
    }
#define VN_DOT_STORE(q)                                                                   \
    if (NQ > q) {                                                                         \
        if (ks) { /* score_fn's float32 operations, in the same order */                  \
            const __m512 dl_ = _mm512_set1_ps(ks->delta[q]);                              \
            const __m512 b_ = _mm512_set1_ps(ks->bias[q]);                                \
            __m512 s0_ = _mm512_add_ps(b_, _mm512_mul_ps(dl_, _mm512_cvtepi32_ps(d0_##q)));  \
            __m512 s1_ = _mm512_add_ps(b_, _mm512_mul_ps(dl_, _mm512_cvtepi32_ps(d1_##q)));  \
            if (ks->scale) {                                                              \
                s0_ = _mm512_mul_ps(sc0_, s0_);                                           \
                s1_ = _mm512_mul_ps(sc1_, s1_);                                           \
            }                                                                             \
            _mm512_storeu_ps((void *)(sums + 32 * q), s0_);                               \
            _mm512_storeu_ps((void *)(sums + 32 * q + 16), s1_);                          \
            const __m512 t_ = _mm512_set1_ps(ks->thr[q]);                                 \
            const uint32_t r_ = (uint32_t)_mm512_cmp_ps_mask(s0_, t_, _CMP_GT_OQ) |       \
                                (uint32_t)_mm512_cmp_ps_mask(s1_, t_, _CMP_GT_OQ) << 16;  \
            ks->rows[q] = r_;                                                             \
            live |= (unsigned)(r_ != 0) << q;                                             \
        } else {                                                                          \
            _mm512_storeu_si512((void *)(sums + 32 * q), d0_##q);                         \
            _mm512_storeu_si512((void *)(sums + 32 * q + 16), d1_##q);                    \
            if (cut) {                                                                    \
                const __m512i c_ = _mm512_set1_epi32(cut[q]);                             \
                live |= (unsigned)((_mm512_cmpgt_epi32_mask(d0_##q, c_) |                 \
                                    _mm512_cmpgt_epi32_mask(d1_##q, c_)) != 0) << q;      \
            }                                                                             \
        }                                                                                 \
    }
/* before VN_DOT_EACH(VN_DOT_STORE): the gate's parts and the block's row scales */
#define VN_GATE_SETUP                                                                     \
    const int32_t *cut = gate ? gate->cut : NULL;                                         \
    const vn_gate *ks = gate && gate->rows ? gate : NULL;                                 \
    __m512 sc0_ = _mm512_setzero_ps(), sc1_ = sc0_;                                       \
    if (ks && ks->scale) {                                                                \
        sc0_ = _mm512_loadu_ps(ks->scale);                                                \
        sc1_ = _mm512_loadu_ps(ks->scale + 16);                                           \
    }
#define VN_GATE_RESULT(NQ) (cut || ks ? live : VN_ALL_LIVE(NQ))
/* one step: a 64-byte load c of two columns (sub-codes 2p .. 2p + 3); VN_DOT_W(q) gives
 * query q's four weights as a dword */
#define VN_DOT_STEP(c)                                                                    \
    do {                                                                                  \
        const __m512i t_ = _mm512_permutexvar_epi8(tr, (c));                              \
        const __m512i lo_ = _mm512_shuffle_epi8(lv, _mm512_and_si512(t_, m4));            \
        const __m512i hi_ = _mm512_shuffle_epi8(                                          \
            lv, _mm512_and_si512(_mm512_srli_epi16(t_, 4), m4));                          \
        VN_DOT_EACH(VN_DOT_ADD)                                                           \
    } while (0)

static inline int32_t dot_w4(const int8_t *w) { /* four weights as one dword */
    int32_t v;
    memcpy(&v, w, 4);
    return v;
}

__attribute__((target(VN_TARGET_AVX512_DOT), always_inline)) static inline unsigned
dot_avx512_impl(const uint8_t *blk, const int8_t *const *w, const int32_t *seed,
                const uint8_t *levels, ptrdiff_t nb, uint32_t *sums, const vn_gate *gate,
                const int NQ) {
    unsigned live = 0;
    const __m512i lv = _mm512_loadu_si512((const void *)levels);
    const __m512i tr = _mm512_loadu_si512((const void *)vn_dot_transpose);
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    VN_DOT_EACH(VN_DOT_DECL)
    VN_DOT_EACH(VN_DOT_INIT)
    const ptrdiff_t even = nb & ~(ptrdiff_t)1;
    ptrdiff_t p = 0;
#define VN_DOT_W(q) dot_w4(w[q] + 2 * p)
    for (; p < even; p += 2) VN_DOT_STEP(_mm512_loadu_si512((const void *)(blk + 32 * p)));
#undef VN_DOT_W
    if (p < nb) { /* odd last column: sub-codes 2p + 2, 2p + 3 read as code 0, weight 0 */
#define VN_DOT_W(q) \
    (int32_t)((uint32_t)(uint8_t)w[q][2 * p] | ((uint32_t)(uint8_t)w[q][2 * p + 1] << 8))
        VN_DOT_STEP(_mm512_maskz_loadu_epi8((__mmask64)0xffffffffu, blk + 32 * p));
#undef VN_DOT_W
    }
    VN_GATE_SETUP
    VN_DOT_EACH(VN_DOT_STORE)
    return VN_GATE_RESULT(NQ);
}

#define VN_DOT_AVX512_NQ(N)                                                               \
    __attribute__((target(VN_TARGET_AVX512_DOT))) static unsigned dot_avx512_##N(        \
        const uint8_t *blk, const int8_t *const *w, const int32_t *seed,                  \
        const uint8_t *levels, ptrdiff_t nb, uint32_t *sums, const vn_gate *gate) {       \
        return dot_avx512_impl(blk, w, seed, levels, nb, sums, gate, N);                  \
    }
VN_EACH_NQ8(VN_DOT_AVX512_NQ)

static unsigned dot_avx512(const uint8_t *blk, const int8_t *const *w, const int32_t *seed,
                           const uint8_t *levels, int nq, ptrdiff_t nb, uint32_t *sums,
                           const vn_gate *gate) {
    VN_RET_NQ8(nq, dot_avx512, blk, w, seed, levels, nb, sums, gate)
}

/* The table mode on the same CPUs (VNNI + VBMI): the transposed codes' nibbles, offset by
 * 16 t for byte t of each dword (kpos), index the query's 64 bytes of tables 2p .. 2p + 3
 * (columns p and p + 1 as stored) in one vpermb, and vpdpbusd against ones adds each
 * dword's four entries into its row's u32 sum: no byte sums to widen, two accumulators a
 * query. The same exact integer sums as every other path. */
#define VN_VNNI_ADD(q)                                                                    \
    if (NQ > q) {                                                                         \
        const __m512i t_ = VN_VNNI_LUT(q);                                                \
        VN_DPBUSD(d0_##q, _mm512_permutexvar_epi8(lo_, t_), ones);                        \
        VN_DPBUSD(d1_##q, _mm512_permutexvar_epi8(hi_, t_), ones);                        \
    }
/* two steps at once: entries <= 127, so two lookups add in bytes before one vpdpbusd */
#define VN_VNNI_ADD2(q)                                                                   \
    if (NQ > q) {                                                                         \
        const __m512i ta_ = _mm512_loadu_si512((const void *)(luts[q] + 32 * p));         \
        const __m512i tb_ = _mm512_loadu_si512((const void *)(luts[q] + 32 * p + 64));    \
        VN_DPBUSD(d0_##q, _mm512_add_epi8(_mm512_permutexvar_epi8(loa_, ta_),             \
                                          _mm512_permutexvar_epi8(lob_, tb_)), ones);     \
        VN_DPBUSD(d1_##q, _mm512_add_epi8(_mm512_permutexvar_epi8(hia_, ta_),             \
                                          _mm512_permutexvar_epi8(hib_, tb_)), ones);     \
    }
/* the vpermb indices of a 64-byte load c: rows 0..15 (lo) and 16..31 (hi) */
#define VN_VNNI_IDX(c, lo, hi)                                                            \
    const __m512i lo##_t_ = _mm512_permutexvar_epi8(tr, (c));                             \
    const __m512i lo = _mm512_or_si512(_mm512_and_si512(lo##_t_, m4), kpos);              \
    const __m512i hi = _mm512_or_si512(                                                   \
        _mm512_and_si512(_mm512_srli_epi16(lo##_t_, 4), m4), kpos);
#define VN_VNNI_STEP(c)                                                                   \
    do {                                                                                  \
        VN_VNNI_IDX(c, lo_, hi_)                                                          \
        VN_DOT_EACH(VN_VNNI_ADD)                                                          \
    } while (0)

__attribute__((target(VN_TARGET_AVX512_DOT), always_inline)) static inline unsigned
sums_vnni_impl(const uint8_t *blk, const uint8_t *const *luts, ptrdiff_t nb, uint32_t *sums,
               const vn_gate *gate, const int NQ) {
    unsigned live = 0;
    const __m512i tr = _mm512_loadu_si512((const void *)vn_dot_transpose);
    const __m512i m4 = _mm512_set1_epi8(0x0f), ones = _mm512_set1_epi8(1);
    const __m512i kpos = _mm512_set1_epi32(0x30201000);
    VN_DOT_EACH(VN_DOT_DECL)
    const ptrdiff_t even = nb & ~(ptrdiff_t)1;
    ptrdiff_t p = 0;
    for (; p + 4 <= nb; p += 4) { /* four columns (two steps) a pass (2-bit dev: 1.1x) */
        VN_VNNI_IDX(_mm512_loadu_si512((const void *)(blk + 32 * p)), loa_, hia_)
        VN_VNNI_IDX(_mm512_loadu_si512((const void *)(blk + 32 * p + 64)), lob_, hib_)
        VN_DOT_EACH(VN_VNNI_ADD2)
    }
#define VN_VNNI_LUT(q) _mm512_loadu_si512((const void *)(luts[q] + 32 * p))
    for (; p < even; p += 2) VN_VNNI_STEP(_mm512_loadu_si512((const void *)(blk + 32 * p)));
#undef VN_VNNI_LUT
    if (p < nb) { /* odd last column: tables 2p + 2, 2p + 3 read as zeros */
        const __mmask64 half = (__mmask64)0xffffffffu;
#define VN_VNNI_LUT(q) _mm512_maskz_loadu_epi8(half, luts[q] + 32 * p)
        VN_VNNI_STEP(_mm512_maskz_loadu_epi8(half, blk + 32 * p));
#undef VN_VNNI_LUT
    }
    VN_GATE_SETUP
    VN_DOT_EACH(VN_DOT_STORE)
    return VN_GATE_RESULT(NQ);
}

#define VN_VNNI_NQ(N)                                                                     \
    __attribute__((target(VN_TARGET_AVX512_DOT))) static unsigned sums_vnni_##N(          \
        const uint8_t *blk, const uint8_t *const *luts, ptrdiff_t nb, uint32_t *sums,     \
        const vn_gate *gate) {                                                            \
        return sums_vnni_impl(blk, luts, nb, sums, gate, N);                              \
    }
VN_EACH_NQ8(VN_VNNI_NQ)

static unsigned sums_vnni(const uint8_t *blk, const uint8_t *const *luts, int nq,
                          ptrdiff_t nb, uint32_t *sums, const vn_gate *gate) {
    VN_RET_NQ8(nq, sums_vnni, blk, luts, nb, sums, gate)
}
#endif

/* ---------------------------------------------------------------- triple route
 * Additive 2-bit tables (fastscan.quantize_parts): every pair table is the exact sum
 * L_t[c0 + 4 c1] = A_t[c0] + B_t[c1] + K_t of tables of its two coordinates (2t, 2t + 1),
 * A and B at most 42 (t3_tables recovers them from L and checks all of it). The
 * coordinates are then regrouped by three: triple g's 64-entry table T_g[c0 + 4 c1 + 16 c2]
 * = P_3g[c0] + P_3g+1[c1] + P_3g+2[c2] <= 126 (P_2t = A_t, P_2t+1 = B_t, 0 past 4 nb),
 * indexed by the row's three 2-bit codes, and S = sum_g T_g + sum_t K_t is the pair
 * route's integer sum. One vpermi2b looks up two triples (128 entries) for 32 rows, six
 * coordinates a byte against two for a pair-table vpermb: a step (4 triples, 12
 * coordinates, 3 byte columns) costs a block and query two vpermi2b, a byte add, vpmaddubsw
 * and a 16-bit add (Zen 4, dev 2-bit, the sums alone: 25 -> 19 us a query). The indices
 * come from the codes' nibbles (t3_expand, once a tile for a whole group of queries); the
 * kernel takes units of 4 blocks, so that each table load serves 128 rows, and passes of 2
 * queries, whose tables (2 x 8 KiB at 384 dimensions) stay in L1. */
#define VN_T3_UNIT 128
/* uint16 sums: at most 4 x 126 a step, exact up to 130 steps (1560 coordinates) */
#define VN_T3_MAX_STEPS 130

#if VN_X86
static const uint8_t vn_t3_pat[][64] = {
    /* 0 pc0: L_t[c0] at every c1 */
    {
     0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3,
     16, 17, 18, 19, 16, 17, 18, 19, 16, 17, 18, 19, 16, 17, 18, 19,
     32, 33, 34, 35, 32, 33, 34, 35, 32, 33, 34, 35, 32, 33, 34, 35,
     48, 49, 50, 51, 48, 49, 50, 51, 48, 49, 50, 51, 48, 49, 50, 51},
    /* 1 pc1: L_t[4 c1] at every c0 */
    {
     0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12,
     16, 16, 16, 16, 20, 20, 20, 20, 24, 24, 24, 24, 28, 28, 28, 28,
     32, 32, 32, 32, 36, 36, 36, 36, 40, 40, 40, 40, 44, 44, 44, 44,
     48, 48, 48, 48, 52, 52, 52, 52, 56, 56, 56, 56, 60, 60, 60, 60},
    /* 2 p00: L_t[0] */
    {
     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
     16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
     32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32,
     48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48},
    /* 3 x1: in-lane partner e ^ 1 */
    {
     1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14,
     1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14,
     1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14,
     1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14},
    /* 4 x2: e ^ 2 */
    {
     2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13,
     2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13,
     2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13,
     2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13},
    /* 5 x4: e ^ 4 */
    {
     4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11,
     4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11,
     4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11,
     4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11},
    /* 6 x8: e ^ 8 */
    {
     8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7,
     8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7,
     8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7,
     8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7},
    /* 7 gat: coordinate tables: A_t (byte 16u + c of A), then B_t (16u + 4c of B) */
    {
     0, 1, 2, 3, 64, 68, 72, 76, 16, 17, 18, 19, 80, 84, 88, 92,
     32, 33, 34, 35, 96, 100, 104, 108, 48, 49, 50, 51, 112, 116, 120, 124,
     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    /* 8 i0: a triple's entry e: P_3g[e & 3] */
    {
     0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3,
     0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3,
     0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3,
     0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3},
    /* 9 i1: P_3g+1[e >> 2 & 3] (bytes 4..7) */
    {
     4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7,
     4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7,
     4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7,
     4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7},
    /* 10 i2: P_3g+2[e >> 4] (bytes 8..11) */
    {
     8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
     9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
     10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
     11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11},
    /* 11 ex1: expansion, word r: bytes r & 15, 32 + (r & 15) of a load */
    {
     0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
     8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47,
     0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
     8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47},
    /* 12 ex2: bytes 16 + (r & 15), 48 + (r & 15) */
    {
     16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
     24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63,
     16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
     24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63},
    /* 13 ex3: byte 32 + (r & 15) (twice) */
    {
     32, 32, 33, 33, 34, 34, 35, 35, 36, 36, 37, 37, 38, 38, 39, 39,
     40, 40, 41, 41, 42, 42, 43, 43, 44, 44, 45, 45, 46, 46, 47, 47,
     32, 32, 33, 33, 34, 34, 35, 35, 36, 36, 37, 37, 38, 38, 39, 39,
     40, 40, 41, 41, 42, 42, 43, 43, 44, 44, 45, 45, 46, 46, 47, 47},
    /* 14 ms: vpmultishiftqb: byte 2w of a qword from bit 16w, byte 2w + 1 from bit 16w + 6 */
    {
     0, 6, 16, 22, 32, 38, 48, 54, 0, 6, 16, 22, 32, 38, 48, 54,
     0, 6, 16, 22, 32, 38, 48, 54, 0, 6, 16, 22, 32, 38, 48, 54,
     0, 6, 16, 22, 32, 38, 48, 54, 0, 6, 16, 22, 32, 38, 48, 54,
     0, 6, 16, 22, 32, 38, 48, 54, 0, 6, 16, 22, 32, 38, 48, 54}
};
enum {
    VN_T3_PC0, VN_T3_PC1, VN_T3_P00, VN_T3_X1, VN_T3_X2, VN_T3_X4, VN_T3_X8, VN_T3_GAT,
    VN_T3_I0, VN_T3_I1, VN_T3_I2, VN_T3_EX1, VN_T3_EX2, VN_T3_EX3, VN_T3_MS
};

#define t3_pat(i) _mm512_loadu_si512((const void *)vn_t3_pat[i])

/* One query's triple tables out (nstep x 256 bytes, 64-byte aligned; step s: T_4s ..
 * T_4s+3, 64 bytes each) and *corr = sum_t K_t, from its pair tables lq (2 nb of 16).
 * Returns 0, or -1 (out not usable) when an entry is above 127, a table is not additive
 * or a coordinate table spans more than 42. P: scratch, 48 nstep + 64 bytes. */
__attribute__((target(VN_TARGET_AVX512_DOT))) static int t3_tables(const uint8_t *lq,
                                                                   ptrdiff_t nb,
                                                                   ptrdiff_t nstep,
                                                                   uint8_t *P, uint8_t *out,
                                                                   int32_t *corr) {
    const ptrdiff_t m = 2 * nb;
    const __m512i pc0 = t3_pat(VN_T3_PC0), pc1 = t3_pat(VN_T3_PC1), p00 = t3_pat(VN_T3_P00);
    const __m512i x1 = t3_pat(VN_T3_X1), x2 = t3_pat(VN_T3_X2), x4 = t3_pat(VN_T3_X4);
    const __m512i x8 = t3_pat(VN_T3_X8), gat = t3_pat(VN_T3_GAT);
    const __m512i top = _mm512_set1_epi8(42), zero = _mm512_setzero_si512();
    const __mmask64 first = (__mmask64)0x0001000100010001ull; /* byte 0 of each table */
    __m512i sk = zero, sl = zero; /* sums of the minima, of L_t[0] (qwords) */
    __mmask64 bad = 0;
    for (ptrdiff_t t = 0; t < m; t += 4) {
        const ptrdiff_t nt = m - t < 4 ? m - t : 4;
        const __mmask64 km = nt == 4 ? ~(__mmask64)0 : ((__mmask64)1 << (16 * nt)) - 1;
        const __m512i L = _mm512_maskz_loadu_epi8(km, lq + 16 * t);
        const __m512i U = _mm512_permutexvar_epi8(pc0, L), V = _mm512_permutexvar_epi8(pc1, L);
        const __m512i W = _mm512_permutexvar_epi8(p00, L);
        __m512i mA = _mm512_min_epu8(U, _mm512_shuffle_epi8(U, x1));
        mA = _mm512_min_epu8(mA, _mm512_shuffle_epi8(mA, x2));
        __m512i mB = _mm512_min_epu8(V, _mm512_shuffle_epi8(V, x4));
        mB = _mm512_min_epu8(mB, _mm512_shuffle_epi8(mB, x8));
        const __m512i A = _mm512_sub_epi8(U, mA), B = _mm512_sub_epi8(V, mB);
        /* entries <= 127 (so the byte sums below do not wrap), additive, spans <= 42 */
        bad |= _mm512_movepi8_mask(L);
        bad |= ~_mm512_cmpeq_epi8_mask(_mm512_add_epi8(U, V), _mm512_add_epi8(L, W));
        bad |= _mm512_cmpgt_epu8_mask(_mm512_max_epu8(A, B), top);
        /* 64 bytes written, the first 8 nt of them P's (later tables and the zeros below
         * overwrite the rest) */
        _mm512_storeu_si512((void *)(P + 8 * t), _mm512_permutex2var_epi8(A, gat, B));
        sk = _mm512_add_epi64(sk, _mm512_sad_epu8(_mm512_maskz_mov_epi8(first & km, mA), zero));
        sk = _mm512_add_epi64(sk, _mm512_sad_epu8(_mm512_maskz_mov_epi8(first & km, mB), zero));
        sl = _mm512_add_epi64(sl, _mm512_sad_epu8(_mm512_maskz_mov_epi8(first & km, L), zero));
    }
    if (bad) return -1;
    int64_t s[8], l[8], k = 0;
    _mm512_storeu_si512((void *)s, sk);
    _mm512_storeu_si512((void *)l, sl);
    for (int u = 0; u < 8; u++) k += s[u] - l[u];
    *corr = (int32_t)k;
    memset(P + 8 * m, 0, (size_t)(48 * nstep + 64 - 8 * m)); /* coordinates past 4 nb */
    const __m512i i0 = t3_pat(VN_T3_I0), i1 = t3_pat(VN_T3_I1), i2 = t3_pat(VN_T3_I2);
    for (ptrdiff_t g = 0; g < 4 * nstep; g++) {
        const __m512i X = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(P + 12 * g)));
        const __m512i T = _mm512_add_epi8(
            _mm512_add_epi8(_mm512_permutexvar_epi8(i0, X), _mm512_permutexvar_epi8(i1, X)),
            _mm512_permutexvar_epi8(i2, X));
        _mm512_storeu_si512((void *)(out + 64 * g), T);
    }
    return 0;
}

/* The kernel's indices of a unit: blocks blks[0 .. nblk) (NULL or past nblk: codes 0),
 * nb byte columns each. Step s, block b: register 2b (triples 4s, 4s + 1) at (8 s + 2 b)
 * x 64 bytes of out and register 2b + 1 (triples 4s + 2, 4s + 3) after it; byte 2r + h of a
 * register: row r's triple (c0 + 4 c1 + 16 c2) | 64 h. Step s reads columns 3s .. 3s + 2
 * (sub-codes 6s .. 6s + 5 of a row, A .. F, whose 24 bits are the four triples in order:
 * bits 0..5 A | (B & 3) << 4, 6..11 B >> 2 | C << 2, ...); rows r < 16 have them in low
 * nibbles, rows 16 + r in high ones. */
__attribute__((target(VN_TARGET_AVX512_DOT))) static void t3_expand(const uint8_t *const *blks,
                                                                    int nblk, ptrdiff_t nb,
                                                                    ptrdiff_t nstep,
                                                                    uint8_t *out) {
    const __m512i e1 = t3_pat(VN_T3_EX1), e2 = t3_pat(VN_T3_EX2), e3 = t3_pat(VN_T3_EX3);
    const __m512i ms = t3_pat(VN_T3_MS);
    /* per 16-bit word r: shift right 4 for rows 16.. (high nibbles), left 4 for rows < 16 */
    const __m512i sr = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    const __m512i sl = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_setzero_si256(), 1);
    const __m512i lo = _mm512_set1_epi16(0x0f0f), keep = _mm512_set1_epi16(0x3f3f);
    const __m512i hbit = _mm512_set1_epi16(0x4000);
    const ptrdiff_t bytes = 32 * nb;
    for (int b = 0; b < 4; b++) {
        const uint8_t *blk = b < nblk ? blks[b] : NULL;
        for (ptrdiff_t s = 0; s < nstep; s++) {
            const ptrdiff_t off = 96 * s, left = blk ? bytes - off : 0;
            const __m512i Z = _mm512_maskz_loadu_epi8(
                left >= 64 ? ~(__mmask64)0 : left > 0 ? ((__mmask64)1 << left) - 1 : 0,
                blk ? blk + off : NULL);
            const ptrdiff_t left2 = left - 32;
            const __m512i Z2 = _mm512_maskz_loadu_epi8(
                left2 >= 64 ? ~(__mmask64)0 : left2 > 0 ? ((__mmask64)1 << left2) - 1 : 0,
                blk ? blk + off + 32 : NULL);
            /* words (A, C), (B, D) from Z; (D, F), (E, E) from Z2 */
            const __m512i P1 = _mm512_permutexvar_epi8(e1, Z);
            const __m512i P2 = _mm512_permutexvar_epi8(e2, Z);
            const __m512i P3 = _mm512_permutexvar_epi8(e2, Z2);
            const __m512i P4 = _mm512_permutexvar_epi8(e3, Z2);
            /* lo ? x : y: a row's four nibbles A | B << 4 | C << 8 | D << 12 (D | E << 4 |
             * F << 8 | junk) */
            const __m512i Nab = _mm512_ternarylogic_epi32(lo, _mm512_srlv_epi16(P1, sr),
                                                          _mm512_sllv_epi16(P2, sl), 0xca);
            const __m512i Ncd = _mm512_ternarylogic_epi32(lo, _mm512_srlv_epi16(P3, sr),
                                                          _mm512_sllv_epi16(P4, sl), 0xca);
            /* (x & keep) | hbit */
            const __m512i ab = _mm512_ternarylogic_epi32(_mm512_multishift_epi64_epi8(ms, Nab),
                                                         keep, hbit, 0xea);
            const __m512i cd = _mm512_ternarylogic_epi32(_mm512_multishift_epi64_epi8(ms, Ncd),
                                                         keep, hbit, 0xea);
            _mm512_store_si512((void *)(out + (8 * s + 2 * b) * 64), ab);
            _mm512_store_si512((void *)(out + (8 * s + 2 * b + 1) * 64), cd);
        }
    }
}

/* A unit's output (t3_sums): per block b and query q of the pass, the 32 16-bit sums
 * (s16[b][q]) and rows[b][q]: bit r for a sum above the query's cut (t3_cut: no other row
 * can pass; cut -1: every row). The float scores are computed later, only for blocks with
 * such rows (t3_take, one unit late): a branch on the kernel's last results waits for them
 * to drain. Dev 2-bit, 500 queries, us a query: the kernel 23.4 -> 19.6 with the float
 * scores and their test moved out, the takes 4.8 -> 6.9 (the scan as a whole about even;
 * the takes then went query by query, and the batched search 35.1-36.1 -> 34-35.4). */
typedef struct {
    uint16_t s16[4][2][32];
    uint32_t rows[4][2];
    ptrdiff_t u0, nu; /* the unit's first row and rows */
} vn_t3_out;

/* one step of query q (tables t_): the two vpermi2b of each block, added in bytes, pairs
 * summed by vpmaddubsw into the block's 16-bit accumulator. Native: one asm block, so that
 * the four table registers are loaded once (GCC reloaded them for every lookup: 1.6x
 * slower) and the indices copied rather than the tables. */
#ifdef VN_EMULATE_AVX512
#define VN_T3_BLOCK(b, q)                                                                 \
    a##b##_##q = _mm512_add_epi16(                                                       \
        a##b##_##q,                                                                      \
        _mm512_maddubs_epi16(_mm512_add_epi8(_mm512_permutex2var_epi8(T0, i##b##ab, T1), \
                                             _mm512_permutex2var_epi8(T2, i##b##cd, T3)), \
                             ones));
#define VN_T3_STEP(q)                                                                     \
    if (NQ > q) {                                                                         \
        const uint8_t *t_ = tabs[q] + 256 * s;                                            \
        const __m512i T0 = _mm512_loadu_si512((const void *)t_);                          \
        const __m512i T1 = _mm512_loadu_si512((const void *)(t_ + 64));                   \
        const __m512i T2 = _mm512_loadu_si512((const void *)(t_ + 128));                  \
        const __m512i T3 = _mm512_loadu_si512((const void *)(t_ + 192));                  \
        VN_T3_BLOCK(0, q) VN_T3_BLOCK(1, q) VN_T3_BLOCK(2, q) VN_T3_BLOCK(3, q)           \
    }
#else
#define VN_T3_ASM_BLOCK(b)                                                                \
    "vmovdqa64 %[i" #b "ab], %[X]\n\tvpermi2b %[T1], %[T0], %[X]\n\t"                      \
    "vmovdqa64 %[i" #b "cd], %[Y]\n\tvpermi2b %[T3], %[T2], %[Y]\n\t"                      \
    "vpaddb %[Y], %[X], %[X]\n\tvpmaddubsw %[ones], %[X], %[X]\n\t"                       \
    "vpaddw %[X], %[A" #b "], %[A" #b "]\n\t"
#define VN_T3_STEP(q)                                                                     \
    if (NQ > q) {                                                                         \
        const uint8_t *t_ = tabs[q] + 256 * s;                                            \
        __m512i T0, T1, T2, T3, X, Y;                                                     \
        __asm__("vmovdqu64 (%[t]), %[T0]\n\tvmovdqu64 64(%[t]), %[T1]\n\t"                \
                "vmovdqu64 128(%[t]), %[T2]\n\tvmovdqu64 192(%[t]), %[T3]\n\t"            \
                VN_T3_ASM_BLOCK(0) VN_T3_ASM_BLOCK(1) VN_T3_ASM_BLOCK(2)                  \
                VN_T3_ASM_BLOCK(3)                                                        \
                : [A0] "+v"(a0_##q), [A1] "+v"(a1_##q), [A2] "+v"(a2_##q),               \
                  [A3] "+v"(a3_##q), [T0] "=&v"(T0), [T1] "=&v"(T1), [T2] "=&v"(T2),      \
                  [T3] "=&v"(T3), [X] "=&v"(X), [Y] "=&v"(Y)                               \
                : [t] "r"(t_), [i0ab] "v"(i0ab), [i0cd] "v"(i0cd), [i1ab] "v"(i1ab),      \
                  [i1cd] "v"(i1cd), [i2ab] "v"(i2ab), [i2cd] "v"(i2cd), [i3ab] "v"(i3ab), \
                  [i3cd] "v"(i3cd), [ones] "v"(ones)                                      \
                : "memory");                                                              \
    }
#endif
#define VN_T3_DECL(q) __m512i a0_##q = _mm512_setzero_si512(), a1_##q = a0_##q,           \
                              a2_##q = a0_##q, a3_##q = a0_##q;
/* block b's sums of query q, and its rows above cut[q] */
#define VN_T3_BLOCK_OUT(b, q)                                                             \
    do {                                                                                  \
        _mm512_storeu_si512((void *)o->s16[b][q], a##b##_##q);                            \
        o->rows[b][q] = cut[q] < 0 ? 0xffffffffu                                          \
                                   : (uint32_t)_mm512_cmpgt_epu16_mask(                   \
                                         a##b##_##q, _mm512_set1_epi16((short)cut[q]));   \
    } while (0)
#define VN_T3_OUT(q)                                                                      \
    if (NQ > q) {                                                                         \
        VN_T3_BLOCK_OUT(0, q);                                                            \
        VN_T3_BLOCK_OUT(1, q);                                                            \
        VN_T3_BLOCK_OUT(2, q);                                                            \
        VN_T3_BLOCK_OUT(3, q);                                                            \
    }

/* A unit's sums for NQ (1 or 2) queries: xb its indices (t3_expand), tabs[q] the triple
 * tables, cut[q] (t3_cut); into o. */
__attribute__((target(VN_TARGET_AVX512_DOT), always_inline)) static inline void
t3_sums_impl(const uint8_t *xb, const uint8_t *const *tabs, ptrdiff_t nstep,
             const int32_t *cut, vn_t3_out *o, const int NQ) {
    const __m512i ones = _mm512_set1_epi8(1);
    VN_T3_DECL(0)
    VN_T3_DECL(1)
    for (ptrdiff_t s = 0; s < nstep; s++) {
        const uint8_t *p = xb + 512 * s;
        const __m512i i0ab = _mm512_load_si512((const void *)p);
        const __m512i i0cd = _mm512_load_si512((const void *)(p + 64));
        const __m512i i1ab = _mm512_load_si512((const void *)(p + 128));
        const __m512i i1cd = _mm512_load_si512((const void *)(p + 192));
        const __m512i i2ab = _mm512_load_si512((const void *)(p + 256));
        const __m512i i2cd = _mm512_load_si512((const void *)(p + 320));
        const __m512i i3ab = _mm512_load_si512((const void *)(p + 384));
        const __m512i i3cd = _mm512_load_si512((const void *)(p + 448));
        VN_T3_STEP(0)
        VN_T3_STEP(1)
    }
    VN_T3_OUT(0)
    VN_T3_OUT(1)
}

__attribute__((target(VN_TARGET_AVX512_DOT))) static void t3_sums_1(
    const uint8_t *xb, const uint8_t *const *tabs, ptrdiff_t nstep, const int32_t *cut,
    vn_t3_out *o) {
    t3_sums_impl(xb, tabs, nstep, cut, o, 1);
}
__attribute__((target(VN_TARGET_AVX512_DOT))) static void t3_sums_2(
    const uint8_t *xb, const uint8_t *const *tabs, ptrdiff_t nstep, const int32_t *cut,
    vn_t3_out *o) {
    t3_sums_impl(xb, tabs, nstep, cut, o, 2);
}

/* The float32 scores of a block's 16-bit sums s16 of one query (S = sum + corr): score_fn's
 * scale * (bias + delta * S) into out (32); returns the rows scoring above thr. */
__attribute__((target(VN_TARGET_AVX512_DOT))) static uint32_t t3_score(
    const uint16_t *s16, int32_t corr, float bias, float delta, const float *scale, float thr,
    float *out) {
    uint32_t r = 0;
    for (int h = 0; h < 2; h++) {
        const __m512i S = _mm512_add_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(s16 + 16 * h))),
            _mm512_set1_epi32(corr));
        __m512 v = _mm512_add_ps(_mm512_set1_ps(bias),
                                 _mm512_mul_ps(_mm512_set1_ps(delta), _mm512_cvtepi32_ps(S)));
        if (scale) v = _mm512_mul_ps(_mm512_loadu_ps(scale + 16 * h), v);
        _mm512_storeu_ps(out + 16 * h, v);
        r |= (uint32_t)_mm512_cmp_ps_mask(v, _mm512_set1_ps(thr), _CMP_GT_OQ) << (16 * h);
    }
    return r;
}
#endif

/* The block holding row j: the separate tail block when given and j is in it. */
static inline const uint8_t *fs_block(const vn_lut_args *a, int64_t j) {
    return (a->tail && j / 32 == a->n / 32) ? a->tail : a->codes + (j / 32) * a->nb * 32;
}

/* ---------------------------------------------------------------- rescore */
/* The float estimate of a query's shortlist and its top kf: the native twin of
 * fastscan._rescore followed by topk._select (fastscan.rescore_shortlist), step for step.
 * Per candidate row s (< 0: none, estimate -inf), over its sub-codes t (table 16 t +
 * code): four float64 partial sums by t mod 4, est = float32((a0 + a1) + (a2 + a3)), then
 * in float32 est = scale[s] * est and, for l2, -max((qn + xn[s]) - 2 est, 0). An entry is
 * rtables[q, t, code], or the float32 product rqs[q, t] * rlv[code]. Then the kf first by
 * (score desc, NaN last, row asc, -1 last), inserted in candidate order, padded with -inf
 * / -1; fin_n: the real rows kept. Fused into the scan call, it saves a single query the
 * Python round trip of a second kernel (~6 us). */
static float rs_estimate(const vn_lut_args *a, ptrdiff_t q, int64_t s) {
    if (s < 0) return -INFINITY;
    const ptrdiff_t nb = a->nb;
    const uint8_t *blk = fs_block(a, s);
    ptrdiff_t i = s & 31;
    const int shift = i >= 16 ? 4 : 0;
    if (i >= 16) i -= 16;
    const vn_rs_tabs tb = {a->rtables, a->rqs, a->rlv, nb};
    float v;
    /* sub-code x of the row: column x / 2, half x % 2 of it, nibble `shift` of its byte */
#define RS_NIB(x) ((blk[i + 32 * ((x) >> 1) + 16 * ((x) & 1)] >> shift) & 15u)
    VN_RS_SUM(&tb, q, RS_NIB, v);
#undef RS_NIB
    return vn_rs_score(v, a->scale, a->xn, a->qn, q, s);
}

/* rs_estimate over float tables (rtables) of up to four rows s[0 .. nr) at once into out
 * (-inf for s < 0): the rows' sums interleaved, each row's four partial sums in
 * rs_estimate's order (the same values). A row at a time waited on its four chains of
 * dependent double adds, and the tables converted to double first cost a pass over all
 * their entries, 1.4 us of a batched dev 2-bit query's 4.1 us rescore. */
static void rs_estimate4(const vn_lut_args *a, ptrdiff_t q, const int64_t *s, int nr,
                         float *out) {
    const ptrdiff_t nb = a->nb;
    const uint8_t *b[4];
    int sh[4], ok[4], any = -1;
    for (int r = 0; r < 4; r++) {
        ok[r] = r < nr && s[r] >= 0;
        if (ok[r] && any < 0) any = r;
    }
    if (any < 0) {
        for (int r = 0; r < nr; r++) out[r] = -INFINITY;
        return;
    }
    for (int r = 0; r < 4; r++) { /* a missing row sums a real row's codes, unused */
        const int64_t j = s[ok[r] ? r : any];
        const uint8_t *blk = fs_block(a, j);
        sh[r] = (j & 31) >= 16 ? 4 : 0;
        b[r] = blk + (j & 15);
    }
    double acc[4][4] = {{0.0}};
    const float *t = a->rtables + q * 2 * nb * 16;
    for (ptrdiff_t p = 0; p < nb >> 1; p++, t += 64) {
        for (int r = 0; r < 4; r++) {
            const uint8_t *c = b[r] + 64 * p;
            acc[r][0] += t[(c[0] >> sh[r]) & 15u];
            acc[r][1] += t[16 + ((c[16] >> sh[r]) & 15u)];
            acc[r][2] += t[32 + ((c[32] >> sh[r]) & 15u)];
            acc[r][3] += t[48 + ((c[48] >> sh[r]) & 15u)];
        }
    }
    if (nb & 1) {
        for (int r = 0; r < 4; r++) {
            const uint8_t *c = b[r] + 64 * (nb >> 1);
            acc[r][0] += t[(c[0] >> sh[r]) & 15u];
            acc[r][1] += t[16 + ((c[16] >> sh[r]) & 15u)];
        }
    }
    for (int r = 0; r < nr; r++)
        out[r] = ok[r] ? vn_rs_score((float)((acc[r][0] + acc[r][1]) + (acc[r][2] + acc[r][3])),
                                     a->scale, a->xn, a->qn, q, s[r])
                       : -INFINITY;
}

/* Query q's shortlist cand (k rows) rescored into its kf final entries. */
static void vn_rescore(const vn_lut_args *a, ptrdiff_t q, const int64_t *cand) {
    const ptrdiff_t kf = a->kf;
    float *sc = a->fin_s + q * kf;
    int64_t *sl = a->fin_i + q * kf;
    for (ptrdiff_t j = 0; j < kf; j++) {
        sc[j] = -INFINITY;
        sl[j] = -1;
    }
    ptrdiff_t held = 0;
    for (ptrdiff_t c = 0; c < a->k && kf > 0; c += 4) {
        const int nr = a->k - c < 4 ? (int)(a->k - c) : 4;
        float est[4];
        if (a->rtables) rs_estimate4(a, q, cand + c, nr, est);
        else for (int r = 0; r < nr; r++) est[r] = rs_estimate(a, q, cand[c + r]);
        for (int r = 0; r < nr; r++) vn_rs_insert(sc, sl, kf, &held, est[r], cand[c + r]);
    }
    int64_t real = 0;
    for (ptrdiff_t j = 0; j < held; j++) real += sl[j] >= 0;
    a->fin_n[q] = real;
}

/* Prefetch the code lines of query q's candidates (a->out_i + q k) for its vn_rescore: a
 * row's codes are spread over its block (a byte of each column, 32 nb / 64 lines), which
 * after a batch's scan sit in L3 (dev 2-bit, 500 queries, 20 rows: the rescore 5.1 -> 4.2
 * us a query with the codes prefetched one query ahead, 2.75 with the tables too and
 * rs_estimate4). */
static void rs_prefetch(const vn_lut_args *a, ptrdiff_t q) {
    const int64_t *cand = a->out_i + q * a->k;
    if (a->rtables) /* and its float tables, read at the rows' codes */
        for (ptrdiff_t o = 0; o < 2 * a->nb * 16; o += 16)
            __builtin_prefetch(a->rtables + q * 2 * a->nb * 16 + o, 0, 1);
    for (ptrdiff_t c = 0; c < a->k; c++) {
        const int64_t s = cand[c];
        if (s < 0) continue;
        const uint8_t *blk = fs_block(a, s);
        for (ptrdiff_t o = (s & 15); o < 32 * a->nb; o += 64) __builtin_prefetch(blk + o, 0, 1);
    }
}

/* ---------------------------------------------------------------- drivers */
typedef struct {
    vn_sums_fn sums;
    vn_dot_fn dot; /* the dot mode's sums */
    vn_score_fn score;
    int nsub;   /* default queries summed together per pass over a block */
    int maxsub; /* most of them */
    int kscore; /* sums and dot score in their registers (vn_gate's rows) */
} vn_fs_path;

static vn_fs_path fs_path(int isa) {
    vn_fs_path p = {sums_portable, dot_portable, score_portable, 1, VN_FS_MAXSUB, 0};
#if VN_X86
    if (isa == VN_AVX2) {
        p.sums = sums_avx2;
        p.score = score_avx2;
        p.nsub = 2;
    } else if (isa == VN_AVX512) {
        p.sums = sums_avx512;
        p.score = score_avx2;
        /* 32 registers: four queries a pass (Zen 4, dev, turboquant 500 queries, 1 thread:
         * 4-bit 8.5k -> 9.6k QPS, 2-bit 14.5k -> 16.5k; 3 queries gave 9.4k / 16.3k) */
        p.nsub = 4;
        if (g_cpu.avx512vnni && g_cpu.avx512vbmi) { /* vpermb + vpdpbusd: 8 queries a pass */
            p.sums = sums_vnni;
            p.dot = dot_avx512;
            p.nsub = p.maxsub = VN_DOT_MAXSUB;
            p.kscore = 1;
        }
    }
#else
    (void)isa;
#endif
    return p;
}

/* Score one query's block of rows j0 .. j0 + nv - 1 (nv <= 32; sums from a vn_sums_fn;
 * scale and xn per-row arrays or NULL, never read past row j0 + nv - 1) and hand the rows
 * that pass the threshold to its collector, lowest row first: the reservoir res when given,
 * else the heap h. The slot of row j is j, or slots[j] when slots is given.
 * Threshold: the reservoir's (every row until primed), or the heap's root score. Without
 * slots (rows in increasing slot order) rows with s > thr (an equal score has a higher
 * slot); with slots rows with s >= thr (an equal score may enter by a lower slot), or
 * every row while thr is -inf ((-inf, lower slot) may enter). NaN never enters;
 * fs_select or fs_heap_offer decides the rest exactly.
 * Returns 0, or -2 (a slot outside [0, mlen) with a mask; *bad = its row) and stops. */
__attribute__((always_inline)) static inline int fs_block_take(
    vn_fheap *h, vn_fres *res, const vn_f32a *sc, uint32_t cand, ptrdiff_t j0,
    const int32_t *slots, const uint8_t *mask, ptrdiff_t mlen, ptrdiff_t *bad);

__attribute__((always_inline)) static inline int fs_block_offer(
    vn_fheap *h, vn_fres *res, const uint32_t *sums, const vn_fsq *c, const float *scale,
    const float *xn, ptrdiff_t j0, int nv, const int32_t *slots, const uint8_t *mask,
    ptrdiff_t mlen, vn_score_fn score_fn, ptrdiff_t *bad) {
    float sc[32], pad_scale[32], pad_xn[32];
    const float *sp = scale ? scale + j0 : NULL, *xp = xn ? xn + j0 : NULL;
    if (nv < 32) { /* never read past the last row */
        if (sp) {
            memset(pad_scale, 0, sizeof pad_scale);
            memcpy(pad_scale, sp, sizeof(float) * (size_t)nv);
            sp = pad_scale;
        }
        if (xp) {
            memset(pad_xn, 0, sizeof pad_xn);
            memcpy(pad_xn, xp, sizeof(float) * (size_t)nv);
            xp = pad_xn;
        }
    }
    float thr = res ? (res->primed ? res->thr : -INFINITY) : h->s[0];
    int every = res ? !res->primed : 0;
    if (slots && !every) {
        if (thr == -INFINITY) every = 1; /* (-inf, lower slot) may still enter */
        else thr = nextafterf(thr, -INFINITY); /* s > thr' <=> s >= thr (NaN: neither) */
    }
    uint32_t cand = score_fn(sums, c, sp, xp, thr, sc);
    if (every) cand = 0xffffffffu;
    cand &= nv == 32 ? 0xffffffffu : ((1u << nv) - 1u);
    return fs_block_take(h, res, sc, cand, j0, slots, mask, mlen, bad);
}

/* Hand the rows of cand (bit r: row j0 + r, score sc[r]) to the collector, lowest row first
 * (fs_block_offer's second half). */
__attribute__((always_inline)) static inline int fs_block_take(
    vn_fheap *h, vn_fres *res, const vn_f32a *sc, uint32_t cand, ptrdiff_t j0,
    const int32_t *slots, const uint8_t *mask, ptrdiff_t mlen, ptrdiff_t *bad) {
    while (cand) {
        const int r = __builtin_ctz(cand);
        cand &= cand - 1;
        const int64_t j = slots ? (int64_t)slots[j0 + r] : (int64_t)(j0 + r);
        if (mask) {
            if (slots && (j < 0 || j >= mlen)) {
                *bad = j0 + r;
                return -2;
            }
            if (!mask[j]) continue;
        }
        if (!res) fs_heap_offer(h, sc[r], j); /* NaN never passes fs_worse */
        else if (sc[r] == sc[r]) fs_res_add(res, sc[r], j); /* NaN never enters */
    }
    return 0;
}

/* The state vn_lut_topk shares between its scans of a group of queries. */
typedef struct {
    const vn_lut_args *a;
    vn_fs_path path;
    vn_dot_fn dot;
    int nsub;
    ptrdiff_t lstride, tile;
    const uint8_t *lv64; /* the dot mode's levels, once a lane */
    double sabs;         /* a bound on |sum|: 2 nb x 127 (tables) or 2 nb x 128 x 128 (dot) */
} vn_flat;

/* Fewest queries in a pass (summed together over a block) for block pruning: a pass of one
 * query ran slower with it (dev 2-bit, one query: 90 against 86 us; 200,000 rows, 1-bit
 * sign plane: 476 against 428), a batch's faster (200,000 rows, 1-bit, 500 queries: -15%;
 * dev 2- and 4-bit: -4%). */
#define VN_PRUNE_MIN_PASS 4

/* An integer cut for block pruning (the kernels' cut): every row whose sum S <= cut scores at
 * most thr, for scales in [0, smax] (the caller's bound, vn_lut_args.scale_max; 1 without
 * scales) -- so a block with no sum above it offers nothing. With thr > 0 and |S| <= sabs:
 * fl(bias + fl(delta fl(S))) is within 2^-22 (|bias| + 2 delta sabs) of bias + delta S (three
 * roundings of 2^-24 relative), so S <= (x - bias - 2^-20 (|bias| + delta sabs)) / delta - 1
 * keeps it at most x = thr / smax (1 - 2^-20), and then fl(scale * u) <= thr (1 - 2^-20)
 * (1 + 2^-24) < thr (u < 0: the score is at most 0). Inner product scores of a primed
 * reservoir and a finite bound only; else INT32_MIN (every block scored). */
static int32_t fs_cut(const vn_fsq *c, const vn_fres *r, float smax, double sabs, int l2) {
    const double thr = r->thr, delta = c->delta, bias = c->bias;
    if (!r->primed || l2 || c->has_lb || !(thr > 0.0 && thr <= FLT_MAX) ||
        !(delta > 0.0 && delta <= FLT_MAX) || !(fabs(bias) <= FLT_MAX) ||
        !(smax > 0.0f && smax <= FLT_MAX))
        return INT32_MIN;
    const double x = thr / smax * (1.0 - 0x1p-20);
    const double cut = floor((x - bias - 0x1p-20 * (fabs(bias) + delta * sabs)) / delta) - 1.0;
    if (cut < (double)INT32_MIN) return INT32_MIN;
    return cut > (double)(INT32_MAX - 1) ? INT32_MAX - 1 : (int32_t)cut;
}

/* Queries g0 + ix[0 .. nix) (indices into the group's res / cq / dbase) over rows [r0, r1):
 * tiles of blocks that stay in L2; within a tile, each sub-group of queries (whose tables
 * stay in L1) runs over every block before the next sub-group. A query's block with no sum
 * above its cut (fs_cut) is not scored. */
/* kscore: the rows of a block (j0, nv rows) that its kernel call scored into sums (float32,
 * 32 a query) and flagged in rows, for the queries of pend (bit q: query ix[q]): a query's
 * reservoir not yet primed takes every row, else the flagged ones (scored against a
 * threshold at most the current one: a superset of the rows that can still enter, so the
 * same results). Then each query's threshold for later kernel calls. */
__attribute__((always_inline)) static inline void fs_flat_take(
    const vn_lut_args *a, const int *ix, vn_fres *res, const uint32_t *sums,
    const uint32_t *rows, unsigned pend, ptrdiff_t j0, int nv, float *kt, unsigned *every) {
    const uint32_t all = nv == 32 ? 0xffffffffu : ((1u << nv) - 1u);
    ptrdiff_t bad = 0;
    for (; pend; pend &= pend - 1) {
        const int q = __builtin_ctz(pend);
        vn_fres *r = &res[ix[q]];
        const uint32_t cand = r->primed ? rows[q] & all : all;
        (void)fs_block_take(NULL, r, (const vn_f32a *)(const void *)(sums + 32 * q), cand, j0,
                            NULL, a->mask, a->n, &bad); /* no slots: never fails */
        kt[q] = r->primed ? r->thr : -INFINITY;
        *every = (*every & ~(1u << q)) | (unsigned)!r->primed << q;
    }
}

__attribute__((always_inline)) static inline void fs_flat_scan(const vn_flat *f, ptrdiff_t g0, const int *ix, int nix, vn_fres *res,
                         const vn_fsq *cq, const int32_t *dbase, ptrdiff_t r0, ptrdiff_t r1) {
    const vn_lut_args *a = f->a;
    const ptrdiff_t nb = a->nb;
    /* the kernel scores the rows (inner product scores; the l2 transform takes score_fn) */
    const int kscore = f->path.kscore && a->xn == NULL;
    uint32_t sbuf[2][32 * VN_DOT_MAXSUB], rbuf[2][VN_DOT_MAXSUB];
    ptrdiff_t bad = 0;
    for (ptrdiff_t t0 = r0; t0 < r1; t0 += f->tile) {
        const ptrdiff_t t1 = (t0 + f->tile < r1) ? t0 + f->tile : r1;
        const float smax = a->scale ? a->scale_max : 1.0f;
        for (int s0 = 0; s0 < nix; s0 += f->nsub) {
            const int m = (nix - s0) < f->nsub ? (nix - s0) : f->nsub;
            const uint8_t *lp[VN_DOT_MAXSUB];
            const int8_t *wp[VN_DOT_MAXSUB]; /* the dot mode's weights */
            int32_t db[VN_DOT_MAXSUB], cut[VN_DOT_MAXSUB];
            float at[VN_DOT_MAXSUB]; /* the threshold each cut was made for */
            float kb[VN_DOT_MAXSUB], kd[VN_DOT_MAXSUB], kt[VN_DOT_MAXSUB], pad[32];
            unsigned every = 0; /* kscore: queries whose reservoir takes every row */
            /* kscore: the block scanned before (its rows are taken after the next block's
             * kernel call, so that the branches on its result do not wait for the kernel's
             * last sums: a single 2-bit dev query's scan 59 -> 54 us) */
            unsigned pend = 0;
            ptrdiff_t pj0 = 0;
            int pnv = 0, cur = 0;
            for (int q = 0; q < m; q++) {
                const int g = ix[s0 + q];
                lp[q] = a->luts + (g0 + g) * f->lstride;
                wp[q] = (const int8_t *)lp[q];
                db[q] = dbase[g];
                if (kscore) {
                    kb[q] = cq[g].bias;
                    kd[q] = cq[g].delta;
                    kt[q] = res[g].primed ? res[g].thr : -INFINITY;
                    every |= (unsigned)!res[g].primed << q;
                } else {
                    at[q] = res[g].thr;
                    cut[q] = fs_cut(&cq[g], &res[g], smax, f->sabs, a->xn != NULL);
                }
            }
            /* kscore: the kernel's scores; else block pruning from passes of a few queries */
            vn_gate gate = {kscore || m < VN_PRUNE_MIN_PASS ? NULL : cut, kb, kd, kt, NULL, NULL};
            for (ptrdiff_t j0 = t0; j0 < t1; j0 += 32) {
                const uint8_t *blk = fs_block(a, j0);
                const int nv = (int)((r1 - j0) < 32 ? (r1 - j0) : 32);
                if (kscore && a->scale) {
                    gate.scale = a->scale + j0;
                    if (nv < 32) { /* never read past the last row */
                        memset(pad, 0, sizeof pad);
                        memcpy(pad, a->scale + j0, sizeof(float) * (size_t)nv);
                        gate.scale = pad;
                    }
                }
                const vn_gate *gp = kscore || gate.cut ? &gate : NULL;
                uint32_t *sums = sbuf[cur];
                if (kscore) gate.rows = rbuf[cur];
                const unsigned live = f->dot ? f->dot(blk, wp, db, f->lv64, m, nb, sums, gp)
                                             : f->path.sums(blk, lp, m, nb, sums, gp);
                if (kscore) {
                    if (pend)
                        fs_flat_take(a, ix + s0, res, sbuf[cur ^ 1], rbuf[cur ^ 1], pend, pj0,
                                     pnv, kt, &every);
                    pend = live | every;
                    pj0 = j0;
                    pnv = nv;
                    cur ^= 1;
                    continue;
                }
                for (unsigned lq = live; lq; lq &= lq - 1) { /* blocks a row may pass */
                    const int q = __builtin_ctz(lq);
                    const int g = ix[s0 + q];
                    (void)fs_block_offer(NULL, &res[g], sums + 32 * q, &cq[g], a->scale,
                                         a->xn, j0, nv, NULL, a->mask, a->n, f->path.score,
                                         &bad); /* no slots: never fails */
                    if (res[g].thr != at[q]) { /* a compaction raised the threshold */
                        at[q] = res[g].thr;
                        cut[q] = fs_cut(&cq[g], &res[g], smax, f->sabs, a->xn != NULL);
                    }
                }
            }
            if (pend)
                fs_flat_take(a, ix + s0, res, sbuf[cur ^ 1], rbuf[cur ^ 1], pend, pj0, pnv, kt,
                             &every);
        }
    }
}

/* One allocation for nres reservoirs of cap candidates, then the compactions' scratch
 * (x); free the returned pointer. NULL when out of memory. */
static vn_fcand *fs_res_alloc(ptrdiff_t nres, ptrdiff_t cap, int isa, vn_fscratch *x) {
    vn_fcand *buf = (vn_fcand *)malloc(sizeof(vn_fcand) * (size_t)(nres + 1) * (size_t)cap +
                                       sizeof(uint32_t) * (size_t)(cap + 16));
    if (!buf) return NULL;
    x->ties = buf + nres * cap;
    x->keys = (uint32_t *)(void *)(buf + (nres + 1) * cap);
    x->simd = isa == VN_AVX512 ? 2 : isa != VN_PORTABLE;
    return buf;
}

/* An empty reservoir for k over buf, primed at seed (rows scoring >= seed enter) when
 * given, else collecting every row until its first compaction. */
static void fs_res_start(vn_fres *r, vn_fcand *buf, ptrdiff_t cap, ptrdiff_t k,
                         const float *seed, const vn_fscratch *x) {
    r->x = x;
    r->c = buf;
    r->held = 0;
    r->cap = cap;
    r->k = k;
    r->thr = seed ? nextafterf(*seed, -INFINITY) : -INFINITY; /* s > thr <=> s >= seed */
    r->primed = seed != NULL;
    r->added = 0;
}

#if VN_X86
/* Fewest queries of a call for the triple route: its indices cost an expansion of the
 * codes per call (~30 us over the dev set's 20,000 rows) and each query's tables ~0.4 us.
 * Dev 2-bit, one thread, us a query, triple / pair route: 4 queries 42.7 / 33.8, 8 33.4 /
 * 30.9, 12 30.3 / 31.1, 16 28.8 / 30.4, 32 26.6 / 30.3. */
#define VN_T3_MIN_NQ 16
/* Queries whose triple tables and reservoirs are live together: the indices are expanded
 * once a tile for all of them. */
#define VN_T3_GROUP 256
/* Bytes of expanded indices a tile (128 bytes a row at 384 dimensions). */
#define VN_T3_TILE_BYTES (256 * 1024)

static ptrdiff_t t3_nstep(ptrdiff_t nb) { return (nb + 2) / 3; }

/* p rounded up to 64 bytes (NULL stays NULL) */
static void *t3_align64(void *p) {
    return p ? (void *)(((uintptr_t)p + 63) & ~(uintptr_t)63) : NULL;
}

/* The triple route serves the VNNI + VBMI path's inner-product table scans of at least
 * VN_T3_MIN_NQ queries (no seed, no forced pass size), whose tables are additive (checked
 * per query by t3_tables). */
static int t3_usable(const vn_lut_args *a, ptrdiff_t nq, int isa) {
    return isa == VN_AVX512 && g_cpu.avx512vnni && g_cpu.avx512vbmi && !a->levels &&
           !a->xn && !a->seed && a->nqsub == 0 && nq >= VN_T3_MIN_NQ && a->nb > 0 &&
           t3_nstep(a->nb) <= VN_T3_MAX_STEPS;
}

/* A query's cut for t3_sums: fs_cut's bound less corr, in 16-bit sums (-1: none). */
static int32_t t3_cut(const vn_lut_args *a, const vn_fres *r, ptrdiff_t q, int32_t corr) {
    const vn_fsq c = {a->bias[q], a->delta[q], 0.0f, 0.0f, 0};
    const int32_t cut = fs_cut(&c, r, a->scale ? a->scale_max : 1.0f,
                               (double)(2 * a->nb) * VN_FS_LUTMAX, 0);
    if (cut == INT32_MIN || (int64_t)cut - corr < 0) return -1;
    return (int64_t)cut - corr > 65535 ? 65535 : cut - corr;
}

/* The state of a pass of t3_scan (m queries, res[ix[i]]). */
typedef struct {
    int m, ix[2];
    float bias[2], delta[2], at[2]; /* at: the threshold of the cut */
    int32_t corr[2], cut[2];
    ptrdiff_t qx[2];
} vn_t3_pass;

/* Take a unit's rows (t3_sums' output o), query by query: a block with rows above the
 * query's cut, or any block while its reservoir takes every row, is scored (t3_score) and
 * its rows above the threshold offered in order (fs_block_take); then the cut of a raised
 * threshold. */
static void t3_take(const vn_lut_args *a, vn_fres *res, vn_t3_pass *p, const vn_t3_out *o,
                    ptrdiff_t r1) {
    float sc[32], pad[32];
    ptrdiff_t bad = 0;
    for (int i = 0; i < p->m; i++) {
        vn_fres *r = &res[p->ix[i]];
        for (ptrdiff_t j0 = o->u0, b = 0; j0 < o->u0 + o->nu; j0 += 32, b++) {
            if (!o->rows[b][i] && r->primed) continue;
            const int nv = (int)(r1 - j0 < 32 ? r1 - j0 : 32);
            const float *scale = a->scale ? a->scale + j0 : NULL;
            if (scale && nv < 32) { /* never read past the last row */
                memset(pad, 0, sizeof pad);
                memcpy(pad, a->scale + j0, sizeof(float) * (size_t)nv);
                scale = pad;
            }
            const float thr = r->primed ? r->thr : -INFINITY;
            const uint32_t all = nv == 32 ? 0xffffffffu : ((1u << nv) - 1u);
            const uint32_t f = t3_score(o->s16[b][i], p->corr[i], p->bias[i], p->delta[i],
                                        scale, thr, sc);
            (void)fs_block_take(NULL, r, (const vn_f32a *)sc, r->primed ? f & all : all, j0,
                                NULL, a->mask, a->n, &bad); /* no slots: never fails */
        }
        if (r->primed && r->thr != p->at[i]) { /* a compaction raised the threshold */
            p->at[i] = r->thr;
            p->cut[i] = t3_cut(a, r, p->qx[i], p->corr[i]);
        }
    }
}

/* Queries res[0 .. nq) (global indices qx[i], triple tables tt + i tb, corrections corr)
 * over rows [r0, r1): per tile of units, the indices expanded once into xbuf, then passes
 * of two queries over its units; a unit's rows are taken after the next unit's kernel call
 * (t3_take). */
static void t3_scan(const vn_lut_args *a, vn_fres *res, const ptrdiff_t *qx,
                    const int32_t *corr, const uint8_t *tt, ptrdiff_t tb, int nq,
                    ptrdiff_t nstep, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t tile,
                    uint8_t *xbuf) {
    const ptrdiff_t nb = a->nb, ub = 512 * nstep;
    vn_t3_out out[2];
    for (ptrdiff_t t0 = r0; t0 < r1; t0 += tile) {
        const ptrdiff_t t1 = t0 + tile < r1 ? t0 + tile : r1;
        for (ptrdiff_t u0 = t0; u0 < t1; u0 += VN_T3_UNIT) {
            const uint8_t *blks[4];
            int nblk = 0;
            for (ptrdiff_t j0 = u0; j0 < t1 && j0 < u0 + VN_T3_UNIT; j0 += 32)
                blks[nblk++] = fs_block(a, j0);
            t3_expand(blks, nblk, nb, nstep, xbuf + (u0 - t0) / VN_T3_UNIT * ub);
        }
        for (int q = 0; q < nq; q += 2) {
            vn_t3_pass p;
            p.m = nq - q < 2 ? nq - q : 2;
            const uint8_t *tabs[2] = {tt + q * tb, tt + (q + p.m - 1) * tb};
            for (int i = 0; i < p.m; i++) {
                const vn_fres *r = &res[q + i];
                p.ix[i] = q + i;
                p.qx[i] = qx[q + i];
                p.bias[i] = a->bias[qx[q + i]];
                p.delta[i] = a->delta[qx[q + i]];
                p.corr[i] = corr[q + i];
                p.at[i] = r->thr;
                p.cut[i] = t3_cut(a, r, qx[q + i], corr[q + i]);
            }
            int cur = 0, pend = 0;
            for (ptrdiff_t u0 = t0; u0 < t1; u0 += VN_T3_UNIT) {
                const uint8_t *xb = xbuf + (u0 - t0) / VN_T3_UNIT * ub;
                out[cur].u0 = u0;
                out[cur].nu = t1 - u0 < VN_T3_UNIT ? t1 - u0 : VN_T3_UNIT;
                if (p.m == 2) t3_sums_2(xb, tabs, nstep, p.cut, &out[cur]);
                else t3_sums_1(xb, tabs, nstep, p.cut, &out[cur]);
                if (pend) t3_take(a, res, &p, &out[cur ^ 1], r1);
                pend = 1;
                cur ^= 1;
            }
            if (pend) t3_take(a, res, &p, &out[cur ^ 1], r1);
        }
    }
}

static int fs_pair_topk(const vn_lut_args *a, ptrdiff_t q0, ptrdiff_t q1, ptrdiff_t r0,
                        ptrdiff_t r1, int isa);

/* vn_lut_topk's triple route (t3_usable): groups of VN_T3_GROUP queries. Queries whose
 * tables are not additive take the pair route, each run of consecutive ones in one call
 * (the whole group when fewer than VN_T3_MIN_NQ are additive: 64 queries of product-
 * quantizer tables one at a time took 1.5-1.8x as long). */
static int t3_topk(const vn_lut_args *a, ptrdiff_t q0, ptrdiff_t q1, ptrdiff_t r0,
                   ptrdiff_t r1, int isa) {
    const ptrdiff_t nb = a->nb, k = a->k, nstep = t3_nstep(nb);
    const ptrdiff_t tb = 256 * nstep, ub = 512 * nstep;
    const ptrdiff_t units = VN_T3_TILE_BYTES / ub > 0 ? VN_T3_TILE_BYTES / ub : 1;
    const ptrdiff_t rows = r1 > r0 ? r1 - r0 : 0;
    const ptrdiff_t cap = fs_res_cap(k, rows);
    const ptrdiff_t G = q1 - q0 < VN_T3_GROUP ? q1 - q0 : VN_T3_GROUP;
    int rc = -1;
    void *tbase = malloc((size_t)(G * tb + 64)), *xbase = malloc((size_t)(units * ub + 64));
    uint8_t *tt = (uint8_t *)t3_align64(tbase), *xbuf = (uint8_t *)t3_align64(xbase);
    uint8_t *P = (uint8_t *)malloc((size_t)(48 * nstep + 64));
    vn_fres *res = (vn_fres *)malloc(sizeof(vn_fres) * (size_t)G);
    ptrdiff_t *qx = (ptrdiff_t *)malloc(sizeof(ptrdiff_t) * (size_t)G);
    int32_t *corr = (int32_t *)malloc(sizeof(int32_t) * (size_t)G);
    vn_fscratch x;
    vn_fcand *buf = cap > 0 ? fs_res_alloc(G, cap, isa, &x) : NULL;
    if (!tt || !xbuf || !P || !res || !qx || !corr || (cap > 0 && !buf)) {
        rc = 1; /* the pair route, which needs less memory */
        goto done;
    }
    for (ptrdiff_t g0 = q0; g0 < q1; g0 += G) {
        const ptrdiff_t ng = q1 - g0 < G ? q1 - g0 : G;
        int nok = 0;
        for (ptrdiff_t g = g0; g < g0 + ng; g++) {
            if (t3_tables(a->luts + g * 32 * nb, nb, nstep, P, tt + nok * tb, &corr[nok]) < 0)
                continue; /* the pair route below */
            fs_res_start(&res[nok], buf + nok * cap, cap, k, NULL, &x);
            qx[nok++] = g;
        }
        if (nok < VN_T3_MIN_NQ) {
            if (fs_pair_topk(a, g0, g0 + ng, r0, r1, isa) < 0) goto done;
            continue;
        }
        if (cap > 0)
            t3_scan(a, res, qx, corr, tt, tb, nok, nstep, r0, r1, VN_T3_UNIT * units, xbuf);
        for (int i = 0; i < nok; i++)
            fs_res_finish(&res[i], k, a->out_s + qx[i] * k, a->out_i + qx[i] * k, !a->unsorted);
        for (int i = 0; i < nok && (a->rtables || a->rqs); i++) {
            if (i + 1 < nok) rs_prefetch(a, qx[i + 1]);
            vn_rescore(a, qx[i], a->out_i + qx[i] * k);
        }
        for (ptrdiff_t g = g0, i = 0; g < g0 + ng;) { /* runs of queries not taken */
            if (i < nok && qx[i] == g) {
                i++, g++;
                continue;
            }
            const ptrdiff_t e = i < nok ? qx[i] : g0 + ng;
            if (fs_pair_topk(a, g, e, r0, r1, isa) < 0) goto done;
            g = e;
        }
    }
    rc = 0;
done:
    free(buf);
    free(corr);
    free(qx);
    free(res);
    free(P);
    free(xbase);
    free(tbase);
    return rc == 1 ? fs_pair_topk(a, q0, q1, r0, r1, isa) : rc;
}
#endif

int vn_lut_topk(const vn_lut_args *a, ptrdiff_t q0, ptrdiff_t q1, ptrdiff_t r0, ptrdiff_t r1,
                int isa) {
#if VN_X86
    if (t3_usable(a, q1 - q0, isa)) return t3_topk(a, q0, q1, r0, r1, isa);
#endif
    return fs_pair_topk(a, q0, q1, r0, r1, isa);
}

/* vn_lut_topk through the pair tables (every path). */
static int fs_pair_topk(const vn_lut_args *a, ptrdiff_t q0, ptrdiff_t q1, ptrdiff_t r0,
                        ptrdiff_t r1, int isa) {
    vn_flat f;
    f.a = a;
    f.path = fs_path(isa);
    f.dot = a->levels ? f.path.dot : NULL;
    const int maxsub = f.dot ? VN_DOT_MAXSUB : f.path.maxsub;
    f.nsub = f.dot ? VN_DOT_MAXSUB : f.path.nsub;
    if (a->nqsub >= 1) f.nsub = a->nqsub < maxsub ? a->nqsub : maxsub;
    const ptrdiff_t nb = a->nb, k = a->k;
    /* per-query stride of luts: tables, or the dot mode's 2 nb weights */
    f.lstride = f.dot ? 2 * nb : 32 * nb;
    f.sabs = (double)(2 * nb) * (f.dot ? 128.0 * 128.0 : (double)VN_FS_LUTMAX);
    const ptrdiff_t rows = r1 > r0 ? r1 - r0 : 0;
    const ptrdiff_t cap = fs_res_cap(k, rows); /* one reservoir per query of a group */
    const ptrdiff_t group = (q1 - q0) < VN_FS_QGROUP ? (q1 - q0) : VN_FS_QGROUP;
    /* rows a tile: about VN_FS_TILE_BYTES of codes (at least one block) */
    f.tile = 32 * (VN_FS_TILE_BYTES / (nb * 32) > 0 ? VN_FS_TILE_BYTES / (nb * 32) : 1);
    vn_fcand *buf = NULL;
    vn_fscratch x;
    if (group > 0 && cap > 0) {
        buf = fs_res_alloc(group, cap, isa, &x);
        if (!buf) return -1;
    }
    vn_fres res[VN_FS_QGROUP];
    vn_fsq cq[VN_FS_QGROUP];
    int32_t dbase[VN_FS_QGROUP];
    int ix[VN_FS_QGROUP];
    uint8_t lv64[64];
    for (int t = 0; t < 64 && f.dot; t++) lv64[t] = a->levels[t & 15];
    f.lv64 = lv64;
    for (ptrdiff_t g0 = q0; g0 < q1; g0 += VN_FS_QGROUP) {
        const int ng = (int)((q1 - g0) < VN_FS_QGROUP ? (q1 - g0) : VN_FS_QGROUP);
        for (int g = 0; g < ng; g++) {
            fs_res_start(&res[g], buf + g * cap, cap, k, a->seed ? a->seed + g0 + g : NULL, &x);
            cq[g].bias = a->bias[g0 + g];
            cq[g].delta = a->delta[g0 + g];
            cq[g].qn = a->qn ? a->qn[g0 + g] : 0.0f;
            cq[g].lb = 0.0f;
            cq[g].has_lb = 0;
            dbase[g] = 0;
            if (f.dot) { /* the + 128 the uint8 levels carry, times the weights */
                const int8_t *W = (const int8_t *)a->luts + (g0 + g) * f.lstride;
                int32_t sw = 0;
                for (ptrdiff_t t = 0; t < 2 * nb; t++) sw += W[t];
                dbase[g] = -128 * sw;
            }
            ix[g] = g;
        }
        if (cap > 0) fs_flat_scan(&f, g0, ix, ng, res, cq, dbase, r0, r1);
        if (a->seed && cap > 0) { /* fewer than k rows at or above the seed: again without */
            int nre = 0;
            for (int g = 0; g < ng; g++)
                if (res[g].added < k) {
                    fs_res_start(&res[g], buf + g * cap, cap, k, NULL, &x);
                    ix[nre++] = g;
                }
            if (nre) fs_flat_scan(&f, g0, ix, nre, res, cq, dbase, r0, r1);
        }
        for (int g = 0; g < ng; g++)
            fs_res_finish(&res[g], k, a->out_s + (g0 + g) * k, a->out_i + (g0 + g) * k,
                          !a->unsorted);
        for (int g = 0; g < ng && (a->rtables || a->rqs); g++) {
            if (g + 1 < ng) rs_prefetch(a, g0 + g + 1);
            vn_rescore(a, g0 + g, a->out_i + (g0 + g) * k);
        }
    }
    free(buf);
    return 0;
}

/* Seed the reservoir with a heap row's k entries (a NaN entry dropped: NaN never enters)
 * and prime it with their worst score (-inf when fewer than k remain). */
static void fs_res_seed(vn_fres *r, const float *hs, const int64_t *hi, ptrdiff_t k) {
    ptrdiff_t m = 0;
    float lo = INFINITY;
    for (ptrdiff_t t = 0; t < k; t++) {
        if (hs[t] != hs[t]) continue;
        r->c[m].s = hs[t];
        r->c[m].i = hi[t];
        lo = hs[t] < lo ? hs[t] : lo;
        m++;
    }
    r->held = m;
    r->thr = m == k ? lo : -INFINITY;
    r->primed = 1;
    r->added = 0;
}

/* Write the k best back as a heap (root = worst; Floyd's heapify, no full sort), padded
 * with (-inf, -1) entries where fewer than k were held. */
static void fs_res_to_heap(vn_fres *r, ptrdiff_t k, float *hs, int64_t *hi) {
    for (; r->held < k; r->held++) { /* cap > k */
        r->c[r->held].s = -INFINITY;
        r->c[r->held].i = -1;
    }
    if (r->held > k) (void)fs_keep(r->c, r->held, k, r->x);
    r->held = k;
    for (ptrdiff_t t = 0; t < k; t++) {
        hs[t] = r->c[t].s;
        hi[t] = r->c[t].i;
    }
    for (ptrdiff_t t0 = k / 2 - 1; t0 >= 0; t0--) { /* sift hs[t0] down */
        const float s = hs[t0];
        const int64_t j = hi[t0];
        ptrdiff_t c = t0;
        for (;;) {
            const ptrdiff_t l = 2 * c + 1;
            if (l >= k) break;
            const ptrdiff_t w = (l + 1 < k && fs_worse(hs[l + 1], hi[l + 1], hs[l], hi[l]))
                                    ? l + 1 : l;
            if (!fs_worse(hs[w], hi[w], s, j)) break;
            hs[c] = hs[w];
            hi[c] = hi[w];
            c = w;
        }
        hs[c] = s;
        hi[c] = j;
    }
}

/* Cache lines prefetched at the start of each of the next query's ranges. */
#define VN_FS_PREFETCH_LINES 16

/* Prefetch the first lines of query q's ranges (codes and row slots): a query's lists are
 * far apart in the arena, and the hardware prefetcher only follows a list once it has
 * missed on it. */
static void ivf_prefetch(const vn_ivf_args *a, ptrdiff_t q) {
    for (ptrdiff_t t = 0; t < a->R; t++) {
        const int64_t *rg = a->ranges + 2 * (q * a->R + t);
        if (rg[1] <= rg[0]) continue;
        const char *c = (const char *)(a->codes + (rg[0] / 32) * a->nb * 32);
        const ptrdiff_t bytes = (rg[1] - rg[0] + 31) / 32 * a->nb * 32;
        const ptrdiff_t lines = bytes / 64 < VN_FS_PREFETCH_LINES ? bytes / 64
                                                                  : VN_FS_PREFETCH_LINES;
        for (ptrdiff_t l = 0; l < lines; l++) __builtin_prefetch(c + 64 * l, 0, 1);
        if (a->row_slots) __builtin_prefetch(a->row_slots + rg[0], 0, 1);
    }
}

int vn_lut_ivf_topk(vn_ivf_args *a, ptrdiff_t q0, ptrdiff_t q1, int isa) {
    const vn_fs_path path = fs_path(isa);
    const ptrdiff_t nb = a->nb, k = a->k, R = a->R;
    const int use_res = k > VN_FS_IVF_HEAP_K;
    const ptrdiff_t cap = 3 * k + 32; /* as fs_res_cap; > k: the seed and a row fit */
    vn_fcand *buf = NULL;
    vn_fscratch x;
    if (use_res) {
        buf = fs_res_alloc(1, cap, isa, &x);
        if (!buf) return -1;
    }
    vn_fres res = {buf, 0, cap, k, -INFINITY, 0, 0, &x};
    uint32_t sums[32];
    for (ptrdiff_t q = q0; q < q1; q++) {
        if (q + 1 < q1) ivf_prefetch(a, q + 1);
        const uint8_t *lp = a->luts + q * nb * 32;
        float *hs = a->hs + q * k;
        int64_t *hi = a->hi + q * k;
        vn_fheap h = {hs, hi, k, k}; /* always full */
        if (use_res) fs_res_seed(&res, hs, hi, k);
        vn_fsq c = {a->bias[q], a->delta[q], a->qn ? a->qn[q] : 0.0f, 0.0f, 0};
        for (ptrdiff_t t = 0; t < R; t++) {
            const int64_t *rg = a->ranges + 2 * (q * R + t);
            const int64_t lo = rg[0], hi_e = rg[1];
            if (a->list_bias) {
                c.lb = a->list_bias[q * R + t];
                c.has_lb = 1;
            }
            for (int64_t j0 = lo; j0 < hi_e; j0 += 32) {
                const int nv = (int)((hi_e - j0) < 32 ? (hi_e - j0) : 32);
                path.sums(a->codes + (j0 / 32) * nb * 32, &lp, 1, nb, sums, NULL);
                /* two inlined copies: each collector's own code, no per-row test */
                const int rc = use_res
                    ? fs_block_offer(NULL, &res, sums, &c, a->scale, a->xn, (ptrdiff_t)j0, nv,
                                     a->row_slots, a->mask, a->mask_len, path.score, &a->bad)
                    : fs_block_offer(&h, NULL, sums, &c, a->scale, a->xn, (ptrdiff_t)j0, nv,
                                     a->row_slots, a->mask, a->mask_len, path.score, &a->bad);
                if (rc < 0) {
                    free(buf);
                    return -2;
                }
            }
        }
        if (use_res && res.added) fs_res_to_heap(&res, k, hs, hi); /* else: unchanged */
    }
    free(buf);
    return 0;
}

/* ---------------------------------------------------------------- Python */
PyDoc_STRVAR(lut_topk_doc,
"lut_topk(luts, bias, delta, qn, codes, tail, n, scale, xn, mask, k, q0, q1, r0, r1, out_s,"
" out_i, isa, nqsub, levels=None, rtables=None, rqs=None, rlv=None, fin_s=None,"
" fin_i=None, fin_n=None)\n--\n\n"
"Fast-scan top-k of queries q0:q1 over rows r0:r1 into out_s (float32 (nq, k)) and out_i\n"
"(int64 (nq, k)). luts uint8 (nq, nb, 32), or with levels (uint8 (16,), the dot mode) the\n"
"int8 weights viewed as uint8 (nq, 2 nb); bias, delta float32 (nq,); qn float32 (nq,) or\n"
"None; codes uint8 (nblocks, nb * 32) blocked; tail uint8 (1, nb * 32) (the block of rows\n"
"32 (n // 32) .. n - 1) or None; scale, xn float32 (>= n,) or None; mask bool\n"
"(>= n,) or None. With rtables (float32 (nq, 2 nb, 16)) or rqs (float32 (nq, 2 nb)) and\n"
"rlv (float32 (16,)), over all rows (r0 = 0, r1 = n, k >= 1): each query's k rows are\n"
"rescored by the float tables into fin_s (float32 (nq, kf)), fin_i (int64 (nq, kf)) and\n"
"fin_n (int64 (nq,)), as fastscan.rescore_shortlist. Runs without the GIL; see\n"
"vecindex_core._native.lut.lut_topk.");

static PyObject *py_lut_topk(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *ol, *ob, *od, *oqn, *oc, *ot, *osc, *oxn, *om, *oos, *ooi, *olv = Py_None;
    PyObject *ort = Py_None, *orq = Py_None, *orl = Py_None, *ofs = Py_None, *ofi = Py_None,
             *ofn = Py_None, *osd = Py_None;
    double smax = NAN;
    int unsorted = 0;
    Py_ssize_t n, k, q0, q1, r0, r1;
    int isa, nqsub;
    if (!PyArg_ParseTuple(args, "OOOOOOnOOOnnnnnOOii|OOOOOOOOdp:lut_topk", &ol, &ob, &od, &oqn,
                          &oc, &ot, &n, &osc, &oxn, &om, &k, &q0, &q1, &r0, &r1, &oos, &ooi,
                          &isa, &nqsub, &olv, &ort, &orq, &orl, &ofs, &ofi, &ofn, &osd, &smax,
                          &unsorted))
        return NULL;
    if (vn_check_isa(isa) < 0) return NULL;
    enum { NBUF = 19 };
    Py_buffer b[NBUF];
    int have[NBUF] = {0};
    int rc = -1;
    enum { BL, BB, BD, BQN, BC, BT, BSC, BXN, BM, BOS, BOI, BLV, BRT, BRQ, BRL, BFS, BFI, BFN,
           BSD };
    /* the fused rescore's buffers and the seed (all optional here; checked below) */
    {
        static const vn_buf_spec spec[] = {
            {"rtables", K_F32, 3, 0, 1}, {"rqs", K_F32, 2, 0, 1},   {"rlv", K_F32, 1, 0, 1},
            {"fin_s", K_F32, 2, 1, 1},   {"fin_i", K_I64, 2, 1, 1}, {"fin_n", K_I64, 1, 1, 1},
            {"seed", K_F32, 1, 0, 1}};
        PyObject *const opt[] = {ort, orq, orl, ofs, ofi, ofn, osd};
        if (vn_get_buffers(opt, spec, 7, b + BRT, have + BRT) < 0) goto done;
    }
    const int dot = olv != Py_None;
    if (dot) {
        if (vn_get_buffer(olv, &b[BLV], "levels", K_U8, 1, 0) < 0) goto done;
        have[BLV] = 1;
        if (b[BLV].shape[0] != 16) {
            PyErr_Format(g_err_dim, "levels must have 16 entries, got %zd", b[BLV].shape[0]);
            goto done;
        }
    }
    /* dot mode: the weights (nq, 2 nb), int8 viewed as uint8 */
    if (vn_get_buffer(ol, &b[BL], dot ? "weights" : "luts", K_U8, dot ? 2 : 3, 0) < 0)
        goto done;
    have[BL] = 1;
    if (vn_get_buffer(ob, &b[BB], "bias", K_F32, 1, 0) < 0) goto done;
    have[BB] = 1;
    if (vn_get_buffer(od, &b[BD], "delta", K_F32, 1, 0) < 0) goto done;
    have[BD] = 1;
    if (oqn != Py_None) {
        if (vn_get_buffer(oqn, &b[BQN], "q_sq_norms", K_F32, 1, 0) < 0) goto done;
        have[BQN] = 1;
    }
    if (vn_get_buffer(oc, &b[BC], "codes", K_U8, 2, 0) < 0) goto done;
    have[BC] = 1;
    if (ot != Py_None) {
        if (vn_get_buffer(ot, &b[BT], "tail", K_U8, 2, 0) < 0) goto done;
        have[BT] = 1;
    }
    if (osc != Py_None) {
        if (vn_get_buffer(osc, &b[BSC], "scale", K_F32, 1, 0) < 0) goto done;
        have[BSC] = 1;
    }
    if (oxn != Py_None) {
        if (vn_get_buffer(oxn, &b[BXN], "sq_norms", K_F32, 1, 0) < 0) goto done;
        have[BXN] = 1;
    }
    if (om != Py_None) {
        if (vn_get_buffer(om, &b[BM], "mask", K_BOOL, 1, 0) < 0) goto done;
        have[BM] = 1;
    }
    if (vn_get_buffer(oos, &b[BOS], "out_s", K_F32, 2, 1) < 0) goto done;
    have[BOS] = 1;
    if (vn_get_buffer(ooi, &b[BOI], "out_i", K_I64, 2, 1) < 0) goto done;
    have[BOI] = 1;
    {
        const Py_ssize_t nq = b[BL].shape[0];
        const Py_ssize_t nb = dot ? b[BC].shape[1] / 32 : b[BL].shape[1];
        if (!dot && b[BL].shape[2] != 32) {
            PyErr_Format(g_err_dim, "luts must be (nq, nb, 32), got last dimension %zd",
                         b[BL].shape[2]);
            goto done;
        }
        if (dot && (b[BC].shape[1] % 32 != 0 || b[BL].shape[1] != 2 * nb)) {
            PyErr_Format(g_err_dim, "weights must be (nq, 2 nb) for codes of nb * 32 bytes a "
                         "block, got %zd weights and %zd bytes", b[BL].shape[1],
                         b[BC].shape[1]);
            goto done;
        }
        if (nb < 1 || nb > VN_FS_MAX_NB) {
            PyErr_Format(g_err_arg, "%s must have 1 to %d byte columns, got %zd",
                         dot ? "codes" : "luts", VN_FS_MAX_NB, nb);
            goto done;
        }
        if (b[BB].shape[0] != nq || b[BD].shape[0] != nq ||
            (have[BQN] && b[BQN].shape[0] != nq) || (have[BSD] && b[BSD].shape[0] != nq)) {
            PyErr_Format(g_err_dim, "bias, delta, q_sq_norms and seed must have %zd entries "
                         "(one a query), got %zd, %zd, %zd and %zd", nq, b[BB].shape[0],
                         b[BD].shape[0], have[BQN] ? b[BQN].shape[0] : nq,
                         have[BSD] ? b[BSD].shape[0] : nq);
            goto done;
        }
        if (have[BXN] != have[BQN]) {
            PyErr_SetString(g_err_arg, "sq_norms and q_sq_norms must be given together (l2)");
            goto done;
        }
        if (b[BC].shape[1] != nb * 32) {
            PyErr_Format(g_err_dim, "codes must have %zd bytes a block (nb * 32), got %zd",
                         nb * 32, b[BC].shape[1]);
            goto done;
        }
        if (have[BT] && (b[BT].shape[0] != 1 || b[BT].shape[1] != nb * 32)) {
            PyErr_Format(g_err_dim, "tail must be one block (1, %zd), got (%zd, %zd)", nb * 32,
                         b[BT].shape[0], b[BT].shape[1]);
            goto done;
        }
        if (n < 0 || (have[BT] ? n / 32 > b[BC].shape[0] : n > b[BC].shape[0] * 32)) {
            PyErr_Format(g_err_arg, "n must be in [0, %zd] (32 rows a block of codes%s), got "
                         "%zd", b[BC].shape[0] * 32 + (have[BT] ? 31 : 0),
                         have[BT] ? ", plus the tail block" : "", n);
            goto done;
        }
        if ((have[BSC] && b[BSC].shape[0] < n) || (have[BXN] && b[BXN].shape[0] < n) ||
            (have[BM] && b[BM].shape[0] < n)) {
            PyErr_Format(g_err_dim, "scale, sq_norms and mask must have at least n = %zd "
                         "entries, got %zd, %zd and %zd", n, have[BSC] ? b[BSC].shape[0] : n,
                         have[BXN] ? b[BXN].shape[0] : n, have[BM] ? b[BM].shape[0] : n);
            goto done;
        }
        if (k < 0) {
            PyErr_Format(g_err_arg, "k must be >= 0, got %zd", k);
            goto done;
        }
        if (b[BOS].shape[0] != nq || b[BOS].shape[1] != k || b[BOI].shape[0] != nq ||
            b[BOI].shape[1] != k) {
            PyErr_Format(g_err_dim, "out_s and out_i must have shape (%zd, %zd), got (%zd, "
                         "%zd) and (%zd, %zd)", nq, k, b[BOS].shape[0], b[BOS].shape[1],
                         b[BOI].shape[0], b[BOI].shape[1]);
            goto done;
        }
        if (vn_query_range(q0, q1, nq) < 0) goto done;
        if (r0 < 0 || r1 < r0 || r1 > n || r0 % 32 != 0) {
            PyErr_Format(g_err_arg, "row range [%zd, %zd) must lie in [0, %zd] and start at "
                         "a multiple of 32", r0, r1, n);
            goto done;
        }
        vn_lut_args la;
        la.luts = (const uint8_t *)b[BL].buf;
        la.levels = dot ? (const uint8_t *)b[BLV].buf : NULL;
        la.bias = (const float *)b[BB].buf;
        la.delta = (const float *)b[BD].buf;
        la.qn = have[BQN] ? (const float *)b[BQN].buf : NULL;
        la.codes = (const uint8_t *)b[BC].buf;
        la.tail = have[BT] ? (const uint8_t *)b[BT].buf : NULL;
        la.scale = have[BSC] ? (const float *)b[BSC].buf : NULL;
        la.xn = have[BXN] ? (const float *)b[BXN].buf : NULL;
        la.mask = have[BM] ? (const uint8_t *)b[BM].buf : NULL;
        la.nb = nb;
        la.n = n;
        la.k = k;
        la.nqsub = nqsub;
        la.out_s = (float *)b[BOS].buf;
        la.out_i = (int64_t *)b[BOI].buf;
        la.seed = have[BSD] ? (const float *)b[BSD].buf : NULL;
        if (unsorted && (have[BRT] || have[BRQ])) {
            PyErr_SetString(g_err_arg, "the fused rescore needs the sorted shortlist");
            goto done;
        }
        la.scale_max = (float)smax;
        la.unsorted = unsorted;
        la.rtables = la.rqs = la.rlv = NULL;
        la.kf = 0;
        la.fin_s = NULL;
        la.fin_i = la.fin_n = NULL;
        if (have[BRT] || have[BRQ] || have[BRL] || have[BFS] || have[BFI] || have[BFN]) {
            const Py_ssize_t kf = have[BFS] ? b[BFS].shape[1] : 0;
            if (have[BRT] == have[BRQ] || have[BRQ] != have[BRL] || !have[BFS] ||
                !have[BFI] || !have[BFN]) {
                PyErr_SetString(g_err_arg, "the rescore needs rtables, or rqs with rlv, and "
                                "fin_s, fin_i and fin_n");
                goto done;
            }
            if ((have[BRT] && (b[BRT].shape[0] != nq || b[BRT].shape[1] != 2 * nb ||
                               b[BRT].shape[2] != 16)) ||
                (have[BRQ] && (b[BRQ].shape[0] != nq || b[BRQ].shape[1] != 2 * nb ||
                               b[BRL].shape[0] != 16)) ||
                b[BFS].shape[0] != nq || b[BFI].shape[0] != nq || b[BFI].shape[1] != kf ||
                b[BFN].shape[0] != nq) {
                PyErr_Format(g_err_dim, "rtables must be (%zd, %zd, 16), or rqs (%zd, %zd) "
                             "and rlv (16,); fin_s and fin_i (%zd, kf) alike, fin_n (%zd,)",
                             nq, 2 * nb, nq, 2 * nb, nq, nq);
                goto done;
            }
            if (r0 != 0 || r1 != n || k < 1) {
                PyErr_Format(g_err_arg, "the rescore needs every row (r0 = 0, r1 = n = %zd) "
                             "and k >= 1, got [%zd, %zd) and k = %zd", n, r0, r1, k);
                goto done;
            }
            /* the results against every buffer; the scan's outputs (written before the
             * rescore reads them) against the rescore's tables */
            for (int x = BOS; x <= BFN; x++)
                for (int y = 0; y < NBUF; y++)
                    if (y != x && have[x] && have[y] && (x >= BFS || y == BRT || y == BRQ ||
                                                        y == BRL) &&
                        vn_overlap(&b[x], &b[y])) {
                        PyErr_SetString(g_err_arg, "fin_s, fin_i and fin_n must not share "
                                        "memory with each other or with the other buffers, "
                                        "nor out_s and out_i with the rescore's tables");
                        goto done;
                    }
            la.rtables = have[BRT] ? (const float *)b[BRT].buf : NULL;
            la.rqs = have[BRQ] ? (const float *)b[BRQ].buf : NULL;
            la.rlv = have[BRL] ? (const float *)b[BRL].buf : NULL;
            la.kf = kf;
            la.fin_s = (float *)b[BFS].buf;
            la.fin_i = (int64_t *)b[BFI].buf;
            la.fin_n = (int64_t *)b[BFN].buf;
        }
        int err = 0;
        if (k > 0 && q1 > q0) {
            Py_BEGIN_ALLOW_THREADS
            err = vn_lut_topk(&la, q0, q1, r0, r1, isa);
            Py_END_ALLOW_THREADS
        }
        if (err) PyErr_NoMemory();
        else rc = 0;
    }
done:
    return vn_finish(b, have, NBUF, rc);
}

PyDoc_STRVAR(lut_ivf_topk_doc,
"lut_ivf_topk(luts, bias, delta, qn, codes, ranges, list_bias, scale, xn, row_slots, mask,"
" q0, q1, hs, hi, isa)\n--\n\n"
"Continue the heaps hs (float32 (nq, k)) and hi (int64 (nq, k)) of queries q0:q1 in place\n"
"over their entry ranges (the same k best as the reference's sequential offers; for k > 32\n"
"the layout may differ: the k best written back heapified). luts uint8 (nq, nb, 32); bias,\n"
"delta float32 (nq,); qn float32 (nq,) or None; codes uint8 (nblocks, nb * 32) blocked by\n"
"entry; ranges int64 (nq, R, 2); list_bias float32 (nq, R) or None; scale, xn float32 and\n"
"row_slots int32 (>= max hi,), scale and xn or None; mask bool (any length) or None. A\n"
"slot outside the mask raises after the heaps of q0:q1 may have changed (the wrapper\n"
"checks first). Runs without the GIL; see vecindex_core._native.lut.lut_ivf_topk.");

static PyObject *py_lut_ivf_topk(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *ol, *ob, *od, *oqn, *oc, *orr, *olb, *osc, *oxn, *ors, *om, *ohs, *ohi;
    Py_ssize_t q0, q1;
    int isa;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOnnOOi:lut_ivf_topk", &ol, &ob, &od, &oqn, &oc,
                          &orr, &olb, &osc, &oxn, &ors, &om, &q0, &q1, &ohs, &ohi, &isa))
        return NULL;
    if (vn_check_isa(isa) < 0) return NULL;
    enum { NBUF = 13 };
    Py_buffer b[NBUF];
    int have[NBUF] = {0};
    int rc = -1;
    enum { BL, BB, BD, BQN, BC, BR, BLB, BSC, BXN, BRS, BM, BHS, BHI };
    struct { PyObject *o; const char *name; enum vn_kind kd; int ndim, writable, optional; }
    spec[NBUF] = {
        {ol, "luts", K_U8, 3, 0, 0},          {ob, "bias", K_F32, 1, 0, 0},
        {od, "delta", K_F32, 1, 0, 0},        {oqn, "q_sq_norms", K_F32, 1, 0, 1},
        {oc, "codes", K_U8, 2, 0, 0},         {orr, "ranges", K_I64, 3, 0, 0},
        {olb, "list_bias", K_F32, 2, 0, 1},   {osc, "scale", K_F32, 1, 0, 1},
        {oxn, "sq_norms", K_F32, 1, 0, 1},    {ors, "row_slots", K_I32, 1, 0, 0},
        {om, "mask", K_BOOL, 1, 0, 1},        {ohs, "hs", K_F32, 2, 1, 0},
        {ohi, "hi", K_I64, 2, 1, 0},
    };
    for (int t = 0; t < NBUF; t++) {
        if (spec[t].optional && spec[t].o == Py_None) continue;
        if (vn_get_buffer(spec[t].o, &b[t], spec[t].name, spec[t].kd, spec[t].ndim,
                          spec[t].writable) < 0)
            goto done;
        have[t] = 1;
    }
    {
        const Py_ssize_t nq = b[BL].shape[0], nb = b[BL].shape[1], R = b[BR].shape[1];
        const Py_ssize_t k = b[BHS].shape[1], entries = b[BC].shape[0] * 32;
        if (b[BL].shape[2] != 32 || nb < 1 || nb > VN_FS_MAX_NB) {
            PyErr_Format(g_err_dim, "luts must be (nq, nb, 32) with 1 to %d byte columns, "
                         "got (%zd, %zd, %zd)", VN_FS_MAX_NB, nq, nb, b[BL].shape[2]);
            goto done;
        }
        if (b[BB].shape[0] != nq || b[BD].shape[0] != nq ||
            (have[BQN] && b[BQN].shape[0] != nq)) {
            PyErr_Format(g_err_dim, "bias, delta and q_sq_norms must have %zd entries (one a "
                         "query)", nq);
            goto done;
        }
        if (have[BXN] != have[BQN]) {
            PyErr_SetString(g_err_arg, "sq_norms and q_sq_norms must be given together (l2)");
            goto done;
        }
        if (b[BC].shape[1] != nb * 32) {
            PyErr_Format(g_err_dim, "codes must have %zd bytes a block (nb * 32), got %zd",
                         nb * 32, b[BC].shape[1]);
            goto done;
        }
        if (b[BR].shape[0] != nq || b[BR].shape[2] != 2 ||
            (have[BLB] && (b[BLB].shape[0] != nq || b[BLB].shape[1] != R))) {
            PyErr_Format(g_err_dim, "ranges must be (%zd, R, 2) and list_bias (%zd, R)", nq,
                         nq);
            goto done;
        }
        if (b[BHS].shape[0] != nq || b[BHI].shape[0] != nq || b[BHI].shape[1] != k || k < 1) {
            PyErr_Format(g_err_dim, "hs and hi must both be (%zd, k) with k >= 1, got (%zd, "
                         "%zd) and (%zd, %zd)", nq, b[BHS].shape[0], k, b[BHI].shape[0],
                         b[BHI].shape[1]);
            goto done;
        }
        if (vn_query_range(q0, q1, nq) < 0) goto done;
        /* every scanned entry must lie in the codes and the per-entry arrays */
        Py_ssize_t limit = entries < b[BRS].shape[0] ? entries : b[BRS].shape[0];
        if (have[BSC] && b[BSC].shape[0] < limit) limit = b[BSC].shape[0];
        if (have[BXN] && b[BXN].shape[0] < limit) limit = b[BXN].shape[0];
        const int64_t *rg = (const int64_t *)b[BR].buf;
        for (Py_ssize_t t = 2 * q0 * R; t < 2 * q1 * R; t += 2) {
            if (rg[t] > rg[t + 1] || rg[t] < 0 ||
                (rg[t] < rg[t + 1] && (rg[t] % 32 != 0 || rg[t + 1] > limit))) {
                PyErr_Format(g_err_arg, "range [%lld, %lld) of query %zd must have lo <= hi, "
                             "lo >= 0 a multiple of 32 and hi <= %zd (codes, row_slots, "
                             "scale, sq_norms)", (long long)rg[t], (long long)rg[t + 1],
                             t / (2 * R), limit);
                goto done;
            }
        }
        vn_ivf_args ia;
        ia.luts = (const uint8_t *)b[BL].buf;
        ia.bias = (const float *)b[BB].buf;
        ia.delta = (const float *)b[BD].buf;
        ia.qn = have[BQN] ? (const float *)b[BQN].buf : NULL;
        ia.codes = (const uint8_t *)b[BC].buf;
        ia.ranges = rg;
        ia.list_bias = have[BLB] ? (const float *)b[BLB].buf : NULL;
        ia.scale = have[BSC] ? (const float *)b[BSC].buf : NULL;
        ia.xn = have[BXN] ? (const float *)b[BXN].buf : NULL;
        ia.row_slots = (const int32_t *)b[BRS].buf;
        ia.mask = have[BM] ? (const uint8_t *)b[BM].buf : NULL;
        ia.mask_len = have[BM] ? b[BM].shape[0] : 0;
        ia.nb = nb;
        ia.k = k;
        ia.R = R;
        ia.hs = (float *)b[BHS].buf;
        ia.hi = (int64_t *)b[BHI].buf;
        ia.bad = -1;
        int err = 0;
        if (q1 > q0 && R > 0) {
            Py_BEGIN_ALLOW_THREADS
            err = vn_lut_ivf_topk(&ia, q0, q1, isa);
            Py_END_ALLOW_THREADS
        }
        if (err == -1) PyErr_NoMemory();
        else if (err)
            PyErr_Format(g_err_dim, "mask has %zd entries, but entry %zd has slot %d",
                         ia.mask_len, ia.bad, (int)ia.row_slots[ia.bad]);
        else rc = 0;
    }
done:
    return vn_finish(b, have, NBUF, rc);
}

PyMethodDef vn_lut_methods[] = {
    {"lut_topk", py_lut_topk, METH_VARARGS, lut_topk_doc},
    {"lut_ivf_topk", py_lut_ivf_topk, METH_VARARGS, lut_ivf_topk_doc},
    {NULL, NULL, 0, NULL},
};
