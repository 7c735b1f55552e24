// The thread pool as kernels see it: any thread count gives the same results (bit-identical where
// the split cannot change the arithmetic), the count is adjustable, and tiny inputs stay correct.
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';

import { defaultPoolSpinUs, readTensorEnv } from '../../src/env.js';
import { loadCpuAddon } from '../../src/native/load.js';
import { clone, cpu, expectBits, randomArray } from './helpers.js';

function withThreads<T>(n: number, fn: () => T): T {
  const before = cpu.getNumThreads();
  cpu.setNumThreads(n);
  try {
    return fn();
  } finally {
    cpu.setNumThreads(before);
  }
}

/** cpuInfo() of a fresh process started with `env` (the addon reads it through env.ts at load). */
function infoUnder(env: Record<string, string>): { isa: string; threads: number } | string {
  const pkg = fileURLToPath(new URL('../..', import.meta.url));
  const code = "import('./src/backends/cpu.ts').then((m) => console.log(JSON.stringify(m.createCpuKernels().cpuInfo())))";
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', code], { cwd: pkg, encoding: 'utf8', timeout: 60_000, env: { ...process.env, DS_CPU_ISA: '', DS_NUM_THREADS: '', OMP_NUM_THREADS: '', ...env } });
  if (r.status !== 0) return r.stderr;
  return JSON.parse(r.stdout.trim()) as { isa: string; threads: number };
}

describe('environment', () => {
  it('DS_CPU_ISA forces the scalar path; DS_NUM_THREADS, else OMP_NUM_THREADS, sizes the pool', () => {
    expect(infoUnder({ DS_CPU_ISA: 'scalar', DS_NUM_THREADS: '3', OMP_NUM_THREADS: '5' })).toMatchObject({ isa: 'scalar', threads: 3 });
    const second = cpu.availableIsas()[1] ?? 'scalar';
    expect(infoUnder({ DS_CPU_ISA: second, OMP_NUM_THREADS: '5' })).toMatchObject({ isa: second, threads: 5 });
    expect(infoUnder({ DS_CPU_ISA: 'avx1024' })).toMatch(/DS_CPU_ISA='avx1024' is not one of auto, scalar/);
  });

  it('DS_POOL_SPIN_US takes 0 to 1000000 microseconds and names what is wrong otherwise', () => {
    expect(infoUnder({ DS_POOL_SPIN_US: '0', DS_NUM_THREADS: '2' })).toMatchObject({ threads: 2 });
    expect(infoUnder({ DS_POOL_SPIN_US: '50' })).toMatchObject({ isa: expect.any(String) });
    for (const bad of ['-1', '2.5', 'fast', '1000001']) {
      expect(infoUnder({ DS_POOL_SPIN_US: bad })).toMatch(new RegExp(`DS_POOL_SPIN_US='${bad}' must be an integer from 0 to 1000000`));
    }
  });

  it('DS_POOL_SPIN_US defaults to 5 ms when the ranks\' threads fit the cores, else 200 us', () => {
    const cores = availableParallelism();
    expect(defaultPoolSpinUs(2, 1, 2)).toBe(5000);
    expect(defaultPoolSpinUs(1, 2, 2)).toBe(5000);
    expect(defaultPoolSpinUs(2, 2, 2)).toBe(200);  // two ranks of two threads on two cores
    expect(readTensorEnv({}).poolSpinUs).toBe(5000);  // one thread per core, one rank
    expect(readTensorEnv({ LOCAL_SIZE: '2' }).poolSpinUs).toBe(cores * 2 <= cores ? 5000 : 200);
    expect(readTensorEnv({ LOCAL_SIZE: '2', DS_NUM_THREADS: '1' }).poolSpinUs).toBe(cores >= 2 ? 5000 : 200);
    expect(readTensorEnv({ OMP_NUM_THREADS: String(cores + 1) }).poolSpinUs).toBe(200);
    expect(readTensorEnv({ LOCAL_SIZE: '2', DS_POOL_SPIN_US: '7' }).poolSpinUs).toBe(7);  // set: taken as is
  });
});

