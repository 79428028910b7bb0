/* Byte-shuffle fast scan over 4-bit sub-codes in blocks of 32 vectors (see lut.c and
 * vecindex_core/_kernels/fastscan.py for the layout and the arithmetic). */
#ifndef VECNATIVE_LUT_H
#define VECNATIVE_LUT_H

#include <stddef.h>
#include <stdint.h>

/* Rows per block of the blocked layout. */
#define VN_FS_BLOCK 32
/* Most byte columns: sums of 2 * nb uint8 entries stay exact in float32 (< 2**24). */
#define VN_FS_MAX_NB 32768

typedef struct {
    const uint8_t *luts;  /* (nq, nb, 32): tables 2p and 2p+1 of byte column p, 16 each;
                           * dot mode: (nq, 2 nb) int8 query weights, one a sub-code */
    const uint8_t *levels; /* dot mode: (16,) uint8 level + 128 of each sub-code value (one
                            * codebook for every sub-code); NULL: table mode */
    const float *bias;    /* (nq,) */
    const float *delta;   /* (nq,) */
    const float *qn;      /* (nq,) |q|^2, or NULL (inner-product score) */
    const uint8_t *codes; /* (nblocks, nb, 32) blocked codes */
    const uint8_t *tail;  /* (nb, 32): the block of rows 32 (n / 32) .. n - 1, or NULL (then
                           * that block is codes[n / 32]) */
    const float *scale;   /* (>= n,) per-row factor, or NULL */
    const float *xn;      /* (>= n,) |x|^2 (l2 when not NULL; then qn is set) */
    const uint8_t *mask;  /* (>= n,) allowed rows, or NULL */
    ptrdiff_t nb, n, k;
    int nqsub;            /* queries summed together per pass over a block (1..4; 0: default) */
    int unsorted;         /* each query's k rows in no particular order (the k best still) */
    float scale_max;      /* at least every scale[i] (a finite number >= 0), or NaN: unknown
                           * (no block pruning); unused without scale */
    const float *seed;    /* (nq,) or NULL: the collection starts at each query's seed (rows
                           * scoring >= it); a query with fewer than k such rows in [r0, r1)
                           * is scanned again without it (the same results, fewer candidates
                           * when the seed is at most the k-th best score) */
    float *out_s;         /* (nq, k) */
    int64_t *out_i;       /* (nq, k) */
    /* The rescore of each query's k rows (rows r0..r1 must be all n rows) when rtables or
     * rqs is set: float tables (nq, 2 nb, 16), or rqs (nq, 2 nb) with rlv (16,) (4-bit
     * codes: entries rqs[t] * rlv[c]); the kf best into fin_s, fin_i (nq, kf), fin_n (nq,)
     * (see vn_rescore in lut.c). */
    const float *rtables, *rqs, *rlv;
    ptrdiff_t kf;
    float *fin_s;
    int64_t *fin_i, *fin_n;
} vn_lut_args;

/* Top-k of queries [q0, q1) over rows [r0, r1) (r0 a multiple of 32, r1 <= n; k >= 1).
 * Returns 0, or -1 when memory could not be allocated. Reentrant; runs without the GIL. */
int vn_lut_topk(const vn_lut_args *a, ptrdiff_t q0, ptrdiff_t q1, ptrdiff_t r0, ptrdiff_t r1,
                int isa);

/* Inverted-list scan: per query, entry ranges of ONE blocked arena of codes (entry e in
 * block e / 32, lane e % 32; a non-empty range starts at a multiple of 32), the caller's
 * heaps continued in place (see vecindex_core._native.lut.lut_ivf_topk): per query, the k
 * best (score desc, slot asc) of its heap's entries and its rows. k <= 32: offered to the
 * heap in order (the reference's layout); k > 32: collected in a reservoir seeded from the
 * heap and written back heapified (a valid heap, not necessarily the reference's layout; a
 * query none of whose rows passed the threshold keeps its row untouched). NaN never
 * enters. */
typedef struct {
    const uint8_t *luts;       /* (nq, nb, 32) */
    const float *bias;         /* (nq,) */
    const float *delta;        /* (nq,) */
    const float *qn;           /* (nq,) |q|^2, or NULL (inner-product score) */
    const uint8_t *codes;      /* (nblocks, nb, 32) blocked arena, indexed by entry */
    const int64_t *ranges;     /* (nq, R, 2) [lo, hi) entry ranges, lo <= hi */
    const float *list_bias;    /* (nq, R) added per range after the scale, or NULL */
    const float *scale;        /* (> max hi,) per-entry factor, or NULL */
    const float *xn;           /* (> max hi,) per-entry |x|^2 (l2 when not NULL; qn set) */
    const int32_t *row_slots;  /* (> max hi,) the slot of each entry */
    const uint8_t *mask;       /* (mask_len,) allowed slots, or NULL */
    ptrdiff_t mask_len;
    ptrdiff_t nb, k, R;
    float *hs;                 /* (nq, k) full heaps (worst at the root), updated in place */
    int64_t *hi;               /* (nq, k) */
    ptrdiff_t bad;             /* out: the entry whose slot is outside the mask (on -2) */
} vn_ivf_args;

