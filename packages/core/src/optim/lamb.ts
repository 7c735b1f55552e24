// LAMB (You et al. 2019) as DeepSpeed's FusedLamb computes it: Adam moments, an update that adds
// weight decay, and a per-tensor trust ratio ||w|| / ||update|| clamped to [min_coeff, max_coeff].
// The trust ratio needs whole tensors, so the engine passes one slot per parameter tensor.
import { SlotOptimizer, gradReader, writeOut16 } from './base.js';
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
    this.lambCoeffs = [];
    slots.forEach((slot, i) => {
      const g = this.group(slot);
      const s = this.state(i + (options.firstSlot ?? 0), slot.master.length);
      s.step += 1;
      const [b1, b2] = g.betas!;
      const { eps, epsInsideSqrt, biasCorrection, maxCoeff, minCoeff } = this.options;
      const c1 = biasCorrection ? 1 - b1 ** s.step : 1;
      const c2 = biasCorrection ? 1 - b2 ** s.step : 1;
      const grad = gradReader(slot);
      const p = slot.master;
      const m = s.tensors.exp_avg!;
      const v = s.tensors.exp_avg_sq!;
      const update = new Float32Array(p.length);
      let wNorm2 = 0;
      let uNorm2 = 0;
      for (let j = 0; j < p.length; j++) {
        const gj = grad(j) * options.gradScale;
        m[j] = b1 * m[j]! + (1 - b1) * gj;
        v[j] = b2 * v[j]! + (1 - b2) * gj * gj;
        const vh = v[j]! / c2;
        const denom = epsInsideSqrt ? Math.sqrt(vh + eps) : Math.sqrt(vh) + eps;
        const u = m[j]! / c1 / denom + g.weightDecay * p[j]!;
        update[j] = u;
        wNorm2 += p[j]! * p[j]!;
        uNorm2 += u * u;
      }
      const wNorm = Math.sqrt(wNorm2);
      const uNorm = Math.sqrt(uNorm2);
      let coeff = wNorm > 0 && uNorm > 0 ? wNorm / uNorm : 1;
      coeff = Math.min(maxCoeff, Math.max(minCoeff, coeff));
      this.lambCoeffs.push(coeff);
      for (let j = 0; j < p.length; j++) p[j] = p[j]! - g.lr * coeff * update[j]!;
      writeOut16(this.ctx.kernels, slot);
    });
  }
}
