"""Mapping a binary layer onto R x C crossbars: im2col and tiling.

A binary convolution with weight (C_out, C_in, k, k) is unrolled (im2col) into a matrix product of
input vectors of length n = k*k*C_in with a weight matrix n x C_out. The unrolled input dimension is
ordered channel-fastest, (kh, kw, c_in) -- the order a hardware im2col of a channels-last feature map
produces -- and cut into T_r = ceil(n / R) row tiles of R rows; the output channels are cut into
T_c = ceil(C_out / C) column tiles of C columns. Each (row tile, column tile) pair is one crossbar.

A value v in {-1, +1} is held as the bit b(v) = (v + 1) / 2: an input +1 drives its row (on), a weight
+1 is a conducting cell. The last row tile may hold fewer than R real rows and the last column tile
fewer than C real columns; the unused rows and columns are off (bit 0) and are never flipped by
BinSparX. A -1 padding position of the binarized input is a *real* row holding an input of -1.

Bits are held in the dtype :func:`cosim.products.bits_dtype` chooses for the array height and device:
one whose products and sums of 0/1 values are exact integers for every count of the array (bfloat16 up
to 256 rows, float16 up to 2048, float32 beyond) and that the running CPU or GPU multiplies fastest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..products import bits_dtype


@dataclass(frozen=True)
class TileMap:
    """How an n x C_out binary weight matrix is cut into R x C crossbars."""

    n: int          #: input dimension of the unrolled layer (rows of the weight matrix)
    cout: int       #: output channels (columns of the weight matrix)
    rows: int       #: R, rows of one crossbar
    cols: int       #: C, columns of one crossbar

    def __post_init__(self) -> None:
        for name in ("n", "cout", "rows", "cols"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise InputError(f"{name} must be a positive integer, got {v!r}")

    @property
    def row_tiles(self) -> int:
        return math.ceil(self.n / self.rows)

    @property
    def col_tiles(self) -> int:
        return math.ceil(self.cout / self.cols)

    @property
    def n_padded(self) -> int:
        return self.row_tiles * self.rows

    @property
    def cout_padded(self) -> int:
        return self.col_tiles * self.cols

    @property
    def n_arrays(self) -> int:
        return self.row_tiles * self.col_tiles

    def real_rows(self) -> torch.Tensor:
        """(T_r,) number of real (mapped) rows in each row tile."""
        t = torch.arange(self.row_tiles)
        return torch.clamp(self.n - t * self.rows, max=self.rows)

    def real_cols(self) -> torch.Tensor:
        """(T_c,) number of real (mapped) columns in each column tile."""
        t = torch.arange(self.col_tiles)
        return torch.clamp(self.cout - t * self.cols, max=self.cols)

    def row_mask(self) -> torch.Tensor:
        """(T_r, R) 1 for real rows, 0 for unused rows of the last tile."""
        return (torch.arange(self.n_padded) < self.n).view(self.row_tiles, self.rows)

    def col_mask(self) -> torch.Tensor:
        """(C_padded,) 1 for real columns, 0 for unused columns of the last column tile."""
        return torch.arange(self.cout_padded) < self.cout


def conv_weight_matrix(weight_pm1: torch.Tensor) -> torch.Tensor:
    """(C_out, C_in, k, k) +-1 weight -> (n, C_out) in the (kh, kw, c_in) row order of :func:`im2col_bits`."""
    if weight_pm1.dim() != 4:
        raise InputError(f"convolution weight must be 4-D (C_out, C_in, kh, kw), got shape {tuple(weight_pm1.shape)}")
    cout = weight_pm1.shape[0]
    return weight_pm1.permute(0, 2, 3, 1).reshape(cout, -1).t()


def weight_tiles(weight_matrix_pm1: torch.Tensor, tiles: TileMap, dtype: torch.dtype | None = None) -> torch.Tensor:
    """(n, C_out) +-1 weight matrix -> (T_r, R, C_padded) bits, unused rows and columns 0 (off)."""
    n, cout = weight_matrix_pm1.shape
    if (n, cout) != (tiles.n, tiles.cout):
        raise InputError(f"weight matrix {n}x{cout} does not match the tile map {tiles.n}x{tiles.cout}")
    dtype = dtype or bits_dtype(tiles.rows)
    w = torch.zeros(tiles.n_padded, tiles.cout_padded, dtype=dtype, device=weight_matrix_pm1.device)
    w[:n, :cout] = (weight_matrix_pm1 > 0).to(dtype)
    return w.view(tiles.row_tiles, tiles.rows, tiles.cout_padded)


def conv_output_size(size: int, kernel: int, stride: int) -> int:
    """Output size of a convolution of an (already padded) input of ``size``."""
    return (size - kernel) // stride + 1


def im2col_bits(xb_pm1: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], tiles: TileMap,
                dtype: torch.dtype | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
    """Unroll an already padded +-1 input (B, C_in, H, W) into crossbar input bits.

    Returns ``(buf, (Ho, Wo))`` with ``buf`` of shape (B*Ho*Wo, T_r*R): row m is the input vector of
    output position m (batch-major, then row, then column), in the (kh, kw, c_in) order of
    :func:`conv_weight_matrix`; entries beyond n (unused rows of the last tile) are 0.
    """
    if xb_pm1.dim() != 4:
        raise InputError(f"input must be 4-D (B, C, H, W), got shape {tuple(xb_pm1.shape)}")
    dtype = dtype or bits_dtype(tiles.rows)
    # (B, H, W, C_in), channels contiguous: each kernel offset below then copies runs of C_in values
    # (from a channels-first input, element by element; the transposition costs less than it saves)
    bits = (xb_pm1 > 0).to(dtype).permute(0, 2, 3, 1).contiguous()
    return im2col_unroll(bits, kernel, stride, tiles)


def _check_unroll(cin: int, h: int, w: int, kernel: tuple[int, int], stride: tuple[int, int], tiles: TileMap) -> None:
    kh, kw = kernel
    if kh * kw * cin != tiles.n:
        raise InputError(f"input with {cin} channels and a {kh}x{kw} kernel gives {kh * kw * cin} rows, "
                         f"the tile map expects {tiles.n}")
    if conv_output_size(h, kh, stride[0]) < 1 or conv_output_size(w, kw, stride[1]) < 1:
        raise InputError(f"input of {h}x{w} is smaller than the {kh}x{kw} kernel")


def im2col_unroll(bits: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], tiles: TileMap
                  ) -> tuple[torch.Tensor, tuple[int, int]]:
    """:func:`im2col_bits` of input bits already padded and channels-last: ``bits`` (B, H, W, C_in), contiguous,
    in the dtype of the tiles (1 for an input +1, 0 for -1 and for the padding)."""
    b, h, w, cin = bits.shape
    _check_unroll(cin, h, w, kernel, stride, tiles)
    kh, kw = kernel
    sh, sw = stride
    ho, wo = conv_output_size(h, kh, sh), conv_output_size(w, kw, sw)
    buf = torch.empty(b, ho, wo, tiles.n_padded, dtype=bits.dtype, device=bits.device)
    for i in range(kh):
        for j in range(kw):
            p = (i * kw + j) * cin
            buf[..., p:p + cin] = bits[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]
    if tiles.n_padded > tiles.n:
        buf[..., tiles.n:] = 0
    return buf.view(b * ho * wo, tiles.n_padded), (ho, wo)
