#!/usr/bin/env python
"""Per-point costs of scripts/make_tables.py's pipeline for each shipped (technology, rows), to estimate a
rebuild: exact solve + deck hash (as cosim.sweep.calibration._exact_points does), one ngspice
cross-check point (reltol 1e-9), and one chunk of the fit's QR (cosim.surrogate.fit.fit_arrays).

    PYTHONPATH=. .venv/bin/python scripts/table_costs.py [POINTS]      # POINTS solved per size (default 6)
"""
import sys
import time

import numpy as np

from cosim.circuit.technology import get_technology
from cosim.circuit.netlist import ArraySpec, build_netlist
from cosim.circuit.solver import solve_array
from cosim.provenance import sha256_text
from cosim.sweep.calibration import SweepConfig, sweep_design, CHECK_SPICE_OPTIONS
from cosim.sweep.points import SpicePoint, run_points
from cosim.sweep.executor import make_executor
from cosim.surrogate.fit import FIT_DENSE_MAX_ELEMENTS
from cosim.surrogate.registry import model_form
from cosim.surrogate.model import default_terms, knot_counts, normalise_orders
from cosim.circuit.spice import cell_currents

n_pts = int(sys.argv[1]) if len(sys.argv) > 1 else 6
for tech in ("sram8t", "reram1t1r"):
    for rows in (64, 128, 256):
        t = get_technology(tech)
        cfg = SweepConfig(tech=t, rows=rows, cols=64, topology="decoupled", seed=0, vectors=16, placements=True)
        spec = ArraySpec(t, rows, 64, "decoupled")
        t0 = time.perf_counter()
        for i in range(n_pts):
            x, w, _ = sweep_design(cfg, i)
            solve_array(spec, x, w)
            sha256_text(build_netlist(spec, x, w, klu=True))
        solve = (time.perf_counter() - t0) / n_pts
        x, w, _ = sweep_design(cfg, 0)
        t0 = time.perf_counter()
        with make_executor(workers=1) as ex:
            rep = run_points([SpicePoint(spec, x, w, options=CHECK_SPICE_OPTIONS)], executor=ex, cache=False)
        spice = time.perf_counter() - t0
        form = model_form(tech, rows)
        cc = cell_currents(t, "decoupled")
        leak = abs(cc["i_off_a"]) > 1e-3 * abs(cc["i_on_a"])
        nt = len(default_terms(normalise_orders(form.orders), leak, form.terms))
        nk = len(knot_counts(rows, form.n_knots))
        n = nt * nk
        step = max(1, FIT_DENSE_MAX_ELEMENTS // (4 * n))
        rng = np.random.default_rng(0)
        R = np.triu(rng.random((n + 1, n + 1)))
        blk = rng.random((step, n + 1))
        t0 = time.perf_counter()
        np.linalg.qr(np.vstack([R, blk]), mode="r")
        qr = time.perf_counter() - t0
        print(f"{tech} {rows}: solve+hash {solve:.3f} s/point, ngspice check {spice:.1f} s/point, fit {nt} terms x "
              f"{nk} knots = {n} columns, QR chunk of {step} samples {qr:.1f} s", flush=True)
