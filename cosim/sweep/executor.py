"""One executor for every sweep (calibration, validation, study grid): local processes or a Dask cluster.

    from cosim.sweep.executor import make_executor
    with make_executor(workers=4) as ex:                        # local processes
        for r in ex.map(task, items):                          # results as they finish
            r.index, r.value, r.error, r.attempts
    with make_executor(scheduler="tcp://10.0.0.5:8786") as ex:  # the same tasks on a dask.distributed cluster
        results = list(ex.map(task, items, ordered=True))      # in input order

``scheduler=None`` reads ``COSIM_SCHEDULER``; unset (or empty) means local processes
(``concurrent.futures.ProcessPoolExecutor``; one worker and no timeout runs in this process).

A task is ``fn(item)``; ``fn`` must be importable on the workers (a module-level function of an
installed package). An exception raised by ``fn`` is the task's result (``error``, one line) and is not
retried: it would fail the same way again. Faults of the machinery are retried up to ``retries`` times
on a fresh worker: a worker process that dies (kill -9, out of memory, node lost) and a task that gives
no result within ``timeout_s`` (a hung worker: its process is killed - local pool - or restarted - Dask
worker - and the task resubmitted). The clock of ``timeout_s`` starts when the task is submitted; at most
as many tasks as there are workers are in flight, so it measures the task's own run (plus a worker's
start-up). When retries are exhausted the task's ``error`` says why; nothing is dropped. (A local pool
cannot tell whose worker died: every task in flight when a pool process dies counts an attempt.)

Local pool workers end with the process that started them (``cosim.orphans``). A Dask scheduler that
goes away in the middle of a map is a ``SchedulerLostError`` (one line; the caller says what it kept).
A cluster across machines should speak TLS: ``make_executor(scheduler="tls://...",
security=dask_security(ca_file, cert, key))``.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterable, Iterator

from ..errors import CosimError, InputError

ENV_SCHEDULER = "COSIM_SCHEDULER"
DEFAULT_RETRIES = 2
CONNECT_TIMEOUT_S = 20.0
_POLL_S = 0.5


class SchedulerLostError(CosimError):
    """The dask scheduler went away during a map (killed, its machine or the network down). Results
    already yielded are the caller's; callers add what they kept and that a rerun resumes."""


class _QuietConnectionLoss:
    """A logging filter for dask's client: drops its tracebacks about a lost scheduler connection
    (cosim reports that itself, in one line)."""

    def filter(self, record) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        text = record.getMessage().lower()
        return not (isinstance(exc, (OSError, TimeoutError)) or type(exc).__name__ in ("CommClosedError",
                    "CancelledError", "StreamClosedError") or "reconnect" in text or "connection" in text)


def _requeue_or_give_up(faults, attempts, retries, pending, emit):
    """Resubmit each faulted task that has attempts left; report the others as failed results."""
    for i, why in faults:
        if attempts[i] <= retries:
            pending.append(i)
        else:
            yield from emit.push(TaskResult(i, None, f"gave up after {attempts[i]} attempts: {why}", attempts[i]))


@dataclass
class TaskResult:
    """The outcome of one task: ``value`` when ``error`` is None, else ``error`` (one line)."""

    index: int
    value: Any = None
    error: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


def _call(fn: Callable[[Any], Any], item: Any) -> tuple[bool, Any]:
    """Runs on the worker: (True, value) or (False, one-line reason). Never raises for fn's errors."""
    try:
        return True, fn(item)
    except CosimError as e:
        return False, str(e)
    except Exception as e:  # noqa: BLE001 - the task's own failure is its result
        return False, _one_line(e)


def _one_line(e: BaseException) -> str:
    s = str(e).strip()
    return f"{type(e).__name__}: {s.splitlines()[0]}" if s else type(e).__name__


class _Emitter:
    """Yields results as they finish, or in input order (buffering)."""

    buf: dict[int, TaskResult]

    def __init__(self, ordered: bool) -> None:
        self.ordered, self.buf, self.next = ordered, {}, 0

    def push(self, r: TaskResult) -> list[TaskResult]:
        if not self.ordered:
            return [r]
        self.buf[r.index] = r
        out = []
        while self.next in self.buf:
            out.append(self.buf.pop(self.next))
            self.next += 1
        return out


