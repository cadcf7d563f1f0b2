"""The column ADC: levels, rounding, clipping, bits, calibrated references."""

import numpy as np
import pytest
import torch

from cosim.surrogate.adc import ADC
from cosim.errors import InputError
from cosim.surrogate.tables import LookupTable


def test_ideal_rounding_and_clipping():
    adc = ADC(bits=3, references="ideal", i_cell_a=1e-6)
    cur = np.array([-1e-7, 0.0, 0.49e-6, 0.51e-6, 2.2e-6, 6.9e-6, 7.6e-6, 1e-3])
    assert adc.digitize(cur).tolist() == [0, 0, 0, 1, 2, 7, 7, 7]
    assert adc.max_code == 7
    t = adc.digitize(torch.tensor(cur, dtype=torch.float32))
    assert isinstance(t, torch.Tensor) and t.tolist() == [0, 0, 0, 1, 2, 7, 7, 7]


def test_rows_limit_and_lsb():
    adc = ADC(bits=8, references="ideal", i_cell_a=1e-6, rows=10)
    assert adc.max_code == 10
    assert adc.digitize(np.array([50e-6]))[0] == 10
    coarse = ADC(bits=2, references="ideal", i_cell_a=1e-6, lsb_counts=4)
    # codes 0..3 stand for counts 0, 4, 8, 12
    assert coarse.digitize(np.array([1.9e-6, 2.1e-6, 7e-6, 100e-6])).tolist() == [0, 4, 8, 12]


def test_calibrated_levels_from_table():
    rows = 4
    mean = np.array([0.0, 0.9, 1.7, 2.4, 3.0]) * 1e-6
    table = LookupTable(arrays={"count_mean_a": mean}, meta={},
                        provenance={"rows": rows, "cols": 1, "topology": "decoupled", "i_cell_a": 1e-6})
    cal = ADC(references="calibrated").bind(table)
    ideal = ADC(references="ideal").bind(table)
    assert cal.max_code == rows and ideal.max_code == rows
    np.testing.assert_allclose(cal.levels_a(), mean, atol=1e-15)
    i = np.array([2.35e-6, 2.9e-6])
    assert cal.digitize(i).tolist() == [3, 4]
    assert ideal.digitize(i).tolist() == [2, 3]


@pytest.mark.parametrize("kw", [{"bits": 0}, {"bits": 17}, {"bits": 2.5}, {"references": "magic"},
                                {"lsb_counts": 0}, {"i_cell_a": -1.0}, {"levels_a": [0.0, 2.0, 1.0]}])
def test_bad_configuration(kw):
    with pytest.raises(InputError):
        ADC(**kw)


def test_unbound_adc_is_an_error():
    with pytest.raises(InputError):
        ADC(bits=4).digitize(np.array([1e-6]))


def test_ideal_torch_rounding_equals_threshold_search():
    """The torch fast path for evenly spaced (ideal) levels gives the codes of a threshold search in the
    same precision, including currents exactly at a level or a threshold and beyond the range."""
    import torch

    rng = np.random.default_rng(3)
    for bits, lsb in ((None, 1), (3, 1), (7, 2)):
        adc = ADC(bits=bits, references="ideal", i_cell_a=2.0838e-5, rows=128, lsb_counts=lsb)
        th = adc.thresholds_a()
        x = np.concatenate([rng.uniform(-1e-5, 140 * 2.0838e-5, 20000), adc.levels_a(), th,
                            th * (1 + 1e-6), th * (1 - 1e-6)]).astype(np.float32)
        xt = torch.from_numpy(x)
        fast = adc.digitize(xt)
        search = torch.bucketize(xt, torch.as_tensor(th, dtype=torch.float32), right=False).float() * lsb
        assert torch.equal(fast, search)
        assert float(fast.max()) == adc.max_code * lsb and float(fast.min()) == 0.0
