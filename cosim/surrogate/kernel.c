/* The fused CPU kernel of the surrogate's per-column evaluation (cosim/surrogate/kernel.py explains it).
   Compiled on first use by cosim.cbuild and called through ctypes: job_t below is mirrored field by field
   by kernel.py's _Job, and cosim_surrogate_job_layout() reports its size and a few offsets so that the
   Python side refuses a library whose struct does not match its own. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

typedef struct {
    int64_t n0, n1, C, E, V, R, F;
    const void *k; int64_t k_ld; int k_bf16;   /* ON-counts (n, C): float32 or bfloat16, row stride k_ld */
    const float *m; int64_t m_ld;              /* moments (n, C*E), moment e of column c at c*E + e */
    const float *xs; int64_t xs_ld;            /* leak tables: (n, 1+E) row sums / moments of the inputs, else NULL */
    const int32_t *terms;                      /* (F, D) variable indices of each term, V = the constant 1 */
    int64_t D;                                 /* variables per term: 3, or 4 for tables with degree-4 terms */
    const float *coef_t;                       /* (F, R+1): coefficient of term f at ON-count k, units of i_cell */
    int simd;                                  /* 2: the AVX-512 loops, 16 columns at once where they apply (lanes
                                                  below); 1: the AVX-512 loop column by column; 0: the portable one */
    const float *coef_rows; int64_t fpad;      /* AVX-512 layout: (R+1, fpad) rows, fpad a multiple of 16, zero padded */
    const int32_t *term_idx;                   /* (D, fpad) the terms' variable indices, padding = V (the constant) */
    float i_cell;                              /* A */
    float *cur; int64_t cur_ld;                /* currents (A) or NULL */
    const float *thr; int64_t nthr; float lsb;  /* ADC thresholds (A), ascending, thr[-1] = -inf and thr[nthr] = +inf readable; AND-counts per code */
    const int32_t *grid_start; int64_t ngrid;  /* thresholds below each cell of a uniform grid (a guess) */
    float grid_lo, grid_inv;                   /* grid: cell b starts at grid_lo + b / grid_inv */
    float step; float max_code;                /* step > 0: evenly spaced levels c * step (A), codes
                                                  ceil(i / step - 1/2) clipped to [0, max_code], no thresholds */
    float *code; int64_t code_ld;              /* codes or NULL */
    const int32_t *rowmap;                     /* NULL, or (n) the row of k, m, xs that output row i reads, -1 for an
                                                  all-zero input row: ON-count 0 and moments exactly 0 (evaluated
                                                  once per thread, then copied) */
    const float *zeros;                        /* with rowmap: C * (E + 1) + 1 + E zeros, such a row's operands */
    /* fused products (simd 2, lanes): with wmask set, k and m are not read; each column's ON-count and moments
       are formed here from the input bits, as sums of the basis rows its conducting cells select, in row order */
    const void *xb; int64_t xb_ld; int xb_bf16; int64_t xb_rows;  /* (n, R') 0/1 inputs, bfloat16 or float32 */
    const uint16_t *wmask; int64_t wmask_ld;   /* (R', G) weight bits: bit l of [r, g] = w[r, 16 g + l], G a multiple of 8 */
    const float *phi; int64_t phi_ld;          /* (R', E) the moment basis of each row */
    float *acc; int64_t acc_ld;                /* fused products: acc[i, c] += sx[i] sw[c] code[i, c] (codes of integers,
                                                  signs +-1 or NULL: 1; exact in float32), in place of code */
    const float *sx; const float *sw;
    int64_t max_stride;                        /* fused products, > 0: kmax = the largest ON-count of rows i % max_stride == 0 */
    int32_t kmax;
    int64_t chunk;                             /* > 0: the rows in passes of chunk, each split over the threads and
                                                  its sum added to the total in pass order (as passes called one by
                                                  one add them up); 0: one pass */
    const float *near_margin;                  /* certified reads (cosim.cim.arrays.CertifiedArray), or NULL: a margin (A)
                                                  per ON-count 0..R; needs codes (code or acc) */
    uint8_t *near; int64_t near_ld;            /* with near_margin: (n, C), 1 where a column's current lies within its
                                                  ON-count's margin of the decision level below or above it, else 0 */
    int bad;                                   /* set: an input neither 0 nor 1 (1), or no lanes for the fused products (2) */
    double sum;                                /* sum of the currents (A) */
} job_t;

#define CB 128
#define VMAX 40

#ifdef __AVX512F__
/* The term loop of 16 columns at once (simd 2), one column per lane, bit for bit the column-by-column
   AVX-512 loop below: that loop puts term f of a column in lane f % 16 of its accumulator, adds the
   blocks q = f / 16 in increasing q by fused multiply-adds from zero (padding terms: coefficient 0 times
   the constant 1, i.e. + 0) and sums the 16 lanes by _mm512_reduce_add_ps, whose order GCC's header
   fixes: (l, l + 8), then (l, l + 4), then (0, 2) and (1, 3), then (0, 1). Here every lane of that
   accumulator is a vector over 16 columns and the same operations run in the same order (a term's
   variables multiplied left to right, leaving out the factors of the constant 1: x * 1 is x exactly). The coefficient of each column's ON-count comes from the term's coefficient row (over the
   counts) by two-table permutes of 32 counts each, no gathers (slow on some CPUs): the permutes of a window
   of the row from the smallest count of the columns evaluated together to their largest, one 32-count
   segment of it where the counts lie within 32 of each other (as the counts of one input vector's columns
   mostly do), rather than of every segment up to the largest count. */
#define LANE_SEG 32
#define LANE_SEGS_MAX 16          /* counts up to 511 */
#define LANE_TERMS_MAX 128
#define LANE_GROUPS 8             /* groups of 16 columns evaluated together (CB / 16) */
#define LANE_VMAX 32              /* variables and the constant: up to two registers' worth in the column loop */
typedef struct {
    int nf;                    /* terms */
    int nq;                    /* blocks of 16 terms (fpad / 16) */
    int len[LANE_TERMS_MAX];     /* the factors of term f other than the constant 1 */
    int idx[LANE_TERMS_MAX][4];  /* their variable indices, in the term's order */
    int segs;                  /* 32-count segments of a coefficient row */
    int w;                     /* (segs + 1) * 32: a row's length, room for a window of segs segments at any count */
    float *tab;                /* (nf, w): coefficient of term f at count k, zero padded */
} lanes_t;

/* the lanes' model, or 0 where it does not apply (then the column-by-column loop runs) */
static int lanes_init(lanes_t *L, const job_t *j) {
    const int64_t F = j->F, R = j->R, D = j->D, V = j->V;
    L->tab = 0;
    if (F < 1 || F > LANE_TERMS_MAX || j->fpad < F || j->fpad % 16 || !j->coef_t || !j->terms || D < 3 || D > 4
        || V >= LANE_VMAX)
        return 0;
    L->nf = (int)F;
    L->nq = (int)(j->fpad / 16);
    L->segs = (int)((R + 1 + LANE_SEG - 1) / LANE_SEG);
    if (L->segs > LANE_SEGS_MAX) return 0;
    for (int64_t f = 0; f < F; ++f) {
        int n = 0;
        for (int64_t d = 0; d < D; ++d) {
            const int32_t i = j->terms[f * D + d];
            if (i < 0 || i > V) return 0;
            if (i != V) L->idx[f][n++] = i;          /* x * 1 is x exactly: the constant's factors are left out */
        }
        L->len[f] = n;
        for (int d = n; d < 4; ++d) L->idx[f][d] = 0;
    }
    const int64_t w = (int64_t)(L->segs + 1) * LANE_SEG;
    L->w = (int)w;
    L->tab = (float *)calloc((size_t)(F * w), sizeof(float));
    if (!L->tab) return 0;
    for (int64_t f = 0; f < F; ++f)
        memcpy(L->tab + f * w, j->coef_t + f * (R + 1), sizeof(float) * (size_t)(R + 1));
    return 1;
}

