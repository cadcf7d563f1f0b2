"""A cell kind beyond the built-ins, as one class: a 1T-1R cell whose memory element is ohmic (a linear
resistor of r_on_ohm for a stored 1, r_off_ohm for a 0: a phase-change or magnetic-tunnel element read far
below switching, say) in series with an ASAP7 access FinFET whose gate is the input. Read with
examples/cells/ohmic1t1r.toml (``cell_module = "ohmic1t1r.py"``); docs/TECHNOLOGIES.md walks through it.

The exact solver has no cell function for it (``kernel_kind = None``): ngspice simulates it, with the
compiled FinFET model (flat: a resistor to the inner node, the FET from there) or the B-source one (a
subcircuit per stored bit).
"""

from cosim.circuit.cells import CellKind, register
from cosim.errors import InputError


@register
class Ohmic1T1R(CellKind):
    name = "ohmic1t1r"
    kernel_kind = None          # no exact-solver cell function: ngspice only
    ports = {"drive": "a", "gate": "ctl", "sense": "b", "state": "cell1/cell0 (resistor r_on_ohm / r_off_ohm)"}
    state_meaning = {0: "the element at r_off_ohm", 1: "the element at r_on_ohm"}
    coupled_drive = "line"      # coupled: the input is a row voltage, every gate on at v_wl_v
    libraries = {"compiled": ("finfet7_osdi.lib",), "bsource": ("finfet7.lib",)}

    def models(self, topology, impl):
        if impl == "bsimcmg":
            raise InputError("the ohmic1t1r example cell has no BSIM-CMG form; use --models compiled or bsource")
        return super().models(topology, impl)

    def subckts(self, topology):
        t = self.tech
        fet = f"nfet_{t.fet_flavour} nfin={t.fet_nfin}"
        return [".subckt cell1 a ctl b", f"Rm a m {t.r_on_ohm!r}", f"Xt m ctl b {fet}", ".ends",
                ".subckt cell0 a ctl b", f"Rm a m {t.r_off_ohm!r}", f"Xt m ctl b {fet}", ".ends"]

    def row_level_v(self, topology):
        return self.tech.v_read_v if topology == "coupled" else self.tech.v_wl_v

    def fixed_sources(self, topology):
        return [f"Vg vg 0 {self.tech.v_wl_v!r}"] if topology == "coupled" else []

    def writer(self, topology, impl):
        t = self.tech
        if impl == "compiled":
            fet = f"nfet_{t.fet_flavour}_c nfin={t.fet_nfin}"
            r = (repr(t.r_off_ohm), repr(t.r_on_ohm))

            def put(add, row, col, a, ctl, b, wb):   # resistor from a to the inner node m, FET from m to b
                m = f"m{row}_{col}"
                add(f"Rm{row}_{col}", [a, m], r[wb])
                add(f"Nt{row}_{col}", [m, ctl, b], fet)
        else:
            def put(add, row, col, a, ctl, b, wb):
                add(f"X{row}_{col}", [a, ctl, b], "cell1" if wb else "cell0")
        return put
