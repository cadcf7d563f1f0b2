"""The BinSparX study: config, cell cache, Wilson intervals, skew statistics, report writing, the command."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cosim.bnn.layers import BinConv2d
from cosim.errors import InputError, TableError
from cosim.study import report, runner, skew, stats
from cosim.study.config import Cell, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------- config

def test_defaults_are_the_full_grid_and_the_shipped_config_agrees():
    d = load_config()
    assert d.networks == ("vgg-small", "resnet18") and d.technologies == ("sram8t", "reram1t1r")
    assert d.rows == (64, 128, 256) and d.r_wire_ohm == (2.0, 5.0, 10.0, 20.0)
    cells = d.cells()
    n_array_variants = len([v for v in d.variants if v != "software"])
    assert len(cells) == 2 + 2 * 2 * 3 * 4 * n_array_variants
    f = load_config(REPO / "configs" / "study.toml")
    strip = lambda c: {k: v for k, v in dataclasses.asdict(c).items() if k not in ("source", "raw")}
    assert strip(f) == strip(d)
    assert strip(load_config(REPO / "configs" / "study.toml", quick=True)) == strip(load_config(quick=True))


def test_quick_subset():
    q = load_config(quick=True)
    assert q.quick and q.networks == ("vgg-small",) and q.technologies == ("sram8t",)
    assert q.rows == (64,) and q.r_wire_ohm == (10.0,) and q.limit < 10000
    cells = q.cells()
    assert cells[0].variant == "software" and cells[0].technology is None
    arr = [c for c in cells if c.variant != "software"]
    assert all(c.adc_bits == 7 and c.cols == 64 for c in arr)
    assert all(c.pwa_rows == 16 for c in load_config().cells() if c.variant == "pwa")
    assert all(c.pwa_rows is None for c in arr if not c.flags["pwa"])


def test_quick_overrides_from_file(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[run]\nlimit = 300\n[quick]\nlimit = 20\nvariants = ["software", "nonideal"]\n')
    assert load_config(p).limit == 300
    q = load_config(p, quick=True)
    assert q.limit == 20 and q.variants == ("software", "nonideal")


def test_json_config(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"grid": {"rows": [64], "networks": ["VGG_small"]}}))
    c = load_config(p)
    assert c.rows == (64,) and c.networks == ("vgg-small",)


@pytest.mark.parametrize("raw, words", [
    ({"grdi": {}}, "unknown section: grdi"),
    ({"grid": {"row": [64]}}, "unknown key in [grid]: row"),
    ({"run": {"colz": 3}}, "unknown key in [run]: colz"),
    ({"quick": {"data": "x"}}, "unknown key in [quick]: data"),
    ({"grid": {"rows": [0]}}, "rows must be an integer"),
    ({"grid": {"rows": "128"}}, "rows must be a non-empty list"),
    ({"grid": {"rows": []}}, "rows must be a non-empty list"),
    ({"grid": {"networks": ["alexnet"]}}, "unknown network 'alexnet'"),
    ({"grid": {"technologies": ["dram"]}}, "unknown technologie 'dram'"),
    ({"grid": {"variants": ["magic"]}}, "unknown variant 'magic'"),
    ({"grid": {"r_wire_ohm": [-1.0]}}, "r_wire_ohm values must be numbers"),
    ({"run": {"limit": 0}}, "limit must be an integer"),
    ({"run": {"limit": 20000}}, "limit must be an integer"),
    ({"run": {"adc_bits": True}}, "adc_bits must be an integer"),
    ({"run": {"device": "tpu"}}, "device must be"),
    ({"paths": {"data": 3}}, "data must be a string"),
    ({"grid": []}, "[grid] must be a table"),
])
def test_bad_configs_are_one_line_input_errors(raw, words):
    with pytest.raises(InputError) as e:
        parse_config(raw)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    p = tmp_path / "bad.toml"
    p.write_text("[grid\nrows = [")
    with pytest.raises(InputError) as e:
        load_config(p)
    assert "not valid TOML" in str(e.value) and "\n" not in str(e.value)


def test_cli_bad_config_is_one_error_line(tmp_path, capsys):
    from cosim.cli import main
    p = tmp_path / "bad.toml"
    p.write_text("[grid]\nrows = [3000000]\n")
    with pytest.raises(SystemExit) as e:
        main(["report", "--config", str(p), "--out", str(tmp_path / "o")])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "rows must be an integer" in err and "\n" not in err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------------- cache

def _ctx(tmp_path, **run):
    cfg = parse_config({"grid": {"networks": ["vgg-small"], "technologies": ["sram8t"], "rows": [64, 128],
                                 "r_wire_ohm": [10.0], "variants": ["software", "nonideal", "binsparx"]},
                        "run": {"limit": 10, **run}, "paths": {"cache": str(tmp_path / "cache")}})
    return runner.StudyContext(cfg)


def _payload(cell, ctx):
    return {"cell": cell.as_dict(), "inputs": "fixed"}


def test_finished_cells_are_never_recomputed(tmp_path):
    ctx = _ctx(tmp_path)
    cells = ctx.config.cells()
    calls = []

    def compute(cell, ctx):
        calls.append(cell)
        return {"accuracy": 0.5, "correct": 5, "n": 10, "label": cell.label()}

    first = runner.run_cells(cells, ctx, compute=compute, progress=False, payload=_payload)
    assert len(calls) == len(cells) == 5 and all(r.status == "computed" for r in first)
    second = runner.run_cells(cells, ctx, compute=compute, progress=False, payload=_payload)
    assert len(calls) == 5 and all(r.status == "cached" for r in second)
    assert [r.result["label"] for r in second] == [c.label() for c in cells]
    # a different key (another input) is a different cell
    runner.run_cells(cells[:1], ctx, compute=compute, progress=False,
                     payload=lambda c, x: {**_payload(c, x), "inputs": "changed"})
    assert len(calls) == 6


def test_interrupted_run_resumes(tmp_path):
    ctx = _ctx(tmp_path)
    cells = ctx.config.cells()
    calls = []

    def flaky(cell, ctx):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(cell.label())
        return {"accuracy": 1.0, "correct": 10, "n": 10}

    with pytest.raises(KeyboardInterrupt):
        runner.run_cells(cells, ctx, compute=flaky, progress=False, payload=_payload)
    assert len(calls) == 3
    done = list(calls)
    calls.clear()
    res = runner.run_cells(cells, ctx, compute=lambda c, x: calls.append(c.label()) or {"accuracy": 1.0, "correct": 10, "n": 10},
                           progress=False, payload=_payload)
    assert calls == [c.label() for c in cells if c.label() not in done]
    assert [r.status for r in res] == ["cached"] * 3 + ["computed"] * 2
    assert not list((ctx.cache_root / "cells").glob("*.part"))


def test_a_cell_that_cannot_run_is_reported_and_not_cached(tmp_path):
    ctx = _ctx(tmp_path)
    cells = ctx.config.cells()[:2]

    def fails(cell, ctx):
        raise TableError("no table for this wire resistance")

    res = runner.run_cells(cells, ctx, compute=fails, progress=False, payload=_payload)
    assert [r.status for r in res] == ["not run", "not run"] and "no table" in res[0].reason
    res = runner.run_cells(cells, ctx, compute=lambda c, x: {"accuracy": 0.1, "correct": 1, "n": 10},
                           progress=False, payload=_payload)
    assert [r.status for r in res] == ["computed", "computed"]


def test_damaged_cache_entry_is_recomputed(tmp_path):
    ctx = _ctx(tmp_path)
    cell = ctx.config.cells()[0]
    n = []
    comp = lambda c, x: n.append(1) or {"accuracy": 0.1, "correct": 1, "n": 10}
    r = runner.run_cells([cell], ctx, compute=comp, progress=False, payload=_payload)[0]
    runner.CellStore(ctx.cache_root).path(r.key).write_text("{trunc")
    assert runner.run_cells([cell], ctx, compute=comp, progress=False, payload=_payload)[0].status == "computed"
    assert len(n) == 2


def test_key_covers_what_determines_a_cell():
    c = Cell(network="vgg-small", variant="nonideal", technology="sram8t", rows=128, cols=128, r_wire_ohm=10.0,
             adc_bits=8, limit=100)
    base = {"cell": c.as_dict(), "weights_sha256": "a", "data_sha256": "b", "table_sha256": "c", "code": "d"}
    k = runner.make_key(base)
    assert runner.make_key(dict(base)) == k
    for field, value in [("weights_sha256", "x"), ("data_sha256", "x"), ("table_sha256", "x"), ("code", "x"),
                         ("cell", dataclasses.replace(c, r_wire_ohm=5.0).as_dict()),
                         ("cell", dataclasses.replace(c, limit=101).as_dict())]:
        assert runner.make_key({**base, field: value}) != k
    assert len(runner.source_hash()) == 64


# ------------------------------------------------------------------------------------------- Wilson

def test_wilson_interval():
    lo, hi = report.wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = report.wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = report.wilson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.7225, abs=1e-4)
    lo, hi = report.wilson(8500, 10000)
    assert lo < 0.85 < hi and hi - lo == pytest.approx(2 * 1.96 * math.sqrt(0.85 * 0.15 / 10000), rel=0.01)
    with pytest.raises(ValueError):
        report.wilson(11, 10)
    with pytest.raises(ValueError):
        report.wilson(0, 0)


# ------------------------------------------------------------------------------------------- skew

def _tiny_model(seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(BinConv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), BinConv2d(4, 5, 3, stride=2, padding=1))
    with torch.no_grad():
        m[0].weight.copy_(torch.where(torch.rand(4, 3, 3, 3) < 0.7, 1.0, -1.0))   # skewed to +1
        m[2].weight.copy_(torch.where(torch.rand(5, 4, 3, 3) < 0.4, 1.0, -1.0))
        m[1].bias.fill_(0.5)
    return m.eval()


def _stub_skew(rows: int) -> dict:
    """Skew statistics of the tiny model in the form cosim.study.runner.skew_for returns (labelled ``rows``)."""
    layers = skew.measure_skew(_tiny_model(), torch.randn(2, 3, 6, 6), rows=8)
    return {"network": "vgg-small", "rows": rows, "images": 2, "layers": [l.summary() for l in layers],
            "overall": skew.overall_summary(layers),
            "hist": {s: skew.total_histogram(layers, s).tolist() for s in skew.SCHEMES},
            "shapes": [{"name": l.name, "k": l.n, "n": l.cout, "positions": l.positions} for l in layers]}


def _brute_counts(x, w, rows, scheme):
    """Per-element loops: AND-count of each (vector, tile, column) under a scheme."""
    m, n = x.shape
    cout = w.shape[1]
    t = math.ceil(n / rows)
    out = np.zeros((m, t, cout), dtype=int)
    for ti in range(t):
        r0, r1 = ti * rows, min(n, (ti + 1) * rows)
        nr = r1 - r0
        for mi in range(m):
            xs = x[mi, r0:r1].copy()
            if scheme == "minus":
                xs = -xs
            if scheme in ("bsx-subvectors", "binsparx") and 2 * (xs > 0).sum() > nr:
                xs = -xs
            for c in range(cout):
                ws = w[r0:r1, c].copy()
                if scheme == "minus":
                    ws = -ws
                if scheme in ("bsx-columns", "binsparx") and 2 * (ws > 0).sum() > nr:
                    ws = -ws
                out[mi, ti, c] = int(((xs > 0) & (ws > 0)).sum())
    return out


def test_encodings_match_brute_force_and_keep_the_dot_product():
    g = torch.Generator().manual_seed(3)
    x = torch.where(torch.rand(7, 11, generator=g) < 0.7, 1.0, -1.0)
    w = torch.where(torch.rand(11, 3, generator=g) < 0.3, 1.0, -1.0)
    rows = 4
    n_real = torch.tensor([4.0, 4.0, 3.0])
    for s in skew.SCHEMES:
        xb, wb, xf, wf = skew.encode(x, w, rows, s)
        c = skew.on_counts(xb, wb)
        assert np.array_equal(c.round().int().numpy(), _brute_counts(x.numpy(), w.numpy(), rows, s)), s
        assert torch.equal(skew.signed_from_counts(c, xb, wb, xf, wf, n_real), x @ w), s
        assert float(xb[:, 2, 3].abs().sum()) == 0 and float(wb[2, 3].abs().sum()) == 0  # unused row stays off
    xb, wb, _, _ = skew.encode(x, w, rows, "plus")
    fast = skew.scheme_counts(xb, wb, skew.real_rows(11, rows))
    assert torch.equal(skew.real_rows(11, rows), n_real)
    for s in skew.SCHEMES:
        xb_s, wb_s, xf, wf = skew.encode(x, w, rows, s)
        c, fx, fw = fast[s]
        assert torch.equal(c, skew.on_counts(xb_s, wb_s)) and torch.equal(fx, xf) and torch.equal(fw, wf), s


def test_all_plus_column_is_emptied_by_binsparx():
    x = torch.ones(1, 4)
    w = torch.ones(4, 1)
    counts = {s: int(skew.on_counts(*skew.encode(x, w, 4, s)[:2]).sum()) for s in skew.SCHEMES}
    assert counts == {"plus": 4, "minus": 0, "bsx-columns": 0, "bsx-subvectors": 0, "binsparx": 0}
    # 3 of 4 inputs +1: the sub-vector is flipped; 2 of 4 weights +1: the column is not
    x = torch.tensor([[1.0, 1.0, 1.0, -1.0]])
    w = torch.tensor([[1.0], [1.0], [-1.0], [-1.0]])
    c = {s: int(skew.on_counts(*skew.encode(x, w, 4, s)[:2]).sum()) for s in skew.SCHEMES}
    assert c == {"plus": 2, "minus": 1, "bsx-columns": 2, "bsx-subvectors": 0, "binsparx": 0}


def test_measure_skew_on_a_tiny_network():
    m = _tiny_model()
    g = torch.Generator().manual_seed(1)
    images = torch.randn(5, 3, 6, 6, generator=g)
    layers = skew.measure_skew(m, images, rows=8, batch_size=2)
    assert [l.name for l in layers] == ["0", "2"]
    # brute force the first layer: the unrolled inputs in (kh, kw, c_in) order
    xb = m[0].binary_input(images)
    vecs = []
    for b in range(5):
        for i in range(6):
            for j in range(6):
                vecs.append(xb[b, :, i:i + 3, j:j + 3].permute(1, 2, 0).reshape(-1))
    x = torch.stack(vecs).detach()
    w = m[0].binary_weight().permute(0, 2, 3, 1).reshape(4, -1).t().detach()
    l0 = layers[0]
    assert l0.positions == 36 and l0.vectors == 180 and l0.n == 27 and l0.cout == 4
    assert l0.weight_plus == pytest.approx(float((w > 0).float().mean()))
    assert l0.act_plus == pytest.approx(float((x > 0).float().mean()))
    for s in skew.SCHEMES:
        brute = _brute_counts(x.numpy(), w.numpy(), 8, s)
        assert np.array_equal(l0.hist[s], np.bincount(brute.ravel(), minlength=9)), s
    assert layers[1].positions == 9 and layers[1].vectors == 45
    ov = skew.overall_summary(layers)
    # weights of layer 0 skewed to +1: BinSparX's column flips must remove conducting cells
    assert ov["on_cell_change_vs_plus[bsx-columns]"] < 0
    assert 0 < ov["flipped_column_fraction"] <= 1
    s = l0.summary()
    assert s["on_cell_fraction[plus]"] == pytest.approx(l0.on_cells("plus") / (l0.act_rows_sum * 4))


def test_mirrored_model_keeps_the_software_output():
    m = _tiny_model()
    x = torch.randn(3, 3, 6, 6)
    mm = runner.mirrored(m)
    assert isinstance(mm[0], runner.MirroredBinConv2d)
    assert torch.equal(mm(x), m(x))
    assert torch.equal(mm[0].binary_weight(), -m[0].binary_weight())


# ------------------------------------------------------------------------------------------- report

def _fake_results(tmp_path, quick=True):
    cfg = parse_config({"grid": {"networks": ["vgg-small"], "technologies": ["sram8t"], "rows": [8],
                                 "r_wire_ohm": [5.0, 10.0],
                                 "variants": ["software", "nonideal", "mirrored", "binsparx", "pwa"]},
                        "run": {"limit": 200, "cols": 4}})
    cells = cfg.cells()
    accs = {"software": 0.86, "nonideal": 0.40, "mirrored": 0.35, "binsparx": 0.85, "pwa": 0.6}
    out = []
    for c in cells:
        if c.variant == "pwa" and c.r_wire_ohm == 5.0:
            out.append(runner.CellResult(c, "not run", None, reason="no lookup table calibrated for 5 ohm"))
            continue
        k = int(round(accs[c.variant] * 200)) - (10 if c.r_wire_ohm == 5.0 else 0)
        r = {"accuracy": k / 200, "correct": k, "n": 200, "seconds": 1.0,
             "provenance": {"code_version": "test", "table": "/x/sram8t_8_decoupled.parquet", "ngspice_version": "46"}}
        if c.variant != "software":
            r["stats"] = {"on_cell_fraction": 0.15, "mean_on_count": 1.2, "max_on_count": 5, "partial_sum_reduction": 0.1}
            r["array_energy_per_image_j"] = {"nonideal": 2e-9, "mirrored": 3e-9, "binsparx": 1.5e-9, "pwa": 2e-9}[c.variant]
        out.append(runner.CellResult(c, "computed", r, key="k"))
    sk = _stub_skew(rows=8)
    return report.StudyResults(config=cfg, cells=out, skew={("vgg-small", 8): sk}, seconds=3.0,
                               full_grid_cells=400 if quick else 0, not_in_run=["a/b/c"] if quick else [])


def test_report_on_a_tiny_fake_grid(tmp_path):
    res = _fake_results(tmp_path)
    path = report.write_report(res, tmp_path / "docs", command="cosim report --test")
    text = path.read_text()
    for section in ("## Claims of the paper against cosim", "## Accuracy", "### vgg-small on sram8t",
                    "## Skew", "## Energy, latency and area", "## Cells not run", "Component table"):
        assert section in text, section
    assert "86.00 [" in text and "40.00 [" in text            # software and non-ideal with their CIs
    assert "no lookup table calibrated for 5 ohm" in text
    # the claims: a 46-point drop (CI-separated) is "hurt badly"; BinSparX within 1 point of software
    claims = text.split("## Claims")[1].split("## Accuracy")[0]
    assert "| Non-idealities hurt CiM-BNN accuracy badly |" in claims
    assert "largest drop 51.00 points" in claims and "smallest 46.00 points" in claims and "| yes |" in claims
    assert "largest gain `nonideal` -> `binsparx` +45.00 [" in claims and "BinSparX alone at most +45.00 points" in claims
    assert "(unpaired: no per-image outcomes)" in claims          # the fake cells kept no per-image outcomes
    assert "not measured" not in claims.split("BinSparX reduces energy")[0]
    figs = sorted(p.name for p in (tmp_path / "docs" / "report").glob("*.png"))
    assert any(f.startswith("acc_vs_rows") for f in figs) and any(f.startswith("acc_vs_rwire") for f in figs)
    assert any(f.startswith("on_count_hist") for f in figs) and any(f.startswith("energy_") for f in figs)
    for f in figs:
        assert (tmp_path / "docs" / "report" / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"report/{f}" in text
    import pandas as pd
    df = pd.read_parquet(tmp_path / "docs" / "report" / "results.parquet")
    assert len(df) == len(res.cells) and set(df.status) == {"computed", "not run"}
    assert (df.ci_low.dropna() < df.accuracy.dropna()).all()
    costs = pd.read_csv(tmp_path / "docs" / "report" / "costs.csv")
    assert set(costs.variant) == {"nonideal", "mirrored", "binsparx"}
    prov = json.loads((tmp_path / "docs" / "report" / "provenance.json").read_text())
    assert prov["technology"] == ["sram8t"] and "code_version" in prov
    assert "vgg-small" in report.accuracy_summary(res)


def test_report_says_not_measured_without_data(tmp_path, monkeypatch):
    from cosim import paths
    monkeypatch.setattr(paths, "CHECKOUT_DIR", tmp_path / "checkout")   # no multi-bit study results either
    cfg = parse_config({"grid": {"networks": ["vgg-small"], "technologies": ["sram8t"], "rows": [8],
                                 "r_wire_ohm": [10.0], "variants": ["software", "nonideal", "binsparx"]}})
    cells = [runner.CellResult(c, "not run", None, reason="CiM inference is not available") for c in cfg.cells()]
    res = report.StudyResults(config=cfg, cells=cells, skew={}, seconds=1.0)
    text = report.write_report(res, tmp_path).read_text()
    claims = text.split("## Claims")[1].split("## Accuracy")[0]
    assert claims.count("not measured") >= 6
    assert "| yes |" not in claims and "| no |" not in claims


# ------------------------------------------------------------------------------------------- render only

def test_read_cached_cells_takes_results_of_other_code_versions_only_for_the_same_inputs(tmp_path, monkeypatch):
    """--from-cache: a cell takes the cached result whose payload matches in everything but the code hash; a
    result of other inputs (another table, say) or no result at all is "not run"; the newest of two wins."""
    import os

    ctx = _ctx(tmp_path)
    cells = ctx.config.cells()
    now = lambda c, x: {**_payload(c, x), "code": "this checkout"}
    monkeypatch.setattr(runner, "cell_payload", now)
    store = runner.CellStore(ctx.cache_root)

    def put(cell, code, acc, inputs="fixed", age=0.0):
        pay = {"cell": cell.as_dict(), "inputs": inputs, "code": code}
        path = store.put(runner.make_key(pay), {"payload": pay, "result": {"accuracy": acc, "correct": 1, "n": 10}})
        t = path.stat().st_mtime - age
        os.utime(path, (t, t))

    put(cells[0], "frozen worktree", 0.1)
    put(cells[1], "frozen worktree", 0.2, age=100.0)
    put(cells[1], "an older run", 0.3, age=200.0)       # older: not taken
    put(cells[2], "frozen worktree", 0.4, inputs="other table")
    (ctx.cache_root / "cells" / "junk.json").write_text("{not json")
    res = report.read_cached_cells(cells, ctx)
    assert [r.status for r in res] == ["cached", "cached", "not run", "not run", "not run"]
    assert [r.result["accuracy"] for r in res[:2]] == [0.1, 0.2]
    assert "not in the cell cache" in res[2].reason and "computes nothing" in res[2].reason
    # a cell cached by this very code is found the same way
    put(cells[3], "this checkout", 0.5)
    assert report.read_cached_cells(cells, ctx)[3].result["accuracy"] == 0.5


def _stub_study(monkeypatch, calls):
    """The report command with stub cells and skew statistics (no weights, data or tables needed)."""
    sk = _stub_skew(rows=64)

    def cells_not_run(cells, ctx, **kw):
        calls.append("run_cells")
        return [runner.CellResult(c, "not run", None, reason="stub") for c in cells]

    def cached(cells, ctx, committed=None):
        calls.append("read_cached_cells")
        return [runner.CellResult(c, "not run", None, reason="stub: not in the cell cache") for c in cells]

    monkeypatch.setattr(runner, "run_cells", cells_not_run)
    monkeypatch.setattr(runner, "skew_for", lambda net, rows, ctx, progress=False: dict(sk, network=net, rows=rows))
    monkeypatch.setattr(report, "read_cached_cells", cached)


def test_quick_report_does_not_overwrite_the_committed_report(tmp_path, monkeypatch, capsys):
    """`cosim report --quick` writes cosim-report/REPORT.md in the working directory (not docs/), says where,
    and names no --out in the command it records; --out still overrides; the grid's default stays docs/."""
    from cosim.cli import main
    from cosim.commands.report import GRID_OUT, QUICK_OUT

    calls = []
    _stub_study(monkeypatch, calls)
    monkeypatch.chdir(tmp_path)
    main(["report", "--quick", "--no-progress"])
    out = capsys.readouterr().out
    assert (tmp_path / QUICK_OUT / "REPORT.md").is_file() and not (tmp_path / "docs").exists()
    assert f"wrote {tmp_path / QUICK_OUT / 'REPORT.md'}" in out
    prov = json.loads((tmp_path / QUICK_OUT / "report" / "provenance.json").read_text())
    assert prov["command"] == "cosim report --quick"
    main(["report", "--quick", "--no-progress", "--out", "elsewhere"])
    assert (tmp_path / "elsewhere" / "REPORT.md").is_file()
    assert json.loads((tmp_path / "elsewhere" / "report" / "provenance.json").read_text())["command"] == \
        "cosim report --quick --out elsewhere"
    cfg = tmp_path / "tiny.toml"
    cfg.write_text('[grid]\nnetworks = ["vgg-small"]\ntechnologies = ["sram8t"]\nrows = [64]\nr_wire_ohm = [10.0]\n'
                   'variants = ["software", "nonideal"]\n')
    main(["report", "--config", str(cfg), "--no-progress"])
    assert (tmp_path / GRID_OUT / "REPORT.md").is_file()
    assert calls == ["run_cells"] * 3
    quick_text = (tmp_path / QUICK_OUT / "REPORT.md").read_text()
    assert "100-image illustration" in quick_text and "`docs/REPORT.md`" in quick_text
    assert "illustration" not in (tmp_path / GRID_OUT / "REPORT.md").read_text()
    # ignored by git where the README runs it (the repository root)
    assert f"/{QUICK_OUT}/" in (REPO / ".gitignore").read_text().split()


