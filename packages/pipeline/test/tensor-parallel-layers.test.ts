// The tensor-parallel building blocks: each layer on 2 model ranks against the single-rank layer its
// shard was cut from (forward and gradients, element by element), a degree-1 GPT against the
// single-rank GPT, and bad input (degrees that do not divide heads or vocabulary, a world or topology
// that does not match the layers, layers used without a bound group) failing with the numbers named.
import { describe, expect, it } from 'vitest';

import { batch } from '@ds-internal/gpt-fixtures';
import { describeWorld, lastJson, withWorld } from '@ds-internal/test-kit';
import { initialize, ProcessTopology, type EngineParts, type ParallelGroups } from '@ds/core';
import { Generator, Linear, noGrad, randn, tidy } from '@ds/tensor';

import { ColumnParallelLinear, GPTTensorParallel, gptPipe, gptPipeParallel, joinShards, ParallelBlockPipe, PipelineModule, pipeline, RowParallelLinear, TensorParallel, VocabParallelEmbedding } from '../src/index.js';
import { checkTensorParallelConfig } from '../src/tensor-parallel/engine.js';
import { PIPE_GPT } from './fixtures.js';

describe('tensor-parallel layers on 2 model ranks', () => {
  it('match the single-rank layers they were cut from, forward and backward', async () => {
    const w = await withWorld(2, new URL('./workers/tp-layers.ts', import.meta.url), { timeoutMs: 60_000 });
    expect(w.timedOut, describeWorld(w)).toBe(false);
    for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
    for (const r of w.ranks) {
      const out = lastJson<Record<string, number>>(r.stdout);
      expect(Object.keys(out).length).toBe(12);
      for (const [what, diff] of Object.entries(out)) {
        if (what === 'loss') continue;
        expect(diff, `rank ${r.rank}: ${what}`).toBeLessThan(1e-5);
      }
      expect(out.loss).toBeGreaterThan(0);
    }
  }, 90_000);
});

describe('a degree-1 tensor-parallel GPT', () => {
  it('computes the single-rank GPT loss exactly', () => {
    const tp = new TensorParallel({ degree: 1 });
    const model = new GPTTensorParallel(PIPE_GPT, tp);
    const ref = gptPipe(PIPE_GPT, { numStages: 1, stageId: 0 });
    const { ids, targets } = batch(0, 0, 0, 2);
    const [a, b] = noGrad(() => tidy(() => [model.call(ids, targets).item(), ref.loss(ref.call(ids), targets).item()]));
    expect(a).toBe(b);
  });
});

