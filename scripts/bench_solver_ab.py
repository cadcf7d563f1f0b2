"""Side by side: the exact solver of two checkouts (say main and a branch) on the same decoupled columns (or
coupled arrays: --topology coupled), and ngspice on them.

    PYTHONPATH=. .venv/bin/python scripts/bench_solver_ab.py --a /path/to/main --b . [--rows 64 128 256] [--quick]
        [--topology coupled]

For each technology (8T-SRAM, 1T-1R), size and wire resistance: the array of scripts/bench_solver.py (its
column patterns, and as input vectors random ones, all ones, alternate rows and every end-clustered block)
and --network-runs arrays of real operands (R-row slices of the reference VGG-small's binary layers on
CIFAR-10 test images, cosim.surrogate.netslices). ngspice runs each array once with the decks' settings
(timed: wall, and the CPU time of its process) and once at reltol 1e-9 (the reference). Each checkout's
solver (``solve_array``, decoupled, its default cells, one thread) runs in a Python process of its own with
that checkout on PYTHONPATH, the two alternately, --reps rounds; the least CPU time (``time.process_time``)
of each case is kept. Then (decoupled topology) the throughput of 128-row random columns (64 vectors x 128
columns, 1 and 2 threads; CPU and wall) the same way. With --topology coupled the arrays are the same
(--cols columns, the column patterns side by side; the row lines couple them) in the coupled topology,
solved whole per input vector; no throughput part. Prints Markdown tables (per column: CPU microseconds of each,
speed-up over ngspice per CPU second and per wall second, each one's largest relative difference from
ngspice at reltol 1e-9 with a 1e-12 A floor, the largest relative change from A to B, the same floor) and writes them as
JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()


def worker(cases_path: str, out_path: str, throughput: bool) -> None:
    """Run in a checkout's process: solve every case, keep the CPU time, the currents and the iterations."""
    from cosim.circuit.netlist import ArraySpec
    from cosim.circuit.solver import solve_array
    from cosim.circuit.technology import get_technology

    data = np.load(cases_path, allow_pickle=False)
    meta = json.loads(str(data["meta"]))
    out: dict = {"cases": [], "throughput": []}
    arrays = {}
    for i, m in enumerate(meta):
        spec = ArraySpec(get_technology(m["tech"], r_wire_ohm=m["r_wire_ohm"]), m["rows"], m["cols"],
                         m.get("topology", "decoupled"))
        x, w = data[f"x{i}"], data[f"w{i}"]
        solve_array(spec, x[:1], w, threads=1)          # the table built, the kernel loaded: outside the timing
        c0 = time.process_time()
        res = solve_array(spec, x, w, threads=1)
        out["cases"].append({"cpu_s": time.process_time() - c0, "wall_s": res.seconds, "cells": res.cells})
        arrays[f"i{i}"] = res.column_current_a
        arrays[f"it{i}"] = res.iterations
    if throughput:
        for tech in ("sram8t", "reram1t1r"):
            for rw in (2.0, 10.0):
                rng = np.random.default_rng(0)
                spec = ArraySpec(get_technology(tech, r_wire_ohm=rw), 128, 128, "decoupled")
                x, w = rng.integers(0, 2, (64, 128)), rng.integers(0, 2, (128, 128))
                solve_array(spec, x[:1], w)
                for th in (1, 2):
                    c0 = time.process_time()
                    s = solve_array(spec, x, w, threads=th)
                    out["throughput"].append({"tech": tech, "r_wire_ohm": rw, "threads": th, "columns": x.shape[0] * 128,
                                              "cpu_s": time.process_time() - c0, "wall_s": s.seconds})
    np.savez(out_path, **arrays)
    Path(out_path + ".json").write_text(json.dumps(out))


