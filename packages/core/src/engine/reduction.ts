// The one gradient-reduction path of every stage (DeepSpeed spreads it over engine.py's
// allreduce_gradients, stage_1_and_2.py's IPG buckets and stage3.py's reduce-scatter buckets).
//
// Gradients are laid out in partition units (partition.ts). Gradient-ready hooks count each unit's
// parameters; a unit whose last gradient arrived is reduced asynchronously while backward goes on
// (overlap), the others when backward ends, in unit order on every rank. The stages only choose:
//
//   mode 'inPlace'  the parameters' .grad views live in one flat buffer; a unit is reduced where it
//                   lies (stage 0: all-reduce at the accumulation boundary; stage 1: reduce-scatter,
//                   keeping this rank's block, at the boundary);
//   mode 'buckets'  each gradient is copied into its unit's bucket buffer and dropped; the reduced
//                   bucket's block for this rank is added into the gradient shard (stages 2 and 3,
//                   every micro step).
//
// and the collective: all-reduce, or reduce-scatter keeping this rank's block. The scaling
// (prescale_gradients, gradient_predivide_factor) and the communication dtype
// (communication_data_type) are applied here for all of them. A plugin may replace the function
// that reduces one unit (1-bit Adam's compressed all-reduce) through the registry's
// `gradientReducers`; buckets, hooks and waiting stay here.
import type { FArray, FloatDType, KernelTable, Runtime, Tensor } from '@ds/tensor';

import { DSConfigError } from '../errors.js';
import { waitSync } from '../comm/sync-wait.js';
import type { AnyCommBuffer, ProcessGroup, Work } from '../comm/types.js';
import type { DSConfig } from '../config/core-sections.js';
import { allocateFlat, flatArray, releaseFlat, type FlatBuffer } from './flat.js';
import type { PartitionPlan, Unit } from './partition.js';
import type { StateManagerArgs } from './types.js';

/** A run of gradient elements: host words or device memory (a kernel operand). */
export type Block = FArray;

/** DeepSpeed's averaging knobs. */
export interface GradScaling {
  /** prescale_gradients: divide by the world size before summing. */
  prescale: boolean;
  /** gradient_predivide_factor f: divide by f before summing, multiply by f / world after. */
  predivide: number;
}

export interface ReducerSpec {
  runtime: Runtime;
  /** The device the gradients live on (comm buffers are allocated there too). */
  device: string;
  kernels: KernelTable;
  /** The data-parallel group; null (or a group of one) reduces nothing. */
  group: ProcessGroup | null;
  /** The units; plan.world is 1 for an unpartitioned layout (stage 0), the group size under ZeRO. */
  plan: PartitionPlan;
  /** Trainable parameters, in the plan's order; their gradient-ready hooks drive the reduction. */
  params: readonly Tensor[];
  /** Dtype of the gradient storage (the flat buffer, or the shard). */
  gradDtype: FloatDType;
  /** Dtype on the wire (communication_data_type); default gradDtype. */
  commDtype: FloatDType;
  scaling: GradScaling;
  collective: 'allReduce' | 'reduceScatter';
  mode: 'inPlace' | 'buckets';
  /** inPlace: the flat buffer the parameters' .grad views point into (plan layout). */
  flat?: FlatBuffer;
  /** buckets: this rank's gradient block of unit u, where reduced blocks accumulate. */
  gradBlock?: (u: number) => Block;
  /**
   * buckets, optional: called once unit u's reduced block was added into gradBlock(u) (a stage whose
   * gradient shard lives in an offload tier writes the block out then; gradBlock(u) hands it a buffer).
   */
  gradSettled?: (u: number) => void;
  /** Launch a unit as soon as its gradients are ready (overlap_comm); otherwise all after backward. */
  overlap: boolean;
}

/** A unit's reduction in flight: `finish` runs once the op is over (the scaling that follows a sum). */
export interface PendingReduction {
  work: Work | null;
  finish: () => void;
}

/**
 * Reduces one unit's message (`padded` elements in the comm dtype, this rank's copy) so that the
 * kept range [keep.start, keep.start + keep.length) holds the average over the group, in place.
 */
export type UnitReduce = (message: AnyCommBuffer, unit: Unit, keep: { start: number; length: number }) => PendingReduction;

/** The ds_config's gradient scaling, as the reduction needs it. */
export function gradScalingOf(config: { prescale_gradients: boolean; gradient_predivide_factor: number }): GradScaling {
  return { prescale: config.prescale_gradients, predivide: config.gradient_predivide_factor };
}

