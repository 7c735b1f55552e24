// Embedding lookup: rows of a [vocab, dim] table gathered by i32 ids. Ids are range-checked here,
// so a kernel never reads outside the table.

import { attach, needsGrad } from '../autograd/node.js';
import { DSShapeError } from '../errors.js';
import type { FloatDType } from '../dtype.js';
import { fmtShape } from '../shape-util.js';
import type { Tensor } from '../tensor.js';
import { alloc, allocOut, castRaw, checkDType, checkDevices, checkFloat, drop, f32a, fa, hostInts, kernelsOf } from './util.js';
import type { I32 } from '../kernels/table.js';

export function checkIds(op: string, ids: Int32Array, limit: number, allowIgnore: boolean): void {
  for (let i = 0; i < ids.length; i++) {
    const v = ids[i]!;
    if ((v < 0 || v >= limit) && !(allowIgnore && v === -1)) throw new DSShapeError(`${op}: index ${v} at position ${i} is outside [0, ${limit})${allowIgnore ? ' (and not the ignore index -1)' : ''}`);
  }
}

/** table [vocab, dim] indexed by ids [...] -> [..., dim]. */
export function embedding(ids: Tensor, table: Tensor): Tensor {
  checkDevices('embedding', ids, table);
  checkDType('embedding', ids, 'i32', 'ids');
  checkFloat('embedding', table);
  if (table.rank !== 2) throw new DSShapeError(`embedding: table must be [vocab, dim], got ${fmtShape(table.shape)}`);
  const [vocab, dim] = table.shape as [number, number];
  const dt = table.dtype as FloatDType;
  const ic = castRaw(ids, 'i32');
  const idArr = ic.operand() as I32;
  checkIds('embedding', hostInts(ic), vocab, false);
  const tc = castRaw(table, dt);
  const y = allocOut(table, [...ids.shape, dim], dt, 'embedding');
  kernelsOf(table).embeddingForward(dt, idArr, fa(tc), fa(y), ids.numel, vocab, dim);
  drop(tc, table);
  if (!needsGrad(table)) {
    drop(ic, ids);
    return y;
  }
  // The ids are copied so that later writes to the caller's id tensor cannot change the gradient.
  const saved = allocOut(ids, ids.shape, 'i32', 'embedding.ids');
  kernelsOf(ids).copy(idArr, saved.operand(), ids.numel);
  saved.keep();
  drop(ic, ids);
  return attach(y, 'embedding', [null, table], (dy) => {
    const g = castRaw(dy, dt);
    const dtable = alloc(table, table.shape, 'f32', 'embedding.grad');
    kernelsOf(table).embeddingBackward(dt, fa(g), saved.operand() as I32, f32a(dtable), ids.numel, vocab, dim);
    drop(g, dy);
    const out = castRaw(dtable, dt);
    drop(dtable, out);
    return [null, out];
  }, [saved]);
}
