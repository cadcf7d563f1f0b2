"""Cell kinds: one class per kind of crossbar cell, holding everything the netlist generator and the
exact solver need to know about it, so that a new cell is one new class (``register`` it, then name
it as a technology's ``cell``).

A cell kind gives:

- its subcircuit (the wrapper the B-source and BSIM-CMG decks instantiate, ``subckts``) and the device
  model files it needs per implementation (``models``), or how it is written flat with the compiled
  devices (``writer``);
- its ports and their roles (``ports``): ``drive`` (the line the read voltage enters by), ``sense``
  (the line the current leaves by, to the ammeter), ``gate`` (the input: the row's control) and
  ``state`` (the stored bit: a pin, or the subcircuit variant chosen per weight);
- how it is driven (``row_level_v``: the row control of an input 1; ``fixed_sources``: supplies such
  as the stored-1 level; ``coupled_drive``: in the coupled topology, ``"gate"`` when the input drives
  the gate and each column's sense line is clamped at the read voltage, ``"line"`` when the input is a
  row voltage on the drive line);
- what the exact solver needs (``kernel_kind``: the cell-current function of solver_kernel.c;
  ``states``: its two state parameters per input and weight; ``tabulated``: whether ``cells="table"``
  applies; ``linear``: a linear cell, solved by the nodal solve and written with plain elements).

The built-in kinds write exactly the decks the generator wrote before the kinds were classes
(tests/test_cells.py checks the hashes of decks of every kind, topology and model implementation).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from .devices import model_text
from .solver_kernel import KIND
from ..errors import InputError


def _num(x: float) -> str:
    return repr(float(x))


#: add(name, nodes, tail): appends one element to the deck
Adder = Callable[[str, list, str], None]
#: writer(add, r, c, a, ctl, b, weight_bit): writes the cell at (r, c) between nodes a and b, gate ctl
Writer = Callable[[Adder, int, int, str, str, str, int], None]


class CellKind:
    """The interface of a cell kind (module doc). Subclasses set the class attributes and methods."""

    name: ClassVar[str] = ""
    #: the cell-current function of the exact solver's kernel (solver_kernel.KIND); None: the kind has none,
    #: and is simulated by ngspice only (the exact solver refuses it)
    kernel_kind: ClassVar[int | None] = None
    #: a linear cell: plain elements, B-source decks only, no device models, the nodal solve applies
    linear: ClassVar[bool] = False
    #: role -> pin of the cell's subcircuit (drive, sense, gate, state)
    ports: ClassVar[dict[str, str]] = {}
    #: what a stored 0 and a stored 1 are in the cell
    state_meaning: ClassVar[dict[int, str]] = {}
    #: coupled topology: "gate" (input on the gate, sense line clamped) or "line" (input is a row voltage)
    coupled_drive: ClassVar[str] = "line"
    #: the exact solver's ``cells="table"`` (tabulated cell) applies
    tabulated: ClassVar[bool] = False
    #: model files per implementation ("compiled", "bsource"); "bsimcmg" takes ``bsimcmg_libraries``
    #: beside the PDK cards and the BSIM-CMG cells
    libraries: ClassVar[dict[str, tuple[str, ...]]] = {}
    bsimcmg_libraries: ClassVar[tuple[str, ...]] = ()

    def __init__(self, tech) -> None:
        self.tech = tech

    # ---------------------------------------------------------------- deck
    def models(self, topology: str, impl: str) -> list[str]:
        """The device-model texts the deck inlines."""
        if impl == "bsimcmg":
            from . import bsimcmg
            fl = (self.tech.fet_flavour,)
            return ([bsimcmg.card_text(fl)] + [model_text(n) for n in self.bsimcmg_libraries]
                    + [bsimcmg.cells_text(fl)])
        return [model_text(n) for n in self.libraries.get(impl, ())]

    def subckts(self, topology: str) -> list[str]:
        """Wrapper subcircuits with the technology's values baked in (decks other than compiled)."""
        return []

    def row_level_v(self, topology: str) -> float:
        """The row control (V) of an input 1 (an input 0 is 0 V)."""
        return self.tech.v_wl_v

    def fixed_sources(self, topology: str) -> list[str]:
        """Supply lines the cells need beside the row controls and the read voltage."""
        return []

    def writer(self, topology: str, impl: str) -> Writer:
        """The function that writes one cell into the deck."""
        raise NotImplementedError

    # ---------------------------------------------------------------- exact solver
    def states(self, topology: str) -> np.ndarray:
        """(2, 2, 2): the kernel's two state parameters (s1, s2) for [input, weight]."""
        raise NotImplementedError


