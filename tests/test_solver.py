"""The exact array solver (cosim.circuit.solver) and ``cosim solve``: against the nodal solve (resistor arrays)
and ngspice (nonlinear cells, both topologies), over patterns; non-convergence handling."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cosim.errors import InputError, SolverError
from cosim.circuit.netlist import ArraySpec, build_netlist, sense_names
from cosim.circuit.nodal import solve_linear_array
from cosim.circuit.solver import ideal_column_currents, solve_array
from cosim.circuit.spice import ngspice_info
from cosim.circuit.technology import get_technology

TECHS = ["sram8t", "reram1t1r", "resistor"]
TOPOLOGIES = ["decoupled", "coupled"]
ZERO_SETS = [{}, {"r_wire_ohm": 0.0}, {"r_driver_ohm": 0.0, "r_sink_ohm": 0.0},
             {"r_wire_ohm": 0.0, "r_driver_ohm": 0.0, "r_sink_ohm": 0.0}]



def patterns(rows: int, cols: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Input vectors and weights covering the issue's patterns: random, all on, far-end and near-end
    blocks, alternate rows, 90 % dense, and a skewed (sparse) column."""
    x = [rng.integers(0, 2, rows), np.ones(rows, int)]
    far, near = np.zeros(rows, int), np.zeros(rows, int)
    far[rows // 2:] = 1
    near[: rows // 3] = 1
    alt = np.arange(rows) % 2
    dense = (rng.random(rows) < 0.9).astype(int)
    x += [far, near, alt, dense]
    w = rng.integers(0, 2, (rows, cols))
    w[:, 0] = 1
    if cols > 1:
        w[:, 1] = (rng.random(rows) < 0.1)
    return np.array(x), w


def spice_currents(spec: ArraySpec, x, w, reltol: float = 1e-9) -> np.ndarray:
    """ngspice's column currents with a tighter reltol than the decks' (the reference converged further)."""
    from cosim.circuit.netlist import resolve_models
    from cosim.circuit.spice import uses_klu
    from cosim.circuit.spice.backends import run_subprocess
    deck = build_netlist(spec, x, w, klu=uses_klu("subprocess"), extra_options=f"reltol={reltol:g}",
                         models=resolve_models(None))
    data, _ = run_subprocess(deck, np.asarray(x).shape[0])
    return np.stack([data[f"i({n})"] for n in sense_names(spec)], axis=1)


# ------------------------------------------------------------------------------ resistor arrays: exact
@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("zeros", ZERO_SETS)
def test_resistor_arrays_equal_the_nodal_solve(topology, zeros, rng):
    spec = ArraySpec(get_technology("resistor", **zeros), 24, 7, topology)
    x, w = patterns(24, 7, rng)
    got = solve_array(spec, x, w).column_current_a
    np.testing.assert_allclose(got, solve_linear_array(spec, x, w), rtol=1e-10, atol=1e-18)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1, 20), cols=st.integers(1, 5), k=st.integers(1, 3),
       r_wire=st.sampled_from([0.0, 2.0, 20.0]), topology=st.sampled_from(TOPOLOGIES),
       seed=st.integers(0, 2**31))
def test_resistor_property_any_pattern(rows, cols, k, r_wire, topology, seed):
    g = np.random.default_rng(seed)
    x, w = g.integers(0, 2, (k, rows)), g.integers(0, 2, (rows, cols))
    spec = ArraySpec(get_technology("resistor", r_wire_ohm=r_wire), rows, cols, topology)
    np.testing.assert_allclose(solve_array(spec, x, w).column_current_a, solve_linear_array(spec, x, w),
                               rtol=1e-10, atol=1e-18)


# ------------------------------------------------------------------------------ properties, no ngspice
@pytest.mark.parametrize("tech", TECHS)
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_zero_resistance_gives_ideal_currents(tech, topology, rng):
    t = get_technology(tech, r_wire_ohm=0.0, r_driver_ohm=0.0, r_sink_ohm=0.0)
    spec = ArraySpec(t, 16, 5, topology)
    x, w = patterns(16, 5, rng)
    # atol: the ideal sums single-cell solves, each with the deck's rshunt at the sense node (1e-12 S)
    np.testing.assert_allclose(solve_array(spec, x, w).column_current_a, ideal_column_currents(spec, x, w),
                               rtol=1e-9, atol=16 * 1e-12)


@settings(max_examples=12, deadline=None)
@given(tech=st.sampled_from(["sram8t", "reram1t1r"]), topology=st.sampled_from(TOPOLOGIES),
       rows=st.integers(1, 24), seed=st.integers(0, 2**31))
def test_batching_and_threads_do_not_change_a_column(tech, topology, rows, seed):
    """Each vector solved alone equals the batch; wire resistance never raises a current above ideal."""
    g = np.random.default_rng(seed)
    x, w = g.integers(0, 2, (3, rows)), g.integers(0, 2, (rows, 3))
    spec = ArraySpec(get_technology(tech, r_wire_ohm=5.0), rows, 3, topology)
    both = solve_array(spec, x, w, threads=2).column_current_a
    for k in range(3):
        np.testing.assert_allclose(solve_array(spec, x[k:k + 1], w, threads=1).column_current_a[0], both[k],
                                   rtol=1e-12, atol=1e-20)
    if topology == "decoupled":
        assert np.all(both <= ideal_column_currents(spec, x, w) * (1 + 1e-12))


