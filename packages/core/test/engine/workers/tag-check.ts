// One rank saving a checkpoint under a tag of its own (`t<rank>`) with the config's
// checkpoint.tag_validation: prints whether the save failed and what rank 0 logged, as JSON.
import { TINY_GPT, tinyConfig } from '@ds-internal/gpt-fixtures';
import { GPT } from '@ds/tensor';

import { initialize } from '../../../src/engine/initialize.js';

const logs: string[] = [];
const config = { ...tinyConfig(1), checkpoint: { tag_validation: process.env.DS_TEST_TAG_VALIDATION! } };
const { engine } = await initialize({ model: new GPT(TINY_GPT), config, log: (m) => logs.push(m) });
let error: string | null = null;
try {
  await engine.saveCheckpoint(process.env.DS_TEST_DIR!, { tag: `t${engine.rank}` });
} catch (err) {
  error = `${(err as Error).name}: ${(err as Error).message}`;
}
console.log(JSON.stringify({ rank: engine.rank, error, warnings: logs.filter((l) => l.startsWith('warning: checkpoint tag')) }));
engine.destroy();
await engine.dist?.destroy();
