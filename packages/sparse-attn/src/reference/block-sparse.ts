// The plain specification of block-sparse attention in DeepSpeed's storage: scores and
// probabilities are kept as [B, nnz, block, block], the layout's non-zero blocks in (head, row,
// column) order (layout.nonzero()), and the three product kinds are written out as loops:
//   SDD  sparse = dense x dense^T   scores  = q k^T on the layout's blocks
//   DSD  dense  = sparse x dense    context = p v, and dq = ds k
//   DDS  dense  = (dense^T x sparse)^T   dk = ds^T q, dv = p^T do (the transposed sparse operand)
// with the block-sparse softmax (scale, causal mask inside blocks, key padding, additive mask) and
// its backward between them. Float64 throughout; slow, for tests and as the twin of a future fused
// native kernel. blockSparseAttention (the composed path on @ds/tensor's kernels) is tested against it.
import { DSShapeError } from '@ds/tensor';

import type { BlockLayout } from '../layout/layout.js';
import { MASKED } from '../block-sparse-attention.js';

export interface ReferenceShape {
  B: number;
  H: number;
  T: number;
  D: number;
  block: number;
}

export interface ReferenceMasks {
  scale: number;
  causal: boolean;
  /** [B * T], 1 keeps the key. */
  keyPaddingMask?: ArrayLike<number>;
  /** [T * T], added to the scores. */
  attnMask?: ArrayLike<number>;
}

/** The non-zero blocks of a layout as (head, row, col) triples, dropping blocks above the diagonal when causal. */
export function nonzeroBlocks(layout: BlockLayout, causal: boolean): [number, number, number][] {
  const out: [number, number, number][] = [];
  for (let h = 0; h < layout.heads; h++) for (let r = 0; r < layout.blocks; r++) for (let c = 0; c < layout.blocks; c++) if (layout.get(h, r, c) && (!causal || c <= r)) out.push([h, r, c]);
  return out;
}

const at = (s: ReferenceShape, b: number, h: number, t: number): number => ((b * s.H + h) * s.T + t) * s.D;

/** SDD: out[b, z] = a[b, h, rows of r] . c[b, h, rows of c]^T for block z = (h, r, c). */
export function sdd(a: ArrayLike<number>, c: ArrayLike<number>, blocks: [number, number, number][], s: ReferenceShape): Float64Array {
  const bs = s.block;
  const out = new Float64Array(s.B * blocks.length * bs * bs);
  for (let b = 0; b < s.B; b++) {
    blocks.forEach(([h, r, col], z) => {
      for (let i = 0; i < bs; i++) {
        for (let j = 0; j < bs; j++) {
          let acc = 0;
          const ai = at(s, b, h, r * bs + i);
          const cj = at(s, b, h, col * bs + j);
          for (let d = 0; d < s.D; d++) acc += a[ai + d]! * c[cj + d]!;
          out[((b * blocks.length + z) * bs + i) * bs + j] = acc;
        }
      }
    });
  }
  return out;
}

/** DSD: out[b, h, rows of r] += x[b, z] . v[b, h, rows of c] for block z = (h, r, c). */
export function dsd(x: ArrayLike<number>, v: ArrayLike<number>, blocks: [number, number, number][], s: ReferenceShape): Float64Array {
  const bs = s.block;
  const out = new Float64Array(s.B * s.H * s.T * s.D);
  for (let b = 0; b < s.B; b++) {
    blocks.forEach(([h, r, col], z) => {
      for (let i = 0; i < bs; i++) {
        const oi = at(s, b, h, r * bs + i);
        for (let j = 0; j < bs; j++) {
          const p = x[((b * blocks.length + z) * bs + i) * bs + j]!;
          const vj = at(s, b, h, col * bs + j);
          for (let d = 0; d < s.D; d++) out[oi + d] += p * v[vj + d]!;
        }
      }
    });
  }
  return out;
}

/** DDS: out[b, h, rows of c] += x[b, z]^T . a[b, h, rows of r] for block z = (h, r, c). */
export function dds(a: ArrayLike<number>, x: ArrayLike<number>, blocks: [number, number, number][], s: ReferenceShape): Float64Array {
  const bs = s.block;
  const out = new Float64Array(s.B * s.H * s.T * s.D);
  for (let b = 0; b < s.B; b++) {
    blocks.forEach(([h, r, col], z) => {
      for (let j = 0; j < bs; j++) {
        const oj = at(s, b, h, col * bs + j);
        for (let i = 0; i < bs; i++) {
          const p = x[((b * blocks.length + z) * bs + i) * bs + j]!;
          const ai = at(s, b, h, r * bs + i);
          for (let d = 0; d < s.D; d++) out[oj + d] += p * a[ai + d]!;
        }
      }
    });
  }
  return out;
}

