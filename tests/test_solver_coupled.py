"""The coupled topology's kernel (solver_kernel.c, cpl_run: Newton, GMRES preconditioned by the lines'
tridiagonal solves): against the sparse reference (tests/coupled_sparse.py, the scipy Newton it replaced),
the nodal solve (resistor arrays) and ngspice, on the issue's patterns; its tabulated cells; per-vector
non-convergence."""

import numpy as np
import pytest

from cosim.circuit import solver as solver_module
from cosim.circuit.netlist import ArraySpec
from cosim.circuit.nodal import solve_linear_array
from cosim.circuit.solver import solve_array
from cosim.circuit.spice import ngspice_info
from cosim.circuit.technology import get_technology
from cosim.errors import SolverError

from coupled_sparse import solve_coupled_sparse

PERIPHERY = [{}, {"r_wire_ohm": 0.0}, {"r_driver_ohm": 0.0, "r_sink_ohm": 0.0}, {"r_sink_ohm": 0.0},
             {"r_driver_ohm": 0.0}, {"r_wl_ohm": 0.0, "r_sl_ohm": 0.0}, {"r_bl_ohm": 0.0},
             {"r_wire_ohm": 0.0, "r_driver_ohm": 0.0, "r_sink_ohm": 0.0}]


def clustered(rows: int, cols: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Input vectors: random, skewed (10 % ones), all ones, far-end and near-end blocks, alternate rows, 95 %
    dense, all zeros; weights: a column of ones, a far-end block, a near-end block, alternate, random."""
    far, near = np.zeros(rows, int), np.zeros(rows, int)
    far[rows - max(1, rows // 4):] = 1
    near[: max(1, rows // 3)] = 1
    x = np.array([rng.integers(0, 2, rows), (rng.random(rows) < 0.1), np.ones(rows, int), far, near,
                  np.arange(rows) % 2, (rng.random(rows) < 0.95), np.zeros(rows, int)]).astype(int)
    w = rng.integers(0, 2, (rows, cols))
    w[:, 0] = 1
    if cols > 1:
        w[:, 1] = far
    if cols > 2:
        w[:, 2] = near
    if cols > 3:
        w[:, 3] = np.arange(rows) % 2
    return x, w


def rel(a, b) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-6)))


@pytest.mark.parametrize("tech", ["sram8t", "reram1t1r", "resistor"])
@pytest.mark.parametrize("lines", PERIPHERY)
def test_the_kernel_equals_the_sparse_reference(tech, lines, rng):
    """Exact cells: the kernel's currents equal the scipy Newton's (both converged to the decks' tolerance;
    measured ~1e-11 apart) on every periphery and zero-ohm line, and its Newton iterations are no more."""
    spec = ArraySpec(get_technology(tech, **lines), 20, 6, "coupled")
    x, w = clustered(20, 6, rng)
    got = solve_array(spec, x, w, cells="exact", threads=2)
    cur, iters, status = solve_coupled_sparse(spec, x, w)
    assert got.converged.all() and not status.any()
    assert rel(got.column_current_a, cur) < 1e-8
    assert got.iterations.max() <= iters.max() + 1


@pytest.mark.parametrize("rows,cols,r_wire", [(64, 16, 2.0), (40, 48, 20.0), (1, 5, 10.0), (17, 1, 10.0)])
def test_resistor_arrays_equal_the_nodal_solve(rows, cols, r_wire, rng):
    spec = ArraySpec(get_technology("resistor", r_wire_ohm=r_wire), rows, cols, "coupled")
    x, w = clustered(rows, cols, rng)
    np.testing.assert_allclose(solve_array(spec, x, w).column_current_a, solve_linear_array(spec, x, w),
                               rtol=1e-10, atol=1e-18)


@pytest.mark.parametrize("tech", ["sram8t", "reram1t1r"])
@pytest.mark.parametrize("r_wire", [2.0, 20.0])
def test_tabulated_cells_agree_with_the_exact_ones(tech, r_wire, rng):
    """The default cells (tabulated where the voltages lie on the table's grid) against the exact cells, on a
    wide array (the row lines carry many columns' currents)."""
    spec = ArraySpec(get_technology(tech, r_wire_ohm=r_wire), 64, 32, "coupled")
    x, w = clustered(64, 32, rng)
    tab = solve_array(spec, x, w)
    assert tab.cells == "table"
    exact = solve_array(spec, x, w, cells="exact")
    assert rel(tab.column_current_a, exact.column_current_a) < 1e-8


def test_threads_and_batches_do_not_change_a_vector(rng):
    spec = ArraySpec(get_technology("sram8t", r_wire_ohm=10.0), 32, 9, "coupled")
    x, w = clustered(32, 9, rng)
    one = solve_array(spec, x, w, threads=1).column_current_a
    np.testing.assert_array_equal(solve_array(spec, x, w, threads=3).column_current_a, one)
    np.testing.assert_array_equal(solve_array(spec, x[5:6], w, threads=1).column_current_a[0], one[5])


def test_non_convergence_is_reported_per_vector(rng):
    """A vector that reaches the iteration limit is reported with its index and reason, its columns NaN; the
    vectors beside it (all zeros: converged in 2 iterations) keep their currents."""
    spec = ArraySpec(get_technology("sram8t", r_wire_ohm=20.0), 64, 4, "coupled")
    x = np.zeros((3, 64), int)
    x[1] = 1            # 5 iterations
    w = np.ones((64, 4), int)
    res = solve_array(spec, x, w, max_iter=3, allow_failures=True)
    assert sorted((k, c) for k, c, _ in res.failures) == [(1, c) for c in range(4)]
    assert all(why == "iteration limit reached" for _, _, why in res.failures)
    assert np.isnan(res.column_current_a[1]).all() and np.isfinite(res.column_current_a[[0, 2]]).all()
    np.testing.assert_array_equal(res.column_current_a[[0, 2]], solve_array(spec, x, w).column_current_a[[0, 2]])
    with pytest.raises(SolverError, match="column 0 of vector 1 did not converge: iteration limit reached"):
        solve_array(spec, x, w, max_iter=3)


@pytest.mark.ngspice
@pytest.mark.parametrize("tech", ["sram8t", "reram1t1r", "resistor"])
@pytest.mark.parametrize("rows,cols,r_wire", [(24, 6, 10.0), (12, 9, 2.0)])
def test_equals_ngspice_on_clustered_patterns(tech, rows, cols, r_wire, rng):
    if ngspice_info()["executable"] is None:
        pytest.skip("ngspice not installed")
    from test_solver import spice_currents
    spec = ArraySpec(get_technology(tech, r_wire_ohm=r_wire), rows, cols, "coupled")
    x, w = clustered(rows, cols, rng)
    np.testing.assert_allclose(solve_array(spec, x, w).column_current_a, spice_currents(spec, x, w),
                               rtol=1e-6, atol=1e-12)


def test_reverse_biased_cell_table_error_is_below_1e_7():
    """The coupled 1T-1R cells on a row at 0 V are reverse-biased (their column line above them): their table
    (cell_table_reverse, the states the coupled topology takes: gate on) against the exact cell, down to 2 mV
    across it, and the kernel takes it (a coupled 1T-1R solve builds it)."""
    from cosim.circuit.solver import _reverse_table, _table_states, table_error
    tech = get_technology("reram1t1r")
    spec = ArraySpec(tech, 8, 4, "coupled")
    states = tuple(sorted(set(_table_states(spec))))
    assert states == (2, 3)
    err = table_error(tech, points=40_000, min_cell_v=2e-3, reverse_states=states)
    for st in states:
        assert err[st]["points"] > 10_000 and err[st]["current"] <= 1e-7, (st, err[st])
    from cosim.circuit.solver import cell_table
    assert _reverse_table(spec, cell_table(tech)) is not None
    assert _reverse_table(ArraySpec(get_technology("sram8t"), 8, 4, "coupled"), cell_table(tech)) is None


def test_the_linear_solves_take_few_gmres_iterations(rng):
    """The preconditioner (the lines' tridiagonal solves) leaves GMRES a few iterations per Newton step."""
    spec = ArraySpec(get_technology("sram8t", r_wire_ohm=20.0), 64, 16, "coupled")
    x, w = clustered(64, 16, rng)
    lin = np.zeros(x.shape[0], np.int64)
    cur, iters, status = solver_module._solve_coupled(spec, x, w, 100, 1e-6, 1e-6, 1e-12, spec.tech.v_read_v, 1,
                                                      lin_iters=lin)
    assert not status.any()
    np.testing.assert_array_equal(cur, solve_array(spec, x, w, cells="exact", threads=1).column_current_a)
    newton = iters[:, 0]
    assert np.all(lin >= newton - 1) and np.all(lin <= 8 * newton)


@pytest.mark.parametrize("cells", ["exact", "auto"])
def test_overshooting_first_steps_converge_to_the_reference(cells):
    """256-row 8T-SRAM bit lines at 20 ohm: the tangent first step overshoots by several v_read; the kernel stops
    each node at the bounds [0, v_read] (2 % margin) and takes the first step again from the cells' chords. The
    currents equal the sparse reference's (whose steps are only shortened as a whole: 7 Newton iterations), every
    vector converged, in at most 5 iterations (6 before the bounds)."""
    rows, cols = 256, 4
    spec = ArraySpec(get_technology("sram8t", r_wire_ohm=20.0), rows, cols, "coupled")
    far = np.zeros(rows, int)
    far[rows // 2:] = 1
    x = np.array([np.ones(rows, int), far, 1 - far])
    w = np.ones((rows, cols), int)
    w[::3, 1] = 0
    cur, iters, status = solver_module._solve_coupled(
        spec, x, w, 100, 1e-6, 1e-6, 1e-12, spec.tech.v_read_v, 1, table=solver_module._chosen_table(spec, cells))
    ref, ref_iters, ref_status = solve_coupled_sparse(spec, x, w)
    assert not status.any() and not ref_status.any()
    assert rel(cur, ref) < 1e-8
    assert iters.max() <= 5 and ref_iters.min() >= 7


def test_the_coupled_tables_reach_down_to_10_uV():
    """The coupled topology's tables (forward, and 1T-1R's reverse) extend the decoupled grid down to
    COUPLED_TABLE_U_MIN_FRACTION * v_read across the cell, the decoupled grid's points kept (its table unchanged):
    8T-SRAM within 3e-8 of the exact cell from 10 uV (states 0, 1, 3; state 2 carries ~1e-16 A, see
    test_solver.py); 1T-1R (the gate-on states the coupled cells take) within 1e-7 from 1 mV, 3e-7 below it
    (measured 2.2e-7)."""
    from cosim.circuit.solver import (COUPLED_TABLE_U_MIN_FRACTION as F, TABLE_U_MIN_FRACTION, _chosen_table,
                                      _reverse_table, cell_table, table_error)
    for name in ("sram8t", "reram1t1r"):
        tech = get_technology(name)
        spec = ArraySpec(tech, 8, 4, "coupled")
        dec, ext = cell_table(tech)[0], _chosen_table(spec, "auto")[0]
        assert dec.x0 == pytest.approx(np.log(TABLE_U_MIN_FRACTION * tech.v_read_v), abs=1e-12)
        assert ext.x0 <= np.log(F * tech.v_read_v) + ext.dx and ext.nx > dec.nx
        k = round((dec.x0 - ext.x0) / ext.dx)
        assert ext.x0 + k * ext.dx == pytest.approx(dec.x0, abs=1e-12) and ext.nx == dec.nx + k
        assert _chosen_table(ArraySpec(tech, 8, 4, "decoupled"), "auto")[0].nx == dec.nx
    err = table_error(get_technology("sram8t"), points=40_000, min_cell_v=1e-5, u_min_fraction=F)
    for st in (0, 1, 3):
        assert err[st]["points"] > 30_000 and err[st]["current"] <= 3e-8, (st, err[st])
    tech = get_technology("reram1t1r")
    assert _reverse_table(ArraySpec(tech, 8, 4, "coupled"), cell_table(tech))[0].x0 < np.log(1e-4 * tech.v_read_v)
    for kw in ({"table_states": (2, 3)}, {"reverse_states": (2, 3)}):
        for lo, bound in ((1e-5, 3e-7), (1e-3, 1e-7)):
            err = table_error(tech, points=40_000, min_cell_v=lo, u_min_fraction=F, **kw)
            for st in (2, 3):
                assert err[st]["points"] > 10_000 and err[st]["current"] <= bound, (kw, lo, st, err[st])


def test_a_loose_first_linear_solve_keeps_the_currents(rng, monkeypatch):
    """The first Newton step (never the converged one) solved to COUPLED_LIN_RTOL_FIRST only: fewer GMRES
    iterations than at COUPLED_LIN_RTOL, the same currents within 1e-10 and Newton iterations within one."""
    spec = ArraySpec(get_technology("sram8t", r_wire_ohm=20.0), 64, 16, "coupled")
    x, w = clustered(64, 16, rng)
    table = solver_module._chosen_table(spec, "auto")

    def run():
        lin = np.zeros(x.shape[0], np.int64)
        cur, iters, status = solver_module._solve_coupled(spec, x, w, 100, 1e-6, 1e-6, 1e-12, spec.tech.v_read_v, 1,
                                                          table=table, lin_iters=lin)
        assert not status.any()
        return cur, iters, lin
    assert solver_module.COUPLED_LIN_RTOL_FIRST > solver_module.COUPLED_LIN_RTOL
    cur, iters, lin = run()
    monkeypatch.setattr(solver_module, "COUPLED_LIN_RTOL_FIRST", solver_module.COUPLED_LIN_RTOL)
    cur0, iters0, lin0 = run()
    assert rel(cur, cur0) < 1e-10
    assert np.abs(iters - iters0).max() <= 1 and lin.sum() < lin0.sum()


@pytest.mark.parametrize("tech", ["sram8t", "reram1t1r"])
def test_small_and_odd_sized_arrays(tech, rng):
    """Arrays of a few cells (fewer than or not a multiple of the lanes' width: the kernel's per-cell work areas are
    padded to whole groups, each aligned for the lanes' vector loads): the tabulated cells against the exact ones,
    and each vector alone equal to the batch on two threads."""
    for rows, cols in [(1, 1), (1, 5), (3, 3), (7, 1), (9, 2), (5, 9), (13, 3), (17, 17)]:
        spec = ArraySpec(get_technology(tech, r_wire_ohm=5.0), rows, cols, "coupled")
        x, w = rng.integers(0, 2, (3, rows)), rng.integers(0, 2, (rows, cols))
        both = solve_array(spec, x, w, threads=2).column_current_a
        assert rel(both, solve_array(spec, x, w, cells="exact").column_current_a) < 1e-8, (rows, cols)
        for k in range(3):
            np.testing.assert_array_equal(solve_array(spec, x[k:k + 1], w, threads=1).column_current_a[0], both[k])
