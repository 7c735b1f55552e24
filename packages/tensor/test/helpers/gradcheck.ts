// Finite-difference gradient checks in float64: the op runs in a Runtime in f64Check mode on the
// reference kernels, so both the analytic and the numeric gradient are computed in f64.
import { expectClose } from '@ds-internal/test-kit';

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
 * input that requires grad; w is a fixed random weighting so every output element matters. An
 * element passes within tol * (1 + |numeric|).
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
    inputs.forEach((x, xi) => {
      if (!x.requiresGrad) return;
      const data = x.data() as unknown as Float64Array;
      const analytic = x.grad ? x.grad.toArray() : new Array<number>(x.numel).fill(0);
      const numeric = analytic.map((_, i) => {
        const orig = data[i]!;
        data[i] = orig + eps;
        const fp = objective();
        data[i] = orig - eps;
        const fm = objective();
        data[i] = orig;
        return (fp - fm) / (2 * eps);
      });
      expectClose(analytic, numeric, { rtol: tol, atol: tol }, `gradient of input ${xi} (analytic vs central differences)`);
    });
  });
}
