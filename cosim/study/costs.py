"""Energy, latency and area of a CiM-BNN, with and without BinSparX.

Array energy comes from the calibrated column currents: ``E = v_read_v * t_read_s * sum(I_col)`` over
every column read of an inference (``array_energy_j``). Everything around the array comes from
``COMPONENTS``, a per-component table in which every figure names its source or says plainly that it
is a cosim assumption (there is no published 7 nm figure for it in the project's facts sheet).

The architecture costed here (a documented cosim model, not the paper's, whose periphery details were
not readable):

* every tile (R rows x C columns) of a binary layer is its own array, all tiles of a layer work in
  parallel, output positions of a convolution are processed one after the other;
* one read applies one input sub-vector (R rows) to one tile; ``adc_share`` columns share one SAR ADC
  (converted one after the other); each column's count is corrected digitally
  (``4c - 2 sum b(x) - 2 sum b(w) + n``) and added to its accumulator;
* the input popcount ``sum b(x)`` of each sub-vector (an adder tree over R bits) is needed by the
  correction in both schemes; without BinSparX it runs beside the array read, with BinSparX it must finish
  *before* the read (it decides the flip), so its depth adds to every read's latency;
* BinSparX adds: R XOR gates per sub-vector (the dynamic flip), one flip register per tile column
  (static weight flip) and one per sub-vector (dynamic flip), and a sign-correction unit per column
  (XOR of the two flip bits, conditional negation of the partial sum).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..technology import Technology, source_of
from .config import full_adc_bits as adc_bits_for

NEUROSIM_ADC = ("NeuroSim DNN_NeuroSim_V1.3 SarADC.cpp column power (0.4710*bits + 1.9529) uW, as quoted in "
                "github.com/neurosim/DNN_NeuroSim_V1.3 issue #35 (node/clock of that formula not checked here)")
ASSUMED = "cosim assumption (no published 7 nm figure in physics-facts.md); sweep it"


@dataclass(frozen=True)
class Component:
    value: float
    unit: str
    doc: str
    source: str


#: The per-component table. Names carry their unit.
COMPONENTS: dict[str, Component] = {
    "p_adc_per_bit_w": Component(0.4710e-6, "W", "SAR ADC power, part proportional to its resolution (per bit)", NEUROSIM_ADC),
    "p_adc_fixed_w": Component(1.9529e-6, "W", "SAR ADC power, resolution-independent part", NEUROSIM_ADC),
    "t_clk_s": Component(1e-9, "s", "digital clock period; a SAR conversion of b bits takes b + 1 clocks", ASSUMED),
    "adc_share": Component(8, "columns", "columns multiplexed onto one ADC", ASSUMED),
    "a_adc_um2": Component(20.0, "um^2", "area of one SAR ADC (7-9 bits)", ASSUMED),
    "e_fa_j": Component(1.0e-15, "J", "energy of one full-adder bit operation (adder tree, accumulator, correction)", ASSUMED),
    "a_fa_um2": Component(0.15, "um^2", "area of one full adder", ASSUMED),
    "t_fa_s": Component(20e-12, "s", "delay of one adder-tree stage (ripple of a few bits, carry-save tree)", ASSUMED),
    "e_xor_j": Component(0.2e-15, "J", "energy of one XOR/XNOR gate toggle (input flip, sign of partial sum)", ASSUMED),
    "a_xor_um2": Component(0.05, "um^2", "area of one XOR gate", ASSUMED),
    "t_xor_s": Component(10e-12, "s", "delay of one XOR gate", ASSUMED),
    "e_reg_j": Component(0.5e-15, "J", "energy of one flip-flop write or read (flip bits)", ASSUMED),
    "a_reg_um2": Component(0.3, "um^2", "area of one flip-flop", ASSUMED),
}


def component_table() -> list[dict[str, object]]:
    """The table as rows (name, value, unit, meaning, source), for the report."""
    return [{"name": k, "value": c.value, "unit": c.unit, "meaning": c.doc, "source": c.source}
            for k, c in COMPONENTS.items()]


@dataclass(frozen=True)
class LayerShape:
    """A binary layer mapped on crossbars: K = rows of its unrolled weight, N = output channels,
    positions = output positions per image (1 for a linear layer)."""

    name: str
    k: int
    n: int
    positions: int

    def tiles(self, rows: int, cols: int) -> tuple[int, int]:
        if rows < 1 or cols < 1:
            raise InputError(f"array size must be positive, got {rows}x{cols}")
        return math.ceil(self.k / rows), math.ceil(self.n / cols)


def e_adc_conversion_j(bits: int, c: Mapping[str, Component] = COMPONENTS) -> float:
    """Energy of one conversion: power(bits) x conversion time ((bits + 1) clocks)."""
    p_w = c["p_adc_per_bit_w"].value * bits + c["p_adc_fixed_w"].value
    return p_w * (bits + 1) * c["t_clk_s"].value


def t_adc_conversion_s(bits: int, c: Mapping[str, Component] = COMPONENTS) -> float:
    return (bits + 1) * c["t_clk_s"].value


def popcount_tree(rows: int) -> tuple[int, int]:
    """(full adders, stages) of a popcount over ``rows`` bits: about rows - popcount_bits adders, and
    ceil(log2 rows) stages."""
    out_bits = adc_bits_for(rows)
    return max(0, rows - out_bits), max(1, math.ceil(math.log2(max(rows, 2))))


def layer_costs(layer: LayerShape, rows: int, cols: int, binsparx: bool, adc_bits: int | None = None,
                c: Mapping[str, Component] = COMPONENTS) -> dict[str, float]:
    """Peripheral energy (J per image), latency (s per image) and area (um^2) of one layer.

    Array energy is not included here (it needs the calibrated currents): see ``array_energy_j``.
    """
    bits = adc_bits if adc_bits is not None else adc_bits_for(rows)
    t_row, t_col = layer.tiles(rows, cols)
    reads = layer.positions * t_row * t_col              # (sub-vector, tile) reads per image
    col_reads = layer.positions * t_row * layer.n        # column conversions per image (used columns)
    subvectors = layer.positions * t_row                 # sub-vector popcounts per image
    ps_bits = adc_bits_for(min(rows, layer.k)) + 2       # signed partial sum of one tile
    acc_bits = adc_bits_for(layer.k) + 2                 # signed accumulated sum of the layer
    fa_tree, stages = popcount_tree(rows)
    share = int(c["adc_share"].value)

    e = {
        "adc_j": col_reads * e_adc_conversion_j(bits, c),
        # correction 4c - 2 sum b(x) - 2 sum b(w) + n: two additions of ps_bits, then accumulate
        "correction_j": col_reads * 2 * ps_bits * c["e_fa_j"].value,
        "accumulate_j": col_reads * acc_bits * c["e_fa_j"].value,
        "popcount_j": subvectors * fa_tree * c["e_fa_j"].value,
        "flip_inputs_j": 0.0, "flip_registers_j": 0.0, "sign_correction_j": 0.0,
    }
    if binsparx:
        e["flip_inputs_j"] = subvectors * rows * c["e_xor_j"].value
        # one dynamic flip bit written per sub-vector; each read reads its column's static flip bit
        e["flip_registers_j"] = (subvectors + col_reads) * c["e_reg_j"].value
        # XOR of the two flip bits + conditional negation (ps_bits XORs and an increment)
        e["sign_correction_j"] = col_reads * ((ps_bits + 1) * c["e_xor_j"].value + ps_bits * c["e_fa_j"].value)

    # per input vector: the shared ADCs convert their columns one after the other, then one clock to
    # accumulate; the array read time itself is the technology's (added in network_costs)
    convs_per_read = min(share, cols)
    t_vec_periph = convs_per_read * t_adc_conversion_s(bits, c) + c["t_clk_s"].value  # ADCs + accumulate
    t_vec_bsx = stages * c["t_fa_s"].value + c["t_xor_s"].value if binsparx else 0.0

    n_tiles = t_row * t_col
    a = {
        "adc_um2": n_tiles * math.ceil(cols / share) * c["a_adc_um2"].value,
        "accumulators_um2": n_tiles * cols * (acc_bits * (c["a_fa_um2"].value + c["a_reg_um2"].value)
                                              + 2 * ps_bits * c["a_fa_um2"].value),
        "popcount_um2": t_row * fa_tree * c["a_fa_um2"].value,
        "flip_inputs_um2": 0.0, "flip_registers_um2": 0.0, "sign_correction_um2": 0.0,
    }
    if binsparx:
        a["flip_inputs_um2"] = t_row * rows * c["a_xor_um2"].value
        a["flip_registers_um2"] = (n_tiles * cols + t_row) * c["a_reg_um2"].value
        a["sign_correction_um2"] = n_tiles * cols * ((ps_bits + 1) * c["a_xor_um2"].value + ps_bits * c["a_fa_um2"].value)
    return {"reads": float(reads), "column_reads": float(col_reads), "subvectors": float(subvectors),
            "tiles": float(n_tiles), "adc_bits": float(bits),
            "t_periph_per_vector_s": t_vec_periph, "t_binsparx_per_vector_s": t_vec_bsx,
            **e, **a}


def array_area_um2(layers: Iterable[LayerShape], rows: int, cols: int, tech: Technology) -> float:
    cell_um2 = tech.cell_height_um * tech.cell_width_um
    return sum(math.prod(l.tiles(rows, cols)) * rows * cols * cell_um2 for l in layers)


def array_energy_j(column_current_a: Callable[[np.ndarray], np.ndarray], on_count_hist: np.ndarray,
                   v_read_v: float, t_read_s: float) -> float:
    """Array energy of the reads summarised by ``on_count_hist`` (number of column reads with each
    ON-count 0..R): ``v_read_v * t_read_s * sum_c hist[c] * I_col(c)``, with the calibrated column
    current ``I_col(c)`` of a column holding c conducting cells."""
    hist = np.asarray(on_count_hist, dtype=float)
    if hist.ndim != 1 or (hist < 0).any():
        raise InputError("an ON-count histogram is a 1-D array of non-negative counts")
    i_a = np.asarray(column_current_a(np.arange(len(hist))), dtype=float)
    if i_a.shape != hist.shape:
        raise InputError(f"column current gave shape {i_a.shape} for {len(hist)} ON-counts")
    return float(v_read_v * t_read_s * float(hist @ i_a))


def network_costs(layers: Sequence[LayerShape], rows: int, cols: int, tech: Technology, binsparx: bool,
                  array_energy_per_image_j: float | None, adc_bits: int | None = None,
                  c: Mapping[str, Component] = COMPONENTS) -> dict[str, object]:
    """Per-image energy breakdown, latency and area of a network's binary layers.

    ``array_energy_per_image_j`` is the calibrated array energy (None: not measured; the totals then
    cover the periphery only and say so)."""
    per_layer = [layer_costs(l, rows, cols, binsparx, adc_bits, c) for l in layers]
    e_keys = ["adc_j", "correction_j", "accumulate_j", "popcount_j", "flip_inputs_j", "flip_registers_j",
              "sign_correction_j"]
    a_keys = ["adc_um2", "accumulators_um2", "popcount_um2", "flip_inputs_um2", "flip_registers_um2",
              "sign_correction_um2"]
    energy = {k: sum(pl[k] for pl in per_layer) for k in e_keys}
    energy["array_j"] = array_energy_per_image_j
    periph = sum(energy[k] for k in e_keys)
    area = {k: sum(pl[k] for pl in per_layer) for k in a_keys}
    area["array_um2"] = array_area_um2(layers, rows, cols, tech)
    latency_layers = []
    for l, pl in zip(layers, per_layer):
        t_vec = pl["t_binsparx_per_vector_s"] + tech.t_read_s + pl["t_periph_per_vector_s"]
        latency_layers.append({"layer": l.name, "positions": l.positions, "t_vector_s": t_vec,
                               "t_layer_s": l.positions * t_vec,
                               "cycles": l.positions * math.ceil(t_vec / c["t_clk_s"].value)})
    return {
        "energy_j": energy,
        "periphery_energy_j": periph,
        "total_energy_j": None if array_energy_per_image_j is None else periph + array_energy_per_image_j,
        "area_um2": area,
        "total_area_um2": sum(area.values()),
        # synchronous: every vector takes a whole number of clocks
        "latency_s": sum(x["cycles"] for x in latency_layers) * c["t_clk_s"].value,
        "critical_path_s": sum(x["t_layer_s"] for x in latency_layers),
        "cycles": sum(x["cycles"] for x in latency_layers),
        "latency_layers": latency_layers,
        "sources": {"t_read_s": source_of(tech, "t_read_s"), "v_read_v": source_of(tech, "v_read_v"),
                    "cell_area": source_of(tech, "cell_height_um")},
    }
