"""Wire resistance per line (r_bl_ohm, r_sl_ohm, r_wl_ohm): the netlist puts each line's value on its
segments; ngspice agrees with the nodal solve, and the exact solver (coupled, and decoupled on the C and
torch backends) with ngspice, when the lines differ; r_wire_ohm still sets them all at once."""

import numpy as np
import pytest

from cosim.circuit.netlist import ArraySpec, build_netlist
from cosim.circuit.nodal import solve_linear_array
from cosim.circuit.solver import solve_array
from cosim.circuit.spice import run_array
from cosim.circuit.technology import get_technology
from cosim.errors import InputError

LINES = {"r_bl_ohm": 3.0, "r_sl_ohm": 41.0, "r_wl_ohm": 17.0}


def _segments(deck: str, prefix: str) -> set[str]:
    return {ln.split()[3] for ln in deck.splitlines() if ln.startswith(prefix) and ln[len(prefix)].isdigit()}


@pytest.mark.parametrize("tech", ["resistor", "sram8t", "reram1t1r"])
@pytest.mark.parametrize("topology", ["decoupled", "coupled"])
def test_each_line_carries_its_own_value(tech, topology):
    t = get_technology(tech, **LINES)
    deck = build_netlist(ArraySpec(t, 4, 3, topology), np.ones((1, 4)), np.ones((4, 3)), models="bsource")
    assert _segments(deck, "Rb") == {"3.0"}
    if t.kind.coupled_drive == "line" and topology == "coupled":
        assert _segments(deck, "Rw") == {"17.0"} and not _segments(deck, "Rs")
    else:
        assert _segments(deck, "Rs") == {"41.0"} and not _segments(deck, "Rw")
    assert "r_bl_ohm=3.0 r_sl_ohm=41.0 r_wl_ohm=17.0" in deck.splitlines()[1]


def test_r_wire_sets_every_line_and_equal_lines_are_no_lines():
    t = get_technology("sram8t", **LINES)
    assert not t.lines_equal and t.wire_ohm("sl") == 41.0
    u = t.replace(r_wire_ohm=5.0)
    assert u.lines_equal and [u.wire_ohm(ln) for ln in ("bl", "sl", "wl")] == [5.0] * 3
    same = get_technology("sram8t", r_bl_ohm=10.0, r_sl_ohm=10.0, r_wl_ohm=10.0)
    assert same == get_technology("sram8t") and same.as_dict() == get_technology("sram8t").as_dict()
    assert "r_bl_ohm" not in get_technology("sram8t").as_dict()
    with pytest.raises(InputError, match="unknown line"):
        t.wire_ohm("xl")
    with pytest.raises(InputError, match="non-negative"):
        get_technology("sram8t", r_sl_ohm=-1.0)


@pytest.mark.ngspice
@pytest.mark.parametrize("topology", ["decoupled", "coupled"])
def test_ngspice_equals_the_nodal_solve_with_unequal_lines(topology, rng):
    spec = ArraySpec(get_technology("resistor", **LINES), 12, 5, topology)
    x, w = rng.integers(0, 2, (4, 12)), rng.integers(0, 2, (12, 5))
    x[0] = 1
    ref = solve_linear_array(spec, x, w)
    np.testing.assert_allclose(run_array(spec, x, w).column_current_a, ref, rtol=1e-6, atol=1e-15)
    # the lines matter: the same array with r_wire_ohm on every line is another answer
    other = solve_linear_array(ArraySpec(get_technology("resistor"), 12, 5, topology), x, w)
    assert np.max(np.abs(other - ref) / np.abs(ref).max()) > 1e-4


@pytest.mark.ngspice
@pytest.mark.parametrize("tech", ["sram8t", "reram1t1r"])
def test_the_coupled_exact_solve_equals_ngspice_with_unequal_lines(tech, rng):
    from test_solver import spice_currents
    spec = ArraySpec(get_technology(tech, **LINES), 10, 4, "coupled")
    x, w = rng.integers(0, 2, (3, 10)), rng.integers(0, 2, (10, 4))
    x[0] = 1
    got = solve_array(spec, x, w).column_current_a
    np.testing.assert_allclose(got, spice_currents(spec, x, w), rtol=1e-6, atol=1e-13)