/* the sum over the blocks q of lane l's terms for NG (LANE_GROUPS or half of them) groups at once, into
   acc[l][g]; kv[g] are the
   counts less base (the window's first count), multi (0: one segment of 32 counts, 1: two, the second's
   coefficients loaded once for all groups, 2: more) is a constant where lanes_eval calls it, and the factors' count is switched on once per term, so that the loop
   over the groups has no branches */
#define LANE_TERM(T)                                                                                           \
    for (int g = 0; g < NG; ++g) {                                                                    \
        const __m512 t = (T);                                                                                  \
        __m512 c = _mm512_permutex2var_ps(r0, kv[g], r1);                                                      \
        if (multi == 1)                                                                                        \
            c = _mm512_mask_mov_ps(c, in_seg[g][1], _mm512_permutex2var_ps(r2, kv[g], r3));                    \
        else if (multi)                                                                                        \
            for (int s = 1; s < segs; ++s)                                                                     \
                c = _mm512_mask_mov_ps(c, in_seg[g][s], _mm512_permutex2var_ps(_mm512_loadu_ps(row + LANE_SEG * s), \
                                                                             kv[g], _mm512_loadu_ps(row + LANE_SEG * s + 16))); \
        a[g] = _mm512_fmadd_ps(c, t, a[g]);                                                                    \
    }
static inline __attribute__((always_inline)) void lanes_lane(const lanes_t *restrict L, __m512 (*restrict vv)[LANE_VMAX],
        const __m512i *restrict kv, int base, int l, const int multi, const int NG, int segs,
        __mmask16 (*restrict in_seg)[LANE_SEGS_MAX], __m512 (*restrict acc)[LANE_GROUPS]) {
    const int w = L->w;
    const __m512 zero = _mm512_setzero_ps();
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 a[LANE_GROUPS];
    for (int g = 0; g < NG; ++g) a[g] = zero;
    for (int q = 0; q < L->nq; ++q) {
        const int f = 16 * q + l;
        if (f >= L->nf) {                                                   /* a padding term: 0 * 1 + a */
            for (int g = 0; g < NG; ++g) a[g] = _mm512_add_ps(a[g], zero);
            continue;
        }
        const int i0 = L->idx[f][0], i1 = L->idx[f][1], i2 = L->idx[f][2], i3 = L->idx[f][3];
        const float *restrict row = L->tab + (int64_t)f * w + base;
        const __m512 r0 = _mm512_loadu_ps(row), r1 = _mm512_loadu_ps(row + 16);
        const __m512 r2 = multi == 1 ? _mm512_loadu_ps(row + 32) : zero, r3 = multi == 1 ? _mm512_loadu_ps(row + 48) : zero;
        switch (L->len[f]) {
        case 0: LANE_TERM(one) break;
        case 1: LANE_TERM(vv[g][i0]) break;
        case 2: LANE_TERM(_mm512_mul_ps(vv[g][i0], vv[g][i1])) break;
        case 3: LANE_TERM(_mm512_mul_ps(_mm512_mul_ps(vv[g][i0], vv[g][i1]), vv[g][i2])) break;
        default: LANE_TERM(_mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(vv[g][i0], vv[g][i1]), vv[g][i2]), vv[g][i3])) break;
        }
    }
    for (int g = 0; g < NG; ++g) acc[l][g] = a[g];
}
#undef LANE_TERM

/* currents (units of i_cell) of LANE_GROUPS groups of 16 columns (one column per lane): vv[g][e] the
   variables of group g (vv[g][V] = 1), kv[g] its ON-counts; the first ng groups are stored at out[16 g ..].
   A term's coefficient row and variable indices are read once for all groups, its coefficients from the
   window of the row from the smallest count of the stored groups (the unused groups' currents, not stored,
   may take any coefficients: the permutes read registers only). */
static inline void lanes_eval(const lanes_t *restrict L, __m512 (*restrict vv)[LANE_VMAX], const __m512i *restrict kv,
                              int ng, float *restrict out) {
    __m512i lo = kv[0], hi = kv[0];
    for (int g = 1; g < ng; ++g) {
        lo = _mm512_min_epi32(lo, kv[g]);
        hi = _mm512_max_epi32(hi, kv[g]);
    }
    const int base = _mm512_reduce_min_epi32(lo);                           /* 0 <= base <= counts <= R */
    const int segs = (_mm512_reduce_max_epi32(hi) - base) / LANE_SEG + 1;  /* segments these counts need */
    __m512i kr[LANE_GROUPS];
    for (int g = 0; g < LANE_GROUPS; ++g) kr[g] = _mm512_sub_epi32(kv[g], _mm512_set1_epi32(base));
    __mmask16 in_seg[LANE_GROUPS][LANE_SEGS_MAX];
    for (int g = 0; g < LANE_GROUPS; ++g)
        for (int s = 1; s < segs; ++s)
            in_seg[g][s] = _mm512_cmpeq_epi32_mask(_mm512_srli_epi32(kr[g], 5), _mm512_set1_epi32(s));
    __m512 acc[16][LANE_GROUPS];
    const int half = ng <= LANE_GROUPS / 2;                                 /* the first half of the groups */
#define LANE_CALL(MULTI) (half ? lanes_lane(L, vv, kr, base, l, MULTI, LANE_GROUPS / 2, segs, in_seg, acc) \
                               : lanes_lane(L, vv, kr, base, l, MULTI, LANE_GROUPS, segs, in_seg, acc))
    for (int l = 0; l < 16; ++l) {
        if (segs > 2) LANE_CALL(2);
        else if (segs == 2) LANE_CALL(1);
        else LANE_CALL(0);
    }
#undef LANE_CALL
    for (int g = 0; g < ng; ++g) {
        __m512 s8[8], s4[4];
        for (int i = 0; i < 8; ++i) s8[i] = _mm512_add_ps(acc[8 + i][g], acc[i][g]);
        for (int i = 0; i < 4; ++i) s4[i] = _mm512_add_ps(s8[4 + i], s8[i]);
        _mm512_storeu_ps(out + 16 * g, _mm512_add_ps(_mm512_add_ps(s4[0], s4[2]), _mm512_add_ps(s4[1], s4[3])));
    }
}

/* fused products, four moments: the ON-counts and moments of the columns c0 .. c0 + nb - 1 (nb <= CB) of one
   input vector whose 1s are the rows on[0 .. q), as sums in increasing row order of the basis rows phi[r] that
   each column's conducting cells select (the same additions as a float32 product that accumulates along the
   rows, which is what the caller checked), then the lanes' currents into ia */
