// Layer normalisation over the last dim (f32 inside autocast, like torch.autocast).

import { attach, checkHeld, needsGrad, save, saveInput } from '../autograd/node.js';
import { DSShapeError } from '../errors.js';
import type { FloatDType } from '../dtype.js';
import { fmtShape } from '../shape-util.js';
import type { Tensor } from '../tensor.js';
import { alloc, allocOut, castRaw, checkDevices, checkFloat, drop, f32a, fa, kernelsOf, promote } from './util.js';

/** y = (x - mean) / sqrt(var + eps) * weight + bias over the last dim; weight, bias [C]. */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  checkDevices('layerNorm', x, weight, bias);
  checkFloat('layerNorm', x, weight, bias);
  const cols = x.shape[x.rank - 1];
  if (x.rank === 0 || weight.rank !== 1 || bias.rank !== 1 || weight.shape[0] !== cols || bias.shape[0] !== cols) {
    throw new DSShapeError(`layerNorm: input ${fmtShape(x.shape)}, weight ${fmtShape(weight.shape)}, bias ${fmtShape(bias.shape)} (weight and bias must be [${cols}])`);
  }
  const rows = x.numel / cols!;
  const dt: FloatDType = x.runtime.autocastDtype ? 'f32' : promote(x.dtype, weight.dtype, bias.dtype);
  const k = kernelsOf(x);
  const xc = castRaw(x, dt);
  const wc = castRaw(weight, dt);
  const bc = castRaw(bias, dt);
  const y = allocOut(x, x.shape, dt, 'layerNorm');
  const meanT = allocOut(x, [rows], 'f32', 'layerNorm.mean');
  const rstdT = allocOut(x, [rows], 'f32', 'layerNorm.rstd');
  k.layerNormForward(dt, fa(xc), fa(wc), fa(bc), fa(y), f32a(meanT), f32a(rstdT), rows, cols!, eps);
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
  const [sx, sm, sr] = saved as [Tensor, Tensor, Tensor];
  return attach(y, 'layerNorm', [x, weight, bias], (dy) => {
    checkHeld('layerNorm', sw, [cols!]);
    const g = castRaw(dy, dt);
    const dx = allocOut(x, x.shape, dt, 'layerNorm.grad');
    const dw = alloc(x, [cols!], 'f32', 'layerNorm.dweight');
    const db = alloc(x, [cols!], 'f32', 'layerNorm.dbias');
    k.layerNormBackward(dt, fa(g), fa(sx), fa(sw), f32a(sm), f32a(sr), fa(dx), f32a(dw), f32a(db), rows, cols!);
    drop(g, dy);
    const dxo = castRaw(dx, x.dtype);
    drop(dx, dxo);
    const dwo = castRaw(dw, weight.dtype);
    drop(dw, dwo);
    const dbo = castRaw(db, bias.dtype);
    drop(db, dbo);
    return [dxo, dwo, dbo];
  }, saved);
}
