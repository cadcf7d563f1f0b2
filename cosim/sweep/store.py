"""One store of results: keyed records of arrays and JSON metadata, one file per record, written atomically.

Every result cosim keeps on disk goes through ``ResultStore``: SPICE points of the content-addressed cache
(``cosim.sweep.pointcache``), calibration points of a sweep folder (``cosim.sweep.calibration``), validation
runs (``cosim.surrogate.validate``) and study cells (``cosim.study.runner``). A record is

* ``arrays`` (numpy arrays, 0-d ones for scalars and strings) and ``meta`` (a JSON object): an ``.npz``
  file holding the arrays under their names, ``meta`` as a JSON string and ``digest``, the SHA-256 of
  every array (dtype, shape, bytes; in name order) and of the metadata text;
* or ``meta`` alone: a ``.json`` file, the object with its ``key``.

Where a record lives is given by the layout: a path template per kind (namespace) with the fields
``{kind}`` and ``{key}`` (``{key:.2}``: its first two characters), ending in ``.npz`` or ``.json``::

    ResultStore(root)                                     # {kind}/{key}.npz for every kind
    ResultStore(root, {"point": "{key:.2}/{key}.npz",     # the SPICE point cache
                       "failure": "{key:.2}/{key}.fail.json"})

Writes go to a temporary file in the same folder, flushed to disk and renamed into place
(``cosim.fileio.atomic_path``), so a reader sees either no file or a whole one; a writer killed in between
leaves only a temporary file (``.NAME.*.tmp``), never read back. A record that does not read back, or
whose digest or key does not match (disk trouble, a hand edit), is *corrupt*: it is reported (one
line, logged as a warning and kept in ``corrupt``), treated as missing, and removed where the store was
made with ``remove_corrupt``. A folder that cannot take a record (read-only, full) gives a StorageError
naming the file and the cause. ``legacy=True`` also reads ``.npz`` files written before this store
(arrays only, no ``meta`` or ``digest``: read as they are, with empty metadata and no digest check).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from ..errors import InputError, StorageError
from ..fileio import atomic_path, describe_os_error

TMP_SUFFIX = ".tmp"
DEFAULT_LAYOUT = "{kind}/{key}.npz"
#: names a record's arrays may not take (the file's own entries)
RESERVED = ("meta", "digest")
_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=+-]*")
log = logging.getLogger("cosim.store")


@dataclass
class Record:
    """One stored result: named arrays and a JSON object of metadata."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]


