"""Validation of a lookup table's surrogate against fresh SPICE points (never used in calibration).

For each pattern family (``random``: inputs and weights 1 with p = 0.5; ``skewed``: input and weight
densities drawn per vector / per column from 10-90 %) ngspice simulates fresh arrays, and the
surrogate and two baselines predict the same columns:

- ``surrogate``   the table's model (ON-count, cosine moments of the ON pattern, leak terms);
- ``ideal``       no non-ideality at all: k * I_on + leaking cells * I_off;
- ``count_only``  the mean calibration current of the column's ON-count (a table over k alone).

Codes are compared through the SAME ADC (``--adc-references``, ``--adc-bits``): a prediction agrees
when it yields the code that the SPICE current yields. The report also says how often the SPICE code
equals the true AND-count (the physics: how wrong the array itself is).

Metrics per predictor, overall and per ON-count: ``code_agreement``, ``mean_abs_code_error`` (codes,
i.e. counts), ``current_rel_rmse`` (RMS of the current error over RMS of the SPICE current),
``n_columns``. Points are simulated with seeds disjoint from calibration (``[seed, 7777, family]``)
and can be kept in an output folder (``out_dir``) so a rerun reuses them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .adc import ADC
from .calibrate import random_patterns
from .errors import InputError
from .fileio import atomic_path
from .tables import LookupTable, load_table

FAMILIES = ("random", "skewed", "network")
PREDICTORS = ("surrogate", "ideal", "count_only")
_FAMILY_ID = {"random": 1, "skewed": 2, "network": 3}


def metrics(pred_a: np.ndarray, spice_a: np.ndarray, pred_code: np.ndarray, spice_code: np.ndarray) -> dict[str, Any]:
    pred_a, spice_a = np.asarray(pred_a, np.float64).ravel(), np.asarray(spice_a, np.float64).ravel()
    pc, sc = np.asarray(pred_code, np.float64).ravel(), np.asarray(spice_code, np.float64).ravel()
    denom = float(np.sqrt(np.mean(spice_a ** 2))) if spice_a.size else 0.0
    return {
        "code_agreement": float(np.mean(pc == sc)) if sc.size else float("nan"),
        "mean_abs_code_error": float(np.mean(np.abs(pc - sc))) if sc.size else float("nan"),
        "current_rel_rmse": float(np.sqrt(np.mean((pred_a - spice_a) ** 2)) / denom) if denom > 0 else float("nan"),
        "n_columns": int(sc.size),
    }


def _per_count(k: np.ndarray, pred_a, spice_a, pred_code, spice_code) -> dict[str, dict[str, Any]]:
    out = {}
    for c in np.unique(k):
        s = k == c
        out[str(int(c))] = metrics(pred_a[s], spice_a[s], pred_code[s], spice_code[s])
    return out


def _network_patterns(*_: Any) -> tuple[np.ndarray, np.ndarray]:
    raise InputError("pattern family 'network' needs slices of a trained binary network, which cosim's "
                     "validation does not take yet; use random and/or skewed")


def spice_family(table: LookupTable, family: str, n_columns: int, seed: int, vectors: int, cols: int,
                 out_dir: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """Simulate fresh arrays of one family. Returns inputs list, weights list, currents, run metadata.

    Runs are kept as ``out_dir/<family>/run_NNN.npz`` when ``out_dir`` is given (resumable)."""
    from .netlist import ArraySpec
    from .spice import run_array

    if family == "network":
        _network_patterns()
    tech = table.technology()
    spec = ArraySpec(tech, table.rows, cols, table.topology)
    n_runs = max(1, int(np.ceil(n_columns / (vectors * cols))))
    xs, ws, cur, meta = [], [], [], []
    for r in range(n_runs):
        path = None if out_dir is None else out_dir / family / f"run_{r:03d}.npz"
        rng = np.random.default_rng([int(seed), 7777, _FAMILY_ID[family], r])
        x, w = random_patterns(family, rng, table.rows, cols, vectors)
        if path is not None and path.is_file():
            with np.load(path) as z:
                if np.array_equal(z["inputs"], x) and np.array_equal(z["weights"], w) and \
                        str(z["technology"]) == json.dumps(tech.as_dict(), sort_keys=True):
                    xs.append(x); ws.append(w); cur.append(z["current_a"])
                    meta.append({k: str(z[k]) for k in ("ngspice_version", "solver", "netlist_sha256")} |
                                {"seconds": float(z["seconds"])})
                    continue
        res = run_array(spec, x, w)
        if path is not None:
            with atomic_path(path, suffix=".npz") as tmp:
                np.savez_compressed(tmp, inputs=x, weights=w, current_a=res.column_current_a,
                                    ngspice_version=np.array(res.ngspice_version), solver=np.array(res.solver),
                                    netlist_sha256=np.array(res.netlist_sha256), seconds=np.array(res.seconds),
                                    technology=np.array(json.dumps(tech.as_dict(), sort_keys=True)))
        xs.append(x); ws.append(w); cur.append(res.column_current_a)
        meta.append({"ngspice_version": res.ngspice_version, "solver": res.solver,
                     "netlist_sha256": res.netlist_sha256, "seconds": res.seconds})
    return xs, ws, cur, meta


def validate(table: LookupTable | str | Path, patterns: Iterable[str] = ("random", "skewed"), n_columns: int = 512,
             seed: int = 1, vectors: int = 16, cols: int | None = None, adc: ADC | None = None,
             out_dir: str | Path | None = None, return_samples: bool = False) -> dict[str, Any]:
    """Compare the surrogate and the baselines with fresh SPICE points; returns the report dict
    (JSON-ready; with ``return_samples`` also ``samples``: numpy arrays per column, for plots)."""
    import torch

    from .provenance import code_version, record
    from .surrogate import Surrogate

    if not isinstance(table, LookupTable):
        table = load_table(table)
    patterns = [p.strip() for p in patterns if p.strip()]
    for p in patterns:
        if p not in FAMILIES:
            raise InputError(f"unknown pattern family '{p}': expected some of {', '.join(FAMILIES)}")
    if not patterns:
        raise InputError("no pattern family given")
    if n_columns < 1 or vectors < 1:
        raise InputError("n and vectors must be positive")
    cols = cols or min(table.rows, 32)
    adcs = {"ideal": ADC(references="ideal"), "calibrated": ADC(references="calibrated")}
    if adc is not None:
        adcs = {"selected": adc, **adcs}
    main_adc = "selected" if adc is not None else "ideal"
    s0 = Surrogate.from_table(table)
    bound = {name: a.bind(table) for name, a in adcs.items()}   # each ADC as the surrogate would bind it
    out = Path(out_dir) if out_dir is not None else None
    warnings = []
    if table.provenance.get("code_version") != code_version():
        warnings.append(f"table made by code version {table.provenance.get('code_version')}, "
                        f"validated with {code_version()}")
    report: dict[str, Any] = {"patterns": {}, "warnings": warnings}
    all_rows: dict[str, list] = {"k": [], "spice": [], **{p: [] for p in PREDICTORS}}
    spice_meta: list[dict] = []
    t0 = time.perf_counter()
    for fam in patterns:
        xs, ws, cur, meta = spice_family(table, fam, n_columns, seed, vectors, cols, out)
        spice_meta += meta
        k_l, sp_l, pr = [], [], {p: [] for p in PREDICTORS}
        for x, w, c in zip(xs, ws, cur):
            xt = torch.as_tensor(x, dtype=torch.float32)
            wt = torch.as_tensor(w, dtype=torch.float32)
            k_l.append((x.astype(np.int64) @ w.astype(np.int64)).ravel())
            sp_l.append(np.asarray(c, np.float64).ravel())
            pr["surrogate"].append(s0.column_currents(xt, wt).double().numpy().ravel())
            pr["ideal"].append(s0.ideal_currents(xt, wt).double().numpy().ravel())
            pr["count_only"].append(s0.count_only_currents(xt, wt).double().numpy().ravel())
        k = np.concatenate(k_l)
        spice = np.concatenate(sp_l)
        preds = {p: np.concatenate(v) for p, v in pr.items()}
        all_rows["k"].append(k)
        all_rows["spice"].append(spice)
        for p in PREDICTORS:
            all_rows[p].append(preds[p])
        report["patterns"][fam] = _section(bound, main_adc, k, spice, preds)
    k = np.concatenate(all_rows["k"])
    spice = np.concatenate(all_rows["spice"])
    preds = {p: np.concatenate(all_rows[p]) for p in PREDICTORS}
    overall = _section(bound, main_adc, k, spice, preds)
    report.update({key: overall[key] for key in ("code_agreement", "mean_abs_code_error", "current_rel_rmse", "n_columns")})
    report["baselines"] = overall["baselines"]
    report["per_on_count"] = overall["per_on_count"]
    report["by_adc"] = overall["by_adc"]
    report["spice_code_equals_true_count"] = overall["spice_code_equals_true_count"]
    report["adc"] = bound[main_adc].describe()
    if return_samples:
        fams = np.concatenate([np.full(len(a), f) for f, a in zip(patterns, all_rows["k"])])
        report["samples"] = {"k": k, "spice_a": spice, "family": fams, **{f"{p}_a": v for p, v in preds.items()}}
    report["table"] = {k2: v for k2, v in table.provenance.items() if k2 != "technology_params"}
    report["table_meta"] = table.meta
    report["provenance"] = record(
        technology=table.tech_name, rows=table.rows, topology=table.topology, seed=seed, vectors=vectors, cols=cols,
        ngspice_version=",".join(sorted({m["ngspice_version"] for m in spice_meta})),
        solver=",".join(sorted({m["solver"] for m in spice_meta})),
        netlist_sha256=sorted({m["netlist_sha256"] for m in spice_meta}),
        spice_seconds=float(sum(m["seconds"] for m in spice_meta)), seconds=time.perf_counter() - t0)
    return report


def _section(adcs: dict, main_adc: str, k: np.ndarray, spice: np.ndarray, preds: dict) -> dict[str, Any]:
    by_adc = {}
    for name, a in adcs.items():
        sc = a.digitize(spice)
        codes = {p: a.digitize(preds[p]) for p in PREDICTORS}
        entry = {p: metrics(preds[p], spice, codes[p], sc) for p in PREDICTORS}
        entry["spice_code_equals_true_count"] = float(np.mean(sc == np.minimum(k, a.max_code * a.lsb_counts)))
        by_adc[name] = entry
        if name == main_adc:
            per = {p: _per_count(k, preds[p], spice, codes[p], sc) for p in PREDICTORS}
    main = by_adc[main_adc]
    return {**main["surrogate"], "baselines": {p: main[p] for p in ("ideal", "count_only")},
            "per_on_count": per, "by_adc": by_adc,
            "spice_code_equals_true_count": main["spice_code_equals_true_count"]}


def summary_line(report: dict[str, Any]) -> str:
    b = report["baselines"]
    return (f"surrogate: code agreement {report['code_agreement']:.4f}, mean |code error| "
            f"{report['mean_abs_code_error']:.4f}, current rel RMSE {report['current_rel_rmse']:.2e} over "
            f"{report['n_columns']} columns; count-only {b['count_only']['code_agreement']:.4f} / "
            f"{b['count_only']['current_rel_rmse']:.2e}; ideal {b['ideal']['code_agreement']:.4f} / "
            f"{b['ideal']['current_rel_rmse']:.2e}")


__all__ = ["validate", "metrics", "summary_line", "FAMILIES"]