class Executor:
    """Common interface. ``kind`` is 'local' or 'dask'; ``workers`` the number of tasks run at once."""

    kind = "base"
    workers = 1

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], *, ordered: bool = False,
            timeout_s: float | None = None, retries: int = DEFAULT_RETRIES) -> Generator[TaskResult, None, None]:
        raise NotImplementedError

    def run_everywhere(self, fn: Callable[[], Any]) -> dict[str, Any]:
        """``fn()`` on every worker (where it runs: local -> this process); {worker: value}."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _check_map_args(timeout_s: float | None, retries: int) -> None:
    if timeout_s is not None and not timeout_s > 0:
        raise InputError(f"timeout_s must be positive, got {timeout_s}")
    if retries < 0:
        raise InputError(f"retries must be >= 0, got {retries}")


# ---------------------------------------------------------------------------------------------------
# Local processes
# ---------------------------------------------------------------------------------------------------
def _pool_worker_init(parent_pid: int) -> None:
    """In each local pool worker: end with the cosim process ``parent_pid`` (cosim.orphans)."""
    from ..orphans import watch_parent
    watch_parent(parent_pid)


def _kill_pool(pool) -> None:
    """Kill the pool's worker processes (a hung task cannot be cancelled otherwise) and drop the pool."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        try:
            p.kill()
        except Exception:  # noqa: BLE001 - already gone
            pass
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        try:
            p.join(timeout=5)
        except Exception:  # noqa: BLE001
            pass
    from ..orphans import remove_orphaned_scratch
    remove_orphaned_scratch()   # the killed workers' ngspice run folders


def _mp_context():
    """'forkserver' where there is one (workers forked from a clean server, not from a caller that may
    hold threads: a dask client, torch), else the platform default."""
    import multiprocessing as mp

    return mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else None)


class LocalExecutor(Executor):
    kind = "local"

    def __init__(self, workers: int = 1) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InputError(f"workers must be an integer >= 1, got {workers!r}")
        self.workers = workers

    def describe(self) -> str:
        return f"local, {self.workers} process{'es' if self.workers > 1 else ''}"

    def run_everywhere(self, fn: Callable[[], Any]) -> dict[str, Any]:
        return {"local": fn()}

    def map(self, fn, items, *, ordered=False, timeout_s=None, retries=DEFAULT_RETRIES):
        _check_map_args(timeout_s, retries)
        items = list(items)
        if self.workers == 1 and timeout_s is None:
            return self._inline(fn, items)
        return self._pool(fn, items, ordered, timeout_s, retries)

    @staticmethod
    def _inline(fn, items) -> Iterator[TaskResult]:
        for i, item in enumerate(items):
            ok, val = _call(fn, item)
            yield TaskResult(i, val if ok else None, None if ok else val, 1)

    def _pool(self, fn, items, ordered, timeout_s, retries) -> Iterator[TaskResult]:
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        n = len(items)
        pending = deque(range(n))
        attempts = [0] * n
        inflight: dict[Any, tuple[int, float]] = {}
        emit = _Emitter(ordered)
        pool = None
        try:
            while pending or inflight:
                if pool is None:
                    pool = ProcessPoolExecutor(max_workers=min(self.workers, max(n, 1)), mp_context=_mp_context(),
                                               initializer=_pool_worker_init, initargs=(os.getpid(),))
                while pending and len(inflight) < self.workers:
                    i = pending.popleft()
                    attempts[i] += 1
                    inflight[pool.submit(_call, fn, items[i])] = (i, time.monotonic())
                wait_s = _POLL_S if timeout_s is None else min(_POLL_S, timeout_s)
                done, _ = wait(list(inflight), timeout=wait_s, return_when=FIRST_COMPLETED)
                faults: list[tuple[int, str]] = []
                broken = False
                for f in done:
                    i, _ = inflight.pop(f)
                    try:
                        ok, val = f.result()
                    except BrokenProcessPool:
                        broken = True
                        faults.append((i, "worker process died"))
                        continue
                    except Exception as e:  # noqa: BLE001 - e.g. fn or item cannot be pickled
                        for r in emit.push(TaskResult(i, None, _one_line(e), attempts[i])):
                            yield r
                        continue
                    for r in emit.push(TaskResult(i, val if ok else None, None if ok else val, attempts[i])):
                        yield r
                if timeout_s is not None:
                    now = time.monotonic()
                    for f, (i, t0) in list(inflight.items()):
                        if now - t0 > timeout_s and not f.done():
                            del inflight[f]
                            faults.append((i, f"no result within {timeout_s:g} s (worker hung or too slow)"))
                            broken = True
                if broken:
                    _kill_pool(pool)
                    pool = None
                    # tasks that were merely sharing the pool go back first, without counting an attempt
                    for f, (i, _) in sorted(inflight.items(), key=lambda kv: -kv[1][0]):
                        attempts[i] -= 1
                        pending.appendleft(i)
                    inflight.clear()
                yield from _requeue_or_give_up(faults, attempts, retries, pending, emit)
        finally:
            if pool is not None:
                if inflight:
                    _kill_pool(pool)
                else:
                    pool.shutdown(wait=True)


