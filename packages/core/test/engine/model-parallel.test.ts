// The state-manager contract with model and pipeline parallelism (StateManagerArgs.normCounted) and
// the model-parallel checkpoint layout, on 2 real processes: the gradient norm sums the split
// parameter over the model group and counts the replicated one once (model axis), or leaves out a
// pipe-replicated copy (pipe axis); an Infinity on one rank skips the step on both; each slice writes
// its mp_rank_NN files and reads them back.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { describeWorld, lastJson, withWorld } from '@ds-internal/test-kit';

import { checkModuleFileName, modelStatesFile, optimStatesFile } from '../../src/checkpoint/layout.js';

interface Out {
  rank: number;
  norms: (number | 'NaN')[];
  applied: boolean[];
  files: string[];
  moved: boolean;
  restored: boolean;
  steps: number;
}

describe('model and pipe axes in core', () => {
  it.each(['model', 'pipe'] as const)('%s axis: the norm over the slice, the overflow on every rank, mp_rank files', async (axis) => {
    const dir = mkdtempSync(join(tmpdir(), `ds-core-${axis}-`));
    try {
      const w = await withWorld(2, new URL('./workers/model-parallel.ts', import.meta.url), { env: { DS_TEST_AXIS: axis, DS_TEST_DIR: dir }, timeoutMs: 60_000 });
      expect(w.timedOut, describeWorld(w)).toBe(false);
      for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
      const outs = w.ranks.map((r) => lastJson<Out>(r.stdout));
      // a: 12 elements of gradient rank + 1 on each rank (1 and 2); b: 5 elements of gradient 3, counted once.
      const want = Math.sqrt(12 * 1 + 12 * 4 + 5 * 9);
      for (const o of outs) {
        expect(o.norms[0] as number).toBeCloseTo(want, 5);
        expect(o.norms[1]).toBe('NaN');
        expect(o.applied).toEqual([true, false]);
        expect(o.moved).toBe(true);
        expect(o.restored).toBe(true);
        expect(o.steps).toBe(2);
        expect(o.files).toEqual(['meta.json', 'mp_rank_00_model_states.safetensors', 'mp_rank_01_model_states.safetensors', 'zero_pp_rank_0_mp_rank_00_optim_states.safetensors', 'zero_pp_rank_0_mp_rank_01_optim_states.safetensors']);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);

  it('names the files as DeepSpeed does and refuses module file names that are not plain', () => {
    expect(modelStatesFile(3)).toBe('mp_rank_03_model_states.safetensors');
    expect(optimStatesFile(1, 2)).toBe('zero_pp_rank_1_mp_rank_02_optim_states.safetensors');
    expect(optimStatesFile(1)).toBe('zero_pp_rank_1_optim_states.safetensors');
    expect(checkModuleFileName('layer_01-model_00-model_states.safetensors')).toBe('layer_01-model_00-model_states.safetensors');
    for (const bad of ['../x.safetensors', 'mp_rank_00_model_states.safetensors', 'model_states.safetensors', 'x.bin']) expect(() => checkModuleFileName(bad)).toThrow(/plain names ending in \.safetensors/);
  });
});
