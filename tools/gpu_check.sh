#!/usr/bin/env bash
# The GPU checks of the fast path (issue 13), as one short script: the epoch benchmark (lt-noise vs a
# hand-written loop, every method vs CE) and the step benchmark, on CUDA with bf16 autocast and
# channels_last, on synthetic CIFAR-sized data with ResNet-32 and on Fashion-MNIST-sized data with the
# 4-layer CNN. A few minutes on one H100. Run from the repository root with the project's environment:
#
#   bash tools/gpu_check.sh [python]          # default python: .venv/bin/python, else python3
#
# Prints the tables; exits non-zero when a budget is missed (the last lines say which).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${1:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
status=0
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())" || exit 2
"$PY" tools/bench_epoch.py --device cuda --precision bf16-mixed --channels-last --dataset synthetic \
    --image-shape 3 32 32 --backbone resnet32 --per-class 5000 --batch 128 --rounds 2 || status=1
"$PY" tools/bench_epoch.py --device cuda --precision bf16-mixed --channels-last --dataset synthetic \
    --image-shape 1 28 28 --backbone cnn4 --per-class 2000 --batch 128 --rounds 2 || status=1
"$PY" tools/bench_step.py --device cuda --precision bf16-mixed --channels-last --steps 30 --rounds 2 || status=1
exit $status
