// The cuda device without a GPU: the loader's search order, the status ds-report prints, the one
// sentence createCudaDevice throws, and (where nvcc built it) the binary's exports. None of these
// needs a GPU; the checks that a GPU would change are skipped there with the reason printed.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

// @ts-expect-error plain .mjs without types
import { findNvcc } from '@ds-internal/native-build';

import { DSUnsupportedError } from '../../src/errors.js';
import { createCudaDevice } from '../../src/devices/cuda.js';
import { createReferenceKernels } from '../../src/reference/index.js';
import { CUDA_BINARY_PATH, cudaBinaryCandidates, cudaStatus, findCudaBinary } from '../../src/native/load-cuda.js';
import { nvidiaLibraryDirs } from '../../src/native/nvidia-libs.js';

const packageRoot = join(import.meta.dirname, '..', '..');
const builtBinary = join(packageRoot, CUDA_BINARY_PATH);
const hasNvcc = findNvcc() !== null;
const status = cudaStatus();

describe('cuda binary search order', () => {
  const pkg = '/opt/node_modules/@ds/tensor-linux-x64-cuda';
  const root = '/work/packages/tensor';

  it('looks in the optional package before the checkout prebuilds', () => {
    const c = cudaBinaryCandidates(() => pkg, root);
    expect(c).toEqual([
      { source: 'package', path: join(pkg, CUDA_BINARY_PATH) },
      { source: 'checkout', path: join(root, CUDA_BINARY_PATH) },
    ]);
    expect(findCudaBinary(c, () => true)?.source).toBe('package');
    expect(findCudaBinary(c, (p) => p.startsWith(root))?.source).toBe('checkout');
  });

  it('falls back to the checkout when the package is not installed, and finds nothing when neither has it', () => {
    const c = cudaBinaryCandidates(() => null, root);
    expect(c.map((x) => x.source)).toEqual(['checkout']);
    expect(findCudaBinary(c, () => false)).toBeNull();
  });

  it('searches LD_LIBRARY_PATH first, then CUDA_HOME, then the nvidia-* wheels of a virtualenv; only existing directories, once each', () => {
    const root = mkdtempSync(join(tmpdir(), 'ds-nvidia-'));
    try {
      const ld = join(root, 'ld');
      const cudaHome = join(root, 'cuda');
      const wheel = join(root, 'venv', 'lib', 'python3.12', 'site-packages', 'nvidia', 'cublas', 'lib');
      for (const d of [ld, join(cudaHome, 'lib64'), wheel]) mkdirSync(d, { recursive: true });
      const dirs = nvidiaLibraryDirs({ LD_LIBRARY_PATH: `${ld}:${join(root, 'missing')}:${ld}`, CUDA_HOME: cudaHome, VIRTUAL_ENV: join(root, 'venv'), HOME: root });
      const mine = dirs.filter((d) => d.startsWith(root));
      expect(mine).toEqual([ld, join(cudaHome, 'lib64'), wheel]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('cuda binary', () => {
  it.skipIf(!hasNvcc)('was built where nvcc exists, and exports every KernelTable entry (skipped without nvcc)', () => {
    expect(existsSync(builtBinary), `${builtBinary} missing: run \`pnpm run build:native\``).toBe(true);
    const addon = createRequire(import.meta.url)(builtBinary) as Record<string, unknown>;
    const entries = Object.keys(createReferenceKernels()).filter((k) => !['name', 'setNumThreads', 'getNumThreads'].includes(k));
    expect(entries.length).toBeGreaterThan(25);
    const missing = entries.filter((k) => typeof addon[k] !== 'function');
    expect(missing).toEqual([]);
    for (const f of ['probe', 'openDevice', 'alloc', 'free', 'memoryStats', 'emptyCache', 'copyToHost', 'copyFromHost', 'synchronize', 'streamHandle', 'eventRecord', 'streamWaitEvent']) {
      expect(typeof addon[f], f).toBe('function');
    }
  });

  it.skipIf(!hasNvcc)('test-loads without throwing and reports a status code with a reason', () => {
    const addon = createRequire(import.meta.url)(builtBinary) as { probe(dirs: string[]): { code: string; reason: string; runtimeVersion: number } };
    const p = addon.probe([]);
    expect(['ok', 'no-driver', 'no-gpu', 'no-cublaslt']).toContain(p.code);
    expect(p.runtimeVersion).toBeGreaterThanOrEqual(12000);
    if (p.code !== 'ok') expect(p.reason.length).toBeGreaterThan(20);
  });
});

describe('cuda status without a GPU', () => {
  it.skipIf(status.available)(`reports cuda unavailable with one sentence (skipped: this machine has a usable GPU: ${status.gpu})`, () => {
    expect(status.available).toBe(false);
    expect(status.reason).toMatch(/driver|GPU|cuBLASLt|cuda binary/);
    expect(status.reason).toMatch(/\.$/);
    // In the workspace the optional package is linked and holds a copy of the checkout's binary
    // (its copy-prebuild step runs in @ds/tensor's build), and it is searched first.
    const pkgCopy = join(packageRoot, '..', 'tensor-linux-x64-cuda', CUDA_BINARY_PATH);
    if (hasNvcc) expect([builtBinary, pkgCopy]).toContain(status.binary);
  });

  it.skipIf(status.available)('createCudaDevice throws DSUnsupportedError naming what is missing and how to fix it', () => {
    let err: unknown;
    try {
      createCudaDevice();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DSUnsupportedError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/^cuda is unavailable: /);
    expect(msg).toContain(status.reason!);
    // One sentence: it ends once, and says what to do.
    expect(msg.match(/\.(\s|$)/g)?.length).toBe(1);
    expect(msg).toMatch(/install|update|check|build|run on/);
  });
});
