"""ngspice runners: physics sanity, backends, detection, failures."""

import stat

import numpy as np
import pytest

from cosim.errors import CosimError, InputError, NgspiceError
from cosim.circuit.netlist import ArraySpec
from cosim.circuit.spice import cell_currents, ideal_column_currents, ngspice_info, run_array
from cosim.circuit.spice.backends import run_shared
from cosim.circuit.technology import get_technology

pytestmark = pytest.mark.ngspice

TECHS = ["sram8t", "reram1t1r", "resistor"]


def test_info_is_detected():
    info = ngspice_info()
    assert info["version"] and info["version"][0].isdigit()
    assert isinstance(info["klu"], bool) and isinstance(info["osdi"], bool)
    res = run_array(ArraySpec(get_technology("resistor"), 2, 2), [[1, 1]], np.ones((2, 2)))
    assert res.solver == ("klu" if info["klu"] else "sparse")
    assert res.ngspice_version == info["version"]
    assert len(res.netlist_sha256) == 64 and res.seconds > 0
    assert res.provenance()["ngspice_version"] == info["version"]


def test_cell_currents():
    c8 = cell_currents(get_technology("sram8t"))
    assert c8["i_on_a"] == pytest.approx(20.9e-6, rel=0.03)          # facts sheet: 20.9 uA/cell at 0.7 V
    assert c8["i_off_a"] < 1e-9 and c8["i_idle_a"] < 1e-9
    cr = cell_currents(get_technology("reram1t1r"))
    assert cr["i_on_a"] > 5 * cr["i_off_a"] > 0
    assert 0.2 / cr["i_on_a"] == pytest.approx(22.6e3, rel=0.05)       # facts: 2-fin RVT + LRS at 0.2 V
    t = get_technology("resistor")
    c = cell_currents(t)
    assert c["i_on_a"] == pytest.approx(t.v_read_v / t.r_on_ohm, rel=1e-9)
    assert c["i_off_a"] == pytest.approx(t.v_read_v / t.r_off_ohm, rel=1e-9)
    assert c["i_idle_a"] == 0.0


@pytest.mark.parametrize("tech", TECHS)
@pytest.mark.parametrize("topology", ["decoupled", "coupled"])
def test_zero_wire_resistance_gives_ideal_currents(tech, topology, rng):
    t = get_technology(tech, r_wire_ohm=0.0, r_driver_ohm=0.0, r_sink_ohm=0.0)
    spec = ArraySpec(t, 16, 6, topology)
    x, w = rng.integers(0, 2, (3, 16)), rng.integers(0, 2, (16, 6))
    res = run_array(spec, x, w)
    np.testing.assert_allclose(res.column_current_a, ideal_column_currents(spec, x, w), rtol=1e-4, atol=1e-15)


@pytest.mark.parametrize("tech", TECHS)
@pytest.mark.parametrize("topology", ["decoupled", "coupled"])
def test_more_wire_resistance_never_raises_a_column_current(tech, topology, rng):
    rows, cols = (32, 8) if tech != "sram8t" else (24, 6)
    x, w = rng.integers(0, 2, (2, rows)), rng.integers(0, 2, (rows, cols))
    prev = None
    for r_wire in (0.0, 2.0, 10.0, 20.0):
        cur = run_array(ArraySpec(get_technology(tech, r_wire_ohm=r_wire), rows, cols, topology), x, w).column_current_a
        if prev is not None:
            assert np.all(cur <= prev * (1 + 1e-6)), (r_wire, (cur - prev).max())
        prev = cur
    assert np.all(prev < run_array(ArraySpec(get_technology(tech, r_wire_ohm=0.0), rows, cols, topology), x, w).column_current_a)


@pytest.mark.parametrize("tech", TECHS)
@pytest.mark.parametrize("topology", ["decoupled", "coupled"])
def test_current_grows_with_on_count(tech, topology):
    rows = 32
    x = np.tril(np.ones((rows + 1, rows), np.uint8), -1)     # vector k has rows 0..k-1 on
    w = np.ones((rows, 2), np.uint8)
    w[::2, 1] = 0                                             # column 1: only odd rows hold a 1
    cur = run_array(ArraySpec(get_technology(tech), rows, 2, topology), x, w).column_current_a
    assert np.all(np.diff(cur[:, 0]) > 0)
    assert np.all(np.diff(cur[1::2, 1]) > 0) or np.all(np.diff(cur[0::2, 1]) > 0)
    assert cur[-1, 1] < cur[-1, 0]


