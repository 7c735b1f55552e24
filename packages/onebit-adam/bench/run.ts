// `pnpm --filter @ds/onebit-adam bench [--smoke]`: 1-bit Adam against Adam, both measured in the same
// run on the same GPT (fp32, so that Adam's all-reduce is an fp32 all-reduce of the gradients).
//
//   onebit_wire_reduction      bytes each rank puts on the wire per step in the compressed phase,
//                              against Adam's fp32 all-reduce of the same gradients (comms logger;
//                              ring link factors); 2 ranks on one host. Target ratio >= 25x.
//   onebit_speedup_<rate>_<w>r  step time in the compressed phase, 1-bit Adam against Adam (the
//                              anchor), w ranks each in its own network namespace behind a <rate>
//                              link (tc tbf; tools/test-kit withNetnsWorld). Target >= 2x at 1 Gbit/s,
//                              >= 5x at 100 Mbit/s. Skipped, saying why, where namespaces cannot be made.
//
// The GPT is sized so that Adam's step is communication-bound at these rates (42 MB of fp32
// gradients, little compute: 8 tokens per rank per step). Every row records the CPU, the load average.
import { cpus, loadavg } from 'node:os';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

import { table, writeResults, type Row } from '@ds-internal/bench-kit';
import { describeWorld, lastJson, netnsSupport, withNetnsWorld, withWorld, type WorldResult } from '@ds-internal/test-kit';

const smoke = process.argv.includes('--smoke');
const GPT_CFG = smoke ? { vocabSize: 512, blockSize: 16, nLayer: 1, nHead: 2, nEmbd: 64, seed: 1 } : { vocabSize: 8192, blockSize: 8, nLayer: 2, nHead: 8, nEmbd: 512, seed: 1 };
const FREEZE = 2;
const worker = fileURLToPath(new URL('./worker.ts', import.meta.url));

function config(type: 'Adam' | 'OneBitAdam'): Record<string, unknown> {
  return {
    train_micro_batch_size_per_gpu: 1,
    gradient_accumulation_steps: 1,
    comms_logger: { enabled: true },
    optimizer: type === 'Adam' ? { type, params: { lr: 1e-4 } } : { type, params: { lr: 1e-4, freeze_step: FREEZE } },
  };
}

interface Result {
  type: string;
  numel: number;
  world: number;
  stepS: number;
  wirePerStep: number;
  byOpPerStep: Record<string, number>;
}

const env = {
  // Adam, 1-bit Adam, 1-bit Adam, Adam: drift on the shared machine hits both alike; each keeps its faster median.
  DS_BENCH_CONFIGS: JSON.stringify(['Adam', 'OneBitAdam', 'OneBitAdam', 'Adam'].map((t) => config(t as 'Adam' | 'OneBitAdam'))),
  DS_BENCH_GPT: JSON.stringify(GPT_CFG),
  DS_BENCH_WARMUP: String(FREEZE + 1),
  DS_BENCH_STEPS: smoke ? '1' : '3',
};

function results(w: WorldResult): { adam: Result; onebit: Result } {
  if (w.timedOut || w.ranks.some((r) => r.code !== 0)) {
    console.error(describeWorld(w));
    throw new Error('bench: a rank failed (output above)');
  }
  const all = lastJson<{ results: Result[] }>(w.ranks[0]!.stdout).results;
  const best = (type: string) => all.filter((r) => r.type === type).reduce((a, r) => (r.stepS < a.stepS ? r : a));
  return { adam: best('Adam'), onebit: best('OneBitAdam') };
}

const machine = () => ({ cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, loadavg: loadavg().map((x) => Number(x.toFixed(2))) });
const rows: Row[] = [];

// Wire volume: 2 ranks, one host.
{
  const loadBefore = loadavg()[0]!;
  const { adam, onebit } = results(await withWorld(2, worker, { env, timeoutMs: smoke ? 120_000 : 600_000 }));
  rows.push({
    metric: 'onebit_wire_reduction',
    value: onebit.wirePerStep,
    unit: 'B/step/rank',
    anchor: 'Adam fp32 all-reduce of the same gradients, same run (comms logger, ring link factors); target ratio >= 25x',
    anchorValue: adam.wirePerStep,
    ratio: adam.wirePerStep / onebit.wirePerStep,
    config: { world: 2, gpt: GPT_CFG, numel: adam.numel, freeze_step: FREEZE, by_op: { adam: adam.byOpPerStep, onebit: onebit.byOpPerStep }, smoke, ...machine(), loadavg_before: loadBefore, note: `${(adam.wirePerStep / onebit.wirePerStep).toFixed(1)}x less` },
  });
}

// Speed on slow links.
const why = netnsSupport();
const targets: Record<string, number> = { '1gbit': 2, '100mbit': 5 };
for (const rate of smoke ? ['1gbit'] : ['1gbit', '100mbit']) {
  for (const world of smoke ? [2] : [2, 4]) {
    const metric = `onebit_speedup_${rate}_${world}r`;
    if (why) {
      console.log(`${metric}: skipped: ${why}`);
      continue;
    }
    const loadBefore = loadavg()[0]!;
    const { adam, onebit } = results(await withNetnsWorld(world, worker, { rate, env, timeoutMs: smoke ? 120_000 : 600_000 }));
    const speedup = adam.stepS / onebit.stepS;
    rows.push({
      metric,
      value: onebit.stepS,
      unit: 's/step',
      anchor: `Adam step time, same run, ${world} ranks in network namespaces behind ${rate} links; target speedup >= ${targets[rate]}x`,
      anchorValue: adam.stepS,
      ratio: speedup,
      config: { world, rate, gpt: GPT_CFG, numel: adam.numel, freeze_step: FREEZE, smoke, ...machine(), loadavg_before: loadBefore, note: `speedup ${speedup.toFixed(2)}x (target ${targets[rate]}x)` },
    });
  }
}

console.log(`1-bit Adam vs Adam, GPT ${JSON.stringify(GPT_CFG)}${smoke ? ' (smoke)' : ''}; ${machine().cpu}, load average ${machine().loadavg.join(' ')}`);
console.log(table(rows));
console.log(writeResults(dirname(fileURLToPath(import.meta.url)), rows, { smoke }));
