"""Cell kinds as classes (cosim.circuit.cells): the decks of the built-in kinds stay byte-identical."""

import json

import pytest

from cosim.circuit import bsimcmg
from cosim.circuit.cells import CELL_KINDS, CellKind, cell_kind, register
from cosim.circuit.technology import get_technology
from cosim.errors import InputError

from golden_decks import GOLDEN, cases, deck_hash, key

_GOLD = json.loads(GOLDEN.read_text())


def _has_cards() -> bool:
    try:
        bsimcmg.card_file()
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.parametrize("case", list(cases()), ids=lambda c: key(*c))
def test_decks_are_the_golden_ones(case):
    if case[2] == "bsimcmg" and not (_has_cards() and key(*case) in _GOLD):
        pytest.skip("no PDK model cards here")
    assert deck_hash(*case) == _GOLD[key(*case)]


def test_every_builtin_kind_has_its_ports_and_states():
    for name in ("sram8t", "reram1t1r", "resistor"):
        kind = cell_kind(get_technology(name))
        assert set(kind.ports) == {"drive", "sense", "gate", "state"}
        assert set(kind.state_meaning) == {0, 1}
        for topo in ("decoupled", "coupled"):
            assert kind.states(topo).shape == (2, 2, 2)
    assert cell_kind(get_technology("resistor")).linear
    assert not cell_kind(get_technology("sram8t")).linear


def test_register_refuses_what_is_not_a_cell_kind():
    with pytest.raises(InputError):
        register(int)

    class NoName(CellKind):
        pass
    with pytest.raises(InputError):
        register(NoName)
    assert "sram8t" in CELL_KINDS
