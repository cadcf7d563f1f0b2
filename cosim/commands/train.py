"""``cosim train``: train VGG-small or ResNet-18 on CIFAR-10 (CPU or CUDA with bf16 autocast).

Writes the compact checkpoint OUT and the training state OUT.state after every epoch. When OUT.state
exists, the run continues from it (automatic; ``--resume`` insists on it, ``--fresh`` starts over).
"""

from __future__ import annotations

import json

import click

from ..bnn.models import MODEL_NAMES


@click.command("train")
@click.option("--model", "model_name", type=click.Choice(MODEL_NAMES), required=True)
@click.option("--data", type=click.Path(), default=None,
              help="CIFAR-10 (image-folder tree or official python version, folder or .tar.gz). Default: $COSIM_DATA.")
@click.option("--epochs", type=click.IntRange(min=1), default=80, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Compact checkpoint to write (the training state goes to OUT.state).")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True,
              help="Adam learning rate at the start of the cosine schedule.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto (cuda when available), cpu, cuda, cuda:N.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Train on the first N training images.")
@click.option("--test-limit", type=click.IntRange(min=1), default=None,
              help="Evaluate on the first N test images (default: all).")
@click.option("--eval-every", type=click.IntRange(min=0), default=1, show_default=True,
              help="Evaluate every N epochs (0: only after the last).")
@click.option("--augment/--no-augment", default=True, show_default=True,
              help="Random crop (reflect pad 4) and horizontal flip.")
@click.option("--resume", "resume_mode", flag_value="require", help="Continue from OUT.state; fail without one.")
@click.option("--fresh", "resume_mode", flag_value="never", help="Ignore OUT.state and start over.")
@click.option("--auto-resume", "resume_mode", flag_value="auto", default=True, hidden=True)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar per epoch.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object at the end.")
@click.option("--bits", type=click.Choice(["1", "2", "4"]), default="1", show_default=True,
              help="Weight and activation bits: 1 is the BNN; 2 and 4 train a k-bit network (LSQ).")
@click.option("--init", "init", default=None,
              help="k-bit only: start from this BNN checkpoint, or 'reference' for the reference BNN weights "
                   "(float layers and BNs copied, k-bit weights from the binary signs).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch.")
@click.option("--amp/--no-amp", default=None,
              help="bf16 autocast for the convolutions (default: on for CUDA, off on CPU; on CPUs with bf16 "
                   "matrix units, e.g. AMX, it about halves a k-bit training step).")
def command(model_name, data, epochs, out, batch_size, lr, weight_decay, seed, device, limit, test_limit,
            eval_every, augment, resume_mode, progress, as_json, bits, init, threads, amp):
    """Train a binary network on CIFAR-10; resumable from its last checkpoint."""
    from ..bnn.train import TrainConfig, state_path, train
    from ..bnn.datasets import load_cifar10, resolve_data_path

    if threads is not None:
        import torch
        torch.set_num_threads(threads)
    cfg = TrainConfig(bits=int(bits), init=init, model=model_name, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                      seed=seed, device=device, limit=limit, test_limit=test_limit, eval_every=eval_every,
                      augment=augment, amp=amp)
    source = resolve_data_path(data)
    x_train, y_train = load_cifar10(source, split="train")
    x_test, y_test = load_cifar10(source, split="test")
    log = (lambda msg: click.echo(msg, err=True)) if as_json else click.echo
    result = train(cfg, x_train, y_train, x_test, y_test, out, resume=resume_mode or "auto", progress=progress,
                   log=log, data_source=str(source))
    summary = {"model": cfg.model, "bits": cfg.bits, "out": str(result.out), "state": str(state_path(out)),
               "epochs": result.epochs_done, "train_s": round(result.train_s, 1),
               "accuracy": None if result.test is None else result.test["accuracy"],
               "n": None if result.test is None else result.test["n"]}
    if as_json:
        click.echo(json.dumps(summary, indent=1))
    else:
        acc = "" if summary["accuracy"] is None else f", test accuracy {summary['accuracy']:.4f} (n={summary['n']})"
        click.echo(f"{cfg.model}: {summary['epochs']} epochs{acc}; checkpoint {summary['out']}")
