// One rank of a script written as a new user writes it: initialize, train, save a checkpoint, and end,
// without engine.destroy() or dist.destroy(). The process must exit by itself (exit code 0).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { TINY_GPT, tinyConfig, trainSteps } from '@ds-internal/gpt-fixtures';
import { GPT } from '@ds/tensor';

import { initialize } from '../../../src/engine/initialize.js';

const { engine } = await initialize({ model: new GPT(TINY_GPT), config: tinyConfig(1), log: () => {} });
const losses = await trainSteps(engine, 0, 2, engine.rank);
// Rank 1 lingers, so rank 0 reaches its end first and must keep serving the store until rank 1 has left.
if (engine.rank === 1) await new Promise((r) => setTimeout(r, 1500));
await engine.saveCheckpoint(process.env.DS_TEST_DIR ?? mkdtempSync(join(tmpdir(), 'ds-no-destroy-')));
console.log(JSON.stringify({ rank: engine.rank, losses }));
