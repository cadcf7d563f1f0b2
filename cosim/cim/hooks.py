"""Which layers of a torch network run on crossbars, and how: the binary-layer protocol.

Every binary layer that :func:`cosim.cim.convert` maps onto crossbars -- cosim's own
:class:`~cosim.bnn.layers.BinConv2d`, Brevitas 1-bit ``QuantConv2d``/``QuantLinear``, or a layer of your
own -- is described by one :class:`BinaryMapping`:

``weight_pm1``
    the layer's binary weight, values +-1: ``(C_out, C_in, kh, kw)`` for a convolution, ``(out, in)``
    for a fully connected layer (the crossbar stores its bits, +1 = a conducting cell);
``input_pm1(x)``
    the layer's input -> the +-1 tensor the crossbar rows see, with the same leading shape as the
    software layer's input (a convolution's input already *padded*: padding must be +-1 too, a zero
    is not a bit);
``stride``
    a convolution's stride (kernel size and channels come from ``weight_pm1``);
``output(dots, x)``
    the integer dot products ``sum_r input_pm1(x)[r] * weight_pm1[r]`` laid out as the software
    layer's output (``(B, C_out, Ho, Wo)`` or ``(B, out)``), and the layer's input ``x`` -> the layer's
    output (scales, bias); None: the dot products are the output.

In ``ideal`` mode the dot products are exact, so the converted network's output equals the software
network's bit for bit whenever ``output`` does exactly what the software layer does after its
binary product (for Brevitas: a product scale ``s_x * s_w`` that is a power of two, as FINN's
BNN-PYNQ networks use, scale 1).

The hook, for a layer cosim does not know, is either

* a method on the layer: ``def cim_mapping(self) -> BinaryMapping``, or
* a registration for a class you cannot edit: ``register_binary_layer(MyBinLinear, fn)`` with
  ``fn(layer, name) -> BinaryMapping`` (``fn=None``: the class is digital, leave it in software).

A layer with a weight whose class name says it is binary or quantized (``bin``, ``xnor``, ``sign``,
``quant`` in it) and that none of these recognises is an error naming the layer and this hook. Brevitas
layers whose weights are not 1-bit stay in software (listed in ``cim_info["software_layers"]``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..bnn.layers import BinConv2d
from ..errors import InputError

HOOK = "give it a cim_mapping() method or register_binary_layer(cls, fn) (cosim.cim.hooks)"


@dataclass
class BinaryMapping:
    """How one binary layer maps onto crossbars (see the module docstring)."""

    weight_pm1: torch.Tensor
    input_pm1: Callable[[torch.Tensor], torch.Tensor]
    stride: tuple[int, int] = (1, 1)
    output: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    #: optional, convolutions: ``input_bits(x, dtype)`` -> (B, H', W', C_in) contiguous in ``dtype``, the bits of
    #: ``input_pm1(x)`` (1 for +1, 0 for -1) channels-last, made from a dense input without the +-1 tensor
    input_bits: Callable[[torch.Tensor, torch.dtype], torch.Tensor] | None = None

    @property
    def kind(self) -> str:
        return "conv" if self.weight_pm1.dim() == 4 else "linear"

    def check(self, name: str) -> None:
        w = self.weight_pm1
        if not isinstance(w, torch.Tensor) or w.dim() not in (2, 4):
            shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise InputError(f"layer {name}: weight_pm1 must be a 2-D (out, in) or 4-D (C_out, C_in, kh, kw) "
                             f"tensor, got {shape}")
        if not bool(((w == 1) | (w == -1)).all()):
            raise InputError(f"layer {name}: weight_pm1 holds values other than +-1")
        if not callable(self.input_pm1) or (self.output is not None and not callable(self.output)):
            raise InputError(f"layer {name}: input_pm1 and output of its BinaryMapping must be callables")


_REGISTRY: dict[type, Callable[[nn.Module, str], BinaryMapping] | None] = {}


def register_binary_layer(cls: type, fn: Callable[[Any, str], BinaryMapping] | None) -> None:
    """Map every layer of class ``cls`` (and subclasses) with ``fn(layer, name) -> BinaryMapping``;
    ``fn=None`` declares the class digital (left in software, never an error)."""
    if not isinstance(cls, type):
        raise InputError(f"register_binary_layer expects a class, got {type(cls).__name__}")
    if fn is not None and not callable(fn):
        raise InputError(f"register_binary_layer expects a callable or None, got {type(fn).__name__}")
    _REGISTRY[cls] = fn


# ---------------------------------------------------------------- cosim's own binary convolution
class _BinConvAdapter:
    def __init__(self, conv: BinConv2d) -> None:
        self.conv = conv

    def input_pm1(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv.binary_input(x)

    def input_bits(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """binary_input(x) as bits, channels-last: sign(x) is +1 exactly where x >= 0; the -1 padding is 0."""
        p = self.conv.pad
        b, c, h, w = x.shape
        out = (torch.zeros if p else torch.empty)((b, h + 2 * p, w + 2 * p, c), dtype=dtype, device=x.device)
        out[:, p:p + h, p:p + w, :] = (x >= 0).permute(0, 2, 3, 1)
        return out


def _bin_conv(conv: BinConv2d, name: str) -> BinaryMapping:
    if conv.groups != 1 or tuple(conv.dilation) != (1, 1) or conv.bias is not None:
        raise InputError(f"layer {name}: only ungrouped, undilated convolutions without bias map onto crossbars")
    with torch.no_grad():
        w = conv.binary_weight().detach()
    adapter = _BinConvAdapter(conv)
    return BinaryMapping(w, adapter.input_pm1, tuple(conv.stride), input_bits=adapter.input_bits)  # type: ignore[arg-type]  # a pair


register_binary_layer(BinConv2d, _bin_conv)


# ---------------------------------------------------------------- Brevitas
def _is_brevitas(m: nn.Module) -> bool:
    return type(m).__module__.startswith("brevitas.") and type(m).__name__ in ("QuantConv2d", "QuantLinear")


def _value(x: Any) -> torch.Tensor:
    return x.value if hasattr(x, "value") and hasattr(x, "scale") and not isinstance(x, torch.Tensor) else x


def _bit_width(q: Any) -> float | None:
    try:
        return float(q.bit_width())
    except Exception:            # noqa: BLE001 - a proxy without a bit width (disabled quantizer)
        return None


class _BrevitasAdapter:
    """A Brevitas 1-bit layer: weight +-s_w (per tensor or per output channel), input +-s_x (its own
    binary input quantizer, or an input already binary: a QuantTensor or a tensor of one magnitude)."""

    def __init__(self, layer: Any, name: str, w_scale: torch.Tensor) -> None:
        self.layer, self.name = layer, name
        self.w_scale = w_scale
        self.own_quant = bool(getattr(layer.input_quant, "is_quant_enabled", False))

    def _quantized(self, x: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(input values +-s_x, s_x)"""
        if self.own_quant:
            q = self.layer.input_quant(x)
            return q.value, q.scale.detach().reshape(-1)[:1]
        if hasattr(x, "scale") and not isinstance(x, torch.Tensor):
            return x.value, x.scale.detach().reshape(-1)[:1]
        s = x.abs().amax() if x.numel() else x.new_ones(())
        if not bool((x.abs() == s).all()):
            raise InputError(f"layer {self.name}: its input is not binary (+-s); give the layer a 1-bit "
                             f"input_quant or put a 1-bit QuantIdentity before it, or {HOOK}")
        return x, s.reshape(1)

    def input_pm1(self, x: Any) -> torch.Tensor:
        v, _ = self._quantized(x)
        return torch.where(v >= 0, 1.0, -1.0).to(torch.float32)

    def output(self, dots: torch.Tensor, x: Any) -> torch.Tensor:
        _, s_x = self._quantized(x)
        shape = (1, -1) + (1,) * (dots.dim() - 2)
        scale = s_x.to(dots.dtype) * self.w_scale.to(dots.dtype).reshape(shape if self.w_scale.numel() > 1 else (1,))
        y = dots * scale
        bias = self.layer.bias
        if bias is not None:
            y = y + bias.detach().to(dots.dtype).reshape(shape)
        return y


