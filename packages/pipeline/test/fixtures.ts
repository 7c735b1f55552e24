// The tiny GPT the pipeline tests train, its ds_config, and the single-process reference the
// pipeline runs are compared with: the same layers in one PipelineModule of one stage, trained by
// core's ordinary Engine (forward / backward / step per micro batch).
import { batch } from '@ds-internal/gpt-fixtures';
import { initialize } from '@ds/core';
import { Module, noGrad, tidy, type Tensor } from '@ds/tensor';

import { gptPipe, type PipelineModule } from '../src/index.js';

export const PIPE_GPT = { vocabSize: 32, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 16, seed: 3 };

/** fp32 (or bf16), no clipping, AdamW; `micro` micro batches of 2 rows per data-parallel rank. */
export function pipeConfig(micro: number, data: number, bf16 = false): Record<string, unknown> {
  return {
    train_batch_size: 2 * micro * data,
    train_micro_batch_size_per_gpu: 2,
    gradient_accumulation_steps: micro,
    optimizer: { type: 'AdamW', params: { lr: 1e-2, weight_decay: 0.01 } },
    ...(bf16 ? { bf16: { enabled: true } } : {}),
  };
}

/** What trainMicroSteps needs of core's Engine. */
interface MicroStepEngine {
  forward<Out>(...args: unknown[]): Out;
  backward(loss: Tensor): Promise<number>;
  step(): Promise<void>;
}

/**
 * Forward / backward / step per micro batch, `micro` micro batches of `rows(step, micro)` per step,
 * with a model that returns its loss; returns each step's mean loss.
 */
export async function trainMicroSteps(engine: MicroStepEngine, steps: number, micro: number, rows: (s: number, k: number) => { ids: Tensor; targets: Tensor }): Promise<number[]> {
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    let sum = 0;
    for (let k = 0; k < micro; k++) {
      const { ids, targets } = rows(s, k);
      const loss = tidy(() => engine.forward<Tensor>(ids, targets).keep());
      sum += await engine.backward(loss);
      loss.dispose();
      ids.dispose();
      targets.dispose();
      await engine.step();
    }
    losses.push(sum / micro);
  }
  return losses;
}

class WholeModel extends Module<[Tensor, Tensor], Tensor> {
  constructor(readonly pipe: PipelineModule) {
    super();
    this.registerModule('pipe', pipe);
  }
  forward(ids: Tensor, targets: Tensor): Tensor {
    return this.pipe.loss(this.pipe.call(ids), targets);
  }
}

/**
 * Per-batch mean losses of the single-process run over the same global batches (data ranks' rows
 * side by side), and the mean loss of batch `steps` in eval mode afterwards.
 */
export async function referenceLosses(micro: number, data: number, steps: number, bf16 = false): Promise<{ losses: number[]; evalLoss: number }> {
  const model = new WholeModel(gptPipe(PIPE_GPT, { numStages: 1, stageId: 0 }));
  const cfg = { ...pipeConfig(micro, data, bf16), train_micro_batch_size_per_gpu: 2 * data, train_batch_size: 2 * micro * data };
  const { engine } = await initialize({ model, config: cfg, dist: null, log: () => {} });
  const losses = await trainMicroSteps(engine, steps, micro, (s, k) => batch(s, k, 0, 2 * data));
  model.eval();
  let evalSum = 0;
  for (let k = 0; k < micro; k++) {
    const { ids, targets } = batch(steps, k, 0, 2 * data);
    evalSum += noGrad(() => tidy(() => model.call(ids, targets).item()));
    ids.dispose();
    targets.dispose();
  }
  engine.destroy();
  return { losses, evalLoss: evalSum / micro };
}