static inline void fused_block(const lanes_t *restrict L, const job_t *restrict j, const int32_t *restrict on, int q,
                               int64_t c0, int64_t nb, const float *restrict xr, float *restrict ia, int32_t *restrict kmax,
                               int32_t *restrict kout) {
    const int64_t V = j->V;
    const __m512 zero = _mm512_setzero_ps();
    const __m512i one = _mm512_set1_epi32(1);
    const __m512 onef = _mm512_set1_ps(1.0f);
    __m512 m[4][LANE_GROUPS];
    __m512i kc[LANE_GROUPS];
    for (int h = 0; h < LANE_GROUPS; h += 4) {                 /* four groups at a time */
        __m512 m4[4][4];
        __m512i k4[4];
        for (int g = 0; g < 4; ++g) {
            k4[g] = _mm512_setzero_si512();
            for (int e = 0; e < 4; ++e) m4[e][g] = zero;
        }
        const uint16_t *restrict wm = j->wmask + c0 / 16 + h;  /* G is a multiple of 8: these four groups readable */
        for (int t = 0; t < (16 * h < nb ? q : 0); ++t) {
            const int64_t r = on[t];
            uint64_t w4;
            memcpy(&w4, wm + r * j->wmask_ld, sizeof w4);
            const float *restrict ph = j->phi + r * j->phi_ld;
            const __m512 p0 = _mm512_set1_ps(ph[0]), p1 = _mm512_set1_ps(ph[1]);
            const __m512 p2 = _mm512_set1_ps(ph[2]), p3 = _mm512_set1_ps(ph[3]);
            for (int g = 0; g < 4; ++g) {
                const __mmask16 mk = (__mmask16)(w4 >> (16 * g));
                m4[0][g] = _mm512_mask_add_ps(m4[0][g], mk, m4[0][g], p0);
                m4[1][g] = _mm512_mask3_fmadd_ps(p1, onef, m4[1][g], mk);
                m4[2][g] = _mm512_mask_add_ps(m4[2][g], mk, m4[2][g], p2);
                m4[3][g] = _mm512_mask3_fmadd_ps(p3, onef, m4[3][g], mk);
                k4[g] = _mm512_mask_add_epi32(k4[g], mk, k4[g], one);
            }
        }
        for (int g = 0; g < 4; ++g) {
            kc[h + g] = k4[g];
            for (int e = 0; e < 4; ++e) m[e][h + g] = m4[e][g];
        }
    }
    __m512 vv[LANE_GROUPS][LANE_VMAX];
    for (int g = 0; g < LANE_GROUPS; ++g) {
        for (int e = 0; e < 4; ++e) vv[g][e] = _mm512_add_ps(m[e][g], zero);        /* as the loops form them */
        if (xr) {
            vv[g][4] = _mm512_sub_ps(_mm512_set1_ps(xr[0] + 0.0f), _mm512_cvtepi32_ps(kc[g]));
            for (int e = 0; e < 4; ++e) vv[g][5 + e] = _mm512_sub_ps(_mm512_set1_ps(xr[1 + e] + 0.0f), m[e][g]);
        }
        vv[g][V] = _mm512_set1_ps(1.0f);
    }
    lanes_eval(L, vv, kc, (int)((nb + 15) / 16), ia);
    if (kout)                                           /* the ON-counts, for the margins of certified reads */
        for (int g = 0; g < (int)((nb + 15) / 16); ++g) _mm512_storeu_si512(kout + 16 * g, kc[g]);
    if (kmax) {                                         /* padding columns count 0: no larger than any */
        __m512i mx = kc[0];
        for (int g = 1; g < LANE_GROUPS; ++g) mx = _mm512_max_epi32(mx, kc[g]);
        const int32_t m = _mm512_reduce_max_epi32(mx);
        *kmax = m > *kmax ? m : *kmax;
    }
}

/* fused products, any number of moments (E <= FUSED_EMAX; fused_block is the faster form for four): the
   ON-count and the E moments of the 16 columns of group gi (columns 16 gi ..) of one input vector whose 1s are
   the rows on[0 .. q), each the sum in increasing row order of the basis values phi[r][e] of the rows whose
   cell in that column conducts (as fused_block forms them); E is a constant where fused_block_any calls it */
#define FUSED_EMAX 15
static inline __attribute__((always_inline)) void group_sums(const job_t *restrict j, const int32_t *restrict on,
        int q, int64_t gi, const int E, __m512 (*restrict m)[FUSED_EMAX], __m512i *restrict kc) {
    const __m512i one = _mm512_set1_epi32(1);
    const __m512 onef = _mm512_set1_ps(1.0f);
    __m512 a[FUSED_EMAX], b[FUSED_EMAX];
    __m512i k = _mm512_setzero_si512(), k2 = _mm512_setzero_si512();
    for (int e = 0; e < E; ++e) a[e] = b[e] = _mm512_setzero_ps();
    const uint16_t *restrict wm = j->wmask + gi;
    for (int t = 0; t < q; ++t) {
        const int64_t r = on[t];
        const __mmask16 mk = (__mmask16)wm[r * j->wmask_ld], mk2 = (__mmask16)wm[r * j->wmask_ld + 1];
        const float *restrict ph = j->phi + r * j->phi_ld;
        for (int e = 0; e < E; ++e) {
            const __m512 p = _mm512_set1_ps(ph[e]);
            a[e] = _mm512_mask_add_ps(a[e], mk, a[e], p);
            b[e] = _mm512_mask3_fmadd_ps(p, onef, b[e], mk2);
        }
        k = _mm512_mask_add_epi32(k, mk, k, one);
        k2 = _mm512_mask_add_epi32(k2, mk2, k2, one);
    }
    for (int e = 0; e < E; ++e) { m[0][e] = a[e]; m[1][e] = b[e]; }
    kc[0] = k; kc[1] = k2;
}

/* fused_block for tables of any number of moments E <= FUSED_EMAX with V < LANE_VMAX variables: each group of 16
   columns on its own (its E + 1 sums stay in registers), then the lanes' currents into ia */
static inline void fused_block_any(const lanes_t *restrict L, const job_t *restrict j, const int32_t *restrict on,
                                   int q, int64_t c0, int64_t nb, const float *restrict xr, float *restrict ia,
                                   int32_t *restrict kmax, int32_t *restrict kout) {
    const int64_t E = j->E, V = j->V;
    const __m512 zero = _mm512_setzero_ps();
    const int ng = (int)((nb + 15) / 16);
    __m512 vv[LANE_GROUPS][LANE_VMAX];
    __m512i kc[LANE_GROUPS];
    __m512 mm[LANE_GROUPS][FUSED_EMAX];
    for (int g = 0; g < ng; g += 2) {                   /* two groups at a time (G is a multiple of 8) */
        const int64_t gi = c0 / 16 + g;
        switch (E) {                                    /* the common counts of moments unrolled */
        case 8: group_sums(j, on, q, gi, 8, mm + g, kc + g); break;
        case 12: group_sums(j, on, q, gi, 12, mm + g, kc + g); break;
        default: group_sums(j, on, q, gi, (int)E, mm + g, kc + g); break;
        }
    }
    for (int g = 0; g < LANE_GROUPS; ++g) {
        if (g >= ng) {                                  /* unused groups: zeros, not stored */
            kc[g] = _mm512_setzero_si512();
            for (int64_t e = 0; e <= V; ++e) vv[g][e] = zero;
            continue;
        }
        const __m512 *m = mm[g];
        for (int64_t e = 0; e < E; ++e) vv[g][e] = _mm512_add_ps(m[e], zero);   /* as the loops form them */
        if (xr) {
            vv[g][E] = _mm512_sub_ps(_mm512_set1_ps(xr[0] + 0.0f), _mm512_cvtepi32_ps(kc[g]));
            for (int64_t e = 0; e < E; ++e) vv[g][E + 1 + e] = _mm512_sub_ps(_mm512_set1_ps(xr[1 + e] + 0.0f), m[e]);
        }
        vv[g][V] = _mm512_set1_ps(1.0f);
    }
    lanes_eval(L, vv, kc, ng, ia);
    if (kout)
        for (int g = 0; g < ng; ++g) _mm512_storeu_si512(kout + 16 * g, kc[g]);
    if (kmax) {                                         /* padding columns count 0: no larger than any */
        __m512i mx = kc[0];
        for (int g = 1; g < ng; ++g) mx = _mm512_max_epi32(mx, kc[g]);
        const int32_t m = _mm512_reduce_max_epi32(mx);
        *kmax = m > *kmax ? m : *kmax;
    }
}
#endif
/* rows whose current sums are added up side by side: each row's sum is one chain of float32 additions in
   column order (part of the result, so kept as it is), and a chain's latency bounds a row on its own */
