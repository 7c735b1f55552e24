// The one place @ds/tensor reads environment variables.

import { availableParallelism, totalmem } from 'node:os';

import { parseByteSize } from './bytes.js';
import { DSConfigError } from './errors.js';

export interface TensorEnv {
  /** DS_CPU_ISA: force a kernel path (scalar, avx2, avx512, amx); default auto. */
  cpuIsa: string;
  /** DS_NUM_THREADS, else OMP_NUM_THREADS; undefined means one per core. */
  numThreads: number | undefined;
  /** DS_MEMORY_LIMIT: per-process allocation budget in bytes (a byte size: 1e9, 512m, 2GiB; see bytes.ts). */
  memoryLimit: number | undefined;
  /**
   * DS_ALLOC_CACHE: most bytes the CPU caching allocator keeps (a byte size; 0 turns it off).
   * Default: a quarter of physical memory shared by the ranks on this host (LOCAL_SIZE, set by `ds`).
   */
  allocCache: number;
  /** DS_POISON_UNINIT=1: fill uninitialized allocations with 0xFF bytes (NaN) so unwritten outputs show up in tests. */
  poisonUninit: boolean;
  /**
   * DS_POOL_SPIN_US: how long (microseconds, 0 to 1000000) a kernel thread spins waiting for the next
   * kernel before it sleeps. Default (defaultPoolSpinUs): 5000 when the threads of the ranks on this
   * host fit its cores, else 200. 0 saves CPU time on a busy host at some speed.
   */
  poolSpinUs: number;
  /** LOCAL_RANK (set by `ds` and torchrun-style launchers): which GPU of the host a process takes for 'cuda'; default 0. */
  localRank: number;
}

/** A bad environment variable: what it holds, what it must hold, and how to fall back to the default. */
function badVar(name: string, raw: string, must: string): DSConfigError {
  return new DSConfigError(`${name}='${raw}' ${must}; fix it or unset it for the default`, [{ path: name, message: must, value: raw }]);
}

function intInRange(name: string, raw: string | undefined, lo: number, hi: number, fallback: number): number {
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < lo || n > hi) throw badVar(name, raw, `must be an integer from ${lo} to ${hi}`);
  return n;
}

/**
 * DS_POOL_SPIN_US's default. 5 ms when this process's kernel threads, times the ranks on the host
 * (LOCAL_SIZE), fit its cores: a worker that sleeps between two kernels costs a wake-up, and on a VM
 * whose idle virtual CPU the hypervisor deschedules that is a fraction of a millisecond to several
 * (measured on a 2-vCPU Firecracker VM, reference GPT step on 2 threads: with 200 us the worker slept
 * 72 times a step and the step took 611 ms; with 5 ms it slept 0-2 times and took 500 ms). Spinning
 * threads of one rank would take cores from another's, so oversubscribed hosts keep 200 us.
 */
export function defaultPoolSpinUs(threads: number, localSize: number, cores: number): number {
  return threads * localSize <= cores ? 5000 : 200;
}

function positiveInt(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw badVar(name, raw, 'must be a positive integer');
  return n;
}

/** Ranks sharing this host: LOCAL_SIZE as the launcher sets it (1 when absent or not a positive integer). */
function localRanks(env: NodeJS.ProcessEnv): number {
  const n = Number(env.LOCAL_SIZE);
  return Number.isInteger(n) && n > 0 ? n : 1;
}

function flag(name: string, raw: string | undefined): boolean {
  if (raw === undefined || raw === '' || raw === '0') return false;
  if (raw === '1') return true;
  throw badVar(name, raw, 'must be 0 or 1');
}

function bytesVar(name: string, raw: string | undefined): number | undefined {
  return raw === undefined || raw === '' ? undefined : parseByteSize(raw, name);
}

export function readTensorEnv(env: NodeJS.ProcessEnv = process.env): TensorEnv {
  const numThreads = positiveInt('DS_NUM_THREADS', env.DS_NUM_THREADS) ?? positiveInt('OMP_NUM_THREADS', env.OMP_NUM_THREADS);
  const cores = availableParallelism();
  return {
    cpuIsa: env.DS_CPU_ISA || 'auto',
    numThreads,
    memoryLimit: bytesVar('DS_MEMORY_LIMIT', env.DS_MEMORY_LIMIT),
    allocCache: bytesVar('DS_ALLOC_CACHE', env.DS_ALLOC_CACHE) ?? Math.floor(totalmem() / 4 / localRanks(env)),
    poisonUninit: flag('DS_POISON_UNINIT', env.DS_POISON_UNINIT),
    poolSpinUs: intInRange('DS_POOL_SPIN_US', env.DS_POOL_SPIN_US, 0, 1_000_000, defaultPoolSpinUs(numThreads ?? cores, localRanks(env), cores)),
    localRank: intInRange('LOCAL_RANK', env.LOCAL_RANK, 0, 1_000_000, 0),
  };
}
