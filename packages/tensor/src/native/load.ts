// The one loader of the cpu addon: finds prebuilds/linux-x64/*.node with node-gyp-build, whether this
// file runs from src/ (tests) or from the bundled dist/ (installed package), then applies DS_CPU_ISA
// and the thread count from env.ts. Validation of kernel arguments lives in src/backends/cpu.ts.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { DSConfigError, DSNativeError } from '../errors.js';
import { readTensorEnv } from '../env.js';

export interface CpuInfo {
  avx2: boolean;
  avx512f: boolean;
  avx512bf16: boolean;
  amx: boolean;
  /** The ISA kernels run at now: 'scalar' | 'avx2' | 'avx512' | 'amx'. */
  isa: string;
  /** Threads in this environment's pool. */
  threads: number;
  /** Hardware threads the OS reports. */
  cores: number;
}

/** Sustained f32 FMA and bf16 dot-product throughput of one core at the current ISA (0: no such path). */
export interface PeakProbe {
  f32FmaGflops: number;
  bf16DotGflops: number;
}

/** probePeak's f32 FMA chains on every pool thread at once (see CpuKernels.probeCores). */
export interface CoresProbe {
  /** All threads' FLOP over the total wall time of the calls, per core. */
  meanGflopsPerCore: number;
  bestGflopsPerCore: number;
  threads: number;
  calls: number;
}

type F = Float32Array | Uint16Array | Int32Array | Uint8Array;

/**
 * The raw functions the cpu addon exports. Dtypes cross as codes (see DTYPE_CODE in
 * src/backends/cpu.ts); the addon re-checks lengths and throws TypeError/RangeError on bad input.
 */
export interface CpuAddon {
  cpuInfo(): CpuInfo;
  /** Zeroed, 64-byte aligned native memory as an external ArrayBuffer, with its address (the sim device's memory). */
  nativeAlloc(bytes: number): { buffer: ArrayBuffer; address: bigint };
  setIsa(requested: string): string;
  setNumThreads(n: number): void;
  /** Microseconds a pool thread spins for the next job before sleeping (0 to 1e6). */
  setPoolSpin(us: number): void;
  probePeak(seconds: number): PeakProbe;
  probeCores(seconds: number): CoresProbe;
  streamProbe(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, n: number): void;
  cast(srcDtype: number, src: F, dstDtype: number, dst: F, n: number): void;
  copy(dtype: number, src: F, dst: F, n: number): void;
  fill(dtype: number, x: F, n: number, value: number): void;
  gather(dtype: number, src: F, offset: number, shape: Float64Array, strides: Float64Array, dst: F): void;
  unary(op: number, dtype: number, x: F, out: F, n: number): void;
  binary(op: number, dtype: number, a: F, b: F, out: F, n: number, bn: number): void;
  scale(dtype: number, x: F, out: F, n: number, alpha: number, beta: number): void;
  axpy(xDtype: number, x: F, yDtype: number, y: F, n: number, alpha: number): void;
  sum(dtype: number, x: F, n: number): number;
  sumSquares(dtype: number, x: F, n: number): number;
  hasInfNan(dtype: number, x: F, n: number): boolean;
  sumRows(dtype: number, x: F, rows: number, cols: number, out: Float32Array, accumulate: boolean): void;
  sumLastDim(dtype: number, x: F, rows: number, cols: number, out: F): void;
  gemm(dtype: number, outDtype: number, transA: boolean, transB: boolean, batch: number, m: number, n: number, k: number,
    alpha: number, beta: number, a: F, strideA: number, b: F, strideB: number, c: F, strideC: number, bias?: F | null): void;
  layerNormForward(dtype: number, x: F, w: F, b: F, y: F, mean: Float32Array, rstd: Float32Array, rows: number, cols: number, eps: number): void;
  layerNormBackward(dtype: number, dy: F, x: F, w: F, mean: Float32Array, rstd: Float32Array, dx: F, dw: Float32Array, db: Float32Array, rows: number, cols: number): void;
  layerNormResidualForward(dtype: number, x: F, r: F, w: F, b: F, sum: F, y: F, mean: Float32Array, rstd: Float32Array, rows: number, cols: number, eps: number): void;
  geluForward(dtype: number, x: F, y: F, n: number): void;
  geluBackward(dtype: number, dy: F, x: F, dx: F, n: number): void;
  softmaxForward(dtype: number, x: F, y: F, rows: number, cols: number): void;
  softmaxBackward(dtype: number, dy: F, y: F, dx: F, rows: number, cols: number): void;
  embeddingForward(dtype: number, ids: Int32Array, table: F, out: F, n: number, vocab: number, dim: number): void;
  embeddingBackward(dtype: number, dout: F, ids: Int32Array, dtable: Float32Array, n: number, vocab: number, dim: number): void;
  crossEntropyForward(dtype: number, logits: F, targets: Int32Array, losses: Float32Array, lse: Float32Array, rows: number, vocab: number): void;
  crossEntropyBackward(dtype: number, logits: F, targets: Int32Array, lse: Float32Array, dloss: Float32Array, dlogits: F, rows: number, vocab: number): void;
  crossEntropyForwardGrad(dtype: number, logits: F, targets: Int32Array, losses: Float32Array, lse: Float32Array, dlogits: F, scale: number, rows: number, vocab: number): void;
  attentionForward(dtype: number, q: F, k: F, v: F, out: F, lse: Float32Array, bh: number, t: number, d: number, scale: number): void;
  attentionBackward(dtype: number, dout: F, q: F, k: F, v: F, out: F, lse: Float32Array, dq: F, dk: F, dv: F, bh: number, t: number, d: number, scale: number): void;
  attentionPackedForward(dtype: number, qkv: F, out: F, lse: Float32Array, b: number, t: number, heads: number, d: number, scale: number): void;
  attentionPackedBackward(dtype: number, dout: F, qkv: F, out: F, lse: Float32Array, dqkv: F, b: number, t: number, heads: number, d: number, scale: number): void;
  dropoutForward(dtype: number, x: F, out: F, mask: Uint8Array, n: number, p: number, seed: number, offset: number): void;
  adamw(param: Float32Array, grad: F, gradDtype: number, expAvg: Float32Array, expAvgSq: Float32Array, n: number, lr: number,
    beta1: number, beta2: number, eps: number, weightDecay: number, step: number, biasCorrection: boolean, decoupled: boolean,
    gradScale: number, out16: Uint16Array | null, out16Dtype: number): void;
}

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === '@ds/tensor') return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new DSNativeError('@ds/tensor: cannot find the package root (no @ds/tensor package.json above the loader)');
    dir = parent;
  }
}

