// The one loader of @ds/comm-nccl's native addon (prebuilds/linux-x64/node.napi.node). Loading it
// touches neither CUDA nor NCCL: both are dlopened by probe().
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { DSNativeError } from '@ds/core';

/** What probe() found: each library's path (null when it did not load) and what went wrong. */
export interface NativeProbe {
  cudart: string | null;
  cudartError: string;
  /** CUDART_VERSION of the loaded runtime (13000 for 13.0) and the driver's CUDA version; 0 when unknown. */
  runtimeVersion: number;
  driverVersion: number;
  devices: number;
  /** Empty when the runtime reached a GPU. */
  driverError: string;
  nccl: string | null;
  ncclError: string;
  /** NCCL_VERSION_CODE of the loaded library (22703 for 2.27.3). */
  ncclVersion: number;
  usable: boolean;
}

/** The rejection value of a failed native op: kind 1 timeout, 2 NCCL error, 3 aborted, 4 CUDA error, 5 set-up. */
export interface NativeOpError {
  kind: number;
  message: string;
}

export interface NcclAddon {
  probe(cudartCandidates: readonly string[], ncclCandidates: readonly string[]): NativeProbe;
  /** True the first time in this JavaScript environment (the caller installs the exit handler). */
  claimExitHook(): boolean;
  /** ncclGetUniqueId: 128 bytes that rank 0 hands to every member through the store. */
  uniqueId(): Uint8Array;
  /** Collective over the members: resolves to the communicator's id. */
  createComm(id: Uint8Array, nranks: number, rank: number, device: number, timeoutMs: number): [Promise<number>, number];
  /** Resolves to the op's GPU time in ms. Throws a TypeError when a pointer is not memory of the group's GPU. */
  submit(
    comm: number,
    kind: number,
    seq: number,
    dtype: number,
    redop: number,
    count: number,
    peer: number,
    timeoutMs: number,
    input: bigint,
    output: bigint,
    computeStream: bigint,
  ): [Promise<number>, number];
  closeComm(comm: number, timeoutMs: number): [Promise<number>, number];
  isDone(id: number): boolean;
  waitSync(id: number, timeoutMs: number): NativeOpError | null;
  /** Aborts every communicator and stops their threads (process exit). Idempotent. */
  shutdown(): void;
  deviceAlloc(bytes: number, device: number): bigint;
  deviceFree(address: bigint, device: number): void;
  /** Synchronous cudaMemcpy between `view` and device memory at `address`. */
  copy(address: bigint, view: ArrayBufferView, device: number, toDevice: boolean): void;
}

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === '@ds/comm-nccl') return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new DSNativeError('@ds/comm-nccl: cannot find the package root (no @ds/comm-nccl package.json above the loader)');
    dir = parent;
  }
}

export function loadNcclAddon(): NcclAddon {
  const root = packageRoot();
  const require = createRequire(import.meta.url);
  try {
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    return nodeGypBuild(root) as NcclAddon;
  } catch (err) {
    throw new DSNativeError(
      `@ds/comm-nccl: the native addon could not be loaded from ${join(root, 'prebuilds')}: ${(err as Error).message}. ` +
        'An installed package ships prebuilds/linux-x64/node.napi.node; in a checkout, run `pnpm --filter @ds/comm-nccl build` first.',
      { cause: err },
    );
  }
}
