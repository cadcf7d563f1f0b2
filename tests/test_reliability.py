"""Reliability (issue #21): resource bounds, file-system faults, device-model fallbacks, lost schedulers,
orphans, misleading messages. Each test is fast; those that need a mount, ngspice or dask skip without."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from cosim.errors import InputError
from test_cli_infer import _run




def _one_line_error(code, io) -> str:
    """The one 'error: ...' line of a failed command (other lines on stderr are its progress notes)."""
    assert code not in (0, None), io.err
    assert "Traceback" not in io.err, io.err
    errors = [ln for ln in io.err.splitlines() if ln.startswith("error")]
    assert len(errors) == 1 and errors[0] == io.err.strip().splitlines()[-1], io.err
    return errors[0]


def _usage_error(code, io) -> str:
    """click's refusal of an option value: exit status 2, the reason on the last line."""
    assert code == 2, io.err
    return io.err.strip().splitlines()[-1]


# --- resource bounds -------------------------------------------------------------------------------
@pytest.mark.parametrize("opt,value", [("--cols", "1000000"), ("--rows", "1000000"), ("--cols", "0"),
                                       ("--rows", "513")])
def test_infer_refuses_array_sizes_out_of_bounds(opt, value, capsys):
    code, io = _run(["infer", "--model", "vgg-small", "--mode", "ideal", opt, value, "--limit", "1"], capsys)
    err = _usage_error(code, io)
    assert opt in err and "512" in err


@pytest.mark.parametrize("kw", [{"cols": 1_000_000}, {"rows": 1_000_000}, {"cols": 0}, {"rows": 2.5}])
def test_to_cim_refuses_sizes_before_allocating(kw):
    from torch import nn
    from cosim.cim import to_cim

    with pytest.raises(InputError, match="from 1 to 512"):
        to_cim(nn.Sequential(), mode="ideal", **kw)


@pytest.mark.parametrize("value", ["0", "-3", "100000"])
def test_validate_refuses_cols_out_of_bounds(value, tmp_path, capsys):
    code, io = _run(["validate", "--table", str(tmp_path / "missing.parquet"), "--cols", value], capsys)
    err = _usage_error(code, io)
    assert "--cols" in err


def test_validate_function_refuses_cols_zero():
    from cosim.cim.synthetic import synthetic_table
    from cosim.surrogate.validate import validate

    table = synthetic_table("resistor", 8, 8, samples=200, ir_drop=0.0)
    with pytest.raises(InputError, match="cols must be an integer from 1 to 512, got 0"):
        validate(table, cols=0, n_columns=8, vectors=2, cache=False)


