#!/usr/bin/env python
"""Throughput of the surrogate against the ideal binary matrix product on the same data.

    .venv/bin/python scripts/bench_surrogate.py [--table T] [--vectors 1000000] [--threads 2] [--json]

Inputs are random 0/1 float32 blocks of ``--block`` vectors (generated before timing); each block goes
through (a) the ideal product x @ w, (b) ``Surrogate.column_currents(x, w)`` (currents, the weights
prepared on every call), (c) ``Surrogate.read(x, prepared)`` (ADC codes, the weights prepared once, as
the CiM layers read a cached tile), (d) the same read on the torch path (no C kernel, float32 counts:
the pre-kernel evaluation) for comparison under the same load. Reports seconds per 10^6 vectors and the
ratio to (a), best of ``--repeat`` passes (wall time, and the process CPU time of those passes: with
one thread on a shared machine the CPU time is the work done, the wall time also the waiting for a
core), and the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def _profile(sur, pw, x, w, rep: int = 40) -> dict:
    """Process CPU seconds per 10^6 vectors of each step of a kernel-path read of one chunk ``x``."""
    import torch

    from cosim.products import matmul_f32
    from cosim.surrogate.kernel import evaluate, load

    lib, (thr, step_a) = load(), sur._adc_rule()
    xb = x.to(pw.w_count.dtype)
    k, m, xs = sur._products(x, pw)
    code = torch.empty(k.shape)
    steps = {"ideal_product": lambda: x @ w, "inputs_to_count_dtype": lambda: x.to(pw.w_count.dtype),
             # the exact counts from bf16 operands (on AMX: matrix units): the ideal product in bf16
             "count_product": lambda: xb @ pw.w_count, "moment_product": lambda: matmul_f32(x, pw.w_moments, pw.w_moments_t, pw.f32_kernel),
             "kernel_codes": lambda: evaluate(lib, k, m, len(sur.orders), sur.n_variables, sur._terms, sur._coef_t,
                                              sur.i_cell_a, xs=xs, coef_rows=sur._coef_rows, term_idx=sur._term_idx,
                                              thresholds=thr,
                                              lsb=float(sur.adc.lsb_counts), code=code, threads=torch.get_num_threads(),
                                              step_a=step_a, max_code=sur.adc.max_code),
             "whole_read": lambda: sur.read(x, pw)}
    out = {}
    for name, fn in steps.items():
        fn()
        best = float("inf")
        for _ in range(3):
            c0 = time.process_time()
            for _ in range(rep):
                fn()
            best = min(best, (time.process_time() - c0) / rep)
        out[name] = best * 1e6 / x.shape[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default=None, help="lookup table (default: shipped sram8t 128 rows)")
    ap.add_argument("--vectors", type=int, default=1_000_000)
    ap.add_argument("--cols", type=int, default=None, help="columns (default: the table's rows, a square array)")
    ap.add_argument("--block", type=int, default=65536)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--chunk", type=int, default=None, help="surrogate chunk (vectors per pass; default: its own)")
    ap.add_argument("--no-torch-path", action="store_true", help="skip timing the torch path (slow)")
    ap.add_argument("--profile", action="store_true",
                    help="also the process CPU seconds per 10^6 vectors of each step of a read, one chunk repeated")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from cosim.products import bits_dtype
    from cosim.products import describe as describe_products
    from cosim.provenance import machine_description, record
    from cosim.surrogate.evaluate import Surrogate
    from cosim.surrogate.tables import default_table_path, load_table

    path = args.table or default_table_path("sram8t", 128)
    table = load_table(path)
    sur = Surrogate.from_table(table, device=args.device)
    if args.chunk:
        sur.chunk = args.chunk
    rows = sur.rows
    cols = args.cols or rows
    g = torch.Generator().manual_seed(0)
    w = (torch.rand(rows, cols, generator=g) < 0.5).float().to(args.device)
    nblk = (args.vectors + args.block - 1) // args.block
    blocks = [(torch.rand(min(args.block, args.vectors - i * args.block), rows, generator=g) < 0.5).float().to(args.device)
              for i in range(nblk)]
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    cpu_s: dict[str, float] = {}

    def timed(fn, name: str, inputs=blocks) -> float:
        """Best wall seconds per 10^6 vectors; the process CPU seconds of the same pass go to cpu_s."""
        best = float("inf")
        for _ in range(args.repeat):
            sync()
            c, t = time.process_time(), time.perf_counter()
            for x in inputs:
                fn(x)
            sync()
            wall = time.perf_counter() - t
            if wall < best:
                best, cpu_s[name] = wall, (time.process_time() - c) * 1e6 / args.vectors
        return best * 1e6 / args.vectors

    from cosim.surrogate import kernel as surrogate_kernel

    load_before = os.getloadavg()[0]
    pw = sur.prepare(w)
    bits = bits_dtype(rows, args.device)           # the ideal CiM mode's exact product on this machine
    w_bits = w.to(bits)
    bit_blocks = [x.to(bits) for x in blocks]
    with torch.no_grad():
        t_ideal = timed(lambda x: x @ w, "ideal")
        t_ideal_bits = timed(lambda x: x @ w_bits, "ideal_bits", bit_blocks)
        t_cur = timed(lambda x: sur.column_currents(x, w), "currents")
        t_read = timed(lambda x: sur.read(x, pw), "read")
        t_torch = None
        if not args.no_torch_path:
            sur.use_kernel, sur.fast_counts = False, False
            pw_t = sur.prepare(w)
            t_torch = timed(lambda x: sur.read(x, pw_t), "torch_path_read")
            sur.use_kernel, sur.fast_counts = True, True
    kernel = sur._kernel() is not None
    profile = _profile(sur, pw, blocks[0][:sur.chunk], w) if args.profile and kernel else None
    out = {
        "rows": rows, "cols": cols, "vectors": args.vectors, "threads": args.threads, "device": args.device,
        "ideal_matmul_s_per_1e6": t_ideal, "surrogate_currents_s_per_1e6": t_cur, "surrogate_read_s_per_1e6": t_read,
        "ratio_currents_to_ideal": t_cur / t_ideal, "chunk": sur.chunk, "ratio_read_to_ideal": t_read / t_ideal,
        "ideal_bits_dtype": str(bits), "ideal_bits_matmul_s_per_1e6": t_ideal_bits,
        "ratio_read_to_ideal_bits": t_read / t_ideal_bits,
        "orders": sur.orders, "leak": sur.leak, "terms": len(sur.terms), "kernel": kernel,
        "kernel_error": surrogate_kernel.load_error, "torch_path_read_s_per_1e6": t_torch,
        "profile_cpu_s_per_1e6": profile, "cpu_s_per_1e6_of_best_pass": cpu_s, "load_avg_1min_before": load_before, "load_avg_1min_after": os.getloadavg()[0],
        "provenance": record(table=str(path), technology=sur.tech.name, machine=machine_description(),
                             products=describe_products(sur.rows),
                             cpus=os.cpu_count(), torch=torch.__version__, load_avg=os.getloadavg()),
    }
    if args.json:
        print(json.dumps(out, sort_keys=True, default=str))
    else:
        print(f"{rows}x{cols}, {args.vectors} vectors, chunk {sur.chunk}, {args.threads} threads ({sur.tech.name}, orders {sur.orders}, "
              f"{len(sur.terms)} terms; load average {os.getloadavg()[0]:.1f}):")
        print(f"  ideal x@w          {t_ideal:.3f} s per 10^6 vectors")
        print(f"  surrogate currents {t_cur:.3f} s per 10^6 vectors ({t_cur / t_ideal:.2f}x ideal)")
        print(f"  surrogate read     {t_read:.3f} s per 10^6 vectors ({t_read / t_ideal:.2f}x ideal; "
              f"{'C kernel' if kernel else 'torch path: ' + str(surrogate_kernel.load_error)})")
        if t_torch is not None:
            print(f"  torch-path read    {t_torch:.3f} s per 10^6 vectors ({t_torch / t_ideal:.2f}x ideal)")
        print("  process CPU seconds per 10^6 vectors (same passes): " + ", ".join(f"{k} {v:.3f}" for k, v in cpu_s.items()))
        if profile:
            print("  CPU seconds per 10^6 vectors: " + ", ".join(f"{k} {v:.3f}" for k, v in profile.items()))
        print(f"  load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()
