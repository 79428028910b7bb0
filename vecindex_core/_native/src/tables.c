/* Per-query lookup tables of the fast scan: the native twins of the numba kernels
 * vecindex_core._kernels.fastscan._quantize (float tables -> uint8 tables) and
 * ._pq_nibble (product-quantizer nibble tables). Python wrapper: ../tables.py. Also the
 * queries' (and rows') rotation, the twin of vecindex_core._kernels.rotation._rotate_few.
 *
 * Both compute exactly what their references compute, so the tables are identical bit for
 * bit (the tests compare them, and the scans that read them):
 *
 * - quantize_luts, per query over its m tables of 16 float32 entries T[t, c]:
 *       lo_t = min_c T[t, c], hi_t = max_c T[t, c]           (numba's min / max)
 *       span = max_t (hi_t - lo_t); bias = float32(sum_t double(lo_t)) (t increasing)
 *       mult = 2**100 if 0 < span < 2**-100 else 1; dl = (span * mult) / 127;
 *       dl = 1 unless dl > 0; delta = dl / mult; inv = 1 / dl
 *       Q[t, c] = (uint8) min(max(((T[t, c] - lo_t) * mult) * inv + 0.5, 0), 127)
 *   The AVX2 path takes lo_t / hi_t with vector min / max. Over finite entries min and max
 *   do not depend on the order but for the sign of a zero result, and a zero's sign changes
 *   none of the outputs (+0 - -0 and +0 - +0 are both +0 after the +0.5 and the
 *   truncation; the double sum of the minima starts at +0, to which adding -0 leaves +0;
 *   the span starts at +0 and only grows). A query with a non-finite entry or span is done
 *   by the scalar code (numba's exact order, NaN included: a NaN value converts to 0, as
 *   the x86 conversion numba emits does).
 * - pq_nibble, per query: S[j, c] = sum_e q[j dsub + e] * B[j, e, c] (or, with l2,
 *   -sum_e (q[j dsub + e] - B[j, e, c])^2), float32, e increasing from +0 (coordinates past
 *   d are 0), B the codebooks transposed to (m, dsub, ksub); then the nibble tables
 *       per 1 (4-bit): T[t, c] = S[t, c]
 *       per 2 (2-bit): T[t, c] = S[2t, c & 3] + S[2t + 1, c >> 2]
 *       per 4 (1-bit): T[t, c] = ((S[4t, c & 1] + S[4t + 1, (c >> 1) & 1])
 *                                 + S[4t + 2, (c >> 2) & 1]) + S[4t + 3, c >> 3]
 *   with S rows past m zero. The AVX2 path vectorises over c (ksub = 16: two vectors), the
 *   same operations in the same order (no contraction: -ffp-contract=off, setup.py).
 * - tq_luts, per query (turboquant's codes, one codebook lv of 2**bits levels for every
 *   coordinate; the twin of fastscan._tables followed by quantize_luts): P[j, c] =
 *   rq[j] * lv[c] in float32 (+0 past d), combined into T as pq_nibble combines S, then
 *   quantized as above; one call where the tables and their quantization took two (and,
 *   given the rotation, the query's rotation as rotate computes it, a third). With
 *   additive (2-bit codes), the uint8 tables are quantized per coordinate instead
 *   (fastscan._quantize_parts, see tb_parts_seq): each pair table is the exact sum of its
 *   two coordinates' entries (at most 42 each), which lut.c's triple route relies on.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "native.h"
#include "pyglue.h"

#if VN_X86
#include <immintrin.h>
#endif

#define VN_TB_LUTMAX 127.0f
/* additive 2-bit tables: the largest per-coordinate entry (fastscan.PART_MAX) */
#define VN_TB_PARTMAX 42.0f

/* ---------------------------------------------------------------- quantize_luts */
/* Range of one 16-entry table in numba's sequential order (min(a, b) = b < a ? b : a). */
static inline void tb_range_seq(const float *t, float *lo, float *hi) {
    float l = t[0], h = t[0];
    for (int c = 1; c < 16; c++) {
        const float v = t[c];
        l = v < l ? v : l;
        h = v > h ? v : h;
    }
    *lo = l;
    *hi = h;
}

static inline uint8_t tb_quant1(float v, float lo, float mult, float inv, float top) {
    float x = ((v - lo) * mult) * inv + 0.5f;
    x = 0.0f > x ? 0.0f : x;
    x = top < x ? top : x;
    return x == x ? (uint8_t)(int32_t)x : 0; /* NaN: 0, as cvttss2si's 0x80000000 */
}

/* The step of a query's tables from their largest span (entries up to top): writes delta,
 * sets *mult (2**100 for a span below 2**-100, else 1) and returns inv = 1 / dl. */
static inline float tb_step(float span, float top, float *mult, float *delta) {
    *mult = (0.0f < span && span < 0x1p-100f) ? 0x1p100f : 1.0f;
    float dl = (span * *mult) / top;
    if (!(dl > 0.0f)) dl = 1.0f;
    *delta = dl / *mult;
    return 1.0f / dl;
}

/* The scalar quantization of one query (the reference, step for step). */
static void tb_quantize_seq(const float *tq, ptrdiff_t m, uint8_t *lq, float *bias,
                            float *delta) {
    float span = 0.0f, lo, hi;
    double total = 0.0;
    for (ptrdiff_t t = 0; t < m; t++) {
        tb_range_seq(tq + 16 * t, &lo, &hi);
        total += (double)lo;
        const float d = hi - lo;
        span = d > span ? d : span;
    }
    float mult;
    const float inv = tb_step(span, VN_TB_LUTMAX, &mult, delta);
    *bias = (float)total;
    for (ptrdiff_t t = 0; t < m; t++) {
        tb_range_seq(tq + 16 * t, &lo, &hi);
        for (int c = 0; c < 16; c++)
            lq[16 * t + c] = tb_quant1(tq[16 * t + c], lo, mult, inv, VN_TB_LUTMAX);
    }
}

#if VN_X86
__attribute__((target("avx2"), always_inline)) static inline float tb_hmin(__m256 v) {
    __m128 x = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_min_ps(x, _mm_movehl_ps(x, x));
    x = _mm_min_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}

__attribute__((target("avx2"), always_inline)) static inline float tb_hmax(__m256 v) {
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}

