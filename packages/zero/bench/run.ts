// `pnpm --filter @ds/zero bench [--smoke]`: ZeRO stages 0-3 on 2 ranks training the reference GPT
// (vocab 8192, seq 256, d_model 256, 4 heads, 4 layers, global batch 8). Prints a table and writes
// bench/results.json. Anchors: stage 0 step time measured in the same run (ratio = stage-0 time /
// stage time), the ZeRO memory formula for model-state bytes and the ZeRO paper's communication
// volume per step (ratio = anchor / measured; above 1 is better in every row).
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

import { machineState, table, writeResults, type Row } from '@ds-internal/bench-kit';
import { describeWorld, withWorld } from '@ds-internal/test-kit';

import { modelStateBytes } from '../src/estimate.js';

// The machine before anything is measured: a run on a busy machine is written as noisy, not as results.
const before = machineState();

const smoke = process.argv.includes('--smoke');
const WORLD = 2;
const GPT_CFG = smoke
  ? { vocabSize: 256, blockSize: 32, nLayer: 2, nHead: 2, nEmbd: 32, seed: 1 }
  : { vocabSize: 8192, blockSize: 256, nLayer: 4, nHead: 4, nEmbd: 256, seed: 1 };
const GLOBAL_BATCH = smoke ? 2 : 8;
const BUCKET = smoke ? 20_000 : 2_000_000;

function config(stage: number): Record<string, unknown> {
  const zero =
    stage === 0
      ? undefined
      : {
          stage,
          overlap_comm: true,
          reduce_bucket_size: BUCKET,
          allgather_bucket_size: BUCKET,
          ...(stage === 3 ? { stage3_param_persistence_threshold: 1e4, stage3_prefetch_bucket_size: BUCKET / 2, stage3_max_live_parameters: 3 * BUCKET, stage3_max_reuse_distance: 0 } : {}),
        };
  return {
    train_micro_batch_size_per_gpu: GLOBAL_BATCH / WORLD,
    gradient_accumulation_steps: 1,
    bf16: { enabled: true },
    gradient_clipping: 1.0,
    optimizer: { type: 'AdamW', params: { lr: 1e-4, weight_decay: 0.01 } },
    ...(zero ? { zero_optimization: zero } : {}),
  };
}

interface Result {
  stage: number;
  numel: number;
  stepS: number;
  /** Median seconds per step of the engine's phases (forward, backward, backward_allreduce, step). */
  breakdown: Record<string, number>;
  stateBytes: number;
  commBytesPerStep: number;
}

// The machine is shared and timings drift: stages run in a palindrome (0 1 2 3 3 2 1 0) so that drift
// and warm-up hit every stage alike, and each stage reports the faster of its two median step times.
const stages = [0, 1, 2, 3, 3, 2, 1, 0];
const world = await withWorld(WORLD, fileURLToPath(new URL('./worker.ts', import.meta.url)), {
  env: {
    DS_BENCH_CONFIGS: JSON.stringify(stages.map(config)),
    DS_BENCH_GPT: JSON.stringify(GPT_CFG),
    DS_BENCH_WARMUP: smoke ? '0' : '1',
    DS_BENCH_STEPS: smoke ? '1' : '3',
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --expose-gc`.trim(),
  },
  timeoutMs: smoke ? 120_000 : 900_000,
});
if (world.timedOut || world.ranks.some((r) => r.code !== 0)) {
  console.error(describeWorld(world));
  process.exit(1);
}
const line = world.ranks[0]!.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop()!;
const all = (JSON.parse(line) as { results: Result[] }).results;
const results = [0, 1, 2, 3].map((s) => {
  const runs = all.filter((r) => r.stage === s);
  const best = runs.reduce((a, r) => (r.stepS < a.stepS ? r : a));
  return { ...runs[0]!, stepS: best.stepS, breakdown: best.breakdown };
});
const psi = results[0]!.numel;
const base = results[0]!.stepS;

// Theoretical bytes per step: stage 0 all-reduces fp32 gradients (2 x 4 psi); stages 1-2
// reduce-scatter bf16 gradients and all-gather bf16 parameters (psi each, x 2 bytes); stage 3
// all-gathers parameters twice (forward, backward) and reduce-scatters gradients: 3 psi x 2 bytes.
const commTheory = (s: number) => (s === 0 ? 8 * psi : s === 3 ? 6 * psi : 4 * psi);
const stateTheory = (s: number) => (s === 0 ? 18 * psi : modelStateBytes(s as 1 | 2 | 3, psi, WORLD));

const cfg = (s: number) => ({ world: WORLD, gpt: GPT_CFG, global_batch: GLOBAL_BATCH, smoke, ds_config: config(s) });
const rows: Row[] = results.flatMap((r): Row[] => {
  const s = r.stage;
  return [
    { metric: `zero${s}_step_s`, value: r.stepS, unit: 's', anchor: 'zero0_step_s (stage 0 in the same run)', anchorValue: base, ratio: base / r.stepS, config: { ...cfg(s), breakdown_s: r.breakdown } },
    {
      metric: `zero${s}_model_state_bytes_per_rank`,
      value: r.stateBytes,
      unit: 'B',
      anchor: s === 0 ? 'formula (2 + 4 + 12) psi: bf16 params, fp32 grads, fp32 master + Adam (core stage 0; the paper counts 16 psi)' : `ZeRO paper formula for stage ${s}, K = 12, N = ${WORLD}`,
      anchorValue: stateTheory(s),
      ratio: stateTheory(s) / r.stateBytes,
      config: cfg(s),
    },
    {
      metric: `zero${s}_comm_bytes_per_step`,
      value: r.commBytesPerStep,
      unit: 'B',
      anchor: s === 0 ? 'all-reduce of fp32 gradients: 2 x 4 psi' : s === 3 ? 'ZeRO paper: 3 psi (2 all-gathers + reduce-scatter) x 2 B' : 'ZeRO paper: 2 psi (reduce-scatter + all-gather) x 2 B',
      anchorValue: commTheory(s),
      ratio: commTheory(s) / r.commBytesPerStep,
      config: cfg(s),
    },
  ];
});

console.log(`ZeRO on ${WORLD} ranks, GPT ${JSON.stringify(GPT_CFG)}, psi = ${psi}, global batch ${GLOBAL_BATCH}${smoke ? ' (smoke)' : ''}`);
console.log(table(rows));
console.log('phases (median s): ' + results.map((r) => `stage ${r.stage} ${Object.entries(r.breakdown).map(([k, v]) => `${k}=${v.toFixed(3)}`).join(' ')}`).join('; '));
console.log(writeResults(dirname(fileURLToPath(import.meta.url)), rows, { before, smoke }));
