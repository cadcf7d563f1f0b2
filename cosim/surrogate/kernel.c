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
    int simd;                                  /* 1: the AVX-512 term loop where compiled in; 0: the portable one */
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
    double sum;                                /* sum of the currents (A) */
} job_t;

#define CB 64
#define VMAX 40
/* rows whose current sums are added up side by side: each row's sum is one chain of float32 additions in
   column order (part of the result, so kept as it is), and a chain's latency bounds a row on its own */
#define RG 8
static double rows(const job_t *j) {
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
    const int vec = j->simd && coef_rows && V < 16;                       /* then E < 16: the shifts are defined */
    const __mmask16 mask_m = vec ? (__mmask16)((1u << E) - 1u) : 0;               /* lanes of the moments */
    const __mmask16 mask_nu = vec ? (__mmask16)(((1u << E) - 1u) << (E + 1)) : 0; /* lanes of the leak moments */
    const __mmask16 mask_l = vec ? (__mmask16)(1u << E) : 0;                      /* lane of L */
    int32_t sh[16];
    for (int l = 0; l < 16; ++l) sh[l] = (l > E && l <= 2 * E) ? (int32_t)(l - E - 1) : 0;
    const __m512i shift_nu = _mm512_loadu_si512(sh);
#else
    (void)coef_rows; (void)fpad; (void)ti;
#endif
    /* rbuf: the scaled currents of up to RG rows, summed after them as RG interleaved chains (NULL: each
       row sums its own as it goes, the same sums); zeros: the operands of an all-zero input row (ON-counts
       and moments 0: zero bits of float32 and bfloat16 alike); zia/zcode: its currents and codes once
       evaluated (zdone; without the buffers every such row is evaluated, with the same results) */
    float *restrict rbuf = (float *)malloc(sizeof(float) * RG * (size_t)(C > 0 ? C : 1));
    const float *restrict zeros = j->zeros;
    float *restrict zia = 0, *restrict zcode = 0;
    if (j->rowmap && rbuf) {
        zia = (float *)malloc(sizeof(float) * (size_t)(C > 0 ? C : 1));
        zcode = (float *)malloc(sizeof(float) * (size_t)(C > 0 ? C : 1));
    }
    const int zcache = zia && zcode;
    int zdone = 0;
    for (int64_t i = n0; i < n1; ++i) {
        float *restrict rb = rbuf ? rbuf + ((i - n0) % RG) * C : 0;
        const int64_t src = j->rowmap ? j->rowmap[i] : i;          /* the operands' row; < 0: all-zero inputs */
        const float *restrict mr = src >= 0 ? j->m + src * m_ld : zeros;
        const float *restrict xr = j->xs ? (src >= 0 ? j->xs + src * xs_ld : zeros) : 0;
        float *restrict cur = j->cur ? j->cur + i * cur_ld : 0;
        float *restrict code = j->code ? j->code + i * code_ld : 0;
        float rowsum = 0.0f;
        if (src < 0 && zdone) {                    /* an all-zero row again: the same currents and codes */
            memcpy(rb, zia, sizeof(float) * (size_t)C);
            if (cur) memcpy(cur, zia, sizeof(float) * (size_t)C);
            if (code) memcpy(code, zcode, sizeof(float) * (size_t)C);
            goto row_done;
        }
#ifdef __AVX512F__
        /* the row's part of every column's variables: the inputs' sums and moments at the leak
           variables' lanes (L = xs0 - k, nu_e = xs_e - m_e) and the constant 1 at lane V */
        __m512 xz = _mm512_setzero_ps();
        if (vec) {
            if (xr) xz = _mm512_maskz_loadu_ps((__mmask16)(((1u << (E + 1)) - 1u) << E), xr - E);
            xz = _mm512_mask_mov_ps(xz, (__mmask16)(1u << V), _mm512_set1_ps(1.0f));
        }
#endif
        for (int64_t c0 = 0; c0 < C; c0 += CB) {
            const int64_t nb = C - c0 < CB ? C - c0 : CB;
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
                /* one column at a time: its variables in one register (the moments are contiguous, the
                   leak variables and the constant come from the row's own vector xz), 16 terms per step
                   as products of three (or four) permutations of it, times the count's coefficient row */
                for (int64_t c = 0; c < nb; ++c) {
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
            }
        }
        if (src < 0 && zcache) {                   /* the first all-zero row */
            memcpy(zia, rb, sizeof(float) * (size_t)C);
            if (code) memcpy(zcode, code, sizeof(float) * (size_t)C);
            zdone = 1;
        }
    row_done:
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
    free(rbuf); free(zia); free(zcode);
    return total;
}

static void *run(void *arg) {
    job_t *j = (job_t *)arg;
    j->sum = rows(j);
    return 0;
}

int cosim_surrogate_eval(job_t *proto, int threads) {
    job_t jobs[64];
    pthread_t tid[64];
    int started[64];
    int64_t n0 = proto->n0, n = proto->n1 - proto->n0;
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    if (n < 256 * (int64_t)threads) threads = n >= 256 ? (int)(n / 256) : 1;   /* >= 256 vectors a thread */
    for (int t = 0; t < threads; ++t) {
        jobs[t] = *proto;
        jobs[t].n0 = n0 + n * t / threads;
        jobs[t].n1 = n0 + n * (t + 1) / threads;
        started[t] = 0;
    }
    for (int t = 1; t < threads; ++t)
        started[t] = pthread_create(&tid[t], 0, run, &jobs[t]) == 0;
    run(&jobs[0]);
    for (int t = 1; t < threads; ++t) {
        if (started[t]) pthread_join(tid[t], 0); else run(&jobs[t]);
    }
    double s = 0.0;
    for (int t = 0; t < threads; ++t) s += jobs[t].sum;
    proto->sum = s;
    return 0;
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
    sums_t jobs[64];
    pthread_t tid[64];
    int started[64];
    int64_t n0 = proto->n0, n = proto->n1 - proto->n0;
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    if (n < 256 * (int64_t)threads) threads = n >= 256 ? (int)(n / 256) : 1;
    for (int t = 0; t < threads; ++t) {
        jobs[t] = *proto;
        jobs[t].n0 = n0 + n * t / threads;
        jobs[t].n1 = n0 + n * (t + 1) / threads;
        jobs[t].bad = 0;
        started[t] = 0;
    }
    for (int t = 1; t < threads; ++t)
        started[t] = pthread_create(&tid[t], 0, sums_run, &jobs[t]) == 0;
    sums_run(&jobs[0]);
    for (int t = 1; t < threads; ++t) {
        if (started[t]) pthread_join(tid[t], 0); else sums_run(&jobs[t]);
    }
    int bad = 0;
    for (int t = 0; t < threads; ++t) bad = bad > jobs[t].bad ? bad : jobs[t].bad;
    proto->bad = bad;
    return bad;
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
                         (int64_t)offsetof(job_t, sum)};
    const int64_t m = (int64_t)(sizeof(v) / sizeof(v[0]));
    for (int64_t i = 0; i < n && i < m; ++i) out[i] = v[i];
    return m;
}
