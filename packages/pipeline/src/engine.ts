// PipelineEngine: DeepSpeed's runtime/pipe/engine.py. trainBatch() runs one batch (m micro batches,
// m = gradient_accumulation_steps) through the 1F1B TrainSchedule, evalBatch() through the
// InferenceSchedule; each instruction of the stream has one handler here. Sends are asynchronous
// and overlap the next compute (their Works are awaited only before a buffer is reused and at the
// end of the batch); receives are awaited where the schedule needs the data. forward / backward /
// step called directly fail as in DeepSpeed.
//
// Gradient reduction: core's one reduction path all-reduces gradients over the data-parallel group
// from the hooks of the boundary backward (the last micro batch's), overlapping it; ReduceTiedGrads
// then sums the tied weights' gradients over the stages that hold them. Both are sums over disjoint
// axes, so the order does not change the result (DeepSpeed reduces tied gradients first).
// ZeRO stage 1 reduce-scatters instead, leaving each data rank only its block, and the blocks of a
// tied weight differ between stages (each stage partitions its own parameters): there the boundary
// backward leaves the gradients unreduced, ReduceTiedGrads sums the whole local gradients, and
// ReduceGrads runs the data-parallel reduction afterwards, in DeepSpeed's order and without the
// overlap (DeepSpeed's pipeline never overlaps it). ZeRO stages 2 and 3 are rejected, as in DeepSpeed.
//
// The step is core's or ZeRO's: the global gradient norm (clipping) and the fp16 overflow flag are
// summed over the pipe and model groups there, with tied weights counted on their first stage only
// (PipelineModule.pipeReplicatedParameters). Checkpoints are core's too: each stage's data rank 0
// writes its layers' files (PipelineModule.checkpointFiles) and its mp_rank_NN file; under ZeRO 1
// every data rank writes its optimizer shard, which loads on any data degree (re-partitioned).
import { backward as runBackward, freeGraph, noGrad, tidy, type Tensor } from '@ds/tensor';
import { DSConfigError, DSUnsupportedError, Engine, type EngineParts, type ProcessGroup, type Work } from '@ds/core';

import { pipelineConfigOf } from './config.js';
import { PipelineModule } from './module.js';
import { StageLink } from './p2p.js';
import { checkTensorParallelConfig } from './tensor-parallel/engine.js';
import { InferenceSchedule, TrainSchedule, type Instruction } from './schedule.js';

/** One micro batch as the data iterator yields it: [inputs, labels]. */
export type PipeBatch = readonly [Tensor, Tensor];
export type PipeData = Iterator<PipeBatch> | Iterable<PipeBatch>;

/** Timing of the last trainBatch on this stage: the idle fraction is the pipeline bubble seen here. */
export interface BatchStats {
  /** From the start of trainBatch to the end of every stage's forwards and backwards (the reductions and the step excluded). */
  wallMs: number;
  /** This stage's forward and backward passes (loss included on the last stage). */
  computeMs: number;
  idleFraction: number;
}

interface TieGroup {
  key: string;
  group: ProcessGroup;
  params: Tensor[];
}

/** Buffers of one batch, indexed by the schedule's buffer ids. */
interface Buffers {
  inputs: (Tensor | null)[];
  labels: (Tensor | null)[];
  outputs: (Tensor | null)[];
  grads: (Tensor | null)[];
  /** Sends still in flight that read a buffer's tensors, with the tensors to free after them. */
  sends: { works: Work[]; free: Tensor[] }[][];
  losses: number[];
  backwards: number;
  computeMs: number;
  /** When every stage's forwards and backwards were over (before the tied and data-parallel reductions and the step). */
  computeEndMs: number;
}

const PIPELINE_ERROR = 'Only train_batch() is accessible in pipeline mode.';

function iteratorOf(data: PipeData): Iterator<PipeBatch> {
  return typeof (data as Iterable<PipeBatch>)[Symbol.iterator] === 'function' ? (data as Iterable<PipeBatch>)[Symbol.iterator]() : (data as Iterator<PipeBatch>);
}

