#!/usr/bin/env python
"""Regenerate the default lookup tables shipped in cosim/resources/tables/, byte for byte, from committed code.

    .venv/bin/python scripts/make_tables.py [--work runs/calibration] [--only sram8t_64,...] [--workers 1]
    .venv/bin/python scripts/make_tables.py --check [--only sram8t_64,...]     # rebuild and compare byte for byte
    .venv/bin/python scripts/make_tables.py --out DIR [--only ...]             # write elsewhere (not the shipped files)
    .venv/bin/python scripts/make_tables.py --out DIR --only sram8t_64 --orders 1,2,3,4,s3,s4,s5,s6 --knots 65
                                                                               # another model form (not shipped)

Each table is ``cosim calibrate --solver exact --placements --network-operands vgg-small,resnet18`` with
the settings below (decoupled topology, seed 0, 64 columns and 16 input vectors per point): the exact
solver solves every point and ngspice re-solves a random 2 % of them as a cross-check (the calibration
fails above 1e-6 relative); every third point (2, 5, 8, ...) is a placement-family point (far, near,
alternate, dense) and every third (1, 4, 7, ...) a network point: R-row slices of every binary layer of
the reference VGG-small and ResNet-18 ($COSIM_MODELS) on 16 CIFAR-10 test images ($COSIM_DATA) drawn
with a fixed seed from test images 1000 on (cosim.surrogate.netslices.calibration_images), plain and
with BinSparX's flips. Tables are made at the technology's default wire resistance (10 ohm per cell:
``<tech>_<rows>_decoupled.parquet``, what ``cosim infer`` takes by default) and, for the study's wire sweep (configs/study.toml), at 2, 5 and 20 ohm per cell
(``<tech>_<rows>_decoupled_r<X>ohm.parquet``); and coupled (``--only sram8t_64_coupled,reram1t1r_64_coupled``: a
line along each row shared by the 64 columns, ``<tech>_64_coupled.parquet``) at 64 rows and 10 ohm, whose model
adds the column-position and row-load variables (cosim.surrogate.model.coupled_operands) to the 64-row form. Which
tables, their names and their model forms are the table registry's (cosim.surrogate.registry: SHIPPED,
TableKey.name, table_filename, MODEL_FORMS).

Points: 100 times the points (so the samples: points x 64 columns x 16 vectors) of the ngspice-made
tables shipped before, which had 24 points (24,576 samples) at the default wire resistance and 64 or
128 rows, 16 at 256 rows, and half of those at the other wire resistances (the fit there needs no more:
docs/VALIDATION.md). So 2,400 points (2,457,600 samples) at 64 and 128 rows, 1,600 at 256 rows, half at
2, 5 and 20 ohm. The exact solver makes that affordable, the ngspice cross-check keeps it honest.

Reproducible: the same commit, technology files, device models, ngspice and Python packages give the
same bytes. The provenance keeps technology, size, topology, solver, ngspice version (of the
cross-check), code version, seed and the network operands' checkpoints and images (by SHA-256), and
leaves out what changes from run to run: no build date (``code_date_utc`` is the commit's date instead)
and no solve seconds. ``--check`` rebuilds the tables from scratch in a temporary folder and compares
them with the shipped files byte for byte (naming the provenance fields or arrays that differ). The
provenance names the commit a table was made at (``code_version``, ``0.1.0+g<commit>``, and
``code_date_utc``), so the bytes are reproduced at that commit: run ``--check`` there (the tables' own
commit is a later one, and any later commit rebuilds a table that differs in those two fields alone as
long as the code that makes it is unchanged, which ``--check`` says). All 24 shipped tables were written
at ``996b2f1`` (docs/error_budget/README.md, "All shipped tables rebuilt"); the 64-row tables before them
were written at ``d45291c`` (8T-SRAM) and ``a177db4`` (1T-1R), where ``--check --only sram8t_64`` and
``--check --only reram1t1r_64_r2ohm`` gave the same bytes. The two coupled tables were written at ``6744047``, where
``--check --only sram8t_64_coupled,reram1t1r_64_coupled`` gave the same bytes (docs/VALIDATION.md, "Coupled-topology
tables"). Writing the shipped tables from
a working tree with uncommitted changes to the code (cosim, device_models, this script) is refused unless
``--allow-dirty`` (their provenance would say ``+dirty``).

Cost. Measured 2026-12-06 12:09-12:16 UTC on this project's machine (`lscpu` model name "AMD EPYC", 2
cores shared with other jobs, 1-minute load average 5.1 at 12:13), ``--only sram8t_64,sram8t_64_r2ohm,sram8t_64_r5ohm,
sram8t_64_r20ohm`` at ``nice -n 19`` (2,400 + 3 x 1,200 points): 400 s wall, 180 + 25 CPU s (ngspice
children included), peak memory 2.3 GB, of which ``sram8t_64`` 236 s wall, 56 s of it solving its 2,400 points (23 ms per point:
exact solve, deck hash and point file), the rest the ngspice cross-check (48 points), loading the 2.46 M
samples and the fit; ``--check --only sram8t_64`` 413 s wall under a load of 5-7 (91 + 11 CPU s). A sweep's
decks are now filled into a template of the array's lines (cosim.circuit.netlist) instead of written whole
for their hash, which was 85 % of a point: per deck 12.8 -> 1.4 ms (8T-SRAM 64 x 64), 16.4 -> 1.9 ms (1T-1R
64 x 64), 28.9 -> 3.0 ms (8T-SRAM 128 x 64), 64.6 -> 6.6 ms (8T-SRAM 256 x 64), CPU time over 58 decks after
the first two (12:27 UTC, load 7). What follows was measured before that.

Earlier costs. Measured 2026-12-06 on this project's machine (`lscpu` model name "AMD EPYC", 2 cores, shared with
other jobs, 1-minute load average 4.6-7.9): ``--only sram8t_64`` (2,400 points, 2,457,600 samples) took
1,471 s wall, 535 s of it solving the points (0.22 s per point with deck hash and point file), the rest
the ngspice cross-check (48 points), loading the samples and the chunked least-squares fit; peak memory
4.8 GB (docs/error_budget/README.md). Per-size rates then (``scripts/table_costs.py 6`` as it was, 6 points
each, under a load of about 8 with a second heavy job; s per point solve + deck hash / s per ngspice
cross-check point / s per QR chunk of the fit as it was, chunks of 200,000,000 / (4 x columns)
samples): 8T-SRAM 64 rows 1.05 / 2.7 / 48 (627 columns), 128 rows
0.94 / 7.5 / 151 (2,795), 256 rows 2.1 / 17 / 264 (5,070); 1T-1R 64 rows 0.46 / 2.2 / 106 (1,254),
128 rows 0.78 / 5.0 / 193 (2,112), 256 rows 3.7 / 24 / 222 (2,112; load 10 by then). Estimate for all
24 tables, one at a time on these 2 cores: at those rates about 90 h (fit 75 h, solve 12 h, cross-check
1.5 h, loading 1 h; the four 8T-SRAM 256-row tables alone 34 h); the 64-row build itself ran 2.5-5x faster than those rates predict
(solve 0.22 against 1.05 s per point; cross-check, loading and fit together 15.5 min against 25 min for
the fit alone), which gives about 20-35 h. The fit (a QR of samples x (knots x terms) per
chunk) was 85 % of it at 128 and 256 rows. Since then the fit goes count by count and knot by knot
(cosim.surrogate.fit.fit_arrays, the same least-squares problem): the 64-row table above rebuilt from
its 2,400 solved points, cross-check included, in 55 CPU s instead of 337 (docs/error_budget/README.md),
so solving the points and the ngspice cross-check set the cost now. The fit's part that does not grow with
the samples (the knots x terms triangle and its solve), ``scripts/table_costs.py 1`` (2026-12-06 10:39 UTC,
1-minute load about 5): 8T-SRAM 64 / 128 / 256 rows 0.3 / 11.9 / 51.1 CPU s, 1T-1R 0.8 / 17.1 / 18.7 CPU s.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import filecmp
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: points per table at the technology's default wire resistance and at the study's other wire
#: resistances: 100 x the 24 / 24 / 16 and 12 / 12 / 8 points of the ngspice-made tables shipped before
POINTS = {64: 2400, 128: 2400, 256: 1600}
POINTS_OTHER_R = {64: 1200, 128: 1200, 256: 800}
#: points of the coupled 64-row tables (no earlier table to multiply): 8T-SRAM 3 x, 1T-1R 3 x the points of the
#: first coupled tables (docs/VALIDATION.md, "Coupled-topology tables"), whose fit (124 terms) costs most
POINTS_COUPLED = {"sram8t": {64: 1200}, "reram1t1r": {64: 600}}
COLS, VECTORS, SEED = 64, 16, 0
SOLVER = "exact"
#: the networks whose operands fill every third point, on IMAGES CIFAR-10 test images (calibration_images)
NETWORKS = ("vgg-small", "resnet18")
IMAGES = 16
#: provenance fields that change from run to run; a reproducible table leaves them out
UNREPRODUCIBLE = ("date_utc", "spice_seconds")
#: the provenance fields that name the code a table was made at (its commit and the commit's date)
CODE_FIELDS = ("provenance.code_version:", "provenance.code_date_utc:")
#: what a dirty working tree means here: uncommitted changes to these (the tables themselves excepted)
CODE_PATHS = ("cosim", "device_models", "scripts/make_tables.py", ":(exclude)cosim/resources/tables")


def tables() -> dict:
    """name (``--only``) -> (registry key, points), for every table the registry lists as shipped
    (cosim.surrogate.registry.SHIPPED); the file name and the model form are the registry's too."""
    from cosim.surrogate.registry import SHIPPED

    return {key.name: (key, (POINTS_COUPLED[key.technology] if key.topology == "coupled" else
                             POINTS if key.r_wire_ohm is None else POINTS_OTHER_R)[key.rows]) for key in SHIPPED}