@pytest.mark.parametrize("tech", ["sram8t", "resistor"])
def test_both_backends_identical(tech, rng):
    spec = ArraySpec(get_technology(tech), 16, 8, "decoupled" if tech == "sram8t" else "coupled")
    x, w = rng.integers(0, 2, (3, 16)), rng.integers(0, 2, (16, 8))
    a = run_array(spec, x, w, backend="subprocess")
    b = run_array(spec, x, w, backend="shared")
    b2 = run_array(spec, x, w, backend="shared")            # the singleton is reset between runs
    assert a.netlist_sha256 == b.netlist_sha256
    assert b.backend == "shared" and b.ngspice_version == a.ngspice_version
    np.testing.assert_allclose(b.column_current_a, a.column_current_a, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(b2.column_current_a, b.column_current_a)


def test_batched_equals_separate_runs(rng):
    spec = ArraySpec(get_technology("sram8t"), 16, 4)
    x, w = rng.integers(0, 2, (3, 16)), rng.integers(0, 2, (16, 4))
    batched = run_array(spec, x, w).column_current_a
    for k in range(3):
        np.testing.assert_allclose(run_array(spec, x[k:k + 1], w).column_current_a[0], batched[k], rtol=1e-4)


def test_node_voltages_on_request():
    spec = ArraySpec(get_technology("resistor"), 4, 2)
    for backend in ("subprocess", "shared"):
        res = run_array(spec, np.ones((2, 4)), np.ones((4, 2)), node_voltages=True, backend=backend)
        assert res.node_voltages["vrd"] == pytest.approx([spec.tech.v_read_v] * 2)
        assert res.node_voltages["b0_0"][0] < spec.tech.v_read_v
    assert run_array(spec, np.ones((1, 4)), np.ones((4, 2))).node_voltages is None


def test_bad_arguments_are_one_line_errors():
    spec = ArraySpec(get_technology("resistor"), 4, 2)
    for kwargs in ({"backend": "spectre"}, {"timeout_s": -1}):
        with pytest.raises(InputError) as e:
            run_array(spec, np.ones((1, 4)), np.ones((4, 2)), **kwargs)
        assert "\n" not in str(e.value)
    with pytest.raises(InputError):
        run_array(spec, np.ones((1, 5)), np.ones((4, 2)))


def test_ngspice_missing_env_override(monkeypatch):
    monkeypatch.setenv("COSIM_NGSPICE", "/nonexistent/ngspice")
    with pytest.raises(NgspiceError) as e:
        run_array(ArraySpec(get_technology("resistor"), 2, 2), [[1, 1]], np.ones((2, 2)))
    assert "not found" in str(e.value) and "\n" not in str(e.value)


def test_ngspice_missing_from_path(monkeypatch, tmp_path):
    monkeypatch.delenv("COSIM_NGSPICE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NgspiceError, match="not found"):
        run_array(ArraySpec(get_technology("resistor"), 2, 2), [[1, 1]], np.ones((2, 2)))


def _fake_ngspice(tmp_path, body: str) -> str:
    p = tmp_path / "fake-ngspice"
    p.write_text("#!/bin/sh\n"
                 'if [ "$1" = "-v" ]; then echo "** ngspice-46 : Circuit level simulation program"; exit 0; fi\n'
                 'if [ "$2" != "-r" ]; then exit 0; fi\n'          # the build probe: no OSDI
                 f'echo run >> "{tmp_path}/calls"\n' + body)
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return str(p)


def test_ngspice_failure_keeps_its_message(monkeypatch, tmp_path):
    monkeypatch.setenv("COSIM_NGSPICE", _fake_ngspice(tmp_path, 'echo "Error: unknown subckt: xfoo" >&2\nexit 1\n'))
    with pytest.raises(NgspiceError) as e:
        run_array(ArraySpec(get_technology("resistor"), 2, 2), [[1, 1]], np.ones((2, 2)))
    assert "Error: unknown subckt: xfoo" in str(e.value) and "\n" not in str(e.value)
    assert (tmp_path / "calls").read_text().count("run") == 1      # not a convergence problem: no retry


def test_nonconvergence_is_retried_once_then_fails(monkeypatch, tmp_path):
    body = 'echo "doAnalyses: iteration limit reached"\necho "dc sweep failed" >&2\nexit 1\n'
    monkeypatch.setenv("COSIM_NGSPICE", _fake_ngspice(tmp_path, body))
    with pytest.raises(NgspiceError) as e:
        run_array(ArraySpec(get_technology("sram8t"), 2, 2), [[1, 1]], np.ones((2, 2)))
    assert "did not converge" in str(e.value) and "\n" not in str(e.value)
    assert (tmp_path / "calls").read_text().count("run") == 2


def test_truncated_sweep_is_not_presented_as_valid(monkeypatch, tmp_path):
    # an ngspice that exits 0 without a rawfile
    monkeypatch.setenv("COSIM_NGSPICE", _fake_ngspice(tmp_path, "exit 0\n"))
    with pytest.raises(NgspiceError):
        run_array(ArraySpec(get_technology("resistor"), 2, 2), [[1, 1]], np.ones((2, 2)))


def test_shared_backend_reports_deck_errors():
    with pytest.raises(CosimError) as e:
        run_shared("* broken\nR1 a 0\n.dc Vx 0 1 1\n.end\n", 2)
    assert "\n" not in str(e.value)
    # and it still works afterwards
    spec = ArraySpec(get_technology("resistor"), 2, 2)
    assert run_array(spec, [[1, 1]], np.ones((2, 2)), backend="shared").column_current_a.shape == (1, 2)


def test_timeout(monkeypatch, tmp_path):
    monkeypatch.setenv("COSIM_NGSPICE", _fake_ngspice(tmp_path, "exec sleep 5\n"))
    with pytest.raises(NgspiceError, match="within"):
        run_array(ArraySpec(get_technology("resistor"), 2, 2), [[1, 1]], np.ones((2, 2)), timeout_s=0.5)


def test_shared_backend_refuses_a_timeout():
    with pytest.raises(InputError, match="subprocess"):
        run_array(ArraySpec(get_technology("resistor"), 2, 2), [[1, 1]], np.ones((2, 2)), backend="shared", timeout_s=5)


@pytest.mark.parametrize("tech,rows,r_wire,facts", [("sram8t", 64, 10.0, 0.53), ("sram8t", 128, 2.0, 0.58),
                                                    ("reram1t1r", 128, 10.0, 0.18)])
def test_all_on_ratio_matches_the_facts_sheet(tech, rows, r_wire, facts):
    """physics-facts.md worst-case table (every cell on, same wire R on bit and return line)."""
    t = get_technology(tech, r_wire_ohm=r_wire, r_driver_ohm=0.0, r_sink_ohm=0.0)
    spec = ArraySpec(t, rows, 1, "decoupled")
    x, w = np.ones((1, rows)), np.ones((rows, 1))
    ratio = run_array(spec, x, w).column_current_a[0, 0] / ideal_column_currents(spec, x, w)[0, 0]
    assert ratio == pytest.approx(facts, abs=0.03)


def test_without_klu_the_deck_uses_sparse(monkeypatch, rng):
    """KLU is used only when detected: a build without it gets no '.options klu' and the same answer."""
    from cosim.circuit.spice import detect

    real = detect.require_executable

    def no_klu():
        return {**real(), "klu": False}

    spec = ArraySpec(get_technology("resistor"), 16, 4)
    x, w = rng.integers(0, 2, (2, 16)), rng.integers(0, 2, (16, 4))
    with_klu = run_array(spec, x, w)
    monkeypatch.setattr(detect, "require_executable", no_klu)
    res = run_array(spec, x, w)
    assert res.solver == "sparse"
    assert (res.netlist_sha256 != with_klu.netlist_sha256) == (with_klu.solver == "klu")
    np.testing.assert_allclose(res.column_current_a, with_klu.column_current_a, rtol=1e-9)


def test_rawfile_ascii_binary_and_truncated(tmp_path):
    from cosim.circuit.spice.rawfile import read_rawfile

    head = ("Title: * t\nPlotname: DC transfer characteristic\nFlags: real\nNo. Variables: 2\nNo. Points: 3\n"
            "Variables:\n\t0\tv(v-sweep)\tvoltage\n\t1\ti(vm0)\tcurrent\n")
    data = np.array([[0, 1e-6], [1, 2e-6], [2, 3e-6]], dtype="<f8")
    (tmp_path / "b.raw").write_bytes((head + "Binary:\n").encode() + data.tobytes())
    (tmp_path / "a.raw").write_text(head + "Values:\n" + "".join(f"{k}\t\t{v[0]:.15e}\n\t{v[1]:.15e}\n" for k, v in enumerate(data)))
    for name in ("a.raw", "b.raw"):
        plot = read_rawfile(tmp_path / name)[-1]
        np.testing.assert_array_equal(plot["data"]["i(vm0)"], data[:, 1])
    (tmp_path / "t.raw").write_bytes((head + "Binary:\n").encode() + data.tobytes()[:-8])
    with pytest.raises(NgspiceError, match="truncated"):
        read_rawfile(tmp_path / "t.raw")
    with pytest.raises(NgspiceError, match="no rawfile"):
        read_rawfile(tmp_path / "missing.raw")


compiled = pytest.mark.skipif(not __import__("cosim.circuit.spice.detect", fromlist=["x"]).compiled_models_available(),
                              reason="this ngspice does not run the compiled (OSDI) models")


@compiled
@pytest.mark.parametrize("tech", ["sram8t", "reram1t1r"])
@pytest.mark.parametrize("topology", ["decoupled", "coupled"])
def test_compiled_models_agree_with_bsource_models(tech, topology, rng):
    """The compiled devices are the B-source equations: the same array currents to within the solver's
    tolerance, in both backends."""
    spec = ArraySpec(get_technology(tech), 16, 12, topology)
    x, w = rng.integers(0, 2, (3, 16)), rng.integers(0, 2, (16, 12))
    ref = run_array(spec, x, w, models="bsource")
    assert ref.device_models == "bsource"
    for backend in ("subprocess", "shared"):
        got = run_array(spec, x, w, models="compiled", backend=backend)
        assert got.device_models == "compiled" and got.provenance()["device_models"] == "compiled"
        np.testing.assert_allclose(got.column_current_a, ref.column_current_a, rtol=1e-4, atol=1e-12)


@compiled
def test_compiled_models_zero_wire_resistance_gives_ideal_currents(rng):
    t = get_technology("sram8t", r_wire_ohm=0.0, r_driver_ohm=0.0, r_sink_ohm=0.0)
    spec = ArraySpec(t, 16, 6)
    x, w = rng.integers(0, 2, (2, 16)), rng.integers(0, 2, (16, 6))
    np.testing.assert_allclose(run_array(spec, x, w, models="compiled").column_current_a,
                               ideal_column_currents(spec, x, w), rtol=1e-6, atol=1e-12)


def test_compiled_models_without_a_compiler_fall_back(monkeypatch, tmp_path):
    """No C compiler: 'auto' takes the B-source models; asking for compiled ones is a one-line error."""
    from cosim.circuit.netlist import resolve_models
    from cosim.circuit.spice.detect import compiled_models_status
    monkeypatch.setenv("COSIM_CACHE", str(tmp_path))          # nothing built there yet
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    ok, reason = compiled_models_status()
    assert not ok and "\n" not in reason
    assert resolve_models("auto") == "bsource"
    spec = ArraySpec(get_technology("sram8t"), 2, 2)
    with pytest.raises(NgspiceError) as e:
        run_array(spec, np.ones((1, 2)), np.ones((2, 2)), models="compiled")
    assert "\n" not in str(e.value)
