// One rank of the partition_activations check: the tiny GPT with 2-way tensor parallelism, every
// block checkpointed (activation_checkpointing {}), with partition_activations DS_TEST_PARTITION
// (and as 2 pipeline stages x 2 model ranks with an activation checkpoint interval of 1 when
// DS_TEST_STAGES=2). Prints {"held", "losses"}: the activation bytes the graph holds between the
// first forward and its backward on this rank (with stages: the most held when a stage forward
// starts during the first batch, so on stage 0 the first micro batch's checkpoints), and 6
// batches' losses.
import { batch } from '@ds-internal/gpt-fixtures';
import { initialize } from '@ds/core';
import { getRuntime, tidy, type Tensor } from '@ds/tensor';

import { GPTTensorParallel, gptPipeParallel, pipeline, TensorParallel, type PipeBatch, type PipelineEngine } from '../../src/index.js';
import { PIPE_GPT, pipeConfig } from '../fixtures.js';

const partition = process.env.DS_TEST_PARTITION === 'true';
const stages = Number(process.env.DS_TEST_STAGES ?? '0');
const rank = Number(process.env.RANK);
const world = Number(process.env.WORLD_SIZE);
const MICRO = 2;
const STEPS = 6;
const tp = new TensorParallel({ degree: 2, globalRank: rank });
const config = { ...pipeConfig(MICRO, 1), activation_checkpointing: { partition_activations: partition } };
const model = stages === 0 ? new GPTTensorParallel(PIPE_GPT, tp) : gptPipeParallel(PIPE_GPT, tp, { numStages: stages, rank, worldSize: world, activationCheckpointInterval: 1 });
const { engine } = await initialize({ model, config, plugins: [pipeline()], log: () => {} });
const tracker = getRuntime().tracker;
const losses: number[] = [];
let held = 0;
if (stages === 0) {
  for (let s = 0; s < STEPS; s++) {
    let sum = 0;
    for (let k = 0; k < MICRO; k++) {
      const { ids, targets } = batch(s, k, 0, 2);
      const before = tracker.liveBytes('cpu', 'activations');
      const loss = tidy(() => engine.forward<Tensor>(ids, targets).keep());
      if (s === 0 && k === 0) held = tracker.liveBytes('cpu', 'activations') - before;
      sum += await engine.backward(loss);
      loss.dispose();
      ids.dispose();
      targets.dispose();
      await engine.step();
    }
    losses.push(sum / MICRO);
  }
} else {
  const pipe = engine as PipelineEngine;
  for (let s = 0; s < STEPS; s++) {
    const b: PipeBatch[] = Array.from({ length: MICRO }, (_, k) => {
      const { ids, targets } = batch(s, k, 0, 2);
      return [ids, targets] as const;
    });
    const before = tracker.liveBytes('cpu', 'activations');
    const hook = s === 0 ? model.registerForwardPreHook(() => void (held = Math.max(held, tracker.liveBytes('cpu', 'activations') - before))) : null;
    losses.push(await pipe.trainBatch(b));
    hook?.remove();
    for (const [x, y] of b) (x.dispose(), y.dispose());
  }
}
console.log(JSON.stringify({ held, losses }));
engine.destroy();
await engine.dist?.destroy();
