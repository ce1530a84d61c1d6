#!/usr/bin/env bash
# Forward-pass benchmark, dinoscope vs PyTorch on the same machine in one run (CPU, batch 1).
#   PYTHON=/path/to/venv/bin/python tools/bench_vs_pytorch.sh [iters]
# Needs torch and timm in that Python, and a built dinoscope binary (cargo build).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
ITERS="${1:-20}"
THREADS="$(nproc)"
BIN="${CARGO_TARGET_DIR:-target}/debug/dinoscope"
for arch in vits16 vits8; do
  ours=$("$BIN" bench --arch "$arch" --size 224 --iters "$ITERS" --device cpu | sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p')
  theirs=$("$PYTHON" tools/bench_torch.py --arch "$arch" --size 224 --iters "$ITERS" --threads "$THREADS" | sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p')
  ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')
  echo "$arch 224x224 batch 1, $THREADS threads: dinoscope ${ours} ms, PyTorch ${theirs} ms, ratio ${ratio}"
done
