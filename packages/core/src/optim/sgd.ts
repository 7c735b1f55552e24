// SGD with momentum, dampening, Nesterov and L2 weight decay (torch.optim.SGD's semantics, which is
// what DeepSpeed falls back to for type "SGD").
import { DSConfigError } from '../errors.js';
import { SlotOptimizer, gradReader, writeOut16 } from './base.js';
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
    slots.forEach((slot, i) => {
      const g = this.group(slot);
      const s = this.state(i + (options.firstSlot ?? 0), slot.master.length);
      const first = s.step === 0;
      s.step += 1;
      const grad = gradReader(slot);
      const p = slot.master;
      const mu = g.momentum ?? 0;
      const buf = s.tensors.momentum_buffer;
      const { dampening, nesterov } = this.options;
      for (let j = 0; j < p.length; j++) {
        let d = grad(j) * options.gradScale + g.weightDecay * p[j]!;
        if (buf) {
          buf[j] = first ? d : mu * buf[j]! + (1 - dampening) * d;
          d = nesterov ? d + mu * buf[j]! : buf[j]!;
        }
        p[j] = p[j]! - g.lr * d;
      }
      writeOut16(this.ctx.kernels, slot);
    });
  }
}
