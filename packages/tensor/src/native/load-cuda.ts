// The one loader of the cuda addon. The binary is separate from the cpu one (it is built only where
// nvcc exists) and ships in the optional platform package @ds/tensor-linux-x64-cuda; in a checkout
// it sits in this package's prebuilds/linux-x64-cuda/. It is found and loaded once, then test-loaded:
// `probe()` reports, without throwing, whether a driver, a GPU and cuBLASLt are there. Nothing
// here runs at import time, and nothing here throws: callers get a status and decide
// (src/devices/cuda.ts throws DSUnsupportedError with the status's one sentence).
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { nvidiaLibraryDirs } from './nvidia-libs.js';

/** The optional package that carries the cuda binary for linux x64. */
export const CUDA_PACKAGE = '@ds/tensor-linux-x64-cuda';
/** Where the binary lies inside that package and inside a checkout of @ds/tensor. */
export const CUDA_BINARY_PATH = join('prebuilds', 'linux-x64-cuda', 'node.napi.node');

/** What the addon's test-load reports (native/cuda/api.h, Probe). */
export interface CudaProbe {
  code: 'ok' | 'no-driver' | 'no-gpu' | 'no-cublaslt';
  /** One sentence: what is missing and how to fix it ('' when ok). */
  reason: string;
  deviceCount: number;
  gpu: string;
  computeCapability: string;
  totalMemory: number;
  /** CUDA versions as 1000 * major + 10 * minor (13000 = 13.0). */
  driverVersion: number;
  runtimeVersion: number;
  cublasLt: string;
  cublasLtVersion: number;
}

export interface CudaMemoryStats {
  /** Bytes handed out to live allocations (rounded to their size class). */
  inUse: number;
  /** Bytes kept in the caching allocator's free lists. */
  cached: number;
  peakInUse: number;
  allocations: number;
  /** cudaMalloc calls so far (cache misses). */
  deviceMallocs: number;
}

type Addr = bigint;
type Host = Float32Array | Uint16Array | Int32Array | Uint8Array;

/**
 * The raw functions of the cuda addon. Device operands cross as BigInt addresses; dtypes and ops as
 * the cpu addon's codes. The addon checks every operand's extent against its live allocations and
 * throws RangeError/TypeError on bad input, or an Error whose `dsKind` is 'oom' | 'unsupported' | 'cuda'.
 */
