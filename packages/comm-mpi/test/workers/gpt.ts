// One rank of the tiny GPT under ZeRO stage 2 on the backend DS_COMM_BACKEND names (mpi under
// mpirun, cpu under withWorld); prints {"rank", "backend", "losses"}.
import { tinyConfig, TINY_GPT, trainSteps } from '@ds-internal/gpt-fixtures';
import { initialize } from '@ds/core';
import { GPT } from '@ds/tensor';
import { zero } from '@ds/zero';

import { mpi } from '../../src/index.js';

const steps = Number(process.env.DS_TEST_STEPS ?? 6);
const config = tinyConfig(2, { stage: 2, reduce_bucket_size: 700, overlap_comm: true });
const { engine } = await initialize({ model: new GPT(TINY_GPT), config, plugins: [zero(), mpi()], log: () => {} });
const losses = await trainSteps(engine, 0, steps, engine.rank);
console.log(JSON.stringify({ rank: engine.rank, backend: engine.dist?.world.backend, stage: engine.zeroStage, losses }));
engine.destroy();
await engine.dist?.destroy();
