"""Provenance records: what produced a table, figure or result, so it can be traced and regenerated."""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
import subprocess
from functools import lru_cache
from typing import Any

from . import __version__
from .paths import CHECKOUT_DIR


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit of the checkout (with '+dirty' for local changes to the code:
    ``cosim`` and ``device_models``, except the tables ``scripts/make_tables.py`` writes into the package)."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(CHECKOUT_DIR), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5,
        )
        if rev.returncode == 0 and rev.stdout.strip():
            dirty = subprocess.run(
                ["git", "-C", str(CHECKOUT_DIR), "status", "--porcelain", "--untracked-files=no", "--", "cosim", "device_models",
                 ":(exclude)cosim/resources/tables"],
                capture_output=True, text=True, timeout=5,
            )
            suffix = "+dirty" if dirty.stdout.strip() else ""
            return f"{__version__}+g{rev.stdout.strip()}{suffix}"
    except (OSError, subprocess.SubprocessError):
        pass
    return __version__


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_file(path) -> str:
    """sha256 of a file's bytes (read in chunks)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def record(**fields: Any) -> dict[str, Any]:
    """A provenance dict: the given fields plus code version, host and UTC date."""
    out = dict(fields)
    out.setdefault("code_version", code_version())
    out.setdefault("python", platform.python_version())
    out.setdefault("date_utc", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    return out


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for what results and provenance records hold: numpy scalars and
    arrays, paths. Anything else is an error (never silently stringified)."""
    import numpy as np
    from pathlib import Path

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` gives it (``/proc/cpuinfo`` where lscpu is missing), else "unknown"."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine_description() -> str:
    """CPU model, cores, memory and OS of this machine, for benchmark records (Linux /proc where present)."""
    import os

    cpu = cpu_model()
    try:
        mem = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GB RAM"
    except (ValueError, OSError, AttributeError):
        mem = ""
    return f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}"
