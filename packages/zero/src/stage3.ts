// ZeRO stage 3: parameters are partitioned too. Each rank keeps its blocks of every unit (16-bit
// shard, gradient shard, fp32 masters and moments: 16 bytes per parameter / N). Module hooks gather a
// unit before the module's forward and backward and release it after (stage3-fetch.ts); gradients go
// through core's gradient reduction in buckets mode, reduce-scattered per unit while backward continues. The
// optimizer writes the updated 16-bit blocks straight into the shard; nothing is gathered at the end
// of a step except the persistent unit (small parameters kept whole).
//
// With offload_param (param-offload.ts) the 16-bit shard lives in an offload tier instead: each
// unit's block is built in one unit-sized staging buffer and written to the tier before the next
// (DeepSpeed's zero.Init with remote_device swaps each partition out as it is made), so the shard
// is never whole on the device; each unit's block is read into its gathered buffer when the unit is
// fetched, and the step writes each updated sub-group back.
//
// With offload_optimizer the gradient shard lives in the offload tier instead of on the device
// (grad-offload.ts): in the cpu tier's host memory, where core's gradient reduction adds the reduced
// blocks straight into it, or swapped per unit to the nvme tier as each block settles and read back
// per sub-group by the step. With the gradients swapped the optimizer step may return before every
// sub-group is stepped (offload-state.ts): fillOwn completes the sub-groups holding a unit before
// its weights are read (copying them from the staging set while it still holds them), the forward
// hooks move the rest on, and backward, checkpoints and loads complete it first.
import {
  allocateFlat,
  DSCheckpointError,
  DSError,
  flatArray,
  gradientReductionFor,
  pieceOf,
  releaseFlat,
  type FlatBuffer,
  type GradientReduction,
  type ModelStateManager,
  type NamedTensor,
  type OffloadWork,
  type PartitionPlan,
  type StateManagerArgs,
} from '@ds/core';
import { BYTES_PER_ELEMENT, hostOnly, Tensor, type FArray, type HookHandle, type Module, type U16 } from '@ds/tensor';

import type { ZeroConfig } from './config.js';
import { gradientHome, type GradientHome } from './grad-offload.js';
import type { OptimizerStateOffload } from './offload-state.js';
import { gradDtypeOf, ShardedState, type Block } from './shard-state.js';
import { ParamShardOffload } from './param-offload.js';
import { ParamCoordinator } from './stage3-fetch.js';
import { planStage3, type Stage3Layout } from './stage3-plan.js';
import { checkSlices, finishSlices, prePartitionOf, unitFromSlices, type PrePartition } from './zero-init.js';

export class Stage3State extends ShardedState {
  readonly stage = 3;
  /** This rank's 16-bit blocks of every unit; null once they live in the offload tier (offload_param). */
  private shard16: FlatBuffer | null;
  /** This rank's reduced gradient blocks: on the device, or (offload_optimizer) in the offload tier (grad-offload.ts). */
  private gradShard!: GradientHome;
  private readonly shapes: number[][];
  private readonly placeholder: Tensor;
  private readonly coord: ParamCoordinator;
  private readonly reduction: GradientReduction;
  private readonly hooks: HookHandle[] = [];
  /**
   * With offload_param: the persistent unit's own block as last committed, and how many of its
   * elements were (all of them after a step), so that its refresh after the step copies it instead of
   * reading it back from the tier behind the step's writes.
   */
  private persistentOwn: { flat: FlatBuffer; covered: number } | null = null;
  private readonly unitSlots: number[][] = [];

  private constructor(
    args: StateManagerArgs,
    zc: ZeroConfig,
    private readonly layout: Stage3Layout,
    shapes: number[][],
    sizes: number[],
    log: (message: string) => void,
    shard16: FlatBuffer | null,
    private paramOffload: ParamShardOffload | null,
  ) {
    super(args, zc, layout.plan, gradDtypeOf(args), sizes);
    const { runtime, kernels, params, paramDtype } = args;
    this.shapes = shapes;
    const plan = layout.plan;
    const device = args.io.device;
    this.shard16 = shard16;
    if (paramOffload && layout.persistentUnit >= 0) {
      const block = plan.units[layout.persistentUnit]!.block;
      this.persistentOwn = { flat: allocateFlat(runtime, paramDtype, block, 'parameters', 'zero-3 persistent block (as last written)', undefined, device), covered: 0 };
    }
    this.placeholder = Tensor.empty([0], paramDtype, { runtime, device, category: 'parameters', label: 'zero-3 released parameter', track: false });
    for (const p of params) {
      p.setData(this.placeholder);
      p.grad = null;
    }
    this.coord = new ParamCoordinator(
      {
        runtime, kernels, params, shapes, paramDtype, group: this.group, plan, device, placeholder: this.placeholder, zc: this.zc, log,
        fillOwn: (u, own) => this.fillOwn(u, own),
        ready: (u) => !this.offload || this.offload.stepped(this.lastSlotOf(u)),
        readAhead: paramOffload ? paramOffload.readAhead : Infinity,
      },
      layout.persistentUnit,
    );
    this.reduction = gradientReductionFor(args, {
      plan,
      gradDtype: this.gradDtype,
      collective: zc.reduce_scatter ? 'reduceScatter' : 'allReduce',
      mode: 'buckets',
      gradBlock: (u) => this.gradShard.target(u),
      gradSettled: (u) => this.gradShard.settled(u),
      overlap: zc.overlap_comm,
    });
    this.installHooks();
  }

