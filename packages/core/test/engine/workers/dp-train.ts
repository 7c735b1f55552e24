// One rank of a data-parallel run of the tiny GPT: prints its per-step losses as JSON.
import { TINY_GPT, trainSteps } from '@ds-internal/gpt-fixtures';
import { GPT } from '@ds/tensor';

import { initialize } from '../../../src/engine/initialize.js';

const config = JSON.parse(process.env.DS_TEST_CONFIG!) as Record<string, unknown>;
const steps = Number(process.env.DS_TEST_STEPS ?? 6);
const { engine } = await initialize({ model: new GPT(TINY_GPT), config, log: () => {} });
const losses = await trainSteps(engine, 0, steps, engine.rank);
const comms = engine.commsLogger ? Object.fromEntries([...engine.commsLogger.stats()].map(([op, bySize]) => [op, [...bySize.values()].reduce((n, s) => n + s.count, 0)])) : null;
console.log(JSON.stringify({ rank: engine.rank, losses, gradNorm: engine.getGlobalGradNorm(), comms }));
engine.destroy();
await engine.dist?.destroy();
