"""The executor: local processes and a real dask.distributed LocalCluster (TCP on 127.0.0.1) give the
same SPICE results; a killed worker's task is rerun; a hung task times out and is resubmitted; a task's
own error is its result; a point that does not converge is retried with the aids, then recorded as
failed with its reason."""

import dataclasses
import os
import shutil
import signal
import stat
import threading
import time

import numpy as np
import pytest

from cosim.errors import InputError
from cosim.sweep.executor import LocalExecutor, make_executor
from cosim.circuit.netlist import ArraySpec
from cosim.sweep.pointcache import PointCache
from cosim.circuit.spice import run_array
from cosim.sweep.points import SpicePoint, run_points
from cosim.circuit.technology import get_technology

ngspice = pytest.mark.ngspice


def _points(n=8, seed=0, rows=8, cols=4, vectors=4):
    spec = ArraySpec(get_technology("resistor"), rows, cols, "decoupled")
    rng = np.random.default_rng(seed)
    return [SpicePoint(spec, (rng.random((vectors, rows)) < 0.5).astype(np.uint8),
                       (rng.random((rows, cols)) < 0.5).astype(np.uint8)) for _ in range(n)]


# --- tasks (module level: the workers import them) ---------------------------------------------
def _square(i):
    return i * i


def _fails_on_three(i):
    if i == 3:
        raise ValueError("three is bad")
    return i


def _victim(args):
    """On its first run (no marker yet) item ``victim`` writes its pid to the marker and sleeps."""
    marker, i, victim, sleep_s = args
    if i == victim and not os.path.exists(marker):
        tmp = marker + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(os.getpid()))
        os.replace(tmp, marker)
        time.sleep(sleep_s)
    return i * 10


def _always_hangs(args):
    time.sleep(60)


@pytest.fixture(scope="module")
def cluster():
    """A real dask.distributed cluster: scheduler and 2 worker processes (1 thread each) over TCP."""
    from distributed import LocalCluster

    cl = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      protocol="tcp", dashboard_address=None)
    try:
        yield cl.scheduler_address
    finally:
        cl.close()


def test_make_executor_choices(monkeypatch):
    monkeypatch.delenv("COSIM_SCHEDULER", raising=False)
    ex = make_executor(workers=3)
    assert isinstance(ex, LocalExecutor) and ex.workers == 3 and ex.kind == "local"
    with pytest.raises(InputError, match="tcp://HOST:PORT"):
        make_executor(scheduler="localhost:8786")
    with pytest.raises(InputError, match="workers"):
        make_executor(workers=0)
    monkeypatch.setenv("COSIM_SCHEDULER", "nonsense")
    with pytest.raises(InputError, match="tcp://HOST:PORT"):
        make_executor()


def test_unreachable_scheduler_is_one_line_error():
    from cosim.errors import CosimError
    from cosim.sweep.executor import DaskExecutor

    with pytest.raises(CosimError, match="cannot reach the dask scheduler"):
        DaskExecutor("tcp://127.0.0.1:9", connect_timeout_s=1)


@pytest.mark.parametrize("workers", [1, 2])
def test_local_map_order_and_task_errors(workers):
    with make_executor(workers=workers) as ex:
        got = list(ex.map(_fails_on_three, range(6), ordered=True))
    assert [r.index for r in got] == list(range(6))
    assert [r.value for r in got if r.ok] == [0, 1, 2, 4, 5]
    bad = got[3]
    assert not bad.ok and bad.error == "ValueError: three is bad" and bad.attempts == 1   # not retried


def test_local_killed_worker_is_resubmitted(tmp_path):
    marker = str(tmp_path / "pid")
    items = [(marker, i, 2, 30.0) for i in range(5)]
    with make_executor(workers=2) as ex:
        killer = _kill_when_marked(marker)
        got = list(ex.map(_victim, items, ordered=True, timeout_s=25))
        killer.join(10)
    assert [r.value for r in got] == [i * 10 for i in range(5)]
    assert got[2].attempts == 2 and all(r.ok for r in got)


def test_local_hung_task_times_out_and_is_resubmitted(tmp_path):
    marker = str(tmp_path / "pid")
    items = [(marker, i, 1, 60.0) for i in range(3)]
    t0 = time.monotonic()
    with make_executor(workers=2) as ex:
        got = list(ex.map(_victim, items, timeout_s=4.0))
    assert time.monotonic() - t0 < 40
    by = {r.index: r for r in got}
    assert sorted(by) == [0, 1, 2] and all(r.ok for r in got)
    assert by[1].attempts == 2 and by[1].value == 10
    # a task that always hangs: bounded retries, then an error that says why
    with make_executor(workers=1) as ex:
        (r,) = list(ex.map(_always_hangs, [None], timeout_s=0.5, retries=1))
    assert not r.ok and r.attempts == 2 and "gave up after 2 attempts: no result within 0.5 s" in r.error


