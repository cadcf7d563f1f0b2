"""``cosim report``: run (or reuse) the BinSparX study grid and write its REPORT.md.

Where: ``--out`` when given; else ``docs/`` for a grid (the committed report, docs/REPORT.md, is written
this way: ``cosim report --config configs/study.toml``; docs/STUDY.md) and ``cosim-report/`` in the working
directory for ``--quick`` (so that the README's first run does not replace the committed report)."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import click

from .sweep_options import security, tls_options

#: default output folders (relative to the working directory): the quick study's, the grid's
QUICK_OUT = "cosim-report"
GRID_OUT = "docs"


@click.command("report")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Study config (TOML, see configs/study.toml); default: the built-in full grid.")
@click.option("--quick", is_flag=True, help="Run the config's [quick] subset (default technology, VGG-small, "
              "default array size and wire resistance, a subset of the test set): a few minutes on 2 cores.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help=f"Folder for REPORT.md (figures and data go to OUT/report/); default: {QUICK_OUT}/ with "
                   f"--quick, else {GRID_OUT}/.")
@click.option("--limit", type=int, default=None, help="Override the number of test images per cell.")
@click.option("--skew-images", type=int, default=None, help="Override the number of images for the skew statistics.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Cell cache folder (default: [paths] cache, else $COSIM_CACHE/study).")
@click.option("--workers", type=int, default=None,
              help="Cells computed at once by local processes (default 1: in this process); with --scheduler: "
                   "most cells in flight (default: the cluster's worker threads).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="Compute the cells on this dask.distributed scheduler, tcp:// or tls:// (default: $COSIM_SCHEDULER, "
                   "else local). "
                   "Every worker needs the same cosim, weights, test images and tables (checked per cell).")
@click.option("--cell-timeout-s", type=float, default=None,
              help="Resubmit a cell that gives no result within this time (hung or lost worker).")
@click.option("--from-cache", is_flag=True,
              help="Compute no cell: write the report from the cell cache only, taking each cell's result as "
                   "cached by any version of the code keyed into the cells (same cell, weights, test images and "
                   "lookup table) or as committed with the report in OUT/report/cells.jsonl; a cell without one "
                   "is listed as not run. Costs (periphery energy, latency, "
                   "area) are computed now, from the component table; skew statistics are read or recomputed.")
@tls_options
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bars on stderr.")
def command(config_path, quick, out_dir, limit, skew_images, cache_dir, workers, scheduler, cell_timeout_s,
            from_cache, tls_ca_file, tls_cert, tls_key, progress) -> None:
    """Run the BinSparX study grid (cached per cell, resumable) and write REPORT.md (default: docs/, or
    cosim-report/ with --quick)."""
    from ..errors import InputError, StorageError
    from ..sweep.executor import make_executor
    from ..study.config import load_config, parse_config
    from ..study.report import StudyResults, accuracy_summary, read_cached_cells, write_report
    from ..study.runner import StudyContext, run_cells, skew_for
    import dataclasses

    if workers is not None and workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    if cell_timeout_s is not None and not cell_timeout_s > 0:
        raise InputError(f"--cell-timeout-s must be positive, got {cell_timeout_s}")
    sec = security(tls_ca_file, tls_cert, tls_key)
    cfg = load_config(config_path, quick=quick)
    overrides = {}
    if limit is not None:
        overrides["limit"] = limit
    if skew_images is not None:
        overrides["skew_images"] = skew_images
    if cache_dir is not None:
        overrides["cache"] = str(cache_dir)
    if overrides:
        # re-validate through the parser: the same checks as a config file
        raw = {k: dict(v) for k, v in cfg.raw.items() if isinstance(v, dict)}
        for k, v in overrides.items():
            sec = "paths" if k == "cache" else "run"
            raw.setdefault(sec, {})[k] = v
            if quick and k in ("limit", "skew_images"):
                raw.setdefault("quick", {})[k] = v
        cfg = dataclasses.replace(parse_config(raw, quick=quick, source=cfg.source), source=cfg.source)
    from ..fileio import check_writable
    # before any cell is computed: where the report and the cells go must take files
    report_dir = Path(out_dir if out_dir is not None else (QUICK_OUT if quick else GRID_OUT))
    check_writable(report_dir, "the report folder")
    if not from_cache:
        try:
            check_writable(StudyContext(cfg).cache_root, "the cell cache")
        except StorageError as e:
            raise StorageError(f"{e} (--cache DIR, or COSIM_CACHE, for another cache)") from None
    import torch
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    click.echo(f"study: {cfg.describe()}", err=True)
    ctx = StudyContext(cfg)
    skew = {}
    for net in cfg.networks:
        for rows in cfg.rows:
            skew[(net, rows)] = skew_for(net, rows, ctx, progress=progress)
    cells = cfg.cells()
    full_cells, not_in_run = 0, []
    if quick:
        full = load_config(config_path, quick=False).cells()
        mine = {c.label().rsplit("/n=", 1)[0] for c in cells}
        full_cells = len(full)
        not_in_run = [c.label() for c in full if c.label().rsplit("/n=", 1)[0] not in mine]

    def study(results):
        return StudyResults(config=cfg, cells=results, skew=skew, full_grid_cells=full_cells, not_in_run=not_in_run)

    from ..study.claims_run import refine_claim_cells
    from ..study.report import COMMITTED_CELLS
    committed = report_dir / "report" / COMMITTED_CELLS   # the cells committed with the report it rewrites
    committed_files = [committed] if committed.is_file() else None
    if from_cache:
        if workers is not None or scheduler is not None:
            raise InputError("--from-cache computes no cell: it takes neither --workers nor --scheduler")
        res = refine_claim_cells(study(read_cached_cells(cells, ctx, committed=committed_files)), ctx,
                                 from_cache=True, committed=committed_files)
    else:
        if committed_files:   # a run interrupted in another checkout resumes: this code's committed cells count
            from ..study.report import seed_cache_from_committed
            n_seeded = seed_cache_from_committed(ctx, committed_files)
            if n_seeded:
                click.echo(f"{n_seeded} cell(s) taken from {committed} (computed by this code)", err=True)
        with make_executor(workers=workers, scheduler=scheduler, security=sec) as ex:
            if ex.kind != "local" or ex.workers > 1:
                click.echo(f"cells on: {ex.describe()}", err=True)
            res = study(run_cells(cells, ctx, progress=progress, executor=ex, timeout_s=cell_timeout_s))
            # the cells the claims table names, again on claims_limit images (cached like every cell)
            res = refine_claim_cells(res, ctx, progress=progress, executor=ex, timeout_s=cell_timeout_s)
    results = res.cells
    res.seconds = time.perf_counter() - t0
    default_out = QUICK_OUT if quick else GRID_OUT
    # the whole command, as it would be typed again (only --progress, which changes no result, is left out)
    opts = [("--config", config_path), ("--quick", quick), ("--limit", limit), ("--skew-images", skew_images),
            ("--cache", cache_dir), ("--workers", workers), ("--scheduler", scheduler),
            ("--cell-timeout-s", cell_timeout_s), ("--from-cache", from_cache),
            ("--out", out_dir if out_dir is not None and Path(out_dir) != Path(default_out) else None)]
    cmd = " ".join(["cosim report"] + [name if value is True else f"{name} {shlex.quote(str(value))}"
                                       for name, value in opts if value not in (None, False)])
    path = write_report(res, report_dir, command=cmd)
    click.echo(accuracy_summary(res))
    n_not = sum(r.status == "not run" for r in results)
    from ..study.runner import CACHE_FAULT
    stopped = [r.reason for r in results if r.reason and r.reason.startswith(CACHE_FAULT)]
    click.echo(f"wrote {path.resolve()} ({len(results) - n_not} cell(s) with results, {n_not} not run; "
               f"{res.seconds:.0f} s)")
    if stopped:
        raise StorageError(f"{stopped[0][len('not run: '):]}; stopped with {len(stopped)} cell(s) not run (every "
                           f"computed cell is in {path}): fix that and run the same command again")
