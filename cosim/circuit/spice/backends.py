"""The two ways of running a deck: ``ngspice -b`` in a subprocess (rawfile parsed with numpy) and
PySpice's ``NgSpiceShared`` in this process (one ngspice instance per process: a module singleton,
circuits and plots removed after every run). Both take a deck and return its vectors."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path

import numpy as np

from ...errors import InputError, NgspiceError
from ...orphans import die_with_parent, scratch_dir
from .detect import require_executable, require_library
from .rawfile import read_rawfile

_CONVERGENCE_WORDS = ("converge", "iteration limit", "singular matrix", "gmin stepping", "source stepping",
                      "timestep too small", "dc sweep failed", "no convergence")


class NgspiceRunError(NgspiceError):
    """ngspice failed; ``convergence`` says whether it looks like non-convergence."""

    def __init__(self, message: str, convergence: bool = False) -> None:
        super().__init__(message)
        self.convergence = convergence


def summarise(output: str) -> str:
    """ngspice's most telling line: the first error line, else the last non-empty line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in lines:
        low = ln.lower()
        if low.startswith("error") or "error:" in low or "failed" in low or "not converge" in low:
            return ln[:300]
    for ln in lines:
        if any(w in ln.lower() for w in _CONVERGENCE_WORDS):
            return ln[:300]
    return lines[-1][:300] if lines else "no output"


def _looks_unconverged(output: str) -> bool:
    low = output.lower()
    return any(w in low for w in _CONVERGENCE_WORDS)


def ngspice_threads() -> int:
    """OpenMP threads ngspice may use to load devices: $COSIM_NGSPICE_THREADS, default 1. ngspice's
    own spinit asks for 8; on a 2-core machine that made a 128x128 8T point 2-3x slower (threads
    spinning in the kernel), and cosim runs points in parallel processes instead."""
    raw = os.environ.get("COSIM_NGSPICE_THREADS", "1")
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise InputError(f"COSIM_NGSPICE_THREADS must be a positive integer, got '{raw}'")
    return n


_PRE_OSDI = re.compile(r"^pre_osdi (\S+)$", re.M)


def _osdi_libraries(deck: str) -> dict[str, Path]:
    """The compiled-model libraries a deck loads (``pre_osdi <name>``), built if needed: name -> path."""
    names = _PRE_OSDI.findall(deck)
    if not names:
        return {}
    from ..devices import compiled_library
    from .. import bsimcmg
    return {n: (bsimcmg.library(n) if n.startswith("bsimcmg-") else compiled_library(n)) for n in names}


def run_subprocess(deck: str, n_points: int, timeout_s: float | None = None) -> tuple[dict[str, np.ndarray], str]:
    """Run ``ngspice -b -r`` on ``deck``; returns (vectors, version). Compiled-model libraries the deck
    names are linked into the run's folder, where ngspice looks for them."""
    info = require_executable()
    libs = _osdi_libraries(deck)
    with scratch_dir("spice") as tmp:
        cir, raw = Path(tmp) / "array.cir", Path(tmp) / "array.raw"
        cir.write_text(deck)
        # read after ngspice's spinit (and instead of ~/.spiceinit): the run's thread count
        (Path(tmp) / ".spiceinit").write_text(f"set num_threads={ngspice_threads()}\n")
        for name, path in libs.items():
            (Path(tmp) / name).symlink_to(path)
        try:
            proc = subprocess.run([info["executable"], "-b", "-r", str(raw), str(cir)], capture_output=True,
                                  text=True, timeout=timeout_s, cwd=tmp, env={**os.environ, "LC_ALL": "C"},
                                  preexec_fn=die_with_parent)   # a killed worker takes its ngspice along
        except subprocess.TimeoutExpired:
            raise NgspiceError(f"ngspice did not finish within {timeout_s:g} s") from None
        except OSError as e:
            raise NgspiceError(f"cannot run ngspice at {info['executable']}: {e.strerror}") from None
        output = proc.stdout + "\n" + proc.stderr
        if proc.returncode != 0 or not raw.exists():
            raise NgspiceRunError(f"ngspice failed (exit {proc.returncode}): {summarise(output)}",
                                  _looks_unconverged(output))
        plots = read_rawfile(raw)
    if not plots:
        raise NgspiceRunError(f"ngspice wrote an empty rawfile: {summarise(output)}", _looks_unconverged(output))
    data = plots[-1]["data"]
    got = len(next(iter(data.values())))
    if got != n_points:
        raise NgspiceRunError(f"ngspice stopped after {got} of {n_points} sweep points: {summarise(output)}",
                              True)
    return data, info["version"]


