// A pluggable attention kernel: the same attention composed from matmul, a mask and softmax
// plugged into the GPT gives the fused kernel's loss and gradients.
import { describe, expect, it } from 'vitest';
import { fromArray, randint } from '../../src/create.js';
import { tidy } from '../../src/memory/scope.js';
import type { AttentionKernel } from '../../src/nn/attention.js';
import { GPT } from '../../src/nn/gpt.js';
import { add, matmul, mulScalar, softmax, transpose } from '../../src/ops/index.js';
import type { Tensor } from '../../src/tensor.js';
import { inReference } from '../helpers/runtime.js';

const composed: AttentionKernel = {
  name: 'composed',
  attend(q: Tensor, k: Tensor, v: Tensor, { scale }) {
    const t = q.shape[2]!;
    const mask = fromArray(Array.from({ length: t * t }, (_, i) => (i % t > Math.floor(i / t) ? -1e30 : 0)), [t, t]);
    const scores = add(mulScalar(matmul(q, transpose(k, 2, 3)), scale), mask); // [B, H, T, T]
    return matmul(softmax(scores), v);
  },
};

function grads(kernel?: AttentionKernel): { loss: number; grads: number[][] } {
  return inReference(() => {
    const gpt = new GPT({ vocabSize: 9, blockSize: 5, nLayer: 1, nHead: 2, nEmbd: 8, seed: 2, attentionKernel: kernel });
    const ids = randint([2, 5], 9, { seed: 3 });
    const loss = tidy(() => {
      const l = gpt.call(ids, ids).loss!;
      l.backward();
      return l.item();
    });
    return { loss, grads: gpt.parameters().map((p) => p.grad!.toArray()) };
  });
}

describe('pluggable attention kernel', () => {
  it('a composed kernel matches the fused one', () => {
    const fused = grads();
    const other = grads(composed);
    expect(other.loss).toBeCloseTo(fused.loss, 5);
    other.grads.forEach((g, i) => g.forEach((x, j) => expect(x).toBeCloseTo(fused.grads[i]![j]!, 5)));
  });
});
