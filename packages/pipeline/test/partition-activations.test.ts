// activation_checkpointing.partition_activations with tensor parallelism: each model rank keeps only
// its half of every checkpointed block input, all-gathers it before the recomputation, and trains to
// exactly the losses of the run that keeps the inputs whole (the gathered bytes are the same bytes).
import { describe, expect, it } from 'vitest';

import { worldJson } from '@ds-internal/test-kit';

import { PIPE_GPT } from './fixtures.js';

interface Out {
  held: number;
  losses: number[];
}

async function run(partition: boolean, stages = 0): Promise<Out[]> {
  return worldJson<Out>(stages === 0 ? 2 : 4, new URL('./workers/partition-activations.ts', import.meta.url), {
    env: { DS_TEST_PARTITION: String(partition), DS_TEST_STAGES: String(stages) },
    timeoutMs: 120_000,
  });
}

describe('partition_activations', () => {
  it('2-way tensor parallel keeps half of each checkpointed input and trains to the same losses', async () => {
    const whole = await run(false);
    const split = await run(true);
    // Each block's input is [2 rows, blockSize, nEmbd] f32; with 2 model ranks each keeps half of it.
    const input = 2 * PIPE_GPT.blockSize * PIPE_GPT.nEmbd * 4;
    for (const [r, o] of split.entries()) {
      expect(whole[r]!.held - o.held, `rank ${r}: bytes saved`).toBe((PIPE_GPT.nLayer * input) / 2);
      expect(o.losses, `rank ${r}`).toEqual(whole[r]!.losses);
    }
    expect(whole[0]!.losses[5]!).toBeLessThan(whole[0]!.losses[0]!);
  }, 120_000);

  it('also inside pipeline stages that checkpoint every layer (2 pipe x 2 model)', async () => {
    const whole = await run(false, 2);
    const split = await run(true, 2);
    const input = 2 * PIPE_GPT.blockSize * PIPE_GPT.nEmbd * 4;
    for (const [r, o] of split.entries()) {
      // When stage 0 (ranks 0, 1) starts its second forward it holds the first micro batch's checkpoint, half of it when split.
      if (r < 2) expect(whole[r]!.held - o.held, `rank ${r}: bytes saved`).toBe(input / 2);
      expect(o.losses, `rank ${r}`).toEqual(whole[r]!.losses);
    }
  }, 120_000);
});
