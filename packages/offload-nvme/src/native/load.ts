// The one loader of this package's native addon (prebuilds/linux-x64/node.napi.node), from src/ in
// tests or from the bundled dist/ in an installed package.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { DSNativeError } from '@ds/core';

/** A native error record: a failed transfer. */
export interface NativeIoError {
  errno: number;
  code: string;
  offset: number;
  what: string;
  path: string;
}

/** The raw engine; src/engine.ts validates every argument before calling it. */
export interface NativeAioEngine {
  /** [file id (-1: not opened), open errno, O_DIRECT errno (0: direct descriptor open)] */
  open(path: string, write: boolean, create: boolean, direct: boolean): [number, number, number];
  /** errno of reserving `bytes` for the file (0: done). */
  reserve(file: number, bytes: number): number;
  closeFile(file: number): void;
  /** kind 0 read, 1 write. */
  submit(kind: 0 | 1, file: number, buffer: Uint8Array, offset: number): [Promise<void>, number];
  isDone(id: number): boolean;
  waitSync(id: number, timeoutMs: number): NativeIoError | 'timeout' | null;
  backend(): 'io_uring' | 'threads';
  /** errno io_uring_setup gave when it was asked for and refused (0 otherwise). */
  uringErrno(): number;
  close(): void;
}

export interface AioAddon {
  AioEngine: new (blockSize: number, queueDepth: number, threads: number, singleSubmit: boolean, overlapEvents: boolean, useUring: boolean) => NativeAioEngine;
  allocAligned(bytes: number): ArrayBuffer;
  /** mlock (lock true) or munlock the buffer's pages; returns errno (0: done). */
  lockMemory(buffer: ArrayBuffer, lock: boolean): number;
}

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === '@ds/offload-nvme') return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new DSNativeError('@ds/offload-nvme: cannot find the package root (no @ds/offload-nvme package.json above the loader)');
    dir = parent;
  }
}

/** Loads the addon; the process-wide cache is the module system's own (require caches by path). */
export function loadAioAddon(): AioAddon {
  const root = packageRoot();
  const require = createRequire(import.meta.url);
  try {
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    return nodeGypBuild(root) as AioAddon;
  } catch (err) {
    throw new DSNativeError(
      `@ds/offload-nvme: the native aio addon could not be loaded from ${join(root, 'prebuilds')}: ${(err as Error).message}. ` +
        'An installed package ships prebuilds/linux-x64/node.napi.node; in a checkout, run `pnpm build` first.',
      { cause: err },
    );
  }
}