# --- file-system faults ------------------------------------------------------------------------------
@contextmanager
def _tmpfs(path: Path, size_kb: int, read_only: bool = False, fill: bool | int = False):
    """A tiny tmpfs at ``path`` (read-only, or filled up); the test is skipped where mounting is refused
    (not root, no mount). root ignores file modes, so a chmod'ed folder would not do."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()[:100]}")
    try:
        if fill:   # True: full; an int: leave about that many kB free
            fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT)
            left_kb = 0 if fill is True else int(fill)
            try:
                for _ in range(size_kb // 4 - left_kb // 4 if left_kb else 10 ** 6):
                    os.write(fd, b"\0" * 4096)
            except OSError as e:
                assert e.errno == errno.ENOSPC
            finally:
                os.close(fd)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _resistor_cfg(seed=0):
    from cosim.sweep.calibration import SweepConfig
    from cosim.circuit.technology import get_technology

    return SweepConfig(tech=get_technology("resistor"), rows=8, cols=4, topology="decoupled", seed=seed, vectors=4)


def _calibrate_args(out, *extra):
    return ["calibrate", "--tech", "resistor", "--rows", "8", "--cols", "4", "--points", "2", "--vectors", "4",
            "--out", str(out), "--no-progress", *extra]


@pytest.mark.ngspice
@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_calibrate_out_on_a_faulty_file_system(fault, tmp_path, capsys):
    with _tmpfs(tmp_path / "mnt", 64, read_only=fault == "read-only", fill=fault == "full") as mnt:
        code, io = _run(_calibrate_args(mnt / "cal", "--no-cache"), capsys)
        err = _one_line_error(code, io)
        cause = "Read-only file system" if fault == "read-only" else "No space left on device"
        assert str(mnt / "cal") in err and cause in err
        assert not any(p.name.startswith(".") for p in mnt.rglob("*")), "no partial files"


@pytest.mark.ngspice
def test_calibrate_out_inside_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    code, io = _run(_calibrate_args(f / "cal", "--no-cache"), capsys)
    err = _one_line_error(code, io)
    assert str(f / "cal") in err and "Not a directory" in err
    code, io = _run(_calibrate_args(f, "--no-cache"), capsys)
    assert "is a file" in _usage_error(code, io)
    from cosim.fileio import check_writable
    from cosim.errors import StorageError
    with pytest.raises(StorageError, match="it is a file, not a folder"):
        check_writable(f, "the output folder")


@pytest.mark.ngspice
@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_calibrate_with_an_unwritable_point_cache_stops_before_computing(fault, tmp_path, capsys):
    with _tmpfs(tmp_path / "mnt", 64, read_only=fault == "read-only", fill=fault == "full") as mnt:
        code, io = _run(_calibrate_args(tmp_path / "cal", "--cache-dir", str(mnt / "spice")), capsys)
        err = _one_line_error(code, io)
        assert str(mnt / "spice") in err and "SPICE point cache" in err and "--no-cache" in err
    assert not list((tmp_path / "cal").glob("points/*.npz"))


@pytest.mark.ngspice
def test_a_point_the_cache_cannot_take_is_still_kept_in_out(tmp_path, monkeypatch):
    """The cache fills up in the middle of a sweep: the point whose cache write failed is written to the
    output folder, the sweep stops there with one line, and a rerun resumes bit-identically."""
    from cosim.surrogate.fit import calibrate
    from cosim.errors import StorageError
    from cosim.sweep.pointcache import PointCache

    real_put = PointCache.put
    calls = []

    def put(self, key, current_a, meta):
        calls.append(key)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path(key)))
        return real_put(self, key, current_a, meta)

    monkeypatch.setattr(PointCache, "put", put)
    cfg = _resistor_cfg()
    with pytest.raises(StorageError, match="No space left on device") as ei:
        calibrate(cfg, 4, tmp_path / "cal", progress=False, cache=tmp_path / "cache")
    assert "stopped after 2 computed point(s)" in str(ei.value) and "2 of 4 points are kept" in str(ei.value)
    assert len(str(ei.value).splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "cal" / "points").glob("*.npz")) == ["point_00000.npz",
                                                                                  "point_00001.npz"]
    monkeypatch.setattr(PointCache, "put", real_put)
    resumed = calibrate(cfg, 4, tmp_path / "cal", progress=False, cache=tmp_path / "cache")
    fresh = calibrate(cfg, 4, tmp_path / "fresh", progress=False, cache=False)
    for k in fresh.arrays:
        np.testing.assert_array_equal(fresh.arrays[k], resumed.arrays[k])


@pytest.mark.ngspice
def test_calibrate_refuses_a_table_it_did_not_write_and_an_empty_sweep_record(tmp_path):
    from cosim.sweep.calibration import run_sweep

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "table.parquet").write_bytes(b"someone else's table")
    with pytest.raises(InputError, match="not written by a sweep in this folder"):
        run_sweep(_resistor_cfg(), 1, tmp_path / "a", progress=False, cache=False)
    assert (tmp_path / "a" / "table.parquet").read_bytes() == b"someone else's table"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "sweep.json").write_text("")
    with pytest.raises(InputError, match="sweep.json is empty: not the record of a sweep"):
        run_sweep(_resistor_cfg(), 1, tmp_path / "b", progress=False, cache=False)


# --- the report ---------------------------------------------------------------------------------------
@pytest.fixture
def stub_study(monkeypatch, tmp_path):
    """The report command on stub cells and skew statistics (test_study's stubs), run in tmp_path."""
    from test_study import _stub_study

    calls = []
    _stub_study(monkeypatch, calls)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COSIM_CACHE", str(tmp_path / "cache"))
    return calls


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_report_into_a_faulty_file_system(fault, stub_study, tmp_path, capsys):
    with _tmpfs(tmp_path / "mnt", 64, read_only=fault == "read-only", fill=fault == "full") as mnt:
        code, io = _run(["report", "--quick", "--no-progress", "--out", str(mnt / "rep")], capsys)
        err = _one_line_error(code, io)
        assert str(mnt / "rep") in err
        assert ("Read-only file system" if fault == "read-only" else "No space left on device") in err
        assert stub_study == [], "refused before computing any cell"
        assert not [p for p in mnt.rglob("*") if p.name != "filler"], "no partial files"


def test_report_full_disk_while_writing_leaves_the_old_report_whole(stub_study, tmp_path, monkeypatch, capsys):
    from cosim.study import report

    assert _run(["report", "--quick", "--no-progress", "--out", "rep"], capsys)[0] == 0
    before = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "rep").rglob("*") if p.is_file()}

    def no_space(*a, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "rep" / "x.png"))

    monkeypatch.setattr(report, "plot_histograms", no_space)
    code, io = _run(["report", "--quick", "--no-progress", "--out", "rep"], capsys)
    assert "No space left on device" in _one_line_error(code, io)
    after = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "rep").rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in (tmp_path / "rep").iterdir() if p.name.startswith(".")]


