// The one place @ds/comm-nccl reads environment variables (as core's env.ts is for @ds/core): where
// to look for the CUDA runtime and NCCL, and NCCL's own setting that would defeat the watchdog.
// Everything else receives an NcclEnv, so tests pass a plain object.
import { DSConfigError } from '@ds/core';
import type { NvidiaSearchEnv } from '@ds/tensor';

export interface NcclEnv {
  /** DS_NCCL_LIBRARY: the libnccl file to load, instead of searching for libnccl.so.2. */
  library: string | undefined;
  /**
   * What @ds/tensor's nvidiaLibraryDirs reads (LD_LIBRARY_PATH, searched explicitly too so that a
   * value set after start-up still counts; CUDA_HOME/CUDA_PATH; VIRTUAL_ENV/CONDA_PREFIX; HOME).
   */
  search: NvidiaSearchEnv;
}

export function readNcclEnv(env: NodeJS.ProcessEnv = process.env): NcclEnv {
  // The watchdog needs non-blocking communicators: with NCCL_COMM_BLOCKING=1 a call waiting for a
  // dead peer would hold the thread that must abort it, and the process could not exit.
  if (env.NCCL_COMM_BLOCKING === '1') {
    throw new DSConfigError(
      "NCCL_COMM_BLOCKING=1 makes NCCL calls block the thread that enforces the comm timeout, so a lost peer would hang the job; unset it (the nccl backend makes non-blocking communicators and waits on them itself)",
      [{ path: 'NCCL_COMM_BLOCKING', message: 'must not be 1', value: env.NCCL_COMM_BLOCKING }],
    );
  }
  return {
    library: env.DS_NCCL_LIBRARY || undefined,
    search: { LD_LIBRARY_PATH: env.LD_LIBRARY_PATH, CUDA_HOME: env.CUDA_HOME, CUDA_PATH: env.CUDA_PATH, VIRTUAL_ENV: env.VIRTUAL_ENV, CONDA_PREFIX: env.CONDA_PREFIX, HOME: env.HOME },
  };
}
