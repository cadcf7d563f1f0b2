"""Array models: what one R x C crossbar reads for a batch of binary input vectors.

Every model has the same interface (:class:`ArrayModel`):

    codes = array.read(x_bits, w_bits)     # x_bits (N, R) in {0,1}, w_bits (R, C) in {0,1} -> (N, C)

``codes`` are the ADC codes of the columns: the estimated AND-count of each column (a float tensor of
integers). :class:`IdealArray` returns ``x_bits @ w_bits`` exactly; :class:`SurrogateArray` wraps the
SPICE-calibrated surrogate (cosim.surrogate, imported only when used); :class:`SpiceArray` runs
ngspice on a handful of tiles and digitises the currents with the surrogate's ADC.

``array.current_sum_a(x_bits, w_bits)`` is the sum over vectors and columns of the column currents in
A (for the array energy = sum I * v_read_v * t_read_s); ``array.exact`` says whether the codes are the
exact AND-counts.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from ..errors import InputError


@runtime_checkable
class ArrayModel(Protocol):
    rows: int
    #: columns of one array, or None where columns are independent and any number can be read at once
    cols: int | None
    exact: bool

    def read(self, x_bits: torch.Tensor, w_bits: torch.Tensor) -> torch.Tensor: ...


def check_operands(x_bits: torch.Tensor, w_bits: torch.Tensor, rows: int) -> None:
    if x_bits.dim() != 2 or w_bits.dim() != 2:
        raise InputError(f"read() needs x_bits (N, R) and w_bits (R, C), got {tuple(x_bits.shape)} and {tuple(w_bits.shape)}")
    if x_bits.shape[1] != rows or w_bits.shape[0] != rows:
        raise InputError(f"array has {rows} rows, got x_bits {tuple(x_bits.shape)} and w_bits {tuple(w_bits.shape)}")


class IdealArray:
    """No non-ideality: the column reads its exact AND-count, ``x_bits @ w_bits``.

    ``i_cell_a``: current of one conducting cell (A) for the ideal array energy (None: no energy).
    Products are computed in the operands' dtype: float16 bit tensors give exact counts up to 2048
    rows (see cosim.cim.mapping.bits_dtype).
    """

    exact = True

    def __init__(self, rows: int, cols: int | None = None, i_cell_a: float | None = None) -> None:
        if rows < 1 or (cols is not None and cols < 1):
            raise InputError(f"array size must be positive, got {rows}x{cols}")
        self.rows, self.cols, self.i_cell_a = int(rows), cols, i_cell_a

    def read(self, x_bits: torch.Tensor, w_bits: torch.Tensor) -> torch.Tensor:
        check_operands(x_bits, w_bits, self.rows)
        return x_bits @ w_bits

    def current_sum_a(self, x_bits: torch.Tensor, w_bits: torch.Tensor, codes: torch.Tensor | None = None) -> float | None:
        if self.i_cell_a is None:
            return None
        c = codes if codes is not None else self.read(x_bits, w_bits)
        return float(c.sum(dtype=torch.float64)) * self.i_cell_a

    def describe(self) -> dict:
        return {"model": "ideal", "rows": self.rows, "cols": self.cols, "i_cell_a": self.i_cell_a}
