"""The package follows the data flow: each step imports only the steps before it (cosim/__init__.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

#: the steps in data-flow order; a step may import the infrastructure modules and the steps before it
STEPS = ["circuit", "sweep", "surrogate", "bnn", "cim", "study", "commands"]
#: modules beside the steps that every step may use; they import no step
INFRASTRUCTURE = ["errors", "paths", "provenance", "fileio", "cbuild", "orphans", "products"]
#: binary networks stand apart from the circuit side: they need none of it
INDEPENDENT = {"bnn": {"circuit", "sweep", "surrogate"}}

PROBE = """
import importlib, pkgutil, sys
name = sys.argv[1]
mod = importlib.import_module(name)
for info in pkgutil.walk_packages(getattr(mod, "__path__", []), name + "."):
    importlib.import_module(info.name)
print(" ".join(sorted({k.split(".")[1] for k in sys.modules if k.startswith("cosim.")})))
"""


def loaded_by(module: str) -> set[str]:
    """The cosim sub-packages and modules loaded by importing ``module`` (and all of its submodules)."""
    run = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return set(run.stdout.split())


@pytest.mark.parametrize("step", STEPS)
def test_a_step_imports_no_later_step(step):
    later = set(STEPS[STEPS.index(step) + 1:]) | INDEPENDENT.get(step, set())
    assert not loaded_by(f"cosim.{step}") & later


@pytest.mark.parametrize("module", INFRASTRUCTURE)
def test_infrastructure_imports_no_step(module):
    assert not loaded_by(f"cosim.{module}") & set(STEPS)


def test_the_package_has_no_modules_outside_the_steps():
    import pkgutil

    import cosim

    top = {m.name for m in pkgutil.iter_modules(cosim.__path__)}
    assert top == set(STEPS) | set(INFRASTRUCTURE) | {"cli"}


def test_the_study_keys_hash_files_that_exist():
    """The code keyed into the study's cells (a moved module would silently drop out of the key)."""
    from cosim.paths import PACKAGE_DIR
    from cosim.study.runner import KEY_SOURCES, SKEW_SOURCES

    for part in KEY_SOURCES + SKEW_SOURCES:
        assert (PACKAGE_DIR / part).exists(), part


def test_every_module_a_study_cell_imports_is_keyed_or_declared_neutral():
    """A module on a cell's compute path whose source is not hashed into the cell's key would let a changed
    result be read back from the cell cache: each one is in KEY_SOURCES, or in KEY_EXEMPT with the reason
    its source changes no result (package __init__ files only import)."""
    from cosim.paths import PACKAGE_DIR
    from cosim.study.runner import KEY_EXEMPT, KEY_SOURCES

    probe = ("import sys, cosim.study.runner, cosim.cim.convert, cosim.cim.arrays, cosim.surrogate.evaluate, "
             "cosim.surrogate.kernel, cosim.bnn.evaluate, cosim.bnn.models; "
             "print(' '.join(sorted(m.__file__ for k, m in sys.modules.items() if k.startswith('cosim.'))))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    loaded = [Path(f).relative_to(PACKAGE_DIR).as_posix() for f in run.stdout.split()]
    assert "surrogate/evaluate.py" in loaded and "cim/layers.py" in loaded
    unkeyed = [f for f in loaded if Path(f).name != "__init__.py" and f not in KEY_EXEMPT
               and not any(f == k or f.startswith(k + "/") for k in KEY_SOURCES)]
    assert not unkeyed, f"add to runner.KEY_SOURCES (or KEY_EXEMPT, with why): {unkeyed}"
    assert all((PACKAGE_DIR / f).is_file() for f in KEY_EXEMPT), "KEY_EXEMPT names a file that does not exist"


def test_inference_imports_no_calibration_code():
    """The surrogate's replay (evaluate, its kernel) needs the model, the tables and the ADC, never the fit
    or the calibration sweep (cosim.surrogate.model holds what both sides share)."""
    probe = ("import sys, cosim.surrogate.evaluate, cosim.surrogate.kernel, cosim.surrogate.registry; "
             "print(' '.join(sorted(k for k in sys.modules if k.startswith('cosim.'))))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = set(run.stdout.split())
    assert "cosim.surrogate.model" in loaded
    assert not loaded & {"cosim.surrogate.fit", "cosim.sweep.calibration", "cosim.sweep.executor", "cosim.sweep.points"}
