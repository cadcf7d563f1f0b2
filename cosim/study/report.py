"""``docs/REPORT.md``: the BinSparX study's claims table, accuracy tables, plots and data files.

Input: the cell results of a run (cosim.study.runner), the skew statistics per network and array size,
and the config. Output, under ``out`` (``cosim report``'s default: ``docs/`` for a grid, ``cosim-report/``
for ``--quick``):

* ``REPORT.md`` -- claims table (each claim of the paper, its figure, cosim's figure, agreed or not, by a
  stated rule; accuracy claims by paired tests on the same images, ``stats``), accuracy tables per network
  and technology with 95 % Wilson intervals (and error budgets where measured), skew tables,
  energy / latency / area, the cells not run and why;
* ``report/cells.jsonl`` -- every cell's result with its per-image outcomes (payload, key, result), so that
  a committed report re-renders with ``cosim report --from-cache`` without the cell cache;
* ``report/*.png`` -- accuracy vs array size and vs wire resistance, ON-count histograms with and
  without BinSparX, energy breakdowns (matplotlib, Agg);
* ``report/results.csv|parquet`` (one row per cell), ``report/skew_layers.csv``, ``report/costs.csv``,
  ``report/components.csv``, ``report/provenance.json``.

Every figure in the report is computed here from those results; where a claim has no measured
counterpart the table says "not measured".
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StorageError
from ..fileio import check_writable, describe_os_error, os_cause
from ..provenance import code_version, cpu_model, record
from . import costs as costs_mod
from . import stats
from .markdown import fmt, md_table, pct
from .config import VARIANTS, StudyConfig
from .stats import wilson  # noqa: F401  (re-exported: report.wilson)

PAPER = "Malhotra & Gupta, BinSparX, arXiv 2412.03553 (abstract / summaries; physics-facts.md)"
#: order of variants in tables
VARIANT_ORDER = tuple(VARIANTS)
#: claim rules (stated in the report)
BAD_DROP_PP = 5.0        # "hurt badly": software - non-ideal >= 5 points, significant (paired, McNemar)
NEAR_SOFTWARE_PP = 2.0   # "near software level": BinSparX within 2 points of software or not significantly below
MILD_OVERHEAD = 0.10     # "mild" latency / area increase: at most 10 %


@dataclass
class StudyResults:
    """What a run produced (see cosim.study.runner.run_cells / skew_for)."""

    config: StudyConfig
    cells: list                                   #: CellResult
    skew: dict = field(default_factory=dict)      #: (network, rows) -> skew result dict
    seconds: float = 0.0
    full_grid_cells: int = 0                      #: cells of the full grid (for "not run" counts)
    not_in_run: list = field(default_factory=list)  #: labels of full-grid cells outside this run
    claims_note: str = ""                         #: how the cells the claims name were run (``claim_cells``)
    grid_cells: list = field(default_factory=list)  #: grid results of the cells the claims ran again (exported)


# ------------------------------------------------------------------------------------------- render only

def read_cached_cells(cells: list, ctx, committed: list | None = None) -> list:
    """Each cell's result from the cell cache, computing nothing (``cosim report --from-cache``).

    A cell's key hashes the source of the code that computes it (``runner.KEY_SOURCES``), so any change to
    that code misses every cached cell. Here a cell takes the cached result whose payload equals the
    cell's own in everything but that source hash: the same cell (network, variant, technology, array
    size, wire resistance, ADC bits, images, seed), weights, test images and lookup table. The result
    keeps its own provenance (``code_version``: the code that computed it), which the report lists. A
    cell with no such result, or whose inputs are missing, is "not run" with the reason; where several
    code versions cached the same cell, the newest file is taken. ``committed``: files of cell results
    committed with a report (``report/cells.jsonl``, see ``export_cells``), read beside the cache (their
    entries as new as the file), so that a checkout re-renders its report without the user's cache."""
    from ..errors import CosimError
    from .runner import CellResult, CellStore, cell_payload, make_key

    store = CellStore(ctx.cache_root)
    index: dict[str, tuple[float, str, dict]] = {}   # key of the payload without "code" -> newest entry
    payloads: dict[str, dict] = {}
    for mtime, obj in _cell_entries(store.root / "cells", committed or []):
        try:
            pay, key = obj["payload"], obj["key"]
            obj["result"]["accuracy"]
            k = make_key({a: b for a, b in pay.items() if a != "code"})
        except (KeyError, TypeError, AttributeError):
            continue  # damaged or foreign: not a result
        if k not in index or mtime > index[k][0]:
            index[k] = (mtime, key, obj["result"])
            payloads[key] = pay
    out = []
    for cell in cells:
        try:
            pay = cell_payload(cell, ctx)
        except CosimError as e:
            out.append(CellResult(cell, "not run", None, reason=str(e)))
            continue
        hit = index.get(make_key({a: b for a, b in pay.items() if a != "code"}))
        if hit is None:
            out.append(CellResult(cell, "not run", None, reason=f"not in the cell cache {store.root} "
                                  "(--from-cache computes nothing)"))
        else:
            out.append(CellResult(cell, "cached", hit[2], key=hit[1], payload=payloads.get(hit[1])))
    return out


def _cell_entries(cache_cells: Path, committed: list):
    """(mtime, parsed object) of every cell file in the cache and every line of the committed files."""
    for f in sorted(cache_cells.glob("*.json")):
        try:
            yield f.stat().st_mtime, json.loads(f.read_text())
        except (OSError, ValueError):
            continue
    for f in committed:
        f = Path(f)
        try:
            mtime, text = f.stat().st_mtime, f.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            try:
                yield mtime, json.loads(line)
            except ValueError:
                continue


COMMITTED_CELLS = "cells.jsonl"   #: under report/: every cell result of the report, one JSON object a line


def seed_cache_from_committed(ctx, committed: list) -> int:
    """Put into the cell cache every committed cell result (``report/cells.jsonl``) that this very code
    computed (its payload's source hash is this checkout's, and its key is its payload's), unless the cache
    has it already: so a grid run that the end of a session interrupted resumes on another machine, from a
    fresh clone without the cell cache, with only the cells that no committed result holds. Results of
    other code versions are left out (their cells are recomputed; ``--from-cache`` still renders them).
    The number of cells put."""
    from .runner import KEY_SOURCES, CellStore, make_key, source_hash

    store = CellStore(ctx.cache_root)
    code = source_hash(KEY_SOURCES)
    n = 0
    for _, obj in _cell_entries(Path("/nonexistent"), committed):
        try:
            pay, key, result = obj["payload"], str(obj["key"]), obj["result"]
            ok = pay.get("code") == code and make_key(pay) == key and "accuracy" in result
        except (KeyError, TypeError, AttributeError):
            continue
        if ok and store.get(key) is None:
            store.put(key, {"payload": pay, "result": result})
            n += 1
    return n


def export_cells(res: "StudyResults", path: Path, previous: Path | None = None) -> tuple[int, int]:
    """Write every cell with a result (payload, key, result; the grid results of the cells the claims ran
    again included) as one JSON line to ``path``, sorted by key: committed with the report, ``cosim report
    --from-cache`` re-renders it without the cell cache. The entries of ``previous`` (the cells.jsonl of the
    report this one replaces) are kept where no cell of this report supersedes them (the same inputs, any
    code), so that re-rendering with a cache that lacks them loses no committed result. (cells of this
    report written, entries kept from ``previous``)."""
    from ..provenance import json_default
    from .runner import make_key

    def sans_code(pay) -> str:
        return make_key({a: b for a, b in pay.items() if a != "code"})

    entries: dict[str, tuple[str, str]] = {}     # payload without code -> (cell key, line)
    if previous is not None:
        for _, obj in _cell_entries(Path("/nonexistent"), [previous]):
            try:
                entries[sans_code(obj["payload"])] = (str(obj["key"]), json.dumps(obj, sort_keys=True))
            except (KeyError, TypeError, AttributeError):
                continue
    mine: set[str] = set()
    for cr in list(res.cells) + list(res.grid_cells):
        if cr.result is None or cr.payload is None or not cr.key:
            continue
        k = sans_code(cr.payload)
        entries[k] = (cr.key, json.dumps({"key": cr.key, "payload": cr.payload, "result": cr.result},
                                         sort_keys=True, default=json_default))
        mine.add(k)
    lines = sorted(entries.values())
    if lines:   # no file for a report without results (nothing to re-render from)
        path.write_text("".join(line + "\n" for _, line in lines))
    return len(mine), len(lines) - len(mine)


# ------------------------------------------------------------------------------------------- paired tests

class Pairs:
    """Paired comparisons of cells of one run (``stats.compare`` on the images both cells ran), falling back
    to the unpaired interval (``stats.compare_unpaired``) for cells cached without per-image outcomes.
    Rows are rows of ``results_frame(res)``, whose index is the cell's position in ``res.cells``."""

    def __init__(self, res: StudyResults) -> None:
        from .runner import cell_outcomes
        self.outcomes = [cell_outcomes(cr.result) for cr in res.cells]
        self._paired: set[tuple[int, int]] = set()
        self._unpaired: set[tuple[int, int]] = set()
        self.named: set[int] = set()   #: positions in res.cells of the cells the claims cite

    def name(self, *rows) -> None:
        """Record rows a claim cites (its best, worst and cited cells: ``claim_cells``)."""
        self.named.update(int(r.name) for r in rows if r is not None)

    def compare(self, a, b) -> stats.Comparison:
        """A against B (accuracy(A) - accuracy(B))."""
        oa, ob = self.outcomes[a.name], self.outcomes[b.name]
        if oa is not None and ob is not None:
            _, ia, ib = np.intersect1d(oa[0], ob[0], assume_unique=True, return_indices=True)
            if len(ia):
                order = np.argsort(ia)          # in A's evaluation order (irrelevant to the statistics)
                self._paired.add((int(a.name), int(b.name)))
                ca, cb = oa[1][ia[order]], ob[1][ib[order]]
                c = stats.compare(ca, cb)
                if len(ia) < max(len(oa[0]), len(ob[0])):   # one cell ran on more images: say what was compared
                    c = replace(c, on_paired=(float(np.mean(ca)), float(np.mean(cb))))
                return c
        self._unpaired.add((int(a.name), int(b.name)))
        return stats.compare_unpaired(int(a.correct), int(a.n), int(b.correct), int(b.n))

    @property
    def paired(self) -> int:
        """Distinct pairs of cells compared image by image."""
        return len(self._paired)

    @property
    def unpaired(self) -> int:
        """Distinct pairs of cells compared without per-image outcomes."""
        return len(self._unpaired)

    def test_name(self) -> str:
        txt = "exact two-sided McNemar test at 5 %; paired 95 % Newcombe interval of the difference"
        if self.unpaired:
            txt += ("; cells cached without per-image outcomes: unpaired, significant where the 95 % Newcombe "
                    "interval of the difference excludes 0")
        return txt

    @staticmethod
    def budget_note(c: stats.Comparison, a, b) -> str:
        """Whether a difference exceeds the two cells' summed error budgets (where both are measured)."""
        ba, bb = _budget(a), _budget(b)
        if ba is None or bb is None:
            return ""
        tot = ba + bb
        return (f" ({'exceeds' if abs(100 * c.diff) > tot else 'within'} the surrogate's error budget "
                f"±{tot:.2f} points)")


