"""BinSparX (Malhotra & Gupta, arXiv 2412.03553): flip bits that keep crossbars sparse.

A cell conducts only for (input +1, weight +1), so the array reads the AND-count
c = sum_r b(x_r) b(w_r) per column, b(v) = (v + 1) / 2, and the signed partial sum of a tile with n real
rows is recovered digitally (physics-facts.md, reconstructed):

    sum_r w_r x_r = 4 c - 2 sum_r b(x_r) - 2 sum_r b(w_r) + n

- Static weight sparsification: per crossbar column (the slice of a weight column that one array
  holds) that holds more +1 than -1, the array stores its negation and a flip bit s_w = -1 is kept.
- Dynamic activation sparsification: per input sub-vector applied to one array, if more than half of
  its real entries are +1, its negation is applied and a flip bit s_x = -1 is kept.
- The partial sum read from the flipped operands is s_x s_w times the true one, so it is corrected by
  the product of the flips: exact in ideal arithmetic, bit for bit.

Only real rows and columns are counted and flipped; unused rows and columns of a tile stay off.
After the flips every applied sub-vector has at most floor(n/2) rows on and every stored column at
most floor(n/2) conducting cells, so an AND-count never exceeds floor(n/2) (it may still be larger
than without flips for one particular pair; on skewed data, as in BNNs, the total drops).
"""

from __future__ import annotations

import torch

from .mapping import TileMap


def flip_weights(w_tiles: torch.Tensor, tiles: TileMap) -> tuple[torch.Tensor, torch.Tensor]:
    """Static flips of weight tiles.

    ``w_tiles``: (T_r, R, C_padded) bits from :func:`cosim.cim.mapping.weight_tiles`.
    Returns ``(w_flipped, flip)``: the stored bits and a (T_r, C_padded) bool, True where the column
    slice was negated (it held more +1 than -1 over its real rows).
    """
    n_real = tiles.real_rows().to(w_tiles.device)                         # (T_r,)
    ones = w_tiles.sum(dim=1, dtype=torch.float32)                         # (T_r, C_padded)
    flip = 2 * ones > n_real[:, None]
    real = tiles.row_mask().to(w_tiles.device)[:, :, None] & tiles.col_mask().to(w_tiles.device)[None, None, :]
    negated = real.to(w_tiles.dtype) - w_tiles
    return torch.where(flip[:, None, :], negated, w_tiles), flip


def flip_inputs(x_buf: torch.Tensor, tiles: TileMap, inplace: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic flips of the input sub-vectors, all tiles at once.

    ``x_buf``: (M, T_r*R) bits from :func:`cosim.cim.mapping.im2col_bits` (overwritten when ``inplace``).
    Returns ``(x_flipped, flip)`` with ``flip`` (M, T_r) bool, True where more than half of the real
    entries of the sub-vector were +1 and the negation is applied instead.
    """
    m = x_buf.shape[0]
    x3 = x_buf.view(m, tiles.row_tiles, tiles.rows)
    n_real = tiles.real_rows().to(x_buf.device)
    ones = x3.sum(dim=2).float() if x3.dtype != torch.float32 else x3.sum(dim=2, dtype=torch.float32)  # (M, T_r), exact
    flip = 2 * ones > n_real[None, :]
    out = x3 if inplace else x3.clone()
    out.sub_(flip[:, :, None].to(x_buf.dtype)).abs_()          # |x - f|: 1 - x where flipped, x elsewhere
    last = int(n_real[-1])
    if last < tiles.rows:
        out[:, -1, last:] = 0                                   # unused rows stay off
    return out.view(m, tiles.n_padded), flip


def sign_of(flip: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Flip bits as signs: -1 where flipped, +1 elsewhere."""
    return 1 - 2 * flip.to(dtype)
