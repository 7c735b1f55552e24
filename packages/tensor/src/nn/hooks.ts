// Identity nodes that call back when a gradient passes through them: the mechanism behind module
// backward hooks. Wrapping a module's outputs gives a callback before its backward runs (its
// output gradient arrived); wrapping its inputs gives one after (its input gradients are done).

import { attach } from '../autograd/node.js';
import { Tensor } from '../tensor.js';

export function passThrough(x: Tensor, onGrad: () => void): Tensor {
  const y = new Tensor({ storage: x.storage, dtype: x.dtype, shape: x.shape, strides: x.strides, offset: x.offset, runtime: x.runtime });
  return attach(y, 'hook', [x], (dy) => {
    onGrad();
    return [dy];
  });
}

/** Replaces each tensor requiring grad inside arrays/plain objects of `value` with fn(tensor). */
export function mapGradTensors(value: unknown, fn: (t: Tensor) => Tensor): { value: unknown; count: number } {
  let count = 0;
  const visit = (v: unknown): unknown => {
    if (v instanceof Tensor) {
      if (!v.requiresGrad) return v;
      count++;
      return fn(v);
    }
    if (Array.isArray(v)) return v.map(visit);
    if (v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[k] = visit(x);
      return out;
    }
    return v;
  };
  return { value: visit(value), count };
}
