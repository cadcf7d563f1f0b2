"""Lookup tables: Parquet round trip, provenance checks, corrupt and truncated files."""

import numpy as np
import pytest

from cosim.errors import TableError
from cosim.surrogate.tables import LookupTable, default_table_path, load_table, table_filename
from cosim.circuit.technology import get_technology


def _table(rows=8):
    tech = get_technology("resistor")
    prov = {"technology": "resistor", "technology_params": tech.as_dict(), "rows": rows, "cols": 4,
            "topology": "decoupled", "seed": 3, "i_cell_a": 1e-5, "ngspice_version": "46"}
    arrays = {"coef": np.arange((rows + 1) * 3, dtype=float).reshape(rows + 1, 3) * 1e-6,
              "count_mean_a": np.linspace(0, 1e-4, rows + 1)}
    return LookupTable(arrays=arrays, meta={"model": "x", "features": ["a", "b", "c"]}, provenance=prov)


def test_round_trip(tmp_path):
    t = _table()
    p = t.save(tmp_path / "t.parquet")
    u = load_table(p)
    assert set(u.arrays) == set(t.arrays)
    for k in t.arrays:
        np.testing.assert_array_equal(u.arrays[k], t.arrays[k])
    assert u.meta == t.meta
    assert {k: v for k, v in u.provenance.items() if k != "source_path"} == t.provenance
    assert u.rows == 8 and u.topology == "decoupled" and u.technology() == get_technology("resistor")


def test_provenance_mismatch(tmp_path):
    p = _table().save(tmp_path / "t.parquet")
    load_table(p, tech=get_technology("resistor"), rows=8, topology="decoupled")
    with pytest.raises(TableError, match="rows"):
        load_table(p, rows=16)
    with pytest.raises(TableError, match="topology"):
        load_table(p, topology="coupled")
    with pytest.raises(TableError, match="technology"):
        load_table(p, tech=get_technology("sram8t"))
    with pytest.raises(TableError, match="r_wire_ohm"):
        load_table(p, tech=get_technology("resistor", r_wire_ohm=2.0))


def test_corrupt_and_truncated(tmp_path):
    p = _table(rows=64).save(tmp_path / "t.parquet")
    data = p.read_bytes()
    (tmp_path / "trunc.parquet").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.parquet").write_text("not a parquet file\n")
    flipped = bytearray(data)
    for i in range(len(data) // 3, len(data) // 3 + 64):
        flipped[i] ^= 0xFF
    (tmp_path / "flip.parquet").write_bytes(bytes(flipped))
    for name in ("trunc", "junk", "flip"):
        with pytest.raises(TableError) as e:
            load_table(tmp_path / f"{name}.parquet")
        assert "\n" not in str(e.value)
    with pytest.raises(TableError, match="does not exist"):
        load_table(tmp_path / "missing.parquet")


def test_tampered_values_and_foreign_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = _table().save(tmp_path / "t.parquet")
    tbl = pq.read_table(p)
    vals = tbl.column("value").to_numpy().copy()
    vals[3] += 1e-9
    tampered = tbl.set_column(tbl.schema.get_field_index("value"), "value", pa.array(vals))
    pq.write_table(tampered.replace_schema_metadata(tbl.schema.metadata), tmp_path / "tampered.parquet")
    with pytest.raises(TableError, match="checksum"):
        load_table(tmp_path / "tampered.parquet")
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "foreign.parquet")
    with pytest.raises(TableError, match="not a cosim lookup table"):
        load_table(tmp_path / "foreign.parquet")


def test_refuses_non_finite(tmp_path):
    t = _table()
    t.arrays["coef"][0, 0] = np.nan
    with pytest.raises(TableError, match="non-finite"):
        t.save(tmp_path / "t.parquet")


def test_default_tables_shipped_and_missing():
    for tech in ("sram8t", "reram1t1r"):
        for rows in (64, 128):
            t = load_table(default_table_path(tech, rows), tech=get_technology(tech), rows=rows, topology="decoupled")
            prov = t.provenance
            assert prov["netlist_sha256"] and prov["n_samples"] > 0
            # made by ngspice, or by the exact solver with the ngspice cross-check it passed (scripts/make_tables.py)
            assert prov["ngspice_version"] or (prov["solver"].startswith("exact") and prov["ngspice_check"]["ngspice_version"]
                                               and prov["ngspice_check"]["max_rel_diff"] <= 1e-6)
    with pytest.raises(TableError, match="no default table"):
        default_table_path("resistor", 7)
    assert table_filename("sram8t", 64) == "sram8t_64_decoupled.parquet"
