#!/usr/bin/env bash
# The GPU figures of issue 14.5, in under 5 minutes on one GPU: stacked-vs-alone equality
# on CUDA, cohort vs single speed at the shipped shape, and the frozen 405-run study set's
# training time on the GPU. Run from the repository root with nnopt importable:
#     bash benchmarks/gpu.sh
#     NNOPT_GPU_FALLBACK=cpu bash benchmarks/gpu.sh   # no GPU: the same checks, tiny, on CPU
# Exit status: 0 all checks passed, 1 a check failed, 3 no CUDA device (and no fallback).
set -u
cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-python}
if $PY -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    DEVICE=cuda; QUICK=""; K=25; EPOCHS=2
    $PY -c 'import torch; print("GPU:", torch.cuda.get_device_name(0), "torch", torch.__version__)'
elif [ "${NNOPT_GPU_FALLBACK:-}" = "cpu" ]; then
    DEVICE=cpu; QUICK="--quick"; K=3; EPOCHS=1
    echo "no CUDA device: NNOPT_GPU_FALLBACK=cpu, running the checks on the CPU at a tiny size"
else
    echo "gpu.sh: no CUDA device (torch.cuda.is_available() is False); nothing measured." >&2
    echo "        NNOPT_GPU_FALLBACK=cpu runs the same checks on the CPU." >&2
    exit 3
fi
failed=0
echo "== 1. stacked vs alone, $DEVICE"
timeout 90 $PY benchmarks/gpu_checks.py equality --device "$DEVICE" $QUICK || failed=1
echo "== 2. cohort vs single at the shipped shape (MLP 40-64-64-10, batch 64, Adam), $DEVICE"
timeout 90 $PY benchmarks/cohort.py --device "$DEVICE" --k "$K" --epochs "$EPOCHS" \
    --widths 64 --singles 3 || failed=1
echo "== 3. the frozen study set's training, $DEVICE"
timeout 150 $PY benchmarks/gpu_checks.py studyset --device "$DEVICE" $QUICK --max-seconds 140 \
    || failed=1
if [ "$failed" -ne 0 ]; then echo "gpu.sh: a check FAILED" >&2; exit 1; fi
echo "gpu.sh: all checks passed"
