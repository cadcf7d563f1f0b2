"""The vectorised torch surrogate: non-ideal column currents and ADC codes of whole batches, from a
SPICE-calibrated lookup table (``cosim.calibrate`` explains the model).

    sur = Surrogate.from_table("cosim/resources/tables/sram8t_128_decoupled.parquet")   # or a LookupTable
    codes = sur.read(x_bits, w_bits)               # (N, C) estimated AND-counts through the ADC
    i_a = sur.column_currents(x_bits, w_bits)      # (N, C) column currents (A)

``x_bits`` is (N, R') of 0/1 with R' <= rows (a partially used tile: the missing rows R'..rows-1 are
off), ``w_bits`` is (R', C) of 0/1, any C for the decoupled topology. Cost: ONE matrix product of x with
the (E+1)·C columns ``w * cos-basis`` (the first block is the ideal product x·w itself), then a few
element-wise operations per output; batches are processed in chunks so memory stays bounded.
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
        self.n_moments = int(table.meta["n_moments"])
        self.leak_terms = bool(table.meta["leak_terms"])
        coef = np.asarray(table["coef"], dtype=np.float64)
        n_feat = len(table.meta["features"])
        if coef.shape != (self.rows + 1, n_feat):
            raise TableError(f"table array 'coef' has shape {coef.shape}, expected {(self.rows + 1, n_feat)}")
        mu_range = np.asarray(table["mu_range"], dtype=np.float64)
        if mu_range.shape != (2, self.n_moments):
            raise TableError(f"table array 'mu_range' has shape {mu_range.shape}, expected {(2, self.n_moments)}")
        count_mean = np.asarray(table["count_mean_a"], dtype=np.float64)
        if count_mean.shape != (self.rows + 1,):
            raise TableError(f"table array 'count_mean_a' has shape {count_mean.shape}, expected {(self.rows + 1,)}")
        # Currents are computed in units of i_cell (well-scaled in float32), then scaled back.
        self._coef = torch.as_tensor(coef / self.i_cell_a, dtype=dtype, device=self.device)
        self._mu_lo = torch.as_tensor(mu_range[0], dtype=dtype, device=self.device).view(1, -1, 1)
        self._mu_hi = torch.as_tensor(mu_range[1], dtype=dtype, device=self.device).view(1, -1, 1)
        self._phi = torch.as_tensor(cosine_basis(self.rows, self.n_moments), dtype=dtype, device=self.device)
        self._count_mean = torch.as_tensor(count_mean / self.i_cell_a, dtype=dtype, device=self.device)
        self.adc = (adc or ADC()).bind(table)

    @classmethod
    def from_table(cls, table_or_path: LookupTable | str | Path, device: str | torch.device = "cpu",
                   adc: ADC | None = None, **kw: Any) -> "Surrogate":
        table = table_or_path if isinstance(table_or_path, LookupTable) else load_table(table_or_path)
        return cls(table, device=device, adc=adc, **kw)

    def __repr__(self) -> str:
        return (f"Surrogate({self.tech.name} {self.rows} rows {self.topology}, E={self.n_moments}, "
                f"leak={self.leak_terms}, device={self.device}, adc={self.adc!r})")

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
        """(R', (E+1)*C): [w, w*phi_1, ..., w*phi_E] as one right-hand side."""
        r = w.shape[0]
        phi = self._phi[:r]                                     # (R', E+1)
        return (phi.unsqueeze(2) * w.unsqueeze(1)).reshape(r, -1)

    def _chunk_currents(self, x: torch.Tensor, wp: torch.Tensor, c: int) -> torch.Tensor:
        """Currents in units of i_cell for a chunk of vectors."""
        E = self.n_moments
        n = x.shape[0]
        m = (x @ wp).view(n, E + 1, c)
        k = m[:, 0].round()
        inv = 1.0 / k.clamp(min=1.0)
        mu = torch.maximum(torch.minimum(m[:, 1:] * inv.unsqueeze(1), self._mu_hi), self._mu_lo)   # (n, E, C)
        feats = [torch.ones_like(k)] + [mu[:, e] for e in range(E)]
        feats += [mu[:, a] * mu[:, b] for a in range(E) for b in range(a, E)]
        if self.leak_terms:
            xs = x @ self._phi[: x.shape[1]]                    # (n, E+1): per-vector row moments
            lk = xs.unsqueeze(2) - m                            # leak (input 1, weight 0) moments
            lam = lk[:, 0] / self.rows
            feats += [lam, lam * lam] + [lam * mu[:, e] for e in range(E)]
            feats += [lk[:, e] / self.rows for e in range(1, E + 1)]
        f = torch.stack(feats, dim=-1)                          # (n, C, F)
        g = self._coef[k.long()]                                # (n, C, F)
        return (g * f).sum(-1)

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
