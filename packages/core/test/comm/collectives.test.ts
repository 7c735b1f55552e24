// Every op, dtype and group size 1-4 in real processes (test/comm/workers/collectives.ts checks
// each result element by element against the TypeScript reference, bitwise). A 64 KiB staging
// chunk makes the larger cases cross several chunks and slot halves; counts are not multiples of
// the group size.
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import { describeWorld, withWorld } from '@ds-internal/test-kit';

const script = new URL('./workers/collectives.ts', import.meta.url);

function leftovers(pids: number[]): string[] {
  return readdirSync('/dev/shm').filter((f) => pids.some((p) => f.startsWith(`ds-${p}-`)));
}

describe('collectives in real processes', () => {
  for (const n of [1, 2, 3, 4]) {
    it(`world of ${n}: all ops x all dtypes${n >= 3 ? ' + subgroups' : ''}, registered buffers`, async () => {
      const w = await withWorld(n, script, { env: { DS_COMM_CHUNK: '64k', COUNTS: n === 4 ? '0,3,70001' : '0,1,3,1001,70001' }, timeoutMs: 90_000 });
      const dump = describeWorld(w);
      expect(w.timedOut, dump).toBe(false);
      for (const r of w.ranks) expect(r.code, dump).toBe(0);
      const out = w.ranks[0]!.stdout;
      for (const dtype of ['f32', 'bf16', 'f16', 'i32', 'u8']) {
        expect(out, dump).toContain(`ok world allReduce ${dtype} x70001`);
        expect(out, dump).toContain(`ok world reduceScatter/allGather/broadcast/allToAll/send-recv ${dtype} x70001`);
        if (n >= 3) expect(out, dump).toContain(`ok sub[${n - 1},0] allReduce ${dtype} x70001`);
      }
      expect(out).toContain('ok world pipelined ops, barrier');
      expect(out).toContain('ok registered allReduce');
      if (n === 4) expect(out).toContain('ok disjoint subgroups');
      if (n >= 3) expect(out).toContain('ok world send/recv between two members, then a collective');
      expect(leftovers(w.ranks.map((r) => r.pid))).toEqual([]);
    }, 120_000);
  }

  it('two staged hosts of two ranks each: hierarchical allReduce, TCP for the rest', async () => {
    const w = await withWorld(4, script, {
      env: (rank) => ({ DS_HOST_ID: rank < 2 ? 'hostA' : 'hostB', DS_COMM_CHUNK: '64k', COUNTS: '0,3,70001', TOLERANT: '1' }),
      timeoutMs: 120_000,
    });
    const dump = describeWorld(w);
    expect(w.timedOut, dump).toBe(false);
    for (const r of w.ranks) expect(r.code, dump).toBe(0);
    const out = w.ranks[0]!.stdout;
    expect(out).toContain('ok world is a HierarchicalProcessGroup');
    for (const dtype of ['f32', 'bf16', 'f16', 'i32', 'u8']) expect(out, dump).toContain(`ok world allReduce ${dtype} x70001`);
    expect(out).toContain('ok sub[3,0] allReduce f32 x70001');
    expect(out).toContain('ok registered allReduce');
    expect(leftovers(w.ranks.map((r) => r.pid))).toEqual([]);
  }, 150_000);

  // The transport between hosts, forced on one host: same checks, bit-identical results.
  for (const n of [2, 3]) {
    it(`world of ${n} over TCP: all ops x all dtypes${n >= 3 ? ' + subgroup' : ''}`, async () => {
      const w = await withWorld(n, script, { env: { DS_COMM_CHUNK: '64k', DS_COMM_TRANSPORT: 'tcp', COUNTS: '0,3,70001' }, timeoutMs: 90_000 });
      const dump = describeWorld(w);
      expect(w.timedOut, dump).toBe(false);
      for (const r of w.ranks) expect(r.code, dump).toBe(0);
      const out = w.ranks[0]!.stdout;
      for (const dtype of ['f32', 'bf16', 'f16', 'i32', 'u8']) {
        expect(out, dump).toContain(`ok world allReduce ${dtype} x70001`);
        expect(out, dump).toContain(`ok world reduceScatter/allGather/broadcast/allToAll/send-recv ${dtype} x70001`);
      }
      expect(out).toContain('ok world pipelined ops, barrier');
      expect(out).toContain('ok world is a CpuProcessGroup');
      if (n === 3) expect(out).toContain('ok sub[2,0] allReduce f32 x70001');
    }, 120_000);
  }
});
