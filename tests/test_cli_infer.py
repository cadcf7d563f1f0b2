"""``cosim infer``: JSON keys, provenance, and one-line errors for bad input."""

import json
import os
import subprocess
import sys

import pytest

from cosim.cli import main
from cosim.cim.synthetic import synthetic_table
from cosim.paths import reference_models_dir

KEYS = ("accuracy", "n", "on_cell_fraction", "mean_on_count", "array_energy_j", "seconds", "provenance", "layers")


def _run(args, capsys):
    """(exit status, captured output) of ``cosim ARGS`` in process (0 when main returns)."""
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr()


@pytest.mark.shared
def test_infer_json_keys(tmp_path):
    table = synthetic_table("sram8t", 64, 64, samples=1500, ir_drop=0.0).save(tmp_path / "t.parquet")
    out = subprocess.run([sys.executable, "-m", "cosim.cli", "infer", "--model", "vgg-small", "--mode", "ideal",
                          "--tech", "sram8t", "--rows", "64", "--cols", "64", "--table", str(table), "--binsparx",
                          "--limit", "2", "--json", "--no-progress"],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    for k in KEYS:
        assert k in res
    assert res["n"] == 2 and 0 <= res["accuracy"] <= 1
    assert 0 < res["on_cell_fraction"] < 0.5 and res["array_energy_j"] > 0
    assert res["partial_sum_reduction"] > 0 and len(res["layers"]) == 5
    prov = res["provenance"]
    assert prov["technology"] == "sram8t" and prov["array_size"] == [64, 64] and prov["table_synthetic"] is True
    assert "code_version" in prov and prov["ngspice_version"]


@pytest.mark.shared
def test_infer_bad_table_and_checkpoint(tmp_path, capsys):
    t = synthetic_table("reram1t1r", 32, 32, samples=800).save(tmp_path / "r.parquet")
    code, io = _run(["infer", "--model", "vgg-small", "--tech", "sram8t", "--rows", "32", "--table", str(t),
                     "--mode", "surrogate", "--limit", "1"], capsys)
    assert code == 1 and io.err.startswith("error: ") and "reram1t1r" in io.err and len(io.err.strip().splitlines()) == 1
    code, io = _run(["infer", "--model", "vgg-small", "--tech", "reram1t1r", "--rows", "64", "--table", str(t),
                     "--mode", "surrogate", "--limit", "1"], capsys)
    assert code == 1 and "32 rows" in io.err and len(io.err.strip().splitlines()) == 1
    code, io = _run(["infer", "--model", "resnet18", "--checkpoint", str(reference_models_dir() / "vgg_small.pt"),
                     "--mode", "ideal", "--limit", "1"], capsys)
    assert code == 1 and "resnet18" in io.err and len(io.err.strip().splitlines()) == 1


def test_infer_corrupt_table(tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not a parquet file")
    code, io = _run(["infer", "--model", "vgg-small", "--table", str(bad), "--mode", "surrogate", "--limit", "1"], capsys)
    assert code == 1 and io.err.startswith("error: ") and len(io.err.strip().splitlines()) == 1


def _shipped_sram8t_64():
    from cosim.errors import TableError
    from cosim.surrogate.tables import default_table_path
    try:
        default_table_path("sram8t", 64)
        return True
    except TableError:
        return False


@pytest.mark.shared
@pytest.mark.skipif(not _shipped_sram8t_64(), reason="no shipped sram8t 64-row table")
def test_infer_surrogate_default_table(capsys):
    code, io = _run(["infer", "--model", "vgg-small", "--mode", "surrogate", "--tech", "sram8t", "--rows", "64",
                     "--cols", "64", "--limit", "1", "--threads", "1", "--json", "--no-progress"], capsys)
    assert code == 0, io.err
    res = json.loads(io.out)
    assert res["n"] == 1 and res["array_energy_j"] > 0 and res["mode"] == "surrogate"
    assert res["provenance"]["table"].endswith("sram8t_64_decoupled.parquet")
    assert res["provenance"]["table_synthetic"] is False


@pytest.mark.shared
@pytest.mark.ngspice
def test_infer_spice_mode_reports_spot_checks(tmp_path):
    table = synthetic_table("resistor", 64, 64, samples=1500, ir_drop=0.0).save(tmp_path / "r.parquet")
    out = subprocess.run([sys.executable, "-m", "cosim.cli", "infer", "--model", "vgg-small", "--mode", "spice",
                          "--tech", "resistor", "--rows", "64", "--cols", "64", "--table", str(table),
                          "--spice-tiles", "1", "--spice-vectors", "2", "--limit", "1", "--json", "--no-progress"],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["spice_summary"]["tiles"] == 1 and len(res["spice_checks"]) == 1
    assert res["spice_checks"][0]["vectors"] == 2 and res["spice_checks"][0]["ngspice_version"]
    assert res["spice_seconds"] > 0
