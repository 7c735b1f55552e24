// The one loader of @ds/comm-mpi's native addon (prebuilds/linux-x64/node.napi.node). Loading it
// never touches MPI: libmpi.so.40 is dlopened by the first init().
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { DSNativeError } from '@ds/core';

export interface MpiInfo {
  /** This process's rank in MPI_COMM_WORLD and its size. */
  rank: number;
  size: number;
  /** MPI_Get_library_version's first line, e.g. "Open MPI v4.1.4". */
  version: string;
  library: string;
  /** True for the call that started MPI in this JavaScript environment. */
  first: boolean;
}

/** The rejection value of a failed native op: kind 1 timeout, 2 peer exited, 3 aborted, 4 MPI error, 5 setup. */
export interface NativeOpError {
  kind: number;
  message: string;
  missing: number[];
}

export interface MpiAddon {
  /**
   * Loads libmpi (`library`, else libmpi.so.40 from the loader's path and the usual Open MPI places)
   * and initialises MPI on the progress thread; the first call in a process decides. Throws one
   * sentence when MPI is missing.
   */
  init(library?: string): MpiInfo;
  /** Collective over the members: a communicator of these MPI world ranks; pids of same-host peers (0 elsewhere). */
  createComm(worldRanks: number[], pids: number[], tag: number, timeoutMs: number): [Promise<number>, number];
  freeComm(comm: number): [Promise<number>, number];
  submit(
    comm: number,
    size: number,
    rank: number,
    kind: number,
    seq: number,
    dtype: number,
    redop: number,
    count: number,
    root: number,
    timeoutMs: number,
    input: ArrayBufferView | null,
    output: ArrayBufferView | null,
  ): [Promise<number>, number];
  /** Stops the progress thread; `clean` (exit code 0) also finalises MPI. Idempotent. */
  shutdown(clean: boolean): void;
  isDone(id: number): boolean;
  waitSync(id: number, timeoutMs: number): NativeOpError | null;
}

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === '@ds/comm-mpi') return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new DSNativeError('@ds/comm-mpi: cannot find the package root (no @ds/comm-mpi package.json above the loader)');
    dir = parent;
  }
}

export function loadMpiAddon(): MpiAddon {
  const root = packageRoot();
  const require = createRequire(import.meta.url);
  try {
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    return nodeGypBuild(root) as MpiAddon;
  } catch (err) {
    throw new DSNativeError(
      `@ds/comm-mpi: the native addon could not be loaded from ${join(root, 'prebuilds')}: ${(err as Error).message}. ` +
        'An installed package ships prebuilds/linux-x64/node.napi.node; in a checkout, run `pnpm --filter @ds/comm-mpi build` first.',
      { cause: err },
    );
  }
}
