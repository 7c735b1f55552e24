// Causal scaled-dot-product attention on the table's fused kernel: q, k, v [..., T, D] (the leading
// dims are batch and heads), out [..., T, D]. Computes in the autocast dtype when one is active.

import { attach, needsGrad, save } from '../autograd/node.js';
import { DSShapeError } from '../errors.js';
import { fmtShape, sameShape } from '../shape-util.js';
import type { Tensor } from '../tensor.js';
import { fromArray } from '../create.js';
import { softmax } from './activation.js';
import { cast } from './cast.js';
import { add, affine } from './elementwise.js';
import { computeDType, matmul } from './matmul.js';
import { chunk, contiguous, permute, reshape, transpose } from './shape.js';
import { allocOut, castRaw, checkDevices, checkFloat, drop, f32a, fa, kernelsOf } from './util.js';

export interface AttentionOptions {
  /** Multiplier of q k^T; default 1 / sqrt(D). */
  scale?: number;
}

export function causalAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  checkDevices('causalAttention', q, k, v);
  checkFloat('causalAttention', q, k, v);
  if (q.rank < 2 || !sameShape(q.shape, k.shape) || !sameShape(q.shape, v.shape)) {
    throw new DSShapeError(`causalAttention: q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)}, v ${fmtShape(v.shape)} must share one shape [..., T, D]`);
  }
  const [t, d] = q.shape.slice(-2) as [number, number];
  const bh = t * d === 0 ? 0 : q.numel / (t * d);
  const scale = opts.scale ?? 1 / Math.sqrt(d);
  const dt = computeDType(q, k, v);
  const kt = kernelsOf(q);
  const [qc, kc, vc] = [castRaw(q, dt), castRaw(k, dt), castRaw(v, dt)];
  const out = allocOut(q, q.shape, dt, 'attention');
  const lse = allocOut(q, [bh, t], 'f32', 'attention.lse');
  kt.attentionForward(dt, fa(qc), fa(kc), fa(vc), fa(out), f32a(lse), bh, t, d, scale);
  const temps: [Tensor, Tensor][] = [[qc, q], [kc, k], [vc, v]];
  if (!needsGrad(q, k, v)) {
    for (const [tmp, orig] of temps) drop(tmp, orig);
    lse.dispose();
    return out;
  }
  const saved = [save(qc), save(kc), save(vc), save(out), save(lse)];
  for (const [tmp, orig] of temps) drop(tmp, orig);
  lse.dispose();
  const [sq, sk, sv, so, sl] = saved as [Tensor, Tensor, Tensor, Tensor, Tensor];
  return attach(out, 'causalAttention', [q, k, v], (dy) => {
    const g = castRaw(dy, dt);
    const grads = [allocOut(q, q.shape, dt, 'attention.dq'), allocOut(q, q.shape, dt, 'attention.dk'), allocOut(q, q.shape, dt, 'attention.dv')] as const;
    kt.attentionBackward(dt, fa(g), fa(sq), fa(sk), fa(sv), fa(so), f32a(sl), fa(grads[0]), fa(grads[1]), fa(grads[2]), bh, t, d, scale);
    drop(g, dy);
    return grads.map((gr, i) => {
      const x = [q, k, v][i]!;
      const o = castRaw(gr, x.dtype);
      drop(gr, o);
      return o;
    });
  }, saved);
}

/**
 * GPT's fused projection output qkv [B, T, 3C] (q, k, v side by side in each row) as contiguous
 * q, k, v [B, H, T, D]: one permuted copy [3, B, H, T, D], of which q, k, v are slices.
 */
export function splitHeads(qkv: Tensor, nHead: number): [Tensor, Tensor, Tensor] {
  const [b, t, c3] = qkv.shape as [number, number, number];
  const d = c3 / 3 / nHead;
  const heads = contiguous(permute(reshape(qkv, [b, t, 3, nHead, d]), [2, 0, 3, 1, 4]));
  return chunk(heads, 3, 0).map((piece) => reshape(piece, [b, nHead, t, d])) as [Tensor, Tensor, Tensor];
}

/** Heads [B, H, T, D] merged back into rows [B, T, H * D] (the layout c_proj reads). */
export function mergeHeads(y: Tensor): Tensor {
  const [b, h, t, d] = y.shape as [number, number, number, number];
  return reshape(contiguous(permute(y, [0, 2, 1, 3])), [b, t, h * d]);
}

/**
 * Causal attention straight from GPT's fused projection: qkv [B, T, 3C] (q, k, v side by side in
 * each row, each [B, T, H, D]) -> [B, T, C] with the heads merged, the layout c_proj reads. On a
 * kernel table with the packed attention kernels no head split or merge is copied, and the gradient
 * comes back as one [B, T, 3C] tensor; elsewhere the heads are permuted out and back around
 * causalAttention (the same values).
 */