/* One query; 0 when done, -1 (nothing written) when an entry or the span is not finite. */
__attribute__((target("avx2"))) static int tb_quantize_avx2(const float *tq, ptrdiff_t m,
                                                            uint8_t *lq, float *bias,
                                                            float *delta) {
    const __m256 zero = _mm256_setzero_ps();
    __m256 bad = zero;
    float span = 0.0f;
    double total = 0.0;
    for (ptrdiff_t t = 0; t < m; t++) {
        const __m256 a = _mm256_loadu_ps(tq + 16 * t), b = _mm256_loadu_ps(tq + 16 * t + 8);
        /* x - x is NaN exactly for inf and NaN */
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_sub_ps(a, a), _mm256_sub_ps(b, b),
                                              _CMP_UNORD_Q));
        const float lo = tb_hmin(_mm256_min_ps(a, b)), hi = tb_hmax(_mm256_max_ps(a, b));
        total += (double)lo;
        const float d = hi - lo;
        span = d > span ? d : span;
    }
    if (_mm256_movemask_ps(bad) || !(span - span == 0.0f)) return -1;
    float mult;
    const float inv = tb_step(span, VN_TB_LUTMAX, &mult, delta);
    *bias = (float)total;
    const __m256 vm = _mm256_set1_ps(mult), vi = _mm256_set1_ps(inv);
    const __m256 half = _mm256_set1_ps(0.5f), top = _mm256_set1_ps(VN_TB_LUTMAX);
    for (ptrdiff_t t = 0; t < m; t++) {
        const __m256 a = _mm256_loadu_ps(tq + 16 * t), b = _mm256_loadu_ps(tq + 16 * t + 8);
        const __m256 lo = _mm256_set1_ps(tb_hmin(_mm256_min_ps(a, b)));
        /* finite, so max / min here agree with numba's (up to a zero's sign) */
        __m256 xa = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(a, lo), vm), vi),
                                  half);
        __m256 xb = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(b, lo), vm), vi),
                                  half);
        xa = _mm256_min_ps(_mm256_max_ps(xa, zero), top);
        xb = _mm256_min_ps(_mm256_max_ps(xb, zero), top);
        __m256i p = _mm256_packs_epi32(_mm256_cvttps_epi32(xa), _mm256_cvttps_epi32(xb));
        p = _mm256_permute4x64_epi64(p, 0xD8); /* c0-3, c4-7, c8-11, c12-15 as int16 */
        _mm_storeu_si128((__m128i *)(lq + 16 * t),
                         _mm_packus_epi16(_mm256_castsi256_si128(p),
                                          _mm256_extracti128_si256(p, 1)));
    }
    return 0;
}
#endif

/* Queries [q0, q1) of tables (nq, m, 16) into luts (nq, m * 16), bias and delta (nq,). */
static void vn_quantize_luts(const float *tables, ptrdiff_t m, uint8_t *luts, float *bias,
                             float *delta, ptrdiff_t q0, ptrdiff_t q1, int isa) {
    for (ptrdiff_t q = q0; q < q1; q++) {
        const float *tq = tables + q * m * 16;
        uint8_t *lq = luts + q * m * 16;
#if VN_X86
        if (isa != VN_PORTABLE && tb_quantize_avx2(tq, m, lq, bias + q, delta + q) == 0)
            continue;
#else
        (void)isa;
#endif
        tb_quantize_seq(tq, m, lq, bias + q, delta + q);
    }
}

/* ---------------------------------------------------------------- nibble tables */
/* Nibble table t (16 entries, ot) from the per-code tables s (per rows of K = 2**bits
 * entries, the codes of nibble t), in the references' order (see the top of this file). */
static inline void tb_combine(const float *s, ptrdiff_t K, int per, float *ot) {
    if (per == 1) {
        memcpy(ot, s, sizeof(float) * 16);
    } else if (per == 2) {
        const float *p0 = s, *p1 = p0 + K;
        for (int c = 0; c < 16; c++) ot[c] = p0[c & 3] + p1[c >> 2];
    } else {
        const float *p0 = s, *p1 = p0 + K, *p2 = p1 + K, *p3 = p2 + K;
        for (int c = 0; c < 16; c++)
            ot[c] = ((p0[c & 1] + p1[(c >> 1) & 1]) + p2[(c >> 2) & 1]) + p3[c >> 3];
    }
}

/* ---------------------------------------------------------------- pq_nibble */
typedef struct {
    const float *q;       /* (nq, d) */
    const float *books_t; /* (m, dsub, ksub) */
    ptrdiff_t d, m, dsub, ksub, nsub;
    int l2, per;          /* per = 4 / bits; ksub = 1 << bits */
    float *out;           /* (nq, nsub, 16) */
    uint8_t *luts;        /* (nq, nsub / 2, 32) and bias, delta (nq,): the tables quantized */
    float *bias, *delta;  /* in the same call (quantize_luts), or NULL */
} vn_pq_args;

/* S[j, c] of one query into s (m, ksub), the reference's loops. */
static void pq_sub_seq(const vn_pq_args *a, const float *qr, float *s) {
    const ptrdiff_t K = a->ksub;
    for (ptrdiff_t j = 0; j < a->m; j++) {
        float *acc = s + j * K;
        for (ptrdiff_t c = 0; c < K; c++) acc[c] = 0.0f;
        for (ptrdiff_t e = 0; e < a->dsub; e++) {
            const ptrdiff_t col = j * a->dsub + e;
            const float v = col < a->d ? qr[col] : 0.0f;
            const float *b = a->books_t + col * K;
            if (a->l2) {
                for (ptrdiff_t c = 0; c < K; c++) {
                    const float t = v - b[c];
                    acc[c] += t * t;
                }
            } else {
                for (ptrdiff_t c = 0; c < K; c++) acc[c] += v * b[c];
            }
        }
        if (a->l2)
            for (ptrdiff_t c = 0; c < K; c++) acc[c] = -acc[c];
    }
}

#if VN_X86
/* Sub-quantizer j's sums over e into s0 (c 0-7) and s1 (c 8-15). */
#define PQ16_STEP(j, s0, s1)                                                            \
    do {                                                                                \
        const ptrdiff_t col = (j) * a->dsub + e;                                        \
        const __m256 v = _mm256_set1_ps(col < a->d ? qr[col] : 0.0f);                  \
        const float *b = a->books_t + col * 16;                                         \
        __m256 t0 = _mm256_loadu_ps(b), t1 = _mm256_loadu_ps(b + 8);                    \
        if (a->l2) {                                                                    \
            t0 = _mm256_sub_ps(v, t0);                                                  \
            t1 = _mm256_sub_ps(v, t1);                                                  \
            s0 = _mm256_add_ps(s0, _mm256_mul_ps(t0, t0));                              \
            s1 = _mm256_add_ps(s1, _mm256_mul_ps(t1, t1));                              \
        } else {                                                                        \
            s0 = _mm256_add_ps(s0, _mm256_mul_ps(v, t0));                               \
            s1 = _mm256_add_ps(s1, _mm256_mul_ps(v, t1));                               \
        }                                                                               \
    } while (0)

__attribute__((target("avx2"), always_inline)) static inline void pq16_store(
    const vn_pq_args *a, float *s, ptrdiff_t j, __m256 s0, __m256 s1) {
    if (a->l2) {
        const __m256 sign = _mm256_set1_ps(-0.0f);
        s0 = _mm256_xor_ps(s0, sign);
        s1 = _mm256_xor_ps(s1, sign);
    }
    _mm256_storeu_ps(s + 16 * j, s0);
    _mm256_storeu_ps(s + 16 * j + 8, s1);
}

