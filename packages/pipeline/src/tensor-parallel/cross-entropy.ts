// Cross-entropy over logits split by vocabulary across the model-parallel group (Megatron's
// vocab_parallel_cross_entropy): no rank ever holds the whole [rows, V] logits. Per row:
//
//   lse_r  = log sum_{j in shard r} exp(z_j)        (the table's fused cross-entropy kernel on the shard)
//   m      = max_r lse_r                            (all-reduce max)
//   lse    = m + log sum_r exp(lse_r - m)           (all-reduce sum of exp(lse_r - m), each term <= 1)
//   z_t    = the target's logit, from the one rank whose shard holds the target (all-reduce sum)
//   loss   = mean over rows whose target is not -1 of (lse - z_t)
//
// Megatron all-reduces the max logit and the sum of exp(z - max); reducing the shards' log-sum-exp
// is the same computation with the per-shard max folded into lse_r, and reuses the fused kernel.
// Backward needs no communication: d loss / d z_j = (softmax_j - [j = t]) * dloss for this shard's
// columns, with softmax_j = exp(z_j - lse) from the global lse.
import { DSShapeError, waitSync, type ProcessGroup } from '@ds/core';
import { add, affine, attach, cast, cat, contiguous, crossEntropy, exp, log, mul, mulScalar, narrow, needsGrad, noGrad, reshape, save, sub, sum, Tensor, type FloatDType, type I32 } from '@ds/tensor';

import type { TensorParallel } from './context.js';
import { localIndex } from './layers.js';

function allReduce(t: Tensor, group: ProcessGroup, op: 'sum' | 'max', what: string): void {
  waitSync(group.allReduce({ dtype: t.dtype, array: t.operand() }, { op }), group, what);
}

/**
 * logits [..., V / P]: this rank's shard, columns [vocabStart, vocabStart + V / P) of the vocabulary;
 * targets [...] i32 over the whole vocabulary (-1 = ignored). Returns the mean loss (a scalar, the
 * same on every model rank).
 */
export function vocabParallelCrossEntropy(logits: Tensor, targets: Tensor, tp: TensorParallel, vocabStart: number): Tensor {
  const group = tp.group('vocabParallelCrossEntropy');
  if (!group) return crossEntropy(logits, targets);
  if (targets.dtype !== 'i32' || logits.rank < 1 || logits.shape.slice(0, -1).join(',') !== targets.shape.join(',')) {
    throw new DSShapeError(`vocabParallelCrossEntropy: logits [${logits.shape.join(', ')}] and targets [${targets.shape.join(', ')}] ${targets.dtype} (targets must be i32 with logits' shape without the last dim)`);
  }
  const vocab = logits.shape[logits.rank - 1]!;
  const rows = targets.numel;
  const dt = logits.dtype as FloatDType;
  const k = logits.runtime.kernels(logits.device);
  const fwd = noGrad(() => {
    const z = reshape(contiguous(logits), [rows, vocab]); // [rows, V / P]
    const { local, inRange } = localIndex(reshape(targets, [rows]), vocabStart, vocab);
    // Rows whose target lies on another rank get local target 0: their lse is right, their loss term is masked out.
    const shardLoss = Tensor.empty([rows], 'f32', { device: logits.device, runtime: logits.runtime, category: 'activations', label: 'vocabParallelCrossEntropy.loss' });
    const lseShard = Tensor.empty([rows], 'f32', { device: logits.device, runtime: logits.runtime, category: 'activations', label: 'vocabParallelCrossEntropy.lse' });
    k.crossEntropyForward(dt, z.operand() as never, local.operand() as I32, shardLoss.operand() as never, lseShard.operand() as never, rows, vocab);
    const zShard = sub(lseShard, shardLoss); // z_t where the target is here (lse_r - (lse_r - z_t))
    const zt = mul(zShard, inRange);
    const mOwned = affine(lseShard, 1, 0); // a copy: lseShard stays this rank's own
    allReduce(mOwned, group, 'max', 'vocabParallelCrossEntropy max');
    const shifted = sub(lseShard, mOwned);
    const se = exp(shifted);
    allReduce(se, group, 'sum', 'vocabParallelCrossEntropy sum-exp');
    allReduce(zt, group, 'sum', 'vocabParallelCrossEntropy target logit');
    const logSe = log(se);
    const lse = add(mOwned, logSe); // [rows], the same on every rank
    const counted = countedRows(targets);
    const perRow = mul(sub(lse, zt), counted.mask);
    const total = sum(perRow);
    const loss = mulScalar(total, 1 / counted.n);
    for (const t of [shardLoss, lseShard, zShard, zt, mOwned, shifted, se, logSe, perRow, total]) t.dispose();
    return { z, local, inRange, lse, mask: counted.mask, n: counted.n, loss };
  });
  const { z, local, inRange, lse, mask, n, loss } = fwd;
  if (!needsGrad(logits)) {
    for (const t of [z, local, inRange, lse, mask]) if (t !== logits) t.dispose();
    return loss;
  }
  const saved = [save(z), save(local), save(inRange), save(lse), save(mask)];
  for (const t of [z, local, inRange, lse, mask]) if (t !== logits) t.dispose();
  const [sz, slocal, sin, slse, smask] = saved as [Tensor, Tensor, Tensor, Tensor, Tensor];
  return attach(
    loss,
    'vocabParallelCrossEntropy',
    [logits, null],
    (dy) => {
      const tmp: Tensor[] = [];
      const t = <T extends Tensor>(x: T): T => (tmp.push(x), x);
      // dloss per row: dy / counted where the target is not ignored, else 0.
      const dloss = t(mulScalar(t(mul(smask, dy)), 1 / n)); // [rows] f32
      const g = t(Tensor.empty([rows, vocab], dt, { device: logits.device, runtime: logits.runtime, category: 'activations', label: 'vocabParallelCrossEntropy.grad' }));
      // (softmax - onehot(local)) * dloss; rows whose target is elsewhere had onehot(0) subtracted, added back below.
      k.crossEntropyBackward(dt, sz.operand() as never, slocal.operand() as I32, slse.operand() as never, dloss.operand() as never, g.operand() as never, rows, vocab);
      const notHere = t(affine(sin, -1, 1)); // 1 - inRange
      const fix = t(cast(t(reshape(t(mul(dloss, notHere)), [rows, 1])), dt));
      const col0 = t(add(t(narrow(g, 1, 0, 1)), fix));
      const joined = vocab > 1 ? t(cat([col0, t(narrow(g, 1, 1, vocab - 1))], 1)) : col0;
      const out = reshape(joined, logits.shape);
      for (const x of new Set(tmp)) if (x !== out) x.dispose();
      return [out, null];
    },
    saved,
  );
}

/** The mask of rows whose target is not the ignore index -1, and their count. */
function countedRows(targets: Tensor): { mask: Tensor; n: number } {
  const rows = targets.numel;
  // Every non-negative id is in [0, 2^31).
  const { local, inRange } = localIndex(reshape(targets, [rows]), 0, 2 ** 31);
  local.dispose();
  const n = targets.runtime.kernels(targets.device).sum('f32', inRange.operand() as never, rows);
  return { mask: inRange, n };
}
