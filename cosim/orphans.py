"""No orphans: helper processes end with the process they work for, and scratch folders of processes
that were killed are removed.

- ``die_with_parent()``: (Linux) the calling process gets SIGKILL when its parent dies; ngspice runs
  are started with it (``preexec_fn``), so a worker that is killed takes its ngspice run along.
- ``watch_parent(pid)``: a daemon thread that ends this process when process ``pid`` is gone. Local
  pool workers run it for the cosim process that started them: their parent is multiprocessing's fork
  server, which outlives a ``kill -9`` of cosim, and so would they (with the fork server and the
  resource tracker, which end once the workers have).
- ``scratch_dir(kind)``: a ``tempfile.TemporaryDirectory`` named ``cosim-<kind>-<pid>-...`` in the
  temporary folder; ``remove_orphaned_scratch()`` removes those whose process no longer runs (a
  point's worker killed after a timeout or with cosim), so they do not pile up.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1
#: scratch folders this module names: cosim-<kind>-<pid>-<random>
_SCRATCH = re.compile(r"^cosim-(?P<kind>[a-z-]+?)-(?P<pid>\d+)-[A-Za-z0-9_]+$")
WATCH_INTERVAL_S = 0.5


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux; elsewhere nothing). Safe as
    a ``subprocess`` ``preexec_fn`` (async-signal-safe: one prctl call)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a killed process its parent has not reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def watch_parent(pid: int, interval_s: float = WATCH_INTERVAL_S) -> threading.Thread:
    """Start a daemon thread that ends this process (``os._exit``) once process ``pid`` is gone."""

    def watch() -> None:
        while pid_alive(pid):
            time.sleep(interval_s)
        remove_scratch_of(os.getpid())
        os._exit(70)

    t = threading.Thread(target=watch, name=f"cosim-watch-{pid}", daemon=True)
    t.start()
    return t


def scratch_dir(kind: str) -> tempfile.TemporaryDirectory:
    """A temporary folder ``cosim-<kind>-<pid>-...`` (removed when the block ends, or by
    ``remove_orphaned_scratch`` when this process is killed first)."""
    return tempfile.TemporaryDirectory(prefix=f"cosim-{kind}-{os.getpid()}-")


def remove_scratch_of(pid: int, root: str | Path | None = None) -> None:
    """Remove the ``scratch_dir`` folders of process ``pid`` (a worker about to end itself)."""
    root = Path(root or tempfile.gettempdir())
    for p in root.glob(f"cosim-*-{int(pid)}-*"):
        m = _SCRATCH.match(p.name)
        if m and int(m["pid"]) == pid:
            shutil.rmtree(p, ignore_errors=True)


def remove_orphaned_scratch(root: str | Path | None = None) -> int:
    """Remove the ``scratch_dir`` folders under ``root`` (default: the temporary folder) whose process
    no longer runs and that belong to this user; returns how many were removed."""
    root = Path(root or tempfile.gettempdir())
    removed = 0
    try:
        entries = list(os.scandir(root))
    except OSError:
        return 0
    uid = os.getuid() if hasattr(os, "getuid") else None
    for e in entries:
        m = _SCRATCH.match(e.name)
        if not m or int(m["pid"]) == os.getpid():
            continue
        try:
            if not e.is_dir(follow_symlinks=False) or (uid is not None and e.stat(follow_symlinks=False).st_uid != uid):
                continue
        except OSError:
            continue
        if pid_alive(int(m["pid"])):
            continue
        shutil.rmtree(e.path, ignore_errors=True)
        removed += not os.path.exists(e.path)
    return removed
