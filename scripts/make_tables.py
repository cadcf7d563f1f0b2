#!/usr/bin/env python
"""Regenerate the default lookup tables shipped in cosim/resources/tables/.

    .venv/bin/python scripts/make_tables.py [--work runs/calibration] [--only sram8t_64,...] [--workers 1]

Each table is ``cosim calibrate`` with the settings below (decoupled topology, the technology's default
wire resistance, seed 0, 64 columns and 16 input vectors per SPICE point). The sweep folders under
--work are resumable: rerunning reuses finished points and only refits. The 256-row tables are not
in the list: at the measured cost of one 256-row point on this 2-core machine they could not be
calibrated in the time available (docs/VALIDATION.md).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

#: name -> (technology, rows, points)
TABLES = {
    "sram8t_64": ("sram8t", 64, 2),
    "reram1t1r_64": ("reram1t1r", 64, 3),
    "sram8t_128": ("sram8t", 128, 3),   # 3 points: ~200 s each on an idle core (one took 852 s on the loaded machine)
    "reram1t1r_128": ("reram1t1r", 128, 3),
}
COLS, VECTORS, SEED = 64, 16, 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/calibration", help="sweep folders (resumable)")
    ap.add_argument("--only", default=None, help="comma list of table names")
    ap.add_argument("--points", type=int, default=None, help="override the number of points (all tables)")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    from cosim.calibrate import SweepConfig, calibrate
    from cosim.errors import CosimError
    from cosim.tables import table_filename, tables_dir
    from cosim.technology import get_technology

    names = args.only.split(",") if args.only else list(TABLES)
    for name in names:
        if name not in TABLES:
            print(f"error: unknown table '{name}' (known: {', '.join(TABLES)})", file=sys.stderr)
            return 1
        tech_name, rows, points = TABLES[name]
        cfg = SweepConfig(tech=get_technology(tech_name), rows=rows, cols=COLS, topology="decoupled", seed=SEED,
                          vectors=VECTORS)
        try:
            table = calibrate(cfg, args.points or points, Path(args.work) / name, workers=args.workers,
                              log=lambda m: print(f"{name}: {m}", file=sys.stderr))
        except CosimError as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            return 1
        dest = tables_dir() / table_filename(tech_name, rows, "decoupled")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(args.work) / name / "table.parquet", dest)
        print(f"{name}: {table.provenance['n_samples']} samples -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
