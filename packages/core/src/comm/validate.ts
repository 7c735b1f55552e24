// Argument checks shared by every backend, run before anything crosses into native code.
import { BYTES_PER_ELEMENT, DSShapeError, DSUnsupportedError, type DType } from '@ds/tensor';

import type { CommBuffer, CommOpName, ReduceOp } from './types.js';

export const DTYPE_CODE: Readonly<Record<DType, number>> = { f32: 0, bf16: 1, f16: 2, i32: 3, u8: 4 };
export const REDUCE_CODE: Readonly<Record<ReduceOp, number>> = { sum: 0, avg: 1, max: 2, min: 3 };
export const OP_CODE: Readonly<Record<CommOpName, number>> = {
  barrier: 0,
  allReduce: 1,
  reduceScatter: 2,
  allGather: 3,
  broadcast: 4,
  allToAll: 5,
  send: 6,
  recv: 7,
};

const ARRAY_FOR: Readonly<Record<DType, string>> = { f32: 'Float32Array', bf16: 'Uint16Array', f16: 'Uint16Array', i32: 'Int32Array', u8: 'Uint8Array' };

export function checkBuffer(op: CommOpName, what: string, buf: CommBuffer): void {
  if (!buf || typeof buf !== 'object') throw new DSShapeError(`${op}: ${what} must be a { dtype, array } buffer descriptor`);
  const expected = ARRAY_FOR[buf.dtype];
  if (!expected) throw new DSUnsupportedError(`${op}: dtype '${String(buf.dtype)}' is not supported by collectives (supported: f32, bf16, f16, i32, u8)`);
  const actual = (buf.array as unknown as { constructor?: { name?: string } })?.constructor?.name;
  if (actual !== expected) throw new DSShapeError(`${op}: ${what} has dtype ${buf.dtype} but its array is a ${actual ?? typeof buf.array} (expected ${expected})`);
  if (buf.array.byteLength !== buf.array.length * BYTES_PER_ELEMENT[buf.dtype]) throw new DSShapeError(`${op}: ${what} array length does not match its bytes`);
}

export function checkSameDType(op: CommOpName, a: CommBuffer, b: CommBuffer): void {
  if (a.dtype !== b.dtype) throw new DSShapeError(`${op}: output is ${a.dtype} but input is ${b.dtype}; both must have the same dtype`);
}

export function checkReduceOp(op: CommOpName, reduce: ReduceOp, dtype: DType): void {
  if (!(reduce in REDUCE_CODE)) throw new DSUnsupportedError(`${op}: reduce op '${String(reduce)}' is not supported (supported: sum, avg, max, min)`);
  if (reduce === 'avg' && (dtype === 'i32' || dtype === 'u8')) {
    throw new DSUnsupportedError(`${op}: reduce op 'avg' is not supported for integer dtype ${dtype}; use 'sum' and divide`);
  }
}

export function checkRank(op: CommOpName, what: string, rank: number, size: number, self?: number): void {
  if (!Number.isInteger(rank) || rank < 0 || rank >= size) throw new DSShapeError(`${op}: ${what} ${String(rank)} is not a rank of this group (size ${size})`);
  if (self !== undefined && rank === self) throw new DSShapeError(`${op}: ${what} ${rank} is this rank itself`);
}

export function checkTimeout(op: CommOpName, timeoutMs: number): void {
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new DSShapeError(`${op}: timeoutMs must be a positive number (got ${String(timeoutMs)})`);
}

function overlaps(a: CommBuffer, b: CommBuffer): boolean {
  if (a.array.buffer !== b.array.buffer) return false;
  const a0 = a.array.byteOffset, a1 = a0 + a.array.byteLength;
  const b0 = b.array.byteOffset, b1 = b0 + b.array.byteLength;
  return a0 < b1 && b0 < a1;
}

/**
 * Sizes of the two-buffer collectives. In-place forms allowed: allGather with input = block `rank`
 * of output, reduceScatter with output = block `rank` of input, allToAll with input = output.
 */
export function checkPair(op: 'reduceScatter' | 'allGather' | 'allToAll', output: CommBuffer, input: CommBuffer, size: number, rank: number): void {
  checkBuffer(op, 'output', output);
  checkBuffer(op, 'input', input);
  checkSameDType(op, output, input);
  const o = output.array.length, i = input.array.length;
  const esz = BYTES_PER_ELEMENT[output.dtype];
  if (op === 'reduceScatter') {
    if (i !== o * size) throw new DSShapeError(`reduceScatter: input has ${i} elements but must hold ${size} blocks of the output's ${o}`);
    if (overlaps(output, input) && !(output.array.buffer === input.array.buffer && output.array.byteOffset === input.array.byteOffset + rank * o * esz)) {
      throw new DSShapeError('reduceScatter: output overlaps input (only output = block `rank` of input is allowed)');
    }
  } else if (op === 'allGather') {
    if (o !== i * size) throw new DSShapeError(`allGather: output has ${o} elements but must hold ${size} blocks of the input's ${i}`);
    if (overlaps(output, input) && !(output.array.buffer === input.array.buffer && input.array.byteOffset === output.array.byteOffset + rank * i * esz)) {
      throw new DSShapeError('allGather: input overlaps output (only input = block `rank` of output is allowed)');
    }
  } else {
    if (o !== i) throw new DSShapeError(`allToAll: output has ${o} elements but input has ${i}; they must be equal`);
    if (i % size !== 0) throw new DSShapeError(`allToAll: ${i} elements do not split into ${size} equal blocks`);
    if (overlaps(output, input) && !(output.array.buffer === input.array.buffer && output.array.byteOffset === input.array.byteOffset)) {
      throw new DSShapeError('allToAll: input and output partly overlap (use the same view for in-place)');
    }
  }
}
