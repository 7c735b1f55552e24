// Finite-difference gradient checks in float64: the op runs in a Runtime in f64Check mode on the
// reference kernels, so both the analytic and the numeric gradient are computed in f64.

import { expect } from 'vitest';
import { createReferenceKernels } from '../../src/reference/index.js';
import { Runtime, withRuntime } from '../../src/runtime.js';
import { Tensor } from '../../src/tensor.js';
import { fromArray } from '../../src/create.js';
import { Generator } from '../../src/random.js';
import { tidy } from '../../src/memory/scope.js';

export function f64Runtime(): Runtime {
  return new Runtime({ kernels: createReferenceKernels(), f64Check: true, memoryLimit: undefined });
}

/** Random f32 values (f64 storage in check mode) with requiresGrad. */
export function rand(shape: number[], seed: number, scale = 1, shift = 0): Tensor {
  const g = new Generator(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return fromArray(Array.from({ length: n }, () => shift + scale * (2 * g.uniform() - 1)), shape, { requiresGrad: true });
}

/**
 * Checks d(sum(w * f(inputs)))/d(input) against central differences for every element of every
 * input that requires grad; w is a fixed random weighting so every output element matters.
 */
export function gradcheck(fn: (...xs: Tensor[]) => Tensor, make: () => Tensor[], opts: { eps?: number; tol?: number } = {}): void {
  const eps = opts.eps ?? 1e-6;
  const tol = opts.tol ?? 1e-6;
  withRuntime(f64Runtime(), () => {
    const inputs = make();
    const probe = tidy(() => fn(...inputs).toArray());
    const g = new Generator(99);
    const w = probe.map(() => 2 * g.uniform() - 1);
    const objective = (): number => tidy(() => fn(...inputs).toArray().reduce((s, v, i) => s + v * w[i]!, 0));
    tidy(() => {
      const y = fn(...inputs);
      y.backward(fromArray(w, y.shape));
    });
    const failures: string[] = [];
    let maxErr = 0;
    inputs.forEach((x, xi) => {
      if (!x.requiresGrad) return;
      const data = x.data() as unknown as Float64Array;
      const analytic = x.grad ? x.grad.toArray() : new Array<number>(x.numel).fill(0);
      for (let i = 0; i < x.numel; i++) {
        const orig = data[i]!;
        data[i] = orig + eps;
        const fp = objective();
        data[i] = orig - eps;
        const fm = objective();
        data[i] = orig;
        const numeric = (fp - fm) / (2 * eps);
        const err = Math.abs(numeric - analytic[i]!) / Math.max(1, Math.abs(numeric));
        maxErr = Math.max(maxErr, err);
        if (err > tol && failures.length < 5) failures.push(`input ${xi}[${i}]: analytic ${analytic[i]} numeric ${numeric}`);
      }
    });
    expect(failures, `max rel err ${maxErr}`).toEqual([]);
  });
}
