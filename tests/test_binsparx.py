"""BinSparX: flip bits, exact correction, and the statistics they change."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cosim.bnn.layers import BinConv2d
from cosim.cim import IdealArray, TileMap
from cosim.cim import binsparx as bsx
from cosim.cim.layers import CiMConv2d, CrossbarMatrix
from cosim.cim.mapping import weight_tiles


def _pm1(shape, gen, p=0.5):
    return torch.where(torch.rand(shape, generator=gen) < p, 1.0, -1.0)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 80), cout=st.integers(1, 9), rows=st.integers(1, 33), cols=st.integers(1, 5),
       seed=st.integers(0, 2**16), p=st.floats(0.05, 0.95))
def test_weight_flips(n, cout, rows, cols, seed, p):
    g = torch.Generator().manual_seed(seed)
    t = TileMap(n, cout, rows, cols)
    w = weight_tiles(_pm1((n, cout), g, p), t)
    wf, flip = bsx.flip_weights(w, t)
    n_real = t.real_rows()[:, None].float()
    before, after = w.float().sum(1), wf.float().sum(1)
    assert torch.equal(flip, 2 * before > n_real)
    assert torch.all(after <= torch.floor(n_real / 2))          # at most half the cells store 1
    assert torch.all(after <= before)                           # never more than without flips
    flat = wf.reshape(-1, t.cout_padded)
    assert flat[n:].abs().sum() == 0 and flat[:, cout:].abs().sum() == 0   # unused cells stay off
    assert not flip[:, cout:].any()


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 80), rows=st.integers(1, 33), m=st.integers(1, 20), seed=st.integers(0, 2**16),
       p=st.floats(0.05, 0.95))
def test_input_flips(n, rows, m, seed, p):
    g = torch.Generator().manual_seed(seed)
    t = TileMap(n, 1, rows, 1)
    x = torch.zeros(m, t.n_padded, dtype=torch.float16)
    x[:, :n] = (torch.rand(m, n, generator=g) < p).half()
    xf, flip = bsx.flip_inputs(x, t)
    n_real = t.real_rows()[None, :].float()
    before = x.view(m, t.row_tiles, rows).float().sum(2)
    after = xf.view(m, t.row_tiles, rows).float().sum(2)
    assert torch.equal(flip, 2 * before > n_real)
    assert torch.all(after <= torch.floor(n_real / 2)) and torch.all(after <= before)
    assert xf[:, n:].abs().sum() == 0
    # flipping twice gives the input back
    assert torch.equal(torch.where(flip[:, :, None], 1 - xf.view(m, -1, rows), xf.view(m, -1, rows)).view(m, -1)[:, :n], x[:, :n])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 70), seed=st.integers(0, 2**16), px=st.floats(0.05, 0.95), pw=st.floats(0.05, 0.95))
def test_correction_identity(n, seed, px, pw):
    """s_x s_w (4c' - 2 sum b(x') - 2 sum b(w') + n) = sum w x for one sub-vector and one column."""
    g = torch.Generator().manual_seed(seed)
    x, w = _pm1((n,), g, px), _pm1((n,), g, pw)
    sx = -1.0 if 2 * (x > 0).sum() > n else 1.0
    sw = -1.0 if 2 * (w > 0).sum() > n else 1.0
    bx, bw = ((sx * x) > 0).float(), ((sw * w) > 0).float()
    c = (bx * bw).sum()
    assert c <= n // 2
    assert sx * sw * (4 * c - 2 * bx.sum() - 2 * bw.sum() + n) == (w * x).sum()


@settings(max_examples=25, deadline=None)
@given(cin=st.integers(1, 8), cout=st.integers(1, 9), k=st.sampled_from([1, 3]), stride=st.integers(1, 2),
       pad=st.integers(0, 1), rows=st.integers(1, 40), cols=st.integers(1, 10), seed=st.integers(0, 2**16),
       p=st.floats(0.05, 0.95), m=st.one_of(st.none(), st.integers(1, 6)))
def test_binsparx_conv_bit_exact(cin, cout, k, stride, pad, rows, cols, seed, p, m):
    g = torch.Generator().manual_seed(seed)
    conv = BinConv2d(cin, cout, k, stride=stride, padding=pad)
    with torch.no_grad():
        conv.weight.copy_(_pm1(conv.weight.shape, g, p))
    x = torch.randn(2, cin, 5, 5, generator=g) + (p - 0.5)
    with torch.no_grad():
        ref = conv(x)
        layer = CiMConv2d(conv, IdealArray(rows), cols, binsparx=True, max_active_rows=m, max_stride=1)
        y = layer(x)
    assert torch.equal(y, ref)
    s = layer.stats.summary()
    assert 0 <= s["flipped_column_fraction"] <= 1 and 0 <= s["flipped_subvector_fraction"] <= 1
    assert s["max_on_count"] <= (rows // 2 if m is None else min(m, rows // 2))


def test_stats_on_skewed_data():
    """Skewed operands (mostly +1, as BNN activations and weights often are): BinSparX cuts the
    conducting cells, every read stays within half the rows, and the statistics add up."""
    g = torch.Generator().manual_seed(3)
    w = _pm1((200, 16), g, 0.7)
    x = torch.zeros(500, 256, dtype=torch.float16)
    x[:, :200] = (torch.rand(500, 200, generator=g) < 0.7).half()
    plain = CrossbarMatrix(w, IdealArray(64), 8, max_stride=1)
    flip = CrossbarMatrix(w, IdealArray(64), 8, binsparx=True, max_stride=1)
    assert torch.equal(plain(x), flip(x))
    a, b = plain.stats.summary(), flip.stats.summary()
    assert b["on_cell_fraction"] < a["on_cell_fraction"]
    assert b["partial_sum_reduction"] > 0.3 and a["partial_sum_reduction"] == 0
    assert b["mean_on_count_without_binsparx"] == a["mean_on_count"]
    assert b["max_on_count"] <= 32 and a["max_on_count"] > 32
    assert b["stored_one_fraction"] <= 0.5 < a["stored_one_fraction"]
    ref = (x[:, :200].double() @ (w > 0).double()).sum()        # exact total AND-count without flips
    assert a["mean_on_count"] * a["vectors"] * 4 * 16 == ref.item()
    # 200 rows = 64 + 64 + 64 + 8: the 8-row tile has 8 real rows, not 64
    assert a["on_cell_fraction"] == ref.item() / (500 * 200 * 16)
