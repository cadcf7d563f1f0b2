"""The study's cost model: hand-computed cases of every term, and the component table's sources."""

import math
import re

import numpy as np
import pytest

from cosim.errors import InputError
from cosim.study import costs
from cosim.study.costs import Component, LayerShape
from cosim.circuit.technology import get_technology

# Simple numbers so that every figure below can be computed by hand.
HAND = {
    "p_adc_per_bit_w": Component(1.0, "W", "", "test"),
    "p_adc_fixed_w": Component(2.0, "W", "", "test"),
    "t_clk_s": Component(1.0, "s", "", "test"),
    "adc_share": Component(2, "columns", "", "test"),
    "a_adc_fixed_um2": Component(1.0, "um^2", "", "test"),
    "a_adc_per_bit_um2": Component(2.0, "um^2", "", "test"),
    "e_fa_j": Component(1.0, "J", "", "test"),
    "a_fa_um2": Component(1.0, "um^2", "", "test"),
    "t_fa_s": Component(1.0, "s", "", "test"),
    "e_xor_j": Component(10.0, "J", "", "test"),
    "a_xor_um2": Component(5.0, "um^2", "", "test"),
    "t_xor_s": Component(1.0, "s", "", "test"),
    "e_reg_j": Component(100.0, "J", "", "test"),
    "a_reg_um2": Component(3.0, "um^2", "", "test"),
}
# k=10 rows unrolled, 3 output channels, 2 output positions, on 4x2 arrays:
# 3 row tiles x 2 column tiles; ADC 3 bits (counts 0..4, area 1 + 2 x 3 = 7); partial sum 3+2 bits;
# accumulator 4+2 bits.
LAYER = LayerShape("l", k=10, n=3, positions=2)


def test_adc_conversion_energy_and_time():
    assert costs.e_adc_conversion_j(3, HAND) == (1 * 3 + 2) * 4 * 1
    assert costs.t_adc_conversion_s(3, HAND) == 4
    # the shipped table: NeuroSim V1.3's 7 nm HP SAR power (0.2008 x bits + 0.6823) uW x (bits+1) clocks of 1 ns
    assert costs.e_adc_conversion_j(7) == pytest.approx((0.2008e-6 * 7 + 0.6823e-6) * 8e-9)
    assert costs.t_adc_conversion_s(7) == pytest.approx(8e-9)


def test_adc_area_is_neurosims_transistor_count():
    # SarADC::CalculateUnitArea at 7 nm: (269 + (b-1) x 109) NMOS + (209 + (b-1) x 73) PMOS, each a one-fin
    # minimum transistor of 0.0742 um x 0.238 um
    for bits in (7, 8, 9):
        n = (269 + (bits - 1) * 109) + (209 + (bits - 1) * 73)
        assert costs.a_adc_um2(bits) == pytest.approx(n * 0.0742 * 0.238)
    assert costs.a_adc_um2(7) == pytest.approx(27.73, abs=0.01)
    assert costs.a_adc_um2(3, HAND) == 7


def test_logic_cells_are_the_asap7_figures():
    c = costs.COMPONENTS
    # LEF SIZE (um): FAx1 0.756 x 0.27, XOR2xp5 0.486 x 0.27, DFFHQNx1 1.08 x 0.27 (= liberty area 0.13122, 0.2916)
    assert c["a_fa_um2"].value == pytest.approx(0.20412)
    assert c["a_xor_um2"].value == pytest.approx(0.13122)
    assert c["a_reg_um2"].value == pytest.approx(0.2916)
    # liberty delays at (20 ps, 2.88 fF)
    assert c["t_fa_s"].value == pytest.approx(82.2491e-12) and c["t_xor_s"].value == pytest.approx(43.3332e-12)
    # energies: mean VDD internal energy + 1/2 x 2.88 fF x 0.49 V^2 = 0.7056 fJ (hand-summed table entries)
    assert c["e_fa_j"].value == pytest.approx((1.1091329 / 8 + 0.7056) * 1e-15, rel=1e-6)
    assert c["e_xor_j"].value == pytest.approx((1.1844113 / 8 + 0.7056) * 1e-15, rel=1e-6)
    assert c["e_reg_j"].value == pytest.approx((0.985316 / 2 + 0.7056) * 1e-15, rel=1e-6)


