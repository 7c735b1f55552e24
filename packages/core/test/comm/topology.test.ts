// The pipe x data x model grid: DeepSpeed's PipeModelDataParallelTopology order (model fastest, then
// data, then pipe), its axis groups, errors naming the numbers, and the groups built over real processes.
import { describe, expect, it } from 'vitest';

import { describeWorld, lastJson, withWorld } from '@ds-internal/test-kit';

import { DSConfigError } from '../../src/errors.js';
import { ProcessTopology } from '../../src/comm/topology.js';
import { thrown } from '../helpers/config.js';

describe('ProcessTopology', () => {
  it('numbers ranks model-fastest, then data, then pipe, as DeepSpeed does', () => {
    const t = new ProcessTopology(8, { pipe: 2, model: 2 });
    expect(t.degrees).toEqual({ pipe: 2, data: 2, model: 2 });
    // DeepSpeed: PipeModelDataParallelTopology(num_pp=2, num_mp=2, num_dp=2).get_coord(5) = (pipe=1, data=0, model=1)
    expect(t.coords(5)).toEqual({ pipe: 1, data: 0, model: 1 });
    for (let r = 0; r < 8; r++) expect(t.rankOf(t.coords(r))).toBe(r);
    expect(t.axisGroups('model')).toEqual([[0, 1], [2, 3], [4, 5], [6, 7]]);
    expect(t.axisGroups('data')).toEqual([[0, 2], [1, 3], [4, 6], [5, 7]]);
    expect(t.axisGroups('pipe')).toEqual([[0, 4], [1, 5], [2, 6], [3, 7]]);
    expect(t.groupOf('data', 5)).toEqual([5, 7]);
  });

  it('defaults to all data, and names the numbers when the grid does not fill the world', () => {
    expect(new ProcessTopology(4).degrees).toEqual({ pipe: 1, data: 4, model: 1 });
    expect(thrown(() => new ProcessTopology(6, { pipe: 4 }), DSConfigError).message).toMatch(/6 ranks do not divide into 4 pipeline stage\(s\) x 1 model-parallel rank\(s\)/);
    expect(thrown(() => new ProcessTopology(8, { pipe: 2, data: 3 }), DSConfigError).message).toMatch(/pipe 2 x data 3 x model 1 = 6 ranks, but the world has 8/);
    expect(thrown(() => new ProcessTopology(4, { model: 0 }), DSConfigError).message).toMatch(/model degree must be a positive integer, got 0/);
  });
});

describe('buildParallelGroups over 4 processes', () => {
  it('gives each rank its data, pipe and model groups, and collectives run on them', async () => {
    const w = await withWorld(4, new URL('./workers/topology.ts', import.meta.url), { timeoutMs: 60_000 });
    expect(w.timedOut, describeWorld(w)).toBe(false);
    for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
    const got = w.ranks.map((r) => lastJson<{ data: number[]; pipe: number[]; model: number[] | null; sum: number }>(r.stdout));
    // pipe 2 x data 2 x model 1: data groups [0,1] and [2,3], pipe groups [0,2] and [1,3].
    expect(got.map((g) => g.data)).toEqual([[0, 1], [0, 1], [2, 3], [2, 3]]);
    expect(got.map((g) => g.pipe)).toEqual([[0, 2], [1, 3], [0, 2], [1, 3]]);
    expect(got.map((g) => g.model)).toEqual([null, null, null, null]);
    // An all-reduce of the global rank over the data group.
    expect(got.map((g) => g.sum)).toEqual([1, 1, 5, 5]);
  }, 90_000);
});
