// Argument checks every kernel table runs before calling native code (the cpu table over host arrays,
// the cuda table over device memory): dtype and op codes as the addons number them, sizes, scalars,
// and the element span a strided gather reads. Each table adds its own operand check (a typed array
// of the dtype's element type on the cpu; a DeviceArray of the table's device on cuda).
import { DSShapeError } from '../errors.js';
import type { BinaryOp, FloatDType, UnaryOp } from './table.js';

export type AnyDType = FloatDType | 'i32' | 'u8';

/** Dtypes as both addons number them. */
export const DTYPE_CODE: Readonly<Record<AnyDType, number>> = { f32: 0, bf16: 1, f16: 2, i32: 3, u8: 4 };
export const UNARY_CODE: Readonly<Record<UnaryOp, number>> = {
  neg: 0, exp: 1, log: 2, sqrt: 3, rsqrt: 4, tanh: 5, relu: 6, abs: 7, square: 8, sigmoid: 9, sign: 10,
};
export const BINARY_CODE: Readonly<Record<BinaryOp, number>> = { add: 0, sub: 1, mul: 2, div: 3, max: 4, min: 5 };

export function code(op: string, dtype: string): number {
  const c = DTYPE_CODE[dtype as AnyDType];
  if (c === undefined) throw new DSShapeError(`${op}: unknown dtype '${dtype}' (expected f32, bf16, f16, i32 or u8)`);
  return c;
}

export function floatCode(op: string, dtype: string): number {
  const c = code(op, dtype);
  if (c > 2) throw new DSShapeError(`${op}: dtype must be f32, bf16 or f16, got '${dtype}'`);
  return c;
}

export function dim(op: string, name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new DSShapeError(`${op}: ${name} must be a non-negative integer, got ${v}`);
}

export function finite(op: string, name: string, v: number): void {
  if (typeof v !== 'number' || Number.isNaN(v)) throw new DSShapeError(`${op}: ${name} must be a number, got ${v}`);
}

/**
 * What a strided gather of `shape`/`strides` from element `offset` reads and writes: `total`
 * elements written, `srcNeeded` elements the source must hold, `sizes` to name them in errors.
 * Throws when the view reaches before the start of the source.
 */
export function gatherSpan(offset: number, shape: readonly number[], strides: readonly number[]): { total: number; srcNeeded: number; sizes: string } {
  const op = 'gather';
  dim(op, 'offset', offset);
  if (shape.length !== strides.length) throw new DSShapeError(`gather: shape [${shape.join(', ')}] and strides [${strides.join(', ')}] differ in rank`);
  let total = 1;
  let hi = offset;
  let lo = offset;
  shape.forEach((s, i) => {
    dim(op, `shape[${i}]`, s);
    if (!Number.isSafeInteger(strides[i])) throw new DSShapeError(`gather: strides[${i}] must be an integer, got ${strides[i]}`);
    total *= s;
  });
  if (total > 0) shape.forEach((s, i) => (strides[i]! < 0 ? (lo += (s - 1) * strides[i]!) : (hi += (s - 1) * strides[i]!)));
  const sizes = `shape [${shape.join(', ')}] strides [${strides.join(', ')}] offset ${offset}`;
  if (lo < 0) throw new DSShapeError(`gather: ${sizes} reaches index ${lo}, before the start of src`);
  return { total, srcNeeded: total > 0 ? hi + 1 : 0, sizes };
}
