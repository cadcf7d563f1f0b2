"""A content-addressed store of SPICE points: one file per point, written atomically.

A point's key is the SHA-256 of everything that determines its result: the netlist text (by its
SHA-256; the deck inlines the device models and carries ``.options``), the ngspice version, the
solver, the backend and any extra options (``point_key``). So a re-run of a sweep recomputes nothing,
a sweep killed at any moment resumes with only the missing points, and a change of netlist, ngspice
or options never reuses a stale result.

Layout under ``root`` (default ``cosim.paths.cache_dir() / "spice"``, i.e. ``$COSIM_CACHE/spice``)::

    ab/abcdef....npz         a result: column currents (K, C) and its metadata, with a digest
    ab/abcdef....fail.json   a point that failed, with its reason (kept so nothing is lost silently)

Writes go to a temporary file in the same folder and are renamed into place (``os.replace``), so a
reader sees either no file or a whole one. A file that does not read back or whose digest does not
match (disk trouble, someone editing it) is treated as missing, and removed.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import InputError
from ..fileio import atomic_path

SCHEMA = 1
_TMP_SUFFIX = ".tmp"
#: temporary files older than this are leftovers of killed writers (prune removes them)
STALE_TMP_S = 3600.0


def point_key(netlist_sha256: str, ngspice_version: str, solver: str, backend: str, options: str = "") -> str:
    """The cache key of a SPICE point (hex SHA-256)."""
    blob = json.dumps({"schema": SCHEMA, "netlist_sha256": netlist_sha256, "ngspice_version": str(ngspice_version),
                       "solver": solver, "backend": backend, "options": options}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _digest(current: np.ndarray, meta_json: str) -> str:
    h = hashlib.sha256()
    h.update(str(current.dtype).encode() + repr(current.shape).encode())
    h.update(np.ascontiguousarray(current).tobytes())
    h.update(meta_json.encode())
    return h.hexdigest()


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
        self.corrupt = 0            # entries found corrupt (and removed) by this instance

    def __repr__(self) -> str:
        return f"PointCache({str(self.root)!r})"

    # -- paths -------------------------------------------------------------------------------------
    def _check_key(self, key: str) -> str:
        if not (isinstance(key, str) and len(key) == 64 and all(c in "0123456789abcdef" for c in key)):
            raise InputError(f"not a point key (64 hex digits): {key!r}")
        return key

    def path(self, key: str) -> Path:
        self._check_key(key)
        return self.root / key[:2] / f"{key}.npz"

    def failure_path(self, key: str) -> Path:
        self._check_key(key)
        return self.root / key[:2] / f"{key}.fail.json"

    def _write_atomic(self, path: Path, data: bytes) -> None:
        with atomic_path(path, suffix=_TMP_SUFFIX) as tmp:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())

    # -- results -----------------------------------------------------------------------------------
    def put(self, key: str, current_a: np.ndarray, meta: dict[str, Any]) -> Path:
        cur = np.ascontiguousarray(np.asarray(current_a, dtype=np.float64))
        meta = {**meta, "key": key, "date_utc": meta.get("date_utc") or _now_iso()}
        meta_json = json.dumps(meta, sort_keys=True, default=str)
        buf = io.BytesIO()
        np.savez(buf, current_a=cur, meta=np.array(meta_json), digest=np.array(_digest(cur, meta_json)))
        path = self.path(key)
        self._write_atomic(path, buf.getvalue())
        self.clear_failure(key)
        return path

    def _read(self, path: Path) -> CachedPoint | None:
        try:
            with np.load(path, allow_pickle=False) as z:
                cur = np.array(z["current_a"])
                meta_json = str(z["meta"])
                digest = str(z["digest"])
            if digest != _digest(cur, meta_json):
                raise ValueError("digest mismatch")
            return CachedPoint(cur, json.loads(meta_json))
        except FileNotFoundError:
            return None
        except Exception:  # noqa: BLE001 - anything unreadable is a corrupt entry: treated as missing
            self._discard_corrupt(path)
            return None

    def _discard_corrupt(self, path: Path) -> None:
        """Count and remove an unreadable entry; the caller treats it as missing."""
        self.corrupt += 1
        try:
            path.unlink()
        except OSError:
            pass
        return None

    def get(self, key: str) -> CachedPoint | None:
        """The stored result, or None (missing or corrupt; a corrupt file is removed)."""
        return self._read(self.path(key))

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    # -- failures ----------------------------------------------------------------------------------
    def put_failure(self, key: str, reason: str, meta: dict[str, Any] | None = None) -> Path:
        rec = {**(meta or {}), "key": key, "reason": reason, "date_utc": _now_iso()}
        path = self.failure_path(key)
        self._write_atomic(path, (json.dumps(rec, sort_keys=True, default=str) + "\n").encode())
        return path

    def get_failure(self, key: str) -> dict[str, Any] | None:
        path = self.failure_path(key)
        try:
            rec = json.loads(path.read_text())
            if not isinstance(rec, dict) or "reason" not in rec:
                raise ValueError("no reason")
            return rec
        except FileNotFoundError:
            return None
        except Exception:  # noqa: BLE001 - corrupt failure record: as if none
            self._discard_corrupt(path)
            return None

    def clear_failure(self, key: str) -> None:
        try:
            self.failure_path(key).unlink()
        except FileNotFoundError:
            pass

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
