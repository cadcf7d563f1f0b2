"""Coupled-topology tables: the coupled variables (column position, row load), their fit on exact-solver
points, the surrogate that replays them, and the refusals between coupled and decoupled tables."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from cosim.circuit.netlist import ArraySpec
from cosim.circuit.solver import solve_array
from cosim.circuit.spice import cell_currents
from cosim.circuit.technology import get_technology
from cosim.errors import InputError, TableError
from cosim.provenance import record
from cosim.surrogate.evaluate import Surrogate
from cosim.surrogate.fit import fit_arrays
from cosim.surrogate.model import (COUPLED_VARIABLES, coupled_names, coupled_offsets, coupled_operands, coupled_terms,
                                   coupled_variables, default_terms, features_np, variable_names)
from cosim.surrogate.tables import LookupTable, load_table
from cosim.sweep.calibration import SweepConfig, random_patterns, sweep_design

ORDERS = [1, 2, 3, 4]


def _direct(x: np.ndarray, w: np.ndarray, rho: float) -> dict[str, np.ndarray]:
    """The coupled variables of every (vector, column) by their definition, cell by cell."""
    K, R = x.shape
    C = w.shape[1]
    out = {n: np.zeros((K, C)) for n in ("pk", "t", "q", "q2", "tq", "tL", "qL", "z", "z1")}
    for v in range(K):
        for c in range(C):
            for j in range(R):
                if not x[v, j]:
                    if x[v].any():     # a row of input 0, where another row is driven: its conducting cell
                        cell = w[j, c] + rho * (1 - w[j, c])
                        out["z"][v, c] += cell / R
                        out["z1"][v, c] += cell * (2 * (j + 0.5) / R - 1) / R
                    continue
                load_t = sum(w[j, d] + rho * (1 - w[j, d]) for d in range(C)) / C
                load_q = sum(min(c, d) * (w[j, d] + rho * (1 - w[j, d])) for d in range(C)) / C ** 2
                out["pk"][v, c] += w[j, c] * c / C
                out["t"][v, c] += w[j, c] * load_t
                out["q"][v, c] += w[j, c] * load_q
                out["q2"][v, c] += w[j, c] * 4 * load_q ** 2
                out["tq"][v, c] += w[j, c] * 2 * load_t * load_q
                out["tL"][v, c] += (1 - w[j, c]) * load_t
                out["qL"][v, c] += (1 - w[j, c]) * load_q
    return out


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 7), st.integers(1, 6), st.integers(1, 4), st.floats(0.0, 0.5), st.integers(0, 2 ** 31))
def test_coupled_operands_are_the_coupled_variables_as_a_matrix_product(rows, cols, vectors, rho, seed):
    rng = np.random.default_rng(seed)
    x = (rng.random((vectors, rows)) < 0.6).astype(np.uint8)
    x[0] = 0                                   # a vector of no 1: every variable zero, the complement ones too
    w = (rng.random((rows, cols)) < 0.5).astype(np.uint8)
    names = ["pk", "t", "q", "q2", "tq", "tL", "qL", "z", "z1"]
    ops = coupled_operands(w, names, rho)
    assert ops.shape == (rows, cols * len(names))
    got = coupled_variables(x, w, names, rho).reshape(vectors, cols, len(names))
    want = _direct(x, w, rho)
    for i, n in enumerate(names):
        np.testing.assert_allclose(got[..., i], want[n], rtol=1e-12, atol=1e-12)
        if n not in ("z", "z1"):               # the others are the inputs times their operands alone
            np.testing.assert_allclose((x.astype(np.float64) @ ops).reshape(vectors, cols, len(names))[..., i], want[n],
                                       rtol=1e-12, atol=1e-12)
    # the torch operands, offsets and variables (the surrogate's) are the same numbers
    every = list(COUPLED_VARIABLES)
    wt = torch.as_tensor(w, dtype=torch.float64)
    np.testing.assert_allclose(coupled_operands(wt, every, rho).numpy(), coupled_operands(w, every, rho), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(coupled_offsets(wt, every, rho).numpy(), coupled_offsets(w, every, rho), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(coupled_variables(torch.as_tensor(x), wt, every, rho).numpy(),
                               coupled_variables(x, w, every, rho), rtol=1e-12, atol=1e-15)
    # a partly used tile: the table's variables with the missing rows as input-0, weight-0 rows
    r = max(1, rows - 1)
    pad_x = np.concatenate([x[:, :r], np.zeros((vectors, rows - r), np.uint8)], 1)
    pad_w = np.concatenate([w[:r], np.zeros((rows - r, cols), np.uint8)], 0)
    np.testing.assert_allclose(coupled_variables(x[:, :r], w[:r], names, rho, rows=rows),
                               coupled_variables(pad_x, pad_w, names, rho), rtol=1e-12, atol=1e-12)


def test_coupled_operands_refuse_an_unknown_variable():
    with pytest.raises(InputError, match="unknown coupled variable 'zz'"):
        coupled_operands(np.ones((4, 2)), ["pk", "zz"], 0.0)


def _points(spec, cfg, indices):
    """(x, w, currents) of sweep points solved exactly."""
    out = []
    for i in indices:
        x, w, _ = sweep_design(cfg, i)
        out.append((x, w, solve_array(spec, x, w).column_current_a))
    return out


def _samples(points, names, rho, rows):
    on, act, cur, extra = [], [], [], []
    for x, w, c in points:
        K, C = x.shape[0], w.shape[1]
        on.append((x[:, None, :] & w.T[None, :, :]).reshape(K * C, rows))
        act.append(np.broadcast_to(x[:, None, :], (K, C, rows)).reshape(K * C, rows))
        cur.append(np.asarray(c, np.float64).reshape(-1))
        extra.append(coupled_variables(x, w, names, rho).reshape(K * C, len(names)))
    return np.concatenate(on), np.concatenate(act), np.concatenate(cur), np.concatenate(extra)


@pytest.fixture(scope="module")
def sram_coupled():
    """A coupled 8T-SRAM table of 16 rows by 8 columns at 40 ohm per segment (so the row load matters), fitted
    to exact-solver points, and one fitted without the coupled variables."""
    tech = get_technology("sram8t", r_wire_ohm=40.0)
    R, C = 16, 8
    spec = ArraySpec(tech, R, C, "coupled")
    cfg = SweepConfig(tech=tech, rows=R, cols=C, topology="coupled", seed=0, vectors=16, solver="exact",
                      placements=True)
    cc = cell_currents(tech, "coupled")
    i_on = float(cc["i_on_a"])
    rho = float(cc["i_off_a"]) / i_on
    names = coupled_names(False)
    on, act, cur, extra = _samples(_points(spec, cfg, range(120)), names, rho, R)
    terms = default_terms(ORDERS, False)
    tables = {}
    for kind in ("coupled", "plain"):
        if kind == "coupled":
            arrays, meta = fit_arrays(on, act, cur, R, i_on, ORDERS, False, None, terms + coupled_terms(ORDERS, False, names),
                                      extra=extra, coupled=names, coupled_rho=rho)
        else:
            arrays, meta = fit_arrays(on, act, cur, R, i_on, ORDERS, False, None, terms)
        prov = record(technology=tech.name, technology_params=tech.as_dict(), cell=tech.cell, rows=R, cols=C,
                      topology="coupled", r_wire_ohm=tech.r_wire_ohm, i_cell_a=i_on, i_off_a=float(cc["i_off_a"]))
        tables[kind] = LookupTable(arrays=arrays, meta=meta, provenance=prov)
    return spec, tables


def test_a_fitted_coupled_table_reproduces_the_exact_solver_on_held_out_patterns(sram_coupled):
    spec, tables = sram_coupled
    sur = Surrogate(tables["coupled"], dtype=torch.float64)
    plain = Surrogate(tables["plain"], dtype=torch.float64)
    assert sur.coupled == list(coupled_names(False)) and sur.n_moments == 4 + 5   # the coupled variables as moments
    worst, worst_plain = 0.0, 0.0
    for fam in ("random", "skewed", "far", "near", "alternate", "dense"):
        x, w = random_patterns(fam, np.random.default_rng([42, len(fam)]), spec.rows, spec.cols, 16)
        exact = solve_array(spec, x, w).column_current_a
        got = sur.column_currents(x, w).numpy()
        rel = np.abs(got - exact) / sur.i_cell_a
        worst = max(worst, float(rel.max()))
        worst_plain = max(worst_plain, float((np.abs(plain.column_currents(x, w).numpy() - exact) / sur.i_cell_a).max()))
        # every code (ideal references) is the exact solver's
        assert torch.equal(sur.read(x, w), sur.adc.digitize(torch.as_tensor(exact))), fam
    # within 5 % of one ON cell's current everywhere; the row-load terms carry it (without them: far more)
    assert worst < 0.05
    assert worst_plain > 4 * worst
    # float32 (the C kernel where it loads, else torch) and float64 (torch) evaluations agree
    x, w = random_patterns("random", np.random.default_rng(3), spec.rows, spec.cols, 40)
    f32 = Surrogate(tables["coupled"])
    np.testing.assert_allclose(f32.column_currents(x, w).double().numpy(), sur.column_currents(x, w).numpy(),
                               rtol=1e-4, atol=1e-9)
    f32.use_kernel = False
    np.testing.assert_allclose(f32.column_currents(x, w).double().numpy(), sur.column_currents(x, w).numpy(),
                               rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("adc", [{"references": "ideal"}, {"references": "calibrated", "bits": 3}])
def test_certified_reads_of_a_coupled_table_re_solve_whole_vectors_and_equal_exact_reads(sram_coupled, adc):
    """A coupled array's columns share their row lines: certified reads re-solve every input vector with a column
    near a decision level whole, so their codes are the exact solver's everywhere (and, with a margin that takes
    every column, all of them are re-solved); the current sum is the exact one on the re-solved vectors."""
    from cosim.cim.arrays import CertifiedArray, ExactArray
    from cosim.surrogate.adc import ADC

    spec, tables = sram_coupled
    table = tables["coupled"]
    g = np.random.default_rng(11)
    x = torch.from_numpy((g.random((96, spec.rows)) < 0.5).astype(np.float32))
    w = torch.from_numpy((g.random((spec.rows, spec.cols)) < 0.5).astype(np.float32))
    exact = ExactArray(spec.tech, spec.rows, spec.cols, "coupled", ADC(**adc).bind(table))
    want, want_sum = exact.read_with_current(x, w)
    for safety in (None, 200.0):   # this table's residuals are tiny: the default margin re-solves nothing here
        arr = CertifiedArray(Surrogate(table, adc=ADC(**adc)), spec.tech, safety=safety)
        got, got_sum = arr.read_with_current(x, w)
        assert torch.equal(got, want)
        assert arr.columns_read == x.shape[0] * spec.cols and arr.resolved % spec.cols == 0
        assert arr.describe()["columns_resolved"] == arr.resolved
    assert 0 < arr.resolved < arr.columns_read       # a wider margin: some vectors re-solved, not all
    # a margin wider than every current: each vector re-solved, the codes and the current sum the exact ones
    wide = CertifiedArray(Surrogate(table, adc=ADC(**adc)), spec.tech, safety=1e9)
    got, got_sum = wide.read_with_current(x, w)
    assert torch.equal(got, want) and wide.resolved == wide.columns_read
    assert got_sum == pytest.approx(want_sum, rel=1e-6)
    with pytest.raises(InputError, match="coupled table is for 8 columns"):
        arr.read(x, w[:, :4])


def test_a_coupled_leak_table_evaluates_its_coupled_variables_as_further_moments():
    """1T-1R (leaking HRS cells): the coupled variables of the leaking cells too; the C kernel (float32, where it
    loads) and torch (float64) give the fitted model's currents."""
    tech = get_technology("reram1t1r", r_wire_ohm=40.0)
    R, C = 16, 8
    spec = ArraySpec(tech, R, C, "coupled")
    cfg = SweepConfig(tech=tech, rows=R, cols=C, topology="coupled", seed=1, vectors=16, solver="exact")
    cc = cell_currents(tech, "coupled")
    i_on, rho = float(cc["i_on_a"]), float(cc["i_off_a"]) / float(cc["i_on_a"])
    names = coupled_names(True, "line")
    on, act, cur, extra = _samples(_points(spec, cfg, range(80)), names, rho, R)
    terms = default_terms(ORDERS, True) + coupled_terms(ORDERS, True, names)
    arrays, meta = fit_arrays(on, act, cur, R, i_on, ORDERS, True, None, terms, extra=extra, coupled=names,
                              coupled_rho=rho)
    prov = record(technology=tech.name, technology_params=tech.as_dict(), cell=tech.cell, rows=R, cols=C,
                  topology="coupled", r_wire_ohm=tech.r_wire_ohm, i_cell_a=i_on, i_off_a=float(cc["i_off_a"]))
    table = LookupTable(arrays=arrays, meta=meta, provenance=prov)
    sur = Surrogate(table)
    assert sur.leak and sur.n_moments == 4 + 9 and sur.n_variables == 2 * 13 + 1
    x, w = random_patterns("skewed", np.random.default_rng(11), R, C, 96)
    x[::7] = 0           # vectors of no 1 (the kernel skips their products; every variable zero, the complement too)
    x[1::7] &= np.random.default_rng(3).random((len(x[1::7]), R)) < 0.1       # sparse ones (the kernel's row sums)
    exact = solve_array(spec, x, w).column_current_a
    # the surrogate replays the fitted model (its terms of the variables, features_np) in float64 and float32
    _, _, _, ex = _samples([(x, w, exact)], names, rho, R)
    k, F = features_np((x[:, None, :] & w.T[None]).reshape(-1, R), np.repeat(x, C, axis=0), ORDERS, True, terms, ex)
    model = np.einsum("nf,nf->n", F, arrays["coef"][k]).reshape(x.shape[0], C)
    np.testing.assert_allclose(Surrogate(table, dtype=torch.float64).column_currents(x, w).numpy(), model,
                               rtol=1e-9, atol=1e-15)
    got = sur.column_currents(x, w).double().numpy()
    np.testing.assert_allclose(got, model, rtol=1e-4, atol=1e-3 * i_on)
    sur.use_kernel = False
    np.testing.assert_allclose(sur.column_currents(x, w).double().numpy(), model, rtol=1e-4, atol=1e-3 * i_on)
    sur.use_kernel = True
    # inputs sparse enough for the kernel's row sums: the same currents as float64 torch
    xs = (np.random.default_rng(5).random((64, R)) < 0.08).astype(np.uint8)
    xs[0] = 0
    np.testing.assert_allclose(sur.column_currents(xs, w).double().numpy(),
                               Surrogate(table, dtype=torch.float64).column_currents(xs, w).numpy(), rtol=1e-4,
                               atol=1e-3 * i_on)
    # the ADC codes of the kernel's own digitisation are those of its currents
    assert torch.equal(sur.read(x, w), sur.adc.digitize(sur.column_currents(x, w)))
    # and it is far closer to the exact currents than the ideal array is
    ideal = sur.ideal_currents(x, w).double().numpy()
    assert np.sqrt(np.mean((got - exact) ** 2)) < 0.25 * np.sqrt(np.mean((ideal - exact) ** 2))


