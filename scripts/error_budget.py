"""The network-level error budget of one configuration (issue 16; logic in cosim/study/budget.py).

Runs a network through the surrogate and through a reference (``--reference exact``: every column solved
exactly; ``certified``: certified reads, which need a table fitted by this cosim with
``cosim calibrate --solver exact``) on the same class-balanced ``--images`` CIFAR-10 test images, saves each
chunk in ``--out`` as it finishes (a rerun continues), writes ``--out``/result.json and adds the row of the
configuration to ``--csv`` (docs/error_budget.csv, read by cosim.study.report.load_error_budget):

    PYTHONPATH=. .venv/bin/python scripts/error_budget.py --model vgg-small --tech sram8t --rows 64 \\
        --table docs/error_budget/tables/sram8t_64_exact_p240.parquet --reference certified --images 100 \\
        --out /tmp/budget/vgg_sram8t_64_ideal
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="vgg-small", choices=["vgg-small", "resnet18"])
    ap.add_argument("--checkpoint", default=None, help="weights (default: the reference weights in $COSIM_MODELS)")
    ap.add_argument("--data", default=None, help="CIFAR-10 (default: $COSIM_DATA)")
    ap.add_argument("--tech", default="sram8t")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--cols", type=int, default=64)
    ap.add_argument("--table", default=None,
                    help="the lookup table under test (default: the shipped table of --tech, --rows and the "
                         "technology's wire resistance); for --reference certified without --certify-table it "
                         "needs recorded residuals")
    ap.add_argument("--certify-table", default=None,
                    help="--reference certified: the table (same technology, size and wire) whose currents and "
                         "residuals choose the columns to re-solve, so that --table, a shipped table, needs none")
    ap.add_argument("--adc-reference", default="ideal", choices=["ideal", "calibrated"])
    ap.add_argument("--binsparx", action="store_true")
    ap.add_argument("--reference", default="certified", choices=["exact", "certified"])
    ap.add_argument("--images", type=int, default=100, help="class-balanced CIFAR-10 test images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=5, help="images per saved chunk")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", default=None, help="folder of the run (resumable; required but with --write-section)")
    ap.add_argument("--check-exact", type=float, default=None, metavar="FRACTION",
                    help="instead: certified reads against the exact solver on FRACTION of every read's input vectors "
                         "of the first --images images (writes --out/check_exact.json)")
    ap.add_argument("--write-section", metavar="DOC", default=None,
                    help="instead: write the 'End-to-end fidelity' section of DOC (docs/VALIDATION.md) from the "
                         "result.json of the --runs folders and the check_exact.json of --check")
    ap.add_argument("--runs", nargs="*", default=[], help="with --write-section: the runs' folders")
    ap.add_argument("--check", nargs="*", default=[], help="with --write-section: the folders of --check-exact runs")
    ap.add_argument("--conditions", default="", help="with --write-section: the machine's load during the runs")
    ap.add_argument("--direction", nargs="*", default=[],
                    help="with --write-section: folders of shorter runs that counted which way their differing "
                         "codes lean (shown beside the budgets' sign test, not as budgets)")
    ap.add_argument("--csv", default=str(ROOT / "docs" / "error_budget.csv"), help="error-budget CSV to add the row to")
    ap.add_argument("--refresh", action="store_true",
                    help="with --write-section: first recompute the paired statistics of the --runs and --direction "
                         "folders from their per-image outcomes (rewriting their result.json) and of their --csv rows, "
                         "after a change of cosim.study.stats")
    a = ap.parse_args(argv)
    if a.write_section:
        from cosim.study import budget
        def read(folder: str, name: str) -> dict:
            try:
                return json.loads((Path(folder) / name).read_text())
            except (OSError, ValueError) as e:
                ap.error(f"cannot read {Path(folder) / name}: {getattr(e, 'strerror', None) or e}")
        results = [read(r, "result.json") for r in a.runs]
        checks = [read(c, "check_exact.json") for c in a.check]
        direction = [read(r, "result.json") for r in a.direction]
        if a.refresh:
            results = [budget.with_current_statistics(r) for r in results]
            direction = [budget.with_current_statistics(r) for r in direction]
            for folder, run in zip(a.runs + a.direction, results + direction):
                budget.atomic_write_text(Path(folder) / "result.json", json.dumps(run, indent=1) + "\n")
            print(f"{budget.refresh_budget_rows(a.csv, results)} row(s) of {a.csv} refreshed", file=sys.stderr)
        doc = Path(a.write_section)
        doc.write_text(budget.replace_section(doc.read_text(), budget.section_markdown(
            results, checks, conditions=a.conditions, direction=direction)))
        print(f"wrote the error-budget section of {doc}", file=sys.stderr)
        return 0
    if a.out is None:
        ap.error("--out is required")
    if a.certify_table is not None and a.reference != "certified":
        ap.error("--certify-table is for --reference certified")

    import torch

    from cosim.bnn.checkpoint import load_checkpoint
    from cosim.bnn.datasets import load_cifar10, resolve_data_path, to_tensor
    from cosim.bnn.models import load_reference
    from cosim.cim.config import CiMConfig
    from cosim.paths import checkout_relative as rel
    from cosim.provenance import code_version, cpu_model, json_default, record, sha256_file
    from cosim.study import budget, stats
    from cosim.surrogate.tables import load_table

    torch.set_num_threads(a.threads)
    net = load_reference(a.model) if a.checkpoint is None else load_checkpoint(a.checkpoint, model=a.model)[0]
    images, labels = load_cifar10(resolve_data_path(a.data), split="test")
    idx = stats.balanced_indices(labels, a.images)
    if a.table is None:   # the shipped table, as `cosim infer` and the study read it
        from cosim.circuit.technology import get_technology
        from cosim.surrogate.registry import lookup
        a.table = lookup(get_technology(a.tech), a.rows).provenance["source_path"]
    lut = load_table(a.table)
    prov = lut.provenance
    config = CiMConfig.from_kwargs(tech=a.tech, rows=a.rows, cols=a.cols, mode="surrogate", table=str(Path(a.table).resolve()),
                                   binsparx=a.binsparx, adc_reference=a.adc_reference, seed=a.seed)
    table_sha = sha256_file(a.table)
    configuration = {"network": a.model, "technology": lut.tech_name, "rows": a.rows, "r_wire_ohm": prov.get("r_wire_ohm"),
                     "adc_reference": a.adc_reference, "binsparx": a.binsparx}
    certify_table = str(Path(a.certify_table).resolve()) if a.certify_table else None
    certify = {"certify_table": rel(a.certify_table), "certify_table_sha256": sha256_file(a.certify_table)} \
        if a.certify_table else {}
    manifest = {"model": a.model, "checkpoint": a.checkpoint, "table_sha256": table_sha, "seed": a.seed,
                **({"certify_table_sha256": certify["certify_table_sha256"]} if certify else {})}

    if a.check_exact is not None:
        import time
        t0 = time.perf_counter()
        chk = budget.certified_against_exact(net, to_tensor(images[idx]), config, sample=a.check_exact, seed=a.seed,
                                             certify_table=certify_table)
        layers = chk["layers"]
        reads, differ = sum(r["column_reads"] for r in layers), sum(r["codes_differ"] for r in layers)
        out = {**chk, "configuration": configuration, "column_reads_compared": reads, "codes_differ": differ,
               "wall_seconds": time.perf_counter() - t0, "images": idx.tolist(), "sample": a.check_exact,
               "provenance": record(table=rel(a.table), table_sha256=table_sha, **certify, cpu=cpu_model(), seed=a.seed,
                                    command="PYTHONPATH=. python scripts/error_budget.py "
                                            + " ".join(shlex.quote(s) for s in (argv or sys.argv[1:])))}
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "check_exact.json").write_text(json.dumps(out, indent=1, default=json_default) + "\n")
        print(f"certified against exact: {differ} of {reads} column reads differ "
              f"({chk['columns_resolved']} of {chk['columns_read']} columns re-solved by the certificate), "
              f"{out['wall_seconds']:.0f} s, exact solver {chk['exact_column_solves']} columns in {chk['exact_seconds']:.0f} s")
        return 0

    def progress(done: int, total: int) -> None:
        print(f"error budget: {done}/{total} images", file=sys.stderr, flush=True)

    res = budget.run_budget(net, to_tensor(images[idx]), labels[idx], config, a.out, reference=a.reference,
                            certify_table=certify_table, index=idx, chunk_images=a.chunk, manifest=manifest,
                            on_chunk=progress)
    command = "PYTHONPATH=. python scripts/error_budget.py " + " ".join(shlex.quote(s) for s in (argv or sys.argv[1:]))
    provenance = record(table=rel(a.table), table_sha256=table_sha, **certify, table_provenance={k: v for k, v in prov.items()
                                                                                        if k != "technology_params"},
                        cpu=cpu_model(), seed=a.seed, command=command, model=a.model, reference=a.reference,
                        images=stats.describe_images(a.images))
    provenance.setdefault("code_version", code_version())
    summary = res.summary()
    summary["surrogate_correct"] = stats.pack_bits(res.surrogate_correct)
    summary["reference_correct"] = stats.pack_bits(res.reference_correct)
    summary["index"] = idx.tolist()
    out = {"configuration": {**configuration, "reference": a.reference},
           "result": summary, "comparison": res.comparison.text(), "provenance": provenance}
    (Path(a.out) / "result.json").write_text(json.dumps(out, indent=1, default=json_default) + "\n")
    row = budget.budget_row(res, network=a.model, technology=lut.tech_name, rows=a.rows,
                            r_wire_ohm=float(prov["r_wire_ohm"]), adc_reference=a.adc_reference, binsparx=a.binsparx,
                            reference=a.reference, source=f"scripts/error_budget.py ({a.reference} reads; docs/VALIDATION.md)",
                            provenance=provenance)
    budget.append_budget_row(a.csv, row)
    print(f"{a.model} {lut.tech_name} {a.rows} rows, {prov.get('r_wire_ohm')} ohm, {a.adc_reference} ADC, binsparx "
          f"{'on' if a.binsparx else 'off'}: surrogate {summary['accuracy_surrogate']:.4f}, {a.reference} "
          f"{summary['accuracy_reference']:.4f}, difference {res.comparison.text()}; code agreement "
          f"{summary['code_agreement']:.6f} (lowest layer {summary['min_layer_code_agreement']:.6f}), "
          f"{summary['seconds_per_image']:.1f} s/image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
