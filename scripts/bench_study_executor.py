#!/usr/bin/env python
"""Time the study grid's cells through cosim.sweep.executor: in this process (the default of `cosim report`),
2 local processes, and a dask LocalCluster of 2 single-threaded workers; check the results agree.

    .venv/bin/python scripts/bench_study_executor.py [--limit 20] [--variants software,nonideal,binsparx]

Cells of the quick grid (VGG-small, sram8t, 64 rows, 10 ohm) on the first --limit CIFAR-10 test images,
each case with a fresh cell cache (so every cell is computed); torch 1 thread per process. Prints a
Markdown table (wall seconds of run_cells, 1-minute load average before / after) and the agreement.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def load() -> float:
    return os.getloadavg()[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--variants", default="software,nonideal,binsparx,adc-cal")
    ap.add_argument("--cases", default="inline,local2,dask2")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from cosim.sweep.executor import make_executor
    from cosim.study import runner
    from cosim.study.config import parse_config

    tmp = Path(tempfile.mkdtemp(prefix="bench-study-"))
    raw = {"grid": {"networks": ["vgg-small"], "technologies": ["sram8t"], "rows": [64], "r_wire_ohm": [10.0],
                    "variants": args.variants.split(",")},
           "run": {"limit": args.limit, "threads": 1}}
    rows, results = [], {}
    cluster = None
    for case in args.cases.split(","):
        cfg = parse_config({**raw, "paths": {"cache": str(tmp / case)}})
        ctx = runner.StudyContext(cfg)
        ctx.data()                                 # the caller loads the test set (as cosim report does) untimed
        if case == "dask2":
            from distributed import LocalCluster
            t0 = time.perf_counter()
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   protocol="tcp", dashboard_address=None)
            print(f"LocalCluster start: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        l0 = load()
        t0 = time.perf_counter()
        with make_executor(workers=2 if case == "local2" else 1,
                           scheduler=cluster.scheduler_address if case == "dask2" else "") as ex:
            res = runner.run_cells(cfg.cells(), ctx, progress=False, executor=ex)
            desc = ex.describe()
        wall = time.perf_counter() - t0
        rows.append((case, desc, len(res), wall, l0, load()))
        results[case] = [(r.status, r.result["correct"] if r.result else None,
                          (r.result or {}).get("stats")) for r in res]
        print(f"{case}: {wall:.1f} s", file=sys.stderr)
    if cluster is not None:
        cluster.close()
    print(f"{len(next(iter(results.values())))} cells ({args.variants}), {args.limit} images each, "
          f"{os.cpu_count()} cores\n")
    print("| executor | cells | wall s | load before / after |")
    print("|---|---|---|---|")
    for case, desc, n, wall, l0, l1 in rows:
        print(f"| {desc} | {n} | {wall:.1f} | {l0:.1f} / {l1:.1f} |")
    ref = next(iter(results.values()))
    same = all(v == ref for v in results.values())
    print(f"\nResults identical in every case (status, correct count, array statistics): {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
