"""The fast surrogate paths (fused C kernel, torch fallback, bf16 counts, prepared and cached weights)
against a straightforward float64 evaluation of the table's model written out here, column by column."""

import shutil

import numpy as np
import pytest
import torch

from cosim.surrogate import kernel as surrogate_kernel
from cosim.surrogate.adc import ADC
from cosim.cim.arrays import SurrogateArray
from cosim.errors import InputError
from cosim.surrogate.evaluate import Surrogate
from cosim.surrogate.tables import default_table_path, load_table


LEGENDRE = {1: lambda u: u, 2: lambda u: (3 * u ** 2 - 1) / 2, 3: lambda u: (5 * u ** 3 - 3 * u) / 2,
            4: lambda u: (35 * u ** 4 - 30 * u ** 2 + 3) / 8}


def reference_currents(table, x, w):
    """(N, C) column currents (A) by the model's definition, in float64, one column at a time:
    I = sum over the table's terms f of coef[k, f] times the product of the term's variables, the
    variables being [m_e (, L, nu_e)]: m_e = sum over conducting rows j of P_e(2 (j + 1/2) / R - 1)
    (Legendre polynomials written out, R the table's row count) or, for an order "s<n>", of
    sin((n - 1/2) pi (R - j - 1/2) / R), L the leaking cells (input 1, weight 0) and nu_e their moments."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    rows_table = table.rows
    j = np.arange(x.shape[1])
    u = 2 * (j + 0.5) / rows_table - 1
    basis = [np.sin((int(e[1:]) - 0.5) * np.pi * (rows_table - j - 0.5) / rows_table) if isinstance(e, str)
             else LEGENDRE[int(e)](u) for e in table.meta["orders"]]
    terms = [tuple(t) for t in table.meta["terms"]]
    coef = np.asarray(table["coef"], dtype=np.float64)
    out = np.zeros((x.shape[0], w.shape[1]))
    for c in range(w.shape[1]):
        on = x * w[:, c]                                        # conducting cells of column c
        k = on.sum(axis=1).round().astype(int)
        var = [(on * phi).sum(axis=1) for phi in basis]
        if table.meta["leak"]:
            leak = x - on                                       # input on, weight 0
            var += [leak.sum(axis=1)] + [(leak * phi).sum(axis=1) for phi in basis]
        feats = np.stack([np.prod([var[i] for i in t], axis=0) if t else np.ones(x.shape[0]) for t in terms], axis=1)
        out[:, c] = (coef[k] * feats).sum(axis=1)
    return out


def reference_codes(adc, cur_a):
    lv = adc.levels_a()
    thr = 0.5 * (lv[1:] + lv[:-1])
    return np.searchsorted(thr, cur_a, side="left") * adc.lsb_counts, thr


def assert_codes_match(got, cur_ref, adc):
    """Codes equal the reference's, except for currents within float32 rounding of a threshold."""
    want, thr = reference_codes(adc, cur_ref)
    bad = got != want
    if bad.any():
        near = np.min(np.abs(cur_ref[bad][:, None] - thr[None, :]), axis=1)
        assert np.all(near <= 1e-6 * np.abs(cur_ref[bad])), f"{bad.sum()} codes differ away from a threshold"
        assert bad.mean() < 1e-3


def _bits(rng, shape, p):
    return torch.as_tensor((rng.random(shape) < p).astype(np.float32))


TABLES = [("sram8t", 64), ("reram1t1r", 64), ("sram8t", 128), ("reram1t1r", 128)]


@pytest.fixture(scope="module", params=TABLES, ids=[f"{t}{r}" for t, r in TABLES])
def table(request):
    tech, rows = request.param
    return load_table(default_table_path(tech, rows))


PATHS = {"kernel": dict(use_kernel=True, fast_counts=True), "kernel-f32-counts": dict(use_kernel=True, fast_counts=False),
         # the kernel's portable term loop (what runs without AVX-512): no padded coefficient rows
         "kernel-generic": dict(use_kernel=True, fast_counts=True, kernel_simd=False),
         # the AVX-512 loop column by column, from the products (no lanes, no fused products)
         "kernel-columns": dict(use_kernel=True, fast_counts=True, kernel_lanes=False),
         # 16 columns at once, from the products
         "kernel-lanes-products": dict(use_kernel=True, fast_counts=True, fused_products=False),
         "torch": dict(use_kernel=False, fast_counts=True)}


def _surrogate(table, path, **kw):
    sur = Surrogate.from_table(table, **kw)
    for k, v in PATHS[path].items():
        setattr(sur, k, v)
    return sur


