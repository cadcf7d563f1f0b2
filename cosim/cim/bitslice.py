"""k-bit convolutions on binary-cell crossbars: weights bit-sliced across columns, activations bit-serial.

A k-bit layer (cosim.bnn.quant.QuantConv2d) holds odd integer weights and activations
v = 2u - Q = sum_i 2**i p_i with +-1 bit-planes p_i (offset binary, Q = 2**k - 1). So

    y[m, c] = sum_r w[r, c] x[m, r] = sum_{i, j} 2**(i + j) sum_r pw_i[r, c] px_j[m, r]

and each inner sum is a binary (+-1) dot product, exactly the BNN's. The mapping:

- **weights sliced across columns**: weight plane i of output channel c is stored in column
  ``c * k + i`` (the k bits of one weight in k adjacent columns, LSB first), one bit per cell, so the
  layer's matrix is n x (k C_out) binary cells, cut into R x C arrays as a BNN layer's is;
- **activations bit-serial**: each activation bit-plane j is applied as one binary input vector,
  one array read per plane (k reads per input vector and array);
- every (plane j, column) read goes through the *same* :class:`~cosim.cim.layers.CrossbarMatrix` as a
  binary layer: the array model (ideal, or the SPICE-calibrated surrogate and its ADC) reads the
  AND-count, the digital periphery recovers the +-1 dot product (4c - 2 sum b(x) - 2 sum b(w) + n),
  BinSparX flips apply per plane when asked;
- **shift and add**, digitally: the k x k partial products are weighted by 2**(i+j) and summed, then
  multiplied by the layer's float scale (s_x s_w), the same operation as the software layer.

In ``ideal`` mode every partial product is exact (float32 on integers below 2**24), so the layer's
output is bit-identical to the software k-bit layer.

Statistics: the layer's :class:`~cosim.cim.stats.LayerStats` counts every plane read (array reads,
ON cells, rows on); :meth:`CiMQuantConv2d.plane_histograms` (enabled with ``collect_planes``) adds the
distributions per bit-plane: rows on per read (per activation plane) and the true AND-count (ON-count)
of each column per read (per activation plane x weight plane).
"""

from __future__ import annotations

import torch
from torch import nn

from ..bnn.quant import QuantConv2d, bit_planes_pm1
from ..errors import InputError
from . import binsparx as bsx
from .arrays import ArrayModel
from .layers import DEFAULT_CHUNK_BYTES, CrossbarMatrix, check_mappable_conv
from .mapping import conv_output_size, conv_weight_matrix, im2col_bits
from .stats import LayerStats


def sliced_weight_matrix(w_odd: torch.Tensor, bits: int) -> torch.Tensor:
    """(C_out, C_in, kh, kw) odd k-bit weights -> (n, k C_out) +-1 matrix, column c*k + i = plane i of c."""
    planes = [conv_weight_matrix(p) for p in bit_planes_pm1(w_odd, bits)]       # k x (n, C_out)
    return torch.stack(planes, dim=2).reshape(planes[0].shape[0], -1)            # (n, C_out, k) -> (n, k C_out)


