// Reading an optimizer slot's gradient whatever its dtype, and writing its 16-bit weight copy: the
// two helpers the TypeScript optimizer loops here share (core keeps its own private pair).
import { bf16ToF32, f16ToF32, type KernelTable } from '@ds/tensor';
import type { OptimizerSlot } from '@ds/core';
import type { HostSlot } from './compressing.js';

/** Element i of the slot's gradient as a number. */
export function gradReader(slot: HostSlot): (i: number) => number {
  const g = slot.grad;
  if (slot.gradDtype === 'f32') return (i) => (g as Float32Array)[i]!;
  return slot.gradDtype === 'bf16' ? (i) => bf16ToF32(g[i]!) : (i) => f16ToF32(g[i]!);
}

/** Writes the slot's 16-bit copy of the master weights, when it asks for one. */
export function writeOut16(kernels: KernelTable, slot: OptimizerSlot): void {
  if (slot.out16) kernels.cast('f32', slot.master, slot.out16Dtype ?? 'bf16', slot.out16, slot.master.length);
}
