// The native engine against its reference twin (plain fs.readSync/writeSync): random sizes, offsets
// and buffer alignments, many transfers in flight, every aio knob, on io_uring and on the thread
// pool; and failures as DSIOErrors naming file, offset and errno.
import { randomFillSync } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { DSConfigError, DSUnsupportedError } from '@ds/core';

import { AioEngine, allocAligned, isDSIOError, ReferenceIo, type AioOptions } from '../src/index.js';
import { readOffloadEnv } from '../src/env.js';
import { scratchDir, uringRefused } from './helpers.js';

const dir = scratchDir('engine');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const refusal = uringRefused();
if (refusal) console.warn(`engine tests: io_uring cases skipped: ${refusal}`);

/** A Uint8Array of n random bytes starting `misalign` bytes past an aligned address. */
function randomBytes(n: number, misalign: number): Uint8Array {
  const base = allocAligned(n + misalign);
  const a = base.subarray(misalign, misalign + n);
  randomFillSync(a);
  return a;
}

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : Math.min(a.length, b.length);
}

const BACKENDS = [
  ...(refusal ? [] : [{ name: 'io_uring', backend: 'io_uring' as const }]),
  { name: 'threads', backend: 'threads' as const },
];

// Sizes around the block and alignment edges; offsets aligned (direct) and not (buffered).
const CASES = [
  { bytes: 4096, offset: 0, misalign: 0 },
  { bytes: 65536 * 3, offset: 8192, misalign: 0 },
  { bytes: 65536 * 3 + 100, offset: 4096, misalign: 8 },
  { bytes: 1_000_003, offset: 12288, misalign: 3 },
  { bytes: 777, offset: 5, misalign: 1 },
  { bytes: 0, offset: 4096, misalign: 0 },
];

describe.each(BACKENDS)('AioEngine on $name', ({ backend }) => {
  const knobs: AioOptions[] = [
    { blockSize: 65536, queueDepth: 4, threads: 2 },
    { blockSize: 4096 * 3, queueDepth: 1, threads: 1, singleSubmit: true },
    { blockSize: 65536, queueDepth: 8, threads: 3, overlapEvents: false },
  ];

  it.each(knobs)('writes and reads what the reference reads and writes (%o)', (knob) => {
    const io = new AioEngine({ ...knob, backend });
    expect(io.backend).toBe(backend);
    const ref = new ReferenceIo();
    const path = join(dir, `rw-${backend}-${knob.blockSize}-${knob.queueDepth}.bin`);
    const f = io.open(path, { write: true, create: true });
    expect(f.direct).toBe(true);
    const rf = ref.open(path, { write: true });
    for (const c of CASES) {
      // engine write -> reference read
      const src = randomBytes(c.bytes, c.misalign);
      io.write(f, src, c.offset).waitSync();
      const back = new Uint8Array(c.bytes);
      ref.read(rf, back, c.offset).waitSync();
      expect(firstDiff(back, src), `engine write of ${c.bytes} B at ${c.offset}`).toBe(-1);
      // reference write -> engine read
      const src2 = randomBytes(c.bytes, 0);
      ref.write(rf, src2, c.offset).waitSync();
      const dst = randomBytes(c.bytes, c.misalign);
      const w = io.read(f, dst, c.offset);
      w.waitSync();
      expect(w.isCompleted()).toBe(true);
      expect(firstDiff(dst, src2), `engine read of ${c.bytes} B at ${c.offset}`).toBe(-1);
    }
    ref.close();
    io.close();
  });

  it('keeps many transfers in flight at once and completes each through wait()', async () => {
    const io = new AioEngine({ blockSize: 16384, queueDepth: 4, threads: 2, backend });
    const path = join(dir, `many-${backend}.bin`);
    const f = io.open(path, { write: true, create: true });
    const parts = Array.from({ length: 24 }, (_, i) => randomBytes(20000 + i * 4096, i % 3));
    const offsets = parts.map((_, i) => i * 256 * 1024);
    await Promise.all(parts.map((p, i) => io.write(f, p, offsets[i]!).wait()));
    const file = readFileSync(path);
    parts.forEach((p, i) => expect(firstDiff(new Uint8Array(file.buffer, file.byteOffset + offsets[i]!, p.length), p), `part ${i}`).toBe(-1));
    const back = parts.map((p) => new Uint8Array(p.length));
    const works = back.map((b, i) => io.read(f, b, offsets[i]!));
    await Promise.all(works.map((w) => w.wait()));
    expect(works.every((w) => w.isCompleted())).toBe(true);
    back.forEach((b, i) => expect(firstDiff(b, parts[i]!), `read part ${i}`).toBe(-1));
    io.close();
  });

  it('moves the bytes on its own threads while the JavaScript thread computes (no await, no waitSync)', () => {
    const io = new AioEngine({ backend, blockSize: 1 << 20, queueDepth: 8 });
    const f = io.open(join(dir, `overlap-${backend}.bin`), { write: true, create: true });
    const src = randomBytes(8 << 20, 0);
    const w = io.write(f, src, 0);
    // Busy "compute" on this thread: completion can only come from the I/O threads.
    const deadline = Date.now() + 20_000;
    let spins = 0;
    while (!w.isCompleted() && Date.now() < deadline) spins++;
    expect(w.isCompleted()).toBe(true);
    expect(spins).toBeGreaterThan(0);
    w.waitSync();
    io.close();
  });

  it('fails a read past the end of the file with a DSIOError naming file, offset and errno', async () => {
    const io = new AioEngine({ backend, blockSize: 4096 });
    const path = join(dir, `short-${backend}.bin`);
    writeFileSync(path, Buffer.alloc(8192, 7));
    const f = io.open(path);
    const err = await io.read(f, new Uint8Array(4096), 65536).wait().catch((e: unknown) => e);
    expect(isDSIOError(err)).toBe(true);
    expect((err as Error).message).toContain(`${path} at offset 65536`);
    expect((err as { failure: { errno: number } }).failure.errno).toBe(61);
    expect(() => io.read(f, new Uint8Array(4096), 65536).waitSync()).toThrow(/errno 61/);
    io.close();
  });

  it('fails a write on a full device with ENOSPC, naming the file and the offset', async () => {
    if (!existsSync('/dev/full')) return void console.warn('skipped: no /dev/full here');
    const io = new AioEngine({ backend, blockSize: 4096 });
    const f = io.open('/dev/full', { write: true, direct: false });
    const err = await io.write(f, new Uint8Array(10000), 0).wait().catch((e: unknown) => e);
    expect(isDSIOError(err)).toBe(true);
    expect((err as Error).message).toMatch(/aio write of 10000 B failed on \/dev\/full at offset \d+: .*errno 28 .*file system is full/);
    io.close();
  });
});

