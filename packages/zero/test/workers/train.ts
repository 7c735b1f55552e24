// One rank: trains the tiny GPT under each ds_config in DS_TEST_CONFIGS (a JSON array) for
// DS_TEST_STEPS steps and prints {"runs": [{losses, gradNorm, stage, bytes}]}: the losses are this
// rank's, so the caller averages over ranks to get the global curve.
import { initialize } from '@ds/core';
import { GPT } from '@ds/tensor';

import { zero } from '../../src/index.js';
import { TINY_GPT, trainSteps } from '../helpers.js';

const configs = JSON.parse(process.env.DS_TEST_CONFIGS!) as Record<string, unknown>[];
const steps = Number(process.env.DS_TEST_STEPS ?? 6);
const gpt = process.env.DS_TEST_GPT ? { ...TINY_GPT, ...(JSON.parse(process.env.DS_TEST_GPT) as object) } : TINY_GPT;
const runs = [];
let dist = undefined as Awaited<ReturnType<typeof initialize>>['engine']['dist'] | undefined;
for (const config of configs) {
  const { engine } = await initialize({ model: new GPT(gpt), config, plugins: [zero()], log: () => {}, ...(dist !== undefined ? { dist } : {}) });
  dist = engine.dist;
  const losses = await trainSteps(engine, 0, steps, engine.rank);
  runs.push({ stage: engine.zeroStage, losses, gradNorm: engine.getGlobalGradNorm(), bytes: engine.stateManager.modelStateBytes() });
  engine.destroy();
}
console.log(JSON.stringify({ runs }));
await dist?.destroy();
