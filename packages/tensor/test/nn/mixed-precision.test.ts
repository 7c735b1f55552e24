// Mixed precision: autocast (bf16, f16) over f32 parameters, and a model cast to bf16.
import { describe, expect, it } from 'vitest';
import { fromArray, randint } from '../../src/create.js';
import { tidy } from '../../src/memory/scope.js';
import { GPT } from '../../src/nn/gpt.js';
import { linear, matmul, sum } from '../../src/ops/index.js';
import { autocast, getRuntime, type Runtime } from '../../src/runtime.js';
import type { FloatDType } from '../../src/dtype.js';
import { inReference } from '../helpers/runtime.js';

const cfg = { vocabSize: 17, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 16, seed: 4 };

function lossAndGrads(mode: FloatDType | null, modelDtype?: 'bf16'): { loss: number; grads: number[][]; gradDtypes: string[] } {
  return inReference(() => {
    const gpt = new GPT(cfg);
    if (modelDtype) gpt.to(modelDtype);
    const ids = randint([2, 8], 17, { seed: 5 });
    const loss = tidy(() => {
      const l = autocast(mode, () => gpt.call(ids, ids).loss!);
      l.backward();
      return l.item();
    });
    const ps = gpt.parameters();
    return { loss, grads: ps.map((p) => p.grad!.toArray()), gradDtypes: [...new Set(ps.map((p) => p.grad!.dtype))] };
  });
}

function maxScaledErr(a: number[][], b: number[][]): number {
  let worst = 0;
  a.forEach((g, i) => {
    const ref = b[i]!;
    const scale = Math.max(...ref.map(Math.abs));
    g.forEach((x, j) => (worst = Math.max(worst, Math.abs(x - ref[j]!) / (Math.abs(ref[j]!) + scale))));
  });
  return worst;
}

describe('mixed precision', () => {
  const f32 = lossAndGrads(null);

  it('f16 autocast keeps f32 parameter gradients close to f32 training', () => {
    const r = lossAndGrads('f16');
    expect(r.gradDtypes).toEqual(['f32']);
    expect(Math.abs(r.loss - f32.loss) / f32.loss).toBeLessThan(1e-2);
    expect(maxScaledErr(r.grads, f32.grads)).toBeLessThan(1e-2);
  });

  it('bf16 autocast: f32 gradients within bf16 resolution', () => {
    const r = lossAndGrads('bf16');
    expect(r.gradDtypes).toEqual(['f32']);
    expect(Math.abs(r.loss - f32.loss) / f32.loss).toBeLessThan(2e-2);
    expect(maxScaledErr(r.grads, f32.grads)).toBeLessThan(5e-2);
  });

  it('a bf16 model (module.to) computes and accumulates bf16 gradients', () => {
    const r = lossAndGrads(null, 'bf16');
    expect(r.gradDtypes).toEqual(['bf16']);
    expect(Math.abs(r.loss - f32.loss) / f32.loss).toBeLessThan(5e-2);
    expect(maxScaledErr(r.grads, f32.grads)).toBeLessThan(0.15);
  });
});

// Under bf16 autocast an f32 input's gradient comes straight out of the bf16 product in f32, not
// rounded to bf16 on the way (torch rounds it, then casts up). dY = 1 and a weight whose two rows
// hold 1 and 2^-9 make each gradient element 1 + 2^-9: exact in f32, 1 once rounded to bf16.
describe('autocast input gradients', () => {
  const exact = 1 + 2 ** -9;
  const kernels: [string, <T>(fn: (rt: Runtime) => T) => T][] = [['native', (fn) => fn(getRuntime())], ['reference', inReference]];

  it.each(kernels)('linear and matmul give f32 inputs unrounded gradients (%s kernels)', (_, within) => {
    within(() => tidy(() => {
      const x = fromArray([0.5, 0.25], [1, 2], { requiresGrad: true });
      const w = fromArray([1, 1, 2 ** -9, 2 ** -9], [2, 2]);  // [out, in]
      autocast('bf16', () => sum(linear(x, w))).backward();
      expect(x.grad!.dtype).toBe('f32');
      expect(x.grad!.toArray()).toEqual([exact, exact]);

      const a = fromArray([0.5, 0.25], [1, 2], { requiresGrad: true });
      const b = fromArray([1, 2 ** -9, 1, 2 ** -9], [2, 2]);  // [k, n]: dA = dY B^T sums each row of b
      autocast('bf16', () => sum(matmul(a, b))).backward();
      expect(a.grad!.toArray()).toEqual([exact, exact]);
    }));
  });
});
