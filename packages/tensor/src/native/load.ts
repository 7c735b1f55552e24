// The one loader of the cpu addon: finds prebuilds/linux-x64/*.node with node-gyp-build, whether this
// file runs from src/ (tests) or from the bundled dist/ (installed package).
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { DSNativeError } from '../errors.js';
import { readTensorEnv } from '../env.js';

export interface CpuInfo {
  avx2: boolean;
  avx512f: boolean;
  avx512bf16: boolean;
  amx: boolean;
  /** The ISA kernels run at now. */
  isa: string;
}

/** The raw functions the cpu addon exports; src/kernels/ wraps them with validation. */
export interface CpuAddon {
  cpuInfo(): CpuInfo;
  setIsa(requested: string): string;
  axpyF32(alpha: number, x: Float32Array, y: Float32Array): void;
}

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === '@ds/tensor') return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new DSNativeError('@ds/tensor: cannot find the package root (no @ds/tensor package.json above the loader)');
    dir = parent;
  }
}

let cached: CpuAddon | undefined;

/** Loads the cpu addon once per module instance and applies DS_CPU_ISA. */
export function loadCpuAddon(): CpuAddon {
  if (cached) return cached;
  const root = packageRoot();
  const require = createRequire(import.meta.url);
  let addon: CpuAddon;
  try {
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    addon = nodeGypBuild(root) as CpuAddon;
  } catch (err) {
    throw new DSNativeError(
      `@ds/tensor: the cpu addon could not be loaded from ${join(root, 'prebuilds')}: ${(err as Error).message}. ` +
        'An installed package ships prebuilds/linux-x64/node.napi.node; in a checkout, run `pnpm build` first.',
      { cause: err },
    );
  }
  addon.setIsa(readTensorEnv().cpuIsa);
  cached = addon;
  return addon;
}