describe('thread pool', () => {
  it('reports and changes the thread count', () => {
    withThreads(3, () => expect(cpu.getNumThreads()).toBe(3));
    withThreads(1, () => expect(cpu.cpuInfo().threads).toBe(1));
  });

  it('elementwise, row and optimizer kernels give identical bits on 1, 2 and 5 threads', () => {
    const n = 300_001;
    const x = randomArray('f32', n, 1, -4, 4);
    const rows = 500;
    const cols = 600;
    const run = () => {
      const y = new Float32Array(n);
      cpu.geluForward('f32', x, y, n);
      const sm = new Float32Array(rows * cols);
      cpu.softmaxForward('f32', x, sm, rows, cols);
      const mask = new Uint8Array(n);
      const d = new Float32Array(n);
      cpu.dropoutForward('f32', x, d, mask, n, 0.25, 99, 12345);
      const p = clone(x) as Float32Array;
      cpu.adamw({ param: p, grad: y, gradDtype: 'f32', expAvg: new Float32Array(n), expAvgSq: new Float32Array(n), n, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1, biasCorrection: true, decoupled: true, gradScale: 1 });
      const sr = new Float32Array(cols);
      cpu.sumRows('f32', x, rows, cols, sr, false);
      return { y, sm, mask, d, p, sr, s: cpu.sum('f32', x, n) };
    };
    const one = withThreads(1, run);
    for (const t of [2, 5]) {
      const many = withThreads(t, run);
      for (const key of ['y', 'sm', 'mask', 'd', 'p', 'sr'] as const) expectBits(`${key} on ${t} threads`, many[key], one[key]);
      // The sum's per-thread partials are added in a different grouping: equal to f64 rounding.
      expectClose([many.s], [one.s], { rtol: 1e-12, atol: 1e-12 }, `sum on ${t} threads`);
    }
  });

  // Between jobs a worker spins, then sleeps; the caller does the same waiting for a job's end. Each
  // way of meeting (worker still spinning, worker asleep, caller asleep) must hand over every job.
  it('hands over back-to-back jobs, jobs after the workers fell asleep, and jobs with spinning off', async () => {
    const addon = loadCpuAddon();
    const n = 200_003;
    const x = randomArray('f32', n, 7, -3, 3);
    const gelu = () => {
      const y = new Float32Array(n);
      cpu.geluForward('f32', x, y, n);
      return y;
    };
    const want = withThreads(1, gelu);
    const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const threadsBefore = cpu.getNumThreads();
    try {
      for (const spinUs of [200, 0, 20_000]) {
        addon.setPoolSpin(spinUs);
        cpu.setNumThreads(3);
        for (let i = 0; i < 200; i++) expectBits(`gelu ${i}, spin ${spinUs} us, back to back`, gelu(), want);
        for (let i = 0; i < 3; i++) {
          await pause(spinUs === 20_000 ? 1 : 5);  // 5 ms is past a 200 us spin: the workers sleep when the job comes
          expectBits(`gelu after a pause, spin ${spinUs} us`, gelu(), want);
        }
      }
    } finally {
      addon.setPoolSpin(200);
      cpu.setNumThreads(threadsBefore);
    }
    expect(() => addon.setPoolSpin(1_000_001)).toThrow(/at most 1000000 microseconds/);
  });
});

describe('probeCores', () => {
  it('runs the FMA probe on every pool thread at once and reports the rate per core', () => {
    if (!cpu.availableIsas().includes('avx2')) return expect(cpu.probeCores(0.05).calls).toBe(0);  // no FMA path to probe
    const cores = availableParallelism();
    withThreads(Math.min(2, cores), () => {
      const single = cpu.probePeak(0.2).f32FmaGflops;
      const p = cpu.probeCores(0.1);
      expect(p).toMatchObject({ threads: Math.min(2, cores) });
      expect(p.calls).toBeGreaterThan(0);
      expect(p.meanGflopsPerCore).toBeGreaterThan(0);
      expect(p.bestGflopsPerCore).toBeGreaterThanOrEqual(p.meanGflopsPerCore);
      // Per core, not summed: never above one core's peak by more than the timer's error.
      expect(p.bestGflopsPerCore).toBeLessThan(1.1 * single);
    });
    // Twice as many threads as cores: each core is shared by two of them, so the rate per thread
    // (what the probe reports) is at most about half a core's.
    withThreads(2 * cores, () => {
      const single = cpu.probePeak(0.1).f32FmaGflops;
      expect(cpu.probeCores(0.2).meanGflopsPerCore).toBeLessThan(0.7 * single);
    });
  });

  it('takes 0 to 10 seconds', () => {
    expect(() => cpu.probeCores(0)).toThrow(/probeCores: seconds must be in \(0, 10\], got 0/);
    expect(() => cpu.probeCores(11)).toThrow(/got 11/);
  });
});