# ---------------------------------------------------------------------------------------------------
# Dask
# ---------------------------------------------------------------------------------------------------
class DaskExecutor(Executor):
    """Tasks on a dask.distributed cluster at ``address`` (``tcp://HOST:PORT``, or ``tls://HOST:PORT`` with
    ``security``, a ``distributed.security.Security``: ``dask_security``). ``workers`` caps the tasks in
    flight (default: the cluster's threads, re-read as workers come and go). A scheduler that goes away
    during ``map`` (after the client's ``connect_timeout_s`` of reconnecting) raises SchedulerLostError."""

    kind = "dask"

    def __init__(self, address: str, workers: int | None = None, connect_timeout_s: float | None = None,
                 security: Any = None) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise CosimError("a scheduler was given but dask.distributed is not installed (pip install distributed)") from None
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise InputError(f"workers must be an integer >= 1, got {workers!r}")
        # also how long the client tries to reconnect to a scheduler that went away before giving up
        connect_timeout_s = CONNECT_TIMEOUT_S if connect_timeout_s is None else connect_timeout_s
        self.address = address
        self._cap = workers
        self._quiet = _QuietConnectionLoss()
        logging.getLogger("distributed.client").addFilter(self._quiet)
        try:
            self.client = Client(address, timeout=connect_timeout_s, set_as_default=False, security=security)
        except (OSError, TimeoutError) as e:
            logging.getLogger("distributed.client").removeFilter(self._quiet)
            raise CosimError(f"cannot reach the dask scheduler at {address}: {_one_line(e)}") from None
        try:
            self.client.wait_for_workers(1, timeout=connect_timeout_s)
        except (OSError, TimeoutError):
            self.close()
            raise CosimError(f"the dask scheduler at {address} has no workers (start some with: dask worker {address})") from None

    def _threads(self) -> int:
        try:
            return max(1, sum(self.client.nthreads().values()))
        except Exception:  # noqa: BLE001 - scheduler busy: assume one
            return 1

    @property
    def workers(self) -> int:  # type: ignore[override]
        return self._cap or self._threads()

    def describe(self) -> str:
        return f"dask at {self.address}, {self._threads()} worker threads"

    def run_everywhere(self, fn: Callable[[], Any]) -> dict[str, Any]:
        return dict(self.client.run(fn))

    def _restart_worker_of(self, key: str) -> None:
        try:
            for w, keys in self.client.processing().items():
                if key in keys:
                    self.client.restart_workers([w], raise_for_error=False)
        except Exception:  # noqa: BLE001 - worker already gone: the scheduler reschedules anyway
            pass

    def map(self, fn, items, *, ordered=False, timeout_s=None, retries=DEFAULT_RETRIES):
        _check_map_args(timeout_s, retries)
        return self._map(fn, list(items), ordered, timeout_s, retries)

    def _map(self, fn, items, ordered, timeout_s, retries) -> Iterator[TaskResult]:
        n = len(items)
        run_id = uuid.uuid4().hex[:12]
        pending = deque(range(n))
        attempts = [0] * n
        inflight: dict[Any, tuple[int, float]] = {}
        emit = _Emitter(ordered)
        try:
            yield from self._loop(fn, items, timeout_s, retries, run_id, pending, attempts, inflight, emit)
        except CosimError:
            raise
        except Exception as e:  # noqa: BLE001 - with the scheduler gone, one line; else the error itself
            if self._scheduler_alive():
                raise
            raise SchedulerLostError(f"lost the dask scheduler at {self.address} ({_lost_reason(e)})") from None
        finally:
            if inflight:
                try:
                    self.client.cancel(list(inflight))
                except Exception:  # noqa: BLE001 - the scheduler is gone: nothing to cancel
                    pass

    def _scheduler_alive(self) -> bool:
        try:
            return self.client.status == "running" and not self.client.scheduler_comm.comm.closed()
        except Exception:  # noqa: BLE001
            return False

    def _loop(self, fn, items, timeout_s, retries, run_id, pending, attempts, inflight, emit):
        """The submit / wait / resubmit loop of ``_map`` (which turns a lost scheduler into one error)."""
        from distributed import wait

        while pending or inflight:
            cap = self.workers
            while pending and len(inflight) < cap:
                i = pending.popleft()
                attempts[i] += 1
                f = self.client.submit(_call, fn, items[i], key=f"cosim-{run_id}-{i}-{attempts[i]}", pure=False,
                                       retries=0)
                inflight[f] = (i, time.monotonic())
            wait_s = _POLL_S if timeout_s is None else min(_POLL_S, timeout_s)
            try:
                with self.client.as_current():
                    done = wait(list(inflight), timeout=wait_s, return_when="FIRST_COMPLETED").done
            except TimeoutError:
                done = set()
            faults: list[tuple[int, str]] = []
            for f in done:
                if f not in inflight:
                    continue
                i, _ = inflight.pop(f)
                if f.status == "finished":
                    try:
                        ok, val = f.result()
                    except Exception as e:  # noqa: BLE001 - result lost with its worker
                        faults.append((i, _one_line(e)))
                        continue
                    for r in emit.push(TaskResult(i, val if ok else None, None if ok else val, attempts[i])):
                        yield r
                else:  # 'error' (KilledWorker: the worker died with it too often, lost data) or 'cancelled'
                    try:
                        why = _one_line(f.exception()) if f.status == "error" else f"task {f.status}"
                    except Exception as e:  # noqa: BLE001
                        why = _one_line(e)
                    faults.append((i, why))
                f.release()
            if timeout_s is not None:
                now = time.monotonic()
                for f, (i, t0) in list(inflight.items()):
                    if now - t0 > timeout_s and not f.done():
                        del inflight[f]
                        self._restart_worker_of(f.key)
                        f.cancel()
                        faults.append((i, f"no result within {timeout_s:g} s (worker hung or too slow)"))
            yield from _requeue_or_give_up(faults, attempts, retries, pending, emit)

    def close(self) -> None:
        try:
            self.client.close(timeout=5 if self._scheduler_alive() else 1)
        except Exception:  # noqa: BLE001
            pass
        logging.getLogger("distributed.client").removeFilter(self._quiet)


