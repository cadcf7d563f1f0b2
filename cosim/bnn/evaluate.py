"""Software accuracy of a binary network on CIFAR-10: float32, exact binary arithmetic, no autocast."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from .datasets import to_tensor
from ..errors import InputError


def predict(model: nn.Module, images, batch_size: int = 250, device: str | torch.device = "cpu",
            progress: bool = False) -> np.ndarray:
    """Logits (float32 numpy, N x classes) of ``model`` on uint8 N,32,32,3 images (or a normalised
    float tensor N,3,32,32), in eval mode and float32 (the integer sums of the binary layers are exact)."""
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    n = len(images)
    outs = []
    steps = range(0, n, batch_size)
    if progress:
        from tqdm import tqdm
        steps = tqdm(steps, desc="eval", unit="batch", leave=False)
    tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        # exact float32 on CUDA too: TF32 would round the first layer's inputs
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        with torch.inference_mode():
            for i in steps:
                chunk = images[i:i + batch_size]
                x = to_tensor(chunk, device) if _is_uint8(chunk) else torch.as_tensor(chunk).to(device).float()
                outs.append(model(x).float().cpu())
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
        model.train(was_training)
    if not outs:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(outs).numpy()


def evaluate(model: nn.Module, images, labels, batch_size: int = 250, limit: int | None = None,
             device: str | torch.device = "cpu", progress: bool = False) -> dict:
    """Top-1 accuracy on the first ``limit`` images (all when None).

    Returns ``{"accuracy", "n", "correct", "seconds", "device", "batch_size"}``.
    """
    labels = np.asarray(labels)
    if len(images) != len(labels):
        raise InputError(f"{len(images)} images but {len(labels)} labels")
    n = len(labels) if limit is None else min(int(limit), len(labels))
    if n < 1:
        raise InputError(f"nothing to evaluate (limit {limit}, {len(labels)} images)")
    t0 = time.perf_counter()
    logits = predict(model, images[:n], batch_size=batch_size, device=device, progress=progress)
    seconds = time.perf_counter() - t0
    correct = int((logits.argmax(axis=1) == labels[:n]).sum())
    return {"accuracy": correct / n, "n": n, "correct": correct, "seconds": round(seconds, 3),
            "device": str(torch.device(device)), "batch_size": batch_size}


def _is_uint8(x) -> bool:
    return getattr(x, "dtype", None) in (np.uint8, torch.uint8)
