// PipelineModule: each stage builds only its own layers (lazily, from the specs), tied layers share
// one module per stage, the stage comes from the rank, and the engine's entry points and checks.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { DSConfigError, DSUnsupportedError, initialize } from '@ds/core';
import { fromArray, Linear, Module, type Tensor } from '@ds/tensor';

import { gptLayers, gptPipe, LayerSpec, pipeline, PipelineEngine, PipelineModule, stageOf, TiedLayerSpec } from '../src/index.js';
import { PIPE_GPT, pipeConfig } from './fixtures.js';

class Counted extends Module<[Tensor], Tensor> {
  static built: number[] = [];
  readonly lin: Linear;
  constructor(readonly id: number) {
    super();
    Counted.built.push(id);
    this.lin = this.registerModule('lin', new Linear(4, 4));
  }
  forward(x: Tensor): Tensor {
    return this.lin.call(x);
  }
}

describe('PipelineModule', () => {
  it("builds only its stage's layers (uniform: nothing else is constructed)", () => {
    Counted.built = [];
    const m = new PipelineModule({ layers: [0, 1, 2, 3, 4, 5].map((i) => new LayerSpec(Counted, i)), numStages: 3, partitionMethod: 'uniform', stageId: 1 });
    expect(Counted.built).toEqual([2, 3]);
    expect(m.layerRange).toEqual([2, 4]);
    expect(m.namedParameters().map(([n]) => n)).toEqual(['2.lin.weight', '2.lin.bias', '3.lin.weight', '3.lin.bias']);
    expect(m.isFirstStage || m.isLastStage).toBe(false);
  });

  it('takes its stage from the rank: pipe outermost, ranks of one stage contiguous', () => {
    expect([0, 1, 2, 3].map((r) => stageOf(r, 4, 2))).toEqual([0, 0, 1, 1]);
    expect(() => stageOf(0, 3, 2)).toThrow(/a world of 3 rank\(s\) does not divide into 2 pipeline stages/);
  });

  it('a GPT: the tied embedding is one module on a single stage and two copies across two', () => {
    const whole = gptPipe(PIPE_GPT, { numStages: 1, stageId: 0 });
    expect(whole.tiedModules.size).toBe(1);
    expect(whole.tiedKeyStages()).toEqual(new Map([['embed', [0]]]));
    const first = gptPipe(PIPE_GPT, { numStages: 2, stageId: 0 });
    const last = gptPipe(PIPE_GPT, { numStages: 2, stageId: 1 });
    expect(first.tiedKeyStages()).toEqual(new Map([['embed', [0, 1]]]));
    const [a] = first.tiedParameters('embed');
    const [b] = last.tiedParameters('embed');
    // Built from the same spec and seed: both copies start equal.
    expect(a!.toArray()).toEqual(b!.toArray());
    // The single-stage module is the whole model: ids in, logits out.
    const ids = fromArray([1, 2, 3, 4], [1, 4], { dtype: 'i32' });
    expect(whole.call(ids).shape).toEqual([1, 4, PIPE_GPT.vocabSize]);
    expect(gptLayers(PIPE_GPT).map((l) => l.typeName)).toEqual(['EmbeddingPipe', 'BlockPipe', 'BlockPipe', 'FinalNormPipe', 'EmbeddingPipe']);
  });

  it('names a missing tied weight', () => {
    const m = new PipelineModule({ layers: [new TiedLayerSpec('t', Counted, [0], { tiedWeightAttr: ['nope'] })], numStages: 1, stageId: 0 });
    expect(() => m.tiedParameters('t')).toThrow(/has no parameter 'nope' \(has lin.weight, lin.bias\)/);
  });

  it('activationCheckpointInterval recomputes groups of layers and gives the same loss and gradients', () => {
    const run = (interval: number) => {
      const m = gptPipe(PIPE_GPT, { numStages: 1, stageId: 0, activationCheckpointInterval: interval });
      const ids = fromArray([1, 2, 3, 4, 5, 6], [2, 3], { dtype: 'i32' });
      const loss = m.loss(m.call(ids), fromArray([2, 3, 4, 5, 6, 7], [2, 3], { dtype: 'i32' }));
      loss.backward();
      return { loss: loss.item(), grads: m.parameters().map((p) => p.grad!.toArray()) };
    };
    const plain = run(0);
    const ckpt = run(2);
    expect(ckpt.loss).toBe(plain.loss);
    ckpt.grads.forEach((g, i) => g.forEach((v, j) => expect(Math.abs(v - plain.grads[i]![j]!)).toBeLessThan(1e-6)));
  });
});

describe('what a stage tells core', () => {
  it('tied weights are counted in the norm by their first stage only; each layer with parameters has its file', () => {
    const first = gptPipe(PIPE_GPT, { numStages: 2, stageId: 0 });
    const last = gptPipe(PIPE_GPT, { numStages: 2, stageId: 1 });
    expect(first.pipeReplicatedParameters()).toEqual([]);
    expect(last.pipeReplicatedParameters()).toEqual(last.tiedParameters('embed'));
    expect(last.pipeReplicatedParameters()).toHaveLength(1);
    const [lo, hi] = last.layerRange;
    // Layers: embed, 2 blocks, final norm, LM head (the tied embedding again).
    expect([lo, hi]).toEqual([2, 5]);
    expect(last.checkpointFiles(1)).toEqual([
      { file: 'layer_02-model_01-model_states.safetensors', prefix: '2.' },
      { file: 'layer_03-model_01-model_states.safetensors', prefix: '3.' },
      { file: 'layer_04-model_01-model_states.safetensors', prefix: 'tied_modules.embed.' },
    ]);
    const names = last.namedParameters().map(([n]) => n);
    for (const n of names) expect(last.checkpointFiles(0).some((f) => n.startsWith(f.prefix)), n).toBe(true);
  });
});

