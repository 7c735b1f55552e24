// Flash-style causal attention against the reference (which forms every score explicitly): one
// and several key blocks (block 64), head dims below and above a vector, every dtype and ISA (bf16 on
// an AVX512_BF16 CPU takes the vdpbf16ps path for even d: t odd pads a key pair, d = 6 leaves pairs
// past the 8 x 8 transposes, d = 5 goes the f32 way); few
// heads (query blocks of a head split over threads) and many (one head per item: bh = 9 >= 2 x
// threads on up to 4 threads).
import { describe, expect, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';

import { createReferenceKernels } from '../../src/reference/index.js';
import type { HostFArray as FArray } from '../../src/kernels/table.js';
import { FLOAT_DTYPES, cpu, decode, expectCloseArrays, forEachIsa, randomArray, tol, zeros } from './helpers.js';

const ref = createReferenceKernels();

describe('attention', () => {
  for (const dtype of FLOAT_DTYPES) {
    it(`forward and backward match the reference (${dtype})`, () => {
      const shapes: [number, number, number][] = dtype === 'f32'
        ? [[1, 1, 1], [2, 5, 8], [3, 64, 24], [2, 65, 16], [2, 130, 64], [1, 200, 3], [9, 70, 16]]
        : [[2, 5, 8], [2, 130, 64], [9, 70, 16], [1, 67, 6], [2, 9, 5], [1, 1, 2], [3, 3, 4], [1, 129, 128]];
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

  it('the packed kernels (qkv [b, t, 3, heads, d] in, [b, t, heads, d] out) give the bits of the contiguous ones on permuted copies', () => {
    // [b, t, 3, H, d] -> q, k or v [b, H, t, d], and [b, H, t, d] <-> [b, t, H, d].
    const split = (x: FArray, b: number, t: number, h: number, d: number, which: number) => {
      const y = x instanceof Float32Array ? new Float32Array(b * h * t * d) : new Uint16Array(b * h * t * d);
      for (let bi = 0; bi < b; bi++) for (let hi = 0; hi < h; hi++) for (let ti = 0; ti < t; ti++) for (let c = 0; c < d; c++)
        y[((bi * h + hi) * t + ti) * d + c] = x[(((bi * t + ti) * 3 + which) * h + hi) * d + c]!;
      return y;
    };
    const merged = (x: FArray, b: number, t: number, h: number, d: number, toHeads: boolean) => {
      const y = x instanceof Float32Array ? new Float32Array(x.length) : new Uint16Array(x.length);
      for (let bi = 0; bi < b; bi++) for (let hi = 0; hi < h; hi++) for (let ti = 0; ti < t; ti++) for (let c = 0; c < d; c++) {
        const heads = ((bi * h + hi) * t + ti) * d + c, rows = ((bi * t + ti) * h + hi) * d + c;
        y[toHeads ? heads : rows] = x[toHeads ? rows : heads]!;
      }
      return y;
    };
    const threads = cpu.getNumThreads();
    try {
      for (const dtype of FLOAT_DTYPES) {
        // heads 1 and several; t below, across and not a multiple of the 64-row block; b * heads below
        // and above 2 x threads (query blocks split over items, or whole heads).
        for (const [b, t, h, d] of [[1, 5, 1, 8], [2, 70, 3, 16], [1, 130, 2, 24], [3, 65, 6, 8]] as const) {
          const c = h * d, bh = b * h, scale = 0.3;
          const qkv = randomArray(dtype, b * t * 3 * c, b + t + h, -2, 2);
          const dout = randomArray(dtype, b * t * c, d + 5);
          const [q, k, v] = [0, 1, 2].map((i) => split(qkv, b, t, h, d, i)) as [FArray, FArray, FArray];
          const dHeads = merged(dout, b, t, h, d, true);
          forEachIsa((isa) => {
            for (const th of [1, 2, 3]) {
              cpu.setNumThreads(th);
              const s = `${dtype} b=${b} t=${t} heads=${h} d=${d} (${isa}, ${th} threads)`;
              const out = zeros(dtype, bh * t * d), lse = new Float32Array(bh * t);
              cpu.attentionForward(dtype, q, k, v, out, lse, bh, t, d, scale);
              const g = [0, 1, 2].map(() => zeros(dtype, bh * t * d)) as [FArray, FArray, FArray];
              cpu.attentionBackward(dtype, dHeads, q, k, v, out, lse, g[0], g[1], g[2], bh, t, d, scale);
              const pout = zeros(dtype, b * t * c), plse = new Float32Array(bh * t);
              cpu.attentionPackedForward!(dtype, qkv, pout, plse, b, t, h, d, scale);
              expect(Buffer.from(pout.buffer).equals(Buffer.from(merged(out, b, t, h, d, false).buffer)), `out ${s}`).toBe(true);
              expect(Buffer.from(plse.buffer).equals(Buffer.from(lse.buffer)), `lse ${s}`).toBe(true);
              const dqkv = dtype === 'f32' ? new Float32Array(b * t * 3 * c).fill(NaN) : new Uint16Array(b * t * 3 * c).fill(0x7fc1);
              cpu.attentionPackedBackward!(dtype, dout, qkv, pout, plse, dqkv, b, t, h, d, scale);
              // Every element written, each of dq, dk, dv where the contiguous kernel put it.
              for (let i = 0; i < 3; i++) expect(Buffer.from(split(dqkv, b, t, h, d, i).buffer).equals(Buffer.from(g[i].buffer)), `d${'qkv'[i]} ${s}`).toBe(true);
            }
          });
        }
      }
    } finally {
      cpu.setNumThreads(threads);
    }
    expect(() => cpu.attentionPackedForward!('f32', new Float32Array(10), new Float32Array(4), new Float32Array(2), 1, 2, 1, 2, 1)).toThrow(/qkv.*\[b, t, 3, heads, d\]/);
  });

  it('bf16 stays within 2^-7 of the largest value of each output from the f32 kernel on the same inputs, on every ISA', () => {
    // The reference comparison above allows bf16 a tolerance that a dropped key pair can hide in; this
    // one measures against the f32 kernel run on the widened inputs (exact in f32), where what remains
    // is bf16's rounding of P and dS as operands (the vdpbf16ps path) and of the outputs: seen up to
    // 4.7e-3 of the largest value on these shapes, and 0.017-0.39 with the last key pair of a diagonal
    // dQ half left out.
    for (const [bh, t, d] of [[3, 130, 64], [2, 67, 6], [4, 64, 16], [1, 200, 32], [2, 1024, 64], [1, 3, 128]] as const) {
      const n = bh * t * d;
      const scale = 1 / Math.sqrt(d);
      const [q, k, v, dout] = [0, 1, 2, 3].map((i) => randomArray('bf16', n, 90 + i, -2, 2)) as [FArray, FArray, FArray, FArray];
      const wide = (a: FArray) => new Float32Array(decode('bf16', a));
      forEachIsa((isa) => {
        const out = zeros('bf16', n), lse = new Float32Array(bh * t);
        cpu.attentionForward('bf16', q, k, v, out, lse, bh, t, d, scale);
        const g = [zeros('bf16', n), zeros('bf16', n), zeros('bf16', n)];
        cpu.attentionBackward('bf16', dout, q, k, v, out, lse, g[0]!, g[1]!, g[2]!, bh, t, d, scale);
        const out32 = new Float32Array(n), lse32 = new Float32Array(bh * t);
        cpu.attentionForward('f32', wide(q), wide(k), wide(v), out32, lse32, bh, t, d, scale);
        const g32 = [new Float32Array(n), new Float32Array(n), new Float32Array(n)];
        cpu.attentionBackward('f32', wide(dout), wide(q), wide(k), wide(v), wide(out), lse, g32[0]!, g32[1]!, g32[2]!, bh, t, d, scale);
        const s = `bh=${bh} t=${t} d=${d} (${isa})`;
        expectClose(lse, lse32, { rtol: 1e-3, atol: 1e-3 }, `lse ${s}`);
        const outs: [string, FArray, Float32Array][] = [['out', out, out32], ['dq', g[0]!, g32[0]!], ['dk', g[1]!, g32[1]!], ['dv', g[2]!, g32[2]!]];
        for (const [name, got, want] of outs) {
          const largest = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
          expectClose(decode('bf16', got), want, { rtol: 0, atol: largest / 128 }, `${name} ${s}`);
        }
      });
    }
  });

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
