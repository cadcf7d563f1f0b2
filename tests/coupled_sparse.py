"""The reference of the coupled kernel's tests: the coupled topology's Newton as cosim.circuit.solver ran it
before the kernel (solver_kernel.c, cpl_run): the deck's node graph built again with scipy.sparse, zero-ohm
joins merged (connected components), the whole Jacobian of a batch of vectors solved by SuperLU each Newton
step, the same cells (cosim_cells_eval), damping and convergence test. Slow (docs/benchmarks/solver.md: 0.4-0.8x
ngspice per column); tests only."""

import ctypes

import numpy as np

from cosim.circuit.cells import cell_kind
from cosim.circuit.solver import _ptr, cell_parameters, cell_states, g_shunt_s
from cosim.circuit.solver_kernel import load
from cosim.errors import InputError


def solve_coupled_sparse(spec, x, w, max_iter=100, reltol=1e-6, vntol_v=1e-6, abstol_a=1e-12, dv_max_v=None):
    """(currents (K, C), iterations (K, C), status (K, C)) of the coupled array ``spec``, as the kernel returns them."""
    x, w = np.asarray(x), np.asarray(w)
    dv = spec.tech.v_read_v if dv_max_v is None else dv_max_v
    return _solve_coupled_sparse(spec, x, w, max_iter, reltol, vntol_v, abstol_a, dv)



