import { describe, expect, it } from 'vitest';
import { randint } from '../../src/create.js';
import { tidy } from '../../src/memory/scope.js';
import { Checkpointed } from '../../src/nn/checkpoint.js';
import { GPT, type GPTConfig } from '../../src/nn/gpt.js';
import { Linear } from '../../src/nn/layers.js';
import { randn } from '../../src/create.js';
import { gelu, sum } from '../../src/ops/index.js';
import { inReference } from '../helpers/runtime.js';

const cfg: GPTConfig = { vocabSize: 13, blockSize: 8, nLayer: 3, nHead: 2, nEmbd: 16, dropout: 0.2, seed: 7 };

function run(checkpointActivations: boolean): { loss: number; grads: number[][]; peak: number; fired: number } {
  return inReference((rt) => {
    const gpt = new GPT({ ...cfg, checkpointActivations });
    let fired = 0;
    for (const p of gpt.parameters()) p.registerGradReadyHook(() => void fired++);
    const ids = randint([2, 8], 13, { seed: 1 });
    rt.tracker.resetPeak();
    const loss = tidy(() => {
      const l = gpt.call(ids, ids).loss!;
      l.backward();
      return l.item();
    });
    return { loss, grads: gpt.parameters().map((p) => p.grad!.toArray()), peak: rt.tracker.peakBytes('cpu', 'activations'), fired };
  });
}

describe('activation checkpointing', () => {
  it('gives the same loss and gradients (dropout replayed) with a lower activation peak', () => {
    const plain = run(false);
    const ckpt = run(true);
    expect(ckpt.loss).toBe(plain.loss);
    expect(ckpt.grads).toEqual(plain.grads);
    expect(ckpt.peak).toBeLessThan(plain.peak);
    // Every parameter's gradient-ready hook fires exactly once, also for recomputed blocks.
    expect(ckpt.fired).toBe(plain.fired);
    expect(ckpt.fired).toBe(plain.grads.length);
  });

  it('wraps a module (Checkpointed) without changing its gradients', () =>
    inReference(() => {
      const inner = new Linear(4, 4);
      const wrapped = new Checkpointed(inner);
      const x = randn([3, 4], { seed: 2, requiresGrad: true });
      tidy(() => sum(gelu(wrapped.call(x))).backward());
      const viaCkpt = [inner.weight.grad!.toArray(), x.grad!.toArray()];
      inner.zeroGrad();
      x.grad!.dispose();
      x.grad = null;
      tidy(() => sum(gelu(inner.call(x))).backward());
      expect([inner.weight.grad!.toArray(), x.grad!.toArray()]).toEqual(viaCkpt);
    }));
});
