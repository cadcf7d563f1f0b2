"""Atomic file writes: a result file is either complete or absent, never half-written.

    with atomic_path(dest, suffix=".npz") as tmp:
        np.savez_compressed(tmp, ...)

The block writes to a temporary file in ``dest``'s folder (same file system); when it ends without an
error the file gets ordinary permissions (0666 less the umask) and is renamed onto ``dest``; when it
fails the temporary file is removed and the error goes on.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


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
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
