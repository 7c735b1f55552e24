// The cuda self-check, an install test of the cuda device in the package itself (as
// torch.testing's or cupy's self-tests are): every entry of the cuda KernelTable is run against the
// cpu table on seeded random inputs, in every float dtype it takes, and compared element by element
// within the tolerance of the dtype its results are stored in. It needs only the built package and a
// GPU, so the tests (test/cuda/kernels.test.ts, one test per case) and the GPU machine's check
// (scripts/device-check/run.mjs, from dist) run the same cases. The cases are in
// cuda-selfcheck-cases.ts, the comparison and the per-case context in cuda-selfcheck-kit.ts.
//
//   const r = cudaSelfCheck();
//   if (!r.available) console.log(r.reason); else for (const c of r.cases) if (!c.ok) console.log(c.name, c.dtype, c.message);
import { createCpuKernels } from '../backends/cpu.js';
import { readTensorEnv } from '../env.js';
import type { FloatDType, KernelTable } from '../kernels/table.js';
import { cudaStatus } from '../native/load-cuda.js';
import { createReferenceKernels } from '../reference/index.js';
import { createCudaDevice, type CudaDevice } from './cuda.js';
import { selfCheckCases, type SelfCheckCaseSpec } from './cuda-selfcheck-cases.js';
import { FLOAT_DTYPES, SelfCheckContext, type SelfCheckOutput, type Tolerance } from './cuda-selfcheck-kit.js';

export type { SelfCheckOutput, Tolerance } from './cuda-selfcheck-kit.js';

/** A case as listed, before it runs. */
export interface CudaSelfCheckCaseInfo {
  name: string;
  /** The float dtype the case runs in ('bf16->f32' for a gemm with another output dtype; '-' for the device case). */
  dtype: string;
  /** The KernelTable entry it checks, or 'device' (allocator, streams, events). */
  kernel: string;
}

/** How one case came out. */
export interface CudaSelfCheckCase extends CudaSelfCheckCaseInfo {
  ok: boolean;
  /** Largest |cuda - cpu| of the output closest to (or furthest over) its tolerance; null where no numbers were compared. */
  worstError: number | null;
  /** The tolerance of that output (|diff| <= atol + rtol * |cpu|); null where no numbers were compared. */
  tolerance: Tolerance | null;
  /** Empty when ok; else each failing output with its first mismatches, or the error the case threw. */
  message: string;
  /** Every output (or expectation) of the case. */
  outputs: SelfCheckOutput[];
  ms: number;
}

export interface CudaSelfCheckResult {
  /** False where cuda cannot be used here; `reason` then says why in one sentence and no case ran. */
  available: boolean;
  reason: string | null;
  /** The device's describe() (GPU, driver, cuBLASLt, binary); null when unavailable. */
  device: string | null;
  cases: CudaSelfCheckCase[];
  passed: number;
  failed: number;
  ms: number;
}

export interface CudaSelfCheckOptions {
  /** Float dtypes to check (default f32, bf16, f16). */
  dtypes?: readonly FloatDType[];
  /** Runs only the cases this accepts (default all). */
  filter?: (c: CudaSelfCheckCaseInfo) => boolean;
  /** The device to check (default the GPU of LOCAL_RANK, as the runtime opens it). */
  device?: CudaDevice;
  /** Called after each case, for progress. */
  onCase?: (c: CudaSelfCheckCase) => void;
}

const info = (s: SelfCheckCaseSpec): CudaSelfCheckCaseInfo => ({ name: s.name, dtype: s.dtype, kernel: s.kernel });

/** The cases cudaSelfCheck runs, without running them (needs no GPU). */
export function cudaSelfCheckCases(dtypes: readonly FloatDType[] = FLOAT_DTYPES): CudaSelfCheckCaseInfo[] {
  return selfCheckCases(dtypes).map(info);
}

/** The output that decides the case: the one furthest over, or closest to, its tolerance. */
function worst(outputs: readonly SelfCheckOutput[]): SelfCheckOutput | undefined {
  return outputs.reduce<SelfCheckOutput | undefined>((w, o) => (!w || o.worstRatio > w.worstRatio ? o : w), undefined);
}

function runCase(spec: SelfCheckCaseSpec, ctx: SelfCheckContext): CudaSelfCheckCase {
  const t0 = performance.now();
  let outputs: SelfCheckOutput[] = [];
  let thrown: string | null = null;
  try {
    outputs = spec.run(ctx);
  } catch (err) {
    thrown = `${spec.name} threw ${(err as Error).name}: ${(err as Error).message}`;
  }
  try {
    ctx.releaseAll();
  } catch (err) {
    thrown ??= `${spec.name}: freeing its device memory failed: ${(err as Error).message}`;
  }
  const w = worst(outputs);
  const ok = thrown === null && outputs.length > 0 && outputs.every((o) => o.ok);
  const message = thrown ?? (outputs.length === 0 ? `${spec.name} compared nothing` : outputs.filter((o) => !o.ok).map((o) => o.message).join('\n'));
  return { ...info(spec), ok, worstError: w?.maxAbsDiff ?? null, tolerance: w?.tolerance ?? null, message: ok ? '' : message, outputs, ms: performance.now() - t0 };
}

function unavailable(reason: string, t0: number): CudaSelfCheckResult {
  return { available: false, reason, device: null, cases: [], passed: 0, failed: 0, ms: performance.now() - t0 };
}

/**
 * Runs every cuda kernel against its cpu twin and returns one result per case; never throws for a
 * failing kernel (the case says what differed). Where cuda is unavailable it returns at once with
 * the reason and no cases.
 */
export function cudaSelfCheck(opts: CudaSelfCheckOptions = {}): CudaSelfCheckResult {
  const t0 = performance.now();
  let device = opts.device;
  if (!device) {
    const status = cudaStatus();
    if (!status.available) return unavailable(status.reason ?? 'the cuda binary did not load.', t0);
    try {
      device = createCudaDevice({ index: readTensorEnv().localRank });
    } catch (err) {
      return unavailable((err as Error).message, t0);
    }
  }
  const cpu: KernelTable = createCpuKernels();
  const ctx = new SelfCheckContext(device, cpu, createReferenceKernels());
  const cases: CudaSelfCheckCase[] = [];
  for (const spec of selfCheckCases(opts.dtypes ?? FLOAT_DTYPES)) {
    if (opts.filter && !opts.filter(info(spec))) continue;
    const c = runCase(spec, ctx);
    cases.push(c);
    opts.onCase?.(c);
  }
  const passed = cases.filter((c) => c.ok).length;
  return { available: true, reason: null, device: device.describe(), cases, passed, failed: cases.length - passed, ms: performance.now() - t0 };
}