/** communication_data_type ('fp32' | 'bf16' | 'fp16' | null) as a dtype; null keeps the gradients' dtype. */
export function commDtypeOf(value: 'fp32' | 'bf16' | 'fp16' | null, gradDtype: FloatDType): FloatDType {
  if (value === null) return gradDtype;
  return value === 'fp32' ? 'f32' : value === 'bf16' ? 'bf16' : 'f16';
}

/**
 * Core's unit reduction: average with DeepSpeed's prescale / predivide rules, by all-reduce or by
 * reduce-scatter (which needs the kept range to be this rank's block).
 */
export function standardUnitReduce(spec: Pick<ReducerSpec, 'group' | 'kernels' | 'scaling' | 'collective'>): UnitReduce {
  return (message, unit, keep) => {
    const group = spec.group;
    if (!group || group.size === 1) return { work: null, finish: () => {} };
    const { kernels, scaling } = spec;
    const world = group.size;
    const dtype = message.dtype as FloatDType;
    const input = message.array as Block;
    let op: 'avg' | 'sum' = 'avg';
    let post = 1;
    if (scaling.prescale) {
      kernels.scale(dtype, input, input, input.length, 1 / world, 0);
      op = 'sum';
    } else if (scaling.predivide !== 1) {
      kernels.scale(dtype, input, input, input.length, 1 / scaling.predivide, 0);
      op = 'sum';
      post = scaling.predivide / world;
    }
    const kept = input.subarray(keep.start, keep.start + keep.length);
    const work =
      spec.collective === 'reduceScatter'
        ? group.reduceScatter({ dtype, array: input.subarray(group.rank * unit.block, (group.rank + 1) * unit.block) }, message, { op })
        : group.allReduce(message, { op });
    return { work, finish: () => (post !== 1 ? kernels.scale(dtype, kept, kept, kept.length, post, 0) : undefined) };
  };
}

interface InFlight {
  unit: number;
  pending: PendingReduction;
  /** The comm-dtype buffer the op works on; null when it works on the flat gradients in place. */
  buffer: FlatBuffer | null;
}

/** Buffers in flight at most: a third waits for the oldest (DeepSpeed bounds outstanding reductions the same way). */
const MAX_IN_FLIGHT = 2;

export class GradientReduction {
  /** Parameters whose gradient arrived in the current pass. */
  readonly fired: boolean[];
  private readonly pending: number[];
  private readonly launched: boolean[];
  private readonly bufferNumel: number;
  private readonly pool: FlatBuffer[] = [];
  private readonly filling = new Map<number, FlatBuffer>();
  private inflight: InFlight[] = [];
  private active = false;
  private readonly removers: (() => void)[];
  private readonly reduceUnit: UnitReduce;

  constructor(
    private readonly spec: ReducerSpec,
    reduceUnit?: UnitReduce,
  ) {
    const { plan, group, mode, collective } = spec;
    if (mode === 'inPlace' && !spec.flat) throw new DSConfigError('gradient reduction: inPlace mode needs the flat gradient buffer');
    if (mode === 'buckets' && !spec.gradBlock) throw new DSConfigError('gradient reduction: buckets mode needs the gradient shard (gradBlock)');
    if (mode === 'buckets' && plan.world === 1 && group && group.size > 1) {
      throw new DSConfigError('gradient reduction: buckets keep this rank\'s block, so the plan must be partitioned over the group');
    }
    if (collective === 'reduceScatter' && plan.world !== (group?.size ?? 1)) {
      throw new DSConfigError(`gradient reduction: reduce-scatter needs units partitioned over the group (plan world ${plan.world}, group size ${group?.size ?? 1})`);
    }
    this.reduceUnit = reduceUnit ?? standardUnitReduce(spec);
    this.pending = plan.units.map(() => 0);
    this.launched = plan.units.map(() => false);
    this.fired = new Array<boolean>(spec.params.length).fill(false);
    this.bufferNumel = Math.max(1, ...plan.units.map((u) => u.padded));
    this.removers = spec.params.map((p, i) => p.registerGradReadyHook(() => this.onGradReady(i, p)));
  }

  /** True when gradients are reduced somewhere (a group of more than one, or shards to fill). */
  private get communicates(): boolean {
    return this.spec.group !== null && this.spec.group.size > 1;
  }

  /** The range of a unit's message this rank keeps: its block under ZeRO, all of it otherwise. */
  private keep(unit: Unit): { start: number; length: number } {
    return this.spec.plan.world === 1 ? { start: 0, length: unit.padded } : { start: this.spec.plan.rank * unit.block, length: unit.block };
  }