def test_kernel_is_built_where_there_is_a_compiler():
    """The fast tests below must exercise the C kernel, not silently the torch fallback."""
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler")
    assert surrogate_kernel.load() is not None, surrogate_kernel.load_error


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("used_rows", ["full", "partial"])
def test_currents_and_codes_match_reference(table, path, used_rows, rng):
    r = table.rows if used_rows == "full" else table.rows - 13
    n, c = 301, 37                                             # not multiples of the chunk or a block
    x, w = _bits(rng, (n, r), 0.45), _bits(rng, (r, c), 0.5)
    x[0] = 0                                                   # no row on: k = 0
    x[1] = 1
    w[:, 0] = 1                                                # a column storing only ones: k = rows on
    want = reference_currents(table, x.numpy(), w.numpy())
    for adc in (ADC(), ADC(bits=5, references="calibrated"), ADC(bits=4, references="ideal", lsb_counts=2)):
        sur = _surrogate(table, path, adc=adc, chunk=64)
        got = sur.column_currents(x, w).double().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
        codes = sur.read(x, w).numpy()
        assert_codes_match(codes, want, sur.adc)
        # the fused ADC is the ADC's own rule: bit for bit digitize() of the same path's currents
        assert np.array_equal(codes, sur.adc.digitize(sur.column_currents(x, w)).numpy())
        codes2, total = sur.read_with_current(x, sur.prepare(w))
        assert torch.equal(codes2, torch.as_tensor(codes))
        assert isinstance(total, float) and total == pytest.approx(want.sum(), rel=1e-5)


def test_input_dtypes_and_prepared_weights_agree(rng):
    table = load_table(default_table_path("reram1t1r", 64))
    sur = Surrogate.from_table(table, adc=ADC(bits=6, references="calibrated"))
    x, w = _bits(rng, (90, 50), 0.5), _bits(rng, (50, 9), 0.5)
    base = sur.column_currents(x, w)
    for xv in (x.half(), x.bfloat16(), x.bool(), x.numpy().astype(np.int64)):
        torch.testing.assert_close(sur.column_currents(xv, w), base, rtol=0, atol=0)
    pw = sur.prepare(w)
    assert sur.prepare(pw) is pw
    torch.testing.assert_close(sur.column_currents(x, pw), base, rtol=0, atol=0)
    assert torch.equal(sur.read(x, pw), sur.read(x, w))
    with pytest.raises(InputError):
        sur.column_currents(x[:, :40], pw)
    with pytest.raises(InputError):
        sur.prepare(torch.zeros(65, 3))


def test_surrogate_array_caches_prepared_tiles(rng):
    table = load_table(default_table_path("sram8t", 64))
    sur = Surrogate.from_table(table, adc=ADC(references="calibrated"))
    arr = SurrogateArray(sur)
    w_all = _bits(rng, (64, 40), 0.5)
    x = _bits(rng, (50, 64), 0.5)
    a = arr.read(x, w_all[:, :20])
    b, cur = arr.read_with_current(x, w_all[:, :20])          # a new view of the same tile: a hit
    assert torch.equal(a, b) and len(arr._prepared) == 1
    assert cur == pytest.approx(reference_currents(table, x.numpy(), w_all[:, :20].numpy()).sum(), rel=1e-5)
    arr.read(x, w_all[:, 20:])                                 # another tile
    assert len(arr._prepared) == 2
    w_all[:, :20] = 1 - w_all[:, :20]                          # weights changed in place: not the cached tile
    got = arr.read(x, w_all[:, :20]).numpy()
    assert_codes_match(got, reference_currents(table, x.numpy(), w_all[:, :20].numpy()), sur.adc)
    with torch.inference_mode():                                # no version counter: read, not cached
        w_inf = w_all[:, :20].clone()
        n_cached = len(arr._prepared)
        assert torch.equal(arr.read(x, w_inf), arr.surrogate.read(x, w_inf)) and len(arr._prepared) == n_cached
    one = sur.prepare(w_all[:, :10]).nbytes()
    small = SurrogateArray(sur, max_prepared_bytes=2 * one)    # least recently used tiles leave
    for s in range(0, 40, 10):
        small.read(x, w_all[:, s:s + 10])
    assert len(small._prepared) == 2 and small._prepared_bytes <= 2 * one


def _with_degree4_terms(table, rng):
    """The table with every degree-4 monomial of its ON moments added (small random coefficients; for a
    leak table also one term with a leak variable), as the ``quartic`` term set makes them."""
    from itertools import combinations_with_replacement

    from cosim.surrogate.tables import LookupTable
    E = len(table.meta["orders"])
    extra = [list(t) for t in combinations_with_replacement(range(E), 4)] + ([[E, 0, 1, 2]] if table.meta["leak"] else [])
    i_cell = float(table.provenance["i_cell_a"])
    coef = np.hstack([table["coef"], rng.normal(size=(table.rows + 1, len(extra))) * i_cell * 1e-4])
    arrays = {**table.arrays, "coef": coef}
    meta = {**table.meta, "terms": table.meta["terms"] + extra, "features": table.meta["features"] + ["q"] * len(extra)}
    return LookupTable(arrays=arrays, meta=meta, provenance=table.provenance)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("tech", ["sram8t", "reram1t1r"])