/* pq_sub_seq for ksub = 16: two vectors per sub-quantizer, two sub-quantizers at a time
 * (independent sums: the adds of one overlap the other's). */
__attribute__((target("avx2"))) static void pq_sub16_avx2(const vn_pq_args *a,
                                                          const float *qr, float *s) {
    ptrdiff_t j = 0;
    for (; j + 1 < a->m; j += 2) {
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (ptrdiff_t e = 0; e < a->dsub; e++) {
            PQ16_STEP(j, s0, s1);
            PQ16_STEP(j + 1, s2, s3);
        }
        pq16_store(a, s, j, s0, s1);
        pq16_store(a, s, j + 1, s2, s3);
    }
    if (j < a->m) {
        __m256 s0 = _mm256_setzero_ps(), s1 = s0;
        for (ptrdiff_t e = 0; e < a->dsub; e++) PQ16_STEP(j, s0, s1);
        pq16_store(a, s, j, s0, s1);
    }
}
#endif

/* Queries [q0, q1); s: scratch of (nsub * per, ksub) floats. */
static void vn_pq_nibble(const vn_pq_args *a, float *s, ptrdiff_t q0, ptrdiff_t q1, int isa) {
    const ptrdiff_t K = a->ksub, rows = a->nsub * a->per;
    memset(s, 0, sizeof(float) * (size_t)(rows * K)); /* rows past m stay 0 */
    for (ptrdiff_t q = q0; q < q1; q++) {
        const float *qr = a->q + q * a->d;
        float *o = a->out + q * a->nsub * 16;
#if VN_X86
        if (isa != VN_PORTABLE && K == 16) pq_sub16_avx2(a, qr, s);
        else pq_sub_seq(a, qr, s);
#else
        (void)isa;
        pq_sub_seq(a, qr, s);
#endif
        for (ptrdiff_t t = 0; t < a->nsub; t++)
            tb_combine(s + K * a->per * t, K, a->per, o + 16 * t);
        if (a->luts)
            vn_quantize_luts(a->out, a->nsub, a->luts, a->bias, a->delta, q, q + 1, isa);
    }
}

/* ---------------------------------------------------------------- Python */
/* luts (nq, m / 2, 32), bias and delta (nq,): checked; raises. */
static int tb_check_luts(const Py_buffer *bl, const Py_buffer *bb, const Py_buffer *bd,
                         Py_ssize_t nq, Py_ssize_t m) {
    if (bl->shape[0] == nq && bl->shape[1] == m / 2 && bl->shape[2] == 32 &&
        bb->shape[0] == nq && bd->shape[0] == nq)
        return 0;
    PyErr_Format(g_err_dim, "luts must be (%zd, %zd, 32) and bias, delta (%zd,), got (%zd, "
                 "%zd, %zd), (%zd,), (%zd,)", nq, m / 2, nq, bl->shape[0], bl->shape[1],
                 bl->shape[2], bb->shape[0], bd->shape[0]);
    return -1;
}

PyDoc_STRVAR(quantize_luts_doc,
"quantize_luts(tables, luts, bias, delta, q0, q1, isa)\n--\n\n"
"uint8 fast-scan tables of queries q0:q1 (the native fastscan._quantize): tables float32\n"
"(nq, m, 16), m even; luts uint8 (nq, m // 2, 32), bias and delta float32 (nq,) are\n"
"written. Runs without the GIL; see vecindex_core._native.tables.");

