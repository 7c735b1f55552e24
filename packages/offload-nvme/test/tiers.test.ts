// The cpu and nvme tiers: regions, swaps compared with the reference engine, the memory tracker's
// accounting, extent reuse, scratch files removed at close and stale ones at the next start, and
// every bad nvme_path rejected before any work with path, need and free bytes.
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { DSConfigError, DSShapeError, type OffloadTier, type OffloadTierOptions } from '@ds/core';
import { Runtime } from '@ds/tensor';

import { AioEngine, createCpuTier, createNvmeTier, findStaleSwapFiles, freeBytes, HOST_DEVICE, ReferenceIo, swapFileName, type AioFile, type IoEngine } from '../src/index.js';
import { scratchDir } from './helpers.js';

const dir = scratchDir('tiers');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const logs: string[] = [];
const ctx = { rank: 0, log: (_level: string, m: string) => void logs.push(m) };
const nvme = (path: string | null, aio?: Record<string, unknown>): OffloadTierOptions => ({ kind: 'optimizer', section: { device: 'nvme', nvme_path: path }, ...(aio ? { aio } : {}) });

const random = (n: number) => randomFillSync(new Uint8Array(n));

/** Exercises a tier: three regions, partial swaps at offsets, a freed region's extent reused. */
async function roundTrip(tier: OffloadTier): Promise<Uint8Array[]> {
  const sizes = [10_000, 4096 * 5, 333];
  const regions = sizes.map((n, i) => tier.allocate(n, `region ${i}`));
  const data = sizes.map(random);
  await Promise.all(regions.map((r, i) => tier.swapOut(r, 0, data[i]!).wait()));
  const patch = random(100);
  tier.swapOut(regions[0]!, 5000, patch).waitSync();
  data[0]!.set(patch, 5000);
  const back = sizes.map((n) => new Uint8Array(n));
  await Promise.all(regions.map((r, i) => tier.swapIn(r, 0, back[i]!).wait()));
  back.forEach((b, i) => expect(Buffer.from(b).equals(Buffer.from(data[i]!)), `region ${i}`).toBe(true));
  expect(() => tier.swapIn(regions[2]!, 300, new Uint8Array(100))).toThrow(DSShapeError);
  tier.free(regions[1]!);
  expect(() => tier.swapIn(regions[1]!, 0, new Uint8Array(1))).toThrow(/not live/);
  const again = tier.allocate(4096 * 2, 'reuses the hole');
  const bytes = random(4096 * 2);
  tier.swapOut(again, 0, bytes).waitSync();
  const read = new Uint8Array(4096 * 2);
  tier.swapIn(again, 0, read).waitSync();
  expect(Buffer.from(read).equals(Buffer.from(bytes))).toBe(true);
  // The neighbours are untouched by the reused extent.
  const first = new Uint8Array(sizes[0]!);
  tier.swapIn(regions[0]!, 0, first).waitSync();
  expect(Buffer.from(first).equals(Buffer.from(data[0]!))).toBe(true);
  const s = tier.stats();
  expect(s.regions).toBe(3);
  expect(s.bytesReserved).toBe(10_000 + 333 + 4096 * 2);
  expect(s.swapOuts).toBe(5);
  return back;
}

describe('cpu tier', () => {
  it('holds regions in host memory counted as offload, outside the device budget', async () => {
    const runtime = new Runtime({ memoryLimit: 1000 });
    const tier = createCpuTier({ kind: 'optimizer', section: { device: 'cpu' } }, { runtime, log: ctx.log });
    await roundTrip(tier);
    // 18 KiB live on the host, past a 1000 B device budget, and nothing on the device.
    expect(runtime.tracker.liveBytes(HOST_DEVICE, 'offload')).toBe(10_000 + 333 + 4096 * 2);
    expect(runtime.tracker.liveBytes('cpu')).toBe(0);
    expect(tier.describe()).toMatch(/outside DS_MEMORY_LIMIT/);
    await tier.close();
    expect(runtime.tracker.liveBytes(HOST_DEVICE)).toBe(0);
  });
});