def test_adc_bits_and_popcount_tree():
    assert [costs.adc_bits_for(r) for r in (1, 4, 63, 64, 128, 256)] == [1, 3, 6, 7, 8, 9]
    assert costs.popcount_tree(4) == (1, 2)
    assert costs.popcount_tree(128) == (120, 7)


def test_layer_costs_baseline_by_hand():
    c = costs.layer_costs(LAYER, rows=4, cols=2, binsparx=False, c=HAND)
    assert (c["tiles"], c["reads"], c["column_reads"], c["subvectors"], c["adc_bits"]) == (6, 12, 18, 6, 3)
    assert c["adc_j"] == 18 * 20
    assert c["correction_j"] == 18 * 2 * 5
    assert c["accumulate_j"] == 18 * 6
    assert c["popcount_j"] == 6 * 1
    assert c["flip_inputs_j"] == c["flip_registers_j"] == c["sign_correction_j"] == 0
    assert c["t_periph_per_vector_s"] == 2 * 4 + 1
    assert c["t_binsparx_per_vector_s"] == 0
    assert c["adc_um2"] == 6 * 1 * 7
    assert c["accumulators_um2"] == 6 * 2 * (6 * (1 + 3) + 2 * 5 * 1)
    assert c["popcount_um2"] == 3 * 1 * 1
    assert c["flip_inputs_um2"] == c["flip_registers_um2"] == c["sign_correction_um2"] == 0


def test_layer_costs_binsparx_by_hand():
    c = costs.layer_costs(LAYER, rows=4, cols=2, binsparx=True, c=HAND)
    base = costs.layer_costs(LAYER, rows=4, cols=2, binsparx=False, c=HAND)
    for k in ("adc_j", "correction_j", "accumulate_j", "popcount_j", "adc_um2", "accumulators_um2", "popcount_um2"):
        assert c[k] == base[k]
    assert c["flip_inputs_j"] == 6 * 4 * 10
    assert c["flip_registers_j"] == (6 + 18) * 100
    assert c["sign_correction_j"] == 18 * ((5 + 1) * 10 + 5 * 1)
    assert c["t_binsparx_per_vector_s"] == 2 * 1 + 1
    assert c["flip_inputs_um2"] == 3 * 4 * 5
    assert c["flip_registers_um2"] == (6 * 2 + 3) * 3
    assert c["sign_correction_um2"] == 6 * 2 * ((5 + 1) * 5 + 5 * 1)


def test_network_costs_latency_area_and_totals():
    tech = get_technology("sram8t").replace(t_read_s=2.0)
    nc = costs.network_costs([LAYER], rows=4, cols=2, tech=tech, binsparx=True, array_energy_per_image_j=1000.0, c=HAND)
    # per vector: popcount before the read (3) + read (2) + ADCs and accumulate (9); 2 positions
    assert nc["latency_s"] == nc["critical_path_s"] == 2 * 14
    assert nc["cycles"] == 28
    lc = costs.layer_costs(LAYER, rows=4, cols=2, binsparx=True, c=HAND)
    periph = sum(lc[k] for k in ("adc_j", "correction_j", "accumulate_j", "popcount_j", "flip_inputs_j",
                                 "flip_registers_j", "sign_correction_j"))
    assert nc["periphery_energy_j"] == periph
    assert nc["total_energy_j"] == periph + 1000.0
    cell_um2 = 0.162 * 0.270
    assert nc["area_um2"]["array_um2"] == pytest.approx(6 * 4 * 2 * cell_um2)
    assert nc["total_area_um2"] == pytest.approx(sum(nc["area_um2"].values()))
    # without a calibrated array energy, no total is made up
    assert costs.network_costs([LAYER], 4, 2, tech, False, None, c=HAND)["total_energy_j"] is None


