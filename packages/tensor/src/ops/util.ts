// Helpers shared by the ops: validation that names the op and the shapes, output allocation, and
// raw (unrecorded) data movement used inside forward and backward functions.

import { isFloat, type DType, type FloatDType } from '../dtype.js';
import { DSShapeError } from '../errors.js';
import type { F32, FArray, KernelTable } from '../kernels/table.js';
import { fmtShape, type Shape } from '../shape-util.js';
import { Tensor } from '../tensor.js';
import type { DeviceArray } from '../devices/device-array.js';

export function kernelsOf(t: Tensor): KernelTable {
  return t.runtime.kernels(t.device);
}

export function describe(t: Tensor): string {
  return `${fmtShape(t.shape)} ${t.dtype} on ${t.device}`;
}

/** Same device for all operands, and the runtime has kernels for it. */
export function checkDevices(op: string, ...ts: Tensor[]): void {
  const dev = ts[0]!.device;
  for (const t of ts) {
    if (t.isDisposed) throw new DSShapeError(`${op}: operand ${describe(t)} was disposed`);
    if (t.device !== dev) throw new DSShapeError(`${op}: operands on different devices: ${ts.map(describe).join(', ')}`);
  }
}

export function checkFloat(op: string, ...ts: Tensor[]): void {
  for (const t of ts) if (!isFloat(t.dtype)) throw new DSShapeError(`${op}: expected a float tensor, got ${describe(t)}`);
}

export function checkDType(op: string, t: Tensor, dtype: DType, role: string): void {
  if (t.dtype !== dtype) throw new DSShapeError(`${op}: ${role} must be ${dtype}, got ${describe(t)}`);
}

/** The dtype two float operands compute in: their shared dtype, else f32. */
export function promote(...dtypes: DType[]): FloatDType {
  const first = dtypes[0]!;
  return dtypes.every((d) => d === first) && isFloat(first) ? first : 'f32';
}

/** A fresh zero-filled activation tensor on the device and runtime of `like` (for outputs a kernel accumulates into). */
export function alloc(like: Tensor, shape: Shape, dtype: DType, label: string): Tensor {
  return Tensor.empty(shape, dtype, { device: like.device, runtime: like.runtime, category: 'activations', label });
}

/**
 * A fresh activation tensor whose every element the next kernel call overwrites: its bytes are
 * unspecified until then (a reused cache buffer is not zeroed; memory/cache.ts). Use alloc() when
 * the kernel adds into its output or may leave elements unwritten.
 */
export function allocOut(like: Tensor, shape: Shape, dtype: DType, label: string): Tensor {
  return Tensor.empty(shape, dtype, { device: like.device, runtime: like.runtime, category: 'activations', label, uninitialized: true });
}

/** t itself when contiguous, else a contiguous copy (the caller disposes it with `drop`). */
export function contig(t: Tensor): Tensor {
  if (t.isContiguous()) return t;
  const out = allocOut(t, t.shape, t.dtype, 'contiguous');
  kernelsOf(t).gather(t.dtype as FloatDType, t.storageOperand(), t.offset, t.shape, t.strides, out.operand());
  return out;
}

/** Disposes a temporary made by contig/castRaw unless it is the original. */
export function drop(tmp: Tensor, orig: Tensor): void {
  if (tmp !== orig) tmp.dispose();
}

/** t converted to dtype without recording (t itself if it already has it and is contiguous). */
export function castRaw(t: Tensor, dtype: DType): Tensor {
  const c = contig(t);
  if (c.dtype === dtype) return c;
  const out = allocOut(t, t.shape, dtype, 'cast');
  kernelsOf(t).cast(c.dtype, c.operand(), dtype, out.operand(), t.numel);
  drop(c, t);
  return out;
}

export function fa(t: Tensor): FArray {
  return t.operand() as FArray;
}

export function f32a(t: Tensor): F32 {
  return t.operand() as F32;
}

/**
 * The elements of a contiguous i32 tensor for a check made in JavaScript (token ids in range): the
 * host array itself on the cpu, a copy from any other device (an explicit transfer, B*T ids).
 */
export function hostInts(t: Tensor): Int32Array {
  if (t.isHost) return t.data() as Int32Array;
  const out = new Int32Array(t.numel);
  if (t.numel > 0) t.runtime.device(t.device).copyToHost(t.operand() as DeviceArray<Int32Array>, out);
  return out;
}