#define RG 8
#define DUP_FLOATS (1 << 19)      /* the repeat cache: at most this many currents and as many codes (4 MiB a thread, beyond 16 slots) */
static double rows(const job_t *j, int *bad_out, int32_t *kmax_out) {
    const int64_t C = j->C, E = j->E, V = j->V, R = j->R, F = j->F, nt = j->nthr, G = j->ngrid;
    const int64_t n0 = j->n0, n1 = j->n1, k_ld = j->k_ld, m_ld = j->m_ld, xs_ld = j->xs_ld;
    const int64_t cur_ld = j->cur_ld, code_ld = j->code_ld;
    const int k_bf16 = j->k_bf16;
    const int64_t D = j->D;
    const int D4 = D == 4;
    const uint16_t *restrict kb = (const uint16_t *)j->k;
    const float *restrict kf32 = (const float *)j->k;
    const float *restrict coef_t = j->coef_t;
    const int32_t *restrict terms = j->terms;
    const float *restrict thr = j->thr;
    const int32_t *restrict gstart = (const int32_t *)j->grid_start;
    const float step = j->step, max_code = j->max_code;
    const float i_cell = j->i_cell, lsb = j->lsb, glo = j->grid_lo, ginv = j->grid_inv, gmax = (float)(G - 1);
    double total = 0.0;
    int32_t kk[CB], lo[CB];
    float ia[CB];
    float v[VMAX + 1][CB];
    for (int64_t c = 0; c < CB; ++c) v[V][c] = 1.0f;
    const float *restrict coef_rows = j->coef_rows;
    const int64_t fpad = j->fpad;
    const int32_t *restrict ti = j->term_idx;
#ifdef __AVX512F__
    /* the AVX-512 loops: the column loop keeps a column's variables and the constant in one register where
       V < 16 (vec1), else in two (V < 32), its terms' factors picked from them by two-register permutes */
    const int vec = j->simd && coef_rows && V < LANE_VMAX;
    const int vec1 = vec && V < 16;                                          /* then E < 16: the shifts are defined */
    const __mmask16 mask_m = vec1 ? (__mmask16)((1u << E) - 1u) : 0;               /* lanes of the moments */
    const __mmask16 mask_nu = vec1 ? (__mmask16)(((1u << E) - 1u) << (E + 1)) : 0; /* lanes of the leak moments */
    const __mmask16 mask_l = vec1 ? (__mmask16)(1u << E) : 0;                      /* lane of L */
    int32_t sh[16];
    for (int l = 0; l < 16; ++l) sh[l] = (l > E && l <= 2 * E) ? (int32_t)(l - E - 1) : 0;
    const __m512i shift_nu = _mm512_loadu_si512(sh);
    lanes_t lanes;
    /* 16 columns at once for tables of four moments, and for any count of moments (up to FUSED_EMAX) where the
       kernel forms them itself (fused products); loading other counts of moments from m would need gathers,
       which made it slower than the column loop (12 moments, AMD EPYC) */
    const int fused = j->wmask != 0;
    const int use_lanes = vec && j->simd == 2 && (E == 4 || (fused && E <= FUSED_EMAX)) && lanes_init(&lanes, j);
    if (fused && !use_lanes) { *bad_out = 2; return 0.0; }
    /* lanes: where column l of 16 finds moment e (E == 4: elements 4 l .. 4 l + 3 of four registers,
       deinterleaved by permutes) */
    int32_t pi[4][16];
    for (int l = 0; l < 16; ++l)
        for (int e = 0; e < 4; ++e) pi[e][l] = (int32_t)((l % 8) * 4 + e);
    const __m512 ones = _mm512_set1_ps(1.0f);
#else
    (void)coef_rows; (void)fpad; (void)ti;
    const int fused = j->wmask != 0;
    if (fused) { *bad_out = 2; return 0.0; }
#endif
    *bad_out = 0;
    *kmax_out = 0;
    if (j->near && (!j->near_margin || !(j->code || j->acc))) {     /* the margins read the codes' search */
#ifdef __AVX512F__
        if (use_lanes) free(lanes.tab);
#endif
        *bad_out = 2;
        return 0.0;
    }
    /* accumulation: each row's codes first in cbuf */
    float *restrict cbuf = j->acc ? (float *)malloc(sizeof(float) * (size_t)(C > 0 ? C : 1)) : 0;
    if (j->acc && (!cbuf || !fused)) {
        free(cbuf);
#ifdef __AVX512F__
        if (use_lanes) free(lanes.tab);
#endif
        *bad_out = 2;
        return 0.0;
    }
    /* fused products: each vector's 1s, in row order */
    int32_t *restrict on = fused ? (int32_t *)malloc(sizeof(int32_t) * (size_t)(j->xb_rows + 16)) : 0;
    if (fused && !on) {
#ifdef __AVX512F__
        free(lanes.tab);
#endif
        *bad_out = 2;
        return 0.0;
    }
    /* rbuf: the scaled currents of up to RG rows, summed after them as RG interleaved chains (NULL: each
       row sums its own as it goes, the same sums); zeros: the operands of an all-zero input row (ON-counts
       and moments 0: zero bits of float32 and bfloat16 alike); zia/zcode: its currents and codes once
       evaluated (zdone; without the buffers every such row is evaluated, with the same results) */
    float *restrict rbuf = (float *)malloc(sizeof(float) * RG * (size_t)(C > 0 ? C : 1));
    const float *restrict zeros = j->zeros;
    float *restrict zia = 0, *restrict zcode = 0;
    uint8_t *restrict znear = 0;
    if ((j->rowmap || fused) && rbuf) {
        zia = (float *)malloc(sizeof(float) * (size_t)(C > 0 ? C : 1));
        zcode = (float *)malloc(sizeof(float) * (size_t)(C > 0 ? C : 1));
        if (j->near) znear = (uint8_t *)malloc((size_t)(C > 0 ? C : 1));
    }
    const int zcache = zia && zcode && (znear || !j->near);
    int zdone = 0;
    /* fused products: a vector that repeats one seen before by this call (im2col patches often do) takes the
       currents, codes and largest ON-count that vector gave, as its own evaluation would give them bit for bit
       (they depend on its bits alone); a direct-mapped cache of dslots vectors, keyed by a hash of the bits and
       checked against the stored bits, so that a collision only costs an evaluation */
    const int64_t dw = fused ? (j->xb_rows + 63) / 64 : 0;        /* 64-bit words of a vector's bits */
    int64_t dslots = 0;
    uint64_t *restrict bits = 0, *restrict dbits = 0, *restrict dhash = 0;
    float *restrict dia = 0, *restrict dcode = 0, *restrict dxs = 0;
    int32_t *restrict dk = 0;
    uint8_t *restrict dnear = 0;
    const int64_t nxs = j->xs ? 1 + E : 0;                          /* leak tables: the row's xs, checked too */
    if (fused && rbuf && C > 0) {
        int64_t want = 16;                                         /* slots: a power of two, at most DUP_FLOATS / C */
        while (want < n1 - n0 && want * 2 * C <= DUP_FLOATS) want *= 2;
        dslots = want;
        bits = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)dw);
        dbits = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)(dslots * dw));
        dhash = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)dslots);
        dia = (float *)malloc(sizeof(float) * (size_t)(dslots * C));
        dcode = (float *)malloc(sizeof(float) * (size_t)(dslots * C));
        dk = (int32_t *)malloc(sizeof(int32_t) * (size_t)dslots);
        dxs = (float *)malloc(sizeof(float) * (size_t)(dslots * nxs + 1));
        if (j->near) dnear = (uint8_t *)malloc((size_t)(dslots * C));
        if (!bits || !dbits || !dhash || !dia || !dcode || !dk || !dxs || (j->near && !dnear)) dslots = 0;   /* without it: every vector evaluated */
        for (int64_t s = 0; s < dslots; ++s) dk[s] = -1;              /* -1: an empty slot */
    }
    for (int64_t i = n0; i < n1; ++i) {
        float *restrict rb = rbuf ? rbuf + ((i - n0) % RG) * C : 0;
        int64_t src = j->rowmap ? j->rowmap[i] : i;                /* the operands' row; < 0: all-zero inputs */
        int q = 0;
        if (fused) {                                /* the vector's 1s (branch-free: they are random) */
            int b = 0;
            const int64_t rr = j->xb_rows;
            if (j->xb_bf16) {
                const uint16_t *restrict xv = (const uint16_t *)j->xb + i * j->xb_ld;
                if (i + 4 < n1) {                   /* the rows lie far apart (a tile of a wider input): ask early */
                    for (int64_t r = 0; r < rr; r += 32) __builtin_prefetch(xv + 4 * j->xb_ld + r);
                    if (cbuf)                       /* and the accumulator's row, read and written after the codes */
                        for (int64_t c = 0; c < C; c += 16) __builtin_prefetch(j->acc + (i + 4) * j->acc_ld + c, 1);
                }
                int64_t r = 0;
#if defined(__AVX512BW__) && defined(__AVX512VL__)
                /* 16 at a time: the 1s' indices compressed into on[] (room for 16 beyond R') */
                const __m512i step16 = _mm512_set1_epi32(16);
                __m512i ridx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
                for (; r + 16 <= rr; r += 16, ridx = _mm512_add_epi32(ridx, step16)) {
                    const __m256i u = _mm256_loadu_si256((const __m256i *)(xv + r));
                    const __mmask16 one = _mm256_cmpeq_epi16_mask(u, _mm256_set1_epi16(0x3f80));
                    const __mmask16 zero = _mm256_cmpeq_epi16_mask(_mm256_and_si256(u, _mm256_set1_epi16(0x7fff)),
                                                                   _mm256_setzero_si256());
                    b |= (uint16_t)(one | zero) != 0xffffu;
                    _mm512_storeu_si512(on + q, _mm512_maskz_compress_epi32(one, ridx));
                    q += __builtin_popcount((unsigned)one);
                    if (bits) {
                        if (r % 64 == 0) bits[r / 64] = 0;
                        bits[r / 64] |= (uint64_t)one << (r % 64);
                    }
                }
#endif
                for (; r < rr; ++r) {
                    const uint16_t u = xv[r];       /* 0x3f80: 1.0; 0 or -0: 0 */
                    on[q] = (int32_t)r;
                    if (bits) {
                        if (r % 64 == 0) bits[r / 64] = 0;
                        bits[r / 64] |= (uint64_t)(u == 0x3f80u) << (r % 64);
                    }
                    q += u == 0x3f80u;
                    b |= (u != 0x3f80u) & ((u & 0x7fffu) != 0);
                }
            } else {
                const float *restrict xv = (const float *)j->xb + i * j->xb_ld;
                for (int64_t r = 0; r < rr; ++r) {
                    on[q] = (int32_t)r;
                    if (bits) {
                        if (r % 64 == 0) bits[r / 64] = 0;
                        bits[r / 64] |= (uint64_t)(xv[r] == 1.0f) << (r % 64);
                    }
                    q += xv[r] == 1.0f;
                    b |= (xv[r] != 1.0f) & (xv[r] != 0.0f);
                }
            }
            if (b) { *bad_out = 1; break; }
            src = q ? i : -1;
        }
        const float *restrict mr = src >= 0 && j->m ? j->m + src * m_ld : zeros;
        const float *restrict xr = j->xs ? (src >= 0 ? j->xs + src * xs_ld : zeros) : 0;
        float *restrict cur = j->cur ? j->cur + i * cur_ld : 0;
        float *restrict code = cbuf ? cbuf : (j->code ? j->code + i * code_ld : 0);
        uint8_t *restrict nrow = j->near ? j->near + i * j->near_ld : 0;
        float rowsum = 0.0f;
        int32_t *restrict kmax = j->max_stride > 0 && i % j->max_stride == 0 ? kmax_out : 0;
        (void)kmax;                                 /* (portable builds: no fused products) */
        int32_t rowk = 0;                           /* fused products: the row's largest ON-count */
        int64_t dslot = -1;
        uint64_t dh = 0;
        if (dslots && src >= 0) {                   /* a vector seen before: its results */
            dh = (uint64_t)q;
            for (int64_t w = 0; w < dw; ++w) dh = (dh ^ bits[w]) * 0x9E3779B97F4A7C15ull;
            dh ^= dh >> 31;
            dslot = (int64_t)(dh & (uint64_t)(dslots - 1));
            if (dk[dslot] >= 0 && dhash[dslot] == dh && !memcmp(dbits + dslot * dw, bits, sizeof(uint64_t) * (size_t)dw)
                && (!nxs || !memcmp(dxs + dslot * nxs, xr, sizeof(float) * (size_t)nxs))) {
                memcpy(rb, dia + dslot * C, sizeof(float) * (size_t)C);
                if (cur) memcpy(cur, rb, sizeof(float) * (size_t)C);
                if (code) memcpy(code, dcode + dslot * C, sizeof(float) * (size_t)C);
                if (nrow) memcpy(nrow, dnear + dslot * C, (size_t)C);
                if (kmax && dk[dslot] > *kmax) *kmax = dk[dslot];
                goto row_done;
            }
        }
        if (src < 0 && zdone) {                    /* an all-zero row again: the same currents and codes */
            memcpy(rb, zia, sizeof(float) * (size_t)C);
            if (cur) memcpy(cur, zia, sizeof(float) * (size_t)C);
            if (code) memcpy(code, zcode, sizeof(float) * (size_t)C);
            if (nrow) memcpy(nrow, znear, (size_t)C);
            goto row_done;
        }
#ifdef __AVX512F__
        /* the row's part of every column's variables: the inputs' sums and moments at the leak
           variables' lanes (L = xs0 - k, nu_e = xs_e - m_e) and the constant 1 at lane V */
        __m512 xz = _mm512_setzero_ps();
        if (vec1) {
            if (xr) xz = _mm512_maskz_loadu_ps((__mmask16)(((1u << (E + 1)) - 1u) << E), xr - E);
            xz = _mm512_mask_mov_ps(xz, (__mmask16)(1u << V), _mm512_set1_ps(1.0f));
        }
#endif
        for (int64_t c0 = 0; c0 < C; c0 += CB) {
            const int64_t nb = C - c0 < CB ? C - c0 : CB;
#ifdef __AVX512F__
            if (fused) {
                if (E == 4) fused_block(&lanes, j, on, q, c0, nb, xr, ia, &rowk, j->near ? kk : 0);
                else fused_block_any(&lanes, j, on, q, c0, nb, xr, ia, &rowk, j->near ? kk : 0);
                goto evaluated;
            }
#endif
            if (k_bf16) {
                const uint16_t *restrict kr = src >= 0 ? kb + src * k_ld + c0 : (const uint16_t *)zeros;
                for (int64_t c = 0; c < nb; ++c) {
                    uint32_t u = ((uint32_t)kr[c]) << 16; float kv; memcpy(&kv, &u, 4);
                    int32_t k = (int32_t)(kv + 0.5f);
                    kk[c] = k < 0 ? 0 : (k > R ? (int32_t)R : k);
                }
            } else {
                const float *restrict kr = src >= 0 ? kf32 + src * k_ld + c0 : zeros;
                for (int64_t c = 0; c < nb; ++c) {
                    int32_t k = (int32_t)(kr[c] + 0.5f);
                    kk[c] = k < 0 ? 0 : (k > R ? (int32_t)R : k);
                }
            }
#ifdef __AVX512F__
            if (vec) {
                int64_t c = 0;
                if (use_lanes) {
                    /* 16 columns at a time (lanes_eval): the variables as vectors over the columns, each as
                       the loop below forms it (moments + 0; leak: (L_in + 0) - k and (nu_in + 0) - m) */
                    const __m512 zero = _mm512_setzero_ps();
                    __m512 vv[LANE_GROUPS][LANE_VMAX];
                    __m512i kv[LANE_GROUPS];
                    const int ng = (int)(nb / 16);
                    for (int g = 0; g < ng; ++g, c += 16) {
                        kv[g] = _mm512_loadu_si512(kk + c);
                        const float *restrict mc = mr + (c0 + c) * E;
                        __m512 raw[16];
                        {
                            const __m512 a0 = _mm512_loadu_ps(mc), a1 = _mm512_loadu_ps(mc + 16);
                            const __m512 a2 = _mm512_loadu_ps(mc + 32), a3 = _mm512_loadu_ps(mc + 48);
                            for (int e = 0; e < 4; ++e) {
                                const __m512i p = _mm512_loadu_si512(pi[e]);
                                raw[e] = _mm512_mask_blend_ps((__mmask16)0xFF00, _mm512_permutex2var_ps(a0, p, a1),
                                                              _mm512_permutex2var_ps(a2, p, a3));
                            }
                        }
                        for (int64_t e = 0; e < E; ++e) vv[g][e] = _mm512_add_ps(raw[e], zero);
                        if (xr) {
                            vv[g][E] = _mm512_sub_ps(_mm512_set1_ps(xr[0] + 0.0f), _mm512_cvtepi32_ps(kv[g]));
                            for (int64_t e = 0; e < E; ++e)
                                vv[g][E + 1 + e] = _mm512_sub_ps(_mm512_set1_ps(xr[1 + e] + 0.0f), raw[e]);
                        }
                        vv[g][V] = ones;
                    }
                    for (int g = ng; g < LANE_GROUPS; ++g) {              /* unused groups: zeros, not stored */
                        kv[g] = _mm512_setzero_si512();
                        for (int64_t e = 0; e <= V; ++e) vv[g][e] = zero;
                    }
                    if (ng) lanes_eval(&lanes, vv, kv, ng, ia);
                }
                /* one column at a time: its variables in one register (the moments are contiguous, the
                   leak variables and the constant come from the row's own vector xz), 16 terms per step
                   as products of three (or four) permutations of it, times the count's coefficient row */
                if (!vec1) {
                    /* V >= 16: the variables (formed as above: moments + 0; leak: (L_in + 0) - k and
                       (nu_in + 0) - m; the constant 1 at V) in two registers, the factors by two-register permutes */
                    float vb[LANE_VMAX];
                    for (int e = 0; e < LANE_VMAX; ++e) vb[e] = 0.0f;
                    vb[V] = 1.0f;
                    for (; c < nb; ++c) {
                        const float *restrict mc = mr + (c0 + c) * E;
                        for (int64_t e = 0; e < E; ++e) vb[e] = mc[e] + 0.0f;
                        if (xr) {
                            vb[E] = (xr[0] + 0.0f) - (float)kk[c];
                            for (int64_t e = 0; e < E; ++e) vb[E + 1 + e] = (xr[1 + e] + 0.0f) - mc[e];
                        }
                        const __m512 va = _mm512_loadu_ps(vb), vc = _mm512_loadu_ps(vb + 16);
                        const float *restrict row = coef_rows + (int64_t)kk[c] * fpad;
                        __m512 acc = _mm512_setzero_ps();
                        for (int64_t q = 0; q < fpad; q += 16) {
                            __m512 t = _mm512_mul_ps(_mm512_permutex2var_ps(va, _mm512_loadu_si512(ti + q), vc),
                                                     _mm512_permutex2var_ps(va, _mm512_loadu_si512(ti + fpad + q), vc));
                            t = _mm512_mul_ps(t, _mm512_permutex2var_ps(va, _mm512_loadu_si512(ti + 2 * fpad + q), vc));
                            if (D4) t = _mm512_mul_ps(t, _mm512_permutex2var_ps(va, _mm512_loadu_si512(ti + 3 * fpad + q), vc));
                            acc = _mm512_fmadd_ps(_mm512_loadu_ps(row + q), t, acc);
                        }
                        ia[c] = _mm512_reduce_add_ps(acc);
                    }
                }
                for (; c < nb; ++c) {
                    const __m512 mz = _mm512_maskz_loadu_ps(mask_m, mr + (c0 + c) * E);
                    __m512 vz = _mm512_add_ps(mz, xz);
                    if (xr) {
                        vz = _mm512_sub_ps(vz, _mm512_maskz_permutexvar_ps(mask_nu, shift_nu, mz));
                        vz = _mm512_mask_sub_ps(vz, mask_l, vz, _mm512_set1_ps((float)kk[c]));
                    }
                    const float *restrict row = coef_rows + (int64_t)kk[c] * fpad;
                    __m512 acc = _mm512_setzero_ps();
                    for (int64_t q = 0; q < fpad; q += 16) {
                        __m512 t = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_loadu_si512(ti + q), vz),
                                                 _mm512_permutexvar_ps(_mm512_loadu_si512(ti + fpad + q), vz));
                        t = _mm512_mul_ps(t, _mm512_permutexvar_ps(_mm512_loadu_si512(ti + 2 * fpad + q), vz));
                        if (D4) t = _mm512_mul_ps(t, _mm512_permutexvar_ps(_mm512_loadu_si512(ti + 3 * fpad + q), vz));
                        acc = _mm512_fmadd_ps(_mm512_loadu_ps(row + q), t, acc);
                    }
                    ia[c] = _mm512_reduce_add_ps(acc);
                }
            } else