def test_more_wire_resistance_lowers_a_decoupled_column():
    x, w = np.ones((1, 64)), np.ones((64, 2))
    got = [solve_array(ArraySpec(get_technology("sram8t", r_wire_ohm=r), 64, 2), x, w).column_current_a[0, 0]
           for r in (2.0, 5.0, 10.0, 20.0)]
    assert all(a > b for a, b in zip(got, got[1:]))


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_non_convergence_is_reported_not_returned(topology):
    spec = ArraySpec(get_technology("sram8t"), 16, 3, topology)
    x, w = np.ones((2, 16)), np.ones((16, 3))
    with pytest.raises(SolverError, match="did not converge: iteration limit"):
        solve_array(spec, x, w, max_iter=1)
    res = solve_array(spec, x, w, max_iter=1, allow_failures=True)
    assert np.all(np.isnan(res.column_current_a)) and not res.converged.any()
    assert sorted((k, c) for k, c, _ in res.failures) == [(k, c) for k in range(2) for c in range(3)]
    assert all(why == "iteration limit reached" for _, _, why in res.failures)
    assert np.isfinite(solve_array(spec, x, w).column_current_a).all()


def test_bad_arguments():
    spec = ArraySpec(get_technology("sram8t"), 4, 2)
    with pytest.raises(InputError):
        solve_array(spec, np.ones((1, 4)), np.ones((4, 2)), max_iter=0)
    with pytest.raises(InputError):
        solve_array(spec, np.ones((1, 5)), np.ones((4, 2)))


# ------------------------------------------------------------------------------ against ngspice
@pytest.mark.ngspice
@pytest.mark.parametrize("tech", TECHS)
@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("rows,r_wire", [(8, 2.0), (16, 20.0)])
def test_equals_ngspice(tech, topology, rows, r_wire, rng):
    if ngspice_info()["executable"] is None:
        pytest.skip("ngspice not installed")
    spec = ArraySpec(get_technology(tech, r_wire_ohm=r_wire), rows, 4, topology)
    x, w = patterns(rows, 4, rng)
    ref = spice_currents(spec, x, w)
    got = solve_array(spec, x, w).column_current_a
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-12)


@pytest.mark.ngspice
@pytest.mark.parametrize("tech", ["sram8t", "reram1t1r"])
@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("zeros", ZERO_SETS[1:])
def test_equals_ngspice_with_zero_resistances(tech, topology, zeros, rng):
    if ngspice_info()["executable"] is None:
        pytest.skip("ngspice not installed")
    spec = ArraySpec(get_technology(tech, **zeros), 8, 3, topology)
    x, w = patterns(8, 3, rng)
    np.testing.assert_allclose(solve_array(spec, x, w).column_current_a, spice_currents(spec, x, w),
                               rtol=1e-6, atol=1e-12)


@pytest.mark.ngspice
@settings(max_examples=12, deadline=None)
@given(tech=st.sampled_from(["sram8t", "reram1t1r"]), topology=st.sampled_from(TOPOLOGIES),
       rows=st.integers(1, 24), cols=st.integers(1, 4), k=st.integers(1, 3),
       r_wire=st.sampled_from([0.0, 2.0, 20.0]), seed=st.integers(0, 2**31))
def test_property_equals_ngspice_on_any_pattern(tech, topology, rows, cols, k, r_wire, seed):
    if ngspice_info()["executable"] is None:
        pytest.skip("ngspice not installed")
    g = np.random.default_rng(seed)
    x = (g.random((k, rows)) < g.random()).astype(np.uint8)
    w = (g.random((rows, cols)) < g.random()).astype(np.uint8)
    spec = ArraySpec(get_technology(tech, r_wire_ohm=r_wire), rows, cols, topology)
    np.testing.assert_allclose(solve_array(spec, x, w).column_current_a, spice_currents(spec, x, w),
                               rtol=1e-6, atol=1e-12)


# ------------------------------------------------------------------------------ the CLI
def test_cli_solve_matches_spice_keys(tmp_path):
    from cosim.cli import cli
    runner = CliRunner()
    args = ["--tech", "reram1t1r", "--rows", "8", "--cols", "3", "--batch", "2", "--json"]
    out = runner.invoke(cli, ["solve", *args])
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    assert np.array(got["column_current_a"]).shape == (2, 3)
    assert got["solver"] == "exact-banded-table" and got["ngspice_version"] is None   # the tabulated cells: default
    exact = json.loads(runner.invoke(cli, ["solve", *args, "--cells", "exact"]).output)
    assert exact["solver"] == "exact-banded"
    np.testing.assert_allclose(exact["column_current_a"], got["column_current_a"], rtol=1e-8)
    if ngspice_info()["executable"] is None:
        return
    same = runner.invoke(cli, ["solve", *args, "--backend", "subprocess", "--models", "auto", "--timeout-s", "60"])
    assert same.exit_code == 0 and json.loads(same.output)["column_current_a"] == got["column_current_a"]
    ref = json.loads(runner.invoke(cli, ["spice", *args]).output)
    assert set(ref) <= set(got)
    np.testing.assert_allclose(got["column_current_a"], ref["column_current_a"], rtol=1e-6)
    np.testing.assert_allclose(got["ideal_column_current_a"], ref["ideal_column_current_a"], rtol=1e-9)


def test_cli_solve_reports_non_convergence():
    from cosim.cli import main
    with pytest.raises(SystemExit) as e:
        main(["solve", "--rows", "8", "--cols", "2", "--max-iter", "1"])
    assert e.value.code == 1


# ------------------------------------------------------------------------------ --mode exact
def _shipped(tech, rows):
    from cosim.surrogate.tables import default_table_path
    try:
        return default_table_path(tech, rows)
    except Exception:  # noqa: BLE001 - no shipped table
        return None


