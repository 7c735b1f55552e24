// The model-state manager of the 1-bit optimizers: core's stage 0 (DataParallelState) with two
// additions, contributed as an optimizer wrapper that applies only when no ZeRO stage is on.
//
// 1. Checkpoints carry each rank's error-feedback buffers. Stage 0 lets rank 0 write one file for
//    everyone; the worker and server errors differ per rank, so here every rank writes its own file
//    (partitioned = true) with its errors beside the usual state. DeepSpeed drops the errors on
//    load (OnebitAdam.load_state_dict deletes worker_error and server_error, so they restart at
//    zero). We restore them when the checkpoint was written by the same number of ranks, so that
//    a run resumed in the compressed phase repeats the uninterrupted run's losses; on another world
//    size the padding and the server chunks differ, so we reset them as DeepSpeed does, and say so.
// 2. When the gradients stay local (the compressed phase), an Inf/NaN gradient (an fp16 overflow,
//    or a diverging run) seen by one rank is not seen by the others, and stage 0 skips the step on
//    it; a rank that skipped while the others ran the compressed all-reduce would leave them
//    waiting. The ranks agree on it first with a one-element all-reduce (4 bytes a step).
import { DataParallelState, DSCheckpointError, type ModelStateManager, type RankState, type StateManagerArgs, type StepInput, type StepOutput } from '@ds/core';
import type { FArray, FloatDType } from '@ds/tensor';

import type { CompressingOptimizer, ErrorState } from './compressing.js';

const WORKER = (i: number) => `onebit.slot${i}.worker_error`;
const SERVER = (i: number) => `onebit.slot${i}.server_error`;
const ARRAY = (name: string) => `onebit.${name}`;

interface OnebitMeta {
  world: number;
  errorSlots: number[];
  arrays: string[];
  scalars: Record<string, number>;
}

export class OnebitState implements ModelStateManager {
  readonly stage = 0;
  readonly partitioned = true;

  private constructor(
    private readonly inner: DataParallelState,
    private readonly args: StateManagerArgs,
    private readonly optimizer: CompressingOptimizer,
  ) {}

  static async create(args: StateManagerArgs, optimizer: CompressingOptimizer): Promise<OnebitState> {
    return new OnebitState(await DataParallelState.create(args), args, optimizer);
  }

  beforeBackward(boundary: boolean): void {
    this.inner.beforeBackward(boundary);
  }

  afterBackward(): Promise<void> {
    return this.inner.afterBackward();
  }

  async step(input: StepInput): Promise<StepOutput> {
    const group = this.args.group;
    if (this.optimizer.localGradients && group && group.size > 1) {
      const flag = new Float32Array([this.localOverflow() ? 1 : 0]);
      await group.allReduce({ dtype: 'f32', array: flag }, { op: 'max' });
      if (flag[0]! > 0) return { overflow: true, gradNorm: NaN };
    }
    return this.inner.step(input);
  }

  private localOverflow(): boolean {
    const { kernels } = this.args;
    return this.args.params.some((p) => p.grad !== null && kernels.hasInfNan(p.grad.dtype as FloatDType, p.grad.operand() as FArray, p.numel));
  }

  zeroGrad(): void {
    this.inner.zeroGrad();
  }

  modelStateBytes() {
    const b = this.inner.modelStateBytes();
    let errors = 0;
    const extras = this.optimizer.rankExtras();
    for (const e of extras.errors.values()) errors += (e.worker.length + e.server.length) * 4;
    for (const a of extras.arrays.values()) errors += a.length * 4;
    return { ...b, optimizerStates: b.optimizerStates + errors };
  }

  masterWeights() {
    return this.inner.masterWeights();
  }

  moduleState() {
    return this.inner.moduleState();
  }

  loadModuleState(...a: Parameters<DataParallelState['loadModuleState']>) {
    return this.inner.loadModuleState(...a);
  }

  rankState(): RankState {
    const state = this.inner.rankState();
    const extras = this.optimizer.rankExtras();
    const errorSlots: number[] = [];
    for (const [i, e] of extras.errors) {
      errorSlots.push(i);
      state.tensors.set(WORKER(i), { dtype: 'f32', shape: [e.worker.length], data: e.worker });
      state.tensors.set(SERVER(i), { dtype: 'f32', shape: [e.server.length], data: e.server });
    }
    for (const [name, a] of extras.arrays) state.tensors.set(ARRAY(name), { dtype: 'f32', shape: [a.length], data: a });
    const onebit: OnebitMeta = { world: this.args.group?.size ?? 1, errorSlots, arrays: [...extras.arrays.keys()], scalars: extras.scalars };
    return { tensors: state.tensors, meta: { ...state.meta, onebit } };
  }

  loadRankStates(savedWorld: number, read: (rank: number) => RankState): void {
    this.inner.loadRankStates(savedWorld, read);
    const world = this.args.group?.size ?? 1;
    const same = savedWorld === world;
    // Same world: this rank's own file. Otherwise rank 0's, for what does not depend on the world.
    const rank = same ? (this.args.group?.rank ?? 0) : 0;
    const file = read(rank);
    const meta = file.meta.onebit as OnebitMeta | undefined;
    if (!meta) throw new DSCheckpointError('checkpoint has no 1-bit optimizer state (it was not written by a 1-bit optimizer); load it with the optimizer that wrote it');
    const tensor = (name: string) => {
      const t = file.tensors.get(name);
      if (!t) throw new DSCheckpointError(`checkpoint lacks '${name}' in rank ${rank}'s file`);
      return t.data as Float32Array;
    };
    const arrays = new Map(meta.arrays.map((name) => [name, tensor(ARRAY(name))] as const));
    let errors: ErrorState | null = null;
    if (same) {
      errors = new Map(meta.errorSlots.map((i) => [i, { worker: tensor(WORKER(i)), server: tensor(SERVER(i)) }] as const));
    } else {
      this.args.ctx.log('info', `1-bit optimizer: the checkpoint was written by ${savedWorld} rank(s), this run has ${world}: error-feedback buffers restart from zero (DeepSpeed always resets them on load)`);
    }
    this.optimizer.loadRankExtras({ errors, arrays, scalars: meta.scalars });
  }

  destroy(): void {
    this.inner.destroy();
  }
}
