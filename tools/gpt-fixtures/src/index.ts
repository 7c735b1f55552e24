// The tiny GPT of the engine tests, shared by @ds/core's and @ds/zero's tests and their workers: its
// config, a ds_config for it, deterministic batches (the same numbers whatever the rank split) and a
// training loop. Imports @ds/tensor (an optional peer of this kit), so it is a subpath of its own:
// @ds-internal/gpt-fixtures; @ds/tensor's own tests use only the kit's root.
import { fromArray, tidy, type Tensor } from '@ds/tensor';

/** What the training loop needs of an engine (structural, so any technique's engine fits). */
export interface TrainableEngine {
  /** The engine's device; batches are made there (default cpu). */
  readonly device?: string;
  trainMicroBatchSizePerGpu(): number;
  gradientAccumulationSteps(): number;
  forward<Out>(...args: unknown[]): Out;
  backward(loss: Tensor): Promise<number>;
  step(): Promise<void>;
}

export const TINY_GPT = { vocabSize: 32, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 16, seed: 3 };

/** A ds_config for the tiny GPT: bf16, gradient accumulation 2, clipping, AdamW (and a ZeRO section when given). */
export function tinyConfig(micro: number, zero?: Record<string, unknown>): Record<string, unknown> {
  return {
    train_micro_batch_size_per_gpu: micro,
    gradient_accumulation_steps: 2,
    bf16: { enabled: true },
    gradient_clipping: 0.5,
    optimizer: { type: 'AdamW', params: { lr: 1e-2, weight_decay: 0.01 } },
    ...(zero ? { zero_optimization: zero } : {}),
  };
}

/** Sample `index` of the global batch of (step, micro): the same numbers whatever the rank split. */
function sample(step: number, micro: number, index: number, t: number, vocab: number): { ids: number[]; targets: number[] } {
  const ids: number[] = [];
  const targets: number[] = [];
  for (let i = 0; i < t; i++) {
    const v = (step * 7 + micro * 3 + index * 11 + i * 5) % (vocab - 1);
    ids.push(v);
    targets.push((v * 3 + 1) % vocab);
  }
  return { ids, targets };
}

/** Rows [first, first + rows) of the global batch of (step, micro) as [rows, t] tensors. */
export function batch(step: number, micro: number, first: number, rows: number, t = 8, vocab = 32, device = 'cpu'): { ids: Tensor; targets: Tensor } {
  const ids: number[] = [];
  const targets: number[] = [];
  for (let r = first; r < first + rows; r++) {
    const s = sample(step, micro, r, t, vocab);
    ids.push(...s.ids);
    targets.push(...s.targets);
  }
  return { ids: fromArray(ids, [rows, t], { dtype: 'i32', device }), targets: fromArray(targets, [rows, t], { dtype: 'i32', device }) };
}

/** Trains steps [from, to); this rank takes rows [rank * micro, (rank + 1) * micro) of each micro batch. Returns per-step mean losses. */
export async function trainSteps(engine: TrainableEngine, from: number, to: number, rank = 0, t = 8, vocab = 32): Promise<number[]> {
  const losses: number[] = [];
  const micro = engine.trainMicroBatchSizePerGpu();
  for (let s = from; s < to; s++) {
    let sum = 0;
    for (let m = 0; m < engine.gradientAccumulationSteps(); m++) {
      const { ids, targets } = batch(s, m, rank * micro, micro, t, vocab, engine.device ?? 'cpu');
      const loss = tidy(() => engine.forward<{ loss: Tensor }>(ids, targets).loss!.keep());
      sum += await engine.backward(loss);
      loss.dispose();
      ids.dispose();
      targets.dispose();
      await engine.step();
    }
    losses.push(sum / engine.gradientAccumulationSteps());
  }
  return losses;
}
