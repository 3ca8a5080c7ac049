#!/usr/bin/env bash
# The quick benchmarks (a few minutes on 2 cores). Run from the repository root with lpie's
# environment on PATH (`make bench`). Longer ones: bench/prepare_sidd.py, bench/tflite_latency.py.
set -euo pipefail
cd "$(dirname "$0")/.."
run() { printf '\n\033[1;36m== %s\033[0m\n' "$*"; "$@"; }
run python bench/synth.py --repeat 3
run python bench/prepare_gopro.py --repeat 3
run python bench/prepare_udc.py --repeat 3
run python bench/input_pipeline.py --pairs 12 --batches 30
run python bench/train_steps.py --steps 5
run lpie-model benchmark --variant base --sizes 256x256,800x800 --precision fp32,int8
