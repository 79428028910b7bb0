/* The rank step of the staged search over bit planes: the native twin of
 * vecindex_core._kernels.planes.rank_ref (same results bit for bit).
 *
 * Per query q and candidate row j (cand[q, c] >= 0, with its sign-pass score s1[q, c]):
 *     I_p = sum_t w[q, t] * bit_t(low plane p of row j)    (exact int64; p < nplanes)
 *     acc = sum_p beta[p] * (double)(2 I_p - wsum[q])      (float64, p ascending)
 *     est = (double)s1 + mul * ((double)scale[j] * ((double)u[q] * acc))   (scale: 1 when NULL)
 * and the kk best by (est desc, NaN last, row asc) go to out_e / out_i (best first, -inf /
 * -1 padding). A row's low planes are `nplanes` runs of nb1 bytes (bit t % 8 of byte t / 8:
 * coordinate t), one row after another (stride L = nplanes * nb1).
 *
 * Paths: AVX-512 with VNNI (a plane's 64-bit word expanded to 0/1 bytes by a masked move,
 * vpdpbusd against the int8 weights), else per-query byte tables (the sum of the weights
 * of each 8-coordinate group's set bits, for every byte value). Integer sums are exact on
 * both, so they agree with the reference bit for bit.
 *
 * The rescore (planes_rescore): each kept row's packed codes are put back together from its
 * sign bits (the blocked 1-bit store: byte p of row j is the nibble pair of column p) and its
 * low planes, and scored by the fused rescore's arithmetic (lut.h: VN_RS_SUM, vn_rs_score,
 * vn_rs_insert), the twin of planes.merge_planes + fastscan.rescore_shortlist. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "native.h"
#include "pyglue.h"
#include "lut.h"

#if VN_X86
#include <immintrin.h>
#endif

typedef struct {
    const int64_t *cand;  /* (nq, S) rows, -1: none */
    const float *s1;      /* (nq, S) */
    const uint8_t *low;   /* (>= n, L) */
    ptrdiff_t S, L, nb1, nplanes, n;
    const int8_t *w;      /* (nq, W) weights, W >= 8 nb1 rounded up to 64, 0 past d */
    ptrdiff_t W;
    const int64_t *wsum;  /* (nq,) */
    const float *u;       /* (nq,) */
    const double *beta;   /* (nplanes,) */
    const float *scale;   /* (>= n,) or NULL */
    double mul;
    ptrdiff_t kk;
    double *out_e;        /* (nq, kk) */
    int64_t *out_i;       /* (nq, kk) */
} vn_rank_args;

/* (e1, j1) ranks before (e2, j2): higher estimate, NaN last, then lower row */
static inline int pr_before(double e1, int64_t j1, double e2, int64_t j2) {
    const int n1 = e1 != e1, n2 = e2 != e2;
    if (n1 != n2) return n2;
    if (!n1 && e1 != e2) return e1 > e2;
    return j1 < j2;
}

/* insert (e, j) into the best-first list of kk entries holding *held */
static inline void pr_insert(double *oe, int64_t *oi, ptrdiff_t kk, ptrdiff_t *held, double e,
                             int64_t j) {
    if (*held == kk && !pr_before(e, j, oe[kk - 1], oi[kk - 1])) return;
    ptrdiff_t t = *held < kk ? *held : kk - 1;
    for (; t > 0 && pr_before(e, j, oe[t - 1], oi[t - 1]); t--) {
        oe[t] = oe[t - 1];
        oi[t] = oi[t - 1];
    }
    oe[t] = e;
    oi[t] = j;
    if (*held < kk) (*held)++;
}

