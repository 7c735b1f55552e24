// Megatron's conjugate communication ops (megatron/core/tensor_parallel/mappings.py) as autograd
// nodes, each forward next to its backward:
//
//   copyToParallel      forward: identity              backward: all-reduce (sum) over the model group
//   reduceFromParallel  forward: all-reduce (sum)      backward: identity
//   scatterToParallel   forward: keep own last-dim chunk  backward: all-gather along the last dim
//   gatherFromParallel  forward: all-gather last dim   backward: keep own last-dim chunk
//
// Each pair is the other's transpose: a column-parallel layer starts with copyToParallel (every rank
// reads the whole input; the input's gradient is the sum of the ranks' partial gradients), a
// row-parallel one ends with reduceFromParallel (the partial products are summed). Collectives run
// on tensor operands (never host copies of the bytes) and are waited for synchronously with core's
// waitSync: forward runs inside Module.call and backward inside the autograd engine, neither of
// which can await. With degree 1 every op is the identity and records nothing.
import { DSShapeError, waitSync, type ProcessGroup } from '@ds/core';
import { attach, cat, contiguous, copyInto, narrow, needsGrad, noGrad, permute, reshape, Tensor } from '@ds/tensor';

import type { TensorParallel } from './context.js';

/** A contiguous copy of t that this op owns (collectives work in place on it). */
function ownedCopy(t: Tensor, label: string): Tensor {
  return noGrad(() => {
    const c = contiguous(t);
    const out = Tensor.empty([...c.shape], c.dtype, { device: c.device, runtime: c.runtime, category: 'communication', label, uninitialized: true });
    copyInto(c, out);
    if (c !== t) c.dispose();
    return out;
  });
}

/** In place: the sum of t over the group (t contiguous and owned). */
function allReduceInPlace(t: Tensor, group: ProcessGroup, what: string): Tensor {
  waitSync(group.allReduce({ dtype: t.dtype, array: t.operand() }), group, what);
  return t;
}

/** x [..., n] from every rank joined along the last dim: [..., size * n], rank r's block at r * n. */
function allGatherLastDim(x: Tensor, group: ProcessGroup, what: string): Tensor {
  return noGrad(() => {
    const input = contiguous(x);
    const p = group.size;
    // The collective fills [P, ...x.shape]; moving P next to the last dim gives [..., P, n] -> [..., P * n].
    const blocks = Tensor.empty([p, ...input.shape], input.dtype, { device: input.device, runtime: input.runtime, category: 'communication', label: what, uninitialized: true });
    waitSync(group.allGather({ dtype: blocks.dtype, array: blocks.operand() }, { dtype: input.dtype, array: input.operand() }), group, what);
    if (input !== x) input.dispose();
    const r = input.shape.length;
    const order = [...Array.from({ length: r - 1 }, (_, i) => i + 1), 0, r];
    const moved = permute(blocks, order);
    const joined = contiguous(moved);
    const out = reshape(joined, [...x.shape.slice(0, -1), p * x.shape[r - 1]!]);
    for (const t of [blocks, moved, joined]) if (t !== out) t.dispose();
    return out;
  });
}

/** This rank's block of the last dim (a contiguous copy). */
function ownChunkLastDim(x: Tensor, tp: TensorParallel, what: string): Tensor {
  return noGrad(() => {
    const [start, size] = tp.range(x.shape[x.rank - 1]!, `${what}: the last dim`);
    const v = narrow(x, -1, start, size);
    const out = ownedCopy(v, what);
    v.dispose();
    return out;
  });
}

/** Identity forward; all-reduces the gradient over the model group in backward. */
export function copyToParallel(x: Tensor, tp: TensorParallel): Tensor {
  const group = tp.group('copyToParallel');
  if (!group) return x;
  if (!needsGrad(x)) return x;
  const y = x.detach();
  return attach(y, 'copyToParallel', [x], (dy) => [allReduceInPlace(ownedCopy(dy, 'copyToParallel.grad'), group, 'copyToParallel backward')]);
}

/** All-reduces x over the model group in forward; the gradient passes through unchanged. */
export function reduceFromParallel(x: Tensor, tp: TensorParallel): Tensor {
  const group = tp.group('reduceFromParallel');
  if (!group) return x;
  const y = allReduceInPlace(ownedCopy(x, 'reduceFromParallel'), group, 'reduceFromParallel forward');
  return needsGrad(x) ? attach(y, 'reduceFromParallel', [x], (dy) => [dy]) : y;
}

/** This rank's chunk of x's last dim; the gradient is all-gathered back to x's shape. */
export function scatterToParallel(x: Tensor, tp: TensorParallel): Tensor {
  const group = tp.group('scatterToParallel');
  if (!group) return x;
  const y = ownChunkLastDim(x, tp, 'scatterToParallel');
  return needsGrad(x) ? attach(y, 'scatterToParallel', [x], (dy) => [allGatherLastDim(dy, group, 'scatterToParallel backward')]) : y;
}

/** Every rank's x joined along the last dim; the gradient keeps this rank's chunk. */
export function gatherFromParallel(x: Tensor, tp: TensorParallel): Tensor {
  const group = tp.group('gatherFromParallel');
  if (!group) return x;
  const y = allGatherLastDim(x, group, 'gatherFromParallel forward');
  return needsGrad(x) ? attach(y, 'gatherFromParallel', [x], (dy) => [ownChunkLastDim(dy, tp, 'gatherFromParallel backward')]) : y;
}

/** Rows (dim 0) or columns (dim 1) [start, start + size) of a 2-D or 1-D tensor as a new contiguous tensor (no autograd). */
export function shardOf(full: Tensor, dim: number, start: number, size: number, label: string): Tensor {
  return noGrad(() => {
    const v = narrow(full, dim, start, size);
    const out = ownedCopy(v, label);
    v.dispose();
    return out;
  });
}

/** `stride` blocks of dim 0 (QKV's q, k, v), each split across ranks: this rank's chunk of every block, joined. */
export function stridedRowShard(full: Tensor, tp: TensorParallel, stride: number, what: string): Tensor {
  return noGrad(() => {
    const rows = full.shape[0]!;
    if (rows % stride !== 0) throw new DSShapeError(`${what}: ${rows} rows do not split into ${stride} equal blocks`);
    const block = rows / stride;
    const [start, size] = tp.range(block, what);
    const pieces = Array.from({ length: stride }, (_, s) => narrow(full, 0, s * block + start, size));
    const joined = stride === 1 ? pieces[0]! : cat(pieces, 0);
    const out = ownedCopy(joined, what);
    for (const p of pieces) p.dispose();
    if (joined !== pieces[0]) joined.dispose();
    return out;
  });
}
