"""The table registry: how lookup tables are named, where they are found, and the model form each is
fitted with. ``cosim calibrate``, ``cosim infer`` (``cosim.cim.arrays``), the study and
``scripts/make_tables.py`` all go through it.

Naming: ``<technology>_<rows>_<topology>.parquet`` at the technology's default wire resistance (what
``cosim infer`` takes by default), ``<technology>_<rows>_<topology>_r<X>ohm.parquet`` at X ohm per cell
(``table_filename``, ``parse_table_filename``; ``sram8t_128_decoupled_r5ohm.parquet``).

Lookup (``lookup``, ``find_table``) of (technology, rows, wire resistance, topology) goes through folders
in order, by default the tables shipped in ``cosim/resources/tables`` and then the user's folder
``$COSIM_CACHE/tables`` (``table_dirs``). In each folder the file of the registry's name is taken first;
then every other ``*.parquet`` below it whose name is not a registry name (say a ``table.parquet`` that
``cosim calibrate`` wrote) is taken when its provenance says it was calibrated for exactly that technology
(every parameter), rows and topology. A file whose name is a registry name is taken at its name's word
(another key's file is not opened; a file of the key's name that does not load or match is an error). A table found is always checked against what was asked
(``LookupTable.check``).

Model form (``model_form``): the term set, ON-count knots and moment orders of a table, per (technology,
rows), and per (technology, rows, wire resistance) where one wire resistance needs another form
(``MODEL_FORMS``: such a key wins over the plain one).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ..errors import InputError, TableError
from ..paths import cache_dir, resources_dir
from .model import DEFAULT_ORDERS, TERM_SETS, WITH_SINES, normalise_orders

if TYPE_CHECKING:
    from ..circuit.technology import Technology
    from .tables import LookupTable

TABLES_SUBDIR = "tables"
TOPOLOGIES = ("decoupled", "coupled")


# ---------------------------------------------------------------------------------------------------
# Model form per table
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelForm:
    """The surrogate's model form of a table: term set (``default_terms``), ON-count knots (None:
    ``knot_counts``' default, 33 at 128 rows and up) and moment orders."""
    terms: str = "full"
    n_knots: int | None = None
    orders: tuple = DEFAULT_ORDERS


#: the model form of the shipped tables per (technology, rows), at every wire resistance unless a
#: (technology, rows, wire resistance in ohm per cell) key gives that resistance its own form. The compact
#: set is as accurate at 64 rows and cheaper to evaluate; 128 and 256 rows need the full cubic; 8T-SRAM,
#: whose IR drop compresses the response most, also needs the squares of the first eight sine moments of
#: the IR-drop kernel, and at 256 rows every quartic monomial on 65 knots (docs/VALIDATION.md, "Model
#: form"); at 64 rows the squares of sines 3-6 on a knot per count carry random columns with calibrated
#: ADC references past 99.5 % (docs/error_budget/README.md, "The model form for random patterns with
#: calibrated references"); 1T-1R at 64 rows needs the full cubic (its leak terms with L m_a m_b) and the
#: same sines there (99.0 -> 99.6 %, docs/error_budget/README.md, "The shipped 64-row tables rebuilt").
#: Chosen on fresh ngspice points (docs/error_budget/README.md, "Model forms per table (128/256 rows and 20
#: ohm)"): 8T-SRAM at 128 rows every quartic monomial and s1-s8 (calibrated references on random columns
#: 96.8 -> 98.0 %, every family >= 99.5 % with ideal ones), and at 64 rows and 20 ohm the same (worst family
#: 98.8 -> 99.5 %). Any other (technology, rows): ``ModelForm()``, the full cubic in Legendre 1-4.
S3_S6 = DEFAULT_ORDERS + ("s3", "s4", "s5", "s6")
MODEL_FORMS: dict[tuple, ModelForm] = {
    ("sram8t", 64): ModelForm("compact", 65, S3_S6), ("reram1t1r", 64): ModelForm("full", 65, S3_S6),
    ("sram8t", 128): ModelForm("quartic", 65, WITH_SINES), ("reram1t1r", 128): ModelForm("full"),
    ("sram8t", 256): ModelForm("quartic", 65, WITH_SINES), ("reram1t1r", 256): ModelForm("full"),
    ("sram8t", 64, 20.0): ModelForm("quartic", 65, WITH_SINES)}


def registered_form(tech_name: str, rows: int, r_wire_ohm: float | None = None) -> ModelForm:
    """The shipped tables' form (``MODEL_FORMS``) of ``tech_name`` at ``rows`` and ``r_wire_ohm`` ohm per
    cell (None: the technology's default): the (technology, rows, wire resistance) key where the registry
    has one for that resistance, else the (technology, rows) key, else ``ModelForm()``."""
    r = _default_r_wire_ohm(tech_name) if r_wire_ohm is None else float(r_wire_ohm)
    if r is not None:
        for key, form in MODEL_FORMS.items():
            if len(key) == 3 and key[:2] == (tech_name, int(rows)) and math.isclose(float(key[2]), r, rel_tol=1e-12):
                return form
    return MODEL_FORMS.get((tech_name, int(rows)), ModelForm())