  /**
   * Collective. Parameters built whole (without zeroInit) start from rank 0's values, as in stages
   * 1-2 and DeepSpeed: each is broadcast from rank 0 before this rank keeps its part.
   */
  static async create(args: StateManagerArgs, zc: ZeroConfig, log: (message: string) => void = () => {}): Promise<Stage3State> {
    const world = args.group?.size ?? 1;
    const rank = args.group?.rank ?? 0;
    const pre = prePartitionOf(args.module, world, rank);
    if (args.group && world > 1) {
      const group = args.group;
      const whole = args.params.filter((p) => !pre?.slices.has(p) && p.numel > 0);
      await Promise.all(whole.map((p) => group.broadcast({ dtype: p.dtype, array: p.operand() }, { root: 0 }).wait()));
    }
    const shapes = args.params.map((p) => [...(pre?.shapes.get(p) ?? p.shape)]);
    const sizes = shapes.map((s) => s.reduce((a, b) => a * b, 1));
    const layout = planStage3(args.module, args.params, sizes, zc, world, rank);
    const paramOffload = await ParamShardOffload.create(args, zc, layout.plan);
    // Built before the state allocates its gradient shard, so that zeroInit's slices are gone by then.
    const shard16 = await buildShard(args, layout.plan, sizes, pre, paramOffload);
    const state = new Stage3State(args, zc, layout, shapes, sizes, log, shard16, paramOffload);
    if (layout.persistentUnit >= 0) await state.coord.fetchAsync(layout.persistentUnit);
    await state.setupShards();
    return state;
  }

  /** This rank's block of unit u into the gathered buffer: a copy from the shard, or a read from the tier. */
  private fillOwn(u: number, own: FArray) {
    const unit = this.plan.units[u]!;
    // A deferred optimizer step first steps the sub-groups holding this unit.
    this.offload?.completeSlots(this.lastSlotOf(u));
    if (this.shard16) {
      this.args.kernels.copy(flatArray(this.shard16, unit.shardStart, unit.block), own, unit.block);
      return null;
    }
    // The step's updated weights still in the optimizer's staging sets are copied rather than read back
    // from the tier behind their writes.
    if (this.offload && this.slotsOf(u).every((i) => this.offload!.copyOut16(i, hostWords(own).subarray(this.slotAt[i]!, this.slotAt[i]! + this.slotLen[i]!)))) return null;
    const kept = this.persistentOwn;
    if (u === this.layout.persistentUnit && kept && kept.covered >= unit.block) {
      this.args.kernels.copy(flatArray(kept.flat), own, unit.block);
      kept.covered = 0;
      return null;
    }
    return this.paramOffload!.read(u, hostWords(own));
  }

  /** The optimizer step may leave sub-groups for the next forward: fillOwn completes a unit's before reading its weights. */
  protected override get defersStep(): boolean {
    return true;
  }

  /** The index of unit u's last optimizer slot (slots follow the units in order). */
  private lastSlotOf(u: number): number {
    return this.slotsOf(u).at(-1) ?? 0;
  }

  /** Unit u's optimizer slots, in order. */
  private slotsOf(u: number): readonly number[] {
    if (this.unitSlots.length === 0) {
      this.plan.units.forEach(() => this.unitSlots.push([]));
      this.slotUnit.forEach((v, i) => this.unitSlots[v]!.push(i));
    }
    return this.unitSlots[u] ?? [];
  }

  /** With offload_param the optimizer offload points each slot's out16 at its staging set for the step (commitParamPiece writes it out). */
  protected override out16ToTier(): 'bf16' | 'f16' | null {
    return this.paramOffload ? (this.args.paramDtype as 'bf16' | 'f16') : null;
  }

