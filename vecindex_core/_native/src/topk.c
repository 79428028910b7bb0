/* Float32 top-k selection over score tiles: the native twin of
 * vecindex_core._kernels.topk._update_rows (Python wrapper: ../topk.py).
 *
 * Heap protocol (identical to the numba reference, so the heap arrays themselves end up
 * identical): per tile row r a binary min-heap (hs[r], hi[r]) of k entries ordered "worse
 * first" (lower score, then higher slot), started full of (-inf, -1) padding. Slots arrive
 * in increasing order, so a candidate enters only when its score is strictly above the
 * root's; it replaces the root and is sifted down. Masked slots never enter.
 *
 * Scores: the tile value itself (inner product), or with l2
 *     -max((qn[r] + xn[slot]) - 2 * s, 0)   (Python max: a NaN distance stays NaN)
 * in float32 with the same operation order (no contraction: the file is compiled with
 * -ffp-contract=off, setup.py, and 2 * s is exact anyway), so every score is
 * bit-identical to numpy's and numba's.
 *
 * Scan: the threshold test is vectorised. avx2 compares 32 scores (four 8-wide vectors)
 * against the broadcast root and tests the OR of the compares; portable is plain C over
 * chunks of 16 that the compiler vectorises with the baseline instruction set. CPUs with
 * AVX-512 run the avx2 scan: no 16-wide variant was written (the scan is a small part of
 * an exact search; BLAS is most of it). Only a chunk with a score above
 * the root goes through the scalar heap code, and most chunks of a warm tile do not. The
 * mask is folded into the candidate bits (8 bool bytes -> 8 bits with a multiply) before
 * any heap work, so a sparse mask costs little even while the heaps are still cold.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "native.h"
#include "pyglue.h"

#if VN_X86
#include <immintrin.h>
#endif

typedef struct {
    const float *tile;    /* tile row r starts at tile + r * ld; columns col0.. are scanned */
    ptrdiff_t ld, ncols;  /* row stride (floats) and scanned columns */
    int64_t offset;       /* slot of the first scanned column */
    const uint8_t *mask;  /* indexed by slot, or NULL */
    const float *qn;      /* (rows,) query norms for l2, or NULL for inner product */
    const float *xn;      /* indexed by slot (l2 only) */
    float *hs;            /* (rows, k) */
    int64_t *hi;          /* (rows, k) */
    ptrdiff_t k;
} vn_topk_args;

/* Replace the root of a heap row by (s, i) and restore the order (= topk._sift_down). */
static inline void vn_sift(float *hs, int64_t *hi, ptrdiff_t k, float s, int64_t i) {
    ptrdiff_t pos = 0;
    for (;;) {
        ptrdiff_t child = 2 * pos + 1;
        if (child >= k) break;
        const ptrdiff_t right = child + 1;
        if (right < k &&
            (hs[right] < hs[child] || (hs[right] == hs[child] && hi[right] > hi[child])))
            child = right;
        if (hs[child] < s || (hs[child] == s && hi[child] > i)) {
            hs[pos] = hs[child];
            hi[pos] = hi[child];
            pos = child;
        } else {
            break;
        }
    }
    hs[pos] = s;
    hi[pos] = i;
}

/* 1 bit per allowed slot of mask[0:8] (a bool byte is allowed when non-zero). */
static inline uint32_t vn_mask8(const uint8_t *m) {
    uint64_t v;
    memcpy(&v, m, 8);
    const uint64_t lo7 = 0x7f7f7f7f7f7f7f7fULL;
    v = (((v & lo7) + lo7) | v) & 0x8080808080808080ULL; /* high bit of each non-zero byte */
    return (uint32_t)(((v >> 7) * 0x0102040810204080ULL) >> 56);
}

/* 1 bit per allowed slot of mask[0:n] (n <= 32, a multiple of 8). */
static inline uint32_t vn_mask_bits(const uint8_t *m, int n) {
    uint32_t b = 0;
    for (int t = 0; t < n; t += 8) b |= vn_mask8(m + t) << t;
    return b;
}