def model_form(tech_name: str, rows: int, terms: str | None = None, n_knots: int | None = None,
               orders=None, r_wire_ohm: float | None = None) -> ModelForm:
    """The model form ``cosim calibrate`` fits for ``tech_name`` at ``rows`` and ``r_wire_ohm`` ohm per
    cell (None: the technology's default): the shipped tables' form (``registered_form``), each of
    ``terms``, ``n_knots``, ``orders`` that is given replacing its part."""
    base = registered_form(tech_name, rows, r_wire_ohm)
    if terms is not None and terms not in TERM_SETS:
        raise InputError(f"unknown term set '{terms}': expected one of {', '.join(TERM_SETS)}")
    return ModelForm(terms=base.terms if terms is None else terms,
                     n_knots=base.n_knots if n_knots is None else int(n_knots),
                     orders=base.orders if orders is None else tuple(normalise_orders(orders)))


# ---------------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TableKey:
    """What a table is for: technology, rows, wire resistance per cell (None: the technology's default)
    and topology."""
    technology: str
    rows: int
    r_wire_ohm: float | None = None
    topology: str = "decoupled"

    def filename(self) -> str:
        return table_filename(self.technology, self.rows, self.topology, self.r_wire_ohm)

    def describe(self) -> str:
        r = "default wire resistance" if self.r_wire_ohm is None else f"{self.r_wire_ohm:g} ohm/cell"
        return f"{self.technology}, {self.rows} rows, {r}, {self.topology}"

    @property
    def name(self) -> str:
        """The short name scripts and reports give the table: ``sram8t_64``, ``sram8t_64_r20ohm``,
        ``sram8t_64_coupled`` (the file name without the decoupled topology and the suffix)."""
        return (f"{self.technology}_{self.rows}" + ("" if self.topology == "decoupled" else f"_{self.topology}")
                + ("" if self.r_wire_ohm is None else f"_r{self.r_wire_ohm:g}ohm"))


#: the tables shipped in cosim/resources/tables (scripts/make_tables.py makes them): both cells at 64, 128
#: and 256 rows, decoupled, at the default wire resistance (10 ohm per cell) and the study's 2, 5 and 20;
#: and both cells coupled (a line along each row shared by the array's 64 columns) at 64 rows and 10 ohm
SHIPPED = (tuple(TableKey(tech, rows, r, "decoupled") for tech in ("sram8t", "reram1t1r") for rows in (64, 128, 256)
                 for r in (None, 2.0, 5.0, 20.0))
           + tuple(TableKey(tech, 64, None, "coupled") for tech in ("sram8t", "reram1t1r")))

_NAME = re.compile(r"^(?P<tech>.+?)_(?P<rows>[0-9]+)_(?P<topology>" + "|".join(TOPOLOGIES)
                   + r")(?:_r(?P<r>[0-9][0-9.e+-]*)ohm)?\.parquet$")


def _default_r_wire_ohm(tech_name: str) -> float | None:
    from ..circuit.technology import REGISTRY
    tech = REGISTRY.get(tech_name)
    return None if tech is None else float(tech.r_wire_ohm)


def _is_default_r(tech_name: str, r_wire_ohm: float | None) -> bool:
    if r_wire_ohm is None:
        return True
    default = _default_r_wire_ohm(tech_name)
    return default is not None and math.isclose(float(r_wire_ohm), default, rel_tol=1e-12, abs_tol=0.0)


def table_filename(tech_name: str, rows: int, topology: str = "decoupled", r_wire_ohm: float | None = None) -> str:
    """The registry's file name of a table: ``<tech>_<rows>_<topology>.parquet``, with ``_r<X>ohm`` before
    the suffix when ``r_wire_ohm`` is given and is not the technology's default."""
    suffix = "" if r_wire_ohm is None or _is_default_r(tech_name, r_wire_ohm) else f"_r{float(r_wire_ohm):g}ohm"
    return f"{tech_name}_{int(rows)}_{topology}{suffix}.parquet"


def parse_table_filename(name: str) -> TableKey | None:
    """The key a registry file name stands for (wire resistance None for the technology's default), or
    None when ``name`` is not a registry name."""
    m = _NAME.match(Path(name).name)
    if m is None:
        return None
    try:
        r = None if m["r"] is None else float(m["r"])
    except ValueError:
        return None
    if r is not None and _is_default_r(m["tech"], r):
        return None                      # the default resistance has the plain name only
    return TableKey(m["tech"], int(m["rows"]), r, m["topology"])


