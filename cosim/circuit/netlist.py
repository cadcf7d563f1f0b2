"""Netlists of whole crossbar arrays with wire parasitics, for ngspice.

``build_netlist(spec, inputs, weights)`` returns a deterministic, self-contained deck (the device
models are inlined) that evaluates all K input vectors in ONE analysis: a ``.dc`` sweep of a dummy
source ``Vsw`` from 0 to K-1, with every row driver a B-source whose value is a pwl table of that
sweep voltage (flat plateaus around each integer, so no interpolation error). A column's sensed
current is the current through a 0 V ammeter ``vm<c>``. See ``netlists/README.md`` for sketches.

Geometry (row 0 at the top, column 0 at the left; one wire segment per cell pitch between neighbouring
cells on every current-carrying line: ``r_bl_ohm`` on bit lines ``Rb``, ``r_sl_ohm`` on source lines ``Rs``,
``r_wl_ohm`` on row lines ``Rw``, each ``r_wire_ohm`` unless set, see cosim.circuit.technology):

decoupled  The input gates the cell (8T: read word line; 1T-1R: access-FET gate; resistor: a gated
           linear cell, input 0 = open switch, exactly no current). Each column c has a bit line and
           its own source line. The read voltage enters the bit line at row 0 through ``r_driver_ohm``;
           the source line leaves at the far end (row R-1) through the ammeter and ``r_sink_ohm`` to
           ground. Every cell therefore sees R-1 wire segments between driver and sink.
coupled    A line along each row carries current shared by all columns.
           resistor / 1T-1R: the input is a row voltage (v_read_v for 1, 0 V for 0) applied at the
           row's left end (column 0) through ``r_driver_ohm``; the row line runs right along the row;
           each cell joins the row line to its column line, which runs down to the ammeter and
           ``r_sink_ohm`` at row R-1 (1T-1R gates are all on at v_wl_v).
           8T-SRAM: each column's read bit line is clamped at v_read_v at row 0 through the ammeter
           (the sense amplifier) and ``r_driver_ohm``; the input drives the read word line; the read
           source line runs along the row to ``r_sink_ohm`` at the row's left end (column 0), shared
           by all columns of that row.

Zero resistances are shorts: the nodes they join are merged (SPICE rejects 0-ohm resistors).

Device models (``models``): ``compiled`` writes every cell as instances of the compiled devices
(``N`` elements, cosim.circuit.devices), flat: the 8T read port as one ``cosim_stack`` (its two FETs' shared
node solved inside the device), the 1T-1R cell as a ``cosim_reram`` and a ``cosim_finfet`` with the
cell's inner node ``m<r>_<c>`` between them; the deck loads the library with ``pre_osdi``;
``bsource`` writes the cells as subcircuits of the B-source models (finfet7.lib, reram.lib, cells.lib),
for ngspice builds without OSDI. Both are the same equations: the currents agree to the solver's
tolerance (tested). ``auto`` (the default, or $COSIM_SPICE_MODELS) takes ``compiled`` when the
installed ngspice loads the library (cosim.circuit.spice.detect.compiled_models_available). ``bsimcmg``
builds the same cells from the PDK's FinFETs: BSIM-CMG 107 through OSDI with the ASAP7 (or another
PDK's) model cards of the corner $COSIM_ASAP7_CORNER (cosim.circuit.bsimcmg); never chosen by ``auto``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

import numpy as np

from .cells import cell_kind
from .devices import compiled_library_name
from ..errors import InputError
from .technology import TOPOLOGIES, Technology

MAX_SIZE = 512      # rows and columns from 1 to MAX_SIZE
MAX_VECTORS = 100_000
RSHUNT_OHM = 1e12   # .option rshunt for decks with nonlinear cells (floating inner nodes)
RELTOL = 1e-6       # .option reltol for decks with nonlinear cells (see build_netlist)
BSIMCMG_RSHUNT_OHM = 1e9   # the same for the BSIM-CMG models (see build_netlist)
BSIMCMG_RELTOL = 1e-5
MODEL_IMPLS = ("auto", "compiled", "bsource", "bsimcmg")
MODELS_ENV = "COSIM_SPICE_MODELS"


def resolve_models(models: str | None = None) -> str:
    """``compiled``, ``bsource`` or ``bsimcmg`` for a request (None -> $COSIM_SPICE_MODELS, else ``auto``; ``auto``
    -> ``compiled`` when the installed ngspice loads the compiled library, else ``bsource``)."""
    want = models if models is not None else (os.environ.get(MODELS_ENV) or "auto")
    if want not in MODEL_IMPLS:
        src = "" if models is not None else f" (from ${MODELS_ENV})"
        raise InputError(f"unknown device-model implementation '{want}'{src}: expected one of {', '.join(MODEL_IMPLS)}")
    if want == "auto":
        from .spice.detect import compiled_models_available  # the SPICE step answers what ngspice can load
        return "compiled" if compiled_models_available() else "bsource"
    return want


def models_fallback(models: str | None = None) -> str | None:
    """Why ``auto`` falls back from the compiled device models to the B-source ones (the same equations,
    but another implementation: slower, and its results are other numbers to the last digits), or None
    when it does not (compiled models used, or ``bsource``/``compiled`` asked for explicitly)."""
    want = models if models is not None else (os.environ.get(MODELS_ENV) or "auto")
    if want != "auto":
        return None
    from .spice.detect import compiled_models_status
    usable, reason = compiled_models_status()
    return None if usable else reason


def fallback_warning(reason: str) -> str:
    """The one-line warning of a fallback from the compiled to the B-source device models."""
    return (f"device models: B-source instead of compiled, because {reason.rstrip('.')}. The same equations, "
            "evaluated by ngspice's expression parser: much slower, and currents differ in the last digits")


@dataclass(frozen=True)
class ArraySpec:
    """One crossbar array: technology, size and topology (None -> the technology's default)."""

    tech: Technology
    rows: int
    cols: int
    topology: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.tech, Technology):
            raise InputError(f"tech must be a Technology (see cosim.circuit.technology.get_technology), got {type(self.tech).__name__}")
        for name in ("rows", "cols"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not (1 <= int(v) <= MAX_SIZE):
                raise InputError(f"{name} must be an integer from 1 to {MAX_SIZE}, got {v!r}")
            object.__setattr__(self, name, int(v))
        topo = self.tech.topology if self.topology is None else self.topology
        if topo not in TOPOLOGIES:
            raise InputError(f"unknown topology '{topo}': expected one of {', '.join(TOPOLOGIES)}")
        object.__setattr__(self, "topology", topo)

    def describe(self) -> str:
        return f"{self.tech.name or self.tech.cell} {self.rows}x{self.cols} {self.topology}"


def _as_binary(a, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    try:
        arr = np.asarray(a)
    except Exception:  # noqa: BLE001 - anything numpy cannot read is bad input
        raise InputError(f"{name} is not an array") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{name} must be numeric 0/1, got dtype {arr.dtype}")
    if arr.size and not np.all((arr == 0) | (arr == 1)):
        bad = arr[~((arr == 0) | (arr == 1))].ravel()[0]
        raise InputError(f"{name} must hold only 0 and 1, found {bad!r}")
    if shape is not None and arr.shape != shape:
        raise InputError(f"{name} has shape {arr.shape}, expected {shape}")
    return arr.astype(np.uint8)


def check_inputs(spec: ArraySpec, inputs, weights) -> tuple[np.ndarray, np.ndarray]:
    """Validated copies: inputs (K, R) uint8 (a 1-D vector becomes K = 1), weights (R, C) uint8."""
    x = _as_binary(inputs, "inputs")
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != spec.rows:
        raise InputError(f"inputs have shape {x.shape}, expected (K, {spec.rows}) for {spec.rows} rows")
    if not (1 <= x.shape[0] <= MAX_VECTORS):
        raise InputError(f"number of input vectors must be 1..{MAX_VECTORS}, got {x.shape[0]}")
    w = _as_binary(weights, "weights", (spec.rows, spec.cols))
    return x, w


@lru_cache(maxsize=4096)
def _num_cached(x: float) -> str:
    return repr(x)


def _num(x: float) -> str:
    return _num_cached(float(x))


class _Deck:
    """Elements with node names; zero-ohm resistors merge nodes (union-find) when emitted."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.items: list[tuple[str, list[str], str]] = []  # (name, nodes, tail)

    def find(self, n: str) -> str:
        p = self.parent
        root = n
        while root in p:
            root = p[root]
        while n in p and p[n] != root:
            p[n], n = root, p[n]
        return root

    def short(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        # keep ground and source-driven nodes (vrd, vq, vg, x<r>) as the names of merged nodes
        if rb == "0" or (rb[0] in "vx" and ra != "0" and ra[0] not in "vx"):
            ra, rb = rb, ra
        self.parent[rb] = ra

    def r(self, name: str, a: str, b: str, ohm: float) -> None:
        if ohm == 0:
            self.short(a, b)
        else:
            self.items.append((name, [a, b], _num(ohm)))

    def add(self, name: str, nodes: list[str], tail: str) -> None:
        self.items.append((name, nodes, tail))

    def lines(self) -> Iterable[str]:
        if not self.parent:  # nothing merged: no lookups
            for name, nodes, tail in self.items:
                yield f"{name} {' '.join(nodes)} {tail}"
            return
        cache: dict[str, str] = {}
        for name, nodes, tail in self.items:
            out = []
            for n in nodes:
                r = cache.get(n)
                if r is None:
                    r = cache[n] = self.find(n)
                out.append(r)
            yield f"{name} {' '.join(out)} {tail}"


def _pwl_lines(name: str, node: str, values: np.ndarray) -> list[str]:
    """A B-source holding ``values[k]`` for sweep value k (flat from k-0.25 to k+0.25)."""
    pts = []
    for k, v in enumerate(values):
        s = _num(v)
        pts.append(f"{k - 0.25!r},{s},{k + 0.25!r},{s}")
    out = [f"{name} {node} 0 V=pwl(V(sw),"]
    for i in range(0, len(pts), 16):
        chunk = ",".join(pts[i:i + 16])
        out.append(f"+ {chunk}" + ("," if i + 16 < len(pts) else ")"))
    return out


def _row_source(name: str, node: str, values: np.ndarray) -> list[str]:
    if np.all(values == values[0]):
        return [f"V{name[1:]} {node} 0 {_num(values[0])}"]
    return _pwl_lines(name, node, values)


def _array_elements(spec: ArraySpec, impl: str, wl: list) -> tuple[list[str], _Deck, list[tuple[int, int, int]]]:
    """The array's elements for weights ``wl`` (R lists of C Python ints: much faster to index than numpy
    scalars): the read-voltage source lines, the deck of cells and wires, and each cell's items in it
    (first, end, r * C + c)."""
    tech, R, C = spec.tech, spec.rows, spec.cols
    topo: str = spec.topology  # type: ignore[assignment]  # str: ArraySpec.__post_init__ resolves None
    kind = cell_kind(tech)
    d = _Deck()
    pre: list[str] = []
    spans: list[tuple[int, int, int]] = []
    rbl, rsl, rwl = tech.wire_ohm("bl"), tech.wire_ohm("sl"), tech.wire_ohm("wl")
    rd, rs = tech.r_driver_ohm, tech.r_sink_ohm
    put, add = kind.writer(topo, impl), d.add

    def cell(r: int, c: int, a: str, ctl: str, b: str) -> None:
        first = len(d.items)
        put(add, r, c, a, ctl, b, wl[r][c])
        spans.append((first, len(d.items), r * C + c))

    if topo == "decoupled":
        pre.append(f"Vrd vrd 0 {_num(tech.v_read_v)}")
        for c in range(C):
            d.r(f"Rd{c}", "vrd", f"b0_{c}", rd)
            for r in range(R):
                cell(r, c, f"b{r}_{c}", f"x{r}", f"s{r}_{c}")
                if r + 1 < R:
                    d.r(f"Rb{r}_{c}", f"b{r}_{c}", f"b{r + 1}_{c}", rbl)
                    d.r(f"Rs{r}_{c}", f"s{r}_{c}", f"s{r + 1}_{c}", rsl)
            d.add(f"Vm{c}", [f"s{R - 1}_{c}", f"k{c}"], "0")
            d.r(f"Rk{c}", f"k{c}", "0", rs)
    elif kind.coupled_drive == "gate":  # coupled 8T: shared read source line along each row
        pre.append(f"Vrd vrd 0 {_num(tech.v_read_v)}")
        for c in range(C):
            d.add(f"Vm{c}", ["vrd", f"d{c}"], "0")
            d.r(f"Rd{c}", f"d{c}", f"b0_{c}", rd)
            for r in range(R):
                cell(r, c, f"b{r}_{c}", f"x{r}", f"s{r}_{c}")
                if r + 1 < R:
                    d.r(f"Rb{r}_{c}", f"b{r}_{c}", f"b{r + 1}_{c}", rbl)
                if c + 1 < C:
                    d.r(f"Rs{r}_{c}", f"s{r}_{c}", f"s{r}_{c + 1}", rsl)
        for r in range(R):
            d.r(f"Rk{r}", f"s{r}_0", "0", rs)
    else:  # coupled resistor / 1T-1R: row voltage along the row line, columns sink at the bottom
        for r in range(R):
            d.r(f"Rd{r}", f"x{r}", f"w{r}_0", rd)
            for c in range(C):
                cell(r, c, f"w{r}_{c}", "vg", f"b{r}_{c}")
                if c + 1 < C:
                    d.r(f"Rw{r}_{c}", f"w{r}_{c}", f"w{r}_{c + 1}", rwl)
                if r + 1 < R:
                    d.r(f"Rb{r}_{c}", f"b{r}_{c}", f"b{r + 1}_{c}", rbl)
        for c in range(C):
            d.add(f"Vm{c}", [f"b{R - 1}_{c}", f"k{c}"], "0")
            d.r(f"Rk{c}", f"k{c}", "0", rs)

    return pre, d, spans


@dataclass(frozen=True)
class _ElementTemplate:
    """The array's element lines with every weight 0 and with every weight 1, and the cell (r * C + c)
    each line belongs to (R * C: a wire or source, which reads an appended 0): a deck's lines for any weights are these, each cell's
    taken from the weight it holds. Valid where a cell's lines depend on its own weight only and every
    cell writes as many lines for either weight (``_element_template`` checks that)."""
    pre: list[str]
    zero: np.ndarray      # object array of str
    one: np.ndarray
    cell: np.ndarray      # int64

    def lines(self, w: np.ndarray) -> list[str]:
        bits = np.concatenate([np.asarray(w, dtype=np.uint8).reshape(-1), np.zeros(1, np.uint8)])
        return np.where(bits[self.cell] == 1, self.one, self.zero).tolist()


#: (spec, impl) of the decks written so far (a template is made from the second deck of a spec on)
_WRITTEN: dict = {}


def _template_for(spec: ArraySpec, impl: str) -> _ElementTemplate | None:
    """The element template of ``spec`` (``_element_template``) from its second deck on; None for its first
    (one deck is written faster in full) and for a technology that cannot be a cache key."""
    key = (spec, impl)
    try:
        if key in _WRITTEN:
            return _element_template(spec, impl)
    except TypeError:
        return None
    if len(_WRITTEN) >= 64:
        _WRITTEN.clear()
    _WRITTEN[key] = True
    return None


@lru_cache(maxsize=4)
def _element_template(spec: ArraySpec, impl: str) -> _ElementTemplate | None:
    """The element lines of ``spec`` as a template (``_ElementTemplate``): a sweep's decks share every line
    but their cells', which the template fills in from the weights instead of writing the array again
    (the same text: the cells are written by the same writer). None where a cell kind writes a different
    number of lines for its two weights (then every deck is written in full)."""
    R, C = spec.rows, spec.cols
    pre, d0, spans0 = _array_elements(spec, impl, [[0] * C for _ in range(R)])
    _, d1, spans1 = _array_elements(spec, impl, [[1] * C for _ in range(R)])
    if spans0 != spans1 or len(d0.items) != len(d1.items):
        return None
    cell = np.full(len(d0.items), R * C, dtype=np.int64)     # R * C: the zero appended to the weights
    for first, end, rc in spans0:
        cell[first:end] = rc
    zero, one = np.empty(len(cell), dtype=object), np.empty(len(cell), dtype=object)
    zero[:], one[:] = list(d0.lines()), list(d1.lines())
    return _ElementTemplate(pre, zero, one, cell)


def sense_names(spec: ArraySpec) -> list[str]:
    """Names of the column ammeters (ngspice lower-cases them): current i(vm<c>) per column."""
    return [f"vm{c}" for c in range(spec.cols)]


def build_netlist(spec: ArraySpec, inputs, weights, *, klu: bool = False, node_voltages: bool = False,
                  extra_options: str = "", models: str | None = None) -> str:
    """The ngspice deck of ``spec`` for inputs (K, R) and weights (R, C), both 0/1.

    ``klu`` adds ``.options klu`` (only when the ngspice build has KLU); ``node_voltages`` saves every
    node voltage, otherwise only the column ammeters; ``extra_options`` is appended to ``.options``
    (used for convergence retries); ``models`` picks the device-model implementation (module doc)."""
    x, w = check_inputs(spec, inputs, weights)
    tech, R, C, K = spec.tech, spec.rows, spec.cols, x.shape[0]
    topo: str = spec.topology  # type: ignore[assignment]  # str: ArraySpec.__post_init__ resolves None
    kind = cell_kind(tech)
    lin = kind.linear
    impl = "bsource" if lin else resolve_models(models)
    out = [
        f"* cosim crossbar: tech={tech.name or tech.cell} cell={tech.cell} rows={R} cols={C} "
        f"topology={topo} vectors={K}",
        f"* v_read_v={_num(tech.v_read_v)} v_wl_v={_num(tech.v_wl_v)} r_wire_ohm={_num(tech.r_wire_ohm)} "
        f"r_driver_ohm={_num(tech.r_driver_ohm)} r_sink_ohm={_num(tech.r_sink_ohm)}"
        + ("" if tech.lines_equal else " " + " ".join(f"r_{ln}_ohm={_num(tech.wire_ohm(ln))}" for ln in ("bl", "sl", "wl"))),
    ]
    if impl == "compiled":
        # the SPICE backends provide the library under this name (cosim.circuit.devices.compiled_library)
        out += [f"* device models: compiled ({compiled_library_name()})", ".control",
                f"pre_osdi {compiled_library_name()}", ".endc"]
    elif impl == "bsimcmg" and not lin:
        from . import bsimcmg
        # the PDK's FinFETs (cosim.circuit.bsimcmg) at the cards' nominal temperature, 25 C (the behavioural
        # model's fit temperature too); ngspice's default is 27 C
        out += [f"* device models: BSIM-CMG ({bsimcmg.library_name()}, corner {bsimcmg.corner()})", ".control",
                f"pre_osdi {bsimcmg.library_name()}", ".endc", ".temp 25"]
    elif not lin:
        out.append("* device models: B-source")
    opts = []
    if klu:
        opts.append("klu")
    if not lin:
        # noopiter: start the operating point with gmin stepping instead of a plain Newton run that
        # large 8T arrays do not finish in itl1 iterations (128x128 sram8t: 159 instead of 260 Newton
        # iterations, identical currents; 64x64 and 128x128 1T-1R unchanged).
        # reltol: ngspice's default 1e-3 stops the (quadratically converging) Newton iteration one step
        # early on these arrays, up to 2e-4 off in column current; 1e-6 costs about one more iteration
        # and leaves at most 6e-7 (measured against reltol 1e-8 on 16- and 64-row arrays).
        # (an explicit reltol in extra_options replaces this one: ngspice keeps the first value it reads)
        if impl == "bsimcmg":
            # BSIM-CMG (measured, 8T 64x1 and 64x4): Newton, gmin and source stepping all fail with
            # rshunt 1e12 (the inner node between two off fins floats) and with reltol below 1e-5;
            # 1 nS to ground per node and reltol 1e-5 converge in a few ms. The shunts touch no ammeter
            # path but the source-line nodes, which sit within millivolts of ground (docs/VALIDATION.md).
            opts.append(f"rshunt={BSIMCMG_RSHUNT_OHM:g}" + ("" if "reltol" in extra_options else f" reltol={BSIMCMG_RELTOL:g}"))
        else:
            opts.append(f"rshunt={RSHUNT_OHM:g} noopiter" + ("" if "reltol" in extra_options else f" reltol={RELTOL:g}"))
    if extra_options:
        opts.append(extra_options)
    if opts:
        out.append(".options " + " ".join(opts))
    for text in kind.models(topo, impl):
        out.append(text.rstrip("\n"))
    if impl != "compiled":
        out.extend(kind.subckts(topo))

    out.append("Vsw sw 0 0")

    # Row controls: the cell's gate (8T read word line, 1T-1R gate, resistor 0/1 switch), or the row
    # voltage of a coupled cell driven on its line
    level = kind.row_level_v(topo)
    row_ctl = []
    for r in range(R):
        row_ctl.extend(_row_source(f"Bx{r}", f"x{r}", x[:, r] * level))
    out.extend(kind.fixed_sources(topo))

    template = _template_for(spec, impl)
    if template is not None:
        pre, lines = template.pre, template.lines(w)
    else:
        pre, d, _ = _array_elements(spec, impl, w.tolist())
        lines = list(d.lines())
    out.extend(pre)
    out.extend(row_ctl)
    out.extend(lines)
    if node_voltages:
        out.append(".save all")
    else:
        names = sense_names(spec)
        for i in range(0, len(names), 16):
            out.append(".save " + " ".join(f"i({n})" for n in names[i:i + 16]))
    out.append(f".dc Vsw 0 {K - 1} 1")
    out.append(".end")
    return "\n".join(out) + "\n"
