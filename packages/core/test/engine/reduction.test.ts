// Core's unit reduction and its DeepSpeed knobs on an in-process world of 2: prescale_gradients
// divides before a sum, gradient_predivide_factor f divides by f before and scales the kept range by
// f / world after; with neither, the op is an average. Each records what reached the wire, so
// removing an effect fails here even where the averaged result would look the same.
import { describe, expect, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';
import { getRuntime } from '@ds/tensor';

import { FakeWorld } from '../../src/comm/backends/fake.js';
import type { CommBuffer, ProcessGroup, ReduceOptions, Work } from '../../src/comm/types.js';
import { planUnits } from '../../src/engine/partition.js';
import { standardUnitReduce, type GradScaling } from '../../src/engine/reduction.js';

interface Sent {
  op: string;
  reduce: string | undefined;
  input: number[];
}

/** Wraps a group so every reduction records its op and its input as sent. */
function recording(g: ProcessGroup, sent: Sent[]): ProcessGroup {
  return new Proxy(g, {
    get(target, prop, receiver) {
      if (prop === 'allReduce') {
        return (buf: CommBuffer, o?: ReduceOptions): Work => {
          sent.push({ op: 'allReduce', reduce: o?.op, input: [...buf.array] });
          return target.allReduce(buf, o);
        };
      }
      if (prop === 'reduceScatter') {
        return (out: CommBuffer, inp: CommBuffer, o?: ReduceOptions): Work => {
          sent.push({ op: 'reduceScatter', reduce: o?.op, input: [...inp.array] });
          return target.reduceScatter(out, inp, o);
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as ProcessGroup;
}

const INPUTS = [Float32Array.of(2, 4, 6, 8), Float32Array.of(4, 8, 12, 16)];
const AVERAGE = [3, 6, 9, 12];

async function reduceOnTwo(scaling: GradScaling, collective: 'allReduce' | 'reduceScatter'): Promise<{ sent: Sent[][]; out: Float32Array[] }> {
  const world = new FakeWorld(2);
  const kernels = getRuntime().kernels('cpu');
  const sent: Sent[][] = [[], []];
  const out = INPUTS.map((a) => a.slice());
  const pending = [0, 1].map((r) => {
    const group = recording(world.groups[r]!, sent[r]!);
    const plan = planUnits([[0]], [4], collective === 'reduceScatter' ? 2 : 1, collective === 'reduceScatter' ? r : 0);
    const unit = plan.units[0]!;
    const keep = collective === 'reduceScatter' ? { start: r * unit.block, length: unit.block } : { start: 0, length: unit.padded };
    return standardUnitReduce({ group, kernels, scaling, collective })({ dtype: 'f32', array: out[r]! }, unit, keep);
  });
  await Promise.all(pending.map((p) => p.work!.wait()));
  for (const p of pending) p.finish();
  return { sent, out };
}

describe('standardUnitReduce', () => {
  it('averages with one avg op by default', async () => {
    const { sent, out } = await reduceOnTwo({ prescale: false, predivide: 1 }, 'allReduce');
    expect(sent[0]).toEqual([{ op: 'allReduce', reduce: 'avg', input: [2, 4, 6, 8] }]);
    for (const o of out) expectClose(o, AVERAGE);
  });

  it('prescale_gradients: divides by the world size before a sum', async () => {
    const { sent, out } = await reduceOnTwo({ prescale: true, predivide: 1 }, 'allReduce');
    expect(sent[1]).toEqual([{ op: 'allReduce', reduce: 'sum', input: [2, 4, 6, 8] }]);
    for (const o of out) expectClose(o, AVERAGE);
  });

  it('gradient_predivide_factor: divides by f before the sum and scales the kept block by f / world after', async () => {
    const { sent, out } = await reduceOnTwo({ prescale: false, predivide: 4 }, 'reduceScatter');
    expect(sent[0]).toEqual([{ op: 'reduceScatter', reduce: 'sum', input: [0.5, 1, 1.5, 2] }]);
    // Each rank keeps its block, averaged.
    expectClose(out[0]!.subarray(0, 2), AVERAGE.slice(0, 2));
    expectClose(out[1]!.subarray(2, 4), AVERAGE.slice(2, 4));
  });
});
