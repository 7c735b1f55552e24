// The environment variables this package reads, in one place.
import { DSConfigError } from '@ds/core';

export type AioBackendChoice = 'auto' | 'io_uring' | 'threads';

export interface OffloadEnv {
  /** DS_AIO_BACKEND: 'threads' forces the pread/pwrite pool; 'io_uring' fails where it is refused; 'auto' (default) falls back. */
  readonly aioBackend: AioBackendChoice;
  /** DS_AIO_TIMEOUT_MS: how long a wait on one transfer may block before it fails (default 600000). */
  readonly aioTimeoutMs: number;
}

export function readOffloadEnv(env: NodeJS.ProcessEnv = process.env): OffloadEnv {
  const backend = env.DS_AIO_BACKEND ?? 'auto';
  if (backend !== 'auto' && backend !== 'io_uring' && backend !== 'threads') {
    throw new DSConfigError(`DS_AIO_BACKEND=${backend} is not a backend: use auto, io_uring or threads`);
  }
  const timeout = env.DS_AIO_TIMEOUT_MS === undefined ? 600_000 : Number(env.DS_AIO_TIMEOUT_MS);
  if (!Number.isFinite(timeout) || timeout <= 0) throw new DSConfigError(`DS_AIO_TIMEOUT_MS=${env.DS_AIO_TIMEOUT_MS} must be a positive number of milliseconds`);
  return { aioBackend: backend, aioTimeoutMs: timeout };
}
