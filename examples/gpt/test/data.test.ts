import { describe, expect, it } from 'vitest';

import { generateCorpus } from '../src/corpus.js';
import { sampleBatch, splitTokens } from '../src/data.js';
import { decode, encode, unigramEntropy } from '../src/tokenizer.js';

describe('corpus', () => {
  it('is the same text for the same seed and different for another', () => {
    const a = generateCorpus(20_000, 7);
    expect(a.length).toBe(20_000);
    expect(generateCorpus(20_000, 7)).toBe(a);
    expect(generateCorpus(20_000, 8)).not.toBe(a);
    expect(/^[\x20-\x7e\n]*$/.test(a)).toBe(true);
  });

  it('states each character fact consistently (the structure a model can learn)', () => {
    const text = generateCorpus(200_000);
    const homes = new Map<string, Set<string>>();
    for (const m of text.matchAll(/(\w+) lives in ([^.]+)\./g)) {
      if (!homes.has(m[1]!)) homes.set(m[1]!, new Set());
      homes.get(m[1]!)!.add(m[2]!);
    }
    expect(homes.size).toBeGreaterThan(5);
    for (const places of homes.values()) expect(places.size).toBe(1);
  });
});

describe('tokenizer', () => {
  it('round-trips text through bytes', () => {
    const s = 'Mara lives in Harbor.\nné';
    expect(decode(encode(s))).toBe(s);
    expect(encode('AB')).toEqual(Int32Array.from([65, 66]));
  });

  it('computes the unigram entropy in nats', () => {
    expect(unigramEntropy(Int32Array.from([1, 1, 1, 1]))).toBe(0);
    expect(unigramEntropy(Int32Array.from([0, 1, 2, 3]))).toBeCloseTo(Math.log(4), 12);
    expect(unigramEntropy(Int32Array.from([0, 0, 0, 1]))).toBeCloseTo(-(0.75 * Math.log(0.75) + 0.25 * Math.log(0.25)), 12);
  });
});

describe('data', () => {
  const ids = encode(generateCorpus(10_000));

  it('splits off a contiguous validation tail', () => {
    const { train, val } = splitTokens(ids, 0.1);
    expect(train.length + val.length).toBe(ids.length);
    expect(val[0]).toBe(ids[train.length]);
    expect(() => splitTokens(ids, 1)).toThrow(RangeError);
  });

  it('samples next-token windows, different per rank and step, repeatable', () => {
    const b = sampleBatch(ids, 4, 32, 1, 0, 5);
    expect(b.inputs.length).toBe(128);
    for (let r = 0; r < 4; r++) {
      for (let t = 0; t < 31; t++) expect(b.targets[r * 32 + t]).toBe(b.inputs[r * 32 + t + 1]);
    }
    expect(sampleBatch(ids, 4, 32, 1, 0, 5)).toEqual(b);
    expect(sampleBatch(ids, 4, 32, 1, 1, 5).inputs).not.toEqual(b.inputs);
    expect(sampleBatch(ids, 4, 32, 1, 0, 6).inputs).not.toEqual(b.inputs);
    expect(() => sampleBatch(ids.subarray(0, 10), 1, 32, 1, 0, 0)).toThrow(/shorter than one window/);
  });
});
