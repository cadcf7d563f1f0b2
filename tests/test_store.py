"""The one result store (cosim.sweep.store): round trip, atomic writes under a crash, corrupt records
reported and treated as missing, a folder that cannot take a record, records written before the store."""

import json
import logging
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cosim.errors import InputError, StorageError
from cosim.sweep.store import ResultStore

from test_reliability import _tmpfs

POINTS = {"point": "{key:.2}/{key}.npz", "failure": "{key:.2}/{key}.fail.json"}


def test_round_trip_keys_and_layouts(tmp_path):
    s = ResultStore(tmp_path)
    cur = np.arange(6, dtype=np.float64).reshape(2, 3)
    path = s.put("runs", "r1", {"current_a": cur, "label": np.array("x")}, {"seconds": 1.5, "note": "é"})
    assert path == tmp_path / "runs" / "r1.npz"
    rec = s.get("runs", "r1")
    np.testing.assert_array_equal(rec["current_a"], cur)
    assert rec.arrays["current_a"].dtype == np.float64 and str(rec["label"]) == "x"
    assert rec.meta == {"seconds": 1.5, "note": "é"}
    assert s.has("runs", "r1") and not s.has("runs", "r2") and s.get("runs", "r2") is None
    s.put("runs", "r0", {"current_a": cur})
    assert s.keys("runs") == ["r0", "r1"] and s.keys("other") == []
    s.delete("runs", "r0")
    assert s.keys("runs") == ["r1"]
    # JSON records: metadata only, with their key
    j = ResultStore(tmp_path / "cells", "{kind}/{key}.json")
    p = j.put("cells", "abc", meta={"accuracy": np.float32(0.5), "n": 10})
    assert json.loads(p.read_text()) == {"accuracy": 0.5, "key": "abc", "n": 10}
    assert j.get("cells", "abc").meta["n"] == 10
    with pytest.raises(InputError, match="take no arrays"):
        j.put("cells", "abc", {"a": np.zeros(1)})
    # per-kind layouts, and keys read back through a layout with a prefix of the key in the path
    k = "ab" + "0" * 62
    pc = ResultStore(tmp_path / "pc", POINTS)
    assert pc.put("point", k, {"current_a": cur}).relative_to(tmp_path / "pc").as_posix() == f"ab/{k}.npz"
    pc.put("failure", k, meta={"reason": "x"})
    assert pc.keys("point") == [k] and pc.keys("failure") == [k]
    with pytest.raises(InputError, match="no records of kind"):
        pc.put("other", k, {})
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(InputError, match="not a record key"):
            s.put("runs", bad, {})
    with pytest.raises(InputError, match="may not be named"):
        s.put("runs", "r3", {"meta": np.zeros(1)})