/* -max(d, 0) with Python's (and numba's) max: d itself unless 0 > d, so a NaN distance (from
 * overflowed norms or products of huge but finite vectors) stays NaN and never enters a heap,
 * and -0.0 stays -0.0. */
static inline float vn_l2_score(float qr, float x, float s) {
    const float d = (qr + x) - 2.0f * s;
    return -(0.0f > d ? 0.0f : d);
}

/* Push candidates: bit b of `bits` set means buf[b] (the score of column j + b) may beat the
 * root; it is tested again against the current root, which rises as entries go in. */
static inline float vn_push_bits(float *h, int64_t *hx, ptrdiff_t k, float thr,
                                 const float *buf, uint32_t bits, int64_t slot0) {
    while (bits) {
        const int b = __builtin_ctz(bits);
        bits &= bits - 1;
        const float s = buf[b];
        if (s > thr) {
            vn_sift(h, hx, k, s, slot0 + b);
            thr = h[0];
        }
    }
    return thr;
}

/* Scalar tail: columns [j0, j1) of one row. */
static inline float vn_scan_tail(const vn_topk_args *a, const float *row, float qr, float *h,
                                 int64_t *hx, float thr, ptrdiff_t j0, ptrdiff_t j1) {
    for (ptrdiff_t j = j0; j < j1; j++) {
        const int64_t slot = a->offset + j;
        const float s = a->qn ? vn_l2_score(qr, a->xn[slot], row[j]) : row[j];
        if (s > thr && (!a->mask || a->mask[slot])) {
            vn_sift(h, hx, a->k, s, slot);
            thr = h[0];
        }
    }
    return thr;
}

/* ---------------------------------------------------------------- portable */
#define VN_PCHUNK 16

/* 1 when a score of s[0:VN_PCHUNK] is above thr (a single loop, so it vectorises). */
static inline int vn_any_above(const float *s, float thr) {
    int any = 0;
    for (int t = 0; t < VN_PCHUNK; t++) any |= s[t] > thr;
    return any;
}

static void topk_rows_portable(const vn_topk_args *a, ptrdiff_t r0, ptrdiff_t r1) {
    const ptrdiff_t n = a->ncols, k = a->k;
    float buf[VN_PCHUNK];
    for (ptrdiff_t r = r0; r < r1; r++) {
        const float *row = a->tile + r * a->ld;
        float *h = a->hs + r * k;
        int64_t *hx = a->hi + r * k;
        const float qr = a->qn ? a->qn[r] : 0.0f;
        float thr = h[0];
        ptrdiff_t j = 0;
        for (; j + VN_PCHUNK <= n; j += VN_PCHUNK) {
            if (a->qn) {
                const float *x = a->xn + a->offset + j;
                for (int t = 0; t < VN_PCHUNK; t++) buf[t] = vn_l2_score(qr, x[t], row[j + t]);
                if (!vn_any_above(buf, thr)) continue;
            } else {
                if (!vn_any_above(row + j, thr)) continue;
                memcpy(buf, row + j, sizeof buf);
            }
            uint32_t bits = 0;
            for (int t = 0; t < VN_PCHUNK; t++) bits |= (uint32_t)(buf[t] > thr) << t;
            if (a->mask) bits &= vn_mask_bits(a->mask + a->offset + j, VN_PCHUNK);
            thr = vn_push_bits(h, hx, k, thr, buf, bits, a->offset + j);
        }
        vn_scan_tail(a, row, qr, h, hx, thr, j, n);
    }
}

#if VN_X86
/* ---------------------------------------------------------------- avx2 */
__attribute__((target("avx2"))) static inline __m256 vn_l2_8(__m256 q, const float *x,
                                                              __m256 s) {
    const __m256 d = _mm256_sub_ps(_mm256_add_ps(q, _mm256_loadu_ps(x)),
                                   _mm256_mul_ps(_mm256_set1_ps(2.0f), s));
    /* max_ps(+0, d) gives its second operand (d) when equal or unordered: 0 > d ? 0 : d */
    return _mm256_xor_ps(_mm256_max_ps(_mm256_setzero_ps(), d), _mm256_set1_ps(-0.0f));
}

