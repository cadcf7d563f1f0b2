"""Compact checkpoints: binary weights as packed sign bits, everything else float.

File layout (a ``torch.save`` dict, readable with ``torch.load(..., weights_only=True)``)::

    {"format": "cosim-bnn-checkpoint", "version": 1, "model": "vgg-small" | "resnet18",
     "binary": {name: {"bits": uint8 tensor (numpy.packbits of w >= 0, big bit order), "shape": [...]}},
     "float":  {name: tensor},          # first conv, BNs (with running stats), shortcuts, classifier
     "meta":   {...}}                    # recipe, accuracy, provenance

A binary weight unpacks to int8 +-1, which is all a ``BinConv2d`` uses (it takes the sign), so a
round trip gives identical outputs. VGG-small's binary weights take 0.55 MB instead of 4.4 MB as int8.
``load_checkpoint`` also reads plain state dicts (the reference ``.pt`` files).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import DataError
from ..fileio import atomic_path
from .layers import binary_layers
from .models import MODEL_NAMES, build_model, canonical_name, guess_model, load_state, read_state_dict

FORMAT = "cosim-bnn-checkpoint"
VERSION = 1


def binary_weight_names(model: nn.Module) -> list[str]:
    return [f"{n}.weight" for n, _ in binary_layers(model)]


def model_name(model: nn.Module) -> str:
    name = guess_model(model.state_dict())
    if name is None:
        raise DataError("model is neither of " + ", ".join(MODEL_NAMES) + "; cannot name its checkpoint")
    return name


def pack_signs(w: torch.Tensor) -> dict:
    bits = np.packbits((w.detach().cpu() >= 0).numpy().reshape(-1))
    return {"bits": torch.from_numpy(bits), "shape": list(w.shape)}


def unpack_signs(entry: dict) -> torch.Tensor:
    shape = [int(s) for s in entry["shape"]]
    n = int(np.prod(shape))
    bits = np.unpackbits(entry["bits"].numpy().astype(np.uint8), count=n)
    return torch.from_numpy(bits.astype(np.int8) * 2 - 1).view(shape)


def compact_state(model: nn.Module, name: str | None = None, meta: dict | None = None) -> dict:
    name = canonical_name(name) if name else model_name(model)
    binary = set(binary_weight_names(model))
    state = model.state_dict()
    return {
        "format": FORMAT, "version": VERSION, "model": name,
        "binary": {k: pack_signs(v) for k, v in state.items() if k in binary},
        "float": {k: v.detach().cpu().clone() for k, v in state.items() if k not in binary},
        "meta": dict(meta or {}),
    }


def save_checkpoint(model: nn.Module, path: str | os.PathLike, meta: dict | None = None,
                    name: str | None = None) -> Path:
    """Write the compact checkpoint of ``model`` to ``path`` atomically; returns the path."""
    path = Path(path)
    atomic_save(compact_state(model, name, meta), path)
    return path


def atomic_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def is_compact(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def state_from_compact(obj: dict, source: str) -> dict:
    if int(obj.get("version", -1)) != VERSION:
        raise DataError(f"{source} is a cosim checkpoint of version {obj.get('version')}; this cosim reads {VERSION}")
    try:
        state = {k: unpack_signs(v) for k, v in obj["binary"].items()}
        state.update(obj["float"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise DataError(f"{source} is a damaged cosim checkpoint ({' '.join(str(e).split())[:120]})") from None
    return state


def load_checkpoint(path: str | os.PathLike, model: str | None = None) -> tuple[nn.Module, dict]:
    """(model in eval mode, meta) from a compact cosim checkpoint or a plain state dict.

    ``model`` (a name) is checked against the checkpoint: a checkpoint of another network, or a
    state dict that fits neither, is a one-line DataError.
    """
    path = Path(path)
    want = canonical_name(model) if model is not None else None
    obj = read_state_dict(path)
    if is_compact(obj):
        have = str(obj.get("model"))
        if have not in MODEL_NAMES:
            raise DataError(f"{path} is a checkpoint of an unknown model {have!r}")
        if want is not None and want != have:
            raise DataError(f"{path} is a {have} checkpoint, not {want}")
        state = state_from_compact(obj, str(path))
        meta = dict(obj.get("meta") or {})
        kind = "compact"
    else:
        if "model_state" in obj and isinstance(obj["model_state"], dict):  # a training state file
            obj = obj["model_state"]
        have = want or guess_model(obj)
        if have is None:
            raise DataError(f"{path} matches neither {' nor '.join(MODEL_NAMES)}; pass the model it belongs to")
        state, meta, kind = obj, {}, "state_dict"
    net = load_state(build_model(have), state, have, str(path)).eval()
    meta.setdefault("model", have)
    meta["checkpoint_kind"] = kind
    meta["checkpoint_path"] = str(path)
    return net, meta


#: checkpoints shipped with the package (trained by cosim itself), by model name
PACKAGED_FILES = {"vgg-small": "vgg_small.ckpt", "resnet18": "resnet18.ckpt"}


def packaged_checkpoint(name: str) -> Path:
    from ..paths import resources_dir

    return resources_dir() / "checkpoints" / PACKAGED_FILES[canonical_name(name)]


def load_default(name: str) -> tuple[nn.Module, dict]:
    """The best weights at hand for ``name``: cosim's own packaged checkpoint where one is committed
    (``cosim/resources/checkpoints/``), else the reference weights (``load_reference``)."""
    from .models import load_reference, reference_path

    path = packaged_checkpoint(name)
    if path.is_file():
        return load_checkpoint(path, model=name)
    key = canonical_name(name)
    return load_reference(key), {"model": key, "checkpoint_kind": "reference", "checkpoint_path": str(reference_path(key))}