#endif
            {
                /* the variables of this block of columns, one row of v per variable */
                for (int64_t e = 0; e < E; ++e)
                    for (int64_t c = 0; c < nb; ++c) v[e][c] = mr[(c0 + c) * E + e];
                if (xr) {
                    for (int64_t c = 0; c < nb; ++c) v[E][c] = xr[0] - (float)kk[c];
                    for (int64_t e = 0; e < E; ++e)
                        for (int64_t c = 0; c < nb; ++c) v[E + 1 + e][c] = xr[1 + e] - v[e][c];
                }
                for (int64_t c = 0; c < nb; ++c) ia[c] = 0.0f;
                for (int64_t f = 0; f < F; ++f) {
                    const int32_t *restrict tf = terms + D * f;
                    const float *restrict a = v[tf[0]], *restrict b = v[tf[1]], *restrict d = v[tf[2]];
                    const float *restrict g = D4 ? v[tf[3]] : v[V];       /* v[V]: the constant 1 */
                    const float *restrict cf = coef_t + f * (R + 1);
                    for (int64_t c = 0; c < nb; ++c) ia[c] += cf[kk[c]] * (a[c] * b[c] * d[c] * g[c]);
                }
            }
#ifdef __AVX512F__
        evaluated:
#endif
            if (rb) for (int64_t c = 0; c < nb; ++c) { ia[c] *= i_cell; rb[c0 + c] = ia[c]; }
            else for (int64_t c = 0; c < nb; ++c) { ia[c] *= i_cell; rowsum += ia[c]; }
            if (cur) for (int64_t c = 0; c < nb; ++c) cur[c0 + c] = ia[c];
            if (code && step > 0.0f) {
                /* evenly spaced levels: the nearest level by rounding, as cosim.surrogate.adc.ADC.digitize does
                   (float32: i / step, minus 1/2, ceil, clip, times the AND-counts per code) */
                for (int64_t c = 0; c < nb; ++c) {
                    float q = ceilf(ia[c] / step - 0.5f);
                    q = q < 0.0f ? 0.0f : (q > max_code ? max_code : q);
                    code[c0 + c] = q * lsb;
                }
                if (nrow) {                 /* the levels' midpoints below and above: (q -+ 1/2) step */
                    const float *restrict mg = j->near_margin;
                    for (int64_t c = 0; c < nb; ++c) {
                        const float q = code[c0 + c] / lsb, m = mg[kk[c]];
                        const float below = q > 0.0f ? (q - 0.5f) * step : -INFINITY;
                        const float above = q < max_code ? (q + 0.5f) * step : INFINITY;
                        nrow[c0 + c] = (uint8_t)((ia[c] - below <= m) | (above - ia[c] <= m));
                    }
                }
            } else if (code) {
                /* the number of thresholds strictly below ia: a guess from a uniform grid over the
                   thresholds (each cell holds at most one), corrected by one step each way, checked */
                const float *restrict tp = thr;           /* tp[-1] = -inf, tp[nt] = +inf */
                int32_t bad = 0;
                for (int64_t c = 0; c < nb; ++c) {
                    const float v = ia[c];
                    float gx = (v - glo) * ginv;
                    gx = gx < gmax ? gx : gmax;            /* NaN -> the last cell: all thresholds, */
                    gx = gx > 0.0f ? gx : 0.0f;            /* as torch.bucketize places NaN */
                    int32_t l = gstart[(int32_t)gx];
                    l -= (tp[l - 1] >= v);
                    l += (tp[l] < v);
                    bad |= (tp[l - 1] >= v) | (tp[l] < v);
                    lo[c] = l;
                }
                if (bad) {
                    for (int64_t c = 0; c < nb; ++c) {
                        int64_t l = lo[c]; const float v = ia[c];
                        while (l > 0 && thr[l - 1] >= v) --l;
                        while (l < nt && thr[l] < v) ++l;
                        lo[c] = (int32_t)l;
                    }
                }
                for (int64_t c = 0; c < nb; ++c) code[c0 + c] = (float)lo[c] * lsb;
                if (nrow) {                 /* the thresholds below and above: tp[lo - 1], tp[lo] */
                    const float *restrict mg = j->near_margin;
                    for (int64_t c = 0; c < nb; ++c) {
                        const float m = mg[kk[c]];
                        nrow[c0 + c] = (uint8_t)((ia[c] - tp[lo[c] - 1] <= m) | (tp[lo[c]] - ia[c] <= m));
                    }
                }
            }
        }
        if (kmax && rowk > *kmax) *kmax = rowk;
        if (dslot >= 0) {                           /* this vector's results, for its repeats */
            memcpy(dbits + dslot * dw, bits, sizeof(uint64_t) * (size_t)dw);
            dhash[dslot] = dh;
            dk[dslot] = rowk;
            if (nxs) memcpy(dxs + dslot * nxs, xr, sizeof(float) * (size_t)nxs);
            memcpy(dia + dslot * C, rb, sizeof(float) * (size_t)C);
            if (code) memcpy(dcode + dslot * C, code, sizeof(float) * (size_t)C);
            if (nrow) memcpy(dnear + dslot * C, nrow, (size_t)C);
        }
        if (src < 0 && zcache) {                   /* the first all-zero row */
            memcpy(zia, rb, sizeof(float) * (size_t)C);
            if (code) memcpy(zcode, code, sizeof(float) * (size_t)C);
            if (nrow) memcpy(znear, nrow, (size_t)C);
            zdone = 1;
        }
    row_done:
        if (cbuf) {                                 /* accumulation: integers times +-1, exact in any order */
            float *restrict ar = j->acc + i * j->acc_ld;
            const float sxi = j->sx ? j->sx[i] : 1.0f;
            if (j->sw) for (int64_t c = 0; c < C; ++c) ar[c] += sxi * j->sw[c] * cbuf[c];
            else if (j->sx) for (int64_t c = 0; c < C; ++c) ar[c] += sxi * cbuf[c];
            else for (int64_t c = 0; c < C; ++c) ar[c] += cbuf[c];
        }
        if (!rb) {
            total += (double)rowsum;
        } else if ((i - n0) % RG == RG - 1 || i == n1 - 1) {   /* the buffered rows' sums, in row order */
            const int64_t g = (i - n0) % RG + 1;
            float s[RG] = {0.0f};
            if (g == RG) {
                for (int64_t c = 0; c < C; ++c)
                    for (int r = 0; r < RG; ++r) s[r] += rbuf[r * C + c];
            } else {
                for (int64_t r = 0; r < g; ++r)
                    for (int64_t c = 0; c < C; ++c) s[r] += rbuf[r * C + c];
            }
            for (int64_t r = 0; r < g; ++r) total += (double)s[r];
        }
    }
    free(rbuf); free(zia); free(zcode); free(znear); free(on); free(cbuf);
    free(bits); free(dbits); free(dhash); free(dia); free(dcode); free(dk); free(dxs); free(dnear);
