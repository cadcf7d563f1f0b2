"""Calibration: the fit of the surrogate's lookup table to the points of a calibration sweep.

The sweep (which SPICE points, how they run, how they are kept) is ``cosim.sweep.calibration``; the
model fitted (variables, basis, terms: ``MODEL``) is ``cosim.surrogate.model``; the model form each
table is fitted with (term set, knots, orders) is the table registry's (``cosim.surrogate.registry``).

``coef`` (the coefficient of every term at every ON-count) is fitted by weighted least squares
(relative error), each coefficient piecewise linear in k between knots, plus a per-count offset shrunk
towards zero where a count has few samples. The table also holds the count-only baseline (mean SPICE
current per ON-count over the sweep's design points, ``LEVEL_SAMPLES``, which the calibrated ADC uses as
its levels), the spread per count and samples
per count, and the largest residual per ON-count (per band of counts where a count has few samples; for
certified reads).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, cast

import numpy as np

from ..errors import CosimError, InputError, StorageError, TableError
from ..fileio import atomic_path, check_writable, describe_os_error
from ..sweep.calibration import (PLACEMENT_FAMILIES, SOLVERS, SweepConfig, is_design_point, load_points, masks,
                                 ngspice_check, run_sweep)
from .model import (DEFAULT_ORDERS, MAX_DEGREE, MODEL, coupled_names, coupled_terms, coupled_variables, default_terms,
                    features_np, hat_functions, knot_counts, normalise_orders, term_names, variable_names)
from .registry import model_form

#: the samples whose mean current per ON-count is a table's ``count_mean_a`` (the calibrated ADC's levels and
#: the count-only baseline): the sweep's design points (cosim.sweep.calibration.is_design_point), not its
#: placement-family or network points, whose columns (blocks at one end of the line, dense columns, one
#: network's operands) would move the levels by up to a level gap at 64 rows and 5-12 gaps at 128 rows
#: (mid counts, 8T-SRAM 10 ohm) with the mix of them a sweep happens to hold; recorded in ``meta``
LEVEL_SAMPLES = "design points: random Bernoulli and placed weight columns, random and clustered input vectors"
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
#: a design column whose largest value is below this fraction of its term's largest (over the knots) holds
#: only rounding: it is scaled as its term
ZERO_COLUMN = 1e-9
#: samples per block of a count's QR and residuals (a block's terms stay in the caches)
FIT_BLOCK_ROWS = 8192
#: knot blocks of coefficients one row of the least-squares problem spans at most (a sample: the two knots
#: around its ON-count; the smoothing penalty: three knots)
FIT_BAND_KNOTS = 3


# ---------------------------------------------------------------------------------------------------
# Fit
# ---------------------------------------------------------------------------------------------------
def fit_arrays(on: np.ndarray, active: np.ndarray, current_a: np.ndarray, rows: int, i_cell_a: float,
               orders, leak: bool, n_knots: int | None = None,
               terms: list[tuple[int, ...]] | None = None,
               level_samples: np.ndarray | None = None, extra: np.ndarray | None = None,
               coupled: list[str] | None = None, coupled_rho: float = 0.0
               ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit the table arrays from samples (``leak``: with the leaking-cell variables; ``terms``: default
    ``default_terms``; ``level_samples``: a boolean mask of the samples whose mean current per ON-count
    is ``count_mean_a``, the calibrated ADC's levels and the count-only baseline, default all of them).
    Returns (arrays, meta). A coupled table's samples carry the coupled variables ``coupled`` (names,
    ``cosim.surrogate.model.coupled_operands`` with leak ratio ``coupled_rho``) in ``extra`` (n, X), the
    variables after the pattern's own.

    The weighted least-squares problem (samples x knots x terms) is never formed: a sample's design row is
    its terms times the two hat functions of its ON-count, so the samples of one count reduce, by one QR
    of their (samples x terms) weighted terms and currents, to a terms x terms triangle that stands for
    all of them (the same least-squares problem); the reduced rows and the penalties, each spanning at
    most ``FIT_BAND_KNOTS`` knots, are reduced knot by knot (a banded QR) to the triangular factor that
    is solved. Cost: two passes over the samples (the reduction; the offsets and residuals), in blocks
    of ``FIT_BLOCK_ROWS``, whatever their number."""
    cur = np.asarray(current_a, dtype=np.float64)
    if level_samples is not None:
        level_samples = np.asarray(level_samples, dtype=bool)
        if level_samples.shape != cur.shape or not level_samples.any():
            raise InputError(f"level_samples must mark some of the {cur.size} samples (got shape {level_samples.shape}, "
                             f"{int(level_samples.sum())} marked)")
    if cur.size < 10:
        raise TableError(f"too few calibration samples to fit a table ({cur.size})")
    orders = normalise_orders(orders)
    terms = default_terms(orders, leak) if terms is None else [tuple(int(i) for i in t) for t in terms]
    var_names = variable_names(orders, leak) + list(coupled or [])
    if extra is not None:
        extra = np.asarray(extra, dtype=np.float64).reshape(cur.size, -1)
    if (extra.shape[1] if extra is not None else 0) != len(coupled or []):
        raise InputError(f"the samples carry {0 if extra is None else extra.shape[1]} coupled variables, "
                         f"the model {len(coupled or [])}")
    if any(len(t) > MAX_DEGREE or any(not 0 <= i < len(var_names) for i in t) for t in terms) or () not in terms:
        raise InputError(f"model terms must be products of at most {MAX_DEGREE} variables and include the constant")
    on, active = np.asarray(on), np.asarray(active)
    k = np.rint(on.sum(axis=1, dtype=np.float64)).astype(np.int64)
    knots = knot_counts(rows, n_knots)
    wt = 1.0 / np.maximum(np.abs(cur), i_cell_a)
    nF = len(terms)
    nK = knots.size
    n_cols = nK * nF
    n_k = np.bincount(k, minlength=rows + 1).astype(np.float64)
    order = np.argsort(k, kind="stable")           # the samples count by count, each count in sample order
    starts = np.concatenate([[0], np.cumsum(np.bincount(k, minlength=rows + 1))])
    counts = [int(c) for c in np.flatnonzero(n_k)]

    def blocks(c: int):                            # count c's samples in blocks: indices, terms (n, F)
        idx_c = order[starts[c]:starts[c + 1]]
        for lo in range(0, idx_c.size, FIT_BLOCK_ROWS):
            idx = idx_c[lo:lo + FIT_BLOCK_ROWS]
            yield idx, features_np(on[idx], active[idx], orders, leak, terms,
                                   None if extra is None else extra[idx])[1]

    # each count's weighted [terms | current] reduced to its triangle (QR, block by block), and its
    # terms' largest values
    tri: dict[int, np.ndarray] = {}
    maxabs = np.zeros((rows + 1, nF))
    for c in counts:
        tri_c = np.zeros((0, nF + 1))
        for idx, F in blocks(c):
            Fw = F * wt[idx, None]
            maxabs[c] = np.maximum(maxabs[c], np.max(np.abs(Fw), axis=0))
            tri_c = _triangle(np.vstack([tri_c, np.hstack([Fw, (cur[idx] * wt[idx])[:, None]])]))
        tri[c] = tri_c
    B = hat_functions(np.arange(rows + 1, dtype=np.float64), knots)     # (counts, knots)
    colscale = np.max(B[:, :, None] * maxabs[:, None, :], axis=0).reshape(n_cols)
    s_f = np.tile(colscale.reshape(nK, nF).max(axis=0), nK)
    s_f[s_f == 0] = 1.0
    # a knot where a term is zero in every sample (rounding aside) is scaled by the term's typical scale,
    # so its penalties weigh as elsewhere: the pattern terms at counts 0 and R (every row ON: the moments
    # sum to zero) when those counts have knots of their own, one knot per count
    colscale = np.where(colscale <= ZERO_COLUMN * s_f, s_f, colscale)
    # Regularisation (in the scaled space, where every design column has unit maximum and targets are
    # relative currents): second differences of every coefficient across knots (coefficients vary
    # smoothly with the ON-count, and knots with few samples borrow from their neighbours) and a small
    # ridge on the pattern terms (no wild values where data are sparse). Penalties act on the true
    # coefficients theta = theta' / colscale, each feature measured in its own typical scale s_f (the
    # largest scaled column of that feature over the knots).
    to_scaled = (s_f / colscale).reshape(nK, nF)
    # no ridge on the constant and the pure leak-count terms (L, L^2, ...: they carry the leak current)
    free = np.array([len(t) == 0 or (leak and all(i == len(orders) for i in t)) for t in terms])
    width = FIT_BAND_KNOTS * nF
    rows_at: dict[int, list[np.ndarray]] = {j: [] for j in range(nK)}   # rows by first knot, in a window
    for c in counts:                               # of FIT_BAND_KNOTS knots from it, and the rhs last
        span = np.flatnonzero(B[c])
        win = np.zeros((tri[c].shape[0], width + 1))
        for j in span:
            win[:, (j - span[0]) * nF:(j - span[0] + 1) * nF] = B[c, j] * tri[c][:, :nF] / colscale[j * nF:(j + 1) * nF]
        win[:, width] = tri[c][:, nF]
        rows_at[int(span[0])].append(win)
    for j in range(nK):
        if j + 2 < nK:
            win = np.zeros((nF, width + 1))
            for a, d in enumerate((1.0, -2.0, 1.0)):
                win[np.arange(nF), a * nF + np.arange(nF)] = SMOOTH_WEIGHT * d * to_scaled[j + a]
            rows_at[j].append(win)
        ridge = np.flatnonzero(~free)
        win = np.zeros((ridge.size, width + 1))
        win[np.arange(ridge.size), ridge] = RIDGE_WEIGHT * to_scaled[j, ridge]
        rows_at[j].append(win)
    # banded QR, knot by knot: the first nF rows of each window's triangle are final; the others carry on
    R = np.zeros((n_cols, n_cols + 1))
    carry = np.zeros((0, width + 1))
    for j in range(nK):
        tri_j = _triangle(np.vstack([carry, *rows_at[j]]))
        if tri_j.shape[0] < nF:
            tri_j = np.vstack([tri_j, np.zeros((nF - tri_j.shape[0], width + 1))])
        span = min(width, n_cols - j * nF)
        R[j * nF:(j + 1) * nF, j * nF:j * nF + span] = tri_j[:nF, :span]
        R[j * nF:(j + 1) * nF, n_cols] = tri_j[:nF, width]
        rest = tri_j[nF:]
        carry = np.hstack([rest[:, nF:width], np.zeros((rest.shape[0], nF)), rest[:, width:]])
    theta, *_ = np.linalg.lstsq(R[:, :n_cols], R[:, n_cols], rcond=None)
    theta = theta / colscale
    kk = np.arange(rows + 1, dtype=np.float64)
    coef = hat_functions(kk, knots) @ theta.reshape(knots.size, nF)
    # per-count offsets of the residual, shrunk where a count has few samples; the final model's largest
    # |residual| per count (for certified reads: certify_envelope); the count-only baseline: mean SPICE
    # current per count (interpolated where a count has no sample)
    cmax = np.zeros(rows + 1)
    mean = np.full(rows + 1, np.nan)
    std = np.zeros(rows + 1)
    for c in counts:
        res, first = [], []
        for idx, F in blocks(c):
            res.append(cur[idx] - F @ coef[c])
            first.append(F[:, 0])
        offset = float(np.sum([r.sum() for r in res])) / n_k[c] * n_k[c] / (n_k[c] + OFFSET_SHRINK)
        coef[c, 0] += offset
        cmax[c] = np.abs(np.concatenate(res) - offset * np.concatenate(first)).max()
        idx_c = order[starts[c]:starts[c + 1]]
        s = cur[idx_c]
        std[c] = s.std()
        if level_samples is not None:
            s = s[level_samples[idx_c]]
        if s.size:
            mean[c] = s.mean()
    have = np.flatnonzero(~np.isnan(mean))
    mean = np.interp(kk, have, mean[have]) if have.size > 1 else np.full(rows + 1, np.nanmean(mean))
    arrays = {"coef": coef, "count_mean_a": mean, "count_std_a": std, "count_n": n_k, "knots": knots}
    # residual bound for certified reads (cosim.cim.arrays.CertifiedArray, which takes the largest over a
    # count and the two beside it): certify_envelope
    arrays["certify_residual_a"] = _envelope(n_k, cmax, rows)
    meta = {"model": MODEL, "basis": "legendre+sine" if any(isinstance(o, str) for o in orders) else "legendre",
            "orders": orders, "leak": bool(leak),
            "variables": var_names, "terms": [list(t) for t in terms],
            "features": term_names(terms, var_names), "n_knots": int(knots.size),
            "certify_band_counts": 1, "certify_safety": CERTIFY_SAFETY}
    if coupled:
        meta["coupled"] = list(coupled)
        meta["coupled_rho"] = float(coupled_rho)
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
    return _envelope(n_k, cmax, rows)


