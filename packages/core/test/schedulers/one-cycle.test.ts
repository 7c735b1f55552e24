import { describe, expect, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';

import { LRRangeTest, OneCycle, createScheduler } from '../../src/schedulers/index.js';
import { DSConfigError } from '../../src/errors.js';
import { fakeOptimizer, TOL } from './helpers.js';

// Independent statement of DeepSpeed's OneCycle: scale factor from the position in the cycle.
function oneCycleScale(last: number, first: number, second: number): number {
  const total = first + second;
  const it = last + 1;
  const x = 1 + it / total - Math.floor(1 + it / total);
  const r = first / total;
  return x <= r ? x / r : (x - 1) / (r - 1);
}

describe('OneCycle', () => {
  const params = {
    cycle_min_lr: 0.01,
    cycle_max_lr: 0.1,
    cycle_first_step_size: 10,
    decay_step_size: 5,
    decay_lr_rate: 0.5,
    cycle_min_mom: 0.8,
    cycle_max_mom: 0.9,
    decay_mom_rate: 0.1,
  };

  it('sets min lr and (min_mom, 0.99) betas at construction', () => {
    const opt = fakeOptimizer([1]);
    new OneCycle(opt, params);
    expect(opt.paramGroups[0]).toEqual({ lr: 0.01, betas: [0.8, 0.99] });
  });

  it('cycles lr up and down and momentum inversely (hand-checked points)', () => {
    const opt = fakeOptimizer([1]);
    const s = new OneCycle(opt, params);
    const lr: number[] = [];
    const mom: number[] = [];
    for (let k = 0; k < 30; k++) {
      s.step();
      lr.push(opt.paramGroups[0]!.lr);
      mom.push(opt.paramGroups[0]!.betas![0]);
    }
    expect(lr[4]).toBeCloseTo(0.055, 15); // it = 5: half way up
    expect(lr[9]).toBeCloseTo(0.1, 15); // peak
    expect(mom[9]).toBeCloseTo(0.8, 15); // momentum at its lowest at the lr peak
    expect(lr[14]).toBeCloseTo(0.055, 15);
    expect(lr[19]).toBeCloseTo(0.01, 15); // last iteration of the cycle
    expect(lr[24]).toBeCloseTo(0.01 / 1.5, 15); // 5 steps into decay: interval 1
    expect(mom[24]).toBeCloseTo(0.9 * 1.1, 15);
    expect(opt.paramGroups[0]!.betas![1]).toBe(0.99);
    const expectedLr = Array.from({ length: 30 }, (_, last) =>
      last < 20 ? 0.01 + 0.09 * oneCycleScale(last, 10, 10) : 0.01 / (1 + 0.5 * ((last - 20 + 1) / 5)),
    );
    const expectedMom = Array.from({ length: 30 }, (_, last) =>
      last < 20 ? 0.9 - 0.1 * oneCycleScale(last, 10, 10) : 0.9 * (1 + 0.1 * ((last - 20 + 1) / 5)),
    );
    expectClose(lr, expectedLr, TOL);
    expectClose(mom, expectedMom, TOL);
    expect(s.getMom()).toEqual([[mom[29], 0.99]]);
  });

  it('handles an asymmetric cycle and no decay when decay_step_size is 0', () => {
    const s = new OneCycle(fakeOptimizer(), { cycle_min_lr: 0, cycle_max_lr: 1, cycle_first_step_size: 4, cycle_second_step_size: 12, decay_lr_rate: 0.9 });
    const lrs: number[] = [];
    for (let k = 0; k < 20; k++) {
      s.step();
      lrs.push(s.getLastLr()[0]!);
    }
    expectClose(lrs, Array.from({ length: 20 }, (_, last) => (last < 16 ? oneCycleScale(last, 4, 12) : 0)), TOL);
    expect(lrs[3]).toBeCloseTo(1, 15);
    expect(lrs[9]).toBeCloseTo(0.5, 15); // it = 10: 6 of 12 steps down
  });

  it('disables momentum cycling when the optimizer has no betas', () => {
    const warnings: string[] = [];
    const opt = fakeOptimizer([1], false);
    const s = new OneCycle(opt, { cycle_min_lr: 0.1, cycle_max_lr: 1 }, { warn: (m) => warnings.push(m) });
    s.step();
    expect(s.cycleMomentum).toBe(false);
    expect(s.getMom()).toBeNull();
    expect(opt.paramGroups[0]!.betas).toBeUndefined();
    expect(warnings[0]).toMatch(/cycle_momentum is disabled/);
  });

  it('requires cycle_min_lr and cycle_max_lr', () => {
    try {
      new OneCycle(fakeOptimizer(), {} as never);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(DSConfigError);
      expect((err as DSConfigError).problems.map((p) => p.path).sort()).toEqual(['scheduler.params.cycle_max_lr', 'scheduler.params.cycle_min_lr']);
    }
  });
});

describe('LRRangeTest', () => {
  it('grows continuously or in stairs', () => {
    const cont = new LRRangeTest(fakeOptimizer(), { lr_range_test_min_lr: 1e-3, lr_range_test_step_size: 10, lr_range_test_step_rate: 2 });
    const stairs = new LRRangeTest(fakeOptimizer(), { lr_range_test_min_lr: 1e-3, lr_range_test_step_size: 10, lr_range_test_step_rate: 2, lr_range_test_staircase: true });
    expect(cont.getLastLr()).toEqual([1e-3]);
    const a: number[] = [];
    const b: number[] = [];
    for (let k = 0; k < 25; k++) {
      cont.step();
      stairs.step();
      a.push(cont.getLastLr()[0]!);
      b.push(stairs.getLastLr()[0]!);
    }
    expectClose(a, Array.from({ length: 25 }, (_, it) => 1e-3 * (1 + (2 * (it + 1)) / 10)), TOL);
    expectClose(b, Array.from({ length: 25 }, (_, it) => 1e-3 * (1 + 2 * Math.floor((it + 1) / 10))), TOL);
    expect(a[9]).toBeCloseTo(3e-3, 15);
    expect(b[8]).toBe(1e-3);
    expect(b[9]).toBeCloseTo(3e-3, 15);
  });

  it('uses DeepSpeed defaults', () => {
    const s = new LRRangeTest(fakeOptimizer());
    expect([s.minLrs[0], s.stepSize, s.stepRate, s.staircase]).toEqual([1e-3, 2000, 1, false]);
  });
});

describe('createScheduler', () => {
  it('builds each type from {type, params} with defaults', () => {
    const opt = fakeOptimizer();
    expect(createScheduler(opt, { type: 'WarmupLR' })).toMatchObject({ warmupNumSteps: 1000, warmupType: 'log', maxLrs: [0.001] });
    expect(createScheduler(opt, { type: 'WarmupDecayLR', params: { total_num_steps: 10 } })).toMatchObject({ totalNumSteps: 10 });
    expect(createScheduler(opt, { type: 'WarmupCosineLR', params: { total_num_steps: 2000 } })).toMatchObject({ cosMinRatio: 0.0001 });
    expect(createScheduler(opt, { type: 'OneCycle', params: { cycle_min_lr: 0, cycle_max_lr: 1 } })).toMatchObject({ totalSize: 4000, decayStepSize: 0 });
    expect(createScheduler(opt, { type: 'LRRangeTest' })).toBeInstanceOf(LRRangeTest);
  });

  it('names the nearest type and rejects unknown params', () => {
    expect(() => createScheduler(fakeOptimizer(), { type: 'WarmupLr' })).toThrow(/did you mean 'WarmupLR'/);
    expect(() => createScheduler(fakeOptimizer(), { type: 'WarmupLR', params: { warmup_max: 1 } })).toThrow(/warmup_max/);
  });
});