def test_degree4_terms_match_reference(path, tech, rng):
    """Terms of four factors (the ``quartic`` term set) through the kernel's AVX-512 and portable loops and
    the torch path, against the float64 definition."""
    table = _with_degree4_terms(load_table(default_table_path(tech, 64)), rng)
    x, w = _bits(rng, (203, 64), 0.45), _bits(rng, (64, 21), 0.5)
    want = reference_currents(table, x.numpy(), w.numpy())
    sur = _surrogate(table, path, chunk=64)
    assert sur._terms.shape[1] == 4
    got = sur.column_currents(x, w).double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    assert not np.allclose(want, reference_currents(load_table(default_table_path(tech, 64)), x.numpy(), w.numpy()),
                           rtol=1e-4)                            # the degree-4 terms do contribute
    assert_codes_match(sur.read(x, w).numpy(), want, sur.adc)


@pytest.mark.parametrize("kind", ["uniform", "clustered", "single", "none"])
def test_kernel_thresholds_are_exact(kind, rng):
    """The kernel's code search (grid guess, steps, fallback walk) is torch.bucketize on float32."""
    lib = surrogate_kernel.load()
    if lib is None:
        pytest.skip(f"no kernel: {surrogate_kernel.load_error}")
    thr = {"uniform": np.arange(1, 64) * 1.0, "clustered": np.concatenate([np.geomspace(1e-3, 1, 40), [5, 5.001, 5.002, 80]]),
           "single": np.array([2.5]), "none": np.zeros(0)}[kind].astype(np.float32)
    t = surrogate_kernel.Thresholds(thr)
    n, c, e = 700, 33, 2
    terms = torch.tensor([[e, e, e], [0, e, e]], dtype=torch.int32)   # 1 and m_1 (variable e: the constant)
    coef_t = torch.ones(2, 2)                                  # current = 1 + m_1 (in units of i_cell = 1), k in 0..1
    m = torch.as_tensor(rng.uniform(-2, 90, size=(n, e * c)).astype(np.float32))
    m[:5, 0:6:2] = torch.as_tensor(thr[:3] - 1 if thr.size >= 3 else [0.0, 1.0, 2.0])   # exactly on thresholds
    k = torch.zeros(n, c)
    rows, idx = surrogate_kernel.avx512_layout(coef_t, terms, e)
    for simd in (True, False):                                 # the AVX-512 and the portable term loops
        cur, code = torch.empty(n, c), torch.empty(n, c)
        total = surrogate_kernel.evaluate(lib, k, m, e, e, terms, coef_t, 1.0, cur=cur, thresholds=t, lsb=3.0,
                                          code=code, threads=2, simd=simd, coef_rows=rows, term_idx=idx)
        torch.testing.assert_close(cur, 1 + m[:, 0::2], rtol=0, atol=0)
        want = torch.bucketize(cur, torch.as_tensor(thr), right=False).float() * 3
        assert torch.equal(code, want)
        assert total == pytest.approx(cur.double().sum().item(), rel=1e-6)


def test_torch_fallback_by_environment(monkeypatch, rng):
    monkeypatch.setenv(surrogate_kernel.ENV, "torch")
    assert surrogate_kernel.load() is None
    table = load_table(default_table_path("sram8t", 64))
    sur = Surrogate.from_table(table)
    x, w = _bits(rng, (40, 64), 0.5), _bits(rng, (64, 5), 0.5)
    np.testing.assert_allclose(sur.column_currents(x, w).double().numpy(), reference_currents(table, x.numpy(), w.numpy()),
                               rtol=1e-5)


def test_crossbar_layer_current_sum_is_the_reads_currents(rng):
    """The layer's array-current statistic (summed per forward, one conversion) is the sum of every tile
    read's column currents, and a second forward adds the same again (cached tiles)."""
    from cosim.cim.layers import CrossbarMatrix

    table = load_table(default_table_path("sram8t", 64))
    arr = SurrogateArray(Surrogate.from_table(table))
    wm = torch.as_tensor(np.where(rng.random((100, 20)) < 0.5, 1.0, -1.0).astype(np.float32))
    layer = CrossbarMatrix(wm, arr, 64)
    tiles = layer.tiles
    x = _bits(rng, (70, tiles.row_tiles * tiles.rows), 0.5)
    x.view(70, tiles.row_tiles, tiles.rows)[:, 1, 100 - 64:] = 0      # padded rows of the last tile are off
    want = sum(reference_currents(table, x[:, t * 64:(t + 1) * 64].numpy(),
                                  layer.w_tiles[t][:, :20].float().numpy()).sum() for t in range(tiles.row_tiles))
    layer(x.to(layer.dtype))
    assert layer.stats.current_sum_a == pytest.approx(want, rel=1e-5)
    layer(x.to(layer.dtype))
    assert layer.stats.current_sum_a == pytest.approx(2 * want, rel=1e-5)
    assert len(arr._prepared) == tiles.row_tiles


