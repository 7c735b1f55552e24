// Layer normalisation over the last dim (f32 inside autocast, like torch.autocast).

import { attach, attachMulti, checkHeld, needsGrad, save, saveInput } from '../autograd/node.js';
import { DSShapeError } from '../errors.js';
import type { FloatDType } from '../dtype.js';
import { fmtShape, sameShape } from '../shape-util.js';
import type { Tensor } from '../tensor.js';
import { add } from './elementwise.js';
import { alloc, allocOut, castRaw, checkDevices, checkFloat, drop, f32a, fa, kernelsOf, promote } from './util.js';

/** The normalised width: x's last dim, which weight and bias [C] must match (op names the caller). */
function normCols(op: string, x: Tensor, weight: Tensor, bias: Tensor): number {
  const cols = x.shape[x.rank - 1];
  if (x.rank === 0 || weight.rank !== 1 || bias.rank !== 1 || weight.shape[0] !== cols || bias.shape[0] !== cols) {
    throw new DSShapeError(`${op}: input ${fmtShape(x.shape)}, weight ${fmtShape(weight.shape)}, bias ${fmtShape(bias.shape)} (weight and bias must be [${cols}])`);
  }
  return cols!;
}

/** What the backward of a layer norm holds: its input as normalised (x, or the fused sum), the row statistics, the weight. */
interface NormSaved {
  x: Tensor;
  mean: Tensor;
  rstd: Tensor;
  weight: Tensor;
}

/**
 * The layer norm's backward, shared by layerNorm and addLayerNorm: the input gradient in dt (the
 * caller casts or adds to it) and the weight and bias gradients in their own dtypes.
 */
function normBackward(op: string, dy: Tensor, s: NormSaved, weight: Tensor, bias: Tensor, dt: FloatDType, rows: number, cols: number): [Tensor, Tensor, Tensor] {
  checkHeld(op, s.weight, [cols]);
  const g = castRaw(dy, dt);
  const dx = allocOut(s.x, s.x.shape, dt, `${op}.grad`);
  const dw = alloc(s.x, [cols], 'f32', `${op}.dweight`);
  const db = alloc(s.x, [cols], 'f32', `${op}.dbias`);
  kernelsOf(s.x).layerNormBackward(dt, fa(g), fa(s.x), fa(s.weight), f32a(s.mean), f32a(s.rstd), fa(dx), f32a(dw), f32a(db), rows, cols);
  drop(g, dy);
  const dwo = castRaw(dw, weight.dtype);
  drop(dw, dwo);
  const dbo = castRaw(db, bias.dtype);
  drop(db, dbo);
  return [dx, dwo, dbo];
}

/** y = (x - mean) / sqrt(var + eps) * weight + bias over the last dim; weight, bias [C]. */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  checkDevices('layerNorm', x, weight, bias);
  checkFloat('layerNorm', x, weight, bias);
  const cols = normCols('layerNorm', x, weight, bias);
  const rows = x.numel / cols;
  const dt: FloatDType = x.runtime.autocastDtype ? 'f32' : promote(x.dtype, weight.dtype, bias.dtype);
  const k = kernelsOf(x);
  const xc = castRaw(x, dt);
  const wc = castRaw(weight, dt);
  const bc = castRaw(bias, dt);
  const y = allocOut(x, x.shape, dt, 'layerNorm');
  const meanT = allocOut(x, [rows], 'f32', 'layerNorm.mean');
  const rstdT = allocOut(x, [rows], 'f32', 'layerNorm.rstd');
  k.layerNormForward(dt, fa(xc), fa(wc), fa(bc), fa(y), f32a(meanT), f32a(rstdT), rows, cols, eps);
  drop(bc, bias);
  if (!needsGrad(x, weight, bias)) {
    drop(xc, x);
    drop(wc, weight);
    meanT.dispose();
    rstdT.dispose();
    return y;
  }
  const [sw, savedW] = saveInput(wc, weight);
  const saved = [save(xc), save(meanT), save(rstdT), ...savedW];
  drop(xc, x);
  drop(wc, weight);
  meanT.dispose();
  rstdT.dispose();
  const held: NormSaved = { x: saved[0]!, mean: saved[1]!, rstd: saved[2]!, weight: sw };
  return attach(y, 'layerNorm', [x, weight, bias], (dy) => {
    const [dx, dwo, dbo] = normBackward('layerNorm', dy, held, weight, bias, dt, rows, cols);
    const dxo = castRaw(dx, x.dtype);
    drop(dx, dxo);
    return [dxo, dwo, dbo];
  }, saved);
}

