// Failure injection in real processes: a rank that exits or is killed mid-allreduce, one that
// hangs, and ranks that disagree about sizes, dtypes, ops or message lengths. Survivors must get a
// typed error naming the op, group, sequence number and culprit, well within the op timeout, and
// the group must refuse further work.
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import { describeWorld, withWorld, type WorldResult } from '@ds-internal/test-kit';

const script = new URL('./workers/faults.ts', import.meta.url);

interface Result {
  rank: number;
  outcome: string;
  name?: string;
  code?: string;
  ds?: boolean;
  message?: string;
  ms?: number;
  next?: string;
  nextMs?: number;
}

function results(w: WorldResult): Map<number, Result> {
  const out = new Map<number, Result>();
  for (const r of w.ranks) {
    const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
    if (line) out.set(r.rank, JSON.parse(line.slice(7)) as Result);
  }
  return out;
}

async function run(fault: string, n: number, opTimeoutMs: number, transport = 'auto'): Promise<{ w: WorldResult; res: Map<number, Result>; dump: string }> {
  const w = await withWorld(n, script, { env: { FAULT: fault, OP_TIMEOUT_MS: String(opTimeoutMs), HANG_MS: '3000', DS_COMM_TRANSPORT: transport }, timeoutMs: 60_000 });
  const dump = describeWorld(w);
  expect(w.timedOut, dump).toBe(false);
  const leftovers = readdirSync('/dev/shm').filter((f) => w.ranks.some((r) => f.startsWith(`ds-${r.pid}-`)));
  expect(leftovers, 'shared-memory segments left behind').toEqual([]);
  return { w, res: results(w), dump };
}

function expectUnusable(r: Result, dump: string): void {
  expect(r.next, dump).toMatch(/unusable after an earlier failure/);
  expect(r.nextMs!, dump).toBeLessThan(1000);
}

describe('comm failure handling', () => {
  for (const how of ['exit', 'kill'] as const) {
    it(`a rank that ${how === 'exit' ? 'exits' : 'is SIGKILLed'} mid-allreduce fails the others fast with DSCommError`, async () => {
      // The op timeout is long (20 s): death must be noticed through liveness, not the timeout.
      const { w, res, dump } = await run(how, 3, 20_000);
      expect(w.ranks[1]!.code ?? w.ranks[1]!.signal, dump).toBe(how === 'exit' ? 7 : 'SIGKILL');
      for (const rank of [0, 2]) {
        const r = res.get(rank)!;
        expect(r?.outcome, dump).toBe('error');
        expect(r.ds, dump).toBe(true);
        expect(r.code, dump).toBe('DS_COMM');
        expect(r.message, dump).toMatch(/allReduce on group 'world' \(seq \d+/);
        expect(r.message, dump).toMatch(/rank 1 \(pid \d+\) exited/);
        expect(r.ms!, dump).toBeLessThan(5000);
        expectUnusable(r, dump);
      }
    }, 70_000);
  }

  it('a rank that never arrives: DSTimeoutError naming op, group, seq and the missing rank', async () => {
    const { res, dump } = await run('hang', 3, 1500);
    for (const rank of [0, 2]) {
      const r = res.get(rank)!;
      expect(r?.name, dump).toBe('DSTimeoutError');
      expect(r.code, dump).toBe('DS_COMM_TIMEOUT');
      expect(r.message, dump).toMatch(/allReduce on group 'world' \(seq 1, rank \d of 3\)/);
      expect(r.message, dump).toMatch(/rank\(s\) 1 did not arrive/);
      expect(r.ms!, dump).toBeGreaterThanOrEqual(1400);
      expect(r.ms!, dump).toBeLessThan(6000);
      expectUnusable(r, dump);
    }
  }, 70_000);

  const mismatches: [string, RegExp][] = [
    ['size', /passed 1[02] elements where rank \d called allReduce with 1[02] f32 elements/],
    ['dtype', /passed dtype (bf16|f32) where rank \d called allReduce/],
    ['op', /called (broadcast|allReduce) where rank \d called (allReduce|broadcast)/],
  ];
  for (const [fault, pattern] of mismatches) {
    it(`ranks that disagree (${fault}) all fail with the difference reported`, async () => {
      const { res, dump } = await run(fault, 3, 20_000);
      for (const rank of [0, 1, 2]) {
        const r = res.get(rank)!;
        expect(r?.outcome, dump).toBe('error');
        expect(r.name, dump).toBe('DSCommError');
        expect(r.message, dump).toMatch(pattern);
        expectUnusable(r, dump);
      }
    }, 70_000);
  }

  it('over TCP: a killed rank is noticed through its closed sockets, long before the timeout', async () => {
    const { res, dump } = await run('kill', 3, 20_000, 'tcp');
    for (const rank of [0, 2]) {
      const r = res.get(rank)!;
      expect(r?.name, dump).toBe('DSCommError');
      expect(r.message, dump).toMatch(/allReduce on group 'world' \(seq \d+.*rank \d closed its connection/);
      expect(r.ms!, dump).toBeLessThan(5000);
      expectUnusable(r, dump);
    }
  }, 70_000);

  it('over TCP: a rank that never arrives times out naming it; mismatched sizes are reported', async () => {
    const hang = await run('hang', 2, 1500, 'tcp');
    expect(hang.res.get(0)?.name, hang.dump).toBe('DSTimeoutError');
    expect(hang.res.get(0)?.message, hang.dump).toMatch(/rank\(s\) 1 did not arrive/);
    const p2p = await run('p2p', 2, 20_000, 'tcp');
    expect(p2p.res.get(0)?.message, p2p.dump).toMatch(/rank 1 expected 12 f32 elements but rank 0 sent 10 f32/);
    expect(p2p.res.get(1)?.message, p2p.dump).toMatch(/rank 0 sent 10 f32 elements but rank 1 expected 12 f32/);
  }, 90_000);

  for (const fault of ['p2p', 'p2p-blocking']) {
    it(`send/recv with different lengths fails on both ends${fault === 'p2p-blocking' ? ' (a blocking recv)' : ''}`, async () => {
      const { res, dump } = await run(fault, 2, 20_000);
      expect(res.get(0)?.message, dump).toMatch(/send on group 'world' .*rank 1 expected 12 f32 elements but rank 0 sent 10 f32/);
      expect(res.get(1)?.message, dump).toMatch(/recv on group 'world' .*rank 0 sent 10 f32 elements but rank 1 expected 12 f32/);
      expectUnusable(res.get(1)!, dump);
    }, 70_000);
  }

  it('a blocking recv whose sender never sends ends at its timeout with DSTimeoutError', async () => {
    const { res, dump } = await run('p2p-blocking-hang', 2, 1500);
    const r = res.get(1)!;
    expect(r.name, dump).toBe('DSTimeoutError');
    expect(r.message, dump).toMatch(/recv on group 'world' .*timed out after 1500 ms for the sender; rank\(s\) 0 did not arrive/);
    expect(r.ms!, dump).toBeGreaterThanOrEqual(1400);
    expect(r.ms!, dump).toBeLessThan(6000);
  }, 70_000);
});
