#!/usr/bin/env python
"""Benchmark the ngspice runner: one operating point of N x N arrays per technology, and K = 16 input
vectors batched in one run against 16 separate runs. Writes docs/benchmarks/spice.md.

Each case runs in a fresh child process so its peak memory (ngspice's and Python's) is its own.

    python scripts/bench_spice.py                       # 64 and 128, both technologies, batch test
    python scripts/bench_spice.py --sizes 64 128 256    # the full table (256 is heavy)
    python scripts/bench_spice.py --case sram8t 64 1    # one case, prints one JSON line
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def one_case(tech_name: str, n: int, k: int, separate: bool, seed: int = 0) -> dict:
    import numpy as np

    from cosim.netlist import ArraySpec
    from cosim.spice import run_array
    from cosim.technology import get_technology

    rng = np.random.default_rng(seed)
    spec = ArraySpec(get_technology(tech_name), n, n)
    x = rng.integers(0, 2, (k, n))
    w = rng.integers(0, 2, (n, n))
    t0 = time.perf_counter()
    if separate:
        cur = np.concatenate([run_array(spec, x[i:i + 1], w).column_current_a for i in range(k)])
        res = None
    else:
        res = run_array(spec, x, w)
        cur = res.column_current_a
    wall = time.perf_counter() - t0
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from cosim.spice import ngspice_info
    info = ngspice_info()
    return {"tech": tech_name, "n": n, "k": k, "separate": separate, "seconds": wall,
            "seconds_per_vector": wall / k, "ngspice_peak_mb": child_kb / 1024, "python_peak_mb": self_kb / 1024,
            "mean_column_current_a": float(cur.mean()), "solver": "klu" if info["klu"] else "sparse",
            "ngspice_version": info["version"], "netlist_sha256": res.netlist_sha256 if res else None}


def run_child(*args: str, timeout_s: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        line = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": line}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GB RAM, {platform.system()} {platform.release()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", nargs=3, metavar=("TECH", "N", "K"), help="run one case (internal)")
    ap.add_argument("--separate", action="store_true", help="with --case: K separate runs")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--techs", nargs="+", default=["sram8t", "reram1t1r"])
    ap.add_argument("--batch-n", type=int, default=64, help="array size of the batched-vs-separate test")
    ap.add_argument("--timeout-s", type=float, default=3600)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "spice.md")
    ap.add_argument("--json-out", type=Path, default=None, help="also write the raw results as JSON")
    args = ap.parse_args(argv)
    if args.case:
        tech, n, k = args.case
        print(json.dumps(one_case(tech, int(n), int(k), args.separate)))
        return 0

    from cosim.provenance import record
    from cosim.spice import ngspice_info

    info = ngspice_info()
    points = []
    for tech in args.techs:
        for n in args.sizes:
            r = run_child(tech, str(n), "1", timeout_s=args.timeout_s)
            print(tech, n, r, flush=True)
            points.append((tech, n, r))
    batch = []
    for tech in args.techs:
        b = run_child(tech, str(args.batch_n), "16", timeout_s=args.timeout_s)
        s = run_child(tech, str(args.batch_n), "16", "--separate", timeout_s=args.timeout_s)
        print(tech, "batched", b, "separate", s, flush=True)
        batch.append((tech, b, s))

    prov = record(ngspice_version=info["version"], solver="klu" if info["klu"] else "sparse",
                  backend="subprocess", seed=0, machine=machine())
    lines = [
        "# SPICE runner benchmarks",
        "",
        f"Measured by `scripts/bench_spice.py` on {prov['date_utc']}: {machine()}, shared with other jobs",
        f"while it ran. ngspice {info['version']} ({'KLU' if info['klu'] else 'Sparse 1.3'}), subprocess backend",
        "(`ngspice -b`, rawfile parsed by numpy), random inputs and weights (seed 0), default technology",
        "parameters (10 ohm wire per cell, 10 ohm driver and sink), decoupled topology. Seconds are wall",
        "time of `run_array` (netlist, simulation, reading); peak memory is the largest ngspice process",
        "(max RSS) and the Python process of that case.",
        "",
        "ngspice 39 figures: not measured. Only ngspice 46 is installed on this machine (39 was not",
        "installed on purpose); ngspice 39 has no KLU, and the facts sheet's 1 kohm switch-resistor crossbar",
        "took 63 s (128) and 884 s (256) there against 0.81 s and 6.1 s with ngspice 46 + KLU.",
        "",
        "## One operating point (K = 1)",
        "",
        "| technology | N x N | seconds | ngspice peak MB | Python peak MB |",
        "|---|---|---|---|---|",
    ]
    for tech, n, r in points:
        if "error" in r:
            lines.append(f"| {tech} | {n} x {n} | failed: {r['error']} | | |")
        else:
            lines.append(f"| {tech} | {n} x {n} | {r['seconds']:.2f} | {r['ngspice_peak_mb']:.0f} | {r['python_peak_mb']:.0f} |")
    lines += [
        "",
        f"## K = 16 input vectors, {args.batch_n} x {args.batch_n}: one batched run against 16 separate runs",
        "",
        "| technology | batched s | batched s/vector | separate s | separate s/vector | speed-up per vector |",
        "|---|---|---|---|---|---|",
    ]
    for tech, b, s in batch:
        if "error" in b or "error" in s:
            lines.append(f"| {tech} | failed: {b.get('error') or s.get('error')} | | | | |")
        else:
            lines.append(f"| {tech} | {b['seconds']:.2f} | {b['seconds_per_vector']:.3f} | {s['seconds']:.2f} | "
                         f"{s['seconds_per_vector']:.3f} | {s['seconds'] / b['seconds']:.2f}x |")
    lines += ["", "Provenance: `" + json.dumps(prov) + "`", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    if args.json_out:
        args.json_out.write_text(json.dumps({"points": points, "batch": batch, "provenance": prov}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
