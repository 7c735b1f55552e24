// `pnpm --filter @ds/pipeline bench [--smoke]`. Prints a table and writes bench/results.json.
//   pipeline_bubble_ratio_p{p}_m{m}: the measured idle fraction of trainBatch (the worst stage's
//     median), against the 1F1B bubble (p - 1) / (m + p - 1), which assumes stages of equal time;
//     ratio = anchor / measured (1 means the schedule idles exactly as much as it must). The stages
//     are real transformer blocks whose forward and backward are paced to a fixed time (PACE_MS per
//     block, worker.ts PacedBlock): the engine, schedule and transfers are the real ones, and the
//     stage times are equal as the formula assumes. Unpaced, on the shared 2-vCPU VMs we measure on,
//     the same blocks' times swing by 1.3-1.8x over stretches of 100-300 ms, and every swing on
//     one stage idles its neighbours: that idle is reported next to it (real_compute_per_stage_idle),
//     not as the schedule's. p = 2 and 4 run as 2 and 4 processes on this machine's cores.
//   pipe2_tokens_per_s: the GPT as 2 pipeline stages on 2 ranks, against data parallelism on the
//     same 2 ranks with the same layers and global batch, measured in the same run (ratio = pipe / dp).
//   tp2_tokens_per_s: the same GPT with every layer split over 2 tensor-parallel ranks, against the
//     same data-parallel anchor (ratio = tp / dp).
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

import { machineState, table, writeResults, type Row } from '@ds-internal/bench-kit';
import { describeWorld, lastJson, withWorld } from '@ds-internal/test-kit';

const before = machineState();
const smoke = process.argv.includes('--smoke');
const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));
const GPT = smoke ? { vocabSize: 64, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32, seed: 1 } : { vocabSize: 2048, blockSize: 128, nLayer: 4, nHead: 4, nEmbd: 256, seed: 1 };
const BUBBLE_GPT = smoke ? GPT : { ...GPT, nEmbd: 128 };
const STEPS = smoke ? 1 : 5;
// The bubble rows are small and their idle fraction swings from batch to batch on a shared 2-vCPU machine: more batches for a steady median.
const BUBBLE_STEPS = smoke ? 1 : 11;
// Per block: forward and backward ms. The blocks compute in about 4.5 and 8.5 ms with a core each, up
// to twice that with 4 ranks on 2 cores. A stage of 2 blocks then takes 180 ms per micro batch; a
// transfer between stages takes 0.1-0.5 ms here, and with 4 ranks time-sharing 2 cores a rank whose
// message came in may wait a few ms for a core: at 120 ms per micro batch that alone put p4 m8 11%
// over the formula, at 180 ms 7%.
const PACE_MS: [number, number] = smoke ? [2, 4] : [30, 60];
const ROWS = smoke ? 1 : 4;

async function run<T>(world: number, env: Record<string, string>): Promise<T[]> {
  const w = await withWorld(world, WORKER, {
    env: { DS_BENCH_GPT: JSON.stringify(env.DS_BENCH_MODE === 'bubble' ? BUBBLE_GPT : GPT), DS_BENCH_STEPS: String(env.DS_BENCH_MODE === 'bubble' ? BUBBLE_STEPS : STEPS), DS_BENCH_ROWS: String(ROWS), DS_NUM_THREADS: '1', ...env },
    timeoutMs: smoke ? 120_000 : 600_000,
  });
  if (w.timedOut || w.ranks.some((r) => r.code !== 0)) {
    console.error(describeWorld(w));
    process.exit(1);
  }
  return w.ranks.map((r) => lastJson<T>(r.stdout));
}

const rows: Row[] = [];
for (const p of [2, 4]) {
  for (const m of [4, 8]) {
    const out = await run<{ stage: number; idle: number }>(p, { DS_BENCH_MODE: 'bubble', DS_BENCH_MICRO: String(m), DS_BENCH_PACE: JSON.stringify(PACE_MS) });
    const real = await run<{ stage: number; idle: number }>(p, { DS_BENCH_MODE: 'bubble', DS_BENCH_MICRO: String(m) });
    const worst = out.reduce((a, o) => (o.idle > a.idle ? o : a));
    const anchor = (p - 1) / (m + p - 1);
    rows.push({
      metric: `pipeline_bubble_ratio_p${p}_m${m}`,
      value: worst.idle,
      unit: 'idle fraction',
      anchor: '1F1B bubble (p - 1) / (m + p - 1)',
      anchorValue: anchor,
      ratio: anchor / worst.idle,
      config: {
        stages: p,
        micro_batches: m,
        rows: ROWS,
        batches: BUBBLE_STEPS,
        statistic: 'median over the batches after one warm-up batch',
        gpt: BUBBLE_GPT,
        blocks_per_stage: 2,
        pace_ms_per_block: { forward: PACE_MS[0], backward: PACE_MS[1] },
        per_stage_idle: out.map((o) => o.idle),
        real_compute_per_stage_idle: real.map((o) => o.idle),
        note: `worst stage ${worst.stage}; processes ${p} on the machine's cores, 1 thread each; real_compute: the same blocks unpaced (their times swing on this VM)`,
      },
    });
  }
}

// Data parallelism first and last, the pipeline and tensor parallelism in between: drift hits both alike; each keeps its faster run.
const MICRO = 8;
const dp1 = await run<{ batchS: number; tokensPerBatch: number }>(2, { DS_BENCH_MODE: 'dp', DS_BENCH_MICRO: String(MICRO) });
const pipe = await run<{ batchS: number; tokensPerBatch: number }>(2, { DS_BENCH_MODE: 'pipe', DS_BENCH_MICRO: String(MICRO) });
const tp = await run<{ batchS: number; tokensPerBatch: number }>(2, { DS_BENCH_MODE: 'tp', DS_BENCH_MICRO: String(MICRO) });
const dp2 = await run<{ batchS: number; tokensPerBatch: number }>(2, { DS_BENCH_MODE: 'dp', DS_BENCH_MICRO: String(MICRO) });
const slowest = (o: { batchS: number }[]) => Math.max(...o.map((x) => x.batchS));
const dpS = Math.min(slowest(dp1), slowest(dp2));
const pipeS = slowest(pipe);
const tokens = pipe[0]!.tokensPerBatch;
rows.push({
  metric: 'pipe2_tokens_per_s',
  value: tokens / pipeS,
  unit: 'tokens/s',
  anchor: 'data parallel on the same 2 ranks, same layers and global batch (same run)',
  anchorValue: tokens / dpS,
  ratio: dpS / pipeS,
  config: { gpt: GPT, micro_batches: MICRO, rows_per_micro_batch: ROWS, global_rows: MICRO * ROWS, bf16: true, threads_per_rank: 1 },
});

const tpS = slowest(tp);
rows.push({
  metric: 'tp2_tokens_per_s',
  value: tp[0]!.tokensPerBatch / tpS,
  unit: 'tokens/s',
  anchor: 'data parallel on the same 2 ranks, same layers and global batch (same run)',
  anchorValue: tokens / dpS,
  ratio: dpS / tpS,
  config: { gpt: GPT, tensor_parallel: 2, micro_batches: MICRO, rows_per_micro_batch: ROWS, global_rows: MICRO * ROWS, bf16: true, threads_per_rank: 1 },
});

console.log(`@ds/pipeline bench${smoke ? ' (smoke)' : ''}: ratio above 1 is better (bubble: anchor / measured; tokens/s: pipe / dp, tp / dp)`);
console.log(table(rows));
console.log(writeResults(dirname(fileURLToPath(import.meta.url)), rows, { before, smoke }));