static inline double pr_estimate(const vn_rank_args *a, ptrdiff_t q, ptrdiff_t c,
                                 const int64_t *isum) {
    const int64_t j = a->cand[q * a->S + c];
    double acc = 0.0;
    for (ptrdiff_t p = 0; p < a->nplanes; p++)
        acc += a->beta[p] * (double)(2 * isum[p] - a->wsum[q]);
    const double sc = a->scale ? (double)a->scale[j] : 1.0;
    return (double)a->s1[q * a->S + c] + a->mul * (sc * ((double)a->u[q] * acc));
}

/* ---------------------------------------------------------------- byte tables */
static int rank_tables(const vn_rank_args *a, ptrdiff_t q0, ptrdiff_t q1) {
    int32_t *tb = (int32_t *)malloc(sizeof(int32_t) * 256 * (size_t)(a->nb1 > 0 ? a->nb1 : 1));
    if (!tb) return -1;
    int64_t isum[8];
    for (ptrdiff_t q = q0; q < q1; q++) {
        const int8_t *w = a->w + q * a->W;
        for (ptrdiff_t g = 0; g < a->nb1; g++) { /* tb[g][b]: the weights of b's set bits */
            int32_t *t = tb + 256 * g;
            t[0] = 0;
            for (int b = 1; b < 256; b++) t[b] = t[b & (b - 1)] + w[8 * g + __builtin_ctz(b)];
        }
        double *oe = a->out_e + q * a->kk;
        int64_t *oi = a->out_i + q * a->kk;
        for (ptrdiff_t t = 0; t < a->kk; t++) {
            oe[t] = -INFINITY;
            oi[t] = -1;
        }
        ptrdiff_t held = 0;
        for (ptrdiff_t c = 0; c < a->S; c++) {
            const int64_t j = a->cand[q * a->S + c];
            if (j < 0) continue;
            const uint8_t *row = a->low + j * a->L;
            for (ptrdiff_t p = 0; p < a->nplanes; p++) {
                int64_t s = 0;
                for (ptrdiff_t g = 0; g < a->nb1; g++) s += tb[256 * g + row[p * a->nb1 + g]];
                isum[p] = s;
            }
            pr_insert(oe, oi, a->kk, &held, pr_estimate(a, q, c, isum), j);
        }
    }
    free(tb);
    return 0;
}

/* ---------------------------------------------------------------- AVX-512 VNNI */
#if VN_X86
/* Candidates ahead whose rows are prefetched (rows are scattered over the whole store: each
 * is a cache miss, and the loads of one row are too few to hide the next one's latency). */
#define VN_RANK_AHEAD 16
/* 64 coordinates' bits (plane bytes pl[0 .. len), len <= 8) as a mask */
static inline uint64_t rank_bits(const uint8_t *pl, ptrdiff_t len) {
    uint64_t m = 0;
    if (len >= 8) memcpy(&m, pl, 8);
    else
        for (ptrdiff_t t = 0; t < len; t++) m |= (uint64_t)pl[t] << (8 * t);
    return m;
}

/* The planes' sums of one row, up to three planes with named accumulators (independent
 * chains; arrays of vectors were kept on the stack), the chunks of 64 coordinates outside. */
#define VN_RANK_ACC(acc, p)                                                               \
    acc = _mm512_dpbusd_epi32(                                                            \
        acc, _mm512_maskz_mov_epi8((__mmask64)rank_bits(row + (p) * nb1 + o, len), ones), wv)
__attribute__((target(VN_TARGET_AVX512_DOT), always_inline)) static inline void rank_row(
    const uint8_t *row, ptrdiff_t nb1, const int8_t *w, const int NP, int64_t *isum) {
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0;
    for (ptrdiff_t o = 0; o < nb1; o += 8) {
        const __m512i wv = _mm512_loadu_si512((const void *)(w + 8 * o));
        const ptrdiff_t len = nb1 - o;
        VN_RANK_ACC(a0, 0);
        if (NP > 1) VN_RANK_ACC(a1, 1);
        if (NP > 2) VN_RANK_ACC(a2, 2);
    }
    isum[0] = (int64_t)_mm512_reduce_add_epi32(a0);
    if (NP > 1) isum[1] = (int64_t)_mm512_reduce_add_epi32(a1);
    if (NP > 2) isum[2] = (int64_t)_mm512_reduce_add_epi32(a2);
}

