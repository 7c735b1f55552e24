// A minimal AdamW training step over a module's parameters, for tests that train a few steps.
import { zeros } from '../../src/create.js';
import { tidy } from '../../src/memory/scope.js';
import type { Module } from '../../src/nn/module.js';
import { adamwStep } from '../../src/ops/optim.js';
import type { Tensor } from '../../src/tensor.js';
import { withCategory } from '../../src/runtime.js';

export class TinyAdamW {
  private readonly state = new Map<Tensor, [Tensor, Tensor]>();
  private step = 0;
  constructor(private readonly params: Tensor[], private readonly lr = 1e-2) {
    withCategory('optimizer_states', () => {
      for (const p of params) this.state.set(p, [zeros(p.shape, { device: p.device }).keep(), zeros(p.shape, { device: p.device }).keep()]);
    });
  }
  apply(): void {
    this.step++;
    for (const p of this.params) {
      if (!p.grad) continue;
      const [m, v] = this.state.get(p)!;
      adamwStep(p, p.grad, m, v, { lr: this.lr, step: this.step, weightDecay: 0.01 });
    }
  }
}

/** forward + backward + AdamW + zeroGrad inside one tidy scope; returns the loss. */
export function trainStep(model: Module, opt: TinyAdamW, forward: () => Tensor): number {
  const loss = tidy(() => {
    const l = forward();
    l.backward();
    return l.item();
  });
  opt.apply();
  model.zeroGrad();
  return loss;
}
