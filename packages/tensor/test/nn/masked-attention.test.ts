// The dense attention kernel with masks: bidirectional, causal, key padding and additive masks
// against a plain float64 softmax(q k^T * scale + mask) v written out here, gradients by finite
// differences, and the fused causal path taken when there are no masks.
import { describe, expect, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';

import { fromArray } from '../../src/create.js';
import { denseAttention } from '../../src/nn/attention.js';
import { causalAttention, maskedAttention } from '../../src/ops/attention.js';
import { gradcheck, rand } from '../helpers/gradcheck.js';

/** softmax(q k^T * scale + add) v per (b, h), in float64; `keep(b, j)` false masks key j, `causal` masks j > i. */
function reference(q: number[], k: number[], v: number[], [B, H, T, D]: number[], scale: number, o: { causal: boolean; keep?: (b: number, j: number) => boolean; add?: (i: number, j: number) => number }): number[] {
  const out = new Array<number>(B! * H! * T! * D!).fill(0);
  for (let b = 0; b < B!; b++) {
    for (let h = 0; h < H!; h++) {
      const base = (b * H! + h) * T! * D!;
      for (let i = 0; i < T!; i++) {
        const s: number[] = [];
        for (let j = 0; j < T!; j++) {
          let dot = 0;
          for (let d = 0; d < D!; d++) dot += q[base + i * D! + d]! * k[base + j * D! + d]!;
          const masked = (o.causal && j > i) || (o.keep && !o.keep(b, j));
          s.push(masked ? -Infinity : dot * scale + (o.add?.(i, j) ?? 0));
        }
        const m = Math.max(...s);
        const e = s.map((x) => Math.exp(x - m));
        const z = e.reduce((a, x) => a + x, 0);
        for (let d = 0; d < D!; d++) out[base + i * D! + d] = e.reduce((a, x, j) => a + (x / z) * v[base + j * D! + d]!, 0);
      }
    }
  }
  return out;
}

const SHAPE = [2, 2, 5, 3];

describe('dense attention with masks', () => {
  const q = rand(SHAPE, 1);
  const k = rand(SHAPE, 2);
  const v = rand(SHAPE, 3);
  const [qa, ka, va] = [q.toArray(), k.toArray(), v.toArray()];
  const scale = 0.7;

  it('bidirectional, causal, key padding and additive masks equal the float64 reference', () => {
    expectClose(maskedAttention(q, k, v, { scale, causal: false }).toArray(), reference(qa, ka, va, SHAPE, scale, { causal: false }), { rtol: 1e-5, atol: 1e-6 }, 'bidirectional');
    const pad = fromArray([1, 1, 1, 0, 0, 1, 0, 1, 1, 1], [2, 5]);
    const keep = (b: number, j: number) => [[1, 1, 1, 0, 0], [1, 0, 1, 1, 1]][b]![j] === 1;
    expectClose(maskedAttention(q, k, v, { scale, causal: false, keyPaddingMask: pad }).toArray(), reference(qa, ka, va, SHAPE, scale, { causal: false, keep }), { rtol: 1e-5, atol: 1e-6 }, 'key padding');
    const add = (i: number, j: number) => 0.3 * (i - j);
    const mask = fromArray(Array.from({ length: 25 }, (_, x) => add(Math.floor(x / 5), x % 5)), [5, 5]);
    expectClose(maskedAttention(q, k, v, { scale, causal: true, attnMask: mask }).toArray(), reference(qa, ka, va, SHAPE, scale, { causal: true, add }), { rtol: 1e-5, atol: 1e-6 }, 'causal + additive');
  });

  it('takes the fused causal kernel when there are no masks (same numbers as causalAttention)', () => {
    expect(denseAttention.attend(q, k, v, { scale, causal: true }).toArray()).toEqual(causalAttention(q, k, v, { scale }).toArray());
    expectClose(causalAttention(q, k, v, { scale }).toArray(), reference(qa, ka, va, SHAPE, scale, { causal: true }), { rtol: 1e-5, atol: 1e-6 }, 'fused causal');
  });

  it('rejects a key padding mask of the wrong shape, naming both shapes', () => {
    expect(() => maskedAttention(q, k, v, { scale, causal: false, keyPaddingMask: fromArray([1, 1], [1, 2]) })).toThrow(/keyPaddingMask \[1, 2\] must be \[B, T\] = \[2, 5\]/);
  });

  it('gradients match finite differences (bidirectional with both masks)', () => {
    gradcheck(
      (a, b, c) => maskedAttention(a!, b!, c!, { scale: 0.5, causal: false, keyPaddingMask: fromArray([1, 0, 1, 1], [1, 4]), attnMask: fromArray([0.1, -0.2, 0.3, 0, 0.2, 0.1, -0.1, 0.4, 0, 0, 0.5, -0.3, 0.2, 0.1, 0, 0], [4, 4]) }),
      () => [rand([1, 2, 4, 3], 11), rand([1, 2, 4, 3], 12), rand([1, 2, 4, 3], 13)],
    );
  });
});
