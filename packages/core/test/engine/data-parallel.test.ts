// Data parallelism across real processes: 2 ranks x micro batch 2 must train like 1 process x
// micro batch 4 on the same global batch (bf16, gradient accumulation 2, clipping).
import { describe, expect, it } from 'vitest';

import { describeWorld, withWorld } from '@ds-internal/test-kit';
import { TINY_GPT, tinyConfig, trainSteps } from '@ds-internal/gpt-fixtures';
import { GPT } from '@ds/tensor';

import { initialize } from '../../src/engine/initialize.js';

const STEPS = 6;

describe('data parallel (stage 0)', () => {
  it('2 ranks match one process on the same global batch, step by step', async () => {
    const single = await initialize({ model: new GPT(TINY_GPT), config: tinyConfig(4), dist: null, log: () => {} });
    const want = await trainSteps(single.engine, 0, STEPS);
    const wantNorm = single.engine.getGlobalGradNorm();
    single.engine.destroy();

    const world = await withWorld(2, new URL('./workers/dp-train.ts', import.meta.url), {
      env: { DS_TEST_CONFIG: JSON.stringify({ ...tinyConfig(2), comms_logger: { enabled: true } }), DS_TEST_STEPS: String(STEPS) },
      timeoutMs: 120_000,
    });
    expect(world.timedOut, describeWorld(world)).toBe(false);
    for (const r of world.ranks) expect(r.code, describeWorld(world)).toBe(0);
    const out = world.ranks.map((r) => JSON.parse(r.stdout.trim().split('\n').pop()!) as { losses: number[]; gradNorm: number; comms: Record<string, number> });
    // Each rank reports the loss of its half of the batch; the global loss is their mean.
    const got = out[0]!.losses.map((l, i) => (l + out[1]!.losses[i]!) / 2);
    got.forEach((l, i) => expect(Math.abs(l - want[i]!) / want[i]!, `step ${i}: ${l} vs ${want[i]}`).toBeLessThan(1e-3));
    expect(out[0]!.gradNorm).toBe(out[1]!.gradNorm);
    // comms_logger saw the parameter broadcast and at least one gradient all-reduce per step.
    expect(out[0]!.comms.broadcast).toBe(1);
    expect(out[0]!.comms.all_reduce ?? out[0]!.comms.allReduce).toBeGreaterThanOrEqual(STEPS);
    expect(Math.abs(out[0]!.gradNorm - wantNorm) / wantNorm).toBeLessThan(1e-2);
  }, 180_000);
});