def _brevitas(layer: Any, name: str) -> BinaryMapping | None:
    """The mapping of a Brevitas QuantConv2d/QuantLinear with 1-bit weights; None for other bit widths
    (left in software)."""
    if not getattr(layer.weight_quant, "is_quant_enabled", False) or _bit_width(layer.weight_quant) != 1.0:
        return None
    cls = type(layer).__name__
    if getattr(layer.input_quant, "is_quant_enabled", False) and _bit_width(layer.input_quant) != 1.0:
        raise InputError(f"layer {name}: a {cls} with 1-bit weights and a {_bit_width(layer.input_quant):g}-bit "
                         f"input quantizer is not a binary layer; give it a 1-bit input_quant, or {HOOK}")
    if getattr(layer, "bias_quant", None) is not None and getattr(layer.bias_quant, "is_quant_enabled", False):
        raise InputError(f"layer {name}: a {cls} with a quantized bias is not supported; use a float bias, or {HOOK}")
    stride = (1, 1)
    if cls == "QuantConv2d":
        if layer.groups != 1 or tuple(layer.dilation) != (1, 1):
            raise InputError(f"layer {name}: only ungrouped, undilated convolutions map onto crossbars")
        pad = layer.padding
        if isinstance(pad, str) or any(int(p) for p in pad):
            raise InputError(f"layer {name}: {cls} padding feeds zeros (not +-1) into a binary layer; use "
                             f"padding=0 (as FINN's CNV does), or pad with -1 through the hook: {HOOK}")
        stride = tuple(int(s) for s in layer.stride)
    with torch.no_grad():
        qw = layer.quant_weight()
        w = _value(qw).detach()
        w_pm1 = torch.where(w >= 0, 1.0, -1.0)
        w_scale = qw.scale.detach().reshape(-1).float()
    if w_scale.numel() not in (1, w.shape[0]):
        raise InputError(f"layer {name}: weight scale of {w_scale.numel()} values is neither per tensor nor "
                         f"per output channel; {HOOK}")
    ad = _BrevitasAdapter(layer, name, w_scale)
    return BinaryMapping(w_pm1, ad.input_pm1, stride, ad.output)  # type: ignore[arg-type]  # a Conv2d stride: a pair


