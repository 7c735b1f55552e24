// One rank of a pipeline run: the tiny GPT as a PipelineModule over DS_TEST_STAGES stages, trained
// for DS_TEST_STEPS batches of DS_TEST_MICRO micro batches with trainBatch(), with the precision,
// clipping and ZeRO stage of DS_TEST_RUN (fixtures.ts RunOptions); prints {"losses": [...], "norms":
// [...]} (the batch losses every rank returns, the global gradient norms), the skipped steps and the
// last batch's idle fraction.
//
// A micro batch is DS_TEST_ROWS rows (default 2) per data rank: data rank d reads rows
// [d x rows, (d + 1) x rows) of the global micro batch, so 2 data ranks of 2 rows and 1 of 4 rows
// train on the same data. DS_TEST_SAVE=dir saves a checkpoint before each of the DS_TEST_SAVE_AT
// batch counts (comma-separated); DS_TEST_LOAD=dir loads the latest checkpoint first and trains the
// batches after it ("first" in the output is the batch it started from).
import { batch } from '@ds-internal/gpt-fixtures';
import { initialize } from '@ds/core';

import { gptPipe, pipeline, type PipeBatch, type PipelineEngine } from '../../src/index.js';
import { PIPE_GPT, pipeConfig, runFromEnv, runPlugins } from '../fixtures.js';

const stages = Number(process.env.DS_TEST_STAGES);
const micro = Number(process.env.DS_TEST_MICRO);
const steps = Number(process.env.DS_TEST_STEPS);
const rank = Number(process.env.RANK);
const world = Number(process.env.WORLD_SIZE);
const data = world / stages;
const rows = Number(process.env.DS_TEST_ROWS ?? 2);
const saveDir = process.env.DS_TEST_SAVE;
const saveAt = (process.env.DS_TEST_SAVE_AT ?? '').split(',').filter(Boolean).map(Number);
const loadDir = process.env.DS_TEST_LOAD;
const run = runFromEnv();

const model = gptPipe(PIPE_GPT, { numStages: stages, rank, worldSize: world });
const { engine } = await initialize({ model, config: pipeConfig(micro, data, run, rows), plugins: [pipeline(), ...runPlugins(run)], log: () => {} });
const pipe = engine as PipelineEngine;
const dataRank = pipe.groups.coords.data;
if (loadDir) {
  const { path } = await engine.loadCheckpoint(loadDir);
  if (!path) throw new Error(`no checkpoint in ${loadDir}`);
}
const first = engine.globalSteps;
const losses: number[] = [];
const norms: number[] = [];
for (let s = first; s < steps; s++) {
  if (saveDir && saveAt.includes(s)) await engine.saveCheckpoint(saveDir);
  const batches: PipeBatch[] = Array.from({ length: micro }, (_, k) => {
    const { ids, targets } = batch(s, k, dataRank * rows, rows);
    return [ids, targets] as const;
  });
  losses.push(await pipe.trainBatch(batches));
  norms.push(pipe.getGlobalGradNorm());
  for (const [a, b] of batches) (a.dispose(), b.dispose());
}
const evalLoss = await pipe.evalBatch(Array.from({ length: micro }, (_, k) => {
  const { ids, targets } = batch(steps, k, dataRank * rows, rows);
  return [ids, targets] as const;
}));
console.log(JSON.stringify({ first, losses, norms, skipped: engine.skippedSteps, evalLoss, stage: pipe.stageId, zeroStage: engine.zeroStage, idle: pipe.lastBatchStats?.idleFraction }));
engine.destroy();
await engine.dist?.destroy();
