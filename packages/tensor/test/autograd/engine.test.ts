import { describe, expect, it } from 'vitest';
import { fromArray, randn } from '../../src/create.js';
import { backward, freeGraph, queueBackwardCallback } from '../../src/autograd/engine.js';
import { attach } from '../../src/autograd/node.js';
import { DSError } from '../../src/errors.js';
import { tidy } from '../../src/memory/scope.js';
import { add, exp, mul, split, sum } from '../../src/ops/index.js';
import { inReference } from '../helpers/runtime.js';

describe('backward engine', () => {
  it('accumulates over passes, retains the graph on request and refuses a freed one', () =>
    inReference(() => {
      const x = fromArray([1, 2], [2], { requiresGrad: true });
      tidy(() => {
        const y = sum(mul(x, x));
        y.backward(undefined, { retainGraph: true });
        y.backward();
        expect(x.grad!.toArray()).toEqual([4, 8]);
        expect(() => y.backward()).toThrow(DSError);
      });
    }));

  it("takes a leaf's first gradient as it is (bits, -0 included) and adds later ones", () =>
    inReference(() => {
      const x = fromArray([1, 2, 3], [3], { requiresGrad: true });
      const c = fromArray([-0, -1.5, 1e-30], [3]);
      tidy(() => sum(mul(x, c)).backward());
      // 0 + (-0) would be +0: the first gradient is copied into .grad, not added onto zeros.
      expect(Object.is(x.grad!.toArray()[0], -0)).toBe(true);
      expect(x.grad!.toArray()).toEqual([-0, -1.5, new Float32Array([1e-30])[0]]);
      tidy(() => sum(mul(x, c)).backward());
      expect(x.grad!.toArray()).toEqual([-0, -3, new Float32Array([2e-30])[0]]); // -0 + -0 stays -0
    }));

  it("lets a leaf's .grad be its first gradient's bytes only where nothing else can see them", () =>
    inReference((rt) => {
      // Two leaves given one gradient (add's backward): each gets bytes of its own.
      const x = fromArray([1, 2], [2], { requiresGrad: true });
      const y = fromArray([3, 4], [2], { requiresGrad: true });
      tidy(() => sum(mul(add(x, y), fromArray([5, 6], [2]))).backward());
      (x.grad!.data() as Float32Array)[0] = 100;
      expect(y.grad!.toArray()).toEqual([5, 6]);
      // The caller's gradient for a leaf is copied, not taken.
      const z = fromArray([1, 2], [2], { requiresGrad: true });
      const g = fromArray([7, 8], [2]);
      z.backward(g);
      (g.data() as Float32Array)[1] = -1;
      expect(z.grad!.toArray()).toEqual([7, 8]);
      // A taken gradient is counted as gradients, and its bytes go once the .grad does.
      const w = fromArray(new Array(4096).fill(1), [4096], { requiresGrad: true });
      const before = rt.tracker.liveBytes('cpu', 'gradients');
      tidy(() => sum(mul(w, w)).backward());
      expect(w.grad!.toArray().slice(0, 2)).toEqual([2, 2]);
      expect(rt.tracker.liveBytes('cpu', 'gradients')).toBe(before + 4 * 4096);
      const live = rt.tracker.liveBytes();
      w.grad!.dispose();
      expect(rt.tracker.liveBytes()).toBe(live - 4 * 4096);
    }));

  it('frees an unused graph with freeGraph', () =>
    inReference((rt) => {
      const x = randn([256], { requiresGrad: true });
      const base = rt.tracker.liveBytes();
      const y = sum(exp(x));
      expect(rt.tracker.liveBytes()).toBeGreaterThan(base + 1024); // exp's output is saved
      freeGraph(y);
      y.dispose();
      expect(rt.tracker.liveBytes()).toBe(base + 1024); // only exp's handle (never disposed) remains
    }));

  it('gives unused outputs of a multi-output op zero gradient', () =>
    inReference(() => {
      const x = fromArray([1, 2, 3, 4, 5, 6], [3, 2], { requiresGrad: true });
      tidy(() => {
        const [a, , c] = split(x, 1, 0);
        sum(mul(a!, c!)).backward();
      });
      expect(x.grad!.toArray()).toEqual([5, 6, 0, 0, 1, 2]);
    }));

  it('runs queued callbacks after the pass and rejects them outside one', () =>
    inReference(() => {
      const x = fromArray([3], [1], { requiresGrad: true });
      const order: string[] = [];
      const y = attach(fromArray([3], [1]), 'probe', [x], (dy) => {
        queueBackwardCallback(() => order.push('callback'));
        order.push('node');
        return [dy];
      });
      x.registerGradReadyHook(() => order.push('ready'));
      backward(y);
      expect(order).toEqual(['node', 'ready', 'callback']);
      expect(() => queueBackwardCallback(() => undefined)).toThrow(/no backward pass is running/);
    }));

  it('needs an explicit gradient for a non-scalar output', () =>
    inReference(() => {
      const x = randn([3], { requiresGrad: true });
      expect(() => exp(x).backward()).toThrow(/implicit gradient needs a one-element output/);
      expect(() => fromArray([1], [1]).backward()).toThrow(/does not require grad/);
    }));
});