__attribute__((target("avx2"))) static void topk_rows_avx2(const vn_topk_args *a,
                                                           ptrdiff_t r0, ptrdiff_t r1) {
    const ptrdiff_t n = a->ncols, k = a->k;
    float buf[32] __attribute__((aligned(32)));
    for (ptrdiff_t r = r0; r < r1; r++) {
        const float *row = a->tile + r * a->ld;
        float *h = a->hs + r * k;
        int64_t *hx = a->hi + r * k;
        const float qr = a->qn ? a->qn[r] : 0.0f;
        const __m256 qv = _mm256_set1_ps(qr);
        float thr = h[0];
        __m256 tv = _mm256_set1_ps(thr);
        ptrdiff_t j = 0;
        for (; j + 32 <= n; j += 32) {
            __m256 s0 = _mm256_loadu_ps(row + j), s1 = _mm256_loadu_ps(row + j + 8);
            __m256 s2 = _mm256_loadu_ps(row + j + 16), s3 = _mm256_loadu_ps(row + j + 24);
            if (a->qn) {
                const float *x = a->xn + a->offset + j;
                s0 = vn_l2_8(qv, x, s0);
                s1 = vn_l2_8(qv, x + 8, s1);
                s2 = vn_l2_8(qv, x + 16, s2);
                s3 = vn_l2_8(qv, x + 24, s3);
            }
            const __m256 c0 = _mm256_cmp_ps(s0, tv, _CMP_GT_OQ);
            const __m256 c1 = _mm256_cmp_ps(s1, tv, _CMP_GT_OQ);
            const __m256 c2 = _mm256_cmp_ps(s2, tv, _CMP_GT_OQ);
            const __m256 c3 = _mm256_cmp_ps(s3, tv, _CMP_GT_OQ);
            const __m256 any = _mm256_or_ps(_mm256_or_ps(c0, c1), _mm256_or_ps(c2, c3));
            if (_mm256_testz_ps(any, any)) continue; /* sign bits all clear: no candidate */
            uint32_t bits = (uint32_t)_mm256_movemask_ps(c0) |
                            ((uint32_t)_mm256_movemask_ps(c1) << 8) |
                            ((uint32_t)_mm256_movemask_ps(c2) << 16) |
                            ((uint32_t)_mm256_movemask_ps(c3) << 24);
            if (a->mask) bits &= vn_mask_bits(a->mask + a->offset + j, 32);
            if (!bits) continue;
            _mm256_store_ps(buf, s0);
            _mm256_store_ps(buf + 8, s1);
            _mm256_store_ps(buf + 16, s2);
            _mm256_store_ps(buf + 24, s3);
            thr = vn_push_bits(h, hx, k, thr, buf, bits, a->offset + j);
            tv = _mm256_set1_ps(thr);
        }
        for (; j + 8 <= n; j += 8) {
            __m256 s0 = _mm256_loadu_ps(row + j);
            if (a->qn) s0 = vn_l2_8(qv, a->xn + a->offset + j, s0);
            uint32_t bits = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(s0, tv, _CMP_GT_OQ));
            if (!bits) continue;
            if (a->mask) bits &= vn_mask8(a->mask + a->offset + j);
            if (!bits) continue;
            _mm256_store_ps(buf, s0);
            thr = vn_push_bits(h, hx, k, thr, buf, bits, a->offset + j);
            tv = _mm256_set1_ps(thr);
        }
        vn_scan_tail(a, row, qr, h, hx, thr, j, n);
    }
}

#endif /* VN_X86 */

static void vn_topk_rows(const vn_topk_args *a, ptrdiff_t r0, ptrdiff_t r1, int isa) {
    if (a->k < 1 || a->ncols < 1 || r1 <= r0) return;
#if VN_X86
    if (isa == VN_AVX2 || isa == VN_AVX512) { /* avx512 CPUs run the avx2 scan (see top) */
        topk_rows_avx2(a, r0, r1);
        return;
    }
#endif
    (void)isa;
    topk_rows_portable(a, r0, r1);
}