/* Continue the heaps of queries [q0, q1) over their ranges (k >= 1; ranges checked by the
 * caller). Returns 0, -1 when memory could not be allocated (no heap changed), or -2 when
 * an offered entry's slot lies outside [0, mask_len) (a->bad set; the heaps of earlier
 * queries of this call may be updated). Reentrant; runs without the GIL. */
int vn_lut_ivf_topk(vn_ivf_args *a, ptrdiff_t q0, ptrdiff_t q1, int isa);

/* ---------------------------------------------------------------- the float rescore
 * The arithmetic of fastscan._rescore + topk._select, shared by the fused rescore (lut.c)
 * and the planes rescore (planes.c). */
typedef struct {
    const float *rtables;      /* (nq, 2 nb, 16) float tables, or NULL: */
    const float *rqs, *rlv;    /* (nq, 2 nb) and (16,): 4-bit entries rqs[t] * rlv[c] */
    ptrdiff_t nb;              /* byte columns: 2 nb sub-codes */
} vn_rs_tabs;

/* OUT = the float32 sum of query Q's entries of a row whose sub-code x is NIB(x): four
 * float64 partial sums by x mod 4, then (a0 + a1) + (a2 + a3); an entry is the table's, or
 * the float32 product rqs[t] * rlv[c]. */
#define VN_RS_LOOP(ENTRY, NIB)                                                            \
    for (ptrdiff_t t_ = 0; t_ < nb_ >> 1; t_++) {                                         \
        a0_ += ENTRY(64 * t_, NIB(4 * t_));                                               \
        a1_ += ENTRY(64 * t_ + 16, NIB(4 * t_ + 1));                                      \
        a2_ += ENTRY(64 * t_ + 32, NIB(4 * t_ + 2));                                      \
        a3_ += ENTRY(64 * t_ + 48, NIB(4 * t_ + 3));                                      \
    }                                                                                     \
    if (nb_ & 1) {                                                                        \
        const ptrdiff_t t_ = nb_ >> 1;                                                    \
        a0_ += ENTRY(64 * t_, NIB(4 * t_));                                               \
        a1_ += ENTRY(64 * t_ + 16, NIB(4 * t_ + 1));                                      \
    }
#define VN_RS_TABLE(b, x) (double)tq_[(b) + (x)]
#define VN_RS_PRODUCT(b, x) (double)(rq_[(b) >> 4] * lv_[x])
#define VN_RS_SUM(T, Q, NIB, OUT)                                                         \
    do {                                                                                  \
        const ptrdiff_t nb_ = (T)->nb;                                                    \
        double a0_ = 0.0, a1_ = 0.0, a2_ = 0.0, a3_ = 0.0;                                \
        if ((T)->rtables) {                                                               \
            const float *tq_ = (T)->rtables + (Q) * 2 * nb_ * 16;                         \
            VN_RS_LOOP(VN_RS_TABLE, NIB)                                                  \
        } else {                                                                          \
            const float *rq_ = (T)->rqs + (Q) * 2 * nb_, *lv_ = (T)->rlv;                 \
            VN_RS_LOOP(VN_RS_PRODUCT, NIB)                                                \
        }                                                                                 \
        (OUT) = (float)((a0_ + a1_) + (a2_ + a3_));                                       \
    } while (0)

/* The sum v of row s as query q's score: times scale[s], then for l2 (xn set)
 * -max((qn[q] + xn[s]) - 2 v, 0). */
static inline float vn_rs_score(float v, const float *scale, const float *xn,
                                const float *qn, ptrdiff_t q, int64_t s) {
    if (scale) v = scale[s] * v;
    if (xn) {
        const float tt = (qn[q] + xn[s]) - 2.0f * v;
        v = -(tt > 0.0f ? tt : 0.0f);
    }
    return v;
}

/* topk._before: score descending, NaN last, then key ascending with -1 after every key */
static inline int rs_before(float s1, int64_t k1, float s2, int64_t k2) {
    const int n1 = s1 != s1, n2 = s2 != s2;
    if (n1 != n2) return n2;
    if (!n1 && s1 != s2) return s1 > s2;
    const uint64_t u1 = k1 >= 0 ? (uint64_t)k1 : UINT64_MAX;
    const uint64_t u2 = k2 >= 0 ? (uint64_t)k2 : UINT64_MAX;
    return u1 < u2;
}

/* topk._select's step: (s, key) into the best-first list sc / sl of kf entries (*held of
 * them real so far). */
static inline void vn_rs_insert(float *sc, int64_t *sl, ptrdiff_t kf, ptrdiff_t *held,
                                float s, int64_t key) {
    if (*held == kf && !rs_before(s, key, sc[kf - 1], sl[kf - 1])) return;
    ptrdiff_t j = *held < kf ? *held : kf - 1;
    for (; j > 0 && rs_before(s, key, sc[j - 1], sl[j - 1]); j--) {
        sc[j] = sc[j - 1];
        sl[j] = sl[j - 1];
    }
    sc[j] = s;
    sl[j] = key;
    if (*held < kf) (*held)++;
}

#endif
