"""The torch surrogate: exactness without wires, agreement with fresh SPICE, shapes, partial tiles."""

import numpy as np
import pytest
import torch

from cosim.surrogate.adc import ADC
from cosim.sweep.calibration import SweepConfig
from cosim.surrogate.model import features_np
from cosim.surrogate.fit import calibrate
from cosim.errors import InputError
from cosim.surrogate.evaluate import Surrogate
from cosim.surrogate.tables import default_table_path
from cosim.circuit.technology import get_technology

pytestmark = pytest.mark.ngspice


@pytest.fixture(scope="module")
def bare_table(tmp_path_factory):
    """Resistor cells, no wire / driver / sink resistance: currents are exactly k*I_on + L*I_off."""
    tech = get_technology("resistor", r_wire_ohm=0.0, r_driver_ohm=0.0, r_sink_ohm=0.0)
    cfg = SweepConfig(tech=tech, rows=16, cols=8, topology="decoupled", seed=0, vectors=8)
    return calibrate(cfg, 3, tmp_path_factory.mktemp("bare"), progress=False)


@pytest.fixture(scope="module")
def wire_table(tmp_path_factory):
    cfg = SweepConfig(tech=get_technology("resistor"), rows=32, cols=8, topology="decoupled", seed=0, vectors=16)
    return calibrate(cfg, 4, tmp_path_factory.mktemp("wire"), progress=False)


def _bits(rng, shape, p=0.5):
    return torch.as_tensor((rng.random(shape) < p).astype(np.float32))


def test_zero_wire_resistance_is_ideal(bare_table, rng):
    sur = Surrogate.from_table(bare_table)
    x, w = _bits(rng, (200, 16)), _bits(rng, (16, 8))
    np.testing.assert_allclose(sur.column_currents(x, w).numpy(), sur.ideal_currents(x, w).numpy(), rtol=1e-5, atol=1e-12)
    assert torch.equal(sur.read(x, w), sur.adc.digitize(sur.ideal_currents(x, w)))
    ones = torch.ones(16, 8)                       # no leaking cells: codes are the exact AND-counts
    assert torch.equal(sur.read(x, ones), x @ ones)


def test_matches_numpy_features(wire_table, rng):
    sur = Surrogate.from_table(wire_table)
    x, w = _bits(rng, (50, 32)), _bits(rng, (32, 6))
    got = sur.column_currents(x, w).double().numpy()
    on = (x.numpy()[:, None, :] * w.numpy().T[None]).reshape(-1, 32)
    act = np.repeat(x.numpy()[:, None, :], 6, 1).reshape(-1, 32)
    k, F = features_np(on, act, sur.orders, sur.leak, sur.terms)
    want = np.einsum("nf,nf->n", wire_table["coef"][k], F).reshape(50, 6)
    np.testing.assert_allclose(got, want, rtol=2e-5)


def test_against_fresh_spice_resistor(wire_table, rng):
    """Fresh random 32x8 resistor array: surrogate within 1 % relative RMS, beats count-only."""
    from cosim.circuit.netlist import ArraySpec
    from cosim.circuit.spice import run_array

    sur = Surrogate.from_table(wire_table)
    x, w = _bits(rng, (16, 32)), _bits(rng, (32, 8))
    spice = run_array(ArraySpec(sur.tech, 32, 8, "decoupled"), x.numpy(), w.numpy()).column_current_a
    rel = lambda p: np.sqrt(np.mean((p - spice) ** 2)) / np.sqrt(np.mean(spice ** 2))  # noqa: E731
    err = rel(sur.column_currents(x, w).double().numpy())
    assert err < 0.01
    assert err < 0.5 * rel(sur.count_only_currents(x, w).double().numpy())


def test_against_fresh_spice_sram8t_shipped_table(rng):
    """The shipped 64-row 8T-SRAM table against a fresh 64x4 SPICE run: within 2 % relative RMS."""
    from cosim.circuit.netlist import ArraySpec
    from cosim.circuit.spice import run_array

    sur = Surrogate.from_table(default_table_path("sram8t", 64))
    x, w = _bits(rng, (4, 64)), _bits(rng, (64, 4))
    spice = run_array(ArraySpec(sur.tech, 64, 4, "decoupled"), x.numpy(), w.numpy()).column_current_a
    got = sur.column_currents(x, w).double().numpy()
    assert np.sqrt(np.mean((got - spice) ** 2)) / np.sqrt(np.mean(spice ** 2)) < 0.02


def test_partial_tile_and_shapes(wire_table, rng):
    sur = Surrogate.from_table(wire_table, adc=ADC(bits=4, references="calibrated"))
    assert sur.rows == 32 and sur.topology == "decoupled" and sur.tech.name == "resistor" and sur.i_cell_a > 0
    x, w = _bits(rng, (10, 20)), _bits(rng, (20, 5))
    xp = torch.cat([x, torch.zeros(10, 12)], 1)
    wp = torch.cat([w, _bits(rng, (12, 5))], 0)
    torch.testing.assert_close(sur.column_currents(x, w), sur.column_currents(xp, wp))
    codes = sur.read(x, w)
    assert codes.shape == (10, 5) and codes.max() <= 15 and torch.equal(codes, codes.round())
    sur.chunk = 3   # chunking does not change results
    torch.testing.assert_close(sur.column_currents(xp, wp), Surrogate.from_table(wire_table).column_currents(xp, wp))


@pytest.mark.parametrize("xs,ws", [((4, 33), (33, 2)), ((4, 8), (9, 2)), ((2, 2, 8), (8, 2))])
def test_bad_shapes(wire_table, xs, ws):
    sur = Surrogate.from_table(wire_table)
    with pytest.raises(InputError):
        sur.column_currents(torch.zeros(xs), torch.zeros(ws))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_gpu_matches_cpu(wire_table, rng):
    x, w = _bits(rng, (64, 32)), _bits(rng, (32, 8))
    cpu = Surrogate.from_table(wire_table).column_currents(x, w)
    gpu = Surrogate.from_table(wire_table, device="cuda").column_currents(x, w).cpu()
    torch.testing.assert_close(cpu, gpu, rtol=1e-4, atol=1e-10)