#ifdef __AVX512F__
    if (use_lanes) free(lanes.tab);
#endif
    return total;
}

static void *run(void *arg) {
    job_t *j = (job_t *)arg;
    j->sum = rows(j, &j->bad, &j->kmax);
    return 0;
}

/* the threads for n vectors: 1 .. MAX_THREADS, at least 256 vectors a thread */
#define MAX_THREADS 64
static int thread_count(int64_t n, int threads) {
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (n < 256 * (int64_t)threads) threads = n >= 256 ? (int)(n / 256) : 1;
    return threads;
}

/* fn on each of the threads jobs at jobs + t * size (each set up by the caller): job 0 on this thread, the
   others on threads of their own, a job whose thread cannot start run here after job 0 */
static void run_jobs(void *(*fn)(void *), char *jobs, size_t size, int threads) {
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int t = 1; t < threads; ++t)
        started[t] = pthread_create(&tid[t], 0, fn, jobs + t * size) == 0;
    fn(jobs);
    for (int t = 1; t < threads; ++t) {
        if (started[t]) pthread_join(tid[t], 0); else fn(jobs + t * size);
    }
}

/* one pass: rows n0 .. n1 - 1 split over the threads; its sum is the threads' sums added in thread order */
static int eval_pass(job_t *proto, int64_t n0, int64_t n1, int threads, double *sum, int32_t *kmax) {
    job_t jobs[MAX_THREADS];
    int64_t n = n1 - n0;
    threads = thread_count(n, threads);
    for (int t = 0; t < threads; ++t) {
        jobs[t] = *proto;
        jobs[t].n0 = n0 + n * t / threads;
        jobs[t].n1 = n0 + n * (t + 1) / threads;
    }
    run_jobs(run, (char *)jobs, sizeof(job_t), threads);
    double s = 0.0;
    int bad = 0;
    for (int t = 0; t < threads; ++t) {
        s += jobs[t].sum;
        bad = bad > jobs[t].bad ? bad : jobs[t].bad;
        *kmax = *kmax > jobs[t].kmax ? *kmax : jobs[t].kmax;
    }
    *sum = s;
    return bad;
}