@pytest.mark.skipif(_shipped("sram8t", 64) is None, reason="no shipped sram8t 64-row table")
@pytest.mark.parametrize("reference", ["ideal", "calibrated"])
def test_exact_mode_reads_solver_currents_through_the_surrogates_adc(reference, rng):
    import torch
    from cosim.cim.arrays import ExactArray, build_array
    arr, tech = build_array(mode="exact", tech="sram8t", rows=64, cols=64, adc_bits=5, adc_reference=reference)
    sur, _ = build_array(mode="surrogate", tech="sram8t", rows=64, cols=64, adc_bits=5, adc_reference=reference)
    assert isinstance(arr, ExactArray) and arr.cols is None and tech.r_wire_ohm == arr.tech.r_wire_ohm
    np.testing.assert_array_equal(arr.adc.levels_a(), sur.surrogate.adc.levels_a())
    x = torch.from_numpy(rng.integers(0, 2, (6, 64))).float()
    w = torch.from_numpy(rng.integers(0, 2, (64, 9))).float()
    codes, total = arr.read_with_current(x, w)
    cur = solve_array(ArraySpec(tech, 64, 9), x.numpy(), w.numpy()).column_current_a
    np.testing.assert_array_equal(codes.numpy(), arr.adc.digitize(cur))
    assert total == pytest.approx(cur.sum(), rel=1e-12)
    # the surrogate reads nearly the same codes (its table was fitted to the same circuit in ngspice)
    assert (sur.read(x, w).numpy() == codes.numpy()).mean() >= 0.85


@pytest.mark.skipif(_shipped("sram8t", 64) is None, reason="no shipped sram8t 64-row table")
def test_exact_mode_runs_a_small_network():
    import torch
    from cosim.cim import cim_stats, to_cim
    from test_cim_network import _tiny_net
    net, x = _tiny_net(2), torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        out = {m: to_cim(net, tech="sram8t", rows=64, cols=64, mode=m) for m in ("ideal", "exact")}
        y = {m: c(x) for m, c in out.items()}
    assert torch.isfinite(y["exact"]).all() and not torch.equal(y["exact"], y["ideal"])   # IR drop
    assert out["exact"].cim_array.column_solves > 0
    assert cim_stats(out["exact"])["overall"]["array_energy_j"] > 0


# ------------------------------------------------------------------------------ the torch backend
DEVICES = ["cpu"] + (["cuda"] if __import__("torch").cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tech", TECHS)
@pytest.mark.parametrize("zeros", ZERO_SETS + [{"r_wire_ohm": 20.0}])
def test_torch_backend_equals_the_c_kernel(device, tech, zeros, rng):
    spec = ArraySpec(get_technology(tech, **zeros), 24, 5)
    x, w = patterns(24, 5, rng)
    a = solve_array(spec, x, w, backend="c", cells="exact")   # the torch backend evaluates the exact cells
    b = solve_array(spec, x, w, backend="torch", device=device)
    np.testing.assert_allclose(b.column_current_a, a.column_current_a, rtol=1e-12, atol=1e-20)
    np.testing.assert_array_equal(b.iterations, a.iterations)


def test_torch_backend_reports_non_convergence_and_refuses_coupled():
    spec = ArraySpec(get_technology("sram8t"), 16, 3)
    res = solve_array(spec, np.ones((2, 16)), np.ones((16, 3)), backend="torch", max_iter=1, allow_failures=True)
    assert len(res.failures) == 6 and np.isnan(res.column_current_a).all()
    with pytest.raises(InputError, match="decoupled topology only"):
        solve_array(ArraySpec(get_technology("sram8t"), 4, 2, "coupled"), np.ones((1, 4)), np.ones((4, 2)),
                    backend="torch")
    with pytest.raises(InputError, match="unknown solver backend"):
        solve_array(spec, np.ones((1, 16)), np.ones((16, 3)), backend="gpu")


# ------------------------------------------------------------------------------ certified surrogate reads
def _solver_table(rows=32, blocks=12, seed=0):
    """A table fitted (cosim.surrogate.fit.fit_arrays, as a calibration does) to exact-solver currents of
    8T-SRAM columns of random densities: a table whose residuals are those of the circuit it certifies."""
    from cosim.surrogate.model import DEFAULT_ORDERS
    from cosim.surrogate.fit import fit_arrays
    from cosim.provenance import record
    from cosim.circuit.solver import _cell_currents
    from cosim.surrogate.tables import LookupTable
    tech = get_technology("sram8t")
    g = np.random.default_rng(seed)
    on, act, cur = [], [], []
    for _ in range(blocks):
        x = (g.random((24, rows)) < g.uniform(0.05, 1.0, (24, 1))).astype(np.uint8)
        w = (g.random((rows, 16)) < g.uniform(0.0, 1.0, (1, 16))).astype(np.uint8)
        cur.append(solve_array(ArraySpec(tech, rows, 16), x, w).column_current_a.ravel())
        on.append((x[:, None, :] & w.T[None]).reshape(-1, rows))
        act.append(np.repeat(x, 16, axis=0))
    i_on, i_off, _, _ = _cell_currents(tech, "decoupled")
    on, act, cur = np.concatenate(on), np.concatenate(act), np.concatenate(cur)
    arrays, meta = fit_arrays(on, act, cur, rows, i_on, list(DEFAULT_ORDERS), False)
    prov = record(technology=tech.name, technology_params=tech.as_dict(), cell=tech.cell, rows=rows, cols=16,
                  topology="decoupled", r_wire_ohm=tech.r_wire_ohm, ngspice_version="none (exact solver)",
                  solver="cosim.circuit.solver", seed=seed, i_cell_a=i_on, i_off_a=i_off, n_samples=int(cur.size))
    return LookupTable(arrays=arrays, meta=meta, provenance=prov)


@pytest.fixture(scope="module")
def solver_table():
    return _solver_table()


@pytest.mark.parametrize("adc", [{}, {"adc_bits": 3, "adc_reference": "calibrated"}])
def test_certified_reads_equal_exact_reads(solver_table, adc):
    import torch
    from cosim.cim import to_cim
    from test_cim_network import _tiny_net
    net, x = _tiny_net(3), torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        cims = {name: to_cim(net, tech="sram8t", rows=32, cols=32, table=solver_table, **kw, **adc)
                for name, kw in {"certified": {"mode": "surrogate", "certify": True}, "exact": {"mode": "exact"},
                                 "surrogate": {"mode": "surrogate"}}.items()}
        y = {name: c(x) for name, c in cims.items()}
    arr = cims["certified"].cim_array
    assert torch.equal(y["certified"], y["exact"])
    assert arr.resolved < arr.columns_read              # not every column re-solved
    if not adc:   # one code per count: some columns lie near a decision level (3 bits saturate here)
        assert arr.resolved > 0
    # reads of random tiles: certified codes are the exact codes
    g = np.random.default_rng(7)
    xb = torch.from_numpy((g.random((64, 32)) < 0.5).astype(np.float32))
    wb = torch.from_numpy((g.random((32, 40)) < 0.5).astype(np.float32))
    assert torch.equal(arr.read(xb, wb), cims["exact"].cim_array.read(xb, wb))


@pytest.mark.parametrize("adc", [{}, {"adc_reference": "calibrated"}, {"adc_reference": "calibrated", "adc_lsb_counts": 2},
                                 {"adc_lsb_counts": 2}])
def test_certified_screen_in_the_kernel_is_the_torch_screen(solver_table, adc):
    """The surrogate kernel's screen (cosim.surrogate.kernel.near_fields: a column within its ON-count's margin of
    the decision level below or above it) marks the same columns as CertifiedArray.near_mask in torch, on the fused
    and unfused products, with all-zero and repeated input vectors (the kernel's caches); certified reads through
    either are the exact reads."""
    import torch
    from cosim.cim.arrays import build_array
    from cosim.surrogate import kernel
    if kernel.load() is None:
        pytest.skip("no surrogate C kernel here")
    cert, _ = build_array(mode="surrogate", tech="sram8t", rows=32, cols=32, table=solver_table, certify=True, **adc)
    exact, _ = build_array(mode="exact", tech="sram8t", rows=32, cols=32, table=solver_table, **adc)
    cert.margin_a = cert.margin_a * 4   # more columns near a level: a stronger comparison
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(700, 32, generator=g) < torch.rand(700, 1, generator=g)).to(torch.bfloat16)
    x[::9] = 0
    x[1::9] = x[2::9]
    w = (torch.rand(32, 40, generator=g) < 0.5).float()
    s, pw = cert.surrogate, cert.prepared(w)
    margin = cert._near_tables(torch.device("cpu"), torch.float32)[1]
    want = exact.read(x, w)
    for fused in (True, False):
        s.fused_products = fused
        near = torch.empty((700, 40), dtype=torch.uint8)
        cur, codes, _ = s._run(x, pw, currents=True, codes=True, near_margin=margin, near=near)
        lo = (codes / float(s.adc.lsb_counts)).long()
        k = (x.float() @ w).long()
        ref = cert.near_mask(cur, lo, k)
        assert 0 < int(ref.sum()) < ref.numel()
        assert torch.equal(near.bool(), ref)
        assert torch.equal(cert.read(x, w), want)
    s.fused_products = True
    cert._kernel_margin = None
    s.use_kernel = False                  # the torch path: its own screen
    assert torch.equal(cert.read(x, w), want)


