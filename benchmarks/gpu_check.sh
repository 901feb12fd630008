#!/usr/bin/env bash
# The GPU check, for the day a CUDA GPU is present (archbench's CI has none). Under 10 minutes:
#
#   1. tests/kernels/test_gpu_kernels.py and the other `gpu` tests: every Triton op, bf16 at head
#      dims 64 and 128 (plus fp16/fp32 at 64), forward and every gradient against the float64
#      references;
#   2. the offline compile table for this GPU's target (shared memory, registers, spills);
#   3. `archbench bench` of every op's Triton kernel against SDPA (and its flash backend, and
#      flash-linear-attention where `fla` is installed), bf16, head dims 64 and 128, T = 1024
#      and 4096, forward and forward+backward;
#   4. that run saved as the kernel gate's baseline for this device class
#      (benchmarks/baselines/<device-class>.json), for `archbench bench --compare` in CI.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]      (default: benchmarks/results/gpu-<time>)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device visible to torch; nothing to check here" >&2
    exit 2
fi
out=${1:-benchmarks/results/gpu-$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$out"
python - <<'PY' | tee "$out/device.txt"
import torch, triton
p = torch.cuda.get_device_properties(0)
print(f"{p.name}, sm{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB; torch {torch.__version__}, triton {triton.__version__}")
PY

echo "== 1. GPU tests (forward and gradients against the references)"
timeout 300 python -m pytest -q -p no:randomly -m gpu tests/kernels 2>&1 | tee "$out/tests.txt"

echo "== 2. compile table for this target"
cc=$(python -c "import torch; m, n = torch.cuda.get_device_capability(); print(90 if m >= 9 else 80)")
timeout 240 python -m kernels.compile_targets --targets "$cc" --dtypes bf16 --head-dims 64 128 \
    --json "$out/compile.json" > "$out/compile.txt" || echo "some launch does not fit: see $out/compile.txt"
grep -c "KiB" "$out/compile.txt" | xargs echo "launches compiled:"

echo "== 3. kernels against SDPA (and flash, fla where installed)"
impls=triton,sdpa,flash
python -c "import fla" 2>/dev/null && impls="$impls,fla"
timeout 300 archbench bench --device cuda --dtype bfloat16 --head-dim 64,128 --seq-lens 1024,4096 \
    --mode fwd,fwd+bwd --impls "$impls" --rounds 3 --db "sqlite:///$out/bench.db" \
    --save-baseline benchmarks/baselines --format table | tee "$out/bench.txt"

echo "== done: $out (baseline in benchmarks/baselines/)"