export class PipelineEngine extends Engine {
  readonly pipeModule: PipelineModule;
  readonly numStages: number;
  readonly stageId: number;
  readonly microBatches: number;
  /** Timing of the last trainBatch on this stage. */
  lastBatchStats: BatchStats | null = null;
  private readonly link: StageLink | null;
  private dataIterator: Iterator<PipeBatch> | null = null;
  /** ZeRO 1 with tied weights across stages: the data-parallel reduction waits for ReduceTiedGrads (see the top of this file). */
  private readonly deferReduction: boolean;
  /** True while a backward pass runs whose data-parallel reduction is deferred. */
  private holdReduction = false;

  private constructor(
    private readonly pp: EngineParts,
    private readonly tieGroups: TieGroup[],
  ) {
    super(pp);
    this.pipeModule = pp.module as PipelineModule;
    this.numStages = this.pipeModule.numStages;
    this.stageId = this.pipeModule.stageId;
    this.microBatches = pp.batch.gradientAccumulationSteps;
    const { pipe, model } = pp.groups;
    const pc = pipelineConfigOf(pp.config);
    // Activations and input gradients are replicated over the model group: split their sends (DeepSpeed's pipe_partitioned / grad_partitioned).
    const partition = model ? { model, activations: pc?.pipe_partitioned ?? true, grads: pc?.grad_partitioned ?? true } : null;
    this.link = pipe ? new StageLink(pipe, this.stageId, partition) : null;
    this.deferReduction = tieGroups.length > 0 && pp.state.stage > 0;
    if (this.deferReduction && !pp.state.reduceGradients) {
      throw new DSUnsupportedError(
        `pipeline: the ZeRO stage ${pp.state.stage} model states cannot defer their gradient reduction past the boundary backward, which tied weights across stages need (TiedLayerSpec ${tieGroups.map((t) => `'${t.key}'`).join(', ')}); use ZeRO stage 0 or 1 from @ds/zero`,
      );
    }
  }

  /** Checks the module against the topology and config, then builds the tied-weight groups (collective). */
  static async create(parts: EngineParts): Promise<PipelineEngine> {
    const module = parts.module as PipelineModule;
    checkSetup(module, parts);
    const tieGroups: TieGroup[] = [];
    const { topology } = parts.groups;
    for (const [key, stages] of module.tiedKeyStages()) {
      if (stages.length < 2 || !parts.dist) continue;
      // Every rank creates every tie group (one per data and model coordinate) in the same order; members get theirs.
      for (let d = 0; d < topology.degrees.data; d++) {
        for (let mr = 0; mr < topology.degrees.model; mr++) {
          const ranks = stages.map((s) => topology.rankOf({ pipe: s, data: d, model: mr }));
          const group = await parts.dist.newGroup(ranks, { name: `tied[${key}][${ranks.join(',')}]` });
          if (group) tieGroups.push({ key, group, params: module.tiedParameters(key) });
        }
      }
    }
    return new PipelineEngine(parts, tieGroups);
  }

  /**
   * Core's boundary rule, except during a backward pass whose data-parallel reduction is deferred to
   * ReduceGrads: the model states then accumulate the boundary backward's gradients unreduced.
   */
  override isGradientAccumulationBoundary(): boolean {
    return !this.holdReduction && super.isGradientAccumulationBoundary();
  }

  isFirstStage(): boolean {
    return this.stageId === 0;
  }
  isLastStage(): boolean {
    return this.stageId === this.numStages - 1;
  }

  /** DeepSpeed's set_dataiterator: the iterator trainBatch() reads when it is given none. */
  setDataIterator(data: PipeData): void {
    this.dataIterator = iteratorOf(data);
  }

  override forward<Out>(..._args: unknown[]): Out {
    throw new DSUnsupportedError(`${PIPELINE_ERROR} Call engine.trainBatch(dataIterator) or engine.evalBatch(dataIterator)`);
  }
  override backward(_loss: Tensor): Promise<number> {
    return Promise.reject(new DSUnsupportedError(`${PIPELINE_ERROR} Call engine.trainBatch(dataIterator): it runs forward, backward and the step`));
  }
  override step(): Promise<void> {
    return Promise.reject(new DSUnsupportedError(`${PIPELINE_ERROR} Call engine.trainBatch(dataIterator): it ends with the optimizer step`));
  }