/**
 * h = x + r and y = layerNorm(h, weight, bias): the residual add of a pre-LN transformer block fused
 * with the layer norm after it, one pass over each row instead of two. Returns [h, y] with the values
 * and gradients of add() followed by layerNorm(); when those two would not run in one dtype, or x and
 * r differ in shape (a broadcast), it is exactly that pair of ops.
 */
export function addLayerNorm(x: Tensor, r: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): [Tensor, Tensor] {
  checkDevices('addLayerNorm', x, r, weight, bias);
  checkFloat('addLayerNorm', x, r, weight, bias);
  const hDt = promote(x.dtype, r.dtype);
  const dt: FloatDType = x.runtime.autocastDtype ? 'f32' : promote(hDt, weight.dtype, bias.dtype);
  if (hDt !== dt || x.rank === 0 || !sameShape(x.shape, r.shape)) {
    const h = add(x, r);
    return [h, layerNorm(h, weight, bias, eps)];
  }
  const cols = normCols('addLayerNorm', x, weight, bias);
  const rows = cols === 0 ? 0 : x.numel / cols;
  const k = kernelsOf(x);
  const xc = castRaw(x, dt);
  const rc = castRaw(r, dt);
  const wc = castRaw(weight, dt);
  const bc = castRaw(bias, dt);
  const h = allocOut(x, x.shape, dt, 'addLayerNorm.sum');
  const y = allocOut(x, x.shape, dt, 'addLayerNorm');
  const meanT = allocOut(x, [rows], 'f32', 'addLayerNorm.mean');
  const rstdT = allocOut(x, [rows], 'f32', 'addLayerNorm.rstd');
  if (cols > 0) k.layerNormResidualForward(dt, fa(xc), fa(rc), fa(wc), fa(bc), fa(h), fa(y), f32a(meanT), f32a(rstdT), rows, cols, eps);
  drop(xc, x);
  drop(rc, r);
  drop(bc, bias);
  if (!needsGrad(x, r, weight, bias)) {
    drop(wc, weight);
    meanT.dispose();
    rstdT.dispose();
    return [h, y];
  }
  const [sw, savedW] = saveInput(wc, weight);
  const saved = [save(h), save(meanT), save(rstdT), ...savedW];
  drop(wc, weight);
  meanT.dispose();
  rstdT.dispose();
  const held: NormSaved = { x: saved[0]!, mean: saved[1]!, rstd: saved[2]!, weight: sw };
  attachMulti([h, y], 'addLayerNorm', [x, r, weight, bias], ([dh, dy]) => {
    // d(x + r) = dh + the layer norm's input gradient; weight and bias get the layer norm's.
    let dsum: Tensor | null = null;
    let dwo: Tensor | null = null;
    let dbo: Tensor | null = null;
    if (dy) [dsum, dwo, dbo] = normBackward('addLayerNorm', dy, held, weight, bias, dt, rows, cols);
    if (dh) {
      const g = castRaw(dh, dt);
      if (dsum) {
        k.axpy(dt, fa(g), dt, fa(dsum), dsum.numel, 1);
        drop(g, dh);
      } else {
        dsum = g;
      }
    }
    if (!dsum) return [null, null, null, null];
    const dxo = x.requiresGrad ? castRaw(dsum, x.dtype) : null;
    const dro = r.requiresGrad ? castRaw(dsum, r.dtype) : null;
    if (dsum !== dxo && dsum !== dro && dsum !== dh) dsum.dispose();
    return [dxo, dro, dwo, dbo];
  }, saved);
  return [h, y];
}
