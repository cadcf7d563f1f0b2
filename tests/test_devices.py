"""Device models: the FinFET fit reproduces the ASAP7 table, in Python and in ngspice."""

import importlib.util
import math
import subprocess
import sys

import pytest

from cosim.circuit.devices import FINFET_FIXED, VDD_V, finfet_ids_a, model_text
from cosim.errors import InputError
from cosim.paths import CHECKOUT_DIR
from cosim.circuit.spice.backends import run_subprocess

_spec = importlib.util.spec_from_file_location("fit_finfet", CHECKOUT_DIR / "scripts" / "fit_finfet.py")
fit_finfet = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fit_finfet)

needs_ngspice = pytest.mark.ngspice


def test_generated_library_is_reproduced_byte_for_byte():
    proc = subprocess.run([sys.executable, str(CHECKOUT_DIR / "scripts" / "fit_finfet.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_python_model_hits_the_table():
    for name, t in fit_finfet.targets().items():
        p = {**fit_finfet.fit_one(t), **FINFET_FIXED}
        assert finfet_ids_a(p, VDD_V, VDD_V) == pytest.approx(t["idsat_a"], rel=1e-3)
        assert finfet_ids_a(p, 0.0, VDD_V) == pytest.approx(t["ioff_a"], rel=1e-2)


@needs_ngspice
@pytest.mark.ngspice
@pytest.mark.parametrize("models", ["bsource", "compiled"])
def test_simulated_idsat_and_ioff_per_flavour(models):
    """Every flavour, NMOS and PMOS, in one ngspice run: Idsat within 5 %, Ioff within 2x of the table;
    the RVT fin's linear-region resistance is the facts sheet's ~5.9 kohm. Both implementations."""
    from cosim.circuit.devices import compiled_library_name
    from cosim.circuit.spice.detect import compiled_models_status
    if models == "compiled":
        ok, why = compiled_models_status()
        if not ok:
            pytest.skip(why)
        lines = ["* fet check", ".control", f"pre_osdi {compiled_library_name()}", ".endc",
                 model_text("finfet7_osdi.lib")]
        el, suffix = "N", "_c"      # compiled instances: N<name> d g s <model>
    else:
        lines = ["* fet check", model_text("finfet7.lib")]
        el, suffix = "X", ""
    tg = fit_finfet.targets()
    lines += ["Vsw sw 0 0", "Vdd dd 0 0.7"]
    names = sorted(tg)
    for n in names:
        pol, fl = n[0], n[1:]
        dev = f"{pol}fet_{fl}{suffix}"
        # gate at Vdd (on, saturation) and at the source (off); drain-source 0.7 V
        if pol == "n":
            lines += [f"Von_{n} dd d_on_{n} 0", f"{el}on_{n} d_on_{n} dd 0 {dev}",
                      f"Voff_{n} dd d_off_{n} 0", f"{el}off_{n} d_off_{n} 0 0 {dev}"]
        else:  # PMOS: source at Vdd, drain to ground through the ammeter
            lines += [f"Von_{n} d_on_{n} 0 0", f"{el}on_{n} d_on_{n} 0 dd {dev}",
                      f"Voff_{n} d_off_{n} 0 0", f"{el}off_{n} d_off_{n} dd dd {dev}"]
    lines += ["Vlin lin 0 0.05", "Vml lin dl 0", f"{el}lin dl dd 0 nfet_rvt{suffix}", ".dc Vsw 0 0 1", ".end"]
    data, _ = run_subprocess("\n".join(lines) + "\n", 1)
    for n in names:
        idsat = data[f"i(von_{n})"][0]
        ioff = data[f"i(voff_{n})"][0]
        assert idsat == pytest.approx(tg[n]["idsat_a"], rel=0.05), n
        assert 0.5 < ioff / tg[n]["ioff_a"] < 2.0, (n, ioff)
    r_lin_ohm = 0.05 / data["i(vml)"][0]
    assert 5.5e3 < r_lin_ohm < 6.3e3


def test_unknown_model_file_is_an_input_error():
    with pytest.raises(InputError):
        model_text("nonexistent.lib")


def test_missing_model_folder_is_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv("COSIM_DEVICE_MODELS", str(tmp_path))
    with pytest.raises(InputError) as e:
        model_text("finfet7.lib")
    assert "\n" not in str(e.value) and "COSIM_DEVICE_MODELS" in str(e.value)


def test_reram_model_matches_facts_sheet_resistances():
    """The facts sheet's LRS 20 kohm / HRS 200 kohm at 0.1 V from the sinh model and default gaps."""
    from cosim.circuit.technology import get_technology
    t = get_technology("reram1t1r")
    for gap, r_expected in ((t.reram_gap_lrs_m, 20e3), (t.reram_gap_hrs_m, 200e3)):
        i = t.reram_i0_a * math.exp(-gap / t.reram_g0_m) * math.sinh(0.1 / t.reram_v0_v)
        assert 0.1 / i == pytest.approx(r_expected, rel=0.03)
    assert "sinh(V(a,b)" in model_text("reram.lib")
