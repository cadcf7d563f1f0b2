"""Any torch BNN on crossbars: Brevitas 1-bit layers, the user hook, binary fully connected layers,
and the one-line errors for layers cosim cannot map."""

import pytest
import torch
from torch import nn

from cosim.bnn.layers import BinConv2d
from cosim.cim import IdealArray, cim_layers, cim_stats, convert, to_cim
from cosim.cim.hooks import BinaryMapping, binarize_like_software, pad_pm1, register_binary_layer
from cosim.cim.layers import CiMLinear
from cosim.cim.synthetic import synthetic_table
from cosim.errors import InputError

brevitas = pytest.importorskip("brevitas")
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear  # noqa: E402
from brevitas.quant import Int8WeightPerTensorFloat  # noqa: E402
from brevitas.quant import SignedBinaryActPerTensorConst as BinAct  # noqa: E402
from brevitas.quant import SignedBinaryWeightPerTensorConst as BinW  # noqa: E402

BinW1 = BinW.let(scaling_const=1.0)      # FINN BNN-PYNQ's convention: binary weights of scale 1


def _brevitas_net(seed=0, wq=BinW1, act_in_layer=False):
    torch.manual_seed(seed)
    act = (lambda: nn.Identity()) if act_in_layer else (lambda: QuantIdentity(act_quant=BinAct))
    iq = dict(input_quant=BinAct) if act_in_layer else {}
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), act(),
        QuantConv2d(16, 24, 3, padding=0, bias=False, weight_quant=wq, **iq), nn.BatchNorm2d(24), act(),
        QuantConv2d(24, 20, 3, stride=2, padding=0, bias=False, weight_quant=wq, **iq), nn.BatchNorm2d(20),
        nn.Flatten(), act(),
        QuantLinear(20 * 3 * 3, 40, bias=True, weight_quant=wq, **iq), nn.BatchNorm1d(40), act(),
        QuantLinear(40, 10, bias=False, weight_quant=Int8WeightPerTensorFloat)).eval()
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return net


@pytest.mark.parametrize("act_in_layer", [False, True])
@pytest.mark.parametrize("rows,cols,binsparx", [(64, 16, False), (7, 5, True)])
def test_brevitas_network_bit_identical(act_in_layer, rows, cols, binsparx):
    net = _brevitas_net(act_in_layer=act_in_layer)
    x = torch.randn(3, 3, 9, 9)
    with torch.no_grad():
        ref = net(x)
        cim = convert(net, IdealArray(rows), cols, binsparx=binsparx)
        assert torch.equal(cim(x), ref)
    names = [n for n, _ in cim_layers(cim)]
    assert names == ["3", "6", "10"]                                 # two convolutions, one binary FC layer
    assert isinstance(cim[10], CiMLinear)
    assert cim.cim_info["software_layers"] == ["13"]              # the 8-bit classifier stays digital
    assert cim_stats(cim)["overall"]["vectors"] == 3 * 7 * 7 + 3 * 3 * 3 + 3


def test_brevitas_surrogate_ideal_law_table_is_exact():
    net = _brevitas_net(1)
    tab = synthetic_table("sram8t", 32, 32, samples=1500, ir_drop=0.0)
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        cim = to_cim(net, tech="sram8t", rows=32, cols=32, mode="surrogate", table=tab, binsparx=True)
        assert torch.equal(cim(x), net(x))


def test_brevitas_non_unit_scale_is_the_scaled_dot_product():
    """Scale 0.1 (Brevitas' default binary weight): the software sums +-0.1 in float, the CiM form
    scales the exact dot product once; equal to float rounding."""
    net = _brevitas_net(2, wq=BinW)
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(convert(net, IdealArray(16), 16)(x), net(x), rtol=1e-5, atol=1e-5)


def test_brevitas_errors_name_the_layer():
    padded = nn.Sequential(QuantIdentity(act_quant=BinAct),
                           QuantConv2d(3, 4, 3, padding=1, bias=False, weight_quant=BinW1))
    with pytest.raises(InputError, match=r"layer 1: QuantConv2d padding feeds zeros.*cim_mapping"):
        convert(padded, IdealArray(8), 8)
    no_binary_input = nn.Sequential(nn.Conv2d(3, 3, 1), QuantConv2d(3, 4, 3, bias=False, weight_quant=BinW1))
    cim = convert(no_binary_input, IdealArray(8), 8)
    with pytest.raises(InputError, match=r"layer 1: its input is not binary"):
        cim(torch.randn(1, 3, 5, 5))
    from brevitas.quant import Int8ActPerTensorFloat
    eight_bit_in = nn.Sequential(QuantLinear(6, 4, bias=False, weight_quant=BinW1, input_quant=Int8ActPerTensorFloat))
    with pytest.raises(InputError, match=r"layer 0: a QuantLinear with 1-bit weights and a 8-bit input"):
        convert(eight_bit_in, IdealArray(8), 8)


