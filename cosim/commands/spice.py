"""``cosim spice``: simulate one crossbar array in ngspice and print its column currents.

    cosim spice --tech sram8t --rows 64 --cols 4 --pattern random --seed 0 --batch 2 [--json]
    cosim spice --tech resistor --rows 32 --cols 8 --inputs IN.npy --weights W.npy --json

With --json it prints one JSON object: column_current_a and ideal_column_current_a (K lists of C
currents, A), ngspice_version, solver, backend, device_models, seconds, netlist_sha256, and the
provenance of the run.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from ..errors import InputError
from ..circuit.netlist import ArraySpec, MAX_SIZE, MODEL_IMPLS, fallback_warning
from ..circuit.technology import CELLS, TOPOLOGIES, get_technology, load_technology_file

PATTERNS = ("random", "all-on")


#: the first bytes of every .npy file (numpy.lib.format)
NPY_MAGIC = b"\x93NUMPY"


def _load_npy(path: str, what: str) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            head = f.read(len(NPY_MAGIC))
        if head != NPY_MAGIC:
            # numpy would take it for a pickle and suggest loading it unsafely: it is just not an array
            raise InputError(f"{what} file {path} is not a NumPy .npy array (no .npy header; save one with "
                             "numpy.save)")
        arr = np.load(Path(path), allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{what} file {path} is a folder") from None
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise InputError(f"{what} file {path} holds Python objects, not numbers; cosim does not load "
                             "pickled data (save 0/1 integers with numpy.save)") from None
        raise InputError(f"cannot read {what} file {path} as .npy: {str(e).splitlines()[0] if str(e) else e}") from None
    except OSError as e:
        raise InputError(f"cannot read {what} file {path} as .npy: {str(e).splitlines()[0] if str(e) else e}") from None
    return arr


def make_pattern(pattern: str, rows: int, cols: int, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (batch, rows) and weights (rows, cols) of 0/1: 'random' (fair coin) or 'all-on' (all 1)."""
    if pattern == "all-on":
        return np.ones((batch, rows), np.uint8), np.ones((rows, cols), np.uint8)
    rng = np.random.default_rng(seed)
    weights = rng.integers(0, 2, (rows, cols), dtype=np.uint8)
    inputs = rng.integers(0, 2, (batch, rows), dtype=np.uint8)
    return inputs, weights


#: the driver's and the sense end's resistances (the technology's by default; 0 with --r-wire-ohm 0 gives an
#: array without any wire or periphery resistance)
PERIPHERY_OPTIONS = (
    click.option("--r-driver-ohm", type=float, default=None,
                 help="output resistance of each row driver (ohm; default: the technology's)"),
    click.option("--r-sink-ohm", type=float, default=None,
                 help="input resistance of each sense end (ohm; default: the technology's)"))


#: ``--tech-file``: a technology file instead of a built-in (on every command that takes --tech)
TECH_FILE_OPTION = click.option(
    "--tech-file", type=click.Path(dir_okay=False), default=None,
    help="technology file (TOML, docs/TECHNOLOGIES.md) instead of --tech; $COSIM_TECH_PATH adds folders of "
         "them that --tech finds by name")


#: the wire resistance of one line each, applied after --r-wire-ohm (which sets every line; a per-line option
#: then overrides its own line); cosim.circuit.technology's r_bl_ohm, r_sl_ohm, r_wl_ohm
LINE_OPTIONS = (
    click.option("--r-bl-ohm", type=float, default=None,
                 help="bit-line segment per cell pitch (ohm; default: --r-wire-ohm, else the technology's)"),
    click.option("--r-sl-ohm", type=float, default=None,
                 help="source-line segment per cell pitch (ohm; default: --r-wire-ohm, else the technology's)"),
    click.option("--r-wl-ohm", type=float, default=None,
                 help="row-line segment per cell pitch, coupled resistor / 1T-1R (ohm; default: --r-wire-ohm, "
                      "else the technology's)"))


def line_options(command):
    """``--r-bl-ohm``, ``--r-sl-ohm`` and ``--r-wl-ohm`` on a command (beside ``--r-wire-ohm``)."""
    for option in reversed(LINE_OPTIONS):
        command = option(command)
    return command


