import type { SchedulableOptimizer } from '../../src/schedulers/index.js';

export function fakeOptimizer(lrs: number[] = [0.1], withBetas = true): SchedulableOptimizer {
  return {
    paramGroups: lrs.map((lr) => (withBetas ? { lr, betas: [0.9, 0.999] as const } : { lr })),
    ...(withBetas ? { defaults: { betas: [0.9, 0.999] as const } } : {}),
  };
}

/** Scheduler values are computed in float64 on both sides: equal up to rounding. */
export const TOL = { rtol: 1e-12, atol: 1e-12 };