def test_certify_envelope_per_count_and_band_fallback():
    """The residual bound per ON-count: a count's own largest residual where it and its neighbours hold
    CERTIFY_COUNT_MIN samples, else its band's (with the bands beside it), as tables recorded it before."""
    from cosim.surrogate.fit import CERTIFY_COUNT_MIN, certify_band_counts, certify_envelope
    rows = 32
    band = certify_band_counts(rows)
    k = np.r_[np.repeat(np.arange(8, 20), CERTIFY_COUNT_MIN), 30]
    res = np.where(k % 2 == 0, 1e-7, 2e-7)
    res[k == 12] = 5e-7
    res[-1] = 9e-7
    env = certify_envelope(k, res, rows)
    assert env.shape == (rows + 1,)
    c = np.arange(8, 20)
    np.testing.assert_array_equal(env[8:20], np.where(c == 12, 5e-7, np.where(c % 2 == 0, 1e-7, 2e-7)))
    nb = -(-(rows + 1) // band)
    per_band = [res[k // band == b].max() if (k // band == b).any() else 9e-7 for b in range(nb)]
    for c in [*range(0, 8), *range(20, rows + 1)]:       # few or no samples: the band bound
        b = c // band
        assert env[c] == max(per_band[max(b - 1, 0):b + 2]), c
    assert env.max() == 9e-7 and env[30] == 9e-7


def test_certified_reads_with_the_per_count_envelope_equal_exact_reads(monkeypatch):
    """The per-count envelope (a CERTIFY_COUNT_MIN that this table's ~280 samples per count meet) still
    certifies: codes equal the exact reads, with fewer columns re-solved than the band envelope."""
    import torch
    import cosim.surrogate.fit as fit
    from cosim.cim import to_cim
    from test_cim_network import _tiny_net
    monkeypatch.setattr(fit, "CERTIFY_COUNT_MIN", 10**9)
    band_table = _solver_table(blocks=24, seed=3)
    monkeypatch.setattr(fit, "CERTIFY_COUNT_MIN", 300)
    count_table = _solver_table(blocks=24, seed=3)
    assert np.all(count_table["certify_residual_a"] <= band_table["certify_residual_a"])
    assert np.any(count_table["certify_residual_a"] < band_table["certify_residual_a"])
    net, x = _tiny_net(5), torch.randn(3, 3, 8, 8)
    for adc in ({}, {"adc_bits": 4, "adc_reference": "calibrated"}):
        with torch.no_grad():
            cert = {name: to_cim(net, tech="sram8t", rows=32, cols=32, table=t, mode="surrogate", certify=True, **adc)
                    for name, t in (("band", band_table), ("count", count_table))}
            exact = to_cim(net, tech="sram8t", rows=32, cols=32, table=count_table, mode="exact", **adc)
            y = exact(x)
            for c in cert.values():
                assert torch.equal(c(x), y)
        assert 0 < cert["count"].cim_array.resolved < cert["band"].cim_array.resolved
    g = np.random.default_rng(9)
    xb = torch.from_numpy((g.random((64, 32)) < 0.5).astype(np.float32))
    wb = torch.from_numpy((g.random((32, 40)) < 0.5).astype(np.float32))
    assert torch.equal(cert["count"].cim_array.read(xb, wb), exact.cim_array.read(xb, wb))


def test_a_table_with_residuals_per_band_still_certifies(solver_table):
    """Tables fitted before the per-count envelope record one residual per band of counts
    (certify_band_counts > 1): they are read as before."""
    import torch
    from cosim.cim import to_cim
    from cosim.surrogate.fit import certify_band_counts
    from cosim.surrogate.tables import LookupTable
    from test_cim_network import _tiny_net
    band = certify_band_counts(32)
    res = np.array([solver_table["certify_residual_a"][b * band:(b + 1) * band].max() for b in range(-(-33 // band))])
    old = LookupTable(arrays={**solver_table.arrays, "certify_residual_a": res},
                      meta={**solver_table.meta, "certify_band_counts": band}, provenance=dict(solver_table.provenance))
    net, x = _tiny_net(6), torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        cert = to_cim(net, tech="sram8t", rows=32, cols=32, table=old, mode="surrogate", certify=True)
        exact = to_cim(net, tech="sram8t", rows=32, cols=32, table=old, mode="exact")
        assert torch.equal(cert(x), exact(x))
    arr = cert.cim_array
    near = np.maximum(res, np.maximum(np.r_[res[1:], 0.0], np.r_[0.0, res[:-1]]))
    np.testing.assert_array_equal(arr.margin_a.numpy(), arr.safety_per_count.numpy() * near[np.arange(33) // band])


def test_certified_safety_factor_follows_the_samples_per_count(solver_table):
    """The default safety factor is CERTIFY_READ_SAFETY where an ON-count and the two beside it hold
    CERTIFY_READ_SAMPLES calibration samples, the fit's CERTIFY_SAFETY where they hold fewer or the table does not
    record them; a factor given applies to every count; a factor that is not a positive number is refused."""
    from cosim.cim.arrays import CERTIFY_READ_SAFETY, CERTIFY_READ_SAMPLES, build_array
    from cosim.surrogate.fit import CERTIFY_SAFETY
    from cosim.surrogate.tables import LookupTable
    n_k = np.zeros(33)
    n_k[10:20] = CERTIFY_READ_SAMPLES / 3       # counts 10..19 and their neighbours reach it at 11..18 only
    dense = LookupTable(arrays={**solver_table.arrays, "count_n": n_k}, meta=dict(solver_table.meta),
                        provenance=dict(solver_table.provenance))
    kw = dict(mode="surrogate", tech="sram8t", rows=32, cols=32, certify=True)
    arr, _ = build_array(table=dense, **kw)
    want = np.full(33, CERTIFY_SAFETY)
    want[11:19] = CERTIFY_READ_SAFETY
    np.testing.assert_array_equal(arr.safety_per_count.numpy(), want)
    np.testing.assert_array_equal(arr.margin_a.numpy(), want * arr.residual_a.numpy())
    assert arr.describe()["certify_safety_counts"] == {str(CERTIFY_READ_SAFETY): 8, str(CERTIFY_SAFETY): 25}
    no_n = LookupTable(arrays={k: v for k, v in solver_table.arrays.items() if k != "count_n"},
                       meta=dict(solver_table.meta), provenance=dict(solver_table.provenance))
    assert np.all(build_array(table=no_n, **kw)[0].safety_per_count.numpy() == CERTIFY_SAFETY)
    given, _ = build_array(table=dense, certify_safety=3.0, **kw)
    np.testing.assert_array_equal(given.margin_a.numpy(), 3.0 * arr.residual_a.numpy())
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="safety factor must be a positive number"):
            build_array(table=dense, certify_safety=bad, **kw)


@pytest.mark.parametrize("adc", [{}, {"adc_reference": "calibrated"}])
def test_certified_reads_with_the_default_factor_equal_exact_reads(adc):
    """The shipped 8T-SRAM 64-row table (about 38,000 calibration samples per count: the factor
    CERTIFY_READ_SAFETY on most counts): certified reads of a small network equal its exact reads, re-solving
    fewer columns than the fit's factor does."""
    import torch
    from cosim.cim import to_cim
    from cosim.cim.arrays import CERTIFY_READ_SAFETY
    from test_cim_network import _tiny_net
    net, x = _tiny_net(4, mid=40), torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        cims = {name: to_cim(net, tech="sram8t", rows=64, cols=64, **kw, **adc)
                for name, kw in {"certified": {"mode": "surrogate", "certify": True}, "exact": {"mode": "exact"}}.items()}
        y = {name: c(x) for name, c in cims.items()}
        arr = cims["certified"].cim_array
        assert (arr.safety_per_count == CERTIFY_READ_SAFETY).sum() > arr.rows // 2
        assert torch.equal(y["certified"], y["exact"])
        assert 0 < arr.resolved < arr.columns_read
    # reads of random tiles: the default factor and the fit's both give the exact codes, the fit's re-solving more
    from cosim.cim.arrays import build_array
    g = np.random.default_rng(5)
    xb = torch.from_numpy((g.random((256, 64)) < g.random((256, 1))).astype(np.float32))
    wb = torch.from_numpy((g.random((64, 48)) < 0.5).astype(np.float32))
    want = cims["exact"].cim_array.read(xb, wb)
    narrow, _ = build_array(mode="surrogate", tech="sram8t", rows=64, cols=64, certify=True, **adc)
    wide, _ = build_array(mode="surrogate", tech="sram8t", rows=64, cols=64, certify=True, certify_safety=2.0, **adc)
    assert torch.equal(narrow.read(xb, wb), want) and torch.equal(wide.read(xb, wb), want)
    assert 0 < narrow.resolved < wide.resolved


def _without_residuals(table):
    from cosim.surrogate.tables import LookupTable
    return LookupTable(arrays={k: v for k, v in table.arrays.items() if k != "certify_residual_a"},
                       meta={k: v for k, v in table.meta.items() if not k.startswith("certify")},
                       provenance=dict(table.provenance))


def test_a_table_without_residuals_is_certified_by_another(solver_table):
    """certify_table: a table that records no residuals (as the shipped ones) gets certified reads from a
    finer table of the same circuit; the codes are the exact ones at the first table's own decision levels
    (its calibrated references, which differ from the certifying table's)."""
    import torch
    from cosim.cim import to_cim
    from test_cim_network import _tiny_net
    coarse = _without_residuals(_solver_table(blocks=3, seed=5))
    assert not np.array_equal(coarse["count_mean_a"], solver_table["count_mean_a"])
    net, x = _tiny_net(4), torch.randn(3, 3, 8, 8)
    adc = {"adc_bits": 4, "adc_reference": "calibrated"}
    with torch.no_grad():
        cert = to_cim(net, tech="sram8t", rows=32, cols=32, table=coarse, mode="surrogate", certify=True,
                      certify_table=solver_table, **adc)
        exact = to_cim(net, tech="sram8t", rows=32, cols=32, table=coarse, mode="exact", **adc)
        assert torch.equal(cert(x), exact(x))
    arr = cert.cim_array
    assert 0 < arr.resolved < arr.columns_read
    assert arr.describe()["certify_table"]["seed"] == 0
    g = np.random.default_rng(8)
    xb = torch.from_numpy((g.random((64, 32)) < 0.5).astype(np.float32))
    wb = torch.from_numpy((g.random((32, 40)) < 0.5).astype(np.float32))
    assert torch.equal(arr.read(xb, wb), exact.cim_array.read(xb, wb))
    # a certifying table of another circuit (wire resistance) is refused
    other = _without_residuals(solver_table)
    other.arrays["certify_residual_a"] = solver_table["certify_residual_a"]
    other.meta.update({k: v for k, v in solver_table.meta.items() if k.startswith("certify")})
    other.provenance["technology_params"] = {**other.provenance["technology_params"], "r_wire_ohm": 5.0}
    other.provenance["r_wire_ohm"] = 5.0
    with pytest.raises(InputError, match="is for another circuit"):
        to_cim(net, tech="sram8t", rows=32, cols=32, table=coarse, mode="surrogate", certify=True,
               certify_table=other)
    with pytest.raises(InputError, match="certify_table is for certified reads"):
        to_cim(net, tech="sram8t", rows=32, cols=32, table=coarse, mode="surrogate", certify_table=solver_table)


def test_certify_refuses_a_table_without_residuals(solver_table):
    import torch
    from cosim.cim import to_cim
    from cosim.errors import TableError
    from test_cim_network import _tiny_net
    old = _without_residuals(solver_table)
    with pytest.raises(TableError, match="refit it by re-running its `cosim calibrate`"):
        to_cim(_tiny_net(0), tech="sram8t", rows=32, cols=32, mode="surrogate", table=old, certify=True)
    with pytest.raises(InputError, match="form of the surrogate mode"):
        to_cim(_tiny_net(0), tech="sram8t", rows=32, cols=32, mode="exact", table=solver_table, certify=True)
    del torch


def test_calibration_records_residuals(solver_table, tmp_path):
    from cosim.surrogate.tables import load_table
    res = solver_table["certify_residual_a"]
    assert res.shape == (-(-33 // solver_table.meta["certify_band_counts"]),) and np.all(res >= 0)
    again = load_table(solver_table.save(tmp_path / "t.parquet"))
    np.testing.assert_array_equal(again["certify_residual_a"], res)
    assert again.meta["certify_safety"] == 2.0


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_a_one_line_error():
    spec = ArraySpec(get_technology("sram8t"), 4, 2)
    with pytest.raises(InputError, match="no CUDA GPU"):
        solve_array(spec, np.ones((1, 4)), np.ones((4, 2)), device="cuda")


def test_exact_mode_reads_whole_coupled_arrays(rng):
    import torch
    from cosim.cim.arrays import build_array
    from cosim.cim.synthetic import synthetic_table
    tab = synthetic_table("sram8t", 16, 8, samples=500, topology="coupled")
    arr, tech = build_array(mode="exact", tech="sram8t", rows=16, cols=8, table=tab, topology="coupled")
    assert arr.cols == 8 and arr.topology == "coupled"
    x = torch.from_numpy(rng.integers(0, 2, (5, 16))).float()
    w = torch.from_numpy(rng.integers(0, 2, (16, 8))).float()
    cur = solve_array(ArraySpec(tech, 16, 8, "coupled"), x.numpy(), w.numpy()).column_current_a
    np.testing.assert_array_equal(arr.read(x, w).numpy(), arr.adc.digitize(cur))
    with pytest.raises(InputError, match="whole arrays of 8 columns"):
        arr.read(x, w[:, :5])


# ------------------------------------------------------------------------------ the tabulated cells
def test_cell_table_error_is_below_1e_7():
    from cosim.circuit.solver import table_error
    tech = get_technology("sram8t")
    err = table_error(tech, points=40_000, min_cell_v=0.1)
    for state in (0, 1, 3):   # input 0 (either bit), input 1 and stored 1
        assert err[state]["current"] <= 1e-7, (state, err[state])
    # input 1, stored 0: where the read transistor's drain-source voltage falls to ~1e-11 V (cells with
    # 0.1 V across, currents ~1e-16 A) the exact cell itself (and ngspice's cosim_stack, which returns the
    # same transistor's current) carries ~1e-6 relative rounding; from 0.2 V across, the table is within 1e-7
    assert table_error(tech, points=40_000, min_cell_v=0.2)[2]["current"] <= 1.5e-7


def test_reram_cell_table_error_is_below_1e_7():
    """1T-1R: both currents of the cell (they differ by its inner node's rshunt), every state, down to
    2 mV across the cell."""
    from cosim.circuit.solver import table_error
    err = table_error(get_technology("reram1t1r"), points=40_000, min_cell_v=2e-3)
    for state in range(4):
        assert err[state]["points"] > 10_000 and err[state]["current"] <= 1e-7, (state, err[state])


@pytest.mark.parametrize("tech", ["sram8t", "reram1t1r"])
@pytest.mark.parametrize("r_wire", [0.0, 2.0, 20.0])
def test_tabulated_cells_give_the_exact_column_currents(tech, r_wire, rng):
    spec = ArraySpec(get_technology(tech, r_wire_ohm=r_wire), 64, 6)
    x, w = patterns(64, 6, rng)
    a = solve_array(spec, x, w, cells="exact")
    b = solve_array(spec, x, w, cells="table")
    assert (a.cells, b.cells) == ("exact", "table")
    np.testing.assert_allclose(b.column_current_a, a.column_current_a, rtol=1e-8, atol=1e-15)
    # the default (cells="auto") is the table wherever it applies
    c = solve_array(spec, x, w)
    assert c.cells == "table"
    np.testing.assert_array_equal(c.column_current_a, b.column_current_a)


@pytest.mark.parametrize("tech", ["sram8t", "reram1t1r"])
def test_solve_columns_equals_solve_array_for_both_cell_models(tech, rng):
    """The certified reads' path: chosen (vector, column) pairs, repeated and unsorted, give the bulk solve's
    currents bit for bit, with the exact and the tabulated cells; only the vectors asked for are checked."""
    from cosim.circuit.solver import solve_columns
    spec = ArraySpec(get_technology(tech), 32, 5)
    x, w = rng.integers(0, 2, (9, 32)), rng.integers(0, 2, (32, 5))
    kk, cc = np.array([7, 0, 7, 3, 8, 0]), np.array([4, 1, 4, 0, 2, 3])
    for cells in ("exact", "table"):
        ref = solve_array(spec, x, w, cells=cells, threads=1).column_current_a
        np.testing.assert_array_equal(solve_columns(spec, x, w, kk, cc, cells=cells, threads=1), ref[kk, cc])
    np.testing.assert_array_equal(solve_columns(spec, x, w, kk, cc), solve_columns(spec, x, w, kk, cc, cells="table"))
    bad = x.copy()
    bad[1, 0] = 2   # a vector not asked for is not read
    np.testing.assert_array_equal(solve_columns(spec, bad, w, kk, cc), solve_columns(spec, x, w, kk, cc))
    bad[7, 0] = 2
    with pytest.raises(InputError, match="only 0 and 1"):
        solve_columns(spec, bad, w, kk, cc)
    with pytest.raises(InputError, match="out of range"):
        solve_columns(spec, x, w, [9], [0])
    with pytest.raises(InputError, match="cells='table'"):
        solve_columns(ArraySpec(get_technology("resistor"), 4, 2), np.ones((1, 4)), np.ones((4, 2)), [0], [0],
                      cells="table")


def test_auto_cells_fall_back_to_the_exact_ones_where_no_table_can_be_built(monkeypatch, rng):
    from cosim.circuit import solver
    spec = ArraySpec(get_technology("reram1t1r"), 16, 3)
    x, w = patterns(16, 3, rng)

    def no_table(tech, *a, **k):
        raise InputError("the tabulated cell needs a positive current on its whole grid")
    monkeypatch.setattr(solver, "cell_table", no_table)
    res = solve_array(spec, x, w)
    assert res.cells == "exact"
    np.testing.assert_array_equal(res.column_current_a, solve_array(spec, x, w, cells="exact").column_current_a)
    np.testing.assert_array_equal(solver.solve_columns(spec, x, w, [1], [2]), res.column_current_a[[1], [2]])
    with pytest.raises(InputError, match="positive current"):
        solve_array(spec, x, w, cells="table")


def test_tabulated_cells_only_where_built():
    with pytest.raises(InputError, match="cells='table'"):
        solve_array(ArraySpec(get_technology("resistor"), 4, 2), np.ones((1, 4)), np.ones((4, 2)), cells="table")
    assert solve_array(ArraySpec(get_technology("resistor"), 4, 2), np.ones((1, 4)), np.ones((4, 2))).cells == "exact"
    assert solve_array(ArraySpec(get_technology("reram1t1r"), 4, 2, "coupled"), np.ones((1, 4)),
                       np.ones((4, 2))).cells == "table"
    assert solve_array(ArraySpec(get_technology("sram8t"), 4, 2, "coupled"), np.ones((1, 4)), np.ones((4, 2)),
                       cells="table").cells == "table"
    with pytest.raises(InputError, match="cells='table'"):
        solve_array(ArraySpec(get_technology("resistor"), 4, 2, "coupled"), np.ones((1, 4)), np.ones((4, 2)),
                    cells="table")
    with pytest.raises(InputError, match="unknown cell model"):
        solve_array(ArraySpec(get_technology("sram8t"), 4, 2), np.ones((1, 4)), np.ones((4, 2)), cells="spline")


def test_the_kernel_structs_layouts_are_checked():
    """solver_kernel.c reports the size and a few offsets of every struct passed through ctypes; the
    ctypes structs agree, and one that differs is refused with one line."""
    import ctypes

    from cosim.circuit import solver_kernel

    lib = solver_kernel.load()
    solver_kernel.check_layouts(lib)
    fields = list(solver_kernel.CellTab._fields_)
    fields[0], fields[1] = ("ny", ctypes.c_int32), ("nx", ctypes.c_int32)   # same layout, other names: agrees
    solver_kernel.check_layouts(lib, [(type("T", (ctypes.Structure,), {"_fields_": fields}), "cosim_solver_celltab_layout",
                                       ("nch", "x0", "c"))])
    grown = type("DecJobPlus", (ctypes.Structure,), {"_fields_": solver_kernel.DecJob._fields_ + [("more", ctypes.c_int64)]})
    with pytest.raises(InputError, match=r"^the solver kernel does not match .*DecJobPlus: the C size is \d+ bytes"):
        solver_kernel.check_layouts(lib, [(grown, "cosim_solver_decjob_layout", solver_kernel.LAYOUTS[2][2])])


# ------------------------------------------------------------------------------ the kernel's lanes
@pytest.mark.parametrize("tech", TECHS)
@pytest.mark.parametrize("zeros", [{}, {"r_driver_ohm": 0.0, "r_sink_ohm": 0.0}, {"r_wire_ohm": 20.0}])
@pytest.mark.parametrize("rows", [1, 2, 40])
def test_lanes_equal_one_column_at_a_time(monkeypatch, tech, zeros, rows, rng):
    """Columns solved several at once in the kernel's lanes get the one-at-a-time solve's currents (within
    1e-9: rounding, and the lanes' first step, solver_kernel.c dec_run_lanes), whichever columns share their
    lanes: 7 columns of 3 vectors, one of them all zeros (its columns finish first); two threads and chosen
    pairs give the same currents bit for bit."""
    from cosim.circuit import solver
    spec = ArraySpec(get_technology(tech, **zeros), rows, 7)
    x, w = rng.integers(0, 2, (3, rows)), rng.integers(0, 2, (rows, 7))
    x[1] = 0
    w[:, 0] = 1
    for cells in ("exact", "table") if tech != "resistor" else ("exact",):
        lanes = solve_array(spec, x, w, cells=cells, threads=1)
        assert lanes.converged.all()
        np.testing.assert_array_equal(solve_array(spec, x, w, cells=cells, threads=2).column_current_a,
                                      lanes.column_current_a)
        kk, cc = np.array([2, 0, 2, 1, 0]), np.array([6, 0, 3, 5, 6])
        np.testing.assert_array_equal(solver.solve_columns(spec, x, w, kk, cc, cells=cells, threads=1),
                                      lanes.column_current_a[kk, cc])
        monkeypatch.setattr(solver, "DECOUPLED_LANES", False)
        one = solve_array(spec, x, w, cells=cells, threads=1)
        monkeypatch.setattr(solver, "DECOUPLED_LANES", True)
        np.testing.assert_allclose(lanes.column_current_a, one.column_current_a, rtol=1e-9, atol=1e-18)


def test_lanes_report_each_columns_non_convergence(monkeypatch, rng):
    """A column that reaches the iteration limit is reported with its index while the columns beside it in
    its lanes converge: the same failures, currents and iteration counts as one column at a time."""
    from cosim.circuit import solver
    spec = ArraySpec(get_technology("sram8t", r_wire_ohm=10.0), 128, 9)
    x, w = rng.integers(0, 2, (3, 128)), rng.integers(0, 2, (128, 9))
    x[1] = 0            # vector 1: 2 iterations a column; the random ones need 4 at 128 rows and 10 ohm
    a = solve_array(spec, x, w, max_iter=3, allow_failures=True)
    monkeypatch.setattr(solver, "DECOUPLED_LANES", False)
    b = solve_array(spec, x, w, max_iter=3, allow_failures=True)
    assert a.failures == b.failures
    assert {k for k, _, _ in a.failures} == {0, 2} and len(a.failures) == 18
    assert all(why == "iteration limit reached" for _, _, why in a.failures)
    np.testing.assert_array_equal(a.iterations, b.iterations)
    np.testing.assert_allclose(a.column_current_a[1], b.column_current_a[1], rtol=1e-12)
    assert np.isnan(a.column_current_a[[0, 2]]).all()


def test_portable_kernel_build_equals_the_native_one(tmp_path, rng):
    """``COSIM_SOLVER_KERNEL=portable`` builds the kernel without -march=native (two lanes on x86-64): the
    same currents within rounding, tabulated and exact cells."""
    import os
    import platform
    import subprocess
    import sys
    from cosim.circuit.solver_kernel import load
    spec_args = [("reram1t1r", "table"), ("sram8t", "exact")]
    x, w = rng.integers(0, 2, (3, 24)), rng.integers(0, 2, (24, 5))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    code = (
        "import json, sys, numpy as np\n"
        "from cosim.circuit.netlist import ArraySpec\n"
        "from cosim.circuit.solver import solve_array\n"
        "from cosim.circuit.solver_kernel import load\n"
        "from cosim.circuit.technology import get_technology\n"
        f"x, w = np.load({str(tmp_path / 'x.npy')!r}), np.load({str(tmp_path / 'w.npy')!r})\n"
        f"out = {{'lanes': load().cosim_solver_lanes()}}\n"
        f"for tech, cells in {spec_args!r}:\n"
        "    out[tech] = solve_array(ArraySpec(get_technology(tech), 24, 5), x, w, cells=cells).column_current_a.tolist()\n"
        "print(json.dumps(out))\n")
    env = dict(os.environ, COSIM_SOLVER_KERNEL="portable", COSIM_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list((tmp_path / "cache" / "kernels").glob("solver_*.so"))
    if platform.machine() in ("x86_64", "AMD64"):
        assert got["lanes"] == 2
    assert load().cosim_solver_lanes() >= got["lanes"]
    for tech, cells in spec_args:
        native = solve_array(ArraySpec(get_technology(tech), 24, 5), x, w, cells=cells).column_current_a
        np.testing.assert_allclose(np.array(got[tech]), native, rtol=1e-10, atol=1e-18)
