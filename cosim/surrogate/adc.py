"""The column ADC: a current in, an estimated AND-count out.

Code ``c`` stands for an AND-count of ``c * lsb_counts``. Each code has a reference current level;
a current is given the code whose level is nearest (decision thresholds halfway between neighbouring
levels), and currents beyond the last level clip to the largest code ``2**bits - 1`` (or the array's
row count, whichever is smaller). Two choices of levels:

``ideal``       level(c) = c * lsb_counts * i_cell_a: the ADC of a designer who assumes no IR drop. Under
                IR drop the codes of busy columns come out low; that error is what a study measures.
``calibrated``  level(c) = the mean SPICE column current with ON-count c * lsb_counts over the
                calibration sweep's design points (random Bernoulli and placed weight columns; the
                table's ``count_mean_a``, cosim.surrogate.fit.LEVEL_SAMPLES): an ADC whose references
                were trimmed on the real array, so only pattern-dependent spread remains.

An ADC is described first (``ADC(bits=7, references="calibrated")``) and bound to a lookup table
(``adc.bind(table)``) which supplies i_cell_a, the row count and the calibrated levels; the surrogate
binds its ADC itself. ``digitize`` accepts torch tensors (any device) and numpy arrays.

    >>> adc = ADC(bits=3, references="ideal", i_cell_a=1e-6)
    >>> adc.digitize(np.array([0.0, 0.4e-6, 0.6e-6, 2.2e-6, 50e-6])).tolist()
    [0.0, 0.0, 1.0, 2.0, 7.0]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InputError

REFERENCES = ("ideal", "calibrated")


class ADC:
    """Column ADC with ``bits`` of resolution and ideal or SPICE-calibrated reference levels."""

    def __init__(self, bits: int | None = None, references: str = "ideal", lsb_counts: int = 1,
                 i_cell_a: float | None = None, levels_a: Any = None, rows: int | None = None) -> None:
        if references not in REFERENCES:
            raise InputError(f"unknown ADC references '{references}': expected one of {', '.join(REFERENCES)}")
        if bits is not None and (isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= int(bits) <= 16):
            raise InputError(f"ADC bits must be an integer from 1 to 16, got {bits!r}")
        if isinstance(lsb_counts, bool) or not isinstance(lsb_counts, (int, np.integer)) or int(lsb_counts) < 1:
            raise InputError(f"ADC lsb_counts must be a positive integer, got {lsb_counts!r}")
        if i_cell_a is not None and not (isinstance(i_cell_a, (int, float)) and math.isfinite(i_cell_a) and i_cell_a > 0):
            raise InputError(f"ADC i_cell_a must be a positive current, got {i_cell_a!r}")
        if rows is not None and int(rows) < 1:
            raise InputError(f"ADC rows must be positive, got {rows!r}")
        self.bits = None if bits is None else int(bits)
        self.references = references
        self.lsb_counts = int(lsb_counts)
        self.i_cell_a = None if i_cell_a is None else float(i_cell_a)
        self.rows = None if rows is None else int(rows)
        self._levels: np.ndarray | None = None
        if levels_a is not None:
            lv = np.asarray(levels_a, dtype=np.float64).ravel()
            if lv.size < 1 or not np.all(np.isfinite(lv)) or np.any(np.diff(lv) <= 0):
                raise InputError("ADC levels_a must be finite and strictly increasing")
            self._levels = lv
        self._cache: dict[tuple[str, Any], Any] = {}

    # ---- configuration ---------------------------------------------------------------------------
    @property
    def max_code(self) -> int:
        """Largest code: 2**bits - 1, and no more codes than the array has counts (rows // lsb)."""
        limits = []
        if self.bits is not None:
            limits.append(2 ** self.bits - 1)
        if self.rows is not None:
            limits.append(self.rows // self.lsb_counts)
        if self._levels is not None:
            limits.append(self._levels.size - 1)
        if not limits:
            raise InputError("ADC needs bits or rows to know its range (bind it to a table)")
        return int(min(limits))

    def levels_a(self) -> np.ndarray:
        """Reference current of every code 0..max_code (A)."""
        n = self.max_code + 1
        if self._levels is not None:
            return self._levels[:n]
        if self.i_cell_a is None:
            raise InputError("ADC has no reference levels: give i_cell_a or bind it to a lookup table")
        return np.arange(n, dtype=np.float64) * self.lsb_counts * self.i_cell_a

    def thresholds_a(self) -> np.ndarray:
        lv = self.levels_a()
        return 0.5 * (lv[1:] + lv[:-1])

    def bind(self, table: Any) -> "ADC":
        """A copy configured from a lookup table: rows, i_cell_a, and (calibrated) the SPICE levels."""
        rows = int(table.rows)
        i_cell = float(table.provenance["i_cell_a"])
        out = ADC(bits=self.bits, references=self.references, lsb_counts=self.lsb_counts,
                  i_cell_a=self.i_cell_a or i_cell, rows=self.rows or rows)
        if self._levels is not None:
            out._levels = self._levels
        elif self.references == "calibrated":
            mean = np.asarray(table["count_mean_a"], dtype=np.float64)
            idx = np.arange(out.max_code + 1) * out.lsb_counts
            lv = mean[np.minimum(idx, mean.size - 1)]
            # Strictly increasing levels (an ON cell never lowers a column's mean current; guard rounding).
            lv = np.maximum.accumulate(lv + np.arange(lv.size) * 1e-18)
            out._levels = lv
        return out

    def describe(self) -> dict[str, Any]:
        return {"bits": self.bits, "references": self.references, "lsb_counts": self.lsb_counts,
                "max_code": self.max_code, "i_cell_a": self.i_cell_a}

    def __repr__(self) -> str:
        return f"ADC(bits={self.bits}, references={self.references!r}, lsb_counts={self.lsb_counts})"

    # ---- conversion ------------------------------------------------------------------------------
    def digitize(self, current_a: Any) -> Any:
        """Codes (estimated AND-counts, float, integer-valued) of column currents; same type and device
        as the input (torch tensor or numpy array)."""
        scale = float(self.lsb_counts)
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency
            torch = None  # type: ignore[assignment]  # a module or None
        if torch is not None and isinstance(current_a, torch.Tensor):
            if self._levels is None:
                # Evenly spaced ideal levels: the nearest level is a rounding, ~3x cheaper than a search.
                # ceil(x/step - 1/2) counts the thresholds (c + 1/2)*step lying strictly below x, as
                # bucketize(right=False) does.
                step = self.lsb_counts * self.i_cell_a if self.i_cell_a is not None else None
                if step is None:
                    raise InputError("ADC has no reference levels: give i_cell_a or bind it to a lookup table")
                x = current_a if current_a.is_floating_point() else current_a.to(torch.float32)
                codes = torch.ceil(x / step - 0.5).clamp_(0, self.max_code)
                return codes * scale
            key = ("torch", (current_a.device, current_a.dtype))
            t = self._cache.get(key)
            if t is None:
                t = torch.as_tensor(self.thresholds_a(), dtype=current_a.dtype, device=current_a.device)
                self._cache[key] = t
            codes = torch.bucketize(current_a.contiguous(), t, right=False)
            return codes.to(current_a.dtype if current_a.is_floating_point() else torch.float32) * scale
        arr = np.asarray(current_a, dtype=np.float64)
        return np.searchsorted(self.thresholds_a(), arr, side="left").astype(np.float64) * scale
