"""The vectorised torch surrogate: non-ideal column currents and ADC codes of whole batches, from a
SPICE-calibrated lookup table (``cosim.surrogate.model`` explains the model).

    sur = Surrogate.from_table("cosim/resources/tables/sram8t_128_decoupled.parquet")   # or a LookupTable
    codes = sur.read(x_bits, w_bits)               # (N, C) estimated AND-counts through the ADC
    i_a = sur.column_currents(x_bits, w_bits)      # (N, C) column currents (A)

``x_bits`` is (N, R') of 0/1 with R' <= rows (a partially used tile: the missing rows R'..rows-1 are
off), ``w_bits`` is (R', C) of 0/1, any C for the decoupled topology, or ``sur.prepare(w_bits)``: the
weight-side operands built once for many reads (``cosim.cim.arrays.SurrogateArray`` caches them per tile).

Cost per chunk of vectors: two matrix products, the exact ON-counts x·w (in the fastest exact dtype of
the device, cosim.products.bits_dtype) and the E moments x·(w * phi_e) in float32 (plus, for leak tables, the small
product x·phi of the inputs alone), then one pass per column that forms the variables, gathers the
count's coefficient of every term, sums the terms, scales to amperes and, for ``read``, finds the ADC
code. On CPU that pass is the fused C kernel of ``cosim.surrogate.kernel`` (compiled on first use;
without a C compiler, on GPUs and in float64 the same model runs as torch operations).
Batches are processed in chunks so memory stays bounded. With the C kernel, two shortcuts give the same
bits at less cost: input vectors without a 1 leave the products (their counts and moments are exactly 0;
the kernel evaluates one and copies it), and sparse inputs get their counts and moments as sums of the
weight rows their 1s select where the float32 product is checked to add in row order
(``skip_zero_rows``, ``sparse_products``; docs/benchmarks/infer.md). Where the kernel has its AVX-512 loops
and the table four moments, it evaluates 16 columns at once, and for tables of up to 15 moments (fewer than 32
variables, ``kernel.fused_moments``) it forms the counts and moments itself from the
input bits, under the same check, so there are no products at all (``kernel_lanes``, ``fused_products``).

A coupled table (``cosim.surrogate.model.coupled_operands``: column position and row load) reads arrays of its
calibrated width only; its coupled variables are further weight-side operands of each column, built by
``prepare`` and appended to the column's moments: the same products and the same C kernel (not its fused
products), leak tables too (their leak variables take zero input moments for the coupled ones, unused). The
complement variables of the rows of input 0 (1T-1R) add their per-column offsets to the products of every vector
with an input 1 (``PreparedWeights.m_offset``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from .adc import ADC
from .model import (COMPLEMENT_VARIABLES, MAX_DEGREE, MODEL, coupled_offsets, coupled_operands, moment_basis, normalise_orders, product_variables,
                    term_sum, variable_names)
from ..errors import InputError, TableError
from ..products import bits_dtype, f32_kernel, matmul_f32, prepare_f32
from .tables import LookupTable, load_table

DEFAULT_CHUNK = 2048
#: with the default chunk, vectors per pass are cut so that one pass's products (counts and moments, about
#: 4 (E+1) C bytes a vector) stay within this, so the kernel reads them from the caches rather than memory
#: (VGG-small on 8T-SRAM tables, 10 images, one thread of an AMD EPYC, CPU time best of 3 against a fixed
#: 2,048-vector pass: 128 rows 0.95 s vs 1.17 s, 256 rows 0.96 s vs 1.11 s, 64 rows 0.66 s vs 0.68 s)
CHUNK_BYTES = 4 << 20
MIN_CHUNK = 256
#: products of fewer rows than this are never made of a pass's rows that have a 1 alone (skip_zero_rows): BLAS
#: libraries add a product of very few rows in another order (measured: oneDNN for 1 row, MKL for up to 3, at
#: 128-256 rows), and the moments must be those of the whole pass bit for bit; such products get zero rows added
MIN_PRODUCT_ROWS = 16
#: the C kernel's row sums (Surrogate.sparse_products) replace the products where at most this fraction of the
#: inputs are 1 (an estimate from every 8th vector): their work follows the 1s, a product's the rows. AMD EPYC,
#: one thread, VGG-small tiles: 16 rows on at a time in 128 (partial wordline activation) twice as fast; 30-40 %
#: of 64 rows on, as whole reads have, slower than oneDNN's product
SPARSE_MAX_DENSITY = 0.2


def _as_tensor(a: Any, name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A tensor on ``device`` in ``dtype``."""
    return _as_raw(a, name, device).to(dtype)