def test_report_rerun_into_another_reports_folder_leaves_no_old_files(stub_study, tmp_path, capsys):
    (tmp_path / "rep" / "report").mkdir(parents=True)
    (tmp_path / "rep" / "report" / "acc_vs_rows_resnet18_sram8t.png").write_bytes(b"old figure")
    (tmp_path / "rep" / "report" / "costs.csv").write_text("old costs")
    (tmp_path / "rep" / "MULTIBIT.json").write_text("{}")      # beside REPORT.md, not the report's own
    assert _run(["report", "--quick", "--no-progress", "--out", "rep"], capsys)[0] == 0
    files = {p.name for p in (tmp_path / "rep" / "report").iterdir()}
    assert "acc_vs_rows_resnet18_sram8t.png" not in files and "costs.csv" not in files
    assert "provenance.json" in files and (tmp_path / "rep" / "MULTIBIT.json").read_text() == "{}"
    assert not any(p.stat().st_size == 0 for p in (tmp_path / "rep").rglob("*") if p.is_file())


def test_report_generated_by_gives_the_whole_command(stub_study, tmp_path, capsys):
    import json

    args = ["report", "--quick", "--limit", "7", "--skew-images", "3", "--cache", "my cells", "--out", "rep"]
    assert _run(args + ["--no-progress"], capsys)[0] == 0
    cmd = "cosim report --quick --limit 7 --skew-images 3 --cache 'my cells' --out rep"
    assert f"Generated by `{cmd}`" in (tmp_path / "rep" / "REPORT.md").read_text()
    assert json.loads((tmp_path / "rep" / "report" / "provenance.json").read_text())["command"] == cmd


def test_a_cell_the_cache_cannot_take_is_kept_and_no_more_are_computed(tmp_path, monkeypatch):
    from cosim.study import runner
    from cosim.study.config import load_config

    cfg = load_config(None, quick=True)
    ctx = runner.StudyContext(cfg)
    cells = cfg.cells()[:3]

    def put(self, key, obj, kind="cells"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path(key, kind)))

    monkeypatch.setattr(runner.CellStore, "put", put)
    monkeypatch.setattr(runner.CellStore, "get", lambda self, key, kind="cells": None)
    res = runner.run_cells(cells, ctx, compute=_compute_stub, payload=_payload_stub, progress=False)
    assert [r.status for r in res] == ["computed", "not run", "not run"]
    assert res[0].result == {"accuracy": 0.5}
    assert res[1].reason.startswith(runner.CACHE_FAULT) and "No space left on device" in res[1].reason


def _compute_stub(cell, ctx):
    return {"accuracy": 0.5}


def _payload_stub(cell, ctx):
    return {"cell": cell.as_dict()}


@pytest.mark.ngspice
@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_validate_out_and_cache_on_a_faulty_file_system(fault, tmp_path, capsys):
    from cosim.cim.synthetic import synthetic_table

    table = synthetic_table("resistor", 8, 8, samples=200, ir_drop=0.0).save(tmp_path / "t.parquet")
    args = ["validate", "--table", str(table), "--n", "8", "--vectors", "2", "--cols", "4"]
    cause = "Read-only file system" if fault == "read-only" else "No space left on device"
    with _tmpfs(tmp_path / "mnt", 64, read_only=fault == "read-only", fill=fault == "full") as mnt:
        code, io = _run(args + ["--out", str(mnt / "runs"), "--no-cache"], capsys)
        err = _one_line_error(code, io)
        assert f"cannot write the output folder {mnt / 'runs'}: {cause}" in err
        code, io = _run(args + ["--cache-dir", str(mnt / "spice")], capsys)
        err = _one_line_error(code, io)
        assert f"cannot write the SPICE point cache {mnt / 'spice'}: {cause}" in err
        assert not [p for p in mnt.rglob("*") if p.name != "filler"]


# --- device-model fallback ---------------------------------------------------------------------------
def _compiled_models_usable() -> bool:
    try:
        from cosim.circuit.spice.detect import compiled_models_status
        return compiled_models_status()[0]
    except Exception:  # noqa: BLE001 - no ngspice
        return False


