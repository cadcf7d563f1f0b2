"""Golden decks: the sha256 of decks the netlist generator wrote for small cases of the built-in
technologies, with the device-model library texts cut out (they are files, not generated), so that a
refactoring of the generator is checked to keep every deck byte-identical (tables and caches key on
them). ``python tests/golden_decks.py`` writes tests/data/golden_decks.json again (only do that when a
deck is meant to change)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from cosim.circuit import bsimcmg
from cosim.circuit.devices import model_text
from cosim.circuit.netlist import ArraySpec, build_netlist
from cosim.circuit.technology import get_technology

GOLDEN = Path(__file__).parent / "data" / "golden_decks.json"
LIBS = ("finfet7_osdi.lib", "reram_osdi.lib", "finfet7.lib", "reram.lib", "cells.lib")


def cases():
    for tech in ("sram8t", "reram1t1r", "resistor"):
        for topo in ("decoupled", "coupled"):
            for models in ("compiled", "bsource", "bsimcmg"):
                for r_wire in (10.0, 0.0):
                    yield tech, topo, models, r_wire


def stripped(deck: str, models: str) -> str:
    for n in LIBS:
        deck = deck.replace(model_text(n).rstrip("\n"), f"<{n}>")
    if models == "bsimcmg" and "BSIM-CMG model cards" in deck:
        deck = deck.replace(bsimcmg.card_text(tuple(FL)).rstrip("\n"), "<cards>")
    return deck


FL = ("rvt",)


def deck_hash(tech: str, topo: str, models: str, r_wire: float) -> str:
    rng = np.random.default_rng(7)
    spec = ArraySpec(get_technology(tech, r_wire_ohm=r_wire, fet_flavour="rvt"), 5, 3, topo)
    x = rng.integers(0, 2, (4, 5))
    x[0] = 1   # one constant row source among the pwl ones
    w = rng.integers(0, 2, (5, 3))
    deck = build_netlist(spec, x, w, models=models, klu=True)
    return hashlib.sha256(stripped(deck, models).encode()).hexdigest()


def key(tech, topo, models, r_wire):
    return f"{tech}/{topo}/{models}/r{r_wire:g}"


if __name__ == "__main__":
    out = {}
    for c in cases():
        if c[2] == "bsimcmg":
            try:
                bsimcmg.card_file()
            except Exception:  # noqa: BLE001 - no PDK cards here: those cases are left out
                continue
        out[key(*c)] = deck_hash(*c)
    GOLDEN.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(len(out), "decks")