def shift_add(partial: torch.Tensor, bits_x: int, bits_w: int) -> torch.Tensor:
    """(k_x, M, C_out * k_w) +-1 partial dot products -> (M, C_out) sum_{j,i} 2**(i+j) P[j, :, c*k_w + i]."""
    kx, m, ck = partial.shape
    if kx != bits_x or ck % bits_w:
        raise InputError(f"partial products of shape {tuple(partial.shape)} do not fit {bits_x}x{bits_w} planes")
    p = partial.view(kx, m, ck // bits_w, bits_w)
    wx = (2.0 ** torch.arange(bits_x, dtype=partial.dtype, device=partial.device)).view(kx, 1, 1, 1)
    ww = (2.0 ** torch.arange(bits_w, dtype=partial.dtype, device=partial.device)).view(1, 1, 1, bits_w)
    return (p * wx * ww).sum(dim=(0, 3))


class CiMQuantConv2d(nn.Module):
    """A :class:`~cosim.bnn.quant.QuantConv2d` computed on binary-cell crossbars (drop-in)."""

    scale: torch.Tensor     # buffer

    def __init__(self, conv: QuantConv2d, array: ArrayModel, cols: int, *, binsparx: bool = False,
                 max_active_rows: int | None = None, name: str = "", chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 max_stride: int = 8, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        check_mappable_conv(conv, QuantConv2d, name)
        self.bits = conv.bits
        self.kernel_size = tuple(conv.kernel_size)
        self.stride = tuple(conv.stride)
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.chunk_bytes = int(chunk_bytes)
        self.source = conv
        self.source.eval()
        with torch.no_grad():
            wm = sliced_weight_matrix(conv.int_weight().detach(), self.bits)
            self.register_buffer("scale", conv.out_scale().detach().clone(), persistent=False)
        self.matrix = CrossbarMatrix(wm, array, cols, binsparx=binsparx, max_active_rows=max_active_rows,
                                     name=name, max_stride=max_stride, dtype=dtype)
        self.matrix.stats.extra.update({"bits": self.bits, "bit_planes_per_read": 1,
                                        "weight_columns_per_output": self.bits})
        #: collect per-plane distributions (rows on, ON-counts) in :meth:`plane_histograms`
        self.collect_planes = False
        self.plane_stride = int(max_stride) or 1
        self._rows_on = torch.zeros(self.bits, self.matrix.tiles.rows + 1, dtype=torch.float64)
        self._on_count = torch.zeros(self.bits, self.bits, self.matrix.tiles.rows + 1, dtype=torch.float64)

    @property
    def stats(self) -> LayerStats:
        return self.matrix.stats

    # ------------------------------------------------------------------ per-plane statistics
    def _collect(self, buf: torch.Tensor) -> None:
        rows_on, on_count = count_histograms(self.matrix, buf, self.bits, self.bits, self.plane_stride)
        self._rows_on += rows_on
        self._on_count += on_count

    def plane_histograms(self) -> dict:
        """``rows_on[j][r]``: reads of activation plane j with r rows on (per row tile and vector);
        ``on_count[j][i][c]``: column reads of activation plane j on weight plane i with AND-count c."""
        return {"bits": self.bits, "rows": self.matrix.tiles.rows, "vector_stride": self.plane_stride,
                "rows_on": self._rows_on.tolist(), "on_count": self._on_count.tolist()}

    # ------------------------------------------------------------------ forward
    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xi = self.source.int_input(x)                              # odd levels, padded with -Q
        planes = bit_planes_pm1(xi, self.bits)                     # k x (B, C, H, W) of +-1
        b, k = xi.shape[0], self.bits
        tiles, cout = self.matrix.tiles, self.out_channels
        ho = conv_output_size(xi.shape[2], self.kernel_size[0], self.stride[0])
        wo = conv_output_size(xi.shape[3], self.kernel_size[1], self.stride[1])
        per_image = k * ho * wo * tiles.n_padded * torch.finfo(self.matrix.dtype).bits // 8
        step = max(1, self.chunk_bytes // max(1, per_image))
        outs = []
        for i in range(0, b, step):
            xb = torch.cat([p[i:i + step] for p in planes], dim=0)           # (k Bc, C, H, W), plane-major
            buf, (ho, wo) = im2col_bits(xb, self.kernel_size, self.stride, tiles, self.matrix.dtype)  # type: ignore[arg-type]  # pairs
            if self.collect_planes:
                self._collect(buf)
            part = self.matrix(buf, overwrite=True)                          # (k Bc Ho Wo, k C_out)
            y = shift_add(part.view(k, -1, tiles.cout), k, k)                 # (Bc Ho Wo, C_out), exact integers
            outs.append(y.view(-1, ho, wo, cout))
        y = (outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)).permute(0, 3, 1, 2)
        if xi.is_contiguous(memory_format=torch.channels_last) and not xi.is_contiguous():
            y = y.contiguous(memory_format=torch.channels_last)
        else:
            y = y.contiguous()
        return y * self.scale

    def extra_repr(self) -> str:
        t = self.matrix.tiles
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"bits={self.bits}; {t.row_tiles}x{t.col_tiles} arrays of {t.rows}x{t.cols} "
                f"({self.bits} columns per weight, {self.bits} reads per input vector), binsparx={self.matrix.binsparx}")


def count_histograms(matrix: CrossbarMatrix, buf: torch.Tensor, bits_x: int, bits_w: int,
                     stride: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Distributions of one chunk of input bits ``buf`` (k_x planes stacked plane-major, as a
    :class:`CiMQuantConv2d` or, with k = 1, a binary layer applies them) on ``matrix``, over every
    ``stride``-th input vector, after BinSparX flips where the matrix uses them.

    Returns ``rows_on`` (k_x, R + 1): reads (vector x row tile) with r rows on, per activation plane;
    ``on_count`` (k_x, k_w, R + 1): column reads with AND-count c, per activation x weight plane."""
    tiles, kx, kw = matrix.tiles, int(bits_x), int(bits_w)
    x = buf.view(kx, -1, tiles.n_padded)[:, ::max(1, int(stride))].reshape(-1, tiles.n_padded).clone()
    if matrix.binsparx:
        x, _ = bsx.flip_inputs(x, tiles, inplace=True)
    x3 = x.view(kx, -1, tiles.row_tiles, tiles.rows)
    nbin, cout = tiles.rows + 1, tiles.cout
    rows_hist = torch.zeros(kx, nbin, dtype=torch.float64)
    on_hist = torch.zeros(kx, kw, nbin, dtype=torch.float64)
    for t in range(tiles.row_tiles):
        xt = x3[:, :, t, :].float()                                            # (k_x, m, R)
        rows_on = xt.sum(dim=2).long()                                         # (k_x, m)
        counts = torch.matmul(xt, matrix.w_tiles[t][:, :cout].float()).long()  # (k_x, m, k_w C_out)
        counts = counts.view(kx, counts.shape[1], cout // kw, kw)
        for j in range(kx):
            rows_hist[j] += torch.bincount(rows_on[j], minlength=nbin).double()
            for i in range(kw):
                on_hist[j, i] += torch.bincount(counts[j, :, :, i].reshape(-1), minlength=nbin).double()
    return rows_hist, on_hist


def reset_plane_histograms(model: nn.Module, collect: bool | None = None) -> None:
    for m in model.modules():
        if isinstance(m, CiMQuantConv2d):
            m._rows_on.zero_()
            m._on_count.zero_()
            if collect is not None:
                m.collect_planes = bool(collect)