  /** One batch through the 1F1B schedule; returns the batch's mean loss on every rank (averaged over data-parallel ranks). */
  async trainBatch(data?: PipeData): Promise<number> {
    const it = this.iteratorFor(data, 'trainBatch');
    this.pipeModule.train();
    const schedule = new TrainSchedule(this.microBatches, this.numStages, this.stageId);
    const b = this.newBuffers(schedule.numPipeBuffers());
    const t0 = performance.now();
    try {
      for (const cmds of schedule.steps()) for (const c of sendsFirst(cmds)) await this.exec(c, b, it, true);
    } finally {
      await this.drain(b);
    }
    const wallMs = b.computeEndMs - t0;
    this.lastBatchStats = { wallMs, computeMs: b.computeMs, idleFraction: wallMs > 0 ? Math.max(0, 1 - b.computeMs / wallMs) : 0 };
    return this.batchLoss(b.losses);
  }

  /** Forward only through the InferenceSchedule; returns the mean loss of the micro batches on every rank. */
  async evalBatch(data?: PipeData): Promise<number> {
    if (!this.pipeModule.lossFn) throw new DSConfigError('evalBatch: the PipelineModule has no lossFn; evalBatch returns the mean loss of the micro batches, so build the module with lossFn');
    const it = this.iteratorFor(data, 'evalBatch');
    const wasTraining = this.pipeModule.training;
    this.pipeModule.eval();
    const schedule = new InferenceSchedule(this.microBatches, this.numStages, this.stageId);
    const b = this.newBuffers(schedule.numPipeBuffers());
    try {
      for (const cmds of schedule.steps()) for (const c of cmds) await this.exec(c, b, it, false);
    } finally {
      await this.drain(b);
      this.pipeModule.train(wasTraining);
    }
    return this.batchLoss(b.losses);
  }

  private iteratorFor(data: PipeData | undefined, op: string): Iterator<PipeBatch> | null {
    if (data) return iteratorOf(data);
    if (!this.dataIterator && (this.isFirstStage() || this.isLastStage())) {
      throw new DSConfigError(`${op}: stage ${this.stageId} loads micro batches and has no data iterator; pass one ([inputs, labels] per micro batch) or call setDataIterator()`);
    }
    return this.dataIterator;
  }

  private newBuffers(n: number): Buffers {
    const nulls = () => Array.from({ length: n }, () => null);
    return { inputs: nulls(), labels: nulls(), outputs: nulls(), grads: nulls(), sends: Array.from({ length: n }, () => []), losses: [], backwards: 0, computeMs: 0, computeEndMs: 0 };
  }

  private async exec(c: Instruction, b: Buffers, it: Iterator<PipeBatch> | null, training: boolean): Promise<void> {
    switch (c.kind) {
      case 'LoadMicroBatch': {
        const next = it!.next();
        if (next.done) throw new DSConfigError(`pipeline stage ${this.stageId}: the data iterator ended inside a batch of ${this.microBatches} micro batches`);
        const [inputs, labels] = next.value;
        if (this.isFirstStage()) b.inputs[c.buffer] = inputs;
        if (this.isLastStage()) b.labels[c.buffer] = labels;
        return;
      }
      case 'RecvActivation':
        await this.settle(b, c.buffer);
        b.inputs[c.buffer] = await this.link!.recvActivation(training);
        return;
      case 'ForwardPass':
        return this.forwardPass(b, c.buffer, training);
      case 'SendActivation': {
        const sent = this.link!.sendActivation(b.outputs[c.buffer]!);
        b.sends[c.buffer]!.push({ works: sent.works, free: training ? sent.free : [...sent.free, b.outputs[c.buffer]!] });
        if (!training) b.outputs[c.buffer] = null;
        return;
      }
      case 'RecvGrad':
        b.grads[c.buffer] = await this.link!.recvGrad(b.outputs[c.buffer]!);
        return;
      case 'BackwardPass':
        return this.backwardPass(b, c.buffer);
      case 'SendGrad': {
        const x = b.inputs[c.buffer]!;
        const sent = this.link!.sendGrad(x.grad!);
        b.sends[c.buffer]!.push({ works: [sent.work], free: [...sent.free, x.grad!, x] });
        b.inputs[c.buffer] = null;
        return;
      }
      case 'ReduceTiedGrads':
        await this.endOfCompute(b);
        {
          // Every tied weight's all-reduce in flight at once, then all awaited.
          const works = this.tieGroups.flatMap((t) => t.params.map((p) => t.group.allReduce({ dtype: p.grad!.dtype, array: p.grad!.operand() })));
          for (const w of works) await w;
        }
        return;
      case 'ReduceGrads':
        // Core's reduction ran from the boundary backward's hooks and backward awaited it (unless deferred to here); first check that every backward ran.
        if (b.backwards !== this.microBatches) throw new DSConfigError(`pipeline stage ${this.stageId}: ReduceGrads after ${b.backwards} of ${this.microBatches} backward passes`);
        if (this.deferReduction) await this.pp.state.reduceGradients!();
        return;
      case 'OptimizerStep':
        this.microSteps = this.globalSteps * this.microBatches + this.microBatches - 1;
        await super.step();
        return;
    }
  }

