// One rank of a tensor-parallel run of the tiny GPT: DS_TEST_MODEL-way tensor parallelism, as the
// plain GPTTensorParallel module under core's engine (DS_TEST_STAGES=0: forward / backward / step per
// micro batch) or as DS_TEST_STAGES pipeline stages (trainBatch, then one evalBatch). Prints
// {"losses": [...], "evalLoss", "coords", "engine"} (and, for the plain module, what saveCheckpoint said).
import { batch } from '@ds-internal/gpt-fixtures';
import { initialize } from '@ds/core';

import { GPTTensorParallel, gptPipeParallel, pipeline, TensorParallel, type PipeBatch, type PipelineEngine } from '../../src/index.js';
import { PIPE_GPT, pipeConfig, trainMicroSteps } from '../fixtures.js';

const stages = Number(process.env.DS_TEST_STAGES);
const degree = Number(process.env.DS_TEST_MODEL);
const micro = Number(process.env.DS_TEST_MICRO);
const steps = Number(process.env.DS_TEST_STEPS);
const rank = Number(process.env.RANK);
const world = Number(process.env.WORLD_SIZE);
const data = world / (Math.max(stages, 1) * degree);
const config = { ...pipeConfig(micro, data), ...(process.env.DS_TEST_PIPE_CONFIG ? { pipeline: JSON.parse(process.env.DS_TEST_PIPE_CONFIG) } : {}) };

const tp = new TensorParallel({ degree, globalRank: rank });
const rows = (s: number, k: number, dataRank: number) => batch(s, k, dataRank * 2, 2);
const losses: number[] = [];
let evalLoss: number | null = null;

if (stages === 0) {
  const model = new GPTTensorParallel(PIPE_GPT, tp);
  const { engine } = await initialize({ model, config, plugins: [pipeline()], log: () => {} });
  const dataRank = engine.groups.coords.data;
  losses.push(...(await trainMicroSteps(engine, steps, micro, (s, k) => rows(s, k, dataRank))));
  const checkpoint = await engine.saveCheckpoint('/nonexistent').then(
    () => 'saved',
    (err: Error) => err.message,
  );
  console.log(JSON.stringify({ losses, evalLoss, coords: engine.groups.coords, engine: engine.constructor.name, checkpoint }));
  engine.destroy();
  await engine.dist?.destroy();
} else {
  const model = gptPipeParallel(PIPE_GPT, tp, { numStages: stages, rank, worldSize: world });
  const { engine } = await initialize({ model, config, plugins: [pipeline()], log: () => {} });
  const pipe = engine as PipelineEngine;
  const dataRank = pipe.groups.coords.data;
  const batches = (s: number): PipeBatch[] =>
    Array.from({ length: micro }, (_, k) => {
      const { ids, targets } = rows(s, k, dataRank);
      return [ids, targets] as const;
    });
  for (let s = 0; s < steps; s++) {
    const b = batches(s);
    losses.push(await pipe.trainBatch(b));
    for (const [x, y] of b) (x.dispose(), y.dispose());
  }
  evalLoss = await pipe.evalBatch(batches(steps));
  console.log(JSON.stringify({ losses, evalLoss, coords: pipe.groups.coords, engine: engine.constructor.name }));
  engine.destroy();
  await engine.dist?.destroy();
}