/* ---------------------------------------------------------------- Python */
/* An integer argument (int or an object with __index__, not bool) as Py_ssize_t; raises
 * InvalidDtypeError for a non-integer and InvalidArgumentError past the Py_ssize_t range. */
static int vn_index_arg(PyObject *o, const char *name, Py_ssize_t *out) {
    if (PyBool_Check(o) || !PyIndex_Check(o)) {
        PyErr_Format(g_err_dtype, "%s must be an integer, got %R of type %.200s", name, o,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    PyObject *v = PyNumber_Index(o);
    if (!v) return -1;
    const Py_ssize_t r = PyLong_AsSsize_t(v);
    if (r == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(g_err_arg, "%s does not fit a 64-bit index, got %S", name, v);
        Py_DECREF(v);
        return -1;
    }
    Py_DECREF(v);
    *out = r;
    return 0;
}

PyDoc_STRVAR(topk_update_doc,
"topk_update(tile, col0, offset, mask, qn, xn, hs, hi, r0, r1, isa)\n--\n\n"
"Push rows r0:r1 of a float32 score tile into their heaps (the native _update_rows).\n"
"tile float32 (rows, width): columns col0: are scanned, column col0 + j is slot\n"
"offset + j. mask bool (>= offset + width - col0,) indexed by slot, or None. qn float32\n"
"(rows,) and xn float32 (>= offset + width - col0,) for l2 scores, both None for inner\n"
"product. hs float32 (rows, k) and hi int64 (rows, k) are updated in place. Runs without\n"
"the GIL; see vecindex_core._native.topk for the Python wrapper.");

static PyObject *py_topk_update(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *ot, *om, *oqn, *oxn, *ohs, *ohi, *ocol0, *ooffset, *or0, *or1;
    Py_ssize_t col0, offset, r0, r1;
    int isa;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOi:topk_update", &ot, &ocol0, &ooffset, &om, &oqn,
                          &oxn, &ohs, &ohi, &or0, &or1, &isa))
        return NULL;
    if (vn_check_isa(isa) < 0 || vn_index_arg(ocol0, "col0", &col0) < 0 ||
        vn_index_arg(ooffset, "offset", &offset) < 0 || vn_index_arg(or0, "r0", &r0) < 0 ||
        vn_index_arg(or1, "r1", &r1) < 0)
        return NULL;
    if ((oqn == Py_None) != (oxn == Py_None)) {
        PyErr_Format(g_err_arg, "qn and xn must both be given (l2) or both be None (inner "
                     "product), got %s and %s", oqn == Py_None ? "None" : "an array",
                     oxn == Py_None ? "None" : "an array");
        return NULL;
    }
    Py_buffer bt, bm, bq, bx, bh, bi;
    int have_m = 0, have_l2 = 0, rc = -1;
    if (vn_get_buffer(ot, &bt, "tile", K_F32, 2, 0) < 0) return NULL;
    if (om != Py_None) {
        if (vn_get_buffer(om, &bm, "mask", K_BOOL, 1, 0) < 0) goto rel_t;
        have_m = 1;
    }
    if (oqn != Py_None) {
        if (vn_get_buffer(oqn, &bq, "qn", K_F32, 1, 0) < 0) goto rel_m;
        if (vn_get_buffer(oxn, &bx, "xn", K_F32, 1, 0) < 0) {
            PyBuffer_Release(&bq);
            goto rel_m;
        }
        have_l2 = 1;
    }
    if (vn_get_buffer(ohs, &bh, "hs", K_F32, 2, 1) < 0) goto rel_l2;
    if (vn_get_buffer(ohi, &bi, "hi", K_I64, 2, 1) < 0) goto rel_h;
    {
        const Py_ssize_t rows = bt.shape[0], width = bt.shape[1], k = bh.shape[1];
        if (col0 < 0 || col0 > width) {
            PyErr_Format(g_err_arg, "col0 must be in [0, %zd] (columns of tile), got %zd",
                         width, col0);
            goto rel_i;
        }
        const Py_ssize_t ncols = width - col0;
        if (offset < 0 || offset > PY_SSIZE_T_MAX - ncols) {
            PyErr_Format(g_err_arg, "offset must be >= 0 (and offset + columns must not "
                         "overflow), got %zd", offset);
            goto rel_i;
        }
        if (bh.shape[0] != rows || bi.shape[0] != rows || bi.shape[1] != k) {
            PyErr_Format(g_err_dim, "hs and hi must have shape (%zd, k) like the tile rows, "
                         "got (%zd, %zd) and (%zd, %zd)", rows, bh.shape[0], k, bi.shape[0],
                         bi.shape[1]);
            goto rel_i;
        }
        if (have_m && bm.shape[0] < offset + ncols) {
            PyErr_Format(g_err_dim, "mask has %zd entries, but slots up to %zd are scanned",
                         bm.shape[0], offset + ncols);
            goto rel_i;
        }
        if (have_l2 && bq.shape[0] < rows) {
            PyErr_Format(g_err_dim, "qn has %zd entries, but the tile has %zd rows",
                         bq.shape[0], rows);
            goto rel_i;
        }
        if (have_l2 && bx.shape[0] < offset + ncols) {
            PyErr_Format(g_err_dim, "xn has %zd entries, but slots up to %zd are scanned",
                         bx.shape[0], offset + ncols);
            goto rel_i;
        }
        /* the heaps are written (from several threads by scan_tile) while every other
         * buffer is read: none may share memory with them */
        const Py_buffer *const reads[] = {&bt, have_m ? &bm : NULL, have_l2 ? &bq : NULL,
                                          have_l2 ? &bx : NULL, &bi};
        const char *const read_names[] = {"tile", "mask", "qn", "xn", "hi"};
        for (int t = 0; t < 5; t++) {
            const char *other = NULL;
            if (reads[t] && vn_overlap(reads[t], &bh)) other = "hs";
            else if (t < 4 && reads[t] && vn_overlap(reads[t], &bi)) other = "hi";
            if (other) {
                PyErr_Format(g_err_arg, "%s and %s share memory; the heaps must be separate "
                             "writable arrays", read_names[t], other);
                goto rel_i;
            }
        }
        if (r0 < 0 || r1 < r0 || r1 > rows) {
            PyErr_Format(g_err_arg, "row range [%zd, %zd) is not within [0, %zd]", r0, r1,
                         rows);
            goto rel_i;
        }
        vn_topk_args a;
        a.tile = (const float *)bt.buf + col0;
        a.ld = width;
        a.ncols = ncols;
        a.offset = (int64_t)offset;
        a.mask = have_m ? (const uint8_t *)bm.buf : NULL;
        a.qn = have_l2 ? (const float *)bq.buf : NULL;
        a.xn = have_l2 ? (const float *)bx.buf : NULL;
        a.hs = (float *)bh.buf;
        a.hi = (int64_t *)bi.buf;
        a.k = k;
        if (k > 0 && ncols > 0 && r1 > r0) {
            Py_BEGIN_ALLOW_THREADS
            vn_topk_rows(&a, r0, r1, isa);
            Py_END_ALLOW_THREADS
        }
        rc = 0;
    }
rel_i:
    PyBuffer_Release(&bi);
rel_h:
    PyBuffer_Release(&bh);
rel_l2:
    if (have_l2) {
        PyBuffer_Release(&bx);
        PyBuffer_Release(&bq);
    }
rel_m:
    if (have_m) PyBuffer_Release(&bm);
rel_t:
    PyBuffer_Release(&bt);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

PyMethodDef vn_topk_methods[] = {
    {"topk_update", py_topk_update, METH_VARARGS, topk_update_doc},
    {NULL, NULL, 0, NULL},
};
