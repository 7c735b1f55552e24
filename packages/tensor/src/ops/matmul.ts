// matmul (batched) and linear, both on the table's gemm. Under autocast they compute in the
// autocast dtype; f16 has no gemm in the table, so it runs as f32 products rounded to f16.

import { attach, checkHeld, needsGrad, save, saveInput } from '../autograd/node.js';
import { DSShapeError } from '../errors.js';
import type { FloatDType } from '../dtype.js';
import { fmtShape, numelOf, type Shape } from '../shape-util.js';
import type { Tensor } from '../tensor.js';
import { allocOut, castRaw, checkDevices, checkFloat, describe, drop, f32a, fa, kernelsOf, promote } from './util.js';

/** The dtype a matmul-like op computes in: the autocast dtype inside autocast(), else promotion. */
export function computeDType(...ts: Tensor[]): FloatDType {
  return ts[0]!.runtime.autocastDtype ?? promote(...ts.map((t) => t.dtype));
}

interface Gemm {
  transA: boolean;
  transB: boolean;
  batch: number;
  m: number;
  n: number;
  k: number;
  strideA: number;
  strideB: number;
}

/**
 * C = op(A) @ op(B) into a new tensor of `shape` in outDtype; a and b are contiguous in dt. With
 * `into` (f32 or bf16, outDtype's), the product is added to it instead (beta = 1) and it is returned.
 */
export function gemmRaw(dt: FloatDType, a: Tensor, b: Tensor, g: Gemm, shape: Shape, outDtype: FloatDType = dt, into?: Tensor): Tensor {
  const k = kernelsOf(a);
  if (dt === 'f16') {
    const a32 = castRaw(a, 'f32');
    const b32 = castRaw(b, 'f32');
    const c32 = gemmRaw('f32', a32, b32, g, shape, 'f32');
    drop(a32, a);
    drop(b32, b);
    const c = castRaw(c32, outDtype);
    drop(c32, c);
    return c;
  }
  const direct = outDtype === 'f32' || outDtype === 'bf16';
  const c = into ?? allocOut(a, shape, direct ? outDtype : 'f32', 'matmul');
  if (numelOf(shape) > 0) {
    k.gemm({ dtype: dt, outDtype: direct ? (outDtype as 'f32' | 'bf16') : 'f32', transA: g.transA, transB: g.transB, batch: g.batch, m: g.m, n: g.n, k: g.k, alpha: 1, beta: into ? 1 : 0, a: fa(a), strideA: g.strideA, b: fa(b), strideB: g.strideB, c: fa(c), strideC: g.m * g.n });
  }
  if (direct) return c;
  const out = castRaw(c, outDtype);
  c.dispose();
  return out;
}

