// Causal scaled-dot-product attention on the table's fused kernel: q, k, v [..., T, D] (the leading
// dims are batch and heads), out [..., T, D]. Computes in the autocast dtype when one is active.

import { attach, needsGrad, save } from '../autograd/node.js';
import { DSShapeError } from '../errors.js';
import { fmtShape, sameShape } from '../shape-util.js';
import type { Tensor } from '../tensor.js';
import { computeDType } from './matmul.js';
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
