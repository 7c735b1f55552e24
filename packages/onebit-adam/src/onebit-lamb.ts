// 1-bit LAMB (DeepSpeed: runtime/fp16/onebit/lamb.py, OnebitLamb; Li et al. 2021).
//
// Warm-up (the first freeze_step steps): LAMB on all-reduced gradients, without bias correction,
// keeping per tensor an EMA (coeff_beta) of its trust ratio ||w|| / ||update|| clamped to
// [min_coeff, max_coeff]; at step freeze_step the variance is copied into a "fresh" variance.
// Compression (afterwards), v frozen:
//   - at the first compressed step every tensor gets scaling_coeff = (mean RMS of all momenta) /
//     (its momentum's RMS), so that one fused, flat momentum of the whole model can share one scale;
//   - each rank updates its local momentum, multiplies it by scaling_coeff, and the fused buffer is
//     1-bit all-reduced; then divided back;
//   - the fresh variance follows gradients reconstructed from the momentum, g = (m - b1 m_prev) /
//     (1 - b1); the trust ratio is the frozen EMA times a factor max((sqrt(v)+eps) / (sqrt(v_fresh)+eps)),
//     blended towards 1 by the share of weight decay in the update, clamped to [factor_min,
//     factor_max] and to within factor_threshold of the last factor.
//
// The engine passes one slot per parameter tensor (the trust ratio is per tensor). Differences from
// DeepSpeed: no dry-run first step; the fused momentum is gathered into a scratch buffer for the
// all-reduce (DeepSpeed makes the momenta views of one flat tensor).
import type { OptimizerContext, OptimizerSlot, ParamGroup, StepOptions } from '@ds/core';

import type { CompressedAllReduce } from './compressed-allreduce.js';
import { CompressingSlotOptimizer, hostSlot, type HostSlot } from './compressing.js';
import { gradReader, writeOut16 } from './slot-io.js';

export interface OnebitLambOptions {
  betas: [number, number];
  eps: number;
  freezeStep: number;
  maxCoeff: number;
  minCoeff: number;
  coeffBeta: number;
  factorMax: number;
  factorMin: number;
  factorThreshold: number;
}

/** Per-tensor scalars of the trust ratio. */
interface Coeffs {
  /** EMA of the warm-up trust ratio (DeepSpeed: lamb_coeff_freeze). */
  freeze: number;
  lastFactor: number;
  /** Set at the first compressed step. */
  scaling: number | null;
}

const norm = (x: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return Math.sqrt(s);
};

export class OnebitLamb extends CompressingSlotOptimizer {
  readonly type = 'OneBitLamb';
  readonly elementwise = false;
  readonly stateNames = ['exp_avg', 'exp_avg_sq', 'exp_avg_sq_fresh'] as const;
  /** The trust ratio of each slot at the last step (DeepSpeed exposes these as lamb_coeffs). */
  lambCoeffs: number[] = [];
  private coeffs = new Map<number, Coeffs>();
  private fused: Float32Array | null = null;

  constructor(
    ctx: OptimizerContext,
    groups: ParamGroup[],
    private readonly options: OnebitLambOptions,
    comm: CompressedAllReduce | null,
  ) {
    super(ctx, groups, options.betas, comm);
  }

  get stepsTaken(): number {
    return this.slots[0]?.step ?? 0;
  }

  get localGradients(): boolean {
    return this.stepsTaken >= this.options.freezeStep;
  }

  private coeffsOf(index: number): Coeffs {
    let c = this.coeffs.get(index);
    if (!c) this.coeffs.set(index, (c = { freeze: 0, lastFactor: 1, scaling: null }));
    return c;
  }

  step(slots: readonly OptimizerSlot[], options: StepOptions): void {
    const first = options.firstSlot ?? 0;
    this.lambCoeffs = [];
    const compressing = this.localGradients;
    const states = slots.map((slot, i) => this.hostState(first + i, slot.master.length));
    const hslots = slots.map((slot) => hostSlot(this.type, slot));
    for (const s of states) s.step += 1;
    if (!compressing) {
      hslots.forEach((slot, i) => this.warmupStep(slot, first + i, states[i]!.tensors, states[i]!.step, options.gradScale));
      return;
    }
    const previous = states.map((s) => s.tensors.exp_avg!.slice());
    if (states.some((_, i) => this.coeffsOf(first + i).scaling === null)) {
      const rms = states.map((s) => norm(s.tensors.exp_avg!) / Math.sqrt(s.tensors.exp_avg!.length));
      const united = rms.reduce((a, b) => a + b, 0) / rms.length;
      rms.forEach((r, i) => (this.coeffsOf(first + i).scaling = r > 0 ? united / r : 1));
    }
    // Local momenta, scaled, into one fused buffer; one compressed all-reduce; back, unscaled.
    const total = states.reduce((a, s) => a + s.tensors.exp_avg!.length, 0);
    if (!this.fused || this.fused.length !== total) this.fused = new Float32Array(total);
    let at = 0;
    hslots.forEach((slot, i) => {
      const m = states[i]!.tensors.exp_avg!;
      const [b1] = this.group(slot).betas!;
      const grad = gradReader(slot);
      const scaling = this.coeffsOf(first + i).scaling!;
      for (let j = 0; j < m.length; j++) m[j] = (b1 * m[j]! + (1 - b1) * grad(j) * options.gradScale) * scaling;
      this.fused!.set(m, at);
      at += m.length;
    });
    this.compress(0, this.fused);
    at = 0;
    hslots.forEach((slot, i) => {
      const m = states[i]!.tensors.exp_avg!;
      const scaling = this.coeffsOf(first + i).scaling!;
      for (let j = 0; j < m.length; j++) m[j] = this.fused![at + j]! / scaling;
      at += m.length;
      this.applyMask(this.group(slot), slot.group, m);
      this.compressedUpdate(slot, first + i, states[i]!.tensors, previous[i]!);
    });
  }

