"""scripts/make_tables.py: the shipped tables rebuilt from committed code, byte for byte (on a tiny table)."""

import importlib.util

import pytest

from cosim.paths import CHECKOUT_DIR
from cosim.surrogate.registry import TableKey
from cosim.surrogate.tables import load_table

pytestmark = pytest.mark.ngspice

_spec = importlib.util.spec_from_file_location("make_tables", CHECKOUT_DIR / "scripts" / "make_tables.py")
assert _spec and _spec.loader
mt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mt)


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """make_tables with one tiny table (resistor, 16 rows, 5 points of 4 columns x 4 vectors) and the tiny
    network of test_validate as its operands; the 'shipped' folder is a temporary one."""
    import cosim.surrogate.netslices as netslices
    import cosim.surrogate.registry as registry
    from test_validate import _tiny_source

    monkeypatch.setattr(mt, "tables", lambda: {"resistor_16": (TableKey("resistor", 16), 5)})
    monkeypatch.setattr(mt, "COLS", 4)
    monkeypatch.setattr(mt, "VECTORS", 4)
    monkeypatch.setattr(netslices, "calibration_operands",
                        lambda names, images: netslices.CalibrationOperands([_tiny_source()]))
    shipped = tmp_path / "shipped"
    monkeypatch.setattr(registry, "tables_dir", lambda: shipped)
    return shipped


def test_a_rebuild_is_byte_for_byte_the_same(tiny, tmp_path, capsys):
    assert mt.main(["--work", str(tmp_path / "work"), "--out", str(tiny), "--allow-dirty"]) == 0
    path = tiny / "resistor_16_decoupled.parquet"
    assert f"resistor_16: 80 samples -> {path}" in capsys.readouterr().out
    prov = load_table(path).provenance
    for k in mt.UNREPRODUCIBLE:
        assert k not in prov
    assert prov["solver"] == "exact-banded" and prov["ngspice_check"]["ngspice_version"] and prov["seed"] == 0
    assert prov["code_version"] and prov["code_date_utc"] and prov["rows"] == 16 and prov["technology"] == "resistor"
    assert prov["placements"] and prov["network_operands"]["networks"][0]["network"] == "tiny"
    # --check rebuilds from scratch in a temporary folder: the same bytes
    assert mt.main(["--check"]) == 0
    assert capsys.readouterr().out.startswith(f"resistor_16: identical to {path}")
    # a rebuild that differs is named, field by field
    mt_seed = mt.SEED
    try:
        mt.SEED = 1
        assert mt.main(["--check"]) == 1
    finally:
        mt.SEED = mt_seed
    out = capsys.readouterr().out
    assert "resistor_16: DIFFERS from" in out and "provenance.seed: 1 vs 0" in out and "array coef" in out
    assert "only the code version differs" not in out
    # the same code at another commit: the table differs in the code fields alone, and --check says so
    date = mt.code_date_utc
    try:
        mt.code_date_utc = lambda: "2000-01-01T00:00:00+00:00"
        assert mt.main(["--check"]) == 1
    finally:
        mt.code_date_utc = date
    out = capsys.readouterr().out
    assert "provenance.code_date_utc: '2000-01-01T00:00:00+00:00' vs" in out and "array" not in out
    assert "resistor_16: only the code version differs" in out


def test_another_model_form_is_built_elsewhere_only(tiny, tmp_path, capsys):
    out = tmp_path / "candidate"
    assert mt.main(["--work", str(tmp_path / "work"), "--out", str(out), "--orders", "1,2,s3", "--knots", "17",
                    "--terms", "compact"]) == 0
    meta = load_table(out / "resistor_16_decoupled.parquet").meta
    assert meta["orders"] == [1, 2, "s3"] and meta["n_knots"] == 17 and meta["term_set"] == "compact"
    capsys.readouterr()
    for argv in (["--orders", "1,2"], ["--check", "--knots", "9"], ["--out", str(tiny), "--terms", "full"]):
        assert mt.main(argv) == 1
        assert "make tables of another model form than the registry's" in capsys.readouterr().err
    assert mt.main(["--out", str(out), "--orders", "1,x"]) == 1
    assert "moment order 'x'" in capsys.readouterr().err
    assert not tiny.exists()


def test_a_table_gets_the_form_of_its_wire_resistance(tiny, tmp_path, monkeypatch, capsys):
    """make_tables fits each table with the registry's form of its technology, rows and wire resistance
    (a (technology, rows, wire resistance) key of MODEL_FORMS wins), given model options replacing parts."""
    import cosim.surrogate.registry as registry
    from cosim.surrogate.registry import ModelForm

    monkeypatch.setattr(mt, "tables", lambda: {"resistor_16": (TableKey("resistor", 16), 5),
                                               "resistor_16_r20ohm": (TableKey("resistor", 16, 20.0), 5)})
    monkeypatch.setattr(registry, "MODEL_FORMS", {("resistor", 16): ModelForm("compact", 9, (1, 2)),
                                                  ("resistor", 16, 20.0): ModelForm("full", 17, (1, 2, "s1"))})
    assert mt.main(["--work", str(tmp_path / "work"), "--out", str(tiny), "--allow-dirty"]) == 0
    metas = {n: load_table(tiny / n).meta for n in ("resistor_16_decoupled.parquet",
                                                    "resistor_16_decoupled_r20ohm.parquet")}
    assert [(m["term_set"], m["n_knots"], m["orders"]) for m in metas.values()] == [
        ("compact", 9, [1, 2]), ("full", 17, [1, 2, "s1"])]
    out = tmp_path / "candidate"
    assert mt.main(["--work", str(tmp_path / "work"), "--out", str(out), "--only", "resistor_16_r20ohm",
                    "--terms", "compact"]) == 0
    meta = load_table(out / "resistor_16_decoupled_r20ohm.parquet").meta
    assert (meta["term_set"], meta["n_knots"], meta["orders"]) == ("compact", 17, [1, 2, "s1"])
    capsys.readouterr()


def test_shipped_tables_are_not_written_from_a_dirty_tree(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mt, "dirty_paths", lambda: [" M cosim/surrogate/fit.py", " M scripts/make_tables.py"])
    assert mt.main(["--work", str(tmp_path / "work")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "uncommitted changes to the code (M cosim/surrogate/fit.py and 1 more)" in err
    assert "--allow-dirty" in err and not tiny.exists()
    assert mt.main(["--check", "--out", str(tmp_path / "x")]) == 1
    assert "takes no --out" in capsys.readouterr().err
    assert mt.main(["--only", "sram8t_64"]) == 1
    assert "unknown table 'sram8t_64'" in capsys.readouterr().err


def test_the_dirty_check_leaves_out_the_tables_it_writes(tmp_path, monkeypatch):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "cosim" / "resources" / "tables").mkdir(parents=True)
    (tmp_path / "cosim" / "x.py").write_text("a = 1\n")
    (tmp_path / "cosim" / "resources" / "tables" / "t.parquet").write_text("table\n")
    (tmp_path / "notes.txt").write_text("n\n")
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    monkeypatch.setattr(mt, "ROOT", tmp_path)
    assert mt.dirty_paths() == []
    (tmp_path / "cosim" / "resources" / "tables" / "t.parquet").write_text("rebuilt\n")
    (tmp_path / "notes.txt").write_text("other\n")
    assert mt.dirty_paths() == []                  # the tables it writes, files beside the code: not dirty
    (tmp_path / "cosim" / "x.py").write_text("a = 2\n")
    assert [p.strip() for p in mt.dirty_paths()] == ["M cosim/x.py"]
    assert mt.code_date_utc() is not None
