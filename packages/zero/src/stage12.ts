// ZeRO stages 1 and 2: every rank keeps the whole 16-bit parameters, but fp32 masters and optimizer
// moments only for its shard (stage 1); stage 2 also keeps only its shard of the gradients.
//
// Both hand their gradients to core's gradient reduction (one path for every stage) and only choose
// its mode. Stage 1 accumulates gradients locally in a full flat buffer and reduce-scatters each unit
// once per batch, at the accumulation boundary (DeepSpeed's "smart gradient accumulation"), in
// place: the unit's block for this rank is where the optimizer reads it. Stage 2 copies gradients
// into buckets every micro step and accumulates the reduced blocks into its shard. After the
// optimizer updated the shard, one in-place all-gather per unit makes the parameters whole again.
import {
  adoptParameters,
  allocateFlat,
  bucketGroups,
  DSCheckpointError,
  DSError,
  DSUnsupportedError,
  flatArray,
  flatView,
  gradientReductionFor,
  planUnits,
  releaseFlat,
  type FlatBuffer,
  type GradientReduction,
  type PartitionPlan,
  type NamedTensor,
  type StateManagerArgs,
  type Work,
} from '@ds/core';
import { Tensor, type HostArray } from '@ds/tensor';

import { bucketElements, type ZeroConfig } from './config.js';
import { gradientHome, type GradientHome } from './grad-offload.js';
import type { OptimizerStateOffload } from './offload-state.js';
import { gradDtypeOf, ShardedState, type Block } from './shard-state.js';

export class Stage12State extends ShardedState {
  readonly stage: 1 | 2;
  private readonly params16: FlatBuffer;
  /** Stage 1: the full gradient buffer the parameters' .grad views point into. */
  private readonly grads: FlatBuffer | null = null;
  private readonly gradViews: Tensor[] = [];
  /** Stage 2: this rank's gradient blocks, accumulated over micro steps (on the device, or with offload_optimizer in its tier: grad-offload.ts). */
  private gradShard: GradientHome | null = null;
  private readonly reduction: GradientReduction;

  private constructor(args: StateManagerArgs, zc: ZeroConfig, stage: 1 | 2, plan: PartitionPlan) {
    super(args, zc, plan, gradDtypeOf(args));
    this.stage = stage;
    const { runtime, kernels, params, paramDtype } = args;
    const device = args.io.device;
    this.params16 = allocateFlat(runtime, paramDtype, plan.flatNumel, 'parameters', 'zero flat parameters', undefined, device);
    adoptParameters(runtime, kernels, params, { offsets: plan.flatOffset, sizes: this.sizes, numel: plan.flatNumel }, this.params16);
    const collective = zc.reduce_scatter ? 'reduceScatter' : 'allReduce';
    if (stage === 1) {
      this.grads = allocateFlat(runtime, this.gradDtype, plan.flatNumel, 'gradients', 'zero-1 flat gradients', undefined, device);
      kernels.fill(this.gradDtype, flatArray(this.grads), plan.flatNumel, 0);
      params.forEach((p, i) => {
        const g = flatView(runtime, this.grads!, plan.flatOffset[i]!, p.shape);
        p.grad = g;
        this.gradViews.push(g);
      });
      this.reduction = gradientReductionFor(args, { plan, gradDtype: this.gradDtype, collective, mode: 'inPlace', flat: this.grads, overlap: zc.overlap_comm });
    } else {
      // The shard itself is placed by setupShards (placeGradients), once the optimizer offload exists.
      params.forEach((p) => (p.grad = null));
      this.reduction = gradientReductionFor(args, { plan, gradDtype: this.gradDtype, collective, mode: 'buckets', gradBlock: (u) => this.gradShard!.target(u), gradSettled: (u) => this.gradShard!.settled(u), overlap: zc.overlap_comm });
    }
  }

  /** Collective: rank 0's parameters are broadcast so every rank starts from the same weights. */
  static async create(args: StateManagerArgs, zc: ZeroConfig, stage: 1 | 2): Promise<Stage12State> {
    const sizes = args.params.map((p) => p.numel);
    const plan = planUnits(bucketGroups(sizes, bucketElements(zc)), sizes, args.group?.size ?? 1, args.group?.rank ?? 0);
    const state = new Stage12State(args, zc, stage, plan);
    if (state.group) await state.group.broadcast({ dtype: args.paramDtype, array: flatArray(state.params16) }, { root: 0 });
    await state.setupShards();
    return state;
  }

  protected paramBlock(u: number): Block {
    const unit = this.plan.units[u]!;
    return flatArray(this.params16, unit.flatStart + this.rank * unit.block, unit.block);
  }

  /**
   * Stage 2's gradient shard, in the optimizer offload's tier when there is one (grad-offload.ts).
   * Stage 1 accumulates into its full gradient buffer (every rank's part), which stays.
   */
  protected override async placeGradients(offload: OptimizerStateOffload | null): Promise<void> {
    if (this.stage === 2) {
      this.gradShard = gradientHome(this.args, this.gradDtype, this.plan, 'zero-2 gradient shard', offload, (i) => this.slotPiece(i));
      this.gradShard.swapped?.foldNorm((u, block) => this.normTerms(u, block));
    }
  }

  protected override foldedNormTerms(ui: number): readonly [number, number] | null {
    return this.gradShard?.swapped?.normTerms(ui) ?? null;
  }

