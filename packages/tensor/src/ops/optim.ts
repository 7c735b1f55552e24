// The tensor-level entry to the table's fused Adam/AdamW kernel: validates the operands (so the
// kernel never sees a bad argument) and applies one step in place. The optimizer classes with
// param groups, schedulers and ZeRO partitions live in @ds/core; this is their building block.

import { DSShapeError } from '../errors.js';
import type { FloatDType } from '../dtype.js';
import type { U16 } from '../kernels/table.js';
import type { Tensor } from '../tensor.js';
import { castRaw, checkDevices, describe, drop, fa, f32a, kernelsOf } from './util.js';

export interface AdamWHyper {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** 1-based step number used for bias correction. */
  step: number;
  biasCorrection?: boolean;
  /** true (default): AdamW's decoupled decay; false: L2 added to the gradient (Adam). */
  decoupled?: boolean;
  /** Multiplies the gradient first (1 / loss scale, times a clipping coefficient). */
  gradScale?: number;
  /** Optional bf16/f16 copy of the updated f32 parameter, written in the same pass. */
  out16?: Tensor;
}

/** One AdamW step on an f32 parameter with f32 moments, in place. */
export function adamwStep(param: Tensor, grad: Tensor, expAvg: Tensor, expAvgSq: Tensor, h: AdamWHyper): void {
  const ops = [param, grad, expAvg, expAvgSq, ...(h.out16 ? [h.out16] : [])];
  checkDevices('adamwStep', ...ops);
  for (const [t, role] of [[param, 'param'], [expAvg, 'expAvg'], [expAvgSq, 'expAvgSq']] as const) {
    if (t.dtype !== 'f32' || !t.isContiguous()) throw new DSShapeError(`adamwStep: ${role} must be a contiguous f32 tensor, got ${describe(t)}`);
  }
  for (const t of ops) if (t.numel !== param.numel) throw new DSShapeError(`adamwStep: operands ${ops.map(describe).join(', ')} differ in size`);
  if (h.out16 && h.out16.dtype !== 'bf16' && h.out16.dtype !== 'f16') throw new DSShapeError(`adamwStep: out16 must be bf16 or f16, got ${describe(h.out16)}`);
  if (!(h.step >= 1) || !Number.isInteger(h.step)) throw new DSShapeError(`adamwStep: step must be an integer >= 1, got ${h.step}`);
  const g = castRaw(grad, grad.dtype);
  kernelsOf(param).adamw({
    param: f32a(param),
    grad: fa(g),
    gradDtype: grad.dtype as FloatDType,
    expAvg: f32a(expAvg),
    expAvgSq: f32a(expAvgSq),
    n: param.numel,
    lr: h.lr,
    beta1: h.beta1 ?? 0.9,
    beta2: h.beta2 ?? 0.999,
    eps: h.eps ?? 1e-8,
    weightDecay: h.weightDecay ?? 0,
    step: h.step,
    biasCorrection: h.biasCorrection ?? true,
    decoupled: h.decoupled ?? true,
    gradScale: h.gradScale ?? 1,
    ...(h.out16 ? { out16: h.out16.operand() as U16, out16Dtype: h.out16.dtype as 'bf16' | 'f16' } : {}),
  });
  drop(g, grad);
}
