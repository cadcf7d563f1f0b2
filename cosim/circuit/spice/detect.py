"""Finding ngspice: the executable, its version and build (KLU, OSDI), the shared library, and
whether it runs cosim's compiled device models.

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
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from ...errors import NgspiceError
from ...orphans import die_with_parent, scratch_dir

#: most seconds one probe of ngspice (its version, OSDI, the compiled models) may take; a caller with a
#: shorter time limit lowers it for its probes (``probe_timeout``)
PROBE_TIMEOUT_S = 30.0
_probe_limit_s: float | None = None


@contextmanager
def probe_timeout(timeout_s: float | None):
    """Within the block, probes of ngspice give up after ``timeout_s`` (when shorter than their own
    limit): a caller's --timeout-s also covers finding out what ngspice can do."""
    global _probe_limit_s
    old = _probe_limit_s
    if timeout_s is not None:
        _probe_limit_s = timeout_s if old is None else min(old, timeout_s)
    try:
        yield
    finally:
        _probe_limit_s = old


def _probe_s(own_s: float = PROBE_TIMEOUT_S) -> float:
    return own_s if _probe_limit_s is None else min(own_s, _probe_limit_s)


def _no_answer(executable: str, what: str, timeout_s: float) -> NgspiceError:
    return NgspiceError(f"ngspice at {executable} gave no answer within {timeout_s:g} s ({what}); "
                        "is it hanging? (COSIM_NGSPICE chooses another)")


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
    limit = _probe_s()
    try:
        out = subprocess.run([executable, "-v"], capture_output=True, text=True, timeout=limit,
                             preexec_fn=die_with_parent)
    except subprocess.TimeoutExpired:
        raise _no_answer(executable, "ngspice -v", limit) from None
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
    with scratch_dir("ngspice") as tmp:
        deck = Path(tmp) / "osdi.cir"
        deck.write_text("* osdi probe\nV1 a 0 1\nR1 a 0 1k\n.control\nosdi\n.endc\n.end\n")
        try:
            probe = subprocess.run([executable, "-b", str(deck)], capture_output=True, text=True,
                                   timeout=limit, cwd=tmp, preexec_fn=die_with_parent)
            ptext = probe.stdout + probe.stderr
            info["osdi"] = "osdi:" in ptext and "unknown command" not in ptext.lower()
        except subprocess.TimeoutExpired:   # not cached as "no OSDI": raised
            raise _no_answer(executable, "the OSDI probe", limit) from None
        except (OSError, subprocess.SubprocessError):
            info["osdi"] = False
    return info


def ngspice_info() -> dict[str, Any]:
    """{"version", "klu", "osdi", "executable", "library"} of the ngspice this process would use.

    ``version`` is None (and klu/osdi False) when no executable is found; ``library`` is None when
    no libngspice is found. Cached per COSIM_NGSPICE / PATH / NGSPICE_LIBRARY_PATH setting."""
    return dict(_detect(_find_executable(), _find_library()))


def compiled_models_status() -> tuple[bool, str]:
    """(usable, reason): whether the installed ngspice runs cosim's compiled device models (OSDI):
    the build loads OSDI libraries, a C compiler builds the library (cosim.circuit.devices.compiled_library),
    and one compiled RVT fin in ngspice gives the model's saturation current. Cached per setting."""
    info = ngspice_info()
    if info["executable"] is None:
        return False, "ngspice not found"
    if not info["osdi"]:
        return False, f"ngspice {info['version']} cannot load OSDI libraries"
    from ..devices import osdi_source_sha256
    from ...paths import cache_dir
    return _probe_compiled(info["executable"], info["version"], osdi_source_sha256(), str(cache_dir()))


@lru_cache(maxsize=8)
def _probe_compiled(executable: str, version: str, source_sha: str, cache: str) -> tuple[bool, str]:
    """The probe behind compiled_models_status (cached per ngspice, C source and cache folder)."""
    from ..devices import compiled_library, compiled_library_name, model_text
    try:
        lib = compiled_library()
    except NgspiceError as e:
        return False, str(e)
    name = compiled_library_name()
    deck = "\n".join(["* cosim compiled-model probe", ".control", f"pre_osdi {name}", ".endc",
                      model_text("finfet7_osdi.lib"), "Vd d 0 0.7", "Vm d dm 0",
                      "N1 dm d 0 nfet_rvt_c nfin=1", ".dc Vd 0.7 0.7 1", ".print dc i(Vm)", ".end", ""])
    with scratch_dir("osdi-probe") as tmp:
        (Path(tmp) / name).symlink_to(lib)
        (Path(tmp) / "probe.cir").write_text(deck)
        limit = _probe_s(2 * PROBE_TIMEOUT_S)
        try:
            proc = subprocess.run([executable, "-b", "probe.cir"], capture_output=True, text=True, timeout=limit,
                                  cwd=tmp, env={**os.environ, "LC_ALL": "C"}, preexec_fn=die_with_parent)
        except subprocess.TimeoutExpired:   # not cached as "compiled models unusable": raised
            raise _no_answer(executable, "the compiled-model probe", limit) from None
        except (OSError, subprocess.SubprocessError) as e:
            return False, f"ngspice failed to run the compiled-model probe: {e}"
    m = re.search(r"^\s*0\s+[-+0-9.e]+\s+([-+0-9.e]+)\s*$", proc.stdout, re.M)
    i_a = float(m.group(1)) if m else float("nan")
    # ASAP7 RVT fin: Idsat 37.85 uA at Vgs = Vds = 0.7 V (the fit reproduces it to 0.1 %)
    if not (abs(i_a - 37.85e-6) < 0.01 * 37.85e-6):
        last = (proc.stdout + proc.stderr).strip().splitlines()
        return False, f"ngspice did not run the compiled models ({last[-1][:200] if last else 'no output'})"
    return True, f"{name} loaded by ngspice {version}"


def compiled_models_available() -> bool:
    return compiled_models_status()[0]


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
