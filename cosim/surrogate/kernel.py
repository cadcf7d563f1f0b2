"""A fused CPU kernel for the surrogate's per-column evaluation (cosim.surrogate.evaluate), with a torch fallback.

After the matrix products (the ON-count k and the E moments of every column), everything left is
element-wise: form the variables (moments, leaking cells), gather the count's coefficient of every term,
sum the terms, scale to amperes and, when asked, digitise with the ADC's thresholds and sum the currents.
In torch that is dozens of memory-bound passes over (N, C) tensors; this kernel does it in one pass over
blocks of 128 columns, reading the E + 1 inputs of a column and writing one or two floats. With AVX-512
each column's variables sit in one register and 16 terms at a time are products of permutations of it,
dotted with the contiguous coefficient row of its ON-count; for tables of four moments 16 columns at once,
one per vector lane, with the same operations in the same order (bit for bit the column loop), and there
``evaluate_fused`` also forms the ON-counts and moments from the input bits itself (no matrix products), for
tables of up to 15 moments (fewer than 32 variables: the column loop then keeps them in two registers) too,
in the same lanes; there a vector that repeats one
evaluated before in the same call (im2col patches often do: two thirds of the 256-row summing work of
VGG-small's CIFAR-10 reads) takes that vector's currents, codes and largest ON-count from a small cache keyed
by its bits, bit for bit what its own evaluation gives;
elsewhere a portable loop does the same. It
is plain C in ``kernel.c`` beside this file (no torch headers), compiled on first use with the system C
compiler into ``cosim.paths.cache_dir()/kernels`` (about a second) and called through ctypes, one POSIX
thread per torch thread. Its job struct is mirrored here by ``_Job``; the library reports the struct's
size and a few field offsets (``cosim_surrogate_job_layout``) and ``load()`` refuses it, with a warning,
where they differ from ``_Job``'s. ``COSIM_SURROGATE_KERNEL=portable`` runs the portable loop on any
CPU (as CPUs without AVX-512 do). Where there is no compiler, or ``COSIM_SURROGATE_KERNEL=torch`` is
set, or the layouts differ, ``load()`` returns None and the surrogate uses its torch path (the same model, the same results
within float32 rounding).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
from pathlib import Path

import torch

from ..cbuild import build_shared, layout_mismatch
from ..paths import cache_dir

ENV = "COSIM_SURROGATE_KERNEL"

#: the kernel's C source (compiled on first use)
SOURCE_PATH = Path(__file__).with_name("kernel.c")


class _Job(ctypes.Structure):
    """job_t of kernel.c, field by field (``load`` refuses a library whose job_t differs: JOB_LAYOUT_FIELDS)."""
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
                ("code", ctypes.c_void_p), ("code_ld", ctypes.c_int64), ("rowmap", ctypes.c_void_p),
                ("zeros", ctypes.c_void_p),
                ("xb", ctypes.c_void_p), ("xb_ld", ctypes.c_int64), ("xb_bf16", ctypes.c_int), ("xb_rows", ctypes.c_int64),
                ("wmask", ctypes.c_void_p), ("wmask_ld", ctypes.c_int64), ("phi", ctypes.c_void_p),
                ("phi_ld", ctypes.c_int64), ("acc", ctypes.c_void_p), ("acc_ld", ctypes.c_int64), ("sx", ctypes.c_void_p),
                ("sw", ctypes.c_void_p), ("max_stride", ctypes.c_int64), ("kmax", ctypes.c_int32), ("chunk", ctypes.c_int64),
                ("near_margin", ctypes.c_void_p), ("near", ctypes.c_void_p), ("near_ld", ctypes.c_int64), ("bad", ctypes.c_int), ("sum", ctypes.c_double)]


#: the fields whose offsets kernel.c's cosim_surrogate_job_layout() reports after sizeof(job_t), in its order
JOB_LAYOUT_FIELDS = ("k", "terms", "i_cell", "thr", "step", "code", "rowmap", "zeros", "wmask", "bad", "sum")


class _Sums(ctypes.Structure):
    """sums_t of kernel.c (the products of 0/1 inputs as sums of the rows their 1s select, ``row_sums``)."""
    _fields_ = [("n0", ctypes.c_int64), ("n1", ctypes.c_int64), ("R", ctypes.c_int64), ("C", ctypes.c_int64),
                ("N", ctypes.c_int64), ("x", ctypes.c_void_p), ("x_ld", ctypes.c_int64), ("x_bf16", ctypes.c_int),
                ("wk", ctypes.c_void_p), ("wm", ctypes.c_void_p), ("k", ctypes.c_void_p), ("k_ld", ctypes.c_int64),
                ("m", ctypes.c_void_p), ("m_ld", ctypes.c_int64), ("bad", ctypes.c_int)]


#: the fields whose offsets kernel.c's cosim_surrogate_sums_layout() reports after sizeof(sums_t)
SUMS_LAYOUT_FIELDS = ("x", "wk", "k", "bad")


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


def source_text() -> str:
    """The kernel's C source (``kernel.c``); OSError where it cannot be read."""
    return SOURCE_PATH.read_text()