@pytest.mark.ngspice
@pytest.mark.skipif(not _compiled_models_usable(), reason="this ngspice does not run the compiled models anyway")
def test_spice_reports_a_fallback_to_the_bsource_models(tmp_path, monkeypatch, capsys):
    """A read-only cache cannot hold the compiled device models: cosim spice still runs, on the B-source
    models, and says so on stderr, in the JSON and in the provenance."""
    import json

    args = ["spice", "--tech", "sram8t", "--rows", "2", "--cols", "1", "--json"]
    with _tmpfs(tmp_path / "mnt", 64, read_only=True) as mnt:
        monkeypatch.setenv("COSIM_CACHE", str(mnt))
        monkeypatch.delenv("COSIM_SPICE_MODELS", raising=False)
        code, io = _run(args, capsys)
    assert code == 0, io.err
    out = json.loads(io.out)
    assert out["device_models"] == "bsource"
    assert "Read-only file system" in out["device_models_fallback"]
    assert out["provenance"]["device_models_fallback"] == out["device_models_fallback"]
    warning = [ln for ln in io.err.splitlines() if ln.startswith("warning: device models: B-source instead")]
    assert len(warning) == 1 and "Read-only file system" in warning[0]
    # asked for explicitly: no fallback, no warning
    monkeypatch.setenv("COSIM_CACHE", str(tmp_path / "cache"))
    code, io = _run(args + ["--models", "bsource"], capsys)
    assert code == 0 and json.loads(io.out)["device_models_fallback"] is None and "warning" not in io.err


# --- a lost dask scheduler ---------------------------------------------------------------------------
@contextmanager
def _subprocess_cluster(tmp_path: Path, extra_args=(), env=None):
    """A dask scheduler and one worker as separate processes on 127.0.0.1 (so the test can kill -9 the
    scheduler); yields (address, scheduler process)."""
    import json
    import sys
    import time

    pytest.importorskip("distributed")
    sfile = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **(env or {})}
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                              "--port", "0", "--scheduler-file", str(sfile), "--no-dashboard", *extra_args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    worker = None
    try:
        t0 = time.monotonic()
        while not sfile.is_file() and time.monotonic() - t0 < 30:
            time.sleep(0.1)
        address = json.loads(sfile.read_text())["address"]
        log = tmp_path / "worker.log"
        with open(log, "wb") as out:
            worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                       "--no-dashboard", "--host", "127.0.0.1", *extra_args],
                                      stdout=subprocess.DEVNULL, stderr=out, env=env)
        # the worker registered before the test goes on (a loaded machine takes seconds to start it)
        t0 = time.monotonic()
        while b"Registered to" not in log.read_bytes() and worker.poll() is None and time.monotonic() - t0 < 120:
            time.sleep(0.2)
        yield address, sched
    finally:
        for p in (worker, sched):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)


@pytest.mark.ngspice
def test_a_lost_scheduler_is_one_line_with_what_is_kept(tmp_path, monkeypatch, capsys):
    """kill -9 of the scheduler in the middle of a calibration: one line that says the scheduler was
    lost, how many points are kept and that a rerun resumes; no traceback from dask's client either."""
    from cosim.sweep import calibration as cal
    from cosim.sweep import executor

    monkeypatch.setattr(executor, "CONNECT_TIMEOUT_S", 2.0)   # also the client's time to reconnect
    with _subprocess_cluster(tmp_path) as (address, sched):
        real_write = cal._write_point

        def write_then_kill_scheduler(*args, **kw):
            path = real_write(*args, **kw)
            if sched.poll() is None:
                sched.kill()
                sched.wait(10)
            return path

        monkeypatch.setattr(cal, "_write_point", write_then_kill_scheduler)
        args = ["calibrate", "--tech", "resistor", "--rows", "8", "--cols", "4", "--points", "30", "--vectors", "4",
                "--out", str(tmp_path / "cal"), "--no-cache", "--no-progress", "--scheduler", address]
        code, io = _run(args, capsys)
    err = _one_line_error(code, io)
    kept = len(list((tmp_path / "cal" / "points").glob("*.npz")))
    assert 1 <= kept < 30
    assert f"lost the dask scheduler at {address}" in err and f"{kept} of 30 points are kept" in err
    assert "run the same command again" in err


# --- a safe cluster: TLS ------------------------------------------------------------------------------
def _pem_pair(subject: str, issuer_key=None, issuer_name=None, ca: bool = False):
    """(certificate PEM, key PEM) for 127.0.0.1/localhost, signed by the issuer (self-signed without one)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
    cert = b.sign(issuer_key or key, hashes.SHA256())
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()), key, name)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A certificate authority, a certificate and key it signed (for scheduler, workers and client), and
    a certificate of another authority: PEM files."""
    pytest.importorskip("cryptography")
    d = tmp_path_factory.mktemp("tls")
    ca_pem, _, ca_key, ca_name = _pem_pair("cosim test CA", ca=True)
    cert_pem, key_pem, _, _ = _pem_pair("cosim node", ca_key, ca_name)
    other_ca_pem, _, other_key, other_name = _pem_pair("another CA", ca=True)
    other_pem, other_key_pem, _, _ = _pem_pair("stranger", other_key, other_name)
    files = {"ca": ca_pem, "cert": cert_pem, "key": key_pem, "other_cert": other_pem, "other_key": other_key_pem}
    out = {}
    for name, data in files.items():
        (d / f"{name}.pem").write_bytes(data)
        out[name] = str(d / f"{name}.pem")
    return out


