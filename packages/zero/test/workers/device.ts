// One rank of the device test: for each ds_config in DS_TEST_CONFIGS and each device in
// DS_TEST_DEVICES, trains the tiny GPT built on that device for DS_TEST_FROM steps, saves a
// checkpoint, trains on to DS_TEST_TO, then loads the checkpoint into a fresh engine (a fresh model
// on the same device) and trains DS_TEST_FROM..DS_TEST_TO again. Prints, per run, the losses of both
// legs and the whole fp32 masters at the end (collective), so the caller compares devices exactly.
import { TINY_GPT, trainSteps } from '@ds-internal/gpt-fixtures';
import { initialize, type Distributed } from '@ds/core';
import { GPT } from '@ds/tensor';

import { zero } from '../../src/index.js';

const configs = JSON.parse(process.env.DS_TEST_CONFIGS!) as Record<string, unknown>[];
const devices = JSON.parse(process.env.DS_TEST_DEVICES!) as string[];
const from = Number(process.env.DS_TEST_FROM);
const to = Number(process.env.DS_TEST_TO);
const dir = process.env.DS_TEST_DIR!;

let dist: Distributed | null | undefined = undefined;
const runs = [];
for (const [k, config] of configs.entries()) {
  for (const device of devices) {
    const start = async () => {
      const { engine } = await initialize({ model: new GPT({ ...TINY_GPT, device }), config, plugins: [zero()], log: () => {}, ...(dist !== undefined ? { dist } : {}) });
      dist = engine.dist;
      return engine;
    };
    const a = await start();
    if (a.device !== device) throw new Error(`the engine trains on ${a.device}, not ${device}`);
    const first = await trainSteps(a, 0, from, a.rank);
    const tag = `c${k}-${device}`;
    await a.saveCheckpoint(dir, { tag });
    const tail = await trainSteps(a, from, to, a.rank);
    const masters = Object.fromEntries([...(await a.stateManager.masterWeights())].map(([n, v]) => [n, [...v]]));
    a.destroy();
    const b = await start();
    await b.loadCheckpoint(dir, { tag });
    const resumed = await trainSteps(b, from, to, b.rank);
    const resumedMasters = Object.fromEntries([...(await b.stateManager.masterWeights())].map(([n, v]) => [n, [...v]]));
    b.destroy();
    runs.push({ config: k, device, stage: b.zeroStage, first, tail, resumed, masters, resumedMasters });
  }
}
console.log(JSON.stringify({ runs }));
await (dist as Distributed | null | undefined)?.destroy();
