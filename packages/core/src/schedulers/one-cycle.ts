// OneCycle (1Cycle policy) with DeepSpeed's formulas. With it = last_batch_iteration + 1,
// S = first + second step sizes and r = first / S:
//   x = 1 + it/S - floor(1 + it/S);  f = x / r  if x <= r,  else (x - 1) / (r - 1)
//   during the cycle (last_batch_iteration < S): lr = min_lr + (max_lr - min_lr) * f,
//                                                  beta1 = max_mom - (max_mom - min_mom) * f
//   after it, with k = last_batch_iteration - S + 1 and d = k / decay_step_size:
//     lr = min_lr / (1 + decay_lr_rate * d),   beta1 = max_mom * (1 + decay_mom_rate * d)
//   (no decay at all when decay_step_size is 0; lr stays min_lr / beta1 max_mom when the rate is 0).
// beta2 is held at 0.99 as in DeepSpeed. The stair counts are accepted and stored but, as in
// DeepSpeed, do not enter the formulas.
import { BaseLRScheduler, type SchedulableOptimizer, type SchedulerOptions } from './lr-scheduler.js';
import { oneCycleParams, type OneCycleParams } from './params.js';
import { parseParams } from './parse-params.js';

const BETA2 = 0.99;

export class OneCycle extends BaseLRScheduler {
  readonly minLr: number;
  readonly maxLr: number;
  readonly totalSize: number;
  readonly stepRatio: number;
  readonly firstStairCount: number;
  readonly secondStairCount: number;
  readonly decayStepSize: number;
  readonly decayLrRate: number;
  readonly minMom: number;
  readonly maxMom: number;
  readonly decayMomRate: number;
  /** False when disabled in the config or when the optimizer has no `betas`. */
  readonly cycleMomentum: boolean;
  private readonly skipLrDecay: boolean;
  private readonly skipMomDecay: boolean;

  constructor(optimizer: SchedulableOptimizer, params: OneCycleParams, options: SchedulerOptions = {}) {
    const p = parseParams(oneCycleParams, params, 'OneCycle');
    super(optimizer, p.last_batch_iteration, options);
    const first = p.cycle_first_step_size;
    const second = p.cycle_second_step_size ?? first;
    this.totalSize = first + second;
    this.stepRatio = first / this.totalSize;
    this.firstStairCount = p.cycle_first_stair_count;
    this.secondStairCount = p.cycle_second_stair_count ?? p.cycle_first_stair_count;
    this.decayStepSize = p.decay_step_size;
    this.minLr = p.cycle_min_lr;
    this.maxLr = p.cycle_max_lr;
    this.decayLrRate = p.decay_lr_rate;
    this.minMom = p.cycle_min_mom;
    this.maxMom = p.cycle_max_mom;
    this.decayMomRate = p.decay_mom_rate;
    // DeepSpeed tests these with math.isclose(x, 0), which with its default tolerances is x == 0.
    this.skipLrDecay = this.decayStepSize === 0 || this.decayLrRate === 0;
    this.skipMomDecay = this.decayStepSize === 0 || this.decayMomRate === 0;

    const groups = optimizer.paramGroups;
    if (p.last_batch_iteration === -1) for (const g of groups) g.lr = this.minLr;
    let cycleMomentum = p.cycle_momentum;
    if (cycleMomentum && optimizer.defaults?.betas === undefined) {
      this.warn('cycle_momentum is disabled because the optimizer does not support momentum (no betas in its defaults)');
      cycleMomentum = false;
    }
    this.cycleMomentum = cycleMomentum;
    // As in DeepSpeed, the starting betas are (cycle_min_mom, 0.99) although the cycle's first value is max_mom.
    if (cycleMomentum && p.last_batch_iteration === -1) for (const g of groups) g.betas = [this.minMom, BETA2];
  }

  /** Position in the cycle: 0 at the bottom, 1 at the peak. */
  private scaleFactor(): number {
    const it = this.lastBatchIteration + 1;
    const cycle = Math.floor(1 + it / this.totalSize);
    const x = 1 + it / this.totalSize - cycle;
    return x <= this.stepRatio ? x / this.stepRatio : (x - 1) / (this.stepRatio - 1);
  }

  private decayInterval(): number {
    return (this.lastBatchIteration - this.totalSize + 1) / this.decayStepSize;
  }

  getLr(): number[] {
    let lr: number;
    if (this.lastBatchIteration < this.totalSize) lr = this.minLr + (this.maxLr - this.minLr) * this.scaleFactor();
    else lr = this.skipLrDecay ? this.minLr : this.minLr / (1 + this.decayLrRate * this.decayInterval());
    return this.optimizer.paramGroups.map(() => lr);
  }

  /** The (beta1, beta2) per group for the current iteration, or null when momentum is not cycled. */
  getMom(): Array<[number, number]> | null {
    if (!this.cycleMomentum) return null;
    let beta1: number;
    if (this.lastBatchIteration < this.totalSize) beta1 = this.maxMom - (this.maxMom - this.minMom) * this.scaleFactor();
    else beta1 = this.skipMomDecay ? this.maxMom : this.maxMom * (1 + this.decayMomRate * this.decayInterval());
    return this.optimizer.paramGroups.map(() => [beta1, BETA2]);
  }

  override step(batchIteration?: number): void {
    super.step(batchIteration);
    const moms = this.getMom();
    if (moms) this.optimizer.paramGroups.forEach((g, i) => (g.betas = moms[i]));
  }
}