class _Graph:
    """Nodes 0..n-1; resistors; zero-ohm joins merged (connected components); fixed-potential nodes."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.ra: list[np.ndarray] = []
        self.rb: list[np.ndarray] = []
        self.rg: list[np.ndarray] = []
        self.sa: list[np.ndarray] = []
        self.sb: list[np.ndarray] = []

    def resistors(self, a, b, ohm: float) -> None:
        a, b = np.asarray(a, np.int64).ravel(), np.asarray(b, np.int64).ravel()
        if ohm == 0:
            self.sa.append(a)
            self.sb.append(b)
        else:
            self.ra.append(a)
            self.rb.append(b)
            self.rg.append(np.full(a.shape, 1.0 / ohm))

    def merge(self) -> np.ndarray:
        import scipy.sparse as sp
        from scipy.sparse.csgraph import connected_components
        if not self.sa:
            return np.arange(self.n)
        a, b = np.concatenate(self.sa), np.concatenate(self.sb)
        g = sp.coo_matrix((np.ones(a.size), (a, b)), shape=(self.n, self.n))
        _, labels = connected_components(g, directed=False)
        return labels


def _solve_coupled_sparse(spec, x, w, max_iter, reltol, vntol_v, abstol_a, dv_max_v):
    import scipy.sparse as sp

    lib = load()
    tech = spec.tech
    K, R, C = x.shape[0], spec.rows, spec.cols
    gsh = g_shunt_s(spec)
    par = cell_parameters(spec)
    states = cell_states(spec)
    rc = np.arange(R * C).reshape(R, C)
    # raw nodes: line A (r, c) and line B (r, c) interleaved row by row (a Jacobian of bandwidth ~2C in
    # this order, which the sparse LU keeps: natural ordering), then the fixed nodes
    A, B = 2 * rc, 2 * rc + 1
    nraw = 2 * R * C
    g = _Graph(nraw + R + C + 1)
    GND = nraw + R + C
    gate_driven = cell_kind(tech).coupled_drive == "gate"
    if gate_driven:
        # A = read bit line b (down each column), B = read source line s (along each row);
        # fixed: one v_read node per column (the sense amplifier behind the ammeter), ground
        sense_fixed = nraw + R + np.arange(C)          # VRD(c)
        g.resistors(sense_fixed, A[0], tech.r_driver_ohm)
        g.resistors(A[:-1], A[1:], tech.wire_ohm("bl"))
        g.resistors(B[:, :-1], B[:, 1:], tech.wire_ohm("sl"))
        g.resistors(B[:, 0], np.full(R, GND), tech.r_sink_ohm)
        fixed_v = np.zeros((K, R + C + 1))
        fixed_v[:, R:R + C] = tech.v_read_v
        sense_sign = -1.0         # the current leaving the sense node into the array
        sense_extra_a = tech.v_read_v * gsh   # rshunt of the ammeter's node d (at v_read), through the ammeter
    else:
        # A = row line w (along each row, driven at its left end), B = column line b (down to the sink)
        drv = nraw + np.arange(R)
        g.resistors(drv, A[:, 0], tech.r_driver_ohm)
        g.resistors(A[:, :-1], A[:, 1:], tech.wire_ohm("wl"))
        g.resistors(B[:-1], B[1:], tech.wire_ohm("bl"))
        sense_fixed = nraw + R + np.arange(C)          # TERM(c): ground behind ammeter and sink
        # the sink with the rshunt of the ammeter's far node k (at the same voltage as the column's end)
        if tech.r_sink_ohm == 0:
            g.resistors(B[-1], sense_fixed, 0.0)
        else:
            g.ra.append(B[-1].copy())
            g.rb.append(sense_fixed.copy())
            g.rg.append(np.full(C, 1.0 / tech.r_sink_ohm + gsh))
        fixed_v = np.zeros((K, R + C + 1))
        fixed_v[:, :R] = x * tech.v_read_v
        sense_sign = 1.0
        sense_extra_a = 0.0
    labels = g.merge()
    # components: fixed if they hold a fixed raw node
    fixed_raw = np.arange(nraw, g.n)
    comp_fixed = {}
    for j, node in enumerate(fixed_raw):
        lab = labels[node]
        if lab in comp_fixed:
            # two fixed nodes joined by zero ohm: same potential in every vector, else not a circuit
            other = comp_fixed[lab]
            if not np.array_equal(fixed_v[:, other], fixed_v[:, j]):
                raise InputError("zero resistance between two driven nodes of different potentials")
        comp_fixed.setdefault(lab, j)
    ncomp = labels.max() + 1
    is_fixed = np.zeros(ncomp, bool)
    is_fixed[list(comp_fixed)] = True
    uidx = -np.ones(ncomp, np.int64)
    fidx = -np.ones(ncomp, np.int64)
    first_raw = np.full(ncomp, np.iinfo(np.int64).max)
    np.minimum.at(first_raw, labels, np.arange(labels.size))
    unknown_comps = np.nonzero(~is_fixed)[0]
    unknown_comps = unknown_comps[np.argsort(first_raw[unknown_comps], kind="stable")]
    uidx[unknown_comps] = np.arange(unknown_comps.size)
    fixed_comps = np.array(sorted(comp_fixed), np.int64)
    fidx[fixed_comps] = np.arange(fixed_comps.size)
    fixed_cols = np.array([comp_fixed[c] for c in fixed_comps], np.int64)  # column of fixed_v per fixed comp
    n, nf = unknown_comps.size, fixed_comps.size
    # positions in the full vector: unknowns first, then fixed
    pos = np.where(is_fixed, n + np.maximum(fidx, 0), np.maximum(uidx, 0))
    node_pos = pos[labels]
    # linear part
    if g.ra:
        ra, rb, rg = (np.concatenate(v) for v in (g.ra, g.rb, g.rg))
        pa, pb = node_pos[ra], node_pos[rb]
        keep = pa != pb
        pa, pb, rg = pa[keep], pb[keep], rg[keep]
    else:
        pa = pb = np.zeros(0, np.int64)
        rg = np.zeros(0)
    m = n + nf
    shunt = np.zeros(m)
    shunt[:n] = gsh
    G = sp.coo_matrix((np.concatenate([rg, rg, -rg, -rg, shunt]),
                       (np.concatenate([pa, pb, pa, pb, np.arange(m)]),
                        np.concatenate([pa, pb, pb, pa, np.arange(m)]))), shape=(m, m)).tocsr()
    G_uu = G[:n, :n].tocsc()
    # cells
    ca, cb = node_pos[A.ravel()], node_pos[B.ravel()]
    live = ca != cb
    ca, cb = ca[live], cb[live]
    w_flat = w.ravel()[live]
    row_of = np.repeat(np.arange(R), C)[live]
    ncell = ca.size
    sense_pos = node_pos[sense_fixed]
    cur = np.full((K, C), np.nan)
    iters = np.zeros((K, C), np.int32)
    status = np.zeros((K, C), np.int32)
    cp = ctypes.pointer(par)
    # incidence of the cells' terminals (m x ncell): the currents they draw from each node
    inc_a = sp.csr_matrix((np.ones(ncell), (ca, np.arange(ncell))), shape=(m, ncell))
    inc_b = sp.csr_matrix((np.ones(ncell), (cb, np.arange(ncell))), shape=(m, ncell))
    # Jacobian stamps of the cells: rows/cols (a or b) x (a or b), restricted to unknowns
    rows_j = np.concatenate([ca, ca, cb, cb])
    cols_j = np.concatenate([ca, cb, ca, cb])
    keep_j = (rows_j < n) & (cols_j < n)
    rows_j, cols_j = rows_j[keep_j], cols_j[keep_j]
    # the start of each line-A node (per raw node (r, c)): its driver's voltage
    a_start_pos = node_pos[A.ravel()]
    row_v = np.full((K, R), tech.v_read_v) if gate_driven else x * tech.v_read_v
    a_start_v = np.repeat(row_v, C, axis=1)                       # (K, R*C) in A.ravel() order
    # vectors solved together: one block-diagonal sparse system of up to ~2e5 unknowns
    batch = max(1, min(K, 200_000 // max(n, 1)))
    for k0 in range(0, K, batch):
        ks = slice(k0, min(K, k0 + batch))
        c_, s_, i_ = _coupled_batch(lib, cp, states, x[ks], w_flat, row_of, ca, cb, n, m, fixed_v[ks][:, fixed_cols],
                                    G, G_uu, inc_a, inc_b, rows_j, cols_j, keep_j, sense_pos, sense_sign,
                                    sense_extra_a, tech.v_read_v, max_iter, reltol, vntol_v, abstol_a, dv_max_v,
                                    start=(a_start_pos, a_start_v[ks]))
        cur[ks], status[ks], iters[ks] = c_, s_[:, None], i_[:, None]
    return cur, iters, status


def _coupled_batch(lib, cp, states, x, w_flat, row_of, ca, cb, n, m, vf, G, G_uu, inc_a, inc_b, rows_j, cols_j,
                   keep_j, sense_pos, sense_sign, sense_extra_a, v_read_v, max_iter, reltol, vntol_v, abstol_a,
                   dv_max_v, start):
    """Newton on B vectors at once (module doc); returns currents (B, C), status (B,), iterations (B,)."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    Bn, ncell = x.shape[0], ca.size
    xk = x[:, row_of]                                           # (B, ncell)
    s1 = np.ascontiguousarray(states[xk, w_flat[None, :], 0])
    s2 = np.ascontiguousarray(states[xk, w_flat[None, :], 1])
    ntot = Bn * ncell
    mwarm = np.full(ntot, np.nan)
    ia, ib, J = np.empty(ntot), np.empty(ntot), np.empty((ntot, 4))
    ptr = _ptr

    def evaluate(V):
        va, vb = np.ascontiguousarray(V[:, ca]).ravel(), np.ascontiguousarray(V[:, cb]).ravel()
        lib.cosim_cells_eval(cp, ntot, ptr(s1), ptr(s2), ptr(va), ptr(vb), ptr(mwarm), ptr(ia), ptr(ib), ptr(J))
        leave = (G @ V.T).T + (inc_a @ ia.reshape(Bn, ncell).T).T - (inc_b @ ib.reshape(Bn, ncell).T).T
        return leave

    off = (np.arange(Bn) * n)[:, None]
    del v_read_v
    rows_all = (rows_j[None, :] + off).ravel()
    cols_all = (cols_j[None, :] + off).ravel()
    base = sp.block_diag([G_uu] * Bn, format="csc") if n else None
    V = np.zeros((Bn, m))
    V[:, n:] = vf
    # start: the ideal array (the driven lines at their drivers' voltage, the other lines at 0 V)
    a_pos, a_init = start
    sel = a_pos < n
    V[:, a_pos[sel]] = a_init[:, np.nonzero(sel)[0]]
    cur = np.full((Bn, len(sense_pos)), np.nan)
    status = np.ones(Bn, np.int32)
    iters = np.full(Bn, max_iter, np.int32)
    active = np.ones(Bn, bool)
    prev_sense, d_prev, step_ok = None, np.full((Bn, len(sense_pos)), np.inf), np.zeros(Bn, bool)
    for it in range(1, max_iter + 1):
        leave = evaluate(V)
        sense = sense_sign * -leave[:, sense_pos] + sense_extra_a
        bad = ~(np.isfinite(leave).all(axis=1) & np.isfinite(J.reshape(Bn, -1)).all(axis=1))
        newly_bad = bad & active
        status[newly_bad], iters[newly_bad], active[newly_bad] = 2, it, False
        if prev_sense is not None:
            d = np.abs(sense - prev_sense)
            tol = reltol * np.abs(sense) + abstol_a
            settled = np.all((d <= tol) | ((d < d_prev) & (d * d <= 0.01 * tol * d_prev)), axis=1)
            done = active & step_ok & settled
            cur[done], status[done], iters[done], active[done] = sense[done], 0, it, False
            d_prev = d
        elif n == 0:
            cur[active], status[active], iters[active], active[:] = sense[active], 0, it, False
        if not active.any() or it == max_iter:
            break
        prev_sense = sense
        st = np.ascontiguousarray(J.reshape(Bn, ncell, 4).transpose(0, 2, 1)).reshape(Bn, 4 * ncell)
        st[:, 2 * ncell:] *= -1.0        # rows of b: the cell injects ib there
        vals = st[:, keep_j].ravel()
        Jm = base + sp.csc_matrix((vals, (rows_all, cols_all)), shape=(Bn * n, Bn * n))
        try:
            d = spla.spsolve(Jm, -leave[:, :n].ravel(), permc_spec="NATURAL").reshape(Bn, n)
        except RuntimeError:
            status[active], iters[active], active[:] = 3, it, False
            break
        ok = np.isfinite(d).all(axis=1)
        status[active & ~ok], iters[active & ~ok], active[~ok] = 3, it, False
        d[~ok] = 0.0
        dmax = np.abs(d).max(axis=1)
        scale = np.where(dmax > dv_max_v, dv_max_v / np.maximum(dmax, 1e-300), 1.0)
        vold = V[:, :n].copy()
        V[:, :n] += scale[:, None] * d
        step_ok = (scale == 1.0) & np.all(np.abs(V[:, :n] - vold) <= reltol * np.maximum(np.abs(V[:, :n]), np.abs(vold)) + vntol_v, axis=1)
    return cur, np.where(active, 1, status), iters
