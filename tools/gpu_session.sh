#!/usr/bin/env bash
# One GPU session's checks for issue 15, in one call (by hand on a lent GPU; never in CI):
#   ucat bench --baseline official   the official loop's structure beside the project's step
#   ucat bench                       images/s, FLOP utilisation, peak memory, largest batch, numerics
#   tools/gpu_check.py               evaluate.batch_size: auto, and a kernel profile of both workloads
# Writes JSON and logs to ${OUT:-results/gpu}. Carried wheels in .whl/ (open_clip_torch, ftfy,
# wcwidth) are installed to /tmp/site first when present: the GPU image lacks them.
set -uo pipefail
out=${OUT:-results/gpu}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee "$out/gpu.txt"
python3 -c 'import torch, open_clip; print("torch", torch.__version__, "open_clip", open_clip.__version__)' | tee -a "$out/gpu.txt"
python3 -m ucat bench --baseline official --model ViT-B-32 --repeats 5 --out "$out/bench_official.json" 2>&1 | tee "$out/bench_official.log"
python3 -m ucat bench --model ViT-B-32 --repeats 5 --out "$out/bench.json" 2>&1 | tee "$out/bench.log"
python3 tools/gpu_check.py 2>&1 | tee "$out/gpu_check.log"
# last, so a time-out loses nothing above: the same figures with torch.compile(model.visual)
python3 -m ucat bench --model ViT-B-32 --repeats 3 --compile --out "$out/bench_compile.json" 2>&1 | tee "$out/bench_compile.log"
