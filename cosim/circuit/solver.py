"""Exact DC operating point of whole crossbar arrays, batched over input vectors: the ngspice deck's
circuit (cosim.circuit.netlist) solved by Newton's method on its line-node voltages.

    from cosim.circuit.solver import solve_array
    res = solve_array(spec, inputs, weights)       # inputs (K, R), weights (R, C) of 0/1
    res.column_current_a                           # (K, C) A, the current ``cosim.circuit.spice.run_array`` senses

The circuit is the deck's, built again from the geometry (not from the deck text): the same driver,
wire-segment and sink resistances, the same sense points and signs, zero resistances merged into one
node, and the deck's ``rshunt`` from every node to ground for nonlinear cells. Each cell's current is a
function of its two line-node voltages, evaluated by the compiled device code the decks load
(cosim.circuit.solver_kernel: the 8T read stack's inner node solved inside the cell as cosim_stack does, the
1T-1R inner node likewise, with its rshunt).

decoupled  every column independent: 2R unknowns (bit line, source line, each with its own wire
           resistance), a block-tridiagonal Jacobian with 2x2 blocks solved by the block Thomas algorithm
           (a zero-ohm line beside a resistive one: R + 1 unknowns, a tridiagonal Jacobian bordered by
           the merged line's node), in C, one thread per slice of the K x C columns; columns with both lines
           resistive several at once in lanes (as many as the CPU's vector registers hold doubles: the wires, the
           elimination and the tabulated cells vectorised over columns; solver_kernel.c, dec_run_lanes), whose
           first Newton step starts from each cell's tangent or chord conductance at the ideal bias, whichever
           is smaller, and is shortened where it would leave a cell off the table's grid.
           ``backend="torch"`` (cosim.circuit.solver_torch) runs the same iteration in torch float64 on any device
           (CUDA), all columns of a batch at once; on a CPU the C kernel is ~10x faster.
coupled    the whole array per input vector: a sparse Jacobian (scipy.sparse, SuperLU; the vectors of a
           batch as one block-diagonal system), cells evaluated by the same C code. CPU only.

Convergence, per column (decoupled) or vector (coupled), at least two iterations: the last step moved
every node by at most ``reltol * |v| + vntol_v`` (ngspice's test with the decks' values: reltol 1e-6,
vntol 1e-6 V), and every sensed current settled: its change since the previous iteration is within
``reltol * |i| + abstol_a`` (abstol 1e-12 A, ngspice's), or, once the changes shrink (quadratic
convergence), the error it leaves, about change^2 / previous change, is 100x below that. With the exact
Jacobian this leaves the currents within about 1e-8 of ngspice converged to reltol 1e-9
(docs/benchmarks/solver.md). Steps longer than ``dv_max_v`` (default v_read) are shortened (damping). A
column or vector that does not converge is reported with its index and reason (``SolveResult.failures``;
``solve_array`` raises SolverError unless ``allow_failures``), its current NaN, never a number.

Also: ``solve_columns`` (chosen (vector, column) pairs only, decoupled: the certified reads of
cosim.cim.arrays.CertifiedArray) and ``ideal_column_currents`` (single cells solved, no ngspice).

``cells="table"`` (8T-SRAM and 1T-1R, decoupled, C kernel; the default ``cells="auto"`` uses it wherever it
applies, ``cells="exact"`` never): the cell interpolated from ``cell_table``, bicubic Hermite patches of
ln(current) on a grid of ln(va - vb) and vb built from the exact cell (exact cells off the grid);
``table_error`` measures it against the exact cell (within 1e-7 where the exact cell is well conditioned);
column currents agree with the exact cells' within about 1e-9 (docs/benchmarks/solver.md), at several
times the speed.
"""

from __future__ import annotations

import ctypes
import os
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .cells import cell_kind
from .devices import model_text
from ..errors import InputError, SolverError
from .netlist import RELTOL, RSHUNT_OHM, ArraySpec, check_inputs
from .solver_kernel import FET_PARAM_NAMES, KIND, STATUS_REASONS, CellPar, CellTab, DecJob, load

