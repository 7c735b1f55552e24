// Batch sampling over a token stream (the train/validation split is by document: src/text.ts).
import { mulberry32 } from './rng.js';

export interface Batch {
  /** [batch, seq] input ids, row-major. */
  inputs: Int32Array;
  /** [batch, seq] next-token targets. */
  targets: Int32Array;
}

/**
 * Samples random windows of `seq + 1` tokens. Each rank passes its own `rank`, so data-parallel
 * ranks see different windows of the same stream, and a resumed run continues the same sequence
 * (the sampler is a pure function of seed, rank and step).
 */
export function sampleBatch(tokens: Int32Array, batch: number, seq: number, seed: number, rank: number, step: number): Batch {
  if (tokens.length < seq + 2) throw new RangeError(`the token stream (${tokens.length}) is shorter than one window (${seq + 1})`);
  const rand = mulberry32((seed * 1_000_003 + rank * 7919 + step * 104_729) >>> 0);
  const inputs = new Int32Array(batch * seq);
  const targets = new Int32Array(batch * seq);
  for (let b = 0; b < batch; b++) {
    const start = Math.floor(rand() * (tokens.length - seq - 1));
    inputs.set(tokens.subarray(start, start + seq), b * seq);
    targets.set(tokens.subarray(start + 1, start + seq + 1), b * seq);
  }
  return { inputs, targets };
}
