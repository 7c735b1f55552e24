// The TypeScript specification of the collectives' arithmetic (native/comm/reduce.cc is the fast
// twin): float dtypes are read as f32, reduced in rank order in f32, averaged by dividing by the
// rank count, then rounded once (nearest even) to the dtype; integers wrap.
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, type DType } from '@ds/tensor';

import type { CommArray, ReduceOp } from './types.js';

const fround = Math.fround;

function toF32(dtype: DType, v: number): number {
  return dtype === 'bf16' ? bf16ToF32(v) : dtype === 'f16' ? f16ToF32(v) : v;
}

function fromF32(dtype: DType, v: number): number {
  return dtype === 'bf16' ? f32ToBf16(v) : dtype === 'f16' ? f32ToF16(v) : v;
}

function combine(dtype: DType, op: ReduceOp, a: number, b: number): number {
  if (dtype === 'i32' || dtype === 'u8') {
    if (op === 'max') return a > b ? a : b;
    if (op === 'min') return a < b ? a : b;
    return dtype === 'i32' ? (a + b) | 0 : (a + b) & 0xff;
  }
  if (op === 'max') return Number.isNaN(a) ? a : Number.isNaN(b) ? b : a > b ? a : b;
  if (op === 'min') return Number.isNaN(a) ? a : Number.isNaN(b) ? b : a < b ? a : b;
  return fround(a + b);
}

/** out[i] = reduce over ranks of inputs[rank][i]; `out` may be one of the inputs. */
export function referenceReduce(dtype: DType, op: ReduceOp, inputs: readonly CommArray[], out: CommArray): void {
  const n = inputs.length;
  const isInt = dtype === 'i32' || dtype === 'u8';
  for (let i = 0; i < out.length; i++) {
    let acc = isInt ? inputs[0]![i]! : toF32(dtype, inputs[0]![i]!);
    for (let r = 1; r < n; r++) acc = combine(dtype, op, acc, isInt ? inputs[r]![i]! : toF32(dtype, inputs[r]![i]!));
    if (op === 'avg') acc = fround(acc / n);
    out[i] = isInt ? acc : fromF32(dtype, acc);
  }
}
