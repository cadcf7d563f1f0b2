"""The network-level error budget (cosim.study.budget): paired accuracy and per-layer code agreement."""

import csv
import json

import numpy as np
import pytest
import torch

from cosim.cim import CiMConfig
from cosim.cim.synthetic import synthetic_table
from cosim.errors import InputError
from cosim.study import budget, report
from test_cim_network import _tiny_net


@pytest.fixture(scope="module")
def tables():
    return (synthetic_table("sram8t", 16, 16, samples=800, ir_drop=0.25, seed=1),
            synthetic_table("sram8t", 16, 16, samples=800, ir_drop=0.0, seed=1))


def _inputs(n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    with torch.no_grad():
        return x, _tiny_net()(x).argmax(1).numpy()   # the software network's classes as labels


def _config(table):
    return CiMConfig.from_kwargs(tech="sram8t", rows=16, cols=16, mode="surrogate", table=table)


def test_same_model_gives_no_difference(tmp_path, tables):
    x, labels = _inputs()
    res = budget.run_budget(_tiny_net(), x, labels, _config(tables[0]), tmp_path, reference="surrogate",
                            chunk_images=2)
    s = res.summary()
    assert s["n_images"] == 3 and s["delta_pp"] == 0 and s["only_surrogate"] == s["only_reference"] == 0
    assert s["prediction_agreement"] == 1.0 and s["code_agreement"] == 1.0
    assert [l["name"] for l in res.layers] == ["2", "4"]
    assert all(l["column_reads"] > 0 and l["codes_differ"] == 0 for l in res.layers)


def test_a_different_reference_is_detected(tmp_path, tables):
    x, labels = _inputs(n=3)
    # the reference: the ideal array (exact counts); the surrogate's IR drop lowers its codes
    res = budget.run_budget(_tiny_net(), x, labels, _config(tables[0]), tmp_path / "ideal", reference="ideal")
    assert 0 < res.code_agreement < 1 and res.min_layer_code_agreement < 1
    assert all(l["codes_differ"] > 0 for l in res.layers)
    # a reference table without IR drop: codes differ too, and per image both networks are recorded
    res2 = budget.run_budget(_tiny_net(), x, labels, _config(tables[0]), tmp_path / "flat", reference="surrogate",
                             reference_table=tables[1])
    assert res2.code_agreement < 1
    assert len(res2.surrogate_correct) == len(res2.reference_correct) == 3


def test_paired_counts_match_a_direct_comparison(tables):
    from cosim.cim.arrays import IdealArray, build_array
    sur, _ = build_array(mode="surrogate", tech="sram8t", rows=16, cols=16, table=tables[0])
    p = budget.PairedArray(IdealArray(16), sur)
    g = torch.Generator().manual_seed(0)
    xb = (torch.rand(40, 16, generator=g) < 0.7).float()
    wb = (torch.rand(16, 9, generator=g) < 0.7).float()
    codes = p.read(xb, wb)
    assert torch.equal(codes, xb @ wb)
    differ = int((sur.read(xb, wb) != xb @ wb).sum())
    assert differ > 0
    # the reference is the ideal array: its code is the AND-count, always the nearer one; IR drop reads low
    assert p.counts[""] == [360, differ, 0, 0, differ, 0]
    # roles swapped: the probe is the ideal array, nearer the AND-count and higher on every differing read
    q = budget.PairedArray(sur, IdealArray(16))
    q.read(xb, wb)
    assert q.counts[""] == [360, differ, 0, differ, 0, differ]


def test_chunks_saved_before_the_direction_counts_still_read_back(tmp_path, tables):
    """A run folder whose chunks predate the direction counts (three numbers per layer) is read back; its
    direction is unknown (None), never a wrong number."""
    import json
    x, labels = _inputs(n=2)
    res = budget.run_budget(_tiny_net(), x, labels, _config(tables[0]), tmp_path, reference="ideal", chunk_images=1)
    near = res.nearer_ideal
    assert near is not None and near[1] == sum(l["codes_differ"] for l in res.layers) > 0 and near[0] == 0
    chunk = sorted((tmp_path / "chunks").glob("*.json"))[0]
    rec = json.loads(chunk.read_text())
    rec["layers"] = {k: v[:3] for k, v in rec["layers"].items()}
    chunk.write_text(json.dumps(rec))
    old = budget.run_budget(_tiny_net(), x, labels, _config(tables[0]), tmp_path, reference="ideal", chunk_images=1)
    assert old.chunks_computed == 0 and old.nearer_ideal is None and old.summary()["nearer_ideal"] is None
    assert old.code_agreement == res.code_agreement


def test_a_run_resumes_after_an_interruption(tmp_path, tables):
    x, labels = _inputs(n=3)
    seen = []

    def stop_after_first(done, total):
        seen.append(done)
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        budget.run_budget(_tiny_net(), x, labels, _config(tables[0]), tmp_path, reference="ideal", chunk_images=1,
                          on_chunk=stop_after_first)
    assert len(list((tmp_path / "chunks").glob("*.json"))) == 1
    res = budget.run_budget(_tiny_net(), x, labels, _config(tables[0]), tmp_path, reference="ideal", chunk_images=1)
    assert res.chunks_computed == 2
    full = budget.run_budget(_tiny_net(), x, labels, _config(tables[0]), tmp_path / "once", reference="ideal",
                             chunk_images=1)
    assert res.summary()["layers"] == full.summary()["layers"]
    assert (res.surrogate_correct == full.surrogate_correct).all()
    again = budget.run_budget(_tiny_net(), x, labels, _config(tables[0]), tmp_path, reference="ideal", chunk_images=1)
    assert again.chunks_computed == 0
    # the folder belongs to its configuration
    with pytest.raises(InputError, match="another configuration"):
        budget.run_budget(_tiny_net(), x, labels, _config(tables[0]).replace(binsparx=True), tmp_path,
                          reference="ideal", chunk_images=1)


def test_rows_are_read_back_by_the_report(tmp_path, tables, monkeypatch):
    from cosim import paths
    monkeypatch.setattr(paths, "CHECKOUT_DIR", tmp_path / "checkout")
    monkeypatch.setattr(report, "MIN_BUDGET_IMAGES", 3)   # the tiny run's 3 images count as a budget here
    x, labels = _inputs(n=3)
    res = budget.run_budget(_tiny_net(), x, labels, _config(tables[0]), tmp_path / "run", reference="ideal")
    prov = {"table": "synthetic", "code_version": "test", "cpu": "test", "seed": 0, "command": "pytest"}
    path = tmp_path / report.ERROR_BUDGET
    for binsparx in (False, True, False):   # the third replaces the first
        row = budget.budget_row(res, network="vgg-small", technology="sram8t", rows=16, r_wire_ohm=10.0,
                                adc_reference="ideal", binsparx=binsparx, reference="ideal", source="test",
                                provenance=prov)
        budget.append_budget_row(path, row)
    got, txt = report.load_error_budget(tmp_path)
    assert "2 configuration(s)" in txt and "unreadable" not in txt
    key = report.budget_key("vgg-small", "sram8t", 16, 10.0, "ideal", False)
    s = res.summary()   # the budget: the farther end of the difference's 95 % interval
    assert got[key] == pytest.approx(max(abs(round(s[k], 2)) for k in ("delta_pp", "delta_low_pp", "delta_high_pp")))
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and rows[0]["reference"] == "ideal" and rows[0]["command"] == "pytest"
    with pytest.raises(InputError, match="adc_reference"):
        budget.append_budget_row(path, {**row, "adc_reference": "other"})


def test_bad_input_is_one_line(tmp_path, tables):
    x, labels = _inputs(n=3)
    with pytest.raises(InputError, match="reference must be"):
        budget.run_budget(_tiny_net(), x, labels, _config(tables[0]), tmp_path, reference="spice")
    with pytest.raises(InputError, match="surrogate mode"):
        budget.run_budget(_tiny_net(), x, labels, _config(tables[0]).replace(mode="exact"), tmp_path)
    with pytest.raises(InputError, match="inputs for"):
        budget.run_budget(_tiny_net(), x[:2], labels, _config(tables[0]), tmp_path)


def test_a_sampled_probe_reads_part_of_the_vectors(tables):
    from cosim.cim.arrays import IdealArray, build_array
    sur, _ = build_array(mode="surrogate", tech="sram8t", rows=16, cols=16, table=tables[0])
    p = budget.PairedArray(IdealArray(16), sur, sample=0.5, seed=3)
    g = torch.Generator().manual_seed(0)
    xb = (torch.rand(200, 16, generator=g) < 0.7).float()
    wb = (torch.rand(16, 4, generator=g) < 0.7).float()
    assert torch.equal(p.read(xb, wb), xb @ wb)
    reads, differ = p.counts[""][:2]
    assert 4 * 60 < reads < 4 * 140 and reads % 4 == 0 and 0 < differ <= reads


def test_certified_reads_are_checked_against_the_exact_solver(tables):
    x, _ = _inputs(n=1)
    chk = budget.certified_against_exact(_tiny_net(), x, _config(tables[0]), sample=0.3)
    layers = chk["layers"]
    assert [l["name"] for l in layers] == ["2", "4"]
    assert all(0 < l["column_reads"] and 0 <= l["codes_differ"] <= l["column_reads"] for l in layers)
    assert sum(l["resolved"] for l in layers) == chk["columns_resolved"] > 0
    assert chk["exact_column_solves"] == sum(l["column_reads"] for l in layers) < chk["columns_read"]


def test_the_validation_section_is_written_and_replaced(tmp_path, tables):
    x, labels = _inputs(n=3)
    res = budget.run_budget(_tiny_net(), x, labels, _config(tables[0]), tmp_path / "run", reference="ideal")
    prov = {"table": "t.parquet", "table_sha256": "ab" * 32, "cpu": "cpu X", "code_version": "v",
            "date_utc": "2026-01-02T00:00:00", "command": "python scripts/error_budget.py --images 3"}
    result = {"configuration": {"network": "vgg-small", "technology": "sram8t", "rows": 64, "r_wire_ohm": 10.0,
                                "adc_reference": "ideal", "binsparx": False, "reference": "ideal"},
              "result": res.summary(), "provenance": prov}
    sec = budget.section_markdown([result], None, conditions="load 4.")
    s = res.summary()
    assert f"{s['delta_pp']:+.2f} [{s['delta_low_pp']:+.2f}, {s['delta_high_pp']:+.2f}]" in sec
    assert "191 of the 192 configurations" in sec and "cpu X" in sec and "--images 3" in sec
    assert "64 rows: 63, at most" in sec and "128 rows: 64, not yet timed" in sec
    # the interval target's reach: two images classified differently, one each way, on 500 and 1,000 images
    assert "gives an interval of ±0.68 points or wider, ±0.34 on 1,000" in sec
    assert "| t.parquet (abababab) |" in sec and "`t.parquet`, sha256 abababababababab…" in sec
    # a run certified through another table names it
    cert = {**result, "configuration": {**result["configuration"], "reference": "certified"},
            "provenance": {**prov, "certify_table": "c.parquet", "certify_table_sha256": "cd" * 32}}
    sec2 = budget.section_markdown([result, cert], None, conditions="load 4.")
    assert "(certified, screened by c.parquet (cdcdcdcd))" in sec2 and "`c.parquet`, sha256 cdcd" in sec2
    # checks of certified reads against the exact solver: one table row each, the configuration read from
    # the check's own field or, for checks written before it, from the command it records
    check = {"layers": [], "exact_seconds": 2.0, "exact_column_solves": 1000, "columns_read": 5000,
             "columns_resolved": 500, "column_reads_compared": 250_000, "codes_differ": 2, "wall_seconds": 9.0,
             "images": [0, 1], "sample": 0.05,
             "provenance": {**prov, "command": "python scripts/error_budget.py --model resnet18 --tech reram1t1r "
                                               "--rows 256 --adc-reference calibrated --check-exact 0.05"}}
    sec3 = budget.section_markdown([result], [check, {**check, "codes_differ": 0, "configuration": {
        "network": "vgg-small", "technology": "sram8t", "rows": 128, "adc_reference": "ideal"},
        "certify_safety_counts": {"1.0": 120, "2.0": 9}}], conditions="")
    assert "| resnet18 | reram1t1r | 256 | calibrated | t.parquet (abababab) | 0.5 | 2 | 5 % | 250,000 | 2 | 8.0 | 10.0 % | 500 | 9 |" in sec3
    assert "| vgg-small | sram8t | 128 | ideal | t.parquet (abababab) | 1.0 |" in sec3 and "**2 of 500,000 column reads differ** (4.0 per million" in sec3
    # which way the differences lean: the sign test over configurations, and the code directions
    assert "above the reference's in 0 of 1 configurations and below it in 1" in sec
    differ = sum(l["codes_differ"] for l in s["layers"])
    assert "| vgg-small sram8t 64 rows 10 Ω ideal | 3 | " in sec and f"| {differ:,} | 0.0 % | 100.0 % | 0.0 % |" in sec
    doc = "# V\n\ntext\n"
    once = budget.replace_section(doc, sec)
    assert once.startswith(doc) and once.count(budget.SECTION_BEGIN) == 1
    twice = budget.replace_section(once + "after\n", sec.replace("load 4.", "load 5."))
    assert twice.count(budget.SECTION_BEGIN) == 1 and "load 5." in twice and "load 4." not in twice
    assert twice.endswith("after\n")


def test_a_run_is_its_table_s_content_not_its_path(tmp_path, tables):
    """A run folder continues from another checkout: the table file is named by its content."""
    import shutil

    x, labels = _inputs(n=2)
    here = tables[0].save(tmp_path / "a" / "t.parquet")
    budget.run_budget(_tiny_net(), x, labels, _config(str(here)), tmp_path / "run", reference="ideal",
                      chunk_images=1)
    moved = tmp_path / "b" / "t.parquet"
    moved.parent.mkdir()
    shutil.copy(here, moved)
    again = budget.run_budget(_tiny_net(), x, labels, _config(str(moved)), tmp_path / "run", reference="ideal",
                              chunk_images=1)
    assert again.chunks_computed == 0
    other = tables[1].save(tmp_path / "c" / "t.parquet")
    with pytest.raises(InputError, match="another configuration"):
        budget.run_budget(_tiny_net(), x, labels, _config(str(other)), tmp_path / "run", reference="ideal",
                          chunk_images=1)


def test_the_budget_queue_skips_what_the_csv_holds_for_the_shipped_table(tmp_path, monkeypatch):
    """scripts/error_budget_queue.py: a configuration with a row on its shipped table (and enough images of the
    reference) is done; one on another table, with fewer images, or not in the CSV is left to run."""
    import importlib.util

    from pathlib import Path

    from cosim.paths import CHECKOUT_DIR
    from cosim.provenance import sha256_file
    from cosim.surrogate.registry import lookup

    spec = importlib.util.spec_from_file_location("error_budget_queue", CHECKOUT_DIR / "scripts" / "error_budget_queue.py")
    assert spec and spec.loader
    queue = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(queue)
    sha = sha256_file(Path(lookup("sram8t", 64, 10.0).provenance["source_path"]))
    base = {"network": "vgg-small", "technology": "sram8t", "rows": 64, "r_wire_ohm": 10.0, "adc_reference": "calibrated",
            "delta_pp": 0.0, "source": "t", "reference": "certified"}
    rows = [{**base, "binsparx": 1, "n_images": 500, "table_sha256": sha},            # done
            {**base, "binsparx": 0, "n_images": 500, "table_sha256": "f" * 64},       # another table
            {**base, "adc_reference": "ideal", "binsparx": 1, "n_images": 100, "table_sha256": sha}]   # too few
    with (tmp_path / "b.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    todo = queue.plan(["vgg-small"], ["sram8t"], [64], [10.0], ["calibrated", "ideal"], [True, False],
                      csv_path=tmp_path / "b.csv", images=500)
    assert [c["name"] for c in todo] == ["vgg_sram8t_64_10ohm_calibrated", "vgg_sram8t_64_10ohm_ideal_bsx",
                                         "vgg_sram8t_64_10ohm_ideal"]
    assert all(c["table_sha256"] == sha for c in todo)
    # each run is started from the checkout with paths relative to it: its recorded command reruns anywhere
    seen = []

    class Done:
        returncode = 0
    monkeypatch.setattr(queue.subprocess, "run", lambda cmd, cwd=None: seen.append((cmd, cwd)) or Done())
    assert queue.main(["--rows", "64", "--networks", "vgg-small", "--techs", "sram8t", "--r-wire-ohm", "10",
                       "--adc-references", "calibrated", "--binsparx", "off", "--csv", str(tmp_path / "b.csv")]) == 0
    (cmd, cwd), = seen
    assert cwd == CHECKOUT_DIR and cmd[1] == "scripts/error_budget.py"
    assert cmd[cmd.index("--out") + 1] == "docs/error_budget/runs/vgg_sram8t_64_10ohm_calibrated"
    assert not cmd[cmd.index("--table") + 1].startswith("/")
    # --study: the configurations whose study cell did not stop at chance first (cheapest first in each group);
    # cells at chance, software, mirrored and partial-wordline cells set no priority
    def cell(variant, stopped, **kw):
        c = {"network": "vgg-small", "technology": "sram8t", "rows": 64, "r_wire_ohm": 10.0, "variant": variant,
             "cols": 64, "limit": 1000, "seed": 0, "adc_bits": 7, "pwa_rows": None, **kw}
        return json.dumps({"payload": {"cell": c}, "result": {"accuracy": 0.5, "stopped_at_chance": stopped}})
    cells = tmp_path / "cells.jsonl"
    cells.write_text("\n".join([cell("binsparx", True), cell("nonideal", False), cell("software", False),
                                 cell("mirrored", False), cell("nonideal", False, r_wire_ohm=5.0)]) + "\n")
    from cosim.study.report import budget_key
    assert queue.above_chance(cells) == {budget_key("vgg-small", "sram8t", 64, 10.0, "ideal", False),
                                         budget_key("vgg-small", "sram8t", 64, 5.0, "ideal", False)}
    seen.clear()
    assert queue.main(["--rows", "64", "--networks", "vgg-small", "--techs", "sram8t", "--r-wire-ohm", "10",
                       "--csv", str(tmp_path / "b.csv"), "--study", str(cells)]) == 0
    assert [c[c.index("--out") + 1].rsplit("/", 1)[1] for c, _ in seen] == [
        "vgg_sram8t_64_10ohm_ideal", "vgg_sram8t_64_10ohm_calibrated", "vgg_sram8t_64_10ohm_ideal_bsx"]
    cells.write_text("not json\n")
    with pytest.raises(SystemExit, match="line 1 is not a study cell"):
        queue.above_chance(cells)
    assert cmd[cmd.index("--csv") + 1] == str(tmp_path / "b.csv")      # outside the checkout: as given


def test_stored_runs_and_rows_are_refreshed_with_the_current_statistics(tmp_path):
    """A result.json written before a change of cosim.study.stats gets the current interval from its per-image
    outcomes, and so does its CSV row, in place; other rows and runs without outcomes are left alone."""
    from cosim.study import stats

    rng = np.random.default_rng(1)
    sur = rng.random(60) < 0.7
    ref = sur.copy()
    ref[:4] = ~ref[:4]
    c = stats.compare(sur, ref)
    conf = {"network": "vgg-small", "technology": "sram8t", "rows": 64, "r_wire_ohm": 10.0, "adc_reference": "ideal",
            "binsparx": True, "reference": "certified"}
    stale = {"configuration": conf, "comparison": "old", "provenance": {"table_sha256": "ab"},
             "result": {"n_images": 60, "delta_pp": 100 * c.diff, "delta_low_pp": -9.0, "delta_high_pp": 9.0,
                        "mcnemar_p": 0.5, "only_surrogate": 0, "only_reference": 0,
                        "surrogate_correct": stats.pack_bits(sur), "reference_correct": stats.pack_bits(ref)}}
    run = budget.with_current_statistics(stale)
    assert run["result"]["delta_low_pp"] == pytest.approx(100 * c.low) and run["comparison"] == c.text()
    assert (run["result"]["only_surrogate"], run["result"]["only_reference"]) == (c.only_a, c.only_b)
    no_outcomes = {**stale, "result": {k: v for k, v in stale["result"].items() if k != "reference_correct"}}
    assert budget.with_current_statistics(no_outcomes) == no_outcomes
    path = tmp_path / "b.csv"
    base = {"network": "vgg-small", "technology": "sram8t", "rows": 64, "r_wire_ohm": 10.0, "adc_reference": "ideal",
            "n_images": 60, "source": "t", "reference": "certified", "table_sha256": "ab", "delta_pp": "1.00",
            "delta_low_pp": "-9.00", "delta_high_pp": "9.00", "mcnemar_p": "0.5"}
    budget.append_budget_row(path, {**base, "binsparx": 1})
    budget.append_budget_row(path, {**base, "binsparx": 0})
    assert budget.refresh_budget_rows(path, [run]) == 1 and budget.refresh_budget_rows(path, [run]) == 0
    rows = list(csv.DictReader(path.open()))
    assert [r["binsparx"] for r in rows] == ["1", "0"]
    assert rows[0]["delta_low_pp"] == f"{100 * c.low:.2f}" and rows[1]["delta_low_pp"] == "-9.00"
