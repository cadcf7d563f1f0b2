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


def layout_mismatch(lib, symbol: str, struct: type, fields: Sequence[str] = ()) -> str | None:
    """Compare the layout of a ctypes ``struct`` with the C struct it mirrors, as the library reports it
    through ``int64_t symbol(int64_t *out, int64_t n)`` (its size, then the offsets of ``fields``, in
    this order; the function returns how many values it has). None when they agree, else one line that
    says what differs (a library without the function differs too)."""
    import ctypes

    name = getattr(struct, "__name__", "struct")
    try:
        fn = getattr(lib, symbol)
    except AttributeError:
        return f"the library has no {symbol}(): the layout of {name} cannot be checked"
    fn.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.c_int64]
    fn.restype = ctypes.c_int64
    missing = [f for f in fields if not hasattr(struct, f)]
    if missing:
        return f"{name} has no field {missing[0]}"
    want = [ctypes.sizeof(struct)] + [getattr(struct, f).offset for f in fields]
    got = (ctypes.c_int64 * len(want))()
    n = int(fn(got, len(want)))
    if n != len(want):
        return f"{symbol}() reports {n} layout values of {name}, the Python side expects {len(want)}"
    for what, c, py in zip(["size"] + [f"offset of {f}" for f in fields], got, want):
        if c != py:
            return f"{name}: the C {what} is {c} bytes, the ctypes {what} {py} bytes"
    return None