def _budget(row) -> float | None:
    if row.variant == "software":
        return 0.0
    v = row.get("error_budget_pp")
    return float(v) if _num(v) else None


def claim_cells(res: StudyResults) -> list[int]:
    """Positions in ``res.cells`` of the cells the claims table cites (each accuracy claim's best, worst
    and cited cells, with the cells they are compared against): the cells to run on ``claims_limit`` images."""
    pair = Pairs(res)
    claims(results_frame(res), None, res, pair)
    return sorted(pair.named)


def _verdict_txt(c: stats.Comparison) -> str:
    return {"better": "significant", "worse": "significant loss"}.get(c.verdict, "not significant")


# ------------------------------------------------------------------------------------------- error budget

ERROR_BUDGET = "error_budget.csv"   #: beside REPORT.md (else the checkout's docs/), written by the validation report
#: a configuration's budget is measured on at least this many images (issue 16); rows on fewer are a pilot,
#: whose interval is too wide to budget anything, and are not used
MIN_BUDGET_IMAGES = 500
#: issue 16's target for a configuration's budget: the surrogate moves a network's accuracy by at most this
#: many points; a budget above it is marked beside its accuracy (BUDGET_MISS)
BUDGET_TARGET_PP = 0.5
BUDGET_MISS = "†"
#: its columns: the configuration (adc_reference "ideal" / "calibrated", binsparx 0 / 1), the surrogate's
#: accuracy minus the exact (SPICE) network's in points on n_images images, and where that was measured
BUDGET_COLUMNS = ("network", "technology", "rows", "r_wire_ohm", "adc_reference", "binsparx", "delta_pp",
                  "n_images", "source")


def budget_key(network: str, technology: str, rows: int | str, r_wire_ohm: float | str, adc_reference: str,
               binsparx: bool) -> tuple:
    return (str(network), str(technology), int(rows), round(float(r_wire_ohm), 6), str(adc_reference), bool(binsparx))


def row_budget_key(row: dict) -> tuple:
    """``budget_key`` of a row of ``error_budget.csv`` (its fields as text; a field missing from a short row
    is an error, not "off")."""
    if row["binsparx"] is None:
        raise ValueError("error budget row without its binsparx field")
    return budget_key(row["network"], row["technology"], row["rows"], row["r_wire_ohm"],
                      row["adc_reference"].strip().lower(),
                      str(row["binsparx"]).strip().lower() in ("1", "true", "yes"))


def load_error_budget(out: Path) -> tuple[dict, str]:
    """({budget_key: |delta_pp|}, a sentence for the report) from ``error_budget.csv`` beside the report, else
    the checkout's ``docs/``. Nothing is assumed where the file is absent: the sentence says so."""
    import csv

    from ..paths import CHECKOUT_DIR

    path = Path(out) / ERROR_BUDGET
    if not path.is_file():
        path = CHECKOUT_DIR / "docs" / ERROR_BUDGET
    if not path.is_file():
        return {}, ("Error budget not yet measured: no `error_budget.csv` (the surrogate's accuracy against the "
                    "exact SPICE network per configuration, from the validation report) beside this report, so "
                    "no accuracy here carries one.")
    budget: dict = {}
    bad = pilot = 0
    try:
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                try:
                    k = row_budget_key(row)
                    delta, n = abs(float(row["delta_pp"])), int(float(row["n_images"]))
                    # where the row has its 95 % interval (scripts/error_budget.py), the budget is the interval's
                    # farther end: the difference the images cannot rule out, not the point estimate alone
                    lo, hi = (row.get(c) or "" for c in ("delta_low_pp", "delta_high_pp"))
                    if lo.strip() and hi.strip():
                        delta = max(delta, abs(float(lo)), abs(float(hi)))
                except (KeyError, ValueError, TypeError, AttributeError):
                    bad += 1
                    continue
                if n < MIN_BUDGET_IMAGES:
                    pilot += 1
                else:   # a row measured on one table budgets the cells of that table only
                    sha = (row.get("table_sha256") or "").strip()
                    budget[k + (sha,) if sha else k] = delta
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        return {}, f"Error budget file `{path.name}` unreadable ({type(e).__name__}): no accuracy here carries one."
    notes = [f"{bad} unreadable row(s)"] if bad else []
    if pilot:
        notes.append(f"{pilot} row(s) measured on fewer than {MIN_BUDGET_IMAGES} images, a pilot whose interval is "
                     f"too wide to budget anything, not used (docs/VALIDATION.md)")
    return budget, (f"Error budgets from `{path.name}` ({len(budget)} configuration(s)"
                    + "".join(f", {x}" for x in notes) + "): "
                    "`±x` after an accuracy is the surrogate's measured |accuracy - exact network's accuracy| "
                    "of that configuration, in points, on the same images (where the row gives its 95 % interval, "
                    f"the interval's farther end; `{BUDGET_MISS}` marks a budget above the target of "
                    f"{BUDGET_TARGET_PP:g} points). Budgets are measured on whole-column reads with +1 conducting "
                    "(`nonideal`, `binsparx`, `adc-cal` and `adc-cal+binsparx`); the partial-wordline and mirrored "
                    "variants carry none. A difference between two cells smaller than their summed "
                    "budgets may be the surrogate's, not the hardware's.")


def write_error_budget(path: Path, rows: list[dict]) -> Path:
    """Write ``error_budget.csv`` (``BUDGET_COLUMNS``) for the validation report: one row per configuration,
    ``delta_pp`` = surrogate accuracy - exact (SPICE) network accuracy in points on ``n_images`` images,
    ``source`` where that was measured. A row missing a column, or with a non-numeric delta, is an error."""
    import csv

    for i, r in enumerate(rows):
        missing = [c for c in BUDGET_COLUMNS if c not in r]
        if missing:
            raise ValueError(f"error budget row {i} lacks {', '.join(missing)}")
        if r["adc_reference"] not in ("ideal", "calibrated"):
            raise ValueError(f"error budget row {i}: adc_reference must be 'ideal' or 'calibrated'")
        float(r["delta_pp"])
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(BUDGET_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "binsparx": int(bool(r["binsparx"]))})
    return path


def _certified_note(res) -> str:
    """', with certified reads ...': what the certificate re-solved over the report's certified cells."""
    read = resolved = 0
    for r in res.cells:
        c = (r.result or {}).get("certified") or {}
        read += int(c.get("columns_read", 0))
        resolved += int(c.get("columns_resolved", 0))
    share = f", {100 * resolved / read:.1f} % of {read:,} column reads re-solved" if read else ""
    return (" with certified reads, `--certify`: the columns whose surrogate current lies within the table's "
            "calibration residual of an ADC decision level are re-solved by the exact solver, so their codes are "
            "the exact ones (their agreement with fresh ngspice points: docs/VALIDATION.md, Summary"
            f"{share}); the surrogate's error budgets do not apply to them")


def cell_budget_key(cell) -> tuple | None:
    """``budget_key`` of the configuration an array cell reads through, or None for a cell no budget applies to:
    software, and reads other than the whole-column ones with +1 conducting that the budgets are measured on
    (scripts/error_budget.py): partial wordline activation, the mirrored encoding."""
    f = cell.flags
    if f["software"] or f["pwa"] or f["encoding"] != "plus":
        return None
    return budget_key(cell.network, cell.technology, cell.rows, cell.r_wire_ohm,
                      "calibrated" if f["adc_cal"] else "ideal", f["binsparx"])


def error_budget_for(cell, budget: dict, table_sha256: str | None = None) -> float | None:
    """The error budget (points) of a cell's configuration; 0 for software, None where not measured (or none
    applies: ``cell_budget_key``). A budget row that names its table (``table_sha256``) applies only to cells read
    through that table."""
    if cell.variant == "software":
        return 0.0
    if getattr(cell, "certify", False):   # the budgets are the plain surrogate's: a certified read has none measured
        return None
    k = cell_budget_key(cell)
    if k is None:
        return None
    if table_sha256 and k + (table_sha256,) in budget:
        return budget[k + (table_sha256,)]
    return budget.get(k)


# ------------------------------------------------------------------------------------------- compute