static PyObject *py_quantize_luts(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *ot, *ol, *ob, *od;
    Py_ssize_t q0, q1;
    int isa;
    if (!PyArg_ParseTuple(args, "OOOOnni:quantize_luts", &ot, &ol, &ob, &od, &q0, &q1, &isa))
        return NULL;
    if (vn_check_isa(isa) < 0) return NULL;
    Py_buffer bt, bl, bb, bd;
    int rc = -1;
    if (vn_get_buffer(ot, &bt, "tables", K_F32, 3, 0) < 0) return NULL;
    if (vn_get_buffer(ol, &bl, "luts", K_U8, 3, 1) < 0) goto rel_t;
    if (vn_get_buffer(ob, &bb, "bias", K_F32, 1, 1) < 0) goto rel_l;
    if (vn_get_buffer(od, &bd, "delta", K_F32, 1, 1) < 0) goto rel_b;
    {
        const Py_ssize_t nq = bt.shape[0], m = bt.shape[1];
        if (bt.shape[2] != 16 || m % 2) {
            PyErr_Format(g_err_dim, "tables must be (nq, m, 16) with m even, got (%zd, %zd, "
                         "%zd)", nq, m, bt.shape[2]);
            goto rel_d;
        }
        if (tb_check_luts(&bl, &bb, &bd, nq, m) < 0) goto rel_d;
        const Py_buffer *const all[] = {&bt, &bl, &bb, &bd};
        for (int x = 0; x < 4; x++)
            for (int y = x + 1; y < 4; y++)
                if (vn_overlap(all[x], all[y])) {
                    PyErr_SetString(g_err_arg, "tables, luts, bias and delta must not share "
                                    "memory");
                    goto rel_d;
                }
        if (vn_query_range(q0, q1, nq) < 0) goto rel_d;
        Py_BEGIN_ALLOW_THREADS
        vn_quantize_luts((const float *)bt.buf, m, (uint8_t *)bl.buf, (float *)bb.buf,
                         (float *)bd.buf, q0, q1, isa);
        Py_END_ALLOW_THREADS
        rc = 0;
    }
rel_d:
    PyBuffer_Release(&bd);
rel_b:
    PyBuffer_Release(&bb);
rel_l:
    PyBuffer_Release(&bl);
rel_t:
    PyBuffer_Release(&bt);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(pq_nibble_doc,
"pq_nibble(q, books_t, l2, bits, out, q0, q1, isa, luts=None, bias=None, delta=None)\n"
"--\n\n"
"Product-quantizer nibble tables of queries q0:q1 (the native fastscan._pq_nibble): q\n"
"float32 (nq, d); books_t float32 (m, dsub, 2**bits), d <= m * dsub; out float32\n"
"(nq, nsub, 16), nsub = 2 ceil(m bits / 8), written; with luts uint8 (nq, nsub / 2, 32),\n"
"bias and delta float32 (nq,), also their quantization (as quantize_luts). Runs without\n"
"the GIL; see vecindex_core._native.tables.");

static PyObject *py_pq_nibble(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *oq, *obk, *oo, *ol = Py_None, *ob = Py_None, *od = Py_None;
    Py_ssize_t q0, q1;
    int l2, bits, isa;
    if (!PyArg_ParseTuple(args, "OOpiOnni|OOO:pq_nibble", &oq, &obk, &l2, &bits, &oo, &q0,
                          &q1, &isa, &ol, &ob, &od))
        return NULL;
    const int quantize = ol != Py_None || ob != Py_None || od != Py_None;
    if (vn_check_isa(isa) < 0) return NULL;
    if (bits != 1 && bits != 2 && bits != 4) {
        PyErr_Format(g_err_arg, "bits must be 1, 2 or 4, got %d", bits);
        return NULL;
    }
    enum { BQ, BK, BO, BL, BB, BD, NBUF };
    Py_buffer b[NBUF];
    int have[NBUF] = {0}, rc = -1;
    static const vn_buf_spec spec[NBUF] = {
        {"q", K_F32, 2, 0, 0},    {"books_t", K_F32, 3, 0, 0}, {"out", K_F32, 3, 1, 0},
        {"luts", K_U8, 3, 1, 0}, {"bias", K_F32, 1, 1, 0},    {"delta", K_F32, 1, 1, 0}};
    PyObject *const objs[NBUF] = {oq, obk, oo, ol, ob, od};
    if (vn_get_buffers(objs, spec, quantize ? NBUF : BL, b, have) < 0) goto done;
    {
        vn_pq_args a;
        const Py_ssize_t nq = b[BQ].shape[0];
        a.d = b[BQ].shape[1];
        a.m = b[BK].shape[0];
        a.dsub = b[BK].shape[1];
        a.ksub = b[BK].shape[2];
        a.l2 = l2;
        a.per = 4 / bits;
        if (a.ksub != (Py_ssize_t)1 << bits || a.m < 1 || a.dsub < 1 ||
            a.d > a.m * a.dsub) {
            PyErr_Format(g_err_dim, "books_t must be (m, dsub, %d) with m, dsub >= 1 and "
                         "m * dsub >= d = %zd, got (%zd, %zd, %zd)", 1 << bits, a.d, a.m,
                         a.dsub, a.ksub);
            goto done;
        }
        a.nsub = 2 * ((a.m * bits + 7) / 8);
        const Py_buffer *bo = &b[BO];
        if (bo->shape[0] != nq || bo->shape[1] != a.nsub || bo->shape[2] != 16) {
            PyErr_Format(g_err_dim, "out must be (%zd, %zd, 16), got (%zd, %zd, %zd)", nq,
                         a.nsub, bo->shape[0], bo->shape[1], bo->shape[2]);
            goto done;
        }
        if (quantize && tb_check_luts(&b[BL], &b[BB], &b[BD], nq, a.nsub) < 0) goto done;
        if (vn_apart(b, have, NBUF, BO, BD, "out, luts, bias and delta must not share memory "
                     "with each other or with q or books_t") < 0)
            goto done;
        if (vn_query_range(q0, q1, nq) < 0) goto done;
        a.q = (const float *)b[BQ].buf;
        a.books_t = (const float *)b[BK].buf;
        a.out = (float *)b[BO].buf;
        a.luts = quantize ? (uint8_t *)b[BL].buf : NULL;
        a.bias = quantize ? (float *)b[BB].buf : NULL;
        a.delta = quantize ? (float *)b[BD].buf : NULL;
        float *s = NULL;
        if (q1 > q0) {
            s = (float *)malloc(sizeof(float) * (size_t)(a.nsub * a.per * a.ksub));
            if (!s) {
                PyErr_NoMemory();
                goto done;
            }
            Py_BEGIN_ALLOW_THREADS
            vn_pq_nibble(&a, s, q0, q1, isa);
            Py_END_ALLOW_THREADS
        }
        free(s);
        rc = 0;
    }
done:
    return vn_finish(b, have, NBUF, rc);
}

/* ---------------------------------------------------------------- rotate */
/* Normalised Walsh-Hadamard transform of b[0 .. p - 1] in place: the additions of
 * rotation._fwht_1d in the same order per element (stages h = 1, 2, 4 of each group of
 * eight in registers, then h = 8, 16, ...: u + v, u - v), then every entry times norm.
 * Elements of one stage are independent, so vector loops give the same float32 results. */
#define VN_RT_FWHT_GROUPS                                                                 \
    for (ptrdiff_t s = 0; s < p; s += 8) {                                                \
        float *g = b + s;                                                                 \
        const float b0 = g[0] + g[1], b1 = g[0] - g[1], b2 = g[2] + g[3],                 \
                    b3 = g[2] - g[3], b4 = g[4] + g[5], b5 = g[4] - g[5],                 \
                    b6 = g[6] + g[7], b7 = g[6] - g[7];                                   \
        const float c0 = b0 + b2, c1 = b1 + b3, c2 = b0 - b2, c3 = b1 - b3,               \
                    c4 = b4 + b6, c5 = b5 + b7, c6 = b4 - b6, c7 = b5 - b7;               \
        g[0] = c0 + c4, g[1] = c1 + c5, g[2] = c2 + c6, g[3] = c3 + c7;                   \
        g[4] = c0 - c4, g[5] = c1 - c5, g[6] = c2 - c6, g[7] = c3 - c7;                   \
    }
/* GROUPS: the stages h = 1, 2, 4 of each group of eight (p >= 8) */
#define VN_RT_FWHT_BODY(GROUPS)                                                           \
    ptrdiff_t h = 1;                                                                      \
    if (p >= 8) {                                                                         \
        GROUPS                                                                            \
        h = 8;                                                                            \
    }                                                                                     \
    for (; h < p; h *= 2)                                                                 \
        for (ptrdiff_t s = 0; s < p; s += 2 * h) {                                        \
            float *restrict lo = b + s, *restrict hi = b + s + h;                         \
            for (ptrdiff_t j = 0; j < h; j++) {                                           \
                const float u = lo[j], v = hi[j];                                         \
                lo[j] = u + v;                                                            \
                hi[j] = u - v;                                                            \
            }                                                                             \
        }                                                                                 \
    for (ptrdiff_t j = 0; j < p; j++) b[j] *= norm;

/* Rows r0:r1 of x (n, dim) rotated into out: rotation._rotate_few's steps (per round:
 * signs D1, H on the leading p, signs D2, H on the trailing p unless p == dim, the
 * permutation), so the same float32 results. buf, tmp: dim floats each. */
#define VN_RT_ROTATE_BODY(fwht)                                                           \
    for (ptrdiff_t i = r0; i < r1; i++) {                                                 \
        float *bb = buf, *t = tmp;                                                        \
        memcpy(bb, x + i * dim, sizeof(float) * (size_t)dim);                             \
        for (ptrdiff_t r = 0; r < rounds; r++) {                                          \
            const float *s1 = signs + 2 * r * dim, *s2 = s1 + dim;                        \
            const int64_t *pr = perms + r * dim;                                          \
            for (ptrdiff_t j = 0; j < dim; j++) bb[j] *= s1[j];                           \
            if (p > 1) fwht(bb, p, norm);                                                 \
            for (ptrdiff_t j = 0; j < dim; j++) bb[j] *= s2[j];                           \
            if (p > 1 && p != dim) fwht(bb + dim - p, p, norm);                           \
            for (ptrdiff_t j = 0; j < dim; j++) t[j] = bb[pr[j]];                         \
            float *sw = bb;                                                               \
            bb = t;                                                                       \
            t = sw;                                                                       \
        }                                                                                 \
        memcpy(out + i * dim, bb, sizeof(float) * (size_t)dim);                           \
    }

#define VN_RT_ARGS                                                                        \
    const float *x, ptrdiff_t dim, const float *signs, const int64_t *perms,              \
        ptrdiff_t rounds, ptrdiff_t p, float norm, float *out, ptrdiff_t r0, ptrdiff_t r1, \
        float *buf, float *tmp

static void rt_fwht(float *b, ptrdiff_t p, float norm) { VN_RT_FWHT_BODY(VN_RT_FWHT_GROUPS) }
static void rotate_portable(VN_RT_ARGS) { VN_RT_ROTATE_BODY(rt_fwht) }

#if VN_X86
/* The same code, vector loops 8 wide (AVX2 has no fused multiply-add: same results), and
 * the stages h = 1, 2, 4 of a group of eight in one register: each stage adds the element
 * and its partner (the lanes that keep u + v) and subtracts the element from its partner
 * (the lanes that keep u - v: the same operands in the same order as the scalar code), then
 * blends (a 384-d query's rotation 2.0 -> 1.4 us). */
#define VN_RT_FWHT_GROUPS_AVX2                                                            \
    for (ptrdiff_t s = 0; s < p; s += 8) {                                                \
        __m256 x = _mm256_loadu_ps(b + s), y = _mm256_permute_ps(x, 0xB1); /* h = 1 */    \
        x = _mm256_blend_ps(_mm256_add_ps(x, y), _mm256_sub_ps(y, x), 0xAA);              \
        y = _mm256_permute_ps(x, 0x4E); /* h = 2 */                                       \
        x = _mm256_blend_ps(_mm256_add_ps(x, y), _mm256_sub_ps(y, x), 0xCC);              \
        y = _mm256_permute2f128_ps(x, x, 1); /* h = 4 */                                  \
        x = _mm256_blend_ps(_mm256_add_ps(x, y), _mm256_sub_ps(y, x), 0xF0);              \
        _mm256_storeu_ps(b + s, x);                                                       \
    }
__attribute__((target("avx2"))) static void rt_fwht_avx2(float *b, ptrdiff_t p, float norm) {
    VN_RT_FWHT_BODY(VN_RT_FWHT_GROUPS_AVX2)
}
__attribute__((target("avx2"))) static void rotate_avx2(VN_RT_ARGS) {
    VN_RT_ROTATE_BODY(rt_fwht_avx2)
}
#endif

static void vn_rotate(VN_RT_ARGS, int isa) {
#if VN_X86
    if (isa != VN_PORTABLE) {
        rotate_avx2(x, dim, signs, perms, rounds, p, norm, out, r0, r1, buf, tmp);
        return;
    }
#endif
    (void)isa;
    rotate_portable(x, dim, signs, perms, rounds, p, norm, out, r0, r1, buf, tmp);
}

/* The rotation's signs (rounds, 2, dim), perms (rounds, dim) and p checked; raises. */
static int rt_check(const Py_buffer *bs, const Py_buffer *bp, Py_ssize_t dim, Py_ssize_t p) {
    const Py_ssize_t rounds = bs->shape[0];
    if (bs->shape[1] != 2 || bs->shape[2] != dim || bp->shape[0] != rounds ||
        bp->shape[1] != dim) {
        PyErr_Format(g_err_dim, "signs must be (rounds, 2, %zd) and perms (rounds, %zd), got "
                     "(%zd, %zd, %zd) and (%zd, %zd)", dim, dim, bs->shape[0], bs->shape[1],
                     bs->shape[2], bp->shape[0], bp->shape[1]);
        return -1;
    }
    if (dim < 1 || p < 1 || p > dim || (p & (p - 1)) || 2 * p <= dim) {
        PyErr_Format(g_err_arg, "p must be the largest power of two <= dim = %zd, got %zd",
                     dim, p);
        return -1;
    }
    const int64_t *pr = (const int64_t *)bp->buf;
    for (Py_ssize_t t = 0; t < rounds * dim; t++)
        if (pr[t] < 0 || pr[t] >= dim) {
            PyErr_Format(g_err_arg, "perms entries must be in [0, %zd), got %lld", dim,
                         (long long)pr[t]);
            return -1;
        }
    return 0;
}

PyDoc_STRVAR(rotate_doc,
"rotate(x, signs, perms, p, norm, out, r0, r1, isa)\n--\n\n"
"Rows r0:r1 of x float32 (n, dim) rotated into out float32 (n, dim) (the native\n"
"rotation._rotate_few, the same float32 results): signs float32 (rounds, 2, dim), perms\n"
"int64 (rounds, dim) with entries in [0, dim), p the largest power of two <= dim, norm\n"
"float32 1 / sqrt(p). Runs without the GIL; see vecindex_core._kernels.rotation.");

static PyObject *py_rotate(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *ox, *os, *op, *oo;
    Py_ssize_t p, r0, r1;
    float norm;
    int isa;
    if (!PyArg_ParseTuple(args, "OOOnfOnni:rotate", &ox, &os, &op, &p, &norm, &oo, &r0, &r1,
                          &isa))
        return NULL;
    if (vn_check_isa(isa) < 0) return NULL;
    Py_buffer bx, bs, bp, bo;
    int rc = -1;
    if (vn_get_buffer(ox, &bx, "x", K_F32, 2, 0) < 0) return NULL;
    if (vn_get_buffer(os, &bs, "signs", K_F32, 3, 0) < 0) goto rel_x;
    if (vn_get_buffer(op, &bp, "perms", K_I64, 2, 0) < 0) goto rel_s;
    if (vn_get_buffer(oo, &bo, "out", K_F32, 2, 1) < 0) goto rel_p;
    {
        const Py_ssize_t n = bx.shape[0], dim = bx.shape[1], rounds = bs.shape[0];
        if (bo.shape[0] != n || bo.shape[1] != dim) {
            PyErr_Format(g_err_dim, "out must be (%zd, %zd), got (%zd, %zd)", n, dim,
                         bo.shape[0], bo.shape[1]);
            goto rel_o;
        }
        if (rt_check(&bs, &bp, dim, p) < 0) goto rel_o;
        const int64_t *pr = (const int64_t *)bp.buf;
        if (vn_overlap(&bo, &bx) || vn_overlap(&bo, &bs) || vn_overlap(&bo, &bp)) {
            PyErr_SetString(g_err_arg, "out must not share memory with x, signs or perms");
            goto rel_o;
        }
        if (r0 < 0 || r1 < r0 || r1 > n) {
            PyErr_Format(g_err_arg, "row range [%zd, %zd) is not within [0, %zd]", r0, r1, n);
            goto rel_o;
        }
        float *buf = (float *)malloc(sizeof(float) * 2 * (size_t)dim);
        if (!buf) {
            PyErr_NoMemory();
            goto rel_o;
        }
        Py_BEGIN_ALLOW_THREADS
        vn_rotate((const float *)bx.buf, dim, (const float *)bs.buf, pr, rounds, p, norm,
                  (float *)bo.buf, r0, r1, buf, buf + dim, isa);
        Py_END_ALLOW_THREADS
        free(buf);
        rc = 0;
    }
rel_o:
    PyBuffer_Release(&bo);
rel_p:
    PyBuffer_Release(&bp);
rel_s:
    PyBuffer_Release(&bs);
rel_x:
    PyBuffer_Release(&bx);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- tq_luts */
/* The seeded rotation of rotate, when given (the queries are then rotated first). */
typedef struct {
    const float *signs;
    const int64_t *perms;
    ptrdiff_t rounds, p;
    float norm;
} vn_rot;

#if VN_X86
/* The tables of vn_tq_luts whose coordinates are all below d, eight entries a vector: the
 * same float32 products and the same additions in the same order as tb_combine (entry c
 * of a table is lv[c & 3] r[2t] + lv[c >> 2] r[2t + 1] at 2 bits, ((lv[c & 1] r[4t] +
 * lv[c >> 1 & 1] r[4t + 1]) + ...) at 1 bit), so the same values. Returns how many tables
 * (from the first) it wrote. 2-bit tables and their quantization, 500 queries: 2.7 -> 1.5 us a
 * query. */
__attribute__((target("avx2"))) static ptrdiff_t tb_tables_avx2(const float *r, ptrdiff_t d,
                                                                const float *lv, int bits,
                                                                ptrdiff_t m, float *o) {
    const int per = 4 / bits;
    ptrdiff_t full = d / per; /* tables whose coordinates are all below d */
    if (full > m) full = m;
    if (bits == 4) {
        const __m256 l0 = _mm256_loadu_ps(lv), l1 = _mm256_loadu_ps(lv + 8);
        for (ptrdiff_t t = 0; t < full; t++) {
            const __m256 a = _mm256_set1_ps(r[t]);
            _mm256_storeu_ps(o + 16 * t, _mm256_mul_ps(a, l0));
            _mm256_storeu_ps(o + 16 * t + 8, _mm256_mul_ps(a, l1));
        }
    } else if (bits == 2) { /* entries 0..7: lv[c & 3], lv[c >> 2] = lv[0 or 1] */
        const __m256 la = _mm256_setr_ps(lv[0], lv[1], lv[2], lv[3], lv[0], lv[1], lv[2], lv[3]);
        const __m256 lb0 = _mm256_setr_ps(lv[0], lv[0], lv[0], lv[0], lv[1], lv[1], lv[1], lv[1]);
        const __m256 lb1 = _mm256_setr_ps(lv[2], lv[2], lv[2], lv[2], lv[3], lv[3], lv[3], lv[3]);
        for (ptrdiff_t t = 0; t < full; t++) {
            const __m256 pa = _mm256_mul_ps(_mm256_set1_ps(r[2 * t]), la);
            const __m256 b = _mm256_set1_ps(r[2 * t + 1]);
            _mm256_storeu_ps(o + 16 * t, _mm256_add_ps(pa, _mm256_mul_ps(b, lb0)));
            _mm256_storeu_ps(o + 16 * t + 8, _mm256_add_ps(pa, _mm256_mul_ps(b, lb1)));
        }
    } else { /* bits 1: entries 0..7 take lv[c & 1], lv[c >> 1 & 1], lv[c >> 2 & 1], lv[0] */
        const float l0 = lv[0], l1 = lv[1];
        const __m256 v0 = _mm256_setr_ps(l0, l1, l0, l1, l0, l1, l0, l1);
        const __m256 v1 = _mm256_setr_ps(l0, l0, l1, l1, l0, l0, l1, l1);
        const __m256 v2 = _mm256_setr_ps(l0, l0, l0, l0, l1, l1, l1, l1);
        for (ptrdiff_t t = 0; t < full; t++) {
            const float *x = r + 4 * t;
            const __m256 s = _mm256_add_ps(
                _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(x[0]), v0),
                              _mm256_mul_ps(_mm256_set1_ps(x[1]), v1)),
                _mm256_mul_ps(_mm256_set1_ps(x[2]), v2));
            _mm256_storeu_ps(o + 16 * t, _mm256_add_ps(s, _mm256_set1_ps(x[3] * l0)));
            _mm256_storeu_ps(o + 16 * t + 8, _mm256_add_ps(s, _mm256_set1_ps(x[3] * l1)));
        }
    }
    return full;
}
#endif

