// Pipeline checkpoints across a change of data degree: the tiny GPT on 2 stages x 2 data ranks
// (4 ranks) with gradient_clipping saves after 10 of 20 batches and trains on; a 2-rank job (2 stages
// x 1 data rank, micro batches of 4 rows: the same global batches) loads that checkpoint and trains
// batches 10-19. Its losses and gradient norms must be the uninterrupted 4-rank run's within 1e-5
// relative (the runs differ only in the order of sums over the rows; a run that lost the optimizer
// moments or the step counters would be off by far more). Under ZeRO stage 1 each stage's Adam
// moments and fp32 masters were saved as 2 data-parallel shards and are re-partitioned (@ds/zero
// reads every saved shard and cuts its own) for 1 data rank; under stage 0 data rank 0's file serves.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { worldJson } from '@ds-internal/test-kit';

import { CLIP, worstRelative, type RunOptions } from './fixtures.js';

const STEPS = 20;
const SAVE_AT = 10;
const MICRO = 2;

interface Out {
  first: number;
  losses: number[];
  norms: (number | null)[];
  skipped: number;
  evalLoss: number;
  stage: number;
  zeroStage: number;
}

async function runJob(world: number, rows: number, run: RunOptions, env: Record<string, string>): Promise<Out[]> {
  return worldJson<Out>(world, new URL('./workers/train.ts', import.meta.url), {
    env: { DS_TEST_STAGES: '2', DS_TEST_MICRO: String(MICRO), DS_TEST_STEPS: String(STEPS), DS_TEST_ROWS: String(rows), DS_TEST_RUN: JSON.stringify(run), ...env },
    timeoutMs: 120_000,
  });
}

describe.each([0, 1])('pipeline checkpoint under ZeRO stage %i, saved on 2 stages x 2 data ranks', (stage) => {
  it('loads on 2 stages x 1 data rank and continues with the uninterrupted losses', async () => {
    const dir = mkdtempSync(join(tmpdir(), `ds-pipe-ckpt-z${stage}-`));
    try {
      const run: RunOptions = { clip: CLIP, ...(stage > 0 ? { zero: stage } : {}) };
      const whole = await runJob(4, 2, run, { DS_TEST_SAVE: dir, DS_TEST_SAVE_AT: String(SAVE_AT) });
      expect(whole.map((o) => o.zeroStage)).toEqual([stage, stage, stage, stage]);
      // One optimizer file per stage (mp_rank) and, partitioned under ZeRO 1, per data rank.
      const optim = readdirSync(join(dir, `global_step${SAVE_AT}`)).filter((f) => f.endsWith('_optim_states.safetensors')).sort();
      const dataRanks = stage > 0 ? [0, 1] : [0];
      expect(optim).toEqual(dataRanks.flatMap((d) => ['00', '01'].map((mp) => `zero_pp_rank_${d}_mp_rank_${mp}_optim_states.safetensors`)).sort());

      const resumed = await runJob(2, 4, run, { DS_TEST_LOAD: dir });
      for (const [r, o] of resumed.entries()) {
        expect(o.first, `rank ${r}`).toBe(SAVE_AT);
        expect(o.losses).toHaveLength(STEPS - SAVE_AT);
        const loss = worstRelative(o.losses, whole[0]!.losses.slice(SAVE_AT));
        expect(loss.worst, `rank ${r}: loss of batch ${SAVE_AT} + ${loss.at}`).toBeLessThan(1e-5);
        const norm = worstRelative(o.norms, whole[0]!.norms.slice(SAVE_AT).map((n) => n ?? NaN));
        expect(norm.worst, `rank ${r}: gradient norm of batch ${SAVE_AT} + ${norm.at}`).toBeLessThan(1e-5);
        expect(Math.abs(o.evalLoss - whole[0]!.evalLoss) / whole[0]!.evalLoss, `rank ${r}: eval ${o.evalLoss} vs ${whole[0]!.evalLoss}`).toBeLessThan(1e-5);
      }
      // Training moved the loss well away from where the checkpoint started, so a reload that dropped state shows.
      expect(whole[0]!.losses[STEPS - 1]!).toBeLessThan(0.8 * whole[0]!.losses[SAVE_AT]!);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 200_000);
});
