"""VGG-small and ResNet-18 (Bi-Real style) binary networks for CIFAR-10.

Architectures, parameter names and conventions are exactly those of the reference weights
(shared/models/README.md), so their state dicts load with ``strict=True``:

* VGG-small is a ``torch.nn.Sequential`` whose indices are the README's (0 float conv, 1 BN,
  2 BinConv, 3 MaxPool, 4 BN, ... 15 Flatten, 16 Linear).
* ResNet-18 has ``stem`` (conv, BN), ``blocks`` (16 ``BasicBlock`` with ``conv``, ``bn`` and, where
  the stride or width changes, ``down``) and ``fc``; ``forward`` = fc(mean_hw(blocks(stem(x)))).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import DataError, InputError
from ..paths import reference_models_dir
from .layers import BinConv2d

MODEL_NAMES = ("vgg-small", "resnet18")
#: file names of the reference state dicts in reference_models_dir()
REFERENCE_FILES = {"vgg-small": "vgg_small.pt", "resnet18": "resnet18.pt"}
#: keys of shared/models/summary.json
SUMMARY_KEYS = {"vgg-small": "vgg_small", "resnet18": "resnet18"}
NUM_CLASSES = 10


def vgg_small(num_classes: int = NUM_CLASSES) -> nn.Sequential:
    """VGG-small: indices as in the README (BinConv 3x3, stride 1, padding 1 with -1)."""
    return nn.Sequential(
        nn.Conv2d(3, 128, 3, padding=1, bias=False),  # 0
        nn.BatchNorm2d(128),                          # 1
        BinConv2d(128, 128),                          # 2
        nn.MaxPool2d(2),                              # 3
        nn.BatchNorm2d(128),                          # 4
        BinConv2d(128, 256),                          # 5
        nn.BatchNorm2d(256),                          # 6
        BinConv2d(256, 256),                          # 7
        nn.MaxPool2d(2),                              # 8
        nn.BatchNorm2d(256),                          # 9
        BinConv2d(256, 512),                          # 10
        nn.BatchNorm2d(512),                          # 11
        BinConv2d(512, 512),                          # 12
        nn.MaxPool2d(2),                              # 13
        nn.BatchNorm2d(512),                          # 14
        nn.Flatten(),                                 # 15
        nn.Linear(512 * 4 * 4, num_classes),          # 16
    )


class BasicBlock(nn.Module):
    """Bi-Real block: y = bn(binconv(x)) + shortcut(x); shortcut = x, or down(x) where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = BinConv2d(cin, cout, 3, stride=stride, padding=1)
        self.bn = nn.BatchNorm2d(cout)
        self.down: nn.Sequential | None = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.AvgPool2d(2) if stride != 1 else nn.Identity(),
                nn.Conv2d(cin, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
            )

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.down is None else self.down(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) + self.shortcut(x)


class ResNet18(nn.Module):
    STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))
    BLOCKS_PER_STAGE = 4

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64))
        blocks, cin = [], 64
        for cout, stride in self.STAGES:
            for k in range(self.BLOCKS_PER_STAGE):
                blocks.append(BasicBlock(cin, cout, stride if k == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(x.mean(dim=(2, 3)))


def build_model(name: str, bits: int = 1) -> nn.Module:
    """A freshly initialised ``vgg-small`` or ``resnet18``; ``bits`` 2 or 4: the same network with k-bit
    weights and activations in place of every binary convolution (cosim.bnn.quant)."""
    key = canonical_name(name)
    model = vgg_small() if key == "vgg-small" else ResNet18()
    if bits != 1:
        from .quant import quantize_model
        model = quantize_model(model, bits)
    return model


def canonical_name(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    key = {"vggsmall": "vgg-small", "resnet-18": "resnet18"}.get(key, key)
    if key not in MODEL_NAMES:
        raise InputError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return key


def load_state(model: nn.Module, state: dict, name: str, source: str) -> nn.Module:
    """``model.load_state_dict(state, strict=True)``; a mismatch becomes a one-line DataError."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{source} is not a state dict of tensors")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        guess = guess_model(state)
        hint = f" (it looks like {guess})" if guess and guess != name else ""
        detail = "; ".join(part for part in (
            f"missing {_few(missing)}" if missing else "",
            f"unexpected {_few(unexpected)}" if unexpected else "",
            f"wrong shape {_few(wrong)}" if wrong else "") if part)
        raise DataError(f"{source} does not match model {name}{hint}: {detail}")
    model.load_state_dict(state, strict=True)
    return model


def guess_model(state: dict) -> str | None:
    """Which of MODEL_NAMES a state dict fits exactly, if any."""
    for name in MODEL_NAMES:
        ref = build_model(name).state_dict()
        if set(ref) == set(state) and all(tuple(ref[k].shape) == tuple(state[k].shape) for k in ref):
            return name
    return None


def reference_path(name: str) -> Path:
    return reference_models_dir() / REFERENCE_FILES[canonical_name(name)]


def load_reference(name: str, path: str | Path | None = None) -> nn.Module:
    """The reference weights of ``name`` (from reference_models_dir(), or ``path``), in eval mode."""
    key = canonical_name(name)
    p = Path(path) if path is not None else reference_path(key)
    if not p.is_file():
        raise DataError(f"no reference weights for {key} at {p}; set COSIM_MODELS (or COSIM_SHARED) to the "
                        f"folder holding {REFERENCE_FILES[key]}")
    state = read_state_dict(p)
    return load_state(build_model(key), state, key, str(p)).eval()


def read_state_dict(path: str | Path) -> dict:
    """``torch.load(path, weights_only=True)``; unreadable or truncated files become a DataError."""
    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... on bad files
        msg = " ".join(str(e).split())[:160] or type(e).__name__
        raise DataError(f"cannot read checkpoint {path}: truncated or not a torch file ({msg})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, not a state dict or cosim checkpoint")
    return obj


def _few(keys: list[str], n: int = 3) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more