__attribute__((target(VN_TARGET_AVX512_DOT))) static int rank_vnni(const vn_rank_args *a,
                                                                   ptrdiff_t q0,
                                                                   ptrdiff_t q1) {
    int64_t isum[8];
    for (ptrdiff_t q = q0; q < q1; q++) {
        const int8_t *w = a->w + q * a->W;
        double *oe = a->out_e + q * a->kk;
        int64_t *oi = a->out_i + q * a->kk;
        for (ptrdiff_t t = 0; t < a->kk; t++) {
            oe[t] = -INFINITY;
            oi[t] = -1;
        }
        ptrdiff_t held = 0;
        const int64_t *cq = a->cand + q * a->S;
        for (ptrdiff_t c = 0; c < a->S; c++) {
            const int64_t j = cq[c];
            /* the candidate VN_RANK_AHEAD on, the next query's first ones included */
            const ptrdiff_t ahead = q * a->S + c + VN_RANK_AHEAD;
            if (ahead < q1 * a->S && a->cand[ahead] >= 0) {
                const char *nx = (const char *)(a->low + a->cand[ahead] * a->L);
                for (ptrdiff_t o = 0; o < a->L; o += 64) _mm_prefetch(nx + o, _MM_HINT_T0);
                _mm_prefetch(nx + a->L - 1, _MM_HINT_T0);
            }
            if (j < 0) continue;
            const uint8_t *row = a->low + j * a->L;
            for (ptrdiff_t p0 = 0; p0 < a->nplanes; p0 += 3) { /* 1 or 3 planes: one pass */
                const ptrdiff_t np = a->nplanes - p0 < 3 ? a->nplanes - p0 : 3;
                const uint8_t *r0 = row + p0 * a->nb1;
                if (np == 3) rank_row(r0, a->nb1, w, 3, isum + p0);
                else if (np == 2) rank_row(r0, a->nb1, w, 2, isum + p0);
                else rank_row(r0, a->nb1, w, 1, isum + p0);
            }
            pr_insert(oe, oi, a->kk, &held, pr_estimate(a, q, c, isum), j);
        }
    }
    return 0;
}
#endif

static int vn_planes_rank(const vn_rank_args *a, ptrdiff_t q0, ptrdiff_t q1, int isa) {
#if VN_X86
    if (isa == VN_AVX512 && g_cpu.avx512vnni && g_cpu.avx512vbmi) /* its target's features */
        return rank_vnni(a, q0, q1);
#else
    (void)isa;
#endif
    return rank_tables(a, q0, q1);
}

/* ---------------------------------------------------------------- rescore */
/* bit i of byte b moved to bit 2 i / 4 i */
#define VN_S2(b) ((uint32_t)(((b)&1) | ((b)&2) << 1 | ((b)&4) << 2 | ((b)&8) << 3 |           \
                             ((b)&16) << 4 | ((b)&32) << 5 | ((b)&64) << 6 | ((b)&128) << 7))
#define VN_S4(b) ((uint32_t)(((b)&1) | ((b)&2) << 3 | ((b)&4) << 6 | ((b)&8) << 9 |           \
                             ((b)&16) << 12 | ((b)&32) << 15 | ((b)&64) << 18 | ((b)&128) << 21))
#define VN_T4(S, n) S(n), S(n + 1), S(n + 2), S(n + 3)
#define VN_T16(S, n) VN_T4(S, n), VN_T4(S, n + 4), VN_T4(S, n + 8), VN_T4(S, n + 12)
#define VN_T64(S, n) VN_T16(S, n), VN_T16(S, n + 16), VN_T16(S, n + 32), VN_T16(S, n + 48)
#define VN_T256(S) VN_T64(S, 0), VN_T64(S, 64), VN_T64(S, 128), VN_T64(S, 192)
static const uint32_t vn_spread2[256] = {VN_T256(VN_S2)};
static const uint32_t vn_spread4[256] = {VN_T256(VN_S4)};

