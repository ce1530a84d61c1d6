#!/usr/bin/env bash
# Training throughput, dinoscope vs PyTorch on the same machine in one run (CPU, default vit-nano recipe).
#   PYTHON=/path/to/venv/bin/python tools/bench_train.sh [iters] [threads]
# Needs torch and timm in that Python, and a built dinoscope binary (cargo build). burn Flex uses one rayon
# thread per core unless RAYON_NUM_THREADS says otherwise; it is set to the same count as PyTorch's.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
ITERS="${1:-20}"
THREADS="${2:-$(nproc)}"
BIN="${CARGO_TARGET_DIR:-target}/debug/dinoscope"
ours_line=$(RAYON_NUM_THREADS="$THREADS" "$BIN" bench-train --iters "$ITERS" --device cpu)
theirs_line=$("$PYTHON" tools/bench_train_torch.py --iters "$ITERS" --threads "$THREADS")
echo "dinoscope: $ours_line"
echo "PyTorch:   $theirs_line"
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
ours=$(echo "$ours_line" | field step_images_per_s)
ours_all=$(echo "$ours_line" | field " images_per_s")
share=$(echo "$ours_line" | field data_share)
theirs=$(echo "$theirs_line" | field images_per_s)
awk -v o="$ours" -v a="$ours_all" -v s="$share" -v t="$theirs" -v n="$THREADS" 'BEGIN {
  printf "vit-nano training, batch 32, %d threads: dinoscope %.1f img/s (training step; %.1f with data loading, data share %.0f %%), PyTorch %.1f img/s, time ratio %.2f\n", n, o, a, 100 * s, t, t / o }'
