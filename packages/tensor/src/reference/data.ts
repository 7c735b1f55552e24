// Reference data movement: cast, copy, fill, strided gather.

import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../dtype.js';
import type { FloatDType, HostKArray as KArray } from '../kernels/table.js';

type AnyDType = FloatDType | 'i32' | 'u8';

function toNumber(dtype: AnyDType, a: KArray, i: number): number {
  if (dtype === 'bf16') return bf16ToF32(a[i]!);
  if (dtype === 'f16') return f16ToF32(a[i]!);
  return a[i]!;
}

function fromNumber(dtype: AnyDType, a: KArray, i: number, v: number): void {
  if (dtype === 'bf16') a[i] = f32ToBf16(v);
  else if (dtype === 'f16') a[i] = f32ToF16(v);
  // Int32Array / Uint8Array stores truncate toward zero and wrap; NaN becomes 0.
  else if (dtype === 'i32' || dtype === 'u8') a[i] = Number.isFinite(v) ? Math.trunc(v) : 0;
  else a[i] = v;
}

export function cast(srcDtype: AnyDType, src: KArray, dstDtype: AnyDType, dst: KArray, n: number): void {
  for (let i = 0; i < n; i++) fromNumber(dstDtype, dst, i, toNumber(srcDtype, src, i));
}

export function copy(src: KArray, dst: KArray, n: number): void {
  for (let i = 0; i < n; i++) dst[i] = src[i]!;
}

export function fill(dtype: AnyDType, x: KArray, n: number, value: number): void {
  for (let i = 0; i < n; i++) fromNumber(dtype, x, i, value);
}

/** Row-major walk over `shape`, reading src at offset + sum idx_d * strides[d]. */
export function gather(_dtype: AnyDType, src: KArray, offset: number, shape: readonly number[], strides: readonly number[], dst: KArray): void {
  const rank = shape.length;
  let total = 1;
  for (const s of shape) total *= s;
  if (total === 0) return;
  const idx = new Array<number>(rank).fill(0);
  let at = offset;
  for (let j = 0; j < total; j++) {
    dst[j] = src[at]!;
    // Advance the multi-index like an odometer, keeping `at` in step.
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]! += 1;
      at += strides[d]!;
      if (idx[d]! < shape[d]!) break;
      at -= strides[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
}
