"""Validation of a lookup table's surrogate against fresh SPICE points (never used in calibration).

For each pattern family ngspice simulates fresh arrays, and the surrogate and two baselines predict
the same columns. Families:

- ``random``   inputs and weights 1 with p = 0.5;
- ``skewed``   input and weight densities drawn per vector / per column from 10-90 %;
- ``network``  real operands of a trained binary network (``cosim.surrogate.netslices``): R-row slices of the
  unrolled inputs and weight columns of several binary layers on a few CIFAR-10 test images, runs
  alternating without and with BinSparX's flips (what inference applies);
- ``far``      one contiguous block of conducting cells at the far end of the bit line (row 0 side):
  weight column c holds rows 0..b_c-1, input vector v drives rows 0..a_v-1 (vector 0: every row), so the
  block is rows 0..min(a_v, b_c)-1; the b_c cover every count 0..R evenly;
- ``near``     the same block at the sense end (rows R-b..R-1);
- ``alternate`` every other row: each column stores the rows of one parity, each vector drives one
  contiguous window (vector 0: every row), so every other row of the window conducts (counts 0..R/2);
- ``dense``    every input and weight 1 with a probability drawn per vector / column from U(0.95, 1):
  90-100 % of the cells conduct
  (``cosim.sweep.calibration.placement_patterns``).

Predictors:

- ``surrogate``   the table's model (ON-count, Legendre moments of the ON pattern and leaking cells, moments-v3);
- ``ideal``       no non-ideality at all: k * I_on + leaking cells * I_off;
- ``count_only``  the mean calibration current of the column's ON-count (a table over k alone).

and, for tables that record their calibration residuals, **certified reads**
(``cosim.cim.arrays.CertifiedArray``, the default safety factor): the surrogate's code except where its current
lies within the margin of a decision level, where the exact solver re-solves the column (a coupled table: the
whole input vector, every column of the array). Codes only (a certified
read keeps no current of the columns it leaves alone), per reference under ``by_adc[ref]["certified"]``:
``code_agreement``, ``mean_abs_code_error``, ``n_columns`` and ``resolved_fraction`` (the columns re-solved).
The re-solves are the exact solver's, so these codes test it against ngspice where it matters most: near the
decision levels. ``certified=False`` skips them; ``certified_skipped`` says why they are missing.

Codes are compared through the SAME ADC: a prediction agrees when it yields the code that the SPICE
current yields. Both references are always reported side by side (``by_adc``: ``ideal``, levels
k * I_cell, and ``calibrated``, the table's mean SPICE current per count; ``selected``, the
``--adc-references`` / ``--adc-bits`` ADC, gives the headline numbers when it is asked for), overall and
per family, each with per-count figures of the surrogate (``by_adc[ref]["per_on_count"][k]``):
``code_agreement``, ``n_columns``, ``max_abs_error_a`` (its largest current error at that count) and
``margin_a`` (half the smaller gap from the count's reference level to its neighbours', where the ADC's
decision levels lie), ``near_level_fraction`` (the fraction of its columns whose SPICE current lies closer
to a decision level than ``max_abs_error_a``: codes a predictor with that residual cannot be sure of;
every disagreement is among them); ``fragile`` marks a count whose error exceeds its margin: adjacent counts' currents
lie closer together than the surrogate's residual, so its codes are intrinsically fragile there (certified
reads re-solve such columns). The report also says how often the SPICE code
equals the true AND-count (the physics: how wrong the array itself is).

Metrics per predictor, overall and per ON-count: ``code_agreement``, ``mean_abs_code_error`` (codes,
i.e. counts), ``current_rel_rmse`` (RMS of the current error over RMS of the SPICE current),
``n_columns``. Points are simulated with seeds disjoint from calibration (``[seed, 7777, family, run]``)
through the same machinery as calibration (``cosim.sweep.points.run_points``: local processes or a dask
cluster, the content-addressed SPICE point cache, the convergence-aid ladder), and can also be kept in
an output folder (``out_dir``) so a rerun reuses them without the cache.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Iterable, overload

import numpy as np

from .adc import ADC
from ..sweep.calibration import random_patterns
from ..errors import InputError, StorageError
from ..fileio import check_writable, describe_os_error
from ..circuit.netlist import MAX_SIZE
from .tables import LookupTable, load_table, provenance_warnings

FAMILIES = ("random", "skewed", "network", "far", "near", "alternate", "dense")
PREDICTORS = ("surrogate", "ideal", "count_only")
_FAMILY_ID = {"random": 1, "skewed": 2, "network": 3, "far": 4, "near": 5, "alternate": 6, "dense": 7}


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


@dataclass
class _Run:
    family: str
    index: int
    x: np.ndarray
    w: np.ndarray
    info: dict[str, Any] | None = None


def family_runs(table: LookupTable, family: str, n_columns: int, seed: int, vectors: int, cols: int,
                network: Any = None) -> list[_Run]:
    """The SPICE runs of one family: ceil(n_columns / (vectors * cols)) arrays of ``cols`` columns and
    ``vectors`` input vectors, patterns drawn from ``[seed, 7777, family, run]`` (``network``: a
    ``cosim.surrogate.netslices.NetworkSource``, needed by the ``network`` family)."""
    n_runs = max(1, int(np.ceil(n_columns / (vectors * cols))))
    runs = []
    for r in range(n_runs):
        if family == "network":
            x, w, info = network.sample(table.rows, r, seed, vectors, cols)
        else:
            rng = np.random.default_rng([int(seed), 7777, _FAMILY_ID[family], r])
            (x, w), info = random_patterns(family, rng, table.rows, cols, vectors), None
        runs.append(_Run(family, r, x, w, info))
    return runs


#: where ``out_dir`` keeps the SPICE runs (``cosim.sweep.store`` layout): ``out_dir/FAMILY/run_NNN.npz``
RUN_LAYOUT = "{kind}/run_{key}.npz"


@overload
def _kept_path(out_dir: Path, run: _Run) -> Path: ...
@overload
def _kept_path(out_dir: Path | None, run: _Run) -> Path | None: ...
def _kept_path(out_dir: Path | None, run: _Run) -> Path | None:
    from ..sweep.store import ResultStore
    return None if out_dir is None else ResultStore(out_dir, RUN_LAYOUT).path(run.family, f"{run.index:03d}")


def _read_kept(path: Path | None, run: _Run, tech_json: str) -> tuple[np.ndarray, dict] | None:
    """A kept SPICE run of ``out_dir`` for exactly these operands and technology, else None (an unreadable
    one is reported by the store and simulated again)."""
    from ..sweep.store import ResultStore
    if path is None or not path.is_file():
        return None
    z = ResultStore(path.parent.parent, RUN_LAYOUT, legacy=True).get(run.family, f"{run.index:03d}")
    try:
        if z is None or not (np.array_equal(z["inputs"], run.x) and np.array_equal(z["weights"], run.w)
                             and str(z["technology"]) == tech_json):
            return None
        meta = {k: str(z[k]) for k in ("ngspice_version", "solver", "netlist_sha256")}
        return np.array(z["current_a"]), meta | {"seconds": float(z["seconds"]), "cached": True}
    except (KeyError, ValueError):
        return None      # not a kept run of this code: simulated again


def _keep(path: Path, run: _Run, current_a: np.ndarray, meta: dict, tech_json: str) -> None:
    from ..sweep.store import ResultStore
    arrays = {"inputs": run.x, "weights": run.w, "current_a": current_a,
              "ngspice_version": np.array(meta["ngspice_version"]), "solver": np.array(meta["solver"]),
              "netlist_sha256": np.array(meta["netlist_sha256"]), "seconds": np.array(meta["seconds"]),
              "technology": np.array(tech_json), "info": np.array(json.dumps(run.info, sort_keys=True))}
    ResultStore(path.parent.parent, RUN_LAYOUT, compress=True).put(run.family, f"{run.index:03d}", arrays)


def simulate_runs(table: LookupTable, runs: list[_Run], cols: int, out_dir: Path | None, executor: Any = None,
                  cache: Any = None, point_timeout_s: float | None = None, progress: bool | str = False
                  ) -> tuple[list[np.ndarray | None], list[dict], dict[int, str], Any]:
    """SPICE column currents of every run: kept runs of ``out_dir`` first, the others as points of
    ``cosim.sweep.points.run_points`` (``executor``: local processes or a dask cluster, default this process;
    ``cache``: the SPICE point cache, default ``$COSIM_CACHE/spice``, False: none). Returns
    (currents or None, meta, {run: reason} of failed runs, the sweep report or None)."""
    from ..circuit.netlist import ArraySpec
    from ..sweep.points import SpicePoint, run_points

    tech = table.technology()
    tech_json = json.dumps(tech.as_dict(), sort_keys=True)
    spec = ArraySpec(tech, table.rows, cols, table.topology)
    currents: list[np.ndarray | None] = [None] * len(runs)
    meta: list[dict] = [{} for _ in runs]
    todo = []
    for j, run in enumerate(runs):
        kept = _read_kept(_kept_path(out_dir, run), run, tech_json)
        if kept is None:
            todo.append(j)
        else:
            currents[j], meta[j] = kept
    failed: dict[int, str] = {}
    rep = None
    if todo:
        def on_result(i: int, current_a, m: dict) -> None:
            j = todo[i]
            path = _kept_path(out_dir, runs[j])
            if current_a is not None and path is not None:
                _keep(path, runs[j], current_a, m, tech_json)

        rep = run_points([SpicePoint(spec, runs[j].x, runs[j].w) for j in todo], executor=executor, cache=cache,
                         task_timeout_s=point_timeout_s, progress=progress, on_result=on_result)
        for i, j in enumerate(todo):
            currents[j], meta[j] = rep.currents[i], rep.meta[i] or {}
            if i in rep.failed:
                failed[j] = rep.failed[i]
    return currents, meta, failed, rep


def validate(table: LookupTable | str | Path, patterns: Iterable[str] = ("random", "skewed"), n_columns: int = 512,
             seed: int = 1, vectors: int = 16, cols: int | None = None, adc: ADC | None = None,
             out_dir: str | Path | None = None, return_samples: bool = False, network: Any = None,
             executor: Any = None, cache: Any = None, point_timeout_s: float | None = None,
             progress: bool | str = False, certified: bool = True) -> dict[str, Any]:
    """Compare the surrogate and the baselines with fresh SPICE points; returns the report dict
    (JSON-ready; with ``return_samples`` also ``samples``: numpy arrays per column, for plots).

    ``network``: the ``cosim.surrogate.netslices.NetworkSource`` of the ``network`` family (default: the reference
    VGG-small on the first ``cosim.surrogate.netslices.DEFAULT_IMAGES`` CIFAR-10 test images). ``executor``,
    ``cache``, ``point_timeout_s``: where and how the SPICE points run (``simulate_runs``). A run that
    fails even with the convergence aids is left out of the metrics and listed under ``failed_runs``
    (with a warning); if every run fails, an NgspiceError. ``certified``: also the certified reads' codes
    (tables with calibration residuals; ``certified_skipped`` says why they are not there)."""
    import torch

    from ..errors import NgspiceError
    from ..sweep.executor import SchedulerLostError
    from ..provenance import record
    from .evaluate import Surrogate

    if not isinstance(table, LookupTable):
        table = load_table(table)
    patterns = [p.strip() for p in patterns if p.strip()]
    for p in patterns:
        if p not in FAMILIES:
            raise InputError(f"unknown pattern family '{p}': expected some of {', '.join(FAMILIES)}")
    if not patterns:
        raise InputError("no pattern family given")
    patterns = list(dict.fromkeys(patterns))
    if n_columns < 1 or vectors < 1:
        raise InputError("n and vectors must be positive")
    if cols is None:
        cols = table.cols if table.topology == "coupled" else min(table.rows, 32)
    elif isinstance(cols, bool) or not isinstance(cols, (int, np.integer)) or not 1 <= cols <= MAX_SIZE:
        raise InputError(f"cols must be an integer from 1 to {MAX_SIZE}, got {cols!r}")
    elif table.topology == "coupled" and int(cols) != table.cols:
        raise InputError(f"a coupled table is validated on arrays of its own width ({table.cols} columns), got cols={cols}")
    if "network" in patterns and network is None:
        from .netslices import load_network
        network = load_network()
    adcs = {"ideal": ADC(references="ideal"), "calibrated": ADC(references="calibrated")}
    if adc is not None:
        adcs = {"selected": adc, **adcs}
    main_adc = "selected" if adc is not None else "ideal"
    s0 = Surrogate.from_table(table)
    bound = {name: a.bind(table) for name, a in adcs.items()}   # each ADC as the surrogate would bind it
    certifiers, cert_skipped = _certifiers(table, adcs) if certified else ({}, "not asked for")
    out = check_writable(out_dir, "the output folder") if out_dir is not None else None
    warnings = []
    warnings += provenance_warnings(table.provenance, ngspice=True)
    if not table.technology().kind.linear:
        from ..circuit.netlist import fallback_warning, models_fallback
        fallback = models_fallback()
        if fallback:
            warnings.append(fallback_warning(fallback))
    report: dict[str, Any] = {"patterns": {}, "warnings": warnings}
    if cert_skipped:
        report["certified_skipped"] = cert_skipped
    t0 = time.perf_counter()
    runs = [run for fam in patterns
            for run in family_runs(table, fam, n_columns, seed, vectors, cols, network if fam == "network" else None)]
    try:
        currents, spice_meta, failed, sweep = simulate_runs(table, runs, cols, out, executor=executor, cache=cache,
                                                            point_timeout_s=point_timeout_s, progress=progress)
    except SchedulerLostError as e:
        kept = (f"{sum(_kept_path(out, r).is_file() for r in runs)} of {len(runs)} SPICE runs are kept in {out}"
                if out is not None else "the SPICE runs finished are kept in the SPICE point cache" if cache is not False
                else "nothing is kept (--no-cache and no --out)")
        raise SchedulerLostError(f"{e}; {kept}: run the same command again (with a running scheduler) to "
                                 "resume") from None
    except OSError as e:
        kept = "" if out is None else (f"; {sum(_kept_path(out, r).is_file() for r in runs)} of {len(runs)} SPICE runs "
                                       f"are kept in {out}")
        raise StorageError(f"{describe_os_error(e)}{kept}: fix that and run the same command again to resume") from None
    report["failed_runs"] = [{"family": runs[j].family, "run": runs[j].index, "reason": why}
                             for j, why in sorted(failed.items())]
    if failed:
        warnings.append(f"{len(failed)} of {len(runs)} SPICE runs failed (left out of the metrics; see failed_runs)")
    if len(failed) == len(runs):
        raise NgspiceError(f"every validation SPICE run failed; first: {report['failed_runs'][0]['reason']}")
    all_rows: dict[str, list] = {"k": [], "spice": [], **{p: [] for p in PREDICTORS}}
    all_cert: dict[str, list] = {name: [] for name in certifiers}
    fam_of: list[str] = []
    for fam in patterns:
        pr: dict[str, list]
        k_l, sp_l, pr = [], [], {p: [] for p in PREDICTORS}
        cert: dict[str, list] = {name: [] for name in certifiers}
        for run, c in zip(runs, currents):
            if run.family != fam or c is None:
                continue
            x, w = run.x, run.w
            xt = torch.as_tensor(x, dtype=torch.float32)
            wt = torch.as_tensor(w, dtype=torch.float32)
            k_l.append((x.astype(np.int64) @ w.astype(np.int64)).ravel())
            sp_l.append(np.asarray(c, np.float64).ravel())
            pr["surrogate"].append(s0.column_currents(xt, wt).double().numpy().ravel())
            pr["ideal"].append(s0.ideal_currents(xt, wt).double().numpy().ravel())
            pr["count_only"].append(s0.count_only_currents(xt, wt).double().numpy().ravel())
            read: dict[int, tuple[np.ndarray, int]] = {}     # an ADC the same as another's is read once
            for name, arr in certifiers.items():
                if id(arr) not in read:
                    before = arr.resolved
                    read[id(arr)] = (arr.read(xt, wt).double().numpy().ravel(), arr.resolved - before)
                cert[name].append(read[id(arr)])
        n_failed = sum(1 for j in failed if runs[j].family == fam)
        if not k_l:
            report["patterns"][fam] = {"n_columns": 0, "failed_runs": n_failed}
            continue
        k = np.concatenate(k_l)
        spice = np.concatenate(sp_l)
        preds = {p: np.concatenate(v) for p, v in pr.items()}
        all_rows["k"].append(k)
        all_rows["spice"].append(spice)
        fam_of.append(fam)
        for p in PREDICTORS:
            all_rows[p].append(preds[p])
        certs = {name: _joined(c) for name, c in cert.items()}
        for name, c in certs.items():
            all_cert[name].append(c)
        report["patterns"][fam] = _section(bound, main_adc, k, spice, preds, certs) | {"failed_runs": n_failed}
    k = np.concatenate(all_rows["k"])
    spice = np.concatenate(all_rows["spice"])
    preds = {p: np.concatenate(all_rows[p]) for p in PREDICTORS}
    overall = _section(bound, main_adc, k, spice, preds, {name: _joined(c) for name, c in all_cert.items()})
    report.update({key: overall[key] for key in ("code_agreement", "mean_abs_code_error", "current_rel_rmse", "n_columns")})
    report["baselines"] = overall["baselines"]
    report["per_on_count"] = overall["per_on_count"]
    report["by_adc"] = overall["by_adc"]
    report["spice_code_equals_true_count"] = overall["spice_code_equals_true_count"]
    report["adc"] = bound[main_adc].describe()
    if "network" in patterns:
        report["network"] = {"source": network.describe(),
                             "runs": [{"run": r.index, **(r.info or {}), "failed": j in failed}
                                      for j, r in enumerate(runs) if r.family == "network"]}
    if return_samples:
        fams = np.concatenate([np.full(len(a), f) for f, a in zip(fam_of, all_rows["k"])])
        report["samples"] = {"k": k, "spice_a": spice, "family": fams, **{f"{p}_a": v for p, v in preds.items()}}
    report["table"] = {k2: v for k2, v in table.provenance.items() if k2 != "technology_params"}
    report["table_meta"] = table.meta
    ok_meta = [m for j, m in enumerate(spice_meta) if j not in failed and m]
    net_prov = {}
    if "network" in patterns:
        src = network.describe()
        net_prov = {"network": src.get("network"), "network_layers": src.get("layers"),
                    "network_images": src.get("images"), "network_images_sha256": src.get("images_sha256"),
                    "network_checkpoint": src.get("checkpoint"), "network_checkpoint_sha256": src.get("checkpoint_sha256")}
    report["provenance"] = record(
        technology=table.tech_name, rows=table.rows, topology=table.topology, seed=seed, vectors=vectors, cols=cols,
        patterns=patterns, **net_prov,
        ngspice_version=",".join(sorted({str(m.get("ngspice_version")) for m in ok_meta})),
        solver=",".join(sorted({str(m.get("solver")) for m in ok_meta})),
        netlist_sha256=sorted({str(m.get("netlist_sha256")) for m in ok_meta}),
        spice_runs=len(runs), spice_runs_reused=sum(1 for m in spice_meta if m.get("cached")),
        spice_failed=len(failed), executor=sweep.executor if sweep is not None else "none (all runs reused)",
        certify_safety=(next(iter(certifiers.values())).describe()["certify_safety_counts"] if certifiers else None),
        spice_seconds=float(sum(float(m.get("seconds", 0.0)) for m in ok_meta)), seconds=time.perf_counter() - t0)
    return report


def _joined(parts: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, int]:
    """Certified reads' (codes, columns re-solved) of several runs as one."""
    return np.concatenate([p[0] for p in parts]), sum(p[1] for p in parts)


