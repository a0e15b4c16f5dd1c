#!/usr/bin/env bash
# Reduced-CPU cross-architecture table: Fashion-MNIST IPC 10 sets, clean and 40 % symmetric
# noise, with and without TAD, each evaluated on the references' ResNet-18 (batch norm),
# VGG-11 and AlexNet besides the ConvNet-32 it was distilled with.
#
#   bash experiments/cross_arch_cpu.sh [ROOT]
#
# The protocol is the reduced one of experiments/fashion_mnist_cpu.py (10 000 training
# images, 300 evaluation epochs, 5 seeds, the run's learned lr where it has one), with the
# non-ConvNet networks at SCALE (default 0.125) times the references' channels: a 2-core
# CPU trains a full-width ResNet-18 on 100 images about 60 times slower than ConvNet-32.
# NOT the published protocol (full-width networks, 1000 epochs), which needs the GPU.
#
# Stages, each skipped where its result exists, so the script resumes after an interruption:
# 1. random IPC 10 subsets on every network (the baseline each column is read against);
# 2. `jaxdd evaluate` on every network of the saved DM / DANCE sets of the reduced tables;
# 3. DATM, which saved no distilled set before this table existed, distilled afresh with
#    the current defaults and evaluated on every network as it finishes.
# ROOT (default experiments/results/cross_arch_cpu) holds stages 1 and 3; stage 2 adds a
# `networks` entry to the summary.json of each run under experiments/results. NETS picks
# the networks; `python -m experiments.cross_arch_table` prints the Markdown table.
set -euo pipefail
root=${1:-experiments/results/cross_arch_cpu}
nets=${NETS:-resnet18bn vgg11 alexnet}
scale=${SCALE:-0.125}
results=experiments/results
all="convnet,${nets// /,}"

has_network() {  # has_network SUMMARY NET: whether SUMMARY holds NET's result
  python - "$1" "$2" <<'EOF'
import json, sys
summary = json.load(open(sys.argv[1]))
sys.exit(0 if sys.argv[2] in summary.get("networks", {}) else 1)
EOF
}

finished() {  # finished DIR: DIR (or one run directory in it) holds a summary.json
  compgen -G "$1/summary.json" >/dev/null || compgen -G "$1/*/summary.json" >/dev/null
}

step() {  # step NAME CMD...: runs CMD, timing it
  echo "== $1: ${*:2}"
  local start=$SECONDS
  "${@:2}"
  echo "== $1: $((SECONDS - start)) s"
}

for noise in none symmetric:0.4; do
  dir=$root/${noise/:/}/random
  finished "$dir" && continue
  step "$dir" jaxdd baseline --dataset fashion_mnist --max-train 10000 --width 32 \
    --noise "$noise" --kind random --ipc 10 --epochs 300 --seeds 5 \
    --eval-nets "$all" --eval-width-scale "$scale" --out "$dir" --no-progress
done

for run in fashion_mnist_cpu/dm_ipc10_convnet32 fashion_mnist_cpu/dance_ipc10_convnet32 \
  fashion_mnist_noisy_cpu/symmetric0.4/dm fashion_mnist_noisy_cpu/symmetric0.4/tad-dm \
  fashion_mnist_noisy_cpu/symmetric0.4/dance fashion_mnist_noisy_cpu/symmetric0.4/tad-dance; do
  [ -f "$results/$run/summary.json" ] || { echo "== $run: not there, skipped"; continue; }
  for net in $nets; do
    has_network "$results/$run/summary.json" "$net" && continue
    step "$run $net" jaxdd evaluate "$results/$run" --eval-nets "$net" \
      --eval-width-scale "$scale" --no-progress
  done
done

for row in none:none symmetric:0.4:none symmetric:0.4:tad; do
  noise=${row%:*} trust=${row##*:}
  name=datm
  [ "$trust" = none ] || name=$trust-datm
  dir=$root/${noise/:/}/$name
  finished "$dir" && continue
  step "$dir" jaxdd distill --config experiments/fashion_mnist_cpu.py:datm-ipc10 \
    --noise "$noise" --trust "$trust" --eval-nets "$all" --eval-width-scale "$scale" \
    --run-dir "$dir" --experts-dir runs/experts --no-progress
done
