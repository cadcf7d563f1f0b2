"""Options shared by the commands whose SPICE points run through the executor and the point cache
(``cosim calibrate``, ``cosim validate``): parallelism, Dask scheduler, cache, point timeout."""

from __future__ import annotations

import click

from ..errors import InputError

_OPTIONS = (
    click.option("--workers", type=int, default=None,
                 help="parallel local ngspice processes (default 1); with --scheduler: most SPICE points in "
                      "flight (default: the cluster's worker threads)"),
    click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
                 help="run the SPICE points on this dask.distributed scheduler (default: $COSIM_SCHEDULER, else local)"),
    click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                 help="SPICE point cache (default: $COSIM_CACHE/spice)"),
    click.option("--no-cache", is_flag=True, help="do not read or write the SPICE point cache"),
    click.option("--point-timeout-s", type=float, default=None,
                 help="resubmit a SPICE point that gives no result within this time (hung or lost worker)"),
)


def sweep_options(f):
    """Decorator: adds --workers, --scheduler, --cache-dir, --no-cache and --point-timeout-s."""
    for opt in reversed(_OPTIONS):
        f = opt(f)
    return f


def check_sweep_options(workers: int | None, point_timeout_s: float | None) -> None:
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    if point_timeout_s is not None and not point_timeout_s > 0:
        raise InputError(f"--point-timeout-s must be positive, got {point_timeout_s}")


def point_cache(no_cache: bool, cache_dir: str | None):
    """The ``cache`` argument of the sweeps: False (no cache), a folder, or None (the default cache)."""
    return False if no_cache else cache_dir
