"""Energy, latency and area of a CiM-BNN, with and without BinSparX.

Array energy comes from the calibrated column currents: ``E = v_read_v * t_read_s * sum(I_col)`` over
every column read of an inference (``array_energy_j``). Everything around the array comes from
``COMPONENTS``, a per-component table in which every figure names the public file it was read from (the
SAR ADC from NeuroSim V1.3's 7 nm models, the logic cells from the ASAP7 7 nm predictive library's LEF
and TT-corner liberty files) or says plainly that it is a cosim assumption.

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
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..circuit.technology import Technology, source_of
from .config import full_adc_bits as adc_bits_for

# ------------------------------------------------------------------------------------------- sources
# Every figure below was read from the file named in its source string (public copies of NeuroSim V1.3
# and of the ASAP7 7.5-track library); derived figures are computed here from the quoted entries.

NEUROSIM = "github.com/neurosim/DNN_NeuroSim_V1.3, Inference_pytorch/NeuroSIM/"
#: NeuroSim V1.3 SarADC.cpp, GetColumnPower, 7 nm HP branch ("else { // 7nm", deviceroadmap == 1):
#: Column_Power = (0.2008*log2(levelOutput) + 0.6823)*1e-6 + 0.040310*exp(-2.311*log10(columnRes)) W,
#: x (1 + 1.3e-3*(temp - 300)), energy = power x (log2(levelOutput) + 1) x 1 ns.
NEUROSIM_ADC_POWER = (
    NEUROSIM + "SarADC.cpp GetColumnPower, 7 nm HP branch: (0.2008*log2(levelOutput) + 0.6823) uW per column "
    "conversion, log2(levelOutput) = bits, at temp = 300 K (factor 1 + 1.3e-3*(temp-300) = 1); its column-resistance "
    "term 0.040310*exp(-2.311*log10(R_col)) W is left out here (the array current is cosim's calibrated array "
    "energy). The LSTP branch, NeuroSim's default deviceroadmap, gives (0.1061*bits + 0.8847) uW; HP is taken as the "
    "closer match to ASAP7 RVT logic at 0.7 V (PTM 7 nm HP vdd = 0.7 V in Technology.cpp)")

#: NeuroSim V1.3 SarADC::CalculateUnitArea: areaUnit = A_N*(269 + (bits-1)*109) + A_P*(209 + (bits-1)*73), A_N / A_P
#: the area of a minimum inverter NMOS / PMOS from formula.cpp CalculateGateArea (FinFET branch) with
#: Technology.cpp 7 nm HP (PitchFin 30 nm, widthFin 6 nm, pnSizeRatio = (int)(1912/1685) = 1) and constant.h
#: (MIN_NMOS_SIZE 2, MAX_TRANSISTOR_HEIGHT 28, MAX_TRANSISTOR_HEIGHT_FINFET 34, POLY_WIDTH_FINFET 1.4,
#: MIN_GAP_BET_GATE_POLY_FINFET 3.9): width 2 x 7 nm x 30/(2 x 7) = 30 nm = 1 fin, so the footprint is
#: 2*(1.4 + 3.9)*7 nm wide by 7 nm*28*34/28 = 238 nm high for both.
_F_UM = 7e-3
NEUROSIM_MIN_TRANSISTOR_UM2 = (2 * (1.4 + 3.9) * _F_UM) * (_F_UM * 28 * 34 / 28)   # 0.0742 um x 0.238 um
NEUROSIM_ADC_AREA = (
    NEUROSIM + "SarADC.cpp CalculateUnitArea: A_min*(269 + (bits-1)*109) + A_min*(209 + (bits-1)*73) = "
    "A_min*(296 + 182*bits), A_min = 0.0742 um x 0.238 um = 0.01766 um^2 (formula.cpp CalculateGateArea, FinFET "
    "branch, minimum inverter; Technology.cpp 7 nm HP PitchFin 30 nm; constant.h as in the sepehrMSP/DNN_NeuroSim_V1.3 "
    "copy): 27.7 / 30.9 / 34.2 um^2 at 7 / 8 / 9 bits. A transistor-count estimate of NeuroSim's, not a layout")
NEUROSIM_CLOCK = (NEUROSIM + "SarADC.cpp CalculateLatency: (log2(levelOutput) + 1) x 1e-9 s per conversion, and "
                  "Param.cpp clkFreq = 1e9. cosim clocks its digital periphery with the same 1 GHz clock (its "
                  "assumption; the ASAP7 delays below fit the popcount tree and one XOR in it)")
NEUROSIM_MUX = NEUROSIM + "Param.cpp default numColMuxed = 8 (\"How many columns share 1 ADC\"); a design choice"

#: ASAP7 (asap7sc7p5t_28, RVT, TT corner, 0.7 V, 25 C) as copied into public repositories:
ASAP7_LEF = ("ASAP7 asap7sc7p5t_28_R_1x_220121a.lef (copy at github.com/ABKGroup/ASAP7-Synopsys-Enablement, "
             "ASAP7/lef/asap7sc7p5t_28_R_1x_220121a.lef)")
ASAP7_SIMPLE = ("ASAP7 asap7sc7p5t_SIMPLE_RVT_TT_nldm_211120.lib (github.com/The-OpenROAD-Project/"
                "OpenROAD-flow-scripts, flow/platforms/asap7/lib/, commit 9a3c1446; PVT_0P7V_25C, ps, fF, fJ)")
ASAP7_SEQ = ("ASAP7 asap7sc7p5t_SEQ_RVT_TT_nldm_220123.lib (github.com/The-OpenROAD-Project/OpenROAD-flow-scripts, "
             "flow/platforms/asap7/lib/, commit caffa1d6; PVT_0P7V_25C, ps, fF, fJ)")
#: the liberty table point used for every delay and energy: input transition 20 ps (index_1, 3rd entry),
#: output load 2.88 fF (index_2 entry 2.88; a fanout of about three ASAP7 gate inputs of ~0.9 fF)
ASAP7_VDD_V = 0.7
ASAP7_LOAD_F = 2.88e-15
ASAP7_POINT = "at input transition 20 ps, output load 2.88 fF"
#: energy of one output transition = mean of the VDD-pin internal energies (rise_power/fall_power of the
#: related_pg_pin VDD groups; the VSS-pin groups are not added) + 1/2 C_load VDD^2 drawn to charge the load
LOAD_FJ = 0.5 * ASAP7_LOAD_F * ASAP7_VDD_V ** 2 * 1e15                            # 0.7056 fJ


def _per_transition_j(internal_fj: Iterable[float]) -> float:
    """Energy of one output transition (J): mean liberty internal energy (fJ) + 1/2 C V^2 of the load."""
    v = list(internal_fj)
    return (sum(v) / len(v) + LOAD_FJ) * 1e-15


#: FAx1, pin SN, internal_power related_pin A, VDD, rise/fall at (20 ps, 2.88 fF), when B*CI, B*!CI, !B*CI, !B*!CI
FA_SN_INTERNAL_FJ = (0.359052, -0.105849, 0.0433438, 0.250899, 0.0396944, 0.252567, 0.348176, -0.0787503)
#: XOR2xp5, pin Y, internal_power VDD rise/fall at (20 ps, 2.88 fF): A when B, A when !B, B when A, B when !A
XOR_INTERNAL_FJ = (0.247634, -0.0541826, 0.100937, 0.320282, 0.194851, -0.0240771, 0.106954, 0.292013)
#: DFFHQNx1, pin QN, internal_power related_pin CLK, VDD, rise/fall at (20 ps, 2.88 fF)
DFF_INTERNAL_FJ = (0.504594, 0.480722)

_E_NOTE = (f"{ASAP7_POINT}: mean of the VDD internal_power entries listed + 1/2 x 2.88 fF x (0.7 V)^2 = "
           f"{LOAD_FJ:.4f} fJ for the load (VSS-pin entries not added)")
FA_ENERGY = (f"{ASAP7_SIMPLE}, FAx1_ASAP7_75t_R pin SN, internal_power related_pin A (when B*CI, B*!CI, !B*CI, "
             f"!B*!CI; rise/fall fJ {', '.join(f'{x:g}' for x in FA_SN_INTERNAL_FJ)}) {_E_NOTE}. The sum output only: "
             f"the CON (carry) pin's internal energy and load are not included, so a bit operation whose carry "
             f"also toggles costs more")
XOR_ENERGY = (f"{ASAP7_SIMPLE}, XOR2xp5_ASAP7_75t_R pin Y, internal_power A when B / !B, B when A / !A (rise/fall "
              f"fJ {', '.join(f'{x:g}' for x in XOR_INTERNAL_FJ)}) {_E_NOTE}")
DFF_ENERGY = (f"{ASAP7_SEQ}, DFFHQNx1_ASAP7_75t_R pin QN, internal_power related_pin CLK (rise/fall fJ "
              f"{', '.join(f'{x:g}' for x in DFF_INTERNAL_FJ)}) {_E_NOTE}; a clock edge that writes a new bit. "
              f"cosim charges the same for a read of the bit (an upper bound: a read clocks nothing)")
FA_DELAY = (f"{ASAP7_SIMPLE}, FAx1_ASAP7_75t_R pin SN, largest cell_rise/cell_fall {ASAP7_POINT} among the B->SN "
            f"and CI->SN arcs read: 82.2491 ps (CI->SN, when !A*B, cell_fall; CI->SN when A*!B 77.28 / 79.90 ps, "
            f"B->SN when A*CI 38.88 / 38.03 ps); the A->SN arcs were not read")
XOR_DELAY = (f"{ASAP7_SIMPLE}, XOR2xp5_ASAP7_75t_R pin Y, largest of its eight cell_rise/cell_fall entries "
             f"{ASAP7_POINT}: 43.3332 ps (A->Y when !B, cell_rise; the others 26.5-42.4 ps)")
FA_AREA = f"{ASAP7_LEF}, MACRO FAx1_ASAP7_75t_R SIZE 0.756 BY 0.27 (um)"
XOR_AREA = f"{ASAP7_LEF}, MACRO XOR2xp5_ASAP7_75t_R SIZE 0.486 BY 0.27 (um); {ASAP7_SIMPLE}: area 0.13122"
DFF_AREA = f"{ASAP7_LEF}, MACRO DFFHQNx1_ASAP7_75t_R SIZE 1.08 BY 0.27 (um); {ASAP7_SEQ}: area 0.2916"


@dataclass(frozen=True)
class Component:
    value: float
    unit: str
    doc: str
    source: str


#: The per-component table. Names carry their unit.
COMPONENTS: dict[str, Component] = {
    "p_adc_per_bit_w": Component(0.2008e-6, "W", "SAR ADC power, part proportional to its resolution (per bit)",
                                 NEUROSIM_ADC_POWER),
    "p_adc_fixed_w": Component(0.6823e-6, "W", "SAR ADC power, resolution-independent part", NEUROSIM_ADC_POWER),
    "t_clk_s": Component(1e-9, "s", "clock period; a SAR conversion of b bits takes b + 1 clocks", NEUROSIM_CLOCK),
    "adc_share": Component(8, "columns", "columns multiplexed onto one ADC", NEUROSIM_MUX),
    "a_adc_per_bit_um2": Component(182 * NEUROSIM_MIN_TRANSISTOR_UM2, "um^2",
                                   "SAR ADC area, part proportional to its resolution (per bit)", NEUROSIM_ADC_AREA),
    "a_adc_fixed_um2": Component(296 * NEUROSIM_MIN_TRANSISTOR_UM2, "um^2", "SAR ADC area, resolution-independent part",
                                 NEUROSIM_ADC_AREA),
    "e_fa_j": Component(_per_transition_j(FA_SN_INTERNAL_FJ), "J",
                        "energy of one full-adder bit operation (adder tree, accumulator, correction)", FA_ENERGY),
    "a_fa_um2": Component(0.756 * 0.27, "um^2", "area of one full adder", FA_AREA),
    "t_fa_s": Component(82.2491e-12, "s", "delay of one adder-tree stage (one full adder, input to sum)", FA_DELAY),
    "e_xor_j": Component(_per_transition_j(XOR_INTERNAL_FJ), "J",
                         "energy of one XOR/XNOR gate toggle (input flip, sign of partial sum)", XOR_ENERGY),
    "a_xor_um2": Component(0.486 * 0.27, "um^2", "area of one XOR gate", XOR_AREA),
    "t_xor_s": Component(43.3332e-12, "s", "delay of one XOR gate", XOR_DELAY),
    "e_reg_j": Component(_per_transition_j(DFF_INTERNAL_FJ), "J", "energy of one flip-flop write or read (flip bits)",
                         DFF_ENERGY),
    "a_reg_um2": Component(1.08 * 0.27, "um^2", "area of one flip-flop", DFF_AREA),
}


def components_for(tech: Technology | None) -> dict[str, Component]:
    """The component table of ``tech``: ``COMPONENTS`` with the figures of its technology file's
    [periphery] table (docs/TECHNOLOGIES.md) in place of the defaults, each with the file's source."""
    out = dict(COMPONENTS)
    if tech is None:
        return out
    for name, v in tech.periphery_values().items():
        if name not in COMPONENTS:
            raise InputError(f"technology '{tech.name}': unknown periphery component '{name}' "
                             f"(expected one of {', '.join(COMPONENTS)})")
        c = COMPONENTS[name]
        out[name] = Component(v["value"], c.unit, c.doc, v["source"])
    return out


