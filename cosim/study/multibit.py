"""Binary vs 2-bit vs 4-bit networks on the same binary-cell arrays: accuracy drop and its statistics.

    # measure (one JSON per network, precision and technology, in --results; existing ones are kept)
    .venv/bin/python scripts/multibit_study.py run --model vgg-small --bits 1 2 4 --limit 100 --threads 1
    # write docs/MULTIBIT.md from the results
    .venv/bin/python scripts/multibit_study.py render

(``scripts/multibit_study.py`` calls ``main`` here; ``python -m cosim.study.multibit`` is the same.)

For each network and precision: software accuracy on the first ``--limit`` CIFAR-10 test images; the
ideal CiM network on the first ``--stats-limit`` images (bit-exactness against software, and the
per-bit-plane distributions: rows on per read, ON-counts per read); then for each technology the
surrogate CiM network (shipped table of ``--rows``, its default wire resistance or ``--r-wire-ohm``) on the same
``--limit`` images, and, on ``--error-images`` images, each CiM layer's output error (surrogate
against ideal, for the same layer input). Binary networks are the reference BNN weights; k-bit ones
the checkpoints of ``cosim train --bits k`` ($COSIM_CACHE/checkpoints, see docs/MULTIBIT.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..paths import CHECKOUT_DIR as ROOT
from .markdown import bullets, md_row, signed_pp as _pct

TECHS = ("sram8t", "reram1t1r")


def _checkpoint_sha(result: dict) -> str | None:
    """The network checkpoint's SHA-256 a stored result records (software runs at the top level, CiM runs
    in their provenance), or None."""
    return result.get("checkpoint_sha256") or result.get("provenance", {}).get("checkpoint_sha256")


def _stale(path: Path, info: dict, table_sha: str | None) -> bool:
    """Whether a stored result was made from another checkpoint (or, for CiM runs, another table) than now,
    or does not say which."""
    old = json.loads(path.read_text())
    if _checkpoint_sha(old) != info["checkpoint_sha256"]:
        return True
    return table_sha is not None and old.get("provenance", {}).get("table_sha256") != table_sha


def _load(model: str, bits: int):
    from ..bnn.models import load_reference, reference_path
    from ..bnn.quant import default_qcheckpoint, load_qcheckpoint
    from ..provenance import sha256_file
    if bits == 1:
        path = reference_path(model)
        return load_reference(model), {"checkpoint": str(path), "checkpoint_sha256": sha256_file(path),
                                       "recipe": "reference BNN weights"}
    net, meta = load_qcheckpoint(default_qcheckpoint(model, bits), model=model, bits=bits)
    return net, {"checkpoint": meta["checkpoint_path"], "checkpoint_sha256": sha256_file(meta["checkpoint_path"]),
                 "recipe": meta.get("recipe"), "epochs": meta.get("epochs"), "epochs_planned": meta.get("epochs_planned"),
                 "train_images": meta.get("train_images"), "train_s": meta.get("train_s"),
                 "test_acc_at_training": meta.get("test_acc"), "test_n_at_training": meta.get("test_n"),
                 "train_device": meta.get("device"), "train_command": _train_command(meta)}


def _train_command(meta: dict) -> str:
    c = meta.get("config") or {}
    if not c:
        return ""
    parts = [f"cosim train --model {c['model']} --bits {c['bits']}"]
    if c.get("init"):
        parts.append(f"--init {c['init']}")
    parts.append(f"--epochs {c['epochs']} --batch-size {c['batch_size']} --lr {c['lr']:g} --seed {c['seed']}")
    if c.get("limit"):
        parts.append(f"--limit {c['limit']}")
    if c.get("test_limit"):
        parts.append(f"--test-limit {c['test_limit']}")
    if c.get("amp"):
        parts.append("--amp")
    parts.append(f"--eval-every {c['eval_every']} --device {c['device']} --threads 1 --no-progress --json "
                 f"--out $COSIM_CACHE/checkpoints/{c['model'].replace('-', '_')}_w{c['bits']}a{c['bits']}.ckpt")
    return " ".join(parts)


def _predict(net, images, batch):
    import torch
    from ..bnn.datasets import to_tensor
    outs = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            outs.append(net(to_tensor(images[i:i + batch])).float())
    return torch.cat(outs)


def _hist_hooks(cim):
    """Forward pre-hooks collecting per-plane histograms on every CiM layer (binary ones too)."""
    import torch
    from ..cim.bitslice import CiMQuantConv2d, count_histograms
    from ..cim.convert import cim_layers
    from ..cim.mapping import im2col_bits
    from ..bnn.quant import bit_planes_pm1

    acc, handles = {}, []
    for name, m in cim_layers(cim):
        k = m.bits if isinstance(m, CiMQuantConv2d) else 1

        def hook(mod, inp, name=name, k=k):
            x = inp[0]
            if k == 1:
                xb = mod.source.binary_input(x)
            else:
                xb = torch.cat(bit_planes_pm1(mod.source.int_input(x), k), dim=0)
            buf, _ = im2col_bits(xb, mod.kernel_size, mod.stride, mod.matrix.tiles, mod.matrix.dtype)
            r, o = count_histograms(mod.matrix, buf, k, k, stride=4)
            if name in acc:
                acc[name][0].add_(r), acc[name][1].add_(o)
            else:
                acc[name] = [r, o]
        handles.append(m.register_forward_pre_hook(hook))
    return acc, handles


def _summarise_hists(acc, rows: int, bits: int) -> dict:
    import torch
    r = sum(v[0] for v in acc.values())            # (k, R+1)
    o = sum(v[1] for v in acc.values())            # (k, k, R+1)
    c = torch.arange(rows + 1, dtype=torch.float64)

    def q(h, p):
        cum = torch.cumsum(h, 0) / h.sum()
        return int(torch.searchsorted(cum, torch.tensor(p, dtype=torch.float64)))

    planes = []
    for j in range(bits):
        pj = {"act_plane": j, "mean_rows_on": float((r[j] * c).sum() / r[j].sum()),
              "p99_rows_on": q(r[j], 0.99), "weight_planes": []}
        for i in range(bits):
            h = o[j, i]
            pj["weight_planes"].append({"weight_plane": i, "mean_on_count": float((h * c).sum() / h.sum()),
                                        "p50_on_count": q(h, 0.5), "p99_on_count": q(h, 0.99),
                                        "max_on_count": int(torch.nonzero(h).max()),
                                        "frac_on_count_ge_16": float(h[16:].sum() / h.sum())})
        planes.append(pj)
    allo = o.sum(dim=(0, 1))
    return {"planes": planes, "rows_on_hist": r.sum(0).tolist(), "on_count_hist": allo.tolist(),
            "mean_rows_on": float((r.sum(0) * c).sum() / r.sum()), "mean_on_count": float((allo * c).sum() / allo.sum()),
            "p99_on_count": q(allo, 0.99), "frac_on_count_ge_16": float(allo[16:].sum() / allo.sum()),
            "column_reads_sampled": float(allo.sum())}


def _layer_errors(cim_ideal, cim_sur, x):
    """Per CiM layer: surrogate output against ideal output for the same (ideal network's) layer input."""
    import torch
    from ..cim.convert import cim_layers
    inputs, handles = {}, []
    for name, m in cim_layers(cim_ideal):
        handles.append(m.register_forward_pre_hook(lambda mod, inp, name=name: inputs.__setitem__(name, inp[0])))
    with torch.inference_mode():
        cim_ideal(x)
    for h in handles:
        h.remove()
    ideal_l, sur_l = dict(cim_layers(cim_ideal)), dict(cim_layers(cim_sur))
    out = []
    with torch.inference_mode():
        for name, xin in inputs.items():
            yi = ideal_l[name](xin)
            ys = sur_l[name](xin)
            err = (ys - yi).double()
            spread = (yi - yi.mean(dim=(0, 2, 3), keepdim=True)).double()
            out.append({"layer": name, "rel_rms_error": float(err.pow(2).mean().sqrt() / spread.pow(2).mean().sqrt()),
                        "frac_outputs_changed": float((err != 0).double().mean())})
    return out


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def run(args) -> None:
    """Measure what ``args`` asks (see ``main``): per network precision its software run, then its CiM run on
    each technology; a result already in ``args.results`` is kept unless stale or ``--force``."""
    import torch
    from ..bnn.models import canonical_name
    from ..bnn.datasets import load_cifar10, resolve_data_path

    torch.set_num_threads(args.threads)
    model = canonical_name(args.model)
    out_dir = Path(args.results)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = resolve_data_path(args.data)
    images, labels = load_cifar10(source, split="test")
    images, labels = images[:args.limit], labels[:args.limit]
    for bits in args.bits:
        net, info = _load(model, bits)
        sw_path = out_dir / f"{model}_b{bits}_software.json"
        if args.force or not sw_path.is_file() or _stale(sw_path, info, None):
            _software_run(args, model, bits, net, info, images, labels, source, sw_path)
        variant = _variant(args)
        for tech in args.techs:
            table, table_file, table_sha = _find_table(tech, args.rows, args.r_wire_ohm)
            r_tag = "" if args.r_wire_ohm is None else f"_r{args.r_wire_ohm:g}ohm"
            path = out_dir / f"{model}_b{bits}_{tech}_{args.rows}{r_tag}{'' if variant == 'default' else '_' + variant}.json"
            if path.is_file() and not args.force:
                if not _stale(path, info, table_sha):
                    continue
                print(f"{path.name}: made with another table or checkpoint; running it again", flush=True)
            _cim_run(args, model, bits, net, info, tech, table, table_sha, variant, images, labels, source, path)


def _write_json(path: Path, res: dict) -> None:
    from ..fileio import atomic_path
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(res, indent=1))