  /**
   * Before a backward pass. `reduce` false lets gradients accumulate where they are (stages 0 and 1
   * off the accumulation boundary); buckets mode always reduces.
   */
  begin(reduce: boolean): void {
    this.active = this.spec.mode === 'buckets' || (reduce && this.communicates);
    this.spec.plan.units.forEach((u, ui) => {
      this.pending[ui] = u.params.length;
      this.launched[ui] = false;
    });
    this.fired.fill(false);
  }

  private onGradReady(i: number, p: Tensor): void {
    this.fired[i] = true;
    if (!this.active) return;
    const { plan } = this.spec;
    const ui = plan.unitOf[i]!;
    if (this.spec.mode === 'buckets') {
      const g = p.grad;
      if (g) {
        const n = p.numel;
        this.spec.kernels.cast(g.dtype as FloatDType, g.operand() as Block, this.spec.commDtype, flatArray(this.bufferFor(ui), plan.flatOffset[i]! - plan.units[ui]!.flatStart, n), n);
        g.dispose();
        p.grad = null;
      }
    }
    this.pending[ui]! -= 1;
    if (this.pending[ui] === 0 && this.spec.overlap) this.launch(ui);
  }

  /** A zeroed comm-dtype buffer for unit ui (reused, reclaimed from finished reductions, or new). */
  private bufferFor(ui: number): FlatBuffer {
    let buf = this.filling.get(ui);
    if (buf) return buf;
    buf = this.pool.pop() ?? this.reclaim() ?? allocateFlat(this.spec.runtime, this.spec.commDtype, this.bufferNumel, 'communication', 'gradient bucket', undefined, this.spec.device);
    this.spec.kernels.fill(this.spec.commDtype, flatArray(buf), this.spec.plan.units[ui]!.padded, 0);
    this.filling.set(ui, buf);
    return buf;
  }

  /**
   * A buffer whose reduction finished. Buckets mode bounds the buffers: with too many in flight it
   * waits for the oldest (blocking: this runs inside a hook). In-place mode only stages a dtype
   * conversion, so it takes a new buffer rather than block (its groups may not support blocking).
   */
  private reclaim(): FlatBuffer | null {
    const withBuffer = this.inflight.filter((f) => f.buffer);
    const bounded = this.spec.mode === 'buckets' && withBuffer.length >= MAX_IN_FLIGHT;
    const pick = withBuffer.find((f) => !f.pending.work || f.pending.work.isCompleted()) ?? (bounded ? withBuffer[0] : undefined);
    if (!pick) return null;
    if (pick.pending.work) waitSync(pick.pending.work, this.spec.group!, `the gradient reduction of unit ${pick.unit}`);
    this.settle(pick);
    return this.pool.pop() ?? null;
  }

  private launch(ui: number): void {
    if (this.launched[ui]) return;
    this.launched[ui] = true;
    const { plan, kernels, commDtype, gradDtype } = this.spec;
    const unit = plan.units[ui]!;
    let buffer: FlatBuffer | null = null;
    let message: Block;
    if (this.spec.mode === 'buckets') {
      buffer = this.bufferFor(ui);
      this.filling.delete(ui);
      message = flatArray(buffer, 0, unit.padded);
    } else if (commDtype !== gradDtype) {
      buffer = this.pool.pop() ?? this.reclaim() ?? allocateFlat(this.spec.runtime, commDtype, this.bufferNumel, 'communication', 'gradient comm buffer', undefined, this.spec.device);
      message = flatArray(buffer, 0, unit.padded);
      kernels.cast(gradDtype, flatArray(this.spec.flat!, unit.flatStart, unit.padded), commDtype, message, unit.padded);
    } else {
      message = flatArray(this.spec.flat!, unit.flatStart, unit.padded);
    }
    const pending = this.reduceUnit({ dtype: commDtype, array: message }, unit, this.keep(unit));
    const f: InFlight = { unit: ui, pending, buffer };
    this.inflight.push(f);
    if (!pending.work) this.settle(f);
  }