@pytest.fixture(scope="module")
def tls_cluster(tls_files):
    """A dask cluster on 127.0.0.1 that speaks TLS only (scheduler and one worker, in this process)."""
    pytest.importorskip("distributed")
    from distributed import LocalCluster
    from distributed.security import Security

    sec = Security(tls_ca_file=tls_files["ca"], tls_scheduler_cert=tls_files["cert"],
                   tls_scheduler_key=tls_files["key"], tls_worker_cert=tls_files["cert"],
                   tls_worker_key=tls_files["key"], tls_client_cert=tls_files["cert"],
                   tls_client_key=tls_files["key"], require_encryption=True)
    cl = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tls://", host="127.0.0.1",
                      security=sec, dashboard_address=None)
    try:
        assert cl.scheduler_address.startswith("tls://127.0.0.1:")
        yield cl.scheduler_address
    finally:
        cl.close()


def _neg(i):
    return -i


def test_tls_cluster_runs_with_certificates_and_refuses_without(tls_cluster, tls_files, monkeypatch):
    from cosim.errors import CosimError
    from cosim.sweep.executor import dask_security, make_executor

    monkeypatch.setattr("cosim.sweep.executor.CONNECT_TIMEOUT_S", 3.0)
    sec = dask_security(tls_files["ca"], tls_files["cert"], tls_files["key"])
    with make_executor(scheduler=tls_cluster, security=sec) as ex:
        assert [r.value for r in ex.map(_neg, range(4), ordered=True)] == [0, -1, -2, -3]
    with pytest.raises(InputError, match="speaks TLS: give --tls-ca-file"):
        make_executor(scheduler=tls_cluster)
    plain = tls_cluster.replace("tls://", "tcp://")
    with pytest.raises(InputError, match="is not tls://"):
        make_executor(scheduler=plain, security=sec)
    stranger = dask_security(tls_files["ca"], tls_files["other_cert"], tls_files["other_key"])
    with pytest.raises(CosimError, match="cannot reach the dask scheduler") as ei:
        make_executor(scheduler=tls_cluster, security=stranger)
    assert len(str(ei.value).splitlines()) == 1
    with pytest.raises(InputError, match="missing --tls-key"):
        dask_security(tls_files["ca"], tls_files["cert"], None)
    with pytest.raises(InputError, match="no such file"):
        dask_security(tls_files["ca"], tls_files["cert"], tls_files["key"] + ".missing")


@pytest.mark.ngspice
def test_calibrate_through_a_tls_cluster(tls_cluster, tls_files, tmp_path, monkeypatch, capsys):
    """The CLI takes the certificates as options or COSIM_TLS_* variables and gives the local table."""
    from cosim.surrogate.tables import load_table

    monkeypatch.setenv("COSIM_TLS_CA_FILE", tls_files["ca"])
    args = ["calibrate", "--tech", "resistor", "--rows", "8", "--cols", "4", "--points", "2", "--vectors", "4",
            "--no-cache", "--no-progress"]
    code, io = _run(args + ["--out", str(tmp_path / "tls"), "--scheduler", tls_cluster,
                            "--tls-cert", tls_files["cert"], "--tls-key", tls_files["key"]], capsys)
    assert code == 0, io.err
    monkeypatch.delenv("COSIM_TLS_CA_FILE")
    assert _run(args + ["--out", str(tmp_path / "local")], capsys)[0] == 0
    a, b = load_table(tmp_path / "tls" / "table.parquet"), load_table(tmp_path / "local" / "table.parquet")
    for k in a.arrays:
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k])


