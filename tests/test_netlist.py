"""Netlist generator: validation, determinism, structure."""

import re

import numpy as np
import pytest

from cosim.errors import CosimError, InputError
from cosim.circuit.netlist import ArraySpec, build_netlist, check_inputs, sense_names
from cosim.circuit.technology import get_technology


@pytest.mark.parametrize("rows,cols", [(0, 4), (4, 0), (-1, 2), (513, 2), (2.5, 2), ("8", 2), (True, 2), (10**6, 1)])
def test_bad_sizes(rows, cols):
    with pytest.raises(InputError) as e:
        ArraySpec(get_technology("resistor"), rows, cols)
    assert "\n" not in str(e.value)


def test_topology_default_and_bad():
    t = get_technology("sram8t")
    assert ArraySpec(t, 4, 4).topology == t.topology
    assert ArraySpec(t, 4, 4, "coupled").topology == "coupled"
    with pytest.raises(InputError):
        ArraySpec(t, 4, 4, "diagonal")
    with pytest.raises(CosimError):
        get_technology("nosuchtech")
    with pytest.raises(InputError):
        ArraySpec("sram8t", 4, 4)


def test_bad_inputs_and_weights():
    spec = ArraySpec(get_technology("resistor"), 3, 2)
    w = np.ones((3, 2))
    with pytest.raises(InputError, match="shape"):
        check_inputs(spec, np.ones((2, 4)), w)
    with pytest.raises(InputError, match="shape"):
        check_inputs(spec, np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(InputError, match="0 and 1"):
        check_inputs(spec, np.array([[0, 2, 1]]), w)
    with pytest.raises(InputError, match="0 and 1"):
        check_inputs(spec, np.ones((1, 3)), np.full((3, 2), 0.5))
    with pytest.raises(InputError):
        check_inputs(spec, np.array([["a", "b", "c"]]), w)
    with pytest.raises(InputError):
        check_inputs(spec, np.ones((0, 3)), w)
    x, _ = check_inputs(spec, np.array([1, 0, 1]), w.astype(bool))  # 1-D is one vector; bool is fine
    assert x.shape == (1, 3)


@pytest.mark.parametrize("models", ["bsource", "compiled"])
@pytest.mark.parametrize("tech", ["sram8t", "reram1t1r", "resistor"])
@pytest.mark.parametrize("topology", ["decoupled", "coupled"])
def test_deterministic_and_complete(tech, topology, models, rng):
    spec = ArraySpec(get_technology(tech), 5, 3, topology)
    x = rng.integers(0, 2, (4, 5))
    w = rng.integers(0, 2, (5, 3))
    a = build_netlist(spec, x, w, models=models)
    assert a == build_netlist(spec, x.copy(), w.copy(), models=models)
    assert a != build_netlist(spec, x, 1 - w, models=models)
    assert a.rstrip().endswith(".end")
    assert ".dc Vsw 0 3 1" in a
    for name in sense_names(spec):
        assert re.search(rf"^V{name[1:]} ", a, re.M) or re.search(rf"^{name.capitalize()} ", a, re.M)
    if models == "compiled" and tech != "resistor":  # flat: two compiled devices per crosspoint
        assert len(re.findall(r"^N[crt]\d+_\d+ ", a, re.M)) == (15 if tech == "sram8t" else 2 * 15)
        assert not re.search(r"^X", a, re.M) and ".subckt" not in a
        assert re.search(r"^pre_osdi cosim_devices-[0-9a-f]{12}\.osdi$", a, re.M)
    else:
        assert len(re.findall(r"^[XR]\d+_\d+ ", a, re.M)) == 15  # one cell per crosspoint
        assert "pre_osdi" not in a
    wires = len(re.findall(r"^R[bsw]\d+_\d+ ", a, re.M))
    assert wires == (2 * 4 * 3 if topology == "decoupled" else 4 * 3 + 5 * 2)
    assert ("klu" in a) is False
    assert ".options klu" in build_netlist(spec, x, w, klu=True, models=models)


@pytest.mark.parametrize("models", ["bsource", "compiled"])
@pytest.mark.parametrize("tech", ["sram8t", "reram1t1r", "resistor"])
@pytest.mark.parametrize("topology", ["decoupled", "coupled"])
@pytest.mark.parametrize("r_wire_ohm", [None, 0.0])
def test_template_decks_equal_decks_written_in_full(tech, topology, models, r_wire_ohm, rng):
    """From a spec's second deck on the cells are filled into a template of the array's lines
    (netlist._element_template): the same text as the deck written in full, whatever the weights."""
    from cosim.circuit import netlist

    t = get_technology(tech) if r_wire_ohm is None else get_technology(tech, r_wire_ohm=0.0, r_driver_ohm=0.0)
    spec = ArraySpec(t, 6, 4, topology)
    cases = [(rng.integers(0, 2, (3, 6)), w) for w in (rng.integers(0, 2, (6, 4)), np.zeros((6, 4), int),
                                                       np.ones((6, 4), int), np.eye(6, 4, dtype=int))]
    full = []
    for x, w in cases:
        netlist._WRITTEN.clear()
        full.append(build_netlist(spec, x, w, models=models, klu=True))
    netlist._WRITTEN.clear()
    netlist._element_template.cache_clear()
    build_netlist(spec, *cases[0], models=models)                  # the first deck: written in full
    for (x, w), deck in zip(cases, full):
        assert build_netlist(spec, x, w, models=models, klu=True) == deck
    assert netlist._element_template.cache_info().currsize == 1    # ... and these from the template


def test_device_model_choice(monkeypatch):
    spec = ArraySpec(get_technology("sram8t"), 2, 2)
    x, w = np.ones((1, 2)), np.ones((2, 2))
    monkeypatch.setenv("COSIM_SPICE_MODELS", "bsource")
    assert "pre_osdi" not in build_netlist(spec, x, w)
    assert "pre_osdi" in build_netlist(spec, x, w, models="compiled")   # the argument wins
    monkeypatch.setenv("COSIM_SPICE_MODELS", "verilog")
    with pytest.raises(InputError, match="COSIM_SPICE_MODELS"):
        build_netlist(spec, x, w)
    with pytest.raises(InputError, match="expected one of auto, compiled, bsource"):
        build_netlist(spec, x, w, models="fast")


def test_zero_resistances_merge_nodes(rng):
    t = get_technology("resistor", r_wire_ohm=0.0, r_driver_ohm=0.0, r_sink_ohm=0.0)
    spec = ArraySpec(t, 4, 2)
    deck = build_netlist(spec, rng.integers(0, 2, (2, 4)), rng.integers(0, 2, (4, 2)))
    assert not re.search(r"^R\S* \S+ \S+ 0\.0$", deck, re.M)   # no 0-ohm resistor left
    assert not re.search(r"^R[bsdk]", deck, re.M)
    assert re.search(r"^X0_0 vrd ", deck, re.M)                  # bit line merged into the driver node


def test_pwl_plateaus_hold_each_vector():
    spec = ArraySpec(get_technology("resistor"), 2, 1)
    deck = build_netlist(spec, np.array([[1, 1], [0, 1], [1, 1]]), np.ones((2, 1)))
    assert "Vx1 x1 0 1.0" in deck                                # constant row: plain source
    assert "-0.25,1.0,0.25,1.0,0.75,0.0,1.25,0.0,1.75,1.0,2.25,1.0" in deck.replace("\n+ ", "")


def test_coupled_8t_senses_at_the_bit_line():
    spec = ArraySpec(get_technology("sram8t"), 2, 2, "coupled")
    deck = build_netlist(spec, np.ones((1, 2)), np.ones((2, 2)))
    assert re.search(r"^Vm0 vrd d0 0$", deck, re.M)
    assert re.search(r"^Rk1 s1_0 0 ", deck, re.M)               # row source line sinks at column 0


def test_committed_examples_are_reproduced():
    from cosim.paths import CHECKOUT_DIR
    x = np.array([[1, 0, 1, 1], [0, 1, 1, 0]])
    w = np.fromfunction(lambda r, c: (r + c + 1) % 2, (4, 3)).astype(int)
    for tech, topo, models in [("resistor", "decoupled", ""), ("resistor", "coupled", ""),
                               ("sram8t", "decoupled", ""), ("reram1t1r", "coupled", ""),
                               ("sram8t", "decoupled", "compiled")]:
        path = CHECKOUT_DIR / "netlists" / f"{tech}_4x3_{topo}{'_' + models if models else ''}.cir"
        deck = build_netlist(ArraySpec(get_technology(tech), 4, 3, topo), x, w, models=models or "bsource")
        assert path.read_text() == deck, path.name
