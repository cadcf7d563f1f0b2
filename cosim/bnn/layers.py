"""Binary layers, with the conventions of the reference weights (shared/models/README.md).

``sign(v) = +1 for v >= 0, -1 otherwise``. A binary convolution binarizes its input, pads the
*binarized* input with -1 (a padded position is an input of -1: a row that is off in a crossbar),
and convolves with the sign of its weight, without bias. The backward pass uses a straight-through
estimator (gradient passed where |v| <= 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        out = torch.where(x >= 0, 1.0, -1.0)
        return out if out.dtype == x.dtype else out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def sign(x: torch.Tensor) -> torch.Tensor:
    """+1 where x >= 0, -1 elsewhere; straight-through gradient."""
    return _SignSTE.apply(x)


class BinConv2d(nn.Conv2d):
    """Binary 3x3 (or any k) convolution: conv2d(pad(sign(x), -1), sign(W)), no bias.

    The ``weight`` holds latent real values while training; the reference checkpoints store it as
    int8 +-1, which loads into the same parameter.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=False)
        self.pad = int(padding)

    def binary_input(self, x: torch.Tensor) -> torch.Tensor:
        """sign(x), padded with -1: exactly what the crossbar rows see."""
        xb = sign(x)
        if self.pad:
            xb = F.pad(xb, (self.pad,) * 4, value=-1.0)
        return xb

    def binary_weight(self) -> torch.Tensor:
        return sign(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.binary_input(x), self.binary_weight(), None, self.stride, 0)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", pad={self.pad} (binarized, value -1)"


def binary_layers(model: nn.Module) -> list[tuple[str, BinConv2d]]:
    """(name, layer) of every BinConv2d, in forward order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, BinConv2d)]