/** The block indices z of each (head, block row), in layout order. */
function rowsOf(blocks: [number, number, number][], s: ReferenceShape): Map<string, number[]> {
  const rows = new Map<string, number[]>();
  blocks.forEach(([h, r], z) => {
    const key = `${h}:${r}`;
    const list = rows.get(key) ?? [];
    list.push(z);
    rows.set(key, list);
  });
  if (rows.size !== s.H * (s.T / s.block)) throw new DSShapeError('reference block-sparse softmax: a block row has no block');
  return rows;
}

/** Block-sparse softmax: scale, masks, then softmax over each query's keys in its row's blocks. */
export function sparseSoftmax(x: ArrayLike<number>, blocks: [number, number, number][], s: ReferenceShape, m: ReferenceMasks): Float64Array {
  const bs = s.block;
  const out = new Float64Array(x.length);
  const nnz = blocks.length;
  for (const zs of rowsOf(blocks, s).values()) {
    for (let b = 0; b < s.B; b++) {
      for (let i = 0; i < bs; i++) {
        const idx: number[] = [];
        const val: number[] = [];
        for (const z of zs) {
          const [, r, c] = blocks[z]!;
          for (let j = 0; j < bs; j++) {
            const q = r * bs + i;
            const k = c * bs + j;
            const p = ((b * nnz + z) * bs + i) * bs + j;
            let v = x[p]! * m.scale;
            if (m.causal && k > q) v += MASKED;
            if (m.keyPaddingMask) v += (1 - m.keyPaddingMask[b * s.T + k]!) * MASKED;
            if (m.attnMask) v += m.attnMask[q * s.T + k]!;
            idx.push(p);
            val.push(v);
          }
        }
        const mx = Math.max(...val);
        const e = val.map((v) => Math.exp(v - mx));
        const sum = e.reduce((a, v) => a + v, 0);
        idx.forEach((p, n) => (out[p] = e[n]! / sum));
      }
    }
  }
  return out;
}

/** Softmax backward on the same blocks: dx = y * (dy - sum(y * dy)) * scale. */
export function sparseSoftmaxBackward(y: ArrayLike<number>, dy: ArrayLike<number>, blocks: [number, number, number][], s: ReferenceShape, scale: number): Float64Array {
  const bs = s.block;
  const dx = new Float64Array(y.length);
  const nnz = blocks.length;
  for (const zs of rowsOf(blocks, s).values()) {
    for (let b = 0; b < s.B; b++) {
      for (let i = 0; i < bs; i++) {
        let dot = 0;
        for (const z of zs) for (let j = 0; j < bs; j++) {
          const p = ((b * nnz + z) * bs + i) * bs + j;
          dot += y[p]! * dy[p]!;
        }
        for (const z of zs) for (let j = 0; j < bs; j++) {
          const p = ((b * nnz + z) * bs + i) * bs + j;
          dx[p] = y[p]! * (dy[p]! - dot) * scale;
        }
      }
    }
  }
  return dx;
}

/** Forward and backward of block-sparse attention: y = softmax(q k^T) v on the blocks; grads for dy. */
export function referenceAttention(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, dy: ArrayLike<number>, layout: BlockLayout, s: ReferenceShape, m: ReferenceMasks): { y: Float64Array; dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const blocks = nonzeroBlocks(layout, m.causal);
  const scores = sdd(q, k, blocks, s); // SDD
  const p = sparseSoftmax(scores, blocks, s, m);
  const y = dsd(p, v, blocks, s); // DSD
  const dp = sdd(dy, v, blocks, s); // dP = dY V^T (SDD)
  const dv = dds(dy, p, blocks, s); // dV = P^T dY (DDS)
  const ds = sparseSoftmaxBackward(p, dp, blocks, s, m.scale);
  const dq = dsd(ds, k, blocks, s); // dQ = dS K (DSD)
  const dk = dds(q, ds, blocks, s); // dK = dS^T Q (DDS)
  return { y, dq, dk, dv };
}
