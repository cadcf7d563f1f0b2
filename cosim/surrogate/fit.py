"""Calibration: the fit of the surrogate's lookup table to the points of a calibration sweep.

The sweep (which SPICE points, how they run, how they are kept) is ``cosim.sweep.calibration``; the
model fitted (variables, basis, terms: ``MODEL``) is ``cosim.surrogate.model``; the model form each
table is fitted with (term set, knots, orders) is the table registry's (``cosim.surrogate.registry``).

``coef`` (the coefficient of every term at every ON-count) is fitted by weighted least squares
(relative error), each coefficient piecewise linear in k between knots, plus a per-count offset shrunk
towards zero where a count has few samples. The table also holds the count-only baseline (mean SPICE
current per ON-count, which the calibrated ADC uses as its levels), the spread per count and samples
per count, and the largest residual per ON-count (per band of counts where a count has few samples; for
certified reads).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import CosimError, InputError, StorageError, TableError
from ..fileio import atomic_path, check_writable, describe_os_error
from ..sweep.calibration import (PLACEMENT_FAMILIES, SOLVERS, SweepConfig, load_points, masks, ngspice_check,
                                 run_sweep)
from .model import (DEFAULT_ORDERS, MAX_DEGREE, MODEL, default_terms, features_np, hat_functions, knot_counts,
                    normalise_orders, term_names, variable_names)
from .registry import model_form

#: cells whose leak is below this fraction of the ON current get no leak terms
LEAK_RATIO_MIN = 1e-3
#: certified reads re-solve a column whose surrogate current lies within this factor times the table's
#: largest calibration residual (its ON-count and the two beside it, or their bands where they hold few
#: samples: ``certify_envelope``) of an ADC decision level
CERTIFY_SAFETY = 2.0
#: samples an ON-count and the two beside it need together before the count's own largest residual is
#: its bound for certified reads (fewer: the bound of its band of counts, ``certify_envelope``)
CERTIFY_COUNT_MIN = 3000
#: samples a count needs before its own offset is trusted fully (shrinkage n / (n + OFFSET_SHRINK))
OFFSET_SHRINK = 8.0
#: penalty weights of the fit (second differences across knots; ridge on pattern terms), in the
#: space where every design column is scaled to unit maximum and targets are relative currents
SMOOTH_WEIGHT = 0.1
RIDGE_WEIGHT = 1e-3
#: a fit whose design matrix (samples x knots x terms) holds more elements than this is solved chunk by
#: chunk (QR), in bounded memory; smaller ones (every shipped table) by one dense least-squares solve
FIT_DENSE_MAX_ELEMENTS = 200_000_000


# ---------------------------------------------------------------------------------------------------
# Fit
# ---------------------------------------------------------------------------------------------------
def fit_arrays(on: np.ndarray, active: np.ndarray, current_a: np.ndarray, rows: int, i_cell_a: float,
               orders, leak: bool, n_knots: int | None = None,
               terms: list[tuple[int, ...]] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit the table arrays from samples (``leak``: with the leaking-cell variables; ``terms``: default
    ``default_terms``). Returns (arrays, meta)."""
    cur = np.asarray(current_a, dtype=np.float64)
    if cur.size < 10:
        raise TableError(f"too few calibration samples to fit a table ({cur.size})")
    orders = normalise_orders(orders)
    terms = default_terms(orders, leak) if terms is None else [tuple(int(i) for i in t) for t in terms]
    var_names = variable_names(orders, leak)
    if any(len(t) > MAX_DEGREE or any(not 0 <= i < len(var_names) for i in t) for t in terms) or () not in terms:
        raise InputError(f"model terms must be products of at most {MAX_DEGREE} variables and include the constant")
    k, F = features_np(on, active, orders, leak, terms)
    knots = knot_counts(rows, n_knots)
    wt = 1.0 / np.maximum(np.abs(cur), i_cell_a)
    nF = F.shape[1]
    nK = knots.size
    n_cols = nK * nF
    chunked = len(k) * n_cols > FIT_DENSE_MAX_ELEMENTS
    step = max(1, FIT_DENSE_MAX_ELEMENTS // (4 * n_cols))

    def design(lo: int, hi: int) -> np.ndarray:      # rows lo..hi of the weighted design matrix
        B = hat_functions(k[lo:hi].astype(np.float64), knots)
        return (B[:, :, None] * F[lo:hi, None, :]).reshape(hi - lo, -1) * wt[lo:hi, None]

    if chunked:
        colscale = np.zeros(n_cols)
        for lo in range(0, len(k), step):
            colscale = np.maximum(colscale, np.max(np.abs(design(lo, min(lo + step, len(k)))), axis=0))
    else:
        Aw = design(0, len(k))
        colscale = np.max(np.abs(Aw), axis=0)
    colscale[colscale == 0] = 1.0
    # Regularisation (in the scaled space): second differences of every coefficient across knots
    # (coefficients vary smoothly with the ON-count, and knots with few samples borrow from their
    # neighbours) and a small ridge on the pattern terms (no wild values where data are sparse).
    # Penalties act on the true coefficients theta = theta' / colscale, each feature measured in its
    # own typical scale s_f (the largest scaled column of that feature over the knots).
    s_f = np.tile(colscale.reshape(nK, nF).max(axis=0), nK)
    to_scaled = s_f / colscale
    pen = []
    if nK >= 3:
        D = np.zeros((nK - 2, nK))
        for i in range(nK - 2):
            D[i, i:i + 3] = (1.0, -2.0, 1.0)
        pen.append(SMOOTH_WEIGHT * np.kron(D, np.eye(nF)) * to_scaled[None, :])
    # no ridge on the constant and the pure leak-count terms (L, L^2, ...: they carry the leak current)
    free = [len(t) == 0 or (leak and all(i == len(orders) for i in t)) for t in terms]
    ridge = np.kron(np.eye(nK), np.diag([0.0 if fr else 1.0 for fr in free]))
    pen.append(RIDGE_WEIGHT * ridge[np.any(ridge != 0, axis=1)] * to_scaled[None, :])
    P = np.vstack(pen)
    if chunked:
        # the same least-squares problem, its rows reduced chunk by chunk to one triangular factor of
        # [design | rhs] (QR), so memory stays at FIT_DENSE_MAX_ELEMENTS whatever the sample count
        R: np.ndarray = np.zeros((0, n_cols + 1))
        blocks = [(lo, min(lo + step, len(k))) for lo in range(0, len(k), step)]
        for lo, hi in blocks:
            blk = np.hstack([design(lo, hi) / colscale, (cur[lo:hi] * wt[lo:hi])[:, None]])
            R = np.linalg.qr(np.vstack([R, blk]), mode="r")  # type: ignore[assignment]  # numpy stubs: mode="r" gives R
        R = np.linalg.qr(np.vstack([R, np.hstack([P, np.zeros((P.shape[0], 1))])]), mode="r")  # type: ignore[assignment]  # R, as above
        theta, *_ = np.linalg.lstsq(R[:n_cols, :n_cols], R[:n_cols, n_cols], rcond=None)
    else:
        M = np.vstack([Aw / colscale, P])
        rhs = np.concatenate([cur * wt, np.zeros(P.shape[0])])
        theta, *_ = np.linalg.lstsq(M, rhs, rcond=None)
    theta = theta / colscale
    kk = np.arange(rows + 1, dtype=np.float64)
    coef = hat_functions(kk, knots) @ theta.reshape(knots.size, nF)
    # per-count offsets of the residual, shrunk where a count has few samples
    res = cur - np.einsum("nf,nf->n", coef[k], F)
    n_k = np.bincount(k, minlength=rows + 1).astype(np.float64)
    sum_k = np.bincount(k, weights=res, minlength=rows + 1)
    coef[:, 0] += np.where(n_k > 0, sum_k / np.maximum(n_k, 1) * n_k / (n_k + OFFSET_SHRINK), 0.0)
    # count-only baseline: mean SPICE current per count (interpolated where a count has no sample)
    mean = np.full(rows + 1, np.nan)
    std = np.zeros(rows + 1)
    for c in np.flatnonzero(n_k):
        s = cur[k == c]
        mean[c] = s.mean()
        std[c] = s.std()
    have = np.flatnonzero(~np.isnan(mean))
    mean = np.interp(kk, have, mean[have]) if have.size > 1 else np.full(rows + 1, np.nanmean(mean))
    arrays = {"coef": coef, "count_mean_a": mean, "count_std_a": std, "count_n": n_k, "knots": knots}
    # residual bound for certified reads (cosim.cim.arrays.CertifiedArray, which takes the largest over a
    # count and the two beside it): certify_envelope
    final = np.abs(cur - np.einsum("nf,nf->n", coef[k], F))
    arrays["certify_residual_a"] = certify_envelope(k, final, rows)
    meta = {"model": MODEL, "basis": "legendre+sine" if any(isinstance(o, str) for o in orders) else "legendre",
            "orders": orders, "leak": bool(leak),
            "variables": var_names, "terms": [list(t) for t in terms],
            "features": term_names(terms, var_names), "n_knots": int(knots.size),
            "certify_band_counts": 1, "certify_safety": CERTIFY_SAFETY}
    return arrays, meta


def certify_envelope(k: np.ndarray, residual_a: np.ndarray, rows: int) -> np.ndarray:
    """(rows + 1,) the residual bound of each ON-count for certified reads: the largest |residual| of the
    count's own samples where it and the two counts beside it hold at least CERTIFY_COUNT_MIN samples
    together, else the band bound (the largest |residual| of its band of ON-counts, certify_band_counts,
    and of the two bands beside it: what tables recorded before, per band; an empty band counts as the
    largest of all)."""
    n_k = np.bincount(k, minlength=rows + 1).astype(np.float64)
    cmax = np.zeros(rows + 1)
    np.maximum.at(cmax, k, residual_a)
    band = certify_band_counts(rows)
    bmax = np.full(-(-(rows + 1) // band), -1.0)
    np.maximum.at(bmax, k // band, residual_a)
    bmax[bmax < 0] = residual_a.max()
    near = np.maximum(bmax, np.maximum(np.r_[bmax[1:], 0.0], np.r_[0.0, bmax[:-1]]))[np.arange(rows + 1) // band]
    n_near = n_k + np.r_[n_k[1:], 0.0] + np.r_[0.0, n_k[:-1]]
    return np.where((n_near >= CERTIFY_COUNT_MIN) & (n_k > 0), cmax, near)


def certify_band_counts(rows: int) -> int:
    """ON-counts per band of the recorded residual bound: 16 bands over 0..rows."""
    return max(1, -(-(rows + 1) // 16))


def fit_table(cfg: SweepConfig, samples, orders=None, leak: bool | str = "auto",
              n_knots: int | None = None, terms: str = "full"):
    """The LookupTable of a finished sweep (samples: ``load_points`` frame)."""
    from .. import provenance
    from ..circuit.spice import cell_currents
    from .tables import LookupTable

    cc = cell_currents(cfg.tech, cfg.topology)
    i_cell = float(cc["i_on_a"])
    if leak == "auto":
        leak = abs(cc["i_off_a"]) > LEAK_RATIO_MIN * abs(i_cell)
    orders = normalise_orders(DEFAULT_ORDERS if orders is None else orders)
    on, act = masks(samples, cfg.rows)
    arrays, meta = fit_arrays(on, act, samples["current_a"].to_numpy(), cfg.rows, i_cell, orders, bool(leak), n_knots,
                               default_terms(orders, bool(leak), terms))
    hashes = sorted(set(samples["netlist_sha256"]))
    prov = provenance.record(
        technology=cfg.tech.name, technology_params=cfg.tech.as_dict(), cell=cfg.tech.cell, rows=cfg.rows,
        cols=cfg.cols, topology=cfg.topology, r_wire_ohm=cfg.tech.r_wire_ohm,
        ngspice_version=",".join(sorted(set(samples["ngspice_version"]))),
        solver=",".join(sorted(set(samples["solver"]))),
        netlist_sha256=provenance.sha256_text("".join(hashes)), n_netlists=len(hashes), seed=cfg.seed,
        n_points=int(samples["point"].nunique()), n_samples=int(len(samples)), vectors_per_point=cfg.vectors,
        i_cell_a=i_cell, i_off_a=float(cc["i_off_a"]), i_idle_a=float(cc["i_idle_a"]),
        i_idle_off_a=float(cc["i_idle_off_a"]), spice_seconds=float(samples["seconds"].sum()),
    )
    meta["term_set"] = terms
    return LookupTable(arrays=arrays, meta=meta, provenance=prov)


def calibrate(cfg: SweepConfig, points: int, out_dir: str | Path, workers: int | None = None, orders=None,
              progress: bool = True, stop_after: int | None = None,
              log: Callable[[str], None] | None = None, scheduler: str | None = None, cache: Any = None,
              point_timeout_s: float | None = None, terms: str | None = None, n_knots: int | None = None,
              security: Any = None):
    """Run (or resume) the sweep, write ``samples.parquet`` and ``table.parquet`` into ``out_dir``.
    Returns the LookupTable. ``workers``, ``scheduler``, ``cache``, ``point_timeout_s``: see ``run_sweep``;
    ``terms`` (the term set, ``default_terms``), ``n_knots`` (ON-count knots) and ``orders``: the model
    form, each left None taken from ``model_form`` (the shipped table's form of this technology and size);
    ``security``: the TLS ``Security`` of a ``tls://`` scheduler (``cosim.sweep.executor.dask_security``)."""
    from .. import provenance

    form = model_form(cfg.tech.name, cfg.rows, terms, n_knots, orders)
    if cfg.solver not in SOLVERS:
        raise InputError(f"unknown calibration solver '{cfg.solver}': expected one of {', '.join(SOLVERS)}")
    terms, n_knots, orders = form.terms, form.n_knots, form.orders
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    check_writable(out_dir, "the output folder")   # before the probes below: a refusal comes first
    fallback = None
    if not cfg.tech.kind.linear:
        from ..circuit.netlist import fallback_warning, models_fallback
        fallback = models_fallback()
        if fallback and log:
            log(f"warning: {fallback_warning(fallback)}")
    paths = run_sweep(cfg, points, out_dir, workers=workers, progress=progress, stop_after=stop_after,
                      scheduler=scheduler, cache=cache, point_timeout_s=point_timeout_s, security=security)
    if len(paths) < points:
        raise CosimError(f"sweep stopped with {len(paths)} of {points} points finished (kept in {out_dir}); "
                         "run the same command again to resume")
    check = None
    if cfg.solver == "exact":
        check = ngspice_check(cfg, paths, points, workers=workers, scheduler=scheduler, cache=cache,
                              point_timeout_s=point_timeout_s, security=security)
        if log:
            log(f"ngspice cross-check: {len(check['points'])} of {points} points, {check['samples']} currents, "
                f"largest relative difference {check['max_rel_diff']:.2e}")
    samples = load_points(paths)
    table = fit_table(cfg, samples, orders=orders, terms=terms, n_knots=n_knots)
    if check is not None:
        table.provenance["ngspice_check"] = check
    if cfg.placements:
        table.provenance["placements"] = list(PLACEMENT_FAMILIES)
    if cfg.operands is not None:
        table.provenance["network_operands"] = cfg.operands.describe()
    if fallback:
        table.provenance["device_models_fallback"] = fallback
    if not cfg.tech.kind.linear:
        from ..circuit.netlist import resolve_models
        impl = resolve_models()
        table.provenance["device_models"] = impl
        if impl == "bsimcmg":
            from ..circuit import bsimcmg
            table.provenance["device_models_corner"] = bsimcmg.corner()
            table.provenance["device_models_card"] = bsimcmg.card_file().name
    import pyarrow as pa
    import pyarrow.parquet as pq

    tbl = pa.Table.from_pandas(samples, preserve_index=False)
    md = dict(tbl.schema.metadata or {})
    md[b"cosim_provenance"] = json.dumps(provenance.record(**{k: v for k, v in table.provenance.items()
                                                                if k not in ("code_version", "python", "date_utc")}),
                                         sort_keys=True, default=str).encode()
    try:
        with atomic_path(out_dir / "samples.parquet", suffix=".parquet") as tmp:
            pq.write_table(tbl.replace_schema_metadata(md), tmp, compression="zstd")
        table.save(out_dir / "table.parquet")
    except OSError as e:
        raise StorageError(f"cannot write the table: {describe_os_error(e)} (all {len(paths)} points are kept in "
                           f"{out_dir}: fix that and run the same command again to fit it)") from None
    if log:
        log(f"{len(samples)} samples from {len(paths)} points, {time.perf_counter() - t0:.1f} s")
    return table

