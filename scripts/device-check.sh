#!/usr/bin/env bash
# The GPU check of @ds/tensor's cuda device, for a GPU machine with no compiler, no node_modules and
# no network: it runs the built package (packages/tensor/dist) over the carried prebuilds, nothing
# else. Prints the machine, test-loads the cuda binary, runs cudaSelfCheck() (every cuda kernel
# against its cpu twin: the cases of test/cuda/kernels.test.ts) and cudaBench() (anchors: PyTorch on
# the same GPU), and prints a short table last (scripts/device-check/run.mjs has the stages and
# their time limits: 2 to 5 minutes when healthy, 9 at most). Results go to $DS_CHECK_OUT (default
# $OUT, else .device/out): probe.json, selfcheck.json, results.cuda.json, bench-missing.json,
# stages.json and device-check.log.
#
# Here, first (nvcc builds the cuda binary; tsup the dist):
#   (cd packages/tensor && npx -y pnpm@9.15.9 run build)
#   ../shared/device/pack.sh                 # .device/node.xz and .device/gpu-env.sh
# Carry these ignored paths (about 29 MiB together, measured with `du -shL`; the limit is 64 MiB):
#   packages/tensor/dist                                 ~1 MiB   the package, one ESM bundle
#   packages/tensor/prebuilds                            ~3 MiB   cpu addon (linux-x64) and cuda addon (linux-x64-cuda)
#   packages/tensor/node_modules/node-gyp-build          a link into the pnpm store; the cpu addon's loader
#   node_modules/.pnpm/node-gyp-build@4.8.4              what that link points to (~40 KiB, no dependencies)
#   .device                                              ~24 MiB  node and gpu-env.sh
# (Not packages/tensor/node_modules as a whole: its other links would need the root node_modules,
# 140 MB of vitest, vite and esbuild. Without the link to @ds/tensor-linux-x64-cuda the loader takes
# the cuda binary from packages/tensor/prebuilds/linux-x64-cuda, the same file.)
# There:
#   source .device/gpu-env.sh && bash scripts/device-check.sh
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${DS_CHECK_OUT:-${OUT:-$root/.device/out}}"
mkdir -p "$out"
node "$root/scripts/device-check/run.mjs" "$out" 2>&1 | tee "$out/device-check.log"
