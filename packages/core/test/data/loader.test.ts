// DeepSpeed's training_data: DistributedSampler's rules (pad by repeating, or cut with drop_last;
// rank r takes every world-th index; the shuffle depends on seed + epoch) and dataloader_drop_last.
import { describe, expect, it } from 'vitest';

import { TINY_GPT } from '@ds-internal/gpt-fixtures';
import { GPT } from '@ds/tensor';

import { DistributedDataLoader } from '../../src/data/loader.js';
import { initialize } from '../../src/engine/initialize.js';
import { DSConfigError } from '../../src/errors.js';
import { thrown } from '../helpers/config.js';

const data = Array.from({ length: 10 }, (_, i) => i);

describe('DistributedDataLoader', () => {
  it('splits an epoch over the ranks like DistributedSampler (no shuffle: pads by repeating from the start)', () => {
    const ranks = [0, 1, 2].map((rank) => new DistributedDataLoader(data, { batchSize: 2, rank, worldSize: 3, shuffle: false }));
    expect(ranks.map((l) => l.indices())).toEqual([[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]);
    expect(ranks.map((l) => [...l])).toEqual([[[0, 3], [6, 9]], [[1, 4], [7, 0]], [[2, 5], [8, 1]]]);
    const cut = [0, 1, 2].map((rank) => new DistributedDataLoader(data, { batchSize: 2, rank, worldSize: 3, shuffle: false, dropLastSamples: true }).indices());
    expect(cut).toEqual([[0, 3, 6], [1, 4, 7], [2, 5, 8]]);
  });

  it('shuffles by seed + epoch: every rank sees a disjoint part of the same permutation, and setEpoch changes it', () => {
    const two = [0, 1].map((rank) => new DistributedDataLoader(data, { batchSize: 5, rank, worldSize: 2, seed: 7 }));
    const epoch0 = two.map((l) => l.indices());
    expect([...epoch0[0]!, ...epoch0[1]!].sort((a, b) => a - b)).toEqual(data);
    expect(epoch0[0]).not.toEqual([0, 2, 4, 6, 8]);
    two.forEach((l) => l.setEpoch(1));
    const epoch1 = two.map((l) => l.indices());
    expect(epoch1).not.toEqual(epoch0);
    expect([...epoch1[0]!, ...epoch1[1]!].sort((a, b) => a - b)).toEqual(data);
  });

  it('collates, counts its batches, and names bad input', () => {
    const l = new DistributedDataLoader({ length: 5, get: (i: number) => ({ x: i }) }, { batchSize: 2, rank: 0, worldSize: 1, shuffle: false, collate: (s) => s.map((o) => o.x).join('+') });
    expect([...l]).toEqual(['0+1', '2+3', '4']);
    expect(l.length).toBe(3);
    expect(thrown(() => new DistributedDataLoader([], { batchSize: 1, rank: 0, worldSize: 1 }), DSConfigError).message).toMatch(/training data is empty/);
    expect(thrown(() => new DistributedDataLoader(data, { batchSize: 1, rank: 2, worldSize: 2 }), DSConfigError).message).toMatch(/rank 2 is not a rank of a data-parallel group of 2/);
  });
});

describe('initialize({ trainingData })', () => {
  it('gives each rank its micro batches; dataloader_drop_last drops the last incomplete one', async () => {
    const config = { train_micro_batch_size_per_gpu: 4, optimizer: { type: 'AdamW', params: { lr: 1e-3 } } };
    const keep = await initialize({ model: new GPT(TINY_GPT), config, trainingData: data, collateFn: (s) => s.length, dist: null, log: () => {} });
    expect([...keep.trainingDataLoader!]).toEqual([4, 4, 2]);
    keep.engine.destroy();
    const drop = await initialize({ model: new GPT(TINY_GPT), config: { ...config, dataloader_drop_last: true }, trainingData: data, collateFn: (s) => s.length, dist: null, log: () => {} });
    expect([...drop.trainingDataLoader!]).toEqual([4, 4]);
    expect(drop.trainingDataLoader!.length).toBe(2);
    drop.engine.destroy();
    const none = await initialize({ model: new GPT(TINY_GPT), config, dist: null, log: () => {} });
    expect(none.trainingDataLoader).toBeNull();
    none.engine.destroy();
  });
});
