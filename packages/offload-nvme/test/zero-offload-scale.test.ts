// ZeRO-Infinity's point, measured: on 2 ranks a GPT whose model states (16-bit parameters, fp32
// masters, Adam moments and 16-bit gradients: 16 bytes per parameter / N per rank, as ZeRO-3
// partitions them) are more than 4x DS_MEMORY_LIMIT trains at stage 3 with offload_optimizer and
// offload_param on nvme, the memory tracker's device ('cpu') peak staying under the limit from the
// moment the model is built under zeroInit; the same run without offload fails with
// DSOutOfMemoryError. The process's real peak resident set (VmHWM) is printed beside the tracker's
// figures: it also holds the Node.js heap, the native addons and the I/O engine's bounce buffers,
// which the tracker does not count and the limit does not cover.
import { rmSync } from 'node:fs';

import { afterAll, describe, expect, it } from 'vitest';

import { tinyConfig } from '@ds-internal/gpt-fixtures';
import { describeWorld, lastJson, withWorld } from '@ds-internal/test-kit';
import { GPT } from '@ds/tensor';
import { modelStateBytes } from '@ds/zero';

import { scratchDir } from './helpers.js';

const dir = scratchDir('scale');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Eight layers of width 256: units of at most 4 x 256^2 elements against 6.4M parameters in all, so
// one gathered unit, the activations of 16 tokens and the staging buffers are small next to the shard.
const SCALE_GPT = { vocabSize: 256, blockSize: 16, nLayer: 8, nHead: 4, nEmbd: 256, seed: 11 };
const psi = new GPT(SCALE_GPT).numParameters();
const WORLD = 2;
const STATES = modelStateBytes(3, psi, WORLD); // 16 psi / N
const LIMIT = Math.floor(STATES / 4.2);

interface Out {
  rank: number;
  ok: boolean;
  error?: string;
  code?: string;
  limit: number | null;
  numel?: number;
  losses?: number[];
  buildPeak?: number;
  setupPeak?: number;
  peak: number;
  live?: number;
  categories?: Record<string, number>;
  hostOffload?: number;
  vmHWM: number;
  vmRSS: number;
}

const mb = (b: number) => `${(b / 1e6).toFixed(2)} MB`;

async function run(zeroSection: Record<string, unknown>): Promise<Out[]> {
  const config = tinyConfig(1, { stage: 3, ...zeroSection });
  const w = await withWorld(WORLD, new URL('./workers/scale.ts', import.meta.url), {
    env: { DS_TEST_CONFIG: JSON.stringify(config), DS_TEST_GPT: JSON.stringify(SCALE_GPT), DS_TEST_STEPS: '2', DS_MEMORY_LIMIT: String(LIMIT) },
    timeoutMs: 100_000,
  });
  expect(w.timedOut, describeWorld(w)).toBe(false);
  for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
  return w.ranks.map((r) => lastJson<Out>(r.stdout));
}

describe('ZeRO-3 with optimizer and parameter offload on nvme under DS_MEMORY_LIMIT', () => {
  it('trains a GPT whose model states are over 4x the limit; without offload it runs out of memory', async () => {
    expect(STATES / LIMIT).toBeGreaterThanOrEqual(4);
    const nvme = { device: 'nvme', nvme_path: dir };
    const common = { sub_group_size: 50_000, stage3_param_persistence_threshold: 10_000, stage3_max_reuse_distance: 0, stage3_max_live_parameters: 300_000, stage3_prefetch_bucket_size: 300_000 };
    const offloaded = await run({ ...common, offload_optimizer: nvme, offload_param: { ...nvme, max_in_cpu: 0, buffer_count: 2 } });
    for (const o of offloaded) {
      console.log(
        `rank ${o.rank}: psi ${psi}, model states ${mb(STATES)} per rank (${(STATES / LIMIT).toFixed(2)}x DS_MEMORY_LIMIT ${mb(LIMIT)}); ` +
          `tracker on 'cpu': build peak ${mb(o.buildPeak ?? NaN)}, setup peak ${mb(o.setupPeak ?? NaN)}, training peak ${mb(o.peak)}, live ${mb(o.live ?? NaN)} ${JSON.stringify(o.categories)} peaks ${JSON.stringify((o as { categoryPeaks?: object }).categoryPeaks)}; ` +
          `cpu tier ${mb(o.hostOffload ?? NaN)}; VmHWM ${mb(o.vmHWM)} (VmRSS ${mb(o.vmRSS)}); losses ${o.losses?.map((l) => l.toFixed(4)).join(', ')}`,
      );
      expect(o.ok, o.error).toBe(true);
      expect(o.limit).toBe(LIMIT);
      expect(o.numel).toBe(psi);
      expect(o.peak).toBeLessThanOrEqual(LIMIT);
      expect(o.live!).toBeLessThanOrEqual(LIMIT);
      // Everything went to the disk (max_in_cpu 0): the cpu tier holds nothing.
      expect(o.hostOffload).toBe(0);
      expect(o.losses!.every(Number.isFinite)).toBe(true);
    }
    const resident = await run(common);
    for (const o of resident) {
      console.log(`rank ${o.rank} without offload: ${o.error}; tracker peak ${mb(o.peak)}; VmHWM ${mb(o.vmHWM)}`);
      expect(o.ok).toBe(false);
      expect(o.code).toBe('DS_OUT_OF_MEMORY');
      expect(o.error).toMatch(/^DSOutOfMemoryError: out of memory on cpu: .* over DS_MEMORY_LIMIT=/);
    }
  }, 240_000);
});