def rel(a, b) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12 / 1e-6)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="checkout A (its folder holds cosim/)")
    ap.add_argument("--b", required=True, help="checkout B")
    ap.add_argument("--rows", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--techs", nargs="+", default=["sram8t", "reram1t1r"])
    ap.add_argument("--r-wire", type=float, nargs="+", default=[2.0, 20.0])
    ap.add_argument("--quick", action="store_true", help="every 8th end-clustered block count only")
    ap.add_argument("--network-runs", type=int, default=4)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--topology", choices=["decoupled", "coupled"], default="decoupled")
    ap.add_argument("--out", default="solver_ab.json")
    ap.add_argument("--worker", nargs=2, metavar=("CASES", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--throughput", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker[0], a.worker[1], a.throughput)
        return

    sys.path.insert(0, str(HERE.parent))
    from bench_solver import columns, spice_tight, vectors

    from cosim.circuit.netlist import ArraySpec
    from cosim.circuit.spice import run_array
    from cosim.circuit.technology import get_technology

    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("Model name")), "?")
    started = datetime.now(timezone.utc)
    load0 = os.getloadavg()
    print(f"# {started:%Y-%m-%d %H:%M} UTC, CPU {model}, {os.cpu_count()} CPUs, load {load0[0]:.2f}, "
          f"{a.topology} topology", flush=True)
    net = None
    if a.network_runs:
        try:
            from cosim.surrogate.netslices import load_network
            net = load_network(images=16)
        except Exception as e:  # noqa: BLE001 - the shared weights / data are optional
            print(f"(network patterns skipped: {e})")
    meta, arrays, spice = [], {}, []
    for tech in a.techs:
        for R in a.rows:
            for rw in a.r_wire:
                rng = np.random.default_rng(R + int(rw))
                stride = 8 if a.quick or R > 128 else 1
                sets = [("patterns", vectors(R, rng, stride), columns(R, a.cols, rng))]
                if net is not None:
                    sets += [("network", *net.sample(R, run, 0, 16, a.cols)[:2]) for run in range(a.network_runs)]
                for kind, x, w in sets:
                    spec = ArraySpec(get_technology(tech, r_wire_ohm=rw), R, a.cols, a.topology)
                    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    t0 = time.perf_counter()
                    ref = run_array(spec, x, w).column_current_a
                    wall = time.perf_counter() - t0
                    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    tight = spice_tight(spec, x, w)
                    i = len(meta)
                    meta.append(dict(tech=tech, rows=R, r_wire_ohm=rw, cols=a.cols, kind=kind, K=int(x.shape[0]),
                                     topology=a.topology))
                    arrays[f"x{i}"], arrays[f"w{i}"] = np.asarray(x, np.uint8), np.asarray(w, np.uint8)
                    spice.append(dict(wall_s=wall, cpu_s=(r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime),
                                      ref=ref, tight=tight))
                print(f"ngspice {tech} {R} rows {rw:g} ohm done", flush=True)
    with tempfile.TemporaryDirectory(prefix="solver-ab-") as tmp:
        cases = os.path.join(tmp, "cases.npz")
        np.savez(cases, meta=json.dumps(meta), **arrays)
        results: dict[str, list] = {"a": [], "b": []}
        for rep in range(a.reps):
            for side in ("a", "b"):
                root = Path(getattr(a, side)).resolve()
                out = os.path.join(tmp, f"{side}{rep}.npz")
                env = dict(os.environ, PYTHONPATH=str(root))
                cmd = [sys.executable, str(HERE), "--a", "-", "--b", "-", "--worker", cases, out]
                if rep == 0 and a.topology == "decoupled":
                    cmd.append("--throughput")
                subprocess.run(cmd, check=True, env=env, cwd=str(root))
                results[side].append((np.load(out), json.loads(Path(out + ".json").read_text())))
                print(f"solver {side} round {rep + 1} done", flush=True)
    ended = datetime.now(timezone.utc)
    load1 = os.getloadavg()
    rows_out = []
    print(f"\n# ended {ended:%H:%M} UTC, load {load1[0]:.2f} (started {load0[0]:.2f})")
    print("\n| tech | rows | r_wire | columns | ngspice ms/col (CPU / wall) | A µs/col CPU | B µs/col CPU | B/A speed "
          "| A × ngspice (CPU / wall) | B × ngspice (CPU / wall) | A max rel vs ngspice 1e-9 | B max rel | max rel B vs A "
          "| iters A / B (mean) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(meta):
        groups.setdefault((m["tech"], m["rows"], m["r_wire_ohm"], m["kind"]), []).append(i)
    for (tech, R, rw, kind), idx in groups.items():
        n = sum(meta[i]["K"] * meta[i]["cols"] for i in idx)
        sp_cpu = sum(spice[i]["cpu_s"] for i in idx) / n
        sp_wall = sum(spice[i]["wall_s"] for i in idx) / n
        row = dict(tech=tech, rows=R, r_wire_ohm=rw, kind=kind, columns=n, ngspice_cpu_s_per_col=sp_cpu,
                   ngspice_wall_s_per_col=sp_wall)
        cur = {}
        for side in ("a", "b"):
            cpu_s = sum(min(r[1]["cases"][i]["cpu_s"] for r in results[side]) for i in idx) / n
            wall_s = sum(min(r[1]["cases"][i]["wall_s"] for r in results[side]) for i in idx) / n
            cur[side] = [results[side][0][0][f"i{i}"] for i in idx]
            its = np.concatenate([results[side][0][0][f"it{i}"].ravel() for i in idx])
            row.update({f"{side}_cpu_s_per_col": cpu_s, f"{side}_wall_s_per_col": wall_s,
                        f"{side}_max_rel_tight": max(rel(c, spice[i]["tight"]) for c, i in zip(cur[side], idx)),
                        f"{side}_max_rel_default": max(rel(c, spice[i]["ref"]) for c, i in zip(cur[side], idx)),
                        f"{side}_iters_mean": float(its.mean())})
        row["max_rel_b_vs_a"] = max(rel(b, a_) for a_, b in zip(cur["a"], cur["b"]))
        rows_out.append(row)
        print(f"| {tech} | {R} | {rw:g} | {kind} {n} | {sp_cpu * 1e3:.3f} / {sp_wall * 1e3:.3f} "
              f"| {row['a_cpu_s_per_col'] * 1e6:.2f} | {row['b_cpu_s_per_col'] * 1e6:.2f} "
              f"| {row['a_cpu_s_per_col'] / row['b_cpu_s_per_col']:.2f}x "
              f"| {sp_cpu / row['a_cpu_s_per_col']:.0f} / {sp_wall / row['a_wall_s_per_col']:.0f} "
              f"| {sp_cpu / row['b_cpu_s_per_col']:.0f} / {sp_wall / row['b_wall_s_per_col']:.0f} "
              f"| {row['a_max_rel_tight']:.1e} | {row['b_max_rel_tight']:.1e} | {row['max_rel_b_vs_a']:.1e} "
              f"| {row['a_iters_mean']:.2f} / {row['b_iters_mean']:.2f} |", flush=True)
    print("\n| tech | r_wire | threads | A col/s (wall) | A col/CPU-s | B col/s (wall) | B col/CPU-s |")
    print("|---|---|---|---|---|---|---|")
    for j, t in enumerate(results["a"][0][1]["throughput"]):   # empty for the coupled topology
        tb = results["b"][0][1]["throughput"][j]
        rows_out.append(dict(throughput=True, tech=t["tech"], r_wire_ohm=t["r_wire_ohm"], threads=t["threads"],
                             columns=t["columns"], a_cpu_s=t["cpu_s"], a_wall_s=t["wall_s"], b_cpu_s=tb["cpu_s"],
                             b_wall_s=tb["wall_s"]))
        print(f"| {t['tech']} | {t['r_wire_ohm']:g} | {t['threads']} | {t['columns'] / t['wall_s']:,.0f} "
              f"| {t['columns'] / t['cpu_s']:,.0f} | {tb['columns'] / tb['wall_s']:,.0f} | {tb['columns'] / tb['cpu_s']:,.0f} |")
    with open(a.out, "w") as f:
        json.dump({"cpu": model, "started_utc": f"{started:%Y-%m-%d %H:%M}", "ended_utc": f"{ended:%H:%M}",
                   "load_start": load0, "load_end": load1, "a": str(Path(a.a).resolve()), "b": str(Path(a.b).resolve()),
                   "topology": a.topology, "argv": sys.argv[1:], "rows": rows_out}, f, indent=1)


if __name__ == "__main__":
    main()
