"""The vectorised torch surrogate: non-ideal column currents and ADC codes of whole batches, from a
SPICE-calibrated lookup table (``cosim.calibrate`` explains the model).

    sur = Surrogate.from_table("cosim/resources/tables/sram8t_128_decoupled.parquet")   # or a LookupTable
    codes = sur.read(x_bits, w_bits)               # (N, C) estimated AND-counts through the ADC
    i_a = sur.column_currents(x_bits, w_bits)      # (N, C) column currents (A)

``x_bits`` is (N, R') of 0/1 with R' <= rows (a partially used tile: the missing rows R'..rows-1 are
off), ``w_bits`` is (R', C) of 0/1, any C for the decoupled topology. Cost: ONE matrix product of x with
the (E+1)·C columns ``w * cos-basis`` (one of each column's E+1 is the ideal product x·w itself), one
gather of the count's coefficients, and a few element-wise operations per output; batches are processed in chunks so memory stays bounded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .adc import ADC
from .calibrate import MODEL, cosine_basis
from .errors import InputError, TableError
from .tables import LookupTable, load_table

DEFAULT_CHUNK = 2048


def _as_tensor(a: Any, name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        t = a
    else:
        try:
            t = torch.as_tensor(np.asarray(a))
        except (TypeError, ValueError, RuntimeError):
            raise InputError(f"{name} is not a numeric array") from None
    if t.dtype == torch.bool or not t.is_floating_point() or t.dtype != dtype:
        t = t.to(dtype)
    return t.to(device)


class Surrogate:
    """Replays one lookup table for batches of binary inputs and weights (torch, CPU or GPU)."""

    def __init__(self, table: LookupTable, device: str | torch.device = "cpu", adc: ADC | None = None,
                 dtype: torch.dtype = torch.float32, chunk: int = DEFAULT_CHUNK) -> None:
        if table.meta.get("model") != MODEL:
            raise TableError(f"table model '{table.meta.get('model')}' is not supported (this cosim reads {MODEL})")
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
        self.orders = [int(e) for e in table.meta["orders"]]
        lo = table.meta.get("leak_orders")
        self.leak_orders = None if lo is None else [int(e) for e in lo]
        self.leak_terms = self.leak_orders is not None
        n_feat = len(table.meta["features"])
        coef = np.asarray(table["coef"], dtype=np.float64)
        if coef.shape != (self.rows + 1, n_feat) or n_feat != 1 + 2 * len(self.orders) + (
                0 if lo is None else 2 + len(self.leak_orders)):
            raise TableError(f"table array 'coef' has shape {coef.shape}, which does not match its {n_feat} features")
        count_mean = np.asarray(table["count_mean_a"], dtype=np.float64)
        if count_mean.shape != (self.rows + 1,):
            raise TableError(f"table array 'count_mean_a' has shape {count_mean.shape}, expected {(self.rows + 1,)}")
        # Currents are computed in units of i_cell (well-scaled in float32), then scaled back.
        self._coef = torch.as_tensor(coef / self.i_cell_a, dtype=dtype, device=self.device)
        if lo is not None and not set(self.leak_orders) <= set(self.orders):
            raise TableError("table leak orders must be a subset of its orders")
        self._leak_pos = [] if lo is None else [self.orders.index(e) for e in self.leak_orders]
        self._phi = torch.as_tensor(cosine_basis(self.rows, self.orders), dtype=dtype, device=self.device)
        self._phi_leak = (None if lo is None else
                          torch.as_tensor(cosine_basis(self.rows, self.leak_orders), dtype=dtype, device=self.device))
        self._count_mean = torch.as_tensor(count_mean / self.i_cell_a, dtype=dtype, device=self.device)
        self.adc = (adc or ADC()).bind(table)

    @classmethod
    def from_table(cls, table_or_path: LookupTable | str | Path, device: str | torch.device = "cpu",
                   adc: ADC | None = None, **kw: Any) -> "Surrogate":
        table = table_or_path if isinstance(table_or_path, LookupTable) else load_table(table_or_path)
        return cls(table, device=device, adc=adc, **kw)

    def __repr__(self) -> str:
        return (f"Surrogate({self.tech.name} {self.rows} rows {self.topology}, orders={self.orders}, "
                f"leak_orders={self.leak_orders}, device={self.device}, adc={self.adc!r})")

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
    def _weights(self, w: torch.Tensor) -> torch.Tensor:
        """(R', C*(1+E)): for each column c the block [w_c, w_c*phi_e1, w_c*phi_e2, ...], so that the
        product x @ W viewed as (N, C, 1+E) holds k and the moments of every column contiguously."""
        r = w.shape[0]
        phi = self._phi[:r]                                     # (R', 1+E)
        return (w.unsqueeze(2) * phi.unsqueeze(1)).reshape(r, -1)

    def _chunk_currents(self, x: torch.Tensor, wp: torch.Tensor, c: int) -> torch.Tensor:
        """Currents in units of i_cell for a chunk of vectors: one matmul, one gather, a few passes."""
        n = x.shape[0]
        E = len(self.orders)
        m = (x @ wp).view(n, c, E + 1)
        k = m[..., 0]
        g = torch.nn.functional.embedding(k.round().long(), self._coef)      # (n, C, F)
        mom = m[..., 1:]
        t = torch.addcmul(g[..., 1:1 + E], g[..., 1 + E:1 + 2 * E], mom)     # c1 + c2 m   (n, C, E)
        out = torch.add(g[..., 0], t.mul_(mom).sum(-1))
        if self.leak_orders is not None:
            xs = x @ self._phi_leak[: x.shape[1]]              # (n, 1+EL): per-vector row sums / moments
            lk = xs[:, :1] - k                                  # leaking cells: input 1, weight 0
            parts = [lk, lk * lk] + [xs[:, 1 + i: 2 + i] - m[..., 1 + self._leak_pos[i]]
                                     for i in range(len(self.leak_orders))]
            out = out + (g[..., 1 + 2 * E:] * torch.stack(parts, dim=-1)).sum(-1)
        return out

    def column_currents(self, x_bits: Any, w_bits: Any) -> torch.Tensor:
        """(N, C) non-ideal column currents (A)."""
        x, w = self._check(x_bits, w_bits)
        wp = self._weights(w)
        c = w.shape[1]
        out = torch.empty((x.shape[0], c), dtype=self.dtype, device=self.device)
        with torch.no_grad():
            for s in range(0, x.shape[0], self.chunk):
                out[s:s + self.chunk] = self._chunk_currents(x[s:s + self.chunk], wp, c)
        return out * self.i_cell_a

    def read(self, x_bits: Any, w_bits: Any) -> torch.Tensor:
        """(N, C) ADC codes: the estimated AND-count of each column (float tensor of integers)."""
        return self.adc.digitize(self.column_currents(x_bits, w_bits))

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
