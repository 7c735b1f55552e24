// The one place @ds/comm-nccl reads environment variables (as core's env.ts is for @ds/core): where
// to look for the CUDA runtime and NCCL, and NCCL's own setting that would defeat the watchdog.
// Everything else receives an NcclEnv, so tests pass a plain object.
import { homedir } from 'node:os';

import { DSConfigError } from '@ds/core';

export interface NcclEnv {
  /** DS_NCCL_LIBRARY: the libnccl file to load, instead of searching for libnccl.so.2. */
  library: string | undefined;
  /** LD_LIBRARY_PATH's directories (searched explicitly too, so a value set after start-up still counts). */
  ldLibraryPath: string[];
  /** VIRTUAL_ENV and CONDA_PREFIX, whose Python packages may hold the nvidia-* wheels. */
  pythonPrefixes: string[];
  home: string;
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
    ldLibraryPath: (env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean),
    pythonPrefixes: [env.VIRTUAL_ENV, env.CONDA_PREFIX].filter((p): p is string => !!p),
    home: env.HOME || homedir(),
  };
}
