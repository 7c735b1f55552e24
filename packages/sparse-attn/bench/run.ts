// `pnpm --filter @ds/sparse-attn bench [--smoke]`: forward + backward of causal self-attention at
// seq 1024, 2048, 4096 and 8192 (batch 1, 4 heads, head dim 64, f32), block-sparse with a Fixed
// unidirectional layout (block 64 and block 16, num_local_blocks chosen for a density near 1/8)
// against our own dense flash-style kernel (causalAttention) measured in the same run, and against
// PyTorch's dense causal attention (scaled_dot_product_attention; on torch < 2 the same math written out) in the same run where python imports torch
// (bench/torch_anchor.py). Also the peak bytes the attention allocates (@ds/tensor's memory tracker),
// sparse against dense. Ratios are oriented so that above 1 is better. Each row records the load
// average and the CPU model, since the machine is shared.
import { spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { machineState, pythonWithTorch, table, writeResults, type Row } from '@ds-internal/bench-kit';
import { causalAttention, fromArray, Generator, getRuntime, sum, tidy, type Tensor } from '@ds/tensor';

import { blockSparseAttention, FixedSparsityConfig, planLayout, type BlockPlan } from '../src/index.js';

// The machine before anything is measured: a run on a busy machine is written as noisy, not as results.
const before = machineState();

const smoke = process.argv.includes('--smoke');
const LENGTHS = smoke ? [256, 512] : [1024, 2048, 4096, 8192];
const [B, H, D] = [1, 4, 64];
const TARGETS: Record<number, number> = { 4096: 4, 8192: 6 };
const benchDir = dirname(fileURLToPath(import.meta.url));

function env(): Record<string, unknown> {
  return { loadavg1: Number(loadavg()[0]!.toFixed(2)), cpu: cpus()[0]?.model ?? 'unknown', threads: cpus().length };
}

function inputs(t: number): [Tensor, Tensor, Tensor] {
  const g = new Generator(7);
  const mk = () => fromArray(Float32Array.from({ length: B * H * t * D }, () => g.uniform() - 0.5), [B, H, t, D], { requiresGrad: true }).keep();
  return [mk(), mk(), mk()];
}

/** Best of `reps` forward+backward times (ms) and the peak bytes allocated above what was live before. */
function measure(reps: number, qkv: [Tensor, Tensor, Tensor], f: (q: Tensor, k: Tensor, v: Tensor) => Tensor): { ms: number; peak: number } {
  const tracker = getRuntime().tracker;
  let best = Infinity;
  let peak = 0;
  for (let i = 0; i < reps; i++) {
    for (const x of qkv) x.grad = null;
    const before = tracker.liveBytes();
    tracker.resetPeak();
    const t0 = performance.now();
    tidy(() => sum(f(...qkv)).backward());
    best = Math.min(best, performance.now() - t0);
    peak = Math.max(peak, tracker.peakBytes() - before);
  }
  for (const x of qkv) x.grad = null;
  return { ms: best, peak };
}

/** The Fixed unidirectional layout whose density (set blocks / all blocks) is nearest 1/8. */
function fixedPlan(t: number, block: number): { plan: BlockPlan; local: number; density: number } {
  let best: { plan: BlockPlan; local: number; density: number } | null = null;
  for (let local = 2; local <= t / block; local *= 2) {
    const layout = new FixedSparsityConfig(H, { block, numLocalBlocks: local, attention: 'unidirectional' }).makeLayout(t);
    if (!best || Math.abs(layout.density - 1 / 8) < Math.abs(best.density - 1 / 8)) best = { plan: planLayout(layout, block, true), local, density: layout.density };
  }
  return best!;
}

function torchAnchor(): Record<number, { ms: number }> | string {
  const py = pythonWithTorch();
  if (typeof py === 'string') return py;
  const r = spawnSync(py.python, [join(benchDir, 'torch_anchor.py'), JSON.stringify({ lengths: LENGTHS, B, H, D, smoke })], { encoding: 'utf8', timeout: 1_800_000 });
  if (r.status !== 0) return `bench/torch_anchor.py failed (${r.status}): ${r.stderr.trim().split('\n').pop()}`;
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<number, { ms: number }>;
}

const rows: Row[] = [];
const torch = torchAnchor();
const torchNote = typeof torch === 'string' ? torch : null;
for (const t of LENGTHS) {
  const qkv = inputs(t);
  const reps = smoke ? 1 : t >= 8192 ? 1 : t >= 4096 ? 2 : 3;
  const sparse = [64, 16].map((block) => ({ block, ...fixedPlan(t, block) }));
  // Order dense, sparse, sparse, dense and keep each one's best, so drift hits both alike.
  const d1 = measure(reps, qkv, (q, k, v) => causalAttention(q, k, v, { scale: 1 / Math.sqrt(D) }));
  const s = sparse.map((sp) => ({ ...sp, ...measure(smoke ? 1 : 3, qkv, (q, k, v) => blockSparseAttention(q, k, v, sp.plan, { scale: 1 / Math.sqrt(D) })) }));
  const d2 = smoke ? d1 : measure(1, qkv, (q, k, v) => causalAttention(q, k, v, { scale: 1 / Math.sqrt(D) }));
  const dense = { ms: Math.min(d1.ms, d2.ms), peak: Math.max(d1.peak, d2.peak) };
  for (const x of qkv) x.dispose();
  const shape = { B, H, T: t, D, dtype: 'f32', ...env() };
  const tq = typeof torch === 'string' ? null : (torch[t]?.ms ?? null);
  rows.push({
    metric: `dense_fwd_bwd_ms_${t}`, value: dense.ms, unit: 'ms', anchor: tq === null ? null : 'PyTorch dense causal attention (scaled_dot_product_attention; matmul + masked softmax on torch < 2), cpu, same run', anchorValue: tq, ratio: tq === null ? null : tq / dense.ms,
    config: { ...shape, kernel: 'causalAttention (flash-style, native)', ...(torchNote ? { anchorMissing: torchNote } : {}) },
  });
  for (const sp of s) {
    rows.push({
      metric: `sparse_fixed_b${sp.block}_fwd_bwd_ms_${t}`, value: sp.ms, unit: 'ms', anchor: 'our dense causalAttention, same run', anchorValue: dense.ms, ratio: dense.ms / sp.ms,
      config: { ...shape, block: sp.block, num_local_blocks: sp.local, attention: 'unidirectional', density: Number(sp.density.toFixed(4)), nnzBlocks: sp.plan.nnz, note: `density ${sp.density.toFixed(3)}` },
    });
    if (tq !== null) {
      rows.push({ metric: `sparse_fixed_b${sp.block}_vs_torch_${t}`, value: sp.ms, unit: 'ms', anchor: 'PyTorch dense causal attention (scaled_dot_product_attention; matmul + masked softmax on torch < 2), cpu, same run', anchorValue: tq, ratio: tq / sp.ms, config: { ...shape, block: sp.block } });
    }
    rows.push({
      metric: `sparse_fixed_b${sp.block}_peak_bytes_${t}`, value: sp.peak, unit: 'bytes', anchor: 'our dense causalAttention peak bytes, same run', anchorValue: dense.peak, ratio: dense.peak / sp.peak,
      config: { ...shape, block: sp.block, note: 'peak tracked bytes of forward + backward above the live q, k, v' },
    });
  }
  const b64 = s[0]!;
  const target = TARGETS[t];
  rows.push({
    metric: `sparse_speedup_${t}`, value: dense.ms / b64.ms, unit: 'x', anchor: target ? `issue 18 target (>= ${target}x over our dense)` : null, anchorValue: target ?? null, ratio: target ? dense.ms / b64.ms / target : null,
    config: { ...shape, block: 64, density: Number(b64.density.toFixed(4)), ...(target ? {} : { anchorMissing: 'no target at this length' }), note: 'dense ms / sparse (block 64) ms' },
  });
  console.error(`seq ${t}: dense ${dense.ms.toFixed(0)} ms, sparse b64 ${b64.ms.toFixed(0)} ms, b16 ${s[1]!.ms.toFixed(0)} ms (load ${loadavg()[0]!.toFixed(2)})`);
}

console.log(table(rows));
console.log(writeResults(benchDir, rows, { before, smoke }));
