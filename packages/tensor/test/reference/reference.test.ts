// The reference table against hand-worked values and independent formulations.
import { describe, expect, it } from 'vitest';
import { bf16ToF32, f32ToBf16 } from '../../src/dtype.js';
import { createReferenceKernels, dropoutUniform } from '../../src/reference/index.js';

const k = createReferenceKernels();
const f32 = (xs: number[]): Float32Array => new Float32Array(xs);

describe('reference kernels', () => {
  it('gemm handles transposes, batching, broadcast B, alpha and beta', () => {
    // A [2, 3], B [3, 2]
    const a = f32([1, 2, 3, 4, 5, 6]);
    const b = f32([1, 0, 0, 1, 1, 1]);
    const c = f32([1, 1, 1, 1]);
    k.gemm({ dtype: 'f32', outDtype: 'f32', transA: false, transB: false, batch: 1, m: 2, n: 2, k: 3, alpha: 2, beta: 1, a, strideA: 0, b, strideB: 0, c, strideC: 4 });
    expect([...c]).toEqual([9, 11, 21, 23]);
    // A^T (A stored [3, 2]) times B^T (B stored [2, 3]), two batches sharing B.
    const at = f32([1, 4, 2, 5, 3, 6, 1, 4, 2, 5, 3, 6]);
    const bt = f32([1, 0, 1, 0, 1, 1]);
    const out = new Float32Array(8);
    k.gemm({ dtype: 'f32', outDtype: 'f32', transA: true, transB: true, batch: 2, m: 2, n: 2, k: 3, alpha: 1, beta: 0, a: at, strideA: 6, b: bt, strideB: 0, c: out, strideC: 4 });
    expect([...out]).toEqual([4, 5, 10, 11, 4, 5, 10, 11]);
  });

  it('attention equals softmax(mask(q k^T * s)) v and its lse', () => {
    const t = 3;
    const d = 2;
    const q = f32([1, 0, 0, 1, 1, 1]);
    const kk = f32([1, 2, 0, 1, -1, 0]);
    const v = f32([1, 2, 3, 4, 5, 6]);
    const out = new Float32Array(6);
    const lse = new Float32Array(3);
    k.attentionForward('f32', q, kk, v, out, lse, 1, t, d, 0.5);
    for (let i = 0; i < t; i++) {
      const s = Array.from({ length: i + 1 }, (_, j) => 0.5 * (q[i * d]! * kk[j * d]! + q[i * d + 1]! * kk[j * d + 1]!));
      const z = s.reduce((acc, x) => acc + Math.exp(x), 0);
      expect(lse[i]).toBeCloseTo(Math.log(z), 6);
      for (let c = 0; c < d; c++) expect(out[i * d + c]).toBeCloseTo(s.reduce((acc, x, j) => acc + (Math.exp(x) / z) * v[j * d + c]!, 0), 6);
    }
  });

  it('cross-entropy: loss = lse - logit[target], ignored rows are zero', () => {
    const logits = f32([0, Math.log(3), 5, 5]);
    const losses = new Float32Array(2);
    const lse = new Float32Array(2);
    k.crossEntropyForward('f32', logits, new Int32Array([1, -1]), losses, lse, 2, 2);
    expect(losses[0]).toBeCloseTo(Math.log(4) - Math.log(3), 6);
    expect(losses[1]).toBe(0);
    const d = new Float32Array(4);
    k.crossEntropyBackward('f32', logits, new Int32Array([1, -1]), lse, f32([2, 2]), d, 2, 2);
    expect([...d].map((x) => +x.toFixed(6))).toEqual([0.5, -0.5, 0, 0]);
  });

  it('layernorm normalises rows and its backward accumulates dweight/dbias', () => {
    const x = f32([1, 2, 3, 4]);
    const y = new Float32Array(4);
    const mean = new Float32Array(1);
    const rstd = new Float32Array(1);
    k.layerNormForward('f32', x, f32([1, 1, 1, 1]), f32([0, 0, 0, 0]), y, mean, rstd, 1, 4, 0);
    expect(mean[0]).toBe(2.5);
    expect(rstd[0]).toBeCloseTo(1 / Math.sqrt(1.25), 6);
    const dw = f32([1, 1, 1, 1]);
    const db = f32([1, 1, 1, 1]);
    k.layerNormBackward('f32', f32([1, 1, 1, 1]), x, f32([1, 1, 1, 1]), mean, rstd, new Float32Array(4), dw, db, 1, 4);
    expect([...db]).toEqual([2, 2, 2, 2]);
    expect(dw[0]).toBeCloseTo(1 + y[0]!, 6);
  });

  it('dropout follows the counter-based hash of the contract, independent of the offset split', () => {
    const n = 4000;
    const x = new Float32Array(n).fill(1);
    const out = new Float32Array(n);
    const mask = new Uint8Array(n);
    k.dropoutForward('f32', x, out, mask, n, 0.25, 42, 0);
    const kept = mask.reduce((s, m) => s + m, 0);
    expect(kept / n).toBeGreaterThan(0.72);
    expect(kept / n).toBeLessThan(0.78);
    expect(out[mask.indexOf(1)]).toBeCloseTo(1 / 0.75, 6);
    const tail = new Uint8Array(10);
    k.dropoutForward('f32', x.subarray(100, 110), new Float32Array(10), tail, 10, 0.25, 42, 100);
    expect([...tail]).toEqual([...mask.subarray(100, 110)]);
    expect(mask[7]).toBe(dropoutUniform(42, 7) >= 0.25 ? 1 : 0);
  });

  it('adamw matches the textbook update for one element', () => {
    const p = f32([1]);
    const m = f32([0]);
    const v = f32([0]);
    k.adamw({ param: p, grad: f32([0.5]), gradDtype: 'f32', expAvg: m, expAvgSq: v, n: 1, lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1, step: 1, biasCorrection: true, decoupled: true, gradScale: 2 });
    // g = 1; m = 0.1, v = 0.01; m^ = 1, v^ = 1; p = 1 * (1 - 0.01) - 0.1 * 1 / (1 + 1e-8)
    expect(p[0]).toBeCloseTo(0.99 - 0.1, 6);
    expect(m[0]).toBeCloseTo(0.1, 7);
    expect(v[0]).toBeCloseTo(0.01, 7);
  });

  it('casts round to nearest even and keep NaN; gather reads strided views', () => {
    const dst = new Uint16Array(3);
    k.cast('f32', f32([1 + 2 ** -8, 1 + 3 * 2 ** -8, NaN]), 'bf16', dst, 3);
    expect([bf16ToF32(dst[0]!), bf16ToF32(dst[1]!)]).toEqual([1, 1 + 2 ** -6]);
    expect(Number.isNaN(bf16ToF32(dst[2]!))).toBe(true);
    expect(dst[0]).toBe(f32ToBf16(1));
    const g = new Float32Array(6);
    k.gather('f32', f32([0, 1, 2, 3, 4, 5, 6]), 1, [3, 2], [1, 3], g);
    expect([...g]).toEqual([1, 4, 2, 5, 3, 6]);
  });

  it('reductions sum in f64 and detect inf/nan', () => {
    const x = f32([1e8, 1, -1e8, 1]);
    expect(k.sum('f32', x, 4)).toBe(2);
    expect(k.sumSquares('f32', f32([3, 4]), 2)).toBe(25);
    expect(k.hasInfNan('f32', f32([1, Infinity]), 2)).toBe(true);
    expect(k.hasInfNan('f32', f32([1, 2]), 2)).toBe(false);
    const cols = f32([1, 1]);
    k.sumRows('f32', f32([1, 2, 3, 4]), 2, 2, cols, true);
    expect([...cols]).toEqual([5, 7]);
  });
});
