#!/usr/bin/env bash
# Folder-embedding benchmark, dinoscope vs PyTorch on the same machine in one run (CPU): a labelled
# folder of synthetic JPEG/PNG images (90-300 px) embedded end to end by a random DINOv2 ViT-S/14
# at 98x98, batch 32, CLS features, no cache. Runs are interleaved (ours, theirs, ours, ...) PAIRS
# times per thread count; prints one row per pair (wall time of the whole process, its in-process
# embedding time, peak RSS) and the median ratio per thread count, checks once that both sides give
# the same features, and with MEMORY_IMAGES also reports peak RSS for a larger folder.
#   PYTHON=/path/to/venv/bin/python tools/bench_embed_folder.sh [images=1000] [pairs=3]
# Environment: DINOSCOPE (the binary; default $CARGO_TARGET_DIR/debug/dinoscope), THREADS (default
# "1 2"), BENCH_DIR (keeps the generated folders and checkpoint there between runs; default a
# temporary folder removed at the end), MEMORY_IMAGES (e.g. 10000: one run of each side on a folder
# that large, on the last thread count).
# Needs torch, timm, numpy and pillow in that Python, GNU time (/usr/bin/time) and a built
# dinoscope binary (cargo build --bin dinoscope).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
IMAGES="${1:-1000}"
PAIRS="${2:-3}"
THREADS="${THREADS:-1 2}"
MEMORY_IMAGES="${MEMORY_IMAGES:-}"
BIN="${DINOSCOPE:-${CARGO_TARGET_DIR:-target}/debug/dinoscope}"
TORCH_SIDE=tools/bench_embed_torch.py
[ -x "$BIN" ] || { echo "no $BIN: run cargo build --bin dinoscope" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs GNU time at /usr/bin/time" >&2; exit 1; }
if [ -n "${BENCH_DIR:-}" ]; then
  WORK="$BENCH_DIR"; mkdir -p "$WORK"
else
  WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
fi
OUT="$WORK/out"; mkdir -p "$OUT"

# Generated once (fixed seed); a folder is reused only when its generation finished.
folder() { # N [--square] -> path
  local dir="$WORK/images-$1${2:+-square}"
  if [ ! -e "$dir/.complete" ]; then
    rm -rf "$dir"
    "$PYTHON" "$TORCH_SIDE" make-data --out "$dir" --images "$1" --seed 0 ${2:+"$2"} >&2
    touch "$dir/.complete"
  fi
  echo "$dir"
}
WEIGHTS="$WORK/dinov2_vits14_random.pth"
[ -e "$WEIGHTS" ] || "$PYTHON" "$TORCH_SIDE" make-weights --out "$WEIGHTS" --seed 0 >&2

# run_ours / run_theirs DIR THREADS OUT.npy: writes "wall_s peak_kb embed_s" to $OUT/result
run_ours() {
  RAYON_NUM_THREADS=$2 /usr/bin/time -f "%e %M" -o "$OUT/time" "$BIN" embed-folder "$1" \
    --weights "$WEIGHTS" --resize 98x98 --pool cls --batch 32 --out "$3" --no-cache --device cpu \
    2>"$OUT/log" || { echo "dinoscope embed-folder failed:" >&2; cat "$OUT/log" >&2; exit 1; }
  echo "$(cat "$OUT/time") $(sed -n 's/.* in \([0-9.]*\) s (.*/\1/p' "$OUT/log")" >"$OUT/result"
}
run_theirs() {
  /usr/bin/time -f "%e %M" -o "$OUT/time" "$PYTHON" "$TORCH_SIDE" embed --folder "$1" \
    --weights "$WEIGHTS" --out "$3" --threads "$2" --batch 32 --size 98 >"$OUT/log" 2>&1 \
    || { echo "bench_embed_torch.py embed failed:" >&2; cat "$OUT/log" >&2; exit 1; }
  echo "$(cat "$OUT/time") $(sed -n 's/.*embed_s=\([0-9.]*\).*/\1/p' "$OUT/log")" >"$OUT/result"
}
compare() { # A.npy B.npy label
  "$PYTHON" - "$1" "$2" "$3" <<'EOF'
import sys
import numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert a.shape == b.shape, (a.shape, b.shape)
d = np.abs(a - b)
an = a / np.linalg.norm(a, axis=1, keepdims=True)
bn = b / np.linalg.norm(b, axis=1, keepdims=True)
cos = (an * bn).sum(1)
print(f"- {sys.argv[3]}: {a.shape[0]} x {a.shape[1]} features, max |a - b| {d.max():.3g}, "
      f"mean {d.mean():.3g} (features up to |{np.abs(b).max():.3g}|, per-feature std "
      f"{b.std(0).mean():.3g}); cosine(ours, theirs) min {cos.min():.6f}")
# Per file type, from the index dinoscope writes beside its features (same order on both sides).
import json, os
paths = json.load(open(os.path.splitext(sys.argv[1])[0] + ".json"))["paths"]
kinds = np.array([os.path.splitext(p)[1].lower() for p in paths])
if len(set(kinds)) > 1:
    print("  " + "; ".join(f"{k}: {int((kinds == k).sum())} images, max {d[kinds == k].max():.3g}, "
                           f"mean {d[kinds == k].mean():.3g}" for k in sorted(set(kinds))))
EOF
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
per_image() { awk -v s="$1" -v n="$2" 'BEGIN { printf "%.1f", 1e3 * s / n }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

DATA="$(folder "$IMAGES")"
SQUARE="$(folder 64 --square)"
echo "Feature agreement (same checkpoint; the 98x98 PNGs need no resize, so both sides see the same pixels):"
run_ours "$SQUARE" 2 "$OUT/ours_square.npy"
run_theirs "$SQUARE" 2 "$OUT/theirs_square.npy"
compare "$OUT/ours_square.npy" "$OUT/theirs_square.npy" "64 98x98 PNGs (model only)"

echo
echo "| images | threads | pair | dinoscope s | PyTorch s | ratio | dinoscope ms/image | PyTorch ms/image | embedding only: dinoscope s | PyTorch s | ratio | peak RSS dinoscope MB | PyTorch MB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
summary=()
for threads in $THREADS; do
  ratios=(); inner=()
  for pair in $(seq "$PAIRS"); do
    run_ours "$DATA" "$threads" "$OUT/ours.npy"; read -r ow ok oe <"$OUT/result"
    run_theirs "$DATA" "$threads" "$OUT/theirs.npy"; read -r tw tk te <"$OUT/result"
    r=$(ratio "$ow" "$tw"); ri=$(ratio "$oe" "$te")
    ratios+=("$r"); inner+=("$ri")
    echo "| $IMAGES | $threads | $pair | $ow | $tw | $r | $(per_image "$ow" "$IMAGES") | $(per_image "$tw" "$IMAGES") | $oe | $te | $ri | $(mb "$ok") | $(mb "$tk") |"
  done
  summary+=("$threads thread(s): median ratio $(printf '%s\n' "${ratios[@]}" | median) (whole process), $(printf '%s\n' "${inner[@]}" | median) (embedding only)")
done
echo
printf -- '- %s\n' "${summary[@]}"
compare "$OUT/ours.npy" "$OUT/theirs.npy" "$IMAGES mixed JPEG/PNG images resized to 98x98 (decoder and Lanczos rounding differ)"

if [ -n "$MEMORY_IMAGES" ]; then
  BIG="$(folder "$MEMORY_IMAGES")"
  threads="${THREADS##* }"
  echo
  echo "| images | threads | dinoscope s | peak RSS MB | PyTorch s | peak RSS MB |"
  echo "|---|---|---|---|---|---|"
  run_ours "$BIG" "$threads" "$OUT/ours_big.npy"; read -r ow ok oe <"$OUT/result"
  run_theirs "$BIG" "$threads" "$OUT/theirs_big.npy"; read -r tw tk te <"$OUT/result"
  echo "| $MEMORY_IMAGES | $threads | $ow | $(mb "$ok") | $tw | $(mb "$tk") |"
fi