def dirty_paths() -> list[str]:
    """Uncommitted changes to the code that makes the tables (``git status --porcelain`` lines)."""
    run = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
                         capture_output=True, text=True, timeout=30)
    return [line for line in run.stdout.splitlines() if line.strip()]


def code_date_utc() -> str | None:
    """The date of the checkout's commit (UTC), or None outside git."""
    run = subprocess.run(["git", "-C", str(ROOT), "show", "-s", "--format=%ct", "HEAD"], capture_output=True,
                         text=True, timeout=30)
    if run.returncode != 0 or not run.stdout.strip():
        return None
    return _dt.datetime.fromtimestamp(int(run.stdout.strip()), _dt.timezone.utc).isoformat(timespec="seconds")


def build(key, points: int, work: Path, dest: Path, operands, workers: int = 1, log=None, form=None):
    """Calibrate table ``key`` (a registry TableKey) from ``points`` points in the sweep folder ``work``
    (resumable) and write it, reproducibly, to ``dest``. ``form``: the model form (a registry ModelForm;
    default the registry's for the key: technology, rows and wire resistance). Returns the LookupTable written."""
    from cosim.circuit.technology import get_technology
    from cosim.surrogate.fit import calibrate
    from cosim.surrogate.registry import model_form
    from cosim.sweep.calibration import SweepConfig

    cfg = SweepConfig(tech=get_technology(key.technology, r_wire_ohm=key.r_wire_ohm), rows=key.rows, cols=COLS,
                      topology=key.topology, seed=SEED, vectors=VECTORS, solver=SOLVER, placements=True,
                      operands=operands)
    form = form or model_form(key.technology, key.rows, r_wire_ohm=key.r_wire_ohm)
    table = calibrate(cfg, points, work, workers=workers, log=log, progress=log is not None, terms=form.terms,
                      n_knots=form.n_knots, orders=form.orders, cache=False)
    for k in UNREPRODUCIBLE:
        table.provenance.pop(k, None)
    table.provenance["code_date_utc"] = code_date_utc()
    table.provenance["made_by"] = "scripts/make_tables.py"
    dest.parent.mkdir(parents=True, exist_ok=True)
    table.save(dest)
    return table


