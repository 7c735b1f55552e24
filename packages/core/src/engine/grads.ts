// Gradient averaging across data-parallel ranks and clipping, with DeepSpeed's knobs.
import { DSUnsupportedError, type KernelTable } from '@ds/tensor';

import type { ProcessGroup, Work } from '../comm/types.js';

/**
 * DeepSpeed's clip coefficient: max_norm / (norm + 1e-6) when that is below 1, else 1 (no clipping).
 * `clip` 0 disables clipping.
 */
export function clipCoefficient(norm: number, clip: number): number {
  if (!(clip > 0) || !Number.isFinite(norm)) return 1;
  const c = clip / (norm + 1e-6);
  return c < 1 ? c : 1;
}

/**
 * Averages an fp32 gradient range over the group in place, as DeepSpeed's non-ZeRO path does:
 * prescale_gradients divides by the world size before summing; otherwise gradient_predivide_factor f
 * divides by f before and multiplies by f / world after (f = 1: a plain average).
 */
export function reduceFlat(group: ProcessGroup, kernels: KernelTable, grad: Float32Array, config: Readonly<Record<string, unknown>>): Work {
  const world = group.size;
  const n = grad.length;
  if (config.prescale_gradients === true) {
    kernels.scale('f32', grad, grad, n, 1 / world, 0);
    return group.allReduce({ dtype: 'f32', array: grad }, { op: 'sum' });
  }
  const f = typeof config.gradient_predivide_factor === 'number' ? config.gradient_predivide_factor : 1;
  if (f === 1) return group.allReduce({ dtype: 'f32', array: grad }, { op: 'avg' });
  kernels.scale('f32', grad, grad, n, 1 / f, 0);
  const work = group.allReduce({ dtype: 'f32', array: grad }, { op: 'sum' });
  // Scale back exactly once, as soon as the sum lands, however the caller waits.
  let scaled = false;
  const scaleBack = () => {
    if (scaled) return;
    scaled = true;
    kernels.scale('f32', grad, grad, n, f / world, 0);
  };
  const done = work.wait().then(scaleBack);
  return {
    op: work.op,
    seq: work.seq,
    isCompleted: () => work.isCompleted(),
    wait: () => done,
    waitSync: (timeoutMs?: number) => {
      if (!work.waitSync) throw new DSUnsupportedError(`reduceFlat: the '${group.backend}' backend of group ${group.name} cannot wait synchronously; await the Work instead`);
      work.waitSync(timeoutMs);
      scaleBack();
    },
    then: (ok, err) => done.then(ok, err),
  };
}
