import { describe, expect, it } from 'vitest';

import { baselines, bigramBitsPerByte, bitsPerByte, gzipBitsPerByte, unigramBitsPerByte, unigramProbs } from '../src/baselines.js';
import { mulberry32 } from '../src/rng.js';
import { joinDocuments, loadBrown, splitDocuments } from '../src/text.js';

const bytes = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));

describe('baselines', () => {
  it('converts nats per byte to bits per byte', () => {
    expect(bitsPerByte(Math.LN2)).toBeCloseTo(1, 12);
    expect(bitsPerByte(2)).toBeCloseTo(2 / Math.log(2), 12);
  });

  it('unigram: add-one smoothed byte frequencies, scored on the validation bytes', () => {
    expect(unigramProbs(bytes('some text'), 256).reduce((x, y) => x + y, 0)).toBeCloseTo(1, 12);
    const q = unigramProbs(Uint8Array.from([0, 0, 1]), 4);
    expect(Array.from(q)).toEqual([3 / 7, 2 / 7, 1 / 7, 1 / 7]);
    expect(unigramBitsPerByte(Uint8Array.from([0, 0, 1]), Uint8Array.from([0, 3]), 4)).toBeCloseTo(-(Math.log2(3 / 7) + Math.log2(1 / 7)) / 2, 12);
  });

  it('bigram: Witten-Bell interpolation with the unigram, by hand on a small case', () => {
    const train = Uint8Array.from([0, 1, 0, 1, 0, 2]);
    const uni = [4 / 10, 3 / 10, 2 / 10, 1 / 10]; // counts 3, 2, 1, 0 plus one, over 6 + 4
    // Context 0 is followed by 1, 1, 2: c(0) = 3, T(0) = 2. Context 1 by 0, 0: c(1) = 2, T(1) = 1.
    const p01 = (2 + 2 * uni[1]!) / (3 + 2);
    const p10 = (2 + 1 * uni[0]!) / (2 + 1);
    const p03 = (0 + 2 * uni[3]!) / (3 + 2);
    const p3to0 = uni[0]!; // context 3 never seen: the unigram
    const val = Uint8Array.from([0, 1, 0, 3, 0]);
    const expected = -(Math.log2(uni[0]!) + Math.log2(p01) + Math.log2(p10) + Math.log2(p03) + Math.log2(p3to0)) / 5;
    expect(bigramBitsPerByte(train, val, 4)).toBeCloseTo(expected, 12);
  });

  it('gzip: 8 x compressed size / raw size', () => {
    const text = bytes('the cat sat on the mat. '.repeat(200));
    const bpb = gzipBitsPerByte(text);
    expect(bpb).toBeGreaterThan(0);
    expect(bpb).toBeLessThan(0.5); // very repetitive text compresses well
    const rand = mulberry32(3);
    const random = Uint8Array.from({ length: 4096 }, () => Math.floor(rand() * 256));
    expect(gzipBitsPerByte(random)).toBeGreaterThan(7.5); // scrambled bytes do not
    expect(() => gzipBitsPerByte(new Uint8Array(0))).toThrow(RangeError);
  });

  it('on the Brown split: unigram > bigram > gzip, at the values English text gives', () => {
    const { train, val } = splitDocuments(loadBrown(), 10);
    const b = baselines(Buffer.from(joinDocuments(train)), Buffer.from(joinDocuments(val)));
    expect(b.unigram).toBeGreaterThan(b.bigram);
    expect(b.bigram).toBeGreaterThan(b.gzip);
    expect(b.unigram).toBeGreaterThan(4.2);
    expect(b.unigram).toBeLessThan(4.7);
    expect(b.gzip).toBeGreaterThan(2.7);
    expect(b.gzip).toBeLessThan(3.3);
  });
});