class Sram8T(CellKind):
    """The 8T-SRAM read port: read-word-line FET on the read bit line, stored-bit FET to the read
    source line (their shared node solved inside the cell). The stored bit is a pin: q at v_wl_v (1)
    or ground (0)."""

    name = "sram8t"
    kernel_kind = KIND["sram8t"]
    ports = {"drive": "rbl", "gate": "rwl", "state": "q", "sense": "sl"}
    state_meaning = {0: "q at ground: the stored-bit FET off, no read current",
                     1: "q at v_wl_v: the stored-bit FET on, the read stack conducts when the input is 1"}
    coupled_drive = "gate"
    tabulated = True
    libraries = {"compiled": ("finfet7_osdi.lib",), "bsource": ("finfet7.lib", "cells.lib")}

    def subckts(self, topology: str) -> list[str]:
        t = self.tech
        return [".subckt cell8t rbl rwl q sl", f"Xc rbl rwl q sl sram8t_read_{t.fet_flavour} nfin={t.fet_nfin}",
                ".ends"]

    def fixed_sources(self, topology: str) -> list[str]:
        return [f"Vq vq 0 {_num(self.tech.v_wl_v)}"]

    def writer(self, topology: str, impl: str) -> Writer:
        t = self.tech
        if impl == "compiled":
            # the read port as one stack device (read-word-line FET on the bit line, stored-bit FET to the
            # source line; their shared node solved inside the device)
            stack = f"nstack_{t.fet_flavour}_c nfin={t.fet_nfin}"

            def put(add, r, c, a, ctl, b, wb):
                add(f"Nc{r}_{c}", [a, ctl, "vq" if wb else "0", b], stack)
        else:
            def put(add, r, c, a, ctl, b, wb):
                add(f"X{r}_{c}", [a, ctl, "vq" if wb else "0", b], "cell8t")
        return put

    def states(self, topology: str) -> np.ndarray:
        t = self.tech
        out = np.zeros((2, 2, 2))
        for x in (0, 1):
            for w in (0, 1):
                out[x, w] = (x * t.v_wl_v, w * t.v_wl_v)   # read word line, stored bit (vq or ground)
        return out


class _TwoVariantCell(CellKind):
    """A cell whose stored bit selects one of two subcircuits, cell1 and cell0 (pins a ctl b)."""

    ports = {"drive": "a", "gate": "ctl", "sense": "b", "state": "cell1/cell0 (subcircuit per weight)"}

    def writer(self, topology: str, impl: str) -> Writer:
        def put(add, r, c, a, ctl, b, wb):
            add(f"X{r}_{c}", [a, ctl, b], "cell1" if wb else "cell0")
        return put


class ReRAM1T1R(_TwoVariantCell):
    """1T-1R: a ReRAM (filament gap: the stored bit) in series with an access FinFET whose gate is the
    input (decoupled) or always on at v_wl_v (coupled)."""

    name = "reram1t1r"
    state_meaning = {0: "high-resistance state: filament gap reram_gap_hrs_m (200 kohm at 0.1 V)",
                     1: "low-resistance state: filament gap reram_gap_lrs_m (20 kohm at 0.1 V)"}
    kernel_kind = KIND["reram1t1r"]
    libraries = {"compiled": ("finfet7_osdi.lib", "reram_osdi.lib"),
                 "bsource": ("finfet7.lib", "reram.lib", "cells.lib")}
    bsimcmg_libraries = ("reram.lib",)

    def _common(self) -> str:
        t = self.tech
        return f"nfin={t.fet_nfin} i0={_num(t.reram_i0_a)} g0={_num(t.reram_g0_m)} v0={_num(t.reram_v0_v)}"

    def subckts(self, topology: str) -> list[str]:
        t, common = self.tech, self._common()
        fl = t.fet_flavour
        return [
            ".subckt cell1 a ctl b", f"Xc a ctl b reram1t1r_{fl} {common} gap={_num(t.reram_gap_lrs_m)}", ".ends",
            ".subckt cell0 a ctl b", f"Xc a ctl b reram1t1r_{fl} {common} gap={_num(t.reram_gap_hrs_m)}", ".ends",
        ]

    def row_level_v(self, topology: str) -> float:
        return self.tech.v_read_v if topology == "coupled" else self.tech.v_wl_v

    def fixed_sources(self, topology: str) -> list[str]:
        return [f"Vg vg 0 {_num(self.tech.v_wl_v)}"] if topology == "coupled" else []

    def writer(self, topology: str, impl: str) -> Writer:
        if impl != "compiled":
            return super().writer(topology, impl)
        t = self.tech
        fet = f"nfet_{t.fet_flavour}_c nfin={t.fet_nfin}"
        rr = f"reram_c i0={_num(t.reram_i0_a)} g0={_num(t.reram_g0_m)} v0={_num(t.reram_v0_v)} gap="
        reram = (rr + _num(t.reram_gap_hrs_m), rr + _num(t.reram_gap_lrs_m))

        def put(add, r, c, a, ctl, b, wb):   # flat: ReRAM from a to the inner node m, access FET from m to b
            m = f"m{r}_{c}"
            add(f"Nr{r}_{c}", [a, m], reram[wb])
            add(f"Nt{r}_{c}", [m, ctl, b], fet)
        return put

    def states(self, topology: str) -> np.ndarray:
        t = self.tech
        out = np.zeros((2, 2, 2))
        for x in (0, 1):
            for w in (0, 1):   # gate: the input (decoupled) or always on (coupled); gap
                gate = t.v_wl_v if topology == "coupled" else x * t.v_wl_v
                out[x, w] = (gate, t.reram_gap_lrs_m if w else t.reram_gap_hrs_m)
        return out


