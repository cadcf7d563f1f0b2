"""Validation report and the calibrate / validate command lines."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from cosim.bnn.layers import BinConv2d
from cosim.sweep.calibration import SweepConfig
from cosim.surrogate.fit import calibrate
from cosim.cli import main
from cosim.errors import InputError
from cosim.circuit.technology import get_technology
from cosim.surrogate.netslices import NetworkSource
from cosim.surrogate.validate import metrics, validate

pytestmark = pytest.mark.ngspice

KEYS = ("code_agreement", "mean_abs_code_error", "current_rel_rmse", "n_columns")


@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("cal")
    cfg = SweepConfig(tech=get_technology("resistor"), rows=16, cols=8, topology="decoupled", seed=0, vectors=8)
    calibrate(cfg, 4, d, progress=False, cache=False)
    return d / "table.parquet"


def _tiny_source(layers=None):
    """Two binary layers (72 and 54 unrolled rows: 5 and 4 tiles of 16 rows, the last ones partly unused),
    weights skewed to +1 so BinSparX flips columns; synthetic images."""
    from cosim.bnn.datasets import synthetic_arrays

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), BinConv2d(8, 6),
                      nn.BatchNorm2d(6), BinConv2d(6, 12, stride=2))
    with torch.no_grad():
        m[2].weight.copy_(torch.where(torch.rand(6, 8, 3, 3) < 0.7, 1.0, -1.0))
        m[4].weight.copy_(torch.where(torch.rand(12, 6, 3, 3) < 0.35, 1.0, -1.0))
        m[3].bias.fill_(0.4)
    images, _ = synthetic_arrays(1, seed=3)
    return NetworkSource(m.eval(), images[:3], name="tiny", layers=layers, provenance={"checkpoint": "in memory"})


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
    assert again["provenance"]["spice_runs_reused"] == again["provenance"]["spice_runs"] == 2
    assert rep["failed_runs"] == [] and rep["provenance"]["spice_failed"] == 0
    with pytest.raises(InputError, match="unknown pattern family 'nets'"):
        validate(table_path, patterns=["nets"], n_columns=8, vectors=2, cols=2)


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


def test_network_patterns_are_real_layer_slices_with_and_without_binsparx():
    from cosim.bnn.datasets import to_tensor
    from cosim.study.skew import unfold_pm1, weight_matrix_pm1

    src = _tiny_source()
    assert src.layers == ["2", "4"]
    rows, vectors, cols = 16, 5, 4
    runs = [src.sample(rows, r, seed=1, vectors=vectors, cols=cols) for r in range(4)]
    # runs cycle through the layers, and every layer is seen with and without BinSparX within 2L runs
    assert [(i["layer"], i["binsparx"]) for _, _, i in runs] == [("2", False), ("4", True), ("2", True), ("4", False)]
    # deterministic by seed; another seed draws other slices
    again = src.sample(rows, 1, seed=1, vectors=vectors, cols=cols)
    assert np.array_equal(again[0], runs[1][0]) and np.array_equal(again[1], runs[1][1]) and again[2] == runs[1][2]
    other = [src.sample(rows, r, seed=2, vectors=vectors, cols=cols)[2] for r in range(4)]
    assert [o["positions"] for o in other] != [i["positions"] for _, _, i in runs]
    # a plain run is exactly the layer's unrolled input and weight bits (checked against an independent im2col)
    captured = {}
    layer = dict(src.model.named_modules())["2"]
    h = layer.register_forward_pre_hook(lambda mod, inp: captured.setdefault("x", mod.binary_input(inp[0])))
    with torch.no_grad():
        src.model(to_tensor(src.images))
    h.remove()
    xv = unfold_pm1(captured["x"], (3, 3), (1, 1))                       # (M, 72) +-1
    wm = weight_matrix_pm1(layer)                                        # (72, 6) +-1
    x, w, info = runs[0]
    t, real = info["row_tile"], info["real_rows"]
    assert info["layer_rows"] == 72 and info["row_tiles"] == 5 and real == min(16, 72 - 16 * t)
    ref_x = (xv[info["positions"], 16 * t:16 * t + real] > 0).numpy().astype(np.uint8)
    ref_w = (wm[16 * t:16 * t + real][:, info["columns"]] > 0).numpy().astype(np.uint8)
    assert x.shape == (vectors, rows) and w.shape == (rows, cols) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[:, :real], ref_x)
    np.testing.assert_array_equal(w[:real], ref_w)
    assert not x[:, real:].any() and not w[real:].any()                   # unused rows of the tile are off
    # a BinSparX run: every applied sub-vector and stored column holds at most half its real rows on
    for x, w, info in runs[1:3]:
        real = info["real_rows"]
        assert (x.sum(axis=1) <= real // 2).all() and (w.sum(axis=0) <= real // 2).all()
        assert not x[:, real:].any() and not w[real:].any()
    assert runs[2][2]["flipped_columns"] > 0                               # the +1-skewed layer's columns flip
    with pytest.raises(InputError, match="unknown binary layer"):
        _tiny_source(layers=["0"])


def test_validate_network_family_records_where_the_slices_come_from(table_path, tmp_path):
    src = _tiny_source()
    rep = validate(table_path, patterns=["network", "random"], n_columns=64, vectors=4, cols=8, network=src,
                   cache=tmp_path / "cache")
    sec = rep["patterns"]["network"]
    assert sec["n_columns"] == 64 and sec["failed_runs"] == 0 and rep["n_columns"] == 128
    assert all(k in sec for k in KEYS) and "count_only" in sec["baselines"]
    runs = rep["network"]["runs"]
    assert [(r["run"], r["layer"], r["binsparx"]) for r in runs] == [(0, "2", False), (1, "4", True)]
    assert rep["network"]["source"]["network"] == "tiny" and rep["network"]["source"]["images"] == 3
    prov = rep["provenance"]
    assert prov["network"] == "tiny" and prov["network_layers"] == ["2", "4"] and prov["patterns"] == ["network", "random"]
    assert prov["network_images_sha256"] == src.describe()["images_sha256"]
    json.dumps(rep, default=str)
    # the same points again: all from the SPICE point cache, same numbers
    again = validate(table_path, patterns=["network", "random"], n_columns=64, vectors=4, cols=8, network=src,
                     cache=tmp_path / "cache")
    assert again["current_rel_rmse"] == rep["current_rel_rmse"] and again["patterns"]["network"] == sec


def test_a_failed_spice_run_is_reported_not_dropped(table_path, tmp_path, monkeypatch):
    import cosim.sweep.points as sweep

    real = sweep.run_robust
    calls = []

    def second_fails(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise sweep.NonConvergenceError("array: did not converge with any convergence aid (test)")
        return real(*a, **k)

    monkeypatch.setattr(sweep, "run_robust", second_fails)
    rep = validate(table_path, patterns=["random"], n_columns=96, vectors=4, cols=8, cache=False)
    assert rep["n_columns"] == 64 and rep["patterns"]["random"]["failed_runs"] == 1
    assert rep["failed_runs"] == [{"family": "random", "run": 1, "reason": "array: did not converge with any "
                                   "convergence aid (test)"}]
    assert any("1 of 3 SPICE runs failed" in w for w in rep["warnings"])
    from cosim.surrogate.validate import summary_line
    assert "1 SPICE run(s) failed" in summary_line(rep)


@pytest.mark.shared
def test_cli_network_patterns_from_the_reference_vgg(table_path, tmp_path, capsys):
    """The reference VGG-small weights (shared/models) on two synthetic CIFAR-format test images."""
    from cosim.bnn.datasets import write_synthetic
    data = write_synthetic(tmp_path / "data", n_train_per_class=1, n_test_per_class=1)
    main(["validate", "--table", str(table_path), "--patterns", "network", "--n", "32", "--vectors", "4",
          "--cols", "8", "--images", "2", "--layers", "2,12", "--data", str(data), "--no-cache", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rep["n_columns"] == 32 and rep["network"]["source"]["network"] == "vgg-small"
    assert rep["network"]["source"]["checkpoint"].endswith("vgg_small.pt")
    assert len(rep["network"]["source"]["checkpoint_sha256"]) == 64
    assert [r["layer"] for r in rep["network"]["runs"]] == ["2"] and rep["provenance"]["network_layers"] == ["2", "12"]
    code, _, err = _run(["validate", "--table", str(table_path), "--patterns", "network", "--layers", "99",
                         "--data", str(data)], capsys)
    assert code == 1 and "unknown binary layer(s) 99 of vgg-small" in err and err.count("\n") == 1
    code, _, err = _run(["validate", "--table", str(table_path), "--images", "3"], capsys)
    assert code == 1 and "add network to --patterns" in err


def test_placement_patterns_put_the_conducting_cells_where_the_family_says():
    from cosim.sweep.calibration import placement_patterns

    rows, cols, vectors = 16, 6, 5
    for fam in ("far", "near"):
        counts = set()
        for r in range(3):
            x, w = placement_patterns(fam, np.random.default_rng([1, r]), rows, cols, vectors)
            assert x.shape == (vectors, rows) and w.shape == (rows, cols) and x[0].all()
            for v in range(vectors):
                for c in range(cols):
                    on = np.flatnonzero(x[v] & w[:, c])
                    counts.add(on.size)
                    want = np.arange(on.size) if fam == "far" else np.arange(rows - on.size, rows)
                    assert np.array_equal(on, want), (fam, v, c, on)       # one block at that end
        assert len(counts) >= 12
        # R + 1 columns: every count 0..R in vector 0 (every row driven), once each
        x, w = placement_patterns(fam, np.random.default_rng(9), rows, rows + 1, 2)
        assert sorted((x[0].astype(int) @ w).tolist()) == list(range(rows + 1))
    x, w = placement_patterns("alternate", np.random.default_rng(3), rows, cols, vectors)
    for v in range(vectors):
        window = np.flatnonzero(x[v])
        assert window.size and np.array_equal(window, np.arange(window[0], window[-1] + 1))
        for c in range(cols):
            on = np.flatnonzero(x[v] & w[:, c])
            assert (np.diff(on) == 2).all() and (on.size == 0 or on[0] - window[0] < 2)
            assert on.size == window[(window % 2) == np.flatnonzero(w[:, c])[0] % 2].size
    x, w = placement_patterns("dense", np.random.default_rng(4), 256, 32, 16)
    frac = (x.astype(int) @ w) / 256
    assert frac.min() >= 0.85 and frac.mean() > 0.9
    with pytest.raises(InputError, match="unknown placement family 'sparse'"):
        placement_patterns("sparse", np.random.default_rng(0), rows, cols, vectors)


def test_per_count_margin_marks_counts_whose_error_exceeds_the_decision_margin():
    from cosim.surrogate.adc import ADC
    from cosim.surrogate.validate import _per_count_margins

    a = ADC(references="ideal", i_cell_a=1.0, rows=4)
    k = np.array([1, 1, 2, 2, 4])
    spice = k.astype(float)
    pred = spice + np.array([0.1, -0.2, 0.6, 0.0, 0.3])
    per = _per_count_margins(a, k, pred, spice, a.digitize(pred), a.digitize(spice))
    assert per["1"] == {"code_agreement": 1.0, "n_columns": 2, "max_abs_error_a": pytest.approx(0.2),
                        "margin_a": 0.5, "near_level_fraction": 0.0, "fragile": False}
    # a SPICE current 0.1 from a decision level (1.5) with an error of 0.2 at its count: near a level
    per = _per_count_margins(a, k, pred, spice + np.array([0.4, 0, 0, 0, 0]), a.digitize(pred),
                             a.digitize(spice + np.array([0.4, 0, 0, 0, 0])))
    assert per["1"]["near_level_fraction"] == 0.5 and per["1"]["max_abs_error_a"] == pytest.approx(0.3)
    assert per["2"]["fragile"] and per["2"]["code_agreement"] == 0.5 and per["2"]["max_abs_error_a"] == pytest.approx(0.6)
    assert per["4"]["margin_a"] == 0.5 and not per["4"]["fragile"]   # the top code has one neighbour


def test_validate_placement_families_report_both_references_side_by_side(table_path, capsys):
    from cosim.surrogate.validate import agreement_table

    fams = ["far", "near", "alternate", "dense"]
    rep = validate(table_path, patterns=fams, n_columns=32, vectors=4, cols=8, cache=False)
    assert list(rep["patterns"]) == fams and rep["n_columns"] == 128
    for fam in fams:
        sec = rep["patterns"][fam]
        assert sec["n_columns"] == 32 and set(sec["by_adc"]) == {"ideal", "calibrated"}
        for ref in ("ideal", "calibrated"):
            per = sec["by_adc"][ref]["per_on_count"]
            assert sum(v["n_columns"] for v in per.values()) == 32
            assert sec["by_adc"][ref]["fragile_counts"] == [int(c) for c, v in per.items()
                                                            if v["max_abs_error_a"] > v["margin_a"]]
            ok = sum(v["code_agreement"] * v["n_columns"] for v in per.values()) / 32
            assert ok == pytest.approx(sec["by_adc"][ref]["surrogate"]["code_agreement"])
    i_cell = rep["table"]["i_cell_a"]
    assert rep["by_adc"]["ideal"]["per_on_count"]["3"]["margin_a"] == pytest.approx(0.5 * i_cell)
    assert max(map(int, rep["patterns"]["alternate"]["by_adc"]["ideal"]["per_on_count"])) <= 8
    assert min(map(int, rep["patterns"]["dense"]["by_adc"]["ideal"]["per_on_count"])) >= 11
    text = agreement_table(rep)
    assert "surrogate ideal" in text and "surrogate calibrated" in text
    assert [ln.split()[0] for ln in text.splitlines()[1:6]] == fams + ["all"]
    main(["validate", "--table", str(table_path), "--patterns", "far,dense", "--n", "8", "--vectors", "4",
          "--cols", "2", "--no-cache"])
    out = capsys.readouterr().out
    assert "surrogate calibrated" in out and "\nfar " in out and "\ndense " in out
    assert "certified calibrated" in out and "re-solved" in out
    main(["validate", "--table", str(table_path), "--patterns", "far", "--n", "8", "--vectors", "4", "--cols", "2",
          "--no-cache", "--no-certified"])
    out = capsys.readouterr().out
    assert "certified" not in out.splitlines()[1] and "certified reads: not measured (not asked for)" in out


def test_certified_reads_against_fresh_spice_points(table_path, monkeypatch):
    """Certified reads' codes are compared with ngspice's per family and reference: with a safety factor
    that sends every column to the exact solver they must all agree (the solver is exact on a resistor array),
    and with the default factor they re-solve only some and agree at least where the surrogate does."""
    import cosim.cim.arrays as arrays

    rep = validate(table_path, patterns=["random", "far"], n_columns=64, vectors=8, cols=8, cache=False)
    for ref in ("ideal", "calibrated"):
        for sec in (rep, *rep["patterns"].values()):
            c = sec["by_adc"][ref]["certified"]
            assert c["n_columns"] == sec["n_columns"] and 0 <= c["resolved_fraction"] < 1
            assert c["code_agreement"] >= sec["by_adc"][ref]["surrogate"]["code_agreement"]
    assert "certified_skipped" not in rep and rep["provenance"]["certify_safety"]
    monkeypatch.setattr(arrays, "CERTIFY_READ_SAFETY", 1e9)
    every = validate(table_path, patterns=["random", "far"], n_columns=64, vectors=8, cols=8, cache=False)
    for ref in ("ideal", "calibrated"):
        c = every["by_adc"][ref]["certified"]
        assert c["resolved_fraction"] == 1.0 and c["code_agreement"] == 1.0 and c["mean_abs_code_error"] == 0.0
    assert validate(table_path, patterns=["random"], n_columns=8, vectors=4, cols=2, cache=False,
                    certified=False)["certified_skipped"] == "not asked for"
    # a selected ADC the same as the calibrated one: its certified reads are the calibrated ones, re-solved once
    from cosim.surrogate.adc import ADC
    from cosim.surrogate.validate import _certifiers
    sel = validate(table_path, patterns=["random"], n_columns=32, vectors=8, cols=4, cache=False,
                   adc=ADC(references="calibrated"))
    assert sel["by_adc"]["selected"]["certified"] == sel["by_adc"]["calibrated"]["certified"]
    from cosim.surrogate.tables import load_table
    arrs, _ = _certifiers(load_table(table_path), {"selected": ADC(references="calibrated"),
                                                   "ideal": ADC(references="ideal"), "calibrated": ADC(references="calibrated")})
    assert arrs["selected"] is arrs["calibrated"] and arrs["ideal"] is not arrs["calibrated"]
