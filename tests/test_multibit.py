"""k-bit (2, 4) networks on binary-cell crossbars: encoding, bit-slicing, bit-exact ideal mode, statistics,
checkpoints, training and the CLI."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cosim.bnn.models import build_model
from cosim.bnn.quant import (QuantConv2d, bit_planes_pm1, init_from_binary, load_qcheckpoint, quant_layers,
                             quantize_odd, save_qcheckpoint)
from cosim.bnn.train import TrainConfig, train
from cosim.cim import cim_stats, convert, reset_stats, to_cim
from cosim.cim.arrays import IdealArray
from cosim.cim.bitslice import CiMQuantConv2d, reset_plane_histograms, shift_add, sliced_weight_matrix
from cosim.cim.layers import CrossbarMatrix
from cosim.cim.synthetic import synthetic_table
from cosim.bnn.datasets import synthetic_arrays, write_synthetic
from cosim.errors import DataError, InputError


def _odd(gen: torch.Generator, shape, bits):
    q = 2 ** bits - 1
    return 2 * torch.randint(0, q + 1, shape, generator=gen).float() - q


# ------------------------------------------------------------------------------------------- encoding

@given(bits=st.sampled_from([1, 2, 4]), seed=st.integers(0, 2**31 - 1), step=st.floats(0.05, 3.0))
@settings(max_examples=60, deadline=None)
def test_quantiser_gives_odd_levels_whose_planes_add_up(bits, seed, step):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(257, generator=g) * 4
    v = quantize_odd(x, torch.tensor(step), bits)
    q = 2 ** bits - 1
    assert torch.all(v.abs() <= q) and torch.all(torch.remainder(v + q, 2) == 0)
    planes = bit_planes_pm1(v, bits)
    assert len(planes) == bits and all(set(p.unique().tolist()) <= {-1.0, 1.0} for p in planes)
    assert torch.equal(sum(2.0 ** i * p for i, p in enumerate(planes)), v)
    # nearest level inside the range (ties upwards)
    lev = torch.arange(-q, q + 1, 2, dtype=torch.float32) * step
    nearest = lev[(x[:, None] - lev[None, :]).abs().argmin(dim=1)]
    inside = (x.abs() < q * step) & ((x[:, None] - lev[None, :]).abs().sort(dim=1).values.diff(dim=1)[:, 0] > 1e-4)
    assert torch.allclose(v[inside] * step, nearest[inside])
    if bits == 1:
        assert torch.equal(v, torch.where(x >= 0, 1.0, -1.0))


@given(bits_x=st.sampled_from([1, 2, 4]), bits_w=st.sampled_from([1, 2, 4]), n=st.integers(1, 150),
       cout=st.integers(1, 9), rows=st.sampled_from([4, 16, 64]), cols=st.sampled_from([3, 8, 64]),
       binsparx=st.booleans(), seed=st.integers(0, 2**31 - 1))
@settings(max_examples=60, deadline=None)
def test_bit_sliced_matrix_product_is_exact_in_ideal_mode(bits_x, bits_w, n, cout, rows, cols, binsparx, seed):
    g = torch.Generator().manual_seed(seed)
    w = _odd(g, (cout, n, 1, 1), bits_w)
    x = _odd(g, (5, n), bits_x)
    wm = sliced_weight_matrix(w, bits_w)                              # (n, k_w C_out)
    assert wm.shape == (n, bits_w * cout)
    # column c*k + i holds plane i of output c
    assert torch.equal(wm.view(n, cout, bits_w)[:, :, 0], bit_planes_pm1(w, bits_w)[0].view(cout, n).t())
    mat = CrossbarMatrix(wm, IdealArray(rows), cols, binsparx=binsparx)
    xp = torch.cat(bit_planes_pm1(x, bits_x), dim=0)                  # plane-major
    bits = torch.zeros(xp.shape[0], mat.tiles.n_padded, dtype=mat.dtype)
    bits[:, :n] = (xp > 0).to(mat.dtype)
    part = mat(bits)
    y = shift_add(part.view(bits_x, 5, -1), bits_x, bits_w)
    assert torch.equal(y, x @ w.view(cout, n).t())
    assert mat.stats.array_reads == bits_x * 5 * mat.tiles.row_tiles * mat.tiles.col_tiles


def test_shift_add_rejects_wrong_shapes():
    with pytest.raises(InputError):
        shift_add(torch.zeros(2, 3, 5), 2, 2)


# ------------------------------------------------------------------------------- layers and networks

class _Tiny(nn.Module):
    def __init__(self, bits):
        super().__init__()
        self.a = QuantConv2d(3, 8, 3, stride=1, padding=1, bits=bits)
        self.bn = nn.BatchNorm2d(8)
        self.b = QuantConv2d(8, 6, 3, stride=2, padding=1, bits=bits)

    def forward(self, x):
        return self.b(self.bn(self.a(x)))


def _trained_tiny(bits, seed=0):
    torch.manual_seed(seed)
    m = _Tiny(bits)
    m.train()
    m(torch.randn(4, 3, 9, 9))                  # initialises the steps from data
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
        m.bn.running_mean.normal_()
    return m.eval()


@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("rows,cols,binsparx,max_active", [(16, 8, False, None), (64, 64, True, None),
                                                            (32, 5, True, 7), (128, 64, False, 3)])
def test_ideal_cim_is_bit_identical_to_the_software_network(bits, rows, cols, binsparx, max_active):
    m = _trained_tiny(bits)
    x = torch.randn(3, 3, 9, 9) * 1.5
    with torch.no_grad():
        ref = m(x)
    cim = convert(m, IdealArray(rows), cols, binsparx=binsparx, max_active_rows=max_active)
    assert isinstance(cim.a, CiMQuantConv2d) and cim.cim_info["bits"] == bits
    with torch.no_grad():
        out = cim(x)
    assert torch.equal(out, ref)
    st_ = cim_stats(cim)
    t = cim.a.matrix.tiles
    assert t.cout == bits * 8                                         # k columns per weight
    assert st_["layers"][0]["bits"] == bits and st_["layers"][0]["vectors"] == bits * 3 * 81


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg-small", "resnet18"])
def test_full_networks_run_bit_exact_on_ideal_arrays(name):
    torch.manual_seed(1)
    m = build_model(name, bits=2)
    assert len(quant_layers(m)) == (5 if name == "vgg-small" else 16)
    m.train()
    m(torch.randn(2, 3, 32, 32))
    m.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = m(x)
        out = to_cim(m, rows=64, cols=64, mode="ideal", binsparx=True)(x)
    assert torch.equal(out, ref)


def test_binary_networks_keep_their_binary_path():
    m = build_model("vgg-small")
    assert not quant_layers(m) and not hasattr(m, "bits")
    with pytest.raises(InputError):
        build_model("vgg-small", bits=3)
    with pytest.raises(InputError):
        QuantConv2d(3, 4, bits=1)


def test_init_from_binary_copies_float_layers_and_signs():
    bnn = build_model("vgg-small")
    q = init_from_binary(build_model("vgg-small", bits=4), bnn)
    assert torch.equal(q[0].weight, bnn[0].weight) and torch.equal(q[1].running_var, bnn[1].running_var)
    assert torch.equal(q[2].weight, torch.where(bnn[2].weight >= 0, 1.0, -1.0))


def test_plane_histograms_add_up_to_the_layer_statistics():
    m = _trained_tiny(2)
    cim = convert(m, IdealArray(16), 8, binsparx=True, max_stride=1)
    reset_plane_histograms(cim, collect=True)
    for layer in (cim.a, cim.b):
        layer.plane_stride = 1
    with torch.no_grad():
        cim(torch.randn(2, 3, 9, 9))
    for layer in (cim.a, cim.b):
        h = layer.plane_histograms()
        on = torch.tensor(h["on_count"])                              # (k_x, k_w, R + 1)
        counts = torch.arange(on.shape[-1], dtype=torch.float64)
        s = layer.stats
        assert float((on * counts).sum()) == s.on_cells
        assert float(on.sum()) == s.column_reads
        rows_on = torch.tensor(h["rows_on"])
        assert float((rows_on * counts).sum()) == s.active_rows
    reset_stats(cim)
    assert cim_stats(cim)["layers"][0]["bits"] == 2                   # survives a reset


def test_surrogate_reads_every_bit_plane_through_the_array_model(tmp_path):
    m = _trained_tiny(2)
    table = synthetic_table("sram8t", 16, 16, samples=600, ir_drop=0.3).save(tmp_path / "t.parquet")
    cim = to_cim(m, tech="sram8t", rows=16, cols=16, mode="surrogate", table=table)
    calls = []
    arr = cim.a.matrix.array
    orig = arr.read_with_current

    def spy(x, w):
        calls.append(tuple(x.shape))
        return orig(x, w)

    arr.read_with_current = spy
    with torch.no_grad():
        y = cim(torch.randn(2, 3, 9, 9))
    assert y.shape == (2, 6, 5, 5) and torch.isfinite(y).all()
    # layer a: 27 rows -> 2 row tiles, read once per tile with all 2 planes x 2 images x 81 positions stacked
    assert (2 * 2 * 81, 16) in calls


# ------------------------------------------------------------------------------- checkpoints, training, CLI

def test_qcheckpoint_round_trip_and_errors(tmp_path):
    m = _trained_tiny(2)
    net = init_from_binary(build_model("resnet18", bits=2), build_model("resnet18"))
    p = save_qcheckpoint(net, tmp_path / "r.ckpt", "resnet18", meta={"note": "x"})
    back, meta = load_qcheckpoint(p, model="resnet18", bits=2)
    assert meta["bits"] == 2 and meta["note"] == "x"
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), back.state_dict().values()))
    with pytest.raises(DataError, match="4-bit"):
        load_qcheckpoint(p, bits=4)
    with pytest.raises(DataError, match="not vgg-small"):
        load_qcheckpoint(p, model="vgg-small")
    torch.save(m.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(DataError, match="k-bit checkpoint"):
        load_qcheckpoint(tmp_path / "plain.pt")


def test_cli_train_and_infer_bits(tmp_path, capsys, monkeypatch):
    from cosim.cli import main

    monkeypatch.setenv("COSIM_CACHE", str(tmp_path / "cache"))
    data = write_synthetic(tmp_path, fmt="python", n_train_per_class=1, n_test_per_class=1, archive=True)
    ckpt = tmp_path / "vgg2.ckpt"
    main(["train", "--model", "vgg-small", "--bits", "2", "--data", str(data), "--epochs", "1", "--out", str(ckpt),
          "--batch-size", "5", "--limit", "5", "--test-limit", "2", "--device", "cpu", "--no-progress", "--json",
          "--threads", "1", "--amp"])
    out = json.loads(capsys.readouterr().out)
    assert out["bits"] == 2 and out["n"] == 2
    net, meta = load_qcheckpoint(ckpt, model="vgg-small", bits=2)
    assert "2-bit" in meta["recipe"] and "bf16 autocast" in meta["recipe"] and all(bool(layer.initialised) for _, layer in quant_layers(net))
    x_train, y_train = synthetic_arrays(1, seed=0)
    with pytest.raises(DataError, match="bits"):   # another precision cannot continue this training state
        train(TrainConfig(model="vgg-small", epochs=2, batch_size=5, lr=2e-3, device="cpu", limit=5, bits=4), x_train,
              y_train, None, None, ckpt, progress=False, log=lambda m: None)
    with pytest.raises(InputError):
        TrainConfig(model="vgg-small", bits=1, init="reference")
    table = synthetic_table("sram8t", 64, 64, samples=1500, ir_drop=0.0).save(tmp_path / "t.parquet")
    main(["infer", "--model", "vgg-small", "--bits", "2", "--checkpoint", str(ckpt), "--data", str(data),
          "--mode", "ideal", "--table", str(table), "--limit", "2", "--json", "--no-progress"])
    res = json.loads(capsys.readouterr().out)
    for k in ("accuracy", "n", "on_cell_fraction", "mean_on_count", "array_energy_j", "provenance", "layers"):
        assert k in res
    assert res["bits"] == 2 and res["n"] == 2 and res["provenance"]["bits"] == 2 and len(res["layers"]) == 5
    # no k-bit checkpoint at the default place: one line saying how to make one
    with pytest.raises(SystemExit) as e:
        main(["infer", "--model", "resnet18", "--bits", "4", "--data", str(data), "--mode", "ideal", "--limit", "1"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.startswith("error: ") and "cosim train" in err and err.count("\n") == 1
