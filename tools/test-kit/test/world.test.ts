import { spawnSync } from 'node:child_process';

import { describe, expect, it } from 'vitest';

import { describeWorld, lastJson, tsNodeArgs, withWorld } from '../src/index.js';

const worker = new URL('./workers/echo.ts', import.meta.url);

describe('withWorld', () => {
  it('runs n TypeScript ranks with the launcher environment and @ds/* mapped to the sources', async () => {
    const w = await withWorld(2, worker, { env: (rank) => ({ EXTRA: `x${rank}` }), args: ['--flag'] });
    expect(w.timedOut, describeWorld(w)).toBe(false);
    expect(w.ranks.map((r) => r.code), describeWorld(w)).toEqual([0, 0]);
    const out = w.ranks.map((r) => lastJson<{ rank: string; world: string; extra: string; args: string[]; tensorSrc: boolean }>(r.stdout));
    expect(out.map((o) => [o.rank, o.world, o.extra])).toEqual([['0', '2', 'x0'], ['1', '2', 'x1']]);
    expect(out[0]!.args).toEqual(['--flag']);
    expect(out[0]!.tensorSrc).toBe(true);
  });

  it('kills every rank at the hard timeout and says so', async () => {
    const w = await withWorld(2, worker, { env: { HANG: '1' }, timeoutMs: 3_000 });
    expect(w.timedOut).toBe(true);
    expect(w.ranks.map((r) => r.signal)).toEqual(['SIGKILL', 'SIGKILL']);
  });

  it('tsNodeArgs runs one process the same way', () => {
    const r = spawnSync(process.execPath, tsNodeArgs(worker), { env: { ...process.env, RANK: '0', WORLD_SIZE: '1' }, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(lastJson<{ rank: string }>(r.stdout).rank).toBe('0');
  });
});
