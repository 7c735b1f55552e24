// Lion (Chen et al. 2023), as DeepSpeed's FusedLion applies it: decoupled weight decay first, then a
// step of the sign of the interpolated momentum, then the momentum update with beta2.
import { SlotOptimizer, gradReader, writeOut16 } from './base.js';
import type { OptimizerContext, OptimizerSlot, ParamGroup, StepOptions } from './types.js';

export class Lion extends SlotOptimizer {
  readonly type = 'Lion';
  readonly elementwise = true;
  readonly stateNames = ['exp_avg'] as const;

  constructor(
    ctx: OptimizerContext,
    groups: ParamGroup[],
    betas: [number, number],
  ) {
    super(ctx, groups.map((g) => ({ ...g, betas: g.betas ?? [...betas] })));
  }

  step(slots: readonly OptimizerSlot[], options: StepOptions): void {
    slots.forEach((slot, i) => {
      const g = this.group(slot);
      const s = this.state(i + (options.firstSlot ?? 0), slot.master.length);
      s.step += 1;
      const [b1, b2] = g.betas!;
      const grad = gradReader(slot);
      const p = slot.master;
      const m = s.tensors.exp_avg!;
      const decay = 1 - g.lr * g.weightDecay;
      for (let j = 0; j < p.length; j++) {
        const gj = grad(j) * options.gradScale;
        const c = b1 * m[j]! + (1 - b1) * gj;
        p[j] = p[j]! * decay - g.lr * Math.sign(c);
        m[j] = b2 * m[j]! + (1 - b2) * gj;
      }
      writeOut16(this.ctx.kernels, slot);
    });
  }
}
