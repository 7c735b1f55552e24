// The sampler: padding the context for block-sparse attention must not change what is sampled
// (the model is causal: the next token is read at the last real position).
import { describe, expect, it } from 'vitest';

import { fromArray, type Tensor } from '@ds/tensor';

import { generate } from '../src/sample.js';

/** A causal "model": the logits at position t favour token (ids[t] + 1) % vocab; it records the lengths it was given. */
function echoModel(vocab: number, lengths: number[]) {
  return (ids: Tensor): Tensor => {
    const t = ids.shape[1]!;
    lengths.push(t);
    const x = ids.toArray();
    const logits = new Array<number>(t * vocab).fill(0);
    for (let i = 0; i < t; i++) logits[i * vocab + ((x[i]! + 1) % vocab)] = 50;
    return fromArray(logits, [1, t, vocab]);
  };
}

describe('generate', () => {
  it('pads the context to padTo and reads the next token at the last real position', () => {
    const plain: number[] = [];
    const padded: number[] = [];
    const opts = { maxNewTokens: 5, temperature: 0.5, blockSize: 64, seed: 1 };
    const a = generate(echoModel(10, plain), [3, 4, 5], opts);
    const b = generate(echoModel(10, padded), [3, 4, 5], { ...opts, padTo: 16 });
    expect(a).toEqual([3, 4, 5, 6, 7, 8, 9, 0]);
    expect(b).toEqual(a);
    expect(plain).toEqual([3, 4, 5, 6, 7]);
    expect(padded).toEqual([16, 16, 16, 16, 16]);
  });
});