def _software_run(args, model: str, bits: int, net, info: dict, images, labels, source, sw_path: Path) -> None:
    """The software network on the first ``--limit`` images, and the ideal CiM network on the first
    ``--stats-limit`` (bit-exactness, per-plane statistics): ``sw_path``."""
    import torch
    from ..cim import to_cim
    from ..provenance import record

    t0 = time.perf_counter()
    logits = _predict(net, images, args.batch)
    pred = logits.argmax(1).numpy()
    ns = min(args.stats_limit, args.limit)
    cim = to_cim(net, tech=args.techs[0], rows=args.rows, cols=args.cols, mode="ideal")
    acc, handles = _hist_hooks(cim)
    ideal_logits = _predict(cim, images[:ns], args.batch)
    for h in handles:
        h.remove()
    sw_first = _predict(net, images[:ns], args.batch)     # the same batches as the ideal run
    res = {"model": model, "bits": bits, **info, "n": len(labels), "software_correct": (pred == labels).tolist(),
           "software_pred": pred.tolist(), "software_accuracy": float((pred == labels).mean()),
           "ideal_n": ns, "ideal_bit_identical_logits": bool(torch.equal(ideal_logits, sw_first)),
           "ideal_pred_agreement": float((ideal_logits.argmax(1) == sw_first.argmax(1)).double().mean()),
           "rows": args.rows, "cols": args.cols,
           "statistics": _summarise_hists(acc, args.rows, bits), "seconds": round(time.perf_counter() - t0, 1),
           "load_average_at_end": _uptime(),
           "provenance": record(model=model, bits=bits, data=str(source), array_size=[args.rows, args.cols],
                                command=" ".join(sys.argv))}
    _write_json(sw_path, res)
    print(f"{model} {bits}-bit software {res['software_accuracy']:.3f} ideal bit-identical "
          f"{res['ideal_bit_identical_logits']} ({res['seconds']} s)", flush=True)

