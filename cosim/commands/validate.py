"""``cosim validate``: compare a table's surrogate with fresh SPICE points (and two baselines)."""

from __future__ import annotations

import json
import math

import click

from ..circuit.netlist import MAX_SIZE
from .sweep_options import check_sweep_options, point_cache, security, sweep_options


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
@click.option("--patterns", default="random,skewed", show_default=True, help="comma list of random, skewed, network, far, near, alternate, dense (cosim.surrogate.validate)")
@click.option("--n", "n_columns", type=int, default=512, show_default=True, help="fresh SPICE columns per pattern family")
@click.option("--vectors", type=int, default=16, show_default=True, help="input vectors per SPICE run")
@click.option("--cols", type=click.IntRange(1, MAX_SIZE), default=None,
              help=f"columns per SPICE run, 1..{MAX_SIZE} (default: min(rows, 32); a coupled table's own width)")
@click.option("--seed", type=int, default=1, show_default=True, help="seed of the fresh patterns")
@click.option("--network", default="vgg-small", show_default=True,
              help="network patterns: the binary network (vgg-small or resnet18)")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="network patterns: its weights (default: the reference weights, $COSIM_MODELS)")
@click.option("--layers", default=None, help="network patterns: comma list of binary layer names (default: all)")
@click.option("--images", type=int, default=None, help="network patterns: first N CIFAR-10 test images (default 4)")
@click.option("--data", type=click.Path(), default=None, help="network patterns: CIFAR-10 location (default: $COSIM_DATA)")
@click.option("--adc-references", type=click.Choice(["ideal", "calibrated"]), default="ideal", show_default=True,
              help="ADC levels for the headline numbers (both are reported under by_adc)")
@click.option("--adc-bits", type=int, default=None, help="ADC bits (default: enough for every count 0..rows)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="keep the SPICE runs here (reused on rerun)")
@click.option("--certified/--no-certified", default=True, show_default=True,
              help="also certified reads' codes (tables with calibration residuals; the exact solver "
                   "re-solves the columns near a decision level, a coupled table's whole input vectors)")
@sweep_options
@click.option("--json", "as_json", is_flag=True, help="print the full report as JSON")
def command(table_path, patterns, n_columns, vectors, cols, seed, network, checkpoint, layers, images, data,
            adc_references, adc_bits, out_dir, certified, workers, scheduler, cache_dir, no_cache, point_timeout_s,
            tls_ca_file, tls_cert, tls_key, as_json):
    """Simulate fresh points never used in calibration and compare surrogate, ideal and count-only codes (and
    certified reads')."""
    from ..surrogate.adc import ADC
    from ..errors import InputError
    from ..sweep.executor import make_executor
    from ..surrogate.validate import FAMILIES, agreement_table, summary_line, validate

    fams = [p.strip() for p in patterns.split(",") if p.strip()]
    bad = [p for p in fams if p not in FAMILIES]
    if bad:
        raise InputError(f"unknown pattern family '{bad[0]}': expected some of {', '.join(FAMILIES)}")
    check_sweep_options(workers, point_timeout_s)
    sec = security(tls_ca_file, tls_cert, tls_key)
    if "network" not in fams and (checkpoint or layers or images is not None or data):
        raise InputError("--checkpoint, --layers, --images and --data choose the network patterns: "
                         "add network to --patterns")
    source = None
    if "network" in fams:
        from ..surrogate.netslices import DEFAULT_IMAGES, load_network
        source = load_network(network, checkpoint=checkpoint, images=DEFAULT_IMAGES if images is None else images,
                              data=data, layers=layers.split(",") if layers else None)
    adc = ADC(bits=adc_bits, references=adc_references)
    with make_executor(workers=workers, scheduler=scheduler, security=sec) as ex:
        rep = validate(table_path, patterns=fams, n_columns=n_columns, seed=seed, vectors=vectors, cols=cols,
                       adc=adc, out_dir=out_dir, network=source, executor=ex,
                       cache=point_cache(no_cache, cache_dir), point_timeout_s=point_timeout_s, certified=certified)
    for w in rep["warnings"]:
        click.echo(f"warning: {w}", err=True)
    if as_json:
        click.echo(json.dumps(_clean(rep), sort_keys=True, default=str))
    else:
        click.echo(summary_line(rep))
        click.echo(agreement_table(rep))
