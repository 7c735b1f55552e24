// The device boundary end to end: the tiny GPT trains on the `sim` device (memory JavaScript cannot
// read, run by the cpu kernels) under ZeRO stages 0-3 on 2 ranks, with a checkpoint saved, loaded
// into a fresh engine and trained on, and every loss and every fp32 master weight equals the same
// run on the cpu bit for bit. Any code path that read device bytes from JavaScript would throw on
// sim; any that skipped a copy would change the numbers.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { describeWorld, lastJson, withWorld } from '@ds-internal/test-kit';
import { tinyConfig } from '@ds-internal/gpt-fixtures';

interface Run {
  config: number;
  device: string;
  stage: number;
  first: number[];
  tail: number[];
  resumed: number[];
  masters: Record<string, number[]>;
  resumedMasters: Record<string, number[]>;
}

const FROM = 10;
const TO = 20;
const STAGES = [
  { stage: 0 },
  { stage: 1, reduce_bucket_size: 700 },
  { stage: 2, reduce_bucket_size: 700, overlap_comm: true },
  { stage: 3, reduce_bucket_size: 700, stage3_param_persistence_threshold: 20, stage3_prefetch_bucket_size: 600 },
];

describe('training on the sim device', () => {
  it('ZeRO stages 0-3 on 2 ranks with a checkpoint round trip equal the cpu run exactly', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ds-zero-device-'));
    try {
      const configs = STAGES.map((z) => tinyConfig(1, z));
      const w = await withWorld(2, new URL('./workers/device.ts', import.meta.url), {
        env: { DS_TEST_CONFIGS: JSON.stringify(configs), DS_TEST_DEVICES: JSON.stringify(['cpu', 'sim']), DS_TEST_FROM: String(FROM), DS_TEST_TO: String(TO), DS_TEST_DIR: dir },
        timeoutMs: 200_000,
      });
      expect(w.timedOut, describeWorld(w)).toBe(false);
      for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
      for (const rank of w.ranks) {
        const runs = lastJson<{ runs: Run[] }>(rank.stdout).runs;
        STAGES.forEach((z, k) => {
          const cpu = runs.find((r) => r.config === k && r.device === 'cpu')!;
          const sim = runs.find((r) => r.config === k && r.device === 'sim')!;
          expect(sim.stage).toBe(z.stage);
          expect(sim.first, `stage ${z.stage} first ${FROM} steps`).toEqual(cpu.first);
          expect(sim.tail, `stage ${z.stage} steps ${FROM}-${TO}`).toEqual(cpu.tail);
          expect(sim.resumed, `stage ${z.stage} after loading the checkpoint`).toEqual(cpu.resumed);
          expect(sim.masters).toEqual(cpu.masters);
          expect(sim.resumedMasters).toEqual(cpu.resumedMasters);
          // The round trip itself: resuming from the checkpoint reproduces the uninterrupted run.
          expect(sim.resumed).toEqual(sim.tail);
          expect(sim.resumedMasters).toEqual(sim.masters);
          expect(sim.tail[TO - FROM - 1]!).toBeLessThan(sim.first[0]!);
        });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);
});