def _half_width(n: int) -> float:
    """Half the width of a 95 % Wilson interval at 50 % accuracy on n images (the widest)."""
    lo, hi = stats.wilson(n // 2, n)
    return (hi - lo) / 2


def compute_text(res: StudyResults, df, n_exported: int = 0, n_kept: int = 0) -> str:
    """The report's compute statement: cell-seconds in all and per network, the rate per image, what the
    grid costs at that rate, and how to regenerate it on a Dask cluster and from committed results."""
    cfg = res.config
    done = [cr for cr in res.cells if cr.result is not None]
    secs = [float(cr.result.get("seconds") or 0.0) for cr in done]
    imgs = [int(cr.result.get("n") or 0) for cr in done]
    total, n_img = sum(secs), sum(imgs)
    per_net: dict[str, float] = {}
    for cr, sec in zip(done, secs):
        per_net[cr.cell.network] = per_net.get(cr.cell.network, 0.0) + sec
    lines = [f"Total compute of the cells in this report: {total:.0f} cell-seconds ({total / 3600:.2f} cell-hours) "
             f"for {len(done)} cell(s) and {n_img} image evaluations"
             + (" (" + ", ".join(f"{n}: {v:.0f} s" for n, v in per_net.items()) + ")" if per_net else "")
             + f"; this command itself ran {res.seconds:.0f} s. Each cell records its own seconds and machine "
               "(`report/results.csv`, `seconds`; provenance in the cell)."]
    if n_img:
        rate = total / n_img
        planned = len(cfg.cells()) * cfg.limit
        lines.append(f"At the measured mean of {1e3 * rate:.1f} ms per image and cell, this config's "
                     f"{len(cfg.cells())} cell(s) x {cfg.limit} image(s) come to about {rate * planned / 3600:.2g} "
                     f"cell-hours (less where cells stop at chance), i.e. about that many hours on one core.")
        if cfg.quick:
            from .config import load_config
            full = load_config()
            fh = rate * len(full.cells()) * full.limit / 3600
            lines.append(f"The built-in full grid ({len(full.cells())} cells x {full.limit} images, plus the cells "
                         f"the claims name on {full.claims_limit}) would take roughly {fh:.0f} cell-hours and more "
                         "at this rate, which is that of this run's cells only (larger arrays and partial wordline "
                         "activation are slower): hours on 2 cores, hence the cluster below.")
    cmd_cfg = "configs/study.toml" if not cfg.quick else "configs/study.toml --quick"
    lines.append(
        "\nTo regenerate everything on a Dask cluster (every worker with the same cosim checkout, weights, "
        "test images and lookup tables; `cosim report` checks this per cell), start a scheduler and workers as "
        "in the README (*Running sweeps on a cluster*), then:\n\n"
        f"    cosim report --config {cmd_cfg} --scheduler tcp://SCHEDULER:8786 --cache DIR\n\n"
        "Cells are cached one by one as they arrive: an interrupted run, given the same command again, computes "
        "only the cells missing from the cache. The report keeps every cell's result with its per-image outcomes "
        f"in `report/{COMMITTED_CELLS}` ({n_exported} cell(s) of this report"
        + (f", and {n_kept} kept from the file it replaced" if n_kept else "") + "); committed with the report, "
        f"`cosim report --config {cmd_cfg} --from-cache` re-renders it in a checkout without the cell cache, "
        "computing no cell.")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- frames

def results_frame(res: StudyResults, budget: dict | None = None):
    """One row per cell. ``budget``: the error budgets (``load_error_budget``), else read from none."""
    import pandas as pd

    from .runner import cell_outcomes

    rows = []
    for cr in res.cells:
        c = cr.cell
        r = cr.result or {}
        st = r.get("stats") or {}
        d = {"network": c.network, "technology": c.technology or "", "rows": c.rows, "cols": c.cols,
             "r_wire_ohm": c.r_wire_ohm, "variant": c.variant, "adc_bits": c.adc_bits, "pwa_rows": c.pwa_rows,
             "limit": c.limit, "status": cr.status, "reason": cr.reason, "key": cr.key}
        if cr.result is not None:
            lo, hi = wilson(int(r["correct"]), int(r["n"]))
            d.update({"accuracy": r["accuracy"], "correct": r["correct"], "n": r["n"], "ci_low": lo, "ci_high": hi,
                      "seconds": r.get("seconds"), "array_energy_per_image_j": r.get("array_energy_per_image_j"),
                      "on_cell_fraction": st.get("on_cell_fraction"), "mean_on_count": st.get("mean_on_count"),
                      "max_on_count": st.get("max_on_count"),
                      "partial_sum_reduction": st.get("partial_sum_reduction"),
                      "flipped_column_fraction": st.get("flipped_column_fraction"),
                      "flipped_subvector_fraction": st.get("flipped_subvector_fraction"),
                      "code_version": (r.get("provenance") or {}).get("code_version"),
                      "n_planned": r.get("n_planned", r["n"]), "stopped_at_chance": bool(r.get("stopped_at_chance")),
                      "per_image": cell_outcomes(r) is not None,
                      "error_budget_pp": error_budget_for(c, budget or {},
                                                          (cr.payload or {}).get("table_sha256"))})
        rows.append(d)
    cols = ["network", "technology", "rows", "cols", "r_wire_ohm", "variant", "adc_bits", "pwa_rows", "limit",
            "status", "reason", "key", "accuracy", "correct", "n", "ci_low", "ci_high", "seconds",
            "array_energy_per_image_j", "on_cell_fraction", "mean_on_count", "max_on_count", "partial_sum_reduction",
            "flipped_column_fraction", "flipped_subvector_fraction", "code_version", "n_planned",
            "stopped_at_chance", "per_image", "error_budget_pp"]
    return pd.DataFrame(rows, columns=cols)


def skew_frame(res: StudyResults):
    import pandas as pd

    rows = []
    for (net, r), sk in sorted(res.skew.items()):
        for layer in sk["layers"]:
            # the layer's fields in name order, as the skew cache (JSON, sorted keys) returns them: a report written
            # from fresh statistics and one written from the cache are the same bytes
            rows.append({"network": net, "rows": r, "images": sk["images"], **{k: layer[k] for k in sorted(layer)}})
    return pd.DataFrame(rows)


def costs_frame(res: StudyResults, df):
    """Energy / latency / area per (network, technology, rows, r_wire, variant) for the variants whose
    periphery the cost model covers (the +1 and mirrored fixed encodings, and BinSparX)."""
    import pandas as pd

    from ..circuit.technology import get_technology

    out = []
    for (net, r), sk in sorted(res.skew.items()):
        shapes = [costs_mod.LayerShape(s["name"], s["k"], s["n"], s["positions"]) for s in sk["shapes"]]
        for tech_name in res.config.technologies:
            for rw in res.config.r_wire_ohm:
                tech = get_technology(tech_name, r_wire_ohm=rw)
                ran = df[(df.network == net) & (df.technology == tech_name) & (df.rows == r) & (df.r_wire_ohm == rw)
                         & df.variant.isin(["nonideal", "mirrored", "binsparx"]) & (df.status != "not run")]
                if ran.empty:
                    continue  # no array cell of this configuration ran: nothing measured to set costs against
                for variant in ("nonideal", "mirrored", "binsparx"):
                    sel = df[(df.network == net) & (df.technology == tech_name) & (df.rows == r)
                             & (df.r_wire_ohm == rw) & (df.variant == variant)]
                    if variant not in res.config.variants:
                        continue
                    e_arr = None
                    if len(sel) and sel.iloc[0]["status"] != "not run":
                        v = sel.iloc[0]["array_energy_per_image_j"]
                        e_arr = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
                    nc = costs_mod.network_costs(shapes, r, res.config.cols, tech, binsparx=(variant == "binsparx"),
                                                 array_energy_per_image_j=e_arr,
                                                 adc_bits=res.config.adc_bits_for(r))
                    row = {"network": net, "technology": tech_name, "rows": r, "cols": res.config.cols,
                           "r_wire_ohm": rw, "variant": variant,
                           **{f"e_{k}": v for k, v in nc["energy_j"].items()},
                           "e_periphery_j": nc["periphery_energy_j"], "e_total_j": nc["total_energy_j"],
                           **{f"a_{k}": v for k, v in nc["area_um2"].items()},
                           "a_total_um2": nc["total_area_um2"], "latency_s": nc["latency_s"], "cycles": nc["cycles"]}
                    out.append(row)
    return pd.DataFrame(out)


def latency_frame(res: StudyResults):
    """Cycles per layer, +1 encoding vs BinSparX (whose input popcount precedes every read)."""
    import pandas as pd

    from ..circuit.technology import get_technology

    out = []
    for (net, r), sk in sorted(res.skew.items()):
        shapes = [costs_mod.LayerShape(s["name"], s["k"], s["n"], s["positions"]) for s in sk["shapes"]]
        for tech_name in res.config.technologies:
            tech = get_technology(tech_name)
            per = {b: costs_mod.network_costs(shapes, r, res.config.cols, tech, binsparx=b, array_energy_per_image_j=None,
                                              adc_bits=res.config.adc_bits_for(r))["latency_layers"] for b in (False, True)}
            for lb, lx in zip(per[False], per[True]):
                out.append({"network": net, "technology": tech_name, "rows": r, "layer": lb["layer"],
                            "positions": lb["positions"], "cycles_baseline": lb["cycles"], "cycles_binsparx": lx["cycles"],
                            "t_layer_baseline_s": lb["t_layer_s"], "t_layer_binsparx_s": lx["t_layer_s"]})
    return pd.DataFrame(out)


def side_by_side(cf) -> list[list[str]]:
    """BinSparX's savings (array energy) and overheads (periphery, latency, area) against the +1 encoding."""
    rows = []
    base = cf[cf.variant == "nonideal"].set_index(["network", "technology", "rows", "r_wire_ohm"])
    bsx = cf[cf.variant == "binsparx"].set_index(["network", "technology", "rows", "r_wire_ohm"])
    for i in base.index.intersection(bsx.index):
        b, x = base.loc[i], bsx.loc[i]
        arr = ("not measured" if not (_num(b.e_array_j) and _num(x.e_array_j))
               else f"{1e9 * (x.e_array_j - b.e_array_j):+.3f} ({100 * (x.e_array_j / b.e_array_j - 1):+.1f} %)")
        tot = ("not measured" if not (_num(b.e_total_j) and _num(x.e_total_j))
               else f"{100 * (x.e_total_j / b.e_total_j - 1):+.1f} %")
        rows.append([i[0], i[1], str(i[2]), f"{i[3]:g}", arr,
                     f"{1e9 * (x.e_periphery_j - b.e_periphery_j):+.3f} ({100 * (x.e_periphery_j / b.e_periphery_j - 1):+.1f} %)",
                     tot, f"{100 * (x.latency_s / b.latency_s - 1):+.2f} %", f"{100 * (x.a_total_um2 / b.a_total_um2 - 1):+.2f} %"])
    return rows


# ------------------------------------------------------------------------------------------- plots

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_accuracy(df, by: str, fixed: str, fixed_values, net: str, tech: str, path: Path) -> Path | None:
    """Accuracy against ``by`` (array rows or wire resistance), one panel per value of ``fixed`` that has a
    result, every variant with its 95 % CI (variants slightly offset along x so that equal points stay
    visible). None where no cell of (net, tech) has a result."""
    base = df[(df.network == net) & (df.technology == tech) & df.accuracy.notna() & (df.variant != "software")]
    panels = [fv for fv in fixed_values if len(base[base[fixed] == fv])]
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1.0, 4), sharey=True, squeeze=False)
    sw = df[(df.network == net) & (df.variant == "software") & df.accuracy.notna()]
    nv = len(VARIANT_ORDER)
    for ax, fv in zip(axes[0], panels):
        sub = base[base[fixed] == fv]
        for j, v in enumerate(VARIANT_ORDER):
            s = sub[sub.variant == v].sort_values(by)
            if s.empty:
                continue
            x = s[by].astype(float).to_numpy()
            off = (j - (nv - 1) / 2) * 0.025  # a small offset per variant, in log2 units of x
            xj = x * 2.0 ** off
            y = 100 * s.accuracy.to_numpy()
            err = np.vstack([y - 100 * s.ci_low.to_numpy(), 100 * s.ci_high.to_numpy() - y])
            ax.errorbar(xj, y, yerr=err, marker="o", ms=4, capsize=2, lw=1, label=v)
        if len(sw):
            ax.axhline(100 * sw.iloc[0].accuracy, color="k", ls="--", lw=1, label="software")
        ax.axhline(10.0, color="grey", ls=":", lw=1, label="chance (10 %)")
        ax.set_xscale("log", base=2)
        xs = sorted(sub[by].astype(float).unique())
        ax.set_xlim(min(xs) * 2.0 ** -0.35, max(xs) * 2.0 ** 0.35)  # also for a single x value
        ax.set_xticks(xs)
        ax.minorticks_off()
        ax.set_xticklabels([f"{x:g}" for x in xs])
        ax.set_xlabel({"rows": "array rows", "r_wire_ohm": "wire resistance per cell (ohm)"}[by])
        ax.set_title(f"{'wire' if fixed == 'r_wire_ohm' else fixed} = {fv:g}"
                     + (" ohm/cell" if fixed == "r_wire_ohm" else ""), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("top-1 accuracy (%), 95 % Wilson CI")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"{net} on {tech}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_histograms(sk: dict, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for s, style in (("plus", "-"), ("minus", ":"), ("binsparx", "--")):
        h = np.asarray(sk["hist"][s], dtype=float)
        ax.plot(np.arange(len(h)), h / h.sum(), style, label={"plus": "+1 conducting (fixed)",
                                                             "minus": "-1 conducting (mirrored)",
                                                             "binsparx": "BinSparX"}[s])
    ax.set_xlabel(f"ON-count of a column in one read (of {sk['rows']} rows)")
    ax.set_ylabel("fraction of column reads")
    ax.set_title(f"{sk['network']}, {sk['rows']}-row tiles, {sk['images']} test images")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_energy(cf, net: str, tech: str, r_wire: float, path: Path) -> Path | None:
    """Energy per image by component, one bar per (array rows, variant) with a measured array energy."""
    if cf is None or cf.empty:
        return None
    sub = cf[(cf.network == net) & (cf.technology == tech) & (cf.r_wire_ohm == r_wire)]
    sub = sub[sub.e_array_j.map(_num).astype(bool)]
    if sub.empty:
        return None
    sub = sub.sort_values(["rows", "variant"], kind="stable")
    plt = _plt()
    parts = ["e_array_j", "e_adc_j", "e_correction_j", "e_accumulate_j", "e_popcount_j", "e_flip_inputs_j",
             "e_flip_registers_j", "e_sign_correction_j"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(sub) + 2.0), 4))
    bottom = np.zeros(len(sub))
    labels = [f"{int(r)}\n{v}" for r, v in zip(sub.rows, sub.variant)]
    for p in parts:
        vals = np.array([0.0 if (v is None or (isinstance(v, float) and math.isnan(v))) else float(v)
                         for v in sub[p]]) * 1e9
        ax.bar(labels, vals, bottom=bottom, label=p[2:-2])
        bottom += vals
    ax.set_ylabel("energy per image (nJ)")
    ax.set_xlabel("array rows / variant")
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(f"{net}, {tech}, {r_wire:g} ohm/cell")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------- markdown