def test_readme_cluster_commands_bind_an_explicit_interface():
    """The README's dask scheduler / worker commands name the interface they listen on (never every
    interface), start no dashboard on every interface, and the TLS ones pass certificates."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    lines = [ln for ln in readme.splitlines() if "dask scheduler" in ln or "dask worker" in ln]
    commands = [ln for ln in lines if ln.lstrip().startswith(".venv/bin/dask ")]
    assert len(commands) >= 4
    for ln in commands:
        assert "--host " in ln or "--interface " in ln, ln
        assert "--dashboard-address 127.0.0.1:" in ln, ln   # dask's HTTP server listens even with --no-dashboard
    tls = [ln for ln in commands if "tls://" in ln or "--protocol tls" in ln]
    assert tls and all("--tls-ca-file" in ln and "--tls-cert" in ln and "--tls-key" in ln for ln in tls)
    assert "--tls-ca-file" in readme.split("cosim calibrate", 1)[1]


@pytest.mark.slow
def test_readme_tls_cluster_listens_on_the_given_interface_only(tls_files, tmp_path):
    """The README's TLS scheduler and worker commands, run with 127.0.0.1 for the machines' addresses:
    every socket their processes listen on is bound to 127.0.0.1 (none to every interface), and cosim
    runs points through them. About 10 s: scheduler and worker processes start."""
    import shlex
    import socket
    import sys
    import time

    psutil = pytest.importorskip("psutil")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    files = {"ca.pem": tls_files["ca"], "node.pem": tls_files["cert"], "node-key.pem": tls_files["key"]}

    def command(kind):
        line = next(ln for ln in readme.splitlines() if ln.lstrip().startswith(f".venv/bin/dask {kind}")
                    and "--protocol tls" in ln or ln.lstrip().startswith(f".venv/bin/dask {kind} tls://"))
        words = shlex.split(line.split("#")[0].replace("10.0.0.5", "127.0.0.1").replace("10.0.0.6", "127.0.0.1")
                            .replace("8786", str(port)).replace("8787", "0").replace("--nworkers 8", "--nworkers 1"))
        return [sys.executable, "-m", f"distributed.cli.dask_{kind}"] + [files.get(w, w) for w in words[2:]]

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen(command("scheduler"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        time.sleep(2)
        procs.append(subprocess.Popen(command("worker"), env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        from cosim.sweep.executor import dask_security, make_executor
        with make_executor(scheduler=f"tls://127.0.0.1:{port}",
                           security=dask_security(tls_files["ca"], tls_files["cert"], tls_files["key"])) as ex:
            assert [r.value for r in ex.map(abs, [-1, -2], ordered=True)] == [1, 2]
        listening = []
        for p in procs:
            for q in [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]:
                listening += [c.laddr.ip for c in q.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        assert len(listening) >= 4 and set(listening) == {"127.0.0.1"}, listening
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


# --- orphans -----------------------------------------------------------------------------------------
def test_pool_workers_and_their_helpers_end_with_a_killed_cosim(tmp_path):
    """kill -9 of a process running local pool workers: the workers, multiprocessing's fork server and
    resource tracker end within a few seconds, and the workers' scratch folders go with them."""
    import signal
    import sys
    import time

    psutil = pytest.importorskip("psutil")
    script = tmp_path / "pool.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from cosim.sweep.executor import LocalExecutor\n"
        "from cosim.orphans import scratch_dir\n"
        "def hold(i):\n"
        "    with scratch_dir('spice'):\n"
        "        time.sleep(60)\n"
        "if __name__ == '__main__':\n"
        "    list(LocalExecutor(2).map(hold, range(4), timeout_s=120))\n")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    main_proc = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        t0 = time.monotonic()
        while len(list(tmp_path.glob("cosim-spice-*"))) < 2 and time.monotonic() - t0 < 30:
            time.sleep(0.1)
        helpers = psutil.Process(main_proc.pid).children(recursive=True)
        assert len(helpers) >= 4              # fork server, resource tracker, two workers
        os.kill(main_proc.pid, signal.SIGKILL)
        main_proc.wait(10)
        gone, alive = psutil.wait_procs(helpers, timeout=10)
        assert not alive, [p.cmdline()[:3] for p in alive]
        assert not list(tmp_path.glob("cosim-spice-*"))
    finally:
        if main_proc.poll() is None:
            main_proc.kill()


def test_scratch_folders_of_dead_processes_are_removed(tmp_path):
    import sys

    from cosim.orphans import remove_orphaned_scratch

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = {"dead": f"cosim-spice-{dead.pid}-ab12_x", "mine": f"cosim-spice-{os.getpid()}-cd34",
             "alive": f"cosim-osdi-probe-{os.getppid()}-ef56", "other": f"cosim-spice-{dead.pid}"}
    for n in names.values():
        (tmp_path / n).mkdir()
        (tmp_path / n / "array.raw").write_bytes(b"x")
    (tmp_path / f"cosim-spice-{dead.pid}-file").write_text("a file, not a scratch folder")
    assert remove_orphaned_scratch(tmp_path) == 1
    left = {p.name for p in tmp_path.iterdir()}
    assert names["dead"] not in left and {names["mine"], names["alive"], names["other"]} <= left


