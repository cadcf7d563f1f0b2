"""Options shared by the commands whose SPICE points run through the executor and the point cache
(``cosim calibrate``, ``cosim validate``): parallelism, Dask scheduler and its TLS certificates, cache,
point timeout."""

from __future__ import annotations

import click

from ..errors import InputError

#: a TLS cluster (``tls://`` scheduler): the certificate authority, this client's certificate and key
TLS_OPTIONS = (
    click.option("--tls-ca-file", type=click.Path(dir_okay=False), envvar="COSIM_TLS_CA_FILE", default=None,
                 help="TLS cluster: CA certificate(s) that signed the scheduler's and workers' (PEM; "
                      "default: $COSIM_TLS_CA_FILE)"),
    click.option("--tls-cert", type=click.Path(dir_okay=False), envvar="COSIM_TLS_CERT", default=None,
                 help="TLS cluster: this client's certificate (PEM; default: $COSIM_TLS_CERT)"),
    click.option("--tls-key", type=click.Path(dir_okay=False), envvar="COSIM_TLS_KEY", default=None,
                 help="TLS cluster: this client's private key (PEM; default: $COSIM_TLS_KEY)"),
)

_OPTIONS = (
    click.option("--workers", type=int, default=None,
                 help="parallel local ngspice processes (default 1); with --scheduler: most SPICE points in "
                      "flight (default: the cluster's worker threads)"),
    click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
                 help="run the SPICE points on this dask.distributed scheduler, tcp:// or tls:// (default: "
                      "$COSIM_SCHEDULER, else local)"),
    click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                 help="SPICE point cache (default: $COSIM_CACHE/spice)"),
    click.option("--no-cache", is_flag=True, help="do not read or write the SPICE point cache"),
    click.option("--point-timeout-s", type=float, default=None,
                 help="resubmit a SPICE point that gives no result within this time (hung or lost worker)"),
    *TLS_OPTIONS,
)


def sweep_options(f):
    """Decorator: adds --workers, --scheduler, --cache-dir, --no-cache, --point-timeout-s and the TLS options
    (the command gets ``tls_ca_file``, ``tls_cert`` and ``tls_key``: see ``security``)."""
    for opt in reversed(_OPTIONS):
        f = opt(f)
    return f


def tls_options(f):
    """Decorator: adds --tls-ca-file, --tls-cert and --tls-key."""
    for opt in reversed(TLS_OPTIONS):
        f = opt(f)
    return f


def security(tls_ca_file: str | None, tls_cert: str | None, tls_key: str | None):
    """The dask ``Security`` of the TLS options, or None when none is given (``cosim.sweep.executor.dask_security``)."""
    from ..sweep.executor import dask_security
    return dask_security(tls_ca_file, tls_cert, tls_key)


def check_sweep_options(workers: int | None, point_timeout_s: float | None) -> None:
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    if point_timeout_s is not None and not point_timeout_s > 0:
        raise InputError(f"--point-timeout-s must be positive, got {point_timeout_s}")


def point_cache(no_cache: bool, cache_dir: str | None):
    """The ``cache`` argument of the sweeps: False (no cache), a folder, or None (the default cache)."""
    return False if no_cache else cache_dir
