"""The calibration sweep: its design (which SPICE points a calibration runs), the runner that writes
them, the ngspice cross-check of exact-solver sweeps, and the reader of the finished points. The fit
of the surrogate's table to these points is ``cosim.surrogate.fit``.

The sweep
---------
A *point* is one ngspice run of an R x C array with K input vectors (one ``.dc`` analysis); every
(vector, column) pair of a point is one *sample* (columns of a decoupled array are independent).
Point ``i`` is drawn from ``numpy.random.default_rng([seed, i])`` alone, so the same seed gives the same
points whatever order they run in, how many workers run them, and how often the sweep was interrupted.

Weight columns (the pattern along a column) mix two families:

- ``bernoulli``: every cell 1 with a column density drawn from U(0.05, 0.95);
- ``stratified``: an exact ON-count drawn uniformly from 0..R, placed ``uniform``, ``near`` the sense end
  (the source-line end, row R-1), ``far`` from it (row 0 side), or ``clustered`` (one contiguous block).

Input vectors: one all-ones vector (the column pattern itself is ON, every other row leaks: ReRAM HRS,
FET Ioff), Bernoulli vectors with densities from U(0.05, 1), and a few contiguous blocks. So the
samples cover ON-count 0..R, placements near/far/clustered/uniform, and off-cell leakage from none to all.

Every finished point is written at once to ``DIR/points/point_NNNNN.npz`` (atomically); a rerun with
the same arguments skips finished points, so an interrupted sweep loses nothing. Points run through
``cosim.sweep.executor`` (local processes or a dask cluster) and the content-addressed SPICE point cache
(``cosim.sweep.points``), so a point already simulated anywhere with the same netlist and ngspice is not rerun.

With ``solver="exact"`` (``cosim calibrate --solver exact``) the points are solved by the exact DC solver
of the same circuits (``cosim.circuit.solver``, orders of magnitude faster) instead of ngspice, and ngspice
re-solves a random 2 % of them (``check_points``, at least one; converged to reltol 1e-9 rather than
the decks' 1e-6, ``CHECK_SPICE_OPTIONS``, as the solver's tests do): every current must agree within 1e-6
relative (absolute floor 1e-12 A, the solver's tests' tolerance), or the calibration fails without
writing a table; the largest difference is recorded in the table's provenance (``ngspice_check``).

With ``placements`` (``--placements``) every third point (index 2, 5, 8, ...) holds one of the placement
families of validation in turn (``placement_patterns``: ``far``, ``near``, ``alternate``, ``dense``); the
other points are drawn exactly as without it.

With network operands (``--network-operands``) every third point from index 1 on (1, 4, 7, ...) holds
real operands of trained binary networks: R-row slices of their layers' unrolled inputs and weights,
plain and with BinSparX's flips (an ``OperandSource``, which the caller builds: the sweep knows
nothing of networks); again the other points are drawn exactly as without it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import CosimError, InputError, StorageError, TableError
from ..fileio import atomic_path, check_writable, describe_os_error
from ..circuit.technology import Technology
from .store import ResultStore

PLACEMENTS = ("uniform", "near", "far", "clustered")
DEFAULT_VECTORS = 16


# ---------------------------------------------------------------------------------------------------
# Patterns
# ---------------------------------------------------------------------------------------------------
def place_ones(rng: np.random.Generator, rows: int, k: int, placement: str) -> np.ndarray:
    """A 0/1 vector of length ``rows`` with exactly ``k`` ones placed as asked (row R-1 = sense end)."""
    out = np.zeros(rows, dtype=np.uint8)
    k = int(min(max(k, 0), rows))
    if k == 0:
        return out
    if placement == "clustered":
        start = int(rng.integers(0, rows - k + 1))
        out[start:start + k] = 1
        return out
    idx = np.arange(rows, dtype=np.float64)
    if placement == "uniform":
        p = np.ones(rows)
    elif placement == "near":
        p = np.exp(-(rows - 1 - idx) / (rows * rng.uniform(0.08, 0.4)))
    elif placement == "far":
        p = np.exp(-idx / (rows * rng.uniform(0.08, 0.4)))
    else:
        raise InputError(f"unknown placement '{placement}': expected one of {', '.join(PLACEMENTS)}")
    sel = rng.choice(rows, size=k, replace=False, p=p / p.sum())
    out[sel] = 1
    return out


def design_point(seed: int, index: int, rows: int, cols: int, vectors: int = DEFAULT_VECTORS
                 ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Inputs (K, R), weights (R, C) and the family of each column, for sweep point ``index``."""
    rng = np.random.default_rng([int(seed), int(index)])
    w = np.zeros((rows, cols), dtype=np.uint8)
    fam: list[str] = []
    for c in range(cols):
        if rng.random() < 0.5:
            p = rng.uniform(0.05, 0.95)
            w[:, c] = rng.random(rows) < p
            fam.append("bernoulli")
        else:
            placement = PLACEMENTS[int(rng.integers(0, len(PLACEMENTS)))]
            w[:, c] = place_ones(rng, rows, int(rng.integers(0, rows + 1)), placement)
            fam.append(placement)
    x = np.zeros((vectors, rows), dtype=np.uint8)
    n_block = max(1, vectors // 6)
    for v in range(vectors):
        if v == 0:
            x[v] = 1
        elif v > vectors - 1 - n_block:
            x[v] = place_ones(rng, rows, int(rng.integers(1, rows + 1)), "clustered")
        else:
            x[v] = rng.random(rows) < rng.uniform(0.05, 1.0)
    return x, w, fam


#: placement families of ``random_patterns`` (validation, and ``calibrate --placements``)
PLACEMENT_FAMILIES = ("far", "near", "alternate", "dense")
#: with placements, every third point of a sweep is a placement-family point
PLACEMENT_EVERY = 3
#: calibration solvers; with "exact", ngspice re-solves this fraction of the points (at least one) and the
#: calibration fails where any current differs by more than CHECK_RTOL * |ngspice| + CHECK_ATOL_A
SOLVERS = ("ngspice", "exact")
CHECK_FRACTION = 0.02
CHECK_RTOL = 1e-6
CHECK_ATOL_A = 1e-12
#: the cross-check's ngspice runs converge further than the decks' reltol (1e-6, which leaves ngspice's own
#: currents up to ~1e-6 from converged), as the solver's tests do: the difference measured is the solver's
CHECK_SPICE_OPTIONS = "reltol=1e-9"


def _block_lengths(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """``n`` block lengths covering 0..rows as evenly as n allows (a random offset, then shuffled)."""
    k = (np.arange(n) * (rows + 1) / max(n, 1) + rng.uniform(0, (rows + 1) / max(n, 1))).astype(np.int64)
    return rng.permutation(np.minimum(k, rows))


def placement_patterns(family: str, rng: np.random.Generator, rows: int, cols: int, vectors: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (K, R) and weights (R, C) whose conducting cells (x_j w_j = 1) sit as the family says
    (row 0 is the far end of the bit line, row R-1 the sense end):

    - ``far``: one contiguous block at the far end: weight column c holds rows 0..b_c-1, input vector v
      rows 0..a_v-1 (a_0 = R: every row driven), so the conducting cells are rows 0..min(a_v, b_c)-1; the
      b_c cover every count 0..R evenly, and driven rows past b_c leak;
    - ``near``: the same block at the sense end (rows R-b..R-1);
    - ``alternate``: every other row: column c holds the rows of one parity (drawn per column), vector v
      drives one contiguous window (random start and length; v = 0 every row), so the conducting cells
      are every other row of the window (counts 0..R/2);
    - ``dense``: every input and weight 1 with a probability drawn per vector / per column from
      U(0.95, 1), so 90-100 % of the cells conduct."""
    if family in ("far", "near"):
        b = _block_lengths(rng, rows, cols)
        a = np.concatenate([[rows], rng.integers(0, rows + 1, size=vectors - 1)])[:vectors]
        j = np.arange(rows)
        pos = j if family == "far" else rows - 1 - j         # distance in rows from the block's end
        w = (pos[:, None] < b[None, :]).astype(np.uint8)
        x = (pos[None, :] < a[:, None]).astype(np.uint8)
    elif family == "alternate":
        parity = rng.integers(0, 2, size=cols)
        w = ((np.arange(rows)[:, None] % 2) == parity[None, :]).astype(np.uint8)
        x = np.zeros((vectors, rows), dtype=np.uint8)
        for v in range(vectors):
            if v == 0:
                x[v] = 1
            else:
                n = int(rng.integers(1, rows + 1))
                start = int(rng.integers(0, rows - n + 1))
                x[v, start:start + n] = 1
    elif family == "dense":
        x, w = _density_patterns(rng, 0.95, 1.0, rows, cols, vectors)
    else:
        raise InputError(f"unknown placement family '{family}': expected one of {', '.join(PLACEMENT_FAMILIES)}")
    return x, w


#: with network operands, points ``index % NETWORK_EVERY == NETWORK_AT`` are network points (1, 4, 7, ...;
#: never a placement point)
NETWORK_EVERY = 3
NETWORK_AT = 1


class OperandSource(Protocol):
    """Real operands for the network points of a sweep (``cosim.surrogate.netslices.CalibrationOperands``
    is one): ``describe`` says what they come from (JSON-ready; it goes into the sweep's key and the
    table's provenance, so it must name the operands fully and cheaply), ``point`` gives network point
    ``number`` (0, 1, 2, ...): inputs (vectors, rows), weights (rows, cols) as 0/1 uint8, and the
    family of each column; the same arguments must always give the same operands."""

    def describe(self) -> dict[str, Any]: ...

    def point(self, number: int, rows: int, cols: int, vectors: int, seed: int
              ) -> tuple[np.ndarray, np.ndarray, list[str]]: ...


def sweep_design(cfg: "SweepConfig", index: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Inputs, weights and column families of sweep point ``index``: ``design_point``, except, with
    ``cfg.placements``, points ``index % PLACEMENT_EVERY == PLACEMENT_EVERY - 1``, which hold one placement
    family each (``placement_patterns``; the families in turn), drawn from ``[seed, index, 2]``, and, with
    ``cfg.operands``, points ``index % NETWORK_EVERY == NETWORK_AT``, which hold network point
    ``index // NETWORK_EVERY`` of the operand source. The other points are exactly those of a sweep
    without placements and operands."""
    if cfg.operands is not None and _network_points(cfg, index):
        x, w, fam = cfg.operands.point(index // NETWORK_EVERY, cfg.rows, cfg.cols, cfg.vectors, cfg.seed)
        x, w = np.ascontiguousarray(x, dtype=np.uint8), np.ascontiguousarray(w, dtype=np.uint8)
        if x.shape != (cfg.vectors, cfg.rows) or w.shape != (cfg.rows, cfg.cols) or len(fam) != cfg.cols:
            raise InputError(f"network operands of point {index} have shapes {x.shape} and {w.shape} "
                             f"({len(fam)} families), expected ({cfg.vectors}, {cfg.rows}) and ({cfg.rows}, {cfg.cols})")
        return x, w, list(fam)
    if _placement_points(cfg, index):
        fam = PLACEMENT_FAMILIES[(index // PLACEMENT_EVERY) % len(PLACEMENT_FAMILIES)]
        x, w = placement_patterns(fam, np.random.default_rng([int(cfg.seed), int(index), 2]), cfg.rows, cfg.cols,
                                  cfg.vectors)
        return x, w, [fam] * cfg.cols
    return design_point(cfg.seed, index, cfg.rows, cfg.cols, cfg.vectors)


def is_design_point(cfg: "SweepConfig", index: np.ndarray) -> np.ndarray:
    """Which sweep points (``index``, an array of point indices) are ``design_point`` points: neither a
    placement-family point (with ``cfg.placements``) nor a network point (with ``cfg.operands``), as
    ``sweep_design`` assigns them. Their columns (random Bernoulli and placed weight columns, random and
    clustered input vectors: every point of a sweep without placements and operands) trim the calibrated
    ADC's levels (``cosim.surrogate.fit.fit_table``), whatever else a sweep adds."""
    index = np.asarray(index, dtype=np.int64)
    return ~(_network_points(cfg, index) | _placement_points(cfg, index))


def _network_points(cfg: "SweepConfig", index):
    """Whether sweep point(s) ``index`` (an int or an array) are network points (with ``cfg.operands``)."""
    return np.logical_and(cfg.operands is not None, np.asarray(index) % NETWORK_EVERY == NETWORK_AT)


def _placement_points(cfg: "SweepConfig", index):
    """Whether sweep point(s) ``index`` (an int or an array) fall on the placement-family rule (with
    ``cfg.placements``; ``sweep_design`` gives a network point precedence)."""
    return np.logical_and(bool(cfg.placements), np.asarray(index) % PLACEMENT_EVERY == PLACEMENT_EVERY - 1)


def _density_patterns(rng: np.random.Generator, lo: float, hi: float, rows: int, cols: int, vectors: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and weights 1 with a density drawn from U(lo, hi) per input vector and per weight column."""
    px = rng.uniform(lo, hi, size=(vectors, 1))
    pw = rng.uniform(lo, hi, size=(1, cols))
    return (rng.random((vectors, rows)) < px).astype(np.uint8), (rng.random((rows, cols)) < pw).astype(np.uint8)


def random_patterns(family: str, rng: np.random.Generator, rows: int, cols: int, vectors: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Validation patterns: ``random`` (every input and weight 1 with p = 0.5), ``skewed`` (input and
    weight densities drawn per vector and per column from 10-90 %, as binary networks have), or one of
    the ``PLACEMENT_FAMILIES`` (``placement_patterns``)."""
    if family in PLACEMENT_FAMILIES:
        return placement_patterns(family, rng, rows, cols, vectors)
    if family == "random":
        x = (rng.random((vectors, rows)) < 0.5).astype(np.uint8)
        w = (rng.random((rows, cols)) < 0.5).astype(np.uint8)
    elif family == "skewed":
        x, w = _density_patterns(rng, 0.1, 0.9, rows, cols, vectors)
    else:
        raise InputError(f"unknown pattern family '{family}': expected random, skewed, network or one of "
                         f"{', '.join(PLACEMENT_FAMILIES)}")
    return x, w


# ---------------------------------------------------------------------------------------------------
# Running points
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepConfig:
    tech: Technology
    rows: int
    cols: int
    topology: str
    seed: int
    vectors: int = DEFAULT_VECTORS
    backend: str = "subprocess"
    #: "ngspice" (every point a SPICE run) or "exact" (cosim.circuit.solver; a random CHECK_FRACTION of the points
    #: re-solved by ngspice as a cross-check)
    solver: str = "ngspice"
    #: every PLACEMENT_EVERY-th point a placement-family point (``sweep_design``)
    placements: bool = False
    #: real network operands for every NETWORK_EVERY-th point (``sweep_design``); None: no network points.
    #: Its ``describe()`` is part of the key.
    operands: OperandSource | None = field(default=None, compare=False)

    def key(self) -> dict[str, Any]:
        key = {"technology_params": self.tech.as_dict(), "rows": self.rows, "cols": self.cols,
               "topology": self.topology, "seed": self.seed, "vectors": self.vectors}
        if self.solver != "ngspice":       # the defaults add nothing: existing sweeps resume as before
            key["solver"] = self.solver
        if self.placements:
            key["placements"] = True
        if self.operands is not None:
            key["network_operands"] = self.operands.describe()
        return key


#: where a sweep folder keeps its points (``cosim.sweep.store`` layout): ``DIR/points/point_NNNNN.npz``
POINT_LAYOUT = "{kind}/point_{key}.npz"


def _point_path(out_dir: Path, index: int) -> Path:
    return ResultStore(out_dir, POINT_LAYOUT).path("points", f"{index:05d}")


def _write_point(out_dir: Path, index: int, cfg: SweepConfig, x, w, fam, current_a, meta: dict[str, Any]) -> Path:
    """Write sweep point ``index`` (atomically, a record of ``cosim.sweep.store``): inputs, weights, currents
    and what produced them (0-d arrays, so ``np.load(path)["seconds"]`` reads them as before)."""
    arrays = {"inputs": x, "weights": w, "current_a": current_a, "family": np.array(fam),
              "ngspice_version": np.array(meta["ngspice_version"]), "solver": np.array(meta["solver"]),
              "netlist_sha256": np.array(meta["netlist_sha256"]), "seconds": np.array(meta["seconds"]),
              "config": np.array(json.dumps(cfg.key(), sort_keys=True))}
    try:
        return ResultStore(out_dir, POINT_LAYOUT, compress=True).put("points", f"{index:05d}", arrays)
    except StorageError as e:
        raise e.__cause__ if isinstance(e.__cause__, OSError) else e   # the caller says how many points are kept


def run_sweep(cfg: SweepConfig, points: int, out_dir: str | Path, workers: int | None = None,
              progress: bool = True, stop_after: int | None = None, scheduler: str | None = None,
              cache: Any = None, point_timeout_s: float | None = None, security: Any = None) -> list[Path]:
    """Run points 0..points-1 that are not finished yet, through ``cosim.sweep.executor`` (``workers`` local
    processes, default 1, or the dask cluster at ``scheduler`` / ``$COSIM_SCHEDULER``) and the SPICE point cache
    (``cache``: a folder or PointCache, default ``$COSIM_CACHE/spice``; False: none). Finished points are
    kept whatever happens (written here as they arrive). ``point_timeout_s`` resubmits a point that gives no
    result in time (hung or lost worker). ``stop_after`` runs at most that many new points (tests:
    interruption). Points that fail (after the convergence aids) are counted and reported at the end."""
    from ..sweep.executor import SchedulerLostError, make_executor
    from ..circuit.netlist import ArraySpec
    from ..sweep.points import SpicePoint, run_points

    out_dir = Path(out_dir)
    check_writable(out_dir, "the output folder")
    cfg_file = out_dir / "sweep.json"
    key = json.dumps(cfg.key(), sort_keys=True)
    if cfg_file.is_file():
        text = cfg_file.read_text()
        try:
            json.loads(text)
        except ValueError:
            raise InputError(f"{cfg_file} is {'empty' if not text.strip() else 'not JSON'}: not the record of a "
                             "sweep written by cosim; delete it to start a sweep in this folder, or use another "
                             "--out folder") from None
        if text != key:
            raise InputError(f"{out_dir} holds a sweep with other settings (technology, size, topology, seed or "
                             "vectors); use another --out folder")
    else:
        for name in ("table.parquet", "samples.parquet"):
            if (out_dir / name).exists():
                raise InputError(f"{out_dir / name} was not written by a sweep in this folder (no sweep.json); "
                                 "calibrate will not overwrite it: use another --out folder")
        with atomic_path(cfg_file) as tmp:
            tmp.write_text(key)
    todo = [i for i in range(points) if not _point_path(out_dir, i).is_file()]
    kept_before = points - len(todo)
    if stop_after is not None:
        todo = todo[:stop_after]
    if todo:
        spec = ArraySpec(cfg.tech, cfg.rows, cfg.cols, cfg.topology)
        designs = [sweep_design(cfg, i) for i in todo]
        if cfg.solver == "exact":
            _exact_points(cfg, spec, todo, designs, out_dir, progress)
            return [_point_path(out_dir, i) for i in range(points) if _point_path(out_dir, i).is_file()]

        def write(j: int, current_a, meta: dict[str, Any]) -> None:
            if current_a is not None:
                x, w, fam = designs[j]
                _write_point(out_dir, todo[j], cfg, x, w, fam, current_a, meta)

        try:
            with make_executor(workers=workers, scheduler=scheduler, security=security) as ex:
                desc = f"calibrate {cfg.tech.name} {cfg.rows}x{cfg.cols}" if progress else False
                rep = run_points([SpicePoint(spec, x, w) for x, w, _ in designs], executor=ex, cache=cache,
                                 backend=cfg.backend, task_timeout_s=point_timeout_s, progress=desc,
                                 on_result=write)
        except SchedulerLostError as e:
            kept = sum(_point_path(out_dir, i).is_file() for i in range(points))
            raise SchedulerLostError(f"{e}; {kept} of {points} points are kept in {out_dir}: run the same command "
                                     "again (with a running scheduler) to resume") from None
        except OSError as e:
            kept = sum(_point_path(out_dir, i).is_file() for i in range(points))
            if kept == kept_before and isinstance(e, StorageError):
                raise   # refused before any point ran
            raise StorageError(f"{describe_os_error(e)}; {kept} of {points} points are kept in {out_dir}: fix that "
                               "and run the same command again to resume") from None
        if rep.failed:
            j = min(rep.failed)
            raise CosimError(f"{rep.n_failed} of {len(todo)} points failed (finished points kept in {out_dir}; "
                             f"'cosim cache info --failed' lists them): point {todo[j]}: {rep.failed[j]}")
    return [_point_path(out_dir, i) for i in range(points) if _point_path(out_dir, i).is_file()]


def _exact_points(cfg: SweepConfig, spec, todo: list[int], designs: list, out_dir: Path, progress: bool) -> None:
    """Solve and write the sweep points ``todo`` with the exact solver (cosim.circuit.solver), one array per point.
    Each point records the deck's hash (the circuit solved is the deck's), solver "exact-banded" (or
    "exact-sparse"; "-table" appended where the tabulated cells were used: cosim.circuit.solver.cell_table), no
    ngspice version."""
    from ..circuit.netlist import build_netlist
    from ..provenance import sha256_text
    from ..circuit.solver import solve_array
    from ..circuit.spice import uses_klu

    name = "exact-banded" if spec.topology == "decoupled" else "exact-sparse"
    t0 = time.perf_counter()
    for j, i in enumerate(todo):
        x, w, fam = designs[j]
        res = solve_array(spec, x, w)
        meta = {"ngspice_version": "", "solver": name + ("-table" if res.cells == "table" else ""), "seconds": res.seconds,
                "netlist_sha256": sha256_text(build_netlist(spec, x, w, klu=uses_klu(cfg.backend)))}
        try:
            _write_point(out_dir, i, cfg, x, w, fam, res.column_current_a, meta)
        except OSError as e:
            kept = j
            raise StorageError(f"{describe_os_error(e)}; {kept} new points are kept in {out_dir}: fix that and "
                               "run the same command again to resume") from None
        if progress and (j + 1) % 50 == 0:
            print(f"calibrate {cfg.tech.name} {cfg.rows}x{cfg.cols}: {j + 1}/{len(todo)} points solved, "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


def check_points(cfg: SweepConfig, points: int) -> list[int]:
    """The points ngspice re-solves for an exact-solver sweep: a random CHECK_FRACTION of 0..points-1
    (at least one), drawn from ``[seed, 2, points]``."""
    n = max(1, int(np.ceil(CHECK_FRACTION * points)))
    rng = np.random.default_rng([int(cfg.seed), 2, int(points)])
    return sorted(int(i) for i in rng.choice(points, size=min(n, points), replace=False))


def ngspice_check(cfg: SweepConfig, paths: list[Path], points: int, workers: int | None = None,
                  scheduler: str | None = None, cache: Any = None, point_timeout_s: float | None = None,
                  security: Any = None) -> dict[str, Any]:
    """Re-solve ``check_points`` of an exact-solver sweep with ngspice; returns the record kept in the
    table's provenance (``max_rel_diff``: the largest |exact - ngspice| / (|ngspice| + CHECK_ATOL_A /
    CHECK_RTOL), which is at most CHECK_RTOL exactly when every current is within CHECK_RTOL * |ngspice| +
    CHECK_ATOL_A). Raises CosimError when it exceeds CHECK_RTOL or ngspice fails."""
    from ..sweep.executor import make_executor
    from ..circuit.netlist import ArraySpec
    from ..sweep.points import SpicePoint, run_points

    chosen = check_points(cfg, points)
    by_index = {int(p.stem.split("_")[1]): p for p in paths}
    spec = ArraySpec(cfg.tech, cfg.rows, cfg.cols, cfg.topology)
    exact, pts = [], []
    for i in chosen:
        with np.load(by_index[i], allow_pickle=False) as z:
            x, w, cur = z["inputs"], z["weights"], z["current_a"]
        exact.append(np.asarray(cur, np.float64))
        pts.append(SpicePoint(spec, x, w, options=CHECK_SPICE_OPTIONS))
    with make_executor(workers=workers, scheduler=scheduler, security=security) as ex:
        rep = run_points(pts, executor=ex, cache=cache, backend=cfg.backend, task_timeout_s=point_timeout_s)
    if rep.failed:
        j = min(rep.failed)
        raise CosimError(f"the ngspice cross-check of the exact solver failed at point {chosen[j]}: {rep.failed[j]}")
    ref = np.concatenate([np.asarray(c, np.float64).ravel() for c in rep.currents])
    got = np.concatenate([e.ravel() for e in exact])
    diff = np.abs(got - ref)
    rel = float(np.max(diff / (np.abs(ref) + CHECK_ATOL_A / CHECK_RTOL)))
    worst = int(np.argmax(diff / (np.abs(ref) + CHECK_ATOL_A / CHECK_RTOL)))
    record = {"points": chosen, "samples": int(ref.size), "max_rel_diff": rel, "max_abs_diff_a": float(diff.max()),
              "rtol": CHECK_RTOL, "atol_a": CHECK_ATOL_A, "ngspice_options": CHECK_SPICE_OPTIONS,
              "ngspice_version": ",".join(sorted({str(m["ngspice_version"]) for m in rep.meta if m})),
              "ngspice_solver": ",".join(sorted({str(m["solver"]) for m in rep.meta if m}))}
    if rel > CHECK_RTOL:
        raise CosimError(f"the exact solver and ngspice differ by {rel:.2e} relative (more than {CHECK_RTOL:g}, "
                         f"floor {CHECK_ATOL_A:g} A) at point {chosen[worst // (cfg.vectors * cfg.cols)]}: "
                         f"{got[worst]:.9e} A vs {ref[worst]:.9e} A; the table is not written")
    return record


# ---------------------------------------------------------------------------------------------------
# Samples
# ---------------------------------------------------------------------------------------------------
def _hex(bits: np.ndarray) -> str:
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


def unhex(s: str, rows: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(s), dtype=np.uint8))[:rows]


def load_points(paths: list[Path]):
    """One pandas row per (point, vector, column): masks, counts, SPICE current. Built point by point with
    array operations (every (vector, column) pair of a point at once), the same frame as one record per
    sample would give."""
    import pandas as pd

    cols: dict[str, list] = {k: [] for k in ("point", "vector", "column", "family", "k", "n_leak", "on_hex",
                                             "active_hex", "current_a", "seconds", "ngspice_version", "solver",
                                             "netlist_sha256")}   # the frame's columns, in order
    for p in paths:
        p = Path(p)
        store = ResultStore(p.parent.parent, POINT_LAYOUT, legacy=True)     # points written before it: legacy
        z = store.get(p.parent.name, p.stem.split("_", 1)[-1])
        try:
            if z is None:
                raise ValueError(store.problems.get(p, "missing"))
            x, w, cur, fam = z["inputs"], z["weights"], z["current_a"], z["family"]
            meta = {k: str(z[k]) for k in ("ngspice_version", "solver", "netlist_sha256")}
            secs = float(z["seconds"])
        except (KeyError, ValueError) as e:
            raise TableError(f"calibration point {p} is unreadable ({e}); delete it and rerun") from None
        idx = int(p.stem.split("_")[1])
        K, R = x.shape
        C = w.shape[1]
        on = x[:, None, :] & w.T[None, :, :]                         # (K, C, R): vector v, column c
        leak = x[:, None, :] & (1 - w.T)[None, :, :]
        n = K * C
        cols["point"].append(np.full(n, idx, dtype=np.int64))
        cols["vector"].append(np.repeat(np.arange(K, dtype=np.int64), C))
        cols["column"].append(np.tile(np.arange(C, dtype=np.int64), K))
        cols["family"] += [str(f) for f in fam[:C]] * K
        cols["k"].append(on.sum(axis=2, dtype=np.int64).reshape(n))
        cols["n_leak"].append(leak.sum(axis=2, dtype=np.int64).reshape(n))
        cols["on_hex"].append(np.packbits(on.astype(np.uint8), axis=2).reshape(n, -1))
        cols["active_hex"].append(np.packbits(np.broadcast_to(x[:, None, :], on.shape).astype(np.uint8), axis=2).reshape(n, -1))
        cols["current_a"].append(np.asarray(cur, dtype=np.float64)[:K, :C].reshape(n))
        cols["seconds"].append(np.full(n, secs / n))
        for k, v in meta.items():
            cols[k] += [v] * n
    if not cols["point"]:
        return pd.DataFrame.from_records([])
    frame: dict[str, Any] = {}
    for k, v in cols.items():
        if k in ("on_hex", "active_hex"):
            frame[k] = _hex_rows(np.concatenate(v))
        elif k in ("family", "ngspice_version", "solver", "netlist_sha256"):
            frame[k] = v
        else:
            frame[k] = np.concatenate(v)
    return pd.DataFrame(frame)


def _hex_rows(packed: np.ndarray) -> list[str]:
    """The hex string (``_hex``) of every row of ``packed`` (n, bytes)."""
    width = 2 * packed.shape[1]
    text = np.ascontiguousarray(packed).tobytes().hex()
    return [text[i:i + width] for i in range(0, len(text), width)]


def masks(df, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The ON and active masks (n, rows) uint8 of a ``load_points`` frame."""
    return _unhex_rows(df["on_hex"], rows), _unhex_rows(df["active_hex"], rows)


def _unhex_rows(hexes, rows: int) -> np.ndarray:
    """``unhex`` of every string of ``hexes`` at once (strings of one length; else one by one)."""
    n = len(hexes)
    if not n:
        return np.zeros((0, rows), np.uint8)
    text = "".join(hexes)
    width = len(hexes.iloc[0]) if hasattr(hexes, "iloc") else len(hexes[0])
    if len(text) != n * width or width % 2:
        return np.stack([unhex(s, rows) for s in hexes])
    packed = np.frombuffer(bytes.fromhex(text), dtype=np.uint8).reshape(n, width // 2)
    return np.unpackbits(packed, axis=1)[:, :rows]