@dataclass(frozen=True)
class PreparedWeights:
    """One weight matrix in the surrogate's operand layout (``Surrogate.prepare``)."""

    rows: int
    cols: int
    w_count: torch.Tensor        # (R', C) 0/1, in the dtype of the count product
    w_moments: torch.Tensor      # (R', C*E): column c*E + e is w_c * phi_e
    #: the float32 product kernel of the moments (cosim.products.f32_kernel) and its layout of w_moments
    f32_kernel: str = "blas"
    w_moments_t: torch.Tensor | None = None
    #: (R', C) float32 0/1, contiguous: the weights for the C kernel's row sums (Surrogate.sparse_products)
    w_float: torch.Tensor | None = None
    #: (R', G) int16 bit masks of the weights for the C kernel's fused products (Surrogate.fused_products)
    w_mask: torch.Tensor | None = None
    #: (C*E,) what the moments of a vector with an input 1 add to its products (a coupled table's complement
    #: variables: cosim.surrogate.model.coupled_offsets), or None
    m_offset: torch.Tensor | None = None

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.w_count, self.w_moments, self.w_moments_t, self.w_float,
                                                          self.w_mask, self.m_offset) if t is not None)


def _offset(m: torch.Tensor, x: torch.Tensor, pw: PreparedWeights) -> torch.Tensor:
    """The moments ``m`` (n, C*E) of input vectors ``x`` with ``pw.m_offset`` added for every vector with an input 1
    (a coupled table's complement variables; cosim.surrogate.model.coupled_variables), or ``m`` itself."""
    if pw.m_offset is None:
        return m
    return m + (x != 0).any(1, keepdim=True).to(m.dtype) * pw.m_offset.to(m.dtype)


#: (rows, columns, float32 kernel, torch threads) -> whether the float32 product adds in row order (_row_sums_exact)
_ROW_ORDER: dict[tuple[int, int, str, int], bool] = {}


def _row_sums_exact(lib, rows: int, cols: int, kernel: str, threads: int) -> bool:
    """Whether the float32 product of this process (cosim.products.matmul_f32 with ``kernel``) of 0/1
    inputs (n, ``rows``) with a (``rows``, ``cols``) matrix gives the C kernel's row sums bit for bit
    (up to the sign of zeros, which no current depends on), i.e. accumulates along the rows in their order:
    checked once per shape and torch thread count on random operands (64 and 16 vectors, a quarter of the
    weights zero; ``threads``: the C kernel's, which do not change its sums), as BLAS libraries differ (oneDNN on an AMD EPYC does at 16-512 rows; MKL does up to 128
    rows, not at 256, where it blocks the sum)."""
    key = (int(rows), int(cols), str(kernel), torch.get_num_threads())
    hit = _ROW_ORDER.get(key)
    if hit is None:
        from .kernel import row_sums
        g = torch.Generator().manual_seed(12345)
        wm = torch.randn(rows, cols, generator=g) * (torch.rand(rows, cols, generator=g) < 0.75)
        wk = (torch.rand(rows, 8, generator=g) < 0.5).float()
        hit = True
        for n in (64, 16):
            x = (torch.rand(n, rows, generator=g) < 0.4).float()
            got = row_sums(lib, x, wk, wm, threads)
            want = matmul_f32(x, wm, prepare_f32(wm, kernel), kernel)
            hit = hit and got is not None and torch.equal(got[1], want) and torch.equal(got[0], x @ wk)
        _ROW_ORDER[key] = hit
    return hit


def add_codes(acc: torch.Tensor, codes: torch.Tensor, s_x: torch.Tensor | None = None,
              s_w: torch.Tensor | None = None) -> None:
    """``acc`` (N, C) += ``codes`` (N, C) times the signs ``s_w`` (C,) and ``s_x`` (N,) where given: integers,
    exact in any order (the reads' fallback of ``read_accumulate`` where the kernel does not add them)."""
    c = codes.to(acc.dtype)
    if s_w is not None:
        c = c * s_w
    if s_x is not None:
        c = c * s_x[:, None]
    acc.add_(c)


def _nonzero_rows(x: torch.Tensor) -> torch.Tensor:
    """(n,) bool: which rows of ``x`` (n, R) have a nonzero entry (read as 64-bit words where the layout
    allows, about 3x faster; any nonzero bit pattern, -0.0 included, counts as nonzero there)."""
    es = x.element_size()
    if (x.dim() == 2 and x.shape[1] * es % 8 == 0 and x.stride(1) == 1 and x.stride(0) * es % 8 == 0
            and x.data_ptr() % 8 == 0 and x.shape[1]):
        try:
            return x.view(torch.int64).any(dim=1)
        except RuntimeError:
            pass
    return (x != 0).any(dim=1)