def _model_currents_np(table, x, w):
    """(N, C) currents (A) of the table by cosim.surrogate.model in float64 numpy, both ways it offers:
    from column masks (features_np, what the fit uses) and from the surrogate's products
    (product_variables and term_sum, what the torch path runs)."""
    from cosim.surrogate.model import features_np, moment_basis, normalise_orders, product_variables, term_sum

    orders, leak = normalise_orders(table.meta["orders"]), bool(table.meta["leak"])
    terms = [tuple(t) for t in table.meta["terms"]]
    coef = np.asarray(table["coef"], dtype=np.float64)
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    by_masks = np.zeros((x.shape[0], w.shape[1]))
    pad = np.zeros((x.shape[0], table.rows - x.shape[1]))         # masks cover every row of the table
    for c in range(w.shape[1]):
        on = np.hstack([x * w[:, c], pad])
        k, F = features_np(on, np.hstack([x, pad]), orders, leak, terms)
        by_masks[:, c] = (coef[k] * F).sum(axis=1)
    phi = moment_basis(table.rows, orders)[: x.shape[1]]
    k = np.rint(x @ w).astype(np.int64)
    m = x @ (w[:, :, None] * phi[:, None, 1:]).reshape(w.shape[0], -1)          # moment e of column c at c*E + e
    var = product_variables(k, m, x @ phi if leak else None, len(orders))
    by_products = term_sum(var, terms, lambda f: coef[k, f], np.zeros(k.shape))
    return by_masks, by_products


@pytest.mark.parametrize("path", list(PATHS))
def test_numpy_torch_and_kernel_evaluate_the_same_model(table, path, rng):
    """One model, three evaluations: cosim.surrogate.model in numpy (from masks and from products), the
    torch path and the C kernel (both of its loops) give the same currents, and all equal the float64
    definition written out in this file."""
    r = table.rows - 7
    x, w = _bits(rng, (97, r), 0.45), _bits(rng, (r, 19), 0.5)
    want = reference_currents(table, x.numpy(), w.numpy())
    by_masks, by_products = _model_currents_np(table, x.numpy(), w.numpy())
    np.testing.assert_allclose(by_masks, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())
    np.testing.assert_allclose(by_products, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())
    sur = _surrogate(table, path, chunk=64)
    if path != "torch":
        assert sur._kernel() is not None or surrogate_kernel.load_error, "the kernel path fell back silently"
    np.testing.assert_allclose(sur.column_currents(x, w).double().numpy(), by_products, rtol=1e-5,
                               atol=1e-6 * np.abs(want).max())


def _short_job():
    """kernel.py's job struct with its last field dropped: what a kernel.py out of step with kernel.c has."""
    import ctypes

    class ShortJob(ctypes.Structure):
        _fields_ = surrogate_kernel._Job._fields_[:-1]
    return ShortJob


def test_kernel_struct_layout_is_checked(monkeypatch, rng):
    """kernel.c reports sizeof(job_t) and a few offsets; a ctypes struct that differs is refused (one-line
    reason, a warning) and the surrogate takes its torch path, with the same currents."""
    import ctypes

    from cosim.cbuild import layout_mismatch

    lib = surrogate_kernel.load()
    if lib is None:
        pytest.skip(f"no kernel: {surrogate_kernel.load_error}")
    assert layout_mismatch(lib, "cosim_surrogate_job_layout", surrogate_kernel._Job,
                           surrogate_kernel.JOB_LAYOUT_FIELDS) is None
    short = _short_job()
    fields = [f for f in surrogate_kernel.JOB_LAYOUT_FIELDS if f != "sum"] + ["code_ld"]
    msg = layout_mismatch(lib, "cosim_surrogate_job_layout", short, fields)
    assert "size" in msg and str(ctypes.sizeof(surrogate_kernel._Job)) in msg
    swapped = list(surrogate_kernel._Job._fields_)              # C and k change places: same size
    swapped[2], swapped[7] = swapped[7], swapped[2]
    moved = type("MovedJob", (ctypes.Structure,), {"_fields_": swapped})
    assert "offset of k" in layout_mismatch(lib, "cosim_surrogate_job_layout", moved, surrogate_kernel.JOB_LAYOUT_FIELDS)
    assert f"reports {len(surrogate_kernel.JOB_LAYOUT_FIELDS) + 1} layout values" in layout_mismatch(lib, "cosim_surrogate_job_layout", moved, ())
    assert "has no" in layout_mismatch(lib, "no_such_function", short, ())
    assert "ShortJob has no field sum" in layout_mismatch(lib, "cosim_surrogate_job_layout", short,
                                                          surrogate_kernel.JOB_LAYOUT_FIELDS)

    table = load_table(default_table_path("sram8t", 64))
    x, w = _bits(rng, (50, 64), 0.5), _bits(rng, (64, 7), 0.5)
    want = _surrogate(table, "torch").column_currents(x, w)
    grown = type("GrownJob", (ctypes.Structure,), {"_fields_": surrogate_kernel._Job._fields_ + [("extra", ctypes.c_int64)]})
    monkeypatch.setattr(surrogate_kernel, "_Job", grown)
    monkeypatch.setattr(surrogate_kernel, "_tried", False)
    monkeypatch.setattr(surrogate_kernel, "_lib", None)
    monkeypatch.setattr(surrogate_kernel, "load_error", None)
    with pytest.warns(RuntimeWarning, match="kernel.c and kernel.py disagree"):
        assert surrogate_kernel.load() is None
    assert "\n" not in surrogate_kernel.load_error and "GrownJob: the C size is" in surrogate_kernel.load_error
    sur = _surrogate(table, "kernel")
    assert sur._kernel() is None
    assert torch.equal(sur.column_currents(x, w), want)


