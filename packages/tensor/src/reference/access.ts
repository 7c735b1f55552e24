// Element access shared by the reference kernels: read any float dtype as a JS number (f64) and
// write a number back rounded to the dtype. The reference kernels do all arithmetic in JS numbers,
// so every sum they form is an f64 sum; only the stores round.
//
// In float64 check mode (see Runtime's `f64Check`) the arrays of 'f32' tensors are Float64Arrays;
// indexing them directly keeps these kernels exact in f64, which is what gradient checks need.

import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../dtype.js';
import type { HostFArray as FArray, FloatDType } from '../kernels/table.js';

export function rd(dtype: FloatDType, a: FArray, i: number): number {
  if (dtype === 'f32') return a[i]!;
  return dtype === 'bf16' ? bf16ToF32(a[i]!) : f16ToF32(a[i]!);
}

export function wr(dtype: FloatDType, a: FArray, i: number, v: number): void {
  if (dtype === 'f32') a[i] = v;
  else a[i] = dtype === 'bf16' ? f32ToBf16(v) : f32ToF16(v);
}

/** Reads n elements into a fresh Float64Array (row buffers of the nn kernels). */
export function readRow(dtype: FloatDType, a: FArray, start: number, n: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = rd(dtype, a, start + i);
  return out;
}