# ---------------------------------------------------------------- finding the layers
_CANDIDATE = re.compile(r"bin|xnor|sign|quant", re.IGNORECASE)


def _registered(m: nn.Module):
    for cls in type(m).__mro__:
        if cls in _REGISTRY:
            return True, _REGISTRY[cls]
    return False, None


def binary_mappings(model: nn.Module, skip: tuple[type, ...] = ()) -> tuple[list[tuple[str, BinaryMapping]], list[str]]:
    """(name, mapping) of every binary layer of ``model`` in forward order, and the names of the
    quantized layers left in software; ``skip``: classes handled elsewhere (cosim's k-bit layers).

    Raises InputError for a layer that looks binary or quantized (see the module docstring) and that
    nothing recognises, naming it and the hook."""
    found: list[tuple[str, BinaryMapping]] = []
    software: list[str] = []
    inside: list[str] = []                     # a mapped layer's submodules (Brevitas quantizers) are its own
    for name, m in model.named_modules():
        if any(name.startswith(p + ".") for p in inside) or isinstance(m, skip):
            continue
        hook = getattr(m, "cim_mapping", None)
        known, fn = _registered(m)
        if callable(hook):
            mapping = hook()
        elif known:
            mapping = fn(m, name) if fn is not None else None
        elif _is_brevitas(m):
            mapping = _brevitas(m, name)
        elif type(m).__module__.startswith("brevitas."):
            # other Brevitas modules (activations, quantized batch norms, ...) are digital, unless they
            # hold 1-bit weights cosim cannot map (a QuantConv1d, a transposed convolution)
            wq = getattr(m, "weight_quant", None)
            if wq is not None and getattr(wq, "is_quant_enabled", False) and _bit_width(wq) == 1.0:
                raise InputError(f"layer {name} ({type(m).__name__}) has 1-bit weights but is not a layer cosim "
                                 f"maps (QuantConv2d, QuantLinear): {HOOK}")
            inside.append(name)
            continue
        elif isinstance(getattr(m, "weight", None), torch.Tensor) and _CANDIDATE.search(type(m).__name__):
            raise InputError(f"layer {name} ({type(m).__name__}) is not a binary layer cosim recognises: {HOOK}")
        else:
            continue
        if mapping is None:
            if not (known and fn is None):
                software.append(name)
            inside.append(name)
            continue
        if not isinstance(mapping, BinaryMapping):
            raise InputError(f"layer {name}: its hook returned {type(mapping).__name__}, not a BinaryMapping")
        mapping.check(name or type(m).__name__)
        found.append((name, mapping))
        inside.append(name)
    return found, software


def binarize_like_software(x: torch.Tensor) -> torch.Tensor:
    """sign(x) as cosim and Brevitas binarise: +1 where x >= 0, -1 elsewhere (float32)."""
    return torch.where(x >= 0, 1.0, -1.0).to(torch.float32)


def pad_pm1(x_pm1: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad a +-1 feature map with -1 (the padding a crossbar can hold: a row that is off)."""
    return F.pad(x_pm1, (pad,) * 4, value=-1.0) if pad else x_pm1
