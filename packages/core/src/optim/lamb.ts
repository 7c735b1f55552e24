// LAMB (You et al. 2019) as DeepSpeed's FusedLamb computes it: Adam moments, an update that adds
// weight decay, and a per-tensor trust ratio ||w|| / ||update|| clamped to [min_coeff, max_coeff].
// The trust ratio needs whole tensors, so the engine passes one slot per parameter tensor.
//
// Per element, with gs = gradScale and c1, c2 the bias corrections (1 without bias_correction):
//   m = beta1 * m + (1 - beta1) * gs * g
//   v = beta2 * v + (1 - beta2) * (gs * g)^2
//   u = (m / c1) / denom + weightDecay * p,  denom = sqrt(v / c2 + eps) or sqrt(v / c2) + eps
//   p = p - lr * clamp(||p|| / ||u||) * u
// as kernel calls on the slot's device. The two norms are sumSquares reductions, read back as
// numbers (one device sync each per slot); the scaled gradient and then the denominator share one
// scratch array, u has the other.
import { SlotOptimizer, scaledGrad, writeOut16 } from './base.js';
import type { OptimizerContext, OptimizerSlot, ParamGroup, StepOptions } from './types.js';

export interface LambOptions {
  betas: [number, number];
  eps: number;
  biasCorrection: boolean;
  epsInsideSqrt: boolean;
  maxCoeff: number;
  minCoeff: number;
}

export class Lamb extends SlotOptimizer {
  readonly type = 'Lamb';
  readonly elementwise = false;
  readonly stateNames = ['exp_avg', 'exp_avg_sq'] as const;
  /** The trust ratio of each slot at the last step (DeepSpeed exposes these as lamb_coeffs). */
  lambCoeffs: number[] = [];

  constructor(
    ctx: OptimizerContext,
    groups: ParamGroup[],
    private readonly options: LambOptions,
  ) {
    super(ctx, groups.map((g) => ({ ...g, betas: g.betas ?? [...options.betas] })));
  }

  step(slots: readonly OptimizerSlot[], options: StepOptions): void {
    const k = this.ctx.kernels;
    const scratch = this.slotScratch(slots, ['work', 'update']);
    this.lambCoeffs = [];
    slots.forEach((slot, i) => {
      const g = this.group(slot);
      const n = slot.master.length;
      const s = this.state(i + (options.firstSlot ?? 0), n);
      s.step += 1;
      const [b1, b2] = g.betas!;
      const { eps, epsInsideSqrt, biasCorrection, maxCoeff, minCoeff } = this.options;
      const c1 = biasCorrection ? 1 - b1 ** s.step : 1;
      const c2 = biasCorrection ? 1 - b2 ** s.step : 1;
      const p = slot.master;
      const m = s.tensors.exp_avg!;
      const v = s.tensors.exp_avg_sq!;
      const work = scratch.work.subarray(0, n);
      const u = scratch.update.subarray(0, n);
      // Moments from the scaled f32 gradient (in `work`, then squared in place).
      scaledGrad(k, slot, options.gradScale, work);
      k.scale('f32', m, m, n, b1, 0);
      k.axpy('f32', work, 'f32', m, n, 1 - b1);
      k.unary('square', 'f32', work, work, n);
      k.scale('f32', v, v, n, b2, 0);
      k.axpy('f32', work, 'f32', v, n, 1 - b2);
      // work = denom
      k.scale('f32', v, work, n, 1 / c2, epsInsideSqrt ? eps : 0);
      k.unary('sqrt', 'f32', work, work, n);
      if (!epsInsideSqrt) k.scale('f32', work, work, n, 1, eps);
      // u = m / denom / c1 + weightDecay * p
      k.binary('div', 'f32', m, work, u, n, n);
      k.scale('f32', u, u, n, 1 / c1, 0);
      k.axpy('f32', p, 'f32', u, n, g.weightDecay);
      const wNorm = Math.sqrt(k.sumSquares('f32', p, n));
      const uNorm = Math.sqrt(k.sumSquares('f32', u, n));
      let coeff = wNorm > 0 && uNorm > 0 ? wNorm / uNorm : 1;
      coeff = Math.min(maxCoeff, Math.max(minCoeff, coeff));
      this.lambCoeffs.push(coeff);
      k.axpy('f32', u, 'f32', p, n, -g.lr * coeff);
      writeOut16(k, slot);
    });
  }
}