def _thresholds_distance_lsb(sur, cur):
    """Each current's distance to the nearest ADC decision level, in LSBs of current."""
    thr = torch.as_tensor(sur.adc.thresholds_a(), dtype=torch.float64)
    d = (cur.double().reshape(-1, 1) - thr.reshape(1, -1)).abs().min(dim=1).values
    return d / (sur.adc.lsb_counts * sur.i_cell_a)


@pytest.mark.parametrize("references", ["ideal", "calibrated"])
def test_zero_rows_and_row_sums_change_no_bit(table, references, rng, monkeypatch):
    """The kernel's shortcuts (all-zero input vectors left out of the products and evaluated once; counts
    and moments as sums of the rows the 1s select) give today's currents, ADC codes and current sums bit
    for bit, on random operands with many columns within a hair of a decision level, for any share of
    zero vectors, sparse and dense inputs, both bit dtypes, passes of 1 to thousands of vectors."""
    from cosim.surrogate import evaluate as surrogate_evaluate
    calls = {"row_sums": 0}
    real = surrogate_kernel.row_sums

    def counting(*a, **kw):
        calls["row_sums"] += 1
        return real(*a, **kw)
    monkeypatch.setattr(surrogate_kernel, "row_sums", counting)
    sur = Surrogate.from_table(table, adc=ADC(bits=6, references=references))
    sur.fused_products = False                      # the shortcuts of the products (the fused ones: below)
    r = table.rows
    w = _bits(rng, (r, 70), 0.5)
    pw = sur.prepare(w)
    near = 0
    for n, zero_share, p_one in [(1, 0.0, 0.4), (17, 0.9, 0.4), (300, 0.5, 0.1), (2600, 0.3, 0.45), (2600, 0.0, 0.08),
                                 (500, 1.0, 0.3), (40, 0.97, 0.05)]:
        x = _bits(rng, (n, r), p_one)
        x[torch.as_tensor(rng.random(n) < zero_share)] = 0
        for dtype in (torch.bfloat16, torch.float32):
            xd = x.to(dtype)
            got = {}
            for fast in (False, True):
                sur.skip_zero_rows = sur.sparse_products = fast
                codes, total = sur.read_with_current(xd, pw)
                got[fast] = (sur.column_currents(xd, pw), codes, total)
            assert torch.equal(got[True][0], got[False][0]) and torch.equal(got[True][1], got[False][1])
            assert got[True][2] == got[False][2]
            near += int((_thresholds_distance_lsb(sur, got[False][0]) < 1e-3).sum())
    assert near >= 10                               # the check covered columns at the edge of a code
    if surrogate_evaluate._row_sums_exact(surrogate_kernel.load(), r, pw.w_moments.shape[1], pw.f32_kernel,
                                          torch.get_num_threads()):
        assert calls["row_sums"] > 0                # ... and the row sums were taken where they are exact


def test_row_sums_add_the_selected_rows_in_order(rng):
    """row_sums: each output the float32 sum, in increasing row order, of the weight rows the vector's 1s
    select (a sequential sum written out here), for bfloat16 and float32 inputs; inputs other than 0 and 1
    are refused (None), as are operands of the wrong layout (ValueError)."""
    lib = surrogate_kernel.load()
    if lib is None:
        pytest.skip(f"no kernel: {surrogate_kernel.load_error}")
    for r, c, n_cols in [(64, 20, 300), (128, 9, 129), (7, 3, 5)]:
        x = _bits(rng, (50, r), 0.3)
        x[0] = 0
        wk = _bits(rng, (r, c), 0.5)
        wm = torch.as_tensor(rng.standard_normal((r, n_cols)), dtype=torch.float32)
        want = np.zeros((50, n_cols), dtype=np.float32)
        for row in range(r):                                       # float32 additions in row order
            sel = x[:, row].numpy() > 0
            want[sel] = want[sel] + wm[row].numpy()
        for dtype in (torch.float32, torch.bfloat16):
            k, m = surrogate_kernel.row_sums(lib, x.to(dtype), wk, wm, threads=2)
            assert np.array_equal(m.numpy(), want)
            assert torch.equal(k, x @ wk)
    x[3, 1] = 0.5
    assert surrogate_kernel.row_sums(lib, x, wk, wm) is None
    with pytest.raises(ValueError, match="row_sums operands"):
        surrogate_kernel.row_sums(lib, x.double(), wk, wm)


