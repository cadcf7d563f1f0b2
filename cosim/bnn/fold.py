"""Deployment form: a batch norm followed by sign, folded into one integer threshold per channel.

A binary convolution's output ``p`` is an integer in ``[-K, K]`` (``K = in_channels * k * k``: a sum
of ``K`` products of +-1, padding included). Where the next operation is a batch norm whose output
is only used through ``sign`` (the input binarization of the next ``BinConv2d``),

    sign(BN(p)) = +1  <=>  direction * p >= threshold        (direction = +-1, threshold integer)

per channel. ``direction`` is -1 where the BN's gamma is negative (the comparison flips); a channel
whose BN output never or always reaches 0 gets a threshold outside ``[-K, K]``. Thresholds are
found by evaluating the layer's own float32 batch norm on every integer in ``[-K, K]``, so they
reproduce the float network's rounding bit for bit (not only the real-number algebra).

VGG-small: BN 4, 6, 9, 11 fold into thresholds on the output of BinConv 2, 5, 7, 10 -- after the
MaxPool where there is one (3, 8): the max is taken on the integer conv output and the threshold
applied to the pooled integer, which is exactly the float order MaxPool -> BN -> sign, whatever
gamma's sign. What does not fold: the float first convolution and BN 1 (the input of the first
binary layer is real-valued: its sign stays a float comparison, done digitally), and BN 14, whose
output feeds the float classifier, not a sign.

ResNet-18 (Bi-Real): nothing folds into an integer threshold. Each binary convolution's input is
the real-valued sum ``bn(conv(x)) + shortcut(x)`` of the block before, so its sign depends on the
real-valued residual as well as on the integer ``p``; a block's BN applies to the integer ``p`` as a
per-channel affine map (scale and shift) that is added to the residual before the next sign.
``deploy`` refuses ResNet-18 with that explanation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .layers import BinConv2d, sign


@dataclass
class IntThreshold:
    """Per-channel integer threshold: out = +1 where ``direction * p >= threshold``, else -1."""

    direction: torch.Tensor  # int8, +-1 per channel
    threshold: torch.Tensor  # int64 per channel
    k_max: int               # |p| <= k_max

    def __call__(self, p: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (p.ndim - 2)
        # compared in float32 (exact for integers up to 2**24), whatever p's dtype
        d = self.direction.to(p.device, torch.float32).view(shape)
        t = self.threshold.to(p.device, torch.float32).view(shape)
        return torch.where(d * p.float() >= t, torch.ones_like(p), -torch.ones_like(p))

    @property
    def channels(self) -> int:
        return int(self.direction.numel())


def fold_bn_sign(bn: nn.BatchNorm2d, k_max: int) -> IntThreshold:
    """Fold ``sign(bn(p))`` for integer ``p`` in ``[-k_max, k_max]`` into an IntThreshold (eval-mode BN)."""
    if not isinstance(bn, nn.BatchNorm2d) or bn.running_mean is None or bn.running_var is None:
        raise InputError("only an eval-mode BatchNorm2d with running statistics can be folded")
    c = bn.num_features
    grid = torch.arange(-k_max, k_max + 1, dtype=torch.float32)
    # the same float32 kernel and memory layout (contiguous N,C,H,W) as in the network
    x = grid.view(1, 1, 1, -1).expand(1, c, 1, grid.numel()).contiguous()
    with torch.no_grad():
        y = F.batch_norm(x, bn.running_mean.float(), bn.running_var.float(),
                         None if bn.weight is None else bn.weight.float(),
                         None if bn.bias is None else bn.bias.float(), False, 0.0, bn.eps)
    pos = (y >= 0).view(c, -1)
    up = (pos[:, 1:] >= pos[:, :-1]).all(dim=1)     # off ... off on ... on
    down = (pos[:, 1:] <= pos[:, :-1]).all(dim=1)   # on ... on off ... off
    if not bool((up | down).all()):
        bad = int((~(up | down)).nonzero()[0])
        raise InputError(f"batch norm channel {bad} is not monotone in its input; cannot fold into a threshold")
    any_on = pos.any(dim=1)
    idx = torch.arange(grid.numel())
    first_on = torch.where(pos, idx, grid.numel()).min(dim=1).values
    last_on = torch.where(pos, idx, -1).max(dim=1).values
    direction = torch.where(up, 1, -1).to(torch.int8)
    thr_up = torch.where(any_on, first_on - k_max, torch.tensor(k_max + 1))      # p >= first on
    thr_down = torch.where(any_on, -(last_on - k_max), torch.tensor(k_max + 1))  # p <= last on
    threshold = torch.where(up, thr_up, thr_down).to(torch.int64)
    return IntThreshold(direction=direction, threshold=threshold, k_max=int(k_max))


def k_max(conv: BinConv2d) -> int:
    """Largest |output| of a binary convolution: the number of +-1 products it sums."""
    kh, kw = conv.kernel_size
    return int(conv.in_channels // conv.groups * kh * kw)


@dataclass
class FoldedStage:
    conv: BinConv2d
    pool: nn.Module | None        # MaxPool2d between the conv and its BN, or None
    threshold: IntThreshold | None  # None for the last stage (its BN feeds the classifier)


#: ``mac(conv, xb)`` -> conv output for the binarized, -1-padded input ``xb`` (default: exact conv2d);
#: a crossbar simulator plugs in here.
MacFn = Callable[[BinConv2d, torch.Tensor], torch.Tensor]


def exact_mac(conv: BinConv2d, xb: torch.Tensor) -> torch.Tensor:
    return F.conv2d(xb, conv.binary_weight(), None, conv.stride, 0)


class FoldedVGGSmall(nn.Module):
    """VGG-small in deployment form: float head (conv 0, BN 1), five binary stages with integer
    thresholds between them, float tail (BN 14, flatten, linear 16). Same logits as the float form."""

    def __init__(self, model: nn.Sequential) -> None:
        super().__init__()
        model = model.eval()
        self.head = nn.Sequential(model[0], model[1])
        layout = [(2, 3, 4), (5, None, 6), (7, 8, 9), (10, None, 11), (12, 13, None)]
        self.stages: list[FoldedStage] = []
        for conv_i, pool_i, bn_i in layout:
            conv = cast(BinConv2d, model[conv_i])
            thr = fold_bn_sign(cast(nn.BatchNorm2d, model[bn_i]), k_max(conv)) if bn_i is not None else None
            self.stages.append(FoldedStage(conv, model[pool_i] if pool_i is not None else None, thr))
        self.convs = nn.ModuleList(s.conv for s in self.stages)
        self.tail = nn.Sequential(model[14], model[15], model[16])

    def forward(self, x: torch.Tensor, mac: MacFn | None = None) -> torch.Tensor:
        mac = mac or exact_mac
        a = sign(self.head(x))  # the first binary layer's input: a float comparison, not folded
        p = a
        for st in self.stages:
            p = mac(st.conv, st.conv.binary_input(a))
            if st.pool is not None:
                p = st.pool(p)
            if st.threshold is not None:
                a = st.threshold(p)
        return self.tail(p)

    def binary_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The +-1 input of every binary stage (unpadded), for comparisons with the float form."""
        a = sign(self.head(x))
        acts = [a]
        for st in self.stages[:-1]:
            p = st.conv(a)
            if st.pool is not None:
                p = st.pool(p)
            a = st.threshold(p)  # type: ignore[misc]  # every stage but the last has one
            acts.append(a)
        return acts


def deploy(model: nn.Module) -> FoldedVGGSmall:
    """The deployment form of a VGG-small (eval mode). ResNet-18 has no integer-threshold form."""
    from .models import ResNet18

    if isinstance(model, ResNet18):
        raise InputError("ResNet-18 does not fold into integer thresholds: each binary layer's input is a "
                         "real-valued residual sum (see cosim/bnn/fold.py)")
    if not (isinstance(model, nn.Sequential) and len(model) == 17 and isinstance(model[2], BinConv2d)):
        raise InputError("deploy() expects the VGG-small of cosim.bnn.models")
    return FoldedVGGSmall(model)