  protected override out16For(u: number, at: number, end: number): U16 {
    return this.paramOffload ? NO_WORDS : super.out16For(u, at, end);
  }

  /** Slot i's 16-bit weights: a view of the shard, or (offloaded) a copy read from the tier. */
  protected override readParamPiece(i: number): U16 {
    this.offload?.finish(); // a deferred step's weights first
    if (this.shard16) return super.readParamPiece(i);
    const piece = new Uint16Array(this.slotLen[i]!);
    this.paramOffload!.read(this.slotUnit[i]!, piece, this.slotAt[i]! * 2).waitSync();
    return piece;
  }

  /** An offloaded piece starts going back to the tier (a resident one was changed in place). */
  protected override commitParamPiece(i: number, piece: U16): OffloadWork | null {
    if (!this.paramOffload || this.shard16) return null;
    const u = this.slotUnit[i]!;
    if (u === this.layout.persistentUnit && this.persistentOwn) {
      this.args.kernels.copy(piece, flatArray(this.persistentOwn.flat, this.slotAt[i]!, piece.length), piece.length);
      this.persistentOwn.covered += piece.length;
    }
    return this.paramOffload.write(u, hostWords(piece), this.slotAt[i]! * 2);
  }

  private installHooks(): void {
    const root = this.args.module;
    const persistent = this.layout.persistentUnit;
    // Registered first, so it runs before the root's own unit is fetched.
    this.hooks.push(
      root.registerForwardPreHook(() => {
        this.coord.newPass();
        if (persistent >= 0 && !this.coord.isAvailable(persistent)) this.coord.fetch(persistent);
      }),
    );
    this.layout.moduleOf.forEach((m, u) => {
      if (!m) return;
      this.hooks.push(
        m.registerForwardPreHook(() => {
          this.offload?.pump();
          this.coord.fetch(u);
        }),
        m.registerForwardHook(() => {
          this.coord.release(u);
          // A deferred optimizer step moves on while the forward computes.
          this.offload?.pump();
        }),
        m.registerBackwardPreHook(() => this.coord.fetch(u)),
        m.registerBackwardHook(() => this.coord.release(u)),
      );
    });
  }

  protected paramBlock(u: number): Block {
    const unit = this.plan.units[u]!;
    if (!this.shard16) throw new DSError(`ZeRO-3: unit ${u}'s 16-bit block lives in the offload tier, not on the device`, { code: 'DS_ZERO_INTERNAL' });
    return flatArray(this.shard16, unit.shardStart, unit.block);
  }

  /** The gradient shard, in the optimizer offload's tier when there is one (grad-offload.ts); placed by setupShards. */
  protected override async placeGradients(offload: OptimizerStateOffload | null): Promise<void> {
    this.gradShard = gradientHome(this.args, this.gradDtype, this.plan, 'zero-3 gradient shard', offload, (i) => this.slotPiece(i));
    this.gradShard.swapped?.foldNorm((u, block) => this.normTerms(u, block));
  }

  protected override foldedNormTerms(ui: number): readonly [number, number] | null {
    return this.gradShard.swapped?.normTerms(ui) ?? null;
  }

  /** Unit u's reduced gradient block (a swapped shard's is read back, valid until the next call). */
  protected gradBlock(u: number): Block {
    return this.gradShard.block(u);
  }

  protected paramGradBytes(): { parameters: number; gradients: number } {
    const persistent = this.layout.persistentUnit >= 0 ? this.plan.units[this.layout.persistentUnit]!.padded * BYTES_PER_ELEMENT[this.args.paramDtype] : 0;
    const shard = this.shard16 ? this.shard16.storage.byteLength : 0;
    return { parameters: shard + persistent, gradients: this.gradShard.deviceBytes };
  }

  /** The module whose hooks gather each unit (for tools and tests). */
  get units(): readonly { module: Module | null; numel: number; padded: number }[] {
    return this.plan.units.map((u, i) => ({ module: this.layout.moduleOf[i] ?? null, numel: u.numel, padded: u.padded }));
  }

  beforeBackward(boundary: boolean): void {
    // A deferred optimizer step is complete before backward writes new gradients.
    this.offload?.finish();
    this.reduction.begin(true);
    this.gradShard.swapped?.beginBackward(boundary);
    // The step follows this backward: the first offloaded sub-groups are read while it runs.
    if (boundary) this.offload?.prefetch();
  }

