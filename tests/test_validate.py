"""Validation report and the calibrate / validate command lines."""

import json

import numpy as np
import pytest

from cosim.calibrate import SweepConfig, calibrate
from cosim.cli import main
from cosim.errors import InputError
from cosim.technology import get_technology
from cosim.validate import metrics, validate

pytestmark = pytest.mark.ngspice

KEYS = ("code_agreement", "mean_abs_code_error", "current_rel_rmse", "n_columns")


@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("cal")
    cfg = SweepConfig(tech=get_technology("resistor"), rows=16, cols=8, topology="decoupled", seed=0, vectors=8)
    calibrate(cfg, 4, d, progress=False)
    return d / "table.parquet"


def test_metrics():
    m = metrics(np.array([1.0, 2.0]), np.array([1.0, 2.5]), np.array([1, 2]), np.array([1, 3]))
    assert m == {"code_agreement": 0.5, "mean_abs_code_error": 0.5,
                 "current_rel_rmse": pytest.approx(np.sqrt(0.125) / np.sqrt((1 + 6.25) / 2)), "n_columns": 2}


def test_report_keys_and_beats_count_only(table_path, tmp_path):
    rep = validate(table_path, patterns=["random", "skewed"], n_columns=64, vectors=8, cols=8, out_dir=tmp_path)
    for k in KEYS:
        assert k in rep
        for b in ("ideal", "count_only"):
            assert k in rep["baselines"][b]
    assert rep["n_columns"] == 128
    assert set(rep["patterns"]) == {"random", "skewed"}
    assert sum(v["n_columns"] for v in rep["per_on_count"]["surrogate"].values()) == 128
    assert rep["current_rel_rmse"] < rep["baselines"]["count_only"]["current_rel_rmse"]
    assert rep["code_agreement"] >= rep["baselines"]["count_only"]["code_agreement"]
    assert rep["provenance"]["ngspice_version"] and "calibrated" in rep["by_adc"]
    # a rerun reuses the kept SPICE runs and gives the same numbers
    again = validate(table_path, patterns=["random", "skewed"], n_columns=64, vectors=8, cols=8, out_dir=tmp_path)
    assert again["current_rel_rmse"] == rep["current_rel_rmse"]
    with pytest.raises(InputError, match="network"):
        validate(table_path, patterns=["network"], n_columns=8, vectors=2, cols=2)


def _run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_cli_json_and_errors(table_path, tmp_path, capsys):
    main(["validate", "--table", str(table_path), "--n", "32", "--vectors", "4", "--cols", "8", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert all(k in rep for k in KEYS)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(table_path.read_bytes()[:200])
    for argv in (["validate", "--table", str(bad)],
                 ["validate", "--table", str(tmp_path / "missing.parquet")],
                 ["validate", "--table", str(table_path), "--patterns", "bogus"],
                 ["calibrate", "--tech", "nope", "--rows", "8", "--cols", "2", "--points", "1", "--out", str(tmp_path / "o")],
                 ["calibrate", "--tech", "resistor", "--rows", "0", "--cols", "2", "--points", "1", "--out", str(tmp_path / "o")],
                 ["calibrate", "--tech", "resistor", "--rows", "8", "--cols", "2", "--points", "1", "--orders", "x",
                  "--out", str(tmp_path / "o")]):
        code, out, err = _run(argv, capsys)
        assert code == 1, argv
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
