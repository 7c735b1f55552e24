// Shared by the tests and their worker processes: core's tiny GPT fixtures, batches, training loop and process-world helper
// (imported by relative path, as the brief for @ds/zero's tests asks), plus the configs used here.
export { withWorld, describeWorld } from '../../core/test/helpers/world.js';
export type { WorldResult } from '../../core/test/helpers/world.js';

export { TINY_GPT, batch, trainSteps } from '../../core/test/engine/fixtures.js';

import { fileURLToPath } from 'node:url';

export function zeroWorker(name: string): string {
  return fileURLToPath(new URL(`./workers/${name}`, import.meta.url));
}

/** A ds_config for the tiny GPT: bf16, gradient accumulation 2, clipping, AdamW. */
export function tinyConfig(micro: number, zero?: Record<string, unknown>): Record<string, unknown> {
  return {
    train_micro_batch_size_per_gpu: micro,
    gradient_accumulation_steps: 2,
    bf16: { enabled: true },
    gradient_clipping: 0.5,
    optimizer: { type: 'AdamW', params: { lr: 1e-2, weight_decay: 0.01 } },
    ...(zero ? { zero_optimization: zero } : {}),
  };
}

/** The last JSON line a rank printed. */
export function lastJson<T>(stdout: string): T {
  const lines = stdout.trim().split('\n').filter((l) => l.startsWith('{'));
  return JSON.parse(lines[lines.length - 1]!) as T;
}
