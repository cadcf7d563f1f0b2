"""``cosim infer``: a whole binary network on simulated crossbars (ideal / surrogate / spice / exact).

``--bits 2|4`` runs the k-bit network of the same architecture instead (cosim.bnn.quant, trained with
``cosim train --bits k``), bit-sliced onto the same binary-cell arrays (cosim.cim.bitslice); the JSON
is the same, with ``bits`` added.

The command is three steps: its options make one CiMConfig (:func:`cim_config`), :func:`run` classifies
the images with the network that config converts and returns the result (with the config's dict,
``cim_config``, and its digest, ``cim_config_sha256``, also in the provenance), and the result is printed."""

from __future__ import annotations

import json
from typing import Any

import click

from ..bnn.models import MODEL_NAMES
from ..circuit.netlist import MAX_SIZE
from ..circuit.technology import REGISTRY
from .spice import TECH_FILE_OPTION


@click.command("infer")
@click.option("--model", "model_name", type=click.Choice(MODEL_NAMES), required=True, help="Network.")
@click.option("--bits", type=click.Choice(["1", "2", "4"]), default="1", show_default=True,
              help="Weight and activation bits: 1 is the BNN; 2 and 4 run the k-bit network bit-sliced on the same arrays.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Compact cosim checkpoint or a state dict (.pt). Default: the reference weights of --model "
                   "in $COSIM_MODELS; with --bits 2|4 the k-bit checkpoint $COSIM_CACHE/checkpoints/<model>_w<k>a<k>.ckpt.")
@click.option("--data", type=click.Path(), default=None, help="CIFAR-10 (folder or .tar.gz). Default: $COSIM_DATA.")
@click.option("--tech", default=None,
              help=f"Technology: {', '.join(sorted(REGISTRY))} (default sram8t), or a name in $COSIM_TECH_PATH.")
@TECH_FILE_OPTION
@click.option("--rows", type=click.IntRange(1, MAX_SIZE), default=64, show_default=True,
              help=f"Rows R of one crossbar, 1..{MAX_SIZE}.")
@click.option("--cols", type=click.IntRange(1, MAX_SIZE), default=64, show_default=True,
              help=f"Columns C of one crossbar, 1..{MAX_SIZE}.")
@click.option("--table", type=click.Path(dir_okay=False), default=None,
              help="Lookup table (cosim calibrate). Default: the shipped table of --tech and --rows.")
@click.option("--topology", type=click.Choice(["decoupled", "coupled"]), default=None,
              help="Array topology (default: the table's; without --table the technology's).")
@click.option("--mode", type=click.Choice(["ideal", "surrogate", "spice", "exact"]), default="surrogate", show_default=True)
@click.option("--certify", is_flag=True,
              help="surrogate mode: re-solve exactly every column within the table's residual margin of an ADC "
                   "decision level (needs a table with recorded residuals).")
@click.option("--certify-table", type=click.Path(dir_okay=False), default=None,
              help="--certify: the table (same technology, size and wire) whose currents and recorded residuals choose "
                   "the columns to re-solve, so that --table needs none; codes keep --table's "
                   "ADC levels.")
@click.option("--binsparx/--no-binsparx", default=False, show_default=True, help="BinSparX weight and input flips.")
@click.option("--adc-bits", type=click.IntRange(1, 16), default=None, help="ADC resolution (default: one code per count).")
@click.option("--adc-reference", type=click.Choice(["ideal", "calibrated"]), default="ideal", show_default=True,
              help="ADC reference levels: k x I_cell, or SPICE-calibrated mean currents.")
