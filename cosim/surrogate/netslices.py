"""Crossbar operands of a trained binary network: the ``network`` pattern family of ``cosim validate``.

A :class:`NetworkSource` is a binary network and a few test images. Run once over the images, every
selected binary convolution yields what its arrays would see at ``R`` rows (``cosim.cim.mapping``):
its binarized, -1-padded input unrolled by im2col into vectors cut into ``R``-row slices, and its
+-1 weight matrix cut into ``R``-row column slices, both as bits (+1 -> 1). BinSparX's flips
(``cosim.cim.binsparx``: per column slice of the weights, per input sub-vector) are applied to a copy,
so a validation covers the operands inference applies with and without BinSparX.

:meth:`NetworkSource.sample` picks one SPICE run's operands, deterministically from ``(seed, run)``:
run ``r`` takes layer ``r mod L`` (L selected layers) and applies BinSparX when ``r mod L + r div L`` is odd,
so any 2L consecutive runs cover every (layer, with / without BinSparX) pair; within the layer it
draws one row tile, ``vectors`` output positions (input vectors of that tile) and ``cols`` output
channels (weight columns). The last row tile of a layer may hold fewer than R real rows: its unused
rows are off, as on the chip. What was drawn is returned with the operands (and lands in the report).

:class:`CalibrationOperands` hands such runs to a calibration sweep (``cosim calibrate
--network-operands``): its network points take the networks in turn, each its runs in order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import DataError, InputError
from ..provenance import sha256_file

#: test images run through the network by default (the first N of the test split)
DEFAULT_IMAGES = 4
DEFAULT_NETWORK = "vgg-small"
#: test images the calibration's network operands come from by default: 16 give the deepest layers (4 x 4
#: outputs) 256 input vectors to draw from. They are drawn (``calibration_images``, fixed seed) from test
#: images CALIBRATION_FIRST_IMAGE on, so they are none of the first 1,000 that validation's network
#: patterns (the first 4) and the network-level error budget (the first 500 or more) evaluate
CALIBRATION_IMAGES = 16
CALIBRATION_FIRST_IMAGE = 1000
CALIBRATION_IMAGE_SEED = 16




@dataclass
class LayerOperands:
    """One binary layer at ``R`` rows: input bits (M, T_r*R) and weight tiles (T_r, R, C_padded), uint8,
    plain and with BinSparX's flips, and the flip masks."""

    name: str
    n: int                      #: rows of the unrolled layer (k*k*C_in)
    cout: int
    rows: int
    positions_per_image: int
    x: np.ndarray
    w: np.ndarray
    x_bsx: np.ndarray
    w_bsx: np.ndarray
    x_flip: np.ndarray          #: (M, T_r) bool
    w_flip: np.ndarray          #: (T_r, C_padded) bool

    @property
    def row_tiles(self) -> int:
        return self.w.shape[0]

    @property
    def vectors(self) -> int:
        return self.x.shape[0]


