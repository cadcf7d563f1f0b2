"""scripts/study_budget.py: an error budget from a plain and a certified study report, image by image."""

import csv
import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from cosim.study import stats
from cosim.study.budget import append_budget_row
from cosim.study.config import Cell
from cosim.study.runner import outcome_fields

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("study_budget", REPO / "scripts" / "study_budget.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _entry(cell: Cell, ok, idx, table="t" * 64, **extra) -> dict:
    result = {**outcome_fields(np.asarray(ok, bool), np.asarray(idx), planned=len(idx), stopped=False),
              "seconds": 2.0 * len(idx), "provenance": {"table": "tables/x.parquet", "code_version": "v",
                                                      "date_utc": "2026-12-07T00:00:00+00:00"}, **extra}
    return {"key": f"k{len(idx)}{cell.certify}{cell.variant}",
            "payload": {"cell": cell.as_dict(), "table_sha256": table, "weights_sha256": "w", "data_sha256": "d"},
            "result": result}


def _write(path: Path, entries) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def test_a_certified_report_budgets_its_cells_against_the_plain_one(tmp_path):
    mod = _script()
    rng = np.random.default_rng(0)
    base = Cell(network="resnet18", variant="adc-cal+binsparx", technology="sram8t", rows=64, cols=64, r_wire_ohm=5.0,
                adc_bits=7, limit=40)
    plain_ok = rng.random(40) < 0.8
    cert_ok = plain_ok.copy()
    cert_ok[[3, 7, 11]] = ~cert_ok[[3, 7, 11]]              # three images the certified reads classify otherwise
    plain = [_entry(base, plain_ok[:20], range(20)),                                    # the claims' rerun has more
             _entry(dataclasses.replace(base, limit=40), plain_ok, range(40)),
             _entry(dataclasses.replace(base, variant="pwa"), plain_ok, range(40))]
    cert = dataclasses.replace(base, certify=True)
    certified = [_entry(cert, cert_ok[5:], range(5, 40), certified={"columns_read": 1000, "columns_resolved": 42}),
                 _entry(dataclasses.replace(cert, variant="pwa"), cert_ok, range(40)),
                 _entry(dataclasses.replace(cert, variant="adc-cal"), cert_ok, range(40)),
                 _entry(dataclasses.replace(cert, technology="reram1t1r"), cert_ok, range(40), table="u" * 64)]
    rows, notes = mod.budget_rows(plain, certified, source="docs/x/REPORT.md", command="cmd", cpu="CPU X")
    assert len(rows) == 1 and len(notes) == 3
    assert "pwa: a variant the budgets do not cover" in notes[0]
    assert all("no plain cell of the same configuration and table" in n for n in notes[1:])
    r = rows[0]
    a, b = plain_ok[5:], cert_ok[5:]                            # the images both ran
    d, lo, hi = stats.paired_difference(a, b)
    assert (r["n_images"], r["delta_pp"], r["delta_low_pp"], r["delta_high_pp"]) == (
        35, f"{100 * d:.2f}", f"{100 * lo:.2f}", f"{100 * hi:.2f}")
    assert r["accuracy_surrogate"] == f"{a.mean():.4f}" and r["accuracy_reference"] == f"{b.mean():.4f}"
    assert (r["adc_reference"], r["binsparx"], r["reference"], r["cpu"]) == ("calibrated", 1, mod.REFERENCE, "CPU X")
    assert (r["columns_resolved"], r["column_reads_compared"], r["table_sha256"]) == (42, 1000, "t" * 64)
    # added after a 500-image budget of the same configuration, which stays; the last row is the report's
    path = tmp_path / "error_budget.csv"
    append_budget_row(path, {**r, "n_images": 500, "reference": "certified", "delta_pp": "2.00"})
    append_budget_row(path, r)
    got = list(csv.DictReader(path.open()))
    assert [g["reference"] for g in got] == ["certified", mod.REFERENCE] and got[1]["n_images"] == "35"


def test_the_command_line(tmp_path, capsys):
    mod = _script()
    base = Cell(network="vgg-small", variant="nonideal", technology="sram8t", rows=64, cols=64, r_wire_ohm=10.0,
                adc_bits=7, limit=10)
    ok = np.arange(10) % 2 == 0
    plain = _write(tmp_path / "plain.jsonl", [_entry(base, ok, range(10))])
    cert = _write(tmp_path / "cert.jsonl", [_entry(dataclasses.replace(base, certify=True), ok, range(10))])
    out = tmp_path / "b.csv"
    assert mod.main(["--plain", str(plain), "--certified", str(cert), "--csv", str(out), "--dry-run"]) == 0
    assert "surrogate 0.5000 vs certified 0.5000 on 10 images, 0.00" in capsys.readouterr().out and not out.exists()
    assert mod.main(["--plain", str(plain), "--certified", str(cert), "--csv", str(out)]) == 0
    assert list(csv.DictReader(out.open()))[0]["delta_pp"] == "0.00"
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    assert mod.main(["--plain", str(tmp_path / "bad.jsonl"), "--certified", str(cert), "--csv", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "bad.jsonl:1: not a cell entry" in err
    assert mod.main(["--plain", str(tmp_path / "missing.jsonl"), "--certified", str(cert), "--csv", str(out)]) == 1
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize("field", ["table_sha256", "weights_sha256"])
def test_cells_of_other_tables_or_weights_are_not_paired(field):
    mod = _script()
    base = Cell(network="vgg-small", variant="binsparx", technology="sram8t", rows=64, cols=64, r_wire_ohm=10.0,
                adc_bits=7, limit=4)
    p = _entry(base, [1, 0, 1, 0], range(4))
    c = _entry(dataclasses.replace(base, certify=True), [1, 1, 1, 0], range(4))
    c["payload"][field] = "other"
    rows, notes = mod.budget_rows([p], [c], source="s", command="c")
    assert rows == [] and "no plain cell" in notes[0]
