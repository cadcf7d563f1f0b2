"""The device-model part of the error budget: cosim's behavioural FinFET against BSIM-CMG (the PDK's
compact model, cosim.circuit.bsimcmg) -- single fins over the (Vgs, Vds) plane per flavour, the 8T read stack,
the 1T-1R cell, a 64-row column. Prints JSON (and writes it to --json).

    PYTHONPATH=. .venv/bin/python scripts/validate_bsimcmg.py --json bsimcmg_validation.json

Both models in the same ngspice 46 run per curve (the behavioural one as cosim's compiled OSDI device,
the same equations as the B-source model), at 25 C (the cards' tnom and the behavioural fit's
temperature). Needs the compiler (bash scripts/setup.sh --with-bsimcmg) and the PDK files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from cosim.circuit import bsimcmg
from cosim.circuit.devices import compiled_library_name, model_text
from cosim.circuit.spice.backends import run_subprocess

STEP_V = 0.05
VDD_V = 0.7


def _grid(step=STEP_V, top=VDD_V):
    return np.round(np.arange(0, top + step / 2, step), 6)


def _deck(body: list[str], flavours, sweep: str) -> str:
    return "\n".join(["* cosim BSIM-CMG validation", ".control", f"pre_osdi {compiled_library_name()}",
                      f"pre_osdi {bsimcmg.library_name()}", ".endc", ".temp 25", ".options reltol=1e-5",
                      model_text("finfet7_osdi.lib").rstrip(), model_text("reram_osdi.lib").rstrip(),
                      bsimcmg.card_text(tuple(flavours)).rstrip(), *body, sweep, ".end"]) + "\n"


def fin_plane(flavour: str) -> dict:
    """Id of one fin, behavioural vs BSIM-CMG, Vgs and Vds over 0..0.7 V in 50 mV."""
    g = _grid()
    body = ["Vd d 0 0", "Vg g 0 0", "Vmb d db 0", "Vmc d dc 0",
            f"Nb db g 0 nfet_{flavour}_c nfin=1",
            f"Nc dc g 0 0 nmos_{flavour} l={bsimcmg.GATE_LENGTH_M!r} nfin=1"]
    data, _ = run_subprocess(_deck(body, [flavour], f".dc Vd 0 {VDD_V} {STEP_V} Vg 0 {VDD_V} {STEP_V}"), len(g) ** 2)
    ib = np.asarray(data["i(vmb)"]).reshape(len(g), len(g))      # [vgs, vds]
    ic = np.asarray(data["i(vmc)"]).reshape(len(g), len(g))
    return {"vgs_v": g.tolist(), "vds_v": g.tolist(), "behavioural_a": ib.tolist(), "bsimcmg_a": ic.tolist()}


def stack_curve(flavour: str) -> dict:
    """8T read stack (two fins in series, both gates at 0.7 V): current against the stack voltage."""
    g = _grid()
    body = ["Vd d 0 0", "Vg g 0 0.7", "Vmb d db 0", "Vmc d dc 0", f"Nb db g g 0 nstack_{flavour}_c nfin=1",
            f"Nc1 dc g m 0 nmos_{flavour} l={bsimcmg.GATE_LENGTH_M!r} nfin=1",
            f"Nc2 m g 0 0 nmos_{flavour} l={bsimcmg.GATE_LENGTH_M!r} nfin=1"]
    data, _ = run_subprocess(_deck(body, [flavour], f".dc Vd 0 {VDD_V} {STEP_V}"), len(g))
    return {"v_v": g.tolist(), "behavioural_a": list(map(float, data["i(vmb)"])),
            "bsimcmg_a": list(map(float, data["i(vmc)"]))}


def reram_cell_curves(flavour: str, nfin: int) -> dict:
    """1T-1R (ReRAM LRS/HRS from the bit line, access FET of nfin fins, gate at 0.7 V): current against
    the cell voltage 0..0.7 V (the read is at 0.2 V)."""
    from cosim.circuit.technology import get_technology
    t = get_technology("reram1t1r")
    g = _grid()
    body = ["Vd d 0 0", "Vg g 0 0.7"]
    for state, gap in (("lrs", t.reram_gap_lrs_m), ("hrs", t.reram_gap_hrs_m)):
        rr = f"reram_c i0={t.reram_i0_a!r} g0={t.reram_g0_m!r} v0={t.reram_v0_v!r} gap={gap!r}"
        body += [f"Vmb{state} d db{state} 0", f"Vmc{state} d dc{state} 0",
                 f"Nrb{state} db{state} mb{state} {rr}", f"Ntb{state} mb{state} g 0 nfet_{flavour}_c nfin={nfin}",
                 f"Nrc{state} dc{state} mc{state} {rr}",
                 f"Ntc{state} mc{state} g 0 0 nmos_{flavour} l={bsimcmg.GATE_LENGTH_M!r} nfin={nfin}"]
    data, _ = run_subprocess(_deck(body, [flavour], f".dc Vd 0 {VDD_V} {STEP_V}"), len(g))
    out = {"v_v": g.tolist()}
    for state in ("lrs", "hrs"):
        out[state] = {"behavioural_a": list(map(float, data[f"i(vmb{state})"])),
                      "bsimcmg_a": list(map(float, data[f"i(vmc{state})"]))}
    return out


def column(tech_name: str, rows: int = 64) -> dict:
    """One column of ``rows`` cells, all weights 1, k rows on for k = 0, 8, ..., rows (and the same with
    random weights): column current, compiled behavioural vs BSIM-CMG, full array netlist (wires)."""
    from cosim.circuit.netlist import ArraySpec
    from cosim.circuit.spice import run_array
    from cosim.circuit.technology import get_technology
    spec = ArraySpec(get_technology(tech_name), rows, 1)
    ks = list(range(0, rows + 1, 8))
    x = np.zeros((len(ks), rows), dtype=np.uint8)
    for i, k in enumerate(ks):
        x[i, :k] = 1
    w = np.ones((rows, 1), dtype=np.uint8)
    out = {"tech": tech_name, "rows": rows, "rows_on": ks}
    for impl in ("compiled", "bsimcmg"):
        res = run_array(spec, x, w, models=impl)
        out[impl + "_a"] = res.column_current_a[:, 0].tolist()
        out[impl + "_seconds"] = res.seconds
    return out


def summary(fin: dict) -> dict:
    ib, ic = np.asarray(fin["behavioural_a"]), np.asarray(fin["bsimcmg_a"])
    g = np.asarray(fin["vgs_v"])
    d = np.asarray(fin["vds_v"])
    ratio = np.divide(ib, ic, out=np.full_like(ib, np.nan), where=np.abs(ic) > 0)
    on = (g[:, None] >= 0.4) & (d[None, :] >= 0.05)
    sub = (g[:, None] <= 0.2) & (d[None, :] >= 0.05)
    iv = int(np.argmin(abs(g - 0.7)))
    return {"on_region_ratio_min": float(np.nanmin(ratio[on])), "on_region_ratio_max": float(np.nanmax(ratio[on])),
            "on_region_median_abs_err": float(np.nanmedian(np.abs(ratio[on] - 1))),
            "subthreshold_ratio_min": float(np.nanmin(ratio[sub])), "subthreshold_ratio_max": float(np.nanmax(ratio[sub])),
            "vgs_0p7_ratio_min": float(np.nanmin(ratio[iv, 1:])), "vgs_0p7_ratio_max": float(np.nanmax(ratio[iv, 1:])),
            "idsat_behavioural_a": float(ib[iv, -1]), "idsat_bsimcmg_a": float(ic[iv, -1]),
            "ioff_behavioural_a": float(ib[0, -1]), "ioff_bsimcmg_a": float(ic[0, -1])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--flavours", default="rvt,sram,lvt,slvt")
    args = ap.parse_args(argv)
    bsimcmg.library()
    out = {"corner": bsimcmg.corner(), "card": str(bsimcmg.card_file().name), "fins": {}, "fin_summary": {}}
    for fl in args.flavours.split(","):
        out["fins"][fl] = fin_plane(fl)
        out["fin_summary"][fl] = summary(out["fins"][fl])
    out["stack_rvt"] = stack_curve("rvt")
    out["reram1t1r_rvt_2fin"] = reram_cell_curves("rvt", 2)
    out["columns"] = [column("sram8t"), column("reram1t1r")]
    corners = {}
    for c in bsimcmg.CORNERS:
        os.environ["COSIM_ASAP7_CORNER"] = c
        corners[c] = summary(fin_plane("rvt"))["idsat_bsimcmg_a"]
    os.environ.pop("COSIM_ASAP7_CORNER")
    out["rvt_idsat_by_corner_a"] = corners
    text = json.dumps(out)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(json.dumps({k: v for k, v in out.items() if k not in ("fins",)}, indent=1)[:20000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
