"""Benchmark of whole-network CiM inference (issue 5 targets), CPU or GPU.

For each network: software float32 inference, ideal CiM mode (without and with BinSparX) and the
surrogate mode, each timed on its own number of CIFAR-10 test images (the same first images), plus
the peak resident memory of the process. Times for the full 10,000-image test set are extrapolated
linearly from the measured images per second (every batch costs the same) and marked so. CPU seconds
(process time) are recorded beside wall seconds: on a machine shared with other jobs they measure the
work done, where wall time also counts waiting for a core.

    .venv/bin/python scripts/bench_infer.py --threads 2 --n-ideal 200 --n-surrogate 20 --out bench.json
    .venv/bin/python scripts/bench_infer.py --threads 1 --workers 2 --n-ideal 1000 --n-surrogate 200
    .venv/bin/python scripts/bench_infer.py --device cuda --n-ideal 10000 --n-surrogate 10000   # on a GPU
    .venv/bin/python scripts/bench_infer.py --threads 1 --n-software 0 --n-ideal 0 --n-surrogate 0 \
        --certify --n-certified 8 --adc-references ideal,calibrated          # certified / plain surrogate

``--certify``: certified reads (cosim.cim.arrays.CertifiedArray) beside the plain surrogate, per ADC reference of
``--adc-references``, on the same ``--n-certified`` images: the plain surrogate timed before and after the
certified run (a drifting load shows as a difference between the two), each model warmed up on two images
first; ``certified_over_surrogate`` is the certified run's time over the mean of the two plain ones (CPU seconds
of this process, and wall seconds), with the columns read and re-solved.

The surrogate uses the shipped table of the technology and size when there is one, else (flagged
``table_synthetic`` in the output) a synthetic table of the same size: its values do not change the
surrogate's cost, but accuracies from it mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _sync(device: str) -> None:
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_run(model, images, labels, n: int, batch: int, device: str, workers: int = 1, rebuild=None) -> dict:
    """Classify the first n images through ``model``; with ``workers`` > 1 in a pool of worker processes
    started and warmed up on a first batch before the clock starts (a long run pays that once)."""
    from cosim.cim.parallel import WorkerPool
    from cosim.cim.parallel import classify as classify_here
    pool = WorkerPool(rebuild[0], rebuild[1], workers) if workers > 1 else None
    try:
        if pool is not None:
            pool.classify(model, images[:batch * workers], labels[:batch * workers], batch)
            pool.cpu_seconds = 0.0
            from cosim.cim import reset_stats
            reset_stats(model)
        _sync(device)
        c0 = time.process_time()
        t0 = time.perf_counter()
        if pool is None:
            correct = classify_here(model, images[:n], labels[:n], batch_size=batch, device=device)
        else:
            correct = pool.classify(model, images[:n], labels[:n], batch)
        _sync(device)
        s = time.perf_counter() - t0
        cpu = time.process_time() - c0 + (pool.cpu_seconds if pool is not None else 0.0)
        workers_rss = workers * pool.peak_rss_gb if pool is not None else 0.0
    finally:
        if pool is not None:
            pool.close()
    return {"n": n, "workers": workers, "seconds": round(s, 3), "cpu_seconds": round(cpu, 3),
            "images_per_s": round(n / s, 3), "images_per_cpu_s": round(n / cpu, 3),
            "extrapolated_10k_cpu_s": round(10000 * cpu / n, 1), "extrapolated_10k_s": round(10000 * s / n, 1),
            "accuracy": correct / n, "peak_rss_gb_so_far": round(_peak_rss_gb(), 2),
            # this process plus every worker at the largest worker's peak: a bound on the total
            "peak_rss_gb_with_workers": round(_peak_rss_gb() + workers_rss, 2)}


def certified_pair(net, images, labels, a, table, ref: str) -> dict:
    """Certified reads and the plain surrogate side by side (``--certify``): plain, certified, plain again."""
    from cosim.cim import to_cim
    from cosim.cim.parallel import classify
    kw = dict(tech=a.tech, rows=a.rows, cols=a.cols, mode="surrogate", table=table, device=a.device, adc_reference=ref)
    plain, cert = to_cim(net, **kw), to_cim(net, **kw, certify=True)
    for m in (plain, cert):            # warm-up: prepared weights, the solver's cell table, the kernels
        classify(m, images[:2], labels[:2], batch_size=2, device=a.device)
    arr = cert.cim_array
    read0, resolved0 = arr.columns_read, arr.resolved
    load0 = [round(v, 2) for v in os.getloadavg()]
    before = timed_run(plain, images, labels, a.n_certified, a.batch, a.device)
    certified = timed_run(cert, images, labels, a.n_certified, a.batch, a.device)
    after = timed_run(plain, images, labels, a.n_certified, a.batch, a.device)
    read, resolved = arr.columns_read - read0, arr.resolved - resolved0
    out = {"adc_reference": ref, "surrogate_before": before, "certified": certified, "surrogate_after": after,
           "columns_read": read, "columns_resolved": resolved, "resolved_fraction": round(resolved / read, 5) if read else None,
           "certify_safety_counts": arr.describe().get("certify_safety_counts"),
           "load_average": [load0, [round(v, 2) for v in os.getloadavg()]]}
    for key, unit in (("certified_over_surrogate_cpu", "cpu_seconds"), ("certified_over_surrogate", "seconds")):
        base = 0.5 * (before[unit] + after[unit])
        out[key] = round(certified[unit] / base, 2) if base > 0 else None
    return out


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
    ap.add_argument("--threads", type=int, default=2, help="torch threads of this process (workers: 1 each)")
    ap.add_argument("--workers", type=int, default=1,
                    help="CiM modes: worker processes over the images (cosim infer --workers); software: threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--table", default=None, help="lookup table (default: shipped, else synthetic)")
    ap.add_argument("--certify", action="store_true", help="also certified reads beside the plain surrogate")
    ap.add_argument("--n-certified", type=int, default=8, help="--certify: images of each run")
    ap.add_argument("--adc-references", default="ideal", help="--certify: ADC references, comma-separated")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)

    import torch
    torch.set_num_threads(a.threads)
    from cosim.bnn.models import load_reference
    from cosim.cim import to_cim
    from cosim.bnn.datasets import load_cifar10
    from cosim.errors import TableError
    from cosim.provenance import record

    table, synthetic = a.table, False
    if table is None:
        from cosim.surrogate.tables import default_table_path
        try:
            table = default_table_path(a.tech, a.rows)
        except TableError:
            from cosim.cim.synthetic import synthetic_table
            table, synthetic = synthetic_table(a.tech, a.rows, a.cols), True
    images, labels = load_cifar10(split="test")
    load0 = [round(v, 2) for v in os.getloadavg()]
    from cosim import products
    from cosim.provenance import machine_description
    from cosim.surrogate.kernel import cpu_signature
    flags = sorted(f for f in cpu_signature().split() if f.startswith(("avx512", "amx", "avx2", "avx_vnni")))
    res = {"load_average_at_start": load0,
           "provenance": record(technology=a.tech, array_size=[a.rows, a.cols], device=a.device, threads=a.threads,
                                workers=a.workers, machine=machine_description(), cpu_flags=flags,
                                products=products.describe(a.rows, a.device), table=str(table) if not synthetic
                                else "synthetic", table_synthetic=synthetic, seed=0),
           "models": {}}
    if a.device.startswith("cuda"):
        res["provenance"]["gpu"] = torch.cuda.get_device_name()
    from cosim.surrogate import kernel as surrogate_kernel
    res["provenance"]["surrogate_kernel"] = (surrogate_kernel.load() is not None if a.device == "cpu" else False)
    res["provenance"]["surrogate_kernel_error"] = surrogate_kernel.load_error
    for name in a.models.split(","):
        net = load_reference(name).to(a.device)
        r = {}
        if a.n_software > 0:      # the software network on every core given to the CiM modes, as threads
            torch.set_num_threads(max(a.threads, a.workers))
            r["software"] = timed_run(net, images, labels, a.n_software, a.batch, a.device)
            r["software"]["threads"] = torch.get_num_threads()
            torch.set_num_threads(a.threads)
        for label, mode, bs, n in (("ideal", "ideal", False, a.n_ideal), ("ideal_binsparx", "ideal", True, a.n_ideal),
                                   ("surrogate", "surrogate", False, a.n_surrogate),
                                   ("surrogate_binsparx", "surrogate", True, a.n_surrogate)):
            if n <= 0:
                continue
            kw = dict(tech=a.tech, rows=a.rows, cols=a.cols, mode=mode, table=table, binsparx=bs, device=a.device)
            cim = to_cim(net, **kw)
            r[label] = timed_run(cim, images, labels, n, a.batch, a.device, a.workers, (net, kw))
            print(f"{name} {label}: {r[label]}", file=sys.stderr, flush=True)
        if a.certify:
            for ref in a.adc_references.split(","):
                r[f"certified_{ref}"] = certified_pair(net, images, labels, a, table, ref)
                print(f"{name} certified_{ref}: {r[f'certified_{ref}']}", file=sys.stderr, flush=True)
        if "software" in r and "ideal" in r:
            r["ideal_over_software"] = round(r["software"]["images_per_s"] / r["ideal"]["images_per_s"], 2)
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
