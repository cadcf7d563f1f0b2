#!/usr/bin/env python
"""Compare the surrogate of this checkout with the one of an earlier commit on the same random operands.

    .venv/bin/python scripts/compare_surrogate_versions.py --ref 583cb8a [--blocks 8] [--vectors 65536]

The earlier surrogate module is read with ``git show REF:cosim/surrogate/evaluate.py`` (``cosim/surrogate.py``
before the package layout by data flow) into a temporary
folder (its package-relative imports pointed at this checkout's cosim) and both evaluate every shipped
table with the default ADC (ideal references): reported are the largest relative difference of the
column currents, the number of differing ADC codes, and, for those, how close the current lies to an
ADC threshold (relative): a difference of float32 rounding shows up as codes that differ only for
currents within about 1e-7 of a threshold.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path


#: the modules an earlier surrogate may import, and where they are now (it imports only the model from the
#: fitter: cosim/calibrate.py, then cosim/surrogate/fit.py, now cosim/surrogate/model.py)
MOVED = {"adc": "surrogate.adc", "tables": "surrogate.tables", "surrogate_kernel": "surrogate.kernel",
         "calibrate": "surrogate.model", "surrogate.fit": "surrogate.model", "technology": "circuit.technology"}


def _old_surrogate(ref: str):
    root = Path(__file__).resolve().parent.parent
    # the surrogate's module: cosim/surrogate/evaluate.py since the package layout by data flow, earlier
    # cosim/surrogate.py; its package-relative imports are made absolute for the package it was in
    for path, package in (("cosim/surrogate/evaluate.py", "cosim.surrogate"), ("cosim/surrogate.py", "cosim")):
        run = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=root, capture_output=True, text=True)
        if run.returncode == 0:
            break
    else:
        raise SystemExit(f"compare_surrogate_versions: {ref} holds no surrogate module ({run.stderr.strip()})")
    src = re.sub(r"^(\s*)from \.\.(\w*)", lambda m: f"{m[1]}from cosim{'.' + m[2] if m[2] else ''}", run.stdout,
                 flags=re.M)
    src = re.sub(r"^(\s*)from \.(\w*)", lambda m: f"{m[1]}from {package}{'.' + m[2] if m[2] else ''}", src,
                 flags=re.M)
    for flat, now in MOVED.items():  # an earlier flat module's imports, at their present places
        src = re.sub(rf"^(\s*)from cosim\.{flat} import", rf"\1from cosim.{now} import", src, flags=re.M)
        src = re.sub(rf"^(\s*)from cosim import {flat}\b(?! as)", rf"\1from cosim.{now.rsplit('.', 1)[0]} import "
                     rf"{now.rsplit('.', 1)[1]} as {flat}", src, flags=re.M)
    tmp = Path(tempfile.mkdtemp()) / "old_surrogate.py"
    tmp.write_text(src)
    spec = importlib.util.spec_from_file_location("old_surrogate", tmp)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_surrogate"] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", required=True, help="git commit of the earlier surrogate")
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--vectors", type=int, default=65536)
    ap.add_argument("--cols", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from cosim.surrogate.adc import ADC
    from cosim.provenance import record
    from cosim.surrogate.evaluate import Surrogate
    from cosim.surrogate.tables import load_table
    from cosim.paths import resources_dir

    old = _old_surrogate(a.ref)
    out = {"ref": a.ref, "provenance": record(load_avg=os.getloadavg()), "tables": {}}
    for path in sorted((resources_dir() / "tables").glob("*.parquet")):
        tab = load_table(path)
        new_s, old_s = Surrogate(tab, adc=ADC()), old.Surrogate(tab, adc=ADC())
        thr = torch.as_tensor(new_s.adc.thresholds_a(), dtype=torch.float64)
        g = torch.Generator().manual_seed(0)
        worst_rel, differ, total, nearest = 0.0, 0, 0, 0.0
        for _ in range(a.blocks):
            x = (torch.rand(a.vectors, tab.rows, generator=g) < 0.4).float()
            w = (torch.rand(tab.rows, a.cols, generator=g) < 0.45).float()
            i_old = old_s.column_currents(x, w)
            i_new = new_s.column_currents(x, w)
            worst_rel = max(worst_rel, float(((i_new - i_old).abs() / i_old.abs().clamp_min(1e-30)).max()))
            d = new_s.read(x, w) != old_s.adc.digitize(i_old)
            differ += int(d.sum())
            total += d.numel()
            if d.any():
                v = i_old[d].double()
                nearest = max(nearest, float(((v[:, None] - thr[None, :]).abs().min(1).values / v.abs()).max()))
        out["tables"][path.name] = {"max_rel_current_diff": worst_rel, "codes_differing": differ, "column_reads": total,
                                    "max_rel_distance_to_threshold_of_differing": nearest}
        print(f"{path.name}: max relative current difference {worst_rel:.2e}; {differ} of {total} codes differ, "
              f"each current within {nearest:.1e} (relative) of a threshold", file=sys.stderr)
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
