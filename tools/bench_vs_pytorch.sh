#!/usr/bin/env bash
# Forward-pass benchmark, dinoscope vs PyTorch on the same machine in one run (CPU), on 1 and 2
# threads, over the workloads dinoscope serves: short sequences, the long ones of dense features
# (ViT-S/8 stride 4 as in co-segmentation, DINOv2-B/14 at 840 px as in sd-dino) and folder
# embedding (batch 32 at 98 px). Prints a Markdown table.
#   PYTHON=/path/to/venv/bin/python tools/bench_vs_pytorch.sh [iters]
# Needs torch and timm in that Python, and a built dinoscope binary (cargo build).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
ITERS="${1:-10}"
BIN="${CARGO_TARGET_DIR:-target}/debug/dinoscope"
# arch size stride batch tokens
WORKLOADS=(
  "vits16 224 16 1 197"
  "vits8 224 8 1 785"
  "vits16 448 16 1 785"
  "vits8 224 4 1 3026"
  "dinov2-vitb14 840 14 1 3601"
  "dinov2-vits14 98 14 32 50"
)
median() { sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p'; }
echo "| workload | tokens | threads | dinoscope ms | PyTorch ms | time ratio |"
echo "|---|---|---|---|---|---|"
for workload in "${WORKLOADS[@]}"; do
  read -r arch size stride batch tokens <<<"$workload"
  # Long sequences take seconds per forward: fewer timed iterations.
  iters=$ITERS
  [ "$tokens" -gt 1000 ] && iters=$(( (ITERS + 2) / 3 ))
  torch_stride=()
  patch=$stride
  case "$arch" in vits8) patch=8 ;; vits16) patch=16 ;; *) patch=14 ;; esac
  [ "$stride" -ne "$patch" ] && torch_stride=(--stride "$stride")
  for threads in 1 2; do
    ours=$(RAYON_NUM_THREADS=$threads "$BIN" bench --arch "$arch" --size "$size" --stride "$stride" \
      --batch "$batch" --iters "$iters" --warmup 1 --device cpu | median)
    theirs=$("$PYTHON" tools/bench_torch.py --arch "$arch" --size "$size" "${torch_stride[@]}" \
      --batch "$batch" --iters "$iters" --warmup 1 --threads "$threads" | median)
    ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')
    echo "| $arch ${size} px, stride $stride, batch $batch | $tokens | $threads | $ours | $theirs | $ratio |"
  done
done
