import { describe, expect, it } from 'vitest';

import { sampleBatch } from '../src/data.js';
import { decode, encode } from '../src/tokenizer.js';

describe('tokenizer', () => {
  it('round-trips text through bytes', () => {
    const s = 'The jury said "no".\nné';
    expect(decode(encode(s))).toBe(s);
    expect(encode('AB')).toEqual(Int32Array.from([65, 66]));
  });
});

describe('data', () => {
  const ids = encode(Array.from({ length: 600 }, (_, i) => `Sentence ${i} of the test text.`).join(' '));

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