int cosim_surrogate_eval(job_t *proto, int threads) {
    const int64_t n0 = proto->n0, n1 = proto->n1, step = proto->chunk > 0 ? proto->chunk : (n1 > n0 ? n1 - n0 : 1);
    double total = 0.0;
    int bad = 0;
    int32_t kmax = 0;
    for (int64_t s0 = n0; s0 < n1 && !bad; s0 += step) {
        double s = 0.0;
        bad = eval_pass(proto, s0, s0 + step < n1 ? s0 + step : n1, threads, &s, &kmax);
        total += s;
    }
    proto->kmax = kmax;
    proto->sum = total;
    proto->bad = bad;
    return bad;
}

/* The products of 0/1 input vectors with the weight-side operands as sums of the rows their 1s select:
   k[i, c] = sum over the rows r with x[i, r] = 1 of wk[r, c], and m[i, j] likewise of wm[r, j], each added
   in increasing r from 0 in float32. A float32 matrix product that accumulates along r in that order (the
   order cosim.surrogate.evaluate checks for, once per shape, before it uses these sums) gives the same
   values: its x = 0 terms add a zero, its x = 1 terms the weight itself (zeros may differ in sign only).
   The work is the number of 1s rather than of rows. */
typedef struct {
    int64_t n0, n1, R, C, N;
    const void *x; int64_t x_ld; int x_bf16;   /* (n, R) 0/1 inputs, bfloat16 or float32 */
    const float *wk; const float *wm;          /* (R, C) and (R, N), row-major */
    float *k; int64_t k_ld; float *m; int64_t m_ld;
    int bad;                                   /* 1: an input is neither 0 nor 1, 2: no memory (nothing written) */
} sums_t;

