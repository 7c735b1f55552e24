// The fused residual add + layer norm (addLayerNorm, LayerNorm.callResidual) against the pair of ops
// it replaces, on the native kernels: plain f32, bf16 autocast (an f32 residual stream plus a bf16
// branch output, as in GPT), bf16 tensors, and the broadcast case that falls back to add + layerNorm.
import { describe, expect, it } from 'vitest';
import { randn } from '../../src/create.js';
import type { DType } from '../../src/dtype.js';
import { tidy } from '../../src/memory/scope.js';
import { LayerNorm } from '../../src/nn/layers.js';
import { add, addLayerNorm, layerNorm, mul, sum } from '../../src/ops/index.js';
import { autocast, getRuntime } from '../../src/runtime.js';
import type { Tensor } from '../../src/tensor.js';

interface Run {
  h: number[];
  y: number[];
  grads: number[][];
}

function run(fused: boolean, xShape: number[], rShape: number[], xDtype: DType, rDtype: DType, auto: boolean): Run {
  return tidy(() => {
    const cols = xShape[xShape.length - 1]!;
    const x = randn(xShape, { seed: 1, dtype: xDtype, requiresGrad: true });
    const r = randn(rShape, { seed: 2, dtype: rDtype, requiresGrad: true });
    // A bf16 model has bf16 norms (only then does a bf16 stream fuse); f32 ones get non-trivial values.
    const ln = new LayerNorm(cols, 1e-5, { dtype: xDtype === 'bf16' ? 'bf16' : 'f32' });
    if (xDtype !== 'bf16') {
      randn([cols], { seed: 3 }).toArray().forEach((v, i) => ((ln.weight.data() as Float32Array)[i] = 1 + 0.1 * v));
      randn([cols], { seed: 4 }).toArray().forEach((v, i) => ((ln.bias.data() as Float32Array)[i] = 0.1 * v));
    }
    const body = (): [Tensor, Tensor] => (fused ? ln.callResidual(x, r) : ((h: Tensor) => [h, ln.call(h)] as [Tensor, Tensor])(add(x, r)));
    const [h, y] = auto ? autocast('bf16', body) : body();
    // A loss that depends on both outputs, so both gradients reach the op.
    sum(add(mul(h, h), y)).backward();
    return { h: h.toArray(), y: y.toArray(), grads: [x.grad!, r.grad!, ln.weight.grad!, ln.bias.grad!].map((g) => g.toArray()) };
  });
}

function maxRelErr(a: number[], b: number[]): number {
  const scale = Math.max(1e-30, ...b.map(Math.abs));
  return Math.max(0, ...a.map((v, i) => Math.abs(v - b[i]!) / scale));
}

describe('addLayerNorm', () => {
  // [name, x shape, r shape, x dtype, r dtype, autocast, whether the fused kernel runs]
  const cases: [string, number[], number[], DType, DType, boolean, boolean][] = [
    ['f32', [2, 5, 32], [2, 5, 32], 'f32', 'f32', false, true],
    ['bf16 autocast, f32 stream + bf16 branch', [2, 5, 48], [2, 5, 48], 'f32', 'bf16', true, true],
    ['bf16 model', [3, 40], [3, 40], 'bf16', 'bf16', false, true],
    ['broadcast residual (falls back to add + layerNorm)', [2, 5, 16], [16], 'f32', 'f32', false, false],
  ];
  for (const [name, xs, rs, xd, rd, auto, fusedKernel] of cases) {
    it(`equals add then layerNorm: ${name}`, () => {
      const k = getRuntime().kernels('cpu');
      const kernel = k.layerNormResidualForward;
      let calls = 0;
      k.layerNormResidualForward = (...args) => {
        calls++;
        kernel.apply(k, args);
      };
      let fused: Run;
      try {
        fused = run(true, xs, rs, xd, rd, auto);
      } finally {
        k.layerNormResidualForward = kernel;
      }
      expect(calls).toBe(fusedKernel ? 1 : 0);
      const pair = run(false, xs, rs, xd, rd, auto);
      expect(fused.h).toEqual(pair.h);  // the same adds
      expect(maxRelErr(fused.y, pair.y)).toBeLessThan(1e-6);
      fused.grads.forEach((g, i) => expect(maxRelErr(g, pair.grads[i]!), `grad ${i}`).toBeLessThan(xd === 'bf16' ? 1e-2 : 1e-5));
    });
  }

  it('checks weight and bias shapes by name', () => {
    tidy(() => {
      const x = randn([2, 4], { seed: 1 });
      expect(() => addLayerNorm(x, x, randn([3], { seed: 2 }), randn([4], { seed: 3 }))).toThrow(/addLayerNorm: input \[2, 4\], weight \[3\]/);
      expect(layerNorm(x, randn([4], { seed: 2 }), randn([4], { seed: 3 })).shape).toEqual([2, 4]);
    });
  });
});
