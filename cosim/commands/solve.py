"""``cosim solve``: one crossbar array by the exact solver (cosim.circuit.solver); the options and JSON keys of
``cosim spice``, so the two can be compared column for column.

    cosim solve --tech sram8t --rows 64 --cols 4 --pattern random --seed 0 --batch 2 [--json]
    cosim solve --tech resistor --rows 32 --cols 8 --inputs IN.npy --weights W.npy --json

With --json it prints one JSON object with the keys of ``cosim spice --json`` (column_current_a,
ideal_column_current_a, seconds, ...; ngspice_version and netlist_sha256 are null: no ngspice runs),
plus iterations (Newton iterations per vector and column) and threads. A column that does not converge
is an error naming it (exit status 1), never a number. ``cosim spice``'s ngspice options (--backend,
--timeout-s, --models) are accepted, so one command line serves both, and change nothing here.
"""

from __future__ import annotations

import json

import click

from ..errors import InputError
from ..circuit.netlist import MODEL_IMPLS
from .spice import array_operands, array_options, array_result, echo_columns, line_overrides, line_values, wire_text


@click.command("solve")
@array_options
@click.option("--backend", type=click.Choice(["subprocess", "shared"]), default="subprocess", show_default=True,
              help="accepted for the command line of `cosim spice`; no ngspice runs here, so no effect")
@click.option("--timeout-s", type=float, default=None,
              help="accepted for the command line of `cosim spice`; no effect")
@click.option("--models", type=click.Choice(list(MODEL_IMPLS)), default=None,
              help="accepted for the command line of `cosim spice`: every choice is the same equations, which "
                   "the solver evaluates compiled")
@click.option("--threads", type=int, default=None, help="solver threads (default: torch's thread count)")
@click.option("--max-iter", type=int, default=100, show_default=True, help="Newton iteration limit")
@click.option("--cells", type=click.Choice(["auto", "exact", "table"]), default="auto", show_default=True,
              help="cell currents: the device equations, or (8T-SRAM and 1T-1R, C kernel) their bicubic table, "
                   "within 1e-7 of them and several times faster once built (about 1 s per process); auto: the "
                   "table where it applies")
@click.option("--device", default=None,
              help="torch device for the decoupled topology (e.g. cuda); default: the compiled CPU kernel")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def command(tech_name, rows, cols, topology, r_wire_ohm, r_driver_ohm, r_sink_ohm, inputs_path, weights_path, pattern,
            seed, batch,
            backend, timeout_s, models, threads, max_iter, cells, device, as_json, tech_file=None, r_bl_ohm=None,
            r_sl_ohm=None, r_wl_ohm=None):
    """Solve one crossbar array exactly (no ngspice); print column currents beside the ideal ones."""
    from ..provenance import record
    from ..circuit.solver import ideal_column_currents, solve_array

    tech, spec, inputs, weights, source = array_operands(tech_name, rows, cols, topology, r_wire_ohm, r_driver_ohm,
                                                         r_sink_ohm, inputs_path, weights_path, pattern, seed, batch,
                                                         tech_file, line_overrides(r_bl_ohm, r_sl_ohm, r_wl_ohm))
    del backend, timeout_s, models   # cosim spice's ngspice options: nothing to do here
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    if max_iter < 1:
        raise InputError(f"--max-iter must be >= 1, got {max_iter}")
    res = solve_array(spec, inputs, weights, threads=threads, max_iter=max_iter, device=device, cells=cells)
    ideal = ideal_column_currents(spec, inputs, weights)
    solver = "exact-banded" if spec.topology == "decoupled" else "exact-sparse"
    if device is not None and str(device) != "cpu":
        solver += f"-torch-{device}"
    if res.cells == "table":
        solver += "-table"
    models = "resistor" if tech.kind.linear else "compiled"
    out = {
        **array_result(tech, spec, res.column_current_a, ideal),
        "ngspice_version": None, "solver": solver, "backend": "cosim.circuit.solver", "device_models": models,
        # the solver always evaluates the compiled device equations: never a fallback to other models
        "device_models_fallback": None,
        "seconds": res.seconds, "netlist_sha256": None, "retried": False,
        "iterations": res.iterations.tolist(), "threads": res.threads,
        "provenance": record(technology=tech.name, cell=tech.cell, rows=rows, cols=cols, topology=spec.topology,
                             r_wire_ohm=tech.r_wire_ohm, **line_values(tech), solver=solver, backend="cosim.circuit.solver",
                             device_models=models, **source),
    }
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"{spec.describe()}  exact solver ({solver}, {res.threads} threads, {models} models)  "
               f"{res.seconds:.3f} s  {wire_text(tech)}")
    echo_columns(res.column_current_a, ideal, "solve")
