// The addon: built by tools/native-build's cpu target (g++ only: it dlopens the CUDA runtime and
// NCCL, so neither nvcc nor a CUDA toolkit is needed), and loadable here without either library.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { loadNcclAddon } from '../src/native/load.js';

const packageDir = join(import.meta.dirname, '..');

describe('native addon', () => {
  it('builds with the cpu target into prebuilds/linux-x64, with nvcc or without (no cuda target)', () => {
    for (const NVCC of [undefined, 'none']) {
      const r = spawnSync(join(packageDir, 'node_modules', '.bin', 'ds-native-build'), [], { cwd: packageDir, encoding: 'utf8', env: { ...process.env, ...(NVCC ? { NVCC } : {}) }, timeout: 300_000 });
      expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(/cpu (up to date|built \(\d+\/3 compiled\)) -> prebuilds\/linux-x64\/node\.napi\.node/);
      expect(r.stdout).not.toMatch(/cuda/);
    }
    expect(existsSync(join(packageDir, 'prebuilds', 'linux-x64', 'node.napi.node'))).toBe(true);
  }, 300_000);

  it('loads without touching CUDA or NCCL and exports every entry point', () => {
    const addon = loadNcclAddon();
    const names = ['probe', 'claimExitHook', 'uniqueId', 'createComm', 'submit', 'closeComm', 'isDone', 'waitSync', 'shutdown', 'deviceAlloc', 'deviceFree', 'copy'];
    expect(Object.keys(addon).sort()).toEqual([...names].sort());
    for (const n of names) expect(typeof (addon as unknown as Record<string, unknown>)[n]).toBe('function');
  });

  it('refuses NCCL calls before a probe found NCCL, with an error instead of a crash', () => {
    const addon = loadNcclAddon();
    expect(() => addon.uniqueId()).toThrow(/NCCL is not loaded: call probe\(\) first/);
    expect(() => addon.deviceAlloc(16, 0)).toThrow(/NCCL is not loaded/);
  });
});