def _envelope(n_k: np.ndarray, cmax: np.ndarray, rows: int) -> np.ndarray:
    """certify_envelope from the samples per count (``n_k``) and each count's largest |residual| (``cmax``)."""
    band = certify_band_counts(rows)
    bmax = np.full(-(-(rows + 1) // band), -1.0)
    have = n_k > 0
    np.maximum.at(bmax, np.flatnonzero(have) // band, cmax[have])
    bmax[bmax < 0] = cmax[have].max()
    near = np.maximum(bmax, np.maximum(np.r_[bmax[1:], 0.0], np.r_[0.0, bmax[:-1]]))[np.arange(rows + 1) // band]
    n_near = n_k + np.r_[n_k[1:], 0.0] + np.r_[0.0, n_k[:-1]]
    return np.where((n_near >= CERTIFY_COUNT_MIN) & (n_k > 0), cmax, near)


def _triangle(m: np.ndarray) -> np.ndarray:
    """The triangular factor R of the QR of ``m``: the least-squares problem of its rows in min(rows, cols)."""
    return cast(np.ndarray, np.linalg.qr(m, mode="r"))


def certify_band_counts(rows: int) -> int:
    """ON-counts per band of the recorded residual bound: 16 bands over 0..rows."""
    return max(1, -(-(rows + 1) // 16))


def coupled_samples(paths, names, rho: float, rows: int) -> np.ndarray:
    """(n, X): the coupled variables ``names`` (``coupled_variables``, leak ratio ``rho``) of every sample of the
    sweep points ``paths``, in the order of ``load_points``' frame (point, then vector, then column)."""
    out = []
    for p in paths:
        try:
            with np.load(p, allow_pickle=False) as z:
                x, w = z["inputs"], z["weights"]
        except (OSError, KeyError, ValueError) as e:
            raise TableError(f"calibration point {p} is unreadable ({e}); delete it and rerun") from None
        out.append(coupled_variables(x, w, names, rho, rows=rows).reshape(-1, len(names)))
    return np.concatenate(out) if out else np.zeros((0, len(names)))


def fit_table(cfg: SweepConfig, samples, orders=None, leak: bool | str = "auto",
              n_knots: int | None = None, terms: str = "full", paths=None):
    """The LookupTable of a finished sweep (samples: ``load_points`` frame; ``paths``: its points, which a
    coupled sweep needs for the coupled variables, ``coupled_samples``)."""
    from .. import provenance
    from ..circuit.spice import cell_currents
    from .tables import LookupTable

    cc = cell_currents(cfg.tech, cfg.topology)
    i_cell = float(cc["i_on_a"])
    if leak == "auto":
        leak = abs(cc["i_off_a"]) > LEAK_RATIO_MIN * abs(i_cell)
    orders = normalise_orders(DEFAULT_ORDERS if orders is None else orders)
    on, act = masks(samples, cfg.rows)
    levels = is_design_point(cfg, samples["point"].to_numpy())
    term_list = default_terms(orders, bool(leak), terms)
    names: list[str] | None = None
    extra = None
    rho = float(cc["i_off_a"]) / i_cell
    if cfg.topology == "coupled":
        if paths is None:
            raise InputError("a coupled table's fit needs the sweep's points (paths) for its coupled variables")
        from ..circuit.cells import cell_kind
        names = coupled_names(bool(leak), cell_kind(cfg.tech).coupled_drive)
        extra = coupled_samples(paths, names, rho, cfg.rows)
        term_list = term_list + coupled_terms(orders, bool(leak), names)
    arrays, meta = fit_arrays(on, act, samples["current_a"].to_numpy(), cfg.rows, i_cell, orders, bool(leak), n_knots,
                               term_list, level_samples=levels, extra=extra, coupled=names, coupled_rho=rho)
    meta["count_mean_samples"] = LEVEL_SAMPLES
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
    form, each left None taken from ``model_form`` (the shipped table's form of this technology, size and
    wire resistance);
    ``security``: the TLS ``Security`` of a ``tls://`` scheduler (``cosim.sweep.executor.dask_security``)."""
    from .. import provenance

    form = model_form(cfg.tech.name, cfg.rows, terms, n_knots, orders, r_wire_ohm=cfg.tech.r_wire_ohm)
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
    table = fit_table(cfg, samples, orders=orders, terms=terms, n_knots=n_knots, paths=paths)
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

