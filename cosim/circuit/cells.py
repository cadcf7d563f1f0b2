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

A cell may also need no Python: ``SubcircuitCell`` is a kind built from a technology file's ``[cell]``
table (a SPICE subcircuit file, the role of each pin, the meaning of each state; ``subcircuit_declaration``).

The built-in kinds write exactly the decks the generator wrote before the kinds were classes
(tests/test_cells.py checks the hashes of decks of every kind, topology and model implementation).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from .devices import MODEL_FILES, model_text
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
    tabulated = True
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


# ---------------------------------------------------------------------------------------------- subcircuit cells
#: the roles of a subcircuit cell's pins
ROLES = ("drive", "sense", "gate", "state")
#: the keys of a technology file's [cell] table (docs/TECHNOLOGIES.md "A new cell with no Python")
SUBCKT_KEYS = ("file", "pins", "state0", "state1", "subckt", "states", "models", "coupled_drive")
#: a placeholder of a technology parameter in the subcircuit text: {name} (no spaces inside the braces)
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SUBCKT_LINE = re.compile(r"^[ \t]*\.subckt[ \t]+(\S+)(.*)$", re.IGNORECASE | re.MULTILINE)


def _subckt_pins(text: str) -> dict[str, int]:
    """The subcircuits a SPICE text defines (lower-case name) and the number of pins of each (the tokens
    after the name that are no ``param=value``; continuation lines are not followed)."""
    out = {}
    for name, rest in _SUBCKT_LINE.findall(text):
        rest = re.sub(r"\s*=\s*", "=", rest.split(";")[0].split("$")[0])
        toks = [t for t in rest.split() if t.lower() not in ("params:",)]
        out[name.lower()] = len([t for t in toks if "=" not in t])
    return out


def subcircuit_declaration(table: dict, where: str, base: Path, parameters: set[str]) -> str:
    """The canonical JSON of a technology file's [cell] table (a cell as a SPICE subcircuit file, no Python),
    with the file's text in it, so that a technology carries the whole cell (workers, tables and cache keys
    reproduce the same deck). ``base``: the folder paths are relative to; ``parameters``: the names a
    placeholder may take. Errors are one line naming ``where``."""
    if not isinstance(table, dict):
        raise InputError(f"{where}: [cell] must be a table")
    extra = sorted(set(table) - set(SUBCKT_KEYS))
    if extra:
        raise InputError(f"{where}: unknown key '{extra[0]}' in [cell] (expected {', '.join(SUBCKT_KEYS)})")
    for key in ("file", "pins", "states", "models"):
        if key not in table:
            raise InputError(f"{where}: [cell] is missing '{key}'")
    if not isinstance(table["file"], str) or not table["file"]:
        raise InputError(f"{where}: [cell] file must be the path of a SPICE subcircuit file")
    path = (base / table["file"]).expanduser().resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise InputError(f"{where}: no readable subcircuit file {path}") from None
    pins = table["pins"]
    if not (isinstance(pins, list) and all(isinstance(p, str) for p in pins)):
        raise InputError(f"{where}: [cell] pins must be a list of roles ({', '.join(ROLES)})")
    unknown = [p for p in pins if p not in ROLES]
    if unknown:
        raise InputError(f"{where}: unknown pin role '{unknown[0]}' (expected {', '.join(ROLES)})")
    twice = sorted({p for p in pins if pins.count(p) > 1})
    if twice:
        raise InputError(f"{where}: pin role '{twice[0]}' given twice")
    missing = [r for r in ("drive", "sense", "gate") if r not in pins]
    if missing:
        raise InputError(f"{where}: pin role '{missing[0]}' missing from [cell] pins")
    if "state" in pins:   # one subcircuit, the stored bit on its state pin
        if "state0" in table or "state1" in table or not isinstance(table.get("subckt"), str):
            raise InputError(f"{where}: with a 'state' pin, [cell] names one subcircuit: subckt = \"...\" "
                             "(not state0/state1)")
        variants = {"subckt": table["subckt"]}
    else:                 # the stored bit selects the subcircuit
        if "subckt" in table or not all(isinstance(table.get(k), str) for k in ("state0", "state1")):
            raise InputError(f"{where}: without a 'state' pin, [cell] names the subcircuit of each stored bit: "
                             "state0 = \"...\", state1 = \"...\"")
        variants = {k: table[k] for k in ("state0", "state1")}
    defined = _subckt_pins(text)
    for key, sub in variants.items():
        n = defined.get(sub.lower())
        if n is None:
            raise InputError(f"{where}: subcircuit '{sub}' ({key}) is not defined in {path.name} "
                             f"(it defines: {', '.join(sorted(defined)) or 'none'})")
        if n != len(pins):
            raise InputError(f"{where}: subcircuit '{sub}' has {n} pins, [cell] pins names {len(pins)}")
    states = table["states"]
    if not (isinstance(states, dict) and set(states) == {"0", "1"}
            and all(isinstance(v, str) and v.strip() for v in states.values())):
        raise InputError(f"{where}: [cell] states must give the meaning of each stored bit: "
                         "states = { 0 = \"...\", 1 = \"...\" }")
    models = table["models"]
    if not (isinstance(models, list) and all(isinstance(m, str) and m for m in models)):
        raise InputError(f"{where}: [cell] models must be a list of device-model files")
    model_texts = []
    for m in models:   # a file of device_models/ by name (read when the deck is written), or a path: its text
        if m in MODEL_FILES:
            model_texts.append({"name": m})
            continue
        mp = (base / m).expanduser().resolve()
        try:
            model_texts.append({"name": str(mp), "text": mp.read_text(encoding="utf-8")})
        except (OSError, UnicodeDecodeError):
            raise InputError(f"{where}: no device-model file '{m}' (neither one of {', '.join(MODEL_FILES)} "
                             f"nor a readable file {mp})") from None
    drive = table.get("coupled_drive", "line")
    if drive not in ("gate", "line"):
        raise InputError(f"{where}: [cell] coupled_drive must be 'gate' or 'line', got {drive!r}")
    decl = {"file": str(path), "text": text, "pins": pins, **variants, "states": states, "models": model_texts,
            "coupled_drive": drive}
    check_placeholders(decl, parameters, where)
    return json.dumps(decl, sort_keys=True, separators=(",", ":"))


