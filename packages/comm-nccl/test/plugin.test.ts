// The plugin's shape, how `nccl` fails on a machine without NCCL or a GPU (this one, in CI), and
// ds-config accepting a config that names the nccl backend.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { createRegistry, DSUnsupportedError, knownPluginByPackage, resolveCommBackend } from '@ds/core';
import { afterAll, describe, expect, it } from 'vitest';

import { nccl, ncclBackend, ncclStatus, readNcclEnv } from '../src/index.js';
import { unavailableReason } from '../src/status.js';
import type { NativeProbe } from '../src/native/load.js';

const packageDir = join(import.meta.dirname, '..');
const tmp = mkdtempSync(join(tmpdir(), 'comm-nccl-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const status = ncclStatus();
if (status.available) console.log(`[comm-nccl] NCCL ${status.version} and ${status.devices} GPU(s) found: the "missing" tests use a library path that does not exist`);

describe('comm-nccl plugin', () => {
  it('contributes the nccl comm backend under the name and factory the catalogue lists', () => {
    const p = nccl();
    expect(p.package).toBe('@ds/comm-nccl');
    expect(Object.keys(p.contributes.commBackends ?? {})).toEqual(['nccl']);
    const known = knownPluginByPackage('@ds/comm-nccl')!;
    expect([known.name, known.factory, known.commBackends]).toEqual([p.name, 'nccl', ['nccl']]);
    const registry = createRegistry().use(p);
    expect(registry.names('commBackends')).toContain('nccl');
  });

  it('asking for nccl where NCCL cannot load fails with one sentence naming what is missing and how to fix it', async () => {
    const env = readNcclEnv({ DS_NCCL_LIBRARY: join(tmp, 'missing', 'libnccl.so.2'), HOME: tmp });
    let err: unknown;
    try {
      ncclBackend({ env });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DSUnsupportedError);
    const message = (err as Error).message;
    expect(message).toMatch(/^comm backend 'nccl' cannot run here: /);
    expect(message).toContain(`libnccl.so.2 could not be loaded (${join(tmp, 'missing', 'libnccl.so.2')}: cannot open shared object file`);
    expect(message).toContain('pip install nvidia-nccl-cu13 (nvidia-nccl-cu12 for CUDA 12) or set LD_LIBRARY_PATH to the directory holding libnccl.so.2');
    if (!status.available && status.devices === 0) expect(message).toMatch(/no usable NVIDIA GPU was found \(.+\)|the CUDA runtime \(libcudart/);
    expect(message).not.toMatch(/\n/);
    expect(message.match(/; /g)?.length).toBe(1); // what is missing; how to fix it
  });

  it('through the registry, as initialize() asks for it, the same sentence comes back', async () => {
    if (status.available) return;
    const registry = createRegistry().use(nccl());
    // Core's environment of a single process (what readCoreEnv gives without RANK/WORLD_SIZE).
    const env: Parameters<typeof resolveCommBackend>[2] = {
      dist: undefined, commTimeoutMs: 300_000, commChunkBytes: undefined, commSpin: undefined, commTransport: 'auto',
      commIfAddr: undefined, hostId: undefined, shmDir: '/dev/shm', commBackend: 'nccl', logLevel: 'info',
    };
    await expect(resolveCommBackend(registry, 'nccl', env)).rejects.toThrow(new RegExp(`^comm backend 'nccl' cannot run here: .*${status.reason!.slice(0, 40).replace(/[()[\].*+?^$|\\]/g, '\\$&')}`));
  });

  it('ncclStatus reports what this machine has, for ds-report', () => {
    expect(typeof status.available).toBe('boolean');
    if (status.available) {
      expect(status.version).toMatch(/^2\.\d+\.\d+$/);
      expect(status.devices).toBeGreaterThan(0);
      expect(status.reason).toBeNull();
    } else {
      expect(status.reason).toMatch(/could not be loaded|no usable NVIDIA GPU/);
      expect(status.reason).not.toMatch(/\n/);
    }
  });

  it('the sentence covers each missing piece, and a too-old NCCL', () => {
    const probe: NativeProbe = { cudart: 'libcudart.so.13', cudartError: '', runtimeVersion: 13000, driverVersion: 13000, devices: 1, driverError: '', nccl: '/x/libnccl.so.2', ncclError: '', ncclVersion: 22703, usable: true };
    expect(unavailableReason(probe)).toBeNull();
    expect(unavailableReason({ ...probe, usable: false, cudart: null, cudartError: 'libcudart.so.13: cannot open shared object file' })).toBe(
      'the CUDA runtime (libcudart.so.13, .12 or .11.0) could not be loaded (libcudart.so.13: cannot open shared object file); install the CUDA toolkit or `pip install nvidia-cuda-runtime-cu12`, or set LD_LIBRARY_PATH to the directory holding libcudart.so',
    );
    expect(unavailableReason({ ...probe, usable: false, devices: 0, driverError: 'no CUDA-capable device is detected (cudaError 100)' })).toBe(
      'no usable NVIDIA GPU was found (no CUDA-capable device is detected (cudaError 100)); run on a machine with an NVIDIA GPU and its driver (nvidia-smi must list the GPU)',
    );
    expect(unavailableReason({ ...probe, usable: false, nccl: null, ncclError: '/x/libnccl.so.2 is NCCL 2.12.12, but @ds/comm-nccl needs NCCL 2.14 or newer' })).toBe(
      '/x/libnccl.so.2 is NCCL 2.12.12, but @ds/comm-nccl needs NCCL 2.14 or newer; install a newer NCCL (pip install -U nvidia-nccl-cu13, or nvidia-nccl-cu12 for CUDA 12)',
    );
  });

  it('NCCL_COMM_BLOCKING=1, which would stop the watchdog from aborting, is refused by name', () => {
    expect(() => readNcclEnv({ NCCL_COMM_BLOCKING: '1' })).toThrow(/^NCCL_COMM_BLOCKING=1 makes NCCL calls block the thread that enforces the comm timeout/);
  });
});

describe('ds-config check with @ds/comm-nccl installed', () => {
  // The installed bin, run from this package, finds the installed plugins (this one and @ds/onebit-adam) as a user's project would.
  const bin = join(packageDir, 'node_modules', '.bin', 'ds-config');
  const check = (config: object, ...flags: string[]) => {
    const file = join(tmp, `config-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(file, JSON.stringify(config));
    const r = spawnSync(bin, ['check', file, ...flags], { cwd: packageDir, encoding: 'utf8', timeout: 60_000 });
    return { code: r.status, out: `${r.stdout}${r.stderr}` };
  };

  it('accepts a config whose optimizer names comm_backend_name "nccl", strictly too', () => {
    const config = { train_batch_size: 16, train_micro_batch_size_per_gpu: 8, optimizer: { type: 'OneBitAdam', params: { lr: 1e-3, freeze_step: 10, comm_backend_name: 'nccl' } } };
    for (const flags of [[], ['--strict']]) {
      const r = check(config, '--world-size', '2', ...flags);
      expect(r.out).toContain('valid');
      expect(r.out).not.toContain('could not be loaded: ');
      expect(r.code, r.out).toBe(0);
    }
  }, 60_000);

  it('loads this package the way ds-config discovers plugins (import, then the catalogue factory)', async () => {
    const mod = (await import(join(packageDir, 'dist', 'index.js'))) as Record<string, unknown>;
    const factory = mod[knownPluginByPackage('@ds/comm-nccl')!.factory] as typeof nccl;
    expect(createRegistry().use(factory()).get('commBackends', 'nccl')).toBeDefined();
  });
});
