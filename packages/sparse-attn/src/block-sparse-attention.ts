// Block-sparse attention forward and backward: softmax(q k^T * scale + masks) v over the blocks of a
// layout only. DeepSpeed splits it into three Triton kernels, SDD (scores = q k^T on the layout's
// blocks), a block-sparse softmax (scale, key-padding mask, attention mask) and DSD (context =
// probabilities x v); their backward needs the third product kind, DDS. Here each group of block
// rows with the same block count (plan.ts) runs as
//   SDD:  gather the group's q blocks and its rows' k blocks, one batched GEMM [block, D] x [D, n*block]
//   softmax: additive masks, then the row softmax over the n*block gathered keys
//   DSD:  one batched GEMM [block, n*block] x [n*block, D] with the gathered v blocks
// on @ds/tensor's kernel table, so the products run natively, SIMD and multithreaded on the runtime's
// one thread pool (no second pool). The backward is that of the same ops: the GEMM backward gives the
// DSD/DDS products and the gathers' backward (embedding's scatter-add) returns dq, dk, dv. Memory is
// O(non-zero blocks): gathered k/v are nnz x block x D, scores nnz x block x block; the dense T x T
// matrix is never formed.
import {
  cat,
  contiguous,
  DSShapeError,
  DSUnsupportedError,
  embedding,
  fromArray,
  matmul,
  mulScalar,
  add,
  reshape,
  softmax,
  transpose,
  type Tensor,
} from '@ds/tensor';

import type { BlockPlan, RowGroup } from './plan.js';

/** Added to a masked score (the value @ds/tensor's maskedAttention uses): exp() underflows to 0. */
export const MASKED = -1e9;

