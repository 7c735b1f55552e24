// One rank of the checkpoint tests. DS_TEST_MODE=save: train DS_TEST_FROM steps, save to
// DS_TEST_DIR (rank 0 also writes the whole fp32 masters next to it), go on to DS_TEST_TO and print
// the losses. DS_TEST_MODE=load: load DS_TEST_DIR, train DS_TEST_FROM..DS_TEST_TO, print the losses.
import { writeFileSync } from 'node:fs';

import { TINY_GPT, trainSteps } from '@ds-internal/gpt-fixtures';
import { initialize, writeSafetensors } from '@ds/core';
import { GPT } from '@ds/tensor';

import { ShardedState, zero } from '../../src/index.js';

const config = JSON.parse(process.env.DS_TEST_CONFIG!) as Record<string, unknown>;
const dir = process.env.DS_TEST_DIR!;
const from = Number(process.env.DS_TEST_FROM);
const to = Number(process.env.DS_TEST_TO);
const { engine } = await initialize({ model: new GPT(TINY_GPT), config, plugins: [zero()], log: () => {} });
const state = engine.stateManager;
let losses: number[];
if (process.env.DS_TEST_MODE === 'save') {
  await trainSteps(engine, 0, from, engine.rank);
  await engine.saveCheckpoint(dir, { tag: 'ck', clientState: { at: from } });
  if (state instanceof ShardedState) {
    const masters = await state.masterWeights();
    if (engine.rank === 0) writeSafetensors(`${dir}.masters.safetensors`, [...masters].map(([n, d]) => [n, { dtype: 'f32', shape: [d.length], data: d }]));
  }
  losses = await trainSteps(engine, from, to, engine.rank);
} else {
  const { clientState } = await engine.loadCheckpoint(dir);
  if (engine.rank === 0) writeFileSync(`${dir}.client.json`, JSON.stringify({ clientState, globalSteps: engine.globalSteps }));
  losses = await trainSteps(engine, from, to, engine.rank);
}
console.log(JSON.stringify({ losses, stage: engine.zeroStage }));
engine.destroy();
await engine.dist?.destroy();