def _kill_when_marked(marker, timeout_s=30.0):
    def kill():
        t_end = time.monotonic() + timeout_s
        while time.monotonic() < t_end:
            if os.path.exists(marker):
                os.kill(int(open(marker).read()), signal.SIGKILL)
                return
            time.sleep(0.05)
    th = threading.Thread(target=kill, daemon=True)
    th.start()
    return th


@ngspice
def test_local_and_dask_give_identical_spice_results(cluster):
    pts = _points()
    ref = [run_array(p.spec, p.inputs, p.weights).column_current_a for p in pts]
    inline = run_points(pts, cache=False)
    with make_executor(workers=2) as ex:
        local = run_points(pts, cache=False, executor=ex)
    with make_executor(scheduler=cluster) as ex:
        assert ex.kind == "dask" and ex.workers == 2
        dask = run_points(pts, cache=False, executor=ex)
    for rep in (inline, local, dask):
        assert rep.n_failed == 0 and rep.computed == len(pts)
        for a, b in zip(ref, rep.currents):
            np.testing.assert_array_equal(a, b)
    assert "dask at tcp://127.0.0.1" in dask.executor


def test_dask_killed_worker_task_is_rerun(cluster, tmp_path):
    marker = str(tmp_path / "pid")
    items = [(marker, i, 1, 30.0) for i in range(4)]
    with make_executor(scheduler=cluster) as ex:
        killer = _kill_when_marked(marker)
        got = list(ex.map(_victim, items, ordered=True, timeout_s=25))
        killer.join(10)
    assert not killer.is_alive()
    assert [r.value for r in got] == [0, 10, 20, 30] and all(r.ok for r in got)


def test_dask_hung_task_times_out_and_is_resubmitted(cluster, tmp_path):
    marker = str(tmp_path / "pid")
    items = [(marker, i, 0, 60.0) for i in range(3)]
    t0 = time.monotonic()
    with make_executor(scheduler=cluster) as ex:
        got = {r.index: r for r in ex.map(_victim, items, timeout_s=5.0)}
        # the hung worker was restarted: the cluster is whole again
        t_end = time.monotonic() + 30
        while len(ex.client.nthreads()) < 2 and time.monotonic() < t_end:
            time.sleep(0.2)
        assert len(ex.client.nthreads()) == 2
    assert time.monotonic() - t0 < 55
    assert all(r.ok for r in got.values()) and got[0].attempts == 2 and got[0].value == 0


_FAKE_NGSPICE = """#!/bin/bash
# ngspice that does not converge on decks with 3 vectors, and on decks with 5 vectors until the
# stronger stepping aid (gminsteps=1000) is in the deck; everything else goes to the real ngspice.
deck="${@: -1}"
if [ -f "$deck" ] && grep -q "vectors=3$" "$deck"; then
  echo "doAnalyses: iteration limit reached"; echo "dc sweep failed"; exit 1
fi
if [ -f "$deck" ] && grep -q "vectors=5$" "$deck" && ! grep -q "gminsteps=1000" "$deck"; then
  echo "doAnalyses: iteration limit reached"; exit 1
fi
exec REAL "$@"
"""


@ngspice
def test_non_converging_point_retried_then_recorded_failed(tmp_path, monkeypatch):
    real = shutil.which("ngspice")
    fake = tmp_path / "ngspice"
    fake.write_text(_FAKE_NGSPICE.replace("REAL", real))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    pts = _points(2, vectors=4) + _points(1, seed=1, vectors=5) + _points(1, seed=2, vectors=3)
    ref = run_array(pts[2].spec, pts[2].inputs, pts[2].weights).column_current_a     # the real ngspice
    monkeypatch.setenv("COSIM_NGSPICE", str(fake))
    cache = PointCache(tmp_path / "cache")
    rep = run_points(pts, cache=cache)
    assert rep.n_failed == 1 and set(rep.failed) == {3} and rep.computed == 4
    assert "did not converge with any convergence aid" in rep.failed[3]
    assert "gmin+source stepping: ngspice failed (exit 1): dc sweep failed" in rep.failed[3]
    assert "smaller steps: " in rep.failed[3]
    assert "1 failed" in rep.summary()
    assert [m["aid"] for m in rep.meta[:3]] == ["none", "none", "stronger stepping"]
    np.testing.assert_allclose(rep.currents[2], ref, rtol=1e-9)
    fails = cache.failures()
    assert len(fails) == 1 and fails[0]["kind"] == "nonconvergence" and fails[0]["reason"] == rep.failed[3]
    # a re-run recomputes nothing and still reports the failure; retry_failed runs it again
    again = run_points(pts, cache=cache)
    assert again.computed == 0 and again.cached == 4 and again.failed == rep.failed
    retry = run_points(pts, cache=cache, retry_failed=True)
    assert retry.computed == 1 and retry.n_failed == 1


