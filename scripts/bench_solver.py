"""Benchmark and validation of the exact array solver (cosim.circuit.solver) side by side with ngspice on the
same columns.

    PYTHONPATH=. .venv/bin/python scripts/bench_solver.py [--rows 64 128 256] [--cols 8] [--quick]

For each technology (8T-SRAM, 1T-1R), topology, size and wire resistance (2 and 20 ohm per cell) one
array is built whose columns hold the issue's patterns (all on, random, skewed 10 %, 90 % and 100 %
dense, alternate rows) and whose input vectors are random ones, all ones, alternate rows, and every
end-clustered block (the first n rows = near end, the last n rows = far end, for n = 1..R; with
--quick every 8th n). It reports the largest relative difference of the solver's column currents from
ngspice's (the decks' reltol 1e-6, and a deck with reltol 1e-9: ngspice converged further), the
time per column of each (ngspice: wall time of run_array over K x C columns, one process; solver: exact
cells with one thread and two; decoupled: also the tabulated cells, the default), and the decoupled
throughput on 128-row random columns (wall time, and per CPU second of the process: the figure a shared
machine's load does not dilute). Prints a Markdown table and writes the rows as JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone

import numpy as np

from cosim.circuit.netlist import ArraySpec, build_netlist, resolve_models, sense_names
from cosim.circuit.solver import cell_table, solve_array, tabulated
from cosim.circuit.spice import run_array, uses_klu
from cosim.circuit.spice.backends import run_subprocess
from cosim.circuit.technology import get_technology


def columns(rows: int, cols: int, rng) -> np.ndarray:
    kinds = [np.ones(rows), rng.random(rows) < 0.5, rng.random(rows) < 0.1, rng.random(rows) < 0.9,
             np.arange(rows) % 2 == 0]
    w = np.stack([kinds[c % len(kinds)] if c < len(kinds) else rng.random(rows) < 0.5 for c in range(cols)], 1)
    return w.astype(np.uint8)


def vectors(rows: int, rng, stride: int) -> np.ndarray:
    out = [rng.integers(0, 2, rows) for _ in range(4)] + [np.ones(rows, int), np.arange(rows) % 2]
    for n in range(1, rows + 1, stride):
        near, far = np.zeros(rows, int), np.zeros(rows, int)
        near[:n] = 1
        far[rows - n:] = 1
        out += [near, far]
    return np.array(out, np.uint8)


def spice_tight(spec, x, w, reltol=1e-9):
    deck = build_netlist(spec, x, w, klu=uses_klu("subprocess"), extra_options=f"reltol={reltol:g}",
                         models=resolve_models(None))
    data, _ = run_subprocess(deck, x.shape[0])
    return np.stack([data[f"i({n})"] for n in sense_names(spec)], axis=1)


def rel(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12 / 1e-6)))  # 1e-12 A absolute floor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--techs", nargs="+", default=["sram8t", "reram1t1r"])
    ap.add_argument("--topologies", nargs="+", default=["decoupled", "coupled"])
    ap.add_argument("--r-wire", type=float, nargs="+", default=[2.0, 20.0])
    ap.add_argument("--quick", action="store_true", help="every 8th end-clustered block count only")
    ap.add_argument("--no-tight", action="store_true", help="skip the reltol 1e-9 ngspice reference")
    ap.add_argument("--network-runs", type=int, default=4,
                    help="arrays of real operands per case: R-row slices of the reference VGG-small's binary layers on "
                         "CIFAR-10 test images (cosim.surrogate.netslices; 0: none, or when the shared data are absent)")
    ap.add_argument("--out", default="solver_bench.json")
    a = ap.parse_args()
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("Model name")), "?")
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, CPU {model}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}, python {platform.python_version()}", flush=True)
    rows_out = []
    print("| tech | topology | rows | r_wire | K x C | max rel vs ngspice (reltol 1e-6) | vs ngspice (1e-9) "
          "| ngspice ms/col | solver ms/col 1 thr | 2 thr | speed-up 1 thr | iters "
          "| table cells: vs ngspice (1e-9) | ms/col 1 thr | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for tech in a.techs:
        for topo in a.topologies:
            for R in a.rows:
                for rw in a.r_wire:
                    rng = np.random.default_rng(R + int(rw))
                    stride = 8 if a.quick or R > 128 else 1
                    x, w = vectors(R, rng, stride), columns(R, a.cols, rng)
                    spec = ArraySpec(get_technology(tech, r_wire_ohm=rw), R, a.cols, topo)
                    t0 = time.perf_counter()
                    ref = run_array(spec, x, w).column_current_a
                    t_sp = time.perf_counter() - t0
                    tight = None if a.no_tight else spice_tight(spec, x, w)
                    s1 = solve_array(spec, x, w, threads=1, cells="exact")
                    s2 = solve_array(spec, x, w, threads=2, cells="exact")
                    n = x.shape[0] * a.cols
                    row = dict(tech=tech, topology=topo, rows=R, r_wire_ohm=rw, K=int(x.shape[0]), C=a.cols,
                               max_rel_default=rel(s1.column_current_a, ref),
                               max_rel_tight=None if tight is None else rel(s1.column_current_a, tight),
                               spice_default_vs_tight=None if tight is None else rel(ref, tight),
                               ngspice_s_per_col=t_sp / n, solver_s_per_col_1t=s1.seconds / n,
                               solver_s_per_col_2t=s2.seconds / n, iters_max=int(s1.iterations.max()),
                               threads_equal=bool(np.array_equal(s1.column_current_a, s2.column_current_a)))
                    tab_cols = "| - | - | - |"
                    if tabulated(spec):
                        cell_table(spec.tech)            # built once per technology, outside the timing
                        st = solve_array(spec, x, w, threads=1, cells="table")
                        row.update(table_max_rel_tight=None if tight is None else rel(st.column_current_a, tight),
                                   table_max_rel_exact=rel(st.column_current_a, s1.column_current_a),
                                   table_s_per_col_1t=st.seconds / n)
                        tt2 = "-" if tight is None else f"{row['table_max_rel_tight']:.1e}"
                        tab_cols = f"| {tt2} | {st.seconds / n * 1e3:.4f} | {t_sp / st.seconds:.2g}x |"
                    rows_out.append(row)
                    tt = "-" if tight is None else f"{row['max_rel_tight']:.1e}"
                    print(f"| {tech} | {topo} | {R} | {rw:g} | {x.shape[0]} x {a.cols} | {row['max_rel_default']:.1e} "
                          f"| {tt} | {t_sp / n * 1e3:.3f} | {s1.seconds / n * 1e3:.4f} | {s2.seconds / n * 1e3:.4f} "
                          f"| {t_sp / s1.seconds:.2g}x | {row['iters_max']} {tab_cols}", flush=True)
    # network patterns: real operands of a trained BNN
    if a.network_runs:
        try:
            from cosim.surrogate.netslices import load_network
            net = load_network(images=16)
        except Exception as e:  # noqa: BLE001 - the shared weights / data are optional
            net = None
            print(f"\n(network patterns skipped: {e})")
        if net is not None:
            print("\n| tech | topology | rows | r_wire | arrays x K x C (network slices) | max rel vs ngspice (reltol 1e-6) "
                  "| vs ngspice (1e-9) | ngspice ms/col | solver ms/col 1 thr | table cells: vs ngspice (1e-9) "
                  "| ms/col 1 thr |")
            print("|---|---|---|---|---|---|---|---|---|---|---|")
            for tech in a.techs:
                for topo in a.topologies:
                    for R in a.rows:
                        for rw in a.r_wire:
                            spec = ArraySpec(get_technology(tech, r_wire_ohm=rw), R, a.cols, topo)
                            worst_d = worst_t = worst_tt = 0.0
                            t_sp = t_so = t_st = 0.0
                            n = 0
                            for run in range(a.network_runs):
                                x, w, _ = net.sample(R, run, 0, 16, a.cols)
                                t0 = time.perf_counter()
                                ref = run_array(spec, x, w).column_current_a
                                t_sp += time.perf_counter() - t0
                                tight = None if a.no_tight else spice_tight(spec, x, w)
                                s1 = solve_array(spec, x, w, threads=1, cells="exact")
                                t_so += s1.seconds
                                if tabulated(spec):
                                    cell_table(spec.tech)
                                    st = solve_array(spec, x, w, threads=1, cells="table")
                                    t_st += st.seconds
                                    if tight is not None:
                                        worst_tt = max(worst_tt, rel(st.column_current_a, tight))
                                n += x.shape[0] * a.cols
                                worst_d = max(worst_d, rel(s1.column_current_a, ref))
                                if tight is not None:
                                    worst_t = max(worst_t, rel(s1.column_current_a, tight))
                            rows_out.append(dict(network=True, tech=tech, topology=topo, rows=R, r_wire_ohm=rw,
                                                 runs=a.network_runs, max_rel_default=worst_d,
                                                 max_rel_tight=None if a.no_tight else worst_t,
                                                 ngspice_s_per_col=t_sp / n, solver_s_per_col_1t=t_so / n,
                                                 table_max_rel_tight=worst_tt if tabulated(spec) and not a.no_tight else None,
                                                 table_s_per_col_1t=t_st / n if tabulated(spec) else None))
                            tt = "-" if a.no_tight else f"{worst_t:.1e}"
                            tab = (f"| {'-' if a.no_tight else f'{worst_tt:.1e}'} | {t_st / n * 1e3:.4f} |"
                                   if tabulated(spec) else "| - | - |")
                            print(f"| {tech} | {topo} | {R} | {rw:g} | {a.network_runs} x 16 x {a.cols} | {worst_d:.1e} | {tt} "
                                  f"| {t_sp / n * 1e3:.3f} | {t_so / n * 1e3:.4f} {tab}", flush=True)
    # decoupled throughput: 128-row random columns
    print("\n| tech | cells | r_wire | rows | columns | threads | column solves / s | per CPU second |")
    print("|---|---|---|---|---|---|---|---|")
    for tech in a.techs:
        for cells in ("exact", "table"):
            for rw in (2.0, 10.0):
                rng = np.random.default_rng(0)
                spec = ArraySpec(get_technology(tech, r_wire_ohm=rw), 128, 128, "decoupled")
                x, w = rng.integers(0, 2, (64, 128)), rng.integers(0, 2, (128, 128))
                solve_array(spec, x[:1], w, cells=cells)
                for th in (1, 2):
                    c0 = time.process_time()
                    s = solve_array(spec, x, w, threads=th, cells=cells)
                    cpu_s = time.process_time() - c0
                    rate = x.shape[0] * 128 / s.seconds
                    rows_out.append(dict(throughput=True, tech=tech, cells=cells, r_wire_ohm=rw, rows=128,
                                         columns=x.shape[0] * 128, threads=th, cols_per_s=rate,
                                         cols_per_cpu_s=x.shape[0] * 128 / cpu_s))
                    print(f"| {tech} | {cells} | {rw:g} | 128 | {x.shape[0] * 128} | {th} | {rate:,.0f} "
                          f"| {x.shape[0] * 128 / cpu_s:,.0f} |", flush=True)
    with open(a.out, "w") as f:
        json.dump({"cpu": model, "date_utc": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M}",
                   "argv": sys.argv[1:], "rows": rows_out}, f, indent=1)


if __name__ == "__main__":
    main()
