"""Worked example: a small Brevitas BNN, trained briefly, converted with ``to_cim``, run ideal
(bit-identical to its software forward pass) and through the SPICE-calibrated surrogate.

    PYTHONPATH=. .venv/bin/python scripts/brevitas_example.py                 # CIFAR-10 ($COSIM_DATA)
    PYTHONPATH=. .venv/bin/python scripts/brevitas_example.py --synthetic     # no data set needed

The network follows FINN's BNN-PYNQ conventions: a float first convolution, then 1-bit weights of
scale 1 (``SignedBinaryWeightPerTensorConst`` with ``scaling_const=1``), 1-bit activations
(``QuantIdentity`` with ``SignedBinaryActPerTensorConst``), unpadded binary convolutions (a zero pad
is not a bit), binary fully connected layers. Needs ``brevitas`` (the dev extras).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch
from torch import nn


def build(seed: int) -> nn.Module:
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
    from brevitas.quant import SignedBinaryActPerTensorConst as BinAct
    from brevitas.quant import SignedBinaryWeightPerTensorConst as BinW
    w1 = BinW.let(scaling_const=1.0)
    torch.manual_seed(seed)

    def act():
        return QuantIdentity(act_quant=BinAct)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), act(),                 # 32x32
        QuantConv2d(32, 64, 3, bias=False, weight_quant=w1), nn.BatchNorm2d(64), nn.MaxPool2d(2), act(),  # 15
        QuantConv2d(64, 64, 3, bias=False, weight_quant=w1), nn.BatchNorm2d(64), nn.MaxPool2d(2), act(),  # 6
        nn.Flatten(),
        QuantLinear(64 * 6 * 6, 128, bias=False, weight_quant=w1), nn.BatchNorm1d(128), act(),
        QuantLinear(128, 10, bias=False, weight_quant=w1), nn.BatchNorm1d(10))


def load(args):
    from cosim.bnn.datasets import load_cifar10, synthetic_arrays, to_tensor
    if args.synthetic:
        xtr, ytr = synthetic_arrays(args.train_images // 10, seed=args.seed)
        xte, yte = synthetic_arrays(args.test_images // 10, seed=args.seed + 1)
    else:
        xtr, ytr = load_cifar10(args.data, "train")
        xte, yte = load_cifar10(args.data, "test")
        rng = np.random.default_rng(args.seed)
        pick = rng.permutation(len(ytr))[:args.train_images]
        xtr, ytr = xtr[pick], ytr[pick]
        xte, yte = xte[:args.test_images], yte[:args.test_images]
    return to_tensor(xtr), torch.as_tensor(ytr), to_tensor(xte), torch.as_tensor(yte)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch: int, seed: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    t0 = time.process_time()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(batch):
            xb = x[idx]
            xb = torch.where(torch.rand(len(idx), 1, 1, 1, generator=g) < 0.5, xb, xb.flip(3))   # h-flip
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return time.process_time() - t0


@torch.no_grad()
def logits_of(model: nn.Module, x: torch.Tensor, batch: int = 250) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="CIFAR-10 path (default: $COSIM_DATA)")
    ap.add_argument("--synthetic", action="store_true", help="synthetic images instead of CIFAR-10")
    ap.add_argument("--train-images", type=int, default=5000)
    ap.add_argument("--test-images", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--tech", default="sram8t")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)

    from cosim.cim import cim_stats, to_cim
    torch.set_num_threads(max(1, torch.get_num_threads()))
    xtr, ytr, xte, yte = load(args)
    model = build(args.seed)
    cpu_train_s = train(model, xtr, ytr, args.epochs, args.batch, args.seed)
    ref = logits_of(model, xte)
    out = {"data": "synthetic" if args.synthetic else "CIFAR-10", "train_images": len(ytr), "epochs": args.epochs,
           "test_images": len(yte), "cpu_train_s": round(cpu_train_s, 1),
           "software_accuracy": float((ref.argmax(1) == yte).float().mean())}
    ideal = to_cim(model, tech=args.tech, rows=args.rows, cols=args.rows, mode="ideal")
    out["mapped_layers"] = [s["name"] for s in cim_stats(ideal)["layers"]]
    li = logits_of(ideal, xte)
    out["ideal_bit_identical"] = bool(torch.equal(li, ref))
    sur = to_cim(model, tech=args.tech, rows=args.rows, cols=args.rows, mode="surrogate", binsparx=True)
    t0 = time.process_time()
    ls = logits_of(sur, xte)
    out["cpu_surrogate_s"] = round(time.process_time() - t0, 1)
    out["surrogate"] = {"tech": args.tech, "rows": args.rows, "binsparx": True,
                        "accuracy": float((ls.argmax(1) == yte).float().mean()),
                        "agreement_with_software": float((ls.argmax(1) == ref.argmax(1)).float().mean()),
                        "array_energy_j": cim_stats(sur)["overall"].get("array_energy_j")}
    out["torch"] = torch.__version__
    import brevitas
    out["brevitas"] = brevitas.__version__
    out["cpu"] = platform.processor() or platform.machine()
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0 if out["ideal_bit_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