#: tolerances below double precision: Newton can never meet them, whatever the aid (a REAL ngspice failure)
IMPOSSIBLE_TOLERANCES = "reltol=1e-20 abstol=1e-30 vntol=1e-30"


@ngspice
def test_real_non_convergence_climbs_the_ladder_then_is_recorded_failed(tmp_path):
    """A real ngspice deck (a 1T-1R array whose .options ask for tolerances below double precision) does
    not converge with the default options; the sweep retries it with gmin/source stepping, stronger
    stepping and smaller steps, records it failed with ngspice's own reason for each rung, finishes the
    other points, and reports the count. The fake-ngspice test above covers recovery on a later rung."""
    spec = ArraySpec(get_technology("reram1t1r"), 2, 2, "decoupled")
    x = np.array([[1, 1], [1, 0]], np.uint8)
    w = np.array([[1, 0], [1, 1]], np.uint8)
    pts = [SpicePoint(spec, x, w), SpicePoint(spec, x, w, options=IMPOSSIBLE_TOLERANCES), SpicePoint(spec, x, w[:, ::-1])]
    cache = PointCache(tmp_path / "cache")
    rep = run_points(pts, cache=cache)
    assert rep.computed == 3 and set(rep.failed) == {1} and rep.n_failed == 1
    assert rep.currents[1] is None and rep.currents[0] is not None and rep.currents[2] is not None
    np.testing.assert_array_equal(rep.currents[0], run_array(spec, x, w).column_current_a)
    reason = rep.failed[1]
    assert reason.startswith("reram1t1r 2x2 decoupled: did not converge with any convergence aid (")
    # every rung ran, each with ngspice's own message (not a made-up one)
    parts = reason.split("(", 1)[1].split("; ")
    assert [p.split(":")[0] for p in parts] == ["none", "gmin+source stepping", "stronger stepping", "smaller steps"]
    assert all("ngspice failed (exit 1): " in p and "gmin stepping failed" in p for p in parts), parts
    assert rep.meta[1]["kind"] == "nonconvergence" and rep.meta[1]["attempts"] == 1
    assert "3 points: 3 computed, 0 from the cache, 1 failed" in rep.summary()
    assert f"first failure, point 1: {reason}" in rep.summary()
    (fail,) = cache.failures()
    assert fail["reason"] == reason and fail["kind"] == "nonconvergence"
    # the options are part of the point's key: the same array without them is another (cached, good) point
    again = run_points(pts, cache=cache)
    assert again.computed == 0 and again.cached == 3 and again.failed == rep.failed


@ngspice
def test_every_convergence_aid_gives_the_plain_result():
    """Each rung of the ladder really changes the deck (the smaller-steps rung finds the .dc line) and
    converges to the same currents as the plain run."""
    from cosim.circuit.netlist import build_netlist
    from cosim.sweep.points import AIDS, _substep_deck, run_robust

    spec = ArraySpec(get_technology("reram1t1r"), 4, 3, "decoupled")
    rng = np.random.default_rng(5)
    x, w = (rng.random((4, 4)) < 0.5).astype(np.uint8), (rng.random((4, 3)) < 0.5).astype(np.uint8)
    assert _substep_deck(build_netlist(spec, x, w), 4, 8) is not None
    plain = run_array(spec, x, w).column_current_a
    for aid in AIDS:
        got = run_robust(spec, x, w, aids=[aid])
        assert got["aid"] == aid.name
        # the smaller-steps rung reaches each vector along another path (a continuation from fractional row
        # drives), so Newton stops at another point within ngspice's tolerances (reltol 1e-3): measured 4e-6
        # relative with the compiled device models; the other rungs solve the same deck and agree exactly
        rtol = 1e-4 if aid.substeps > 1 else 1e-6
        np.testing.assert_allclose(got["current_a"], plain, rtol=rtol, atol=1e-15)