/** The values DS_CPU_ISA and setIsa accept; a request above what the CPU has selects the best it has. */
export const CPU_ISAS: readonly string[] = ['auto', 'scalar', 'avx2', 'avx512', 'amx'];

let cached: CpuAddon | undefined;

/**
 * Loads the cpu addon once per module instance and applies DS_CPU_ISA, DS_POOL_SPIN_US and the
 * thread count (DS_NUM_THREADS, else OMP_NUM_THREADS, else one per core). The addon's state (ISA, thread pool)
 * is per Node environment, so worker threads each get their own.
 */
export function loadCpuAddon(): CpuAddon {
  if (cached) return cached;
  // The environment first: a bad variable is the user's to fix, whatever the binary.
  const env = readTensorEnv();
  if (!CPU_ISAS.includes(env.cpuIsa)) {
    const must = `is not one of ${CPU_ISAS.join(', ')}`;
    throw new DSConfigError(`DS_CPU_ISA='${env.cpuIsa}' ${must}; unset it to use the best ISA this CPU has.`, [{ path: 'DS_CPU_ISA', message: must, value: env.cpuIsa }]);
  }
  const root = packageRoot();
  const require = createRequire(import.meta.url);
  let addon: CpuAddon;
  try {
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    addon = nodeGypBuild(root) as CpuAddon;
  } catch (err) {
    throw new DSNativeError(
      `@ds/tensor: the cpu addon could not be loaded from ${join(root, 'prebuilds')}: ${(err as Error).message}. ` +
        'An installed package ships prebuilds/linux-x64/node.napi.node; in a checkout, run `pnpm build` first.',
      { cause: err },
    );
  }
  const missing = (['gemm', 'setPoolSpin', 'nativeAlloc'] as const).filter((f) => typeof addon[f] !== 'function');
  if (missing.length) {
    throw new DSNativeError(`@ds/tensor: the cpu addon in ${join(root, 'prebuilds')} is out of date (no ${missing.join(', ')}); rebuild it with \`pnpm run build:native\`.`);
  }
  addon.setIsa(env.cpuIsa);
  addon.setPoolSpin(env.poolSpinUs);
  addon.setNumThreads(Math.min(1024, env.numThreads ?? availableParallelism()));
  cached = addon;
  return addon;
}