export interface BlockSparseOptions {
  /** Multiplier of q k^T. */
  scale: number;
  /** [B, T]: 1 keeps key j of sample b, 0 masks it (DeepSpeed's key_padding_mask; 'mul' mode). */
  keyPaddingMask?: Tensor;
  /** [T, T], added to the scores (DeepSpeed's attn_mask in 'add' mode). */
  attnMask?: Tensor;
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Checks q, k, v against the plan; returns [B, H, T, D]. */
function checkInputs(q: Tensor, k: Tensor, v: Tensor, plan: BlockPlan): [number, number, number, number] {
  if (q.rank !== 4 || fmt(q.shape) !== fmt(k.shape) || fmt(q.shape) !== fmt(v.shape)) {
    throw new DSShapeError(`blockSparseAttention: q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${fmt(v.shape)} must share one shape [B, H, T, D] (self-attention)`);
  }
  const [b, h, t, d] = q.shape as [number, number, number, number];
  if (t % plan.block !== 0) {
    throw new DSShapeError(`blockSparseAttention: sequence length ${t} is not a multiple of the block size ${plan.block}; pad it first (padToBlockSize)`);
  }
  if (h !== plan.heads || t / plan.block !== plan.blocks) {
    throw new DSShapeError(`blockSparseAttention: q has ${h} heads and ${t / plan.block} blocks of ${plan.block}, the layout ${plan.heads} heads and ${plan.blocks} blocks`);
  }
  return [b, h, t, d];
}

/** The additive mask of one row group: [B or 1, R, block, n*block], or null when nothing is masked. */
function groupMask(g: RowGroup, plan: BlockPlan, t: number, batch: number, kpm: ArrayLike<number> | null, am: ArrayLike<number> | null): Tensor | null {
  const { block: bs, causal } = plan;
  const R = g.rows.length;
  const w = g.n * bs;
  if (!kpm && !am && !causal) return null;
  if (!kpm && !am && g.diagonalLast) {
    // Only causality, and every row's blocks end at its diagonal block: every row of the group has the
    // same mask, the upper triangle of its last block: one [block, n*block] tile.
    const tile = new Float64Array(bs * w);
    for (let i = 0; i < bs; i++) for (let e = i + 1; e < bs; e++) tile[i * w + (g.n - 1) * bs + e] = MASKED;
    return fromArray(tile, [1, 1, bs, w], { dtype: 'f32' });
  }
  const per = R * bs * w;
  const lead = kpm ? batch : 1;
  // f64 so that an f64-checking runtime sees the attn_mask values unrounded.
  const m = new Float64Array(lead * per);
  for (let j = 0; j < R; j++) {
    const r = g.rows[j]!;
    for (let s = 0; s < g.n; s++) {
      const c = g.cols[j * g.n + s]!;
      for (let i = 0; i < bs; i++) {
        const at = (j * bs + i) * w + s * bs;
        const qi = r * bs + i;
        for (let e = 0; e < bs; e++) {
          const kj = c * bs + e;
          let x = causal && kj > qi ? MASKED : 0;
          if (am) x += am[qi * t + kj]!;
          m[at + e] = x;
        }
      }
    }
  }
  if (kpm) {
    for (let b = 1; b < batch; b++) m.copyWithin(b * per, 0, per);
    for (let b = 0; b < batch; b++) {
      for (let j = 0; j < R; j++) {
        for (let s = 0; s < g.n; s++) {
          const c = g.cols[j * g.n + s]!;
          for (let i = 0; i < bs; i++) {
            const at = b * per + (j * bs + i) * w + s * bs;
            // keep 1 -> +0, keep 0 -> MASKED, linear in between (as maskedAttention).
            for (let e = 0; e < bs; e++) m[at + e] += (1 - kpm[b * t + c * bs + e]!) * MASKED;
          }
        }
      }
    }
  }
  return fromArray(m, [lead, R, bs, w], { dtype: 'f32' });
}

function readMasks(opts: BlockSparseOptions, b: number, t: number): [ArrayLike<number> | null, ArrayLike<number> | null] {
  let kpm: ArrayLike<number> | null = null;
  let am: ArrayLike<number> | null = null;
  if (opts.keyPaddingMask) {
    const m = opts.keyPaddingMask;
    if (m.rank !== 2 || m.shape[0] !== b || m.shape[1] !== t) throw new DSShapeError(`blockSparseAttention: keyPaddingMask ${fmt(m.shape)} must be [B, T] = [${b}, ${t}]`);
    kpm = m.toArray();
  }
  if (opts.attnMask) {
    const m = opts.attnMask;
    if (m.numel !== t * m.shape[m.rank - 1]! || m.shape[m.rank - 1] !== t || m.shape[m.rank - 2] !== t) {
      throw new DSUnsupportedError(`blockSparseAttention: attnMask ${fmt(m.shape)} is not supported; give one [T, T] = [${t}, ${t}] mask shared by the batch and heads (as DeepSpeed's attn_mask)`);
    }
    if (m.requiresGrad) throw new DSUnsupportedError('blockSparseAttention: attnMask requires grad; the block-sparse kernel treats it as a constant (detach it)');
    am = m.toArray();
  }
  return [kpm, am];
}

/**
 * q, k, v [B, H, T, D] -> [B, H, T, D], attending only within the plan's blocks (and, when the plan
 * is causal, only to keys at or before the query). Differentiable in q, k and v.
 */
export function blockSparseAttention(q: Tensor, k: Tensor, v: Tensor, plan: BlockPlan, opts: BlockSparseOptions): Tensor {
  const [B, H, T, D] = checkInputs(q, k, v, plan);
  const [kpm, am] = readMasks(opts, B, T);
  const { block: bs, blocks: nb } = plan;
  // Handles are disposed as soon as nothing reads them: an op that needs a tensor in backward holds
  // its own handle (save), so only the transient scores and gathers are freed early, which keeps the
  // peak near the saved activations (gathered q/k/v blocks and the probabilities).
  const free = (...ts: Tensor[]): void => ts.forEach((x) => x.dispose());
  // Tables of blocks: row (b*H + h)*nb + r holds block r of head h of sample b.
  const qs = mulScalar(q, opts.scale);
  const [kc, vc] = [contiguous(k), contiguous(v)];
  const qt = reshape(qs, [B * H * nb, bs * D]);
  const kt = reshape(kc, [B * H * nb, bs * D]);
  const vt = reshape(vc, [B * H * nb, bs * D]);
  const outs: Tensor[] = [];
  // Where each (b, h, r) ends up in the concatenated group outputs.
  const where = new Int32Array(B * H * nb);
  let offset = 0;
  for (const g of plan.groups) {
    const R = g.rows.length;
    const w = g.n * bs;
    const qIds = new Int32Array(B * R);
    const kIds = new Int32Array(B * R * g.n);
    for (let b = 0; b < B; b++) {
      for (let j = 0; j < R; j++) {
        const base = (b * H + g.heads[j]!) * nb;
        qIds[b * R + j] = base + g.rows[j]!;
        where[base + g.rows[j]!] = offset + b * R + j;
        for (let s = 0; s < g.n; s++) kIds[(b * R + j) * g.n + s] = base + g.cols[j * g.n + s]!;
      }
    }
    const qi = fromArray(qIds, [B * R], { dtype: 'i32' });
    const ki = fromArray(kIds, [B * R * g.n], { dtype: 'i32' });
    const qe = embedding(qi, qt);
    const ke = embedding(ki, kt);
    const ve = embedding(ki, vt);
    free(qi, ki);
    const qg = reshape(qe, [B * R, bs, D]); // [B*R, block, D]
    const kg = reshape(ke, [B * R, w, D]); // [B*R, n*block, D]
    const vg = reshape(ve, [B * R, w, D]);
    const kT = transpose(kg, -2, -1);
    let scores = matmul(qg, kT); // SDD: [B*R, block, n*block]
    free(qe, qg, ke, kg, kT);
    const mask = groupMask(g, plan, T, B, kpm, am);
    if (mask) {
      const s4 = reshape(scores, [B, R, bs, w]);
      const masked = add(s4, mask);
      free(scores, s4, mask);
      scores = reshape(masked, [B * R, bs, w]);
      free(masked);
    }
    const p = softmax(scores); // block-sparse softmax over the row's n*block keys
    free(scores);
    const o = matmul(p, vg); // DSD: [B*R, block, D]
    free(p, ve, vg);
    outs.push(reshape(o, [B * R, bs * D]));
    free(o);
    offset += B * R;
  }
  free(qs, qt, kt, vt);
  if (kc !== k) free(kc); // contiguous() hands back its input when it already is
  if (vc !== v) free(vc);
  const all = outs.length === 1 ? outs[0]! : cat(outs, 0); // [B*H*nb, block*D] in group order
  if (all !== outs[0]) free(...outs);
  const ids = fromArray(where, [B * H * nb], { dtype: 'i32' });
  const back = embedding(ids, all); // (b, h, r) order
  free(ids, all);
  const y = reshape(back, [B, H, T, D]);
  free(back);
  return y;
}
