import { describe, expect, it } from 'vitest';
import { randn, zeros } from '../../src/create.js';
import { DSError } from '../../src/errors.js';
import { Embedding, Linear } from '../../src/nn/layers.js';
import { GPT, type GPTConfig } from '../../src/nn/gpt.js';
import { Module } from '../../src/nn/module.js';
import type { Parameter } from '../../src/nn/parameter.js';
import { withParameterHook } from '../../src/nn/parameter-hook.js';
import { Generator } from '../../src/random.js';
import { inReference } from '../helpers/runtime.js';

const cfg: GPTConfig = { vocabSize: 11, blockSize: 6, nLayer: 2, nHead: 2, nEmbd: 8, seed: 5, dropout: 0.1 };

/** First mismatch of two arrays compared exactly, or null. */
function firstMismatch(a: ArrayLike<number>, b: ArrayLike<number>): string | null {
  if (a.length !== b.length) return `length ${a.length} vs ${b.length}`;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return `[${i}] ${a[i]} vs ${b[i]}`;
  return null;
}

class Holder extends Module<[], never> {
  forward(): never {
    throw new Error('no forward');
  }
}

describe('withParameterHook', () => {
  it('hands every GPT parameter over once, at creation, in registration order, with its final initial values', () =>
    inReference(() => {
      const seen: { p: Parameter; name: string; values: number[]; later: number }[] = [];
      let created = 0;
      const gpt = withParameterHook(
        (p, _module, name) => {
          seen.push({ p, name, values: p.toArray(), later: -1 });
          for (const s of seen) s.later += 1;
          created += 1;
        },
        () => new GPT(cfg),
      );
      const named = gpt.namedParameters();
      expect(created).toBe(named.length); // the tied lm_head.weight is not handed over again
      expect(seen.map((s) => s.p)).toEqual(named.map(([, p]) => p));
      expect(seen.map((s) => s.name)).toEqual(named.map(([n]) => n.slice(n.lastIndexOf('.') + 1)));
      // Each parameter was handed over before the next one existed, already holding what it holds now.
      expect(seen.map((s) => s.later)).toEqual(named.map((_, i) => named.length - 1 - i));
      for (const [i, [n, p]] of named.entries()) expect(firstMismatch(seen[i]!.values, p.toArray()), n).toBeNull();
      // Outside the scope nothing is handed over.
      new Linear(2, 3);
      expect(created).toBe(named.length);
    }));

  it('gives the weights and dropout stream of the former build-then-initialise order', () =>
    inReference(() => {
      // The former order: every layer with its default init, in construction order, then GPT-2's
      // init over the parameters in registration order, all from one generator.
      const g = new Generator(cfg.seed);
      const c = cfg.nEmbd;
      new Embedding(cfg.vocabSize, c, { generator: g });
      new Embedding(cfg.blockSize, c, { generator: g });
      for (let l = 0; l < cfg.nLayer; l++) for (const [i, o] of [[c, 3 * c], [c, c], [c, 4 * c], [4 * c, c]] as const) new Linear(i, o, { generator: g });
      const gpt = new GPT(cfg);
      for (const [name, p] of gpt.namedParameters()) {
        let want: number[];
        if (name.endsWith('.bias')) want = zeros(p.shape).toArray();
        else if (name.includes('ln_')) want = new Array<number>(p.numel).fill(1);
        else want = randn(p.shape, { generator: g, std: name.endsWith('c_proj.weight') ? 0.02 / Math.sqrt(2 * cfg.nLayer) : 0.02 }).toArray();
        expect(firstMismatch(p.toArray(), want), name).toBeNull();
      }
      expect(gpt.transformer.drop.generator.getState()).toEqual(g.getState());
    }));

  it('nests (innermost first), unwinds on errors and takes only synchronous builds', () =>
    inReference(() => {
      const order: string[] = [];
      withParameterHook(
        (p) => order.push(`outer ${p.shape.join('x')}`),
        () =>
          withParameterHook(
            (p) => order.push(`inner ${p.shape.join('x')}`),
            () => new Linear(2, 3, { bias: false }),
          ),
      );
      expect(order).toEqual(['inner 3x2', 'outer 3x2']);
      expect(() =>
        withParameterHook(
          () => order.push('failing'),
          () => {
            throw new Error('build failed');
          },
        ),
      ).toThrow('build failed');
      expect(() => withParameterHook(() => order.push('async'), () => Promise.resolve(1))).toThrow(DSError);
      const holder = new Holder();
      holder.registerParameter('w', new Linear(2, 2, { bias: false }).weight);
      expect(order).toEqual(['inner 3x2', 'outer 3x2']);
    }));
});