def _acc_cell(row, grid_n: int | None = None) -> str:
    """'86.00 [80.5, 90.1]' with the error budget, a stop at chance, or a number of images other than the
    grid's (``grid_n``: a cell the claims name, run on more) where they apply."""
    if row is None or row["status"] == "not run" or row["accuracy"] is None or (isinstance(row["accuracy"], float) and math.isnan(row["accuracy"])):
        return "not run"
    txt = f"{100 * row['accuracy']:.2f} [{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]"
    b = row.get("error_budget_pp")
    if row.get("variant") != "software" and _num(b):
        txt += f" ±{float(b):.2f}" + (BUDGET_MISS if float(b) > BUDGET_TARGET_PP else "")
    if _true(row.get("stopped_at_chance")):
        txt += f" (stopped at chance after {int(row['n'])})"
    elif grid_n is not None and _num(row.get("n")) and int(row["n"]) != grid_n:
        txt += f" (n = {int(row['n'])})"
    return txt


def accuracy_tables(df, cfg: StudyConfig) -> str:
    out = []
    has_budget = "error_budget_pp" in df and any(
        _num(b) for b, v in zip(df.error_budget_pp, df.variant) if v != "software")
    for net in cfg.networks:
        sw = df[(df.network == net) & (df.variant == "software")]
        sw_txt = _acc_cell(sw.iloc[0], cfg.limit) if len(sw) else "not run"
        for tech in cfg.technologies:
            variants = [v for v in cfg.variants if v != "software"]
            header = ["rows", "wire (ohm/cell)", "software"] + variants
            rows, skipped = [], []
            for r in cfg.rows:
                for rw in cfg.r_wire_ohm:
                    line = [str(r), f"{rw:g}", sw_txt]
                    any_result = False
                    for v in variants:
                        s = df[(df.network == net) & (df.technology == tech) & (df.rows == r)
                               & (df.r_wire_ohm == rw) & (df.variant == v)]
                        line.append(_acc_cell(s.iloc[0], cfg.limit) if len(s) else "not in run")
                        any_result |= bool(len(s)) and _num(s.iloc[0]["accuracy"])
                    if any_result:
                        rows.append(line)
                    else:
                        skipped.append(f"{r} rows / {rw:g} ohm")
            note = (f"\n\nNo cell run for: {', '.join(skipped)} (see *Cells not run*)." if skipped else "")
            out.append(f"### {net} on {tech}\n\nTop-1 accuracy in %, [95 % Wilson interval], on "
                       f"{stats.describe_images(cfg.limit)}, the same images for every variant; "
                       + (f"`±x`: the configuration's error budget (where measured), `{BUDGET_MISS}` where it is above "
                          f"the target of {BUDGET_TARGET_PP:g} points (docs/VALIDATION.md, \"End-to-end fidelity\"): "
                          "there the surrogate may move the accuracy by more than that; " if has_budget else "")
                       + f"a cell at chance after "
                       f"{stats.CHANCE_MIN_IMAGES} images (95 % upper bound below {100 * stats.CHANCE_UPPER:g} %) "
                       f"stops there and says so.\n\n"
                       + (md_table(header, rows) if rows else "No cell of this network and technology was run.")
                       + note)
    return "\n\n".join(out)


#: (variant without BinSparX, the same with BinSparX)
BINSPARX_PAIRS = (("nonideal", "binsparx"), ("pwa", "pwa+binsparx"), ("adc-cal", "adc-cal+binsparx"))


def _where(r) -> str:
    return f"{r.network}, {r.technology}, {int(r.rows)} rows, {r.r_wire_ohm:g} ohm/cell"


class _Cells:
    """The measured cells of a report, looked up by network, variant and array configuration."""

    def __init__(self, df) -> None:
        self.ran = df[df.accuracy.notna() & (df.status != "not run")]

    def get(self, net, variant, **kw):
        s = self.ran[(self.ran.network == net) & (self.ran.variant == variant)]
        for k, v in kw.items():
            s = s[s[k] == v]
        return s

    def first(self, net, variant, **kw):
        s = self.get(net, variant, **kw)
        return s.iloc[0] if len(s) else None

    def same_array(self, r, variant):
        return self.first(r.network, variant, technology=r.technology, rows=r.rows, r_wire_ohm=r.r_wire_ohm)

    def plain(self) -> list:
        """(non-ideal row, software row, binsparx row) for the plain (+1) encoding."""
        return [(ni, self.first(ni.network, "software"), self.same_array(ni, "binsparx"))
                for _, ni in self.ran[self.ran.variant == "nonideal"].iterrows()]

    def combos(self) -> list:
        """(row without BinSparX, row with it) for every pair of BINSPARX_PAIRS."""
        out = []
        for base_v, bsx_v in BINSPARX_PAIRS:
            for _, b in self.ran[self.ran.variant == base_v].iterrows():
                x = self.same_array(b, bsx_v)
                if x is not None:
                    out.append((b, x))
        return out


def claims(df, cf, res: StudyResults, pair: "Pairs | None" = None) -> list[list[str]]:
    """Rows of the claims table: claim, paper's figure, cosim's figure, agreed, rule. Accuracy claims are
    judged by paired tests on the images both cells ran (``Pairs``)."""
    cells = _Cells(df)
    pair = pair if pair is not None else Pairs(res)
    return [_claim_hurt(cells, pair), _claim_near_software(cells, pair), _claim_gain(cells, pair),
            _claim_partial_sums(res), *_claim_costs(cf, cells.ran)]


