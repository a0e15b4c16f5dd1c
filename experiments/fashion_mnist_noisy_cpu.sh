#!/usr/bin/env bash
# Reduced-CPU Fashion-MNIST noisy-label table (IPC 10): symmetric and asymmetric 40 %.
#
# The DATM rows share the reduced DATM protocol of experiments/fashion_mnist_cpu.py:datm-ipc10
# (ConvNet-32, a stratified 10 000-image training subset, 5 experts x 8 epochs, 100
# iterations of 20 student steps, 300 evaluation epochs over 5 seeds); the DM and DANCE
# rows that of :dm-ipc10 and :dance-ipc10 on the same subset and evaluation, the RCIG
# rows that of :rcig-ipc10 (with its own Adam/MSE evaluation). The clean-label rows are
# those configs with --noise none (experiments/results/fashion_mnist_cpu/).
#
#   bash experiments/fashion_mnist_noisy_cpu.sh [ROOT] [NOISE...]
#
# ROOT defaults to runs/fashion_mnist_noisy; NOISE defaults to symmetric:0.4 asymmetric:0.4.
# Each row goes to ROOT/<noise>/<row>; a row whose summary.json exists is skipped, so the
# script can be re-run after an interruption. ROWS picks rows (default: the five DATM-era
# ones); every row: erm random, and METHOD, tad-METHOD, small-loss-METHOD for METHOD in
# datm dm dance rcig, e.g. ROWS="dm tad-dm". The trust split is cached under runs/experts, so
# the tad-* (and small-loss-*) rows of one noise compute it once for every method.
# `python -m experiments.table ROOT` prints the Markdown table.
set -euo pipefail
root=${1:-runs/fashion_mnist_noisy}
shift || true
noises=("$@")
[ ${#noises[@]} -gt 0 ] || noises=(symmetric:0.4 asymmetric:0.4)
rows=${ROWS:-tad-datm datm small-loss-datm random erm}
common=(--dataset fashion_mnist --max-train 10000 --width 32 --no-progress)

row() {  # row DIR CMD... : runs CMD unless DIR already holds a finished run
  local dir=$1
  shift
  case " $rows " in *" ${dir##*/} "*) ;; *) return ;; esac
  if compgen -G "$dir/summary.json" >/dev/null || compgen -G "$dir/*/summary.json" >/dev/null; then
    echo "== $dir: done, skipped"
    return
  fi
  echo "== $dir: $*"
  local start=$SECONDS
  "$@"
  echo "== $dir: $((SECONDS - start)) s"
}

for noise in "${noises[@]}"; do
  dir=$root/${noise/:/}
  for method in datm dm dance rcig; do
    config=experiments/fashion_mnist_cpu.py:$method-ipc10
    for trust in tad none small-loss; do
      name=$method
      [ "$trust" = none ] || name=$trust-$method
      row "$dir/$name" jaxdd distill --config "$config" --noise "$noise" --trust "$trust" \
        --run-dir "$dir/$name" --no-progress
    done
  done
  row "$dir/random" jaxdd baseline "${common[@]}" --noise "$noise" --kind random --ipc 10 \
    --epochs 300 --seeds 5 --out "$dir/random"
  row "$dir/erm" jaxdd baseline "${common[@]}" --noise "$noise" --kind erm \
    --epochs 20 --seeds 2 --eval-every 5 --out "$dir/erm"
done
