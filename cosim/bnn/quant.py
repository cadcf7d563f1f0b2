"""k-bit (2 and 4) quantised convolutions for the same networks as the BNNs, and their checkpoints.

Encoding (offset binary, symmetric odd levels): a k-bit value is an unsigned integer u in [0, Q],
Q = 2**k - 1, standing for the odd integer

    v = 2u - Q = sum_i 2**i (2 b_i - 1),        b_i the bits of u,

so v is in {-Q, -Q+2, ..., Q-2, Q} (no zero level) and every bit-plane b_i is a +-1 plane of its own.
k = 1 is the BNN's sign (v = +-1). Weights and activations use the same encoding; the integer
convolution of two such tensors is exactly a weighted sum of binary (+-1) convolutions of their
planes with weights 2**(i+j) -- what a crossbar of binary cells computes bit-plane by bit-plane
(cosim.cim.bitslice).

Quantiser: learned step sizes (LSQ, Esser et al. 2020) on the odd grid: ``v = 2 clamp(round((x/s + Q)/2),
0, Q) - Q`` with round-half-up and a straight-through gradient; one activation step per layer, one
weight step per output channel, both initialised from the data at the first training step
(``s = 2 mean|x| / sqrt(Q)``) and trained with LSQ's gradient scale ``1/sqrt(numel Q)``.

:class:`QuantConv2d` computes ``conv2d(pad(v_x, -Q), v_w) * s_x * s_w[c]``: the integer convolution
(padding is the lowest level, u = 0, all bit-planes off, as the BNN's -1 padding) times one float
scale per output channel. In eval mode the integer convolution is computed in float64 and rounded,
so it is exact whatever the convolution algorithm; the CiM form multiplies its exact integer
result by the same scale tensor, so ``ideal`` CiM mode is bit-identical to this software layer.

First convolution, shortcuts, batch norms and classifier stay float, as in the BNNs.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError, InputError
from .layers import BinConv2d

#: weight / activation precisions cosim maps onto binary cells (1 is the BNN itself)
SUPPORTED_BITS = (1, 2, 4)
FORMAT = "cosim-qnn-checkpoint"
VERSION = 1


def check_bits(bits) -> int:
    try:
        k = int(bits)
    except (TypeError, ValueError):
        raise InputError(f"bits must be one of {SUPPORTED_BITS}, got {bits!r}") from None
    if k != bits or k not in SUPPORTED_BITS:
        raise InputError(f"bits must be one of {SUPPORTED_BITS}, got {bits!r}")
    return k


class _RoundHalfUpSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.floor(v + 0.5)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


def _grad_scale(s: torch.Tensor, g: float) -> torch.Tensor:
    """``s`` in value, gradient scaled by ``g`` (LSQ)."""
    return (s - s * g).detach() + s * g


def quantize_odd(x: torch.Tensor, step: torch.Tensor, bits: int) -> torch.Tensor:
    """Odd integer levels v = 2u - Q (u in [0, Q], Q = 2**bits - 1) of ``x`` with step ``step``.

    Exact integers in value; straight-through gradient inside the range (LSQ gradients to ``step``)."""
    q = float(2 ** bits - 1)
    v = (x / step + q) * 0.5
    u = torch.clamp(_RoundHalfUpSTE.apply(v), 0.0, q)
    return 2.0 * u - q


def unsigned_code(v_odd: torch.Tensor, bits: int) -> torch.Tensor:
    """The unsigned code u = (v + Q) / 2 of odd levels, as int64."""
    q = 2 ** bits - 1
    return torch.round((v_odd + q) * 0.5).to(torch.int64)


def bit_planes_pm1(v_odd: torch.Tensor, bits: int) -> list[torch.Tensor]:
    """The ``bits`` +-1 planes (LSB first) of odd levels: v = sum_i 2**i plane_i."""
    u = unsigned_code(v_odd, bits)
    return [(((u >> i) & 1) * 2 - 1).to(v_odd.dtype) for i in range(bits)]


class QuantConv2d(nn.Conv2d):
    """k-bit convolution (weights and activations, see the module docstring), no bias.

    Parameters beyond ``weight`` (latent reals): ``act_step`` (scalar) and ``weight_step`` (C_out);
    buffer ``initialised`` (steps set from data at the first training forward)."""

    initialised: torch.Tensor

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, bits: int = 2) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=False)
        self.bits = check_bits(bits)
        if self.bits == 1:
            raise InputError("QuantConv2d is for 2 and 4 bits; 1 bit is BinConv2d")
        self.pad = int(padding)
        self.levels_q = 2 ** self.bits - 1
        self.act_step = nn.Parameter(torch.ones(()))
        self.weight_step = nn.Parameter(torch.ones(out_channels))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self._act_numel = 1

    @classmethod
    def from_binary(cls, conv: BinConv2d, bits: int) -> "QuantConv2d":
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0], conv.pad, bits)
        if tuple(conv.kernel_size) != (q.kernel_size[0],) * 2 or conv.stride[0] != conv.stride[1]:
            raise InputError("only square kernels and strides are supported")
        return q

    # ------------------------------------------------------------------ the integer operands
    def _steps(self) -> tuple[torch.Tensor, torch.Tensor]:
        sx, sw = self.act_step, self.weight_step
        if self.training:
            sx = _grad_scale(sx, 1.0 / math.sqrt(max(1, self._act_numel) * self.levels_q))
            sw = _grad_scale(sw, 1.0 / math.sqrt(self.weight[0].numel() * self.levels_q))
        return sx, sw

    def int_input(self, x: torch.Tensor) -> torch.Tensor:
        """Odd activation levels of ``x``, padded with -Q: exactly what the crossbar rows see."""
        self._act_numel = x[0].numel()
        sx, _ = self._steps()
        xi = quantize_odd(x, sx, self.bits)
        if self.pad:
            xi = F.pad(xi, (self.pad,) * 4, value=-float(self.levels_q))
        return xi

    def int_weight(self) -> torch.Tensor:
        """Odd weight levels (C_out, C_in, k, k)."""
        _, sw = self._steps()
        return quantize_odd(self.weight, sw.view(-1, 1, 1, 1), self.bits)

    def out_scale(self) -> torch.Tensor:
        """(1, C_out, 1, 1) scale of the integer convolution: s_x * s_w."""
        sx, sw = self._steps()
        return (sx * sw).view(1, -1, 1, 1)

    @torch.no_grad()
    def init_steps(self, x: torch.Tensor) -> None:
        """LSQ initialisation from a batch: s = 2 mean|.| / sqrt(Q) (weights per output channel)."""
        q = math.sqrt(self.levels_q)
        self.act_step.copy_((2 * x.detach().abs().mean() / q).clamp_min(1e-4))
        self.weight_step.copy_((2 * self.weight.detach().abs().mean(dim=(1, 2, 3)) / q).clamp_min(1e-4))
        self.initialised.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not bool(self.initialised):
            self.init_steps(x)
        xi, wi = self.int_input(x), self.int_weight()
        if self.training:
            y = F.conv2d(xi, wi, None, self.stride, 0)
        else:   # exact integers whatever the convolution algorithm (|y| < 2**24 by far)
            y = F.conv2d(xi.double(), wi.double(), None, self.stride, 0).round_().to(x.dtype)
        return y * self.out_scale()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", pad={self.pad} (lowest level), bits={self.bits}"


def quant_layers(model: nn.Module) -> list[tuple[str, QuantConv2d]]:
    """(name, layer) of every QuantConv2d, in forward order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, QuantConv2d)]


