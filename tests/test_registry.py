"""The table registry (cosim.surrogate.registry): names, lookup by (technology, rows, wire resistance,
topology) over the shipped and user folders, and the one-line error of a table that is not there."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from cosim.circuit.technology import get_technology
from cosim.errors import TableError
from cosim.provenance import sha256_file
from cosim.surrogate.registry import (SHIPPED, TableKey, find_table, lookup, parse_table_filename, table_dirs,
                                      table_filename, tables_dir, user_tables_dir)
from cosim.surrogate.tables import load_table


def test_names_round_trip():
    assert table_filename("sram8t", 64) == "sram8t_64_decoupled.parquet"
    assert table_filename("sram8t", 128, "decoupled", 10.0) == "sram8t_128_decoupled.parquet"     # the default
    assert table_filename("sram8t", 128, "decoupled", 5.0) == "sram8t_128_decoupled_r5ohm.parquet"
    assert table_filename("reram1t1r", 256, "coupled", 0.5) == "reram1t1r_256_coupled_r0.5ohm.parquet"
    for key in SHIPPED + (TableKey("resistor", 16, 2.5, "coupled"), TableKey("sram8t", 7)):
        assert parse_table_filename(key.filename()) == key
        assert parse_table_filename(Path("/some/folder") / key.filename()) == key
    for name in ("table.parquet", "samples.parquet", "sram8t_64.parquet", "sram8t_64_decoupled.npz",
                 "sram8t_64_decoupled_r10ohm.parquet"):           # the default resistance has the plain name only
        assert parse_table_filename(name) is None


def test_every_shipped_table_is_found_by_its_key():
    shipped = sorted(p.name for p in tables_dir().glob("*.parquet"))
    assert sorted(k.filename() for k in SHIPPED) == shipped
    for key in SHIPPED:
        t = lookup(key.technology, key.rows, key.r_wire_ohm, key.topology)
        assert Path(t.provenance["source_path"]).name == key.filename()
        assert (t.tech_name, t.rows, t.topology) == (key.technology, key.rows, key.topology)
        want_r = get_technology(key.technology).r_wire_ohm if key.r_wire_ohm is None else key.r_wire_ohm
        assert t.technology().r_wire_ohm == want_r
    # a Technology asks with every parameter; the table loads exactly as by its path
    t = lookup(get_technology("sram8t", r_wire_ohm=5.0), 64)
    direct = load_table(tables_dir() / "sram8t_64_decoupled_r5ohm.parquet")
    assert t.meta == direct.meta and t.provenance == direct.provenance
    assert all(np.array_equal(t.arrays[k], direct.arrays[k]) for k in direct.arrays)
    # the study's lookup is the same one, with the file's hash
    table, path, sha = find_table("reram1t1r", 128, 20.0, [tables_dir()])
    assert Path(path).name == "reram1t1r_128_decoupled_r20ohm.parquet" and sha == sha256_file(Path(path))


def test_a_missing_table_is_one_line_naming_what_and_where(tmp_path):
    with pytest.raises(TableError) as e:
        lookup("sram8t", 32, 5.0, dirs=[tables_dir(), tmp_path])
    msg = str(e.value)
    assert "\n" not in msg
    assert "no lookup table calibrated for sram8t, 32 rows, 5 ohm/cell, decoupled" in msg
    assert "sram8t_32_decoupled_r5ohm.parquet" in msg and str(tables_dir()) in msg and str(tmp_path) in msg
    assert "cosim calibrate --tech sram8t --rows 32 --r-wire-ohm 5" in msg


def test_user_folders_by_name_or_by_provenance(tmp_path, monkeypatch):
    src = tables_dir() / "sram8t_64_decoupled_r5ohm.parquet"
    (tmp_path / "mine").mkdir()
    shutil.copyfile(src, tmp_path / "mine" / "table.parquet")         # what cosim calibrate writes
    t = lookup("sram8t", 64, 5.0, dirs=[tmp_path])
    assert t.provenance["source_path"] == str(tmp_path / "mine" / "table.parquet")
    # a file under another key's registry name is not opened for this key; under its own name it must match
    other = tmp_path / "other"
    other.mkdir()
    shutil.copyfile(src, other / "sram8t_64_decoupled_r2ohm.parquet")
    with pytest.raises(TableError, match="no lookup table calibrated for sram8t, 64 rows, 5 ohm/cell"):
        lookup("sram8t", 64, 5.0, dirs=[other])
    with pytest.raises(TableError, match="r_wire_ohm=5.0 \\(asked 2.0\\)"):
        lookup("sram8t", 64, 2.0, dirs=[other])
    # by default the shipped folder, then the user's ($COSIM_CACHE/tables)
    monkeypatch.setenv("COSIM_CACHE", str(tmp_path / "cache"))
    assert table_dirs() == [tables_dir(), tmp_path / "cache" / "tables"] and user_tables_dir() == tmp_path / "cache" / "tables"
    user = user_tables_dir()
    user.mkdir(parents=True)
    shutil.copyfile(src, user / "sram8t_64_decoupled_r7ohm.parquet")
    with pytest.raises(TableError, match="asked 7.0"):
        lookup("sram8t", 64, 7.0)                  # found by its name in the user's folder, checked, refused
    fixed = get_technology("sram8t", r_wire_ohm=7.0)
    with pytest.raises(TableError, match="no lookup table calibrated for sram8t, 64 rows, 7 ohm/cell"):
        lookup(fixed, 64, dirs=[tables_dir()])