# ---------------------------------------------------------------------------------------------------
# Folders and lookup
# ---------------------------------------------------------------------------------------------------
def tables_dir() -> Path:
    """Folder of the default tables shipped inside the package."""
    return resources_dir() / TABLES_SUBDIR


def user_tables_dir() -> Path:
    """The user's folder of tables: ``$COSIM_CACHE/tables``."""
    return cache_dir() / TABLES_SUBDIR


def table_dirs() -> list[Path]:
    """The folders a lookup goes through by default, in order: shipped, then the user's."""
    return [tables_dir(), user_tables_dir()]


def default_table_path(tech_name: str, rows: int, topology: str = "decoupled", must_exist: bool = True) -> Path:
    """Path of the shipped default table for a registry technology, size and topology (default wire
    resistance). With ``must_exist`` (default) a table that is not shipped is a TableError naming the
    shipped ones."""
    path = tables_dir() / table_filename(tech_name, rows, topology)
    if must_exist and not path.is_file():
        shipped = sorted(p.stem for p in tables_dir().glob("*.parquet")) if tables_dir().is_dir() else []
        raise TableError(f"no default table for {tech_name} {rows} rows {topology} (shipped: "
                         f"{', '.join(shipped) or 'none'}); make one with 'cosim calibrate'")
    return path


def _candidates(folder: Path, name: str) -> Iterable[tuple[Path, bool]]:
    """(path, named) of the files below ``folder`` that may hold the table of registry name ``name``: the
    file of that name first, then those of that name in subfolders, then every ``*.parquet`` whose name
    is no registry name (tables of other keys, by their names, and calibration samples are left out)."""
    own = folder / name
    if own.is_file():
        yield own, True
    others = []
    for p in sorted(folder.rglob("*.parquet")):
        if p == own or p.name == "samples.parquet":       # cosim calibrate's raw SPICE samples, not a table
            continue
        if p.name == name:
            yield p, True
        elif parse_table_filename(p.name) is None:
            others.append(p)
    for p in others:
        yield p, False


def lookup(tech: "str | Technology", rows: int, r_wire_ohm: float | None = None, topology: str = "decoupled",
           dirs: Iterable[Path] | None = None) -> "LookupTable":
    """The table calibrated for ``tech`` (a registry name, or a Technology whose every parameter must
    match), ``rows``, ``r_wire_ohm`` (None: the technology's own) and ``topology``, loaded and checked,
    from the first of ``dirs`` (default ``table_dirs()``) that holds one. Raises TableError naming what
    was asked and where it looked when none does; a file of the registry's name that fails to load or
    does not match is reported as such."""
    from ..circuit.technology import Technology, get_technology
    from .tables import load_table

    if topology not in TOPOLOGIES:
        raise InputError(f"unknown topology '{topology}': expected one of {', '.join(TOPOLOGIES)}")
    if isinstance(tech, Technology):
        tech_obj = tech if r_wire_ohm is None else tech.replace(r_wire_ohm=float(r_wire_ohm))
    else:
        tech_obj = get_technology(tech, r_wire_ohm=None if r_wire_ohm is None else float(r_wire_ohm))
    key = TableKey(tech_obj.name, int(rows), None if _is_default_r(tech_obj.name, tech_obj.r_wire_ohm)
                   else float(tech_obj.r_wire_ohm), topology)
    name = key.filename()
    folders = list(table_dirs() if dirs is None else dirs)
    for d in folders:
        d = Path(d)
        if not d.is_dir():
            continue
        for p, named in _candidates(d, name):
            try:
                return load_table(p, tech=tech_obj, rows=key.rows, topology=topology)
            except TableError:
                if named:
                    raise
    where = ", ".join(str(d) for d in folders) or "no table folder"
    r_opt = "" if key.r_wire_ohm is None else f" --r-wire-ohm {key.r_wire_ohm:g}"
    raise TableError(f"no lookup table calibrated for {tech_obj.name}, {key.rows} rows, {tech_obj.r_wire_ohm:g} "
                     f"ohm/cell, {topology} (looked for {name} and tables of that provenance in {where}); make one "
                     f"with 'cosim calibrate --tech {tech_obj.name} --rows {key.rows}{r_opt} ...' into a folder "
                     "under one of them")


def find_table(tech_name: str, rows: int, r_wire_ohm: float | None = None, dirs: Iterable[Path] | None = None,
               topology: str = "decoupled") -> tuple["LookupTable", str, str]:
    """(table, path, sha256 of the file) of ``lookup``."""
    from ..provenance import sha256_file

    table = lookup(tech_name, rows, r_wire_ohm, topology, dirs)
    path = table.provenance["source_path"]
    return table, path, sha256_file(Path(path))