  private warmupStep(slot: HostSlot, index: number, t: Record<string, Float32Array>, step: number, gradScale: number): void {
    const g = this.group(slot);
    const [b1, b2] = g.betas!;
    const { eps, maxCoeff, minCoeff, coeffBeta, freezeStep } = this.options;
    const m = t.exp_avg!, v = t.exp_avg_sq!;
    const p = slot.master;
    const grad = gradReader(slot);
    const update = new Float32Array(p.length);
    for (let j = 0; j < p.length; j++) {
      const x = grad(j) * gradScale;
      m[j] = b1 * m[j]! + (1 - b1) * x;
      v[j] = b2 * v[j]! + (1 - b2) * x * x;
      update[j] = m[j]! / (Math.sqrt(v[j]!) + eps) + g.weightDecay * p[j]!;
    }
    if (step === freezeStep) t.exp_avg_sq_fresh!.set(v);
    const w = norm(p), u = norm(update);
    const coeff = w !== 0 && u !== 0 ? Math.min(maxCoeff, Math.max(minCoeff, w / u)) : 1;
    const c = this.coeffsOf(index);
    if (coeff !== 1) c.freeze = coeffBeta * c.freeze + (1 - coeffBeta) * coeff;
    this.lambCoeffs.push(coeff);
    for (let j = 0; j < p.length; j++) p[j] = p[j]! - g.lr * coeff * update[j]!;
    writeOut16(this.ctx.kernels, slot);
  }

  private compressedUpdate(slot: HostSlot, index: number, t: Record<string, Float32Array>, previous: Float32Array): void {
    const g = this.group(slot);
    const [b1, b2] = g.betas!;
    const { eps, factorMax, factorMin, factorThreshold } = this.options;
    const m = t.exp_avg!, v = t.exp_avg_sq!, fresh = t.exp_avg_sq_fresh!;
    const p = slot.master;
    const update = new Float32Array(p.length);
    let prelim2 = 0, update2 = 0, factor = -Infinity;
    for (let j = 0; j < p.length; j++) {
      const rec = (m[j]! - previous[j]! * b1) / (1 - b1);
      fresh[j] = b2 * fresh[j]! + (1 - b2) * rec * rec;
      const denom = Math.sqrt(v[j]!) + eps;
      const prelim = m[j]! / denom;
      update[j] = prelim + g.weightDecay * p[j]!;
      prelim2 += prelim * prelim;
      update2 += update[j]! * update[j]!;
      factor = Math.max(factor, denom / (Math.sqrt(fresh[j]!) + eps));
    }
    if (g.weightDecay > 0) {
      const ratio = Math.min(1, Math.sqrt(prelim2) / Math.sqrt(update2));
      factor = factor * ratio + (1 - ratio);
    }
    const c = this.coeffsOf(index);
    factor = Math.min(factorMax, Math.max(factorMin, factor));
    factor = Math.min(c.lastFactor * (1 + factorThreshold), Math.max(c.lastFactor * (1 - factorThreshold), factor));
    c.lastFactor = factor;
    const coeff = c.freeze * factor;
    this.lambCoeffs.push(coeff);
    for (let j = 0; j < p.length; j++) p[j] = p[j]! - g.lr * coeff * update[j]!;
    writeOut16(this.ctx.kernels, slot);
  }

  protected override extraScalars(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [i, c] of this.coeffs) {
      out[`slot${i}.lamb_coeff_freeze`] = c.freeze;
      out[`slot${i}.last_factor`] = c.lastFactor;
      if (c.scaling !== null) out[`slot${i}.scaling_coeff`] = c.scaling;
    }
    return out;
  }

  protected override loadExtras(_arrays: Map<string, Float32Array>, scalars: Record<string, number>): void {
    this.coeffs = new Map();
    for (const [k, v] of Object.entries(scalars)) {
      const m = /^slot(\d+)\.(lamb_coeff_freeze|last_factor|scaling_coeff)$/.exec(k);
      if (!m) continue;
      const c = this.coeffsOf(Number(m[1]));
      if (m[2] === 'lamb_coeff_freeze') c.freeze = v;
      else if (m[2] === 'last_factor') c.lastFactor = v;
      else c.scaling = v;
    }
  }
}
