// The hook-side wait. The real blocking path (cpu backend, several processes) runs in every
// equivalence and checkpoint test; here: the groups that cannot block, and errors passing through.
import { DSCommError } from '../../src/errors.js';
import { FakeWorld } from '../../src/comm/backends/fake.js';
import type { Work } from '../../src/comm/types.js';
import { DSUnsupportedError } from '@ds/tensor';
import { describe, expect, it } from 'vitest';

import { waitSync } from '../../src/comm/sync-wait.js';

function gather(world: FakeWorld, rank: number, out: Int32Array): Work {
  return world.groups[rank]!.allGather({ dtype: 'i32', array: out }, { dtype: 'i32', array: Int32Array.of(rank + 10) });
}

describe('waitSync', () => {
  it('fails with DSUnsupportedError naming group, backend and op when the group completes ops only on the event loop', async () => {
    const world = new FakeWorld(2);
    const out0 = new Int32Array(2);
    const work = gather(world, 0, out0);
    let thrown: unknown;
    try {
      waitSync(work, world.groups[0]!, 'the parameter all-gather of unit 3');
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(DSUnsupportedError);
    const e = thrown as DSUnsupportedError;
    expect(e.code).toBe('DS_UNSUPPORTED');
    expect(e.message).toMatch(/^the parameter all-gather of unit 3 \(allGather, seq 0\) must be waited for inside a hook, but group 'world' on the 'fake' backend cannot block on it/);
    expect(e.cause).toBeInstanceOf(DSUnsupportedError);
    // The op itself is untouched: once the peer arrives it completes, and then waiting is allowed.
    const out1 = new Int32Array(2);
    await Promise.all([work.wait(), gather(world, 1, out1).wait()]);
    expect(work.isCompleted()).toBe(true);
    expect(() => waitSync(work, world.groups[0]!, 'the same gather')).not.toThrow();
    expect([...out0]).toEqual([10, 11]);
    expect([...out1]).toEqual([10, 11]);
  });

  it('rejects a Work without waitSync', () => {
    const world = new FakeWorld(1);
    const bare: Work = { op: 'reduceScatter', seq: 7, wait: () => Promise.resolve(), isCompleted: () => false, then: (ok) => Promise.resolve().then(ok) };
    expect(() => waitSync(bare, world.groups[0]!, 'the gradient reduction of unit 1')).toThrow(
      new DSUnsupportedError(
        "the gradient reduction of unit 1 (reduceScatter, seq 7) must be waited for inside a hook, but group 'world' on the 'fake' backend cannot block on it (its reduceScatter completes only on the event loop); use a backend that can (cpu, nccl), and on a group spanning several hosts set zero_optimization.reduce_scatter to true (the multi-host allReduce is event-loop only)",
      ),
    );
  });

  it("throws a failed op's own comm error", async () => {
    const world = new FakeWorld(2, { fault: ({ rank }) => (rank === 1 ? new DSCommError('injected link failure') : undefined) });
    const work = gather(world, 1, new Int32Array(2));
    await expect(work.wait()).rejects.toThrow('injected link failure');
    let thrown: unknown;
    try {
      waitSync(work, world.groups[1]!, 'the parameter all-gather of unit 0');
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(DSCommError);
    expect((thrown as Error).message).toBe('injected link failure');
  });
});
