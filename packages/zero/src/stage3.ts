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
// The gradient shard stays on the device in grad_accum_dtype (16-bit by default), also under
// offload. DeepSpeed differs here: with offload_optimizer its stage 3 keeps the gradient partition
// in fp32 in host memory (device 'cpu') and, with 'nvme', swaps each sub-group's gradients out with
// its optimizer state. We keep core's gradient reduction writing straight into the shard instead;
// it is 2 bytes per parameter / N, an eighth of the ZeRO-3 model states, so the device still holds
// a small part of them (test/zero-offload-scale.test.ts in @ds/offload-nvme trains a model whose
// states are over 4x DS_MEMORY_LIMIT this way).
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
  type PartitionPlan,
  type StateManagerArgs,
} from '@ds/core';
import { BYTES_PER_ELEMENT, hostOnly, Tensor, type FArray, type HookHandle, type Module, type U16 } from '@ds/tensor';

import type { ZeroConfig } from './config.js';
import { gradDtypeOf, ShardedState, type Block } from './shard-state.js';
import { ParamShardOffload } from './param-offload.js';
import { ParamCoordinator } from './stage3-fetch.js';
import { planStage3, type Stage3Layout } from './stage3-plan.js';
import { checkSlices, finishSlices, prePartitionOf, unitFromSlices, type PrePartition } from './zero-init.js';

export class Stage3State extends ShardedState {
  readonly stage = 3;
  /** This rank's 16-bit blocks of every unit; null once they live in the offload tier (offload_param). */
  private shard16: FlatBuffer | null;
  /** With offload_param: where the optimizer writes a sub-group's updated 16-bit weights before they go to the tier. */
  private out16Staging: FlatBuffer | null = null;
  private readonly gradShard: FlatBuffer;
  private readonly shapes: number[][];
  private readonly placeholder: Tensor;
  private readonly coord: ParamCoordinator;
  private readonly reduction: GradientReduction;
  private readonly hooks: HookHandle[] = [];

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
    if (paramOffload) {
      const most = Math.max(1, Math.min(plan.shardNumel, Math.floor(zc.sub_group_size)));
      this.out16Staging = allocateFlat(runtime, paramDtype, most, 'offload', 'zero-3 updated 16-bit sub-group staging');
    }
    this.placeholder = Tensor.empty([0], paramDtype, { runtime, device, category: 'parameters', label: 'zero-3 released parameter', track: false });
    for (const p of params) {
      p.setData(this.placeholder);
      p.grad = null;
    }
    this.gradShard = allocateFlat(runtime, this.gradDtype, plan.shardNumel, 'gradients', 'zero-3 gradient shard', undefined, device);
    this.coord = new ParamCoordinator(
      {
        runtime, kernels, params, shapes, paramDtype, group: this.group, plan, device, placeholder: this.placeholder, zc: this.zc, log,
        fillOwn: (u, own) => this.fillOwn(u, own),
        readAhead: paramOffload ? paramOffload.readAhead : Infinity,
      },
      layout.persistentUnit,
    );
    this.reduction = gradientReductionFor(args, {
      plan,
      gradDtype: this.gradDtype,
      collective: zc.reduce_scatter ? 'reduceScatter' : 'allReduce',
      mode: 'buckets',
      gradBlock: (u) => this.gradBlock(u),
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
    if (this.shard16) {
      this.args.kernels.copy(flatArray(this.shard16, unit.shardStart, unit.block), own, unit.block);
      return null;
    }
    return this.paramOffload!.read(u, hostWords(own));
  }

  protected override out16For(u: number, at: number, end: number): U16 {
    if (!this.out16Staging) return super.out16For(u, at, end);
    return flatArray(this.out16Staging, 0, end - at) as U16;
  }

  /** Slot i's 16-bit weights: a view of the shard, or (offloaded) a copy read from the tier. */
  protected override readParamPiece(i: number): U16 {
    if (this.shard16) return super.readParamPiece(i);
    const piece = new Uint16Array(this.slotLen[i]!);
    this.paramOffload!.read(this.slotUnit[i]!, piece, this.slotAt[i]! * 2).waitSync();
    return piece;
  }

  /** An offloaded piece goes back to the tier (a resident one was changed in place). */
  protected override commitParamPiece(i: number, piece: U16): void {
    if (this.paramOffload && !this.shard16) this.paramOffload.write(this.slotUnit[i]!, hostWords(piece), this.slotAt[i]! * 2).waitSync();
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
        m.registerForwardPreHook(() => void this.coord.fetch(u)),
        m.registerForwardHook(() => void this.coord.release(u)),
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

  protected gradBlock(u: number): Block {
    const unit = this.plan.units[u]!;
    return flatArray(this.gradShard, unit.shardStart, unit.block);
  }

  protected paramGradBytes(): { parameters: number; gradients: number } {
    const persistent = this.layout.persistentUnit >= 0 ? this.plan.units[this.layout.persistentUnit]!.padded * BYTES_PER_ELEMENT[this.args.paramDtype] : 0;
    const shard = (this.shard16 ?? this.out16Staging)!.storage.byteLength;
    return { parameters: shard + persistent, gradients: this.gradShard.storage.byteLength };
  }

  /** The module whose hooks gather each unit (for tools and tests). */
  get units(): readonly { module: Module | null; numel: number; padded: number }[] {
    return this.plan.units.map((u, i) => ({ module: this.layout.moduleOf[i] ?? null, numel: u.numel, padded: u.padded }));
  }

  beforeBackward(): void {
    this.reduction.begin(true);
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
    this.args.kernels.fill(this.gradDtype, flatArray(this.gradShard), this.gradShard.numel, 0);
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
    releaseFlat(this.gradShard);
    this.releaseOffload();
    this.releaseMaster();
    if (this.shard16) releaseFlat(this.shard16);
    if (this.out16Staging) releaseFlat(this.out16Staging);
    const off = this.paramOffload;
    this.paramOffload = null;
    off?.close().catch((err: unknown) => this.args.ctx.log('warn', `ZeRO-3: closing the parameter offload tier failed: ${String(err)}`));
    this.placeholder.dispose();
  }
}

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
