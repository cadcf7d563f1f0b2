"""``cosim cache info|prune``: show or trim the SPICE point cache ($COSIM_CACHE/spice)."""

from __future__ import annotations

import json
import re

import click

from ..errors import InputError

_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_age_s(text: str) -> float:
    """'90s', '30m', '12h', '7d', '2w' or a number of seconds -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not m:
        raise InputError(f"age must look like 90s, 30m, 12h, 7d or 2w, got '{text}'")
    return float(m.group(1)) * _UNITS_S[m.group(2) or "s"]


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable: the loop returns at GiB")


def _cache(cache_dir):
    from ..sweep.pointcache import PointCache
    return PointCache(cache_dir)


@click.group(name="cache")
def command() -> None:
    """Show or trim the SPICE point cache (one file per point, keyed by netlist, ngspice, solver, options)."""


@command.command(name="info")
@click.option("--dir", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="cache folder (default: $COSIM_CACHE/spice)")
@click.option("--failed", "show_failed", is_flag=True, help="also list the failed points with their reasons")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def info(cache_dir, show_failed, as_json):
    """Size, entries and failed points of the cache."""
    c = _cache(cache_dir)
    out = c.info()
    if show_failed or as_json:
        out["failures"] = [{k: f.get(k) for k in ("key", "kind", "reason", "spec", "date_utc")} for f in c.failures()]
    if as_json:
        click.echo(json.dumps(out, sort_keys=True))
        return
    click.echo(f"cache:   {out['root']}")
    click.echo(f"entries: {out['entries']} points, {_size(out['bytes'])}")
    click.echo(f"failed:  {out['failed']} points")
    if out["tmp_files"]:
        click.echo(f"leftover temporary files: {out['tmp_files']} (from killed writers; prune removes them after an hour)")
    if out["oldest_utc"]:
        click.echo(f"written: {out['oldest_utc']} .. {out['newest_utc']}")
    for f in out.get("failures", []):
        click.echo(f"  {f['key'][:12]} {f.get('kind') or ''} {f.get('spec') or ''}: {f['reason']}")


@command.command(name="prune")
@click.option("--dir", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="cache folder (default: $COSIM_CACHE/spice)")
@click.option("--older-than", "older_than", default=None, help="remove entries written longer ago than this (30m, 12h, 7d)")
@click.option("--all", "remove_all", is_flag=True, help="remove every entry")
@click.option("--failed", "failed_only", is_flag=True, help="remove only failure records (those points run again)")
@click.option("--dry-run", is_flag=True, help="say what would go, remove nothing")
def prune(cache_dir, older_than, remove_all, failed_only, dry_run):
    """Remove entries by age, all of them, or only the failure records."""
    if older_than is not None and remove_all:
        raise InputError("give either --older-than or --all, not both")
    if older_than is None and not remove_all and not failed_only:
        raise InputError("say what to remove: --older-than AGE, --all or --failed")
    age = parse_age_s(older_than) if older_than is not None else None
    res = _cache(cache_dir).prune(older_than_s=age, failed_only=failed_only, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {res['removed']} files, {_size(res['bytes'])}")
