// One rank: trains the tiny GPT under each ds_config in DS_TEST_CONFIGS (a JSON array) for
// DS_TEST_STEPS steps and prints {"runs": [{losses, gradNorm, stage, bytes, masters?}]}: the losses
// are this rank's, so the caller averages over ranks to get the global curve.
import { TINY_GPT, trainSteps } from '@ds-internal/gpt-fixtures';
import { initialize } from '@ds/core';
import { GPT } from '@ds/tensor';

import { zero } from '../../src/index.js';

const configs = JSON.parse(process.env.DS_TEST_CONFIGS!) as Record<string, unknown>[];
const steps = Number(process.env.DS_TEST_STEPS ?? 6);
const gpt0 = process.env.DS_TEST_GPT ? { ...TINY_GPT, ...(JSON.parse(process.env.DS_TEST_GPT) as object) } : TINY_GPT;
// DS_TEST_SEED_BY_RANK=1: each rank builds different initial weights (seed + 1000 x rank); ZeRO must
// start every rank from rank 0's.
const gpt = process.env.DS_TEST_SEED_BY_RANK === '1' ? { ...gpt0, seed: (gpt0.seed ?? 0) + 1000 * Number(process.env.RANK) } : gpt0;
function paramGroupsOf(model: GPT) {
  const named = model.namedParameters();
  const plain = named.filter(([n]) => !/bias|ln_|wpe|wte/.test(n)).map(([, p]) => p);
  const special = named.filter(([n]) => /bias|ln_|wpe|wte/.test(n)).map(([, p]) => p);
  return [{ params: plain }, { params: [...new Set(special)], weightDecay: 0, lr: 5e-3 }];
}

const runs = [];
let dist = undefined as Awaited<ReturnType<typeof initialize>>['engine']['dist'] | undefined;
for (const config of configs) {
  const model = new GPT(gpt);
  // DS_TEST_GROUPS=1: modelParameters groups as users set them: no decay and half the lr on biases,
  // norms and embeddings; the rest with the config's.
  const groups = process.env.DS_TEST_GROUPS === '1' ? paramGroupsOf(model) : undefined;
  const { engine } = await initialize({ model, config, plugins: [zero()], log: () => {}, ...(groups ? { modelParameters: groups } : {}), ...(dist !== undefined ? { dist } : {}) });
  dist = engine.dist;
  const losses = await trainSteps(engine, 0, steps, engine.rank);
  // DS_TEST_MASTERS=1: the whole fp32 masters too (collective), on rank 0 only.
  const masters = process.env.DS_TEST_MASTERS === '1' ? Object.fromEntries([...(await engine.stateManager.masterWeights())].map(([k, v]) => [k, [...v]])) : undefined;
  runs.push({ stage: engine.zeroStage, losses, gradNorm: engine.getGlobalGradNorm(), bytes: engine.stateManager.modelStateBytes(), ...(masters && engine.rank === 0 ? { masters } : {}) });
  engine.destroy();
}
console.log(JSON.stringify({ runs }));
await dist?.destroy();
