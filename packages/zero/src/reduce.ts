// Averaging one partition unit's gradients across ranks, with DeepSpeed's knobs: reduce_scatter
// (false: a plain all-reduce of the unit), prescale_gradients and gradient_predivide_factor.
import type { ProcessGroup, Work } from '@ds/core';
import type { FloatDType, KernelTable } from '@ds/tensor';

import type { Unit } from './partition.js';

export interface UnitReduction {
  work: Work;
  /** Runs once the op has finished: the scaling that must follow a sum (predivide factor). */
  finish: () => void;
}

/**
 * Reduces `input` (the unit's `padded` gradient elements, this rank's copy) so that block `rank`
 * of it ends up holding the average over the group, in place.
 */
export function reduceUnit(
  group: ProcessGroup,
  kernels: KernelTable,
  dtype: FloatDType,
  input: Float32Array | Uint16Array,
  unit: Unit,
  config: Readonly<Record<string, unknown>>,
  reduceScatter: boolean,
): UnitReduction {
  const world = group.size;
  const own = input.subarray(group.rank * unit.block, (group.rank + 1) * unit.block);
  const f = typeof config.gradient_predivide_factor === 'number' ? config.gradient_predivide_factor : 1;
  let op: 'avg' | 'sum' = 'avg';
  let post = 1;
  if (config.prescale_gradients === true) {
    kernels.scale(dtype, input, input, input.length, 1 / world, 0);
    op = 'sum';
  } else if (f !== 1) {
    kernels.scale(dtype, input, input, input.length, 1 / f, 0);
    op = 'sum';
    post = f / world;
  }
  const buf = { dtype, array: input };
  const work = reduceScatter ? group.reduceScatter({ dtype, array: own }, buf, { op }) : group.allReduce(buf, { op });
  return { work, finish: () => (post !== 1 ? kernels.scale(dtype, own, own, own.length, post, 0) : undefined) };
}