VNTOL_V = 1e-6
ABSTOL_A = 1e-12
MAX_ITER = 100
#: decoupled columns with both lines resistive solved several at once in lanes (solver_kernel.c, dec_run_lanes:
#: the same iteration per column, vectorised over columns); False: one column at a time (dec_run)
DECOUPLED_LANES = True


@dataclass
class SolveResult:
    """Column currents of K input vectors by the exact solver, and how it went."""

    spec: ArraySpec
    column_current_a: np.ndarray          # (K, C) float64, A; NaN where not converged
    iterations: np.ndarray                # (K, C) Newton iterations (coupled: of the vector)
    failures: list[tuple[int, int, str]] = field(default_factory=list)   # (vector, column, reason)
    seconds: float = 0.0
    threads: int = 1
    cells: str = "exact"                  # the cell model used: "exact" or "table" (cosim.circuit.solver.cell_table)

    @property
    def converged(self) -> np.ndarray:
        return np.isfinite(self.column_current_a)


@lru_cache(maxsize=16)
def fet_parameters(flavour: str) -> tuple[float, ...]:
    """The ``nstack_<flavour>_c`` .model card of finfet7_osdi.lib (the deck's FETs), in the C order
    (nfin is set per technology)."""
    text = model_text("finfet7_osdi.lib")
    m = re.search(rf"^\.model\s+nstack_{re.escape(flavour)}_c\s+cosim_stack\s+(.*)$", text, re.M)
    if m is None:
        raise InputError(f"no compiled FET model for flavour '{flavour}' in finfet7_osdi.lib")
    vals = dict(kv.split("=", 1) for kv in m.group(1).split())
    return tuple(1.0 if n == "nfin" else float(vals[n]) for n in FET_PARAM_NAMES)


def g_shunt_s(spec: ArraySpec) -> float:
    """Conductance of the deck's rshunt from every node to ground (decks of nonlinear cells only)."""
    return 0.0 if cell_kind(spec.tech).linear else 1.0 / RSHUNT_OHM


def cell_parameters(spec: ArraySpec) -> CellPar:
    tech = spec.tech
    p = CellPar()
    kind = cell_kind(tech)
    if kind.kernel_kind is None:
        raise InputError(f"the exact solver has no cell function for cell kind '{tech.cell}': simulate it "
                         "with ngspice (cosim spice, cosim calibrate --solver ngspice)")
    p.kind = kind.kernel_kind
    if not kind.linear:
        for i, v in enumerate(fet_parameters(tech.fet_flavour)):
            p.fet[i] = v
    p.nfin = float(tech.fet_nfin)
    p.fet[0] = float(tech.fet_nfin)
    p.re_i0_a, p.re_g0_m, p.re_v0_v = tech.reram_i0_a, tech.reram_g0_m, tech.reram_v0_v
    p.g_inner_shunt_s = g_shunt_s(spec)
    return p


def cell_states(spec: ArraySpec) -> np.ndarray:
    """(2, 2, 2): the cell's (s1, s2) for [input, weight] in the kernel's terms (gate voltages, gap,
    conductance; see solver_kernel.c)."""
    return cell_kind(spec.tech).states(spec.topology or spec.tech.topology)


def column_wire_ohm(tech) -> tuple[float, float]:
    """The wire resistances (ohm) per segment of the decoupled columns' bit line and source line, which the
    column kernels (C and torch) take (the decoupled deck has no row-line resistance). A zero-ohm line is one
    node; where only one of the two is, the kernels border the other line's tridiagonal Jacobian with it."""
    return tech.wire_ohm("bl"), tech.wire_ohm("sl")


def default_threads() -> int:
    try:
        import torch
        return max(1, torch.get_num_threads())
    except Exception:  # noqa: BLE001 - torch is optional here
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _conductance(ohm: float) -> float:
    return 0.0 if ohm == 0 else 1.0 / ohm


