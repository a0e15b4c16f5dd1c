#!/usr/bin/env bash
# Re-choosing TAD's defaults on the noisy validation split (docs/defaults.md).
#
# Every candidate is the reduced-CPU TAD + DATM row of fashion_mnist_noisy_cpu.sh
# (experiments/fashion_mnist_cpu.py:datm-ipc10, Fashion-MNIST 10 000-image subset) with
# --val-fraction 0.1: a tenth of the subset, stratified on the given labels, is held out of
# the trust split, the experts, distillation and evaluation. The criterion is the summary's
# val_accuracy_mean (the evaluated networks against the split's GIVEN labels); the test
# accuracy is written next to it and chooses nothing. The DATM row without TAD, on the same
# split, is the comparison.
#
#   bash experiments/select_defaults.sh [ROOT] [NOISE...]
#
# ROOT defaults to runs/select_defaults; NOISE to symmetric:0.4 asymmetric:0.4. A candidate
# whose summary.json exists is skipped, so the script resumes after an interruption.
# CANDIDATES picks some (default: all). `python -m experiments.table ROOT` prints one table
# per noise, with the noisy-validation column.
set -euo pipefail
root=${1:-runs/select_defaults}
shift || true
noises=("$@")
[ ${#noises[@]} -gt 0 ] || noises=(symmetric:0.4 asymmetric:0.4)
config=experiments/fashion_mnist_cpu.py:datm-ipc10

declare -A settings=(
  [datm]=""
  [tad-datm]="--trust tad"
  [tad-folds1-datm]="--trust tad --set trust.folds=1"
  [tad-relative-datm]="--trust tad --set trust.signal=relative"
  [tad-margin-datm]="--trust tad --set trust.signal=margin"
  [tad-kappa0.8-datm]="--trust tad --set trust.kappa=0.8"
  [tad-kappa0.95-datm]="--trust tad --set trust.kappa=0.95"
  [tad-no-recall-margin-datm]="--trust tad --set trust.recall_margin=false"
  [tad-trusted-init-datm]="--trust tad --set trust.init_pool=trusted"
)
order="datm tad-datm tad-folds1-datm tad-relative-datm tad-margin-datm tad-kappa0.8-datm tad-kappa0.95-datm \
tad-no-recall-margin-datm tad-trusted-init-datm"
candidates=${CANDIDATES:-$order}

for noise in "${noises[@]}"; do
  for name in $candidates; do
    dir=$root/${noise/:/}/$name
    if [ -f "$dir/summary.json" ]; then
      echo "== $dir: done, skipped"
      continue
    fi
    echo "== $dir: ${settings[$name]}"
    start=$SECONDS
    # shellcheck disable=SC2086  # the settings are words
    jaxdd distill --config $config --noise "$noise" --val-fraction 0.1 ${settings[$name]} \
      --run-dir "$dir" --no-progress
    echo "== $dir: $((SECONDS - start)) s"
  done
done