def _cim_run(args, model: str, bits: int, net, info: dict, tech: str, table, table_sha: str, variant: str,
             images, labels, source, path: Path) -> None:
    """The surrogate CiM network on ``tech`` on the first ``--limit`` images, and each CiM layer's output
    error against ideal on ``--error-images``: ``path``."""
    from ..cim import cim_stats, to_cim
    from ..provenance import record

    t0 = time.perf_counter()
    cim: Any = to_cim(net, tech=tech, rows=args.rows, cols=args.cols, mode="surrogate", binsparx=args.binsparx,
                 adc_reference=args.adc_reference, table=table)
    logits = _predict(cim, images, args.batch)
    seconds = time.perf_counter() - t0
    pred = logits.argmax(1).numpy()
    ov = cim_stats(cim)["overall"]
    errs = []
    if args.error_images:
        ideal = to_cim(net, tech=tech, rows=args.rows, cols=args.cols, mode="ideal", binsparx=args.binsparx)
        from ..bnn.datasets import to_tensor
        errs = _layer_errors(ideal, cim, to_tensor(images[:args.error_images]))
    arr = cim.cim_info["array"]
    prov = arr.get("table_provenance", {})
    res = {"model": model, "bits": bits, "tech": tech, "rows": args.rows, "cols": args.cols, "n": len(labels),
           "variant": variant, "binsparx": args.binsparx, "adc_reference": args.adc_reference,
           "r_wire_ohm": cim.cim_info.get("r_wire_ohm"), "r_wire_explicit": args.r_wire_ohm is not None,
           "cim_correct": (pred == labels).tolist(), "cim_pred": pred.tolist(),
           "cim_accuracy": float((pred == labels).mean()), "overall": ov, "layer_errors": errs,
           "error_images": args.error_images, "seconds": round(seconds, 1), "threads": args.threads,
           "load_average_at_end": _uptime(),
           "provenance": record(model=model, bits=bits, technology=tech, array_size=[args.rows, args.cols],
                                r_wire_ohm=cim.cim_info.get("r_wire_ohm"), table=prov.get("source_path"),
                                table_sha256=table_sha,
                                table_code_version=prov.get("code_version"),
                                table_synthetic=bool(prov.get("synthetic", False)),
                                ngspice_version=prov.get("ngspice_version"), data=str(source),
                                checkpoint=info["checkpoint"], checkpoint_sha256=info["checkpoint_sha256"],
                                command=" ".join(sys.argv))}
    _write_json(path, res)
    print(f"{model} {bits}-bit {tech} {args.rows} {variant}: CiM {res['cim_accuracy']:.3f} ({res['seconds']} s)", flush=True)


def _find_table(tech: str, rows: int, r_wire_ohm: float | None):
    """(table, path, sha256) of the shipped table calibrated for this technology, rows and wire resistance
    (default: the technology's own), found by the table registry as the study finds its tables."""
    from ..errors import TableError
    from ..surrogate.registry import find_table, tables_dir
    try:
        return find_table(tech, rows, r_wire_ohm, [tables_dir()])
    except TableError as e:
        raise SystemExit(f"{e} (scripts/make_tables.py makes the shipped wire-resistance variants)") from None