def _as_raw(a: Any, name: str, device: torch.device) -> torch.Tensor:
    """A tensor on ``device`` in its own dtype (booleans as uint8); converted chunk by chunk later."""
    if isinstance(a, torch.Tensor):
        t = a
    else:
        try:
            t = torch.as_tensor(np.asarray(a))
        except (TypeError, ValueError, RuntimeError):
            raise InputError(f"{name} is not a numeric array") from None
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    if t.is_complex():
        raise InputError(f"{name} is not a real array")
    return t.to(device)


class Surrogate:
    """Replays one lookup table for batches of binary inputs and weights (torch, CPU or GPU)."""

    def __init__(self, table: LookupTable, device: str | torch.device = "cpu", adc: ADC | None = None,
                 dtype: torch.dtype = torch.float32, chunk: int = DEFAULT_CHUNK) -> None:
        if table.meta.get("model") != MODEL:
            raise TableError(f"table model '{table.meta.get('model')}' is not supported (this cosim reads {MODEL}); "
                             "run 'cosim calibrate' again with the same --out to refit it from the kept SPICE points")
        self.table = table
        self.device = torch.device(device)
        self.dtype = dtype
        self.chunk = int(chunk)
        self.rows = table.rows
        self.cols = table.cols
        self.topology = table.topology
        self.tech = table.technology()
        self.i_cell_a = float(table.provenance["i_cell_a"])
        self.i_off_a = float(table.provenance.get("i_off_a", 0.0))
        try:
            self.orders = normalise_orders(table.meta["orders"])
        except (KeyError, TypeError, InputError):
            raise TableError("table meta has no valid moment 'orders'") from None
        self.leak = bool(table.meta.get("leak", False))
        #: a coupled table's coupled variables (column position, row load: cosim.surrogate.model.coupled_operands)
        self.coupled = [str(v) for v in (table.meta.get("coupled") or [])]
        if self.coupled and self.topology != "coupled":
            raise TableError(f"table of topology '{self.topology}' carries the coupled topology's variables")
        self.coupled_rho = float(table.meta.get("coupled_rho", 0.0))
        #: moments per column in the products: a coupled table takes its coupled variables as further moments
        #: of each column, so the C kernel evaluates it as it does any table (``_eval_index``)
        self.n_moments = len(self.orders) + len(self.coupled)
        n_var = len(variable_names(self.orders, self.leak)) + len(self.coupled)
        try:
            terms = [tuple(int(i) for i in t) for t in table.meta["terms"]]
        except (KeyError, TypeError, ValueError):
            raise TableError("table meta has no valid 'terms'") from None
        if any(len(t) > MAX_DEGREE or any(not 0 <= i < n_var for i in t) for t in terms):
            raise TableError(f"table terms have more than {MAX_DEGREE} factors or refer to variables beyond its {n_var}")
        self.terms = terms
        #: the terms as the evaluation indexes the variables (product_variables of n_moments moments; ``_eval_index``)
        self._eval_terms = [tuple(self._eval_index(i) for i in t) for t in terms]
        coef = np.asarray(table["coef"], dtype=np.float64)
        if coef.shape != (self.rows + 1, len(terms)):
            raise TableError(f"table array 'coef' has shape {coef.shape}, which does not match its {len(terms)} terms")
        count_mean = np.asarray(table["count_mean_a"], dtype=np.float64)
        if count_mean.shape != (self.rows + 1,):
            raise TableError(f"table array 'count_mean_a' has shape {count_mean.shape}, expected {(self.rows + 1,)}")
        n_var = self.n_moments + (1 + self.n_moments if self.leak else 0)      # the evaluation's variables
        self.n_variables = n_var
        # Currents are computed in units of i_cell (well-scaled in float32), then scaled back.
        self._coef_t = torch.as_tensor((coef / self.i_cell_a).T.copy(), dtype=dtype, device=self.device)  # (F, R+1)
        width = max(3, max(len(t) for t in terms))            # variables per term: 3, or 4 with degree-4 terms
        padded = [list(t) + [n_var] * (width - len(t)) for t in self._eval_terms]    # n_var: the constant 1
        self._terms = torch.as_tensor(padded, dtype=torch.int32).contiguous()
        self._coef_rows = self._term_idx = None                                    # the kernel's AVX-512 layout
        if self.device.type == "cpu" and dtype == torch.float32:
            from .kernel import avx512_layout
            self._coef_rows, self._term_idx = avx512_layout(self._coef_t, self._terms, n_var)
        self._phi = torch.as_tensor(moment_basis(self.rows, self.orders), dtype=dtype, device=self.device)
        #: the inputs' own moments for the leak variables (L, nu_e = xs_e - m_e): a coupled table's coupled moments
        #: get zero columns (their nu, minus the variable, is no variable of the table)
        self._phi_xs = torch.cat([self._phi, torch.zeros(self.rows, len(self.coupled), dtype=dtype, device=self.device)], 1)
        self._count_mean = torch.as_tensor(count_mean / self.i_cell_a, dtype=dtype, device=self.device)
        self.adc = (adc or ADC()).bind(table)
        self._thr = None
        #: evaluate with the fused C kernel (cosim.surrogate.kernel) where it is available (CPU, float32)
        self.use_kernel = True
        #: let the C kernel use its AVX-512 term loop where compiled in (False: its portable loop, the one
        #: CPUs without AVX-512 run; COSIM_SURROGATE_KERNEL=portable makes it the default)
        from .kernel import portable_forced
        self.kernel_simd = not portable_forced()
        #: the C kernel's AVX-512 loop: 16 columns at once, one per vector lane (False: column by column;
        #: the same currents bit for bit, tests compare them)
        self.kernel_lanes = True
        #: threads of the C kernel (None: torch's intra-op thread count)
        self.kernel_threads: int | None = None
        #: compute the exact ON-counts as bfloat16 products on CPU (float32 otherwise)
        self.fast_counts = True
        #: C kernel: leave the input vectors without a 1 out of the products (their ON-counts and moments are
        #: exactly 0) and evaluate them once per pass; the same currents, codes and current sums bit for bit
        self.skip_zero_rows = True
        #: C kernel: compute the ON-counts and moments as sums of the weight rows each vector's 1s select
        #: (cosim.surrogate.kernel.row_sums) wherever the float32 product is checked to add in that order
        #: (``_row_sums_exact``), so the same values bit for bit at a cost that follows the 1s
        self.sparse_products = True
        #: C kernel with its AVX-512 lanes, tables of up to 15 moments and 31 variables (kernel.fused_moments): form
        #: each column's ON-count and moments inside
        #: the kernel from the input bits (kernel.evaluate_fused) wherever the float32 product is checked to add in
        #: row order (``_row_sums_exact``): no products, no conversions, the same values bit for bit
        self.fused_products = True
        self._phi_m = self._phi[:, 1:].contiguous() if self.device.type == "cpu" and dtype == torch.float32 else None

    @classmethod
    def from_table(cls, table_or_path: LookupTable | str | Path, device: str | torch.device = "cpu",
                   adc: ADC | None = None, **kw: Any) -> "Surrogate":
        table = table_or_path if isinstance(table_or_path, LookupTable) else load_table(table_or_path)
        return cls(table, device=device, adc=adc, **kw)

    def __repr__(self) -> str:
        return (f"Surrogate({self.tech.name} {self.rows} rows {self.topology}, orders={self.orders}, "
                f"leak={self.leak}, terms={len(self.terms)}, device={self.device}, adc={self.adc!r})")

    def _eval_index(self, i: int) -> int:
        """The index of the table's variable ``i`` (``variable_names`` then the coupled ones) among the evaluation's
        (``product_variables`` of ``n_moments`` moments: the ON moments, the coupled variables, then for leak
        tables L and the leak moments, with one unused leak moment per coupled variable)."""
        E, X = len(self.orders), len(self.coupled)
        if not X or i < E:
            return i
        if self.leak and i <= 2 * E:
            return i + X                                     # L and nu_e after the coupled moments
        return E + (i - (2 * E + 1 if self.leak else E))     # coupled variable j at E + j

    # ---- inputs -----------------------------------------------------------------------------------
    def _check(self, x_bits: Any, w_bits: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x = _as_tensor(x_bits, "x_bits", self.device, self.dtype)
        w = _as_tensor(w_bits, "w_bits", self.device, self.dtype)
        if x.dim() == 1:
            x = x.unsqueeze(0)
        if x.dim() != 2 or w.dim() != 2:
            raise InputError(f"x_bits must be (N, R) and w_bits (R, C), got shapes {tuple(x.shape)} and {tuple(w.shape)}")
        if x.shape[1] != w.shape[0]:
            raise InputError(f"x_bits has {x.shape[1]} rows but w_bits has {w.shape[0]}")
        if x.shape[1] > self.rows:
            raise InputError(f"{x.shape[1]} rows do not fit a table calibrated for {self.rows} rows")
        if self.topology == "coupled" and w.shape[1] != self.cols:
            raise InputError(f"coupled table is for {self.cols} columns, got {w.shape[1]}")
        return x, w

    # ---- model ------------------------------------------------------------------------------------
    def prepare(self, w_bits: Any) -> "PreparedWeights":
        """The weight-side operands of the model for one (R', C) weight matrix, built once and reusable
        for any number of reads (``column_currents``, ``read`` and ``read_with_current`` accept them in
        place of ``w_bits``): the count matrix w and the moment matrix, for each column c the E columns
        w_c * phi_e side by side, so that x @ W_m viewed as (N, C, E) holds every column's moments
        contiguously."""
        if isinstance(w_bits, PreparedWeights):
            return w_bits
        w = _as_tensor(w_bits, "w_bits", self.device, self.dtype)
        if w.dim() != 2:
            raise InputError(f"w_bits must be (R, C), got shape {tuple(w.shape)}")
        if w.shape[0] > self.rows:
            raise InputError(f"{w.shape[0]} rows do not fit a table calibrated for {self.rows} rows")
        if self.topology == "coupled" and w.shape[1] != self.cols:
            raise InputError(f"coupled table is for {self.cols} columns, got {w.shape[1]}")
        r, c = w.shape
        w_c = (coupled_operands(w, self.coupled, self.coupled_rho, rows=self.rows).contiguous()
               if self.coupled else None)
        phi = self._phi[:r, 1:]                                                  # (R', E)
        w_m = w.unsqueeze(2) * phi.unsqueeze(1)
        if w_c is not None:                                                     # the coupled variables as moments
            w_m = torch.cat([w_m, w_c.reshape(r, c, len(self.coupled))], dim=2)
        w_m = w_m.reshape(r, c * self.n_moments).contiguous()
        m_offset = None
        if any(n in COMPLEMENT_VARIABLES for n in self.coupled):
            m_offset = torch.zeros((c, self.n_moments), dtype=self.dtype, device=self.device)
            m_offset[:, len(self.orders):] = coupled_offsets(w, self.coupled, self.coupled_rho,
                                                             rows=self.rows).reshape(c, len(self.coupled))
            m_offset = m_offset.reshape(c * self.n_moments)
        count_dtype = self._count_dtype(r)
        kernel = f32_kernel(self.device) if self.dtype == torch.float32 else "blas"
        w_float = w.contiguous() if self.device.type == "cpu" and self.dtype == torch.float32 else None
        w_mask = None
        from .kernel import fused_moments
        if w_float is not None and not self.coupled and fused_moments(len(self.orders), self.n_variables, len(self.terms)):
            from .kernel import weight_masks
            w_mask = weight_masks(w_float)
        return PreparedWeights(rows=r, cols=c, w_count=w.to(count_dtype).contiguous(), w_moments=w_m,
                               f32_kernel=kernel, w_moments_t=prepare_f32(w_m, kernel), w_float=w_float, w_mask=w_mask,
                               m_offset=m_offset)

    def _count_dtype(self, rows: int) -> torch.dtype:
        """The dtype of the exact ON-count product: the fastest dtype of this device that holds every
        count of ``rows`` rows exactly (cosim.products.bits_dtype: bfloat16 up to 256 rows where the CPU
        multiplies it fast, float16 on GPUs, float32 elsewhere)."""
        if self.fast_counts and self.dtype == torch.float32:
            return bits_dtype(rows, self.device)
        return self.dtype

    def _products(self, x_raw: torch.Tensor, pw: "PreparedWeights") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """ON-counts (n, C), moments (n, C*E) and, for leak tables, the inputs' own row sums and
        moments (n, 1+E), for one chunk of input vectors (0/1 of any dtype)."""
        x = x_raw.to(self.dtype)
        # the count operand: the input itself where it already has the count dtype, else from the float32
        # copy (float16 -> bfloat16 directly is slow)
        xc = x_raw if x_raw.dtype == pw.w_count.dtype else x.to(pw.w_count.dtype)
        k = xc @ pw.w_count
        if k.dtype not in (torch.float32, torch.bfloat16) and self.device.type == "cpu":
            k = k.float()                    # the C kernel reads float32 or bfloat16 counts
        m = _offset(matmul_f32(x, pw.w_moments, pw.w_moments_t, pw.f32_kernel), x, pw)
        xs = x @ self._phi_xs[: x.shape[1]] if self.leak else None
        return k, m, xs

    def _torch_currents(self, k: torch.Tensor, m: torch.Tensor, xs: torch.Tensor | None) -> torch.Tensor:
        """Currents in units of i_cell for one chunk (the torch evaluation: GPU, float64, no C compiler)."""
        kl = k.round().long().clamp_(0, self.rows)
        var = product_variables(kl, m, xs, self.n_moments)             # the model's own (cosim.surrogate.model)
        out = torch.zeros(k.shape, dtype=m.dtype, device=m.device)
        return term_sum(var, self._eval_terms, lambda f: self._coef_t[f][kl], out)

    def _kernel(self):
        from . import kernel as surrogate_kernel
        if (self.device.type != "cpu" or self.dtype != torch.float32 or not self.use_kernel
                or self.n_variables > surrogate_kernel.MAX_VARIABLES):
            return None
        return surrogate_kernel.load()

    def _run(self, x_bits: Any, w_bits: Any, currents: bool, codes: bool, near_margin: torch.Tensor | None = None,
             near: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None, Any]:
        """(currents (A) or None, ADC codes or None, sum of the currents: float on CPU, 0-d tensor else).
        ``near_margin``, ``near`` (C kernel only, with ``codes``): certified reads' screen, filled in by the
        kernel (cosim.surrogate.kernel.near_fields; cosim.cim.arrays.CertifiedArray)."""
        pw = self.prepare(w_bits)
        x = _as_raw(x_bits, "x_bits", self.device)
        if x.dim() == 1:
            x = x.unsqueeze(0)
        if x.dim() != 2:
            raise InputError(f"x_bits must be (N, R), got shape {tuple(x.shape)}")
        if x.shape[1] != pw.rows:
            raise InputError(f"x_bits has {x.shape[1]} rows but w_bits has {pw.rows}")
        n, c = x.shape[0], pw.cols
        step = self._chunk_for(c)
        cur = torch.empty((n, c), dtype=self.dtype, device=self.device) if currents else None
        code = torch.empty((n, c), dtype=self.dtype, device=self.device) if codes else None
        lib = self._kernel()
        total: Any = 0.0
        E = self.n_moments
        with torch.no_grad():
            if lib is not None:
                from .kernel import evaluate
                thr, step_a = self._adc_rule() if codes else (None, 0.0)
                threads = self.kernel_threads or torch.get_num_threads()
                screen = {} if near is None else {"near_margin": near_margin, "near": near}
                if self._fused(lib, x, pw, threads):
                    got = self._fused_call(lib, x, pw, threads, step, thr, step_a, cur=cur, code=code, **screen)
                    if got is not None:
                        return cur, code, got[0]
                    # inputs other than 0 and 1: the products
                for s in range(0, n, step):
                    rowmap, xp = self._rows_with_ones(x[s:s + step])
                    k, m, xs = self._kernel_products(lib, xp, pw, threads) if xp.shape[0] else self._no_products(c)
                    total += evaluate(lib, k, m, E, self.n_variables, self._terms, self._coef_t, self.i_cell_a, xs=xs,
                                      coef_rows=self._coef_rows, term_idx=self._term_idx,
                                      simd=self.kernel_simd, cur=None if cur is None else cur[s:s + step], thresholds=thr,
                                      lsb=float(self.adc.lsb_counts), code=None if code is None else code[s:s + step],
                                      threads=threads, step_a=step_a, max_code=self.adc.max_code, rowmap=rowmap,
                                      lanes=self.kernel_lanes, near_margin=near_margin,
                                      near=None if near is None else near[s:s + step])
                return cur, code, total
            if near is not None:
                raise InputError("the certified reads' screen runs in the C kernel only")
            out = cur if cur is not None else torch.empty((n, c), dtype=self.dtype, device=self.device)
            for s in range(0, n, step):
                out[s:s + step] = self._torch_currents(*self._products(x[s:s + step], pw))
            out.mul_(self.i_cell_a)
            total = out.sum()
            if self.device.type == "cpu":
                total = float(total)
            if codes:
                code = self.adc.digitize(out)
            return cur, code, total

    def _fused_call(self, lib, x: torch.Tensor, pw: "PreparedWeights", threads: int, step: int, thr, step_a: float,
                    **out: Any) -> tuple[float, int] | None:
        """kernel.evaluate_fused for every pass of ``step`` vectors of ``x`` in one call (their sums added in pass
        order, as the passes of ``_run`` add them); the leak tables' input moments pass by pass, as there."""
        from .kernel import evaluate_fused
        n = x.shape[0]
        xs = (torch.cat([x[s:s + step].to(self.dtype) @ self._phi_xs[: x.shape[1]] for s in range(0, n, step)])
              if self.leak and n else None)
        return evaluate_fused(lib, x, cast(torch.Tensor, pw.w_mask), cast(torch.Tensor, self._phi_m)[:pw.rows], pw.cols,
                              len(self.orders), self.n_variables, self._terms, self._coef_t, self.i_cell_a,
                              cast(torch.Tensor, self._coef_rows), cast(torch.Tensor, self._term_idx), xs=xs,
                              thresholds=thr, lsb=float(self.adc.lsb_counts), threads=threads, step_a=step_a,
                              max_code=self.adc.max_code, chunk=step, **out)

    def read_accumulate(self, x_bits: Any, w_bits: Any, acc: torch.Tensor, s_x: torch.Tensor | None = None,
                        s_w: torch.Tensor | None = None, max_stride: int = 0) -> tuple[Any, int | None]:
        """Add the ADC codes of ``read(x_bits, w_bits)``, times the signs ``s_x`` (N,) and ``s_w`` (C,) where
        given (float32 +-1), to ``acc`` (N, C) float32 (integers: exact in any order). Returns (the sum of the
        currents, as ``read_with_current``; the largest ON-count of the vectors 0, max_stride, 2 max_stride, ...
        where the fused kernel found it on the way, else None). With the fused products the codes are added in
        the kernel, never stored."""
        pw = self.prepare(w_bits)
        x = _as_raw(x_bits, "x_bits", self.device)
        lib = self._kernel()
        if (lib is not None and x.dim() == 2 and x.shape[1] == pw.rows and acc.dtype == torch.float32
                and acc.shape == (x.shape[0], pw.cols) and acc.device.type == "cpu"):
            threads = self.kernel_threads or torch.get_num_threads()
            if self._fused(lib, x, pw, threads):
                thr, step_a = self._adc_rule()
                got = self._fused_call(lib, x, pw, threads, self._chunk_for(pw.cols), thr, step_a, acc=acc,
                                       sx=s_x, sw=s_w, max_stride=max_stride)
                if got is not None:
                    return got[0], (got[1] if max_stride > 0 and x.shape[0] else None)
        codes, total = self.read_with_current(x_bits, pw)
        add_codes(acc, codes, s_x, s_w)
        return total, None

    def _fused(self, lib, x: torch.Tensor, pw: "PreparedWeights", threads: int) -> bool:
        """Whether the passes of ``x`` run with the products fused into the C kernel (``fused_products``): a
        kernel with AVX-512 lanes, a table it takes (``kernel.fused_moments``), inputs of bfloat16 or float32 with
        unit column stride, and a float32 product of this shape checked to add in row order (the values the fused
        sums give)."""
        from .kernel import fused_available
        return (self.fused_products and pw.w_mask is not None and self._phi_m is not None and self._coef_rows is not None
                and fused_available(lib, len(self.orders), self.kernel_simd, self.kernel_lanes, self.n_variables,
                                    len(self.terms))
                and x.dtype in (torch.bfloat16, torch.float32) and (x.shape[0] == 0 or x.stride(1) == 1)
                and _row_sums_exact(lib, pw.rows, pw.w_moments.shape[1], pw.f32_kernel, threads))

    def _rows_with_ones(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(rowmap or None, the input vectors to multiply) for one pass of the C kernel: with
        ``skip_zero_rows`` and all-zero vectors among at least MIN_PRODUCT_ROWS, the vectors that have a 1
        (at least MIN_PRODUCT_ROWS of the pass, zero ones added where fewer) and the kernel's rowmap (the
        row of each vector among them, -1 for an all-zero vector); else (None, ``x``)."""
        n = x.shape[0]
        if not self.skip_zero_rows or n < MIN_PRODUCT_ROWS:
            return None, x
        nz = _nonzero_rows(x)
        idx = nz.nonzero().squeeze(1)
        n_ones = idx.numel()
        if n_ones == n:
            return None, x
        rowmap = torch.full((n,), -1, dtype=torch.int32)
        rowmap[idx] = torch.arange(n_ones, dtype=torch.int32)
        if 0 < n_ones < MIN_PRODUCT_ROWS:
            idx = torch.cat([idx, (~nz).nonzero().squeeze(1)[:MIN_PRODUCT_ROWS - n_ones]])
        return rowmap, x.index_select(0, idx)

    def _kernel_products(self, lib, x: torch.Tensor, pw: "PreparedWeights", threads: int
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``_products`` for the C kernel: as row sums (``sparse_products``) where they are faster (at most
        SPARSE_MAX_DENSITY of the inputs 1) and give the float32 product's values bit for bit (at least
        MIN_PRODUCT_ROWS vectors, a product checked to add in row order for this shape, inputs of 0 and 1
        only), else the products."""
        if (self.sparse_products and pw.w_float is not None and x.shape[0] >= MIN_PRODUCT_ROWS
                and x.dtype in (torch.bfloat16, torch.float32) and x.stride(1) == 1
                and float(x[::8].sum(dtype=torch.float32)) <= SPARSE_MAX_DENSITY * x[::8].numel()
                and _row_sums_exact(lib, pw.rows, pw.w_moments.shape[1], pw.f32_kernel, threads)):
            from .kernel import row_sums
            got = row_sums(lib, x, pw.w_float, pw.w_moments, threads)
            if got is not None:
                xs = x.to(self.dtype) @ self._phi_xs[: x.shape[1]] if self.leak else None
                return got[0], _offset(got[1], x, pw), xs
        return self._products(x, pw)

    def _no_products(self, cols: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The products of no input vector (a pass whose vectors are all zero)."""
        E = self.n_moments
        xs = torch.empty((0, 1 + E), dtype=self.dtype) if self.leak else None
        return torch.empty((0, cols), dtype=self.dtype), torch.empty((0, cols * E), dtype=self.dtype), xs

    def _chunk_for(self, cols: int) -> int:
        """Vectors per pass for ``cols`` columns: ``chunk``, and with the default chunk on the CPU no more
        than keep a pass's products within CHUNK_BYTES (at least MIN_CHUNK)."""
        if self.chunk != DEFAULT_CHUNK or self.device.type != "cpu":
            return self.chunk
        per_vector = 4 * (self.n_moments + 1) * max(1, cols)
        return max(MIN_CHUNK, min(self.chunk, CHUNK_BYTES // per_vector // 64 * 64))

    def _adc_rule(self):
        """(thresholds for the kernel, or None; level spacing in A, or 0): the ADC's own rule, a rounding
        for evenly spaced (ideal) levels as ``ADC.digitize`` does, else a search of the thresholds."""
        if self.adc._levels is None and self.adc.i_cell_a is not None:
            return None, self.adc.lsb_counts * self.adc.i_cell_a
        return self._thresholds(), 0.0

    def _thresholds(self):
        if self._thr is None:
            from .kernel import Thresholds
            self._thr = Thresholds(self.adc.thresholds_a())
        return self._thr

    def column_currents(self, x_bits: Any, w_bits: Any) -> torch.Tensor:
        """(N, C) non-ideal column currents (A). ``w_bits``: (R', C) of 0/1 or ``prepare(w_bits)``."""
        return cast(torch.Tensor, self._run(x_bits, w_bits, currents=True, codes=False)[0])

    def read(self, x_bits: Any, w_bits: Any) -> torch.Tensor:
        """(N, C) ADC codes: the estimated AND-count of each column (float tensor of integers)."""
        return cast(torch.Tensor, self._run(x_bits, w_bits, currents=False, codes=True)[1])

    def read_with_current(self, x_bits: Any, w_bits: Any) -> tuple[torch.Tensor, Any]:
        """(ADC codes (N, C), sum of all column currents in A): a float on CPU, a 0-d tensor on other
        devices (no synchronisation per call; the caller adds them up and converts once)."""
        _, code, total = self._run(x_bits, w_bits, currents=False, codes=True)
        return cast(torch.Tensor, code), total

    # ---- baselines (validation) -------------------------------------------------------------------
    def ideal_currents(self, x_bits: Any, w_bits: Any) -> torch.Tensor:
        """(N, C) currents without any non-ideality: k * I_on + (input-1, weight-0 cells) * I_off."""
        x, w = self._check(x_bits, w_bits)
        k = x @ w
        leak = x.sum(1, keepdim=True) - k
        return k * self.i_cell_a + leak * self.i_off_a

    def count_only_currents(self, x_bits: Any, w_bits: Any) -> torch.Tensor:
        """(N, C) the count-only table: mean calibration current of the column's ON-count."""
        x, w = self._check(x_bits, w_bits)
        k = (x @ w).round().long()
        return self._count_mean[k] * self.i_cell_a
