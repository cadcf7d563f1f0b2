"""A fused CPU kernel for the surrogate's per-column evaluation (cosim.surrogate.evaluate), with a torch fallback.

After the matrix products (the ON-count k and the E moments of every column), everything left is
element-wise: form the variables (moments, leaking cells), gather the count's coefficient of every term,
sum the terms, scale to amperes and, when asked, digitise with the ADC's thresholds and sum the currents.
In torch that is dozens of memory-bound passes over (N, C) tensors; this kernel does it in one pass over
blocks of 64 columns, reading the E + 1 inputs of a column and writing one or two floats. With AVX-512
each column's variables sit in one register and 16 terms at a time are products of permutations of it,
dotted with the contiguous coefficient row of its ON-count; elsewhere a portable loop does the same. It is plain C (no torch headers), compiled on first use with the
system C compiler into ``cosim.paths.cache_dir()/kernels`` (about a second) and called through ctypes,
one POSIX thread per torch thread. ``COSIM_SURROGATE_KERNEL=portable`` runs the portable loop on any
CPU (as CPUs without AVX-512 do). Where there is no compiler, or ``COSIM_SURROGATE_KERNEL=torch`` is
set, ``load()`` returns None and the surrogate uses its torch path (the same model, the same results
within float32 rounding).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
from pathlib import Path

import torch

from ..cbuild import build_shared
from ..paths import cache_dir

ENV = "COSIM_SURROGATE_KERNEL"

SOURCE = r"""
#include <math.h>
#include <stdint.h>
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
    double sum;                                /* sum of the currents (A) */
} job_t;

#define CB 64
#define VMAX 40
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
    for (int64_t i = n0; i < n1; ++i) {
        const float *restrict mr = j->m + i * m_ld;
        const float *restrict xr = j->xs ? j->xs + i * xs_ld : 0;
        float *restrict cur = j->cur ? j->cur + i * cur_ld : 0;
        float *restrict code = j->code ? j->code + i * code_ld : 0;
        float rowsum = 0.0f;
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
                const uint16_t *restrict kr = kb + i * k_ld + c0;
                for (int64_t c = 0; c < nb; ++c) {
                    uint32_t u = ((uint32_t)kr[c]) << 16; float kv; memcpy(&kv, &u, 4);
                    int32_t k = (int32_t)(kv + 0.5f);
                    kk[c] = k < 0 ? 0 : (k > R ? (int32_t)R : k);
                }
            } else {
                const float *restrict kr = kf32 + i * k_ld + c0;
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
            for (int64_t c = 0; c < nb; ++c) { ia[c] *= i_cell; rowsum += ia[c]; }
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
        total += (double)rowsum;
    }
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
"""


class _Job(ctypes.Structure):
    _fields_ = [("n0", ctypes.c_int64), ("n1", ctypes.c_int64), ("C", ctypes.c_int64), ("E", ctypes.c_int64),
                ("V", ctypes.c_int64), ("R", ctypes.c_int64), ("F", ctypes.c_int64),
                ("k", ctypes.c_void_p), ("k_ld", ctypes.c_int64), ("k_bf16", ctypes.c_int),
                ("m", ctypes.c_void_p), ("m_ld", ctypes.c_int64),
                ("xs", ctypes.c_void_p), ("xs_ld", ctypes.c_int64),
                ("terms", ctypes.c_void_p), ("D", ctypes.c_int64), ("coef_t", ctypes.c_void_p), ("simd", ctypes.c_int),
                ("coef_rows", ctypes.c_void_p), ("fpad", ctypes.c_int64), ("term_idx", ctypes.c_void_p),
                ("i_cell", ctypes.c_float),
                ("cur", ctypes.c_void_p), ("cur_ld", ctypes.c_int64),
                ("thr", ctypes.c_void_p), ("nthr", ctypes.c_int64), ("lsb", ctypes.c_float),
                ("grid_start", ctypes.c_void_p), ("ngrid", ctypes.c_int64), ("grid_lo", ctypes.c_float),
                ("grid_inv", ctypes.c_float), ("step", ctypes.c_float), ("max_code", ctypes.c_float),
                ("code", ctypes.c_void_p), ("code_ld", ctypes.c_int64), ("sum", ctypes.c_double)]


_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
#: why the kernel is not used (None while it is, or before the first load)
load_error: str | None = None


#: compiler flags; -fno-trapping-math lets the ADC's rounding loop vectorise (ceilf; no FP traps are used,
#: results are unchanged)
FLAGS = ("-O3", "-pthread", "-fno-trapping-math")


def cpu_signature() -> str:
    """The machine, the CPU model and its feature flags (what ``-march=native`` compiles for)."""
    import platform
    info = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags", "Features", "CPU part")):
                    info += line
                elif not line.strip() and info:
                    break                                   # the first processor is enough
    except OSError:
        pass
    return platform.machine() + platform.node() + info


def _compile(target: Path) -> None:
    build_shared(SOURCE, target, flags=list(FLAGS), optional_flags=["-march=native"])


def portable_forced() -> bool:
    """Whether ``COSIM_SURROGATE_KERNEL=portable`` asks for the kernel's portable loop (no AVX-512)."""
    return os.environ.get(ENV, "").strip().lower() == "portable"


