// Every cuda kernel against its cpu twin, through the package's own self-check (cudaSelfCheck,
// src/devices/cuda-selfcheck.ts): one test per case, so these tests and the GPU machine's check
// (scripts/device-check/run.mjs, which runs cudaSelfCheck from dist) run the same cases. Where no GPU
// is usable the cases are skipped with the reason printed. What needs no GPU runs everywhere: the
// case list covers every KernelTable entry in every float dtype, cudaSelfCheck reports cuda
// unavailable with the reason, and the argument checks the cuda table makes in JavaScript before a
// call reaches the addon (over a recording fake of the addon).
import { describe, expect, it } from 'vitest';

import { DSShapeError } from '../../src/errors.js';
import { DeviceArray, type ElementKind } from '../../src/devices/device-array.js';
import { createCpuKernels } from '../../src/backends/cpu.js';
import { createCudaKernels, type CudaDevice } from '../../src/devices/cuda.js';
import { cudaSelfCheck, cudaSelfCheckCases } from '../../src/devices/cuda-selfcheck.js';
import { cudaStatus, type CudaAddon } from '../../src/native/load-cuda.js';
import { createSimDevice } from '../../src/devices/sim.js';
import type { KernelTable } from '../../src/kernels/table.js';
import { createReferenceKernels } from '../../src/reference/index.js';

const status = cudaStatus();
const skipReason: string | null = status.available ? null : `no usable GPU: ${status.reason}`;
const cases = cudaSelfCheckCases();
const FLOATS = ['f32', 'bf16', 'f16'];

describe('the cuda self-check', () => {
  it('has a case for every KernelTable entry, in every float dtype (gemm in f32 and bf16, in and out)', () => {
    const entries = Object.keys(createReferenceKernels()).filter((k) => !['name', 'setNumThreads', 'getNumThreads'].includes(k));
    expect(entries.length).toBeGreaterThan(25);
    for (const e of entries) {
      const dtypes = new Set(cases.filter((c) => c.kernel === e).map((c) => c.dtype));
      if (e === 'gemm') expect([...dtypes].sort(), e).toEqual(['bf16->bf16', 'bf16->f32', 'f32->bf16', 'f32->f32']);
      else expect([...dtypes].sort(), e).toEqual([...FLOATS].sort());
    }
    expect(cases.some((c) => c.kernel === 'device')).toBe(true);
    const ids = cases.map((c) => `${c.name} [${c.dtype}]`);
    expect(new Set(ids).size).toBe(ids.length);
    // As wide as the suite it replaced: 53 tests grouping 230-odd kernel calls.
    expect(cases.length).toBeGreaterThanOrEqual(230);
  });

  it('lists only the dtypes asked for', () => {
    const f32 = cudaSelfCheckCases(['f32']);
    expect(new Set(f32.map((c) => c.dtype))).toEqual(new Set(['f32', 'f32->f32', '-']));
  });

  // The sim device (native memory JavaScript cannot read, run by a host table) stands in for the GPU
  // so that every case's uploads, calls, downloads and comparisons run in CI; the allocator case
  // needs cuda's own memory statistics and is left to the GPU.
  const onSim = (hostKernels?: KernelTable) => ({ device: createSimDevice({ hostKernels }) as unknown as CudaDevice });

  it('runs every kernel case end to end on the sim device over the cpu table, all passing', () => {
    const r = cudaSelfCheck({ ...onSim(), filter: (c) => c.kernel !== 'device' });
    expect(r.available).toBe(true);
    expect(r.cases).toHaveLength(cases.length - 1);
    expect(r.cases.filter((c) => !c.ok).map((c) => `${c.name} [${c.dtype}]: ${c.message}`)).toEqual([]);
    const gelu = r.cases.find((c) => c.name === 'geluForward' && c.dtype === 'bf16')!;
    expect(gelu).toMatchObject({ ok: true, worstError: 0, tolerance: { rtol: 1e-2, atol: 1e-2 }, message: '' });
  });

  it('reports a kernel that is off by name and dtype, with its worst error, its tolerance and the first mismatches', () => {
    const cpu = createCpuKernels();
    // geluForward 1% high: outside f32's tolerance, inside bf16's (one bf16 rounding step is 0.4-0.8%).
    const off: KernelTable = { ...cpu, geluForward: (dtype, x, y, n) => {
      cpu.geluForward(dtype, x, y, n);
      cpu.scale(dtype, y, y, n, 1.01, 0);
    } };
    const r = cudaSelfCheck({ ...onSim(off), filter: (c) => c.kernel === 'geluForward' });
    expect(r.cases.map((c) => [c.dtype, c.ok])).toEqual([['f32', false], ['bf16', true], ['f16', false]]);
    const f32 = r.cases[0]!;
    expect(f32.tolerance).toEqual({ rtol: 1e-4, atol: 1e-5 });
    expect(f32.worstError).toBeGreaterThan(0.01);
    expect(f32.message).toMatch(/^y: \d+ of 5000 elements differ by more than atol 0.00001 \+ rtol 0.0001 \* \|want\|; the first:\n {2}\[\d+\] got /);
    expect(f32.message).toMatch(/max \|diff\| [\d.]+ at \[\d+\]$/);
  });

  it.skipIf(status.available)(`reports cuda unavailable with the reason and runs no case${status.available ? ` (skipped: this machine has a usable GPU: ${status.gpu})` : ''}`, () => {
    const r = cudaSelfCheck();
    expect(r).toMatchObject({ available: false, reason: status.reason, device: null, cases: [], passed: 0, failed: 0 });
    expect(r.reason).toMatch(/\.$/);
  });
});