def _claim_hurt(cells: _Cells, pair: "Pairs") -> list[str]:
    """Non-idealities hurt BNNs badly: software against the +1 encoding, paired on the same images."""
    plain = cells.plain()
    drops = [(pair.compare(sw, ni), ni, sw) for ni, sw, _ in plain if sw is not None]
    claim, paper = "Non-idealities hurt CiM-BNN accuracy badly", "large drops (not quantified in the abstract)"
    if not drops:
        return [claim, paper, "not measured", "—", ""]

    def bad(c) -> bool:
        return 100 * c.diff >= BAD_DROP_PP and c.verdict == "better"
    c, ni, sw = max(drops, key=lambda t: t[0].diff)
    n_bad = sum(1 for cc, _, _ in drops if bad(cc))
    cmin, nmin, swmin = min(drops, key=lambda t: t[0].diff)
    pair.name(ni, sw, nmin, swmin)
    fig = (f"largest drop {100 * c.diff:.2f} points, software - `nonideal` {c.text()} ({_where(ni)}; "
           f"{len(plain)} measured array configuration(s)); smallest {100 * cmin.diff:.2f} points ({_where(nmin)}); "
           f"the rule holds in {n_bad} of {len(drops)}" + pair.budget_note(c, ni, sw))
    return [claim, paper, fig, "yes" if bad(c) else "no",
            f"drop >= {BAD_DROP_PP:g} points and software significantly better on the same images "
            f"({pair.test_name()})"]


def _claim_near_software(cells: _Cells, pair: "Pairs") -> list[str]:
    """BinSparX brings accuracy back near software in some cases (each mitigation with and without it)."""
    claim = "BinSparX brings accuracy back to near software level in some cases"
    sws = {n: cells.first(n, "software") for n in cells.ran.network.unique()}
    with_sw = [(b, x, sws[x.network]) for b, x in cells.combos() if sws.get(x.network) is not None]
    if not with_sw:
        return [claim, "near software", "not measured", "—", ""]

    def near(c) -> bool:   # c = software - variant: within NEAR_SOFTWARE_PP points, or no significant difference
        return 100 * c.diff <= NEAR_SOFTWARE_PP or not c.significant

    def below(c) -> bool:  # clearly below software: more than NEAR_SOFTWARE_PP points and significantly
        return 100 * c.diff > NEAR_SOFTWARE_PP and c.verdict == "better"

    judged = [(pair.compare(sw2, b2), pair.compare(sw2, x2), b2, x2, sw2) for b2, x2, sw2 in with_sw]
    holds = [t for t in judged if near(t[1]) and below(t[0])]
    if holds:  # the clearest case: the largest recovery among the pairs where the rule holds
        cb, cx, b, x, sw = max(holds, key=lambda t: t[0].diff - t[1].diff)
    else:
        cb, cx, b, x, sw = min(judged, key=lambda t: t[1].diff)
    pair.name(b, x, sw)
    per = []
    for base_v, bsx_v in BINSPARX_PAIRS:
        fam = [(c2.diff, x2) for _, c2, b2, x2, _ in judged if b2.variant == base_v]
        if fam:
            _, xx = min(fam, key=lambda t: t[0])
            pair.name(xx)
            per.append(f"`{bsx_v}` best {100 * xx.accuracy:.2f} % ({_where(xx)})")
    return [claim, "near software (abstract)",
            f"{'clearest case' if holds else 'closest'}: `{x.variant}` {_acc_cell(x)} % vs software "
            f"{_acc_cell(sw)} %, software - `{x.variant}` {cx.text()}; `{b.variant}` without BinSparX "
            f"{_acc_cell(b)} %, software - `{b.variant}` {cb.text()} ({_where(x)})"
            + pair.budget_note(cx, x, sw) + "; " + "; ".join(per)
            + f"; the rule holds in {len(holds)} of {len(judged)} pairs",
            "yes" if holds else "no",
            f"on the same images: a BinSparX variant within {NEAR_SOFTWARE_PP:g} points of software or not "
            f"significantly below it, where the same variant without BinSparX is more than "
            f"{NEAR_SOFTWARE_PP:g} points below software and significantly so ({pair.test_name()})"]


def _claim_gain(cells: _Cells, pair: "Pairs") -> list[str]:
    """Gains up to 77.25 points: BinSparX alone, and with each mitigation."""
    claim = "Accuracy boost of BinSparX up to 77.25 %"
    combos = cells.combos()
    if not combos:
        return [claim, "up to 77.25", "not measured", "—", ""]
    gains = [(pair.compare(x2, b2), b2, x2) for b2, x2 in combos]
    c, b, x = max(gains, key=lambda t: t[0].diff)
    pair.name(b, x)
    alone = [c2.diff for c2, b2, _ in gains if b2.variant == "nonideal"]
    with_m = []
    for base_v, what in (("pwa", "with partial wordline activation"), ("adc-cal", "with calibrated ADC references")):
        fam = [t for t in gains if t[1].variant == base_v]
        if fam:
            cc, bb, xx = max(fam, key=lambda t: t[0].diff)
            pair.name(bb, xx)
            with_m.append(f"{what} at most {cc.text()} ({_where(xx)}, {_verdict_txt(cc)})")
    n_sig = sum(1 for c2, _, _ in gains if c2.verdict == "better")
    return [claim, "up to 77.25 (points, presumably)",
            f"largest gain `{b.variant}` -> `{x.variant}` {c.text()} ({_where(x)}; {_verdict_txt(c)})"
            + pair.budget_note(c, x, b)
            + (f"; BinSparX alone at most {100 * max(alone):+.2f} points" if alone else "")
            + "".join(f"; {t}" for t in with_m)
            + f"; significant gains in {n_sig} of {len(gains)} pairs",
            "yes" if abs(100 * c.diff - 77.25) <= 10 else "no",
            "largest measured gain within 10 points of 77.25 (on the cells measured; its paired 95 % "
            "interval shown)"]


def _claim_partial_sums(res: StudyResults) -> list[str]:
    """Fewer partial sums (conducting cells), from the skew statistics' exact counts."""
    red = [(sk["overall"].get("on_cell_change_vs_plus[binsparx]"), k) for k, sk in sorted(res.skew.items())]
    red = [(-v, k) for v, k in red if v is not None]
    if not red:
        return ["BinSparX reduces partial sums by 43.1-49.8 %", "43.1-49.8 %", "not measured", "—", ""]
    txt = "; ".join(f"{100 * v:.1f} % ({k[0]}, {k[1]} rows)" for v, k in red)
    agreed = "yes" if all(43.1 <= 100 * v <= 49.8 for v, _ in red) else "no"
    return ["BinSparX reduces partial sums (conducting cells) by 43.1-49.8 %", "43.1-49.8 %",
            f"{txt} fewer conducting cells than the +1 encoding (exact counts, "
            f"{next(iter(res.skew.values()))['images']} test images)", agreed, "inside 43.1-49.8 %"]


def _claim_costs(cf, ran) -> list[list[str]]:
    """Energy, latency and area with BinSparX against the +1 encoding (cost model, component table)."""
    names = ("BinSparX reduces energy", "BinSparX costs a mild latency increase", "BinSparX costs a mild area increase")
    if cf is None or not len(cf):
        return [[c, "(abstract)", "not measured", "—", ""] for c in names]
    rows = []
    base = cf[cf.variant == "nonideal"].set_index(["network", "technology", "rows", "r_wire_ohm"])
    bsx = cf[cf.variant == "binsparx"].set_index(["network", "technology", "rows", "r_wire_ohm"])
    common = base.index.intersection(bsx.index)
    e_changes = [(bsx.loc[i, "e_total_j"] / base.loc[i, "e_total_j"] - 1, i) for i in common
                 if _num(base.loc[i, "e_total_j"]) and _num(bsx.loc[i, "e_total_j"])]
    if e_changes:
        txt = _range_txt(e_changes) + _energy_confound(ran)
        rows.append([names[0], "reduction (abstract)", f"total energy per image {txt}",
                     "yes" if all(v < 0 for v, _ in e_changes) else "no",
                     "array (calibrated currents) + periphery (component table) lower with BinSparX"])
    else:
        rows.append([names[0], "reduction", "not measured (no calibrated array energy)", "—", ""])
    lat = [(bsx.loc[i, "latency_s"] / base.loc[i, "latency_s"] - 1, i) for i in common]
    area = [(bsx.loc[i, "a_total_um2"] / base.loc[i, "a_total_um2"] - 1, i) for i in common]
    if lat:
        for name, changes in ((names[1], lat), (names[2], area)):
            rows.append([name, "mild (abstract)", _range_txt(changes),
                         "yes" if all(v <= MILD_OVERHEAD for v, _ in changes) else "no",
                         f"increase <= {100 * MILD_OVERHEAD:g} % (cost model, component table)"])
    return rows


def _energy_confound(ran) -> str:
    """A note on the energy comparison: each cell's array energy comes from its own run, whose activations
    the non-idealities corrupt differently with and without BinSparX; say how often the +1 run conducts
    fewer cells than BinSparX's, and what the flips remove within BinSparX's own runs."""
    key = ["network", "technology", "rows", "r_wire_ohm"]
    b = ran[ran.variant == "nonideal"].set_index(key)
    x = ran[ran.variant == "binsparx"].set_index(key)
    common = b.index.intersection(x.index)
    pairs = [(b.loc[i, "on_cell_fraction"], x.loc[i, "on_cell_fraction"]) for i in common
             if _num(b.loc[i, "on_cell_fraction"]) and _num(x.loc[i, "on_cell_fraction"])]
    red = [float(v) for v in x.loc[common, "partial_sum_reduction"] if _num(v)] if len(common) else []
    if not pairs:
        return ""
    fewer = sum(1 for pb, px in pairs if pb < px)
    txt = (f". Caveat: each run's array energy follows its own activations, which the non-idealities change: "
           f"in {fewer} of {len(pairs)} configurations the +1 run conducts fewer cells than BinSparX's run")
    if red:
        txt += (f"; within BinSparX's own runs the flips remove {100 * min(red):.1f}-{100 * max(red):.1f} % "
                f"of the conducting cells (partial sums reduced)")
    return txt


