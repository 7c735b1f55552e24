// Shape arithmetic shared by tensors and ops.

import { DSShapeError } from './errors.js';

export type Shape = readonly number[];

export function numelOf(shape: Shape): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

export function contiguousStrides(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    strides[d] = s;
    s *= shape[d]!;
  }
  return strides;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

export function fmtShape(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export function assertShape(op: string, shape: Shape): void {
  for (const s of shape) {
    if (!Number.isInteger(s) || s < 0) throw new DSShapeError(`${op}: invalid shape ${fmtShape(shape)} (dims must be non-negative integers)`);
  }
}

/** Normalises a possibly negative dim against a rank. */
export function normDim(op: string, dim: number, rank: number): number {
  const d = dim < 0 ? dim + rank : dim;
  if (!Number.isInteger(d) || d < 0 || d >= rank) throw new DSShapeError(`${op}: dim ${dim} is out of range for a tensor of rank ${rank}`);
  return d;
}

/** Resolves one -1 in a target shape against a number of elements. */
export function inferShape(op: string, shape: Shape, numel: number, from: Shape): number[] {
  const out = [...shape];
  const free = out.indexOf(-1);
  if (free >= 0) {
    const known = numelOf(out.filter((_, i) => i !== free));
    if (known === 0 || numel % known !== 0) throw new DSShapeError(`${op}: cannot view ${fmtShape(from)} as ${fmtShape(shape)}`);
    out[free] = numel / known;
  }
  assertShape(op, out);
  if (numelOf(out) !== numel) throw new DSShapeError(`${op}: cannot view ${fmtShape(from)} (${numel} elements) as ${fmtShape(shape)}`);
  return out;
}

/** NumPy broadcasting of two shapes. */
export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const rank = Math.max(a.length, b.length);
  const out = new Array<number>(rank);
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new DSShapeError(`${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} do not broadcast`);
    out[i] = da === 1 ? db : da;
  }
  return out;
}
