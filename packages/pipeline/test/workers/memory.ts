// One rank of 2 stages: the peak activation bytes of a trainBatch (after a warm-up batch) for 4 and
// 8 micro batches, read from the memory tracker; then the setups that must fail, with their
// messages (too few micro batches, more stages than ranks). Prints {"stage", "peaks": {"4": bytes, "8": bytes}, "errors": [...]}.
import { batch } from '@ds-internal/gpt-fixtures';
import { initDistributed, initialize } from '@ds/core';
import { getRuntime } from '@ds/tensor';

import { gptPipe, pipeline, type PipeBatch, type PipelineEngine } from '../../src/index.js';
import { PIPE_GPT, pipeConfig } from '../fixtures.js';

const rank = Number(process.env.RANK);
const world = Number(process.env.WORLD_SIZE);
const dist = await initDistributed();
const tracker = getRuntime().tracker;
const batches = (s: number, m: number): PipeBatch[] => Array.from({ length: m }, (_, k) => {
  const { ids, targets } = batch(s, k, 0, 2);
  return [ids, targets] as const;
});

const peaks: Record<number, number> = {};
const leaks: Record<number, number> = {};
let stage = -1;
for (const m of [4, 8]) {
  const model = gptPipe({ ...PIPE_GPT, nEmbd: 32 }, { numStages: 2, rank, worldSize: world });
  const { engine } = await initialize({ model, config: pipeConfig(m, 1), plugins: [pipeline()], topology: { pipe: 2 }, dist, log: () => {} });
  const pipe = engine as PipelineEngine;
  stage = pipe.stageId;
  const warm = batches(0, m);
  await pipe.trainBatch(warm);
  for (const [a, b] of warm) (a.dispose(), b.dispose());
  const total = tracker.liveBytes('cpu');
  const data = batches(1, m);
  tracker.resetPeak('cpu');
  const base = tracker.liveBytes('cpu', 'activations');
  await pipe.trainBatch(data);
  peaks[m] = tracker.peakBytes('cpu', 'activations') - base;
  for (const [a, b] of data) (a.dispose(), b.dispose());
  // Nothing of the batch stays behind, in any category: activations, received tensors, their gradients.
  leaks[m] = tracker.liveBytes('cpu') - total;
  engine.destroy();
  // The model is ours, not the engine's: left to the garbage collector, its parameters would be
  // reclaimed at some point of the next iteration's measured batch and read as negative bytes there.
  for (const p of model.parameters()) p.dispose();
}

const errors: string[] = [];
const attempt = async (f: () => Promise<unknown>) => {
  try {
    await f();
    errors.push('no error');
  } catch (err) {
    errors.push(`${(err as Error).constructor.name}: ${(err as Error).message}`);
  }
};
// One micro batch for two stages.
await attempt(() => initialize({ model: gptPipe(PIPE_GPT, { numStages: 2, rank, worldSize: world }), config: pipeConfig(1, 1), plugins: [pipeline()], topology: { pipe: 2 }, dist, log: () => {} }));
// A module of 4 stages on 2 ranks (no train_batch_size, so the batch rules do not fail first).
const { train_batch_size: _, ...noTotal } = pipeConfig(4, 1);
await attempt(() => initialize({ model: gptPipe(PIPE_GPT, { numStages: 4, stageId: 0, partitionMethod: 'uniform' }), config: noTotal, plugins: [pipeline()], dist, log: () => {} }));
console.log(JSON.stringify({ stage, peaks, leaks, errors }));
await dist.destroy();
