// The training step the speed benchmarks time (bench/gpt.bench.ts, bench/profile-gpt.ts, the cuda
// bench's GPT row): bf16 autocast forward and backward of a GPT on fixed ids and targets, then the
// fused AdamW kernel over f32 moments held here. Internal: not exported from the package.
import { zeros } from '../create.js';
import { tidy } from '../memory/scope.js';
import { adamwStep } from '../ops/optim.js';
import { autocast, withCategory } from '../runtime.js';
import type { Tensor } from '../tensor.js';
import type { GPT } from './gpt.js';

export interface GptTrainer {
  /** One step; returns its loss. */
  step(): number;
  /** Frees the moments. */
  dispose(): void;
}

export function gptTrainer(gpt: GPT, ids: Tensor, targets: Tensor): GptTrainer {
  const params = gpt.parameters();
  const device = params[0]?.device;
  const moments = withCategory('optimizer_states', () => params.map((p) => [zeros(p.shape, { device }).keep(), zeros(p.shape, { device }).keep()] as const));
  let stepNo = 0;
  return {
    step(): number {
      const loss = tidy(() => {
        const l = autocast('bf16', () => gpt.call(ids, targets).loss!);
        l.backward();
        return l.item();
      });
      stepNo++;
      params.forEach((p, i) => adamwStep(p, p.grad!, moments[i]![0], moments[i]![1], { lr: 1e-4, weightDecay: 0.1, step: stepNo }));
      gpt.zeroGrad();
      return loss;
    },
    dispose(): void {
      for (const [m, v] of moments) (m.dispose(), v.dispose());
    },
  };
}