# --- misleading messages -----------------------------------------------------------------------------
def test_a_text_file_named_npy_is_not_an_array(tmp_path, capsys):
    text = tmp_path / "in.npy"
    text.write_text("0 1 1 0\n")
    objects = tmp_path / "obj.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    good = tmp_path / "w.npy"
    np.save(good, np.ones((8, 2), np.uint8))
    code, io = _run(["spice", "--tech", "resistor", "--rows", "8", "--cols", "2", "--inputs", str(text),
                     "--weights", str(good)], capsys)
    err = _one_line_error(code, io)
    assert "is not a NumPy .npy array" in err and "pickle" not in err and "unsafe" not in err
    code, io = _run(["spice", "--tech", "resistor", "--rows", "8", "--cols", "2", "--inputs", str(objects),
                     "--weights", str(good)], capsys)
    err = _one_line_error(code, io)
    assert "holds Python objects" in err and "allow_pickle" not in err


def test_an_archive_cut_before_its_test_folder_is_truncated(tmp_path):
    import gzip
    import io
    import tarfile

    from cosim.bnn.datasets import load_cifar10, write_synthetic
    from cosim.errors import DataError

    whole = write_synthetic(tmp_path / "w", archive=True)
    raw = gzip.decompress(whole.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        cut_at = min(m.offset for m in tar.getmembers() if "/test" in m.name)   # just before test/
    for name, data in (("cut.tar.gz", gzip.compress(raw[:cut_at])), ("cut.tar", raw[:cut_at])):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match="truncated") as ei:
            load_cifar10(tmp_path / name, split="test")
        assert "neither CIFAR-10 format" not in str(ei.value)
    assert load_cifar10(whole, split="test")[0].shape[0] == 20


def test_timeout_covers_probing_a_hanging_ngspice(tmp_path, monkeypatch, capsys):
    import time

    fake = tmp_path / "ngspice"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)
    monkeypatch.setenv("COSIM_NGSPICE", str(fake))
    t0 = time.monotonic()
    code, io = _run(["spice", "--tech", "resistor", "--rows", "4", "--cols", "2", "--timeout-s", "1"], capsys)
    assert time.monotonic() - t0 < 10
    err = _one_line_error(code, io)
    assert f"ngspice at {fake} gave no answer within 1 s" in err


def test_tables_from_other_code_or_another_ngspice_are_warned_about(tmp_path, monkeypatch):
    from cosim.surrogate import tables
    from cosim.paths import resources_dir
    from cosim.provenance import code_version
    from cosim.circuit.spice import detect

    monkeypatch.setattr(detect, "ngspice_info", lambda: {"version": "46", "klu": True, "osdi": True,
                                                         "executable": "ngspice", "library": None})
    here = {"code_version": code_version(), "ngspice_version": "46", "solver": "klu", "source_path": "t.parquet"}
    assert tables.provenance_warnings(here) == []
    old = {**here, "ngspice_version": "39", "solver": "sparse", "code_version": "0.0.9+gabc"}
    w = tables.provenance_warnings(old)
    assert any("made by code version 0.0.9+gabc" in x for x in w)
    assert any("ngspice 39 (sparse), this machine runs ngspice 46 (klu)" in x for x in w)
    assert len(tables.provenance_warnings(old, ngspice=False)) == 1
    shipped = {**old, "source_path": str(resources_dir() / "tables" / "x.parquet")}
    assert not any("code version" in x for x in tables.provenance_warnings(shipped))


@pytest.mark.shared
def test_infer_warns_about_a_table_from_other_code(tmp_path, capsys):
    import json

    from cosim.cim.synthetic import synthetic_table

    t = synthetic_table("sram8t", 64, 64, samples=1500, ir_drop=0.0)
    t.provenance.update(code_version="0.0.9+gabc", synthetic=False)
    path = t.save(tmp_path / "old.parquet")
    code, io = _run(["infer", "--model", "vgg-small", "--mode", "surrogate", "--table", str(path), "--limit", "1",
                     "--threads", "1", "--no-progress", "--json"], capsys)
    assert code == 0, io.err
    warning = f"table {path} made by code version 0.0.9+gabc"
    assert any(ln.startswith(f"warning: {warning}") for ln in io.err.splitlines())
    assert any(w.startswith(warning) for w in json.loads(io.out)["warnings"])


class _LosesItsScheduler:
    """An executor whose scheduler goes away after the first result."""

    kind, workers = "dask", 1

    def map(self, fn, items, **kw):
        from cosim.sweep.executor import SchedulerLostError, TaskResult

        items = list(items)
        yield TaskResult(0, fn(items[0]))
        raise SchedulerLostError("lost the dask scheduler at tcp://127.0.0.1:1 (connection lost)")

    def close(self):
        pass