def _range_txt(changes) -> str:
    """'+x %' for one (change, index) pair; the range, its ends' configurations and the count for several."""
    def at(i) -> str:
        return f"{i[0]}, {i[1]}, {i[2]} rows, {i[3]:g} ohm"
    if len(changes) == 1:
        v, i = changes[0]
        return f"{100 * v:+.1f} % ({at(i)})"
    lo, hi = min(changes, key=lambda t: t[0]), max(changes, key=lambda t: t[0])
    return (f"{100 * lo[0]:+.1f} % ({at(lo[1])}) to {100 * hi[0]:+.1f} % ({at(hi[1])}) over "
            f"{len(changes)} configurations")


def _true(v) -> bool:
    """A boolean cell of a frame that is True (not False, None or NaN)."""
    return isinstance(v, (bool, np.bool_)) and bool(v)


def _num(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


MULTIBIT_CLAIM = "MULTIBIT.json"   # written beside REPORT.md by scripts/multibit_study.py render


def multibit_claim(out: Path) -> list[list[str]]:
    """The paper's first claim (BNNs more prone than higher precision), from the multi-bit study's own
    results (docs/MULTIBIT.md) when they sit beside the report or, for a report written elsewhere (the
    quick study's cosim-report/), in the checkout's docs/; else the row says it was not measured.

    Where a k-bit network's own software accuracy is more than ``KBIT_GAP_PP`` points below its BNN's
    (``software_accuracy`` of MULTIBIT.json, else the software table of the MULTIBIT.md beside it), a "no" or
    "partly" is judged "inconclusive": an under-trained k-bit network is no fair test of the claim."""
    from ..paths import CHECKOUT_DIR

    claim = "CiM-BNNs are more prone to crossbar non-idealities than higher-precision networks"
    path = Path(out) / MULTIBIT_CLAIM
    if not path.is_file():
        path = CHECKOUT_DIR / "docs" / MULTIBIT_CLAIM
    rule = ("yes: every k-bit network retains significantly more of its above-chance accuracy than its BNN; "
            "no: some BNN retains significantly more (paired, 95 % CI); inconclusive: a k-bit network's own "
            f"software accuracy is more than {KBIT_GAP_PP:g} points below its BNN's")
    try:
        m = json.loads(path.read_text())
        verdict = {"agreed": "yes", "not agreed": "no", "partly agreed": "partly"}.get(m["agreed"], m["agreed"])
        fig = f"{m['cosim']} (`{m['source']}`)"
        sw = _multibit_software(m, path)
    except FileNotFoundError:
        return [[claim, "yes (abstract)", "not measured here (scripts/multibit_study.py)", "—", ""]]
    except (ValueError, KeyError, TypeError):
        return [[claim, "yes (abstract)", f"unreadable {path.name}", "—", ""]]
    gaps = [(net, k, acc, sw[net][1]) for net in sorted(sw) for k, acc in sorted(sw[net].items())
            if k != 1 and 1 in sw[net] and 100 * (sw[net][1] - acc) > KBIT_GAP_PP]
    if gaps and verdict != "yes":
        fig += (f". Inconclusive rather than {verdict!r}: the k-bit networks are under-trained, their own software "
                "accuracy more than " f"{KBIT_GAP_PP:g} points below their BNN's ("
                + ", ".join(f"{net} {k}-bit {100 * a:.1f} % vs 1-bit {100 * b:.1f} %" for net, k, a, b in gaps)
                + "); k-bit networks trained to full accuracy would settle it. The prepared recipe is "
                  "`scripts/train_gpu.sh` on one CUDA machine (resumable), e.g. `COSIM_CKPT_DIR=ck bash "
                  "scripts/train_gpu.sh vgg-small 80 --bits 2 --init reference`, its checkpoint then copied to "
                  "`$COSIM_CACHE/checkpoints/vgg_small_w2a2.ckpt` (where `scripts/multibit_study.py` looks; see "
                  "docs/MULTIBIT.md), and `scripts/multibit_study.py run` and `render` again")
        verdict = "inconclusive"
    elif not sw:
        fig += " (software accuracies of the k-bit networks not recorded: the k-bit/BNN gap is unchecked)"
    return [[m.get("claim", claim), "yes (abstract)", fig, verdict, rule]]


#: k-bit networks more than this many points below their BNN's software accuracy leave the claim inconclusive
KBIT_GAP_PP = 10.0


def _multibit_software(m: dict, path: Path) -> dict[str, dict[int, float]]:
    """{network: {bits: software accuracy}} from MULTIBIT.json's ``software_accuracy``, else from the software
    table of the MULTIBIT.md it names (rows ``| net | bits | weights | 0.860 (N = 100) | ... |``); {} if neither."""
    import re

    out: dict[str, dict[int, float]] = {}
    if isinstance(m.get("software_accuracy"), dict):
        for net, per in m["software_accuracy"].items():
            for b, v in per.items():
                out.setdefault(net, {})[int(b)] = float(v["accuracy"] if isinstance(v, dict) else v)
        return out
    md = path.parent / str(m.get("source", ""))
    try:
        text = md.read_text() if md.is_file() else ""
    except OSError:
        return {}
    for line in text.splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cols) >= 4 and cols[1].isdigit():
            hit = re.fullmatch(r"([01](?:\.\d+)?) \(N = \d+\)", cols[3])
            if hit:
                out.setdefault(cols[0], {}).setdefault(int(cols[1]), float(hit.group(1)))
    return out


def write_report(res: StudyResults, out: str | Path, command: str = "cosim report") -> Path:
    """Write REPORT.md, the PNGs and the data files under ``out``; the path of REPORT.md.

    All of it is written first into a temporary folder inside ``out`` and then swapped in for the
    previous REPORT.md and report/ folder, so ``out`` holds either the whole old report or the whole
    new one: never a mix of both, nor a half-written file (a full disk, a read-only folder). Faults are
    a StorageError naming the path and the cause; the previous report is then left as it was."""
    import shutil
    import tempfile

    from ..orphans import pid_alive

    out = Path(out)
    check_writable(out, "the report folder")
    for left in out.glob(".report-new-*-*"):   # of a report writer that was killed
        pid = left.name.split("-")[2]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(left, ignore_errors=True)
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".report-new-{os.getpid()}-", dir=out))
    except OSError as e:
        raise StorageError(f"cannot write the report folder {out}: {os_cause(e)}") from None
    try:
        _write_files(res, out, stage, command)
        fig_dir, old = out / "report", None
        if fig_dir.exists():
            old = stage / "report-old"
            os.replace(fig_dir, old)
        try:
            os.replace(stage / "report", fig_dir)
        except OSError:
            if old is not None:
                os.replace(old, fig_dir)
            raise
        os.replace(stage / "REPORT.md", out / "REPORT.md")
    except OSError as e:
        where = describe_os_error(e) if e.filename else f"{out}: {os_cause(e)}"   # pyarrow names no file
        raise StorageError(f"cannot write the report: {where} (the study's cells are cached: fix that and run "
                           "the same command again)") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out / "REPORT.md"


@dataclass
class _ReportData:
    """What the sections of REPORT.md are written from: the frames (also written as CSV/Parquet), the
    figures and the report's provenance."""
    res: StudyResults
    out: Path
    df: Any
    sf: Any
    cf: Any
    lf: Any
    budget_txt: str
    n_exported: int
    n_kept: int
    figs: list = field(default_factory=list)
    hist_figs: list = field(default_factory=list)
    energy_figs: list = field(default_factory=list)
    prov: dict = field(default_factory=dict)
    tables: list = field(default_factory=list)
    ngs: list = field(default_factory=list)


def _write_files(res: StudyResults, out: Path, stage: Path, command: str) -> None:
    """The files of the report for ``out``, written into ``stage`` (REPORT.md and report/)."""
    fig_dir = stage / "report"
    fig_dir.mkdir()
    d = _write_data(res, out, fig_dir)
    _write_figures(d, fig_dir)
    _write_provenance(d, fig_dir, command)
    md = (_section_intro(d, command) + _section_claims(d) + _section_accuracy(d) + _section_array_stats(d)
          + _section_skew(d) + _section_costs(d) + _section_not_run(d) + _section_compute_and_files(d))
    (stage / "REPORT.md").write_text("\n".join(md) + "\n")


def _write_data(res: StudyResults, out: Path, fig_dir: Path) -> _ReportData:
    """The report's frames, written as CSV/Parquet (and the committed cells) into ``fig_dir``."""
    budget, budget_txt = load_error_budget(out)
    df = results_frame(res, budget)
    prev = out / "report" / COMMITTED_CELLS
    n_exported, n_kept = export_cells(res, fig_dir / COMMITTED_CELLS, prev if prev.is_file() else None)
    sf = skew_frame(res)
    cf = costs_frame(res, df) if res.skew else None
    df.to_csv(fig_dir / "results.csv", index=False)
    df.to_parquet(fig_dir / "results.parquet", index=False)
    if len(sf):
        sf.to_csv(fig_dir / "skew_layers.csv", index=False)
    if cf is not None and len(cf):
        cf.to_csv(fig_dir / "costs.csv", index=False)
    lf = latency_frame(res) if res.skew else None
    if lf is not None and len(lf):
        lf.to_csv(fig_dir / "latency_layers.csv", index=False)
    import pandas as pd
    pd.DataFrame(costs_mod.component_table()).to_csv(fig_dir / "components.csv", index=False)

    return _ReportData(res=res, out=out, df=df, sf=sf, cf=cf, lf=lf, budget_txt=budget_txt, n_exported=n_exported,
                       n_kept=n_kept)


