// Kernel benchmarks of the cpu backend, each next to PyTorch measured in the same run
// (bench/torch_anchor.py) when torch is importable:
//   gemm_f32_1024_1t, gemm_bf16_1024_1t  GFLOP/s of C = A B at 1024^3 on one thread (median of reps,
//                                        in rounds alternating with the anchor's, 9 for f32 and 25
//                                        for bf16; the median round);
//                                        bf16 is bf16 inputs with f32 accumulation and a bf16 output,
//                                        as torch.matmul's (its config also gives ours with an f32
//                                        output, timed in the same rounds). The f32 anchor is
//                                        OpenBLAS through numpy (installed when missing and root),
//                                        torch.matmul's figure in the config; bf16's is oneDNN (torch).
//   adamw_params_per_s                   fused AdamW over 50M f32 parameters on 2 threads, against
//                                        torch.optim.AdamW(foreach=True) (the default loop in the config); its config
//                                        also gives the bytes it moves per second and their fraction
//                                        of the streaming bandwidth measured on 2 threads in the same run
//                                        (streamBandwidth below).
// Every row's anchor is measured twice: alternating with ours (the row's anchorValue) and then alone
// for as many rounds, ours idle (config.anchorAlone); the two further apart than ANCHOR_DRIFT (15%)
// mark the row noisy, as a load that came and went during the run would (bench-kit anchorDrift). A
// GEMM round also runs the FMA probe on its CPU right after ours (config.rounds[].coreGflops): the
// host's slow phases, which the anchor's drift misses when they hit ours and the anchor alike, mark
// the row noisy once a fifth of its rounds (at least 2) saw the core taken (bench-kit contendedRounds).
// The config of each gemm row also gives the fraction of the f32 FMA peak two ways: from the clock in
// /proc/cpuinfo (2 FMA units x 16 lanes x 2 FLOP per cycle; a VM often reports the base clock, not
// the turbo clock the core runs at) and from a measured peak (independent FMAs on one core, same run).

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { createCpuKernels, type CpuKernels } from '../src/backends/cpu.js';
import { anchorDrift, CONTENDED_FRACTION, contendedRounds, debianLib, median, preloadEnv, tcmallocPreload, type Row } from '@ds-internal/bench-kit';
import { TorchWorker } from './torch-worker.js';

interface TorchAnchor {
  torch: string;
  gemm_f32_gflops?: number;
  gemm_bf16_gflops?: number;
  numpy_f32_gflops?: number;
  numpy_blas?: string;
  numpy?: string;
  adamw_params_per_s?: number;
  adamw_foreach_params_per_s?: number;
  allocator?: string;
}

/**
 * The f32 GEMM anchor is OpenBLAS through numpy (the strongest f32 GEMM that runs here; Debian's
 * torch has a generic BLAS). Debian's numpy runs on whatever libblas.so.3 the alternatives system
 * points at; installing libopenblas0-pthread makes that OpenBLAS. Installed here when missing and
 * this process may (root with apt-get); otherwise the row says why its anchor is not OpenBLAS.
 */
function ensureOpenBlas(): string | null {
  const got = debianLib(/^libopenblas/, 'libopenblas0-pthread', 'for the OpenBLAS f32 GEMM anchor');
  return typeof got === 'string' ? got : null;
}

