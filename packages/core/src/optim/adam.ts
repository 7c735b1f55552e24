// Adam and AdamW on the fused native kernel (one pass: moments, update, optional 16-bit copy).
//
// DeepSpeed's "Adam" type is FusedAdam with adam_w_mode=true by default, so plain "Adam" in a
// ds_config decays weights the AdamW way unless `adam_w_mode: false`; "AdamW" forces it. We follow
// that, not torch.optim.Adam's default.
import { SlotOptimizer } from './base.js';
import type { OptimizerContext, OptimizerSlot, ParamGroup, StepOptions } from './types.js';

export interface AdamOptions {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  biasCorrection: boolean;
  adamWMode: boolean;
}

export class Adam extends SlotOptimizer {
  readonly type: string;
  readonly elementwise = true;
  readonly stateNames = ['exp_avg', 'exp_avg_sq'] as const;
  private readonly eps: number;
  private readonly biasCorrection: boolean;
  private readonly adamWMode: boolean;

  constructor(ctx: OptimizerContext, groups: ParamGroup[], options: AdamOptions, type = options.adamWMode ? 'AdamW' : 'Adam') {
    super(ctx, groups.map((g) => ({ ...g, betas: g.betas ?? [...options.betas] })));
    this.type = type;
    this.eps = options.eps;
    this.biasCorrection = options.biasCorrection;
    this.adamWMode = options.adamWMode;
  }

  step(slots: readonly OptimizerSlot[], options: StepOptions): void {
    slots.forEach((slot, i) => {
      const g = this.group(slot);
      const s = this.state(i + (options.firstSlot ?? 0), slot.master.length);
      s.step += 1;
      const [beta1, beta2] = g.betas!;
      this.ctx.kernels.adamw({
        param: slot.master,
        grad: slot.grad,
        gradDtype: slot.gradDtype,
        expAvg: s.tensors.exp_avg!,
        expAvgSq: s.tensors.exp_avg_sq!,
        n: slot.master.length,
        lr: g.lr,
        beta1,
        beta2,
        eps: this.eps,
        weightDecay: g.weightDecay,
        step: s.step,
        biasCorrection: this.biasCorrection,
        decoupled: this.adamWMode,
        gradScale: options.gradScale,
        ...(slot.out16 ? { out16: slot.out16, out16Dtype: slot.out16Dtype ?? 'bf16' } : {}),
      });
    });
  }
}
