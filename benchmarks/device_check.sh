#!/usr/bin/env bash
# Device check for the FAME loop (issue 12), meant to finish in under 5 minutes on a GPU:
#   1. the CUDA tests (every test with "cuda" in its name: pytest -k cuda);
#   2. FAME on torchvision ResNet-50 (random weights: timing only) at 224 px, batches
#      1, 32 and 128, float32 eager vs bfloat16 vs channels_last vs compile, each with its
#      floor (forward + input-gradient backward, measured the same way), one JSON line per
#      (batch, setting) and a last line with the ratios against float32 eager.
#      "fame_s_per_image_iter" × 500 is the paper's per-image cost at 500 iterations.
#
#   benchmarks/device_check.sh              # on a CUDA machine
#   benchmarks/device_check.sh --cpu-smoke  # tiny sizes on the CPU: checks the script runs
#
# PYTHON (default: python) selects the interpreter. Exits non-zero when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SETTINGS=(float32 bfloat16 channels_last compile)

if [[ "${1:-}" == "--cpu-smoke" ]]; then
    echo "cpu smoke: tiny sizes, the numbers mean nothing" >&2
    "$PY" -m pytest tests/test_core_options.py -k cuda -q -p no:cacheprovider
    SMOKE=(--model resnet50 --random-weights --size 32 --iterations 1 --repeats 1 --device cpu --json)
    CUDA_VISIBLE_DEVICES="" "$PY" benchmarks/fame_speed.py "${SMOKE[@]}" --batches 1 2 \
        --settings float32 bfloat16 channels_last
    # compiling ResNet-50 on a CPU takes minutes per batch size: one size is enough here
    CUDA_VISIBLE_DEVICES="" timeout 600 "$PY" benchmarks/fame_speed.py "${SMOKE[@]}" --batches 1 \
        --settings float32 compile
    exit 0
elif [[ -n "${1:-}" ]]; then
    echo "usage: $0 [--cpu-smoke]" >&2
    exit 2
fi

"$PY" - <<'PYEOF'
import torch
if not torch.cuda.is_available():
    raise SystemExit("no CUDA device visible; use --cpu-smoke on a CPU-only machine")
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__, flush=True)
PYEOF
timeout 60 "$PY" -m pytest tests -k cuda -q -x -p no:cacheprovider
# the benchmark prints each line as it is measured, so a timeout still leaves those lines
timeout 230 "$PY" benchmarks/fame_speed.py --model resnet50 --random-weights --size 224 \
    --batches 1 32 128 --settings "${SETTINGS[@]}" --iterations 3 --repeats 3 --device cuda --json
