// Flash-style causal attention against the reference (which forms every score explicitly): one
// and several key blocks (block 64), head dims below and above a vector, every dtype and ISA; few
// heads (query blocks of a head split over threads) and many (one head per item: bh = 9 >= 2 x
// threads on up to 4 threads).
import { describe, expect, it } from 'vitest';

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

  it('gives the same bits on 1 to 4 threads (heads and query blocks handed out as threads free up)', () => {
    const threads = cpu.getNumThreads();
    try {
      for (const [bh, t, d] of [[9, 130, 16], [2, 200, 32]] as const) {
        const n = bh * t * d;
        const [q, k, v, dout] = [0, 1, 2, 3].map((i) => randomArray('bf16', n, 70 + i, -2, 2));
        const runs = [1, 2, 3, 4].map((th) => {
          cpu.setNumThreads(th);
          const out = zeros('bf16', n);
          const lse = new Float32Array(bh * t);
          cpu.attentionForward('bf16', q!, k!, v!, out, lse, bh, t, d, 0.25);
          const g = [zeros('bf16', n), zeros('bf16', n), zeros('bf16', n)];
          cpu.attentionBackward('bf16', dout!, q!, k!, v!, out, lse, g[0]!, g[1]!, g[2]!, bh, t, d, 0.25);
          return [out, lse, ...g].map((a) => Buffer.from(a.buffer));
        });
        for (const r of runs.slice(1)) r.forEach((b, i) => expect(b.equals(runs[0]![i]!), `bh=${bh} t=${t} d=${d} output ${i}`).toBe(true));
      }
    } finally {
      cpu.setNumThreads(threads);
    }
  });
});
