#!/usr/bin/env bash
# GPU check: the paper-size configuration trained for a fixed number of steps with bf16
# autocast and torch.compile, then sampled; one JSON record per line on stdout.
# Without a GPU it runs the same code path on CPU with the reduced "small" configuration, eager
# (that is how the test suite exercises it; inductor's CPU compile costs ~30 s there and is
# checked against eager training by tests/stardiff/test_train.py; COMPILE_CPU=1 compiles).
#   bash benchmarks/gpu.sh            # STEPS=100 BATCHES="1024 8192" by default
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STEPS=${STEPS:-100}
if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  for batch in ${BATCHES:-1024 8192}; do
    "$PY" -m benchmarks.speed --config paper --device cuda --bf16 --compile \
      --steps "$STEPS" --warmup 10 --batch "$batch" --sample-rows 1024 --sample-draws 1000
  done
else
  compile=()
  if [ "${COMPILE_CPU:-0}" = 1 ]; then compile=(--compile); fi
  "$PY" -m benchmarks.speed --config small --device cpu "${compile[@]}" --steps "${STEPS_CPU:-3}" \
    --warmup 1 --batch 64 --sample-rows 4 --sample-draws 50
fi
