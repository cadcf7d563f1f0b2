"""Crossbar mapping: im2col order, tiling, and bit-exact ideal CiM convolutions."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cosim.bnn.layers import BinConv2d
from cosim.cim import IdealArray, TileMap
from cosim.cim.layers import CiMConv2d, column_sums
from cosim.cim.mapping import conv_weight_matrix, im2col_bits, weight_tiles
from cosim.errors import InputError


def _pm1(shape, gen, p=0.5):
    return torch.where(torch.rand(shape, generator=gen) < p, 1.0, -1.0)


def test_tilemap_counts():
    t = TileMap(n=1152, cout=100, rows=64, cols=32)
    assert (t.row_tiles, t.col_tiles, t.n_arrays) == (18, 4, 72)
    assert t.real_rows().tolist() == [64] * 18
    t = TileMap(n=100, cout=10, rows=64, cols=64)
    assert t.real_rows().tolist() == [64, 36]
    assert t.row_mask().sum() == 100 and t.col_mask().sum() == 10
    with pytest.raises(InputError):
        TileMap(n=0, cout=1, rows=1, cols=1)


def test_weight_tiles_unused_off():
    g = torch.Generator().manual_seed(0)
    w = _pm1((70, 5), g)
    t = TileMap(70, 5, 32, 4)
    wt = weight_tiles(w, t)
    assert wt.shape == (3, 32, 8)
    flat = wt.reshape(96, 8)
    assert torch.equal(flat[:70, :5], (w > 0).to(flat.dtype))
    assert flat[70:].abs().sum() == 0 and flat[:, 5:].abs().sum() == 0


def test_im2col_matches_unfold():
    g = torch.Generator().manual_seed(1)
    xb = _pm1((2, 3, 6, 7), g)
    t = TileMap(n=27, cout=4, rows=10, cols=4)
    buf, (ho, wo) = im2col_bits(xb, (3, 3), (2, 1), t)
    ref = F.unfold(xb, 3, stride=(2, 1))                   # (B, C*k*k, L), order (c, kh, kw)
    ref = ref.view(2, 3, 3, 3, -1).permute(0, 4, 2, 3, 1).reshape(-1, 27)   # -> (kh, kw, c)
    assert (ho, wo) == (2, 5)
    assert torch.equal(buf[:, :27].float(), (ref > 0).float())
    assert buf[:, 27:].abs().sum() == 0


def test_conv_weight_matrix_order():
    w = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    m = conv_weight_matrix(w)
    assert m.shape == (12, 2)
    assert m[1, 0] == w[0, 1, 0, 0]        # row 1 = (kh 0, kw 0, c_in 1)


def test_column_sums_exact_beyond_float16():
    x = torch.ones(5000, 3, dtype=torch.float16)
    x[::3, 1] = 0
    assert column_sums(x).tolist() == [5000.0, 3333.0, 5000.0]


@settings(max_examples=25, deadline=None)
@given(cin=st.integers(1, 9), cout=st.integers(1, 11), k=st.sampled_from([1, 2, 3]), stride=st.integers(1, 2),
       pad=st.integers(0, 2), hw=st.integers(3, 7), rows=st.integers(1, 40), cols=st.integers(1, 12),
       seed=st.integers(0, 2**16), p=st.floats(0.1, 0.9))
def test_ideal_conv_bit_exact(cin, cout, k, stride, pad, hw, rows, cols, seed, p):
    g = torch.Generator().manual_seed(seed)
    conv = BinConv2d(cin, cout, k, stride=stride, padding=pad)
    with torch.no_grad():
        conv.weight.copy_(_pm1(conv.weight.shape, g, p))
    x = torch.randn(2, cin, hw, hw, generator=g) + (p - 0.5)
    with torch.no_grad():
        ref = conv(x)
        y = CiMConv2d(conv, IdealArray(rows), cols, max_stride=1)(x)
    assert torch.equal(y, ref)


def test_cim_conv_rejects_other_layers():
    from cosim.bnn.quant import QuantConv2d
    from cosim.cim.bitslice import CiMQuantConv2d

    with pytest.raises(InputError, match="expected a BinConv2d"):
        CiMConv2d(torch.nn.Conv2d(2, 2, 3), IdealArray(8), 8)
    with pytest.raises(InputError, match="expected a QuantConv2d"):
        CiMQuantConv2d(BinConv2d(2, 2), IdealArray(8), 8)
    for make, cim in ((BinConv2d, CiMConv2d), (lambda i, o: QuantConv2d(i, o, bits=2), CiMQuantConv2d)):
        conv = make(2, 2)
        conv.dilation = (2, 2)                                 # dilated: not an im2col of the plain kind
        with pytest.raises(InputError, match="undilated"):
            cim(conv, IdealArray(8), 8, name="c1")


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("pad,stride", [(1, 1), (0, 2), (2, 1)])
def test_input_bits_are_the_bits_of_the_padded_signs(channels_last, pad, stride):
    """cosim's binary convolution gives its padded input bits directly (one pass, channels-last): the bits of
    sign-then-pad (zeros, -0, NaN included), and a crossbar layer's output, its layout and its statistics
    are the same as from the +-1 tensor."""
    from cosim.cim.hooks import _bin_conv
    g = torch.Generator().manual_seed(3)
    conv = BinConv2d(5, 7, 3, stride=stride, padding=pad)
    x = torch.randn(2, 5, 6, 7, generator=g)
    x[0, 0, 0, :3] = torch.tensor([0.0, -0.0, float("nan")])
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    mapping = _bin_conv(conv, "c")
    for dtype in (torch.bfloat16, torch.float32):
        bits = mapping.input_bits(x, dtype)
        assert bits.is_contiguous() and bits.dtype == dtype
        assert torch.equal(bits, (conv.binary_input(x) > 0).permute(0, 2, 3, 1).to(dtype))
    fast = CiMConv2d(conv, IdealArray(16), 4, name="c")
    slow = CiMConv2d(conv, IdealArray(16), 4, name="c")
    slow.input_bits = None
    yf, ys = fast(x), slow(x)
    assert torch.equal(yf, ys) and yf.stride() == ys.stride()
    assert fast.stats.summary() == slow.stats.summary()