def component_table(tech: Technology | None = None) -> list[dict[str, Any]]:
    """The table (of ``tech``: ``components_for``) as rows (name, value, unit, meaning, source), for the report."""
    return [{"name": k, "value": c.value, "unit": c.unit, "meaning": c.doc, "source": c.source}
            for k, c in components_for(tech).items()]


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


def a_adc_um2(bits: int, c: Mapping[str, Component] = COMPONENTS) -> float:
    """Area of one SAR ADC of ``bits`` bits: fixed part + per-bit part (NeuroSim's transistor count)."""
    return c["a_adc_fixed_um2"].value + c["a_adc_per_bit_um2"].value * bits


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
        "adc_um2": n_tiles * math.ceil(cols / share) * a_adc_um2(bits, c),
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
                  c: Mapping[str, Component] | None = None) -> dict[str, Any]:
    """Per-image energy breakdown, latency and area of a network's binary layers, with the component
    table ``c`` (None: the technology's, ``components_for(tech)``).

    ``array_energy_per_image_j`` is the calibrated array energy (None: not measured; the totals then
    cover the periphery only and say so)."""
    c = components_for(tech) if c is None else c
    per_layer = [layer_costs(l, rows, cols, binsparx, adc_bits, c) for l in layers]
    e_keys = ["adc_j", "correction_j", "accumulate_j", "popcount_j", "flip_inputs_j", "flip_registers_j",
              "sign_correction_j"]
    a_keys = ["adc_um2", "accumulators_um2", "popcount_um2", "flip_inputs_um2", "flip_registers_um2",
              "sign_correction_um2"]
    energy: dict[str, Any] = {k: sum(pl[k] for pl in per_layer) for k in e_keys}
    energy["array_j"] = array_energy_per_image_j
    periph = sum(energy[k] for k in e_keys)
    area = {k: sum(pl[k] for pl in per_layer) for k in a_keys}
    area["array_um2"] = array_area_um2(layers, rows, cols, tech)
    latency_layers: list[dict[str, Any]] = []
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