describe('PipelineEngine in one process', () => {
  it('forward / backward / step fail with DeepSpeed message; trainBatch trains', async () => {
    const model = gptPipe(PIPE_GPT, { numStages: 1, stageId: 0 });
    const { engine } = await initialize({ model, config: pipeConfig(2, 1), plugins: [pipeline()], dist: null, log: () => {} });
    expect(engine).toBeInstanceOf(PipelineEngine);
    expect(() => engine.forward()).toThrow(/Only train_batch\(\) is accessible in pipeline mode\./);
    await expect(engine.backward(fromArray([1]))).rejects.toThrow(DSUnsupportedError);
    await expect(engine.step()).rejects.toThrow(/Only train_batch\(\) is accessible in pipeline mode\./);
    const pipe = engine as PipelineEngine;
    await expect(pipe.trainBatch()).rejects.toThrow(/stage 0 loads micro batches and has no data iterator/);
    const ids = fromArray([1, 2, 3, 4, 5, 6, 7, 8], [2, 4], { dtype: 'i32' });
    const targets = fromArray([2, 3, 4, 5, 6, 7, 8, 9], [2, 4], { dtype: 'i32' });
    const first = await pipe.trainBatch([[ids, targets], [ids, targets]]);
    let last = first;
    for (let i = 0; i < 5; i++) last = await pipe.trainBatch([[ids, targets], [ids, targets]]);
    expect(last).toBeLessThan(first);
    expect(pipe.globalSteps).toBe(6);
    await expect(pipe.trainBatch([[ids, targets]])).rejects.toThrow(/the data iterator ended inside a batch of 2 micro batches/);
    const evalLoss = await pipe.evalBatch([[ids, targets], [ids, targets]]);
    expect(evalLoss).toBeGreaterThan(0);
    // A checkpoint round trip: the batch after loading repeats the batch after saving.
    const dir = mkdtempSync(join(tmpdir(), 'ds-pipe-ckpt-'));
    await pipe.saveCheckpoint(dir);
    const after = await pipe.trainBatch([[ids, targets], [ids, targets]]);
    expect((await pipe.loadCheckpoint(dir)).path).toBe(join(dir, 'global_step6'));
    expect(pipe.globalSteps).toBe(6);
    expect(await pipe.trainBatch([[ids, targets], [ids, targets]])).toBe(after);
    rmSync(dir, { recursive: true, force: true });
    engine.destroy();
  });

  it('evalBatch needs a loss function', async () => {
    const model = new PipelineModule({ layers: [new LayerSpec(Counted, 0)], numStages: 1, stageId: 0 });
    const { engine } = await initialize({ model, config: pipeConfig(2, 1), plugins: [pipeline()], dist: null, log: () => {} });
    const x = fromArray(new Array(8).fill(1), [2, 4]);
    await expect((engine as PipelineEngine).evalBatch([[x, x], [x, x]])).rejects.toThrow(/the PipelineModule has no lossFn/);
    engine.destroy();
  });

  it('takes the pipe degree from the module, and names the numbers when the world or the topology option disagree', async () => {
    const model = () => gptPipe(PIPE_GPT, { numStages: 2, stageId: 0 });
    await expect(initialize({ model: model(), config: pipeConfig(2, 1), plugins: [pipeline()], dist: null, log: () => {} })).rejects.toThrow(
      /topology: 1 ranks do not divide into 2 pipeline stage\(s\) x 1 model-parallel rank\(s\)/,
    );
    await expect(initialize({ model: model(), config: pipeConfig(2, 1), plugins: [pipeline()], topology: { pipe: 1 }, dist: null, log: () => {} })).rejects.toThrow(
      "initialize: topology.pipe is 1 but the model needs 2 (engine 'pipeline' of @ds/pipeline); drop the option or make it 2",
    );
  });

  it('checks the pipeline section against the module', async () => {
    const model = () => gptPipe(PIPE_GPT, { numStages: 1, stageId: 0 });
    const init = (extra: Record<string, unknown>) => initialize({ model: model(), config: { ...pipeConfig(2, 1), ...extra }, plugins: [pipeline()], dist: null, log: () => {} });
    await expect(init({ pipeline: { stages: 2 } })).rejects.toThrow(/pipeline.stages is 2 but the PipelineModule has 1 stages/);
    await expect(init({ pipeline: { partition: 'uniform' } })).rejects.toThrow(/pipeline.partition is 'uniform' but the PipelineModule was partitioned by 'parameters'/);
    await expect(init({ pipeline: { seed_layers: true } })).rejects.toThrow(/seed_layers/);
    const { engine } = await init({ pipeline: { stages: 'auto', partition: 'best' } });
    engine.destroy();
    expect(() => new PipelineModule({ layers: [], numStages: 0 })).toThrow(DSConfigError);
  });
});