def check_placeholders(decl: dict, parameters: set[str], where: str) -> None:
    """One-line error for a placeholder of the subcircuit text that names no technology parameter."""
    bad = sorted(set(PLACEHOLDER.findall(decl["text"])) - parameters)
    if bad:
        raise InputError(f"{where}: unknown placeholder {{{bad[0]}}} in {Path(decl['file']).name} "
                         "(a placeholder names a technology parameter)")


@lru_cache(maxsize=32)
def _declaration(text: str) -> dict:
    try:
        decl = json.loads(text)
    except ValueError:
        raise InputError("cell_subckt is not the JSON of a [cell] declaration") from None
    if not isinstance(decl, dict) or not {"file", "text", "pins", "states", "models"} <= set(decl):
        raise InputError("cell_subckt is not the JSON of a [cell] declaration")
    return decl


class SubcircuitCell(CellKind):
    """A cell declared in a technology file, with no Python: a SPICE subcircuit file, the role of each of its
    pins, the subcircuit of each stored bit (or one with a state pin), the meaning of each state and the model
    files it needs (``subcircuit_declaration``; the technology carries it all in ``cell_subckt``). The
    subcircuit text may name technology parameters as ``{name}``, filled when the deck is written. The deck
    is the same for every device-model implementation (the file says which devices it uses); ngspice
    simulates it, the exact solver has no cell function for it."""

    name = "subcircuit"
    kernel_kind = None

    def __init__(self, tech) -> None:
        super().__init__(tech)
        if not getattr(tech, "cell_subckt", None):
            raise InputError("cell 'subcircuit' needs its declaration: a [cell] table in the technology file")
        self.decl = _declaration(tech.cell_subckt)
        pins = self.decl["pins"]
        ports = {role: f"pin {pins.index(role) + 1} of {self.decl.get('subckt', 'the subcircuit')}" for role in pins}
        if "state" not in pins:
            ports["state"] = f"{self.decl['state1']}/{self.decl['state0']} (subcircuit per weight)"
        # per declaration, not per class
        self.ports = ports  # type: ignore[misc]
        self.state_meaning = {int(k): v for k, v in self.decl["states"].items()}  # type: ignore[misc]
        self.coupled_drive = self.decl.get("coupled_drive", "line")  # type: ignore[misc]

    def text(self) -> str:
        """The subcircuit text with the technology's values in its placeholders."""
        t = self.tech
        check_placeholders(self.decl, set(t.__dataclass_fields__), f"technology '{t.name}'")

        def value(m: re.Match) -> str:
            v = getattr(t, m.group(1))
            if v is None:
                raise InputError(f"technology '{t.name}': placeholder {{{m.group(1)}}} has no value")
            return _num(v) if isinstance(v, float) else str(v)
        return PLACEHOLDER.sub(value, self.decl["text"])

    def models(self, topology: str, impl: str) -> list[str]:
        # every implementation: the subcircuit's own model files, then the subcircuit (compiled decks
        # take no subckts(), so the subcircuit comes with the models)
        texts = [m["text"] if "text" in m else model_text(m["name"]) for m in self.decl["models"]]
        return texts + [f"* cell: {Path(self.decl['file']).name}", self.text().rstrip("\n")]

    def row_level_v(self, topology: str) -> float:
        return self.tech.v_read_v if topology == "coupled" and self.coupled_drive == "line" else self.tech.v_wl_v

    def fixed_sources(self, topology: str) -> list[str]:
        out = [f"Vg vg 0 {_num(self.tech.v_wl_v)}"] if topology == "coupled" and self.coupled_drive == "line" else []
        if "state" in self.decl["pins"]:
            out.append(f"Vq vq 0 {_num(self.tech.v_wl_v)}")   # a stored 1 on the state pin, a 0 at ground
        return out

    def writer(self, topology: str, impl: str) -> Writer:
        pins, decl = self.decl["pins"], self.decl
        one = decl.get("subckt")
        subs = (decl.get("state0"), decl.get("state1"))

        def put(add, r, c, a, ctl, b, wb):
            node = {"drive": a, "gate": ctl, "sense": b, "state": "vq" if wb else "0"}
            add(f"X{r}_{c}", [node[p] for p in pins], one or subs[wb])
        return put


register(SubcircuitCell)
