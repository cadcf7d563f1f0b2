"""``cosim eval``: software accuracy of a binary network on CIFAR-10 (float32, exact binary arithmetic)."""

from __future__ import annotations

import json

import click

from ..bnn.models import MODEL_NAMES


@click.command("eval")
@click.option("--model", "model_name", type=click.Choice(MODEL_NAMES), default=None,
              help="Network; checked against the checkpoint (a compact checkpoint names its own).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Compact cosim checkpoint or a state dict (.pt). Default: cosim's packaged checkpoint of "
                   "--model if one is committed, else the reference weights in $COSIM_MODELS.")
@click.option("--data", type=click.Path(), default=None,
              help="CIFAR-10 (image-folder tree or official python version, folder or .tar.gz). Default: $COSIM_DATA.")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate the first N images only.")
@click.option("--batch-size", type=click.IntRange(min=1), default=250, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--progress/--no-progress", default=False, help="Show a progress bar.")
def command(model_name, checkpoint, data, split, limit, batch_size, device, as_json, progress):
    """Evaluate a binary network's top-1 accuracy on CIFAR-10."""
    from ..bnn.checkpoint import load_checkpoint, load_default
    from ..bnn.evaluate import evaluate
    from ..bnn.train import pick_device
    from ..bnn.datasets import load_cifar10, resolve_data_path
    from ..errors import InputError
    from ..provenance import record

    if checkpoint is None:
        if model_name is None:
            raise InputError("give --model or --checkpoint")
        model, meta = load_default(model_name)
        checkpoint = meta["checkpoint_path"]
    else:
        model, meta = load_checkpoint(checkpoint, model=model_name)
    source = resolve_data_path(data)
    images, labels = load_cifar10(source, split=split)
    dev = pick_device(device)
    result = evaluate(model, images, labels, batch_size=batch_size, limit=limit, device=dev, progress=progress)
    out = {"model": meta["model"], "checkpoint": str(checkpoint), "data": str(source), "split": split, **result,
           "provenance": record(seed=None, technology=None, array_size=None, ngspice_version=None,
                                solver="software float32")}
    if as_json:
        click.echo(json.dumps(out, indent=1))
    else:
        click.echo(f"{out['model']}: accuracy {out['accuracy']:.4f} ({out['correct']}/{out['n']} {split} images, "
                   f"{out['seconds']:.1f} s on {out['device']}; checkpoint {checkpoint})")