@dataclass
class NetworkSource:
    """A binary network (``model``, eval mode), test images (uint8 N,32,32,3) and the binary layers
    to sample (names as ``cosim.bnn.layers.binary_layers`` gives them; None: all)."""

    model: Any
    images: np.ndarray
    name: str = "network"
    layers: Sequence[str] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    _ops: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        from ..bnn.layers import binary_layers

        names = [n for n, _ in binary_layers(self.model)]
        if not names:
            raise InputError(f"{self.name} has no binary convolution to take network patterns from")
        if self.layers is None:
            self.layers = names
        else:
            self.layers = [str(n).strip() for n in self.layers if str(n).strip()]
            bad = [n for n in self.layers if n not in names]
            if bad or not self.layers:
                raise InputError(f"unknown binary layer(s) {', '.join(bad) or '(none given)'} of {self.name}: "
                                 f"expected some of {', '.join(names)}")
        imgs = np.asarray(self.images)
        if imgs.ndim != 4 or imgs.shape[1:] != (32, 32, 3) or imgs.dtype != np.uint8 or len(imgs) < 1:
            raise InputError(f"network patterns need uint8 images of shape N,32,32,3 (N >= 1), got "
                             f"{imgs.dtype} {imgs.shape}")
        self.images = imgs
        self.provenance = {"network": self.name, "layers": list(self.layers), "images": int(len(imgs)),
                           "images_sha256": hashlib.sha256(np.ascontiguousarray(imgs).tobytes()).hexdigest(),
                           **self.provenance}

    def describe(self) -> dict[str, Any]:
        """What the network patterns come from (JSON-ready; goes into the validation report)."""
        return dict(self.provenance)

    # -------------------------------------------------------------------------------------- operands
    def operands(self, rows: int) -> dict[str, LayerOperands]:
        """Every selected layer's operands at ``rows`` rows (one forward pass, kept)."""
        if rows not in self._ops:
            self._ops[rows] = self._compute(rows)
        return self._ops[rows]

    def _compute(self, rows: int) -> dict[str, LayerOperands]:
        import torch

        from ..bnn.layers import binary_layers
        from ..cim.binsparx import flip_inputs, flip_weights
        from ..cim.mapping import TileMap, conv_weight_matrix, im2col_bits, weight_tiles
        from ..bnn.datasets import to_tensor

        assert self.layers is not None  # __post_init__ resolves None
        wanted = dict((n, m) for n, m in binary_layers(self.model) if n in self.layers)
        captured: dict[str, Any] = {}

        def hook(name):
            def pre(module, inputs):
                captured[name] = module.binary_input(inputs[0]).detach()
            return pre

        handles = [m.register_forward_pre_hook(hook(n)) for n, m in wanted.items()]
        try:
            with torch.no_grad():
                self.model.eval()
                self.model(to_tensor(self.images))
        finally:
            for h in handles:
                h.remove()
        out = {}
        for name in self.layers:
            m = wanted[name]
            if name not in captured:
                raise InputError(f"binary layer {name} of {self.name} did not run on the images")
            wm = conv_weight_matrix(m.binary_weight().detach().float())
            tiles = TileMap(int(wm.shape[0]), int(wm.shape[1]), int(rows), int(wm.shape[1]))
            dtype = torch.float32                      # exact 0/1 at any row count
            buf, (ho, wo) = im2col_bits(captured[name], tuple(m.kernel_size), tuple(m.stride), tiles, dtype=dtype)  # type: ignore[arg-type]  # pairs
            wt = weight_tiles(wm, tiles, dtype=dtype)
            wf, w_flip = flip_weights(wt, tiles)
            xf, x_flip = flip_inputs(buf, tiles)
            u8 = lambda t: t.to(torch.uint8).numpy()  # noqa: E731
            out[name] = LayerOperands(name=name, n=tiles.n, cout=tiles.cout, rows=int(rows),
                                      positions_per_image=ho * wo, x=u8(buf), w=u8(wt), x_bsx=u8(xf), w_bsx=u8(wf),
                                      x_flip=x_flip.numpy(), w_flip=w_flip.numpy())
        return out

    # -------------------------------------------------------------------------------------- sampling
    def sample(self, rows: int, run: int, seed: int, vectors: int, cols: int
               ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Inputs (vectors, rows), weights (rows, cols) as 0/1 uint8, and what was drawn, for SPICE run
        ``run`` (see the module docstring)."""
        if vectors < 1 or cols < 1 or run < 0:
            raise InputError("vectors and cols must be positive and run non-negative")
        ops = self.operands(rows)
        assert self.layers is not None  # __post_init__ resolves None
        L = len(self.layers)
        layer = ops[self.layers[run % L]]
        bsx = (run % L + run // L) % 2 == 1
        rng = np.random.default_rng([int(seed), 7777, 3, int(run)])
        t = int(rng.integers(layer.row_tiles))
        pos = rng.choice(layer.vectors, size=vectors, replace=layer.vectors < vectors)
        col = rng.choice(layer.cout, size=cols, replace=layer.cout < cols)
        xs, ws = (layer.x_bsx, layer.w_bsx) if bsx else (layer.x, layer.w)
        x = np.ascontiguousarray(xs[pos, t * rows:(t + 1) * rows])
        w = np.ascontiguousarray(ws[t][:, col])
        info = {"layer": layer.name, "binsparx": bsx, "row_tile": t, "row_tiles": layer.row_tiles,
                "real_rows": int(min(rows, layer.n - t * rows)), "layer_rows": layer.n, "layer_cols": layer.cout,
                "images": sorted({int(p) // layer.positions_per_image for p in pos}),
                "positions": [int(p) for p in pos], "columns": [int(c) for c in col],
                "flipped_vectors": int(layer.x_flip[pos, t].sum()) if bsx else 0,
                "flipped_columns": int(layer.w_flip[t, col].sum()) if bsx else 0}
        return x, w, info


def load_network(network: str = DEFAULT_NETWORK, checkpoint: str | Path | None = None, images: int = DEFAULT_IMAGES,
                 data: str | Path | None = None, layers: Sequence[str] | None = None,
                 pick: Callable[[int, int], list[int]] | None = None) -> NetworkSource:
    """``network``'s weights (``checkpoint``: a cosim checkpoint or state dict; default: the reference
    weights in ``cosim.paths.reference_models_dir()``) and the first ``images`` CIFAR-10 test images
    (``data``: see ``cosim.bnn.datasets.resolve_data_path``), or the ``images`` test images that
    ``pick(images, available)`` names."""
    from ..bnn.checkpoint import load_checkpoint
    from ..bnn.models import canonical_name, reference_path
    from ..bnn.datasets import load_cifar10, resolve_data_path

    name = canonical_name(network)
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise InputError(f"images must be a positive integer, got {images!r}")
    path = Path(checkpoint).expanduser() if checkpoint else reference_path(name)
    if not path.is_file():
        raise DataError(f"no weights for {name} at {path}; set COSIM_MODELS (or COSIM_SHARED) or pass a checkpoint")
    model, meta = load_checkpoint(path, model=name)
    src = resolve_data_path(data)
    imgs, _ = load_cifar10(src, split="test")
    if images > len(imgs):
        raise InputError(f"asked for {images} test images, {src} has {len(imgs)}")
    idx = list(range(images)) if pick is None else [int(i) for i in pick(images, len(imgs))]
    prov = {"checkpoint": str(path), "checkpoint_sha256": sha256_file(path),
            "checkpoint_kind": meta.get("checkpoint_kind"), "data": str(src), "split": "test",
            "image_indices": f"0..{images - 1}" if pick is None else idx}
    return NetworkSource(model, imgs[idx], name=name, layers=layers, provenance=prov)


@dataclass
class CalibrationOperands:
    """Network operands for a calibration sweep (``cosim.sweep.calibration.OperandSource``): network point
    ``n`` is run ``n // len(sources)`` of network ``n % len(sources)`` (``NetworkSource.sample``: its
    layers in turn, with and without BinSparX), its columns' family ``network:<name>`` or
    ``network:<name>+binsparx``."""

    sources: Sequence[NetworkSource]

    def __post_init__(self) -> None:
        if not self.sources:
            raise InputError("network operands need at least one network")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise InputError(f"network operands name a network twice: {', '.join(names)}")

    def describe(self) -> dict[str, Any]:
        """What the operands come from, without this machine's paths (it keys the sweep and goes into the
        table's provenance): per network its layers, the checkpoint's file name and SHA-256, the test
        images' indices and the SHA-256 of their pixels."""
        out = []
        for s in self.sources:
            d = s.describe()
            out.append({"network": d["network"], "layers": list(d["layers"]), "images": d["images"],
                        "image_indices": d.get("image_indices"), "split": d.get("split"),
                        "images_sha256": d["images_sha256"],
                        "checkpoint": Path(str(d.get("checkpoint", ""))).name or None,
                        "checkpoint_sha256": d.get("checkpoint_sha256")})
        return {"networks": out, "every": "third point from index 1 (1, 4, 7, ...); the networks in turn",
                "binsparx": "every layer with and without BinSparX's flips (cosim.cim.binsparx)"}

    def point(self, number: int, rows: int, cols: int, vectors: int, seed: int
              ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        src = self.sources[number % len(self.sources)]
        x, w, info = src.sample(rows, number // len(self.sources), seed, vectors, cols)
        fam = f"network:{src.name}" + ("+binsparx" if info["binsparx"] else "")
        return x, w, [fam] * cols


def calibration_images(images: int, available: int) -> list[int]:
    """The test images (indices, sorted) of the calibration's network operands: ``images`` drawn without
    replacement by ``numpy.random.default_rng(CALIBRATION_IMAGE_SEED)`` from CALIBRATION_FIRST_IMAGE ..
    available - 1 (from all of them where the split holds fewer than CALIBRATION_FIRST_IMAGE + images)."""
    first = CALIBRATION_FIRST_IMAGE if available >= CALIBRATION_FIRST_IMAGE + images else 0
    rng = np.random.default_rng(CALIBRATION_IMAGE_SEED)
    return sorted(int(i) for i in first + rng.choice(available - first, size=images, replace=False))


def calibration_operands(networks: Sequence[str], images: int = CALIBRATION_IMAGES,
                         data: str | Path | None = None) -> CalibrationOperands:
    """The reference weights of ``networks`` (``$COSIM_MODELS``) on ``images`` CIFAR-10 test images
    (``calibration_images``; ``data``, default ``$COSIM_DATA``), every binary layer, as calibration operands."""
    from ..bnn.models import canonical_name

    names = list(dict.fromkeys(canonical_name(n) for n in networks))
    return CalibrationOperands([load_network(n, images=images, data=data, pick=calibration_images) for n in names])


__all__ = ["NetworkSource", "LayerOperands", "CalibrationOperands", "load_network", "calibration_operands",
           "calibration_images", "DEFAULT_IMAGES", "DEFAULT_NETWORK", "CALIBRATION_IMAGES"]
