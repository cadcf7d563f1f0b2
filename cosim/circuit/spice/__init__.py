"""Running crossbar arrays in ngspice.

    from cosim.circuit.spice import run_array, ngspice_info, ideal_column_currents, cell_currents
    res = run_array(spec, inputs, weights, backend="subprocess")   # or "shared"
    res.column_current_a          # (K, C) A, current sensed at each column (positive)

Two backends with identical results: ``subprocess`` (``ngspice -b``, rawfile parsed by numpy;
isolated from crashes, runs in parallel processes) and ``shared`` (PySpice NgSpiceShared, in process,
one instance per process). All K input vectors are one ``.dc`` analysis. KLU is used when the
ngspice build has it (detected), and the compiled device models when it loads them (OSDI, detected;
``models="bsource"`` or COSIM_SPICE_MODELS=bsource forces the B-source models, see cosim.circuit.netlist).
A run that does not converge is retried once with gmin and source stepping and larger iteration
limits before it fails.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from ...errors import InputError, NgspiceError
from ..netlist import ArraySpec, build_netlist, check_inputs, models_fallback, resolve_models, sense_names
from ...provenance import record, sha256_text
from ..technology import Technology
from .backends import BACKENDS, NgspiceRunError
from .detect import ngspice_info, probe_timeout

__all__ = ["run_array", "RunResult", "ngspice_info", "cell_currents", "ideal_column_currents", "BACKENDS",
           "RETRY_OPTIONS"]

#: Extra .options for the single retry after non-convergence.
RETRY_OPTIONS = "gminsteps=100 srcsteps=100 itl1=1000 itl2=1000 itl6=1000"


@dataclass
class RunResult:
    """Column currents of K input vectors and what produced them."""

    spec: ArraySpec
    column_current_a: np.ndarray            # (K, C) float64, A, positive
    ngspice_version: str
    solver: str                             # "klu" or "sparse"
    seconds: float                          # wall time of netlist + simulation + reading
    netlist_sha256: str
    backend: str
    node_voltages: dict[str, np.ndarray] | None = None   # node -> (K,) V, when asked for
    retried: bool = False                   # True when the convergence retry was needed
    device_models: str = "bsource"          # "compiled" (OSDI) or "bsource" (cosim.circuit.netlist)
    device_models_fallback: str | None = None   # why "auto" fell back to bsource, None when it did not
    extra: dict[str, Any] = field(default_factory=dict)

    def provenance(self, **fields: Any) -> dict[str, Any]:
        s = self.spec
        return record(technology=s.tech.name, cell=s.tech.cell, rows=s.rows, cols=s.cols, topology=s.topology,
                      r_wire_ohm=s.tech.r_wire_ohm, ngspice_version=self.ngspice_version, solver=self.solver,
                      backend=self.backend, device_models=self.device_models,
                      device_models_fallback=self.device_models_fallback, netlist_sha256=self.netlist_sha256,
                      **fields)


def uses_klu(backend: str) -> bool:
    """Whether decks for ``backend`` should ask for KLU: the ngspice executable must exist and have it
    (subprocess, raises NgspiceError when ngspice is missing); for the shared library, KLU when detected."""
    if backend == "subprocess":
        from .detect import require_executable
        return bool(require_executable()["klu"])
    try:
        return bool(ngspice_info()["klu"])
    except NgspiceError:
        return False


def run_array(spec: ArraySpec, inputs, weights, backend: str = "subprocess", node_voltages: bool = False,
              timeout_s: float | None = None, models: str | None = None) -> RunResult:
    """Simulate the array ``spec`` for inputs (K, R) and weights (R, C) of 0/1 in one ngspice analysis.
    ``models``: device-model implementation, "auto" (default), "compiled", "bsource" or "bsimcmg" (cosim.circuit.netlist)."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend '{backend}': expected one of {', '.join(BACKENDS)}")
    if timeout_s is not None and not timeout_s > 0:
        raise InputError(f"timeout_s must be positive, got {timeout_s}")
    t0 = time.perf_counter()
    x, w = check_inputs(spec, inputs, weights)
    with probe_timeout(timeout_s):   # finding out what ngspice can do keeps to the same time limit
        klu = uses_klu(backend)
        impl = "bsource" if spec.tech.kind.linear else resolve_models(models)
        fallback = models_fallback(models) if not spec.tech.kind.linear else None
    deck = build_netlist(spec, x, w, klu=klu, node_voltages=node_voltages, models=impl)
    run = BACKENDS[backend]
    retried = False
    try:
        data, version = run(deck, x.shape[0], timeout_s)
    except NgspiceRunError as e:
        if not e.convergence:
            raise NgspiceError(f"{spec.describe()}: {e}") from None
        retried = True
        deck = build_netlist(spec, x, w, klu=klu, node_voltages=node_voltages, extra_options=RETRY_OPTIONS,
                             models=impl)
        try:
            data, version = run(deck, x.shape[0], timeout_s)
        except NgspiceRunError as e2:
            raise NgspiceError(f"{spec.describe()}: did not converge, also with gmin/source stepping: {e2}") from None
    cols = []
    for name in sense_names(spec):
        key = f"i({name})"
        if key not in data:
            raise NgspiceError(f"{spec.describe()}: ngspice returned no current for ammeter {name}")
        cols.append(data[key])
    current = np.stack(cols, axis=1).astype(np.float64)
    if not np.all(np.isfinite(current)):
        raise NgspiceError(f"{spec.describe()}: ngspice returned non-finite column currents")
    volts = None
    if node_voltages:
        volts = {k[2:-1]: v for k, v in data.items() if k.startswith("v(") and k != "v(v-sweep)" and k != "v(sw)"}
    return RunResult(spec=spec, column_current_a=current, ngspice_version=str(version), solver="klu" if klu else "sparse",
                     seconds=time.perf_counter() - t0, netlist_sha256=sha256_text(deck), backend=backend,
                     node_voltages=volts, retried=retried, device_models=impl, device_models_fallback=fallback)