def differences(a: Path, b: Path) -> list[str]:
    """What differs between two table files: nothing when their bytes are equal; else the provenance and
    meta fields and the arrays that differ (or that the bytes differ and the contents do not)."""
    import numpy as np

    from cosim.surrogate.tables import load_table

    if filecmp.cmp(a, b, shallow=False):
        return []
    ta, tb = load_table(a), load_table(b)
    out = []
    for part, da, db in (("provenance", ta.provenance, tb.provenance), ("meta", ta.meta, tb.meta)):
        for k in sorted(set(da) | set(db)):
            if k != "source_path" and da.get(k) != db.get(k):
                out.append(f"{part}.{k}: {da.get(k)!r} vs {db.get(k)!r}"[:300])
    for k in sorted(set(ta.arrays) | set(tb.arrays)):
        x, y = ta.arrays.get(k), tb.arrays.get(k)
        if x is None or y is None or x.shape != y.shape:
            out.append(f"array {k}: present or shaped differently")
        elif not np.array_equal(x, y):
            out.append(f"array {k}: largest difference {np.max(np.abs(x - y)):.3e}")
    return out or ["the bytes differ, the contents do not (Parquet or library versions)"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--work", default="runs/calibration", help="sweep folders (resumable)")
    ap.add_argument("--only", default=None, help="comma list of table names")
    ap.add_argument("--points", type=int, default=None, help="override the number of points (all tables)")
    ap.add_argument("--workers", type=int, default=1, help="processes of the ngspice cross-check")
    ap.add_argument("--out", default=None, help="write the tables here instead of cosim/resources/tables")
    ap.add_argument("--check", action="store_true",
                    help="rebuild the tables from scratch in a temporary folder and compare them byte for byte "
                         "with the shipped files (exit 1 where any differs)")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write the shipped tables even from a working tree with uncommitted code changes")
    ap.add_argument("--orders", default=None, help="model form: moment orders (cosim calibrate --orders; default: "
                                                   "the registry's form, MODEL_FORMS)")
    ap.add_argument("--terms", default=None, help="model form: term set (cosim calibrate --terms)")
    ap.add_argument("--knots", type=int, default=None, help="model form: ON-count knots (cosim calibrate --knots)")
    args = ap.parse_args(argv)

    from cosim.errors import CosimError
    from cosim.surrogate.registry import tables_dir

    known = tables()
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else list(known)
    bad = [n for n in names if n not in known]
    if bad:
        print(f"error: unknown table '{bad[0]}' (known: {', '.join(known)})", file=sys.stderr)
        return 1
    if args.points is not None and args.points < 1:
        print(f"error: --points must be >= 1, got {args.points}", file=sys.stderr)
        return 1
    shipped = tables_dir()
    if args.check and args.out:
        print("error: --check compares with the shipped tables; it takes no --out", file=sys.stderr)
        return 1
    custom = args.orders is not None or args.terms is not None or args.knots is not None
    if custom and (args.check or not args.out or Path(args.out).resolve() == shipped.resolve()):
        print("error: --orders, --terms and --knots make tables of another model form than the registry's: "
              "they take --out (a folder other than the shipped tables') and no --check", file=sys.stderr)
        return 1
    writes_shipped = not args.check and (args.out is None or Path(args.out).resolve() == shipped.resolve())
    if writes_shipped and not args.allow_dirty:
        dirty = dirty_paths()
        if dirty:
            print(f"error: the working tree has uncommitted changes to the code ({dirty[0].strip()}"
                  f"{f' and {len(dirty) - 1} more' if len(dirty) > 1 else ''}): commit them first, or pass "
                  "--allow-dirty (the tables' provenance will say +dirty)", file=sys.stderr)
            return 1
    try:
        from cosim.surrogate.netslices import calibration_operands
        operands = calibration_operands(NETWORKS, images=IMAGES)
    except CosimError as e:
        print(f"error: network operands: {e}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="make_tables_") as tmp:
        work = Path(tmp) / "work" if args.check else Path(args.work)
        out_dir = Path(tmp) / "tables" if args.check else (Path(args.out) if args.out else shipped)
        failed = 0
        for name in names:
            key, points = known[name]
            dest = out_dir / key.filename()
            try:
                form = None
                if custom:
                    from cosim.surrogate.registry import model_form
                    orders = args.orders.split(",") if args.orders is not None else None
                    form = model_form(key.technology, key.rows, args.terms, args.knots, orders,
                                      r_wire_ohm=key.r_wire_ohm)
                table = build(key, args.points or points, work / name, dest, operands, workers=args.workers,
                              log=lambda m, name=name: print(f"{name}: {m}", file=sys.stderr), form=form)
            except CosimError as e:
                print(f"error: {name}: {e}", file=sys.stderr)
                return 1
            if not args.check:
                print(f"{name}: {table.provenance['n_samples']} samples -> {dest}")
                continue
            ref = shipped / key.filename()
            diff = differences(dest, ref) if ref.is_file() else [f"no shipped table {ref}"]
            if diff:
                failed += 1
                print(f"{name}: DIFFERS from {ref}: " + "; ".join(diff))
                if all(d.startswith(CODE_FIELDS) for d in diff):
                    print(f"{name}: only the code version differs: --check reproduces a table byte for byte at the "
                          "commit its provenance names (code_version); check that commit out to compare there")
            else:
                print(f"{name}: identical to {ref} ({dest.stat().st_size} bytes)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
