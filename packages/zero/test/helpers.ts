// Shared by the tests and their worker processes: core's tiny GPT fixtures and process-world helper
// (imported by relative path, as the brief for @ds/zero's tests asks), plus the configs used here.
export { withWorld, describeWorld } from '../../core/test/helpers/world.js';
export type { WorldResult } from '../../core/test/helpers/world.js';

import { fileURLToPath } from 'node:url';

import type { Engine } from '@ds/core';
import { fromArray, tidy, type Tensor } from '@ds/tensor';

/** The same tiny GPT as core's engine tests. */
export const TINY_GPT = { vocabSize: 32, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 16, seed: 3 };

/** Row `index` of the global batch of (step, micro): the same numbers whatever the rank split (as core's fixtures). */
function sample(step: number, micro: number, index: number, t: number, vocab: number): { ids: number[]; targets: number[] } {
  const ids: number[] = [];
  const targets: number[] = [];
  for (let i = 0; i < t; i++) {
    const v = (step * 7 + micro * 3 + index * 11 + i * 5) % (vocab - 1);
    ids.push(v);
    targets.push((v * 3 + 1) % vocab);
  }
  return { ids, targets };
}

export function batch(step: number, micro: number, first: number, rows: number, t = 8, vocab = 32): { ids: Tensor; targets: Tensor } {
  const ids: number[] = [];
  const targets: number[] = [];
  for (let r = first; r < first + rows; r++) {
    const s = sample(step, micro, r, t, vocab);
    ids.push(...s.ids);
    targets.push(...s.targets);
  }
  return { ids: fromArray(ids, [rows, t], { dtype: 'i32' }), targets: fromArray(targets, [rows, t], { dtype: 'i32' }) };
}

/** Trains steps [from, to); this rank takes its rows of each micro batch. Returns per-step mean losses. */
export async function trainSteps(engine: Engine, from: number, to: number, rank = 0, t = 8, vocab = 32): Promise<number[]> {
  const losses: number[] = [];
  const micro = engine.trainMicroBatchSizePerGpu();
  for (let s = from; s < to; s++) {
    let sum = 0;
    for (let m = 0; m < engine.gradientAccumulationSteps(); m++) {
      const { ids, targets } = batch(s, m, rank * micro, micro, t, vocab);
      const loss = tidy(() => engine.forward<{ loss: Tensor }>(ids, targets).loss!.keep());
      sum += await engine.backward(loss);
      loss.dispose();
      ids.dispose();
      targets.dispose();
      await engine.step();
    }
    losses.push(sum / engine.gradientAccumulationSteps());
  }
  return losses;
}

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
