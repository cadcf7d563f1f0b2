"""Two versions of cosim side by side on the same CIFAR-10 test images: CPU seconds and bit-for-bit outputs.

Each version runs in a worker process of its own (one torch thread, ``PYTHONPATH`` its checkout); the two take
turns on the same images (the order alternating), so that a machine shared with other jobs loads both alike.
Every run checks that both give the same logits and the same statistics (array energy and the rest), bit for
bit, and stops where they differ.

    git archive main cosim | tar -x -C /tmp/base                 # the other version: any folder with cosim/ in it
    .venv/bin/python scripts/compare_infer.py --base /tmp/base vgg-small:surrogate:0:50:4 resnet18:ideal:1:100:4

A job is ``model:mode:binsparx:images:runs`` (mode software, ideal or surrogate; binsparx 0 or 1): ``runs``
runs of ``images`` images each, on consecutive images. ``--tech`` (default 8T-SRAM): the shipped table of the array
size.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def worker(rows: int, cols: int, tech: str = "sram8t") -> int:
    """Reads 'model mode binsparx start n' lines, prints CPU seconds and hashes of logits and statistics."""
    import hashlib
    import time

    import torch
    torch.set_num_threads(1)
    from cosim.bnn.datasets import load_cifar10, to_tensor
    from cosim.bnn.models import load_reference
    from cosim.cim import cim_stats, reset_stats, to_cim
    from cosim.surrogate.tables import default_table_path
    images, _ = load_cifar10(split="test")
    nets: dict = {}
    cims: dict = {}

    def run(model, s, n):
        with torch.inference_mode():
            return torch.cat([model(to_tensor(images[i:min(i + 50, s + n)])) for i in range(s, s + n, 50)])
    for line in sys.stdin:
        name, mode, bsx, s, n = line.split()
        key = (name, mode, bsx)
        if key not in cims:
            nets.setdefault(name, load_reference(name))
            cims[key] = nets[name] if mode == "software" else to_cim(
                nets[name], tech=tech, rows=rows, cols=cols, mode=mode, table=default_table_path(tech, rows),
                binsparx=bsx == "1")
            run(cims[key], len(images) - 50, 50)                 # warm-up (kernel build, weight caches)
        model = cims[key]
        if mode != "software":
            reset_stats(model)
        c0 = time.process_time()
        out = run(model, int(s), int(n))
        cpu = time.process_time() - c0
        stats = json.dumps(cim_stats(model), sort_keys=True, default=str) if mode != "software" else ""
        print(json.dumps({"cpu": cpu, "logits": hashlib.sha256(out.numpy().tobytes()).hexdigest(),
                          "stats": hashlib.sha256(stats.encode()).hexdigest()}), flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jobs", nargs="*", help="model:mode:binsparx:images:runs")
    ap.add_argument("--base", help="the other version: a folder with its cosim/ package")
    ap.add_argument("--mine", default=str(HERE), help="this version (default: this checkout)")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--cols", type=int, default=64)
    ap.add_argument("--tech", default="sram8t", help="technology (its shipped table of the array size)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(a.rows, a.cols, a.tech)
    if not a.base or not a.jobs:
        ap.error("--base and at least one job are needed")
    shared = os.environ.get("COSIM_SHARED") or str(HERE.parent / "shared")
    procs = {}
    for side, root in (("base", a.base), ("mine", a.mine)):
        env = dict(os.environ, PYTHONPATH=str(Path(root).resolve()), OMP_NUM_THREADS="1", COSIM_SHARED=shared)
        procs[side] = subprocess.Popen([sys.executable, __file__, "--worker", "--rows", str(a.rows), "--cols", str(a.cols),
                                        "--tech", a.tech],
                                       cwd=root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(side, cmd):
        p = procs[side]
        p.stdin.write(cmd + "\n")                               # type: ignore[union-attr]  # a pipe
        p.stdin.flush()                                         # type: ignore[union-attr]
        return json.loads(p.stdout.readline())                  # type: ignore[union-attr]
    print(f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')} load {os.getloadavg()}",
          flush=True)
    same_all = True
    for job in a.jobs:
        name, mode, bsx, n, runs = job.split(":")
        total = {"base": 0.0, "mine": 0.0}
        for r in range(int(runs)):
            order = ("base", "mine") if r % 2 == 0 else ("mine", "base")
            got = {side: ask(side, f"{name} {mode} {bsx} {r * int(n)} {n}") for side in order}
            for side in order:
                total[side] += got[side]["cpu"]
            same = got["base"]["logits"] == got["mine"]["logits"] and got["base"]["stats"] == got["mine"]["stats"]
            same_all &= same
            print(f"{name} {mode} binsparx={bsx} images {r * int(n)}-{(r + 1) * int(n)}: base {got['base']['cpu']:.2f} "
                  f"CPU s, mine {got['mine']['cpu']:.2f} CPU s, identical logits and statistics: {same}", flush=True)
            if not same:
                break
        images = int(runs) * int(n)
        print(f"== {name} {mode} binsparx={bsx}: {images} images, base {1e4 * total['base'] / images:.0f}, mine "
              f"{1e4 * total['mine'] / images:.0f} CPU s per 10,000 images, mine/base {total['mine'] / total['base']:.3f}; "
              f"load {os.getloadavg()}", flush=True)
        if not same_all:
            break
    for p in procs.values():
        p.stdin.close()                                         # type: ignore[union-attr]
        p.wait()
    return 0 if same_all else 1


if __name__ == "__main__":
    sys.exit(main())
