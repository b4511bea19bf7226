#!/usr/bin/env bash
# Reproduce the shipped lite checkpoints in models/ (one training at a time, on all cores).
#   1. lite_resnet from scratch: 14 epochs x 8000 fresh images (one-cycle, peak lr 2e-3);
#   2. every attention variant warm-started from it (--init copies each tensor whose name and
#      shape match: the stem, the residual convs, the classifier), then trained with its attention
#      modules: 3 epochs, or 6 for SK and SCNet, whose convolutions differ from the baseline's.
# Usage: scripts/train_all.sh [model ...]   (default: all nine, in that order)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
THREADS=${THREADS:-2}
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(lite_resnet lite_cbam lite_nonlocal lite_danet lite_sge lite_se lite_sagan lite_sk lite_scnet)
mkdir -p models/logs
for m in "${models[@]}"; do
  case "$m" in
    lite_resnet) args=(--epochs 14 --lr 2e-3) ;;
    lite_sk|lite_scnet) args=(--epochs 6 --lr 2e-3 --init models/lite_resnet.safetensors) ;;
    *) args=(--epochs 3 --lr 2e-3 --init models/lite_resnet.safetensors) ;;
  esac
  echo "$(date +%T) start $m ${args[*]}"
  if TQDM_MININTERVAL=30 $PY -m attnviz.train --model "$m" --out models "${args[@]}" \
      --images-per-epoch 8000 --batch-size 64 --seed 0 --threads "$THREADS" > "models/logs/$m.log" 2>&1; then
    echo "$(date +%T) done $m"
  else
    echo "$(date +%T) FAILED $m"
  fi
done