def _certifiers(table: LookupTable, adcs: dict[str, ADC]) -> tuple[dict[str, Any], str | None]:
    """({ADC name: CertifiedArray reading through that ADC}, None), or ({}, why not) for a table certified
    reads refuse (one without calibration residuals). ADCs with the same settings and decision levels (the
    ``selected`` one is often the ideal or calibrated one) share one CertifiedArray, so their columns are re-solved
    once."""
    from ..cim.arrays import CertifiedArray
    from .evaluate import Surrogate

    if "certify_residual_a" not in table.arrays or "certify_band_counts" not in table.meta:
        return {}, "the table records no calibration residuals"
    made: dict[tuple, Any] = {}
    out = {}
    for name, a in adcs.items():
        same = (repr(a), a.bind(table).levels_a().tobytes())
        if same not in made:
            made[same] = CertifiedArray(Surrogate(table, adc=a), table.technology())
        out[name] = made[same]
    return out, None


def _section(adcs: dict, main_adc: str, k: np.ndarray, spice: np.ndarray, preds: dict,
             certified: dict[str, tuple[np.ndarray, int]] | None = None) -> dict[str, Any]:
    by_adc = {}
    for name, a in adcs.items():
        sc = a.digitize(spice)
        codes = {p: a.digitize(preds[p]) for p in PREDICTORS}
        entry: dict[str, Any] = {p: metrics(preds[p], spice, codes[p], sc) for p in PREDICTORS}
        if certified and name in certified:
            c_codes, n_resolved = certified[name]
            entry["certified"] = {"code_agreement": float(np.mean(c_codes == sc)),
                                  "mean_abs_code_error": float(np.mean(np.abs(c_codes - sc))),
                                  "n_columns": int(sc.size), "resolved_fraction": n_resolved / max(int(sc.size), 1)}
        entry["spice_code_equals_true_count"] = float(np.mean(sc == np.minimum(k, a.max_code * a.lsb_counts)))
        entry["per_on_count"] = _per_count_margins(a, k, preds["surrogate"], spice, codes["surrogate"], sc)
        entry["fragile_counts"] = [int(c) for c, v in entry["per_on_count"].items() if v["fragile"]]
        by_adc[name] = entry
        if name == main_adc:
            per = {p: _per_count(k, preds[p], spice, codes[p], sc) for p in PREDICTORS}
    main = by_adc[main_adc]
    return {**main["surrogate"], "baselines": {p: main[p] for p in ("ideal", "count_only")},
            "per_on_count": per, "by_adc": by_adc,
            "spice_code_equals_true_count": main["spice_code_equals_true_count"]}


