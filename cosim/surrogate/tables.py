"""SPICE-calibrated lookup tables: named numpy arrays plus the provenance that made them, in Parquet.

A table is what ``cosim calibrate`` fits and what the surrogate (``cosim.surrogate.evaluate``) replays. It holds

- ``arrays``: named float64 arrays (the fitted model; see ``cosim.surrogate.model`` for their meaning);
- ``meta``: how to read the arrays (model name, number of moments, feature list, format version);
- ``provenance``: technology parameters, array size, topology, ngspice version, solver, netlist hash,
  code version, seed, date (``cosim.provenance.record``).

On disk a table is ONE Parquet file written through pandas/pyarrow: a long-format frame
(``array``, ``i``, ``j``, ``value``) whose schema metadata (key ``cosim_table``) holds meta, provenance,
array shapes and a SHA-256 of every array's values. Loading checks all of it: a corrupt or truncated
file, a missing array or a checksum mismatch is a ``TableError``, never garbage.

    >>> table = load_table(default_table_path("sram8t", 128))          # doctest: +SKIP  (cosim.surrogate.registry)
    >>> table.check(tech=get_technology("sram8t"), rows=128)            # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, TableError
from ..fileio import atomic_path
from ..provenance import json_default
from ..circuit.technology import Technology
# naming and finding tables is the registry's (cosim.surrogate.registry); these names stay importable here
from .registry import default_table_path, table_filename, tables_dir  # noqa: F401

FORMAT = "cosim-lookup-table"
FORMAT_VERSION = 1
METADATA_KEY = b"cosim_table"


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype="<f8").tobytes()).hexdigest()


@dataclass
class LookupTable:
    """Fitted arrays + how to read them + where they came from."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)

    # ---- convenient views of the provenance -------------------------------------------------------
    @property
    def rows(self) -> int:
        return int(self.provenance["rows"])

    @property
    def cols(self) -> int:
        return int(self.provenance["cols"])

    @property
    def topology(self) -> str:
        return str(self.provenance["topology"])

    @property
    def tech_name(self) -> str:
        return str(self.provenance["technology"])

    def technology(self) -> Technology:
        """The Technology the table was calibrated for (rebuilt from the stored parameters)."""
        params = self.provenance.get("technology_params")
        if not isinstance(params, dict):
            raise TableError("table provenance has no technology parameters")
        try:
            return Technology(**params)
        except (TypeError, InputError) as e:
            raise TableError(f"table provenance holds invalid technology parameters: {e}") from None

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.arrays[name]
        except KeyError:
            raise TableError(f"table has no array '{name}' (has: {', '.join(sorted(self.arrays))})") from None

    # ---- validation -------------------------------------------------------------------------------
    def check(self, tech: Technology | None = None, rows: int | None = None, cols: int | None = None,
              topology: str | None = None) -> "LookupTable":
        """Raise TableError unless the table was calibrated for this technology, size and topology.

        ``cols`` only matters for the coupled topology (decoupled columns are independent)."""
        where = self.provenance.get("source_path", "table")
        if topology is not None and topology != self.topology:
            raise TableError(f"{where}: calibrated for topology '{self.topology}', asked for '{topology}'")
        if rows is not None and int(rows) != self.rows:
            raise TableError(f"{where}: calibrated for {self.rows} rows, asked for {rows}")
        if cols is not None and self.topology == "coupled" and int(cols) != self.cols:
            raise TableError(f"{where}: coupled table calibrated for {self.cols} columns, asked for {cols}")
        if tech is not None:
            mine = self.technology().as_dict()
            theirs = tech.as_dict()
            diff = [k for k in sorted(set(mine) | set(theirs))
                    if k != "topology" and not _same(mine.get(k), theirs.get(k))]
            if diff:
                shown = ", ".join(f"{k}={mine.get(k)!r} (asked {theirs.get(k)!r})" for k in diff[:4])
                more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
                raise TableError(f"{where}: calibrated for technology '{self.tech_name}' with {shown}{more}")
        return self

    # ---- disk -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the table as one Parquet file (atomically: a temporary file renamed into place)."""
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        frames, shapes, sums = [], {}, {}
        for name, a in sorted(self.arrays.items()):
            a = np.asarray(a, dtype=np.float64)
            if a.ndim not in (1, 2):
                raise TableError(f"array '{name}' must be 1-D or 2-D, got shape {a.shape}")
            if not np.all(np.isfinite(a)):
                raise TableError(f"array '{name}' holds non-finite values; refusing to write it")
            a2 = a.reshape(a.shape[0], -1)
            ii, jj = np.meshgrid(np.arange(a2.shape[0]), np.arange(a2.shape[1]), indexing="ij")
            frames.append(pd.DataFrame({"array": name, "i": ii.ravel().astype(np.int32),
                                        "j": jj.ravel().astype(np.int32), "value": a2.ravel()}))
            shapes[name] = list(a.shape)
            sums[name] = _sha(a)
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
            {"array": [], "i": [], "j": [], "value": []})
        header = {"format": FORMAT, "format_version": FORMAT_VERSION, "meta": self.meta,
                  "provenance": {k: v for k, v in self.provenance.items() if k != "source_path"},
                  "shapes": shapes, "sha256": sums}
        tbl = pa.Table.from_pandas(df, preserve_index=False)
        md = dict(tbl.schema.metadata or {})
        md[METADATA_KEY] = json.dumps(header, sort_keys=True, default=json_default).encode()
        tbl = tbl.replace_schema_metadata(md)
        with atomic_path(path) as tmp:
            pq.write_table(tbl, tmp, compression="zstd", write_page_checksum=True)
        return path


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
        except (TypeError, ValueError):
            return False
    return a == b


