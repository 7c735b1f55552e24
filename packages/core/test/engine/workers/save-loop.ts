// Trains a little, then saves checkpoints in a loop until killed (the crash-during-save test).
import { trainSteps } from '@ds-internal/gpt-fixtures';
import { GPT } from '@ds/tensor';

import { initialize } from '../../../src/engine/initialize.js';

const dir = process.env.DS_TEST_DIR!;
const model = new GPT({ vocabSize: 256, blockSize: 16, nLayer: 2, nHead: 4, nEmbd: 128, seed: 5 });
const config = { train_micro_batch_size_per_gpu: 2, optimizer: { type: 'AdamW', params: { lr: 1e-3 } }, bf16: { enabled: true } };
const { engine } = await initialize({ model, config, dist: null, log: () => {} });
await trainSteps(engine, 0, 1);
await engine.saveCheckpoint(dir, { tag: 'first' });
console.log('saved first');
for (let i = 0; ; i++) {
  await trainSteps(engine, i + 1, i + 2);
  await engine.saveCheckpoint(dir, { tag: `loop${i}` });
}