def _lost_reason(e: BaseException) -> str:
    text = str(e)
    if "scheduler-connection-lost" in text or type(e).__name__ == "FuturesCancelledError":
        return "connection lost"
    return _one_line(e)


def dask_security(ca_file: str | None = None, cert: str | None = None, key: str | None = None):
    """The ``distributed.security.Security`` of a TLS cluster from PEM files: the certificate authority
    that signed the scheduler's and workers' certificates, and this client's certificate and key (all
    three, or none: then None, and a ``tls://`` scheduler takes dask's own configuration,
    ``distributed.comm.tls.*``). Encryption is then required: no plain tcp:// connection is made."""
    given = {"--tls-ca-file": ca_file, "--tls-cert": cert, "--tls-key": key}
    if not any(given.values()):
        return None
    missing = [k for k, v in given.items() if not v]
    if missing:
        raise InputError(f"TLS needs all three of --tls-ca-file, --tls-cert and --tls-key; missing {', '.join(missing)}")
    for opt, path in given.items():
        if not path or not os.path.isfile(path):
            raise InputError(f"{opt}: no such file: {path}")
    from distributed.security import Security
    return Security(tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key, require_encryption=True)


def make_executor(workers: int | None = None, scheduler: str | None = None, security: Any = None) -> Executor:
    """Local processes (``workers``, default 1) or, when ``scheduler`` (or ``COSIM_SCHEDULER``) names a
    dask scheduler (``tcp://HOST:PORT``, ``tls://HOST:PORT``), that cluster (``workers`` then caps the tasks
    in flight). ``security``: a ``distributed.security.Security`` (``dask_security``) for a TLS cluster."""
    address = scheduler if scheduler is not None else os.environ.get(ENV_SCHEDULER, "")
    address = address.strip()
    if address:
        if "://" not in address:
            raise InputError(f"scheduler address must look like tcp://HOST:PORT or tls://HOST:PORT, got '{address}'")
        if security is not None and not address.startswith("tls://"):
            raise InputError(f"TLS certificates were given, but the scheduler address {address} is not tls://")
        if security is None and address.startswith("tls://"):
            import dask
            if not dask.config.get("distributed.comm.tls.ca-file", None):
                raise InputError(f"the scheduler {address} speaks TLS: give --tls-ca-file, --tls-cert and --tls-key "
                                 "(or COSIM_TLS_CA_FILE, COSIM_TLS_CERT and COSIM_TLS_KEY)")
        return DaskExecutor(address, workers, security=security)
    return LocalExecutor(1 if workers is None else workers)
