// The pipeline trains like the single process: the tiny GPT (tied embedding and LM head on the first
// and last stage) over 2 stages x 4 micro batches, 2 stages x 2 data-parallel ranks, and 3 stages
// (a middle stage that receives and sends both ways) x 4 micro batches, and 2 x 4 in bf16 (bf16
// activations on the wire, fp32 gradient accumulation), 20 batches,
// every batch's loss within 1e-3 relative of the single-process run over the same global batches;
// then one evalBatch against the single process's eval loss.
import { describe, expect, it } from 'vitest';

import { describeWorld, lastJson, withWorld } from '@ds-internal/test-kit';

import { referenceLosses } from './fixtures.js';

const STEPS = 20;

interface Out {
  losses: number[];
  evalLoss: number;
  stage: number;
  idle: number;
}

describe.each([
  { world: 2, stages: 2, micro: 4, bf16: false },
  { world: 4, stages: 2, micro: 2, bf16: false },
  { world: 3, stages: 3, micro: 4, bf16: false },
  { world: 2, stages: 2, micro: 4, bf16: true },
])('pipeline $stages stages on $world ranks, $micro micro batches (bf16: $bf16)', ({ world, stages, micro, bf16 }) => {
  it('follows the single-process loss curve batch by batch', async () => {
    const data = world / stages;
    const { losses: want, evalLoss } = await referenceLosses(micro, data, STEPS, bf16);
    const w = await withWorld(world, new URL('./workers/train.ts', import.meta.url), {
      env: { DS_TEST_STAGES: String(stages), DS_TEST_MICRO: String(micro), DS_TEST_STEPS: String(STEPS), DS_TEST_BF16: bf16 ? '1' : '0' },
      timeoutMs: 120_000,
    });
    expect(w.timedOut, describeWorld(w)).toBe(false);
    for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
    const outs = w.ranks.map((r) => lastJson<Out>(r.stdout));
    expect(outs.map((o) => o.stage)).toEqual(Array.from({ length: world }, (_, r) => Math.floor(r / data)));
    for (const o of outs) {
      const rel = o.losses.map((l, s) => Math.abs(l - want[s]!) / want[s]!);
      const worst = Math.max(...rel);
      expect(worst, `stage ${o.stage}: worst batch ${rel.indexOf(worst)}: ${o.losses[rel.indexOf(worst)]} vs ${want[rel.indexOf(worst)]}`).toBeLessThan(1e-3);
      // Every rank returns the same batch losses (broadcast from the last stage).
      expect(o.losses).toEqual(outs[0]!.losses);
      // evalBatch (the inference schedule) after training: the same loss as the single process in eval mode.
      expect(Math.abs(o.evalLoss - evalLoss) / evalLoss, `eval ${o.evalLoss} vs ${evalLoss}`).toBeLessThan(1e-3);
    }
    expect(want[STEPS - 1]!).toBeLessThan(want[0]!);
  }, 150_000);
});