@pytest.mark.ngspice
@pytest.mark.parametrize("tech", ["sram8t", "reram1t1r"])
@pytest.mark.parametrize("backend", ["c", "torch"])
@pytest.mark.parametrize("lines", [LINES, {"r_bl_ohm": 25.0, "r_sl_ohm": 2.0},
                                   {"r_bl_ohm": 5.0, "r_sl_ohm": 15.0, "r_driver_ohm": 0.0, "r_sink_ohm": 0.0}])
def test_the_decoupled_exact_solve_equals_ngspice_with_unequal_lines(tech, backend, lines, rng):
    from test_solver import spice_currents
    spec = ArraySpec(get_technology(tech, **lines), 16, 4, "decoupled")
    x, w = rng.integers(0, 2, (3, 16)), rng.integers(0, 2, (16, 4))
    x[0] = 1
    got = solve_array(spec, x, w, backend=backend).column_current_a
    np.testing.assert_allclose(got, spice_currents(spec, x, w), rtol=1e-6, atol=1e-12)
    # the lines matter: swapping the bit- and source-line values is another answer
    swapped = get_technology(tech, **{**lines, "r_bl_ohm": lines["r_sl_ohm"], "r_sl_ohm": lines["r_bl_ohm"]})
    other = solve_array(ArraySpec(swapped, 16, 4, "decoupled"), x, w, backend=backend).column_current_a
    assert np.max(np.abs(other - got) / np.abs(got).max()) > 1e-5


@pytest.mark.parametrize("backend", ["c", "torch"])
@pytest.mark.parametrize("sink_ohm", [0.0, 30.0])
def test_the_decoupled_exact_solve_of_resistor_cells_equals_the_nodal_solve_with_unequal_lines(backend, sink_ohm, rng):
    spec = ArraySpec(get_technology("resistor", r_sink_ohm=sink_ohm, **LINES), 12, 5, "decoupled")
    x, w = rng.integers(0, 2, (4, 12)), rng.integers(0, 2, (12, 5))
    x[0] = 1
    got = solve_array(spec, x, w, backend=backend).column_current_a
    np.testing.assert_allclose(got, solve_linear_array(spec, x, w), rtol=1e-9, atol=1e-15)
    # the decoupled deck has no row-line resistance: r_wl_ohm changes nothing
    spec_wl = ArraySpec(spec.tech.replace(r_wl_ohm=1000.0), 12, 5, "decoupled")
    assert np.array_equal(solve_array(spec_wl, x, w, backend=backend).column_current_a, got)


MIXED = [{"r_bl_ohm": 0.0, "r_sl_ohm": 15.0}, {"r_bl_ohm": 12.0, "r_sl_ohm": 0.0}]
PERIPHERY = [{}, {"r_driver_ohm": 0.0}, {"r_sink_ohm": 0.0}, {"r_driver_ohm": 0.0, "r_sink_ohm": 0.0}]


@pytest.mark.ngspice
@pytest.mark.parametrize("tech", ["sram8t", "reram1t1r"])
@pytest.mark.parametrize("lines", MIXED)
@pytest.mark.parametrize("periphery", PERIPHERY)
def test_a_zero_ohm_line_beside_a_resistive_one_equals_ngspice(tech, lines, periphery, rng):
    """One line of zero-ohm wires (one node) beside a resistive one: the kernels' bordered solve, C and torch."""
    from test_solver import spice_currents
    spec = ArraySpec(get_technology(tech, **lines, **periphery), 16, 4, "decoupled")
    x, w = rng.integers(0, 2, (3, 16)), rng.integers(0, 2, (16, 4))
    x[0] = 1
    ref = spice_currents(spec, x, w)
    for backend in ("c", "torch"):
        np.testing.assert_allclose(solve_array(spec, x, w, backend=backend).column_current_a, ref, rtol=1e-6,
                                   atol=1e-12)


@pytest.mark.parametrize("lines", MIXED)
@pytest.mark.parametrize("periphery", PERIPHERY)
@pytest.mark.parametrize("rows", [1, 2, 9])
def test_a_zero_ohm_line_beside_a_resistive_one_equals_the_nodal_solve(lines, periphery, rows, rng):
    from cosim.circuit.solver import solve_columns
    spec = ArraySpec(get_technology("resistor", **lines, **periphery), rows, 3, "decoupled")
    x, w = rng.integers(0, 2, (4, rows)), rng.integers(0, 2, (rows, 3))
    x[0] = 1
    ref = solve_linear_array(spec, x, w)
    for backend in ("c", "torch"):
        np.testing.assert_allclose(solve_array(spec, x, w, backend=backend).column_current_a, ref, rtol=1e-9,
                                   atol=1e-15)
    # the certified reads' (vector, column) pairs take the same path
    kk, cc = np.array([3, 0, 2]), np.array([1, 2, 0])
    np.testing.assert_allclose(solve_columns(spec, x, w, kk, cc), ref[kk, cc], rtol=1e-9, atol=1e-15)


