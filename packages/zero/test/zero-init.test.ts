// zeroInit on 2 ranks: each parameter is partitioned as it is created, so building the model never
// holds more than this rank's slices plus the one parameter being made; the engine built from the
// slices has exactly the weights, memory and training of one built from a whole model. Ranks that
// drew different initial values are caught before their slices are used.
import { describe, expect, it } from 'vitest';

import { describeWorld, lastJson, withWorld } from '@ds-internal/test-kit';
import { tinyConfig } from '@ds-internal/gpt-fixtures';
import { GPT } from '@ds/tensor';

// Many parameters of similar size (the largest, c_fc, is 8% of the total), so "slices plus the
// largest parameter" is far from "the whole model".
const GPT_CFG = { vocabSize: 64, blockSize: 16, nLayer: 4, nHead: 2, nEmbd: 32, seed: 9 };
const WORLD = 2;

interface Side {
  weights: Record<string, number[]>;
  paramBytes: number;
  losses: number[];
}
interface Out {
  build: { peak: number; live: number };
  init: Side;
  plain: Side;
  reuseError: string;
  seedError: string;
}

/** First element where two arrays differ (exact), or null. */
function firstMismatch(a: readonly number[], b: readonly number[]): string | null {
  if (a.length !== b.length) return `length ${a.length} vs ${b.length}`;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return `[${i}] ${a[i]} vs ${b[i]}`;
  return null;
}

describe('zeroInit', () => {
  it('never holds the whole model while building on 2 ranks, and the engine matches a plainly built one', async () => {
    const sizes = new GPT(GPT_CFG).parameters().map((p) => p.numel);
    const whole = 4 * sizes.reduce((a, b) => a + b, 0); // f32 at construction
    // The config enables bf16, so the slices are kept as bf16 (2 bytes), as DeepSpeed's zero.Init
    // converts parameters to the config's dtype before it partitions them.
    const slices = 2 * sizes.reduce((a, n) => a + Math.ceil(n / WORLD), 0);
    const largest = 4 * Math.max(...sizes);
    const bound = slices + largest;
    expect(bound).toBeLessThan(0.6 * whole); // the claim below is not implied by "less than the whole model"

    const config = tinyConfig(1, { stage: 3, stage3_param_persistence_threshold: 40, reduce_bucket_size: 3000 });
    const w = await withWorld(WORLD, new URL('./workers/zero-init.ts', import.meta.url), { env: { DS_TEST_CONFIGS: JSON.stringify(config), DS_TEST_GPT: JSON.stringify(GPT_CFG) }, timeoutMs: 120_000 });
    expect(w.timedOut, describeWorld(w)).toBe(false);
    for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
    const outs = w.ranks.map((r) => lastJson<Out>(r.stdout));
    for (const [rank, out] of outs.entries()) {
      console.log(`rank ${rank}: peak ${out.build.peak} B while building (bound ${bound} = slices ${slices} + largest ${largest}; whole model ${whole}), ${out.build.live} B after`);
      expect(out.build.live, `rank ${rank}`).toBe(slices);
      expect(out.build.peak, `rank ${rank}`).toBeGreaterThanOrEqual(slices);
      expect(out.build.peak, `rank ${rank}`).toBeLessThanOrEqual(bound);
      // Whole weights as the engine sees them: the same bits as from a whole model.
      expect(Object.keys(out.init.weights)).toEqual(Object.keys(out.plain.weights));
      for (const [name, values] of Object.entries(out.plain.weights)) expect(firstMismatch(out.init.weights[name]!, values), `rank ${rank} ${name}`).toBeNull();
      // The slices are gone once the engine holds its shard.
      expect(out.init.paramBytes, `rank ${rank}`).toBe(out.plain.paramBytes);
      expect(out.init.losses, `rank ${rank}`).toEqual(out.plain.losses);
      expect(out.reuseError).toMatch(/^DSConfigError: the model built under zeroInit was already handed to an engine/);
      // Built with a seed per rank: every rank fails alike, naming the parameters that differ.
      expect(out.seedError).toMatch(/^DSConfigError: zeroInit: the ranks built different initial values/);
      expect(out.seedError).toMatch(/parameter 0 \(Embedding\.weight, shape \[64, 32\]\) on rank 1/);
      expect(out.seedError).toMatch(/seed the model alike on every rank/);
    }
    expect(outs[1]!.init.losses).not.toEqual(outs[0]!.init.losses); // each rank trains on its own rows
  }, 150_000);
});
