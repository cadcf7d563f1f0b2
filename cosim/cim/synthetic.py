"""A synthetic lookup table, fitted without SPICE: for tests and timing only, never for results.

The samples follow a simple IR-drop-like law (each ON cell's current falls with the column's load and
with its distance from the sense end) and go through the real fit (cosim.surrogate.fit.fit_arrays), so
the table has the format, model and provenance keys of a calibrated one. Its provenance says
``synthetic: true`` and names the law; a study must use tables made by ``cosim calibrate``.
"""

from __future__ import annotations


import numpy as np

from ..circuit.technology import get_technology

LAW = "I = i_cell * sum_on (1 - ir_drop k/R) (1 - 0.4 ir_drop (R-1-j)/R) + i_off * leak cells"


def synthetic_table(tech: str = "sram8t", rows: int = 64, cols: int = 64, samples: int = 3000, seed: int = 0,
                    i_cell_a: float = 20e-6, i_off_a: float = 0.0, topology: str = "decoupled", ir_drop: float = 0.25):
    """A LookupTable fitted to samples of the synthetic law; ``ir_drop`` 0 gives an ideal linear array."""
    from ..surrogate.model import DEFAULT_ORDERS
    from ..surrogate.fit import LEAK_RATIO_MIN, fit_arrays
    from ..provenance import record
    from ..surrogate.tables import LookupTable

    t = get_technology(tech)
    rng = np.random.default_rng(seed)
    dens_x = rng.uniform(0.05, 1.0, size=(samples, 1))
    dens_w = rng.uniform(0.0, 1.0, size=(samples, 1))
    active = rng.random((samples, rows)) < dens_x
    w = rng.random((samples, rows)) < dens_w
    on = active & w
    k = on.sum(1, keepdims=True)
    j = np.arange(rows)[None, :]
    per_cell = (1 - ir_drop * k / rows) * (1 - 0.4 * ir_drop * (rows - 1 - j) / rows)
    cur = i_cell_a * (on * per_cell).sum(1) + i_off_a * (active & ~w).sum(1)
    leak = i_off_a > LEAK_RATIO_MIN * i_cell_a
    arrays, meta = fit_arrays(on, active, cur, rows, i_cell_a, list(DEFAULT_ORDERS), leak)
    prov = record(technology=t.name, technology_params=t.as_dict(), cell=t.cell, rows=rows, cols=cols,
                  topology=topology, r_wire_ohm=t.r_wire_ohm, ngspice_version="none (synthetic)",
                  solver="none (synthetic)", seed=seed, i_cell_a=i_cell_a, i_off_a=i_off_a,
                  synthetic=True, synthetic_law=LAW, synthetic_ir_drop=ir_drop, n_samples=samples)
    return LookupTable(arrays=arrays, meta=meta, provenance=prov)