def _write_figures(d: _ReportData, fig_dir: Path) -> None:
    """The PNGs: accuracy against rows and wire resistance, ON-count histograms, energy breakdowns."""
    res, df, cf, cfg = d.res, d.df, d.cf, d.res.config
    figs: list[tuple[str, Path]] = []
    for net in cfg.networks:
        for tech in cfg.technologies:
            p = plot_accuracy(df, "rows", "r_wire_ohm", cfg.r_wire_ohm, net, tech, fig_dir / f"acc_vs_rows_{net}_{tech}.png")
            if p:
                figs.append((f"{net} on {tech}: accuracy vs array rows, one panel per wire resistance", p))
            p = plot_accuracy(df, "r_wire_ohm", "rows", cfg.rows, net, tech, fig_dir / f"acc_vs_rwire_{net}_{tech}.png")
            if p:
                figs.append((f"{net} on {tech}: accuracy vs wire resistance, one panel per array size", p))
    hist_figs = [(f"{k[0]}, {k[1]}-row tiles", plot_histograms(sk, fig_dir / f"on_count_hist_{k[0]}_{k[1]}rows.png"))
                 for k, sk in sorted(res.skew.items())]
    energy_figs = []
    if cf is not None:
        for net in cfg.networks:
            for tech in cfg.technologies:
                for rw in cfg.r_wire_ohm:
                    p = plot_energy(cf, net, tech, rw, fig_dir / f"energy_{net}_{tech}_{rw:g}ohm.png")
                    if p:
                        energy_figs.append((f"{net}, {tech}, {rw:g} ohm/cell", p))

    d.figs, d.hist_figs, d.energy_figs = figs, hist_figs, energy_figs


def _write_provenance(d: _ReportData, fig_dir: Path, command: str) -> None:
    """report/provenance.json: the command, grid, machine, code, and the tables the cells used."""
    res, cfg = d.res, d.res.config
    prov = record(command=command, config=cfg.source, quick=cfg.quick, technology=list(cfg.technologies),
                  rows=list(cfg.rows), cols=cfg.cols, r_wire_ohm=list(cfg.r_wire_ohm), seed=cfg.seed,
                  machine=f"{cpu_model()}, {__import__('os').cpu_count()} CPU cores", seconds=round(res.seconds, 1))
    tables = sorted({(r.result or {}).get("provenance", {}).get("table") for r in res.cells if r.result} - {None})
    arrays = [(r.result or {}).get("provenance", {}) for r in res.cells if r.result and r.cell.variant != "software"]
    # a table calibrated by ngspice names its version; one calibrated by the exact solver (cross-checked against
    # ngspice, in the table's own provenance) names that solver
    ngs = sorted({str(p.get("ngspice_version")) for p in arrays} - {"", "None"})
    prov["tables"] = tables
    prov["ngspice_versions_of_tables"] = ngs
    prov["solvers_of_tables"] = sorted({str(p.get("solver")) for p in arrays} - {"", "None"})
    (fig_dir / "provenance.json").write_text(json.dumps(prov, indent=1, default=str))

    d.prov, d.tables, d.ngs = prov, tables, ngs


def _section_intro(d: _ReportData, command: str) -> list[str]:
    """Title, what was run and on which images, how to read the tables."""
    res, df, cfg, prov, tables, ngs, budget_txt = d.res, d.df, d.res.config, d.prov, d.tables, d.ngs, d.budget_txt
    md: list[str] = []
    n_run = int((df.status != "not run").sum())
    n_computed = int((df.status == "computed").sum())
    not_run = df[df.status == "not run"]
    md.append("# BinSparX study: cosim's report\n")
    if cfg.quick:
        md.append(f"**A {cfg.limit}-image illustration, not the study's result.** This quick run evaluates "
                  f"{stats.describe_images(cfg.limit)} per cell, on a subset of the grid, to show what the study "
                  f"does in a few minutes; with {cfg.limit} images a 95 % interval is about "
                  f"±{100 * _half_width(cfg.limit):.0f} points wide. The full study (`cosim report`: the whole "
                  f"grid, at least 1,000 images per cell, paired tests) writes the checkout's `docs/REPORT.md`, "
                  f"whose header says what it was run on.\n")
    cell_s = sum(float((r.result or {}).get("seconds") or 0.0) for r in res.cells)
    md.append(f"Generated by `{command}` in {res.seconds:.0f} s (the cells' own runs took {cell_s:.0f} s in all, "
              f"cached ones included) on {prov['machine']} ({platform.system()}), "
              f"code {code_version()}, {prov['date_utc']}. "
              f"Grid: {cfg.describe()}. {n_run} cell(s) with a result ({n_computed} computed in this run, the rest "
              f"read from the cell cache), {len(not_run)} cell(s) not run."
              + (f" This is the quick subset: {len(res.not_in_run)} more cell(s) of the full grid "
                 f"({res.full_grid_cells} in all) are not in this run (run `cosim report` without --quick)."
                 if cfg.quick and res.full_grid_cells else "")
              + _cell_code_note(df))
    n_stopped = sum(_true(v) for v in df.stopped_at_chance)
    no_outcomes = sum(st != "not run" and not _true(p) for st, p in zip(df.status, df.per_image))
    md.append(f"\nImages: every cell of a network runs on {stats.describe_images(cfg.limit)}, in cosim's class-"
              f"balanced order of the test split (`cosim.study.stats.balanced_indices`): the same images in the "
              f"same order for every variant, so variants are compared image by image (paired tests)"
              f"{'' if cfg.limit >= 1000 else '; fewer than the 1,000 images per cell the study calls for'}. "
              f"A cell stops early only at chance: after {stats.CHANCE_MIN_IMAGES} images with its 95 % upper "
              f"bound below {100 * stats.CHANCE_UPPER:g} % ({n_stopped} cell(s) here). "
              + (f"{no_outcomes} cell(s) were cached without per-image outcomes (by older code): comparisons "
                 f"involving them fall back to unpaired intervals and say so. " if no_outcomes else "")
              + f"{budget_txt}\n")
    md.append("\nAccuracies carry 95 % Wilson intervals. Array variants use the "
              "SPICE-calibrated surrogate (mode `surrogate` of `cosim infer`"
              + (_certified_note(res) if cfg.certify else "") + f") with {cfg.cols}-column tiles, "
              f"ADC of {'just enough bits for every count' if cfg.adc_bits == 0 else f'{cfg.adc_bits} bits'}, "
              f"partial wordline activation of at most {cfg.pwa_rows} rows. Lookup tables: "
              f"{', '.join(Path(t).name for t in tables) or 'none'} ("
              + "; ".join([f"calibrated by {', '.join(prov['solvers_of_tables'])}"] * bool(prov["solvers_of_tables"])
                          + [f"ngspice {', '.join(ngs)}"] * bool(ngs)) + "). "
              "Provenance of every cell: `report/results.csv` (key) and the cell cache; of this report: "
              "`report/provenance.json`.\n")
    md.append("Variants: `software` (the network itself), `nonideal` (+1 stored and applied as the conducting "
              "state, the paper's encoding), `mirrored` (-1 conducting), `binsparx` (per-column weight flips and "
              "per-sub-vector input flips), `pwa` (partial wordline activation), `adc-cal` (calibrated ADC "
              "references), and each mitigation combined with BinSparX.\n")

    return md


def _section_claims(d: _ReportData) -> list[str]:
    """The paper's claims against cosim's cells, judged by paired tests."""
    res, df, cf, out = d.res, d.df, d.cf, d.out
    md: list[str] = []
    md.append("## Claims of the paper against cosim\n")
    md.append(f"Paper: {PAPER}. \"Agreed\" follows the rule in the last column, applied to the cells measured "
              f"here only.\n")
    pair = Pairs(res)
    md.append(md_table(["claim", "paper", "cosim", "agreed", "rule"], claims(df, cf, res, pair) + multibit_claim(out)))
    if res.claims_note:
        md.append(f"\n{res.claims_note}\n")
    md.append(f"\nComparisons between variants are paired on the images both cells ran ({pair.test_name()}); "
              f"differences are in points, A - B, with their 95 % interval"
              + (f"; {pair.unpaired} of {pair.paired + pair.unpaired} comparison(s) unpaired (cells without "
                 f"per-image outcomes)" if pair.unpaired else "") + ".\n")

    return md


def _section_accuracy(d: _ReportData) -> list[str]:
    """The accuracy tables and their figures."""
    df, cfg, figs = d.df, d.res.config, d.figs
    md: list[str] = []
    md.append("\n## Accuracy\n")
    md.append(accuracy_tables(df, cfg))
    for title, p in figs:
        md.append(f"\n![{title}](report/{p.name})\n")

    return md


def _section_array_stats(d: _ReportData) -> list[str]:
    """cosim.cim's counters of the array runs."""
    df = d.df
    md: list[str] = []
    arr = df[(df.variant != "software") & df.accuracy.notna()]
    if len(arr):
        md.append("\n### Array statistics of the runs\n")
        md.append("From cosim.cim's counters over every read of the cell's run (true AND-counts, before the ADC): "
                  "conducting cells over real cells read, mean / max ON-count of a column read, reduction of the "
                  "summed AND-counts by the flips, flipped column slices and sub-vectors, array energy per image.\n")
        md.append(md_table(["network", "tech", "rows", "ohm", "variant", "on cells", "mean ON", "max ON",
                             "partial sums reduced", "cols flipped", "sub-vectors flipped", "array nJ/img"],
                            [[r.network, r.technology, str(int(r.rows)), f"{r.r_wire_ohm:g}", r.variant,
                              pct(r.on_cell_fraction), fmt(r.mean_on_count, "{:.2f}"), fmt(r.max_on_count, "{:.0f}"),
                              pct(r.partial_sum_reduction), pct(r.flipped_column_fraction),
                              pct(r.flipped_subvector_fraction), fmt(r.array_energy_per_image_j, "{:.3f}", 1e9)]
                             for _, r in arr.iterrows()]))

    return md


