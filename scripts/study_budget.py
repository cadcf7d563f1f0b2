#!/usr/bin/env python
"""An error budget from two study reports (issue 16): the same cells read by the plain surrogate and through
certified reads (a study config with ``certify = true``, e.g. configs/study-certified.toml), compared image by
image on the images both ran. Every certified array cell of ``--certified`` is paired with the plain cell of the
same configuration and table in ``--plain`` (the one with the most images), and its row (surrogate minus
certified accuracy, 95 % Newcombe interval, exact McNemar p, the columns the certificate re-solved) is added to
the error-budget CSV with the reference ``certified (study cells)``, after the rows of scripts/error_budget.py
(which it leaves in place); the report (``cosim report``) takes the last row of a configuration, so a budget on
more images than the 500 of the budget runs supersedes theirs there.

    PYTHONPATH=. .venv/bin/python scripts/study_budget.py --plain docs/report/cells.jsonl \\
        --certified docs/study-certified/report/cells.jsonl --csv docs/error_budget.csv [--dry-run]

Only the variants the budgets cover (whole-column reads, +1 conducting: nonideal, binsparx, adc-cal,
adc-cal+binsparx) get a row; per-layer code agreement is not measured this way (the cells keep per-image
correctness only), so those columns stay empty.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REFERENCE = "certified (study cells)"


def _cells(path: Path) -> list[dict]:
    from cosim.errors import InputError

    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    out = []
    for i, line in enumerate(lines, 1):
        try:
            obj = json.loads(line)
            obj["payload"]["cell"], obj["result"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InputError(f"{path}:{i}: not a cell entry of a study report (cells.jsonl)") from None
        out.append(obj)
    return out


def _same_configuration(a: dict, b: dict) -> bool:
    fields = ("network", "variant", "technology", "rows", "cols", "r_wire_ohm", "adc_bits", "pwa_rows", "seed")
    return (all(a["payload"]["cell"].get(f) == b["payload"]["cell"].get(f) for f in fields)
            and a["payload"].get("table_sha256") == b["payload"].get("table_sha256")
            and a["payload"].get("weights_sha256") == b["payload"].get("weights_sha256")
            and a["payload"].get("data_sha256") == b["payload"].get("data_sha256"))


def budget_rows(plain: list[dict], certified: list[dict], source: str, command: str, cpu: str = ""
                ) -> tuple[list[dict], list[str]]:
    """(error-budget rows, notes on the certified cells that got none). ``cpu``: the CPU the certified cells ran
    on, where their provenance does not name it (cells computed before it did)."""
    import numpy as np

    from cosim.study import stats
    from cosim.study.budget import paired_fields
    from cosim.study.config import VARIANTS
    from cosim.study.runner import cell_outcomes

    rows, notes = [], []
    for c in certified:
        cell = c["payload"]["cell"]
        if not cell.get("certify"):
            continue
        flags = VARIANTS[cell["variant"]]
        label = f"{cell['network']} {cell['technology']} {cell['rows']} rows {cell['r_wire_ohm']:g} ohm {cell['variant']}"
        if flags["pwa"] or flags["encoding"] != "plus":
            notes.append(f"{label}: a variant the budgets do not cover")
            continue
        mates = [p for p in plain if not p["payload"]["cell"].get("certify") and _same_configuration(p, c)]
        got = [(p, cell_outcomes(p["result"])) for p in mates]
        got = [(p, o) for p, o in got if o is not None]
        mine = cell_outcomes(c["result"])
        if not got or mine is None:
            notes.append(f"{label}: no plain cell of the same configuration and table with per-image outcomes")
            continue
        p, (idx_p, ok_p) = max(got, key=lambda t: len(t[1][0]))
        idx_c, ok_c = mine
        common, ip, ic = np.intersect1d(idx_p, idx_c, return_indices=True)
        if common.size == 0:
            notes.append(f"{label}: no image in common")
            continue
        a, b = ok_p[ip], ok_c[ic]
        cmp = stats.compare(a, b)
        cert = c["result"].get("certified") or {}
        prov = c["result"].get("provenance", {})
        rows.append({
            "network": cell["network"], "technology": cell["technology"], "rows": cell["rows"],
            "r_wire_ohm": float(cell["r_wire_ohm"]), "adc_reference": "calibrated" if flags["adc_cal"] else "ideal",
            "binsparx": int(flags["binsparx"]), "n_images": int(common.size), "source": source,
            **paired_fields({"delta_pp": 100 * cmp.diff, "delta_low_pp": 100 * cmp.low, "delta_high_pp": 100 * cmp.high,
                             "mcnemar_p": cmp.p}),
            "accuracy_surrogate": f"{float(np.mean(a)):.4f}",
            "accuracy_reference": f"{float(np.mean(b)):.4f}", "reference": REFERENCE,
            "column_reads_compared": cert.get("columns_read", ""), "columns_resolved": cert.get("columns_resolved", ""),
            "seconds_per_image": f"{float(c['result'].get('seconds', 0.0)) / max(int(c['result'].get('n', 1)), 1):.1f}",
            "table": prov.get("table", ""), "table_sha256": c["payload"].get("table_sha256", ""),
            "code_version": prov.get("code_version", ""), "cpu": prov.get("cpu") or cpu, "seed": cell.get("seed", ""),
            "date_utc": prov.get("date_utc", ""), "command": command})
    return rows, notes


def main(argv: list[str] | None = None) -> int:
    from cosim.errors import InputError
    from cosim.paths import checkout_relative
    from cosim.study.budget import append_budget_row

    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--plain", required=True, help="cells.jsonl of the report read by the plain surrogate")
    ap.add_argument("--certified", required=True, help="cells.jsonl of the report read through certified reads")
    ap.add_argument("--csv", required=True, help="the error-budget CSV to add the rows to")
    ap.add_argument("--cpu", default="", help="the CPU the certified cells ran on, where their provenance lacks it")
    ap.add_argument("--dry-run", action="store_true", help="print the rows, write nothing")
    a = ap.parse_args(argv)
    try:
        certified = Path(a.certified)
        command = ("PYTHONPATH=. python scripts/study_budget.py --plain " + checkout_relative(a.plain)
                   + " --certified " + checkout_relative(a.certified) + " --csv " + checkout_relative(a.csv))
        rows, notes = budget_rows(_cells(Path(a.plain)), _cells(certified),
                                  source=checkout_relative(certified.parent.parent / "REPORT.md"), command=command,
                                  cpu=a.cpu)
        for n in notes:
            print(f"study budget: {n}", file=sys.stderr)
        for r in rows:
            print(f"{r['network']} {r['technology']} {r['rows']} rows {r['r_wire_ohm']:g} ohm {r['adc_reference']} "
                  f"binsparx={r['binsparx']}: surrogate {r['accuracy_surrogate']} vs certified "
                  f"{r['accuracy_reference']} on {r['n_images']} images, {r['delta_pp']} "
                  f"[{r['delta_low_pp']}, {r['delta_high_pp']}] points, McNemar p {r['mcnemar_p']}")
            if not a.dry_run:
                append_budget_row(a.csv, r)
        return 0
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
