// ZeRO stage 1 with a pipeline (DeepSpeed allows it; stages 2 and 3 are rejected with DeepSpeed's
// reason). The tiny GPT over 2 stages x 2 data-parallel ranks with zero_optimization.stage 1 (the
// fp32 masters and Adam moments of each stage partitioned over its 2 data ranks) and
// gradient_clipping tight enough to clip every batch, 20 batches, against the single process with
// the same config (ZeRO 1 on one rank: nothing partitioned) over the same global batches:
// - fp32: every batch's loss and global gradient norm within 1e-5 relative (they differ only in the
//   order of sums);
// - bf16 (ZeRO keeps bf16 gradients): losses within 2e-3; norms within 6e-2, because each data rank
//   computes its 2-row micro batch's bf16 weight gradients where the single process computes 4 rows
//   at once (the bf16 roundings differ; the stage-0 pipeline on this layout differs the same way).
//   Measured worst: losses 8.0e-4 and norms 1.9e-2 while attention kept P and dS in f32; 9.0e-4 and
//   3.4e-2 on a CPU with AVX512_BF16, where attention rounds them to bf16 as operands (Zen 4);
// - fp16 with dynamic loss scaling and fp32 gradient accumulation: against the stage-0 pipeline of
//   the same layout (fp16 overflows on 2-row and on 4-row micro batches at different steps, so no
//   layout with 2 data ranks follows the single process), the same steps skipped and losses and
//   norms within 1e-5.
// The tied embedding (first stage) and LM head (last stage) are in every run, so the norm counts the
// tied weight once and its gradient sums both stages' uses before ZeRO's reduce-scatter.
import { describe, expect, it } from 'vitest';

import { worldJson } from '@ds-internal/test-kit';
import { DSConfigError, initialize } from '@ds/core';
import { zero } from '@ds/zero';

import { gptPipe, pipeline } from '../src/index.js';
import { CLIP, PIPE_GPT, pipeConfig, referenceLosses, worstRelative, type Curve, type RunOptions } from './fixtures.js';

const STEPS = 20;
const [WORLD, STAGES, MICRO] = [4, 2, 2];

interface Out {
  losses: number[];
  norms: (number | null)[];
  skipped: number;
  evalLoss: number;
  stage: number;
  zeroStage: number;
}

/** 2 stages x 2 data ranks for STEPS batches; every rank's output, checked to be the same curve on every rank. */
async function runPipe(run: RunOptions): Promise<Out[]> {
  const outs = await worldJson<Out>(WORLD, new URL('./workers/train.ts', import.meta.url), {
    env: { DS_TEST_STAGES: String(STAGES), DS_TEST_MICRO: String(MICRO), DS_TEST_STEPS: String(STEPS), DS_TEST_RUN: JSON.stringify(run) },
    timeoutMs: 150_000,
  });
  expect(outs.map((o) => [o.stage, o.zeroStage])).toEqual([0, 0, 1, 1].map((stage) => [stage, run.zero ?? 0]));
  for (const o of outs) expect(o.losses).toEqual(outs[0]!.losses);
  return outs;
}

function expectCurve(outs: Out[], want: Curve & { skipped: number }, tol: { loss: number; norm: number }): void {
  for (const [r, o] of outs.entries()) {
    const loss = worstRelative(o.losses, want.losses);
    expect(loss.worst, `rank ${r}: worst ${loss.at}`).toBeLessThan(tol.loss);
    // The norm summed over the data ranks' shards and the two stages (the tied embedding once).
    const norm = worstRelative(o.norms, want.norms);
    expect(norm.worst, `rank ${r}: gradient norm, worst ${norm.at}`).toBeLessThan(tol.norm);
    expect(o.skipped, `rank ${r}: skipped steps`).toBe(want.skipped);
  }
}

describe('ZeRO stage 1 with 2 stages x 2 data ranks, gradient_clipping on', () => {
  it.each<{ name: string; run: RunOptions; tol: { loss: number; norm: number } }>([
    { name: 'fp32', run: { zero: 1, clip: CLIP }, tol: { loss: 1e-5, norm: 1e-5 } },
    { name: 'bf16', run: { zero: 1, clip: CLIP, bf16: true }, tol: { loss: 2e-3, norm: 6e-2 } },
  ])('$name: follows the single-process curve of the same config batch by batch', async ({ run, tol }) => {
    const want = await referenceLosses(MICRO, WORLD / STAGES, STEPS, run);
    const outs = await runPipe(run);
    expectCurve(outs, want, tol);
    for (const o of outs) expect(Math.abs(o.evalLoss - want.evalLoss) / want.evalLoss, `eval ${o.evalLoss} vs ${want.evalLoss}`).toBeLessThan(tol.loss);
    expect(want.losses[STEPS - 1]!).toBeLessThan(want.losses[0]!);
    // Clipping bites on every batch.
    for (const n of want.norms) expect(n).toBeGreaterThan(CLIP);
  }, 200_000);

  it('fp16 with loss scaling: follows the stage-0 pipeline of the same layout, skipping the same steps', async () => {
    const run: RunOptions = { clip: CLIP, fp16: true, fp32GradAccum: true };
    const plain = await runPipe(run);
    const outs = await runPipe({ ...run, zero: 1 });
    const want = { losses: plain[0]!.losses, norms: plain[0]!.norms.map((n) => n ?? NaN), skipped: plain[0]!.skipped };
    expectCurve(outs, want, { loss: 1e-5, norm: 1e-5 });
    expect(want.skipped).toBeGreaterThan(0);
    expect(want.losses[STEPS - 1]!).toBeLessThan(want.losses[0]!);
  }, 200_000);
});

describe('ZeRO stages 2 and 3 with a pipeline', () => {
  it.each([2, 3])('stage %i is rejected with DeepSpeed\'s reason, with or without a pipeline section', async (stage) => {
    for (const section of [{}, { pipeline: { stages: 'auto' } }]) {
      const model = gptPipe(PIPE_GPT, { numStages: 1, stageId: 0 });
      const config = { ...pipeConfig(1, 1, { zero: stage }), ...section };
      const err = await initialize({ model, config, dist: null, plugins: [pipeline(), zero()], log: () => {} }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, `stage ${stage}, config ${JSON.stringify(section)}`).toBeInstanceOf(DSConfigError);
      expect((err as Error).message).toBe(`ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism (zero_optimization.stage is ${stage}); use stage 0 or 1 with @ds/pipeline`);
    }
  });
});