def _compile(target: Path) -> None:
    build_shared(SOURCE_PATH, target, flags=list(FLAGS), optional_flags=["-march=native"])


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
        try:
            # -march=native code runs only on the CPU it was built for: the key names the CPU and its flags
            key = hashlib.sha256((source_text() + " ".join(FLAGS) + cpu_signature()).encode()).hexdigest()[:16]
            target = cache_dir() / "kernels" / f"surrogate_{key}.so"
            if not target.exists():
                _compile(target)
            lib = ctypes.CDLL(str(target))
        except OSError as e:
            load_error = str(e)
            _lib = None
            return _lib
        _lib = checked(lib)
    return _lib


def checked(lib: ctypes.CDLL, job: type | None = None) -> ctypes.CDLL | None:
    """``lib`` with its entry point typed, or None (and ``load_error`` set, and a warning) when its job_t
    and the ctypes ``job`` struct differ in size or in the offsets of JOB_LAYOUT_FIELDS: a call would read
    the fields from the wrong places, so the surrogate takes its torch path instead."""
    global load_error
    job = _Job if job is None else job
    bad = layout_mismatch(lib, "cosim_surrogate_job_layout", job, JOB_LAYOUT_FIELDS)
    if bad is not None:
        import warnings
        load_error = f"the surrogate kernel is not used (the torch path is): kernel.c and kernel.py disagree: {bad}"
        warnings.warn(load_error, RuntimeWarning, stacklevel=3)
        return None
    lib.cosim_surrogate_eval.argtypes = [ctypes.POINTER(job), ctypes.c_int]
    lib.cosim_surrogate_eval.restype = ctypes.c_int
    simd = getattr(lib, "cosim_surrogate_simd", None)
    if simd is not None:
        simd.argtypes, simd.restype = [], ctypes.c_int
    setattr(lib, "cosim_simd", bool(simd is not None and simd()))    # AVX-512 loops: lanes and fused products
    bad = layout_mismatch(lib, "cosim_surrogate_sums_layout", _Sums, SUMS_LAYOUT_FIELDS)
    if bad is None:
        lib.cosim_surrogate_sparse_sums.argtypes = [ctypes.POINTER(_Sums), ctypes.c_int]
        lib.cosim_surrogate_sparse_sums.restype = ctypes.c_int
    setattr(lib, "cosim_sums_ok", bad is None)          # row_sums refuses a library whose sums_t differs
    return lib


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


#: most variables a table may have for the kernel (VMAX in kernel.c)
MAX_VARIABLES = 40


