// Text generation from a trained GPT: temperature sampling over the last position's logits.
import { fromArray, noGrad, tidy, type Module, type Tensor } from '@ds/tensor';

import { mulberry32 } from './rng.js';

export interface SampleOptions {
  maxNewTokens: number;
  temperature: number;
  /** Context window of the model (its block size). */
  blockSize: number;
  seed: number;
  /**
   * Pad the context on the right to a multiple of this many tokens (block-sparse attention takes
   * whole blocks only). The model is causal, so tokens after the last real one change nothing
   * before it: the next token is read at the last real position. Default 1 (no padding).
   */
  padTo?: number;
}

/** Draws an index from softmax(logits / temperature). */
export function sampleToken(logits: ArrayLike<number>, temperature: number, rand: () => number): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  const p = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    p[i] = Math.exp((logits[i]! - max) / Math.max(temperature, 1e-6));
    sum += p[i]!;
  }
  let u = rand() * sum;
  for (let i = 0; i < p.length; i++) {
    u -= p[i]!;
    if (u <= 0) return i;
  }
  return p.length - 1;
}

/** Continues `prompt` (token ids) with the model; `forward(ids)` returns logits [1, T, vocab]. */
export function generate(forward: (ids: Tensor) => Tensor, prompt: readonly number[], opts: SampleOptions): number[] {
  const rand = mulberry32(opts.seed);
  const out = [...prompt];
  for (let n = 0; n < opts.maxNewTokens; n++) {
    const ctx = out.slice(-opts.blockSize);
    const pad = opts.padTo ?? 1;
    const padded = Math.min(Math.ceil(ctx.length / pad) * pad, Math.max(ctx.length, opts.blockSize));
    const input = padded > ctx.length ? [...ctx, ...new Array<number>(padded - ctx.length).fill(0)] : ctx;
    const next = noGrad(() =>
      tidy(() => {
        const ids = fromArray(input, [1, input.length], { dtype: 'i32' });
        const logits = forward(ids); // [1, T, vocab]
        const vocab = logits.shape[2]!;
        const all = logits.toArray();
        return sampleToken(all.slice((ctx.length - 1) * vocab, ctx.length * vocab), opts.temperature, rand);
      }),
    );
    out.push(next);
  }
  return out;
}

/** Mean loss of `forward(ids, targets)` over batches, without building a graph. */
export function evaluate(module: Module, batches: ReadonlyArray<{ inputs: Int32Array; targets: Int32Array }>, rows: number, seq: number): number {
  let total = 0;
  for (const b of batches) {
    total += noGrad(() =>
      tidy(() => {
        const ids = fromArray(b.inputs, [rows, seq], { dtype: 'i32' });
        const targets = fromArray(b.targets, [rows, seq], { dtype: 'i32' });
        return (module.call(ids, targets) as { loss: Tensor }).loss.item();
      }),
    );
  }
  return total / batches.length;
}
