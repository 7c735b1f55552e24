// ds-io: help, one measurement of a directory (scratch file removed), a read-only file, a small
// sweep printing a pasteable aio section, progress lines, and bad arguments as exit code 2.
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { aioConfigOf } from '../src/index.js';
import { main } from '../src/cli.js';
import { scratchDir } from './helpers.js';

const dir = scratchDir('dsio');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('ds-io', () => {
  it('prints its usage', async () => {
    const r = await main(['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^usage: ds-io PATH/);
    expect(r.out).toMatch(/--sweep/);
  });

  it('measures read and write GB/s in a directory and leaves nothing behind', async () => {
    const progress: string[] = [];
    const r = await main([dir, '--size', '4MiB', '--block-size', '256K', '--queue-depth', '4', '--threads', '2', '--loops', '2', '--json'], (l) => progress.push(l));
    expect(r.code, r.out).toBe(0);
    const m = JSON.parse(r.out) as { readGBps: number; writeGBps: number; bytes: number; blockSize: number; queueDepth: number; threads: number; direct: boolean };
    expect(m).toMatchObject({ bytes: 4 << 20, blockSize: 256 << 10, queueDepth: 4, threads: 2, direct: true });
    expect(m.readGBps).toBeGreaterThan(0);
    expect(m.writeGBps).toBeGreaterThan(0);
    expect(progress.filter((l) => /^ds-io: (read|write) \d\/2: /.test(l))).toHaveLength(4);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('reads a file without writing it, and overwrites it only with --write', async () => {
    const file = join(dir, 'data.bin');
    writeFileSync(file, Buffer.alloc(1 << 20, 1));
    const r = await main([file, '--backend', 'threads']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/threads, O_DIRECT: read [\d.]+ GB\/s, write -$/);
    expect(readFileSync(file).every((b) => b === 1)).toBe(true);
    // --write overwrites it (the first 64 KiB here).
    const w = await main([file, '--read', '--write', '--size', '64K']);
    expect(w.code, w.out).toBe(0);
    expect(w.out).toMatch(/read [\d.]+ GB\/s, write [\d.]+ GB\/s$/);
    expect(readFileSync(file).subarray(0, 65536).every((b) => b === 1)).toBe(false);
    rmSync(file);
  });

  it('--sweep tries the grid and prints the best aio section, valid for ds_config.json', async () => {
    const progress: string[] = [];
    const r = await main([dir, '--sweep', '--size', '2MiB', '--block-size', '64K,512K', '--queue-depth', '2,8', '--threads', '1'], (l) => progress.push(l));
    expect(r.code, r.out).toBe(0);
    expect(progress.filter((l) => l.startsWith('ds-io sweep '))).toHaveLength(4);
    const json = r.out.slice(r.out.indexOf('{'));
    const { aio } = JSON.parse(json) as { aio: Record<string, unknown> };
    expect(aioConfigOf(aio)).toEqual(aio);
    expect([65536, 524288]).toContain(aio.block_size);
    expect([2, 8]).toContain(aio.queue_depth);
  });

  it('answers bad arguments with exit code 2 and the reason', async () => {
    expect(await main([])).toMatchObject({ code: 2, out: expect.stringMatching(/give one PATH/) });
    expect(await main([dir, '--bogus'])).toMatchObject({ code: 2, out: expect.stringMatching(/unknown option --bogus/) });
    expect(await main([join(dir, 'missing')])).toMatchObject({ code: 2, out: expect.stringMatching(/does not exist/) });
    expect(await main([dir, '--block-size', '1000'])).toMatchObject({ code: 2, out: expect.stringMatching(/multiple of 4096/) });
    expect(await main([dir, '--backend', 'spdk'])).toMatchObject({ code: 2, out: expect.stringMatching(/use auto, io_uring or threads/) });
  });
});
