"""``cosim spice``: the JSON it prints, and one-line errors with a non-zero exit."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest


pytestmark = pytest.mark.ngspice


def cosim(*args, env=None):
    return subprocess.run([sys.executable, "-m", "cosim.cli", "spice", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_json_has_the_documented_keys():
    p = cosim("--tech", "sram8t", "--rows", "16", "--cols", "3", "--pattern", "random", "--seed", "1", "--batch", "2", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    for key in ("column_current_a", "ideal_column_current_a", "ngspice_version", "solver", "seconds",
                "netlist_sha256", "provenance"):
        assert key in out
    assert np.array(out["column_current_a"]).shape == (2, 3)
    assert np.array(out["ideal_column_current_a"]).shape == (2, 3)
    assert np.all(np.array(out["column_current_a"]) <= np.array(out["ideal_column_current_a"]) * 1.0001)
    assert out["provenance"]["rows"] == 16 and out["provenance"]["technology"] == "sram8t"
    assert out["provenance"]["seed"] == 1


def test_npy_inputs_and_all_on(tmp_path):
    np.save(tmp_path / "in.npy", np.array([[1, 0, 1, 1], [0, 0, 0, 0]], dtype=np.uint8))
    np.save(tmp_path / "w.npy", np.ones((4, 2), dtype=np.uint8))
    p = cosim("--tech", "resistor", "--rows", "4", "--cols", "2", "--topology", "coupled", "--r-wire-ohm", "0",
              "--inputs", str(tmp_path / "in.npy"), "--weights", str(tmp_path / "w.npy"), "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["topology"] == "coupled" and out["r_wire_ohm"] == 0.0
    assert out["column_current_a"][1] == pytest.approx([0.0, 0.0], abs=1e-15)
    p = cosim("--tech", "resistor", "--rows", "4", "--cols", "2", "--pattern", "all-on")
    assert p.returncode == 0 and "ratio" in p.stdout


@pytest.mark.parametrize("args,needle", [
    (["--rows", "0"], "rows"),
    (["--rows", "100000"], "rows"),
    (["--batch", "0"], "batch"),
    (["--inputs", "/nonexistent.npy", "--weights", "/nonexistent.npy"], "not found"),
    (["--inputs", "/nonexistent.npy"], "both"),
])
def test_bad_input_is_one_line(args, needle):
    p = cosim("--tech", "resistor", "--rows", "4", "--cols", "2", *args) if "--rows" not in args else cosim("--tech", "resistor", *args)
    assert p.returncode != 0
    assert p.stderr.startswith("error:") and needle in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_bad_npy_content(tmp_path):
    np.save(tmp_path / "in.npy", np.array([[2, 0, 1, 1]]))
    np.save(tmp_path / "w.npy", np.ones((4, 2)))
    np.save(tmp_path / "wbad.npy", np.ones((3, 2)))
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file")
    for inp, w in (("in.npy", "w.npy"), ("w.npy", "wbad.npy"), ("junk.npy", "w.npy")):
        p = cosim("--tech", "resistor", "--rows", "4", "--cols", "2", "--inputs", str(tmp_path / inp),
                  "--weights", str(tmp_path / w))
        assert p.returncode == 1 and p.stderr.startswith("error:") and "Traceback" not in p.stderr, p.stderr


def test_unknown_tech_and_missing_ngspice():
    p = cosim("--tech", "nosuch")
    assert p.returncode != 0 and "Traceback" not in p.stderr
    p = cosim("--tech", "resistor", "--rows", "2", "--cols", "2", env={"COSIM_NGSPICE": "/nonexistent/ngspice"})
    assert p.returncode == 1 and p.stderr.startswith("error: ngspice not found")


@pytest.mark.parametrize("command", ["spice", "solve"])
@pytest.mark.parametrize("tech,rtol", [("resistor", 1e-9), ("sram8t", 1e-5)])
def test_no_wire_driver_or_sink_resistance_gives_ideal_currents(command, tech, rtol):
    """--r-wire-ohm 0 with --r-driver-ohm 0 and --r-sink-ohm 0: nothing between the cells and the
    periphery, so every column current is its ideal one; the default periphery (10 ohm each) is not."""
    args = [command, "--tech", tech, "--rows", "16", "--cols", "3", "--batch", "2", "--seed", "3", "--json"]
    run = lambda *extra: subprocess.run([sys.executable, "-m", "cosim.cli", *args, *extra], capture_output=True,
                                        text=True, timeout=300)
    zero, default = run("--r-wire-ohm", "0", "--r-driver-ohm", "0", "--r-sink-ohm", "0"), run("--r-wire-ohm", "0")
    assert zero.returncode == 0 and default.returncode == 0, zero.stderr + default.stderr
    z, d = json.loads(zero.stdout), json.loads(default.stdout)
    assert (z["r_driver_ohm"], z["r_sink_ohm"]) == (0.0, 0.0) and d["r_driver_ohm"] > 0
    ideal = np.array(z["ideal_column_current_a"])
    np.testing.assert_allclose(z["column_current_a"], ideal, rtol=rtol)
    assert np.abs(np.array(d["column_current_a"]) - ideal).max() > 10 * rtol * np.abs(ideal).max()
    bad = run("--r-driver-ohm", "-1")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "r_driver_ohm" in bad.stderr
