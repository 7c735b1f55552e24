// Kernel benchmarks of the cpu backend, each next to PyTorch measured in the same run
// (bench/torch_anchor.py) when torch is importable:
//   gemm_f32_1024_1t, gemm_bf16_1024_1t  GFLOP/s of C = A B at 1024^3 on one thread (median of reps);
//                                        bf16 is bf16 inputs with f32 accumulation and output.
//   adamw_params_per_s                   fused AdamW over 50M f32 parameters on 2 threads.
// The config of each gemm row also gives the fraction of the f32 FMA peak two ways: from the clock in
// /proc/cpuinfo (2 FMA units x 16 lanes x 2 FLOP per cycle; a VM often reports the base clock, not
// the turbo clock the core runs at) and from a measured peak (independent FMAs on one core, same run).

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { createCpuKernels } from '../src/backends/cpu.js';
import type { Row } from './run.js';

interface TorchAnchor {
  torch: string;
  gemm_f32_gflops: number;
  gemm_bf16_gflops: number;
  adamw_params_per_s: number;
}

/** The PyTorch figures, or the reason there are none. */
function torchAnchor(cfg: Record<string, number>): TorchAnchor | string {
  const script = fileURLToPath(new URL('./torch_anchor.py', import.meta.url));
  for (const python of ['python3', '/usr/bin/python3']) {
    const probe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8', timeout: 60_000 });
    if (probe.status !== 0) continue;
    const run = spawnSync(python, [script, JSON.stringify(cfg)], { encoding: 'utf8', timeout: 900_000 });
    if (run.status !== 0) return `the PyTorch anchor failed: ${(run.stderr || String(run.error)).trim().split('\n').pop()}`;
    return JSON.parse(run.stdout.trim().split('\n').pop()!) as TorchAnchor;
  }
  return 'torch is not importable here (python3 -c "import torch" failed)';
}

/** The clock /proc/cpuinfo reports for core 0, in GHz (null off Linux). */
function cpuGhz(): number | null {
  try {
    const m = /cpu MHz\s*:\s*([\d.]+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    return m ? Number(m[1]) / 1000 : null;
  } catch {
    return null;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

/** Median wall and process-CPU seconds of fn over reps (after one warm-up call). */
function timeMedian(reps: number, fn: () => void): { wall: number; cpu: number } {
  fn();  // warm-up: packing buffers, page faults
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < reps; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    fn();
    wall.push((performance.now() - t0) / 1000);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1e6);
  }
  return { wall: median(wall), cpu: median(cpu) };
}

function filled<T extends Float32Array | Uint16Array>(a: T, seed: number): T {
  let s = seed;
  for (let i = 0; i < a.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = a instanceof Float32Array ? s / 4294967296 - 0.5 : 0x3f00 + (s >>> 24);  // bf16 in [0.5, 1)
  }
  return a;
}

export async function run(opts: { smoke: boolean }): Promise<Row[]> {
  const cpu = createCpuKernels();
  const n = opts.smoke ? 64 : 1024;
  const reps = opts.smoke ? 1 : 7;
  const adamwN = opts.smoke ? 1 << 16 : 50_000_000;
  const adamwSteps = opts.smoke ? 1 : 5;
  const adamwThreads = 2;
  const threadsBefore = cpu.getNumThreads();
  const isa = cpu.cpuInfo().isa;
  const ghz = cpuGhz();
  const peak = ghz === null ? null : ghz * 64;  // 2 FMA units x 16 f32 lanes x 2 FLOP per cycle

  cpu.setNumThreads(1);
  const probe = cpu.probePeak(opts.smoke ? 0.01 : 0.5);
  const gemm = (dtype: 'f32' | 'bf16') => {
    const make = () => (dtype === 'f32' ? new Float32Array(n * n) : new Uint16Array(n * n));
    const a = filled(make(), 1);
    const b = filled(make(), 2);
    const c = new Float32Array(n * n);
    const t = timeMedian(reps, () =>
      cpu.gemm({ dtype, outDtype: 'f32', transA: false, transB: false, batch: 1, m: n, n, k: n, alpha: 1, beta: 0, a, strideA: 0, b, strideB: 0, c, strideC: 0 }));
    return { cpu: (2 * n * n * n) / t.cpu / 1e9, wall: (2 * n * n * n) / t.wall / 1e9 };
  };
  const f32 = gemm('f32');
  const bf16 = gemm('bf16');

  cpu.setNumThreads(adamwThreads);
  const param = filled(new Float32Array(adamwN), 3);
  const grad = filled(new Float32Array(adamwN), 4);
  const expAvg = new Float32Array(adamwN);
  const expAvgSq = new Float32Array(adamwN);
  let step = 0;
  const adamSecs = timeMedian(adamwSteps, () =>
    cpu.adamw({ param, grad, gradDtype: 'f32', expAvg, expAvgSq, n: adamwN, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: ++step, biasCorrection: true, decoupled: true, gradScale: 1 }));
  const adamw = adamwN / adamSecs.wall;
  cpu.setNumThreads(threadsBefore);

  const torch = torchAnchor({ n, reps, adamw_params: adamwN, adamw_steps: adamwSteps, threads: adamwThreads });
  const anchored = typeof torch === 'string' ? null : torch;
  const why = typeof torch === 'string' ? torch : null;
  const row = (metric: string, value: number, unit: string, anchorName: string, anchorValue: number | null, config: Record<string, unknown>): Row => ({
    metric, value, unit,
    anchor: anchorValue === null ? null : anchorName,
    anchorValue,
    ratio: anchorValue === null ? null : value / anchorValue,
    config: { ...config, isa, ...(why ? { anchorMissing: why } : { torch: anchored!.torch }) },
  });
  // One-thread rows use CPU time (this machine is shared: wall time also counts time the thread
  // waited for a core); the wall-clock figure is kept in the config. The anchor is timed the same way.
  const gemmConfig = (dtype: string, g: { cpu: number; wall: number }) => ({
    m: n, n, k: n, dtype, threads: 1, reps, statistic: 'median of process CPU time', wallClockGflops: g.wall,
    cpuGhz: ghz, f32FmaPeakGflops: peak, fractionOfF32FmaPeak: peak === null ? null : g.cpu / peak,
    measuredF32FmaPeakGflops: probe.f32FmaGflops, fractionOfMeasuredF32FmaPeak: probe.f32FmaGflops > 0 ? g.cpu / probe.f32FmaGflops : null,
    measuredBf16DotPeakGflops: probe.bf16DotGflops,
  });
  return [
    row('gemm_f32_1024_1t', f32.cpu, 'GFLOP/s', 'torch.matmul f32, 1 thread, same run', anchored?.gemm_f32_gflops ?? null, gemmConfig('f32', f32)),
    row('gemm_bf16_1024_1t', bf16.cpu, 'GFLOP/s', 'torch.matmul bf16, 1 thread, same run', anchored?.gemm_bf16_gflops ?? null, gemmConfig('bf16 in, f32 accumulate/out', bf16)),
    row('adamw_params_per_s', adamw, 'params/s', 'torch.optim.AdamW, 2 threads, same run', anchored?.adamw_params_per_s ?? null,
      { params: adamwN, threads: adamwThreads, steps: adamwSteps, statistic: 'median of wall time', gradDtype: 'f32' }),
  ];
}
