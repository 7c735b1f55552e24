import { describe, expect, it } from 'vitest';
import { fromArray, randint, randn, zeros } from '../../src/create.js';
import { DSError, DSUnsupportedError } from '../../src/errors.js';
import { tidy } from '../../src/memory/scope.js';
import { Dropout, Linear } from '../../src/nn/layers.js';
import { GPT } from '../../src/nn/gpt.js';
import { sum } from '../../src/ops/index.js';
import { inReference } from '../helpers/runtime.js';

const tiny = { vocabSize: 11, blockSize: 6, nLayer: 2, nHead: 2, nEmbd: 8, seed: 3 };

describe('Module', () => {
  it('names parameters like nanoGPT, counts the tied embedding once, and lists it twice in stateDict', () =>
    inReference(() => {
      const gpt = new GPT(tiny);
      const names = gpt.namedParameters().map(([n]) => n);
      expect(names.slice(0, 4)).toEqual(['transformer.wte.weight', 'transformer.wpe.weight', 'transformer.h.0.ln_1.weight', 'transformer.h.0.ln_1.bias']);
      expect(names).toContain('transformer.h.1.mlp.c_proj.weight');
      expect(names).not.toContain('lm_head.weight');
      expect(gpt.transformer.h.items[1]!.attn.c_attn.weight.name).toBe('transformer.h.1.attn.c_attn.weight');
      expect(gpt.stateDict()['lm_head.weight']).toBe(gpt.stateDict()['transformer.wte.weight']);
      expect(gpt.numParameters()).toBe(11 * 8 + 6 * 8 + 2 * (4 * 8 + 8 * 24 + 24 + 8 * 8 + 8 + 8 * 32 + 32 + 32 * 8 + 8) + 2 * 8);
      // GPT-2 init: residual projections use std 0.02 / sqrt(2 nLayer).
      const proj = gpt.stateDict()['transformer.h.0.attn.c_proj.weight']!.toArray();
      const std = Math.sqrt(proj.reduce((s, v) => s + v * v, 0) / proj.length);
      expect(std).toBeGreaterThan(0.006);
      expect(std).toBeLessThan(0.014);
    }));

  it('the transformer container and the tied lm_head point to GPT.forward instead of running alone', () =>
    inReference(() => {
      const gpt = new GPT(tiny);
      expect(() => gpt.transformer.forward()).toThrow(DSUnsupportedError);
      const head = new Map(gpt.namedChildren()).get('lm_head')!;
      expect(() => head.forward()).toThrow(/lm_head \(tied to wte\) is applied by GPT.forward; call the GPT itself/);
    }));

  it('round-trips a state dict and rejects bad keys and shapes', () =>
    inReference(() => {
      const a = new Linear(3, 2, { generator: undefined });
      const b = new Linear(3, 2);
      b.loadStateDict({ weight: randn([2, 3], { seed: 9 }), bias: zeros([2]) });
      a.loadStateDict(b.stateDict());
      expect(a.weight.toArray()).toEqual(b.weight.toArray());
      expect(() => a.loadStateDict({ weight: zeros([2, 3]) })).toThrow(/missing keys \[bias\]/);
      expect(() => a.loadStateDict({ weight: zeros([3, 2]), bias: zeros([2]) })).toThrow(/'weight' has shape \[3, 2\], the module expects \[2, 3\]/);
      expect(() => a.param('nope')).toThrow(DSError);
    }));

  it('train/eval switches dropout off in eval', () =>
    inReference(() => {
      const d = new Dropout(0.5, { seed: 1 });
      const x = randn([64], { seed: 2 });
      expect(d.call(x).toArray()).not.toEqual(x.toArray());
      d.eval();
      expect(d.call(x)).toBe(x);
      expect(d.train().training).toBe(true);
    }));

  it('casts parameters with to(dtype) and trains a bf16 module', () =>
    inReference(() => {
      const lin = new Linear(4, 3).to('bf16');
      expect(lin.weight.dtype).toBe('bf16');
      tidy(() => sum(lin.call(randn([2, 4], { dtype: 'bf16' }))).backward());
      expect(lin.weight.grad!.dtype).toBe('bf16');
      expect(lin.bias!.grad!.toArray()).toEqual([2, 2, 2]);
    }));
});

