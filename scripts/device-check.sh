#!/usr/bin/env bash
# The GPU check of @ds/tensor's cuda device, run on a GPU machine that has no compiler and no
# network: it builds nothing and uses the carried prebuilds and node_modules.
#   source .device/gpu-env.sh && bash scripts/device-check.sh
# Prints the machine, test-loads the cuda addon, runs every cuda kernel against its cpu twin
# (packages/tensor/test/cuda), runs packages/tensor/bench/cuda.ts (anchors: PyTorch on the same GPU),
# and prints a short table last. Results go to $DS_CHECK_OUT (default $OUT, else .device/out).
# Fits in about 5 minutes: each stage has its own time limit.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${DS_CHECK_OUT:-${OUT:-$root/.device/out}}"
mkdir -p "$out"
pkg="$root/packages/tensor"
bin="$pkg/node_modules/.bin"

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1 | head -n 3
lscpu 2>/dev/null | grep -E '^(Model name|CPU\(s\)|Socket)' || true
echo "node $(node --version 2>&1); $(python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tail -n 1)"
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"

echo "== cuda addon test-load"
timeout 60 node "$root/scripts/device-check/probe.mjs" "$pkg" | tee "$out/probe.json"

echo "== cuda kernels against the cpu twins (vitest)"
(cd "$pkg" && timeout 180 "$bin/vitest" run test/cuda --reporter=default --reporter=json --outputFile="$out/vitest.json" 2>&1 | tail -n 40)
echo "vitest exit: ${PIPESTATUS[0]}"

echo "== cuda bench"
(cd "$pkg" && timeout 240 "$bin/tsx" bench/cuda.ts "$out" 2>&1 | tail -n 30)

echo "== summary"
node "$root/scripts/device-check/summary.mjs" "$out"
