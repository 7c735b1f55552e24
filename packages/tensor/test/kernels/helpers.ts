// Shared by the kernel tests: seeded random inputs, per-dtype tolerances for the test kit's
// expectClose, comparisons of 16-bit arrays after decoding, and a loop that runs a
// check under every ISA this CPU has (scalar always included).
import { expectClose, type Tolerance } from '@ds-internal/test-kit';

import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../src/dtype.js';
import { createCpuKernels, type CpuKernels } from '../../src/backends/cpu.js';
import type { HostFArray as FArray, FloatDType, HostKArray as KArray } from '../../src/kernels/table.js';

export const cpu: CpuKernels = createCpuKernels();
export const ISAS: readonly string[] = cpu.availableIsas();
export const FLOAT_DTYPES: readonly FloatDType[] = ['f32', 'bf16', 'f16'];

/** Runs fn under each available ISA, naming the ISA in any failure; restores 'auto' afterwards. */
export function forEachIsa(fn: (isa: string) => void): void {
  try {
    for (const isa of ISAS) {
      const got = cpu.setIsa(isa as 'scalar');
      if (got !== isa) throw new Error(`setIsa('${isa}') selected '${got}'`);
      try {
        fn(isa);
      } catch (err) {
        (err as Error).message = `[isa ${isa}] ${(err as Error).message}`;
        throw err;
      }
    }
  } finally {
    cpu.setIsa('auto');
  }
}

/** Mulberry32: a small seeded generator, so a failing case reproduces. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function encode(dtype: FloatDType, values: ArrayLike<number>): FArray {
  if (dtype === 'f32') return Float32Array.from(values);
  const enc = dtype === 'bf16' ? f32ToBf16 : f32ToF16;
  return Uint16Array.from(values, (v) => enc(v));
}

export function decode(dtype: FloatDType, a: KArray): number[] {
  if (dtype === 'f32' || a instanceof Int32Array || a instanceof Uint8Array || a instanceof Float32Array) return Array.from(a);
  const dec = dtype === 'bf16' ? bf16ToF32 : f16ToF32;
  return Array.from(a, (h) => dec(h));
}

/** n values uniform in [lo, hi), stored in dtype. */
export function randomArray(dtype: FloatDType, n: number, seed: number, lo = -1, hi = 1): FArray {
  const r = rng(seed);
  return encode(dtype, Array.from({ length: n }, () => lo + (hi - lo) * r()));
}

export function zeros(dtype: FloatDType, n: number): FArray {
  return dtype === 'f32' ? new Float32Array(n) : new Uint16Array(n);
}

export function clone<T extends KArray>(a: T): T {
  return a.slice() as T;
}

/** Tolerances by the dtype results are stored in: about one rounding step of it, plus f32 arithmetic. */
export function tol(dtype: FloatDType, scale = 1): Tolerance {
  if (dtype === 'bf16') return { rtol: 1e-2, atol: 1e-2 * scale };
  if (dtype === 'f16') return { rtol: 2e-3, atol: 2e-3 * scale };
  return { rtol: 1e-5, atol: 1e-6 * scale };
}

/** Compares two arrays of a float dtype after decoding. */
export function expectCloseArrays(name: string, dtype: FloatDType, got: FArray, want: FArray, t: Tolerance = tol(dtype)): void {
  expectClose(decode(dtype, got), decode(dtype, want), t, name);
}

/** Bitwise equality for integer/raw arrays, reporting the first differences. */
export function expectBits(name: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  expectClose(got, want, { rtol: 0, atol: 0 }, name);
}
