// The one loader of @ds/core's native addon (prebuilds/linux-x64/node.napi.node), from src/ in
// tests or from the bundled dist/ in an installed package.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { DSNativeError } from '@ds/tensor';

/** The raw native group; src/comm/backends/cpu.ts validates everything before calling it. */
export interface NativeGroupHandle {
  /** Queues an op; returns its promise (resolving to the ms it ran) and an id for isDone/waitSync. */
  submit(kind: number, seq: number, dtype: number, redop: number, count: number, root: number, timeoutMs: number, input: ArrayBufferView | null, output: ArrayBufferView | null): [Promise<number>, number];
  /**
   * Runs a recv (submit's arguments) on the calling thread, blocking until it is over (polling for up
   * to pollUs microseconds before sleeping): null on
   * success, its error record on failure, undefined when the channel's thread is busy (nothing done).
   */
  recvHere(kind: number, seq: number, dtype: number, redop: number, count: number, root: number, timeoutMs: number, input: null, output: ArrayBufferView, pollUs: number): NativeOpError | null | undefined;
  /** Whether the comm thread finished op `id` (true once delivered, too). */
  isDone(id: number): boolean;
  /** Blocks until op `id` finished: null on success (or when already delivered), else its error record. */
  waitSync(id: number, timeoutMs: number): NativeOpError | null;
  destroy(): void;
  abort(reason: string): void;
  regCreate(name: string, bytes: number, id: number): ArrayBuffer;
  regAttach(id: number, names: string[]): void;
  /** TCP groups: the port this rank listens on. */
  port(): number;
  /** TCP groups: connects the mesh (one "host:port" per group rank). */
  connect(addrs: string[], timeoutMs: number): [Promise<number>, number];
}

export interface CoreAddon {
  NativeGroup: new (
    name: string,
    rank: number,
    size: number,
    create: boolean,
    chunkBytes: number,
    p2pBytes: number,
    spin: number,
    transport?: 'shm' | 'tcp',
    bindHost?: string,
  ) => NativeGroupHandle;
  shmUnlink(name: string): boolean;
}

/** The rejection value of a failed native op. */
export interface NativeOpError {
  kind: number;
  message: string;
  missing: number[];
}

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === '@ds/core') return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new DSNativeError('@ds/core: cannot find the package root (no @ds/core package.json above the loader)');
    dir = parent;
  }
}

/** Loads the addon; a process-wide cache is the module system's own (require caches by path). */
export function loadCoreAddon(): CoreAddon {
  const root = packageRoot();
  const require = createRequire(import.meta.url);
  try {
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    return nodeGypBuild(root) as CoreAddon;
  } catch (err) {
    throw new DSNativeError(
      `@ds/core: the native comm addon could not be loaded from ${join(root, 'prebuilds')}: ${(err as Error).message}. ` +
        'An installed package ships prebuilds/linux-x64/node.napi.node; in a checkout, run `pnpm build` first.',
      { cause: err },
    );
  }
}
