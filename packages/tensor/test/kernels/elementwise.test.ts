// unary, binary, scale, axpy and the reductions against the reference, under every ISA, at sizes
// around the vector widths, the 2048-element tile and the per-thread chunk.
import { describe, expect, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';

import { createReferenceKernels } from '../../src/reference/index.js';
import type { BinaryOp, FloatDType, UnaryOp } from '../../src/kernels/table.js';
import { FLOAT_DTYPES, clone, cpu, encode, expectCloseArrays, forEachIsa, randomArray, tol, zeros } from './helpers.js';

const ref = createReferenceKernels();
const SIZES = [1, 7, 16, 17, 31, 2053, 40009];

// Input ranges where each op is defined and well conditioned.
const RANGE: Record<UnaryOp, [number, number]> = {
  neg: [-5, 5], exp: [-20, 20], log: [1e-3, 1e3], sqrt: [0, 100], rsqrt: [1e-2, 100], tanh: [-6, 6],
  relu: [-3, 3], abs: [-3, 3], square: [-30, 30], sigmoid: [-15, 15], sign: [-3, 3],
};

describe('unary', () => {
  for (const op of Object.keys(RANGE) as UnaryOp[]) {
    it(`${op} matches the reference`, () => {
      for (const dtype of FLOAT_DTYPES) {
        for (const n of SIZES) {
          const [lo, hi] = RANGE[op];
          const x = randomArray(dtype, n, n * 31 + 1, lo, hi);
          const want = zeros(dtype, n);
          ref.unary(op, dtype, x, want, n);
          forEachIsa(() => {
            const got = zeros(dtype, n);
            cpu.unary(op, dtype, x, got, n);
            expectCloseArrays(`${op} ${dtype} n=${n}`, dtype, got, want, dtype === 'f32' ? { rtol: 3e-6, atol: 1e-7 } : tol(dtype));
          });
        }
      }
    });
  }

  it('handles special values like Math (exp/log/sqrt/tanh/sigmoid at 0, +-Inf, NaN, overflow)', () => {
    const xs = [0, -0, Infinity, -Infinity, NaN, 100, -100, 88.7, -87.5, 1e-30, -1e-30, 1e-40];
    const x = encode('f32', xs);
    for (const op of ['exp', 'log', 'sqrt', 'tanh', 'sigmoid', 'relu', 'abs'] as UnaryOp[]) {
      const want = zeros('f32', xs.length);
      ref.unary(op, 'f32', x, want, xs.length);
      forEachIsa(() => {
        const got = zeros('f32', xs.length);
        cpu.unary(op, 'f32', x, got, xs.length);
        expectCloseArrays(`${op} special`, 'f32', got, want, { rtol: 3e-6, atol: 1e-37 });
      });
    }
  });
});

describe('binary, scale, axpy', () => {
  for (const op of ['add', 'sub', 'mul', 'div', 'max', 'min'] as BinaryOp[]) {
    it(`${op} with same-shape, scalar and row-broadcast b`, () => {
      for (const dtype of FLOAT_DTYPES) {
        for (const [n, bn] of [[1, 1], [17, 17], [17, 1], [2053, 2053], [70001, 70001], [6 * 13, 13], [20 * 2100, 2100], [40 * 3, 3]] as const) {
          const a = randomArray(dtype, n, n + 3, -2, 2);
          const b = randomArray(dtype, bn, bn + 5, 0.5, 2);
          if (op === 'max' && n > 2 && dtype !== 'bf16') (a as Float32Array | Uint16Array)[1] = dtype === 'f32' ? NaN : 0x7e00;
          const want = zeros(dtype, n);
          ref.binary(op, dtype, a, b, want, n, bn);
          forEachIsa(() => {
            const got = zeros(dtype, n);
            cpu.binary(op, dtype, a, b, got, n, bn);
            expectCloseArrays(`${op} ${dtype} n=${n} bn=${bn}`, dtype, got, want);
          });
        }
      }
    });
  }

  it('scale (also in place) and axpy into f32 or the same dtype', () => {
    for (const dtype of FLOAT_DTYPES) {
      for (const n of SIZES) {
        const x = randomArray(dtype, n, n, -3, 3);
        const want = zeros(dtype, n);
        ref.scale(dtype, x, want, n, 0.37, -1.25);
        for (const yDtype of ['f32', dtype] as FloatDType[]) {
          const y0 = randomArray(yDtype, n, n + 1);
          const wantY = clone(y0);
          ref.axpy(dtype, x, yDtype, wantY, n, -0.7);
          forEachIsa(() => {
            const got = zeros(dtype, n);
            cpu.scale(dtype, x, got, n, 0.37, -1.25);
            expectCloseArrays(`scale ${dtype} n=${n}`, dtype, got, want);
            const inPlace = clone(x);
            cpu.scale(dtype, inPlace, inPlace, n, 0.37, -1.25);
            expectCloseArrays(`scale in place ${dtype} n=${n}`, dtype, inPlace, want);
            const y = clone(y0);
            cpu.axpy(dtype, x, yDtype, y, n, -0.7);
            expectCloseArrays(`axpy ${dtype}->${yDtype} n=${n}`, yDtype, y, wantY);
          });
        }
      }
    }
  });
});

describe('reductions', () => {
  it('sum and sumSquares accumulate in f64', () => {
    for (const dtype of FLOAT_DTYPES) {
      for (const n of [0, ...SIZES, 100003]) {
        const x = randomArray(dtype, n, n + 7, -1, 1);
        const s = ref.sum(dtype, x, n);
        const q = ref.sumSquares(dtype, x, n);
        forEachIsa(() => {
          expectClose([cpu.sum(dtype, x, n)], [s], { rtol: 1e-12, atol: 1e-12 }, `sum ${dtype} n=${n}`);
          expectClose([cpu.sumSquares(dtype, x, n)], [q], { rtol: 1e-12, atol: 1e-12 }, `sumSquares ${dtype} n=${n}`);
        });
      }
    }
  });

  it('hasInfNan finds one bad element anywhere, for each dtype', () => {
    const bad = { f32: [NaN, Infinity, -Infinity], bf16: [0x7fc0, 0x7f80, 0xff80], f16: [0x7e00, 0x7c00, 0xfc00] } as const;
    for (const dtype of FLOAT_DTYPES) {
      const n = 70001;
      const x = randomArray(dtype, n, 3, -60000, 60000);
      forEachIsa(() => {
        expect(cpu.hasInfNan(dtype, x, n)).toBe(false);
        for (const at of [0, 15, 16, 2050, 35000, n - 1]) {
          for (const v of bad[dtype]) {
            const y = clone(x);
            y[at] = v;
            expect(cpu.hasInfNan(dtype, y, n), `${dtype} value ${v} at ${at}`).toBe(true);
            expect(cpu.hasInfNan(dtype, y, at), `${dtype} prefix before ${at}`).toBe(false);
          }
        }
      });
    }
  });

  it('sumRows (overwrite and accumulate) and sumLastDim', () => {
    for (const dtype of FLOAT_DTYPES) {
      for (const [rows, cols] of [[1, 1], [3, 5], [300, 17], [7, 2049], [40, 5000], [1, 70001]] as const) {
        const x = randomArray(dtype, rows * cols, rows + cols);
        const start = randomArray('f32', cols, 11) as Float32Array;
        const wantOver = new Float32Array(cols);
        const wantAcc = clone(start);
        ref.sumRows(dtype, x, rows, cols, wantOver, false);
        ref.sumRows(dtype, x, rows, cols, wantAcc, true);
        const wantLast = zeros(dtype, rows);
        ref.sumLastDim(dtype, x, rows, cols, wantLast);
        forEachIsa(() => {
          const over = new Float32Array(cols).fill(123);
          cpu.sumRows(dtype, x, rows, cols, over, false);
          expectClose(over, wantOver, tol('f32', rows), `sumRows ${dtype} [${rows},${cols}]`);
          const acc = clone(start);
          cpu.sumRows(dtype, x, rows, cols, acc, true);
          expectClose(acc, wantAcc, tol('f32', rows), `sumRows accumulate ${dtype} [${rows},${cols}]`);
          const last = zeros(dtype, rows);
          cpu.sumLastDim(dtype, x, rows, cols, last);
          expectCloseArrays(`sumLastDim ${dtype} [${rows},${cols}]`, dtype, last, wantLast, tol(dtype, Math.sqrt(cols)));
        });
      }
    }
  });
});
