"""Whole-network CiM inference of a set of images, in this process or spread over worker processes.

    correct = classify(cim, images, labels, batch_size=100)                      # this process
    correct = classify(cim, images, labels, batch_size=100, workers=2,           # 2 processes
                       rebuild=(model, cim.cim_config))

With ``workers`` > 1 every worker process builds the same CiM network once (``to_cim(model, config)``,
one torch thread each) and classifies shards of the images; the statistics of every layer come back
and are added to those of ``cim`` (``LayerStats.add_run``), so ``cim_stats(cim)`` reads as if ``cim`` had
run every image itself. Processes rather than threads: on a machine whose cores are shared with other
jobs, a multi-threaded torch process waits at every parallel region for its slowest thread (VGG-small
through the surrogate, AMD EPYC: 11,246 s per 10,000 images on two threads at load 3.4-8.6, where two
processes had taken 1,400 s at load 1.1-3.4 minutes before), where processes each go at their own
pace; on idle cores they also scale better (at 64x64, 604 s on two threads against 442 s on two
processes).

Every image is classified exactly as in one process (each image's logits depend on that image alone);
the statistics' sums of currents (energy) may differ in the last digits (another order of summation).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .config import CiMConfig

#: images a worker classifies per task (progress and load balance; a task costs seconds, not minutes)
SHARD_IMAGES = 200

_WORKER: dict[str, Any] = {}


def _classify_batches(cim: nn.Module, images, labels, batch_size: int, device, on_batch: Callable[[int], None] | None
                      ) -> int:
    from ..bnn.datasets import to_tensor
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(labels), batch_size):
            x = to_tensor(images[i:i + batch_size], device)
            pred = cim(x).argmax(dim=1).cpu().numpy()
            correct += int((pred == labels[i:i + len(pred)]).sum())
            if on_batch is not None:
                on_batch(len(pred))
    return correct


def _init_worker(model: nn.Module, config: CiMConfig, parent_pid: int) -> None:
    from ..orphans import watch_parent
    watch_parent(parent_pid)          # end with the process that started the pool (not only its fork server)
    torch.set_num_threads(1)
    from .convert import to_cim
    _WORKER["cim"] = to_cim(model, config)


def _run_shard(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tuple[int, list, float, float]:
    import resource
    import time

    from .convert import cim_layers, reset_stats
    c0 = time.process_time()
    cim = _WORKER["cim"]
    reset_stats(cim)
    correct = _classify_batches(cim, images, labels, batch_size, "cpu", None)
    return (correct, [(name, layer.matrix.stats) for name, layer in cim_layers(cim)], time.process_time() - c0,
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)


class WorkerPool:
    """``workers`` processes, each holding its own copy ``to_cim(model, config)`` of a CiM network (one
    torch thread each), that classify shards of images for :meth:`classify`; a context manager. ``config``:
    a CiMConfig, or to_cim's keyword arguments as a dict.

    ``cpu_seconds``: the CPU time the workers spent on shards so far (their start-up not counted);
    ``peak_rss_gb``: the largest peak resident memory of a worker so far."""

    def __init__(self, model: nn.Module, config: CiMConfig | dict, workers: int) -> None:
        from concurrent.futures import ProcessPoolExecutor
        if workers < 1:
            raise InputError(f"workers must be >= 1, got {workers}")
        config = config if isinstance(config, CiMConfig) else CiMConfig.from_kwargs(**config)
        if torch.device(config.run.device).type != "cpu":
            raise InputError("worker processes run on the CPU only: use one process with a GPU")
        ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else None)
        self.workers = workers
        self.cpu_seconds = 0.0
        self.peak_rss_gb = 0.0
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                         initargs=(model, config, os.getpid()))

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def classify(self, cim: nn.Module, images, labels, batch_size: int = 100,
                 on_images: Callable[[int], None] | None = None) -> int:
        """Correct top-1 classifications of ``images``; the shards' layer statistics are added to those of
        ``cim`` (the caller's copy of the same network)."""
        from concurrent.futures import as_completed

        from .convert import cim_layers
        labels = np.asarray(labels)
        n = len(labels)
        layers = dict(cim_layers(cim))
        step = max(batch_size, min(SHARD_IMAGES, -(-n // self.workers)))
        futures = {self._pool.submit(_run_shard, images[i:i + step], labels[i:i + step], batch_size):
                   min(step, n - i) for i in range(0, n, step)}
        correct = 0
        for fut in as_completed(futures):
            c, stats, cpu_s, rss_gb = fut.result()
            correct += c
            self.cpu_seconds += cpu_s
            self.peak_rss_gb = max(self.peak_rss_gb, rss_gb)
            for name, st in stats:
                layers[name].matrix.stats.add_run(st)
            if on_images is not None:
                on_images(futures[fut])
        return correct


def classify(cim: nn.Module, images, labels, *, batch_size: int = 100, device="cpu", workers: int = 1,
             rebuild: tuple[nn.Module, CiMConfig | dict] | None = None, progress: str | None = None) -> int:
    """Number of ``images`` (uint8 N x 32 x 32 x 3) whose top-1 class through ``cim`` is their label.

    ``workers`` > 1: a :class:`WorkerPool` of that many processes (CPU only), each building its own copy
    from ``rebuild`` = (software model, the CiMConfig or to_cim keyword arguments) that gave ``cim``; their
    statistics are added to ``cim``'s. ``progress``: a label for a progress bar on stderr, or None."""
    labels = np.asarray(labels)
    n = len(labels)
    if batch_size < 1 or workers < 1:
        raise InputError(f"batch size and workers must be >= 1, got {batch_size} and {workers}")
    if workers > 1 and rebuild is None:
        raise InputError("worker processes need the model and to_cim arguments to build their copies")
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, desc=progress, unit="img", leave=False)
    try:
        if workers == 1 or n <= batch_size:
            return _classify_batches(cim, images, labels, batch_size, device, bar.update if bar else None)
        with WorkerPool(rebuild[0], rebuild[1], workers) as pool:  # type: ignore[index]  # checked above
            return pool.classify(cim, images, labels, batch_size, bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
