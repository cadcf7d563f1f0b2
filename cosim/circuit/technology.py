"""Technology registry: every device, wire and circuit parameter of a crossbar technology.

One place for the numbers. Each field documents its physical meaning and unit (in its name), and
each default carries its source (``Technology.source(field)``). Sources refer to the facts sheet
``docs/physics-facts.md`` of the shared folder (ASAP7, Clark et al. 2016; ReRAM compact model, Chen &
Yu 2015 / Jiang et al. 2016; NeuroSim) or say plainly that a value is a cosim assumption.

    >>> tech = get_technology("sram8t", r_wire_ohm=5.0)
    >>> tech.v_read_v, tech.r_wire_ohm
    (0.7, 5.0)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from .cells import CELL_KINDS, CellKind, cell_kind

#: the built-in cell kinds (cosim.circuit.cells.CELL_KINDS holds every registered one)
CELLS = ("sram8t", "reram1t1r", "resistor")
TOPOLOGIES = ("decoupled", "coupled")
FET_FLAVOURS = ("sram", "rvt", "lvt", "slvt")

_ASAP7 = "ASAP7 (Clark et al., Microelectronics J. 53, 2016), physics-facts.md"
_RERAM = "ReRAM compact model (Chen & Yu, TED 2015; Jiang et al., TED 2016), physics-facts.md"
_WIRE = "physics-facts.md 'Wires at 7 nm': sensible default 10 ohm/cell, swept 2/5/10/20"
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

    def __post_init__(self) -> None:
        if self.cell not in CELL_KINDS:
            raise InputError(f"unknown cell '{self.cell}': expected one of {', '.join(CELL_KINDS)}")
        if self.topology not in TOPOLOGIES:
            raise InputError(f"unknown topology '{self.topology}': expected one of {', '.join(TOPOLOGIES)}")
        if self.fet_flavour not in FET_FLAVOURS:
            raise InputError(f"unknown FinFET flavour '{self.fet_flavour}': expected one of {', '.join(FET_FLAVOURS)}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
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
        return dataclasses.replace(self, **overrides)

    @property
    def kind(self) -> CellKind:
        """The technology's cell kind (cosim.circuit.cells), bound to its values."""
        return cell_kind(self)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def source(name: str) -> str:
        return _FIELDS[name].metadata["source"]

    @staticmethod
    def doc(name: str) -> str:
        return _FIELDS[name].metadata["doc"]


_FIELDS = {f.name: f for f in dataclasses.fields(Technology)}

#: The registry. Per-technology values that differ from the field defaults, with their sources below.
REGISTRY: dict[str, Technology] = {
    "sram8t": Technology(
        name="sram8t", cell="sram8t", v_read_v=0.7, fet_flavour="rvt", fet_nfin=1,
        cell_height_um=0.162, cell_width_um=0.270,
    ),
    "reram1t1r": Technology(
        name="reram1t1r", cell="reram1t1r", v_read_v=0.2, fet_flavour="rvt", fet_nfin=2,
        cell_height_um=0.108, cell_width_um=0.108,
    ),
    "resistor": Technology(name="resistor", cell="resistor", v_read_v=0.2),
}

#: Sources of the per-technology values above (field defaults carry their own).
REGISTRY_SOURCES: dict[str, dict[str, str]] = {
    "sram8t": {
        "v_read_v": "physics-facts.md worst-case table: 8T, 0.7 V read (Vdd of ASAP7)",
        "fet_nfin": "1-fin RVT read stack gives ~20.9 uA/cell at 0.7 V (physics-facts.md worst-case table)",
    },
    "reram1t1r": {
        "v_read_v": "physics-facts.md: CiM read voltages 0.1-0.3 V; 1T-1R at 0.2 V in the worst-case table",
        "fet_nfin": "physics-facts.md: 2-fin RVT access transistor in series with LRS at 0.2 V ~ 22.6 kohm",
        "cell_height_um": "cosim assumption: 1T-1R cell of 4 x 27 nm fin pitch square (3-14 ohm/cell wire, physics-facts.md)",
        "cell_width_um": "cosim assumption, as cell_height_um",
    },
    "resistor": {"v_read_v": "physics-facts.md: CiM read voltages 0.1-0.3 V"},
}


def source_of(tech: Technology, name: str) -> str:
    """The source of a parameter's default value in a registry technology."""
    return REGISTRY_SOURCES.get(tech.name, {}).get(name) or Technology.source(name)


def get_technology(name: str, **overrides: Any) -> Technology:
    """The registry technology ``name``, with optional parameter overrides."""
    if name not in REGISTRY:
        raise InputError(f"unknown technology '{name}': expected one of {', '.join(REGISTRY)}")
    tech = REGISTRY[name]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return tech.replace(**overrides) if overrides else tech