def test_from_cache_computes_nothing(tmp_path, monkeypatch):
    from cosim.cli import main

    calls = []
    _stub_study(monkeypatch, calls)
    monkeypatch.chdir(tmp_path)
    main(["report", "--quick", "--from-cache", "--no-progress", "--out", "o"])
    assert calls == ["read_cached_cells"]
    text = (tmp_path / "o" / "REPORT.md").read_text()
    assert "`cosim report --quick --from-cache --out o`" in text and "stub: not in the cell cache" in text
    with pytest.raises(SystemExit):
        main(["report", "--quick", "--from-cache", "--workers", "2", "--out", "o"])


# ------------------------------------------------------------------------------------------- end to end

@pytest.mark.shared
def test_quick_report_end_to_end_on_a_tiny_subset(tmp_path, capsys):
    """The real command on 4 test images and 1 skew image, software / non-ideal / BinSparX, then again
    from the cache."""
    import pandas as pd

    from cosim.cli import main
    cfg = tmp_path / "tiny.toml"
    cfg.write_text('[quick]\nvariants = ["software", "nonideal", "binsparx"]\nlimit = 4\nskew_images = 1\n'
                   f'[paths]\ncache = "{tmp_path / "cache"}"\n')
    out = tmp_path / "docs"
    main(["report", "--config", str(cfg), "--quick", "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert "software" in printed and "binsparx" in printed and "wrote" in printed
    df = pd.read_csv(out / "report" / "results.csv")
    assert list(df.variant) == ["software", "nonideal", "binsparx"]
    assert (df.status == "computed").all(), df.reason.tolist()
    assert (df.n == 4).all() and df.accuracy.between(0, 1).all()
    arr = df[df.variant != "software"]
    assert (arr.rows == 64).all() and (arr.technology == "sram8t").all()
    assert arr.on_cell_fraction.between(0, 1).all() and (arr.array_energy_per_image_j > 0).all()
    bsx = df[df.variant == "binsparx"].iloc[0]
    assert bsx.partial_sum_reduction > 0 and bsx.on_cell_fraction < df[df.variant == "nonideal"].iloc[0].on_cell_fraction
    text = (out / "REPORT.md").read_text()
    assert "## Claims of the paper against cosim" in text and "### vgg-small on sram8t" in text
    assert list((out / "report").glob("on_count_hist_*.png")) and list((out / "report").glob("energy_*.png"))
    # a second run reads every cell back from the cache
    main(["report", "--config", str(cfg), "--quick", "--out", str(out), "--no-progress"])
    df2 = pd.read_csv(out / "report" / "results.csv")
    assert (df2.status == "cached").all() and df2.accuracy.tolist() == df.accuracy.tolist()


def test_multibit_claim_row_reads_the_multibit_study(tmp_path, monkeypatch):
    import json as _json
    from cosim import paths
    from cosim.study.report import multibit_claim
    checkout = tmp_path / "checkout"
    monkeypatch.setattr(paths, "CHECKOUT_DIR", checkout)
    (row,) = multibit_claim(tmp_path)
    assert row[2].startswith("not measured") and row[3] == "—"
    (checkout / "docs").mkdir(parents=True)                  # a report written outside docs/ reads the checkout's
    (checkout / "docs" / "MULTIBIT.json").write_text(_json.dumps(
        {"claim": "c0", "cosim": "fig0", "agreed": "agreed", "source": "MULTIBIT.md"}))
    (row,) = multibit_claim(tmp_path)
    assert row[0] == "c0" and row[3] == "yes"
    (tmp_path / "MULTIBIT.json").write_text(_json.dumps(
        {"claim": "c", "cosim": "fig", "agreed": "not agreed", "source": "MULTIBIT.md"}))
    (row,) = multibit_claim(tmp_path)
    assert row[0] == "c" and row[2].startswith("fig (`MULTIBIT.md`)") and row[3] == "no"
    assert "unchecked" in row[2]                              # no software accuracies to check the k-bit gap
    (tmp_path / "MULTIBIT.json").write_text("{not json")
    (row,) = multibit_claim(tmp_path)
    assert row[2].startswith("unreadable")


# ------------------------------------------------------------------------------------------- statistical footing

def test_multibit_claim_is_inconclusive_where_kbit_networks_are_undertrained(tmp_path, monkeypatch):
    from cosim import paths
    from cosim.study.report import multibit_claim
    monkeypatch.setattr(paths, "CHECKOUT_DIR", tmp_path / "checkout")
    base = {"claim": "c", "cosim": "fig", "agreed": "not agreed", "source": "MULTIBIT.md"}
    sw = {"vgg-small": {"1": {"accuracy": 0.91, "n": 100}, "2": {"accuracy": 0.76, "n": 50}}}
    (tmp_path / "MULTIBIT.json").write_text(json.dumps({**base, "software_accuracy": sw}))
    (row,) = multibit_claim(tmp_path)
    assert row[3] == "inconclusive" and "scripts/train_gpu.sh" in row[2] and "vgg-small 2-bit 76.0 %" in row[2]
    assert "inconclusive" in row[4]
    sw["vgg-small"]["2"]["accuracy"] = 0.85                     # within 10 points: the verdict stands
    (tmp_path / "MULTIBIT.json").write_text(json.dumps({**base, "software_accuracy": sw}))
    assert multibit_claim(tmp_path)[0][3] == "no"
    (tmp_path / "MULTIBIT.json").write_text(json.dumps({**base, "agreed": "agreed", "software_accuracy":
                                                         {"vgg-small": {"1": 0.91, "4": 0.5}}}))
    assert multibit_claim(tmp_path)[0][3] == "yes"              # a "yes" despite the gap is not overturned
    # older MULTIBIT.json without software accuracies: read from the software table of MULTIBIT.md beside it
    (tmp_path / "MULTIBIT.json").write_text(json.dumps(base))
    (tmp_path / "MULTIBIT.md").write_text("| network | bits | weights | software | ideal |\n|---|---|---|---|---|\n"
                                          "| resnet18 | 1 | reference | 0.860 (N = 100) | yes |\n"
                                          "| resnet18 | 4 | `cosim train` | 0.400 (N = 25) | yes |\n")
    (row,) = multibit_claim(tmp_path)
    assert row[3] == "inconclusive" and "resnet18 4-bit 40.0 % vs 1-bit 86.0 %" in row[2]


def test_evaluate_chunked_stops_only_at_chance():
    labels = np.tile(np.arange(10), 100)
    idx = np.arange(1000)
    seen = []

    def const(ix):
        seen.append(len(ix))
        return np.zeros(len(ix), dtype=int)                   # right on class 0 only: 10 %

    ok, stopped = runner.evaluate_chunked(const, idx, labels)
    assert stopped and len(ok) == 200 and ok.sum() == 20 and seen == [200]
    ok, stopped = runner.evaluate_chunked(lambda ix: labels[ix], idx, labels)
    assert not stopped and len(ok) == 1000 and ok.all()
    ok, stopped = runner.evaluate_chunked(const, idx[:150], labels)   # fewer than 200 images: never stops
    assert not stopped and len(ok) == 150
    half = lambda ix: np.where(ix % 20 < 10, labels[ix], -1)        # 50 %: runs to the end
    ok, stopped = runner.evaluate_chunked(half, idx, labels)
    assert not stopped and len(ok) == 1000 and ok.sum() == 500


class _ConstNet(nn.Module):
    def __init__(self, cls):
        super().__init__()
        self.cls = cls
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = torch.zeros(len(x), 10)
        out[:, self.cls] = 1.0
        return out + 0 * self.w


def _software_ctx(tmp_path, limit, labels):
    cfg = parse_config({"grid": {"networks": ["vgg-small"], "technologies": ["sram8t"], "rows": [64],
                                 "r_wire_ohm": [10.0], "variants": ["software"]},
                        "run": {"limit": limit, "batch_size": 64}, "paths": {"cache": str(tmp_path / "cache")}})
    ctx = runner.StudyContext(cfg)
    images = np.random.default_rng(0).integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8)
    ctx._models["vgg-small"] = (_ConstNet(3), "weights-sha")
    n = min(limit, len(labels))
    ctx._data = (images, labels, runner.sha256_arrays(images[:n], labels[:n]), "synthetic")
    return ctx


def test_software_cell_keeps_per_image_outcomes_and_stops_at_chance(tmp_path):
    labels = np.tile(np.arange(10), 40)                        # class-interleaved, like cosim's loading
    ctx = _software_ctx(tmp_path, 400, labels)
    assert np.array_equal(ctx.indices(), np.arange(400))        # the balanced order is the prefix: old keys hold
    (cell,) = ctx.config.cells()
    r = runner.compute_cell(cell, ctx)
    assert r["stopped_at_chance"] and r["n"] == 200 and r["n_planned"] == 400 and r["correct"] == 20
    idx, ok = runner.cell_outcomes(r)
    assert np.array_equal(idx, np.arange(200)) and np.array_equal(ok, labels[:200] == 3)
    assert r["image_ranges"] == [[0, 200]]
    ctx = _software_ctx(tmp_path, 100, labels)
    r = runner.compute_cell(ctx.config.cells()[0], ctx)
    assert not r["stopped_at_chance"] and r["n"] == 100 and r["accuracy"] == 0.1
    big = ctx.with_limit(400)                                   # the claims' cells: same weights, more images
    assert big.config.limit == 400 and big._models is ctx._models
    assert big.data()[2] == runner.sha256_arrays(ctx.data()[0][:400], labels[:400]) != ctx.data()[2]
    with pytest.raises(Exception, match="asks for 401"):
        ctx.with_limit(401)
    # old results (no per-image outcomes) and damaged ones give none
    assert runner.cell_outcomes({"accuracy": 0.1, "correct": 1, "n": 10}) is None
    assert runner.cell_outcomes({**r, "correct_bits": "!!"}) is None
    # labels in blocks (the official batches' order): the study takes the classes round robin
    blocked = np.repeat(np.arange(10), 40)
    ctx = _software_ctx(tmp_path, 100, blocked)
    idx = ctx.indices()
    assert np.array_equal(np.bincount(blocked[idx], minlength=10), [10] * 10)
    assert runner.expand_ranges(runner.index_ranges(idx)).tolist() == idx.tolist()


def _paired_results(budget_rows=None):
    """A fake grid whose cells kept per-image outcomes on 1000 shared images; pwa at 10 ohm is at chance."""
    cfg = parse_config({"grid": {"networks": ["vgg-small"], "technologies": ["sram8t"], "rows": [8],
                                 "r_wire_ohm": [10.0], "variants": ["software", "nonideal", "binsparx", "pwa"]},
                        "run": {"limit": 1000, "cols": 4}})
    rng = np.random.default_rng(0)
    sw = rng.random(1000) < 0.86
    ni = sw & (rng.random(1000) < 0.45)                  # ~39 %, every image it gets right software gets right
    bx = sw.copy()
    bx[np.flatnonzero(sw)[:5]] = False                   # 5 images lost: not significant (McNemar p ~ 0.06)
    pwa = np.zeros(200, dtype=bool)
    pwa[:20] = True
    outs = {"software": (sw, False), "nonideal": (ni, False), "binsparx": (bx, False), "pwa": (pwa, True)}
    cells = []
    for c in cfg.cells():
        ok, stopped = outs[c.variant]
        r = {**runner.outcome_fields(ok, np.arange(len(ok)), planned=1000, stopped=stopped), "seconds": 2.5,
             "provenance": {"code_version": "test"}}
        cells.append(runner.CellResult(c, "computed", r, key=f"k{len(cells)}",
                                       payload={"cell": c.as_dict(), "inputs": "fixed", "code": "test"}))
    return report.StudyResults(config=cfg, cells=cells, skew={}, seconds=1.0)


def test_report_judges_claims_by_paired_tests(tmp_path, monkeypatch):
    from cosim import paths
    monkeypatch.setattr(paths, "CHECKOUT_DIR", tmp_path / "checkout")
    res = _paired_results()
    out = tmp_path / "docs"
    out.mkdir()
    text = report.write_report(res, out, command="cosim report --test").read_text()
    claims = text.split("## Claims")[1].split("## Accuracy")[0]
    assert "McNemar p " in claims and "n = 1000 paired" in claims and "unpaired" not in claims
    assert "software - `binsparx` +0.50 [" in claims          # near software: 5 images, not significant
    row = next(line for line in claims.splitlines() if line.startswith("| BinSparX brings"))
    assert row.split(" | ")[-2] == "yes"
    assert "Error budget not yet measured" in text and "±" not in text.split("## Accuracy")[1].split("\n## ")[0]
    acc = text.split("## Accuracy")[1]
    assert "(stopped at chance after 200)" in acc and "the first 100 test images of each CIFAR-10 class" in acc
    assert "(1 cell(s) here)" in text
    comp = text.split("## Compute")[1].split("## Files")[0]
    assert "10 cell-seconds" in comp and "--scheduler tcp://SCHEDULER:8786" in comp and "--from-cache" in comp
    lines = (out / "report" / "cells.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line)["result"]["correct_bits"] for line in lines)
    import pandas as pd
    df = pd.read_csv(out / "report" / "results.csv")
    assert df.stopped_at_chance.tolist() == [False, False, False, True] and df.per_image.all()


def test_a_comparison_on_fewer_images_than_a_cell_names_both_accuracies_there():
    """A cell run on more images (the claims' 10,000) compared with one on fewer: the paired difference is on
    the shared images, and its text gives both accuracies on them (the larger cell's own accuracy, elsewhere
    in the report, is on all its images and would not match the difference)."""
    res = _paired_results()
    rows = report.results_frame(res)
    pairs = report.Pairs(res)
    by = {r.variant: r for _, r in rows.iterrows()}
    full = pairs.compare(by["software"], by["nonideal"])            # both on the same 1000 images
    assert full.on_paired is None and "on these images" not in full.text()
    part = pairs.compare(by["software"], by["pwa"])                 # pwa stopped at chance after 200
    sw = runner.cell_outcomes(res.cells[int(by["software"].name)].result)[1][:200]
    assert part.n == 200 and part.on_paired == (sw.mean(), 0.1)
    assert f"(n = 200 paired: {100 * sw.mean():.2f} % and 10.00 % on these images)" in part.text()


def test_error_budget_is_read_and_shown(tmp_path, monkeypatch):
    from cosim import paths
    monkeypatch.setattr(paths, "CHECKOUT_DIR", tmp_path / "checkout")
    out = tmp_path / "docs"
    out.mkdir()
    (out / report.ERROR_BUDGET).write_text(
        ",".join(report.BUDGET_COLUMNS) + "\n"
        "vgg-small,sram8t,8,10,ideal,0,-1.25,1000,docs/VALIDATION.md\n"
        "vgg-small,sram8t,8,10,ideal,1,0.45,1000,docs/VALIDATION.md\n"
        "vgg-small,sram8t,8,10,ideal,nonsense,x,1,y\n")
    text = report.write_report(_paired_results(), out, command="cosim report --test").read_text()
    assert "Error budgets from `error_budget.csv` (2 configuration(s), 1 unreadable row(s))" in text
    assert "not yet measured" not in text
    acc = text.split("## Accuracy")[1].split("\n## ")[0]
    # a budget above issue 16's 0.5-point target is marked, one within it is not
    assert " ±1.25† |" in acc and " ±0.45 |" in acc and "`†` where it is above the target of 0.5 points" in acc
    claims = text.split("## Claims")[1].split("## Accuracy")[0]
    assert "exceeds the surrogate's error budget ±1.25 points" in claims     # the 40-odd-point drop
    assert "exceeds the surrogate's error budget ±0.45 points" in claims     # BinSparX's 0.5-point gap vs software


def test_from_cache_rerenders_from_committed_cells(tmp_path, monkeypatch):
    """cells.jsonl written with a report is read back by read_cached_cells without any cell cache, with the
    per-image outcomes intact; the cache's own (newer) entries still win."""
    ctx = _ctx(tmp_path)
    monkeypatch.setattr(runner, "cell_payload", lambda c, x: {"cell": c.as_dict(), "inputs": "fixed", "code": "now"})
    cells = ctx.config.cells()
    ok = np.arange(10) % 2 == 0
    made = []
    for c in cells[:3]:
        pay = {"cell": c.as_dict(), "inputs": "fixed", "code": "committed code"}
        r = {**runner.outcome_fields(ok, np.arange(10), planned=10, stopped=False), "seconds": 1.0}
        made.append(runner.CellResult(c, "computed", r, key=runner.make_key(pay), payload=pay))
    res = report.StudyResults(config=ctx.config, cells=made)
    committed = tmp_path / "cells.jsonl"
    assert report.export_cells(res, committed) == (3, 0)
    got = report.read_cached_cells(cells, ctx, committed=[committed])
    assert [r.status for r in got] == ["cached"] * 3 + ["not run"] * 2
    assert all(np.array_equal(runner.cell_outcomes(r.result)[1], ok) for r in got[:3])
    assert got[0].payload["code"] == "committed code"
    assert report.read_cached_cells(cells, ctx)[0].status == "not run"      # nothing without the committed file
    # re-exported from the cells read back: the same file
    again = tmp_path / "again.jsonl"
    report.export_cells(report.StudyResults(config=ctx.config, cells=got), again)
    assert again.read_text() == committed.read_text()
    # a report with fewer results keeps the committed entries it does not supersede (no committed result lost)
    newer = {**made[0].payload, "code": "newer code"}
    one = runner.CellResult(cells[0], "computed", {**made[0].result, "seconds": 9.0}, key=runner.make_key(newer),
                            payload=newer)
    merged = tmp_path / "merged.jsonl"
    assert report.export_cells(report.StudyResults(config=ctx.config, cells=[one]), merged, previous=committed) == (1, 2)
    objs = [json.loads(line) for line in merged.read_text().splitlines()]
    assert len(objs) == 3 and sorted(o["payload"]["code"] for o in objs) == ["committed code"] * 2 + ["newer code"]


def test_claim_cells_are_run_again_on_claims_limit_images(tmp_path, monkeypatch):
    from cosim import paths
    from cosim.study import claims_run
    monkeypatch.setattr(paths, "CHECKOUT_DIR", tmp_path / "checkout")
    res = _paired_results()
    assert res.config.limit == 1000 and res.config.claims_limit == 10000
    named = report.claim_cells(res)
    assert [res.cells[i].cell.variant for i in named] == ["software", "nonideal", "binsparx"]   # pwa: no claim
    asked = []

    def big_run(cells, ctx, **kw):
        asked.append([(c.variant, c.limit) for c in cells])
        ok = np.tile(np.arange(10) < 8, 1000)       # 80 % on 10,000 images
        return [runner.CellResult(c, "computed", {**runner.outcome_fields(ok, np.arange(10000), 10000, False),
                                                   "seconds": 30.0}, key=f"big{i}") for i, c in enumerate(cells)]

    class Ctx:
        def with_limit(self, n):
            assert n == 10000
            return self

    monkeypatch.setattr(runner, "run_cells", big_run)
    out = claims_run.refine_claim_cells(res, Ctx())
    assert asked == [[("software", 10000), ("nonideal", 10000), ("binsparx", 10000)]]
    assert [c.result["n"] for c in out.cells] == [10000, 10000, 10000, 200]
    assert [c.result["n"] for c in out.grid_cells] == [1000, 1000, 1000]    # exported with the report too
    assert "3 cell(s) the claims table names" in out.claims_note and "all 10000 CIFAR-10 test images" in out.claims_note
    (tmp_path / "d").mkdir()
    text = report.write_report(out, tmp_path / "d").read_text()
    assert out.claims_note in text and "(n = 10000)" in text.split("## Accuracy")[1]
    assert "n = 10000 paired" in text.split("## Claims")[1].split("## Accuracy")[0]
    # --from-cache: a cited cell without a large run keeps its grid result, and the note says so
    monkeypatch.setattr(report, "read_cached_cells", lambda cells, ctx, committed=None: [
        runner.CellResult(c, "not run", None, reason="not in the cell cache") for c in cells])
    kept = claims_run.refine_claim_cells(res, Ctx(), from_cache=True)
    assert [c.result["n"] for c in kept.cells] == [1000, 1000, 1000, 200]
    assert "3 without one keep their 1000-image result (not in the cell cache" in kept.claims_note
    # no rerun where claims_limit is off
    off = dataclasses.replace(res, config=dataclasses.replace(res.config, claims_limit=0))
    assert claims_run.refine_claim_cells(off, Ctx()) is off


def test_from_cache_command_reads_the_committed_cells_of_the_report_it_rewrites(tmp_path, monkeypatch):
    from cosim.cli import main

    calls = []
    _stub_study(monkeypatch, calls)
    seen = []
    monkeypatch.setattr(report, "read_cached_cells", lambda cells, ctx, committed=None: seen.append(committed) or [
        runner.CellResult(c, "not run", None, reason="stub") for c in cells])
    monkeypatch.chdir(tmp_path)
    main(["report", "--quick", "--from-cache", "--no-progress", "--out", "o"])
    assert seen == [None]                                       # no committed cells yet
    (tmp_path / "o" / "report" / "cells.jsonl").write_text("{}\n")
    main(["report", "--quick", "--from-cache", "--no-progress", "--out", "o"])
    assert seen[1] == [Path("o") / "report" / "cells.jsonl"]
    assert "stopped at chance" in report.accuracy_summary(_paired_results())


def test_committed_cells_of_this_code_resume_a_run_without_the_cache(tmp_path):
    """A grid run interrupted in one checkout resumes in a fresh clone: the committed cells that this very
    code computed go into the empty cell cache (and are then read back, not recomputed); cells of other
    code versions, or whose key is not their payload's, do not."""
    from types import SimpleNamespace
    code = runner.source_hash(runner.KEY_SOURCES)
    mine = {"cell": "a", "code": code}
    other = {"cell": "b", "code": "0" * 64}
    forged = {"cell": "c", "code": code}
    lines = [{"key": runner.make_key(mine), "payload": mine, "result": {"accuracy": 0.5}},
             {"key": runner.make_key(other), "payload": other, "result": {"accuracy": 0.6}},
             {"key": runner.make_key(mine), "payload": forged, "result": {"accuracy": 0.7}},
             {"key": runner.make_key(forged), "payload": forged, "result": {}}]
    committed = tmp_path / "cells.jsonl"
    committed.write_text("".join(json.dumps(o) + "\n" for o in lines) + "not json\n")
    ctx = SimpleNamespace(cache_root=tmp_path / "cache")
    assert report.seed_cache_from_committed(ctx, [committed]) == 1
    store = runner.CellStore(ctx.cache_root)
    assert store.get(runner.make_key(mine))["result"] == {"accuracy": 0.5}
    assert store.get(runner.make_key(other)) is None and store.get(runner.make_key(forged)) is None
    assert report.seed_cache_from_committed(ctx, [committed]) == 0      # already there: nothing rewritten


def test_error_budget_file_roundtrip(tmp_path, monkeypatch):
    from cosim import paths
    monkeypatch.setattr(paths, "CHECKOUT_DIR", tmp_path / "checkout")
    row = {"network": "vgg-small", "technology": "sram8t", "rows": 64, "r_wire_ohm": 10.0,
           "adc_reference": "calibrated", "binsparx": True, "delta_pp": -0.7, "n_images": 500,
           "source": "docs/VALIDATION.md"}
    pilot = {**row, "adc_reference": "ideal", "delta_pp": 10.0, "n_images": 10}
    report.write_error_budget(tmp_path / report.ERROR_BUDGET, [row, pilot])
    budget, txt = report.load_error_budget(tmp_path)
    assert "1 configuration(s), 1 row(s) measured on fewer than 500 images" in txt and len(budget) == 1
    cell = Cell(network="vgg-small", variant="adc-cal+binsparx", technology="sram8t", rows=64, cols=64,
                r_wire_ohm=10.0, adc_bits=7)
    assert report.error_budget_for(cell, budget) == pytest.approx(0.7)
    assert report.error_budget_for(dataclasses.replace(cell, variant="adc-cal"), budget) is None
    assert report.error_budget_for(dataclasses.replace(cell, variant="software"), budget) == 0.0
    # the budget's reads are whole columns with +1 conducting: not those of partial wordline activation
    # or the mirrored encoding, which share the ADC reference and BinSparX flag of a budgeted configuration
    ideal = {**row, "adc_reference": "ideal", "binsparx": False}
    report.write_error_budget(tmp_path / report.ERROR_BUDGET, [row, ideal])
    budget = report.load_error_budget(tmp_path)[0]
    assert report.error_budget_for(dataclasses.replace(cell, variant="nonideal"), budget) == pytest.approx(0.7)
    assert report.error_budget_for(dataclasses.replace(cell, variant="mirrored"), budget) is None
    assert report.error_budget_for(dataclasses.replace(cell, variant="pwa"), budget) is None
    assert report.error_budget_for(dataclasses.replace(cell, variant="pwa+binsparx"), budget) is None
    with pytest.raises(ValueError, match="lacks delta_pp"):
        report.write_error_budget(tmp_path / "x.csv", [{k: v for k, v in row.items() if k != "delta_pp"}])
    assert report.load_error_budget(tmp_path / "nowhere")[1].startswith("Error budget not yet measured")


def test_an_error_budget_row_of_one_table_budgets_only_its_cells(tmp_path):
    """A row that names its table (error_budget.py writes table_sha256) applies to cells read through that
    table, not to the same configuration on another table."""
    import csv
    names = list(report.BUDGET_COLUMNS) + ["table_sha256"]
    rows = [{"network": "vgg-small", "technology": "sram8t", "rows": 64, "r_wire_ohm": 10.0,
             "adc_reference": "calibrated", "binsparx": 1, "delta_pp": d, "n_images": 500, "source": "t",
             "table_sha256": sha} for d, sha in ((-0.4, "a" * 64), (1.2, "b" * 64))]
    with (tmp_path / report.ERROR_BUDGET).open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=names)
        w.writeheader()
        w.writerows(rows)
    budget, txt = report.load_error_budget(tmp_path)
    assert "2 configuration(s)" in txt
    cell = Cell(network="vgg-small", variant="adc-cal+binsparx", technology="sram8t", rows=64, cols=64,
                r_wire_ohm=10.0, adc_bits=7)
    assert report.error_budget_for(cell, budget, "a" * 64) == pytest.approx(0.4)
    assert report.error_budget_for(cell, budget, "b" * 64) == pytest.approx(1.2)
    assert report.error_budget_for(cell, budget, "c" * 64) is None
    assert report.error_budget_for(cell, budget) is None


def test_certified_cells_key_config_and_budget():
    """`certify = true` reads every array cell through certified reads: a cell key of its own (the plain cells
    keep theirs), a one-line error for a non-boolean, and no error budget (the budgets are the plain surrogate's)."""
    cfg = parse_config({"run": {"certify": True}, "grid": {"networks": ["vgg-small"], "technologies": ["sram8t"],
                                                         "rows": [64], "r_wire_ohm": [10.0]}})
    cells = cfg.cells()
    assert cells[0].variant == "software" and not cells[0].certify and all(c.certify for c in cells[1:])
    assert "certified reads" in cfg.describe() and cells[1].label().endswith("/certified/n=1000")
    plain = dataclasses.replace(cells[1], certify=False)
    assert "certify" not in plain.as_dict() and cells[1].as_dict()["certify"] is True
    assert runner.make_key({"cell": plain.as_dict()}) != runner.make_key({"cell": cells[1].as_dict()})
    with pytest.raises(InputError, match=r"certify must be true or false, got 'yes'"):
        parse_config({"run": {"certify": "yes"}})
    budget = {report.budget_key("vgg-small", "sram8t", 64, 10.0, "ideal", False): 1.5}
    assert report.error_budget_for(plain, budget) == 1.5 and report.error_budget_for(cells[1], budget) is None


def test_certified_report_end_to_end_on_a_tiny_subset(tmp_path):
    """The real command with certified reads on 3 test images: the cell records how much it re-solved, and the
    report says its array cells are certified."""
    import json

    import pandas as pd

    from cosim.cli import main
    cfg = tmp_path / "tiny.toml"
    cfg.write_text('[quick]\nvariants = ["nonideal"]\nlimit = 3\nskew_images = 1\ncertify = true\n'
                   f'[paths]\ncache = "{tmp_path / "cache"}"\n')
    out = tmp_path / "docs"
    main(["report", "--config", str(cfg), "--quick", "--out", str(out), "--no-progress"])
    df = pd.read_csv(out / "report" / "results.csv")
    assert list(df.variant) == ["nonideal"] and (df.status == "computed").all(), df.reason.tolist()
    cells = [json.loads(line) for line in (out / "report" / "cells.jsonl").read_text().splitlines()]
    cert = cells[0]["result"]["certified"]
    assert cells[0]["payload"]["cell"]["certify"] is True and 0 < cert["columns_resolved"] < cert["columns_read"]
    assert cells[0]["result"]["provenance"]["array_model"] == "surrogate-certified"
    text = (out / "REPORT.md").read_text()
    assert "with certified reads, `--certify`" in text and "column reads re-solved" in text


def _array_ctx(tmp_path, limit, certify=False):
    """A study context of one array cell on a tiny binary network (its 32x32 inputs pooled to 8x8) and synthetic
    images, read through the shipped 8T-SRAM 64-row table."""
    from test_cim_network import _tiny_net

    cfg = parse_config({"grid": {"networks": ["vgg-small"], "technologies": ["sram8t"], "rows": [64],
                                 "r_wire_ohm": [10.0], "variants": ["adc-cal+binsparx"]},
                        "run": {"limit": limit, "batch_size": 4, "certify": certify},
                        "paths": {"cache": str(tmp_path / "cache")}})
    ctx = runner.StudyContext(cfg)
    labels = np.tile(np.arange(10), 3)[:limit]
    images = np.random.default_rng(1).integers(0, 256, (limit, 32, 32, 3), dtype=np.uint8)
    ctx._models["vgg-small"] = (nn.Sequential(nn.AvgPool2d(4), *_tiny_net()).eval(), "weights-sha")
    ctx._data = (images, labels, runner.sha256_arrays(images, labels), "synthetic")
    return ctx


@pytest.mark.parametrize("certify", [False, True])
def test_a_long_cell_resumes_from_its_last_finished_part(tmp_path, monkeypatch, certify):
    """An array cell runs its images after the first chunk in kept parts: computed in parts it equals the cell
    computed in one go (outcomes, statistics, energy, certified counters); interrupted after two parts, the same
    command computes only the parts left and gives the same result; the parts go once the result is cached."""
    import cosim.bnn.evaluate as ev

    monkeypatch.setattr(stats, "CHANCE_MIN_IMAGES", 4)
    ctx = _array_ctx(tmp_path / "a", 14, certify)
    whole = runner.compute_cell(ctx.config.cells()[0], ctx)       # one part after the first chunk
    monkeypatch.setattr(runner, "PART_IMAGES", 4)              # [0:4] (the first chunk), [4:8], [8:12], [12:14]
    real, calls = ev.predict, []

    def failing(net, images, **kw):
        calls.append(len(images))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(net, images, **kw)

    monkeypatch.setattr(ev, "predict", failing)
    ctx = _array_ctx(tmp_path / "b", 14, certify)
    cell = ctx.config.cells()[0]
    with pytest.raises(KeyboardInterrupt):
        runner.compute_cell(cell, ctx)
    parts = sorted(p.name for p in (tmp_path / "b" / "cache" / "parts").glob("*.json"))
    assert len(parts) == 2 and parts[0].endswith("_00000-00004.json") and parts[1].endswith("_00004-00008.json")
    calls.clear()
    monkeypatch.setattr(ev, "predict", lambda net, images, **kw: calls.append(len(images)) or real(net, images, **kw))
    again = runner.compute_cell(cell, _array_ctx(tmp_path / "b", 14, certify))
    assert calls == [4, 2]                                       # only the parts left
    for k in ("accuracy", "correct_bits", "n", "stats", "layer_stats", "array_energy_per_image_j"):
        assert again[k] == whole[k], k
    assert (again.get("certified") is None) == (not certify)
    if certify:
        assert again["certified"]["columns_read"] == whole["certified"]["columns_read"] > 0
        assert again["certified"]["columns_resolved"] == whole["certified"]["columns_resolved"]
    # run through run_cells: the result is cached and the parts are removed
    res = runner.run_cells([cell], _array_ctx(tmp_path / "b", 14, certify), progress=False)
    assert res[0].status == "computed" and res[0].result["correct_bits"] == whole["correct_bits"]
    assert not list((tmp_path / "b" / "cache" / "parts").glob("*.json"))