  async afterBackward(): Promise<void> {
    const unused = this.reduction.unused(this.args.names);
    if (unused.length > 0 && !this.zc.ignore_unused_parameters) {
      throw new DSError(`ZeRO-3: ${unused.length} parameter(s) received no gradient (${unused.slice(0, 3).join(', ')}); set zero_optimization.ignore_unused_parameters to true to allow it`, { code: 'DS_ZERO_UNUSED_PARAMETERS' });
    }
    await this.reduction.finish();
    await this.coord.releaseAll();
  }

  protected async afterUpdate(): Promise<void> {
    if (this.layout.persistentUnit >= 0) await this.coord.refresh(this.layout.persistentUnit);
  }

  zeroGrad(): void {
    this.gradShard.zero();
  }

  /**
   * Gathers every unit (collective), runs fn with whole parameters, then (with `modifierRank`) makes
   * that rank's values every rank's, and releases the parameters again.
   */
  async withGathered<T>(fn: () => T | Promise<T>, modifierRank?: number): Promise<T> {
    for (let u = 0; u < this.plan.units.length; u++) await this.coord.fetchAsync(u);
    try {
      const out = await fn();
      if (modifierRank !== undefined) await this.adoptParametersFrom(modifierRank);
      return out;
    } finally {
      await this.coord.releaseAll();
    }
  }

  /** Full 16-bit weights when stage3_gather_16bit_weights_on_model_save, else none (DeepSpeed's rule): use ds-zero to-fp32. */
  async moduleState(): Promise<Map<string, NamedTensor>> {
    const out = new Map<string, NamedTensor>();
    if (!this.zc.stage3_gather_16bit_weights_on_model_save) return out;
    return this.withGathered(() => {
      this.args.params.forEach((p, i) => out.set(this.args.names[i]!, { dtype: this.args.paramDtype, shape: [...this.shapes[i]!], data: this.args.io.toHost(p.operand() as FArray) }));
      return out;
    });
  }

  async loadModuleState(weights: Map<string, NamedTensor>, refreshMaster: boolean): Promise<void> {
    const { names, paramDtype } = this.args;
    this.offload?.finish(); // a deferred step must not land on the loaded weights
    if (this.persistentOwn) this.persistentOwn.covered = 0; // the tier's blocks are rewritten below
    this.offload?.forgetOut16();
    if (weights.size === 0) {
      if (refreshMaster) throw new DSCheckpointError('this ZeRO-3 checkpoint holds no 16-bit weights (saved without stage3_gather_16bit_weights_on_model_save); load it with its optimizer states, or consolidate it with `ds-zero to-fp32`');
      return;
    }
    this.plan.units.forEach((unit, ui) => {
      // An offloaded block is read, changed and written back.
      const block = this.shard16 ? flatArray(this.shard16, unit.shardStart, unit.block) : new Uint16Array(unit.block);
      if (!this.shard16) this.paramOffload!.read(ui, block as Uint16Array).waitSync();
      unit.params.forEach((i, k) => {
        const w = weights.get(names[i]!);
        if (!w) throw new DSCheckpointError(`checkpoint has no weights for parameter '${names[i]}'`);
        if (w.shape.join(',') !== this.shapes[i]!.join(',')) throw new DSCheckpointError(`checkpoint weights '${names[i]}' have shape [${w.shape}], the model has [${this.shapes[i]}]`);
        const [from, to] = pieceOf(unit.offsets[k]!, this.sizes[i]!, unit.block, this.rank);
        if (to <= from) return;
        const src = (w.data as Float32Array | Uint16Array).subarray(from, to);
        const at = unit.offsets[k]! + from - this.rank * unit.block;
        this.args.io.castFromHost(w.dtype, src, paramDtype, block.subarray(at, at + to - from), to - from);
      });
      if (!this.shard16) this.paramOffload!.write(ui, block as Uint16Array).waitSync();
    });
    if (refreshMaster) this.refreshMaster();
    if (this.layout.persistentUnit >= 0) this.coord.drop(this.layout.persistentUnit);
  }

  /** New masters: the 16-bit shard follows them; the persistent unit is gathered again by the next forward. */
  protected override mastersLoaded(_full: Map<string, Float32Array>): void {
    this.offload?.forgetOut16();
    this.mastersTo16();
    if (this.layout.persistentUnit >= 0) this.coord.drop(this.layout.persistentUnit);
  }

  protected override shapeOf(i: number): readonly number[] {
    return this.shapes[i]!;
  }