  private forwardPass(b: Buffers, buffer: number, training: boolean): void {
    const t0 = performance.now();
    const x = b.inputs[buffer]!;
    const run = () =>
      tidy(() => {
        const y = this.pipeModule.call(x);
        if (!this.isLastStage()) return y.keep();
        const label = b.labels[buffer];
        return (label && this.pipeModule.lossFn ? this.pipeModule.loss(y, label) : y).keep();
      });
    const out = training ? run() : noGrad(run);
    if (this.isLastStage()) {
      if (!training) {
        if (out.numel === 1) b.losses.push(out.item());
        out.dispose();
      }
    }
    b.outputs[buffer] = out;
    if (!this.isFirstStage() && !training) {
      x.dispose();
      b.inputs[buffer] = null;
    }
    b.computeMs += performance.now() - t0;
  }

  private async backwardPass(b: Buffers, buffer: number): Promise<void> {
    const t0 = performance.now();
    const out = b.outputs[buffer]!;
    // The engine's micro-step counter makes the last backward of the batch the accumulation boundary.
    this.microSteps = this.globalSteps * this.microBatches + b.backwards;
    b.backwards += 1;
    this.holdReduction = this.deferReduction;
    try {
      if (this.isLastStage()) {
        // The loss: seeded with lossScale / m and reduced on the boundary by the engine's own backward.
        b.losses.push(await super.backward(out));
      } else {
        await this.settle(b, buffer);
        const g = b.grads[buffer]!;
        const state = this.pp.state;
        state.beforeBackward(this.isGradientAccumulationBoundary());
        try {
          runBackward(out, g);
        } finally {
          freeGraph(out);
        }
        await state.afterBackward();
        g.dispose();
        b.grads[buffer] = null;
      }
    } finally {
      this.holdReduction = false;
    }
    out.dispose();
    b.outputs[buffer] = null;
    if (this.isFirstStage()) b.inputs[buffer] = null; // the caller's tensor: not ours to free
    b.computeMs += performance.now() - t0;
  }

  /**
   * The end of the batch's forwards and backwards on every stage: the sends are waited for and the
   * pipe group meets, so the span lastBatchStats reports is the whole pipeline's, the same for every
   * stage, as the bubble (p - 1) / (m + p - 1) counts it.
   */
  private async endOfCompute(b: Buffers): Promise<void> {
    for (let i = 0; i < b.sends.length; i++) await this.settle(b, i);
    if (this.pp.groups.pipe) await this.pp.groups.pipe.barrier();
    b.computeEndMs = performance.now();
  }

  /** Waits for the sends that read `buffer` and frees what they held. */
  private async settle(b: Buffers, buffer: number): Promise<void> {
    const pending = b.sends[buffer]!.splice(0);
    for (const s of pending) {
      for (const w of s.works) await w;
      for (const t of s.free) t.dispose();
    }
  }

  private async drain(b: Buffers): Promise<void> {
    for (let i = 0; i < b.sends.length; i++) await this.settle(b, i);
    for (const list of [b.outputs, b.grads]) for (const t of list) t?.dispose();
    if (!this.isFirstStage()) for (const t of b.inputs) t?.dispose();
  }

