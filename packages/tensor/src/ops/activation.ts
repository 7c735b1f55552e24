// GELU (tanh approximation), softmax over the last dim and seeded inverted dropout.

import { attach, needsGrad, save } from '../autograd/node.js';
import { DSShapeError } from '../errors.js';
import type { FloatDType } from '../dtype.js';
import type { Tensor } from '../tensor.js';
import { allocOut, castRaw, checkDevices, checkFloat, drop, fa, kernelsOf } from './util.js';

export function gelu(x: Tensor): Tensor {
  checkDevices('gelu', x);
  checkFloat('gelu', x);
  const dt = x.dtype as FloatDType;
  const xc = castRaw(x, dt);
  const y = allocOut(x, x.shape, dt, 'gelu');
  kernelsOf(x).geluForward(dt, fa(xc), fa(y), x.numel);
  if (!needsGrad(x)) {
    drop(xc, x);
    return y;
  }
  const sx = save(xc);
  drop(xc, x);
  return attach(y, 'gelu', [x], (dy) => {
    const g = castRaw(dy, dt);
    const dx = allocOut(x, x.shape, dt, 'gelu.grad');
    kernelsOf(x).geluBackward(dt, fa(g), fa(sx), fa(dx), x.numel);
    drop(g, dy);
    return [dx];
  }, [sx]);
}

/** softmax over the last dim; f32 inside autocast. */
export function softmax(x: Tensor): Tensor {
  checkDevices('softmax', x);
  checkFloat('softmax', x);
  if (x.rank === 0) throw new DSShapeError('softmax: needs at least one dim');
  const dt: FloatDType = x.runtime.autocastDtype ? 'f32' : (x.dtype as FloatDType);
  const cols = x.shape[x.rank - 1]!;
  const rows = cols === 0 ? 0 : x.numel / cols;
  const xc = castRaw(x, dt);
  const y = allocOut(x, x.shape, dt, 'softmax');
  kernelsOf(x).softmaxForward(dt, fa(xc), fa(y), rows, cols);
  drop(xc, x);
  if (!needsGrad(x)) return y;
  const sy = save(y);
  return attach(y, 'softmax', [x], (dy) => {
    const g = castRaw(dy, dt);
    const dx = allocOut(x, x.shape, dt, 'softmax.grad');
    kernelsOf(x).softmaxBackward(dt, fa(g), fa(sy), fa(dx), rows, cols);
    drop(g, dy);
    const out = castRaw(dx, x.dtype);
    drop(dx, out);
    return [out];
  }, [sy]);
}

export interface DropoutOptions {
  /** 32-bit seed of the counter-based mask; the same seed and offset give the same mask. */
  seed: number;
  /** Counter offset of element 0 (lets several tensors share one seed without repeating masks). */
  offset?: number;
}

/** Inverted dropout with drop probability p in [0, 1); identity when p is 0. */
export function dropout(x: Tensor, p: number, opts: DropoutOptions): Tensor {
  checkDevices('dropout', x);
  checkFloat('dropout', x);
  if (!(p >= 0 && p < 1)) throw new DSShapeError(`dropout: p=${p} must be in [0, 1)`);
  if (p === 0) return x;
  const dt = x.dtype as FloatDType;
  const xc = castRaw(x, dt);
  const y = allocOut(x, x.shape, dt, 'dropout');
  const mask = allocOut(x, x.shape, 'u8', 'dropout.mask');
  kernelsOf(x).dropoutForward(dt, fa(xc), fa(y), mask.operand() as Uint8Array, x.numel, p, opts.seed >>> 0, opts.offset ?? 0);
  drop(xc, x);
  if (!needsGrad(x)) {
    mask.dispose();
    return y;
  }
  const sm = save(mask);
  mask.dispose();
  return attach(y, 'dropout', [x], (dy) => {
    const k = kernelsOf(x);
    const g = castRaw(dy, dt);
    const m = allocOut(x, x.shape, dt, 'dropout.grad');
    k.cast('u8', sm.operand(), dt, m.operand(), x.numel);
    const dx = allocOut(x, x.shape, dt, 'dropout.grad');
    k.binary('mul', dt, fa(g), fa(m), fa(dx), x.numel, x.numel);
    k.scale(dt, fa(dx), fa(dx), x.numel, 1 / (1 - p), 0);
    m.dispose();
    drop(g, dy);
    return [dx];
  }, [sm]);
}
