// The pipeline trains like the single process: the tiny GPT (tied embedding and LM head on the first
// and last stage) over 2 stages x 4 micro batches, 2 stages x 2 data-parallel ranks, and 3 stages
// (a middle stage that receives and sends both ways) x 4 micro batches, and 2 x 4 in bf16 (bf16
// activations on the wire, fp32 gradient accumulation), and 2 x 4 with gradient_clipping tight enough to clip every batch and with fp16 dynamic loss
// scaling (some steps skipped), 20 batches, every batch's loss and global gradient norm within 1e-3
// relative of the single-process run over the same global batches, the same steps skipped; then
// one evalBatch against the single process's eval loss.
import { describe, expect, it } from 'vitest';

import { worldJson } from '@ds-internal/test-kit';

import { CLIP, referenceLosses, worstRelative, type RunOptions } from './fixtures.js';

const STEPS = 20;

interface Out {
  losses: number[];
  norms: number[];
  skipped: number;
  evalLoss: number;
  stage: number;
  idle: number;
}

describe.each<{ world: number; stages: number; micro: number; run: RunOptions }>([
  { world: 2, stages: 2, micro: 4, run: {} },
  { world: 4, stages: 2, micro: 2, run: {} },
  { world: 3, stages: 3, micro: 4, run: {} },
  { world: 2, stages: 2, micro: 4, run: { bf16: true } },
  { world: 2, stages: 2, micro: 4, run: { clip: CLIP } },
  { world: 2, stages: 2, micro: 4, run: { fp16: true } },
])('pipeline $stages stages on $world ranks, $micro micro batches ($run)', ({ world, stages, micro, run }) => {
  it('follows the single-process loss curve batch by batch', async () => {
    const data = world / stages;
    const want = await referenceLosses(micro, data, STEPS, run);
    const outs = await worldJson<Out>(world, new URL('./workers/train.ts', import.meta.url), {
      env: { DS_TEST_STAGES: String(stages), DS_TEST_MICRO: String(micro), DS_TEST_STEPS: String(STEPS), DS_TEST_RUN: JSON.stringify(run) },
      timeoutMs: 120_000,
    });
    expect(outs.map((o) => o.stage)).toEqual(Array.from({ length: world }, (_, r) => Math.floor(r / data)));
    for (const o of outs) {
      const loss = worstRelative(o.losses, want.losses);
      expect(loss.worst, `stage ${o.stage}: worst ${loss.at}`).toBeLessThan(1e-3);
      // The global gradient norm summed over the stages (the tied embedding once) is the single process's; NaN on the same skipped steps.
      const norm = worstRelative(o.norms, want.norms);
      // fp16 gradients carry f16 rounding of differently ordered sums (about 1e-3 per op), so the norm is held to 1e-2 there.
      expect(norm.worst, `stage ${o.stage}: gradient norm, worst ${norm.at}`).toBeLessThan(run.fp16 ? 1e-2 : 1e-3);
      expect(o.skipped).toBe(want.skipped);
      // Every rank returns the same batch losses (broadcast from the last stage).
      expect(o.losses).toEqual(outs[0]!.losses);
      // evalBatch (the inference schedule) after training: the same loss as the single process in eval mode.
      expect(Math.abs(o.evalLoss - want.evalLoss) / want.evalLoss, `eval ${o.evalLoss} vs ${want.evalLoss}`).toBeLessThan(1e-3);
    }
    expect(want.losses[STEPS - 1]!).toBeLessThan(want.losses[0]!);
    // Clipping bites on every batch; fp16 starts from a scale that overflows, so some steps are skipped.
    if (run.clip) for (const n of want.norms) expect(n).toBeGreaterThan(run.clip);
    if (run.fp16) expect(want.skipped).toBeGreaterThan(0);
  }, 150_000);
});