BACKENDS = ("auto", "c", "torch")
#: cells="auto": the tabulated cells where a table is built and validated (decoupled topology, C kernel), else
#: the exact ones
CELL_MODELS = ("auto", "exact", "table")
#: the tabulated cells (``cells="table"``): grid steps along t = ln(va - vb) and along the source-line
#: voltage vb (V); the grid spans va - vb from TABLE_U_MIN_FRACTION * v_read to v_read + 2 TABLE_MARGIN_V,
#: and vb from -TABLE_MARGIN_V to TABLE_VB_MAX_FRACTION[cell] * v_read (the IR drops that occur, with room for
#: Newton's iterates: measured on 64-256-row columns at 2-20 ohm per cell; 1 for a cell not named)
TABLE_LN_STEP = 0.01
TABLE_STEP_V = 2e-3
TABLE_U_MIN_FRACTION = 0.005
TABLE_VB_MAX_FRACTION = {"sram8t": 0.6, "reram1t1r": 1.0}
TABLE_MARGIN_V = 0.02


def tabulated(spec: ArraySpec) -> bool:
    """Whether ``cells="table"`` applies: a cell kind with a validated table, the decoupled topology."""
    return cell_kind(spec.tech).tabulated and spec.topology == "decoupled"


def cell_table(tech, step_v: float = TABLE_STEP_V, ln_step: float = TABLE_LN_STEP) -> tuple[CellTab, np.ndarray]:
    """The tabulated cell of ``tech`` (decoupled states): per state, on a grid of t = ln(va - vb) and the
    source-line voltage vb (module constants TABLE_*), the logarithm of the exact cell's current (both
    currents where they differ: 1T-1R, whose inner node has the deck's rshunt) and its derivatives
    (d2/dt dvb by a central difference of d/dt), for bicubic Hermite interpolation in the kernel (exact cells
    outside the grid). Built once per set of cell parameters (technologies that differ in wires, driver or
    sink only share it). Returns the ctypes descriptor and the array it points into (keep both alive)."""
    return _cell_table(_table_key(tech, float(step_v), float(ln_step)))


def _chosen_table(spec: ArraySpec, cells: str, use_torch: bool = False):
    """The table the C kernel gets for ``cells`` (checked here: InputError for an unknown cell model, or
    "table" where none applies): None for the exact cells and the torch backend; with "auto", also where
    the table cannot be built for the technology's cell (a current that is not positive on its grid, say),
    so that the exact cells answer instead of an error."""
    if cells not in CELL_MODELS:
        raise InputError(f"unknown cell model '{cells}': expected one of {', '.join(CELL_MODELS)}")
    if cells == "table" and (use_torch or not tabulated(spec)):
        raise InputError("cells='table' is the 8T-SRAM and 1T-1R cells in the decoupled topology on the C kernel only")
    if use_torch or cells == "exact" or not tabulated(spec):
        return None
    if cells == "table":
        return cell_table(spec.tech)
    try:
        return cell_table(spec.tech)
    except InputError:
        return None


@lru_cache(maxsize=64)
def _table_key(tech, step_v: float, ln_step: float) -> tuple:
    """What the table of ``tech`` depends on: the cell's parameters and states, the read voltage, the steps."""
    spec = ArraySpec(tech, 1, 1, "decoupled")
    if not tabulated(spec):
        raise InputError(f"no tabulated cell for cell kind '{tech.cell}'")
    return (bytes(cell_parameters(spec)), cell_states(spec).tobytes(), float(tech.v_read_v), step_v, ln_step,
            float(TABLE_VB_MAX_FRACTION.get(tech.cell, 1.0)))


