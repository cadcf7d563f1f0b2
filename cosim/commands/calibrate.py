"""``cosim calibrate``: run a SPICE sweep (resumable, parallel) and fit a lookup table for the surrogate."""

from __future__ import annotations

import json

import click

from ..errors import InputError
from ..circuit.technology import TOPOLOGIES
from .spice import TECH_FILE_OPTION, line_options, line_overrides, periphery_options, technology
from .sweep_options import check_sweep_options, point_cache, security, sweep_options


@click.command(name="calibrate")
@click.option("--tech", "tech_name", default=None,
              help="technology: sram8t, reram1t1r or resistor, or a name in $COSIM_TECH_PATH (or --tech-file)")
@TECH_FILE_OPTION
@click.option("--rows", type=int, required=True, help="array rows R")
@click.option("--cols", type=int, required=True,
              help="array columns per SPICE run (samples per vector); a coupled table is for arrays of exactly this width")
@click.option("--topology", type=click.Choice(TOPOLOGIES), default=None, help="default: the technology's")
@click.option("--r-wire-ohm", type=float, default=None, help="wire resistance per cell segment (default: technology's)")
@line_options
@periphery_options
@click.option("--points", type=int, required=True, help="SPICE operating points (runs) in the sweep")
@click.option("--vectors", type=int, default=16, show_default=True, help="input vectors per point (one .dc sweep)")
@click.option("--orders", default=None,
              help="moment orders of the surrogate model: Legendre orders (1,2,...) and sine orders of the "
                   "IR-drop kernel (s1,s2,...; their squares are terms) (default: the shipped table's form of "
                   "this technology, size and wire resistance, cosim.surrogate.registry.MODEL_FORMS; else 1,2,3,4)")
@click.option("--terms", type=click.Choice(["full", "compact", "quartic"]), default=None,
              help="surrogate terms: full cubic in the moments, compact (cross products and cubes only; cheaper), "
                   "or quartic (the full cubic and every degree-4 monomial; dearer) (default: the shipped "
                   "table's form; else full)")
@click.option("--knots", type=click.IntRange(min=2), default=None,
              help="ON-count knots of the coefficients (default: the shipped table's form; else min(R+1, R/2+1, 33))")
@click.option("--solver", type=click.Choice(["ngspice", "exact"]), default="ngspice", show_default=True,
              help="what solves the points: ngspice, or the exact solver (cosim.circuit.solver) with ngspice re-solving "
                   "a random 2 % of them as a cross-check (fails above 1e-6 relative)")
@click.option("--placements", is_flag=True,
              help="every third point a placement-family point (far, near, alternate, dense; cosim.sweep.calibration)")
@click.option("--network-operands", default=None,
              help="every third point (1, 4, 7, ...) real operands of these binary networks (comma list of vgg-small, "
                   "resnet18: the reference weights in $COSIM_MODELS on CIFAR-10 test images from $COSIM_DATA), "
                   "row slices of every layer with and without BinSparX's flips")
@click.option("--network-images", type=click.IntRange(min=1), default=None,
              help="network operands: N CIFAR-10 test images, drawn with a fixed seed from test images 1000 on "
                   "(cosim.surrogate.netslices.calibration_images; default 16)")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="output folder (resumable)")
@sweep_options
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the table's provenance as JSON")
@click.option("--no-progress", is_flag=True, help="no progress bar")
def command(tech_name, rows, cols, topology, r_wire_ohm, r_driver_ohm, r_sink_ohm, points, vectors, orders, terms, knots, solver, placements,
            network_operands, network_images, out_dir, workers, scheduler,
            cache_dir, no_cache, point_timeout_s, tls_ca_file, tls_cert, tls_key, seed, as_json, no_progress,
            tech_file=None, r_bl_ohm=None, r_sl_ohm=None, r_wl_ohm=None):
    """Run (or resume) a SPICE sweep and write samples.parquet and table.parquet into --out."""
    from ..sweep.calibration import SweepConfig
    from ..surrogate.model import normalise_orders, order_number
    from ..surrogate.registry import model_form, table_filename, user_tables_dir
    from ..surrogate.fit import calibrate
    from ..circuit.netlist import ArraySpec

    tech = technology(tech_name, tech_file, r_wire_ohm=r_wire_ohm, r_driver_ohm=r_driver_ohm, r_sink_ohm=r_sink_ohm,
                      **line_overrides(r_bl_ohm, r_sl_ohm, r_wl_ohm))
    spec = ArraySpec(tech, rows, cols, topology)
    check_sweep_options(workers, point_timeout_s)
    sec = security(tls_ca_file, tls_cert, tls_key)
    for name, v, lo in (("points", points, 1), ("vectors", vectors, 1)):
        if v is not None and v < lo:
            raise InputError(f"--{name} must be >= {lo}, got {v}")
    order_list = None
    if orders is not None:
        try:
            order_list = normalise_orders(dict.fromkeys(e.strip().lower() for e in orders.split(",") if e.strip()))
        except InputError as e:
            raise InputError(f"--orders: {e}") from None
    form = model_form(tech.name, spec.rows, terms, knots, order_list, r_wire_ohm=tech.r_wire_ohm)
    if not form.orders or max(map(order_number, form.orders)) > rows:
        raise InputError(f"--orders must be orders up to the row count, got "
                         f"'{orders if orders is not None else ','.join(map(str, form.orders))}'")
    operands = None
    if network_operands is not None:
        from ..surrogate.netslices import CALIBRATION_IMAGES, calibration_operands
        names = [n.strip() for n in network_operands.split(",") if n.strip()]
        if not names:
            raise InputError("--network-operands needs a comma list of networks (vgg-small, resnet18)")
        operands = calibration_operands(names, images=CALIBRATION_IMAGES if network_images is None else network_images)
    elif network_images is not None:
        raise InputError("--network-images chooses the images of --network-operands: add --network-operands")
    cfg = SweepConfig(tech=tech, rows=spec.rows, cols=spec.cols, topology=spec.topology, seed=seed, vectors=vectors,
                      solver=solver, placements=placements, operands=operands)
    table = calibrate(cfg, points, out_dir, workers=workers, orders=form.orders, progress=not no_progress,
                      log=lambda m: click.echo(m, err=True), scheduler=scheduler,
                      cache=point_cache(no_cache, cache_dir), point_timeout_s=point_timeout_s, terms=form.terms,
                      n_knots=form.n_knots, security=sec)
    if as_json:
        click.echo(json.dumps(table.provenance, sort_keys=True, default=str))
    else:
        click.echo(f"wrote {out_dir}/table.parquet and {out_dir}/samples.parquet "
                   f"({table.provenance['n_samples']} samples, {table.provenance['n_points']} points)")
        if tech.lines_equal:
            click.echo(f"its name in the table registry: {table_filename(tech.name, spec.rows, spec.topology, tech.r_wire_ohm)} "
                       f"(lookups find it by that name or by its provenance in {user_tables_dir()})", err=True)
        else:
            click.echo("its wire resistance differs per line, which the table registry's names do not carry: use "
                       "it by its path", err=True)