/* ---------------------------------------------------------------- additive 2-bit tables */
/* The twin of fastscan._quantize_parts for one query: r its 4 nb coordinates (zeros past
 * d), lo scratch (4 nb floats). P[j, c] = r[j] * lv[c]; lo_j, hi_j their numba min / max
 * over c; span = max_j (hi_j - lo_j); bias = float32((s0 + s1) + (s2 + s3)), s_u the double
 * sum of lo_j over j = u mod 4 (increasing j); E[j, c] = quant(P[j, c], lo_j) <= 42; pair
 * table t: E[2t, c & 3] + E[2t + 1, c >> 2]. */
static void tb_parts_seq(const float *r, const float *lv, ptrdiff_t nb, uint8_t *lq,
                         float *bias, float *delta, float *lo) {
    float span = 0.0f;
    double part[4] = {0.0, 0.0, 0.0, 0.0};
    for (ptrdiff_t j = 0; j < 4 * nb; j++) {
        float l = r[j] * lv[0], h = l;
        for (int c = 1; c < 4; c++) {
            const float v = r[j] * lv[c];
            l = v < l ? v : l;
            h = v > h ? v : h;
        }
        lo[j] = l;
        part[j & 3] += (double)l;
        const float dd = h - l;
        span = dd > span ? dd : span;
    }
    float mult;
    const float inv = tb_step(span, VN_TB_PARTMAX, &mult, delta);
    *bias = (float)((part[0] + part[1]) + (part[2] + part[3]));
    for (ptrdiff_t t = 0; t < 2 * nb; t++) {
        uint8_t e0[4], e1[4];
        for (int c = 0; c < 4; c++) {
            e0[c] = tb_quant1(r[2 * t] * lv[c], lo[2 * t], mult, inv, VN_TB_PARTMAX);
            e1[c] = tb_quant1(r[2 * t + 1] * lv[c], lo[2 * t + 1], mult, inv, VN_TB_PARTMAX);
        }
        for (int c = 0; c < 16; c++) lq[16 * t + c] = (uint8_t)(e0[c & 3] + e1[c >> 2]);
    }
}

