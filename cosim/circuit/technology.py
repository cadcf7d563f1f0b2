"""Technology registry: every device, wire and circuit parameter of a crossbar technology.

One place for the numbers. Each field documents its physical meaning and unit (in its name), and
each default carries its source (``Technology.source(field)``). Sources refer to the facts sheet
``docs/physics-facts.md`` of the shared folder (ASAP7, Clark et al. 2016; ReRAM compact model, Chen &
Yu 2015 / Jiang et al. 2016; NeuroSim) or say plainly that a value is a cosim assumption.

A technology is a TOML file (docs/TECHNOLOGIES.md): its name, cell kind (cosim.circuit.cells) and
parameters, each ``{ value = ..., source = "..." }``. The built-ins are such files, shipped in
cosim/resources/technologies; ``get_technology`` also finds ``<name>.toml`` in the folders of
$COSIM_TECH_PATH, or reads a file named by its path (``--tech-file`` on the command line).

    >>> tech = get_technology("sram8t", r_wire_ohm=5.0)
    >>> tech.v_read_v, tech.r_wire_ohm
    (0.7, 5.0)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..paths import resources_dir
from .cells import CELL_KINDS, CellKind, cell_kind, check_placeholders, load_cell_module, subcircuit_declaration

#: the lines of an array with a wire resistance each: bit line, source line, row (word) line
LINES = {"bl": "r_bl_ohm", "sl": "r_sl_ohm", "wl": "r_wl_ohm"}
#: the cell pitch along each line, for a resistance given per um (``r_bl_ohm_per_um`` in a file)
PITCH_OF_LINE = {"r_bl_ohm": "cell_height_um", "r_sl_ohm": "cell_height_um", "r_wl_ohm": "cell_width_um"}
#: the built-in cell kinds (cosim.circuit.cells.CELL_KINDS holds every registered one)
CELLS = ("sram8t", "reram1t1r", "resistor")
TOPOLOGIES = ("decoupled", "coupled")
FET_FLAVOURS = ("sram", "rvt", "lvt", "slvt")

_ASAP7 = "ASAP7 (Clark et al., Microelectronics J. 53, 2016), physics-facts.md"
_RERAM = "ReRAM compact model (Chen & Yu, TED 2015; Jiang et al., TED 2016), physics-facts.md"
_WIRE = "physics-facts.md 'Wires at 7 nm': sensible default 10 ohm/cell, swept 2/5/10/20"
_LINE = ("physics-facts.md 'Wires at 7 nm': {}; unset (None): r_wire_ohm")
_ASSUMED = "cosim assumption (no published figure in physics-facts.md); sweep it"


def _p(default: Any, doc: str, source: str) -> Any:
    return field(default=default, metadata={"doc": doc, "source": source})


@dataclass(frozen=True)
class Technology:
    """A crossbar technology: cell, voltages, wires, periphery. Immutable; use ``replace``."""

    name: str = _p("", "registry name of the technology", "cosim")
    cell: str = _p("resistor", f"cell kind, one of {CELLS}", "cosim")
    topology: str = _p(
        "decoupled",
        "default array topology: 'decoupled' (each column has its own driver and source line) or "
        "'coupled' (a line along each row carries current shared by all columns)",
        "cosim",
    )
    # --- voltages ---
    v_read_v: float = _p(0.2, "read voltage applied at the driver (V)", _ASSUMED)
    v_wl_v: float = _p(0.7, "gate (word-line) voltage of an active row, and of a stored 1 (V)", _ASAP7 + ", Vdd = 0.7 V")
    # --- wires and periphery ---
    r_wire_ohm: float = _p(10.0, "resistance of one cell-pitch segment of every current-carrying line (ohm)", _WIRE)
    r_driver_ohm: float = _p(10.0, "output resistance of the driver where the read voltage enters (ohm)", _ASSUMED)
    r_sink_ohm: float = _p(10.0, "input resistance of the sense amplifier / ground where current is sensed (ohm)", _ASSUMED)
    t_read_s: float = _p(1e-9, "duration of one array read, for energy = V_read * I * t_read (s)", _ASSUMED)
    # --- transistors (8T read port, 1T-1R access device) ---
    fet_flavour: str = _p("rvt", f"ASAP7 threshold flavour of the cell transistors, one of {FET_FLAVOURS}", _ASAP7)
    fet_nfin: int = _p(1, "fins per cell transistor", _ASAP7)
    # --- ReRAM (read regime), I = I0 exp(-g/g0) sinh(V/V0) ---
    reram_i0_a: float = _p(61.4e-6, "ReRAM current prefactor I0 (A)", _RERAM)
    reram_g0_m: float = _p(0.275e-9, "ReRAM characteristic gap g0 (m)", _RERAM)
    reram_v0_v: float = _p(0.43, "ReRAM characteristic voltage V0 (V)", _RERAM)
    reram_gap_lrs_m: float = _p(0.292e-9, "filament gap of the low-resistance state, 20 kohm at 0.1 V (m)", _RERAM)
    reram_gap_hrs_m: float = _p(0.924e-9, "filament gap of the high-resistance state, 200 kohm at 0.1 V (m)", _RERAM)
    # --- linear resistor cell (validation) ---
    r_on_ohm: float = _p(20e3, "resistance of a conducting linear cell (ohm)", "ReRAM LRS at 0.1 V, physics-facts.md")
    r_off_ohm: float = _p(200e3, "resistance of a non-conducting linear cell (ohm)", "ReRAM HRS at 0.1 V, physics-facts.md")
    # --- geometry ---
    cell_height_um: float = _p(0.162, "cell pitch along the bit line (um)", "8T cell, physics-facts.md '8T-SRAM read port'")
    cell_width_um: float = _p(0.270, "cell pitch along the word line (um)", "8T cell, physics-facts.md '8T-SRAM read port'")
    cell_module: str | None = _p(
        None, "Python file that defines and registers the cell kind, for a kind beyond the built-ins "
        "(cosim.circuit.cells.register; docs/TECHNOLOGIES.md)", "cosim")
    cell_subckt: str | None = _p(
        None, "the declaration of a cell with no Python (cell 'subcircuit'): the file's [cell] table as canonical "
        "JSON, with the text of its SPICE subcircuit file (cosim.circuit.cells.subcircuit_declaration; "
        "docs/TECHNOLOGIES.md)", "cosim")
    periphery: str | None = _p(
        None, "the technology's own figures for components of the periphery cost model (cosim.study.costs."
        "COMPONENTS: ADC power and area, clock, adders, ...), from the file's [periphery] table as canonical JSON "
        "{name: {value, source}}; None: the cost model's defaults", "cosim")
    # --- wire resistance per line (None: r_wire_ohm; r_wire_ohm sets every line at once) ---
    r_bl_ohm: float | None = _p(
        None, "bit-line segment per cell pitch (ohm): the line the read voltage enters by (decoupled and coupled "
        "8T), the column line (coupled resistor / 1T-1R)", _LINE.format("162 nm of bit line is 4.8-17 ohm"))
    r_sl_ohm: float | None = _p(
        None, "source-line segment per cell pitch (ohm): the line the cell current leaves by (decoupled: down the "
        "column; coupled 8T: along the row)", _LINE.format("a source line beside the bit line, as the bit line"))
    r_wl_ohm: float | None = _p(
        None, "row-line segment per cell pitch (ohm): the line along each row that carries the input voltage "
        "(coupled resistor / 1T-1R; a gate's word line carries no current)",
        _LINE.format("270 nm of word line is 8-29 ohm"))

    def __post_init__(self) -> None:
        if self.cell not in CELL_KINDS and self.cell_module:
            load_cell_module(self.cell_module)
        if self.cell not in CELL_KINDS:
            raise InputError(f"unknown cell '{self.cell}': expected one of {', '.join(CELL_KINDS)}")
        if (self.cell == "subcircuit") != bool(self.cell_subckt):
            raise InputError("a cell with no Python is declared by a [cell] table: cell 'subcircuit' and "
                             "cell_subckt go together")
        if self.cell_subckt:
            check_placeholders(self.kind.decl, set(_FIELDS), f"technology '{self.name}'")   # type: ignore[attr-defined]
        if self.topology not in TOPOLOGIES:
            raise InputError(f"unknown topology '{self.topology}': expected one of {', '.join(TOPOLOGIES)}")
        if self.fet_flavour not in FET_FLAVOURS:
            raise InputError(f"unknown FinFET flavour '{self.fet_flavour}': expected one of {', '.join(FET_FLAVOURS)}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in LINES.values() and v is not None and v == self.r_wire_ohm and not isinstance(v, bool):
                object.__setattr__(self, f.name, None)   # a line equal to r_wire_ohm is no line of its own
                continue
            if f.name in LINES.values() and v is None:
                continue
            if f.name.endswith(("_ohm", "_s", "_m", "_a", "_um")) and not (isinstance(v, (int, float)) and v >= 0):
                raise InputError(f"{f.name} must be a non-negative number, got {v!r}")
        if not (0 < self.v_read_v <= 2.0):
            raise InputError(f"v_read_v must be in (0, 2] V, got {self.v_read_v}")
        if self.fet_nfin < 1:
            raise InputError(f"fet_nfin must be >= 1, got {self.fet_nfin}")

    def replace(self, **overrides: Any) -> "Technology":
        """A copy with some parameters changed (validated; unknown names are an error)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise InputError(f"unknown technology parameter(s): {', '.join(unknown)}")
        if "r_wire_ohm" in overrides:   # r_wire_ohm sets every line at once: lines not given follow it
            overrides = {**{f: None for f in LINES.values()}, **overrides}
        return dataclasses.replace(self, **overrides)

    def wire_ohm(self, line: str) -> float:
        """The resistance (ohm) of one cell-pitch segment of ``line``: "bl", "sl" or "wl" (module doc)."""
        if line not in LINES:
            raise InputError(f"unknown line '{line}': expected one of {', '.join(LINES)}")
        v = getattr(self, LINES[line])
        return self.r_wire_ohm if v is None else v

    @property
    def lines_equal(self) -> bool:
        """Every line has r_wire_ohm (no per-line value)."""
        return all(getattr(self, f) is None for f in LINES.values())

    @property
    def kind(self) -> CellKind:
        """The technology's cell kind (cosim.circuit.cells), bound to its values."""
        return cell_kind(self)

    def as_dict(self) -> dict[str, Any]:
        """The parameters; per-line wire resistances only where set (so tables and caches of technologies
        with one r_wire_ohm keep their keys)."""
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items()
                if not ((k in LINES.values() or k in ("cell_module", "cell_subckt", "periphery")) and v is None)}

    def periphery_values(self) -> dict[str, dict[str, Any]]:
        """The [periphery] figures of the technology's file: {component: {"value": ..., "source": ...}}."""
        return json.loads(self.periphery) if self.periphery else {}

    @staticmethod
    def source(name: str) -> str:
        return _FIELDS[name].metadata["source"]

    @staticmethod
    def doc(name: str) -> str:
        return _FIELDS[name].metadata["doc"]