describe.skipIf(skipReason !== null)(`cuda kernels against the cpu twins${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  it.each(cases.map((c) => [`${c.name} [${c.dtype}]`, c] as const))('%s', (_, want) => {
    const r = cudaSelfCheck({ filter: (c) => c.name === want.name && c.dtype === want.dtype });
    expect(r.cases).toHaveLength(1);
    const c = r.cases[0]!;
    expect(c.ok, c.message).toBe(true);
  });
});

describe('cuda kernel arguments are checked in JavaScript, before the addon (no GPU needed)', () => {
  /** The cuda table over a fake addon that records the calls that reach it. */
  function fakeTable() {
    const calls: string[] = [];
    const addon = new Proxy({}, { get: (_, name) => () => void calls.push(String(name)) }) as CudaAddon;
    return { k: createCudaKernels(addon), calls };
  }
  let next = 0x1000n;
  /** A cuda DeviceArray over a made-up allocation (its address is never dereferenced here). */
  const onCuda = (kind: ElementKind, length: number) => {
    const bytes = length * { f32: 4, u16: 2, i32: 4, u8: 1 }[kind];
    next += 0x1000n;
    return new DeviceArray({ device: 'cuda', byteLength: bytes, address: next }, kind, 0, length) as never;
  };

  it('a valid call reaches the addon', () => {
    const { k, calls } = fakeTable();
    k.scale('f32', onCuda('f32', 4), onCuda('f32', 4), 4, 1, 0);
    expect(calls).toEqual(['scale']);
  });

  it('rejects host arrays, short views and wrong element kinds with a DSShapeError naming the op and operand', () => {
    const { k, calls } = fakeTable();
    expect(() => k.scale('f32', new Float32Array(4) as never, onCuda('f32', 4), 4, 1, 0)).toThrow(/scale: x is host memory \(Float32Array\)/);
    expect(() => k.scale('f32', onCuda('f32', 4), onCuda('f32', 3), 4, 1, 0)).toThrow(/scale: out has 3 elements but n=4 needs 4/);
    expect(() => k.scale('bf16', onCuda('f32', 4), onCuda('f32', 4), 4, 1, 0)).toThrow(/holds f32 elements but dtype bf16 needs u16/);
    expect(() => k.scale('f32', new DeviceArray({ device: 'sim', byteLength: 16, address: 1n }, 'f32', 0, 4) as never, onCuda('f32', 4), 4, 1, 0))
      .toThrow(/scale: x lives on device 'sim', not 'cuda'/);
    expect(calls).toEqual([]);
  });

  it('rejects bad sizes, broadcasts and overlapping gemm outputs', () => {
    const { k, calls } = fakeTable();
    expect(() => k.binary('add', 'f32', onCuda('f32', 6), onCuda('f32', 4), onCuda('f32', 6), 6, 4)).toThrow(/n=6 must be a multiple of bn=4/);
    expect(() => k.unary('neg', 'f32', onCuda('f32', 4), onCuda('f32', 4), -1)).toThrow(DSShapeError);
    expect(() => k.gather('f32', onCuda('f32', 10), 0, [2, 3], [3], onCuda('f32', 6))).toThrow(/differ in rank/);
    expect(() => k.gemm({ dtype: 'f32', outDtype: 'f32', transA: false, transB: false, batch: 2, m: 2, n: 2, k: 2, alpha: 1, beta: 0,
      a: onCuda('f32', 8), strideA: 4, b: onCuda('f32', 8), strideB: 4, c: onCuda('f32', 8), strideC: 2 })).toThrow(/strideC=2 is below m\*n=4/);
    expect(() => k.dropoutForward('f32', onCuda('f32', 4), onCuda('f32', 4), onCuda('u8', 4), 4, 1.5, 0, 0)).toThrow(/p must be in \[0, 1\]/);
    expect(() => k.setNumThreads(0)).toThrow(/setNumThreads/);
    expect(calls).toEqual([]);
  });
});