def _per_count_margins(a: ADC, k: np.ndarray, pred_a: np.ndarray, spice_a: np.ndarray, pred_code: np.ndarray,
                       spice_code: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per ON-count: the surrogate's code agreement through ADC ``a``, its largest current error, and the
    margin of that count's code (half the smaller gap from its reference level to its neighbours')."""
    levels = a.levels_a()
    gaps = np.diff(levels)
    out = {}
    for c in np.unique(k):
        s = k == c
        code = int(c) // a.lsb_counts
        if a.lsb_counts == 1 and code <= a.max_code:
            near = [gaps[i] for i in (code - 1, code) if 0 <= i < gaps.size]
            margin = 0.5 * float(min(near)) if near else float("nan")
        else:
            margin = float("nan")    # several counts per code, or beyond the ADC's range: no single level
        err = float(np.max(np.abs(pred_a[s] - spice_a[s])))
        th = a.thresholds_a()
        dist = (np.min(np.abs(spice_a[s][:, None] - th[None, :]), axis=1) if th.size
                else np.full(int(s.sum()), np.inf))
        out[str(int(c))] = {"code_agreement": float(np.mean(pred_code[s] == spice_code[s])), "n_columns": int(s.sum()),
                            "max_abs_error_a": err, "margin_a": margin,
                            "near_level_fraction": float(np.mean(dist < err)),
                            "fragile": bool(np.isfinite(margin) and err > margin)}
    return out


def agreement_table(report: dict[str, Any]) -> str:
    """Code agreement per family and overall, ideal and calibrated references side by side (text), with
    the counts where the surrogate's error exceeds the decision margin (``fragile``)."""
    refs = ["ideal", "calibrated"]
    if "selected" in report["by_adc"] and report["adc"].get("bits") is not None:   # else the same as one of them
        refs.append("selected")
    cert = "certified" in report["by_adc"]["ideal"]
    head = f"{'family':<10} {'columns':>8}" + "".join(
        f" {'surrogate ' + r:>21} {'count-only ' + r:>22}" + (f" {'certified ' + r:>21} {'re-solved':>9}" if cert else "")
        for r in refs)
    lines = [head]
    sections = [(fam, sec) for fam, sec in report["patterns"].items() if sec.get("n_columns")]
    sections.append(("all", report))
    for fam, sec in sections:
        row = f"{fam:<10} {sec['n_columns']:>8}"
        for r in refs:
            e = sec["by_adc"][r]
            row += f" {e['surrogate']['code_agreement']:>21.4f} {e['count_only']['code_agreement']:>22.4f}"
            if cert:
                row += f" {e['certified']['code_agreement']:>21.4f} {e['certified']['resolved_fraction']:>9.4f}"
        lines.append(row)
    if report.get("certified_skipped"):
        lines.append(f"certified reads: not measured ({report['certified_skipped']})")
    for r in refs:
        per = report["by_adc"][r]["per_on_count"]
        for what, cs in (("fragile counts (surrogate error above the decision margin)",
                          report["by_adc"][r]["fragile_counts"]),
                         ("counts with code disagreements",
                          [int(c) for c, v in per.items() if v["code_agreement"] < 1])):
            if cs:
                shown = ", ".join(f"{c} ({per[str(c)]['code_agreement']:.3f}/{per[str(c)]['near_level_fraction']:.3f})"
                                  for c in cs[:40])
                more = f" and {len(cs) - 40} more" if len(cs) > 40 else ""
                lines.append(f"{r} references, {what} (agreement/near-level fraction): {shown}{more}")
    return "\n".join(lines)


def summary_line(report: dict[str, Any]) -> str:
    b = report["baselines"]
    return (f"surrogate: code agreement {report['code_agreement']:.4f}, mean |code error| "
            f"{report['mean_abs_code_error']:.4f}, current rel RMSE {report['current_rel_rmse']:.2e} over "
            f"{report['n_columns']} columns; count-only {b['count_only']['code_agreement']:.4f} / "
            f"{b['count_only']['current_rel_rmse']:.2e}; ideal {b['ideal']['code_agreement']:.4f} / "
            f"{b['ideal']['current_rel_rmse']:.2e}"
            + (f"; {len(report['failed_runs'])} SPICE run(s) failed, left out" if report.get("failed_runs") else ""))


__all__ = ["validate", "metrics", "summary_line", "agreement_table", "FAMILIES"]