@lru_cache(maxsize=8)
def _cell_table(key) -> tuple[CellTab, np.ndarray]:
    par_bytes, states_bytes, vr, step_v, ln_step, vb_max_fraction = key
    lib = load()
    par = CellPar.from_buffer_copy(par_bytes)
    states = np.frombuffer(states_bytes).reshape(4, 2)
    ts = np.arange(np.log(TABLE_U_MIN_FRACTION * vr), np.log(vr + 2 * TABLE_MARGIN_V) + ln_step, ln_step)
    ys = np.arange(-TABLE_MARGIN_V, vb_max_fraction * vr + step_v, step_v)
    T, Y = (a.ravel() for a in np.meshgrid(ts, ys, indexing="ij"))
    U = np.exp(T)
    n = T.size
    h = 2e-5
    nch = 1 if par.kind == KIND["sram8t"] else 2
    out = np.empty((nch, 4, ts.size, ys.size, 4))
    for st in range(4):
        s1, s2 = np.full(n, states[st, 0]), np.full(n, states[st, 1])
        cols = []
        for dy in (0.0, h, -h):   # vb moved, va - vb kept
            yy = np.ascontiguousarray(Y + dy)
            va = np.ascontiguousarray(yy + U)
            m, ia, ib, J = np.full(n, np.nan), np.empty(n), np.empty(n), np.empty((n, 4))
            lib.cosim_cells_eval(ctypes.pointer(par), n, *(_ptr(a) for a in (s1, s2, va, yy, m, ia, ib, J)))
            cols.append((ia, ib, J))
        for ch in range(nch):
            (f, dfa, dfb), (fp, dfap, _), (fm, dfam, _) = (
                (c[ch], c[2][:, 2 * ch], c[2][:, 2 * ch + 1]) for c in cols)
            if not (np.all(f > 0) and np.all(fp > 0) and np.all(fm > 0)):
                raise InputError("the tabulated cell needs a positive current on its whole grid")
            # g = ln f; dg/dt = (va - vb) f_va / f; dg/dvb (va - vb kept) = (f_va + f_vb) / f
            gt, gtp, gtm = U * dfa / f, U * dfap / fp, U * dfam / fm
            out[ch, st] = np.stack([np.log(f), gt, (dfa + dfb) / f, (gtp - gtm) / (2 * h)],
                                   axis=1).reshape(ts.size, ys.size, 4)
    out = np.ascontiguousarray(out)
    tab = CellTab()
    tab.nx, tab.ny, tab.nch = ts.size, ys.size, nch
    tab.x0, tab.dx, tab.y0, tab.dy = float(ts[0]), float(ln_step), float(ys[0]), float(step_v)
    tab.c = out.ctypes.data
    return tab, out


def table_error(tech, points: int = 200_000, seed: int = 0, min_cell_v: float = 0.1) -> dict:
    """Largest relative error of the tabulated cell against the exact one (current, d/dva, d/dvb; both
    currents where the cell has two) at random points of its grid with at least ``min_cell_v`` across the
    cell and the bit line at most ``v_read + TABLE_MARGIN_V`` (the voltages that occur), per state."""
    lib = load()
    tab, _arr = cell_table(tech)
    spec = ArraySpec(tech, 1, 1, "decoupled")
    par = cell_parameters(spec)
    states = cell_states(spec).reshape(4, 2)
    g = np.random.default_rng(seed)
    uv = np.exp(tab.x0 + g.random(points) * tab.dx * (tab.nx - 1))
    vb = tab.y0 + g.random(points) * tab.dy * (tab.ny - 1)
    va = vb + uv
    keep = (uv >= min_cell_v) & (va <= tech.v_read_v + TABLE_MARGIN_V)
    va, vb = np.ascontiguousarray(va[keep]), np.ascontiguousarray(vb[keep])
    n = va.size
    out = {}
    for st in range(4):
        sti = np.full(n, st, np.int32)
        f, fb, F, inside = np.empty(n), np.empty(n), np.empty((n, 4)), np.empty(n, np.int32)
        lib.cosim_table_eval(ctypes.pointer(tab), n, *(_ptr(a) for a in (sti, va, vb, f, fb, F, inside)))
        s1, s2 = np.full(n, states[st, 0]), np.full(n, states[st, 1])
        m, ia, ib, J = np.full(n, np.nan), np.empty(n), np.empty(n), np.empty((n, 4))
        lib.cosim_cells_eval(ctypes.pointer(par), n, *(_ptr(a) for a in (s1, s2, va, vb, m, ia, ib, J)))
        ok = inside.astype(bool)

        def worst(a, b):
            return float(np.max(np.abs(a - b)[ok] / np.abs(b)[ok]))
        out[st] = {"points": int(ok.sum()), "current": max(worst(f, ia), worst(fb, ib)),
                   "d_dva": max(worst(F[:, 0], J[:, 0]), worst(F[:, 2], J[:, 2])),
                   "d_dvb": max(worst(F[:, 1], J[:, 1]), worst(F[:, 3], J[:, 3]))}
    return out