@pytest.mark.parametrize("variant", [dict(), dict(binsparx=True), dict(max_active_rows=5), dict(max_active_rows=3, binsparx=True)])
def test_network_outputs_and_statistics_unchanged_by_the_shortcuts(variant):
    """A small network through the shipped 64-row table, whole reads, BinSparX and partial wordline
    activation (reads of few rows: sparse inputs, many all-zero vectors): the same logits and statistics
    with and without the kernel's shortcuts (16 columns at once and the fused products among them)."""
    from test_cim_network import _tiny_net

    from cosim.cim import cim_stats, to_cim
    net = _tiny_net(3, mid=40)
    x = torch.randn(6, 3, 8, 8)
    out = {}
    for fast in (False, True):
        cim = to_cim(net, tech="sram8t", rows=64, cols=64, mode="surrogate", adc_reference="calibrated", **variant)
        sur = cim.cim_array.surrogate
        sur.skip_zero_rows = sur.sparse_products = sur.fused_products = sur.kernel_lanes = fast
        if not fast:
            cim.cim_array.read_accumulate = None         # the codes read and added up tile by tile in torch
        with torch.no_grad():
            out[fast] = (cim(x), cim_stats(cim))
    assert torch.equal(out[True][0], out[False][0])
    assert out[True][1] == out[False][1]


def test_kernel_has_its_avx512_loops_where_the_cpu_does():
    """A kernel.c whose AVX-512 code fails to compile is still built, without -march=native, and runs its
    portable loop everywhere: on a CPU with AVX-512 the library must report its AVX-512 loops."""
    lib = surrogate_kernel.load()
    if lib is None:
        pytest.skip(f"no kernel: {surrogate_kernel.load_error}")
    flags = surrogate_kernel.cpu_signature().split()
    if "avx512f" not in flags:
        pytest.skip("this CPU has no AVX-512")
    assert lib.cosim_simd


def _fast_and_slow(sur, x, pw):
    """(currents, codes, current sum) with every shortcut of the kernel on, and column by column from the products."""
    got = {}
    for fast in (True, False):
        sur.kernel_lanes = sur.fused_products = fast
        codes, total = sur.read_with_current(x, pw)
        got[fast] = (sur.column_currents(x, pw), codes, total)
    sur.kernel_lanes = sur.fused_products = True
    return got


@pytest.mark.parametrize("quartic", [False, True], ids=["terms", "degree4"])
def test_lanes_and_fused_products_change_no_bit(table, quartic, rng):
    """The kernel's AVX-512 loop over 16 columns at once (one per vector lane) and its fused products (counts
    and moments formed in the kernel from the bits) give the column-by-column loop's currents, ADC codes and
    current sums from the products bit for bit: every shipped table (4, 8 and 12 moments, leak variables), with
    degree-4 terms, partially used tiles, column counts around multiples of 16, 64 and 128 (the lanes' blocks,
    whole and half), ON-counts across the 32-count segments of the coefficient lookup and windows of it, zero vectors, both bit dtypes, two threads, both ADC
    references; with columns within a hair of a decision level among them."""
    lib = surrogate_kernel.load()
    if lib is None:
        pytest.skip(f"no kernel: {surrogate_kernel.load_error}")
    tab = _with_degree4_terms(table, rng) if quartic else table
    r = table.rows
    near = 0
    for references in ("ideal", "calibrated"):
        sur = Surrogate.from_table(tab, adc=ADC(bits=6, references=references))
        sur.kernel_threads = 2
        for rows, cols, p_x, p_w in [(r, 1, 0.45, 0.5), (r, 16, 0.95, 0.95), (r, 17, 0.45, 0.5), (r - 13, 63, 0.3, 0.5),
                                     (r, 64, 0.9, 0.9), (r, 70, 0.45, 0.5), (r - 1, 200, 0.6, 0.7), (r, 129, 0.05, 0.5)]:
            x, w = _bits(rng, (600, rows), p_x), _bits(rng, (rows, cols), p_w)
            x[::7] = 0
            x[1] = 1
            w[:, 0] = 1
            pw = sur.prepare(w)
            for dtype in (torch.bfloat16, torch.float32):
                got = _fast_and_slow(sur, x.to(dtype), pw)
                assert torch.equal(got[True][0], got[False][0]), (references, rows, cols, dtype)
                assert torch.equal(got[True][1], got[False][1]) and got[True][2] == got[False][2]
                near += int((_thresholds_distance_lsb(sur, got[False][0]) < 1e-3).sum())
    assert near >= 5


