"""Benchmark of whole-network CiM inference (issue 5 targets), CPU or GPU.

For each network: software float32 inference, ideal CiM mode (without and with BinSparX) and the
surrogate mode, each timed on its own number of CIFAR-10 test images (the same first images), plus
the peak resident memory of the process. Times for the full 10,000-image test set are extrapolated
linearly from the measured images per second (every batch costs the same) and marked so. CPU seconds
(process time) are recorded beside wall seconds: on a machine shared with other jobs they measure the
work done, where wall time also counts waiting for a core.

    .venv/bin/python scripts/bench_infer.py --threads 2 --n-ideal 200 --n-surrogate 20 --out bench.json
    .venv/bin/python scripts/bench_infer.py --device cuda --n-ideal 10000 --n-surrogate 10000   # on a GPU

The surrogate uses the shipped table of the technology and size when there is one, else (flagged
``table_synthetic`` in the output) a synthetic table of the same size: its values do not change the
surrogate's cost, but accuracies from it mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _sync(device: str) -> None:
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_run(model, images, labels, n: int, batch: int, device: str) -> dict:
    import torch

    from cosim.datasets import to_tensor
    correct = 0
    _sync(device)
    c0 = time.process_time()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, n, batch):
            x = to_tensor(images[i:min(i + batch, n)], device)
            correct += int((model(x).argmax(1).cpu().numpy() == labels[i:i + x.shape[0]]).sum())
    _sync(device)
    s = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {"n": n, "seconds": round(s, 3), "cpu_seconds": round(cpu, 3), "images_per_s": round(n / s, 3),
            "images_per_cpu_s": round(n / cpu, 3), "extrapolated_10k_cpu_s": round(10000 * cpu / n, 1),
            "extrapolated_10k_s": round(10000 * s / n, 1), "accuracy": correct / n,
            "peak_rss_gb_so_far": round(_peak_rss_gb(), 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="vgg-small,resnet18")
    ap.add_argument("--tech", default="sram8t")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--cols", type=int, default=64)
    ap.add_argument("--n-software", type=int, default=200)
    ap.add_argument("--n-ideal", type=int, default=200)
    ap.add_argument("--n-surrogate", type=int, default=20)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--table", default=None, help="lookup table (default: shipped, else synthetic)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)

    import torch
    torch.set_num_threads(a.threads)
    from cosim.bnn.models import load_reference
    from cosim.cim import to_cim
    from cosim.datasets import load_cifar10
    from cosim.errors import TableError
    from cosim.provenance import record

    table, synthetic = a.table, False
    if table is None:
        from cosim.tables import default_table_path
        try:
            table = default_table_path(a.tech, a.rows)
        except TableError:
            from cosim.cim.synthetic import synthetic_table
            table, synthetic = synthetic_table(a.tech, a.rows, a.cols), True
    images, labels = load_cifar10(split="test")
    load0 = [round(v, 2) for v in os.getloadavg()]
    res = {"load_average_at_start": load0, "provenance": record(technology=a.tech, array_size=[a.rows, a.cols], device=a.device, threads=a.threads,
                                machine=platform.processor() or platform.machine(), table=str(table) if not synthetic
                                else "synthetic", table_synthetic=synthetic, seed=0),
           "models": {}}
    if a.device.startswith("cuda"):
        res["provenance"]["gpu"] = torch.cuda.get_device_name()
    from cosim import surrogate_kernel
    res["provenance"]["surrogate_kernel"] = (surrogate_kernel.load() is not None if a.device == "cpu" else False)
    res["provenance"]["surrogate_kernel_error"] = surrogate_kernel.load_error
    for name in a.models.split(","):
        net = load_reference(name).to(a.device)
        r = {}
        if a.n_software > 0:
            r["software"] = timed_run(net, images, labels, a.n_software, a.batch, a.device)
        for label, mode, bs, n in (("ideal", "ideal", False, a.n_ideal), ("ideal_binsparx", "ideal", True, a.n_ideal),
                                   ("surrogate", "surrogate", False, a.n_surrogate),
                                   ("surrogate_binsparx", "surrogate", True, a.n_surrogate)):
            if n <= 0:
                continue
            cim = to_cim(net, tech=a.tech, rows=a.rows, cols=a.cols, mode=mode, table=table, binsparx=bs,
                         device=a.device)
            r[label] = timed_run(cim, images, labels, n, a.batch, a.device)
            print(f"{name} {label}: {r[label]}", file=sys.stderr, flush=True)
        if "surrogate" in r and "ideal" in r:
            r["surrogate_over_ideal"] = round(r["ideal"]["images_per_s"] / r["surrogate"]["images_per_s"], 2)
            r["surrogate_over_ideal_cpu"] = round(r["ideal"]["images_per_cpu_s"] / r["surrogate"]["images_per_cpu_s"], 2)
        if a.device.startswith("cuda"):
            r["cuda_peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        res["models"][name] = r
    res["peak_rss_gb"] = round(_peak_rss_gb(), 2)
    res["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    text = json.dumps(res, indent=1, default=str)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
