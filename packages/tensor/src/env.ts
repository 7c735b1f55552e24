// The one place @ds/tensor reads environment variables.

import { totalmem } from 'node:os';

export interface TensorEnv {
  /** DS_CPU_ISA: force a kernel path (scalar, avx2, avx512, amx); default auto. */
  cpuIsa: string;
  /** DS_NUM_THREADS, else OMP_NUM_THREADS; undefined means one per core. */
  numThreads: number | undefined;
  /** DS_MEMORY_LIMIT: per-process allocation budget in bytes (k/m/g suffixes allowed). */
  memoryLimit: number | undefined;
  /**
   * DS_ALLOC_CACHE: most bytes the CPU caching allocator keeps (k/m/g suffixes; 0 turns it off).
   * Default: a quarter of physical memory shared by the ranks on this host (LOCAL_SIZE, set by `ds`).
   */
  allocCache: number;
  /** DS_POISON_UNINIT=1: fill uninitialized allocations with 0xFF bytes (NaN) so unwritten outputs show up in tests. */
  poisonUninit: boolean;
  /**
   * DS_POOL_SPIN_US: how long (microseconds, 0 to 1000000) a kernel thread spins waiting for the next
   * kernel before it sleeps; default 200. 0 saves CPU time on a busy host at some speed.
   */
  poolSpinUs: number;
}

function intInRange(name: string, raw: string | undefined, lo: number, hi: number, fallback: number): number {
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < lo || n > hi) throw new RangeError(`${name}='${raw}' must be an integer from ${lo} to ${hi}`);
  return n;
}

function positiveInt(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) {
    throw new RangeError(`${name}='${raw}' must be a positive integer`);
  }
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
  throw new RangeError(`${name}='${raw}' must be 0 or 1`);
}

export function parseBytes(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$/i.exec(raw);
  if (!m) throw new RangeError(`${name}='${raw}' is not a byte count (examples: 1073741824, 512m, 2g)`);
  const scale = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.floor(Number(m[1]) * scale);
}

export function readTensorEnv(env: NodeJS.ProcessEnv = process.env): TensorEnv {
  return {
    cpuIsa: env.DS_CPU_ISA || 'auto',
    numThreads: positiveInt('DS_NUM_THREADS', env.DS_NUM_THREADS) ?? positiveInt('OMP_NUM_THREADS', env.OMP_NUM_THREADS),
    memoryLimit: parseBytes('DS_MEMORY_LIMIT', env.DS_MEMORY_LIMIT),
    allocCache: parseBytes('DS_ALLOC_CACHE', env.DS_ALLOC_CACHE) ?? Math.floor(totalmem() / 4 / localRanks(env)),
    poisonUninit: flag('DS_POISON_UNINIT', env.DS_POISON_UNINIT),
    poolSpinUs: intInRange('DS_POOL_SPIN_US', env.DS_POOL_SPIN_US, 0, 1_000_000, 200),
  };
}
