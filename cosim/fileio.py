"""File writes that fail cleanly.

Atomic file writes: a result file is either complete or absent, never half-written.

    with atomic_path(dest, suffix=".npz") as tmp:
        np.savez_compressed(tmp, ...)

The block writes to a temporary file in ``dest``'s folder (same file system); when it ends without an
error the file gets ordinary permissions (0666 less the umask) and is renamed onto ``dest``; when it
fails the temporary file is removed and the error goes on (an OSError that names no file, as a full
disk's does, is given ``dest``'s name).

``check_writable(folder, what)`` tries a folder before any work is done (read-only, full, a file in the
way): a StorageError naming the folder and the cause, instead of a traceback after the work.
``describe_os_error(e)`` is the one-line form of any OSError: its path and its cause.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import StorageError

#: bytes written by ``check_writable``: a full file system refuses them (an empty file often still fits)
_PROBE_BYTES = 4096


@contextmanager
def atomic_path(dest: str | Path, suffix: str = ".part") -> Iterator[Path]:
    """A temporary path beside ``dest``, renamed onto it when the block succeeds. ``suffix`` must be
    what the writer expects (numpy appends ".npz" to a name without it)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.filename is None and not isinstance(e, StorageError):
            # a write error (a full disk) names no file: name the one that was being written
            raise OSError(e.errno, e.strerror or str(e), str(dest)) from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def describe_os_error(e: OSError) -> str:
    """'PATH: cause' of an OSError in one line (the cause as the system words it: 'Read-only file
    system', 'No space left on device', 'Not a directory', ...)."""
    if isinstance(e, StorageError):
        return str(e)
    cause = os_cause(e)
    where = e.filename if e.filename is not None else None
    if e.filename2 is not None:
        where = f"{e.filename} -> {e.filename2}"
    return f"{where}: {cause}" if where is not None else cause


def os_cause(e: OSError) -> str:
    """The cause of an OSError without its path: 'Read-only file system', 'No space left on device', ..."""
    if isinstance(e, FileExistsError) and e.filename and not Path(e.filename).is_dir():
        return "a file is in the way of a folder"
    return e.strerror or (str(e).strip().splitlines() or [type(e).__name__])[0]


def check_writable(folder: str | Path, what: str) -> Path:
    """Create ``folder`` (and parents) and write a small file there; StorageError 'cannot write WHAT
    FOLDER: cause' when that fails (read-only or full file system, a file in the way). Returns the folder."""
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]   # removed again if the try fails
    try:
        if folder.exists() and not folder.is_dir():
            raise StorageError(f"cannot write {what} {folder}: it is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=".cosim-write-check-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(b"\0" * _PROBE_BYTES)
                f.flush()
                os.fsync(f.fileno())
        finally:
            os.unlink(name)
    except StorageError:
        raise
    except OSError as e:
        for p in created:
            try:
                p.rmdir()
            except OSError:
                break
        raise StorageError(f"cannot write {what} {folder}: {os_cause(e)}") from None
    return folder
