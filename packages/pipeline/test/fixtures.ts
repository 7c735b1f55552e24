// The tiny GPT the pipeline tests train, its ds_config, and the single-process reference the
// pipeline runs are compared with: the same layers in one PipelineModule of one stage, trained by
// core's ordinary Engine (forward / backward / step per micro batch).
import { batch } from '@ds-internal/gpt-fixtures';
import { initialize, type Plugin } from '@ds/core';
import { Module, noGrad, tidy, type Tensor } from '@ds/tensor';
import { zero } from '@ds/zero';

import { gptPipe, type PipelineModule } from '../src/index.js';

export const PIPE_GPT = { vocabSize: 32, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 16, seed: 3 };

/** Precision, clipping and ZeRO stage of a test run: fp32 without clipping or ZeRO unless asked. */
export interface RunOptions {
  bf16?: boolean;
  /** fp16 with dynamic loss scaling, from a scale high enough that the first steps overflow and are skipped. */
  fp16?: boolean;
  /** gradient_clipping. */
  clip?: number;
  /** zero_optimization.stage (@ds/zero registered beside the pipeline). */
  zero?: number;
  /** data_types.grad_accum_dtype 'fp32' (under ZeRO gradients are otherwise kept in the parameters' 16-bit type). */
  fp32GradAccum?: boolean;
}

/** The plugins a run needs besides pipeline(): @ds/zero when it asks for a ZeRO stage. */
export function runPlugins(run: RunOptions): Plugin[] {
  return run.zero ? [zero()] : [];
}

/** gradient_clipping of the clipped runs: below the tiny GPT's gradient norm on every one of the 20 batches (0.7-2.4). */
export const CLIP = 0.5;

/** The fp16 section of the fp16 runs: 2^20 overflows the first steps; a short window grows the scale back so it overflows again. */
export const FP16 = { enabled: true, initial_scale_power: 20, loss_scale_window: 4, hysteresis: 1, min_loss_scale: 1 };

/** AdamW; `micro` micro batches of `rows` rows (default 2) per data-parallel rank. */
export function pipeConfig(micro: number, data: number, run: RunOptions = {}, rows = 2): Record<string, unknown> {
  return {
    train_batch_size: rows * micro * data,
    train_micro_batch_size_per_gpu: rows,
    gradient_accumulation_steps: micro,
    optimizer: { type: 'AdamW', params: { lr: 1e-2, weight_decay: 0.01 } },
    ...(run.bf16 ? { bf16: { enabled: true } } : {}),
    ...(run.fp16 ? { fp16: FP16 } : {}),
    ...(run.clip ? { gradient_clipping: run.clip } : {}),
    ...(run.zero ? { zero_optimization: { stage: run.zero } } : {}),
    ...(run.fp32GradAccum ? { data_types: { grad_accum_dtype: 'fp32' } } : {}),
  };
}

/** The options of a test run as the workers read them (DS_TEST_RUN). */
export function runFromEnv(): RunOptions {
  return process.env.DS_TEST_RUN ? (JSON.parse(process.env.DS_TEST_RUN) as RunOptions) : {};
}

/** What trainMicroSteps needs of core's Engine. */
interface MicroStepEngine {
  forward<Out>(...args: unknown[]): Out;
  backward(loss: Tensor): Promise<number>;
  step(): Promise<void>;
  getGlobalGradNorm(): number;
}

/** Per batch: the mean loss, the global gradient norm (NaN on a skipped step). */
export interface Curve {
  losses: number[];
  norms: number[];
}

/**
 * Forward / backward / step per micro batch, `micro` micro batches of `rows(step, micro)` per step,
 * with a model that returns its loss; returns each step's mean loss.
 */
export async function trainMicroSteps(engine: MicroStepEngine, steps: number, micro: number, rows: (s: number, k: number) => { ids: Tensor; targets: Tensor }, first = 0): Promise<Curve> {
  const losses: number[] = [];
  const norms: number[] = [];
  for (let s = first; s < first + steps; s++) {
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
    norms.push(engine.getGlobalGradNorm());
  }
  return { losses, norms };
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

/** What the single-process run gives the comparisons. */
export interface Reference extends Curve {
  evalLoss: number;
  skipped: number;
  /** fp32 master weights by name after `snapshotAt` batches (names of the one-stage PipelineModule), when asked. */
  snapshot: Map<string, Float32Array> | null;
}

/**
 * Per-batch mean losses and gradient norms of the single-process run over the same global batches
 * (data ranks' rows side by side), its skipped steps, and the mean loss of batch `steps` in eval
 * mode afterwards.
 */
export async function referenceLosses(micro: number, data: number, steps: number, run: RunOptions = {}, snapshotAt?: number): Promise<Reference> {
  const model = new WholeModel(gptPipe(PIPE_GPT, { numStages: 1, stageId: 0 }));
  const cfg = { ...pipeConfig(micro, data, run), train_micro_batch_size_per_gpu: 2 * data, train_batch_size: 2 * micro * data };
  const { engine } = await initialize({ model, config: cfg, dist: null, plugins: runPlugins(run), log: () => {} });
  const rows = (s: number, k: number) => batch(s, k, 0, 2 * data);
  let snapshot: Map<string, Float32Array> | null = null;
  const curve: Curve = { losses: [], norms: [] };
  const add = (c: Curve) => (curve.losses.push(...c.losses), curve.norms.push(...c.norms));
  if (snapshotAt !== undefined) {
    add(await trainMicroSteps(engine, snapshotAt, micro, rows));
    const masters = await engine.stateManager.masterWeights();
    snapshot = new Map([...masters].map(([n, w]) => [n.replace(/^pipe\./, ''), w]));
    add(await trainMicroSteps(engine, steps - snapshotAt, micro, rows, snapshotAt));
  } else {
    add(await trainMicroSteps(engine, steps, micro, rows));
  }
  model.eval();
  let evalSum = 0;
  for (let k = 0; k < micro; k++) {
    const { ids, targets } = batch(steps, k, 0, 2 * data);
    evalSum += noGrad(() => tidy(() => model.call(ids, targets).item()));
    ids.dispose();
    targets.dispose();
  }
  const skipped = engine.skippedSteps;
  engine.destroy();
  return { ...curve, evalLoss: evalSum / micro, skipped, snapshot };
}

/** Relative differences batch by batch (NaN against NaN counts as equal), with the worst one described for the failure message. */
export function worstRelative(gotIn: readonly (number | null)[], want: readonly number[]): { worst: number; at: string } {
  const got = gotIn.map((g) => g ?? NaN); // JSON writes a skipped step's NaN norm as null
  const rel = got.map((g, s) => (Number.isNaN(g) && Number.isNaN(want[s]!) ? 0 : Math.abs(g - want[s]!) / Math.abs(want[s]!)));
  const worst = Math.max(...rel.map((r) => (Number.isNaN(r) ? Infinity : r)));
  const i = rel.findIndex((r) => r === worst || (Number.isNaN(r) && worst === Infinity));
  return { worst, at: `batch ${i}: ${got[i]} vs ${want[i]}` };
}