/** Asks the PyTorch worker for one request's figures; a string says why there are none. */
async function torchAnchor(worker: TorchWorker | string, req: Record<string, unknown>): Promise<TorchAnchor | string> {
  if (typeof worker === 'string') return worker;
  try {
    return await worker.request<TorchAnchor>(req, 900_000);
  } catch (err) {
    return `the PyTorch anchor failed: ${(err as Error).message}`;
  }
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

/**
 * The CPUs this process may run on, and a way to pin all its threads to one of them and back, with
 * taskset (util-linux); null where there is no taskset. The virtual CPUs of a shared machine do not
 * run at the same speed (here one was 10% slower than the other, steadily, whatever ran on it), so a
 * one-thread row and its anchor must run on the same CPU, or the ratio measures the CPUs.
 */
function affinity(): { cpus: number[]; pin(cpu: number | null): void } | null {
  const list = spawnSync('taskset', ['-p', '-c', String(process.pid)], { encoding: 'utf8' });
  const m = list.status === 0 ? /list:\s*([\d,\-]+)/.exec(list.stdout) : null;
  if (!m) return null;
  const original = m[1]!;
  const cpus = original.split(',').flatMap((part) => {
    const [lo, hi] = part.split('-').map(Number);
    return Array.from({ length: (hi ?? lo!) - lo! + 1 }, (_, i) => lo! + i);
  });
  return {
    cpus,
    pin(cpu) {
      const r = spawnSync('taskset', ['-a', '-p', '-c', cpu === null ? original : String(cpu), String(process.pid)], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`taskset could not pin the bench to CPU ${cpu ?? original}: ${r.stderr.trim()}`);
    },
  };
}

const pct = (x: number): string => (Number.isFinite(x) ? `${(100 * x).toFixed(0)}%` : '-');

/** Median wall and process-CPU seconds of fn over reps (after one warm-up call), and the fastest wall time. */
function timeMedian(reps: number, fn: () => void): { wall: number; cpu: number; bestWall: number } {
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
  return { wall: median(wall), cpu: median(cpu), bestWall: Math.min(...wall) };
}

function filled<T extends Float32Array | Uint16Array>(a: T, seed: number): T {
  let s = seed;
  for (let i = 0; i < a.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = a instanceof Float32Array ? s / 4294967296 - 0.5 : 0x3f00 + (s >>> 24);  // bf16 in [0.5, 1)
  }
  return a;
}

/** AdamW's memory traffic per parameter: 4 f32 arrays read, 3 written (each written array is also read, so no write-allocate). */
const ADAMW_BYTES_PER_PARAM = 7 * 4;

/** Seconds of the FMA probe after ours in each GEMM round (about 25 calls of 2 ms). */
const CORE_PROBE_S = 0.05;
/** Contended GEMM rounds that mark the row noisy: a fifth of them, at least 2. */
const contendedLimit = (rounds: number): number => Math.max(2, Math.ceil(rounds / 5));

/**
 * Streaming bandwidth on the current thread count over buffers far larger than the caches, best of
 * reps: copy (8 bytes per f32 element: memmove, whose large-size path uses non-temporal stores) and
 * axpy y += a x (12 bytes: read x and y, write y). Reported beside AdamW for reference only: AdamW
 * is judged against the AdamW-shaped stream timed alternately with it (see run), which has exactly its
 * seven streams, whereas a core's bandwidth depends on how many streams it has in flight and on
 * their read/write mix (copy and axpy came out both above and below it across runs).
 */
function streamBandwidth(cpu: CpuKernels, x: Float32Array, y: Float32Array, n: number, reps: number) {
  const copy = timeMedian(reps, () => cpu.copy(x, y, n));
  const axpy = timeMedian(reps, () => cpu.axpy('f32', x, 'f32', y, n, 1e-9));
  return { copyGbPerS: (8 * n) / copy.bestWall / 1e9, axpyGbPerS: (12 * n) / axpy.bestWall / 1e9 };
}

export async function run(opts: { smoke: boolean }): Promise<Row[]> {
  const cpu = createCpuKernels();
  const n = opts.smoke ? 64 : 1024;
  const reps = opts.smoke ? 1 : 7;
  const gemmRounds = { f32: opts.smoke ? 1 : 9, bf16: opts.smoke ? 1 : 25 };
  const adamwN = opts.smoke ? 1 << 16 : 50_000_000;
  const adamwSteps = opts.smoke ? 1 : 7;
  const adamwThreads = 2;
  const threadsBefore = cpu.getNumThreads();
  const isa = cpu.cpuInfo().isa;
  const ghz = cpuGhz();
  const peak = ghz === null ? null : ghz * 64;  // 2 FMA units x 16 f32 lanes x 2 FLOP per cycle

  cpu.setNumThreads(1);
  const probe = cpu.probePeak(opts.smoke ? 0.01 : 0.5);
  const gemm = (dtype: 'f32' | 'bf16', outDtype: 'f32' | 'bf16' = dtype) => {
    const make = () => (dtype === 'f32' ? new Float32Array(n * n) : new Uint16Array(n * n));
    const a = filled(make(), 1);
    const b = filled(make(), 2);
    const c = outDtype === 'f32' ? new Float32Array(n * n) : new Uint16Array(n * n);
    return () => {
      const t = timeMedian(reps, () =>
        cpu.gemm({ dtype, outDtype, transA: false, transB: false, batch: 1, m: n, n, k: n, alpha: 1, beta: 0, a, strideA: 0, b, strideB: 0, c, strideC: 0 }));
      return { cpu: (2 * n * n * n) / t.cpu / 1e9, wall: (2 * n * n * n) / t.wall / 1e9 };
    };
  };
  // The machine is shared and its load drifts over a run, so each GEMM row alternates with its
  // anchor: a round times ours and then PyTorch's on the same dtype right after (one worker process
  // for the run), both pinned to the same CPU, the rounds taking the CPUs in turn; a row reports the
  // median over rounds of each side, and its config keeps every round and how many ours won. bf16
  // rounds are short (~0.1 s), so there are more of them: the figure moves less with bursts of load
  // from other tenants.
  type Round = { cpu: number | null; ours: { cpu: number; wall: number }; coreGflops: number | null; f32Out: number | null; torch: number | null; numpy: number | null; blas: string | null; why: string | null; version: string | null };
  const aff = affinity();
  const rounds: Record<'f32' | 'bf16', Round[]> = { f32: [], bf16: [] };
  // Then the row's anchor alone, as many rounds on the same CPUs in turn with ours idle: a load that
  // came and went during the alternating rounds shows as a gap between the two medians (anchorDrift),
  // and then the row is marked noisy rather than reported.
  const alone: Record<'f32' | 'bf16', (number | null)[]> = { f32: [], bf16: [] };
  const noOpenBlas = ensureOpenBlas();
  // One BLAS thread for numpy's one-thread row; the env's OpenBLAS core-type overrides (set on some
  // processors for old OpenBLAS builds) slow a current one, so the worker runs without them.
  // TCMalloc preloaded, as PyTorch's CPU launcher does (bench-kit tcmallocPreload): foreach AdamW's
  // temporaries (400 MB a step at 50M parameters) then stop being faulted in afresh every step.
  const malloc = opts.smoke ? 'smoke run' : tcmallocPreload();
  const worker = TorchWorker.start(fileURLToPath(new URL('./torch_anchor.py', import.meta.url)),
    { OPENBLAS_NUM_THREADS: '1', ...preloadEnv(malloc) },
    ['OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE']);
  let torchAllocator: string | null = null;
  try {
    for (const dtype of ['f32', 'bf16'] as const) {
      const ours = gemm(dtype);
      const oursF32Out = dtype === 'bf16' ? gemm('bf16', 'f32') : null;  // for the config only
      for (let r = 0; r < gemmRounds[dtype]; r++) {
        cpu.setNumThreads(1);
        const on = aff ? aff.cpus[r % aff.cpus.length]! : null;
        aff?.pin(on);
        const f32Out = oursF32Out ? oursF32Out().cpu : null;
        const mine = ours();
        const coreGflops = opts.smoke ? null : cpu.probeCores(CORE_PROBE_S).meanGflopsPerCore;  // still pinned: the round's CPU
        aff?.pin(null);
        const t = await torchAnchor(worker, { gemm: { n, reps, dtypes: [dtype], cpu: on } });
        const theirs = typeof t === 'string' ? undefined : t[dtype === 'f32' ? 'gemm_f32_gflops' : 'gemm_bf16_gflops'];
        rounds[dtype].push({ cpu: on, ours: mine, coreGflops, f32Out, torch: theirs ?? null, why: typeof t === 'string' ? t : theirs === undefined ? 'no anchor figure' : null,
          numpy: typeof t === 'string' ? null : t.numpy_f32_gflops ?? null, blas: typeof t === 'string' ? null : t.numpy_blas ?? null,
          version: typeof t === 'string' ? null : t.torch });
      }
      const numpyAnchor = dtype === 'f32' && rounds.f32.some((r) => r.blas !== null && /openblas/i.test(r.blas) && r.numpy !== null);
      for (let r = 0; r < gemmRounds[dtype] && typeof worker !== 'string'; r++) {
        const on = aff ? aff.cpus[r % aff.cpus.length]! : null;
        const t = await torchAnchor(worker, { gemm: { n, reps, dtypes: [dtype === 'bf16' ? 'bf16' : numpyAnchor ? 'numpy' : 'f32'], cpu: on } });
        alone[dtype].push(typeof t === 'string' ? null : (dtype === 'bf16' ? t.gemm_bf16_gflops : numpyAnchor ? t.numpy_f32_gflops : t.gemm_f32_gflops) ?? null);
      }
    }
  } catch (err) {
    if (typeof worker !== 'string') worker.close();
    aff?.pin(null);
    throw err;
  }
  const medianOf = (xs: (number | null)[]): number | null => {
    const got = xs.filter((x): x is number => x !== null);
    return got.length ? median(got) : null;
  };
  const summary = (dtype: 'f32' | 'bf16') => {
    const rs = rounds[dtype];
    return {
      ours: { cpu: medianOf(rs.map((r) => r.ours.cpu))!, wall: medianOf(rs.map((r) => r.ours.wall))! },
      torch: medianOf(rs.map((r) => r.torch)),
      numpy: medianOf(rs.map((r) => r.numpy)),
      blas: rs.find((r) => r.blas !== null)?.blas ?? null,
      f32Out: medianOf(rs.map((r) => r.f32Out)),
      why: rs.find((r) => r.why !== null)?.why ?? null,
      alone: medianOf(alone[dtype]),
      perRound: rs.map((r) => ({ cpu: r.cpu, ours: r.ours.cpu, coreGflops: r.coreGflops, torch: r.torch, ratio: r.torch ? r.ours.cpu / r.torch : null })),
      contended: contendedRounds(rs.map((r) => r.coreGflops), probe.f32FmaGflops, contendedLimit(rs.length), 'its CPU'),
    };
  };
  const f32 = summary('f32');
  const bf16 = summary('bf16');

  cpu.setNumThreads(adamwThreads);
  const param = filled(new Float32Array(adamwN), 3);
  const grad = filled(new Float32Array(adamwN), 4);
  const expAvg = new Float32Array(adamwN);
  const expAvgSq = new Float32Array(adamwN);
  // AdamW alternates with the AdamW-shaped stream (p += 0, m += 0, v += 0: the same 28 bytes per
  // parameter without the math), so both see the same load; the fraction is the ratio of the medians.
  // Each round then times one step of PyTorch's foreach AdamW (its optimizer kept by the worker), so
  // that the anchor sees the same load as ours; afterwards it runs as many single steps alone, each
  // after a pause as long as the one ours took in the run (a step after a pause was measured up to
  // 15% slower than back to back steps: the alone figure must be timed the same way), for the drift
  // check; the single-tensor loop is timed last, for the config.
  const zeroGrad = new Float32Array(adamwN);
  let step = 0;
  const adamwTimes: number[] = [];
  const streamTimes: number[] = [];
  const timed = (fn: () => void, into: number[]) => {
    const t0 = performance.now();
    fn();
    into.push((performance.now() - t0) / 1000);
  };
  const adamwStep = () => cpu.adamw({ param, grad, gradDtype: 'f32', expAvg, expAvgSq, n: adamwN, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: ++step, biasCorrection: true, decoupled: true, gradScale: 1 });
  const streamStep = () => cpu.streamProbe(param, zeroGrad, expAvg, expAvgSq, adamwN);
  adamwStep();  // warm-up: page faults
  streamStep();
  const foreachReq = (steps: number) => torchAnchor(worker, { adamw: { params: adamwN, steps, threads: adamwThreads, variants: ['foreach'] } });
  const foreachInRun: number[] = [];
  let torchWhy: string | null = null;
  let torchVersionAdamW: string | null = null;
  const gaps: number[] = [];  // ms from the end of one PyTorch step's request to the start of the next
  let lastTorchEnd: number | null = null;
  for (let i = 0; i < adamwSteps; i++) {
    timed(adamwStep, adamwTimes);
    timed(streamStep, streamTimes);
    if (torchWhy !== null) continue;
    // Our kernel threads spin for a few milliseconds after a kernel (DS_POOL_SPIN_US) before they
    // sleep: PyTorch's step starts once they have.
    if (!opts.smoke) await sleep(20);
    if (lastTorchEnd !== null) gaps.push(performance.now() - lastTorchEnd);
    const t = await foreachReq(1);
    lastTorchEnd = performance.now();
    if (typeof t === 'string' || t.adamw_foreach_params_per_s === undefined) {
      torchWhy = typeof t === 'string' ? t : 'no foreach AdamW figure';
      continue;
    }
    foreachInRun.push(t.adamw_foreach_params_per_s);
    torchVersionAdamW = t.torch;
    torchAllocator = t.allocator ?? torchAllocator;
    // PyTorch's OpenMP threads keep the cores for a while after a request returns (gpt.bench.ts).
    if (!opts.smoke) await sleep(200);
  }
  const adamw = adamwN / median(adamwTimes);
  const adamwGbs = (adamw * ADAMW_BYTES_PER_PARAM) / 1e9;
  const streamGbs = (adamwN * ADAMW_BYTES_PER_PARAM) / median(streamTimes) / 1e9;
  const bandwidth = streamBandwidth(cpu, grad, zeroGrad, adamwN, reps);
  cpu.setNumThreads(threadsBefore);

  let foreachAlone: number | null = null;
  let single: number | null = null;
  const aloneSteps: number[] = [];
  if (torchWhy === null) {
    const gap = gaps.length ? median(gaps) : 0;
    for (let i = 0; i < adamwSteps; i++) {
      await sleep(gap);
      const t = await foreachReq(1);
      if (typeof t !== 'string' && t.adamw_foreach_params_per_s !== undefined) aloneSteps.push(t.adamw_foreach_params_per_s);
    }
    foreachAlone = aloneSteps.length ? median(aloneSteps) : null;
    const u = await torchAnchor(worker, { adamw: { params: adamwN, steps: adamwSteps, threads: adamwThreads, variants: ['single'] } });
    single = typeof u === 'string' ? null : u.adamw_params_per_s ?? null;
  }
  if (typeof worker !== 'string') worker.close();
  const torchVersion = torchVersionAdamW ?? [...rounds.f32, ...rounds.bf16].find((r) => r.version !== null)?.version;
  const row = (metric: string, value: number, unit: string, anchorName: string, anchorValue: number | null, why: string | null,
    config: Record<string, unknown>): Row => ({
    metric, value, unit,
    anchor: anchorValue === null ? null : anchorName,
    anchorValue,
    ratio: anchorValue === null ? null : value / anchorValue,
    config: { ...config, isa, ...(anchorValue === null ? { anchorMissing: why ?? 'no anchor figure' } : { torch: torchVersion, torchAllocator, ...(typeof malloc === 'string' ? { torchAllocatorNote: `no TCMalloc: ${malloc}` } : {}) }) },
  });
  // One-thread rows use CPU time (this machine is shared: wall time also counts time the thread
  // waited for a core); the wall-clock figure is kept in the config. The anchor is timed the same way.
  const gemmConfig = (dtype: string, g: { cpu: number; wall: number }, rounds: ReturnType<typeof summary>['perRound']) => ({
    m: n, n, k: n, dtype, threads: 1, reps, statistic: `median over ${rounds.length} rounds (ours, then PyTorch) of the median process CPU time of ${reps} reps`,
    pinning: aff ? `each round pins ours and PyTorch to the same CPU, CPUs ${aff.cpus.join(', ')} in turn` : 'none (no taskset): ours and PyTorch may have run on different CPUs',
    rounds, roundsAhead: `${rounds.filter((r) => r.ratio !== null && r.ratio > 1).length} of ${rounds.length}`,
    medianRoundRatio: rounds.every((r) => r.ratio !== null) ? median(rounds.map((r) => r.ratio!)) : null,
    wallClockGflops: g.wall,
    cpuGhz: ghz, f32FmaPeakGflops: peak, fractionOfF32FmaPeak: peak === null ? null : g.cpu / peak,
    measuredF32FmaPeakGflops: probe.f32FmaGflops, fractionOfMeasuredF32FmaPeak: probe.f32FmaGflops > 0 ? g.cpu / probe.f32FmaGflops : null,
    measuredBf16DotPeakGflops: probe.bf16DotGflops,
    coreProbe: `after ours in each round, ${CORE_PROBE_S} s of FMAs on the round's CPU (mean, wall time); a round below ${100 * CONTENDED_FRACTION}% of the measured one-core f32 peak counts as contended, ${contendedLimit(rounds.length)} or more mark the row noisy`,
    note: dtype === 'f32'
      ? `${pct(g.cpu / probe.f32FmaGflops)} of measured f32 FMA peak (${probe.f32FmaGflops.toFixed(0)} GFLOP/s)`
      : `${pct(g.cpu / probe.bf16DotGflops)} of measured bf16 dot peak (${probe.bf16DotGflops.toFixed(0)} GFLOP/s)`,
  });
  // f32: OpenBLAS (numpy) when numpy runs on it, else torch.matmul with the reason; both in the config.
  const openBlas = f32.blas !== null && /openblas/i.test(f32.blas) && f32.numpy !== null;
  const f32Anchor = openBlas ? { name: `OpenBLAS (numpy.matmul f32, ${f32.blas}), 1 thread, same run`, value: f32.numpy } : { name: 'torch.matmul f32, 1 thread, same run', value: f32.torch };
  const f32Rounds = f32.perRound.map((r, i) => ({ ...r, numpy: rounds.f32[i]!.numpy, ratio: openBlas ? (rounds.f32[i]!.numpy ? r.ours / rounds.f32[i]!.numpy! : null) : r.ratio }));
  const foreach = foreachInRun.length ? median(foreachInRun) : null;
  // The anchor alone against the anchor in the run: the figures, and a noisy mark past ANCHOR_DRIFT
  // (or for `contended`, the sentence of a GEMM row's contended rounds).
  const drift = (inRun: number | null, aloneValue: number | null, what: string, unit: string, contended: string | null = null) => {
    const d = anchorDrift(inRun, aloneValue, what, unit);
    const reasons = [d.reason, contended].filter((r): r is string => r !== null);
    return { anchorAlone: aloneValue, anchorDrift: d.drift, ...(reasons.length ? { noisy: true, noisyReason: reasons.join('; ') } : {}) };
  };
  return [
    row('gemm_f32_1024_1t', f32.ours.cpu, 'GFLOP/s', f32Anchor.name, f32Anchor.value, f32.why, {
      ...gemmConfig('f32', f32.ours, f32Rounds),
      torchMatmulGflops: f32.torch,
      numpyGflops: f32.numpy,
      numpyBlas: f32.blas,
      ...(openBlas ? {} : { anchorNote: `not OpenBLAS: ${noOpenBlas ?? `numpy runs on ${f32.blas ?? 'an unknown BLAS'}`}; the anchor is torch.matmul` }),
      ...drift(f32Anchor.value, f32.alone, openBlas ? 'OpenBLAS' : 'torch.matmul f32', 'GFLOP/s', f32.contended.reason),
    }),
    row('gemm_bf16_1024_1t', bf16.ours.cpu, 'GFLOP/s', 'torch.matmul bf16 (bf16 out), 1 thread, same run', bf16.torch, bf16.why, {
      ...gemmConfig('bf16 in, f32 accumulate, bf16 out (as the anchor)', bf16.ours, bf16.perRound),
      f32OutGflops: bf16.f32Out,
      f32OutNote: 'the same product with an f32 C (4 MiB written instead of 2), timed in the same rounds just before',
      ...drift(bf16.torch, bf16.alone, 'torch.matmul bf16', 'GFLOP/s', bf16.contended.reason),
    }),
    row('adamw_params_per_s', adamw, 'params/s', `torch.optim.AdamW(foreach=True), 2 threads, ${torchAllocator === 'tcmalloc' ? 'TCMalloc preloaded, ' : ''}same run`,
      foreach, torchWhy, {
      torchSingleTensorAdamWParamsPerS: single,
      params: adamwN, threads: adamwThreads, steps: adamwSteps,
      statistic: `median wall time over ${adamwSteps} rounds of one step each: ours, the AdamW-shaped stream, then PyTorch's foreach step`, gradDtype: 'f32',
      ...drift(foreach, foreachAlone, 'foreach AdamW', 'params/s'),
      rounds: adamwTimes.map((t, i) => ({ ours: adamwN / t, torchForeach: foreachInRun[i] ?? null, torchForeachAlone: aloneSteps[i] ?? null })),
      bytesPerParam: ADAMW_BYTES_PER_PARAM, bytesAssumed: 'f32 param, grad, exp_avg, exp_avg_sq read; param, exp_avg, exp_avg_sq written (no bf16 copy in this row)',
      gbPerS: adamwGbs,
      adamwShapedStreamGbPerS: streamGbs,
      ...bandwidth,
      bandwidthStatistic: 'AdamW and the AdamW-shaped stream alternate, median of each; copy and axpy: fastest of reps',
      fractionOfMeasuredBandwidth: adamwGbs / streamGbs,
      note: `${adamwGbs.toFixed(1)} GB/s at ${ADAMW_BYTES_PER_PARAM} B/param = ${pct(adamwGbs / streamGbs)} of the AdamW-shaped stream (${streamGbs.toFixed(1)} GB/s; copy ${bandwidth.copyGbPerS.toFixed(1)}, axpy ${bandwidth.axpyGbPerS.toFixed(1)}), 2 threads`,
    }),
  ];
}