def load() -> ctypes.CDLL | None:
    """The compiled kernel (compiled on first use, cached on disk), or None where it cannot be had."""
    global _lib, _tried, load_error
    if os.environ.get(ENV, "").lower() == "torch":
        return None
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        _tried = True
        # -march=native code runs only on the CPU it was built for: the key names the CPU and its flags
        key = hashlib.sha256((SOURCE + " ".join(FLAGS) + cpu_signature()).encode()).hexdigest()[:16]
        target = cache_dir() / "kernels" / f"surrogate_{key}.so"
        try:
            if not target.exists():
                _compile(target)
            lib = ctypes.CDLL(str(target))
            lib.cosim_surrogate_eval.argtypes = [ctypes.POINTER(_Job), ctypes.c_int]
            lib.cosim_surrogate_eval.restype = ctypes.c_int
            _lib = lib
        except OSError as e:
            load_error = str(e)
            _lib = None
    return _lib


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class Thresholds:
    """ADC thresholds (A, ascending) in the kernel's form: float32 values between two sentinels (-inf
    before, +inf after) and a uniform grid over them whose cells hold the number of thresholds below the
    cell: a first guess of a code, from which the kernel steps to the exact count of thresholds strictly
    below the current (any guess gives the right code; a good one saves time)."""

    def __init__(self, thresholds_a, cells_per_threshold: int = 16) -> None:
        import numpy as np
        t32 = np.asarray(thresholds_a, dtype=np.float32).ravel()
        if t32.size and (not np.all(np.isfinite(t32)) or np.any(np.diff(t32) < 0)):
            raise ValueError("ADC thresholds must be finite and ascending")
        self.padded = torch.as_tensor(np.concatenate([[-np.inf], t32, [np.inf]]).astype(np.float32)).contiguous()
        self.count = int(t32.size)
        t = t32.astype(np.float64)
        if t.size >= 2 and t[-1] > t[0]:
            g = cells_per_threshold * (t.size + 1)
            pad = (t[-1] - t[0]) / (t.size - 1)
            lo, hi = t[0] - pad, t[-1] + pad
            self.lo, self.inv = float(lo), float(g / (hi - lo))
            edges = lo + np.arange(g) / self.inv
            self.start = torch.as_tensor(np.searchsorted(t, edges, side="left").astype(np.int32))
        else:
            self.lo, self.inv = 0.0, 0.0
            self.start = torch.zeros(1, dtype=torch.int32)


