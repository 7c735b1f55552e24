// Creation functions. Each takes an optional dtype (default f32), device, memory category and
// requiresGrad; random ones take a Generator (or a seed) so results are reproducible.

import { isFloat, writeFloat, type DType, type FloatDType } from './dtype.js';
import { DSShapeError } from './errors.js';
import type { MemoryCategory } from './memory/tracker.js';
import { Generator } from './random.js';
import type { Runtime } from './runtime.js';
import { assertShape, fmtShape, numelOf, type Shape } from './shape-util.js';
import { Tensor } from './tensor.js';
import { toDeviceRaw } from './ops/device.js';

export interface CreateOptions {
  dtype?: DType;
  device?: string;
  category?: MemoryCategory;
  label?: string;
  requiresGrad?: boolean;
  runtime?: Runtime;
}

export interface RandomOptions extends CreateOptions {
  generator?: Generator;
  seed?: number;
}

function make(shape: Shape, opts: CreateOptions, label: string): Tensor {
  assertShape(label, shape);
  const t = Tensor.empty(shape, opts.dtype ?? 'f32', { device: opts.device, category: opts.category, label: opts.label ?? label, runtime: opts.runtime });
  return t;
}

function finish(t: Tensor, opts: CreateOptions): Tensor {
  if (opts.requiresGrad) {
    if (!isFloat(t.dtype)) throw new DSShapeError(`requiresGrad needs a float dtype, got ${t.dtype}`);
    t.requiresGrad = true;
  }
  return t;
}

export function empty(shape: Shape, opts: CreateOptions = {}): Tensor {
  return finish(make(shape, opts, 'empty'), opts);
}

export function zeros(shape: Shape, opts: CreateOptions = {}): Tensor {
  return finish(make(shape, opts, 'zeros'), opts);
}

export function full(shape: Shape, value: number, opts: CreateOptions = {}): Tensor {
  const t = make(shape, opts, 'full');
  t.runtime.kernels(t.device).fill(t.dtype as FloatDType, t.operand(), t.numel, value);
  return finish(t, opts);
}

export function ones(shape: Shape, opts: CreateOptions = {}): Tensor {
  return full(shape, 1, opts);
}

/**
 * A tensor of `shape` filled with value(i) on opts.device: values written by JavaScript are written
 * into host memory and then copied to the device (JavaScript never writes device memory).
 */
function written(shape: Shape, opts: CreateOptions, label: string, value: (i: number) => number): Tensor {
  const device = opts.device ?? 'cpu';
  const host = make(shape, { ...opts, device: 'cpu' }, label);
  writeAll(host, value);
  if (device === 'cpu') return host;
  try {
    return toDeviceRaw(host, device, { label: opts.label ?? label });
  } finally {
    host.dispose();
  }
}

function writeAll(t: Tensor, value: (i: number) => number): void {
  const a = t.data();
  if (isFloat(t.dtype)) {
    const dt = t.runtime.f64Check && t.dtype === 'f32' ? 'f32' : t.dtype;
    for (let i = 0; i < t.numel; i++) writeFloat(dt, a as Float32Array, i, value(i));
  } else {
    for (let i = 0; i < t.numel; i++) a[i] = value(i);
  }
}

/** A tensor holding `values` (row-major) with `shape` (default: 1-D). */
export function fromArray(values: ArrayLike<number>, shape: Shape = [values.length], opts: CreateOptions = {}): Tensor {
  if (numelOf(shape) !== values.length) throw new DSShapeError(`fromArray: ${values.length} values do not fill shape ${fmtShape(shape)}`);
  return finish(written(shape, opts, 'fromArray', (i) => values[i]!), opts);
}

/** 0, 1, ..., n - 1. */
export function arange(n: number, opts: CreateOptions = {}): Tensor {
  return finish(written([n], opts, 'arange', (i) => i), opts);
}

function gen(opts: RandomOptions): Generator {
  return opts.generator ?? new Generator(opts.seed ?? 0);
}

/** Normal(mean, std) samples. */
export function randn(shape: Shape, opts: RandomOptions & { mean?: number; std?: number } = {}): Tensor {
  const g = gen(opts);
  const mu = opts.mean ?? 0;
  const sd = opts.std ?? 1;
  return finish(written(shape, opts, 'randn', () => mu + sd * g.normal()), opts);
}

/** Uniform samples in [low, high). */
export function uniform(shape: Shape, opts: RandomOptions & { low?: number; high?: number } = {}): Tensor {
  const g = gen(opts);
  const lo = opts.low ?? 0;
  const hi = opts.high ?? 1;
  return finish(written(shape, opts, 'uniform', () => lo + (hi - lo) * g.uniform()), opts);
}

/** Uniform integers in [0, high) as i32 (token ids for tests and benchmarks). */
export function randint(shape: Shape, high: number, opts: RandomOptions = {}): Tensor {
  const g = gen(opts);
  return written(shape, { ...opts, dtype: 'i32' }, 'randint', () => g.nextU32() % high);
}