# ------------------------------------------------------------------------------------------ render
def _boot_ci(diff: np.ndarray, n_boot: int = 10000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap CI of the mean of per-image values (resampling images)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(n_boot, len(diff)))
    means = diff[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


VARIANTS = {"default": "ideal ADC references, no BinSparX",
            "adccal-bsx": "calibrated ADC references + BinSparX"}


def _variant(args) -> str:
    if args.adc_reference == "ideal" and not args.binsparx:
        return "default"
    if args.adc_reference == "calibrated" and args.binsparx:
        return "adccal-bsx"
    raise SystemExit("variants: default (ideal ADC references, no BinSparX) or --adc-reference calibrated --binsparx")


CHANCE = 0.1   # CIFAR-10, ten balanced classes


def _retained(sw_c: np.ndarray, cim_c: np.ndarray) -> float:
    """Fraction of the software network's above-chance accuracy that the CiM network keeps."""
    return (cim_c.mean() - CHANCE) / max(sw_c.mean() - CHANCE, 1e-9)


def _boot_stat(fn, arrays: list[np.ndarray], n_boot: int = 10000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap CI of fn(*arrays resampled over the same images)."""
    rng = np.random.default_rng(seed)
    n = len(arrays[0])
    vals = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        vals[b] = fn(*[a[idx] for a in arrays])
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def load_results(res_dir: Path) -> tuple[dict, dict, list[str]]:
    """The JSON results in ``res_dir``: software runs by (network, bits), CiM runs by (network, bits, label,
    rows), and the names of CiM results left out because their network was retrained since (stale)."""
    sw = {}
    for p in sorted(res_dir.glob("*_software.json")):
        r = json.loads(p.read_text())
        sw[(r["model"], r["bits"])] = r
    runs, stale = {}, []
    for p in sorted(res_dir.glob("*_b*_*_*.json")):
        if p.name.endswith("_software.json"):
            continue
        r = json.loads(p.read_text())
        s = sw.get((r["model"], r["bits"]))
        if s is not None and _checkpoint_sha(r) != _checkpoint_sha(s):
            stale.append(p.name)    # made from another network than the software run: no drop can be formed
            continue
        label = (r["tech"] + (f", {r['r_wire_ohm']:g} ohm/cell" if r.get("r_wire_explicit") else "")
                 + ("" if r.get("variant", "default") == "default" else f" ({VARIANTS[r['variant']]})"))
        runs[(r["model"], r["bits"], label, r["rows"])] = r
    if not runs:
        raise SystemExit(f"no results in {res_dir}; run `scripts/multibit_study.py run` first")
    return sw, runs, stale


def drop_statistics(sw: dict, runs: dict) -> dict:
    """Per CiM run with a software run: the accuracy drop, retained above-chance accuracy and prediction
    agreement over the same images, each with its 95 % bootstrap CI (and the per-image arrays behind them)."""
    drops = {}
    for key, r in sorted(runs.items()):
        if (key[0], key[1]) not in sw:
            continue
        s = sw[(key[0], key[1])]
        n = min(len(s["software_correct"]), len(r["cim_correct"]))
        d = np.array(s["software_correct"][:n], float) - np.array(r["cim_correct"][:n], float)
        agree = np.array(s["software_pred"][:n]) == np.array(r["cim_pred"][:n])
        swc, cimc = np.array(s["software_correct"][:n], float), np.array(r["cim_correct"][:n], float)
        drops[key] = {"n": n, "d": d, "drop": float(d.mean()), "ci": _boot_ci(d), "swc": swc, "cimc": cimc,
                      "retained": float(_retained(swc, cimc)), "retained_ci": _boot_stat(_retained, [swc, cimc], 2000),
                      "agree": float(agree.mean()), "agree_ci": _boot_ci(agree.astype(float)),
                      "sw": float(np.mean(s["software_correct"][:n])), "cim": float(np.mean(r["cim_correct"][:n]))}
    return drops


def paired_comparisons(drops: dict) -> tuple[list[tuple], int, int, str]:
    """BNN against k-bit on the same images: (rows, BNN significantly worse, k-bit significantly worse,
    verdict by the rule in the document's "Claim")."""
    verdict_rows, bin_worse, kbit_worse = [], 0, 0
    for (model, bits, tech, rows), v in sorted(drops.items()):
        if bits == 1:
            continue
        b = drops.get((model, 1, tech, rows))
        if b is None:
            continue
        n = min(b["n"], v["n"])
        diff = b["d"][:n] - v["d"][:n]
        lo, hi = _boot_ci(diff)

        def rdiff(s1, c1, sk, ck):
            return _retained(sk, ck) - _retained(s1, c1)
        arrays = [b["swc"][:n], b["cimc"][:n], v["swc"][:n], v["cimc"][:n]]
        rmean = float(rdiff(*arrays))
        rlo, rhi = _boot_stat(rdiff, arrays, 2000)
        if rlo > 0:
            bin_worse += 1
        if rhi < 0:
            kbit_worse += 1
        verdict_rows.append((model, tech, rows, bits, float(diff.mean()), lo, hi, n, rmean, rlo, rhi))
    if kbit_worse:
        verdict = "not agreed"
    elif bin_worse:
        verdict = "agreed" if bin_worse == len(verdict_rows) else "partly agreed"
    else:
        verdict = "inconclusive"
    return verdict_rows, bin_worse, kbit_worse, verdict


def _intro(res_dir: Path) -> list[str]:
    """Title, where the numbers come from, the claim; ends at the summary's heading."""
    return [
        "# Binary, 2-bit and 4-bit networks on the same binary-cell arrays",
        "",
        "Generated by `scripts/multibit_study.py render` from the JSON results of `scripts/multibit_study.py run`",
        f"(in `{os.path.relpath(res_dir, ROOT) if str(res_dir).startswith(str(ROOT)) else '$COSIM_CACHE/multibit'}`); every number below was measured, the commands are at the end.",
        "",
        "The paper's claim: *CiM-BNNs are more prone to crossbar non-idealities than higher-precision",
        "networks on the same hardware.* cosim tests it by running binary, 2-bit and 4-bit versions of the",
        "same networks through one hardware model: the same shipped SPICE-calibrated tables, the same",
        "surrogate and ADC, the same R x C arrays of binary cells.",
        "",
        "## Summary (measured, generated)",
        "",
    ]


def _networks_section(sw: dict) -> list[str]:
    """How k-bit networks map onto binary cells, and the networks measured."""
    lines = [
        "## Mapping k-bit networks onto binary cells",
        "",
        "* **Encoding (offset binary, symmetric odd levels).** A k-bit weight or activation is an unsigned",
        "  code u in [0, Q], Q = 2^k - 1, standing for the odd integer v = 2u - Q = sum_i 2^i (2 b_i - 1): every",
        "  bit-plane b_i is a +-1 plane, and k = 1 is exactly the BNN's sign. There is no zero level (as in the",
        "  BNN); padding is the lowest level (u = 0: every plane off), as the BNN's -1 padding. Quantisers:",
        "  LSQ step sizes (one per layer for activations, one per output channel for weights), `cosim/bnn/quant.py`.",
        "* **Weights sliced across columns**: plane i of output channel c sits in column `c*k + i` (a weight's k",
        "  bits in k adjacent columns), one bit per cell; the layer is an n x (k C_out) binary matrix cut",
        "  into R x C arrays exactly as a BNN layer is (`cosim/cim/bitslice.py`).",
        "* **Activations bit-serial**: each activation plane is one binary input vector, one array read per",
        "  plane (k reads per vector and array).",
        "* Every read goes through the binary layers' own `CrossbarMatrix` (`cosim/cim/layers.py`) and array",
        "  model (`cosim/cim/arrays.py`: ideal, or the surrogate + ADC): the ADC code estimates the AND-count",
        "  c, the periphery recovers the +-1 dot product 4c - 2 sum b(x) - 2 sum b(w) + n (BinSparX flips, when",
        "  on, per plane), and the k x k partial products are **shifted and added** digitally with weights",
        "  2^(i+j), then scaled by the layer's float s_x s_w.",
        "* `ideal` mode is **bit-exact** against the quantised software network: tested with hypothesis on",
        "  the mapping (random sizes, precisions, array shapes, BinSparX) and on small and full networks",
        "  (`tests/test_multibit.py`), and checked below on real test images.",
        "* First convolution, batch norms, shortcuts and classifier stay float, as in the BNNs.",
        "",
        "## Networks",
        "",
        "| network | bits | weights | software accuracy (first N test images) | bit-identical ideal CiM logits |",
        "|---|---|---|---|---|",
    ]
    for (model, bits), s in sorted(sw.items()):
        how = s.get("recipe") or ""
        if bits != 1:
            stop = ("" if s.get("epochs") == s.get("epochs_planned")
                    else f" (stopped after epoch {s.get('epochs')} of {s.get('epochs_planned')} planned)")
            how = (f"`cosim train --bits {bits} --init reference`, {s.get('epochs')} epoch(s) of "
                   f"{s.get('train_images')} training images{stop}, {s.get('train_s')} s wall: {how}")
        lines.append(f"| {model} | {bits} | {how} | {s['software_accuracy']:.3f} (N = {s['n']}) | "
                     f"{'yes' if s['ideal_bit_identical_logits'] else 'NO'} (first {s['ideal_n']} images) |")
    return lines


def _drops_section(drops: dict, runs: dict, verdict_rows: list[tuple]) -> list[str]:
    """The accuracy drop per run, and BNN against k-bit paired over the same images."""
    lines = [
        "",
        "The binary networks are the reference weights (80 / 45 epochs on all 50,000 images on an H100). No",
        "GPU was lent to this task, so the k-bit networks are **one-epoch CPU fine-tunes** started from those",
        "BNNs (float layers, batch norms and weight signs copied, `--init reference`): not converged,",
        "so their software accuracy is below what 2- and 4-bit networks reach with a full schedule. The",
        "comparison below is of each network's *drop* against its own software accuracy, which is what the",
        "claim is about.",
        "",
        "## Accuracy drop on the arrays",
        "",
        "Surrogate mode, shipped table of each technology (its default wire resistance, 10 ohm/cell; rows",
        "naming another, e.g. *sram8t, 2 ohm/cell*, use the study's table calibrated at that wire resistance,",
        "`--r-wire-ohm`), the surrogate model moments-v3 (docs/VALIDATION.md), ADC with one code",
        "per count; without a note: ideal ADC references (k x I_cell) and no BinSparX (`cosim infer`",
        "defaults); rows marked *calibrated ADC references + BinSparX* use the SPICE-calibrated mean currents",
        "as ADC references and BinSparX flips (per bit-plane for k-bit), the study's best variant. Drop = software accuracy - CiM accuracy on the same",
        "images, in percentage points, with a 95 % bootstrap confidence interval over images (paired);",
        "agreement = fraction of images whose predicted class is the software network's.",
        "",
        "| network | tech | array | bits | N | software | CiM | drop (pp) [95 % CI] | above-chance accuracy retained [95 % CI] | prediction agreement [95 % CI] |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (model, bits, tech, rows), v in sorted(drops.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][3], kv[0][1])):
        lines.append(f"| {model} | {tech} | {rows}x{runs[(model, bits, tech, rows)]['cols']} | {bits} | {v['n']} | "
                     f"{v['sw']:.3f} | {v['cim']:.3f} | {_pct(v['drop'])} [{_pct(v['ci'][0])}, {_pct(v['ci'][1])}] | "
                     f"{v['retained']:.2f} [{v['retained_ci'][0]:.2f}, {v['retained_ci'][1]:.2f}] | "
                     f"{v['agree']:.3f} [{v['agree_ci'][0]:.3f}, {v['agree_ci'][1]:.3f}] |")
    lines += [
        "",
        "Retained = (CiM accuracy - 10 %) / (software accuracy - 10 %): the share of the network's",
        "above-chance accuracy that survives the arrays (1: no loss, 0: chance). It compares networks of",
        "different software accuracy fairly; the raw drop does not (a network at chance on the arrays drops",
        "by its own software accuracy - 10 %, so a less accurate network always 'drops' less).",
        "",
        "BNN against k-bit, paired over the same images (> 0: the BNN suffers more):",
        "",
        "| network | tech | array | k | BNN drop - k-bit drop, pp [95 % CI] | k-bit retained - BNN retained [95 % CI] | N |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, tech, rows, bits, mean, lo, hi, n, rm, rlo, rhi in verdict_rows:
        lines.append(f"| {model} | {tech} | {rows} | {bits} | {_pct(mean)} [{_pct(lo)}, {_pct(hi)}] | "
                     f"{rm:+.2f} [{rlo:+.2f}, {rhi:+.2f}] | {n} |")
    return lines


def _why_section(sw: dict, runs: dict) -> list[str]:
    """What the arrays see (per bit-plane statistics) and each CiM layer's output error."""
    lines = [
        "",
        "## Why: what the arrays see, and how an error moves the output",
        "",
        "Per bit-plane distributions from the ideal CiM run (true counts; every 4th input vector of every",
        "layer, first images as stated): rows on per read (of R real rows of a tile) and the AND-count",
        "(ON-count) of a column per read. A read's current, and so the IR drop that the surrogate models,",
        "grows with its ON-count.",
        "",
        "| network | bits | act. plane j | mean rows on | p99 rows on | ON-count mean / p99 / max per weight plane i = 0..k-1 |",
        "|---|---|---|---|---|---|",
    ]
    for (model, bits), s in sorted(sw.items()):
        st = s["statistics"]
        for pj in st["planes"]:
            wp = "; ".join(f"i={w['weight_plane']}: {w['mean_on_count']:.1f} / {w['p99_on_count']} / {w['max_on_count']}"
                           for w in pj["weight_planes"])
            lines.append(f"| {model} | {bits} | {pj['act_plane']} | {pj['mean_rows_on']:.1f} | {pj['p99_rows_on']} | {wp} |")
    lines += [
        "",
        "| network | bits | mean rows on per read | mean ON-count per column read | p99 ON-count | reads with ON-count >= 16 |",
        "|---|---|---|---|---|---|",
    ]
    for (model, bits), s in sorted(sw.items()):
        st = s["statistics"]
        lines.append(f"| {model} | {bits} | {st['mean_rows_on']:.1f} | {st['mean_on_count']:.2f} | {st['p99_on_count']} | "
                     f"{100 * st['frac_on_count_ge_16']:.1f} % |")
    lines += [
        "",
        "How a count error moves the output: an error e in the AND-count of one read moves that plane pair's",
        "+-1 dot product by 4e, and the layer output by 4e 2^(i+j) before the scale. A BNN layer's output spans",
        "[-n, n] and every count error lands at full weight; in a k-bit layer the errors of the low planes are",
        "attenuated by 2^(i+j) against the output's range of (2^k - 1)^2 n, while the top planes' errors are",
        "not. Measured: each CiM layer's output with the surrogate against the ideal output for the same",
        "input (ideal network's layer inputs), as an RMS error relative to the output's spread per channel:",
        "",
        "| network | tech | bits | relative RMS output error per CiM layer (first ... last) | outputs changed |",
        "|---|---|---|---|---|",
    ]
    for (model, bits, tech, rows), r in sorted(runs.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        if not r["layer_errors"]:
            continue
        e = r["layer_errors"]
        vals = ", ".join(f"{x['rel_rms_error']:.3f}" for x in e)
        ch = np.mean([x["frac_outputs_changed"] for x in e])
        lines.append(f"| {model} | {tech} | {bits} | {vals} | {100 * ch:.1f} % (mean over layers; {r['error_images']} images) |")
    return lines


def _layer_error_ratios(runs: dict) -> list[str]:
    """Mean per-layer output error of each k-bit run over its BNN's, as 'network tech k-bit ratio'."""
    ratios = []
    for (m, k, t, r), run_k in sorted(runs.items()):
        b1 = runs.get((m, 1, t, r))
        if k == 1 or b1 is None or not run_k["layer_errors"] or not b1["layer_errors"]:
            continue
        ek = np.mean([x["rel_rms_error"] for x in run_k["layer_errors"]])
        e1 = np.mean([x["rel_rms_error"] for x in b1["layer_errors"]])
        ratios.append(f"{m} {t} {k}-bit {ek / e1:.2f}")
    return ratios


def _not_measured(models: list[str], runs: dict, drops: dict) -> list[str]:
    """The runs of the grid (networks x 1/2/4 bits x arrays measured) that have no result."""
    labels = sorted({(k[2], k[3]) for k in runs})
    missing = [f"{m} {k}-bit, {t}, {r}x{r}" for m in models for k in (1, 2, 4) for t, r in labels
               if (m, k, t, r) not in drops]
    lines = ["", "## Not measured", ""]
    lines += (["Runs of the grid above that did not fit in this session's CPU time (2 shared cores); "
               "`scripts/multibit_study.py run` with the options in \"Reproduce\" adds them:", ""]
              + bullets(missing) if missing else ["Every run of the grid above was measured."])
    return lines


def _claim_figure(drops: dict) -> str:
    """The claim's figure: drop and retained accuracy of the 1/2/4-bit networks per technology and array."""
    def _ret(m, k, t, r):
        return f"{drops[(m, k, t, r)]['retained']:.2f}" if (m, k, t, r) in drops else "n/a"

    def _drop(m, k, t, r):
        return _pct(drops[(m, k, t, r)]['drop']) if (m, k, t, r) in drops else "n/a"
    return "; ".join(f"{m} {t} {r}x{r}: drop 1/2/4-bit {_drop(m, 1, t, r)}/{_drop(m, 2, t, r)}/{_drop(m, 4, t, r)} pp, "
                    f"retained {_ret(m, 1, t, r)}/{_ret(m, 2, t, r)}/{_ret(m, 4, t, r)}"
                    for (m, b, t, r) in sorted(drops) if b == 1)


def _claim_section(drops: dict, sw: dict, models: list[str], runs: dict, verdict: str, fig: str) -> list[str]:
    """The claims table row, how to read it, and the rule of the verdict."""
    ratios = _layer_error_ratios(runs)
    lines = [
        "",
        "## Claim",
        "",
        "| claim | cosim's figure | agreed? |",
        "|---|---|---|",
        md_row(["CiM-BNNs are more prone to crossbar non-idealities than higher-precision networks",
                f"{fig} (surrogate, shipped tables)", verdict]),
        "",
        "Reading it. (1) At the `cosim infer` defaults (ideal ADC references, no BinSparX) every network,",
        "binary or k-bit, falls to chance on both technologies: the arrays' systematic current loss at 64",
        "rows swamps all precisions alike, so that operating point cannot rank them. (2) With calibrated ADC",
        "references and BinSparX the networks survive in part; the paired table says where a k-bit network",
        "retains more or less than its BNN. (3) The per-layer output errors, which depend little on how well",
        "a network is trained, compare the layers directly; mean over layers, k-bit / BNN: "
        + (", ".join(ratios) if ratios else "n/a") + ".",
        "What the arrays see (statistics above), mean ON-count per column read, 1 / 2 / 4-bit: "
        + "; ".join(f"{m} " + " / ".join(f"{sw[(m, k)]['statistics']['mean_on_count']:.1f}" if (m, k) in sw else "n/a"
                                         for k in (1, 2, 4)) for m in models) + ";",
        "a read's current, and so its IR drop, grows with it. (4) Caveat: the k-bit networks here are one-epoch CPU fine-tunes with",
        "lower software accuracy and presumably smaller decision margins than the fully trained BNNs, which",
        "makes them more fragile; the accuracy comparison should be repeated with fully trained k-bit",
        "networks (the GPU commands in the last section) before it is taken as final. The layer-level",
        "errors do not share this caveat.",
        "",
        "Rule: *agreed* when the k-bit network retains more of its above-chance accuracy than the BNN, with",
        "the 95 % CI of the difference above 0, for every (network, technology, k) compared; *partly agreed*",
        "when for some; *not agreed* when some BNN retains significantly more; *inconclusive* otherwise.",
        "",
        "## Reproduce",
        "",
        "```",
    ]
    return lines


def _reproduce(sw: dict, runs: dict, res_dir: Path) -> list[str]:
    """The commands behind every result (the end of the "Reproduce" code block) and the run times."""
    lines = []
    for (model, bits), s in sorted(sw.items()):
        if bits != 1 and s.get("train_command"):
            lines.append(s["train_command"])
    cmds = sorted({json.loads(p.read_text())["provenance"].get("command", "") for p in res_dir.glob("*.json")})
    lines += [c for c in cmds if c] + [".venv/bin/python scripts/multibit_study.py render", "```", ""]
    timing = sorted({(k[0], k[1], k[2], r["seconds"], r["n"], r.get("threads"), r["load_average_at_end"])
                     for k, r in runs.items()})
    lines += ["Surrogate run times (whole network, CPU, the machine shared with other jobs):", "",
              "| network | bits | tech | images | threads | seconds | uptime at the end |", "|---|---|---|---|---|---|---|"]
    for m, b, t, s_, n, th, up in timing:
        lines.append(f"| {m} | {b} | {t} | {n} | {th} | {s_} | {up.split('load average:')[-1].strip()} |")
    lines.append("")
    return lines


def _summary(drops: dict, verdict: str, stale: list[str]) -> list[str]:
    """The generated summary under the document's first heading."""
    summary = []
    for m, t, r in sorted({(k[0], k[2], k[3]) for k in drops}):
        parts = []
        for k in (1, 2, 4):
            v = drops.get((m, k, t, r))
            if v is not None:
                parts.append(f"{k}-bit {v['cim']:.2f} of {v['sw']:.2f} (retained {v['retained']:.2f} "
                             f"[{v['retained_ci'][0]:.2f}, {v['retained_ci'][1]:.2f}], N = {v['n']})")
        summary.append(f"* {m}, {t}, {r}x{r}: " + "; ".join(parts))
    summary += ["", f"Claim verdict by the rule in \"Claim\": **{verdict}**.", ""]
    if stale:
        summary += [f"Not rerun after their network was retrained, so left out ({len(stale)}): "
                    + ", ".join(f"`{n}`" for n in stale) + ".", ""]
    return summary


def claim_record(sw: dict, drops: dict, verdict_rows: list[tuple], bin_worse: int, kbit_worse: int, verdict: str,
                 fig: str, source: str) -> dict:
    """The claim in the form the study's report reads into its claims table (``cosim.study.report``)."""
    ret = {k: [v["retained"] for (m, b, t, r), v in drops.items() if b == k and "BinSparX" in t] for k in (1, 2, 4)}
    span = "; ".join(f"{k}-bit {min(v):.2f}-{max(v):.2f}" for k, v in ret.items() if v)
    sw_range = [v["sw"] for (m, b, t, r), v in drops.items() if b != 1]

    def _sizes(pick):
        return ", ".join(f"{r}x{r}" for r in sorted({r for (_, _, t, r) in drops if pick(t)}))
    wires = sorted({float(x.split(", ")[1].split(" ")[0]) for (_, _, x, _) in drops if " ohm/cell" in x})
    wire_txt = ("default wire resistance" + (f" and {', '.join(f'{w:g}' for w in wires)} ohm/cell" if wires else ""))
    short = (f"{_sizes(lambda t: True)} arrays, {wire_txt}, both technologies, surrogate: "
             f"at the `cosim infer` defaults ({_sizes(lambda t: 'BinSparX' not in t)}) binary, 2- and 4-bit networks "
             f"all fall to chance; with calibrated ADC references + BinSparX ({_sizes(lambda t: 'BinSparX' in t)}) "
             f"the fraction of above-chance accuracy retained is {span}; "
             f"k-bit significantly worse than the BNN in {kbit_worse} of {len(verdict_rows)} paired comparisons, "
             f"better in {bin_worse} (k-bit networks: one-epoch CPU fine-tunes, software accuracy "
             f"{min(sw_range):.2f}-{max(sw_range):.2f})" if sw_range else fig)
    return {
        "claim": "CiM-BNNs are more prone to crossbar non-idealities than higher-precision networks",
        "cosim": short, "agreed": verdict, "source": source,
        "paired_comparisons": len(verdict_rows), "kbit_significantly_worse": kbit_worse,
        "kbit_significantly_better": bin_worse,
        # each network's own software accuracy and images, by model and bits (the study's report judges the
        # claim "inconclusive" where a k-bit network is more than 10 points below its BNN)
        "software_accuracy": {m: {str(b): {"accuracy": r["software_accuracy"], "n": r["n"]}
                                  for (m2, b), r in sorted(sw.items()) if m2 == m}
                              for m in sorted({m for m, _ in sw})}}


def render_text(res_dir: Path, source: str = "MULTIBIT.md") -> tuple[str, dict, str]:
    """docs/MULTIBIT.md's text, the claim record (``claim_record``, naming ``source``) and the claim's figure,
    from the results in ``res_dir``."""
    sw, runs, stale = load_results(res_dir)
    models = [m for m in ("vgg-small", "resnet18") if any(k[0] == m for k in runs)]
    drops = drop_statistics(sw, runs)
    verdict_rows, bin_worse, kbit_worse, verdict = paired_comparisons(drops)
    fig = _claim_figure(drops)
    lines = (_intro(res_dir) + _summary(drops, verdict, stale) + _networks_section(sw)
             + _drops_section(drops, runs, verdict_rows) + _why_section(sw, runs) + _not_measured(models, runs, drops)
             + _claim_section(drops, sw, models, runs, verdict, fig) + _reproduce(sw, runs, res_dir))
    text = "\n".join(lines) + "\n" + TRAINING_NOTE
    return text, claim_record(sw, drops, verdict_rows, bin_worse, kbit_worse, verdict, fig, source), fig


def render(args) -> None:
    """Write ``args.doc`` (docs/MULTIBIT.md) and the claim beside it (``.json``) from ``args.results``."""
    text, claim, fig = render_text(Path(args.results), Path(args.doc).name)
    Path(args.doc).write_text(text)
    Path(args.doc).with_suffix(".json").write_text(json.dumps(claim, indent=1) + "\n")
    print(f"wrote {args.doc}: claim {claim['agreed']}")
    print("CLAIM_FIGURE: " + fig + f" -> {claim['agreed']}")


TRAINING_NOTE = """
## Training the k-bit networks (regenerate the checkpoints)

The checkpoints are not in git (18 MB for VGG-small, 45 MB for ResNet-18: latent float weights);
`cosim train` writes them to `$COSIM_CACHE/checkpoints/<model>_w<k>a<k>.ckpt` (default cache
`~/.cache/cosim`), where `cosim infer --bits k` and this script look for them. The commands used are
in "Reproduce" above (each also recorded in the checkpoint's `meta.config`): one epoch each, started
from the reference BNN, one CPU thread with bf16 autocast (`--amp`: this CPU's AMX units; about 22 ms
per VGG-small and 36-40 ms per ResNet-18 training image, half of float32), two trainings side by side
on the 2 cores: VGG-small on all 50,000 training images (30 min for 2-bit, 21 for 4-bit), ResNet-18 on the first
25,000 (class-balanced prefix, `--limit 25000`), which is what fitted the session's time. The
software accuracies above are on the images each study run used; the test accuracy on the first 1,000
test images at the end of training (in each checkpoint's meta) was VGG-small 0.662 (2-bit) and 0.681
(4-bit), ResNet-18 0.490 and 0.371. The ResNet-18 k-bit networks learn slowly from the BNN's weights
with this recipe (the 4-bit one ended its epoch at a training loss of 1.91, the VGG-small ones at
1.15-1.21), so a longer schedule, or a lower learning rate for them, is the first thing to change.

On a GPU the same commands without `--limit`, `--threads` and `--amp`, with the BNNs' recipe
(`--epochs 80`, `--batch-size 256`, `--lr 2e-3`), give properly trained k-bit networks; rerun the study
then (`run`, which redoes every result whose checkpoint changed, then `render`).
"""


def main(argv=None) -> None:
    from ..paths import cache_dir
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", required=True)
    r.add_argument("--bits", type=int, nargs="+", default=[1, 2, 4])
    r.add_argument("--techs", nargs="+", default=list(TECHS))
    r.add_argument("--rows", type=int, default=64)
    r.add_argument("--cols", type=int, default=64)
    r.add_argument("--limit", type=int, default=100)
    r.add_argument("--stats-limit", type=int, default=10)
    r.add_argument("--error-images", type=int, default=2)
    r.add_argument("--batch", type=int, default=25)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--data", default=None)
    r.add_argument("--results", default=str(cache_dir() / "multibit"))
    r.add_argument("--force", action="store_true")
    r.add_argument("--adc-reference", choices=["ideal", "calibrated"], default="ideal")
    r.add_argument("--binsparx", action="store_true")
    r.add_argument("--r-wire-ohm", type=float, default=None,
                   help="use the shipped table calibrated at this wire resistance per cell (default: the technology's own)")
    d = sub.add_parser("render")
    d.add_argument("--results", default=str(cache_dir() / "multibit"))
    d.add_argument("--doc", default=str(ROOT / "docs" / "MULTIBIT.md"))
    args = ap.parse_args(argv)
    run(args) if args.cmd == "run" else render(args)


if __name__ == "__main__":
    main()
