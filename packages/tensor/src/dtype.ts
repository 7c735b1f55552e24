// Dtypes, their element arrays and the f32 <-> bf16 / f16 bit conversions shared by every backend.

import { DSShapeError } from './errors.js';

export type DType = 'f32' | 'bf16' | 'f16' | 'i32' | 'u8';
export type FloatDType = 'f32' | 'bf16' | 'f16';

export const DTYPES: readonly DType[] = ['f32', 'bf16', 'f16', 'i32', 'u8'];

export const BYTES_PER_ELEMENT: Readonly<Record<DType, number>> = { f32: 4, bf16: 2, f16: 2, i32: 4, u8: 1 };

export type ArrayFor<D extends DType> = D extends 'f32' ? Float32Array : D extends 'i32' ? Int32Array : D extends 'u8' ? Uint8Array : Uint16Array;

export function isFloat(dtype: DType): dtype is FloatDType {
  return dtype === 'f32' || dtype === 'bf16' || dtype === 'f16';
}

export function assertDType(value: unknown, where: string): asserts value is DType {
  if (!DTYPES.includes(value as DType)) {
    throw new DSShapeError(`${where}: unknown dtype '${String(value)}' (expected one of ${DTYPES.join(', ')})`);
  }
}

/** A typed array of `length` elements of `dtype` over `buffer` at `byteOffset`. */
export function arrayView(dtype: DType, buffer: ArrayBufferLike, byteOffset: number, length: number): Float32Array | Uint16Array | Int32Array | Uint8Array {
  switch (dtype) {
    case 'f32':
      return new Float32Array(buffer, byteOffset, length);
    case 'bf16':
    case 'f16':
      return new Uint16Array(buffer, byteOffset, length);
    case 'i32':
      return new Int32Array(buffer, byteOffset, length);
    case 'u8':
      return new Uint8Array(buffer, byteOffset, length);
  }
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** f32 -> bf16 bits, round to nearest even; NaN stays a (quiet) NaN. */
export function f32ToBf16(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) | 0x40) & 0xffff;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16ToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0]!;
}

/** f32 -> IEEE half bits, round to nearest even, overflow to Inf, subnormals kept. */
export function f32ToF16(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -11) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rem = mant & ((1 << shift) - 1);
    let out = mant >>> shift;
    if (rem > half || (rem === half && (out & 1))) out += 1;
    return sign | out;
  }
  const rem = mant & 0x1fff;
  let out = (e << 10) | (mant >>> 13);
  if (rem > 0x1000 || (rem === 0x1000 && (out & 1))) out += 1;
  return sign | out;
}

export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Reads element i of a float array of `dtype` as a JS number. */
export function readFloat(dtype: FloatDType, a: Float32Array | Uint16Array, i: number): number {
  return dtype === 'f32' ? a[i]! : dtype === 'bf16' ? bf16ToF32(a[i]!) : f16ToF32(a[i]!);
}

/** Writes a JS number into element i of a float array of `dtype`, rounding to the dtype. */
export function writeFloat(dtype: FloatDType, a: Float32Array | Uint16Array, i: number, v: number): void {
  a[i] = dtype === 'f32' ? v : dtype === 'bf16' ? f32ToBf16(v) : f32ToF16(v);
}
