"""How wide must certified reads' margin be? Re-solves, on real network reads, every column whose surrogate current
lies within 2x its ON-count's residual bound r_k (cosim.cim.arrays.CertifiedArray.residual_a: the table's largest
calibration residual at the count and the two beside it) of an ADC decision level, and reports for each smaller
factor s the fraction of column reads it would re-solve and the reads whose code would then differ from the exact
solver's (codes of columns farther than 2 r_k from every level are taken to be the exact ones: the error-budget
checks, scripts/error_budget.py --check-exact, measure those):

    PYTHONPATH=. python scripts/certify_margin.py --model vgg-small --adc-reference calibrated --images 2
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

FACTORS = (2.0, 1.5, 1.0, 0.75, 0.5, 0.35, 0.25)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="vgg-small", choices=["vgg-small", "resnet18"])
    ap.add_argument("--tech", default="sram8t")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--table", default=None, help="default: the shipped table (it must record residuals)")
    ap.add_argument("--adc-reference", default="ideal", choices=["ideal", "calibrated"])
    ap.add_argument("--images", type=int, default=2, help="class-balanced CIFAR-10 test images")
    ap.add_argument("--out", default=None, help="JSON file of the result")
    a = ap.parse_args(argv)

    import torch

    from cosim.bnn.datasets import load_cifar10, resolve_data_path, to_tensor
    from cosim.bnn.models import load_reference
    from cosim.circuit.netlist import ArraySpec
    from cosim.circuit.solver import solve_columns
    from cosim.cim import to_cim
    from cosim.study import stats

    torch.set_num_threads(1)
    net = load_reference(a.model)
    images, labels = load_cifar10(resolve_data_path(None), split="test")
    x_img = to_tensor(images[stats.balanced_indices(labels, a.images)])
    cert = to_cim(net, tech=a.tech, rows=a.rows, cols=64, mode="surrogate", table=a.table, certify=True,
                  adc_reference=a.adc_reference)
    arr = cert.cim_array
    rec: list[np.ndarray] = []
    reads = [0]

    def read(x_bits, w_bits):       # the read, with every column within 2 r_k re-solved and recorded
        s = arr.surrogate
        cur = s.column_currents(x_bits, arr.prepared(w_bits)).to(torch.float64)
        k = (x_bits.float() @ w_bits.float()).round().long()
        r_k = arr.residual_a[k]
        thr = arr.thresholds_a
        i = torch.searchsorted(thr, cur).clamp(1, thr.numel()) - 1
        dist = torch.minimum((cur - thr[i]).abs(), (cur - thr[(i + 1).clamp(max=thr.numel() - 1)]).abs())
        kk, cc = (dist <= max(FACTORS) * r_k).nonzero(as_tuple=True)
        spec = ArraySpec(arr.tech, arr.rows, int(w_bits.shape[1]), "decoupled")
        exact = torch.from_numpy(solve_columns(spec, x_bits.to(torch.uint8).numpy(), w_bits.to(torch.uint8).numpy(),
                                               kk.numpy(), cc.numpy()))
        sur = cur[kk, cc]
        differ = s.adc.digitize(sur) != s.adc.digitize(exact)
        rec.append(np.stack([dist[kk, cc].numpy(), r_k[kk, cc].numpy(), (exact - sur).abs().numpy(),
                             differ.numpy().astype(np.float64)], 1))
        reads[0] += cur.numel()
        cur[kk, cc] = exact
        return s.adc.digitize(cur).float(), float(cur.sum())

    arr.read_with_current = read
    with torch.inference_mode():
        cert(x_img)
    r = np.concatenate(rec) if rec else np.zeros((0, 4))
    dist, r_k, err, differ = r[:, 0], r[:, 1], r[:, 2], r[:, 3].astype(bool)
    ratio = err / r_k
    out = {"model": a.model, "technology": a.tech, "rows": a.rows, "adc_reference": a.adc_reference,
           "images": a.images, "column_reads": reads[0], "table": arr.surrogate.table.provenance.get("source_path"),
           "error_over_residual_quantiles": {str(q): float(np.quantile(ratio, q)) for q in (0.5, 0.9, 0.99, 0.999, 1.0)}
           if ratio.size else {},
           "factors": [{"factor": f, "resolved_fraction": float((dist <= f * r_k).sum() / reads[0]),
                        "codes_differ": int((differ & (dist > f * r_k)).sum()),
                        "codes_differ_ppm": float((differ & (dist > f * r_k)).sum() / reads[0] * 1e6)}
                       for f in FACTORS]}
    text = json.dumps(out, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
