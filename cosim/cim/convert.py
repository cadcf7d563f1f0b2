"""The drop-in API: convert a trained torch BNN into its CiM form.

    >>> from cosim.cim import to_cim
    >>> cim = to_cim(model, tech="sram8t", rows=64, cols=64, mode="surrogate", binsparx=True)
    >>> logits = cim(images)                      # every BinConv2d now runs on 64x64 crossbars
    >>> cim_stats(cim)["overall"]["on_cell_fraction"]

:func:`convert` is the low-level form: any :class:`~cosim.cim.arrays.ArrayModel`. :func:`to_cim` builds
the array model for a mode: ``ideal`` (exact AND-counts), ``surrogate`` (the SPICE-calibrated tables of
cosim.surrogate.evaluate, with an ADC of ``adc_bits`` and ``adc_reference`` "ideal" or "calibrated") or
``spice`` (the surrogate for the network, plus SPICE reads of a few tiles compared with it) or
``exact`` (every column solved exactly by cosim.circuit.solver for the table's technology, read by the same ADC
as the surrogate mode).
The input model is not modified (the CiM form is a deep copy).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..bnn.quant import QuantConv2d, model_bits, quant_layers
from ..errors import InputError
from ..products import bits_dtype
from ..products import describe as describe_products
from .arrays import ArrayModel
from .bitslice import CiMQuantConv2d
from .config import MODES, CiMConfig
from .hooks import binary_mappings
from .layers import DEFAULT_CHUNK_BYTES, CiMConv2d, CiMLinear
from .stats import overall

__all__ = ["MODES", "CiMConfig", "cim_layers", "cim_stats", "convert", "reset_stats", "set_energy_scale", "to_cim"]


def convert(model: nn.Module, array: ArrayModel, cols: int, *, binsparx: bool = False,
            max_active_rows: int | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
            max_stride: int = 8, device: str | torch.device = "cpu") -> nn.Module:
    """A copy of ``model`` whose every binary layer (cosim.cim.hooks: BinConv2d, Brevitas 1-bit
    QuantConv2d/QuantLinear, a layer with the hook) runs on ``array`` (rows = array.rows) x ``cols`` crossbars;
    every k-bit QuantConv2d runs bit-sliced on the same arrays (cosim.cim.bitslice). Bit tensors take
    the fastest exact dtype of ``device`` (cosim.products.bits_dtype), where the copy is to run."""
    if not isinstance(model, nn.Module):
        raise InputError(f"expected a torch module, got {type(model).__name__}")
    out: Any = copy.deepcopy(model)  # a Module with the cim_* attributes set below
    # the mappings are taken from the copy: their input and output functions belong to its layers
    mapped, software = binary_mappings(out, skip=(QuantConv2d,))
    quant = [n for n, _ in quant_layers(out)]
    if not mapped and not quant:
        raise InputError("the model has no binary layer (BinConv2d, Brevitas 1-bit QuantConv2d/QuantLinear, a "
                         "layer with the cosim.cim.hooks hook) or k-bit QuantConv2d to map onto crossbars")
    dtype = bits_dtype(int(array.rows), device)
    kw: dict[str, Any] = dict(binsparx=binsparx, max_active_rows=max_active_rows, chunk_bytes=chunk_bytes, max_stride=max_stride,
              dtype=dtype)
    new = [(n, None) for n in quant] + mapped
    for name, mapping in new:
        parent_name, _, attr = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        layer = getattr(parent, attr)
        if mapping is None:
            cim_layer = CiMQuantConv2d(layer, array, cols, name=name, **kw)
        elif mapping.kind == "conv":
            cim_layer = CiMConv2d(layer, array, cols, name=name, mapping=mapping, **kw)
        else:
            cim_layer = CiMLinear(layer, array, cols, name=name, mapping=mapping, **kw)
        setattr(parent, attr, cim_layer)
    out.eval()
    #: the CiMConfig it was made from (to_cim); None: converted onto an array model of the caller's
    out.cim_config = None
    #: what the conversion found and used
    out.cim_info = {"rows": int(array.rows), "cols": int(cols), "binsparx": bool(binsparx), "bits": model_bits(model),
                    "max_active_rows": max_active_rows, "software_layers": software,
                    "products": describe_products(int(array.rows), device),
                    "array": array.describe() if hasattr(array, "describe") else type(array).__name__}
    return out


def cim_layers(model: nn.Module) -> list[tuple[str, CiMConv2d | CiMLinear | CiMQuantConv2d]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (CiMConv2d, CiMLinear, CiMQuantConv2d))]


def cim_stats(model: nn.Module) -> dict[str, Any]:
    """Statistics of everything run through ``model`` since conversion (or :func:`reset_stats`)."""
    layers = [m.stats for _, m in cim_layers(model)]
    return {"layers": [s.summary() for s in layers], "overall": overall(layers)}


def reset_stats(model: nn.Module) -> None:
    from .stats import LayerStats
    for _, m in cim_layers(model):
        old = m.matrix.stats
        new = LayerStats(name=old.name, rows=old.rows, cols=old.cols, row_tiles=old.row_tiles, col_tiles=old.col_tiles,
                         flipped_columns=old.flipped_columns, column_slices=old.column_slices,
                         stored_ones=old.stored_ones, real_cells=old.real_cells,
                         v_read_v=old.v_read_v, t_read_s=old.t_read_s, extra=dict(old.extra))
        m.matrix.stats = new


def set_energy_scale(model: nn.Module, v_read_v: float, t_read_s: float) -> None:
    for _, m in cim_layers(model):
        m.matrix.stats.v_read_v, m.matrix.stats.t_read_s = float(v_read_v), float(t_read_s)


def to_cim(model: nn.Module, config: CiMConfig | None = None, **overrides: Any) -> nn.Module:
    """Convert ``model`` for a technology, array size and mode (see the module docstring).

    ``config``: a :class:`~cosim.cim.config.CiMConfig` (None: its defaults); ``overrides``: fields of it by
    keyword, ``to_cim(model, tech="sram8t", rows=64, mode="surrogate", binsparx=True)``:

    ``table``: a LookupTable or a path (None: the shipped table for ``tech`` and ``rows``). The ADC
    (``adc_bits``, ``adc_reference`` "ideal"/"calibrated", ``adc_lsb_counts``) applies to the surrogate
    and spice modes; ideal mode reads exact counts. ``max_active_rows``: partial wordline activation.
    In ``spice`` mode, ``spice_tiles`` tiles are marked for SPICE spot checks (``run_spot_checks``).
    ``certify`` (surrogate mode): certified reads, columns near an ADC decision level re-solved exactly
    (cosim.cim.arrays.CertifiedArray; needs a table with recorded residuals).

    The result carries its config (``cim.cim_config``), what the conversion found (``cim.cim_info``:
    technology, energy scale, bit-tensor dtype, software layers, array description) and its array model
    (``cim.cim_array``).
    """
    from .arrays import build_array
    if config is not None and not isinstance(config, CiMConfig):
        raise InputError(f"to_cim's config must be a CiMConfig, got {type(config).__name__}")
    cfg = (config or CiMConfig()).replace(**overrides)
    a, adc, mp, run = cfg.array, cfg.adc, cfg.mapping, cfg.run
    array, tech_obj = build_array(mode=a.mode, tech=a.tech, rows=a.rows, cols=a.cols, table=a.table, adc_bits=adc.bits,
                                  adc_reference=adc.reference, adc_lsb_counts=adc.lsb_counts, topology=a.topology,
                                  device=run.device, certify=a.certify, certify_table=a.certify_table)
    cim: Any = convert(model, array, a.cols, binsparx=mp.binsparx, max_active_rows=mp.max_active_rows,
                  chunk_bytes=run.chunk_bytes, max_stride=mp.max_stride, device=run.device)
    cim.to(run.device)
    set_energy_scale(cim, tech_obj.v_read_v, tech_obj.t_read_s)
    cim.cim_config = cfg
    cim.cim_info.update({"tech": tech_obj.name, "v_read_v": tech_obj.v_read_v, "t_read_s": tech_obj.t_read_s,
                         "r_wire_ohm": tech_obj.r_wire_ohm})
    cim.cim_array = array
    if a.mode == "spice":
        from .spot import select_spot_tiles
        cim.cim_info["spot_tiles"] = select_spot_tiles(cim, run.spice_tiles, run.spice_vectors, run.seed)
    return cim
