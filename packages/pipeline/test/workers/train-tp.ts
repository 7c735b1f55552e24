// One rank of a tensor-parallel run of the tiny GPT: DS_TEST_MODEL-way tensor parallelism, as the
// plain GPTTensorParallel module under core's engine (DS_TEST_STAGES=0: forward / backward / step per
// micro batch) or as DS_TEST_STAGES pipeline stages (trainBatch, then one evalBatch). DS_TEST_RUN
// sets precision and clipping (fixtures.ts RunOptions). DS_TEST_SAVE=dir saves a checkpoint after
// each of the DS_TEST_SAVE_AT batch counts (comma-separated) and trains on; DS_TEST_LOAD=dir loads the latest checkpoint first and
// trains the batches after it. Prints {"first", "losses", "norms", "skipped", "evalLoss", "coords", "engine"}.
import { batch } from '@ds-internal/gpt-fixtures';
import { initialize } from '@ds/core';

import { GPTTensorParallel, gptPipeParallel, pipeline, TensorParallel, type PipeBatch, type PipelineEngine } from '../../src/index.js';
import { PIPE_GPT, pipeConfig, runFromEnv, runPlugins, trainMicroSteps } from '../fixtures.js';

const stages = Number(process.env.DS_TEST_STAGES);
const degree = Number(process.env.DS_TEST_MODEL);
const micro = Number(process.env.DS_TEST_MICRO);
const steps = Number(process.env.DS_TEST_STEPS);
const rank = Number(process.env.RANK);
const world = Number(process.env.WORLD_SIZE);
const saveDir = process.env.DS_TEST_SAVE;
const saveAt = (process.env.DS_TEST_SAVE_AT ?? '').split(',').filter(Boolean).map(Number);
const loadDir = process.env.DS_TEST_LOAD;
const data = world / (Math.max(stages, 1) * degree);
const run = runFromEnv();
const config = { ...pipeConfig(micro, data, run), ...(process.env.DS_TEST_PIPE_CONFIG ? { pipeline: JSON.parse(process.env.DS_TEST_PIPE_CONFIG) } : {}) };

const tp = new TensorParallel({ degree, globalRank: rank });
const rows = (s: number, k: number, dataRank: number) => batch(s, k, dataRank * 2, 2);
const losses: number[] = [];
const norms: number[] = [];
let evalLoss: number | null = null;

const model = stages === 0 ? new GPTTensorParallel(PIPE_GPT, tp) : gptPipeParallel(PIPE_GPT, tp, { numStages: stages, rank, worldSize: world });
const { engine } = await initialize({ model, config, plugins: [pipeline(), ...runPlugins(run)], log: () => {} });
const dataRank = engine.groups.coords.data;
if (loadDir) {
  const { path } = await engine.loadCheckpoint(loadDir);
  if (!path) throw new Error(`no checkpoint in ${loadDir}`);
}
const first = engine.globalSteps;
for (let s = first; s < steps; s++) {
  if (saveDir && saveAt.includes(s)) await engine.saveCheckpoint(saveDir);
  if (stages === 0) {
    const c = await trainMicroSteps(engine, 1, micro, (b, k) => rows(b, k, dataRank), s);
    losses.push(...c.losses);
    norms.push(...c.norms);
  } else {
    const pipe = engine as PipelineEngine;
    const b: PipeBatch[] = Array.from({ length: micro }, (_, k) => {
      const { ids, targets } = rows(s, k, dataRank);
      return [ids, targets] as const;
    });
    losses.push(await pipe.trainBatch(b));
    norms.push(pipe.getGlobalGradNorm());
    for (const [x, y] of b) (x.dispose(), y.dispose());
  }
}
if (stages > 0) {
  evalLoss = await (engine as PipelineEngine).evalBatch(
    Array.from({ length: micro }, (_, k) => {
      const { ids, targets } = rows(steps, k, dataRank);
      return [ids, targets] as const;
    }),
  );
}
console.log(JSON.stringify({ first, losses, norms, skipped: engine.skippedSteps, evalLoss, coords: engine.groups.coords, engine: engine.constructor.name }));
engine.destroy();
await engine.dist?.destroy();
