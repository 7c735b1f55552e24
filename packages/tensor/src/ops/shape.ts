// Shape ops. view/reshape, narrow, transpose, permute and expand return views sharing the input's
// storage (no copy); contiguous and cat copy. Each forward sits next to its backward.

import { attach, attachMulti, needsGrad } from '../autograd/node.js';
import { DSShapeError } from '../errors.js';
import { contiguousStrides, fmtShape, inferShape, normDim, numelOf, sameShape, type Shape } from '../shape-util.js';
import { Tensor } from '../tensor.js';
import { alloc, allocOut, checkDevices, contig, kernelsOf } from './util.js';
import { reduceTo } from './reduce.js';

function viewOf(x: Tensor, shape: Shape, strides: readonly number[], offset: number): Tensor {
  return new Tensor({ storage: x.storage, dtype: x.dtype, shape, strides, offset, runtime: x.runtime });
}

/** Same elements, new shape (one dim may be -1). A view when x is contiguous, else a copy. */
export function reshape(x: Tensor, shape: Shape): Tensor {
  const target = inferShape('reshape', shape, x.numel, x.shape);
  const src = contig(x);
  const y = viewOf(src, target, contiguousStrides(target), src.offset);
  if (src !== x) src.dispose();
  if (needsGrad(x)) attach(y, 'reshape', [x], (dy) => [reshape(dy, x.shape)]);
  return y;
}

/** Like reshape, but x must be contiguous: the result always shares x's storage. */
export function view(x: Tensor, shape: Shape): Tensor {
  if (!x.isContiguous()) throw new DSShapeError(`view: tensor ${fmtShape(x.shape)} is not contiguous; use reshape or contiguous() first`);
  return reshape(x, shape);
}

/** A contiguous tensor with x's elements (x itself when already contiguous). */
export function contiguous(x: Tensor): Tensor {
  const y = contig(x);
  if (y !== x && needsGrad(x)) attach(y, 'contiguous', [x], (dy) => [dy]);
  return y;
}

/** Reorders dims: result dim i is x's dim dims[i]. A strided view. */
export function permute(x: Tensor, dims: readonly number[]): Tensor {
  if (dims.length !== x.rank) throw new DSShapeError(`permute: ${dims.length} dims given for a tensor ${fmtShape(x.shape)}`);
  const norm = dims.map((d) => normDim('permute', d, x.rank));
  if (new Set(norm).size !== norm.length) throw new DSShapeError(`permute: dims [${dims.join(', ')}] repeat a dim`);
  const y = viewOf(x, norm.map((d) => x.shape[d]!), norm.map((d) => x.strides[d]!), x.offset);
  if (needsGrad(x)) {
    const inverse = new Array<number>(norm.length);
    norm.forEach((d, i) => (inverse[d] = i));
    attach(y, 'permute', [x], (dy) => [permute(dy, inverse)]);
  }
  return y;
}

export function transpose(x: Tensor, dim0: number, dim1: number): Tensor {
  const dims = x.shape.map((_, i) => i);
  const a = normDim('transpose', dim0, x.rank);
  const b = normDim('transpose', dim1, x.rank);
  [dims[a], dims[b]] = [dims[b]!, dims[a]!];
  return permute(x, dims);
}

/** Elements [start, start + length) along dim: a view at an offset. */
export function narrow(x: Tensor, dim: number, start: number, length: number): Tensor {
  const d = normDim('narrow', dim, x.rank);
  if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > x.shape[d]!) {
    throw new DSShapeError(`narrow: range [${start}, ${start + length}) is outside dim ${d} of ${fmtShape(x.shape)}`);
  }
  const shape = [...x.shape];
  shape[d] = length;
  const y = viewOf(x, shape, x.strides, x.offset + start * x.strides[d]!);
  if (needsGrad(x)) {
    attach(y, 'narrow', [x], (dy) => {
      const parts: Tensor[] = [];
      const pad = (n: number): Tensor => {
        const s = [...x.shape];
        s[d] = n;
        const z = alloc(dy, s, dy.dtype, 'narrow.grad');
        parts.push(z);
        return z;
      };
      const pieces = [...(start > 0 ? [pad(start)] : []), dy, ...(start + length < x.shape[d]! ? [pad(x.shape[d]! - start - length)] : [])];
      const out = cat(pieces, d);
      for (const z of parts) z.dispose();
      return [out];
    });
  }
  return y;
}

/** Broadcasts size-1 dims (and new leading dims) to `shape` with stride 0: a view. */
export function expand(x: Tensor, shape: Shape): Tensor {
  const lead = shape.length - x.rank;
  if (lead < 0) throw new DSShapeError(`expand: cannot expand ${fmtShape(x.shape)} to fewer dims ${fmtShape(shape)}`);
  const strides = shape.map((s, i) => {
    if (i < lead) return 0;
    const xs = x.shape[i - lead]!;
    if (xs === s) return x.strides[i - lead]!;
    if (xs === 1) return 0;
    throw new DSShapeError(`expand: cannot expand ${fmtShape(x.shape)} to ${fmtShape(shape)}`);
  });
  if (sameShape(shape, x.shape)) return x;
  const y = viewOf(x, shape, strides, x.offset);
  if (needsGrad(x)) attach(y, 'expand', [x], (dy) => [reduceTo(dy, x.shape)]);
  return y;
}

