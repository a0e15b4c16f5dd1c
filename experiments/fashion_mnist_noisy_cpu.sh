#!/usr/bin/env bash
# Reduced-CPU Fashion-MNIST noisy-label table (IPC 10): symmetric and asymmetric 40 %.
#
# Every row shares the reduced DATM protocol of experiments/fashion_mnist_cpu.py:datm-ipc10
# (ConvNet-32, a stratified 10 000-image training subset, 5 experts x 8 epochs, 100
# iterations of 20 student steps, 300 evaluation epochs over 5 seeds). The clean-label DATM
# row is that config with --noise none (experiments/results/fashion_mnist_cpu/datm_ipc10_convnet32).
#
#   bash experiments/fashion_mnist_noisy_cpu.sh [ROOT] [NOISE...]
#
# ROOT defaults to runs/fashion_mnist_noisy; NOISE defaults to symmetric:0.4 asymmetric:0.4.
# Each row goes to ROOT/<noise>/<row>; a row whose summary.json exists is skipped, so the
# script can be re-run after an interruption. ROWS (default: all five) picks rows, e.g.
# ROWS="datm erm". `python -m experiments.table ROOT` prints the
# Markdown table.
set -euo pipefail
root=${1:-runs/fashion_mnist_noisy}
shift || true
noises=("$@")
[ ${#noises[@]} -gt 0 ] || noises=(symmetric:0.4 asymmetric:0.4)
config=experiments/fashion_mnist_cpu.py:datm-ipc10
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
  row "$dir/tad-datm" jaxdd distill --config $config --noise "$noise" --trust tad \
    --run-dir "$dir/tad-datm" --no-progress
  row "$dir/datm" jaxdd distill --config $config --noise "$noise" \
    --run-dir "$dir/datm" --no-progress
  row "$dir/small-loss-datm" jaxdd distill --config $config --noise "$noise" --trust small-loss \
    --run-dir "$dir/small-loss-datm" --no-progress
  row "$dir/random" jaxdd baseline "${common[@]}" --noise "$noise" --kind random --ipc 10 \
    --epochs 300 --seeds 5 --out "$dir/random"
  row "$dir/erm" jaxdd baseline "${common[@]}" --noise "$noise" --kind erm \
    --epochs 20 --seeds 2 --eval-every 5 --out "$dir/erm"
done