export interface CudaAddon {
  probe(libDirs: string[]): CudaProbe;
  openDevice(index: number, libDirs: string[]): void;
  describe(): string;
  alloc(bytes: number, zero: boolean): Addr;
  free(address: Addr): void;
  memoryStats(): CudaMemoryStats;
  emptyCache(): void;
  copyToHost(src: Addr, dst: Host, bytes: number): void;
  copyFromHost(src: Host, dst: Addr, bytes: number): void;
  copyDevice(src: Addr, dst: Addr, bytes: number): void;
  synchronize(): void;
  /** 0: the compute stream, 1: the communication stream; returns the cudaStream_t. */
  streamHandle(stream: 0 | 1): Addr;
  eventCreate(): Addr;
  eventRecord(event: Addr, stream: 0 | 1): void;
  streamWaitEvent(stream: 0 | 1, event: Addr): void;
  eventSynchronize(event: Addr): void;
  eventQuery(event: Addr): boolean;
  eventDestroy(event: Addr): void;
  cast(srcDtype: number, src: Addr, dstDtype: number, dst: Addr, n: number): void;
  copy(dtype: number, src: Addr, dst: Addr, n: number): void;
  fill(dtype: number, x: Addr, n: number, value: number): void;
  gather(dtype: number, src: Addr, offset: number, shape: Float64Array, strides: Float64Array, dst: Addr): void;
  unary(op: number, dtype: number, x: Addr, out: Addr, n: number): void;
  binary(op: number, dtype: number, a: Addr, b: Addr, out: Addr, n: number, bn: number): void;
  scale(dtype: number, x: Addr, out: Addr, n: number, alpha: number, beta: number): void;
  axpy(xDtype: number, x: Addr, yDtype: number, y: Addr, n: number, alpha: number): void;
  sum(dtype: number, x: Addr, n: number): number;
  sumSquares(dtype: number, x: Addr, n: number): number;
  hasInfNan(dtype: number, x: Addr, n: number): boolean;
  sumRows(dtype: number, x: Addr, rows: number, cols: number, out: Addr, accumulate: boolean): void;
  sumLastDim(dtype: number, x: Addr, rows: number, cols: number, out: Addr): void;
  gemm(dtype: number, outDtype: number, transA: boolean, transB: boolean, batch: number, m: number, n: number, k: number,
    alpha: number, beta: number, a: Addr, strideA: number, b: Addr, strideB: number, c: Addr, strideC: number): void;
  layerNormForward(dtype: number, x: Addr, w: Addr, b: Addr, y: Addr, mean: Addr, rstd: Addr, rows: number, cols: number, eps: number): void;
  layerNormBackward(dtype: number, dy: Addr, x: Addr, w: Addr, mean: Addr, rstd: Addr, dx: Addr, dw: Addr, db: Addr, rows: number, cols: number): void;
  layerNormResidualForward(dtype: number, x: Addr, r: Addr, w: Addr, b: Addr, sum: Addr, y: Addr, mean: Addr, rstd: Addr, rows: number, cols: number, eps: number): void;
  geluForward(dtype: number, x: Addr, y: Addr, n: number): void;
  geluBackward(dtype: number, dy: Addr, x: Addr, dx: Addr, n: number): void;
  softmaxForward(dtype: number, x: Addr, y: Addr, rows: number, cols: number): void;
  softmaxBackward(dtype: number, dy: Addr, y: Addr, dx: Addr, rows: number, cols: number): void;
  embeddingForward(dtype: number, ids: Addr, table: Addr, out: Addr, n: number, vocab: number, dim: number): void;
  embeddingBackward(dtype: number, dout: Addr, ids: Addr, dtable: Addr, n: number, vocab: number, dim: number): void;
  crossEntropyForward(dtype: number, logits: Addr, targets: Addr, losses: Addr, lse: Addr, rows: number, vocab: number): void;
  crossEntropyBackward(dtype: number, logits: Addr, targets: Addr, lse: Addr, dloss: Addr, dlogits: Addr, rows: number, vocab: number): void;
  attentionForward(dtype: number, q: Addr, k: Addr, v: Addr, out: Addr, lse: Addr, bh: number, t: number, d: number, scale: number): void;
  attentionBackward(dtype: number, dout: Addr, q: Addr, k: Addr, v: Addr, out: Addr, lse: Addr, dq: Addr, dk: Addr, dv: Addr, bh: number, t: number, d: number, scale: number): void;
  dropoutForward(dtype: number, x: Addr, out: Addr, mask: Addr, n: number, p: number, seed: number, offset: number): void;
  adamw(param: Addr, grad: Addr, gradDtype: number, expAvg: Addr, expAvgSq: Addr, n: number, lr: number, beta1: number, beta2: number,
    eps: number, weightDecay: number, step: number, biasCorrection: boolean, decoupled: boolean, gradScale: number, out16: Addr | null, out16Dtype: number): void;
}

/** For ds-report: whether cuda can be used here, and if not, the one sentence saying why. */
export interface CudaStatus {
  available: boolean;
  /** The binary that was (or would have been) loaded; null when none was found. */
  binary: string | null;
  reason: string | null;
  gpu?: string;
  cublasLt?: string;
}

/** Where a cuda binary may come from, in search order. */
export interface CudaBinaryCandidate {
  source: 'package' | 'checkout';
  path: string;
}

/**
 * The places searched for the binary, in order: the optional package (when it resolves), then this
 * package's own prebuilds (a checkout, or a package built from source). Pure, for tests.
 */
