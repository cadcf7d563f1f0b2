"""Training of the binary networks on CIFAR-10 (CPU or CUDA; bf16 autocast on CUDA).

Recipe (the reference weights' one, shared/models/summary.json): Adam, learning rate ``lr`` with a
per-step cosine decay to 0 over all epochs, batch 256, random crop (reflect padding 4) and
horizontal flip, no weight decay, seed 0. Latent weights stay real-valued; binary layers use their
sign with a straight-through estimator (cosim.bnn.layers).

Checkpoints, written after every epoch (and when interrupted):

* ``OUT``        the compact checkpoint (cosim.bnn.checkpoint) of the network so far, with its recipe,
                 epochs done, last test accuracy, time and provenance in ``meta``;
* ``OUT.state``  the training state: latent float weights, optimizer, epoch and step, settings.

A run whose ``OUT.state`` exists continues from it (``resume="auto"``); ``resume="never"`` starts over,
``resume="require"`` fails without one. Shuffling and augmentation are drawn from generators seeded by
(seed, epoch, batch), so a resumed run follows the same sequence as an uninterrupted one. Passing a
larger ``epochs`` to a finished run extends it (the cosine schedule is recomputed over the new total).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .datasets import normalise
from ..errors import DataError, InputError
from ..provenance import record
from .checkpoint import atomic_save, save_checkpoint
from .evaluate import evaluate
from .models import build_model, canonical_name, load_state, read_state_dict

STATE_SUFFIX = ".state"
STATE_FORMAT = "cosim-bnn-train-state"
#: settings that must agree for a run to continue from a training state
RESUME_KEYS = ("model", "batch_size", "lr", "weight_decay", "seed", "limit", "augment", "bits", "init")


@dataclass
class TrainConfig:
    model: str = "vgg-small"
    epochs: int = 80
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"           # "auto": cuda when available, else cpu
    limit: int | None = None       # use the first `limit` training images (class-balanced prefix)
    test_limit: int | None = None  # evaluate on the first `test_limit` test images
    eval_every: int = 1            # evaluate every N epochs (0: only at the end)
    augment: bool = True
    amp: bool | None = None        # bf16 autocast; None: on for CUDA, off on CPU
    eval_batch_size: int = 500
    bits: int = 1                  # 1: the BNN; 2 or 4: k-bit weights and activations (cosim.bnn.quant)
    init: str | None = None        # k-bit: initialise from this BNN checkpoint ("reference": the reference weights)

    def __post_init__(self) -> None:
        self.model = canonical_name(self.model)
        for key in ("epochs", "batch_size"):
            if int(getattr(self, key)) < 1:
                raise InputError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise InputError(f"learning rate must be > 0, got {self.lr}")
        if self.limit is not None and int(self.limit) < 1:
            raise InputError(f"limit must be >= 1, got {self.limit}")
        from .quant import check_bits
        self.bits = check_bits(self.bits)
        if self.init is not None and self.bits == 1:
            raise InputError("init (from a BNN) is for k-bit networks (bits 2 or 4)")

    def recipe(self) -> str:
        aug = "random crop (reflect pad 4) + flip" if self.augment else "no augmentation"
        prec = "" if self.bits == 1 else f"{self.bits}-bit weights and activations (LSQ), init {self.init or 'random'}, "
        return (prec + f"Adam lr {self.lr:g} cosine to 0 per step, weight decay {self.weight_decay:g}, batch "
                f"{self.batch_size}, {aug}, {'bf16 autocast' if self.amp else 'float32'}, seed {self.seed}")


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device} asked for, but no CUDA device is available")
    return dev


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with reflect padding ``pad`` and random horizontal flip; x float N,C,H,W."""
    n, _, h, w = x.shape
    xp = F.pad(x, (pad,) * 4, mode="reflect")
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    ar_h = torch.arange(h, device=x.device)
    ar_w = torch.arange(w, device=x.device)
    rows = (oy[:, None] + ar_h[None, :])                                    # n,h
    cols = ox[:, None] + torch.where(flip[:, None], w - 1 - ar_w[None, :], ar_w[None, :])  # n,w
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]  # n,h,w,c
    return out.permute(0, 3, 1, 2).contiguous()


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               amp: bool = False) -> float:
    """One optimisation step on a normalised batch; the batch loss before the step."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=bool(amp)):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def cosine_lr(lr: float, step: int, total_steps: int) -> float:
    return 0.5 * lr * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))


def state_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + STATE_SUFFIX)


def _generator(seed: int, *keys: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0]))
    return g


@dataclass
class TrainResult:
    out: Path
    epochs_done: int
    test: dict | None
    history: list = field(default_factory=list)
    train_s: float = 0.0
    resumed_from: int = 0


def train(cfg: TrainConfig, train_images: np.ndarray, train_labels: np.ndarray,
          test_images: np.ndarray | None, test_labels: np.ndarray | None, out: str | Path,
          resume: str = "auto", progress: bool = True, log: Callable[[str], None] = print,
          data_source: str = "") -> TrainResult:
    """Train ``cfg.model``; writes ``out`` (compact) and ``out.state`` after every epoch."""
    if resume not in ("auto", "never", "require"):
        raise InputError(f"resume must be auto, never or require, got {resume!r}")
    out = Path(out)
    device = pick_device(cfg.device)
    if cfg.amp is None:
        cfg.amp = device.type == "cuda"
    n_all = len(train_labels)
    if len(train_images) != n_all or n_all == 0:
        raise DataError(f"{len(train_images)} training images and {n_all} labels")
    n = n_all if cfg.limit is None else min(int(cfg.limit), n_all)
    x_train = torch.as_tensor(np.ascontiguousarray(train_images[:n])).permute(0, 3, 1, 2).contiguous().to(device)
    y_train = torch.as_tensor(np.asarray(train_labels[:n], dtype=np.int64)).to(device)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, bits=cfg.bits).to(device)
    if cfg.init is not None:
        from .quant import init_from_binary
        init_from_binary(model, _load_bnn(cfg.model, cfg.init))
    optimizer = make_optimizer(model, cfg)
    start_epoch, start_batch, history, train_s = 0, 0, [], 0.0
    spath = state_path(out)
    if resume == "require" and not spath.is_file():
        raise DataError(f"no training state {spath} to resume from")
    if resume != "never" and spath.is_file():
        st = read_state_dict(spath)
        if st.get("format") != STATE_FORMAT:
            raise DataError(f"{spath} is not a cosim training state")
        old = st["config"]
        diff = [k for k in RESUME_KEYS if old.get(k, {"bits": 1}.get(k)) != asdict(cfg).get(k)]  # older states: 1 bit
        if diff:
            k = diff[0]
            raise DataError(f"training state {spath} was made with {k}={old.get(k)!r}, not {asdict(cfg).get(k)!r}; "
                            f"use the same settings, another --out, or --fresh to start over")
        load_state(model, st["model_state"], cfg.model, str(spath))
        try:
            optimizer.load_state_dict(st["optimizer"])
        except (ValueError, KeyError) as e:
            raise DataError(f"training state {spath} has a damaged optimizer state ({e})") from None
        start_epoch, start_batch = int(st["epoch"]), int(st["batch"])
        history, train_s = list(st.get("history", [])), float(st.get("train_s", 0.0))
        if start_epoch >= cfg.epochs:
            log(f"{out}: {start_epoch} epochs already done (asked for {cfg.epochs}); nothing to train")
            return TrainResult(out, start_epoch, history[-1].get("test") if history else None, history,
                               train_s, start_epoch)
        log(f"resuming {cfg.model} from {spath}: epoch {start_epoch + 1}, batch {start_batch + 1}")
    resumed_from = start_epoch

    def save(epoch: int, batch: int, test: dict | None) -> None:
        config = asdict(cfg)
        atomic_save({"format": STATE_FORMAT, "config": config, "epoch": epoch, "batch": batch,
                     "model_state": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "history": history, "train_s": train_s}, spath)
        meta = {"model": cfg.model, "epochs": epoch, "epochs_planned": cfg.epochs, "recipe": cfg.recipe(),
                "config": config, "train_images": n, "train_s": round(train_s, 1), "device": _device_name(device),
                "data": data_source,
                "test_acc": None if test is None else test["accuracy"], "test_n": None if test is None else test["n"],
                "provenance": record(seed=cfg.seed, technology=None, array_size=None, ngspice_version=None,
                                     solver=None)}
        if cfg.bits == 1:
            save_checkpoint(model, out, meta=meta, name=cfg.model)
        else:
            from .quant import save_qcheckpoint
            save_qcheckpoint(model, out, cfg.model, meta=meta)

    test = history[-1].get("test") if history else None
    epoch, next_batch, t_epoch = start_epoch, start_batch, time.perf_counter()
    try:
        for epoch in range(start_epoch, cfg.epochs):
            t_epoch = time.perf_counter()
            perm = torch.randperm(n, generator=_generator(cfg.seed, 1, epoch)).to(device)
            first = start_batch if epoch == start_epoch else 0
            next_batch = first
            batches = range(first, steps_per_epoch)
            bar = None
            if progress:
                from tqdm import tqdm
                bar = tqdm(batches, desc=f"{cfg.model} epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                           leave=False, dynamic_ncols=True)
            losses = []
            for batch in (bar if bar is not None else batches):
                step = epoch * steps_per_epoch + batch
                for group in optimizer.param_groups:
                    group["lr"] = cosine_lr(cfg.lr, step, total_steps)
                idx = perm[batch * cfg.batch_size:(batch + 1) * cfg.batch_size]
                x = normalise(x_train[idx])
                if cfg.augment:
                    x = augment(x, _generator(cfg.seed, 2, epoch, batch))
                losses.append(train_step(model, optimizer, x, y_train[idx], amp=cfg.amp))
                next_batch = batch + 1
                if bar is not None:
                    bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if bar is not None:
                bar.close()
            train_s += time.perf_counter() - t_epoch
            t_epoch = time.perf_counter()
            done = epoch + 1
            test = None
            last = done == cfg.epochs
            if test_images is not None and (last or (cfg.eval_every and done % cfg.eval_every == 0)):
                test = evaluate(model, test_images, test_labels, batch_size=cfg.eval_batch_size,
                                limit=cfg.test_limit, device=device)
            entry = {"epoch": done, "loss": float(np.mean(losses)) if losses else None,
                     "train_s": round(train_s, 2), "test": test}
            history.append(entry)
            acc = "" if test is None else f" test {test['accuracy']:.4f} (n={test['n']})"
            loss = "" if entry["loss"] is None else f" loss {entry['loss']:.4f}"
            log(f"{cfg.model}: epoch {done}/{cfg.epochs}{loss}{acc} t={train_s:.1f}s")
            save(done, 0, test)
    except KeyboardInterrupt:
        # keep the finished batches of this epoch: the next run continues after them
        train_s += time.perf_counter() - t_epoch
        save(epoch, next_batch, test)
        log(f"interrupted: training state saved to {spath} (continues at epoch {epoch + 1}, batch {next_batch + 1})")
        raise
    return TrainResult(out, cfg.epochs, test, history, train_s, resumed_from)


def _load_bnn(name: str, init: str) -> nn.Module:
    from .checkpoint import load_checkpoint
    from .models import load_reference
    return load_reference(name) if init == "reference" else load_checkpoint(init, model=name)[0]


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
