"""A cell kind beyond the built-ins (examples/cells/ohmic1t1r.py, one class, and its technology file
ohmic1t1r.toml): written into decks by both device-model implementations, calibrated, validated against
fresh SPICE and run through a small binary network, end to end (docs/TECHNOLOGIES.md gives the 64-row
numbers)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cosim.bnn.layers import BinConv2d
from cosim.circuit.netlist import ArraySpec, build_netlist
from cosim.circuit.solver import solve_array
from cosim.circuit.technology import get_technology
from cosim.errors import InputError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "cells" / "ohmic1t1r.toml"


def test_the_file_defines_the_kind_and_its_values():
    t = get_technology(str(EXAMPLE))
    assert (t.name, t.cell, t.fet_nfin, t.r_on_ohm, t.r_off_ohm) == ("ohmic1t1r", "ohmic1t1r", 2, 20e3, 200e3)
    assert t.kind.kernel_kind is None and set(t.kind.ports) == {"drive", "sense", "gate", "state"}
    assert t.cell_module.endswith("ohmic1t1r.py") and t.as_dict()["cell_module"] == t.cell_module
    deck = build_netlist(ArraySpec(t, 3, 2), np.ones((1, 3)), np.eye(3, 2), models="bsource")
    assert "Rm a m 20000.0" in deck and "Rm a m 200000.0" in deck
    with pytest.raises(InputError, match="no cell function for cell kind 'ohmic1t1r'") as e:
        solve_array(ArraySpec(t, 3, 2), np.ones((1, 3)), np.eye(3, 2))
    assert "\n" not in str(e.value)


def test_a_fresh_process_finds_the_kind_through_the_technology():
    """Workers and tables carry the technology, not the class: the kind is loaded from cell_module."""
    code = ("import pickle, sys; from cosim.circuit.technology import Technology; "
            "t = pickle.loads(sys.stdin.buffer.read()); print(type(t.kind).__name__)")
    import pickle
    t = get_technology(str(EXAMPLE))
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(t), capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().strip() == "Ohmic1T1R"


@pytest.mark.ngspice
def test_compiled_and_bsource_decks_agree_and_wires_lower_currents():
    from cosim.circuit.spice import ideal_column_currents, run_array
    spec = ArraySpec(get_technology(str(EXAMPLE)), 12, 3)
    x, w = np.ones((2, 12)), np.ones((12, 3))
    x[1, ::2] = 0
    w[:, 1] = 0
    a = run_array(spec, x, w, models="compiled").column_current_a
    b = run_array(spec, x, w, models="bsource").column_current_a
    np.testing.assert_allclose(a, b, rtol=1e-6)
    ideal = ideal_column_currents(spec, x, w)
    assert np.all(a < ideal) and np.all(a > 0.9 * ideal)


def end_to_end(example: Path, tmp_path: Path) -> None:
    """Calibrates a small table of the technology file ``example``, validates it against fresh SPICE and
    runs a two-layer binary network through it."""
    from cosim.cim import cim_stats, to_cim
    from cosim.surrogate.fit import SweepConfig, calibrate
    from cosim.surrogate.validate import validate
    tech = get_technology(str(example))
    cfg = SweepConfig(tech=tech, rows=16, cols=8, topology="decoupled", seed=0, vectors=8)
    table = calibrate(cfg, 6, tmp_path / "cal", progress=False)
    assert table.provenance["technology"] == tech.name
    assert table.technology() == tech
    rep = validate(tmp_path / "cal" / "table.parquet", patterns=["random"], n_columns=32, vectors=8, cols=8)
    assert rep["n_columns"] >= 32 and rep["code_agreement"] >= 0.9, rep["code_agreement"]
    assert rep["current_rel_rmse"] < 1e-2
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), BinConv2d(8, 12, 3, 1, 1),
                        nn.BatchNorm2d(12), nn.Flatten(), nn.Linear(12 * 8 * 8, 10)).eval()
    with torch.no_grad():
        cim = to_cim(net, tech=tech, rows=16, cols=8, mode="surrogate", table=tmp_path / "cal" / "table.parquet")
        out = cim(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 10) and torch.all(torch.isfinite(out))
    assert cim_stats(cim)["overall"]["array_reads"] > 0


@pytest.mark.ngspice
def test_calibrated_validated_and_run_through_a_network(tmp_path):
    end_to_end(EXAMPLE, tmp_path)


def test_bad_cell_modules_give_one_line_errors(tmp_path):
    (tmp_path / "none.py").write_text("x = 1\n")
    (tmp_path / "broken.py").write_text("raise ValueError('no')\n")
    for module, match in (("none.py", "registers no cell kind 'mine'"), ("broken.py", "failed: ValueError: no"),
                          ("missing.py", "no cell module")):
        f = tmp_path / f"t_{module}.toml"
        f.write_text(f'name = "t"\ncell = "mine"\ncell_module = "{module}"\n')
        with pytest.raises(InputError, match=match) as e:
            get_technology(str(f))
        assert "\n" not in str(e.value)
