"""Finding ngspice: the executable, its version and build (KLU, OSDI), and the shared library.

Set ``COSIM_NGSPICE`` to an executable to use it instead of ``ngspice`` on PATH, and
``NGSPICE_LIBRARY_PATH`` to a libngspice to use for the shared backend. Detection runs ngspice once
per distinct setting (cached) and never assumes KLU: it reads ``ngspice -v``.
"""

from __future__ import annotations

import ctypes.util
import os
import re
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import NgspiceError

_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
             "/usr/local/lib")


def _find_library() -> str | None:
    env = os.environ.get("NGSPICE_LIBRARY_PATH")
    if env:
        return env if Path(env).exists() else None
    for d in _LIB_DIRS:
        for name in ("libngspice.so", "libngspice.so.0"):
            p = Path(d) / name
            if p.exists():
                return str(p)
    return _system_library()


@lru_cache(maxsize=1)
def _system_library() -> str | None:
    """The linker's libngspice (ctypes starts ldconfig for this: looked up once per process)."""
    return ctypes.util.find_library("ngspice")


def _find_executable() -> str | None:
    env = os.environ.get("COSIM_NGSPICE")
    if env:
        p = shutil.which(env)
        return p
    return shutil.which("ngspice")


@lru_cache(maxsize=8)
def _detect(executable: str | None, library: str | None) -> dict[str, Any]:
    info: dict[str, Any] = {"version": None, "klu": False, "osdi": False,
                            "executable": executable, "library": library}
    if executable is None:
        return info
    try:
        out = subprocess.run([executable, "-v"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise NgspiceError(f"cannot run ngspice at {executable}: {e}") from None
    text = out.stdout + out.stderr
    m = re.search(r"ngspice-(\d+(?:\.\d+)?)", text)
    if not m:
        first = text.strip().splitlines()[0] if text.strip() else f"exit status {out.returncode}"
        raise NgspiceError(f"{executable} does not look like ngspice: {first}")
    info["version"] = m.group(1)
    info["klu"] = "KLU" in text
    # OSDI: ngspice >= 39 with OSDI knows the 'osdi' command; without, it is an unknown command.
    with tempfile.TemporaryDirectory(prefix="cosim-ngspice-") as tmp:
        deck = Path(tmp) / "osdi.cir"
        deck.write_text("* osdi probe\nV1 a 0 1\nR1 a 0 1k\n.control\nosdi\n.endc\n.end\n")
        try:
            probe = subprocess.run([executable, "-b", str(deck)], capture_output=True, text=True,
                                   timeout=30, cwd=tmp)
            ptext = probe.stdout + probe.stderr
            info["osdi"] = "osdi:" in ptext and "unknown command" not in ptext.lower()
        except (OSError, subprocess.SubprocessError):
            info["osdi"] = False
    return info


def ngspice_info() -> dict[str, Any]:
    """{"version", "klu", "osdi", "executable", "library"} of the ngspice this process would use.

    ``version`` is None (and klu/osdi False) when no executable is found; ``library`` is None when
    no libngspice is found. Cached per COSIM_NGSPICE / PATH / NGSPICE_LIBRARY_PATH setting."""
    return dict(_detect(_find_executable(), _find_library()))


def require_executable() -> dict[str, Any]:
    info = ngspice_info()
    if info["executable"] is None:
        where = os.environ.get("COSIM_NGSPICE")
        what = f"COSIM_NGSPICE={where} is not an executable" if where else "no 'ngspice' on PATH"
        raise NgspiceError(f"ngspice not found ({what}); install it with: bash scripts/setup.sh")
    return info


def require_library() -> dict[str, Any]:
    info = ngspice_info()
    if info["library"] is None:
        raise NgspiceError("libngspice not found (install libngspice0, or set NGSPICE_LIBRARY_PATH to libngspice.so.0)")
    return info
