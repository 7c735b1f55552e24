// Flash-style causal attention against the reference (which forms every score explicitly): one
// and several key blocks (block 64), head dims below and above a vector, every dtype and ISA; few
// heads (query blocks of a head split over threads) and many (one head per item: bh = 9 >= 2 x
// threads on up to 4 threads).
import { describe, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';

import { createReferenceKernels } from '../../src/reference/index.js';
import { FLOAT_DTYPES, cpu, expectCloseArrays, forEachIsa, randomArray, tol, zeros } from './helpers.js';

const ref = createReferenceKernels();

describe('attention', () => {
  for (const dtype of FLOAT_DTYPES) {
    it(`forward and backward match the reference (${dtype})`, () => {
      const shapes: [number, number, number][] = dtype === 'f32'
        ? [[1, 1, 1], [2, 5, 8], [3, 64, 24], [2, 65, 16], [2, 130, 64], [1, 200, 3], [9, 70, 16]]
        : [[2, 5, 8], [2, 130, 64], [9, 70, 16]];
      for (const [bh, t, d] of shapes) {
        const n = bh * t * d;
        const scale = 1 / Math.sqrt(d);
        const q = randomArray(dtype, n, t + d, -2, 2);
        const k = randomArray(dtype, n, t + d + 1, -2, 2);
        const v = randomArray(dtype, n, t + d + 2);
        const dout = randomArray(dtype, n, t + d + 3);
        const out = zeros(dtype, n);
        const lse = new Float32Array(bh * t);
        ref.attentionForward(dtype, q, k, v, out, lse, bh, t, d, scale);
        const dq = zeros(dtype, n);
        const dk = zeros(dtype, n);
        const dv = zeros(dtype, n);
        ref.attentionBackward(dtype, dout, q, k, v, out, lse, dq, dk, dv, bh, t, d, scale);
        forEachIsa(() => {
          const s = `${dtype} bh=${bh} t=${t} d=${d}`;
          const gout = zeros(dtype, n);
          const glse = new Float32Array(bh * t);
          cpu.attentionForward(dtype, q, k, v, gout, glse, bh, t, d, scale);
          expectCloseArrays(`attention out ${s}`, dtype, gout, out, tol(dtype, 5));
          expectClose(glse, lse, tol('f32', 10), `attention lse ${s}`);
          const gq = zeros(dtype, n);
          const gk = zeros(dtype, n);
          const gv = zeros(dtype, n);
          cpu.attentionBackward(dtype, dout, q, k, v, out, lse, gq, gk, gv, bh, t, d, scale);
          expectCloseArrays(`attention dq ${s}`, dtype, gq, dq, tol(dtype, 20));
          expectCloseArrays(`attention dk ${s}`, dtype, gk, dk, tol(dtype, 20));
          expectCloseArrays(`attention dv ${s}`, dtype, gv, dv, tol(dtype, 20));
        });
      }
    });
  }
});
