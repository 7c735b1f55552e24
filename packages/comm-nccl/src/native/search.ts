// Where the CUDA runtime and NCCL are looked for, in order: the dynamic loader's own search (rpath,
// LD_LIBRARY_PATH as it was at start-up, the ldconfig cache), then the directories a CUDA install or
// Python's nvidia-* wheels (nvidia-nccl-cu13, nvidia-cuda-runtime-cu12, ...) put them in. The addon
// dlopens the first candidate that loads.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { nvidiaLibraryDirs } from '@ds/tensor';

import type { NcclEnv } from '../env.js';

export const NCCL_SONAME = 'libnccl.so.2';
/** CUDA 13, 12 and 11 runtimes; any of them serves (NCCL carries its own runtime; device pointers are the driver's). */
export const CUDART_SONAMES = ['libcudart.so.13', 'libcudart.so.12', 'libcudart.so.11.0'] as const;

/** Directories that may hold the libraries, most specific first (one list with @ds/tensor's cuda loader and ds-report). */
export function searchDirs(env: NcclEnv): string[] {
  return nvidiaLibraryDirs(env.search);
}

/** The files to try, bare sonames first (the loader's search), then every existing file in `dirs`. */
export function libraryCandidates(env: NcclEnv, dirs: readonly string[] = searchDirs(env)): { cudart: string[]; nccl: string[] } {
  const inDirs = (names: readonly string[]) => dirs.flatMap((d) => names.map((n) => join(d, n))).filter((f) => existsSync(f));
  return {
    cudart: [...CUDART_SONAMES, ...inDirs(CUDART_SONAMES)],
    nccl: env.library ? [env.library] : [NCCL_SONAME, ...inDirs([NCCL_SONAME])],
  };
}
