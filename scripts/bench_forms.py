#!/usr/bin/env python
"""Read cost of lookup tables of other model forms, side by side on the same operands.

    .venv/bin/python scripts/bench_forms.py LABEL=TABLE.parquet [LABEL=TABLE.parquet ...] [--vectors 16384]

All tables must have the same rows. One thread; random 0/1 inputs (density 0.5) of ``--vectors`` vectors
against 64 random 0/1 weight columns, the weights prepared once (as the CiM layers read a cached tile);
``Surrogate.read`` (ADC codes, the table's default ideal-reference ADC) of every table in turn, ``--repeat``
rounds of 5 reads each, the best round's process CPU time per read. Prints, per table, CPU seconds per 10^6
column reads (vectors x columns), its moments, variables and terms, and whether the C kernel's fused fast
path took it (``cosim.surrogate.kernel.fused_available``: at most 15 moments, 31 variables and 128 terms);
and the ideal float32 product ``x @ w`` of the same operands, with the 1-minute load average at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("tables", nargs="+", help="LABEL=PATH of each table")
    ap.add_argument("--vectors", type=int, default=16384)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)

    import torch

    from cosim.surrogate.evaluate import Surrogate
    from cosim.surrogate.tables import load_table

    torch.set_num_threads(1)
    surs = {}
    for spec in args.tables:
        label, sep, path = spec.partition("=")
        if not sep:
            print(f"error: '{spec}' is not LABEL=PATH", file=sys.stderr)
            return 1
        surs[label] = Surrogate(load_table(path))
    rows = {s.rows for s in surs.values()}
    if len(rows) != 1:
        print(f"error: the tables have different rows ({sorted(rows)})", file=sys.stderr)
        return 1
    r, n, c = rows.pop(), args.vectors, 64
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(n, r, generator=g) < 0.5).float()
    w = (torch.rand(r, c, generator=g) < 0.5).float()
    pws = {k: s.prepare(w) for k, s in surs.items()}
    info = {}
    for k, s in surs.items():
        lib = s._kernel()
        info[k] = (len(s.orders), s.n_variables, len(s.terms), bool(lib is not None and s._fused(lib, x, pws[k], 1)))
        s.read(x, pws[k])
    best = {k: float("inf") for k in surs}
    ideal = float("inf")
    for _ in range(args.repeat):
        for k, s in surs.items():
            c0 = time.process_time()
            for _ in range(5):
                s.read(x, pws[k])
            best[k] = min(best[k], (time.process_time() - c0) / 5)
        c0 = time.process_time()
        for _ in range(5):
            x @ w
        ideal = min(ideal, (time.process_time() - c0) / 5)
    per = 1e6 / (n * c)
    print(f"{r} rows, {n} vectors x {c} columns, 1-minute load {os.getloadavg()[0]:.1f}")
    print(f"ideal product x @ w: {ideal * per:.4f} CPU s per 10^6 column reads")
    for k, (e, v, t, fused) in info.items():
        print(f"{k}: {best[k] * per:.4f} CPU s per 10^6 column reads ({best[k] / ideal:.1f}x the ideal product), "
              f"{e} moments, {v} variables, {t} terms, fused fast path: {'yes' if fused else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