def evaluate(lib: ctypes.CDLL, k: torch.Tensor, m: torch.Tensor, E: int, V: int, terms: torch.Tensor,
             coef_t: torch.Tensor, i_cell_a: float, xs: torch.Tensor | None = None,
             coef_rows: torch.Tensor | None = None, term_idx: torch.Tensor | None = None,
             cur: torch.Tensor | None = None, thresholds: Thresholds | None = None, lsb: float = 1.0,
             code: torch.Tensor | None = None, threads: int = 1, step_a: float = 0.0, max_code: int = 0,
             simd: bool = True, rowmap: torch.Tensor | None = None, lanes: bool = True,
             near_margin: torch.Tensor | None = None, near: torch.Tensor | None = None) -> float:
    """Run the kernel on CPU tensors (row-major, unit stride along the last dimension): ``k`` (n, C) float32
    or bfloat16 counts, ``m`` (n, C*E) float32 moments (moment e of column c at c*E + e), ``terms`` (F, D)
    int32 variable indices, D = 3 or 4 (V: the constant), ``coef_t`` (F, R+1) float32 coefficients in units of i_cell,
    ``xs`` (n, 1+E) for leak tables; for the AVX-512 loop also the model in its layout (``coef_rows``
    (R+1, Fp) and ``term_idx`` (D, Fp) int32, Fp a multiple of 16, padding terms the constant with
    coefficient 0; see ``avx512_layout``); writes ``cur`` (n, C) currents (A) and/or ``code`` (n, C) codes
    (``thresholds`` of the ADC, ``lsb`` AND-counts per code; or, with ``step_a`` > 0, evenly spaced
    levels c * step_a rounded to as ``ADC.digitize`` does, codes 0..``max_code``). ``simd``: use the
    AVX-512 term loop where the kernel was compiled with it (False: the portable loop, for tests); ``lanes``:
    there, 16 columns at once (one per vector lane, bit for bit the column-by-column loop; False: column by
    column, for tests).
    ``rowmap`` (n_out,) int32: output row i reads row ``rowmap[i]`` of ``k``, ``m`` and ``xs``, or, where it
    is -1, is an all-zero input row (ON-count 0, moments exactly 0: evaluated once, then copied), so the
    products need only the rows that have a 1; ``cur`` and ``code`` then have n_out rows. Returns the sum
    of the currents (A), added in output row order as without ``rowmap``. ``near_margin`` (R+1,) float32 and
    ``near`` (n, C) uint8, with ``code``: certified reads' screen (``near_fields``)."""
    n_src, c = k.shape
    n = n_src if rowmap is None else rowmap.shape[0]
    if rowmap is not None and (rowmap.dtype != torch.int32 or rowmap.dim() != 1 or not rowmap.is_contiguous()
                               or rowmap.device.type != "cpu"):
        raise ValueError("kernel operand rowmap: need a contiguous CPU vector of int32")
    for name, t, rows in (("k", k, n_src), ("m", m, n_src), ("xs", xs, n_src), ("cur", cur, n), ("code", code, n),
                          ("near", near, n)):
        if t is not None and (t.device.type != "cpu" or t.dim() != 2 or t.stride(1) != 1 or t.shape[0] != rows):
            raise ValueError(f"kernel operand {name}: need a CPU matrix of {rows} rows with unit column stride")
    if rowmap is not None and n and int(rowmap.max()) >= n_src:
        raise ValueError(f"kernel operand rowmap: refers to rows beyond the {n_src} of k")
    zeros = None if rowmap is None else torch.zeros(c * (E + 1) + 1 + E, dtype=torch.float32)
    if terms.dim() != 2 or terms.shape[1] not in (3, 4):
        raise ValueError("kernel operands: terms must be (F, 3) or (F, 4)")
    if coef_rows is not None and (coef_rows.shape[1] % 16 or term_idx is None
                                  or term_idx.shape != (terms.shape[1], coef_rows.shape[1])
                                  or not (coef_rows.is_contiguous() and term_idx.is_contiguous())):
        raise ValueError("kernel operands: coef_rows must be (R+1, 16 q) with term_idx (D, 16 q), contiguous")
    if V > MAX_VARIABLES or m.shape[1] != E * c or not (terms.is_contiguous() and coef_t.is_contiguous()):
        raise ValueError("kernel operands: too many variables, or moments/terms/coefficients of the wrong layout")
    job = _Job(n0=0, n1=n, C=c, k=k.data_ptr(), k_ld=k.stride(0), k_bf16=int(k.dtype == torch.bfloat16),
               m=m.data_ptr(), m_ld=m.stride(0), rowmap=_ptr(rowmap), zeros=_ptr(zeros),
               **near_fields(near_margin, near, c, coef_t.shape[1], code is not None),
               **_model_fields(E, V, terms, coef_t, i_cell_a, xs, coef_rows, term_idx, cur, thresholds, lsb, code,
                               step_a, max_code, (2 if lanes else 1) if simd else 0))
    lib.cosim_surrogate_eval(ctypes.byref(job), int(threads))
    return float(job.sum)


