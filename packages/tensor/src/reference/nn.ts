// Reference nn kernels: layernorm, GELU, softmax, embedding, fused cross-entropy, dropout. Each
// forward sits next to its backward; row statistics are computed in f64 and stored in f32.

import type { HostFArray as FArray, FloatDType } from '../kernels/table.js';
import { rd, readRow, wr } from './access.js';

export function layerNormForward(dtype: FloatDType, x: FArray, weight: FArray, bias: FArray, y: FArray, mean: Float32Array, rstd: Float32Array, rows: number, cols: number, eps: number): void {
  for (let r = 0; r < rows; r++) {
    const xs = readRow(dtype, x, r * cols, cols);
    let mu = 0;
    for (let c = 0; c < cols; c++) mu += xs[c]!;
    mu /= cols;
    let v = 0;
    for (let c = 0; c < cols; c++) v += (xs[c]! - mu) ** 2;
    const rs = 1 / Math.sqrt(v / cols + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let c = 0; c < cols; c++) wr(dtype, y, r * cols + c, (xs[c]! - mu) * rs * rd(dtype, weight, c) + rd(dtype, bias, c));
  }
}

export function layerNormResidualForward(dtype: FloatDType, x: FArray, r: FArray, weight: FArray, bias: FArray, sum: FArray, y: FArray, mean: Float32Array, rstd: Float32Array, rows: number, cols: number, eps: number): void {
  for (let i = 0; i < rows * cols; i++) wr(dtype, sum, i, rd(dtype, x, i) + rd(dtype, r, i));
  layerNormForward(dtype, sum, weight, bias, y, mean, rstd, rows, cols, eps);
}

export function layerNormBackward(dtype: FloatDType, dy: FArray, x: FArray, weight: FArray, mean: Float32Array, rstd: Float32Array, dx: FArray, dweight: Float32Array, dbias: Float32Array, rows: number, cols: number): void {
  const xhat = new Float64Array(cols);
  const dxhat = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const mu = mean[r]!;
    const rs = rstd[r]!;
    let sumD = 0;
    let sumDX = 0;
    for (let c = 0; c < cols; c++) {
      const g = rd(dtype, dy, r * cols + c);
      xhat[c] = (rd(dtype, x, r * cols + c) - mu) * rs;
      dxhat[c] = g * rd(dtype, weight, c);
      sumD += dxhat[c]!;
      sumDX += dxhat[c]! * xhat[c]!;
      dweight[c] = dweight[c]! + g * xhat[c]!;
      dbias[c] = dbias[c]! + g;
    }
    // dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    for (let c = 0; c < cols; c++) wr(dtype, dx, r * cols + c, rs * (dxhat[c]! - sumD / cols - xhat[c]! * (sumDX / cols)));
  }
}

const GELU_C = Math.sqrt(2 / Math.PI);

export function geluForward(dtype: FloatDType, x: FArray, y: FArray, n: number): void {
  for (let i = 0; i < n; i++) {
    const v = rd(dtype, x, i);
    wr(dtype, y, i, 0.5 * v * (1 + Math.tanh(GELU_C * (v + 0.044715 * v * v * v))));
  }
}

export function geluBackward(dtype: FloatDType, dy: FArray, x: FArray, dx: FArray, n: number): void {
  for (let i = 0; i < n; i++) {
    const v = rd(dtype, x, i);
    const t = Math.tanh(GELU_C * (v + 0.044715 * v * v * v));
    const dt = (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * v * v);
    wr(dtype, dx, i, rd(dtype, dy, i) * (0.5 * (1 + t) + 0.5 * v * dt));
  }
}

export function softmaxForward(dtype: FloatDType, x: FArray, y: FArray, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    const xs = readRow(dtype, x, r * cols, cols);
    let m = -Infinity;
    for (let c = 0; c < cols; c++) m = Math.max(m, xs[c]!);
    let s = 0;
    for (let c = 0; c < cols; c++) s += Math.exp(xs[c]! - m);
    for (let c = 0; c < cols; c++) wr(dtype, y, r * cols + c, Math.exp(xs[c]! - m) / s);
  }
}

export function softmaxBackward(dtype: FloatDType, dy: FArray, y: FArray, dx: FArray, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    let dot = 0;
    for (let c = 0; c < cols; c++) dot += rd(dtype, dy, r * cols + c) * rd(dtype, y, r * cols + c);
    for (let c = 0; c < cols; c++) {
      const at = r * cols + c;
      wr(dtype, dx, at, rd(dtype, y, at) * (rd(dtype, dy, at) - dot));
    }
  }
}

/** Row copies: table and out share the dtype, so the raw elements move unchanged. */
export function embeddingForward(_dtype: FloatDType, ids: Int32Array, table: FArray, out: FArray, n: number, _vocab: number, dim: number): void {
  for (let i = 0; i < n; i++) {
    const row = ids[i]!;
    for (let c = 0; c < dim; c++) out[i * dim + c] = table[row * dim + c]!;
  }
}

export function embeddingBackward(dtype: FloatDType, dout: FArray, ids: Int32Array, dtable: Float32Array, n: number, _vocab: number, dim: number): void {
  for (let i = 0; i < n; i++) {
    const row = ids[i]!;
    for (let c = 0; c < dim; c++) dtable[row * dim + c] = dtable[row * dim + c]! + rd(dtype, dout, i * dim + c);
  }
}

function logSumExp(xs: Float64Array): number {
  let m = -Infinity;
  for (const v of xs) m = Math.max(m, v);
  let s = 0;
  for (const v of xs) s += Math.exp(v - m);
  return m + Math.log(s);
}

export function crossEntropyForward(dtype: FloatDType, logits: FArray, targets: Int32Array, losses: Float32Array, lse: Float32Array, rows: number, vocab: number): void {
  for (let r = 0; r < rows; r++) {
    const xs = readRow(dtype, logits, r * vocab, vocab);
    const l = logSumExp(xs);
    lse[r] = l;
    const t = targets[r]!;
    losses[r] = t < 0 ? 0 : l - xs[t]!;
  }
}

export function crossEntropyBackward(dtype: FloatDType, logits: FArray, targets: Int32Array, lse: Float32Array, dloss: Float32Array, dlogits: FArray, rows: number, vocab: number): void {
  for (let r = 0; r < rows; r++) {
    const t = targets[r]!;
    for (let c = 0; c < vocab; c++) {
      const at = r * vocab + c;
      const g = t < 0 ? 0 : dloss[r]! * (Math.exp(rd(dtype, logits, at) - lse[r]!) - (c === t ? 1 : 0));
      wr(dtype, dlogits, at, g);
    }
  }
}

/** The counter-based hash of the table's dropout contract: uniform in [0, 1) from (seed, index). */
export function dropoutUniform(seed: number, index: number): number {
  let h = (seed + Math.imul(index, 0x9e3779b9)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 8) / 16777216;
}

export function dropoutForward(dtype: FloatDType, x: FArray, out: FArray, mask: Uint8Array, n: number, p: number, seed: number, offset: number): void {
  const keep = 1 / (1 - p);
  for (let i = 0; i < n; i++) {
    const m = dropoutUniform(seed, offset + i) >= p ? 1 : 0;
    mask[i] = m;
    wr(dtype, out, i, m ? rd(dtype, x, i) * keep : 0);
  }
}