typedef struct {
    const int64_t *kept;  /* (nq, kk) rows, -1: none */
    ptrdiff_t kk;
    const uint8_t *sign;  /* (nblocks, nb1 * 32) blocked 1-bit rows */
    const uint8_t *tail;  /* (1, nb1 * 32): the block of rows 32 (n / 32) .., or NULL */
    ptrdiff_t n, nb1, bits;
    const uint8_t *low;   /* (>= n, (bits - 1) nb1) */
    vn_rs_tabs tb;        /* the query's float tables over the nb code bytes */
    const float *scale, *xn, *qn;
    ptrdiff_t k;
    float *fin_s;         /* (nq, k) */
    int64_t *fin_i;       /* (nq, k) */
    int64_t *fin_n;       /* (nq,) */
} vn_prs_args;

/* row j's packed codes into out (nb1 * bits bytes) */
static void prs_row(const vn_prs_args *a, int64_t j, uint8_t *out) {
    const uint8_t *blk = (a->tail && j / 32 == a->n / 32) ? a->tail
                                                        : a->sign + (j / 32) * a->nb1 * 32;
    const ptrdiff_t i = j & 15, L = (a->bits - 1) * a->nb1;
    const int sh = (j & 31) >= 16 ? 4 : 0;
    const uint8_t *low = a->low + j * L;
    const uint32_t *sp = a->bits == 4 ? vn_spread4 : vn_spread2;
    for (ptrdiff_t g = 0; g < a->nb1; g++) {
        const unsigned sg = ((blk[32 * g + i] >> sh) & 15u) | ((blk[32 * g + 16 + i] >> sh) & 15u) << 4;
        uint32_t v = sp[sg] << (a->bits - 1);
        for (ptrdiff_t p = 0; p < a->bits - 1; p++) v |= sp[low[p * a->nb1 + g]] << p;
        for (ptrdiff_t t = 0; t < a->bits; t++) out[g * a->bits + t] = (uint8_t)(v >> (8 * t));
    }
}

/* Rows ahead whose sign columns and low planes are prefetched (each row is scattered over
 * its block's nb1 / 2 cache lines and one low row: cache misses, one row's work apart). */
#define VN_RESCORE_AHEAD 3

static inline void prs_prefetch(const vn_prs_args *a, int64_t j) {
    if (j < 0) return;
    const uint8_t *blk = (a->tail && j / 32 == a->n / 32) ? a->tail
                                                        : a->sign + (j / 32) * a->nb1 * 32;
    for (ptrdiff_t p = 0; p < a->nb1; p += 2) __builtin_prefetch(blk + 32 * p + (j & 15));
    const ptrdiff_t L = (a->bits - 1) * a->nb1;
    for (ptrdiff_t o = 0; o < L; o += 64) __builtin_prefetch(a->low + j * L + o);
    __builtin_prefetch(a->low + j * L + L - 1);
}

/* VN_RS_SUM of a packed row: the four partial sums as the four lanes of one vector (lane i:
 * sub-codes i, i + 4, ...: each lane adds its entries in the scalar order, so the sums are
 * the same bit for bit); an odd last byte column goes to lanes 0 and 1 in scalar code. */
