// gpt_train_tokens_per_s[_<shape>]: GPT-2 trained with bf16 autocast over f32 parameters:
// forward + backward + AdamW (the table's fused kernel) on 2 threads, at two shapes so the speed is
// not tuned to one size:
//   gpt_train_tokens_per_s               vocab 8192, seq 256, d 256, 4 heads, 4 layers, batch 8
//   gpt_train_tokens_per_s_d384_l6_s512  vocab 8192, seq 512, d 384, 6 heads, 6 layers, batch 4
// Anchor: the same model and step in PyTorch with bf16 autocast, measured in the same run by
// bench/gpt_torch.py (one worker process for both shapes) when torch is importable; rounds of our steps and
// of PyTorch's alternate, and each side reports the median of its rounds. `--smoke` runs one step of a tiny model per row.
// On a CPU without AVX-512 (AVX2 only) PyTorch 1.13's bf16 has no fast kernels (oneDNN falls back to
// reference code: over a minute per step of the first shape on an AVX2 Zen 3), so there the anchor is
// PyTorch in f32, its fastest mode on such a CPU, and one bf16-autocast step is timed with a time
// limit and reported beside it (config.torchBf16AutocastStepS) so that the gap is on record.

import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { CpuKernels } from '../src/backends/cpu.js';
import { randint } from '../src/create.js';
import { GPT, gptTrainFlopsPerToken } from '../src/nn/gpt.js';
import { gptTrainer } from '../src/nn/gpt-trainer.js';
import { getRuntime } from '../src/runtime.js';
import { anchorDrift, CONTENDED_FRACTION, contendedRounds, median, preloadEnv, tcmallocPreload, type Row } from '@ds-internal/bench-kit';
import { TorchWorker } from './torch-worker.js';

interface Shape {
  metric: string;
  model: { vocabSize: number; blockSize: number; nLayer: number; nHead: number; nEmbd: number };
  batch: number;
  seq: number;
}

const SHAPES: Shape[] = [
  { metric: 'gpt_train_tokens_per_s', model: { vocabSize: 8192, blockSize: 256, nLayer: 4, nHead: 4, nEmbd: 256 }, batch: 8, seq: 256 },
  { metric: 'gpt_train_tokens_per_s_d384_l6_s512', model: { vocabSize: 8192, blockSize: 512, nLayer: 6, nHead: 6, nEmbd: 384 }, batch: 4, seq: 512 },
];
/** What `--smoke` runs in place of each shape: one step of a model small enough for CI. */
const SMOKE_MODEL = { vocabSize: 64, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32 };
const THREADS = 2;

const ROUNDS = 7;
const STEPS_PER_ROUND = 2;
/** The most one PyTorch bf16-autocast step may take where it is only timed for the record (AVX2-only CPUs). */
const BF16_PROBE_LIMIT_S = 120;

/** PyTorch's precision for the anchor: bf16 autocast where the CPU has AVX-512 (oneDNN has bf16 kernels for it), else f32. */
function anchorPrecision(kernels: { availableIsas?(): string[] }): { precision: 'bf16' | 'f32'; why: string } {
  if (!kernels.availableIsas) return { precision: 'bf16', why: 'the kernels do not say which ISAs the CPU has: bf16 autocast assumed' };
  return kernels.availableIsas().includes('avx512')
    ? { precision: 'bf16', why: 'the CPU has AVX-512: PyTorch bf16 autocast (oneDNN bf16 kernels)' }
    : { precision: 'f32', why: 'the CPU has no AVX-512, where PyTorch 1.13 bf16 runs on reference kernels: the anchor is PyTorch f32, its fastest mode here' };
}

/** TCMalloc for the PyTorch workers (bench-kit tcmallocPreload), or why they run on glibc's malloc. */
type Malloc = { path: string } | string;

/** A PyTorch worker's environment: its thread count, and TCMalloc preloaded unless `glibc`. */
function torchEnv(malloc: Malloc, glibc = false): NodeJS.ProcessEnv {
  return { OMP_NUM_THREADS: String(THREADS), ...(glibc ? {} : preloadEnv(malloc)) };
}

const TORCH_SCRIPT = fileURLToPath(new URL('./gpt_torch.py', import.meta.url));

