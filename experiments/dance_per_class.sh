#!/usr/bin/env bash
# Does DANCE's per-class stepping matter? One SGD step on the summed loss (the default)
# against the reference's 2C single-class steps (--set dance.per_class_updates=true), on
# digits at a reduced CPU scale: ConvNet-32, IPC 10, factor 1 (8 px images), 300 of DANCE's
# 10 000 iterations, the pool on DANCE's schedule cut to 20 epochs, DANCE's evaluation
# protocol cut to 300 epochs (DSA + CutMix) over 5 networks, three distillation seeds per
# mode, 10 % of the training data held out as the validation split the comparison is
# read on.
#
#   bash experiments/dance_per_class.sh [ROOT]
#
# ROOT defaults to runs/dance_per_class; a finished row (summary.json) is skipped.
set -euo pipefail
root=${1:-runs/dance_per_class}
for seed in 0 1 2; do
  for mode in false true; do
    dir=$root/per_class_$mode/seed$seed
    if [ -e "$dir/summary.json" ]; then echo "== $dir: done, skipped"; continue; fi
    echo "== $dir"
    jaxdd distill --method dance --dataset digits --noise none --ipc 10 --width 32 \
      --iterations 300 --seed "$seed" --val-fraction 0.1 \
      --set experts.epochs=20 --set eval.epochs=300 \
      --set dance.per_class_updates=$mode --run-dir "$dir" --no-progress
  done
done
