"""The compiled kernel of the exact array solver (cosim.circuit.solver): C, built on first use, called by ctypes.

The source is ``device_models/osdi/cosim_devices.c`` (the compiled device models the ngspice decks load
through OSDI) followed by ``cosim/circuit/solver_kernel.c`` (the cells of the three technologies and the Newton
loop of decoupled columns), compiled as one translation unit: the solver's cells call the very
``fet_current`` the decks evaluate. The library is built with the system C compiler (cosim.cbuild) into
``cosim.paths.cache_dir()/kernels``, named by the hash of both sources and the flags. The structs passed
to it are mirrored here by ctypes structs; the library reports the size and a few field offsets of each
(``LAYOUTS``), and ``load`` refuses one whose layouts differ from these.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
from pathlib import Path

from ..cbuild import build_shared, layout_mismatch
from .devices import OSDI_SOURCE, model_path
from ..errors import InputError
from ..paths import cache_dir

F_NPARAM = 10      # parameters of cosim_finfet / cosim_stack, in the C enum's order
FET_PARAM_NAMES = ("nfin", "pol", "k", "a", "vt", "c", "s", "eta", "lam", "phit")
KIND = {"resistor": 0, "sram8t": 1, "reram1t1r": 2}
FLAGS = ("-O3", "-pthread")   # -O3: 3-7 % faster than -O2 here, the same results bit for bit
#: for the CPU it runs on (the lanes of cosim_solve_decoupled as wide as its vector registers), where the compiler
#: takes it; ``COSIM_SOLVER_KERNEL=portable`` leaves it out (the target's baseline: two lanes on x86-64)
OPTIONAL_FLAGS = ("-march=native",)
ENV = "COSIM_SOLVER_KERNEL"
KERNEL_SOURCE = Path(__file__).with_name("solver_kernel.c")

#: status codes of a column (cosim_solve_decoupled)
STATUS_REASONS = {1: "iteration limit reached", 2: "non-finite voltage or current",
                  3: "singular Newton matrix", 4: "out of memory"}


class CellPar(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int32), ("fet", ctypes.c_double * F_NPARAM), ("nfin", ctypes.c_double),
                ("re_i0_a", ctypes.c_double), ("re_g0_m", ctypes.c_double), ("re_v0_v", ctypes.c_double),
                ("g_inner_shunt_s", ctypes.c_double)]


class CellTab(ctypes.Structure):
    _fields_ = [("nx", ctypes.c_int32), ("ny", ctypes.c_int32), ("nch", ctypes.c_int32), ("x0", ctypes.c_double),
                ("dx", ctypes.c_double),
                ("y0", ctypes.c_double), ("dy", ctypes.c_double), ("c", ctypes.c_void_p)]


class DecJob(ctypes.Structure):
    _fields_ = [("P", ctypes.POINTER(CellPar)), ("K", ctypes.c_int64), ("C", ctypes.c_int64), ("R", ctypes.c_int64),
                ("x", ctypes.c_void_p), ("wt", ctypes.c_void_p), ("state", (ctypes.c_double * 2) * 4),
                ("v_read_v", ctypes.c_double), ("g_bl_s", ctypes.c_double), ("g_sl_s", ctypes.c_double),
                ("g_driver_s", ctypes.c_double),
                ("g_sink_s", ctypes.c_double), ("driver_fixed", ctypes.c_int32), ("sink_fixed", ctypes.c_int32),
                ("g_shunt_s", ctypes.c_double), ("max_iter", ctypes.c_int32), ("reltol", ctypes.c_double),
                ("vntol_v", ctypes.c_double), ("abstol_a", ctypes.c_double), ("dv_max_v", ctypes.c_double),
                ("kidx", ctypes.c_void_p), ("cidx", ctypes.c_void_p), ("npairs", ctypes.c_int64),
                ("j0", ctypes.c_int64), ("j1", ctypes.c_int64), ("i_out", ctypes.c_void_p),
                ("status", ctypes.c_void_p), ("iters", ctypes.c_void_p), ("table", ctypes.POINTER(CellTab)),
                ("lanes", ctypes.c_int32)]


class CplJob(ctypes.Structure):
    _fields_ = [("P", ctypes.POINTER(CellPar)), ("K", ctypes.c_int64), ("R", ctypes.c_int64), ("C", ctypes.c_int64),
                ("x", ctypes.c_void_p), ("w", ctypes.c_void_p), ("state", (ctypes.c_double * 2) * 4),
                ("tstate", ctypes.c_int32 * 4), ("gate_driven", ctypes.c_int32), ("v_read_v", ctypes.c_double),
                ("g_col_s", ctypes.c_double), ("g_row_s", ctypes.c_double), ("g_col_end_s", ctypes.c_double),
                ("g_row_end_s", ctypes.c_double), ("col_end_fixed", ctypes.c_int32), ("row_end_fixed", ctypes.c_int32),
                ("g_shunt_s", ctypes.c_double), ("max_iter", ctypes.c_int32), ("reltol", ctypes.c_double),
                ("vntol_v", ctypes.c_double), ("abstol_a", ctypes.c_double), ("dv_max_v", ctypes.c_double),
                ("lin_rtol", ctypes.c_double), ("lin_rtol_first", ctypes.c_double),
                ("gmres_restart", ctypes.c_int32), ("gmres_max", ctypes.c_int32),
                ("k0", ctypes.c_int64), ("k1", ctypes.c_int64), ("i_out", ctypes.c_void_p), ("status", ctypes.c_void_p),
                ("iters", ctypes.c_void_p), ("lin_iters", ctypes.c_void_p), ("table", ctypes.POINTER(CellTab)),
                ("rtable", ctypes.POINTER(CellTab))]


#: the structs passed to the library, the C function that reports each one's layout (its size, then the
#: offsets of the fields named, in this order) and those fields: ``load`` refuses a library that differs
LAYOUTS = ((CellPar, "cosim_solver_cellpar_layout", ("fet", "nfin", "g_inner_shunt_s")),
           (CellTab, "cosim_solver_celltab_layout", ("nch", "x0", "c")),
           (DecJob, "cosim_solver_decjob_layout", ("x", "state", "v_read_v", "g_bl_s", "g_sl_s", "max_iter", "npairs",
                                                    "i_out", "table", "lanes")),
           (CplJob, "cosim_solver_cpljob_layout", ("x", "state", "tstate", "v_read_v", "g_shunt_s", "max_iter",
                                                    "lin_rtol", "lin_rtol_first", "k0", "lin_iters", "table", "rtable")))

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None


def check_layouts(lib: ctypes.CDLL, layouts=LAYOUTS) -> None:
    """Raise InputError (one line) unless every ctypes struct of ``layouts`` has the C struct's layout."""
    for struct, symbol, fields in layouts:
        bad = layout_mismatch(lib, symbol, struct, fields)
        if bad is not None:
            raise InputError(f"the solver kernel does not match cosim/circuit/solver_kernel.py: {bad}")


