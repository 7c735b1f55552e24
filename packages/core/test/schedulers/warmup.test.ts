import { describe, expect, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';

import { DSConfigError } from '../../src/errors.js';
import { BaseLRScheduler, WarmupCosineLR, WarmupDecayLR, WarmupLR } from '../../src/schedulers/index.js';
import { fakeOptimizer, TOL } from './helpers.js';

// Expected values are written from DeepSpeed's formulas (docs + lr_schedules.py), independently of
// the implementation: `it` is last_batch_iteration after the k-th step() (it = k - 1).
function warmupGamma(type: 'log' | 'linear', it: number, n: number): number {
  return type === 'log' ? Math.log(it + 1) / Math.log(n) : it / n;
}

function runLrs(s: { step(): void; getLastLr(): number[] }, steps: number): number[] {
  const out: number[] = [];
  for (let k = 0; k < steps; k++) {
    s.step();
    out.push(s.getLastLr()[0]!);
  }
  return out;
}

describe('WarmupLR', () => {
  it('getLastLr of a scheduler that never stepped is a DSError that says to call step()', () => {
    class Constant extends BaseLRScheduler {
      constructor() {
        super(fakeOptimizer(), -1, {});
      }
      getLr(): number[] {
        return [0.1];
      }
    }
    const s = new Constant();
    expect(() => s.getLastLr()).toThrow(expect.objectContaining({ code: 'DS_SCHEDULER_NOT_STEPPED', message: expect.stringMatching(/^Constant.getLastLr\(\): no learning rate yet; call step\(\) first/) }));
    s.step();
    expect(s.getLastLr()).toEqual([0.1]);
  });

  it('starts at warmup_min_lr and follows the log curve to warmup_max_lr (hand-checked points)', () => {
    const opt = fakeOptimizer();
    const s = new WarmupLR(opt, { warmup_min_lr: 0.01, warmup_max_lr: 0.1, warmup_num_steps: 10 });
    expect(opt.paramGroups[0]!.lr).toBe(0.01);
    const lrs = runLrs(s, 12);
    expect(lrs[0]).toBeCloseTo(0.01, 15); // it=0: ln(1) = 0
    expect(lrs[4]).toBeCloseTo(0.01 + 0.09 * 0.69897000433601886, 12); // it=4: log10(5)
    expect(lrs[9]).toBeCloseTo(0.1, 15); // it=9: ln(10)/ln(10)
    expect(lrs[11]).toBe(0.1); // after warmup
  });

  it('linear warmup matches it / N over a table', () => {
    const opt = fakeOptimizer();
    const s = new WarmupLR(opt, { warmup_min_lr: 0, warmup_max_lr: 0.5, warmup_num_steps: 8, warmup_type: 'linear' });
    const expected = Array.from({ length: 12 }, (_, it) => (it < 8 ? 0.5 * warmupGamma('linear', it, 8) : 0.5));
    expectClose(runLrs(s, 12), expected, TOL);
    expect(opt.paramGroups[0]!.lr).toBe(0.5);
  });

  it('clamps warmup_num_steps to 2 and falls back to log (with a warning) on an unknown warmup_type', () => {
    const warnings: string[] = [];
    const s = new WarmupLR(fakeOptimizer(), { warmup_max_lr: 1, warmup_num_steps: 1, warmup_type: 'cubic' }, { warn: (m) => warnings.push(m) });
    expect(s.warmupNumSteps).toBe(2);
    expect(s.warmupType).toBe('log');
    expect(warnings[0]).toMatch(/unknown warmup_type: cubic/);
    expectClose(runLrs(s, 3), [0, Math.log(2) / Math.log(2), 1], TOL);
  });

  it('takes one value per param group', () => {
    const opt = fakeOptimizer([1, 1]);
    const s = new WarmupLR(opt, { warmup_min_lr: [0, 0.1], warmup_max_lr: [1, 0.2], warmup_num_steps: 4, warmup_type: 'linear' });
    s.step(2);
    expectClose(s.getLastLr(), [0.5, 0.15], TOL);
    expect(() => new WarmupLR(opt, { warmup_max_lr: [1, 2, 3] })).toThrow(DSConfigError);
  });

  it('resumes from stateDict exactly where it left off', () => {
    const a = new WarmupLR(fakeOptimizer(), { warmup_max_lr: 0.3, warmup_num_steps: 20 });
    runLrs(a, 7);
    const b = new WarmupLR(fakeOptimizer(), { warmup_max_lr: 0.3, warmup_num_steps: 20 });
    b.loadStateDict(a.stateDict());
    expect(b.stateDict()).toEqual({ last_batch_iteration: 6 });
    expectClose(runLrs(b, 5), runLrs(a, 5), TOL);
  });
});

describe('WarmupDecayLR', () => {
  it('warms up, then decays linearly to 0 at total_num_steps', () => {
    const min = 0.01;
    const max = 0.11;
    const s = new WarmupDecayLR(fakeOptimizer(), { total_num_steps: 20, warmup_min_lr: min, warmup_max_lr: max, warmup_num_steps: 10, warmup_type: 'linear' });
    const expected = Array.from({ length: 25 }, (_, it) => {
      const gamma = it < 10 ? it / 10 : Math.max(0, (20 - it) / Math.max(1, 20 - 10));
      return min + (max - min) * gamma;
    });
    const lrs = runLrs(s, 25);
    expectClose(lrs, expected, TOL);
    expect(lrs[15]).toBeCloseTo(0.06, 15); // (20 - 15) / 10 = 0.5
    expect(lrs[24]).toBeCloseTo(min, 15);
  });

  it('warns when total_num_steps is shorter than the warmup', () => {
    const warnings: string[] = [];
    new WarmupDecayLR(fakeOptimizer(), { total_num_steps: 5, warmup_num_steps: 10 }, { warn: (m) => warnings.push(m) });
    expect(warnings).toEqual(['total_num_steps 5 is less than warmup_num_steps 10']);
  });

  it('requires total_num_steps', () => {
    expect(() => new WarmupDecayLR(fakeOptimizer(), {} as never)).toThrow(/total_num_steps/);
  });
});

describe('WarmupCosineLR', () => {
  it('scales the optimizer lr by the warmup ratio, then a cosine down to cos_min_ratio', () => {
    const opt = fakeOptimizer([0.1]);
    const s = new WarmupCosineLR(opt, { total_num_steps: 100, warmup_num_steps: 10, warmup_min_ratio: 0.1, cos_min_ratio: 0.01, warmup_type: 'linear' });
    expect(opt.paramGroups[0]!.lr).toBe(0);
    const lrs = runLrs(s, 100);
    expect(lrs[5]).toBeCloseTo(0.1 * (0.1 + 0.5 * 0.9), 15); // it=5: w = 0.5
    expect(lrs[54]).toBeCloseTo(0.1 * (0.01 + 0.99 * 0.5), 15); // it=54: cos(pi/2) = 0
    expect(lrs[99]).toBeCloseTo(0.1 * 0.01, 15); // it=99: cos(pi) = -1
    const expected = Array.from({ length: 100 }, (_, it) => {
      if (it < 10) return 0.1 * (0.1 + (it / 10) * 0.9);
      const c = (1 + Math.cos((Math.PI * (it - 10 + 1)) / 90)) / 2;
      return 0.1 * Math.max(0, 0.01 + 0.99 * c);
    });
    expectClose(lrs, expected, TOL);
  });

  it('uses log warmup by default and keeps each group its own base lr', () => {
    const opt = fakeOptimizer([0.1, 0.4]);
    const s = new WarmupCosineLR(opt, { total_num_steps: 50 });
    s.step(499);
    const w = Math.log(500) / Math.log(1000);
    expectClose(s.getLastLr(), [0.1 * w, 0.4 * w], TOL);
  });

  it('rejects a warmup as long as the whole schedule and an unknown warmup_type', () => {
    expect(() => new WarmupCosineLR(fakeOptimizer(), { total_num_steps: 10, warmup_num_steps: 10 })).toThrow(/zero length/);
    expect(() => new WarmupCosineLR(fakeOptimizer(), { total_num_steps: 100, warmup_type: 'cubic' as 'log' })).toThrow(DSConfigError);
  });
});
