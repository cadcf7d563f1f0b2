"""``cosim validate``: compare a table's surrogate with fresh SPICE points (and two baselines)."""

from __future__ import annotations

import json
import math

import click


def _clean(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_clean(v) for v in o]
    return o


@click.command(name="validate")
@click.option("--table", "table_path", required=True, type=click.Path(dir_okay=False), help="lookup table (.parquet)")
@click.option("--patterns", default="random,skewed", show_default=True, help="comma list of random, skewed, network")
@click.option("--n", "n_columns", type=int, default=512, show_default=True, help="fresh SPICE columns per pattern family")
@click.option("--vectors", type=int, default=16, show_default=True, help="input vectors per SPICE run")
@click.option("--cols", type=int, default=None, help="columns per SPICE run (default: min(rows, 32))")
@click.option("--seed", type=int, default=1, show_default=True, help="seed of the fresh patterns")
@click.option("--adc-references", type=click.Choice(["ideal", "calibrated"]), default="ideal", show_default=True,
              help="ADC levels for the headline numbers (both are reported under by_adc)")
@click.option("--adc-bits", type=int, default=None, help="ADC bits (default: enough for every count 0..rows)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="keep the SPICE runs here (reused on rerun)")
@click.option("--json", "as_json", is_flag=True, help="print the full report as JSON")
def command(table_path, patterns, n_columns, vectors, cols, seed, adc_references, adc_bits, out_dir, as_json):
    """Simulate fresh points never used in calibration and compare surrogate, ideal and count-only codes."""
    from ..adc import ADC
    from ..validate import summary_line, validate

    adc = ADC(bits=adc_bits, references=adc_references)
    rep = validate(table_path, patterns=patterns.split(","), n_columns=n_columns, seed=seed, vectors=vectors,
                   cols=cols, adc=adc, out_dir=out_dir)
    for w in rep["warnings"]:
        click.echo(f"warning: {w}", err=True)
    if as_json:
        click.echo(json.dumps(_clean(rep), sort_keys=True, default=str))
    else:
        click.echo(summary_line(rep))
