#!/usr/bin/env bash
# Analysis benchmarks, dinoscope vs PyTorch / scikit-learn / faiss on the same machine in one run (CPU).
#   PYTHON=/path/to/venv/bin/python tools/bench_analysis.sh [iters]
# Needs torch, timm, scikit-learn, faiss-cpu and pillow in that Python, and a built dinoscope (cargo build).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
ITERS="${1:-3}"
THREADS="$(nproc)"
BIN="${CARGO_TARGET_DIR:-target}/debug/dinoscope"
DATA="$(mktemp -d)"
trap 'rm -rf "$DATA"' EXIT
IMAGES=(assets/images/chelsea.png assets/images/cat_amir.jpg assets/images/guitar_cat.jpg
        assets/images/painting_cat.jpg assets/images/cartoon_cat.png assets/images/ibex.jpg)
ours=$("$BIN" bench-analysis "${IMAGES[@]}" --data-out "$DATA" --iters "$ITERS" --device cpu)
echo "$ours"
theirs=$("$PYTHON" tools/bench_analysis_torch.py --data "$DATA" --images "${IMAGES[@]}" --iters "$ITERS" --threads "$THREADS")
echo "$theirs"
value() { sed -n "s/.*name=$1 median_ms=\([0-9.]*\).*/\1/p" <<<"$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
pq=$(value point_query "$ours"); pq_t=$(value point_query "$theirs")
bb=$(value best_buddies "$ours"); bb_r=$(value best_buddies_reference "$theirs"); bb_o=$(value best_buddies_optimised "$theirs")
cs=$(value coseg6 "$ours"); cs_t=$(value coseg6 "$theirs")
echo "point query (3025 x 384, cached):  dinoscope ${pq} ms, PyTorch ${pq_t} ms, ratio $(ratio "$pq" "$pq_t")"
echo "best buddies + selection (6528-d): dinoscope ${bb} ms, reference ${bb_r} ms (ratio $(ratio "$bb" "$bb_r")), optimised PyTorch ${bb_o} ms (ratio $(ratio "$bb" "$bb_o"))"
echo "co-segmentation of 6 images:       dinoscope ${cs} ms, PyTorch+faiss ${cs_t} ms, ratio $(ratio "$cs" "$cs_t")"