export async function run(opts: { smoke: boolean }): Promise<Row[]> {
  const rt = getRuntime();
  const kernels = rt.kernels('cpu');
  const threadsBefore = kernels.getNumThreads();
  kernels.setNumThreads(THREADS);
  // PyTorch runs as its own CPU launcher runs it (torch.backends.xeon.run_cpu): TCMalloc preloaded.
  // A smoke run's figures mean nothing, so it skips the (slow) PyTorch anchor.
  const malloc: Malloc = opts.smoke ? 'smoke run' : tcmallocPreload();
  const worker = opts.smoke ? 'smoke run: the PyTorch anchor is measured only in full runs' : TorchWorker.start(TORCH_SCRIPT, torchEnv(malloc));
  // The peak of one core for MFU, measured now (not derived from the nominal clock): the bf16 dot
  // peak where the CPU has a bf16 dot path (AVX512-BF16, AMX); else bf16 math runs on f32 FMAs
  // after conversion, so the f32 FMA peak is the ceiling (AVX2-only CPUs).
  const probe = 'probePeak' in kernels ? (kernels as CpuKernels).probePeak(opts.smoke ? 0.01 : 0.5) : null;
  const peak: Peak | null = !probe ? null : probe.bf16DotGflops > 0 ? { perCore: probe.bf16DotGflops, kind: 'bf16 dot', f32PerCore: probe.f32FmaGflops } : probe.f32FmaGflops > 0 ? { perCore: probe.f32FmaGflops, kind: 'f32 FMA (no bf16 dot path on this CPU)', f32PerCore: probe.f32FmaGflops } : null;
  const coresProbe = 'probeCores' in kernels ? () => (kernels as CpuKernels).probeCores(CORES_PROBE_S).meanGflopsPerCore : null;
  const anchor = anchorPrecision(kernels as Partial<CpuKernels>);
  try {
    const rows: Row[] = [];
    for (const shape of SHAPES) rows.push(await measure(opts.smoke ? { ...shape, model: SMOKE_MODEL, batch: 2, seq: SMOKE_MODEL.blockSize } : shape, opts, kernels.name, worker, peak, anchor, coresProbe, malloc));
    return rows;
  } finally {
    if (typeof worker !== 'string') worker.close();
    kernels.setNumThreads(threadsBefore);
  }
}

/** One shape; `worker` is the PyTorch worker (each shape sends it a fresh setup), or why there is none. */

/**
 * After each round the bench runs the FMA probe on both cores at once for this long (probeCores). On a
 * VM the hypervisor can take a core for a few hundred milliseconds at a time without the guest's load
 * average or steal time showing it (measured on a Firecracker VM: both cores' FMA rate fell to 50-75%
 * of the single-core peak in 2 of 12 such probes, and a 2-thread GEMM to 45-60% in between).
 */
const CORES_PROBE_S = 0.1;
/** How long a round waits after PyTorch's before ours starts (its threads let go of the cores). */
const TORCH_SETTLE_MS = 200;
/** This many rounds (or more) whose probe saw the cores taken mark a row noisy. */
const CONTENDED_ROUNDS = 2;

/** One core's measured peak (GFLOP/s) and which instructions it was measured on. */
interface Peak {
  perCore: number;
  kind: string;
  /** One core's f32 FMA peak, what probeCores is compared against. */
  f32PerCore: number;
}

/** One PyTorch bf16-autocast step (no warm-up) in seconds, in a worker of its own that is killed past the limit; or why there is no figure. */
async function timeTorchBf16Step(cfg: Record<string, unknown>, malloc: Malloc): Promise<number | string> {
  const probe = TorchWorker.start(TORCH_SCRIPT, torchEnv(malloc));
  if (typeof probe === 'string') return probe;
  try {
    await probe.request({ setup: { ...cfg, precision: 'bf16' } });
    return (await probe.request<{ seconds: number }>({ steps: 1 }, BF16_PROBE_LIMIT_S * 1000)).seconds;
  } catch (err) {
    return `not measured: ${(err as Error).message} (one step, limit ${BF16_PROBE_LIMIT_S} s)`;
  } finally {
    probe.close();
  }
}

/**
 * PyTorch on glibc's malloc (its default without the launcher), timed alone for the record beside
 * the TCMalloc anchor: tokens/s (median of `rounds` rounds after a warm-up), or why there is none.
 */
async function timeTorchGlibc(cfg: Record<string, unknown>, malloc: Malloc, rounds: number, steps: number, tokens: number): Promise<number | string> {
  const w = TorchWorker.start(TORCH_SCRIPT, torchEnv(malloc, true));
  if (typeof w === 'string') return w;
  try {
    await w.request({ setup: cfg });
    await w.request({ steps: 1 });
    const got: number[] = [];
    for (let r = 0; r < rounds; r++) got.push(tokens / (await w.request<{ seconds: number }>({ steps })).seconds);
    return median(got);
  } catch (err) {
    return `not measured: ${(err as Error).message}`;
  } finally {
    w.close();
  }
}

