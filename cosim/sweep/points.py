"""Sweeps of SPICE points through an executor and the point cache, with convergence aids.

    from cosim.sweep.points import SpicePoint, run_points
    rep = run_points([SpicePoint(spec, x, w), ...], executor=make_executor(workers=2))
    rep.currents[i]          # (K, C) A of point i, None if it failed
    rep.failed               # {i: reason}, nothing dropped silently
    rep.computed, rep.cached # how many points ran now, how many came from the cache

Every point is looked up in the content-addressed cache (``cosim.sweep.pointcache``) first; only missing
points go to the executor, and each result is stored as soon as it arrives here, so a sweep killed at
any moment resumes with only the missing points. The cache lives with the caller (this process):
workers need no shared file system.

A point that does not converge is retried with ngspice's convergence aids (``AIDS``): gmin and source
stepping with larger iteration limits (the same deck ``cosim.circuit.spice.run_array`` retries with), stronger
stepping, then smaller steps of the ``.dc`` sweep between input vectors (a continuation: the row drivers
ramp from one vector to the next). A point that fails them all is recorded as failed with ngspice's
reasons, in the report and in the cache (so a re-run does not burn time on it again unless
``retry_failed``); other failures (a timeout, a crash) are reported and retried on the next run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import CosimError, InputError, NgspiceError, StorageError
from ..fileio import check_writable, describe_os_error
from .executor import DEFAULT_RETRIES, Executor, make_executor
from ..circuit.netlist import ArraySpec, build_netlist, check_inputs, sense_names
from .pointcache import PointCache, point_key
from ..provenance import sha256_text
from ..circuit.spice import RETRY_OPTIONS, uses_klu


@dataclass(frozen=True)
class Aid:
    name: str
    options: str           # extra .options
    substeps: int = 1      # .dc steps per input vector


#: The convergence ladder, in order. The first two decks are exactly those of ``run_array``.
AIDS: tuple[Aid, ...] = (
    Aid("none", ""),
    Aid("gmin+source stepping", RETRY_OPTIONS),
    Aid("stronger stepping", "gminsteps=1000 srcsteps=1000 itl1=5000 itl2=5000 itl6=5000 itl4=100"),
    Aid("smaller steps", "gminsteps=1000 srcsteps=1000 itl1=5000 itl2=5000 itl6=5000 itl4=100", substeps=8),
)
#: part of every cache key: results of another ladder are other results
LADDER_ID = "aids-v1:" + ";".join(f"{a.options}/{a.substeps}" for a in AIDS)


class NonConvergenceError(NgspiceError):
    """ngspice did not converge with any of the aids; the message lists what each aid got."""


def _substep_deck(deck: str, k: int, sub: int) -> str | None:
    line = f".dc Vsw 0 {k - 1} 1\n"
    if k < 2 or sub <= 1 or line not in deck:
        return None
    return deck.replace(line, f".dc Vsw 0 {k - 1} {1.0 / sub!r}\n")


def _join_options(*parts: str) -> str:
    return " ".join(p.strip() for p in parts if p and p.strip())


def run_robust(spec: ArraySpec, inputs, weights, backend: str = "subprocess", timeout_s: float | None = None,
               aids: Sequence[Aid] = AIDS, options: str = "") -> dict[str, Any]:
    """Column currents of one point, trying the convergence aids in turn. Returns {"current_a" (K, C),
    "ngspice_version", "solver", "netlist_sha256" (of the plain deck), "aid" (the aid that worked),
    "tried" (one line per aid that failed before), "seconds"}. ``options``: extra ``.options`` of the
    point, in every deck (an aid's options follow them, so an aid overrides the same option). Raises
    NonConvergenceError when every aid failed, NgspiceError for other failures."""
    from ..circuit.spice.backends import BACKENDS, NgspiceRunError

    if backend not in BACKENDS:
        raise InputError(f"unknown backend '{backend}': expected one of {', '.join(BACKENDS)}")
    t0 = time.perf_counter()
    x, w = check_inputs(spec, inputs, weights)
    k = x.shape[0]
    klu = uses_klu(backend)
    options = _join_options(options)
    base = build_netlist(spec, x, w, klu=klu, extra_options=options)
    run = BACKENDS[backend]
    tried: list[str] = []
    for aid in aids:
        deck = base if not aid.options else build_netlist(spec, x, w, klu=klu,
                                                          extra_options=_join_options(options, aid.options))
        n = k
        if aid.substeps > 1:
            deck = _substep_deck(deck, k, aid.substeps)
            if deck is None:
                continue
            n = (k - 1) * aid.substeps + 1
        try:
            data, version = run(deck, n, timeout_s)
        except NgspiceRunError as e:
            if not e.convergence:
                raise NgspiceError(f"{spec.describe()}: {e}") from None
            tried.append(f"{aid.name}: {e}")
            continue
        cols = []
        for name in sense_names(spec):
            v = data.get(f"i({name})")
            if v is None:
                raise NgspiceError(f"{spec.describe()}: ngspice returned no current for ammeter {name}")
            cols.append(v[::aid.substeps])
        current = np.stack(cols, axis=1).astype(np.float64)
        if current.shape[0] != k or not np.all(np.isfinite(current)):
            raise NgspiceError(f"{spec.describe()}: ngspice returned non-finite or missing column currents")
        return {"current_a": current, "ngspice_version": str(version), "solver": "klu" if klu else "sparse",
                "netlist_sha256": sha256_text(base), "aid": aid.name, "tried": tried,
                "seconds": time.perf_counter() - t0}
    raise NonConvergenceError(f"{spec.describe()}: did not converge with any convergence aid ("
                              + "; ".join(tried) + ")")


@dataclass(frozen=True)
class SpicePoint:
    """One ngspice run: an array and its K input vectors (K, R) and weights (R, C), all 0/1; ``options``:
    extra ngspice ``.options`` for this point (tolerances, say; part of its netlist, so of its cache key)."""

    spec: ArraySpec
    inputs: np.ndarray
    weights: np.ndarray
    options: str = ""


def point_task(args: tuple[SpicePoint, str, float | None]) -> dict[str, Any]:
    """The worker side of one point: the result dict of ``run_robust``, or {"failed": reason,
    "kind": "nonconvergence", ...} when no aid converged (other errors raise: the executor reports them)."""
    p, backend, timeout_s = args
    try:
        return run_robust(p.spec, p.inputs, p.weights, backend=backend, timeout_s=timeout_s, options=p.options)
    except NonConvergenceError as e:
        return {"failed": str(e), "kind": "nonconvergence"}


def ngspice_probe(backend: str = "subprocess") -> dict[str, Any]:
    """What a worker would run: {"version", "solver"} (part of every cache key). Every worker asked also
    removes the run folders its killed processes left behind (cosim.orphans)."""
    from ..orphans import remove_orphaned_scratch
    from ..circuit.spice.detect import ngspice_info

    remove_orphaned_scratch()

    if backend == "shared":
        from ..circuit.spice.backends import shared_version
        version = shared_version()
    else:
        from ..circuit.spice.detect import require_executable
        version = require_executable()["version"]
    klu = uses_klu(backend)
    info = ngspice_info()
    return {"version": str(version), "solver": "klu" if klu else "sparse", "executable": info.get("executable")}


class _Probe:
    """Picklable zero-argument callable for ``Executor.run_everywhere``."""

    def __init__(self, backend: str) -> None:
        self.backend = backend

    def __call__(self) -> dict[str, Any]:
        return ngspice_probe(self.backend)


@dataclass
class SweepReport:
    currents: list[np.ndarray | None]
    meta: list[dict[str, Any] | None]
    failed: dict[int, str] = field(default_factory=dict)
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0
    executor: str = ""
    corrupt: int = 0           # cache entries found corrupt (recomputed)
    mismatched: int = 0        # points whose worker built another netlist or ran another ngspice than here

    @property
    def n_failed(self) -> int:
        return len(self.failed)

    def summary(self) -> str:
        n = len(self.currents)
        s = (f"{n} points: {self.computed} computed, {self.cached} from the cache, {self.n_failed} failed "
             f"({self.executor}, {self.seconds:.1f} s)")
        if self.mismatched:
            s += (f"; {self.mismatched} points ran on workers with another netlist or ngspice than this machine "
                  "(check that cosim, device models and ngspice are the same everywhere)")
        if self.failed:
            i = min(self.failed)
            s += f"; first failure, point {i}: {self.failed[i]}"
        return s


def run_points(points: Sequence[SpicePoint], *, executor: Executor | None = None,
               cache: PointCache | str | None | bool = None, backend: str = "subprocess",
               spice_timeout_s: float | None = None, task_timeout_s: float | None = None,
               retries: int = DEFAULT_RETRIES, retry_failed: bool = False, progress: bool | str = False,
               on_result: Callable[[int, np.ndarray | None, dict[str, Any]], None] | None = None) -> SweepReport:
    """Run SPICE points through ``executor`` (default: this process) and the point cache (default:
    ``$COSIM_CACHE/spice``; ``False``: none). ``spice_timeout_s`` stops one ngspice run;
    ``task_timeout_s`` resubmits a task that gives no result (hung or dead worker), at most ``retries``
    times. ``on_result(i, current_a or None, meta)`` is called here for every point as it is known
    (cached points first). Failed points are in ``report.failed``; the sweep itself does not raise for them."""
    from ..orphans import remove_orphaned_scratch

    t0 = time.perf_counter()
    remove_orphaned_scratch()   # run folders of earlier sweeps' killed workers
    own = executor is None
    ex = make_executor(1) if executor is None else executor
    store = None if cache is False else (cache if isinstance(cache, PointCache)
                                         else PointCache(None if cache is True else cache))
    n = len(points)
    rep = SweepReport(currents=[None] * n, meta=[None] * n, executor=ex.describe())
    bar = None
    try:
        probes = ex.run_everywhere(_Probe(backend))
        builds = {(p["version"], p["solver"]) for p in probes.values()}
        if len(builds) != 1:
            raise CosimError("workers run different ngspice builds ("
                             + ", ".join(f"{w}: ngspice {p['version']} {p['solver']}" for w, p in sorted(probes.items()))
                             + "); install the same ngspice everywhere")
        version, solver = builds.pop()
        klu = solver == "klu"
        keys: list[str] = []
        todo: list[int] = []
        for i, p in enumerate(points):
            if not isinstance(p, SpicePoint):
                raise InputError(f"point {i} is not a SpicePoint")
            if not isinstance(p.options, str):
                raise InputError(f"point {i}: options must be a string of ngspice .options, got {p.options!r}")
            deck = build_netlist(p.spec, p.inputs, p.weights, klu=klu, extra_options=_join_options(p.options))
            key = point_key(sha256_text(deck), version, solver, backend, LADDER_ID)
            keys.append(key)
            if store is not None:
                hit = store.get(key)
                if hit is not None:
                    rep.currents[i], rep.meta[i] = hit.current_a, {**hit.meta, "cached": True}
                    rep.cached += 1
                    if on_result:
                        on_result(i, hit.current_a, rep.meta[i])  # type: ignore[arg-type]  # set above
                    continue
                fail = store.get_failure(key)
                if fail is not None and fail.get("kind") == "nonconvergence" and not retry_failed:
                    rep.failed[i] = fail["reason"]
                    rep.meta[i] = {**fail, "cached": True}
                    rep.cached += 1
                    if on_result:
                        on_result(i, None, rep.meta[i])  # type: ignore[arg-type]  # set above
                    continue
            todo.append(i)
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=n, initial=n - len(todo), desc=progress if isinstance(progress, str) else "spice",
                       unit="point")
        if store is not None and todo:
            # before any point is computed: a cache that cannot take the results stops the sweep now
            try:
                check_writable(store.root, "the SPICE point cache")
            except StorageError as e:
                raise StorageError(f"{e} (use --no-cache, or --cache-dir DIR / COSIM_CACHE for another cache)"
                                   ) from None
        tasks = [(points[i], backend, spice_timeout_s) for i in todo]
        for r in ex.map(point_task, tasks, timeout_s=task_timeout_s, retries=retries):
            cache_error = None
            i = todo[r.index]
            key = keys[i]
            if r.ok and "failed" not in r.value:
                val = r.value
                meta = {k: v for k, v in val.items() if k != "current_a"} | {"attempts": r.attempts}
                got = point_key(val["netlist_sha256"], val["ngspice_version"], val["solver"], backend, LADDER_ID)
                if got != key:
                    rep.mismatched += 1
                if store is not None:
                    cache_error = _store(store.put, got, val["current_a"], meta)   # under what really ran
                rep.currents[i], rep.meta[i] = val["current_a"], meta | {"cached": False}
                rep.computed += 1
            else:
                reason = r.value["failed"] if r.ok else r.error
                kind = r.value["kind"] if r.ok else "error"
                meta = {"kind": kind, "attempts": r.attempts, "ngspice_version": version, "solver": solver,
                        "spec": p_describe(points[i])}
                if store is not None:
                    cache_error = _store(store.put_failure, key, reason, meta)
                rep.failed[i] = reason  # type: ignore[assignment]  # r.error is a str when not r.ok
                rep.meta[i] = meta | {"reason": reason, "cached": False}
                rep.computed += 1
            if on_result:
                on_result(i, rep.currents[i], rep.meta[i])  # type: ignore[arg-type]  # the caller keeps it even when the cache could not
            if bar:
                bar.update(1)
            if cache_error is not None:
                # stop before computing more: every point so far is in the cache or with the caller
                raise StorageError(f"cannot write the SPICE point cache: {describe_os_error(cache_error)}; "
                                   f"stopped after {rep.computed} computed point(s) (free space, or use --no-cache "
                                   "or another --cache-dir, and rerun)")
    finally:
        if bar:
            bar.close()
        if own:
            ex.close()
    rep.corrupt = store.corrupt if store is not None else 0
    rep.seconds = time.perf_counter() - t0
    return rep


def _store(put: Callable[..., Any], *args: Any) -> OSError | None:
    """``put(*args)`` into the point cache; the OSError when the cache cannot take it (full, read-only)."""
    try:
        put(*args)
    except OSError as e:
        return e
    return None


def p_describe(p: SpicePoint) -> str:
    return f"{p.spec.describe()}, {np.asarray(p.inputs).reshape(-1, p.spec.rows).shape[0]} vectors"