_FIELDS = {f.name: f for f in dataclasses.fields(Technology)}

TECH_PATH_ENV = "COSIM_TECH_PATH"
#: the top-level keys of a technology file (docs/TECHNOLOGIES.md)
FILE_KEYS = ("name", "description", "cell", "cell_module", "parameters", "periphery")
_UNITS = {"v": "V", "ohm": "ohm", "s": "s", "m": "m", "a": "A", "um": "um"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
#: the sources of the values of every technology read from a file, by technology name
_SOURCES: dict[str, dict[str, str]] = {}


def builtin_dir() -> Path:
    """The folder of the built-in technology files shipped in the package."""
    return resources_dir() / "technologies"


def _unit_of(name: str) -> str | None:
    tail = name.rsplit("_", 1)[-1] if "_" in name else ""
    return tail if tail in _UNITS else None


def _check_type(where: str, key: str, v: Any) -> Any:
    want = float if key in LINES.values() else type(_FIELDS[key].default)
    if want is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError(f"{where}: {key} must be a number, got {v!r}")
        return float(v)
    if want is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise InputError(f"{where}: {key} must be an integer, got {v!r}")
        return v
    if not isinstance(v, str):
        raise InputError(f"{where}: {key} must be a string, got {v!r}")
    return v


def _parameter(where: str, key: str, raw: Any, default_source: str) -> tuple[Any, str]:
    """(value, source) of one entry of [parameters]: a plain value or { value = ..., source = "..." }."""
    if key not in _FIELDS or key in ("name", "cell", "cell_module", "cell_subckt", "periphery"):
        stem = key.rsplit("_", 1)[0]
        same = [(f, u) for f in _FIELDS if (u := _unit_of(f)) and f.rsplit("_", 1)[0] in (stem, key)]
        if same:
            raise InputError(f"{where}: wrong unit in '{key}': the parameter is {same[0][0]}, in {_UNITS[same[0][1]]}")
        raise InputError(f"{where}: unknown key '{key}' in [parameters] (cosim.circuit.technology lists them)")
    source = default_source
    if isinstance(raw, dict):
        extra = sorted(set(raw) - {"value", "source"})
        if extra:
            raise InputError(f"{where}: unknown key '{extra[0]}' in parameter {key} (expected value and source)")
        if "value" not in raw:
            raise InputError(f"{where}: missing value of parameter {key}")
        if "source" in raw:
            if not isinstance(raw["source"], str) or not raw["source"].strip():
                raise InputError(f"{where}: the source of {key} must be a non-empty string")
            source = raw["source"]
        raw = raw["value"]
    return _check_type(where, key, raw), source


def technology_from_toml(data: dict, where: str) -> tuple[Technology, dict[str, str]]:
    """The technology of a parsed technology file, and the source of each of its values."""
    extra = sorted(set(data) - set(FILE_KEYS))
    if extra:
        raise InputError(f"{where}: unknown key '{extra[0]}' (expected {', '.join(FILE_KEYS)})")
    subckt = None
    if isinstance(data.get("cell"), dict):   # a cell with no Python: a SPICE subcircuit file (cells.SubcircuitCell)
        if "cell_module" in data:
            raise InputError(f"{where}: a [cell] table or a cell_module, not both")
        subckt = subcircuit_declaration(data["cell"], where, Path(where).parent, set(_FIELDS))
        data = {**data, "cell": "subcircuit"}
    for key in ("name", "cell"):
        if key not in data:
            raise InputError(f"{where}: missing value: {key}")
        if not isinstance(data[key], str) or not data[key]:
            raise InputError(f"{where}: {key} must be a non-empty string, got {data[key]!r}")
    name, cell = data["name"], data["cell"]
    if not _NAME.match(name):
        raise InputError(f"{where}: name '{name}' must be letters, digits and _ . + - only")
    module = data.get("cell_module")
    if module is not None:
        if not isinstance(module, str) or not module:
            raise InputError(f"{where}: cell_module must be the path of a Python file")
        module = str((Path(where).parent / module).expanduser().resolve())   # relative to the file
        registered = load_cell_module(module)
        if cell not in CELL_KINDS:
            raise InputError(f"{where}: cell module {module} registers no cell kind '{cell}' "
                             f"(it registers: {', '.join(sorted(registered)) or 'none'})")
    if cell not in CELL_KINDS:
        raise InputError(f"{where}: unknown cell kind '{cell}': expected one of {', '.join(CELL_KINDS)}")
    if "description" in data and not isinstance(data["description"], str):
        raise InputError(f"{where}: description must be a string")
    params = data.get("parameters", {})
    if not isinstance(params, dict):
        raise InputError(f"{where}: [parameters] must be a table")
    if cell == "subcircuit" and subckt is None:
        raise InputError(f"{where}: cell 'subcircuit' is declared by a [cell] table (docs/TECHNOLOGIES.md)")
    values: dict[str, Any] = {"name": name, "cell": cell, "cell_module": module, "cell_subckt": subckt,
                              "periphery": _periphery(data.get("periphery"), where)}
    sources: dict[str, str] = {}
    per_um = {}
    for key, raw in params.items():
        if key.endswith("_per_um") and key[: -len("_per_um")] in LINES.values():
            per_um[key[: -len("_per_um")]] = raw   # ohm/um times the cell pitch along the line, below
            continue
        values[key], sources[key] = _parameter(where, key, raw, f"technology file {Path(where).name}")
    for line, raw in per_um.items():
        if line in values:
            raise InputError(f"{where}: give {line} or {line}_per_um, not both")
        value, source = _parameter(where, line, raw, f"technology file {Path(where).name}")
        pitch = PITCH_OF_LINE[line]
        pitch_um = _check_type(where, pitch, values.get(pitch, _FIELDS[pitch].default))
        values[line], sources[line] = value * pitch_um, f"{source}: {value:g} ohm/um x {pitch} {pitch_um:g} um"
    try:
        return Technology(**values), sources
    except InputError as e:
        raise InputError(f"{where}: {e}") from None


def _periphery(table: Any, where: str) -> str | None:
    """The [periphery] table as canonical JSON: each entry a number, or { value = ..., source = "..." }.
    Its names are those of the cost model's components (cosim.study.costs checks them when it costs a
    network: the circuit step does not import the study)."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise InputError(f"{where}: [periphery] must be a table")
    out = {}
    for name, raw in table.items():
        source = f"technology file {Path(where).name}"
        if isinstance(raw, dict):
            extra = sorted(set(raw) - {"value", "source"})
            if extra or "value" not in raw:
                raise InputError(f"{where}: periphery {name} takes a value and a source"
                                 + (f", not '{extra[0]}'" if extra else ": the value is missing"))
            if "source" in raw:
                if not isinstance(raw["source"], str) or not raw["source"].strip():
                    raise InputError(f"{where}: the source of periphery {name} must be a non-empty string")
                source = raw["source"]
            raw = raw["value"]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw) or raw <= 0:
            raise InputError(f"{where}: periphery {name} must be a positive number, got {raw!r}")
        out[str(name)] = {"value": float(raw), "source": source}
    return json.dumps(out, sort_keys=True) if out else None


def _override(tech: Technology, overrides: dict[str, Any]) -> Technology:
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return tech.replace(**overrides) if overrides else tech


@lru_cache(maxsize=64)
def _read(path: str, mtime_ns: int) -> tuple[Technology, dict[str, str]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read the technology file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"technology file {path}: not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"technology file {path}: not valid TOML: {str(e).splitlines()[0]}") from None
    return technology_from_toml(data, path)


def _carried_files_changed(tech: Technology) -> bool:
    """Whether a file whose text a technology carries (a subcircuit cell's file, its model files given by
    path) reads differently now."""
    if not tech.cell_subckt:
        return False
    decl = json.loads(tech.cell_subckt)
    carried = [(decl["file"], decl["text"])] + [(m["name"], m["text"]) for m in decl["models"] if "text" in m]
    for path, text in carried:
        try:
            if Path(path).read_text(encoding="utf-8") != text:
                return True
        except (OSError, UnicodeDecodeError):
            return True
    return False


def load_technology_file(path, **overrides: Any) -> Technology:
    """The technology of a TOML file (docs/TECHNOLOGIES.md), with optional parameter overrides."""
    p = Path(path).expanduser()
    try:
        mtime = p.stat().st_mtime_ns
    except OSError as e:
        raise InputError(f"cannot read the technology file {p}: {e.strerror}") from None
    tech, sources = _read(str(p), mtime)
    if _carried_files_changed(tech):   # the subcircuit file (or a model file) changed since it was read
        tech, sources = _read.__wrapped__(str(p), mtime)
    builtin = builtin_dir() / f"{tech.name}.toml"
    if not (tech.name in _SOURCES and builtin.is_file() and p.resolve() != builtin.resolve()):
        _SOURCES[tech.name] = sources   # (a file elsewhere named like a built-in keeps the built-in's sources)
    return _override(tech, overrides)


def _builtins() -> dict[str, Technology]:
    out = {}
    for f in sorted(builtin_dir().glob("*.toml")):
        tech = load_technology_file(f)
        if tech.name != f.stem:
            raise InputError(f"technology file {f} names '{tech.name}', not '{f.stem}'")
        out[tech.name] = tech
    return out


#: The built-in technologies: the files in cosim/resources/technologies (each value with its source).
REGISTRY: dict[str, Technology] = _builtins()
#: Sources of the values of the built-in technologies, as their files give them.
REGISTRY_SOURCES: dict[str, dict[str, str]] = {n: dict(_SOURCES[n]) for n in REGISTRY}


def tech_path() -> list[Path]:
    """The folders of $COSIM_TECH_PATH (os.pathsep-separated), searched for <name>.toml after the built-ins."""
    raw = os.environ.get(TECH_PATH_ENV) or ""
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def available_technologies() -> list[str]:
    """The names get_technology finds: the built-ins, then the files of $COSIM_TECH_PATH."""
    names = list(REGISTRY)
    for d in tech_path():
        if d.is_dir():
            names += [f.stem for f in sorted(d.glob("*.toml")) if f.stem not in names]
    return names


def source_of(tech: Technology, name: str) -> str:
    """The source of a parameter's value in a technology read from a file (the built-ins are), else the
    source of the field's default."""
    return _SOURCES.get(tech.name, {}).get(name) or Technology.source(name)


def get_technology(name: str, **overrides: Any) -> Technology:
    """The technology ``name``, with optional parameter overrides: a built-in, a ``<name>.toml`` in a folder
    of $COSIM_TECH_PATH, or (a name ending in .toml) that technology file."""
    if name in REGISTRY:
        return _override(REGISTRY[name], overrides)
    if str(name).endswith(".toml"):
        return load_technology_file(name, **overrides)
    for d in tech_path():
        f = d / f"{name}.toml"
        if f.is_file():
            tech = load_technology_file(f)
            if tech.name != name:
                raise InputError(f"technology file {f} names '{tech.name}', not '{name}'")
            return _override(tech, overrides)
    raise InputError(f"unknown technology '{name}': expected one of {', '.join(available_technologies())}, "
                     f"or a .toml technology file (${TECH_PATH_ENV} adds folders of them)")