describe('AioEngine', () => {
  it('falls back to pread/pwrite threads when told (DS_AIO_BACKEND=threads) and says why', () => {
    expect(readOffloadEnv({ DS_AIO_BACKEND: 'threads' }).aioBackend).toBe('threads');
    expect(() => readOffloadEnv({ DS_AIO_BACKEND: 'libaio' })).toThrow(DSConfigError);
    expect(() => readOffloadEnv({ DS_AIO_TIMEOUT_MS: '-1' })).toThrow(/DS_AIO_TIMEOUT_MS/);
    const io = new AioEngine({ backend: 'threads' });
    expect(io.backend).toBe('threads');
    expect(io.fallbackReason).toBe('DS_AIO_BACKEND=threads');
    io.close();
  });

  it('moves bytes through the buffered descriptor when O_DIRECT is not asked for (or refused)', () => {
    const io = new AioEngine({ blockSize: 8192 });
    const path = join(dir, 'buffered.bin');
    const f = io.open(path, { write: true, create: true, direct: false });
    expect(f.direct).toBe(false);
    expect(f.directErrno).toBe(0);
    const src = randomBytes(50000, 0);
    io.write(f, src, 4096).waitSync();
    const dst = new Uint8Array(50000);
    io.read(f, dst, 4096).waitSync();
    expect(firstDiff(dst, src)).toBe(-1);
    io.close();
  });

  it('bounds every wait: a transfer slower than the timeout fails with DS_IO_TIMEOUT naming file and offset', async () => {
    const io = new AioEngine({ timeoutMs: 1, blockSize: 4096, queueDepth: 1 });
    const path = join(dir, 'slow.bin');
    const f = io.open(path, { write: true, create: true });
    // 16 MiB in 4 KiB requests one at a time: far longer than 1 ms.
    const big = allocAligned(16 << 20);
    const w = io.write(f, big, 4096);
    expect(() => w.waitSync()).toThrow(expect.objectContaining({ code: 'DS_IO_TIMEOUT', message: expect.stringMatching(new RegExp(`on ${path} at offset 4096 did not finish within 1 ms`)) }));
    await expect(io.write(f, big, 4096).wait()).rejects.toMatchObject({ code: 'DS_IO_TIMEOUT' });
    io.close(); // finishes what is queued, then joins the threads
    expect(w.isCompleted()).toBe(true);
  });

  it('rejects bad options and misuse with typed errors before any native call', () => {
    expect(() => new AioEngine({ blockSize: 1000 })).toThrow(/multiple of 4096/);
    expect(() => new AioEngine({ queueDepth: 0 })).toThrow(DSConfigError);
    expect(() => new AioEngine({ threads: 100 })).toThrow(/intra_op_parallelism/);
    const io = new AioEngine();
    const missing = join(dir, 'no', 'such', 'file');
    expect(() => io.open(missing)).toThrow(new RegExp(`cannot open ${missing} for reading: ENOENT`));
    const path = join(dir, 'ro.bin');
    writeFileSync(path, Buffer.alloc(4096));
    const f = io.open(path);
    expect(() => io.write(f, new Uint8Array(10), 0)).toThrow(DSUnsupportedError);
    expect(() => io.read(f, new Uint8Array(10), -1)).toThrow(DSConfigError);
    io.close();
    expect(() => io.read(f, new Uint8Array(10), 0)).toThrow(/engine is closed/);
  });
});