#if VN_X86
__attribute__((target(VN_TARGET_AVX512))) static float prs_sum_avx512(const vn_rs_tabs *tb,
                                                                     ptrdiff_t q,
                                                                     const uint8_t *row) {
    const ptrdiff_t nb = tb->nb, half = nb >> 1;
    const __m128i sh = _mm_setr_epi32(0, 4, 8, 12), m15 = _mm_set1_epi32(15);
    __m256d acc = _mm256_setzero_pd();
    if (tb->rtables) {
        const float *tq = tb->rtables + q * 2 * nb * 16;
        const __m128i base = _mm_setr_epi32(0, 16, 32, 48);
        for (ptrdiff_t t = 0; t < half; t++) {
            uint16_t two;
            memcpy(&two, row + 2 * t, 2);
            const __m128i c = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32(two), sh), m15);
            const __m128 e = _mm_i32gather_ps(tq + 64 * t, _mm_add_epi32(base, c), 4);
            acc = _mm256_add_pd(acc, _mm256_cvtps_pd(e));
        }
    } else {
        const float *rq = tb->rqs + q * 2 * nb;
        const __m512 lv = _mm512_loadu_ps(tb->rlv);
        for (ptrdiff_t t = 0; t < half; t++) {
            uint16_t two;
            memcpy(&two, row + 2 * t, 2);
            const __m128i c = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32(two), sh), m15);
            const __m128 e = _mm_mul_ps(
                _mm_loadu_ps(rq + 4 * t),
                _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_castsi128_si512(c), lv)));
            acc = _mm256_add_pd(acc, _mm256_cvtps_pd(e));
        }
    }
    double a[4];
    _mm256_storeu_pd(a, acc);
    if (nb & 1) {
        const unsigned b = row[2 * half];
        if (tb->rtables) {
            const float *tq = tb->rtables + q * 2 * nb * 16 + 64 * half;
            a[0] += (double)tq[b & 15u];
            a[1] += (double)tq[16 + (b >> 4)];
        } else {
            const float *rq = tb->rqs + q * 2 * nb + 4 * half;
            a[0] += (double)(rq[0] * tb->rlv[b & 15u]);
            a[1] += (double)(rq[1] * tb->rlv[b >> 4]);
        }
    }
    return (float)((a[0] + a[1]) + (a[2] + a[3]));
}
#endif

static int vn_planes_rescore(const vn_prs_args *a, ptrdiff_t q0, ptrdiff_t q1, int isa) {
#if !VN_X86
    (void)isa;
#endif
    uint8_t *row = (uint8_t *)malloc((size_t)(a->nb1 * a->bits) + 2);
    if (!row) return -1;
    for (ptrdiff_t q = q0; q < q1; q++) {
        float *sc = a->fin_s + q * a->k;
        int64_t *sl = a->fin_i + q * a->k;
        for (ptrdiff_t t = 0; t < a->k; t++) {
            sc[t] = -INFINITY;
            sl[t] = -1;
        }
        ptrdiff_t held = 0;
        for (ptrdiff_t c = 0; c < a->kk && a->k > 0; c++) {
            const int64_t j = a->kept[q * a->kk + c];
            const ptrdiff_t ahead = q * a->kk + c + VN_RESCORE_AHEAD; /* next query's too */
            if (ahead < q1 * a->kk) prs_prefetch(a, a->kept[ahead]);
            float v = -INFINITY;
            if (j >= 0) {
                prs_row(a, j, row);
#if VN_X86
                if (isa == VN_AVX512) v = prs_sum_avx512(&a->tb, q, row);
                else
#endif
                {
#define PRS_NIB(x) ((row[(x) >> 1] >> (4 * ((x) & 1))) & 15u)
                    VN_RS_SUM(&a->tb, q, PRS_NIB, v);
#undef PRS_NIB
                }
                v = vn_rs_score(v, a->scale, a->xn, a->qn, q, j);
            }
            vn_rs_insert(sc, sl, a->k, &held, v, j);
        }
        int64_t real = 0;
        for (ptrdiff_t t = 0; t < held; t++) real += sl[t] >= 0;
        a->fin_n[q] = real;
    }
    free(row);
    return 0;
}

