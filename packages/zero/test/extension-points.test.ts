// Every extension point initialize() consumes, used by a plugin written in a test file (probe-plugin.ts),
// asserted by its effect: the backend's ops are the ones the job calls, the engine is the plugin's,
// the tier receives the optimizer state's swaps and the gradient shard's, the gradient reducer reduces every unit, and the
// kernel computes the attention (the losses
// and the fp32 masters equal a plain run's, which has none of the plugin's parts).
import { describe, expect, it } from 'vitest';

import { describeWorld, expectClose, lastJson, withWorld } from '@ds-internal/test-kit';

import type { ProbeRecord } from './probe-plugin.js';

interface Out {
  probe: { losses: number[]; masters: Record<string, number[]>; isProbeEngine: boolean; backendName: string; record: ProbeRecord };
  plain: { losses: number[]; masters: Record<string, number[]> };
  tierMasters: Record<string, number[]>;
}

describe('a plugin contributing to every extension point', () => {
  it('is used by initialize(): comm backend by name, engine, offload tier and attention kernel', async () => {
    const w = await withWorld(2, new URL('./workers/extension-points.ts', import.meta.url), { env: { DS_COMM_BACKEND: 'counting' }, timeoutMs: 120_000 });
    expect(w.timedOut, describeWorld(w)).toBe(false);
    for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
    for (const r of w.ranks) {
      const out = lastJson<Out>(r.stdout);
      const rec = out.probe.record;
      // The comm backend: chosen by DS_COMM_BACKEND, made once, and every collective of the job ran on it.
      expect(rec.backendCreated).toBe(1);
      expect(out.probe.backendName).toBe('cpu');
      expect(rec.ops.reduceScatter ?? 0, JSON.stringify(rec.ops)).toBeGreaterThan(0);
      expect(rec.ops.allGather ?? 0).toBeGreaterThan(0);
      expect(rec.ops.broadcast ?? 0).toBeGreaterThan(0);
      // The engine: the plugin's subclass ran every forward (4 steps x 2 micro steps).
      expect(out.probe.isProbeEngine).toBe(true);
      expect(rec.forwards).toBe(8);
      // The tier: the optimizer section reached it, and every step swapped each sub-group in and out.
      expect(rec.tier.sections).toEqual([{ kind: 'optimizer', device: 'cpu', nvme_path: null, buffer_count: 4, pin_memory: true, pipeline_read: false, pipeline_write: false, fast_init: false, ratio: 1 }]);
      expect(rec.tier.regions).toBeGreaterThan(1);
      expect(rec.tier.swapOuts).toBe(4 * rec.tier.regions);
      expect(rec.tier.swapIns).toBe(3 * rec.tier.regions);
      expect(rec.tier.bytesWritten).toBe(4 * rec.tier.bytesReserved);
      // The gradient shard (stage 2) went to the same tier, swapped per unit since it lends no memory:
      // every micro step (8) wrote every unit's block; the second of each step read it back to
      // accumulate, and each step read it once, per sub-group for the update (the norm was taken from
      // the blocks as they settled in the boundary backward).
      expect(rec.gradients.regions).toBeGreaterThan(0);
      expect(rec.gradients.swapOuts).toBe(8 * rec.gradients.regions);
      expect(rec.gradients.bytesWritten).toBe(8 * rec.gradients.bytesReserved);
      expect(rec.gradients.bytesRead).toBe(8 * rec.gradients.bytesReserved);
      // The gradient reducer: every unit of every micro step (8) went through it.
      expect(rec.unitsReduced % 8).toBe(0);
      expect(rec.unitsReduced).toBeGreaterThanOrEqual(16);
      // The kernel: one call per layer per forward, and it computed attention: the run equals the plain
      // one. (Composed and fused attention round differently in f32, and Adam turns rounding noise in
      // gradients that are zero in exact arithmetic, such as the key bias's, into lr-sized steps: 1e-4.)
      expect(rec.attentionCalls).toBe(8);
      expectClose(out.probe.losses, out.plain.losses, { rtol: 1e-5, atol: 1e-6 });
      for (const [name, values] of Object.entries(out.plain.masters)) expectClose(out.probe.masters[name]!, values, { rtol: 1e-3, atol: 1e-4 }, name);
      // With the tier alone (dense attention), offloading changes nothing: the weights are bit-equal.
      expect(out.tierMasters).toEqual(out.plain.masters);
    }
  }, 150_000);
});
