"""Exact 0/1 products on any CPU: the dtype and kernel choice, and the portable paths forced as CI runs them.

Every bit dtype that cosim may choose is checked for exactness against float64, every path a CPU may
take (float32, bfloat16 and float16 bits; BLAS or oneDNN float32 products; the C kernel's AVX-512 and
portable loops) gives the same network outputs, and the grouped product of linear exact arrays gives
what reading every tile gives, statistics included.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cosim import products
from cosim.cim import IdealArray, cim_stats, convert, to_cim
from cosim.cim.synthetic import synthetic_table
from cosim.errors import InputError
from test_cim_network import _tiny_net as _net

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _tiny_net(seed=0):
    """The network of test_cim_network with 360 rows in its second binary layer: a full 256-row tile."""
    return _net(seed, mid=40)


def test_bits_dtype_is_exact_for_the_array(monkeypatch):
    monkeypatch.delenv(products.ENV, raising=False)
    for rows in (1, 64, 256, 257, 512, 2048, 2049, 5000):
        assert products.exact_limit(products.bits_dtype(rows)) >= rows
    for name, dt in DTYPES.items():
        monkeypatch.setenv(products.ENV, name)
        assert products.bits_dtype(64) == dt                        # exact at 64 rows: forced
        assert products.bits_dtype(3000) == torch.float32           # exact nowhere else but float32
        assert products.exact_limit(products.bits_dtype(300)) >= 300


def test_bad_settings_are_refused(monkeypatch):
    monkeypatch.setenv(products.ENV, "int4")
    with pytest.raises(InputError, match="COSIM_BITS_DTYPE"):
        products.bits_dtype(64)
    monkeypatch.delenv(products.ENV)
    monkeypatch.setenv(products.F32_ENV, "cublas")
    with pytest.raises(InputError, match="COSIM_F32_PRODUCT"):
        products.f32_kernel()
    with pytest.raises(InputError):
        products.exact_limit(torch.int8)
    with pytest.raises(InputError):
        products.bits_dtype(0)


def test_describe_records_the_choice(monkeypatch):
    monkeypatch.delenv(products.ENV, raising=False)
    d = products.describe(128)
    assert d["bits_dtype"] in DTYPES and d["f32_kernel"] in products.F32_KERNELS
    assert set(d["probe_s"]) == set(DTYPES) and all(v > 0 for v in d["probe_s"].values())


@settings(max_examples=25, deadline=None)
@given(dtype=st.sampled_from(sorted(DTYPES)), m=st.integers(1, 40), n=st.integers(1, 24),
       seed=st.integers(0, 2**16), p=st.floats(0.0, 1.0))
def test_products_exact_up_to_the_limit(dtype, m, n, seed, p):
    """0/1 products with as many rows as the dtype counts exactly (up to 2048) equal float64 ones,
    with every count at its largest for p = 1."""
    dt = DTYPES[dtype]
    k = min(products.exact_limit(dt), 2048)
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(m, k, generator=g) < p).double()
    w = (torch.rand(k, n, generator=g) < max(p, 0.5)).double()
    assert torch.equal((x.to(dt) @ w.to(dt)).double(), x @ w)


def test_f32_kernels_agree():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(300, 64, generator=g) > 0.5).float()
    w = torch.randn(64, 96, generator=g)
    ref = x.double() @ w.double()
    for kernel in products.F32_KERNELS:
        y = products.matmul_f32(x, w, products.prepare_f32(w, kernel), kernel)
        assert torch.allclose(y.double(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("binsparx", [False, True])
def test_ideal_network_bit_identical_in_every_dtype(dtype, binsparx, monkeypatch):
    """Ideal CiM is the software network bit for bit whichever bit dtype the CPU gets, and gives the
    same statistics in each."""
    monkeypatch.setenv(products.ENV, dtype)
    net = _tiny_net()
    x = torch.randn(3, 3, 8, 8)
    ref_stats = None
    with torch.no_grad():
        ref = net(x)
        for rows in (16, 64, 256):
            cim = to_cim(net, tech="sram8t", rows=rows, cols=16, mode="ideal", binsparx=binsparx)
            assert cim.cim_info["products"]["bits_dtype"] == (dtype if products.exact_limit(DTYPES[dtype]) >= rows
                                                               else "float32")
            assert torch.equal(cim(x), ref)
            if rows == 64:
                ref_stats = cim_stats(cim)["overall"]
    monkeypatch.setenv(products.ENV, "float32")
    cim = to_cim(net, tech="sram8t", rows=64, cols=16, mode="ideal", binsparx=binsparx)
    with torch.no_grad():
        cim(x)
    assert cim_stats(cim)["overall"] == ref_stats


@pytest.mark.parametrize("binsparx", [False, True])
def test_ideal_network_bit_identical_with_int8_products(binsparx, monkeypatch):
    """The ideal arrays' reads as one int8 product (COSIM_INT8_PRODUCT=on, where torch has it) or grouped
    products of the bit dtype (off): the software network bit for bit, the same statistics."""
    net = _tiny_net(3)
    x = torch.randn(3, 3, 8, 8)
    got = {}
    for setting in ("on", "off"):
        monkeypatch.setenv(products.INT8_ENV, setting)
        assert products.int8_products() == (setting == "on" and "int8" in products.int8_probe())
        cim = to_cim(net, tech="sram8t", rows=64, cols=16, mode="ideal", binsparx=binsparx)
        with torch.no_grad():
            got[setting] = (cim(x), cim_stats(cim))
    with torch.no_grad():
        assert torch.equal(got["on"][0], net(x)) and torch.equal(got["off"][0], net(x))
    assert got["on"][1] == got["off"][1]
    monkeypatch.setenv(products.INT8_ENV, "sometimes")
    with pytest.raises(InputError, match="COSIM_INT8_PRODUCT"):
        products.int8_products()


class _TileByTile(IdealArray):
    """The ideal array read tile by tile (no grouped product): the reference for the fast path."""
    linear = False


@pytest.mark.parametrize("rows,cols", [(16, 8), (7, 5), (64, 64), (300, 16)])
@pytest.mark.parametrize("binsparx", [False, True])
def test_grouped_products_equal_tile_reads(rows, cols, binsparx):
    net = _tiny_net(2)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        fast = convert(net, IdealArray(rows), cols, binsparx=binsparx, max_stride=3)
        slow = convert(net, _TileByTile(rows), cols, binsparx=binsparx, max_stride=3)
        assert torch.equal(fast(x), slow(x))
    assert cim_stats(fast) == cim_stats(slow)


@pytest.mark.parametrize("binsparx", [False, True])
def test_surrogate_network_same_on_every_path(binsparx, monkeypatch):
    """The surrogate's codes depend on its exact counts and float32 moments only: every bit dtype gives
    the same network output, and so do the C kernel's AVX-512 and portable loops; the BLAS and oneDNN
    moment products differ only by float32 rounding."""
    net = _tiny_net(1)
    tab = synthetic_table("sram8t", 32, 32, samples=2000, ir_drop=0.08)
    x = torch.randn(2, 3, 8, 8)
    outs = {}
    for dtype in DTYPES:
        for simd in (True, False):
            monkeypatch.setenv(products.ENV, dtype)
            monkeypatch.setenv(products.F32_ENV, "blas")
            cim = to_cim(net, tech="sram8t", rows=32, cols=32, mode="surrogate", table=tab, binsparx=binsparx)
            cim.cim_array.surrogate.kernel_simd = simd
            with torch.no_grad():
                outs[(dtype, simd)] = cim(x)
    for (dtype, simd), y in outs.items():
        assert torch.equal(y, outs[("float32", simd)]), (dtype, simd)          # exact counts in every dtype
        assert torch.allclose(y, outs[("float32", True)], rtol=1e-5, atol=1e-4)   # loops: float32 rounding
    monkeypatch.setenv("COSIM_SURROGATE_KERNEL", "portable")
    assert not to_cim(net, tech="sram8t", rows=32, cols=32, mode="surrogate", table=tab).cim_array.surrogate.kernel_simd
    sur = cim.cim_array.surrogate
    g = torch.Generator().manual_seed(0)
    xb = (torch.rand(500, 32, generator=g) < 0.5).float()
    wb = (torch.rand(32, 32, generator=g) < 0.5).float()
    cur = {}
    for kernel in products.F32_KERNELS:
        monkeypatch.setenv(products.F32_ENV, kernel)
        cur[kernel] = sur.column_currents(xb, wb)
    assert torch.allclose(cur["blas"], cur["onednn"], rtol=1e-5, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
@pytest.mark.parametrize("binsparx", [False, True])
def test_cuda_network(binsparx):
    """On a GPU: float16 bits, ideal CiM bit-identical to the software network there, and the surrogate
    mode equal to the CPU's within float32 rounding."""
    net = _tiny_net(3)
    x = torch.randn(2, 3, 8, 8)
    tab = synthetic_table("sram8t", 32, 32, samples=2000, ir_drop=0.08)
    with torch.no_grad():
        ref = net.to("cuda")(x.to("cuda"))
        cim = to_cim(net, tech="sram8t", rows=32, cols=32, mode="ideal", binsparx=binsparx, device="cuda")
        assert cim.cim_info["products"]["bits_dtype"] == "float16"
        assert torch.equal(cim(x.to("cuda")), ref)
        outs = [to_cim(net.to(d), tech="sram8t", rows=32, cols=32, mode="surrogate", table=tab, binsparx=binsparx,
                       device=d)(x.to(d)).cpu() for d in ("cpu", "cuda")]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-3)
