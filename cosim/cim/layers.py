"""CiM layers: a binary convolution computed tile by tile on crossbar array models.

:class:`CrossbarMatrix` holds one n x C_out binary weight matrix mapped onto R x C arrays (with BinSparX
weight flips when asked) and computes signed dot products of input bit vectors with it:

    for each row tile t:   codes_t = array.read(x_t', W_t')            (ADC codes, AND-counts)
                           P_t = 4 codes_t - 2 sum b(x_t') - 2 sum b(W_t') + n_t
    out = sum_t s_x[t] s_w[t] P_t                                    (BinSparX correction)

The digital parts (sums of bits, flips, n_t) are exact; with :class:`~cosim.cim.arrays.IdealArray` the
result is the exact integer dot product, bit for bit the software convolution's. All arithmetic after
the read is float32 on integers below 2**24, so it is exact in any order.

:class:`CiMConv2d` replaces a :class:`cosim.bnn.layers.BinConv2d`: same binarization and -1 padding,
then im2col (cosim.cim.mapping) and a :class:`CrossbarMatrix`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..bnn.layers import BinConv2d
from ..errors import InputError
from ..products import exact_limit, int8_matmul, int8_products
from . import binsparx as bsx
from .arrays import ArrayModel
from .mapping import (TileMap, bits_dtype, conv_output_size, conv_weight_matrix, im2col_bits, im2col_unroll,
                      weight_tiles)
from .stats import LayerStats

#: bytes of unrolled input bits processed at once by one layer (bounds memory whatever the batch)
DEFAULT_CHUNK_BYTES = 96 * 2**20


def column_sums(x: torch.Tensor) -> torch.Tensor:
    """Exact float32 sums over the first dimension of a 0/1 matrix (M, K) of bits (any bit dtype).

    Half-precision sums are taken as products with a ones vector over blocks of as many rows as the
    dtype counts exactly (2048 for float16, 256 for bfloat16), then added in float32; a plain
    ``sum(dtype=float32)`` would first copy the whole matrix.
    """
    if x.dtype == torch.float32:
        return x.sum(dim=0, dtype=torch.float32)
    m, k = x.shape
    blk = exact_limit(x.dtype)
    q = m // blk
    total = torch.zeros(k, dtype=torch.float32, device=x.device)
    if q:
        ones = torch.ones(1, blk, dtype=x.dtype, device=x.device)
        total += torch.matmul(ones, x[:q * blk].view(q, blk, k)).sum(dim=0, dtype=torch.float32)[0]
    if m > q * blk:
        rest = x[q * blk:]
        total += (torch.ones(1, rest.shape[0], dtype=x.dtype, device=x.device) @ rest)[0].float()
    return total


def row_sums(x3: torch.Tensor) -> torch.Tensor:
    """Exact float32 sums over the last dimension (R entries of 0/1, R within the bit dtype's exact
    range, as :func:`cosim.products.bits_dtype` guarantees) of (M, T, R)."""
    if x3.dtype != torch.float32:
        return x3.sum(dim=2).float()          # float accumulation inside, every count <= R exact
    return x3.sum(dim=2, dtype=torch.float32)


class CrossbarMatrix(nn.Module):
    """A binary weight matrix (n, C_out) of +-1 mapped onto crossbars of ``array.rows`` x ``cols``."""

    # buffers (registered in __init__)
    w_ones_unflipped: torch.Tensor
    w_tiles: torch.Tensor
    s_w: torch.Tensor
    s_w16: torch.Tensor
    w_signed: torch.Tensor
    w_signed_i8: torch.Tensor
    w_col_ones: torch.Tensor
    w_row_ones: torch.Tensor
    n_real: torch.Tensor

    def __init__(self, weight_matrix_pm1: torch.Tensor, array: ArrayModel, cols: int, *, binsparx: bool = False,
                 max_active_rows: int | None = None, name: str = "", max_stride: int = 8,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        n, cout = weight_matrix_pm1.shape
        self.tiles = TileMap(n=int(n), cout=int(cout), rows=int(array.rows), cols=int(cols))
        if array.cols is not None and array.cols != cols:
            raise InputError(f"array model has {array.cols} columns, the mapping asks for {cols}")
        if max_active_rows is not None and max_active_rows < 1:
            raise InputError(f"max_active_rows must be >= 1, got {max_active_rows}")
        self.array = array
        self.binsparx = bool(binsparx)
        self.max_active_rows = max_active_rows if (max_active_rows and max_active_rows < self.tiles.rows) else None
        self.max_stride = int(max_stride)
        #: dtype of the bit tensors (None: the fastest exact one on the CPU, cosim.products.bits_dtype)
        self.dtype = dtype or bits_dtype(self.tiles.rows)
        if exact_limit(self.dtype) < self.tiles.rows:
            raise InputError(f"{self.dtype} does not hold every AND-count of {self.tiles.rows}-row arrays exactly")
        w = weight_tiles(weight_matrix_pm1, self.tiles, self.dtype)
        self.register_buffer("w_ones_unflipped", w.sum(dim=2, dtype=torch.float32), persistent=False)  # (T, R)
        if self.binsparx:
            w, wflip = bsx.flip_weights(w, self.tiles)
        else:
            wflip = torch.zeros(self.tiles.row_tiles, self.tiles.cout_padded, dtype=torch.bool)
        self.register_buffer("w_tiles", w.contiguous(), persistent=False)                   # (T, R, Cp)
        self.register_buffer("s_w", bsx.sign_of(wflip), persistent=False)                     # (T, Cp)
        self.register_buffer("s_w16", self.s_w.to(self.dtype), persistent=False)
        #: linear exact arrays (IdealArray): the stored bits times their flip signs, (T*R, C_out), so that
        #: the signed sum over several row tiles of s_x s_w (x' . w') is one product (see _linear_forward)
        self.linear = bool(getattr(array, "linear", False)) and array.cols is None
        if self.linear:
            ws = w[:, :, :cout] * self.s_w16[:, None, :cout]
            self.register_buffer("w_signed", ws.reshape(-1, cout).contiguous(), persistent=False)
            #: the same in int8, for CPUs whose int8 products are faster (cosim.products.int8_products)
            self.register_buffer("w_signed_i8", self.w_signed.to(torch.int8).contiguous(), persistent=False)
        self.register_buffer("w_col_ones", w.sum(dim=1, dtype=torch.float32), persistent=False)  # (T, Cp)
        self.register_buffer("w_row_ones", w.sum(dim=2, dtype=torch.float64), persistent=False)  # (T, R), stored
        self.n_real_sum = float(self.tiles.real_rows().sum())                                    # == tiles.n
        self.register_buffer("n_real", self.tiles.real_rows().to(torch.float32), persistent=False)  # (T,)
        self.stats = LayerStats(name=name, rows=self.tiles.rows, cols=self.tiles.cols,
                                row_tiles=self.tiles.row_tiles, col_tiles=self.tiles.col_tiles)
        real_cols = self.tiles.col_mask()
        self.stats.flipped_columns = float((wflip & real_cols[None, :]).sum())
        self.stats.column_slices = float(self.tiles.row_tiles * cout)
        self.stats.stored_ones = float(w.sum(dtype=torch.float64))
        self.stats.real_cells = float(n * cout)
        #: spot checks (spice mode): (row tile, column tile) pairs whose inputs are recorded once
        self.spot_tiles: set[tuple[int, int]] = set()
        self.spot_vectors = 8
        self.spot_records: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._current_acc = None
        self._current_unknown = False

    # ---------------------------------------------------------------- reading one row tile
    def _read_tile(self, x_t: torch.Tensor, t: int) -> tuple[torch.Tensor, float | None]:
        """(ADC codes (M, C_out), sum of column currents or None) of row tile t for input bits x_t (M, R).

        Columns independent (decoupled): the real columns are read at once. Otherwise each column
        tile is one array of C columns (unused columns off) and its real columns are kept."""
        w_t = self.w_tiles[t]
        rwc = getattr(self.array, "read_with_current", None)
        cout = self.tiles.cout
        if self.array.cols is None:
            if rwc is not None:
                return rwc(x_t, w_t[:, :cout])
            return self.array.read(x_t, w_t[:, :cout]), None
        c = self.tiles.cols
        parts, current = [], 0.0
        for j in range(self.tiles.col_tiles):
            w_j = w_t[:, j * c:(j + 1) * c]
            if rwc is not None:
                codes, cur = rwc(x_t, w_j)
                current = None if (current is None or cur is None) else current + cur
            else:
                codes, current = self.array.read(x_t, w_j), None
            parts.append(codes)
        codes = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return codes[:, :cout], current

    def _track_max(self, x_t: torch.Tensor, t: int, codes: torch.Tensor) -> None:
        """Largest true AND-count of a real column in one read, over every ``max_stride``-th vector."""
        k = self.max_stride
        if not k or x_t.shape[0] == 0:
            return
        if self.array.exact:
            mx = codes[::k].max()
        else:
            mx = (x_t[::k] @ self.w_tiles[t][:, :self.tiles.cout]).max()
        self.stats.max_on_count = max(self.stats.max_on_count, float(mx))

    def _record_spot(self, x_t: torch.Tensor, t: int) -> None:
        for j in range(self.tiles.col_tiles):
            if (t, j) in self.spot_tiles and (t, j) not in self.spot_records and x_t.shape[0]:
                k = min(self.spot_vectors, x_t.shape[0])
                idx = torch.linspace(0, x_t.shape[0] - 1, k).round().long().unique()
                c = self.tiles.cols
                self.spot_records[(t, j)] = (x_t[idx].float().cpu(), self.w_tiles[t][:, j * c:(j + 1) * c].float().cpu())

    def _add_current(self, cur) -> None:
        """Collect one read's current sum (a float, a 0-d device tensor, or None: unknown) for the
        statistics; ``_flush_current`` hands the total over once per forward (one device sync)."""
        if cur is None:
            self._current_unknown = True
        else:
            self._current_acc = cur if self._current_acc is None else self._current_acc + cur

    def _flush_current(self) -> None:
        if self._current_unknown:
            self.stats.add_current(None)
        elif self._current_acc is not None:
            self.stats.add_current(float(self._current_acc))
        self._current_acc, self._current_unknown = None, False

    def _read(self, x_t: torch.Tensor, t: int, x_ones_t: torch.Tensor) -> torch.Tensor:
        """Codes of row tile t; with partial wordline activation, at most m rows on per read, summed."""
        if self.spot_tiles:
            self._record_spot(x_t, t)
        m = self.max_active_rows
        if m is None:
            codes, cur = self._read_tile(x_t, t)
            self.stats.array_reads += x_t.shape[0] * self.tiles.col_tiles
            self._track_max(x_t, t, codes)
            if not self.array.exact:
                self._add_current(cur)
            return codes
        n_reads = max(1, math.ceil(float(x_ones_t.max()) / m)) if x_t.shape[0] else 1
        rank = torch.cumsum(x_t, dim=1, dtype=torch.float32)        # exact: counts <= R
        group = torch.where(x_t > 0, torch.div(rank - 1, m, rounding_mode="floor"), torch.full_like(rank, -1.0))
        codes = None
        for g in range(n_reads):
            x_g = (group == g).to(x_t.dtype)
            c, cur = self._read_tile(x_g, t)
            self._track_max(x_g, t, c)
            if not self.array.exact:
                self._add_current(cur)
            codes = c if codes is None else codes + c
        self.stats.array_reads += x_t.shape[0] * self.tiles.col_tiles * n_reads
        return codes  # type: ignore[return-value]  # n_reads >= 1: set in the loop

    # ---------------------------------------------------------------- the matrix product
    def forward(self, x_buf: torch.Tensor, overwrite: bool = False) -> torch.Tensor:
        """Signed dot products (M, C_out), float32, for input bits ``x_buf`` (M, T_r*R).

        ``overwrite``: BinSparX may flip ``x_buf`` in place (a scratch buffer of the caller). Bits of
        another dtype than ``self.dtype`` are converted (a copy)."""
        if x_buf.dtype != self.dtype:
            x_buf, overwrite = x_buf.to(self.dtype), True
        tiles, st = self.tiles, self.stats
        m, T = x_buf.shape[0], tiles.row_tiles
        x3 = x_buf.view(m, T, tiles.rows)
        if self.binsparx:
            # AND-counts the unflipped operands would give, summed: sum_r (sum_m x)(sum_c w)
            st.on_cells_unflipped += float((column_sums(x_buf).view(T, -1).double() * self.w_ones_unflipped.double()).sum())
            x_buf, xflip = bsx.flip_inputs(x_buf, tiles, inplace=overwrite)
            x3 = x_buf.view(m, T, tiles.rows)
            s_x = bsx.sign_of(xflip)                                          # (M, T) float32
            s_x16 = s_x.to(x_buf.dtype)
            st.flipped_subvectors += float(xflip.sum())
        x_ones = row_sums(x3)                                                 # (M, T)
        on_cells = float((column_sums(x_buf).view(T, -1).double() * self.w_row_ones).sum())
        st.on_cells += on_cells
        if not self.binsparx:
            st.on_cells_unflipped += on_cells
        n_real_sum = self.n_real_sum
        st.subvectors += float(m * T)
        st.vectors += m
        st.column_reads += m * T * tiles.cout
        st.real_cells_read += float(m) * n_real_sum * tiles.cout
        st.active_rows += float(x_ones.sum(dtype=torch.float64))
        st.real_rows_read += float(m) * n_real_sum

        if self.array.exact:      # ideal currents: ON cells x i_cell + (input 1, weight 0) cells x i_off
            fn = getattr(self.array, "ideal_current_sum_a", None)
            st.add_current(fn(on_cells, float(x_ones.sum(dtype=torch.float64)) * tiles.cout - on_cells) if fn else None)
        if self.linear and self.max_active_rows is None and not self.spot_tiles:
            acc = self._linear_forward(x_buf, s_x16 if self.binsparx else None)
        elif (getattr(self.array, "read_accumulate", None) is not None and self.max_active_rows is None
              and not self.spot_tiles and self.array.cols is None):
            acc = self._accumulate_forward(x_buf, s_x if self.binsparx else None)
        else:
            acc = self._tile_forward(x_buf, x_ones, s_x16 if self.binsparx else None)
        # digital correction: sum_t s_x s_w (-2 sum b(x') + n_t - 2 sum b(w'))
        a = self.n_real[None, :] - 2 * x_ones                                  # (M, T)
        b = -2 * self.w_col_ones[:, :tiles.cout]                               # (T, C_out)
        if self.binsparx:
            s_w = self.s_w[:, :tiles.cout]
            corr = (s_x * a) @ s_w + s_x @ (s_w * b)
        else:
            corr = a.sum(dim=1, keepdim=True) + b.sum(dim=0, keepdim=True)
        return acc.mul_(4).add_(corr)

    def _linear_forward(self, x_buf: torch.Tensor, s_x16: torch.Tensor | None) -> torch.Tensor:
        """sum_t s_x s_w (x_t' . w_t') (M, C_out) float32 for a linear exact array: the reads of as many
        row tiles as the bit dtype sums exactly (exact_limit // R) as one product of the signed operands
        (s_x folded into the inputs, s_w into ``w_signed``), so no tile is read on its own. Every partial
        sum of such a product is an integer of magnitude at most exact_limit: bit for bit the per-tile
        reads' sum. Where the CPU's int8 products are faster (cosim.products.int8_products), all row tiles are
        one int8 product with int32 sums instead: the same integers. The statistics the reads would give (array
        reads, the largest AND-count) are kept."""
        tiles, st = self.tiles, self.stats
        m, T, R, cout = x_buf.shape[0], tiles.row_tiles, tiles.rows, tiles.cout
        st.array_reads += m * T * tiles.col_tiles
        k = self.max_stride
        if k and m:                      # the largest AND-count of the (unsigned) reads, every k-th vector
            xs = x_buf.view(m, T, R)[::k].transpose(0, 1)                     # (T, m/k, R)
            mx = torch.bmm(xs, self.w_tiles[:, :, :cout]).max()
            st.max_on_count = max(st.max_on_count, float(mx))
        if s_x16 is not None:
            x3 = x_buf.view(m, T, R)
            x_buf = x3.mul_(s_x16[:, :, None]).view(m, T * R)                # x_buf is scratch here
        if T * R <= 2 ** 24 and int8_products(x_buf.device):
            return int8_matmul(x_buf, self.w_signed_i8)          # one product, int32 sums: the same integers
        group = T if x_buf.dtype == torch.float32 else max(1, exact_limit(x_buf.dtype) // R)
        acc = None
        for t0 in range(0, T, group):
            t1 = min(T, t0 + group)
            part = x_buf[:, t0 * R:t1 * R] @ self.w_signed[t0 * R:t1 * R]
            # (converted first: an in-place add of another dtype costs about 5x a conversion and an add)
            acc = part.float() if acc is None else acc.add_(part.float())
        return acc  # type: ignore[return-value]  # T >= 1: set in the loop

    def _accumulate_forward(self, x_buf: torch.Tensor, s_x: torch.Tensor | None) -> torch.Tensor:
        """``_tile_forward`` for arrays that add their codes into the sum themselves (``read_accumulate``: the
        surrogate's kernel, without storing them): sum_t s_x s_w codes_t (M, C_out) float32, the same integers
        (exact in any order); the statistics of the reads as ``_read`` keeps them."""
        tiles, st = self.tiles, self.stats
        m, T, cout = x_buf.shape[0], tiles.row_tiles, tiles.cout
        x3 = x_buf.view(m, T, tiles.rows)
        acc = torch.zeros(m, cout, dtype=torch.float32, device=x_buf.device)
        k = self.max_stride if m else 0
        for t in range(T):
            x_t = x3[:, t, :]
            sx = None if s_x is None else s_x[:, t].contiguous()
            sw = self.s_w[t, :cout].contiguous() if self.binsparx else None
            cur, mx = self.array.read_accumulate(x_t, self.w_tiles[t][:, :cout], acc, sx, sw, k)  # type: ignore[attr-defined]  # checked by the caller
            st.array_reads += m * tiles.col_tiles
            if mx is None:
                self._track_max(x_t, t, acc)                # (codes are read only for exact arrays)
            else:
                st.max_on_count = max(st.max_on_count, float(mx))
            if not self.array.exact:
                self._add_current(cur)
        self._flush_current()
        return acc

    def _tile_forward(self, x_buf: torch.Tensor, x_ones: torch.Tensor, s_x16: torch.Tensor | None) -> torch.Tensor:
        """sum_t s_x s_w codes_t (M, C_out) float32, reading every row tile from the array model."""
        tiles = self.tiles
        m, T = x_buf.shape[0], tiles.row_tiles
        x3 = x_buf.view(m, T, tiles.rows)
        # Codes are integers in [0, max_code]: partial sums of up to `group` tiles are exact in the bit
        # dtype (exact_limit: 256 in bfloat16, 2048 in float16), then flushed into a float32 sum.
        max_code = int(getattr(self.array, "max_code", None) or tiles.rows)
        group = max(1, exact_limit(x_buf.dtype) // max_code) if x_buf.dtype != torch.float32 else T
        acc = torch.zeros(m, tiles.cout, dtype=torch.float32, device=x_buf.device)
        part = None
        for t in range(T):
            codes = self._read(x3[:, t, :], t, x_ones[:, t])
            if codes.dtype != x_buf.dtype:
                codes = codes.to(x_buf.dtype)
            if self.binsparx:
                codes = codes * self.s_w16[t, :tiles.cout]
                if part is None:
                    part = codes.mul_(s_x16[:, t:t + 1])  # type: ignore[index]  # binsparx: s_x16 is set
                else:
                    part.addcmul_(codes, s_x16[:, t:t + 1])  # type: ignore[index]  # binsparx: set
            else:
                part = codes if part is None else part.add_(codes)
            if (t + 1) % group == 0 or t == T - 1:
                acc.add_(part.float())
                part = None
        self._flush_current()
        return acc


def check_mappable_conv(conv: nn.Conv2d, kind: type, name: str) -> None:
    """InputError unless ``conv`` is a ``kind`` convolution that unrolls onto crossbars (im2col): one
    group, no dilation, no bias."""
    if not isinstance(conv, kind):
        raise InputError(f"layer {name}: expected a {kind.__name__}, got {type(conv).__name__}")
    if conv.groups != 1 or tuple(conv.dilation) != (1, 1) or conv.bias is not None:
        raise InputError(f"layer {name}: only ungrouped, undilated convolutions without bias map onto crossbars")


class CiMConv2d(nn.Module):
    """A binary convolution computed on crossbars (drop-in: same input and output): a
    :class:`~cosim.bnn.layers.BinConv2d`, or any layer a :class:`~cosim.cim.hooks.BinaryMapping` describes
    (Brevitas, a user's hook)."""

    def __init__(self, conv: nn.Module, array: ArrayModel, cols: int, *, binsparx: bool = False,
                 max_active_rows: int | None = None, name: str = "", chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 max_stride: int = 8, dtype: torch.dtype | None = None, mapping=None) -> None:
        super().__init__()
        if mapping is None:
            from .hooks import _bin_conv
            check_mappable_conv(conv, BinConv2d, name)  # type: ignore[arg-type]  # any module: it checks
            mapping = _bin_conv(conv, name)  # type: ignore[arg-type]  # checked: a BinConv2d
        w = mapping.weight_pm1
        if w.dim() != 4:
            raise InputError(f"layer {name}: a convolution needs a 4-D weight, got shape {tuple(w.shape)}")
        self.kernel_size = (int(w.shape[2]), int(w.shape[3]))
        self.stride = tuple(int(s) for s in mapping.stride)
        self.pad = int(getattr(conv, "pad", 0))
        self.in_channels, self.out_channels = int(w.shape[1]), int(w.shape[0])
        self.chunk_bytes = int(chunk_bytes)
        self.source = conv
        self.input_pm1, self.finish = mapping.input_pm1, mapping.output
        self.input_bits = getattr(mapping, "input_bits", None)
        self.matrix = CrossbarMatrix(conv_weight_matrix(w.float()), array, cols, binsparx=binsparx,
                                     max_active_rows=max_active_rows, name=name, max_stride=max_stride, dtype=dtype)

    @property
    def stats(self) -> LayerStats:
        return self.matrix.stats

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a dense input of a mapping that gives its bits directly (cosim's BinConv2d): the padded bits,
        # channels-last, in one pass, without the +-1 tensor; else sign, then -1 padding: what the rows see
        bits = None
        if (self.input_bits is not None and x.dim() == 4 and x.shape[1] == self.in_channels
                and (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))):
            bits = self.input_bits(x, self.matrix.dtype)
            xb = x                                            # (its layout is the +-1 tensor's: contiguous or channels-last)
            h, w = bits.shape[1], bits.shape[2]
        else:
            xb = self.input_pm1(x)
            if xb.dim() != 4 or xb.shape[1] != self.in_channels:
                raise InputError(f"layer {self.matrix.stats.name}: expected a (B, {self.in_channels}, H, W) input, "
                                 f"got shape {tuple(xb.shape)}")
            h, w = xb.shape[2], xb.shape[3]
        b = xb.shape[0]
        tiles = self.matrix.tiles
        ho = conv_output_size(h, self.kernel_size[0], self.stride[0])
        wo = conv_output_size(w, self.kernel_size[1], self.stride[1])
        per_image = ho * wo * tiles.n_padded * torch.finfo(self.matrix.dtype).bits // 8
        step = max(1, self.chunk_bytes // max(1, per_image))
        outs = []
        for i in range(0, b, step):
            if bits is not None:
                buf, (ho, wo) = im2col_unroll(bits[i:i + step], self.kernel_size, self.stride, tiles)  # type: ignore[arg-type]  # pairs
            else:
                buf, (ho, wo) = im2col_bits(xb[i:i + step], self.kernel_size, self.stride, tiles, self.matrix.dtype)  # type: ignore[arg-type]  # pairs
            y = self.matrix(buf, overwrite=True)
            outs.append(y.view(-1, ho, wo, tiles.cout))
        y = (outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)).permute(0, 3, 1, 2)
        # the memory format the software convolution gives for this input (downstream float kernels
        # round differently per layout, and the logits must be bit-identical): channels-last in,
        # channels-last out; else contiguous
        if xb.is_contiguous(memory_format=torch.channels_last) and not xb.is_contiguous():
            y = y.contiguous(memory_format=torch.channels_last)
        else:
            y = y.contiguous()
        return y if self.finish is None else self.finish(y, x)

    def extra_repr(self) -> str:
        t = self.matrix.tiles
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"pad={self.pad}; {t.row_tiles}x{t.col_tiles} arrays of {t.rows}x{t.cols}, binsparx={self.matrix.binsparx}")


class CiMLinear(nn.Module):
    """A binary fully connected layer computed on crossbars: the (in, out) +-1 matrix of a
    :class:`~cosim.cim.hooks.BinaryMapping` (Brevitas ``QuantLinear``, a user's hook), the input bits
    straight on the rows (no im2col). Inputs of any leading shape (..., in)."""

    def __init__(self, layer: nn.Module, array: ArrayModel, cols: int, *, mapping, binsparx: bool = False,
                 max_active_rows: int | None = None, name: str = "", chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 max_stride: int = 8, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        w = mapping.weight_pm1
        if w.dim() != 2:
            raise InputError(f"layer {name}: a fully connected layer needs a 2-D (out, in) weight, "
                             f"got shape {tuple(w.shape)}")
        self.out_features, self.in_features = int(w.shape[0]), int(w.shape[1])
        self.chunk_bytes = int(chunk_bytes)
        self.source = layer
        self.input_pm1, self.finish = mapping.input_pm1, mapping.output
        self.matrix = CrossbarMatrix(w.float().t().contiguous(), array, cols, binsparx=binsparx,
                                     max_active_rows=max_active_rows, name=name, max_stride=max_stride, dtype=dtype)

    @property
    def stats(self) -> LayerStats:
        return self.matrix.stats

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xb = self.input_pm1(x)
        if xb.dim() < 1 or xb.shape[-1] != self.in_features:
            raise InputError(f"layer {self.matrix.stats.name}: expected inputs of {self.in_features} features, "
                             f"got shape {tuple(xb.shape)}")
        lead = xb.shape[:-1]
        flat = xb.reshape(-1, self.in_features)
        tiles = self.matrix.tiles
        step = max(1, self.chunk_bytes // max(1, tiles.n_padded * torch.finfo(self.matrix.dtype).bits // 8))
        outs = []
        for i in range(0, flat.shape[0], step):
            part = flat[i:i + step]
            buf = torch.zeros(part.shape[0], tiles.n_padded, dtype=self.matrix.dtype, device=part.device)
            buf[:, :tiles.n] = (part > 0).to(self.matrix.dtype)
            outs.append(self.matrix(buf, overwrite=True))
        y = (outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)).reshape(*lead, tiles.cout)
        return y if self.finish is None else self.finish(y, x)

    def extra_repr(self) -> str:
        t = self.matrix.tiles
        return (f"in_features={self.in_features}, out_features={self.out_features}; {t.row_tiles}x{t.col_tiles} "
                f"arrays of {t.rows}x{t.cols}, binsparx={self.matrix.binsparx}")