  destroy(): void {
    for (const h of this.hooks) h.remove();
    this.reduction.destroy();
    this.args.params.forEach((p) => {
      p.grad = null;
      p.setData(this.placeholder);
    });
    this.coord.destroy();
    this.gradShard.release((err) => this.args.ctx.log('warn', `ZeRO-3: releasing the gradient shard in the offload tier failed: ${String(err)}`));
    this.releaseOffload();
    this.releaseMaster();
    if (this.shard16) releaseFlat(this.shard16);
    if (this.persistentOwn) releaseFlat(this.persistentOwn.flat);
    const off = this.paramOffload;
    this.paramOffload = null;
    off?.close().catch((err: unknown) => this.args.ctx.log('warn', `ZeRO-3: closing the parameter offload tier failed: ${String(err)}`));
    this.placeholder.dispose();
  }
}

/** A slot's out16 before the optimizer offload points it at a staging set (offload_param). */
const NO_WORDS: U16 = new Uint16Array(0);

/** Offload runs on the cpu device only (tierFor refuses others): 16-bit blocks are host words. */
function hostWords(a: FArray): Uint16Array {
  return hostOnly('zero-3 parameter offload', 'a 16-bit parameter block', a as U16) as Uint16Array;
}

/**
 * Collective: this rank's 16-bit block of every unit, unit by unit, from the parameters built whole
 * (broadcast from rank 0 already) and from zeroInit's slices (freed as each unit is made). Resident:
 * the blocks go into a new shard, which is returned. With offload_param: each block is made in one
 * staging buffer of the largest block and written to the tier before the next; returns null.
 */
async function buildShard(args: StateManagerArgs, plan: PartitionPlan, sizes: readonly number[], pre: PrePartition | undefined, off: ParamShardOffload | null): Promise<FlatBuffer | null> {
  const { runtime, kernels, params, paramDtype } = args;
  const device = args.io.device;
  const rank = plan.rank;
  const group = args.group && args.group.size > 1 ? args.group : null;
  const source = { runtime, kernels, group, plan, params, sizes, paramDtype, device };
  if (pre) await checkSlices(pre, source);
  const largest = Math.max(1, ...plan.units.map((u) => u.block));
  const shard = off ? null : allocateFlat(runtime, paramDtype, plan.shardNumel, 'parameters', 'zero-3 parameter shard', undefined, device);
  const staging = off ? allocateFlat(runtime, paramDtype, largest, 'offload', 'zero-3 parameter block staging (setup)', undefined, device) : null;
  try {
    for (const [u, unit] of plan.units.entries()) {
      const block = shard ? flatArray(shard, unit.shardStart, unit.block) : flatArray(staging!, 0, unit.block);
      if (staging) kernels.fill(paramDtype, block, unit.block, 0); // the padding, and what the previous unit left
      unit.params.forEach((i, k) => {
        const p = params[i]!;
        if (pre?.slices.has(p)) return;
        const [from, to] = pieceOf(unit.offsets[k]!, sizes[i]!, unit.block, rank);
        if (to <= from) return;
        const at = unit.offsets[k]! + from - rank * unit.block;
        kernels.cast(p.dtype as 'f32', (p.operand() as FArray).subarray(from, to), paramDtype, block.subarray(at, at + to - from), to - from);
      });
      if (pre) await unitFromSlices(pre, source, u, block);
      if (off) off.write(u, hostWords(block)).waitSync();
    }
    if (pre) finishSlices(pre);
  } catch (err) {
    if (shard) releaseFlat(shard);
    throw err;
  } finally {
    if (staging) releaseFlat(staging);
  }
  return shard;
}

export interface GatheredOptions {
  /**
   * DeepSpeed's modifier_rank: the rank whose in-place changes to the parameters are kept. After fn,
   * its values are broadcast and written into every rank's partition and fp32 masters (collective).
   * Without it the parameters are read-only: changes are dropped when they are released.
   */
  modifierRank?: number;
}

/**
 * Runs fn with every parameter whole (collective under stage 3; a plain call under stages 1-2, where
 * parameters are always whole). With `modifierRank`, that rank's changes become every rank's. Every
 * rank must call it; fn must change parameters in place (through kernels, or p.data().set(...) on the cpu), not replace them.
 */
export async function gatheredParameters<T>(state: ModelStateManager, fn: () => T | Promise<T>, opts: GatheredOptions = {}): Promise<T> {
  const root = opts.modifierRank;
  if (state instanceof Stage3State) return state.withGathered(fn, root);
  if (root === undefined) return fn();
  if (state instanceof ShardedState) {
    const out = await fn();
    await state.adoptParametersFrom(root);
    return out;
  }
  throw new DSError(
    `gatheredParameters: modifierRank works on a ZeRO state manager (stages 1-3), got stage ${state.stage}; under stage 0 every rank holds its own full copy: make the same change on every rank`,
    { code: 'DS_ZERO_BAD_RANK' },
  );
}
