// Elementwise ops: add/sub/mul/div with NumPy broadcasting, scalar affine ops, unary math.
// Mixed float dtypes promote to f32. Broadcasting a row vector over leading dims (a bias) uses
// the kernel's repeating-b form; other broadcasts expand the operand first.

import { attach, needsGrad, save } from '../autograd/node.js';
import type { FloatDType } from '../dtype.js';
import { DSUnsupportedError } from '../errors.js';
import type { BinaryOp, UnaryOp } from '../kernels/table.js';
import { broadcastShapes, numelOf, sameShape, type Shape } from '../shape-util.js';
import type { Tensor } from '../tensor.js';
import { reduceTo } from './reduce.js';
import { expand } from './shape.js';
import { tidy as tidyGrad } from '../memory/scope.js';
import { allocOut, castRaw, checkDevices, checkFloat, drop, fa, kernelsOf, promote } from './util.js';

/** x cast to dt and laid out contiguously with shape `shape` (expanding if it broadcasts). */
function operand(x: Tensor, dt: FloatDType, shape: Shape): Tensor {
  if (sameShape(x.shape, shape)) return castRaw(x, dt);
  const e = expand(x, shape);
  const out = castRaw(e, dt);
  if (e !== x && e !== out) e.dispose();
  return out;
}

/** True when b repeats every b.numel elements of an output of `shape` (a trailing-dims match). */
function repeatsAsRow(b: Tensor, shape: Shape): boolean {
  const dims = [...b.shape];
  while (dims.length && dims[0] === 1) dims.shift();
  if (dims.length > shape.length) return false;
  return dims.every((s, i) => s === shape[shape.length - dims.length + i]);
}

function binaryRaw(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const dt = promote(a.dtype, b.dtype);
  const shape = broadcastShapes(op, a.shape, b.shape);
  const n = numelOf(shape);
  const ac = operand(a, dt, shape);
  const row = !sameShape(b.shape, shape) && repeatsAsRow(b, shape) && b.numel > 0;
  const bc = row ? castRaw(b, dt) : operand(b, dt, shape);
  const out = allocOut(a, shape, dt, op);
  if (n > 0) kernelsOf(a).binary(op, dt, fa(ac), fa(bc), fa(out), n, row ? b.numel : n);
  drop(ac, a);
  drop(bc, b);
  return out;
}

/** g summed to x's shape and cast to x's dtype. `owned`: g is a temporary of the caller, freed here. */
function gradFor(g: Tensor, x: Tensor, owned = false): Tensor {
  const r = reduceTo(g, x.shape);
  const c = castRaw(r, x.dtype);
  if (c !== r && r !== g) r.dispose();
  if (owned && c !== g) g.dispose();
  return c;
}

function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  checkDevices(op, a, b);
  checkFloat(op, a, b);
  const y = binaryRaw(op, a, b);
  if (!needsGrad(a, b)) return y;
  const sa = op === 'mul' || op === 'div' ? save(a) : null;
  const sb = op === 'mul' || op === 'div' ? save(b) : null;
  return attach(y, op, [a, b], (dy) => {
    switch (op) {
      case 'add':
        return [a.requiresGrad ? gradFor(dy, a) : null, b.requiresGrad ? gradFor(dy, b) : null];
      case 'sub':
        return [a.requiresGrad ? gradFor(dy, a) : null, b.requiresGrad ? gradFor(neg(dy), b, true) : null];
      case 'mul':
        return [a.requiresGrad ? gradFor(mul(dy, sb!), a, true) : null, b.requiresGrad ? gradFor(mul(dy, sa!), b, true) : null];
      case 'div': {
        const da = a.requiresGrad ? gradFor(div(dy, sb!), a, true) : null;
        // d(a/b)/db = -a / b^2
        const db = b.requiresGrad ? tidyGrad(() => gradFor(neg(div(mul(dy, sa!), mul(sb!, sb!))), b)) : null;
        return [da, db];
      }
      default:
        throw new DSUnsupportedError(`${op}: no backward for this binary op (add, sub, mul and div have one)`);
    }
  }, [sa, sb].filter((t): t is Tensor => t !== null));
}

export const add = (a: Tensor, b: Tensor): Tensor => binary('add', a, b);
export const sub = (a: Tensor, b: Tensor): Tensor => binary('sub', a, b);
export const mul = (a: Tensor, b: Tensor): Tensor => binary('mul', a, b);
export const div = (a: Tensor, b: Tensor): Tensor => binary('div', a, b);

/** Elementwise max/min (not differentiable). */
export function maximum(a: Tensor, b: Tensor): Tensor {
  checkDevices('max', a, b);
  return binaryRaw('max', a, b);
}
export function minimum(a: Tensor, b: Tensor): Tensor {
  checkDevices('min', a, b);
  return binaryRaw('min', a, b);
}

/** alpha * x + beta, in x's dtype. */
export function affine(x: Tensor, alpha: number, beta: number): Tensor {
  checkFloat('affine', x);
  const xc = castRaw(x, x.dtype);
  const y = allocOut(x, x.shape, x.dtype, 'affine');
  kernelsOf(x).scale(x.dtype as FloatDType, fa(xc), fa(y), x.numel, alpha, beta);
  drop(xc, x);
  if (needsGrad(x)) attach(y, 'affine', [x], (dy) => [alpha === 1 ? dy : affine(dy, alpha, 0)]);
  return y;
}

export const mulScalar = (x: Tensor, s: number): Tensor => affine(x, s, 0);
export const addScalar = (x: Tensor, s: number): Tensor => affine(x, 1, s);
export const neg = (x: Tensor): Tensor => affine(x, -1, 0);

function unaryRaw(op: UnaryOp, x: Tensor): Tensor {
  const xc = castRaw(x, x.dtype);
  const y = allocOut(x, x.shape, x.dtype, op);
  kernelsOf(x).unary(op, x.dtype as FloatDType, fa(xc), fa(y), x.numel);
  drop(xc, x);
  return y;
}

/** Unary math whose derivative is written in terms of the input x and the output y. */
function unary(op: 'exp' | 'log' | 'sqrt' | 'tanh' | 'square' | 'sigmoid', x: Tensor): Tensor {
  checkDevices(op, x);
  checkFloat(op, x);
  const y = unaryRaw(op, x);
  if (!needsGrad(x)) return y;
  const sx = save(x);
  const sy = save(y);
  return attach(y, op, [x], (dy) => [tidyGrad(() => unaryGrad(op, dy, sx, sy))], [sx, sy]);
}

function unaryGrad(op: 'exp' | 'log' | 'sqrt' | 'tanh' | 'square' | 'sigmoid', dy: Tensor, sx: Tensor, sy: Tensor): Tensor {
  {
    switch (op) {
      case 'exp':
        return mul(dy, sy);
      case 'log':
        return div(dy, sx);
      case 'sqrt':
        return div(mulScalar(dy, 0.5), sy);
      case 'tanh':
        return mul(dy, affine(mul(sy, sy), -1, 1));
      case 'square':
        return mul(dy, mulScalar(sx, 2));
      case 'sigmoid':
        return mul(dy, mul(sy, affine(sy, -1, 1)));
    }
  }
}

export const exp = (x: Tensor): Tensor => unary('exp', x);
export const log = (x: Tensor): Tensor => unary('log', x);
export const sqrt = (x: Tensor): Tensor => unary('sqrt', x);
export const tanh = (x: Tensor): Tensor => unary('tanh', x);
export const square = (x: Tensor): Tensor => unary('square', x);
export const sigmoid = (x: Tensor): Tensor => unary('sigmoid', x);
