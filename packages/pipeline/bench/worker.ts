// One rank of the pipeline bench. DS_BENCH_MODE:
//   bubble  one stage per rank of equal transformer blocks (2 per stage, float input, mean as the
//           loss) so that every stage does the same work, each block paced to DS_BENCH_PACE ([forward
//           ms, backward ms], PacedBlock) when given; DS_BENCH_MICRO micro batches; prints the median
//           over the batches of this stage's idle fraction (1 - compute / wall of trainBatch).
//   pipe    the GPT as 2 pipeline stages, DS_BENCH_MICRO micro batches of DS_BENCH_ROWS rows.
//   dp      the same GPT layers as one module, data parallel over the ranks, the same global batch.
//   tp      the GPT with its layers split over all ranks (tensor parallel, GPTTensorParallel), every
//           rank reading the whole global batch of DS_BENCH_MICRO micro batches.
// pipe, dp and tp print the median seconds per batch and the tokens per batch.
import { initialize } from '@ds/core';
import { attach, Generator, mean, Module, randint, randn, tidy, type Tensor } from '@ds/tensor';

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

const gate = new Int32Array(new SharedArrayBuffer(4));
/** Sleeps (the core free for other ranks) until performance.now() reaches `until`; the last 0.2 ms spun for precision. */
function sleepUntil(until: number): void {
  const ms = until - performance.now() - 0.2;
  if (ms > 0) Atomics.wait(gate, 0, 0, ms);
  while (performance.now() < until);
}

/**
 * A transformer block whose forward and backward each take a fixed wall time (`pace`: [forward ms,
 * backward ms], at least the block's own compute): the block computes, then sleeps out the rest.
 * Stages of these take equal times whatever the machine's speed does meanwhile, the premise of the
 * bubble formula; the sleeps leave the cores free, so 4 stages run on 2 cores.
 */
class PacedBlock extends Module<[Tensor], Tensor> {
  readonly inner: BlockPipe;
  constructor(cfg: typeof gpt, seed: number, readonly pace: [number, number]) {
    super();
    this.inner = this.registerModule('inner', new BlockPipe(cfg, seed));
  }
  forward(x: Tensor): Tensor {
    const t0 = performance.now();
    let backwardStart = 0;
    // Identity nodes around the block: the one after it runs first in backward (the start), the one before it last (sleeps out the rest).
    const xin = attach(x.detach(), 'pace_in', [x], (g) => {
      sleepUntil(backwardStart + this.pace[1]);
      return [g.detach()];
    });
    const y = this.inner.call(xin);
    const out = attach(y.detach(), 'pace_out', [y], (g) => {
      backwardStart = performance.now();
      return [g.detach()];
    });
    sleepUntil(t0 + this.pace[0]);
    return out;
  }
}

if (mode === 'bubble') {
  const stages = world;
  const pace = process.env.DS_BENCH_PACE ? (JSON.parse(process.env.DS_BENCH_PACE) as [number, number]) : null;
  const layers = Array.from({ length: 2 * stages }, (_, i) => (pace ? new LayerSpec(PacedBlock, gpt, 100 + i, pace) : new LayerSpec(BlockPipe, gpt, 100 + i)));
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
