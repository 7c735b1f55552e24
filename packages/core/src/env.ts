// The one place @ds/core reads environment variables. Everything else receives a CoreEnv (or the
// part of it it needs) from its caller, so tests can pass a plain object instead of mutating
// process.env.
import { parseByteSize } from '@ds/tensor';

import { DSConfigError } from './errors.js';

/** What the `ds` launcher (or torchrun-style launchers) put in a worker's environment. */
export interface DistEnv {
  /** RANK: this process's global rank. */
  rank: number;
  /** WORLD_SIZE: number of processes in the job. */
  worldSize: number;
  /** LOCAL_RANK: rank among the processes on this host. */
  localRank: number;
  /** LOCAL_SIZE (or LOCAL_WORLD_SIZE): number of processes on this host. */
  localSize: number;
  /** CROSS_RANK: index of this host (node rank). */
  crossRank: number;
  /** CROSS_SIZE: number of hosts. */
  crossSize: number;
  /** MASTER_ADDR: the host serving the rendezvous store (rank 0's). */
  masterAddr: string;
  /** MASTER_PORT: the store's TCP port. */
  masterPort: number;
}

export interface CoreEnv {
  /** Undefined when RANK / WORLD_SIZE are not set (a single process run). */
  dist: DistEnv | undefined;
  /** DS_COMM_TIMEOUT, in seconds (fractions allowed): default per-op timeout of collectives; 300. */
  commTimeoutMs: number;
  /** DS_COMM_CHUNK: staging chunk of the shared-memory transport (a byte size: 1048576, 256k, 4MiB); default 1 MiB. */
  commChunkBytes: number | undefined;
  /** DS_COMM_SPIN: polls of a shared-memory flag before a waiting comm thread sleeps; default 200. */
  commSpin: number | undefined;
  /** DS_COMM_TRANSPORT: auto (shared memory on one host, TCP across hosts), shm or tcp. */
  commTransport: 'auto' | 'shm' | 'tcp';
  /** DS_COMM_IFADDR: the address TCP peers reach this rank's listener at, on one host too (ranks in network namespaces); default the first non-internal IPv4 across hosts, 127.0.0.1 on one. */
  commIfAddr: string | undefined;
  /** DS_HOST_ID: replaces the host identity (hostname + boot id) that decides who shares memory; for tests. */
  hostId: string | undefined;
  /** DS_SHM_DIR: where POSIX shared memory is visible as files, for sweeping stale segments; /dev/shm. */
  shmDir: string;
  /** DS_COMM_BACKEND: the comm backend by name (cpu, mpi, nccl); undefined leaves the choice to initialize() and the config. */
  commBackend: string | undefined;
  /** DS_LOG_LEVEL: the least severe log line the engine and plugins print (debug, info, warn, error); default info. */
  logLevel: LogLevel;
}

/** Severity of a log line, least severe first. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const DEFAULT_COMM_TIMEOUT_MS = 300_000;

/** A bad environment variable: what it holds, what it must hold, and what to do. */
function badVar(name: string, raw: string | number, must: string, fix = 'fix it or unset it for the default'): DSConfigError {
  return new DSConfigError(`${name}=${typeof raw === 'string' ? `'${raw}'` : raw} ${must}; ${fix}`, [{ path: name, message: must, value: raw }]);
}

function intVar(env: NodeJS.ProcessEnv, name: string, min: number): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw badVar(name, raw, `must be an integer >= ${min}`);
  return n;
}

function bytesVar(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const raw = env[name];
  return raw === undefined || raw === '' ? undefined : parseByteSize(raw, name);
}

function timeoutVar(env: NodeJS.ProcessEnv): number {
  const raw = env.DS_COMM_TIMEOUT;
  if (raw === undefined || raw === '') return DEFAULT_COMM_TIMEOUT_MS;
  const s = Number(raw);
  if (!Number.isFinite(s) || s <= 0) throw badVar('DS_COMM_TIMEOUT', raw, 'must be a positive number of seconds');
  return Math.round(s * 1000);
}

function transportVar(env: NodeJS.ProcessEnv): 'auto' | 'shm' | 'tcp' {
  const raw = env.DS_COMM_TRANSPORT || 'auto';
  if (raw !== 'auto' && raw !== 'shm' && raw !== 'tcp') throw badVar('DS_COMM_TRANSPORT', raw, 'must be auto, shm or tcp');
  return raw;
}

