"""Reading ngspice rawfiles (binary or ascii, real data) with numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import NgspiceError


def read_rawfile(path: str | Path) -> list[dict]:
    """The plots of a rawfile: a list of {"title", "plotname", "names", "data"} where ``data`` maps
    each variable name (lower case, e.g. 'i(vm0)', 'v(b0_0)') to a float64 array over the points."""
    try:
        blob = Path(path).read_bytes()
    except OSError as e:
        raise NgspiceError(f"ngspice wrote no rawfile ({e.strerror}: {path})") from None
    plots = []
    pos = 0
    while pos < len(blob):
        header: dict[str, str] = {}
        names: list[str] = []
        binary = None
        while True:
            end = blob.find(b"\n", pos)
            if end < 0:
                raise NgspiceError(f"truncated rawfile header in {path}")
            line = blob[pos:end].decode("latin-1")
            pos = end + 1
            if line.startswith("Variables:"):
                nvars = int(header.get("no. variables", "0"))
                for _ in range(nvars):
                    end = blob.find(b"\n", pos)
                    parts = blob[pos:end].decode("latin-1").split()
                    pos = end + 1
                    if len(parts) < 2:
                        raise NgspiceError(f"corrupt variable list in rawfile {path}")
                    names.append(parts[1].lower())
                continue
            if line.startswith("Binary:"):
                binary = True
                break
            if line.startswith("Values:"):
                binary = False
                break
            key, _, value = line.partition(":")
            header[key.strip().lower()] = value.strip()
        if "complex" in header.get("flags", ""):
            raise NgspiceError(f"complex rawfile data is not supported ({path})")
        nvars, npts = len(names), int(header.get("no. points", "0"))
        if binary:
            nbytes = nvars * npts * 8
            if pos + nbytes > len(blob):
                raise NgspiceError(f"truncated rawfile data in {path}")
            arr = np.frombuffer(blob, dtype="<f8", count=nvars * npts, offset=pos).reshape(npts, nvars)
            pos += nbytes
        else:
            rest = blob[pos:].decode("latin-1").split()
            vals: list[float] = []
            i = 0
            for _ in range(npts):
                i += 1  # point index
                vals.extend(float(v.split(",")[0]) for v in rest[i:i + nvars])
                i += nvars
            arr = np.array(vals, dtype=np.float64).reshape(npts, nvars)
            pos = len(blob)
        plots.append({"title": header.get("title", ""), "plotname": header.get("plotname", ""),
                      "names": names, "data": {n: arr[:, j].copy() for j, n in enumerate(names)}})
    return plots