class _Shared:
    """The process's one NgSpiceShared instance, created on first use, used under a lock."""

    lock = threading.Lock()
    ngs = None

    @classmethod
    def get(cls):
        if cls.ngs is None:
            info = require_library()
            import logging
            logging.getLogger("PySpice").setLevel(logging.CRITICAL)  # "Unsupported Ngspice version" etc.
            try:
                from PySpice.Spice.NgSpice.Shared import NgSpiceShared
            except Exception as e:  # noqa: BLE001
                raise NgspiceError(f"PySpice cannot be imported for the shared backend: {e}") from None
            NgSpiceShared.LIBRARY_PATH = info["library"]
            try:
                cls.ngs = NgSpiceShared.new_instance()
            except Exception as e:  # noqa: BLE001
                raise NgspiceError(f"cannot load libngspice {info['library']}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        return cls.ngs


def shared_version() -> str:
    with _Shared.lock:
        ngs = _Shared.get()
        return str(ngs.ngspice_version)


def _vector(ngs, plot: str, name: str) -> np.ndarray:
    from PySpice.Spice.NgSpice.Shared import ffi
    info = ngs._ngspice_shared.ngGet_Vec_Info(f"{plot}.{name}".encode())
    if info == ffi.NULL or info.v_realdata == ffi.NULL:
        raise NgspiceRunError(f"ngspice produced no vector {name}")
    return np.frombuffer(ffi.buffer(info.v_realdata, info.v_length * 8), dtype=np.float64).copy()


def _rawfile_name(name: str) -> str:
    """Shared-library vector names as the rawfile spells them: 'vm0#branch' -> 'i(vm0)', 'b0_0' -> 'v(b0_0)'."""
    if name.endswith("#branch"):
        return f"i({name[:-7]})"
    if "(" in name:
        return name
    return f"v({name})"


def _reset(ngs) -> None:
    """Remove every circuit and plot from the shared instance (nothing there is not an error)."""
    for cmd in ("destroy all", "remcirc"):
        try:
            ngs.exec_command(cmd)
        except Exception:  # noqa: BLE001 - nothing to remove
            pass


def run_shared(deck: str, n_points: int, timeout_s: float | None = None) -> tuple[dict[str, np.ndarray], str]:
    """Run ``deck`` in the process's libngspice; returns (vectors, version).

    No timeout: a run inside this process cannot be stopped safely (PySpice's background-thread
    halt corrupts the instance), so ``timeout_s`` must be None here; use the subprocess backend."""
    if timeout_s is not None:
        raise InputError("timeout_s needs backend='subprocess': a run inside this process cannot be stopped safely")
    for name, path in _osdi_libraries(deck).items():  # no run folder here: the library's own path
        deck = deck.replace(f"pre_osdi {name}\n", f"pre_osdi {path}\n")
    with _Shared.lock:
        ngs = _Shared.get()
        _reset(ngs)
        output = ""
        try:
            ngs.exec_command(f"set num_threads={ngspice_threads()}")
            ngs.load_circuit(deck)
            output = ngs.stdout + "\n" + ngs.stderr
            ngs.exec_command("run")
            output += "\n" + ngs.stdout + "\n" + ngs.stderr
            plot = ngs.last_plot
            names = [n.lower() for n in ngs._convert_string_array(ngs._ngspice_shared.ngSpice_AllVecs(plot.encode()))]
            if not plot.startswith("dc") or not names:
                raise NgspiceRunError(f"ngspice failed: {summarise(output)}", _looks_unconverged(output))
            data = {_rawfile_name(n): _vector(ngs, plot, n) for n in names}
        except NgspiceError:
            raise
        except Exception:  # noqa: BLE001 - PySpice raises NameError subclasses with empty messages
            output += "\n" + ngs.stdout + "\n" + ngs.stderr
            raise NgspiceRunError(f"ngspice failed: {summarise(output)}", _looks_unconverged(output)) from None
        finally:
            _reset(ngs)
        got = len(next(iter(data.values())))
        if got != n_points:
            raise NgspiceRunError(f"ngspice stopped after {got} of {n_points} sweep points: {summarise(output)}", True)
        return data, str(ngs.ngspice_version)


BACKENDS = {"subprocess": run_subprocess, "shared": run_shared}
