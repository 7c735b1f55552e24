// One rank of the pipeline bench. DS_BENCH_MODE:
//   bubble  DS_BENCH_STAGES stages of equal transformer blocks (2 per stage, float input, mean as the
//           loss) so that every stage does the same work; DS_BENCH_MICRO micro batches; prints each
//           batch's idle fraction on this stage (1 - compute / wall of trainBatch).
//   pipe    the GPT as 2 pipeline stages, DS_BENCH_MICRO micro batches of DS_BENCH_ROWS rows.
//   dp      the same GPT layers as one module, data parallel over the ranks, the same global batch.
//   tp      the GPT with its layers split over all ranks (tensor parallel, GPTTensorParallel), every
//           rank reading the whole global batch of DS_BENCH_MICRO micro batches.
// pipe, dp and tp print the median seconds per batch and the tokens per batch.
import { initialize } from '@ds/core';
import { Generator, mean, Module, randint, randn, tidy, type Tensor } from '@ds/tensor';

import { BlockPipe, gptPipe, GPTTensorParallel, LayerSpec, pipeline, PipelineModule, TensorParallel, type PipeBatch, type PipelineEngine } from '../src/index.js';

const mode = process.env.DS_BENCH_MODE!;
const micro = Number(process.env.DS_BENCH_MICRO);
const rows = Number(process.env.DS_BENCH_ROWS);
const steps = Number(process.env.DS_BENCH_STEPS);
const gpt = JSON.parse(process.env.DS_BENCH_GPT!) as { vocabSize: number; blockSize: number; nLayer: number; nHead: number; nEmbd: number; seed: number };
const rank = Number(process.env.RANK);
const world = Number(process.env.WORLD_SIZE);
const T = gpt.blockSize;
const config = (gas: number, perRank: number) => ({
  train_micro_batch_size_per_gpu: perRank,
  gradient_accumulation_steps: gas,
  bf16: { enabled: true },
  optimizer: { type: 'AdamW', params: { lr: 1e-4, weight_decay: 0.01 } },
});
// Tensor-parallel ranks must read the same batch: they share the generator's seed.
const g = new Generator(mode === 'tp' ? 7 : 7 + rank);
const tokens = (n: number): PipeBatch => [randint([n, T], gpt.vocabSize, { generator: g, dtype: 'i32' }), randint([n, T], gpt.vocabSize, { generator: g, dtype: 'i32' })];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

class WholeModel extends Module<[Tensor, Tensor], Tensor> {
  constructor(readonly pipe: PipelineModule) {
    super();
    this.registerModule('pipe', pipe);
  }
  forward(ids: Tensor, targets: Tensor): Tensor {
    return this.pipe.loss(this.pipe.call(ids), targets);
  }
}

if (mode === 'bubble') {
  const stages = world;
  const layers = Array.from({ length: 2 * stages }, (_, i) => new LayerSpec(BlockPipe, gpt, 100 + i));
  const model = new PipelineModule({ layers, numStages: stages, partitionMethod: 'uniform', lossFn: (y) => mean(y), rank, worldSize: world });
  const { engine } = await initialize({ model, config: config(micro, rows), plugins: [pipeline()], topology: { pipe: stages }, log: () => {} });
  const pipe = engine as PipelineEngine;
  const idle: number[] = [];
  for (let s = 0; s < steps + 1; s++) {
    const data: PipeBatch[] = Array.from({ length: micro }, () => [randn([rows, T, gpt.nEmbd], { generator: g }), randn([1], { generator: g })]);
    await pipe.trainBatch(data);
    if (s > 0) idle.push(pipe.lastBatchStats!.idleFraction);
    for (const [a, b] of data) (a.dispose(), b.dispose());
  }
  console.log(JSON.stringify({ stage: pipe.stageId, idle: median(idle) }));
  engine.destroy();
  await engine.dist?.destroy();
} else {
  const pipeMode = mode === 'pipe';
  const model =
    mode === 'tp'
      ? new GPTTensorParallel(gpt, new TensorParallel({ degree: world, globalRank: rank }))
      : pipeMode
        ? gptPipe(gpt, { numStages: world, rank, worldSize: world })
        : new WholeModel(gptPipe(gpt, { numStages: 1, stageId: 0 }));
  // The same global batch: micro x rows rows through the pipeline or the tensor-parallel ranks, or micro / world x rows on each data rank.
  const gas = mode === 'dp' ? micro / world : micro;
  const { engine } = await initialize({ model, config: config(gas, rows), plugins: [pipeline()], ...(pipeMode ? { topology: { pipe: world } } : {}), log: () => {} });
  const times: number[] = [];
  for (let s = 0; s < steps + 1; s++) {
    const data = Array.from({ length: gas }, () => tokens(rows));
    const t0 = performance.now();
    if (pipeMode) await (engine as PipelineEngine).trainBatch(data);
    else {
      for (const [ids, targets] of data) {
        const loss = tidy(() => engine.forward<Tensor>(ids, targets).keep());
        await engine.backward(loss);
        loss.dispose();
        await engine.step();
      }
    }
    if (s > 0) times.push((performance.now() - t0) / 1000);
    for (const [a, b] of data) (a.dispose(), b.dispose());
  }
  console.log(JSON.stringify({ batchS: median(times), tokensPerBatch: micro * rows * T }));
  engine.destroy();
  await engine.dist?.destroy();
}
