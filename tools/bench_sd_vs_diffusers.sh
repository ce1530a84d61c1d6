#!/usr/bin/env bash
# SD feature extraction, dinoscope (examples/sd_bench.rs) vs diffusers on PyTorch
# (tools/bench_sd_torch.py) on the same machine in one run, one image per run, over full-size
# SD 1.5 and SD 2.1 (768-v) networks with random weights (tools/make_sd_fullsize_random.py, made
# on the first run; 3.7 GB each). Both sides read the folder's context.safetensors as the text
# embedding. The two sides alternate (which goes first flips every repetition), so a machine
# shared with other work disturbs both alike. Prints a Markdown table on stdout, the raw lines on
# stderr.
#
#   PYTHON=/path/to/venv/bin/python tools/bench_sd_vs_diffusers.sh [options]
#     --threads N      RAYON_NUM_THREADS and torch.set_num_threads (default 2)
#     --reps N         repetitions of each pair (default 1; a full DIFT run takes minutes on a CPU)
#     --device cpu|gpu gpu: dinoscope on wgpu, PyTorch on CUDA when it has it (default cpu)
#     --runs N         feature runs per process, the last one reported (default 1 on cpu, 2 on
#                      gpu: the first includes burn's autotuning and CUDA's warm-up)
#     --combos "..."   model:preset pairs (default "sd15:sd-dino sd21:dift"; models sd15, sd21)
#     --size N, --ensemble N   override the presets' input side / ensemble size
#     --image PATH     default assets/images/cat_amir.jpg
#     --models DIR     where the random folders live (default /tmp/dinoscope-sd-bench)
# Needs torch, diffusers, safetensors and pillow in that Python; builds the example itself.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
THREADS=2
REPS=1
DEVICE=cpu
RUNS=
COMBOS="sd15:sd-dino sd21:dift"
SIZE=
ENSEMBLE=
IMAGE=assets/images/cat_amir.jpg
MODELS=/tmp/dinoscope-sd-bench
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --combos) COMBOS="$2"; shift 2 ;;
    --size) SIZE="$2"; shift 2 ;;
    --ensemble) ENSEMBLE="$2"; shift 2 ;;
    --image) IMAGE="$2"; shift 2 ;;
    --models) MODELS="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
case "$DEVICE" in
  cpu) OURS_DEVICE=cpu; TORCH_DEVICE=cpu; RUNS="${RUNS:-1}" ;;
  gpu)
    OURS_DEVICE=wgpu
    TORCH_DEVICE=$("$PYTHON" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
    RUNS="${RUNS:-2}" ;;
  *) echo "--device is cpu or gpu" >&2; exit 2 ;;
esac

cargo build --quiet --example sd_bench
BIN="${CARGO_TARGET_DIR:-target}/debug/examples/sd_bench"

overrides=()
[ -n "$SIZE" ] && overrides+=(--size "$SIZE")
[ -n "$ENSEMBLE" ] && overrides+=(--ensemble "$ENSEMBLE")

field() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" | tail -n 1; }
setting() { sed -n "s/^#.*$1 \([0-9]*\).*/\1/p" | head -n 1; }

ours() {
  RAYON_NUM_THREADS=$THREADS "$BIN" --model "$MODELS/$1" --preset "$2" --image "$IMAGE" \
    --device "$OURS_DEVICE" --runs "$RUNS" "${overrides[@]}"
}
theirs() {
  "$PYTHON" tools/bench_sd_torch.py --model "$MODELS/$1" --preset "$2" --image "$IMAGE" \
    --device "$TORCH_DEVICE" --threads "$THREADS" --runs "$RUNS" "${overrides[@]}"
}

echo "dinoscope $OURS_DEVICE vs diffusers torch $TORCH_DEVICE, $THREADS threads, $(date -u +%F), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB" >&2
echo "| model | preset | size | E | rep | dinoscope load s | dinoscope features s | dinoscope peak RSS MiB | diffusers load s | diffusers features s | diffusers peak RSS MiB | time ratio |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for combo in $COMBOS; do
  model="${combo%%:*}"
  preset="${combo#*:}"
  if [ ! -f "$MODELS/$model/context.safetensors" ]; then
    "$PYTHON" tools/make_sd_fullsize_random.py --out "$MODELS/$model" --version "$model" >&2
  fi
  for rep in $(seq 1 "$REPS"); do
    if [ $((rep % 2)) -eq 1 ]; then
      a=$(ours "$model" "$preset"); echo "$a" >&2
      b=$(theirs "$model" "$preset"); echo "$b" >&2
    else
      b=$(theirs "$model" "$preset"); echo "$b" >&2
      a=$(ours "$model" "$preset"); echo "$a" >&2
    fi
    size=$(setting size <<<"$a")
    ensemble=$(setting ensemble <<<"$a")
    ratio=$(awk -v a="$(field features_s <<<"$a")" -v b="$(field features_s <<<"$b")" 'BEGIN { printf "%.2f", a / b }')
    gpu=$(field gpu_peak_mib <<<"$b")
    echo "| $model | $preset | $size | $ensemble | $rep | $(field load_s <<<"$a") | $(field features_s <<<"$a") | $(field peak_rss_mib <<<"$a") | $(field load_s <<<"$b") | $(field features_s <<<"$b") | $(field peak_rss_mib <<<"$b")${gpu:+ (GPU $gpu)} | $ratio |"
  done
done
