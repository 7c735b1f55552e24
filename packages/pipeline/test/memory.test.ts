// 1F1B keeps at most (stages - stage) micro batches of activations in flight, so a stage's peak
// activation bytes (the memory tracker's, not the RSS) do not grow with the number of micro
// batches; GPipe's would double from 4 to 8. Also the bad setups of a 2-rank pipeline, each
// failing with its numbers on every rank.
import { describe, expect, it } from 'vitest';

import { describeWorld, lastJson, withWorld } from '@ds-internal/test-kit';

interface Out {
  stage: number;
  peaks: Record<string, number>;
  leaks: Record<string, number>;
  errors: string[];
}

describe('pipeline on 2 ranks', () => {
  it('peak activation bytes per stage are bounded by the stages, not the micro batches, and a batch leaves none behind; bad setups name their numbers', async () => {
    const w = await withWorld(2, new URL('./workers/memory.ts', import.meta.url), { timeoutMs: 90_000 });
    expect(w.timedOut, describeWorld(w)).toBe(false);
    for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
    for (const o of w.ranks.map((r) => lastJson<Out>(r.stdout))) {
      const [p4, p8] = [o.peaks['4']!, o.peaks['8']!];
      expect(p4, `stage ${o.stage}`).toBeGreaterThan(0);
      expect(p8 / p4, `stage ${o.stage}: ${p8} bytes at 8 micro batches vs ${p4} at 4`).toBeLessThan(1.15);
      expect(o.leaks, `stage ${o.stage}: bytes left after a batch`).toEqual({ '4': 0, '8': 0 });
      expect(o.errors[0]).toMatch(/DSConfigError: pipeline: 1 micro batch\(es\) per batch \(gradient_accumulation_steps\) is fewer than the 2 stages/);
      expect(o.errors[1]).toMatch(/DSConfigError: topology: 2 ranks do not divide into 4 pipeline stage\(s\)/);
    }
  }, 120_000);
});
