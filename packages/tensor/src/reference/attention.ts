// Reference causal scaled-dot-product attention over [bh, T, D]: query t attends keys 0..t.

import type { HostFArray as FArray, FloatDType } from '../kernels/table.js';
import { rd, wr } from './access.js';

function dot(dtype: FloatDType, a: FArray, ai: number, b: FArray, bi: number, d: number): number {
  let s = 0;
  for (let c = 0; c < d; c++) s += rd(dtype, a, ai + c) * rd(dtype, b, bi + c);
  return s;
}

export function attentionForward(dtype: FloatDType, q: FArray, k: FArray, v: FArray, out: FArray, lse: Float32Array, bh: number, t: number, d: number, scale: number): void {
  const p = new Float64Array(t);
  const acc = new Float64Array(d);
  for (let h = 0; h < bh; h++) {
    const base = h * t * d;
    for (let i = 0; i < t; i++) {
      let m = -Infinity;
      for (let j = 0; j <= i; j++) {
        p[j] = scale * dot(dtype, q, base + i * d, k, base + j * d, d);
        m = Math.max(m, p[j]!);
      }
      let s = 0;
      for (let j = 0; j <= i; j++) s += Math.exp(p[j]! - m);
      const l = m + Math.log(s);
      lse[h * t + i] = l;
      acc.fill(0);
      for (let j = 0; j <= i; j++) {
        const w = Math.exp(p[j]! - l);
        for (let c = 0; c < d; c++) acc[c]! += w * rd(dtype, v, base + j * d + c);
      }
      for (let c = 0; c < d; c++) wr(dtype, out, base + i * d + c, acc[c]!);
    }
  }
}

export function attentionBackward(dtype: FloatDType, dout: FArray, q: FArray, k: FArray, v: FArray, out: FArray, lse: Float32Array, dq: FArray, dk: FArray, dv: FArray, bh: number, t: number, d: number, scale: number): void {
  const dqa = new Float64Array(t * d);
  const dka = new Float64Array(t * d);
  const dva = new Float64Array(t * d);
  for (let h = 0; h < bh; h++) {
    const base = h * t * d;
    dqa.fill(0);
    dka.fill(0);
    dva.fill(0);
    for (let i = 0; i < t; i++) {
      // sum_j p_j dp_j equals dout_i . out_i, the softmax backward's row correction.
      const corr = dot(dtype, dout, base + i * d, out, base + i * d, d);
      for (let j = 0; j <= i; j++) {
        const pij = Math.exp(scale * dot(dtype, q, base + i * d, k, base + j * d, d) - lse[h * t + i]!);
        const dp = dot(dtype, dout, base + i * d, v, base + j * d, d);
        const ds = pij * (dp - corr) * scale;
        for (let c = 0; c < d; c++) {
          dva[j * d + c]! += pij * rd(dtype, dout, base + i * d + c);
          dqa[i * d + c]! += ds * rd(dtype, k, base + j * d + c);
          dka[j * d + c]! += ds * rd(dtype, q, base + i * d + c);
        }
      }
    }
    for (let e = 0; e < t * d; e++) {
      wr(dtype, dq, base + e, dqa[e]!);
      wr(dtype, dk, base + e, dka[e]!);
      wr(dtype, dv, base + e, dva[e]!);
    }
  }
}
