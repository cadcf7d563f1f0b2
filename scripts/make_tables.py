#!/usr/bin/env python
"""Regenerate the default lookup tables shipped in cosim/resources/tables/.

    .venv/bin/python scripts/make_tables.py [--work runs/calibration] [--only sram8t_64,...] [--workers 1]

Each table is ``cosim calibrate`` with the settings below (decoupled topology, seed 0, 64 columns and
16 input vectors per SPICE point), at the technology's default wire resistance (10 ohm per cell:
``<tech>_<rows>_decoupled.parquet``, what ``cosim infer`` takes by default) and, for the study's wire
sweep (configs/study.toml), at 2, 5 and 20 ohm per cell (``<tech>_<rows>_decoupled_r<X>ohm.parquet``;
the study finds a table by its calibration provenance, not its name). The sweep folders under
--work are resumable: rerunning reuses finished points and only refits. Cost with the compiled device
models (ngspice 46 + OSDI), one point on this 2-core machine under a load of ~6: 8T-SRAM 128 rows 5 s,
256 rows 31 s; 1T-1R 128 rows 2 s, 256 rows 6 s (docs/benchmarks/spice.md).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

#: name -> (technology, rows, points, wire resistance per cell in ohm; None = the technology's default)
TABLES = {
    "sram8t_64": ("sram8t", 64, 24, None),
    "reram1t1r_64": ("reram1t1r", 64, 24, None),
    "sram8t_128": ("sram8t", 128, 24, None),
    "reram1t1r_128": ("reram1t1r", 128, 24, None),
    "sram8t_256": ("sram8t", 256, 16, None),
    "reram1t1r_256": ("reram1t1r", 256, 16, None),
}
#: the study's other wire resistances: fewer points per table (the fit is the same; see VALIDATION.md)
for _tech in ("sram8t", "reram1t1r"):
    for _rows, _points in ((64, 12), (128, 12), (256, 8)):
        for _r in (2.0, 5.0, 20.0):
            TABLES[f"{_tech}_{_rows}_r{_r:g}ohm"] = (_tech, _rows, _points, _r)
COLS, VECTORS, SEED = 64, 16, 0
#: the surrogate's model form per (technology, rows) is the package's (cosim.surrogate.registry.MODEL_FORMS):
#: what ``cosim calibrate`` fits by default


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/calibration", help="sweep folders (resumable)")
    ap.add_argument("--only", default=None, help="comma list of table names")
    ap.add_argument("--points", type=int, default=None, help="override the number of points (all tables)")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    from cosim.sweep.calibration import SweepConfig
    from cosim.surrogate.registry import model_form
    from cosim.surrogate.fit import calibrate
    from cosim.errors import CosimError
    from cosim.surrogate.tables import table_filename, tables_dir
    from cosim.circuit.technology import get_technology

    names = args.only.split(",") if args.only else list(TABLES)
    for name in names:
        if name not in TABLES:
            print(f"error: unknown table '{name}' (known: {', '.join(TABLES)})", file=sys.stderr)
            return 1
        tech_name, rows, points, r_wire_ohm = TABLES[name]
        cfg = SweepConfig(tech=get_technology(tech_name, r_wire_ohm=r_wire_ohm), rows=rows, cols=COLS,
                          topology="decoupled", seed=SEED, vectors=VECTORS)
        form = model_form(tech_name, rows)
        try:
            table = calibrate(cfg, args.points or points, Path(args.work) / name, workers=args.workers,
                              log=lambda m: print(f"{name}: {m}", file=sys.stderr), terms=form.terms,
                              n_knots=form.n_knots, orders=form.orders)
        except CosimError as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            return 1
        dest = tables_dir() / table_filename(tech_name, rows, "decoupled")
        if r_wire_ohm is not None:
            dest = dest.with_name(f"{dest.stem}_r{r_wire_ohm:g}ohm.parquet")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(args.work) / name / "table.parquet", dest)
        print(f"{name}: {table.provenance['n_samples']} samples -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
