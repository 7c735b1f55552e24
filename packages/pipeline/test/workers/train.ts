// One rank of a pipeline run: the tiny GPT as a PipelineModule over DS_TEST_STAGES stages, trained
// for DS_TEST_STEPS batches of DS_TEST_MICRO micro batches with trainBatch(), with the precision and
// clipping of DS_TEST_RUN (fixtures.ts RunOptions); prints {"losses": [...], "norms": [...]} (the
// batch losses every rank returns, the global gradient norms), the skipped steps and the last
// batch's idle fraction.
import { batch } from '@ds-internal/gpt-fixtures';
import { initialize } from '@ds/core';

import { gptPipe, pipeline, type PipeBatch, type PipelineEngine } from '../../src/index.js';
import { PIPE_GPT, pipeConfig, runFromEnv } from '../fixtures.js';

const stages = Number(process.env.DS_TEST_STAGES);
const micro = Number(process.env.DS_TEST_MICRO);
const steps = Number(process.env.DS_TEST_STEPS);
const rank = Number(process.env.RANK);
const world = Number(process.env.WORLD_SIZE);
const data = world / stages;

const model = gptPipe(PIPE_GPT, { numStages: stages, rank, worldSize: world });
const { engine } = await initialize({ model, config: pipeConfig(micro, data, runFromEnv()), plugins: [pipeline()], log: () => {} });
const pipe = engine as PipelineEngine;
const dataRank = pipe.groups.coords.data;
const losses: number[] = [];
const norms: number[] = [];
for (let s = 0; s < steps; s++) {
  const batches: PipeBatch[] = Array.from({ length: micro }, (_, k) => {
    const { ids, targets } = batch(s, k, dataRank * 2, 2);
    return [ids, targets] as const;
  });
  losses.push(await pipe.trainBatch(batches));
  norms.push(pipe.getGlobalGradNorm());
  for (const [a, b] of batches) (a.dispose(), b.dispose());
}
const evalLoss = await pipe.evalBatch(Array.from({ length: micro }, (_, k) => {
  const { ids, targets } = batch(steps, k, dataRank * 2, 2);
  return [ids, targets] as const;
}));
console.log(JSON.stringify({ losses, norms, skipped: engine.skippedSteps, evalLoss, stage: pipe.stageId, idle: pipe.lastBatchStats?.idleFraction }));
engine.destroy();
await engine.dist?.destroy();
