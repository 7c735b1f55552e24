// Sum and mean over dims, and reduceTo (summing a broadcast gradient back to an operand's shape).
// Leading-dim reductions use sumRows (f32 accumulation, the bias-gradient path); trailing ones
// sumLastDim; any other set of dims is permuted to the end first.

import { attach, needsGrad } from '../autograd/node.js';
import { DSShapeError } from '../errors.js';
import { fmtShape, normDim, numelOf, sameShape, type Shape } from '../shape-util.js';
import type { Tensor } from '../tensor.js';
import { expand, permute, reshape } from './shape.js';
import { alloc, allocOut, checkFloat, contig, drop, f32a, fa, kernelsOf } from './util.js';
import { mulScalar } from './elementwise.js';

function normDims(op: string, x: Tensor, dims: number | readonly number[] | undefined): number[] {
  if (dims === undefined) return x.shape.map((_, i) => i);
  const list = (typeof dims === 'number' ? [dims] : [...dims]).map((d) => normDim(op, d, x.rank));
  if (new Set(list).size !== list.length) throw new DSShapeError(`${op}: dims [${list.join(', ')}] repeat`);
  return list.sort((a, b) => a - b);
}

/** Unrecorded sum of x over sorted dims, keeping them as size 1. */
function sumRaw(x: Tensor, dims: number[]): Tensor {
  const keptShape = x.shape.map((s, i) => (dims.includes(i) ? 1 : s));
  const k = kernelsOf(x);
  const out = alloc(x, keptShape, x.dtype, 'sum');
  const reduced = numelOf(dims.map((d) => x.shape[d]!));
  const kept = x.numel / Math.max(reduced, 1);
  if (x.numel === 0) return out;
  const leading = dims.every((d, i) => d === i);
  const trailing = dims.every((d, i) => d === x.rank - dims.length + i);
  // A reduction to one element is a single row for sumLastDim (vectorized along it); sumRows would walk 1-element columns.
  if (leading && dims.length > 0 && kept > 1) {
    const xc = contig(x);
    if (x.dtype === 'f32') k.sumRows('f32', fa(xc), reduced, kept, f32a(out), false);
    else {
      const acc = allocOut(x, [kept], 'f32', 'sum.f32');
      k.sumRows(x.dtype as 'bf16', fa(xc), reduced, kept, f32a(acc), false);
      k.cast('f32', acc.operand(), x.dtype, out.operand(), kept);
      acc.dispose();
    }
    drop(xc, x);
    return out;
  }
  const order = [...x.shape.map((_, i) => i).filter((i) => !dims.includes(i)), ...dims];
  const moved = trailing ? x : permute(x, order);
  const xc = contig(moved);
  k.sumLastDim(x.dtype as 'f32', fa(xc), kept, reduced, fa(out));
  drop(xc, moved);
  if (moved !== x) moved.dispose();
  return out;
}

/** Sum over dims (all when omitted). */
export function sum(x: Tensor, dims?: number | readonly number[], keepdim = false): Tensor {
  checkFloat('sum', x);
  const ds = normDims('sum', x, dims);
  const kept = sumRaw(x, ds);
  const shape = keepdim ? kept.shape : x.shape.filter((_, i) => !ds.includes(i));
  const y = keepdim ? kept : reshape(kept, shape);
  if (y !== kept) kept.dispose();
  if (needsGrad(x)) {
    attach(y, 'sum', [x], (dy) => {
      const g = reshape(dy, x.shape.map((s, i) => (ds.includes(i) ? 1 : s)));
      const wide = expand(g, x.shape);
      const e = contig(wide);
      if (wide !== g && wide !== e) wide.dispose();
      if (g !== e) g.dispose();
      return [e];
    });
  }
  return y;
}

/** Mean over dims (all when omitted). */
export function mean(x: Tensor, dims?: number | readonly number[], keepdim = false): Tensor {
  const ds = normDims('mean', x, dims);
  const count = numelOf(ds.map((d) => x.shape[d]!));
  const s = sum(x, ds, keepdim);
  const y = mulScalar(s, 1 / count);
  return y;
}

/** Sums a gradient of a broadcast shape back to `shape` (unrecorded; used by backward functions). */
export function reduceTo(g: Tensor, shape: Shape): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.rank - shape.length;
  if (lead < 0) throw new DSShapeError(`reduceTo: gradient ${fmtShape(g.shape)} has fewer dims than ${fmtShape(shape)}`);
  const dims: number[] = [];
  for (let i = 0; i < g.rank; i++) if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) dims.push(i);
  const r = sumRaw(g, dims);
  const out = reshape(r, shape);
  if (out !== r) r.dispose();
  return out;
}

