// SGD with momentum, dampening, Nesterov and L2 weight decay (torch.optim.SGD's semantics, which is
// what DeepSpeed falls back to for type "SGD"), per element:
//   d = gradScale * g + weightDecay * p
//   buf = d on the first step, else momentum * buf + (1 - dampening) * d
//   d = nesterov ? d + momentum * buf : buf          (only with a momentum buffer)
//   p = p - lr * d
// Each line is a kernel call or two on the slot's device; d lives in one scratch array.
import { DSConfigError } from '../errors.js';
import { SlotOptimizer, writeOut16 } from './base.js';
import type { OptimizerContext, OptimizerSlot, ParamGroup, StepOptions } from './types.js';

export interface SgdOptions {
  momentum: number;
  dampening: number;
  nesterov: boolean;
}

export class Sgd extends SlotOptimizer {
  readonly type = 'SGD';
  readonly elementwise = true;
  readonly stateNames: readonly string[];

  constructor(
    ctx: OptimizerContext,
    groups: ParamGroup[],
    private readonly options: SgdOptions,
  ) {
    super(ctx, groups.map((g) => ({ ...g, momentum: g.momentum ?? options.momentum })));
    if (options.nesterov && (options.momentum <= 0 || options.dampening !== 0)) {
      const message = `nesterov momentum requires momentum > 0 and dampening = 0, got momentum ${options.momentum} and dampening ${options.dampening}`;
      throw new DSConfigError(`SGD: ${message}; set optimizer.params.momentum above 0 and dampening to 0, or turn nesterov off`, [
        { path: 'optimizer.params.nesterov', message, value: true },
      ]);
    }
    this.stateNames = options.momentum > 0 ? ['momentum_buffer'] : [];
  }

  step(slots: readonly OptimizerSlot[], options: StepOptions): void {
    const k = this.ctx.kernels;
    const { dampening, nesterov } = this.options;
    const scratch = this.slotScratch(slots, ['d']);
    slots.forEach((slot, i) => {
      const g = this.group(slot);
      const n = slot.master.length;
      const s = this.state(i + (options.firstSlot ?? 0), n);
      const first = s.step === 0;
      s.step += 1;
      const p = slot.master;
      const d = scratch.d.subarray(0, n);
      // d = weightDecay * p + gradScale * g (axpy widens a 16-bit gradient itself)
      k.scale('f32', p, d, n, g.weightDecay, 0);
      k.axpy(slot.gradDtype, slot.grad, 'f32', d, n, options.gradScale);
      let step = d;
      const buf = s.tensors.momentum_buffer;
      if (buf) {
        const mu = g.momentum ?? 0;
        if (first) {
          k.copy(d, buf, n);
        } else {
          k.scale('f32', buf, buf, n, mu, 0);
          k.axpy('f32', d, 'f32', buf, n, 1 - dampening);
        }
        if (nesterov) k.axpy('f32', buf, 'f32', d, n, mu);
        else step = buf;
      }
      k.axpy('f32', step, 'f32', p, n, -g.lr);
      writeOut16(k, slot);
    });
  }
}
