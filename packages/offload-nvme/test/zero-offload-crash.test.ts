// A run with ZeRO-3 and nvme offload (masters, moments and the 16-bit parameter shard in swap files)
// killed with SIGKILL in the middle of an optimizer step, with real processes: the swap files of the
// dead ranks are left behind; the next start removes them (saying so) and resumes from the last
// checkpoint, which holds the offloaded masters and moments, and reaches the losses of a run that
// was never interrupted.
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { tinyConfig } from '@ds-internal/gpt-fixtures';
import { describeWorld, lastJson, withWorld } from '@ds-internal/test-kit';

import { scratchDir } from './helpers.js';

const dir = scratchDir('crash');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Out {
  start: number;
  losses: Record<string, number>;
  stale: string[];
}

const worker = new URL('./workers/resume.ts', import.meta.url);

describe('nvme offload after a SIGKILL mid-step', () => {
  it('the next start removes the stale swap files and resumes from the last checkpoint', async () => {
    const swap = join(dir, 'swap');
    mkdirSync(swap);
    const nvme = { device: 'nvme', nvme_path: swap };
    const config = tinyConfig(1, {
      stage: 3,
      sub_group_size: 400,
      stage3_param_persistence_threshold: 20,
      offload_optimizer: { ...nvme, pipeline_read: true, pipeline_write: true, buffer_count: 9 },
      offload_param: { ...nvme, max_in_cpu: 0 },
    });
    const run = (ckpt: string, env: Record<string, string> = {}) =>
      withWorld(2, worker, { env: { DS_TEST_CONFIG: JSON.stringify(config), DS_TEST_CKPT: ckpt, DS_TEST_STEPS: '8', DS_TEST_SAVE_EVERY: '3', ...env }, timeoutMs: 120_000 });

    // The reference: the same 8 steps, never interrupted.
    const ref = await run(join(dir, 'ref'));
    expect(ref.timedOut, describeWorld(ref)).toBe(false);
    for (const r of ref.ranks) expect(r.code, describeWorld(ref)).toBe(0);
    const refOut = ref.ranks.map((r) => lastJson<Out>(r.stdout));
    expect(readdirSync(swap)).toEqual([]);

    // Killed while the optimizer step of step 7 streams sub-groups (checkpoints exist for steps 3 and 6).
    const ckpt = join(dir, 'ckpt');
    const killed = await run(ckpt, { DS_TEST_KILL_AT: '7' });
    expect(killed.timedOut, describeWorld(killed)).toBe(false);
    for (const r of killed.ranks) expect(r.signal, describeWorld(killed)).toBe('SIGKILL');
    // Each rank left its two swap files (optimizer and parameter offload).
    const left = readdirSync(swap).filter((f) => f.endsWith('.swap'));
    expect(left).toHaveLength(4);

    const resumed = await run(ckpt);
    expect(resumed.timedOut, describeWorld(resumed)).toBe(false);
    for (const r of resumed.ranks) expect(r.code, describeWorld(resumed)).toBe(0);
    const outs = resumed.ranks.map((r) => lastJson<Out>(r.stdout));
    // The stale files are gone. Every rank removes the stale files it finds, so which rank removes
    // which of the four is a race; logs come from rank 0, which names those it removed (possibly
    // none, when the other rank got to all four first): each name it gives is one of the four.
    expect(readdirSync(swap)).toEqual([]);
    for (const m of outs[0]!.stale) expect(left.some((f) => m.includes(f)), m).toBe(true);
    outs.forEach((o, r) => {
      expect(o.start).toBe(6);
      expect(Object.keys(o.losses)).toEqual(['6', '7']);
      for (const s of ['6', '7']) expect(o.losses[s], `rank ${r} step ${s}`).toBe(refOut[r]!.losses[s]);
    });
  }, 300_000);
});