def digest(arrays: Mapping[str, np.ndarray], meta_json: str) -> str:
    """SHA-256 of the arrays (dtype, shape and bytes, in name order) and of the metadata text."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(str(a.dtype).encode() + repr(a.shape).encode())
        h.update(a.tobytes())
    h.update(meta_json.encode())
    return h.hexdigest()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


class ResultStore:
    """Records under ``root`` by kind and key: ``put``/``get``/``has``/``keys``/``delete``."""

    def __init__(self, root: str | Path, layout: str | Mapping[str, str] = DEFAULT_LAYOUT, *,
                 compress: bool = False, remove_corrupt: bool = False, legacy: bool = False,
                 json_default: Any = _json_default) -> None:
        self.root = Path(root).expanduser()
        self.layouts = {"*": layout} if isinstance(layout, str) else dict(layout)
        for t in self.layouts.values():
            if not t.endswith((".npz", ".json")) or "{key" not in t:
                raise InputError(f"a store layout names the key and ends in .npz or .json: {t!r}")
        self.compress = compress
        self.remove_corrupt = remove_corrupt
        self.legacy = legacy
        self.json_default = json_default
        self.corrupt: list[str] = []      # one line per corrupt record found by this instance
        self.problems: dict[Path, str] = {}   # what was wrong with each of them, by path

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    # -- where ---------------------------------------------------------------------------------------
    def layout(self, kind: str) -> str:
        try:
            return self.layouts[kind] if kind in self.layouts else self.layouts["*"]
        except KeyError:
            raise InputError(f"this store keeps no records of kind {kind!r} (kinds: "
                             f"{', '.join(sorted(self.layouts))})") from None

    def path(self, kind: str, key: str) -> Path:
        for what, name in (("kind", kind), ("key", key)):
            if not (isinstance(name, str) and _SAFE.fullmatch(name) and ".." not in name):
                raise InputError(f"not a record {what} (letters, digits, _ . = + -): {name!r}")
        return self.root / self.layout(kind).format(kind=kind, key=key)

    # -- write ---------------------------------------------------------------------------------------
    def put(self, kind: str, key: str, arrays: Mapping[str, Any] | None = None,
            meta: Mapping[str, Any] | None = None) -> Path:
        """Write a record (atomically; it replaces any record of that key). A ``.json`` layout takes
        ``meta`` alone, written with its ``key``. StorageError where the folder cannot take it."""
        path = self.path(kind, key)
        meta = dict(meta or {})
        if path.suffix == ".json":
            if arrays:
                raise InputError(f"records of kind {kind!r} are JSON: they take no arrays")
            data = (json.dumps({**meta, "key": key}, sort_keys=True, indent=1, default=self.json_default)
                    + "\n").encode()
        else:
            arrs = {name: np.asarray(a) for name, a in (arrays or {}).items()}
            clash = sorted(set(arrs) & set(RESERVED))
            if clash:
                raise InputError(f"record arrays may not be named {', '.join(clash)}")
            meta_json = json.dumps(meta, sort_keys=True, default=self.json_default)
            buf = io.BytesIO()
            save = np.savez_compressed if self.compress else np.savez
            entries: dict[str, Any] = {**arrs, "meta": np.array(meta_json), "digest": np.array(digest(arrs, meta_json))}
            save(buf, **entries)
            data = buf.getvalue()
        try:
            with atomic_path(path, suffix=TMP_SUFFIX) as tmp:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
        except StorageError:
            raise
        except OSError as e:
            raise StorageError(describe_os_error(e)) from e
        return path

    # -- read ----------------------------------------------------------------------------------------
    def get(self, kind: str, key: str) -> Record | None:
        """The record, or None: missing, or corrupt (reported; removed with ``remove_corrupt``)."""
        path = self.path(kind, key)
        try:
            return self._read_json(path, key) if path.suffix == ".json" else self._read_npz(path)
        except FileNotFoundError:
            return None
        except Exception as e:  # noqa: BLE001 - anything unreadable is a corrupt record: treated as missing
            self.report_corrupt(path, e)
            return None

    def has(self, kind: str, key: str) -> bool:
        return self.get(kind, key) is not None

    def delete(self, kind: str, key: str) -> None:
        self.path(kind, key).unlink(missing_ok=True)

    def keys(self, kind: str) -> list[str]:
        """Keys of the files of ``kind`` (sorted; not read, so a corrupt one is listed too)."""
        pattern, regex = self._pattern(kind)
        if not self.root.is_dir():
            return []
        out = []
        for p in self.root.glob(pattern):
            m = regex.fullmatch(p.relative_to(self.root).as_posix())
            if m and p.is_file():
                out.append(m.group("key"))
        return sorted(out)

    def _pattern(self, kind: str) -> tuple[str, re.Pattern]:
        glob, regex = [], []
        named = False
        for text, fname, spec, _ in string.Formatter().parse(self.layout(kind)):
            glob.append(text)
            regex.append(re.escape(text))
            if fname == "kind":
                glob.append(kind)
                regex.append(re.escape(kind))
            elif fname == "key":
                glob.append("*")
                if not spec and not named:
                    regex.append(r"(?P<key>[^/]+)")
                    named = True
                else:
                    regex.append(r"[^/]*")
            elif fname is not None:
                raise InputError(f"a store layout has the fields kind and key only: {self.layout(kind)!r}")
        return "".join(glob), re.compile("".join(regex))

    def _read_npz(self, path: Path) -> Record:
        try:
            archive = np.load(path, allow_pickle=False)
        except ValueError:      # numpy's words for a file that is neither .npz nor .npy are about pickles
            raise ValueError("not an npz archive") from None
        with archive as z:
            arrays = {n: np.array(z[n]) for n in z.files if n not in RESERVED}
            if "meta" not in z.files or "digest" not in z.files:
                if self.legacy:
                    return Record(arrays, {})
                raise ValueError("no metadata or digest: not a record of this store")
            meta_json, stored = str(z["meta"]), str(z["digest"])
        if stored != digest(arrays, meta_json):
            raise ValueError("its digest does not match its contents")
        meta = json.loads(meta_json)
        if not isinstance(meta, dict):
            raise ValueError("its metadata is not a JSON object")
        return Record(arrays, meta)

    def _read_json(self, path: Path, key: str) -> Record:
        obj = json.loads(path.read_text())
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        if obj.get("key") != key:
            raise ValueError(f"it holds key {obj.get('key')!r}")
        return Record({}, obj)

    def report_corrupt(self, path: Path, e: BaseException) -> None:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        msg = f"{path}: corrupt result ({why}); treated as missing"
        if self.remove_corrupt:
            try:
                path.unlink()
                msg += ", removed"
            except OSError:
                pass
        self.corrupt.append(msg)
        self.problems[path] = why
        log.warning(msg)

    # -- housekeeping --------------------------------------------------------------------------------
    def temporary_files(self) -> Iterator[Path]:
        """Temporary files of writers (running, or killed before their rename)."""
        if self.root.is_dir():
            yield from (p for p in self.root.rglob(f".*{TMP_SUFFIX}") if p.is_file())
