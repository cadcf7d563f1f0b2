"""The SPICE point cache: keys, atomic one-file-per-point store, corrupt entries treated as missing,
failure records, resume after kill -9 with only the missing points recomputed, ``cosim cache``."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cosim.cli import main
from cosim.circuit.netlist import ArraySpec
from cosim.sweep.pointcache import PointCache, point_key
from cosim.circuit.spice import run_array
from cosim.sweep.points import SpicePoint, run_points
from cosim.circuit.technology import get_technology


def _key(**kw):
    args = dict(netlist_sha256="a" * 64, ngspice_version="46", solver="klu", backend="subprocess", options="")
    args.update(kw)
    return point_key(**args)


def test_key_depends_on_everything_that_decides_the_result():
    base = _key()
    assert len(base) == 64 and base == _key()
    for change in (dict(netlist_sha256="b" * 64), dict(ngspice_version="45"), dict(solver="sparse"),
                   dict(backend="shared"), dict(options="gminsteps=10")):
        assert _key(**change) != base


def test_put_get_failure_and_corrupt_entries(tmp_path):
    c = PointCache(tmp_path)
    k = _key()
    assert c.get(k) is None
    cur = np.arange(12, dtype=np.float64).reshape(3, 4) * 1e-6
    path = c.put(k, cur, {"ngspice_version": "46", "aid": "none"})
    assert path == tmp_path / k[:2] / f"{k}.npz" and path.is_file()
    hit = c.get(k)
    np.testing.assert_array_equal(hit.current_a, cur)
    assert hit.meta["aid"] == "none" and hit.meta["key"] == k and "date_utc" in hit.meta
    assert not list(tmp_path.rglob("*.tmp"))                 # nothing left behind by the atomic write
    # a truncated file and a file with a flipped bit are both treated as missing and removed
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert c.get(k) is None and not path.exists() and c.corrupt == 1
    c.put(k, cur, {})
    raw = bytearray(path.read_bytes())
    i = raw.index(np.float64(cur[1, 1]).tobytes())
    raw[i] ^= 0x01                                           # one flipped bit (the zip CRC catches it)
    path.write_bytes(bytes(raw))
    assert c.get(k) is None and c.corrupt == 2
    # a well-formed file whose numbers do not match its digest (edited by hand) is not trusted either
    c.put(k, cur, {})
    with np.load(path) as z:
        parts = {n: z[n] for n in z.files}
    parts["current_a"] = parts["current_a"] * 2
    with open(path, "wb") as f:
        np.savez(f, **parts)
    assert c.get(k) is None and c.corrupt == 3
    # a writer killed before its rename leaves only a temporary file, which is never read back
    (tmp_path / k[:2] / f".{k}.npz.123.deadbeef.tmp").write_bytes(data[:100])
    assert c.get(k) is None
    # failure records keep their reason; a later success replaces them
    c.put_failure(k, "did not converge", {"kind": "nonconvergence"})
    assert c.get_failure(k)["reason"] == "did not converge"
    info = c.info()
    assert (info["entries"], info["failed"], info["tmp_files"]) == (0, 1, 1)
    c.put(k, cur, {})
    assert c.get_failure(k) is None and c.info()["entries"] == 1
    with pytest.raises(Exception, match="not a point key"):
        c.get("../../etc/passwd")


def test_prune_by_age_failed_and_dry_run(tmp_path):
    c = PointCache(tmp_path)
    old, new, bad = _key(solver="a"), _key(solver="b"), _key(solver="c")
    for k in (old, new):
        c.put(k, np.ones((1, 2)), {})
    c.put_failure(bad, "x", {})
    t = time.time() - 3 * 86400
    os.utime(c.path(old), (t, t))
    stale_tmp = tmp_path / old[:2] / f".{old}.npz.1.ab.tmp"
    stale_tmp.write_bytes(b"x")
    os.utime(stale_tmp, (t, t))
    assert c.prune(older_than_s=86400, dry_run=True) == {"removed": 2, "bytes": c.path(old).stat().st_size + 1,
                                                          "dry_run": True}
    assert c.get(old) is not None
    assert c.prune(older_than_s=86400)["removed"] == 2
    assert c.get(old) is None and c.get(new) is not None and not stale_tmp.exists()
    assert c.prune(failed_only=True)["removed"] == 1 and c.get(new) is not None
    assert c.prune()["removed"] == 1 and c.info()["entries"] == 0


def test_cache_cli(tmp_path, capsys):
    c = PointCache(tmp_path)
    c.put(_key(), np.ones((2, 2)), {})
    c.put_failure(_key(solver="x"), "did not converge (iteration limit)", {"kind": "nonconvergence"})
    main(["cache", "info", "--dir", str(tmp_path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["entries"] == 1 and out["failed"] == 1 and out["bytes"] > 0
    assert out["failures"][0]["reason"] == "did not converge (iteration limit)"
    main(["cache", "info", "--dir", str(tmp_path), "--failed"])
    text = capsys.readouterr().out
    assert "entries: 1 points" in text and "iteration limit" in text
    main(["cache", "prune", "--dir", str(tmp_path), "--all", "--dry-run"])
    assert "would remove 2 files" in capsys.readouterr().out and c.info()["entries"] == 1
    main(["cache", "prune", "--dir", str(tmp_path), "--older-than", "1h"])
    assert "removed 0 files" in capsys.readouterr().out
    main(["cache", "prune", "--dir", str(tmp_path), "--all"])
    assert "removed 2 files" in capsys.readouterr().out and c.info()["entries"] == 0
    for args, msg in ((["prune"], "say what to remove"), (["prune", "--older-than", "soon"], "age must look like"),
                      (["prune", "--all", "--older-than", "1d"], "not both")):
        with pytest.raises(SystemExit) as e:
            main(["cache", *args, "--dir", str(tmp_path)])
        assert e.value.code == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and msg in err and "Traceback" not in err


_SWEEP = textwrap.dedent("""
    import sys, time
    import numpy as np
    from cosim.circuit.netlist import ArraySpec
    from cosim.sweep.points import SpicePoint, run_points
    from cosim.circuit.technology import get_technology

    def points(n):
        spec = ArraySpec(get_technology("resistor"), 8, 4, "decoupled")
        rng = np.random.default_rng(7)
        return [SpicePoint(spec, (rng.random((4, 8)) < 0.5).astype(np.uint8),
                           (rng.random((8, 4)) < 0.5).astype(np.uint8)) for _ in range(n)]

    if __name__ == "__main__":
        # slow the sweep down after each stored point so the parent can kill it in the middle
        run_points(points(int(sys.argv[2])), cache=sys.argv[1], on_result=lambda i, c, m: time.sleep(0.3))