def solve_array(spec: ArraySpec, inputs, weights, *, max_iter: int = MAX_ITER, reltol: float = RELTOL,
                vntol_v: float = VNTOL_V, abstol_a: float = ABSTOL_A, dv_max_v: float | None = None,
                threads: int | None = None, allow_failures: bool = False, backend: str = "auto",
                device=None, cells: str = "auto") -> SolveResult:
    """(K, C) column currents of ``spec`` for inputs (K, R) and weights (R, C) of 0/1, exactly (module doc).
    Raises SolverError naming the columns that did not converge, unless ``allow_failures``.

    ``backend``: "c" (the compiled kernel, CPU threads), "torch" (cosim.circuit.solver_torch, float64 on
    ``device``, decoupled topology only), "auto" (torch where ``device`` is not the CPU, else C).
    ``cells``: "exact" (every cell from the device equations), "table" (8T-SRAM and 1T-1R, decoupled, C
    kernel: the cells interpolated from ``cell_table``, within about 1e-7 of the exact cell; faster), or
    "auto" (the table where it applies, else the exact cells)."""
    if backend not in BACKENDS:
        raise InputError(f"unknown solver backend '{backend}': expected one of {', '.join(BACKENDS)}")
    use_torch = backend == "torch" or (backend == "auto" and device is not None and str(device) != "cpu")
    table = _chosen_table(spec, cells, use_torch)
    use_table = table is not None
    if use_torch and spec.topology != "decoupled":
        raise InputError("the torch solver backend handles the decoupled topology only; use backend='c' (CPU)")
    if use_torch and device is not None:
        import torch
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise InputError(f"unknown torch device '{device}'") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"device '{device}' asked for, but torch sees no CUDA GPU")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise InputError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not (reltol > 0 and vntol_v >= 0 and abstol_a >= 0):
        raise InputError("reltol must be positive, vntol_v and abstol_a non-negative")
    t0 = time.perf_counter()
    x, w = check_inputs(spec, inputs, weights)
    dv = spec.tech.v_read_v if dv_max_v is None else float(dv_max_v)
    nthreads = default_threads() if threads is None else max(1, int(threads))
    if use_torch:
        from .solver_torch import Cells, solve_decoupled
        import torch
        par, states = cell_parameters(spec), cell_states(spec)
        st = torch.as_tensor(states.reshape(4, 2))
        ws = torch.full((4, 5), float("nan"), dtype=torch.float64)
        Cells(par).eval(st[:, 0], st[:, 1], torch.full((4,), spec.tech.v_read_v, dtype=torch.float64),
                        torch.zeros(4, dtype=torch.float64), ws)
        cur, iters, status = solve_decoupled(spec, x, w, par=par, states=states, ws0=ws.numpy(),
                                             max_iter=max_iter, reltol=reltol, vntol_v=vntol_v, abstol_a=abstol_a,
                                             dv_max_v=dv, device=device or "cpu")
        nthreads = 1 if device is not None and str(device) != "cpu" else torch.get_num_threads()
    elif spec.topology == "decoupled":
        cur, iters, status = _solve_decoupled(spec, x, w, max_iter, reltol, vntol_v, abstol_a, dv, nthreads,
                                              table=table)
    else:
        cur, iters, status = _solve_coupled(spec, x, w, max_iter, reltol, vntol_v, abstol_a, dv)
    failures = [(int(k), int(c), STATUS_REASONS.get(int(status[k, c]), f"status {int(status[k, c])}"))
                for k, c in zip(*np.nonzero(status))]
    res = SolveResult(spec, cur, iters, failures, time.perf_counter() - t0, nthreads, "table" if use_table else "exact")
    if failures and not allow_failures:
        k, c, why = failures[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise SolverError(f"{spec.describe()}: column {c} of vector {k} did not converge: {why}{more}")
    return res


def solve_columns(spec: ArraySpec, inputs, weights, vector_index, column_index, *, max_iter: int = MAX_ITER,
                  threads: int | None = None, cells: str = "auto") -> np.ndarray:
    """Currents (A) of the chosen columns only: column ``column_index[i]`` of weights (R, C) read by input
    vector ``vector_index[i]`` of inputs (K, R), decoupled topology (columns independent). Raises
    SolverError when one does not converge. For re-solving a few columns of a large read. ``cells`` as
    solve_array's (C kernel)."""
    if spec.topology != "decoupled":
        raise InputError("solve_columns needs the decoupled topology (independent columns)")
    kk = np.ascontiguousarray(vector_index, dtype=np.int64).ravel()
    cc = np.ascontiguousarray(column_index, dtype=np.int64).ravel()
    try:
        xin = np.asarray(inputs)
    except Exception:  # noqa: BLE001 - check_inputs says what is wrong with it
        xin = None
    if xin is not None and xin.ndim == 2 and kk.size and kk.shape == cc.shape and kk.min() >= 0 \
            and kk.max() < xin.shape[0]:
        # only the vectors asked for are checked and passed on (a certified read asks for a few of many)
        uk, kinv = np.unique(kk, return_inverse=True)
        inputs, kk = xin[uk], np.ascontiguousarray(kinv, dtype=np.int64).ravel()
    table = _chosen_table(spec, cells)
    x, w = check_inputs(spec, inputs, weights)
    if kk.shape != cc.shape:
        raise InputError("vector_index and column_index must have the same length")
    if kk.size and (kk.min() < 0 or kk.max() >= x.shape[0] or cc.min() < 0 or cc.max() >= spec.cols):
        raise InputError("vector_index / column_index out of range")
    if kk.size == 0:
        return np.zeros(0)
    nthreads = default_threads() if threads is None else max(1, int(threads))
    cur, iters, status = _solve_decoupled(spec, x, w, max_iter, RELTOL, VNTOL_V, ABSTOL_A, spec.tech.v_read_v,
                                          nthreads, pairs=(kk, cc), table=table)
    bad = np.nonzero(status)[0]
    if bad.size:
        i = int(bad[0])
        raise SolverError(f"{spec.describe()}: column {int(cc[i])} of vector {int(kk[i])} did not converge: "
                          f"{STATUS_REASONS.get(int(status[i]), 'status ' + str(int(status[i])))}")
    return cur


@lru_cache(maxsize=64)
def _decoupled_job(tech, max_iter: int, reltol: float, vntol_v: float, abstol_a: float,
                   dv_max_v: float) -> tuple[bytes, CellPar]:
    """The parts of a decoupled job that depend on the technology and the settings only (the per-call
    set-up of solve_columns' small batches): the DecJob's bytes, and the CellPar its P points to."""
    spec = ArraySpec(tech, 1, 1, "decoupled")
    gsh = g_shunt_s(spec)
    par = cell_parameters(spec)
    states = cell_states(spec)
    job = DecJob()
    job.P = ctypes.pointer(par)
    for xi in (0, 1):
        for wi in (0, 1):
            job.state[2 * xi + wi][0], job.state[2 * xi + wi][1] = states[xi, wi]
    job.v_read_v = tech.v_read_v
    r_bl, r_sl = column_wire_ohm(tech)
    job.g_bl_s, job.g_sl_s = _conductance(r_bl), _conductance(r_sl)
    job.driver_fixed = int(tech.r_driver_ohm == 0)
    job.g_driver_s = _conductance(tech.r_driver_ohm)
    job.sink_fixed = int(tech.r_sink_ohm == 0)
    # the sink: the 0 V ammeter to node k, then r_sink to ground; k carries its own rshunt
    job.g_sink_s = 0.0 if job.sink_fixed else _conductance(tech.r_sink_ohm) + gsh
    job.g_shunt_s = gsh
    job.max_iter, job.reltol, job.vntol_v, job.abstol_a, job.dv_max_v = max_iter, reltol, vntol_v, abstol_a, dv_max_v
    return bytes(job), par


def _solve_decoupled(spec, x, w, max_iter, reltol, vntol_v, abstol_a, dv_max_v, nthreads, pairs=None, table=None):
    lib = load()
    K, R, C = x.shape[0], spec.rows, spec.cols
    xc = np.ascontiguousarray(x, dtype=np.uint8)
    wt = np.ascontiguousarray(w.T, dtype=np.uint8)
    shape = (K, C) if pairs is None else (pairs[0].size,)
    cur = np.empty(shape)
    status = np.empty(shape, np.int32)
    iters = np.empty(shape, np.int32)
    raw, par = _decoupled_job(spec.tech, int(max_iter), float(reltol), float(vntol_v), float(abstol_a), float(dv_max_v))
    job = DecJob.from_buffer_copy(raw)   # P points to ``par``, kept alive by the cache and this frame
    job.K, job.C, job.R = K, C, R
    job.x, job.wt = xc.ctypes.data, wt.ctypes.data
    job.i_out, job.status, job.iters = cur.ctypes.data, status.ctypes.data, iters.ctypes.data
    if pairs is not None:
        job.kidx, job.cidx, job.npairs = pairs[0].ctypes.data, pairs[1].ctypes.data, pairs[0].size
    if table is not None:
        job.table = ctypes.pointer(table[0])
    job.lanes = int(DECOUPLED_LANES)
    lib.cosim_solve_decoupled(ctypes.byref(job), int(nthreads))
    return cur, iters, status


# ------------------------------------------------------------------------------------------------
# coupled topology: a general sparse Newton on the merged node graph

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


def _solve_coupled(spec, x, w, max_iter, reltol, vntol_v, abstol_a, dv_max_v):
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


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


@lru_cache(maxsize=64)
def _cell_currents(tech, topology: str) -> tuple[float, float, float, float]:
    bare = tech.replace(r_wire_ohm=0.0, r_driver_ohm=0.0, r_sink_ohm=0.0)
    spec = ArraySpec(bare, rows=1, cols=2, topology=topology)
    res = solve_array(spec, np.array([[1], [0]]), np.array([[1, 0]]), threads=1)
    (i_on, i_off), (i_idle, i_idle_off) = res.column_current_a
    return float(i_on), float(i_off), float(i_idle), float(i_idle_off)


def ideal_column_currents(spec: ArraySpec, inputs, weights) -> np.ndarray:
    """(K, C) column currents without wire, driver or sink resistance (per-cell currents summed), the
    cells solved here: ``cosim.circuit.spice.ideal_column_currents`` without ngspice."""
    x, w = check_inputs(spec, inputs, weights)
    i_on, i_off, i_idle, i_idle_off = _cell_currents(spec.tech, spec.topology)
    xf, wf = x.astype(np.float64), w.astype(np.float64)
    return (i_on * (xf @ wf) + i_off * (xf @ (1 - wf)) + i_idle * ((1 - xf) @ wf)
            + i_idle_off * ((1 - xf) @ (1 - wf)))
