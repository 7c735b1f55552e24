// One rank of the ZeRO benchmark: for each stage's ds_config (DS_BENCH_CONFIGS), builds the GPT
// (DS_BENCH_GPT), runs DS_BENCH_WARMUP + DS_BENCH_STEPS steps on deterministic token batches and
// reports the median step time, the tracker's model-state bytes this rank holds, and the bytes the
// data-parallel group moved per step, counted by a ProcessGroup observer in DeepSpeed's comms-logger
// convention (all-reduce: 2 x buffer; all-gather / reduce-scatter: world x per-rank buffer).
import { initialize, type CommEvent } from '@ds/core';
import { fromArray, getRuntime, GPT, Tensor, tidy } from '@ds/tensor';

import { zero } from '../src/index.js';

interface GptCfg {
  vocabSize: number;
  blockSize: number;
  nLayer: number;
  nHead: number;
  nEmbd: number;
  seed: number;
}

const configs = JSON.parse(process.env.DS_BENCH_CONFIGS!) as Record<string, unknown>[];
const gpt = JSON.parse(process.env.DS_BENCH_GPT!) as GptCfg;
const warmup = Number(process.env.DS_BENCH_WARMUP ?? 1);
const steps = Number(process.env.DS_BENCH_STEPS ?? 3);
const CATS = ['parameters', 'gradients', 'optimizer_states'] as const;
const tracker = getRuntime().tracker;

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

function volume(e: CommEvent): number {
  if (e.op === 'allReduce') return 2 * e.bytes;
  if (e.op === 'allGather' || e.op === 'reduceScatter') return e.bytes * e.groupSize;
  return e.bytes;
}

/** Collects the previous run's garbage (storages still viewed by dead tensors) so it is not freed mid-measurement. */
async function settleGarbage(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return;
  gc();
  await new Promise((r) => setTimeout(r, 0));
}

const results = [];
let dist = undefined as Awaited<ReturnType<typeof initialize>>['engine']['dist'] | undefined;
for (const config of configs) {
  await settleGarbage();
  const before = CATS.reduce((a, c) => a + tracker.liveBytes('cpu', c), 0);
  const model = new GPT(gpt);
  const numel = model.numParameters();
  const { engine } = await initialize({ model, config, plugins: [zero()], log: () => {}, ...(dist !== undefined ? { dist } : {}) });
  dist = engine.dist;
  const micro = engine.trainMicroBatchSizePerGpu();
  let moved = 0;
  const remove = engine.dist?.world.addObserver((e) => (moved += volume(e)));
  const times: number[] = [];
  const parts: Record<string, number[]> = {};
  let stateBytes = 0;
  for (let s = 0; s < warmup + steps; s++) {
    if (s === warmup) moved = 0;
    const t0 = performance.now();
    const { ids, targets } = tokens(s, engine.rank, micro, gpt.blockSize);
    const loss = tidy(() => engine.forward<{ loss: Tensor }>(ids, targets).loss!.keep());
    await engine.backward(loss);
    await engine.step();
    loss.dispose();
    ids.dispose();
    targets.dispose();
    if (s >= warmup) {
      times.push((performance.now() - t0) / 1000);
      for (const [k, ms] of Object.entries(engine.timers.last())) (parts[k] ??= []).push(ms / 1000);
    }
    if (s === 0) stateBytes = CATS.reduce((a, c) => a + tracker.liveBytes('cpu', c), 0) - before;
  }
  remove?.();
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const breakdown = Object.fromEntries(Object.entries(parts).map(([k, xs]) => [k, median(xs)]));
  results.push({ stage: engine.zeroStage, numel, stepS: median(times), breakdown, stateBytes, commBytesPerStep: moved / steps });
  engine.destroy();
  // Core's stage 0 leaves its flat buffer to the parameters still viewing it (freed when they are
  // collected, which could land in the next run's measurement): detach them now.
  const empty = Tensor.empty([0], 'f32', { track: false });
  for (const p of model.parameters()) p.setData(empty);
  empty.dispose();
}
if ((dist?.rank ?? 0) === 0) console.log(JSON.stringify({ results }));
await dist?.destroy();