@ngspice
def test_calibration_through_the_cluster_matches_local(cluster, tmp_path, capsys):
    """A small calibration (cosim calibrate, the CLI) through the LocalCluster gives the same table as
    local processes; the points land in the cache, so a second calibration computes nothing."""
    from cosim.sweep.calibration import SweepConfig
    from cosim.surrogate.fit import calibrate
    from cosim.cli import main
    from cosim.surrogate.tables import load_table

    cfg = SweepConfig(tech=get_technology("resistor"), rows=8, cols=4, topology="decoupled", seed=3, vectors=4)
    local = calibrate(cfg, 4, tmp_path / "local", workers=2, progress=False, cache=False)
    main(["calibrate", "--tech", "resistor", "--rows", "8", "--cols", "4", "--topology", "decoupled", "--points", "4",
          "--vectors", "4", "--seed", "3", "--out", str(tmp_path / "dask"), "--scheduler", cluster,
          "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert "4 points" in capsys.readouterr().out
    remote = load_table(tmp_path / "dask" / "table.parquet")
    for k in local.arrays:
        np.testing.assert_array_equal(local.arrays[k], remote.arrays[k])
    assert PointCache(tmp_path / "cache").info()["entries"] == 4
    # same sweep elsewhere: every point from the cache
    from cosim.sweep.calibration import run_sweep
    run_sweep(cfg, 4, tmp_path / "again", progress=False, cache=tmp_path / "cache", scheduler=cluster)
    for i in range(4):
        a = np.load(tmp_path / "dask" / "points" / f"point_{i:05d}.npz")
        b = np.load(tmp_path / "again" / "points" / f"point_{i:05d}.npz")
        np.testing.assert_array_equal(a["current_a"], b["current_a"])
        assert float(a["seconds"]) == float(b["seconds"])        # the cached record, not a new run
    # another model form from the same (cached) points: degree-4 terms, 5 knots
    main(["calibrate", "--tech", "resistor", "--rows", "8", "--cols", "4", "--topology", "decoupled", "--points", "4",
          "--vectors", "4", "--seed", "3", "--out", str(tmp_path / "quartic"), "--terms", "quartic", "--knots", "5",
          "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    q = load_table(tmp_path / "quartic" / "table.parquet")
    assert q.meta["n_knots"] == 5 and max(len(t) for t in q.meta["terms"]) == 4
    assert len(q.meta["terms"]) == len(local.meta["terms"]) + 35
    # and with sine moments: their squares are terms, and the surrogate reads the table back
    main(["calibrate", "--tech", "resistor", "--rows", "8", "--cols", "4", "--topology", "decoupled", "--points", "4",
          "--vectors", "4", "--seed", "3", "--out", str(tmp_path / "sine"), "--orders", "1,2,3,4,s1,s2",
          "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    s = load_table(tmp_path / "sine" / "table.parquet")
    assert s.meta["orders"] == [1, 2, 3, 4, "s1", "s2"] and {"ms1*ms1", "ms2*ms2"} <= set(s.meta["features"])
    from cosim.surrogate.evaluate import Surrogate
    assert Surrogate.from_table(s).column_currents(np.ones((2, 8)), np.ones((8, 4))).shape == (2, 4)


@pytest.mark.shared
def test_study_cells_through_the_cluster_match_local(cluster, tmp_path, capsys):
    """`cosim report --scheduler` computes the grid's cells on the LocalCluster's workers (each loads the
    weights, test images and tables itself and checks they are the caller's) with the same results as the
    default run in this process; the cells land in the caller's cache, so a rerun computes nothing."""
    import pandas as pd

    from cosim.cli import main
    from cosim.bnn.datasets import write_synthetic
    from cosim.study import runner
    from cosim.study.config import load_config
    data = write_synthetic(tmp_path / "data", n_train_per_class=1, n_test_per_class=1)
    cfg_path = tmp_path / "study.toml"
    cfg_path.write_text('[grid]\nnetworks = ["vgg-small"]\ntechnologies = ["sram8t"]\nrows = [64]\nr_wire_ohm = [10.0]\n'
                        'variants = ["software", "binsparx"]\n[run]\nlimit = 2\nskew_images = 1\n'
                        f'[paths]\ncache = "{tmp_path / "cache"}"\ndata = "{data}"\n')
    cfg = load_config(cfg_path)
    torch_threads = __import__("torch").get_num_threads()
    try:
        __import__("torch").set_num_threads(cfg.threads)        # as `cosim report` does
        local_ctx = runner.StudyContext(dataclasses.replace(cfg, cache=str(tmp_path / "local")))
        local = runner.run_cells(cfg.cells(), local_ctx, progress=False)
    finally:
        __import__("torch").set_num_threads(torch_threads)
    main(["report", "--config", str(cfg_path), "--out", str(tmp_path / "out"), "--no-progress", "--scheduler", cluster])
    assert "cells on: dask at tcp://127.0.0.1" in capsys.readouterr().err
    dsk = pd.read_csv(tmp_path / "out" / "report" / "results.csv")
    assert [r.status for r in local] == ["computed"] * 2
    assert (dsk.status == "computed").all(), dsk.reason.tolist()
    assert dsk.correct.tolist() == [r.result["correct"] for r in local]
    remote = runner.run_cells(cfg.cells(), runner.StudyContext(cfg), progress=False)   # read back from the cache
    assert [r.status for r in remote] == ["cached"] * 2
    for a, b in zip(runner.run_cells(cfg.cells(), local_ctx, progress=False), remote):   # both as cached (JSON)
        assert a.key == b.key
        keys = [k for k in ("accuracy", "correct", "n", "stats", "layer_stats", "array_energy_per_image_j") if k in a.result]
        assert {k: a.result[k] for k in keys} == {k: b.result.get(k) for k in keys}
    assert remote[1].result["stats"]["on_cell_fraction"] > 0


class _FailsOffTheCaller:
    """A compute only the caller's process can run: on a worker it fails like a lost input would."""

    def __init__(self, caller_pid):
        self.caller_pid = caller_pid

    def __call__(self, cell, ctx):
        from cosim.errors import DataError

        if os.getpid() != self.caller_pid:
            raise DataError(f"no test images on worker {os.getpid()}")
        return {"accuracy": 1.0, "correct": 1, "n": 1}


def _fixed_payload(cell, ctx):
    return {"cell": cell.as_dict()}


def test_study_cell_errors_on_workers_are_reported_not_cached(tmp_path):
    from cosim.study import runner
    from cosim.study.config import parse_config

    compute = _FailsOffTheCaller(os.getpid())
    cfg = parse_config({"grid": {"networks": ["vgg-small"], "technologies": ["sram8t"], "rows": [64],
                                 "r_wire_ohm": [10.0], "variants": ["software", "nonideal"]},
                        "paths": {"cache": str(tmp_path / "cache")}})
    ctx = runner.StudyContext(cfg)
    with make_executor(workers=2) as ex:
        res = runner.run_cells(cfg.cells(), ctx, compute=compute, payload=_fixed_payload,
                               progress=False, executor=ex)
    assert [r.status for r in res] == ["not run", "not run"] and "no test images on worker" in res[0].reason
    assert not list((tmp_path / "cache").rglob("*.json"))
    res = runner.run_cells(cfg.cells(), ctx, compute=compute, payload=_fixed_payload, progress=False)
    assert [r.status for r in res] == ["computed", "computed"]


@ngspice
def test_validation_points_through_the_cluster_match_local(cluster, tmp_path):
    """`cosim validate`'s SPICE points are tasks of the same executor: inline, 2 local processes and the
    LocalCluster give the same report; failed runs would be listed (none here)."""
    from cosim.sweep.calibration import SweepConfig
    from cosim.surrogate.fit import calibrate
    from cosim.surrogate.validate import validate

    cfg = SweepConfig(tech=get_technology("resistor"), rows=8, cols=4, topology="decoupled", seed=3, vectors=4)
    table = calibrate(cfg, 3, tmp_path / "cal", progress=False, cache=False)
    kw = dict(patterns=["random", "skewed"], n_columns=32, vectors=4, cols=4, cache=False)
    inline = validate(table, **kw)
    with make_executor(workers=2) as ex:
        local = validate(table, executor=ex, **kw)
    with make_executor(scheduler=cluster) as ex:
        dask = validate(table, executor=ex, **kw)
    assert dask["provenance"]["executor"].startswith("dask at tcp://127.0.0.1")
    assert local["provenance"]["executor"] == "local, 2 processes"
    for rep in (local, dask):
        assert rep["failed_runs"] == [] and rep["provenance"]["spice_runs"] == 4
        for key in ("code_agreement", "current_rel_rmse", "n_columns", "baselines", "per_on_count", "patterns"):
            assert rep[key] == inline[key], key