export function causalAttentionPacked(qkv: Tensor, nHead: number, opts: AttentionOptions = {}): Tensor {
  checkFloat('causalAttentionPacked', qkv);
  const c3 = qkv.shape[2] ?? 0;
  if (qkv.rank !== 3 || !Number.isInteger(nHead) || nHead < 1 || c3 % (3 * nHead) !== 0) {
    throw new DSShapeError(`causalAttentionPacked: qkv ${fmtShape(qkv.shape)} must be [B, T, 3 C] with C a multiple of nHead = ${nHead}`);
  }
  const [b, t] = qkv.shape as [number, number, number];
  const c = c3 / 3;
  const d = c / nHead;
  const scale = opts.scale ?? 1 / Math.sqrt(d);
  const kt = kernelsOf(qkv);
  if (!kt.attentionPackedForward || !kt.attentionPackedBackward) return mergeHeads(causalAttention(...splitHeads(qkv, nHead), { scale }));
  const backward = kt.attentionPackedBackward.bind(kt);
  const dt = computeDType(qkv);
  const xc = castRaw(qkv, dt);
  const out = allocOut(qkv, [b, t, c], dt, 'attention');
  const lse = allocOut(qkv, [b * nHead, t], 'f32', 'attention.lse');
  kt.attentionPackedForward(dt, fa(xc), fa(out), f32a(lse), b, t, nHead, d, scale);
  if (!needsGrad(qkv)) {
    drop(xc, qkv);
    lse.dispose();
    return out;
  }
  const saved = [save(xc), save(out), save(lse)];
  drop(xc, qkv);
  lse.dispose();
  const [sx, so, sl] = saved as [Tensor, Tensor, Tensor];
  return attach(out, 'causalAttentionPacked', [qkv], (dy) => {
    const g = castRaw(dy, dt);
    const dqkv = allocOut(qkv, qkv.shape, dt, 'attention.dqkv');
    backward(dt, fa(g), fa(sx), fa(so), f32a(sl), fa(dqkv), b, t, nHead, d, scale);
    drop(g, dy);
    const o = castRaw(dqkv, qkv.dtype);
    drop(dqkv, o);
    return [o];
  }, saved);
}

/** Added to a masked score: exp() of it underflows to 0 in f32 and bf16, and a fully masked row stays finite. */
const MASKED = -1e9;

export interface MaskedAttentionOptions extends AttentionOptions {
  /** True: query t attends keys 0..t only. */
  causal: boolean;
  /** [B, T]: 1 keeps key j of sample b, 0 masks it out (DeepSpeed's key_padding_mask, 'mul' mode). */
  keyPaddingMask?: Tensor;
  /** Added to the scores before the softmax: [T, T] or any shape that broadcasts to [B, H, T, T]. */
  attnMask?: Tensor;
}

/**
 * Dense scaled-dot-product attention with masks, composed of differentiable ops: q, k, v
 * [B, H, T, D] -> [B, H, T, D]. It materialises the [B, H, T, T] scores, so it is the general path
 * (bidirectional, padding and additive masks); causal attention without masks takes the fused
 * kernel (causalAttention), which never does.
 */
export function maskedAttention(q: Tensor, k: Tensor, v: Tensor, opts: MaskedAttentionOptions): Tensor {
  if (opts.causal && !opts.keyPaddingMask && !opts.attnMask) return causalAttention(q, k, v, opts);
  if (q.rank !== 4 || !sameShape(q.shape, k.shape) || !sameShape(q.shape, v.shape)) {
    throw new DSShapeError(`maskedAttention: q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)}, v ${fmtShape(v.shape)} must share one shape [B, H, T, D]`);
  }
  const [b, , t, d] = q.shape as [number, number, number, number];
  const scale = opts.scale ?? 1 / Math.sqrt(d);
  let scores = affine(matmul(q, transpose(k, -2, -1)), scale, 0); // [B, H, T, T]
  if (opts.causal) {
    const tri = new Float32Array(t * t);
    for (let i = 0; i < t; i++) for (let j = i + 1; j < t; j++) tri[i * t + j] = MASKED;
    scores = add(scores, fromArray(tri, [t, t], { dtype: 'f32', runtime: q.runtime, device: q.device }));
  }
  if (opts.attnMask) scores = add(scores, opts.attnMask);
  if (opts.keyPaddingMask) {
    const m = opts.keyPaddingMask;
    if (m.rank !== 2 || m.shape[0] !== b || m.shape[1] !== t) {
      throw new DSShapeError(`maskedAttention: keyPaddingMask ${fmtShape(m.shape)} must be [B, T] = [${b}, ${t}]`);
    }
    // keep 1 -> 0, keep 0 -> MASKED, shaped [B, 1, 1, T] to broadcast over heads and queries.
    scores = add(scores, reshape(affine(m.dtype === 'f32' ? m : cast(m, 'f32'), -MASKED, MASKED), [b, 1, 1, t]));
  }
  return matmul(softmax(scores), v);
}
