// 0/1 Adam (DeepSpeed: runtime/fp16/onebit/zoadam.py, ZeroOneAdam; Lu et al. 2022).
//
// Before var_freeze_step the variance is updated only on steps k whose spacing doubles every
// var_update_scaler updates (1, 2, 3, ..., then every 2nd, every 4th, ...). On those steps the
// engine all-reduces the gradients in full precision and both moments are updated; on the others
// the gradient stays local, is 1-bit all-reduced here and folded into the momentum only.
// After var_freeze_step every rank takes local steps with the frozen variance, accumulating its
// update u = -sum(lr * update) and sum(lr); every local_step_interval steps (the interval doubles
// every local_step_scaler steps, capped at local_step_clipper) the ranks synchronise: undo the local
// updates, map u into momentum space (times sqrt(v) + eps), 1-bit all-reduce it, set the momentum to
// -avg / sum(lr) and apply the averaged update. The error buffers are zeroed once when local steps
// begin (they then hold errors of a different quantity). No bias correction, as in DeepSpeed.
//
// Differences from DeepSpeed: no dry-run first step (its step counter is one ahead of ours); the
// policy counters are kept once for the optimizer, as every parameter of DeepSpeed's keeps the same
// values. Between synchronisations the ranks' weights differ, and stage 0 saves rank 0's weights,
// so a checkpoint must be taken on a synchronisation step (rankExtras() refuses otherwise).
import { DSCheckpointError, type OptimizerContext, type OptimizerSlot, type ParamGroup, type StepOptions } from '@ds/core';

import type { CompressedAllReduce } from './compressed-allreduce.js';
import { CompressingSlotOptimizer, hostSlot, type HostSlot } from './compressing.js';
import { gradReader, writeOut16 } from './slot-io.js';

export interface ZeroOneAdamOptions {
  betas: [number, number];
  eps: number;
  varFreezeStep: number;
  varUpdateScaler: number;
  localStepScaler: number;
  localStepClipper: number;
}

const POLICY = ['step', 'varInterval', 'varCounter', 'localInterval', 'localCounter', 'frozen', 'errorsReset', 'pendingLocal'] as const;
type Policy = Record<(typeof POLICY)[number], number>;

export class ZeroOneAdam extends CompressingSlotOptimizer {
  readonly type = 'ZeroOneAdam';
  readonly elementwise = true;
  readonly stateNames = ['exp_avg', 'exp_avg_sq'] as const;
  private policy: Policy = { step: 0, varInterval: 1, varCounter: 0, localInterval: 1, localCounter: 0, frozen: 0, errorsReset: 0, pendingLocal: 0 };
  /** Per slot: the momentum accumulator u and the learning rates summed since the last synchronisation. */
  private accumulators = new Map<number, Float32Array>();
  private lrs = new Map<number, number>();
  private scratch: Float32Array | null = null;

  constructor(
    ctx: OptimizerContext,
    groups: ParamGroup[],
    private readonly options: ZeroOneAdamOptions,
    comm: CompressedAllReduce | null,
  ) {
    super(ctx, groups, options.betas, comm);
  }

  /** The engine all-reduces the next step's gradients only on a variance-update step before the freeze. */
  get localGradients(): boolean {
    const p = this.policy;
    return p.frozen === 1 || (p.step + 1) % p.varInterval !== 0;
  }

  /** Whether local steps have begun (the variance is frozen). */
  get frozen(): boolean {
    return this.policy.frozen === 1;
  }

  step(slots: readonly OptimizerSlot[], options: StepOptions): void {
    const p = this.policy;
    const step = p.step + 1;
    const frozen = p.frozen === 1;
    const varStep = !frozen && step % p.varInterval === 0;
    const sync = frozen && step % p.localInterval === 0;
    slots.forEach((deviceSlot, i) => {
      const slot = hostSlot(this.type, deviceSlot);
      const index = i + (options.firstSlot ?? 0);
      const s = this.hostState(index, slot.master.length);
      s.step = step;
      this.slotStep(slot, index, s.tensors.exp_avg!, s.tensors.exp_avg_sq!, this.group(slot), options.gradScale, { frozen, varStep, sync });
    });
    p.step = step;
    p.pendingLocal = frozen && !sync ? 1 : 0;
    if (!frozen) {
      if (varStep && ++p.varCounter === this.options.varUpdateScaler) {
        p.varCounter = 0;
        p.varInterval *= 2;
      }
    } else if (++p.localCounter === this.options.localStepScaler) {
      p.localCounter = 0;
      p.localInterval = Math.min(this.options.localStepClipper, p.localInterval * 2);
    }
    if (step > this.options.varFreezeStep) p.frozen = 1;
    if (p.frozen === 1 && p.errorsReset === 0) {
      this.zeroErrors();
      p.errorsReset = 1;
    }
  }