def near_fields(near_margin: torch.Tensor | None, near: torch.Tensor | None, cols: int, counts: int,
                codes: bool) -> dict:
    """The job fields of certified reads' screen (cosim.cim.arrays.CertifiedArray): ``near_margin`` (R+1,)
    float32, a margin (A) per ON-count, and ``near`` (n, C) uint8, set to 1 where a column's current lies within
    its ON-count's margin of the ADC decision level below or above it (the codes' thresholds, or the midpoints
    of evenly spaced levels), else 0. Needs the codes (written or accumulated)."""
    if near is None and near_margin is None:
        return {}
    if (near is None or near_margin is None or not codes or near.dtype != torch.uint8 or near.dim() != 2
            or near.shape[1] != cols or near.stride(1) != 1 or near.device.type != "cpu"
            or near_margin.dtype != torch.float32 or near_margin.shape != (counts,) or not near_margin.is_contiguous()):
        raise ValueError(f"kernel operands near, near_margin: (n, {cols}) uint8 with unit column stride and ({counts},) "
                         "float32, with the codes")
    return dict(near_margin=near_margin.data_ptr(), near=near.data_ptr(), near_ld=near.stride(0))


def _model_fields(E, V, terms, coef_t, i_cell_a, xs, coef_rows, term_idx, cur, thresholds, lsb, code, step_a, max_code,
                  simd: int) -> dict:
    """The job fields of the model, the ADC and the outputs (evaluate, evaluate_fused)."""
    return dict(E=E, V=V, R=coef_t.shape[1] - 1, F=coef_t.shape[0], xs=_ptr(xs), xs_ld=0 if xs is None else xs.stride(0),
                terms=terms.data_ptr(), D=terms.shape[1], coef_t=coef_t.data_ptr(), simd=simd, coef_rows=_ptr(coef_rows),
                fpad=0 if coef_rows is None else coef_rows.shape[1], term_idx=_ptr(term_idx), i_cell=i_cell_a,
                cur=_ptr(cur), cur_ld=0 if cur is None else cur.stride(0),
                thr=None if thresholds is None else thresholds.padded.data_ptr() + 4,
                nthr=0 if thresholds is None else thresholds.count, lsb=lsb,
                grid_start=None if thresholds is None else thresholds.start.data_ptr(),
                ngrid=0 if thresholds is None else thresholds.start.numel(),
                grid_lo=0.0 if thresholds is None else thresholds.lo, grid_inv=0.0 if thresholds is None else thresholds.inv,
                code=_ptr(code), code_ld=0 if code is None else code.stride(0), sum=0.0,
                step=float(step_a), max_code=float(max_code))


