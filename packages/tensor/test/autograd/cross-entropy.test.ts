// crossEntropy's two backward paths on the cpu kernels: the seed a mean loss usually gets (1) takes
// the gradient its forward already wrote (crossEntropyForwardGrad); any other seed (a loss scale,
// 1 / gradient_accumulation_steps) runs crossEntropyBackward from the saved logits, bit for bit as
// before. Both agree with the reference kernels, which have no early gradient.
import { describe, expect, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';

import { fromArray, randn } from '../../src/create.js';
import { tidy } from '../../src/memory/scope.js';
import { crossEntropy } from '../../src/ops/index.js';
import { getRuntime } from '../../src/runtime.js';
import type { CpuKernels } from '../../src/backends/cpu.js';
import { inReference } from '../helpers/runtime.js';

const rows = 7, vocab = 300;
const targetIds = [5, -1, 299, 0, 17, -1, 42];
const counted = targetIds.filter((t) => t >= 0).length;

function grads(dtype: 'f32' | 'bf16', seed: number): { grad: number[] } {
  const logits = randn([rows, vocab], { seed: 11, std: 3, dtype, requiresGrad: true });
  tidy(() => {
    const loss = crossEntropy(logits, fromArray(targetIds, [rows], { dtype: 'i32' }));
    loss.backward(seed === 1 ? undefined : fromArray([seed], []));
  });
  return { grad: logits.grad!.toArray() };
}

describe('crossEntropy backward', () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    it(`seed 1 uses the early gradient, another seed the usual backward, exactly (${dtype})`, () => {
      const cpu = getRuntime().kernels('cpu') as CpuKernels;
      expect(typeof cpu.crossEntropyForwardGrad).toBe('function');
      // Count the backward kernel's calls: none for seed 1, one for seed 3.
      const table = cpu as unknown as Record<string, unknown>;
      const usual = table.crossEntropyBackward as (...a: unknown[]) => void;
      let calls = 0;
      table.crossEntropyBackward = (...a: unknown[]) => (calls++, usual.apply(cpu, a));
      let one: number[], three: number[];
      try {
        one = grads(dtype, 1).grad;
        expect(calls).toBe(0);
        three = grads(dtype, 3).grad;
        expect(calls).toBe(1);
      } finally {
        table.crossEntropyBackward = usual;
      }
      // The usual backward, called directly with dloss = 3 / counted, is what seed 3 must give.
      const logits = randn([rows, vocab], { seed: 11, std: 3, dtype });
      const raw = logits.toArray();
      const la = dtype === 'f32' ? Float32Array.from(raw) : (logits.operand() as Uint16Array);
      const t = Int32Array.from(targetIds);
      const losses = new Float32Array(rows), lse = new Float32Array(rows);
      cpu.crossEntropyForward(dtype, la, t, losses, lse, rows, vocab);
      const want = dtype === 'f32' ? new Float32Array(rows * vocab) : new Uint16Array(rows * vocab);
      cpu.crossEntropyBackward(dtype, la, t, lse, new Float32Array(rows).fill(3 / counted), want, rows, vocab);
      const wantValues = dtype === 'f32' ? Array.from(want) : Array.from(want as Uint16Array, (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]!);
      expect(three).toEqual(wantValues);
      // The early gradient is the same function: 3 x seed 1 within rounding, zero rows where ignored.
      expectClose(Float32Array.from(three), Float32Array.from(one, (v) => 3 * v), dtype === 'f32' ? { rtol: 1e-5, atol: 1e-7 } : { rtol: 2e-2, atol: 1e-4 });
      for (const r of [1, 5]) expect(one.slice(r * vocab, (r + 1) * vocab).every((v) => v === 0)).toBe(true);
      // And the reference kernels (no early gradient) agree.
      const refOne = inReference(() => grads(dtype, 1).grad);
      expectClose(Float32Array.from(one), Float32Array.from(refOne), dtype === 'f32' ? { rtol: 1e-4, atol: 1e-7 } : { rtol: 2e-2, atol: 1e-4 });
    });
  }
});