/* ---------------------------------------------------------------- Python glue */
PyDoc_STRVAR(planes_rank_doc,
"planes_rank(cand, s1, low, nb1, nplanes, w, wsum, u, beta, scale, mul, out_e, out_i, q0, q1,"
" isa)\n--\n\n"
"The rank step of queries q0:q1 (see vecindex_core._kernels.planes.rank_ref): cand int64\n"
"(nq, S) rows (-1: none), s1 float32 (nq, S), low uint8 (n, nplanes * nb1), w int8 (nq, W)\n"
"with W >= 8 nb1 a multiple of 64, wsum int64 (nq,), u float32 (nq,), beta float64\n"
"(nplanes,), scale float32 (n,) or None, mul float; the kk best into out_e float64\n"
"(nq, kk) and out_i int64 (nq, kk). Runs without the GIL.");

static PyObject *py_planes_rank(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *oc, *os, *ol, *ow, *ows, *ou, *ob, *osc, *oe, *oi;
    Py_ssize_t nb1, nplanes, q0, q1;
    double mul;
    int isa;
    if (!PyArg_ParseTuple(args, "OOOnnOOOOOdOOnni:planes_rank", &oc, &os, &ol, &nb1, &nplanes,
                          &ow, &ows, &ou, &ob, &osc, &mul, &oe, &oi, &q0, &q1, &isa))
        return NULL;
    if (vn_check_isa(isa) < 0) return NULL;
    enum { BC, BS, BL, BW, BWS, BU, BB, BSC, BE, BI, NBUF };
    Py_buffer b[NBUF];
    int have[NBUF] = {0}, rc = -1;
    static const vn_buf_spec spec[NBUF] = {
        {"cand", K_I64, 2, 0, 0}, {"s1", K_F32, 2, 0, 0},    {"low", K_U8, 2, 0, 0},
        {"w", K_I8, 2, 0, 0},     {"wsum", K_I64, 1, 0, 0},  {"u", K_F32, 1, 0, 0},
        {"beta", K_F64, 1, 0, 0}, {"scale", K_F32, 1, 0, 1}, {"out_e", K_F64, 2, 1, 0},
        {"out_i", K_I64, 2, 1, 0}};
    PyObject *const objs[NBUF] = {oc, os, ol, ow, ows, ou, ob, osc, oe, oi};
    if (vn_get_buffers(objs, spec, NBUF, b, have) < 0) goto done;
    {
        const Py_ssize_t nq = b[BC].shape[0], S = b[BC].shape[1], n = b[BL].shape[0];
        const Py_ssize_t L = b[BL].shape[1], W = b[BW].shape[1], kk = b[BE].shape[1];
        if (nplanes < 1 || nplanes > 7 || nb1 < 1 || L != nplanes * nb1) {
            PyErr_Format(g_err_dim, "low must be (n, nplanes * nb1) with 1 <= nplanes <= 7 "
                         "and nb1 >= 1, got (%zd, %zd) for nplanes = %zd, nb1 = %zd", n, L,
                         nplanes, nb1);
            goto done;
        }
        if (b[BS].shape[0] != nq || b[BS].shape[1] != S || b[BW].shape[0] != nq ||
            W % 64 || W < 8 * nb1 || b[BWS].shape[0] != nq || b[BU].shape[0] != nq ||
            b[BB].shape[0] != nplanes || b[BE].shape[0] != nq || b[BI].shape[0] != nq ||
            b[BI].shape[1] != kk || (have[BSC] && b[BSC].shape[0] < n)) {
            PyErr_Format(g_err_dim, "planes_rank: shapes disagree (nq = %zd, S = %zd, n = %zd, "
                         "nb1 = %zd, nplanes = %zd, W = %zd)", nq, S, n, nb1, nplanes, W);
            goto done;
        }
        if (kk < 1) {
            PyErr_Format(g_err_arg, "planes_rank needs kk >= 1, got %zd", kk);
            goto done;
        }
        const int64_t *cand = (const int64_t *)b[BC].buf;
        if (vn_query_range(q0, q1, nq) < 0 || vn_rows_in(cand, q0 * S, q1 * S, n, "cand") < 0 ||
            vn_apart(b, have, NBUF, BE, BI, "out_e and out_i must not share memory with each "
                     "other or with the inputs") < 0)
            goto done;
        vn_rank_args a = {cand, (const float *)b[BS].buf, (const uint8_t *)b[BL].buf, S, L,
                          nb1, nplanes, n, (const int8_t *)b[BW].buf, W,
                          (const int64_t *)b[BWS].buf, (const float *)b[BU].buf,
                          (const double *)b[BB].buf,
                          have[BSC] ? (const float *)b[BSC].buf : NULL, mul, kk,
                          (double *)b[BE].buf, (int64_t *)b[BI].buf};
        int err = 0;
        Py_BEGIN_ALLOW_THREADS
        err = vn_planes_rank(&a, q0, q1, isa);
        Py_END_ALLOW_THREADS
        if (err) PyErr_NoMemory();
        else rc = 0;
    }
done:
    return vn_finish(b, have, NBUF, rc);
}

