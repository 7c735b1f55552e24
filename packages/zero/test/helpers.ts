// Shared by the tests and their worker processes: core's tiny GPT fixtures, config, batches, training loop and
// process-world helper (imported by relative path, as the brief for @ds/zero's tests asks), plus worker paths and output parsing.
export { withWorld, describeWorld } from '../../core/test/helpers/world.js';
export type { WorldResult } from '../../core/test/helpers/world.js';

export { TINY_GPT, batch, tinyConfig, trainSteps } from '../../core/test/engine/fixtures.js';

import { fileURLToPath } from 'node:url';

export function zeroWorker(name: string): string {
  return fileURLToPath(new URL(`./workers/${name}`, import.meta.url));
}

/** The last JSON line a rank printed. */
export function lastJson<T>(stdout: string): T {
  const lines = stdout.trim().split('\n').filter((l) => l.startsWith('{'));
  return JSON.parse(lines[lines.length - 1]!) as T;
}