def test_coupled_and_decoupled_tables_refuse_each_other(sram_coupled, tmp_path):
    spec, tables = sram_coupled
    path = tables["coupled"].save(tmp_path / "coupled.parquet")
    with pytest.raises(TableError, match="calibrated for topology 'coupled', asked for 'decoupled'"):
        load_table(path, topology="decoupled")
    with pytest.raises(TableError, match="coupled table calibrated for 8 columns, asked for 4"):
        load_table(path, cols=4)
    sur = Surrogate.from_table(path)
    with pytest.raises(InputError, match="coupled table is for 8 columns, got 4"):
        sur.column_currents(np.ones((2, 16)), np.ones((16, 4)))
    # a table that says decoupled but carries the coupled variables is refused
    bad = LookupTable(arrays=tables["coupled"].arrays, meta=tables["coupled"].meta,
                      provenance={**tables["coupled"].provenance, "topology": "decoupled"})
    with pytest.raises(TableError, match="carries the coupled topology's variables"):
        Surrogate(bad)
    # the array models: a decoupled request of a coupled table, and validation at another width
    from cosim.cim.arrays import build_array
    with pytest.raises(TableError, match="topology 'coupled', asked for 'decoupled'"):
        build_array(tech=spec.tech, rows=16, cols=8, mode="surrogate", table=tables["coupled"], topology="decoupled")
    arr, _ = build_array(tech=spec.tech, rows=16, cols=8, mode="surrogate", table=tables["coupled"])
    assert arr.cols == 8
    from cosim.cim.synthetic import synthetic_table
    dec = synthetic_table("sram8t", rows=16, cols=8, samples=400)
    with pytest.raises(TableError, match="topology 'decoupled', asked for 'coupled'"):
        build_array(tech=spec.tech, rows=16, cols=8, mode="surrogate", table=dec, topology="coupled")
    from cosim.surrogate.validate import validate
    with pytest.raises(InputError, match="its own width \\(8 columns\\), got cols=4"):
        validate(tables["coupled"], cols=4)


