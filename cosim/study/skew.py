"""Skew of binary networks, and what the encodings make of it on crossbars.

BinSparX gains from skew: how many +1 the weights and the activations of each binary layer hold. For every
binary convolution this module measures, on real images,

* the +1 fraction of its weights and of its binarized inputs (what the rows see, -1 padding included);
* under five encodings, the AND-count of every column in every read (the ON-count: cells that conduct),
  as a histogram 0..R, and from it the conducting-cell fraction and the mean / max ON-count:

  ``plus``            +1 stored and applied as the conducting state (the paper's fixed encoding);
  ``minus``           the mirrored fixed encoding: -1 conducting (so -1 padding rows are on);
  ``bsx-columns``     BinSparX's static per-column weight flips only;
  ``bsx-subvectors``  BinSparX's dynamic per-sub-vector input flips only;
  ``binsparx``        both (BinSparX).

Rows are unrolled in the (kh, kw, c_in) order and cut into tiles of R rows (cosim.cim.mapping's order);
unused rows of the last tile are off in every encoding and are never flipped. A column slice is flipped
where it holds more +1 than -1 over its real rows; a sub-vector where more than half its real rows are +1.
This is an independent implementation (plain torch, no cosim.cim), so it also cross-checks cosim.cim's
statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..bnn.layers import BinConv2d, binary_layers
from ..errors import InputError

SCHEMES = ("plus", "minus", "bsx-columns", "bsx-subvectors", "binsparx")


@dataclass
class LayerSkew:
    name: str
    n: int                      #: rows of the unrolled layer (k*k*C_in)
    cout: int
    rows: int                   #: R, rows of one crossbar
    positions: int = 0          #: output positions per image
    weight_plus: float = 0.0    #: fraction of +1 weights
    act_plus_sum: float = 0.0   #: +1 inputs, summed over vectors (real rows)
    act_rows_sum: float = 0.0   #: real rows, summed over vectors
    vectors: int = 0
    hist: dict[str, np.ndarray] = field(default_factory=dict)        #: ON-count histograms, 0..R
    flipped_columns: float = 0.0
    column_slices: float = 0.0
    flipped_subvectors: float = 0.0
    subvectors: float = 0.0

    @property
    def row_tiles(self) -> int:
        return math.ceil(self.n / self.rows)

    @property
    def act_plus(self) -> float:
        return self.act_plus_sum / self.act_rows_sum if self.act_rows_sum else float("nan")

    def on_cells(self, scheme: str) -> float:
        h = self.hist[scheme]
        return float(h @ np.arange(len(h)))

    def column_reads(self) -> float:
        return float(self.hist["plus"].sum())

    def summary(self) -> dict:
        out = {"layer": self.name, "rows_unrolled": self.n, "cout": self.cout, "positions": self.positions,
               "weight_plus_fraction": self.weight_plus, "activation_plus_fraction": self.act_plus,
               "flipped_column_fraction": self.flipped_columns / self.column_slices if self.column_slices else None,
               "flipped_subvector_fraction": (self.flipped_subvectors / self.subvectors) if self.subvectors else None}
        cells = self.act_rows_sum * self.cout  # real cells read, summed over vectors and row tiles
        base = self.on_cells("plus")
        for s in SCHEMES:
            on = self.on_cells(s)
            h = self.hist[s]
            nz = np.nonzero(h)[0]
            out[f"on_cell_fraction[{s}]"] = on / cells if cells else None
            out[f"mean_on_count[{s}]"] = on / h.sum() if h.sum() else None
            out[f"max_on_count[{s}]"] = int(nz[-1]) if len(nz) else 0
            out[f"on_cell_change_vs_plus[{s}]"] = (on / base - 1.0) if base else None
        return out


def unfold_pm1(xb_pm1: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    """Padded +-1 input (B, C, H, W) -> (B*L, k*k*C) input vectors in (kh, kw, c_in) order."""
    b, c = xb_pm1.shape[:2]
    kh, kw = kernel
    u = F.unfold(xb_pm1, (kh, kw), stride=stride)                  # (B, C*kh*kw, L), c-major
    L = u.shape[-1]
    u = u.view(b, c, kh * kw, L).permute(0, 3, 2, 1).reshape(b * L, kh * kw * c)
    return u


def weight_matrix_pm1(conv: BinConv2d) -> torch.Tensor:
    """(n, C_out) +-1 weight matrix in (kh, kw, c_in) row order."""
    w = conv.binary_weight().detach()
    return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1).t().contiguous()


def encode(x_pm1: torch.Tensor, w_pm1: torch.Tensor, rows: int, scheme: str):
    """Bits applied (M, T, R) and stored (T, R, C) under ``scheme``, and the flip masks.

    ``x_pm1`` (M, n), ``w_pm1`` (n, C) in +-1. Unused rows of the last tile are 0 in both."""
    if scheme not in SCHEMES:
        raise InputError(f"unknown encoding scheme {scheme!r}: expected one of {', '.join(SCHEMES)}")
    m, n = x_pm1.shape
    cout = w_pm1.shape[1]
    t = math.ceil(n / rows)
    pad = t * rows - n
    real = torch.ones(t * rows, dtype=torch.float32)
    if pad:
        real[n:] = 0
    real = real.view(t, rows)
    xb = F.pad((x_pm1 > 0).float(), (0, pad)).view(m, t, rows)
    wb = F.pad((w_pm1 > 0).float(), (0, 0, 0, pad)).view(t, rows, cout)
    n_real = real.sum(dim=1)                                          # (T,)
    xflip = torch.zeros(m, t, dtype=torch.bool)
    wflip = torch.zeros(t, cout, dtype=torch.bool)
    if scheme == "minus":
        xb = real[None] - xb
        wb = real[:, :, None] - wb
    if scheme in ("bsx-columns", "binsparx"):
        wflip = 2 * wb.sum(dim=1) > n_real[:, None]
        wb = torch.where(wflip[:, None, :], real[:, :, None] - wb, wb)
    if scheme in ("bsx-subvectors", "binsparx"):
        xflip = 2 * xb.sum(dim=2) > n_real[None, :]
        xb = torch.where(xflip[:, :, None], real[None] - xb, xb)
    return xb, wb, xflip, wflip


def on_counts(xb: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """AND-counts (M, T, C) of applied bits (M, T, R) and stored bits (T, R, C)."""
    return torch.einsum("mtr,trc->mtc", xb, wb)


def scheme_counts(xb: torch.Tensor, wb: torch.Tensor, n_real: torch.Tensor
                  ) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """AND-counts (M, T, C) of every scheme, with its input flips (M, T) and weight flips (T, C), from ONE
    matrix product.

    ``xb`` (M, T, R) and ``wb`` (T, R, C) are the bits of the +1 encoding (unused rows 0), ``n_real`` (T,)
    the real rows of each tile. Negating one operand over the real rows turns a count c into
    sum(other operand's bits) - c; negating both into n - sum b(x) - sum b(w) + c. (``encode`` +
    ``on_counts`` compute each scheme directly; the tests check that both agree.)"""
    c = on_counts(xb, wb)
    sx = xb.sum(dim=2)                                     # (M, T) +1 inputs per sub-vector
    sw = wb.sum(dim=1)                                     # (T, C) +1 weights per column slice
    n = n_real.to(c.dtype)
    both = n[None, :, None] - sx[:, :, None] - sw[None] + c
    x_only = sw[None] - c                                  # input sub-vector negated
    w_only = sx[:, :, None] - c                            # weight column slice negated
    fx = 2 * sx > n[None, :]
    fw = 2 * sw > n[:, None]
    no_x = torch.zeros_like(fx)
    no_w = torch.zeros_like(fw)
    fx3, fw3 = fx[:, :, None], fw[None]
    return {
        "plus": (c, no_x, no_w),
        "minus": (both, no_x, no_w),
        "bsx-columns": (torch.where(fw3, w_only, c), no_x, fw),
        "bsx-subvectors": (torch.where(fx3, x_only, c), fx, no_w),
        "binsparx": (torch.where(fx3 & fw3, both, torch.where(fx3, x_only, torch.where(fw3, w_only, c))), fx, fw),
    }


def real_rows(n: int, rows: int) -> torch.Tensor:
    """(T,) real rows of each of the ceil(n / rows) tiles."""
    t = math.ceil(n / rows)
    return torch.clamp(n - torch.arange(t) * rows, max=rows).float()


def signed_from_counts(c: torch.Tensor, xb: torch.Tensor, wb: torch.Tensor, xflip: torch.Tensor,
                       wflip: torch.Tensor, n_real: torch.Tensor) -> torch.Tensor:
    """Signed dot products (M, C) recovered from the counts: sum_t s_x s_w (4c - 2 sum b(x) - 2 sum b(w) + n).

    Exact for the +1 encoding and BinSparX's flips; for ``minus`` pass the bits of the negated operands with
    no flips (the product of two negations is the same)."""
    sx = 1.0 - 2.0 * xflip.float()                                        # (M, T)
    sw = 1.0 - 2.0 * wflip.float()                                        # (T, C)
    ps = 4 * c - 2 * xb.sum(dim=2)[:, :, None] - 2 * wb.sum(dim=1)[None] + n_real[None, :, None]
    return (ps * sx[:, :, None] * sw[None]).sum(dim=1)


def layer_skew_update(st: LayerSkew, x_pm1: torch.Tensor, w_pm1: torch.Tensor, max_cells: int = 2**24) -> None:
    """Accumulate one batch of input vectors ``x_pm1`` (M, n) of a layer with weights ``w_pm1`` (n, C)."""
    m, n = x_pm1.shape
    if n != st.n or w_pm1.shape != (st.n, st.cout):
        raise InputError(f"layer {st.name}: got inputs of {n} rows / weights {tuple(w_pm1.shape)}, expected {st.n} x {st.cout}")
    t = st.row_tiles
    step = max(1, max_cells // max(1, t * st.cout))
    for i in range(0, m, step):
        xs = x_pm1[i:i + step]
        xb, wb, _, _ = encode(xs, w_pm1, st.rows, "plus")
        for s, (c, xflip, wflip) in scheme_counts(xb, wb, real_rows(n, st.rows)).items():
            h = torch.bincount(c.round().long().flatten(), minlength=st.rows + 1).numpy().astype(np.int64)
            st.hist[s] = st.hist.get(s, np.zeros(st.rows + 1, dtype=np.int64)) + h
            if s == "binsparx":
                st.flipped_subvectors += float(xflip.sum())
                st.subvectors += float(xflip.numel())
                if not st.column_slices:
                    st.flipped_columns, st.column_slices = float(wflip.sum()), float(wflip.numel())
        st.act_plus_sum += float((xs > 0).sum())
        st.act_rows_sum += float(xs.shape[0] * n)
        st.vectors += xs.shape[0]


def measure_skew(model: nn.Module, images: torch.Tensor, rows: int, batch_size: int = 8,
                 progress: bool = False) -> list[LayerSkew]:
    """Skew statistics of every BinConv2d of ``model`` over ``images`` (normalised N,3,H,W float tensor)."""
    if rows < 1:
        raise InputError(f"rows must be positive, got {rows}")
    layers = binary_layers(model)
    if not layers:
        raise InputError("the model has no binary convolution (BinConv2d)")
    weights = {name: weight_matrix_pm1(conv) for name, conv in layers}
    stats: dict[str, LayerSkew] = {
        name: LayerSkew(name=name, n=w.shape[0], cout=w.shape[1], rows=rows, weight_plus=float((w > 0).float().mean()))
        for name, w in weights.items()}

    def hook(name: str, conv: BinConv2d):
        def fn(module, args):
            xb = conv.binary_input(args[0])
            x = unfold_pm1(xb, conv.kernel_size, conv.stride)
            st = stats[name]
            if st.positions == 0:
                st.positions = x.shape[0] // xb.shape[0]
            layer_skew_update(st, x, weights[name])
        return fn

    handles = [conv.register_forward_pre_hook(hook(name, conv)) for name, conv in layers]
    was_training = model.training
    model.eval()
    try:
        steps: Iterable[int] = range(0, len(images), batch_size)
        if progress:
            from tqdm import tqdm
            steps = tqdm(steps, desc=f"skew ({rows} rows)", unit="batch", leave=False)
        with torch.inference_mode():
            for i in steps:
                model(images[i:i + batch_size])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [stats[name] for name, _ in layers]


def overall_summary(layers: list[LayerSkew]) -> dict:
    """Totals over layers: conducting-cell fraction per scheme, change vs the +1 encoding, flip fractions."""
    cells = sum(l.act_rows_sum * l.cout for l in layers)
    out: dict = {"weight_plus_fraction": (sum(l.weight_plus * l.n * l.cout for l in layers)
                                          / sum(l.n * l.cout for l in layers)),
                 "activation_plus_fraction": sum(l.act_plus_sum for l in layers) / sum(l.act_rows_sum for l in layers)}
    base = sum(l.on_cells("plus") for l in layers)
    reads = sum(l.column_reads() for l in layers)
    for s in SCHEMES:
        on = sum(l.on_cells(s) for l in layers)
        out[f"on_cell_fraction[{s}]"] = on / cells if cells else None
        out[f"mean_on_count[{s}]"] = on / reads if reads else None
        out[f"on_cell_change_vs_plus[{s}]"] = (on / base - 1.0) if base else None
    sv = sum(l.subvectors for l in layers)
    cs = sum(l.column_slices for l in layers)
    out["flipped_subvector_fraction"] = sum(l.flipped_subvectors for l in layers) / sv if sv else None
    out["flipped_column_fraction"] = sum(l.flipped_columns for l in layers) / cs if cs else None
    return out


def total_histogram(layers: list[LayerSkew], scheme: str) -> np.ndarray:
    """ON-count histogram of all layers together (all have the same R)."""
    return sum((l.hist[scheme] for l in layers), np.zeros(layers[0].rows + 1, dtype=np.int64))
