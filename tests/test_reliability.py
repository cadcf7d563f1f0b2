"""Reliability (issue #21): resource bounds, file-system faults, device-model fallbacks, lost schedulers,
orphans, misleading messages. Each test is fast; those that need a mount, ngspice or dask skip without."""

from __future__ import annotations

import pytest

from cosim.cli import main
from cosim.errors import InputError


def _run(args, capsys):
    """(exit status, captured output) of ``cosim ARGS`` in process (0 when main returns)."""
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr()


def _one_line_error(code, io) -> str:
    assert code not in (0, None), io.err
    err = io.err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _usage_error(code, io) -> str:
    """click's refusal of an option value: exit status 2, the reason on the last line."""
    assert code == 2, io.err
    return io.err.strip().splitlines()[-1]


# --- resource bounds -------------------------------------------------------------------------------
@pytest.mark.parametrize("opt,value", [("--cols", "1000000"), ("--rows", "1000000"), ("--cols", "0"),
                                       ("--rows", "513")])
def test_infer_refuses_array_sizes_out_of_bounds(opt, value, capsys):
    code, io = _run(["infer", "--model", "vgg-small", "--mode", "ideal", opt, value, "--limit", "1"], capsys)
    err = _usage_error(code, io)
    assert opt in err and "512" in err


@pytest.mark.parametrize("kw", [{"cols": 1_000_000}, {"rows": 1_000_000}, {"cols": 0}, {"rows": 2.5}])
def test_to_cim_refuses_sizes_before_allocating(kw):
    from torch import nn
    from cosim.cim import to_cim

    with pytest.raises(InputError, match="from 1 to 512"):
        to_cim(nn.Sequential(), mode="ideal", **kw)


@pytest.mark.parametrize("value", ["0", "-3", "100000"])
def test_validate_refuses_cols_out_of_bounds(value, tmp_path, capsys):
    code, io = _run(["validate", "--table", str(tmp_path / "missing.parquet"), "--cols", value], capsys)
    err = _usage_error(code, io)
    assert "--cols" in err


def test_validate_function_refuses_cols_zero():
    from cosim.cim.synthetic import synthetic_table
    from cosim.validate import validate

    table = synthetic_table("resistor", 8, 8, samples=200, ir_drop=0.0)
    with pytest.raises(InputError, match="cols must be an integer from 1 to 512, got 0"):
        validate(table, cols=0, n_columns=8, vectors=2, cache=False)