@click.option("--adc-lsb", type=click.IntRange(min=1), default=1, show_default=True, help="AND-counts per ADC code.")
@click.option("--max-active-rows", type=click.IntRange(min=1), default=None,
              help="Partial wordline activation: at most this many rows on per read.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="The first N test images only.")
@click.option("--batch-size", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--spice-tiles", type=click.IntRange(min=1), default=4, show_default=True,
              help="spice mode: tiles simulated in ngspice.")
@click.option("--spice-vectors", type=click.IntRange(min=1), default=8, show_default=True,
              help="spice mode: input vectors per simulated tile.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the spot-check tile choice.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for torch (default: torch's choice; 1 is faster on a machine shared with other jobs).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes classifying shards of the images (ideal and surrogate modes on the CPU; "
                   "one torch thread each). On N idle cores --workers N is the fastest; on a shared machine too.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar (stderr).")
def command(model_name, bits, checkpoint, data, tech, rows, cols, table, topology, mode, certify, certify_table, binsparx, adc_bits,
            adc_reference, adc_lsb, max_active_rows, limit, batch_size, device, spice_tiles, spice_vectors, seed, threads,
            workers, as_json, progress, tech_file=None):
    """Run a whole binary network on simulated crossbars and report accuracy, statistics and energy."""
    if tech_file is not None or (tech is not None and tech not in REGISTRY):   # a technology file
        from .spice import technology
        tech = technology(tech, tech_file)
    config = cim_config(tech=tech or "sram8t", rows=rows, cols=cols, table=table, topology=topology, mode=mode, certify=certify,
                        certify_table=certify_table, binsparx=binsparx, adc_bits=adc_bits, adc_reference=adc_reference, adc_lsb=adc_lsb,
                        max_active_rows=max_active_rows, device=device, spice_tiles=spice_tiles,
                        spice_vectors=spice_vectors, seed=seed)
    out = run(config, model_name=model_name, bits=int(bits), checkpoint=checkpoint, data=data, limit=limit,
              batch_size=batch_size, threads=threads, workers=workers, progress=progress)
    if as_json:
        click.echo(json.dumps(out, indent=1, default=_jsonable))
    else:
        echo_summary(out)


def cim_config(*, tech, rows, cols, table, topology, mode, certify, binsparx, adc_bits, adc_reference, adc_lsb,
               max_active_rows, device, spice_tiles, spice_vectors, seed, certify_table=None):
    """The CiMConfig of the command's options (one place: the option names are the command's, the
    fields the config's)."""
    from ..cim import CiMConfig
    return CiMConfig.from_kwargs(tech=tech, rows=rows, cols=cols, mode=mode, table=table, binsparx=binsparx,
                                 adc_bits=adc_bits, adc_reference=adc_reference, adc_lsb_counts=adc_lsb,
                                 max_active_rows=max_active_rows, topology=topology, device=device, certify=certify,
                                 certify_table=certify_table, spice_tiles=spice_tiles, spice_vectors=spice_vectors, seed=seed)


def load_network(model_name: str, bits: int, checkpoint):
    """(software network, checkpoint path) of ``--model``, ``--bits`` and ``--checkpoint``."""
    from ..bnn.checkpoint import load_checkpoint
    from ..bnn.models import load_reference, reference_path
    from ..errors import InputError

    if bits != 1:
        from ..bnn.quant import default_qcheckpoint, load_qcheckpoint
        path = checkpoint or default_qcheckpoint(model_name, bits)
        if checkpoint is None and not path.is_file():
            raise InputError(f"no {bits}-bit {model_name} checkpoint at {path}; train one with `cosim train --model "
                             f"{model_name} --bits {bits} --init reference --out {path}` (see docs/MULTIBIT.md) "
                             f"or pass --checkpoint")
        net, _meta = load_qcheckpoint(path, model=model_name, bits=bits)
        return net, str(path)
    if checkpoint is None:
        return load_reference(model_name), str(reference_path(model_name))
    net, _meta = load_checkpoint(checkpoint, model=model_name)
    return net, str(checkpoint)


def run(config, *, model_name: str, bits: int = 1, checkpoint=None, data=None, limit: int | None = None,
        batch_size: int = 100, threads: int | None = None, workers: int = 1, progress: bool = True) -> dict:
    """Classify the CIFAR-10 test images with ``model_name`` converted by ``config`` (a CiMConfig); the
    result of ``cosim infer --json`` (warnings are also echoed on stderr)."""
    import time

    import torch

    from ..bnn.datasets import load_cifar10, resolve_data_path
    from ..cim import cim_stats, to_cim
    from ..cim.parallel import classify
    from ..errors import InputError
    from ..provenance import machine_description, record
    from ..surrogate.tables import provenance_warnings

    mode, device = config.array.mode, config.run.device
    if threads is not None:
        torch.set_num_threads(threads)
    if workers > 1 and (mode == "spice" or config.array.certify or not device.startswith("cpu")):
        raise InputError("--workers > 1 runs the ideal, surrogate and exact modes on the CPU only (spice mode and "
                         "--certify count their checks in one process; a GPU runs one)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device} asked for, but torch sees no CUDA device")
    net, ckpt = load_network(model_name, bits, checkpoint)
    cim: Any = to_cim(net, config)  # a Module with cim_config, cim_info, cim_array
    info = cim.cim_info
    arr = info["array"]
    table_prov = ((arr.get("table_provenance") if isinstance(arr, dict) else None)
                  or getattr(cim.cim_array, "table_provenance", None) or {})
    warnings = provenance_warnings(table_prov, ngspice=(mode == "spice")) if mode != "ideal" else []
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    source = resolve_data_path(data)
    images, labels = load_cifar10(source, split="test")
    n = len(labels) if limit is None else min(limit, len(labels))
    t0 = time.perf_counter()
    correct = classify(cim, images[:n], labels[:n], batch_size=batch_size, device=device, workers=workers,
                       rebuild=(net, config), progress=f"infer {model_name} {mode}" if progress else None)
    seconds = time.perf_counter() - t0
    stats = cim_stats(cim)
    ov = stats["overall"]
    a = config.array
    digest = config.digest()
    out = {
        "model": model_name, "bits": bits, "checkpoint": ckpt, "data": str(source), "mode": mode, "tech": info["tech"],
        "rows": a.rows, "cols": a.cols, "binsparx": config.mapping.binsparx, "adc_bits": config.adc.bits,
        "adc_reference": config.adc.reference, "max_active_rows": config.mapping.max_active_rows,
        "accuracy": correct / n, "n": n, "correct": correct,
        "on_cell_fraction": ov["on_cell_fraction"], "mean_on_count": ov["mean_on_count"],
        "max_on_count": ov["max_on_count"], "partial_sum_reduction": ov["partial_sum_reduction"],
        "flipped_column_fraction": ov["flipped_column_fraction"],
        "flipped_subvector_fraction": ov["flipped_subvector_fraction"],
        "array_energy_j": ov["array_energy_j"], "array_reads": ov["array_reads"],
        "seconds": round(seconds, 3), "images_per_s": round(n / seconds, 2) if seconds > 0 else None,
        "device": str(device), "threads": 1 if workers > 1 else torch.get_num_threads(),
        "workers": workers,
        "overall": ov, "layers": stats["layers"], "array": arr, "warnings": warnings,
        "cim_config": config.as_dict(), "cim_config_sha256": digest,
    }
    if a.certify:
        ca = cim.cim_array
        out["certify"] = {"safety": ca.safety, "columns_read": ca.columns_read, "columns_resolved": ca.resolved}
    if mode == "spice":
        from ..cim.spot import run_spot_checks, summarize
        t_spice = time.perf_counter()
        checks = run_spot_checks(cim, cim.cim_array.surrogate)
        out["spice_checks"] = checks
        out["spice_summary"] = summarize(checks)
        out["spice_seconds"] = round(time.perf_counter() - t_spice, 3)  # the spot checks, beside "seconds"
        fallback = next((c["device_models_fallback"] for c in checks if c.get("device_models_fallback")), None)
        if fallback:
            from ..circuit.netlist import fallback_warning
            warnings.append(fallback_warning(fallback))
            click.echo(f"warning: {warnings[-1]}", err=True)
    out["provenance"] = record(
        technology=info["tech"], array_size=[a.rows, a.cols], topology=table_prov.get("topology"),
        r_wire_ohm=info.get("r_wire_ohm"), ngspice_version=table_prov.get("ngspice_version"),
        solver=table_prov.get("solver"), table=table_prov.get("source_path"),
        table_code_version=table_prov.get("code_version"), table_seed=table_prov.get("seed"),
        table_synthetic=bool(table_prov.get("synthetic", False)), seed=config.run.seed, model=model_name,
        checkpoint=ckpt, data=str(source), v_read_v=info.get("v_read_v"), t_read_s=info.get("t_read_s"),
        max_on_count_vector_stride=config.mapping.max_stride, bits=bits, machine=machine_description(),
        products=info.get("products"), cim_config_sha256=digest)
    return out


def echo_summary(out: dict) -> None:
    """The one-line (two in spice mode) human summary of a :func:`run` result."""
    ov, e, bits = out["overall"], out["array_energy_j"], out["bits"]
    click.echo(f"{out['model']}{'' if bits == 1 else f' ({bits}-bit)'} on {out['tech']} {out['rows']}x{out['cols']} "
               f"({out['mode']}, binsparx {'on' if out['binsparx'] else 'off'}): "
               f"accuracy {out['accuracy']:.4f} ({out['correct']}/{out['n']}), ON cells {ov['on_cell_fraction']:.3f}, "
               f"mean ON-count {ov['mean_on_count']:.2f}, array energy "
               f"{'n/a' if e is None else f'{e:.3e} J'}, {out['seconds']:.1f} s")
    if out["mode"] == "spice":
        s = out["spice_summary"]
        click.echo(f"spice spot checks: {s['tiles']} tiles, surrogate/SPICE code agreement "
                   f"{s.get('code_agreement_surrogate_vs_spice', float('nan')):.3f}, {out['spice_seconds']:.1f} s")


def _jsonable(o):
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
    except ImportError:  # pragma: no cover
        pass
    return str(o)
