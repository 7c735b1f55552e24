// Reference elementwise kernels and reductions. Reductions that return a number sum in f64.

import type { BinaryOp, HostFArray as FArray, FloatDType, UnaryOp } from '../kernels/table.js';
import { rd, wr } from './access.js';

function unaryFn(op: UnaryOp): (x: number) => number {
  switch (op) {
    case 'neg': return (x) => -x;
    case 'exp': return Math.exp;
    case 'log': return Math.log;
    case 'sqrt': return Math.sqrt;
    case 'rsqrt': return (x) => 1 / Math.sqrt(x);
    case 'tanh': return Math.tanh;
    case 'relu': return (x) => (x > 0 ? x : 0);
    case 'abs': return Math.abs;
    case 'square': return (x) => x * x;
    case 'sigmoid': return (x) => 1 / (1 + Math.exp(-x));
    case 'sign': return (x) => (x > 0 ? 1 : x < 0 ? -1 : x);
  }
}

function binaryFn(op: BinaryOp): (a: number, b: number) => number {
  switch (op) {
    case 'add': return (a, b) => a + b;
    case 'sub': return (a, b) => a - b;
    case 'mul': return (a, b) => a * b;
    case 'div': return (a, b) => a / b;
    case 'max': return (a, b) => (a >= b || Number.isNaN(a) ? a : b);
    case 'min': return (a, b) => (a <= b || Number.isNaN(a) ? a : b);
  }
}

export function unary(op: UnaryOp, dtype: FloatDType, x: FArray, out: FArray, n: number): void {
  const f = unaryFn(op);
  for (let i = 0; i < n; i++) wr(dtype, out, i, f(rd(dtype, x, i)));
}

export function binary(op: BinaryOp, dtype: FloatDType, a: FArray, b: FArray, out: FArray, n: number, bn: number): void {
  const f = binaryFn(op);
  for (let i = 0; i < n; i++) wr(dtype, out, i, f(rd(dtype, a, i), rd(dtype, b, bn === n ? i : i % bn)));
}

export function scale(dtype: FloatDType, x: FArray, out: FArray, n: number, alpha: number, beta: number): void {
  for (let i = 0; i < n; i++) wr(dtype, out, i, alpha * rd(dtype, x, i) + beta);
}

export function axpy(xDtype: FloatDType, x: FArray, yDtype: FloatDType, y: FArray, n: number, alpha: number): void {
  for (let i = 0; i < n; i++) wr(yDtype, y, i, rd(yDtype, y, i) + alpha * rd(xDtype, x, i));
}

export function sum(dtype: FloatDType, x: FArray, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += rd(dtype, x, i);
  return s;
}

export function sumSquares(dtype: FloatDType, x: FArray, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) {
    const v = rd(dtype, x, i);
    s += v * v;
  }
  return s;
}

export function hasInfNan(dtype: FloatDType, x: FArray, n: number): boolean {
  for (let i = 0; i < n; i++) if (!Number.isFinite(rd(dtype, x, i))) return true;
  return false;
}

export function sumRows(dtype: FloatDType, x: FArray, rows: number, cols: number, out: Float32Array, accumulate: boolean): void {
  const acc = new Float64Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) acc[c]! += rd(dtype, x, r * cols + c);
  for (let c = 0; c < cols; c++) out[c] = accumulate ? out[c]! + acc[c]! : acc[c]!;
}

export function sumLastDim(dtype: FloatDType, x: FArray, rows: number, cols: number, out: FArray): void {
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += rd(dtype, x, r * cols + c);
    wr(dtype, out, r, s);
  }
}
