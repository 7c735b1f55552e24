// With this plugin registered, ZeRO stages 1, 2 and 3 keep their optimizer moments in the `cpu` or
// `nvme` tier and end with exactly the weights and losses of the same run without offload: 2 ranks,
// several sub-groups per rank, the nvme tier on io_uring, on the pread/pwrite pool and on the
// reference engine; a tier that loses the moments is the control that shows the check can fail. @ds/zero is
// a devDependency of these tests only (the package itself imports core and tensor).
import { readdirSync, rmSync } from 'node:fs';

import { afterAll, describe, expect, it } from 'vitest';

import { tinyConfig } from '@ds-internal/gpt-fixtures';
import { describeWorld, lastJson, withWorld } from '@ds-internal/test-kit';

import { scratchDir } from './helpers.js';

const dir = scratchDir('zero');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface RunOut {
  losses: number[];
  swapFiles: number;
  hostOffloadBytes: number;
  masters?: Record<string, number[]>;
}

type Io = 'native' | 'threads' | 'reference' | 'lossy';

describe('ZeRO with offload_optimizer on 2 ranks', () => {
  it('cpu and nvme tiers give exactly the weights and losses of no offload at stages 1, 2 and 3', async () => {
    const zeroSection = (stage: number, offload?: Record<string, unknown>) => ({
      stage,
      reduce_bucket_size: 700,
      sub_group_size: 400,
      ...(stage === 3 ? { stage3_param_persistence_threshold: 20 } : {}),
      ...(offload ? { offload_optimizer: offload } : {}),
    });
    const nvme = { device: 'nvme', nvme_path: dir };
    const smallAio = { aio: { block_size: 4096, queue_depth: 4, intra_op_parallelism: 2 } };
    // Per stage: the baseline without offload, then the offloaded runs compared with it.
    const plan: { stage: number; runs: { offload: Record<string, unknown> | undefined; io: Io; extra?: object }[] }[] = [
      { stage: 2, runs: [{ offload: undefined, io: 'native' }, { offload: { device: 'cpu' }, io: 'native' }, { offload: nvme, io: 'native', extra: smallAio }, { offload: nvme, io: 'threads' }, { offload: nvme, io: 'reference' }, { offload: nvme, io: 'lossy' }] },
      { stage: 1, runs: [{ offload: undefined, io: 'native' }, { offload: { device: 'cpu' }, io: 'native' }, { offload: nvme, io: 'native' }] },
      { stage: 3, runs: [{ offload: undefined, io: 'native' }, { offload: { device: 'cpu' }, io: 'native' }, { offload: nvme, io: 'native' }] },
    ];
    const runs = plan.flatMap((p) => p.runs.map((r) => ({ config: { ...tinyConfig(1, zeroSection(p.stage, r.offload)), ...r.extra }, io: r.io })));
    const w = await withWorld(2, new URL('./workers/zero-offload.ts', import.meta.url), {
      env: { DS_TEST_RUNS: JSON.stringify(runs), DS_TEST_STEPS: '5' },
      timeoutMs: 150_000,
    });
    expect(w.timedOut, describeWorld(w)).toBe(false);
    for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
    const ranks = w.ranks.map((r) => lastJson<{ runs: RunOut[] }>(r.stdout).runs);
    let at = 0;
    for (const p of plan) {
      const base = at;
      expect(Object.keys(ranks[0]![base]!.masters!).length).toBeGreaterThan(0);
      p.runs.forEach((spec, k) => {
        const i = base + k;
        const what = `stage ${p.stage} offload ${JSON.stringify(spec.offload ?? 'none')} on ${spec.io}`;
        for (const r of [0, 1]) {
          // The tiers were used: host bytes for cpu, one swap file per rank for nvme.
          if (spec.offload?.device === 'cpu') expect(ranks[r]![i]!.hostOffloadBytes, what).toBeGreaterThan(0);
          else expect(ranks[r]![i]!.hostOffloadBytes, what).toBe(0);
          expect(ranks[r]![i]!.swapFiles, what).toBe(spec.offload?.device === 'nvme' ? 2 : 0);
        }
        if (k === 0) return;
        const same = Object.entries(ranks[0]![base]!.masters!).every(([name, values]) => JSON.stringify(ranks[0]![i]!.masters![name]) === JSON.stringify(values));
        if (spec.io === 'lossy') {
          // The control: a tier that loses the moments changes the weights, so the equalities above can fail.
          expect(same, what).toBe(false);
          return;
        }
        for (const r of [0, 1]) expect(ranks[r]![i]!.losses, `${what} rank ${r} losses`).toEqual(ranks[r]![base]!.losses);
        for (const [name, values] of Object.entries(ranks[0]![base]!.masters!)) expect(ranks[0]![i]!.masters![name], `${what}: ${name}`).toEqual(values);
      });
      at += p.runs.length;
    }
    // Swap files are scratch: none is left once the engines are destroyed and the ranks exit.
    expect(readdirSync(dir)).toEqual([]);
  }, 180_000);
});
