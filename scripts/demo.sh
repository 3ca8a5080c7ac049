#!/usr/bin/env bash
# The end-to-end demo on built-in data: synth -> train -> export -> evaluate -> enhance ->
# benchmark. Everything lands in one folder (default: demo/). Rerunning resumes or skips
# finished steps. Run from the repository root with lpie's commands on PATH (`make demo`).
set -euo pipefail
OUT=${1:-demo}
if [[ "$OUT" != demo ]]; then
    echo "recipes/demo.toml reads demo/data: run from the repository root with OUT=demo" >&2
    exit 2
fi
mkdir -p "$OUT"
step() { printf '\n\033[1;36m== %s\033[0m\n' "$*"; }
t0=$(date +%s)

step "1/6 synthesise training pairs (built-in photos + simulated under-display PSF)"
lpie-data synth --config recipes/demo-data.toml --val-fraction 0.3 --out "$OUT/data"
lpie-data preview "$OUT/data" --split validation --count 4 --out "$OUT/pairs.png"

step "2/6 train LPIENet (recipes/demo.toml)"
if [[ -f "$OUT/run/summary.json" ]] && grep -q '"finished"' "$OUT/run/summary.json"; then
    echo "already trained: $OUT/run"
elif [[ -d "$OUT/run" ]]; then
    lpie-model train recipes/demo.toml --out "$OUT/run" --resume
else
    lpie-model train recipes/demo.toml --out "$OUT/run"
fi

step "3/6 export to TFLite (fp32, any input size) and int8"
lpie-model export "$OUT/run" --out "$OUT/lpienet.tflite" --calibration "$OUT/data" --overwrite
lpie-model export "$OUT/run" --out "$OUT/lpienet-int8.tflite" --precision int8 \
    --calibration "$OUT/data" --overwrite

step "4/6 evaluate the TFLite model on the held-out pairs"
lpie-model evaluate "$OUT/lpienet.tflite" --data "$OUT/data" --split validation \
    --csv "$OUT/metrics.csv" --json "$OUT/metrics.json"

step "5/6 enhance held-out photos (before | after in enhanced/*_compare.png)"
lpie-data extract "$OUT/data" --split validation --count 3 --out "$OUT/inputs"
lpie-model enhance "$OUT/lpienet.tflite" "$OUT"/inputs/*_input.png --out "$OUT/enhanced" \
    --compare --overwrite

step "6/6 benchmark on this machine (TFLite, XNNPACK)"
lpie-model benchmark "$OUT/run" --size 256x256 --size 800x800 --precision fp32 --precision int8 \
    --json "$OUT/benchmark.json" | tee "$OUT/benchmark.txt"

step "done in $(( $(date +%s) - t0 )) s: $OUT/"
cat <<MSG
  pairs.png            synthesised pairs: input | target | difference
  run/                 weights, metrics.csv, TensorBoard logs (tensorboard --logdir $OUT/run/logs)
  lpienet.tflite       the phone model (+ lpienet.json parity report); lpienet-int8.tflite
  metrics.json/.csv    PSNR/SSIM of degraded inputs and of restored outputs
  enhanced/            restored held-out photos and *_compare.png before/after images
  benchmark.txt/.json  latency table on this machine
MSG
