#!/usr/bin/env python
"""Regenerate the default lookup tables shipped in cosim/resources/tables/.

    .venv/bin/python scripts/make_tables.py [--work runs/calibration] [--only sram8t_64,...] [--workers 1]

Each table is ``cosim calibrate`` with the settings below (decoupled topology, seed 0, 64 columns and
16 input vectors per SPICE point), at the technology's default wire resistance (10 ohm per cell:
``<tech>_<rows>_decoupled.parquet``, what ``cosim infer`` takes by default) and, for the study's wire
sweep (configs/study.toml), at 2, 5 and 20 ohm per cell (``<tech>_<rows>_decoupled_r<X>ohm.parquet``).
Which tables, their names and their model forms are the table registry's (cosim.surrogate.registry:
SHIPPED, table_filename, MODEL_FORMS), through which ``cosim infer`` and the study find them. The sweep
folders under --work are resumable: rerunning reuses finished points and only refits. Cost with the compiled device
models (ngspice 46 + OSDI), one point on this 2-core machine under a load of ~6: 8T-SRAM 128 rows 5 s,
256 rows 31 s; 1T-1R 128 rows 2 s, 256 rows 6 s (docs/benchmarks/spice.md).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

#: SPICE points per table: at the technology's default wire resistance, and (fewer: the fit is the same;
#: see VALIDATION.md) at the study's other wire resistances
POINTS = {64: 24, 128: 24, 256: 16}
POINTS_OTHER_R = {64: 12, 128: 12, 256: 8}
COLS, VECTORS, SEED = 64, 16, 0


def tables() -> dict:
    """name (``--only``) -> (registry key, points), for every table the registry lists as shipped
    (cosim.surrogate.registry.SHIPPED); the file name and the model form are the registry's too."""
    from cosim.surrogate.registry import SHIPPED

    out = {}
    for key in SHIPPED:
        r = "" if key.r_wire_ohm is None else f"_r{key.r_wire_ohm:g}ohm"
        out[f"{key.technology}_{key.rows}{r}"] = (key, (POINTS if key.r_wire_ohm is None else POINTS_OTHER_R)[key.rows])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/calibration", help="sweep folders (resumable)")
    ap.add_argument("--only", default=None, help="comma list of table names")
    ap.add_argument("--points", type=int, default=None, help="override the number of points (all tables)")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    from cosim.sweep.calibration import SweepConfig
    from cosim.surrogate.registry import model_form, tables_dir
    from cosim.surrogate.fit import calibrate
    from cosim.errors import CosimError
    from cosim.circuit.technology import get_technology

    known = tables()
    names = args.only.split(",") if args.only else list(known)
    for name in names:
        if name not in known:
            print(f"error: unknown table '{name}' (known: {', '.join(known)})", file=sys.stderr)
            return 1
        key, points = known[name]
        cfg = SweepConfig(tech=get_technology(key.technology, r_wire_ohm=key.r_wire_ohm), rows=key.rows, cols=COLS,
                          topology=key.topology, seed=SEED, vectors=VECTORS)
        form = model_form(key.technology, key.rows)
        try:
            table = calibrate(cfg, args.points or points, Path(args.work) / name, workers=args.workers,
                              log=lambda m: print(f"{name}: {m}", file=sys.stderr), terms=form.terms,
                              n_knots=form.n_knots, orders=form.orders)
        except CosimError as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            return 1
        dest = tables_dir() / key.filename()
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(args.work) / name / "table.parquet", dest)
        print(f"{name}: {table.provenance['n_samples']} samples -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
