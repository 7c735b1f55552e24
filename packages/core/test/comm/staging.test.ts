// Device buffers on a host-memory backend: every op stages sim memory through host copies and
// brings the result back on completion, on every path that observes it (wait, isCompleted,
// waitSync); host buffers pass straight through.
import { fromArray, Runtime, Tensor, withRuntime, type DeviceArray } from '@ds/tensor';
import { describe, expect, it } from 'vitest';

import { FakeWorld } from '../../src/comm/backends/fake.js';
import { withDeviceStaging } from '../../src/comm/staging.js';
import type { ProcessGroup } from '../../src/comm/types.js';

function simTensor(rt: Runtime, values: number[]): Tensor {
  return withRuntime(rt, () => fromArray(values, [values.length], { device: 'sim' }));
}

describe('device staging', () => {
  const rt = new Runtime();
  const staged = (n: number): ProcessGroup[] => new FakeWorld(n).groups.map((g) => withDeviceStaging(g, [], () => rt));
  const op = (t: Tensor) => ({ dtype: 'f32' as const, array: t.operand() });

  it('allReduce, broadcast, allGather, reduceScatter, allToAll and send/recv on sim buffers equal the host results', async () => {
    const [a, b] = staged(2);
    const xa = simTensor(rt, [1, 2, 3, 4]);
    const xb = simTensor(rt, [10, 20, 30, 40]);
    await Promise.all([a!.allReduce(op(xa)), b!.allReduce(op(xb))]);
    expect(xa.toArray()).toEqual([11, 22, 33, 44]);
    expect(xb.toArray()).toEqual([11, 22, 33, 44]);

    const ba = simTensor(rt, [5, 6]);
    const bb = simTensor(rt, [0, 0]);
    await Promise.all([a!.broadcast(op(ba), { root: 0 }), b!.broadcast(op(bb), { root: 0 })]);
    expect(bb.toArray()).toEqual([5, 6]);

    // In place: the input is block `rank` of the output, all on the device.
    const ga = simTensor(rt, [1, 2, 0, 0]);
    const gb = simTensor(rt, [0, 0, 3, 4]);
    const full = (t: Tensor) => ({ dtype: 'f32' as const, array: t.operand() });
    const block = (t: Tensor, r: number) => ({ dtype: 'f32' as const, array: (t.operand() as DeviceArray).subarray(2 * r, 2 * r + 2) });
    await Promise.all([a!.allGather(full(ga), block(ga, 0)), b!.allGather(full(gb), block(gb, 1))]);
    expect(ga.toArray()).toEqual([1, 2, 3, 4]);
    expect(gb.toArray()).toEqual([1, 2, 3, 4]);

    const ra = simTensor(rt, [1, 1, 2, 2]);
    const rb = simTensor(rt, [3, 3, 4, 4]);
    const oa = simTensor(rt, [0, 0]);
    const ob = simTensor(rt, [0, 0]);
    await Promise.all([a!.reduceScatter(op(oa), op(ra)), b!.reduceScatter(op(ob), op(rb))]);
    expect(oa.toArray()).toEqual([4, 4]);
    expect(ob.toArray()).toEqual([6, 6]);

    const ta = simTensor(rt, [1, 2]);
    const tb = simTensor(rt, [3, 4]);
    const ua = simTensor(rt, [0, 0]);
    const ub = simTensor(rt, [0, 0]);
    await Promise.all([a!.allToAll(op(ua), op(ta)), b!.allToAll(op(ub), op(tb))]);
    expect(ua.toArray()).toEqual([1, 3]);
    expect(ub.toArray()).toEqual([2, 4]);

    const sent = simTensor(rt, [7, 8, 9]);
    const got = simTensor(rt, [0, 0, 0]);
    await Promise.all([a!.send(op(sent), { dst: 1 }), b!.recv(op(got), { src: 0 })]);
    expect(got.toArray()).toEqual([7, 8, 9]);
  });

  it('copies the result back exactly once, whichever of isCompleted() and wait() sees the completion', async () => {
    const [a, b] = staged(2);
    const xa = simTensor(rt, [1]);
    const xb = simTensor(rt, [2]);
    const wa = a!.allReduce(op(xa));
    const wb = b!.allReduce(op(xb));
    await Promise.all([wa.wait(), wb.wait()]);
    expect(wa.isCompleted()).toBe(true);
    expect(xa.toArray()).toEqual([3]);
    // A later kernel write is not overwritten by a second copy-back.
    withRuntime(rt, () => rt.kernels('sim').fill('f32', xa.operand(), 1, 42));
    await wa.wait();
    expect(wa.isCompleted()).toBe(true);
    expect(xa.toArray()).toEqual([42]);
  });

  it('passes host buffers through and keeps the group itself (name, constructor, barrier)', async () => {
    const world = new FakeWorld(2);
    const [a, b] = world.groups.map((g) => withDeviceStaging(g, [], () => rt));
    expect(a!.constructor).toBe(world.groups[0]!.constructor);
    expect(a!.name).toBe(world.groups[0]!.name);
    const ha = new Float32Array([1, 2]);
    const hb = new Float32Array([3, 4]);
    await Promise.all([a!.allReduce({ dtype: 'f32', array: ha }), b!.allReduce({ dtype: 'f32', array: hb })]);
    expect([...ha]).toEqual([4, 6]);
    await Promise.all([a!.barrier(), b!.barrier()]);
  });
});