def load_table(path: str | Path, tech: Technology | None = None, rows: int | None = None,
               cols: int | None = None, topology: str | None = None) -> LookupTable:
    """Read a table written by ``LookupTable.save``; optionally check it (see ``LookupTable.check``).

    Any problem with the file (missing, not Parquet, truncated, corrupt, checksum mismatch, wrong
    format) raises TableError with a one-line message."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise TableError(f"lookup table {path} does not exist (make one with 'cosim calibrate')")
    try:
        tbl = pq.read_table(path, page_checksum_verification=True)
    except (pa.ArrowException, OSError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TableError(f"lookup table {path} is corrupt or truncated: {msg}") from None
    raw = (tbl.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise TableError(f"{path} is not a cosim lookup table (no '{METADATA_KEY.decode()}' metadata)")
    try:
        header = json.loads(raw.decode())
        if header.get("format") != FORMAT:
            raise ValueError(f"format is {header.get('format')!r}")
        if int(header.get("format_version", -1)) != FORMAT_VERSION:
            raise ValueError(f"format version {header.get('format_version')!r}, this cosim reads {FORMAT_VERSION}")
        shapes: dict[str, list[int]] = header["shapes"]
        sums: dict[str, str] = header["sha256"]
        meta, prov = dict(header["meta"]), dict(header["provenance"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise TableError(f"lookup table {path} has a corrupt header: {e}") from None
    try:
        names = np.asarray(tbl.column("array").to_pylist(), dtype=object)
        ii = tbl.column("i").to_numpy()
        jj = tbl.column("j").to_numpy()
        vals = tbl.column("value").to_numpy().astype(np.float64)
    except (KeyError, pa.ArrowException, ValueError, TypeError) as e:
        raise TableError(f"lookup table {path} has corrupt columns: {e}") from None
    arrays: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        sel = names == name
        shape2 = (shape[0], int(np.prod(shape[1:])) if len(shape) > 1 else 1)
        if int(sel.sum()) != shape2[0] * shape2[1]:
            raise TableError(f"lookup table {path} is truncated: array '{name}' has {int(sel.sum())} of "
                             f"{shape2[0] * shape2[1]} values")
        a = np.full(shape2, np.nan)
        try:
            a[ii[sel], jj[sel]] = vals[sel]
        except IndexError:
            raise TableError(f"lookup table {path} is corrupt: array '{name}' has indices out of range") from None
        a = a.reshape(shape)
        if _sha(a) != sums.get(name):
            raise TableError(f"lookup table {path} is corrupt: checksum of array '{name}' does not match")
        arrays[name] = a
    extra = set(np.unique(names).tolist()) - set(shapes) if len(names) else set()
    if extra:
        raise TableError(f"lookup table {path} is corrupt: unknown arrays {sorted(extra)}")
    prov["source_path"] = str(path)
    table = LookupTable(arrays=arrays, meta=meta, provenance=prov)
    for key in ("rows", "cols", "topology", "technology", "technology_params"):
        if key not in prov:
            raise TableError(f"lookup table {path} has incomplete provenance: no '{key}'")
    return table.check(tech=tech, rows=rows, cols=cols, topology=topology)


def provenance_warnings(prov: dict[str, Any], ngspice: bool = True) -> list[str]:
    """Warnings about using a table here: made by another version of cosim's code (a table shipped in
    ``cosim/resources/tables`` belongs to this code and is not named), or (``ngspice``) calibrated with
    another ngspice or solver than this machine runs, whose SPICE results may differ from it."""
    from ..paths import resources_dir
    from ..provenance import code_version

    out: list[str] = []
    if prov.get("synthetic"):
        return out
    src = prov.get("source_path")
    shipped = bool(src) and Path(src).resolve().is_relative_to((resources_dir() / "tables").resolve())  # type: ignore[arg-type]  # src is set here
    made = prov.get("code_version")
    if made and made != code_version() and not shipped:
        out.append(f"table {src or ''} made by code version {made}, used with {code_version()}".replace("  ", " "))
    if ngspice and prov.get("ngspice_version"):
        from ..errors import NgspiceError
        from ..circuit.spice.detect import ngspice_info
        try:
            info = ngspice_info()
        except NgspiceError:
            return out
        if info["version"]:
            here = f"ngspice {info['version']} ({'klu' if info['klu'] else 'sparse'})"
            there = f"ngspice {prov['ngspice_version']} ({prov.get('solver', '?')})"
            if here != there:
                out.append(f"table calibrated with {there}, this machine runs {here}: its SPICE results "
                           "may differ from the table's")
    return out