/* out[i, 0 .. nb) of every vector i in [0, n) for one block of nb <= SB columns of w (rows ld apart): the
   block's rows stay in the L1 cache while every vector adds the ones its 1s select (lists on[i * R ..],
   q[i] entries). SB columns a block: 128 for up to 64 rows (8 accumulators), else 64 (a block's rows fit the
   cache). */
#define SB 128
#define SUM_BLOCK(NAME, W)                                                                                   \
static void NAME(const float *restrict w, int64_t ld, int64_t nb, const int32_t *restrict on,              \
                 const int32_t *restrict q, int64_t R, int64_t n, float *restrict out, int64_t out_ld) {    \
    SUM_BLOCK_SIMD(W)                                                                                        \
    for (int64_t i = 0; i < n; ++i) {                                                                        \
        const int32_t *restrict oi = on + i * R;                                                             \
        float a[W];                                                                                          \
        for (int64_t j = 0; j < nb; ++j) a[j] = 0.0f;                                                        \
        for (int32_t t = 0; t < q[i]; ++t) {                                                                 \
            const float *restrict wr = w + (int64_t)oi[t] * ld;                                              \
            for (int64_t j = 0; j < nb; ++j) a[j] += wr[j];                                                  \
        }                                                                                                    \
        for (int64_t j = 0; j < nb; ++j) out[i * out_ld + j] = a[j];                                         \
    }                                                                                                        \
}
#ifdef __AVX512F__
#define SUM_BLOCK_SIMD(W)                                                                                    \
    if (nb == W) {                                                                                           \
        for (int64_t i = 0; i < n; ++i) {                                                                    \
            const int32_t *restrict oi = on + i * R;                                                         \
            __m512 a[W / 16];                                                                                \
            for (int u = 0; u < W / 16; ++u) a[u] = _mm512_setzero_ps();                                     \
            for (int32_t t = 0; t < q[i]; ++t) {                                                             \
                const float *restrict wr = w + (int64_t)oi[t] * ld;                                          \
                for (int u = 0; u < W / 16; ++u) a[u] = _mm512_add_ps(a[u], _mm512_loadu_ps(wr + 16 * u));  \
            }                                                                                                \
            for (int u = 0; u < W / 16; ++u) _mm512_storeu_ps(out + i * out_ld + 16 * u, a[u]);              \
        }                                                                                                    \
        return;                                                                                              \
    }
#else
#define SUM_BLOCK_SIMD(W)
#endif
SUM_BLOCK(sum_block128, 128)
SUM_BLOCK(sum_block64, 64)

static void *sums_run(void *arg) {
    sums_t *s = (sums_t *)arg;
    const int64_t n = s->n1 - s->n0, R = s->R;
    int32_t *on = (int32_t *)malloc(sizeof(int32_t) * (size_t)((n > 0 ? n : 1) * (R > 0 ? R : 1)));
    int32_t *q = (int32_t *)malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    if (!on || !q) { free(on); free(q); s->bad = 2; return 0; }
    int bad = 0;
    for (int64_t i = 0; i < n; ++i) {              /* each vector's 1s, in increasing row order */
        int32_t c = 0;
        int32_t *restrict oi = on + i * R;
        if (s->x_bf16) {
            const uint16_t *restrict xr = (const uint16_t *)s->x + (s->n0 + i) * s->x_ld;
            for (int64_t r = 0; r < R; ++r) {         /* without branches: the 1s are random */
                const uint16_t b = xr[r] & 0x7fffu;        /* 0x3f80: 1.0; 0 (or -0): 0 */
                oi[c] = (int32_t)r;
                c += b == 0x3f80u;
                bad |= (b != 0x3f80u) & (b != 0);
            }
        } else {
            const float *restrict xr = (const float *)s->x + (s->n0 + i) * s->x_ld;
            for (int64_t r = 0; r < R; ++r) {
                oi[c] = (int32_t)r;
                c += xr[r] == 1.0f;
                bad |= (xr[r] != 1.0f) & (xr[r] != 0.0f);
            }
        }
        q[i] = c;
    }
    /* each block of SB columns copied to consecutive memory first: rows of a long matrix lie a multiple
       of 4 KiB apart, so that their blocks would compete for the same few L1 cache sets */
    const int64_t sb = R <= 64 ? 128 : 64;
    float *pack = (float *)malloc(sizeof(float) * (size_t)((R > 0 ? R : 1) * SB));
    if (!pack) bad = 2;
    if (!bad) {
        float *k = s->k + s->n0 * s->k_ld, *m = s->m + s->n0 * s->m_ld;
        for (int part = 0; part < 2; ++part) {
            const float *w = part ? s->wm : s->wk;
            const int64_t N = part ? s->N : s->C;
            for (int64_t j0 = 0; j0 < N; j0 += sb) {
                const int64_t nb = N - j0 < sb ? N - j0 : sb;
                for (int64_t r = 0; r < R; ++r) memcpy(pack + r * sb, w + r * N + j0, sizeof(float) * (size_t)nb);
                (sb == 128 ? sum_block128 : sum_block64)(pack, sb, nb, on, q, R, n, (part ? m : k) + j0,
                                                         part ? s->m_ld : s->k_ld);
            }
        }
    }
    s->bad = bad;
    free(on); free(q); free(pack);
    return 0;
}

int cosim_surrogate_sparse_sums(sums_t *proto, int threads) {
    sums_t jobs[MAX_THREADS];
    int64_t n0 = proto->n0, n = proto->n1 - proto->n0;
    threads = thread_count(n, threads);
    for (int t = 0; t < threads; ++t) {
        jobs[t] = *proto;
        jobs[t].n0 = n0 + n * t / threads;
        jobs[t].n1 = n0 + n * (t + 1) / threads;
        jobs[t].bad = 0;
    }
    run_jobs(sums_run, (char *)jobs, sizeof(sums_t), threads);
    int bad = 0;
    for (int t = 0; t < threads; ++t) bad = bad > jobs[t].bad ? bad : jobs[t].bad;
    proto->bad = bad;
    return bad;
}

/* 1 where this library was compiled with the AVX-512 loops (and so has the lanes and fused products), else 0 */
int cosim_surrogate_simd(void) {
#ifdef __AVX512F__
    return 1;
#else
    return 0;
#endif
}

int64_t cosim_surrogate_sums_layout(int64_t *out, int64_t n) {
    const int64_t v[] = {(int64_t)sizeof(sums_t), (int64_t)offsetof(sums_t, x), (int64_t)offsetof(sums_t, wk),
                         (int64_t)offsetof(sums_t, k), (int64_t)offsetof(sums_t, bad)};
    const int64_t m = (int64_t)(sizeof(v) / sizeof(v[0]));
    for (int64_t i = 0; i < n && i < m; ++i) out[i] = v[i];
    return m;
}

/* the layout of job_t: its size, then the offsets of the fields listed in kernel.py (JOB_LAYOUT_FIELDS) */
int64_t cosim_surrogate_job_layout(int64_t *out, int64_t n) {
    const int64_t v[] = {(int64_t)sizeof(job_t), (int64_t)offsetof(job_t, k), (int64_t)offsetof(job_t, terms),
                         (int64_t)offsetof(job_t, i_cell), (int64_t)offsetof(job_t, thr),
                         (int64_t)offsetof(job_t, step), (int64_t)offsetof(job_t, code),
                         (int64_t)offsetof(job_t, rowmap), (int64_t)offsetof(job_t, zeros),
                         (int64_t)offsetof(job_t, wmask), (int64_t)offsetof(job_t, bad), (int64_t)offsetof(job_t, sum)};
    const int64_t m = (int64_t)(sizeof(v) / sizeof(v[0]));
    for (int64_t i = 0; i < n && i < m; ++i) out[i] = v[i];
    return m;
}