def test_per_um_in_a_file_times_the_pitch(tmp_path):
    f = tmp_path / "t.toml"
    f.write_text('name = "t"\ncell = "sram8t"\n[parameters]\ncell_width_um = 0.3\n'
                 'r_bl_ohm_per_um = { value = 70.0, source = "ASAP7 M1" }\nr_wl_ohm_per_um = 40\n')
    t = get_technology(str(f))
    assert t.r_bl_ohm == pytest.approx(70.0 * 0.162) and t.r_wl_ohm == pytest.approx(40 * 0.3)
    f.write_text('name = "t"\ncell = "sram8t"\n[parameters]\nr_bl_ohm = 1\nr_bl_ohm_per_um = 70\n')
    with pytest.raises(InputError, match="not both"):
        get_technology(str(f))


# ------------------------------------------------------------------------------ the command line
def _cosim(*args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "cosim.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.ngspice
@pytest.mark.parametrize("tech", ["sram8t", "reram1t1r"])
def test_cli_spice_and_solve_agree_with_per_line_options(tech):
    import json
    args = ["--tech", tech, "--rows", "16", "--cols", "4", "--batch", "2", "--seed", "5", "--r-bl-ohm", "5",
            "--r-sl-ohm", "15", "--json"]
    sp, so = _cosim("spice", *args), _cosim("solve", *args)
    assert sp.returncode == 0 and so.returncode == 0, sp.stderr + so.stderr
    a, b = json.loads(sp.stdout), json.loads(so.stdout)
    r_wire = get_technology(tech).r_wire_ohm
    for out in (a, b):
        assert (out["r_bl_ohm"], out["r_sl_ohm"], out["r_wl_ohm"], out["r_wire_ohm"]) == (5.0, 15.0, r_wire, r_wire)
        assert (out["provenance"]["r_bl_ohm"], out["provenance"]["r_sl_ohm"]) == (5.0, 15.0)
    np.testing.assert_allclose(b["column_current_a"], a["column_current_a"], rtol=1e-6, atol=1e-12)
    # the per-line values reach the circuit: equal lines of 5 ohm are another answer
    same = json.loads(_cosim("solve", *args[:-5], "--r-wire-ohm", "5", "--json").stdout)
    assert np.max(np.abs(np.array(same["column_current_a"]) - b["column_current_a"])) > 1e-4 * np.max(same["column_current_a"])


def test_cli_per_line_options_apply_after_r_wire_ohm_and_refuse_negative_values():
    import json
    base = ["solve", "--tech", "resistor", "--rows", "6", "--cols", "2", "--json"]
    for order in (["--r-wire-ohm", "8", "--r-sl-ohm", "20"], ["--r-sl-ohm", "20", "--r-wire-ohm", "8"]):
        p = _cosim(*base, *order)
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout)
        assert (out["r_wire_ohm"], out["r_bl_ohm"], out["r_sl_ohm"], out["r_wl_ohm"]) == (8.0, 8.0, 20.0, 8.0)
    for opt in ("--r-bl-ohm", "--r-sl-ohm", "--r-wl-ohm"):
        bad = _cosim(*base, opt, "-2")
        assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
            f"error: {opt} must be a non-negative resistance (ohm), got -2"]


def test_cli_calibrate_takes_the_per_line_options(tmp_path, monkeypatch, capsys):
    import cosim.surrogate.fit as cal
    from cosim.cli import main

    got = []

    class _Table:
        provenance = {"n_samples": 1, "n_points": 1}

    monkeypatch.setattr(cal, "calibrate", lambda cfg, points, out, **kw: got.append(cfg) or _Table())
    main(["calibrate", "--tech", "sram8t", "--rows", "16", "--cols", "4", "--points", "1", "--no-progress",
          "--out", str(tmp_path / "o"), "--r-wire-ohm", "6", "--r-sl-ohm", "12", "--r-wl-ohm", "3"])
    t = got[-1].tech
    assert [t.wire_ohm(ln) for ln in ("bl", "sl", "wl")] == [6.0, 12.0, 3.0]
    assert "differs per line" in capsys.readouterr().err
