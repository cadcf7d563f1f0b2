"""Small C shared libraries built on first use: the compiled device models (cosim.circuit.devices) and the
surrogate's kernel (cosim.surrogate.kernel). One compiler lookup, one atomic build."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence


def c_compiler() -> str | None:
    """$CC, else cc, gcc or clang on PATH; None when there is none."""
    return os.environ.get("CC") or next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)


def build_shared(source: str | Path, target: Path, flags: Sequence[str] = ("-O2",),
                 optional_flags: Sequence[str] = ()) -> Path:
    """Compile C ``source`` (a file, or the program text as a str) into the shared library ``target``
    unless it exists. ``optional_flags`` (say -march=native) are dropped when the compiler rejects them.
    The library is written beside ``target`` and renamed into place, so concurrent builders are safe and
    a half-written library is never loaded. Raises OSError with the compiler's first message."""
    target = Path(target)
    if target.exists():
        return target
    cc = c_compiler()
    if cc is None:
        raise OSError("no C compiler (install gcc, or set CC)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cosim-build-", dir=target.parent) as tmp:
        if isinstance(source, Path):
            src = source
        else:
            src = Path(tmp) / "source.c"
            src.write_text(source)
        out = Path(tmp) / target.name
        base = ["-shared", "-fPIC", *flags]
        for extra in ([*optional_flags], []) if optional_flags else ([],):
            try:
                proc = subprocess.run([cc, *base, *extra, "-o", str(out), str(src), "-lm"],
                                      capture_output=True, text=True, timeout=300)
            except (OSError, subprocess.SubprocessError) as e:
                raise OSError(f"cannot run the C compiler {cc}: {e}") from None
            if proc.returncode == 0 and out.exists():
                os.replace(out, target)
                return target
        first = (proc.stderr.strip().splitlines() or ["no output"])[0]
        raise OSError(f"{cc} failed: {first[:300]}")
