"""A content-addressed store of SPICE points: one file per point, written atomically.

A point's key is the SHA-256 of everything that determines its result: the netlist text (by its
SHA-256; the deck inlines the device models and carries ``.options``), the ngspice version, the
solver, the backend and any extra options (``point_key``). So a re-run of a sweep recomputes nothing,
a sweep killed at any moment resumes with only the missing points, and a change of netlist, ngspice
or options never reuses a stale result.

Layout under ``root`` (default ``cosim.paths.cache_dir() / "spice"``, i.e. ``$COSIM_CACHE/spice``)::

    ab/abcdef....npz         a result: column currents (K, C) and its metadata, with a digest
    ab/abcdef....fail.json   a point that failed, with its reason (kept so nothing is lost silently)

The files are records of the one result store (``cosim.sweep.store``): writes go to a temporary file in
the same folder and are renamed into place (``os.replace``), so a reader sees either no file or a whole
one. A file that does not read back or whose digest does not match (disk trouble, someone editing it)
is reported, treated as missing, and removed.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import InputError
from .store import TMP_SUFFIX as _TMP_SUFFIX, ResultStore

SCHEMA = 1
#: where the store (``cosim.sweep.store``) keeps the two kinds of record
LAYOUT = {"point": "{key:.2}/{key}.npz", "failure": "{key:.2}/{key}.fail.json"}
#: temporary files older than this are leftovers of killed writers (prune removes them)
STALE_TMP_S = 3600.0


def point_key(netlist_sha256: str, ngspice_version: str, solver: str, backend: str, options: str = "") -> str:
    """The cache key of a SPICE point (hex SHA-256)."""
    blob = json.dumps({"schema": SCHEMA, "netlist_sha256": netlist_sha256, "ngspice_version": str(ngspice_version),
                       "solver": solver, "backend": backend, "options": options}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class CachedPoint:
    current_a: np.ndarray        # (K, C) A
    meta: dict[str, Any]         # ngspice_version, solver, netlist_sha256, seconds, aid, date_utc, ...


class PointCache:
    """The store. ``get``/``put`` results, ``get_failure``/``put_failure`` failed points."""

    def __init__(self, root: str | Path | None = None) -> None:
        if root is None:
            from ..paths import cache_dir
            root = cache_dir() / "spice"
        self.root = Path(root).expanduser()
        self.store = ResultStore(self.root, LAYOUT, remove_corrupt=True)

    @property
    def corrupt(self) -> int:
        """Entries found corrupt (and removed) by this instance."""
        return len(self.store.corrupt)

    def __repr__(self) -> str:
        return f"PointCache({str(self.root)!r})"

    # -- paths -------------------------------------------------------------------------------------
    def _check_key(self, key: str) -> str:
        if not (isinstance(key, str) and len(key) == 64 and all(c in "0123456789abcdef" for c in key)):
            raise InputError(f"not a point key (64 hex digits): {key!r}")
        return key

    def path(self, key: str) -> Path:
        return self.store.path("point", self._check_key(key))

    def failure_path(self, key: str) -> Path:
        return self.store.path("failure", self._check_key(key))

    # -- results -----------------------------------------------------------------------------------
    def put(self, key: str, current_a: np.ndarray, meta: dict[str, Any]) -> Path:
        cur = np.ascontiguousarray(np.asarray(current_a, dtype=np.float64))
        meta = {**meta, "key": key, "date_utc": meta.get("date_utc") or _now_iso()}
        path = self.store.put("point", self._check_key(key), {"current_a": cur}, meta)
        self.clear_failure(key)
        return path

    def get(self, key: str) -> CachedPoint | None:
        """The stored result, or None (missing or corrupt; a corrupt file is removed)."""
        rec = self.store.get("point", self._check_key(key))
        if rec is None:
            return None
        if "current_a" not in rec.arrays:
            self.store.report_corrupt(self.path(key), ValueError("no current_a"))
            return None
        return CachedPoint(rec.arrays["current_a"], rec.meta)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    # -- failures ----------------------------------------------------------------------------------
    def put_failure(self, key: str, reason: str, meta: dict[str, Any] | None = None) -> Path:
        rec = {**(meta or {}), "key": key, "reason": reason, "date_utc": _now_iso()}
        return self.store.put("failure", self._check_key(key), meta=rec)

    def get_failure(self, key: str) -> dict[str, Any] | None:
        rec = self.store.get("failure", self._check_key(key))
        if rec is None:
            return None
        if "reason" not in rec.meta:          # corrupt failure record: as if none
            self.store.report_corrupt(self.failure_path(key), ValueError("no reason"))
            return None
        return rec.meta

    def clear_failure(self, key: str) -> None:
        self.store.delete("failure", self._check_key(key))

    # -- housekeeping ------------------------------------------------------------------------------
    def _files(self) -> Iterator[tuple[str, Path]]:
        """(kind, path) of every file: 'point', 'failure', 'tmp' or 'other'."""
        if not self.root.is_dir():
            return
        for sub in sorted(self.root.iterdir()):
            if not sub.is_dir():
                continue
            for p in sorted(sub.iterdir()):
                n = p.name
                if n.endswith(_TMP_SUFFIX):
                    yield "tmp", p
                elif n.endswith(".fail.json"):
                    yield "failure", p
                elif n.endswith(".npz") and len(n) == 68:
                    yield "point", p
                else:
                    yield "other", p

    def failures(self) -> list[dict[str, Any]]:
        out = []
        for kind, p in self._files():
            if kind == "failure":
                rec = self.get_failure(p.name[:64])
                if rec is not None:
                    out.append(rec)
        return out

    def info(self) -> dict[str, Any]:
        """Entries, failed points, bytes, leftover temporary files, oldest/newest entry (UTC)."""
        counts = {"point": 0, "failure": 0, "tmp": 0, "other": 0}
        size = 0
        mtimes = []
        for kind, p in self._files():
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            counts[kind] += 1
            size += st.st_size
            if kind == "point":
                mtimes.append(st.st_mtime)

        def iso(t):
            return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="seconds") if t else None

        return {"root": str(self.root), "entries": counts["point"], "failed": counts["failure"],
                "tmp_files": counts["tmp"], "other_files": counts["other"], "bytes": size,
                "oldest_utc": iso(min(mtimes)) if mtimes else None, "newest_utc": iso(max(mtimes)) if mtimes else None}

    def prune(self, older_than_s: float | None = None, failed_only: bool = False, dry_run: bool = False
              ) -> dict[str, Any]:
        """Remove entries last written more than ``older_than_s`` ago (None: all), or only failure
        records (``failed_only``); leftover temporary files older than an hour always go. Returns
        {"removed", "bytes", "dry_run"}."""
        if older_than_s is not None and older_than_s < 0:
            raise InputError(f"age must be >= 0 s, got {older_than_s}")
        now = time.time()
        removed = size = 0
        for kind, p in self._files():
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            age = now - st.st_mtime
            if kind == "tmp":
                take = age > STALE_TMP_S      # a fresh one may belong to a running writer
            elif kind == "other":
                take = False
            elif failed_only and kind != "failure":
                take = False
            else:
                take = older_than_s is None or age > older_than_s
            if not take:
                continue
            removed += 1
            size += st.st_size
            if not dry_run:
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
        if not dry_run and self.root.is_dir():
            for sub in self.root.iterdir():
                if sub.is_dir():
                    try:
                        sub.rmdir()
                    except OSError:
                        pass
        return {"removed": removed, "bytes": size, "dry_run": dry_run}
