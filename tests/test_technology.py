import dataclasses

import pytest

from cosim.errors import InputError
from cosim.circuit.technology import REGISTRY, Technology, get_technology, source_of


def test_every_parameter_has_doc_and_source():
    for f in dataclasses.fields(Technology):
        assert f.metadata.get("doc"), f.name
        assert f.metadata.get("source"), f.name
        for tech in REGISTRY.values():
            assert source_of(tech, f.name)


def test_overrides_and_errors():
    t = get_technology("reram1t1r", r_wire_ohm=2.0)
    assert t.r_wire_ohm == 2.0 and t.cell == "reram1t1r"
    assert get_technology("reram1t1r").r_wire_ohm == 10.0  # registry untouched
    with pytest.raises(InputError, match="unknown technology 'finfet3'"):
        get_technology("finfet3")
    with pytest.raises(InputError, match="unknown technology parameter"):
        get_technology("sram8t", r_wire=1.0)
    with pytest.raises(InputError, match="non-negative"):
        get_technology("sram8t", r_wire_ohm=-1.0)
    with pytest.raises(InputError, match="topology"):
        get_technology("sram8t", topology="mesh")
