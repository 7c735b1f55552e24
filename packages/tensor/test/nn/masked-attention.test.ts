// The dense attention kernel with masks: bidirectional, causal, key padding and additive masks
// against a plain float64 softmax(q k^T * scale + mask) v written out here, gradients by finite
// differences, and the fused causal path taken when there are no masks.
import { describe, expect, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';

import { fromArray } from '../../src/create.js';
import { attendViaHeads, denseAttention } from '../../src/nn/attention.js';
import { causalAttention, causalAttentionPacked, maskedAttention } from '../../src/ops/attention.js';
import { mul, sum } from '../../src/ops/index.js';
import { getRuntime } from '../../src/runtime.js';
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

  it('reads the fused projection packed [B, T, 3C]: the values and gradient of split heads + causalAttention + merge', () => {
    expect(getRuntime().kernels('cpu').attentionPackedForward).toBeDefined();  // so the packed kernels run below
    const [B, T, H, D] = [2, 70, 3, 4];  // two key blocks of 64
    const [x1, x2] = [rand([B, T, 3 * H * D], 7), rand([B, T, 3 * H * D], 7)];
    const w = rand([B, T, H * D], 8);
    const split = { name: 'split', attend: (q: typeof x1, k: typeof x1, v: typeof x1, o: { scale: number }) => causalAttention(q, k, v, { scale: o.scale }) };
    const y1 = causalAttentionPacked(x1, H, { scale });
    const y2 = attendViaHeads(split, x2, H, { scale, causal: true });
    expect(y1.shape).toEqual([B, T, H * D]);
    expect(y1.toArray()).toEqual(y2.toArray());
    expect(denseAttention.attendPacked!(x1, H, { scale, causal: true }).toArray()).toEqual(y2.toArray());
    sum(mul(y1, w)).backward();
    sum(mul(y2, w)).backward();
    expect(x1.grad!.toArray()).toEqual(x2.grad!.toArray());
    expect(() => causalAttentionPacked(rand([2, 3, 10], 1), 2)).toThrow(/\[B, T, 3 C\] with C a multiple of nHead = 2/);
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