class Resistor(_TwoVariantCell):
    """A linear cell of r_on_ohm (1) or r_off_ohm (0): gated by the row's 0/1 control (decoupled; input
    0 = open switch) or a plain resistor between the row line and the column line (coupled)."""

    name = "resistor"
    state_meaning = {0: "r_off_ohm", 1: "r_on_ohm"}
    kernel_kind = KIND["resistor"]
    linear = True

    def models(self, topology: str, impl: str) -> list[str]:
        return [model_text("cells.lib")] if topology == "decoupled" else []

    def subckts(self, topology: str) -> list[str]:
        if topology != "decoupled":
            return []   # coupled: plain R elements
        t = self.tech
        return [
            ".subckt cell1 a ctl b", f"Xc a ctl b gated_res g={_num(1.0 / t.r_on_ohm)}", ".ends",
            ".subckt cell0 a ctl b", f"Xc a ctl b gated_res g={_num(1.0 / t.r_off_ohm)}", ".ends",
        ]

    def row_level_v(self, topology: str) -> float:
        return self.tech.v_read_v if topology == "coupled" else 1.0

    def writer(self, topology: str, impl: str) -> Writer:
        if topology != "coupled":
            return super().writer(topology, impl)
        r_on_s, r_off_s = _num(self.tech.r_on_ohm), _num(self.tech.r_off_ohm)

        def put(add, r, c, a, ctl, b, wb):
            add(f"R{r}_{c}", [a, b], r_on_s if wb else r_off_s)
        return put

    def states(self, topology: str) -> np.ndarray:
        t = self.tech
        out = np.zeros((2, 2, 2))
        for x in (0, 1):
            for w in (0, 1):   # gated linear cell (decoupled) or plain resistor (coupled)
                ctl = 1.0 if topology == "coupled" else float(x)
                out[x, w] = (ctl, 1.0 / (t.r_on_ohm if w else t.r_off_ohm))
        return out


#: the registered cell kinds, by name
CELL_KINDS: dict[str, type[CellKind]] = {}


def register(kind: type[CellKind]) -> type[CellKind]:
    """Adds a cell kind (a CellKind subclass with a new ``name``); usable as a class decorator."""
    if not (isinstance(kind, type) and issubclass(kind, CellKind)) or not kind.name:
        raise InputError("a cell kind is a CellKind subclass with a name")
    if kind.coupled_drive not in ("gate", "line"):
        raise InputError(f"cell kind '{kind.name}': coupled_drive must be 'gate' or 'line', got {kind.coupled_drive!r}")
    CELL_KINDS[kind.name] = kind
    return kind


for _k in (Sram8T, ReRAM1T1R, Resistor):
    register(_k)


_LOADED: dict[str, set[str]] = {}


def load_cell_module(path) -> set[str]:
    """Runs the Python file ``path`` that defines and registers cell kinds (a technology's ``cell_module``;
    once per process); returns the names it registered."""
    p = Path(path).expanduser().resolve()
    key = str(p)
    if key in _LOADED:
        return _LOADED[key]
    if not p.is_file():
        raise InputError(f"no cell module {p}")
    name = "cosim_cell_" + hashlib.sha256(key.encode()).hexdigest()[:12]
    before = set(CELL_KINDS)
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:
        raise InputError(f"cell module {p} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's file: one line, not a traceback
        sys.modules.pop(name, None)
        raise InputError(f"cell module {p} failed: {type(e).__name__}: {e}") from None
    _LOADED[key] = set(CELL_KINDS) - before
    return _LOADED[key]


def cell_kind(tech) -> CellKind:
    """The cell kind of a technology, bound to its values (its ``cell_module`` run first where the kind is
    not registered in this process)."""
    if tech.cell not in CELL_KINDS and getattr(tech, "cell_module", None):
        load_cell_module(tech.cell_module)
    kind = CELL_KINDS.get(tech.cell)
    if kind is None:
        raise InputError(f"unknown cell '{tech.cell}': expected one of {', '.join(CELL_KINDS)}")
    return kind(tech)