def line_overrides(r_bl_ohm=None, r_sl_ohm=None, r_wl_ohm=None) -> dict:
    """The technology overrides of the per-line options (those given), each checked non-negative."""
    out = {}
    for line, v in (("bl", r_bl_ohm), ("sl", r_sl_ohm), ("wl", r_wl_ohm)):
        if v is None:
            continue
        if not v >= 0:
            raise InputError(f"--r-{line}-ohm must be a non-negative resistance (ohm), got {v:g}")
        out[f"r_{line}_ohm"] = float(v)
    return out


def line_values(tech) -> dict:
    """Each line's wire resistance (ohm) for the JSON and provenance beside r_wire_ohm."""
    return {f"r_{line}_ohm": tech.wire_ohm(line) for line in ("bl", "sl", "wl")}


def array_result(tech, spec, current_a, ideal_a) -> dict:
    """The keys ``cosim spice`` and ``cosim solve`` share (the array, its wires and its column currents), so
    their JSON compares column for column; each adds its own solver's keys."""
    return {
        "technology": tech.name, "cell": tech.cell, "rows": spec.rows, "cols": spec.cols, "topology": spec.topology,
        "r_wire_ohm": tech.r_wire_ohm, **line_values(tech), "r_driver_ohm": tech.r_driver_ohm,
        "r_sink_ohm": tech.r_sink_ohm, "v_read_v": tech.v_read_v,
        "column_current_a": current_a.tolist(), "ideal_column_current_a": ideal_a.tolist(),
    }


def technology(tech_name, tech_file, default: str | None = None, **overrides):
    """The technology of ``--tech`` (a built-in, or a name in $COSIM_TECH_PATH) or ``--tech-file``."""
    if tech_file is not None:
        if tech_name is not None:
            raise InputError("give --tech or --tech-file, not both")
        return load_technology_file(tech_file, **overrides)
    if tech_name is None:
        if default is None:
            raise InputError("give --tech or --tech-file")
        tech_name = default
    return get_technology(tech_name, **overrides)


def periphery_options(command):
    """``--r-driver-ohm`` and ``--r-sink-ohm`` on a command."""
    for option in reversed(PERIPHERY_OPTIONS):
        command = option(command)
    return command


def array_options(command):
    """The options that say which array and operands to simulate (``cosim spice``; ``cosim solve`` takes
    the same, so that one command line serves both)."""
    for option in reversed((
        click.option("--tech", "tech_name", default=None,
                     help=f"technology: {', '.join(CELLS)} (default sram8t), or a name in $COSIM_TECH_PATH"),
        TECH_FILE_OPTION,
        click.option("--rows", type=int, default=64, show_default=True, help=f"rows, 1..{MAX_SIZE}"),
        click.option("--cols", type=int, default=4, show_default=True, help=f"columns, 1..{MAX_SIZE}"),
        click.option("--topology", type=click.Choice(list(TOPOLOGIES)), default=None,
                     help="array topology (default: the technology's)"),
        click.option("--r-wire-ohm", type=float, default=None, help="wire resistance per cell pitch (ohm)"),
        *LINE_OPTIONS,
        *PERIPHERY_OPTIONS,
        click.option("--inputs", "inputs_path", type=click.Path(dir_okay=False), default=None,
                     help="K x R .npy of 0/1"),
        click.option("--weights", "weights_path", type=click.Path(dir_okay=False), default=None,
                     help="R x C .npy of 0/1"),
        click.option("--pattern", type=click.Choice(PATTERNS), default="random", show_default=True,
                     help="generated inputs and weights when no .npy files are given"),
        click.option("--seed", type=int, default=0, show_default=True, help="seed of the random pattern"),
        click.option("--batch", type=int, default=1, show_default=True, help="number of input vectors K (pattern)"))):
        command = option(command)
    return command