#if VN_X86
/* tb_parts_seq eight coordinates a vector; 0 when done, -1 (nothing written) when a
 * product or the span is not finite (then the scalar code runs). Over finite values the
 * vector min / max equal numba's (up to a zero's sign, which changes no output, as in
 * tb_quantize_avx2), and the four double sums add their coordinates in the same order. */
__attribute__((target("avx2"))) static int tb_parts_avx2(const float *r, const float *lv,
                                                         ptrdiff_t nb, uint8_t *lq,
                                                         float *bias, float *delta,
                                                         float *lo) {
    const __m256 l0 = _mm256_set1_ps(lv[0]), l1 = _mm256_set1_ps(lv[1]);
    const __m256 l2 = _mm256_set1_ps(lv[2]), l3 = _mm256_set1_ps(lv[3]);
    __m256 bad = _mm256_setzero_ps(), spanv = _mm256_setzero_ps();
    __m256d part = _mm256_setzero_pd();
    for (ptrdiff_t j = 0; j < 4 * nb; j += 8) {
        const __m256 x = _mm256_loadu_ps(r + j);
        const __m256 p0 = _mm256_mul_ps(x, l0), p1 = _mm256_mul_ps(x, l1);
        const __m256 p2 = _mm256_mul_ps(x, l2), p3 = _mm256_mul_ps(x, l3);
        const __m256 l = _mm256_min_ps(p3, _mm256_min_ps(p2, _mm256_min_ps(p1, p0)));
        const __m256 h = _mm256_max_ps(p3, _mm256_max_ps(p2, _mm256_max_ps(p1, p0)));
        const __m256 dd = _mm256_sub_ps(h, l);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_sub_ps(dd, dd), _mm256_sub_ps(l, l),
                                              _CMP_UNORD_Q));
        spanv = _mm256_max_ps(dd, spanv);
        _mm256_storeu_ps(lo + j, l);
        part = _mm256_add_pd(part, _mm256_cvtps_pd(_mm256_castps256_ps128(l)));
        part = _mm256_add_pd(part, _mm256_cvtps_pd(_mm256_extractf128_ps(l, 1)));
    }
    if (_mm256_movemask_ps(bad)) return -1;
    float sp[8];
    double pd[4];
    _mm256_storeu_ps(sp, spanv);
    _mm256_storeu_pd(pd, part);
    float span = 0.0f;
    for (int u = 0; u < 8; u++) span = sp[u] > span ? sp[u] : span;
    float mult;
    const float inv = tb_step(span, VN_TB_PARTMAX, &mult, delta);
    *bias = (float)((pd[0] + pd[1]) + (pd[2] + pd[3]));
    const __m256 vm = _mm256_set1_ps(mult), vi = _mm256_set1_ps(inv);
    const __m256 half = _mm256_set1_ps(0.5f), top = _mm256_set1_ps(VN_TB_PARTMAX);
    const __m256 zero = _mm256_setzero_ps();
    /* byte 4 c + l of a lane: E[c] of the lane's coordinate l; table u of the lane (its
     * coordinates 2u, 2u + 1) gathers E[2u][c & 3] and E[2u + 1][c >> 2] */
    const __m256i ga0 = _mm256_setr_epi8(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12,
                                         0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12);
    const __m256i gb0 = _mm256_setr_epi8(1, 1, 1, 1, 5, 5, 5, 5, 9, 9, 9, 9, 13, 13, 13, 13,
                                         1, 1, 1, 1, 5, 5, 5, 5, 9, 9, 9, 9, 13, 13, 13, 13);
    const __m256i two = _mm256_set1_epi8(2);
    for (ptrdiff_t j = 0; j < 4 * nb; j += 8) {
        const __m256 x = _mm256_loadu_ps(r + j), l = _mm256_loadu_ps(lo + j);
#define TB_PART_Q(lc)                                                                     \
    _mm256_cvttps_epi32(_mm256_min_ps(                                                    \
        _mm256_max_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(                          \
                                        _mm256_sub_ps(_mm256_mul_ps(x, lc), l), vm), vi), \
                                    half),                                                \
                      zero),                                                              \
        top))
        const __m256i e01 = _mm256_packs_epi32(TB_PART_Q(l0), TB_PART_Q(l1));
        const __m256i e23 = _mm256_packs_epi32(TB_PART_Q(l2), TB_PART_Q(l3));