PyDoc_STRVAR(planes_rescore_doc,
"planes_rescore(kept, sign, tail, n, low, nb1, bits, rtables, rqs, rlv, scale, xn, qn, fin_s,"
" fin_i, fin_n, q0, q1, isa)\n--\n\n"
"The rescore of queries q0:q1's kept rows (int64 (nq, kk), -1: none): sign uint8 (nblocks,\n"
"nb1 * 32) blocked 1-bit rows with tail (1, nb1 * 32) or None, low uint8 (n, (bits - 1)\n"
"nb1); float tables rtables (nq, 2 nb, 16), or rqs (nq, 2 nb) with rlv (16,); scale, xn\n"
"float32 (n,) or None, qn (nq,) with xn; the k best into fin_s float32 (nq, k), fin_i\n"
"int64 (nq, k), fin_n int64 (nq,). Runs without the GIL.");

static PyObject *py_planes_rescore(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *ok, *osg, *ot, *ol, *ort, *orq, *orl, *osc, *oxn, *oqn, *ofs, *ofi, *ofn;
    Py_ssize_t n, nb1, bits, q0, q1;
    int isa;
    if (!PyArg_ParseTuple(args, "OOOnOnnOOOOOOOOOnni:planes_rescore", &ok, &osg, &ot, &n, &ol,
                          &nb1, &bits, &ort, &orq, &orl, &osc, &oxn, &oqn, &ofs, &ofi, &ofn,
                          &q0, &q1, &isa))
        return NULL;
    if (vn_check_isa(isa) < 0) return NULL;
    enum { BK, BSG, BT, BL, BRT, BRQ, BRL, BSC, BXN, BQN, BFS, BFI, BFN, NBUF };
    Py_buffer b[NBUF];
    int have[NBUF] = {0}, rc = -1;
    static const vn_buf_spec spec[NBUF] = {
        {"kept", K_I64, 2, 0, 0},    {"sign", K_U8, 2, 0, 0},   {"tail", K_U8, 2, 0, 1},
        {"low", K_U8, 2, 0, 0},      {"rtables", K_F32, 3, 0, 1}, {"rqs", K_F32, 2, 0, 1},
        {"rlv", K_F32, 1, 0, 1},     {"scale", K_F32, 1, 0, 1}, {"xn", K_F32, 1, 0, 1},
        {"qn", K_F32, 1, 0, 1},      {"fin_s", K_F32, 2, 1, 0}, {"fin_i", K_I64, 2, 1, 0},
        {"fin_n", K_I64, 1, 1, 0}};
    PyObject *const objs[NBUF] = {ok, osg, ot, ol, ort, orq, orl, osc, oxn, oqn, ofs, ofi, ofn};
    if (vn_get_buffers(objs, spec, NBUF, b, have) < 0) goto done;
    {
        const Py_ssize_t nq = b[BK].shape[0], kk = b[BK].shape[1], k = b[BFS].shape[1];
        if ((bits != 2 && bits != 4) || nb1 < 1 || b[BSG].shape[1] != 32 * nb1 ||
            b[BL].shape[1] != (bits - 1) * nb1 || b[BL].shape[0] < n ||
            (have[BT] ? (b[BT].shape[0] != 1 || b[BT].shape[1] != 32 * nb1 ||
                         n / 32 > b[BSG].shape[0])
                      : n > 32 * b[BSG].shape[0])) {
            PyErr_Format(g_err_dim, "planes_rescore: the planes do not hold n = %zd rows of "
                         "nb1 = %zd bytes at %zd bits", n, nb1, bits);
            goto done;
        }
        if (have[BRT] == have[BRQ] || have[BRQ] != have[BRL] || have[BXN] != have[BQN]) {
            PyErr_SetString(g_err_arg, "planes_rescore needs rtables, or rqs with rlv; xn "
                            "with qn");
            goto done;
        }
        const Py_ssize_t m = have[BRT] ? b[BRT].shape[1] : b[BRQ].shape[1];
        if (m % 2 || m < 2 || m > 2 * bits * nb1 ||
            (have[BRT] && (b[BRT].shape[0] != nq || b[BRT].shape[2] != 16)) ||
            (have[BRQ] && (b[BRQ].shape[0] != nq || b[BRL].shape[0] != 16)) ||
            (have[BSC] && b[BSC].shape[0] < n) || (have[BXN] && b[BXN].shape[0] < n) ||
            (have[BQN] && b[BQN].shape[0] != nq) || b[BFS].shape[0] != nq ||
            b[BFI].shape[0] != nq || b[BFI].shape[1] != k || b[BFN].shape[0] != nq) {
            PyErr_Format(g_err_dim, "planes_rescore: shapes disagree (nq = %zd, kk = %zd, k = "
                         "%zd, %zd sub-codes for nb1 = %zd)", nq, kk, k, m, nb1);
            goto done;
        }
        const int64_t *kept = (const int64_t *)b[BK].buf;
        if (vn_query_range(q0, q1, nq) < 0 || vn_rows_in(kept, q0 * kk, q1 * kk, n, "kept") < 0 ||
            vn_apart(b, have, NBUF, BFS, BFN, "fin_s, fin_i and fin_n must not share memory "
                     "with each other or with the inputs") < 0)
            goto done;
        vn_prs_args a = {kept, kk, (const uint8_t *)b[BSG].buf,
                         have[BT] ? (const uint8_t *)b[BT].buf : NULL, n, nb1, bits,
                         (const uint8_t *)b[BL].buf,
                         {have[BRT] ? (const float *)b[BRT].buf : NULL,
                          have[BRQ] ? (const float *)b[BRQ].buf : NULL,
                          have[BRL] ? (const float *)b[BRL].buf : NULL, m / 2},
                         have[BSC] ? (const float *)b[BSC].buf : NULL,
                         have[BXN] ? (const float *)b[BXN].buf : NULL,
                         have[BQN] ? (const float *)b[BQN].buf : NULL, k,
                         (float *)b[BFS].buf, (int64_t *)b[BFI].buf, (int64_t *)b[BFN].buf};
        int err = 0;
        Py_BEGIN_ALLOW_THREADS
        err = vn_planes_rescore(&a, q0, q1, isa);
        Py_END_ALLOW_THREADS
        if (err) PyErr_NoMemory();
        else rc = 0;
    }
done:
    return vn_finish(b, have, NBUF, rc);
}

PyMethodDef vn_planes_methods[] = {
    {"planes_rank", py_planes_rank, METH_VARARGS, planes_rank_doc},
    {"planes_rescore", py_planes_rescore, METH_VARARGS, planes_rescore_doc},
    {NULL, NULL, 0, NULL}};
