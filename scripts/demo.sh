#!/bin/sh
# make demo: train the Fashion-MNIST MLP for 2 epochs, print its test accuracy,
# save it and show a few test images with their predicted and true labels.
#   scripts/demo.sh [BUILD]      (make demo installs what is missing and builds first)
# Writes demo-out/mlp.safetensors, demo-out/metrics.jsonl, demo-out/predictions.png.
set -eu
BUILD=${1:-build}
cd "$(dirname "$0")/.."
NABLA="$BUILD/nabla"
[ -x "$NABLA" ] || { echo "demo: $NABLA not built (run make)" >&2; exit 1; }
mkdir -p demo-out

echo "== nabla train: MLP 784-256-128-100-10 on Fashion-MNIST, 2 epochs, seed 1, 2 threads"
"$NABLA" train --model mlp --epochs 2 --batch 64 --seed 1 --threads 2 \
    --out demo-out/mlp.safetensors --metrics demo-out/metrics.jsonl
echo
echo "== nabla eval: the saved model"
"$NABLA" eval --weights demo-out/mlp.safetensors --threads 2
echo
echo "== nabla predict: 6 test images"
"$NABLA" predict --weights demo-out/mlp.safetensors --count 6 --threads 2 --out demo-out/predictions.png
echo
echo "demo done: demo-out/mlp.safetensors (safetensors, loads in PyTorch), demo-out/metrics.jsonl, demo-out/predictions.png"