describe('offload section keys', () => {
  const lockedKiB = () => Number(/VmLck:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN);

  it('pin_memory page-locks the cpu tier\'s regions (VmLck grows, and shrinks at free)', async () => {
    const runtime = new Runtime();
    const tier = createCpuTier({ kind: 'optimizer', section: { device: 'cpu', pin_memory: true } }, { runtime, log: ctx.log });
    const before = lockedKiB();
    const r = tier.allocate(1 << 20, 'pinned');
    expect(lockedKiB() - before).toBeGreaterThanOrEqual(1024);
    expect(tier.describe()).toMatch(/page-locked/);
    tier.free(r);
    expect(lockedKiB() - before).toBeLessThan(1024);
    await tier.close();
  });

  it('rejects by name the keys a tier cannot act on, listing every one', () => {
    const runtime = new Runtime();
    const err = (() => {
      try {
        createCpuTier({ kind: 'optimizer', section: { device: 'cpu', buffer_count: 8, fast_init: true, ratio: 0.5, pipeline_read: true, pipeline_write: true } }, { runtime, log: ctx.log });
      } catch (e) {
        return e as DSConfigError;
      }
      throw new Error('expected a rejection');
    })();
    expect(err).toBeInstanceOf(DSConfigError);
    // buffer_count is @ds/zero's (the staging sets of the sub-group pipeline), not the tier's.
    expect(err.problems.map((p) => p.path)).toEqual(['zero_optimization.offload_optimizer.fast_init', 'zero_optimization.offload_optimizer.ratio']);
    expect(err.message).toMatch(/ratio: recognised but not supported .*partial optimizer offload/);
    const d = join(dir, 'pin-nvme');
    mkdirSync(d);
    expect(() => createNvmeTier({ kind: 'optimizer', section: { device: 'nvme', nvme_path: d, pin_memory: true } }, ctx)).toThrow(/offload_optimizer\.pin_memory: recognised but not supported with device 'nvme'/);
    // max_in_cpu and buffer_size pick which parameter units stay in host memory under nvme: with cpu they warn.
    logs.length = 0;
    createCpuTier({ kind: 'param', section: { device: 'cpu', max_in_cpu: 5, buffer_count: 2 } }, { runtime, log: ctx.log });
    expect(logs).toEqual([expect.stringMatching(/offload_param\.max_in_cpu has no effect with device 'cpu'/)]);
    // The defaults, pipelining switched on, and nvme_path (with a warning for cpu) are accepted.
    logs.length = 0;
    createCpuTier({ kind: 'optimizer', section: { device: 'cpu', nvme_path: '/x', buffer_count: 4, pipeline_read: true, pipeline_write: true, ratio: 1 } }, { runtime, log: ctx.log });
    expect(logs).toEqual([expect.stringMatching(/nvme_path has no effect with device 'cpu'/)]);
  });
});

describe.each([
  { name: 'native engine', make: undefined },
  { name: 'threads engine', make: (o: object) => new AioEngine({ ...o, backend: 'threads' }) },
  { name: 'reference engine', make: () => new ReferenceIo() },
])('nvme tier on the $name', ({ make }) => {
  it('swaps regions through one swap file per rank and removes it at close', async () => {
    const d = join(dir, `rt-${make ? 'x' : 'n'}-${Math.random().toString(16).slice(2)}`);
    mkdirSync(d);
    const tier = createNvmeTier(nvme(d, { block_size: 8192, queue_depth: 4, intra_op_parallelism: 2 }), { ...ctx, rank: 3 }, make);
    const files = readdirSync(d);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^ds-offload-optimizer-rank3-\d+-[0-9a-f]+\.swap$/);
    await roundTrip(tier);
    // The file holds the aligned extents: 12288 + 20480 + 4096.
    expect(statSync(join(d, files[0]!)).size).toBe(12288 + 20480 + 4096);
    await tier.close();
    expect(readdirSync(d)).toEqual([]);
  });
});