export function cudaBinaryCandidates(resolvePackageDir: () => string | null, tensorRoot: string | null): CudaBinaryCandidate[] {
  const out: CudaBinaryCandidate[] = [];
  const pkg = resolvePackageDir();
  if (pkg) out.push({ source: 'package', path: join(pkg, CUDA_BINARY_PATH) });
  if (tensorRoot) out.push({ source: 'checkout', path: join(tensorRoot, CUDA_BINARY_PATH) });
  return out;
}

/** The first candidate that exists, or null. */
export function findCudaBinary(candidates: readonly CudaBinaryCandidate[], exists: (path: string) => boolean = existsSync): CudaBinaryCandidate | null {
  return candidates.find((c) => exists(c.path)) ?? null;
}

function optionalPackageDir(): string | null {
  try {
    return dirname(createRequire(import.meta.url).resolve(`${CUDA_PACKAGE}/package.json`));
  } catch {
    return null;
  }
}

function tensorRoot(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === '@ds/tensor') return dir;
      } catch {
        // an unreadable manifest is not ours: keep walking up
      }
    }
    const parent = dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

export interface LoadedCuda {
  addon: CudaAddon | null;
  binary: string | null;
  probe: CudaProbe | null;
  /** Why cuda cannot be used (null when it can). */
  reason: string | null;
  libDirs: string[];
}

let loaded: LoadedCuda | undefined;

const REQUIRED: readonly (keyof CudaAddon)[] = ['probe', 'openDevice', 'alloc', 'gemm', 'attentionBackward', 'adamw'];

/** Finds, loads and test-loads the cuda binary once; never throws. */
export function loadCudaAddon(): LoadedCuda {
  if (loaded) return loaded;
  const libDirs = nvidiaLibraryDirs();
  const candidates = cudaBinaryCandidates(optionalPackageDir, tensorRoot());
  const found = findCudaBinary(candidates);
  if (!found) {
    const where = candidates.map((c) => c.path).join(' or ') || CUDA_BINARY_PATH;
    loaded = {
      addon: null, binary: null, probe: null, libDirs,
      reason: `no cuda binary was found (looked for ${where}); install ${CUDA_PACKAGE} next to @ds/tensor, or build it from a checkout with nvcc (\`pnpm run build:native\` in packages/tensor).`,
    };
    return loaded;
  }
  let addon: CudaAddon;
  try {
    addon = createRequire(import.meta.url)(found.path) as CudaAddon;
  } catch (err) {
    loaded = {
      addon: null, binary: found.path, probe: null, libDirs,
      reason: `the cuda binary ${found.path} did not load (${(err as Error).message.split('\n')[0]}); reinstall ${CUDA_PACKAGE} or rebuild it with \`pnpm run build:native\`.`,
    };
    return loaded;
  }
  const missing = REQUIRED.filter((f) => typeof addon[f] !== 'function');
  if (missing.length) {
    loaded = {
      addon: null, binary: found.path, probe: null, libDirs,
      reason: `the cuda binary ${found.path} is out of date (no ${missing.join(', ')}); reinstall ${CUDA_PACKAGE} or rebuild it with \`pnpm run build:native\`.`,
    };
    return loaded;
  }
  const probe = addon.probe(libDirs);
  const reason = probe.code === 'ok' ? null : `${probe.reason.replace(/\.$/, '')}.`;
  loaded = { addon, binary: found.path, probe, reason, libDirs };
  return loaded;
}

/** Whether cuda is usable here, for ds-report and for tests that need a GPU. Never throws. */
export function cudaStatus(): CudaStatus {
  const l = loadCudaAddon();
  const status: CudaStatus = { available: l.reason === null, binary: l.binary, reason: l.reason };
  if (l.probe?.gpu) status.gpu = `${l.probe.gpu} (compute capability ${l.probe.computeCapability})`;
  if (l.probe?.cublasLt) status.cublasLt = l.probe.cublasLt;
  return status;
}
