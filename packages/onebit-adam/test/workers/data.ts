// A learnable, noisy next-token task for the convergence tests: a target is a fixed function of its
// input token 70% of the time and a pseudo-random token otherwise, so the loss has a floor well above
// zero and "within 2% of Adam" compares two converged runs, not two numbers near zero.
import { fromArray, type Tensor } from '@ds/tensor';

function hash(a: number, b: number, c: number, d: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x632be5ab, 0xc2b2ae35) ^ Math.imul(c + 0x1b873593, 0x27d4eb2f) ^ Math.imul(d + 0x165667b1, 0x9e3779b1);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return (h >>> 0) / 4294967296;
}

/** Rows [first, first + rows) of the global batch of `step`, as [rows, t] ids and targets. */
export function noisyBatch(step: number, first: number, rows: number, t: number, vocab: number): { ids: Tensor; targets: Tensor } {
  const ids: number[] = [];
  const targets: number[] = [];
  for (let r = first; r < first + rows; r++) {
    for (let i = 0; i < t; i++) {
      const v = Math.floor(hash(step, r, i, 1) * vocab);
      ids.push(v);
      targets.push(hash(step, r, i, 2) < 0.7 ? (v * 5 + 3) % vocab : Math.floor(hash(step, r, i, 3) * vocab));
    }
  }
  return { ids: fromArray(ids, [rows, t], { dtype: 'i32' }), targets: fromArray(targets, [rows, t], { dtype: 'i32' }) };
}