class MyBinDense(nn.Module):
    """A user's binary fully connected layer: sign(x) @ sign(W).T * alpha."""

    def __init__(self, n_in, n_out, alpha=0.5):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in))
        self.alpha = alpha

    def forward(self, x):
        return nn.functional.linear(binarize_like_software(x), torch.where(self.weight >= 0, 1.0, -1.0)) * self.alpha


class MyBinDenseHooked(MyBinDense):
    def cim_mapping(self):
        return BinaryMapping(torch.where(self.weight >= 0, 1.0, -1.0).detach(), binarize_like_software,
                             output=lambda dots, x: dots * self.alpha)


def test_unrecognised_layer_names_itself_and_the_hook():
    net = nn.Sequential(nn.Linear(5, 8), MyBinDense(8, 3))
    with pytest.raises(InputError, match=r"^layer 1 \(MyBinDense\) is not a binary layer cosim recognises: "
                                         r"give it a cim_mapping\(\) method or register_binary_layer"):
        convert(net, IdealArray(8), 8)
    with pytest.raises(InputError, match="no binary layer"):
        convert(nn.Sequential(nn.Linear(3, 3)), IdealArray(8), 8)


@pytest.mark.parametrize("how", ["method", "register"])
def test_user_hook_maps_a_binary_linear_layer(how):
    torch.manual_seed(3)
    if how == "method":
        layer = MyBinDenseHooked(70, 9)
    else:
        class Other(MyBinDense):
            pass
        register_binary_layer(Other, lambda m, name: BinaryMapping(
            torch.where(m.weight >= 0, 1.0, -1.0).detach(), binarize_like_software,
            output=lambda dots, x: dots * m.alpha))
        layer = Other(70, 9)
    net = nn.Sequential(nn.Linear(12, 70), layer, nn.Linear(9, 4)).eval()
    x = torch.randn(5, 12)
    with torch.no_grad():
        cim = convert(net, IdealArray(32), 4, binsparx=True)
        assert torch.equal(cim(x), net(x))
    t = cim[1].matrix.tiles
    assert (t.n, t.cout, t.row_tiles, t.col_tiles) == (70, 9, 3, 3)


def test_hook_returning_a_bad_mapping_is_one_line():
    class Bad(nn.Module):
        def cim_mapping(self):
            return BinaryMapping(torch.full((3, 4), 0.5), binarize_like_software)
    with pytest.raises(InputError, match="layer 0: weight_pm1 holds values other than"):
        convert(nn.Sequential(Bad()), IdealArray(8), 8)


def test_cosim_and_brevitas_layers_in_one_network():
    torch.manual_seed(4)
    net = nn.Sequential(BinConv2d(3, 8, 3, 1, 1), nn.BatchNorm2d(8), QuantIdentity(act_quant=BinAct),
                        QuantConv2d(8, 6, 3, bias=False, weight_quant=BinW1)).eval()
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        assert torch.equal(convert(net, IdealArray(16), 8)(x), net(x))


def test_other_brevitas_modules_stay_digital_or_are_refused():
    from brevitas.nn import QuantConv1d
    from brevitas.nn.quant_bn import BatchNorm2dToQuantScaleBias
    torch.manual_seed(6)
    net = nn.Sequential(QuantIdentity(act_quant=BinAct), QuantConv2d(3, 4, 3, bias=False, weight_quant=BinW1),
                        BatchNorm2dToQuantScaleBias(4)).eval()
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        assert torch.equal(convert(net, IdealArray(8), 8)(x), net(x))
    with pytest.raises(InputError, match=r"layer 0 \(QuantConv1d\) has 1-bit weights but is not a layer cosim maps"):
        convert(nn.Sequential(QuantConv1d(3, 4, 3, weight_quant=BinW1)), IdealArray(8), 8)


class MyPaddedBinConv(nn.Module):
    """A user's binary convolution with -1 padding, mapped through the hook (pad_pm1)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(5, 3, 3, 3))

    def _w(self):
        return torch.where(self.weight >= 0, 1.0, -1.0)

    def _x(self, x):
        return pad_pm1(binarize_like_software(x), 1)

    def forward(self, x):
        return nn.functional.conv2d(self._x(x), self._w(), stride=2)

    def cim_mapping(self):
        return BinaryMapping(self._w().detach(), self._x, stride=(2, 2))


def test_user_hook_maps_a_padded_convolution():
    torch.manual_seed(7)
    net = nn.Sequential(MyPaddedBinConv(), nn.Flatten()).eval()
    x = torch.randn(2, 3, 7, 7)
    with torch.no_grad():
        assert torch.equal(convert(net, IdealArray(8), 4, binsparx=True)(x), net(x))