def weight_masks(w: torch.Tensor) -> torch.Tensor:
    """(R, G) int16 bit masks of a (R, C) 0/1 weight matrix for the fused products: bit l of [r, g] is
    w[r, 16 g + l] != 0, G = ceil(C / 16) rounded up to a multiple of 8 (the padding bits 0)."""
    import numpy as np
    r, c = w.shape
    g = -(-max(c, 1) // 128) * 8
    b = np.zeros((r, g * 16), dtype=bool)
    b[:, :c] = (w != 0).cpu().numpy()
    return torch.from_numpy(np.packbits(b.reshape(r, g, 16), axis=2, bitorder="little").view("<i2")
                            .reshape(r, g).copy())


#: most moments a table may have for the fused products (FUSED_EMAX in kernel.c)
FUSED_MAX_MOMENTS = 15
#: most variables a table may have for the fused products (LANE_VMAX - 1 in kernel.c: two AVX-512 registers
#: hold a column's variables and the constant)
FUSED_MAX_VARIABLES = 31
#: most terms a table may have for the 16-column lanes (LANE_TERMS_MAX in kernel.c)
LANE_MAX_TERMS = 128


def fused_moments(n_moments: int, n_variables: int | None = None, n_terms: int | None = None) -> bool:
    """Whether the fused products take a table of ``n_moments`` moments, ``n_variables`` variables (default:
    the moments alone) and ``n_terms`` terms (default: not checked): 1 .. FUSED_MAX_MOMENTS moments, at most
    FUSED_MAX_VARIABLES variables (with the constant, two AVX-512 registers), at most LANE_MAX_TERMS terms."""
    n_var = n_moments if n_variables is None else n_variables
    return (1 <= n_moments <= FUSED_MAX_MOMENTS and n_var <= FUSED_MAX_VARIABLES
            and (n_terms is None or 1 <= n_terms <= LANE_MAX_TERMS))


def fused_available(lib: ctypes.CDLL | None, n_moments: int, simd: bool = True, lanes: bool = True,
                    n_variables: int | None = None, n_terms: int | None = None) -> bool:
    """Whether ``evaluate_fused`` can run: a kernel with the AVX-512 loops, its 16-column lanes, a table the
    fused products take (``fused_moments``)."""
    return bool(lib is not None and getattr(lib, "cosim_simd", False) and simd and lanes
                and fused_moments(n_moments, n_variables, n_terms))


def evaluate_fused(lib: ctypes.CDLL, x: torch.Tensor, w_mask: torch.Tensor, phi: torch.Tensor, cols: int, E: int, V: int,
                   terms: torch.Tensor, coef_t: torch.Tensor, i_cell_a: float, coef_rows: torch.Tensor,
                   term_idx: torch.Tensor, xs: torch.Tensor | None = None, cur: torch.Tensor | None = None,
                   thresholds: Thresholds | None = None, lsb: float = 1.0, code: torch.Tensor | None = None,
                   threads: int = 1, step_a: float = 0.0, max_code: int = 0, chunk: int = 0,
                   acc: torch.Tensor | None = None, sx: torch.Tensor | None = None, sw: torch.Tensor | None = None,
                   max_stride: int = 0, near_margin: torch.Tensor | None = None,
                   near: torch.Tensor | None = None) -> tuple[float, int] | None:
    """``evaluate`` with the products fused into the kernel: from 0/1 inputs ``x`` (n, R') (bfloat16 or
    float32, unit column stride), the weights' bit masks ``w_mask`` (``weight_masks``, R' rows) and the
    moment basis ``phi`` (R', E) float32, each column's ON-count and moments are formed in the kernel as the
    sums, in increasing row order, of the basis rows its conducting cells select: the values of a float32
    product that accumulates along the rows in order (the caller checks that its product does), so the same
    currents, codes and sums bit for bit, without the products. Only where ``fused_available`` (AVX-512
    lanes, a table of at most 15 moments and 31 variables: ``fused_moments``). ``chunk`` > 0: the vectors in passes of ``chunk``, each split over the threads, their
    sums added in pass order: the sum that passes of ``chunk`` vectors, one call each, add up to. ``acc`` (n, C)
    float32: the codes are not written but added to it, times ``sx`` (n,) and ``sw`` (C,) where given (+-1;
    exact: integers). ``max_stride`` > 0: also the largest ON-count of the vectors i with i % max_stride == 0.
    ``near_margin``, ``near``: certified reads' screen (``near_fields``).
    Returns (the sum of the currents, that ON-count or 0), or None (nothing to use) where ``x`` holds anything
    but 0 and 1 or the kernel cannot take the model."""
    n, r = x.shape
    if (x.dtype not in (torch.bfloat16, torch.float32) or x.device.type != "cpu" or (n and x.stride(1) != 1)
            or w_mask.dtype != torch.int16 or w_mask.shape[0] != r or w_mask.shape[1] * 16 < cols
            or w_mask.shape[1] % 8 or not w_mask.is_contiguous() or phi.dtype != torch.float32
            or phi.shape != (r, E) or phi.stride(1) != 1 or not fused_moments(E, V, terms.shape[0])):
        raise ValueError("evaluate_fused operands: x (n, R') bfloat16/float32 with unit column stride, w_mask "
                         "(R', 8 q) int16 contiguous, phi (R', E) float32, 1 <= E <= 15 moments, V < 32 variables")
    for name, t in (("xs", xs), ("cur", cur), ("code", code), ("acc", acc), ("near", near)):
        if t is not None and (t.device.type != "cpu" or t.dim() != 2 or t.stride(1) != 1 or t.shape[0] != n):
            raise ValueError(f"kernel operand {name}: need a CPU matrix of {n} rows with unit column stride")
    for name, t, size in (("acc", acc, cols), ("sx", sx, n), ("sw", sw, cols)):
        if t is not None and (t.dtype != torch.float32 or t.shape[-1] != size or not t.is_contiguous()
                              or (name != "acc" and t.dim() != 1)):
            raise ValueError(f"kernel operand {name}: need contiguous float32 of {size} along its last dimension")
    if acc is not None and code is not None:
        raise ValueError("kernel operands: codes are written or accumulated, not both")
    zeros = torch.zeros(cols * (E + 1) + 1 + E, dtype=torch.float32)
    job = _Job(n0=0, n1=n, C=cols, k=None, k_ld=0, k_bf16=0, m=None, m_ld=0, rowmap=None, zeros=zeros.data_ptr(),
               xb=x.data_ptr(), xb_ld=x.stride(0) if n else 0, xb_bf16=int(x.dtype == torch.bfloat16), xb_rows=r,
               wmask=w_mask.data_ptr(), wmask_ld=w_mask.stride(0), phi=phi.data_ptr(), phi_ld=phi.stride(0), chunk=int(chunk),
               acc=_ptr(acc), acc_ld=0 if acc is None else acc.stride(0), sx=_ptr(sx), sw=_ptr(sw),
               max_stride=int(max_stride), kmax=0,
               **near_fields(near_margin, near, cols, coef_t.shape[1], code is not None or acc is not None),
               **_model_fields(E, V, terms, coef_t, i_cell_a, xs, coef_rows, term_idx, cur, thresholds, lsb, code,
                               step_a, max_code, 2))
    if lib.cosim_surrogate_eval(ctypes.byref(job), int(threads)):
        return None
    return float(job.sum), int(job.kmax)


def row_sums(lib: ctypes.CDLL, x: torch.Tensor, wk: torch.Tensor, wm: torch.Tensor, threads: int = 1
             ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(k (n, C), m (n, N)) float32: the products ``x @ wk`` and ``x @ wm`` of 0/1 inputs ``x`` (n, R),
    bfloat16 or float32 with unit column stride, as sums of the rows of ``wk`` (R, C) and ``wm`` (R, N)
    (float32, contiguous) that each vector's 1s select, added in increasing row order from 0: the values
    of a float32 product that accumulates in that order, at a cost that grows with the 1s rather than the
    rows. None where ``x`` holds anything but 0 and 1, or the library's sums_t differs from ``_Sums``."""
    n, r = x.shape
    if not getattr(lib, "cosim_sums_ok", False):
        return None
    if (x.dtype not in (torch.bfloat16, torch.float32) or x.device.type != "cpu" or (n and x.stride(1) != 1)
            or wk.dtype != torch.float32 or wm.dtype != torch.float32 or wk.shape[0] != r or wm.shape[0] != r
            or not (wk.is_contiguous() and wm.is_contiguous())):
        raise ValueError("row_sums operands: x (n, R) bfloat16/float32 with unit column stride, wk (R, C) and "
                         "wm (R, N) contiguous float32")
    k = torch.empty((n, wk.shape[1]), dtype=torch.float32)
    m = torch.empty((n, wm.shape[1]), dtype=torch.float32)
    job = _Sums(n0=0, n1=n, R=r, C=wk.shape[1], N=wm.shape[1], x=x.data_ptr(), x_ld=x.stride(0) if n else 0,
                x_bf16=int(x.dtype == torch.bfloat16), wk=wk.data_ptr(), wm=wm.data_ptr(), k=k.data_ptr(),
                k_ld=k.stride(0), m=m.data_ptr(), m_ld=m.stride(0), bad=0)
    if lib.cosim_surrogate_sparse_sums(ctypes.byref(job), int(threads)):
        return None
    return k, m