#undef TB_PART_Q
        const __m256i e = _mm256_packus_epi16(e01, e23);
        const __m256i t0 = _mm256_add_epi8(_mm256_shuffle_epi8(e, ga0),
                                           _mm256_shuffle_epi8(e, gb0));
        const __m256i t1 = _mm256_add_epi8(_mm256_shuffle_epi8(e, _mm256_add_epi8(ga0, two)),
                                           _mm256_shuffle_epi8(e, _mm256_add_epi8(gb0, two)));
        uint8_t *o = lq + 16 * (j / 2);
        _mm256_storeu_si256((__m256i *)o, _mm256_permute2x128_si256(t0, t1, 0x20));
        _mm256_storeu_si256((__m256i *)(o + 32), _mm256_permute2x128_si256(t0, t1, 0x31));
    }
    return 0;
}
#endif

/* One query's additive 2-bit tables (tb_parts_seq) from its d coordinates r; scratch:
 * 8 nb floats (the coordinates padded to 4 nb, then the minima). */
static void vn_quantize_parts(const float *r, ptrdiff_t d, const float *lv, ptrdiff_t nb,
                              uint8_t *lq, float *bias, float *delta, float *scratch,
                              int isa) {
    float *rp = scratch, *lo = scratch + 4 * nb;
    memcpy(rp, r, sizeof(float) * (size_t)d);
    for (ptrdiff_t j = d; j < 4 * nb; j++) rp[j] = 0.0f;
#if VN_X86
    if (isa != VN_PORTABLE && nb % 2 == 0 && tb_parts_avx2(rp, lv, nb, lq, bias, delta, lo) == 0)
        return;
#else
    (void)isa;
#endif
    tb_parts_seq(rp, lv, nb, lq, bias, delta, lo);
}

/* Queries [q0, q1) of x (nq, d), rotated first by rot when not NULL (scratch: 3 d floats,
 * then with additive 4 m floats): turboquant's nibble tables (nq, m, 16) of levels lv
 * (2**bits of them, d <= m * 4 / bits), then their uint8 tables, bias and delta
 * (quantize_luts, or with additive, 2-bit codes only, vn_quantize_parts). */
