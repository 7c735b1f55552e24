// One rank: builds the GPT of DS_TEST_GPT under zeroInit and reports the tracker's peak and live
// 'parameters' bytes during and right after construction; then compares the stage-3 engine made
// from it with one made from a plainly built GPT: whole weights (gathered), 'parameters' bytes
// after initialize, and the losses of a few steps. Also reports the error of reusing the model and
// the error of a model each rank built under zeroInit with its own seed.
import { TINY_GPT, trainSteps } from '@ds-internal/gpt-fixtures';
import { initialize, type Engine } from '@ds/core';
import { getRuntime, GPT } from '@ds/tensor';

import { gatheredParameters, zero, zeroInit } from '../../src/index.js';

const config = JSON.parse(process.env.DS_TEST_CONFIGS!) as Record<string, unknown>;
const gpt = { ...TINY_GPT, ...(JSON.parse(process.env.DS_TEST_GPT ?? '{}') as object) };
const world = Number(process.env.WORLD_SIZE ?? 1);
const rank = Number(process.env.RANK ?? 0);
const tracker = getRuntime().tracker;
const params = () => tracker.liveBytes('cpu', 'parameters');

const base = params();
tracker.resetPeak();
const model = zeroInit(() => new GPT(gpt), { config, rank, world });
const build = { peak: tracker.peakBytes('cpu', 'parameters') - base, live: params() - base };

async function engineOf(m: GPT, dist?: Engine['dist']): Promise<{ engine: Engine; weights: Record<string, number[]>; paramBytes: number }> {
  const { engine } = await initialize({ model: m, config, plugins: [zero()], log: () => {}, ...(dist !== undefined ? { dist } : {}) });
  const paramBytes = params() - base;
  const weights = await gatheredParameters(engine.stateManager, () => Object.fromEntries(m.namedParameters().map(([n, p]) => [n, p.toArray()])));
  return { engine, weights, paramBytes };
}

const a = await engineOf(model);
const lossesInit = await trainSteps(a.engine, 0, 3, rank, gpt.blockSize, gpt.vocabSize);
a.engine.destroy();
let reuseError = '';
try {
  (await initialize({ model, config, plugins: [zero()], log: () => {}, dist: a.engine.dist })).engine.destroy();
} catch (err) {
  reuseError = `${(err as Error).name}: ${(err as Error).message}`;
}
const b = await engineOf(new GPT(gpt), a.engine.dist);
const lossesPlain = await trainSteps(b.engine, 0, 3, rank, gpt.blockSize, gpt.vocabSize);
b.engine.destroy();
let seedError = '';
try {
  const perRank = zeroInit(() => new GPT({ ...gpt, seed: (gpt.seed ?? 0) + rank }), { config, rank, world });
  (await initialize({ model: perRank, config, plugins: [zero()], log: () => {}, dist: a.engine.dist })).engine.destroy();
} catch (err) {
  seedError = `${(err as Error).name}: ${(err as Error).message}`;
}
console.log(JSON.stringify({ build, init: { weights: a.weights, paramBytes: a.paramBytes, losses: lossesInit }, plain: { weights: b.weights, paramBytes: b.paramBytes, losses: lossesPlain }, reuseError, seedError }));
await a.engine.dist?.destroy();