def _section_skew(d: _ReportData) -> list[str]:
    """+1 fractions and ON-counts per layer, with the histograms."""
    res, hist_figs = d.res, d.hist_figs
    md: list[str] = []
    md.append("\n## Skew: +1 fractions and ON-counts per layer\n")
    md.append("BinSparX gains from skew. Exact AND-counts (no non-ideality) of every column read, from "
              "`cosim.study.skew`; `on %` is the fraction of real cells read that conduct; `bsx-col` flips only "
              "weight column slices, `bsx-sv` only input sub-vectors.\n")
    for (net, r), sk in sorted(res.skew.items()):
        rows = []
        for l in sk["layers"] + [{"layer": "all", **sk["overall"]}]:
            rows.append([l["layer"], pct(l.get("weight_plus_fraction"), 1), pct(l.get("activation_plus_fraction"), 1),
                         *[pct(l.get(f"on_cell_fraction[{s}]"), 1) for s in
                           ("plus", "minus", "bsx-columns", "bsx-subvectors", "binsparx")],
                         pct(-(l.get("on_cell_change_vs_plus[binsparx]") or 0.0), 1),
                         pct(l.get("flipped_column_fraction"), 1), pct(l.get("flipped_subvector_fraction"), 1)])
        md.append(f"\n### {net}, {r}-row tiles ({sk['images']} test images)\n")
        md.append(md_table(["layer", "w +1", "x +1", "on % (+1)", "on % (mirrored)", "on % (bsx-col)",
                             "on % (bsx-sv)", "on % (BinSparX)", "fewer ON vs +1", "cols flipped", "sub-vectors flipped"], rows))
    for title, p in hist_figs:
        md.append(f"\n![ON-count histogram, {title}](report/{p.name})\n")

    return md


def _section_costs(d: _ReportData) -> list[str]:
    """Energy, latency and area from the cost model."""
    from ..circuit.technology import get_technology

    cf, lf, energy_figs, cfg = d.cf, d.lf, d.energy_figs, d.res.config
    md: list[str] = []
    md.append("\n## Energy, latency and area\n")
    md.append("Array energy per image = sum over reads of the calibrated column currents x v_read_v x t_read_s "
              "(from the surrogate run of the cell). Periphery from the component table below "
              "(`cosim.study.costs`: one SAR ADC per `adc_share` columns, popcount adder tree, correction and "
              "accumulation, and for BinSparX input XORs, flip registers and sign correction; BinSparX puts the "
              "popcount before the read). Latency: all tiles of a layer in parallel, output positions in sequence, "
              "layers in sequence. Each cell's array energy comes from its own run: where the non-idealities "
              "push a run's activations towards -1, that run conducts fewer cells and draws less array energy for "
              "that reason, not for its encoding (compare `on cells` in the array statistics above), so the "
              "side-by-side comparison below is between runs, not a controlled isolation of BinSparX.\n")
    if cf is not None and len(cf):
        rows = []
        for _, c in cf.iterrows():
            rows.append([c.network, c.technology, c.rows, f"{c.r_wire_ohm:g}", c.variant,
                         "not measured" if not _num(c.e_array_j) else f"{1e9 * c.e_array_j:.3f}",
                         f"{1e9 * c.e_periphery_j:.3f}",
                         "—" if not _num(c.e_total_j) else f"{1e9 * c.e_total_j:.3f}",
                         f"{1e6 * c.latency_s:.2f}", f"{int(c.cycles)}", f"{c.a_array_um2 / 1e6:.4f}",
                         f"{c.a_total_um2 / 1e6:.4f}"])
        md.append(md_table(["network", "tech", "rows", "ohm", "variant", "array nJ/img", "periphery nJ/img",
                             "total nJ/img", "latency us/img", "cycles", "array mm²", "total mm²"], rows))
        md.append("\nBinSparX against the +1 encoding, side by side (energy per image in nJ; savings negative):\n")
        md.append(md_table(["network", "tech", "rows", "ohm", "array energy", "periphery energy", "total energy",
                             "latency", "area"], side_by_side(cf)))
    else:
        md.append("not measured (no skew statistics / layer shapes in this run)")
    if lf is not None and len(lf):
        md.append("\nCycles per image (clock of the component table), +1 encoding vs BinSparX, summed over the "
                  "layers, with the smallest and largest per-layer overhead; every layer in "
                  "`report/latency_layers.csv`:\n")
        lrows = []
        for (net, tech, r), g in lf.groupby(["network", "technology", "rows"], sort=False):
            ov = g.cycles_binsparx / g.cycles_baseline - 1
            cb, cx = int(g.cycles_baseline.sum()), int(g.cycles_binsparx.sum())
            lrows.append([net, tech, str(r), str(len(g)), str(cb), str(cx), f"{100 * (cx / cb - 1):+.2f} %",
                          f"{100 * ov.min():+.1f} % / {100 * ov.max():+.1f} %"])
        md.append(md_table(["network", "tech", "rows", "layers", "cycles (+1)", "cycles (BinSparX)", "overhead",
                             "per-layer overhead min / max"], lrows))
    for title, p in energy_figs:
        md.append(f"\n![energy breakdown, {title}](report/{p.name})\n")
    md.append("\nComponent table (`report/components.csv`):\n")
    md.append(md_table(["component", "value", "unit", "meaning", "source"],
                        [[c["name"], f"{c['value']:g}", c["unit"], c["meaning"], c["source"]]
                         for c in costs_mod.component_table()]))
    for name in cfg.technologies:   # a technology file's own periphery figures ([periphery], TECHNOLOGIES.md)
        own = get_technology(name).periphery_values()
        if own:
            md.append(f"\nTechnology `{name}` replaces, from its file's [periphery] table: "
                      + "; ".join(f"{k} = {v['value']:g} {costs_mod.COMPONENTS[k].unit} ({v['source']})"
                                  for k, v in own.items() if k in costs_mod.COMPONENTS) + ".\n")

    return md


def _section_not_run(d: _ReportData) -> list[str]:
    """The cells without a result, grouped, and the cells outside a quick run."""
    res, df, cfg = d.res, d.df, d.res.config
    not_run = df[df.status == "not run"]
    md: list[str] = []
    md.append("\n## Cells not run\n")
    if len(not_run):
        groups: dict[tuple, list] = {}
        for cr in res.cells:
            if cr.status == "not run":
                c = cr.cell
                k = (c.technology or "", c.rows or 0, c.r_wire_ohm or 0.0, cr.reason)
                groups.setdefault(k, []).append(f"{c.network}/{c.variant}")
        md.append(f"{len(not_run)} cell(s), grouped by technology, array size, wire resistance and reason:\n")
        md.append(md_table(["tech", "rows", "ohm", "cells", "reason"],
                            [[t, str(r), f"{rw:g}", f"{len(v)}: " + ", ".join(v) if len(v) <= 4 else
                              f"{len(v)} ({len({x.split('/')[0] for x in v})} network(s) x "
                              f"{len({x.split('/')[1] for x in v})} variant(s))", reason]
                             for (t, r, rw, reason), v in groups.items()]))
    else:
        md.append("None of this run's cells failed to run.")
    if cfg.quick and res.not_in_run:
        shown = res.not_in_run[:20]
        md.append(f"\n{len(res.not_in_run)} cell(s) of the full grid are outside this quick run, e.g.: "
                  + ", ".join(f"`{s}`" for s in shown) + (" ..." if len(res.not_in_run) > len(shown) else ""))
    return md


def _section_compute_and_files(d: _ReportData) -> list[str]:
    """The compute the cells took, and the files beside REPORT.md."""
    res, df, n_exported, n_kept = d.res, d.df, d.n_exported, d.n_kept
    md: list[str] = []
    md.append("\n## Compute\n")
    md.append(compute_text(res, df, n_exported, n_kept))
    md.append("\n## Files\n")
    md.append(f"`report/{COMMITTED_CELLS}` (every cell's result with its per-image outcomes, for "
              f"`cosim report --from-cache`), "
              "`report/results.csv` / `report/results.parquet` (one row per cell), `report/skew_layers.csv`, "
              "`report/costs.csv`, `report/latency_layers.csv`, `report/components.csv`, `report/provenance.json`, and the PNGs above.\n")


    return md


def _cell_code_note(df) -> str:
    """Which code computed the cells, where that is not the code writing the report (cells read with
    ``--from-cache``): the report's costs and tables are this code's, the cells' accuracies and array
    statistics theirs."""
    codes = df.code_version.dropna().value_counts()
    if not len(codes) or set(codes.index) == {code_version()}:
        return ""
    return (" The cells' results were computed by code " + ", ".join(f"{c} ({n} cell(s))" for c, n in codes.items())
            + " (read from the cell cache); the periphery cost model (energy, latency, area) and the tables and "
              "figures of this report are those of the code that wrote it, named above.")


def accuracy_summary(res: StudyResults) -> str:
    """A plain-text accuracy table for the terminal (one line per cell with a result)."""
    df = results_frame(res)
    lines = [f"{'network':10} {'tech':10} {'rows':>4} {'ohm':>4} {'variant':18} {'accuracy':>9}  95% CI            n"]
    for _, r in df.iterrows():
        if r.status == "not run":
            lines.append(f"{r.network:10} {r.technology:10} {'' if r.rows is None or r.rows != r.rows else int(r.rows):>4} "
                         f"{'' if r.r_wire_ohm is None or r.r_wire_ohm != r.r_wire_ohm else f'{r.r_wire_ohm:g}':>4} "
                         f"{r.variant:18} not run: {r.reason[:80]}")
            continue
        rows = "" if r.variant == "software" else int(r.rows)
        rw = "" if r.variant == "software" else f"{r.r_wire_ohm:g}"
        lines.append(f"{r.network:10} {r.technology or '-':10} {rows:>4} {rw:>4} {r.variant:18} "
                     f"{100 * r.accuracy:8.2f}%  [{100 * r.ci_low:5.1f}, {100 * r.ci_high:5.1f}]  {int(r.n)}"
                     + ("  (stopped at chance)" if _true(r.stopped_at_chance) else ""))
    return "\n".join(lines)