def test_fused_products_refuse_inputs_other_than_bits(rng):
    """Inputs other than 0 and 1 (a caller's, not a network's) leave the fused products for the products
    themselves: the same results as with the fused products off. (The fused products serve four moments:
    the shipped 1T-1R 128-row table; the 64-row tables have 8 and 12.)"""
    lib = surrogate_kernel.load()
    table = load_table(default_table_path("reram1t1r", 128))
    assert len(table.meta["orders"]) == 4
    sur = Surrogate.from_table(table)
    x, w = _bits(rng, (300, 128), 0.4), _bits(rng, (128, 33), 0.5)
    x[5, 3] = 0.5
    pw = sur.prepare(w)
    got = _fast_and_slow(sur, x, pw)
    assert torch.equal(got[True][0], got[False][0]) and torch.equal(got[True][1], got[False][1])
    if surrogate_kernel.fused_available(lib, 4):
        with pytest.raises(ValueError, match="evaluate_fused operands"):
            surrogate_kernel.evaluate_fused(lib, x.double(), pw.w_mask, sur._phi_m, 33, 4, sur.n_variables, sur._terms,
                                            sur._coef_t, sur.i_cell_a, sur._coef_rows, sur._term_idx)
        assert surrogate_kernel.evaluate_fused(lib, x, pw.w_mask, sur._phi_m, 33, 4, sur.n_variables, sur._terms,
                                               sur._coef_t, sur.i_cell_a, sur._coef_rows, sur._term_idx) is None


def test_weight_masks_hold_the_bits(rng):
    """weight_masks: bit l of [r, g] is w[r, 16 g + l], groups padded with zeros to a multiple of 8."""
    for cols, groups in ((70, 8), (129, 16)):
        w = _bits(rng, (5, cols), 0.5)
        m = surrogate_kernel.weight_masks(w)
        assert m.dtype == torch.int16 and m.shape == (5, groups)
        bits = (m.numpy().view(np.uint16)[:, :, None] >> np.arange(16)) & 1
        assert np.array_equal(bits.reshape(5, -1)[:, :cols], w.numpy().astype(int))
        assert not bits.reshape(5, -1)[:, cols:].any()


def test_fused_products_take_tables_of_any_count_of_moments(rng):
    """The fused products take up to 15 moments, fewer than 32 variables and up to 128 terms: the 8T-SRAM
    128- and 256-row tables (12 moments; 43 and 78 terms) run them, giving the products' results bit for bit."""
    fm = surrogate_kernel.fused_moments
    assert fm(4) and fm(8) and fm(12, 12, 43) and fm(12, 12, 78) and fm(4, 9, 64) and fm(15, 15, 128)
    assert fm(4, 16) and fm(8, 17, 68) and fm(15, 31, 128)
    assert not fm(0) and not fm(16) and not fm(4, 32) and not fm(15, 31, 129) and not fm(12, 12, 129)
    lib = surrogate_kernel.load()
    if lib is None or not lib.cosim_simd or surrogate_kernel.portable_forced():
        pytest.skip("no kernel with AVX-512 loops, or its portable loop forced")
    for rows in (128, 256):
        sur = Surrogate.from_table(default_table_path("sram8t", rows))
        assert len(sur.orders) == 12
        x, w = _bits(rng, (300, rows), 0.5).bfloat16(), _bits(rng, (rows, 140), 0.5)
        pw = sur.prepare(w)
        assert pw.w_mask is not None and sur._fused(lib, x, pw, 1)
        got = _fast_and_slow(sur, x, pw)
        assert torch.equal(got[True][0], got[False][0]) and torch.equal(got[True][1], got[False][1])
        assert got[True][2] == got[False][2]


#: a table of 8 moments (full cubic, sine squares s3-s6) with leak variables: 17 variables, 68 terms: the
#: shipped 1T-1R 64-row table (should its form change, keep a copy of this one in tests/data for this test)
TABLE_17_VARIABLES = default_table_path("reram1t1r", 64)