def test_latency_rounds_to_whole_clocks():
    tech = get_technology("sram8t").replace(t_read_s=2.0)
    # a synchronous design rounds every vector up to whole clocks
    half = dict(HAND, t_fa_s=Component(0.25, "s", "", "test"), t_xor_s=Component(0.25, "s", "", "test"))
    nc = costs.network_costs([LAYER], rows=4, cols=2, tech=tech, binsparx=True, array_energy_per_image_j=None, c=half)
    assert nc["critical_path_s"] == 2 * 11.75 and nc["cycles"] == 2 * 12 and nc["latency_s"] == 24


def test_array_energy_from_currents():
    e = costs.array_energy_j(lambda c: c * 1e-6, np.array([1, 2, 3]), v_read_v=0.5, t_read_s=2.0)
    assert e == pytest.approx(0.5 * 2.0 * (0 * 1 + 1 * 2 + 2 * 3) * 1e-6)
    with pytest.raises(InputError):
        costs.array_energy_j(lambda c: c, np.array([-1, 2]), 0.5, 1.0)
    with pytest.raises(InputError):
        costs.array_energy_j(lambda c: np.zeros(5), np.array([1, 2]), 0.5, 1.0)


def test_bad_array_size():
    with pytest.raises(InputError):
        LAYER.tiles(0, 2)


def test_every_component_has_a_source():
    for row in costs.component_table():
        assert row["source"] and row["meaning"] and row["unit"]
        # the file the figure was read from (NeuroSim's C++, an ASAP7 liberty or LEF file), or a stated assumption
        assert "cosim assumption" in row["source"] or any(f in row["source"] for f in (".cpp", ".lib", ".lef")), row
        assert math.isfinite(row["value"]) and row["value"] > 0


def _tech_file(tmp_path, periphery: str):
    from cosim.circuit.technology import load_technology_file

    f = tmp_path / "mine.toml"
    f.write_text('name = "mine"\ncell = "sram8t"\n' + periphery + '[parameters]\nv_read_v = 0.7\n')
    return load_technology_file(f)


def test_a_technology_file_sets_its_own_periphery_figures(tmp_path):
    tech = _tech_file(tmp_path, '[periphery]\nadc_share = { value = 4, source = "my layout" }\np_adc_fixed_w = 1e-6\n')
    table = costs.components_for(tech)
    assert table["adc_share"] == Component(4.0, "columns", costs.COMPONENTS["adc_share"].doc, "my layout")
    assert table["p_adc_fixed_w"].value == 1e-6 and table["p_adc_fixed_w"].source == "technology file mine.toml"
    assert table["e_fa_j"] == costs.COMPONENTS["e_fa_j"]
    # network_costs takes the technology's table by default: half the ADC sharing, twice the ADCs' area
    base = get_technology("sram8t", v_read_v=0.7)
    mine = costs.network_costs([LAYER], 64, 64, tech, False, None)
    ref = costs.network_costs([LAYER], 64, 64, base, False, None)
    assert mine["area_um2"]["adc_um2"] == pytest.approx(2 * ref["area_um2"]["adc_um2"])
    given = costs.network_costs([LAYER], 64, 64, tech, False, None, c=costs.COMPONENTS)   # a table given wins
    assert given["area_um2"] == ref["area_um2"] and given["periphery_energy_j"] == ref["periphery_energy_j"]
    # the figures travel with the technology (workers rebuild it from as_dict) and are part of its key
    assert type(tech)(**tech.as_dict()) == tech and "periphery" not in base.as_dict()


@pytest.mark.parametrize("table, error", [
    ('[periphery]\nadc_sharing = 4\n', "unknown periphery component 'adc_sharing'"),
    ('[periphery]\nadc_share = -4\n', "periphery adc_share must be a positive number"),
    ('[periphery]\nadc_share = { value = 4, unit = "x" }\n', "periphery adc_share takes a value and a source"),
    ('periphery = 3\n', "[periphery] must be a table"),
])
def test_bad_periphery_figures_are_one_line_errors(tmp_path, table, error):
    with pytest.raises(InputError, match=re.escape(error)):
        costs.components_for(_tech_file(tmp_path, table))
