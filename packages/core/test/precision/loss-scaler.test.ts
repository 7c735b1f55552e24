import { describe, expect, it } from 'vitest';

import { isDSError } from '@ds/tensor';

import { loadConfig } from '../../src/config/index.js';
import { DSConfigError } from '../../src/errors.js';
import { DynamicLossScaler, StaticLossScaler, createLossScaler, resolvePrecision } from '../../src/precision/index.js';
import { thrown } from '../helpers/config.js';

type Trace = Array<{ scale: number; hysteresis: number; skipped: boolean }>;

function run(scaler: DynamicLossScaler, overflows: readonly boolean[]): Trace {
  return overflows.map((o) => {
    const skipped = scaler.update(o);
    return { scale: scaler.lossScale, hysteresis: scaler.remainingHysteresis, skipped };
  });
}

const O = true;
const C = false;

describe('DynamicLossScaler', () => {
  it('uses DeepSpeed defaults: 2^16, window 1000, hysteresis 2, min 1', () => {
    const s = new DynamicLossScaler();
    expect([s.lossScale, s.scaleWindow, s.hysteresis, s.minScale, s.scaleFactor, s.consecutiveHysteresis]).toEqual([65536, 1000, 2, 1, 2, false]);
  });

  it('with hysteresis 2: first overflow only spends hysteresis, the second halves the scale; the window doubles it back', () => {
    const s = new DynamicLossScaler({ initScale: 1024, scaleWindow: 4, hysteresis: 2 });
    // iter:          0  1  2  3  4  5  6  7  8
    const trace = run(s, [O, O, C, C, C, C, O, C, O]);
    expect(trace).toEqual([
      { scale: 1024, hysteresis: 1, skipped: true }, // hysteresis 2 -> 1, scale kept
      { scale: 512, hysteresis: 1, skipped: true }, // hysteresis used up: halve
      { scale: 512, hysteresis: 1, skipped: false }, // 1 clean since overflow at iter 1
      { scale: 512, hysteresis: 1, skipped: false },
      { scale: 512, hysteresis: 1, skipped: false },
      { scale: 1024, hysteresis: 2, skipped: false }, // (5 - 1) % 4 == 0: double and refill
      { scale: 1024, hysteresis: 1, skipped: true },
      { scale: 1024, hysteresis: 1, skipped: false }, // not refilled without consecutive_hysteresis
      { scale: 512, hysteresis: 1, skipped: true }, // so this overflow halves at once
    ]);
  });

  it('with consecutive_hysteresis: any clean step refills the hysteresis', () => {
    const s = new DynamicLossScaler({ initScale: 1024, scaleWindow: 4, hysteresis: 2, consecutiveHysteresis: true });
    const trace = run(s, [O, C, O, C, O, O]);
    expect(trace.map((t) => [t.scale, t.hysteresis])).toEqual([
      [1024, 1],
      [1024, 2], // refilled by the clean step
      [1024, 1], // so this overflow is absorbed too
      [1024, 2],
      [1024, 1],
      [512, 1], // two overflows in a row: halved
    ]);
  });

  it('with hysteresis 1 every overflow halves, and growth waits a full window after the last overflow', () => {
    const s = new DynamicLossScaler({ initScale: 256, scaleWindow: 3, hysteresis: 1 });
    const trace = run(s, [C, C, C, O, C, C, C, C, C, C]);
    expect(trace.map((t) => t.scale)).toEqual([256, 256, 512, 256, 256, 256, 512, 512, 512, 1024]);
  });

  it('clamps at min_loss_scale and fails once an overflow happens there', () => {
    const s = new DynamicLossScaler({ initScale: 8, minScale: 3, hysteresis: 1, scaleWindow: 100 });
    expect(run(s, [O, O]).map((t) => t.scale)).toEqual([4, 3]);
    let caught: unknown;
    try {
      s.update(true);
    } catch (err) {
      caught = err;
    }
    expect(isDSError(caught)).toBe(true);
    expect((caught as Error).message).toBe('Current loss scale already at minimum - cannot decrease scale anymore. Exiting run.');
    const lenient = new DynamicLossScaler({ initScale: 2, minScale: 1, hysteresis: 1, raiseErrorAtMinScale: false });
    expect(run(lenient, [O, O, O]).map((t) => t.scale)).toEqual([1, 1, 1]);
  });

  it('round-trips its state', () => {
    const a = new DynamicLossScaler({ initScale: 64, scaleWindow: 2, hysteresis: 3 });
    run(a, [O, C, O]);
    const b = new DynamicLossScaler({ initScale: 64, scaleWindow: 2, hysteresis: 3 });
    b.loadStateDict(a.stateDict());
    const seq = [C, C, O, O, C, C, C];
    expect(run(b, seq)).toEqual(run(a, seq));
    expect(() => b.loadStateDict({ cur_scale: 'x' } as never)).toThrow(/cur_scale/);
  });
});

describe('StaticLossScaler and createLossScaler', () => {
  it('keeps a static scale and still skips overflowed steps', () => {
    const s = new StaticLossScaler(128);
    expect([s.update(true), s.update(false), s.lossScale, s.dynamic]).toEqual([true, false, 128, false]);
  });

  it('builds the scaler the config selects', () => {
    const dyn = createLossScaler(loadConfig({ train_batch_size: 1, fp16: { enabled: true, initial_scale_power: 12, hysteresis: 3, loss_scale_window: 50 } }).config);
    expect(dyn).toBeInstanceOf(DynamicLossScaler);
    expect([dyn.lossScale, (dyn as DynamicLossScaler).hysteresis, (dyn as DynamicLossScaler).scaleWindow]).toEqual([4096, 3, 50]);
    const tuned = createLossScaler(loadConfig({ train_batch_size: 1, fp16: { enabled: true, consecutive_hysteresis: true, min_loss_scale: 8 } }).config) as DynamicLossScaler;
    expect([tuned.consecutiveHysteresis, tuned.minScale]).toEqual([true, 8]);
    const fixed = createLossScaler(loadConfig({ train_batch_size: 1, fp16: { enabled: true, loss_scale: 256 } }).config);
    expect([fixed.dynamic, fixed.lossScale]).toEqual([false, 256]);
    const bf16 = loadConfig({ train_batch_size: 1, bf16: { enabled: true } }).config;
    expect([createLossScaler(bf16).lossScale, resolvePrecision(bf16).dtype]).toEqual([1, 'bf16']);
    expect(resolvePrecision(loadConfig({ train_batch_size: 1 }).config).dtype).toBe('fp32');
  });

  it('rejects bad options with a DSConfigError naming the ds_config key they come from', () => {
    const window = thrown(() => new DynamicLossScaler({ scaleWindow: 0 }), DSConfigError);
    expect(window.message).toBe('DynamicLossScaler: scaleWindow must be an integer >= 1, got 0 (set by fp16.loss_scale_window in a ds_config)');
    expect(window.problems.map((p) => p.path)).toEqual(['fp16.loss_scale_window']);
    expect(thrown(() => new DynamicLossScaler({ scaleFactor: -2 }), DSConfigError).problems[0]!.path).toBe('DynamicLossScaler.scaleFactor');
    expect(thrown(() => new StaticLossScaler(Infinity), DSConfigError).problems[0]!.path).toBe('fp16.loss_scale');
    const both = thrown(() => resolvePrecision({ fp16: { enabled: true }, bf16: { enabled: true } }), DSConfigError);
    expect(both.message).toMatch(/cannot be simultaneously enabled; set bf16.enabled or fp16.enabled to false/);
  });
});
