import { describe, expect, it } from 'vitest';

import { DSCommError, DSTimeoutError } from '../../../src/errors.js';
import { FakeWorld } from '../../../src/comm/backends/fake.js';
import { CommsLogger, referenceReduce, type CommBuffer } from '../../../src/comm/index.js';

const f32 = (...v: number[]): CommBuffer => ({ dtype: 'f32', array: new Float32Array(v) });

describe('FakeWorld (in-process ranks)', () => {
  it('runs every op with the reference arithmetic', async () => {
    const w = new FakeWorld(3);
    const bufs = [f32(1, 2), f32(10, 20), f32(100, 200)];
    await Promise.all(w.groups.map((g, r) => g.allReduce(bufs[r]!, { op: 'sum' }).wait()));
    for (const b of bufs) expect([...b.array]).toEqual([111, 222]);

    const rsIn = [0, 1, 2].map((r) => f32(r, r, r, r, r, r));
    const rsOut = [0, 1, 2].map(() => f32(0, 0));
    await Promise.all(w.groups.map((g, r) => g.reduceScatter(rsOut[r]!, rsIn[r]!, { op: 'max' })));
    for (const o of rsOut) expect([...o.array]).toEqual([2, 2]);

    const agOut = [0, 1, 2].map(() => f32(0, 0, 0));
    await Promise.all(w.groups.map((g, r) => g.allGather(agOut[r]!, f32(r * 10))));
    for (const o of agOut) expect([...o.array]).toEqual([0, 10, 20]);

    const bc = [f32(0), f32(0), f32(7)];
    await Promise.all(w.groups.map((g, r) => g.broadcast(bc[r]!, { root: 2 })));
    expect(bc.map((b) => b.array[0])).toEqual([7, 7, 7]);

    const a2aIn = [0, 1, 2].map((r) => f32(r * 3, r * 3 + 1, r * 3 + 2));
    const a2aOut = [0, 1, 2].map(() => f32(0, 0, 0));
    await Promise.all(w.groups.map((g, r) => g.allToAll(a2aOut[r]!, a2aIn[r]!)));
    expect([...a2aOut[1]!.array]).toEqual([1, 4, 7]);

    const got = f32(0, 0);
    await Promise.all([w.groups[0]!.send(f32(5, 6), { dst: 2 }).wait(), w.groups[2]!.recv(got, { src: 0 }).wait()]);
    expect([...got.array]).toEqual([5, 6]);

    const sub = w.subgroup([2, 0]);
    const sb = [f32(1), f32(2)];
    await Promise.all(sub.map((g, i) => g.allReduce(sb[i]!)));
    expect(sb.map((b) => b.array[0])).toEqual([3, 3]);
    await Promise.all(w.groups.map((g) => g.barrier()));
  });

  it('bf16 matches referenceReduce bit for bit, and the logger sees each op', async () => {
    const w = new FakeWorld(2);
    const logger = new CommsLogger({ enabled: true });
    logger.attach(w.groups[0]!);
    const a = new Uint16Array([0x3f80, 0x4000, 0xc2c8]);
    const b = new Uint16Array([0x3b80, 0x4040, 0x42c8]);
    const want = new Uint16Array(3);
    referenceReduce('bf16', 'avg', [a, b], want);
    const bufs = [{ dtype: 'bf16' as const, array: a.slice() }, { dtype: 'bf16' as const, array: b.slice() }];
    await Promise.all(w.groups.map((g, r) => g.allReduce(bufs[r]!, { op: 'avg' })));
    expect([...bufs[0]!.array]).toEqual([...want]);
    expect([...bufs[1]!.array]).toEqual([...want]);
    expect(logger.stats().get('all_reduce')?.get(6)?.count).toBe(1);
  });

  it('reports mismatches, timeouts with the missing ranks, and injected faults; then refuses work', async () => {
    const w = new FakeWorld(3, { timeoutMs: 50 });
    const r = await Promise.allSettled(w.groups.map((g, q) => g.allReduce(q === 1 ? f32(1, 2, 3) : f32(1, 2)).wait()));
    for (const x of r) {
      expect(x.status).toBe('rejected');
      expect((x as PromiseRejectedResult).reason).toBeInstanceOf(DSCommError);
      expect(String((x as PromiseRejectedResult).reason.message)).toMatch(/rank 1 called allReduce with 3 f32 elements/);
    }
    await expect(w.groups[0]!.barrier().wait()).rejects.toThrow(/unusable after an earlier failure/);

    const hang = new FakeWorld(3, { timeoutMs: 50, fault: ({ rank }) => (rank === 2 ? 'hang' : undefined) });
    const h = await Promise.allSettled(hang.groups.slice(0, 2).map((g) => g.allReduce(f32(1)).wait()));
    for (const x of h) {
      expect((x as PromiseRejectedResult).reason).toBeInstanceOf(DSTimeoutError);
      expect(String((x as PromiseRejectedResult).reason.message)).toMatch(/allReduce on group 'world' \(seq 0\).*rank\(s\) 2 did not arrive/);
    }

    const boom = new FakeWorld(2, { fault: ({ rank, seq }) => (rank === 0 && seq === 1 ? new DSCommError('injected') : undefined) });
    await Promise.all(boom.groups.map((g) => g.barrier()));
    await expect(boom.groups[0]!.barrier().wait()).rejects.toThrow('injected');
    await expect(boom.groups[1]!.barrier().wait()).rejects.toThrow(/unusable after an earlier failure \(rank 0: injected\)/);
  });
});
