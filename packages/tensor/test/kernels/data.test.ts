// cast, copy, fill and gather against the reference: bit-exact (NaN payloads aside).
import { describe, expect, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';

import { createReferenceKernels } from '../../src/reference/index.js';
import type { HostKArray as KArray } from '../../src/kernels/table.js';
import { cpu, expectBits, forEachIsa, rng } from './helpers.js';

const ref = createReferenceKernels();
type AnyDType = 'f32' | 'bf16' | 'f16' | 'i32' | 'u8';
const ALL: AnyDType[] = ['f32', 'bf16', 'f16', 'i32', 'u8'];

function alloc(dtype: AnyDType, n: number): KArray {
  if (dtype === 'f32') return new Float32Array(n);
  if (dtype === 'i32') return new Int32Array(n);
  if (dtype === 'u8') return new Uint8Array(n);
  return new Uint16Array(n);
}

// Awkward values: zeros, subnormals of each format, rounding ties, overflow, NaN, huge and negative.
const SPECIAL = [
  0, -0, 1, -1, 0.5, 1.5, 2.5, -2.5, 65504, 65520, 70000, -1e9, 3e9, 1e-8, 6e-8, 3e-8, 1e-40, -1e-45, 1.00390625,
  1.01171875, 255.5, 256, 257, -257, 1 + 2 ** -9, 1 + 3 * 2 ** -9, Infinity, -Infinity, NaN, 3.4e38, 2 ** 31, -(2 ** 31) - 1,
];

function sourceOf(dtype: AnyDType, n: number, seed: number): KArray {
  const r = rng(seed);
  const a = alloc(dtype, n);
  for (let i = 0; i < n; i++) {
    if (dtype === 'f32') (a as Float32Array)[i] = i < SPECIAL.length ? SPECIAL[i]! : (r() - 0.5) * 10 ** (r() * 12 - 6);
    else if (dtype === 'i32') a[i] = Math.floor((r() - 0.5) * 2 ** 32);
    else if (dtype === 'u8') a[i] = Math.floor(r() * 256);
    else a[i] = Math.floor(r() * 65536);  // every bit pattern: subnormals, Inf, NaN included
  }
  return a;
}

/** NaN-aware comparison of two arrays interpreted as numbers of `dtype`. */
function sameValues(name: string, dtype: AnyDType, got: KArray, want: KArray): void {
  if (dtype === 'bf16' || dtype === 'f16') {
    // Raw bits must match, except NaNs (both must be NaN, payloads may differ).
    const nanBits = (h: number) => (dtype === 'bf16' ? (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0 : (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0);
    const g = Array.from(got, (h) => (nanBits(h) ? NaN : h));
    const w = Array.from(want, (h) => (nanBits(h) ? NaN : h));
    expectClose(g, w, { rtol: 0, atol: 0 }, name);
  } else expectClose(Array.from(got), Array.from(want), { rtol: 0, atol: 0 }, name);
}

describe('cast', () => {
  for (const src of ALL) {
    for (const dst of ALL) {
      it(`${src} -> ${dst} matches the reference bit for bit`, () => {
        for (const n of [1, 7, 40, 3001, 40009]) {
          const x = sourceOf(src, n, n + 17);
          const want = alloc(dst, n);
          ref.cast(src, x, dst, want, n);
          forEachIsa(() => {
            const got = alloc(dst, n);
            cpu.cast(src, x, dst, got, n);
            sameValues(`cast ${src}->${dst} n=${n}`, dst, got, want);
          });
        }
      });
    }
  }
});

describe('copy and fill', () => {
  it('copies every element type and fills with rounded values', () => {
    for (const dtype of ALL) {
      for (const n of [0, 1, 33, 40009]) {
        const x = sourceOf(dtype, n, 5);
        forEachIsa(() => {
          const y = alloc(dtype, n + 3);
          y.fill(7);
          cpu.copy(x, y, n);
          expectBits(`copy ${dtype} n=${n}`, y.subarray(0, n), x);
          expect(Array.from(y.subarray(n))).toEqual([7, 7, 7]);
        });
        for (const value of [0, -1.3, 1 + 2 ** -9, 3e9, NaN, -Infinity]) {
          const want = alloc(dtype, n);
          ref.fill(dtype, want, n, value);
          forEachIsa(() => {
            const got = alloc(dtype, n);
            cpu.fill(dtype, got, n, value);
            sameValues(`fill ${dtype} ${value}`, dtype, got, want);
          });
        }
      }
    }
  });
});

describe('gather', () => {
  const cases: { shape: number[]; strides: number[]; offset: number }[] = [
    { shape: [], strides: [], offset: 3 },
    { shape: [5], strides: [1], offset: 2 },
    { shape: [4, 3], strides: [1, 4], offset: 0 },  // a transpose
    { shape: [3, 5, 7], strides: [35, 1, 5], offset: 1 },  // a permute
    { shape: [2, 3, 4], strides: [0, 4, 1], offset: 0 },  // broadcast over the first dim
    { shape: [6, 2], strides: [-2, 1], offset: 11 },  // a reversed view
    { shape: [3, 0, 2], strides: [2, 2, 1], offset: 0 },  // empty
    { shape: [2, 2, 3, 2, 2], strides: [48, 2, 16, 1, 4], offset: 5 },
    { shape: [40, 300], strides: [1, 41], offset: 0 },  // big enough to run on several threads
    // A head split's permute with a broadcast dim, 42000 rows of 4: the threads' slices start mid-way
    // through every leading index, where the row walk must pick up the right source position.
    { shape: [3, 40, 7, 50, 4], strides: [1000, 0, 4, 28, 1], offset: 7 },
    { shape: [5, 3, 2, 2000], strides: [-2, 11, 1, 0], offset: 12 },  // broadcast rows, a reversed dim
  ];
  for (const dtype of ['f32', 'bf16', 'i32', 'u8'] as AnyDType[]) {
    it(`matches the reference for ${dtype} views`, () => {
      for (const c of cases) {
        const total = c.shape.reduce((a, b) => a * b, 1);
        const src = sourceOf(dtype, 14000, 9);
        const want = alloc(dtype, total);
        ref.gather(dtype, src, c.offset, c.shape, c.strides, want);
        forEachIsa(() => {
          const got = alloc(dtype, total);
          cpu.gather(dtype, src, c.offset, c.shape, c.strides, got);
          sameValues(`gather ${JSON.stringify(c)}`, dtype, got, want);
        });
      }
    });
  }
});