def array_operands(tech_name, rows, cols, topology, r_wire_ohm, r_driver_ohm, r_sink_ohm, inputs_path, weights_path,
                   pattern, seed, batch, tech_file=None, lines=None):
    """(technology, ArraySpec, inputs K x R, weights R x C, where they came from) of ``array_options``;
    ``lines``: the per-line options (``line_overrides``), applied after ``r_wire_ohm``."""
    tech = technology(tech_name, tech_file, "sram8t", r_wire_ohm=r_wire_ohm, r_driver_ohm=r_driver_ohm,
                      r_sink_ohm=r_sink_ohm, **(lines or {}))
    spec = ArraySpec(tech, rows, cols, topology)
    if (inputs_path is None) != (weights_path is None):
        raise InputError("give both --inputs and --weights, or neither (then --pattern is used)")
    if inputs_path is not None:
        inputs = _load_npy(inputs_path, "inputs")
        weights = _load_npy(weights_path, "weights")
        source = {"inputs": str(inputs_path), "weights": str(weights_path)}
    else:
        if batch < 1:
            raise InputError(f"--batch must be >= 1, got {batch}")
        inputs, weights = make_pattern(pattern, rows, cols, batch, seed)
        source = {"pattern": pattern, "seed": seed, "batch": batch}
    return tech, spec, inputs, weights, source


def wire_text(tech) -> str:
    """The wire resistance of the summary line: one value, or one per line where they differ."""
    if tech.lines_equal:
        return f"r_wire {tech.r_wire_ohm:g} ohm"
    return "wires " + " / ".join(f"{ln} {tech.wire_ohm(ln):g}" for ln in ("bl", "sl", "wl")) + " ohm"


def echo_columns(current_a, ideal_a, label: str) -> None:
    """Print each vector's column currents beside the ideal ones and their ratio (cosim spice, solve)."""
    for k in range(current_a.shape[0]):
        click.echo(f"vector {k}:")
        click.echo(f"  {'column':>6s} {label + ' (uA)':>12s} {'ideal (uA)':>12s} {'ratio':>7s}")
        for c in range(current_a.shape[1]):
            a, i = current_a[k, c], ideal_a[k, c]
            ratio = f"{a / i:7.4f}" if i > 0 else "      -"
            click.echo(f"  {c:6d} {a * 1e6:12.4f} {i * 1e6:12.4f} {ratio}")


@click.command("spice")
@array_options
@click.option("--backend", type=click.Choice(["subprocess", "shared"]), default="subprocess", show_default=True)
@click.option("--timeout-s", type=float, default=None, help="give up after this many seconds (subprocess backend)")
@click.option("--models", type=click.Choice(list(MODEL_IMPLS)), default=None,
              help="device models: compiled (OSDI) or B-source (behavioural FinFET), or bsimcmg (the PDK's BSIM-CMG cards, corner $COSIM_ASAP7_CORNER); default auto ($COSIM_SPICE_MODELS)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def command(tech_name, rows, cols, topology, r_wire_ohm, r_driver_ohm, r_sink_ohm, inputs_path, weights_path, pattern,
            seed, batch,
            backend, timeout_s, models, as_json, tech_file=None, r_bl_ohm=None, r_sl_ohm=None, r_wl_ohm=None):
    """Simulate one crossbar array in ngspice; print column currents beside the ideal ones."""
    from ..circuit.spice import ideal_column_currents, run_array

    tech, spec, inputs, weights, source = array_operands(tech_name, rows, cols, topology, r_wire_ohm, r_driver_ohm,
                                                         r_sink_ohm, inputs_path, weights_path, pattern, seed, batch,
                                                         tech_file, line_overrides(r_bl_ohm, r_sl_ohm, r_wl_ohm))
    res = run_array(spec, inputs, weights, backend=backend, timeout_s=timeout_s, models=models)
    ideal = ideal_column_currents(spec, inputs, weights)
    out = {
        **array_result(tech, spec, res.column_current_a, ideal),
        "ngspice_version": res.ngspice_version, "solver": res.solver, "backend": res.backend,
        "device_models": res.device_models, "device_models_fallback": res.device_models_fallback,
        "seconds": res.seconds, "netlist_sha256": res.netlist_sha256, "retried": res.retried,
        "provenance": res.provenance(**line_values(tech), **source),
    }
    if res.device_models_fallback:
        click.echo(f"warning: {fallback_warning(res.device_models_fallback)}", err=True)
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"{spec.describe()}  ngspice {res.ngspice_version} ({res.solver}, {res.backend}, "
               f"{res.device_models} models)  "
               f"{res.seconds:.2f} s  {wire_text(tech)}")
    echo_columns(res.column_current_a, ideal, "spice")
