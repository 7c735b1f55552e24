// Tensor parallelism trains like the single process: the tiny GPT (tied vocab-parallel embedding and
// LM head, vocab-parallel cross-entropy) as the plain GPTTensorParallel module under core's engine
// on 2 model ranks, and as 2 pipeline stages x 2 model ranks (4 ranks; pipe_partitioned sends, and
// once whole sends), 20 batches, every batch's loss within 1e-3 relative of the single-process run
// over the same global batches (fixtures.ts); the pipeline also against the single process's eval loss.
import { describe, expect, it } from 'vitest';

import { describeWorld, lastJson, withWorld } from '@ds-internal/test-kit';

import { referenceLosses } from './fixtures.js';

const STEPS = 20;

interface Out {
  losses: number[];
  evalLoss: number | null;
  coords: { pipe: number; data: number; model: number };
  engine: string;
  checkpoint?: string;
}

describe.each([
  { world: 2, stages: 0, model: 2, micro: 2, pipeConfig: null },
  { world: 4, stages: 2, model: 2, micro: 4, pipeConfig: null },
  { world: 4, stages: 2, model: 2, micro: 4, pipeConfig: { pipe_partitioned: false, grad_partitioned: false } },
])('tensor parallel: $model model ranks x $stages stages on $world ranks (pipeline section $pipeConfig)', ({ world, stages, model, micro, pipeConfig }) => {
  it('follows the single-process loss curve batch by batch', async () => {
    const data = world / (Math.max(stages, 1) * model);
    const { losses: want, evalLoss } = await referenceLosses(micro, data, STEPS);
    const w = await withWorld(world, new URL('./workers/train-tp.ts', import.meta.url), {
      env: {
        DS_TEST_STAGES: String(stages),
        DS_TEST_MODEL: String(model),
        DS_TEST_MICRO: String(micro),
        DS_TEST_STEPS: String(STEPS),
        ...(pipeConfig ? { DS_TEST_PIPE_CONFIG: JSON.stringify(pipeConfig) } : {}),
      },
      timeoutMs: 150_000,
    });
    expect(w.timedOut, describeWorld(w)).toBe(false);
    for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
    const outs = w.ranks.map((r) => lastJson<Out>(r.stdout));
    // Model ranks vary fastest: rank r is model rank r % model.
    expect(outs.map((o) => o.coords.model)).toEqual(Array.from({ length: world }, (_, r) => r % model));
    expect(outs[0]!.engine).toBe(stages === 0 ? 'TensorParallelEngine' : 'PipelineEngine');
    // Per-model-rank checkpoint files are not built: saving is refused by name, not written wrongly.
    if (stages === 0) for (const o of outs) expect(o.checkpoint).toMatch(/saveCheckpoint needs one file per model-parallel rank/);
    for (const [r, o] of outs.entries()) {
      const rel = o.losses.map((l, s) => Math.abs(l - want[s]!) / want[s]!);
      const worst = Math.max(...rel);
      expect(worst, `rank ${r}: worst batch ${rel.indexOf(worst)}: ${o.losses[rel.indexOf(worst)]} vs ${want[rel.indexOf(worst)]}`).toBeLessThan(1e-3);
      // The model ranks compute the same loss (the vocab-parallel cross-entropy reduces it over the group).
      expect(o.losses).toEqual(outs[0]!.losses);
      if (stages > 0) expect(Math.abs(o.evalLoss! - evalLoss) / evalLoss, `eval ${o.evalLoss} vs ${evalLoss}`).toBeLessThan(1e-3);
    }
    expect(want[STEPS - 1]!).toBeLessThan(want[0]!);
  }, 180_000);
});