  /** Mean loss of the batch: computed on the last stage, averaged over data-parallel ranks, broadcast to every stage. */
  private async batchLoss(losses: number[]): Promise<number> {
    const v = new Float32Array([losses.length ? losses.reduce((a, x) => a + x, 0) / losses.length : 0]);
    const data = this.pp.groups.data;
    if (this.isLastStage() && data) await data.allReduce({ dtype: 'f32', array: v }, { op: 'avg' });
    const pipe = this.pp.groups.pipe;
    if (pipe) await pipe.broadcast({ dtype: 'f32', array: v }, { root: this.numStages - 1 });
    return v[0]!;
  }
}

/**
 * A step's instructions with its sends moved ahead of its receives. DeepSpeed orders a forward step
 * RecvActivation then SendGrad because its sends block; ours only start a transfer (the Work is
 * waited for when the buffer is reused), so starting the send first costs nothing here and spares
 * the neighbour waiting on it the length of our receive. The two touch different buffers
 * (consecutive micro batches), so the order changes no data.
 */
export function sendsFirst(cmds: readonly Instruction[]): readonly Instruction[] {
  const isSend = (c: Instruction) => c.kind === 'SendActivation' || c.kind === 'SendGrad';
  const at = cmds.findIndex(isSend);
  if (at <= 0) return cmds;
  return [...cmds.filter(isSend), ...cmds.filter((c) => !isSend(c))];
}

/** What a pipeline run needs of the topology, the batch and the config; each mismatch names its numbers. */
function checkSetup(module: PipelineModule, parts: EngineParts): void {
  const { topology, coords } = parts.groups;
  const world = topology.worldSize;
  if (topology.degrees.pipe !== module.numStages) {
    throw new DSConfigError(
      `PipelineModule has ${module.numStages} stages but the topology is ${topology} over ${world} rank(s); register pipeline() so initialize() takes the pipe degree from the module (or pass topology: { pipe: ${module.numStages} }), on a world size that is a multiple of ${module.numStages}`,
    );
  }
  if (coords.pipe !== module.stageId) {
    throw new DSConfigError(`PipelineModule was built for stage ${module.stageId} but this rank is stage ${coords.pipe} of the topology (${topology}); build it with the rank and world size of the job`);
  }
  checkTensorParallelConfig(parts, 'pipeline');
  const m = parts.batch.gradientAccumulationSteps;
  if (m < module.numStages) {
    throw new DSConfigError(`pipeline: ${m} micro batch(es) per batch (gradient_accumulation_steps) is fewer than the ${module.numStages} stages; raise gradient_accumulation_steps to at least ${module.numStages} (DeepSpeed advises 8 x stages)`);
  }
  const { config } = parts;
  // DeepSpeed's PipelineEngine asserts the same: stage 1 partitions only the optimizer states; stages 2 and 3 would partition gradients (and parameters) that every micro batch's backward and the tied-weight reduction need whole.
  if (parts.state.stage >= 2) {
    throw new DSConfigError(`ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism (zero_optimization.stage is ${parts.state.stage}); use stage 0 or 1 with @ds/pipeline`);
  }
  const pc = pipelineConfigOf(config);
  if (!pc) return;
  if (pc.stages !== 'auto' && pc.stages !== module.numStages) throw new DSConfigError(`pipeline.stages is ${pc.stages} but the PipelineModule has ${module.numStages} stages; make them match or use "auto"`);
  if (pc.partition !== 'best' && pc.partition.toLowerCase() !== module.partitionMethod.toLowerCase()) {
    throw new DSConfigError(`pipeline.partition is '${pc.partition}' but the PipelineModule was partitioned by '${module.partitionMethod}'; make them match or use "best"`);
  }
  if (pc.activation_checkpoint_interval !== 0 && pc.activation_checkpoint_interval !== module.activationCheckpointInterval) {
    throw new DSConfigError(`pipeline.activation_checkpoint_interval is ${pc.activation_checkpoint_interval} but the PipelineModule has ${module.activationCheckpointInterval}; set it on the module (activationCheckpointInterval) or make them match`);
  }
}
