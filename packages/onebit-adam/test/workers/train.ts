// One rank: trains a GPT under each ds_config in DS_TEST_CONFIGS (a JSON array) for DS_TEST_STEPS
// steps and prints {"runs": [{losses, val, ops}]}: this rank's per-step losses, the validation loss
// on held-out batches after the last step, and the comm ops the data-parallel group ran during the
// last DS_TEST_OPS_STEPS steps (when comms_logger is on). With DS_TEST_CKPT=<dir>:<k>, a run saves a
// checkpoint after step k, and a second engine loads it and trains steps k.. again ("resumed").
import { TINY_GPT } from '@ds-internal/gpt-fixtures';
import { initialize, type Engine } from '@ds/core';
import { GPT, noGrad, tidy, type Tensor } from '@ds/tensor';

import { onebitAdam } from '../../src/index.js';
import { noisyBatch } from './data.js';

const configs = JSON.parse(process.env.DS_TEST_CONFIGS!) as Record<string, unknown>[];
const steps = Number(process.env.DS_TEST_STEPS ?? 10);
const opsSteps = Number(process.env.DS_TEST_OPS_STEPS ?? 2);
const gpt = { ...TINY_GPT, ...(process.env.DS_TEST_GPT ? (JSON.parse(process.env.DS_TEST_GPT) as object) : {}) };
const [ckptDir, ckptStep] = process.env.DS_TEST_CKPT ? [process.env.DS_TEST_CKPT.split(':')[0]!, Number(process.env.DS_TEST_CKPT.split(':')[1])] : [undefined, 0];

/** Trains steps [from, to) on noisyBatch; this rank takes its micro-batch rows. Returns per-step losses. */
async function trainSteps(engine: Engine, from: number, to: number, rank: number): Promise<number[]> {
  const losses: number[] = [];
  const micro = engine.trainMicroBatchSizePerGpu();
  for (let s = from; s < to; s++) {
    const { ids, targets } = noisyBatch(s, rank * micro, micro, gpt.blockSize, gpt.vocabSize);
    const loss = tidy(() => engine.forward<{ loss: Tensor }>(ids, targets).loss!.keep());
    losses.push(await engine.backward(loss));
    loss.dispose();
    ids.dispose();
    targets.dispose();
    await engine.step();
  }
  return losses;
}

/** Mean loss on 8 held-out batches of 16 rows (steps nobody trains on). */
function validationLoss(engine: Engine): number {
  let sum = 0;
  const rows = 16;
  for (let k = 0; k < 8; k++) {
    const { ids, targets } = noisyBatch(1_000_000 + k, 0, rows, gpt.blockSize, gpt.vocabSize);
    sum += noGrad(() => tidy(() => (engine.forward<{ loss: Tensor }>(ids, targets).loss!.data() as Float32Array)[0]!));
    ids.dispose();
    targets.dispose();
  }
  return sum / 8;
}

/**
 * Ops waited for synchronously (the compressed all-reduce's) reach observers when their promises
 * settle on the event loop; a training loop whose awaits are all microtasks never lets them.
 */
const flushObservers = () => new Promise((resolve) => setTimeout(resolve, 50));

let dist = undefined as Engine['dist'] | undefined;
const make = async (config: Record<string, unknown>) => {
  const { engine } = await initialize({ model: new GPT(gpt), config, plugins: [onebitAdam()], log: () => {}, ...(dist !== undefined ? { dist } : {}) });
  dist = engine.dist;
  return engine;
};
const runs = [];
for (const config of configs) {
  const engine = await make(config);
  const t = (from: number, to: number) => trainSteps(engine, from, to, engine.rank);
  let losses: number[];
  let resumed: number[] | undefined;
  if (ckptDir) {
    losses = await t(0, ckptStep);
    await engine.saveCheckpoint(ckptDir, { tag: 'k' });
    losses.push(...(await t(ckptStep, steps)));
    const again = await make(config);
    await again.loadCheckpoint(ckptDir, { tag: 'k' });
    resumed = await trainSteps(again, ckptStep, steps, again.rank);
    again.destroy();
  } else {
    losses = await t(0, steps - opsSteps);
    await flushObservers();
    engine.commsLogger?.reset();
    losses.push(...(await t(steps - opsSteps, steps)));
  }
  await flushObservers();
  const ops = engine.commsLogger ? Object.fromEntries([...engine.commsLogger.stats()].map(([name, bySize]) => [name, [...bySize].map(([bytes, s]) => ({ bytes, count: s.count }))])) : undefined;
  runs.push({ losses, val: validationLoss(engine), ops, resumed });
  engine.destroy();
}
console.log(JSON.stringify({ runs }));
await dist?.destroy();
