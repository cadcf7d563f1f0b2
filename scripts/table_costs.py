#!/usr/bin/env python
"""Per-point costs of scripts/make_tables.py's pipeline for each shipped (technology, rows), to estimate a
rebuild: exact solve + deck hash (as cosim.sweep.calibration._exact_points does), one ngspice
cross-check point (reltol 1e-9), and the fit (cosim.surrogate.fit.fit_arrays) of the solved points'
samples (CPU seconds: its fixed part, the knot-by-knot QR and the solve of knots x terms coefficients,
and a part linear in the samples).

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
from cosim.surrogate.fit import fit_arrays
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
        on, act, cur = [], [], []
        for i in range(n_pts):
            x, w, _ = sweep_design(cfg, i)
            res = solve_array(spec, x, w)
            sha256_text(build_netlist(spec, x, w, klu=True))
            on.append((x[:, None, :] & w.T[None, :, :]).reshape(-1, rows))
            act.append(np.broadcast_to(x[:, None, :], (x.shape[0], w.shape[1], rows)).reshape(-1, rows))
            cur.append(res.column_current_a.reshape(-1))
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
        t0 = time.process_time()
        fit_arrays(np.concatenate(on), np.concatenate(act), np.concatenate(cur), rows, float(cc["i_on_a"]),
                   form.orders, leak, form.n_knots, default_terms(normalise_orders(form.orders), leak, form.terms))
        fit = time.process_time() - t0
        print(f"{tech} {rows}: solve+hash {solve:.3f} s/point, ngspice check {spice:.1f} s/point, fit {nt} terms x "
              f"{nk} knots = {n} columns, {sum(len(c) for c in cur)} samples {fit:.1f} CPU s", flush=True)
