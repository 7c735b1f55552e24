// Lion (Chen et al. 2023), as DeepSpeed's FusedLion applies it, per element:
//   c = beta1 * m + (1 - beta1) * gradScale * g
//   p = p * (1 - lr * weightDecay) - lr * sign(c)     (decoupled weight decay first)
//   m = beta2 * m + (1 - beta2) * gradScale * g
// as kernel calls on the slot's device, with c in one scratch array.
import { SlotOptimizer, writeOut16 } from './base.js';
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
    const k = this.ctx.kernels;
    const scratch = this.slotScratch(slots, ['c']);
    slots.forEach((slot, i) => {
      const g = this.group(slot);
      const n = slot.master.length;
      const s = this.state(i + (options.firstSlot ?? 0), n);
      s.step += 1;
      const [b1, b2] = g.betas!;
      const p = slot.master;
      const m = s.tensors.exp_avg!;
      const c = scratch.c.subarray(0, n);
      // axpy widens a 16-bit gradient itself, so the gradient is read where it lies, twice.
      k.scale('f32', m, c, n, b1, 0);
      k.axpy(slot.gradDtype, slot.grad, 'f32', c, n, (1 - b1) * options.gradScale);
      k.unary('sign', 'f32', c, c, n);
      k.scale('f32', p, p, n, 1 - g.lr * g.weightDecay, 0);
      k.axpy('f32', c, 'f32', p, n, -g.lr);
      k.scale('f32', m, m, n, b2, 0);
      k.axpy(slot.gradDtype, slot.grad, 'f32', m, n, (1 - b2) * options.gradScale);
      writeOut16(k, slot);
    });
  }
}