@lru_cache(maxsize=64)
def _cell_currents(tech: Technology, topology: str, models: str, corner: str | None) -> tuple[float, float, float, float]:
    bare = tech.replace(r_wire_ohm=0.0, r_driver_ohm=0.0, r_sink_ohm=0.0)
    spec = ArraySpec(bare, rows=1, cols=2, topology=topology)
    backend = "subprocess" if ngspice_info()["executable"] else "shared"
    res = run_array(spec, np.array([[1], [0]]), np.array([[1, 0]]), backend=backend, models=models)
    (i_on, i_off), (i_idle, i_idle_off) = res.column_current_a
    return float(i_on), float(i_off), float(i_idle), float(i_idle_off)


def cell_currents(tech: Technology, topology: str | None = None) -> dict[str, float]:
    """One cell at the read voltage, no wires, driver or sink resistance, by SPICE:
    ``i_on_a`` (input 1, weight 1), ``i_off_a`` (input 1, weight 0), ``i_idle_a`` (input 0, weight 1),
    ``i_idle_off_a`` (input 0, weight 0). ``topology`` defaults to the technology's: it decides how an
    input of 0 is applied (gate off in decoupled arrays, 0 V row in coupled resistor/1T-1R arrays)."""
    topo = ArraySpec(tech, 1, 1, topology).topology
    # cached per device-model implementation (and BSIM-CMG corner): $COSIM_SPICE_MODELS may change
    impl = "bsource" if tech.kind.linear else resolve_models()
    if impl == "bsimcmg":
        from .. import bsimcmg
        corner = bsimcmg.corner()
    else:
        corner = None
    i_on, i_off, i_idle, i_idle_off = _cell_currents(tech, topo, impl, corner)
    return {"i_on_a": i_on, "i_off_a": i_off, "i_idle_a": i_idle, "i_idle_off_a": i_idle_off}


def ideal_column_currents(spec: ArraySpec, inputs, weights) -> np.ndarray:
    """(K, C) column currents without wire, driver or sink resistance: per-cell currents summed."""
    x, w = check_inputs(spec, inputs, weights)
    cc = cell_currents(spec.tech, spec.topology)
    xf, wf = x.astype(np.float64), w.astype(np.float64)
    on = xf @ wf
    off = xf @ (1 - wf)
    idle = (1 - xf) @ wf
    idle_off = (1 - xf) @ (1 - wf)
    return cc["i_on_a"] * on + cc["i_off_a"] * off + cc["i_idle_a"] * idle + cc["i_idle_off_a"] * idle_off
