// Reference Adam / AdamW step over one flat f32 master buffer (torch.optim.AdamW semantics).

import type { HostAdamWArgs as AdamWArgs } from '../kernels/table.js';
import { rd, wr } from './access.js';

export function adamw(a: AdamWArgs): void {
  const bc1 = a.biasCorrection ? 1 - a.beta1 ** a.step : 1;
  const bc2 = a.biasCorrection ? 1 - a.beta2 ** a.step : 1;
  const stepSize = a.lr / bc1;
  const sqrtBc2 = Math.sqrt(bc2);
  for (let i = 0; i < a.n; i++) {
    let p = a.param[i]!;
    let g = rd(a.gradDtype, a.grad, i) * a.gradScale;
    if (a.decoupled) p *= 1 - a.lr * a.weightDecay;
    else g += a.weightDecay * p;
    const m = a.beta1 * a.expAvg[i]! + (1 - a.beta1) * g;
    const v = a.beta2 * a.expAvgSq[i]! + (1 - a.beta2) * g * g;
    a.expAvg[i] = m;
    a.expAvgSq[i] = v;
    p -= (stepSize * m) / (Math.sqrt(v) / sqrtBc2 + a.eps);
    a.param[i] = p;
    if (a.out16) wr(a.out16Dtype ?? 'bf16', a.out16, i, p);
  }
}