def test_fit_refuses_coupled_variables_that_the_samples_do_not_carry():
    on = np.ones((20, 4), np.uint8)
    with pytest.raises(InputError, match="carry 0 coupled variables, the model 3"):
        fit_arrays(on, on, np.ones(20), 4, 1.0, ORDERS[:2], False, coupled=["pk", "t", "q"])


def test_coupled_terms_refer_to_the_coupled_variables():
    names = coupled_names(True, "line")
    n = len(variable_names(ORDERS, True))
    terms = coupled_terms(ORDERS, True, names)
    assert {i for t in terms for i in t} >= set(range(n, n + len(names)))
    assert all(max(t) < n + len(names) for t in terms) and len(set(terms)) == len(terms)
    # the rows of input 0 where the input drives the row line (1T-1R, resistor), not where it drives a gate (8T-SRAM)
    assert coupled_names(False, "line") == coupled_names(False) + ["z", "z1"]
    assert names[-2:] == ["z", "z1"] and "z" not in coupled_names(True)


@pytest.mark.ngspice
def test_cli_calibrates_a_coupled_table_with_the_exact_solver_and_validates_it(tmp_path):
    from click.testing import CliRunner
    from cosim.cli import cli

    out = tmp_path / "cal"
    r = CliRunner().invoke(cli, ["calibrate", "--tech", "sram8t", "--rows", "8", "--cols", "4", "--topology", "coupled",
                                  "--points", "30", "--vectors", "8", "--solver", "exact", "--placements",
                                  "--out", str(out), "--no-progress", "--no-cache"])
    assert r.exit_code == 0, r.output
    table = load_table(out / "table.parquet")
    assert table.topology == "coupled" and table.cols == 4 and table.meta["coupled"] == coupled_names(False)
    assert table.provenance["ngspice_check"]["max_rel_diff"] <= 1e-6
    from cosim.surrogate.validate import validate
    rep = validate(table, patterns=("random", "far"), n_columns=64, seed=5, vectors=8, cache=False)
    assert rep["provenance"]["cols"] == 4
    assert rep["by_adc"]["ideal"]["surrogate"]["code_agreement"] >= 0.99
    # certified reads of a coupled table re-solve whole input vectors: 64 columns of 4 make 16 vectors per run
    for ref in ("ideal", "calibrated"):
        cert = rep["by_adc"][ref]["certified"]
        assert cert["code_agreement"] >= 0.999
        assert round(cert["resolved_fraction"] * rep["by_adc"][ref]["certified"]["n_columns"]) % 4 == 0
