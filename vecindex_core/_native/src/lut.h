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

#endif
