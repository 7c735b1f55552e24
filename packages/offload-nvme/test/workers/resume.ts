// One rank of the crash test: trains the tiny GPT with nvme offload (DS_TEST_CONFIG) up to step
// DS_TEST_STEPS, saving a checkpoint to DS_TEST_CKPT after every DS_TEST_SAVE_EVERY steps. On start it
// resumes from the checkpoint there if one exists. With DS_TEST_KILL_AT=k it sends itself SIGKILL
// while the optimizer step of step k is streaming sub-groups through the tier (swaps in flight).
// Prints {"start", "losses": {step: loss}, "stale": [warnings about removed swap files]}.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { batch, TINY_GPT } from '@ds-internal/gpt-fixtures';
import { initialize } from '@ds/core';
import { GPT, tidy, type Tensor } from '@ds/tensor';
import { zero } from '@ds/zero';

import { offloadNvme } from '../../src/index.js';

const config = JSON.parse(process.env.DS_TEST_CONFIG!) as Record<string, unknown>;
const ckpt = process.env.DS_TEST_CKPT!;
const steps = Number(process.env.DS_TEST_STEPS);
const saveEvery = Number(process.env.DS_TEST_SAVE_EVERY);
const killAt = process.env.DS_TEST_KILL_AT === undefined ? -1 : Number(process.env.DS_TEST_KILL_AT);
const stale: string[] = [];
const log = (message: string) => {
  if (/stale swap file/.test(message)) stale.push(message);
};
const { engine } = await initialize({ model: new GPT(TINY_GPT), config, plugins: [zero(), offloadNvme()], log });
let start = 0;
if (existsSync(join(ckpt, 'latest'))) start = ((await engine.loadCheckpoint(ckpt)).clientState as { step: number }).step;
const losses: Record<number, number> = {};
const micro = engine.trainMicroBatchSizePerGpu();
for (let s = start; s < steps; s++) {
  let sum = 0;
  for (let m = 0; m < engine.gradientAccumulationSteps(); m++) {
    const { ids, targets } = batch(s, m, engine.rank * micro, micro);
    const loss = tidy(() => engine.forward<{ loss: Tensor }>(ids, targets).loss!.keep());
    sum += await engine.backward(loss);
    loss.dispose();
    ids.dispose();
    targets.dispose();
    const stepping = engine.step();
    // The boundary step of step killAt: killed once its swaps are under way.
    if (s === killAt && m === engine.gradientAccumulationSteps() - 1) setImmediate(() => process.kill(process.pid, 'SIGKILL'));
    await stepping;
  }
  losses[s] = sum / engine.gradientAccumulationSteps();
  if ((s + 1) % saveEvery === 0) await engine.saveCheckpoint(ckpt, { tag: `step${s + 1}`, clientState: { step: s + 1 } });
}
console.log(JSON.stringify({ start, losses, stale }));
engine.destroy();
await engine.dist?.destroy();
