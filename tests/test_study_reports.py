"""The study's Markdown reports (cosim.study.multibit, cosim.study.validation_report, cosim.study.markdown)
rendered from small synthetic results: tables, formatted numbers, provenance."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

# ------------------------------------------------------------------------------ synthetic inputs

#: (model, bits) -> software accuracy, and the CiM accuracy of its runs
SW_ACC = {("vgg-small", 1): 0.9, ("vgg-small", 2): 0.7}
CIM_ACC = {"default": 0.1, "adccal-bsx": 0.6}


def _correct(n: int, acc: float, seed: int) -> list[bool]:
    rng = np.random.default_rng(seed)
    out = np.zeros(n, bool)
    out[rng.permutation(n)[: int(round(acc * n))]] = True
    return out.tolist()


def _statistics(bits: int) -> dict:
    planes = [{"act_plane": j, "mean_rows_on": 20.0 + j, "p99_rows_on": 40 + j,
               "weight_planes": [{"weight_plane": i, "mean_on_count": 10.0 + i + j, "p50_on_count": 9,
                                  "p99_on_count": 30 + i, "max_on_count": 50 + i, "frac_on_count_ge_16": 0.25}
                                 for i in range(bits)]} for j in range(bits)]
    return {"planes": planes, "mean_rows_on": 21.5, "mean_on_count": 11.25 + bits, "p99_on_count": 31,
            "frac_on_count_ge_16": 0.125 * bits, "rows_on_hist": [], "on_count_hist": [], "column_reads_sampled": 1.0}


def multibit_results(folder: Path, n: int = 40) -> Path:
    """The JSON results `multibit run` writes, for two networks (1- and 2-bit VGG-small) on sram8t
    at two variants, with made-up but consistent numbers."""
    folder.mkdir(parents=True, exist_ok=True)
    for (model, bits), acc in SW_ACC.items():
        sha = f"{bits:064d}"
        correct = _correct(n, acc, bits)
        sw = {"model": model, "bits": bits, "checkpoint_sha256": sha, "n": n, "software_correct": correct,
              "software_pred": [0 if c else 1 for c in correct], "software_accuracy": float(np.mean(correct)),
              "ideal_n": 4, "ideal_bit_identical_logits": True, "rows": 64, "cols": 64,
              "statistics": _statistics(bits), "seconds": 1.0, "load_average_at_end": "up, load average: 1.00",
              "recipe": "reference BNN weights" if bits == 1 else "lsq",
              "provenance": {"command": f"scripts/multibit_study.py run --model {model} --bits {bits}"}}
        if bits != 1:
            sw.update(epochs=1, epochs_planned=1, train_images=500, train_s=12.5,
                      train_command=f"cosim train --model {model} --bits {bits} --epochs 1")
        (folder / f"{model}_b{bits}_software.json").write_text(json.dumps(sw))
        for variant, cacc in CIM_ACC.items():
            cc = _correct(n, cacc, 10 * bits + len(variant))
            run = {"model": model, "bits": bits, "tech": "sram8t", "rows": 64, "cols": 64, "n": n,
                   "variant": variant, "binsparx": variant != "default", "r_wire_ohm": 10.0, "r_wire_explicit": False,
                   "cim_correct": cc, "cim_pred": [0 if c else 2 for c in cc], "cim_accuracy": float(np.mean(cc)),
                   "layer_errors": [{"layer": "conv1", "rel_rms_error": 0.125 * bits, "frac_outputs_changed": 0.5},
                                    {"layer": "conv2", "rel_rms_error": 0.25, "frac_outputs_changed": 0.25}],
                   "error_images": 1, "seconds": 3.5, "threads": 1, "load_average_at_end": "up, load average: 2.00",
                   "provenance": {"checkpoint_sha256": sha,
                                  "command": f"scripts/multibit_study.py run --model {model} --bits {bits} ({variant})"}}
            tag = "" if variant == "default" else "_" + variant
            (folder / f"{model}_b{bits}_sram8t_64{tag}.json").write_text(json.dumps(run))
    return folder


def _metrics(agree: float, rel: float, n: int = 2048, mae: float = 0.01) -> dict:
    return {"code_agreement": agree, "current_rel_rmse": rel, "mean_abs_code_error": mae, "n_columns": n}


def validation_case(rows: int = 64, agree: float = 0.9973, r_wire_ohm: float = 10.0,
                    certified: float | None = None) -> tuple[SimpleNamespace, dict]:
    """A (table, report) pair shaped as ``cosim.surrogate.validate.validate`` returns it: every family at
    ``agree`` through ideal references, ``agree - 0.003`` through calibrated ones, except ``near``, 0.001 lower;
    certified reads (when ``certified`` is given) at ``certified`` and ``certified - 0.0005``, re-solving 2 % and
    30 % of the columns, every family alike."""
    table = SimpleNamespace(rows=rows, meta={"model": "moments-v3", "orders": [1, 2, 3, 4], "terms": list(range(19)),
                                             "leak": False, "n_knots": 33, "term_set": "compact"},
                            provenance={"n_samples": 2457600, "n_points": 2400, "source_path": f"/x/sram8t_{rows}.parquet",
                                        "spice_seconds": 1234.4, "i_cell_a": 12.3456e-6, "i_off_a": 1.5e-10, "seed": 0,
                                        "code_version": "0.1.0+gtest", "r_wire_ohm": r_wire_ohm,
                                        "ngspice_check": {"points": [1, 5, 9], "max_rel_diff": 6e-9}})
    per = {str(k): {"n_columns": 10 + k, "code_agreement": 1.0 - k / 1000} for k in range(rows + 1)}

    def family(a: float, fragile: list[int]) -> dict:
        by_adc = {ref: {"surrogate": _metrics(a - d, 0.0003), "count_only": _metrics(0.6609 - d, 0.0355),
                        "ideal": _metrics(0.1235, 0.3661), "fragile_counts": fragile if ref == "calibrated" else [],
                        "per_on_count": per} for ref, d in (("ideal", 0.0), ("calibrated", 0.003))}
        if certified is not None:
            for ref, d, f in (("ideal", 0.0, 0.02), ("calibrated", 0.0005, 0.3)):
                by_adc[ref]["certified"] = {"code_agreement": certified - d, "n_columns": 4096,
                                            "mean_abs_code_error": 0.0, "resolved_fraction": f}
        return {**_metrics(a, 0.0003, 4096), "by_adc": by_adc}

    pats = {f: family(agree - (0.001 if f == "near" else 0.0), [3, 4, 5, 9] if f == "skewed" else [])
            for f in ("random", "skewed", "near")}
    rep = {**_metrics(agree, 0.0003, 12288), "by_adc": pats["random"]["by_adc"], "patterns": pats,
           "warnings": ["a test warning"], "failed_runs": [{"reason": "did not converge"}]}
    return table, rep


# ------------------------------------------------------------------------------ shared Markdown helpers

def test_markdown_helpers():
    from cosim.study import markdown as md

    header, rows = ["a", "b"], [["1", 2.5], ["x", None]]
    assert md.md_table(header, rows) == "| a | b |\n|---|---|\n| 1 | 2.5 |\n| x | None |"
    assert md.pct(0.0) == "0.00 %" and md.pct(1.0, 1) == "100.0 %"
    assert md.fmt(1.5e-6, "{:.3f} uA", 1e6) == "1.500 uA" and md.fmt(float("nan"), "{:.3f}") == "—"
    assert md.pct(0.99731) == "99.73 %" and md.pct(None) == md.pct(math.nan) == "—"
    assert md.signed_pp(0.8) == "+80.0" and md.signed_pp(-0.0125) == "-1.2" and md.signed_pp(None) == "—"
    assert [md.listing(x) for x in ([], ["a"], ["a", "b"], ["a", "b", "c"])] == ["", "a", "a and b", "a, b and c"]
    assert md.provenance_line("0.1.0+g1", "2026-01-01T00:00:00+00:00", "ngspice 46 (klu)", "x86_64") == \
        "Code version 0.1.0+g1, ngspice 46 (klu), x86_64, 2026-01-01T00:00:00+00:00."
    assert md.provenance_line("v", "d") == "Code version v, d."


# ------------------------------------------------------------------------------ multibit (docs/MULTIBIT.md)

def _table(text: str, header_start: str) -> list[list[str]]:
    """The rows of the Markdown table whose header line starts with ``header_start`` (cells stripped)."""
    lines = text.splitlines()
    i = next(j for j, line in enumerate(lines) if line.startswith(header_start))
    assert set(lines[i + 1]) <= set("|-")
    out = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        out.append([c.strip() for c in line.strip("|").split("|")])
    return out


def test_multibit_report_from_synthetic_results(tmp_path):
    from cosim.study.multibit import render_text

    res = multibit_results(tmp_path / "res")
    text, claim, fig = render_text(res)
    assert text.startswith("# Binary, 2-bit and 4-bit networks on the same binary-cell arrays\n")
    assert "(in `$COSIM_CACHE/multibit`)" in text                   # results outside the checkout
    nets = _table(text, "| network | bits | weights |")
    assert [r[:2] for r in nets] == [["vgg-small", "1"], ["vgg-small", "2"]]
    assert nets[0][3] == "0.900 (N = 40)" and nets[1][3] == "0.700 (N = 40)" and nets[0][4] == "yes (first 4 images)"
    assert nets[1][2].startswith("`cosim train --bits 2 --init reference`, 1 epoch(s) of 500 training images, 12.5 s")
    drops = _table(text, "| network | tech | array | bits | N |")
    by = {(r[1], r[3]): r for r in drops}
    assert len(drops) == 4
    # 1-bit at the defaults: software 0.900, CiM 0.100 on the same 40 images: drop +80.0 pp, retained 0.00
    r = by[("sram8t", "1")]
    assert r[2] == "64x64" and r[4] == "40" and (r[5], r[6]) == ("0.900", "0.100")
    assert r[7].startswith("+80.0 [") and r[8].startswith("0.00 [")
    r = by[("sram8t (calibrated ADC references + BinSparX)", "2")]
    assert (r[5], r[6]) == ("0.700", "0.600") and r[7].startswith("+10.0 [") and r[8].startswith("0.83 [")
    lo, hi = (float(x) for x in r[7].split("[")[1].rstrip("]").split(","))
    assert lo <= 10.0 <= hi                                           # a CI around its mean
    paired = _table(text, "| network | tech | array | k |")
    assert len(paired) == 2 and all(p[3] == "2" and p[6] == "40" for p in paired)
    planes = _table(text, "| network | bits | act. plane j |")
    assert len(planes) == 1 + 2                                       # one plane for 1-bit, two for 2-bit
    assert planes[2][5] == "i=0: 11.0 / 30 / 50; i=1: 12.0 / 31 / 51"
    stats = _table(text, "| network | bits | mean rows on per read |")
    assert stats[1] == ["vgg-small", "2", "21.5", "13.25", "31", "25.0 %"]
    errs = _table(text, "| network | tech | bits | relative RMS output error")
    assert errs[0][3] == "0.125, 0.250" and errs[0][4] == "37.5 % (mean over layers; 1 images)"
    assert "* vgg-small 4-bit, sram8t, 64x64" in text                 # the grid's missing runs are listed
    # the claim: its row, its verdict (in the summary too) and the record the study report reads
    (row,) = _table(text, "| claim | cosim's figure | agreed? |")
    assert row[1] == f"{fig} (surrogate, shipped tables)" and row[2] == claim["agreed"]
    assert f"Claim verdict by the rule in \"Claim\": **{claim['agreed']}**." in text
    assert fig.startswith("vgg-small sram8t 64x64: drop 1/2/4-bit +80.0/+60.0/n/a pp, retained 0.00/0.00/n/a")
    assert claim["paired_comparisons"] == 2 and claim["source"] == "MULTIBIT.md"
    assert claim["agreed"] in ("agreed", "partly agreed", "not agreed", "inconclusive")
    # provenance: every command behind a result, the training commands, the render command, run times
    repro = text.split("## Reproduce", 1)[1].split("```")[1].splitlines()
    assert "cosim train --model vgg-small --bits 2 --epochs 1" in repro
    assert "scripts/multibit_study.py run --model vgg-small --bits 1 (adccal-bsx)" in repro
    assert repro[-1] == ".venv/bin/python scripts/multibit_study.py render"
    assert _table(text, "| network | bits | tech | images | threads | seconds |")[0][-1] == "2.00"
    assert text.endswith("then (`run`, which redoes every result whose checkpoint changed, then `render`).\n")


def test_multibit_report_leaves_out_stale_results_and_refuses_no_results(tmp_path):
    from cosim.study.multibit import render_text

    res = multibit_results(tmp_path / "res", n=20)
    p = res / "vgg-small_b2_sram8t_64.json"
    r = json.loads(p.read_text())
    r["provenance"]["checkpoint_sha256"] = "f" * 64                  # made from another network
    p.write_text(json.dumps(r))
    text, claim, _ = render_text(res)
    assert "left out (1): `vgg-small_b2_sram8t_64.json`" in text
    assert "* vgg-small 2-bit, sram8t, 64x64" in text and claim["paired_comparisons"] == 1
    with pytest.raises(SystemExit, match="no results in"):
        render_text(tmp_path / "empty")


def test_multibit_script_is_the_module(tmp_path):
    """scripts/multibit_study.py render (the command docs/MULTIBIT.md names) writes what render_text gives."""
    import subprocess
    import sys

    from cosim.study.multibit import render_text

    res = multibit_results(tmp_path / "res", n=12)
    doc = tmp_path / "MULTIBIT.md"
    script = Path(__file__).resolve().parent.parent / "scripts" / "multibit_study.py"
    run = subprocess.run([sys.executable, str(script), "render", "--results", str(res), "--doc", str(doc)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    text, claim, fig = render_text(res)
    assert doc.read_text() == text and json.loads(doc.with_suffix(".json").read_text()) == claim
    assert f"CLAIM_FIGURE: {fig} -> {claim['agreed']}" in run.stdout


# ------------------------------------------------------------------------------ validation (docs/VALIDATION.md)

def test_validation_report_from_synthetic_results():
    from cosim.study import validation_report as vr

    groups = [("without BinSparX", {"n_columns": 2048, "ideal": 0.998, "calibrated": 0.9951}),
              ("with BinSparX", {"n_columns": 2048, "ideal": 0.999, "calibrated": 0.997})]
    results = {"sram8t_64": (*validation_case(64, 0.9993, certified=0.9999), groups),
               "sram8t_64_r20ohm": (*validation_case(64, 0.9973, 20.0, certified=0.9992), []),
               "sram8t_256": (*validation_case(256, 0.9953), [])}
    results["sram8t_256"][1]["certified_skipped"] = "the table records no calibration residuals"
    old = ("# old\n" + vr.KEPT_BEGIN + "\nHAND-MEASURED\n" + vr.KEPT_END + "\n" + vr.DEV_BEGIN + "\nDEVICES\n"
           + vr.DEV_END + "\n" + vr.CERT_BEGIN + "\nCERTIFIED\n" + vr.CERT_END + "\n")
    prov = {"date_utc": "2026-01-02T03:04:05+00:00", "ngspice_version": "46", "solver": "klu",
            "machine": "x86_64, 2 cores (shared)"}
    text = vr.render(results, old, prov, "0.1.0+gtest")
    assert text.splitlines()[2] == ("Generated by `scripts/make_validation_report.py` (do not edit by hand). Code "
                                    "version 0.1.0+gtest, ngspice 46 (klu), x86_64, 2 cores (shared), "
                                    "2026-01-02T03:04:05+00:00.")
    assert "4,096 columns of every pattern family, seed 7373" in text
    # summary: the worst family per reference against the target of the row count (99.5 % at 64, 99 % at 256)
    summary = {r[0]: r for r in _table(text, "| table | wire (ohm per cell) |")}
    assert list(summary) == ["sram8t_64", "sram8t_64_r20ohm", "sram8t_256"]
    assert summary["sram8t_64"][1:] == ["10", "2,457,600 (2,400 points)", "99.83 % (near)", "99.53 % (near)", "0.03 %",
                                        "3-5, 9", "yes", "99.99 % (random) / 99.94 % (random)", "2.00 % / 30.00 %", "yes"]
    assert summary["sram8t_64_r20ohm"][1] == "20"
    assert summary["sram8t_64_r20ohm"][7:] == ["no (calibrated < 99.5 %)", "99.92 % (random) / 99.87 % (random)",
                                               "2.00 % / 30.00 %", "no (calibrated < 99.9 %)"]
    assert summary["sram8t_256"][3:5] == ["99.43 % (near)", "99.13 % (near)"] and summary["sram8t_256"][7:] == [
        "yes", "not measured (the table records no calibration residuals)", "", ""]
    assert "Not validated in this run: sram8t_64_r2ohm, sram8t_64_r5ohm, sram8t_128," in text
    # each table's section: calibration, agreement per family and reference, network groups, per ON-count bins
    sec = text.split("## sram8t_64\n", 1)[1].split("\n## ", 1)[0]
    assert ("Table: `sram8t_64.parquet`, model moments-v3, term set compact, moment orders [1, 2, 3, 4], 19 terms, "
            "33 knots; calibrated from 2457600 samples (2400 points, 1234 s of ngspice), ngspice cross-check of 3 "
            "points: largest relative difference 6.0e-09, I_on = 12.346 uA, I_off = 0.15 nA, seed 0, "
            "code 0.1.0+gtest.") in sec
    fams = _table(sec, "| family | columns |")
    assert [r[0] for r in fams] == ["random", "skewed", "near", "network, without BinSparX", "network, with BinSparX"]
    assert fams[1][1:] == ["4096", "99.93 %", "99.63 %", "0.03 %", "66.09 % / 65.79 %", "12.35 %", "3-5, 9",
                           "99.99 % / 99.94 %, 2.00 % / 30.00 %"]
    assert fams[3][1:4] == ["2048", "99.80 %", "99.51 %"]
    bins = _table(sec, "| ON-count k |")
    assert bins[0][0] == "0-7" and bins[-1][0] == "56-64" and sum(int(b[1]) for b in bins) == sum(10 + k for k in range(65))
    assert "1 SPICE run(s) failed and are left out: did not converge" in sec
    assert "Warning: a test warning" in sec and "![sram8t_64](figures/validation_sram8t_64.png)" in sec
    r20 = text.split("## sram8t_64_r20ohm\n", 1)[1].split("\n## ", 1)[0]
    assert "figures/" not in r20                     # only the default-wire tables are plotted
    # hand-measured sections carried over, in their places; the reading with the targets met and missed
    assert text.index("HAND-MEASURED") < text.index("## Reading the numbers") < text.index("DEVICES") \
        < text.index("CERTIFIED")
    assert ("at their targets: sram8t_64 (99.53 %) and sram8t_256 (99.13 %); missed (worst family and reference): "
            "sram8t_64_r20ohm (99.33 %)") in text
    assert ("Certified reads at or above 99.9 % on every family with both references: sram8t_64 (99.94 %); below it: "
            "sram8t_64_r20ohm (99.87 %).") in text
    assert "| network, with BinSparX | 2048 | 99.90 % | 99.70 % | | | | | |" in text


def test_validation_section_of_a_reproducible_table_names_its_solver():
    """A table from scripts/make_tables.py keeps no solve seconds (they differ run to run): its section
    names the solver instead."""
    from cosim.study import validation_report as vr

    table, rep = validation_case()
    table.provenance = {**{k: v for k, v in table.provenance.items() if k != "spice_seconds"}, "solver": "exact-banded"}
    sec = "\n".join(vr._table_section("sram8t_64", table, rep))
    assert "calibrated from 2457600 samples (2400 points, solved by exact-banded), ngspice cross-check of 3 points" in sec