  /** Unit u's reduced gradient block (a swapped shard's is read back, valid until the next call). */
  protected gradBlock(u: number): Block {
    const unit = this.plan.units[u]!;
    if (this.grads) return flatArray(this.grads, unit.flatStart + this.rank * unit.block, unit.block);
    return this.gradShard!.block(u);
  }

  protected paramGradBytes(): { parameters: number; gradients: number } {
    return { parameters: this.params16.storage.byteLength, gradients: this.grads ? this.grads.storage.byteLength : this.gradShard!.deviceBytes };
  }

  beforeBackward(boundary: boolean): void {
    // Stage 1 communicates once per batch; stage 2 every micro step.
    this.reduction.begin(this.stage === 2 || boundary);
    this.gradShard?.swapped?.beginBackward(boundary);
    // The step follows this backward: the first offloaded sub-groups are read while it runs.
    if (boundary) this.offload?.prefetch();
  }

  async afterBackward(): Promise<void> {
    const unused = this.reduction.unused(this.args.names);
    if (unused.length > 0 && !this.zc.ignore_unused_parameters) {
      throw new DSError(`ZeRO: ${unused.length} parameter(s) received no gradient in this backward (${unused.slice(0, 3).join(', ')}); set zero_optimization.ignore_unused_parameters to true to allow it`, { code: 'DS_ZERO_UNUSED_PARAMETERS' });
    }
    await this.reduction.finish();
  }

  /**
   * Stage 1: the boundary's reduce-scatter of every unit, deferred by an engine that combined
   * gradients across other ranks first (a pipeline's tied weights). Stage 2 moves gradients into
   * its shard during every backward, so there is nothing left to defer.
   */
  async reduceGradients(): Promise<void> {
    if (this.stage !== 1) {
      throw new DSUnsupportedError(`ZeRO stage ${this.stage} reduces gradients into its shard during every backward and cannot defer the reduction past the boundary backward; use stage 1`);
    }
    await this.reduction.reduceAccumulated();
  }

  protected async afterUpdate(): Promise<void> {
    if (!this.group) return;
    const works: Work[] = [];
    const dtype = this.args.paramDtype;
    this.plan.units.forEach((unit, ui) => {
      const whole = flatArray(this.params16, unit.flatStart, unit.padded);
      if (this.zc.allgather_partitions) {
        works.push(this.group!.allGather({ dtype, array: whole }, { dtype, array: this.paramBlock(ui) }));
      } else {
        for (let q = 0; q < this.world; q++) works.push(this.group!.broadcast({ dtype, array: whole.subarray(q * unit.block, (q + 1) * unit.block) }, { root: q }));
      }
    });
    await Promise.all(works.map((w) => w.wait()));
  }

  zeroGrad(): void {
    if (this.grads) this.args.kernels.fill(this.gradDtype, flatArray(this.grads), this.grads.numel, 0);
    else this.gradShard!.zero();
  }

  async moduleState(): Promise<Map<string, NamedTensor>> {
    const out = new Map<string, NamedTensor>();
    this.args.params.forEach((p, i) => {
      out.set(this.args.names[i]!, { dtype: this.args.paramDtype, shape: [...p.shape], data: this.args.io.toHost(flatArray(this.params16, this.plan.flatOffset[i]!, p.numel)) });
    });
    return out;
  }

  async loadModuleState(weights: Map<string, NamedTensor>, refreshMaster: boolean): Promise<void> {
    const { names, params, paramDtype } = this.args;
    // A ZeRO-3 checkpoint saved without 16-bit weights: the parameters come from the fp32 masters.
    if (weights.size === 0 && !refreshMaster) return;
    params.forEach((p, i) => {
      const w = weights.get(names[i]!);
      if (!w) throw new DSCheckpointError(`checkpoint has no weights for parameter '${names[i]}'`);
      if (w.shape.join(',') !== p.shape.join(',')) throw new DSCheckpointError(`checkpoint weights '${names[i]}' have shape [${w.shape}], the model has [${p.shape}]`);
      this.args.io.castFromHost(w.dtype, w.data as HostArray, paramDtype, flatArray(this.params16, this.plan.flatOffset[i]!, p.numel), p.numel);
    });
    if (refreshMaster) this.refreshMaster();
  }

  /** 16-bit parameters := the loaded fp32 weights, rounded (every rank has them whole: no communication). */
  protected override mastersLoaded(full: Map<string, Float32Array>): void {
    this.args.params.forEach((p, i) => {
      this.args.io.castFromHost('f32', full.get(this.args.names[i]!)!, this.args.paramDtype, flatArray(this.params16, this.plan.flatOffset[i]!, p.numel), p.numel);
    });
  }

  destroy(): void {
    this.reduction.destroy();
    // Parameters stop viewing the flat buffer, so it is freed now rather than when they are collected.
    const empty = Tensor.empty([0], this.args.paramDtype, { runtime: this.args.runtime, device: this.args.io.device, category: 'parameters', track: false });
    this.args.params.forEach((p) => {
      p.grad = null;
      p.setData(empty);
    });
    empty.dispose();
    for (const g of this.gradViews) g.dispose();
    if (this.grads) releaseFlat(this.grads);
    this.gradShard?.release((err) => this.args.ctx.log('warn', `ZeRO: releasing the gradient shard in the offload tier failed: ${String(err)}`));
    this.releaseOffload();
    this.releaseMaster();
    releaseFlat(this.params16);
  }
}