def test_a_lost_scheduler_in_the_study_keeps_the_finished_cells(tmp_path):
    from cosim.sweep.executor import SchedulerLostError
    from cosim.study import runner
    from cosim.study.config import load_config

    import dataclasses

    cfg = dataclasses.replace(load_config(None, quick=True), cache=str(tmp_path / "cells"))
    ctx = runner.StudyContext(cfg)
    cells = cfg.cells()[:3]
    with pytest.raises(SchedulerLostError) as ei:
        runner.run_cells(cells, ctx, compute=_compute_stub, payload=_payload_stub, progress=False,
                         executor=_LosesItsScheduler())
    msg = str(ei.value)
    assert msg.startswith("lost the dask scheduler at tcp://127.0.0.1:1") and "1 of 3 cells are kept" in msg
    assert "run the same command again" in msg and len(msg.splitlines()) == 1
    assert len(list((tmp_path / "cells" / "cells").glob("*.json"))) == 1


def test_a_killed_report_writers_staging_folder_is_removed(stub_study, tmp_path, capsys):
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / "rep" / f".report-new-{dead.pid}-abc"
    (left / "report").mkdir(parents=True)
    (left / "report" / "half.png").write_bytes(b"")
    assert _run(["report", "--quick", "--no-progress", "--out", "rep"], capsys)[0] == 0
    assert not left.exists() and (tmp_path / "rep" / "REPORT.md").is_file()


def test_any_other_file_system_fault_is_one_line_with_path_and_cause(tmp_path, monkeypatch, capsys):
    """A fault no command foresaw still ends in one line naming the path and the cause."""
    from cosim.sweep.pointcache import PointCache

    def info(self):
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(self.root / "ab"))

    monkeypatch.setattr(PointCache, "info", info)
    code, io = _run(["cache", "info", "--dir", str(tmp_path)], capsys)
    assert _one_line_error(code, io) == f"error: {tmp_path / 'ab'}: {os.strerror(errno.EIO)}"


@pytest.mark.ngspice
def test_calibrate_out_fills_up_during_the_sweep(tmp_path, capsys):
    """A real full disk in the middle of a sweep: one line naming the point file and the cause, the
    finished points kept, no temporary files left."""
    with _tmpfs(tmp_path / "mnt", 64, fill=24) as mnt:
        args = ["calibrate", "--tech", "resistor", "--rows", "8", "--cols", "4", "--points", "40", "--vectors", "4",
                "--out", str(mnt / "cal"), "--no-cache", "--no-progress"]
        code, io = _run(args, capsys)
        err = _one_line_error(code, io)
        kept = sorted((mnt / "cal" / "points").glob("point_*.npz"))
        assert 1 <= len(kept) < 40
        assert f"{mnt / 'cal' / 'points'}/point_{len(kept):05d}.npz: No space left on device" in err
        assert f"{len(kept)} of 40 points are kept in {mnt / 'cal'}" in err
        assert not [p for p in mnt.rglob(".*")]


@pytest.mark.ngspice
def test_point_cache_fills_up_during_the_sweep(tmp_path, capsys):
    """The point cache's disk fills up: the point it could not take is still in --out, and the sweep
    stops there; a rerun with room resumes to the table of an uninterrupted run."""
    from cosim.surrogate.tables import load_table

    args = ["calibrate", "--tech", "resistor", "--rows", "8", "--cols", "4", "--points", "16", "--vectors", "4",
            "--no-progress"]
    with _tmpfs(tmp_path / "mnt", 64, fill=12) as mnt:
        code, io = _run(args + ["--out", str(tmp_path / "cal"), "--cache-dir", str(mnt / "spice")], capsys)
        err = _one_line_error(code, io)
        cached = len(list((mnt / "spice").rglob("*.npz")))
        kept = len(list((tmp_path / "cal" / "points").glob("point_*.npz")))
        assert "cannot write the SPICE point cache" in err and "No space left on device" in err
        assert kept == cached + 1 and f"{kept} of 16 points are kept" in err
        assert not [p for p in mnt.rglob(".*")]
    assert _run(args + ["--out", str(tmp_path / "cal"), "--cache-dir", str(tmp_path / "spice")], capsys)[0] == 0
    assert _run(args + ["--out", str(tmp_path / "fresh"), "--no-cache"], capsys)[0] == 0
    a, b = load_table(tmp_path / "cal" / "table.parquet"), load_table(tmp_path / "fresh" / "table.parquet")
    for k in a.arrays:
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k])


def test_report_on_a_disk_that_fills_up_while_writing(stub_study, tmp_path, capsys):
    with _tmpfs(tmp_path / "mnt", 64, fill=16) as mnt:
        code, io = _run(["report", "--quick", "--no-progress", "--out", str(mnt / "rep")], capsys)
        err = _one_line_error(code, io)
        assert err.startswith(f"error: cannot write the report: {mnt / 'rep'}") and "No space left on device" in err
        assert not [p for p in (mnt / "rep").rglob("*")], "no partial report, no 0-byte PNG"
