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
coupled    the whole array per input vector (its column lines and row lines; a zero-ohm line one node), in C
           (solver_kernel.c, cpl_run), one thread per slice of the vectors: Newton with the exact Jacobian, each
           step's linear system solved by GMRES (residual COUPLED_LIN_RTOL of the right-hand side's; the first
           step's, which never converges, COUPLED_LIN_RTOL_FIRST), right-
           preconditioned by one block Gauss-Seidel sweep: every column line's tridiagonal system with the row
           lines held, then every row line's (the wires are a few ohm, the cells kilo- to megaohms: 3-6 GMRES
           iterations per Newton step on average on 128-256-row arrays at 10-20 ohm). The same cells (exact or
           tabulated), damping and convergence test as the decoupled columns, each step first stopped node by node
           at the voltages the solution lies within (0 to v_read, every element being passive; a first step that
           stops more than 15 % of the nodes there is taken again from the cells' chords). CPU only.

Convergence, per column (decoupled) or vector (coupled: every column's current), at least two iterations: the
last step moved every node by at most ``reltol * |v| + vntol_v`` (ngspice's test with the decks' values: reltol 1e-6,
vntol 1e-6 V), and every sensed current settled: its change since the previous iteration is within
``reltol * |i| + abstol_a`` (abstol 1e-12 A, ngspice's), or, once the changes shrink (quadratic
convergence), the error it leaves, about change^2 / previous change, is 100x below that. With the exact
Jacobian this leaves the currents within about 1e-8 of ngspice converged to reltol 1e-9
(docs/benchmarks/solver.md). Steps longer than ``dv_max_v`` (default v_read) are shortened (damping). A
column or vector that does not converge is reported with its index and reason (``SolveResult.failures``;
``solve_array`` raises SolverError unless ``allow_failures``), its current NaN, never a number.

Also: ``solve_columns`` (chosen (vector, column) pairs only, decoupled: the certified reads of
cosim.cim.arrays.CertifiedArray) and ``ideal_column_currents`` (single cells solved, no ngspice).

``cells="table"`` (8T-SRAM and 1T-1R, C kernel; the default ``cells="auto"`` uses it wherever it
applies, ``cells="exact"`` never): the cell interpolated from ``cell_table``, bicubic Hermite patches of
ln(current) on a grid of ln(va - vb) and vb built from the exact cell (exact cells off the grid);
``table_error`` measures it against the exact cell (within 1e-7 where the exact cell is well conditioned);
column currents agree with the exact cells' within about 1e-9 (docs/benchmarks/solver.md), at several
times the speed. The coupled topology uses the same table (its cells' states are the decoupled ones: a coupled
1T-1R cell's gate is on whatever the input, the table's state of input 1), its grid extended down to
COUPLED_TABLE_U_MIN_FRACTION * v_read across the cell (long coupled lines leave many cells within 1 mV), and for its
line-driven cells biased backwards (a 1T-1R cell on a row at 0 V, below its column line) ``cell_table_reverse``
on the same extended grid; exact cells off the grids.
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
from .solver_kernel import FET_PARAM_NAMES, KIND, STATUS_REASONS, CellPar, CellTab, CplJob, DecJob, load

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
#: cells="auto": the tabulated cells where a table is built and validated (C kernel), else the exact ones
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
#: the coupled topology's tables reach further down, to COUPLED_TABLE_U_MIN_FRACTION * v_read across the cell (the
#: decoupled grid extended by whole steps of t, its points kept): on long coupled lines at 10-20 ohm many cells sit
#: at the solution with their two lines within 1 mV (8T-SRAM cells near the far end of a 256-row bit line, 1T-1R
#: cells on a row at 0 V, reverse-biased by their column line), where the exact cells cost ~15-20x a lookup. Where
#: the extended grid cannot be built (a current that is not positive on it: the 1T-1R forward table, whose inner
#: node's rshunt current crosses zero below ~1 mV) the decoupled grid serves
COUPLED_TABLE_U_MIN_FRACTION = 5e-5


def tabulated(spec: ArraySpec) -> bool:
    """Whether ``cells="table"`` applies: a cell kind with a validated table (either topology)."""
    return cell_kind(spec.tech).tabulated


def cell_table(tech, step_v: float = TABLE_STEP_V, ln_step: float = TABLE_LN_STEP,
               u_min_fraction: float = TABLE_U_MIN_FRACTION, states: tuple[int, ...] = ()) -> tuple[CellTab, np.ndarray]:
    """The tabulated cell of ``tech`` (decoupled states): per state, on a grid of t = ln(va - vb) and the
    source-line voltage vb (module constants TABLE_*), the logarithm of the exact cell's current (both
    currents where they differ: 1T-1R, whose inner node has the deck's rshunt) and its derivatives
    (d2/dt dvb by a central difference of d/dt), for bicubic Hermite interpolation in the kernel (exact cells
    outside the grid). Built once per set of cell parameters (technologies that differ in wires, driver or
    sink only share it). Returns the ctypes descriptor and the array it points into (keep both alive).
    ``u_min_fraction`` below TABLE_U_MIN_FRACTION: the grid extended down to about that fraction of v_read
    across the cell by whole steps of t (``_extend_steps``), the default grid's points kept. ``states``: those
    states only (the others NaN, as cell_table_reverse's); () all four."""
    return _cell_table(_table_key(tech, float(step_v), float(ln_step), _extend_steps(u_min_fraction, ln_step)),
                       forward_states=tuple(sorted(states)))


def cell_table_reverse(tech, states: tuple[int, ...], step_v: float = TABLE_STEP_V,
                       ln_step: float = TABLE_LN_STEP,
                       u_min_fraction: float = TABLE_U_MIN_FRACTION) -> tuple[CellTab, np.ndarray]:
    """``cell_table`` of the cell biased the other way (its node b above its node a, the current flowing back),
    for the table's ``states`` only (the others NaN): on the same grid of t = ln(vb - va) and va, the logarithm
    of minus the currents. The coupled topology's line-driven cells need it: on a row at 0 V (input 0) a 1T-1R
    cell (its gate on) is reverse-biased by its column line. The kernel looks it up with the two voltages
    swapped and the currents' signs turned back."""
    return _cell_table(_table_key(tech, float(step_v), float(ln_step), _extend_steps(u_min_fraction, ln_step)),
                       tuple(sorted(states)))


def _extend_steps(u_min_fraction: float, ln_step: float) -> int:
    """How many steps of t the grid reaches below TABLE_U_MIN_FRACTION * v_read for ``u_min_fraction``."""
    if not 0 < u_min_fraction <= TABLE_U_MIN_FRACTION:
        raise InputError(f"u_min_fraction must be in (0, {TABLE_U_MIN_FRACTION}], got {u_min_fraction}")
    return int(round(np.log(TABLE_U_MIN_FRACTION / u_min_fraction) / ln_step))


def _table_states(spec: ArraySpec) -> list[int]:
    """The table's state (an index into the decoupled states) of each of ``spec``'s cell states, -1 for none."""
    tstates = cell_states(ArraySpec(spec.tech, 1, 1, "decoupled")).reshape(4, 2)
    out = []
    for s1, s2 in cell_states(spec).reshape(4, 2):
        same = np.nonzero((tstates[:, 0] == s1) & (tstates[:, 1] == s2))[0]
        out.append(int(same[0]) if same.size else -1)
    return out


def _reverse_table(spec: ArraySpec, table):
    """The reverse-biased cells' table beside ``table`` (the coupled topology's line-driven cells, the states
    they take), or None: no table, or one that cannot be built (a current that is not positive on its grid;
    the exact cells answer)."""
    if table is None or spec.topology != "coupled" or cell_kind(spec.tech).coupled_drive != "line":
        return None
    states = tuple(sorted({st for st in _table_states(spec) if st >= 0}))
    return _reverse_table_or_none(spec.tech, states) if states else None


@lru_cache(maxsize=16)
def _reverse_table_or_none(tech, states: tuple[int, ...]):
    """cell_table_reverse, or None where it cannot be built (remembered: not tried again); the coupled
    topology's extended grid (COUPLED_TABLE_U_MIN_FRACTION) where it can be built, else the default one."""
    for frac in (COUPLED_TABLE_U_MIN_FRACTION, TABLE_U_MIN_FRACTION):
        try:
            return cell_table_reverse(tech, states, u_min_fraction=frac)
        except InputError:
            pass
    return None


def _coupled_table(spec: ArraySpec):
    """cell_table on the coupled topology's extended grid (COUPLED_TABLE_U_MIN_FRACTION), the states ``spec``'s
    cells take only (a coupled 1T-1R cell's gate is on whatever the input), or None where it cannot be built
    (remembered)."""
    states = tuple(sorted({st for st in _table_states(spec) if st >= 0}))
    return _coupled_table_of(spec.tech, states) if states else None


@lru_cache(maxsize=16)
def _coupled_table_of(tech, states: tuple[int, ...]):
    try:
        return cell_table(tech, u_min_fraction=COUPLED_TABLE_U_MIN_FRACTION, states=states)
    except InputError:
        return None


def _chosen_table(spec: ArraySpec, cells: str, use_torch: bool = False):
    """The table the C kernel gets for ``cells`` (checked here: InputError for an unknown cell model, or
    "table" where none applies): None for the exact cells and the torch backend; with "auto", also where
    the table cannot be built for the technology's cell (a current that is not positive on its grid, say),
    so that the exact cells answer instead of an error."""
    if cells not in CELL_MODELS:
        raise InputError(f"unknown cell model '{cells}': expected one of {', '.join(CELL_MODELS)}")
    if cells == "table" and (use_torch or not tabulated(spec)):
        raise InputError("cells='table' is the 8T-SRAM and 1T-1R cells on the C kernel only")
    if use_torch or cells == "exact" or not tabulated(spec):
        return None
    if spec.topology == "coupled" and (extended := _coupled_table(spec)) is not None:
        return extended
    if cells == "table":
        return cell_table(spec.tech)
    try:
        return cell_table(spec.tech)
    except InputError:
        return None


@lru_cache(maxsize=64)
def _table_key(tech, step_v: float, ln_step: float, extend: int = 0) -> tuple:
    """What the table of ``tech`` depends on: the cell's parameters and states, the read voltage, the steps, the
    grid's extension below TABLE_U_MIN_FRACTION (steps of t)."""
    spec = ArraySpec(tech, 1, 1, "decoupled")
    if not tabulated(spec):
        raise InputError(f"no tabulated cell for cell kind '{tech.cell}'")
    return (bytes(cell_parameters(spec)), cell_states(spec).tobytes(), float(tech.v_read_v), step_v, ln_step,
            float(TABLE_VB_MAX_FRACTION.get(tech.cell, 1.0)), int(extend))


@lru_cache(maxsize=8)
def _cell_table(key, reverse_states: tuple[int, ...] = (),
                forward_states: tuple[int, ...] = ()) -> tuple[CellTab, np.ndarray]:
    par_bytes, states_bytes, vr, step_v, ln_step, vb_max_fraction, extend = key
    lib = load()
    par = CellPar.from_buffer_copy(par_bytes)
    states = np.frombuffer(states_bytes).reshape(4, 2)
    ts = np.arange(np.log(TABLE_U_MIN_FRACTION * vr), np.log(vr + 2 * TABLE_MARGIN_V) + ln_step, ln_step)
    if extend:
        ts = np.concatenate([ts[0] - ln_step * np.arange(extend, 0, -1), ts])
    ys = np.arange(-TABLE_MARGIN_V, vb_max_fraction * vr + step_v, step_v)
    T, Y = (a.ravel() for a in np.meshgrid(ts, ys, indexing="ij"))
    U = np.exp(T)
    n = T.size
    h = 2e-5
    nch = 1 if par.kind == KIND["sram8t"] else 2
    reverse = bool(reverse_states)
    out = np.full((nch, 4, ts.size, ys.size, 4), np.nan)
    for st in reverse_states or forward_states or range(4):
        s1, s2 = np.full(n, states[st, 0]), np.full(n, states[st, 1])
        cols = []
        for dy in (0.0, h, -h):   # vb moved, va - vb kept
            yy = np.ascontiguousarray(Y + dy)
            va = np.ascontiguousarray(yy + U)
            cols.append(_exact_cells(lib, par, s1, s2, va, yy, reverse))
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


def _exact_cells(lib, par, s1, s2, va, vb, reverse: bool = False):
    """The exact cells (``cosim_cells_eval``) in states (s1, s2) at node voltages va, vb: the currents into
    node a and node b and the Jacobian (n, 4). ``reverse``: the cell biased the other way, node a at ``vb``
    and node b at ``va`` above it, given as the reverse table holds it (minus the currents, d/d(b) and
    d/d(a) swapped)."""
    n = va.size
    m, ia, ib, J = np.full(n, np.nan), np.empty(n), np.empty(n), np.empty((n, 4))
    a, b = (vb, va) if reverse else (va, vb)
    lib.cosim_cells_eval(ctypes.pointer(par), n, *(_ptr(x) for x in (s1, s2, a, b, m, ia, ib, J)))
    if reverse:
        return -ia, -ib, -J[:, [1, 0, 3, 2]]
    return ia, ib, J


def table_error(tech, points: int = 200_000, seed: int = 0, min_cell_v: float = 0.1,
                reverse_states: tuple[int, ...] = (), u_min_fraction: float = TABLE_U_MIN_FRACTION,
                table_states: tuple[int, ...] = ()) -> dict:
    """Largest relative error of the tabulated cell against the exact one (current, d/dva, d/dvb; both
    currents where the cell has two) at random points of its grid with at least ``min_cell_v`` across the
    cell and the bit line at most ``v_read + TABLE_MARGIN_V`` (the voltages that occur), per state.
    ``reverse_states``: the reverse-biased table of those states instead (cell_table_reverse: node b at the
    higher voltage, its currents and derivatives against minus the exact cell's). ``u_min_fraction``, ``table_states``:
    the table built so (cell_table; the coupled topology's: COUPLED_TABLE_U_MIN_FRACTION), those states only."""
    lib = load()
    tab, _arr = (cell_table_reverse(tech, reverse_states, u_min_fraction=u_min_fraction) if reverse_states
                 else cell_table(tech, u_min_fraction=u_min_fraction, states=table_states))
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
    for st in reverse_states or table_states or range(4):
        sti = np.full(n, st, np.int32)
        f, fb, F, inside = np.empty(n), np.empty(n), np.empty((n, 4)), np.empty(n, np.int32)
        lib.cosim_table_eval(ctypes.pointer(tab), n, *(_ptr(a) for a in (sti, va, vb, f, fb, F, inside)))
        s1, s2 = np.full(n, states[st, 0]), np.full(n, states[st, 1])
        ia, ib, J = _exact_cells(lib, par, s1, s2, va, vb, bool(reverse_states))
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
    ``cells``: "exact" (every cell from the device equations), "table" (8T-SRAM and 1T-1R, C kernel: the
    cells interpolated from ``cell_table``, within about 1e-7 of the exact cell; faster), or
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
        cur, iters, status = _solve_coupled(spec, x, w, max_iter, reltol, vntol_v, abstol_a, dv, nthreads, table=table,
                                            rtable=_reverse_table(spec, table))
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
# coupled topology

#: the coupled kernel's linear solves (solver_kernel.c, cpl_run): GMRES to this residual relative to the right-hand
#: side's, restarted after COUPLED_GMRES_RESTART vectors, at most COUPLED_GMRES_MAX iterations per Newton step
COUPLED_LIN_RTOL = 1e-8
#: ... of the first Newton step (from the ideal start; the convergence test needs two iterations, so it is never the
#: converged one): fewer GMRES iterations, the same Newton iterations (solver_kernel.c, cpl_run)
COUPLED_LIN_RTOL_FIRST = 1e-3
COUPLED_GMRES_RESTART = 30
COUPLED_GMRES_MAX = 600


def coupled_lines(tech) -> dict:
    """The coupled deck's lines in the kernel's terms (cosim.circuit.netlist): the wire conductances of the column
    and row lines (0: zero-ohm wires, the line one node) and their periphery (conductance; held where zero-ohm)."""
    gate = cell_kind(tech).coupled_drive == "gate"
    gsh = g_shunt_s(ArraySpec(tech, 1, 1, "coupled"))
    if gate:   # bit lines down the columns from the driver (row 0); source lines along the rows to the sink (column 0)
        col_end, col_fixed = _conductance(tech.r_driver_ohm), tech.r_driver_ohm == 0
        row_end, row_fixed = _conductance(tech.r_sink_ohm), tech.r_sink_ohm == 0
        g_row = _conductance(tech.wire_ohm("sl"))
    else:      # row lines from the driver (column 0); column lines down to the sink (row R-1), its node's shunt
        col_end, col_fixed = (0.0 if tech.r_sink_ohm == 0 else 1.0 / tech.r_sink_ohm + gsh), tech.r_sink_ohm == 0
        row_end, row_fixed = _conductance(tech.r_driver_ohm), tech.r_driver_ohm == 0
        g_row = _conductance(tech.wire_ohm("wl"))
    return {"gate_driven": int(gate), "g_col_s": _conductance(tech.wire_ohm("bl")), "g_row_s": g_row,
            "g_col_end_s": col_end, "g_row_end_s": row_end, "col_end_fixed": int(col_fixed),
            "row_end_fixed": int(row_fixed), "g_shunt_s": gsh}


def _solve_coupled(spec, x, w, max_iter, reltol, vntol_v, abstol_a, dv_max_v, nthreads, table=None, rtable=None,
                   lin_iters: np.ndarray | None = None):
    """The coupled kernel (solver_kernel.c, cosim_solve_coupled): currents (K, C), iterations and status per
    column; ``lin_iters`` (K,) int64, if given, receives each vector's GMRES iterations (all its Newton steps)."""
    lib = load()
    tech = spec.tech
    K, R, C = x.shape[0], spec.rows, spec.cols
    xc = np.ascontiguousarray(x, dtype=np.uint8)
    wc = np.ascontiguousarray(w, dtype=np.uint8)
    cur = np.empty((K, C))
    status = np.empty((K, C), np.int32)
    iters = np.empty((K, C), np.int32)
    par = cell_parameters(spec)
    states = cell_states(spec).reshape(4, 2)
    job = CplJob()
    job.P = ctypes.pointer(par)
    job.K, job.R, job.C = K, R, C
    job.x, job.w = xc.ctypes.data, wc.ctypes.data
    for st in range(4):
        job.state[st][0], job.state[st][1] = states[st]
        job.tstate[st] = -1
    if table is not None:
        # the table's states are the decoupled ones: each coupled state takes the one with the same gate and level
        for st, tst in enumerate(_table_states(spec)):
            job.tstate[st] = tst
        job.table = ctypes.pointer(table[0])
        if rtable is not None:
            job.rtable = ctypes.pointer(rtable[0])
    for k, v in coupled_lines(tech).items():
        setattr(job, k, v)
    job.v_read_v = tech.v_read_v
    job.max_iter, job.reltol, job.vntol_v, job.abstol_a, job.dv_max_v = max_iter, reltol, vntol_v, abstol_a, dv_max_v
    job.lin_rtol, job.gmres_restart, job.gmres_max = COUPLED_LIN_RTOL, COUPLED_GMRES_RESTART, COUPLED_GMRES_MAX
    job.lin_rtol_first = COUPLED_LIN_RTOL_FIRST
    job.i_out, job.status, job.iters = cur.ctypes.data, status.ctypes.data, iters.ctypes.data
    if lin_iters is not None:
        job.lin_iters = lin_iters.ctypes.data
    lib.cosim_solve_coupled(ctypes.byref(job), int(nthreads))
    return cur, iters, status


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
