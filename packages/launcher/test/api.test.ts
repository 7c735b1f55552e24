// launch(): real processes. Each failure test checks the process table afterwards by the pids the
// ranks wrote, so "no process of the run left" is measured, not assumed.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { launch } from '../src/api.js';
import { FIXTURES, alive, cleanupTempDirs, tempDir, waitFor, writtenPids } from './helpers.js';

afterAll(cleanupTempDirs);

describe('launch()', () => {
  it('gives 1-4 local ranks their environment and captures each rank\'s output', async () => {
    for (const nprocs of [1, 2, 3, 4]) {
      const r = await launch({ script: join(FIXTURES, 'env-dump.mjs'), args: ['--flag', 'a b'], nprocs, env: { DS_TEST_EXTRA: 'x' }, timeoutMs: 30_000 });
      expect(r.exitCode).toBe(0);
      expect(r.failedRank).toBeNull();
      expect(r.ranks.map((x) => x.rank)).toEqual([...Array(nprocs).keys()]);
      for (const rank of r.ranks) {
        const dump = JSON.parse(rank.output.trim()) as { env: Record<string, string | null>; argv: string[] };
        expect(dump.env).toMatchObject({
          RANK: String(rank.rank), LOCAL_RANK: String(rank.rank), WORLD_SIZE: String(nprocs), LOCAL_SIZE: String(nprocs),
          CROSS_RANK: '0', CROSS_SIZE: '1', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(r.masterPort), DS_TEST_EXTRA: 'x',
        });
        expect(Number(dump.env.DS_NUM_THREADS)).toBeGreaterThanOrEqual(1);
        expect(dump.env.OMP_NUM_THREADS).toBe(dump.env.DS_NUM_THREADS);
        expect(dump.argv).toEqual(['--flag', 'a b']);
        expect(rank.exitCode).toBe(0);
        expect(rank.signal).toBeNull();
      }
    }
  });

  it('runs TypeScript ranks through the loader', async () => {
    const r = await launch({ script: join(FIXTURES, 'hello.ts'), args: ['z'], nprocs: 2, timeoutMs: 30_000 });
    expect(r.exitCode).toBe(0);
    expect(r.ranks.map((x) => x.output.trim())).toEqual(['ts rank 0/2 args=z', 'ts rank 1/2 args=z']);
  });

  it('a rank that exits 3 stops the others; exit code 3, failed rank named, nothing left running', async () => {
    const dir = tempDir();
    const r = await launch({
      script: join(FIXTURES, 'ranks.mjs'), nprocs: 3, timeoutMs: 30_000, graceMs: 1000,
      env: { PID_DIR: dir, FAIL_RANK: '1', FAIL_CODE: '3', FAIL_DELAY_MS: '300', SPAWN_CHILD: '1' },
    });
    expect(r.exitCode).toBe(3);
    expect(r.failedRank).toBe(1);
    expect(r.ranks[1]).toMatchObject({ exitCode: 3, signal: null });
    expect(r.ranks[1]!.tail).toContain('rank 1 failing on purpose');
    expect(r.ranks[0]!.signal).toBe('SIGTERM');
    const pids = writtenPids(dir);
    expect(pids).toHaveLength(6); // 3 ranks + the child each started
    expect(pids.filter(alive)).toEqual([]);
  });

  it('a rank killed by a signal fails the run with 128+signal', async () => {
    const dir = tempDir();
    const run = launch({ script: join(FIXTURES, 'ranks.mjs'), nprocs: 2, timeoutMs: 30_000, env: { PID_DIR: dir } });
    await waitFor(() => existsSync(join(dir, 'rank1.pid')) && existsSync(join(dir, 'rank0.pid')), 20_000, 'both ranks up');
    process.kill(Number(readFileSync(join(dir, 'rank1.pid'), 'utf8')), 'SIGKILL');
    const r = await run;
    expect(r.exitCode).toBe(137);
    expect(r.failedRank).toBe(1);
    expect(r.ranks[1]).toMatchObject({ exitCode: null, signal: 'SIGKILL' });
    expect(writtenPids(dir).filter(alive)).toEqual([]);
  });

  it('a rank that ignores SIGTERM is killed after the grace period', async () => {
    const dir = tempDir();
    const r = await launch({
      script: join(FIXTURES, 'ranks.mjs'), nprocs: 2, timeoutMs: 30_000, graceMs: 700,
      env: { PID_DIR: dir, FAIL_RANK: '0', FAIL_CODE: '5', FAIL_DELAY_MS: '300', IGNORE_TERM: '1' },
    });
    expect(r.exitCode).toBe(5);
    expect(r.ranks[1]).toMatchObject({ exitCode: null, signal: 'SIGKILL' });
    expect(r.ranks[1]!.tail).toContain('rank 1 ignores SIGTERM');
    expect(writtenPids(dir).filter(alive)).toEqual([]);
  });

  it('the hard timeout stops everything and names the ranks still running', async () => {
    const dir = tempDir();
    const r = await launch({ script: join(FIXTURES, 'ranks.mjs'), nprocs: 2, timeoutMs: 1500, graceMs: 500, env: { PID_DIR: dir } });
    expect(r).toMatchObject({ exitCode: 124, timedOut: true, stillRunning: [0, 1], failedRank: null });
    expect(writtenPids(dir).filter(alive)).toEqual([]);
  });

  it('an AbortSignal stops the run', async () => {
    const dir = tempDir();
    const controller = new AbortController();
    const run = launch({ script: join(FIXTURES, 'ranks.mjs'), nprocs: 2, timeoutMs: 30_000, env: { PID_DIR: dir }, signal: controller.signal });
    await waitFor(() => writtenPids(dir).length === 2, 20_000, 'both ranks up');
    controller.abort();
    const r = await run;
    expect(r).toMatchObject({ exitCode: 143, stoppedBy: 'SIGTERM', failedRank: null });
    expect(writtenPids(dir).filter(alive)).toEqual([]);
  });

  it('rejects a missing script and a bad nprocs before starting anything', async () => {
    await expect(launch({ script: 'no-such.ts', cwd: FIXTURES })).rejects.toThrow(/Script 'no-such.ts' not found/);
    await expect(launch({ script: join(FIXTURES, 'exit-ok.mjs'), nprocs: 0 })).rejects.toThrow(/nprocs must be a positive integer/);
  });
});
