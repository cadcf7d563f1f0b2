#!/usr/bin/env bash
# Train cosim's own BNN checkpoints on a CUDA machine (one prepared script, resumable).
#
#   COSIM_DATA=/path/to/cifar10-jpeg.tar.gz bash scripts/train_gpu.sh vgg-small 150 [extra cosim train args]
#   COSIM_DATA=/path/to/cifar10-jpeg.tar.gz bash scripts/train_gpu.sh resnet18  80
#
# Writes cosim/resources/checkpoints/<model>.ckpt (compact) and <model>.ckpt.state (training state):
# run it again with the same arguments to resume after a time limit. At the end it evaluates the
# checkpoint on the whole test set and writes <model>.json next to it (accuracy, recipe, device,
# seconds), which is what docs/BNN.md quotes. Budget on one H100 (shared/models/README.md): about
# 1.8 s per epoch for VGG-small and 5 s per epoch for ResNet-18, plus ~15 s to decode the archive.
# Tiny CPU check of the script itself:
#   COSIM_DATA=... COSIM_CKPT_DIR=/tmp/ck bash scripts/train_gpu.sh vgg-small 1 --limit 64 --test-limit 64 --device cpu
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?model: vgg-small or resnet18}
epochs=${2:?epochs}
shift 2
py=${PYTHON:-.venv/bin/python}
[ -x "$py" ] || py=python3
out_dir=${COSIM_CKPT_DIR:-cosim/resources/checkpoints}
mkdir -p "$out_dir"
name=${model//-/_}
ckpt="$out_dir/$name.ckpt"
start=$(date +%s)
"$py" -m cosim.cli train --model "$model" --epochs "$epochs" --out "$ckpt" --eval-every 10 --no-progress "$@"
"$py" -m cosim.cli eval --model "$model" --checkpoint "$ckpt" --json > "$out_dir/$name.json.tmp"
"$py" - "$out_dir/$name.json.tmp" "$out_dir/$name.json" "$model" "$epochs" "$start" "$*" <<'PY'
import json, sys, time, torch
src, dst, model, epochs, start, extra = sys.argv[1:]
res = json.load(open(src))
res.update(model=model, epochs=int(epochs), extra_args=extra, wall_s=round(time.time() - float(start), 1),
           device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
           recipe="cosim train defaults: Adam, cosine schedule, random crop + flip, bf16 autocast on CUDA")
json.dump(res, open(dst, "w"), indent=1)
print(json.dumps(res))
PY
rm -f "$out_dir/$name.json.tmp"