def quantize_model(model: nn.Module, bits: int) -> nn.Module:
    """Replace every BinConv2d of ``model`` (in place) by a k-bit QuantConv2d of the same geometry."""
    k = check_bits(bits)
    if k == 1:
        return model
    from .layers import binary_layers
    for name, conv in binary_layers(model):
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, QuantConv2d.from_binary(conv, k))
    model.bits = k  # type: ignore[assignment]  # a plain attribute (torch types them Tensor | Module)
    return model


def model_bits(model: nn.Module) -> int:
    layers = quant_layers(model)
    return layers[0][1].bits if layers else 1


@torch.no_grad()
def init_from_binary(qmodel: nn.Module, bnn: nn.Module) -> nn.Module:
    """Initialise a k-bit network from a trained BNN of the same architecture: every float tensor
    (first convolution, batch norms with their statistics, shortcuts, classifier) is copied, each
    k-bit weight starts from the BNN's binary weight (its sign, +-1). Steps are set from data at the
    first training step."""
    qstate = qmodel.state_dict()
    bstate = bnn.state_dict()
    for k, v in bstate.items():
        if k not in qstate or tuple(qstate[k].shape) != tuple(v.shape):
            raise DataError(f"BNN tensor {k} has no counterpart in the k-bit network")
        qstate[k] = torch.where(v >= 0, 1.0, -1.0).to(qstate[k].dtype) if k.endswith(".weight") and \
            isinstance(qmodel.get_submodule(k.rsplit(".", 1)[0]), QuantConv2d) else v.to(qstate[k].dtype)
    qmodel.load_state_dict(qstate, strict=True)
    return qmodel


# ---------------------------------------------------------------------------------- checkpoints
def save_qcheckpoint(model: nn.Module, path: str | os.PathLike, name: str, meta: dict | None = None) -> Path:
    """Write a k-bit network (its state dict, latent weights and steps) with its name and bits."""
    from .checkpoint import atomic_save
    from .models import canonical_name
    path = Path(path)
    atomic_save({"format": FORMAT, "version": VERSION, "model": canonical_name(name), "bits": model_bits(model),
                 "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                 "meta": dict(meta or {})}, path)
    return path


def is_qcheckpoint(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def load_qcheckpoint(path: str | os.PathLike, model: str | None = None,
                     bits: int | None = None) -> tuple[nn.Module, dict]:
    """(k-bit network in eval mode, meta); ``model`` and ``bits`` are checked when given."""
    from .models import build_model, canonical_name, load_state, read_state_dict
    path = Path(path)
    obj = read_state_dict(path)
    if not is_qcheckpoint(obj):
        raise DataError(f"{path} is not a cosim k-bit checkpoint (written by `cosim train --bits 2|4`)")
    if int(obj.get("version", -1)) != VERSION:
        raise DataError(f"{path} is a k-bit checkpoint of version {obj.get('version')}; this cosim reads {VERSION}")
    have, k = str(obj.get("model")), int(obj.get("bits", 0))
    if model is not None and canonical_name(model) != have:
        raise DataError(f"{path} is a {have} checkpoint, not {canonical_name(model)}")
    if bits is not None and int(bits) != k:
        raise DataError(f"{path} holds a {k}-bit network, not {bits}-bit")
    net = load_state(build_model(have, bits=k), obj["state"], f"{have} ({k}-bit)", str(path)).eval()
    meta = dict(obj.get("meta") or {})
    meta.update({"model": have, "bits": k, "checkpoint_kind": "qnn", "checkpoint_path": str(path)})
    return net, meta


def default_qcheckpoint(name: str, bits: int) -> Path:
    """Where `cosim train --bits k` puts k-bit networks by default: $COSIM_CACHE/checkpoints/."""
    from ..paths import cache_dir
    from .models import canonical_name
    return cache_dir() / "checkpoints" / f"{canonical_name(name).replace('-', '_')}_w{bits}a{bits}.ckpt"