/** DS_LOG_LEVEL, case-insensitive; Python's spelling 'warning' is taken for warn. */
function logLevelVar(env: NodeJS.ProcessEnv): LogLevel {
  const raw = env.DS_LOG_LEVEL;
  if (raw === undefined || raw === '') return 'info';
  const v = raw.toLowerCase() === 'warning' ? 'warn' : raw.toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(v)) throw badVar('DS_LOG_LEVEL', raw, `must be one of ${LOG_LEVELS.join(', ')}`, 'fix it or unset it for info');
  return v as LogLevel;
}

/**
 * A process started by mpirun directly has no RANK/WORLD_SIZE but its MPI launcher's own variables
 * (Open MPI: OMPI_COMM_WORLD_*; MPICH/Intel MPI hydra: PMI_RANK/PMI_SIZE, MPI_LOCALRANKID/MPI_LOCALNRANKS),
 * read as DeepSpeed's mpi_discovery does. Explicit RANK/WORLD_SIZE/LOCAL_* always win.
 */
function withMpiDiscovery(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  if ((env.RANK ?? '') !== '' || (env.WORLD_SIZE ?? '') !== '') return env;
  const pick = (...names: string[]) => names.map((n) => env[n]).find((v) => v !== undefined && v !== '');
  const rank = pick('OMPI_COMM_WORLD_RANK', 'PMI_RANK');
  const size = pick('OMPI_COMM_WORLD_SIZE', 'PMI_SIZE');
  if (rank === undefined && size === undefined) return env;
  return {
    ...env,
    RANK: rank,
    WORLD_SIZE: size,
    LOCAL_RANK: env.LOCAL_RANK || pick('OMPI_COMM_WORLD_LOCAL_RANK', 'MPI_LOCALRANKID'),
    LOCAL_SIZE: env.LOCAL_SIZE || pick('OMPI_COMM_WORLD_LOCAL_SIZE', 'MPI_LOCALNRANKS'),
  };
}

/** Reads the distributed variables; undefined when RANK and WORLD_SIZE are both absent (and no MPI launcher set its own). */
export function readDistEnv(rawEnv: NodeJS.ProcessEnv = process.env): DistEnv | undefined {
  const env = withMpiDiscovery(rawEnv);
  const rank = intVar(env, 'RANK', 0);
  const worldSize = intVar(env, 'WORLD_SIZE', 1);
  if (rank === undefined && worldSize === undefined) return undefined;
  if (rank === undefined || worldSize === undefined) {
    const message = 'RANK and WORLD_SIZE must be set together';
    throw new DSConfigError(`${message}: ${rank === undefined ? 'WORLD_SIZE' : 'RANK'} is set, the other is not; start the job with the \`ds\` launcher, which sets both, or set both`, [
      { path: rank === undefined ? 'RANK' : 'WORLD_SIZE', message },
    ]);
  }
  if (rank >= worldSize) throw badVar('RANK', rank, `must be below WORLD_SIZE=${worldSize}`, 'ranks count from 0');
  const localSize = intVar(env, 'LOCAL_SIZE', 1) ?? intVar(env, 'LOCAL_WORLD_SIZE', 1) ?? worldSize;
  const localRank = intVar(env, 'LOCAL_RANK', 0) ?? rank % localSize;
  if (localRank >= localSize) throw badVar('LOCAL_RANK', localRank, `must be below LOCAL_SIZE=${localSize}`, 'local ranks count from 0 on each host');
  const crossSize = intVar(env, 'CROSS_SIZE', 1) ?? Math.ceil(worldSize / localSize);
  const crossRank = intVar(env, 'CROSS_RANK', 0) ?? Math.floor(rank / localSize);
  const masterPort = intVar(env, 'MASTER_PORT', 1) ?? 29500;
  if (masterPort > 65535) throw badVar('MASTER_PORT', masterPort, 'is not a TCP port (1 to 65535)', 'pick a free port or unset it for 29500');
  return { rank, worldSize, localRank, localSize, crossRank, crossSize, masterAddr: env.MASTER_ADDR || '127.0.0.1', masterPort };
}

export function readCoreEnv(env: NodeJS.ProcessEnv = process.env): CoreEnv {
  return {
    dist: readDistEnv(env),
    commTimeoutMs: timeoutVar(env),
    commChunkBytes: bytesVar(env, 'DS_COMM_CHUNK'),
    commSpin: intVar(env, 'DS_COMM_SPIN', 0),
    commTransport: transportVar(env),
    commIfAddr: env.DS_COMM_IFADDR || undefined,
    hostId: env.DS_HOST_ID || undefined,
    shmDir: env.DS_SHM_DIR || '/dev/shm',
    commBackend: env.DS_COMM_BACKEND || undefined,
    logLevel: logLevelVar(env),
  };
}