def test_corrupt_records_are_reported_and_treated_as_missing(tmp_path, caplog):
    s = ResultStore(tmp_path)
    cur = np.linspace(0, 1e-6, 8)
    path = s.put("runs", "r", {"current_a": cur}, {"a": 1})
    good = path.read_bytes()
    cases = {"truncated": good[: len(good) // 2], "garbage": b"not a zip"}
    with np.load(path) as z:                                     # a hand edit: numbers no longer match the digest
        parts = {n: z[n] for n in z.files}
    parts["current_a"] = parts["current_a"] * 2
    import io
    buf = io.BytesIO()
    np.savez(buf, **parts)
    cases["edited"] = buf.getvalue()
    with caplog.at_level(logging.WARNING, logger="cosim.store"):
        for i, (name, data) in enumerate(cases.items(), 1):
            path.write_bytes(data)
            assert s.get("runs", "r") is None, name
            assert len(s.corrupt) == i and path.exists()          # kept: this store does not remove
            assert s.corrupt[-1].startswith(f"{path}: corrupt result (") and "\n" not in s.corrupt[-1]
    assert "digest does not match" in s.corrupt[-1] and "(not an npz archive)" in s.corrupt[1]
    assert [r.getMessage() for r in caplog.records] == s.corrupt
    # a store made with remove_corrupt removes them; a JSON record holding another key is corrupt too
    r = ResultStore(tmp_path, remove_corrupt=True)
    assert r.get("runs", "r") is None and not path.exists() and r.corrupt[0].endswith("removed")
    j = ResultStore(tmp_path, "{kind}/{key}.json")
    j.put("cells", "a", meta={"x": 1})
    (tmp_path / "cells" / "b.json").write_text((tmp_path / "cells" / "a.json").read_text())
    (tmp_path / "cells" / "c.json").write_text("{trunc")
    assert j.get("cells", "b") is None and j.get("cells", "c") is None and j.get("cells", "a") is not None
    assert "holds key 'a'" in j.corrupt[0] and len(j.corrupt) == 2


def test_a_writer_killed_mid_write_leaves_the_old_record(tmp_path):
    """kill the writing process between writing its temporary file and the rename: the record read back
    is the old one, whole, and only a temporary file is left (never read back as a record)."""
    s = ResultStore(tmp_path)
    s.put("runs", "r", {"current_a": np.zeros(4)}, {"v": 1})
    code = textwrap.dedent(f"""
        import os, numpy as np
        from cosim.sweep.store import ResultStore
        os.replace = lambda *a: os._exit(9)                 # dies where the rename would be
        ResultStore({str(tmp_path)!r}).put("runs", "r", {{"current_a": np.ones(100000)}}, {{"v": 2}})
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 9, run.stderr
    rec = s.get("runs", "r")
    assert rec.meta == {"v": 1} and not rec["current_a"].any() and not s.corrupt
    left = list(s.temporary_files())
    assert len(left) == 1 and left[0].name.startswith(".r.npz.") and s.keys("runs") == ["r"]
    # an error inside the write (here an interrupt while flushing) leaves nothing behind at all
    import os

    def boom(fd):
        raise KeyboardInterrupt

    real = os.fsync
    os.fsync = boom
    try:
        with pytest.raises(KeyboardInterrupt):
            s.put("runs", "r", {"current_a": np.ones(4)}, {"v": 3})
    finally:
        os.fsync = real
    assert s.get("runs", "r").meta == {"v": 1} and list(s.temporary_files()) == left


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_a_folder_that_cannot_take_a_record_gives_a_storage_error(tmp_path, fault):
    with _tmpfs(tmp_path / "mnt", 64, read_only=fault == "read-only", fill=fault == "full") as mnt:
        s = ResultStore(mnt)
        with pytest.raises(StorageError) as e:
            s.put("runs", "r", {"current_a": np.ones(20000)}, {"v": 1})
        cause = "Read-only file system" if fault == "read-only" else "No space left on device"
        assert cause in str(e.value) and str(mnt) in str(e.value) and "\n" not in str(e.value)
        assert s.get("runs", "r") is None and not list(s.temporary_files())


def test_a_file_in_the_way_gives_a_storage_error(tmp_path):
    (tmp_path / "runs").write_text("a file where the kind's folder goes")
    with pytest.raises(StorageError, match="runs"):
        ResultStore(tmp_path).put("runs", "r", {"a": np.zeros(1)})


def test_records_written_before_the_store_still_read(tmp_path):
    """Sweep points and validation runs were plain npz files (arrays only): read with ``legacy``."""
    import cosim.sweep.calibration as cal

    pts = tmp_path / "points"
    pts.mkdir()
    x, w = np.ones((2, 4), np.uint8), np.ones((4, 3), np.uint8)
    np.savez_compressed(pts / "point_00000.npz", inputs=x, weights=w, current_a=np.full((2, 3), 1e-6),
                        family=np.array(["random"] * 3), ngspice_version=np.array("46"), solver=np.array("klu"),
                        netlist_sha256=np.array("ab"), seconds=np.array(0.5), config=np.array("{}"))
    assert ResultStore(tmp_path, cal.POINT_LAYOUT).get("points", "00000") is None      # no digest: not trusted
    rec = ResultStore(tmp_path, cal.POINT_LAYOUT, legacy=True).get("points", "00000")
    assert float(rec["seconds"]) == 0.5 and rec.meta == {}
    df = cal.load_points([pts / "point_00000.npz"])
    assert len(df) == 6 and set(df.solver) == {"klu"} and df.current_a.eq(1e-6).all()
    # and one written now reads the same way, also by a plain np.load
    from cosim.circuit.technology import get_technology
    cfg = cal.SweepConfig(tech=get_technology("sram8t"), rows=4, cols=3, topology="decoupled", seed=0)
    p = cal._write_point(tmp_path, 1, cfg, x, w, ["random"] * 3, np.full((2, 3), 2e-6),
                         {"ngspice_version": "46", "solver": "klu", "netlist_sha256": "cd", "seconds": 0.25})
    assert p == cal._point_path(tmp_path, 1) == pts / "point_00001.npz"
    with np.load(p) as z:
        assert float(z["seconds"]) == 0.25 and str(z["netlist_sha256"]) == "cd"
    assert len(cal.load_points([p])) == 6
    # a damaged point stops the fit with one line naming it
    p.write_bytes(b"garbage")
    from cosim.errors import TableError
    with pytest.raises(TableError, match=r"point_00001.npz is unreadable \(not an npz archive\); delete it and rerun"):
        cal.load_points([p])


def test_cell_store_reads_cells_written_before(tmp_path):
    from cosim.study.runner import CellStore

    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "k1.json").write_text(json.dumps({"key": "k1", "result": {"accuracy": 0.5}}, indent=1))
    st = CellStore(tmp_path)
    assert st.get("k1") == {"key": "k1", "result": {"accuracy": 0.5}}
    assert st.put("k2", {"result": {"accuracy": np.float64(0.25)}}, kind="skew") == tmp_path / "skew" / "k2.json"
    assert st.get("k2", kind="skew")["result"] == {"accuracy": 0.25} and st.get("k2") is None