def test_fused_products_take_tables_of_two_registers_of_variables(rng):
    """A table of 16 or more variables (8 moments with leak variables: 17; the column loop keeps them in two
    AVX-512 registers) runs the fused products and the 16-column lanes, giving the column loop's currents,
    codes, current sums and accumulated codes from the products bit for bit (partial tiles, column counts
    around the lanes' blocks, zero vectors, both bit dtypes, two threads), and the model's currents."""
    table = load_table(TABLE_17_VARIABLES)
    sur = Surrogate.from_table(table, adc=ADC(bits=6, references="calibrated"))
    assert (len(sur.orders), sur.n_variables, len(sur.terms)) == (8, 17, 68)
    lib = surrogate_kernel.load()
    if lib is None or not lib.cosim_simd or surrogate_kernel.portable_forced():
        pytest.skip("no kernel with AVX-512 loops, or its portable loop forced")
    sur.kernel_threads = 2
    for rows, cols, p_x in [(64, 1, 0.45), (64, 17, 0.95), (51, 63, 0.3), (64, 129, 0.45), (63, 200, 0.6)]:
        x, w = _bits(rng, (600, rows), p_x), _bits(rng, (rows, cols), 0.5)
        x[::7] = 0
        x[1] = 1
        w[:, 0] = 1
        pw = sur.prepare(w)
        for dtype in (torch.bfloat16, torch.float32):
            assert pw.w_mask is not None and sur._fused(lib, x.to(dtype), pw, 2)
            got = _fast_and_slow(sur, x.to(dtype), pw)
            assert torch.equal(got[True][0], got[False][0]), (rows, cols, dtype)
            assert torch.equal(got[True][1], got[False][1]) and got[True][2] == got[False][2]
            acc = torch.zeros((600, cols))
            total, kmax = sur.read_accumulate(x.to(dtype), pw, acc, max_stride=3)
            assert torch.equal(acc, got[False][1]) and total == got[False][2]
            assert kmax == int((x[::3] @ w).max())
        want = reference_currents(table, x.numpy(), w.numpy())
        np.testing.assert_allclose(got[True][0].double().numpy(), want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


@pytest.mark.parametrize("tech,rows", [("sram8t", 64), ("reram1t1r", 64), ("reram1t1r", 128)])
def test_read_accumulate_adds_the_codes_of_read(tech, rows, rng):
    """read_accumulate adds read()'s codes times the signs to the sum (in the kernel, never stored, where the
    fused products run: four moments, the 1T-1R 128-row table; else in torch), gives read_with_current's
    current sum and the largest ON-count of every k-th vector, bit for bit."""
    table = load_table(default_table_path(tech, rows))
    for fused in (True, False):
        sur = Surrogate.from_table(table, adc=ADC(bits=6, references="calibrated"))
        sur.fused_products = fused
        x, w = _bits(rng, (700, 60), 0.4).bfloat16(), _bits(rng, (60, 37), 0.5)
        x[::3] = 0
        s_x = torch.as_tensor(rng.choice([-1.0, 1.0], 700), dtype=torch.float32)
        s_w = torch.as_tensor(rng.choice([-1.0, 1.0], 37), dtype=torch.float32)
        start = torch.as_tensor(rng.integers(-50, 50, (700, 37)), dtype=torch.float32)
        codes, total = sur.read_with_current(x, w)
        for sx, sw in ((None, None), (s_x, s_w), (s_x, None), (None, s_w)):
            acc = start.clone()
            got, kmax = sur.read_accumulate(x, w, acc, sx, sw, max_stride=5)
            want = codes * (1 if sw is None else sw) * (1 if sx is None else sx[:, None])
            assert torch.equal(acc, start + want) and got == total
            if fused and surrogate_kernel.fused_available(surrogate_kernel.load(), len(sur.orders), sur.kernel_simd,
                                                          sur.kernel_lanes, sur.n_variables, len(sur.terms)):
                assert kmax == int((x[::5].float() @ w).max())
            else:
                assert kmax is None


@pytest.mark.parametrize("tech,rows", [("sram8t", 64), ("sram8t", 256), ("reram1t1r", 128)])
def test_repeated_vectors_take_their_first_results_bit_for_bit(tech, rows, rng):
    """The fused products evaluate a vector that repeats one of the same call once and copy its results (a
    cache keyed by the bits): currents, codes, the current sum and the largest ON-count of every k-th vector
    are those of the products, bit for bit, with many repeats among more distinct vectors than the cache holds
    (collisions), a repeat that alone has the largest ON-count of the vectors read for it, two threads."""
    lib = surrogate_kernel.load()
    if lib is None or not lib.cosim_simd or surrogate_kernel.portable_forced():
        pytest.skip("no kernel with AVX-512 loops, or its portable loop forced")
    sur = Surrogate.from_table(default_table_path(tech, rows), adc=ADC(bits=6, references="calibrated"))
    sur.kernel_threads = 2
    distinct = _bits(rng, (3000, rows), 0.4)
    x = torch.cat([distinct, distinct[torch.as_tensor(rng.integers(0, 40, 3000))]])[torch.as_tensor(rng.permutation(6000))]
    x[::11] = 0
    w = _bits(rng, (rows, 37), 0.5)
    top = torch.ones(rows)
    x[1], x[10] = top, top                              # the only 1-vector: first at row 1, again at row 10
    pw = sur.prepare(w)
    for dtype in (torch.bfloat16, torch.float32):
        got = _fast_and_slow(sur, x.to(dtype), pw)
        assert torch.equal(got[True][0], got[False][0]) and torch.equal(got[True][1], got[False][1])
        assert got[True][2] == got[False][2]
    acc = torch.zeros(6000, 37)
    total, kmax = sur.read_accumulate(x.bfloat16(), pw, acc, max_stride=5)
    assert torch.equal(acc, got[False][1]) and total == got[False][2]
    assert kmax == int((x[::5] @ w).max()) == int(w.sum(0).max())
