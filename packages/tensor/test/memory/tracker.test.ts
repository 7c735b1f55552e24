import { describe, expect, it } from 'vitest';
import { fromArray, randn, zeros } from '../../src/create.js';
import { DSOutOfMemoryError } from '../../src/errors.js';
import { keep, tidy } from '../../src/memory/scope.js';
import { exp, gelu, mul, sum } from '../../src/ops/index.js';
import { noGrad, Runtime, withCategory } from '../../src/runtime.js';
import { createReferenceKernels } from '../../src/reference/index.js';
import { inReference } from '../helpers/runtime.js';

describe('memory tracker', () => {
  it('counts live and peak bytes per category and resets peaks', () =>
    inReference((rt) => {
      const a = zeros([100], { category: 'parameters' });
      const b = withCategory('optimizer_states', () => zeros([50]));
      expect(rt.tracker.liveBytes('cpu', 'parameters')).toBe(400);
      expect(rt.tracker.liveBytes('cpu', 'optimizer_states')).toBe(200);
      expect(rt.tracker.liveBytes('cpu')).toBe(600);
      b.dispose();
      expect(rt.tracker.liveBytes('cpu')).toBe(400);
      expect(rt.tracker.peakBytes('cpu')).toBe(600);
      expect(rt.tracker.peakBytes('cpu', 'optimizer_states')).toBe(200);
      rt.tracker.resetPeak();
      expect(rt.tracker.peakBytes('cpu')).toBe(400);
      const snap = rt.tracker.snapshot();
      expect(snap.cpu!.categories.parameters.live).toBe(400);
      a.dispose();
    }));

  it('enforces the memory budget with the category and largest holders named', () =>
    inReference(
      () => {
        zeros([200], { category: 'parameters', label: 'big.weight' });
        let err: unknown;
        try {
          zeros([100], { category: 'activations', label: 'scratch' });
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(DSOutOfMemoryError);
        expect(String((err as Error).message)).toMatch(/allocating 400 B for activations \(scratch\).*Largest holders: big.weight \(parameters, 800 B\)/);
        const before = process.env.DS_MEMORY_LIMIT;
        process.env.DS_MEMORY_LIMIT = '3k';
        try {
          expect(new Runtime({ kernels: createReferenceKernels() }).tracker.limit).toBe(3072);
        } finally {
          if (before === undefined) delete process.env.DS_MEMORY_LIMIT;
          else process.env.DS_MEMORY_LIMIT = before;
        }
      },
      { memoryLimit: 1000 },
    ));

  it('tidy disposes what it created except its result and kept tensors, and nests', () =>
    inReference((rt) => {
      const base = rt.tracker.liveBytes();
      let kept!: ReturnType<typeof zeros>;
      const out = tidy(() => {
        zeros([10]);
        kept = keep(zeros([3]));
        const inner = tidy(() => {
          zeros([7]);
          return { r: [zeros([2])] };
        });
        return inner.r[0]!;
      });
      expect(rt.tracker.liveBytes()).toBe(base + 12 + 8);
      out.dispose();
      kept.dispose();
      expect(rt.tracker.liveBytes()).toBe(base);
      expect(() => tidy(() => Promise.resolve(1))).toThrow(/synchronous/);
    }));

  it('autograd frees saved tensors once backward consumed them', () =>
    inReference((rt) => {
      const x = fromArray([0.5, 1, 2, 3], [4], { requiresGrad: true });
      const base = rt.tracker.liveBytes();
      const h = exp(x); // saves x and its output
      const h2 = mul(h, h); // saves h twice
      const loss = sum(h2);
      h.dispose();
      h2.dispose();
      // h's bytes stay alive: the exp and mul nodes still hold them.
      expect(rt.tracker.liveBytes()).toBeGreaterThan(base + 4);
      loss.backward();
      loss.dispose();
      expect(rt.tracker.liveBytes()).toBe(base + 16); // only x.grad is new
      x.grad!.dispose();
    }));

  it('noGrad records no graph and keeps no activations', () =>
    inReference((rt) => {
      const x = randn([64], { requiresGrad: true });
      const base = rt.tracker.liveBytes();
      const y = noGrad(() => gelu(x));
      expect(y.requiresGrad).toBe(false);
      expect(y.gradFn).toBeNull();
      expect(rt.tracker.liveBytes()).toBe(base + 256);
    }));
});