/** a [..., m, k] @ b [k, n] or [..., k, n] (same leading dims) -> [..., m, n]. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  checkDevices('matmul', a, b);
  checkFloat('matmul', a, b);
  if (a.rank < 2 || b.rank < 2) throw new DSShapeError(`matmul: operands need rank >= 2, got ${describe(a)} and ${describe(b)}`);
  const [m, k] = a.shape.slice(-2) as [number, number];
  const [kb, n] = b.shape.slice(-2) as [number, number];
  const lead = a.shape.slice(0, -2);
  const shared = b.rank === 2;
  if (k !== kb || (!shared && fmtShape(lead) !== fmtShape(b.shape.slice(0, -2)))) {
    throw new DSShapeError(`matmul: ${fmtShape(a.shape)} @ ${fmtShape(b.shape)} do not fit (inner dims ${k} and ${kb}; batch dims must match or b be 2-D)`);
  }
  const batch = numelOf(lead);
  const dt = computeDType(a, b);
  const ac = castRaw(a, dt);
  const bc = castRaw(b, dt);
  // A 2-D b is shared by every batch entry: fold the batch into m for one big product.
  const fwd: Gemm = shared ? { transA: false, transB: false, batch: 1, m: batch * m, n, k, strideA: 0, strideB: 0 } : { transA: false, transB: false, batch, m, n, k, strideA: m * k, strideB: k * n };
  const y = gemmRaw(dt, ac, bc, fwd, [...lead, m, n]);
  if (!needsGrad(a, b)) {
    drop(ac, a);
    drop(bc, b);
    return y;
  }
  const sa = save(ac);
  const sb = save(bc);
  drop(ac, a);
  drop(bc, b);
  return attach(y, 'matmul', [a, b], (dy) => {
    const g = castRaw(dy, dt);
    let da: Tensor | null = null;
    let db: Tensor | null = null;
    if (a.requiresGrad) {
      // dA = dY @ B^T
      const p: Gemm = shared ? { transA: false, transB: true, batch: 1, m: batch * m, n: k, k: n, strideA: 0, strideB: 0 } : { transA: false, transB: true, batch, m, n: k, k: n, strideA: m * n, strideB: k * n };
      // Produced straight in a's dtype: an f32 input under autocast gets its gradient unrounded
      // (torch rounds it to the autocast dtype first, then casts back up) and without a cast pass.
      da = gemmRaw(dt, g, sb, p, a.shape, a.dtype as FloatDType);
    }
    if (b.requiresGrad) {
      // dB = A^T @ dY (summed over the batch when b is shared)
      const p: Gemm = shared ? { transA: true, transB: false, batch: 1, m: k, n, k: batch * m, strideA: 0, strideB: 0 } : { transA: true, transB: false, batch, m: k, n, k: m, strideA: m * k, strideB: m * n };
      db = gemmRaw(dt, sa, g, p, b.shape, b.dtype as FloatDType);
    }
    drop(g, dy);
    return [da, db];
  }, [sa, sb]);
}

/** y = x @ w^T + bias with x [..., in], w [out, in], bias [out] (torch.nn.functional.linear). */
export function linear(x: Tensor, w: Tensor, bias?: Tensor | null): Tensor {
  const ops = bias ? [x, w, bias] : [x, w];
  checkDevices('linear', ...ops);
  checkFloat('linear', ...ops);
  const inF = x.shape[x.rank - 1];
  if (w.rank !== 2 || inF !== w.shape[1] || (bias && (bias.rank !== 1 || bias.shape[0] !== w.shape[0]))) {
    throw new DSShapeError(`linear: input ${fmtShape(x.shape)}, weight ${fmtShape(w.shape)}${bias ? `, bias ${fmtShape(bias.shape)}` : ''} do not fit (weight is [out, in], bias [out])`);
  }
  const outF = w.shape[0]!;
  const rows = x.numel / inF!;
  const dt = computeDType(x, w);
  const xc = castRaw(x, dt);
  const wc = castRaw(w, dt);
  const outShape = [...x.shape.slice(0, -1), outF];
  const fwd = { transA: false, transB: true, batch: 1, m: rows, n: outF, k: inF!, strideA: 0, strideB: 0 };
  let y: Tensor;
  const kt = kernelsOf(x);
  if (bias && dt !== 'f16' && kt.gemmBias && rows > 0) {
    // The kernel starts each C tile from the bias as it computes it (no pass over C beforehand).
    const bc = castRaw(bias, dt);
    y = allocOut(x, outShape, dt, 'linear');
    const d = dt as 'f32' | 'bf16';
    kt.gemmBias({ dtype: d, outDtype: d, ...fwd, alpha: 1, beta: 0, a: fa(xc), b: fa(wc), c: fa(y), strideC: 0 }, fa(bc));
    drop(bc, bias);
  } else if (bias && dt !== 'f16') {
    // The bias is broadcast into C first (a stride-0 gather) and the product added onto it.
    const bc = castRaw(bias, dt);
    const c = allocOut(x, outShape, dt, 'linear');
    kt.gather(dt, bc.operand(), 0, [rows, outF], [0, 1], c.operand());
    drop(bc, bias);
    y = gemmRaw(dt, xc, wc, fwd, outShape, dt, c);
  } else {
    y = gemmRaw(dt, xc, wc, fwd, outShape);
    if (bias) {
      const bc = castRaw(bias, dt);
      const withBias = allocOut(x, outShape, dt, 'linear');
      kernelsOf(x).binary('add', dt, fa(y), fa(bc), fa(withBias), y.numel, outF);
      y.dispose();
      drop(bc, bias);
      y = withBias;
    }
  }
  if (!needsGrad(...ops)) {
    drop(xc, x);
    drop(wc, w);
    return y;
  }
  const sx = save(xc);
  const [sw, savedW] = saveInput(wc, w);
  drop(xc, x);
  drop(wc, w);
  const wShape = [...w.shape];
  return attach(y, 'linear', ops, (dy) => {
    checkHeld('linear', sw, wShape);
    const g = castRaw(dy, dt);
    let dx: Tensor | null = null;
    if (x.requiresGrad) {
      // In x's dtype straight from the product, as dA in matmul.
      dx = gemmRaw(dt, g, sw, { transA: false, transB: false, batch: 1, m: rows, n: inF!, k: outF, strideA: 0, strideB: 0 }, x.shape, x.dtype as FloatDType);
    }
    // dW = dY^T @ X, produced straight in the weight's dtype (f32 masters get an f32 product).
    const dw = w.requiresGrad ? gemmRaw(dt, g, sx, { transA: true, transB: false, batch: 1, m: outF, n: inF!, k: rows, strideA: 0, strideB: 0 }, w.shape, w.dtype as FloatDType) : null;
    let db: Tensor | null = null;
    if (bias?.requiresGrad) {
      const acc = allocOut(x, [outF], 'f32', 'linear.dbias');
      kernelsOf(x).sumRows(dt, fa(g), rows, outF, f32a(acc), false);
      db = castRaw(acc, bias.dtype);
      drop(acc, db);
    }
    drop(g, dy);
    return bias ? [dx, dw, db] : [dx, dw];
  }, [sx, ...savedW]);
}
