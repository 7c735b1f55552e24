// What the cuda self-check's cases (cuda-selfcheck-cases.ts) are written in: seeded inputs in every
// float dtype, the tolerance of each dtype, an element-by-element comparison that keeps the first
// mismatches and the largest difference, and a context that runs one kernel call on the cpu twin
// over host arrays and on the cuda table over device copies of the same arrays, then compares.
//
// The comparison is numpy's allclose (|got - want| <= atol + rtol * |want|; NaN matches only NaN,
// an infinity only the same infinity), as the tests' expectClose (@ds-internal/test-kit) is: it lives
// here because the self-check ships in the package and the test kit does not.
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, type FloatDType } from '../dtype.js';
import type { KernelTable } from '../kernels/table.js';
import { Generator } from '../random.js';
import type { CudaDevice } from './cuda.js';
import { DeviceArray, elementKindOf, type DeviceAllocation, type HostArray } from './device-array.js';

export const FLOAT_DTYPES: readonly FloatDType[] = ['f32', 'bf16', 'f16'];

/** |got - want| <= atol + rtol * |want|, element by element. */
export interface Tolerance {
  rtol: number;
  atol: number;
}

export const EXACT: Tolerance = { rtol: 0, atol: 0 };

/** How one output (or one expectation) of a case came out. */
export interface SelfCheckOutput {
  /** The output's name (`y`, `dlogits`), or what was expected (`throws on an out-of-range id`). */
  output: string;
  ok: boolean;
  /** Null where the expectation is not a numeric comparison (an error thrown, an allocator count). */
  tolerance: Tolerance | null;
  /** Largest |got - want| over the output; null where nothing numeric was compared. */
  maxAbsDiff: number | null;
  /** Largest |got - want| / (atol + rtol * |want|): at most 1 passes (Infinity for a NaN or an exact miss). */
  worstRatio: number;
  /** Empty when ok; else what differed, with the first mismatches. */
  message: string;
}

/** Tolerances by the dtype results are stored in: about one rounding step of it, plus f32 arithmetic. */
export function tol(dtype: FloatDType, scale = 1): Tolerance {
  if (dtype === 'bf16') return { rtol: 1e-2, atol: 1e-2 * scale };
  if (dtype === 'f16') return { rtol: 2e-3, atol: 2e-3 * scale };
  return { rtol: 1e-5, atol: 1e-6 * scale };
}

/** f32 compute that sums many terms in another order than the cpu: a little looser than tol('f32'). */
export function loose(dtype: FloatDType, scale = 1): Tolerance {
  return dtype === 'f32' ? { rtol: 1e-4, atol: 1e-5 * scale } : tol(dtype, scale);
}

export function encode(dtype: FloatDType, values: ArrayLike<number>): Float32Array | Uint16Array {
  if (dtype === 'f32') return Float32Array.from(values);
  const enc = dtype === 'bf16' ? f32ToBf16 : f32ToF16;
  return Uint16Array.from(values, (v) => enc(v));
}

/** The values of a host array; Uint16Array bits are read as `dtype` (f32: the raw integers). */
export function decode(dtype: FloatDType, a: HostArray): number[] {
  if (!(a instanceof Uint16Array) || dtype === 'f32') return Array.from(a);
  const dec = dtype === 'bf16' ? bf16ToF32 : f16ToF32;
  return Array.from(a, (h) => dec(h));
}

/** n values uniform in [lo, hi) from a seeded generator, stored in dtype. */
export function randomArray(dtype: FloatDType, n: number, seed: number, lo = -1, hi = 1): Float32Array | Uint16Array {
  const g = new Generator(seed);
  return encode(dtype, Array.from({ length: n }, () => lo + (hi - lo) * g.uniform()));
}

/** n ids uniform in [0, vocab). */
export function randomIds(n: number, vocab: number, seed: number): Int32Array {
  const g = new Generator(seed);
  return Int32Array.from({ length: n }, () => Math.floor(g.uniform() * vocab));
}

export const zeros = (dtype: FloatDType, n: number): Float32Array | Uint16Array => (dtype === 'f32' ? new Float32Array(n) : new Uint16Array(n));

const SHOWN = 8;

/** Compares got with want element by element; the report names the first mismatches and the largest difference. */
export function closeness(output: string, got: ArrayLike<number>, want: ArrayLike<number>, t: Tolerance): SelfCheckOutput {
  if (got.length !== want.length) {
    return { output, ok: false, tolerance: t, maxAbsDiff: null, worstRatio: Infinity, message: `${output}: ${got.length} elements, expected ${want.length}` };
  }
  let maxAbsDiff = 0;
  let maxAbsAt = -1;
  let worstRatio = 0;
  let mismatches = 0;
  const first: string[] = [];
  for (let i = 0; i < want.length; i++) {
    const a = got[i]!;
    const e = want[i]!;
    let ok: boolean;
    let ratio: number;
    if (!Number.isFinite(a) || !Number.isFinite(e)) {
      ok = a === e || (Number.isNaN(a) && Number.isNaN(e));
      ratio = ok ? 0 : Infinity;
    } else {
      const d = Math.abs(a - e);
      const bound = t.atol + t.rtol * Math.abs(e);
      ok = d <= bound;
      ratio = d === 0 ? 0 : bound > 0 ? d / bound : Infinity;
      if (d > maxAbsDiff) [maxAbsDiff, maxAbsAt] = [d, i];
    }
    worstRatio = Math.max(worstRatio, ratio);
    if (!ok) {
      mismatches++;
      if (first.length < SHOWN) first.push(`  [${i}] got ${a}, want ${e} (|diff| ${Math.abs(a - e)})`);
    }
  }
  const message = mismatches === 0 ? '' : [
    `${output}: ${mismatches} of ${want.length} elements differ by more than atol ${t.atol} + rtol ${t.rtol} * |want|; the first:`,
    ...first,
    `  max |diff| ${maxAbsDiff} at [${maxAbsAt}]`,
  ].join('\n');
  return { output, ok: mismatches === 0, tolerance: t, maxAbsDiff, worstRatio, message };
}

