// Work.waitSync() and isCompleted() from code that never yields to the event loop.
import { describe, expect, it } from 'vitest';

import { describeWorld, withWorld } from '@ds-internal/test-kit';
import { DSUnsupportedError } from '@ds/tensor';

import { FakeWorld } from '../../src/comm/backends/fake.js';

describe('blocking completion', () => {
  it('cpu backend: waitSync returns with the result in place, isCompleted turns true while blocked, errors are thrown', async () => {
    const w = await withWorld(2, new URL('./workers/sync.ts', import.meta.url), { timeoutMs: 60_000 });
    const dump = describeWorld(w);
    expect(w.ranks.map((r) => r.code), dump).toEqual([0, 0]);
    expect(w.ranks[0]!.stdout, dump).toMatch(/RESULT DSCommError: allReduce on group 'world' \(seq 2, rank 0 of 2\) failed: rank 1 passed 3 elements/);
    expect(w.ranks[1]!.stdout, dump).toMatch(/RESULT DSCommError: .*rank 0 passed 2 elements/);
    for (const r of w.ranks) {
      const got = JSON.parse(/EVENTS (.*)/.exec(r.stdout)![1]!) as { heardAtOnce: number; events: { seq: number; ok: boolean }[] };
      // Observers hear of an op finished through waitSync right away, and of every op exactly once.
      expect(got.heardAtOnce, dump).toBe(1);
      expect([...got.events].sort((a, b) => a.seq - b.seq), dump).toEqual([{ seq: 0, ok: true }, { seq: 1, ok: true }, { seq: 2, ok: false }]);
    }
  }, 70_000);

  it('the in-process fake cannot block: DSUnsupportedError until the op has settled', async () => {
    const world = new FakeWorld(2);
    const bufs = [0, 1].map(() => ({ dtype: 'f32' as const, array: new Float32Array([1]) }));
    const works = world.groups.map((g, r) => g.allReduce(bufs[r]!));
    expect(() => works[0]!.waitSync!()).toThrow(DSUnsupportedError);
    await Promise.all(works.map((x) => x.wait()));
    expect(() => works[0]!.waitSync!()).not.toThrow();
    expect(bufs[0]!.array[0]).toBe(2);
  });
});