describe('nvme tier bad input', () => {
  const reject = (options: OffloadTierOptions, io?: () => IoEngine): string => {
    try {
      createNvmeTier(options, ctx, io);
    } catch (e) {
      expect(e).toBeInstanceOf(DSConfigError);
      return (e as Error).message;
    }
    throw new Error('expected the nvme tier to be refused');
  };

  it('names a missing, unset or non-directory nvme_path', () => {
    expect(reject(nvme(null))).toMatch(/zero_optimization\.offload_optimizer\.nvme_path is not set/);
    expect(reject(nvme(join(dir, 'nope')))).toMatch(new RegExp(`nvme_path ${join(dir, 'nope')} does not exist: create it`));
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    expect(reject({ kind: 'param', section: { nvme_path: file } })).toMatch(/offload_param\.nvme_path .* is not a directory/);
  });

  it('refuses a memory file system (tmpfs)', () => {
    if (!existsSync('/dev/shm')) return void console.warn('skipped: no /dev/shm');
    expect(reject(nvme('/dev/shm'))).toMatch(/nvme_path \/dev\/shm is on tmpfs, which keeps its files in memory/);
  });

  it('refuses a file system that refuses O_DIRECT, and removes the file it tried', () => {
    const d = join(dir, 'nodirect');
    mkdirSync(d);
    // An engine standing for a file system whose O_DIRECT open fails with EINVAL.
    const noDirect = (): IoEngine => {
      const inner = new ReferenceIo();
      return Object.assign(Object.create(inner) as IoEngine, { backend: 'nodirect', open: (p: string, o: object): AioFile => Object.assign(inner.open(p, o), { direct: false, directErrno: 22 }) });
    };
    expect(reject(nvme(d), noDirect)).toMatch(/is on a file system without O_DIRECT \(EINVAL opening .*\.swap with O_DIRECT\)/);
    expect(readdirSync(d)).toEqual([]);
  });

  it('refuses a directory it may not write', () => {
    const d = join(dir, 'readonly');
    mkdirSync(d);
    chmodSync(d, 0o555);
    chmodSync(dir, 0o755);
    if (process.getuid?.() === 0) {
      // root writes anyway: check the message through a uid that cannot, when one exists.
      const probe = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'true']);
      if (probe.status !== 0) return void console.warn('skipped: running as root and setpriv cannot drop privileges here');
      // The uid must also be able to read this checkout (a clone under a 0700 mktemp directory is not).
      const cwd = new URL('..', import.meta.url).pathname;
      const reads = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--import', 'tsx', '-e', '0'], { encoding: 'utf8', cwd });
      if (reads.status !== 0) return void console.warn(`skipped: uid 65534 cannot load this checkout (${(reads.stderr.trim().split('\n').find((l) => l.includes('Error')) ?? 'exit ' + reads.status).slice(0, 160)})`);
      const script = `import('${new URL('../src/index.ts', import.meta.url).pathname}').then((m) => { try { m.createNvmeTier({ kind: 'optimizer', section: { nvme_path: '${d}' } }, { rank: 0, log: () => {} }, () => new m.ReferenceIo()); } catch (e) { console.log(e.code + ': ' + e.message); } })`;
      const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--import', 'tsx', '-e', script], { encoding: 'utf8', cwd });
      expect(r.stdout + r.stderr).toMatch(/DS_CONFIG: .*nvme_path .*readonly is not writable \(EACCES creating/);
      return;
    }
    expect(reject(nvme(d))).toMatch(/is not writable \(EACCES/);
  });

  it('refuses a region the disk cannot hold, naming path, need and free bytes, before any swap', async () => {
    const d = join(dir, 'small');
    mkdirSync(d);
    const tier = createNvmeTier(nvme(d), ctx);
    const free = freeBytes(d);
    const need = free + 2 ** 40;
    expect(() => tier.allocate(need, 'rank 0 sub-group 0 optimizer state')).toThrow(
      new RegExp(`nvme_path ${d} is too small: rank 0 sub-group 0 optimizer state needs ${Math.ceil(need / 4096) * 4096} B more .* but \\d+ B are free`),
    );
    await tier.close();
  });
});

describe('stale swap files', () => {
  it('are found by name when their process is gone, removed at the next start with a line saying so, and live ones are kept', async () => {
    const d = join(dir, 'stale');
    mkdirSync(d);
    const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    const deadPid = Number(dead.stdout.trim());
    const staleName = swapFileName('optimizer', 1, deadPid);
    writeFileSync(join(d, staleName), Buffer.alloc(4096));
    const liveName = swapFileName('param', 0, process.ppid);
    writeFileSync(join(d, liveName), Buffer.alloc(4096));
    writeFileSync(join(d, 'model_states.safetensors'), 'not a swap file');
    expect(findStaleSwapFiles(d).map((s) => s.pid)).toEqual([deadPid]);
    logs.length = 0;
    const tier = createNvmeTier(nvme(d), ctx);
    expect(logs.some((l) => l.includes(`removed stale swap file ${join(d, staleName)} (rank 1 of a run whose process ${deadPid} is gone)`))).toBe(true);
    const left = readdirSync(d).sort();
    expect(left).toContain(liveName);
    expect(left).toContain('model_states.safetensors');
    expect(left).not.toContain(staleName);
    await tier.close();
  });

  it('are removed at exit when the tier was never closed', () => {
    const d = join(dir, 'exit');
    mkdirSync(d);
    const script = `import('${new URL('../src/index.ts', import.meta.url).pathname}').then((m) => { const t = m.createNvmeTier({ kind: 'optimizer', section: { nvme_path: '${d}' } }, { rank: 0, log: () => {} }); t.swapOut(t.allocate(4096, 'x'), 0, new Uint8Array(4096)).waitSync(); console.log(require('node:fs').readdirSync('${d}').length); })`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { encoding: 'utf8', cwd: new URL('..', import.meta.url).pathname });
    expect(r.stdout.trim(), r.stderr).toBe('1');
    expect(readdirSync(d)).toEqual([]);
  });
});