describe('hooks', () => {
  it('fires forward pre/post and backward pre/post hooks in order (ZeRO-3 fetch/release points)', () =>
    inReference(() => {
      const gpt = new GPT(tiny);
      const events: string[] = [];
      const watch = [['wte', gpt.transformer.wte], ['h0', gpt.transformer.h.items[0]!], ['h1', gpt.transformer.h.items[1]!]] as const;
      for (const [name, m] of watch) {
        m.registerForwardPreHook(() => void events.push(`fpre ${name}`));
        m.registerForwardHook(() => void events.push(`fpost ${name}`));
        m.registerBackwardPreHook(() => void events.push(`bpre ${name}`));
        m.registerBackwardHook(() => void events.push(`bpost ${name}`));
      }
      const ids = randint([2, 6], 11, { seed: 1 });
      tidy(() => {
        const { loss } = gpt.call(ids, ids);
        events.push('backward');
        loss!.backward();
      });
      expect(events).toEqual([
        'fpre wte', 'fpost wte', 'fpre h0', 'fpost h0', 'fpre h1', 'fpost h1', 'backward',
        'bpre h1', 'bpost h1', 'bpre h0', 'bpost h0', 'bpre wte',
        // wte's input (ids) carries no gradient, so its post hook runs when the pass ends.
        'bpost wte',
      ]);
    }));

  it('fires each gradient-ready hook once, when the gradient is final (tied weights included)', () =>
    inReference(() => {
      const gpt = new GPT(tiny);
      const seen = new Map<string, number[]>();
      for (const [name, p] of gpt.namedParameters()) p.registerGradReadyHook((t) => seen.set(name, [...(seen.get(name) ?? []), ...t.grad!.toArray().slice(0, 3)]));
      const ids = randint([2, 6], 11, { seed: 4 });
      tidy(() => gpt.call(ids, ids).loss!.backward());
      for (const [name, p] of gpt.namedParameters()) {
        expect(seen.get(name), name).toEqual(p.grad!.toArray().slice(0, 3));
      }
    }));

  it('lets a ZeRO-3 style hook release a parameter after forward and gather it before backward', () =>
    inReference((rt) => {
      const make = (): Linear => {
        const l = new Linear(64, 64);
        l.loadStateDict({ weight: randn([64, 64], { seed: 1 }), bias: zeros([64]) });
        return l;
      };
      const x = randn([4, 64], { seed: 2 });
      const plain = make();
      tidy(() => sum(plain.call(x)).backward());

      const lin = make();
      const full = randn([64, 64], { seed: 1 }).keep(); // the "partition owner" copy
      const empty = zeros([0], { category: 'parameters' }).keep();
      lin.registerForwardHook(() => void lin.weight.setData(empty));
      lin.registerBackwardPreHook(() => lin.weight.setData(full));
      let liveBetween = 0;
      tidy(() => {
        const y = sum(lin.call(x));
        // The gathered weight's own storage (16 KiB) was freed by the release: nothing pins it.
        liveBetween = rt.tracker.liveBytes('cpu', 'parameters');
        y.backward();
      });
      // plain's weight and bias, and lin's bias: lin's own weight storage is gone (`full` is 'other').
      expect(liveBetween).toBe(64 * 64 * 4 + 2 * 64 * 4);
      expect(lin.weight.grad!.toArray()).toEqual(plain.weight.grad!.toArray());

      // Forgetting to gather again is reported, not computed on the wrong bytes.
      const bad = make();
      bad.registerForwardHook(() => void bad.weight.setData(empty));
      expect(() => tidy(() => sum(bad.call(x)).backward())).toThrow(/released \(partitioned\) parameter must be gathered again/);
    }));

  it('removes hooks with their handle', () =>
    inReference(() => {
      const lin = new Linear(2, 2);
      let calls = 0;
      const h = lin.registerForwardHook(() => void calls++);
      lin.call(fromArray([1, 2], [1, 2]));
      h.remove();
      lin.call(fromArray([1, 2], [1, 2]));
      expect(calls).toBe(1);
    }));
});
