"""A cell with no Python (examples/cells/ohmic1t1r_subckt.toml and .sp): the cell of ohmic1t1r.py as a SPICE
subcircuit file whose pins' roles and states the technology file declares. The same column currents in
ngspice as the Python class, calibrated, validated and run through a network end to end, and one-line errors
for a bad declaration (docs/TECHNOLOGIES.md "A new cell with no Python")."""

import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

from cosim.circuit.cells import SubcircuitCell
from cosim.circuit.netlist import ArraySpec, build_netlist
from cosim.circuit.solver import solve_array
from cosim.circuit.technology import Technology, get_technology
from cosim.errors import InputError
from test_new_cell import EXAMPLE as CLASS_EXAMPLE
from test_new_cell import end_to_end

EXAMPLE = CLASS_EXAMPLE.with_name("ohmic1t1r_subckt.toml")


def test_the_file_declares_the_cell_and_the_deck_fills_its_placeholders():
    t = get_technology(str(EXAMPLE))
    assert (t.name, t.cell, t.fet_nfin, t.r_on_ohm) == ("ohmic1t1r_subckt", "subcircuit", 2, 20e3)
    k = t.kind
    assert isinstance(k, SubcircuitCell) and k.kernel_kind is None and k.coupled_drive == "line"
    assert set(k.ports) == {"drive", "sense", "gate", "state"} and k.state_meaning[1] == "the element at r_on_ohm"
    assert Technology(**t.as_dict()) == t   # tables rebuild it from their parameters
    deck = build_netlist(ArraySpec(t, 3, 2), np.ones((1, 3)), np.eye(3, 2), models="bsource")
    assert "Rm a m 20000.0" in deck and "Rm a m 200000.0" in deck and "Xt m ctl b nfet_rvt nfin=2" in deck
    assert "X0_0 b0_0 x0 s0_0 ohm1" in deck and "X0_1 b0_1 x0 s0_1 ohm0" in deck
    assert "{r_o" not in deck and "{fet_" not in deck
    with pytest.raises(InputError, match="no cell function for cell kind 'subcircuit'") as e:
        solve_array(ArraySpec(t, 3, 2), np.ones((1, 3)), np.eye(3, 2))
    assert "\n" not in str(e.value)


def test_the_technology_carries_the_file(tmp_path):
    """Workers and tables get the technology, not the file: a fresh process writes the same deck after the
    file is gone, and another file text is another technology (another table and cache key)."""
    for f in ("ohmic1t1r_subckt.toml", "ohmic1t1r_subckt.sp"):
        shutil.copy(EXAMPLE.with_name(f), tmp_path / f)
    t = get_technology(str(tmp_path / "ohmic1t1r_subckt.toml"))
    spec = ArraySpec(t, 4, 2)
    deck = build_netlist(spec, np.ones((2, 4)), np.ones((4, 2)), models="bsource")
    (tmp_path / "ohmic1t1r_subckt.sp").unlink()
    code = ("import pickle, sys, numpy as np; from cosim.circuit.netlist import build_netlist; "
            "s = pickle.loads(sys.stdin.buffer.read()); "
            "sys.stdout.write(build_netlist(s, np.ones((2, 4)), np.ones((4, 2)), models='bsource'))")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(spec), capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == deck
    text = EXAMPLE.with_name("ohmic1t1r_subckt.sp").read_text().replace("Rm a m", "Rm a  m")
    (tmp_path / "ohmic1t1r_subckt.sp").write_text(text)
    assert get_technology(str(tmp_path / "ohmic1t1r_subckt.toml")).as_dict() != t.as_dict()


