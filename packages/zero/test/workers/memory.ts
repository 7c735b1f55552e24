// One rank: for each ds_config in DS_TEST_CONFIGS, builds the GPT of DS_TEST_GPT, trains
// DS_TEST_STEPS steps and reports the tracker's live bytes per model-state category that the run
// added (measured from before the model was built), its peak, and any error (an out-of-memory under
// DS_MEMORY_LIMIT ends the run on every rank at the same point, so each rank reports and exits).
import { TINY_GPT, trainSteps } from '@ds-internal/gpt-fixtures';
import { initialize } from '@ds/core';
import { getRuntime, GPT, isDSError, Tensor } from '@ds/tensor';

import { zero, zeroInit } from '../../src/index.js';

const configs = JSON.parse(process.env.DS_TEST_CONFIGS!) as Record<string, unknown>[];
const steps = Number(process.env.DS_TEST_STEPS ?? 1);
const gpt = { ...TINY_GPT, ...(JSON.parse(process.env.DS_TEST_GPT ?? '{}') as object) };
const useZeroInit = process.env.DS_TEST_ZERO_INIT === '1';
const CATS = ['parameters', 'gradients', 'optimizer_states', 'communication'] as const;
const tracker = getRuntime().tracker;
/** Collects the previous run's garbage (storages still viewed by dead tensors) so it is not freed mid-measurement. */
async function settleGarbage(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return;
  gc();
  await new Promise((r) => setTimeout(r, 0));
}

const runs = [];
let dist = undefined as Awaited<ReturnType<typeof initialize>>['engine']['dist'] | undefined;
for (const config of configs) {
  await settleGarbage();
  const before = Object.fromEntries(CATS.map((c) => [c, tracker.liveBytes('cpu', c)]));
  tracker.resetPeak();
  const peakBase = tracker.liveBytes('cpu');
  try {
    const world = Number(process.env.WORLD_SIZE ?? 1);
    const rank = Number(process.env.RANK ?? 0);
    const model = useZeroInit ? zeroInit(() => new GPT(gpt), { config, rank, world }) : new GPT(gpt);
    const { engine } = await initialize({ model, config, plugins: [zero()], log: () => {}, ...(dist !== undefined ? { dist } : {}) });
    dist = engine.dist;
    const losses = await trainSteps(engine, 0, steps, engine.rank, gpt.blockSize, gpt.vocabSize);
    const live = Object.fromEntries(CATS.map((c) => [c, tracker.liveBytes('cpu', c) - before[c]!]));
    runs.push({ stage: engine.zeroStage, ok: true, losses, live, peak: tracker.peakBytes('cpu') - peakBase, reported: engine.stateManager.modelStateBytes(), numel: model.numParameters() });
    engine.destroy();
  // Core's stage 0 leaves its flat buffer to the parameters still viewing it (freed when they are
  // collected, which could land in the next run's measurement): detach them now.
  const empty = Tensor.empty([0], 'f32', { track: false });
  for (const p of model.parameters()) p.setData(empty);
  empty.dispose();
  } catch (err) {
    runs.push({ ok: false, error: `${(err as Error).name}: ${(err as Error).message}`, code: isDSError(err) ? (err as { code?: string }).code : undefined });
    console.log(JSON.stringify({ runs }));
    process.exit(0);
  }
}
console.log(JSON.stringify({ runs }));
await dist?.destroy();
