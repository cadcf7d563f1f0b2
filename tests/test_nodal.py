"""The exact nodal solve, and ngspice against it for linear arrays (1e-6 relative)."""

import numpy as np
import pytest

from cosim.errors import InputError
from cosim.circuit.netlist import ArraySpec
from cosim.circuit.nodal import solve_linear_array
from cosim.circuit.spice import run_array
from cosim.circuit.technology import get_technology

needs_ngspice = pytest.mark.ngspice


def test_single_cell_is_ohms_law():
    t = get_technology("resistor", r_driver_ohm=100.0, r_sink_ohm=50.0)
    for topo in ("decoupled", "coupled"):
        i = solve_linear_array(ArraySpec(t, 1, 1, topo), [[1]], [[1]])
        assert i[0, 0] == pytest.approx(t.v_read_v / (100.0 + t.r_on_ohm + 50.0), rel=1e-12)
        assert solve_linear_array(ArraySpec(t, 1, 1, topo), [[0]], [[1]])[0, 0] == pytest.approx(0.0, abs=1e-18)


def test_two_rows_by_hand():
    """Decoupled 2x1, both on: driver -> b0 -(rw)- b1, cells to s0 -(rw)- s1 -> sink. Solved by hand."""
    rw, rd, rs, g = 10.0, 20.0, 30.0, 1 / 20e3
    t = get_technology("resistor", r_wire_ohm=rw, r_driver_ohm=rd, r_sink_ohm=rs)
    v = t.v_read_v
    # unknowns b0 b1 s0 s1
    G = np.array([
        [1 / rd + 1 / rw + g, -1 / rw, -g, 0],
        [-1 / rw, 1 / rw + g, 0, -g],
        [-g, 0, g + 1 / rw, -1 / rw],
        [0, -g, -1 / rw, 1 / rw + g + 1 / rs],
    ])
    sol = np.linalg.solve(G, [v / rd, 0, 0, 0])
    i = solve_linear_array(ArraySpec(t, 2, 1), [[1, 1]], [[1], [1]])
    assert i[0, 0] == pytest.approx(sol[3] / rs, rel=1e-12)


def test_rejects_nonlinear_cells():
    with pytest.raises(InputError):
        solve_linear_array(ArraySpec(get_technology("sram8t"), 2, 2), [[1, 1]], np.ones((2, 2)))


@needs_ngspice
@pytest.mark.ngspice
@pytest.mark.parametrize("topology", ["decoupled", "coupled"])
@pytest.mark.parametrize("rows", [32, 64, 128])
def test_spice_matches_nodal(rows, topology):
    rng = np.random.default_rng(rows)
    cols = 128 if rows == 128 else 16
    t = get_technology("resistor", r_wire_ohm=5.0 if rows == 64 else 10.0)
    spec = ArraySpec(t, rows, cols, topology)
    x = rng.integers(0, 2, (2, rows))
    x[1] = 1
    w = rng.integers(0, 2, (rows, cols))
    exact = solve_linear_array(spec, x, w)
    res = run_array(spec, x, w)
    np.testing.assert_allclose(res.column_current_a, exact, rtol=1e-6, atol=0)


@needs_ngspice
@pytest.mark.ngspice
def test_spice_matches_nodal_with_zero_resistances():
    rng = np.random.default_rng(7)
    for topo in ("decoupled", "coupled"):
        t = get_technology("resistor", r_wire_ohm=3.0, r_driver_ohm=0.0, r_sink_ohm=0.0)
        spec = ArraySpec(t, 16, 8, topo)
        x, w = rng.integers(0, 2, (3, 16)), rng.integers(0, 2, (16, 8))
        np.testing.assert_allclose(run_array(spec, x, w).column_current_a, solve_linear_array(spec, x, w), rtol=1e-6)