describe('bad input names the numbers', () => {
  const tp2 = new TensorParallel({ degree: 2 });
  it('heads or vocabulary not divisible by the model degree', () => {
    expect(() => new GPTTensorParallel({ ...PIPE_GPT, nHead: 3, nEmbd: 18 }, tp2)).toThrow(/nHead 3 is not divisible by the tensor-parallel degree 2/);
    expect(() => new GPTTensorParallel({ ...PIPE_GPT, vocabSize: 33 }, tp2)).toThrow(/vocabSize 33 is not divisible by the tensor-parallel degree 2/);
    expect(() => new ParallelBlockPipe({ ...PIPE_GPT, nHead: 2 }, 0, new TensorParallel({ degree: 4 }))).toThrow(/nHead 2 is not divisible by the tensor-parallel degree 4/);
    expect(() => new ColumnParallelLinear(4, 6, new TensorParallel({ degree: 4 }))).toThrow(/output features 6 is not divisible by the tensor-parallel degree 4/);
    expect(() => new TensorParallel({ degree: 2, rank: 2 })).toThrow(/rank 2 is outside \[0, 2\)/);
  });

  it('a world that does not hold the model degree, or a topology option that disagrees', async () => {
    const model = new GPTTensorParallel(PIPE_GPT, tp2);
    const config = { train_micro_batch_size_per_gpu: 2, optimizer: { type: 'AdamW', params: { lr: 1e-3 } } };
    await expect(initialize({ model, config, dist: null, plugins: [pipeline()], log: () => {} })).rejects.toThrow(/1 ranks do not divide into 1 pipeline stage\(s\) x 2 model-parallel rank\(s\)/);
    await expect(initialize({ model, config, dist: null, plugins: [pipeline()], topology: { model: 4 }, log: () => {} })).rejects.toThrow(/topology.model is 4 but the model needs 2/);
    const pipe = gptPipeParallel(PIPE_GPT, tp2, { numStages: 2, stageId: 0 });
    await expect(initialize({ model: pipe, config: { ...config, gradient_accumulation_steps: 2 }, dist: null, plugins: [pipeline()], log: () => {} })).rejects.toThrow(/1 ranks do not divide into 2 pipeline stage\(s\) x 2 model-parallel rank\(s\)/);
  });

  it('layers bound to a topology of another degree or another model rank', () => {
    const groups = (world: number, model: number, rank: number): ParallelGroups => {
      const topology = new ProcessTopology(world, { model });
      return { topology, coords: topology.coords(rank), world: null, data: null, pipe: null, model: null };
    };
    expect(() => new TensorParallel({ degree: 2, rank: 1 }).bind(groups(4, 4, 1))).toThrow(/built for 2-way tensor parallelism but the topology is pipe 1 x data 1 x model 4 over 4 rank\(s\)/);
    expect(() => new TensorParallel({ degree: 2, rank: 1 }).bind(groups(2, 2, 0))).toThrow(/hold model-parallel shard 1 but this rank is model rank 0/);
  });

  it('ZeRO stage 3 with a model degree above 1 is rejected by name; stages 1 and 2, fp16 and clipping are not', () => {
    const parts = (config: Record<string, unknown>, stage = 0) =>
      ({ groups: { topology: new ProcessTopology(2, { model: 2 }) }, config: { fp16: { enabled: false }, gradient_clipping: 0, ...config }, state: { stage } }) as unknown as EngineParts;
    expect(() => checkTensorParallelConfig(parts({}, 3), 'tp')).toThrow(/ZeRO stage 3 with 2-way tensor parallelism is not built .*; use zero_optimization.stage 1 or 2/);
    for (const stage of [1, 2]) expect(() => checkTensorParallelConfig(parts({}, stage), 'tp')).not.toThrow();
    for (const ok of [{ bf16: { enabled: true } }, { fp16: { enabled: true } }, { gradient_clipping: 1 }]) expect(() => checkTensorParallelConfig(parts(ok), 'tp')).not.toThrow();
  });

  it('each layer declares which of its parameters are split, and how; joinShards puts the single-rank weight back together', () => {
    const whole = new Linear(4, 6, { generator: new Generator(5) });
    const col = [0, 1].map((r) => new ColumnParallelLinear(4, 6, new TensorParallel({ degree: 2, rank: r }), { from: whole, stride: 3 }));
    const row = new RowParallelLinear(6, 4, tp2, { from: new Linear(6, 4) });
    expect(col[0]!.modelParallelSplits()).toEqual([[col[0]!.weight, { dim: 0, stride: 3 }], [col[0]!.bias, { dim: 0, stride: 3 }]]);
    expect(row.modelParallelSplits()).toEqual([[row.weight, { dim: 1, stride: 1 }]]); // the bias is replicated
    expect(new VocabParallelEmbedding(8, 4, tp2).modelParallelSplits()).toEqual([[expect.anything(), { dim: 0, stride: 1 }]]);
    expect(new ColumnParallelLinear(4, 6, new TensorParallel({ degree: 1 })).modelParallelSplits()).toEqual([]);
    const shards = col.map((c) => ({ shape: [...c.weight.shape], data: c.weight.data() as Float32Array }));
    const joined = joinShards(shards, 0, 3);
    expect(joined.shape).toEqual([6, 4]);
    expect([...joined.data]).toEqual([...(whole.weight.data() as Float32Array)]);
    const rowWhole = new Linear(6, 4, { generator: new Generator(7) });
    const rows = [0, 1].map((r) => new RowParallelLinear(6, 4, new TensorParallel({ degree: 2, rank: r }), { from: rowWhole }));
    expect([...joinShards(rows.map((l) => ({ shape: [...l.weight.shape], data: l.weight.data() as Float32Array })), 1, 1).data]).toEqual([...(rowWhole.weight.data() as Float32Array)]);
  });

  it('a layer of degree 2 run without a bound group, and a pipeline of tensor-parallel layers without tensorParallel', () => {
    const layer = new ColumnParallelLinear(4, 4, tp2);
    const x = randn([2, 4]);
    expect(() => layer.call(x)).toThrow(/built for 2-way tensor parallelism, but no model-parallel group is bound; pass the model to initialize\(\) with the pipeline\(\) plugin/);
    expect(() => new PipelineModule({ layers: [layer], numStages: 1 })).toThrow(/stage layers are tensor-parallel but the module was built without tensorParallel/);
  });
});
