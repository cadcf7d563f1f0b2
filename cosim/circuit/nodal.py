"""Exact nodal solve of linear (``resistor``) crossbar arrays with scipy.sparse: an independent check
of the netlist generator and the ngspice runners.

The circuit is the one ``cosim.circuit.netlist`` describes (see its docstring and ``netlists/README.md``), built
here again from the geometry, not from the deck: conductances between nodes, fixed potentials at the
drivers, a separate 0 V terminal per sense point, zero resistances merged into one node. Each input
vector is one sparse linear solve (SuperLU). Returns the same (K, C) column currents as
``cosim.circuit.spice.run_array`` for cell == "resistor".
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import InputError
from .netlist import ArraySpec, check_inputs


class _Circuit:
    """Conductances between named nodes; some nodes held at fixed potentials; zero-ohm joins merged."""

    def __init__(self) -> None:
        self.parent: dict[object, object] = {}
        self.fixed: dict[object, float] = {}
        self.elems: list[tuple[object, object, float]] = []

    def find(self, n):
        while n in self.parent:
            n = self.parent[n]
        return n

    def fix(self, n, volts: float) -> None:
        self.fixed[n] = volts

    def resistor(self, a, b, ohm: float) -> None:
        if ohm == 0:
            ra, rb = self.find(a), self.find(b)
            if ra == rb:
                return
            if rb in self.fixed:  # keep the fixed node as the root
                ra, rb = rb, ra
            if rb in self.fixed:
                raise InputError("zero resistance between two fixed potentials")
            self.parent[rb] = ra
        else:
            self.elems.append((a, b, 1.0 / ohm))

    def conductance(self, a, b, siemens: float) -> None:
        if siemens != 0:
            self.elems.append((a, b, siemens))

    def solve(self) -> tuple[dict, dict]:
        """Potentials (V) of every root node, and the current (A) flowing from the circuit into each
        fixed node."""
        cache: dict = {}

        def root(n):
            r = cache.get(n)
            if r is None:
                r = cache[n] = self.find(n)
            return r

        index: dict = {}
        ea, eb, eg = [], [], []
        for a, b, g in self.elems:
            ra, rb = root(a), root(b)
            if ra == rb:
                continue
            ea.append(ra); eb.append(rb); eg.append(g)
        for r in ea + eb:
            if r not in self.fixed and r not in index:
                index[r] = len(index)
        n = len(index)
        nodes = list(index) + [f for f in self.fixed]
        pos = {r: i for i, r in enumerate(nodes)}          # unknowns first, then fixed nodes
        ia = np.array([pos[r] for r in ea], dtype=np.int64)
        ib = np.array([pos[r] for r in eb], dtype=np.int64)
        g = np.array(eg, dtype=np.float64)
        vfix = np.array([self.fixed[f] for f in self.fixed], dtype=np.float64)
        m = n + len(vfix)
        full = sp.coo_matrix((np.concatenate([g, g, -g, -g]),
                              (np.concatenate([ia, ib, ia, ib]), np.concatenate([ia, ib, ib, ia]))),
                             shape=(m, m)).tocsc()
        v = np.empty(m)
        v[n:] = vfix
        if n:
            a_uu = full[:n, :n]
            rhs = -(full[:n, n:] @ vfix)
            sol = spla.spsolve(a_uu.tocsc(), rhs)
            if not np.all(np.isfinite(sol)):
                raise InputError("singular nodal matrix (a floating part of the array)")
            v[:n] = sol
        # current into fixed node f from the circuit = -(row f of G) . v
        into = -(full[n:, :] @ v)
        volts = {r: v[i] for r, i in pos.items()}
        currents = {f: into[j] for j, f in enumerate(self.fixed)}
        return volts, currents


def _build(spec: ArraySpec, x: np.ndarray, w: np.ndarray) -> tuple[_Circuit, list]:
    tech, R, C = spec.tech, spec.rows, spec.cols
    rbl, rsl, rwl = tech.wire_ohm("bl"), tech.wire_ohm("sl"), tech.wire_ohm("wl")
    rd, rs = tech.r_driver_ohm, tech.r_sink_ohm
    g_on, g_off = 1.0 / tech.r_on_ohm, 1.0 / tech.r_off_ohm
    ckt = _Circuit()
    terminals = []
    if spec.topology == "decoupled":
        # read voltage at the top of each bit line, sink at the far (row R-1) end of each source line;
        # an input of 0 opens the cell (no current).
        for c in range(C):
            drv, term = ("drv", c), ("term", c)
            ckt.fix(drv, tech.v_read_v)
            ckt.fix(term, 0.0)
            terminals.append(term)
            ckt.resistor(drv, ("b", 0, c), rd)
            for r in range(R):
                if x[r]:
                    ckt.conductance(("b", r, c), ("s", r, c), g_on if w[r, c] else g_off)
                if r + 1 < R:
                    ckt.resistor(("b", r, c), ("b", r + 1, c), rbl)
                    ckt.resistor(("s", r, c), ("s", r + 1, c), rsl)
            ckt.resistor(("s", R - 1, c), term, rs)
    else:
        # row voltage (v_read for 1, 0 V for 0) at the left end of each row line, columns sink at row R-1
        for r in range(R):
            ckt.fix(("drv", r), tech.v_read_v if x[r] else 0.0)
            ckt.resistor(("drv", r), ("w", r, 0), rd)
            for c in range(C):
                ckt.conductance(("w", r, c), ("b", r, c), g_on if w[r, c] else g_off)
                if c + 1 < C:
                    ckt.resistor(("w", r, c), ("w", r, c + 1), rwl)
                if r + 1 < R:
                    ckt.resistor(("b", r, c), ("b", r + 1, c), rbl)
        for c in range(C):
            term = ("term", c)
            ckt.fix(term, 0.0)
            terminals.append(term)
            ckt.resistor(("b", R - 1, c), term, rs)
    return ckt, terminals


def solve_linear_array(spec: ArraySpec, inputs, weights) -> np.ndarray:
    """(K, C) column currents (A) of a ``resistor`` array, exactly (one sparse solve per vector)."""
    if not spec.tech.kind.linear:
        raise InputError(f"the nodal solve handles only linear 'resistor' cells, not '{spec.tech.cell}'")
    x, w = check_inputs(spec, inputs, weights)
    out = np.zeros((x.shape[0], spec.cols))
    for k in range(x.shape[0]):
        ckt, terminals = _build(spec, x[k], w)
        _, into = ckt.solve()
        out[k] = [into[t] for t in terminals]
    return out