async function measure(shape: Shape, opts: { smoke: boolean }, kernelsName: string, worker: TorchWorker | string, peak: Peak | null, anchor: { precision: 'bf16' | 'f32'; why: string }, coresProbe: (() => number) | null, malloc: Malloc): Promise<Row> {
  const { model, batch, seq } = shape;
  const warmup = opts.smoke ? 0 : 1;
  const rounds = opts.smoke ? 1 : ROUNDS;
  const steps = opts.smoke ? 1 : STEPS_PER_ROUND;
  const rt = getRuntime();
  const cfg = { ...model, batch, seq, threads: THREADS, warmup, steps, precision: anchor.precision };

  const gpt = new GPT({ ...model, seed: 0 });
  const ids = randint([batch, seq], model.vocabSize, { seed: 1 }).keep();
  const targets = randint([batch, seq], model.vocabSize, { seed: 2 }).keep();
  const trainer = gptTrainer(gpt, ids, targets);
  const step = (): number => trainer.step();

  let anchorMissing: string | null = typeof worker === 'string' ? worker : null;
  let torchVersion: string | undefined;
  let torchAllocator: string | null = null;
  const perRound: { ours: number; torch: number | null; coresGflopsPerCore: number | null }[] = [];
  let lastLoss = NaN;
  const tokens = batch * seq * steps;
  if (typeof worker !== 'string') {
    try {
      const ready = await worker.request<{ torch: string; allocator?: string }>({ setup: cfg });
      torchVersion = ready.torch;
      torchAllocator = ready.allocator ?? null;
      if (warmup > 0) await worker.request({ steps: warmup });
    } catch (err) {
      anchorMissing = `the PyTorch anchor failed: ${(err as Error).message}`;
    }
  }
  for (let i = 0; i < warmup; i++) step();
  rt.tracker.resetPeak();
  // Rounds alternate ours and PyTorch's so that both see the same load; each side's figure is the
  // median of its rounds.
  const gaps: number[] = [];  // ms between the end of one PyTorch round's request and the start of the next
  let lastTorchEnd: number | null = null;
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) lastLoss = step();
    const ours = tokens / ((performance.now() - t0) / 1000);
    // The cores probe right after our steps, before PyTorch's: PyTorch's threads keep part of the
    // cores for up to ~100 ms after a request returns (measured: a probe right after one saw 64-90 of
    // 104 GFLOP/s per core, the next ones 96-101), which would read as the hypervisor's.
    const coresGflopsPerCore = coresProbe && !opts.smoke ? coresProbe() : null;
    let torch: number | null = null;
    if (typeof worker !== 'string' && anchorMissing === null) {
      try {
        if (lastTorchEnd !== null) gaps.push(performance.now() - lastTorchEnd);
        torch = tokens / (await worker.request<{ seconds: number }>({ steps })).seconds;
        lastTorchEnd = performance.now();
      } catch (err) {
        anchorMissing = `the PyTorch anchor failed: ${(err as Error).message}`;
      }
      // ... and for the same reason our next round waits for them to settle.
      if (!opts.smoke) await sleep(TORCH_SETTLE_MS);
    }
    perRound.push({ ours, torch, coresGflopsPerCore });
  }
  const value = median(perRound.map((r) => r.ours));
  const anchorValue = anchorMissing === null ? median(perRound.map((r) => r.torch!)) : null;
  // PyTorch alone (ours idle), as many rounds: a load that came and went during the alternating
  // rounds shows as a gap between the two figures, and then the row is not a result. Each alone round
  // waits as long as PyTorch waited between its rounds in the run (ours ran then), so that both figures
  // are timed the same way: a step after a pause can be slower than one right after another (measured
  // for PyTorch's AdamW: up to 15%).
  let standalone: number | null = null;
  const pause = gaps.length ? median(gaps) : null;
  if (typeof worker !== 'string' && anchorMissing === null && !opts.smoke) {
    const alone: number[] = [];
    for (let r = 0; r < rounds; r++) {
      await sleep(pause ?? 0);
      alone.push(tokens / (await worker.request<{ seconds: number }>({ steps })).seconds);
    }
    standalone = median(alone);
  }
  const { drift, reason: driftReason } = anchorDrift(anchorValue, standalone, 'PyTorch', 'tokens/s');
  const f32Peak = peak?.f32PerCore ?? null;
  const contended = contendedRounds(perRound.map((r) => r.coresGflopsPerCore), f32Peak, CONTENDED_ROUNDS, 'both cores together');
  const reasons: string[] = [];
  if (driftReason !== null) reasons.push(driftReason);
  if (contended.reason !== null) reasons.push(contended.reason);
  const noisy = reasons.length > 0;
  // Where the anchor is f32, PyTorch's bf16 step is timed once (after ours, nothing else running) for the record.
  const bf16Probe = anchor.precision === 'f32' && typeof worker !== 'string' && !opts.smoke ? await timeTorchBf16Step(cfg, malloc) : null;
  // With TCMalloc preloaded, PyTorch on glibc's malloc (its default) is timed alone too, for the record.
  const glibc = torchAllocator === 'tcmalloc' && !opts.smoke && anchorMissing === null ? await timeTorchGlibc(cfg, malloc, 3, steps, tokens) : null;

  trainer.dispose();
  ids.dispose();
  targets.dispose();
  gpt.zeroGrad();
  const parameters = gpt.numParameters();
  for (const p of gpt.parameters()) p.dispose();  // the next shape's peak memory should not count this model
  return {
    metric: shape.metric,
    value,
    unit: 'tokens/s',
    anchor: anchorValue === null ? null : `PyTorch ${anchor.precision === 'bf16' ? 'bf16 autocast' : 'f32 (no AVX-512 on this CPU)'} (torch.optim.AdamW${torchAllocator === 'tcmalloc' ? '; TCMalloc preloaded, as torch.backends.xeon.run_cpu does' : `; ${torchAllocator ?? 'glibc malloc'}`}), same model, same run, same thread count`,
    anchorValue,
    ratio: anchorValue ? value / anchorValue : null,
    config: {
      ...cfg,
      rounds: perRound.map((r) => ({ ours: r.ours, torch: r.torch, ratio: r.torch ? r.ours / r.torch : null, coresGflopsPerCore: r.coresGflopsPerCore })),
      statistic: `median over ${rounds} rounds of ${steps} steps, alternating ours and PyTorch's (one PyTorch process kept for the run)`,
      // The ratio of the medians is the row's figure; the median of the per-round ratios (each round's
      // pair ran back to back, so a slow phase of the host moves both sides of it) is kept beside it.
      medianRoundRatio: perRound.every((r) => r.torch !== null) ? median(perRound.map((r) => r.ours / r.torch!)) : null,
      kernels: kernelsName,
      precision: 'bf16 autocast, f32 parameters and AdamW',
      anchorPrecision: anchor.precision,
      anchorPrecisionWhy: anchor.why,
      ...(bf16Probe === null ? {} : typeof bf16Probe === 'number' ? { torchBf16AutocastStepS: bf16Probe, torchBf16AutocastTokensPerS: (batch * seq) / bf16Probe } : { torchBf16AutocastStepS: null, torchBf16AutocastMissing: bf16Probe }),
      peakBytes: rt.tracker.peakBytes('cpu'),
      peakActivationBytes: rt.tracker.peakBytes('cpu', 'activations'),
      parameters,
      lastLoss,
      torchStandaloneTokensPerS: standalone,
      torchAllocator,
      ...(typeof malloc === 'string' ? { torchAllocatorNote: `no TCMalloc: ${malloc}` } : {}),
      ...(glibc === null ? {} : typeof glibc === 'number' ? { torchGlibcMallocTokensPerS: glibc, torchGlibcMallocNote: 'PyTorch on glibc malloc (no preload), 3 rounds alone after the run, for the record' } : { torchGlibcMallocMissing: glibc }),
      torchStandalonePauseMs: pause,
      anchorDrift: drift,
      coresProbe: f32Peak === null ? null : `after each round, ${CORES_PROBE_S} s of FMAs on both cores at once (mean per core); a round below ${100 * CONTENDED_FRACTION}% of the single-core f32 peak counts as contended, ${CONTENDED_ROUNDS} or more mark the row noisy`,
      ...(noisy ? { noisy: true, noisyReason: reasons.join('; ') } : {}),
      flopsPerToken: gptTrainFlopsPerToken(parameters, model, seq),
      peakGflopsPerCore: peak?.perCore ?? null,
      peakKind: peak?.kind ?? null,
      mfu: peak ? (value * gptTrainFlopsPerToken(parameters, model, seq)) / (peak.perCore * 1e9 * THREADS) : null,
      note: `d ${model.nEmbd}, ${model.nLayer} layers, ${model.nHead} heads, seq ${seq}, batch ${batch}, vocab ${model.vocabSize}; ${rounds} x ${steps} steps after ${warmup} warm-up${peak ? `; MFU ${(100 * (value * gptTrainFlopsPerToken(parameters, model, seq)) / (peak.perCore * 1e9 * THREADS)).toFixed(0)}% of the measured ${peak.kind} peak of ${THREADS} cores` : ''}`,
      ...(anchorMissing !== null ? { anchorMissing } : { torch: torchVersion }),
    },
  };
}
