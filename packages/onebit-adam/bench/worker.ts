// One rank of the 1-bit benchmark: for each ds_config in DS_BENCH_CONFIGS, trains the GPT
// (DS_BENCH_GPT) for DS_BENCH_WARMUP steps (past freeze_step, so the measured steps are in the
// compressed phase), then DS_BENCH_STEPS measured steps, and reports the median step time and the
// bytes each rank put on the wire per measured step, from core's comms logger (message sizes by op)
// with the link factors of ring collectives: all-reduce 2 (w - 1) / w of the buffer, all-gather
// (w - 1) / w of the output, all-to-all (w - 1) / w of the buffer.
import { initialize, type Engine } from '@ds/core';
import { fromArray, GPT, tidy, type Tensor } from '@ds/tensor';

import { onebitAdam } from '../src/index.js';

const configs = JSON.parse(process.env.DS_BENCH_CONFIGS!) as Record<string, unknown>[];
const gpt = JSON.parse(process.env.DS_BENCH_GPT!) as { vocabSize: number; blockSize: number };
const warmup = Number(process.env.DS_BENCH_WARMUP ?? 3);
const steps = Number(process.env.DS_BENCH_STEPS ?? 3);

function tokens(step: number, rank: number, rows: number, t: number): { ids: Tensor; targets: Tensor } {
  const ids: number[] = [];
  const targets: number[] = [];
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < t; i++) {
      const v = (step * 7919 + rank * 104729 + r * 1299709 + i * 31) % gpt.vocabSize;
      ids.push(v);
      targets.push((v * 17 + 3) % gpt.vocabSize);
    }
  }
  return { ids: fromArray(ids, [rows, t], { dtype: 'i32' }), targets: fromArray(targets, [rows, t], { dtype: 'i32' }) };
}

const LINK: Record<string, (w: number) => number> = {
  all_reduce: (w) => (2 * (w - 1)) / w,
  // the logger counts an all-gather by its per-rank input: the gathered output is w times that
  all_gather_into_tensor: (w) => w - 1,
  all_to_all_single: (w) => (w - 1) / w,
};

function wireBytes(engine: Engine, world: number): { total: number; byOp: Record<string, number> } {
  const byOp: Record<string, number> = {};
  let total = 0;
  for (const [name, bySize] of engine.commsLogger!.stats()) {
    if (name === 'barrier') continue; // the benchmark's own alignment before each timed step
    const f = LINK[name];
    if (!f) throw new Error(`bench: no link factor for op '${name}'`);
    for (const [bytes, s] of bySize) {
      const b = bytes * s.count * f(world);
      byOp[name] = (byOp[name] ?? 0) + b;
      total += b;
    }
  }
  return { total, byOp };
}

/** Lets sync-waited ops' completions reach the comms logger (they settle on the event loop). */
const flush = () => new Promise((resolve) => setTimeout(resolve, 20));

const results = [];
let dist = undefined as Engine['dist'] | undefined;
for (const config of configs) {
  const model = new GPT(gpt as ConstructorParameters<typeof GPT>[0]);
  const numel = model.numParameters();
  const { engine } = await initialize({ model, config, plugins: [onebitAdam()], log: () => {}, ...(dist !== undefined ? { dist } : {}) });
  dist = engine.dist;
  const world = engine.dist?.size ?? 1;
  const micro = engine.trainMicroBatchSizePerGpu();
  const times: number[] = [];
  for (let s = 0; s < warmup + steps; s++) {
    if (s === warmup) {
      await flush();
      engine.commsLogger!.reset();
    }
    await engine.dist?.world.barrier();
    const t0 = performance.now();
    const { ids, targets } = tokens(s, engine.rank, micro, gpt.blockSize);
    const loss = tidy(() => engine.forward<{ loss: Tensor }>(ids, targets).loss!.keep());
    await engine.backward(loss);
    await engine.step();
    loss.dispose();
    ids.dispose();
    targets.dispose();
    if (s >= warmup) times.push((performance.now() - t0) / 1000);
  }
  await flush();
  const wire = wireBytes(engine, world);
  times.sort((a, b) => a - b);
  results.push({ type: (config.optimizer as { type: string }).type, numel, world, stepS: times[Math.floor(times.length / 2)]!, wirePerStep: wire.total / steps, byOpPerStep: Object.fromEntries(Object.entries(wire.byOp).map(([k, v]) => [k, v / steps])) });
  engine.destroy();
}
console.log(JSON.stringify({ results }));
await dist?.destroy();