def test_a_state_pin_cell_is_one_subcircuit(tmp_path):
    (tmp_path / "c.sp").write_text(".subckt rd8t rbl rwl q sl\nXc rbl rwl q sl sram8t_read_{fet_flavour} "
                                   "nfin={fet_nfin}\n.ends\n")
    (tmp_path / "t.toml").write_text(
        'name = "pin8t"\n[cell]\nfile = "c.sp"\npins = ["drive", "gate", "state", "sense"]\nsubckt = "rd8t"\n'
        'states = { 0 = "q at ground", 1 = "q at v_wl_v" }\nmodels = ["finfet7.lib", "cells.lib"]\n'
        'coupled_drive = "gate"\n')
    t = get_technology(str(tmp_path / "t.toml"))
    deck = build_netlist(ArraySpec(t, 2, 2), np.ones((1, 2)), np.eye(2), models="bsource")
    assert "Vq vq 0 0.7" in deck and "X0_0 b0_0 x0 vq s0_0 rd8t" in deck and "X0_1 b0_1 x0 0 s0_1 rd8t" in deck
    assert "Xc rbl rwl q sl sram8t_read_rvt nfin=1" in deck


@pytest.mark.ngspice
@pytest.mark.parametrize("topology", ["decoupled", "coupled"])
def test_the_same_currents_as_the_python_class(topology):
    from cosim.circuit.spice import run_array
    rng = np.random.default_rng(0)
    x, w = rng.integers(0, 2, (6, 8)), rng.integers(0, 2, (8, 4))
    a = run_array(ArraySpec(get_technology(str(CLASS_EXAMPLE)), 8, 4, topology=topology), x, w,
                  models="bsource").column_current_a
    b = run_array(ArraySpec(get_technology(str(EXAMPLE)), 8, 4, topology=topology), x, w,
                  models="bsource").column_current_a
    assert np.all(a > 0)
    np.testing.assert_allclose(b, a, rtol=1e-9)


@pytest.mark.ngspice
def test_calibrated_validated_and_run_through_a_network(tmp_path):
    end_to_end(EXAMPLE, tmp_path)


GOOD = {"file": '"c.sp"', "pins": '["drive", "gate", "sense"]', "state0": '"c0"', "state1": '"c1"',
        "states": '{ 0 = "off", 1 = "on" }', "models": '["finfet7.lib"]'}


@pytest.mark.parametrize("change, match", [
    ({"file": '"none.sp"'}, "no readable subcircuit file"),
    ({"pins": '["drive", "sense"]'}, "pin role 'gate' missing"),
    ({"pins": '["drive", "gate", "bulk"]'}, "unknown pin role 'bulk'"),
    ({"state1": '"c9"'}, "subcircuit 'c9' \\(state1\\) is not defined in c.sp"),
    ({"states": '{ 0 = "off" }'}, "states must give the meaning of each stored bit"),
    ({"models": '["nomodel.lib"]'}, "no device-model file 'nomodel.lib'"),
    ({"pins": '["drive", "gate", "state", "sense"]'}, "with a 'state' pin"),
    ({"bogus": '1'}, "unknown key 'bogus' in \\[cell\\]"),
])
def test_bad_declarations_give_one_line_errors(tmp_path, change, match):
    (tmp_path / "c.sp").write_text(".subckt c1 a ctl b\nR1 a b {r_on_ohm}\n.ends\n"
                                   ".subckt c0 a ctl b params: k=1\nR1 a b {r_off_ohm}\n.ends\n")
    table = "\n".join(f"{k} = {v}" for k, v in {**GOOD, **change}.items())
    (tmp_path / "t.toml").write_text(f'name = "t"\n[cell]\n{table}\n')
    with pytest.raises(InputError, match=match) as e:
        get_technology(str(tmp_path / "t.toml"))
    assert "\n" not in str(e.value) and "t.toml" in str(e.value)


def test_an_unknown_placeholder_is_one_line(tmp_path):
    (tmp_path / "c.sp").write_text(".subckt c1 a ctl b\nR1 a b {r_on_kohm}\n.ends\n"
                                   ".subckt c0 a ctl b\nR1 a b { r_off }\n.ends\n")   # spaces: a SPICE expression
    table = "\n".join(f"{k} = {v}" for k, v in GOOD.items())
    (tmp_path / "t.toml").write_text(f'name = "t"\n[cell]\n{table}\n')
    with pytest.raises(InputError, match=r"unknown placeholder \{r_on_kohm\} in c.sp") as e:
        get_technology(str(tmp_path / "t.toml"))
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="cell 'subcircuit' and cell_subckt go together"):
        Technology(cell="subcircuit")
