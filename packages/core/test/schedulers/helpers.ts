import { expect } from 'vitest';

import type { SchedulableOptimizer } from '../../src/schedulers/index.js';

export function fakeOptimizer(lrs: number[] = [0.1], withBetas = true): SchedulableOptimizer {
  return {
    paramGroups: lrs.map((lr) => (withBetas ? { lr, betas: [0.9, 0.999] as const } : { lr })),
    ...(withBetas ? { defaults: { betas: [0.9, 0.999] as const } } : {}),
  };
}

/** Element-by-element comparison, printing the first mismatches and the largest difference. */
export function expectClose(actual: readonly number[], expected: readonly number[], tol = 1e-12): void {
  expect(actual.length).toBe(expected.length);
  const bad: string[] = [];
  let maxDiff = 0;
  actual.forEach((a, i) => {
    const d = Math.abs(a - expected[i]!);
    maxDiff = Math.max(maxDiff, d);
    if (d > tol * Math.max(1, Math.abs(expected[i]!))) bad.push(`[${i}] got ${a}, expected ${expected[i]}`);
  });
  expect(bad.slice(0, 5), `max diff ${maxDiff}`).toEqual([]);
}
