#!/usr/bin/env bash
# GPU check: the paper-size configuration trained for a fixed number of steps with bf16
# autocast and torch.compile, then sampled; one JSON record per line on stdout.
# Without a GPU it runs the same code path on CPU with the reduced "small" configuration
# (that is how the test suite exercises it).
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
  "$PY" -m benchmarks.speed --config small --device cpu --compile --steps "${STEPS_CPU:-3}" \
    --warmup 1 --batch 64 --sample-rows 4 --sample-draws 50
fi
