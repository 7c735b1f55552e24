// 1-bit Adam (DeepSpeed: runtime/fp16/onebit/adam.py, OnebitAdam; Tang et al. 2021).
//
// Warm-up (the first freeze_step steps): Adam on gradients the engine has already averaged
// (its ordinary all-reduce is on), without bias correction, as DeepSpeed's update has none.
// Compression (afterwards): the variance is frozen; the engine's gradient all-reduce is off (this
// package's gradient reducer does no collective), so each rank folds its *local* gradient into its
// momentum, m = b1 m + (1 - b1) g, then replaces m by the 1-bit compressed average of every rank's
// m (compressed-allreduce.ts), and steps p -= lr (m / (sqrt(v) + eps) + wd p).
//
// Differences from DeepSpeed: its first step() is a dry run that allocates the error buffers and
// does not move the weights; here buffers are allocated when the compressed phase starts, and
// every step updates the weights. Its error buffers are per parameter tensor; the engine passes
// one flat slot for the whole model here (elementwise optimizer), so there is one pair per slot
// and one scale per rank per step for the whole model. `exp_avg_mask` (a parameter-group key, as
// in DeepSpeed) is an f32 array over the group's slot, multiplied into m after the all-reduce.
import type { OptimizerContext, OptimizerSlot, ParamGroup, StepOptions } from '@ds/core';

import type { CompressedAllReduce } from './compressed-allreduce.js';
import { CompressingSlotOptimizer, hostSlot, type HostSlot } from './compressing.js';
import type { OnebitKernels } from './native/load.js';
import { referenceOnebitKernels } from './reference/kernels.js';
import { writeOut16 } from './slot-io.js';

export interface OnebitAdamOptions {
  betas: [number, number];
  eps: number;
  freezeStep: number;
}

export class OnebitAdam extends CompressingSlotOptimizer {
  readonly type = 'OneBitAdam';
  readonly elementwise = true;
  readonly stateNames = ['exp_avg', 'exp_avg_sq'] as const;

  constructor(
    ctx: OptimizerContext,
    groups: ParamGroup[],
    private readonly options: OnebitAdamOptions,
    comm: CompressedAllReduce | null,
    /** The compressed phase's loops: the native ones from the plugin, the TypeScript twins by default. */
    private readonly loops: OnebitKernels = referenceOnebitKernels,
  ) {
    super(ctx, groups, options.betas, comm);
  }

  private grad32: Float32Array | null = null;

  /** The slot's gradient as f32 (a 16-bit gradient is widened into a reused buffer). */
  private f32Grad(slot: HostSlot): Float32Array {
    if (slot.gradDtype === 'f32') return slot.grad as Float32Array;
    const n = slot.grad.length;
    if (!this.grad32 || this.grad32.length < n) this.grad32 = new Float32Array(n);
    const out = this.grad32.subarray(0, n);
    this.ctx.kernels.cast(slot.gradDtype, slot.grad, 'f32', out, n);
    return out;
  }

  /** Steps taken: the step counter of slot 0 (every slot steps together). */
  get stepsTaken(): number {
    return this.slots[0]?.step ?? 0;
  }

  /** In the compressed phase from step freeze_step + 1 on. */
  get localGradients(): boolean {
    return this.stepsTaken >= this.options.freezeStep;
  }

  step(slots: readonly OptimizerSlot[], options: StepOptions): void {
    const compressing = this.localGradients;
    slots.forEach((deviceSlot, i) => {
      const slot = hostSlot(this.type, deviceSlot);
      const index = i + (options.firstSlot ?? 0);
      const g = this.group(slot);
      const s = this.hostState(index, slot.master.length);
      s.step += 1;
      if (compressing) this.compressedStep(slot, index, s.tensors.exp_avg!, s.tensors.exp_avg_sq!, g, options.gradScale);
      else this.warmupStep(slot, s.tensors.exp_avg!, s.tensors.exp_avg_sq!, g, options.gradScale, s.step);
    });
  }

  /** Adam without bias correction; the decoupled decay form is DeepSpeed's update + wd * p. */
  private warmupStep(slot: HostSlot, m: Float32Array, v: Float32Array, g: ParamGroup, gradScale: number, step: number): void {
    const [beta1, beta2] = g.betas!;
    this.ctx.kernels.adamw({
      param: slot.master, grad: slot.grad, gradDtype: slot.gradDtype, expAvg: m, expAvgSq: v, n: slot.master.length,
      lr: g.lr, beta1, beta2, eps: this.options.eps, weightDecay: g.weightDecay, step, biasCorrection: false, decoupled: true, gradScale,
      ...(slot.out16 ? { out16: slot.out16, out16Dtype: slot.out16Dtype ?? 'bf16' } : {}),
    });
  }

  private compressedStep(slot: HostSlot, index: number, m: Float32Array, v: Float32Array, g: ParamGroup, gradScale: number): void {
    const [beta1] = g.betas!;
    this.loops.momentumUpdate(m, this.f32Grad(slot), beta1, gradScale);
    this.compress(index, m);
    this.applyMask(g, slot.group, m);
    this.loops.frozenAdamUpdate(slot.master, m, v, g.lr, this.options.eps, g.weightDecay);
    writeOut16(this.ctx.kernels, slot);
  }
}
