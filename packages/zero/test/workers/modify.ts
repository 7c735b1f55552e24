// One rank of the gatheredParameters(modifierRank) test. Under each config in DS_TEST_CONFIGS, every
// rank writes row 0 of transformer.wte.weight inside gatheredParameters({ modifierRank:
// DS_TEST_ROOT }): the root writes 0.25, the others -7 (their writes must be dropped). A step with lr 0
// follows (the 16-bit weights are recomputed from the fp32 masters, so masters that missed the change
// would undo it), then a read-only gather. Prints {"runs": [{stage, row0}]}.
import { TINY_GPT, trainSteps } from '@ds-internal/gpt-fixtures';
import { initialize } from '@ds/core';
import { f32ToBf16, GPT, bf16ToF32 } from '@ds/tensor';

import { gatheredParameters, zero } from '../../src/index.js';

const configs = JSON.parse(process.env.DS_TEST_CONFIGS!) as Record<string, unknown>[];
const root = Number(process.env.DS_TEST_ROOT ?? 0);
const runs = [];
let dist = undefined as Awaited<ReturnType<typeof initialize>>['engine']['dist'] | undefined;
for (const config of configs) {
  const gpt = new GPT(TINY_GPT);
  const wte = gpt.namedParameters().find(([n]) => n === 'transformer.wte.weight')![1];
  const { engine } = await initialize({ model: gpt, config, plugins: [zero()], log: () => {}, ...(dist !== undefined ? { dist } : {}) });
  dist = engine.dist;
  const value = engine.rank === root ? 0.25 : -7;
  await gatheredParameters(engine.stateManager, () => {
    const row = wte.data().subarray(0, TINY_GPT.nEmbd);
    if (row instanceof Float32Array) row.fill(value);
    else (row as Uint16Array).fill(f32ToBf16(value));
  }, { modifierRank: root });
  await trainSteps(engine, 0, 1, engine.rank);
  const row0 = await gatheredParameters(engine.stateManager, () => {
    const row = wte.data().subarray(0, TINY_GPT.nEmbd);
    return Array.from(row, (v) => (row instanceof Float32Array ? v : bf16ToF32(v)));
  });
  runs.push({ stage: engine.zeroStage, row0 });
  engine.destroy();
}
console.log(JSON.stringify({ runs }));
await dist?.destroy();