  /** The op is over: scale, then bring the kept range home (flat buffer or gradient shard). */
  private settle(f: InFlight): void {
    f.pending.finish();
    const { plan, kernels, commDtype, gradDtype } = this.spec;
    const unit = plan.units[f.unit]!;
    const keep = this.keep(unit);
    if (f.buffer) {
      const kept = flatArray(f.buffer, keep.start, keep.length);
      if (this.spec.mode === 'buckets') {
        kernels.axpy(commDtype, kept, gradDtype, this.spec.gradBlock!(f.unit), keep.length, 1);
        this.spec.gradSettled?.(f.unit);
      } else kernels.cast(commDtype, kept, gradDtype, flatArray(this.spec.flat!, unit.flatStart + keep.start, keep.length), keep.length);
      this.pool.push(f.buffer);
    }
    this.inflight = this.inflight.filter((x) => x !== f);
  }

  /** After backward: reduce what is left (in unit order on every rank), wait, bring everything home. */
  async finish(): Promise<void> {
    if (!this.active) return;
    this.active = false;
    this.spec.plan.units.forEach((_, ui) => this.launch(ui));
    const works = [...this.inflight];
    await Promise.all(works.map((f) => f.pending.work?.wait()));
    for (const f of works) this.settle(f);
    while (this.pool.length > MAX_IN_FLIGHT) releaseFlat(this.pool.pop()!);
  }

  /**
   * The accumulation boundary's reduction with no backward running (inPlace mode): every unit of
   * the flat buffer is reduced now, in unit order on every rank, from what it holds. For an engine
   * that must first combine gradients across other ranks itself (a pipeline's tied weights under
   * ZeRO 1, whose reduce-scatter would leave each data rank only its block) and so ran the
   * boundary backward with begin(false).
   */
  async reduceAccumulated(): Promise<void> {
    if (this.spec.mode !== 'inPlace') {
      throw new DSConfigError('gradient reduction: buckets mode reduces during every backward, so there is no accumulated gradient to reduce afterwards; defer the reduction only with an in-place layout (stages 0 and 1)');
    }
    this.active = this.communicates;
    this.launched.fill(false);
    await this.finish();
  }

  /** Names of parameters that got no gradient in the last pass. */
  unused(names: readonly string[]): string[] {
    return names.filter((_, i) => !this.fired[i]);
  }

  destroy(): void {
    for (const remove of this.removers) remove();
    for (const b of [...this.pool, ...this.filling.values(), ...this.inflight.flatMap((f) => (f.buffer ? [f.buffer] : []))]) releaseFlat(b);
    this.pool.length = 0;
    this.filling.clear();
    this.inflight = [];
  }
}

/** What a stage chooses; the rest of the spec comes from the state manager's arguments. */
export type StageReduction = Pick<ReducerSpec, 'plan' | 'gradDtype' | 'collective' | 'mode' | 'flat' | 'gradBlock' | 'gradSettled' | 'overlap'>;

/**
 * The reduction of a model-state manager: core's, or the unit reduction of the registered
 * `gradientReducers` contribution whose config applies (e.g. 1-bit Adam's compressed all-reduce).
 */
export function gradientReductionFor(args: StateManagerArgs, stage: StageReduction): GradientReduction {
  const spec: ReducerSpec = {
    runtime: args.runtime,
    device: args.io.device,
    kernels: args.kernels,
    group: args.group,
    params: args.params,
    scaling: gradScalingOf(args.config),
    commDtype: commDtypeOf(args.config.communication_data_type, stage.gradDtype),
    ...stage,
  };
  const custom = args.ctx.registry.gradientReducerFor(args.config);
  return new GradientReduction(spec, custom?.value.create(spec, args.ctx));
}

/**
 * The dtype gradients accumulate in: data_types.grad_accum_dtype when given; otherwise fp32 without
 * ZeRO (DeepSpeed's bf16 optimizer accumulates 16-bit models' gradients in fp32) and the parameters'
 * dtype under ZeRO (DeepSpeed's default there).
 */
export function gradAccumDtype(config: DSConfig, paramDtype: FloatDType, zero: boolean): FloatDType {
  const want = config.data_types.grad_accum_dtype;
  if (want === null) return zero ? paramDtype : 'f32';
  const dtype = commDtypeOf(want, paramDtype);
  if (dtype !== 'f32' && paramDtype !== 'f32' && dtype !== paramDtype) {
    throw new DSConfigError(`data_types.grad_accum_dtype '${want}' does not fit ${paramDtype} parameters; use 'fp32' or the parameters' own 16-bit type`);
  }
  if (dtype !== 'f32' && paramDtype === 'f32') {
    throw new DSConfigError(`data_types.grad_accum_dtype '${want}' with fp32 parameters would round every gradient to 16 bits; use 'fp32' or enable ${want}`);
  }
  return dtype;
}