def avx512_layout(coef_t: torch.Tensor, terms: torch.Tensor, n_variables: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The model in the AVX-512 loop's layout: coefficient rows (R+1, Fp) and term indices (D, Fp) (``terms``
    is (F, D)), the F terms padded to a multiple of 16 with the constant (index ``n_variables``) at
    coefficient 0."""
    f, r1 = coef_t.shape
    fp = -(-f // 16) * 16
    rows = torch.zeros((r1, fp), dtype=torch.float32)
    rows[:, :f] = coef_t.T.to(torch.float32)
    idx = torch.full((terms.shape[1], fp), n_variables, dtype=torch.int32)
    idx[:, :f] = terms.T
    return rows.contiguous(), idx.contiguous()


#: most variables a table may have for the kernel (VMAX in the C source)
MAX_VARIABLES = 40


def evaluate(lib: ctypes.CDLL, k: torch.Tensor, m: torch.Tensor, E: int, V: int, terms: torch.Tensor,
             coef_t: torch.Tensor, i_cell_a: float, xs: torch.Tensor | None = None,
             coef_rows: torch.Tensor | None = None, term_idx: torch.Tensor | None = None,
             cur: torch.Tensor | None = None, thresholds: Thresholds | None = None, lsb: float = 1.0,
             code: torch.Tensor | None = None, threads: int = 1, step_a: float = 0.0, max_code: int = 0,
             simd: bool = True) -> float:
    """Run the kernel on CPU tensors (row-major, unit stride along the last dimension): ``k`` (n, C) float32
    or bfloat16 counts, ``m`` (n, C*E) float32 moments (moment e of column c at c*E + e), ``terms`` (F, D)
    int32 variable indices, D = 3 or 4 (V: the constant), ``coef_t`` (F, R+1) float32 coefficients in units of i_cell,
    ``xs`` (n, 1+E) for leak tables; for the AVX-512 loop also the model in its layout (``coef_rows``
    (R+1, Fp) and ``term_idx`` (D, Fp) int32, Fp a multiple of 16, padding terms the constant with
    coefficient 0; see ``avx512_layout``); writes ``cur`` (n, C) currents (A) and/or ``code`` (n, C) codes
    (``thresholds`` of the ADC, ``lsb`` AND-counts per code; or, with ``step_a`` > 0, evenly spaced
    levels c * step_a rounded to as ``ADC.digitize`` does, codes 0..``max_code``). ``simd``: use the
    AVX-512 term loop where the kernel was compiled with it (False: the portable loop, for tests). Returns
    the sum of the currents (A)."""
    n, c = k.shape
    for name, t in (("k", k), ("m", m), ("xs", xs), ("cur", cur), ("code", code)):
        if t is not None and (t.device.type != "cpu" or t.dim() != 2 or t.stride(1) != 1 or t.shape[0] != n):
            raise ValueError(f"kernel operand {name}: need a CPU matrix of {n} rows with unit column stride")
    if terms.dim() != 2 or terms.shape[1] not in (3, 4):
        raise ValueError("kernel operands: terms must be (F, 3) or (F, 4)")
    if coef_rows is not None and (coef_rows.shape[1] % 16 or term_idx is None
                                  or term_idx.shape != (terms.shape[1], coef_rows.shape[1])
                                  or not (coef_rows.is_contiguous() and term_idx.is_contiguous())):
        raise ValueError("kernel operands: coef_rows must be (R+1, 16 q) with term_idx (D, 16 q), contiguous")
    if V > MAX_VARIABLES or m.shape[1] != E * c or not (terms.is_contiguous() and coef_t.is_contiguous()):
        raise ValueError("kernel operands: too many variables, or moments/terms/coefficients of the wrong layout")
    job = _Job(n0=0, n1=n, C=c, E=E, V=V, R=coef_t.shape[1] - 1, F=coef_t.shape[0],
               k=k.data_ptr(), k_ld=k.stride(0), k_bf16=int(k.dtype == torch.bfloat16),
               m=m.data_ptr(), m_ld=m.stride(0), xs=_ptr(xs), xs_ld=0 if xs is None else xs.stride(0),
               terms=terms.data_ptr(), D=terms.shape[1], coef_t=coef_t.data_ptr(), simd=int(bool(simd)), coef_rows=_ptr(coef_rows),
               fpad=0 if coef_rows is None else coef_rows.shape[1], term_idx=_ptr(term_idx), i_cell=i_cell_a,
               cur=_ptr(cur), cur_ld=0 if cur is None else cur.stride(0),
               thr=None if thresholds is None else thresholds.padded.data_ptr() + 4,
               nthr=0 if thresholds is None else thresholds.count, lsb=lsb,
               grid_start=None if thresholds is None else thresholds.start.data_ptr(),
               ngrid=0 if thresholds is None else thresholds.start.numel(),
               grid_lo=0.0 if thresholds is None else thresholds.lo, grid_inv=0.0 if thresholds is None else thresholds.inv,
               code=_ptr(code), code_ld=0 if code is None else code.stride(0), sum=0.0,
               step=float(step_a), max_code=float(max_code))
    lib.cosim_surrogate_eval(ctypes.byref(job), int(threads))
    return float(job.sum)
