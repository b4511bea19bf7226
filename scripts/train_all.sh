#!/usr/bin/env bash
# Reproduce the shipped lite checkpoints in models/, one training at a time on all cores

# Usage: scripts/train_all.sh [model ...]   (default: all nine)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
EPOCHS=${EPOCHS:-6}
PAR=${PAR:-1}
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(lite_cbam lite_nonlocal lite_danet lite_sk lite_sge lite_scnet lite_se lite_sagan lite_resnet)
mkdir -p models/logs
for m in "${models[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$PAR" ]; do sleep 5; done
  echo "$(date +%T) start $m"
  TQDM_MININTERVAL=30 $PY -m attnviz.train --model "$m" --out models \
    --epochs "$EPOCHS" --images-per-epoch 8000 --batch-size 64 --lr 3e-3 --seed 0 --threads "${THREADS:-2}" \
    > "models/logs/$m.log" 2>&1 && echo "$(date +%T) done $m" || echo "$(date +%T) FAILED $m" &
done
wait