  private slotStep(slot: HostSlot, index: number, m: Float32Array, v: Float32Array, g: ParamGroup, gradScale: number, phase: { frozen: boolean; varStep: boolean; sync: boolean }): void {
    const [b1, b2] = g.betas!;
    const n = m.length;
    const grad = gradReader(slot);
    const { eps } = this.options;
    const { lr, weightDecay } = g;
    const pw = slot.master;
    if (phase.varStep) {
      for (let j = 0; j < n; j++) {
        const x = grad(j) * gradScale;
        v[j] = b2 * v[j]! + (1 - b2) * x * x;
        m[j] = b1 * m[j]! + (1 - b1) * x;
      }
    } else if (!phase.frozen) {
      const g1 = this.scratchOf(n);
      for (let j = 0; j < n; j++) g1[j] = grad(j) * gradScale;
      this.compress(index, g1);
      this.applyMask(g, slot.group, g1);
      for (let j = 0; j < n; j++) m[j] = b1 * m[j]! + (1 - b1) * g1[j]!;
    } else {
      for (let j = 0; j < n; j++) m[j] = b1 * m[j]! + (1 - b1) * grad(j) * gradScale;
      this.lrs.set(index, (this.lrs.get(index) ?? 0) + lr);
    }
    const u = phase.frozen ? this.accumulatorOf(index, n) : null;
    for (let j = 0; j < n; j++) {
      const step = lr * (m[j]! / (Math.sqrt(v[j]!) + eps) + weightDecay * pw[j]!);
      pw[j] = pw[j]! - step;
      if (u) u[j] = u[j]! - step;
    }
    if (u && phase.sync) {
      const lrs = this.lrs.get(index)!;
      for (let j = 0; j < n; j++) {
        pw[j] = pw[j]! - u[j]!;
        u[j] = u[j]! * (Math.sqrt(v[j]!) + eps);
      }
      this.compress(index, u);
      this.applyMask(g, slot.group, u);
      for (let j = 0; j < n; j++) {
        m[j] = -u[j]! / lrs;
        pw[j] = pw[j]! + u[j]! / (Math.sqrt(v[j]!) + eps);
      }
      u.fill(0);
      this.lrs.set(index, 0);
    }
    writeOut16(this.ctx.kernels, slot);
  }

  private scratchOf(n: number): Float32Array {
    if (!this.scratch || this.scratch.length < n) this.scratch = new Float32Array(n);
    return this.scratch.subarray(0, n);
  }

  private accumulatorOf(index: number, n: number): Float32Array {
    let u = this.accumulators.get(index);
    if (!u) this.accumulators.set(index, (u = new Float32Array(n)));
    return u;
  }

  protected override extraArrays(): Map<string, Float32Array> {
    if (this.policy.pendingLocal === 1) {
      throw new DSCheckpointError(
        `ZeroOneAdam: a checkpoint at step ${this.policy.step} falls between local-step synchronisations (every ${this.policy.localInterval} steps now), where the ranks' weights differ and stage 0 keeps rank 0's; save on a step that is a multiple of the local step interval`,
      );
    }
    return new Map([...this.accumulators].map(([i, u]) => [`slot${i}.momentum_accumulator`, u]));
  }

  protected override extraScalars(): Record<string, number> {
    return { ...this.policy, ...Object.fromEntries([...this.lrs].map(([i, v]) => [`lrs.slot${i}`, v])) };
  }

  protected override loadExtras(arrays: Map<string, Float32Array>, scalars: Record<string, number>): void {
    this.accumulators = new Map();
    for (const [name, a] of arrays) {
      const m = /^slot(\d+)\.momentum_accumulator$/.exec(name);
      if (m) this.accumulators.set(Number(m[1]), a.slice());
    }
    for (const k of POLICY) {
      if (typeof scalars[k] !== 'number') throw new DSCheckpointError(`ZeroOneAdam: the checkpoint lacks the policy counter '${k}'; it was written by another optimizer`);
      this.policy[k] = scalars[k];
    }
    this.lrs = new Map(Object.entries(scalars).flatMap(([k, v]) => (k.startsWith('lrs.slot') ? [[Number(k.slice(8)), v] as const] : [])));
  }
}