def source_text() -> str:
    """The one translation unit: the device models' C source, then the solver's."""
    dev = model_path(OSDI_SOURCE)
    try:
        return dev.read_text() + "\n#include <pthread.h>\n" + KERNEL_SOURCE.read_text()
    except OSError as e:
        raise InputError(f"solver kernel source not readable: {e}") from None


def portable_forced() -> bool:
    """Whether ``COSIM_SOLVER_KERNEL=portable`` asks for the kernel built without ``-march=native``."""
    return os.environ.get(ENV, "").strip().lower() == "portable"


def build_flags() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The compiler flags of the kernel: (required, optional: dropped where the compiler rejects them)."""
    return FLAGS, (() if portable_forced() else OPTIONAL_FLAGS)


def load() -> ctypes.CDLL:
    """The compiled solver kernel (built on first use; raises InputError when it cannot be built)."""
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        src = source_text()
        import platform
        flags, optional = build_flags()
        key = hashlib.sha256((src + " ".join(flags + optional) + platform.machine() + platform.node()).encode()).hexdigest()[:16]
        target = cache_dir() / "kernels" / f"solver_{key}.so"
        try:
            build_shared(src, target, flags=list(flags), optional_flags=list(optional))
            lib = ctypes.CDLL(str(target))
        except OSError as e:
            raise InputError(f"cannot build the solver kernel (needs a C compiler): {e}") from None
        check_layouts(lib)
        lib.cosim_solve_decoupled.argtypes = [ctypes.POINTER(DecJob), ctypes.c_int]
        lib.cosim_solve_decoupled.restype = ctypes.c_int
        p = ctypes.c_void_p
        lib.cosim_solve_coupled.argtypes = [ctypes.POINTER(CplJob), ctypes.c_int]
        lib.cosim_solve_coupled.restype = ctypes.c_int
        lib.cosim_cells_eval.argtypes = [ctypes.POINTER(CellPar), ctypes.c_int64, p, p, p, p, p, p, p, p]
        lib.cosim_cells_eval.restype = None
        lib.cosim_table_eval.argtypes = [ctypes.POINTER(CellTab), ctypes.c_int64, p, p, p, p, p, p, p]
        lib.cosim_table_eval.restype = None
        lib.cosim_solver_lanes.argtypes = []
        lib.cosim_solver_lanes.restype = ctypes.c_int
        _lib = lib
        return lib
