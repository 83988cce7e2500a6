#!/usr/bin/env bash
# Mixed-precision training benchmark of tfseg's U-Net on a GPU machine with JAX but no
# TensorFlow or Keras (Python 3.12): installs the carried wheels in .whl/ (keras 3.15.1,
# namex, optree; fetched as described in the README, "Models"), prints the GPU, then runs
# all 12 rows (256/512 px x batch 8/16 x float32/mixed_float16/mixed_bfloat16), 30 timed
# steps after 5 warm-up steps each, within a 320 s budget (the whole script: under 6 min).
# Results: gpu_mixed_precision.{json,md,log} in $OUT if set, else in benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2

dest="${OUT:-benchmarks/results}"
mkdir -p "$dest"
{
  nvidia-smi -L
  timeout 345 python3 benchmarks/gpu_mixed_precision.py \
    --sizes 256 512 --batches 8 16 --steps 30 --warmup 5 \
    --budget 320 --row-timeout 120 --out "$dest/gpu_mixed_precision.json"
} 2>&1 | tee "$dest/gpu_mixed_precision.log"