""")


@pytest.mark.ngspice
def test_kill9_mid_sweep_then_resume_recomputes_only_missing(tmp_path):
    n = 12
    script = tmp_path / "sweep.py"
    script.write_text(_SWEEP)
    store = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path)] + sys.path)}
    proc = subprocess.Popen([sys.executable, str(script), str(store), str(n)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        t_end = time.monotonic() + 60
        while PointCache(store).info()["entries"] < 3 and time.monotonic() < t_end and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    kept = PointCache(store).info()["entries"]
    assert 3 <= kept < n
    sys.path.insert(0, str(tmp_path))
    try:
        import sweep as sweep_script
        pts = sweep_script.points(n)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("sweep", None)
    rep = run_points(pts, cache=store)
    assert rep.cached == kept and rep.computed == n - kept and rep.n_failed == 0 and rep.corrupt == 0
    for p, cur in zip(pts, rep.currents):
        np.testing.assert_array_equal(cur, run_array(p.spec, p.inputs, p.weights).column_current_a)
    again = run_points(pts, cache=store)
    assert again.computed == 0 and again.cached == n


def test_run_points_rejects_non_points():
    from cosim.errors import InputError

    spec = ArraySpec(get_technology("resistor"), 2, 2, "decoupled")
    with pytest.raises(InputError, match="not a SpicePoint"):
        run_points([SpicePoint(spec, np.ones((1, 2)), np.ones((2, 2))), "x"], cache=False)


@pytest.mark.ngspice
def test_worker_with_other_ngspice_is_reported_and_stored_under_its_own_key(tmp_path):
    """The caller keys points by the ngspice its workers report; a worker that then runs another build
    stores its result under the key of what really ran, and the report says so."""
    from cosim.sweep.executor import LocalExecutor

    class StaleProbe(LocalExecutor):
        def run_everywhere(self, fn):
            return {"w": {**fn(), "version": "45"}}

    spec = ArraySpec(get_technology("resistor"), 4, 2, "decoupled")
    pts = [SpicePoint(spec, np.ones((2, 4)), np.eye(4, 2))]
    rep = run_points(pts, executor=StaleProbe(1), cache=tmp_path)
    assert rep.mismatched == 1 and "another netlist or ngspice" in rep.summary()
    assert run_points(pts, cache=tmp_path).cached == 1        # found under the real build's key


@pytest.mark.ngspice
def test_cache_true_means_the_default_cache(tmp_path, monkeypatch):
    """``cache=True`` (the type allows a bool) is the default cache, $COSIM_CACHE/spice, as None is;
    it raised a TypeError (Path(True)) before mypy pointed at it."""
    monkeypatch.setenv("COSIM_CACHE", str(tmp_path))
    spec = ArraySpec(get_technology("resistor"), 4, 2, "decoupled")
    pts = [SpicePoint(spec, np.ones((2, 4)), np.eye(4, 2))]
    rep = run_points(pts, cache=True)
    assert rep.computed == 1 and rep.n_failed == 0
    assert PointCache(tmp_path / "spice").info()["entries"] == 1
    assert run_points(pts, cache=None).cached == 1
