// Each optimizer against its update rule written out independently in float64, over several steps.
import { describe, expect, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';
import { f32ToBf16, f32ToF16, getRuntime } from '@ds/tensor';

import { loadConfig } from '../../src/config/index.js';
import { DSConfigError } from '../../src/errors.js';
import { createCoreOptimizer } from '../../src/optim/factory.js';
import { CORE_OPTIMIZER_SPECS } from '../../src/optim/params.js';
import { Sgd } from '../../src/optim/sgd.js';
import type { OptimizerSlot } from '../../src/optim/types.js';
import { thrown } from '../helpers/config.js';

// Every optimizer runs its update on the kernel table, here the cpu one.
const ctx = { kernels: getRuntime().kernels('cpu') };

const P0 = [0.5, -1.25, 2, 0.0, 3.5];
const GRADS = [
  [0.1, -0.2, 0.3, 0.05, -1],
  [0.2, 0.1, -0.4, 0.0, 0.5],
  [-0.3, 0.25, 0.1, -0.05, 0.2],
];

function slot(master: Float32Array, grad: number[], out16?: Uint16Array): OptimizerSlot {
  return { master, grad: Float32Array.from(grad), gradDtype: 'f32', group: 0, ...(out16 ? { out16, out16Dtype: 'bf16' as const } : {}) };
}

/** f32 parameters against the float64 rule: a few f32 roundings per step. */
const TOL = { rtol: 1e-5, atol: 1e-5 };

describe('SGD', () => {
  it('momentum + dampening + weight decay match torch.optim.SGD', () => {
    const opt = createCoreOptimizer(ctx, 'sgd', { lr: 0.1, momentum: 0.9, dampening: 0.1, weight_decay: 0.01 })!;
    const p = Float32Array.from(P0);
    const ref = [...P0];
    const buf = new Array(P0.length).fill(0);
    GRADS.forEach((g, step) => {
      opt.step([slot(p, g)], { gradScale: 0.5 });
      for (let i = 0; i < ref.length; i++) {
        const d = g[i]! * 0.5 + 0.01 * ref[i]!;
        buf[i] = step === 0 ? d : 0.9 * buf[i] + 0.9 * d;
        ref[i] = ref[i]! - 0.1 * buf[i];
      }
    });
    expectClose(p, ref, TOL);
  });

  it('constructed directly, nesterov without momentum is a DSConfigError naming the key', () => {
    const err = thrown(() => new Sgd(ctx, [{ lr: 0.1, weightDecay: 0 }], { momentum: 0, dampening: 0, nesterov: true }), DSConfigError);
    expect(err.message).toMatch(/^SGD: nesterov momentum requires momentum > 0 and dampening = 0, got momentum 0 and dampening 0; set optimizer.params.momentum/);
    expect(err.problems.map((p) => p.path)).toEqual(['optimizer.params.nesterov']);
  });

  it('nesterov uses the look-ahead gradient', () => {
    const opt = createCoreOptimizer(ctx, 'SGD', { lr: 0.05, momentum: 0.5, nesterov: true })!;
    const p = Float32Array.from(P0);
    const ref = [...P0];
    const buf = new Array(P0.length).fill(0);
    GRADS.forEach((g, step) => {
      opt.step([slot(p, g)], { gradScale: 1 });
      for (let i = 0; i < ref.length; i++) {
        buf[i] = step === 0 ? g[i]! : 0.5 * buf[i] + g[i]!;
        ref[i] = ref[i]! - 0.05 * (g[i]! + 0.5 * buf[i]);
      }
    });
    expectClose(p, ref, TOL);
  });
});

describe('Lion', () => {
  it('decays, steps by the sign of the interpolation, then updates momentum with beta2', () => {
    const opt = createCoreOptimizer(ctx, 'Lion', { lr: 0.01, betas: [0.9, 0.99], weight_decay: 0.1 })!;
    const p = Float32Array.from(P0);
    const out16 = new Uint16Array(P0.length);
    const ref = [...P0];
    const m = new Array(P0.length).fill(0);
    for (const g of GRADS) {
      opt.step([slot(p, g, out16)], { gradScale: 1 });
      for (let i = 0; i < ref.length; i++) {
        const c = 0.9 * m[i] + 0.1 * g[i]!;
        ref[i] = ref[i]! * (1 - 0.01 * 0.1) - 0.01 * Math.sign(c);
        m[i] = 0.99 * m[i] + 0.01 * g[i]!;
      }
    }
    expectClose(p, ref, TOL);
    expect(Array.from(out16)).toEqual(Array.from(p, (x) => f32ToBf16(x)));
  });
});

describe('Lamb', () => {
  it('scales the Adam update by the clamped trust ratio per slot', () => {
    const opt = createCoreOptimizer(ctx, 'lamb', { lr: 0.02, weight_decay: 0.01, max_coeff: 10, min_coeff: 0.01 })!;
    const p = Float32Array.from(P0);
    const ref = [...P0];
    const m = new Array(P0.length).fill(0);
    const v = new Array(P0.length).fill(0);
    GRADS.forEach((g, k) => {
      opt.step([slot(p, g)], { gradScale: 1 });
      const t = k + 1;
      const u = ref.map((w, i) => {
        m[i] = 0.9 * m[i] + 0.1 * g[i]!;
        v[i] = 0.999 * v[i] + 0.001 * g[i]! * g[i]!;
        return m[i] / (1 - 0.9 ** t) / (Math.sqrt(v[i] / (1 - 0.999 ** t)) + 1e-8) + 0.01 * w;
      });
      const wn = Math.hypot(...ref);
      const un = Math.hypot(...u);
      const coeff = Math.min(10, Math.max(0.01, wn / un));
      for (let i = 0; i < ref.length; i++) ref[i] = ref[i]! - 0.02 * coeff * u[i]!;
    });
    expectClose(p, ref, { rtol: 1e-4, atol: 1e-4 });
  });
});

describe('optimizer state', () => {
  it('a state dict round-trip continues exactly like the original', () => {
    const a = createCoreOptimizer(ctx, 'sgd', { lr: 0.1, momentum: 0.9 })!;
    const pa = Float32Array.from(P0);
    a.step([slot(pa, GRADS[0]!)], { gradScale: 1 });
    const b = createCoreOptimizer(ctx, 'sgd', { lr: 0.1, momentum: 0.9 })!;
    b.loadStateDict(JSON.parse(JSON.stringify(a.stateDict(), (_k, v) => (v instanceof Float32Array ? Array.from(v) : v))));
    const pb = pa.slice();
    a.step([slot(pa, GRADS[1]!)], { gradScale: 1 });
    b.step([slot(pb, GRADS[1]!)], { gradScale: 1 });
    expect(Array.from(pb)).toEqual(Array.from(pa));
  });

  it('refuses state from another optimizer type or a slot of another size', () => {
    const sgd = createCoreOptimizer(ctx, 'sgd', { momentum: 0.9 })!;
    const lion = createCoreOptimizer(ctx, 'lion', {})!;
    expect(() => lion.loadStateDict(sgd.stateDict())).toThrow(/saved by SGD but this optimizer is Lion/);
    sgd.step([slot(Float32Array.from(P0), GRADS[0]!)], { gradScale: 1 });
    expect(() => sgd.step([slot(new Float32Array(3), [1, 2, 3])], { gradScale: 1 })).toThrow(/slot 0 has 3 parameters/);
  });
});

describe('createCoreOptimizer', () => {
  it('leaves types it does not build to plugins', () => {
    expect(createCoreOptimizer(ctx, 'OneBitAdam', {})).toBeUndefined();
  });

  it('applies DeepSpeed defaults, case-insensitively', () => {
    const adam = createCoreOptimizer(ctx, 'ADAM', undefined)!;
    expect(adam.type).toBe('Adam');
    expect(adam.paramGroups[0]).toMatchObject({ lr: 1e-3, weightDecay: 0, betas: [0.9, 0.999] });
    expect(createCoreOptimizer(ctx, 'lion', undefined)!.paramGroups[0]).toMatchObject({ lr: 1e-4, betas: [0.9, 0.99] });
  });

  it('reports every bad parameter at once, and max_grad_norm with the key to use instead', () => {
    let err: unknown;
    try {
      createCoreOptimizer(ctx, 'AdamW', { lr: -1, betas: [0.9], max_grad_norm: 1, lrate: 3 });
    } catch (e) {
      err = e;
    }
    const problems = (err as { problems: Array<{ path: string; message: string }> }).problems;
    expect(problems.map((p) => p.path).sort()).toEqual(['optimizer.params.betas', 'optimizer.params.lr', 'optimizer.params.lrate', 'optimizer.params.max_grad_norm']);
    expect(problems.find((p) => p.path.endsWith('max_grad_norm'))!.message).toMatch(/gradient_clipping/);
  });

  it('the config check and the factory read one table: what one accepts the other builds, what one rejects the other rejects', () => {
    const configProblems = (type: string, params: Record<string, unknown>): string[] => {
      try {
        loadConfig({ train_batch_size: 8, optimizer: { type, params } });
        return [];
      } catch (err) {
        return (err as { problems: { path: string }[] }).problems.map((p) => p.path);
      }
    };
    const factoryProblems = (type: string, params: Record<string, unknown>): string[] => {
      try {
        createCoreOptimizer(ctx, type, params);
        return [];
      } catch (err) {
        return (err as { problems: { path: string }[] }).problems.map((p) => p.path);
      }
    };
    for (const [type, specs] of Object.entries(CORE_OPTIMIZER_SPECS)) {
      // Every key with its default value: both accept.
      const all = Object.fromEntries(Object.entries(specs).map(([k, spec]) => [k, spec.default]));
      expect(configProblems(type, all), type).toEqual([]);
      expect(factoryProblems(type, all), type).toEqual([]);
      expect(createCoreOptimizer(ctx, type, all)).toBeDefined();
    }
    // Values that were accepted by the config check and refused only at initialize before the tables
    // were one: AMSGrad, a beta of exactly 1, max_grad_norm on Lamb.
    for (const [type, params, path] of [
      ['Adam', { amsgrad: true }, 'optimizer.params.amsgrad'],
      ['Lion', { betas: [0.9, 1] }, 'optimizer.params.betas'],
      ['Lamb', { max_grad_norm: 0 }, 'optimizer.params.max_grad_norm'],
      ['SGD', { nesterov: true }, 'optimizer.params.nesterov'],
    ] as const) {
      expect(configProblems(type, params), type).toEqual([path]);
      expect(factoryProblems(type, params), type).toEqual([path]);
    }
  });
});

describe('the sub-group state API (stepping a subrange, adopting state arrays)', () => {
  const split = (type: string, params: Record<string, unknown>) => {
    // Three slots stepped together, and the same three stepped one at a time with firstSlot.
    const whole = createCoreOptimizer(ctx, type, params)!;
    const parts = createCoreOptimizer(ctx, type, params)!;
    const a = [0, 1, 2].map((i) => Float32Array.from(P0.map((x) => x + i)));
    const b = a.map((m) => m.slice());
    for (const grads of GRADS) {
      whole.step(a.map((m, i) => slot(m, grads.map((g) => g * (i + 1)))), { gradScale: 1 });
      b.forEach((m, i) => parts.step([slot(m, grads.map((g) => g * (i + 1)))], { gradScale: 1, firstSlot: i }));
    }
    return { a, b, whole, parts };
  };

  it.each([
    ['AdamW', { lr: 0.1, weight_decay: 0.01 }],
    ['Lamb', { lr: 0.1 }],
    ['SGD', { lr: 0.1, momentum: 0.9 }],
    ['Lion', { lr: 0.1 }],
  ])('%s: each slot keeps its own state when stepped on its own', (type, params) => {
    const { a, b, whole, parts } = split(type, params);
    b.forEach((m, i) => expect([...m], `slot ${i}`).toEqual([...a[i]!]));
    expect(parts.stateDict().slots.map((s) => s.step)).toEqual(whole.stateDict().slots.map((s) => s.step));
  });

  it('adoptState makes arrays someone else owns the slot state, keeping the step count', () => {
    const opt = createCoreOptimizer(ctx, 'AdamW', { lr: 0.1 })!;
    const m = Float32Array.from(P0);
    opt.step([slot(m, GRADS[0]!)], { gradScale: 1 });
    const saved = opt.stateDict().slots[0]!;
    const owned = { exp_avg: saved.tensors.exp_avg!.slice(), exp_avg_sq: saved.tensors.exp_avg_sq!.slice() };
    opt.adoptState(0, owned);
    opt.step([slot(m, GRADS[1]!)], { gradScale: 1 });
    // The optimizer wrote into the adopted arrays and counted on from step 1.
    expect(owned.exp_avg).not.toEqual(saved.tensors.exp_avg);
    expect(opt.stateDict().slots[0]!.step).toBe(2);
    expect(thrown(() => opt.adoptState(0, { exp_avg: new Float32Array(5) }), DSConfigError).message).toMatch(/needs 'exp_avg_sq' of 5 elements/);
  });
});

describe('16-bit gradients', () => {
  // Gradients that bf16 and f16 hold exactly: the optimizer must widen them on the device and scale
  // them by gradScale, stepping exactly as it does with the same values in f32.
  const grads = GRADS.map((g) => g.map((x) => Math.round(x * 64) / 64));
  it.each([
    ['AdamW', { lr: 0.1, weight_decay: 0.01 }],
    ['SGD', { lr: 0.1, momentum: 0.9, dampening: 0.1, weight_decay: 0.01 }],
    ['Lion', { lr: 0.01, weight_decay: 0.1 }],
    ['Lamb', { lr: 0.02, weight_decay: 0.01 }],
  ])('%s: bf16 and f16 gradients step exactly like their f32 values', (type, params) => {
    const run = (gradDtype: 'f32' | 'bf16' | 'f16') => {
      const opt = createCoreOptimizer(ctx, type, params)!;
      const p = Float32Array.from(P0);
      for (const g of grads) {
        const grad = gradDtype === 'f32' ? Float32Array.from(g) : Uint16Array.from(g, gradDtype === 'bf16' ? f32ToBf16 : f32ToF16);
        opt.step([{ master: p, grad, gradDtype, group: 0 }], { gradScale: 0.5 });
      }
      return p;
    };
    const f32 = run('f32');
    expect(f32).not.toEqual(Float32Array.from(P0));
    expectClose(run('bf16'), f32, { rtol: 0, atol: 0 }, `${type} with bf16 gradients`);
    expectClose(run('f16'), f32, { rtol: 0, atol: 0 }, `${type} with f16 gradients`);
  });
});
