import { describe, expect, it } from 'vitest';
import { randint } from '../../src/create.js';
import { tidy } from '../../src/memory/scope.js';
import { Checkpointed, checkpointLayers } from '../../src/nn/checkpoint.js';
import { GPT, type GPTConfig } from '../../src/nn/gpt.js';
import { GELU, Linear } from '../../src/nn/layers.js';
import { Module, ModuleList } from '../../src/nn/module.js';
import type { Tensor } from '../../src/tensor.js';
import { randn } from '../../src/create.js';
import { gelu, sum } from '../../src/ops/index.js';
import { inReference } from '../helpers/runtime.js';

const cfg: GPTConfig = { vocabSize: 13, blockSize: 8, nLayer: 3, nHead: 2, nEmbd: 16, dropout: 0.2, seed: 7 };

function run(checkpointActivations: boolean, layers: number | null | 'none' = 'none'): { loss: number; grads: number[][]; peak: number; held: number; fired: number } {
  return inReference((rt) => {
    const gpt = new GPT({ ...cfg, checkpointActivations });
    if (layers !== 'none') checkpointLayers(gpt, layers);
    let fired = 0;
    for (const p of gpt.parameters()) p.registerGradReadyHook(() => void fired++);
    const ids = randint([2, 8], 13, { seed: 1 });
    rt.tracker.resetPeak();
    const before = rt.tracker.liveBytes('cpu', 'activations');
    let held = 0;
    const loss = tidy(() => {
      const l = gpt.call(ids, ids).loss!;
      held = rt.tracker.liveBytes('cpu', 'activations') - before;
      l.backward();
      return l.item();
    });
    return { loss, grads: gpt.parameters().map((p) => p.grad!.toArray()), peak: rt.tracker.peakBytes('cpu', 'activations'), held, fired };
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

describe('checkpointing layers of any module (activation_checkpointing in ds_config)', () => {
  it("marks the GPT's first n blocks: same loss and gradients, and the activations held for backward fall with n", () => {
    const plain = run(false);
    const one = run(false, 1);
    const all = run(false, null);
    for (const r of [one, all]) {
      expect(r.loss).toBe(plain.loss);
      expect(r.grads).toEqual(plain.grads);
      expect(r.fired).toBe(plain.fired);
    }
    expect(one.held).toBeLessThan(plain.held);
    expect(all.held).toBeLessThan(one.held);
    expect(all.peak).toBeLessThan(plain.peak);
    // The GPT's own switch and the marks together checkpoint each block once, with the same numbers.
    expect(run(true, null)).toEqual(run(true));
  });

  it('names the layers it marked, takes the longest ModuleList by default, and undoes', () =>
    inReference(() => {
      class Stack extends Module<[Tensor], Tensor> {
        readonly head = this.registerModule('head', new ModuleList([new Linear(4, 4)]));
        readonly body = this.registerModule('body', new ModuleList([new Linear(4, 4), new Linear(4, 4), new Linear(4, 4)]));
        forward(x: Tensor): Tensor {
          for (const m of [...this.head.items, ...this.body.items]) x = m.call(x);
          return x;
        }
      }
      const model = new Stack();
      const marked = checkpointLayers(model, 2);
      expect(marked.names).toEqual(['body.0', 'body.1']);
      expect(marked.available).toBe(3);
      expect(model.body.items.map((m) => m.activationCheckpointing)).toEqual([true, true, false]);
      marked.undo();
      expect(model.modules().some((m) => m.activationCheckpointing)).toBe(false);
      expect(checkpointLayers(new GELU(), null).names).toEqual([]);
    }));

  it('refuses a checkpointed module whose forward does not take and return tensors, by name', () =>
    inReference(() => {
      const gpt = new GPT(cfg);
      gpt.activationCheckpointing = true;
      const ids = randint([1, 4], 13, { seed: 1 });
      expect(() => tidy(() => gpt.call(ids, ids))).toThrow(/GPT: activation checkpointing needs a forward that returns one tensor/);
    }));
});