/** Named operands of one kernel call: host arrays for the twin; the context uploads copies for cuda. */
export type Arrays = Record<string, HostArray>;
/** One kernel call over named operands (host arrays on the twin, DeviceArrays on cuda). */
export type KernelCall = (t: KernelTable, a: Record<string, any>) => void;

export interface CompareOptions {
  /** Tolerance of outputs stored in the case's dtype (default tol(dtype)). */
  tol?: Tolerance;
  /** Tolerance of f32 outputs when the case's dtype is 16-bit (default rtol 1e-4, atol 1e-5). */
  f32Tol?: Tolerance;
  /** The table the cuda result must match (default the cpu table). */
  twin?: KernelTable;
  /** Uint16Array outputs stored in another dtype than the case's (adamw's bf16 copy); compared at tol of that dtype. */
  u16As?: Record<string, FloatDType>;
}

/**
 * One case's view of the device: uploads host arrays (every allocation it makes is freed by
 * releaseAll at the end of the case), runs a call on both tables and compares, and turns scalars,
 * conditions and expected errors into SelfCheckOutputs.
 */
export class SelfCheckContext {
  private readonly live: DeviceAllocation[] = [];

  constructor(
    readonly device: CudaDevice,
    /** The cpu table, the twin every cuda kernel is checked against. */
    readonly cpu: KernelTable,
    /** The plain-TypeScript reference table (the specification of ops the cpu table may lack). */
    readonly reference: KernelTable,
  ) {}

  get kernels(): KernelTable {
    return this.device.kernels;
  }

  /** A cuda copy of a host array (same element kind and length). */
  up<T extends HostArray>(host: T): DeviceArray<T> {
    const alloc = this.device.alloc(Math.max(1, host.byteLength), { uninitialized: true });
    this.live.push(alloc);
    const arr = new DeviceArray<T>(alloc, elementKindOf(host), 0, host.length);
    this.device.copyFromHost(host, arr);
    return arr;
  }

  /** up() typed loosely, for calling the cuda table directly in a dtype chosen at run time. */
  operand(host: HostArray): never {
    return this.up(host) as never;
  }

  /** The host copy of a cuda array, as a fresh array of the type of `like`. */
  down<T extends HostArray>(a: DeviceArray<T>, like: T): T {
    const out = new (like.constructor as new (n: number) => T)(a.length);
    this.device.copyToHost(a, out);
    return out;
  }

  /** Frees what up() allocated. */
  releaseAll(): void {
    while (this.live.length) this.device.free(this.live.pop()!);
  }

  /**
   * Runs `run` on the twin over copies of `inputs` and `outputs` and on cuda over device copies
   * (outputs start as given: accumulating kernels add into them), then compares each output: 16-bit
   * ones decoded as `dtype` (or their u16As dtype), f32 ones at `tol` when dtype is f32 and at
   * `f32Tol` otherwise, integer ones bit for bit.
   */
  compare(dtype: FloatDType, inputs: Arrays, outputs: Arrays, run: KernelCall, o: CompareOptions = {}): SelfCheckOutput[] {
    const t = o.tol ?? tol(dtype);
    const f32Tol = o.f32Tol ?? { rtol: 1e-4, atol: 1e-5 };
    const host: Record<string, HostArray> = {};
    const dev: Record<string, DeviceArray> = {};
    for (const [k, v] of Object.entries({ ...inputs, ...outputs })) {
      host[k] = v.slice();
      dev[k] = this.up(v);
    }
    run(o.twin ?? this.cpu, host);
    run(this.kernels, dev);
    return Object.keys(outputs).map((k) => {
      const want = host[k]!;
      const got = this.down(dev[k]!, want);
      const as = o.u16As?.[k];
      if (want instanceof Uint16Array) return closeness(k, decode(as ?? dtype, got), decode(as ?? dtype, want), as ? tol(as) : t);
      if (want instanceof Float32Array) return closeness(k, got, want, dtype === 'f32' ? t : f32Tol);
      return closeness(k, got, want, EXACT);
    });
  }

  /** A number cuda returned against the twin's. */
  scalar(output: string, got: number, want: number, t: Tolerance): SelfCheckOutput {
    return closeness(output, [got], [want], t);
  }

  /** A condition that must hold; `message` says what was seen when it does not. */
  expect(output: string, ok: boolean, message: string): SelfCheckOutput {
    return { output, ok, tolerance: null, maxAbsDiff: null, worstRatio: ok ? 0 : Infinity, message: ok ? '' : `${output}: ${message}` };
  }

  /** fn must throw an error of class `want`, or whose message matches `want`. */
  throws(output: string, fn: () => void, want: RegExp | (abstract new (...args: never[]) => Error)): SelfCheckOutput {
    let err: unknown = null;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    const what = want instanceof RegExp ? `an error matching ${want}` : `a ${want.name}`;
    if (err === null) return this.expect(output, false, `expected ${what}, but nothing was thrown`);
    const ok = want instanceof RegExp ? want.test((err as Error).message) : err instanceof want;
    return this.expect(output, ok, `expected ${what}, got ${(err as Error).name}: ${(err as Error).message}`);
  }
}