/** Joins tensors along dim (all other dims equal, same dtype and device). */
export function cat(xs: readonly Tensor[], dim: number): Tensor {
  if (xs.length === 0) throw new DSShapeError('cat: no tensors given');
  checkDevices('cat', ...xs);
  const first = xs[0]!;
  const d = normDim('cat', dim, first.rank);
  for (const x of xs) {
    if (x.dtype !== first.dtype || x.rank !== first.rank || x.shape.some((s, i) => i !== d && s !== first.shape[i])) {
      throw new DSShapeError(`cat: shapes ${xs.map((t) => `${fmtShape(t.shape)} ${t.dtype}`).join(', ')} do not join along dim ${d}`);
    }
  }
  const sizes = xs.map((x) => x.shape[d]!);
  const shape = [...first.shape];
  shape[d] = sizes.reduce((a, b) => a + b, 0);
  const out = allocOut(first, shape, first.dtype, 'cat');
  const outer = numelOf(shape.slice(0, d));
  const inner = numelOf(shape.slice(d + 1));
  const rowOut = shape[d]! * inner;
  const k = kernelsOf(first);
  const dst = out.operand();
  let at = 0;
  for (const x of xs) {
    const src = contig(x);
    const data = src.operand();
    const rowIn = x.shape[d]! * inner;
    // One copy per outer index: the part's rows land at column offset `at` of each output row.
    if (outer === 1) k.copy(data, dst.subarray(at * inner, at * inner + rowIn), rowIn);
    else for (let o = 0; o < outer; o++) k.copy(data.subarray(o * rowIn, (o + 1) * rowIn), dst.subarray(o * rowOut + at * inner, o * rowOut + at * inner + rowIn), rowIn);
    if (src !== x) src.dispose();
    at += x.shape[d]!;
  }
  if (needsGrad(...xs)) {
    attach(out, 'cat', xs, (dy) => {
      let start = 0;
      return xs.map((x) => {
        const g = contig(narrow(dy, d, start, x.shape[d]!));
        start += x.shape[d]!;
        return g;
      });
    });
  }
  return out;
}

/**
 * Splits along dim into pieces of `size` (the last may be smaller) or of the given sizes. The
 * pieces are views; one node covers them all, so the backward writes one joined gradient instead
 * of padding each piece's gradient to the full shape.
 */
export function split(x: Tensor, size: number | readonly number[], dim: number): Tensor[] {
  const d = normDim('split', dim, x.rank);
  const total = x.shape[d]!;
  const sizes: number[] = [];
  if (typeof size === 'number') {
    if (!Number.isInteger(size) || size <= 0) throw new DSShapeError(`split: size ${size} must be a positive integer`);
    for (let s = 0; s < total; s += size) sizes.push(Math.min(size, total - s));
  } else {
    if (size.some((n) => !Number.isInteger(n) || n < 0) || size.reduce((a, b) => a + b, 0) !== total) {
      throw new DSShapeError(`split: sizes [${size.join(', ')}] do not add up to dim ${d} of ${fmtShape(x.shape)}`);
    }
    sizes.push(...size);
  }
  let start = 0;
  const pieces = sizes.map((n) => {
    const shape = [...x.shape];
    shape[d] = n;
    const piece = viewOf(x, shape, x.strides, x.offset + start * x.strides[d]!);
    start += n;
    return piece;
  });
  if (!needsGrad(x)) return pieces;
  const shapes = pieces.map((p) => p.shape);
  return attachMulti(pieces, 'split', [x], (grads) => {
    const zerosFor: Tensor[] = [];
    const parts = grads.map((g, i) => {
      if (g) return g;
      const z = alloc(x, shapes[i]!, x.dtype, 'split.grad');
      zerosFor.push(z);
      return z;
    });
    const joined = cat(parts, d);
    for (const z of zerosFor) z.dispose();
    return [joined];
  });
}

/** Splits into `n` equal pieces along dim (dim's size must divide evenly). */
export function chunk(x: Tensor, n: number, dim: number): Tensor[] {
  const d = normDim('chunk', dim, x.rank);
  if (!Number.isInteger(n) || n <= 0 || x.shape[d]! % n !== 0) throw new DSShapeError(`chunk: dim ${d} of ${fmtShape(x.shape)} does not split into ${n} equal pieces`);
  return split(x, x.shape[d]! / n, d);
}

export function unsqueeze(x: Tensor, dim: number): Tensor {
  const d = normDim('unsqueeze', dim, x.rank + 1);
  const shape = [...x.shape];
  shape.splice(d, 0, 1);
  return reshape(x, shape);
}