static void vn_tq_luts(const float *x, ptrdiff_t d, const vn_rot *rot, const float *lv,
                       int bits, int additive, ptrdiff_t m, float *tables, uint8_t *luts,
                       float *bias, float *delta, ptrdiff_t q0, ptrdiff_t q1, float *scratch,
                       int isa) {
    const int per = 4 / bits, width = 1 << bits;
    for (ptrdiff_t q = q0; q < q1; q++) {
        const float *r = x + q * d;
        if (rot) { /* the query's rotation, as rotate computes it */
            vn_rotate(r, d, rot->signs, rot->perms, rot->rounds, rot->p, rot->norm, scratch,
                      0, 1, scratch + d, scratch + 2 * d, isa);
            r = scratch;
        }
        float *o = tables + q * m * 16;
        ptrdiff_t t = 0;
#if VN_X86
        if (isa != VN_PORTABLE) t = tb_tables_avx2(r, d, lv, bits, m, o);
#endif
        for (; t < m; t++) {
            float p[4 * 16]; /* products of the table's coordinates (+0 past d) */
            for (int u = 0; u < per; u++) {
                const ptrdiff_t j = t * per + u;
                for (int c = 0; c < width; c++) p[u * width + c] = j < d ? r[j] * lv[c] : 0.0f;
            }
            tb_combine(p, width, per, o + 16 * t);
        }
        if (additive)
            vn_quantize_parts(r, d, lv, m / 2, luts + q * m * 16, bias + q, delta + q,
                              scratch + 3 * d, isa);
        else
            vn_quantize_luts(tables, m, luts, bias, delta, q, q + 1, isa);
    }
}

PyDoc_STRVAR(tq_luts_doc,
"tq_luts(x, levels, bits, additive, tables, luts, bias, delta, q0, q1, isa, signs=None,\n"
"        perms=None, p=0, norm=0)\n--\n\n"
"turboquant's nibble tables of queries q0:q1 and their uint8 quantization in one call (the\n"
"native fastscan._tables, then quantize_luts): x float32 (nq, d), the rotated queries, or\n"
"with signs, perms, p and norm (as rotate takes them) the queries, rotated first; levels\n"
"float32 (2**bits,); bits 1, 2 or 4; tables float32 (nq, m, 16), m even, d <= m * 4 /\n"
"bits; luts uint8 (nq, m // 2, 32), bias and delta float32 (nq,) are written (with\n"
"additive, 2-bit codes only, quantized per coordinate: fastscan._quantize_parts). Runs\n"
"without the GIL; see vecindex_core._native.tables.");

static PyObject *py_tq_luts(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *orq, *olv, *ot, *ol, *ob, *od, *osg = Py_None, *opm = Py_None;
    Py_ssize_t q0, q1, p = 0;
    int bits, additive, isa;
    float norm = 0.0f;
    if (!PyArg_ParseTuple(args, "OOipOOOOnni|OOnf:tq_luts", &orq, &olv, &bits, &additive, &ot,
                          &ol, &ob, &od, &q0, &q1, &isa, &osg, &opm, &p, &norm))
        return NULL;
    if (vn_check_isa(isa) < 0) return NULL;
    if (bits != 1 && bits != 2 && bits != 4) {
        PyErr_Format(g_err_arg, "bits must be 1, 2 or 4, got %d", bits);
        return NULL;
    }
    if (additive && bits != 2) {
        PyErr_Format(g_err_arg, "additive tables need 2-bit codes, got bits=%d", bits);
        return NULL;
    }
    if ((osg == Py_None) != (opm == Py_None)) {
        PyErr_SetString(g_err_arg, "the rotation needs signs and perms");
        return NULL;
    }
    enum { BR, BV, BT, BL, BB, BD, BS, BP, NBUF };
    Py_buffer b[NBUF];
    int have[NBUF] = {0}, rc = -1;
    static const vn_buf_spec spec[NBUF] = {
        {"x", K_F32, 2, 0, 0},    {"levels", K_F32, 1, 0, 0}, {"tables", K_F32, 3, 1, 0},
        {"luts", K_U8, 3, 1, 0}, {"bias", K_F32, 1, 1, 0},   {"delta", K_F32, 1, 1, 0},
        {"signs", K_F32, 3, 0, 1}, {"perms", K_I64, 2, 0, 1}};
    PyObject *const objs[NBUF] = {orq, olv, ot, ol, ob, od, osg, opm};
    if (vn_get_buffers(objs, spec, NBUF, b, have) < 0) goto done;
    {
        const Py_ssize_t nq = b[BR].shape[0], d = b[BR].shape[1], m = b[BT].shape[1];
        if (b[BV].shape[0] != (Py_ssize_t)1 << bits) {
            PyErr_Format(g_err_dim, "levels must have %d entries, got %zd", 1 << bits,
                         b[BV].shape[0]);
            goto done;
        }
        if (b[BT].shape[0] != nq || b[BT].shape[2] != 16 || m % 2 || d > m * (4 / bits)) {
            PyErr_Format(g_err_dim, "tables must be (%zd, m, 16) with m even and m * %d >= "
                         "d = %zd, got (%zd, %zd, %zd)", nq, 4 / bits, d, b[BT].shape[0], m,
                         b[BT].shape[2]);
            goto done;
        }
        if (tb_check_luts(&b[BL], &b[BB], &b[BD], nq, m) < 0) goto done;
        if (have[BS] && rt_check(&b[BS], &b[BP], d, p) < 0) goto done;
        if (vn_apart(b, have, NBUF, BT, BD, "tables, luts, bias and delta must not share "
                     "memory with each other or with the inputs") < 0)
            goto done;
        if (vn_query_range(q0, q1, nq) < 0) goto done;
        vn_rot rot = {NULL, NULL, 0, p, norm};
        if (have[BS]) {
            rot.signs = (const float *)b[BS].buf;
            rot.perms = (const int64_t *)b[BP].buf;
            rot.rounds = b[BS].shape[0];
        }
        float *scratch = NULL;
        if ((have[BS] || additive) && q1 > q0) {
            scratch = (float *)malloc(sizeof(float) * (3 * (size_t)d + 4 * (size_t)m));
            if (!scratch) {
                PyErr_NoMemory();
                goto done;
            }
        }
        Py_BEGIN_ALLOW_THREADS
        vn_tq_luts((const float *)b[BR].buf, d, have[BS] ? &rot : NULL,
                   (const float *)b[BV].buf, bits, additive, m, (float *)b[BT].buf,
                   (uint8_t *)b[BL].buf,
                   (float *)b[BB].buf, (float *)b[BD].buf, q0, q1, scratch, isa);
        Py_END_ALLOW_THREADS
        free(scratch);
        rc = 0;
    }
done:
    return vn_finish(b, have, NBUF, rc);
}

PyMethodDef vn_tables_methods[] = {
    {"quantize_luts", py_quantize_luts, METH_VARARGS, quantize_luts_doc},
    {"pq_nibble", py_pq_nibble, METH_VARARGS, pq_nibble_doc},
    {"tq_luts", py_tq_luts, METH_VARARGS, tq_luts_doc},
    {"rotate", py_rotate, METH_VARARGS, rotate_doc},
    {NULL, NULL, 0, NULL},
};
