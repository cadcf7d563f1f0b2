import dataclasses

import pytest

from cosim.errors import InputError
from cosim.circuit.technology import REGISTRY, Technology, get_technology, source_of


def test_every_parameter_has_doc_and_source():
    for f in dataclasses.fields(Technology):
        assert f.metadata.get("doc"), f.name
        assert f.metadata.get("source"), f.name
        for tech in REGISTRY.values():
            assert source_of(tech, f.name)


def test_overrides_and_errors():
    t = get_technology("reram1t1r", r_wire_ohm=2.0)
    assert t.r_wire_ohm == 2.0 and t.cell == "reram1t1r"
    assert get_technology("reram1t1r").r_wire_ohm == 10.0  # registry untouched
    with pytest.raises(InputError, match="unknown technology 'finfet3'"):
        get_technology("finfet3")
    with pytest.raises(InputError, match="unknown technology parameter"):
        get_technology("sram8t", r_wire=1.0)
    with pytest.raises(InputError, match="non-negative"):
        get_technology("sram8t", r_wire_ohm=-1.0)
    with pytest.raises(InputError, match="topology"):
        get_technology("sram8t", topology="mesh")


# ---------------------------------------------------------------- technology files (TOML)
import json  # noqa: E402
from pathlib import Path  # noqa: E402

from cosim.circuit.technology import builtin_dir, load_technology_file  # noqa: E402

BEFORE = json.loads((Path(__file__).parent / "data" / "registry_before_toml.json").read_text())


def test_toml_builtins_equal_the_python_registry_field_by_field():
    """tests/data/registry_before_toml.json: the registry as Python literals wrote it, before the files."""
    assert sorted(REGISTRY) == sorted(BEFORE)
    for name, old in BEFORE.items():
        tech = get_technology(name)
        assert tech.as_dict() == old["values"], name
        for f, src in old["sources"].items():
            assert source_of(tech, f) == src, (name, f)
        assert (builtin_dir() / f"{name}.toml").is_file()


def _write(tmp_path, text, name="mine.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = 'name = "mine"\ncell = "resistor"\n[parameters]\nv_read_v = { value = 0.15, source = "my lab" }\nr_on_ohm = 5e4\n'


def test_a_user_file_by_path_and_by_search_path(tmp_path, monkeypatch):
    p = _write(tmp_path, GOOD)
    t = get_technology(str(p), r_wire_ohm=3.0)
    assert (t.name, t.cell, t.v_read_v, t.r_on_ohm, t.r_wire_ohm) == ("mine", "resistor", 0.15, 5e4, 3.0)
    assert source_of(t, "v_read_v") == "my lab"
    assert source_of(t, "r_on_ohm") == "technology file mine.toml"
    assert source_of(t, "r_off_ohm") == Technology.source("r_off_ohm")   # a default keeps its own source
    with pytest.raises(InputError, match="unknown technology 'mine'"):
        get_technology("mine")
    monkeypatch.setenv("COSIM_TECH_PATH", str(tmp_path))
    assert get_technology("mine") == load_technology_file(p)
    _write(tmp_path, GOOD, "other.toml")
    with pytest.raises(InputError, match="names 'mine', not 'other'"):
        get_technology("other")


@pytest.mark.parametrize("text,match", [
    (GOOD + "r_wire_kohm = 1\n", "wrong unit in 'r_wire_kohm': the parameter is r_wire_ohm, in ohm"),
    (GOOD + "v_read_mv = 100\n", "wrong unit in 'v_read_mv'"),
    (GOOD + "colour = 1\n", "unknown key 'colour'"),
    (GOOD.replace("[parameters]", "flavour = 1\n[parameters]"), "unknown key 'flavour'"),
    ('cell = "resistor"\n', "missing value: name"),
    ('name = "x"\n', "missing value: cell"),
    ('name = "x"\ncell = "sram6t"\n', "unknown cell kind 'sram6t'"),
    (GOOD + 'r_off_ohm = { source = "x" }\n', "missing value of parameter r_off_ohm"),
    (GOOD + 'r_off_ohm = { value = 1, sauce = "x" }\n', "unknown key 'sauce'"),
    (GOOD + 'r_off_ohm = "big"\n', "r_off_ohm must be a number"),
    (GOOD + 'fet_nfin = 1.5\n', "fet_nfin must be an integer"),
    (GOOD + 'r_off_ohm = -1\n', "non-negative"),
    ("name = = 1\n", "not valid TOML"),
])
def test_bad_files_give_one_line_errors(tmp_path, text, match):
    p = _write(tmp_path, text)
    with pytest.raises(InputError, match=match) as e:
        get_technology(str(p))
    assert "\n" not in str(e.value)


def test_a_missing_file(tmp_path):
    with pytest.raises(InputError, match="cannot read the technology file"):
        get_technology(str(tmp_path / "none.toml"))


def _cli(argv, capsys):
    """(exit status, stdout, stderr) of ``cosim ARGV`` in process."""
    from test_cli_infer import _run

    code, io = _run(argv, capsys)
    return code, io.out, io.err


def test_tech_file_on_the_command_line(tmp_path, capsys, monkeypatch):
    """--tech-file FILE and a name in $COSIM_TECH_PATH give what the built-in gives for the same values."""
    src = (builtin_dir() / "resistor.toml").read_text().replace('name = "resistor"', 'name = "myres"')
    f = _write(tmp_path, src, "myres.toml")
    args = ["solve", "--rows", "8", "--cols", "3", "--batch", "2", "--seed", "4", "--json"]
    code, out, err = _cli(args + ["--tech", "resistor"], capsys)
    assert code == 0, err
    ref = json.loads(out)
    code, out, err = _cli(args + ["--tech-file", str(f)], capsys)
    assert code == 0, err
    got = json.loads(out)
    assert got["technology"] == "myres" and got["column_current_a"] == ref["column_current_a"]
    monkeypatch.setenv("COSIM_TECH_PATH", str(tmp_path))
    code, out, err = _cli(args + ["--tech", "myres"], capsys)
    assert code == 0, err
    assert json.loads(out)["column_current_a"] == ref["column_current_a"]
    for argv in (args + ["--tech", "resistor", "--tech-file", str(f)],
                 args + ["--tech-file", str(tmp_path / "none.toml")],
                 ["calibrate", "--rows", "8", "--cols", "2", "--points", "1", "--out", str(tmp_path / "o")]):
        code, out, err = _cli(argv, capsys)
        assert code == 1 and err.startswith("error:") and len(err.strip().splitlines()) == 1, (argv, err)
