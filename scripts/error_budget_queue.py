"""Error budgets of many configurations, one after another (issue 16): every configuration of the study's grid
(cosim.study.budget.GRID) that the filters keep and that `docs/error_budget.csv` holds no row for yet (a row
on the configuration's shipped table, its reference, and at least --images images) runs through
`scripts/error_budget.py` into `docs/error_budget/runs/<name>/`, adding its row to the CSV when it finishes.
Resumable: a configuration interrupted part-way continues from its saved chunks, a finished one is skipped.
Cheapest first (fewer rows, ideal ADC references before calibrated ones at 128 and 256 rows); with ``--study
docs/report/cells.jsonl`` (the study's cells) the configurations whose study cell did not stop at chance come
first, cheapest first among them: where the surrogate leaves a network above chance is where its error can move
a reported accuracy most.

    nice -n 19 .venv/bin/python scripts/error_budget_queue.py --rows 64 --dry-run
    nice -n 19 .venv/bin/python scripts/error_budget_queue.py --rows 64 128 --networks vgg-small
    nice -n 19 .venv/bin/python scripts/error_budget_queue.py --rows 128 --study docs/report/cells.jsonl
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_name(network: str, tech: str, rows: int, r_wire_ohm: float, adc_reference: str, binsparx: bool) -> str:
    return (f"{'vgg' if network == 'vgg-small' else network}_{tech}_{rows}_{r_wire_ohm:g}ohm_{adc_reference}"
            + ("_bsx" if binsparx else ""))


def measured(csv_path: Path, images: int, reference: str) -> set[tuple]:
    """(budget key, table sha256) of the CSV's rows with at least ``images`` images of ``reference``."""
    from cosim.study.report import row_budget_key

    out: set[tuple] = set()
    if not csv_path.is_file():
        return out
    with csv_path.open(newline="") as f:
        for r in csv.DictReader(f):
            try:
                if int(float(r["n_images"])) < images or (r.get("reference") or "") != reference:
                    continue
                out.add((row_budget_key(r), r.get("table_sha256") or ""))
            except (KeyError, ValueError):
                continue
    return out


def plan(networks, techs, rows, r_wires, references, binsparx, *, csv_path: Path, images: int,
         reference: str = "certified") -> list[dict]:
    """The configurations left to run, cheapest first, each with its shipped table's path and SHA-256."""
    from cosim.provenance import sha256_file
    from cosim.study.report import budget_key
    from cosim.surrogate.registry import lookup

    done = measured(csv_path, images, reference)
    tables = {(tech, ro, rw): lookup(tech, ro, rw).provenance["source_path"]
              for tech in techs for ro in rows for rw in r_wires}
    shas = {k: sha256_file(Path(path)) for k, path in tables.items()}
    todo = []
    for ro in sorted(rows):
        for adc in sorted(references, key=lambda a: (a == "calibrated") if ro > 64 else (a == "ideal")):
            for rw in r_wires:
                for tech in techs:
                    for net in networks:
                        for bsx in sorted(binsparx, reverse=True):
                            path, sha = tables[tech, ro, rw], shas[tech, ro, rw]
                            if (budget_key(net, tech, ro, rw, adc, bsx), sha) in done:
                                continue
                            todo.append({"network": net, "tech": tech, "rows": ro, "r_wire_ohm": rw,
                                         "adc_reference": adc, "binsparx": bsx, "table": path, "table_sha256": sha,
                                         "name": run_name(net, tech, ro, rw, adc, bsx)})
    return todo


def above_chance(cells_path: Path) -> set[tuple]:
    """The budget keys (cosim.study.report.cell_budget_key) of the study's cells in ``cells_path`` (the report's
    cells.jsonl) that did not stop at chance, among those a budget applies to."""
    import json

    from cosim.study.config import Cell
    from cosim.study.report import cell_budget_key

    out: set[tuple] = set()
    try:
        lines = cells_path.read_text().splitlines()
    except OSError as e:
        raise SystemExit(f"error: --study {cells_path}: {e.strerror or e}")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            cell = Cell(**entry["payload"]["cell"])
            stopped = bool(entry["result"].get("stopped_at_chance"))
        except (ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"error: --study {cells_path} line {n} is not a study cell ({e})")
        key = cell_budget_key(cell)
        if key is not None and not stopped:
            out.add(key)
    return out


def main(argv: list[str] | None = None) -> int:
    from cosim.study.budget import GRID

    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--networks", nargs="+", default=list(GRID[0]), choices=list(GRID[0]))
    ap.add_argument("--techs", nargs="+", default=list(GRID[1]), choices=list(GRID[1]))
    ap.add_argument("--rows", nargs="+", type=int, default=list(GRID[2]))
    ap.add_argument("--r-wire-ohm", nargs="+", type=float, default=list(GRID[3]))
    ap.add_argument("--adc-references", nargs="+", default=list(GRID[4]), choices=list(GRID[4]))
    ap.add_argument("--binsparx", nargs="+", default=["on", "off"], choices=["on", "off"])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--csv", default=str(ROOT / "docs" / "error_budget.csv"))
    ap.add_argument("--runs", default=str(ROOT / "docs" / "error_budget" / "runs"), help="folder of the runs")
    ap.add_argument("--study", default=None, help="the study's cells (docs/report/cells.jsonl): configurations "
                                                     "whose cell did not stop at chance first")
    ap.add_argument("--dry-run", action="store_true", help="list the configurations left, run nothing")
    a = ap.parse_args(argv)
    todo = plan(a.networks, a.techs, a.rows, a.r_wire_ohm, a.adc_references, [b == "on" for b in a.binsparx],
                csv_path=Path(a.csv), images=a.images)
    if a.study:
        from cosim.study.report import budget_key
        first = above_chance(Path(a.study))
        todo.sort(key=lambda c: budget_key(c["network"], c["tech"], c["rows"], c["r_wire_ohm"], c["adc_reference"],
                                           c["binsparx"]) not in first)     # stable: cheapest first in each group
    print(f"{len(todo)} configuration(s) left", file=sys.stderr)
    # paths inside the checkout, as the run records them in its command: relative, so that it reruns anywhere
    from cosim.paths import checkout_relative as rel

    for i, c in enumerate(todo):
        cmd = [sys.executable, "scripts/error_budget.py", "--model", c["network"], "--tech", c["tech"],
               "--rows", str(c["rows"]), "--table", rel(c["table"]), "--adc-reference", c["adc_reference"],
               *(["--binsparx"] if c["binsparx"] else []), "--reference", "certified", "--images", str(a.images),
               "--chunk", "5", "--threads", "1", "--out", rel(Path(a.runs) / c["name"]), "--csv", rel(a.csv)]
        print(f"[{i + 1}/{len(todo)}] {c['name']}", file=sys.stderr, flush=True)
        if a.dry_run:
            continue
        rc = subprocess.run(cmd, cwd=ROOT).returncode
        if rc != 0:
            print(f"error budget queue: {c['name']} failed (exit {rc}); stopping", file=sys.stderr)
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
