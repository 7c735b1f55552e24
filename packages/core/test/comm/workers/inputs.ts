// Deterministic per-rank inputs and element-wise comparison shared by the comm workers: every rank
// can rebuild every other rank's input, so each checks its own result against src/comm/reference.ts.
import { expectClose } from '@ds-internal/test-kit';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, type DType } from '@ds/tensor';

import type { CommArray, CommBuffer } from '../../../src/comm/index.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function alloc(dtype: DType, n: number): CommBuffer {
  const array = dtype === 'f32' ? new Float32Array(n) : dtype === 'i32' ? new Int32Array(n) : dtype === 'u8' ? new Uint8Array(n) : new Uint16Array(n);
  return { dtype, array };
}

/** Input of `rank` for case `tag`: floats in [-8, 8) rounded to the dtype, integers over their range. */
export function input(dtype: DType, n: number, rank: number, tag: number): CommBuffer {
  const b = alloc(dtype, n);
  const next = rng(rank * 7919 + tag * 104729 + 1);
  for (let i = 0; i < n; i++) {
    const x = next();
    switch (dtype) {
      case 'f32':
        b.array[i] = Math.fround(x * 16 - 8);
        break;
      case 'bf16':
        b.array[i] = f32ToBf16(x * 16 - 8);
        break;
      case 'f16':
        b.array[i] = f32ToF16(x * 16 - 8);
        break;
      case 'i32':
        b.array[i] = Math.floor(x * 4294967296) | 0;
        break;
      case 'u8':
        b.array[i] = Math.floor(x * 256);
        break;
    }
  }
  return b;
}

/** Throws with the first mismatches when `got` and `want` differ in any element (bitwise). */
export function expectEqual(what: string, got: CommArray, want: CommArray): void {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length}, expected ${want.length}`);
  const bad: string[] = [];
  let count = 0;
  for (let i = 0; i < got.length; i++) {
    if (Object.is(got[i], want[i])) continue;
    count++;
    if (bad.length < 5) bad.push(`[${i}] got ${got[i]} want ${want[i]}`);
  }
  if (count) throw new Error(`${what}: ${count} of ${got.length} elements differ: ${bad.join('; ')}`);
}

/** Like expectEqual for float dtypes (decoded), allowing a difference of a few units in the last place. */
export function expectCloseAs(what: string, dtype: DType, got: CommArray, want: CommArray): void {
  const decode = (a: CommArray): number[] => Array.from(a, (v) => (dtype === 'bf16' ? bf16ToF32(v) : dtype === 'f16' ? f16ToF32(v) : v));
  const eps = dtype === 'bf16' ? 2 ** -7 : dtype === 'f16' ? 2 ** -10 : 2 ** -21;
  // Inputs lie in [-8, 8): intermediate sums of up to 4 ranks stay below 32.
  expectClose(decode(got), decode(want), { rtol: 0, atol: 32 * eps }, what);
}
